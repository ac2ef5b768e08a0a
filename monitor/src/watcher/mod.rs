//! Kernel notification backends. Both place one non-recursive watch per
//! directory, on the engine's request, so ignored directories cost no watch
//! and a directory that cannot get one (the per-UID inotify budget ran out:
//! ENOSPC) can be polled instead. Both translate what they receive into
//! [`Raw`] events with paths relative to the root, and both are waited on
//! through one file descriptor that is readable while events are queued.
//!
//! - [`direct`] (`--backend=inotify`, the default on Linux) reads the
//!   inotify queue itself on the engine thread: no reader thread, no channel,
//!   and a watch mask without the events the engine discards.
//! - [`notify_backend`] (`--backend=notify`, the default elsewhere) runs on
//!   the `notify` crate's recommended watcher (inotify on Linux, FSEvents on
//!   macOS), whose own thread hands translated events over.

#[cfg(target_os = "linux")]
pub mod direct;
pub mod notify_backend;
mod pairing;

pub use pairing::{pair_renames, split_unpaired_tail, split_unpaired_tail_if};

use std::io;
use std::os::fd::BorrowedFd;
use std::path::Path;

use crate::coalesce::RelPath;
use crate::config::Backend;

/// Rename halves that carry no cookie (FSEvents reports each name on its
/// own): a disappeared name followed by an appeared one pair up.
pub const NO_COOKIE: usize = usize::MAX;

/// A kernel event, relative to the root.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Raw {
    /// The kernel queue overflowed: events were lost.
    Overflow,
    Create {
        path: RelPath,
        dir: bool,
    },
    Modify {
        path: RelPath,
    },
    CloseWrite {
        path: RelPath,
    },
    Remove {
        path: RelPath,
        dir: bool,
    },
    RenameFrom {
        path: RelPath,
        cookie: usize,
    },
    RenameTo {
        path: RelPath,
        cookie: usize,
        /// Whether a directory arrived, when the kernel says (inotify does,
        /// notify does not).
        dir: Option<bool>,
    },
    /// A watched directory itself was moved (its new name comes from its parent).
    SelfMoved {
        path: RelPath,
    },
    Open {
        path: RelPath,
    },
    /// The status of the inode at `path` changed (`chmod`, `chown`, its
    /// times set, a link added or removed): never reported, only used to
    /// keep the ctime the index holds up to date.
    Attrib {
        path: RelPath,
    },
}

/// Why a watch was not placed.
#[derive(Debug, thiserror::Error)]
pub enum WatchError {
    #[error("inotify watch budget exhausted")]
    Limit,
    /// The directory cannot be looked at by the monitor's user: no read
    /// permission on it, no search permission on it or a directory above
    /// it, or a path longer than `PATH_MAX`. It is handled as an unreadable
    /// directory (docs/monitor.md): looked at again every poll interval.
    #[error("{0}")]
    Unreadable(io::Error),
    #[error("{0}")]
    Other(String),
}

impl WatchError {
    /// The error for a watch the kernel refused with `e`, about `abs`.
    fn from_io(abs: &Path, e: io::Error) -> WatchError {
        if e.raw_os_error() == Some(libc::ENOSPC) {
            WatchError::Limit
        } else if is_unreadable(&e) {
            WatchError::Unreadable(e)
        } else {
            WatchError::Other(format!("{}: {e}", abs.display()))
        }
    }
}

/// Whether `e` says that the monitor's user cannot look at a directory (or
/// at one above it), the way an unreadable directory is told apart from one
/// that is gone or cannot be watched for another reason.
pub fn is_unreadable(e: &io::Error) -> bool {
    e.kind() == io::ErrorKind::PermissionDenied || e.raw_os_error() == Some(libc::ENAMETOOLONG)
}

/// The backend the engine reads kernel events from.
pub enum Watcher {
    #[cfg(target_os = "linux")]
    Direct(direct::Watcher),
    Notify(notify_backend::Watcher),
}

/// Calls the same method on whichever backend runs.
macro_rules! each {
    ($self:expr, $w:ident => $e:expr) => {
        match $self {
            #[cfg(target_os = "linux")]
            Watcher::Direct($w) => $e,
            Watcher::Notify($w) => $e,
        }
    };
}

