//! SIGTERM, SIGINT and SIGHUP: ask the engine to write everything pending
//! and stop.

use std::io;
use std::os::fd::BorrowedFd;
use std::sync::Arc;

use tokio::signal::unix::{signal, SignalKind};

use crate::wakeup::Wakeup;

/// A shutdown request the engine thread can wait on beside its event
/// source (readable once requested).
#[derive(Debug)]
pub struct ShutdownRequest {
    wake: Wakeup,
}

impl ShutdownRequest {
    pub fn new() -> io::Result<ShutdownRequest> {
        Ok(ShutdownRequest {
            wake: Wakeup::new()?,
        })
    }

    /// Asks the engine to stop.
    pub fn request(&self) {
        if let Err(e) = self.wake.fire() {
            tracing::error!(error = %e, "cannot signal the engine to stop");
        }
    }

    /// The descriptor to wait on (readable once a stop was requested).
    pub fn fd(&self) -> BorrowedFd<'_> {
        self.wake.fd()
    }
}

/// Waits for the engine to finish; on SIGTERM/SIGINT/SIGHUP (a closed
/// terminal or session) tells it to shut down
/// (it reads the events the kernel still holds and flushes pending events
/// first) and keeps waiting.
pub async fn until_signal_or(
    mut done: tokio::sync::oneshot::Receiver<()>,
    stop: Arc<ShutdownRequest>,
) {
    let (mut term, mut int, mut hup) = match (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
        signal(SignalKind::hangup()),
    ) {
        (Ok(t), Ok(i), Ok(h)) => (t, i, h),
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
        _ = hup.recv() => tracing::info!("SIGHUP: flushing pending events"),
    }
    stop.request();
    let _ = done.await;
}
