//! `cargo bench --bench hostile`: what worst-case bodies cost the `handler` process, and how
//! fast Graph's validation handshake is answered while two of them run at once.
//!
//! Bodies (each posted twice, concurrently, to a freshly started handler):
//! - `empty-items`: 4 MiB of `{"value":[{},{},…]}` (1.4 million items, no clientState needed);
//! - `bad-datakeys`: 1,000 rich items with the right clientState and a valid validationToken,
//!   each with a `dataKey` of the wrong length (200 random bytes: shorter than the 256-byte
//!   modulus, which OpenSSL would otherwise put through the private-key operation).
//!
//! Figures per body: CPU seconds of the handler process (user + system, `/proc/PID/stat`),
//! its peak RSS (`VmHWM`), the statuses, the handler's log size, and handshake latencies
//! (`POST ?validationToken=`, one every 20 ms while the two bodies are in flight: median and
//! maximum). `HOSTILE_BENCH_HANDLERS=before=/path/a,after=/path/b` measures several binaries in
//! one run (default: this build's `handler`); BENCHMARKS.md has the figures. Under `cargo test`
//! (no `--bench`) it does a small smoke run.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use serde_json::json;
use teams_notifications::devtools::certificates::{self_signed, to_pem};
use teams_notifications::devtools::issuer::{LocalIssuer, TokenSpec};
use teams_notifications::graph::crypto;

const APP: &str = "8f6c1e4a-34a4-4d25-9a4b-6b7a0c1d2e3f";
const TENANT: &str = "72f988bf-86f1-41af-91ab-2d7cd011db47";
const CLIENT_STATE: &str = "bench-client-state-5d2c";

