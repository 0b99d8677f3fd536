//! The `messages` function: the Teams bot's messaging endpoint, `POST /api/messages`
//! (`functions/messages/function.json`, forwarded by the host like the other HTTP functions).
//! Thin: reads the `Authorization` header and the body (within `MAX_BODY_BYTES` and
//! `BODY_READ_TIMEOUT_S`) and maps the
//! [`MessagesPath`]'s answer to what the Bot Connector expects.

use std::sync::Arc;

use bytes::Bytes;
use warp::http::{StatusCode, header};
use warp::{Filter, Rejection, Reply};

use super::routes::{BodyError, body_error, body_limited};
use crate::meetings::{Answer, MessagesError, MessagesPath};

/// `POST /api/messages`.
pub fn route(
    path: Option<Arc<MessagesPath>>,
    max_body_bytes: u64,
    body_read_timeout: std::time::Duration,
) -> impl Filter<Extract = (warp::reply::Response,), Error = Rejection> + Clone {
    warp::path!("api" / "messages")
        .and(warp::post())
        .and(warp::header::optional::<String>("authorization"))
        .and(body_limited(max_body_bytes, body_read_timeout))
        .then(
            move |authorization: Option<String>, body: Result<Bytes, BodyError>| {
                let path = path.clone();
                async move { answer(path, authorization, body).await }
            },
        )
}

async fn answer(
    path: Option<Arc<MessagesPath>>,
    authorization: Option<String>,
    body: Result<Bytes, BodyError>,
) -> warp::reply::Response {
    let body = match body {
        Ok(b) => b,
        Err(e) => return body_error(e),
    };
    let Some(path) = path else {
        tracing::warn!("bot activity refused: BOT_APP_ID is not set, so no token can be checked");
        return unauthorized();
    };
    match path.receive(authorization.as_deref(), &body).await {
        Ok(Answer::Stored { .. } | Answer::Ignored) => StatusCode::OK.into_response(),
        Ok(Answer::Invoke) => warp::reply::with_header(
            warp::reply::with_status("{}", StatusCode::OK),
            header::CONTENT_TYPE,
            "application/json",
        )
        .into_response(),
        // The reason is in the log; the caller learns nothing from the answer.
        Ok(Answer::Rejected(_)) => unauthorized(),
        Err(MessagesError::BadRequest(e)) => {
            tracing::warn!(reason = %e, "bot activity body is not an activity");
            warp::reply::with_status(e.to_string(), StatusCode::BAD_REQUEST).into_response()
        }
        Err(MessagesError::Unavailable(e)) => {
            tracing::error!(reason = %e, "archive unavailable: answering 503 so the Bot Connector retries");
            warp::reply::with_status(
                "archive unavailable, retry later",
                StatusCode::SERVICE_UNAVAILABLE,
            )
            .into_response()
        }
    }
}

fn unauthorized() -> warp::reply::Response {
    warp::reply::with_header(
        warp::reply::with_status("unauthorized", StatusCode::UNAUTHORIZED),
        header::WWW_AUTHENTICATE,
        "Bearer",
    )
    .into_response()
}
