//! Operator-side work over the archive.

pub mod attendance;
