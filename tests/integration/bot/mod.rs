//! The Teams bot's messaging endpoint end to end: the app through the builder on loopback, a
//! fake Bot Connector (OpenID metadata, JWKS with endorsements, the Bot APIs), the fake Entra
//! (the bot's token, Entra's metadata) and the fake Graph from the renewer's tests.

pub mod fake;

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::Duration;

use serde_json::{Value, json};
use teams_notifications::archive::{Archive, Kind, ObjectName};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use crate::subscriptions::fakes::{Harness, NOTIFICATION_URL, harness_with_clock};
use fake::*;

const MEETING_ID: &str = "MCMxOTptZWV0aW5nX05tUTBaRGszT1RndE1HVXlNeTAwWkRrMUxXSXhaV010WW1VNU9XTTFNalV4Tm1FM0B0aHJlYWQudjIjMA==";
const JOIN_URL: &str = "https://teams.microsoft.com/l/meetup-join/19%3ameeting_NmQ0ZDk3OTgtMGUyMy00ZDk1LWIxZWMtYmU5OWM1MjUxNmE3%40thread.v2/0?context=%7b%22Tid%22%3a%223c2b1a09-8f7e-4d6c-b5a4-938271605f4e%22%2c%22Oid%22%3a%22a1b2c3d4-0000-4000-8000-000000000001%22%7d";
/// The join URL encoded as Graph requires (every reserved character, `%` included), written out.
const RESOURCE: &str = "communications/onlineMeetings(joinWebUrl='https%3A%2F%2Fteams.microsoft.com%2Fl%2Fmeetup-join%2F19%253ameeting_NmQ0ZDk3OTgtMGUyMy00ZDk1LWIxZWMtYmU5OWM1MjUxNmE3%2540thread.v2%2F0%3Fcontext%3D%257b%2522Tid%2522%253a%25223c2b1a09-8f7e-4d6c-b5a4-938271605f4e%2522%252c%2522Oid%2522%253a%2522a1b2c3d4-0000-4000-8000-000000000001%2522%257d')/meetingCallEvents";

struct Bot {
    h: Harness,
    connector: FakeConnector,
    /// Seconds the renewer's clock runs ahead of the real one.
    ahead: Arc<AtomicI64>,
}

async fn bot() -> Bot {
    let connector = FakeConnector::start().await;
    let ahead = Arc::new(AtomicI64::new(0));
    let offset = ahead.clone();
    let clock: teams_notifications::renewer::Clock = Arc::new(move || {
        OffsetDateTime::now_utc() + time::Duration::seconds(offset.load(Ordering::SeqCst))
    });
    let metadata = connector.metadata_url();
    let h = harness_with_clock(
        json!([]),
        &[
            ("BOT_APP_ID", BOT_APP_ID),
            ("BOT_TENANT_ID", BOT_TENANT),
            ("BOT_CLIENT_SECRET", BOT_SECRET),
            ("BOT_OPENID_METADATA", &metadata),
            ("BOT_SERVICE_URL_HOSTS", &connector.url),
            ("MEETING_SUBSCRIPTION_GRACE_MIN", "30"),
        ],
        Some(clock),
    )
    .await;
    let authority = h.settings["AUTHORITY_HOST"].clone();
    mount_entra(&h.entra, &authority, &connector).await;
    Bot {
        h,
        connector,
        ahead,
    }
}

fn now() -> String {
    OffsetDateTime::now_utc().format(&Rfc3339).unwrap()
}

/// A meeting event as Teams' Bot Connector sends it (PascalCase start/end values).
fn event(name: &str, service_url: &str, id: &str, value: Value) -> Value {
    json!({
        "type": "event",
        "name": name,
        "id": id,
        "timestamp": now(),
        "localTimestamp": now(),
        "channelId": "msteams",
        "serviceUrl": service_url,
        "from": {"id": "29:organizer", "aadObjectId": "organizer-oid"},
        "conversation": {"isGroup": true, "conversationType": "groupchat", "id": "19:meeting_fake@thread.v2", "tenantId": BOT_TENANT},
        "recipient": {"id": format!("28:{BOT_APP_ID}"), "name": "Meeting recorder"},
        "value": value,
        "channelData": {"tenant": {"id": BOT_TENANT}, "meeting": {"id": MEETING_ID}, "source": {"name": "meeting"}},
    })
}

