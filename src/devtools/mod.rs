//! Local stand-ins for what only exists in Azure, used by `handler demo`, `handler simulate`,
//! the tests and the benchmarks, never by the running service:
//! - [`issuer`]: Entra ID's token signing (keys, JWKS, minted validationTokens);
//! - [`simulate`]: Graph as a sender (rich notifications, encrypted and signed);
//! - [`certificates`]: self-signed development certificates.

pub mod certificates;
pub mod issuer;
pub mod simulate;
