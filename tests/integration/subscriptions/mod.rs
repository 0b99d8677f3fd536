//! The renewer against fakes of Graph and Entra ID (see `fakes`): reconcile, throttling, the
//! timer invocation, the lifecycle reactions, and the wiring through the real server.

mod calm;
mod deployment;
mod eventhub;
pub mod fakes;
mod instances;

use std::collections::HashSet;
use std::time::{Duration, Instant};

use fakes::*;
use serde_json::{Value, json};
use teams_notifications::archive::Kind;
use teams_notifications::graph::notification::{ChangeNotification, parse_collection};
use teams_notifications::graph::subscriptions::{ApiVersion, GraphError};
use teams_notifications::renewer::lifecycle::{self, Reaction};
use teams_notifications::renewer::{self, Action};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;
use wiremock::matchers::{method, path, path_regex};
use wiremock::{Mock, ResponseTemplate};

/// The raw join URL of Microsoft's "meeting call event notifications" document, and the
/// resource Graph must receive for it.
const JOIN_URL: &str = "https://teams.microsoft.com/l/meetup-join/19%3ameeting_ZmYwZTEyYjctZjA5MS00OTkzLWJhNzEtYzFiZDVjNGE0OGFj%40thread.v2/0?context=%7b%22Tid%22%3a%22909c6581-5130-43e9-88f3-fcb3582cde37%22%2c%22Oid%22%3a%22048c94fb-dda6-48b8-9fc8-6740ee418fb9%22%7d";
const MEETING_RESOURCE: &str = "communications/onlineMeetings(joinWebUrl='https%3A%2F%2Fteams.microsoft.com%2Fl%2Fmeetup-join%2F19%253ameeting_ZmYwZTEyYjctZjA5MS00OTkzLWJhNzEtYzFiZDVjNGE0OGFj%2540thread.v2%2F0%3Fcontext%3D%257b%2522Tid%2522%253a%2522909c6581-5130-43e9-88f3-fcb3582cde37%2522%252c%2522Oid%2522%253a%2522048c94fb-dda6-48b8-9fc8-6740ee418fb9%2522%257d')/meetingCallEvents";
const EMERGENCY_RESOURCE: &str =
    "communications/calls/getEmergencyEventsByPolicy(policyName='EmergencyPolicy')";
const CHAT_MESSAGES: &str = "/chats/getAllMessages";

fn seeds() -> Value {
    json!([
        {"meetingJoinUrl": JOIN_URL, "includeResourceData": true},
        {"emergencyPolicy": "EmergencyPolicy"},
        {"resource": CHAT_MESSAGES, "changeType": "created,updated", "includeResourceData": true}
    ])
}

pub(crate) fn chat_only() -> Value {
    json!([{"resource": CHAT_MESSAGES, "changeType": "created,updated", "includeResourceData": true}])
}

fn parse_time(v: &Value) -> OffsetDateTime {
    OffsetDateTime::parse(v.as_str().expect("a date string"), &Rfc3339).unwrap()
}

/// `expected` minutes from now, give or take two minutes.
fn assert_expires_in(v: &Value, expected_minutes: i64) {
    let t = parse_time(v);
    let expected = OffsetDateTime::now_utc() + time::Duration::minutes(expected_minutes);
    assert!(
        (t - expected).abs() < time::Duration::minutes(2),
        "expiration {t} is not ~{expected_minutes} minutes away"
    );
}

fn lifecycle_item(subscription_id: &str, event: &str) -> ChangeNotification {
    let body = json!({"value": [{
        "subscriptionId": subscription_id,
        "subscriptionExpirationDateTime": "2026-05-06T07:08:09.0000000Z",
        "tenantId": TENANT,
        "clientState": CLIENT_STATE,
        "lifecycleEvent": event,
    }]});
    parse_collection(body.to_string().as_bytes())
        .unwrap()
        .value
        .remove(0)
}

pub(crate) fn timer_body(past_due: bool) -> Vec<u8> {
    json!({
        "Data": {"timer": {
            "Schedule": {"AdjustForDST": true},
            "ScheduleStatus": {"Last": "2026-01-01T00:00:00+00:00", "Next": "2026-01-01T00:30:00+00:00", "LastUpdated": "2026-01-01T00:00:00+00:00"},
            "IsPastDue": past_due
        }},
        "Metadata": {"sys": {"MethodName": "renew", "UtcNow": "2026-01-01T00:30:01Z"}}
    })
    .to_string()
    .into_bytes()
}

