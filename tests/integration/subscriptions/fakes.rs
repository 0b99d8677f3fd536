//! Fakes of the services the renewer talks to, speaking their documented wire protocols:
//! - Entra ID's v2.0 token endpoint (`POST /{tenant}/oauth2/v2.0/token`, client-credentials
//!   grant), behind TLS on loopback because azure_identity refuses an authority that is not
//!   https; the REAL `ClientSecretCredential` talks to it;
//! - Microsoft Graph's subscriptions API: a stateful fake (create, list with `@odata.nextLink`
//!   paging, get, update, reauthorize, delete) that enforces the rules the renewer must obey:
//!   the bearer token, maximum lifetimes, the lifecycle URL beyond an hour, beta-only resources,
//!   rich subscriptions needing a certificate, one emergency subscription per policy (409).
//!   Tests mount higher-priority one-off mocks to inject throttling and failures.

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use serde_json::{Value, json};
use teams_notifications::config::Config;
use teams_notifications::graph::subscriptions::RetryPolicy;
use teams_notifications::keys::DecryptionKey;
use teams_notifications::renewer::Renewer;
use teams_notifications::startup::Builder;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::TlsAcceptor;
use tokio_rustls::rustls;
use wiremock::matchers::{any, body_string_contains, method, path};
use wiremock::{Mock, MockServer, Request, Respond, ResponseTemplate};

pub const TENANT: &str = "8f2b9a31-6c4e-4d1a-9f0e-2b7c5d4e3a10";
pub const CLIENT_ID: &str = "0c1d2e3f-4a5b-4c6d-8e9f-a0b1c2d3e4f5";
pub const CLIENT_SECRET: &str = "client-secret-never-logged-9Qx";
pub const CLIENT_STATE: &str = "client-state-never-logged-7Hk";
pub const ACCESS_TOKEN: &str = "graph-access-token-never-logged-3Zp";
pub const NOTIFICATION_URL: &str = "https://contoso.example/api/notifications";
pub const LIFECYCLE_URL: &str = "https://contoso.example/api/lifecycle";
pub const CERT_ID: &str = "notify-2026";

// ---------------------------------------------------------------------------------------------
// TLS in front of a plain fake
// ---------------------------------------------------------------------------------------------

/// A test CA and a leaf for `127.0.0.1` signed by it (DER), made once per test binary.
pub struct TestPki {
    pub ca_pem: Vec<u8>,
    chain: Vec<Vec<u8>>,
    leaf_key_pkcs8: Vec<u8>,
}

pub fn pki() -> &'static TestPki {
    static PKI: OnceLock<TestPki> = OnceLock::new();
    PKI.get_or_init(|| {
        // The same test CA as the fake Key Vault's.
        let ca = crate::keyvault::fake::TestCa::generate();
        TestPki {
            ca_pem: ca.cert.to_pem().unwrap(),
            chain: vec![ca.server_cert.to_der().unwrap(), ca.cert.to_der().unwrap()],
            leaf_key_pkcs8: ca.server_key.private_key_to_pkcs8().unwrap(),
        }
    })
}

/// Terminates TLS on a loopback port and pipes the bytes to a plain backend.
pub struct TlsFront {
    pub addr: SocketAddr,
    task: tokio::task::JoinHandle<()>,
}

impl TlsFront {
    pub async fn start(backend: SocketAddr) -> Self {
        let pki = pki();
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let certs = pki
            .chain
            .iter()
            .map(|d| rustls::pki_types::CertificateDer::from(d.clone()))
            .collect();
        let key = rustls::pki_types::PrivateKeyDer::Pkcs8(
            rustls::pki_types::PrivatePkcs8KeyDer::from(pki.leaf_key_pkcs8.clone()),
        );
        let config = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_no_client_auth()
            .with_single_cert(certs, key)
            .unwrap();
        let acceptor = TlsAcceptor::from(Arc::new(config));
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let task = tokio::spawn(async move {
            while let Ok((tcp, _)) = listener.accept().await {
                let acceptor = acceptor.clone();
                tokio::spawn(async move {
                    let Ok(mut tls) = acceptor.accept(tcp).await else {
                        return;
                    };
                    let Ok(mut plain) = TcpStream::connect(backend).await else {
                        return;
                    };
                    let _ = tokio::io::copy_bidirectional(&mut tls, &mut plain).await;
                });
            }
        });
        TlsFront { addr, task }
    }

