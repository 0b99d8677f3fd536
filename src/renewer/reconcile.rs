//! The reconcile: brings Graph to the desired subscriptions.
//!
//! Reconcile, per desired subscription (matched to Graph's by resource, changeType and
//! notificationUrl):
//! - missing (never created, expired, removed): create it; on 409 (emergency events allow one
//!   subscription per app, tenant and policy) adopt the one Graph has;
//! - present: renew it when less than [`ReconcileOptions::renew_when_remaining`] of its lifetime
//!   is left, and move it to the current certificate when it still uses another one (one PATCH);
//!   a 404 on that PATCH means Graph lost it: create it again;
//! - present on another payment model (`?model=`, metered Teams APIs): Graph cannot change the
//!   model of a subscription, so it is deleted and created again on the desired one;
//! - several present (a lost race, a retried create): keep the one that lives longest, delete
//!   the others, so no notification is archived twice under two subscription ids.
//!
//! Subscriptions of this app that deliver elsewhere or that the file no longer lists are left
//! alone (counted as `unmanaged`): they lapse at their expiry. A reconcile right after another
//! changes nothing. Reconciles never overlap within a process (one lock); across instances the
//! timer trigger is a singleton, and the duplicate rule above repairs any other overlap.

use std::collections::HashSet;

use time::OffsetDateTime;

use super::Delivery;
use super::desired::{DesiredSubscription, normalize_change_type, same_resource};
use super::report::{Action, ActionRecord, Failure, Report};
use crate::config::ReconcileOptions;
use crate::graph::subscriptions::{
    ApiVersion, EncryptionCertificate, GraphClient, NewSubscription, Subscription,
    SubscriptionUpdate, evaluation_mode_warning, payment_model,
};
use crate::keys::CertificateStore;

/// The version to list with: beta lists every subscription of the app, v1.0 may not show those
/// made on beta-only resources.
pub fn listing_version(desired: &[DesiredSubscription]) -> ApiVersion {
    if desired.iter().any(|d| d.api_version == ApiVersion::Beta) {
        ApiVersion::Beta
    } else {
        ApiVersion::V1
    }
}

/// Brings Graph to the desired state (see the module docs).
pub async fn reconcile(
    graph: &GraphClient,
    keys: &CertificateStore,
    delivery: &Delivery,
    desired: &[DesiredSubscription],
    options: &ReconcileOptions,
    removed: &HashSet<String>,
) -> Report {
    let plan = Plan {
        desired,
        retire: &[],
        now: OffsetDateTime::now_utc(),
    };
    reconcile_plan(graph, keys, delivery, &plan, options, removed).await
}

/// What one reconcile is to bring about.
pub struct Plan<'a> {
    /// The desired subscriptions (the file's and the running meetings').
    pub desired: &'a [DesiredSubscription],
    /// Resources of meetings that are over: their subscriptions to this app's notification URL
    /// are deleted (unless also desired).
    pub retire: &'a [String],
    /// The reconcile's clock reading (lifetimes and expiry are measured from it).
    pub now: OffsetDateTime,
}

