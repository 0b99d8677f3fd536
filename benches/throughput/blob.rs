//! The Blob path as production uses it: the rich path against Azurite (the real emulator, a
//! separate Node process), batches of 100, the receiver called directly.
//!
//! - uploads in flight per request: 1, 4, 16 (the default), 32 and all 101 objects at once;
//!   latency of one batch (p50/p99, one request at a time) and notifications/s;
//! - the SDK's own HTTP client against the builder's one shared client (`Transport`);
//! - four requests at a time, as Graph sends them, beside the same load on an archive that
//!   stores nothing (the ceiling without storage);
//! - a full resend (names in memory; `HEAD`s against Azurite);
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
use teams_notifications::receiver::{Endpoint, Receiver};

use super::azurite;
use super::{CLIENT_STATE, Discard, cpu_time, percentile, scale};

/// What one configuration did with the same bodies.
struct Run {
    latencies: Vec<Duration>,
    wall: f64,
    ours: f64,
    azurite: f64,
    items: usize,
}

impl Run {
    fn line(&self, label: &str) {
        println!(
            "  {label:<44} p50 {:>6.1?} p99 {:>6.1?}  {:>6.0} notifications/s  CPU per notification: ours {:>5.0} µs, Azurite {:>5.0} µs",
            percentile(&self.latencies, 50.0),
            percentile(&self.latencies, 99.0),
            self.items as f64 / self.wall,
            1e6 * self.ours / self.items as f64,
            1e6 * self.azurite / self.items as f64,
        );
    }
}

/// CPU seconds (user + system) of process `pid` so far, from `/proc`.
fn process_cpu(pid: Option<u32>) -> f64 {
    let Some(pid) = pid else { return 0.0 };
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return 0.0;
    };
    // Fields after the command (which may hold spaces) end with ')'; utime, stime are 14, 15.
    let rest = stat.rsplit_once(')').map_or("", |(_, r)| r);
    let fields: Vec<f64> = rest
        .split_whitespace()
        .skip(11)
        .take(2)
        .filter_map(|f| f.parse().ok())
        .collect();
    // SAFETY: sysconf has no preconditions.
    let ticks = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64;
    fields.iter().sum::<f64>() / ticks
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

    /// Every body through `r`, `in_flight` requests at a time.
    fn run(&self, r: &Receiver, in_flight: usize) -> Run {
        let (cpu0, azurite0, wall0) = (cpu_time(), process_cpu(self.pid), Instant::now());
        let latencies = self.rt.block_on(async {
            futures::stream::iter(self.bodies)
                .map(|body| async move {
                    let started = Instant::now();
                    let receipt = r
                        .receive(Endpoint::Notifications, bytes::Bytes::copy_from_slice(body))
                        .await
                        .unwrap();
                    assert_eq!(receipt.quarantined + receipt.rejected, 0, "{receipt:?}");
                    started.elapsed()
                })
                .buffer_unordered(in_flight)
                .collect::<Vec<_>>()
                .await
        });
        Run {
            latencies,
            wall: wall0.elapsed().as_secs_f64(),
            ours: (cpu_time() - cpu0).as_secs_f64(),
            azurite: process_cpu(self.pid) - azurite0,
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
    // The full run starts an Azurite of its own, whose CPU it can read; the smoke run uses the
    // test command's.
    let private = (scale().divide == 1).then(azurite::Azurite::start_private);
    let endpoint = private
        .as_ref()
        .map_or_else(azurite::endpoint, |a| a.endpoint().to_string());
    let setup = Setup {
        rt,
        endpoint,
        pid: private.as_ref().and_then(azurite::Azurite::pid),
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
    heads.line("4 at a time, full resend, HEAD per item:");
    setup
        .run(&setup.receiver(Arc::new(Discard)), 4)
        .line("4 at a time, archive that stores nothing:");
    println!(
        "  resend / first delivery, CPU (ours + Azurite): {:.1}% (names in memory), {:.1}% (HEADs)",
        100.0 * (again.ours + again.azurite) / (first.ours + first.azurite),
        100.0 * (heads.ours + heads.azurite) / (first.ours + first.azurite),
    );
}
