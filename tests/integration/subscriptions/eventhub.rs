//! The renewer creating and renewing subscriptions delivered through Event Hubs (the fake Graph
//! speaks the subscriptions API; there is no handshake to wait for: Graph writes a reachability
//! message into the hub instead, which the `eventhub` function ignores).

use serde_json::{Value, json};
use teams_notifications::renewer::Action;

use super::fakes::*;

const HUB_URL: &str = "EventHub:https://contoso-ns.servicebus.windows.net/eventhubname/graph-notifications?tenantId=contoso.com";
const LEGACY_URL: &str =
    "EventHub:https://kv-graph.vault.azure.net/secrets/send-connection?tenantId=contoso.com";

fn desired() -> Value {
    json!([
        {"resource": "/chats/getAllMessages", "changeType": "created,updated", "includeResourceData": true, "delivery": "eventHub"},
        {"resource": "/teams", "changeType": "created,deleted", "notificationUrl": LEGACY_URL},
        {"resource": "/teams/getAllChannels", "changeType": "created"}
    ])
}

fn created_for(bodies: &[Value], resource: &str) -> Value {
    bodies
        .iter()
        .find(|b| b["resource"] == resource)
        .unwrap_or_else(|| panic!("no subscription created for {resource}"))
        .clone()
}

#[tokio::test]
async fn event_hubs_subscriptions_are_created_and_renewed() {
    let h = harness_with(desired(), &[("EVENTHUB_NOTIFICATION_URL", HUB_URL)]).await;
    let report = h.ctx.reconcile().await;
    assert_eq!(report.count(Action::Created), 3, "{:#?}", report.actions);
    let bodies: Vec<Value> = h
        .requests("POST", "/v1.0/subscriptions")
        .await
        .iter()
        .map(|r| r.body_json().unwrap())
        .collect();
    let chats = created_for(&bodies, "/chats/getAllMessages");
    assert_eq!(chats["notificationUrl"], HUB_URL);
    assert_eq!(
        chats["lifecycleNotificationUrl"], HUB_URL,
        "lifecycle through the same hub"
    );
    assert_eq!(chats["clientState"], CLIENT_STATE);
    assert_eq!(chats["encryptionCertificateId"], CERT_ID);
    let teams = created_for(&bodies, "/teams");
    assert_eq!(teams["notificationUrl"], LEGACY_URL);
    let channels = created_for(&bodies, "/teams/getAllChannels");
    assert_eq!(
        channels["notificationUrl"], NOTIFICATION_URL,
        "the webhook stays the default"
    );
    assert_eq!(channels["lifecycleNotificationUrl"], LIFECYCLE_URL);

    // Each is matched by its own URL: nothing changes on the next run.
    let second = h.ctx.reconcile().await;
    assert_eq!(second.count(Action::Unchanged), 3, "{:#?}", second.actions);
    assert_eq!(second.unmanaged, 0);

    // The Event Hubs subscription nearing its end is renewed in place.
    let id = h
        .fake
        .all()
        .into_iter()
        .find(|s| s["resource"] == "/chats/getAllMessages")
        .unwrap()["id"]
        .as_str()
        .unwrap()
        .to_string();
    let mut soon = h.fake.remove(&id).unwrap();
    soon["expirationDateTime"] = json!(rfc3339(
        time::OffsetDateTime::now_utc() + time::Duration::minutes(20)
    ));
    let id = h.fake.insert(soon);
    let third = h.ctx.reconcile().await;
    assert_eq!(third.count(Action::Renewed), 1, "{:#?}", third.actions);
    assert_eq!(third.count(Action::Created), 0);
    let patch = h
        .requests("PATCH", &format!("/v1.0/subscriptions/{id}"))
        .await;
    assert_eq!(patch.len(), 1);
}

#[tokio::test]
async fn event_hub_delivery_without_its_url_fails_that_entry_only() {
    let h = harness(desired()).await;
    let report = h.ctx.reconcile().await;
    assert_eq!(report.count(Action::Created), 2, "{:#?}", report.actions);
    assert_eq!(report.failures(), 1);
    let failed = report
        .actions
        .iter()
        .find(|a| a.action == Action::Failed)
        .unwrap();
    assert_eq!(failed.resource, "/chats/getAllMessages");
    assert!(
        failed
            .failure
            .as_ref()
            .unwrap()
            .message
            .contains("EVENTHUB_NOTIFICATION_URL"),
        "{failed:?}"
    );
}

#[tokio::test]
async fn a_malformed_event_hub_url_in_the_desired_file_is_refused() {
    let h = harness(json!([{"resource": "/teams", "changeType": "created", "notificationUrl": "EventHub:https://ns.servicebus.windows.net/h?tenantId=t"}])).await;
    let error = h.ctx.desired().unwrap_err().to_string();
    assert!(
        error.contains("subscription #0") && error.contains("/eventhubname/"),
        "{error}"
    );
}
