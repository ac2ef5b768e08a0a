//! NDJSON lines from a stream (`import`, `serve --stdin`), read in bounded
//! memory.
//!
//! A line longer than [`MAX_LINE_BYTES`] is not held whole: the reader keeps
//! its first [`KEPT_PREFIX_BYTES`], skips the rest while hashing and counting
//! it, and hands back a [`LongLine`], which becomes a `line_too_long` dead
//! letter. A file holding one enormous line (or none: no newline at all)
//! therefore costs at most about `MAX_LINE_BYTES` of memory.
//!
//! One UTF-8 byte order mark at the start of the input is skipped; one at
//! the start of a later line stays part of that line.

use std::io::{self, BufRead};

use crate::ingest::framing::BOM;
use crate::record::{self, DeadLetter};

/// Longest line read whole: the default largest body of the ingest
/// endpoint (`--max-body-bytes`), so a line the endpoint accepts is also
/// read whole from a file.
pub const MAX_LINE_BYTES: usize = 32 << 20;

/// How much of a longer line is kept for its dead letter.
pub const KEPT_PREFIX_BYTES: usize = 64 << 10;

/// Bytes of lines a stream reader collects before it commits them, whatever
/// its line count, so that many long lines do not add up.
pub const MAX_BATCH_BYTES: usize = 16 << 20;

/// One line of input, without its newline (and a trailing `\r`).
#[derive(Debug)]
pub enum Line {
    /// A line of at most the reader's limit.
    Whole(Vec<u8>),
    /// A line over the limit: only its beginning was kept.
    TooLong(LongLine),
}

impl Line {
    /// Bytes held in memory.
    pub fn held_bytes(&self) -> usize {
        match self {
            Line::Whole(l) => l.len(),
            Line::TooLong(l) => l.prefix.len(),
        }
    }

    /// True for a line of only ASCII whitespace (skipped by callers).
    pub fn is_blank(&self) -> bool {
        match self {
            Line::Whole(l) => l.iter().all(u8::is_ascii_whitespace),
            Line::TooLong(_) => false,
        }
    }
}

/// What is kept of a line over the limit.
#[derive(Debug)]
pub struct LongLine {
    /// Its first bytes (at most [`KEPT_PREFIX_BYTES`]).
    pub prefix: Vec<u8>,
    /// Its full length in bytes.
    pub len: u64,
    /// The limit it exceeded.
    pub limit: usize,
    /// BLAKE3 of the whole line: the dead letter's id, as for any line, so
    /// that reading the same line again lands on the same key.
    pub hash: blake3::Hash,
}

impl LongLine {
    /// The dead letter that stands for the line.
    pub fn dead_letter(&self, received_ns: i64) -> DeadLetter {
        record::long_line_dead_letter(self, received_ns)
    }
}

/// The reader's next buffered bytes (empty at the end), retrying reads
/// interrupted by a signal. (The buffer is taken again once filled: a
/// reference returned from inside the retry loop would keep `inner`
/// borrowed across iterations.)
fn fill<R: BufRead>(inner: &mut R) -> io::Result<&[u8]> {
    loop {
        match inner.fill_buf() {
            Ok(_) => break,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        }
    }
    inner.fill_buf()
}

/// Reads lines of at most `limit` bytes from a [`BufRead`].
pub struct LineReader<R> {
    inner: R,
    limit: usize,
    /// True until the byte order mark, if any, has been looked for.
    at_start: bool,
}

impl<R: BufRead> LineReader<R> {
    /// A reader with the sink's limit, [`MAX_LINE_BYTES`].
    pub fn new(inner: R) -> Self {
        Self::with_limit(inner, MAX_LINE_BYTES)
    }

    pub fn with_limit(inner: R, limit: usize) -> Self {
        LineReader {
            inner,
            limit,
            at_start: true,
        }
    }

    /// Consumes a byte order mark at the start of the input, even one that
    /// arrives split across reads. Returns the bytes consumed that turned out
    /// not to be a mark: the beginning of the first line.
    fn skip_bom(&mut self) -> io::Result<Vec<u8>> {
        let mut matched = 0;
        loop {
            let buf = fill(&mut self.inner)?;
            if buf.is_empty() {
                return Ok(BOM[..matched].to_vec());
            }
            let want = &BOM[matched..];
            let n = buf.iter().zip(want).take_while(|(a, b)| a == b).count();
            let differs = n < want.len().min(buf.len());
            self.inner.consume(n);
            matched += n;
            if matched == BOM.len() {
                return Ok(Vec::new());
            }
            if differs {
                return Ok(BOM[..matched].to_vec());
            }
        }
    }

    /// The next line, or `None` at the end of the input. A last line without
    /// a newline is returned as a line.
    pub fn next_line(&mut self) -> io::Result<Option<Line>> {
        let mut line = Vec::new();
        if self.at_start {
            line = self.skip_bom()?;
            self.at_start = false;
        }
        let mut seen = !line.is_empty();
        loop {
            let buf = fill(&mut self.inner)?;
            if buf.is_empty() {
                return Ok(seen.then(|| Line::Whole(strip_cr(line))));
            }
            seen = true;
            let (chunk, done) = match memchr::memchr(b'\n', buf) {
                Some(i) => (&buf[..i], Some(i + 1)),
                None => (buf, None),
            };
            if line.len() + chunk.len() > self.limit {
                let mut hasher = blake3::Hasher::new();
                hasher.update(&line);
                line.truncate(KEPT_PREFIX_BYTES);
                line.shrink_to_fit();
                return self.skip_rest(line, hasher).map(|l| Some(Line::TooLong(l)));
            }
            line.extend_from_slice(chunk);
            let used = done.unwrap_or(buf.len());
            self.inner.consume(used);
            if done.is_some() {
                return Ok(Some(Line::Whole(strip_cr(line))));
            }
        }
    }