    pub fn url(&self) -> String {
        format!("https://{}", self.addr)
    }

    /// A client that trusts only the test CA.
    pub fn client() -> reqwest::Client {
        reqwest::Client::builder()
            .tls_certs_only([reqwest::Certificate::from_pem(&pki().ca_pem).unwrap()])
            .build()
            .unwrap()
    }
}

impl Drop for TlsFront {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Entra ID's token endpoint for our tenant, answering the client-credentials grant.
pub async fn fake_entra() -> (MockServer, TlsFront) {
    let entra = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path(format!("/{TENANT}/oauth2/v2.0/token")))
        .and(body_string_contains("grant_type=client_credentials"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({
            "token_type": "Bearer",
            "expires_in": 3599,
            "ext_expires_in": 3599,
            "access_token": ACCESS_TOKEN,
        })))
        .mount(&entra)
        .await;
    let front = TlsFront::start(*entra.address()).await;
    (entra, front)
}

// ---------------------------------------------------------------------------------------------
// Fake Graph
// ---------------------------------------------------------------------------------------------

#[derive(Default)]
struct GraphInner {
    /// By id, as Graph would return them (clientState included, as Graph echoes it).
    subscriptions: BTreeMap<String, Value>,
    next_id: u32,
    page_size: usize,
    /// Replaces the `@odata.nextLink` host (to test that the client refuses to follow it).
    foreign_next_link: Option<String>,
    base: String,
    /// Every answer waits this long (to see whether two renewers' requests interleave).
    delay: Option<Duration>,
    /// When each request arrived.
    arrivals: Vec<std::time::Instant>,
    /// The same, with the instance that sent it (the `instance-…` first path segment that
    /// several apps sharing this fake put in their `GRAPH_ENDPOINT`; empty without one).
    arrivals_by: Vec<(String, std::time::Instant)>,
}

/// The first path segment naming the app instance that sent a request, if any.
const INSTANCE_PREFIX: &str = "instance-";

fn instance_of(req: &Request) -> String {
    req.url
        .path_segments()
        .and_then(|mut s| s.next())
        .filter(|s| s.starts_with(INSTANCE_PREFIX))
        .unwrap_or_default()
        .to_string()
}

/// Graph's subscriptions API, with state.
#[derive(Clone, Default)]
pub struct FakeGraph {
    inner: Arc<Mutex<GraphInner>>,
}

fn now() -> OffsetDateTime {
    OffsetDateTime::now_utc()
}

pub fn rfc3339(t: OffsetDateTime) -> String {
    t.format(&Rfc3339).unwrap()
}

fn graph_error(status: u16, code: &str, message: &str) -> ResponseTemplate {
    ResponseTemplate::new(status)
        .insert_header("request-id", "fake-request-id")
        .set_body_json(json!({"error": {"code": code, "message": message, "innerError": {"request-id": "fake-request-id"}}}))
}

fn classify(resource: &str) -> &'static str {
    let r = resource.to_ascii_lowercase();
    if r.contains("getemergencyeventsbypolicy") {
        "emergency"
    } else if r.ends_with("/meetingcallevents") {
        "meeting"
    } else {
        "teams"
    }
}

impl FakeGraph {
    pub async fn start() -> (MockServer, FakeGraph) {
        let server = MockServer::start().await;
        let fake = FakeGraph::default();
        {
            let mut inner = fake.inner.lock().unwrap();
            inner.page_size = 100;
            inner.base = server.uri();
        }
        Mock::given(any())
            .respond_with(fake.clone())
            .with_priority(200)
            .mount(&server)
            .await;
        (server, fake)
    }

    pub fn set_page_size(&self, n: usize) {
        self.inner.lock().unwrap().page_size = n;
    }

    /// Delays every answer by `delay`.
    pub fn set_delay(&self, delay: Duration) {
        self.inner.lock().unwrap().delay = Some(delay);
    }

    /// When each request arrived, in order.
    pub fn arrivals(&self) -> Vec<std::time::Instant> {
        self.inner.lock().unwrap().arrivals.clone()
    }

    /// When each request arrived, with the instance that sent it (see [`instance_endpoint`]).
    pub fn arrivals_by_instance(&self) -> Vec<(String, std::time::Instant)> {
        self.inner.lock().unwrap().arrivals_by.clone()
    }

