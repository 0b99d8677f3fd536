//! The `handler` binary as the Functions host and an operator run it.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use teams_notifications::devtools::certificates as dev;
use teams_notifications::graph::crypto;

fn handler() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_handler"));
    // A clean environment: only what each test sets (plus PATH for the dynamic loader).
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

#[test]
fn version_is_printed() {
    let out = handler().arg("--version").output().unwrap();
    assert!(out.status.success());
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        format!("handler {}", env!("CARGO_PKG_VERSION"))
    );
}

#[tokio::test]
async fn without_arguments_it_serves_on_the_host_port_and_stops_on_sigterm() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let mut child = handler()
        .env("FUNCTIONS_CUSTOMHANDLER_PORT", port.to_string())
        .env("ARCHIVE_DIR", dir.path())
        .env("NOTIFICATION_CLIENT_STATE", "s")
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let url = format!("http://127.0.0.1:{port}");
    let client = reqwest::Client::new();
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if let Ok(r) = client.get(&url).send().await {
            assert_eq!(r.status(), 200);
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the handler never answered GET /"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let r = client
        .post(format!(
            "{url}/api/notifications?validationToken=Validation%3a+Testing"
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(r.text().await.unwrap(), "Validation: Testing");
    let status = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let deadline = Instant::now() + Duration::from_secs(10);
    let exit = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        assert!(
            Instant::now() < deadline,
            "the handler did not stop on SIGTERM"
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(exit.success(), "{exit:?}");
}

#[test]
fn a_bad_setting_is_named_and_the_exit_code_is_nonzero() {
    let out = handler()
        .env("FUNCTIONS_CUSTOMHANDLER_PORT", "http")
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("FUNCTIONS_CUSTOMHANDLER_PORT"));
}

#[test]
fn decrypt_reads_a_captured_notification_with_the_configured_key() {
    let dir = tempfile::tempdir().unwrap();
    let key = dev::self_signed("cert-2026", 30);
    let pem = dir.path().join("notify.pem");
    std::fs::write(&pem, dev::to_pem(&key).unwrap()).unwrap();
    let payload =
        br##"{"@odata.type":"#microsoft.graph.callevent","eventType":"callEnded","id":"n1"}"##;
    let content = crypto::encrypt(payload, &key.certificate, "cert-2026").unwrap();
    let item = serde_json::json!({"subscriptionId": "s1", "changeType": "updated", "tenantId": "t",
        "resourceData": {"@odata.type": "#microsoft.graph.callevent"}, "encryptedContent": content});
    let file = dir.path().join("captured.json");
    std::fs::write(
        &file,
        serde_json::json!({"value": [item], "validationTokens": ["x"]}).to_string(),
    )
    .unwrap();

    let out = handler()
        .args(["decrypt", file.to_str().unwrap()])
        .env(
            "NOTIFICATION_CERTIFICATES",
            format!("cert-2026={}", pem.display()),
        )
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let decoded: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(decoded[0]["eventKind"], "callevent");
    assert_eq!(decoded[0]["certificateId"], "cert-2026");
    assert_eq!(decoded[0]["payload"]["eventType"], "callEnded");

    // Without the key: a clear per-item error and a failing exit code.
    let out = handler()
        .args(["decrypt", file.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let decoded: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(decoded[0]["reasonCode"], "noKeys");
}

#[tokio::test]
async fn demo_runs_to_completion_and_its_archive_holds_the_decoded_meeting() {
    use teams_notifications::archive::{Archive, Kind, fs::FsArchive};
    let dir = tempfile::tempdir().unwrap();
    let out = handler()
        .args(["demo", "--dir", dir.path().to_str().unwrap()])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("Validation handshake: 200"), "{stdout}");

    let archive = FsArchive::open(&dir.path().join("archive")).await.unwrap();
    let mut kinds = std::collections::BTreeMap::new();
    let mut summaries = Vec::new();
    for name in archive.list(Kind::Events).await.unwrap() {
        let e: serde_json::Value =
            serde_json::from_slice(&archive.get(&name).await.unwrap().unwrap()).unwrap();
        *kinds
            .entry(e["eventKind"].as_str().unwrap().to_string())
            .or_insert(0) += 1;
        summaries.push(e["summary"].as_str().unwrap().to_string());
        if e["rich"] == true {
            assert_eq!(e["certificateId"], "demo-cert");
        }
    }
    let expected: std::collections::BTreeMap<String, i32> = [
        ("callevent", 8),
        ("chat", 1),
        ("chatMessage", 4),
        ("conversationMember", 1),
        ("emergencyCallEvent", 1),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect();
    assert_eq!(kinds, expected);
    for wanted in [
        "callStarted",
        "rosterUpdated: Adele Vance joined; Guest Caller waiting in lobby",
        "rosterUpdated: Guest Caller left",
        "callEnded",
        "emergency callStarted: Megan Bowen dialled 911 from Microsoft Way, Redmond, WA (policy EmergencyPolicy)",
    ] {
        assert!(
            summaries.iter().any(|s| s == wanted),
            "missing {wanted:?} in {summaries:?}"
        );
    }
    assert_eq!(archive.list(Kind::Quarantine).await.unwrap().len(), 2);
    assert_eq!(archive.list(Kind::Rejected).await.unwrap().len(), 1);
    assert_eq!(archive.list(Kind::Lifecycle).await.unwrap().len(), 1);

    // It ends with the meeting's attendance page, and says where it is.
    let page = std::fs::canonicalize(dir.path().join("attendance.html")).unwrap();
    assert!(
        stdout.trim_end().ends_with(&page.display().to_string()),
        "{stdout}"
    );
    let html = std::fs::read_to_string(&page).unwrap();
    for wanted in [
        "Guest Caller waited in the lobby",
        "Nestor Wilke left the roster",
        "Participant has been removed from the meeting call.",
        "call ended",
    ] {
        assert!(html.contains(wanted), "{wanted:?} missing from the page");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn simulate_plays_graph_against_a_running_handler() {
    use teams_notifications::archive::{Archive, Kind, fs::FsArchive};
    let dir = tempfile::tempdir().unwrap();
    let key = dev::self_signed("sim-cert", 30);
    let pem = dir.path().join("sim-cert.pem");
    std::fs::write(&pem, dev::to_pem(&key).unwrap()).unwrap();
    let issuer_port = free_port();
    let settings = [
        ("NOTIFICATION_CLIENT_STATE", "sim-state".to_string()),
        (
            "GRAPH_TENANT_ID",
            "f69f5191-20ae-4093-8dae-3ec09edeb253".to_string(),
        ),
        (
            "GRAPH_CLIENT_ID",
            "0a1b2c3d-4e5f-4a6b-8c7d-9e0f1a2b3c4d".to_string(),
        ),
        (
            "NOTIFICATION_CERTIFICATES",
            format!("sim-cert={}", pem.display()),
        ),
    ];
    // The handler trusts the issuer `simulate` will run on `issuer_port`.
    let authority = format!("http://127.0.0.1:{issuer_port}");
    let mut overrides: Vec<(&str, &str)> = settings.iter().map(|(k, v)| (*k, v.as_str())).collect();
    overrides.push(("AUTHORITY_HOST", authority.as_str()));
    let app = crate::support::spawn_app(&overrides).await;

    let url = format!("{}/api/notifications", app.url);
    let issuer_key = dir.path().join("issuer.pem");
    let out = tokio::task::block_in_place(|| {
        handler()
            .envs(settings.iter().map(|(k, v)| (*k, v.as_str())))
            .args([
                "simulate",
                "--url",
                &url,
                "--scenario",
                "meeting",
                "--count",
                "20",
                "--batch",
                "5",
            ])
            .args([
                "--issuer-port",
                &issuer_port.to_string(),
                "--issuer-key",
                issuer_key.to_str().unwrap(),
            ])
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
        stdout.contains("sent 4 request(s)") && stdout.contains("202: 4"),
        "{stdout}"
    );
    assert!(stdout.contains("p50") && stdout.contains("p99"), "{stdout}");
    assert!(
        issuer_key.exists(),
        "the issuer key is kept for the next run"
    );

    let archive = FsArchive::open(&app.archive_dir).await.unwrap();
    let events = archive.list(Kind::Events).await.unwrap();
    assert_eq!(events.len(), 20);
    let e: serde_json::Value =
        serde_json::from_slice(&archive.get(&events[0]).await.unwrap().unwrap()).unwrap();
    assert_eq!(e["certificateId"], "sim-cert");
    assert!(archive.list(Kind::Rejected).await.unwrap().is_empty());
}

#[tokio::test]
async fn it_starts_and_serves_on_a_machine_without_system_ca_certificates() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let mut child = handler()
        .env("FUNCTIONS_CUSTOMHANDLER_PORT", port.to_string())
        .env("ARCHIVE_DIR", dir.path())
        .env("GRAPH_TENANT_ID", "t")
        .env("GRAPH_CLIENT_ID", "c")
        // No roots anywhere: the platform verifier finds none.
        .env("SSL_CERT_FILE", "/dev/null")
        .env("SSL_CERT_DIR", dir.path().join("no-such-dir"))
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let client = reqwest::Client::new();
    let deadline = Instant::now() + Duration::from_secs(20);
    let ready = loop {
        if let Ok(r) = client.get(format!("http://127.0.0.1:{port}")).send().await {
            break r.status();
        }
        if child.try_wait().unwrap().is_some() || Instant::now() > deadline {
            break reqwest::StatusCode::SERVICE_UNAVAILABLE;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let _ = child.kill();
    let _ = child.wait();
    assert_eq!(ready, 200, "the handler must start without system roots");
}
