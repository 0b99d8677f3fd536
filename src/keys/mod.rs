//! The certificate store: every private key that may have encrypted a notification.
//!
//! Graph encrypts each rich notification's AES key with the public key of the certificate given
//! to the subscription and says which one in `encryptionCertificateId` (and its SHA-1
//! thumbprint). Certificates rotate, so several keys are live at once; an expired certificate
//! still decrypts, because Graph keeps using it until the subscription is moved.
//!
//! Sources: local files ([`local`], `NOTIFICATION_CERTIFICATES`) or Azure Key Vault
//! ([`keyvault`], `KEY_VAULT_URL` + `NOTIFICATION_CERTIFICATE_NAME`, all enabled versions).

pub mod keyvault;
pub(crate) mod local;
mod pending;

pub use pending::Backoff;

use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use openssl::pkey::{PKey, Private};
use openssl::x509::X509;
use time::OffsetDateTime;

/// Why a certificate could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error("cannot read certificate {path}: {source}")]
    Read {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("certificate {name}: {reason}")]
    Invalid { name: String, reason: String },
    /// OpenSSL (or Key Vault, for its secret) could not do `reason`: the error is the source.
    #[error("certificate {name}: {reason}: {source}")]
    Unusable {
        name: String,
        reason: &'static str,
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// Key Vault's settings do not go together, or the vault holds no usable version.
    #[error("key vault: {0}")]
    KeyVault(String),
    /// `KEY_VAULT_URL` is not a URL.
    #[error("key vault: KEY_VAULT_URL {url:?}: {source}")]
    VaultUrl {
        url: String,
        #[source]
        source: url::ParseError,
    },
    /// A Key Vault call failed: `doing` says which, the SDK's error is the source.
    #[error("key vault: {doing}: {source}")]
    KeyVaultCall {
        doing: String,
        #[source]
        source: Box<azure_core::Error>,
    },
}

impl KeyError {
    /// `name` could not be used: OpenSSL's (or the SDK's) `source` says why.
    pub(crate) fn unusable(
        name: &str,
        reason: &'static str,
        source: impl Into<Box<dyn std::error::Error + Send + Sync>>,
    ) -> Self {
        KeyError::Unusable {
            name: name.to_string(),
            reason,
            source: source.into(),
        }
    }
}

/// One private key with the certificate it belongs to.
pub struct DecryptionKey {
    /// The `encryptionCertificateId` Graph echoes back (we chose it when subscribing).
    pub id: String,
    /// SHA-1 of the certificate's DER, upper-case hex: Graph's `encryptionCertificateThumbprint`.
    pub thumbprint: String,
    pub private_key: PKey<Private>,
    pub certificate: X509,
    /// Validity, used to pick the current certificate for new subscriptions (never to refuse one).
    pub not_before: OffsetDateTime,
    pub not_after: OffsetDateTime,
    /// Where it came from, for logs and `handler decrypt` (a path or a Key Vault id; no secrets).
    pub source: String,
}

impl std::fmt::Debug for DecryptionKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DecryptionKey")
            .field("id", &self.id)
            .field("thumbprint", &self.thumbprint)
            .field("not_after", &self.not_after)
            .field("source", &self.source)
            .finish_non_exhaustive()
    }
}

impl DecryptionKey {
    /// Pairs a key with its certificate, checking that they match.
    pub fn new(
        id: String,
        private_key: PKey<Private>,
        certificate: X509,
        source: String,
    ) -> Result<Self, KeyError> {
        let invalid = |reason: String| KeyError::Invalid {
            name: source.clone(),
            reason,
        };
        let public = certificate
            .public_key()
            .map_err(|e| KeyError::unusable(&source, "no public key", e))?;
        if !public.public_eq(&private_key) {
            return Err(invalid("private key does not match the certificate".into()));
        }
        if private_key.rsa().is_err() {
            return Err(invalid("Graph requires an RSA key".into()));
        }
        let digest = certificate
            .digest(openssl::hash::MessageDigest::sha1())
            .map_err(|e| KeyError::unusable(&source, "SHA-1 thumbprint", e))?;
        let validity = |e| KeyError::unusable(&source, "validity dates", e);
        let not_before = asn1_to_time(certificate.not_before()).map_err(validity)?;
        let not_after = asn1_to_time(certificate.not_after()).map_err(validity)?;
        Ok(DecryptionKey {
            id,
            thumbprint: hex::encode_upper(digest),
            private_key,
            certificate,
            not_before,
            not_after,
            source,
        })
    }

    /// Base64 of the certificate's DER: the `encryptionCertificate` value Graph expects.
    pub fn certificate_base64(&self) -> Result<String, KeyError> {
        use base64::Engine;
        let der = self
            .certificate
            .to_der()
            .map_err(|e| KeyError::unusable(&self.source, "DER encoding", e))?;
        Ok(base64::engine::general_purpose::STANDARD.encode(der))
    }
}

