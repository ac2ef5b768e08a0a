//! Validation of a request's lines, with its invalid lines grouped past a
//! count, so that a body of millions of tiny invalid lines becomes a bounded
//! number of dead letters instead of one row per line.
//!
//! The first [`SINGLE_DEAD_LETTERS`] invalid lines of a request are stored
//! one dead letter each, as usual. The later ones are kept together, in the
//! order received: one dead letter (reason `invalid_lines_grouped`) per
//! [`GROUP_RAW_BYTES`] of lines, holding their exact bytes (each line
//! followed by `\n`) and the count of lines per reason. A line too large to
//! share a group keeps a dead letter of its own. Valid lines are stored as
//! records wherever they are. Grouping depends only on the request's lines,
//! so a redelivered request forms the same groups, under the same keys.
//!
//! A dead letter without a usable timestamp of its own (keyed by its
//! receipt) gets an id scoped to its request and its place in it
//! ([`record::receipt_scoped_id`]): the request's hash is computed only
//! when the first such dead letter occurs, so valid lines cost nothing more.
//!
//! `import` and `serve --stdin` group the same way within each batch they
//! read (up to [`STREAM_BATCH_LINES`] lines or 16 MiB).

use std::collections::{BTreeMap, HashMap};

use crate::keys::Keys;
use crate::record::{self, DeadLetter, Item};

/// Invalid lines of one request stored one dead letter each before the
/// others are grouped.
pub const SINGLE_DEAD_LETTERS: usize = 1000;

/// Lines a stream reader (`import`, `serve --stdin`) hands to validation at
/// once at most (a batch also ends at
/// [`crate::ingest::lines::MAX_BATCH_BYTES`]): its invalid lines are
/// grouped past the first [`SINGLE_DEAD_LETTERS`] as a request's are, so a
/// file of millions of tiny invalid lines makes thousands of dead letters,
/// not millions. Held in memory: with lines of a few bytes, about 100 bytes
/// each.
pub const STREAM_BATCH_LINES: usize = 100_000;

/// Bytes of lines (newlines included) held by one group: its base64 fits
/// the store's value limit.
pub const GROUP_RAW_BYTES: usize = record::MAX_B64_RAW_BYTES;

/// What identifies the request (or stream batch) being validated: a hash
/// of its bytes, computed when first needed.
pub type RequestHash<'k> = &'k dyn Fn() -> blake3::Hash;

/// Validates the lines of one request, in order.
pub struct Validator<'k> {
    keys: &'k Keys,
    received_ns: i64,
    singles_left: usize,
    group: Group,
    /// Computes the request's hash ([`RequestHash`]); `request` caches it.
    request_hash: RequestHash<'k>,
    request: Option<blake3::Hash>,
    /// Lines of the request validated so far: the place of the next one.
    position: u64,
    /// Dead letter ids of this request so far, with how often each came.
    /// Bounded: the single lines, then one per group or large line.
    seen: HashMap<String, u32>,
}

#[derive(Default)]
struct Group {
    payload: Vec<u8>,
    lines: u64,
    reasons: BTreeMap<String, u64>,
    own_ts: Option<i64>,
    /// Place of its first line in the request.
    first: u64,
}

impl<'k> Validator<'k> {
    /// A validator for one request received at `received_ns`, which
    /// `request_hash` identifies.
    pub fn new(keys: &'k Keys, received_ns: i64, request_hash: RequestHash<'k>) -> Self {
        Self::with_singles(keys, received_ns, request_hash, SINGLE_DEAD_LETTERS)
    }

    /// A validator that groups after `singles` invalid lines.
    pub fn with_singles(
        keys: &'k Keys,
        received_ns: i64,
        request_hash: RequestHash<'k>,
        singles: usize,
    ) -> Self {
        Validator {
            keys,
            received_ns,
            singles_left: singles,
            group: Group::default(),
            request_hash,
            request: None,
            position: 0,
            seen: HashMap::new(),
        }
    }

    /// The receipt time given to the request's dead letters.
    pub fn received_ns(&self) -> i64 {
        self.received_ns
    }