    /// Reads the rest of a line over the limit (from the current position,
    /// `hasher` holding what came before), keeping at most
    /// [`KEPT_PREFIX_BYTES`] of it in `prefix`.
    fn skip_rest(
        &mut self,
        mut prefix: Vec<u8>,
        mut hasher: blake3::Hasher,
    ) -> io::Result<LongLine> {
        let mut len = hasher.count();
        loop {
            let buf = fill(&mut self.inner)?;
            if buf.is_empty() {
                break;
            }
            let (chunk, done) = match memchr::memchr(b'\n', buf) {
                Some(i) => (&buf[..i], Some(i + 1)),
                None => (buf, None),
            };
            hasher.update(chunk);
            len += chunk.len() as u64;
            let room = KEPT_PREFIX_BYTES.saturating_sub(prefix.len());
            prefix.extend_from_slice(&chunk[..room.min(chunk.len())]);
            let used = done.unwrap_or(buf.len());
            self.inner.consume(used);
            if done.is_some() {
                break;
            }
        }
        Ok(LongLine {
            prefix,
            len,
            limit: self.limit,
            hash: hasher.finalize(),
        })
    }
}

fn strip_cr(mut line: Vec<u8>) -> Vec<u8> {
    while matches!(line.last(), Some(b'\r')) {
        line.pop();
    }
    line
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read_all(input: &[u8], limit: usize) -> Vec<Line> {
        let mut r = LineReader::with_limit(io::BufReader::with_capacity(7, input), limit);
        let mut out = Vec::new();
        while let Some(l) = r.next_line().expect("read") {
            out.push(l);
        }
        out
    }

    fn whole(l: &Line) -> &[u8] {
        match l {
            Line::Whole(b) => b,
            Line::TooLong(_) => panic!("expected a whole line, got {l:?}"),
        }
    }

    #[test]
    fn lines_with_and_without_final_newline() {
        let lines = read_all(b"ab\r\n\ncd", 100);
        assert_eq!(lines.len(), 3);
        assert_eq!(whole(&lines[0]), b"ab");
        assert!(lines[1].is_blank());
        assert_eq!(whole(&lines[2]), b"cd");
        assert!(read_all(b"", 100).is_empty());
    }

    #[test]
    fn one_byte_order_mark_before_the_input_is_skipped() {
        for cap in [1, 2, 3, 7] {
            let read = |input: &[u8]| {
                let mut r = LineReader::with_limit(io::BufReader::with_capacity(cap, input), 100);
                let mut out = Vec::new();
                while let Some(l) = r.next_line().expect("read") {
                    out.push(whole(&l).to_vec());
                }
                out
            };
            assert_eq!(
                read(b"\xef\xbb\xbfab\n\xef\xbb\xbfcd\n"),
                vec![b"ab".to_vec(), b"\xef\xbb\xbfcd".to_vec()],
                "only the input's, not a later line's (buffer of {cap})"
            );
            assert_eq!(
                read(b"\xef\xbb\xbf\xef\xbb\xbfab"),
                vec![b"\xef\xbb\xbfab".to_vec()],
                "one mark, not two"
            );
            assert_eq!(read(b"\xef\xbbab"), vec![b"\xef\xbbab".to_vec()]);
            assert_eq!(read(b"\xef\xbb"), vec![b"\xef\xbb".to_vec()]);
            assert_eq!(
                read(b"\xefab\ncd"),
                vec![b"\xefab".to_vec(), b"cd".to_vec()]
            );
            assert_eq!(read(b"ab"), vec![b"ab".to_vec()]);
            assert!(read(b"\xef\xbb\xbf").is_empty());
            assert!(read(b"").is_empty());
        }
    }

    #[test]
    fn a_line_over_the_limit_keeps_its_length_hash_and_prefix() {
        let long = vec![b'x'; 100];
        let mut input = b"ok\n".to_vec();
        input.extend_from_slice(&long);
        input.extend_from_slice(b"\nnext");
        let lines = read_all(&input, 20);
        assert_eq!(lines.len(), 3);
        assert_eq!(whole(&lines[0]), b"ok");
        let Line::TooLong(l) = &lines[1] else {
            panic!("expected a long line")
        };
        assert_eq!(l.len, 100);
        assert_eq!(l.limit, 20);
        assert_eq!(l.hash, blake3::hash(&long));
        assert_eq!(l.prefix, long);
        assert_eq!(whole(&lines[2]), b"next", "reading goes on after it");
        // Without a final newline, and exactly at the limit.
        let lines = read_all(&[b'y'; 21], 20);
        assert!(matches!(&lines[..], [Line::TooLong(l)] if l.len == 21));
        let lines = read_all(&[b'y'; 20], 20);
        assert_eq!(whole(&lines[0]).len(), 20);
    }
}
