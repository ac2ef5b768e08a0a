//! Request body decompression (`Content-Encoding: gzip | zstd | identity`),
//! capped so that a small compressed body cannot expand without bound: each
//! body to the request limit, and all bodies decompressed at once to a
//! shared [`DecodeBudget`].

use std::borrow::Cow;
use std::io::Read;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

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
    /// Other requests' decompressed bodies take the shared budget: a
    /// transient condition, the same body fits later.
    #[error(
        "bodies being decompressed already hold the {budget}-byte budget for decompressed \
         bodies; retry later"
    )]
    Busy { budget: usize },
}

/// Bytes of decompressed bodies held at once, across requests. A body takes
/// its share as its buffer grows and gives it back when its batch is done.
#[derive(Debug)]
pub struct DecodeBudget {
    limit: usize,
    used: AtomicUsize,
}

impl DecodeBudget {
    pub fn new(limit: usize) -> Arc<Self> {
        Arc::new(DecodeBudget {
            limit,
            used: AtomicUsize::new(0),
        })
    }

    /// The budget in bytes.
    pub fn limit(&self) -> usize {
        self.limit
    }

    /// Bytes taken now.
    pub fn used(&self) -> usize {
        self.used.load(Ordering::Relaxed)
    }

    fn try_take(&self, n: usize) -> bool {
        self.used
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |used| {
                used.checked_add(n).filter(|&total| total <= self.limit)
            })
            .is_ok()
    }

    fn give_back(&self, n: usize) {
        self.used.fetch_sub(n, Ordering::AcqRel);
    }
}

/// A share of a [`DecodeBudget`], given back on drop.
#[derive(Debug)]
pub struct Charge {
    budget: Arc<DecodeBudget>,
    bytes: usize,
}

impl Charge {
    fn new(budget: &Arc<DecodeBudget>) -> Self {
        Charge {
            budget: budget.clone(),
            bytes: 0,
        }
    }

    /// Takes `n` more bytes; false (nothing taken) when they do not fit.
    fn grow(&mut self, n: usize) -> bool {
        if !self.budget.try_take(n) {
            return false;
        }
        self.bytes += n;
        true
    }
}

impl Drop for Charge {
    fn drop(&mut self) {
        self.budget.give_back(self.bytes);
    }
}

/// A decoded body and the share of the budget it holds: keep it as long as
/// the bytes (or anything borrowed from them) live.
#[derive(Debug)]
pub struct Decoded<'b> {
    pub bytes: Cow<'b, [u8]>,
    pub charge: Option<Charge>,
}

/// Decodes `body` according to the `Content-Encoding` header value (an
/// uncompressed body is returned as it is, not copied, and takes nothing
/// from `budget`).
pub fn decode<'b>(
    encoding: Option<&str>,
    body: &'b [u8],
    limit: usize,
    budget: &Arc<DecodeBudget>,
) -> Result<Decoded<'b>, DecodeError> {
    let enc = encoding.map(|e| e.trim().to_ascii_lowercase());
    match enc.as_deref() {
        None | Some("") | Some("identity") => {
            if body.len() > limit {
                return Err(DecodeError::TooLarge { limit });
            }
            Ok(Decoded {
                bytes: Cow::Borrowed(body),
                charge: None,
            })
        }
        Some("gzip") | Some("x-gzip") => {
            // ISIZE, the last member's size modulo 2^32: only a hint.
            let hint = body
                .len()
                .checked_sub(4)
                .and_then(|at| body.get(at..))
                .and_then(|b| <[u8; 4]>::try_from(b).ok())
                .map(|b| u32::from_le_bytes(b) as usize);
            let open = || Ok(flate2::read::MultiGzDecoder::new(body));
            read_capped(open, limit, hint, budget, "gzip")
        }
        Some("zstd") => {
            let hint = zstd::zstd_safe::get_frame_content_size(body)
                .ok()
                .flatten()
                .and_then(|n| usize::try_from(n).ok());
            let open = || {
                zstd::stream::read::Decoder::new(body).map_err(|source| DecodeError::Corrupt {
                    encoding: "zstd",
                    source,
                })
            };
            read_capped(open, limit, hint, budget, "zstd")
        }
        Some(other) => Err(DecodeError::Unsupported(other.to_owned())),
    }
}

/// Decodes into one buffer of the body's exact size, taken from `budget`
/// before it is allocated, so that the buffer never grows (a growing buffer
/// leaves its earlier copies behind, resident until the allocator returns
/// them).
///
/// When the body announces its size (`hint`: gzip's ISIZE, zstd's frame
/// content size) and it is within the limit, one pass decodes it into a
/// buffer of that size. Otherwise, or when the announcement is wrong, a
/// first pass only counts the decoded bytes (up to `limit + 1`, so a
/// decompression bomb costs no memory and gets [`DecodeError::TooLarge`]),
/// and a second one decodes into a buffer of the counted size.
fn read_capped<'b, R: Read>(
    open: impl Fn() -> Result<R, DecodeError>,
    limit: usize,
    hint: Option<usize>,
    budget: &Arc<DecodeBudget>,
    encoding: &'static str,
) -> Result<Decoded<'b>, DecodeError> {
    let corrupt = |source| DecodeError::Corrupt { encoding, source };
    let cap = u64::try_from(limit).unwrap_or(u64::MAX).saturating_add(1);
    if let Some(hint) = hint.filter(|&h| h <= limit) {
        // One byte more than announced tells a body longer than that.
        let (out, charge) = take_buffer(hint.saturating_add(1), budget)?;
        if let Some(decoded) = fill(open()?, out, charge).map_err(corrupt)? {
            return Ok(decoded);
        }
    }
    let size = std::io::copy(&mut open()?.take(cap), &mut std::io::sink()).map_err(corrupt)?;
    let size = usize::try_from(size).unwrap_or(usize::MAX);
    if size > limit {
        return Err(DecodeError::TooLarge { limit });
    }
    let (out, charge) = take_buffer(size.saturating_add(1), budget)?;
    match fill(open()?, out, charge).map_err(corrupt)? {
        Some(decoded) => Ok(decoded),
        // The same bytes decode the same way.
        None => Err(corrupt(std::io::Error::other(
            "the body decoded to different sizes",
        ))),
    }
}

