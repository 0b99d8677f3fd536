//! The Blob path as production uses it: the rich path against Azurite (the real emulator, a
//! separate Node process), batches of 100, the receiver called directly.
//!
//! - uploads in flight per request: 1, 4, 16 (the default), 32 and all 101 objects at once;
//!   latency of one batch (p50/p99, one request at a time) and notifications/s;
//! - the SDK's own HTTP client against the builder's one shared client (`Transport`);
//! - four requests at a time, as Graph sends them, beside the same load on an archive that
//!   stores nothing (the ceiling without storage);
//! - a full resend (names in memory; after a restart, asked of Azurite: the batch's `complete/`
//!   marker, one `HEAD` per batch);
//! - the CPU of our process and of Azurite's, so that what is Azurite's limit shows apart from
//!   ours.

use std::sync::Arc;
use std::time::{Duration, Instant};

use azure_core::http::Transport;
use futures::StreamExt as _;
use secrecy::SecretString;
use teams_notifications::archive::Archive;
use teams_notifications::archive::blob::{BlobArchive, UPLOADS_PER_REQUEST};
use teams_notifications::archive::recent::{DEFAULT_CAPACITY, RecentlyArchived};
use teams_notifications::graph::tokens::TokenValidator;
use teams_notifications::keys::CertificateStore;
use teams_notifications::receiver::{Endpoint, ReceiveError, Receiver};

use super::azurite;
use super::{CLIENT_STATE, Discard, cpu_time, percentile};

/// What one configuration did with the same bodies.
struct Run {
    latencies: Vec<Duration>,
    wall: f64,
    ours: f64,
    /// `None` if Azurite's process could not be read.
    azurite: Option<f64>,
    items: usize,
    /// Requests that failed (503 to Graph, which retries): Azurite did not answer in time.
    failed: usize,
}

impl Run {
    fn line(&self, label: &str) {
        println!(
            "  {label:<44} p50 {:>6.1?} p99 {:>6.1?}  {:>6.0} notifications/s  CPU per notification: ours {:>5.0} µs, Azurite {}{}",
            percentile(&self.latencies, 50.0),
            percentile(&self.latencies, 99.0),
            self.items as f64 / self.wall,
            1e6 * self.ours / self.items as f64,
            self.azurite.map_or_else(
                || "not readable".to_string(),
                |a| format!("{:>5.0} µs", 1e6 * a / self.items as f64)
            ),
            match self.failed {
                0 => String::new(),
                n => format!("  ({n} requests failed: 503)"),
            },
        );
    }
}

/// CPU seconds (user + system) so far of process `pid` and of every process below it (all
/// their threads, and the children they have waited for), from `/proc`. Azurite is started as
/// `node_modules/.bin/azurite-blob` (`#!/usr/bin/env node`): today `env` execs node under the
/// same pid, but a wrapper (npx, a shell) would put node one level down, so the tree is summed.
/// `None` when the process cannot be read: the figure is then not printed as zero.
fn tree_cpu(pid: u32) -> Option<f64> {
    let root = stat_fields(pid)?;
    // (pid, parent) of every process, to find the descendants.
    let mut all: Vec<(u32, u32)> = Vec::new();
    for entry in std::fs::read_dir("/proc").ok()?.flatten() {
        let Some(p) = entry
            .file_name()
            .to_str()
            .and_then(|n| n.parse::<u32>().ok())
        else {
            continue;
        };
        if let Some(f) = stat_fields(p) {
            all.push((p, f.parent));
        }
    }
    let mut total = root.cpu;
    let mut frontier = vec![pid];
    while let Some(parent) = frontier.pop() {
        for &(child, _) in all.iter().filter(|(_, pp)| *pp == parent) {
            if let Some(f) = stat_fields(child) {
                total += f.cpu;
                frontier.push(child);
            }
        }
    }
    Some(total)
}

struct StatFields {
    parent: u32,
    /// utime + stime + cutime + cstime, seconds.
    cpu: f64,
}

fn stat_fields(pid: u32) -> Option<StatFields> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command (which may hold spaces) ends with ')'; after it: state (3), ppid (4), ...,
    // utime (14), stime (15), cutime (16), cstime (17).
    let rest = stat.rsplit_once(')')?.1;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let parent = fields.get(1)?.parse().ok()?;
    let ticks: f64 = fields
        .get(11..15)?
        .iter()
        .map(|f| f.parse::<f64>().ok())
        .sum::<Option<f64>>()?;
    // SAFETY: sysconf has no preconditions.
    let per_second = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64;
    Some(StatFields {
        parent,
        cpu: ticks / per_second,
    })
}

struct Setup<'a> {
    rt: &'a tokio::runtime::Runtime,
    endpoint: String,
    pid: Option<u32>,
    keys: Arc<CertificateStore>,
    tokens: Arc<TokenValidator>,
    bodies: &'a [Vec<u8>],
    batch: usize,
}

