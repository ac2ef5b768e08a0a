//! Command line (raw, as clap parses it) and the validated configuration the
//! monitor runs with. Every flag also reads `FILE_MONITOR_<FLAG>`; attribution
//! falls back to `TENANT_ID`, `USER_ID` and `SESSION_ID`.
//!
//! The doc comments of [`Args`] are the `--help` text, written for a
//! terminal: `<unix seconds>` is meant as it reads.
#![allow(rustdoc::invalid_html_tags)]

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::{Parser, ValueEnum};

use crate::ignore::{IgnoreError, IgnoreSet};

const EXAMPLES: &str = "\
Examples:
  # Watch /workspace, JSON lines on stdout, metrics on :9090
  file-monitor /workspace

  # Attribution and a checksum of every written file (up to 64 MiB)
  file-monitor /workspace --metadata=tenant_id=acme,user_id=u42,session_id=s1,team=infra \\
               --checksum=sha256

  # Network or FUSE file system (no inotify): scan every 2 s
  file-monitor /mnt/share --poll --poll-interval=2000

  # Survive container restarts: changes made while down are reported with \"rescan\": true
  file-monitor /workspace --state-file=/var/run/file-monitor/index.json

  # Readable log next to the JSON stream, no metrics listener
  file-monitor . --human-output=/dev/stderr --metrics-addr=off

Every flag can also come from FILE_MONITOR_<FLAG> (e.g. FILE_MONITOR_DEBOUNCE=250,
FILE_MONITOR_IGNORE='*.swp,build/**'). TENANT_ID, USER_ID and SESSION_ID fill
attribution that --metadata does not set.
Default ignores: **/.git, **/node_modules, **/target (see --no-default-ignores).
Exit status: 0 after SIGTERM/SIGINT/SIGHUP or a closed stdout, 2 on a bad invocation,
1 on a runtime failure. Documentation: docs/monitor.md.";

/// A changed index is written to `--state-file` at most this often.
pub const STATE_INTERVAL: Duration = Duration::from_secs(1);

/// Output format of the main stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Format {
    /// One `file-event/1` JSON object per line.
    Json,
    /// One readable line per event (not for machines).
    Human,
}

/// Where kernel file events come from (without `--poll`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Backend {
    /// Read inotify directly (Linux only; the default there): the fewest
    /// wake-ups and system calls per event.
    Inotify,
    /// The `notify` crate's watcher: inotify on Linux, FSEvents on macOS
    /// (the default off Linux).
    Notify,
}

impl Backend {
    /// `inotify` on Linux, `notify` elsewhere.
    pub const DEFAULT: Backend = if cfg!(target_os = "linux") {
        Backend::Inotify
    } else {
        Backend::Notify
    };
}

/// Checksum algorithm for written files.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ChecksumAlgo {
    None,
    Sha256,
    Blake3,
}

/// Watches a directory tree and prints one `file-event/1` JSON line per file
/// event (create, update, delete, move) on standard output. Logs go to stderr.
#[derive(Debug, Parser)]
#[command(name = "file-monitor", version, after_help = EXAMPLES)]
pub struct Args {
    /// Directory to watch; event paths are relative to it.
    #[arg(env = "FILE_MONITOR_ROOT", value_name = "ROOT")]
    pub root: PathBuf,

    /// Detect changes by scanning instead of inotify (WSL2, NFS, FUSE).
    #[arg(long, env = "FILE_MONITOR_POLL", value_parser = clap::builder::BoolishValueParser::new(), num_args = 0..=1, require_equals = true, default_missing_value = "true", default_value = "false")]
    pub poll: bool,

    /// Source of kernel events when not polling: `inotify` (read directly,
    /// Linux only, the default there) or `notify` (the notify crate: inotify
    /// on Linux, FSEvents on macOS; the default elsewhere). Both report the
    /// same events; see docs/monitor.md#how-it-watches.
    #[arg(long, env = "FILE_MONITOR_BACKEND", value_enum, default_value_t = Backend::DEFAULT)]
    pub backend: Backend,