    pub fn set_foreign_next_link(&self, base: &str) {
        self.inner.lock().unwrap().foreign_next_link = Some(base.to_string());
    }

    /// Adds a subscription as if someone had created it; returns its id.
    pub fn insert(&self, mut s: Value) -> String {
        let mut inner = self.inner.lock().unwrap();
        inner.next_id += 1;
        let id = s["id"]
            .as_str()
            .map(str::to_string)
            .unwrap_or_else(|| format!("existing-{:03}", inner.next_id));
        s["id"] = json!(id);
        inner.subscriptions.insert(id.clone(), s);
        id
    }

    pub fn remove(&self, id: &str) -> Option<Value> {
        self.inner.lock().unwrap().subscriptions.remove(id)
    }

    pub fn get(&self, id: &str) -> Option<Value> {
        self.inner.lock().unwrap().subscriptions.get(id).cloned()
    }

    pub fn all(&self) -> Vec<Value> {
        self.inner
            .lock()
            .unwrap()
            .subscriptions
            .values()
            .cloned()
            .collect()
    }

    fn list(&self, req: &Request) -> ResponseTemplate {
        let inner = self.inner.lock().unwrap();
        let skip: usize = req
            .url
            .query_pairs()
            .find(|(k, _)| k == "$skiptoken")
            .and_then(|(_, v)| v.parse().ok())
            .unwrap_or(0);
        let all: Vec<&Value> = inner.subscriptions.values().collect();
        let page: Vec<&Value> = all
            .iter()
            .skip(skip)
            .take(inner.page_size)
            .copied()
            .collect();
        let mut body = json!({
            "@odata.context": format!("{}/v1.0/$metadata#subscriptions", inner.base),
            "value": page,
        });
        if skip + inner.page_size < all.len() {
            let base = inner.foreign_next_link.as_deref().unwrap_or(&inner.base);
            body["@odata.nextLink"] = json!(format!(
                "{base}{}?$skiptoken={}",
                req.url.path(),
                skip + inner.page_size
            ));
        }
        ResponseTemplate::new(200).set_body_json(body)
    }

    fn create(&self, version: &str, req: &Request) -> ResponseTemplate {
        let Ok(body) = req.body_json::<Value>() else {
            return graph_error(400, "BadRequest", "Unable to read JSON request payload.");
        };
        for field in [
            "changeType",
            "notificationUrl",
            "resource",
            "expirationDateTime",
            "clientState",
        ] {
            if body[field].as_str().is_none_or(str::is_empty) {
                return graph_error(
                    400,
                    "InvalidRequest",
                    &format!("{field} is a required property"),
                );
            }
        }
        let resource = body["resource"].as_str().unwrap().to_string();
        let kind = classify(&resource);
        // Emergency call events exist on v1.0 and beta; meeting call events on beta only.
        if version == "v1.0" && kind == "meeting" {
            return graph_error(
                400,
                "BadRequest",
                "Resource not found for the segment (beta only).",
            );
        }
        let Ok(expiration) =
            OffsetDateTime::parse(body["expirationDateTime"].as_str().unwrap(), &Rfc3339)
        else {
            return graph_error(400, "InvalidRequest", "expirationDateTime is not a date");
        };
        if let Some(r) = self.check_expiration(
            kind,
            expiration,
            body["lifecycleNotificationUrl"].as_str().is_some(),
        ) {
            return r;
        }
        let rich = body["includeResourceData"].as_bool().unwrap_or(false);
        if rich
            && (body["encryptionCertificate"].as_str().is_none()
                || body["encryptionCertificateId"].as_str().is_none())
        {
            return graph_error(
                400,
                "InvalidRequest",
                "encryptionCertificate and encryptionCertificateId are required with includeResourceData",
            );
        }
        let mut inner = self.inner.lock().unwrap();
        if kind == "emergency"
            && inner.subscriptions.values().any(|s| {
                s["resource"]
                    .as_str()
                    .is_some_and(|r| r.eq_ignore_ascii_case(&resource))
            })
        {
            return graph_error(
                409,
                "Conflict",
                "A subscription for this application, tenant and policy already exists.",
            );
        }
        inner.next_id += 1;
        let id = format!("sub-{:03}", inner.next_id);
        let mut s = json!({
            "id": id,
            "resource": resource,
            "applicationId": CLIENT_ID,
            "changeType": body["changeType"],
            "clientState": body["clientState"],
            "notificationUrl": body["notificationUrl"],
            "lifecycleNotificationUrl": body["lifecycleNotificationUrl"],
            "expirationDateTime": rfc3339(expiration),
            "includeResourceData": rich,
            "encryptionCertificateId": body["encryptionCertificateId"],
            "latestSupportedTlsVersion": "v1_2",
        });
        if rich {
            s["encryptionCertificate"] = body["encryptionCertificate"].clone();
        }
        inner.subscriptions.insert(id, s.clone());
        ResponseTemplate::new(201).set_body_json(s)
    }

