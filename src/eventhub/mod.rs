//! Graph's Event Hubs delivery, consumed by an `eventHubTrigger` function: the pieces that are
//! particular to it. The notifications themselves go through the same receiver as the webhook.
//!
//! - [`payload`]: the host's invocation payload (every encoding of a `cardinality: many` batch).
//! - [`validation`]: Graph's reachability message, ignored.
//! - [`url`]: `EventHub:` notification URLs for the desired subscriptions.

pub mod payload;
pub mod url;
pub mod validation;
