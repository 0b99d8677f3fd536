//! Starting the app as the Functions host would reach it: the real server on 127.0.0.1:0.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use teams_notifications::archive::fs::FsArchive;
use teams_notifications::archive::{Archive, Kind, ObjectName};
use teams_notifications::config::Config;
use teams_notifications::functions::routes::{self, AppState};

pub const CLIENT_STATE: &str = "test-client-state-7f3a";

pub struct TestApp {
    pub url: String,
    pub archive_dir: PathBuf,
    pub http: reqwest::Client,
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
    pub server: Option<tokio::task::JoinHandle<()>>,
    _dir: tempfile::TempDir,
}

/// The configuration tests start from: a fresh filesystem archive and a known clientState.
pub fn base_settings(archive_dir: &Path) -> HashMap<String, String> {
    let mut m = HashMap::new();
    m.insert("ARCHIVE_DIR".into(), archive_dir.display().to_string());
    m.insert("NOTIFICATION_CLIENT_STATE".into(), CLIENT_STATE.into());
    m
}

pub fn config_from(settings: &HashMap<String, String>) -> Config {
    Config::from_lookup(|k| settings.get(k).cloned()).expect("test configuration is valid")
}

/// Spawns the app with the base settings plus `overrides`.
pub async fn spawn_app(overrides: &[(&str, &str)]) -> TestApp {
    let dir = tempfile::tempdir().unwrap();
    let archive_dir = dir.path().join("archive");
    let mut settings = base_settings(&archive_dir);
    for (k, v) in overrides {
        settings.insert(k.to_string(), v.to_string());
    }
    let state = teams_notifications::startup::build(&config_from(&settings))
        .await
        .expect("app starts")
        .state();
    spawn_with_state(state, dir, archive_dir).await
}

pub async fn spawn_with_state(
    state: AppState,
    dir: tempfile::TempDir,
    archive_dir: PathBuf,
) -> TestApp {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let handle = tokio::spawn(routes::run(listener, state, async move {
        let _ = rx.await;
    }));
    TestApp {
        url,
        archive_dir,
        http: reqwest::Client::new(),
        shutdown: Some(tx),
        server: Some(handle),
        _dir: dir,
    }
}

impl TestApp {
    pub async fn post(&self, path: &str, body: impl Into<reqwest::Body>) -> reqwest::Response {
        self.http
            .post(format!("{}{}", self.url, path))
            .header("content-type", "application/json")
            .body(body)
            .send()
            .await
            .expect("request reaches the app")
    }

    pub async fn archive(&self) -> FsArchive {
        FsArchive::open(&self.archive_dir).await.unwrap()
    }

    pub async fn objects(&self, kind: Kind) -> Vec<ObjectName> {
        self.archive().await.list(kind).await.unwrap()
    }

    pub async fn read(&self, name: &ObjectName) -> serde_json::Value {
        let bytes = self
            .archive()
            .await
            .get(name)
            .await
            .unwrap()
            .expect("object exists");
        serde_json::from_slice(&bytes).unwrap()
    }

    /// All objects of every kind, as `kind -> count`.
    pub async fn counts(&self) -> HashMap<&'static str, usize> {
        let mut m = HashMap::new();
        for k in Kind::ALL {
            let n = self.objects(k).await.len();
            if n > 0 {
                m.insert(k.prefix(), n);
            }
        }
        m
    }

    /// Asks the server to stop and waits for it to drain.
    pub async fn stop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(h) = self.server.take() {
            h.await.unwrap();
        }
    }
}

/// A fixture file's text.
pub fn fixture(name: &str) -> String {
    std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/fixtures")
            .join(name),
    )
    .unwrap()
}

/// A seed payload with its placeholder clientState replaced by ours.
pub fn fixture_with_client_state(name: &str, client_state: &str) -> String {
    fixture(name)
        .replace("{secret client state}", client_state)
        .replace("<<--SpecifiedClientState-->>", client_state)
}

/// Everything logged (every level, no colours) while a guard from [`CapturedLogs::install`] is
/// held on this thread: for asserting that no secret reaches the logs.
#[derive(Clone, Default)]
pub struct CapturedLogs(std::sync::Arc<std::sync::Mutex<Vec<u8>>>);

impl CapturedLogs {
    /// Routes this thread's tracing to the capture until the guard is dropped.
    pub fn install(&self) -> tracing::subscriber::DefaultGuard {
        let sink = self.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_max_level(tracing::Level::TRACE)
            .with_ansi(false)
            .with_writer(move || sink.clone())
            .finish();
        tracing::subscriber::set_default(subscriber)
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().unwrap()).into_owned()
    }
}

impl std::io::Write for CapturedLogs {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}
