//! SIGTERM and SIGINT: ask the engine to write everything pending and stop.

use std::io;
use std::os::fd::{AsFd, BorrowedFd};
use std::sync::Arc;

use nix::sys::eventfd::{EfdFlags, EventFd};
use tokio::signal::unix::{signal, SignalKind};

/// A shutdown request the engine thread can wait on beside the inotify
/// descriptor (an `eventfd`: readable once requested).
#[derive(Debug)]
pub struct ShutdownRequest {
    fd: EventFd,
}

impl ShutdownRequest {
    pub fn new() -> io::Result<ShutdownRequest> {
        Ok(ShutdownRequest {
            fd: EventFd::from_flags(EfdFlags::EFD_NONBLOCK | EfdFlags::EFD_CLOEXEC)?,
        })
    }

    /// Asks the engine to stop.
    pub fn request(&self) {
        if let Err(e) = self.fd.write(1) {
            tracing::error!(error = %e, "cannot signal the engine to stop");
        }
    }

    /// The descriptor to wait on (readable once a stop was requested).
    pub fn fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }
}

/// Waits for the engine to finish; on SIGTERM/SIGINT tells it to shut down
/// (it reads the events the kernel still holds and flushes pending events
/// first) and keeps waiting.
pub async fn until_signal_or(
    mut done: tokio::sync::oneshot::Receiver<()>,
    stop: Arc<ShutdownRequest>,
) {
    let (mut term, mut int) = match (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) {
        (Ok(t), Ok(i)) => (t, i),
        _ => {
            tracing::error!("cannot install signal handlers");
            let _ = done.await;
            return;
        }
    };
    tokio::select! {
        _ = &mut done => return,
        _ = term.recv() => tracing::info!("SIGTERM: flushing pending events"),
        _ = int.recv() => tracing::info!("SIGINT: flushing pending events"),
    }
    stop.request();
    let _ = done.await;
}
