//! The one outbound HTTP client (a leaf: the builder calls [`client`] once and passes the client
//! to everything that talks to Graph, Entra ID, Key Vault or Blob Storage).
//!
//! It trusts the system roots plus the certificates in `SSL_CERT_FILE` (private CAs, corporate
//! proxies, test fakes). A machine without system roots still gets a client that trusts only
//! `SSL_CERT_FILE`, so the handler starts and serves; its outbound calls then fail with a TLS
//! error naming the problem instead of the whole handler refusing to start.

use std::path::{Path, PathBuf};
use std::time::Duration;

/// Why the client could not be built.
#[derive(Debug, thiserror::Error)]
pub enum HttpError {
    #[error("SSL_CERT_FILE {path}: cannot read it")]
    ReadCaFile {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("SSL_CERT_FILE {path}: not a PEM certificate bundle")]
    ParseCaFile {
        path: PathBuf,
        #[source]
        source: reqwest::Error,
    },
    #[error("the HTTP client could not be built")]
    Build(#[source] reqwest::Error),
}

/// Connect and whole-request timeouts of every outbound call.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

/// The client, trusting the system roots and `extra_roots` (the `SSL_CERT_FILE` path).
pub fn client(extra_roots: Option<&Path>) -> Result<reqwest::Client, HttpError> {
    let builder = || {
        reqwest::Client::builder()
            .connect_timeout(CONNECT_TIMEOUT)
            .timeout(REQUEST_TIMEOUT)
    };
    let mut extra = Vec::new();
    if let Some(path) = extra_roots {
        let pem = std::fs::read(path).map_err(|source| HttpError::ReadCaFile {
            path: path.to_path_buf(),
            source,
        })?;
        extra = reqwest::Certificate::from_pem_bundle(&pem).map_err(|source| {
            HttpError::ParseCaFile {
                path: path.to_path_buf(),
                source,
            }
        })?;
    }
    let with_system_roots = extra
        .iter()
        .cloned()
        .fold(builder(), |b, cert| b.add_root_certificate(cert))
        .build();
    match with_system_roots {
        Ok(client) => Ok(client),
        Err(e) => {
            tracing::error!(error = %e, "no usable system CA certificates: outbound TLS trusts only SSL_CERT_FILE");
            builder()
                .tls_certs_only(extra)
                .build()
                .map_err(HttpError::Build)
        }
    }
}