fn start_value() -> Value {
    json!({"MeetingType": "Scheduled", "Title": "Weekly sync", "Id": "value-id", "JoinUrl": JOIN_URL, "StartTime": now()})
}

fn end_value() -> Value {
    json!({"MeetingType": "Scheduled", "Title": "Weekly sync", "Id": "value-id", "JoinUrl": JOIN_URL, "EndTime": now()})
}

impl Bot {
    fn service_url(&self) -> String {
        self.connector.service_url()
    }

    fn token(&self) -> String {
        self.connector
            .mint(&BotToken::connector(&self.service_url()))
    }

    async fn post(&self, authorization: Option<&str>, body: &[u8]) -> reqwest::Response {
        let mut request = self
            .h
            .server
            .http
            .post(format!("{}/api/messages", self.h.server.url))
            .header("content-type", "application/json")
            .body(body.to_vec());
        if let Some(a) = authorization {
            request = request.header("authorization", a);
        }
        request.send().await.unwrap()
    }

    async fn send(&self, activity: &Value) -> reqwest::Response {
        let token = self.token();
        self.post(
            Some(&format!("Bearer {token}")),
            activity.to_string().as_bytes(),
        )
        .await
    }

    async fn records(&self, kind: Kind) -> Vec<(ObjectName, Value)> {
        let archive = self.h.server.archive().await;
        let mut out = Vec::new();
        for name in archive.list(kind).await.unwrap() {
            let bytes = archive.get(&name).await.unwrap().unwrap();
            out.push((name, serde_json::from_slice(&bytes).unwrap()));
        }
        out
    }

    async fn bot_events(&self, event_kind: &str) -> Vec<Value> {
        self.records(Kind::Events)
            .await
            .into_iter()
            .map(|(_, v)| v)
            .filter(|v| v["eventKind"] == event_kind)
            .collect()
    }

