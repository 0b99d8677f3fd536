//! Graph's side of the wire, for `handler simulate`, `handler demo` and the benchmarks: builds
//! rich notifications exactly as Graph does (payload encrypted for the subscription's
//! certificate, validationTokens attached) and posts them.

use std::time::{Duration, Instant};

use openssl::x509::X509Ref;
use serde_json::{Value, json};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use crate::graph::crypto;

/// What to play.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Scenario {
    /// A meeting: call starts, participants join, one waits in the lobby and is admitted, chat,
    /// one leaves and rejoins, one is removed, call ends.
    Meeting,
    /// An emergency call (Graph's emergencyCallEvent).
    Emergency,
    /// A chat: created, members added, messages.
    Chat,
}

/// One notification to send: the decoded payload and where it comes from.
#[derive(Debug, Clone)]
pub struct Step {
    pub resource: String,
    pub odata_type: &'static str,
    pub change_type: &'static str,
    pub payload: Value,
}

const JOIN_WEB_URL_ENCODED: &str = "https%3A%2F%2Fteams.microsoft.com%2Fl%2Fmeetup-join%2F19%253ameeting_ZmYwZTEyYjctZjA5MS00OTkzLWJhNzEtYzFiZDVjNGE0OGFj%2540thread.v2%2F0";

fn participant(id: &str, name: &str, in_lobby: bool, removed: Option<&str>) -> Value {
    let mut p = json!({
        "info": {"identity": {"user": {"id": id, "displayName": name, "tenantId": "f69f5191-20ae-4093-8dae-3ec09edeb253"}}},
        "isInLobby": in_lobby,
        "id": format!("p-{id}"),
    });
    if let Some(reason) = removed {
        p["removedState"] = json!({ "reason": reason });
    }
    p
}

fn at(base: OffsetDateTime, seconds: i64) -> String {
    (base + time::Duration::seconds(seconds))
        .format(&Rfc3339)
        .expect("times format")
}

/// The steps of a scenario, numbered from `round` so repeated rounds are distinct notifications.
pub fn steps(scenario: Scenario, round: u64) -> Vec<Step> {
    // The scenario happened over the last quarter of an hour.
    let base = OffsetDateTime::now_utc() - time::Duration::minutes(15);
    let n = |i: u32| format!("{round}-{i}");
    match scenario {
        Scenario::Meeting => meeting(base, round),
        Scenario::Emergency => {
            let resource =
                "communications/calls/getEmergencyEventsByPolicy(policyName='EmergencyPolicy')"
                    .to_string();
            vec![Step {
                resource: resource.clone(),
                odata_type: "#microsoft.graph.emergencyCallEvent",
                change_type: "updated",
                payload: json!({
                    "@odata.id": resource, "@odata.type": "#microsoft.graph.emergencyCallEvent", "id": n(1),
                    "emergencyCallEvent": {
                        "id": n(1), "callEventType": "callStarted", "policyName": "EmergencyPolicy",
                        "eventDateTime": at(base, 30), "emergencyNumberDialed": "911",
                        "callerInfo": {
                            "displayName": "Megan Bowen", "upn": "meganb@contoso.com", "phoneNumber": "+14255550100",
                            "tenantId": "f69f5191-20ae-4093-8dae-3ec09edeb253",
                            "location": {"address": {"street": "Microsoft Way", "city": "Redmond", "state": "WA",
                                "countryOrRegion": "United States", "postalCode": "98052"},
                                "coordinates": {"latitude": "47.6396", "longitude": "-122.1283"}}
                        }
                    }
                }),
            }]
        }
        Scenario::Chat => {
            let chat = "19:8ea0e38b-efb3-4757-924a-5f94061cf8c2_97f62344@unq.gbl.spaces";
            vec![
                Step {
                    resource: format!("chats('{chat}-{round}')"),
                    odata_type: "#Microsoft.Graph.chat",
                    change_type: "created",
                    payload: json!({"id": format!("{chat}-{round}"), "topic": "Project Falcon", "chatType": "group", "createdDateTime": at(base, 0)}),
                },
                Step {
                    resource: format!("chats('{chat}')/members('{}')", n(2)),
                    odata_type: "#microsoft.graph.aadUserConversationMember",
                    change_type: "created",
                    payload: json!({"@odata.type": "#microsoft.graph.aadUserConversationMember", "id": n(2), "displayName": "Lee Gu", "roles": ["owner"], "userId": "u-3"}),
                },
                Step {
                    resource: format!("chats('{chat}')/messages('{}')", n(3)),
                    odata_type: "#Microsoft.Graph.chatMessage",
                    change_type: "created",
                    payload: json!({"id": n(3), "messageType": "message", "createdDateTime": at(base, 20), "chatId": chat,
                        "from": {"user": {"id": "u-3", "displayName": "Lee Gu", "userIdentityType": "aadUser"}},
                        "body": {"contentType": "text", "content": "Draft is in the channel."}}),
                },
            ]
        }
    }
}

