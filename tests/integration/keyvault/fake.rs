//! A FAKE Azure Key Vault on loopback, speaking the documented data-plane protocol over https
//! (the real service cannot run here), plus the test CA and certificates it needs.
//!
//! What it answers, as Key Vault does:
//! - any request without the expected bearer token: `401` with the challenge
//!   `WWW-Authenticate: Bearer authorization="https://login.microsoftonline.com/<tenant>", resource="https://vault.azure.net"`;
//! - `GET /certificates/{name}/versions?api-version=...`: `{"value": [CertificateItem...], "nextLink": ...}`,
//!   `page_size` items per page, the next page named by `$skiptoken`;
//! - `GET /secrets/{name}/{version}?api-version=...`: the secret bundle
//!   `{"value", "contentType", "id", "kid", "managed", "attributes"}`; a disabled version is
//!   `403 Forbidden` (`SecretDisabled`), an unknown one `404`.
//!
//! Every request is recorded (method, path, query, Authorization header) so tests can count them.
//! This file is shared with the `keyvault_identity` test binary, which uses only part of it.
#![allow(dead_code)]

use std::collections::HashMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::{Arc, Mutex};

use base64::Engine;
use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use openssl::asn1::{Asn1Integer, Asn1Time};
use openssl::bn::{BigNum, MsbOption};
use openssl::hash::MessageDigest;
use openssl::pkey::{PKey, Private};
use openssl::rsa::Rsa;
use openssl::x509::extension::{
    BasicConstraints, ExtendedKeyUsage, KeyUsage, SubjectAlternativeName,
};
use openssl::x509::{X509, X509NameBuilder};
use serde_json::{Value, json};
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;
use tokio_rustls::rustls;

/// The challenge a vault sends to a request without a token.
pub const CHALLENGE: &str = r#"Bearer authorization="https://login.microsoftonline.com/72f988bf-86f1-41af-91ab-2d7cd011db47", resource="https://vault.azure.net""#;
/// The scope a client derives from [`CHALLENGE`].
pub const VAULT_SCOPE: &str = "https://vault.azure.net/.default";

/// A request's query parameters, decoded.
pub fn query_of(uri: &hyper::Uri) -> HashMap<String, String> {
    uri.query()
        .map(|q| {
            url::form_urlencoded::parse(q.as_bytes())
                .into_owned()
                .collect()
        })
        .unwrap_or_default()
}

pub fn now_unix() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

pub const DAY: i64 = 86_400;

fn serial() -> Asn1Integer {
    let mut n = BigNum::new().unwrap();
    n.rand(64, MsbOption::MAYBE_ZERO, false).unwrap();
    n.set_bit(63).unwrap();
    n.to_asn1_integer().unwrap()
}

fn rsa_key() -> PKey<Private> {
    PKey::from_rsa(Rsa::generate(2048).unwrap()).unwrap()
}

/// A certificate authority made for one test run, and a server certificate it signed for
/// `127.0.0.1` and `localhost`.
pub struct TestCa {
    pub cert: X509,
    pub server_cert: X509,
    pub server_key: PKey<Private>,
}

