//! The in-memory tree index: relative path → kind, size, mtime, ctime,
//! inode. It holds
//! exactly what consumers have been told, so diffing it against the disk
//! (after lost kernel events, in poll mode, after a restart) yields the events
//! that bring a consumer up to date. Keys are raw path bytes, `/`-separated;
//! the root itself is not an entry.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::ffi::OsStr;
use std::fs::Metadata;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use base64::Engine as _;
use file_event::Kind;
use serde::{Deserialize, Serialize};

use crate::ignore::IgnoreSet;

/// What the index remembers about one path.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Entry {
    pub kind: Kind,
    pub size: u64,
    pub mtime_ns: i64,
    /// The inode's status change time (`st_ctime`), in nanoseconds; 0 when
    /// unknown (an entry from a state file written before ctimes were
    /// recorded, or one known only from an event). Unlike the mtime, no
    /// user can set it: a write whose mtime was put back (`touch -r`)
    /// still moves it, as do `chmod`, `chown` and a change of link count.
    pub ctime_ns: i64,
    pub ino: u64,
    /// The file system holding it (`st_dev`); 0 when unknown (an entry
    /// from a state file written before devices were recorded). An inode
    /// number names a file only together with its device.
    pub dev: u64,
    /// A regular file reported without its content (it was moved or
    /// replaced before it could be read): the next scan that finds the
    /// same file reports it again, with its checksum.
    pub unread: bool,
}

impl Entry {
    pub fn from_metadata(m: &Metadata) -> Entry {
        Entry {
            kind: kind_of(m),
            size: m.len(),
            mtime_ns: m
                .mtime()
                .saturating_mul(1_000_000_000)
                .saturating_add(m.mtime_nsec()),
            ctime_ns: m
                .ctime()
                .saturating_mul(1_000_000_000)
                .saturating_add(m.ctime_nsec()),
            ino: m.ino(),
            dev: m.dev(),
            unread: false,
        }
    }

    /// A path known to exist (an event said so) whose metadata is gone.
    pub fn unknown(kind: Kind) -> Entry {
        Entry {
            kind,
            size: 0,
            mtime_ns: 0,
            ctime_ns: 0,
            ino: 0,
            dev: 0,
            unread: false,
        }
    }

    /// Whether `other` is the same file: the same inode on the same file
    /// system (a device of 0, unknown, matches any).
    pub fn same_file(&self, other: &Entry) -> bool {
        self.ino == other.ino && (self.dev == other.dev || self.dev == 0 || other.dev == 0)
    }

    /// Whether the inode's status changed between `self` and `other` (a
    /// later look at the same path): both ctimes are known and differ.
    /// An unknown ctime (0) is learnt, not taken for a change.
    pub fn status_changed(&self, other: &Entry) -> bool {
        self.ctime_ns != 0 && other.ctime_ns != 0 && self.ctime_ns != other.ctime_ns
    }
}

/// Key of [`Index::links`]: (device, inode).
type FileId = (u64, u64);

fn file_id(e: &Entry) -> FileId {
    (e.dev, e.ino)
}

/// The kind of a file-system object, from `symlink_metadata` (never follows).
pub fn kind_of(m: &Metadata) -> Kind {
    let t = m.file_type();
    if t.is_symlink() {
        Kind::Symlink
    } else if t.is_dir() {
        Kind::Dir
    } else if t.is_file() {
        Kind::File
    } else {
        // FIFOs, sockets, block and character devices.
        Kind::Other
    }
}

/// Joins a relative path to the root.
pub fn abs_path(root: &Path, rel: &[u8]) -> PathBuf {
    if rel.is_empty() {
        root.to_path_buf()
    } else {
        root.join(OsStr::from_bytes(rel))
    }
}

/// `base/name`, or `name` when `base` is the root.
pub fn join_rel(base: &[u8], name: &[u8]) -> Vec<u8> {
    if base.is_empty() {
        name.to_vec()
    } else {
        let mut v = Vec::with_capacity(base.len() + 1 + name.len());
        v.extend_from_slice(base);
        v.push(b'/');
        v.extend_from_slice(name);
        v
    }
}

/// True when `path` is `base` or below it.
pub fn is_within(path: &[u8], base: &[u8]) -> bool {
    base.is_empty()
        || path == base
        || (path.len() > base.len() && path.starts_with(base) && path[base.len()] == b'/')
}

/// Strict ancestors of a relative path, nearest first.
pub fn ancestors(path: &[u8]) -> impl Iterator<Item = &[u8]> {
    path.iter()
        .enumerate()
        .rev()
        .filter(|(_, b)| **b == b'/')
        .map(move |(i, _)| &path[..i])
}

/// One difference between the index and the disk.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change {
    Create(Vec<u8>, Entry),
    Update(Vec<u8>, Entry),
    Delete(Vec<u8>, Entry),
    Move {
        from: Vec<u8>,
        to: Vec<u8>,
        entry: Entry,
    },
}

/// The names a regular file's inode has in the index (usually one).
#[derive(Debug, Clone)]
enum Names {
    One(Box<[u8]>),
    /// A set: adding and removing one name of a file with many links
    /// costs no pass over the others.
    Many(BTreeSet<Box<[u8]>>),
}

impl Names {
    fn iter(&self) -> Box<dyn Iterator<Item = &[u8]> + '_> {
        match self {
            Names::One(n) => Box::new(std::iter::once(&n[..])),
            Names::Many(v) => Box::new(v.iter().map(|n| &n[..])),
        }
    }
}

#[derive(Debug, Default, Clone)]
pub struct Index {
    map: BTreeMap<Vec<u8>, Entry>,
    /// Directories a scan could not read completely (permission denied, a
    /// path too long): what lies below them is unknown, not gone.
    unread: BTreeSet<Vec<u8>>,
    /// Entries that vanished while the scan was reading them (they, or a
    /// directory above them, were moved away or deleted meanwhile): they and
    /// what lay below them are not known from this scan. Their directory's
    /// watch was placed before it was read, so the kernel reports where they
    /// went (a move or a delete, which takes a subtree along); the scan does
    /// not guess.
    vanished: BTreeSet<Vec<u8>>,
    /// (Device, inode) → names of the regular files in `map`, so that the
    /// other names of a hard-linked file are found in proportion to its
    /// link count. Kept by the index of what consumers were told; a scan's
    /// snapshot (`None`) goes without it until it is adopted.
    links: Option<HashMap<FileId, Names>>,
    /// Journal lines for the changes made since they were last taken (see
    /// [`Index::record_changes`]); `None`: not recorded (a scan's snapshot).
    changes: Option<Vec<u8>>,
    /// For a scan's snapshot compared with an index loaded from a state
    /// file: see [`Index::against_index_known_at`].
    cutoff: Option<BirthCutoff>,
}

/// When the index a snapshot is compared with was last known to be true,
/// and the root the snapshot's paths are relative to.
#[derive(Debug, Clone)]
struct BirthCutoff {
    root: PathBuf,
    known_at: SystemTime,
}

/// Whether an entry is tracked in [`Index::links`].
fn linkable(e: &Entry) -> bool {
    e.kind == Kind::File && e.ino != 0
}

impl Index {
    /// An empty index that keeps its inode → names map.
    pub fn new() -> Index {
        Index {
            links: Some(HashMap::new()),
            ..Index::default()
        }
    }

    /// An empty index without the inode → names map (a scan's snapshot).
    fn snapshot() -> Index {
        Index::default()
    }

    /// This index, with its inode → names map built if it had none (a
    /// scan's snapshot becoming the index of record).
    pub fn with_links(mut self) -> Index {
        if self.links.is_none() {
            let mut links = HashMap::new();
            for (k, e) in &self.map {
                if linkable(e) {
                    add_name(&mut links, file_id(e), k);
                }
            }
            self.links = Some(links);
        }
        self
    }

    /// This snapshot (a scan below `root`), to be compared with an index
    /// that was last known to be true at `known_at` (a state file's last
    /// write): an inode of the snapshot born after that (its birth time,
    /// `statx`'s `stx_btime`) is not an entry of that index, whatever its
    /// inode number, so it is never taken for one that moved. File systems
    /// reuse the inode numbers of deleted files (ext4 at once): without
    /// this, `rm -rf e; mkdir e2` made while the monitor was stopped would
    /// read as a move of `e`. A rename keeps the birth time. Where the
    /// file system records no birth time, or `known_at` is unknown, moves
    /// are recognised by inode alone, as without it.
    pub fn against_index_known_at(mut self, root: &Path, known_at: Option<SystemTime>) -> Index {
        self.cutoff = known_at.map(|known_at| BirthCutoff {
            root: root.to_path_buf(),
            known_at,
        });
        self
    }

