//! Teams change notifications on Azure Functions: a custom handler that receives Microsoft Graph
//! change notifications, proves they are genuine, decrypts them and archives them without loss.
//!
//! Codemap:
//! - [`config`]: typed settings from the environment (the Functions app settings).
//! - [`server`]: the HTTP surface the Functions host calls (warp); thin handlers.
//! - [`receiver`]: the notification path, top to bottom (parse, clientState, validationTokens,
//!   persist, decrypt, archive).
//! - [`graph`]: Graph's wire formats and rules: envelopes, validationTokens, decryption, typed
//!   Teams events, the subscriptions API.
//! - [`keys`]: the certificate store (local files or Azure Key Vault, several live keys).
//! - [`archive`]: the `Archive` trait with filesystem and Azure Blob backends, and the records.
//! - [`app`]: builds the running service from a `Config` (shared by the binary and the tests).
//! - [`identity`]: the app's credential (client secret, workload or managed identity).
//! - [`renew`], [`lifecycle`], [`host`]: the subscription renewer (timer), lifecycle reactions,
//!   and the custom-handler invocation contract they use.
//! - [`replay`], [`report`], [`simulate`], [`cli`]: the operator's side (commands).
//! - [`issuer`]: a local stand-in for Entra ID's token signing (keys, JWKS, minted
//!   validationTokens) for `handler demo`, `handler simulate`, tests and benchmarks.

pub mod app;
pub mod archive;
pub mod cli;
pub mod config;
pub mod eventhub;
pub mod graph;
pub mod host;
pub mod identity;
pub mod issuer;
pub mod keys;
pub mod lifecycle;
pub mod receiver;
pub mod renew;
pub mod replay;
pub mod replay_timer;
pub mod report;
pub mod server;
pub mod simulate;
