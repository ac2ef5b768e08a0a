//! Which paths hold the same content (the `by_checksum` index); the history
//! of one path is in [`super::history`].
//!
//! Role `admin` sees the whole tenant. Role `user` sees only what its own
//! records show: a path only when one of its own records at that path had
//! the content, and `last_seen` the latest such record, never another
//! user's.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use axum::Json;
use serde::{Deserialize, Serialize};

use super::auth::Caller;
use super::logs::{MAX_LIMIT, MAX_SCAN};
use super::{ApiError, ApiState};
use crate::audit;
use crate::keys::{Keys, PathTouch};
use crate::record::AuditRecord;
use crate::store::{Kv, RangeReq, ReadTxn, StoreError, StoreExt};
use crate::timespec::format_ns;

/// Query of `GET /api/v5/files/duplicates`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DuplicatesParams {
    pub checksum: String,
}

/// A path that held the content.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DuplicatePath {
    pub path: String,
    /// When an event last showed this content at this path (RFC 3339); for
    /// role `user`, the latest of the caller's own events.
    pub last_seen: String,
}

/// Answer of `GET /api/v5/files/duplicates`.
#[derive(Debug, Serialize, Deserialize)]
pub struct Duplicates {
    pub checksum: String,
    pub paths: Vec<DuplicatePath>,
    /// False when the answer was cut short: more than
    /// [`MAX_DUPLICATE_PATHS`] paths hold the content, or (role `user`)
    /// checking which of them the caller's own records show read
    /// [`MAX_SCAN`] index entries and records.
    pub complete: bool,
}

/// Paths listed at most.
pub const MAX_DUPLICATE_PATHS: usize = 1000;

/// What one user's own records say about content at a path.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum OwnSight {
    /// The latest of the user's records at the path with the content (ns).
    Seen(u64),
    /// None of the user's records at the path has the content.
    NotSeen,
    /// The budget ran out before the answer was known.
    Unknown,
}

/// Entries read ahead for a path before the first page of an index read
/// needs them; a path whose window was too small gets one 4 times larger.
const READ_AHEAD_FIRST: usize = 16;

/// Entries of one path's `by_path` range, newest first: those below `end`,
/// read with `limit`.
struct Window {
    end: Vec<u8>,
    limit: usize,
    rows: Vec<Kv>,
    /// How many of `rows` are the user's.
    own: usize,
}

impl Window {
    /// The newest `want` entries below `end`, when this window holds what a
    /// read of them returns: `end` is the window's end or one of its keys,
    /// and the window holds `want` entries below it, or every entry of the
    /// range below it.
    fn serve(&self, end: &[u8], want: usize) -> Option<&[Kv]> {
        let from = if end == self.end.as_slice() {
            0
        } else {
            self.rows.iter().position(|(k, _)| k.as_slice() == end)? + 1
        };
        let rest = &self.rows[from..];
        let whole = self.rows.len() < self.limit;
        (rest.len() >= want || whole).then(|| &rest[..want.min(rest.len())])
    }

    /// True when the window answers every read at its end asking at most
    /// `want` entries.
    fn enough(&self, want: usize) -> bool {
        self.rows.len() < self.limit || self.limit >= want
    }
}

/// What a read is waiting for.
enum Need {
    /// Entries of the path being decided, `want` of them below `end`,
    /// with `left` of the budget left.
    Entries {
        end: Vec<u8>,
        want: usize,
        left: usize,
    },
    /// Records of the path being decided.
    Records(Vec<Vec<u8>>),
}

/// The answer for one path, or what it waits for.
enum Step {
    /// The answer, and the budget left.
    Done(OwnSight, usize),
    Wait(Need),
}

