//! The `notify` backend: the `notify` crate's recommended watcher (inotify
//! on Linux, FSEvents on macOS), one non-recursive watch per directory.
//! notify's own thread translates each event into a [`Raw`] and appends it
//! to a queue shared with the engine, firing a [`Wakeup`] when the queue
//! stops being empty; the engine takes the whole queue at once.
//!
//! notify subscribes to more than the engine uses (every open and close):
//! those are discarded here, on notify's thread. A moved or
//! deleted directory loses its watches inside notify before the engine hears
//! of it, so the engine's own [`Watcher::unwatch_subtree`] that follows only
//! updates the record here.
//!
//! On Linux notify names each event by the name its watch was placed under,
//! and drops the watches of a renamed directory only once it has handed
//! over every event read with the rename: events read meanwhile below a
//! directory moved away, exchanged or replaced carry its old name. A watched
//! name seen in a rename is therefore *stale* (see `Names`): what notify
//! reports below it is dropped until the engine has watched that name again
//! or forgotten its watches. The engine scans every directory it sees moved,
//! so what those events described is reported from the scan.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::io;
use std::os::fd::BorrowedFd;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};

use notify::event::{AccessKind, AccessMode, CreateKind, ModifyKind, RemoveKind, RenameMode};
use notify::{Event, EventKind, RecommendedWatcher, RecursiveMode, Watcher as _};

use super::{Raw, WatchError, NO_COOKIE};
use crate::coalesce::RelPath;
use crate::index::abs_path;
use crate::wakeup::Wakeup;

/// Whether the platform reports no close-after-write (FSEvents), so that a
/// data change is the end of a write.
const WRITE_ENDS_ON_MODIFY: bool = !cfg!(target_os = "linux");

/// Identity of a watched directory: two names of one directory (a rename
/// seen only by a rescan) share one kernel watch.
pub type Inode = (u64, u64);

pub struct Watcher {
    inner: RecommendedWatcher,
    root: PathBuf,
    /// Own cap (`--max-watches`), 0 = none.
    max: usize,
    watched: BTreeMap<RelPath, Inode>,
    /// Names watched per directory (almost always 1).
    names: HashMap<Inode, u32>,
    shared: Arc<Shared>,
}

/// What notify's thread hands over to the engine.
struct Shared {
    queue: Mutex<Queue>,
    wake: Wakeup,
}

/// The events handed over, and the names notify's thread checks them by.
#[derive(Default)]
struct Queue {
    events: Vec<Raw>,
    names: Names,
}

/// The watched names, and those a rename made stale, each with the number
/// of the mark (names marked before a round trip through notify's thread
/// started are known to have lost their old watches once it returns).
#[derive(Default)]
struct Names {
    watched: BTreeSet<RelPath>,
    stale: BTreeMap<RelPath, u64>,
    marks: u64,
}

impl Names {
    /// A rename moved `p` away, or moved another entry onto it.
    fn mark(&mut self, p: &[u8]) {
        if self.watched.contains(p) {
            self.marks += 1;
            self.stale.insert(p.to_vec(), self.marks);
        }
    }

    /// Whether `p` lies strictly below a stale name.
    fn below_stale(&self, p: &[u8]) -> bool {
        !self.stale.is_empty()
            && p.iter()
                .enumerate()
                .any(|(i, b)| *b == b'/' && self.stale.contains_key(&p[..i]))
    }

    /// Forgets the stale names at (or, with `subtree`, below) `p` marked no
    /// later than mark `seen`.
    fn clear(&mut self, p: &[u8], subtree: bool, seen: u64) {
        let at: Vec<RelPath> = if subtree {
            super::subtree(&self.stale, p).cloned().collect()
        } else {
            self.stale
                .get_key_value(p)
                .map(|(k, _)| k.clone())
                .into_iter()
                .collect()
        };
        for k in at {
            if self.stale.get(&k).is_some_and(|m| *m <= seen) {
                self.stale.remove(&k);
            }
        }
    }
}

