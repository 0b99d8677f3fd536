//! `cargo bench --bench alerts`: notification-to-webhook latency of emergency alerts, the figure
//! BENCHMARKS.md records. A plain binary (no harness).
//!
//! The app is built by the production builder (filesystem archive under `$TMPDIR`, local key,
//! validationTokens from a local issuer) and served over HTTP on loopback, with two alert routes:
//! a fake Teams Workflows webhook and a fake signed generic webhook, both answering at once on
//! loopback. 100 rich `emergencyCallEvent` notifications (each a new call) are posted one after
//! another; for each, the time from the POST to the arrival of its alert at each route is taken,
//! next to the time of Graph's 202. Under `cargo test` (no `--bench`) a 5-notification smoke run.

use std::collections::HashMap;
use std::convert::Infallible;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use serde_json::{Value, json};
use teams_notifications::config::Config;
use teams_notifications::devtools::certificates as dev;
use teams_notifications::devtools::issuer::{LocalIssuer, TokenSpec};
use teams_notifications::devtools::simulate::{self, Step, Target};

const CLIENT_STATE: &str = "bench-client-state";
const TENANT: &str = "f69f5191-20ae-4093-8dae-3ec09edeb253";
const APP_ID: &str = "7d1b6c4e-0000-4000-8000-00000000b3c4";

/// Arrival time of each alert at a fake route, by call id.
type Arrivals = Arc<Mutex<HashMap<String, Instant>>>;

/// A loopback route answering 202 at once, noting when each call's alert arrived.
async fn fake_route(call_id_of: fn(&Value) -> Option<String>) -> (String, Arrivals) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/hook", listener.local_addr().unwrap());
    let arrivals: Arrivals = Arc::default();
    let seen = arrivals.clone();
    tokio::spawn(async move {
        loop {
            let Ok((tcp, _)) = listener.accept().await else {
                return;
            };
            let seen = seen.clone();
            tokio::spawn(async move {
                let service = hyper::service::service_fn(move |req: Request<Incoming>| {
                    let seen = seen.clone();
                    async move {
                        let body = req.into_body().collect().await.unwrap().to_bytes();
                        let at = Instant::now();
                        if let Some(id) = serde_json::from_slice(&body)
                            .ok()
                            .as_ref()
                            .and_then(call_id_of)
                        {
                            seen.lock().unwrap().insert(id, at);
                        }
                        Ok::<_, Infallible>(
                            Response::builder()
                                .status(202)
                                .body(Full::new(Bytes::new()))
                                .unwrap(),
                        )
                    }
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(tcp), service)
                    .await;
            });
        }
    });
    (url, arrivals)
}

fn card_call_id(v: &Value) -> Option<String> {
    // The test payloads put the call id in the caller's phone number (the card shows it).
    let facts = v["attachments"][0]["content"]["body"][1]["facts"].as_array()?;
    facts
        .iter()
        .find(|f| f["title"] == "Phone")
        .and_then(|f| f["value"].as_str())
        .map(str::to_string)
}

fn webhook_call_id(v: &Value) -> Option<String> {
    v["callId"].as_str().map(str::to_string)
}

fn payload(call_id: &str) -> Value {
    json!({
        "@odata.type": "#microsoft.graph.emergencyCallEvent",
        "id": call_id,
        "emergencyCallEvent": {
            "id": call_id, "callEventType": "callStarted", "policyName": "EmergencyPolicy",
            "eventDateTime": "2026-12-01T10:00:00Z", "emergencyNumberDialed": "911",
            "callerInfo": {"displayName": "Bench caller", "upn": "bench@contoso.com",
                "phoneNumber": call_id,
                "location": {"address": {"street": "Microsoft Way", "city": "Redmond", "state": "WA"},
                             "coordinates": {"latitude": "47.6396", "longitude": "-122.1283"}}}
        }
    })
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let rank = ((p / 100.0) * sorted.len() as f64).ceil().max(1.0) as usize;
    sorted[rank.min(sorted.len()) - 1]
}

fn line(label: &str, mut v: Vec<Duration>) -> String {
    v.sort();
    format!(
        "{label:<34} p50 {:>8.2?}  p99 {:>8.2?}  max {:>8.2?}  (n = {})",
        percentile(&v, 50.0),
        percentile(&v, 99.0),
        v[v.len() - 1],
        v.len()
    )
}

