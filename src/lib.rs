//! Teams change notifications on Azure Functions: a custom handler that receives Microsoft Graph
//! change notifications, proves they are genuine, decrypts them and archives them without loss.
//!
//! Codemap:
//! - [`config`]: typed settings from the environment (the Functions app settings).
//! - [`graph`]: Graph's wire formats and rules: envelopes, validationTokens, decryption, typed
//!   Teams events, the subscriptions API.
//! - [`keys`]: the certificate store (local files or Azure Key Vault, several live keys).
//! - [`archive`]: the `Archive` trait with filesystem and Azure Blob backends.
//! - [`issuer`]: a local stand-in for Entra ID's token signing (keys, JWKS, minted
//!   validationTokens) for `handler demo`, `handler simulate` and the tests.

pub mod archive;
pub mod config;
pub mod graph;
pub mod issuer;
pub mod keys;
