//! The operator's commands (the same binary the Functions host runs).

pub mod alerts;
pub mod archive_ops;
pub mod attendance;
pub mod decrypt;
pub mod demo;
pub mod simulate;
pub mod subscriptions;
