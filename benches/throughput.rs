//! `cargo bench --bench throughput`: the notification path's speed, with the figures that
//! BENCHMARKS.md records. A plain binary (no harness): each figure is measured once per run,
//! ratios are taken within the same run, because these machines are noisy.
//!
//! - basic path: parse, clientState, archive to the filesystem; notifications/s for batches of
//!   1 and 100 (the receiver called directly, no HTTP).
//! - rich path: validationTokens, key lookup, RSA-OAEP unwrap, HMAC, AES, archive (raw batch +
//!   events) to the filesystem; notifications per CPU-second (= per core) next to the RSA-2048
//!   private-key operations/s of `openssl speed rsa2048` and of an in-process OAEP loop in the
//!   same run; and p50/p99 answer latency for batches of 100 over real HTTP on loopback.
//! - breakdown: the same rich path with an archive that stores nothing, the parse alone, and
//!   `graph::crypto::decrypt` alone, so a gap to the RSA ceiling can be attributed.
//!
//! - resend: a full resend of the same batches, as a ratio of CPU to their first delivery
//!   (`throughput/resend.rs`);
//! - blob: the rich path against Azurite (`throughput/blob.rs`);
//! - cold: exec -> readiness -> first rich event of the release binary, and the Key Vault
//!   certificate load (`throughput/cold.rs`).
//!
//! `BENCH_ONLY=rich,resend` (any of basic, rich, resend, blob, cold) runs only those phases;
//! `BENCH_ONLY=profile-path` runs the no-storage rich path for a while and exits (for
//! `perf record`). The archive goes to `$TMPDIR`.

#[allow(dead_code)]
#[path = "../tests/integration/azurite.rs"]
mod azurite;
#[path = "throughput/blob.rs"]
mod blob;
#[path = "throughput/cold.rs"]
mod cold;
#[path = "../tests/integration/keyvault/fake.rs"]
mod keyvault_fake;
#[path = "common/measure.rs"]
mod measure;
#[path = "throughput/resend.rs"]
mod resend;

use std::sync::Arc;
use std::time::{Duration, Instant};

use measure::cpu_time;
use serde_json::json;
use teams_notifications::archive::Archive;
use teams_notifications::archive::fs::FsArchive;
use teams_notifications::archive::recent::{DEFAULT_CAPACITY, RecentlyArchived};
use teams_notifications::devtools::certificates as dev;
use teams_notifications::devtools::issuer::{LocalIssuer, TokenSpec};
use teams_notifications::devtools::simulate::{self, Scenario, Target};
use teams_notifications::graph::tokens::TokenValidator;
use teams_notifications::keys::CertificateStore;
use teams_notifications::receiver::{Endpoint, Receiver};

const CLIENT_STATE: &str = "bench-client-state";
const TENANT: &str = "f69f5191-20ae-4093-8dae-3ec09edeb253";
const APP_ID: &str = "7d1b6c4e-0000-4000-8000-00000000b3c4";

/// CPU time of the calling thread so far: the in-process loops' rates are per CPU-second, as
/// `openssl speed`'s are (it divides by user CPU time), so other load on the machine does not
/// lower them.
fn thread_cpu_time() -> Duration {
    let mut t = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime fills the timespec it is given; the clock id is always valid.
    unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut t) };
    Duration::new(t.tv_sec as u64, t.tv_nsec as u32)
}

fn basic_body(batch: usize, offset: usize) -> Vec<u8> {
    let items: Vec<_> = (0..batch)
        .map(|i| {
            json!({
                "subscriptionId": format!("sub-{}", (offset + i) % 7),
                "clientState": CLIENT_STATE,
                "changeType": "created",
                "tenantId": TENANT,
                "subscriptionExpirationDateTime": "2026-11-25T10:30:34.9097561-08:00",
                "resource": format!("teams('t')/channels('c')/messages('{}')", offset + i),
                "resourceData": {"id": (offset + i).to_string(), "@odata.type": "#Microsoft.Graph.chatMessage",
                                  "@odata.id": format!("teams('t')/channels('c')/messages('{}')", offset + i)}
            })
        })
        .collect();
    json!({ "value": items }).to_string().into_bytes()
}

