//! `handler report`: what the archive holds, for people (and `--json` for scripts).

use std::collections::BTreeMap;
use std::sync::Arc;

use serde::Serialize;

use crate::archive::records::{EventRecord, QuarantineRecord, RejectedRecord};
use crate::archive::{Archive, ArchiveError, Kind};

/// A summary of the archive.
#[derive(Debug, Default, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Report {
    pub location: String,
    /// Objects per top-level prefix.
    pub objects: BTreeMap<String, usize>,
    /// Events per event kind (`callevent`, `chatMessage`, ...).
    pub events_by_kind: BTreeMap<String, usize>,
    /// Decrypted (rich) events.
    pub decrypted: usize,
    /// Quarantined items per reason.
    pub quarantine_reasons: BTreeMap<String, usize>,
    /// Rejected batches per reason.
    pub rejection_reasons: BTreeMap<String, usize>,
    /// Emergency alerts a route never took within `ALERT_RETRY_HOURS` (see `handler alerts`).
    pub alerts_expired: Vec<String>,
    /// Events in time order: (time, kind, summary).
    pub timeline: Vec<TimelineEntry>,
}

#[derive(Debug, Serialize)]
pub struct TimelineEntry {
    pub time: String,
    pub kind: String,
    pub summary: String,
}

/// Reads the whole archive (an operator's command: not for the hot path).
pub async fn build(archive: &Arc<dyn Archive>) -> Result<Report, ArchiveError> {
    let mut report = Report {
        location: archive.location(),
        ..Report::default()
    };
    for kind in Kind::ALL {
        let names = archive.list(kind).await?;
        if names.is_empty() {
            continue;
        }
        report
            .objects
            .insert(kind.prefix().to_string(), names.len());
        for name in names {
            if kind == Kind::Alerts && !name.as_str().ends_with(".expired.json") {
                continue;
            }
            let Some(bytes) = archive.get(&name).await? else {
                continue;
            };
            match kind {
                Kind::Events => {
                    if let Ok(e) = serde_json::from_slice::<EventRecord>(&bytes) {
                        *report
                            .events_by_kind
                            .entry(e.event_kind.clone())
                            .or_default() += 1;
                        report.decrypted += usize::from(e.rich);
                        report.timeline.push(TimelineEntry {
                            time: event_time(&e),
                            kind: e.event_kind,
                            summary: e.summary,
                        });
                    }
                }
                Kind::Quarantine => {
                    if let Ok(q) = serde_json::from_slice::<QuarantineRecord>(&bytes) {
                        *report.quarantine_reasons.entry(q.reason).or_default() += 1;
                    }
                }
                Kind::Rejected => {
                    if let Ok(r) = serde_json::from_slice::<RejectedRecord>(&bytes) {
                        *report.rejection_reasons.entry(r.reason).or_default() += 1;
                    }
                }
                Kind::Alerts if name.as_str().ends_with(".expired.json") => {
                    if let Ok(e) =
                        serde_json::from_slice::<crate::alerts::outbox::ExpiredRecord>(&bytes)
                    {
                        report
                            .alerts_expired
                            .push(format!("{}  {}  {}", e.expired_at, e.summary, e.reason));
                    }
                }
                _ => {}
            }
        }
    }
    report.timeline.sort_by(|a, b| a.time.cmp(&b.time));
    Ok(report)
}

/// When it happened: the payload's own time if it has one, else when we received it.
fn event_time(e: &EventRecord) -> String {
    let payload = e.payload.as_ref();
    let from_payload = payload.and_then(|p| {
        ["eventDateTime", "createdDateTime", "lastModifiedDateTime"]
            .iter()
            .find_map(|k| p.get(*k).and_then(|v| v.as_str()))
            .or_else(|| {
                p.get("emergencyCallEvent")
                    .and_then(|x| x.get("eventDateTime"))
                    .and_then(|v| v.as_str())
            })
    });
    from_payload.unwrap_or(&e.received_at).to_string()
}

impl Report {
    /// Human-readable text.
    pub fn render(&self) -> String {
        use std::fmt::Write;
        let mut out = String::new();
        let _ = writeln!(out, "Archive: {}", self.location);
        if self.objects.is_empty() {
            let _ = writeln!(out, "  (empty)");
            return out;
        }
        for (prefix, n) in &self.objects {
            let _ = writeln!(out, "  {prefix:<11} {n:>6} objects");
        }
        if !self.events_by_kind.is_empty() {
            let _ = writeln!(out, "Events by kind ({} decrypted):", self.decrypted);
            for (k, n) in &self.events_by_kind {
                let _ = writeln!(out, "  {k:<20} {n:>6}");
            }
        }
        for (title, reasons) in [
            (
                "Quarantined (replayable once the key is there)",
                &self.quarantine_reasons,
            ),
            (
                "Rejected (never archived as events)",
                &self.rejection_reasons,
            ),
        ] {
            if !reasons.is_empty() {
                let _ = writeln!(out, "{title}:");
                for (r, n) in reasons {
                    let _ = writeln!(out, "  {n:>6}  {r}");
                }
            }
        }
        if !self.alerts_expired.is_empty() {
            let _ = writeln!(out, "Emergency alerts EXPIRED undelivered:");
            for line in &self.alerts_expired {
                let _ = writeln!(out, "  {line}");
            }
        }
        if !self.timeline.is_empty() {
            let _ = writeln!(out, "Timeline:");
            for t in &self.timeline {
                let _ = writeln!(out, "  {}  {:<18} {}", t.time, t.kind, t.summary);
            }
        }
        out
    }
}
