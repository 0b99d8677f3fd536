//! What a reconcile did: one [`ActionRecord`] per desired subscription, summed up in a
//! [`Report`] (the timer's `Logs` and `ReturnValue`, `handler subscriptions reconcile`).

use serde::Serialize;
use serde_json::{Value, json};
use time::OffsetDateTime;

use super::desired::DesiredSubscription;
use crate::graph::subscriptions::{ApiVersion, GraphError, Subscription, format_time};

/// What a reconcile did to one subscription.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "camelCase")]
pub enum Action {
    /// Created where none existed.
    Created,
    /// Created again in place of one Graph lost (404 on renewal, expired, removed) or that could
    /// not be changed in place (includeResourceData, changeType or the payment model differ).
    Recreated,
    /// `expirationDateTime` extended.
    Renewed,
    /// Moved to the current certificate (and renewed in the same PATCH).
    CertificateMoved,
    /// Graph answered 409 to the create: its existing subscription was taken over.
    Adopted,
    /// A second subscription for the same desired one, deleted.
    DuplicateDeleted,
    /// The subscription of a meeting over for longer than `MEETING_SUBSCRIPTION_GRACE_MIN`,
    /// deleted.
    MeetingOver,
    /// Nothing to do.
    Unchanged,
    Failed,
}

impl Action {
    pub fn as_str(self) -> &'static str {
        match self {
            Action::Created => "created",
            Action::Recreated => "recreated",
            Action::Renewed => "renewed",
            Action::CertificateMoved => "certificateMoved",
            Action::Adopted => "adopted",
            Action::DuplicateDeleted => "duplicateDeleted",
            Action::MeetingOver => "meetingOver",
            Action::Unchanged => "unchanged",
            Action::Failed => "failed",
        }
    }

    pub const ALL: [Action; 9] = [
        Action::Created,
        Action::Recreated,
        Action::Renewed,
        Action::CertificateMoved,
        Action::Adopted,
        Action::DuplicateDeleted,
        Action::MeetingOver,
        Action::Unchanged,
        Action::Failed,
    ];
}

/// A failure as reported (Graph's code and message when Graph answered).
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct Failure {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub status: Option<u16>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub code: Option<String>,
    pub message: String,
    /// A later attempt may succeed.
    pub transient: bool,
}

impl From<&GraphError> for Failure {
    fn from(e: &GraphError) -> Self {
        Failure {
            status: e.status(),
            code: e.code().map(str::to_string),
            message: e.to_string(),
            transient: e.is_transient(),
        }
    }
}

/// One line of a reconcile.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ActionRecord {
    pub action: Action,
    pub resource: String,
    pub change_type: String,
    pub api_version: ApiVersion,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub subscription_id: Option<String>,
    /// The subscription replaced or deleted.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub previous_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub expiration: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub failure: Option<Failure>,
}

impl ActionRecord {
    pub(crate) fn new(action: Action, desired: &DesiredSubscription) -> Self {
        ActionRecord {
            action,
            resource: desired.resource.clone(),
            change_type: desired.change_type.clone(),
            api_version: desired.api_version,
            subscription_id: None,
            previous_id: None,
            expiration: None,
            failure: None,
        }
    }

    pub(crate) fn with(mut self, s: &Subscription) -> Self {
        self.subscription_id = Some(s.id.clone());
        self.expiration = Some(format_time(s.expiration_date_time));
        self
    }

    pub(crate) fn previous(mut self, id: &str) -> Self {
        self.previous_id = Some(id.to_string());
        self
    }

    /// A meeting's subscription deleted because the meeting is over.
    pub(crate) fn retired(s: &Subscription) -> Self {
        ActionRecord {
            action: Action::MeetingOver,
            resource: s.resource.clone(),
            change_type: s.change_type.clone(),
            api_version: ApiVersion::Beta,
            subscription_id: None,
            previous_id: Some(s.id.clone()),
            expiration: None,
            failure: None,
        }
    }

    pub(crate) fn failed(desired: &DesiredSubscription, failure: Failure) -> Self {
        let mut r = ActionRecord::new(Action::Failed, desired);
        r.failure = Some(failure);
        r
    }

    /// One line for the invocation log.
    pub fn line(&self) -> String {
        let mut line = format!(
            "{} {} {} [{}]",
            self.action.as_str(),
            self.api_version,
            self.resource,
            self.change_type
        );
        if let Some(id) = &self.subscription_id {
            line.push_str(&format!(" id={id}"));
        }
        if let Some(id) = &self.previous_id {
            line.push_str(&format!(" previous={id}"));
        }
        if let Some(t) = &self.expiration {
            line.push_str(&format!(" expires={t}"));
        }
        if let Some(f) = &self.failure {
            line.push_str(&format!(": {}", f.message));
        }
        line
    }
}

