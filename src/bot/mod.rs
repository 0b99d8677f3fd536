//! The Teams bot: the Bot Framework's side of meetings, as Microsoft's "Meeting apps APIs"
//! document describes it.
//!
//! - [`auth`]: the Bot Connector's inbound JWT (and Entra-issued tokens for a single-tenant bot);
//! - [`activity`]: activities and the four real-time meeting events, typed;
//! - [`client`]: the outbound Bot APIs (meeting details, participants) and proactive messages,
//!   only towards Bot Framework hosts.
//!
//! Nothing here decides what is archived or answered: the messaging endpoint does.

pub(crate) mod activity;
pub(crate) mod auth;
pub mod client;
