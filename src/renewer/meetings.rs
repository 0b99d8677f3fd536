//! Meetings subscribed as they start: the meetings' share of the renewer's desired state, read
//! from the archive (so it survives restarts and every instance sees the same).
//!
//! The messaging endpoint stores a [`MeetingStateRecord`] for every `meetingStart` that carries a
//! join URL and every `meetingEnd` (under `meetings/`). From them, at a given time:
//! - a meeting whose latest start has no end after it is **running**: its `meetingCallEvents`
//!   subscription (rich, beta, the join URL encoded as Graph requires) is desired;
//! - a meeting that ended less than `MEETING_SUBSCRIPTION_GRACE_MIN` ago is still desired (late
//!   roster updates and `callEnded` arrive after the bot's `meetingEnd`);
//! - a meeting that ended longer ago is **over**: its subscription is deleted;
//! - a start older than [`LOOKBACK`] without an end (the end event was lost) is forgotten, and
//!   its subscription lapses at its expiry.
//!
//! A recurring meeting keeps its join URL across occurrences: each start opens a new run, and only
//! an end after it closes that run.

use std::collections::BTreeMap;
use std::time::Duration;

use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use super::desired::{DesiredEntry, DesiredSubscription};
use crate::archive::records::MeetingStateRecord;
use crate::archive::{Archive, ArchiveError, Kind, ObjectName};

/// How long a meeting whose end was never seen stays desired (Teams meetings end within a day;
/// the margin covers long ones).
pub const LOOKBACK: Duration = Duration::from_secs(48 * 3600);

/// The meetings' part of the desired state at one moment.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MeetingPlan {
    /// Subscriptions of running meetings (and of meetings within the grace after their end).
    pub running: Vec<DesiredSubscription>,
    /// Resources of meetings over for longer than the grace: their subscriptions go.
    pub over: Vec<String>,
}

/// What the records say about one join URL.
#[derive(Default)]
struct Meeting {
    meeting_ids: Vec<String>,
    latest_start: Option<OffsetDateTime>,
}

/// Reads the meeting records of the last [`LOOKBACK`] (and a day) and plans at `now`.
pub async fn plan(
    archive: &dyn Archive,
    now: OffsetDateTime,
    grace: Duration,
) -> Result<MeetingPlan, ArchiveError> {
    let oldest = (now - LOOKBACK - Duration::from_secs(24 * 3600)).date();
    let mut records = Vec::new();
    for name in archive.list(Kind::Meetings).await? {
        if name_date(&name).is_some_and(|d| d < oldest) {
            continue;
        }
        let Some(bytes) = archive.get(&name).await? else {
            continue;
        };
        match serde_json::from_slice::<MeetingStateRecord>(&bytes) {
            Ok(r) => records.push(r),
            Err(e) => tracing::warn!(object = %name, error = %e, "meeting record not understood"),
        }
    }
    Ok(plan_from(&records, now, grace))
}

/// [`plan`] on records already read.
pub fn plan_from(
    records: &[MeetingStateRecord],
    now: OffsetDateTime,
    grace: Duration,
) -> MeetingPlan {
    let at = |r: &MeetingStateRecord| {
        OffsetDateTime::parse(&r.at, &Rfc3339)
            .or_else(|_| OffsetDateTime::parse(&r.recorded_at, &Rfc3339))
            .ok()
    };
    let mut meetings: BTreeMap<String, Meeting> = BTreeMap::new();
    for r in records.iter().filter(|r| r.action == "start") {
        let (Some(url), Some(t)) = (&r.join_url, at(r)) else {
            continue;
        };
        let m = meetings.entry(url.clone()).or_default();
        if !r.meeting_id.is_empty() && !m.meeting_ids.contains(&r.meeting_id) {
            m.meeting_ids.push(r.meeting_id.clone());
        }
        m.latest_start = m.latest_start.max(Some(t));
    }

    let mut out = MeetingPlan::default();
    for (url, m) in &meetings {
        let Some(start) = m.latest_start else {
            continue;
        };
        let end = records
            .iter()
            .filter(|r| r.action == "end")
            .filter(|r| {
                r.join_url.as_deref() == Some(url.as_str())
                    || (!r.meeting_id.is_empty() && m.meeting_ids.contains(&r.meeting_id))
            })
            .filter_map(at)
            .filter(|t| *t >= start)
            .max();
        let desired = match end {
            None => now - start < LOOKBACK,
            Some(end) => now < end + grace,
        };
        let entry = DesiredEntry {
            meeting_join_url: Some(url.clone()),
            include_resource_data: Some(true),
            ..DesiredEntry::default()
        };
        let subscription = match entry.validate() {
            Ok(s) => s,
            Err(reason) => {
                tracing::warn!(%reason, "a meeting's join URL cannot be subscribed to");
                continue;
            }
        };
        if desired {
            out.running.push(subscription);
        } else if end.is_some() {
            out.over.push(subscription.resource);
        }
    }
    out
}

