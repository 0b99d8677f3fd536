//! Reactions to lifecycle notifications
//! (<https://learn.microsoft.com/graph/change-notifications-lifecycle-events>).
//!
//! The server archives each lifecycle notification and answers Graph 202 first; [`react`] then
//! does the slow part in a background task, so Graph's 3-second budget is never at stake.
//! Reactions are calm: one per (subscription, event) per request and per window, a bounded
//! number at once ([`super::gate`]), and a reconcile they need joins the one running:
//! - `reauthorizationRequired`: reauthorize the subscription, or renew it if that fails (a
//!   renewal also reauthorizes), under the renewer's lease like every Graph-changing call, for
//!   at most [`Renewer::reaction_deadline`]; so the renew timer waits at most that long per
//!   reaction ahead of it (and at most the gate's concurrency of them); a subscription Graph no
//!   longer has is created again;
//! - `subscriptionRemoved`: create it again from the desired state, but only once Graph's
//!   listing confirms the subscription is gone (a few looks over a few minutes): anyone with the
//!   clientState could otherwise make us create a second subscription next to a live one;
//! - `missed`: some notifications were not delivered and cannot be; write a resync marker under
//!   `resync/` saying which subscription, which resource and up to when, for whoever resyncs the
//!   resource (delta query or a full read). The marker's name is the notification's content
//!   hash, written create-if-absent: Graph's resends of the same `missed` are one marker.

use std::sync::Arc;
use std::time::Duration;

use time::OffsetDateTime;

use super::desired::matching_desired;
use super::{Renewer, Report, listing_version};
use crate::archive::records::{ResyncRecord, ResyncWindow, sha256_hex, to_json};
use crate::archive::{Kind, ObjectName, Written};
use crate::graph::notification::ChangeNotification;
use crate::graph::subscriptions::{
    ApiVersion, GraphError, Subscription, default_api_version, default_lifetime, format_time,
};
use crate::graph::vocabulary::LifecycleEvent;
use crate::logging::escape;

/// Attempts to write a resync marker before giving up (the archive may blink).
const MARKER_ATTEMPTS: u32 = 3;
const MARKER_RETRY_DELAY: Duration = Duration::from_millis(200);

/// What a reaction did.
#[derive(Debug)]
pub enum Reaction {
    Reauthorized {
        subscription_id: String,
    },
    /// Reauthorization failed; the renewal that replaced it succeeded.
    Renewed {
        subscription_id: String,
        expiration: String,
    },
    /// A reconcile ran (subscription removed, or gone when reauthorization was asked).
    Reconciled(Report),
    ResyncMarked {
        name: ObjectName,
        written: Written,
    },
    /// Nothing to do (unknown event, no subscription id).
    Ignored(String),
    Failed(String),
}

/// Reacts to one lifecycle notification in a background task and returns at once.
pub fn react(
    ctx: Arc<Renewer>,
    notification: &ChangeNotification,
) -> tokio::task::JoinHandle<Reaction> {
    let notification = notification.clone();
    tokio::spawn(async move {
        let reaction = react_now(&ctx, &notification).await;
        match &reaction {
            Reaction::Failed(reason) => tracing::warn!(
                subscription_id = %escape(&notification.subscription_id),
                event = %escape(notification.lifecycle_event.as_ref().map_or("", |e| e.as_str())),
                %reason,
                "lifecycle reaction failed"
            ),
            other => tracing::info!(
                subscription_id = %escape(&notification.subscription_id),
                event = %escape(notification.lifecycle_event.as_ref().map_or("", |e| e.as_str())),
                reaction = %describe(other),
                "lifecycle reaction done"
            ),
        }
        reaction
    })
}

fn describe(r: &Reaction) -> String {
    match r {
        Reaction::Reauthorized { .. } => "reauthorized".into(),
        Reaction::Renewed { expiration, .. } => format!("renewed until {expiration}"),
        Reaction::Reconciled(report) => format!(
            "reconciled: {} changes, {} failures",
            report.changes(),
            report.failures()
        ),
        Reaction::ResyncMarked { name, written } => format!("resync marker {name} ({written:?})"),
        Reaction::Ignored(why) => format!("ignored: {why}"),
        Reaction::Failed(why) => format!("failed: {why}"),
    }
}

/// Holds one of the gate's permits while a reaction calls Graph.
async fn permit(ctx: &Renewer) -> tokio::sync::OwnedSemaphorePermit {
    ctx.reactions
        .permits()
        .acquire_owned()
        .await
        .expect("the reaction permits are never closed")
}