// ---------------------------------------------------------------------------------------------
// Reconcile
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn creates_what_is_missing_on_the_right_version_with_the_app_token() {
    let h = harness(seeds()).await;
    let report = h.ctx.reconcile().await;
    assert_eq!(report.error, None);
    assert_eq!(report.count(Action::Created), 3, "{:#?}", report.actions);

    // The real ClientSecretCredential asked the fake Entra (over TLS) for the Graph scope.
    let token_requests = h.entra.received_requests().await.unwrap();
    assert_eq!(token_requests.len(), 1, "the token is cached");
    let form: std::collections::HashMap<String, String> =
        url::form_urlencoded::parse(&token_requests[0].body)
            .into_owned()
            .collect();
    assert_eq!(form["grant_type"], "client_credentials");
    assert_eq!(form["client_id"], CLIENT_ID);
    assert_eq!(form["client_secret"], CLIENT_SECRET);
    assert_eq!(form["scope"], format!("{}/.default", h.graph.uri()));

    // Listing on beta (a desired subscription needs it); beta-only resources created on beta.
    assert_eq!(h.requests("GET", "/beta/subscriptions").await.len(), 1);
    let beta = h.requests("POST", "/beta/subscriptions").await;
    let v1 = h.requests("POST", "/v1.0/subscriptions").await;
    assert_eq!((beta.len(), v1.len()), (2, 1));
    let chat: Value = v1[0].body_json().unwrap();
    assert_eq!(chat["resource"], CHAT_MESSAGES);
    assert_eq!(chat["changeType"], "created,updated");
    assert_eq!(chat["notificationUrl"], NOTIFICATION_URL);
    assert_eq!(chat["lifecycleNotificationUrl"], LIFECYCLE_URL);
    assert_eq!(chat["clientState"], CLIENT_STATE);
    assert_eq!(chat["includeResourceData"], true);
    assert_eq!(chat["encryptionCertificate"], certificate_base64(&h.key));
    assert_eq!(chat["encryptionCertificateId"], CERT_ID);
    assert_expires_in(&chat["expirationDateTime"], 4320 - 5);

    let bodies: Vec<Value> = beta.iter().map(|r| r.body_json().unwrap()).collect();
    let meeting = bodies
        .iter()
        .find(|b| {
            b["resource"]
                .as_str()
                .unwrap()
                .ends_with("meetingCallEvents")
        })
        .unwrap();
    assert_eq!(meeting["resource"], MEETING_RESOURCE);
    assert_eq!(meeting["changeType"], "updated");
    assert_expires_in(&meeting["expirationDateTime"], 4320 - 5);
    let emergency = bodies
        .iter()
        .find(|b| b["resource"] == EMERGENCY_RESOURCE)
        .unwrap();
    assert_eq!(emergency["includeResourceData"], true);
    assert_expires_in(&emergency["expirationDateTime"], 1440 - 5);

    // Every Graph call carried the bearer token (the fake refuses others with 401).
    assert_eq!(h.fake.all().len(), 3);
}

#[tokio::test]
async fn a_second_reconcile_changes_nothing() {
    let h = harness(seeds()).await;
    let first = h.ctx.reconcile().await;
    assert_eq!(first.changes(), 3);
    let writes = h.writes().await;
    let second = h.ctx.reconcile().await;
    assert_eq!(second.changes(), 0, "{:#?}", second.actions);
    assert_eq!(second.count(Action::Unchanged), 3);
    assert_eq!(second.failures(), 0);
    assert_eq!(h.writes().await, writes, "no call but the listing");
}

#[tokio::test]
async fn renews_only_what_expires_soon() {
    let h = harness(json!([
        {"resource": CHAT_MESSAGES, "changeType": "created,updated", "includeResourceData": true},
        {"resource": "/teams", "changeType": "created,deleted", "includeResourceData": true}
    ]))
    .await;
    let soon = h
        .fake
        .insert(existing(CHAT_MESSAGES, "created,updated", 30));
    let later = h.fake.insert(existing("teams", "deleted,created", 4000));
    let report = h.ctx.reconcile().await;
    assert_eq!(report.count(Action::Renewed), 1, "{:#?}", report.actions);
    assert_eq!(report.count(Action::Unchanged), 1);
    assert_eq!(report.count(Action::Created), 0);

    let patches = h.requests("PATCH", "/v1.0/subscriptions/").await;
    assert_eq!(patches.len(), 1);
    assert_eq!(patches[0].url.path(), format!("/v1.0/subscriptions/{soon}"));
    let body: Value = patches[0].body_json().unwrap();
    assert_eq!(
        body.as_object().unwrap().keys().collect::<Vec<_>>(),
        ["expirationDateTime"]
    );
    assert_expires_in(&h.fake.get(&soon).unwrap()["expirationDateTime"], 4320 - 5);
    assert_expires_in(&h.fake.get(&later).unwrap()["expirationDateTime"], 4000);
}

