//! The bot route (`ALERT_BOT_CONVERSATION`): the alert's Adaptive Card as a proactive message
//! from the Teams bot, through the bot's own Bot Connector client ([`ConnectorClient`]) and so
//! with the bot's token (its client secret or managed identity, as for the Bot APIs).
//!
//! The alarm is `POST …/v3/conversations/{id}/activities`; the Bot Connector answers the new
//! message's activity id, which the delivery record keeps. A later state of the call (the
//! follow-up) replaces that message's card: `PUT …/activities/{activityId}`
//! (ARCHITECTURE.md, "Emergency alerts", says why). A replacement the connector no longer knows
//! (404: someone deleted the alarm's message) is posted as a new message instead.
//!
//! The service URL is checked at start-up ([`poster`]): the bot's token only ever goes to a
//! Bot Connector host the bot's allow-list names. Neither the URL's query nor a token is ever
//! in an error or a log line.

use std::sync::Arc;

use serde_json::Value;

use super::send::{Answer, BotPoster, SendError, cause_chain};
use crate::bot::client::{BotApiError, ConnectorClient, ResourceResponse};
use crate::config::BotConversation;

/// Longest activity id kept (Teams' are 13-digit timestamps; anything odd is not stored).
const MAX_ACTIVITY_ID_CHARS: usize = 256;

/// Why the bot route cannot be built (a start-up error of `ALERT_BOT_CONVERSATION`).
#[derive(Debug, thiserror::Error)]
pub enum BotRouteError {
    #[error(
        "the bot route posts as the Teams bot, which is not configured: set BOT_APP_ID (with BOT_TENANT_ID and BOT_CLIENT_SECRET, or the managed identity whose client id is BOT_APP_ID)"
    )]
    NoBot,
    #[error(
        "service URL {0} is not a Bot Connector host the bot may call (https on *.botframework.com, smba.trafficmanager.net or a government cloud's connector, no port, query or fragment; BOT_SERVICE_URL_HOSTS replaces the list): use the serviceUrl of an activity from the conversation"
    )]
    NotBotConnector(String),
}

/// The bot route's poster for `conversation`, when the bot is configured and the conversation's
/// service URL is one its token may go to.
pub fn poster(
    conversation: &BotConversation,
    connector: Option<ConnectorClient>,
) -> Result<Arc<dyn BotPoster>, BotRouteError> {
    let connector = connector.ok_or(BotRouteError::NoBot)?;
    if connector
        .policy()
        .check(conversation.service_url.expose().as_str())
        .is_none()
    {
        return Err(BotRouteError::NotBotConnector(
            conversation.service_url.redacted(),
        ));
    }
    Ok(Arc::new(ConnectorPoster { connector }))
}

/// Posts (and replaces) the alert's message through the bot's connector client.
struct ConnectorPoster {
    connector: ConnectorClient,
}

#[async_trait::async_trait]
impl BotPoster for ConnectorPoster {
    async fn send_activity(
        &self,
        conversation: &BotConversation,
        activity: &Value,
        replaces: Option<&str>,
    ) -> Result<Answer, SendError> {
        let service_url = conversation.service_url.expose().as_str();
        let id = &conversation.conversation_id;
        let (verb, answer) = match replaces {
            Some(activity_id) => {
                let updated = self
                    .connector
                    .update_activity(service_url, id, activity_id, activity)
                    .await;
                match updated {
                    // The alarm's message is gone: the follow-up is a message of its own.
                    Err(e) if e.status() == Some(404) => {
                        let mut fresh = activity.clone();
                        if let Some(fields) = fresh.as_object_mut() {
                            fields.remove("id");
                        }
                        let posted = self.connector.send_to_conversation(service_url, id, &fresh);
                        ("posted (the replaced message is gone)", posted.await)
                    }
                    other => ("replaced", other),
                }
            }
            None => (
                "posted",
                self.connector
                    .send_to_conversation(service_url, id, activity)
                    .await,
            ),
        };
        answer_of(verb, answer)
    }
}

/// The connector's answer as the outbox records it.
fn answer_of(
    verb: &str,
    answer: Result<ResourceResponse, BotApiError>,
) -> Result<Answer, SendError> {
    match answer {
        Ok(resource) => {
            let activity_id = resource.id.filter(|id| is_plain_id(id));
            let excerpt = match &activity_id {
                Some(id) => format!("{verb} activity {id}"),
                None => format!("{verb}; the answer named no activity id"),
            };
            Ok(Answer {
                status: resource.status,
                excerpt,
                activity_id,
            })
        }
        // The connector took the message (2xx) but its answer was unreadable: delivered, with
        // no id to replace later.
        Err(BotApiError::TooLarge { status, .. } | BotApiError::Json { status, .. }) => {
            Ok(Answer {
                status,
                excerpt: format!("{verb}; the answer was not a ResourceResponse"),
                activity_id: None,
            })
        }
        Err(BotApiError::Status { status, .. }) => Err(SendError::Status {
            status,
            excerpt: String::new(),
        }),
        Err(BotApiError::Token(source)) => Err(SendError::BotToken {
            message: cause_chain(&source),
            source,
        }),
        Err(e @ BotApiError::Request { .. }) => {
            let timed_out =
                matches!(&e, BotApiError::Request { source, .. } if source.is_timeout());
            if timed_out {
                Err(SendError::Timeout)
            } else {
                Err(SendError::transport_from(e))
            }
        }
        Err(BotApiError::ServiceUrlNotAllowed(_)) => Err(SendError::Bot(
            "the service URL is not a Bot Connector host the bot may call".into(),
        )),
    }
}

/// An activity id worth keeping: short, printable, no spaces.
fn is_plain_id(id: &str) -> bool {
    !id.is_empty()
        && id.chars().count() <= MAX_ACTIVITY_ID_CHARS
        && !id.chars().any(|c| c.is_control() || c.is_whitespace())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn resource(answer: Value) -> Result<ResourceResponse, BotApiError> {
        Ok(ResourceResponse::from((201, answer)))
    }

    #[test]
    fn the_connector_answer_becomes_the_recorded_activity_id() {
        let a = answer_of("posted", resource(json!({"id": "1700000000001"}))).unwrap();
        assert_eq!(a.activity_id.as_deref(), Some("1700000000001"));
        assert_eq!(a.status, 201);
        assert_eq!(a.excerpt, "posted activity 1700000000001");
        let long = "x".repeat(MAX_ACTIVITY_ID_CHARS + 1);
        for odd in [
            json!({}),
            json!({"id": ""}),
            json!({"id": "a b"}),
            json!({"id": 17}),
            json!(null),
            json!({ "id": long }),
        ] {
            let a = answer_of("posted", resource(odd)).unwrap();
            assert_eq!(a.activity_id, None);
        }
    }

    #[test]
    fn refusals_are_failures_that_name_no_url() {
        let e = answer_of(
            "posted",
            Err(BotApiError::Status {
                method: "POST",
                path: "v3/conversations/x/activities".into(),
                status: 403,
            }),
        )
        .unwrap_err();
        assert_eq!(e.status(), Some(403));
        let e = answer_of(
            "posted",
            Err(BotApiError::ServiceUrlNotAllowed(
                "https://evil.example/?q=s3cr3t".into(),
            )),
        )
        .unwrap_err();
        assert!(!e.to_string().contains("s3cr3t"), "{e}");
    }
}
