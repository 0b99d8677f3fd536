//! The renewer's desired state: the subscriptions `SUBSCRIPTIONS_FILE` asks for, validated once
//! into [`DesiredSubscription`]s that the reconcile matches against Graph's listing.

use std::path::Path;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::graph::subscriptions::eventhub_url::EventHubUrl;
use crate::graph::subscriptions::{
    ApiVersion, LIFETIME_MARGIN_MINUTES, PaymentModel, ResourceKind, Subscription, beta_only,
    choose_lifetime, default_api_version, emergency_call_events, meeting_call_events,
    payment_model, same_url, supported_models, truncate, with_model, without_model,
};

/// Why the desired subscriptions cannot be used. Names the entry (0-based) at fault.
#[derive(Debug, thiserror::Error)]
pub enum DesiredError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("SUBSCRIPTIONS_FILE is not a JSON list of subscriptions: {0}")]
    Json(#[source] serde_json::Error),
    /// `source`: the JSON error when the entry does not parse; `None` when it is invalid.
    #[error("subscription #{index}: {reason}")]
    Entry {
        index: usize,
        reason: String,
        #[source]
        source: Option<serde_json::Error>,
    },
}

/// One entry of `SUBSCRIPTIONS_FILE`, as written.
///
/// The resource is given as `resource` (a Graph path), or built by a helper:
/// `meetingJoinUrl` (meeting call events, as in Microsoft's "Get change notifications for Teams
/// meeting call events" document) or `emergencyPolicy` (emergency call events).
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct DesiredEntry {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resource: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub meeting_join_url: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub emergency_policy: Option<String>,
    /// `created`, `updated`, `deleted`, comma-separated. Defaults to `updated` for call events.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub change_type: Option<String>,
    /// Rich notifications (encrypted resource data). Defaults to `true` for emergency events
    /// (the only kind they support), `false` otherwise.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub include_resource_data: Option<bool>,
    /// `webhook` (the default: `NOTIFICATION_URL`) or `eventHub` (`EVENTHUB_NOTIFICATION_URL`,
    /// or this entry's `notificationUrl`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub delivery: Option<String>,
    /// An explicit `EventHub:` notification URL (Microsoft's two forms: a namespace and hub
    /// with role-based access, or the legacy Key Vault secret); implies `eventHub` delivery.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub notification_url: Option<String>,
    /// A lifetime shorter than Graph's maximum, in minutes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expiration_minutes: Option<u32>,
    /// `v1.0` or `beta`; defaults to what the resource needs ([`default_api_version`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub api_version: Option<String>,
    /// The payment model of a metered Teams API, `A` or `B` (or `?model=` in `resource`);
    /// without one such a subscription runs in evaluation mode (see the `payment` module).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model: Option<String>,
    /// Free text for people reading the file; ignored.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
}

/// A desired subscription, validated: every field is usable as it is.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct DesiredSubscription {
    /// The resource path as given to Graph.
    pub resource: String,
    /// Normalized: known values, lower case, in Graph's order (`created,updated,deleted`).
    pub change_type: String,
    pub include_resource_data: bool,
    /// `None`: Graph's maximum for the resource.
    pub expiration_minutes: Option<u32>,
    pub api_version: ApiVersion,
    #[serde(skip)]
    pub kind: ResourceKind,
    /// Where Graph delivers this subscription's notifications.
    #[serde(skip)]
    pub target: DeliveryTarget,
}

/// Where a desired subscription is delivered.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum DeliveryTarget {
    /// The webhook (`NOTIFICATION_URL`, `LIFECYCLE_NOTIFICATION_URL`).
    #[default]
    Webhook,
    /// Event Hubs: the entry's own `EventHub:` URL, or `EVENTHUB_NOTIFICATION_URL` (`None`).
    /// No handshake: Graph writes a reachability message into the hub instead.
    EventHub(Option<EventHubUrl>),
}

impl DesiredEntry {
    /// `delivery` and `notificationUrl`, checked.
    fn target(&self) -> Result<DeliveryTarget, String> {
        let explicit = match &self.notification_url {
            Some(u) => Some(EventHubUrl::parse(u).map_err(|e| e.to_string())?),
            None => None,
        };
        match (self.delivery.as_deref(), explicit) {
            (None | Some("webhook"), None) => Ok(DeliveryTarget::Webhook),
            (Some("webhook"), Some(_)) => Err(
                "a webhook subscription takes NOTIFICATION_URL; notificationUrl is for Event Hubs"
                    .into(),
            ),
            (None | Some("eventHub"), Some(url)) => Ok(DeliveryTarget::EventHub(Some(url))),
            (Some("eventHub"), None) => Ok(DeliveryTarget::EventHub(None)),
            (Some(other), _) => Err(format!(
                "delivery must be webhook or eventHub, not {:?}",
                truncate(other, 40)
            )),
        }
    }
}