    /// Whether the file at `path`, seen by the scan as `e`, was born after
    /// the compared index was last known true (see
    /// [`Index::against_index_known_at`]). False when that is not known: no
    /// cutoff, no birth time, or the path holds another file by now.
    fn born_after_index(&self, path: &[u8], e: &Entry) -> bool {
        let Some(c) = &self.cutoff else {
            return false;
        };
        let Ok(m) = std::fs::symlink_metadata(abs_path(&c.root, path)) else {
            return false;
        };
        if m.ino() != e.ino || m.dev() != e.dev {
            return false;
        }
        let born_after = m.created().is_ok_and(|born| born > c.known_at);
        if born_after {
            tracing::debug!(
                path = %crate::shown(path),
                "inode number of a vanished entry, born after the state file was written: not a move"
            );
        }
        born_after
    }

    /// The names of regular files with inode `ino` on device `dev`, in
    /// path order.
    pub fn names_of(&self, dev: u64, ino: u64) -> Vec<Vec<u8>> {
        match &self.links {
            Some(l) => l
                .get(&(dev, ino))
                .map(|n| n.iter().map(<[u8]>::to_vec).collect())
                .unwrap_or_default(),
            None => self
                .map
                .iter()
                .filter(|(_, e)| linkable(e) && file_id(e) == (dev, ino))
                .map(|(k, _)| k.clone())
                .collect(),
        }
    }

    /// From now on, records every change as a journal line, to be taken
    /// with [`Index::take_changes`].
    pub fn record_changes(&mut self) {
        self.changes.get_or_insert_with(Vec::new);
    }

    /// The journal lines of the changes made since the last call (empty
    /// when not recording).
    pub fn take_changes(&mut self) -> Vec<u8> {
        self.changes
            .as_mut()
            .map(std::mem::take)
            .unwrap_or_default()
    }

    fn record(&mut self, op: impl FnOnce() -> JournalOp) {
        record_into(&mut self.changes, op);
    }

    /// Inserts into `map`, keeping `links` in step (one search of `map`).
    fn put(&mut self, path: Vec<u8>, e: Entry) -> Option<Entry> {
        use std::collections::btree_map::Entry as Slot;
        if self.links.is_none() && self.changes.is_none() {
            return self.map.insert(path, e);
        }
        let (changes, links) = (&mut self.changes, &mut self.links);
        match self.map.entry(path) {
            Slot::Occupied(mut o) => {
                let old = o.insert(e);
                put_noted(changes, links, o.key(), Some(old), e);
                Some(old)
            }
            Slot::Vacant(v) => {
                put_noted(changes, links, v.key(), None, e);
                v.insert(e);
                None
            }
        }
    }

    /// Removes from `map`, keeping `links` in step.
    fn take(&mut self, path: &[u8]) -> Option<Entry> {
        let old = self.map.remove(path)?;
        if let (Some(links), true) = (self.links.as_mut(), linkable(&old)) {
            remove_name(links, file_id(&old), path);
        }
        self.record(|| JournalOp::Del(b64(path)));
        Some(old)
    }

    /// Removes `path` and everything below it when `path` is an entry
    /// (nothing otherwise); returns the entry of `path`.
    pub fn remove_known_subtree(&mut self, path: &[u8]) -> Option<Entry> {
        // One journal line for the whole subtree.
        let rec = self.changes.take();
        let e = self.take(path);
        if e.is_some() {
            let keys: Vec<Vec<u8>> = self.below(path).map(|(k, _)| k.clone()).collect();
            for k in keys.into_iter().rev() {
                self.take(&k);
            }
        }
        self.changes = rec;
        if e.is_some() {
            self.record(|| JournalOp::Rm(b64(path)));
        }
        e
    }

    /// Removes exactly `path` (not what lies below it).
    pub fn remove(&mut self, path: &[u8]) -> Option<Entry> {
        self.take(path)
    }

