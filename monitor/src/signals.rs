//! SIGTERM and SIGINT: ask the engine to write everything pending and stop.

use std::sync::mpsc::Sender;

use tokio::signal::unix::{signal, SignalKind};

use crate::watcher::Msg;

/// Waits for the engine to finish; on SIGTERM/SIGINT tells it to shut down
/// (it flushes pending events first) and keeps waiting.
pub async fn until_signal_or(mut done: tokio::sync::oneshot::Receiver<()>, tx: Sender<Msg>) {
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
    let _ = tx.send(Msg::Shutdown);
    drop(tx);
    let _ = done.await;
}
