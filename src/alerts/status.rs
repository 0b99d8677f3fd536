//! `handler alerts`: what the outbox holds, per route: pending, delivered, expired, attempts,
//! and the notification-to-route latency of what was delivered.

use std::collections::BTreeMap;
use std::sync::Arc;

use serde::Serialize;

use super::outbox::{self, AlertRecord, DeliveredRecord, ExpiredRecord};
use super::routes::Route;
use crate::archive::{Archive, ArchiveError, Kind, ObjectName};

/// The state of the outbox.
#[derive(Debug, Default, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct AlertsStatus {
    pub location: String,
    pub alerts: usize,
    /// Per route id.
    pub routes: BTreeMap<String, RouteStatus>,
    /// Alerts with a route still pending, oldest first.
    pub pending: Vec<PendingAlert>,
    /// Alerts a route never took (`ALERT_RETRY_HOURS` passed).
    pub expired: Vec<ExpiredAlert>,
}

#[derive(Debug, Default, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct RouteStatus {
    /// `kind scheme://host (id)` when the route is configured now.
    pub label: Option<String>,
    pub pending: usize,
    pub delivered: usize,
    pub expired: usize,
    /// Attempts made (every instance, every retry).
    pub attempts: u32,
    pub latency_ms_p50: Option<u64>,
    pub latency_ms_p99: Option<u64>,
    pub latency_ms_max: Option<u64>,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct PendingAlert {
    pub alert: String,
    pub received_at: String,
    pub summary: String,
    pub routes: Vec<String>,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ExpiredAlert {
    pub alert: String,
    pub route: String,
    pub expired_at: String,
    pub reason: String,
    pub summary: String,
}

async fn read<T: serde::de::DeserializeOwned>(
    archive: &Arc<dyn Archive>,
    name: &ObjectName,
) -> Result<Option<T>, ArchiveError> {
    Ok(archive
        .get(name)
        .await?
        .and_then(|b| serde_json::from_slice(&b).ok()))
}

/// Reads the outbox (an operator's command).
pub async fn build(
    archive: &Arc<dyn Archive>,
    routes: &[Route],
) -> Result<AlertsStatus, ArchiveError> {
    let mut status = AlertsStatus {
        location: archive.location(),
        ..AlertsStatus::default()
    };
    for route in routes {
        status.routes.entry(route.id.clone()).or_default().label = Some(route.label());
    }
    let mut latencies: BTreeMap<String, Vec<u64>> = BTreeMap::new();
    let names = archive.list(Kind::Alerts).await?;
    for (alert, state) in outbox::group(&names) {
        let Some(record) = read::<AlertRecord>(archive, &alert).await? else {
            continue;
        };
        status.alerts += 1;
        let mut pending_routes = Vec::new();
        for id in &record.routes {
            let names = state.routes.get(id).cloned().unwrap_or_default();
            let route = status.routes.entry(id.clone()).or_default();
            route.attempts += names.last_attempt.max(names.last_result);
            if names.delivered {
                route.delivered += 1;
                let name = outbox::sub_name(&alert, Some(id), "delivered");
                if let Some(d) = read::<DeliveredRecord>(archive, &name).await? {
                    latencies.entry(id.clone()).or_default().push(d.latency_ms);
                }
            } else if names.expired {
                route.expired += 1;
                let name = outbox::sub_name(&alert, Some(id), "expired");
                if let Some(e) = read::<ExpiredRecord>(archive, &name).await? {
                    status.expired.push(ExpiredAlert {
                        alert: alert.to_string(),
                        route: id.clone(),
                        expired_at: e.expired_at,
                        reason: e.reason,
                        summary: e.summary,
                    });
                }
            } else {
                route.pending += 1;
                pending_routes.push(id.clone());
            }
        }
        if !pending_routes.is_empty() {
            status.pending.push(PendingAlert {
                alert: alert.to_string(),
                received_at: record.received_at,
                summary: record.summary,
                routes: pending_routes,
            });
        }
    }
    for (id, mut values) in latencies {
        values.sort_unstable();
        let route = status.routes.entry(id).or_default();
        route.latency_ms_p50 = percentile(&values, 50.0);
        route.latency_ms_p99 = percentile(&values, 99.0);
        route.latency_ms_max = values.last().copied();
    }
    status
        .pending
        .sort_by(|a, b| a.received_at.cmp(&b.received_at));
    Ok(status)
}

/// Nearest-rank percentile of sorted values.
pub(crate) fn percentile(sorted: &[u64], p: f64) -> Option<u64> {
    if sorted.is_empty() {
        return None;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil().max(1.0) as usize;
    Some(sorted[rank.min(sorted.len()) - 1])
}

impl AlertsStatus {
    /// Human-readable text.
    pub fn render(&self) -> String {
        use std::fmt::Write;
        let ms = |v: Option<u64>| v.map_or_else(|| "-".to_string(), |v| format!("{v} ms"));
        let mut out = String::new();
        let _ = writeln!(out, "Alerts in {}: {}", self.location, self.alerts);
        for (id, r) in &self.routes {
            let label = r
                .label
                .clone()
                .unwrap_or_else(|| format!("{id} (not configured now)"));
            let _ = writeln!(
                out,
                "  {label}\n    pending {}, delivered {}, expired {}, attempts {}; latency p50 {}, p99 {}, max {}",
                r.pending,
                r.delivered,
                r.expired,
                r.attempts,
                ms(r.latency_ms_p50),
                ms(r.latency_ms_p99),
                ms(r.latency_ms_max)
            );
        }
        if !self.pending.is_empty() {
            let _ = writeln!(out, "Pending:");
            for p in &self.pending {
                let _ = writeln!(
                    out,
                    "  {}  {}  [{}]",
                    p.received_at,
                    p.summary,
                    p.routes.join(", ")
                );
            }
        }
        if !self.expired.is_empty() {
            let _ = writeln!(out, "EXPIRED (never delivered):");
            for e in &self.expired {
                let _ = writeln!(out, "  {}  {}  {}", e.expired_at, e.summary, e.reason);
            }
        }
        out
    }
}