    pub fn len(&self) -> usize {
        self.map.len()
    }

    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }

    pub fn get(&self, path: &[u8]) -> Option<&Entry> {
        self.map.get(path)
    }

    pub fn contains(&self, path: &[u8]) -> bool {
        self.map.contains_key(path)
    }

    pub fn insert(&mut self, path: Vec<u8>, e: Entry) -> Option<Entry> {
        self.put(path, e)
    }

    /// Records that the regular file at `path` was reported without its
    /// content (see [`Entry::unread`]).
    pub fn mark_unread(&mut self, path: &[u8]) {
        if let Some(e) = self
            .map
            .get_mut(path)
            .filter(|e| e.kind == Kind::File && !e.unread)
        {
            e.unread = true;
            let e = *e;
            self.record(|| JournalOp::put(path, e));
        }
    }

    pub fn iter(&self) -> impl Iterator<Item = (&Vec<u8>, &Entry)> {
        self.map.iter()
    }

    /// Directories this scan could not read completely.
    pub fn unread(&self) -> impl Iterator<Item = &Vec<u8>> {
        self.unread.iter()
    }

    /// Whether `path` lies below a directory this scan could not read, or
    /// one that vanished while it was read: its absence from the scan says
    /// nothing.
    fn hides(&self, path: &[u8]) -> bool {
        (!self.unread.is_empty() && ancestors(path).any(|a| self.unread.contains(a)))
            || (!self.vanished.is_empty()
                && (self.vanished.contains(path)
                    || ancestors(path).any(|a| self.vanished.contains(a))))
    }

    /// Entries strictly below `base` (all entries for the root).
    pub fn below<'a>(
        &'a self,
        base: &[u8],
    ) -> Box<dyn Iterator<Item = (&'a Vec<u8>, &'a Entry)> + 'a> {
        if base.is_empty() {
            return Box::new(self.map.iter());
        }
        let mut lo = base.to_vec();
        lo.push(b'/');
        let mut hi = base.to_vec();
        hi.push(b'/' + 1);
        Box::new(self.map.range(lo..hi))
    }

    /// Removes `path` and everything below it; returns the removed entries,
    /// deepest first.
    pub fn remove_subtree(&mut self, path: &[u8]) -> Vec<(Vec<u8>, Entry)> {
        // One journal line for the whole subtree.
        let rec = self.changes.take();
        let out = self.remove_subtree_quietly(path);
        self.changes = rec;
        if !out.is_empty() {
            self.record(|| JournalOp::Rm(b64(path)));
        }
        out
    }

    fn remove_subtree_quietly(&mut self, path: &[u8]) -> Vec<(Vec<u8>, Entry)> {
        let keys: Vec<Vec<u8>> = self.below(path).map(|(k, _)| k.clone()).collect();
        let mut out = Vec::with_capacity(keys.len() + 1);
        for k in keys.into_iter().rev() {
            if let Some(e) = self.take(&k) {
                out.push((k, e));
            }
        }
        if let Some(e) = self.take(path) {
            out.push((path.to_vec(), e));
        }
        out
    }

    /// Moves `from` and its subtree to `to`, replacing whatever was at `to`.
    pub fn move_subtree(&mut self, from: &[u8], to: &[u8]) {
        if from == to {
            return;
        }
        // One journal line for the whole subtree.
        let rec = self.changes.take();
        let moved = self.remove_subtree(from);
        self.remove_subtree(to);
        for (k, e) in moved {
            let mut nk = to.to_vec();
            nk.extend_from_slice(&k[from.len()..]);
            self.put(nk, e);
        }
        self.changes = rec;
        self.record(|| JournalOp::Mv(b64(from), b64(to)));
    }

    /// Applies one journal line (see [`Index::record_changes`]); with
    /// `dev_unknown`, devices are taken as unknown (0), as for a state file
    /// loaded after a remount.
    pub fn apply_journal_line(
        &mut self,
        line: &[u8],
        dev_unknown: bool,
    ) -> Result<JournalLine, BadJournalLine> {
        let op: JournalOp = serde_json::from_slice(line).map_err(|_| BadJournalLine)?;
        let d = |s: String| {
            base64::engine::general_purpose::STANDARD
                .decode(s)
                .map_err(|_| BadJournalLine)
        };
        match op {
            JournalOp::Put(mut row) => {
                if dev_unknown {
                    row.entry.dev = 0;
                }
                self.put(d(row.path)?, row.entry);
            }
            JournalOp::Del(p) => {
                self.take(&d(p)?);
            }
            JournalOp::Rm(p) => {
                self.remove_subtree(&d(p)?);
            }
            JournalOp::Mv(from, to) => self.move_subtree(&d(from)?, &d(to)?),
            JournalOp::Taint(paths) => {
                let paths = paths
                    .into_iter()
                    .map(|(p, k)| d(p).map(|p| (p, k)))
                    .collect::<Result<_, _>>()?;
                return Ok(JournalLine::Taint(paths));
            }
            JournalOp::Done => return Ok(JournalLine::Done),
        }
        Ok(JournalLine::Change)
    }

    /// Makes the restart report the current state of paths a batch of the
    /// stream was about when the monitor was killed, before the journal
    /// held what the batch said (see `JournalOp`): the stream may have
    /// said it or not, so neither the index nor the stream can be trusted
    /// about them. A path that exists under `root` is removed from the
    /// index with everything below it (the restart reports it and its
    /// content as created); one that does not is put in the index as a
    /// `kind` of unknown content, unless it is there (the restart reports
    /// it as deleted). Returns how many paths were forgotten.
    pub fn forget_tainted(&mut self, root: &Path, tainted: &[(Vec<u8>, Kind)]) -> usize {
        let (present, absent): (Vec<_>, Vec<_>) = tainted
            .iter()
            .filter(|(p, _)| !p.is_empty())
            .partition(|(p, _)| std::fs::symlink_metadata(abs_path(root, p)).is_ok());
        // Subtrees first, so that an absent path below a present one stays.
        for (path, _) in &present {
            self.remove_subtree(path);
        }
        for (path, kind) in &absent {
            if !self.contains(path) {
                self.put(
                    path.clone(),
                    Entry {
                        kind: *kind,
                        size: 0,
                        mtime_ns: 0,
                        ctime_ns: 0,
                        ino: 0,
                        dev: 0,
                        unread: false,
                    },
                );
            }
        }
        present.len() + absent.len()
    }

    /// Applies differences between the entries below `base` and `snapshot`
    /// (a fresh scan of the same subtree) to this index, returning them in an
    /// order a consumer can replay: moves and creates parents-first, then
    /// deletes deepest-first, then the remaining creates and updates.
    /// Moves are recognised by inode (and, for files, unchanged size and
    /// mtime; not the ctime, which a rename moves on most file systems),
    /// except for an inode born after the index was last known true, when
    /// the snapshot knows when that was (see
    /// [`Index::against_index_known_at`]).
    /// A file whose size, mtime or ctime changed, or another inode under the
    /// same name, is an update: a write whose mtime was put back still moves
    /// the ctime, which cannot be told apart from a `chmod`, `chown` or a
    /// change of link count, and is reported the same way. For a scan that
    /// looks for what events did not report (a rescan, a poll, a restart).
    pub fn reconcile(&mut self, base: &[u8], snapshot: &Index) -> Vec<Change> {
        self.reconcile_comparing(base, snapshot, true)
    }

    /// [`Index::reconcile`] for a subtree whose kernel events were seen (a
    /// watched directory scanned after its move or create): a change of
    /// ctime alone is not an update there. The events reported the writes;
    /// what else moves a ctime needs no event (a rename, a link added to
    /// or removed from another name of the file, a `chmod`). The ctimes
    /// seen are kept all the same.
    pub fn reconcile_watched(&mut self, base: &[u8], snapshot: &Index) -> Vec<Change> {
        self.reconcile_comparing(base, snapshot, false)
    }

    fn reconcile_comparing(&mut self, base: &[u8], snapshot: &Index, ctime: bool) -> Vec<Change> {
        let mut out = Vec::new();
        let deleted: Vec<(Vec<u8>, Entry)> = self
            .below(base)
            .filter(|(k, _)| !snapshot.contains(k) && !snapshot.hides(k))
            .map(|(k, e)| (k.clone(), *e))
            .collect();
        let mut del_by_ino: HashMap<u64, Vec<usize>> = HashMap::new();
        for (i, (_, e)) in deleted.iter().enumerate() {
            if e.ino != 0 {
                del_by_ino.entry(e.ino).or_default().push(i);
            }
        }
        // Pass 1: moves (parents first), and creates needed before them.
        let mut moved_to: HashSet<Vec<u8>> = HashSet::new();
        let mut moved_from: HashSet<Vec<u8>> = HashSet::new();
        let mut consumed: HashSet<usize> = HashSet::new();
        let mut pairs: Vec<(usize, Vec<u8>, Entry)> = Vec::new();
        if !del_by_ino.is_empty() {
            for (c, ce) in snapshot.below(base) {
                if self.map.contains_key(c) || ancestors(c).any(|a| moved_to.contains(a)) {
                    continue;
                }
                let Some(cands) = del_by_ino.get(&ce.ino) else {
                    continue;
                };
                let found = cands.iter().copied().find(|i| {
                    let (d, de) = &deleted[*i];
                    !consumed.contains(i)
                        && de.kind == ce.kind
                        && (de.dev == ce.dev || de.dev == 0)
                        && (ce.kind == Kind::Dir
                            || (de.size == ce.size && de.mtime_ns == ce.mtime_ns))
                        && !ancestors(d).any(|a| moved_from.contains(a))
                });
                if let Some(i) = found {
                    if snapshot.born_after_index(c, ce) {
                        continue;
                    }
                    consumed.insert(i);
                    moved_to.insert(c.clone());
                    moved_from.insert(deleted[i].0.clone());
                    pairs.push((i, c.clone(), *ce));
                }
            }
        }
        if !pairs.is_empty() {
            // Emit in target order; a target's missing parents are created first.
            let targets: BTreeMap<Vec<u8>, (usize, Entry)> =
                pairs.into_iter().map(|(i, c, e)| (c, (i, e))).collect();
            for (c, (i, ce)) in targets {
                // Missing, or not a directory in the index (a file that a
                // directory replaced: deleted first).
                let mut missing: Vec<&[u8]> = ancestors(&c)
                    .take_while(|a| is_within(a, base) && *a != base)
                    .filter(|a| self.map.get(*a).is_none_or(|e| e.kind != Kind::Dir))
                    .collect();
                missing.reverse();
                for a in missing {
                    if let Some(ae) = snapshot.get(a) {
                        if let Some(old) = self.take(a) {
                            out.push(Change::Delete(a.to_vec(), old));
                        }
                        self.put(a.to_vec(), *ae);
                        out.push(Change::Create(a.to_vec(), *ae));
                    }
                }
                let from = deleted[i].0.clone();
                if !self.map.contains_key(&from) {
                    continue;
                }
                self.move_subtree(&from, &c);
                self.put(c.clone(), ce);
                out.push(Change::Move {
                    from,
                    to: c,
                    entry: ce,
                });
            }
        }
        // Pass 2: plain differences against the updated index.
        let gone: Vec<(Vec<u8>, Entry)> = self
            .below(base)
            .filter(|(k, e)| match snapshot.get(k) {
                Some(s) => s.kind != e.kind,
                None => !snapshot.hides(k),
            })
            .map(|(k, e)| (k.clone(), *e))
            .collect();
        for (k, e) in gone.into_iter().rev() {
            self.take(&k);
            out.push(Change::Delete(k, e));
        }
        for (k, se) in snapshot.below(base) {
            match self.map.get(k) {
                None => {
                    self.put(k.clone(), *se);
                    out.push(Change::Create(k.clone(), *se));
                }
                Some(ie) if ie != se => {
                    let changed = ie.size != se.size
                        || ie.mtime_ns != se.mtime_ns
                        || (ctime && ie.status_changed(se))
                        || !ie.same_file(se)
                        || (ie.unread && se.kind == Kind::File);
                    self.put(k.clone(), *se);
                    if changed && se.kind != Kind::Dir {
                        out.push(Change::Update(k.clone(), *se));
                    }
                }
                Some(_) => {}
            }
        }
        out
    }
}

/// Per-directory hook during a scan: return false to stop placing watches
/// below this directory (it will be polled instead). Called before the
/// directory's entries are read, so nothing created after it is missed.
pub trait ScanHook {
    fn enter_dir(&mut self, rel: &[u8]) -> bool;
    fn unreadable(&mut self, rel: &[u8], err: &std::io::Error);
}

/// A hook that places no watches.
pub struct NoHook;

impl ScanHook for NoHook {
    fn enter_dir(&mut self, _rel: &[u8]) -> bool {
        false
    }
    fn unreadable(&mut self, rel: &[u8], err: &std::io::Error) {
        tracing::debug!(path = %crate::shown(rel), error = %err, "cannot read directory");
    }
}

/// Scans the subtree below `base` (not `base` itself), never following
/// symlinks and pruning ignored paths. `hook.enter_dir` runs for `base` and
/// every directory found while `watching` is true for its parent.
pub fn scan(
    root: &Path,
    base: &[u8],
    ignore: &IgnoreSet,
    hook: &mut dyn ScanHook,
    watching: bool,
) -> Index {
    let mut idx = Index::snapshot();
    if ignore.is_ignored(base) {
        return idx;
    }
    let mut stack: Vec<(Vec<u8>, bool)> = vec![(base.to_vec(), watching)];
    while let Some((dir, watch_here)) = stack.pop() {
        let watch_below = watch_here && hook.enter_dir(&dir);
        let rd = match std::fs::read_dir(abs_path(root, &dir)) {
            Ok(rd) => rd,
            Err(e) => {
                if e.kind() == std::io::ErrorKind::NotFound {
                    idx.vanished.insert(dir.clone());
                } else {
                    idx.unread.insert(dir.clone());
                }
                hook.unreadable(&dir, &e);
                continue;
            }
        };
        for de in rd.flatten() {
            let name = de.file_name();
            let rel = join_rel(&dir, name.as_bytes());
            // Ancestors were checked on the way down.
            if ignore.matches_self(&rel) {
                continue;
            }
            let m = match std::fs::symlink_metadata(de.path()) {
                Ok(m) => m,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                    // Vanished meanwhile, or its directory did (renamed
                    // while being read).
                    idx.vanished.insert(rel);
                    continue;
                }
                Err(e) => {
                    // Names readable but entries not (no search permission,
                    // a path longer than PATH_MAX): this directory is unknown.
                    if idx.unread.insert(dir.clone()) {
                        hook.unreadable(&dir, &e);
                    }
                    continue;
                }
            };
            let e = Entry::from_metadata(&m);
            if e.kind == Kind::Dir {
                stack.push((rel.clone(), watch_below));
            }
            idx.put(rel, e);
        }
    }
    idx
}

