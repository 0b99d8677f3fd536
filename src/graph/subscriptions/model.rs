//! The wire types of the subscriptions API: a subscription as Graph lists it, and the bodies we
//! send to create and update one.

use std::time::Duration;

use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

/// A subscription as Graph lists it. `clientState` is deliberately not read (a secret).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Subscription {
    pub id: String,
    #[serde(default)]
    pub resource: String,
    #[serde(default)]
    pub change_type: String,
    #[serde(default)]
    pub notification_url: Option<String>,
    #[serde(default)]
    pub lifecycle_notification_url: Option<String>,
    #[serde(with = "time::serde::rfc3339")]
    pub expiration_date_time: OffsetDateTime,
    #[serde(default)]
    pub include_resource_data: Option<bool>,
    #[serde(default)]
    pub encryption_certificate_id: Option<String>,
    #[serde(default)]
    pub application_id: Option<String>,
}

impl Subscription {
    /// Time left before Graph deletes it (zero when already expired).
    pub fn remaining(&self, now: OffsetDateTime) -> Duration {
        let left = self.expiration_date_time - now;
        if left.is_positive() {
            left.unsigned_abs()
        } else {
            Duration::ZERO
        }
    }

    /// Whether it delivers to `notification_url` (see [`same_url`]).
    pub fn delivers_to(&self, notification_url: &str) -> bool {
        self.notification_url
            .as_deref()
            .is_some_and(|u| same_url(u, notification_url))
    }
}

/// The certificate Graph encrypts rich notifications with.
#[derive(Debug, Clone)]
pub struct EncryptionCertificate {
    /// Base64 of the DER certificate (`encryptionCertificate`).
    pub base64: String,
    /// Our id for it (`encryptionCertificateId`), echoed in every rich notification.
    pub id: String,
}

/// A `POST /subscriptions` body.
#[derive(Debug, Clone)]
pub struct NewSubscription {
    pub resource: String,
    pub change_type: String,
    pub notification_url: String,
    pub lifecycle_notification_url: Option<String>,
    pub expiration: OffsetDateTime,
    /// Sent to Graph, never logged.
    pub client_state: SecretString,
    pub include_resource_data: bool,
    /// Required when `include_resource_data`.
    pub certificate: Option<EncryptionCertificate>,
}

impl NewSubscription {
    pub(super) fn to_json(&self) -> Value {
        let mut body = json!({
            "changeType": self.change_type,
            "notificationUrl": self.notification_url,
            "resource": self.resource,
            "expirationDateTime": format_time(self.expiration),
            "clientState": self.client_state.expose_secret(),
            "includeResourceData": self.include_resource_data,
        });
        if let Some(url) = &self.lifecycle_notification_url {
            body["lifecycleNotificationUrl"] = json!(url);
        }
        if let Some(cert) = &self.certificate {
            body["encryptionCertificate"] = json!(cert.base64);
            body["encryptionCertificateId"] = json!(cert.id);
        }
        body
    }
}

/// A `PATCH /subscriptions/{id}` body: renewal, new notification URL, new certificate.
#[derive(Debug, Clone, Default)]
pub struct SubscriptionUpdate {
    pub expiration: Option<OffsetDateTime>,
    pub notification_url: Option<String>,
    pub certificate: Option<EncryptionCertificate>,
}

impl SubscriptionUpdate {
    pub(super) fn to_json(&self) -> Value {
        let mut body = json!({});
        if let Some(t) = self.expiration {
            body["expirationDateTime"] = json!(format_time(t));
        }
        if let Some(url) = &self.notification_url {
            body["notificationUrl"] = json!(url);
        }
        if let Some(cert) = &self.certificate {
            body["encryptionCertificate"] = json!(cert.base64);
            body["encryptionCertificateId"] = json!(cert.id);
        }
        body
    }
}

/// RFC 3339 in UTC, whole seconds (`2026-01-02T03:04:05Z`).
pub fn format_time(t: OffsetDateTime) -> String {
    t.to_offset(time::UtcOffset::UTC)
        .replace_nanosecond(0)
        .unwrap_or(t)
        .format(&Rfc3339)
        .unwrap_or_else(|_| t.unix_timestamp().to_string())
}

/// Whether two URLs are the same notification (or lifecycle) URL: compared as written, ignoring
/// surrounding whitespace and trailing slashes (Graph echoes `notificationUrl` as it was given).
pub fn same_url(a: &str, b: &str) -> bool {
    a.trim().trim_end_matches('/') == b.trim().trim_end_matches('/')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_compare_without_trailing_slashes() {
        assert!(same_url(
            "https://a.example/api/n/",
            " https://a.example/api/n"
        ));
        assert!(same_url(
            "https://a.example/api/n//",
            "https://a.example/api/n"
        ));
        assert!(!same_url(
            "https://a.example/api/n",
            "https://a.example/api/m"
        ));
    }

    #[test]
    fn times_are_utc_whole_seconds() {
        let t = OffsetDateTime::parse("2021-02-02T10:30:34.9097561-08:00", &Rfc3339).unwrap();
        assert_eq!(format_time(t), "2021-02-02T18:30:34Z");
    }
}
