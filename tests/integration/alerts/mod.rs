//! Emergency-call alerts end to end: rich `emergencyCallEvent` notifications (encrypted, with
//! validationTokens from a local issuer) over HTTP into the app, out to FAKE routes on loopback
//! that stand in for Teams Workflows webhooks and generic webhook receivers (see `fake.rs`).
//! The alert timer is driven as the Functions host does: `POST /alerts` with a timer payload.

mod bot;
mod fake;
mod process;

use std::time::{Duration, Instant};

use reqwest::StatusCode;
use serde_json::{Value, json};
use teams_notifications::alerts::outbox;
use teams_notifications::alerts::signing;
use teams_notifications::archive::{Archive, Kind, ObjectName};
use teams_notifications::devtools::certificates as dev;
use teams_notifications::devtools::eventhub_host::{self, HostEncoding};
use teams_notifications::devtools::issuer::{LocalIssuer, TokenSpec};
use teams_notifications::devtools::simulate::{self, Step, Target};
use teams_notifications::keys::DecryptionKey;

use crate::support::{CLIENT_STATE, CapturedLogs, TestApp, spawn_app};
use fake::{FakeRoute, Mode};

pub const TENANT: &str = "f69f5191-20ae-4093-8dae-3ec09edeb253";
pub const APP_ID: &str = "0a1b2c3d-4e5f-4a6b-8c7d-9e0f1a2b3c4d";
pub const WEBHOOK_SECRET: &str = "alert-webhook-secret-0123456789";
/// Part of every route URL's query: must never reach a log line.
pub const URL_SECRET: &str = "sig=WorkflowSignature";

/// The app with one local key, trusting a fresh local issuer, plus `extra` settings.
struct Rig {
    app: TestApp,
    issuer: LocalIssuer,
    key: DecryptionKey,
    _certs: tempfile::TempDir,
}

async fn rig(extra: &[(&str, &str)]) -> Rig {
    let issuer = LocalIssuer::start().await.unwrap();
    let certs = tempfile::tempdir().unwrap();
    let key = dev::self_signed("k1", 30);
    let pem = certs.path().join("k1.pem");
    std::fs::write(&pem, dev::to_pem(&key).unwrap()).unwrap();
    let list = format!("k1={}", pem.display());
    let authority = issuer.authority_host().to_string();
    let mut settings = vec![
        ("GRAPH_TENANT_ID", TENANT),
        ("GRAPH_CLIENT_ID", APP_ID),
        ("AUTHORITY_HOST", authority.as_str()),
        ("NOTIFICATION_CERTIFICATES", list.as_str()),
    ];
    settings.extend_from_slice(extra);
    Rig {
        app: spawn_app(&settings).await,
        issuer,
        key,
        _certs: certs,
    }
}

/// An `emergencyCallEvent` payload as Microsoft's document shows it, for call `call_id`.
pub fn emergency_payload(call_id: &str, state: &str) -> Value {
    json!({
        "@odata.id": "communications/calls/getEmergencyEventsByPolicy(policyName='EmergencyPolicy')",
        "@odata.type": "#microsoft.graph.emergencyCallEvent",
        "id": call_id,
        "emergencyCallEvent": {
            "id": call_id,
            "callEventType": state,
            "policyName": "EmergencyPolicy",
            "eventDateTime": "2026-12-01T10:00:00.0000000+00:00",
            "emergencyNumberDialed": "911",
            "callerInfo": {
                "displayName": "Emergency caller display name",
                "upn": "emergencyCaller@contoso.com",
                "phoneNumber": "00000000000",
                "tenantId": TENANT,
                "location": {
                    "address": {
                        "street": "Microsoft Way", "city": "Redmond", "state": "WA",
                        "countryOrRegion": "United States", "postalCode": "98052",
                        "additionalData": {"houseNumber": "725", "companyName": "Company name"}
                    },
                    "coordinates": {"latitude": "47.6396", "longitude": "-122.1283"}
                }
            }
        }
    })
}

