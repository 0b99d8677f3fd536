//! Failed Graph calls: what Graph answered, or why no answer came.

use std::sync::Arc;

use reqwest::StatusCode;
use serde::Deserialize;

use super::resource::truncate;

/// A failed Graph call, with what the caller can act on.
#[derive(Debug, Clone, thiserror::Error)]
pub enum GraphError {
    /// Graph answered with an error: its status, `error.code` and `error.message`.
    #[error("Graph answered {status} {code}: {message}")]
    Api {
        status: u16,
        code: String,
        message: String,
        /// Graph's `request-id`, for support cases.
        request_id: Option<String>,
    },
    /// No token for the Graph scope.
    #[error("no token for {scope}: {reason}")]
    Token {
        scope: String,
        reason: String,
        #[source]
        source: Arc<azure_core::Error>,
    },
    /// The request did not get an answer (connection, timeout). Neither the message nor the
    /// source shows the request's URL ([`GraphError::transport`]).
    #[error("Graph unreachable: {message}")]
    Transport {
        message: String,
        #[source]
        source: Arc<reqwest::Error>,
    },
    /// An answer that is not what the API documents.
    #[error("unexpected answer from Graph: {message}")]
    Decode {
        message: String,
        /// The JSON error, when the answer did not parse.
        #[source]
        source: Option<Arc<serde_json::Error>>,
    },
    /// A `@odata.nextLink` pointing away from `GRAPH_ENDPOINT` (a token must not follow it).
    #[error("refusing to follow @odata.nextLink outside {endpoint}")]
    ForeignLink { endpoint: String },
}

impl GraphError {
    /// A transport error, kept as the source with its URL removed (query strings may hold keys).
    pub(super) fn transport(e: reqwest::Error) -> Self {
        GraphError::Transport {
            message: without_url(&e),
            source: Arc::new(e.without_url()),
        }
    }

    /// An answer we cannot read: `what` and, when there is one, the JSON error behind it.
    pub(super) fn decode(what: impl Into<String>, source: Option<serde_json::Error>) -> Self {
        GraphError::Decode {
            message: what.into(),
            source: source.map(Arc::new),
        }
    }

    pub fn status(&self) -> Option<u16> {
        match self {
            GraphError::Api { status, .. } => Some(*status),
            _ => None,
        }
    }

    /// Graph's `error.code`.
    pub fn code(&self) -> Option<&str> {
        match self {
            GraphError::Api { code, .. } => Some(code),
            _ => None,
        }
    }

    pub fn is_not_found(&self) -> bool {
        self.status() == Some(404)
    }

    pub fn is_conflict(&self) -> bool {
        self.status() == Some(409)
    }

    /// Whether trying again later may succeed (throttling, outages, no answer).
    pub fn is_transient(&self) -> bool {
        match self {
            GraphError::Api { status, .. } => *status == 429 || *status >= 500,
            GraphError::Transport { .. } => true,
            _ => false,
        }
    }
}

/// Graph's `{"error": {"code", "message"}}`, or the status when the body is not that.
pub(super) fn api_error(status: StatusCode, body: &[u8], request_id: Option<String>) -> GraphError {
    #[derive(Deserialize)]
    struct Envelope {
        error: Inner,
    }
    #[derive(Deserialize)]
    struct Inner {
        #[serde(default)]
        code: String,
        #[serde(default)]
        message: String,
    }
    let (code, message) = match serde_json::from_slice::<Envelope>(body) {
        Ok(e) => (e.error.code, e.error.message),
        Err(_) => (
            status
                .canonical_reason()
                .unwrap_or("error")
                .replace(' ', ""),
            truncate(String::from_utf8_lossy(body).trim(), 200),
        ),
    };
    GraphError::Api {
        status: status.as_u16(),
        code,
        message,
        request_id,
    }
}

/// A transport error's text without the query string of the URL (there is none with secrets
/// today; this keeps it that way).
pub(super) fn without_url(e: &reqwest::Error) -> String {
    let mut s = e.to_string();
    if let Some(url) = e.url()
        && let Some(q) = url.query()
    {
        s = s.replace(q, "…");
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn graph_errors_keep_code_and_message() {
        let e = api_error(
            StatusCode::FORBIDDEN,
            br#"{"error":{"code":"ExtensionError","message":"Operation: Create; Exception: [Status Code: Forbidden]","innerError":{"request-id":"r"}}}"#,
            Some("r".into()),
        );
        assert_eq!(e.code(), Some("ExtensionError"));
        assert!(
            e.to_string()
                .contains("403 ExtensionError: Operation: Create")
        );
        assert!(!e.is_transient());
        let e = api_error(StatusCode::SERVICE_UNAVAILABLE, b"<html>busy</html>", None);
        assert_eq!(e.code(), Some("ServiceUnavailable"));
        assert!(e.is_transient());
    }
}
