//! Splits a request body into event lines without copying.
//!
//! Vector's `http` sink sends either NDJSON (`framing.method =
//! "newline_delimited"`, no newline after the last event) or, by default for
//! the json codec, a JSON array. The body's first non-blank byte decides:
//! `[` means an array, anything else NDJSON. A body that starts with `[` but
//! is not a valid array is kept whole, as one line, so it is dead-lettered
//! with its reason instead of being lost. One UTF-8 byte order mark at the
//! start of the body is skipped (editors and some HTTP clients write one);
//! one at the start of a later line stays part of that line.

use serde::de::IgnoredAny;

/// The event lines of a body, borrowed from it. Blank lines are skipped and a
/// trailing `\r` is removed.
pub fn lines(body: &[u8]) -> Vec<&[u8]> {
    iter(body).collect()
}

/// [`lines`] one at a time: NDJSON lines are found as they are taken, so a
/// body of many short lines is not turned into a list of them first.
pub fn iter(body: &[u8]) -> Box<dyn Iterator<Item = &[u8]> + Send + '_> {
    let body = body.strip_prefix(BOM).unwrap_or(body);
    let first = body.iter().position(|b| !b.is_ascii_whitespace());
    if let Some(open) = first.filter(|&i| body[i] == b'[') {
        // Checked whole first (without holding its elements), so that a
        // broken array is kept whole rather than cut where it breaks.
        if serde_json::from_slice::<IgnoredAny>(body).is_ok() {
            return Box::new(Elements {
                body,
                pos: open + 1,
                done: false,
            });
        }
        return Box::new(std::iter::once(trim(body)));
    }
    Box::new(ndjson_iter(body))
}

/// The UTF-8 byte order mark, U+FEFF.
pub const BOM: &[u8] = b"\xef\xbb\xbf";

/// The elements of a JSON array already known to be valid, found one at a
/// time: a body of millions of tiny elements is not turned into a list of
/// them first.
struct Elements<'a> {
    body: &'a [u8],
    /// After the `[` or the `,` before the next element.
    pos: usize,
    done: bool,
}

impl<'a> Elements<'a> {
    fn skip_ws(&mut self) {
        while self
            .body
            .get(self.pos)
            .is_some_and(|b| b.is_ascii_whitespace())
        {
            self.pos += 1;
        }
    }
}

impl<'a> Iterator for Elements<'a> {
    type Item = &'a [u8];

    fn next(&mut self) -> Option<&'a [u8]> {
        if self.done {
            return None;
        }
        self.skip_ws();
        let rest = self.body.get(self.pos..).unwrap_or_default();
        if rest.first() == Some(&b']') {
            self.done = true;
            return None;
        }
        // Skipped, not parsed into a string: the whole-body check does not
        // check UTF-8 inside strings either, so an element with invalid
        // UTF-8 is yielded as it is (and dead-lettered as such) instead of
        // ending the walk there.
        let mut values = serde_json::Deserializer::from_slice(rest).into_iter::<IgnoredAny>();
        let Some(Ok(_)) = values.next() else {
            // Not expected after the whole-body check; should it happen,
            // the rest is kept as one line rather than dropped.
            self.done = true;
            let tail = trim(rest);
            let tail = tail.strip_suffix(b"]").map_or(tail, trim);
            return (!tail.is_empty()).then_some(tail);
        };
        let value = &rest[..values.byte_offset()];
        self.pos += values.byte_offset();
        self.skip_ws();
        match self.body.get(self.pos) {
            Some(b',') => self.pos += 1,
            _ => self.done = true,
        }
        Some(value)
    }
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
    fn one_byte_order_mark_before_the_body_is_skipped() {
        assert_eq!(
            lines(b"\xef\xbb\xbf{\"a\":1}\n\xef\xbb\xbf{\"b\":2}"),
            vec![&b"{\"a\":1}"[..], b"\xef\xbb\xbf{\"b\":2}"],
            "only the body's, not a later line's"
        );
        assert_eq!(lines(b"\xef\xbb\xbf [{\"a\":1}]"), vec![&b"{\"a\":1}"[..]]);
        assert_eq!(
            lines(b"\xef\xbb\xbf\xef\xbb\xbf{}"),
            vec![&b"\xef\xbb\xbf{}"[..]],
            "one mark, not two"
        );
        assert!(lines(b"\xef\xbb\xbf").is_empty());
        assert!(lines(b"\xef\xbb\xbf\n").is_empty());
    }

    #[test]
    fn json_array_elements_are_lines() {
        assert_eq!(
            lines(b" [{\"a\":1}, {\"b\":[2,3]}]"),
            vec![&b"{\"a\":1}"[..], b"{\"b\":[2,3]}"]
        );
        assert!(lines(b"[]").is_empty());
        assert!(lines(b" [ \n ] ").is_empty());
        assert_eq!(
            lines(b"[1,2 , \"a,]\" ,\n{\"x\": [1, {}]}\t,null]\n"),
            vec![&b"1"[..], b"2", b"\"a,]\"", b"{\"x\": [1, {}]}", b"null"]
        );
    }

    #[test]
    fn a_broken_array_is_kept_whole() {
        assert_eq!(lines(b"[{\"a\":1}, oops"), vec![&b"[{\"a\":1}, oops"[..]]);
        assert_eq!(
            lines(b"[1,2] [3]"),
            vec![&b"[1,2] [3]"[..]],
            "trailing data"
        );
        assert_eq!(lines(b"[1,,2]"), vec![&b"[1,,2]"[..]]);
    }

    #[test]
    fn an_element_with_invalid_utf8_is_a_line_and_the_walk_goes_on() {
        assert_eq!(
            lines(b"[{\"p\":\"caf\xe9\"}, {\"b\":2},3]"),
            vec![&b"{\"p\":\"caf\xe9\"}"[..], b"{\"b\":2}", b"3"]
        );
    }
}
