//! Turns raw kernel events into the ordered stream of logical events.
//!
//! Rules (each one is a test case below):
//! - Output order is the order in which things happened; nothing overtakes an
//!   earlier event (a FIFO queue whose head waits for its deadline).
//! - A new regular file's `create` waits for its first close-after-write (at
//!   most `debounce`), so it carries the written size.
//! - Consecutive completed writes to one file merge into one `update` while it
//!   is still queued (hold `debounce` after each close, at most `MAX_HOLD` in
//!   all). A delete, move or rescan seals everything queued before it, so no
//!   write is ever merged across one.
//! - `create` and `delete` are never merged away: a file that existed,
//!   changed or vanished is always reported.
//! - Data written without a close (mmap, a long-running writer) is reported
//!   once it has been quiet... or at the latest every `SETTLE`.

use std::collections::{HashMap, VecDeque};
use std::time::{Duration, Instant};

use crate::index::{is_within, Entry, Index};

pub type RelPath = Vec<u8>;

/// Upper bound for holding a merged `update` from its first write.
pub const MAX_HOLD: Duration = Duration::from_secs(1);
/// A file modified without a close is reported after this long.
pub const SETTLE: Duration = Duration::from_secs(1);

/// One logical event, resolved against the index and the disk when emitted.
#[derive(Debug, Clone)]
pub enum Logical {
    Create {
        path: RelPath,
        dir_hint: bool,
        stat: Option<Entry>,
        /// Inode the writer closed, as seen when its close was handled: the
        /// content is read only from that inode.
        written: Option<u64>,
    },
    Update {
        path: RelPath,
        stat: Option<Entry>,
        /// As for `Create`: the inode of the latest write merged in.
        written: Option<u64>,
    },
    Delete {
        path: RelPath,
        dir_hint: bool,
    },
    Move {
        from: RelPath,
        to: RelPath,
    },
    /// Bring the index below `base` in line with `snapshot`, emitting the
    /// differences (a new or moved-in directory, a rescan, a poll).
    Reconcile {
        base: RelPath,
        snapshot: Box<Index>,
        rescan: bool,
    },
    Access {
        path: RelPath,
    },
    /// An access that turned out to be a writer's open.
    Cancelled,
}

impl Logical {
    /// The path this event concerns (the source for a move).
    pub fn path(&self) -> &[u8] {
        match self {
            Logical::Create { path, .. }
            | Logical::Update { path, .. }
            | Logical::Delete { path, .. }
            | Logical::Access { path } => path,
            Logical::Move { from, .. } => from,
            Logical::Reconcile { base, .. } => base,
            Logical::Cancelled => b"",
        }
    }
}

#[derive(Debug)]
struct Pending {
    ev: Logical,
    deadline: Instant,
    first: Instant,
    received: Instant,
    awaiting_close: bool,
    /// Counted in `Coalescer::replacing`.
    counted: bool,
}

#[derive(Debug)]
pub struct Coalescer {
    debounce: Duration,
    queue: VecDeque<Pending>,
    head_id: u64,
    /// Path → id of its queued, still mergeable create/update.
    mergeable: HashMap<RelPath, u64>,
    /// Files modified since their last close (path → first modify).
    dirty: HashMap<RelPath, Instant>,
    /// Queued opens (path → id): cancelled if the opener writes.
    opens: HashMap<RelPath, u64>,
    /// Writes merged into an earlier queued event.
    pub coalesced: u64,
    /// When the kernel event being handled was received (for the latency
    /// metric); deadlines run from the time it is handled.
    pub received: Option<Instant>,
    /// The latest deadline popped so far: an event cannot go before the
    /// ones queued ahead of it.
    released: Option<Instant>,
    /// Paths a queued event removes or puts something else at (delete,
    /// move source and target, a name moved in), with how many such events
    /// are queued: a write queued before one of them is no longer what the
    /// path holds when it is reported.
    replacing: HashMap<RelPath, u32>,
}

/// The paths at which `ev` removes an entry or puts another one in place
/// (and everything below them).
pub fn replaced_paths(ev: &Logical) -> [Option<&[u8]>; 2] {
    match ev {
        Logical::Delete { path, .. } => [Some(path), None],
        Logical::Move { from, to } => [Some(from), Some(to)],
        // A name moved in from outside may replace what was there; a new
        // name's create follows the delete or move of what it replaces.
        Logical::Create { path, .. } => [Some(path), None],
        _ => [None, None],
    }
}