    /// Scan interval in milliseconds for --poll and for subtrees that fell back
    /// to polling when inotify watches ran out.
    #[arg(
        long,
        env = "FILE_MONITOR_POLL_INTERVAL",
        value_name = "MS",
        default_value_t = 1000
    )]
    pub poll_interval: u64,

    /// How long (ms) a completed write is held to merge further writes to the
    /// same file into one `update`. 0 reports every close-after-write at once.
    #[arg(
        long,
        env = "FILE_MONITOR_DEBOUNCE",
        value_name = "MS",
        default_value_t = 100
    )]
    pub debounce: u64,

    /// Where the event stream goes: a file path (appended), or `-` / `/dev/stdout`.
    #[arg(
        long,
        env = "FILE_MONITOR_OUTPUT",
        value_name = "PATH|-",
        default_value = "-"
    )]
    pub output: String,

    /// Format of the main stream.
    #[arg(long, env = "FILE_MONITOR_FORMAT", value_enum, default_value_t = Format::Json)]
    pub format: Format,

    /// Also write the readable log to this file (e.g. /dev/stderr).
    #[arg(long, env = "FILE_MONITOR_HUMAN_OUTPUT", value_name = "PATH")]
    pub human_output: Option<PathBuf>,

    /// Attribution and labels as `k=v,k=v`. `tenant_id`, `user_id` and
    /// `session_id` become top-level fields; the rest go into `metadata`.
    #[arg(
        long,
        env = "FILE_MONITOR_METADATA",
        value_name = "k=v,k=v",
        default_value = ""
    )]
    pub metadata: String,

    /// Checksum of the final content of created and written files.
    #[arg(long, env = "FILE_MONITOR_CHECKSUM", value_enum, default_value_t = ChecksumAlgo::None)]
    pub checksum: ChecksumAlgo,

    /// Files larger than this are reported without a checksum.
    #[arg(long, env = "FILE_MONITOR_CHECKSUM_MAX_BYTES", value_name = "N", default_value_t = 64 * 1024 * 1024)]
    pub checksum_max_bytes: u64,

    /// Glob of paths to ignore, relative to ROOT (repeatable). A pattern
    /// without `/` matches a name at any depth; a matching directory is not
    /// watched and nothing below it is reported.
    #[arg(
        long = "ignore",
        env = "FILE_MONITOR_IGNORE",
        value_name = "GLOB",
        value_delimiter = ','
    )]
    pub ignore: Vec<String>,

    /// Do not apply the default ignores (**/.git, **/node_modules, **/target).
    #[arg(long, env = "FILE_MONITOR_NO_DEFAULT_IGNORES", value_parser = clap::builder::BoolishValueParser::new(), num_args = 0..=1, require_equals = true, default_missing_value = "true", default_value = "false")]
    pub no_default_ignores: bool,

    /// Limit on emitted lines per second; excess `update`s are held back and
    /// merged per path (never dropped); create/delete/move always pass. 0 = no limit.
    #[arg(
        long,
        env = "FILE_MONITOR_MAX_EVENTS_PER_SEC",
        value_name = "N",
        default_value_t = 0
    )]
    pub max_events_per_sec: u32,

    /// Also report `access` events (a file opened by someone else).
    #[arg(long, env = "FILE_MONITOR_ACCESS", value_parser = clap::builder::BoolishValueParser::new(), num_args = 0..=1, require_equals = true, default_missing_value = "true", default_value = "false")]
    pub access: bool,

    /// Persist the index here (at start, within about 1 s of each change, on
    /// exit; between saves, each change written to the stream is appended to
    /// PATH.journal); on start, changes made while the monitor was down are
    /// reported with `"rescan": true`. One monitor per state file (PATH.lock);
    /// an unusable file is kept aside as PATH.unusable-<unix seconds>.
    #[arg(long, env = "FILE_MONITOR_STATE_FILE", value_name = "PATH")]
    pub state_file: Option<PathBuf>,

    /// Address of the Prometheus /metrics, /healthz and /readyz listener, or `off`.
    #[arg(
        long,
        env = "FILE_MONITOR_METRICS_ADDR",
        value_name = "ADDR|off",
        default_value = "0.0.0.0:9090"
    )]
    pub metrics_addr: String,

    /// Use at most this many inotify watches (0 = as many as the kernel allows).
    /// Directories beyond the budget are polled, as when the kernel limit is hit.
    #[arg(
        long,
        env = "FILE_MONITOR_MAX_WATCHES",
        value_name = "N",
        default_value_t = 0
    )]
    pub max_watches: usize,
}

