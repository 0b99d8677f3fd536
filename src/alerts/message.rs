//! What each route is sent for an alert: the Workflows message, the signed webhook's JSON, the
//! bot's activity. One [`Message`] describes the alert; each route renders it its own way.

use serde_json::{Value, json};

use super::card::{self, CardKind};
use super::outbox::AlertRecord;
use crate::graph::events::EmergencyCallEvent;

/// An alert about to be sent.
#[derive(Debug, Clone)]
pub struct Message {
    /// The alert's archive name (the webhook's `X-Alert-Id` and `alertId`).
    pub alert_id: String,
    pub kind: CardKind,
    /// The alarm this message follows up, when it is a follow-up.
    pub follows_up: Option<String>,
    pub record: AlertRecord,
    /// Where the archive is (a directory or container URL, no secrets).
    pub archive_location: String,
    /// The bot route only: the activity id of the alarm's message this follow-up replaces
    /// (Bot Connector update); `None` posts a new message.
    pub replaces: Option<String>,
}

impl Message {
    fn kind_name(&self) -> &'static str {
        match self.kind {
            CardKind::Alarm => "alarm",
            CardKind::FollowUp { .. } => "followUp",
            CardKind::Test => "test",
        }
    }

    pub fn card(&self) -> Value {
        card::card(&self.record.emergency, &self.kind)
    }

    /// A Teams Workflows webhook's body.
    pub fn workflows(&self) -> Value {
        card::workflows_message(self.card())
    }

    /// The generic webhook's body: the typed event and where it is archived.
    pub fn webhook(&self) -> Value {
        json!({
            "type": "emergencyCallAlert",
            "alertId": self.alert_id,
            "kind": self.kind_name(),
            "followsUp": self.follows_up,
            "trigger": self.record.trigger,
            "receivedAt": self.record.received_at,
            "summary": self.record.summary,
            "callId": self.record.call_id,
            "event": self.record.emergency,
            "archive": {"location": self.archive_location, "event": self.record.event},
        })
    }

    /// The bot's proactive activity (Bot Connector `Activity`, a card attachment); a
    /// replacement names the activity it replaces.
    pub fn activity(&self) -> Value {
        let mut activity = json!({
            "type": "message",
            "summary": self.record.summary,
            "attachments": [{
                "contentType": "application/vnd.microsoft.card.adaptive",
                "content": self.card(),
            }],
        });
        if let Some(id) = &self.replaces {
            activity["id"] = json!(id);
        }
        activity
    }

    /// This follow-up as the replacement of the alarm's bot message `activity_id`: what the
    /// later state does not say (caller, location, number, policy) is kept from the alarm, so
    /// replacing the card never loses what the desk saw.
    pub fn replacing(&self, activity_id: &str, alarm: &EmergencyCallEvent) -> Message {
        let mut message = self.clone();
        let event = &mut message.record.emergency;
        event.caller_info = event.caller_info.take().or(alarm.caller_info.clone());
        event.policy_name = event.policy_name.take().or(alarm.policy_name.clone());
        event.emergency_number_dialed = event
            .emergency_number_dialed
            .take()
            .or(alarm.emergency_number_dialed.clone());
        message.replaces = Some(activity_id.to_string());
        message
    }
}

/// The event `handler alert-test` sends: plainly a test, with every field the card shows.
pub fn test_record(received_at: &str) -> AlertRecord {
    let emergency = serde_json::from_value(json!({
        "id": "00000000-0000-0000-0000-000000000000",
        "callEventType": "callStarted",
        "policyName": "TEST (handler alert-test)",
        "eventDateTime": received_at,
        "emergencyNumberDialed": "TEST",
        "callerInfo": {
            "displayName": "Alert test – not an emergency",
            "upn": "alert-test@example.invalid",
            "location": {
                "address": {"street": "Microsoft Way", "city": "Redmond", "state": "WA",
                            "postalCode": "98052", "countryOrRegion": "United States",
                            "additionalData": {"houseNumber": "1"}},
                "coordinates": {"latitude": "47.6396", "longitude": "-122.1283"}
            }
        }
    }))
    .expect("the test event reads as an emergencyCallEvent");
    AlertRecord {
        received_at: received_at.to_string(),
        trigger: "test".into(),
        event: "none (handler alert-test)".into(),
        call_id: None,
        routes: Vec::new(),
        summary: "handler alert-test: a test of the emergency alert routes".into(),
        emergency,
    }
}
