//! Event Hubs invocations of hostile events, posted to the process as the Functions host posts
//! them: the receiver's first stage runs once per event, but an invocation is one request, so
//! its dropped items give one summary line and its quarantined items another, never one per
//! event.

use reqwest::StatusCode;
use serde_json::Value;

use teams_notifications::devtools::certificates as dev;
use teams_notifications::devtools::eventhub_host::{self, HostEncoding};
use teams_notifications::devtools::simulate;

use super::process::{Launch, PATIENCE};
use super::scratch;
use crate::eventhub::{basic_item, chat_step, target};
use crate::support::CLIENT_STATE;

fn lines_with<'a>(log: &'a str, needle: &str) -> Vec<&'a str> {
    log.lines().filter(|l| l.contains(needle)).collect()
}

/// Events of two items each, both with a wrong clientState (`sub-{n}-a`, `sub-{n}-b`).
fn forged_events(n: usize) -> Vec<String> {
    (0..n)
        .map(|n| {
            let items = ["a", "b"]
                .iter()
                .map(|x| {
                    let mut item = basic_item(n, "forged-state");
                    item["subscriptionId"] = format!("sub-{n}-{x}").into();
                    item
                })
                .collect();
            simulate::collection(items, &[])
        })
        .collect()
}

/// Rich events the handler cannot finish: three whose payload Graph left in blob storage (no
/// container configured) and two for a key it does not hold.
fn unfinishable_events() -> Vec<String> {
    let key = dev::self_signed("not-configured", 30);
    let rich = |n: usize| {
        simulate::rich_item(
            &chat_step(n),
            &target(CLIENT_STATE),
            &key.certificate,
            &key.id,
        )
        .unwrap()
    };
    let large = (0..3).map(|n| {
        let mut item = rich(n);
        let obj = item.as_object_mut().unwrap();
        for field in ["resource", "resourceData", "encryptedContent"] {
            obj.remove(field);
        }
        obj.insert("additionalPayloadStorageId".into(), format!("p-{n}").into());
        item
    });
    large
        .chain((10..12).map(rich))
        .map(|item| simulate::collection(vec![item], &[]))
        .collect()
}

#[tokio::test]
async fn an_invocation_logs_one_line_for_its_dropped_and_one_for_its_quarantined_items() {
    let s = scratch();
    let spool = s.archive.with_file_name("spool");
    let handler = Launch::new(&s.archive, &s.log)
        .set("EVENTHUB_SPOOL_DIR", &spool.display().to_string())
        .start()
        .await;
    let bodies: Vec<String> = forged_events(5)
        .into_iter()
        .chain(unfinishable_events())
        .collect();
    let invocation =
        eventhub_host::invocation(&bodies, HostEncoding::StringOfArray, None, "0", 100);
    let r = reqwest::Client::new()
        .post(format!("{}/eventhub", handler.url))
        .header("content-type", "application/json")
        .body(invocation)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let answer: Value = r.json().await.unwrap();
    let counts = &answer["ReturnValue"];
    assert_eq!(counts["eventCount"], 10, "{answer}");
    assert_eq!(counts["droppedClientState"], 10, "{answer}");
    assert_eq!(counts["quarantined"], 5, "{answer}");
    assert!(handler.terminate(PATIENCE).await.is_some());

    let log = std::fs::read_to_string(&s.log).unwrap();
    let dropped = lines_with(&log, "notifications dropped");
    assert_eq!(dropped.len(), 1, "one line per invocation:\n{log}");
    assert!(
        dropped[0].contains("count=10")
            && dropped[0].contains("first_subscription_ids=[sub-0-a, sub-0-b, sub-1-a]"),
        "{}",
        dropped[0]
    );
    let quarantined = lines_with(&log, "notifications quarantined");
    assert_eq!(quarantined.len(), 1, "one line per invocation:\n{log}");
    assert!(
        quarantined[0].contains("count=5")
            && quarantined[0].contains("reasons=additionalPayloadNotConfigured=3,noKeys=2"),
        "{}",
        quarantined[0]
    );
}