/// Appends the journal line of `op` to `changes` (when recording).
fn record_into(changes: &mut Option<Vec<u8>>, op: impl FnOnce() -> JournalOp) {
    if let Some(buf) = changes.as_mut() {
        // Serializing plain strings and numbers cannot fail.
        if serde_json::to_writer(&mut *buf, &op()).is_ok() {
            buf.push(b'\n');
        }
    }
}

/// The journal line and the `links` update for `e` put at `path` over `old`.
fn put_noted(
    changes: &mut Option<Vec<u8>>,
    links: &mut Option<HashMap<FileId, Names>>,
    path: &[u8],
    old: Option<Entry>,
    e: Entry,
) {
    if old != Some(e) {
        record_into(changes, || JournalOp::put(path, e));
    }
    let Some(links) = links.as_mut() else {
        return;
    };
    let same = old.is_some_and(|o| linkable(&o) == linkable(&e) && file_id(&o) == file_id(&e));
    if !same {
        if let Some(o) = old.filter(linkable) {
            remove_name(links, file_id(&o), path);
        }
        if linkable(&e) {
            add_name(links, file_id(&e), path);
        }
    }
}

fn add_name(links: &mut HashMap<FileId, Names>, id: FileId, path: &[u8]) {
    use std::collections::hash_map::Entry as Slot;
    match links.entry(id) {
        Slot::Vacant(v) => {
            v.insert(Names::One(path.into()));
        }
        Slot::Occupied(mut o) => {
            let names = o.get_mut();
            match names {
                Names::Many(v) => {
                    v.insert(path.into());
                }
                Names::One(first) => {
                    if **first != *path {
                        let first = std::mem::take(first);
                        *names = Names::Many(BTreeSet::from([first, path.into()]));
                    }
                }
            }
        }
    }
}

fn remove_name(links: &mut HashMap<FileId, Names>, id: FileId, path: &[u8]) {
    let Some(names) = links.get_mut(&id) else {
        return;
    };
    match names {
        Names::One(n) => {
            if **n == *path {
                links.remove(&id);
            }
        }
        Names::Many(v) => {
            v.remove(path);
            match v.len() {
                0 => {
                    links.remove(&id);
                }
                1 => {
                    if let Some(last) = v.pop_first() {
                        *names = Names::One(last);
                    }
                }
                _ => {}
            }
        }
    }
}

/// A journal line that is incomplete or not a change of the index.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
#[error("not a complete journal line")]
pub struct BadJournalLine;

fn b64(p: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(p)
}

/// One change of the index, as a journal line: `{"put":[row]}` (the row as
/// in the state file), `{"del":path}` (that path only), `{"rm":path}` (the
/// path and everything below it), `{"mv":[from,to]}` (a subtree renamed,
/// replacing what was at `to`); paths in base64.
///
/// Two more lines frame the stream's batches: `{"taint":[[path,kind],...]}`,
/// appended before a batch's lines may reach the stream, names every path
/// they are about; `"done"`, appended after the batch's changes, says the
/// journal holds what those lines said. A taint without its `done` (a kill
/// in between) leaves those paths unknown: see [`Index::forget_tainted`].
#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
enum JournalOp {
    Put(StateRow),
    Del(String),
    Rm(String),
    Mv(String, String),
    Taint(Vec<(String, Kind)>),
    Done,
}

/// What one journal line was (see [`Index::apply_journal_line`]).
#[derive(Debug, PartialEq, Eq)]
pub enum JournalLine {
    /// A change, applied to the index.
    Change,
    /// The paths (and kinds) a batch of the stream is about to report.
    Taint(Vec<(Vec<u8>, Kind)>),
    /// The changes of the batch tainted last are all in the journal.
    Done,
}

/// The journal line naming the paths a batch reports (see `JournalOp`).
pub fn taint_line(paths: &[(Vec<u8>, Kind)]) -> Vec<u8> {
    let op = JournalOp::Taint(paths.iter().map(|(p, k)| (b64(p), *k)).collect());
    // Serializing plain strings cannot fail.
    let mut line = serde_json::to_vec(&op).unwrap_or_default();
    line.push(b'\n');
    line
}

/// The journal line closing a batch (see `JournalOp`).
pub fn done_line() -> Vec<u8> {
    b"\"done\"\n".to_vec()
}

impl JournalOp {
    fn put(path: &[u8], entry: Entry) -> JournalOp {
        JournalOp::Put(StateRow {
            path: b64(path),
            entry,
        })
    }
}

/// Persisted form of the index (`--state-file`).
#[derive(Debug, Serialize, Deserialize)]
struct StateFile {
    version: u32,
    root: String,
    /// Names this save: the journal beside the state file applies to the
    /// save whose generation its first line names.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    generation: Option<String>,
    /// The device of the root when the file was written. When the root is
    /// on another device at load (a remount: NFS, overlay and FUSE devices
    /// are numbered anew at each mount), or this is absent, the entries'
    /// devices are taken as unknown and learnt again by the first scan.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    root_dev: Option<u64>,
    entries: Vec<StateRow>,
}

/// The version of the state file written. Version 1 rows lack the device
/// and the unread flag; they load with a device of 0 (unknown, learnt at
/// the first scan) and the content taken as read. Version 2 rows lack the
/// ctime; they load with a ctime of 0 (unknown, learnt at the first scan
/// without an event). Other versions (written by a newer file-monitor) are
/// refused.
const STATE_VERSION: u32 = 3;

/// The device of the watched root, if it can be read.
fn root_device(root: &Path) -> Option<u64> {
    std::fs::metadata(root).ok().map(|m| m.dev())
}

/// One entry of a state file: `[base64 path, kind, size, mtime_ns, inode,
/// device, unread, ctime_ns]`; the ctime may be absent (version 2), the
/// last three may be (version 1).
#[derive(Debug)]
struct StateRow {
    path: String,
    entry: Entry,
}

impl Serialize for StateRow {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let e = &self.entry;
        (
            &self.path, e.kind, e.size, e.mtime_ns, e.ino, e.dev, e.unread, e.ctime_ns,
        )
            .serialize(s)
    }
}

impl<'de> Deserialize<'de> for StateRow {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<StateRow, D::Error> {
        struct Row;
        impl<'de> serde::de::Visitor<'de> for Row {
            type Value = StateRow;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("[path, kind, size, mtime_ns, inode, device?, unread?, ctime_ns?]")
            }
            fn visit_seq<A: serde::de::SeqAccess<'de>>(
                self,
                mut a: A,
            ) -> Result<StateRow, A::Error> {
                use serde::de::Error;
                let missing = |i| A::Error::invalid_length(i, &self);
                let path = a.next_element()?.ok_or_else(|| missing(0))?;
                let kind = a.next_element()?.ok_or_else(|| missing(1))?;
                let size = a.next_element()?.ok_or_else(|| missing(2))?;
                let mtime_ns = a.next_element()?.ok_or_else(|| missing(3))?;
                let ino = a.next_element()?.ok_or_else(|| missing(4))?;
                let dev = a.next_element()?.unwrap_or(0);
                let unread = a.next_element()?.unwrap_or(false);
                let ctime_ns = a.next_element()?.unwrap_or(0);
                if a.next_element::<serde::de::IgnoredAny>()?.is_some() {
                    return Err(A::Error::invalid_length(9, &self));
                }
                Ok(StateRow {
                    path,
                    entry: Entry {
                        kind,
                        size,
                        mtime_ns,
                        ctime_ns,
                        ino,
                        dev,
                        unread,
                    },
                })
            }
        }
        d.deserialize_seq(Row)
    }
}

#[derive(Debug, thiserror::Error)]
pub enum StateError {
    #[error("state file {path:?}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("state file {path:?} is not a file-monitor index: {source}")]
    Format {
        path: PathBuf,
        source: serde_json::Error,
    },
    #[error("state file {path:?} was written for root {found:?}, not {expected:?}")]
    OtherRoot {
        path: PathBuf,
        found: String,
        expected: String,
    },
    #[error("state file {path:?} holds an invalid path")]
    BadPath { path: PathBuf },
    #[error("state file {path:?} has version {found}, written by a newer file-monitor; this one reads versions 1 to {STATE_VERSION}")]
    UnknownVersion { path: PathBuf, found: u32 },
}

impl Index {
    /// Writes the index atomically (temporary file, fsync, rename).
    pub fn save(&self, path: &Path, root: &Path) -> Result<(), StateError> {
        self.save_generation(path, root, None)
    }

