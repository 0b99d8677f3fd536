//! The renewer in a first deployment: a missing or broken desired file never takes the receiver
//! down, metered Teams APIs in evaluation mode are warned about, a payment-model change
//! recreates the subscription, and two apps sharing one archive never reconcile at once.

use std::time::Duration;

use serde_json::{Value, json};
use teams_notifications::config::Config;
use teams_notifications::renewer::Action;

use super::fakes::*;
use super::{chat_only, timer_body};

/// The receiver answers: a validation handshake and a basic notification.
async fn receiver_answers(app: &crate::support::TestApp) {
    let handshake = app
        .http
        .post(format!(
            "{}/api/notifications?validationToken=still%20up",
            app.url
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(handshake.status(), 200);
    assert_eq!(handshake.text().await.unwrap(), "still up");
    let basic = json!({"value": [{
        "subscriptionId": "sub-basic",
        "clientState": CLIENT_STATE,
        "changeType": "created",
        "resource": "chats('19:abc')/messages('1')",
        "subscriptionExpirationDateTime": "2026-03-01T00:00:00Z",
        "tenantId": TENANT,
    }]});
    let answer = app.post("/api/notifications", basic.to_string()).await;
    assert_eq!(answer.status(), 202);
}

fn logs(body: &Value) -> String {
    body["Logs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l.as_str().unwrap())
        .collect::<Vec<_>>()
        .join("\n")
}

#[tokio::test]
async fn without_a_desired_file_the_app_starts_and_each_timer_run_says_why() {
    let h = harness_with(
        chat_only(),
        &[("SUBSCRIPTIONS_FILE", "/nonexistent/subscriptions.json")],
    )
    .await;
    receiver_answers(&h.server).await;
    let (status, body) = h.timer(timer_body(false)).await;
    assert_eq!(status, 200, "retrying will not make the file appear");
    let logs = logs(&body);
    assert!(
        logs.contains("cannot read /nonexistent/subscriptions.json"),
        "{logs}"
    );
    assert!(
        h.calls().await.is_empty(),
        "Graph is not called without a desired state"
    );
    receiver_answers(&h.server).await;
}

#[tokio::test]
async fn an_invalid_desired_file_is_reported_and_the_receiver_keeps_answering() {
    let h = harness(chat_only()).await;
    std::fs::write(
        h.settings["SUBSCRIPTIONS_FILE"].as_str(),
        "[{\"resource\": ",
    )
    .unwrap();
    let (status, body) = h.timer(timer_body(false)).await;
    assert_eq!(status, 200);
    let logs = logs(&body);
    assert!(logs.contains("not a JSON list of subscriptions"), "{logs}");
    assert!(body["ReturnValue"]["error"].is_string());
    receiver_answers(&h.server).await;
    // Fixed file, next run: back to work.
    std::fs::write(
        h.settings["SUBSCRIPTIONS_FILE"].as_str(),
        chat_only().to_string(),
    )
    .unwrap();
    let (status, body) = h.timer(timer_body(false)).await;
    assert_eq!((status, &body["ReturnValue"]["created"]), (200, &json!(1)));
}

#[tokio::test]
async fn a_metered_resource_without_a_model_is_warned_about_in_the_timer_logs() {
    let h = harness(json!([
        {"resource": "/chats/getAllMessages", "changeType": "created", "includeResourceData": true},
        {"resource": "/teams/getAllMessages", "changeType": "created", "includeResourceData": true, "model": "B"},
    ]))
    .await;
    let (status, body) = h.timer(timer_body(false)).await;
    assert_eq!(status, 200);
    let logs = logs(&body);
    let warnings: Vec<&str> = logs.lines().filter(|l| l.contains("warning")).collect();
    assert_eq!(warnings.len(), 1, "{logs}");
    assert!(
        warnings[0].contains("/chats/getAllMessages") && warnings[0].contains("evaluation mode"),
        "{logs}"
    );
    // Both are created, the second with its model in the resource string.
    let mut resources: Vec<String> = h
        .fake
        .all()
        .iter()
        .map(|s| s["resource"].as_str().unwrap().to_string())
        .collect();
    resources.sort();
    assert_eq!(
        resources,
        ["/chats/getAllMessages", "/teams/getAllMessages?model=B"]
    );
}

#[tokio::test]
async fn a_payment_model_change_recreates_the_subscription() {
    let h = harness(json!([
        {"resource": "/chats/getAllMessages", "changeType": "created", "includeResourceData": true, "model": "A"},
    ]))
    .await;
    let old = h
        .fake
        .insert(existing("/chats/getAllMessages", "created", 3000));
    let report = h.ctx.reconcile().await;
    assert_eq!(report.actions.len(), 1, "{report:?}");
    let action = &report.actions[0];
    assert_eq!(action.action, Action::Recreated, "{report:?}");
    assert!(
        h.fake.get(&old).is_none(),
        "the evaluation-mode subscription is deleted"
    );
    let all = h.fake.all();
    assert_eq!(all.len(), 1);
    assert_eq!(all[0]["resource"], "/chats/getAllMessages?model=A");
    // The next run leaves it alone.
    let again = h.ctx.reconcile().await;
    assert_eq!(again.actions[0].action, Action::Unchanged, "{again:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_apps_on_one_blob_archive_never_reconcile_at_once() {
    let container = crate::azurite::unique_container("renewers");
    let connection = crate::azurite::connection_string(&crate::azurite::endpoint());
    let desired = json!([
        {"resource": "/chats/getAllMessages", "changeType": "created", "includeResourceData": true, "model": "B"},
        {"resource": "/teams/getAllChannels", "changeType": "created,deleted"},
        {"resource": "/chats", "changeType": "created,updated"},
    ]);
    let h = harness_with(
        desired,
        &[
            ("ARCHIVE_DIR", ""),
            ("ARCHIVE_CONNECTION", connection.as_str()),
            ("ARCHIVE_CONTAINER", container.as_str()),
        ],
    )
    .await;
    // A second instance: the same settings, built by the production builder on its own.
    let config = Config::from_lookup(|k| h.settings.get(k).cloned()).unwrap();
    let second = teams_notifications::startup::Builder::new(config)
        .with_http(TlsFront::client())
        .with_env(|_| None)
        .with_graph_retry(fast_retry())
        .build()
        .await
        .unwrap();
    let second = crate::support::spawn_with_state(
        second.state(),
        tempfile::tempdir().unwrap(),
        h.dir.path().join("unused"),
    )
    .await;

    // Every Graph answer takes a while: a reconcile's requests are sequential, so two
    // reconciles running at once would show requests arriving less than `delay` apart.
    let delay = Duration::from_millis(150);
    h.fake.set_delay(delay);
    let mut runs = Vec::new();
    for _ in 0..3 {
        runs.push(h.server.post("/renew", timer_body(false)));
        runs.push(second.post("/renew", timer_body(false)));
    }
    let answers = futures::future::join_all(runs).await;
    for answer in answers {
        assert_eq!(answer.status(), 200);
        let body: Value = answer.json().await.unwrap();
        assert!(body["ReturnValue"]["error"].is_null(), "{body}");
    }
    // Each subscription was created once, by one of the two apps (runs within one app may join
    // the reconcile already running there, so their reports are not summed).
    assert_eq!(h.fake.all().len(), 3);
    let arrivals = h.fake.arrivals();
    // At least one reconcile per app: list and three creates, then a list.
    assert!(arrivals.len() >= 5, "{} requests", arrivals.len());
    for pair in arrivals.windows(2) {
        let gap = pair[1].duration_since(pair[0]);
        assert!(
            gap >= delay - Duration::from_millis(2),
            "two Graph requests {gap:?} apart: two reconciles overlapped"
        );
    }
}
