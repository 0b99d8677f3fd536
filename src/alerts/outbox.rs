//! The alert outbox: durable records under `alerts/` in the archive.
//!
//! - `alerts/{date}/{subscription}/{sha256}.json`: the [`AlertRecord`], named from the alerting
//!   event's content address (the same date, partition and digest as its `events/` object) and
//!   written in the same create-if-absent batch as the event, before Graph gets its 202. A resend
//!   of the notification has the same name: it finds the record there and alerts nobody again.
//! - `{sha256}.{route}.a{n}.json`: attempt `n` on a route, created if absent. Creating it is the
//!   claim: of two instances, exactly one creates it and sends; the other sees it exists.
//! - `{sha256}.{route}.r{n}.json`: the result of attempt `n` (answer or error).
//! - `{sha256}.{route}.delivered.json` / `.expired.json`: the route's final state.
//! - `{sha256}.done.json`: every route is final (a sweep skips the alert by its name alone).
//! - `alerts/undated/call-{callId}/{callEventType}.json`: which alert a call's state raised, so
//!   a later state of the same call is sent as a follow-up of the alarm.

use std::collections::BTreeMap;

use bytes::Bytes;
use serde::{Deserialize, Serialize};

use crate::archive::records::to_json;
use crate::archive::{Kind, ObjectName};
use crate::config::AlertTrigger;
use crate::graph::events::EmergencyCallEvent;

/// The outbox entry of one alerting event.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct AlertRecord {
    /// When the notification arrived (the start of the notification-to-route latency).
    pub received_at: String,
    /// The `ALERT_ON` value that matched (`emergencyCallEvent.callStarted`, ...).
    pub trigger: String,
    /// The archived event (`events/...`).
    pub event: String,
    /// The emergency call's id (`emergencyCallEvent.id`), which links its later states.
    #[serde(default)]
    pub call_id: Option<String>,
    /// The routes configured when the alert was raised (route ids, no URLs).
    pub routes: Vec<String>,
    pub summary: String,
    /// The typed event, as Graph's document names its fields.
    pub emergency: EmergencyCallEvent,
}

/// Which alert a call state raised (`alerts/undated/call-{id}/{state}.json`).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct CallIndexRecord {
    pub alert: String,
    #[serde(default)]
    pub event_date_time: Option<String>,
}

/// A claimed attempt: whoever created this object sends attempt `attempt`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct AttemptRecord {
    pub attempt: u32,
    pub instance: String,
    pub started_at: String,
    /// After this time an attempt without a result counts as failed (its sender died).
    pub lease_until: String,
}

/// What attempt `attempt` got.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct ResultRecord {
    pub attempt: u32,
    pub finished_at: String,
    pub ok: bool,
    #[serde(default)]
    pub status: Option<u16>,
    /// The route's answer or the error (escaped, bounded; never a URL).
    pub detail: String,
    pub elapsed_ms: u64,
}

/// The route has the alert.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct DeliveredRecord {
    pub attempt: u32,
    pub delivered_at: String,
    /// From the notification's arrival to the route's answer.
    pub latency_ms: u64,
    pub status: u16,
    /// The bot route: the Bot Connector's id of the message (the call's follow-up replaces it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub activity_id: Option<String>,
}

/// The route never took the alert within `ALERT_RETRY_HOURS`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct ExpiredRecord {
    pub expired_at: String,
    pub attempts: u32,
    pub reason: String,
    pub summary: String,
}

/// The objects an alerting event adds to its write.
#[derive(Debug, Clone)]
pub struct AlertEntries {
    /// The [`AlertRecord`].
    pub record: (ObjectName, Bytes),
    /// The call index ([`CallIndexRecord`]), when the event names its call.
    pub index: Option<(ObjectName, Bytes)>,
}

/// What the receiver needs to write alert records: which events alert, and to which routes.
#[derive(Debug, Clone)]
pub struct Outbox {
    pub on: Vec<AlertTrigger>,
    pub route_ids: Vec<String>,
}

impl Outbox {
    /// The objects to write with the event `event_name` when `event` alerts: the alert record and
    /// the call index. `None` when no route is configured or `ALERT_ON` does not name its state.
    pub fn entries(
        &self,
        received_at: &str,
        event_name: &ObjectName,
        event: &EmergencyCallEvent,
        summary: &str,
    ) -> Option<AlertEntries> {
        let trigger = AlertTrigger::of_call_event_type(event.call_event_type.as_deref());
        let alert = alert_name(event_name)?;
        if self.route_ids.is_empty() || !self.on.contains(&trigger) {
            return None;
        }
        let record = AlertRecord {
            received_at: received_at.to_string(),
            trigger: trigger.name().to_string(),
            event: event_name.to_string(),
            call_id: event.id.clone(),
            routes: self.route_ids.clone(),
            summary: summary.to_string(),
            emergency: event.clone(),
        };
        let index = event.id.as_ref().map(|call_id| {
            let index = CallIndexRecord {
                alert: alert.to_string(),
                event_date_time: event.event_date_time.clone(),
            };
            (
                call_index_name(call_id, event.call_event_type.as_deref()),
                to_json(&index),
            )
        });
        Some(AlertEntries {
            record: (alert, to_json(&record)),
            index,
        })
    }
}

/// `alerts/...` for an `events/...` name (same date, partition and digest).
pub(crate) fn alert_name(event_name: &ObjectName) -> Option<ObjectName> {
    let rest = event_name.as_str().strip_prefix("events/")?;
    ObjectName::parse(&format!("alerts/{rest}"))
}

