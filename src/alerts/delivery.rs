//! Delivery: sends what the outbox holds, records every attempt, retries with backoff, expires.
//!
//! Right after Graph's 202 the new alerts are sent from a spawned task ([`Dispatcher::spawn_new`]);
//! the alert timer and the start-up run [`Dispatcher::sweep`], which finds every alert with a
//! route not yet final and takes its next step. A step on a route:
//! 1. an attempt claimed and unanswered within its lease: another sender has it, wait;
//! 2. older than `ALERT_RETRY_HOURS`: record `expired`, log an error;
//! 3. the last attempt failed less than its backoff ago: wait;
//! 4. a follow-up whose alarm is not final on this route yet: wait (the alarm goes first);
//! 5. claim attempt `n+1` (create-if-absent: of several instances one wins), send, record the
//!    result, and `delivered` on a 2xx.

use std::borrow::Cow;
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::Serialize;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use super::card::CardKind;
use super::message::Message;
use super::outbox::{
    self, AlertNames, AlertRecord, AttemptRecord, CallIndexRecord, DeliveredRecord, ExpiredRecord,
    ResultRecord, RouteNames,
};
use super::routes::{Route, RouteKind};
use super::send::{self, ATTEMPT_LEASE, BotPoster};
use crate::archive::records::to_json;
use crate::archive::{Archive, ArchiveError, Kind, ObjectName, Written};
use crate::config::AlertTrigger;

/// The first retry waits this long; each further one twice as long, up to [`MAX_BACKOFF`].
pub const FIRST_BACKOFF: Duration = Duration::from_secs(10);
pub const MAX_BACKOFF: Duration = Duration::from_secs(15 * 60);

/// The wait after failed attempt `attempt` (1-based).
pub fn backoff(attempt: u32) -> Duration {
    let factor = 2u32.saturating_pow(attempt.saturating_sub(1).min(16));
    FIRST_BACKOFF.saturating_mul(factor).min(MAX_BACKOFF)
}

/// What a delivery pass did, per route step.
#[derive(Debug, Default, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct DeliveryStats {
    /// Alerts with at least one route not final.
    pub alerts: usize,
    pub delivered: usize,
    pub failed: usize,
    pub expired: usize,
    /// Steps that wait: another sender's attempt in flight, a backoff, a follow-up's alarm.
    pub waiting: usize,
}

enum Step {
    Delivered,
    Failed,
    Expired,
    Waiting,
    Final,
}

/// Sends alerts to the configured routes. Built once (by the builder) and shared.
pub struct Dispatcher {
    http: reqwest::Client,
    archive: Arc<dyn Archive>,
    routes: Vec<Route>,
    bot: Option<Arc<dyn BotPoster>>,
    retry_for: Duration,
    /// Names this process in its attempt records (diagnostics only; the claim is the object).
    instance: String,
}

impl Dispatcher {
    pub fn new(
        http: reqwest::Client,
        archive: Arc<dyn Archive>,
        routes: Vec<Route>,
        bot: Option<Arc<dyn BotPoster>>,
        retry_for: Duration,
    ) -> Self {
        let mut id = [0u8; 6];
        openssl::rand::rand_bytes(&mut id).expect("the OS has randomness");
        Dispatcher {
            http,
            archive,
            routes,
            bot,
            retry_for,
            instance: format!("{}-{}", std::process::id(), hex::encode(id)),
        }
    }

    pub fn routes(&self) -> &[Route] {
        &self.routes
    }

    pub fn http(&self) -> &reqwest::Client {
        &self.http
    }

    pub fn bot(&self) -> Option<&dyn BotPoster> {
        self.bot.as_deref()
    }

    pub fn archive(&self) -> &Arc<dyn Archive> {
        &self.archive
    }

