//! One HTTP call per route and attempt, on the shared client, with a deadline. Errors and answers
//! are reduced to text that names no URL (reqwest's errors carry the URL: it is removed).

use std::time::Duration;

use secrecy::ExposeSecret;
use serde_json::Value;

use super::message::Message;
use super::routes::{Route, Target};
use super::signing;
use crate::config::BotConversation;

/// The whole send (token and post for the bot) must finish within this, or it counts as failed.
pub const SEND_DEADLINE: Duration = Duration::from_secs(10);
/// An attempt without a result is presumed dead after this (its sender crashed mid-send).
pub const ATTEMPT_LEASE: Duration = Duration::from_secs(15);
/// How much of a route's answer is kept (operators see it; receivers may echo anything).
const EXCERPT_CHARS: usize = 200;

/// A route's 2xx answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Answer {
    pub status: u16,
    pub excerpt: String,
    /// The bot route only: the id of the message the Bot Connector created or replaced (its
    /// `ResourceResponse`), kept in the delivery record so the call's follow-up can replace it.
    pub activity_id: Option<String>,
}

/// Why a send failed (every variant is retried).
#[derive(Debug, thiserror::Error)]
pub enum SendError {
    #[error("no answer within {} s", SEND_DEADLINE.as_secs())]
    Timeout,
    /// No answer: `message` is the whole cause chain (one line for the outbox and the log),
    /// `source` the error (reqwest's, or the Bot Connector client's); neither shows the URL (a
    /// webhook URL is a secret).
    #[error("transport: {message}")]
    Transport {
        message: String,
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    #[error("answered {status}: {excerpt}")]
    Status { status: u16, excerpt: String },
    #[error("the bot route is configured but the bot is not (BOT_APP_ID, BOT_CLIENT_SECRET)")]
    NoBot,
    /// No token for the Bot Connector: `message` is the cause chain, `source` the SDK's error.
    #[error("bot token: {message}")]
    BotToken {
        message: String,
        #[source]
        source: azure_core::Error,
    },
    #[error("bot: {0}")]
    Bot(String),
}

impl SendError {
    pub fn status(&self) -> Option<u16> {
        match self {
            SendError::Status { status, .. } => Some(*status),
            _ => None,
        }
    }

    /// From a reqwest error: its cause chain, without the URL.
    pub fn transport(e: reqwest::Error) -> Self {
        if e.is_timeout() {
            return SendError::Timeout;
        }
        Self::transport_from(e.without_url())
    }

    /// From an error whose text and sources show no URL: its cause chain, and the error.
    pub fn transport_from(e: impl std::error::Error + Send + Sync + 'static) -> Self {
        SendError::Transport {
            message: cause_chain(&e),
            source: Box::new(e),
        }
    }
}

/// `outer: inner: innermost`, for an error whose Display shows one level.
pub fn cause_chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut next = e.source();
    while let Some(cause) = next {
        out.push_str(": ");
        out.push_str(&cause.to_string());
        next = cause.source();
    }
    out
}

/// What posts a proactive message as the Teams bot (the Bot Connector client, [`super::bot`]).
#[async_trait::async_trait]
pub trait BotPoster: Send + Sync {
    /// `POST {serviceUrl}/v3/conversations/{conversationId}/activities` with the bot's token; with
    /// `replaces`, `PUT …/activities/{replaces}` instead (the bot's earlier message is replaced).
    /// A 2xx answer names the message's activity id.
    async fn send_activity(
        &self,
        conversation: &BotConversation,
        activity: &Value,
        replaces: Option<&str>,
    ) -> Result<Answer, SendError>;
}

/// Sends `message` to `route`.
pub async fn send(
    http: &reqwest::Client,
    bot: Option<&dyn BotPoster>,
    route: &Route,
    message: &Message,
) -> Result<Answer, SendError> {
    let call = async {
        match &route.target {
            Target::Teams(url) => {
                let request = http.post(url.expose().clone()).json(&message.workflows());
                answer(request).await
            }
            Target::Webhook { url, secret } => {
                let body = serde_json::to_vec(&message.webhook()).expect("JSON serializes");
                let timestamp = time::OffsetDateTime::now_utc().unix_timestamp();
                let signature = signing::sign(secret.expose_secret().as_bytes(), timestamp, &body);
                let request = http
                    .post(url.expose().clone())
                    .header(reqwest::header::CONTENT_TYPE, "application/json")
                    .header(signing::TIMESTAMP_HEADER, timestamp.to_string())
                    .header(signing::SIGNATURE_HEADER, signature)
                    .header(signing::ID_HEADER, &message.alert_id)
                    .body(body);
                answer(request).await
            }
            Target::Bot(conversation) => match bot {
                Some(bot) => {
                    let replaces = message.replaces.as_deref();
                    bot.send_activity(conversation, &message.activity(), replaces)
                        .await
                }
                None => Err(SendError::NoBot),
            },
        }
    };
    tokio::time::timeout(SEND_DEADLINE, call)
        .await
        .unwrap_or(Err(SendError::Timeout))
}

/// Sends `request` (with the deadline as its own timeout) and reads a bounded answer.
pub async fn answer(request: reqwest::RequestBuilder) -> Result<Answer, SendError> {
    let response = request
        .timeout(SEND_DEADLINE)
        .send()
        .await
        .map_err(SendError::transport)?;
    let status = response.status().as_u16();
    let excerpt = excerpt(response).await;
    if (200..300).contains(&status) {
        Ok(Answer {
            status,
            excerpt,
            activity_id: None,
        })
    } else {
        Err(SendError::Status { status, excerpt })
    }
}

/// The start of a body, escaped for one log line; reading stops after a few KiB.
async fn excerpt(mut response: reqwest::Response) -> String {
    let mut bytes = Vec::new();
    while bytes.len() < 4096 {
        match response.chunk().await {
            Ok(Some(chunk)) => bytes.extend_from_slice(&chunk),
            _ => break,
        }
    }
    let text = String::from_utf8_lossy(&bytes);
    text.chars()
        .take(EXCERPT_CHARS)
        .flat_map(char::escape_debug)
        .collect()
}