    /// [`Index::save`], naming the save with `generation`.
    pub fn save_generation(
        &self,
        path: &Path,
        root: &Path,
        generation: Option<&str>,
    ) -> Result<(), StateError> {
        let b64 = base64::engine::general_purpose::STANDARD;
        let sf = StateFile {
            version: STATE_VERSION,
            root: root.to_string_lossy().into_owned(),
            generation: generation.map(str::to_owned),
            root_dev: root_device(root),
            entries: self
                .map
                .iter()
                .map(|(k, e)| StateRow {
                    path: b64.encode(k),
                    entry: *e,
                })
                .collect(),
        };
        let io = |source| StateError::Io {
            path: path.to_path_buf(),
            source,
        };
        let mut tmp = path.as_os_str().to_owned();
        tmp.push(".tmp");
        let tmp = PathBuf::from(tmp);
        let data = serde_json::to_vec(&sf).map_err(|source| StateError::Format {
            path: path.to_path_buf(),
            source,
        })?;
        let written = (|| {
            use std::io::Write;
            let mut f = std::fs::File::create(&tmp)?;
            f.write_all(&data)?;
            f.sync_all()?;
            std::fs::rename(&tmp, path)
        })();
        if let Err(e) = written {
            // A partial temporary file (a full disk) would only take the
            // space the next attempt needs.
            let _ = std::fs::remove_file(&tmp);
            return Err(io(e));
        }
        Ok(())
    }

    /// Loads a saved index; `Ok(None)` when the file does not exist. When
    /// the root is not on the device it was on when the file was written,
    /// the devices of the entries load as unknown (0).
    pub fn load(path: &Path, root: &Path) -> Result<Option<Index>, StateError> {
        Ok(Index::load_state(path, root)?.map(|l| l.index))
    }

    /// [`Index::load`], with the save's generation and whether the devices
    /// were taken as unknown.
    pub fn load_state(path: &Path, root: &Path) -> Result<Option<Loaded>, StateError> {
        let data = match std::fs::read(path) {
            Ok(d) => d,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(source) => {
                return Err(StateError::Io {
                    path: path.to_path_buf(),
                    source,
                })
            }
        };
        let sf: StateFile = serde_json::from_slice(&data).map_err(|source| StateError::Format {
            path: path.to_path_buf(),
            source,
        })?;
        if !(1..=STATE_VERSION).contains(&sf.version) {
            return Err(StateError::UnknownVersion {
                path: path.to_path_buf(),
                found: sf.version,
            });
        }
        let expected = root.to_string_lossy().into_owned();
        if sf.root != expected {
            return Err(StateError::OtherRoot {
                path: path.to_path_buf(),
                found: sf.root,
                expected,
            });
        }
        // Absent (an earlier file): not known to be the same device either.
        let now_dev = root_device(root);
        let remounted = sf.root_dev != now_dev;
        if let (true, Some(was)) = (remounted, sf.root_dev) {
            tracing::info!(
                file = %path.display(),
                was,
                now = ?now_dev,
                "the root is on another device than when the state file was written (a remount); devices are learnt again by the first scan"
            );
        }
        // Before the journal is replayed (which may cut a torn line off it).
        let known_at = last_written(path);
        let b64 = base64::engine::general_purpose::STANDARD;
        let mut idx = Index::new();
        for mut row in sf.entries {
            let k = b64.decode(row.path).map_err(|_| StateError::BadPath {
                path: path.to_path_buf(),
            })?;
            if remounted {
                row.entry.dev = 0;
            }
            idx.put(k, row.entry);
        }
        Ok(Some(Loaded {
            index: idx,
            generation: sf.generation,
            remounted,
            known_at,
        }))
    }
}

/// A state file as loaded.
#[derive(Debug)]
pub struct Loaded {
    pub index: Index,
    /// The save's generation (absent in files written before journals).
    pub generation: Option<String>,
    /// The root is on another device than when the file was written: the
    /// devices were taken as unknown.
    pub remounted: bool,
    /// When the index (with its journal) was last known to be true: the
    /// later of the state file's and the journal's mtime, if readable.
    /// Every entry was seen before then, so an inode born after it is none
    /// of them.
    pub known_at: Option<SystemTime>,
}

/// The later of the mtimes of the state file `path` and of its journal.
fn last_written(path: &Path) -> Option<SystemTime> {
    let mtime = |p: &Path| std::fs::metadata(p).and_then(|m| m.modified()).ok();
    let state = mtime(path)?;
    Some(mtime(&crate::journal::journal_path(path)).map_or(state, |journal| journal.max(state)))
}

/// Set of relative directory paths with subtree operations (watched dirs,
/// polled subtrees).
#[derive(Debug, Default, Clone)]
pub struct PathSet {
    set: BTreeSet<Vec<u8>>,
}

impl PathSet {
    pub fn insert(&mut self, p: Vec<u8>) -> bool {
        self.set.insert(p)
    }
    pub fn contains(&self, p: &[u8]) -> bool {
        self.set.contains(p)
    }
    pub fn len(&self) -> usize {
        self.set.len()
    }
    pub fn is_empty(&self) -> bool {
        self.set.is_empty()
    }
    pub fn iter(&self) -> impl Iterator<Item = &Vec<u8>> {
        self.set.iter()
    }
    /// Members at or below `p` (a range query, not a scan of the set).
    fn subtree_keys(&self, p: &[u8]) -> Vec<Vec<u8>> {
        if p.is_empty() {
            return self.set.iter().cloned().collect();
        }
        let mut lo = p.to_vec();
        lo.push(b'/');
        let mut hi = p.to_vec();
        hi.push(b'/' + 1);
        let mut keys: Vec<Vec<u8>> = self.set.range(lo..hi).cloned().collect();
        if self.set.contains(p) {
            keys.push(p.to_vec());
        }
        keys
    }

    /// Removes `p` and everything below it; returns how many were removed.
    pub fn remove_subtree(&mut self, p: &[u8]) -> usize {
        let keys = self.subtree_keys(p);
        let n = keys.len();
        for k in keys {
            self.set.remove(&k);
        }
        n
    }

    /// Renames `from`'s subtree to `to`.
    pub fn move_subtree(&mut self, from: &[u8], to: &[u8]) {
        for k in self.subtree_keys(from) {
            self.set.remove(&k);
            let mut nk = to.to_vec();
            nk.extend_from_slice(&k[from.len()..]);
            self.set.insert(nk);
        }
    }

    /// Keeps only the members for which `f` is true.
    pub fn retain(&mut self, f: impl FnMut(&Vec<u8>) -> bool) {
        self.set.retain(f);
    }

