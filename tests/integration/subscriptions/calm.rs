//! Calm reactions, through the real server: repeats get one reaction, reactions run a bounded
//! number at once, take the renewer's lease one at a time for a bounded time and so hold up the
//! renew timer only that long, and `POST /renew` calls arriving while a reconcile runs join it.

use std::time::Duration;

use serde_json::{Value, json};
use wiremock::matchers::{method, path, path_regex};
use wiremock::{Mock, ResponseTemplate};

use super::fakes::*;
use super::{CHAT_MESSAGES, chat_only, timer_body};

fn lifecycle_body(items: &[(String, &str)]) -> String {
    let value: Vec<Value> = items
        .iter()
        .map(|(id, event)| {
            json!({
                "subscriptionId": id,
                "subscriptionExpirationDateTime": "2026-05-06T07:08:09.0000000Z",
                "tenantId": TENANT,
                "clientState": CLIENT_STATE,
                "lifecycleEvent": event,
            })
        })
        .collect();
    json!({ "value": value }).to_string()
}

#[tokio::test]
async fn repeated_lifecycle_items_get_one_reaction_per_subscription_and_event() {
    let h = harness(chat_only()).await;
    let a = h
        .fake
        .insert(existing(CHAT_MESSAGES, "created,updated", 4000));
    let b = h
        .fake
        .insert(existing(CHAT_MESSAGES, "created,updated", 4000));
    let app = &h.server;
    let mut items = vec![(a.clone(), "reauthorizationRequired"); 200];
    items.push((b.clone(), "reauthorizationRequired"));
    let response = app.post("/api/lifecycle", lifecycle_body(&items)).await;
    assert_eq!(response.status(), 202);
    // The same pair again soon after: archived, not reacted to.
    let again = app
        .post("/api/lifecycle", lifecycle_body(&items[..3]))
        .await;
    assert_eq!(again.status(), 202);
    for id in [&a, &b] {
        let want = format!("/v1.0/subscriptions/{id}/reauthorize");
        let mut seen = 0;
        for _ in 0..200 {
            seen = h.requests("POST", &want).await.len();
            if seen > 0 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        assert_eq!(seen, 1, "{want}");
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    let reauthorize_calls = h
        .calls()
        .await
        .into_iter()
        .filter(|(m, p)| m == "POST" && p.ends_with("/reauthorize"))
        .count();
    assert_eq!(
        reauthorize_calls, 2,
        "200 copies and a resend cost one reaction each"
    );
}

#[tokio::test]
async fn reactions_run_a_bounded_number_at_once_and_never_hold_up_the_timer() {
    // A reaction holds the renewer's lease for its Graph calls at most this long.
    let deadline = Duration::from_millis(800);
    let h = harness_tuned(chat_only(), &[], |b| b.with_reaction_deadline(deadline)).await;
    let ids: Vec<String> = (0..40)
        .map(|_| {
            h.fake
                .insert(existing(CHAT_MESSAGES, "created,updated", 4000))
        })
        .collect();
    // Every reauthorization hangs (Graph slow): the reactions pile up behind their permits.
    Mock::given(method("POST"))
        .and(path_regex(r"^/v1\.0/subscriptions/.+/reauthorize$"))
        .respond_with(ResponseTemplate::new(204).set_delay(Duration::from_secs(20)))
        .with_priority(1)
        .mount(&h.graph)
        .await;
    let app = &h.server;
    let items: Vec<(String, &str)> = ids
        .iter()
        .map(|id| (id.clone(), "reauthorizationRequired"))
        .collect();
    assert_eq!(
        app.post("/api/lifecycle", lifecycle_body(&items))
            .await
            .status(),
        202
    );
    // Let the reactions take their permits and queue for the lease.
    tokio::time::sleep(Duration::from_millis(200)).await;
    // The timer waits behind at most the reactions holding a permit, each for at most the
    // deadline: a liveness bound far below the reactions' 20 s (and the lease's 2 minutes).
    let bound = teams_notifications::renewer::gate::DEFAULT_CONCURRENCY;
    let started = std::time::Instant::now();
    let timer = tokio::time::timeout(
        Duration::from_secs(10),
        app.post("/renew", timer_body(false)),
    )
    .await
    .expect("the timer did not wait behind the reactions");
    let waited = started.elapsed();
    assert_eq!(timer.status(), 200);
    let body: Value = timer.json().await.unwrap();
    assert!(body["ReturnValue"]["error"].is_null(), "{body}");
    assert!(
        waited < deadline * (bound as u32 + 1) + Duration::from_secs(2),
        "the timer waited {waited:?}"
    );
    // Under the lease, reauthorizations run one at a time: each one started only once the one
    // before it gave the lease up at its deadline.
    let reauthorizations = h
        .calls()
        .await
        .into_iter()
        .filter(|(m, p)| m == "POST" && p.ends_with("/reauthorize"))
        .count();
    let elapsed = started.elapsed() + Duration::from_millis(200);
    let most = (elapsed.as_millis() / deadline.as_millis()) as usize + 1;
    assert!(
        (1..=most).contains(&reauthorizations),
        "{reauthorizations} reauthorizations in {elapsed:?} with a {deadline:?} deadline each"
    );
}

#[tokio::test]
async fn renew_calls_during_a_reconcile_join_it() {
    let h = harness(chat_only()).await;
    Mock::given(method("GET"))
        .and(path("/v1.0/subscriptions"))
        .respond_with(
            ResponseTemplate::new(200)
                .set_body_json(json!({"value": []}))
                .set_delay(Duration::from_millis(800)),
        )
        .with_priority(1)
        .mount(&h.graph)
        .await;
    let app = &h.server;
    let calls: Vec<_> = (0..30)
        .map(|_| {
            let (http, url) = (app.http.clone(), format!("{}/renew", app.url));
            tokio::spawn(async move {
                let r = http.post(url).body(timer_body(false)).send().await.unwrap();
                assert_eq!(r.status(), 200);
                r.json::<Value>().await.unwrap()
            })
        })
        .collect();
    let mut joined = 0;
    for c in calls {
        joined += c.await.unwrap()["ReturnValue"]["joined"].as_bool().unwrap() as usize;
    }
    let listings = h.requests("GET", "/v1.0/subscriptions").await.len();
    assert!(joined >= 20, "{joined} of 30 joined");
    assert!(
        listings <= 30 - joined,
        "{listings} reconciles for 30 calls"
    );
    // Nothing was created twice.
    assert_eq!(
        h.requests("POST", "/v1.0/subscriptions").await.len(),
        listings
    );
}