impl TestCa {
    pub fn generate() -> Self {
        let ca_key = rsa_key();
        let mut name = X509NameBuilder::new().unwrap();
        name.append_entry_by_text("CN", "teams-notifications test CA")
            .unwrap();
        let ca_name = name.build();
        let now = now_unix();
        let mut ca = X509::builder().unwrap();
        ca.set_version(2).unwrap();
        ca.set_serial_number(&serial()).unwrap();
        ca.set_subject_name(&ca_name).unwrap();
        ca.set_issuer_name(&ca_name).unwrap();
        ca.set_pubkey(&ca_key).unwrap();
        ca.set_not_before(&Asn1Time::from_unix(now - DAY).unwrap())
            .unwrap();
        ca.set_not_after(&Asn1Time::from_unix(now + DAY).unwrap())
            .unwrap();
        ca.append_extension(BasicConstraints::new().critical().ca().build().unwrap())
            .unwrap();
        ca.append_extension(
            KeyUsage::new()
                .critical()
                .key_cert_sign()
                .crl_sign()
                .build()
                .unwrap(),
        )
        .unwrap();
        ca.sign(&ca_key, MessageDigest::sha256()).unwrap();
        let ca = ca.build();

        let server_key = rsa_key();
        let mut name = X509NameBuilder::new().unwrap();
        name.append_entry_by_text("CN", "127.0.0.1").unwrap();
        let mut server = X509::builder().unwrap();
        server.set_version(2).unwrap();
        server.set_serial_number(&serial()).unwrap();
        server.set_subject_name(&name.build()).unwrap();
        server.set_issuer_name(ca.subject_name()).unwrap();
        server.set_pubkey(&server_key).unwrap();
        server
            .set_not_before(&Asn1Time::from_unix(now - DAY).unwrap())
            .unwrap();
        server
            .set_not_after(&Asn1Time::from_unix(now + DAY).unwrap())
            .unwrap();
        server
            .append_extension(BasicConstraints::new().critical().build().unwrap())
            .unwrap();
        server
            .append_extension(ExtendedKeyUsage::new().server_auth().build().unwrap())
            .unwrap();
        let san = SubjectAlternativeName::new()
            .ip("127.0.0.1")
            .dns("localhost")
            .build(&server.x509v3_context(Some(&ca), None))
            .unwrap();
        server.append_extension(san).unwrap();
        server.sign(&ca_key, MessageDigest::sha256()).unwrap();

        TestCa {
            cert: ca,
            server_cert: server.build(),
            server_key,
        }
    }

    /// A reqwest client that trusts this CA and nothing else.
    pub fn reqwest_client(&self) -> reqwest::Client {
        let ca = reqwest::Certificate::from_der(&self.cert.to_der().unwrap()).unwrap();
        reqwest::Client::builder()
            .tls_certs_only([ca])
            .no_proxy()
            .build()
            .unwrap()
    }

    /// Azure client options whose transport trusts this CA.
    pub fn client_options(&self) -> azure_core::http::ClientOptions {
        azure_core::http::ClientOptions {
            transport: Some(azure_core::http::Transport::new(Arc::new(
                self.reqwest_client(),
            ))),
            ..Default::default()
        }
    }

    pub fn acceptor(&self) -> TlsAcceptor {
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let config = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_no_client_auth()
            .with_single_cert(
                vec![self.server_cert.to_der().unwrap().into()],
                rustls::pki_types::PrivateKeyDer::Pkcs8(
                    self.server_key.private_key_to_pkcs8().unwrap().into(),
                ),
            )
            .unwrap();
        TlsAcceptor::from(Arc::new(config))
    }
}

/// A notification certificate: self-signed RSA 2048, valid between the given unix times.
pub struct TestCertificate {
    pub key: PKey<Private>,
    pub cert: X509,
}

impl TestCertificate {
    pub fn new(common_name: &str, not_before: i64, not_after: i64) -> Self {
        let key = rsa_key();
        let mut name = X509NameBuilder::new().unwrap();
        name.append_entry_by_text("CN", common_name).unwrap();
        let name = name.build();
        let mut cert = X509::builder().unwrap();
        cert.set_version(2).unwrap();
        cert.set_serial_number(&serial()).unwrap();
        cert.set_subject_name(&name).unwrap();
        cert.set_issuer_name(&name).unwrap();
        cert.set_pubkey(&key).unwrap();
        cert.set_not_before(&Asn1Time::from_unix(not_before).unwrap())
            .unwrap();
        cert.set_not_after(&Asn1Time::from_unix(not_after).unwrap())
            .unwrap();
        cert.sign(&key, MessageDigest::sha256()).unwrap();
        TestCertificate {
            key,
            cert: cert.build(),
        }
    }

