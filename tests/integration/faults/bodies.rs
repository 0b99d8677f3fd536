//! Hostile and big bodies under an open-files limit of 1024: 4 MiB of empty items costs a 413
//! and one log line; a valid batch of 1,100 notifications is stored whole (never 503).

use reqwest::StatusCode;

use super::process::{Launch, PATIENCE};
use super::{archived_ids, basic_body, scratch};
use crate::support::CLIENT_STATE;

/// `{"value":[{},{},…]}` just under the default 4 MiB body limit.
fn empty_items_body() -> String {
    let limit = 4 * 1024 * 1024;
    let n = (limit - 16) / 3;
    let mut body = String::with_capacity(limit);
    body.push_str("{\"value\":[");
    for i in 0..n {
        body.push_str(if i == 0 { "{}" } else { ",{}" });
    }
    body.push_str("]}");
    assert!(body.len() <= limit);
    body
}

fn lines_with<'a>(log: &'a str, needle: &str) -> Vec<&'a str> {
    log.lines().filter(|l| l.contains(needle)).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_bodies_cost_one_line_and_a_big_valid_batch_is_stored() {
    let s = scratch();
    let handler = Launch::new(&s.archive, &s.log)
        .set("MAX_ITEMS_PER_REQUEST", "2000")
        .open_files(1024)
        .start()
        .await;
    let http = reqwest::Client::new();
    let post = |body: String| {
        let http = http.clone();
        let url = format!("{}/api/notifications", handler.url);
        async move {
            http.post(url)
                .header("content-type", "application/json")
                .body(body)
                .send()
                .await
                .unwrap()
        }
    };

    // 1.4 million empty items: refused by count, with the reason, in one line.
    let r = post(empty_items_body()).await;
    assert_eq!(r.status(), StatusCode::PAYLOAD_TOO_LARGE);
    assert!(r.text().await.unwrap().contains("more than 2000 items"));

    // 1,500 items with a wrong clientState: 202 (Graph's advice), one summary line.
    let wrong: Vec<String> = (0..1_500).map(|i| format!("wrong-{i}")).collect();
    assert_eq!(
        post(basic_body(&wrong, "not-the-secret")).await.status(),
        StatusCode::ACCEPTED
    );

    // 1,100 valid items: more files than the open-files limit, stored whole.
    let valid: Vec<String> = (0..1_100).map(|i| format!("valid-{i}")).collect();
    let r = post(basic_body(&valid, CLIENT_STATE)).await;
    assert_eq!(
        r.status(),
        StatusCode::ACCEPTED,
        "{}",
        r.text().await.unwrap()
    );
    let archived = archived_ids(&s.archive);
    assert!(valid.iter().all(|id| archived.contains(id)));
    assert!(wrong.iter().all(|id| !archived.contains(id)));

    assert!(handler.terminate(PATIENCE).await.is_some());
    let log = std::fs::read_to_string(&s.log).unwrap();
    let refused = lines_with(&log, "items in one request");
    assert_eq!(refused.len(), 1, "{refused:#?}");
    let dropped = lines_with(&log, "notifications dropped");
    assert_eq!(
        dropped.len(),
        1,
        "one summary line for the dropped items: {dropped:#?}"
    );
    assert!(
        dropped[0].contains("count=1500") && dropped[0].contains("clientState"),
        "{}",
        dropped[0]
    );
    assert!(
        log.lines().count() < 30,
        "the log grew with the items:\n{}",
        &log[..log.len().min(4000)]
    );
}
