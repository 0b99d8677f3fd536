//! Start-up cases with the REAL managed-identity credential (process environment, see the
//! binary's header), through the production builder:
//! - option A of the deployment guide: `GRAPH_CLIENT_SECRET` set, and the managed identity for
//!   Azure resources; the fakes see which token reached Key Vault, Blob and Graph;
//! - no certificate in the vault yet: the app starts and answers, rich items are quarantined,
//!   and once the certificate appears they are replayed into events.

use std::collections::HashMap;
use std::convert::Infallible;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt as _, Full};
use hyper::body::Incoming;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use serde_json::json;
use teams_notifications::archive::Kind;
use teams_notifications::config::Config;
use teams_notifications::devtools::issuer::{LocalIssuer, TokenSpec};
use teams_notifications::devtools::simulate::{self, Step, Target};
use teams_notifications::keys::Backoff;
use teams_notifications::startup::Builder;

use super::fake::{FakeVault, FakeVersion, TestCa, TestCertificate, reply};
use super::{Identity, NAME};

const TENANT: &str = "5d1f0a2b-3c4d-4e5f-8a9b-0c1d2e3f4a5b";
const APP_ID: &str = "9e8d7c6b-5a4f-4e3d-9c2b-1a0f9e8d7c6b";
const UAMI: &str = "7a6b5c4d-3e2f-4a1b-8c9d-0e1f2a3b4c5d";
const GRAPH_TOKEN: &str = "graph-client-secret-token";
const CLIENT_STATE: &str = "startup-client-state";

/// One request a fake saw.
#[derive(Debug, Clone)]
struct Seen {
    method: String,
    path: String,
    authorization: Option<String>,
    /// `x-ms-lease-action` (Blob leases).
    lease_action: Option<String>,
    body: String,
}

type Answer = Arc<dyn Fn(&Seen) -> Response<Full<Bytes>> + Send + Sync>;

/// An https fake on loopback (certificate from `ca`) that records every request.
async fn serve(ca: &TestCa, answer: Answer) -> (String, Arc<Mutex<Vec<Seen>>>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!(
        "https://127.0.0.1:{}",
        listener.local_addr().unwrap().port()
    );
    let seen = Arc::new(Mutex::new(Vec::new()));
    let recorded = seen.clone();
    let acceptor = ca.acceptor();
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let (acceptor, recorded, answer) = (acceptor.clone(), recorded.clone(), answer.clone());
            tokio::spawn(async move {
                let Ok(tls) = acceptor.accept(tcp).await else {
                    return;
                };
                let service = hyper::service::service_fn(move |req: Request<Incoming>| {
                    let (recorded, answer) = (recorded.clone(), answer.clone());
                    async move {
                        let (parts, body) = req.into_parts();
                        let body = body
                            .collect()
                            .await
                            .map(|b| b.to_bytes())
                            .unwrap_or_default();
                        let seen = Seen {
                            method: parts.method.to_string(),
                            path: parts.uri.to_string(),
                            authorization: parts
                                .headers
                                .get("authorization")
                                .and_then(|v| v.to_str().ok())
                                .map(str::to_string),
                            lease_action: parts
                                .headers
                                .get("x-ms-lease-action")
                                .and_then(|v| v.to_str().ok())
                                .map(str::to_string),
                            body: String::from_utf8_lossy(&body).into_owned(),
                        };
                        let response = answer(&seen);
                        recorded.lock().unwrap().push(seen);
                        Ok::<_, Infallible>(response)
                    }
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(tls), service)
                    .await;
            });
        }
    });
    (url, seen)
}

fn settings(pairs: &[(&str, String)]) -> Config {
    let map: HashMap<String, String> = pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.clone()))
        .collect();
    Config::from_lookup(|k| map.get(k).cloned()).unwrap()
}

