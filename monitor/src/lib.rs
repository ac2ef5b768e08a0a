//! `file-monitor`: watches a directory tree and prints one `file-event/1`
//! JSON line per file event. See `docs/monitor.md`.

pub mod checksum;
pub mod coalesce;
pub mod config;
pub mod engine;
pub mod ignore;
pub mod index;
pub mod journal;
pub mod metrics;
pub mod mounts;
pub mod output;
pub mod ratelimit;
pub mod signals;
pub mod wakeup;
pub mod watcher;

use std::sync::atomic::AtomicBool;
use std::sync::Arc;

use anyhow::Context as _;
use prometheus_client::registry::Registry;

use crate::config::Config;
use crate::engine::{Engine, Exit};
use crate::metrics::Metrics;
use crate::output::Output;
use crate::signals::ShutdownRequest;
use crate::watcher::Watcher;

/// A path as log lines and the human-readable stream show it: lossy UTF-8
/// with control characters escaped (`\n`, `\u{1b}`), so that a file name
/// cannot forge a line or send escape sequences to the terminal of whoever
/// reads it. Everything else, quotes included, is shown as it is.
pub fn shown(p: &[u8]) -> String {
    let text = String::from_utf8_lossy(p);
    if !text.chars().any(char::is_control) {
        return text.into_owned();
    }
    let mut out = String::with_capacity(text.len() + 8);
    for c in text.chars() {
        if c.is_control() {
            out.extend(c.escape_default());
        } else {
            out.push(c);
        }
    }
    out
}

/// Runs the monitor until SIGTERM/SIGINT/SIGHUP or until the stream's reader goes away.
pub fn run(cfg: Config) -> anyhow::Result<Exit> {
    let mut registry = Registry::default();
    let metrics = Metrics::register(&mut registry);
    let registry = Arc::new(registry);
    let ready = Arc::new(AtomicBool::new(false));

    let listener = match cfg.metrics_addr {
        Some(addr) => Some(
            metrics::bind(addr)
                .with_context(|| format!("binding the metrics listener on {addr}"))?,
        ),
        None => None,
    };
    let out = Output::open(
        &cfg.output,
        cfg.format,
        cfg.human_output.as_deref(),
        cfg.attribution.clone(),
    )
    .context("opening the output")?;

    let clock = out.clock();
    let stop = Arc::new(ShutdownRequest::new().context("creating the shutdown eventfd")?);
    let watcher = if cfg.poll {
        None
    } else {
        Some(
            Watcher::new(cfg.backend, &cfg.root, cfg.max_watches, cfg.access)
                .with_context(|| format!("starting the {:?} backend", cfg.backend))?,
        )
    };

    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    let (done_tx, done_rx) = tokio::sync::oneshot::channel();
    let engine_ready = ready.clone();
    let engine_stop = stop.clone();
    let engine_thread = std::thread::Builder::new()
        .name("engine".into())
        .spawn(move || {
            let mut engine = Engine::new(cfg, out, metrics, engine_stop, watcher, engine_ready);
            let r = engine.start().and_then(|()| engine.run());
            // The process is about to exit: the kernel drops the watches and
            // frees the index at once.
            std::mem::forget(engine);
            let _ = done_tx.send(());
            r
        })
        .context("starting the engine thread")?;

    let stopped = rt.block_on(async move {
        if let Some(l) = listener {
            match tokio::net::TcpListener::from_std(l) {
                Ok(l) => {
                    tokio::spawn(metrics::serve(l, registry, ready));
                }
                Err(e) => tracing::error!(error = %e, "metrics listener unusable"),
            }
        }
        signals::until_signal_or(done_rx, stop, clock).await
    });
    if stopped == signals::Stopped::Stalled {
        // The engine is blocked in a write that may never complete; the
        // state file it keeps was last written after a completed flush, so
        // it claims nothing that was not written.
        anyhow::bail!(
            "writing the event stream has been blocked for {} s since the stop signal (its reader stopped reading): exiting without writing the pending events; a restart with the same --state-file reports what was not written (rescan: true)",
            signals::SHUTDOWN_GRACE.as_secs()
        );
    }
    match engine_thread.join() {
        Ok(r) => Ok(r?),
        Err(_) => anyhow::bail!("the engine thread panicked"),
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn log_lines_show_control_characters_escaped() {
        assert_eq!(super::shown(b"a\nINFO forged"), "a\\nINFO forged");
        assert_eq!(super::shown(b"\x1b[31mred\x01"), "\\u{1b}[31mred\\u{1}");
        assert_eq!(super::shown("caf\u{e9}/x y".as_bytes()), "caf\u{e9}/x y");
        assert_eq!(super::shown(b"bad\xff"), "bad\u{fffd}");
        assert_eq!(super::shown(b"don't \"x\" a\\b"), "don't \"x\" a\\b");
        assert_eq!(super::shown(b"tab\there"), "tab\\there");
    }
}
