//! The `handler` binary as a process, as the Functions host runs it: settings in the
//! environment, a port in `FUNCTIONS_CUSTOMHANDLER_PORT`, readiness by polling `GET /`, logs on
//! stderr (here a file), SIGTERM to stop, and SIGKILL when a test crashes it on purpose.
//!
//! The binary is the release build (what is deployed), named by `HANDLER_RELEASE_BIN`, which
//! `scripts/test` sets after `cargo build --release --bin handler`. Without it these tests fail
//! and say how to run them: timings under a debug build are not the process's.

use std::collections::HashMap;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::support::CLIENT_STATE;

/// Set by `scripts/test`: the release build of the `handler` binary.
pub const RELEASE_BIN_VAR: &str = "HANDLER_RELEASE_BIN";

/// The release binary the fault suite drives: `HANDLER_RELEASE_BIN`, which must exist and be
/// newer than every source file (a stale build would test old code). Panics saying how to run
/// the suite otherwise.
pub fn release_binary() -> PathBuf {
    let how = "run the fault suite through scripts/test (it runs `cargo build --release --bin \
               handler` and sets HANDLER_RELEASE_BIN), e.g. `scripts/test faults`; or build it \
               and set HANDLER_RELEASE_BIN=target/release/handler";
    let Some(bin) = std::env::var_os(RELEASE_BIN_VAR) else {
        panic!("{RELEASE_BIN_VAR} is not set: the fault suite drives the release binary; {how}");
    };
    let bin = PathBuf::from(bin);
    let built = std::fs::metadata(&bin)
        .and_then(|m| m.modified())
        .unwrap_or_else(|e| panic!("{RELEASE_BIN_VAR}={}: {e}; {how}", bin.display()));
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR"));
    if let Some((source, changed)) = newest_source(manifest)
        && changed > built
    {
        panic!(
            "{RELEASE_BIN_VAR}={} is older than {}: rebuild it; {how}",
            bin.display(),
            source.display()
        );
    }
    bin
}

/// The most recently modified file of the crate's sources (`src/`, `Cargo.toml`, `Cargo.lock`).
fn newest_source(manifest: &Path) -> Option<(PathBuf, std::time::SystemTime)> {
    let mut newest: Option<(PathBuf, std::time::SystemTime)> = None;
    let mut stack = vec![manifest.join("src")];
    let mut files = vec![manifest.join("Cargo.toml"), manifest.join("Cargo.lock")];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).into_iter().flatten().flatten() {
            let path = entry.path();
            if path.is_dir() {
                stack.push(path);
            } else {
                files.push(path);
            }
        }
    }
    for file in files {
        if let Ok(changed) = std::fs::metadata(&file).and_then(|m| m.modified())
            && newest.as_ref().is_none_or(|(_, t)| changed > *t)
        {
            newest = Some((file, changed));
        }
    }
    newest
}

/// Longest wait for a start or an exit before the test fails (a liveness bound, not a timing).
pub const PATIENCE: Duration = Duration::from_secs(60);

pub struct Handler {
    child: Child,
    pub url: String,
    pub log: PathBuf,
}

/// How to start the handler.
#[derive(Clone)]
pub struct Launch {
    /// The binary started: [`release_binary`].
    pub binary: PathBuf,
    pub settings: HashMap<String, String>,
    /// `RLIMIT_NOFILE` for the process (what `prlimit --nofile=N:N` sets).
    pub open_files: Option<u64>,
    pub log: PathBuf,
}

impl Launch {
    /// A filesystem archive in `archive`, our clientState, logs into `log`.
    pub fn new(archive: &Path, log: &Path) -> Self {
        let mut settings = HashMap::new();
        settings.insert("ARCHIVE_DIR".into(), archive.display().to_string());
        settings.insert("NOTIFICATION_CLIENT_STATE".into(), CLIENT_STATE.into());
        settings.insert("RUST_LOG".into(), "info".into());
        Launch {
            binary: release_binary(),
            settings,
            open_files: None,
            log: log.to_path_buf(),
        }
    }

    pub fn set(mut self, name: &str, value: &str) -> Self {
        self.settings.insert(name.into(), value.into());
        self
    }

    pub fn open_files(mut self, n: u64) -> Self {
        self.open_files = Some(n);
        self
    }

    /// Starts the handler on a free port and waits until `GET /` answers.
    pub async fn start(&self) -> Handler {
        let port = free_port();
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .expect("log file opens");
        let mut command = Command::new(&self.binary);
        command
            .arg("serve")
            .env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .envs(&self.settings)
            .env("FUNCTIONS_CUSTOMHANDLER_PORT", port.to_string())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log);
        if let Some(n) = self.open_files {
            let limit = libc::rlimit {
                rlim_cur: n,
                rlim_max: n,
            };
            // SAFETY: setrlimit is async-signal-safe; nothing else runs between fork and exec.
            unsafe {
                command.pre_exec(move || {
                    if libc::setrlimit(libc::RLIMIT_NOFILE, &limit) == 0 {
                        Ok(())
                    } else {
                        Err(std::io::Error::last_os_error())
                    }
                });
            }
        }
        let child = command.spawn().expect("the handler binary starts");
        let handler = Handler {
            child,
            url: format!("http://127.0.0.1:{port}"),
            log: self.log.clone(),
        };
        handler.wait_ready().await;
        handler
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

impl Handler {
    pub fn pid(&self) -> i32 {
        self.child.id() as i32
    }

    async fn wait_ready(&self) {
        let http = reqwest::Client::new();
        let deadline = Instant::now() + PATIENCE;
        loop {
            if let Ok(r) = http.get(&self.url).send().await
                && r.status().is_success()
            {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "the handler did not answer GET / within {PATIENCE:?}; its log:\n{}",
                self.log_text()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// `kill -9`: no drain, no flush, nothing.
    pub fn kill(mut self) {
        // SAFETY: sending a signal to our own child.
        unsafe { libc::kill(self.pid(), libc::SIGKILL) };
        let _ = self.child.wait();
    }

    /// SIGTERM, then waits (at most `within`) for the exit; `None` if it did not exit in time
    /// (it is then killed).
    pub async fn terminate(mut self, within: Duration) -> Option<Duration> {
        let sent = Instant::now();
        // SAFETY: sending a signal to our own child.
        unsafe { libc::kill(self.pid(), libc::SIGTERM) };
        while sent.elapsed() < within {
            if self.child.try_wait().expect("wait works").is_some() {
                return Some(sent.elapsed());
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
        None
    }

    pub fn log_text(&self) -> String {
        String::from_utf8_lossy(&std::fs::read(&self.log).unwrap_or_default()).into_owned()
    }
}

impl Drop for Handler {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}