impl Watcher {
    /// `max`: own cap on watches (0 = none); `access`: whether open events
    /// are wanted at all.
    pub fn new(backend: Backend, root: &Path, max: usize, access: bool) -> io::Result<Watcher> {
        Ok(match backend {
            #[cfg(target_os = "linux")]
            Backend::Inotify => Watcher::Direct(direct::Watcher::new(root, max, access)?),
            #[cfg(not(target_os = "linux"))]
            Backend::Inotify => {
                return Err(io::Error::new(
                    io::ErrorKind::Unsupported,
                    "--backend=inotify exists on Linux only; use --backend=notify",
                ))
            }
            Backend::Notify => Watcher::Notify(notify_backend::Watcher::new(root, max, access)?),
        })
    }

    /// The descriptor to wait on (readable when events are queued).
    pub fn fd(&self) -> BorrowedFd<'_> {
        each!(self, w => w.fd())
    }

    /// Watches one directory (not recursive).
    pub fn watch(&mut self, rel: &[u8]) -> Result<(), WatchError> {
        each!(self, w => w.watch(rel))
    }

    /// Watches held.
    pub fn len(&self) -> usize {
        each!(self, w => w.watched().len())
    }

    pub fn is_empty(&self) -> bool {
        each!(self, w => w.watched().is_empty())
    }

    /// Whether `rel` holds a watch.
    pub fn is_watched(&self, rel: &[u8]) -> bool {
        each!(self, w => w.watched().contains_key(rel))
    }

    /// The watched directories.
    pub fn paths(&self) -> Box<dyn Iterator<Item = &RelPath> + '_> {
        each!(self, w => Box::new(w.watched().keys()))
    }

    /// Removes the watches at or below `p` (a directory deleted or moved:
    /// events still queued for its old name must not be reported under it).
    /// For the root (`p` empty), only its own watch.
    pub fn unwatch_subtree(&mut self, p: &[u8]) {
        each!(self, w => w.unwatch_subtree(p))
    }

    /// Appends the queued events to `out`. Returns `None` when nothing was
    /// queued, else whether more may be waiting.
    pub fn read(&mut self, out: &mut Vec<Raw>) -> io::Result<Option<bool>> {
        each!(self, w => w.read(out))
    }

    /// The backend's name, for logs.
    pub fn name(&self) -> &'static str {
        match self {
            #[cfg(target_os = "linux")]
            Watcher::Direct(_) => "inotify",
            Watcher::Notify(_) => "notify",
        }
    }
}

/// The watched directories at or below `p` (for the root, only itself).
fn subtree<'a, V>(
    watched: &'a std::collections::BTreeMap<RelPath, V>,
    p: &[u8],
) -> impl Iterator<Item = &'a RelPath> + 'a {
    let own = watched.get_key_value(p).map(|(k, _)| k);
    let below = (!p.is_empty()).then(|| {
        let mut lo = p.to_vec();
        lo.push(b'/');
        let mut hi = p.to_vec();
        hi.push(b'/' + 1);
        watched.range(lo..hi).map(|(k, _)| k)
    });
    own.into_iter().chain(below.into_iter().flatten())
}