/// The reaction itself, awaited (tests and `react`'s task).
pub async fn react_now(ctx: &Arc<Renewer>, notification: &ChangeNotification) -> Reaction {
    let Some(event) = &notification.lifecycle_event else {
        return Reaction::Ignored("not a lifecycle notification".into());
    };
    if notification.subscription_id.is_empty() {
        return Reaction::Ignored(format!(
            "{} without a subscriptionId",
            escape(event.as_str())
        ));
    }
    match event {
        LifecycleEvent::ReauthorizationRequired => {
            let _permit = permit(ctx).await;
            reauthorize(ctx, notification).await
        }
        LifecycleEvent::SubscriptionRemoved => {
            recreate_if_gone(ctx, &notification.subscription_id).await
        }
        LifecycleEvent::Missed => {
            let _permit = permit(ctx).await;
            mark_resync(ctx, notification).await
        }
        LifecycleEvent::Other(other) => {
            Reaction::Ignored(format!("unknown lifecycle event {:?}", escape(other)))
        }
    }
}

/// Finds the subscription Graph has under `id` (and the version its resource needs).
async fn find(ctx: &Renewer, id: &str) -> Result<Option<(Subscription, ApiVersion)>, GraphError> {
    let desired = ctx.desired().unwrap_or_default();
    let listed = ctx.graph.list(listing_version(&desired)).await?;
    let delivery_url = ctx.config.notification_url.clone().unwrap_or_default();
    Ok(listed.into_iter().find(|s| s.id == id).map(|s| {
        let (_, version) = matching_desired(&desired, &s, &delivery_url);
        (s, version)
    }))
}

/// `subscriptionRemoved`: reconcile (which recreates it) once Graph's listing no longer has
/// the subscription; a permit is held only while looking, never while waiting.
async fn recreate_if_gone(ctx: &Arc<Renewer>, id: &str) -> Reaction {
    for wait in &ctx.removal_checks {
        tokio::time::sleep(*wait).await;
        let listed = {
            let _permit = permit(ctx).await;
            find(ctx, id).await
        };
        match listed {
            Ok(None) => return Reaction::Reconciled(ctx.reconcile_joined().await.0),
            Ok(Some(_)) => {}
            Err(e) => {
                tracing::warn!(subscription_id = %escape(id), error = %e, "cannot list subscriptions to confirm a removal")
            }
        }
    }
    Reaction::Ignored(format!(
        "subscriptionRemoved for {}, but Graph's listing still has it after {} looks: not recreated (the timer's reconcile will if it goes)",
        escape(id),
        ctx.removal_checks.len()
    ))
}

/// `reauthorizationRequired`: the subscription is looked up without the lease (a read), then
/// the reauthorization (and the renewal that replaces it if it fails) runs under the renewer's
/// lease, bounded by [`Renewer::reaction_deadline`], so a slow Graph never holds the lease, and
/// the renew timer behind it, for longer than that.
async fn reauthorize(ctx: &Arc<Renewer>, n: &ChangeNotification) -> Reaction {
    let id = n.subscription_id.as_str();
    let (resource, version) = match find(ctx, id).await {
        Ok(Some((s, version))) => (Some(s.resource), version),
        Ok(None) => {
            tracing::info!(subscription_id = %escape(id), "reauthorization asked for a subscription Graph no longer lists; reconciling");
            return Reaction::Reconciled(ctx.reconcile_joined().await.0);
        }
        // Listing failed: try anyway, on the version the notification's resource suggests.
        Err(e) => {
            tracing::warn!(subscription_id = %escape(id), error = %e, "cannot list subscriptions; reauthorizing blind");
            let resource = n.resource.clone();
            let version = resource
                .as_deref()
                .map(default_api_version)
                .unwrap_or(ApiVersion::V1);
            (resource, version)
        }
    };
    let guard = match ctx.exclusive("reauthorization").await {
        Ok(guard) => guard,
        Err(e) => return Reaction::Failed(format!("reauthorization not run: {e}")),
    };
    let deadline = ctx.reaction_deadline();
    let done = tokio::time::timeout(
        deadline,
        reauthorize_locked(ctx, id, resource.as_deref(), version),
    )
    .await;
    guard.release().await;
    match done {
        Ok(Some(reaction)) => reaction,
        // Gone: the reconcile recreates it (a renewal that answers 404 is a recreation).
        Ok(None) => Reaction::Reconciled(ctx.reconcile_joined().await.0),
        Err(_) => Reaction::Failed(format!(
            "Graph did not finish the reauthorization within {} s; the renewer lease was given up so that the renew timer does not wait longer",
            deadline.as_secs_f32()
        )),
    }
}

