//! Azurite, the real Blob Storage emulator (the version pinned in `package-lock.json`), for any
//! test that needs Blob Storage.
//!
//! - [`endpoint`]: the shared Azurite. `scripts/test` starts one and exports
//!   `AZURITE_BLOB_ENDPOINT`; without it the first call starts one from `node_modules` on a free
//!   port, once per test binary. If neither works the test fails and says to run `scripts/test`:
//!   a Blob test never passes by skipping.
//! - [`Azurite::start_private`]: an instance of one's own, to [`Azurite::stop`] ("archive down").
//! - [`connection_string`], [`unique_container`], [`blob_archive`], [`admin_container`]: the
//!   usual ways in.
//!
//! Every Azurite started here dies with the test process (Linux parent-death signal), even when
//! the process is killed, so no emulator outlives `cargo test`.

use std::io::Read as _;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::os::unix::process::CommandExt as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use azure_core::http::Url;
use azure_storage_blob::BlobContainerClient;
use secrecy::{ExposeSecret, SecretString};
use teams_notifications::archive::blob::BlobArchive;
use teams_notifications::archive::sas::{AccountKey, AccountSas};

pub use teams_notifications::archive::connection_string::{
    DEVELOPMENT_ACCOUNT as ACCOUNT, DEVELOPMENT_ACCOUNT_KEY as ACCOUNT_KEY,
};

const HOW_TO_RUN: &str = "run the tests with `scripts/test`: it installs the pinned Azurite \
                          (npm ci) and exports AZURITE_BLOB_ENDPOINT";
const READY_WITHIN: Duration = Duration::from_secs(30);

/// The shared Azurite's Blob endpoint, e.g. `http://127.0.0.1:41234/devstoreaccount1`.
/// Panics (failing the test) with instructions if no Azurite can be had.
pub fn endpoint() -> String {
    static SHARED: OnceLock<Result<String, String>> = OnceLock::new();
    SHARED
        .get_or_init(|| match std::env::var("AZURITE_BLOB_ENDPOINT") {
            Ok(e) if !e.trim().is_empty() => check_given_endpoint(e.trim().trim_end_matches('/')),
            _ => start_shared(),
        })
        .clone()
        .unwrap_or_else(|message| panic!("{message}"))
}

/// A connection string for `endpoint` with the well-known Azurite account and key.
pub fn connection_string(endpoint: &str) -> String {
    format!(
        "DefaultEndpointsProtocol=http;AccountName={ACCOUNT};AccountKey={ACCOUNT_KEY};BlobEndpoint={endpoint}"
    )
}

/// A container name no other test (or earlier run on the same Azurite) uses.
pub fn unique_container(label: &str) -> String {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let label: String = label
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_lowercase()
            } else {
                '-'
            }
        })
        .take(30)
        .collect();
    let label = label.trim_matches('-').replace("--", "-");
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    format!(
        "t-{label}-{:x}-{}-{nanos:x}",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed)
    )
}

/// A Blob archive on the shared Azurite, in a fresh container that the backend creates.
pub async fn blob_archive(label: &str) -> BlobArchive {
    let endpoint = endpoint();
    BlobArchive::from_connection_string(
        &SecretString::from(connection_string(&endpoint)),
        &unique_container(label),
    )
    .await
    .unwrap_or_else(|e| panic!("opening a blob archive on Azurite at {endpoint}: {e}"))
}

/// A container client with full rights (read, write, delete, list) through an account SAS, to
/// inspect or damage what a test archived behind the backend's back.
pub fn admin_container(endpoint: &str, container: &str) -> BlobContainerClient {
    let key = AccountKey::from_base64(ACCOUNT, ACCOUNT_KEY).expect("the well-known key");
    let sas = AccountSas {
        permissions: "rwdl".into(),
        ..AccountSas::for_archive(
            time::OffsetDateTime::now_utc() + time::Duration::hours(1),
            false,
        )
    };
    let url = format!("{endpoint}/{container}?{}", key.sign(&sas).expose_secret());
    BlobContainerClient::new(Url::parse(&url).expect("container URL"), None, None)
        .expect("container client")
}

/// An Azurite of one's own. Killed by [`Azurite::stop`] or on drop.
pub struct Azurite {
    child: Option<Child>,
    endpoint: String,
    /// Holds the log file until the instance is dropped.
    _dir: tempfile::TempDir,
}

impl Azurite {
    /// Starts a private Azurite on a free port and waits until it answers.
    pub fn start_private() -> Azurite {
        start().unwrap_or_else(|message| panic!("{message}"))
    }

    pub fn endpoint(&self) -> &str {
        &self.endpoint
    }