    /// The member that is `p` or an ancestor of `p`, if any.
    pub fn covering(&self, p: &[u8]) -> Option<&Vec<u8>> {
        if let Some(k) = self.set.get(p) {
            return Some(k);
        }
        ancestors(p).find_map(|a| self.set.get(a))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn e(kind: Kind, ino: u64, size: u64) -> Entry {
        Entry {
            kind,
            size,
            mtime_ns: 1,
            ctime_ns: 1,
            ino,
            dev: 1,
            unread: false,
        }
    }

    fn idx(entries: &[(&str, Entry)]) -> Index {
        let mut i = Index::new();
        for (p, en) in entries {
            i.insert(p.as_bytes().to_vec(), *en);
        }
        i
    }

    fn show(ch: &[Change]) -> Vec<String> {
        ch.iter()
            .map(|c| match c {
                Change::Create(p, _) => format!("create {}", String::from_utf8_lossy(p)),
                Change::Update(p, _) => format!("update {}", String::from_utf8_lossy(p)),
                Change::Delete(p, _) => format!("delete {}", String::from_utf8_lossy(p)),
                Change::Move { from, to, .. } => {
                    format!(
                        "move {} {}",
                        String::from_utf8_lossy(from),
                        String::from_utf8_lossy(to)
                    )
                }
            })
            .collect()
    }

    #[test]
    fn below_does_not_leak_siblings_with_common_prefix() {
        let i = idx(&[
            ("a", e(Kind::Dir, 1, 0)),
            ("a-b", e(Kind::File, 2, 0)),
            ("a/x", e(Kind::File, 3, 0)),
            ("a0", e(Kind::File, 4, 0)),
        ]);
        let below: Vec<_> = i.below(b"a").map(|(k, _)| k.clone()).collect();
        assert_eq!(below, vec![b"a/x".to_vec()]);
    }

    #[test]
    fn remove_known_subtree_takes_the_entry_and_what_lies_below_it_only() {
        let mut i = idx(&[
            ("a", e(Kind::Dir, 1, 0)),
            ("a-b", e(Kind::File, 2, 0)),
            ("a/x", e(Kind::File, 3, 0)),
            ("a/x2", e(Kind::File, 3, 0)),
            ("b/y", e(Kind::File, 5, 0)),
        ]);
        i.record_changes();
        assert_eq!(i.remove_known_subtree(b"a"), Some(e(Kind::Dir, 1, 0)));
        let left: Vec<_> = i.iter().map(|(k, _)| k.clone()).collect();
        assert_eq!(left, vec![b"a-b".to_vec(), b"b/y".to_vec()]);
        assert!(i.names_of(1, 3).is_empty(), "the names of a/x's inode");
        assert_eq!(i.take_changes().iter().filter(|b| **b == b'\n').count(), 1);
        // Not an entry itself: nothing below it is touched.
        assert_eq!(i.remove_known_subtree(b"b"), None);
        assert!(i.contains(b"b/y"));
        assert!(i.take_changes().is_empty());
    }

    #[test]
    fn put_keeps_the_names_of_each_inode_in_step() {
        let mut i = idx(&[("f", e(Kind::File, 7, 1)), ("g", e(Kind::File, 7, 1))]);
        assert_eq!(i.names_of(1, 7), vec![b"f".to_vec(), b"g".to_vec()]);
        i.record_changes();
        // Same entry again: no journal line.
        assert_eq!(
            i.insert(b"f".to_vec(), e(Kind::File, 7, 1)),
            Some(e(Kind::File, 7, 1))
        );
        assert!(i.take_changes().is_empty());
        // Another inode at `g`.
        assert_eq!(
            i.insert(b"g".to_vec(), e(Kind::File, 8, 1)),
            Some(e(Kind::File, 7, 1))
        );
        assert_eq!(i.names_of(1, 7), vec![b"f".to_vec()]);
        assert_eq!(i.names_of(1, 8), vec![b"g".to_vec()]);
        // A directory is no file's name.
        assert_eq!(
            i.insert(b"f".to_vec(), e(Kind::Dir, 7, 0)),
            Some(e(Kind::File, 7, 1))
        );
        assert!(i.names_of(1, 7).is_empty());
        assert_eq!(i.take_changes().iter().filter(|b| **b == b'\n').count(), 2);
    }

    #[test]
    fn reconcile_finds_creates_updates_deletes_in_replayable_order() {
        let mut i = idx(&[
            ("d", e(Kind::Dir, 1, 0)),
            ("d/x", e(Kind::File, 2, 1)),
            ("keep", e(Kind::File, 3, 1)),
            ("chg", e(Kind::File, 4, 1)),
        ]);
        let snap = idx(&[
            ("keep", e(Kind::File, 3, 1)),
            ("chg", e(Kind::File, 4, 9)),
            ("n", e(Kind::Dir, 5, 0)),
            ("n/y", e(Kind::File, 6, 0)),
        ]);
        let ch = i.reconcile(b"", &snap);
        assert_eq!(
            show(&ch),
            vec![
                "delete d/x",
                "delete d",
                "update chg",
                "create n",
                "create n/y"
            ]
        );
        assert_eq!(i.len(), 4);
    }

    #[test]
    fn reconcile_pairs_moves_by_inode_and_moves_subtrees() {
        let mut i = idx(&[
            ("a", e(Kind::Dir, 1, 0)),
            ("a/f", e(Kind::File, 2, 3)),
            ("g", e(Kind::File, 7, 5)),
        ]);
        let snap = idx(&[
            ("new", e(Kind::Dir, 9, 0)),
            ("new/b", e(Kind::Dir, 1, 0)),
            ("new/b/f", e(Kind::File, 2, 3)),
            ("h", e(Kind::File, 7, 5)),
        ]);
        let ch = i.reconcile(b"", &snap);
        assert_eq!(show(&ch), vec!["move g h", "create new", "move a new/b"]);
        assert!(i.contains(b"new/b/f"));
        assert!(!i.contains(b"a/f"));
    }

    #[test]
    fn reused_inode_with_other_content_is_not_a_move() {
        let mut i = idx(&[("old", e(Kind::File, 5, 3))]);
        let snap = idx(&[("new", e(Kind::File, 5, 10))]);
        assert_eq!(
            show(&i.reconcile(b"", &snap)),
            vec!["delete old", "create new"]
        );
    }

    #[test]
    fn move_subtree_and_path_sets() {
        let mut i = idx(&[
            ("a", e(Kind::Dir, 1, 0)),
            ("a/b", e(Kind::Dir, 2, 0)),
            ("a/b/c", e(Kind::File, 3, 0)),
            ("ab", e(Kind::File, 4, 0)),
        ]);
        i.move_subtree(b"a", b"z");
        let keys: Vec<String> = i
            .iter()
            .map(|(k, _)| String::from_utf8_lossy(k).into_owned())
            .collect();
        assert_eq!(keys, vec!["ab", "z", "z/b", "z/b/c"]);
        let mut s = PathSet::default();
        for p in ["", "a", "a/b", "ab"] {
            s.insert(p.as_bytes().to_vec());
        }
        assert_eq!(
            s.covering(b"a/b/c").map(|v| v.as_slice()),
            Some(&b"a/b"[..])
        );
        s.move_subtree(b"a", b"q");
        assert!(s.contains(b"q/b") && s.contains(b"ab") && !s.contains(b"a"));
        assert_eq!(s.remove_subtree(b"q"), 2);
    }

    /// The inode → names map says exactly what a pass over the entries says.
    fn assert_links_consistent(i: &Index) {
        let mut want: BTreeMap<FileId, Vec<Vec<u8>>> = BTreeMap::new();
        for (k, x) in i.iter() {
            if linkable(x) {
                want.entry(file_id(x)).or_default().push(k.clone());
            }
        }
        let links = i.links.as_ref().expect("the index keeps its links");
        assert_eq!(links.len(), want.len(), "{links:?}");
        for ((dev, ino), names) in want {
            assert_eq!(i.names_of(dev, ino), names, "inode {ino}");
        }
    }

    fn names(i: &Index, ino: u64) -> Vec<String> {
        i.names_of(1, ino)
            .iter()
            .map(|k| String::from_utf8_lossy(k).into_owned())
            .collect()
    }

    #[test]
    fn inode_names_follow_inserts_moves_deletes_and_reconciles() {
        let mut i = idx(&[
            ("a", e(Kind::File, 7, 1)),
            ("d", e(Kind::Dir, 2, 0)),
            ("d/b", e(Kind::File, 7, 1)),
            ("d/c", e(Kind::File, 7, 1)),
            ("x", e(Kind::File, 8, 1)),
        ]);
        assert_links_consistent(&i);
        assert_eq!(names(&i, 7), vec!["a", "d/b", "d/c"]);
        i.move_subtree(b"d", b"e");
        assert_eq!(names(&i, 7), vec!["a", "e/b", "e/c"]);
        i.remove_subtree(b"e/c");
        assert_eq!(names(&i, 7), vec!["a", "e/b"]);
        // A name taken by another file is no longer a name of the first.
        i.insert(b"a".to_vec(), e(Kind::File, 9, 1));
        assert_eq!(names(&i, 7), vec!["e/b"]);
        assert_eq!(names(&i, 9), vec!["a"]);
        // A move onto an existing name replaces it.
        i.move_subtree(b"x", b"e/b");
        assert!(names(&i, 7).is_empty());
        assert_eq!(names(&i, 8), vec!["e/b"]);
        assert_links_consistent(&i);
        let snap = idx(&[
            ("a", e(Kind::File, 9, 1)),
            ("e", e(Kind::Dir, 2, 0)),
            ("e/moved", e(Kind::File, 8, 1)),
            ("n", e(Kind::File, 9, 1)),
        ]);
        i.reconcile(b"", &snap);
        assert_eq!(names(&i, 9), vec!["a", "n"]);
        assert_eq!(names(&i, 8), vec!["e/moved"]);
        assert_links_consistent(&i);
        i.remove_subtree(b"");
        i.remove_subtree(b"a");
        i.remove_subtree(b"e");
        i.remove_subtree(b"n");
        assert!(i.is_empty());
        assert_links_consistent(&i);
    }

    #[test]
    fn scanned_and_loaded_indexes_know_every_name_of_an_inode() {
        let dir = tempfile::tempdir().expect("tempdir");
        let root = dir.path().join("ws");
        std::fs::create_dir_all(root.join("sub")).expect("mkdir");
        std::fs::write(root.join("a"), b"x").expect("write");
        std::fs::hard_link(root.join("a"), root.join("sub/b")).expect("link");
        let m = std::fs::metadata(root.join("a")).expect("stat");
        let (dev, ino) = (m.dev(), m.ino());
        let names = |i: &Index| -> Vec<String> {
            i.names_of(dev, ino)
                .iter()
                .map(|k| String::from_utf8_lossy(k).into_owned())
                .collect()
        };
        let ignore = IgnoreSet::new(&[]).expect("ignore");
        let adopted = scan(&root, b"", &ignore, &mut NoHook, false).with_links();
        assert_links_consistent(&adopted);
        assert_eq!(names(&adopted), vec!["a", "sub/b"]);
        let sf = dir.path().join("state.json");
        adopted.save(&sf, &root).expect("save");
        let loaded = Index::load(&sf, &root).expect("load").expect("present");
        assert_links_consistent(&loaded);
        assert_eq!(names(&loaded), vec!["a", "sub/b"]);
    }

    #[test]
    fn state_round_trip_keeps_non_utf8_names() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut i = Index::new();
        i.insert(b"caf\xe9".to_vec(), e(Kind::File, 1, 2));
        i.insert(b"unread".to_vec(), e(Kind::File, 3, 4));
        i.mark_unread(b"unread");
        let p = dir.path().join("state.json");
        i.save(&p, Path::new("/r")).expect("save");
        let back = Index::load(&p, Path::new("/r"))
            .expect("load")
            .expect("present");
        assert_eq!(back.get(b"caf\xe9"), Some(&e(Kind::File, 1, 2)));
        assert!(back.get(b"unread").is_some_and(|x| x.unread && x.dev == 1));
        assert!(matches!(
            Index::load(&p, Path::new("/other")),
            Err(StateError::OtherRoot { .. })
        ));
        assert!(Index::load(&dir.path().join("none"), Path::new("/r"))
            .expect("ok")
            .is_none());
    }

