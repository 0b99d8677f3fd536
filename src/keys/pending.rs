//! A certificate source that is not ready at start-up: the Key Vault certificate does not exist
//! yet (the deployment guide creates it after `azd provision`), or the role assignment just made
//! has not propagated. The handler starts anyway: handshakes and basic notifications need no
//! key, rich items are quarantined with their reason. The vault is read again with backoff in
//! the background until it yields a key; then the caller's `then` runs once (the builder replays
//! the quarantine there).

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use super::{CertificateStore, KeyError, Source, keyvault::KeyVaultSource};

/// Waits between two tries: doubling from `first` up to `max`.
#[derive(Debug, Clone)]
pub struct Backoff {
    pub first: Duration,
    pub max: Duration,
}

impl Default for Backoff {
    /// 5 s, 10 s, 20 s, ... then every 5 minutes: quick while an operator is creating the
    /// certificate, cheap if it never comes.
    fn default() -> Self {
        Backoff {
            first: Duration::from_secs(5),
            max: Duration::from_secs(300),
        }
    }
}

impl CertificateStore {
    /// Loads the vault's certificate; when that fails, a store with no keys yet whose refreshes
    /// read the vault, and the reason.
    pub async fn from_key_vault_or_pending(source: KeyVaultSource) -> (Self, Option<KeyError>) {
        match source.load().await {
            Ok(keys) => (
                Self::with_source(Source::KeyVault(Box::new(source)), keys),
                None,
            ),
            Err(e) => (
                Self::with_source(Source::KeyVault(Box::new(source)), Vec::new()),
                Some(e),
            ),
        }
    }

    /// Refreshes with `backoff` until the store holds a key, then runs `then` once with the
    /// store. The task holds only a weak reference: it ends once the store is dropped.
    pub fn spawn_until_loaded<F, Fut>(
        self: &Arc<Self>,
        backoff: Backoff,
        then: F,
    ) -> tokio::task::JoinHandle<()>
    where
        F: FnOnce(Arc<CertificateStore>) -> Fut + Send + 'static,
        Fut: Future<Output = ()> + Send + 'static,
    {
        let store = Arc::downgrade(self);
        tokio::spawn(async move {
            let mut wait = backoff.first;
            loop {
                let Some(strong) = store.upgrade() else {
                    return;
                };
                if strong.is_empty() {
                    match strong.refresh().await {
                        Ok(n) if n > 0 => {}
                        Ok(_) => tracing::warn!(
                            retry_in_s = wait.as_secs(),
                            "the certificate source has no key yet"
                        ),
                        Err(e) => {
                            tracing::warn!(error = %e, retry_in_s = wait.as_secs(), "the certificate source is not ready yet")
                        }
                    }
                }
                if !strong.is_empty() {
                    tracing::info!(
                        keys = strong.keys().len(),
                        "certificate loaded: rich notifications decrypt from now on"
                    );
                    then(strong).await;
                    return;
                }
                drop(strong);
                tokio::time::sleep(wait).await;
                wait = (wait * 2).min(backoff.max);
            }
        })
    }
}
