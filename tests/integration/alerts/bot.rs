//! The bot route (`ALERT_BOT_CONVERSATION`) end to end: rich `emergencyCallEvent` notifications
//! over HTTP into the app built by the production builder, out as proactive messages through
//! the bot's connector client to the FAKE Bot Connector on loopback (`bot/fake.rs`: the Bot
//! Connector's conversation API), with the bot's token from the FAKE Entra behind TLS (the
//! client-credentials grant of the bot's app). The same fake Entra publishes the OpenID
//! metadata whose keys (the local issuer's) sign the notifications' validationTokens.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use reqwest::StatusCode;
use serde_json::{Value, json};
use teams_notifications::alerts::outbox;
use teams_notifications::archive::{Kind, ObjectName};
use teams_notifications::devtools::certificates as dev;
use teams_notifications::devtools::issuer::{LocalIssuer, TokenSpec};
use teams_notifications::keys::DecryptionKey;
use wiremock::matchers::{method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

use super::{APP_ID, TENANT, TIMER_PAYLOAD, WAIT, emergency_payload, fact, signed_notification};
use crate::bot::fake::{
    BOT_ACCESS_TOKEN, BOT_APP_ID, BOT_SECRET, BOT_TENANT, Call, FIRST_ACTIVITY_ID, FakeConnector,
    mount_bot_token,
};
use crate::subscriptions::fakes::{TlsFront, fake_entra, pki};
use crate::support::{CapturedLogs, TestApp};

/// The security desk's channel.
const CONVERSATION: &str = "19:desk@thread.tacv2";
/// The conversation id as it appears in the Bot Connector's paths.
const CONVERSATION_PATH: &str = "19%3Adesk%40thread.tacv2";

/// The fake Entra behind TLS: the bot's token and the metadata of the validationTokens' keys.
struct Entra {
    mock: MockServer,
    front: TlsFront,
}

async fn entra(issuer: &LocalIssuer) -> Entra {
    let (mock, front) = fake_entra().await;
    mount_bot_token(&mock).await;
    Mock::given(method("GET"))
        .and(path("/common/.well-known/openid-configuration"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({
            "issuer": "https://sts.windows.net/{tenantid}/",
            "jwks_uri": format!("{}/common/discovery/keys", issuer.authority_host()),
            "id_token_signing_alg_values_supported": ["RS256"],
        })))
        .mount(&mock)
        .await;
    Entra { mock, front }
}

/// The app with the bot route to a Bot Connector on `connector_port` (running or not).
struct BotRig {
    app: TestApp,
    issuer: LocalIssuer,
    key: DecryptionKey,
    _entra: Entra,
    _certs: tempfile::TempDir,
}

/// The settings of the bot route to `127.0.0.1:port`, the bot's identity, and `AUTHORITY_HOST`.
fn bot_settings(port: u16, authority: &str) -> Vec<(String, String)> {
    let origin = format!("http://127.0.0.1:{port}");
    [
        ("AUTHORITY_HOST", authority.to_string()),
        ("BOT_APP_ID", BOT_APP_ID.to_string()),
        ("BOT_TENANT_ID", BOT_TENANT.to_string()),
        ("BOT_CLIENT_SECRET", BOT_SECRET.to_string()),
        (
            "BOT_OPENID_METADATA",
            format!("{origin}/v1/.well-known/openidconfiguration"),
        ),
        ("BOT_SERVICE_URL_HOSTS", origin.clone()),
        (
            "ALERT_BOT_CONVERSATION",
            format!("{origin}/teams/|{CONVERSATION}"),
        ),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect()
}

async fn bot_rig(connector_port: u16, extra: &[(&str, &str)]) -> BotRig {
    let issuer = LocalIssuer::start().await.unwrap();
    let entra = entra(&issuer).await;
    let certs = tempfile::tempdir().unwrap();
    let key = dev::self_signed("k1", 30);
    let pem = certs.path().join("k1.pem");
    std::fs::write(&pem, dev::to_pem(&key).unwrap()).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let archive_dir = dir.path().join("archive");
    let mut settings = crate::support::base_settings(&archive_dir);
    settings.extend(bot_settings(connector_port, &entra.front.url()));
    for (k, v) in [
        ("GRAPH_TENANT_ID", TENANT.to_string()),
        ("GRAPH_CLIENT_ID", APP_ID.to_string()),
        ("NOTIFICATION_CERTIFICATES", format!("k1={}", pem.display())),
    ] {
        settings.insert(k.into(), v);
    }
    for (k, v) in extra {
        settings.insert(k.to_string(), v.to_string());
    }
    let app = teams_notifications::startup::Builder::new(crate::support::config_from(&settings))
        .with_http(TlsFront::client())
        .with_env(|_| None)
        .build()
        .await
        .expect("the app starts with the bot route");
    assert!(app.alerts.is_some());
    let app = crate::support::spawn_with_state(app.state(), dir, archive_dir).await;
    BotRig {
        app,
        issuer,
        key,
        _entra: entra,
        _certs: certs,
    }
}

impl BotRig {
    fn body(&self, payload: Value) -> String {
        // A v1 token: its issuer (`https://sts.windows.net/{tid}/`) does not name the authority,
        // which here is the fake Entra that also gives the bot its token.
        let token = self.issuer.mint(&TokenSpec::v1(TENANT, APP_ID));
        signed_notification(&self.key, payload, token)
    }

    async fn notify(&self, body: &str) {
        let r = self.app.post("/api/notifications", body.to_string()).await;
        assert_eq!(r.status(), StatusCode::ACCEPTED);
    }

    async fn timer(&self) -> Value {
        let r = self.app.post("/alerts", TIMER_PAYLOAD).await;
        assert_eq!(r.status(), StatusCode::OK);
        r.json().await.unwrap()
    }

    /// Waits (bounded) until every alert is final on every route.
    async fn wait_all_done(&self) -> std::collections::BTreeMap<ObjectName, outbox::AlertNames> {
        let deadline = Instant::now() + WAIT;
        loop {
            let groups = outbox::group(&self.app.objects(Kind::Alerts).await);
            if groups.values().all(|g| g.done) || Instant::now() > deadline {
                return groups;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// The delivery record of `alert` on its one route.
    async fn delivered(&self, alert: &ObjectName, state: &outbox::AlertNames) -> Value {
        let route = state.routes.keys().next().unwrap();
        self.app
            .read(&outbox::sub_name(alert, Some(route), "delivered"))
            .await
    }
}

/// The activity calls (posts and replacements) the connector received.
fn activity_calls(connector: &FakeConnector) -> Vec<Call> {
    connector
        .calls()
        .into_iter()
        .filter(|c| c.target.contains("/v3/conversations/"))
        .collect()
}

async fn wait_calls(connector: &FakeConnector, n: usize) -> Vec<Call> {
    let deadline = Instant::now() + WAIT;
    loop {
        let calls = activity_calls(connector);
        if calls.len() >= n || Instant::now() > deadline {
            return calls;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn assert_card_of_the_call(activity: &Value) {
    assert_eq!(activity["type"], "message");
    assert_eq!(
        activity["attachments"][0]["contentType"],
        "application/vnd.microsoft.card.adaptive"
    );
    assert_eq!(activity["attachments"][0]["content"]["version"], "1.4");
    assert_eq!(
        fact(activity, "Caller"),
        "Emergency caller display name (emergencyCaller@contoso.com)"
    );
    assert_eq!(fact(activity, "Number dialled"), "911");
    assert_eq!(
        fact(activity, "Location"),
        "725 Microsoft Way, Redmond, WA 98052, United States"
    );
    assert_eq!(fact(activity, "Policy"), "EmergencyPolicy");
}

#[tokio::test]
async fn an_emergency_call_reaches_the_desk_as_one_proactive_bot_message_and_a_resend_as_none() {
    let logs = CapturedLogs::default();
    let _guard = logs.install();
    let connector = FakeConnector::start().await;
    let r = bot_rig(port_of(&connector), &[]).await;
    let body = r.body(emergency_payload("call-bot-1", "callStarted"));
    r.notify(&body).await;

    let calls = wait_calls(&connector, 1).await;
    assert_eq!(calls.len(), 1);
    let post = &calls[0];
    assert_eq!(post.method, "POST");
    assert_eq!(
        post.target,
        format!("/teams/v3/conversations/{CONVERSATION_PATH}/activities")
    );
    assert_eq!(
        post.authorization.as_deref(),
        Some(&*format!("Bearer {BOT_ACCESS_TOKEN}"))
    );
    let activity = post.body.clone().unwrap();
    assert_eq!(super::title(&activity), "Emergency call: 911");
    assert_eq!(fact(&activity, "Call state"), "callStarted");
    assert_card_of_the_call(&activity);
    assert!(activity.get("id").is_none(), "a new message names no id");

    // The delivery record keeps the message's activity id (what a follow-up replaces).
    let groups = r.wait_all_done().await;
    let (alert, state) = groups.iter().next().unwrap();
    assert!(state.done);
    let route = state.routes.keys().next().unwrap();
    assert!(route.starts_with("bot-"), "{route}");
    let delivered = r.delivered(alert, state).await;
    assert_eq!(delivered["activityId"], FIRST_ACTIVITY_ID.to_string());
    assert_eq!(delivered["status"], 200);

    // Graph resends the notification; the timer runs: the desk gets nothing more.
    r.notify(&body).await;
    let sweep = r.timer().await;
    assert_eq!(sweep["ReturnValue"]["delivered"], 0, "{sweep}");
    assert_eq!(activity_calls(&connector).len(), 1);
    let text = logs.text();
    assert!(!text.contains(BOT_ACCESS_TOKEN) && !text.contains(BOT_SECRET));
}

#[tokio::test]
async fn call_ended_replaces_the_alarm_card_and_a_deleted_alarm_gets_a_new_message() {
    let connector = FakeConnector::start().await;
    let r = bot_rig(
        port_of(&connector),
        &[(
            "ALERT_ON",
            "emergencyCallEvent.callStarted,emergencyCallEvent.callEnded",
        )],
    )
    .await;
    r.notify(&r.body(emergency_payload("call-bot-7", "callStarted")))
        .await;
    assert_eq!(wait_calls(&connector, 1).await.len(), 1);
    r.wait_all_done().await;

    // The callEnded of the same call carries no caller: the replacement keeps the alarm's.
    let mut ended = emergency_payload("call-bot-7", "callEnded");
    ended["emergencyCallEvent"]
        .as_object_mut()
        .unwrap()
        .remove("callerInfo");
    r.notify(&r.body(ended)).await;
    let calls = wait_calls(&connector, 2).await;
    assert_eq!(calls.len(), 2, "one follow-up");
    let update = &calls[1];
    assert_eq!(update.method, "PUT");
    assert_eq!(
        update.target,
        format!("/teams/v3/conversations/{CONVERSATION_PATH}/activities/{FIRST_ACTIVITY_ID}")
    );
    let activity = update.body.clone().unwrap();
    assert_eq!(activity["id"], FIRST_ACTIVITY_ID.to_string());
    assert_eq!(
        super::title(&activity),
        "Update: emergency call to 911 – callEnded"
    );
    assert_eq!(fact(&activity, "Call state"), "callEnded");
    assert_eq!(
        fact(&activity, "Alarm raised for the call at"),
        "2026-12-01T10:00:00.0000000+00:00"
    );
    assert_card_of_the_call(&activity);
    let groups = r.wait_all_done().await;
    assert_eq!(groups.len(), 2);
    r.timer().await;
    assert_eq!(activity_calls(&connector).len(), 2);

    // Someone deleted the next call's alarm message: its follow-up is posted as a new message.
    r.notify(&r.body(emergency_payload("call-bot-8", "callStarted")))
        .await;
    assert_eq!(wait_calls(&connector, 3).await.len(), 3);
    r.wait_all_done().await;
    connector.forget_activities();
    r.notify(&r.body(emergency_payload("call-bot-8", "callEnded")))
        .await;
    let calls = wait_calls(&connector, 5).await;
    assert_eq!(calls.len(), 5, "a refused replacement, then a new message");
    assert_eq!(calls[3].method, "PUT");
    assert_eq!(calls[4].method, "POST");
    let fresh = calls[4].body.clone().unwrap();
    assert!(fresh.get("id").is_none());
    assert_eq!(
        super::title(&fresh),
        "Update: emergency call to 911 – callEnded"
    );
}

#[tokio::test]
async fn a_connector_that_is_down_keeps_the_bot_alert_pending_until_the_timer_delivers_it() {
    let port = free_port();
    let r = bot_rig(port, &[]).await;
    r.notify(&r.body(emergency_payload("call-bot-down", "callStarted")))
        .await;

    // The first attempt fails (connection refused) and is recorded; the alert stays pending.
    let deadline = Instant::now() + WAIT;
    let (alert, route) = loop {
        let groups = outbox::group(&r.app.objects(Kind::Alerts).await);
        if let Some((name, s)) = groups.iter().next()
            && let Some((route, _)) = s.routes.iter().find(|(_, r)| r.last_result == 1)
        {
            break (name.clone(), route.clone());
        }
        assert!(
            Instant::now() < deadline,
            "the first attempt was not recorded"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let state = &outbox::group(&r.app.objects(Kind::Alerts).await)[&alert];
    assert!(!state.done && !state.routes[&route].delivered);
    let failed = r
        .app
        .read(&outbox::sub_name(&alert, Some(&route), "r1"))
        .await;
    assert_eq!(failed["ok"], false);
    let detail = failed["detail"].as_str().unwrap();
    assert!(detail.starts_with("transport:"), "{detail}");
    assert!(!detail.contains("127.0.0.1"), "{detail}");

    // The connector comes back on its address; the timer (after the backoff) delivers, once.
    let connector = FakeConnector::start_on(port).await;
    let deadline = Instant::now() + Duration::from_secs(40);
    while activity_calls(&connector).is_empty() {
        assert!(
            Instant::now() < deadline,
            "the timer never delivered the alert"
        );
        r.timer().await;
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    r.timer().await;
    let calls = activity_calls(&connector);
    assert_eq!(calls.len(), 1);
    assert_card_of_the_call(calls[0].body.as_ref().unwrap());
    let state = &outbox::group(&r.app.objects(Kind::Alerts).await)[&alert];
    assert!(state.done);
    assert!(state.routes[&route].delivered && state.routes[&route].last_attempt == 2);
}

#[tokio::test]
async fn bad_bot_route_settings_stop_the_start_with_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let archive = dir.path().join("archive").display().to_string();
    let bot = [
        ("BOT_APP_ID", BOT_APP_ID),
        ("BOT_TENANT_ID", BOT_TENANT),
        ("BOT_CLIENT_SECRET", BOT_SECRET),
    ];
    let conversation = |service_url: &str| format!("{service_url}|{CONVERSATION}");
    let cases: Vec<(Vec<(&str, String)>, &str)> = vec![
        // The bot is not configured.
        (
            vec![(
                "ALERT_BOT_CONVERSATION",
                conversation("https://smba.trafficmanager.net/emea/"),
            )],
            "BOT_APP_ID",
        ),
        // Not a Bot Connector host (the bot's token would go there); its query never shown.
        (
            vec![(
                "ALERT_BOT_CONVERSATION",
                conversation("https://desk.example/teams/?sig=s3cr3t"),
            )],
            "not a Bot Connector host",
        ),
        (
            vec![(
                "ALERT_BOT_CONVERSATION",
                conversation("https://smba.trafficmanager.net/emea/?sig=s3cr3t"),
            )],
            "not a Bot Connector host",
        ),
        // Plain http off loopback.
        (
            vec![(
                "ALERT_BOT_CONVERSATION",
                conversation("http://smba.trafficmanager.net/emea/"),
            )],
            "http is allowed on loopback only",
        ),
        // No conversation id.
        (
            vec![(
                "ALERT_BOT_CONVERSATION",
                "https://smba.trafficmanager.net/emea/| ".to_string(),
            )],
            "conversation id is empty",
        ),
        (
            vec![("ALERT_BOT_CONVERSATION", CONVERSATION.to_string())],
            "serviceUrl|conversationId",
        ),
    ];
    for (i, (settings, expected)) in cases.into_iter().enumerate() {
        let mut c = super::process::handler();
        c.env("ARCHIVE_DIR", &archive);
        if i > 0 {
            c.envs(bot);
        }
        c.envs(settings.iter().map(|(k, v)| (k, v)));
        let out = c.output().unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{settings:?} started");
        assert!(stderr.contains("ALERT_BOT_CONVERSATION"), "{stderr}");
        assert!(stderr.contains(expected), "{expected}: {stderr}");
        assert!(
            !stderr.contains("s3cr3t") && !stderr.contains(BOT_SECRET),
            "{stderr}"
        );
    }
}

/// `handler alert-test` and `handler alerts` as processes: the bot route is among the routes,
/// gets the test card as a proactive message and says what the connector answered.
#[tokio::test]
async fn alert_test_and_alerts_include_the_bot_route() {
    let connector = FakeConnector::start().await;
    let issuer = LocalIssuer::start().await.unwrap();
    let entra = entra(&issuer).await;
    let dir = tempfile::tempdir().unwrap();
    let ca = dir.path().join("ca.pem");
    std::fs::write(&ca, &pki().ca_pem).unwrap();
    let mut envs: HashMap<String, String> = bot_settings(port_of(&connector), &entra.front.url())
        .into_iter()
        .collect();
    envs.insert(
        "ARCHIVE_DIR".into(),
        dir.path().join("archive").display().to_string(),
    );
    envs.insert("SSL_CERT_FILE".into(), ca.display().to_string());
    let run = |args: &'static [&'static str]| {
        let envs = envs.clone();
        tokio::task::spawn_blocking(move || {
            super::process::handler()
                .envs(envs)
                .args(args)
                .output()
                .unwrap()
        })
    };
    let out = run(&["alert-test"]).await.unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let origin = format!("http://127.0.0.1:{}", port_of(&connector));
    assert!(
        stdout.contains(&format!("bot {origin} (bot-"))
            && stdout.contains(&format!(
                "answered 200: posted activity {FIRST_ACTIVITY_ID}"
            )),
        "{stdout}"
    );
    let calls = activity_calls(&connector);
    assert_eq!(calls.len(), 1);
    assert_eq!(
        calls[0].authorization.as_deref(),
        Some(&*format!("Bearer {BOT_ACCESS_TOKEN}"))
    );
    let card = calls[0].body.clone().unwrap();
    assert!(super::title(&card).starts_with("TEST"));
    assert!(!stdout.contains(BOT_ACCESS_TOKEN));
    assert!(
        entra
            .mock
            .received_requests()
            .await
            .unwrap()
            .iter()
            .any(|r| r.url.path() == format!("/{BOT_TENANT}/oauth2/v2.0/token")),
        "the bot's token came from its tenant's token endpoint"
    );

    let out = run(&["alerts", "--json"]).await.unwrap();
    assert!(out.status.success());
    let status: Value = serde_json::from_slice(&out.stdout).unwrap();
    let routes = status["routes"].as_object().unwrap();
    assert_eq!(routes.len(), 1);
    let (id, route) = routes.iter().next().unwrap();
    assert!(id.starts_with("bot-"));
    assert_eq!(route["label"], format!("bot {origin} ({id})"));
}

fn port_of(connector: &FakeConnector) -> u16 {
    connector.url.rsplit(':').next().unwrap().parse().unwrap()
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}