/// The `yyyy/mm/dd` of a `meetings/…` name.
fn name_date(name: &ObjectName) -> Option<time::Date> {
    let mut parts = name.as_str().split('/').skip(1);
    let (y, m, d) = (parts.next()?, parts.next()?, parts.next()?);
    let month = time::Month::try_from(m.parse::<u8>().ok()?).ok()?;
    time::Date::from_calendar_date(y.parse().ok()?, month, d.parse().ok()?).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    const URL: &str = "https://teams.microsoft.com/l/meetup-join/19%3ameeting_a%40thread.v2/0?context=%7b%22Tid%22%3a%22t%22%7d";
    const GRACE: Duration = Duration::from_secs(30 * 60);

    fn record(action: &str, at: &str, join_url: Option<&str>, id: &str) -> MeetingStateRecord {
        MeetingStateRecord {
            recorded_at: at.into(),
            action: action.into(),
            at: at.into(),
            meeting_id: id.into(),
            join_url: join_url.map(str::to_owned),
        }
    }

    fn t(s: &str) -> OffsetDateTime {
        OffsetDateTime::parse(s, &Rfc3339).unwrap()
    }

    #[test]
    fn a_started_meeting_is_desired_until_the_grace_after_its_end() {
        let start = record("start", "2026-11-30T10:00:00Z", Some(URL), "m1");
        let running = plan_from(
            std::slice::from_ref(&start),
            t("2026-11-30T10:30:00Z"),
            GRACE,
        );
        assert_eq!(running.running.len(), 1);
        assert_eq!(
            running.running[0].resource,
            format!(
                "communications/onlineMeetings(joinWebUrl='{}')/meetingCallEvents",
                crate::graph::subscriptions::encode_join_web_url(URL)
            )
        );
        assert!(running.running[0].include_resource_data);

        // The end names the meeting by id only.
        let end = record("end", "2026-11-30T11:00:00Z", None, "m1");
        let both = [start, end];
        let in_grace = plan_from(&both, t("2026-11-30T11:29:59Z"), GRACE);
        assert_eq!(in_grace.running.len(), 1);
        let over = plan_from(&both, t("2026-11-30T11:30:00Z"), GRACE);
        assert!(over.running.is_empty());
        assert_eq!(over.over, [in_grace.running[0].resource.clone()]);
    }

    #[test]
    fn a_new_occurrence_reopens_and_a_lost_end_lapses() {
        let records = [
            record("start", "2026-11-23T10:00:00Z", Some(URL), "m1"),
            record("end", "2026-11-23T11:00:00Z", Some(URL), "m1"),
            record("start", "2026-11-30T10:00:00Z", Some(URL), "m2"),
        ];
        assert_eq!(
            plan_from(&records, t("2026-11-30T12:00:00Z"), GRACE)
                .running
                .len(),
            1
        );
        let later = plan_from(&records, t("2026-12-02T10:00:01Z"), GRACE);
        assert!(later.running.is_empty() && later.over.is_empty());
    }

    #[test]
    fn unusable_records_are_skipped() {
        let records = [
            record("start", "not a time", Some(URL), "m1"),
            record("start", "2026-11-30T10:00:00Z", None, "m2"),
            record(
                "start",
                "2026-11-30T10:00:00Z",
                Some("http://not-https"),
                "m3",
            ),
            record("pause", "2026-11-30T10:00:00Z", Some(URL), "m4"),
        ];
        assert_eq!(
            plan_from(&records, t("2026-11-30T10:30:00Z"), GRACE),
            MeetingPlan::default()
        );
    }
}