#[tokio::test]
async fn the_renewal_threshold_is_a_share_of_the_lifetime() {
    let h = harness(chat_only()).await;
    // 40% of the lifetime left: renewed at the default (1/2), not at 1/4.
    let id = h
        .fake
        .insert(existing(CHAT_MESSAGES, "created,updated", 1726));
    let quarter =
        teams_notifications::config::ReconcileOptions::from_lookup(|_| Some("0.25".into()))
            .unwrap();
    let report = renewer::reconcile(
        &h.ctx.graph,
        &h.ctx.keys,
        &h.ctx.delivery().unwrap(),
        &h.ctx.desired().unwrap(),
        &quarter,
        &HashSet::new(),
    )
    .await;
    assert_eq!(report.count(Action::Unchanged), 1);
    let report = h.ctx.reconcile().await;
    assert_eq!(report.count(Action::Renewed), 1);
    assert_expires_in(&h.fake.get(&id).unwrap()["expirationDateTime"], 4320 - 5);
}

#[tokio::test]
async fn moves_subscriptions_still_on_an_old_certificate() {
    let h = harness(chat_only()).await;
    let mut old = existing(CHAT_MESSAGES, "created,updated", 4000);
    old["encryptionCertificateId"] = json!("notify-2025");
    let id = h.fake.insert(old);
    let report = h.ctx.reconcile().await;
    assert_eq!(
        report.count(Action::CertificateMoved),
        1,
        "{:#?}",
        report.actions
    );
    let patch: Value = h.requests("PATCH", "/v1.0/subscriptions/").await[0]
        .body_json()
        .unwrap();
    assert_eq!(patch["encryptionCertificateId"], CERT_ID);
    assert_eq!(patch["encryptionCertificate"], certificate_base64(&h.key));
    assert_expires_in(&patch["expirationDateTime"], 4320 - 5);
    assert_eq!(h.fake.get(&id).unwrap()["encryptionCertificateId"], CERT_ID);
    assert_eq!(h.ctx.reconcile().await.changes(), 0);
}

#[tokio::test]
async fn adopts_the_emergency_subscription_graph_already_has() {
    let h = harness(json!([{"emergencyPolicy": "EmergencyPolicy"}])).await;
    // Made by an earlier deployment that delivered elsewhere: not a match, so we create, and
    // Graph answers 409 (one subscription per app, tenant and policy).
    let mut theirs = existing(EMERGENCY_RESOURCE, "updated", 600);
    theirs["notificationUrl"] = json!("https://old-deployment.example/api/notifications");
    let id = h.fake.insert(theirs);
    let report = h.ctx.reconcile().await;
    assert_eq!(report.count(Action::Adopted), 1, "{:#?}", report.actions);
    assert_eq!(
        report.actions[0].subscription_id.as_deref(),
        Some(id.as_str())
    );
    assert_eq!(h.requests("POST", "/beta/subscriptions").await.len(), 1);
    let patch: Value = h
        .requests("PATCH", &format!("/beta/subscriptions/{id}"))
        .await[0]
        .body_json()
        .unwrap();
    assert_eq!(patch["notificationUrl"], NOTIFICATION_URL);
    assert_expires_in(&patch["expirationDateTime"], 1440 - 5);
    assert_eq!(h.fake.all().len(), 1);
    // Now it is ours: nothing more to do.
    assert_eq!(h.ctx.reconcile().await.changes(), 0);
}

#[tokio::test]
async fn recreates_what_graph_lost_on_renewal() {
    let h = harness(chat_only()).await;
    let lost = h
        .fake
        .insert(existing(CHAT_MESSAGES, "created,updated", 20));
    Mock::given(method("PATCH"))
        .and(path(format!("/v1.0/subscriptions/{lost}")))
        .respond_with(ResponseTemplate::new(404).set_body_json(
            json!({"error": {"code": "ResourceNotFound", "message": "The object was not found."}}),
        ))
        .with_priority(1)
        .mount(&h.graph)
        .await;
    let report = h.ctx.reconcile().await;
    assert_eq!(report.count(Action::Recreated), 1, "{:#?}", report.actions);
    let record = &report.actions[0];
    assert_eq!(record.previous_id.as_deref(), Some(lost.as_str()));
    assert_ne!(record.subscription_id.as_deref(), Some(lost.as_str()));
    assert_eq!(h.requests("POST", "/v1.0/subscriptions").await.len(), 1);
}