/// The index of a call's state.
pub(crate) fn call_index_name(call_id: &str, call_event_type: Option<&str>) -> ObjectName {
    ObjectName::new(
        Kind::Alerts,
        None,
        &format!("call-{call_id}"),
        call_event_type.unwrap_or("unknown"),
    )
}

/// A record of `alert` for `route` (`a3`, `r3`, `delivered`, `expired`), or the alert's `done`.
pub fn sub_name(alert: &ObjectName, route: Option<&str>, what: &str) -> ObjectName {
    let base = alert.as_str().trim_end_matches(".json");
    let name = match route {
        Some(route) => format!("{base}.{route}.{what}.json"),
        None => format!("{base}.{what}.json"),
    };
    ObjectName::parse(&name).expect("alert record names are valid object names")
}

/// What the names of a route's records say (no reads).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RouteNames {
    /// The highest attempt claimed (0: none).
    pub last_attempt: u32,
    /// The highest attempt with a result.
    pub last_result: u32,
    pub delivered: bool,
    pub expired: bool,
}

impl RouteNames {
    pub fn is_final(&self) -> bool {
        self.delivered || self.expired
    }
}

/// What the names of an alert's records say.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AlertNames {
    pub has_record: bool,
    pub done: bool,
    pub routes: BTreeMap<String, RouteNames>,
}

/// Groups a listing of `alerts/` by alert (call indexes are left out).
pub fn group(names: &[ObjectName]) -> BTreeMap<ObjectName, AlertNames> {
    let mut out: BTreeMap<ObjectName, AlertNames> = BTreeMap::new();
    for name in names {
        let s = name.as_str();
        let Some((dir, file)) = s.rsplit_once('/') else {
            continue;
        };
        let stem = file.trim_end_matches(".json");
        let mut parts = stem.split('.');
        let digest = parts.next().unwrap_or_default();
        if digest.len() != 64 || !digest.bytes().all(|b| b.is_ascii_hexdigit()) {
            continue;
        }
        let Some(alert) = ObjectName::parse(&format!("{dir}/{digest}.json")) else {
            continue;
        };
        let entry = out.entry(alert).or_default();
        match (parts.next(), parts.next(), parts.next()) {
            (None, _, _) => entry.has_record = true,
            (Some("done"), None, _) => entry.done = true,
            (Some(route), Some(what), None) => {
                let r = entry.routes.entry(route.to_string()).or_default();
                match what {
                    "delivered" => r.delivered = true,
                    "expired" => r.expired = true,
                    _ => {
                        let n = what
                            .get(1..)
                            .and_then(|n| n.parse::<u32>().ok())
                            .unwrap_or(0);
                        if what.starts_with('a') {
                            r.last_attempt = r.last_attempt.max(n);
                        } else if what.starts_with('r') {
                            r.last_result = r.last_result.max(n);
                        }
                    }
                }
            }
            _ => {}
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::graph::events::{EventKind, TeamsEvent};
    use serde_json::json;

    fn emergency(state: &str) -> EmergencyCallEvent {
        let v = json!({"emergencyCallEvent": {"id": "call-1", "callEventType": state}});
        match TeamsEvent::read(EventKind::EmergencyCallEvent, &v) {
            TeamsEvent::Emergency(e) => e,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn alerts_are_named_from_the_event_and_only_for_alert_on() {
        let digest = "ab".repeat(32);
        let event = ObjectName::new(Kind::Events, Some((2026, 12, 1)), "sub-1", &digest);
        let outbox = Outbox {
            on: vec![AlertTrigger::EmergencyCallStarted],
            route_ids: vec!["teams-0123456789ab".into()],
        };
        let entries = outbox
            .entries("t", &event, &emergency("callStarted"), "s")
            .unwrap();
        assert_eq!(
            entries.record.0.as_str(),
            format!("alerts/2026/12/01/sub-1/{digest}.json")
        );
        assert_eq!(
            entries.index.unwrap().0.as_str(),
            "alerts/undated/call-call-1/callStarted.json"
        );
        assert!(
            outbox
                .entries("t", &event, &emergency("callEnded"), "s")
                .is_none()
        );
        let none = Outbox {
            route_ids: vec![],
            ..outbox
        };
        assert!(
            none.entries("t", &event, &emergency("callStarted"), "s")
                .is_none()
        );
    }

    #[test]
    fn a_listing_groups_into_alerts_and_route_states() {
        let digest = "cd".repeat(32);
        let alert = ObjectName::new(Kind::Alerts, Some((2026, 12, 1)), "sub-1", &digest);
        let names = vec![
            alert.clone(),
            sub_name(&alert, Some("teams-1"), "a1"),
            sub_name(&alert, Some("teams-1"), "r1"),
            sub_name(&alert, Some("teams-1"), "a2"),
            sub_name(&alert, Some("webhook-2"), "a1"),
            sub_name(&alert, Some("webhook-2"), "r1"),
            sub_name(&alert, Some("webhook-2"), "delivered"),
            call_index_name("x", Some("callStarted")),
        ];
        let groups = group(&names);
        assert_eq!(groups.len(), 1);
        let g = &groups[&alert];
        assert!(g.has_record && !g.done);
        assert_eq!(
            g.routes["teams-1"],
            RouteNames {
                last_attempt: 2,
                last_result: 1,
                delivered: false,
                expired: false
            }
        );
        assert!(g.routes["webhook-2"].is_final());
        let done = group(&[alert.clone(), sub_name(&alert, None, "done")]);
        assert!(done[&alert].done);
    }
}
