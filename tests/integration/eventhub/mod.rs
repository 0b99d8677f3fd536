//! Graph's Event Hubs delivery, entered as the Functions host enters it: `POST /eventhub` with
//! the eventHubTrigger's invocation payload (every encoding the host uses), the `POST /replay`
//! timer, and the same receiver the webhook uses. Event Hubs itself cannot run here; the
//! invocation payloads are the host's documented wire format. Blob payloads come from Azurite.

mod large;

use std::path::{Path, PathBuf};

use reqwest::StatusCode;
use serde_json::{Value, json};
use teams_notifications::archive::fs::FsArchive;
use teams_notifications::archive::{Archive, Kind};
use teams_notifications::devtools::certificates as dev;
use teams_notifications::devtools::eventhub_host::{self, HostEncoding};
use teams_notifications::devtools::issuer::{LocalIssuer, TokenSpec};
use teams_notifications::devtools::simulate::{self, Step, Target};
use teams_notifications::keys::DecryptionKey;

use crate::support::{CLIENT_STATE, TestApp, spawn_app};

const TENANT: &str = "f69f5191-20ae-4093-8dae-3ec09edeb253";
const APP_ID: &str = "0a1b2c3d-4e5f-4a6b-8c7d-9e0f1a2b3c4d";

/// Graph's reachability message, as Microsoft's Event Hubs delivery article shows it.
pub const VALIDATION: &str = r#"{"value":[{"subscriptionId":"NA","subscriptionExpirationDateTime":"NA","clientState":"NA","changeType":"Validation: Testing client application reachability for subscription Request-Id: 522a8e7e-096a-494c-aaf1-ac0dcfca45b7","resource":"NA","resourceData":{"@odata.type":"NA","@odata.id":"NA","id":"NA"}}]}"#;

pub struct Rig {
    pub app: TestApp,
    pub issuer: LocalIssuer,
    pub keys: Vec<DecryptionKey>,
    pub certs: tempfile::TempDir,
}

/// Writes `keys` as PEM files and returns the `NOTIFICATION_CERTIFICATES` value.
pub fn certificate_list(dir: &Path, keys: &[DecryptionKey]) -> String {
    keys.iter()
        .map(|k| {
            let p = dir.join(format!("{}.pem", k.id));
            std::fs::write(&p, dev::to_pem(k).unwrap()).unwrap();
            format!("{}={}", k.id, p.display())
        })
        .collect::<Vec<_>>()
        .join(",")
}

/// The app with `keys` as local files, trusting a local issuer, plus `extra` settings.
pub async fn rig(keys: Vec<DecryptionKey>, extra: &[(&str, &str)]) -> Rig {
    let issuer = LocalIssuer::start().await.unwrap();
    let certs = tempfile::tempdir().unwrap();
    let list = certificate_list(certs.path(), &keys);
    let authority = issuer.authority_host().to_string();
    let spool = certs.path().join("spool").display().to_string();
    let mut settings = vec![
        ("GRAPH_TENANT_ID", TENANT),
        ("GRAPH_CLIENT_ID", APP_ID),
        ("AUTHORITY_HOST", authority.as_str()),
        ("NOTIFICATION_CERTIFICATES", list.as_str()),
        ("EVENTHUB_SPOOL_DIR", spool.as_str()),
    ];
    settings.extend_from_slice(extra);
    let app = spawn_app(&settings).await;
    Rig {
        app,
        issuer,
        keys,
        certs,
    }
}

pub fn target(client_state: &str) -> Target {
    Target {
        subscription_id: "sub-hub".into(),
        client_state: client_state.into(),
        tenant_id: TENANT.into(),
    }
}

pub fn chat_step(n: usize) -> Step {
    Step {
        resource: format!("chats('19:c@thread.v2')/messages('{n}')"),
        odata_type: "#Microsoft.Graph.chatMessage",
        change_type: "created",
        payload: json!({"id": n.to_string(), "messageType": "message", "body": {"content": format!("message {n}")}}),
    }
}

