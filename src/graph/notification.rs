//! The envelopes Graph POSTs: `changeNotificationCollection` and its `changeNotification` items,
//! for both the notification URL and the lifecycle URL.
//!
//! Shapes: <https://learn.microsoft.com/graph/api/resources/changenotificationcollection> and
//! <https://learn.microsoft.com/graph/api/resources/changenotification>; Microsoft's Teams
//! change-notification documents (meeting call events, emergency call events, Teams resources)
//! carry samples of each (tests/fixtures/).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::vocabulary::{ChangeType, LifecycleEvent};

/// `{"value": [...], "validationTokens": [...]}`.
#[derive(Debug, Clone, Deserialize, Serialize)]
pub struct NotificationCollection {
    pub value: Vec<ChangeNotification>,
    /// JWTs proving Graph sent a batch with resource data. Absent on basic notifications.
    #[serde(
        default,
        rename = "validationTokens",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub validation_tokens: Vec<String>,
}

/// One item of a collection. Unknown properties are kept (in `extra`) and archived as received.
///
/// Serializing an item gives its canonical form: fixed field order, extras sorted, no
/// whitespace, and no `clientState` (a secret, never stored). Its SHA-256 names the item in
/// the archive, so the same notification resent by Graph maps to the same object.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ChangeNotification {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    #[serde(default)]
    pub subscription_id: String,
    /// Compared with `NOTIFICATION_CLIENT_STATE`; never serialized.
    #[serde(default, skip_serializing)]
    pub client_state: Option<String>,
    /// `created`, `updated`, `deleted`, or anything newer Graph invents (kept as is).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub change_type: Option<ChangeType>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resource: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resource_data: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tenant_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub organization_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subscription_expiration_date_time: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub encrypted_content: Option<EncryptedContent>,
    /// Set on lifecycle notifications: `reauthorizationRequired`, `subscriptionRemoved`, `missed`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lifecycle_event: Option<LifecycleEvent>,
    #[serde(flatten)]
    pub extra: BTreeMap<String, Value>,
}

/// `encryptedContent` of a rich notification. Every field is optional here so that a truncated
/// item is a typed decryption failure (quarantined with a reason), not a rejected batch.
#[derive(Debug, Clone, Default, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct EncryptedContent {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub data: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub data_signature: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub data_key: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub encryption_certificate_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub encryption_certificate_thumbprint: Option<String>,
}

impl ChangeNotification {
    /// Rich notifications carry their resource encrypted.
    pub fn is_rich(&self) -> bool {
        self.encrypted_content.is_some()
    }

    /// The canonical bytes (see the type's docs).
    pub fn canonical(&self) -> Vec<u8> {
        serde_json::to_vec(self).expect("a parsed notification always serializes")
    }

    /// The tenant the item belongs to (`tenantId`, else `organizationId`).
    pub fn tenant(&self) -> Option<&str> {
        self.tenant_id
            .as_deref()
            .or(self.organization_id.as_deref())
            .filter(|t| !t.is_empty())
    }

    /// `(year, month, day)` of `subscriptionExpirationDateTime`: the archive's date partition.
    pub fn partition_date(&self) -> Option<(i32, u8, u8)> {
        self.subscription_expiration_date_time
            .as_deref()
            .and_then(leading_date)
    }
}

/// Reads `YYYY-MM-DD` at the start of an ISO 8601 timestamp.
fn leading_date(s: &str) -> Option<(i32, u8, u8)> {
    let b = s.as_bytes();
    if b.len() < 10 || b[4] != b'-' || b[7] != b'-' {
        return None;
    }
    let num = |r: std::ops::Range<usize>| s.get(r)?.parse::<u32>().ok();
    let (y, m, d) = (num(0..4)?, num(5..7)?, num(8..10)?);
    ((1..=12).contains(&m) && (1..=31).contains(&d)).then_some((y as i32, m as u8, d as u8))
}