    fn on(dev: u64, mut x: Entry) -> Entry {
        x.dev = dev;
        x
    }

    #[test]
    fn the_same_inode_number_on_another_device_is_another_file() {
        let mut i = idx(&[
            ("a", e(Kind::File, 2, 1)),
            ("a2", e(Kind::File, 2, 1)),
            ("m/f1", on(7, e(Kind::File, 2, 1))),
        ]);
        assert_links_consistent(&i);
        assert_eq!(names(&i, 2), vec!["a", "a2"]);
        assert_eq!(i.names_of(7, 2), vec![b"m/f1".to_vec()]);
        // A file gone from one file system and one with its inode number
        // on another are not a move.
        let snap = idx(&[
            ("a", e(Kind::File, 2, 1)),
            ("a2", e(Kind::File, 2, 1)),
            ("n/f1", on(8, e(Kind::File, 2, 1))),
        ]);
        assert_eq!(
            show(&i.reconcile(b"", &snap)),
            vec!["delete m/f1", "create n/f1"]
        );
        assert_links_consistent(&i);
    }

    #[test]
    fn a_file_reported_without_its_content_is_updated_by_the_next_scan() {
        let mut i = idx(&[("d", e(Kind::Dir, 1, 0)), ("d/f", e(Kind::File, 2, 3))]);
        i.mark_unread(b"d/f");
        i.mark_unread(b"d");
        assert!(!i.get(b"d").expect("d").unread, "only files");
        let snap = idx(&[("d", e(Kind::Dir, 1, 0)), ("d/f", e(Kind::File, 2, 3))]);
        assert_eq!(show(&i.reconcile(b"", &snap)), vec!["update d/f"]);
        assert!(!i.get(b"d/f").expect("d/f").unread);
        assert!(i.reconcile(b"", &snap).is_empty(), "once");
    }