#[tokio::test]
async fn an_expired_subscription_is_created_again() {
    let h = harness(chat_only()).await;
    let expired = h
        .fake
        .insert(existing(CHAT_MESSAGES, "created,updated", -5));
    let report = h.ctx.reconcile().await;
    assert_eq!(report.expired, 1);
    assert_eq!(report.count(Action::Recreated), 1, "{:#?}", report.actions);
    assert_eq!(
        report.actions[0].previous_id.as_deref(),
        Some(expired.as_str())
    );
    assert!(
        h.requests("PATCH", "/").await.is_empty(),
        "no renewal of the dead"
    );
    assert_eq!(h.requests("POST", "/v1.0/subscriptions").await.len(), 1);
}

#[tokio::test]
async fn duplicates_are_deleted_keeping_the_longest_lived() {
    let h = harness(chat_only()).await;
    let keep = h
        .fake
        .insert(existing(CHAT_MESSAGES, "created,updated", 4000));
    let extra = h
        .fake
        .insert(existing(CHAT_MESSAGES, "created,updated", 3000));
    let report = h.ctx.reconcile().await;
    assert_eq!(report.count(Action::DuplicateDeleted), 1);
    assert_eq!(report.count(Action::Unchanged), 1);
    assert!(h.fake.get(&extra).is_none());
    assert!(h.fake.get(&keep).is_some());
    assert_eq!(h.ctx.reconcile().await.changes(), 0);
}

#[tokio::test]
async fn follows_paging_and_refuses_foreign_links() {
    let h = harness(chat_only()).await;
    h.fake.set_page_size(2);
    for i in 0..4 {
        h.fake
            .insert(existing(&format!("/teams/t{i}/members"), "created", 4000));
    }
    let ours = h
        .fake
        .insert(existing(CHAT_MESSAGES, "created,updated", 4000));
    let report = h.ctx.reconcile().await;
    assert_eq!(report.listed, 5);
    assert_eq!(report.count(Action::Unchanged), 1);
    assert_eq!(
        report.actions[0].subscription_id.as_deref(),
        Some(ours.as_str())
    );
    assert_eq!(report.unmanaged, 4);
    let gets = h.requests("GET", "/v1.0/subscriptions").await;
    assert_eq!(gets.len(), 3);
    assert!(gets[1].url.query().unwrap().contains("skiptoken=2"));
    assert_eq!(h.writes().await, 0);

    // A nextLink to another host would carry our token away: refused.
    h.fake.set_foreign_next_link("https://attacker.example");
    let report = h.ctx.reconcile().await;
    assert!(
        report.error.as_deref().unwrap().contains("outside"),
        "{:?}",
        report.error
    );
    assert_eq!(h.requests("GET", "/v1.0/subscriptions").await.len(), 4);
}

// ---------------------------------------------------------------------------------------------
// Throttling and errors
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn throttling_honours_retry_after() {
    let h = harness(chat_only()).await;
    Mock::given(method("GET"))
        .and(path("/v1.0/subscriptions"))
        .respond_with(
            ResponseTemplate::new(429)
                .insert_header("Retry-After", "1")
                .set_body_json(
                    json!({"error": {"code": "TooManyRequests", "message": "Too many requests"}}),
                ),
        )
        .with_priority(1)
        .up_to_n_times(1)
        .mount(&h.graph)
        .await;
    let started = Instant::now();
    let report = h.ctx.reconcile().await;
    assert_eq!(report.error, None);
    assert_eq!(report.count(Action::Created), 1);
    assert!(
        started.elapsed() >= Duration::from_secs(1),
        "waited as told"
    );
    assert_eq!(h.requests("GET", "/v1.0/subscriptions").await.len(), 2);
}

#[tokio::test]
async fn unavailable_without_retry_after_backs_off_then_succeeds() {
    let h = harness(chat_only()).await;
    for status in [503, 504] {
        Mock::given(method("POST"))
            .and(path("/v1.0/subscriptions"))
            .respond_with(ResponseTemplate::new(status))
            .with_priority(1)
            .up_to_n_times(1)
            .mount(&h.graph)
            .await;
    }
    let report = h.ctx.reconcile().await;
    assert_eq!(report.count(Action::Created), 1, "{:#?}", report.actions);
    assert_eq!(h.requests("POST", "/v1.0/subscriptions").await.len(), 3);
    assert_eq!(h.fake.all().len(), 1);
}

