//! The receiver core driven over HTTP exactly as the Functions host forwards Graph's requests.

use std::collections::HashMap;
use std::time::Duration;

use reqwest::StatusCode;
use teams_notifications::archive::Kind;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::support::{CLIENT_STATE, fixture_with_client_state, spawn_app};

fn basic_item(
    subscription: &str,
    change_type: &str,
    client_state: Option<&str>,
) -> serde_json::Value {
    let mut item = serde_json::json!({
        "subscriptionId": subscription,
        "changeType": change_type,
        "tenantId": "11111111-2222-3333-4444-555555555555",
        "subscriptionExpirationDateTime": "2026-11-25T10:30:34.9097561-08:00",
        "resource": format!("teams('t')/channels('c')/messages('{subscription}-{change_type}')"),
        "resourceData": {
            "id": "1612293113399",
            "@odata.type": "#Microsoft.Graph.chatMessage",
            "@odata.id": "teams('t')/channels('c')/messages('1612293113399')"
        }
    });
    if let Some(cs) = client_state {
        item["clientState"] = cs.into();
    }
    item
}

fn batch(items: Vec<serde_json::Value>) -> String {
    serde_json::json!({ "value": items }).to_string()
}

#[tokio::test]
async fn readiness_probe_answers() {
    let app = spawn_app(&[]).await;
    let r = app.http.get(&app.url).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::OK);
}

#[tokio::test]
async fn validation_handshake_echoes_the_decoded_token_on_both_urls() {
    let app = spawn_app(&[]).await;
    let cases = [
        // Graph's real form: `+` for spaces, `%3a` for colons.
        (
            "Validation%3a+Testing+client+application+reachability+for+subscription+Request-Id%3a+4ce5a5a0-8b33-4fc4-b7c6-2e6a5a8c6a31",
            "Validation: Testing client application reachability for subscription Request-Id: 4ce5a5a0-8b33-4fc4-b7c6-2e6a5a8c6a31",
        ),
        ("a%2Bb%20c%3Ad", "a+b c:d"),
        ("plain-token-123", "plain-token-123"),
        (
            "eyJ0eXAiOiJKV1QifQ.eyJhIjoxfQ.c2ln",
            "eyJ0eXAiOiJKV1QifQ.eyJhIjoxfQ.c2ln",
        ),
    ];
    for path in ["/api/notifications", "/api/lifecycle"] {
        for (encoded, decoded) in cases {
            for body in ["", "{\"anything\": true}", "not json at all"] {
                let r = app
                    .http
                    .post(format!(
                        "{}{path}?code=functionkey&validationToken={encoded}",
                        app.url
                    ))
                    .body(body)
                    .send()
                    .await
                    .unwrap();
                assert_eq!(r.status(), StatusCode::OK, "{path} {encoded}");
                assert!(
                    r.headers()["content-type"]
                        .to_str()
                        .unwrap()
                        .starts_with("text/plain")
                );
                assert_eq!(r.text().await.unwrap(), decoded);
            }
        }
    }
    assert!(
        app.counts().await.is_empty(),
        "a handshake archives nothing"
    );
}

#[tokio::test]
async fn basic_seed_notification_is_archived_as_an_event_without_the_secret() {
    let app = spawn_app(&[]).await;
    // Microsoft's "Teams resources change notifications" document shows a single item; Graph
    // sends it inside a collection.
    let item = fixture_with_client_state("channel_message_basic_item.json", CLIENT_STATE);
    let body = format!("{{\"value\": [{item}]}}");
    let r = app.post("/api/notifications", body).await;
    assert_eq!(r.status(), StatusCode::ACCEPTED);
    let events = app.objects(Kind::Events).await;
    assert_eq!(events.len(), 1);
    let name = events[0].as_str();
    assert!(
        name.starts_with("events/2021/02/02/9f9d1ed0-c9cc-42e7-8d80-a7fc4b0cda3c/"),
        "{name}"
    );
    let record = app.read(&events[0]).await;
    assert_eq!(record["eventKind"], "chatMessage");
    assert_eq!(record["changeType"], "created");
    assert_eq!(record["rich"], false);
    assert_eq!(record["resourceData"]["id"], "1612293113399");
    let raw = std::fs::read_to_string(app.archive_dir.join(name)).unwrap();
    assert!(
        !raw.contains(CLIENT_STATE),
        "the clientState is never stored"
    );
    assert_eq!(app.counts().await.len(), 1, "only events/");
}