fn asn1_to_time(
    t: &openssl::asn1::Asn1TimeRef,
) -> Result<OffsetDateTime, Box<dyn std::error::Error + Send + Sync>> {
    let epoch = openssl::asn1::Asn1Time::from_unix(0)?;
    let diff = epoch.diff(t)?;
    let secs = i64::from(diff.days) * 86_400 + i64::from(diff.secs);
    Ok(OffsetDateTime::from_unix_timestamp(secs)?)
}

/// Where the keys come from; decides what a refresh does.
enum Source {
    /// Nothing configured: rich notifications are quarantined until a key is added.
    None,
    Local(local::LocalSource),
    /// Boxed: the two SDK clients are large and this is one of a few variants.
    KeyVault(Box<keyvault::KeyVaultSource>),
}

/// The live set of keys, shared by every request. Lookups never wait on I/O: a refresh swaps
/// the whole set at once.
pub struct CertificateStore {
    keys: RwLock<Arc<Vec<Arc<DecryptionKey>>>>,
    source: Source,
    /// When the last refresh on an unknown id ran: refreshes are rate-limited so a flood of
    /// forged certificate ids cannot hammer Key Vault.
    last_refresh: tokio::sync::Mutex<Option<Instant>>,
    min_refresh_interval: Duration,
}

/// The shortest time between two refreshes triggered by unknown certificate ids.
pub(crate) const MIN_REFRESH_INTERVAL: Duration = Duration::from_secs(60);

impl CertificateStore {
    /// A store with no keys and nothing to refresh from.
    pub fn empty() -> Self {
        Self::with_source(Source::None, Vec::new())
    }

    /// A fixed set of keys (tests, `handler demo`).
    pub fn from_keys(keys: Vec<DecryptionKey>) -> Self {
        Self::with_source(Source::None, keys)
    }

    fn with_source(source: Source, keys: Vec<DecryptionKey>) -> Self {
        CertificateStore {
            keys: RwLock::new(Arc::new(keys.into_iter().map(Arc::new).collect())),
            source,
            last_refresh: tokio::sync::Mutex::new(None),
            min_refresh_interval: MIN_REFRESH_INTERVAL,
        }
    }

    /// Loads local files.
    pub fn from_local(source: local::LocalSource) -> Result<Self, KeyError> {
        let keys = source.load()?;
        Ok(Self::with_source(Source::Local(source), keys))
    }

    /// Loads every enabled version of a Key Vault certificate.
    pub async fn from_key_vault(source: keyvault::KeyVaultSource) -> Result<Self, KeyError> {
        let keys = source.load().await?;
        Ok(Self::with_source(Source::KeyVault(Box::new(source)), keys))
    }

    /// Sets the minimum interval between refreshes on unknown ids (tests shorten it).
    pub fn with_min_refresh_interval(mut self, interval: Duration) -> Self {
        self.min_refresh_interval = interval;
        self
    }