#[tokio::test]
async fn throttling_is_bounded_and_the_timer_asks_for_a_retry() {
    let h = harness(chat_only()).await;
    Mock::given(method("GET"))
        .and(path("/v1.0/subscriptions"))
        .respond_with(ResponseTemplate::new(429).set_body_json(
            json!({"error": {"code": "TooManyRequests", "message": "Application is over its request limit."}}),
        ))
        .with_priority(1)
        .mount(&h.graph)
        .await;
    let (status, body) = h.timer(timer_body(false)).await;
    assert_eq!(status, 503, "a transient failure asks the host to retry");
    assert_eq!(
        h.requests("GET", "/v1.0/subscriptions").await.len(),
        fast_retry().max_attempts as usize
    );
    let error = body["ReturnValue"]["error"].as_str().unwrap();
    assert!(
        error.contains("429 TooManyRequests: Application is over its request limit."),
        "{error}"
    );

    // A Retry-After beyond the longest wait ends the retries at once.
    let h = harness(chat_only()).await;
    Mock::given(method("GET"))
        .and(path("/v1.0/subscriptions"))
        .respond_with(ResponseTemplate::new(503).insert_header("Retry-After", "3600"))
        .with_priority(1)
        .mount(&h.graph)
        .await;
    let started = Instant::now();
    let err = h.ctx.graph.list(ApiVersion::V1).await.unwrap_err();
    assert!(started.elapsed() < Duration::from_secs(5));
    assert_eq!(err.status(), Some(503));
    assert!(err.is_transient());
    assert_eq!(h.requests("GET", "/v1.0/subscriptions").await.len(), 1);
}

