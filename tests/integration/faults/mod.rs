//! The fault suite: the release `handler` binary as a process (what the Functions host runs),
//! crashed, starved of disk, flooded and fed hostile bodies and invocations. Every load here is
//! bounded in count and time; the durations below are liveness bounds (generous), never speed
//! assertions.

mod bodies;
mod invocations;
mod logs;
pub(crate) mod process;
mod slow;
mod storage;

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use reqwest::StatusCode;

use crate::support::CLIENT_STATE;
use process::Launch;

/// One basic notification whose `resource` carries `id` (how the archive is searched).
pub fn basic_body(ids: &[String], client_state: &str) -> String {
    let items: Vec<serde_json::Value> = ids
        .iter()
        .map(|id| {
            serde_json::json!({
                "subscriptionId": "7e3f1c2a-0000-4000-8000-00000000fa17",
                "clientState": client_state,
                "changeType": "created",
                "resource": format!("teams('t')/channels('c')/messages('{id}')"),
                "resourceData": {"id": id},
                "subscriptionExpirationDateTime": "2026-12-02T10:00:00Z",
                "tenantId": "72f988bf-86f1-41af-91ab-2d7cd011db47",
            })
        })
        .collect();
    serde_json::json!({ "value": items }).to_string()
}

/// The ids (`resourceData.id`) of every event record under `archive`.
pub fn archived_ids(archive: &Path) -> HashSet<String> {
    let mut ids = HashSet::new();
    let mut stack = vec![archive.join("events")];
    while let Some(dir) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            if path.is_dir() {
                stack.push(path);
            } else if path.extension().is_some_and(|e| e == "json") {
                let record: serde_json::Value =
                    serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
                if let Some(id) = record["resourceData"]["id"].as_str() {
                    ids.insert(id.to_string());
                }
            }
        }
    }
    ids
}

async fn post(http: &reqwest::Client, url: &str, body: String) -> Option<StatusCode> {
    http.post(format!("{url}/api/notifications"))
        .header("content-type", "application/json")
        .body(body)
        .send()
        .await
        .ok()
        .map(|r| r.status())
}

struct Scratch {
    _dir: tempfile::TempDir,
    archive: PathBuf,
    log: PathBuf,
}

fn scratch() -> Scratch {
    let dir = tempfile::tempdir().unwrap();
    Scratch {
        archive: dir.path().join("archive"),
        log: dir.path().join("handler.log"),
        _dir: dir,
    }
}

/// Bounded load: `workers` clients posting unique notifications until `stop`; every id
/// answered 202 goes into the ledger.
fn spawn_load(
    url: String,
    phase: usize,
    workers: usize,
    ledger: Arc<Mutex<Vec<String>>>,
    stop: Arc<AtomicBool>,
) -> Vec<tokio::task::JoinHandle<()>> {
    (0..workers)
        .map(|w| {
            let (url, ledger, stop) = (url.clone(), ledger.clone(), stop.clone());
            tokio::spawn(async move {
                let http = reqwest::Client::new();
                for n in 0..10_000 {
                    if stop.load(Ordering::Relaxed) {
                        break;
                    }
                    let ids: Vec<String> =
                        (0..3).map(|k| format!("p{phase}-w{w}-n{n}-k{k}")).collect();
                    if post(&http, &url, basic_body(&ids, CLIENT_STATE)).await
                        == Some(StatusCode::ACCEPTED)
                    {
                        ledger.lock().unwrap().extend(ids);
                    } else if stop.load(Ordering::Relaxed) {
                        break;
                    }
                }
            })
        })
        .collect()
}

