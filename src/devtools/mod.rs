//! Local stand-ins for what only exists in Azure, used by `handler demo`, `handler simulate`,
//! the tests and the benchmarks, never by the running service:
//! - [`issuer`]: Entra ID's token signing (keys, JWKS, minted validationTokens);
//! - [`simulate`]: Graph as a sender (rich notifications, encrypted and signed);
//! - [`certificates`]: self-signed development certificates;
//! - [`eventhub_host`]: the Functions host as the eventHubTrigger's caller (invocations in every
//!   encoding the host uses).

pub mod certificates;
pub mod eventhub_host;
pub mod issuer;
pub mod simulate;