/// One user's view of the paths holding one content: each path is decided
/// from its `by_path` entries newest first and the stored records of the
/// user's entries, paths in order, one budget of entries and records for
/// all of them. Reads are made ahead, for many paths together (one round
/// trip on FoundationDB for many paths), and each path is decided from what
/// was read exactly as reading its entries page by page would decide it.
///
/// Rows read (entries and records) stay within twice the budget
/// ([`OwnView::allowance`]). Deciding reads at most the budget of them:
/// each row it reads takes a unit of the budget, and a row read ahead that
/// deciding then takes is not read again. Reading ahead is made only while
/// the rows read, those read ahead and the budget left fit in twice the
/// budget. Twice the budget keeps a request's reads, its time in a
/// transaction and its memory of the order of the budget, and leaves room
/// to read ahead for many paths with each round trip.
struct OwnView<'a> {
    keys: &'a Keys,
    tenant: &'a str,
    user: &'a str,
    checksum: &'a str,
    /// Paths and the tenant's last sight of the content at each (ns).
    paths: &'a [(String, u64)],
    /// Windows read of each path.
    windows: Vec<Vec<Window>>,
    /// Records read: the value of each record key (`None`: not stored).
    records: HashMap<Vec<u8>, Option<Vec<u8>>>,
    /// Rows (entries and records) read so far.
    read: usize,
    /// Rows read at most: twice the budget.
    allowance: usize,
    /// The most entries one read of the path being decided returned: later
    /// paths, which tend to be alike, get windows at least as large.
    widest: usize,
}

impl<'a> OwnView<'a> {
    /// The end of the first page of path `i`: no entry newer than the
    /// tenant's last sight of the content has it.
    fn first_end(&self, i: usize) -> Vec<u8> {
        let (path, last_seen) = &self.paths[i];
        let bound = i64::try_from(*last_seen)
            .unwrap_or(i64::MAX)
            .saturating_add(1);
        self.keys.by_path(self.tenant, path, bound, "")
    }

    /// The stored record of an entry of the user's, with the entry's time,
    /// or `None` for another user's entry.
    fn own_record(&self, key: &[u8], value: &[u8]) -> Result<Option<(i64, Vec<u8>)>, StoreError> {
        let touch = PathTouch::decode(value).map_err(|e| StoreError::Corrupt(e.to_string()))?;
        if touch.user != self.user {
            return Ok(None);
        }
        let key = self
            .keys
            .decode_by_path(key)
            .map_err(|e| StoreError::Corrupt(e.to_string()))?;
        let record = self.keys.audit_log(
            self.tenant,
            self.user,
            &touch.session,
            key.ts_ns,
            &key.event_id,
        );
        Ok(Some((key.ts_ns, record)))
    }

    /// When the user's own records last showed the content at path `i`:
    /// its entries newest first, and the stored record of each entry of the
    /// user's (the entry names the user, the record holds the path and
    /// checksum). Every entry and every record read takes one unit of
    /// `budget`. Decided from what was read, or what it waits for.
    fn decide(&self, i: usize, mut budget: usize) -> Result<Step, StoreError> {
        let path = self.paths[i].0.as_str();
        let mut end = self.first_end(i);
        loop {
            if budget == 0 {
                return Ok(Step::Done(OwnSight::Unknown, 0));
            }
            // Half the budget for entries, so that their records fit in the rest.
            let want = (budget / 2).clamp(1, MAX_LIMIT);
            let Some(rows) = self.windows[i]
                .iter()
                .rev()
                .find_map(|w| w.serve(&end, want))
            else {
                let need = Need::Entries {
                    end,
                    want,
                    left: budget,
                };
                return Ok(Step::Wait(need));
            };
            budget = budget.saturating_sub(rows.len());
            let mut own = Vec::new();
            for (k, v) in rows {
                own.extend(self.own_record(k, v)?);
            }
            let readable = own.len().min(budget);
            budget -= readable;
            let missing: Vec<Vec<u8>> = own[..readable]
                .iter()
                .filter(|(_, key)| !self.records.contains_key(key))
                .map(|(_, key)| key.clone())
                .collect();
            if !missing.is_empty() {
                return Ok(Step::Wait(Need::Records(missing)));
            }
            for (ts_ns, key) in &own[..readable] {
                // An entry whose record is no longer stored shows nothing.
                let Some(Some(value)) = self.records.get(key) else {
                    continue;
                };
                let record = AuditRecord::from_json(value).map_err(|e| {
                    StoreError::Corrupt(format!("record {}: {e}", crate::keys::printable(key)))
                })?;
                if record.event.path == path
                    && record.event.checksum.as_deref() == Some(self.checksum)
                {
                    let seen = OwnSight::Seen(u64::try_from(*ts_ns).unwrap_or(0));
                    return Ok(Step::Done(seen, budget));
                }
            }
            if readable < own.len() {
                return Ok(Step::Done(OwnSight::Unknown, budget));
            }
            match rows.last() {
                Some((oldest, _)) if rows.len() == want => end = oldest.clone(),
                _ => return Ok(Step::Done(OwnSight::NotSeen, budget)),
            }
        }
    }