/// [`reconcile`] of a whole [`Plan`].
pub async fn reconcile_plan(
    graph: &GraphClient,
    keys: &CertificateStore,
    delivery: &Delivery,
    plan: &Plan<'_>,
    options: &ReconcileOptions,
    removed: &HashSet<String>,
) -> Report {
    let (desired, now) = (plan.desired, plan.now);
    let mut report = Report::new(now);
    for warning in desired
        .iter()
        .filter_map(|d| evaluation_mode_warning(&d.resource))
    {
        tracing::warn!("{warning}");
        report.warnings.push(warning);
    }
    // Meeting subscriptions live on beta: list there when some are to be retired.
    let listing = if plan.retire.is_empty() {
        listing_version(desired)
    } else {
        ApiVersion::Beta
    };
    let listed = match graph.list(listing).await {
        Ok(v) => v,
        Err(e) => {
            tracing::error!(error = %e, "listing subscriptions failed");
            report.error = Some(format!("listing subscriptions: {e}"));
            report.error_transient = e.is_transient();
            return report;
        }
    };
    report.listed = listed.len();
    let (live, gone): (Vec<Subscription>, Vec<Subscription>) = listed
        .into_iter()
        .partition(|s| !removed.contains(&s.id) && s.expiration_date_time > now);
    report.expired = gone.iter().filter(|s| !removed.contains(&s.id)).count();

    let certificate = current_certificate(keys);
    let mut claimed: HashSet<String> = HashSet::new();
    let mut urls = vec![delivery.notification_url.clone()];
    for d in desired {
        // Each subscription's own delivery (webhook or Event Hubs).
        let delivery = match delivery.for_subscription(d) {
            Ok(delivery) => delivery,
            Err(message) => {
                let failure = Failure {
                    status: None,
                    code: None,
                    message,
                    transient: false,
                };
                report.push(ActionRecord::failed(d, failure));
                continue;
            }
        };
        if !urls.contains(&delivery.notification_url) {
            urls.push(delivery.notification_url.clone());
        }
        let run = Run {
            graph,
            delivery: &delivery,
            options,
            certificate: certificate.clone(),
            listing,
            removed,
            now,
        };
        run.bring(d, &live, &gone, &mut claimed, &mut report).await;
    }
    retire(graph, delivery, plan, &live, &mut claimed, &mut report).await;
    report.unmanaged = live
        .iter()
        .filter(|s| !claimed.contains(&s.id) && urls.iter().any(|u| s.delivers_to(u)))
        .count();
    report
}

/// Deletes the subscriptions of meetings that are over (and no longer desired).
async fn retire(
    graph: &GraphClient,
    delivery: &Delivery,
    plan: &Plan<'_>,
    live: &[Subscription],
    claimed: &mut HashSet<String>,
    report: &mut Report,
) {
    for resource in plan.retire {
        if plan
            .desired
            .iter()
            .any(|d| same_resource(&d.resource, resource))
        {
            continue;
        }
        let ours = |s: &&Subscription| {
            !claimed.contains(&s.id)
                && same_resource(&s.resource, resource)
                && s.delivers_to(&delivery.notification_url)
        };
        let over: Vec<&Subscription> = live.iter().filter(ours).collect();
        for s in over {
            claimed.insert(s.id.clone());
            let mut record = ActionRecord::retired(s);
            match graph.delete(ApiVersion::Beta, &s.id).await {
                Ok(()) => {}
                Err(e) if e.is_not_found() => {}
                Err(e) => {
                    record.action = Action::Failed;
                    record.failure = Some(Failure::from(&e));
                }
            }
            report.push(record);
        }
    }
}

/// The certificate to give Graph: the store's current one, if it can be exported.
fn current_certificate(keys: &CertificateStore) -> Option<EncryptionCertificate> {
    let key = keys.current()?;
    match key.certificate_base64() {
        Ok(base64) => Some(EncryptionCertificate {
            base64,
            id: key.id.clone(),
        }),
        Err(e) => {
            tracing::error!(certificate = %key.id, error = %e, "current certificate unusable");
            None
        }
    }
}

/// The parts of one reconcile every step needs.
struct Run<'a> {
    graph: &'a GraphClient,
    delivery: &'a Delivery,
    options: &'a ReconcileOptions,
    certificate: Option<EncryptionCertificate>,
    listing: ApiVersion,
    removed: &'a HashSet<String>,
    now: OffsetDateTime,
}

