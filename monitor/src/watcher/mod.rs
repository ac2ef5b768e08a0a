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

use std::io;
use std::os::fd::BorrowedFd;
use std::path::Path;

use crate::coalesce::RelPath;
use crate::config::Backend;

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
    },
    /// A watched directory itself was moved (its new name comes from its parent).
    SelfMoved {
        path: RelPath,
    },
    Open {
        path: RelPath,
    },
}

/// Why a watch was not placed.
#[derive(Debug, thiserror::Error)]
pub enum WatchError {
    #[error("inotify watch budget exhausted")]
    Limit,
    #[error("{0}")]
    Other(String),
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
        each!(self, w => w.len())
    }

    pub fn is_empty(&self) -> bool {
        each!(self, w => w.is_empty())
    }

    /// Whether `rel` holds a watch.
    pub fn is_watched(&self, rel: &[u8]) -> bool {
        each!(self, w => w.is_watched(rel))
    }

    /// The watched directories.
    pub fn paths(&self) -> Box<dyn Iterator<Item = &RelPath> + '_> {
        each!(self, w => Box::new(w.paths()))
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