/// The meeting scenario, 14 minutes from `base` (seconds after the call start in brackets):
/// Adele joins and Guest waits in the lobby [60], Guest is admitted [210], they chat, Nestor
/// joins [300], Guest leaves [480] and rejoins [540], Nestor is removed [660], the call ends
/// [840]. `handler demo` draws its attendance.
fn meeting(base: OffsetDateTime, round: u64) -> Vec<Step> {
    let n = |i: u32| format!("{round}-{i}");
    let resource = format!(
        "communications/onlineMeetings(joinWebUrl='{JOIN_WEB_URL_ENCODED}')/meetingCallEvents"
    );
    let call = |i: u32, second: i64, event: &str, participants: Vec<Value>| {
        let mut p = json!({
            "@odata.type": "#microsoft.graph.callevent",
            "@odata.id": resource,
            "id": n(i),
            "eventType": event,
            "eventDateTime": at(base, second),
        });
        if !participants.is_empty() {
            p["participants@delta"] = Value::Array(participants);
        }
        Step {
            resource: resource.clone(),
            odata_type: "#microsoft.graph.callevent",
            change_type: "updated",
            payload: p,
        }
    };
    let chat_resource = "chats('19:meeting_ZmYwZTEy@thread.v2')/messages".to_string();
    let message = |i: u32, second: i64, who: &str, text: &str| Step {
        resource: format!("{chat_resource}('{}')", n(i)),
        odata_type: "#Microsoft.Graph.chatMessage",
        change_type: "created",
        payload: json!({
            "id": n(i), "messageType": "message", "createdDateTime": at(base, second),
            "chatId": "19:meeting_ZmYwZTEy@thread.v2",
            "from": {"user": {"id": "u-1", "displayName": who, "userIdentityType": "aadUser"}},
            "body": {"contentType": "text", "content": text}
        }),
    };
    let adele = |lobby| participant("u-1", "Adele Vance", lobby, None);
    let guest = |lobby, removed| participant("u-2", "Guest Caller", lobby, removed);
    let nestor = |removed| participant("u-4", "Nestor Wilke", false, removed);
    vec![
        call(1, 0, "callStarted", vec![]),
        call(
            2,
            60,
            "rosterUpdated",
            vec![adele(false), guest(true, None)],
        ),
        call(3, 210, "rosterUpdated", vec![guest(false, None)]),
        message(
            4,
            240,
            "Adele Vance",
            "Welcome, let's start with the agenda.",
        ),
        message(5, 270, "Guest Caller", "Thanks for letting me in."),
        call(6, 300, "rosterUpdated", vec![nestor(None)]),
        call(
            7,
            480,
            "rosterUpdated",
            vec![guest(false, Some("Participant has left the meeting call."))],
        ),
        call(8, 540, "rosterUpdated", vec![guest(false, None)]),
        call(
            9,
            660,
            "rosterUpdated",
            vec![nestor(Some(
                "Participant has been removed from the meeting call.",
            ))],
        ),
        call(10, 840, "callEnded", vec![]),
    ]
}