    /// Sends the alerts a request created, in a task of their own (the 202 does not wait).
    pub fn spawn_new(self: &Arc<Self>, alerts: Vec<ObjectName>) {
        if alerts.is_empty() {
            return;
        }
        let this = self.clone();
        tokio::spawn(async move {
            this.deliver_new(alerts).await;
        });
    }

    /// Sends freshly written alerts (no delivery records exist yet).
    pub async fn deliver_new(&self, alerts: Vec<ObjectName>) -> DeliveryStats {
        let mut stats = DeliveryStats::default();
        for alert in alerts {
            if let Err(e) = self
                .deliver(&alert, &AlertNames::default(), &mut stats)
                .await
            {
                tracing::error!(alert = %alert, error = %e, "alert delivery could not read or write the archive; the alert timer retries");
            }
        }
        stats
    }

    /// Takes the next step of every alert with a route not final (the timer and the start-up).
    pub async fn sweep(&self) -> Result<DeliveryStats, ArchiveError> {
        let names = self.archive.list(Kind::Alerts).await?;
        let mut stats = DeliveryStats::default();
        for (alert, state) in outbox::group(&names) {
            if state.has_record && !state.done {
                self.deliver(&alert, &state, &mut stats).await?;
            }
        }
        Ok(stats)
    }

    async fn deliver(
        &self,
        alert: &ObjectName,
        names: &AlertNames,
        stats: &mut DeliveryStats,
    ) -> Result<(), ArchiveError> {
        let Some(record) = self.read::<AlertRecord>(alert).await? else {
            tracing::warn!(alert = %alert, "alert record missing or unreadable");
            return Ok(());
        };
        let (kind, follows_up) = self.follow_up(alert, &record).await?;
        let message = Message {
            alert_id: alert.to_string(),
            kind,
            follows_up: follows_up.as_ref().map(|(name, _)| name.to_string()),
            record: record.clone(),
            archive_location: self.archive.location(),
            replaces: None,
        };
        let empty = RouteNames::default();
        let steps = futures::future::join_all(record.routes.iter().map(|id| {
            let route_names = names.routes.get(id).unwrap_or(&empty);
            self.route_step(alert, &message, id, route_names, follows_up.as_ref())
        }))
        .await;
        stats.alerts += 1;
        let mut all_final = true;
        for step in steps {
            match step? {
                Step::Delivered => stats.delivered += 1,
                Step::Expired => stats.expired += 1,
                Step::Final => {}
                Step::Failed => {
                    stats.failed += 1;
                    all_final = false;
                }
                Step::Waiting => {
                    stats.waiting += 1;
                    all_final = false;
                }
            }
        }
        if all_final {
            let done = outbox::sub_name(alert, None, "done");
            self.archive
                .put_if_absent(&done, to_json(&serde_json::json!({"doneAt": now_text()})))
                .await?;
        }
        Ok(())
    }

    /// A later state of a call that alerted follows that alarm up (with the alarm's record).
    async fn follow_up(
        &self,
        alert: &ObjectName,
        record: &AlertRecord,
    ) -> Result<(CardKind, Option<(ObjectName, AlertRecord)>), ArchiveError> {
        let started = AlertTrigger::EmergencyCallStarted.name();
        let Some(call_id) = record
            .call_id
            .as_deref()
            .filter(|_| record.trigger != started)
        else {
            return Ok((CardKind::Alarm, None));
        };
        let index = outbox::call_index_name(call_id, Some("callStarted"));
        let Some(index) = self.read::<CallIndexRecord>(&index).await? else {
            return Ok((CardKind::Alarm, None));
        };
        let alarm = ObjectName::parse(&index.alert).filter(|a| a != alert);
        let Some(alarm) = alarm else {
            return Ok((CardKind::Alarm, None));
        };
        let Some(alarm_record) = self.read::<AlertRecord>(&alarm).await? else {
            return Ok((CardKind::Alarm, None));
        };
        let kind = CardKind::FollowUp {
            alarm_time: alarm_record.emergency.event_date_time.clone(),
        };
        Ok((kind, Some((alarm, alarm_record))))
    }