impl Coalescer {
    pub fn new(debounce: Duration) -> Coalescer {
        Coalescer {
            debounce,
            queue: VecDeque::new(),
            head_id: 0,
            mergeable: HashMap::new(),
            dirty: HashMap::new(),
            opens: HashMap::new(),
            coalesced: 0,
            received: None,
            released: None,
            replacing: HashMap::new(),
        }
    }

    /// Whether an event queued now removes or replaces `p` (or a directory
    /// above it).
    pub fn replaced_later(&self, p: &[u8]) -> bool {
        !self.replacing.is_empty()
            && (self.replacing.contains_key(p)
                || crate::index::ancestors(p).any(|a| self.replacing.contains_key(a)))
    }

    fn count_replacing(&mut self, ev: &Logical, add: bool) {
        for p in replaced_paths(ev).into_iter().flatten() {
            if add {
                *self.replacing.entry(p.to_vec()).or_insert(0) += 1;
            } else if let Some(n) = self.replacing.get_mut(p) {
                *n -= 1;
                if *n == 0 {
                    self.replacing.remove(p);
                }
            }
        }
    }

    pub fn len(&self) -> usize {
        self.queue.len()
    }

    pub fn is_empty(&self) -> bool {
        self.queue.is_empty() && self.dirty.is_empty()
    }

    fn push(&mut self, ev: Logical, deadline: Instant, now: Instant, awaiting_close: bool) -> u64 {
        let id = self.head_id + self.queue.len() as u64;
        // A new file's create (awaiting its close) replaces nothing: the
        // delete or move of what was there is queued before it.
        let counted = !awaiting_close;
        if counted {
            self.count_replacing(&ev, true);
        }
        self.queue.push_back(Pending {
            ev,
            deadline,
            first: now,
            received: self.received.unwrap_or(now).min(now),
            awaiting_close,
            counted,
        });
        id
    }

    fn get_mut(&mut self, id: u64) -> Option<&mut Pending> {
        if id < self.head_id {
            return None;
        }
        self.queue.get_mut((id - self.head_id) as usize)
    }

    /// Seals everything queued so far against merging.
    fn barrier(&mut self) {
        if !self.mergeable.is_empty() {
            self.mergeable.clear();
        }
    }

    /// A path appeared. Regular files (`awaiting_close`) wait for their first
    /// close-after-write; everything else is ready at once.
    pub fn create(
        &mut self,
        path: RelPath,
        dir_hint: bool,
        stat: Option<Entry>,
        awaiting_close: bool,
        now: Instant,
    ) {
        let deadline = if awaiting_close {
            now + self.debounce
        } else {
            now
        };
        self.mergeable.remove(&path);
        let id = self.push(
            Logical::Create {
                path: path.clone(),
                dir_hint,
                stat,
                written: None,
            },
            deadline,
            now,
            awaiting_close,
        );
        if awaiting_close {
            self.mergeable.insert(path, id);
        }
    }

    /// Data was written (not yet complete).
    pub fn modify(&mut self, path: RelPath, now: Instant) {
        self.cancel_open(&path);
        self.dirty.entry(path).or_insert(now);
    }

    /// An open followed by a write was a writer, not a read access.
    fn cancel_open(&mut self, path: &[u8]) {
        if self.opens.is_empty() {
            return;
        }
        if let Some(id) = self.opens.remove(path) {
            if let Some(p) = self.get_mut(id) {
                if matches!(p.ev, Logical::Access { .. }) {
                    p.ev = Logical::Cancelled;
                }
            }
        }
    }