/// The issue asks for the process that is deployed: the release build, not the test build.
#[test]
fn the_fault_suite_drives_the_release_binary() {
    let s = scratch();
    let launch = Launch::new(&s.archive, &s.log);
    let debug = std::fs::canonicalize(env!("CARGO_BIN_EXE_handler")).unwrap();
    let started = std::fs::canonicalize(&launch.binary).unwrap();
    assert_ne!(
        started, debug,
        "the fault suite would start the debug build"
    );
    assert_eq!(
        started.parent().and_then(Path::file_name),
        Some("release".as_ref()),
        "{} is not cargo's release build",
        started.display()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_under_load_loses_nothing_acknowledged() {
    let s = scratch();
    let launch = Launch::new(&s.archive, &s.log);
    let ledger = Arc::new(Mutex::new(Vec::new()));
    const KILLS: usize = 4;
    for phase in 0..KILLS {
        let handler = launch.start().await;
        let before = ledger.lock().unwrap().len();
        let stop = Arc::new(AtomicBool::new(false));
        let workers = spawn_load(handler.url.clone(), phase, 6, ledger.clone(), stop.clone());
        // Kill mid-run: once this phase has had some answers, at a moment that varies.
        while ledger.lock().unwrap().len() < before + 60 {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        tokio::time::sleep(Duration::from_millis(7 * phase as u64 + 3)).await;
        handler.kill();
        stop.store(true, Ordering::Relaxed);
        for w in workers {
            w.await.unwrap();
        }
    }
    // A restart after the last kill serves again (leftover temporary files do not collide), and
    // sweeps temporary files old enough to be a crash's leftovers.
    let stale = s.archive.join("events").join(".tmp-left-by-a-crash");
    std::fs::write(&stale, b"").unwrap();
    std::fs::File::options()
        .write(true)
        .open(&stale)
        .unwrap()
        .set_modified(std::time::SystemTime::now() - Duration::from_secs(3600))
        .unwrap();
    let handler = launch.start().await;
    let ids = vec!["after-restart".to_string()];
    assert_eq!(
        post(
            &reqwest::Client::new(),
            &handler.url,
            basic_body(&ids, CLIENT_STATE)
        )
        .await,
        Some(StatusCode::ACCEPTED)
    );
    assert!(handler.terminate(process::PATIENCE).await.is_some());
    assert!(
        !stale.exists(),
        "an old temporary file survived the start-up sweep"
    );

    let acknowledged = ledger.lock().unwrap().clone();
    let archived = archived_ids(&s.archive);
    let lost: Vec<&String> = acknowledged
        .iter()
        .filter(|id| !archived.contains(*id))
        .collect();
    assert!(acknowledged.len() >= KILLS * 60);
    assert!(
        lost.is_empty(),
        "{} of {} acknowledged notifications are not in the archive after {KILLS} kills: {:?}",
        lost.len(),
        acknowledged.len(),
        &lost[..lost.len().min(10)]
    );
}

/// A tmpfs mounted for the test's life.
struct Tmpfs(PathBuf);

impl Tmpfs {
    fn mount(at: &Path, size: &str) -> Tmpfs {
        std::fs::create_dir_all(at).unwrap();
        let ok = std::process::Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(at)
            .status()
            .expect("mount runs");
        assert!(ok.success(), "mount -t tmpfs failed at {}", at.display());
        Tmpfs(at.to_path_buf())
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount")
            .arg("-l")
            .arg(&self.0)
            .status();
    }
}

#[tokio::test]
async fn a_full_archive_answers_503_never_202_and_recovers() {
    // SAFETY: geteuid has no preconditions.
    let root = unsafe { libc::geteuid() } == 0;
    assert!(
        root,
        "this test fills the archive's disk with a 2 MiB tmpfs (mount -t tmpfs -o size=2m), \
         which needs root: run the tests as root (CI does)"
    );
    let s = scratch();
    let _mount = Tmpfs::mount(&s.archive, "2m");
    // Most of the space is taken up front, so the disk fills after a few dozen objects.
    let filler = s.archive.join("filler");
    std::fs::write(&filler, vec![0u8; 2 * 1024 * 1024 - 160 * 1024]).unwrap_or_default();
    let handler = Launch::new(&s.archive, &s.log).start().await;
    let http = reqwest::Client::new();

    let mut answered = Vec::new();
    let mut refused_in_a_row = 0;
    for n in 0..2_000 {
        let id = format!("full-{n}");
        let status = post(
            &http,
            &handler.url,
            basic_body(std::slice::from_ref(&id), CLIENT_STATE),
        )
        .await
        .expect("the handler answers");
        assert!(
            status == StatusCode::ACCEPTED || status == StatusCode::SERVICE_UNAVAILABLE,
            "{id}: {status}"
        );
        refused_in_a_row = if status == StatusCode::ACCEPTED {
            0
        } else {
            refused_in_a_row + 1
        };
        answered.push((id, status));
        if refused_in_a_row == 20 {
            break;
        }
    }
    assert_eq!(refused_in_a_row, 20, "the disk never filled");
    let archived = archived_ids(&s.archive);
    for (id, status) in &answered {
        if !archived.contains(id) {
            assert_eq!(
                *status,
                StatusCode::SERVICE_UNAVAILABLE,
                "{id} was acknowledged but not stored"
            );
        }
    }
    assert!(answered.iter().any(|(_, s)| *s == StatusCode::ACCEPTED));

    // Space comes back: Graph's retries are stored.
    std::fs::remove_file(&filler).unwrap();
    for (id, status) in &answered {
        if *status == StatusCode::SERVICE_UNAVAILABLE {
            let again = post(
                &http,
                &handler.url,
                basic_body(std::slice::from_ref(id), CLIENT_STATE),
            )
            .await;
            assert_eq!(
                again,
                Some(StatusCode::ACCEPTED),
                "{id} after space was freed"
            );
        }
    }
    let archived = archived_ids(&s.archive);
    assert!(answered.iter().all(|(id, _)| archived.contains(id)));
    assert!(handler.terminate(process::PATIENCE).await.is_some());
}