impl Shared {
    fn queue(&self) -> MutexGuard<'_, Queue> {
        // The queue holds plain values: a panic elsewhere leaves it usable.
        self.queue.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// Events notify's thread holds for the engine at most (about 15 MB with
/// paths of typical length). When
/// the engine falls that far behind (its standard output blocked, a burst
/// larger than it can take), later events are dropped and the engine is
/// told of an overflow, as for the kernel's own queue: it rescans the tree
/// once it catches up, so memory stays bounded and nothing is lost silently.
const MAX_QUEUED: usize = 131_072;

/// Runs on notify's thread.
struct Handler {
    root: PathBuf,
    access: bool,
    shared: Arc<Shared>,
    /// [`MAX_QUEUED`], smaller in tests.
    max_queued: usize,
}

impl notify::EventHandler for Handler {
    fn handle_event(&mut self, event: notify::Result<Event>) {
        let raw = match event {
            Ok(ev) => translate(&self.root, self.access, &ev),
            Err(e) => {
                tracing::warn!(error = %e, "notify reported an error");
                None
            }
        };
        let Some(raw) = raw else {
            return;
        };
        let mut q = self.shared.queue();
        if STALE_NAMES && !keep(&self.root, &mut q.names, &raw) {
            tracing::trace!(?raw, "event under a stale name dropped");
            return;
        }
        if q.events.len() >= self.max_queued {
            if !matches!(q.events.last(), Some(Raw::Overflow)) {
                tracing::warn!(
                    queued = q.events.len(),
                    "events are arriving faster than they are written out; dropping them until \
                     the queue drains, then rescanning the tree"
                );
                q.events.push(Raw::Overflow);
            }
            return;
        }
        q.events.push(raw);
        if q.events.len() == 1 {
            if let Err(e) = self.shared.wake.fire() {
                tracing::error!(error = %e, "cannot wake the engine");
            }
        }
    }
}

/// Whether notify names events by the names its watches were placed under
/// (inotify), which go stale when a watched directory is renamed; FSEvents
/// reports the names events happen under.
const STALE_NAMES: bool = cfg!(target_os = "linux");

/// Whether `raw` is handed over; marks the names a rename made stale.
fn keep(root: &Path, names: &mut Names, raw: &Raw) -> bool {
    match raw {
        Raw::RenameFrom { path, .. } | Raw::RenameTo { path, .. } => {
            names.mark(path);
            !names.below_stale(path)
        }
        // The directory a rename replaced, removing itself under the name
        // it was watched by, which now holds what was moved there.
        Raw::Remove { path, dir: true } if names.stale.contains_key(path.as_slice()) => {
            !std::fs::symlink_metadata(abs_path(root, path)).is_ok_and(|m| m.is_dir())
        }
        Raw::Overflow => true,
        Raw::Create { path, .. }
        | Raw::Modify { path }
        | Raw::CloseWrite { path }
        | Raw::Remove { path, .. }
        | Raw::SelfMoved { path }
        | Raw::Open { path }
        | Raw::Attrib { path } => !names.below_stale(path),
    }
}

/// One notify event as the engine sees it; `None` for what it never uses.
fn translate(root: &Path, access: bool, ev: &Event) -> Option<Raw> {
    if ev.need_rescan() {
        return Some(Raw::Overflow);
    }
    let abs = ev.paths.first()?;
    let path = abs.strip_prefix(root).ok()?.as_os_str().as_bytes().to_vec();
    Some(match ev.kind {
        EventKind::Create(k) => Raw::Create {
            path,
            dir: k == CreateKind::Folder,
        },
        EventKind::Remove(k) => Raw::Remove {
            path,
            dir: k == RemoveKind::Folder,
        },
        EventKind::Modify(ModifyKind::Data(_)) if WRITE_ENDS_ON_MODIFY => Raw::CloseWrite { path },
        EventKind::Modify(ModifyKind::Data(_)) => Raw::Modify { path },
        EventKind::Access(AccessKind::Close(AccessMode::Write)) => Raw::CloseWrite { path },
        EventKind::Access(AccessKind::Open(_)) if access => Raw::Open { path },
        EventKind::Modify(ModifyKind::Metadata(_)) => Raw::Attrib { path },
        // inotify: the old name carries the cookie; a watched directory
        // moved itself carries none (its new name comes from its parent).
        EventKind::Modify(ModifyKind::Name(RenameMode::From)) => match ev.tracker() {
            Some(cookie) => Raw::RenameFrom { path, cookie },
            None => Raw::SelfMoved { path },
        },
        EventKind::Modify(ModifyKind::Name(RenameMode::To)) => Raw::RenameTo {
            path,
            cookie: ev.tracker().unwrap_or(NO_COOKIE),
            dir: None,
        },
        // FSEvents: one event per name, no cookie. The name that is gone
        // was moved away, the one that exists was moved here.
        EventKind::Modify(ModifyKind::Name(RenameMode::Any | RenameMode::Other)) => {
            if std::fs::symlink_metadata(abs).is_ok() {
                Raw::RenameTo {
                    path,
                    cookie: NO_COOKIE,
                    dir: None,
                }
            } else {
                Raw::RenameFrom {
                    path,
                    cookie: NO_COOKIE,
                }
            }
        }
        // `Both` repeats a `From` and a `To` already handed over; closes
        // after reading and opens (without --access) are never reported.
        _ => return None,
    })
}

impl Watcher {
    /// `access`: whether open events are wanted at all.
    pub fn new(root: &Path, max: usize, access: bool) -> io::Result<Watcher> {
        let shared = Arc::new(Shared {
            queue: Mutex::new(Queue::default()),
            wake: Wakeup::new()?,
        });
        let handler = Handler {
            root: root.to_path_buf(),
            access,
            shared: shared.clone(),
            max_queued: MAX_QUEUED,
        };
        let inner = RecommendedWatcher::new(handler, notify::Config::default())
            .map_err(|e| io::Error::other(format!("starting notify: {e}")))?;
        Ok(Watcher {
            inner,
            root: root.to_path_buf(),
            max,
            watched: BTreeMap::new(),
            names: HashMap::new(),
            shared,
        })
    }