struct Running {
    child: Child,
    url: String,
    log: PathBuf,
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

async fn start(binary: &Path, dir: &Path, issuer: &LocalIssuer, pem: &Path) -> Running {
    let port = free_port();
    let log = dir.join("handler.log");
    let child = Command::new(binary)
        .env_clear()
        .env("FUNCTIONS_CUSTOMHANDLER_PORT", port.to_string())
        .env("ARCHIVE_DIR", dir.join("archive"))
        .env("NOTIFICATION_CLIENT_STATE", CLIENT_STATE)
        .env("GRAPH_TENANT_ID", TENANT)
        .env("GRAPH_CLIENT_ID", APP)
        .env("AUTHORITY_HOST", issuer.authority_host())
        .env(
            "NOTIFICATION_CERTIFICATES",
            format!("bench={}", pem.display()),
        )
        .env("RUST_LOG", "info")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .expect("the handler starts");
    let url = format!("http://127.0.0.1:{port}");
    let http = reqwest::Client::new();
    let deadline = Instant::now() + Duration::from_secs(60);
    while http.get(&url).send().await.is_err() {
        assert!(Instant::now() < deadline, "the handler did not start");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    Running { child, url, log }
}

/// `(user + system CPU seconds, system CPU seconds, peak RSS in MiB)` of a process so far.
fn usage(pid: u32) -> (f64, f64, f64) {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .unwrap()
        .1
        .split_whitespace()
        .collect();
    // SAFETY: sysconf has no preconditions.
    let ticks = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64;
    let user = fields[11].parse::<f64>().unwrap() / ticks;
    let system = fields[12].parse::<f64>().unwrap() / ticks;
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let hwm_kib: f64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0.0);
    (user + system, system, hwm_kib / 1024.0)
}

fn empty_items(bytes: usize) -> String {
    let n = (bytes - 16) / 3;
    let mut body = String::with_capacity(bytes);
    body.push_str("{\"value\":[{}");
    for _ in 1..n {
        body.push_str(",{}");
    }
    body.push_str("]}");
    body
}

fn bad_datakeys(
    items: usize,
    key: &teams_notifications::keys::DecryptionKey,
    token: &str,
) -> String {
    let value: Vec<_> = (0..items)
        .map(|i| {
            let mut content = crypto::encrypt(
                format!("{{\"id\":\"m{i}\"}}").as_bytes(),
                &key.certificate,
                "bench",
            )
            .unwrap();
            let mut garbage = vec![0u8; 200];
            openssl::rand::rand_bytes(&mut garbage).unwrap();
            content.data_key = Some(STANDARD.encode(garbage));
            json!({
                "subscriptionId": format!("sub-{}", i % 7),
                "clientState": CLIENT_STATE,
                "changeType": "created",
                "resource": format!("chats('c')/messages('m{i}')"),
                "tenantId": TENANT,
                "subscriptionExpirationDateTime": "2026-12-02T10:00:00Z",
                "encryptedContent": content,
            })
        })
        .collect();
    json!({"value": value, "validationTokens": [token]}).to_string()
}

struct Figures {
    cpu_s: f64,
    system_s: f64,
    peak_rss_mib: f64,
    statuses: Vec<u16>,
    log_kib: f64,
    handshake_ms: (f64, f64),
}

/// Posts `body` twice at once, with handshakes alongside, to a fresh handler.
async fn measure(binary: &Path, body: &str, issuer: &LocalIssuer, pem: &Path) -> Figures {
    let dir = tempfile::tempdir().unwrap();
    let handler = start(binary, dir.path(), issuer, pem).await;
    let pid = handler.child.id();
    let (cpu0, sys0, _) = usage(pid);
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(120))
        .build()
        .unwrap();
    let post = |body: String| {
        let (http, url) = (http.clone(), format!("{}/api/notifications", handler.url));
        tokio::spawn(async move {
            http.post(url)
                .header("content-type", "application/json")
                .body(body)
                .send()
                .await
                .map(|r| r.status().as_u16())
                .unwrap_or(0)
        })
    };
    let heavy = [post(body.to_string()), post(body.to_string())];
    let mut latencies = Vec::new();
    let handshake = format!("{}/api/notifications?validationToken=bench", handler.url);
    while heavy.iter().any(|h| !h.is_finished()) {
        let t = Instant::now();
        let r = http.post(&handshake).send().await.unwrap();
        assert_eq!(r.status(), 200);
        latencies.push(t.elapsed().as_secs_f64() * 1000.0);
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let mut statuses = Vec::new();
    for h in heavy {
        statuses.push(h.await.unwrap());
    }
    let (cpu1, sys1, peak) = usage(pid);
    latencies.sort_by(f64::total_cmp);
    let median = latencies.get(latencies.len() / 2).copied().unwrap_or(0.0);
    let max = latencies.last().copied().unwrap_or(0.0);
    let log_kib = std::fs::metadata(&handler.log)
        .map(|m| m.len())
        .unwrap_or(0) as f64
        / 1024.0;
    Figures {
        cpu_s: cpu1 - cpu0,
        system_s: sys1 - sys0,
        peak_rss_mib: peak,
        statuses,
        log_kib,
        handshake_ms: (median, max),
    }
}

fn main() {
    let full = std::env::args().any(|a| a == "--bench");
    let rt = tokio::runtime::Runtime::new().unwrap();
    let handlers: Vec<(String, PathBuf)> = match std::env::var("HOSTILE_BENCH_HANDLERS") {
        Ok(list) => list
            .split(',')
            .filter_map(|e| e.split_once('='))
            .map(|(n, p)| (n.to_string(), PathBuf::from(p)))
            .collect(),
        Err(_) => vec![(
            "this build".into(),
            PathBuf::from(env!("CARGO_BIN_EXE_handler")),
        )],
    };
    let (bytes, items) = if full {
        (4 * 1024 * 1024, 1_000)
    } else {
        (64 * 1024, 20)
    };
    rt.block_on(async {
        let issuer = LocalIssuer::start().await.unwrap();
        let key = self_signed("bench", 1);
        let dir = tempfile::tempdir().unwrap();
        let pem = dir.path().join("bench.pem");
        std::fs::write(&pem, to_pem(&key).unwrap()).unwrap();
        let token = issuer.mint(&TokenSpec::v1(TENANT, APP));
        let bodies = [
            ("empty-items", empty_items(bytes)),
            ("bad-datakeys", bad_datakeys(items, &key, &token)),
        ];
        println!("# hostile bench: each body posted twice at once to a fresh handler");
        println!(
            "| handler | body | CPU s (of it system) | peak RSS MiB | statuses | log KiB | handshake p50 / max ms |"
        );
        println!("| --- | --- | --- | --- | --- | --- | --- |");
        // HOSTILE_BENCH_ONLY=bad-datakeys measures one body.
        let only = std::env::var("HOSTILE_BENCH_ONLY").ok();
        for (body_name, body) in &bodies {
            if only.as_deref().is_some_and(|o| o != *body_name) {
                continue;
            }
            for (name, binary) in &handlers {
                let f = measure(binary, body, &issuer, &pem).await;
                println!(
                    "| {name} | {body_name} ({:.1} MiB) | {:.2} ({:.2}) | {:.0} | {:?} | {:.0} | {:.1} / {:.1} |",
                    body.len() as f64 / 1048576.0,
                    f.cpu_s,
                    f.system_s,
                    f.peak_rss_mib,
                    f.statuses,
                    f.log_kib,
                    f.handshake_ms.0,
                    f.handshake_ms.1
                );
            }
        }
        issuer.shutdown().await;
    });
}