    async fn eventually_events(&self, event_kind: &str, n: usize) -> Vec<Value> {
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        loop {
            let found = self.bot_events(event_kind).await;
            if found.len() >= n {
                return found;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "timed out waiting for {n} {event_kind} record(s)"
            );
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    }

    fn meeting_subscriptions(&self) -> Vec<Value> {
        self.h
            .fake
            .all()
            .into_iter()
            .filter(|s| {
                s["resource"]
                    .as_str()
                    .is_some_and(|r| r.ends_with("/meetingCallEvents"))
            })
            .collect()
    }

    async fn renew_at(&self, minutes_ahead: i64) -> Value {
        self.ahead.store(minutes_ahead * 60, Ordering::SeqCst);
        let (status, body) = self
            .h
            .timer(json!({"Data": {"timer": {"IsPastDue": false}}, "Metadata": {}}).to_string())
            .await;
        assert_eq!(status, 200, "{body}");
        body
    }
}

#[tokio::test]
async fn every_forged_or_broken_token_is_401_kept_as_evidence_and_never_an_event() {
    let b = bot().await;
    let service_url = b.service_url();
    let genuine = || BotToken::connector(&service_url);
    let cases: Vec<(&str, Option<String>, &str)> = vec![
        ("no header", None, "noHeader"),
        ("basic scheme", Some("Basic Ym90OnB3".into()), "notBearer"),
        (
            "wrong issuer",
            Some(
                b.connector
                    .mint(&genuine().claim("iss", "https://api.botframework.evil")),
            ),
            "wrongIssuer",
        ),
        (
            "wrong audience",
            Some(b.connector.mint(&genuine().claim("aud", "another-bot"))),
            "wrongAudience",
        ),
        (
            "expired beyond the skew",
            Some(
                b.connector.mint(
                    &genuine()
                        .claim("exp", OffsetDateTime::now_utc().unix_timestamp() - 301)
                        .claim("nbf", OffsetDateTime::now_utc().unix_timestamp() - 4000),
                ),
            ),
            "expired",
        ),
        (
            "serviceUrl mismatch",
            Some(
                b.connector
                    .mint(&genuine().claim("serviceurl", "https://smba.trafficmanager.net/emea/")),
            ),
            "serviceUrlMismatch",
        ),
        (
            "no serviceurl claim",
            Some(b.connector.mint(&{
                let mut t = genuine();
                t.claims.remove("serviceurl");
                t
            })),
            "missingClaim",
        ),
        (
            "key without the msteams endorsement",
            Some(b.connector.mint(&genuine().kid(WEBCHAT_KID))),
            "notEndorsed",
        ),
        (
            "unknown kid",
            Some(
                b.connector
                    .mint(&genuine().kid("rotated-away").signing(Signing::Foreign)),
            ),
            "unknownKey",
        ),
        (
            "a real kid, a foreign signature",
            Some(b.connector.mint(&genuine().signing(Signing::Foreign))),
            "badSignature",
        ),
        (
            "alg none",
            Some(b.connector.mint(&genuine().signing(Signing::Unsigned))),
            "unsupportedAlgorithm",
        ),
        (
            "HS256 keyed with the public key",
            Some(
                b.connector
                    .mint(&genuine().signing(Signing::Hs256WithPublicKey)),
            ),
            "unsupportedAlgorithm",
        ),
        (
            "an Entra token of another tenant",
            Some(b.connector.mint(
                &BotToken::entra(&b.h.settings["AUTHORITY_HOST"], &service_url).claim(
                    "iss",
                    "https://sts.windows.net/11111111-2222-3333-4444-555555555555/",
                ),
            )),
            "wrongIssuer",
        ),
    ];
    for (i, (case, token, code)) in cases.iter().enumerate() {
        let activity = event(
            "application/vnd.microsoft.meetingStart",
            &service_url,
            &format!("forged-{i}"),
            start_value(),
        );
        let header = token.as_ref().map(|t| {
            if t.starts_with("Basic ") {
                t.clone()
            } else {
                format!("Bearer {t}")
            }
        });
        let response = b
            .post(header.as_deref(), activity.to_string().as_bytes())
            .await;
        assert_eq!(response.status(), 401, "{case}");
        assert!(
            response.text().await.unwrap().len() < 20,
            "{case}: the answer says nothing"
        );
        let rejected = b.records(Kind::Rejected).await;
        let kept = rejected
            .iter()
            .find(|(_, r)| r["activity"]["id"] == format!("forged-{i}"))
            .unwrap_or_else(|| panic!("{case}: evidence kept"));
        assert_eq!(kept.1["reasonCode"], *code, "{case}: {}", kept.1["reason"]);
        assert!(kept.0.as_str().contains("/bot/"), "{}", kept.0);
    }
    assert!(
        b.records(Kind::Events).await.is_empty(),
        "nothing forged is an event"
    );
    assert!(b.records(Kind::Meetings).await.is_empty());
    assert!(b.meeting_subscriptions().is_empty());
    assert!(
        b.connector.calls().is_empty(),
        "no Bot API call for a forgery"
    );
    // The unknown kid caused one refresh at most (rate-limited), on top of the first load.
    assert!(
        b.connector.jwks_requests() <= 2,
        "{}",
        b.connector.jwks_requests()
    );

    // A body too large to keep whole is kept as its first bytes.
    let mut big = event(
        "application/vnd.microsoft.meetingStart",
        &service_url,
        "big",
        start_value(),
    );
    big["padding"] = json!("x".repeat(70 * 1024));
    assert_eq!(b.post(None, big.to_string().as_bytes()).await.status(), 401);
    let rejected = b.records(Kind::Rejected).await;
    let kept = rejected
        .iter()
        .find(|(_, r)| r["bodyBytes"].as_u64() > Some(70 * 1024))
        .unwrap();
    assert!(kept.1.get("activity").is_none());
    assert_eq!(kept.1["truncatedBody"].as_str().unwrap().len(), 4096);
}

#[tokio::test]
async fn meeting_start_is_archived_subscribed_at_once_and_enriched() {
    let b = bot().await;
    let activity = event(
        "application/vnd.microsoft.meetingStart",
        &b.service_url(),
        "start-1",
        start_value(),
    );
    let response = b.send(&activity).await;
    assert_eq!(response.status(), 200);
    assert!(
        response.bytes().await.unwrap().is_empty(),
        "200 with an empty body"
    );

    // The event, under its content-addressed name, in the record format the attendance report
    // reads.
    let events = b.records(Kind::Events).await;
    assert_eq!(events.len(), 1);
    let (name, record) = &events[0];
    let digest = hex::encode(openssl::sha::sha256(
        &serde_json::to_vec(&activity).unwrap(),
    ));
    let date = &activity["timestamp"].as_str().unwrap()[..10].replace('-', "/");
    assert_eq!(name.as_str(), format!("events/{date}/bot/{digest}.json"));
    assert_eq!(record["source"], "bot");
    assert_eq!(record["eventKind"], "meetingStart");
    assert_eq!(record["meetingId"], MEETING_ID);
    assert_eq!(record["joinUrl"], JOIN_URL);
    assert_eq!(record["tenantId"], BOT_TENANT);
    assert_eq!(record["timestamp"], activity["timestamp"]);
    assert_eq!(record["activity"], activity);
    assert!(record["summary"].as_str().unwrap().contains("Weekly sync"));
    assert!(OffsetDateTime::parse(record["receivedAt"].as_str().unwrap(), &Rfc3339).is_ok());

    // Subscribed at once (no timer run): rich, beta, the join URL encoded exactly.
    b.h.eventually("the meeting's subscription", |g| {
        g.all().iter().any(|s| s["resource"] == RESOURCE)
    })
    .await;
    let subscription = &b.meeting_subscriptions()[0];
    assert_eq!(subscription["resource"], RESOURCE);
    assert_eq!(subscription["changeType"], "updated");
    assert_eq!(subscription["includeResourceData"], true);
    assert_eq!(subscription["notificationUrl"], NOTIFICATION_URL);
    assert!(
        b.h.requests("POST", "/beta/subscriptions").await.len() == 1,
        "created on beta, once"
    );

    // Enriched with the meeting details, archived beside the event.
    let details = b.eventually_events("meetingDetails", 1).await;
    assert_eq!(details[0]["meetingId"], MEETING_ID);
    assert_eq!(details[0]["activity"]["details"]["title"], "Weekly sync");
    assert_eq!(details[0]["timestamp"], activity["timestamp"]);
    let call = b
        .connector
        .calls()
        .into_iter()
        .find(|c| c.target.starts_with("/teams/v1/meetings/"))
        .unwrap();
    assert_eq!(call.method, "GET");
    assert_eq!(
        call.target,
        format!("/teams/v1/meetings/{}", MEETING_ID.replace('=', "%3D"))
    );
    assert_eq!(
        call.authorization.as_deref(),
        Some(&*format!("Bearer {BOT_ACCESS_TOKEN}"))
    );

    // A redelivery is the same object, and nothing more happens.
    assert_eq!(b.send(&activity).await.status(), 200);
    assert_eq!(b.bot_events("meetingStart").await.len(), 1);
    assert_eq!(b.records(Kind::Meetings).await.len(), 1);
}

#[tokio::test]
async fn meeting_end_removes_the_subscription_after_the_grace() {
    let b = bot().await;
    let start = event(
        "application/vnd.microsoft.meetingStart",
        &b.service_url(),
        "s",
        start_value(),
    );
    assert_eq!(b.send(&start).await.status(), 200);
    b.h.eventually("subscribed", |g| {
        g.all().iter().any(|s| s["resource"] == RESOURCE)
    })
    .await;
    let end = event(
        "application/vnd.microsoft.meetingEnd",
        &b.service_url(),
        "e",
        end_value(),
    );
    assert_eq!(b.send(&end).await.status(), 200);
    assert_eq!(b.bot_events("meetingEnd").await.len(), 1);

    // Within the grace the subscription stays (late roster updates and callEnded still come).
    let report = b.renew_at(29).await;
    assert_eq!(b.meeting_subscriptions().len(), 1, "{report}");
    // After it, the timer deletes it.
    let report = b.renew_at(31).await;
    assert!(b.meeting_subscriptions().is_empty(), "{report}");
    assert_eq!(report["ReturnValue"]["meetingOver"], 1, "{report}");
    assert!(
        report["Logs"][0].as_str().unwrap().contains(RESOURCE),
        "{report}"
    );
    assert_eq!(
        b.h.requests("DELETE", "/beta/subscriptions/").await.len(),
        1
    );
    // And it is not made again.
    b.renew_at(45).await;
    assert!(b.meeting_subscriptions().is_empty());
}

#[tokio::test]
async fn participant_events_are_archived_with_each_members_details() {
    let b = bot().await;
    b.connector.set_role("ann-oid", "Presenter");
    let join = event(
        "application/vnd.microsoft.meetingParticipantJoin",
        &b.service_url(),
        "j",
        json!({"members": [{
            "user": {"tenantId": BOT_TENANT, "objectId": "ann-oid", "id": "29:ann", "name": "Ann Example", "aadObjectId": "ann-oid"},
            "meeting": {"inMeeting": true, "role": "Presenter"}
        }]}),
    );
    assert_eq!(b.send(&join).await.status(), 200);
    let events = b.bot_events("meetingParticipantJoin").await;
    assert_eq!(events.len(), 1);
    assert_eq!(events[0]["meetingId"], MEETING_ID);
    assert!(events[0].get("joinUrl").is_none());
    assert!(
        events[0]["summary"]
            .as_str()
            .unwrap()
            .contains("Ann Example")
    );
    let details = b.eventually_events("participantDetails", 1).await;
    assert_eq!(details[0]["activity"]["meeting"]["role"], "Presenter");
    let call = b
        .connector
        .calls()
        .into_iter()
        .find(|c| c.target.contains("/participants/"))
        .unwrap();
    assert_eq!(
        call.target,
        format!(
            "/teams/v1/meetings/{}/participants/ann-oid?tenantId={BOT_TENANT}",
            MEETING_ID.replace('=', "%3D")
        )
    );
    assert!(
        b.meeting_subscriptions().is_empty(),
        "a join changes no subscription"
    );
}

#[tokio::test]
async fn microsofts_samples_are_archived_and_other_activities_answered_not_archived() {
    let b = bot().await;
    // The document's samples (trailing commas, a leading space in `name`, camelCase values),
    // with the token the Bot Connector would send for their serviceUrl.
    for (fixture, kind) in [
        ("bot_meeting_start.json", "meetingStart"),
        ("bot_meeting_end.json", "meetingEnd"),
        ("bot_participant_join.json", "meetingParticipantJoin"),
    ] {
        let text = crate::support::fixture(fixture);
        let service_url = if text.contains("/amer/") {
            "https://smba.trafficmanager.net/amer/"
        } else {
            "https://smba.trafficmanager.net/teams/"
        };
        let token = b.connector.mint(&BotToken::connector(service_url));
        let response = b
            .post(Some(&format!("Bearer {token}")), text.as_bytes())
            .await;
        assert_eq!(response.status(), 200, "{fixture}");
        assert_eq!(b.bot_events(kind).await.len(), 1, "{fixture}");
    }
    let start = &b.bot_events("meetingStart").await[0];
    assert_eq!(start["joinUrl"], "join_url");
    assert_eq!(
        start["meetingId"], "meeting_id",
        "no channelData.meeting: value.id"
    );
    assert_eq!(
        b.bot_events("meetingParticipantJoin").await[0]["meetingId"],
        "encoded_meetingId"
    );
    // Their serviceUrl is not a host this test allows: no request left for it.
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(b.connector.calls().is_empty());

    let before = b.records(Kind::Events).await.len();
    let message = json!({"type": "message", "text": "hello bot", "channelId": "msteams", "serviceUrl": b.service_url(), "id": "m"});
    let response = b.send(&message).await;
    assert_eq!(response.status(), 200);
    assert!(response.bytes().await.unwrap().is_empty());
    let invoke = json!({"type": "invoke", "name": "task/fetch", "channelId": "msteams", "serviceUrl": b.service_url(), "id": "i"});
    let response = b.send(&invoke).await;
    assert_eq!(response.status(), 200);
    assert_eq!(response.text().await.unwrap(), "{}");
    assert_eq!(b.records(Kind::Events).await.len(), before, "not archived");

    let response = b
        .post(Some(&format!("Bearer {}", b.token())), b"{not json")
        .await;
    assert_eq!(response.status(), 400);
    let response =
        b.h.server
            .http
            .get(format!("{}/api/messages", b.h.server.url))
            .send()
            .await
            .unwrap();
    assert_eq!(response.status(), 405);
}

#[tokio::test]
async fn a_single_tenant_bot_accepts_entra_tokens_of_its_tenant() {
    let b = bot().await;
    let authority = b.h.settings["AUTHORITY_HOST"].clone();
    let activity = event(
        "application/vnd.microsoft.meetingParticipantLeave",
        &b.service_url(),
        "l",
        json!({"members": []}),
    );
    let token = b
        .connector
        .mint(&BotToken::entra(&authority, &b.service_url()));
    let response = b
        .post(
            Some(&format!("Bearer {token}")),
            activity.to_string().as_bytes(),
        )
        .await;
    assert_eq!(response.status(), 200);
    assert_eq!(b.bot_events("meetingParticipantLeave").await.len(), 1);

    let other = b.connector.mint(
        &BotToken::entra(&authority, &b.service_url())
            .claim("tid", "11111111-2222-3333-4444-555555555555"),
    );
    let activity = event(
        "application/vnd.microsoft.meetingParticipantLeave",
        &b.service_url(),
        "l2",
        json!({"members": []}),
    );
    let response = b
        .post(
            Some(&format!("Bearer {other}")),
            activity.to_string().as_bytes(),
        )
        .await;
    assert_eq!(response.status(), 401);
}

#[tokio::test]
async fn without_bot_app_id_everything_is_refused() {
    let app = crate::support::spawn_app(&[]).await;
    let response = app
        .post(
            "/api/messages",
            json!({"type": "event", "name": "application/vnd.microsoft.meetingStart"}).to_string(),
        )
        .await;
    assert_eq!(response.status(), 401);
    assert!(app.objects(Kind::Events).await.is_empty());
}

#[tokio::test]
async fn the_connector_client_sends_proactive_messages_to_bot_framework_hosts_only() {
    let b = bot().await;
    let config = crate::support::config_from(&b.h.settings);
    let builder = teams_notifications::startup::Builder::new(config)
        .with_http(crate::subscriptions::fakes::TlsFront::client())
        .with_env(|_| None);
    let http = builder.http_client().unwrap();
    let client = builder
        .connector_client(&http)
        .unwrap()
        .expect("BOT_APP_ID is set");
    let message = json!({"type": "message", "text": "Emergency call from Building 4"});
    let answer = client
        .send_to_conversation(&b.service_url(), "19:alerts@thread.tacv2", &message)
        .await
        .unwrap();
    assert_eq!(answer.id.as_deref(), Some("1700000000000"));
    assert_eq!(answer.status, 200);
    let call = b.connector.calls().pop().unwrap();
    assert_eq!(call.method, "POST");
    assert_eq!(
        call.target,
        "/teams/v3/conversations/19%3Aalerts%40thread.tacv2/activities"
    );
    assert_eq!(call.body, Some(message.clone()));
    assert_eq!(
        call.authorization.as_deref(),
        Some(&*format!("Bearer {BOT_ACCESS_TOKEN}"))
    );

    let before = b.connector.calls().len();
    let refused = client
        .send_to_conversation("https://attacker.example/teams/", "19:x", &message)
        .await
        .unwrap_err();
    assert!(matches!(
        refused,
        teams_notifications::bot::client::BotApiError::ServiceUrlNotAllowed(_)
    ));
    assert_eq!(b.connector.calls().len(), before);
}

/// The bot added to a team: the authenticated `conversationUpdate` is answered, not archived, and
/// its log line names the `ALERT_BOT_CONVERSATION` value for that conversation (how an operator
/// finds it, docs/deploy.md); a forged one logs nothing of the kind.
#[tokio::test]
async fn a_conversation_update_logs_the_alert_bot_conversation_value() {
    let logs = crate::support::CapturedLogs::default();
    let _guard = logs.install();
    let b = bot().await;
    let update = json!({
        "type": "conversationUpdate", "id": "f:1", "channelId": "msteams",
        "serviceUrl": b.service_url(), "timestamp": now(),
        "membersAdded": [{"id": format!("28:{BOT_APP_ID}")}],
        "conversation": {"isGroup": true, "conversationType": "channel", "id": "19:desk@thread.tacv2", "tenantId": BOT_TENANT},
        "channelData": {"team": {"id": "19:desk@thread.tacv2"}, "eventType": "teamMemberAdded", "tenant": {"id": BOT_TENANT}},
    });
    let forged = b
        .connector
        .mint(&BotToken::connector(&b.service_url()).signing(Signing::Foreign));
    let response = b
        .post(
            Some(&format!("Bearer {forged}")),
            update.to_string().as_bytes(),
        )
        .await;
    assert_eq!(response.status(), 401);
    let expected = format!(
        "alert_bot_conversation={}|19:desk@thread.tacv2",
        b.service_url()
    );
    assert!(!logs.text().contains(&expected));

    let before = b.records(Kind::Events).await.len();
    let response = b.send(&update).await;
    assert_eq!(response.status(), 200);
    assert_eq!(b.records(Kind::Events).await.len(), before, "not archived");
    let text = logs.text();
    assert!(text.contains(&expected), "{text}");
}