/// A notification body carrying `payload`, encrypted for `key`, with a valid token.
pub fn notification(issuer: &LocalIssuer, key: &DecryptionKey, payload: Value) -> String {
    signed_notification(key, payload, issuer.mint(&TokenSpec::v2(TENANT, APP_ID)))
}

/// A notification body carrying `payload`, encrypted for `key`, with `token` as its
/// validationToken.
pub fn signed_notification(key: &DecryptionKey, payload: Value, token: String) -> String {
    simulate::collection(vec![emergency_item(key, payload)], &[token])
}

/// One rich `emergencyCallEvent` item carrying `payload`, encrypted for `key`.
fn emergency_item(key: &DecryptionKey, payload: Value) -> Value {
    let step = Step {
        resource: "communications/calls/getEmergencyEventsByPolicy(policyName='EmergencyPolicy')"
            .into(),
        odata_type: "#microsoft.graph.emergencyCallEvent",
        change_type: "updated",
        payload,
    };
    let target = Target {
        subscription_id: "sub-emergency".into(),
        client_state: CLIENT_STATE.into(),
        tenant_id: TENANT.into(),
    };
    simulate::rich_item(&step, &target, &key.certificate, &key.id).unwrap()
}

/// The host's timer invocation of the alert function.
pub const TIMER_PAYLOAD: &str = r#"{"Data":{"timer":{"Schedule":{"AdjustForDST":true},"ScheduleStatus":null,"IsPastDue":false}},"Metadata":{"sys":{"MethodName":"alerts"}}}"#;

impl Rig {
    async fn notify(&self, payload: Value) -> String {
        let body = notification(&self.issuer, &self.key, payload);
        let r = self.app.post("/api/notifications", body.clone()).await;
        assert_eq!(r.status(), StatusCode::ACCEPTED);
        body
    }

    async fn timer(&self) -> Value {
        let r = self.app.post("/alerts", TIMER_PAYLOAD).await;
        assert_eq!(r.status(), StatusCode::OK);
        r.json().await.unwrap()
    }

    async fn alert_names(&self) -> Vec<ObjectName> {
        self.app.objects(Kind::Alerts).await
    }