    /// Validates `line` and adds what it becomes to `out` (a group is added
    /// once full, or by [`Validator::finish`]).
    pub fn push(&mut self, line: &[u8], out: &mut Vec<Item>) {
        let position = self.position;
        self.position += 1;
        let checked = record::check_line(self.keys, line)
            .and_then(|r| record::check_not_future(&r, self.received_ns).map(|()| r));
        let rejection = match checked {
            Ok(r) => return out.push(Item::Record(Box::new(r))),
            Err(rejection) => rejection,
        };
        if self.singles_left > 0 || line.len() >= GROUP_RAW_BYTES {
            self.singles_left = self.singles_left.saturating_sub(1);
            let d = rejection.into_dead_letter(line, self.received_ns);
            self.emit(d, position, out);
            return;
        }
        if self.group.payload.len() + line.len() + 1 > GROUP_RAW_BYTES {
            self.flush(out);
        }
        let g = &mut self.group;
        if g.lines == 0 {
            g.first = position;
        }
        // Only an element of a JSON array can hold a newline, as JSON
        // whitespace: a space keeps its meaning and the group's separators.
        g.payload
            .extend(line.iter().map(|&b| if b == b'\n' { b' ' } else { b }));
        g.payload.push(b'\n');
        g.lines += 1;
        *g.reasons.entry(rejection.reason.to_owned()).or_default() += 1;
        if let Some(ts) = rejection.key_ts(self.received_ns) {
            // The latest: retention keeps the group until its newest line
            // is past the period.
            g.own_ts = Some(g.own_ts.map_or(ts, |t| t.max(ts)));
        }
    }

    /// Adds a dead letter of its own that stands for the next line of the
    /// request (such as a stream's `line_too_long`).
    pub fn push_letter(&mut self, d: DeadLetter, out: &mut Vec<Item>) {
        let position = self.position;
        self.position += 1;
        self.emit(d, position, out);
    }

    /// Adds the dead letter of the line (or group whose first line is) at
    /// `position`, with its key id: one keyed by its receipt gets an id
    /// scoped to the request and that place; one keyed by its own
    /// timestamp keeps the hash of its bytes, made distinct when repeated.
    fn emit(&mut self, mut d: DeadLetter, position: u64, out: &mut Vec<Item>) {
        if d.keyed_by_receipt {
            let request = match self.request {
                Some(h) => h,
                None => *self.request.insert((self.request_hash)()),
            };
            d.id = record::receipt_scoped_id(&request, position, &d.id);
        } else {
            self.distinct(&mut d);
        }
        out.push(Item::DeadLetter(d));
    }

    /// Gives a dead letter keyed by its own timestamp that was seen before
    /// in this request (the same line, or group of lines, again) an id of
    /// its own, derived from the first's and its rank: each occurrence is
    /// stored and counted, and a redelivered request still lands on the
    /// same keys.
    fn distinct(&mut self, d: &mut DeadLetter) {
        let n = self.seen.entry(d.id.clone()).or_insert(0);
        if *n > 0 {
            let id = blake3::Hasher::new_derive_key("fdb-sink dead-letter occurrence")
                .update(d.id.as_bytes())
                .update(&n.to_le_bytes())
                .finalize();
            d.id = id.to_hex()[..32].to_owned();
        }
        *n += 1;
    }

    fn flush(&mut self, out: &mut Vec<Item>) {
        let g = std::mem::take(&mut self.group);
        if g.lines > 0 {
            let d = record::group_dead_letter(
                &g.payload,
                g.lines,
                g.reasons,
                g.own_ts,
                self.received_ns,
            );
            self.emit(d, g.first, out);
        }
    }