fn main() {
    let full = std::env::args().any(|a| a == "--bench");
    let n = if full { 100 } else { 5 };
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(run(n));
}

async fn run(n: usize) {
    let issuer = LocalIssuer::start().await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let key = dev::self_signed("bench", 30);
    let pem = dir.path().join("bench.pem");
    std::fs::write(&pem, dev::to_pem(&key).unwrap()).unwrap();
    let (teams_url, teams) = fake_route(card_call_id).await;
    let (hook_url, hook) = fake_route(webhook_call_id).await;
    let settings: HashMap<&str, String> = [
        (
            "ARCHIVE_DIR",
            dir.path().join("archive").display().to_string(),
        ),
        ("NOTIFICATION_CLIENT_STATE", CLIENT_STATE.into()),
        ("GRAPH_TENANT_ID", TENANT.into()),
        ("GRAPH_CLIENT_ID", APP_ID.into()),
        ("AUTHORITY_HOST", issuer.authority_host().into()),
        (
            "NOTIFICATION_CERTIFICATES",
            format!("bench={}", pem.display()),
        ),
        ("ALERT_TEAMS_WEBHOOK_URLS", teams_url),
        ("ALERT_WEBHOOK_URLS", hook_url),
        (
            "ALERT_WEBHOOK_SECRET",
            "bench-webhook-secret-0123456789".into(),
        ),
    ]
    .into_iter()
    .collect();
    let config = Config::from_lookup(|k| settings.get(k).cloned()).unwrap();
    let app = teams_notifications::startup::build(&config).await.unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!(
        "http://{}/api/notifications",
        listener.local_addr().unwrap()
    );
    tokio::spawn(teams_notifications::functions::routes::run(
        listener,
        app.state(),
        std::future::pending(),
    ));
    let client = reqwest::Client::new();
    let target = Target {
        subscription_id: "sub-bench".into(),
        client_state: CLIENT_STATE.into(),
        tenant_id: TENANT.into(),
    };
    let token = issuer.mint(&TokenSpec::v2(TENANT, APP_ID));
    // One warm-up notification (JWKS fetch, connections), not counted.
    let mut answered = Vec::new();
    let mut sent = Vec::new();
    for i in 0..=n {
        let call_id = format!("bench-call-{i:04}");
        let step = Step {
            resource:
                "communications/calls/getEmergencyEventsByPolicy(policyName='EmergencyPolicy')"
                    .into(),
            odata_type: "#microsoft.graph.emergencyCallEvent",
            change_type: "updated",
            payload: payload(&call_id),
        };
        let item = simulate::rich_item(&step, &target, &key.certificate, &key.id).unwrap();
        let body = simulate::collection(vec![item], std::slice::from_ref(&token));
        let started = Instant::now();
        let r = client.post(&url).body(body).send().await.unwrap();
        assert_eq!(r.status(), 202);
        let answer = started.elapsed();
        // Wait for both routes (bounded) before the next notification: one alert at a time.
        let deadline = Instant::now() + Duration::from_secs(10);
        while !(teams.lock().unwrap().contains_key(&call_id)
            && hook.lock().unwrap().contains_key(&call_id))
        {
            assert!(Instant::now() < deadline, "alert {call_id} never arrived");
            tokio::time::sleep(Duration::from_micros(200)).await;
        }
        if i > 0 {
            answered.push(answer);
            sent.push((call_id, started));
        }
    }
    let latency = |arrivals: &Arrivals| -> Vec<Duration> {
        let arrivals = arrivals.lock().unwrap();
        sent.iter().map(|(id, t)| arrivals[id] - *t).collect()
    };
    println!("alerts: {n} emergency notifications over HTTP on loopback, one after another");
    println!("{}", line("Graph's 202", answered.clone()));
    println!(
        "{}",
        line("notification -> Teams Workflows", latency(&teams))
    );
    println!("{}", line("notification -> signed webhook", latency(&hook)));
    answered.sort();
    let mut teams_sorted = latency(&teams);
    teams_sorted.sort();
    println!(
        "ratio notification->Teams / 202 at p50: {:.2}",
        percentile(&teams_sorted, 50.0).as_secs_f64() / percentile(&answered, 50.0).as_secs_f64()
    );
}
