//! Resends: Graph redelivers whole batches. A full resend of 100-item batches, as a ratio of
//! the process CPU it costs to the CPU of their first delivery, measured twice: answered from
//! the memory of recent names (the builder's wiring) and from the archive alone (after a
//! restart: a stat per name on the filesystem, a `HEAD` per name on Blob Storage).

use std::sync::Arc;

use teams_notifications::archive::Archive;
use teams_notifications::archive::recent::{DEFAULT_CAPACITY, RecentlyArchived};
use teams_notifications::graph::tokens::TokenValidator;
use teams_notifications::keys::CertificateStore;
use teams_notifications::receiver::{Endpoint, Receiver};

use super::{CLIENT_STATE, cpu_time};

/// CPU seconds of each pass over the same bodies.
pub struct Resend {
    pub first: f64,
    /// Everything already archived, names remembered by this process.
    pub from_memory: f64,
    /// Everything already archived, names checked in the archive.
    pub from_archive: f64,
}

impl Resend {
    pub fn print(&self, label: &str) {
        println!(
            "  {label}: full resend / first delivery, CPU: {:.2}% (names in memory), {:.2}% (checked in the archive)",
            100.0 * self.from_memory / self.first,
            100.0 * self.from_archive / self.first
        );
    }
}

fn receiver(
    archive: Arc<dyn Archive>,
    keys: &Arc<CertificateStore>,
    tokens: &Arc<TokenValidator>,
) -> Receiver {
    Receiver {
        client_state: Some(CLIENT_STATE.to_string().into()),
        archive,
        keys: keys.clone(),
        tokens: Some(tokens.clone()),
        max_items_per_request: teams_notifications::config::DEFAULT_MAX_ITEMS_PER_REQUEST,
        payloads: None,
        alerts: None,
    }
}

/// Delivers `bodies` (batches of `batch` rich items) to `backend`, then twice again.
pub fn measure(
    rt: &tokio::runtime::Runtime,
    backend: Arc<dyn Archive>,
    keys: &Arc<CertificateStore>,
    tokens: &Arc<TokenValidator>,
    bodies: &[Vec<u8>],
    batch: usize,
) -> Resend {
    let remembering = receiver(
        Arc::new(RecentlyArchived::new(backend.clone(), DEFAULT_CAPACITY)),
        keys,
        tokens,
    );
    let pass = |r: &Receiver, resent: usize| {
        let cpu0 = cpu_time();
        for body in bodies {
            let receipt = rt
                .block_on(r.receive(Endpoint::Notifications, bytes::Bytes::copy_from_slice(body)))
                .unwrap();
            assert_eq!(receipt.events, batch, "{receipt:?}");
            assert_eq!(receipt.resent, resent, "{receipt:?}");
        }
        (cpu_time() - cpu0).as_secs_f64()
    };
    let first = pass(&remembering, 0);
    let from_memory = pass(&remembering, batch);
    let from_archive = pass(&receiver(backend, keys, tokens), batch);
    Resend {
        first,
        from_memory,
        from_archive,
    }
}