    /// Adds the group still open, at the end of the request.
    pub fn finish(&mut self, out: &mut Vec<Item>) {
        self.flush(out);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(lines: &[&[u8]], singles: usize) -> Vec<Item> {
        run_in(b"request", lines, singles)
    }

    /// [`run`] for the request whose bytes are `request`.
    fn run_in(request: &[u8], lines: &[&[u8]], singles: usize) -> Vec<Item> {
        let keys = Keys::default();
        let hash = || blake3::hash(request);
        // Received 2026-11-28T00:00:00Z.
        let mut v = Validator::with_singles(&keys, 1_795_824_000_000_000_000, &hash, singles);
        let mut out = Vec::new();
        for l in lines {
            v.push(l, &mut out);
        }
        v.finish(&mut out);
        out
    }

    fn letters(items: &[Item]) -> Vec<&DeadLetter> {
        items
            .iter()
            .filter_map(|i| match i {
                Item::DeadLetter(d) => Some(d),
                Item::Record(_) => None,
            })
            .collect()
    }

    #[test]
    fn a_group_is_keyed_by_the_latest_timestamp_of_its_lines() {
        let lines: [&[u8]; 4] = [
            b"{\"timestamp\":\"2026-11-26T18:00:00Z\",\"n\":1}",
            b"{\"timestamp\":\"2020-01-01T00:00:00Z\",\"n\":2}",
            b"{\"timestamp\":\"2026-11-27T09:00:00Z\",\"n\":3}",
            // Far ahead of its receipt: not the group's time (it would
            // keep the group past retention).
            b"{\"timestamp\":\"2199-01-01T00:00:00Z\",\"n\":4}",
        ];
        let items = run(&lines, 0);
        let dls = letters(&items);
        assert_eq!(dls.len(), 1, "one group");
        let latest = crate::timespec::parse_time_ns("2026-11-27T09:00:00Z").expect("time");
        assert_eq!(dls[0].ts_ns, latest, "kept until its newest line is old");
    }

    #[test]
    fn invalid_lines_past_the_singles_are_grouped_with_their_exact_bytes() {
        let many: Vec<Vec<u8>> = (0..30_000u32)
            .map(|i| {
                if i % 7 == 0 {
                    vec![0xff, b'x', (i % 200) as u8 + 32]
                } else {
                    format!("[{i}]").into_bytes()
                }
            })
            .collect();
        let lines: Vec<&[u8]> = many.iter().map(Vec::as_slice).collect();
        let items = run(&lines, 10);
        let dls = letters(&items);
        assert!(
            dls.len() < 10 + 30_000 * 8 / GROUP_RAW_BYTES + 2,
            "{}",
            dls.len()
        );
        let mut total = 0;
        let mut all = Vec::new();
        for d in &dls {
            total += d.line_count();
            let bytes = d.raw_bytes().expect("base64");
            assert!(d.to_json().len() <= crate::store::limits::MAX_VALUE_BYTES);
            if d.lines.is_some() {
                assert_eq!(d.reason, record::reason::GROUPED);
                all.extend_from_slice(&bytes);
            } else {
                all.extend_from_slice(&bytes);
                all.push(b'\n');
            }
        }
        assert_eq!(total, 30_000);
        let expected: Vec<u8> = lines.iter().flat_map(|l| [*l, b"\n"].concat()).collect();
        assert_eq!(all, expected, "every byte kept, in order");
        let again = run(&lines, 10);
        let ids = |i: &[Item]| letters(i).iter().map(|d| d.id.clone()).collect::<Vec<_>>();
        assert_eq!(ids(&items), ids(&again), "the same request, the same keys");
    }

    #[test]
    fn a_line_or_group_repeated_in_a_request_gets_a_key_per_occurrence() {
        let lines: Vec<&[u8]> = vec![&b"1"[..]; 100_000];
        let items = run(&lines, 5);
        let dls = letters(&items);
        let ids: std::collections::HashSet<&str> = dls.iter().map(|d| d.id.as_str()).collect();
        assert_eq!(ids.len(), dls.len(), "every occurrence has its own key");
        assert_eq!(dls.iter().map(|d| d.line_count()).sum::<u64>(), 100_000);
        let ids = |items: &[Item]| {
            letters(items)
                .iter()
                .map(|d| d.id.clone())
                .collect::<Vec<_>>()
        };
        assert_eq!(ids(&items), ids(&run(&lines, 5)), "the same request again");
    }

    /// Without a timestamp of their own, the same lines in another request
    /// are other refusals: other ids. With one, they keep the ids of their
    /// bytes (their timestamp tells them apart).
    #[test]
    fn dead_letters_keyed_by_receipt_have_ids_of_their_request() {
        let lines: Vec<&[u8]> = vec![
            b"not json",
            b"{\"timestamp\":\"2026-11-27T09:00:00Z\",\"n\":1}",
        ];
        let ids = |request: &[u8]| {
            letters(&run_in(request, &lines, 5))
                .iter()
                .map(|d| (d.keyed_by_receipt, d.id.clone()))
                .collect::<Vec<_>>()
        };
        let (a, b) = (ids(b"one"), ids(b"two"));
        assert_eq!(a, ids(b"one"));
        assert!(a[0].0 && a[0].1 != b[0].1, "{a:?} {b:?}");
        assert!(!a[1].0 && a[1] == b[1], "{a:?} {b:?}");
        assert_eq!(
            a[1].1,
            record::dead_letter(lines[1], "x", String::new(), Some(0), 0).id
        );
    }
}