    /// Valid from yesterday for a year.
    pub fn valid(common_name: &str) -> Self {
        let now = now_unix();
        Self::new(common_name, now - DAY, now + 365 * DAY)
    }

    /// SHA-1 of the DER: Key Vault's `x5t` and Graph's thumbprint.
    pub fn sha1(&self) -> Vec<u8> {
        self.cert.digest(MessageDigest::sha1()).unwrap().to_vec()
    }

    pub fn thumbprint(&self) -> String {
        hex::encode_upper(self.sha1())
    }

    /// A PKCS#12 as Key Vault exports it: OpenSSL 3 defaults, no password.
    pub fn pfx(&self) -> Vec<u8> {
        openssl::pkcs12::Pkcs12::builder()
            .name("notification")
            .pkey(&self.key)
            .cert(&self.cert)
            .build2("")
            .unwrap()
            .to_der()
            .unwrap()
    }

    /// A PKCS#12 with the legacy RC2-40 encryption older tools write, made by the `openssl` CLI.
    pub fn legacy_pfx(&self, dir: &Path) -> Vec<u8> {
        let key = dir.join("legacy-key.pem");
        let cert = dir.join("legacy-cert.pem");
        let out = dir.join("legacy.pfx");
        std::fs::write(&key, self.key.private_key_to_pem_pkcs8().unwrap()).unwrap();
        std::fs::write(&cert, self.cert.to_pem().unwrap()).unwrap();
        let status = std::process::Command::new("openssl")
            .args(["pkcs12", "-export", "-legacy", "-passout", "pass:"])
            .arg("-inkey")
            .arg(&key)
            .arg("-in")
            .arg(&cert)
            .arg("-out")
            .arg(&out)
            .status()
            .expect(
                "this test needs the `openssl` command-line tool (Debian package `openssl`) \
                 to make a legacy PFX",
            );
        assert!(status.success(), "openssl pkcs12 -export -legacy failed");
        let der = std::fs::read(&out).unwrap();
        // pbeWithSHA1And40BitRC2-CBC (1.2.840.113549.1.12.1.6): proof the file really is legacy.
        let rc2_oid = [0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x0c, 0x01, 0x06];
        assert!(
            der.windows(rc2_oid.len()).any(|w| w == rc2_oid),
            "the CLI did not write an RC2-40 PFX"
        );
        der
    }

    /// PEM as Key Vault stores it: the PKCS#8 private key, then the certificate.
    pub fn pem(&self) -> String {
        let mut pem = String::from_utf8(self.key.private_key_to_pem_pkcs8().unwrap()).unwrap();
        pem.push_str(&String::from_utf8(self.cert.to_pem().unwrap()).unwrap());
        pem
    }

    fn not_before(&self) -> i64 {
        asn1_unix(self.cert.not_before())
    }

    fn not_after(&self) -> i64 {
        asn1_unix(self.cert.not_after())
    }
}

fn asn1_unix(t: &openssl::asn1::Asn1TimeRef) -> i64 {
    let d = Asn1Time::from_unix(0).unwrap().diff(t).unwrap();
    i64::from(d.days) * DAY + i64::from(d.secs)
}

/// One version of a certificate in the fake vault.
#[derive(Clone, Debug)]
pub struct FakeVersion {
    pub version: String,
    pub enabled: bool,
    /// base64url SHA-1 listed as `x5t`.
    pub x5t: Option<Vec<u8>>,
    pub nbf: i64,
    pub exp: i64,
    pub content_type: Option<String>,
    /// The secret's value (base64 PFX or PEM text).
    pub value: Option<String>,
}

impl FakeVersion {
    /// A version whose secret is base64 PKCS#12, as Key Vault stores certificates by default.
    pub fn pfx(version: &str, cert: &TestCertificate) -> Self {
        Self::pfx_bytes(version, cert, cert.pfx())
    }