async fn receiver(
    dir: &std::path::Path,
    keys: CertificateStore,
    tokens: Option<Arc<TokenValidator>>,
) -> Receiver {
    // As the builder wires it: the filesystem behind the memory of recent names.
    let archive: Arc<dyn Archive> = Arc::new(RecentlyArchived::new(
        Arc::new(FsArchive::open(dir).await.unwrap()),
        DEFAULT_CAPACITY,
    ));
    Receiver {
        client_state: Some(CLIENT_STATE.to_string().into()),
        archive,
        keys: Arc::new(keys),
        tokens,
        max_items_per_request: teams_notifications::config::DEFAULT_MAX_ITEMS_PER_REQUEST,
        payloads: None,
        alerts: None,
    }
}

/// Every archive folder of the run: removed only at the end, so that no phase pays for the
/// deletion of an earlier phase's files (ext4 without a journal scans recently freed inodes).
static ARCHIVES: std::sync::Mutex<Vec<tempfile::TempDir>> = std::sync::Mutex::new(Vec::new());

fn archive_dir() -> std::path::PathBuf {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().to_path_buf();
    ARCHIVES.lock().unwrap().push(dir);
    path
}

async fn bench_basic(batch: usize, total: usize) -> f64 {
    let dir = archive_dir();
    let r = receiver(&dir, CertificateStore::empty(), None).await;
    let bodies: Vec<Vec<u8>> = (0..total / batch)
        .map(|k| basic_body(batch, k * batch))
        .collect();
    let started = Instant::now();
    for body in &bodies {
        let receipt = r
            .receive(Endpoint::Notifications, bytes::Bytes::copy_from_slice(body))
            .await
            .unwrap();
        assert_eq!(receipt.events, batch);
    }
    total as f64 / started.elapsed().as_secs_f64()
}

fn rich_bodies(
    key: &teams_notifications::keys::DecryptionKey,
    tokens: &[String],
    batch: usize,
    total: usize,
) -> Vec<Vec<u8>> {
    let target = Target {
        subscription_id: "bench-sub".into(),
        client_state: CLIENT_STATE.into(),
        tenant_id: TENANT.into(),
    };
    let mut steps = Vec::with_capacity(total);
    let mut round = 0;
    while steps.len() < total {
        steps.extend(simulate::steps(Scenario::Meeting, round));
        round += 1;
    }
    steps.truncate(total);
    steps
        .chunks(batch)
        .map(|chunk| {
            let items = chunk
                .iter()
                .map(|s| simulate::rich_item(s, &target, &key.certificate, &key.id).unwrap())
                .collect();
            simulate::collection(items, tokens).into_bytes()
        })
        .collect()
}

/// `graph::crypto::decrypt` of a meeting notification per CPU-second, one thread.
fn decrypt_loop(key: &teams_notifications::keys::DecryptionKey) -> f64 {
    let step = &simulate::steps(Scenario::Meeting, 0)[1];
    let plaintext = serde_json::to_vec(&step.payload).unwrap();
    let content =
        teams_notifications::graph::crypto::encrypt(&plaintext, &key.certificate, &key.id).unwrap();
    let (started, cpu0) = (Instant::now(), thread_cpu_time());
    let mut n = 0u64;
    while started.elapsed() < Duration::from_secs(scale().seconds) {
        teams_notifications::graph::crypto::decrypt(&content, &key.private_key).unwrap();
        n += 1;
    }
    n as f64 / (thread_cpu_time() - cpu0).as_secs_f64()
}

/// RSA-2048 OAEP decryptions per CPU-second in this process, one thread.
fn inprocess_oaep(key: &teams_notifications::keys::DecryptionKey) -> f64 {
    let rsa = key.certificate.public_key().unwrap().rsa().unwrap();
    let private = key.private_key.rsa().unwrap();
    let mut wrapped = vec![0u8; 256];
    rsa.public_encrypt(&[7u8; 32], &mut wrapped, openssl::rsa::Padding::PKCS1_OAEP)
        .unwrap();
    let mut out = vec![0u8; 256];
    let (started, cpu0) = (Instant::now(), thread_cpu_time());
    let mut n = 0u64;
    while started.elapsed() < Duration::from_secs(scale().seconds) {
        private
            .private_decrypt(&wrapped, &mut out, openssl::rsa::Padding::PKCS1_OAEP)
            .unwrap();
        n += 1;
    }
    n as f64 / (thread_cpu_time() - cpu0).as_secs_f64()
}