/// A basic (no resource data) notification item.
pub fn basic_item(n: usize, client_state: &str) -> Value {
    json!({
        "subscriptionId": "sub-basic",
        "clientState": client_state,
        "changeType": "updated",
        "tenantId": TENANT,
        "resource": format!("teams('t')/channels('{n}')"),
        "subscriptionExpirationDateTime": "2026-12-03T10:00:00Z",
        "resourceData": {"@odata.type": "#Microsoft.Graph.channel", "id": n.to_string()},
    })
}

impl Rig {
    pub fn token(&self) -> String {
        self.issuer.mint(&TokenSpec::v2(TENANT, APP_ID))
    }

    pub fn rich_item(&self, n: usize) -> Value {
        let key = &self.keys[0];
        simulate::rich_item(
            &chat_step(n),
            &target(CLIENT_STATE),
            &key.certificate,
            &key.id,
        )
        .unwrap()
    }

    pub async fn invoke(
        &self,
        bodies: &[String],
        retry: Option<(i64, i64)>,
    ) -> (StatusCode, Value) {
        invoke(&self.app, bodies, HostEncoding::StringOfArray, retry).await
    }

    pub async fn records(&self, kind: Kind) -> Vec<Value> {
        let mut out = Vec::new();
        for n in self.app.objects(kind).await {
            out.push(self.app.read(&n).await);
        }
        out
    }
}

/// Posts an invocation as the host does and returns its status and JSON answer.
pub async fn invoke(
    app: &TestApp,
    bodies: &[String],
    encoding: HostEncoding,
    retry: Option<(i64, i64)>,
) -> (StatusCode, Value) {
    let body = eventhub_host::invocation(bodies, encoding, retry, "0", 100);
    post_json(app, "/eventhub", body).await
}

pub async fn post_json(
    app: &TestApp,
    path: &str,
    body: impl Into<reqwest::Body>,
) -> (StatusCode, Value) {
    let r = app.post(path, body).await;
    let status = r.status();
    let text = r.text().await.unwrap();
    let value: Value = serde_json::from_str(&text)
        .unwrap_or_else(|e| panic!("{path} answered non-JSON ({e}): {text:?}"));
    for key in ["Outputs", "Logs", "ReturnValue"] {
        assert!(
            value.get(key).is_some(),
            "{path} answer lacks {key}: {value}"
        );
    }
    (status, value)
}

fn one(item: Value) -> String {
    simulate::collection(vec![item], &[])
}

#[tokio::test]
async fn every_host_encoding_archives_the_same_events() {
    let r = rig(vec![dev::self_signed("k1", 30)], &[]).await;
    let bodies: Vec<String> = (0..3)
        .map(|n| one(basic_item(n, CLIENT_STATE)))
        .chain([one(r.rich_item(7))])
        .collect();
    for encoding in HostEncoding::ALL {
        let (status, answer) = invoke(&r.app, &bodies, encoding, Some((0, 5))).await;
        assert_eq!(status, StatusCode::OK, "{encoding:?}: {answer}");
        assert_eq!(answer["ReturnValue"]["eventCount"], 4, "{encoding:?}");
        assert_eq!(answer["ReturnValue"]["events"], 4, "{encoding:?}: {answer}");
    }
    // Five encodings of one batch: one object per notification.
    let events = r.records(Kind::Events).await;
    assert_eq!(events.len(), 4);
    let rich: Vec<&Value> = events.iter().filter(|e| e["rich"] == true).collect();
    assert_eq!(rich.len(), 1);
    assert_eq!(rich[0]["payload"]["body"]["content"], "message 7");
    // The raw record names how it came: no tokens, with the event's metadata.
    let raw = r.records(Kind::Raw).await;
    assert_eq!(raw.len(), 1);
    assert_eq!(raw[0]["tokensVerified"], false);
    assert_eq!(raw[0]["eventHub"]["sequenceNumber"], 103);
    assert_eq!(raw[0]["eventHub"]["partitionContext"]["PartitionId"], "0");
}