impl DesiredEntry {
    /// Validates the entry.
    pub fn validate(&self) -> Result<DesiredSubscription, String> {
        let given = [
            self.resource.is_some(),
            self.meeting_join_url.is_some(),
            self.emergency_policy.is_some(),
        ]
        .iter()
        .filter(|b| **b)
        .count();
        if given != 1 {
            return Err(
                "give exactly one of `resource`, `meetingJoinUrl`, `emergencyPolicy`".into(),
            );
        }
        let resource = if let Some(r) = &self.resource {
            let r = r.trim();
            if r.is_empty() || r.chars().any(char::is_whitespace) {
                return Err(format!("invalid resource {:?}", truncate(r, 60)));
            }
            r.to_string()
        } else if let Some(url) = &self.meeting_join_url {
            meeting_call_events(url).map_err(|e| e.to_string())?
        } else {
            emergency_call_events(self.emergency_policy.as_deref().unwrap_or_default())
                .map_err(|e| e.to_string())?
        };
        let resource = apply_model(resource, self.model.as_deref())?;
        let kind = ResourceKind::classify(&resource);
        let change_type = match (&self.change_type, kind.default_change_type()) {
            (Some(c), _) => normalize_change_type(c)?,
            (None, Some(d)) => d.to_string(),
            (None, None) => return Err(format!("`changeType` is required for {resource}")),
        };
        let include_resource_data = self
            .include_resource_data
            .unwrap_or(kind.requires_resource_data());
        if kind.requires_resource_data() && !include_resource_data {
            return Err(format!(
                "{} subscriptions support only rich notifications: includeResourceData must be true",
                kind.name()
            ));
        }
        let api_version = match &self.api_version {
            Some(v) => ApiVersion::parse(v)
                .ok_or_else(|| format!("apiVersion must be v1.0 or beta, not {v:?}"))?,
            None => default_api_version(&resource),
        };
        if api_version == ApiVersion::V1 && beta_only(&resource) {
            return Err(format!("{resource} exists only on the beta endpoint"));
        }
        match (self.expiration_minutes, kind.max_lifetime_minutes(true)) {
            (Some(m), _) if m <= LIFETIME_MARGIN_MINUTES => {
                return Err(format!(
                    "expirationMinutes must be more than {LIFETIME_MARGIN_MINUTES}"
                ));
            }
            (Some(m), Some(max)) if m > max => {
                return Err(format!(
                    "expirationMinutes {m} is over Graph's maximum of {max} for {}",
                    kind.name()
                ));
            }
            (None, None) => {
                return Err(format!(
                    "{resource} is not a Teams resource this handler knows: give expirationMinutes"
                ));
            }
            _ => {}
        }
        Ok(DesiredSubscription {
            resource,
            change_type,
            include_resource_data,
            expiration_minutes: self.expiration_minutes,
            api_version,
            kind,
            target: self.target()?,
        })
    }
}

/// The resource string with its payment model: the entry's `model`, or the one the resource
/// string carries; refused when the two disagree or Graph offers no such model for it.
fn apply_model(resource: String, model: Option<&str>) -> Result<String, String> {
    let parse = |v: &str| {
        PaymentModel::parse(v)
            .ok_or_else(|| format!("model must be A or B, not {:?}", truncate(v, 20)))
    };
    let given = model.map(parse).transpose()?;
    let in_resource = crate::graph::subscriptions::model_parameter(&resource)
        .map(parse)
        .transpose()?;
    let chosen = match (given, in_resource) {
        (Some(a), Some(b)) if a != b => {
            return Err(format!(
                "model {a} disagrees with the resource's ?model={b}"
            ));
        }
        (a, b) => a.or(b),
    };
    let Some(chosen) = chosen else {
        return Ok(resource);
    };
    let supported = supported_models(&resource);
    if !supported.contains(&chosen) {
        let base = without_model(&resource);
        return Err(if supported.is_empty() {
            format!("{base} is not a metered Teams API: it takes no model")
        } else {
            format!("{base} takes model B only")
        });
    }
    Ok(with_model(&resource, chosen))
}

