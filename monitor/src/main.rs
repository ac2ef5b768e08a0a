//! `file-monitor` binary: parse and validate the command line (exit 2 with a
//! one-line reason when unusable), set up logging on stderr, run.

use std::process::ExitCode;

use clap::Parser as _;
use monitor::config::{Args, Config};
use monitor::engine::Exit;

fn one_line(e: &clap::Error) -> String {
    let rendered = e.render().to_string();
    let body = rendered.split("\nUsage:").next().unwrap_or_default();
    body.lines()
        .map(str::trim)
        .filter(|l| {
            !l.is_empty() && !l.starts_with("tip:") && !l.starts_with("For more information")
        })
        .collect::<Vec<_>>()
        .join(" ")
        .trim_start_matches("error: ")
        .to_owned()
}

/// `RUST_LOG` (default `info`). notify's inotify thread warns "Unable to
/// remove the path from the watches" for every watched directory deleted
/// (it acts on both the parent's event and the directory's own), which is
/// no fault: its messages below error are left out unless a directive
/// names notify.
fn log_filter(spec: Option<String>) -> tracing_subscriber::EnvFilter {
    tracing_subscriber::EnvFilter::try_new(log_directives(spec.as_deref()))
        .or_else(|_| tracing_subscriber::EnvFilter::try_new(log_directives(None)))
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"))
}

/// The directives [`log_filter`] uses for `spec`: `notify::inotify=error`
/// is added unless a directive's target is `notify` or below it, or
/// nothing is logged by default anyway (`off`, `error`).
fn log_directives(spec: Option<&str>) -> String {
    let spec = spec
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .unwrap_or("info");
    let mut names_notify = false;
    let mut quiet = false;
    for d in spec.split(',').map(str::trim).filter(|d| !d.is_empty()) {
        // `target[span{field=value}]=level`, a bare level, or a bare target.
        let target = d.split(['[', '=']).next().unwrap_or_default().trim();
        if !d.contains('=') && !d.contains('[') {
            match target.to_ascii_lowercase().as_str() {
                "off" | "error" => {
                    quiet = true;
                    continue;
                }
                "warn" | "info" | "debug" | "trace" => {
                    quiet = false;
                    continue;
                }
                _ => {}
            }
        }
        if target == "notify" || target.starts_with("notify::") {
            names_notify = true;
        }
    }
    if names_notify || quiet {
        spec.to_owned()
    } else {
        format!("{spec},notify::inotify=error")
    }
}

fn main() -> ExitCode {
    let args = match Args::try_parse() {
        Ok(a) => a,
        Err(e) => {
            use clap::error::ErrorKind;
            if matches!(e.kind(), ErrorKind::DisplayHelp | ErrorKind::DisplayVersion) {
                let _ = e.print();
                return ExitCode::SUCCESS;
            }
            eprintln!("file-monitor: error: {} (see --help)", one_line(&e));
            return ExitCode::from(2);
        }
    };
    let cfg = match Config::from_args(args, &|k| std::env::var(k).ok()) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("file-monitor: error: {e}");
            return ExitCode::from(2);
        }
    };
    // One monitor per state file, held until the process ends.
    let _state_lock = match cfg.state_file.as_deref().map(monitor::journal::lock) {
        None => None,
        Some(Ok(l)) => Some(l),
        Some(Err(e)) => {
            eprintln!("file-monitor: error: {e}");
            let held = matches!(e, monitor::journal::LockError::Held { .. });
            return ExitCode::from(if held { 2 } else { 1 });
        }
    };
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_env_filter(log_filter(std::env::var("RUST_LOG").ok()))
        .init();
    let a = &cfg.attribution;
    let missing: Vec<&str> = [
        ("tenant_id", &a.tenant_id),
        ("user_id", &a.user_id),
        ("session_id", &a.session_id),
    ]
    .into_iter()
    .filter_map(|(k, v)| v.is_none().then_some(k))
    .collect();
    if !missing.is_empty() {
        tracing::warn!(
            "events carry no {}: fdb-sink dead-letters events without tenant_id, user_id and \
             session_id unless the collector adds them (the Vector config does, from pod labels); \
             set them with --metadata or TENANT_ID, USER_ID, SESSION_ID",
            missing.join(", ")
        );
    }
    match monitor::run(cfg) {
        Ok(Exit::Signal) => ExitCode::SUCCESS,
        Ok(Exit::Closed) => {
            tracing::info!("event stream closed by its reader; exiting");
            ExitCode::SUCCESS
        }
        Err(e) => {
            tracing::error!(error = format!("{e:#}"), "file-monitor failed");
            ExitCode::from(1)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::log_directives;

    #[test]
    fn notify_messages_below_error_are_left_out_unless_a_directive_names_notify() {
        for (spec, want) in [
            (None, "info,notify::inotify=error"),
            (Some(""), "info,notify::inotify=error"),
            (Some("debug"), "debug,notify::inotify=error"),
            (
                Some("file_monitor::notifying=debug"),
                "file_monitor::notifying=debug,notify::inotify=error",
            ),
            (
                Some("info,notifyish=debug"),
                "info,notifyish=debug,notify::inotify=error",
            ),
            (Some("info,notify=debug"), "info,notify=debug"),
            (Some("notify::inotify=warn"), "notify::inotify=warn"),
            (Some("info, notify"), "info, notify"),
            (Some("notify[watch]=trace"), "notify[watch]=trace"),
            (Some("off"), "off"),
            (Some("OFF"), "OFF"),
            (Some("error"), "error"),
            (Some("off,monitor=debug"), "off,monitor=debug"),
            (Some("off,debug"), "off,debug,notify::inotify=error"),
        ] {
            assert_eq!(log_directives(spec), want, "RUST_LOG={spec:?}");
        }
    }
}