/// An archive that keeps nothing: isolates the cost of the path from the cost of storage.
struct Discard;

#[async_trait::async_trait]
impl Archive for Discard {
    async fn put_if_absent(
        &self,
        _: &teams_notifications::archive::ObjectName,
        _: bytes::Bytes,
    ) -> Result<teams_notifications::archive::Written, teams_notifications::archive::ArchiveError>
    {
        Ok(teams_notifications::archive::Written::Created)
    }
    async fn get(
        &self,
        _: &teams_notifications::archive::ObjectName,
    ) -> Result<Option<bytes::Bytes>, teams_notifications::archive::ArchiveError> {
        Ok(None)
    }
    async fn list(
        &self,
        _: teams_notifications::archive::Kind,
    ) -> Result<
        Vec<teams_notifications::archive::ObjectName>,
        teams_notifications::archive::ArchiveError,
    > {
        Ok(Vec::new())
    }
    fn location(&self) -> String {
        "nowhere".into()
    }
}

/// `cargo bench` passes `--bench`: the full run. `cargo test --all-targets` (the test command)
/// runs this binary without it: a smoke run, small and quick, that only proves it still works.
struct Scale {
    divide: usize,
    seconds: u64,
}

fn scale() -> &'static Scale {
    static SCALE: std::sync::OnceLock<Scale> = std::sync::OnceLock::new();
    SCALE.get_or_init(|| {
        if std::env::args().any(|a| a == "--bench") {
            Scale {
                divide: 1,
                seconds: 3,
            }
        } else {
            Scale {
                divide: 20,
                seconds: 1,
            }
        }
    })
}

/// Whether `BENCH_ONLY` (a comma-separated list of phases) selects `phase`; unset selects all.
fn selected(phase: &str) -> bool {
    std::env::var("BENCH_ONLY").map_or(true, |only| only.split(',').any(|p| p.trim() == phase))
}

/// The `p`-th percentile (0..=100), nearest rank.
fn percentile(latencies: &[Duration], p: f64) -> Duration {
    let mut v = latencies.to_vec();
    v.sort();
    let rank = ((p / 100.0) * v.len() as f64).ceil().max(1.0) as usize;
    v.get(rank.min(v.len()).saturating_sub(1))
        .copied()
        .unwrap_or_default()
}

/// What the rich phases share: one key, one issuer, one validator.
struct Rich {
    key: teams_notifications::keys::DecryptionKey,
    issuer: LocalIssuer,
    tokens: Vec<String>,
    validator: Arc<TokenValidator>,
}

impl Rich {
    fn new(rt: &tokio::runtime::Runtime) -> Rich {
        let key = dev::self_signed("bench", 30);
        let issuer = rt.block_on(LocalIssuer::start()).unwrap();
        let tokens = vec![issuer.mint(&TokenSpec::v2(TENANT, APP_ID))];
        let validator = Arc::new(TokenValidator::new(
            issuer.authority_host(),
            vec![APP_ID.into()],
            vec![TENANT.into()],
            reqwest::Client::new(),
        ));
        Rich {
            key,
            issuer,
            tokens,
            validator,
        }
    }

    fn store(&self) -> Arc<CertificateStore> {
        Arc::new(CertificateStore::from_keys(vec![
            dev::self_signed("unused-old", 30),
            clone_key(&self.key),
        ]))
    }

    /// Batches of 100 (fewer in the smoke run), `total` items.
    fn bodies(&self, total: usize) -> (Vec<Vec<u8>>, usize) {
        let batch = 100.min(total);
        (rich_bodies(&self.key, &self.tokens, batch, total), batch)
    }
}

