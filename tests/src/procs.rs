//! The project's real binaries, built once per test process with `cargo build`, and
//! child processes that are killed when the test drops them.

use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use thiserror::Error;

/// A binary could not be built or a process could not be started.
#[derive(Debug, Error)]
pub enum ProcError {
    #[error("`cargo build {args}` failed ({status}):\n{stderr}")]
    Build {
        args: String,
        status: String,
        stderr: String,
    },
    #[error("running cargo: {0}")]
    Cargo(#[source] std::io::Error),
    #[error("starting {what}: {source}")]
    Spawn {
        what: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{what} did not become ready within {secs} s")]
    NotReady { what: String, secs: u64 },
    #[error("{0}")]
    Io(#[from] std::io::Error),
}

/// The directory holding this profile's binaries (`target/debug`), found from the
/// running test executable (`target/debug/deps/<test>`).
pub fn target_profile_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("E2E_BIN_DIR") {
        return PathBuf::from(dir);
    }
    let exe = std::env::current_exe().unwrap_or_default();
    let deps = exe.parent().map(Path::to_path_buf).unwrap_or_default();
    if deps.file_name().is_some_and(|n| n == "deps") {
        deps.parent().map(Path::to_path_buf).unwrap_or(deps)
    } else {
        deps
    }
}

/// Paths of the two binaries the scenarios run.
#[derive(Debug, Clone)]
pub struct Binaries {
    pub file_monitor: PathBuf,
    pub fdb_sink: PathBuf,
}

static BUILT: OnceLock<Result<Binaries, String>> = OnceLock::new();

/// Builds `file-monitor` and `fdb-sink` once per process (`cargo build -p monitor -p
/// fdb-sink`, same profile as the tests) and returns their paths. Set `E2E_BIN_DIR` to
/// use binaries built elsewhere instead.
pub fn binaries() -> Result<Binaries, ProcError> {
    let built = BUILT.get_or_init(|| build().map_err(|e| e.to_string()));
    built.clone().map_err(|e| ProcError::Build {
        args: "-p monitor -p fdb-sink".into(),
        status: "see below".into(),
        stderr: e,
    })
}

fn build() -> Result<Binaries, ProcError> {
    let dir = target_profile_dir();
    let bins = Binaries {
        file_monitor: dir.join("file-monitor"),
        fdb_sink: dir.join("fdb-sink"),
    };
    if std::env::var_os("E2E_BIN_DIR").is_some() {
        return Ok(bins);
    }
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let args = ["build", "-p", "monitor", "-p", "fdb-sink", "--bins"];
    let out = Command::new(cargo)
        .args(args)
        .current_dir(crate::paths::repo_root())
        .stdin(Stdio::null())
        .output()
        .map_err(ProcError::Cargo)?;
    if !out.status.success() {
        return Err(ProcError::Build {
            args: args.join(" "),
            status: out.status.to_string(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        });
    }
    Ok(bins)
}

/// A free TCP port on 127.0.0.1 (bound then released; the caller binds it again).
///
/// Never the same port twice in one test process: the kernel may hand a
/// just-released port out again, and two processes started concurrently on
/// the same port would see one of them exit while the other answers for it.
pub fn free_port() -> Result<u16, ProcError> {
    static GIVEN: OnceLock<std::sync::Mutex<std::collections::HashSet<u16>>> = OnceLock::new();
    let given = GIVEN.get_or_init(Default::default);
    loop {
        let port = TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
        if given.lock().unwrap_or_else(|p| p.into_inner()).insert(port) {
            return Ok(port);
        }
    }
}

/// A child process that is killed (SIGKILL) and reaped when dropped.
#[derive(Debug)]
pub struct ChildGuard {
    pub name: String,
    pub child: Option<Child>,
}

impl ChildGuard {
    pub fn spawn(name: &str, cmd: &mut Command) -> Result<Self, ProcError> {
        let child = cmd.spawn().map_err(|source| ProcError::Spawn {
            what: name.to_owned(),
            source,
        })?;
        Ok(ChildGuard {
            name: name.to_owned(),
            child: Some(child),
        })
    }

    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// SIGKILL and reap.
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// SIGTERM, then wait up to `grace` for a clean exit (SIGKILL after that).
    /// Returns the exit status if the process exited by itself.
    pub fn terminate(&mut self, grace: Duration) -> Option<std::process::ExitStatus> {
        let mut c = self.child.take()?;
        if let Ok(pid) = i32::try_from(c.id()) {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(pid),
                nix::sys::signal::Signal::SIGTERM,
            );
        }
        let deadline = Instant::now() + grace;
        while Instant::now() < deadline {
            if let Ok(Some(status)) = c.try_wait() {
                return Some(status);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = c.kill();
        let _ = c.wait();
        None
    }
}

impl Drop for ChildGuard {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Waits until `GET http://<addr><path>` answers 200.
pub fn wait_http_ok(
    addr: SocketAddr,
    path: &str,
    timeout: Duration,
    what: &str,
) -> Result<(), ProcError> {
    use std::io::{Read as _, Write as _};
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        if let Ok(mut s) = std::net::TcpStream::connect_timeout(&addr, Duration::from_millis(200)) {
            let _ = s.set_read_timeout(Some(Duration::from_secs(1)));
            let req = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
            if s.write_all(req.as_bytes()).is_ok() {
                let mut head = [0u8; 12];
                if s.read_exact(&mut head).is_ok() && head.starts_with(b"HTTP/1.1 200") {
                    return Ok(());
                }
            }
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    Err(ProcError::NotReady {
        what: what.to_owned(),
        secs: timeout.as_secs(),
    })
}

/// Waits until something accepts TCP connections on `addr`.
pub fn wait_tcp(addr: SocketAddr, timeout: Duration, what: &str) -> Result<(), ProcError> {
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        if std::net::TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok() {
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    Err(ProcError::NotReady {
        what: what.to_owned(),
        secs: timeout.as_secs(),
    })
}

/// The query API of a sink: its address and the HS256 secret its tokens are signed with.
#[derive(Debug, Clone)]
pub struct ApiConfig {
    pub port: u16,
    pub jwt_secret_file: PathBuf,
}

/// `fdb-sink serve` on an embedded store, ingest on 127.0.0.1:`port`, optionally with
/// the query API.
pub struct SinkProcess {
    pub guard: ChildGuard,
    pub addr: SocketAddr,
    pub api_addr: Option<SocketAddr>,
    pub store_dir: PathBuf,
}

impl SinkProcess {
    /// Starts the sink and waits for `/readyz` (and for the API listener).
    pub fn start(
        bins: &Binaries,
        store_dir: &Path,
        port: u16,
        api: Option<&ApiConfig>,
    ) -> Result<Self, ProcError> {
        let addr: SocketAddr = ([127, 0, 0, 1], port).into();
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(store_dir.with_extension("sink.log"))?;
        let mut cmd = Command::new(&bins.fdb_sink);
        cmd.arg("serve")
            .arg("--store")
            .arg(format!("embedded:{}", store_dir.display()))
            .arg("--listen")
            .arg(addr.to_string())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log);
        let api_addr = api.map(|a| SocketAddr::from(([127, 0, 0, 1], a.port)));
        if let (Some(api), Some(api_addr)) = (api, api_addr) {
            cmd.arg("--api-listen")
                .arg(api_addr.to_string())
                .arg("--jwt-secret-file")
                .arg(&api.jwt_secret_file);
        }
        let guard = ChildGuard::spawn("fdb-sink serve", &mut cmd)?;
        wait_http_ok(addr, "/readyz", Duration::from_secs(30), "fdb-sink /readyz")?;
        if let Some(a) = api_addr {
            wait_tcp(a, Duration::from_secs(30), "fdb-sink query API")?;
        }
        Ok(SinkProcess {
            guard,
            addr,
            api_addr,
            store_dir: store_dir.to_path_buf(),
        })
    }

    /// The ingest URL Vector's http sink posts to.
    pub fn ingest_url(&self) -> String {
        format!("http://{}/v1/events", self.addr)
    }

    /// The sink's log so far (for assertion messages).
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.store_dir.with_extension("sink.log")).unwrap_or_default()
    }
}