impl DesiredSubscription {
    /// The payment model the subscription is created with (`None`: not metered, or evaluation
    /// mode).
    pub fn model(&self) -> Option<PaymentModel> {
        payment_model(&self.resource)
    }
    /// The lifetime to request: the configured one, else Graph's maximum less a margin; never
    /// more than Graph allows with or without a lifecycle URL.
    pub fn lifetime(&self, has_lifecycle_url: bool) -> Duration {
        choose_lifetime(self.kind, self.expiration_minutes, has_lifecycle_url)
    }

    /// Whether `existing` is this subscription delivering to `notification_url`.
    pub fn matches(&self, existing: &Subscription, notification_url: &str) -> bool {
        same_resource(&self.resource, &existing.resource)
            && normalize_change_type(&existing.change_type).as_deref() == Ok(&self.change_type)
            && existing
                .notification_url
                .as_deref()
                .is_some_and(|u| same_url(u, notification_url))
    }
}

/// Finds which desired subscription `existing` is (delivering to `notification_url`), and the
/// API version `existing` lives on: the desired one's, else the one its resource needs.
pub fn matching_desired<'a>(
    desired: &'a [DesiredSubscription],
    existing: &Subscription,
    notification_url: &str,
) -> (Option<&'a DesiredSubscription>, ApiVersion) {
    let matched = desired
        .iter()
        .find(|d| d.matches(existing, notification_url));
    let version = matched
        .map(|d| d.api_version)
        .unwrap_or_else(|| default_api_version(&existing.resource));
    (matched, version)
}

/// Validates and orders a `changeType` list.
pub fn normalize_change_type(value: &str) -> Result<String, String> {
    const ORDER: [&str; 3] = ["created", "updated", "deleted"];
    let mut seen = [false; 3];
    for part in value.split(',').map(|p| p.trim().to_ascii_lowercase()) {
        match ORDER.iter().position(|o| *o == part) {
            Some(i) => seen[i] = true,
            None => return Err(format!("unknown changeType {part:?} in {value:?}")),
        }
    }
    let out: Vec<&str> = ORDER
        .iter()
        .zip(seen)
        .filter(|(_, s)| *s)
        .map(|(o, _)| *o)
        .collect();
    Ok(out.join(","))
}

/// Resource paths compare without leading/trailing `/`, case-insensitively (OData paths are),
/// and whatever the depth of percent-encoding: should Graph echo `joinWebUrl` encoded once less
/// (or more) than we sent it, the subscription still matches instead of being created again on
/// every run.
///
/// The payment model (`?model=`) is not part of the identity: a subscription on another model is
/// the same subscription to replace, since Graph cannot change the model of one.
pub fn same_resource(a: &str, b: &str) -> bool {
    canonical_resource(&without_model(a)) == canonical_resource(&without_model(b))
}

fn canonical_resource(r: &str) -> String {
    let mut s = r.trim().trim_matches('/').to_string();
    for _ in 0..4 {
        let decoded = percent_encoding::percent_decode_str(&s)
            .decode_utf8_lossy()
            .into_owned();
        if decoded == s {
            break;
        }
        s = decoded;
    }
    s.to_lowercase()
}

/// Parses the desired subscriptions: a JSON list, or `{"subscriptions": [...]}`.
pub fn parse_desired(json: &[u8]) -> Result<Vec<DesiredSubscription>, DesiredError> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum File {
        List(Vec<Value>),
        Wrapped { subscriptions: Vec<Value> },
    }
    let file: File = serde_json::from_slice(json).map_err(DesiredError::Json)?;
    let entries = match file {
        File::List(v) | File::Wrapped { subscriptions: v } => v,
    };
    let mut out: Vec<DesiredSubscription> = Vec::with_capacity(entries.len());
    for (index, value) in entries.into_iter().enumerate() {
        let entry: DesiredEntry =
            serde_json::from_value(value).map_err(|e| DesiredError::Entry {
                index,
                reason: e.to_string(),
                source: Some(e),
            })?;
        let desired = entry.validate().map_err(|reason| DesiredError::Entry {
            index,
            reason,
            source: None,
        })?;
        if let Some(other) = out.iter().position(|d| {
            same_resource(&d.resource, &desired.resource) && d.change_type == desired.change_type
        }) {
            return Err(DesiredError::Entry {
                index,
                reason: format!("same resource and changeType as subscription #{other}"),
                source: None,
            });
        }
        out.push(desired);
    }
    Ok(out)
}