    async fn route_step(
        &self,
        alert: &ObjectName,
        message: &Message,
        route_id: &str,
        names: &RouteNames,
        follows_up: Option<&(ObjectName, AlertRecord)>,
    ) -> Result<Step, ArchiveError> {
        if names.is_final() {
            return Ok(Step::Final);
        }
        let now = OffsetDateTime::now_utc();
        let sub = |what: &str| outbox::sub_name(alert, Some(route_id), what);
        let mut not_before = None;
        if names.last_attempt > names.last_result {
            let attempt = self
                .read::<AttemptRecord>(&sub(&format!("a{}", names.last_attempt)))
                .await?;
            if attempt.is_some_and(|a| parse_time(&a.lease_until).is_some_and(|t| now < t)) {
                return Ok(Step::Waiting);
            }
        } else if names.last_result > 0 {
            let result = self
                .read::<ResultRecord>(&sub(&format!("r{}", names.last_result)))
                .await?;
            not_before = result
                .and_then(|r| parse_time(&r.finished_at))
                .map(|t| t + backoff(names.last_result));
        }
        let received = parse_time(&message.record.received_at).unwrap_or(now);
        if now > received + self.retry_for {
            return self.expire(alert, message, route_id, names).await;
        }
        if not_before.is_some_and(|t| now < t) {
            return Ok(Step::Waiting);
        }
        if let Some((alarm, alarm_record)) = follows_up
            && alarm_record.routes.iter().any(|r| r == route_id)
            && !self.is_final(alarm, route_id).await?
        {
            return Ok(Step::Waiting);
        }
        let Some(route) = self.routes.iter().find(|r| r.id == route_id) else {
            // The route was removed from the settings: nothing can send it; it expires in time.
            return Ok(Step::Waiting);
        };
        let message = self.for_route(route, message, follows_up).await?;
        let attempt = names.last_attempt.max(names.last_result) + 1;
        let claim = AttemptRecord {
            attempt,
            instance: self.instance.clone(),
            started_at: format_time(now),
            lease_until: format_time(now + ATTEMPT_LEASE),
        };
        let claimed = self
            .archive
            .put_if_absent(&sub(&format!("a{attempt}")), to_json(&claim))
            .await?;
        if claimed == Written::AlreadyExisted {
            return Ok(Step::Waiting);
        }
        self.attempt(alert, &message, route, attempt, received)
            .await
    }