/// Reauthorize, or renew if that fails (a renewal also reauthorizes). `None`: Graph no longer
/// has the subscription.
async fn reauthorize_locked(
    ctx: &Renewer,
    id: &str,
    resource: Option<&str>,
    version: ApiVersion,
) -> Option<Reaction> {
    let reauthorize_error = match ctx.graph.reauthorize(version, id).await {
        Ok(()) => {
            return Some(Reaction::Reauthorized {
                subscription_id: id.to_string(),
            });
        }
        Err(e) => e,
    };
    tracing::warn!(subscription_id = %escape(id), error = %reauthorize_error, "reauthorize failed; renewing instead");
    let has_lifecycle = ctx.config.lifecycle_notification_url.is_some();
    let lifetime = default_lifetime(resource.unwrap_or_default(), has_lifecycle);
    let lifetime = ctx
        .desired()
        .unwrap_or_default()
        .iter()
        .find(|d| resource.is_some_and(|r| super::same_resource(r, &d.resource)))
        .map(|d| d.lifetime(has_lifecycle))
        .unwrap_or(lifetime);
    let expiration = OffsetDateTime::now_utc() + lifetime;
    match ctx.graph.renew(version, id, expiration).await {
        Ok(s) => Some(Reaction::Renewed {
            subscription_id: s.id,
            expiration: format_time(s.expiration_date_time),
        }),
        Err(e) if e.is_not_found() => None,
        Err(e) => Some(Reaction::Failed(format!(
            "reauthorize: {reauthorize_error}; renew: {e}"
        ))),
    }
}

async fn mark_resync(ctx: &Renewer, n: &ChangeNotification) -> Reaction {
    let until = format_time(OffsetDateTime::now_utc());
    let resource = match &n.resource {
        Some(r) => Some(r.clone()),
        None => match find(ctx, &n.subscription_id).await {
            Ok(found) => found.map(|(s, _)| s.resource),
            Err(e) => {
                tracing::warn!(subscription_id = %escape(&n.subscription_id), error = %e, "cannot look up the resource of a missed subscription");
                None
            }
        },
    };
    let record = ResyncRecord {
        subscription_id: n.subscription_id.clone(),
        resource,
        tenant_id: n.tenant().map(str::to_string),
        window: ResyncWindow { from: None, until },
        notification: n.clone(),
    };
    let name = resync_name(n);
    let body = to_json(&record);
    let mut attempt = 0;
    loop {
        attempt += 1;
        match ctx.archive.put_if_absent(&name, body.clone()).await {
            Ok(written) => return Reaction::ResyncMarked { name, written },
            Err(e) if attempt < MARKER_ATTEMPTS => {
                tracing::warn!(%name, error = %e, attempt, "resync marker not written yet; retrying");
                tokio::time::sleep(MARKER_RETRY_DELAY * attempt).await;
            }
            Err(e) => return Reaction::Failed(format!("resync marker {name}: {e}")),
        }
    }
}

/// `resync/{date}/{subscriptionId}/{sha256 of the notification}.json`.
pub(crate) fn resync_name(n: &ChangeNotification) -> ObjectName {
    ObjectName::new(
        Kind::Resync,
        n.partition_date(),
        &n.subscription_id,
        &sha256_hex(&n.canonical()),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::graph::notification::parse_collection;

    #[test]
    fn resync_names_ignore_client_state_and_layout() {
        let a = parse_collection(br#"{"value":[{"subscriptionId":"s-1","clientState":"x","lifecycleEvent":"missed","subscriptionExpirationDateTime":"2026-03-04T05:06:07Z","tenantId":"t"}]}"#).unwrap();
        let b = parse_collection(br#"{"value":[{"tenantId":"t","lifecycleEvent":"missed","subscriptionId":"s-1","subscriptionExpirationDateTime":"2026-03-04T05:06:07Z","clientState":"y"}]}"#).unwrap();
        let name = resync_name(&a.value[0]);
        assert_eq!(name, resync_name(&b.value[0]));
        assert!(
            name.as_str().starts_with("resync/2026/03/04/s-1/"),
            "{name}"
        );
    }
}
