//! Log injection: ids holding `\n`, `\r`, ANSI escapes or a Unicode line separator give one
//! log line each, escaped, in the text format and in `LOG_FORMAT=json`: no line starts like the
//! forged one, a request carrying one such id gives exactly one line, which holds the whole id,
//! and CR, ESC and the line separator never reach the log raw.

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

/// Outside values that try to write lines of their own or drive the reader's terminal. The
/// first holds a whole line in our text format, timestamp and level included.
const HOSTILE: [&str; 4] = [
    "s1\n2026-12-01T00:00:00.000000Z  INFO FORGED-LF: all clear",
    "s2\rFORGED-CR",
    "s3\u{1b}[2J\u{1b}[31mFORGED-ANSI\u{1b}[0m",
    "s4\u{2028}FORGED-LS",
];

/// What a forged line would start with (no line of ours has this timestamp).
const FORGED_PREFIX: &str = "2026-12-01T00:00:00.000000Z";

/// Each hostile id is also sent alone, prefixed with this, in a request of its own whose items
/// are dropped: that request gives exactly one log line naming it.
const ALONE: &str = "alone-";

/// How the handler writes an outside value: control characters as escapes.
fn escaped(value: &str) -> String {
    value
        .replace('\n', "\\n")
        .replace('\r', "\\r")
        .replace('\u{1b}', "\\u{1b}")
        .replace('\u{2028}', "\\u{2028}")
}

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
    // Dropped for a wrong clientState: all in one request, then each alone.
    let dropped: Vec<_> = HOSTILE.iter().map(|s| item(s, "wrong")).collect();
    assert_eq!(post(json!({"value": dropped})).await, StatusCode::ACCEPTED);
    for s in HOSTILE {
        let alone = item(&format!("{ALONE}{s}"), "wrong");
        assert_eq!(post(json!({"value": [alone]})).await, StatusCode::ACCEPTED);
    }
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

async fn run(format: &str) -> Vec<u8> {
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
    std::fs::read(&s.log).unwrap()
}

/// The log as bytes: no CR, ESC or line separator may appear raw, in either format.
fn assert_no_raw_controls(log: &[u8]) {
    for (bad, what) in [
        (&b"\r"[..], "CR"),
        (&b"\x1b"[..], "ESC"),
        ("\u{2028}".as_bytes(), "line separator"),
    ] {
        assert!(
            !log.windows(bad.len()).any(|w| w == bad),
            "a raw {what} in the log:\n{}",
            String::from_utf8_lossy(log)
        );
    }
}

/// The checks of both formats, on `lines` (each line's text as the reader sees it: the text
/// line, or every string of the JSON object).
fn assert_one_escaped_line_per_id(raw: &str, lines: &[String]) {
    for line in raw.lines() {
        assert!(
            !line.trim_start().starts_with(FORGED_PREFIX),
            "a forged line: {line:?}\nlog:\n{raw}"
        );
    }
    for hostile in HOSTILE {
        // The request that carried only this id: exactly one line, and the whole id is on it.
        let marker = format!("{ALONE}{}", &hostile[..2]);
        let naming: Vec<&String> = lines.iter().filter(|l| l.contains(&marker)).collect();
        assert_eq!(
            naming.len(),
            1,
            "{marker}: one line per request, got {naming:#?}\nlog:\n{raw}"
        );
        let whole = escaped(&format!("{ALONE}{hostile}"));
        assert!(
            naming[0].contains(&whole),
            "{marker}: the line does not hold the whole escaped id {whole:?}: {:?}",
            naming[0]
        );
        // Wherever the id shows (dropped, quarantined, tenant not covered), it shows whole.
        let tail = hostile.rsplit("FORGED").next().unwrap();
        let tail = format!("FORGED{}", escaped(tail));
        let mut seen = 0;
        for line in lines.iter().filter(|l| l.contains(&tail)) {
            seen += 1;
            assert!(
                line.contains(&escaped(hostile)),
                "{tail:?} is on a line without the id's start: {line:?}\nlog:\n{raw}"
            );
        }
        assert!(seen > 1, "{tail:?} was logged once at most:\n{raw}");
    }
}

#[tokio::test]
async fn hostile_ids_give_one_escaped_text_line_each() {
    let bytes = run("text").await;
    assert_no_raw_controls(&bytes);
    let log = String::from_utf8(bytes).expect("logs are UTF-8");
    for line in log.lines() {
        // Every line is one of ours: a timestamp, then a level.
        let starts_ours = line.len() > 30
            && line.as_bytes()[..4].iter().all(u8::is_ascii_digit)
            && line.get(27..).is_some_and(|rest| {
                ["TRACE", "DEBUG", "INFO", "WARN", "ERROR"]
                    .iter()
                    .any(|l| rest.trim_start().starts_with(l))
            });
        assert!(
            starts_ours,
            "a line that is not one of ours: {line:?}\nlog:\n{log}"
        );
    }
    let lines: Vec<String> = log.lines().map(String::from).collect();
    assert_one_escaped_line_per_id(&log, &lines);
}

/// Every string in `v`, joined: what a reader of the JSON line sees.
fn strings(v: &serde_json::Value, out: &mut String) {
    match v {
        serde_json::Value::String(s) => {
            out.push_str(s);
            out.push('\u{0}');
        }
        serde_json::Value::Array(a) => a.iter().for_each(|v| strings(v, out)),
        serde_json::Value::Object(o) => o.values().for_each(|v| strings(v, out)),
        _ => {}
    }
}

#[tokio::test]
async fn json_logs_are_one_object_per_line() {
    let bytes = run("json").await;
    assert_no_raw_controls(&bytes);
    let log = String::from_utf8(bytes).expect("logs are UTF-8");
    let mut lines = Vec::new();
    for line in log.lines() {
        let v: serde_json::Value = serde_json::from_str(line)
            .unwrap_or_else(|e| panic!("not one JSON object: {e}: {line:?}"));
        assert!(
            v["level"].is_string() && v["timestamp"].is_string(),
            "{line}"
        );
        assert!(
            !v["timestamp"].as_str().unwrap().starts_with(FORGED_PREFIX),
            "{line}"
        );
        let mut text = String::new();
        strings(&v, &mut text);
        lines.push(text);
    }
    assert_one_escaped_line_per_id(&log, &lines);
}
