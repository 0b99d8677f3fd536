//! The Adaptive Card (schema 1.4, what Teams renders) for an emergency call, built from the typed
//! `emergencyCallEvent` of Microsoft's emergency-call-events document: who called which emergency
//! number, when, from where (address; coordinates with a map link), the policy, the call's state.
//!
//! Values come from Graph but originate with people (a display name is user-chosen), so every
//! text is escaped for the card's Markdown subset: a name cannot become a link or a heading.

use serde_json::{Value, json};

use crate::graph::events::{Address, EmergencyCallEvent};

/// What kind of message the card is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CardKind {
    /// The first message about a call.
    Alarm,
    /// A later state of a call that already alerted; `alarm_time` is when the alarm's call started.
    FollowUp { alarm_time: Option<String> },
    /// `handler alert-test`: says so in its title.
    Test,
}

/// The Teams Workflows message envelope around a card.
pub fn workflows_message(card: Value) -> Value {
    json!({
        "type": "message",
        "attachments": [{
            "contentType": "application/vnd.microsoft.card.adaptive",
            "contentUrl": null,
            "content": card,
        }]
    })
}

/// The card for `event`.
pub fn card(event: &EmergencyCallEvent, kind: &CardKind) -> Value {
    let state = event.call_event_type.as_deref().unwrap_or("unknown");
    let number = event.emergency_number_dialed.as_deref().unwrap_or("?");
    let (title, color) = match kind {
        CardKind::Alarm => (format!("Emergency call: {}", escape(number)), "Attention"),
        CardKind::FollowUp { .. } => (
            format!(
                "Update: emergency call to {} – {}",
                escape(number),
                escape(state)
            ),
            "Warning",
        ),
        CardKind::Test => (
            "TEST – emergency call alert (no emergency)".to_string(),
            "Accent",
        ),
    };
    let caller = event.caller_info.as_ref();
    let who = caller
        .map(|c| match (c.display_name.as_deref(), c.upn.as_deref()) {
            (Some(name), Some(upn)) => format!("{} ({})", escape(name), escape(upn)),
            (Some(one), None) | (None, Some(one)) => escape(one),
            (None, None) => "unknown caller".into(),
        })
        .unwrap_or_else(|| "unknown caller".into());
    let location = caller.and_then(|c| c.location.as_ref());
    let address = location
        .and_then(|l| l.address.as_ref())
        .map(address_line)
        .filter(|a| !a.is_empty());
    let coordinates = location
        .and_then(|l| l.coordinates.as_ref())
        .and_then(coordinates);

    let mut facts = vec![fact("Caller", who)];
    if let Some(phone) = caller.and_then(|c| c.phone_number.as_deref()) {
        facts.push(fact("Phone", escape(phone)));
    }
    facts.push(fact("Number dialled", escape(number)));
    facts.push(fact(
        "Location",
        address.map_or_else(|| "unknown".into(), |a| escape(&a)),
    ));
    if let Some((lat, lon)) = coordinates {
        facts.push(fact("Coordinates", format!("{lat:.5}, {lon:.5}")));
    }
    facts.push(fact(
        "Policy",
        escape(event.policy_name.as_deref().unwrap_or("?")),
    ));
    facts.push(fact("Call state", escape(state)));
    facts.push(fact(
        "Time",
        escape(event.event_date_time.as_deref().unwrap_or("?")),
    ));
    if let CardKind::FollowUp {
        alarm_time: Some(t),
    } = kind
    {
        facts.push(fact("Alarm raised for the call at", escape(t)));
    }

    let mut card = json!({
        "type": "AdaptiveCard",
        "$schema": "http://adaptivecards.io/schemas/adaptive-card.json",
        "version": "1.4",
        "msteams": {"width": "Full"},
        "body": [
            {"type": "TextBlock", "text": title, "size": "Large", "weight": "Bolder",
             "color": color, "wrap": true},
            {"type": "FactSet", "facts": facts},
        ],
    });
    if let Some((lat, lon)) = coordinates {
        card["actions"] =
            json!([{"type": "Action.OpenUrl", "title": "Open map", "url": map_url(lat, lon)}]);
    }
    card
}

fn fact(title: &str, value: String) -> Value {
    json!({"title": title, "value": value})
}

/// `725 Microsoft Way, Redmond, WA 00000, United States` (house number and suffix from
/// `additionalData` when present).
pub fn address_line(a: &Address) -> String {
    let extra = |k: &str| {
        a.additional_data
            .as_ref()
            .and_then(|d| d.get(k))
            .and_then(Value::as_str)
            .map(str::trim)
            .filter(|s| !s.is_empty())
    };
    let street = [extra("houseNumber"), a.street.as_deref()]
        .into_iter()
        .flatten()
        .collect::<Vec<_>>()
        .join(" ");
    let state_postal = [a.state.as_deref(), a.postal_code.as_deref()]
        .into_iter()
        .flatten()
        .collect::<Vec<_>>()
        .join(" ");
    [
        Some(street.as_str()),
        a.city.as_deref(),
        Some(state_postal.as_str()),
        a.country_or_region.as_deref(),
    ]
    .into_iter()
    .flatten()
    .map(str::trim)
    .filter(|s| !s.is_empty())
    .collect::<Vec<_>>()
    .join(", ")
}