    /// A snapshot of the current keys.
    pub fn keys(&self) -> Arc<Vec<Arc<DecryptionKey>>> {
        self.keys.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    pub fn is_empty(&self) -> bool {
        self.keys().is_empty()
    }

    /// The key Graph named: by `encryptionCertificateId` first, then by thumbprint (any case).
    pub fn lookup(&self, id: Option<&str>, thumbprint: Option<&str>) -> Option<Arc<DecryptionKey>> {
        let keys = self.keys();
        if let Some(id) = id.filter(|s| !s.is_empty())
            && let Some(k) = keys.iter().find(|k| k.id == id)
        {
            return Some(k.clone());
        }
        let thumbprint = thumbprint.filter(|s| !s.is_empty())?;
        keys.iter()
            .find(|k| k.thumbprint.eq_ignore_ascii_case(thumbprint))
            .cloned()
    }

    /// Like [`lookup`](Self::lookup), but an unknown key triggers one rate-limited refresh.
    pub async fn resolve(
        &self,
        id: Option<&str>,
        thumbprint: Option<&str>,
    ) -> Option<Arc<DecryptionKey>> {
        if let Some(k) = self.lookup(id, thumbprint) {
            return Some(k);
        }
        if matches!(self.source, Source::None) {
            return None;
        }
        {
            let mut last = self.last_refresh.lock().await;
            // Another request may have refreshed while we waited for the lock.
            if let Some(k) = self.lookup(id, thumbprint) {
                return Some(k);
            }
            if last.is_some_and(|t| t.elapsed() < self.min_refresh_interval) {
                return None;
            }
            *last = Some(Instant::now());
            if let Err(e) = self.refresh().await {
                tracing::warn!(error = %e, "certificate refresh on an unknown id failed");
            }
        }
        self.lookup(id, thumbprint)
    }

    /// Reloads from the source. On failure the previous keys stay live.
    pub async fn refresh(&self) -> Result<usize, KeyError> {
        let keys = match &self.source {
            Source::None => return Ok(self.keys().len()),
            Source::Local(s) => s.load()?,
            Source::KeyVault(s) => s.load().await?,
        };
        let n = keys.len();
        *self.keys.write().unwrap_or_else(|e| e.into_inner()) =
            Arc::new(keys.into_iter().map(Arc::new).collect());
        Ok(n)
    }

    /// Reloads the keys every `every` in the background, so a certificate rotated in the vault
    /// is live before Graph first uses it (an unknown id also triggers a refresh, but only once
    /// per [`MIN_REFRESH_INTERVAL`]). A failed refresh keeps the previous keys and is logged.
    /// The task holds only a weak reference: it ends once the store is dropped.
    pub fn spawn_periodic_refresh(
        self: &Arc<Self>,
        every: Duration,
    ) -> tokio::task::JoinHandle<()> {
        let store = Arc::downgrade(self);
        tokio::spawn(async move {
            let mut ticks = tokio::time::interval(every);
            ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            // The first tick is immediate; the keys were loaded when the store was built.
            ticks.tick().await;
            loop {
                ticks.tick().await;
                let Some(store) = store.upgrade() else { return };
                match store.refresh().await {
                    Ok(n) => tracing::debug!(keys = n, "periodic certificate refresh"),
                    Err(e) => {
                        tracing::warn!(error = %e, "periodic certificate refresh failed; keeping the previous keys")
                    }
                }
            }
        })
    }

    /// The certificate to give Graph for new subscriptions: the newest one valid now, else the
    /// newest of all.
    pub fn current(&self) -> Option<Arc<DecryptionKey>> {
        let now = OffsetDateTime::now_utc();
        let keys = self.keys();
        keys.iter()
            .filter(|k| k.not_before <= now && now < k.not_after)
            .max_by_key(|k| k.not_before)
            .or_else(|| keys.iter().max_by_key(|k| k.not_before))
            .cloned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::LocalCertificate;
    use openssl::asn1::Asn1Time;
    use openssl::hash::MessageDigest;
    use openssl::rsa::Rsa;
    use openssl::x509::X509NameBuilder;
    use secrecy::SecretString;

    /// A self-signed RSA key and certificate as one PEM (key first, then certificate).
    fn pem(common_name: &str) -> Vec<u8> {
        let key = PKey::from_rsa(Rsa::generate(2048).unwrap()).unwrap();
        let mut name = X509NameBuilder::new().unwrap();
        name.append_entry_by_text("CN", common_name).unwrap();
        let name = name.build();
        let mut cert = X509::builder().unwrap();
        cert.set_version(2).unwrap();
        cert.set_subject_name(&name).unwrap();
        cert.set_issuer_name(&name).unwrap();
        cert.set_pubkey(&key).unwrap();
        cert.set_not_before(&Asn1Time::days_from_now(0).unwrap())
            .unwrap();
        cert.set_not_after(&Asn1Time::days_from_now(30).unwrap())
            .unwrap();
        cert.sign(&key, MessageDigest::sha256()).unwrap();
        let mut pem = key.private_key_to_pem_pkcs8().unwrap();
        pem.extend(cert.build().to_pem().unwrap());
        pem
    }

    fn thumbprint_of(pem: &[u8]) -> String {
        hex::encode_upper(
            X509::from_pem(pem)
                .unwrap()
                .digest(MessageDigest::sha1())
                .unwrap(),
        )
    }

    #[tokio::test]
    async fn periodic_refresh_picks_up_a_rotated_certificate_and_stops_with_the_store() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("notify.pem");
        let first = pem("first");
        std::fs::write(&path, &first).unwrap();
        let store = Arc::new(
            CertificateStore::from_local(local::LocalSource {
                certificates: vec![LocalCertificate {
                    id: Some("notify".into()),
                    path: path.clone(),
                }],
                password: SecretString::from(""),
            })
            .unwrap(),
        );
        assert_eq!(
            store.lookup(Some("notify"), None).unwrap().thumbprint,
            thumbprint_of(&first)
        );

        let task = store.spawn_periodic_refresh(Duration::from_millis(20));
        let second = pem("second");
        std::fs::write(&path, &second).unwrap();
        let rotated = async {
            while store.lookup(None, Some(&thumbprint_of(&second))).is_none() {
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        };
        tokio::time::timeout(Duration::from_secs(10), rotated)
            .await
            .expect("the periodic refresh never loaded the rotated certificate");
        assert!(store.lookup(None, Some(&thumbprint_of(&first))).is_none());

        // A failed refresh keeps the keys that were live.
        std::fs::remove_file(&path).unwrap();
        tokio::time::sleep(Duration::from_millis(100)).await;
        assert!(store.lookup(Some("notify"), None).is_some());
        assert!(!task.is_finished());

        drop(store);
        tokio::time::timeout(Duration::from_secs(10), task)
            .await
            .expect("the refresh task outlived its store")
            .unwrap();
    }
}
