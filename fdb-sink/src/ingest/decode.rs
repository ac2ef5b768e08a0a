//! Request body decompression (`Content-Encoding: gzip | zstd | identity`),
//! capped so that a small compressed body cannot expand without bound.

use std::borrow::Cow;
use std::io::Read;

/// Why a body could not be decoded.
#[derive(Debug, thiserror::Error)]
pub enum DecodeError {
    #[error("decoded body exceeds {limit} bytes")]
    TooLarge { limit: usize },
    #[error("unsupported Content-Encoding {0:?} (supported: gzip, zstd, identity)")]
    Unsupported(String),
    #[error("body is not valid {encoding}: {source}")]
    Corrupt {
        encoding: &'static str,
        #[source]
        source: std::io::Error,
    },
}

/// Decodes `body` according to the `Content-Encoding` header value (an
/// uncompressed body is returned as it is, not copied).
pub fn decode<'b>(
    encoding: Option<&str>,
    body: &'b [u8],
    limit: usize,
) -> Result<Cow<'b, [u8]>, DecodeError> {
    let enc = encoding.map(|e| e.trim().to_ascii_lowercase());
    match enc.as_deref() {
        None | Some("") | Some("identity") => {
            if body.len() > limit {
                return Err(DecodeError::TooLarge { limit });
            }
            Ok(Cow::Borrowed(body))
        }
        Some("gzip") | Some("x-gzip") => {
            read_capped(flate2::read::MultiGzDecoder::new(body), limit, "gzip")
        }
        Some("zstd") => {
            let dec =
                zstd::stream::read::Decoder::new(body).map_err(|source| DecodeError::Corrupt {
                    encoding: "zstd",
                    source,
                })?;
            read_capped(dec, limit, "zstd")
        }
        Some(other) => Err(DecodeError::Unsupported(other.to_owned())),
    }
}

fn read_capped<'b>(
    r: impl Read,
    limit: usize,
    encoding: &'static str,
) -> Result<Cow<'b, [u8]>, DecodeError> {
    let mut out = Vec::new();
    let cap = u64::try_from(limit).unwrap_or(u64::MAX).saturating_add(1);
    r.take(cap)
        .read_to_end(&mut out)
        .map_err(|source| DecodeError::Corrupt { encoding, source })?;
    if out.len() > limit {
        return Err(DecodeError::TooLarge { limit });
    }
    Ok(Cow::Owned(out))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    #[test]
    fn gzip_and_zstd_round_trip() {
        let data = b"{\"a\":1}\n{\"b\":2}".repeat(100);
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        gz.write_all(&data).expect("gz");
        let gz = gz.finish().expect("gz");
        assert_eq!(*decode(Some("gzip"), &gz, 1 << 20).expect("gzip"), data);
        let zs = zstd::encode_all(&data[..], 3).expect("zstd");
        assert_eq!(*decode(Some("zstd"), &zs, 1 << 20).expect("zstd"), data);
        assert!(matches!(
            decode(None, &data, 1 << 20).expect("plain"),
            Cow::Borrowed(b) if b == data
        ));
    }

    #[test]
    fn limits_and_errors() {
        let data = vec![b'x'; 10_000];
        let zs = zstd::encode_all(&data[..], 3).expect("zstd");
        assert!(matches!(
            decode(Some("zstd"), &zs, 9_999),
            Err(DecodeError::TooLarge { .. })
        ));
        assert!(matches!(
            decode(None, &data, 9_999),
            Err(DecodeError::TooLarge { .. })
        ));
        assert!(matches!(
            decode(Some("br"), &data, 1 << 20),
            Err(DecodeError::Unsupported(_))
        ));
        assert!(matches!(
            decode(Some("gzip"), b"nope", 1 << 20),
            Err(DecodeError::Corrupt { .. })
        ));
    }
}
