//! Certificates from Azure Key Vault: every enabled version of one certificate
//! (`KEY_VAULT_URL` + `NOTIFICATION_CERTIFICATE_NAME`).
//!
//! A Key Vault certificate's private key is only readable through the secret of the same name and
//! version (`GET /secrets/{name}/{version}`): base64 PKCS#12 (`application/x-pkcs12`, no password)
//! or PEM (`application/x-pem-file`). The versions come from `GET /certificates/{name}/versions`.
//! See Microsoft's "About Azure Key Vault certificates" (composition of a certificate).
//!
//! Every enabled version is loaded, expired ones included: Graph keeps encrypting with the
//! certificate a subscription was created with, and an expired certificate still decrypts.
//! Disabling a version in the vault is how an operator withdraws it. A version that cannot be
//! used (wrong content type, corrupt PFX) is skipped with a warning so that one bad upload does
//! not take the others down; no usable version at all is an error.
//!
//! Secret values never reach a log: they are held in zeroizing buffers until OpenSSL parses them,
//! and errors name only the certificate and version.

use std::sync::Arc;

use azure_core::credentials::TokenCredential;
use azure_core::http::ClientOptions;
use azure_security_keyvault_certificates::models::CertificateProperties;
use azure_security_keyvault_certificates::{
    CertificateClient, CertificateClientOptions, ResourceExt as _,
};
use azure_security_keyvault_secrets::models::SecretClientGetSecretOptions;
use azure_security_keyvault_secrets::{SecretClient, SecretClientOptions};
use futures::{StreamExt as _, TryStreamExt as _};
use secrecy::{ExposeSecret, SecretSlice, SecretString};

use super::{DecryptionKey, KeyError, local};
use crate::config::Config;

/// Content type of a certificate secret holding base64 PKCS#12.
pub(crate) const CONTENT_TYPE_PKCS12: &str = "application/x-pkcs12";
/// Content type of a certificate secret holding PEM (private key and certificate).
pub(crate) const CONTENT_TYPE_PEM: &str = "application/x-pem-file";

/// How many secret versions are read at once during a load.
const CONCURRENT_SECRET_READS: usize = 4;

/// How the Key Vault clients are built. The defaults are the production settings.
#[derive(Clone, Default)]
pub struct KeyVaultOptions {
    /// Transport, retries and logging of both clients (tests pass a transport trusting a test CA).
    pub client_options: ClientOptions,
    /// Whether the resource in the vault's 401 challenge must match the vault's domain.
    /// `None` keeps the SDK default (`true`); only a loopback fake needs `Some(false)`.
    pub verify_challenge_resource: Option<bool>,
}

/// One certificate in one vault, read with a token credential.
pub struct KeyVaultSource {
    /// Host (and port, if any) of the vault, for key sources and logs.
    vault_host: String,
    /// The certificate's name, also the name of the secret holding its private keys.
    certificate_name: String,
    certificates: CertificateClient,
    secrets: SecretClient,
}

impl std::fmt::Debug for KeyVaultSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KeyVaultSource")
            .field("vault_host", &self.vault_host)
            .field("certificate_name", &self.certificate_name)
            .finish_non_exhaustive()
    }
}

/// A version of the certificate worth reading: enabled, with its expected thumbprint.
struct Version {
    version: String,
    /// SHA-1 of the certificate as the vault lists it (`x5t`), checked against the secret.
    x5t: Option<Vec<u8>>,
}