    /// What `route` is sent: on the bot route a follow-up replaces the alarm's message when the
    /// alarm's delivery there names it; everything else as it is.
    async fn for_route<'m>(
        &self,
        route: &Route,
        message: &'m Message,
        follows_up: Option<&(ObjectName, AlertRecord)>,
    ) -> Result<Cow<'m, Message>, ArchiveError> {
        let Some((alarm, alarm_record)) = follows_up.filter(|_| route.kind == RouteKind::Bot)
        else {
            return Ok(Cow::Borrowed(message));
        };
        let delivered = outbox::sub_name(alarm, Some(&route.id), "delivered");
        let activity = self
            .read::<DeliveredRecord>(&delivered)
            .await?
            .and_then(|d| d.activity_id);
        Ok(match activity {
            Some(id) => Cow::Owned(message.replacing(&id, &alarm_record.emergency)),
            None => Cow::Borrowed(message),
        })
    }

    async fn attempt(
        &self,
        alert: &ObjectName,
        message: &Message,
        route: &Route,
        attempt: u32,
        received: OffsetDateTime,
    ) -> Result<Step, ArchiveError> {
        let sub = |what: &str| outbox::sub_name(alert, Some(&route.id), what);
        let started = Instant::now();
        let outcome = send::send(&self.http, self.bot.as_deref(), route, message).await;
        let finished = OffsetDateTime::now_utc();
        let result = ResultRecord {
            attempt,
            finished_at: format_time(finished),
            ok: outcome.is_ok(),
            status: match &outcome {
                Ok(a) => Some(a.status),
                Err(e) => e.status(),
            },
            detail: match &outcome {
                Ok(a) => a.excerpt.clone(),
                Err(e) => e.to_string(),
            },
            elapsed_ms: started.elapsed().as_millis() as u64,
        };
        self.archive
            .put_if_absent(&sub(&format!("r{attempt}")), to_json(&result))
            .await?;
        match outcome {
            Ok(answer) => {
                let latency_ms = (finished - received).whole_milliseconds().max(0) as u64;
                let delivered = DeliveredRecord {
                    attempt,
                    delivered_at: format_time(finished),
                    latency_ms,
                    status: answer.status,
                    activity_id: answer.activity_id.clone(),
                };
                self.archive
                    .put_if_absent(&sub("delivered"), to_json(&delivered))
                    .await?;
                tracing::info!(alert = %alert, route = %route.label(), attempt, latency_ms, status = answer.status, "alert delivered");
                Ok(Step::Delivered)
            }
            Err(e) => {
                tracing::warn!(alert = %alert, route = %route.label(), attempt, error = %e, retry_in_s = backoff(attempt).as_secs(), "alert delivery failed; it stays pending");
                Ok(Step::Failed)
            }
        }
    }

    async fn expire(
        &self,
        alert: &ObjectName,
        message: &Message,
        route_id: &str,
        names: &RouteNames,
    ) -> Result<Step, ArchiveError> {
        let attempts = names.last_attempt.max(names.last_result);
        let label = self.routes.iter().find(|r| r.id == route_id).map_or_else(
            || format!("{route_id} (no longer configured)"),
            Route::label,
        );
        let record = ExpiredRecord {
            expired_at: now_text(),
            attempts,
            reason: format!(
                "not delivered to {label} within ALERT_RETRY_HOURS ({:.2} h) after {attempts} attempt(s)",
                self.retry_for.as_secs_f64() / 3600.0
            ),
            summary: message.record.summary.clone(),
        };
        let name = outbox::sub_name(alert, Some(route_id), "expired");
        if self.archive.put_if_absent(&name, to_json(&record)).await? == Written::Created {
            tracing::error!(alert = %alert, route = %label, attempts, summary = %message.record.summary, "emergency alert EXPIRED undelivered");
        }
        Ok(Step::Expired)
    }

    async fn is_final(&self, alert: &ObjectName, route_id: &str) -> Result<bool, ArchiveError> {
        for what in ["delivered", "expired"] {
            let name = outbox::sub_name(alert, Some(route_id), what);
            if self.archive.get(&name).await?.is_some() {
                return Ok(true);
            }
        }
        Ok(false)
    }

    async fn read<T: serde::de::DeserializeOwned>(
        &self,
        name: &ObjectName,
    ) -> Result<Option<T>, ArchiveError> {
        Ok(self
            .archive
            .get(name)
            .await?
            .and_then(|bytes| serde_json::from_slice(&bytes).ok()))
    }
}

pub(crate) fn parse_time(s: &str) -> Option<OffsetDateTime> {
    OffsetDateTime::parse(s, &Rfc3339).ok()
}

fn format_time(t: OffsetDateTime) -> String {
    t.format(&Rfc3339).expect("times format as RFC 3339")
}

fn now_text() -> String {
    format_time(OffsetDateTime::now_utc())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_from_ten_seconds_up_to_fifteen_minutes() {
        assert_eq!(backoff(1), Duration::from_secs(10));
        assert_eq!(backoff(2), Duration::from_secs(20));
        assert_eq!(backoff(4), Duration::from_secs(80));
        assert_eq!(backoff(10), MAX_BACKOFF);
        assert_eq!(backoff(u32::MAX), MAX_BACKOFF);
    }
}