#[tokio::test]
async fn graph_error_codes_surface_and_do_not_ask_for_retries() {
    let h = harness(chat_only()).await;
    Mock::given(method("POST"))
        .and(path("/v1.0/subscriptions"))
        .respond_with(ResponseTemplate::new(403).set_body_json(json!({"error": {
            "code": "ExtensionError",
            "message": "Operation: Create; Exception: [Status Code: Forbidden; Reason: Missing role permissions]",
            "innerError": {"request-id": "2d7e1c0a", "date": "2026-01-01T00:00:00"}
        }})))
        .with_priority(1)
        .mount(&h.graph)
        .await;
    let (status, body) = h.timer(timer_body(false)).await;
    assert_eq!(
        status, 200,
        "a permission problem will not go away on retry"
    );
    assert_eq!(body["ReturnValue"]["failed"], 1);
    let logs: Vec<&str> = body["Logs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l.as_str().unwrap())
        .collect();
    assert!(
        logs.iter().any(|l| l.contains("403 ExtensionError: Operation: Create; Exception: [Status Code: Forbidden; Reason: Missing role permissions]")),
        "{logs:#?}"
    );
    let report = h.ctx.reconcile().await;
    let failure = report.actions[0].failure.as_ref().unwrap();
    assert_eq!(failure.code.as_deref(), Some("ExtensionError"));
    assert_eq!(failure.status, Some(403));

    let err = h
        .ctx
        .graph
        .get(ApiVersion::V1, "does-not-exist")
        .await
        .unwrap_err();
    assert!(
        matches!(&err, GraphError::Api { code, request_id: Some(_), .. } if code == "ResourceNotFound")
    );
    assert!(err.is_not_found());
}

#[tokio::test]
async fn a_rejected_token_request_is_a_token_error() {
    let h = harness_with(
        chat_only(),
        &[("GRAPH_TENANT_ID", "00000000-0000-0000-0000-000000000000")],
    )
    .await;
    // The fake Entra knows only TENANT: the real credential gets a 404 from it.
    let report = h.ctx.reconcile().await;
    let error = report.error.expect("no token, no reconcile");
    assert!(error.contains("no token for"), "{error}");
    assert!(!error.contains(CLIENT_SECRET));
    assert!(
        h.calls().await.is_empty(),
        "nothing reached Graph without a token"
    );
}

#[tokio::test]
async fn without_a_lifecycle_url_teams_subscriptions_live_an_hour() {
    let h = harness_with(chat_only(), &[("LIFECYCLE_NOTIFICATION_URL", "")]).await;
    let report = h.ctx.reconcile().await;
    assert_eq!(report.count(Action::Created), 1, "{:#?}", report.actions);
    let body: Value = h.requests("POST", "/v1.0/subscriptions").await[0]
        .body_json()
        .unwrap();
    assert!(body.get("lifecycleNotificationUrl").is_none());
    assert_expires_in(&body["expirationDateTime"], 55);
}

#[tokio::test]
async fn rich_subscriptions_need_a_certificate() {
    let h = harness_with(chat_only(), &[("NOTIFICATION_CERTIFICATES", "")]).await;
    let ctx = &h.ctx;
    let report = ctx.reconcile().await;
    let failure = report.actions[0].failure.as_ref().unwrap();
    assert!(
        failure.message.contains("encryption certificate"),
        "{failure:?}"
    );
    assert!(h.requests("POST", "/").await.is_empty());
}

// ---------------------------------------------------------------------------------------------
// The timer invocation
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn timer_payload_as_object_or_string_with_is_past_due() {
    let h = harness(seeds()).await;
    let (status, body) = h.timer(timer_body(true)).await;
    assert_eq!(status, 200);
    assert_eq!(body["Outputs"], json!({}));
    assert_eq!(body["ReturnValue"]["isPastDue"], true);
    assert_eq!(body["ReturnValue"]["created"], 3);
    assert_eq!(body["ReturnValue"]["changes"], 3);
    let logs: Vec<&str> = body["Logs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l.as_str().unwrap())
        .collect();
    assert!(logs.iter().any(|l| l.contains("past due")), "{logs:#?}");
    assert_eq!(
        logs.iter()
            .filter(|l| l.starts_with("renew: created "))
            .count(),
        3
    );

    // The timer as a string holding JSON (as some hosts send it).
    let timer = json!({"Schedule": {}, "IsPastDue": false}).to_string();
    let string_form = json!({"Data": {"timer": timer}, "Metadata": {}}).to_string();
    let (status, body) = h.timer(string_form.clone()).await;
    assert_eq!(status, 200);
    assert_eq!(body["ReturnValue"]["isPastDue"], false);
    assert_eq!(body["ReturnValue"]["unchanged"], 3);
    assert_eq!(body["ReturnValue"]["changes"], 0);
    assert!(
        !body["Logs"]
            .as_array()
            .unwrap()
            .iter()
            .any(|l| l.as_str().unwrap().contains("not understood"))
    );
}

#[tokio::test]
async fn a_body_that_is_not_a_timer_invocation_is_refused_without_calling_graph() {
    let h = harness(chat_only()).await;
    for body in [
        &b"not json at all"[..],
        b"{}",
        br#"{"Data": {"timer": 5}, "Metadata": {}}"#,
        br#"{"Data": {"other": {}}, "Metadata": {}}"#,
    ] {
        let (status, reply) = h.timer(body).await;
        assert_eq!(status, 400, "{}", String::from_utf8_lossy(body));
        assert_eq!(reply["Outputs"], json!({}));
        assert!(reply["ReturnValue"]["error"].is_string(), "{reply}");
        assert!(
            reply["Logs"][0]
                .as_str()
                .unwrap()
                .contains("not a timer invocation"),
            "{reply}"
        );
    }
    assert!(h.calls().await.is_empty());
}

#[tokio::test]
async fn a_broken_desired_file_is_reported_without_calling_graph() {
    let h = harness(json!([{"resource": "/teams"}])).await;
    let (status, body) = h.timer(timer_body(false)).await;
    assert_eq!(status, 200, "retrying will not fix the file");
    let error = body["ReturnValue"]["error"].as_str().unwrap();
    assert!(
        error.contains("subscription #0") && error.contains("changeType"),
        "{error}"
    );
    assert!(h.calls().await.is_empty());
}

// ---------------------------------------------------------------------------------------------
// Lifecycle reactions
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn reauthorization_required_reauthorizes_on_the_subscription_version() {
    let h = harness(seeds()).await;
    let id = h.fake.insert(existing(EMERGENCY_RESOURCE, "updated", 600));
    let reaction = lifecycle::react(
        h.ctx.clone(),
        &lifecycle_item(&id, "reauthorizationRequired"),
    )
    .await
    .unwrap();
    assert!(
        matches!(reaction, Reaction::Reauthorized { .. }),
        "{reaction:?}"
    );
    let calls = h
        .requests("POST", &format!("/beta/subscriptions/{id}/reauthorize"))
        .await;
    assert_eq!(calls.len(), 1);
}

#[tokio::test]
async fn reauthorization_falls_back_to_renewal() {
    let h = harness(chat_only()).await;
    let id = h
        .fake
        .insert(existing(CHAT_MESSAGES, "created,updated", 50));
    Mock::given(method("POST"))
        .and(path_regex(r"^/v1\.0/subscriptions/.+/reauthorize$"))
        .respond_with(ResponseTemplate::new(400).set_body_json(
            json!({"error": {"code": "InvalidRequest", "message": "Reauthorization is not supported for this subscription."}}),
        ))
        .with_priority(1)
        .mount(&h.graph)
        .await;
    let reaction =
        lifecycle::react_now(&h.ctx, &lifecycle_item(&id, "reauthorizationRequired")).await;
    assert!(matches!(reaction, Reaction::Renewed { .. }), "{reaction:?}");
    assert_expires_in(&h.fake.get(&id).unwrap()["expirationDateTime"], 4320 - 5);
}

#[tokio::test]
async fn reauthorization_of_a_vanished_subscription_recreates_it() {
    let h = harness(chat_only()).await;
    let reaction = lifecycle::react_now(
        &h.ctx,
        &lifecycle_item("gone-123", "reauthorizationRequired"),
    )
    .await;
    let Reaction::Reconciled(report) = reaction else {
        panic!("expected a reconcile, got {reaction:?}");
    };
    assert_eq!(report.count(Action::Created), 1);
    assert_eq!(h.fake.all().len(), 1);
}

#[tokio::test]
async fn subscription_removed_is_not_acted_on_while_graph_still_lists_it() {
    let h = harness(chat_only()).await;
    let live = h
        .fake
        .insert(existing(CHAT_MESSAGES, "created,updated", 4000));
    let reaction =
        lifecycle::react_now(&h.ctx, &lifecycle_item(&live, "subscriptionRemoved")).await;
    assert!(matches!(reaction, Reaction::Ignored(_)), "{reaction:?}");
    assert!(h.requests("POST", "/v1.0/subscriptions").await.is_empty());
    assert_eq!(
        h.fake.all().len(),
        1,
        "no second subscription next to the live one"
    );
}

#[tokio::test]
async fn subscription_removed_recreates_it_once_the_listing_confirms() {
    let h = harness(chat_only()).await;
    let removed = h
        .fake
        .insert(existing(CHAT_MESSAGES, "created,updated", 4000));
    h.fake.remove(&removed);
    let reaction =
        lifecycle::react_now(&h.ctx, &lifecycle_item(&removed, "subscriptionRemoved")).await;
    let Reaction::Reconciled(report) = reaction else {
        panic!("expected a reconcile, got {reaction:?}");
    };
    assert_eq!(report.count(Action::Created), 1, "{:#?}", report.actions);
    let created: Value = h.requests("POST", "/v1.0/subscriptions").await[0]
        .body_json()
        .unwrap();
    assert_eq!(created["resource"], CHAT_MESSAGES);
    assert_eq!(created["clientState"], CLIENT_STATE);
}

#[tokio::test]
async fn missed_writes_one_resync_marker() {
    let h = harness(chat_only()).await;
    let id = h
        .fake
        .insert(existing(CHAT_MESSAGES, "created,updated", 4000));
    let item = lifecycle_item(&id, "missed");
    let first = lifecycle::react(h.ctx.clone(), &item).await.unwrap();
    let Reaction::ResyncMarked { name, written } = first else {
        panic!("expected a marker, got {first:?}");
    };
    assert_eq!(written, teams_notifications::archive::Written::Created);
    assert!(
        name.as_str()
            .starts_with(&format!("resync/2026/05/06/{id}/")),
        "{name}"
    );
    let again = lifecycle::react_now(&h.ctx, &item).await;
    assert!(
        matches!(
            again,
            Reaction::ResyncMarked {
                written: teams_notifications::archive::Written::AlreadyExisted,
                ..
            }
        ),
        "{again:?}"
    );
    let markers = h.ctx.archive.list(Kind::Resync).await.unwrap();
    assert_eq!(markers, vec![name.clone()]);
    let marker: Value =
        serde_json::from_slice(&h.ctx.archive.get(&name).await.unwrap().unwrap()).unwrap();
    assert_eq!(marker["subscriptionId"], id.as_str());
    assert_eq!(marker["resource"], CHAT_MESSAGES, "looked up in Graph");
    assert_eq!(marker["tenantId"], TENANT);
    assert!(parse_time(&marker["window"]["until"]) <= OffsetDateTime::now_utc());
    assert!(!marker.to_string().contains(CLIENT_STATE));
    assert_eq!(
        h.writes().await,
        0,
        "a missed notification changes no subscription"
    );
}

#[tokio::test]
async fn react_returns_before_graph_answers() {
    let h = harness(chat_only()).await;
    Mock::given(method("GET"))
        .and(path("/v1.0/subscriptions"))
        .respond_with(
            ResponseTemplate::new(200)
                .set_body_json(json!({"value": []}))
                .set_delay(Duration::from_secs(3)),
        )
        .with_priority(1)
        .mount(&h.graph)
        .await;
    let started = Instant::now();
    let handle = lifecycle::react(h.ctx.clone(), &lifecycle_item("s-1", "subscriptionRemoved"));
    assert!(started.elapsed() < Duration::from_secs(1));
    assert!(!handle.is_finished());
    let reaction = handle.await.unwrap();
    assert!(started.elapsed() >= Duration::from_secs(3));
    assert!(matches!(reaction, Reaction::Reconciled(_)), "{reaction:?}");
}

// ---------------------------------------------------------------------------------------------
// Through the real server, as the Functions host calls it
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn the_host_timer_invocation_is_answered_in_the_host_shape() {
    let h = harness(seeds()).await;
    let app = &h.server;
    let response = app.post("/renew", timer_body(true)).await;
    assert_eq!(response.status(), 200);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["Outputs"], json!({}));
    assert_eq!(body["ReturnValue"]["created"], 3);
    assert_eq!(body["ReturnValue"]["isPastDue"], true);
    assert!(body["Logs"].as_array().unwrap().len() >= 4);
}

#[tokio::test]
async fn a_lifecycle_post_is_answered_before_the_reaction_runs() {
    let h = harness(chat_only()).await;
    let removed = h
        .fake
        .insert(existing(CHAT_MESSAGES, "created,updated", 4000));
    h.fake.remove(&removed);
    Mock::given(method("GET"))
        .and(path("/v1.0/subscriptions"))
        .respond_with(
            ResponseTemplate::new(200)
                .set_body_json(json!({"value": []}))
                .set_delay(Duration::from_secs(4)),
        )
        .with_priority(1)
        .up_to_n_times(1)
        .mount(&h.graph)
        .await;
    let app = &h.server;
    let body = json!({"value": [{
        "subscriptionId": removed,
        "subscriptionExpirationDateTime": "2026-05-06T07:08:09.0000000Z",
        "tenantId": TENANT,
        "clientState": CLIENT_STATE,
        "lifecycleEvent": "subscriptionRemoved",
    }]});
    let started = Instant::now();
    let response = app.post("/api/lifecycle", body.to_string()).await;
    assert_eq!(response.status(), 202);
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "the answer did not wait for Graph"
    );
    assert_eq!(
        app.objects(Kind::Lifecycle).await.len(),
        1,
        "archived first"
    );
    h.eventually("the removed subscription is created again", |g| {
        g.all().iter().any(|s| s["resource"] == CHAT_MESSAGES)
    })
    .await;
}