pub async fn client_secret_for_graph_managed_identity_for_key_vault_and_blob(identity: &Identity) {
    let ca = TestCa::generate();
    let vault = FakeVault::start(&ca, &identity.token).await;
    vault.add_version(
        NAME,
        FakeVersion::pem("v1", &TestCertificate::valid("current")),
    );
    // Entra's token endpoint: the client-credentials grant of the app registration.
    let (entra, entra_seen) = serve(
        &ca,
        Arc::new(|_| {
            reply(
                StatusCode::OK,
                json!({"token_type": "Bearer", "expires_in": 3599, "ext_expires_in": 3599, "access_token": GRAPH_TOKEN}),
            )
        }),
    )
    .await;
    // Blob: "Create Container" and "Lease Blob" (the renewer's lease) succeed.
    let (blob, blob_seen) = serve(
        &ca,
        Arc::new(|seen| {
            let status = match seen.lease_action.as_deref() {
                Some("acquire") | None => 201,
                Some(_) => 200,
            };
            Response::builder()
                .status(status)
                .header("x-ms-lease-id", "3f2a1b0c-0000-4000-8000-000000000001")
                .header("etag", "\"0x1\"")
                .header("last-modified", "Tue, 01 Dec 2026 00:00:00 GMT")
                .header("x-ms-version", "2026-04-06")
                .body(Full::new(Bytes::new()))
                .unwrap()
        }),
    )
    .await;
    // Graph: an empty list of subscriptions.
    let (graph, graph_seen) = serve(
        &ca,
        Arc::new(|_| reply(StatusCode::OK, json!({"value": []}))),
    )
    .await;
    let dir = tempfile::tempdir().unwrap();
    let desired = dir.path().join("subscriptions.json");
    std::fs::write(&desired, "[]").unwrap();
    let config = settings(&[
        ("GRAPH_TENANT_ID", TENANT.into()),
        ("GRAPH_CLIENT_ID", APP_ID.into()),
        ("GRAPH_CLIENT_SECRET", "app-registration-secret".into()),
        ("AUTHORITY_HOST", entra.clone()),
        ("GRAPH_ENDPOINT", graph.clone()),
        ("KEY_VAULT_URL", vault.url.clone()),
        ("NOTIFICATION_CERTIFICATE_NAME", NAME.into()),
        ("ARCHIVE_ACCOUNT_URL", blob.clone()),
        ("ARCHIVE_CONTAINER", "notifications".into()),
        ("SUBSCRIPTIONS_FILE", desired.display().to_string()),
        (
            "NOTIFICATION_URL",
            "https://contoso.example/api/notifications".into(),
        ),
        ("NOTIFICATION_CLIENT_STATE", CLIENT_STATE.into()),
    ]);
    let app = Builder::new(config)
        .with_http(ca.reqwest_client())
        .with_env(|k| (k == "AZURE_CLIENT_ID").then(|| UAMI.to_string()))
        .with_key_vault_challenge_check(false)
        .build()
        .await
        .expect("option A starts: the managed identity holds the Key Vault and Storage roles");
    assert_eq!(app.keys.keys().len(), 1);
    let report = app.renewer.clone().unwrap().reconcile().await;
    assert!(report.error.is_none(), "{report:?}");

    let mi = format!("Bearer {}", identity.token);
    let secret = format!("Bearer {GRAPH_TOKEN}");
    let vault_tokens: Vec<_> = vault
        .seen()
        .into_iter()
        .filter_map(|s| s.authorization)
        .collect();
    assert!(
        !vault_tokens.is_empty() && vault_tokens.iter().all(|t| *t == mi),
        "{vault_tokens:?}"
    );
    let blob_seen = blob_seen.lock().unwrap().clone();
    assert!(
        blob_seen
            .iter()
            .any(|s| s.method == "PUT" && s.path.contains("restype=container")),
        "{blob_seen:?}"
    );
    assert!(
        blob_seen
            .iter()
            .all(|s| s.authorization.as_deref() == Some(mi.as_str())),
        "{blob_seen:?}"
    );
    let graph_seen = graph_seen.lock().unwrap().clone();
    assert!(!graph_seen.is_empty());
    assert!(
        graph_seen
            .iter()
            .all(|s| s.authorization.as_deref() == Some(secret.as_str())),
        "{graph_seen:?}"
    );
    // Entra was asked for Graph only; the identity endpoint for the vault and storage only,
    // as the user-assigned identity.
    let entra_seen = entra_seen.lock().unwrap().clone();
    assert!(
        entra_seen
            .iter()
            .any(|s| s.method == "POST" && s.body.contains("client_secret="))
    );
    assert!(
        entra_seen
            .iter()
            .filter(|s| s.method == "POST")
            .all(|s| s.body.contains(&format!(
                "scope={}%2F.default",
                graph.replace(':', "%3A").replace('/', "%2F")
            ))),
        "{entra_seen:?}"
    );
    let asked = identity.requests.lock().unwrap().clone();
    let resources: Vec<&str> = asked
        .iter()
        .filter_map(|r| r.query.get("resource").map(String::as_str))
        .collect();
    assert!(
        resources.contains(&"https://vault.azure.net"),
        "{resources:?}"
    );
    assert!(
        resources.contains(&"https://storage.azure.com"),
        "{resources:?}"
    );
    assert!(
        !resources.iter().any(|r| r.contains("graph")),
        "{resources:?}"
    );
    assert!(
        asked
            .iter()
            .all(|r| r.query.get("client_id").map(String::as_str) == Some(UAMI)),
        "{asked:?}"
    );
}

