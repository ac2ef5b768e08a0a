//! The `inotify` backend (Linux, the default): the engine thread reads the
//! inotify descriptor itself (no reader thread, no channel): one `read(2)`
//! returns every queued event, which are translated to [`Raw`] events with
//! paths relative to the root.

use std::collections::{BTreeMap, HashMap};
use std::io;
use std::os::fd::{AsFd, BorrowedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use inotify::{EventMask, Inotify, WatchDescriptor, WatchMask};

use super::{Raw, WatchError};
use crate::coalesce::RelPath;
use crate::index::{abs_path, join_rel};

/// Size of the read buffer: room for hundreds of events per `read(2)`.
const BUF_LEN: usize = 64 * 1024;
/// The largest single event: the header plus a name of `NAME_MAX` bytes and its NUL.
const MAX_EVENT: usize = 16 + 256;

/// Bytes one event takes in the read buffer: the kernel pads the name (and
/// its NUL) to a multiple of the 16-byte header.
fn event_len(name_len: usize) -> usize {
    if name_len == 0 {
        16
    } else {
        16 + (name_len + 1).div_ceil(16) * 16
    }
}

/// What every watch asks the kernel for. Closes after reading are never
/// reported, so they are not subscribed to; opens only with `--access`.
/// Attribute changes are never reported either: they keep the ctime the
/// index holds up to date.
pub fn mask(access: bool) -> WatchMask {
    let mut m = WatchMask::CREATE
        | WatchMask::ATTRIB
        | WatchMask::DELETE
        | WatchMask::CLOSE_WRITE
        | WatchMask::MODIFY
        | WatchMask::MOVED_FROM
        | WatchMask::MOVED_TO
        | WatchMask::DELETE_SELF
        | WatchMask::MOVE_SELF
        | WatchMask::ONLYDIR;
    if access {
        m |= WatchMask::OPEN;
    }
    m
}

pub struct Watcher {
    inotify: Inotify,
    root: PathBuf,
    mask: WatchMask,
    /// Own cap (`--max-watches`), 0 = none.
    max: usize,
    by_wd: HashMap<i32, RelPath>,
    by_path: BTreeMap<RelPath, WatchDescriptor>,
    buf: Vec<u8>,
}

impl Watcher {
    /// `access`: whether open events are wanted at all.
    pub fn new(root: &Path, max: usize, access: bool) -> io::Result<Watcher> {
        Ok(Watcher {
            inotify: Inotify::init()?,
            root: root.to_path_buf(),
            mask: mask(access),
            max,
            by_wd: HashMap::new(),
            by_path: BTreeMap::new(),
            buf: vec![0; BUF_LEN],
        })
    }

    /// The descriptor to wait on (readable when events are queued).
    pub fn fd(&self) -> BorrowedFd<'_> {
        self.inotify.as_fd()
    }

    /// Watches one directory (not recursive).
    pub fn watch(&mut self, rel: &[u8]) -> Result<(), WatchError> {
        if self.max > 0 && self.by_path.len() >= self.max && !self.by_path.contains_key(rel) {
            return Err(WatchError::Limit);
        }
        let abs = abs_path(&self.root, rel);
        let wd = match self.inotify.watches().add(&abs, self.mask) {
            Ok(wd) => wd,
            Err(e) => return Err(WatchError::from_io(&abs, e)),
        };
        let id = wd.get_watch_descriptor_id();
        // The same directory under a new name (moved while events were lost)
        // keeps its descriptor: the old name is forgotten.
        if let Some(old) = self.by_wd.insert(id, rel.to_vec()) {
            if old != rel
                && self
                    .by_path
                    .get(&old)
                    .is_some_and(|w| w.get_watch_descriptor_id() == id)
            {
                self.by_path.remove(&old);
            }
        }
        if let Some(old) = self.by_path.insert(rel.to_vec(), wd) {
            let old_id = old.get_watch_descriptor_id();
            if old_id != id && self.by_wd.get(&old_id).is_some_and(|p| p == rel) {
                self.by_wd.remove(&old_id);
            }
        }
        Ok(())
    }

    /// The watched directories.
    pub fn watched(&self) -> &BTreeMap<RelPath, WatchDescriptor> {
        &self.by_path
    }

    /// Removes the watches at or below `p` (a directory deleted or moved:
    /// events still queued for its old name must not be reported under it).
    /// For the root (`p` empty), only its own watch.
    pub fn unwatch_subtree(&mut self, p: &[u8]) {
        let gone: Vec<RelPath> = super::subtree(&self.by_path, p).cloned().collect();
        if gone.is_empty() {
            return;
        }
        let mut watches = self.inotify.watches();
        for path in gone {
            if let Some(wd) = self.by_path.remove(&path) {
                self.by_wd.remove(&wd.get_watch_descriptor_id());
                // A watch the kernel already dropped (its directory was
                // deleted) fails with EINVAL, which is fine.
                let _ = watches.remove(wd);
            }
        }
    }

    /// Reads what the kernel has queued (one `read(2)`) and appends the
    /// translated events to `out`. Returns `None` when nothing was queued,
    /// else whether more may be waiting (the buffer could not take another
    /// event of the largest size).
    pub fn read(&mut self, out: &mut Vec<Raw>) -> io::Result<Option<bool>> {
        let mut buf = std::mem::take(&mut self.buf);
        let mut bytes = 0;
        let res = match self.inotify.read_events(&mut buf) {
            Ok(events) => {
                for ev in events {
                    bytes += event_len(ev.name.map_or(0, |n| n.len()));
                    let name = ev.name.map_or(&b""[..], |n| n.as_bytes());
                    self.translate(
                        ev.wd.get_watch_descriptor_id(),
                        ev.mask,
                        ev.cookie,
                        name,
                        out,
                    );
                }
                Ok(Some(bytes + MAX_EVENT > buf.len()))
            }
            Err(e) => match e.kind() {
                io::ErrorKind::WouldBlock | io::ErrorKind::Interrupted => Ok(None),
                _ => Err(e),
            },
        };
        self.buf = buf;
        res
    }

    /// Translates one kernel event (several bits may be set at once).
    fn translate(
        &mut self,
        wd: i32,
        mask: EventMask,
        cookie: u32,
        name: &[u8],
        out: &mut Vec<Raw>,
    ) {
        if mask.contains(EventMask::Q_OVERFLOW) {
            out.push(Raw::Overflow);
        }
        let Some(base) = self.by_wd.get(&wd) else {
            return;
        };
        if mask.contains(EventMask::IGNORED) {
            // The kernel dropped this watch (its directory is gone).
            let base = base.clone();
            if self
                .by_path
                .get(&base)
                .is_some_and(|w| w.get_watch_descriptor_id() == wd)
            {
                self.by_path.remove(&base);
            }
            self.by_wd.remove(&wd);
            return;
        }
        let mut path = if name.is_empty() {
            base.clone()
        } else {
            join_rel(base, name)
        };
        let dir = mask.contains(EventMask::ISDIR);
        let cookie = cookie as usize;
        // Usually one bit is set: the path is moved into the last event.
        let mut left = [
            EventMask::MOVED_FROM | EventMask::MOVED_TO,
            EventMask::MOVE_SELF,
            EventMask::CREATE,
            EventMask::DELETE,
            EventMask::DELETE_SELF,
            EventMask::MODIFY,
            EventMask::CLOSE_WRITE,
            EventMask::OPEN,
            EventMask::ATTRIB,
        ]
        .iter()
        .filter(|m| mask.intersects(**m))
        .count();
        let mut next = || {
            left = left.saturating_sub(1);
            if left == 0 {
                std::mem::take(&mut path)
            } else {
                path.clone()
            }
        };
        if mask.contains(EventMask::MOVED_FROM) {
            let path = next();
            if self.by_path.contains_key(&path) {
                self.unwatch_subtree(&path);
            }
            out.push(Raw::RenameFrom { path, cookie });
        } else if mask.contains(EventMask::MOVED_TO) {
            let path = next();
            // A watched directory replaced (or exchanged): its watches are
            // stale, and its removal of itself that follows is not a delete
            // of what now holds the name.
            if self.by_path.contains_key(&path) {
                self.unwatch_subtree(&path);
            }
            out.push(Raw::RenameTo {
                path,
                cookie,
                dir: Some(dir),
            });
        }
        if mask.contains(EventMask::MOVE_SELF) {
            out.push(Raw::SelfMoved { path: next() });
        }
        if mask.contains(EventMask::CREATE) {
            out.push(Raw::Create { path: next(), dir });
        }
        if mask.contains(EventMask::DELETE) {
            let path = next();
            if dir && self.by_path.contains_key(&path) {
                self.unwatch_subtree(&path);
            }
            out.push(Raw::Remove { path, dir });
        }
        if mask.contains(EventMask::DELETE_SELF) {
            let path = next();
            self.unwatch_subtree(&path);
            out.push(Raw::Remove { path, dir: true });
        }
        if mask.contains(EventMask::MODIFY) {
            out.push(Raw::Modify { path: next() });
        }
        if mask.contains(EventMask::CLOSE_WRITE) {
            out.push(Raw::CloseWrite { path: next() });
        }
        if mask.contains(EventMask::OPEN) {
            out.push(Raw::Open { path: next() });
        }
        if mask.contains(EventMask::ATTRIB) {
            out.push(Raw::Attrib { path: next() });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read_all(w: &mut Watcher) -> Vec<Raw> {
        let mut out = Vec::new();
        while w.read(&mut out).expect("read").is_some() {}
        out
    }

    #[test]
    fn a_directory_moved_away_loses_its_watches() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let root = tmp.path().join("root");
        std::fs::create_dir_all(root.join("a/b")).expect("mkdir");
        let mut w = Watcher::new(&root, 0, false).expect("inotify");
        for d in [&b""[..], b"a", b"a/b"] {
            w.watch(d).expect("watch");
        }
        std::fs::rename(root.join("a"), tmp.path().join("away")).expect("mv");
        let evs = read_all(&mut w);
        assert!(
            matches!(&evs[0], Raw::RenameFrom { path, .. } if path == b"a"),
            "{evs:?}"
        );
        assert_eq!(w.watched().keys().collect::<Vec<_>>(), [&b"".to_vec()]);
        // Outside the tree now: nothing it does is reported.
        std::fs::write(tmp.path().join("away/b/f"), b"x").expect("write");
        assert_eq!(read_all(&mut w), Vec::<Raw>::new());
    }

    #[test]
    fn a_full_buffer_says_more_may_be_waiting() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let mut w = Watcher::new(tmp.path(), 0, false).expect("inotify");
        w.watch(b"").expect("watch root");
        // 3 events of 32 bytes each per file: more than one buffer holds.
        for i in 0..1000 {
            std::fs::write(tmp.path().join(format!("f{i}")), b"x").expect("write");
        }
        let mut out = Vec::new();
        assert_eq!(w.read(&mut out).expect("read"), Some(true));
        assert_eq!(out.len(), BUF_LEN / 32);
        let mut reads = 1;
        while let Some(more) = w.read(&mut out).expect("read") {
            reads += 1;
            if !more {
                break;
            }
        }
        assert_eq!(out.len(), 3000, "after {reads} reads");
        assert_eq!(w.read(&mut out).expect("read"), None);
    }
}