    fn check_expiration(
        &self,
        kind: &str,
        expiration: OffsetDateTime,
        lifecycle: bool,
    ) -> Option<ResponseTemplate> {
        let max_minutes = match kind {
            "emergency" => 1440,
            _ => 4320,
        };
        if expiration > now() + time::Duration::minutes(max_minutes) {
            return Some(graph_error(
                400,
                "InvalidRequest",
                &format!(
                    "Subscription expiration can only be {max_minutes} minutes in the future."
                ),
            ));
        }
        if kind == "teams" && !lifecycle && expiration > now() + time::Duration::minutes(60) {
            return Some(graph_error(
                400,
                "InvalidRequest",
                "lifecycleNotificationUrl is a required property for subscription creation on this resource when the expirationDateTime value is set to greater than 1 hour.",
            ));
        }
        None
    }

    fn update(&self, id: &str, req: &Request) -> ResponseTemplate {
        let Ok(body) = req.body_json::<Value>() else {
            return graph_error(400, "BadRequest", "Unable to read JSON request payload.");
        };
        let mut inner = self.inner.lock().unwrap();
        let Some(existing) = inner.subscriptions.get(id).cloned() else {
            return graph_error(404, "ResourceNotFound", "The object was not found.");
        };
        let mut s = existing;
        if let Some(t) = body["expirationDateTime"].as_str() {
            let Ok(expiration) = OffsetDateTime::parse(t, &Rfc3339) else {
                return graph_error(400, "InvalidRequest", "expirationDateTime is not a date");
            };
            let kind = classify(s["resource"].as_str().unwrap_or_default());
            if let Some(r) =
                self.check_expiration(kind, expiration, s["lifecycleNotificationUrl"].is_string())
            {
                return r;
            }
            s["expirationDateTime"] = json!(rfc3339(expiration));
        }
        for field in [
            "notificationUrl",
            "encryptionCertificate",
            "encryptionCertificateId",
        ] {
            if let Some(v) = body.get(field) {
                s[field] = v.clone();
            }
        }
        inner.subscriptions.insert(id.to_string(), s.clone());
        ResponseTemplate::new(200).set_body_json(s)
    }
}

impl Respond for FakeGraph {
    fn respond(&self, req: &Request) -> ResponseTemplate {
        let delay = {
            let mut inner = self.inner.lock().unwrap();
            let now = std::time::Instant::now();
            inner.arrivals.push(now);
            inner.arrivals_by.push((instance_of(req), now));
            inner.delay
        };
        let answer = self.answer(req);
        match delay {
            Some(d) => answer.set_delay(d),
            None => answer,
        }
    }
}