    /// The emulator's process id (the throughput benchmark reads its CPU time).
    #[allow(dead_code)]
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// Kills this instance and waits for it: its port then refuses connections.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for Azurite {
    fn drop(&mut self) {
        self.stop();
    }
}

fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn check_given_endpoint(endpoint: &str) -> Result<String, String> {
    let url = Url::parse(endpoint).map_err(|e| {
        format!("AZURITE_BLOB_ENDPOINT={endpoint:?} is not a URL ({e}); {HOW_TO_RUN}")
    })?;
    let addr = url
        .socket_addrs(|| None)
        .ok()
        .and_then(|a| a.into_iter().next())
        .ok_or_else(|| {
            format!("AZURITE_BLOB_ENDPOINT={endpoint:?} has no address; {HOW_TO_RUN}")
        })?;
    if TcpStream::connect_timeout(&addr, Duration::from_secs(2)).is_err() {
        return Err(format!(
            "AZURITE_BLOB_ENDPOINT={endpoint} does not answer; {HOW_TO_RUN}"
        ));
    }
    Ok(endpoint.to_string())
}

/// Starts the shared instance from a thread that lives as long as the process: the
/// parent-death signal follows the thread that spawned the child, and test threads end early.
fn start_shared() -> Result<String, String> {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::Builder::new()
        .name("shared-azurite".into())
        .spawn(move || {
            match start() {
                Ok(azurite) => {
                    let _ = tx.send(Ok(azurite.endpoint.clone()));
                    // Keep the child (and its log) for the life of the process.
                    let _keep = azurite;
                    loop {
                        std::thread::park();
                    }
                }
                Err(message) => {
                    let _ = tx.send(Err(message));
                }
            }
        })
        .map_err(|e| format!("cannot start a thread for Azurite: {e}"))?;
    rx.recv()
        .map_err(|_| "the Azurite starter thread died".to_string())?
}

fn start() -> Result<Azurite, String> {
    let program = repo_root().join("node_modules/.bin/azurite-blob");
    if !program.exists() {
        return Err(format!(
            "Azurite is not available: AZURITE_BLOB_ENDPOINT is unset and {} is missing; {HOW_TO_RUN}",
            program.display()
        ));
    }
    let dir = tempfile::tempdir().map_err(|e| format!("temporary directory: {e}"))?;
    let log = dir.path().join("azurite.log");
    let mut last_failure = String::new();
    // A free port can be taken between our probe and Azurite's bind: try a few.
    for _ in 0..3 {
        let port = free_port()?;
        let mut child = spawn(&program, port, &log)?;
        match wait_until_ready(&mut child, port) {
            Ok(()) => {
                return Ok(Azurite {
                    child: Some(child),
                    endpoint: format!("http://127.0.0.1:{port}/{ACCOUNT}"),
                    _dir: dir,
                });
            }
            Err(failure) => {
                let _ = child.kill();
                let _ = child.wait();
                last_failure = format!("{failure}; its log:\n{}", read_log(&log));
            }
        }
    }
    Err(format!(
        "Azurite did not start: {last_failure}\n{HOW_TO_RUN}"
    ))
}

fn free_port() -> Result<u16, String> {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .map_err(|e| format!("no free port: {e}"))
}

fn spawn(program: &Path, port: u16, log: &Path) -> Result<Child, String> {
    let out = std::fs::File::create(log).map_err(|e| format!("Azurite log file: {e}"))?;
    let err = out
        .try_clone()
        .map_err(|e| format!("Azurite log file: {e}"))?;
    let mut command = Command::new(program);
    command
        .args([
            "--inMemoryPersistence",
            "--silent",
            "--blobHost",
            "127.0.0.1",
        ])
        .args(["--blobPort", &port.to_string()])
        .args(["--skipApiVersionCheck", "--disableTelemetry"])
        .current_dir(repo_root())
        .stdin(Stdio::null())
        .stdout(out)
        .stderr(err);
    // SAFETY: only an async-signal-safe syscall (prctl) runs between fork and exec.
    unsafe {
        command.pre_exec(|| {
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    command
        .spawn()
        .map_err(|e| format!("cannot run {}: {e}", program.display()))
}

fn wait_until_ready(child: &mut Child, port: u16) -> Result<(), String> {
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    let deadline = Instant::now() + READY_WITHIN;
    while Instant::now() < deadline {
        if let Ok(Some(status)) = child.try_wait() {
            return Err(format!("Azurite exited at start ({status})"));
        }
        if TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok() {
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    Err(format!(
        "Azurite did not answer on {addr} within {} s",
        READY_WITHIN.as_secs()
    ))
}

fn read_log(path: &Path) -> String {
    let mut text = String::new();
    if let Ok(mut f) = std::fs::File::open(path) {
        let _ = f.read_to_string(&mut text);
    }
    text
}
