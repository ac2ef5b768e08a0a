//! The `inotify` backend (Linux, the default): the engine thread reads the
//! inotify descriptor itself (no reader thread, no channel): one `read(2)`
//! returns every queued event, which are translated to [`Raw`] events with
//! paths relative to the root.
//!
//! A watch belongs to a directory, not to its name: a watched directory
//! renamed inside the tree keeps its watches (and those below it), which
//! take its new name at the point of the rename in the queue. Events the
//! kernel queued for it after the rename, such as a file moved into it at
//! the same moment, are reported under the new name instead of being lost.

use std::collections::{BTreeMap, HashMap};
use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd};
use std::path::{Path, PathBuf};

use inotify::{EventMask, Inotify, WatchDescriptor, WatchMask};

use super::{Raw, WatchError};
use crate::coalesce::RelPath;
use crate::ignore::IgnoreSet;
use crate::index::{abs_path, join_rel};

/// Size of the read buffer: room for hundreds of events per `read(2)`.
const BUF_LEN: usize = 64 * 1024;
/// The largest single event: the header plus a name of `NAME_MAX` bytes and its NUL.
const MAX_EVENT: usize = 16 + 256;
/// Reads more at most, in one [`Watcher::read`], for the new name of a
/// watched directory's rename that was not read with its old name (cut off
/// by the end of the buffer, or not queued yet: the kernel queues the two
/// halves one after the other).
const REREADS: u32 = 4;

/// One event as the kernel queued it.
#[derive(Clone, Copy)]
struct KernelEvent<'a> {
    wd: i32,
    mask: EventMask,
    cookie: u32,
    name: &'a [u8],
}

/// The event at offset `at` of what `read(2)` returned, and the offset of
/// the next one.
fn event_at(buf: &[u8], at: usize) -> Option<(KernelEvent<'_>, usize)> {
    let word = |i: usize| -> Option<[u8; 4]> { buf.get(at + i..at + i + 4)?.try_into().ok() };
    let wd = i32::from_ne_bytes(word(0)?);
    let mask = EventMask::from_bits_retain(u32::from_ne_bytes(word(4)?));
    let cookie = u32::from_ne_bytes(word(8)?);
    let len = u32::from_ne_bytes(word(12)?) as usize;
    let end = at + 16 + len;
    // The name is padded with NULs to the length the kernel gives.
    let padded = buf.get(at + 16..end)?;
    let name = padded.split(|b| *b == 0).next().unwrap_or_default();
    Some((
        KernelEvent {
            wd,
            mask,
            cookie,
            name,
        },
        end,
    ))
}