    /// A writer closed the file: the write is complete. `written` is the
    /// inode the path held when the close was handled, if known.
    pub fn close_write(
        &mut self,
        path: RelPath,
        stat: Option<Entry>,
        written: Option<u64>,
        now: Instant,
    ) {
        self.cancel_open(&path);
        self.dirty.remove(&path);
        let debounce = self.debounce;
        if let Some(id) = self.mergeable.get(&path).copied() {
            let mut seal = false;
            let mut merged = false;
            if let Some(p) = self.get_mut(id) {
                match &mut p.ev {
                    Logical::Create {
                        stat: s,
                        written: w,
                        ..
                    } if p.awaiting_close => {
                        if stat.is_some() {
                            *s = stat;
                        }
                        *w = written;
                        p.awaiting_close = false;
                        p.deadline = now;
                        seal = true;
                    }
                    Logical::Update {
                        stat: s,
                        written: w,
                        ..
                    } => {
                        if stat.is_some() {
                            *s = stat;
                        }
                        *w = written;
                        p.deadline = (now + debounce).min(p.first + MAX_HOLD).max(p.deadline);
                        merged = true;
                    }
                    _ => seal = true,
                }
            }
            if merged {
                self.coalesced += 1;
                return;
            }
            self.mergeable.remove(&path);
            if seal {
                return;
            }
        }
        let id = self.push(
            Logical::Update {
                path: path.clone(),
                stat,
                written,
            },
            now + debounce,
            now,
            false,
        );
        self.mergeable.insert(path, id);
    }

    pub fn delete(&mut self, path: RelPath, dir_hint: bool, now: Instant) {
        if !self.dirty.is_empty() {
            self.dirty.retain(|p, _| !is_within(p, &path));
        }
        self.barrier();
        self.push(Logical::Delete { path, dir_hint }, now, now, false);
    }

    /// What a queued `create` of `path` that has not been looked at yet
    /// (no close, no `lstat`) is about: `e`, read where it was renamed to
    /// before the create could read it (`ln -sfn` creates a symlink under a
    /// temporary name and renames it over the old one at once). Without it,
    /// the create and the move would say "file", the kind assumed for a
    /// name that is gone.
    pub fn created_as(&mut self, path: &[u8], e: Entry) {
        let Some(id) = self.mergeable.get(path).copied() else {
            return;
        };
        if let Some(p) = self.get_mut(id) {
            if let Logical::Create {
                stat: s @ None,
                written: None,
                ..
            } = &mut p.ev
            {
                *s = Some(e);
            }
        }
    }

    pub fn moved(&mut self, from: RelPath, to: RelPath, now: Instant) {
        let moved: Vec<(RelPath, Instant)> = self
            .dirty
            .iter()
            .filter(|(p, _)| is_within(p, &from))
            .map(|(p, t)| (p.clone(), *t))
            .collect();
        for (p, t) in moved {
            self.dirty.remove(&p);
            let mut np = to.clone();
            np.extend_from_slice(&p[from.len()..]);
            self.dirty.insert(np, t);
        }
        self.barrier();
        self.push(Logical::Move { from, to }, now, now, false);
    }

    pub fn reconcile(&mut self, base: RelPath, snapshot: Index, rescan: bool, now: Instant) {
        self.barrier();
        self.push(
            Logical::Reconcile {
                base,
                snapshot: Box::new(snapshot),
                rescan,
            },
            now,
            now,
            false,
        );
    }

    /// Someone opened a file. Held for the window: if the opener writes, it
    /// was not a read access and is dropped.
    pub fn access(&mut self, path: RelPath, now: Instant) {
        let id = self.push(
            Logical::Access { path: path.clone() },
            now + self.debounce,
            now,
            false,
        );
        self.opens.insert(path, id);
    }

    /// Turns files modified without a close for `SETTLE` into updates.
    pub fn sweep(&mut self, now: Instant) {
        if self.dirty.is_empty() {
            return;
        }
        let due: Vec<RelPath> = self
            .dirty
            .iter()
            .filter(|(_, t)| now.saturating_duration_since(**t) >= SETTLE)
            .map(|(p, _)| p.clone())
            .collect();
        for p in due {
            self.close_write(p, None, None, now);
        }
    }

    /// The next queued event, if its time has come, with the moment it
    /// became due for the latency metric: when its kernel event was
    /// received, plus the time it was held on purpose (the debounce, waiting
    /// for the writer's close, waiting behind the events queued before it).
    pub fn pop_ready(&mut self, now: Instant) -> Option<(Logical, Instant)> {
        if self.queue.front()?.deadline > now {
            return None;
        }
        let p = self.queue.pop_front()?;
        self.head_id += 1;
        if p.counted {
            self.count_replacing(&p.ev, false);
        }
        if let Logical::Access { path } = &p.ev {
            self.opens.remove(path);
        }
        let held = p.received + p.deadline.saturating_duration_since(p.first);
        let due = match self.released {
            Some(r) if r > held => r,
            _ => held,
        };
        // The events behind this one could not go before its deadline (on
        // the clock, not adjusted like `held`): from then on they are due.
        self.released = Some(self.released.map_or(p.deadline, |r| r.max(p.deadline)));
        Some((p.ev, due))
    }