/// `(latitude, longitude)` from Graph's coordinates (numbers or numeric strings), when in range.
pub fn coordinates(v: &Value) -> Option<(f64, f64)> {
    let read = |k: &str| match v.get(k)? {
        Value::Number(n) => n.as_f64(),
        Value::String(s) => s.trim().parse::<f64>().ok(),
        _ => None,
    };
    let (lat, lon) = (read("latitude")?, read("longitude")?);
    ((-90.0..=90.0).contains(&lat) && (-180.0..=180.0).contains(&lon)).then_some((lat, lon))
}

/// A map centred on the point, with a pin (Bing Maps' documented URL parameters).
pub fn map_url(lat: f64, lon: f64) -> String {
    format!(
        "https://www.bing.com/maps?cp={lat:.6}~{lon:.6}&lvl=17&sp=point.{lat:.6}_{lon:.6}_Emergency%20caller"
    )
}

/// Escapes the characters the card's Markdown subset interprets, and drops control characters.
pub fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars().take(512) {
        match c {
            '\\' | '*' | '_' | '[' | ']' | '(' | ')' | '#' | '`' | '<' | '>' | '~' | '|' | '!' => {
                out.push('\\');
                out.push(c);
            }
            c if c.is_control() => out.push(' '),
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::graph::events::{EventKind, TeamsEvent};

    fn event() -> EmergencyCallEvent {
        let v = json!({"@odata.type":"#microsoft.graph.emergencyCallEvent","emergencyCallEvent":{
            "id":"11111111-0000-0000-0000-000000000000","callEventType":"callStarted",
            "policyName":"EmergencyPolicy","eventDateTime":"2024-01-01T10:00:00.0000000+00:00",
            "emergencyNumberDialed":"911","callerInfo":{"displayName":"Ann [x](http://evil)",
            "upn":"ann@contoso.com","phoneNumber":"+14255550100","location":{"address":{
            "street":"Microsoft Way","city":"Redmond","state":"WA","countryOrRegion":"United States",
            "postalCode":"98052","additionalData":{"houseNumber":"725"}},
            "coordinates":{"latitude":"47.6396","longitude":"-122.1283"}}}}});
        match TeamsEvent::read(EventKind::EmergencyCallEvent, &v) {
            TeamsEvent::Emergency(e) => e,
            other => panic!("{other:?}"),
        }
    }

    fn facts(card: &Value) -> Vec<(String, String)> {
        card["body"][1]["facts"]
            .as_array()
            .unwrap()
            .iter()
            .map(|f| {
                (
                    f["title"].as_str().unwrap().to_string(),
                    f["value"].as_str().unwrap().to_string(),
                )
            })
            .collect()
    }

    #[test]
    fn the_card_says_who_called_what_from_where_under_which_policy() {
        let c = card(&event(), &CardKind::Alarm);
        assert_eq!(c["version"], "1.4");
        assert_eq!(c["body"][0]["text"], "Emergency call: 911");
        let facts = facts(&c);
        let get = |t: &str| facts.iter().find(|(k, _)| k == t).unwrap().1.clone();
        assert_eq!(get("Caller"), r"Ann \[x\]\(http://evil\) (ann@contoso.com)");
        assert_eq!(
            get("Location"),
            "725 Microsoft Way, Redmond, WA 98052, United States"
        );
        assert_eq!(get("Coordinates"), "47.63960, -122.12830");
        assert_eq!(get("Policy"), "EmergencyPolicy");
        assert_eq!(get("Call state"), "callStarted");
        assert_eq!(
            c["actions"][0]["url"],
            "https://www.bing.com/maps?cp=47.639600~-122.128300&lvl=17&sp=point.47.639600_-122.128300_Emergency%20caller"
        );
        let m = workflows_message(c);
        assert_eq!(
            m["attachments"][0]["contentType"],
            "application/vnd.microsoft.card.adaptive"
        );
        assert!(m["attachments"][0]["contentUrl"].is_null());
    }

    #[test]
    fn follow_ups_and_tests_say_so_and_bad_coordinates_have_no_map() {
        let mut e = event();
        e.call_event_type = Some("callEnded".into());
        let c = card(
            &e,
            &CardKind::FollowUp {
                alarm_time: Some("2024-01-01T10:00:00Z".into()),
            },
        );
        assert_eq!(
            c["body"][0]["text"],
            "Update: emergency call to 911 – callEnded"
        );
        assert!(
            facts(&c)
                .iter()
                .any(|(k, _)| k == "Alarm raised for the call at")
        );
        assert!(
            card(&e, &CardKind::Test)["body"][0]["text"]
                .as_str()
                .unwrap()
                .starts_with("TEST")
        );
        assert_eq!(
            coordinates(&json!({"latitude": "95", "longitude": "0"})),
            None
        );
        assert_eq!(
            coordinates(&json!({"latitude": 1.5, "longitude": 2})),
            Some((1.5, 2.0))
        );
        e.caller_info.as_mut().unwrap().location = None;
        let c = card(&e, &CardKind::Alarm);
        assert!(c.get("actions").is_none());
    }
}
