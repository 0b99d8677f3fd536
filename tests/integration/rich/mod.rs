//! Rich notifications end to end over HTTP: validationTokens from a local issuer (the production
//! validator fetching its JWKS over HTTP), certificates from local files, decryption, typed events,
//! quarantine and replay.

use std::collections::HashMap;
use std::sync::Arc;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use reqwest::StatusCode;
use serde_json::{Value, json};
use teams_notifications::archive::{Archive, Kind};
use teams_notifications::devtools::certificates as dev;
use teams_notifications::devtools::issuer::{LocalIssuer, TokenSpec};
use teams_notifications::devtools::simulate::{self, Step, Target};
use teams_notifications::keys::DecryptionKey;
use time::OffsetDateTime;

use crate::support::{CLIENT_STATE, TestApp, fixture, fixture_with_client_state, spawn_app};

const TENANT: &str = "f69f5191-20ae-4093-8dae-3ec09edeb253";
const APP_ID: &str = "0a1b2c3d-4e5f-4a6b-8c7d-9e0f1a2b3c4d";

/// The app trusting a local issuer and holding local keys (the attendance tests use it too).
pub(crate) struct Rig {
    pub(crate) app: TestApp,
    pub(crate) issuer: LocalIssuer,
    pub(crate) keys: Vec<DecryptionKey>,
    _certs: tempfile::TempDir,
}

/// The app with `keys` as local PEM files (`id=path`) and trusting a fresh local issuer.
pub(crate) async fn rig(keys: Vec<DecryptionKey>, extra: &[(&str, &str)]) -> Rig {
    let issuer = LocalIssuer::start().await.unwrap();
    let certs = tempfile::tempdir().unwrap();
    let list: Vec<String> = keys
        .iter()
        .map(|k| {
            let p = certs.path().join(format!("{}.pem", k.id));
            std::fs::write(&p, dev::to_pem(k).unwrap()).unwrap();
            format!("{}={}", k.id, p.display())
        })
        .collect();
    let list = list.join(",");
    let authority = issuer.authority_host().to_string();
    let mut settings = vec![
        ("GRAPH_TENANT_ID", TENANT),
        ("GRAPH_CLIENT_ID", APP_ID),
        ("AUTHORITY_HOST", authority.as_str()),
        ("NOTIFICATION_CERTIFICATES", list.as_str()),
    ];
    settings.extend_from_slice(extra);
    let app = spawn_app(&settings).await;
    Rig {
        app,
        issuer,
        keys,
        _certs: certs,
    }
}

pub(crate) fn target() -> Target {
    Target {
        subscription_id: "sub-rich".into(),
        client_state: CLIENT_STATE.into(),
        tenant_id: TENANT.into(),
    }
}

fn step(odata_type: &'static str, payload: Value) -> Step {
    Step {
        resource: format!(
            "resource/{}",
            payload.get("id").and_then(Value::as_str).unwrap_or("x")
        ),
        odata_type,
        change_type: "created",
        payload,
    }
}

/// A seed fixture parsed leniently (the published samples have trailing commas).
fn fixture_json(name: &str) -> Value {
    let text = fixture(name);
    let cleaned = without_trailing_commas(&text);
    serde_json::from_str(&cleaned).unwrap()
}

/// Microsoft's samples with their trailing commas removed (the handler's own relaxed reading).
fn without_trailing_commas(s: &str) -> String {
    match teams_notifications::graph::notification::strip_trailing_commas(s.as_bytes()) {
        Some(cleaned) => String::from_utf8(cleaned).unwrap(),
        None => s.to_string(),
    }
}

impl Rig {
    pub(crate) fn token(&self) -> String {
        self.issuer.mint(&TokenSpec::v2(TENANT, APP_ID))
    }

    pub(crate) fn item(&self, step: &Step, key: &DecryptionKey) -> Value {
        simulate::rich_item(step, &target(), &key.certificate, &key.id).unwrap()
    }

