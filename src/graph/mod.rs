//! Microsoft Graph: the wire formats and rules of change notifications. Nothing here touches the
//! archive; `tokens` and `subscriptions` are the only parts that make HTTP calls (to Entra ID and
//! Graph).

pub mod crypto;
pub(crate) mod events;
pub mod notification;
pub mod screening;
pub mod subscriptions;
pub mod tokens;
pub(crate) mod vocabulary;