/// Why a body is not a notification collection. Answered with 400 and this text.
#[derive(Debug, thiserror::Error)]
pub enum ParseError {
    #[error("empty body")]
    Empty,
    #[error("body is not JSON: {0}")]
    NotJson(#[source] serde_json::Error),
    #[error("body is not a changeNotificationCollection: {0}")]
    WrongShape(#[source] serde_json::Error),
    /// A `validationTokens` entry that is not a string.
    #[error("body is not a changeNotificationCollection: validationTokens: {0}")]
    WrongTokens(#[source] serde_json::Error),
    #[error("`value` holds no notifications")]
    NoItems,
}

/// Parses a notification body.
///
/// Strict JSON first. Microsoft's published samples (the Teams change-notification documents) contain trailing commas; a body
/// that fails only because of them is accepted, since the meaning is unambiguous.
pub fn parse_collection(body: &[u8]) -> Result<NotificationCollection, ParseError> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Err(ParseError::Empty);
    }
    let collection: NotificationCollection = match serde_json::from_slice(body) {
        Ok(c) => c,
        Err(e) if e.is_syntax() || e.is_eof() => {
            let Some(relaxed) = strip_trailing_commas(body) else {
                return Err(ParseError::NotJson(e));
            };
            serde_json::from_slice(&relaxed).map_err(|e2| {
                if e2.is_data() {
                    ParseError::WrongShape(e2)
                } else {
                    ParseError::NotJson(e)
                }
            })?
        }
        Err(e) => return Err(ParseError::WrongShape(e)),
    };
    if collection.value.is_empty() {
        return Err(ParseError::NoItems);
    }
    Ok(collection)
}

/// Removes commas that directly precede `}` or `]` (outside strings). `None` when there were none.
/// Public for tools and tests that read Microsoft's published samples.
pub fn strip_trailing_commas(body: &[u8]) -> Option<Vec<u8>> {
    let mut out = Vec::with_capacity(body.len());
    let mut in_string = false;
    let mut escaped = false;
    let mut changed = false;
    for (i, &b) in body.iter().enumerate() {
        if in_string {
            out.push(b);
            match (escaped, b) {
                (true, _) => escaped = false,
                (false, b'\\') => escaped = true,
                (false, b'"') => in_string = false,
                _ => {}
            }
            continue;
        }
        match b {
            b'"' => {
                in_string = true;
                out.push(b);
            }
            b',' => {
                let next = body[i + 1..].iter().find(|c| !c.is_ascii_whitespace());
                if matches!(next, Some(b'}') | Some(b']')) {
                    changed = true;
                } else {
                    out.push(b);
                }
            }
            _ => out.push(b),
        }
    }
    changed.then_some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn canonical_form_ignores_layout_and_drops_client_state() {
        let a = parse_collection(br#"{"value":[{"subscriptionId":"s","clientState":"secret","changeType":"created","x":1,"a":2}]}"#).unwrap();
        let b = parse_collection(b"{ \"value\" : [ { \"a\":2, \"x\":1, \"changeType\":\"created\", \"subscriptionId\":\"s\", \"clientState\":\"other\" } ] }").unwrap();
        assert_eq!(a.value[0].canonical(), b.value[0].canonical());
        assert!(
            !String::from_utf8(a.value[0].canonical())
                .unwrap()
                .contains("secret")
        );
    }

    #[test]
    fn trailing_commas_of_microsofts_samples_are_tolerated() {
        let c =
            parse_collection(br#"{"value":[{"subscriptionId":"s","resourceData":{"id":"1",},}],}"#)
                .unwrap();
        assert_eq!(c.value[0].resource_data.as_ref().unwrap()["id"], "1");
        // A comma inside a string is data.
        let c = parse_collection(br#"{"value":[{"subscriptionId":"s,}"}]}"#).unwrap();
        assert_eq!(c.value[0].subscription_id, "s,}");
    }

    #[test]
    fn bad_bodies_have_reasons() {
        assert!(matches!(
            parse_collection(b" ").unwrap_err(),
            ParseError::Empty
        ));
        assert!(matches!(
            parse_collection(b"nope"),
            Err(ParseError::NotJson(_))
        ));
        assert!(matches!(
            parse_collection(b"{\"value\":3}"),
            Err(ParseError::WrongShape(_))
        ));
        assert!(matches!(
            parse_collection(b"[]"),
            Err(ParseError::WrongShape(_))
        ));
        assert!(matches!(
            parse_collection(b"{}"),
            Err(ParseError::WrongShape(_))
        ));
        assert!(matches!(
            parse_collection(b"{\"value\":[]}").unwrap_err(),
            ParseError::NoItems
        ));
    }

    #[test]
    fn partition_date_comes_from_the_item() {
        let c = parse_collection(br#"{"value":[{"subscriptionId":"s","subscriptionExpirationDateTime":"2021-02-02T10:30:34.9097561-08:00"}]}"#).unwrap();
        assert_eq!(c.value[0].partition_date(), Some((2021, 2, 2)));
    }
}