#[tokio::test]
async fn the_validation_message_is_ignored() {
    let r = rig(vec![], &[]).await;
    let (status, answer) = r.invoke(&[VALIDATION.to_string()], Some((0, 5))).await;
    assert_eq!(status, StatusCode::OK);
    let rv = &answer["ReturnValue"];
    assert_eq!(rv["validation"], 1, "{answer}");
    assert_eq!(
        (rv["droppedClientState"].clone(), rv["rejected"].clone()),
        (json!(0), json!(0))
    );
    assert!(r.app.counts().await.is_empty(), "nothing archived");
}

#[tokio::test]
async fn a_hundred_event_invocation_mixing_every_kind() {
    let r = rig(vec![dev::self_signed("k1", 30)], &[]).await;
    let mut bodies = Vec::new();
    for n in 0..40 {
        bodies.push(one(basic_item(n, CLIENT_STATE)));
    }
    for n in 0..40 {
        bodies.push(one(r.rich_item(n)));
    }
    for n in 0..8 {
        bodies.push(one(json!({"subscriptionId": format!("sub-{n}"), "clientState": CLIENT_STATE, "lifecycleEvent": "missed", "tenantId": TENANT, "subscriptionExpirationDateTime": "2026-12-03T10:00:00Z"})));
    }
    // Tampered: a wrong clientState (dropped), a flipped HMAC (quarantined), a bad token
    // (rejected), a body that is not a collection (kept as unreadable evidence).
    for n in 0..4 {
        bodies.push(one(basic_item(100 + n, "forged-state")));
    }
    for n in 0..4 {
        let mut item = r.rich_item(200 + n);
        item["encryptedContent"]["dataSignature"] = json!("AAAA");
        bodies.push(one(item));
    }
    for n in 0..2 {
        bodies.push(simulate::collection(
            vec![r.rich_item(300 + n)],
            &["not.a.jwt".to_string()],
        ));
    }
    bodies.push("{\"not\":\"a collection\"}".into());
    bodies.push(VALIDATION.into());
    assert_eq!(bodies.len(), 100);

    let (status, answer) = r.invoke(&bodies, Some((0, 5))).await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    let rv = &answer["ReturnValue"];
    assert_eq!(rv["eventCount"], 100);
    assert_eq!(rv["events"], 80, "{answer}");
    assert_eq!(rv["lifecycle"], 8);
    assert_eq!(rv["droppedClientState"], 4);
    assert_eq!(rv["quarantined"], 4);
    assert_eq!(rv["rejected"], 2);
    assert_eq!(rv["unreadable"], 1);
    assert_eq!(rv["validation"], 1);

    let events = r.records(Kind::Events).await;
    assert_eq!(events.len(), 80);
    assert_eq!(events.iter().filter(|e| e["rich"] == true).count(), 40);
    let quarantined = r.records(Kind::Quarantine).await;
    assert!(
        quarantined
            .iter()
            .all(|q| q["reasonCode"] == "signatureMismatch"),
        "{quarantined:?}"
    );
    let rejected = r.records(Kind::Rejected).await;
    assert_eq!(
        rejected.len(),
        3,
        "two token rejections and one unreadable event"
    );
    assert!(
        rejected
            .iter()
            .any(|x| x["reasonCode"] == "notNotificationCollection"
                && x["unreadable"]["bytes"] == 22)
    );
    assert_eq!(r.records(Kind::Lifecycle).await.len(), 8);
    // The forged clientState is nowhere, and neither is ours.
    for kind in Kind::ALL {
        for rec in r.records(kind).await {
            let text = rec.to_string();
            assert!(!text.contains(CLIENT_STATE) && !text.contains("forged-state"));
        }
    }
}