    /// Rows that may be read ahead now, `left` of the budget left: what was
    /// read, what is read ahead and what deciding may still read (at most
    /// `left`) stay within [`OwnView::allowance`]; and no more than
    /// deciding may still read.
    fn room(&self, left: usize) -> usize {
        self.allowance.saturating_sub(self.read + left).min(left)
    }

    /// Reads what path `at` waits for (deciding it from `budget`), which is
    /// always read. Its entries are read together with windows of the
    /// paths after it, and the records of the user's entries among them
    /// with one batched read: all that deciding `at` asks for next, and the
    /// others as [`OwnView::room`] allows. Each entry read ahead is planned
    /// with room for its record.
    fn read(
        &mut self,
        txn: &mut dyn ReadTxn,
        at: usize,
        need: Need,
        budget: usize,
    ) -> Result<(), StoreError> {
        let (end, want, left) = match need {
            Need::Records(keys) => return self.read_records(txn, keys),
            Need::Entries { end, want, left } => (end, want, left),
        };
        let room = self.room(left);
        let mut plan = room;
        // A path that needs more entries again gets a window 4 times the
        // last one (its later pages read from it), at most what deciding it
        // can read.
        let grown = self.windows[at].iter().map(|w| w.limit * 4).max();
        let extra = grown.map_or(0, |g| g.min(left).saturating_sub(want));
        let extra = extra.min(plan / 2);
        plan -= 2 * extra;
        let mut wanted = vec![(at, end, want + extra)];
        // No later path asks more entries of its first page than this.
        let most = (left / 2).clamp(1, MAX_LIMIT);
        for j in at + 1..self.paths.len() {
            let end = self.first_end(j);
            let read = self.windows[j].iter().filter(|w| w.end == end);
            if read.clone().any(|w| w.enough(most)) {
                continue;
            }
            let (last, own) = read
                .max_by_key(|w| w.limit)
                .map_or((0, 0), |w| (w.limit, w.own));
            let grown = match last {
                0 => READ_AHEAD_FIRST,
                _ => (last * 4).max(self.widest),
            };
            // Each entry is planned with room for a record: for all of them
            // on a path not read yet, else for the user's share of the last
            // window (`num / den` rows an entry).
            let (num, den) = if last == 0 {
                (2, 1)
            } else {
                (last + own, last)
            };
            let limit = grown.min(most).min(plan * den / num);
            // A window no larger than the last one read adds nothing.
            if limit <= last {
                break;
            }
            plan = plan.saturating_sub((limit * num).div_ceil(den));
            wanted.push((j, end, limit));
        }
        let ranges: Vec<_> = wanted
            .iter()
            .map(|(j, ..)| self.keys.by_path_range(self.tenant, &self.paths[*j].0))
            .collect();
        let reqs: Vec<RangeReq<'_>> = wanted
            .iter()
            .zip(&ranges)
            .map(|((_, end, limit), range)| RangeReq::new(&range.begin, end, *limit, true))
            .collect();
        let read = txn.get_ranges(&reqs)?;
        // The entries read ahead: all but the `want` that deciding asks for.
        let mut ahead_read = 0;
        let mut own = Vec::new();
        for ((j, end, limit), rows) in wanted.into_iter().zip(read) {
            self.read += rows.len();
            ahead_read += rows.len();
            if j == at {
                self.widest = self.widest.max(rows.len());
                ahead_read -= rows.len().min(want);
            }
            // An entry that does not decode fails the request only when
            // deciding its path reads it.
            let before = own.len();
            for (k, v) in &rows {
                if let Ok(Some((_, key))) = self.own_record(k, v) {
                    own.push(key);
                }
            }
            let mine = own.len() - before;
            self.windows[j].push(Window {
                end,
                limit,
                rows,
                own: mine,
            });
        }
        let mut records = match self.decide(at, budget)? {
            Step::Wait(Need::Records(keys)) => keys,
            _ => Vec::new(),
        };
        // Records read ahead, paths in order.
        let mut ahead = room.saturating_sub(ahead_read);
        let mut asked: HashSet<Vec<u8>> = records.iter().cloned().collect();
        for key in own {
            if ahead == 0 {
                break;
            }
            if !self.records.contains_key(&key) && asked.insert(key.clone()) {
                records.push(key);
                ahead -= 1;
            }
        }
        self.read_records(txn, records)
    }

