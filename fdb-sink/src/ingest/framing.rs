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
    let first = body.iter().find(|b| !b.is_ascii_whitespace());
    if first == Some(&b'[') {
        if let Ok(items) = serde_json::from_slice::<Vec<&RawValue>>(body) {
            return items.into_iter().map(|v| v.get().as_bytes()).collect();
        }
        return vec![trim(body)];
    }
    ndjson(body)
}

/// NDJSON lines (final newline optional).
pub fn ndjson(body: &[u8]) -> Vec<&[u8]> {
    let mut lines = Vec::new();
    let mut start = 0;
    for end in memchr::memchr_iter(b'\n', body).chain(std::iter::once(body.len())) {
        let line = &body[start..end];
        start = end + 1;
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        if !line.iter().all(u8::is_ascii_whitespace) {
            lines.push(line);
        }
    }
    lines
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