    pub(crate) async fn send(&self, items: Vec<Value>, tokens: &[String]) -> StatusCode {
        self.app
            .post("/api/notifications", simulate::collection(items, tokens))
            .await
            .status()
    }

    async fn records(&self, kind: Kind) -> Vec<Value> {
        let mut out = Vec::new();
        for n in self.app.objects(kind).await {
            out.push(self.app.read(&n).await);
        }
        out
    }
}

#[tokio::test]
async fn every_event_type_round_trips_with_its_payload() {
    let key = dev::self_signed("k1", 30);
    let r = rig(vec![key], &[]).await;
    let mut cases: Vec<(&str, &'static str, Value)> = vec![];
    for f in [
        "callevent_call_started.json",
        "callevent_call_ended.json",
        "callevent_roster_joined_lobby.json",
        "callevent_roster_inactive.json",
        "callevent_roster_left.json",
    ] {
        let mut p = fixture_json(f);
        p["id"] = f.into();
        cases.push(("callevent", "#microsoft.graph.callevent", p));
    }
    cases.push((
        "emergencyCallEvent",
        "#microsoft.graph.emergencyCallEvent",
        fixture_json("emergency_call_event.json"),
    ));
    cases.push((
        "chatMessage",
        "#Microsoft.Graph.chatMessage",
        fixture_json("chat_message.json"),
    ));
    cases.push((
        "chat",
        "#Microsoft.Graph.chat",
        json!({"id": "19:abc@thread.v2", "topic": "Launch", "chatType": "group"}),
    ));
    cases.push((
        "channel",
        "#Microsoft.Graph.channel",
        json!({"id": "19:chan@thread.tacv2", "displayName": "General"}),
    ));
    cases.push((
        "team",
        "#Microsoft.Graph.team",
        json!({"id": "team-1", "displayName": "Falcon"}),
    ));
    cases.push(("conversationMember", "#microsoft.graph.aadUserConversationMember", json!({"@odata.type": "#microsoft.graph.aadUserConversationMember", "id": "m-1", "displayName": "Lee Gu", "roles": ["owner"]})));
    cases.push(("callRecording", "#microsoft.graph.callRecording", json!({"@odata.type": "#microsoft.graph.callRecording", "id": "rec-1", "meetingId": "meet-1", "createdDateTime": "2026-11-23T10:00:00Z"})));
    cases.push(("callTranscript", "#microsoft.graph.callTranscript", json!({"@odata.type": "#microsoft.graph.callTranscript", "id": "tr-1", "meetingId": "meet-1"})));
    cases.push((
        "unknown",
        "#microsoft.graph.somethingNew",
        json!({"@odata.type": "#microsoft.graph.somethingNew", "id": "new-1", "value": 42}),
    ));

    let items: Vec<Value> = cases
        .iter()
        .map(|(_, t, p)| r.item(&step(t, p.clone()), &r.keys[0]))
        .collect();
    assert_eq!(r.send(items, &[r.token()]).await, StatusCode::ACCEPTED);

    let events = r.records(Kind::Events).await;
    assert_eq!(events.len(), cases.len());
    for (kind, _, payload) in &cases {
        let found = events
            .iter()
            .find(|e| &e["payload"] == payload)
            .unwrap_or_else(|| panic!("no event carries the {kind} payload"));
        assert_eq!(found["eventKind"], *kind);
        assert_eq!(found["rich"], true);
        assert_eq!(found["certificateId"], "k1");
        assert_eq!(found["tenantId"], TENANT);
        assert_eq!(found["subscriptionId"], "sub-rich");
    }
    let lobby = events
        .iter()
        .find(|e| e["payload"]["id"] == "callevent_roster_joined_lobby.json")
        .unwrap();
    assert_eq!(
        lobby["summary"],
        "rosterUpdated: A user roster update in the call joined; User roster update in the lobby of the call waiting in lobby"
    );
    assert_eq!(
        r.app.objects(Kind::Raw).await.len(),
        1,
        "the raw batch is kept"
    );
    assert!(r.app.objects(Kind::Quarantine).await.is_empty());
}

#[tokio::test]
async fn rotated_and_expired_certificates_all_decrypt() {
    let now = OffsetDateTime::now_utc();
    let expired = dev::self_signed_between(
        "2025-cert",
        now - time::Duration::days(400),
        now - time::Duration::days(3),
    )
    .unwrap();
    let current = dev::self_signed("2026-cert", 365);
    let r = rig(vec![expired, current], &[]).await;
    let p = |id: &str| {
        step(
            "#microsoft.graph.callevent",
            json!({"@odata.type": "#microsoft.graph.callevent", "id": id, "eventType": "callStarted"}),
        )
    };
    let old_item = r.item(&p("old"), &r.keys[0]);
    let new_item = r.item(&p("new"), &r.keys[1]);
    // Thumbprint only (no id): still found.
    let mut by_thumb = r.item(&p("thumb"), &r.keys[1]);
    by_thumb["encryptedContent"]
        .as_object_mut()
        .unwrap()
        .remove("encryptionCertificateId");
    by_thumb["encryptedContent"]["encryptionCertificateThumbprint"] =
        r.keys[1].thumbprint.to_lowercase().into();
    assert_eq!(
        r.send(vec![old_item, new_item, by_thumb], &[r.token()])
            .await,
        StatusCode::ACCEPTED
    );
    let events = r.records(Kind::Events).await;
    let used: HashMap<String, String> = events
        .iter()
        .map(|e| {
            (
                e["payload"]["id"].as_str().unwrap().to_string(),
                e["certificateId"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    assert_eq!(used["old"], "2025-cert");
    assert_eq!(used["new"], "2026-cert");
    assert_eq!(used["thumb"], "2026-cert");
}

#[tokio::test]
async fn tampered_items_are_quarantined_with_a_reason_and_never_become_events() {
    let key = dev::self_signed("k1", 30);
    let r = rig(vec![key, dev::self_signed("k2", 30)], &[]).await;
    let base = |i: usize| {
        r.item(
            &step(
                "#Microsoft.Graph.chatMessage",
                json!({"id": format!("m{i}"), "body": {"content": "secret"}}),
            ),
            &r.keys[0],
        )
    };
    let flip = |v: &Value, byte: usize| {
        let mut raw = STANDARD.decode(v.as_str().unwrap()).unwrap();
        let i = byte % raw.len();
        raw[i] ^= 0x01;
        Value::from(STANDARD.encode(raw))
    };
    let truncate = |v: &Value| {
        let raw = STANDARD.decode(v.as_str().unwrap()).unwrap();
        Value::from(STANDARD.encode(&raw[..raw.len() / 2]))
    };
    let mut items = Vec::new();
    let mut expected = Vec::new();
    let mut add = |item: Value, code: &str| {
        items.push(item);
        expected.push(code.to_string());
    };
    let mut i = base(1);
    i["encryptedContent"]["data"] = flip(&i["encryptedContent"]["data"], 7);
    add(i, "signatureMismatch");
    let mut i = base(2);
    i["encryptedContent"]["dataSignature"] = flip(&i["encryptedContent"]["dataSignature"], 0);
    add(i, "signatureMismatch");
    let mut i = base(3);
    i["encryptedContent"]["dataKey"] = flip(&i["encryptedContent"]["dataKey"], 40);
    add(i, "keyUnwrap");
    let mut i = base(4);
    i["encryptedContent"]["data"] = truncate(&i["encryptedContent"]["data"]);
    add(i, "badPadding"); // not whole AES blocks: refused before the RSA step
    let mut i = base(5);
    i["encryptedContent"]["dataKey"] = truncate(&i["encryptedContent"]["dataKey"]);
    add(i, "dataKeyLength");
    let mut i = base(6);
    i["encryptedContent"]["data"] = "not*base64".into();
    add(i, "badBase64");
    let mut i = base(7);
    i["encryptedContent"]["encryptionCertificateId"] = "k2".into(); // the wrong (but known) key
    i["encryptedContent"]
        .as_object_mut()
        .unwrap()
        .remove("encryptionCertificateThumbprint");
    add(i, "keyUnwrap");
    let mut i = base(8);
    i["encryptedContent"]
        .as_object_mut()
        .unwrap()
        .remove("dataSignature");
    add(i, "missingField");
    let mut i = base(9);
    i["encryptedContent"]["encryptionCertificateId"] = "nobody".into();
    i["encryptedContent"]["encryptionCertificateThumbprint"] = "00".repeat(20).into();
    add(i, "unknownKey");
    add(base(10), "ok");

    assert_eq!(r.send(items, &[r.token()]).await, StatusCode::ACCEPTED);
    let events = r.records(Kind::Events).await;
    assert_eq!(events.len(), 1, "only the untouched item is an event");
    assert_eq!(events[0]["payload"]["id"], "m10");
    let mut got: Vec<String> = r
        .records(Kind::Quarantine)
        .await
        .iter()
        .map(|q| q["reasonCode"].as_str().unwrap().to_string())
        .collect();
    got.sort();
    let mut want: Vec<String> = expected.into_iter().filter(|c| c != "ok").collect();
    want.sort();
    assert_eq!(got, want);
}

#[tokio::test]
async fn rich_batches_without_valid_tokens_are_never_archived_as_genuine() {
    let key = dev::self_signed("k1", 30);
    let r = rig(vec![key], &[]).await;
    let item = |id: &str| {
        r.item(
            &step("#Microsoft.Graph.chatMessage", json!({"id": id})),
            &r.keys[0],
        )
    };
    let other_tenant = r.issuer.mint(&TokenSpec::v2(
        "00000000-0000-0000-0000-0000000000aa",
        APP_ID,
    ));
    let attacker = LocalIssuer::start().await.unwrap();
    let forged = attacker.mint(&TokenSpec::v2(TENANT, APP_ID));
    let cases: Vec<(&str, Vec<String>)> = vec![
        ("a", vec![]),
        ("b", vec!["not-a-jwt".into()]),
        ("c", vec![other_tenant]),
        ("d", vec![forged]),
        ("e", vec![r.token(), "not-a-jwt".into()]),
    ];
    for (id, tokens) in cases {
        assert_eq!(
            r.send(vec![item(id)], &tokens).await,
            StatusCode::ACCEPTED,
            "{id}"
        );
    }
    // An item of a tenant no token covers, next to one that is covered.
    let mut stranger = item("f");
    stranger["tenantId"] = "99999999-0000-0000-0000-000000000000".into();
    stranger["organizationId"] = "99999999-0000-0000-0000-000000000000".into();
    assert_eq!(
        r.send(vec![item("g"), stranger], &[r.token()]).await,
        StatusCode::ACCEPTED
    );

    assert!(r.app.objects(Kind::Events).await.is_empty());
    assert!(r.app.objects(Kind::Raw).await.is_empty());
    assert!(r.app.objects(Kind::Quarantine).await.is_empty());
    assert_eq!(r.app.objects(Kind::Rejected).await.len(), 6);
}

#[tokio::test]
async fn seed_envelopes_without_a_key_are_quarantined_then_replayed_once_the_key_exists() {
    let key = dev::self_signed("late-cert", 30);
    let r = rig(vec![], &[]).await;
    // The seeds' own envelopes (placeholders for the ciphertext), with a valid token.
    for seed in [
        "callevent_envelope.json",
        "emergency_call_envelope.json",
        "chat_message_envelope.json",
    ] {
        let text = fixture_with_client_state(seed, CLIENT_STATE)
            .replace("{Organization/Tenant id}", TENANT)
            .replace("00000000-0000-0000-0000-000000000000", TENANT)
            .replace("<<--TenantForWhichNotificationWasSent-->>", TENANT);
        let mut v: Value = serde_json::from_str(&without_trailing_commas(&text)).unwrap();
        v["validationTokens"] = json!([r.token()]);
        let status = r
            .app
            .post("/api/notifications", v.to_string())
            .await
            .status();
        assert_eq!(status, StatusCode::ACCEPTED, "{seed}");
    }
    // And two real ones encrypted for a certificate the handler does not have yet.
    let items: Vec<Value> = (0..2)
        .map(|i| {
            simulate::rich_item(
                &step(
                    "#microsoft.graph.callevent",
                    json!({"id": format!("c{i}"), "eventType": "callStarted"}),
                ),
                &target(),
                &key.certificate,
                "late-cert",
            )
            .unwrap()
        })
        .collect();
    assert_eq!(r.send(items, &[r.token()]).await, StatusCode::ACCEPTED);

    let quarantined = r.records(Kind::Quarantine).await;
    assert_eq!(quarantined.len(), 5);
    assert!(
        quarantined
            .iter()
            .all(|q| q["reason"] == "no decryption key configured"),
        "{quarantined:?}"
    );
    assert!(r.app.objects(Kind::Events).await.is_empty());

    // The operator adds the certificate and replays: the two real ones become events, the
    // seeds' placeholders stay quarantined; a second replay adds nothing.
    let archive: Arc<dyn Archive> = Arc::new(r.app.archive().await);
    let store = teams_notifications::keys::CertificateStore::from_keys(vec![key]);
    let bar = indicatif::ProgressBar::hidden();
    let first = teams_notifications::ops::replay::replay(&archive, &store, None, &bar)
        .await
        .unwrap();
    assert_eq!(first.recovered, 2, "{first:?}");
    // Each quarantined item is looked at once (not again from its raw batch).
    assert_eq!(
        (first.examined, first.still_quarantined, first.already_done),
        (5, 3, 0),
        "{first:?}"
    );
    let events = r.records(Kind::Events).await;
    assert_eq!(events.len(), 2);
    assert!(
        events.iter().all(
            |e| e["certificateId"] == "late-cert" && e["payload"]["eventType"] == "callStarted"
        )
    );
    let before = r.app.counts().await;
    let second = teams_notifications::ops::replay::replay(&archive, &store, None, &bar)
        .await
        .unwrap();
    assert_eq!(second.recovered, 0);
    assert_eq!(
        (
            second.examined,
            second.already_done,
            second.still_quarantined
        ),
        (5, 2, 3),
        "{second:?}"
    );
    assert_eq!(r.app.counts().await, before, "replaying twice adds nothing");
}

#[tokio::test]
async fn a_resent_rich_batch_is_one_event_per_item() {
    let key = dev::self_signed("k1", 30);
    let r = rig(vec![key], &[]).await;
    let items: Vec<Value> = simulate::steps(simulate::Scenario::Meeting, 0)
        .iter()
        .map(|s| r.item(s, &r.keys[0]))
        .collect();
    let n = items.len();
    for _ in 0..3 {
        // Graph may renew the token between resends: the items are what count.
        assert_eq!(
            r.send(items.clone(), &[r.token()]).await,
            StatusCode::ACCEPTED
        );
    }
    assert_eq!(r.app.objects(Kind::Events).await.len(), n);
    assert_eq!(r.app.objects(Kind::Raw).await.len(), 1);
}

/// A rig with one key that has received one meeting's rich notifications (202), and the items.
async fn delivered_meeting() -> (Rig, Vec<Value>) {
    let first = rig(vec![dev::self_signed("k1", 30)], &[]).await;
    let items: Vec<Value> = simulate::steps(simulate::Scenario::Meeting, 0)
        .iter()
        .map(|s| first.item(s, &first.keys[0]))
        .collect();
    assert_eq!(
        first.send(items.clone(), &[first.token()]).await,
        StatusCode::ACCEPTED
    );
    (first, items)
}

/// A fresh process on `first`'s archive and issuer, with no key at all: an item it tried to
/// decrypt would be quarantined (`noKeys`).
async fn restarted_without_a_key(first: &Rig) -> TestApp {
    let archive = first.app.archive_dir.display().to_string();
    let issuer = first.issuer.authority_host().to_string();
    spawn_app(&[
        ("ARCHIVE_DIR", archive.as_str()),
        ("GRAPH_TENANT_ID", TENANT),
        ("GRAPH_CLIENT_ID", APP_ID),
        ("AUTHORITY_HOST", issuer.as_str()),
    ])
    .await
}

#[tokio::test]
async fn a_resend_after_a_restart_is_not_decrypted_again() {
    let (first, items) = delivered_meeting().await;
    let before = first.app.counts().await;
    assert_eq!(before.get("events"), Some(&items.len()));

    // A fresh process on the same archive, with no key at all: an item it tried to decrypt
    // would be quarantined (`noKeys`). The resend, plus one new item, arrives there.
    let restarted = restarted_without_a_key(&first).await;
    let resend = simulate::collection(items.clone(), &[first.token()]);
    let response = restarted.post("/api/notifications", resend).await;
    assert_eq!(response.status(), StatusCode::ACCEPTED);
    assert_eq!(
        first.app.counts().await,
        before,
        "every item was known by name: nothing decrypted, nothing written"
    );

    let mut with_new = items.clone();
    with_new.push(first.item(
        &simulate::steps(simulate::Scenario::Meeting, 1)[0],
        &first.keys[0],
    ));
    let response = restarted
        .post(
            "/api/notifications",
            simulate::collection(with_new, &[first.token()]),
        )
        .await;
    assert_eq!(response.status(), StatusCode::ACCEPTED);
    // (The restarted app writes into the first one's archive folder.)
    let after = first.app.counts().await;
    assert_eq!(after.get("events"), before.get("events"));
    assert_eq!(
        after.get("quarantine"),
        Some(&1),
        "only the new item was tried: no key here"
    );
    assert_eq!(
        after.get("raw"),
        Some(&2),
        "the new batch is kept raw for its replay"
    );
}

#[tokio::test]
async fn a_resend_of_a_complete_batch_is_known_by_its_marker_alone() {
    let (first, items) = delivered_meeting().await;
    let markers = first.app.objects(Kind::Complete).await;
    assert_eq!(markers.len(), 1, "every item became an event: one marker");
    assert_eq!(first.app.read(&markers[0]).await["events"], items.len());

    // Take one event away behind the handler's back, then resend to a fresh process without
    // a key: checked item by item, the missing one would be tried and quarantined (`noKeys`);
    // known by the marker, the whole batch is a resend and nothing is tried.
    let events = first.app.objects(Kind::Events).await;
    std::fs::remove_file(first.app.archive_dir.join(events[0].as_str())).unwrap();
    let before = first.app.counts().await;
    let restarted = restarted_without_a_key(&first).await;
    let resend = simulate::collection(items, &[first.token()]);
    let response = restarted.post("/api/notifications", resend).await;
    assert_eq!(response.status(), StatusCode::ACCEPTED);
    assert_eq!(
        first.app.counts().await,
        before,
        "one name answered the resend"
    );
}

#[tokio::test]
async fn a_batch_with_a_quarantined_item_gets_no_marker() {
    let known = dev::self_signed("k1", 30);
    let unknown = dev::self_signed("elsewhere", 30);
    let r = rig(vec![known], &[]).await;
    let steps = simulate::steps(simulate::Scenario::Meeting, 0);
    let mut items: Vec<Value> = steps.iter().map(|s| r.item(s, &r.keys[0])).collect();
    items.push(r.item(
        &simulate::steps(simulate::Scenario::Meeting, 1)[0],
        &unknown,
    ));
    for _ in 0..2 {
        assert_eq!(
            r.send(items.clone(), &[r.token()]).await,
            StatusCode::ACCEPTED
        );
    }
    assert!(r.app.objects(Kind::Complete).await.is_empty());
    assert_eq!(r.app.objects(Kind::Events).await.len(), steps.len());
    assert_eq!(r.app.objects(Kind::Quarantine).await.len(), 1);
}
