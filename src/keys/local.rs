//! Certificates from local files: `NOTIFICATION_CERTIFICATES` (`path` or `id=path`, comma list).
//!
//! PEM files hold the private key and the certificate; PFX (PKCS#12) files are opened with
//! `NOTIFICATION_CERTIFICATE_PASSWORD`. PFX files made with legacy algorithms (RC2-40, as
//! `openssl pkcs12 -legacy` and older Windows tools write) need OpenSSL 3's legacy provider,
//! which is loaded on demand.

use std::path::Path;

use openssl::pkcs12::Pkcs12;
use openssl::pkey::PKey;
use openssl::x509::X509;
use secrecy::{ExposeSecret, SecretString};

use super::{DecryptionKey, KeyError};
use crate::config::LocalCertificate;

/// The configured files, kept so a refresh can re-read them.
pub struct LocalSource {
    pub certificates: Vec<LocalCertificate>,
    pub password: SecretString,
}

impl LocalSource {
    pub fn load(&self) -> Result<Vec<DecryptionKey>, KeyError> {
        self.certificates
            .iter()
            .map(|c| {
                let id = c.id.clone().unwrap_or_else(|| default_id(&c.path));
                let bytes = std::fs::read(&c.path).map_err(|source| KeyError::Read {
                    path: c.path.display().to_string(),
                    source,
                })?;
                load_key(
                    id,
                    &bytes,
                    self.password.expose_secret(),
                    format!("file:{}", c.path.display()),
                )
            })
            .collect()
    }
}

/// The id of a file given without one: its stem (`certs/notify-2026.pem` -> `notify-2026`).
pub fn default_id(path: &Path) -> String {
    path.file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_else(|| path.display().to_string())
}

/// Reads a PEM (key + certificate) or PKCS#12 blob.
pub fn load_key(
    id: String,
    bytes: &[u8],
    password: &str,
    source: String,
) -> Result<DecryptionKey, KeyError> {
    let invalid = |reason: String| KeyError::Invalid {
        name: source.clone(),
        reason,
    };
    if bytes.windows(11).any(|w| w == b"-----BEGIN ") {
        let key = PKey::private_key_from_pem(bytes)
            .map_err(|e| KeyError::unusable(&source, "no private key in PEM", e))?;
        let cert = X509::from_pem(bytes)
            .map_err(|e| KeyError::unusable(&source, "no certificate in PEM", e))?;
        return DecryptionKey::new(id, key, cert, source);
    }
    let parsed = parse_pkcs12(bytes, password, &source)?;
    let key = parsed
        .pkey
        .ok_or_else(|| invalid("PFX holds no private key".into()))?;
    let cert = parsed
        .cert
        .ok_or_else(|| invalid("PFX holds no certificate".into()))?;
    DecryptionKey::new(id, key, cert, source)
}

fn parse_pkcs12(
    bytes: &[u8],
    password: &str,
    source: &str,
) -> Result<openssl::pkcs12::ParsedPkcs12_2, KeyError> {
    let pkcs12 = Pkcs12::from_der(bytes)
        .map_err(|e| KeyError::unusable(source, "neither PEM nor PFX", e))?;
    match pkcs12.parse2(password) {
        Ok(p) => Ok(p),
        Err(first) => {
            // Legacy algorithms (RC2-40-CBC) live in OpenSSL 3's legacy provider.
            load_legacy_provider();
            pkcs12.parse2(password).map_err(|_| {
                KeyError::unusable(
                    source,
                    "cannot open PFX (wrong password or unsupported algorithm)",
                    first,
                )
            })
        }
    }
}

fn load_legacy_provider() {
    use std::sync::OnceLock;
    static LEGACY: OnceLock<Option<openssl::provider::Provider>> = OnceLock::new();
    LEGACY.get_or_init(|| openssl::provider::Provider::try_load(None, "legacy", true).ok());
}