/// Where the main stream goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OutputTarget {
    Stdout,
    File(PathBuf),
}

/// Attribution copied onto every event.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Attribution {
    pub tenant_id: Option<String>,
    pub user_id: Option<String>,
    pub session_id: Option<String>,
    pub metadata: BTreeMap<String, serde_json::Value>,
}

/// The validated configuration.
#[derive(Debug, Clone)]
pub struct Config {
    /// Canonical absolute root.
    pub root: PathBuf,
    pub poll: bool,
    pub backend: Backend,
    pub poll_interval: Duration,
    pub debounce: Duration,
    pub output: OutputTarget,
    pub format: Format,
    pub human_output: Option<PathBuf>,
    pub attribution: Attribution,
    pub checksum: ChecksumAlgo,
    pub checksum_max_bytes: u64,
    pub ignore: IgnoreSet,
    pub max_events_per_sec: u32,
    pub access: bool,
    pub state_file: Option<PathBuf>,
    pub metrics_addr: Option<SocketAddr>,
    pub max_watches: usize,
    /// How often the state file is rewritten while running.
    pub state_interval: Duration,
}

/// Why the invocation is unusable (exit status 2).
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("root {0:?} does not exist")]
    RootMissing(PathBuf),
    #[error("root {0:?} is not a directory")]
    RootNotDir(PathBuf),
    #[error("root {path:?}: {source}")]
    RootUnreadable {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(
        "bad --metadata {0:?}: expected k=v pairs separated by commas, keys of [A-Za-z0-9_.-]"
    )]
    Metadata(String),
    #[error("bad --metrics-addr {0:?}: expected HOST:PORT (e.g. 0.0.0.0:9090) or off")]
    MetricsAddr(String),
    #[error("bad --metadata: key {0:?} is given more than once")]
    MetadataRepeated(String),
    #[error("bad {field} {value:?} (from --metadata or {env}): ids are 1-{max} characters of [A-Za-z0-9._:@-]; fdb-sink would dead-letter every event (bad_id)", max = file_event::MAX_ID_LEN)]
    BadId {
        field: &'static str,
        env: &'static str,
        value: String,
    },
    #[error("--poll-interval must be at least 1 ms")]
    PollInterval,
    #[error("bad {flag} {path:?}: directory {dir:?} {problem}")]
    FileDir {
        flag: &'static str,
        path: PathBuf,
        dir: PathBuf,
        problem: &'static str,
    },
    #[error(transparent)]
    Ignore(#[from] IgnoreError),
}