    /// A PKCS#12 version with the given PFX bytes.
    pub fn pfx_bytes(version: &str, cert: &TestCertificate, pfx: Vec<u8>) -> Self {
        FakeVersion {
            version: version.into(),
            enabled: true,
            x5t: Some(cert.sha1()),
            nbf: cert.not_before(),
            exp: cert.not_after(),
            content_type: Some("application/x-pkcs12".into()),
            value: Some(base64::engine::general_purpose::STANDARD.encode(pfx)),
        }
    }

    /// A version whose secret is PEM (a certificate policy with contentType application/x-pem-file).
    pub fn pem(version: &str, cert: &TestCertificate) -> Self {
        FakeVersion {
            content_type: Some("application/x-pem-file".into()),
            value: Some(cert.pem()),
            ..Self::pfx(version, cert)
        }
    }

    pub fn disabled(mut self) -> Self {
        self.enabled = false;
        self
    }
}

/// A request as the fake saw it.
#[derive(Clone, Debug)]
pub struct Seen {
    pub method: String,
    pub path: String,
    pub query: HashMap<String, String>,
    pub authorization: Option<String>,
    pub status: u16,
}

struct State {
    /// Versions per certificate name, oldest first.
    certificates: HashMap<String, Vec<FakeVersion>>,
    page_size: usize,
    seen: Vec<Seen>,
}

pub struct FakeVault {
    /// `https://127.0.0.1:{port}`
    pub url: String,
    token: String,
    state: Mutex<State>,
}

