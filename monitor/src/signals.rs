//! SIGTERM, SIGINT and SIGHUP: ask the engine to write everything pending
//! and stop.

use std::io;
use std::os::fd::BorrowedFd;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::signal::unix::{signal, SignalKind};

use crate::output::WriteClock;
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

/// Once a stop was asked for, how long a write to the event stream may
/// wait before the process exits without it (the reader stopped reading).
/// Anything else the engine does before exiting (a scan under way, the
/// state save) is waited for.
pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);
/// How often the write is looked at meanwhile.
const STALL_CHECK: Duration = Duration::from_millis(100);

/// How the wait for the engine ended.
#[derive(Debug, PartialEq, Eq)]
pub enum Stopped {
    /// The engine finished (on its own or after a signal).
    Finished,
    /// A signal asked it to stop, and [`SHUTDOWN_GRACE`] later it was
    /// still in a write that had waited that long: it is stuck writing to
    /// a reader that does not read.
    Stalled,
}

/// Waits for the engine to finish; on SIGTERM/SIGINT/SIGHUP (a closed
/// terminal or session) tells it to shut down
/// (it reads the events the kernel still holds and flushes pending events
/// first) and keeps waiting, unless its write to the stream stalls (see
/// [`SHUTDOWN_GRACE`]).
pub async fn until_signal_or(
    mut done: tokio::sync::oneshot::Receiver<()>,
    stop: Arc<ShutdownRequest>,
    clock: WriteClock,
) -> Stopped {
    let (mut term, mut int, mut hup) = match (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
        signal(SignalKind::hangup()),
    ) {
        (Ok(t), Ok(i), Ok(h)) => (t, i, h),
        _ => {
            tracing::error!("cannot install signal handlers");
            let _ = done.await;
            return Stopped::Finished;
        }
    };
    tokio::select! {
        _ = &mut done => return Stopped::Finished,
        _ = term.recv() => tracing::info!("SIGTERM: flushing pending events"),
        _ = int.recv() => tracing::info!("SIGINT: flushing pending events"),
        _ = hup.recv() => tracing::info!("SIGHUP: flushing pending events"),
    }
    stop.request();
    let asked = Instant::now();
    loop {
        tokio::select! {
            _ = &mut done => return Stopped::Finished,
            _ = tokio::time::sleep(STALL_CHECK) => {}
        }
        if asked.elapsed() >= SHUTDOWN_GRACE
            && clock.blocked_for().is_some_and(|b| b >= SHUTDOWN_GRACE)
        {
            return Stopped::Stalled;
        }
    }
}
