//! The Azure Functions host adapters: everything that knows how the host calls the handler.
//!
//! - [`routes`]: the HTTP surface (forwarded requests on `/api/...`, readiness on `GET /`, the
//!   timer invocations), thin handlers mapping outcomes to statuses;
//! - [`invocation`]: the custom-handler contract for non-HTTP triggers (`{"Data","Metadata"}` in,
//!   `{"Outputs","Logs","ReturnValue"}` out);
//! - [`messages`]: the Teams bot's messaging endpoint (`POST /api/messages`);
//! - [`timer`]: the `renew` timer function on top of the renewer;
//! - [`connections`]: serving connections: header read timeout, connection cap, bounded drain;
//! - [`eventhub`]: the `eventhub` function (eventHubTrigger): decode, receive, spool, answer;
//! - [`replay`]: the `replay` timer: the Event Hubs spool, then quarantine and raw items.
//! - [`alert_timer`]: the `alerts` timer function on top of alert delivery.

pub(crate) mod alert_timer;
pub(crate) mod connections;
pub(crate) mod eventhub;
pub(crate) mod invocation;
pub(crate) mod messages;
pub(crate) mod replay;
pub mod routes;
pub(crate) mod timer;
