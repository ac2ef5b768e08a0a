//! Splits a request body into event lines without copying.
//!
//! Vector's `http` sink sends either NDJSON (`framing.method =
//! "newline_delimited"`, no newline after the last event) or, by default for
//! the json codec, a JSON array. The body's first non-blank byte decides:
//! `[` means an array, anything else NDJSON. A body that starts with `[` but
//! is not a valid array is kept whole, as one line, so it is dead-lettered
//! with its reason instead of being lost.

use serde_json::value::RawValue;

/// The event lines of a body, borrowed from it. Blank lines are skipped and a
/// trailing `\r` is removed.
pub fn lines(body: &[u8]) -> Vec<&[u8]> {
    iter(body).collect()
}

/// [`lines`] one at a time: NDJSON lines are found as they are taken, so a
/// body of many short lines is not turned into a list of them first.
pub fn iter(body: &[u8]) -> Box<dyn Iterator<Item = &[u8]> + Send + '_> {
    let first = body.iter().find(|b| !b.is_ascii_whitespace());
    if first == Some(&b'[') {
        if let Ok(items) = serde_json::from_slice::<Vec<&RawValue>>(body) {
            return Box::new(items.into_iter().map(|v| v.get().as_bytes()));
        }
        return Box::new(std::iter::once(trim(body)));
    }
    Box::new(ndjson_iter(body))
}

/// NDJSON lines (final newline optional).
pub fn ndjson(body: &[u8]) -> Vec<&[u8]> {
    ndjson_iter(body).collect()
}

fn ndjson_iter(body: &[u8]) -> impl Iterator<Item = &[u8]> + Send + '_ {
    let mut start = 0;
    memchr::memchr_iter(b'\n', body)
        .chain(std::iter::once(body.len()))
        .filter_map(move |end| {
            let line = &body[start..end];
            start = end + 1;
            let line = line.strip_suffix(b"\r").unwrap_or(line);
            (!line.iter().all(u8::is_ascii_whitespace)).then_some(line)
        })
}

fn trim(b: &[u8]) -> &[u8] {
    let start = b
        .iter()
        .position(|c| !c.is_ascii_whitespace())
        .unwrap_or(b.len());
    let end = b
        .iter()
        .rposition(|c| !c.is_ascii_whitespace())
        .map_or(start, |e| e + 1);
    &b[start..end]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ndjson_with_and_without_final_newline() {
        assert_eq!(
            lines(b"{\"a\":1}\n{\"b\":2}"),
            vec![&b"{\"a\":1}"[..], b"{\"b\":2}"]
        );
        assert_eq!(
            lines(b"{\"a\":1}\r\n{\"b\":2}\n\n"),
            vec![&b"{\"a\":1}"[..], b"{\"b\":2}"]
        );
        assert_eq!(
            lines(b"\n{\"a\":1}\r\n\r\n \t\n{\"b\":2}\r"),
            vec![&b"{\"a\":1}"[..], b"{\"b\":2}"],
            "blank and whitespace-only lines are skipped wherever they are"
        );
        assert!(lines(b"").is_empty());
        assert!(lines(b"\n  \n").is_empty());
    }

    #[test]
    fn json_array_elements_are_lines() {
        assert_eq!(
            lines(b" [{\"a\":1}, {\"b\":[2,3]}]"),
            vec![&b"{\"a\":1}"[..], b"{\"b\":[2,3]}"]
        );
        assert!(lines(b"[]").is_empty());
    }

    #[test]
    fn a_broken_array_is_kept_whole() {
        assert_eq!(lines(b"[{\"a\":1}, oops"), vec![&b"[{\"a\":1}, oops"[..]]);
    }
}