#[tokio::test]
async fn tokens_present_in_the_hub_are_verified() {
    let r = rig(vec![dev::self_signed("k1", 30)], &[]).await;
    let good = simulate::collection(vec![r.rich_item(1)], &[r.token()]);
    let (_, answer) = r.invoke(&[good], None).await;
    assert_eq!(answer["ReturnValue"]["events"], 1, "{answer}");
    let raw = r.records(Kind::Raw).await;
    assert_eq!(raw[0]["tokensVerified"], true);
    let wrong_audience = r.issuer.mint(&TokenSpec::v2(TENANT, "someone-else"));
    let bad = simulate::collection(vec![r.rich_item(2)], &[wrong_audience]);
    let (_, answer) = r.invoke(&[bad], None).await;
    assert_eq!(answer["ReturnValue"]["rejected"], 1, "{answer}");
    assert_eq!(r.records(Kind::Events).await.len(), 1);
}

#[tokio::test]
async fn the_same_notification_over_http_and_event_hubs_is_one_object() {
    let r = rig(vec![dev::self_signed("k1", 30)], &[]).await;
    let item = r.rich_item(5);
    let basic = basic_item(5, CLIENT_STATE);
    let over_http = simulate::collection(vec![item.clone()], &[r.token()]);
    let status = r.app.post("/api/notifications", over_http).await.status();
    assert_eq!(status, StatusCode::ACCEPTED);
    let status = r
        .app
        .post(
            "/api/notifications",
            simulate::collection(vec![basic.clone()], &[]),
        )
        .await
        .status();
    assert_eq!(status, StatusCode::ACCEPTED);
    let (status, answer) = r.invoke(&[one(item), one(basic)], Some((0, 5))).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(answer["ReturnValue"]["events"], 2);
    assert!(
        answer["ReturnValue"]["duplicates"].as_u64().unwrap() >= 2,
        "{answer}"
    );
    assert_eq!(r.records(Kind::Events).await.len(), 2);
    assert_eq!(
        r.records(Kind::Raw).await.len(),
        1,
        "one raw batch for the rich item"
    );
}

/// Replaces the archive folder by a file: every write fails until [`restore`].
fn break_archive(dir: &Path) -> PathBuf {
    let aside = dir.with_extension("aside");
    std::fs::rename(dir, &aside).unwrap();
    std::fs::write(dir, b"not a folder").unwrap();
    aside
}

fn restore(dir: &Path, aside: &Path) {
    std::fs::remove_file(dir).unwrap();
    std::fs::rename(aside, dir).unwrap();
}

fn spooled(dir: &Path) -> usize {
    std::fs::read_dir(dir).map_or(0, |d| d.count())
}

#[tokio::test]
async fn archive_down_asks_a_retry_then_spools_the_last_try_and_the_timer_archives_it() {
    let r = rig(vec![dev::self_signed("k1", 30)], &[]).await;
    let spool = r.certs.path().join("spool");
    let bodies = vec![one(r.rich_item(1)), one(basic_item(1, CLIENT_STATE))];
    let aside = break_archive(&r.app.archive_dir);

    // Retries remain: 5xx (the host retries), and the batch is already safe in the spool.
    let (status, answer) = r.invoke(&bodies, Some((0, 3))).await;
    assert_eq!(status, StatusCode::INTERNAL_SERVER_ERROR, "{answer}");
    assert_eq!(answer["ReturnValue"]["retry"], true);
    assert_eq!(answer["ReturnValue"]["spooled"], true);
    // The last try: the batch is durable in the spool, so the answer is 2xx.
    let (status, answer) = r.invoke(&bodies, Some((3, 3))).await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    assert_eq!(answer["ReturnValue"]["retry"], false);
    assert_eq!(answer["ReturnValue"]["spooled"], true);
    assert_eq!(
        spooled(&spool),
        2,
        "the two tries differ in RetryContext: two spool files"
    );

    // While the archive is down the timer leaves the spool alone and says so.
    let (status, answer) = post_json(&r.app, "/replay", "{}").await;
    assert_eq!(status, StatusCode::INTERNAL_SERVER_ERROR, "{answer}");
    assert_eq!(spooled(&spool), 2);

    restore(&r.app.archive_dir, &aside);
    let (status, answer) = post_json(&r.app, "/replay", "{}").await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    assert_eq!(answer["ReturnValue"]["spool"]["archived"], 2, "{answer}");
    assert_eq!(spooled(&spool), 0);
    let events = r.records(Kind::Events).await;
    assert_eq!(events.len(), 2, "nothing lost, nothing doubled");
    // Idempotent: another run adds nothing.
    let (_, answer) = post_json(&r.app, "/replay", "{}").await;
    assert_eq!(answer["ReturnValue"]["spool"]["spooled"], 0);
    assert_eq!(r.records(Kind::Events).await.len(), 2);
}

