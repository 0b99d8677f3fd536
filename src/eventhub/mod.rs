//! Graph's Event Hubs delivery, consumed by an `eventHubTrigger` function: the pieces that are
//! particular to it. The notifications themselves go through the same receiver as the webhook.
//!
//! - [`payload`]: the host's invocation payload (every encoding of a `cardinality: many` batch).
//! - [`validation`]: Graph's reachability message, ignored.
//! - [`large_payload`]: payloads over 1 MB, which Graph leaves in a blob (`additionalPayloadStorageId`).
//! - [`spool`]: the second store that keeps a batch the archive could not take on the last try.

pub(crate) mod large_payload;
pub(crate) mod payload;
pub(crate) mod spool;
pub(crate) mod validation;