impl KeyVaultSource {
    /// A source for `certificate_name` in the vault at `vault_url` (`https://{vault}.vault.azure.net`).
    pub fn new(
        vault_url: &str,
        certificate_name: &str,
        credential: Arc<dyn TokenCredential>,
        options: KeyVaultOptions,
    ) -> Result<Self, KeyError> {
        let url = url::Url::parse(vault_url).map_err(|source| KeyError::VaultUrl {
            url: vault_url.to_string(),
            source,
        })?;
        if url.scheme() != "https" {
            // azure_core refuses to send a bearer token over plain http; say so up front.
            return Err(KeyError::KeyVault(format!(
                "KEY_VAULT_URL {vault_url:?}: Key Vault is reached over https only"
            )));
        }
        let host = url
            .host_str()
            .ok_or_else(|| KeyError::KeyVault(format!("KEY_VAULT_URL {vault_url:?}: no host")))?;
        let vault_host = match url.port() {
            Some(port) => format!("{host}:{port}"),
            None => host.to_string(),
        };
        if !is_valid_name(certificate_name) {
            return Err(KeyError::KeyVault(format!(
                "NOTIFICATION_CERTIFICATE_NAME {certificate_name:?}: a Key Vault name is 1-127 \
                 letters, digits and dashes"
            )));
        }

        let sdk_error = |e: azure_core::Error| KeyError::KeyVaultCall {
            doing: vault_host.clone(),
            source: Box::new(e),
        };
        let certificates = CertificateClient::new(
            vault_url,
            credential.clone(),
            Some(CertificateClientOptions {
                client_options: options.client_options.clone(),
                verify_challenge_resource: options.verify_challenge_resource,
                ..Default::default()
            }),
        )
        .map_err(sdk_error)?;
        let secrets = SecretClient::new(
            vault_url,
            credential,
            Some(SecretClientOptions {
                client_options: options.client_options,
                verify_challenge_resource: options.verify_challenge_resource,
                ..Default::default()
            }),
        )
        .map_err(sdk_error)?;

        Ok(KeyVaultSource {
            vault_host,
            certificate_name: certificate_name.to_string(),
            certificates,
            secrets,
        })
    }

    /// The source the configuration names, with `options` (the builder's transport); `None` when
    /// `KEY_VAULT_URL` is unset. Naming only one of the vault and the certificate is an error.
    pub fn from_config(
        config: &Config,
        credential: Arc<dyn TokenCredential>,
        options: KeyVaultOptions,
    ) -> Result<Option<Self>, KeyError> {
        match (&config.key_vault_url, &config.certificate_name) {
            (None, None) => Ok(None),
            (Some(url), Some(name)) => Self::new(url, name, credential, options).map(Some),
            (Some(_), None) => Err(KeyError::KeyVault(
                "KEY_VAULT_URL is set but NOTIFICATION_CERTIFICATE_NAME is not".into(),
            )),
            (None, Some(_)) => Err(KeyError::KeyVault(
                "NOTIFICATION_CERTIFICATE_NAME is set but KEY_VAULT_URL is not".into(),
            )),
        }
    }

    pub fn certificate_name(&self) -> &str {
        &self.certificate_name
    }

    /// The `encryptionCertificateId` of one version: `{name}.{version}` (both are alphanumeric
    /// or dashes, so the dot is unambiguous and the id is safe in URLs, file names and logs).
    pub fn key_id(&self, version: &str) -> String {
        format!("{}.{version}", self.certificate_name)
    }

    /// Loads every enabled version of the certificate with its private key.
    #[tracing::instrument(skip(self), fields(vault = %self.vault_host, certificate = %self.certificate_name))]
    pub async fn load(&self) -> Result<Vec<DecryptionKey>, KeyError> {
        let versions = self.enabled_versions().await?;
        let listed = versions.len();
        let mut versions = versions.into_iter();
        let mut results: Vec<(String, Result<DecryptionKey, KeyError>)> = Vec::new();
        // The first read goes alone: it meets the secrets client's challenge, so the concurrent
        // reads after it carry a token instead of each drawing a 401.
        if let Some(first) = versions.next() {
            let key = self.load_version(&first).await;
            results.push((first.version, key));
        }
        let rest: Vec<_> = futures::stream::iter(versions)
            .map(|v| async move {
                let key = self.load_version(&v).await;
                (v.version, key)
            })
            .buffered(CONCURRENT_SECRET_READS)
            .collect()
            .await;
        results.extend(rest);

        let mut keys = Vec::with_capacity(results.len());
        for (version, result) in results {
            match result {
                Ok(key) => {
                    tracing::debug!(
                        id = %key.id,
                        thumbprint = %key.thumbprint,
                        not_after = %key.not_after,
                        "loaded Key Vault certificate version"
                    );
                    keys.push(key);
                }
                Err(e) => tracing::warn!(
                    version = %version,
                    error = %e,
                    "skipping unusable Key Vault certificate version"
                ),
            }
        }
        if keys.is_empty() {
            return Err(KeyError::KeyVault(format!(
                "certificate {} in {}: none of its {listed} enabled versions holds a usable key",
                self.certificate_name, self.vault_host
            )));
        }
        tracing::info!(keys = keys.len(), "loaded certificates from Key Vault");
        Ok(keys)
    }