#[tokio::test]
async fn archive_and_spool_down_on_the_last_try_is_a_loud_failure() {
    let r = rig(vec![], &[]).await;
    // The spool's parent is a file: the spool cannot be written either.
    let blocker = r.certs.path().join("spool");
    std::fs::write(&blocker, b"x").unwrap();
    let _aside = break_archive(&r.app.archive_dir);
    let (status, answer) = r
        .invoke(&[one(basic_item(1, CLIENT_STATE))], Some((5, 5)))
        .await;
    assert_eq!(status, StatusCode::INTERNAL_SERVER_ERROR);
    assert_eq!(answer["ReturnValue"]["error"], "notStored");
    assert_eq!(
        answer["ReturnValue"]["position"],
        "partition 0, sequence numbers 100..=100"
    );
}

#[tokio::test]
async fn bad_invocation_payloads_get_a_json_error_answer() {
    let r = rig(vec![], &[("EVENTHUB_MAX_INVOCATION_BYTES", "4096")]).await;
    let cases: Vec<(String, &str)> = vec![
        ("not json".into(), "notJson"),
        (String::new(), "notJson"),
        ("[1,2]".into(), "notInvocation"),
        (r#"{"Data":"x"}"#.into(), "notInvocation"),
        (r#"{"Data":{"other":[]}}"#.into(), "missingBinding"),
        (r#"{"Data":{"events":42}}"#.into(), "wrongShape"),
        (r#"{"Data":{"events":"%%%"}}"#.into(), "notBase64"),
        (r#"{"Data":{"events":"[\"a\","}}"#.into(), "innerJson"),
        (r#"{"Data":{"events":[true]}}"#.into(), "wrongEvent"),
        (
            format!(r#"{{"Data":{{"events":["{}"]}}}}"#, "a".repeat(5000)),
            "tooLarge",
        ),
    ];
    for (body, code) in cases {
        let (status, answer) = post_json(&r.app, "/eventhub", body).await;
        assert_eq!(
            status,
            StatusCode::INTERNAL_SERVER_ERROR,
            "{code}: {answer}"
        );
        assert_eq!(answer["ReturnValue"]["error"], code, "{answer}");
    }
    // Still serving.
    let (status, _) = r.invoke(&[VALIDATION.to_string()], None).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        r.app.post("/eventhub", "").await.status(),
        StatusCode::INTERNAL_SERVER_ERROR
    );
    let get = r
        .app
        .http
        .get(format!("{}/eventhub", r.app.url))
        .send()
        .await
        .unwrap();
    assert_eq!(get.status(), StatusCode::METHOD_NOT_ALLOWED);
}

#[tokio::test]
async fn the_replay_timer_finishes_quarantined_items_once_their_certificate_is_added() {
    let old = dev::self_signed("old", 30);
    let late = dev::self_signed("late", 30);
    let r = rig(vec![old], &[]).await;
    let item = simulate::rich_item(
        &chat_step(9),
        &target(CLIENT_STATE),
        &late.certificate,
        &late.id,
    )
    .unwrap();
    let (_, answer) = r.invoke(&[one(item)], None).await;
    assert_eq!(answer["ReturnValue"]["quarantined"], 1, "{answer}");

    // The certificate arrives: an app with both keys on the same archive, its timer runs.
    let list = certificate_list(r.certs.path(), &[dev::self_signed("old", 30), late]);
    let archive_dir = r.app.archive_dir.display().to_string();
    let spool = r.certs.path().join("spool2").display().to_string();
    let later = spawn_app(&[
        ("ARCHIVE_DIR", archive_dir.as_str()),
        ("NOTIFICATION_CERTIFICATES", list.as_str()),
        ("EVENTHUB_SPOOL_DIR", spool.as_str()),
    ])
    .await;
    let (status, answer) = post_json(
        &later,
        "/replay",
        r#"{"Data":{"timer":{"IsPastDue":false}},"Metadata":{}}"#,
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    assert_eq!(answer["ReturnValue"]["recovered"], 1, "{answer}");
    let archive = FsArchive::open(&r.app.archive_dir).await.unwrap();
    let events = archive.list(Kind::Events).await.unwrap();
    assert_eq!(events.len(), 1);
    let event: Value =
        serde_json::from_slice(&archive.get(&events[0]).await.unwrap().unwrap()).unwrap();
    assert_eq!(event["certificateId"], "late");
    let (_, again) = post_json(&later, "/replay", "{}").await;
    assert_eq!(again["ReturnValue"]["recovered"], 0);
    assert_eq!(archive.list(Kind::Events).await.unwrap().len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn simulate_plays_the_hosts_invocations_against_a_running_handler() {
    let dir = tempfile::tempdir().unwrap();
    let key = dev::self_signed("sim-cert", 30);
    let pem = dir.path().join("sim-cert.pem");
    std::fs::write(&pem, dev::to_pem(&key).unwrap()).unwrap();
    let certs = format!("sim-cert={}", pem.display());
    let spool = dir.path().join("spool").display().to_string();
    let settings = [
        ("NOTIFICATION_CLIENT_STATE", CLIENT_STATE),
        ("GRAPH_TENANT_ID", TENANT),
        ("GRAPH_CLIENT_ID", APP_ID),
        ("NOTIFICATION_CERTIFICATES", certs.as_str()),
        ("EVENTHUB_SPOOL_DIR", spool.as_str()),
    ];
    let app = spawn_app(&settings).await;
    let url = format!("{}/eventhub", app.url);
    let issuer_key = dir.path().join("issuer.pem");
    let out = tokio::task::block_in_place(|| {
        std::process::Command::new(env!("CARGO_BIN_EXE_handler"))
            .envs(settings)
            .env("RUST_LOG", "warn")
            .args([
                "simulate",
                "--eventhub",
                "--encoding",
                "base64-elements",
                "--url",
                &url,
            ])
            .args(["--scenario", "chat", "--count", "30", "--batch", "10"])
            .args(["--issuer-key", issuer_key.to_str().unwrap()])
            .output()
            .unwrap()
    });
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.contains("sent 3 request(s)") && stdout.contains("200: 3"),
        "{stdout}"
    );
    let events = app.objects(Kind::Events).await;
    assert_eq!(events.len(), 30, "every event decrypted without tokens");
    assert_eq!(
        app.objects(Kind::Raw).await.len(),
        30,
        "one raw record per event"
    );
}

#[tokio::test]
async fn a_start_sweeps_the_spools_old_temporaries() {
    let dir = tempfile::tempdir().unwrap();
    let spool = dir.path().join("spool");
    std::fs::create_dir_all(&spool).unwrap();
    // Left by a crashed run: one old (swept), one that may be a live write elsewhere (kept).
    let (old, young) = (spool.join(".tmp-1-0"), spool.join(".tmp-1-1"));
    for path in [&old, &young] {
        std::fs::write(path, b"half").unwrap();
    }
    std::fs::File::options()
        .write(true)
        .open(&old)
        .unwrap()
        .set_modified(std::time::SystemTime::now() - std::time::Duration::from_secs(3600))
        .unwrap();
    let spool_dir = spool.display().to_string();
    let _rig = rig(vec![], &[("EVENTHUB_SPOOL_DIR", spool_dir.as_str())]).await;
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while old.exists() {
        assert!(
            std::time::Instant::now() < deadline,
            "the start did not sweep the spool's old temporary file"
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    assert!(young.exists(), "a young temporary file was swept");
}