/// Who the notifications claim to be for.
#[derive(Debug, Clone)]
pub struct Target {
    pub subscription_id: String,
    pub client_state: String,
    pub tenant_id: String,
}

/// A rich `changeNotification` item for `step`, encrypted as Graph does.
pub fn rich_item(
    step: &Step,
    target: &Target,
    certificate: &X509Ref,
    certificate_id: &str,
) -> Result<Value, openssl::error::ErrorStack> {
    let plaintext = serde_json::to_vec(&step.payload).expect("payloads serialize");
    let content = crypto::encrypt(&plaintext, certificate, certificate_id)?;
    let expires = at(OffsetDateTime::now_utc(), 3600 * 24);
    Ok(json!({
        "subscriptionId": target.subscription_id,
        "clientState": target.client_state,
        "changeType": step.change_type,
        "tenantId": target.tenant_id,
        "organizationId": target.tenant_id,
        "resource": step.resource,
        "subscriptionExpirationDateTime": expires,
        "resourceData": {
            "@odata.type": step.odata_type,
            "@odata.id": step.resource,
            "id": step.payload.get("id").cloned().unwrap_or(Value::Null),
        },
        "encryptedContent": content,
    }))
}

/// A collection body.
pub fn collection(items: Vec<Value>, validation_tokens: &[String]) -> String {
    json!({ "value": items, "validationTokens": validation_tokens }).to_string()
}

/// Statuses and latency of a run.
#[derive(Debug, Default, Clone)]
pub struct RunStats {
    pub sent: usize,
    pub statuses: std::collections::BTreeMap<u16, usize>,
    pub errors: usize,
    pub latencies: Vec<Duration>,
    pub elapsed: Duration,
}

impl RunStats {
    /// The `p`-th percentile latency (0..=100), nearest rank.
    pub fn percentile(&self, p: f64) -> Duration {
        if self.latencies.is_empty() {
            return Duration::ZERO;
        }
        let mut v = self.latencies.clone();
        v.sort();
        let rank = ((p / 100.0) * v.len() as f64).ceil().max(1.0) as usize;
        v[rank.min(v.len()) - 1]
    }

    pub fn render(&self) -> String {
        let statuses: Vec<String> = self
            .statuses
            .iter()
            .map(|(s, n)| format!("{s}: {n}"))
            .collect();
        format!(
            "sent {} request(s) in {:.2?} ({}{}); latency p50 {:.1?}, p90 {:.1?}, p99 {:.1?}, max {:.1?}",
            self.sent,
            self.elapsed,
            statuses.join(", "),
            if self.errors > 0 {
                format!(", {} transport errors", self.errors)
            } else {
                String::new()
            },
            self.percentile(50.0),
            self.percentile(90.0),
            self.percentile(99.0),
            self.percentile(100.0),
        )
    }
}

/// Posts `bodies` to `url`, at most `rate` requests per second (`None`: as fast as possible,
/// one at a time, so latencies are not queueing).
pub async fn post_all(
    client: &reqwest::Client,
    url: &str,
    bodies: Vec<String>,
    rate: Option<f64>,
) -> RunStats {
    let mut stats = RunStats::default();
    let started = Instant::now();
    let interval = rate
        .filter(|r| *r > 0.0)
        .map(|r| Duration::from_secs_f64(1.0 / r));
    for (i, body) in bodies.into_iter().enumerate() {
        if let Some(iv) = interval {
            let due = started + iv * i as u32;
            tokio::time::sleep_until(due.into()).await;
        }
        let t = Instant::now();
        let result = client
            .post(url)
            .header("content-type", "application/json")
            .body(body)
            .send()
            .await;
        stats.sent += 1;
        match result {
            Ok(r) => {
                stats.latencies.push(t.elapsed());
                *stats.statuses.entry(r.status().as_u16()).or_default() += 1;
            }
            Err(_) => stats.errors += 1,
        }
    }
    stats.elapsed = started.elapsed();
    stats
}