/// The `IN_MOVED_TO` with `cookie` among the events in `rest`.
fn moved_to(rest: &[u8], cookie: u32) -> Option<KernelEvent<'_>> {
    let mut at = 0;
    while let Some((ev, next)) = event_at(rest, at) {
        if ev.cookie == cookie && ev.mask.contains(EventMask::MOVED_TO) {
            return Some(ev);
        }
        at = next;
    }
    None
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
    /// Directories renamed in the read being translated whose watches were
    /// moved to their new name: by cookie, the new name.
    moved: Vec<(u32, RelPath)>,
    /// Names never watched (see [`Watcher::set_ignore`]).
    ignore: Option<IgnoreSet>,
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
            moved: Vec::new(),
            ignore: None,
            buf: vec![0; BUF_LEN],
        })
    }

    /// The paths never watched: a watched directory renamed so that it or
    /// a directory below it gets such a name loses its watches.
    pub fn set_ignore(&mut self, ignore: IgnoreSet) {
        self.ignore = Some(ignore);
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

    /// Reads what the kernel has queued (one `read(2)`; a few more when a
    /// watched directory's rename was read without its new name)
    /// and appends the translated events to `out`. Returns `None` when
    /// nothing was queued, else whether more may be waiting (the buffer
    /// could not take another event of the largest size).
    pub fn read(&mut self, out: &mut Vec<Raw>) -> io::Result<Option<bool>> {
        let mut buf = std::mem::take(&mut self.buf);
        let res = self.read_into(&mut buf, out);
        self.buf = buf;
        res
    }

    fn read_into(&mut self, buf: &mut [u8], out: &mut Vec<Raw>) -> io::Result<Option<bool>> {
        use nix::errno::Errno;
        let fd = self.inotify.as_raw_fd();
        // Bytes at the start of `buf` kept from the previous read: from the
        // old name of a watched directory whose new name was not read.
        let mut kept = 0;
        let mut rereads = 0;
        loop {
            let got = match nix::unistd::read(fd, buf.get_mut(kept..).unwrap_or_default()) {
                Ok(n) => n,
                // What was kept is all there is.
                Err(_) if kept > 0 => 0,
                Err(Errno::EAGAIN | Errno::EINTR) => return Ok(None),
                Err(e) => return Err(e.into()),
            };
            let end = kept + got;
            let full = got > 0 && end + MAX_EVENT > buf.len();
            let mut at = 0;
            let mut cut = None;
            while let Some((ev, next)) = event_at(&buf[..end], at) {
                let rest = &buf[next..end];
                // A rename's new name is queued right behind its old one:
                // when it was not read yet, it is read first (a few times at
                // most, and only while that leaves room for more).
                if rereads < REREADS && end - at <= buf.len() / 2 && self.cut_rename(ev, rest) {
                    cut = Some(at);
                    break;
                }
                self.translate(ev, rest, out);
                at = next;
            }
            // A new name not translated after all (its directory's watch
            // dropped in between): the watches moved there go too.
            for (_, to) in std::mem::take(&mut self.moved) {
                self.unwatch_subtree(&to);
            }
            match cut {
                Some(at) => {
                    buf.copy_within(at..end, 0);
                    kept = end - at;
                    rereads += 1;
                    if got == 0 {
                        // Let the renaming process queue the new name.
                        std::thread::yield_now();
                    }
                }
                None => return Ok(Some(full)),
            }
        }
    }

    /// Whether `ev` renames a watched directory and its new name is not
    /// among the events after it in the buffer.
    fn cut_rename(&self, ev: KernelEvent<'_>, rest: &[u8]) -> bool {
        ev.mask.contains(EventMask::MOVED_FROM | EventMask::ISDIR)
            && self
                .by_wd
                .get(&ev.wd)
                .is_some_and(|base| self.by_path.contains_key(&join_rel(base, ev.name)))
            && moved_to(rest, ev.cookie).is_none()
    }

    /// A watched directory renamed from `from`: when its new name is among
    /// the events after it (`rest`), watched, not ignored and not replacing
    /// another watched directory, its watches and those below it take the
    /// new name, and the rename is remembered by its cookie. Returns
    /// whether they did.
    fn move_watches(&mut self, from: &[u8], cookie: u32, rest: &[u8]) -> bool {
        let Some(to) =
            moved_to(rest, cookie).and_then(|ev| Some(join_rel(self.by_wd.get(&ev.wd)?, ev.name)))
        else {
            return false;
        };
        if self.by_path.contains_key(&to) {
            return false;
        }
        let old: Vec<RelPath> = super::subtree(&self.by_path, from).cloned().collect();
        let renamed = |p: &RelPath| {
            let mut n = to.clone();
            n.extend_from_slice(&p[from.len()..]);
            n
        };
        if let Some(ig) = &self.ignore {
            if old.iter().any(|p| ig.matches_self(&renamed(p))) {
                return false;
            }
        }
        for p in old {
            if let Some(wd) = self.by_path.remove(&p) {
                let n = renamed(&p);
                self.by_wd.insert(wd.get_watch_descriptor_id(), n.clone());
                self.by_path.insert(n, wd);
            }
        }
        self.moved.push((cookie, to));
        true
    }

    /// Translates one kernel event (several bits may be set at once);
    /// `rest`: the events read after it.
    fn translate(&mut self, ev: KernelEvent<'_>, rest: &[u8], out: &mut Vec<Raw>) {
        let KernelEvent {
            wd,
            mask,
            cookie,
            name,
        } = ev;
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
        let kernel_cookie = cookie;
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
            // Renamed inside the tree, its watches follow; moved out of it
            // (or over another watched directory), they are dropped.
            if self.by_path.contains_key(&path) && !self.move_watches(&path, kernel_cookie, rest) {
                self.unwatch_subtree(&path);
            }
            out.push(Raw::RenameFrom { path, cookie });
        } else if mask.contains(EventMask::MOVED_TO) {
            let path = next();
            let moved = self.moved.iter().position(|(c, _)| *c == kernel_cookie);
            let watches_moved = moved.is_some();
            if let Some(i) = moved {
                self.moved.swap_remove(i);
            } else if self.by_path.contains_key(&path) {
                // A watched directory replaced (or exchanged): its watches
                // are stale, and its removal of itself that follows is not
                // a delete of what now holds the name.
                self.unwatch_subtree(&path);
            }
            out.push(Raw::RenameTo {
                path,
                cookie,
                dir: Some(dir),
                watches_moved,
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
    fn a_directory_renamed_inside_keeps_its_watches_under_its_new_name() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let root = tmp.path();
        std::fs::create_dir_all(root.join("a/b")).expect("mkdir");
        std::fs::write(root.join("f"), b"x").expect("write");
        let mut w = Watcher::new(root, 0, false).expect("inotify");
        for d in [&b""[..], b"a", b"a/b"] {
            w.watch(d).expect("watch");
        }
        std::fs::rename(root.join("a"), root.join("c")).expect("mv dir");
        // Queued for the directory's own watch after its rename.
        std::fs::rename(root.join("f"), root.join("c/b/f")).expect("mv file");
        let evs = read_all(&mut w);
        assert!(
            evs.iter().any(
                |r| matches!(r, Raw::RenameTo { path, watches_moved: true, .. } if path == b"c")
            ),
            "{evs:?}"
        );
        assert!(
            evs.iter().any(|r| matches!(r, Raw::RenameTo { path, watches_moved: false, .. } if path == b"c/b/f")),
            "{evs:?}"
        );
        let watched: Vec<&[u8]> = w.watched().keys().map(Vec::as_slice).collect();
        assert_eq!(watched, [&b""[..], b"c", b"c/b"]);
    }

    #[test]
    fn a_directory_renamed_to_an_ignored_name_loses_its_watches() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let root = tmp.path();
        std::fs::create_dir_all(root.join("a/b")).expect("mkdir");
        let mut w = Watcher::new(root, 0, false).expect("inotify");
        w.set_ignore(IgnoreSet::new(&["node_modules".to_owned()]).expect("ignore"));
        for d in [&b""[..], b"a", b"a/b"] {
            w.watch(d).expect("watch");
        }
        std::fs::rename(root.join("a"), root.join("node_modules")).expect("mv");
        let evs = read_all(&mut w);
        assert!(
            evs.iter().any(|r| matches!(
                r,
                Raw::RenameTo {
                    watches_moved: false,
                    ..
                }
            )),
            "{evs:?}"
        );
        assert_eq!(w.watched().keys().collect::<Vec<_>>(), [&b"".to_vec()]);
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