/// What both backends must do alike.
#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use std::time::{Duration, Instant};

    fn backends() -> Vec<Backend> {
        let mut b = vec![Backend::Notify];
        if cfg!(target_os = "linux") {
            b.push(Backend::Inotify);
        }
        b
    }

    /// Reads until `done` holds for what was read, or 5 s passed (the
    /// notify backend delivers from its own thread).
    pub(crate) fn read_until(w: &mut Watcher, done: impl Fn(&[Raw]) -> bool) -> Vec<Raw> {
        let mut out = Vec::new();
        let limit = Instant::now() + Duration::from_secs(5);
        while !done(&out) && Instant::now() < limit {
            if w.read(&mut out).expect("read").is_none() {
                std::thread::sleep(Duration::from_millis(5));
            }
        }
        out
    }

    #[test]
    fn reports_paths_relative_to_the_root_and_forgets_deleted_dirs() {
        for backend in backends() {
            let tmp = tempfile::tempdir().expect("tempdir");
            let root = tmp.path();
            std::fs::create_dir(root.join("sub")).expect("mkdir");
            let mut w = Watcher::new(backend, root, 0, false).expect("backend");
            w.watch(b"").expect("watch root");
            w.watch(b"sub").expect("watch sub");
            assert_eq!(w.len(), 2);
            std::fs::write(root.join("sub/f"), b"x").expect("write");
            std::fs::remove_file(root.join("sub/f")).expect("rm");
            std::fs::remove_dir(root.join("sub")).expect("rmdir");
            let gone = Raw::Remove {
                path: b"sub".to_vec(),
                dir: true,
            };
            let evs = read_until(&mut w, |e| e.contains(&gone));
            assert!(evs.contains(&gone), "{backend:?}: {evs:?}");
            let f = b"sub/f".to_vec();
            let of_f: Vec<&Raw> = evs
                .iter()
                .filter(|r| match r {
                    Raw::Create { path, .. }
                    | Raw::Modify { path }
                    | Raw::CloseWrite { path }
                    | Raw::Remove { path, .. } => *path == f,
                    _ => false,
                })
                .collect();
            assert_eq!(
                of_f,
                [
                    &Raw::Create {
                        path: f.clone(),
                        dir: false
                    },
                    &Raw::Modify { path: f.clone() },
                    &Raw::CloseWrite { path: f.clone() },
                    &Raw::Remove {
                        path: f,
                        dir: false
                    },
                ],
                "{backend:?}: {evs:?}"
            );
            assert!(
                !evs.iter().any(|r| matches!(r, Raw::Open { .. })),
                "{backend:?}: opens are not wanted: {evs:?}"
            );
            w.unwatch_subtree(b"sub");
            assert_eq!(w.len(), 1, "{backend:?}");
        }
    }

    #[test]
    fn renames_are_paired_by_cookie() {
        for backend in backends() {
            let tmp = tempfile::tempdir().expect("tempdir");
            let root = tmp.path();
            std::fs::write(root.join("a"), b"x").expect("write");
            let mut w = Watcher::new(backend, root, 0, false).expect("backend");
            w.watch(b"").expect("watch root");
            std::fs::rename(root.join("a"), root.join("b")).expect("mv");
            let evs = read_until(&mut w, |e| {
                e.iter().any(|r| matches!(r, Raw::RenameTo { .. }))
            });
            match &evs[..] {
                [Raw::RenameFrom {
                    path: from,
                    cookie: c1,
                }, Raw::RenameTo {
                    path: to,
                    cookie: c2,
                    ..
                }] => {
                    assert_eq!((from.as_slice(), to.as_slice()), (&b"a"[..], &b"b"[..]));
                    assert_eq!(c1, c2, "{backend:?}");
                }
                other => panic!("{backend:?}: {other:?}"),
            }
        }
    }

    #[test]
    fn attribute_changes_are_handed_over() {
        use std::os::unix::fs::PermissionsExt;
        for backend in backends() {
            let tmp = tempfile::tempdir().expect("tempdir");
            std::fs::write(tmp.path().join("f"), b"x").expect("write");
            let mut w = Watcher::new(backend, tmp.path(), 0, false).expect("backend");
            w.watch(b"").expect("watch root");
            std::fs::set_permissions(tmp.path().join("f"), std::fs::Permissions::from_mode(0o600))
                .expect("chmod");
            let attrib = Raw::Attrib {
                path: b"f".to_vec(),
            };
            let evs = read_until(&mut w, |e| e.contains(&attrib));
            assert!(evs.contains(&attrib), "{backend:?}: {evs:?}");
        }
    }

    #[test]
    fn own_cap_reports_the_limit() {
        for backend in backends() {
            let tmp = tempfile::tempdir().expect("tempdir");
            std::fs::create_dir(tmp.path().join("a")).expect("mkdir");
            let mut w = Watcher::new(backend, tmp.path(), 1, false).expect("backend");
            w.watch(b"").expect("watch root");
            w.watch(b"")
                .expect("re-watching a watched directory costs nothing");
            assert!(
                matches!(w.watch(b"a"), Err(WatchError::Limit)),
                "{backend:?}"
            );
        }
    }
}
