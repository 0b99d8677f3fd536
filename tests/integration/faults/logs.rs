//! Log injection: ids holding `\n`, `\r`, ANSI escapes or a Unicode line separator give one
//! log line each, escaped, in the text format and in `LOG_FORMAT=json`.

use reqwest::StatusCode;
use serde_json::json;

use teams_notifications::devtools::certificates::{self_signed, to_pem};
use teams_notifications::devtools::issuer::{LocalIssuer, TokenSpec};
use teams_notifications::graph::crypto;

use super::process::Launch;
use super::scratch;
use crate::support::CLIENT_STATE;

const APP: &str = "8f6c1e4a-34a4-4d25-9a4b-6b7a0c1d2e3f";
const TENANT: &str = "72f988bf-86f1-41af-91ab-2d7cd011db47";

/// Outside values that try to write lines of their own or drive the reader's terminal.
const HOSTILE: [&str; 4] = [
    "s1\n2026-12-01T00:00:00.000000Z  INFO FORGED-LF: all clear",
    "s2\rFORGED-CR",
    "s3\u{1b}[2J\u{1b}[31mFORGED-ANSI\u{1b}[0m",
    "s4\u{2028}FORGED-LS",
];

/// Posts every kind of request whose log lines carry outside values.
async fn provoke(url: &str, issuer: &LocalIssuer, key: &teams_notifications::keys::DecryptionKey) {
    let http = reqwest::Client::new();
    let post = |body: serde_json::Value| {
        let http = http.clone();
        async move {
            http.post(format!("{url}/api/notifications"))
                .json(&body)
                .send()
                .await
                .unwrap()
                .status()
        }
    };
    let item = |sub: &str, state: &str| json!({"subscriptionId": sub, "clientState": state, "changeType": "created", "resource": "chats('1')/messages('2')", "tenantId": TENANT});
    // Dropped for a wrong clientState.
    let dropped: Vec<_> = HOSTILE.iter().map(|s| item(s, "wrong")).collect();
    assert_eq!(post(json!({"value": dropped})).await, StatusCode::ACCEPTED);
    // Rich items under an unknown (hostile) certificate id: quarantined, with reasons. (Summary
    // lines name the first three ids: the last hostile id goes first here.)
    let token = issuer.mint(&TokenSpec::v1(TENANT, APP));
    let rich: Vec<_> = [HOSTILE[3], HOSTILE[0], HOSTILE[1], HOSTILE[2]]
        .iter()
        .map(|s| {
            let mut content = crypto::encrypt(b"{}", &key.certificate, s).unwrap();
            content.encryption_certificate_thumbprint = Some(format!("{s}-thumb"));
            let mut i = item(s, CLIENT_STATE);
            i["encryptedContent"] = serde_json::to_value(content).unwrap();
            i
        })
        .collect();
    assert_eq!(
        post(json!({"value": rich, "validationTokens": [token]})).await,
        StatusCode::ACCEPTED
    );
    // A rich batch whose token does not cover the item's tenant: the reason names the item.
    let mut other = rich[0].clone();
    other["tenantId"] = HOSTILE[1].into();
    assert_eq!(
        post(json!({"value": [other], "validationTokens": [token]})).await,
        StatusCode::ACCEPTED
    );
}

async fn run(format: &str) -> String {
    let s = scratch();
    let issuer = LocalIssuer::start().await.unwrap();
    let key = self_signed("known", 1);
    let pem = s.log.with_file_name("known.pem");
    std::fs::write(&pem, to_pem(&key).unwrap()).unwrap();
    let handler = Launch::new(&s.archive, &s.log)
        .set("LOG_FORMAT", format)
        .set("GRAPH_TENANT_ID", TENANT)
        .set("GRAPH_CLIENT_ID", APP)
        .set("AUTHORITY_HOST", issuer.authority_host())
        .set(
            "NOTIFICATION_CERTIFICATES",
            &format!("known={}", pem.display()),
        )
        .start()
        .await;
    provoke(&handler.url, &issuer, &key).await;
    assert!(handler.terminate(super::process::PATIENCE).await.is_some());
    issuer.shutdown().await;
    String::from_utf8(std::fs::read(&s.log).unwrap()).expect("logs are UTF-8")
}

fn assert_no_raw_controls(log: &str) {
    for bad in ['\r', '\u{1b}', '\u{2028}'] {
        assert!(!log.contains(bad), "raw {bad:?} in the log:\n{log}");
    }
}

#[tokio::test]
async fn hostile_ids_give_one_escaped_text_line_each() {
    let log = run("text").await;
    assert_no_raw_controls(&log);
    for line in log.lines() {
        // Every line is one of ours: a timestamp, then a level.
        let starts_ours = line.len() > 30
            && line.as_bytes()[..4].iter().all(u8::is_ascii_digit)
            && ["TRACE", "DEBUG", "INFO", "WARN", "ERROR"]
                .iter()
                .any(|l| line[27..].trim_start().starts_with(l));
        assert!(
            starts_ours,
            "a line that is not one of ours: {line:?}\nlog:\n{log}"
        );
    }
    for (escaped, what) in [
        ("s1\\n2026-12-01T00:00:00.000000Z  INFO FORGED-LF", "LF"),
        ("s2\\rFORGED-CR", "CR"),
        ("s3\\u{1b}[2J\\u{1b}[31mFORGED-ANSI", "ANSI"),
        ("s4\\u{2028}FORGED-LS", "line separator"),
    ] {
        assert!(
            log.contains(escaped),
            "the {what} id is not logged escaped:\n{log}"
        );
    }
}

#[tokio::test]
async fn json_logs_are_one_object_per_line() {
    let log = run("json").await;
    assert_no_raw_controls(&log);
    let mut forged = 0;
    for line in log.lines() {
        let v: serde_json::Value = serde_json::from_str(line)
            .unwrap_or_else(|e| panic!("not one JSON object: {e}: {line:?}"));
        assert!(
            v["level"].is_string() && v["timestamp"].is_string(),
            "{line}"
        );
        forged += line.contains("FORGED-LF") as usize;
    }
    assert!(forged > 0, "the hostile ids were not logged at all:\n{log}");
}
