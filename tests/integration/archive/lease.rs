//! The lease contract, written once and run against both backends, each time with two
//! independent handles on one storage (two processes' view): a Blob lease on the real Azurite,
//! and a lock file on a shared folder.

use std::sync::Arc;
use std::time::Duration;

use secrecy::SecretString;
use teams_notifications::archive::blob::BlobArchive;
use teams_notifications::archive::fs::FsArchive;
use teams_notifications::archive::lease::{self, LeaseError, LeaseName, LeaseOptions, LeaseStore};

use crate::azurite;

fn quick(wait_ms: u64) -> LeaseOptions {
    LeaseOptions {
        ttl: Duration::from_secs(15),
        wait: Duration::from_millis(wait_ms),
        poll: Duration::from_millis(50),
    }
}

/// What every backend must do; `a` and `b` are two handles on the same storage.
async fn keeps_the_lease_contract(a: Arc<dyn LeaseStore>, b: Arc<dyn LeaseStore>) {
    let name = LeaseName::new("contract").unwrap();
    let other = LeaseName::new("contract-other").unwrap();
    let ttl = Duration::from_secs(15);

    // One holder at a time, whichever handle asks.
    let held = a
        .try_acquire(&name, ttl)
        .await
        .unwrap()
        .expect("a free lease is taken");
    assert!(
        b.try_acquire(&name, ttl).await.unwrap().is_none(),
        "b while a holds it"
    );
    assert!(
        a.try_acquire(&name, ttl).await.unwrap().is_none(),
        "a second holder in a"
    );
    // Names are independent.
    let unrelated = b
        .try_acquire(&other, ttl)
        .await
        .unwrap()
        .expect("another name is free");
    // Renewal keeps it held; release frees it at once.
    held.renew().await.unwrap();
    assert!(b.try_acquire(&name, ttl).await.unwrap().is_none());
    held.release().await.unwrap();
    let by_b = b
        .try_acquire(&name, ttl)
        .await
        .unwrap()
        .expect("free after release");
    by_b.release().await.unwrap();
    unrelated.release().await.unwrap();

    // `acquire` waits a bounded time, then says the lease is busy.
    let holder = lease::acquire(a.as_ref(), &name, &quick(200))
        .await
        .unwrap();
    let busy = lease::acquire(b.as_ref(), &name, &quick(300)).await;
    assert!(
        matches!(busy, Err(LeaseError::Busy { .. })),
        "{:?}",
        busy.err()
    );
    // ... and gets it once the holder lets go during the wait.
    let waiter = tokio::spawn({
        let b = b.clone();
        let name = name.clone();
        async move { lease::acquire(b.as_ref(), &name, &quick(10_000)).await }
    });
    tokio::time::sleep(Duration::from_millis(200)).await;
    holder.release().await;
    let taken = waiter.await.unwrap().expect("taken once released");
    // Dropping a lease without `release` frees it too (in the background).
    drop(taken);
    let again = lease::acquire(a.as_ref(), &name, &quick(5_000))
        .await
        .unwrap();
    again.release().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn filesystem_leases_keep_the_contract() {
    let dir = tempfile::tempdir().unwrap();
    let a = FsArchive::open(dir.path()).await.unwrap();
    let b = FsArchive::open(dir.path()).await.unwrap();
    keeps_the_lease_contract(Arc::new(a), Arc::new(b)).await;
    // The lock file names its last holder for the operator.
    let holder = std::fs::read_to_string(dir.path().join("leases/contract.lock")).unwrap();
    assert!(
        holder.starts_with(&format!("pid {}", std::process::id())),
        "{holder}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn blob_leases_keep_the_contract() {
    let endpoint = azurite::endpoint();
    let container = azurite::unique_container("lease");
    let open = || async {
        BlobArchive::from_connection_string(
            &SecretString::from(azurite::connection_string(&endpoint)),
            &container,
        )
        .await
        .unwrap()
    };
    let (a, b) = (open().await, open().await);
    keeps_the_lease_contract(Arc::new(a), Arc::new(b)).await;
}