    #[test]
    fn journal_lines_bring_a_copy_of_the_index_to_the_same_entries() {
        let mut i = idx(&[
            ("a", e(Kind::Dir, 1, 0)),
            ("a/f", e(Kind::File, 2, 3)),
            ("a/g", e(Kind::File, 3, 3)),
            ("x", e(Kind::File, 4, 1)),
        ]);
        let mut copy = i.clone();
        i.record_changes();
        i.insert(b"n\xff".to_vec(), e(Kind::File, 5, 1));
        i.move_subtree(b"a", b"b");
        i.remove_subtree(b"b/g");
        i.mark_unread(b"b/f");
        i.remove(b"x");
        i.insert(b"x".to_vec(), e(Kind::Dir, 6, 0));
        // Unchanged: no line.
        i.insert(b"x".to_vec(), e(Kind::Dir, 6, 0));
        let lines = i.take_changes();
        assert_eq!(
            lines.split(|b| *b == b'\n').count(),
            7,
            "{}",
            String::from_utf8_lossy(&lines)
        );
        assert!(i.take_changes().is_empty());
        for l in lines.split_inclusive(|b| *b == b'\n') {
            copy.apply_journal_line(l, false).expect("line");
        }
        let entries = |x: &Index| x.iter().map(|(k, v)| (k.clone(), *v)).collect::<Vec<_>>();
        assert_eq!(entries(&copy), entries(&i));
        assert!(copy.get(b"b/f").is_some_and(|x| x.unread));
        assert_links_consistent(&copy);
        assert!(copy.apply_journal_line(br#"{"rm":"Z"#, false).is_err());
        // A scan's snapshot records nothing.
        let mut snap = Index::snapshot();
        snap.insert(b"q".to_vec(), e(Kind::File, 9, 1));
        assert!(snap.take_changes().is_empty());
    }

    #[test]
    fn a_move_into_a_directory_that_replaced_a_file_deletes_the_file_first() {
        let mut i = idx(&[("f7", e(Kind::File, 7, 1)), ("x", e(Kind::Dir, 3, 0))]);
        let snap = idx(&[("f7", e(Kind::Dir, 8, 0)), ("f7/f3", e(Kind::Dir, 3, 0))]);
        assert_eq!(
            show(&i.reconcile(b"", &snap)),
            vec!["delete f7", "create f7", "move x f7/f3"]
        );
        assert!(i.reconcile(b"", &snap).is_empty(), "once");
    }

    #[test]
    fn taint_lines_name_paths_and_leave_the_index_alone() {
        let mut i = idx(&[("a", e(Kind::File, 1, 1))]);
        let line = taint_line(&[(b"a".to_vec(), Kind::File), (b"d\xff".to_vec(), Kind::Dir)]);
        assert_eq!(
            i.apply_journal_line(&line, false),
            Ok(JournalLine::Taint(vec![
                (b"a".to_vec(), Kind::File),
                (b"d\xff".to_vec(), Kind::Dir)
            ]))
        );
        assert_eq!(
            i.apply_journal_line(&done_line(), false),
            Ok(JournalLine::Done)
        );
        assert_eq!(i.len(), 1);
    }

    #[test]
    fn tainted_paths_are_forgotten_if_present_and_deleted_if_absent() {
        let dir = tempfile::tempdir().expect("tempdir");
        let root = dir.path();
        std::fs::create_dir_all(root.join("d/e")).expect("mkdir");
        std::fs::write(root.join("d/e/kept"), b"k").expect("write");
        let mut i = idx(&[
            ("d", e(Kind::Dir, 1, 0)),
            ("d/e", e(Kind::Dir, 2, 0)),
            ("d/e/kept", e(Kind::File, 3, 1)),
            ("d/gone", e(Kind::File, 4, 1)),
        ]);
        // An absent path named before a present parent: it stays, to be
        // deleted; the present one goes with its subtree, to be created.
        let n = i.forget_tainted(
            root,
            &[
                (b"d/gone".to_vec(), Kind::File),
                (b"d".to_vec(), Kind::Dir),
                (b"never".to_vec(), Kind::Dir),
            ],
        );
        assert_eq!(n, 3);
        let keys: Vec<_> = i.iter().map(|(k, _)| k.clone()).collect();
        assert_eq!(keys, vec![b"d/gone".to_vec(), b"never".to_vec()]);
        assert_eq!(i.get(b"never").map(|x| x.kind), Some(Kind::Dir));
        assert_eq!(
            i.get(b"d/gone").map(|x| x.ino),
            Some(0),
            "of unknown content"
        );
    }

    #[test]
    fn a_version_1_state_file_loads_with_devices_unknown() {
        let dir = tempfile::tempdir().expect("tempdir");
        let p = dir.path().join("state.json");
        let b64 = base64::engine::general_purpose::STANDARD;
        let v1 = serde_json::json!({
            "version": 1,
            "root": "/r",
            "entries": [[b64.encode("f"), Kind::File, 3, 1, 2]],
        });
        std::fs::write(&p, v1.to_string()).expect("write");
        let back = Index::load(&p, Path::new("/r"))
            .expect("load")
            .expect("present");
        assert_eq!(
            back.get(b"f"),
            Some(&changed_at(0, on(0, e(Kind::File, 2, 3))))
        );
        // Its first scan learns the device without reporting a change.
        let mut back = back;
        let snap = idx(&[("f", on(9, e(Kind::File, 2, 3)))]);
        assert!(back.reconcile(b"", &snap).is_empty());
        assert_eq!(back.names_of(9, 2), vec![b"f".to_vec()]);
        assert_links_consistent(&back);
        // Rows of another shape are refused.
        std::fs::write(
            &p,
            r#"{"version":2,"root":"/r","entries":[["Zg==","file",3]]}"#,
        )
        .expect("write");
        assert!(matches!(
            Index::load(&p, Path::new("/r")),
            Err(StateError::Format { .. })
        ));
    }

    #[test]
    fn devices_load_as_unknown_when_the_root_is_on_another_device() {
        let dir = tempfile::tempdir().expect("tempdir");
        let root = dir.path();
        let p = dir.path().join("state.json");
        let mut i = Index::new();
        i.insert(b"f".to_vec(), e(Kind::File, 2, 3));
        i.save(&p, root).expect("save");
        let same = Index::load(&p, root).expect("load").expect("present");
        assert_eq!(same.get(b"f").map(|x| x.dev), Some(1), "same device");
        let mut v: serde_json::Value =
            serde_json::from_slice(&std::fs::read(&p).expect("read")).expect("json");
        let dev = v["root_dev"].as_u64().expect("root_dev");
        v["root_dev"] = (dev + 1).into();
        std::fs::write(&p, v.to_string()).expect("write");
        let back = Index::load(&p, root).expect("load").expect("present");
        assert_eq!(back.get(b"f"), Some(&on(0, e(Kind::File, 2, 3))));
        // A version this binary does not know is refused, not guessed at.
        v["version"] = 4.into();
        std::fs::write(&p, v.to_string()).expect("write");
        assert!(matches!(
            Index::load(&p, root),
            Err(StateError::UnknownVersion { found: 4, .. })
        ));
    }

    fn changed_at(ctime_ns: i64, mut x: Entry) -> Entry {
        x.ctime_ns = ctime_ns;
        x
    }

    #[test]
    fn a_changed_ctime_with_the_same_size_and_mtime_is_an_update() {
        let mut i = idx(&[("f", e(Kind::File, 2, 4)), ("d", e(Kind::Dir, 3, 0))]);
        let snap = idx(&[
            ("f", changed_at(7, e(Kind::File, 2, 4))),
            ("d", changed_at(7, e(Kind::Dir, 3, 0))),
        ]);
        assert_eq!(show(&i.reconcile(b"", &snap)), vec!["update f"]);
        assert_eq!(i.get(b"f").map(|x| x.ctime_ns), Some(7));
        assert_eq!(i.get(b"d").map(|x| x.ctime_ns), Some(7), "learnt");
        assert!(i.reconcile(b"", &snap).is_empty(), "once");
    }

    #[test]
    fn a_watched_subtree_learns_a_changed_ctime_without_an_update() {
        let mut i = idx(&[("d", e(Kind::Dir, 1, 0)), ("d/f", e(Kind::File, 2, 4))]);
        let snap = idx(&[
            ("d", e(Kind::Dir, 1, 0)),
            ("d/f", changed_at(7, e(Kind::File, 2, 4))),
        ]);
        assert!(i.reconcile_watched(b"d", &snap).is_empty());
        assert_eq!(i.get(b"d/f").map(|x| x.ctime_ns), Some(7));
        // Size and mtime still count.
        let snap = idx(&[("d/f", changed_at(7, e(Kind::File, 2, 5)))]);
        assert_eq!(show(&i.reconcile_watched(b"d", &snap)), vec!["update d/f"]);
    }

    #[test]
    fn an_unknown_ctime_is_learnt_without_an_update() {
        let mut i = idx(&[("f", changed_at(0, e(Kind::File, 2, 4)))]);
        let snap = idx(&[("f", changed_at(9, e(Kind::File, 2, 4)))]);
        assert!(i.reconcile(b"", &snap).is_empty());
        assert_eq!(i.get(b"f").map(|x| x.ctime_ns), Some(9));
        // Known from now on: the next change of it is one.
        let snap = idx(&[("f", changed_at(10, e(Kind::File, 2, 4)))]);
        assert_eq!(show(&i.reconcile(b"", &snap)), vec!["update f"]);
    }

    #[test]
    fn a_rename_that_moved_the_ctime_is_still_a_move() {
        let mut i = idx(&[("a", e(Kind::File, 2, 4))]);
        let snap = idx(&[("b", changed_at(5, e(Kind::File, 2, 4)))]);
        assert_eq!(show(&i.reconcile(b"", &snap)), vec!["move a b"]);
        assert_eq!(i.get(b"b").map(|x| x.ctime_ns), Some(5));
    }

    #[test]
    fn ctimes_are_saved_and_a_version_2_state_file_loads_them_as_unknown() {
        let dir = tempfile::tempdir().expect("tempdir");
        let root = dir.path();
        let p = dir.path().join("state.json");
        let mut i = Index::new();
        i.insert(
            b"f".to_vec(),
            changed_at(123_456_789_012, e(Kind::File, 2, 3)),
        );
        i.save(&p, root).expect("save");
        let back = Index::load(&p, root).expect("load").expect("present");
        assert_eq!(back.get(b"f").map(|x| x.ctime_ns), Some(123_456_789_012));
        // The rows of the previous version end with the unread flag.
        let mut v: serde_json::Value =
            serde_json::from_slice(&std::fs::read(&p).expect("read")).expect("json");
        assert_eq!(v["version"], 3);
        v["version"] = 2.into();
        for row in v["entries"].as_array_mut().expect("rows") {
            row.as_array_mut().expect("row").truncate(7);
        }
        std::fs::write(&p, v.to_string()).expect("write");
        let mut back = Index::load(&p, root).expect("load").expect("present");
        assert_eq!(back.get(b"f"), Some(&changed_at(0, e(Kind::File, 2, 3))));
        let snap = idx(&[("f", changed_at(5, e(Kind::File, 2, 3)))]);
        assert!(
            back.reconcile(b"", &snap).is_empty(),
            "no update on upgrade"
        );
        // Journal lines of the previous version load the same way.
        let mut j = Index::new();
        let b64 = base64::engine::general_purpose::STANDARD;
        let line = format!(r#"{{"put":["{}","file",3,1,2,1,false]}}"#, b64.encode("g"));
        j.apply_journal_line(line.as_bytes(), false).expect("line");
        assert_eq!(j.get(b"g"), Some(&changed_at(0, e(Kind::File, 2, 3))));
    }

    /// An index that knew `e` (a directory) and `f` (a file) by the inodes
    /// that `e2` and `f2` have on disk now, and a scan of that disk.
    /// Also returns the earliest and the latest of their birth times, if
    /// the file system records them.
    fn reused_inodes(root: &Path) -> (Index, Index, Option<(SystemTime, SystemTime)>) {
        std::fs::create_dir(root.join("e2")).expect("mkdir");
        std::fs::write(root.join("f2"), b"x").expect("write");
        let stat = |p: &str| std::fs::symlink_metadata(root.join(p)).expect("stat");
        let (d, f) = (stat("e2"), stat("f2"));
        let old = idx(&[
            ("e", Entry::from_metadata(&d)),
            ("f", Entry::from_metadata(&f)),
        ]);
        let ignore = IgnoreSet::new(&[]).expect("ignore");
        let snap = scan(root, b"", &ignore, &mut NoHook, false);
        let born = d
            .created()
            .ok()
            .zip(f.created().ok())
            .map(|(a, b)| (a.min(b), a.max(b)));
        (old, snap, born)
    }

    #[test]
    fn an_inode_born_after_the_index_was_known_true_is_not_a_move() {
        let dir = tempfile::tempdir().expect("tempdir");
        let root = dir.path();
        let (mut old, snap, born) = reused_inodes(root);
        let Some(born) = born else {
            // No birth times on this file system: moves by inode, as before.
            let snap = snap.against_index_known_at(root, Some(SystemTime::UNIX_EPOCH));
            assert_eq!(
                show(&old.reconcile(b"", &snap)),
                vec!["move e e2", "move f f2"]
            );
            return;
        };
        let before = born.0 - std::time::Duration::from_secs(1);
        let snap = snap.against_index_known_at(root, Some(before));
        assert_eq!(
            show(&old.reconcile(b"", &snap)),
            vec!["delete f", "delete e", "create e2", "create f2"]
        );
        assert!(old.reconcile(b"", &snap).is_empty(), "once");
        assert_links_consistent(&old);
    }

    #[test]
    fn an_inode_born_before_the_index_was_known_true_is_still_a_move() {
        let dir = tempfile::tempdir().expect("tempdir");
        let root = dir.path();
        let (old, snap, born) = reused_inodes(root);
        let after = born.map(|b| b.1 + std::time::Duration::from_secs(1));
        for known_at in [after, None] {
            let mut old = old.clone();
            let snap = snap.clone().against_index_known_at(root, known_at);
            assert_eq!(
                show(&old.reconcile(b"", &snap)),
                vec!["move e e2", "move f f2"],
                "{known_at:?}"
            );
        }
        // Without a cutoff (a scan at run time): by inode, as before.
        let mut old = old;
        assert_eq!(
            show(&old.reconcile(b"", &snap)),
            vec!["move e e2", "move f f2"]
        );
    }

    #[test]
    fn a_loaded_index_is_known_true_when_its_state_file_or_journal_was_last_written() {
        let dir = tempfile::tempdir().expect("tempdir");
        let root = dir.path();
        let p = root.join("state.json");
        let mut i = Index::new();
        i.insert(b"f".to_vec(), e(Kind::File, 2, 3));
        i.save(&p, root).expect("save");
        let mtime = |p: &Path| {
            std::fs::metadata(p)
                .and_then(|m| m.modified())
                .expect("mtime")
        };
        let loaded = Index::load_state(&p, root).expect("load").expect("present");
        assert_eq!(loaded.known_at, Some(mtime(&p)));
        // A journal written after the save holds entries seen later.
        let j = crate::journal::journal_path(&p);
        std::fs::write(&j, b"").expect("journal");
        let later = mtime(&p) + std::time::Duration::from_secs(5);
        std::fs::File::options()
            .write(true)
            .open(&j)
            .and_then(|f| f.set_modified(later))
            .expect("set mtime");
        let loaded = Index::load_state(&p, root).expect("load").expect("present");
        assert_eq!(loaded.known_at, Some(later));
    }
}
