//! Teams change notifications on Azure Functions: a custom handler that receives Microsoft Graph
//! change notifications, proves they are genuine, decrypts them and archives them without loss.
//!
//! The codemap (where is the thing that does X), the invariants and the table of Graph's rules
//! are in ARCHITECTURE.md. Dependencies point one way:
//! [`config`] -> [`http`], [`identity`] -> [`graph`], [`keys`], [`archive`] -> [`receiver`],
//! [`renewer`], [`meetings`] (with [`bot`] and [`jwks`]) -> [`functions`] (the host adapters) -> [`startup`] (the one builder) -> `main`,
//! [`cli`]. [`ops`] and [`devtools`] serve the operator's commands, the demo and the tests.
//! [`logging`] (escaped outside values, text or JSON lines) is used by all of them.

pub mod alerts;
pub mod archive;
pub mod bot;
pub mod cli;
pub mod config;
pub mod devtools;
pub mod eventhub;
pub mod functions;
pub mod graph;
pub(crate) mod http;
pub(crate) mod identity;
pub(crate) mod jwks;
pub mod keys;
pub mod logging;
pub(crate) mod meetings;
pub mod ops;
pub mod receiver;
pub mod renewer;
pub mod startup;