    /// Lists the certificate's versions (every page) and keeps the enabled ones.
    async fn enabled_versions(&self) -> Result<Vec<Version>, KeyError> {
        let listing_error = |e: azure_core::Error| KeyError::KeyVaultCall {
            doing: format!(
                "listing versions of certificate {} in {}",
                self.certificate_name, self.vault_host
            ),
            source: Box::new(e),
        };
        let listed: Vec<CertificateProperties> = self
            .certificates
            .list_certificate_properties_versions(&self.certificate_name, None)
            .map_err(listing_error)?
            .try_collect()
            .await
            .map_err(listing_error)?;

        let mut versions = Vec::new();
        for properties in listed {
            let enabled = properties
                .attributes
                .as_ref()
                .and_then(|a| a.enabled)
                .unwrap_or(false);
            let version = properties.resource_id().ok().and_then(|id| {
                id.name
                    .eq_ignore_ascii_case(&self.certificate_name)
                    .then_some(id.version)
                    .flatten()
            });
            match version {
                Some(version) if !is_valid_version(&version) => tracing::warn!(
                    version = %version,
                    "skipping a certificate version with an unexpected name"
                ),
                Some(version) if enabled => versions.push(Version {
                    version,
                    x5t: properties.x509_thumbprint,
                }),
                Some(version) => {
                    tracing::debug!(version = %version, "skipping disabled certificate version")
                }
                None => tracing::warn!(
                    id = ?properties.id,
                    "skipping a listed version whose id does not name a version of this certificate"
                ),
            }
        }
        Ok(versions)
    }

    /// Reads one version's private key through its secret and pairs it with its certificate.
    async fn load_version(&self, v: &Version) -> Result<DecryptionKey, KeyError> {
        let source = format!(
            "keyvault:{}/{}/{}",
            self.vault_host, self.certificate_name, v.version
        );
        let invalid = |reason: String| KeyError::Invalid {
            name: source.clone(),
            reason,
        };
        let secret = self
            .secrets
            .get_secret(
                &self.certificate_name,
                Some(SecretClientGetSecretOptions {
                    secret_version: Some(v.version.clone()),
                    ..Default::default()
                }),
            )
            .await
            .and_then(|r| r.into_model())
            .map_err(|e| KeyError::unusable(&source, "reading its secret", e))?;
        let content_type = secret.content_type.unwrap_or_default();
        let value = SecretString::from(
            secret
                .value
                .ok_or_else(|| invalid("its secret has no value".into()))?,
        );
        let bytes: SecretSlice<u8> = match content_type.as_str() {
            CONTENT_TYPE_PKCS12 => {
                use base64::Engine;
                base64::engine::general_purpose::STANDARD
                    .decode(value.expose_secret().trim())
                    .map_err(|_| invalid("its PKCS#12 secret is not valid base64".into()))?
                    .into()
            }
            CONTENT_TYPE_PEM => value.expose_secret().as_bytes().to_vec().into(),
            other => {
                return Err(invalid(format!(
                    "its secret has content type {other:?}, expected {CONTENT_TYPE_PKCS12} or \
                     {CONTENT_TYPE_PEM}"
                )));
            }
        };
        // Key Vault exports certificates without a PFX password.
        let key = local::load_key(
            self.key_id(&v.version),
            bytes.expose_secret(),
            "",
            source.clone(),
        )?;
        if let Some(x5t) = &v.x5t
            && !hex::encode_upper(x5t).eq_ignore_ascii_case(&key.thumbprint)
        {
            return Err(invalid(format!(
                "its secret holds certificate {} but the vault lists {}",
                key.thumbprint,
                hex::encode_upper(x5t)
            )));
        }
        Ok(key)
    }
}

/// Key Vault object names: 1-127 ASCII letters, digits and dashes.
fn is_valid_name(name: &str) -> bool {
    (1..=127).contains(&name.len()) && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
}