/// An empty buffer of `capacity` bytes, charged to `budget`.
fn take_buffer(
    capacity: usize,
    budget: &Arc<DecodeBudget>,
) -> Result<(Vec<u8>, Charge), DecodeError> {
    let mut charge = Charge::new(budget);
    if !charge.grow(capacity) {
        return Err(DecodeError::Busy {
            budget: budget.limit(),
        });
    }
    Ok((Vec::with_capacity(capacity), charge))
}

/// Decodes all of `r` into `out` if it fits its capacity less one byte;
/// `None` when it does not (nothing beyond the capacity is read).
fn fill<'b>(
    r: impl Read,
    mut out: Vec<u8>,
    charge: Charge,
) -> std::io::Result<Option<Decoded<'b>>> {
    let room = out.capacity();
    r.take(room as u64).read_to_end(&mut out)?;
    if out.len() >= room {
        return Ok(None);
    }
    Ok(Some(Decoded {
        bytes: Cow::Owned(out),
        charge: Some(charge),
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn budget() -> Arc<DecodeBudget> {
        DecodeBudget::new(1 << 30)
    }

    #[test]
    fn gzip_and_zstd_round_trip() {
        let data = b"{\"a\":1}\n{\"b\":2}".repeat(100);
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        gz.write_all(&data).expect("gz");
        let gz = gz.finish().expect("gz");
        let b = budget();
        assert_eq!(
            *decode(Some("gzip"), &gz, 1 << 20, &b).expect("gzip").bytes,
            data
        );
        let zs = zstd::encode_all(&data[..], 3).expect("zstd");
        assert_eq!(
            *decode(Some("zstd"), &zs, 1 << 20, &b).expect("zstd").bytes,
            data
        );
        assert!(matches!(
            decode(None, &data, 1 << 20, &b).expect("plain").bytes,
            Cow::Borrowed(b) if b == data
        ));
        assert_eq!(b.used(), 0, "every share was given back");
    }

    #[test]
    fn limits_and_errors() {
        let data = vec![b'x'; 10_000];
        let zs = zstd::encode_all(&data[..], 3).expect("zstd");
        let b = budget();
        assert!(matches!(
            decode(Some("zstd"), &zs, 9_999, &b),
            Err(DecodeError::TooLarge { .. })
        ));
        assert!(matches!(
            decode(Some("zstd"), &zs, 10_000, &b).map(|d| d.bytes.len()),
            Ok(10_000)
        ));
        assert!(matches!(
            decode(None, &data, 9_999, &b),
            Err(DecodeError::TooLarge { .. })
        ));
        assert!(matches!(
            decode(Some("br"), &data, 1 << 20, &b),
            Err(DecodeError::Unsupported(_))
        ));
        assert!(matches!(
            decode(Some("gzip"), b"nope", 1 << 20, &b),
            Err(DecodeError::Corrupt { .. })
        ));
        assert_eq!(b.used(), 0);
    }

    #[test]
    fn bodies_share_the_budget_and_give_it_back() {
        let data = vec![b'x'; 3_000_000];
        let zs = zstd::encode_all(&data[..], 3).expect("zstd");
        let mut streamed = zstd::stream::write::Encoder::new(Vec::new(), 3).expect("zstd");
        streamed.write_all(&data).expect("zstd");
        let streamed = streamed.finish().expect("zstd");
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        gz.write_all(&data).expect("gz");
        let gz = gz.finish().expect("gz");
        let b = DecodeBudget::new(5_000_000);
        let first = decode(Some("zstd"), &zs, 4_000_000, &b).expect("fits alone");
        assert_eq!(first.bytes.len(), 3_000_000);
        assert!(b.used() <= 4_000_001, "{}", b.used());
        for (enc, body) in [("zstd", &streamed), ("gzip", &gz)] {
            assert!(
                matches!(
                    decode(Some(enc), body, 4_000_000, &b),
                    Err(DecodeError::Busy { budget: 5_000_000 })
                ),
                "{enc}"
            );
        }
        drop(first);
        assert_eq!(b.used(), 0);
        for (enc, body) in [("zstd", &streamed), ("gzip", &gz)] {
            let d = decode(Some(enc), body, 4_000_000, &b).expect("fits once alone");
            assert_eq!(*d.bytes, data[..], "{enc}");
        }
        assert_eq!(b.used(), 0);
    }
}
