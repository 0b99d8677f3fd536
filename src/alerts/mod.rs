//! Emergency-call alerts: an `emergencyCallEvent` reaches the security desk in seconds, at least
//! once and never twice.
//!
//! - [`routes`]: the configured routes (Teams Workflows webhooks, signed webhooks, the bot).
//! - [`bot`]: the bot route's poster (proactive messages through the bot's connector client).
//! - [`card`]: the Adaptive Card 1.4 for an emergency call; [`message`]: each route's body.
//! - [`signing`]: the generic webhook's HMAC-SHA256 signature (timestamp + body).
//! - [`outbox`]: the durable records under `alerts/`, written with the event before the 202.
//! - [`send`]: one HTTP call per attempt, bounded in time, no URL in any error.
//! - [`delivery`]: sending right after the answer, retries with backoff (the alert timer),
//!   expiry after `ALERT_RETRY_HOURS`.
//! - [`status`]: `handler alerts`; [`alert_test`]: `handler alert-test`.

pub(crate) mod bot;
pub(crate) mod card;
pub(crate) mod delivery;
pub(crate) mod message;
pub mod outbox;
pub(crate) mod routes;
pub(crate) mod send;
pub mod signing;
pub mod status;

use card::CardKind;
use message::Message;
use send::{Answer, SendError};

/// Sends a test card to every route (nothing is recorded): what each answered.
pub(crate) async fn alert_test(
    dispatcher: &delivery::Dispatcher,
) -> Vec<(routes::Route, Result<Answer, SendError>)> {
    let now = time::OffsetDateTime::now_utc()
        .format(&time::format_description::well_known::Rfc3339)
        .expect("the current time formats as RFC 3339");
    let message = Message {
        alert_id: format!("test-{now}"),
        kind: CardKind::Test,
        follows_up: None,
        record: message::test_record(&now),
        archive_location: dispatcher.archive().location(),
        replaces: None,
    };
    let sends = dispatcher.routes().iter().map(|route| {
        let message = &message;
        async move {
            let answer = send::send(dispatcher.http(), dispatcher.bot(), route, message).await;
            (route.clone(), answer)
        }
    });
    futures::future::join_all(sends).await
}