// ---------------------------------------------------------------------------------------------
// Secrets
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn no_secret_reaches_the_logs_or_the_invocation_answer() {
    let captured = crate::support::CapturedLogs::default();
    let _guard = captured.install();

    let h = harness(seeds()).await;
    let mut old = existing(CHAT_MESSAGES, "created,updated", 30);
    old["encryptionCertificateId"] = json!("notify-2025");
    let id = h.fake.insert(old);
    Mock::given(method("POST"))
        .and(path("/beta/subscriptions"))
        .respond_with(ResponseTemplate::new(429).insert_header("Retry-After", "0"))
        .with_priority(1)
        .up_to_n_times(1)
        .mount(&h.graph)
        .await;
    let (_, body) = h.timer(timer_body(true)).await;
    lifecycle::react_now(&h.ctx, &lifecycle_item(&id, "reauthorizationRequired")).await;
    lifecycle::react_now(&h.ctx, &lifecycle_item(&id, "missed")).await;

    let logs = captured.text();
    assert!(logs.contains("reconcile"), "the capture works: {logs}");
    for secret in [CLIENT_SECRET, CLIENT_STATE, ACCESS_TOKEN] {
        assert!(!logs.contains(secret), "{secret} was logged");
        assert!(!body.to_string().contains(secret), "{secret} in the answer");
    }
}

