//! The integration tests: one crate, one module per area. Outside services that cannot run here
//! (Graph, Entra ID, Key Vault, the Functions host) are fakes speaking their documented wire
//! protocol on loopback; Blob Storage is the real Azurite emulator.

mod alerts;
mod archive;
mod attendance;
mod azurite;
mod bot;
mod cli;
mod eventhub;
mod faults;
mod keyvault;
mod properties;
mod rich;
mod server;
mod subscriptions;
mod support;
mod tokens;
