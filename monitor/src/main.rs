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
        .filter(|l| !l.is_empty() && !l.starts_with("tip:"))
        .collect::<Vec<_>>()
        .join(" ")
        .trim_start_matches("error: ")
        .to_owned()
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
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .init();
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