    fn read_records(
        &mut self,
        txn: &mut dyn ReadTxn,
        keys: Vec<Vec<u8>>,
    ) -> Result<(), StoreError> {
        if keys.is_empty() {
            return Ok(());
        }
        self.read += keys.len();
        let refs: Vec<&[u8]> = keys.iter().map(Vec::as_slice).collect();
        let values = txn.get_many(&refs)?;
        self.records.extend(keys.into_iter().zip(values));
        Ok(())
    }
}

/// The paths that held content `checksum` (at most
/// [`MAX_DUPLICATE_PATHS`]), and whether that is all of them. With
/// `only_user`, only the paths that user's own records show, each with the
/// latest such record, all of them deciding within one `budget` of index
/// entries and records read.
fn duplicate_paths(
    txn: &mut dyn ReadTxn,
    keys: &Keys,
    tenant: &str,
    checksum: &str,
    only_user: Option<&str>,
    mut budget: usize,
) -> Result<(Vec<DuplicatePath>, bool), StoreError> {
    let mut found = audit::checksum_paths(txn, keys, tenant, checksum, MAX_DUPLICATE_PATHS + 1)?;
    let mut complete = found.len() <= MAX_DUPLICATE_PATHS;
    found.truncate(MAX_DUPLICATE_PATHS);
    let listed = |path: &str, seen: u64| DuplicatePath {
        path: path.to_owned(),
        last_seen: format_ns(i64::try_from(seen).unwrap_or(i64::MAX)),
    };
    let Some(user) = only_user else {
        let out = found
            .iter()
            .map(|(path, seen)| listed(path, *seen))
            .collect();
        return Ok((out, complete));
    };
    let mut view = OwnView {
        keys,
        tenant,
        user,
        checksum,
        paths: &found,
        windows: found.iter().map(|_| Vec::new()).collect(),
        records: HashMap::new(),
        read: 0,
        allowance: budget.saturating_mul(2),
        widest: 0,
    };
    let mut out = Vec::new();
    let mut i = 0;
    while i < found.len() {
        match view.decide(i, budget)? {
            Step::Wait(need) => view.read(txn, i, need, budget)?,
            Step::Done(sight, left) => {
                budget = left;
                match sight {
                    OwnSight::Seen(ts) => out.push(listed(&found[i].0, ts)),
                    OwnSight::NotSeen => {}
                    OwnSight::Unknown => {
                        complete = false;
                        break;
                    }
                }
                i += 1;
            }
        }
    }
    Ok((out, complete))
}