    /// The descriptor to wait on (readable when events were handed over).
    pub fn fd(&self) -> BorrowedFd<'_> {
        self.shared.wake.fd()
    }

    /// Watches one directory (not recursive).
    pub fn watch(&mut self, rel: &[u8]) -> Result<(), WatchError> {
        if self.max > 0 && self.watched.len() >= self.max && !self.watched.contains_key(rel) {
            return Err(WatchError::Limit);
        }
        let abs = abs_path(&self.root, rel);
        // The kernel resolves the name as a watch does.
        let inode = std::fs::metadata(&abs)
            .map(|m| (m.dev(), m.ino()))
            .map_err(|e| WatchError::from_io(&abs, e))?;
        let seen = {
            let q = self.shared.queue();
            q.names.stale.contains_key(rel).then_some(q.names.marks)
        };
        if let Some(seen) = seen {
            // A round trip through notify's thread: once it returns, the
            // old watch under this name is gone, and whatever notify reports
            // below it from now on comes from the watch placed next.
            let _ = self.inner.unwatch(&abs);
            self.shared.queue().names.clear(rel, false, seen);
        }
        if let Err(e) = self.inner.watch(&abs, RecursiveMode::NonRecursive) {
            return Err(match e.kind {
                notify::ErrorKind::MaxFilesWatch => WatchError::Limit,
                notify::ErrorKind::Io(io) => WatchError::from_io(&abs, io),
                _ => WatchError::Other(format!("{}: {e}", abs.display())),
            });
        }
        if let Some(old) = self.watched.insert(rel.to_vec(), inode) {
            self.forget_name(old);
        }
        *self.names.entry(inode).or_default() += 1;
        self.shared.queue().names.watched.insert(rel.to_vec());
        Ok(())
    }

    /// One name of `inode` is no longer watched; returns whether others are.
    fn forget_name(&mut self, inode: Inode) -> bool {
        match self.names.get_mut(&inode) {
            Some(n) if *n > 1 => {
                *n -= 1;
                true
            }
            _ => {
                self.names.remove(&inode);
                false
            }
        }
    }

    /// The watched directories.
    pub fn watched(&self) -> &BTreeMap<RelPath, Inode> {
        &self.watched
    }