    /// Waits (bounded) until every alert is final on every route; the alerts by name.
    async fn wait_all_done(&self) -> std::collections::BTreeMap<ObjectName, outbox::AlertNames> {
        let deadline = Instant::now() + WAIT;
        loop {
            let groups = outbox::group(&self.alert_names().await);
            if groups.values().all(|g| g.done) || Instant::now() > deadline {
                return groups;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

pub fn title(card_message: &Value) -> String {
    card_message["attachments"][0]["content"]["body"][0]["text"]
        .as_str()
        .unwrap()
        .to_string()
}

fn facts(card_message: &Value) -> Vec<(String, String)> {
    card_message["attachments"][0]["content"]["body"][1]["facts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| {
            (
                f["title"].as_str().unwrap().into(),
                f["value"].as_str().unwrap().into(),
            )
        })
        .collect()
}

pub fn fact(card_message: &Value, name: &str) -> String {
    facts(card_message)
        .into_iter()
        .find(|(k, _)| k == name)
        .unwrap_or_else(|| panic!("no fact {name}"))
        .1
}

pub const WAIT: Duration = Duration::from_secs(10);

#[tokio::test]
async fn an_emergency_call_reaches_every_route_once_with_caller_number_location_and_policy() {
    let teams_a = FakeRoute::start(Mode::Answer(202)).await;
    let teams_b = FakeRoute::start(Mode::Answer(202)).await;
    let hook = FakeRoute::start(Mode::Answer(200)).await;
    let teams = format!(
        "{},{}",
        teams_a.url(&format!("/workflows/a/invoke?{URL_SECRET}")),
        teams_b.url(&format!("/workflows/b/invoke?{URL_SECRET}"))
    );
    let hook_url = hook.url("/desk/alerts");
    let r = rig(&[
        ("ALERT_TEAMS_WEBHOOK_URLS", teams.as_str()),
        ("ALERT_WEBHOOK_URLS", hook_url.as_str()),
        ("ALERT_WEBHOOK_SECRET", WEBHOOK_SECRET),
    ])
    .await;
    let body = r.notify(emergency_payload("call-1", "callStarted")).await;

    for route in [&teams_a, &teams_b] {
        let seen = route.wait_for(1, WAIT).await;
        assert_eq!(seen.len(), 1);
        assert!(seen[0].path_and_query.ends_with(URL_SECRET));
        let m = seen[0].json();
        assert_eq!(m["type"], "message");
        assert_eq!(
            m["attachments"][0]["contentType"],
            "application/vnd.microsoft.card.adaptive"
        );
        assert!(m["attachments"][0]["contentUrl"].is_null());
        assert_eq!(m["attachments"][0]["content"]["version"], "1.4");
        assert_eq!(title(&m), "Emergency call: 911");
        assert_eq!(
            fact(&m, "Caller"),
            "Emergency caller display name (emergencyCaller@contoso.com)"
        );
        assert_eq!(fact(&m, "Number dialled"), "911");
        assert_eq!(
            fact(&m, "Location"),
            "725 Microsoft Way, Redmond, WA 98052, United States"
        );
        assert_eq!(fact(&m, "Policy"), "EmergencyPolicy");
        assert_eq!(fact(&m, "Call state"), "callStarted");
        assert!(
            m["attachments"][0]["content"]["actions"][0]["url"]
                .as_str()
                .unwrap()
                .contains("47.639600~-122.128300")
        );
    }

    // The generic webhook: the typed event, where it is archived, and a verifiable signature.
    let seen = hook.wait_for(1, WAIT).await;
    assert_eq!(seen.len(), 1);
    let h = &seen[0];
    let m = h.json();
    assert_eq!(m["type"], "emergencyCallAlert");
    assert_eq!(m["kind"], "alarm");
    assert_eq!(m["event"]["emergencyNumberDialed"], "911");
    assert_eq!(
        m["event"]["callerInfo"]["displayName"],
        "Emergency caller display name"
    );
    assert_eq!(m["event"]["policyName"], "EmergencyPolicy");
    let event_name = m["archive"]["event"].as_str().unwrap();
    assert!(event_name.starts_with("events/"));
    let archived = r.app.read(&ObjectName::parse(event_name).unwrap()).await;
    assert_eq!(archived["eventKind"], "emergencyCallEvent");
    assert_eq!(h.headers["x-alert-id"], m["alertId"].as_str().unwrap());
    let now = time::OffsetDateTime::now_utc().unix_timestamp();
    let (ts, sig) = (
        &h.headers["x-alert-timestamp"],
        &h.headers["x-alert-signature"],
    );
    assert_eq!(
        signing::verify(WEBHOOK_SECRET.as_bytes(), ts, &h.body, sig, now, 300),
        Ok(())
    );
    let mut altered = h.body.to_vec();
    let at = altered.iter().position(|b| *b == b'9').unwrap();
    altered[at] = b'8';
    assert_eq!(
        signing::verify(WEBHOOK_SECRET.as_bytes(), ts, &altered, sig, now, 300),
        Err(signing::VerifyError::Mismatch)
    );
    // The documented shell recipe (docs/deploy.md) agrees.
    let expected = std::process::Command::new("sh")
        .arg("-c")
        .arg(r#"printf '%s.' "$TS" | cat - "$BODY" | openssl dgst -sha256 -hmac "$SECRET" -r | cut -d' ' -f1"#)
        .env("TS", ts)
        .env("SECRET", WEBHOOK_SECRET)
        .env("BODY", {
            let f = r.app.archive_dir.with_file_name("body.json");
            std::fs::write(&f, &h.body).unwrap();
            f
        })
        .output()
        .unwrap();
    assert_eq!(
        format!("v1={}", String::from_utf8_lossy(&expected.stdout).trim()),
        *sig
    );

    // Graph resends the same notification; the timer runs: nobody is alerted again.
    let again = r.app.post("/api/notifications", body).await;
    assert_eq!(again.status(), StatusCode::ACCEPTED);
    let sweep = r.timer().await;
    assert_eq!(sweep["ReturnValue"]["delivered"], 0, "{sweep}");
    for route in [&teams_a, &teams_b, &hook] {
        assert_eq!(route.seen().len(), 1);
    }
    // The routes' answers are recorded just after they arrive: wait (bounded) for the records.
    let groups = r.wait_all_done().await;
    assert_eq!(groups.len(), 1);
    let state = groups.values().next().unwrap();
    assert_eq!(state.routes.len(), 3);
    assert!(
        state.done
            && state
                .routes
                .values()
                .all(|r| r.delivered && r.last_attempt == 1)
    );
}

#[tokio::test]
async fn an_emergency_call_through_event_hubs_alerts_once_and_a_redelivery_does_not_again() {
    let teams = FakeRoute::start(Mode::Answer(202)).await;
    let url = teams.url(&format!("/workflows/a/invoke?{URL_SECRET}"));
    let r = rig(&[("ALERT_TEAMS_WEBHOOK_URLS", url.as_str())]).await;
    // Graph sends no validationTokens through a hub.
    let item = emergency_item(&r.key, emergency_payload("call-hub", "callStarted"));
    let body = simulate::collection(vec![item], &[]);
    let invocation = eventhub_host::invocation(&[body], HostEncoding::StringOfArray, None, "0", 7);

    let answer = r.app.post("/eventhub", invocation.clone()).await;
    assert_eq!(answer.status(), StatusCode::OK);
    let seen = teams.wait_for(1, WAIT).await;
    assert_eq!(seen.len(), 1);
    assert_eq!(title(&seen[0].json()), "Emergency call: 911");
    assert_eq!(fact(&seen[0].json(), "Call state"), "callStarted");

    // The host runs the batch again (a retry, or a restart before the checkpoint): no new alarm.
    let again = r.app.post("/eventhub", invocation).await;
    assert_eq!(again.status(), StatusCode::OK);
    let groups = r.wait_all_done().await;
    assert_eq!(groups.len(), 1, "one alert: {groups:?}");
    assert!(groups.values().all(|g| g.done));
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(teams.seen().len(), 1);
}

#[tokio::test]
async fn call_ended_of_the_same_call_sends_one_follow_up() {
    let teams = FakeRoute::start(Mode::Answer(202)).await;
    let hook = FakeRoute::start(Mode::Answer(204)).await;
    let teams_url = teams.url("/workflows/x");
    let hook_url = hook.url("/hook");
    let r = rig(&[
        ("ALERT_TEAMS_WEBHOOK_URLS", teams_url.as_str()),
        ("ALERT_WEBHOOK_URLS", hook_url.as_str()),
        ("ALERT_WEBHOOK_SECRET", WEBHOOK_SECRET),
        (
            "ALERT_ON",
            "emergencyCallEvent.callStarted,emergencyCallEvent.callEnded",
        ),
    ])
    .await;
    r.notify(emergency_payload("call-7", "callStarted")).await;
    assert_eq!(teams.wait_for(1, WAIT).await.len(), 1);
    let alarm = hook.wait_for(1, WAIT).await[0].json();
    // The alarm is final on both routes (a follow-up never overtakes its alarm on a route; one
    // that arrives while the alarm is still in flight goes at the next timer tick).
    r.wait_all_done().await;

    r.notify(emergency_payload("call-7", "callEnded")).await;
    let seen = teams.wait_for(2, WAIT).await;
    assert_eq!(seen.len(), 2);
    let update = seen[1].json();
    assert_eq!(title(&update), "Update: emergency call to 911 – callEnded");
    assert_eq!(fact(&update, "Call state"), "callEnded");
    assert_eq!(
        fact(&update, "Alarm raised for the call at"),
        "2026-12-01T10:00:00.0000000+00:00"
    );
    let follow = hook.wait_for(2, WAIT).await[1].json();
    assert_eq!(follow["kind"], "followUp");
    assert_eq!(follow["followsUp"], alarm["alertId"]);
    assert_eq!(follow["callId"], "call-7");

    // Another call's callEnded (its start was never seen) is an alarm of its own.
    r.notify(emergency_payload("call-8", "callEnded")).await;
    let seen = teams.wait_for(3, WAIT).await;
    assert_eq!(title(&seen[2].json()), "Emergency call: 911");
    r.timer().await;
    assert_eq!(teams.seen().len(), 3);
    assert_eq!(hook.wait_for(3, WAIT).await.len(), 3);
}

#[tokio::test]
async fn a_route_that_is_down_keeps_the_alert_pending_until_the_timer_delivers_it() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let url = format!("http://127.0.0.1:{port}/workflows/down?{URL_SECRET}");
    let logs = CapturedLogs::default();
    let _guard = logs.install();
    let r = rig(&[("ALERT_TEAMS_WEBHOOK_URLS", url.as_str())]).await;
    r.notify(emergency_payload("call-down", "callStarted"))
        .await;

    // The first attempt fails (connection refused) and is recorded; the alert stays pending.
    let deadline = Instant::now() + WAIT;
    let alert = loop {
        let groups = outbox::group(&r.alert_names().await);
        if let Some((name, s)) = groups.iter().next()
            && s.routes.values().any(|r| r.last_result == 1)
        {
            break name.clone();
        }
        assert!(
            Instant::now() < deadline,
            "the first attempt was not recorded"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let state = &outbox::group(&r.alert_names().await)[&alert];
    assert!(!state.done && state.routes.values().all(|r| !r.delivered));

    // The route comes back; the timer (after the backoff) delivers, exactly once.
    let route = FakeRoute::start_on(port, Mode::Answer(202)).await;
    let deadline = Instant::now() + Duration::from_secs(40);
    while route.seen().is_empty() {
        assert!(
            Instant::now() < deadline,
            "the timer never delivered the alert"
        );
        r.timer().await;
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    r.timer().await;
    let seen = route.seen();
    assert_eq!(seen.len(), 1);
    assert_eq!(title(&seen[0].json()), "Emergency call: 911");
    let state = &outbox::group(&r.alert_names().await)[&alert];
    assert!(state.done);
    let routes: Vec<_> = state.routes.values().collect();
    assert!(routes[0].delivered && routes[0].last_attempt == 2);
    // The failed attempt's record says why, without the URL (reqwest's errors carry it).
    let failed = r
        .app
        .read(&outbox::sub_name(&alert, Some(routes_id(state)), "r1"))
        .await;
    assert_eq!(failed["ok"], false);
    let detail = failed["detail"].as_str().unwrap();
    assert!(detail.starts_with("transport:"), "{detail}");
    assert!(
        !detail.contains("127.0.0.1") && !detail.contains(URL_SECRET),
        "{detail}"
    );
    // Logs are captured best-effort (tracing's per-thread capture): check only for absence.
    let text = logs.text();
    assert!(!text.contains(URL_SECRET) && !text.contains("/workflows/down"));
}

fn routes_id(state: &outbox::AlertNames) -> &str {
    state.routes.keys().next().unwrap()
}

#[tokio::test]
async fn an_alert_no_route_takes_in_time_expires_as_an_error_shown_by_the_report() {
    let route = FakeRoute::start(Mode::Answer(500)).await;
    let url = route.url("/workflows/broken");
    // 0.001 h = 3.6 s.
    let r = rig(&[
        ("ALERT_TEAMS_WEBHOOK_URLS", url.as_str()),
        ("ALERT_RETRY_HOURS", "0.001"),
    ])
    .await;
    r.notify(emergency_payload("call-x", "callStarted")).await;
    assert_eq!(route.wait_for(1, WAIT).await.len(), 1);
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let sweep = r.timer().await;
        if sweep["ReturnValue"]["expired"] == 1 {
            break;
        }
        assert!(Instant::now() < deadline, "never expired: {sweep}");
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let archive: std::sync::Arc<dyn Archive> = std::sync::Arc::new(r.app.archive().await);
    let report = teams_notifications::ops::report::build(&archive)
        .await
        .unwrap();
    assert_eq!(report.alerts_expired.len(), 1);
    assert!(report.render().contains("EXPIRED"));
    assert!(report.alerts_expired[0].contains("within ALERT_RETRY_HOURS"));
    let status = teams_notifications::alerts::status::build(&archive, &[])
        .await
        .unwrap();
    assert_eq!(status.expired.len(), 1);
    assert!(status.pending.is_empty());
    // Expired is final: the timer sends nothing more.
    let before = route.seen().len();
    r.timer().await;
    assert_eq!(route.seen().len(), before);
    // Anyone can reach POST /alerts: a body that is not a timer invocation is refused.
    let refused = r.app.post("/alerts", "{}").await;
    assert_eq!(refused.status(), StatusCode::BAD_REQUEST);
}

/// Outbound TLS is verified: an https route whose certificate the app's client does not trust
/// never gets the alert (the attempt fails with the TLS error); with the tests' CA trusted (what
/// `SSL_CERT_FILE` does in production) the same route gets it.
#[tokio::test]
async fn https_routes_are_verified_against_the_trusted_roots() {
    let ca = crate::keyvault::fake::TestCa::generate();
    let route = FakeRoute::start_tls(ca.acceptor(), Mode::Answer(202)).await;
    let url = route.https_url(&format!("/workflows/tls?{URL_SECRET}"));
    for (trusted, client) in [
        (
            false,
            reqwest::Client::builder().no_proxy().build().unwrap(),
        ),
        (true, ca.reqwest_client()),
    ] {
        let issuer = LocalIssuer::start().await.unwrap();
        let dir = tempfile::tempdir().unwrap();
        let key = dev::self_signed("k1", 30);
        let pem = dir.path().join("k1.pem");
        std::fs::write(&pem, dev::to_pem(&key).unwrap()).unwrap();
        let archive_dir = dir.path().join("archive");
        let mut settings = crate::support::base_settings(&archive_dir);
        for (k, v) in [
            ("GRAPH_TENANT_ID", TENANT.to_string()),
            ("GRAPH_CLIENT_ID", APP_ID.to_string()),
            ("AUTHORITY_HOST", issuer.authority_host().to_string()),
            ("NOTIFICATION_CERTIFICATES", format!("k1={}", pem.display())),
            ("ALERT_TEAMS_WEBHOOK_URLS", url.clone()),
        ] {
            settings.insert(k.into(), v);
        }
        let app =
            teams_notifications::startup::Builder::new(crate::support::config_from(&settings))
                .with_http(client)
                .build()
                .await
                .unwrap();
        let app = crate::support::spawn_with_state(app.state(), dir, archive_dir).await;
        let before = route.seen().len();
        let body = notification(
            &issuer,
            &key,
            emergency_payload(&format!("call-tls-{trusted}"), "callStarted"),
        );
        assert_eq!(
            app.post("/api/notifications", body).await.status(),
            StatusCode::ACCEPTED
        );
        let deadline = Instant::now() + WAIT;
        let state = loop {
            let groups = outbox::group(&app.objects(Kind::Alerts).await);
            if let Some((name, s)) = groups.into_iter().next()
                && s.routes.values().any(|r| r.last_result == 1)
            {
                break (name, s);
            }
            assert!(Instant::now() < deadline, "no attempt recorded");
            tokio::time::sleep(Duration::from_millis(50)).await;
        };
        let route_id = state.1.routes.keys().next().unwrap().clone();
        let result = app
            .read(&outbox::sub_name(&state.0, Some(&route_id), "r1"))
            .await;
        assert_eq!(result["ok"], trusted, "{result}");
        if trusted {
            assert_eq!(route.seen().len(), before + 1);
        } else {
            assert_eq!(
                route.seen().len(),
                before,
                "nothing reached an untrusted route"
            );
            let detail = result["detail"].as_str().unwrap().to_ascii_lowercase();
            assert!(detail.contains("certificate"), "{detail}");
        }
    }
}