/// `GET /api/v5/files/duplicates?checksum=`.
pub async fn duplicates(
    State(state): State<Arc<ApiState>>,
    caller: Caller,
    params: Result<Query<DuplicatesParams>, QueryRejection>,
) -> Result<Json<Duplicates>, ApiError> {
    let Query(p) = params?;
    if let Err(why) = file_event::check_checksum(&p.checksum) {
        return Err(ApiError::bad_request(format!(
            "checksum {:?} {why}: write it as records do, e.g. sha256:<64 hex digits>",
            p.checksum
        )));
    }
    let checksum = p.checksum.clone();
    let tenant = caller.tenant.clone();
    let only_user = (!caller.is_admin()).then(|| caller.user.clone());
    let (paths, complete) = state
        .blocking(move |store, keys| {
            Ok(store.read(|txn| {
                // Role `user`: one budget of index entries and records for
                // the whole request, however many paths hold the content.
                duplicate_paths(
                    txn,
                    keys,
                    &tenant,
                    &checksum,
                    only_user.as_deref(),
                    MAX_SCAN,
                )
            })?)
        })
        .await?;
    Ok(Json(Duplicates {
        checksum: p.checksum,
        paths,
        complete,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::counting::CountingReads;
    use crate::store::embedded::EmbeddedStore;

    /// The paths one user sees, deciding each path by reading its entries
    /// page by page and their records: what [`duplicate_paths`] answers.
    fn page_by_page(
        txn: &mut dyn ReadTxn,
        keys: &Keys,
        (tenant, user): (&str, &str),
        checksum: &str,
        mut budget: usize,
    ) -> Result<(Vec<DuplicatePath>, bool), StoreError> {
        let mut found =
            audit::checksum_paths(txn, keys, tenant, checksum, MAX_DUPLICATE_PATHS + 1)?;
        let mut complete = found.len() <= MAX_DUPLICATE_PATHS;
        found.truncate(MAX_DUPLICATE_PATHS);
        let mut out = Vec::new();
        'paths: for (path, last_seen) in found {
            let range = keys.by_path_range(tenant, &path);
            let bound = i64::try_from(last_seen)
                .unwrap_or(i64::MAX)
                .saturating_add(1);
            let mut end = keys.by_path(tenant, &path, bound, "");
            let sight = loop {
                if budget == 0 {
                    break OwnSight::Unknown;
                }
                let want = (budget / 2).clamp(1, MAX_LIMIT);
                let rows = txn.get_range(&range.begin, &end, want, true)?;
                budget = budget.saturating_sub(rows.len());
                let mut own = Vec::new();
                for (k, v) in &rows {
                    let touch = PathTouch::decode(v).expect("touch");
                    if touch.user != user {
                        continue;
                    }
                    let key = keys.decode_by_path(k).expect("key");
                    own.push((
                        key.ts_ns,
                        keys.audit_log(tenant, user, &touch.session, key.ts_ns, &key.event_id),
                    ));
                }
                let readable = own.len().min(budget);
                budget -= readable;
                for (ts_ns, key) in &own[..readable] {
                    let Some(value) = txn.get(key)? else { continue };
                    let record = AuditRecord::from_json(&value).expect("record");
                    if record.event.path == path
                        && record.event.checksum.as_deref() == Some(checksum)
                    {
                        out.push(DuplicatePath {
                            path: path.clone(),
                            last_seen: format_ns(*ts_ns),
                        });
                        continue 'paths;
                    }
                }
                if readable < own.len() {
                    break OwnSight::Unknown;
                }
                match rows.last() {
                    Some((oldest, _)) if rows.len() == want => end = oldest.clone(),
                    _ => break OwnSight::NotSeen,
                }
            };
            if sight == OwnSight::Unknown {
                complete = false;
                break;
            }
        }
        Ok((out, complete))
    }

    /// A `file-event/1` line of tenant `t` with content `checksum`.
    fn event(user: &str, seq: usize, secs: u64, path: &str, checksum: &str) -> String {
        serde_json::json!({
            "schema": "file-event/1",
            "event_id": uuid::Uuid::now_v7().to_string(),
            "monitor_id": "0190b5a0-0000-7000-8000-000000000007",
            "seq": seq,
            "timestamp": format!("2026-11-26T{:02}:{:02}:{:02}Z", secs / 3600, secs / 60 % 60, secs % 60),
            "event_type": "update", "kind": "file", "path": path,
            "checksum": checksum,
            "tenant_id": "t", "user_id": user, "session_id": format!("s-{user}"),
        })
        .to_string()
    }

    fn write(store: &EmbeddedStore, keys: &Keys, lines: &[String]) {
        let items: Vec<_> = lines
            .iter()
            .map(|l| crate::record::validate_line(keys, l.as_bytes(), 0))
            .collect();
        for chunk in items.chunks(2000) {
            audit::write_items(store, keys, chunk, Default::default()).expect("write");
        }
    }

    const C: &str = "sha256:00000000000000000000000000000000000000000000000000000000000000c1";
    const OTHER: &str = "sha256:00000000000000000000000000000000000000000000000000000000000000c2";

    /// A user's duplicates among 1000 paths cost a bounded number of read
    /// calls, not one or two per path, and answer as deciding each path
    /// page by page does.
    #[test]
    fn a_users_duplicates_read_many_paths_together() {
        let dir = tempfile::tempdir().expect("dir");
        let store = EmbeddedStore::open(dir.path()).expect("open");
        let keys = Keys::default();
        // 1000 paths with the content: alice's own at every third path,
        // bob's elsewhere; some paths touched again and again by bob.
        let mut lines = Vec::new();
        for i in 0..1000u64 {
            let path = format!("p/{i:04}.txt");
            let user = if i % 3 == 0 { "alice" } else { "bob" };
            lines.push(event(user, lines.len() + 1, 10 + i, &path, C));
            for j in 0..(i % 7) * (i % 5) {
                lines.push(event("bob", lines.len() + 1, 2000 + i + j, &path, OTHER));
            }
        }
        write(&store, &keys, &lines);
        let (batched, calls) = store
            .read(|t| {
                let mut c = CountingReads::new(t);
                let r = duplicate_paths(&mut c, &keys, "t", C, Some("alice"), MAX_SCAN)?;
                Ok((r, c.calls()))
            })
            .expect("read");
        let reference = store
            .read(|t| page_by_page(t, &keys, ("t", "alice"), C, MAX_SCAN))
            .expect("read");
        assert_eq!(batched, reference);
        assert_eq!(batched.0.len(), 334);
        assert!(batched.1);
        // One read per path would be 1000 or more.
        assert!(calls <= 12, "1000 paths made {calls} read calls");
    }

    /// A path another user touched thousands of times is read in a few
    /// growing windows, not one read per page of entries.
    #[test]
    fn a_busy_path_costs_few_read_calls() {
        let dir = tempfile::tempdir().expect("dir");
        let store = EmbeddedStore::open(dir.path()).expect("open");
        let keys = Keys::default();
        let mut lines: Vec<String> = (0..6000)
            .map(|i| event("bob", i + 1, 10 + i as u64, "a/busy.rs", C))
            .collect();
        lines.push(event("alice", 6001, 7000, "b/mine.rs", C));
        write(&store, &keys, &lines);
        for budget in [MAX_SCAN, 5000] {
            let (got, calls) = store
                .read(|t| {
                    let mut c = CountingReads::new(t);
                    let r = duplicate_paths(&mut c, &keys, "t", C, Some("alice"), budget)?;
                    Ok((r, c.calls()))
                })
                .expect("read");
            let want = store
                .read(|t| page_by_page(t, &keys, ("t", "alice"), C, budget))
                .expect("read");
            assert_eq!(got, want, "budget {budget}");
            // Page by page: 6 pages of 1000 entries, or 10 pages as the
            // budget runs out.
            assert!(calls <= 6, "budget {budget}: {calls} read calls");
        }
    }

    /// Many paths of many entries of the user's own: reading ahead keeps a
    /// request's entries and records read within twice its budget, in few
    /// read calls.
    #[test]
    fn read_ahead_stays_within_the_budget() {
        let dir = tempfile::tempdir().expect("dir");
        let store = EmbeddedStore::open(dir.path()).expect("open");
        let keys = Keys::default();
        let (npaths, touches) = (50, 2000);
        let mut lines = Vec::new();
        for i in 0..npaths {
            let path = format!("p/{i:02}.txt");
            for j in 0..touches {
                lines.push(event("alice", lines.len() + 1, 10 + j, &path, C));
            }
        }
        write(&store, &keys, &lines);
        let mut over = Vec::new();
        for budget in [MAX_SCAN, 5000] {
            let (got, calls, rows) = store
                .read(|t| {
                    let mut c = CountingReads::new(t);
                    let r = duplicate_paths(&mut c, &keys, "t", C, Some("alice"), budget)?;
                    Ok((r, c.calls(), c.rows))
                })
                .expect("read");
            let want = store
                .read(|t| page_by_page(t, &keys, ("t", "alice"), C, budget))
                .expect("read");
            assert_eq!(got, want, "budget {budget}");
            // The index of the paths holding the content is one row a path.
            let rows = rows - npaths;
            println!("budget {budget}: {rows} rows read, {calls} read calls");
            if rows > 2 * budget || calls > 12 {
                over.push(format!("budget {budget}: {rows} rows, {calls} read calls"));
            }
        }
        assert!(over.is_empty(), "{over:?}");
    }

    /// Random paths, users, touches and budgets (many cut short): the
    /// answer is the page-by-page one, complete or not, and the entries and
    /// records read stay within twice the budget. `FUZZ_ITERS` and
    /// `FUZZ_SEED` run more or other cases.
    #[test]
    fn answers_as_page_by_page_for_any_budget() {
        for mut case in crate::api::counting::fuzz_cases(3) {
            let (seed0, it) = (case.seed, case.it);
            let mut next = |m: u64| case.below(m);
            let dir = tempfile::tempdir().expect("dir");
            let store = EmbeddedStore::open(dir.path()).expect("open");
            let keys = Keys::default();
            let users = ["alice", "bob", "carol"];
            let mut lines = Vec::new();
            let npaths = 1 + next(120);
            for i in 0..npaths {
                let path = format!("d/{i:03}");
                let busy = [1u64, 5, 40, 300][next(4) as usize];
                for _ in 0..1 + next(busy) {
                    let user = users[next(3) as usize];
                    let sum = if next(3) == 0 { OTHER } else { C };
                    let secs = next(80_000);
                    lines.push(event(user, lines.len() + 1, secs, &path, sum));
                }
            }
            write(&store, &keys, &lines);
            for budget in [1, 2, 7, 60, 500, 3000, MAX_SCAN] {
                for user in users {
                    let (got, (calls, rows)) = store
                        .read(|t| {
                            let mut c = CountingReads::new(t);
                            let r = duplicate_paths(&mut c, &keys, "t", C, Some(user), budget)?;
                            Ok((r, (c.calls(), c.rows)))
                        })
                        .expect("read");
                    let want = store
                        .read(|t| page_by_page(t, &keys, ("t", user), C, budget))
                        .expect("read");
                    assert_eq!(
                        got, want,
                        "seed {seed0} it {it}: {npaths} paths, budget {budget}, {user}"
                    );
                    // The index of the paths holding the content is one
                    // row a path.
                    let rows = rows.saturating_sub(npaths as usize);
                    assert!(rows <= 2 * budget, "budget {budget}: {rows} rows read");
                    assert!(calls <= 20, "budget {budget}: {calls} read calls");
                }
            }
        }
    }
}