#[tokio::test]
async fn lifecycle_notifications_are_archived_under_lifecycle() {
    let app = spawn_app(&[]).await;
    let body = serde_json::json!({"value": [
        {"subscriptionId": "sub-1", "lifecycleEvent": "reauthorizationRequired", "clientState": CLIENT_STATE,
         "subscriptionExpirationDateTime": "2026-11-24T10:00:00Z", "tenantId": "t"},
        {"subscriptionId": "sub-2", "lifecycleEvent": "missed", "clientState": CLIENT_STATE,
         "subscriptionExpirationDateTime": "2026-11-24T10:00:00Z", "tenantId": "t"},
        {"subscriptionId": "sub-3", "lifecycleEvent": "subscriptionRemoved", "clientState": "forged"}
    ]});
    let r = app.post("/api/lifecycle", body.to_string()).await;
    assert_eq!(r.status(), StatusCode::ACCEPTED);
    let objects = app.objects(Kind::Lifecycle).await;
    assert_eq!(objects.len(), 2);
    let mut seen: Vec<String> = Vec::new();
    for o in &objects {
        seen.push(
            app.read(o).await["lifecycleEvent"]
                .as_str()
                .unwrap()
                .to_string(),
        );
    }
    seen.sort();
    assert_eq!(seen, ["missed", "reauthorizationRequired"]);
    assert_eq!(app.counts().await, HashMap::from([("lifecycle", 2)]));
}

#[tokio::test]
async fn bad_bodies_get_400_and_nothing_is_archived() {
    let app = spawn_app(&[]).await;
    let cases: [(&str, &str); 7] = [
        ("not json", "not JSON"),
        ("", "empty body"),
        ("   ", "empty body"),
        ("{\"value\": 5}", "not a changeNotificationCollection"),
        ("{\"items\": []}", "not a changeNotificationCollection"),
        ("[1,2]", "not a changeNotificationCollection"),
        ("{\"value\": []}", "holds no notifications"),
    ];
    for path in ["/api/notifications", "/api/lifecycle"] {
        for (body, reason) in cases {
            let r = app.post(path, body).await;
            assert_eq!(r.status(), StatusCode::BAD_REQUEST, "{path} {body:?}");
            let text = r.text().await.unwrap();
            assert!(text.contains(reason), "{body:?} -> {text}");
        }
    }
    assert!(app.counts().await.is_empty());
}

#[tokio::test]
async fn bodies_over_the_limit_get_413_with_or_without_content_length() {
    let app = spawn_app(&[("MAX_BODY_BYTES", "2048")]).await;
    let big = batch(
        (0..40)
            .map(|i| basic_item(&format!("s{i}"), "created", Some(CLIENT_STATE)))
            .collect(),
    );
    assert!(big.len() > 2048);
    let r = app.post("/api/notifications", big.clone()).await;
    assert_eq!(r.status(), StatusCode::PAYLOAD_TOO_LARGE);
    // Chunked: no Content-Length, the limit still holds.
    let stream = futures::stream::iter(
        big.into_bytes()
            .chunks(500)
            .map(|c| Ok::<_, std::io::Error>(c.to_vec()))
            .collect::<Vec<_>>(),
    );
    let r = app
        .post("/api/notifications", reqwest::Body::wrap_stream(stream))
        .await;
    assert_eq!(r.status(), StatusCode::PAYLOAD_TOO_LARGE);
    // Under the limit, chunked, is fine.
    let small = batch(vec![basic_item("s", "created", Some(CLIENT_STATE))]);
    let stream = futures::stream::iter(
        small
            .into_bytes()
            .chunks(50)
            .map(|c| Ok::<_, std::io::Error>(c.to_vec()))
            .collect::<Vec<_>>(),
    );
    let r = app
        .post("/api/notifications", reqwest::Body::wrap_stream(stream))
        .await;
    assert_eq!(r.status(), StatusCode::ACCEPTED);
    assert_eq!(app.objects(Kind::Events).await.len(), 1);
}