impl Run<'_> {
    /// One desired subscription: delete its duplicates, then maintain the one that lives
    /// longest, or create it (recreated when Graph lost it).
    async fn bring(
        &self,
        d: &DesiredSubscription,
        live: &[Subscription],
        gone: &[Subscription],
        claimed: &mut HashSet<String>,
        report: &mut Report,
    ) {
        let url = &self.delivery.notification_url;
        let mut matching: Vec<&Subscription> = live
            .iter()
            .filter(|s| !claimed.contains(&s.id) && d.matches(s, url))
            .collect();
        matching.sort_by_key(|s| std::cmp::Reverse(s.expiration_date_time));
        for duplicate in matching.iter().skip(1) {
            claimed.insert(duplicate.id.clone());
            report.push(self.delete_duplicate(d, duplicate).await);
        }
        let record = match matching.first() {
            Some(existing) => {
                claimed.insert(existing.id.clone());
                self.maintain(d, existing, claimed).await
            }
            None => {
                let lost = gone
                    .iter()
                    .find(|s| d.matches(s, url))
                    .map(|s| s.id.clone());
                let record = self.create_or_adopt(d, claimed).await;
                match lost {
                    Some(id) if record.action == Action::Created => {
                        let mut r = record.previous(&id);
                        r.action = Action::Recreated;
                        r
                    }
                    _ => record,
                }
            }
        };
        report.push(record);
    }

    async fn delete_duplicate(
        &self,
        d: &DesiredSubscription,
        duplicate: &Subscription,
    ) -> ActionRecord {
        match self.graph.delete(d.api_version, &duplicate.id).await {
            Ok(()) => ActionRecord::new(Action::DuplicateDeleted, d).previous(&duplicate.id),
            Err(e) if e.is_not_found() => {
                ActionRecord::new(Action::DuplicateDeleted, d).previous(&duplicate.id)
            }
            Err(e) => ActionRecord::failed(d, Failure::from(&e)).previous(&duplicate.id),
        }
    }

    fn expiration(&self, d: &DesiredSubscription) -> OffsetDateTime {
        self.now + d.lifetime(self.delivery.has_lifecycle_url())
    }

    /// The certificate to give a subscription that needs one and does not have it yet.
    fn certificate_move(
        &self,
        d: &DesiredSubscription,
        existing: &Subscription,
    ) -> Option<EncryptionCertificate> {
        let current = self.certificate.as_ref()?;
        (d.include_resource_data
            && existing.encryption_certificate_id.as_deref() != Some(current.id.as_str()))
        .then(|| current.clone())
    }

    async fn maintain(
        &self,
        d: &DesiredSubscription,
        existing: &Subscription,
        claimed: &mut HashSet<String>,
    ) -> ActionRecord {
        // includeResourceData and the payment model cannot be patched: replace the subscription.
        if existing
            .include_resource_data
            .is_some_and(|rich| rich != d.include_resource_data)
            || payment_model(&existing.resource) != d.model()
        {
            return self.replace(d, existing, claimed).await;
        }
        let lifetime = d.lifetime(self.delivery.has_lifecycle_url());
        let renew =
            existing.remaining(self.now) < lifetime.mul_f64(self.options.renew_when_remaining);
        let certificate = self.certificate_move(d, existing);
        if !renew && certificate.is_none() {
            return ActionRecord::new(Action::Unchanged, d).with(existing);
        }
        let action = if certificate.is_some() {
            Action::CertificateMoved
        } else {
            Action::Renewed
        };
        let update = SubscriptionUpdate {
            expiration: Some(self.expiration(d)),
            notification_url: None,
            certificate,
        };
        match self
            .graph
            .update(d.api_version, &existing.id, &update)
            .await
        {
            Ok(updated) => ActionRecord::new(action, d).with(&updated),
            Err(e) if e.is_not_found() => {
                let record = self.create_or_adopt(d, claimed).await;
                if record.action == Action::Failed {
                    record
                } else {
                    let mut r = record.previous(&existing.id);
                    r.action = Action::Recreated;
                    r
                }
            }
            Err(e) => ActionRecord::failed(d, Failure::from(&e)).with(existing),
        }
    }

    /// Deletes `existing` and creates `d` afresh.
    async fn replace(
        &self,
        d: &DesiredSubscription,
        existing: &Subscription,
        claimed: &mut HashSet<String>,
    ) -> ActionRecord {
        match self.graph.delete(d.api_version, &existing.id).await {
            Ok(()) => {}
            Err(e) if e.is_not_found() => {}
            Err(e) => return ActionRecord::failed(d, Failure::from(&e)).with(existing),
        }
        let record = self.create(d).await;
        if record.action == Action::Failed {
            return record;
        }
        if let Some(id) = &record.subscription_id {
            claimed.insert(id.clone());
        }
        let mut r = record.previous(&existing.id);
        r.action = Action::Recreated;
        r
    }

    async fn create(&self, d: &DesiredSubscription) -> ActionRecord {
        self.try_create(d)
            .await
            .unwrap_or_else(|f| ActionRecord::failed(d, f))
    }

    async fn try_create(&self, d: &DesiredSubscription) -> Result<ActionRecord, Failure> {
        let new =
            build_new(d, self.delivery, self.certificate.clone(), self.now).map_err(|message| {
                Failure {
                    status: None,
                    code: None,
                    message,
                    transient: false,
                }
            })?;
        match self.graph.create(d.api_version, &new).await {
            Ok(s) => Ok(ActionRecord::new(Action::Created, d).with(&s)),
            Err(e) => Err(Failure::from(&e)),
        }
    }

    async fn create_or_adopt(
        &self,
        d: &DesiredSubscription,
        claimed: &mut HashSet<String>,
    ) -> ActionRecord {
        match self.try_create(d).await {
            Ok(record) => {
                if let Some(id) = &record.subscription_id {
                    claimed.insert(id.clone());
                }
                record
            }
            Err(f) if f.status == Some(409) => self.adopt(d, f, claimed).await,
            Err(f) => ActionRecord::failed(d, f),
        }
    }

    /// Graph has a subscription for this resource already (emergency events: one per app,
    /// tenant and policy). Take it over: point it at our URL and certificate, renew it; if its
    /// changeType differs (not patchable), replace it.
    async fn adopt(
        &self,
        d: &DesiredSubscription,
        conflict: Failure,
        claimed: &mut HashSet<String>,
    ) -> ActionRecord {
        let listed = match self.graph.list(self.listing).await {
            Ok(v) => v,
            Err(e) => return ActionRecord::failed(d, Failure::from(&e)),
        };
        let Some(existing) = listed.into_iter().find(|s| {
            same_resource(&s.resource, &d.resource)
                && !claimed.contains(&s.id)
                && !self.removed.contains(&s.id)
        }) else {
            tracing::warn!(resource = %d.resource, "409 on create, but no subscription for the resource is listed");
            return ActionRecord::failed(d, conflict);
        };
        claimed.insert(existing.id.clone());
        if normalize_change_type(&existing.change_type).as_deref() != Ok(d.change_type.as_str()) {
            return self.replace(d, &existing, claimed).await;
        }
        let notification_url = (!existing.delivers_to(&self.delivery.notification_url))
            .then(|| self.delivery.notification_url.clone());
        let update = SubscriptionUpdate {
            expiration: Some(self.expiration(d)),
            notification_url,
            certificate: self.certificate_move(d, &existing),
        };
        match self
            .graph
            .update(d.api_version, &existing.id, &update)
            .await
        {
            Ok(updated) => ActionRecord::new(Action::Adopted, d).with(&updated),
            Err(e) => ActionRecord::failed(d, Failure::from(&e)).with(&existing),
        }
    }
}

