//! The Teams bot: the Bot Framework's side of meetings, as Microsoft's "Meeting apps APIs"
//! document describes it.
//!
//! - [`client`]: the outbound Bot APIs (meeting details, participants) and proactive messages,
//!   only towards Bot Framework hosts.

pub mod client;