fn main() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    println!(
        "# throughput bench ({cores} cores, {})",
        std::env::consts::ARCH
    );
    if selected("basic") {
        let basic1 = rt.block_on(bench_basic(1, 5_000 / scale().divide));
        let basic100 = rt.block_on(bench_basic(100, 20_000 / scale().divide));
        println!("basic path, batch 1:   {basic1:>9.0} notifications/s");
        println!("basic path, batch 100: {basic100:>9.0} notifications/s");
    }
    let rich = Rich::new(&rt);
    // Warm the JWKS and token caches once for every phase.
    let warm = rich_bodies(&rich.key, &rich.tokens, 1, 1);
    let warmer = rt.block_on(receiver(
        &archive_dir(),
        CertificateStore::from_keys(vec![clone_key(&rich.key)]),
        Some(rich.validator.clone()),
    ));
    rt.block_on(warmer.receive(
        Endpoint::Notifications,
        bytes::Bytes::copy_from_slice(&warm[0]),
    ))
    .unwrap();
    if std::env::var("BENCH_ONLY").as_deref() == Ok("profile-path") {
        profile_path(&rt, &rich);
        return;
    }
    if selected("rich") {
        rich_path(&rt, &rich, cores);
    }
    if selected("resend") {
        let (bodies, batch) = rich.bodies(2_000 / scale().divide);
        let fs: Arc<dyn Archive> = Arc::new(rt.block_on(FsArchive::open(&archive_dir())).unwrap());
        println!(
            "resend, {} batches of {batch} (filesystem archive):",
            bodies.len()
        );
        resend::measure(&rt, fs, &rich.store(), &rich.validator, &bodies, batch)
            .print("filesystem");
    }
    if selected("blob") {
        let (bodies, batch) = rich.bodies(2_000 / scale().divide);
        blob::run(&rt, rich.store(), rich.validator.clone(), &bodies, batch);
    }
    if selected("cold") {
        cold::run(&rt, &rich.key, &rich.issuer, &rich.tokens);
    }
}

/// The no-storage rich path over and over (for `perf record`), about 20 s of CPU.
fn profile_path(rt: &tokio::runtime::Runtime, rich: &Rich) {
    // `PROFILE_ARCHIVE=fs`: the same path archiving to the filesystem under `$TMPDIR`, each
    // item once (a second round would be a resend).
    let fs = std::env::var("PROFILE_ARCHIVE").as_deref() == Ok("fs");
    let (rounds, total) = if fs { (1, 20_000) } else { (5, 4_000) };
    let (bodies, _) = rich.bodies(total / scale().divide);
    let archive: Arc<dyn Archive> = if fs {
        Arc::new(rt.block_on(FsArchive::open(&archive_dir())).unwrap())
    } else {
        Arc::new(Discard)
    };
    let path = Receiver {
        client_state: Some(CLIENT_STATE.to_string().into()),
        archive,
        keys: rich.store(),
        tokens: Some(rich.validator.clone()),
        max_items_per_request: teams_notifications::config::DEFAULT_MAX_ITEMS_PER_REQUEST,
        payloads: None,
        alerts: None,
    };
    for _ in 0..rounds {
        for body in &bodies {
            rt.block_on(path.receive(Endpoint::Notifications, bytes::Bytes::copy_from_slice(body)))
                .unwrap();
        }
    }
}