/// Key Vault versions are 32 hex digits; accept any short alphanumeric token, which is all that
/// keeps the secret URL and the key id well-formed.
fn is_valid_version(version: &str) -> bool {
    (1..=64).contains(&version.len()) && version.bytes().all(|b| b.is_ascii_alphanumeric())
}

#[cfg(test)]
mod tests {
    use super::*;
    use azure_core::credentials::{AccessToken, TokenRequestOptions};
    use std::collections::HashMap;

    /// Never asked for a token: these tests make no request.
    #[derive(Debug)]
    struct NoCredential;

    #[async_trait::async_trait]
    impl TokenCredential for NoCredential {
        async fn get_token(
            &self,
            _: &[&str],
            _: Option<TokenRequestOptions<'_>>,
        ) -> azure_core::Result<AccessToken> {
            Err(azure_core::Error::with_message(
                azure_core::error::ErrorKind::Credential,
                "unit tests request no token",
            ))
        }
    }

    fn source(url: &str, name: &str) -> Result<KeyVaultSource, KeyError> {
        KeyVaultSource::new(
            url,
            name,
            Arc::new(NoCredential),
            KeyVaultOptions::default(),
        )
    }

    #[test]
    fn a_vault_is_named_by_https_url_and_a_valid_certificate_name() {
        let s = source("https://contoso.vault.azure.net/", "graph-notifications").unwrap();
        assert_eq!(s.vault_host, "contoso.vault.azure.net");
        assert_eq!(s.key_id("0123abcd"), "graph-notifications.0123abcd");

        let s = source("https://127.0.0.1:8443", "c").unwrap();
        assert_eq!(s.vault_host, "127.0.0.1:8443");

        for bad_url in ["http://contoso.vault.azure.net", "not a url"] {
            let e = source(bad_url, "c").unwrap_err().to_string();
            assert!(e.contains("KEY_VAULT_URL"), "{e}");
        }
        for bad_name in ["", "a/b", "a.b", "a b", &"x".repeat(128)] {
            let e = source("https://v.vault.azure.net", bad_name)
                .unwrap_err()
                .to_string();
            assert!(e.contains("NOTIFICATION_CERTIFICATE_NAME"), "{e}");
        }
    }

    #[test]
    fn versions_must_be_plain_tokens() {
        assert!(is_valid_version("5f7bd1a4c6c54b7e9fb35e0e7fbcbd6a"));
        assert!(!is_valid_version(""));
        assert!(!is_valid_version("../keys"));
        assert!(!is_valid_version("a.b"));
    }

    #[test]
    fn from_config_needs_both_settings_or_neither() {
        let config = |pairs: &[(&str, &str)]| {
            let map: HashMap<String, String> = pairs
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect();
            Config::from_lookup(|k| map.get(k).cloned()).unwrap()
        };
        let credential: Arc<dyn TokenCredential> = Arc::new(NoCredential);

        assert!(
            KeyVaultSource::from_config(
                &config(&[]),
                credential.clone(),
                KeyVaultOptions::default()
            )
            .unwrap()
            .is_none()
        );
        let s = KeyVaultSource::from_config(
            &config(&[
                ("KEY_VAULT_URL", "https://contoso.vault.azure.net"),
                ("NOTIFICATION_CERTIFICATE_NAME", "notify"),
            ]),
            credential.clone(),
            KeyVaultOptions::default(),
        )
        .unwrap()
        .unwrap();
        assert_eq!(s.certificate_name(), "notify");

        let e = KeyVaultSource::from_config(
            &config(&[("KEY_VAULT_URL", "https://contoso.vault.azure.net")]),
            credential.clone(),
            KeyVaultOptions::default(),
        )
        .unwrap_err();
        assert!(e.to_string().contains("NOTIFICATION_CERTIFICATE_NAME"));
        let e = KeyVaultSource::from_config(
            &config(&[("NOTIFICATION_CERTIFICATE_NAME", "notify")]),
            credential,
            KeyVaultOptions::default(),
        )
        .unwrap_err();
        assert!(e.to_string().contains("KEY_VAULT_URL"));
    }
}