impl FakeVault {
    /// Starts the vault; it accepts `Bearer {token}` and nothing else.
    pub async fn start(ca: &TestCa, token: &str) -> Arc<FakeVault> {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr: SocketAddr = listener.local_addr().unwrap();
        let vault = Arc::new(FakeVault {
            url: format!("https://127.0.0.1:{}", addr.port()),
            token: token.to_string(),
            state: Mutex::new(State {
                certificates: HashMap::new(),
                page_size: 25,
                seen: Vec::new(),
            }),
        });
        let acceptor = ca.acceptor();
        let handler = Arc::downgrade(&vault);
        tokio::spawn(async move {
            loop {
                let Ok((tcp, _)) = listener.accept().await else {
                    return;
                };
                let acceptor = acceptor.clone();
                let handler = handler.clone();
                tokio::spawn(async move {
                    let Ok(tls) = acceptor.accept(tcp).await else {
                        return;
                    };
                    let service = hyper::service::service_fn(move |req: Request<Incoming>| {
                        let vault = handler.upgrade();
                        async move {
                            Ok::<_, Infallible>(match vault {
                                Some(vault) => vault.handle(&req),
                                None => reply(StatusCode::SERVICE_UNAVAILABLE, json!({})),
                            })
                        }
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(tls), service)
                        .await;
                });
            }
        });
        vault
    }

    pub fn add_version(&self, certificate: &str, version: FakeVersion) {
        self.state
            .lock()
            .unwrap()
            .certificates
            .entry(certificate.to_string())
            .or_default()
            .push(version);
    }

    /// How many versions one page of the listing holds.
    pub fn set_page_size(&self, n: usize) {
        self.state.lock().unwrap().page_size = n;
    }

    pub fn seen(&self) -> Vec<Seen> {
        self.state.lock().unwrap().seen.clone()
    }

    fn handle(&self, req: &Request<Incoming>) -> Response<Full<Bytes>> {
        let path = req.uri().path().to_string();
        let query = query_of(req.uri());
        let authorization = req
            .headers()
            .get(hyper::header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string);

        let mut state = self.state.lock().unwrap();
        let response = if authorization.as_deref() != Some(&format!("Bearer {}", self.token)) {
            let mut r = reply(
                StatusCode::UNAUTHORIZED,
                error(
                    "Unauthorized",
                    "AKV10000: Request is missing a Bearer or PoP token.",
                ),
            );
            r.headers_mut()
                .insert(hyper::header::WWW_AUTHENTICATE, CHALLENGE.parse().unwrap());
            r
        } else if req.method() != hyper::Method::GET || !query.contains_key("api-version") {
            reply(
                StatusCode::BAD_REQUEST,
                error("BadParameter", "unsupported request"),
            )
        } else {
            let segments: Vec<&str> = path.trim_matches('/').split('/').collect();
            match segments.as_slice() {
                ["certificates", name, "versions"] => self.list_versions(&state, name, &query),
                ["secrets", name, version] => self.get_secret(&state, name, version),
                _ => reply(StatusCode::NOT_FOUND, error("NotFound", "no such route")),
            }
        };
        state.seen.push(Seen {
            method: req.method().to_string(),
            path,
            query,
            authorization,
            status: response.status().as_u16(),
        });
        response
    }

    fn list_versions(
        &self,
        state: &State,
        name: &str,
        query: &HashMap<String, String>,
    ) -> Response<Full<Bytes>> {
        let Some(versions) = state.certificates.get(name) else {
            return reply(
                StatusCode::NOT_FOUND,
                error(
                    "CertificateNotFound",
                    "A certificate with (name/id) was not found",
                ),
            );
        };
        let skip: usize = query
            .get("$skiptoken")
            .and_then(|s| s.parse().ok())
            .unwrap_or(0);
        let end = (skip + state.page_size).min(versions.len());
        let value: Vec<Value> = versions[skip.min(end)..end]
            .iter()
            .map(|v| {
                let mut item = json!({
                    "id": format!("{}/certificates/{name}/{}", self.url, v.version),
                    "attributes": attributes(v),
                    "tags": {},
                });
                if let Some(x5t) = &v.x5t {
                    item["x5t"] = base64::engine::general_purpose::URL_SAFE_NO_PAD
                        .encode(x5t)
                        .into();
                }
                item
            })
            .collect();
        let next_link = (end < versions.len()).then(|| {
            format!(
                "{}/certificates/{name}/versions?api-version={}&$skiptoken={end}&maxresults={}",
                self.url, query["api-version"], state.page_size
            )
        });
        reply(
            StatusCode::OK,
            json!({ "value": value, "nextLink": next_link }),
        )
    }

    fn get_secret(&self, state: &State, name: &str, version: &str) -> Response<Full<Bytes>> {
        let Some(v) = state
            .certificates
            .get(name)
            .and_then(|vs| vs.iter().find(|v| v.version == version))
        else {
            return reply(
                StatusCode::NOT_FOUND,
                error(
                    "SecretNotFound",
                    "A secret with (name/id) was not found in this key vault.",
                ),
            );
        };
        if !v.enabled {
            return reply(
                StatusCode::FORBIDDEN,
                json!({"error": {
                    "code": "Forbidden",
                    "message": "Operation get is not allowed on a disabled secret.",
                    "innererror": {"code": "SecretDisabled"}
                }}),
            );
        }
        let mut body = json!({
            "id": format!("{}/secrets/{name}/{version}", self.url),
            "kid": format!("{}/keys/{name}/{version}", self.url),
            "managed": true,
            "attributes": attributes(v),
        });
        if let Some(ct) = &v.content_type {
            body["contentType"] = ct.clone().into();
        }
        if let Some(value) = &v.value {
            body["value"] = value.clone().into();
        }
        reply(StatusCode::OK, body)
    }
}

fn attributes(v: &FakeVersion) -> Value {
    json!({
        "enabled": v.enabled,
        "nbf": v.nbf,
        "exp": v.exp,
        "created": v.nbf,
        "updated": v.nbf,
        "recoveryLevel": "Recoverable+Purgeable",
        "recoverableDays": 90,
    })
}

fn error(code: &str, message: &str) -> Value {
    json!({"error": {"code": code, "message": message}})
}

pub fn reply(status: StatusCode, body: Value) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(Bytes::from(body.to_string())));
    *r.status_mut() = status;
    r.headers_mut().insert(
        hyper::header::CONTENT_TYPE,
        "application/json; charset=utf-8".parse().unwrap(),
    );
    r
}