impl FakeGraph {
    fn answer(&self, req: &Request) -> ResponseTemplate {
        let authorized = req
            .headers
            .get("authorization")
            .and_then(|v| v.to_str().ok())
            == Some(format!("Bearer {ACCESS_TOKEN}").as_str());
        if !authorized {
            return graph_error(
                401,
                "InvalidAuthenticationToken",
                "Access token is empty or invalid.",
            );
        }
        let segments: Vec<String> = req
            .url
            .path_segments()
            .map(|s| {
                s.map(|p| {
                    percent_encoding::percent_decode_str(p)
                        .decode_utf8_lossy()
                        .into_owned()
                })
                .collect()
            })
            .unwrap_or_default();
        let skip = usize::from(
            segments
                .first()
                .is_some_and(|s| s.starts_with(INSTANCE_PREFIX)),
        );
        let segments = &segments[skip.min(segments.len())..];
        let version = segments.first().map(String::as_str).unwrap_or("");
        if !matches!(version, "v1.0" | "beta")
            || segments.get(1).map(String::as_str) != Some("subscriptions")
        {
            return graph_error(404, "NotFound", "Unknown path.");
        }
        let id = segments.get(2).map(String::as_str);
        let action = segments.get(3).map(String::as_str);
        match (req.method.as_str(), id, action) {
            ("GET", None, None) => self.list(req),
            ("POST", None, None) => self.create(version, req),
            ("GET", Some(id), None) => match self.get(id) {
                Some(s) => ResponseTemplate::new(200).set_body_json(s),
                None => graph_error(404, "ResourceNotFound", "The object was not found."),
            },
            ("PATCH", Some(id), None) => self.update(id, req),
            ("DELETE", Some(id), None) => match self.remove(id) {
                Some(_) => ResponseTemplate::new(204),
                None => graph_error(404, "ResourceNotFound", "The object was not found."),
            },
            ("POST", Some(id), Some("reauthorize")) => match self.get(id) {
                Some(_) => ResponseTemplate::new(204),
                None => graph_error(404, "ResourceNotFound", "The object was not found."),
            },
            _ => graph_error(405, "MethodNotAllowed", "Not supported."),
        }
    }
}

/// The `GRAPH_ENDPOINT` of app instance `name` on the fake at `base`: the same Graph, with the
/// instance's requests told apart ([`FakeGraph::arrivals_by_instance`]).
pub fn instance_endpoint(base: &str, name: &str) -> String {
    format!("{base}/{INSTANCE_PREFIX}{name}")
}

/// A subscription as it would already exist in Graph.
pub fn existing(resource: &str, change_type: &str, minutes_left: i64) -> Value {
    json!({
        "resource": resource,
        "changeType": change_type,
        "notificationUrl": NOTIFICATION_URL,
        "lifecycleNotificationUrl": LIFECYCLE_URL,
        "clientState": CLIENT_STATE,
        "expirationDateTime": rfc3339(now() + time::Duration::minutes(minutes_left)),
        "includeResourceData": true,
        "encryptionCertificateId": CERT_ID,
        "applicationId": CLIENT_ID,
    })
}

// ---------------------------------------------------------------------------------------------
// Harness
// ---------------------------------------------------------------------------------------------

/// A renewer wired to the fakes: the real credential, client, reconcile and archive.
pub struct Harness {
    pub graph: MockServer,
    pub fake: FakeGraph,
    pub entra: MockServer,
    _entra_front: TlsFront,
    /// The renewer the builder made.
    pub ctx: Arc<Renewer>,
    /// The app serving HTTP, as the Functions host reaches it (`POST /renew`, lifecycle URL).
    pub server: crate::support::TestApp,
    pub settings: HashMap<String, String>,
    pub key: Arc<DecryptionKey>,
    pub dir: tempfile::TempDir,
}

/// Short waits so throttling tests stay fast; still bounded like production.
pub fn fast_retry() -> RetryPolicy {
    RetryPolicy {
        max_attempts: 4,
        base_delay: Duration::from_millis(20),
        max_delay: Duration::from_secs(2),
        max_elapsed: Duration::from_secs(10),
    }
}

/// The certificate every harness gives Graph (generating RSA keys is slow: once per binary).
pub fn current_key() -> &'static Arc<DecryptionKey> {
    static KEY: OnceLock<Arc<DecryptionKey>> = OnceLock::new();
    KEY.get_or_init(|| {
        Arc::new(teams_notifications::devtools::certificates::self_signed(
            CERT_ID, 30,
        ))
    })
}

pub async fn harness(desired: Value) -> Harness {
    harness_with(desired, &[]).await
}

pub async fn harness_with(desired: Value, overrides: &[(&str, &str)]) -> Harness {
    harness_with_clock(desired, overrides, None).await
}

/// [`harness_with`], the renewer reading `clock` (tests move time instead of waiting).
pub async fn harness_with_clock(
    desired: Value,
    overrides: &[(&str, &str)],
    clock: Option<teams_notifications::renewer::Clock>,
) -> Harness {
    harness_tuned(desired, overrides, |builder| match clock {
        Some(clock) => builder.with_renewer_clock(clock),
        None => builder,
    })
    .await
}

