use clap::Parser;
use fdb_sink::cli::{self, Cli};

/// mimalloc: batches are allocated on the HTTP workers and freed elsewhere,
/// and the store allocates per key; glibc's allocator spent a fifth of the
/// ingest CPU on that (docs/performance.md).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() {
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                // The storage engine's own recovery and flush notes are
                // for RUST_LOG=debug, not for every command's stderr.
                .unwrap_or_else(|_| {
                    tracing_subscriber::EnvFilter::new("info,fjall=warn,lsm_tree=warn")
                }),
        )
        .init();
    let result = cli::run(cli);
    fdb_sink::store::shutdown();
    if let Err(e) = result {
        // `fdb-sink export … | head`: the reader has what it wanted.
        if broken_pipe(&e) {
            std::process::exit(0);
        }
        eprintln!("fdb-sink: error: {e:#}");
        // 2: the command line cannot work; 3: a conditional change found
        // the data changed and changed nothing; 1: it failed while running.
        let code = if e.downcast_ref::<cli::UsageError>().is_some() {
            2
        } else if e.downcast_ref::<cli::ConditionFailed>().is_some() {
            3
        } else {
            1
        };
        std::process::exit(code);
    }
}

/// True when the command failed because its standard output was closed.
fn broken_pipe(e: &anyhow::Error) -> bool {
    e.chain().any(|c| {
        c.downcast_ref::<std::io::Error>()
            .is_some_and(|io| io.kind() == std::io::ErrorKind::BrokenPipe)
    })
}