pub async fn no_certificate_yet_then_one_appears(identity: &Identity) {
    let ca = TestCa::generate();
    let vault = FakeVault::start(&ca, &identity.token).await;
    let issuer = LocalIssuer::start().await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let archive_dir = dir.path().join("archive");
    let config = settings(&[
        ("GRAPH_TENANT_ID", TENANT.into()),
        ("GRAPH_CLIENT_ID", APP_ID.into()),
        ("AUTHORITY_HOST", issuer.authority_host().to_string()),
        ("KEY_VAULT_URL", vault.url.clone()),
        ("NOTIFICATION_CERTIFICATE_NAME", NAME.into()),
        ("NOTIFICATION_CLIENT_STATE", CLIENT_STATE.into()),
        ("ARCHIVE_DIR", archive_dir.display().to_string()),
    ]);
    let app = Builder::new(config)
        .with_http(ca.reqwest_client())
        .with_key_vault_challenge_check(false)
        .with_certificate_retry(Backoff {
            first: Duration::from_millis(100),
            max: Duration::from_millis(400),
        })
        .build()
        .await
        .expect("the handler starts before the certificate exists");
    assert!(app.keys.is_empty());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(teams_notifications::functions::routes::run(
        listener,
        app.state(),
        async move {
            let _ = stopped.await;
        },
    ));
    let http = reqwest::Client::new();

    // Handshakes and basic notifications work without a key.
    let handshake = http
        .post(format!("{url}/api/notifications?validationToken=hello"))
        .send()
        .await
        .unwrap();
    assert_eq!(
        (handshake.status().as_u16(), handshake.text().await.unwrap()),
        (200, "hello".into())
    );

    // A rich item for the certificate the operator is about to create: quarantined.
    let cert = TestCertificate::valid("late");
    let step = Step {
        resource: "communications/onlineMeetings/m1/meetingCallEvents".into(),
        odata_type: "#microsoft.graph.callevent",
        change_type: "updated",
        payload: json!({"id": "call-1", "eventType": "callStarted"}),
    };
    let target = Target {
        subscription_id: "sub-late".into(),
        client_state: CLIENT_STATE.into(),
        tenant_id: TENANT.into(),
    };
    let item = simulate::rich_item(&step, &target, &cert.cert, &format!("{NAME}.v1")).unwrap();
    let token = issuer.mint(&TokenSpec::v2(TENANT, APP_ID));
    let answer = http
        .post(format!("{url}/api/notifications"))
        .header("content-type", "application/json")
        .body(simulate::collection(vec![item], &[token]))
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status().as_u16(), 202);
    assert_eq!(app.archive.list(Kind::Quarantine).await.unwrap().len(), 1);
    assert!(app.archive.list(Kind::Events).await.unwrap().is_empty());

    // The operator creates the certificate; the background retry finds it and replays.
    vault.add_version(NAME, FakeVersion::pem("v1", &cert));
    let replayed = async {
        while app.archive.list(Kind::Events).await.unwrap().is_empty() {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    };
    tokio::time::timeout(Duration::from_secs(20), replayed)
        .await
        .expect("the quarantined item was never replayed after the certificate appeared");
    assert_eq!(app.keys.keys().len(), 1);
    let events = app.archive.list(Kind::Events).await.unwrap();
    let event: serde_json::Value =
        serde_json::from_slice(&app.archive.get(&events[0]).await.unwrap().unwrap()).unwrap();
    assert_eq!(event["payload"]["eventType"], "callStarted");
    let _ = stop.send(());
    let _ = server.await;
}
