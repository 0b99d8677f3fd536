//! Leases on the archive's storage: one holder at a time across processes and instances.
//!
//! On Flex Consumption the `renew` timer and the HTTP functions scale out on their own
//! instances, so a per-process lock cannot keep two reconciles (or a reconcile and a lifecycle
//! reaction) from changing Graph at once. The archive's storage is shared by every instance, and
//! both backends have a primitive for this:
//! - Blob: a blob lease ("Lease Blob" in the Storage REST docs) on `leases/{name}`, acquired
//!   for [`LeaseOptions::ttl`] (Storage allows 15 to 60 seconds), renewed while the work runs,
//!   released at the end. A holder that dies stops renewing and the lease expires by itself.
//! - Filesystem: an exclusive `flock` on `{root}/leases/{name}.lock`, which the kernel drops
//!   when the holding process exits, however it exits (so no staleness rule is needed).
//!
//! [`acquire`] waits a bounded time ([`LeaseOptions::wait`]) for another holder to finish, and
//! logs once that it is waiting and who holds the lease, when the backend can tell.

use std::sync::Arc;
use std::time::{Duration, Instant};

use super::ArchiveError;

/// A lease name: `[a-z0-9-]`, 1 to 63 characters (valid as a blob and as a file name).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LeaseName(String);

impl LeaseName {
    pub fn new(name: &str) -> Option<Self> {
        let ok = (1..=63).contains(&name.len())
            && name
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
        ok.then(|| LeaseName(name.to_string()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Display for LeaseName {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// The lease the renewer holds around every reconcile and lifecycle reaction.
pub(crate) fn renewer_lease() -> LeaseName {
    LeaseName("renewer".to_string())
}

/// The storage's side of a lease: implemented by both archive backends.
#[async_trait::async_trait]
pub trait LeaseStore: Send + Sync {
    /// Tries once to take `name` for `ttl`. `Ok(None)`: someone else holds it now.
    async fn try_acquire(
        &self,
        name: &LeaseName,
        ttl: Duration,
    ) -> Result<Option<Box<dyn HeldLease>>, ArchiveError>;
}

/// A lease this process holds.
#[async_trait::async_trait]
pub trait HeldLease: Send + Sync {
    /// Extends the lease by its ttl (a no-op where the backend needs none).
    async fn renew(&self) -> Result<(), ArchiveError>;
    /// Gives the lease up; another holder may take it at once.
    async fn release(&self) -> Result<(), ArchiveError>;
}

/// How long a lease lives without renewal, and how long [`acquire`] waits for it.
#[derive(Debug, Clone)]
pub struct LeaseOptions {
    /// Lifetime of one acquisition or renewal (Blob: 15 to 60 s). Renewed every third of it.
    pub ttl: Duration,
    /// How long to wait for another holder before giving up.
    pub wait: Duration,
    /// Pause between two tries while another holder has it.
    pub poll: Duration,
}

impl Default for LeaseOptions {
    /// 30 s leases; wait up to 2 minutes (a reconcile of a few dozen subscriptions takes
    /// seconds, a throttled one up to about a minute), trying every second.
    fn default() -> Self {
        LeaseOptions {
            ttl: Duration::from_secs(30),
            wait: Duration::from_secs(120),
            poll: Duration::from_secs(1),
        }
    }
}

/// Why a lease was not taken.
#[derive(Debug, thiserror::Error)]
pub enum LeaseError {
    #[error(
        "another instance held the lease {name:?} for all of {waited:?}: skipped; the next run will do the work"
    )]
    Busy { name: String, waited: Duration },
    #[error(
        "this instance's own Graph-changing work kept the lease {name:?} for all of {waited:?}: skipped; the next run will do the work"
    )]
    LocalBusy { name: String, waited: Duration },
    #[error("the lease {name:?} could not be taken: {source}")]
    Storage {
        name: String,
        #[source]
        source: ArchiveError,
    },
}

/// A held lease, renewed in the background until [`Lease::release`] (or drop).
pub struct Lease {
    held: Arc<dyn HeldLease>,
    renewing: tokio::task::JoinHandle<()>,
    name: LeaseName,
    released: bool,
}

/// Takes `name`, waiting at most `options.wait` for another holder.
pub async fn acquire(
    store: &dyn LeaseStore,
    name: &LeaseName,
    options: &LeaseOptions,
) -> Result<Lease, LeaseError> {
    let started = Instant::now();
    let mut said = false;
    loop {
        if let Some(lease) = try_take(store, name, options.ttl).await? {
            if said {
                tracing::info!(lease = %name, waited_ms = started.elapsed().as_millis() as u64, "lease taken after waiting");
            }
            return Ok(lease);
        }
        if started.elapsed() + options.poll > options.wait {
            tracing::warn!(lease = %name, waited_s = options.wait.as_secs(), "another instance still holds the lease; giving up");
            return Err(LeaseError::Busy {
                name: name.to_string(),
                waited: options.wait,
            });
        }
        if !said {
            tracing::info!(lease = %name, wait_s = options.wait.as_secs(), "another instance holds the lease; waiting for it");
            said = true;
        }
        tokio::time::sleep(options.poll).await;
    }
}

/// Tries once to take `name` for `ttl`; `Ok(None)`: someone else holds it now. The lease is
/// renewed in the background until released.
pub async fn try_take(
    store: &dyn LeaseStore,
    name: &LeaseName,
    ttl: Duration,
) -> Result<Option<Lease>, LeaseError> {
    let held = store
        .try_acquire(name, ttl)
        .await
        .map_err(|source| LeaseError::Storage {
            name: name.to_string(),
            source,
        })?;
    Ok(held.map(|held| Lease::start(Arc::from(held), name.clone(), ttl)))
}

impl Lease {
    fn start(held: Arc<dyn HeldLease>, name: LeaseName, ttl: Duration) -> Self {
        let renewer = held.clone();
        let lease_name = name.clone();
        let renewing = tokio::spawn(async move {
            let every = ttl / 3;
            loop {
                tokio::time::sleep(every).await;
                if let Err(e) = renewer.renew().await {
                    tracing::warn!(lease = %lease_name, error = %e, "lease renewal failed; another instance may take it");
                }
            }
        });
        Lease {
            held,
            renewing,
            name,
            released: false,
        }
    }

    pub fn name(&self) -> &LeaseName {
        &self.name
    }

    /// Stops renewing and releases the lease.
    pub async fn release(mut self) {
        self.renewing.abort();
        self.released = true;
        if let Err(e) = self.held.release().await {
            tracing::warn!(lease = %self.name, error = %e, "lease release failed; it expires by itself");
        }
    }
}

impl Drop for Lease {
    fn drop(&mut self) {
        self.renewing.abort();
        if self.released {
            return;
        }
        // Dropped without `release` (a cancelled task): give it up in the background.
        let held = self.held.clone();
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            runtime.spawn(async move {
                let _ = held.release().await;
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_safe_as_blob_and_file_names() {
        assert!(LeaseName::new("renewer").is_some());
        assert!(LeaseName::new("a-1").is_some());
        for bad in ["", "../x", "A", "a/b", "a.b", &"a".repeat(64)] {
            assert!(LeaseName::new(bad).is_none(), "{bad}");
        }
    }
}
