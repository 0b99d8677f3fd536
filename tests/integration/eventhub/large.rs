//! Rich notifications over Event Hubs' 1 MB limit: Graph sends `additionalPayloadStorageId` and
//! leaves `resource`, `resourceData` and `encryptedContent` in a blob. The blob store is the real
//! Azurite, read through the production client with a SAS URL.

use bytes::Bytes;
use reqwest::StatusCode;
use secrecy::ExposeSecret;
use serde_json::{Value, json};
use teams_notifications::archive::fs::FsArchive;
use teams_notifications::archive::sas::{AccountKey, AccountSas};
use teams_notifications::archive::{Archive, Kind};
use teams_notifications::devtools::certificates as dev;
use teams_notifications::devtools::simulate;

use super::{CLIENT_STATE, TENANT, certificate_list, chat_step, post_json, rig, target};
use crate::azurite::{self, ACCOUNT, ACCOUNT_KEY};
use crate::support::spawn_app;

/// A container holding one payload blob, and a read-only SAS URL of the container.
async fn payload_container(id: &str, payload: &Value) -> String {
    let endpoint = azurite::endpoint();
    let container = azurite::unique_container("eventhub-payloads");
    let admin = azurite::admin_container(&endpoint, &container);
    admin.create(None).await.unwrap();
    let body = Bytes::from(serde_json::to_vec(payload).unwrap());
    admin
        .blob_client(id)
        .upload(body.into(), None)
        .await
        .unwrap();
    let key = AccountKey::from_base64(ACCOUNT, ACCOUNT_KEY).unwrap();
    let sas = AccountSas {
        permissions: "r".into(),
        ..AccountSas::for_archive(
            time::OffsetDateTime::now_utc() + time::Duration::hours(1),
            false,
        )
    };
    format!("{endpoint}/{container}?{}", key.sign(&sas).expose_secret())
}

/// The item Graph puts into the hub, and the properties it leaves in the blob.
fn large_item(rich: &Value, id: &str) -> (Value, Value) {
    let mut item = rich.clone();
    let obj = item.as_object_mut().unwrap();
    let payload = json!({
        "resource": obj.remove("resource"),
        "resourceData": obj.remove("resourceData"),
        "encryptedContent": obj.remove("encryptedContent"),
    });
    obj.insert("additionalPayloadStorageId".into(), json!(id));
    (item, payload)
}

fn body(item: Value) -> String {
    simulate::collection(vec![item], &[])
}

#[tokio::test]
async fn a_large_payload_is_fetched_from_blob_storage() {
    let key = dev::self_signed("k1", 30);
    let rich = simulate::rich_item(
        &chat_step(1),
        &target(CLIENT_STATE),
        &key.certificate,
        &key.id,
    )
    .unwrap();
    let (item, payload) = large_item(&rich, "2026/12/01/payload-1");
    let url = payload_container("2026/12/01/payload-1", &payload).await;
    let r = rig(
        vec![key],
        &[("EVENTHUB_PAYLOAD_CONTAINER_URL", url.as_str())],
    )
    .await;
    let (status, answer) = r.invoke(&[body(item)], None).await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    assert_eq!(answer["ReturnValue"]["events"], 1, "{answer}");
    let events = r.records(Kind::Events).await;
    assert_eq!(events[0]["payload"]["body"]["content"], "message 1");
    assert_eq!(events[0]["tenantId"], TENANT);
    assert_eq!(
        events[0]["resource"],
        "chats('19:c@thread.v2')/messages('1')"
    );
    // A storage id that names no blob is quarantined with its reason, to be replayed.
    let missing = large_item(&rich, "no-such-blob").0;
    let (_, answer) = r.invoke(&[body(missing)], None).await;
    assert_eq!(answer["ReturnValue"]["quarantined"], 1, "{answer}");
    let q = r.records(Kind::Quarantine).await;
    assert_eq!(q[0]["reasonCode"], "additionalPayloadNotFound");
}

#[tokio::test]
async fn without_the_container_a_large_payload_is_quarantined_then_replayed() {
    let r = rig(vec![dev::self_signed("k1", 30)], &[]).await;
    let (item, payload) = large_item(&r.rich_item(2), "payload-2");
    let (status, answer) = r.invoke(&[body(item.clone())], None).await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    assert_eq!(answer["ReturnValue"]["quarantined"], 1, "{answer}");
    let q = r.records(Kind::Quarantine).await;
    assert_eq!(q[0]["reasonCode"], "additionalPayloadNotConfigured");

    // The operator configures the container; the replay timer finishes the item.
    let url = payload_container("payload-2", &payload).await;
    let archive_dir = r.app.archive_dir.display().to_string();
    let certs = certificate_list(r.certs.path(), &r.keys);
    let later = spawn_app(&[
        ("ARCHIVE_DIR", archive_dir.as_str()),
        ("NOTIFICATION_CERTIFICATES", certs.as_str()),
        ("EVENTHUB_PAYLOAD_CONTAINER_URL", url.as_str()),
    ])
    .await;
    let (status, answer) = post_json(&later, "/replay", "{}").await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    assert_eq!(answer["ReturnValue"]["recovered"], 1, "{answer}");
    let archive = FsArchive::open(&r.app.archive_dir).await.unwrap();
    let events = archive.list(Kind::Events).await.unwrap();
    assert_eq!(events.len(), 1);
    // The same name as on arrival: delivering the item again now is a duplicate.
    let (_, answer) = super::invoke(
        &later,
        &[body(item)],
        teams_notifications::devtools::eventhub_host::HostEncoding::ArrayOfObjects,
        None,
    )
    .await;
    assert_eq!(answer["ReturnValue"]["events"], 1);
    assert_eq!(archive.list(Kind::Events).await.unwrap().len(), 1);
    let (_, again) = post_json(&later, "/replay", "{}").await;
    assert_eq!(again["ReturnValue"]["recovered"], 0);
}
