//! The `handler` binary as a process, as the Functions host runs it: settings in the
//! environment, a port in `FUNCTIONS_CUSTOMHANDLER_PORT`, readiness by polling `GET /`, logs on
//! stderr (here a file), SIGTERM to stop, and SIGKILL when a test crashes it on purpose.

use std::collections::HashMap;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::support::CLIENT_STATE;

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
        let mut command = Command::new(env!("CARGO_BIN_EXE_handler"));
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