impl Config {
    /// Validates parsed arguments. `env` reads environment variables (the
    /// process environment in production, a map in tests).
    pub fn from_args(
        args: Args,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<Config, ConfigError> {
        let root = match std::fs::metadata(&args.root) {
            Ok(m) if m.is_dir() => {
                std::fs::canonicalize(&args.root).map_err(|source| ConfigError::RootUnreadable {
                    path: args.root.clone(),
                    source,
                })?
            }
            Ok(_) => return Err(ConfigError::RootNotDir(args.root)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(ConfigError::RootMissing(args.root))
            }
            Err(source) => {
                return Err(ConfigError::RootUnreadable {
                    path: args.root,
                    source,
                })
            }
        };
        if args.poll_interval == 0 {
            return Err(ConfigError::PollInterval);
        }
        let attribution = parse_metadata(&args.metadata, env)?;
        let output = match args.output.as_str() {
            "-" | "/dev/stdout" => OutputTarget::Stdout,
            p => OutputTarget::File(PathBuf::from(p)),
        };
        let metrics_addr = match args.metrics_addr.trim() {
            "off" | "" => None,
            a => Some(
                a.parse::<SocketAddr>()
                    .map_err(|_| ConfigError::MetricsAddr(a.to_owned()))?,
            ),
        };
        let mut globs = Vec::new();
        if !args.no_default_ignores {
            globs.extend(crate::ignore::DEFAULT_IGNORES.iter().map(|s| s.to_string()));
        }
        globs.extend(
            args.ignore
                .iter()
                .filter(|g| !g.is_empty())
                .map(|g| relative_to_root(g, &args.root, &root)),
        );
        // An unusable state file kept aside under the root (see
        // `crate::journal::keep_aside`) is the monitor's own file too.
        if let Some(rel) = args
            .state_file
            .as_ref()
            .and_then(|p| under_root(p, &root))
            .and_then(|rel| rel.to_str().map(globset::escape))
        {
            globs.push(format!("/{rel}{}*", crate::journal::UNUSABLE_SUFFIX));
        }
        let mut ignore = IgnoreSet::new(&globs)?;
        if let OutputTarget::File(p) = &output {
            check_dir("--output", p, false)?;
        }
        if let Some(p) = &args.human_output {
            check_dir("--human-output", p, false)?;
        }
        if let Some(p) = &args.state_file {
            check_dir("--state-file", p, true)?;
        }
        // Never report the monitor's own files if they live under the root:
        // each write to them would be an event, written to them again.
        let own = [
            match &output {
                OutputTarget::File(p) => Some(p),
                OutputTarget::Stdout => None,
            },
            args.human_output.as_ref(),
            args.state_file.as_ref(),
        ];
        for p in own.into_iter().flatten() {
            if let Some(rel) = under_root(p, &root) {
                ignore.add_exact(rel.as_os_str());
            }
        }
        if let Some(state) = &args.state_file {
            for p in [
                crate::journal::journal_path(state),
                crate::journal::lock_path(state),
            ] {
                if let Some(rel) = under_root(&p, &root) {
                    ignore.add_exact(rel.as_os_str());
                }
            }
        }
        Ok(Config {
            root,
            poll: args.poll,
            backend: args.backend,
            poll_interval: Duration::from_millis(args.poll_interval),
            debounce: Duration::from_millis(args.debounce),
            output,
            format: args.format,
            human_output: args.human_output,
            attribution,
            checksum: args.checksum,
            checksum_max_bytes: args.checksum_max_bytes,
            ignore,
            max_events_per_sec: args.max_events_per_sec,
            access: args.access,
            state_file: args.state_file,
            metrics_addr,
            max_watches: args.max_watches,
            state_interval: STATE_INTERVAL,
        })
    }
}

/// A user's `--ignore` glob written as an absolute path under ROOT (as given
/// or canonical) becomes relative to it; globs are matched against paths
/// relative to ROOT.
fn relative_to_root(glob: &str, given: &std::path::Path, root: &std::path::Path) -> String {
    for base in [given, root] {
        let base = base.to_string_lossy();
        let base = base.trim_end_matches('/');
        if base.is_empty() || !base.starts_with('/') {
            continue;
        }
        if let Some(rest) = glob.strip_prefix(base) {
            if let Some(rel) = rest.strip_prefix('/') {
                return rel.to_owned();
            }
        }
    }
    glob.to_owned()
}

/// `path`'s directory must exist (and, when the monitor writes files beside
/// it, be writable): checked at start rather than found out on the first
/// write or at exit.
fn check_dir(
    flag: &'static str,
    path: &std::path::Path,
    writable: bool,
) -> Result<(), ConfigError> {
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let err = |problem| ConfigError::FileDir {
        flag,
        path: path.to_path_buf(),
        dir: dir.clone(),
        problem,
    };
    match std::fs::metadata(&dir) {
        Ok(m) if m.is_dir() => {}
        Ok(_) => return Err(err("is not a directory")),
        Err(_) => return Err(err("does not exist")),
    }
    if writable && nix::unistd::access(&dir, nix::unistd::AccessFlags::W_OK).is_err() {
        return Err(err("is not writable"));
    }
    Ok(())
}

/// `path` relative to the canonical root, when it lies under it.
fn under_root(path: &std::path::Path, root: &std::path::Path) -> Option<PathBuf> {
    let abs = if path.is_absolute() {
        path.to_path_buf()
    } else {
        std::env::current_dir().ok()?.join(path)
    };
    let dir = std::fs::canonicalize(abs.parent()?).ok()?;
    let rel = dir.strip_prefix(root).ok()?;
    Some(rel.join(abs.file_name()?))
}

/// Parses `k=v,k=v`; the three attribution keys fall back to the environment.
pub fn parse_metadata(
    raw: &str,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<Attribution, ConfigError> {
    let mut attr = Attribution::default();
    let mut seen = std::collections::HashSet::new();
    for pair in raw.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let (k, v) = pair
            .split_once('=')
            .ok_or_else(|| ConfigError::Metadata(raw.to_owned()))?;
        let k = k.trim();
        if k.is_empty()
            || !k
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'))
        {
            return Err(ConfigError::Metadata(raw.to_owned()));
        }
        if !seen.insert(k) {
            return Err(ConfigError::MetadataRepeated(k.to_owned()));
        }
        let v = v.trim().to_owned();
        // An empty attribution value (`user_id=$(USER_ID)` with the variable
        // unset) counts as absent, so the environment can still fill it.
        let some = |v: String| (!v.is_empty()).then_some(v);
        match k {
            "tenant_id" => attr.tenant_id = some(v),
            "user_id" => attr.user_id = some(v),
            "session_id" => attr.session_id = some(v),
            _ => {
                attr.metadata
                    .insert(k.to_owned(), serde_json::Value::String(v));
            }
        }
    }
    let nonempty = |k: &str| env(k).filter(|v| !v.is_empty());
    if attr.tenant_id.is_none() {
        attr.tenant_id = nonempty("TENANT_ID");
    }
    if attr.user_id.is_none() {
        attr.user_id = nonempty("USER_ID");
    }
    if attr.session_id.is_none() {
        attr.session_id = nonempty("SESSION_ID");
    }
    for (field, env, v) in [
        ("tenant_id", "TENANT_ID", &attr.tenant_id),
        ("user_id", "USER_ID", &attr.user_id),
        ("session_id", "SESSION_ID", &attr.session_id),
    ] {
        if let Some(v) = v.as_deref().filter(|v| !file_event::valid_id(v)) {
            return Err(ConfigError::BadId {
                field,
                env,
                value: v.to_owned(),
            });
        }
    }
    Ok(attr)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env_of(pairs: &'static [(&'static str, &'static str)]) -> impl Fn(&str) -> Option<String> {
        move |k| {
            pairs
                .iter()
                .find(|(n, _)| *n == k)
                .map(|(_, v)| v.to_string())
        }
    }

    #[test]
    fn metadata_splits_attribution_from_labels() {
        let a = parse_metadata("tenant_id=t1, user_id=u1,team=infra", &env_of(&[])).expect("valid");
        assert_eq!(a.tenant_id.as_deref(), Some("t1"));
        assert_eq!(a.user_id.as_deref(), Some("u1"));
        assert_eq!(a.session_id, None);
        assert_eq!(a.metadata.get("team"), Some(&serde_json::json!("infra")));
        assert_eq!(a.metadata.len(), 1);
    }

    #[test]
    fn env_fills_only_missing_attribution() {
        let env = env_of(&[
            ("TENANT_ID", "env-t"),
            ("SESSION_ID", "env-s"),
            ("USER_ID", ""),
        ]);
        let a = parse_metadata("tenant_id=flag-t", &env).expect("valid");
        assert_eq!(a.tenant_id.as_deref(), Some("flag-t"));
        assert_eq!(a.session_id.as_deref(), Some("env-s"));
        assert_eq!(a.user_id, None, "empty env values are ignored");
    }

    #[test]
    fn empty_attribution_values_fall_back_to_the_environment() {
        let env = env_of(&[("USER_ID", "env-u")]);
        let a = parse_metadata("user_id=,tenant_id=t,note=", &env).expect("valid");
        assert_eq!(a.user_id.as_deref(), Some("env-u"));
        assert_eq!(a.tenant_id.as_deref(), Some("t"));
        assert_eq!(a.metadata.get("note"), Some(&serde_json::json!("")));
    }

    #[test]
    fn bad_metadata_is_rejected() {
        for bad in ["novalue", "=v", "a b=c", "k=v,,x"] {
            let r = parse_metadata(bad, &env_of(&[]));
            if bad == "k=v,,x" {
                assert!(r.is_err(), "{bad:?} has a pair without '='");
            } else {
                assert!(r.is_err(), "{bad:?} must be rejected");
            }
        }
    }

    #[test]
    fn attribution_the_sink_rejects_is_rejected() {
        for (raw, env) in [
            ("user_id=alice+ci@example.com", env_of(&[])),
            ("", env_of(&[("SESSION_ID", "s 1")])),
            ("tenant_id=a/b", env_of(&[])),
        ] {
            assert!(
                matches!(parse_metadata(raw, &env), Err(ConfigError::BadId { .. })),
                "{raw}"
            );
        }
        let ok = parse_metadata("user_id=alice@example.com,tenant_id=ns:t-1", &env_of(&[]));
        assert!(ok.is_ok());
    }

    #[test]
    fn a_repeated_metadata_key_is_rejected() {
        for raw in ["tenant_id=a,tenant_id=b", "x=1,user_id=u,x=2"] {
            assert!(
                matches!(
                    parse_metadata(raw, &env_of(&[])),
                    Err(ConfigError::MetadataRepeated(_))
                ),
                "{raw}"
            );
        }
    }

    #[test]
    fn absolute_ignore_globs_under_the_root_become_relative() {
        let given = std::path::Path::new("/srv/ws/");
        let canonical = std::path::Path::new("/data/ws");
        for (glob, want) in [
            ("/srv/ws/build/**", "build/**"),
            ("/data/ws/*.log", "*.log"),
            ("/srv/wsx/a", "/srv/wsx/a"),
            ("build/**", "build/**"),
        ] {
            assert_eq!(relative_to_root(glob, given, canonical), want, "{glob}");
        }
    }

    #[test]
    fn file_flags_need_an_existing_directory() {
        let d = tempfile::tempdir().expect("tempdir");
        let inside = d.path().join("f");
        assert!(check_dir("--output", &inside, true).is_ok());
        assert!(check_dir("--output", std::path::Path::new("relative"), false).is_ok());
        let missing = d.path().join("no/f");
        assert!(matches!(
            check_dir("--state-file", &missing, true),
            Err(ConfigError::FileDir {
                problem: "does not exist",
                ..
            })
        ));
        std::fs::write(&inside, b"").expect("write");
        assert!(matches!(
            check_dir("--state-file", &inside.join("x"), true),
            Err(ConfigError::FileDir {
                problem: "is not a directory",
                ..
            })
        ));
    }

    #[test]
    fn flags_accept_both_spellings() {
        let a = Args::try_parse_from([
            "file-monitor",
            "/tmp",
            "--debounce=5",
            "--poll-interval",
            "7",
            "--poll",
        ])
        .expect("parses");
        assert_eq!(a.debounce, 5);
        assert_eq!(a.poll_interval, 7);
        assert!(a.poll);
    }
}