/// The outcome of a reconcile.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Report {
    pub started_at: String,
    /// Subscriptions Graph listed.
    pub listed: usize,
    /// Listed but already expired (Graph deletes them; they count as missing).
    pub expired: usize,
    /// Subscriptions delivering to our URL that the desired state does not name.
    pub unmanaged: usize,
    pub actions: Vec<ActionRecord>,
    /// Why the reconcile could not run at all (desired file, settings, listing).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// The run-level error may go away on retry.
    pub error_transient: bool,
    /// What works today but will stop (metered Teams APIs in evaluation mode).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub warnings: Vec<String>,
}

impl Report {
    pub(crate) fn new(now: OffsetDateTime) -> Self {
        Report {
            started_at: format_time(now),
            listed: 0,
            expired: 0,
            unmanaged: 0,
            actions: Vec::new(),
            error: None,
            error_transient: false,
            warnings: Vec::new(),
        }
    }

    pub fn count(&self, action: Action) -> usize {
        self.actions.iter().filter(|a| a.action == action).count()
    }

    /// Calls that changed something in Graph.
    pub fn changes(&self) -> usize {
        self.actions
            .iter()
            .filter(|a| !matches!(a.action, Action::Unchanged | Action::Failed))
            .count()
    }

    pub fn failures(&self) -> usize {
        self.count(Action::Failed) + usize::from(self.error.is_some())
    }

    /// Whether the host should retry the invocation: something failed that may succeed later.
    pub fn should_retry(&self) -> bool {
        (self.error.is_some() && self.error_transient)
            || self
                .actions
                .iter()
                .any(|a| a.failure.as_ref().is_some_and(|f| f.transient))
    }

    /// The counts: the timer's `ReturnValue`.
    pub fn summary(&self) -> Value {
        let mut counts = serde_json::Map::new();
        for action in Action::ALL {
            counts.insert(action.as_str().into(), json!(self.count(action)));
        }
        let mut v = json!({
            "listed": self.listed,
            "expired": self.expired,
            "unmanaged": self.unmanaged,
            "changes": self.changes(),
        });
        v.as_object_mut()
            .expect("a JSON object literal")
            .extend(counts);
        if let Some(e) = &self.error {
            v["error"] = json!(e);
        }
        v
    }

    /// One line per action, then the summary: the timer's `Logs`.
    pub fn log_lines(&self) -> Vec<String> {
        let mut lines: Vec<String> = Vec::with_capacity(self.actions.len() + 2);
        if let Some(e) = &self.error {
            lines.push(format!("renew: reconcile failed: {e}"));
        }
        lines.extend(self.warnings.iter().map(|w| format!("renew: warning: {w}")));
        lines.extend(self.actions.iter().map(|a| format!("renew: {}", a.line())));
        lines.push(format!(
            "renew: {} listed, {} changes, {} unchanged, {} failed, {} unmanaged",
            self.listed,
            self.changes(),
            self.count(Action::Unchanged),
            self.failures(),
            self.unmanaged
        ));
        lines
    }

    pub(crate) fn push(&mut self, record: ActionRecord) {
        match record.action {
            Action::Failed => {
                tracing::warn!(action = record.action.as_str(), resource = %record.resource, failure = ?record.failure, "reconcile")
            }
            Action::Unchanged => {
                tracing::debug!(action = record.action.as_str(), resource = %record.resource, id = ?record.subscription_id, "reconcile")
            }
            _ => {
                tracing::info!(action = record.action.as_str(), resource = %record.resource, id = ?record.subscription_id, previous = ?record.previous_id, expires = ?record.expiration, "reconcile")
            }
        }
        self.actions.push(record);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn summary_counts_every_action() {
        let d = crate::renewer::DesiredEntry {
            resource: Some("/teams".into()),
            change_type: Some("created".into()),
            ..Default::default()
        }
        .validate()
        .unwrap();
        let mut r = Report::new(OffsetDateTime::now_utc());
        r.actions.push(ActionRecord::new(Action::Created, &d));
        r.actions.push(ActionRecord::new(Action::Unchanged, &d));
        r.actions.push(ActionRecord::failed(
            &d,
            Failure {
                status: Some(503),
                code: Some("ServiceUnavailable".into()),
                message: "busy".into(),
                transient: true,
            },
        ));
        let s = r.summary();
        assert_eq!(s["created"], 1);
        assert_eq!(s["unchanged"], 1);
        assert_eq!(s["failed"], 1);
        assert_eq!(s["changes"], 1);
        assert!(r.should_retry());
        assert!(
            r.log_lines()
                .iter()
                .any(|l| l.contains("failed v1.0 /teams [created]: busy"))
        );
    }
}
