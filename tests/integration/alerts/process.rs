//! The `handler` binary as a process: killed with SIGKILL between the archive write and the
//! send, restarted, and the alert still arrives (once the dead attempt's lease has passed);
//! bad route settings stop it at start-up with the setting named; the operator's commands.

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use teams_notifications::devtools::certificates as dev;
use teams_notifications::devtools::issuer::LocalIssuer;

use super::fake::{FakeRoute, Mode};
use super::{TIMER_PAYLOAD, URL_SECRET, WEBHOOK_SECRET, emergency_payload, notification};
use crate::support::CLIENT_STATE;

pub(super) fn handler() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_handler"));
    c.env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default());
    c
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

struct Handler {
    child: Child,
    url: String,
}

impl Drop for Handler {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

async fn start(envs: &[(String, String)]) -> Handler {
    let port = free_port();
    let child = handler()
        .envs(envs.iter().map(|(k, v)| (k, v)))
        .env("FUNCTIONS_CUSTOMHANDLER_PORT", port.to_string())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let url = format!("http://127.0.0.1:{port}");
    let deadline = Instant::now() + Duration::from_secs(20);
    while reqwest::get(&url).await.is_err() {
        assert!(
            Instant::now() < deadline,
            "the handler never answered GET /"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    Handler { child, url }
}

#[tokio::test]
async fn a_sigkill_between_the_archive_write_and_the_send_loses_no_alert() {
    let issuer = LocalIssuer::start().await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let key = dev::self_signed("k1", 30);
    let pem = dir.path().join("k1.pem");
    std::fs::write(&pem, dev::to_pem(&key).unwrap()).unwrap();
    // The route accepts the connection and never answers: the send is in flight when killed.
    let route = FakeRoute::start(Mode::Hang).await;
    let envs: Vec<(String, String)> = [
        (
            "ARCHIVE_DIR",
            dir.path().join("archive").display().to_string(),
        ),
        ("NOTIFICATION_CLIENT_STATE", CLIENT_STATE.into()),
        ("GRAPH_TENANT_ID", super::TENANT.into()),
        ("GRAPH_CLIENT_ID", super::APP_ID.into()),
        ("AUTHORITY_HOST", issuer.authority_host().into()),
        ("NOTIFICATION_CERTIFICATES", format!("k1={}", pem.display())),
        (
            "ALERT_TEAMS_WEBHOOK_URLS",
            route.url(&format!("/workflows/k?{URL_SECRET}")),
        ),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect();

    let mut first = start(&envs).await;
    let client = reqwest::Client::new();
    let body = notification(&issuer, &key, emergency_payload("call-kill", "callStarted"));
    let r = client
        .post(format!("{}/api/notifications", first.url))
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 202);
    assert_eq!(route.wait_for(1, Duration::from_secs(10)).await.len(), 1);
    first.child.kill().unwrap(); // SIGKILL
    first.child.wait().unwrap();

    route.set_mode(Mode::Answer(202));
    let second = start(&envs).await;
    let deadline = Instant::now() + Duration::from_secs(60);
    while route.seen().len() < 2 {
        assert!(Instant::now() < deadline, "the alert was never sent again");
        let r = client
            .post(format!("{}/alerts", second.url))
            .body(TIMER_PAYLOAD)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let sweep: serde_json::Value = client
        .post(format!("{}/alerts", second.url))
        .body(TIMER_PAYLOAD)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(route.seen().len(), 2, "{sweep}");
    assert_eq!(route.seen()[1].json(), route.seen()[0].json());
    drop(second);

    // The operator's view: delivered on the second attempt, nothing pending.
    let out = handler()
        .envs(envs.iter().map(|(k, v)| (k, v)))
        .args(["alerts", "--json"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let status: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let routes = status["routes"].as_object().unwrap();
    assert_eq!(routes.len(), 1);
    let (_, r) = routes.iter().next().unwrap();
    assert_eq!(r["delivered"], 1);
    assert_eq!(r["pending"], 0);
    assert_eq!(r["attempts"], 2);
    assert!(r["latencyMsP50"].as_u64().is_some());
    assert!(!String::from_utf8_lossy(&out.stdout).contains(URL_SECRET));
    let text = handler()
        .envs(envs.iter().map(|(k, v)| (k, v)))
        .arg("alerts")
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&text.stdout);
    assert!(
        text.contains("delivered 1") && text.contains("teams http://127.0.0.1:"),
        "{text}"
    );
}

#[test]
fn bad_route_settings_stop_the_start_with_the_setting_named_and_no_url_secret() {
    for (name, value, extra) in [
        (
            "ALERT_TEAMS_WEBHOOK_URLS",
            "http://hooks.example/x?sig=s3cr3t",
            None,
        ),
        (
            "ALERT_WEBHOOK_URLS",
            "ftp://desk.example/s3cr3t",
            Some(WEBHOOK_SECRET),
        ),
        ("ALERT_WEBHOOK_URLS", "https://desk.example/s3cr3t", None),
        ("ALERT_ON", "emergencyCallEvent.s3cr3t", None),
        ("ALERT_RETRY_HOURS", "-1", None),
    ] {
        let mut c = handler();
        c.env(name, value);
        if let Some(secret) = extra {
            c.env("ALERT_WEBHOOK_SECRET", secret);
        }
        let out = c.output().unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{name}={value} started");
        let named = if extra.is_none() && name == "ALERT_WEBHOOK_URLS" {
            "ALERT_WEBHOOK_SECRET"
        } else {
            name
        };
        assert!(stderr.contains(named), "{name}: {stderr}");
        if name.contains("URLS") {
            assert!(!stderr.contains("s3cr3t"), "{stderr}");
        }
    }
}

#[tokio::test]
async fn alert_test_sends_a_test_card_to_every_route_and_says_what_each_answered() {
    let teams = FakeRoute::start(Mode::Answer(202)).await;
    let hook = FakeRoute::start(Mode::Answer(503)).await;
    let out = tokio::task::spawn_blocking({
        let teams = teams.url(&format!("/w?{URL_SECRET}"));
        let hook = hook.url("/h");
        move || {
            handler()
                .env(
                    "ARCHIVE_DIR",
                    std::env::temp_dir().join("alert-test-unused"),
                )
                .env("ALERT_TEAMS_WEBHOOK_URLS", teams)
                .env("ALERT_WEBHOOK_URLS", hook)
                .env("ALERT_WEBHOOK_SECRET", WEBHOOK_SECRET)
                .arg("alert-test")
                .output()
                .unwrap()
        }
    })
    .await
    .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(!out.status.success(), "a failing route fails the test");
    assert!(
        stdout.contains("teams http://127.0.0.1:") && stdout.contains("answered 202"),
        "{stdout}"
    );
    assert!(
        stdout.contains("webhook http://127.0.0.1:") && stdout.contains("FAILED: answered 503"),
        "{stdout}"
    );
    assert!(!stdout.contains(URL_SECRET));
    let card = teams.seen()[0].json();
    assert!(
        card["attachments"][0]["content"]["body"][0]["text"]
            .as_str()
            .unwrap()
            .starts_with("TEST")
    );
    assert_eq!(hook.seen()[0].json()["kind"], "test");
}