impl Setup<'_> {
    fn archive(&self, uploads: usize, shared: Option<&reqwest::Client>) -> Arc<dyn Archive> {
        let connection = SecretString::from(azurite::connection_string(&self.endpoint));
        let transport = shared.map(|c| Transport::new(Arc::new(c.clone())));
        let archive = self.rt.block_on(async {
            BlobArchive::from_connection_string_with(
                &connection,
                &azurite::unique_container("bench"),
                transport,
            )
            .await
            .unwrap()
        });
        Arc::new(archive.with_uploads_in_flight(uploads))
    }

    fn receiver(&self, archive: Arc<dyn Archive>) -> Receiver {
        Receiver {
            client_state: Some(CLIENT_STATE.to_string().into()),
            archive,
            keys: self.keys.clone(),
            tokens: Some(self.tokens.clone()),
            max_items_per_request: teams_notifications::config::DEFAULT_MAX_ITEMS_PER_REQUEST,
            payloads: None,
            alerts: None,
        }
    }

    fn azurite_cpu(&self) -> Option<f64> {
        tree_cpu(self.pid?)
    }

    /// Every body through `r`, `in_flight` requests at a time.
    fn run(&self, r: &Receiver, in_flight: usize) -> Run {
        let (cpu0, azurite0, wall0) = (cpu_time(), self.azurite_cpu(), Instant::now());
        let latencies = self.rt.block_on(async {
            futures::stream::iter(self.bodies)
                .map(|body| async move {
                    let started = Instant::now();
                    let outcome = r
                        .receive(Endpoint::Notifications, bytes::Bytes::copy_from_slice(body))
                        .await;
                    match outcome {
                        Ok(receipt) => {
                            assert_eq!(receipt.quarantined + receipt.rejected, 0, "{receipt:?}");
                        }
                        // Azurite did not answer in time: the request is a 503 (Graph
                        // retries); counted, not fatal to the benchmark.
                        Err(ReceiveError::Unavailable(_)) => return (started.elapsed(), false),
                        Err(e) => panic!("{e}"),
                    }
                    (started.elapsed(), true)
                })
                .buffer_unordered(in_flight)
                .collect::<Vec<_>>()
                .await
        });
        let failed = latencies.iter().filter(|(_, ok)| !ok).count();
        Run {
            latencies: latencies.into_iter().map(|(l, _)| l).collect(),
            failed,
            wall: wall0.elapsed().as_secs_f64(),
            ours: (cpu_time() - cpu0).as_secs_f64(),
            azurite: self.azurite_cpu().zip(azurite0).map(|(b, a)| b - a),
            items: self.bodies.len() * self.batch,
        }
    }
}

/// The Blob figures (see the module docs).
pub fn run(
    rt: &tokio::runtime::Runtime,
    keys: Arc<CertificateStore>,
    tokens: Arc<TokenValidator>,
    bodies: &[Vec<u8>],
    batch: usize,
) {
    // An Azurite of its own (also in the smoke run), whose process tree's CPU it reads: the
    // test command's shared one is not a child of this process.
    let private = azurite::Azurite::start_private();
    let endpoint = private.endpoint().to_string();
    let setup = Setup {
        rt,
        endpoint,
        pid: private.pid(),
        keys,
        tokens,
        bodies,
        batch,
    };
    let shared = reqwest::Client::new();
    println!(
        "blob path (Azurite, receiver direct, {} batches of {}):",
        bodies.len(),
        batch
    );
    for uploads in [1, 4, UPLOADS_PER_REQUEST, 32, 101] {
        let r = setup.receiver(setup.archive(uploads, Some(&shared)));
        setup.run(&r, 1).line(&format!(
            "{uploads} uploads in flight, one request at a time:"
        ));
    }
    let own = setup.receiver(setup.archive(UPLOADS_PER_REQUEST, None));
    setup
        .run(&own, 1)
        .line("the SDK's own HTTP client, one at a time:");

    let backend = setup.archive(UPLOADS_PER_REQUEST, Some(&shared));
    let remembering = Arc::new(RecentlyArchived::new(backend.clone(), DEFAULT_CAPACITY));
    let r = setup.receiver(remembering);
    let first = setup.run(&r, 4);
    first.line("4 requests at a time:");
    let again = setup.run(&r, 4);
    again.line("4 at a time, full resend, names in memory:");
    let heads = setup.run(&setup.receiver(backend), 4);
    heads.line("4 at a time, full resend after a restart (names asked of Azurite):");
    setup
        .run(&setup.receiver(Arc::new(Discard)), 4)
        .line("4 at a time, archive that stores nothing:");
    let ratio = |resend: &Run, of: fn(&Run) -> Option<f64>| {
        of(resend).zip(of(&first)).map_or_else(
            || "n/a".to_string(),
            |(r, f)| format!("{:.1}%", 100.0 * r / f),
        )
    };
    println!(
        "  resend / first delivery, CPU, ours: {} (names in memory), {} (after a restart); ours + Azurite: {} / {}",
        ratio(&again, |r| Some(r.ours)),
        ratio(&heads, |r| Some(r.ours)),
        ratio(&again, |r| r.azurite.map(|a| a + r.ours)),
        ratio(&heads, |r| r.azurite.map(|a| a + r.ours)),
    );
}