#[tokio::test]
async fn wrong_or_missing_client_state_is_dropped_and_the_rest_processed() {
    let app = spawn_app(&[]).await;
    let body = batch(vec![
        basic_item("good", "created", Some(CLIENT_STATE)),
        basic_item("wrong", "created", Some("test-client-state-7f3b")),
        basic_item("short", "created", Some("test")),
        basic_item("missing", "created", None),
        basic_item("newtype", "someFutureChangeType", Some(CLIENT_STATE)),
    ]);
    let r = app.post("/api/notifications", body).await;
    assert_eq!(r.status(), StatusCode::ACCEPTED);
    let events = app.objects(Kind::Events).await;
    assert_eq!(events.len(), 2);
    let mut kinds = Vec::new();
    for e in &events {
        let rec = app.read(e).await;
        kinds.push((
            rec["subscriptionId"].as_str().unwrap().to_string(),
            rec["changeType"].as_str().unwrap().to_string(),
        ));
    }
    kinds.sort();
    assert_eq!(
        kinds,
        [
            ("good".to_string(), "created".to_string()),
            ("newtype".into(), "someFutureChangeType".into())
        ]
    );

    // All forged: still 202 (Graph must not learn anything), nothing stored.
    let app = spawn_app(&[]).await;
    let r = app
        .post(
            "/api/notifications",
            batch(vec![basic_item("x", "created", Some("nope"))]),
        )
        .await;
    assert_eq!(r.status(), StatusCode::ACCEPTED);
    assert!(app.counts().await.is_empty());
}

#[tokio::test]
async fn without_a_configured_client_state_everything_is_dropped() {
    let app = spawn_app(&[("NOTIFICATION_CLIENT_STATE", "")]).await;
    let r = app
        .post(
            "/api/notifications",
            batch(vec![basic_item("x", "created", Some(""))]),
        )
        .await;
    assert_eq!(r.status(), StatusCode::ACCEPTED);
    assert!(app.counts().await.is_empty());
}