/// The `POST /subscriptions` body for `d`: our URLs and clientState, the current certificate
/// when rich, Graph's maximum lifetime (or the configured one) from `now`.
pub fn new_subscription(
    d: &DesiredSubscription,
    delivery: &Delivery,
    keys: &CertificateStore,
    now: OffsetDateTime,
) -> Result<NewSubscription, String> {
    let certificate = match keys.current() {
        Some(k) => Some(EncryptionCertificate {
            base64: k.certificate_base64().map_err(|e| e.to_string())?,
            id: k.id.clone(),
        }),
        None => None,
    };
    build_new(d, delivery, certificate, now)
}

fn build_new(
    d: &DesiredSubscription,
    delivery: &Delivery,
    certificate: Option<EncryptionCertificate>,
    now: OffsetDateTime,
) -> Result<NewSubscription, String> {
    let certificate = match (d.include_resource_data, certificate) {
        (true, None) => {
            return Err("rich notifications need an encryption certificate: none is configured (NOTIFICATION_CERTIFICATES or KEY_VAULT_URL)".into());
        }
        (true, c) => c,
        (false, _) => None,
    };
    Ok(NewSubscription {
        resource: d.resource.clone(),
        change_type: d.change_type.clone(),
        notification_url: delivery.notification_url.clone(),
        lifecycle_notification_url: delivery.lifecycle_notification_url.clone(),
        expiration: now + d.lifetime(delivery.has_lifecycle_url()),
        client_state: delivery.client_state.clone(),
        include_resource_data: d.include_resource_data,
        certificate,
    })
}