    /// Everything still queued (shutdown): pending writes become updates.
    pub fn drain_all(&mut self, now: Instant) -> Vec<(Logical, Instant)> {
        let dirty: Vec<RelPath> = self.dirty.keys().cloned().collect();
        for p in dirty {
            self.close_write(p, None, None, now);
        }
        self.head_id += self.queue.len() as u64;
        self.mergeable.clear();
        self.opens.clear();
        self.replacing.clear();
        // Held on purpose until now: due now.
        self.queue.drain(..).map(|p| (p.ev, now)).collect()
    }

    /// When something next becomes due.
    pub fn next_deadline(&self) -> Option<Instant> {
        let head = self.queue.front().map(|p| p.deadline);
        let dirty = self.dirty.values().min().map(|t| *t + SETTLE);
        match (head, dirty) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }
}

#[cfg(test)]
mod tests {
    //! Data-driven cases: each line is `<ms> <op> <path> [<path>]`, run
    //! against a controllable clock; `expect` lists the events in order.
    use super::*;
    use file_event::Kind;

    struct Case {
        name: &'static str,
        debounce_ms: u64,
        script: &'static str,
        expect: &'static [&'static str],
    }

    const CASES: &[Case] = &[
        Case {
            name: "design scenario: echo > f; echo >> f; rm f within one window",
            debounce_ms: 100,
            script: "0 create f\n0 modify f\n0 close f\n1 modify f\n1 close f\n2 delete f",
            expect: &["create f", "update f", "delete f"],
        },
        Case {
            name: "consecutive writes to one file merge into one update",
            debounce_ms: 100,
            script: "0 modify f\n0 close f\n10 modify f\n10 close f\n20 close f",
            expect: &["update f"],
        },
        Case {
            name: "writes separated by more than the window stay separate",
            debounce_ms: 100,
            script: "0 close f\n500 close f",
            expect: &["update f", "update f"],
        },
        Case {
            name: "a delete seals earlier writes; nothing is merged across it",
            debounce_ms: 100,
            script: "0 close f\n1 delete g\n2 close f",
            expect: &["update f", "delete g", "update f"],
        },
        Case {
            name: "create then delete of a temporary file are both reported",
            debounce_ms: 100,
            script: "0 create t\n1 delete t",
            expect: &["create t", "delete t"],
        },
        Case {
            name: "atomic save: create tmp, write, rename over target",
            debounce_ms: 100,
            script: "0 create t.tmp\n0 modify t.tmp\n0 close t.tmp\n1 move t.tmp t",
            expect: &["create t.tmp", "move t.tmp t"],
        },
        Case {
            name: "debounce 0 reports each completed write",
            debounce_ms: 0,
            script: "0 close f\n0 tick\n1 close f",
            expect: &["update f", "update f"],
        },
        Case {
            name: "create without a close is reported after the window",
            debounce_ms: 100,
            script: "0 create fifo\n150 tick",
            expect: &["create fifo"],
        },
        Case {
            name: "a write without close is reported after SETTLE",
            debounce_ms: 100,
            script: "0 modify log\n1100 tick",
            expect: &["update log"],
        },
        Case {
            name: "interleaved files keep their first position",
            debounce_ms: 100,
            script: "0 close a\n1 close b\n2 close a",
            expect: &["update a", "update b"],
        },
        Case {
            name: "an open by a reader is an access; an open by a writer is not",
            debounce_ms: 100,
            script: "0 open r\n0 open w\n1 modify w\n1 close w",
            expect: &["access r", "cancelled", "update w"],
        },
        Case {
            name: "merging is capped by MAX_HOLD",
            debounce_ms: 100,
            script: "0 close f\n90 close f\n180 close f\n270 close f\n360 close f\n450 close f\n540 close f\n630 close f\n720 close f\n810 close f\n900 close f\n990 close f\n1001 tick\n1080 close f",
            expect: &["update f", "update f"],
        },
    ];

    fn run(case: &Case) -> Vec<String> {
        let t0 = Instant::now();
        let mut c = Coalescer::new(Duration::from_millis(case.debounce_ms));
        let mut out = Vec::new();
        let file = Some(Entry::unknown(Kind::File));
        let drain = |c: &mut Coalescer, now: Instant, out: &mut Vec<String>| {
            c.sweep(now);
            while let Some((ev, _)) = c.pop_ready(now) {
                out.push(show(&ev));
            }
        };
        for line in case.script.lines() {
            let parts: Vec<&str> = line.split_whitespace().collect();
            let now = t0 + Duration::from_millis(parts[0].parse().expect("ms"));
            drain(&mut c, now, &mut out);
            let p = |i: usize| parts[i].as_bytes().to_vec();
            match parts[1] {
                "create" => c.create(p(2), false, file, true, now),
                "modify" => c.modify(p(2), now),
                "close" => c.close_write(p(2), file, None, now),
                "delete" => c.delete(p(2), false, now),
                "move" => c.moved(p(2), p(3), now),
                "open" => c.access(p(2), now),
                "tick" => {}
                op => panic!("unknown op {op}"),
            }
        }
        drain(&mut c, t0 + Duration::from_secs(3600), &mut out);
        out.extend(c.drain_all(Instant::now()).iter().map(|(e, _)| show(e)));
        out
    }

    fn show(ev: &Logical) -> String {
        let s = |p: &[u8]| String::from_utf8_lossy(p).into_owned();
        match ev {
            Logical::Create { path, .. } => format!("create {}", s(path)),
            Logical::Update { path, .. } => format!("update {}", s(path)),
            Logical::Delete { path, .. } => format!("delete {}", s(path)),
            Logical::Move { from, to } => format!("move {} {}", s(from), s(to)),
            Logical::Reconcile { base, .. } => format!("reconcile {}", s(base)),
            Logical::Access { path } => format!("access {}", s(path)),
            Logical::Cancelled => "cancelled".to_owned(),
        }
    }

    #[test]
    fn coalescing_cases() {
        let mut failures = Vec::new();
        for case in CASES {
            let got = run(case);
            if got != case.expect {
                failures.push(format!(
                    "{}: expected {:?}, got {:?}",
                    case.name, case.expect, got
                ));
            }
        }
        assert!(failures.is_empty(), "{}", failures.join("\n"));
    }

    #[test]
    fn a_queued_delete_or_move_marks_the_path_replaced_until_it_is_popped() {
        let t0 = Instant::now();
        let mut c = Coalescer::new(Duration::from_millis(100));
        c.close_write(b"d/f".to_vec(), None, Some(7), t0);
        c.create(b"new".to_vec(), false, None, true, t0);
        assert!(!c.replaced_later(b"d/f"));
        assert!(
            !c.replaced_later(b"new"),
            "a new file's create replaces nothing"
        );
        c.moved(b"d".to_vec(), b"e".to_vec(), t0);
        assert!(c.replaced_later(b"d/f"), "its directory moves away");
        assert!(c.replaced_later(b"e/x"));
        let later = t0 + Duration::from_millis(100);
        assert!(matches!(
            c.pop_ready(later),
            Some((
                Logical::Update {
                    written: Some(7),
                    ..
                },
                _
            ))
        ));
        assert!(matches!(
            c.pop_ready(later),
            Some((Logical::Create { .. }, _))
        ));
        assert!(c.replaced_later(b"d/f"));
        assert!(matches!(
            c.pop_ready(later),
            Some((Logical::Move { .. }, _))
        ));
        assert!(!c.replaced_later(b"d/f") && !c.replaced_later(b"e"));
    }

    #[test]
    fn head_waits_for_its_deadline_and_keeps_order() {
        let t0 = Instant::now();
        let mut c = Coalescer::new(Duration::from_millis(100));
        c.close_write(b"a".to_vec(), None, None, t0);
        c.delete(b"b".to_vec(), false, t0);
        assert!(c.pop_ready(t0).is_none(), "update a is held for the window");
        assert_eq!(c.next_deadline(), Some(t0 + Duration::from_millis(100)));
        let later = t0 + Duration::from_millis(100);
        assert!(matches!(
            c.pop_ready(later),
            Some((Logical::Update { .. }, _))
        ));
        assert!(matches!(
            c.pop_ready(later),
            Some((Logical::Delete { .. }, _))
        ));
        assert_eq!(c.coalesced, 0);
    }
}