/// [`harness_with`], the production builder adjusted by `tune` before it builds.
pub async fn harness_tuned(
    desired: Value,
    overrides: &[(&str, &str)],
    tune: impl FnOnce(Builder) -> Builder,
) -> Harness {
    let (graph, fake) = FakeGraph::start().await;
    let (entra, entra_front) = fake_entra().await;
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("subscriptions.json");
    std::fs::write(&file, serde_json::to_vec_pretty(&desired).unwrap()).unwrap();
    let archive_dir = dir.path().join("archive");

    let pem = dir.path().join("current.pem");
    std::fs::write(
        &pem,
        teams_notifications::devtools::certificates::to_pem(current_key()).unwrap(),
    )
    .unwrap();

    let mut settings: HashMap<String, String> = [
        ("GRAPH_TENANT_ID", TENANT.to_string()),
        ("GRAPH_CLIENT_ID", CLIENT_ID.to_string()),
        ("GRAPH_CLIENT_SECRET", CLIENT_SECRET.to_string()),
        ("NOTIFICATION_CLIENT_STATE", CLIENT_STATE.to_string()),
        ("NOTIFICATION_URL", NOTIFICATION_URL.to_string()),
        ("LIFECYCLE_NOTIFICATION_URL", LIFECYCLE_URL.to_string()),
        ("SUBSCRIPTIONS_FILE", file.display().to_string()),
        ("GRAPH_ENDPOINT", graph.uri()),
        ("AUTHORITY_HOST", entra_front.url()),
        ("ARCHIVE_DIR", archive_dir.display().to_string()),
        (
            "NOTIFICATION_CERTIFICATES",
            format!("{CERT_ID}={}", pem.display()),
        ),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect();
    for (k, v) in overrides {
        if v.is_empty() {
            settings.remove(*k);
        } else {
            settings.insert(k.to_string(), v.to_string());
        }
    }
    let config = Config::from_lookup(|k| settings.get(k).cloned()).unwrap();

    // The production builder: one HTTP client (trusting the fake Entra's test CA), the real
    // credential, certificate store, archive and renewer.
    let key = current_key().clone();
    let builder = Builder::new(config.clone())
        .with_http(TlsFront::client())
        .with_env(|_| None)
        .with_graph_retry(fast_retry())
        // Short waits between the listing checks that confirm a subscriptionRemoved.
        .with_removal_checks(vec![Duration::ZERO, Duration::from_millis(50)]);
    let app = tune(builder).build().await.expect("the app starts");
    let ctx = app.renewer.clone().expect("SUBSCRIPTIONS_FILE is set");
    let server = crate::support::spawn_with_state(
        app.state(),
        tempfile::tempdir().unwrap(),
        archive_dir.clone(),
    )
    .await;
    Harness {
        graph,
        fake,
        entra,
        _entra_front: entra_front,
        ctx,
        server,
        settings,
        key,
        dir,
    }
}

impl Harness {
    /// The host's timer invocation `POST /renew`: the status and the JSON answer.
    pub async fn timer(&self, body: impl Into<reqwest::Body>) -> (u16, Value) {
        let response = self.server.post("/renew", body).await;
        let status = response.status().as_u16();
        (status, response.json().await.expect("the answer is JSON"))
    }

    /// Graph requests received so far, as `(method, path)`, token requests excluded.
    pub async fn calls(&self) -> Vec<(String, String)> {
        self.graph
            .received_requests()
            .await
            .unwrap_or_default()
            .iter()
            .map(|r| (r.method.as_str().to_string(), r.url.path().to_string()))
            .collect()
    }

    pub async fn requests(&self, method: &str, path_prefix: &str) -> Vec<Request> {
        self.graph
            .received_requests()
            .await
            .unwrap_or_default()
            .into_iter()
            .filter(|r| r.method.as_str() == method && r.url.path().starts_with(path_prefix))
            .collect()
    }

    /// Changing calls (anything but GET) received so far.
    pub async fn writes(&self) -> usize {
        self.calls()
            .await
            .iter()
            .filter(|(m, _)| m != "GET")
            .count()
    }

    /// Waits until `check` holds on the fake Graph's state (background reactions).
    pub async fn eventually(&self, what: &str, check: impl Fn(&FakeGraph) -> bool) {
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while !check(&self.fake) {
            assert!(
                std::time::Instant::now() < deadline,
                "timed out waiting: {what}"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

/// The base64 DER Graph must receive as `encryptionCertificate`.
pub fn certificate_base64(key: &DecryptionKey) -> String {
    key.certificate_base64().unwrap()
}
