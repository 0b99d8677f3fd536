//! Graph subscriptions: the resources we subscribe to, how long Graph lets each live, and the HTTP
//! client of the subscriptions API. (The desired state, `SUBSCRIPTIONS_FILE`, is the renewer's:
//! `crate::renewer::desired`.)
//!
//! API: <https://learn.microsoft.com/graph/api/resources/subscription> (create: `POST
//! /subscriptions`, list: `GET /subscriptions` paged by `@odata.nextLink`, renew or move to a new
//! certificate: `PATCH /subscriptions/{id}`, `POST /subscriptions/{id}/reauthorize`, `DELETE`).
//! Errors come as `{"error": {"code", "message"}}` and surface as [`GraphError::Api`]. Throttling
//! (<https://learn.microsoft.com/graph/throttling>): 429, and 503/504 under load, carry
//! `Retry-After` in seconds; we honour it, else back off exponentially with jitter, within a
//! bounded number of attempts and a bounded total time ([`RetryPolicy`]).
//!
//! The decision of *what* to call lives in `crate::renewer` (reconcile, lifecycle reactions);
//! this module only knows Graph's rules and wire format.
//!
//! One job per file: [`resource`] (versions, resource kinds, resource paths), [`lifetime`] (how
//! long a subscription may live), [`model`] (wire types), [`client`] (HTTP and retries),
//! [`error`] (failed calls) and [`eventhub_url`] (`EventHub:` notification URLs for Event Hubs
//! delivery).

mod client;
mod error;
pub(crate) mod eventhub_url;
mod lifetime;
mod model;
mod payment;
mod resource;

pub use client::{GraphClient, RetryPolicy, parse_retry_after};
pub use error::GraphError;
pub use lifetime::{
    LIFETIME_MARGIN_MINUTES, LIFETIMES, WITHOUT_LIFECYCLE_URL_MINUTES, choose_lifetime,
    default_lifetime,
};
pub use model::{
    EncryptionCertificate, NewSubscription, Subscription, SubscriptionUpdate, format_time, same_url,
};
pub use payment::{
    PaymentModel, evaluation_mode_warning, model_parameter, payment_model, supported_models,
    with_model, without_model,
};
pub use resource::{
    ApiVersion, ResourceError, ResourceKind, TeamsResource, beta_only, default_api_version,
    emergency_call_events, encode_join_web_url, meeting_call_events,
};

#[cfg(test)]
pub(crate) use resource::examples;
pub(crate) use resource::truncate;
