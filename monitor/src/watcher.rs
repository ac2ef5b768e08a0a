//! The inotify backend (through `notify`): one non-recursive watch per
//! directory, placed by the engine, so ignored directories cost no watch and
//! a directory that cannot get a watch (the per-UID budget ran out: ENOSPC)
//! can be polled instead. notify's events are translated to [`Raw`] events
//! with paths relative to the root.

use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::time::Instant;

use notify::event::{AccessKind, AccessMode, CreateKind, ModifyKind, RemoveKind, RenameMode};
use notify::{Event, EventKind, RecursiveMode, Watcher as _};

use crate::coalesce::RelPath;
use crate::index::abs_path;

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

/// Messages into the engine.
#[derive(Debug)]
pub enum Msg {
    Event(Result<Event, notify::Error>, Instant),
    Shutdown,
}

fn rel(root: &Path, p: &Path) -> Option<RelPath> {
    p.strip_prefix(root)
        .ok()
        .map(|r| r.as_os_str().as_bytes().to_vec())
}

/// Translates one notify event. Events notify derives on its own (rename
/// pairs, metadata, close-after-read) are not needed and dropped.
pub fn translate(root: &Path, ev: &Event) -> Option<Raw> {
    if ev.need_rescan() {
        return Some(Raw::Overflow);
    }
    let path = ev.paths.first().and_then(|p| rel(root, p))?;
    let raw = match ev.kind {
        EventKind::Create(k) => Raw::Create {
            path,
            dir: k == CreateKind::Folder,
        },
        EventKind::Modify(ModifyKind::Data(_)) => Raw::Modify { path },
        EventKind::Modify(ModifyKind::Name(RenameMode::From)) => match ev.attrs.tracker() {
            Some(cookie) => Raw::RenameFrom { path, cookie },
            None => Raw::SelfMoved { path },
        },
        EventKind::Modify(ModifyKind::Name(RenameMode::To)) => match ev.attrs.tracker() {
            Some(cookie) => Raw::RenameTo { path, cookie },
            None => return None,
        },
        EventKind::Access(AccessKind::Close(AccessMode::Write)) => Raw::CloseWrite { path },
        EventKind::Access(AccessKind::Open(_)) => Raw::Open { path },
        EventKind::Remove(k) => Raw::Remove {
            path,
            dir: k == RemoveKind::Folder,
        },
        _ => return None,
    };
    Some(raw)
}

/// Whether an event can matter to the engine (cheap, runs on notify's thread).
pub fn wanted(ev: &Event, access: bool) -> bool {
    if ev.need_rescan() {
        return true;
    }
    match ev.kind {
        EventKind::Access(AccessKind::Open(_)) => access,
        EventKind::Access(AccessKind::Close(AccessMode::Write)) => true,
        EventKind::Access(_) => false,
        EventKind::Modify(ModifyKind::Metadata(_)) => false,
        EventKind::Modify(ModifyKind::Name(RenameMode::Both)) => false,
        EventKind::Other => false,
        _ => true,
    }
}

/// Why a watch was not placed.
#[derive(Debug, thiserror::Error)]
pub enum WatchError {
    #[error("inotify watch budget exhausted")]
    Limit,
    #[error("{0}")]
    Other(String),
}

pub struct Watcher {
    inner: notify::INotifyWatcher,
    root: PathBuf,
    /// Own cap (`--max-watches`), 0 = none.
    max: usize,
    placed: usize,
}

impl Watcher {
    /// `access`: whether open events are wanted at all. notify 8 always
    /// subscribes to `IN_OPEN`; without `--access` those events (including
    /// the ones caused by the monitor's own scans and checksums) are dropped
    /// here, on notify's thread, before they cost anything else.
    pub fn new(
        root: &Path,
        max: usize,
        access: bool,
        tx: std::sync::mpsc::Sender<Msg>,
    ) -> notify::Result<Watcher> {
        let inner = notify::INotifyWatcher::new(
            move |res: notify::Result<Event>| {
                if let Ok(ev) = &res {
                    if !wanted(ev, access) {
                        return;
                    }
                }
                let _ = tx.send(Msg::Event(res, Instant::now()));
            },
            notify::Config::default(),
        )?;
        Ok(Watcher {
            inner,
            root: root.to_path_buf(),
            max,
            placed: 0,
        })
    }

    /// Watches one directory (not recursive).
    pub fn watch(&mut self, rel: &[u8]) -> Result<(), WatchError> {
        if self.max > 0 && self.placed >= self.max {
            return Err(WatchError::Limit);
        }
        match self
            .inner
            .watch(&abs_path(&self.root, rel), RecursiveMode::NonRecursive)
        {
            Ok(()) => {
                self.placed += 1;
                Ok(())
            }
            Err(e) if matches!(e.kind, notify::ErrorKind::MaxFilesWatch) => Err(WatchError::Limit),
            Err(e) => Err(WatchError::Other(e.to_string())),
        }
    }

    /// The kernel dropped `n` watches (their directories are gone or moved).
    pub fn forget(&mut self, n: usize) {
        self.placed = self.placed.saturating_sub(n);
    }
}