#[tokio::test]
async fn other_methods_and_paths() {
    let app = spawn_app(&[]).await;
    for path in ["/api/notifications", "/api/lifecycle"] {
        for method in [
            reqwest::Method::GET,
            reqwest::Method::PUT,
            reqwest::Method::DELETE,
            reqwest::Method::PATCH,
        ] {
            let r = app
                .http
                .request(method.clone(), format!("{}{path}", app.url))
                .send()
                .await
                .unwrap();
            assert_eq!(
                r.status(),
                StatusCode::METHOD_NOT_ALLOWED,
                "{method} {path}"
            );
            assert_eq!(r.headers()["allow"], "POST");
        }
    }
    let r = app
        .http
        .post(format!("{}/api/other", app.url))
        .body("{}")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
    let r = app
        .http
        .get(format!("{}/api/notifications/extra", app.url))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn the_same_batch_posted_three_times_is_one_object_per_item() {
    let app = spawn_app(&[]).await;
    let body = batch(vec![
        basic_item("a", "created", Some(CLIENT_STATE)),
        basic_item("a", "updated", Some(CLIENT_STATE)),
        basic_item("b", "deleted", Some(CLIENT_STATE)),
    ]);
    for _ in 0..3 {
        assert_eq!(
            app.post("/api/notifications", body.clone()).await.status(),
            StatusCode::ACCEPTED
        );
    }
    // Re-serialised with another key order and whitespace: still the same items.
    let reordered: serde_json::Value = serde_json::from_str(&body).unwrap();
    let pretty = serde_json::to_string_pretty(&reordered).unwrap();
    assert_eq!(
        app.post("/api/notifications", pretty).await.status(),
        StatusCode::ACCEPTED
    );
    assert_eq!(app.objects(Kind::Events).await.len(), 3);
    assert_eq!(app.counts().await.len(), 1);
}

#[tokio::test]
async fn a_failing_archive_answers_503_and_never_202() {
    let app = spawn_app(&[]).await;
    // Make `events/` impossible to create: a plain file where the folder must go.
    std::fs::create_dir_all(&app.archive_dir).unwrap();
    std::fs::write(app.archive_dir.join("events"), b"in the way").unwrap();
    let r = app
        .post(
            "/api/notifications",
            batch(vec![basic_item("a", "created", Some(CLIENT_STATE))]),
        )
        .await;
    assert_eq!(r.status(), StatusCode::SERVICE_UNAVAILABLE);
    // Once the archive works again, Graph's retry succeeds.
    std::fs::remove_file(app.archive_dir.join("events")).unwrap();
    let r = app
        .post(
            "/api/notifications",
            batch(vec![basic_item("a", "created", Some(CLIENT_STATE))]),
        )
        .await;
    assert_eq!(r.status(), StatusCode::ACCEPTED);
    assert_eq!(app.objects(Kind::Events).await.len(), 1);
}

#[tokio::test]
async fn seed_payloads_with_trailing_commas_are_understood() {
    let app = spawn_app(&[]).await;
    // The envelope in Microsoft's "emergency call event notifications" document has a trailing
    // comma in resourceData; it is rich, and without validationTokens that can be checked, it is
    // kept as rejected evidence, not as an event.
    let body = fixture_with_client_state("emergency_call_envelope.json", CLIENT_STATE);
    let r = app.post("/api/notifications", body).await;
    assert_eq!(r.status(), StatusCode::ACCEPTED);
    assert_eq!(app.counts().await, HashMap::from([("rejected", 1)]));
}

#[tokio::test]
async fn shutdown_drains_a_request_in_flight() {
    let mut app = spawn_app(&[]).await;
    let body = batch(vec![basic_item("drain", "created", Some(CLIENT_STATE))]);
    let addr = app.url.trim_start_matches("http://").to_string();
    let mut stream = tokio::net::TcpStream::connect(&addr).await.unwrap();
    let head = format!(
        "POST /api/notifications HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n",
        body.len()
    );
    stream.write_all(head.as_bytes()).await.unwrap();
    stream.write_all(&body.as_bytes()[..10]).await.unwrap();
    tokio::time::sleep(Duration::from_millis(100)).await;
    // Ask the server to stop while the body is half sent.
    let stopping = tokio::spawn(async move {
        app.stop().await;
        app
    });
    tokio::time::sleep(Duration::from_millis(100)).await;
    stream.write_all(&body.as_bytes()[10..]).await.unwrap();
    let mut answer = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(10), stream.read_to_end(&mut answer)).await;
    let answer = String::from_utf8_lossy(&answer);
    assert!(answer.starts_with("HTTP/1.1 202"), "{answer}");
    let app = tokio::time::timeout(Duration::from_secs(10), stopping)
        .await
        .expect("server stops")
        .unwrap();
    assert_eq!(app.objects(Kind::Events).await.len(), 1);
}

/// The same path with the Blob archive on the real Azurite: events land in the container, a
/// resend is one blob, and a stopped Azurite turns the answer into 503.
#[tokio::test]
async fn blob_archive_on_azurite_and_503_when_it_stops() {
    use teams_notifications::archive::Archive;
    let mut azurite = crate::azurite::Azurite::start_private();
    let container = crate::azurite::unique_container("server");
    let connection = crate::azurite::connection_string(azurite.endpoint());
    let app = spawn_app(&[
        ("ARCHIVE_CONNECTION", connection.as_str()),
        ("ARCHIVE_CONTAINER", container.as_str()),
    ])
    .await;
    let body = batch(vec![
        basic_item("blob-a", "created", Some(CLIENT_STATE)),
        basic_item("blob-b", "created", Some(CLIENT_STATE)),
    ]);
    for _ in 0..2 {
        assert_eq!(
            app.post("/api/notifications", body.clone()).await.status(),
            StatusCode::ACCEPTED
        );
    }
    let archive = teams_notifications::archive::blob::BlobArchive::from_connection_string(
        &connection.clone().into(),
        &container,
    )
    .await
    .unwrap();
    let events = archive.list(Kind::Events).await.unwrap();
    assert_eq!(events.len(), 2);
    let record: serde_json::Value =
        serde_json::from_slice(&archive.get(&events[0]).await.unwrap().unwrap()).unwrap();
    assert_eq!(record["eventKind"], "chatMessage");
    assert!(
        app.counts().await.is_empty(),
        "nothing went to the filesystem"
    );

    azurite.stop();
    let r = app
        .post(
            "/api/notifications",
            batch(vec![basic_item("blob-c", "created", Some(CLIENT_STATE))]),
        )
        .await;
    assert_eq!(r.status(), StatusCode::SERVICE_UNAVAILABLE);
}