// ---------------------------------------------------------------------------------------------
// The operator's CLI (the real binary, its own process, same configuration)
// ---------------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_subscriptions_cli_reconciles_then_lists() {
    let h = harness(seeds()).await;
    let ca = h.dir.path().join("test-ca.pem");
    std::fs::write(&ca, &pki().ca_pem).unwrap();
    let pem = h.dir.path().join("current.pem");
    std::fs::write(
        &pem,
        teams_notifications::devtools::certificates::to_pem(&h.key).unwrap(),
    )
    .unwrap();
    let run = |args: &[&str]| {
        let mut c = std::process::Command::new(env!("CARGO_BIN_EXE_handler"));
        c.env_clear()
            .envs(h.settings.iter())
            .env("SSL_CERT_FILE", &ca)
            .env(
                "NOTIFICATION_CERTIFICATES",
                format!("{CERT_ID}={}", pem.display()),
            )
            .args(args);
        c.output().unwrap()
    };
    let out = tokio::task::block_in_place(|| run(&["subscriptions", "reconcile", "--json"]));
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    let actions = report["actions"].as_array().unwrap();
    assert_eq!(actions.len(), 3, "{report:#}");
    assert_eq!(
        h.fake.all().len(),
        3,
        "Graph now holds the three desired subscriptions"
    );

    let out = tokio::task::block_in_place(|| run(&["subscriptions", "list", "--json"]));
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let listed: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(listed.as_array().unwrap().len(), 3, "{listed:#}");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        !text.contains(CLIENT_STATE) && !text.contains(CLIENT_SECRET),
        "no secret is printed"
    );
}