/// Reads and parses `SUBSCRIPTIONS_FILE`.
pub fn load_desired(path: &Path) -> Result<Vec<DesiredSubscription>, DesiredError> {
    let bytes = std::fs::read(path).map_err(|source| DesiredError::Read {
        path: path.display().to_string(),
        source,
    })?;
    parse_desired(&bytes)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::graph::subscriptions::examples::{JOIN_URL, RESOURCE};
    use serde_json::json;

    #[test]
    fn desired_lifetimes_follow_the_documented_table() {
        let entry = |json: &str| -> DesiredSubscription {
            serde_json::from_str::<DesiredEntry>(json)
                .unwrap()
                .validate()
                .unwrap()
        };
        let chat = entry(r#"{"resource":"/chats/getAllMessages","changeType":"created"}"#);
        assert_eq!(chat.lifetime(true), Duration::from_secs((4320 - 5) * 60));
        assert_eq!(chat.lifetime(false), Duration::from_secs((60 - 5) * 60));
        let short =
            entry(r#"{"resource":"/teams","changeType":"created","expirationMinutes":120}"#);
        assert_eq!(short.lifetime(true), Duration::from_secs(120 * 60));
        assert_eq!(short.lifetime(false), Duration::from_secs(55 * 60));
        let emergency = entry(r#"{"emergencyPolicy":"EmergencyPolicy"}"#);
        assert_eq!(
            emergency.lifetime(true),
            Duration::from_secs((1440 - 5) * 60)
        );
    }

    #[test]
    fn desired_file_is_validated_once() {
        let ok = parse_desired(
            br#"[
              {"meetingJoinUrl": "https://teams.microsoft.com/l/meetup-join/19%3ameeting_x%40thread.v2/0", "includeResourceData": true},
              {"emergencyPolicy": "EmergencyPolicy"},
              {"resource": "/chats/getAllMessages", "changeType": "updated, created", "includeResourceData": true, "apiVersion": "V1.0"}
            ]"#,
        )
        .unwrap();
        assert_eq!(ok[0].api_version, ApiVersion::Beta);
        assert_eq!(ok[0].change_type, "updated");
        assert!(ok[1].include_resource_data);
        assert_eq!(ok[1].api_version, ApiVersion::Beta);
        assert_eq!(ok[2].change_type, "created,updated");
        assert_eq!(ok[2].api_version, ApiVersion::V1);
        assert_eq!(
            parse_desired(br#"{"subscriptions":[{"resource":"/teams","changeType":"created"}]}"#)
                .unwrap()
                .len(),
            1
        );

        let bad = |json: &str| parse_desired(json.as_bytes()).unwrap_err().to_string();
        assert!(bad(r#"[{"resource":"/teams"}]"#).contains("changeType"));
        assert!(bad(r#"[{"resource":"/teams","changeType":"moved"}]"#).contains("moved"));
        assert!(bad(r#"[{"emergencyPolicy":"P","includeResourceData":false}]"#).contains("rich"));
        // Emergency call events are documented on v1.0 and beta; meeting call events on beta only.
        let emergency_v1 = parse_desired(br#"[{"emergencyPolicy":"P","apiVersion":"v1.0"}]"#);
        assert_eq!(emergency_v1.unwrap()[0].api_version, ApiVersion::V1);
        assert!(
            bad(&format!(
                r#"[{{"meetingJoinUrl":"{JOIN_URL}","apiVersion":"v1.0"}}]"#
            ))
            .contains("beta")
        );
        // Payment models: a field or the resource's ?model=, only where Graph offers them.
        let metered = parse_desired(
            br#"[{"resource":"/chats/getAllMessages","changeType":"created","model":"A"},
                 {"resource":"/teams/getAllMessages?model=B","changeType":"created"},
                 {"resource":"/chats/getAllMembers","changeType":"created"}]"#,
        )
        .unwrap();
        assert_eq!(metered[0].resource, "/chats/getAllMessages?model=A");
        assert_eq!(metered[0].model(), Some(PaymentModel::A));
        assert_eq!(metered[1].model(), Some(PaymentModel::B));
        assert_eq!(metered[2].model(), None);
        assert!(
            bad(r#"[{"resource":"/chats/getAllMessages","changeType":"created","model":"C"}]"#)
                .contains("A or B")
        );
        assert!(bad(r#"[{"resource":"/chats/getAllMessages?model=A","changeType":"created","model":"B"}]"#).contains("disagrees"));
        assert!(
            bad(r#"[{"resource":"/teams/getAllChannels","changeType":"created","model":"A"}]"#)
                .contains("not a metered")
        );
        assert!(
            bad(r#"[{"resource":"/me/chats/getAllMessages","changeType":"created","model":"A"}]"#)
                .contains("model B only")
        );
        assert!(
            bad(
                r#"[{"resource":"/chats/getAllMessages","changeType":"created","model":"A"},
                    {"resource":"/chats/getAllMessages?model=B","changeType":"created"}]"#
            )
            .contains("same resource")
        );
        assert!(
            bad(r#"[{"resource":"/teams","changeType":"created","expirationMinutes":5000}]"#)
                .contains("4320")
        );
        assert!(
            bad(r#"[{"resource":"me/events","changeType":"created"}]"#)
                .contains("expirationMinutes")
        );
        assert!(
            bad(r#"[{"resource":"/teams","emergencyPolicy":"P","changeType":"created"}]"#)
                .contains("exactly one")
        );
        assert!(
            bad(r#"[{"resource":"/teams","changeType":"created","colour":"red"}]"#).contains("#0")
        );
        assert!(
            bad(r#"[{"resource":"/teams","changeType":"created"},{"resource":"teams/","changeType":"created"}]"#)
                .contains("#1")
        );
        assert!(bad("{").contains("JSON"));
    }

    #[test]
    fn the_example_file_covers_every_documented_kind() {
        let desired = parse_desired(include_bytes!(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/subscriptions.example.json"
        )))
        .unwrap();
        let meeting = desired
            .iter()
            .find(|d| d.kind == ResourceKind::MeetingCallEvents)
            .unwrap();
        assert_eq!(meeting.resource, RESOURCE);
        assert_eq!(meeting.api_version, ApiVersion::Beta);
        let emergency = desired
            .iter()
            .find(|d| d.kind == ResourceKind::EmergencyCallEvents)
            .unwrap();
        assert_eq!(
            emergency.resource,
            "communications/calls/getEmergencyEventsByPolicy(policyName='EmergencyPolicy')"
        );
        for kind in [
            ResourceKind::ChatMessage,
            ResourceKind::Chat,
            ResourceKind::Channel,
            ResourceKind::Team,
            ResourceKind::ConversationMember,
            ResourceKind::CallRecording,
            ResourceKind::CallTranscript,
        ] {
            assert!(desired.iter().any(|d| d.kind == kind), "{kind:?}");
        }
    }

    #[test]
    fn matching_ignores_notation_not_meaning() {
        let desired = DesiredEntry {
            resource: Some("/chats/getAllMessages".into()),
            change_type: Some("created,updated".into()),
            ..DesiredEntry::default()
        }
        .validate()
        .unwrap();
        let mut existing: Subscription = serde_json::from_value(json!({
            "id": "s1",
            "resource": "chats/getAllMessages",
            "changeType": "updated,created",
            "notificationUrl": "https://app.example/api/notifications",
            "expirationDateTime": "2021-02-01T11:00:00.0000000Z",
            "clientState": "never kept"
        }))
        .unwrap();
        assert!(desired.matches(&existing, "https://app.example/api/notifications/"));
        assert!(!desired.matches(&existing, "https://other.example/api/notifications"));
        // The meeting resource matches however deeply Graph echoes the join URL encoded.
        let once = format!(
            "communications/onlineMeetings(joinWebUrl='{}')/meetingCallEvents",
            JOIN_URL
        );
        assert!(same_resource(RESOURCE, &once));
        assert!(same_resource(
            RESOURCE,
            &format!("/{}", RESOURCE.to_uppercase())
        ));
        assert!(!same_resource(RESOURCE, &RESOURCE.replace("ZmYw", "AmYw")));
        let (matched, version) = matching_desired(
            std::slice::from_ref(&desired),
            &existing,
            "https://app.example/api/notifications",
        );
        assert_eq!(matched, Some(&desired));
        assert_eq!(version, ApiVersion::V1);
        existing.change_type = "created".into();
        assert!(!desired.matches(&existing, "https://app.example/api/notifications"));
        let (matched, version) = matching_desired(
            std::slice::from_ref(&desired),
            &existing,
            "https://app.example/api/notifications",
        );
        assert_eq!(matched, None);
        assert_eq!(version, default_api_version(&existing.resource));
        assert!(
            !serde_json::to_string(&existing)
                .unwrap()
                .contains("never kept")
        );
    }
}