/// The rich path on the filesystem, its breakdown, and its HTTP latency (see the module docs).
fn rich_path(rt: &tokio::runtime::Runtime, rich: &Rich, cores: usize) {
    let key = &rich.key;
    let tokens = &rich.tokens;
    // Rich path, receiver direct: notifications per CPU-second.
    let total = 4_000 / scale().divide;
    let (bodies, batch) = rich.bodies(total);
    let dir = archive_dir();
    let keys =
        CertificateStore::from_keys(vec![dev::self_signed("unused-old", 30), clone_key(key)]);
    let r = rt.block_on(receiver(&dir, keys, Some(rich.validator.clone())));
    // `openssl speed` right before and right after the rich path: the machine's RSA speed
    // drifts (other VMs, other builds), the mean of the two brackets the measurement.
    let speed_before = measure::openssl_speed_rsa2048(scale().seconds);
    let cpu0 = cpu_time();
    let wall0 = Instant::now();
    for body in &bodies {
        let receipt = rt
            .block_on(r.receive(Endpoint::Notifications, bytes::Bytes::copy_from_slice(body)))
            .unwrap();
        assert_eq!(receipt.events, batch, "{receipt:?}");
    }
    let wall = wall0.elapsed().as_secs_f64();
    let cpu = (cpu_time() - cpu0).as_secs_f64();
    let per_core = total as f64 / cpu;
    let per_sec = total as f64 / wall;
    let speed_after = measure::openssl_speed_rsa2048(scale().seconds);
    // The same path with an archive that stores nothing: what storage costs.
    let discard = Receiver {
        client_state: Some(CLIENT_STATE.to_string().into()),
        archive: Arc::new(Discard),
        keys: r.keys.clone(),
        tokens: r.tokens.clone(),
        max_items_per_request: r.max_items_per_request,
        payloads: None,
        alerts: None,
    };
    let cpu0 = cpu_time();
    for body in &bodies {
        rt.block_on(discard.receive(Endpoint::Notifications, bytes::Bytes::copy_from_slice(body)))
            .unwrap();
    }
    let no_storage_per_core = total as f64 / (cpu_time() - cpu0).as_secs_f64();
    // Parsing alone: the envelopes of the same batches.
    let started = Instant::now();
    for body in &bodies {
        let c = teams_notifications::graph::notification::parse_collection(body).unwrap();
        assert_eq!(c.value.len(), batch);
    }
    let parse_us = started.elapsed().as_secs_f64() * 1e6 / total as f64;
    let oaep = inprocess_oaep(key);
    let decrypt_only = decrypt_loop(key);

    // Latency of batches of 100 over HTTP on loopback (the real server).
    let dir2 = archive_dir();
    let keys2 = CertificateStore::from_keys(vec![clone_key(key)]);
    let r2 = rt.block_on(receiver(&dir2, keys2, Some(rich.validator.clone())));
    let latency = rt.block_on(async {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!(
            "http://{}/api/notifications",
            listener.local_addr().unwrap()
        );
        let state = teams_notifications::functions::routes::AppState {
            receiver: Arc::new(r2),
            max_body_bytes: 4 * 1024 * 1024,
            limits: Default::default(),
            renewer: None,
            eventhub: None,
            replay: None,
            max_invocation_bytes: 0,
            alerts: None,
            messages: None,
        };
        tokio::spawn(teams_notifications::functions::routes::run(
            listener,
            state,
            std::future::pending(),
        ));
        let bodies: Vec<String> = rich_bodies(key, tokens, batch, latency_batches() * batch)
            .into_iter()
            .map(|b| String::from_utf8(b).unwrap())
            .collect();
        simulate::post_all(&reqwest::Client::new(), &url, bodies, None).await
    });
    assert_eq!(latency.statuses.get(&202).copied(), Some(latency_batches()));

    println!("rich path (tokens + decrypt + archive), batch 100:");
    println!("  {per_sec:>9.0} notifications/s wall clock ({cores} cores)");
    println!("  {per_core:>9.0} notifications per CPU-second (per core)");
    println!("  {oaep:>9.0} RSA-2048 OAEP decryptions/s in-process, one core");
    match speed_before.zip(speed_after) {
        Some((before, after)) => {
            let s = (before + after) / 2.0;
            println!(
                "  {s:>9.0} RSA-2048 private ops/s (`openssl speed rsa2048`, sign), one core (before {before:.0}, after {after:.0})"
            );
            println!(
                "  ratio rich path / openssl speed: {:.1}%",
                100.0 * per_core / s
            );
            println!(
                "  ratio no-storage path / openssl speed: {:.1}%",
                100.0 * no_storage_per_core / s
            );
        }
        None => println!("  `openssl speed` unavailable"),
    }
    println!(
        "  {no_storage_per_core:>9.0} notifications per CPU-second with an archive that stores nothing"
    );
    println!("  {parse_us:>9.1} µs to parse one item of a 100-item batch");
    println!("  {decrypt_only:>9.0} whole decryptions/s (unwrap + HMAC + AES + JSON), one core");
    println!(
        "  ratio rich path / in-process OAEP: {:.1}%",
        100.0 * per_core / oaep
    );
    println!(
        "  HTTP answer latency, batch of 100 ({} batches): p50 {:.1?}, p99 {:.1?}",
        latency_batches(),
        latency.percentile(50.0),
        latency.percentile(99.0)
    );
}

/// Batches of 100 posted over HTTP for the latency figures.
fn latency_batches() -> usize {
    (30 / scale().divide).max(1)
}

fn clone_key(
    k: &teams_notifications::keys::DecryptionKey,
) -> teams_notifications::keys::DecryptionKey {
    teams_notifications::keys::DecryptionKey::new(
        k.id.clone(),
        k.private_key.clone(),
        k.certificate.clone(),
        k.source.clone(),
    )
    .unwrap()
}