    /// Removes the watches at or below `p` (for the root, only its own).
    pub fn unwatch_subtree(&mut self, p: &[u8]) {
        let gone: Vec<RelPath> = super::subtree(&self.watched, p).cloned().collect();
        let seen = {
            let mut q = self.shared.queue();
            for path in &gone {
                q.names.watched.remove(path);
            }
            q.names.marks
        };
        if gone.is_empty()
            && super::subtree(&self.shared.queue().names.stale, p)
                .next()
                .is_some()
        {
            // Only a round trip through notify's thread tells that the
            // old watches are gone.
            let _ = self.inner.unwatch(&abs_path(&self.root, p));
        }
        let mut shared = Vec::new();
        for path in gone {
            let Some(inode) = self.watched.remove(&path) else {
                continue;
            };
            if self.forget_name(inode) {
                shared.push(inode);
            }
            // Usually notify already dropped it (the directory was deleted or
            // moved): "not watched" is the expected answer.
            let _ = self.inner.unwatch(&abs_path(&self.root, &path));
        }
        // Each unwatch above was a round trip through notify's thread: the
        // old watches of the names marked before it started are gone.
        self.shared.queue().names.clear(p, !p.is_empty(), seen);
        if shared.is_empty() {
            return;
        }
        // Another name of the same directory shared that kernel watch (rare:
        // the names are looked up by walking the record).
        let rewatch: Vec<RelPath> = self
            .watched
            .iter()
            .filter(|(_, i)| shared.contains(i))
            .map(|(p, _)| p.clone())
            .collect();
        for path in rewatch {
            if let Err(e) = self.watch(&path) {
                tracing::debug!(dir = %crate::shown(&path), error = %crate::shown(e.to_string().as_bytes()), "cannot watch directory again");
            }
        }
    }

    /// Takes every event handed over so far. Returns `None` when there was
    /// none, else `Some(false)` (nothing more is waiting).
    pub fn read(&mut self, out: &mut Vec<Raw>) -> io::Result<Option<bool>> {
        let mut q = self.shared.queue();
        self.shared.wake.clear();
        if q.events.is_empty() {
            return Ok(None);
        }
        out.append(&mut q.events);
        Ok(Some(false))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::watcher::tests::read_until;

    /// An engine that falls behind gets at most `max_queued` events, then
    /// one overflow (a rescan) for all it missed, and events again once it
    /// has taken them.
    #[test]
    fn a_full_queue_drops_events_and_reports_one_overflow() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let root = tmp.path();
        let shared = Arc::new(Shared {
            queue: Mutex::new(Queue::default()),
            wake: Wakeup::new().expect("wakeup"),
        });
        let mut h = Handler {
            root: root.to_path_buf(),
            access: false,
            shared: shared.clone(),
            max_queued: 4,
        };
        let mut created = |n: usize| {
            for i in 0..n {
                let ev = Event::new(EventKind::Create(CreateKind::File))
                    .add_path(root.join(format!("f{i}")));
                notify::EventHandler::handle_event(&mut h, Ok(ev));
            }
        };
        created(10);
        let queued = shared.queue().events.clone();
        assert_eq!(queued.len(), 5, "{queued:?}");
        assert!(matches!(queued.last(), Some(Raw::Overflow)), "{queued:?}");
        assert_eq!(
            queued.iter().filter(|r| matches!(r, Raw::Overflow)).count(),
            1
        );
        shared.queue().events.clear();
        created(2);
        let queued = shared.queue().events.clone();
        assert_eq!(queued.len(), 2, "events again once drained: {queued:?}");
        assert!(!queued.iter().any(|r| matches!(r, Raw::Overflow)));
    }

    #[test]
    fn a_second_name_of_a_directory_keeps_its_watch() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let root = tmp.path();
        std::fs::create_dir(root.join("a")).expect("mkdir");
        // Two names, one directory, one kernel watch: what a rescan finds
        // when a directory was renamed while events were lost.
        std::os::unix::fs::symlink("a", root.join("b")).expect("symlink");
        let mut w = crate::watcher::Watcher::Notify(Watcher::new(root, 0, false).expect("notify"));
        w.watch(b"a").expect("watch a");
        w.watch(b"b").expect("watch b");
        w.unwatch_subtree(b"a");
        assert_eq!(w.paths().collect::<Vec<_>>(), [&b"b".to_vec()]);
        std::fs::write(root.join("a/f"), b"x").expect("write");
        let evs = read_until(&mut w, |e| {
            e.iter().any(|r| matches!(r, Raw::CloseWrite { .. }))
        });
        assert!(
            evs.contains(&Raw::CloseWrite {
                path: b"b/f".to_vec()
            }),
            "the remaining name is still watched: {evs:?}"
        );
    }
}
