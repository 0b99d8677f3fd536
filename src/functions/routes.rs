//! The custom handler's HTTP surface, as the Functions host calls it.
//!
//! With `enableForwardingHttpRequest`, the host forwards Graph's requests unchanged to the same
//! path (`/api/notifications`, `/api/lifecycle`); the timer arrives as an invocation
//! `POST /renew`; the host polls `GET /` until the handler answers. Handlers here are thin: they
//! read the request and map the [`Receiver`]'s outcome to a status.

use std::convert::Infallible;
use std::future::Future;
use std::sync::Arc;
use std::time::Instant;

use bytes::{Bytes, BytesMut};
use futures::StreamExt;
use warp::http::{StatusCode, header};
use warp::{Buf, Filter, Rejection, Reply};

use super::eventhub::EventHubFunction;
use super::replay::ReplayTimer;
use crate::alerts::delivery::Dispatcher;
use crate::logging::escape;
use crate::receiver::{Endpoint, ReceiveError, Receiver, log_accepted};
use crate::renewer::Renewer;

/// Shared state of the server.
#[derive(Clone)]
pub struct AppState {
    pub receiver: Arc<Receiver>,
    /// `MAX_BODY_BYTES`.
    pub max_body_bytes: u64,
    /// `MAX_ITEMS_PER_REQUEST`, `BODY_READ_TIMEOUT_S`, `SHUTDOWN_DRAIN_S`.
    pub limits: crate::config::Limits,
    /// Lifecycle reactions and the renew timer (absent when `SUBSCRIPTIONS_FILE` is not set).
    pub renewer: Option<Arc<Renewer>>,
    /// The `eventhub` function (Graph's Event Hubs delivery).
    pub eventhub: Option<Arc<EventHubFunction>>,
    /// The `replay` timer (spool, quarantine and raw items).
    pub replay: Option<Arc<ReplayTimer>>,
    /// `EVENTHUB_MAX_INVOCATION_BYTES`.
    pub max_invocation_bytes: u64,
    /// Alert delivery (absent when no alert route is configured).
    pub alerts: Option<Arc<Dispatcher>>,
    /// The Teams bot's messaging endpoint (absent when `BOT_APP_ID` is not set: all refused).
    pub messages: Option<Arc<crate::meetings::MessagesPath>>,
}

/// Serves until `shutdown` resolves, then drains in-flight requests for at most
/// `SHUTDOWN_DRAIN_S` (header read timeout and connection cap: [`super::connections`]).
pub async fn run(
    listener: tokio::net::TcpListener,
    state: AppState,
    shutdown: impl Future<Output = ()> + Send + 'static,
) {
    let options = super::connections::ServeOptions::new(state.limits.shutdown_drain);
    super::connections::serve(listener, warp::service(routes(state)), options, shutdown).await;
}

/// Every path that takes a POST (others answer 405 with `Allow: POST` to other methods).
const POST_PATHS: [&str; 7] = [
    "/api/notifications",
    "/api/lifecycle",
    "/api/messages",
    "/renew",
    "/eventhub",
    "/replay",
    "/alerts",
];

/// `POST /{path}`: the body, read up to `limit` bytes within the read deadline, goes to `handle`.
fn post_route<F, Fut>(
    path: &'static str,
    limit: u64,
    state: AppState,
    handle: F,
) -> impl Filter<Extract = (warp::reply::Response,), Error = Rejection> + Clone
where
    F: Fn(AppState, Result<Bytes, BodyError>) -> Fut + Clone + Send + Sync + 'static,
    Fut: Future<Output = warp::reply::Response> + Send,
{
    warp::path(path)
        .and(warp::path::end())
        .and(warp::post())
        .and(body_limited(limit, state.limits.body_read_timeout))
        .and_then(move |body: Result<Bytes, BodyError>| {
            let (state, handle) = (state.clone(), handle.clone());
            async move { Ok::<_, Rejection>(handle(state, body).await) }
        })
}

/// Every route, with rejections mapped to a status and a short reason.
pub fn routes(state: AppState) -> impl Filter<Extract = (impl Reply,), Error = Infallible> + Clone {
    let ready = warp::path::end()
        .and(warp::get().or(warp::head()).unify())
        .map(|| "ready");

    let notifications = endpoint("notifications", Endpoint::Notifications, state.clone());
    let lifecycle = endpoint("lifecycle", Endpoint::Lifecycle, state.clone());

    let renew = post_route("renew", state.max_body_bytes, state.clone(), renew);
    let eventhub = post_route(
        "eventhub",
        state.max_invocation_bytes,
        state.clone(),
        eventhub_invocation,
    );
    let replay = post_route("replay", state.max_body_bytes, state.clone(), replay_timer);
    let alert_timer = post_route("alerts", state.max_body_bytes, state.clone(), alert_timer);
    let messages = super::messages::route(
        state.messages.clone(),
        state.max_body_bytes,
        state.limits.body_read_timeout,
    );

    // Known paths answer 405 to other methods, with `Allow`.
    let known = warp::path::full()
        .and_then(|path: warp::path::FullPath| async move {
            if POST_PATHS.contains(&path.as_str()) {
                Ok(())
            } else {
                Err(warp::reject::not_found())
            }
        })
        .untuple_one()
        .map(|| {
            warp::reply::with_header(
                warp::reply::with_status("method not allowed", StatusCode::METHOD_NOT_ALLOWED),
                header::ALLOW,
                "POST",
            )
        });

    ready
        .map(Reply::into_response)
        .or(notifications.map(Reply::into_response))
        .unify()
        .or(lifecycle.map(Reply::into_response))
        .unify()
        .or(renew.map(Reply::into_response))
        .unify()
        .or(eventhub.map(Reply::into_response))
        .unify()
        .or(replay.map(Reply::into_response))
        .unify()
        .or(alert_timer.map(Reply::into_response))
        .unify()
        .or(messages)
        .unify()
        .or(known.map(Reply::into_response))
        .unify()
        .recover(recover)
}

fn endpoint(
    name: &'static str,
    which: Endpoint,
    state: AppState,
) -> impl Filter<Extract = (warp::reply::Response,), Error = Rejection> + Clone {
    warp::path("api")
        .and(warp::path(name))
        .and(warp::path::end())
        .and(warp::post())
        .and(warp::query::raw().or(warp::any().map(String::new)).unify())
        .and(warp::header::optional::<u64>("content-length"))
        .and(warp::body::stream())
        .and_then(move |query: String, length: Option<u64>, body| {
            let state = state.clone();
            async move { Ok::<_, Rejection>(notify(state, which, query, length, body).await) }
        })
}

/// The notification and lifecycle URLs: the validation handshake, or a batch.
async fn notify<S, B>(
    state: AppState,
    which: Endpoint,
    query: String,
    length: Option<u64>,
    body: S,
) -> warp::reply::Response
where
    S: futures::Stream<Item = Result<B, warp::Error>> + Unpin + Send,
    B: Buf,
{
    // Graph's handshake: echo the URL-decoded token as text/plain, whatever the body, at once.
    if let Some(token) = validation_token(&query) {
        tracing::info!(endpoint = ?which, "validation handshake answered");
        // The token is echoed as sent (Graph requires it); nosniff keeps a browser from
        // reading it as anything but text.
        let reply =
            warp::reply::with_header(token, header::CONTENT_TYPE, "text/plain; charset=utf-8");
        return warp::reply::with_header(reply, header::X_CONTENT_TYPE_OPTIONS, "nosniff")
            .into_response();
    }
    let deadline = state.limits.body_read_timeout;
    let body = match read_limited(length, body, state.max_body_bytes, deadline).await {
        Ok(b) => b,
        Err(e) => return body_error(e),
    };
    let started = Instant::now();
    match state.receiver.receive(which, body).await {
        Ok(receipt) => {
            let elapsed_ms = started.elapsed().as_millis() as u64;
            log_accepted(&format!("{which:?}"), &receipt, None, elapsed_ms);
            if !receipt.lifecycle_items.is_empty()
                && let Some(renewer) = &state.renewer
            {
                renewer.react(&receipt.lifecycle_items);
            }
            if let Some(alerts) = &state.alerts {
                alerts.spawn_new(receipt.alerts);
            }
            // Graph's advice: the same answer whether or not validation passed.
            StatusCode::ACCEPTED.into_response()
        }
        Err(ReceiveError::BadRequest(e)) => {
            let reason = e.to_string();
            tracing::warn!(endpoint = ?which, reason = %escape(&reason), "bad notification body");
            warp::reply::with_status(reason, StatusCode::BAD_REQUEST).into_response()
        }
        Err(ReceiveError::TooMany(e)) => {
            tracing::warn!(endpoint = ?which, reason = %e, "request refused: MAX_ITEMS_PER_REQUEST");
            warp::reply::with_status(e.to_string(), StatusCode::PAYLOAD_TOO_LARGE).into_response()
        }
        Err(ReceiveError::Unavailable(e)) => {
            tracing::error!(endpoint = ?which, reason = %e, "archive unavailable: answering 503 so Graph retries");
            warp::reply::with_status(
                "archive unavailable, retry later",
                StatusCode::SERVICE_UNAVAILABLE,
            )
            .into_response()
        }
    }
}

async fn renew(state: AppState, body: Result<Bytes, BodyError>) -> warp::reply::Response {
    let body = match body {
        Ok(b) => b,
        Err(e) => return body_error(e),
    };
    let Some(renewer) = &state.renewer else {
        let reply = serde_json::json!({
            "Outputs": {},
            "Logs": ["renew: Graph access is not configured (GRAPH_TENANT_ID, GRAPH_CLIENT_ID, SUBSCRIPTIONS_FILE); nothing to do"],
            "ReturnValue": {"skipped": true}
        });
        return warp::reply::json(&reply).into_response();
    };
    let outcome = super::timer::renew(renewer, &body).await;
    let status =
        StatusCode::from_u16(outcome.status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    warp::reply::with_status(warp::reply::json(&outcome.response), status).into_response()
}

/// An invocation answer: always the host's JSON shape.
fn invocation_reply(status: u16, body: &serde_json::Value) -> warp::reply::Response {
    let status = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    warp::reply::with_status(warp::reply::json(body), status).into_response()
}

/// A JSON invocation answer for a body that could not be read (too large, broken stream).
fn invocation_body_error(function: &str, e: &BodyError) -> warp::reply::Response {
    let (code, reason) = match e {
        BodyError::TooLarge(limit) => (
            "tooLarge",
            format!("invocation body larger than {limit} bytes"),
        ),
        BodyError::Read(_) => (
            "unreadable",
            "invocation body could not be read".to_string(),
        ),
        BodyError::Timeout(after) => (
            "timeout",
            format!("invocation body not received within {} s", after.as_secs()),
        ),
    };
    tracing::error!(function, code, %reason, "invocation rejected");
    invocation_reply(
        500,
        &serde_json::json!({"Outputs": {}, "Logs": [format!("{function}: {reason}")], "ReturnValue": {"error": code}}),
    )
}

/// `POST /eventhub`: an eventHubTrigger invocation.
async fn eventhub_invocation(
    state: AppState,
    body: Result<Bytes, BodyError>,
) -> warp::reply::Response {
    let body = match body {
        Ok(b) => b,
        Err(e) => return invocation_body_error("eventhub", &e),
    };
    let Some(function) = &state.eventhub else {
        return invocation_reply(
            500,
            &serde_json::json!({"Outputs": {}, "Logs": ["eventhub: not configured in this process"], "ReturnValue": {"error": "notConfigured"}}),
        );
    };
    let answer = function.invoke(&body).await;
    if let Some(receipt) = answer.receipt {
        if !receipt.lifecycle_items.is_empty()
            && let Some(renewer) = &state.renewer
        {
            renewer.react(&receipt.lifecycle_items);
        }
        // The alerts this invocation created, sent as it answers (a redelivery creates none).
        if !receipt.alerts.is_empty()
            && let Some(alerts) = &state.alerts
        {
            alerts.spawn_new(receipt.alerts);
        }
    }
    invocation_reply(answer.status, &answer.body)
}

/// `POST /replay`: the replay timer.
async fn replay_timer(state: AppState, body: Result<Bytes, BodyError>) -> warp::reply::Response {
    let body = match body {
        Ok(b) => b,
        Err(e) => return invocation_body_error("replay", &e),
    };
    let Some(timer) = &state.replay else {
        return invocation_reply(
            200,
            &serde_json::json!({"Outputs": {}, "Logs": ["replay: not configured in this process"], "ReturnValue": {"skipped": true}}),
        );
    };
    let (status, reply) = timer.run(&body).await;
    invocation_reply(status, &reply)
}

/// The alert timer's invocation `POST /alerts`: retries what is pending, expires what is too old.
async fn alert_timer(state: AppState, body: Result<Bytes, BodyError>) -> warp::reply::Response {
    let body = match body {
        Ok(b) => b,
        Err(e) => return body_error(e),
    };
    let (status, reply) = match &state.alerts {
        None => (
            StatusCode::OK,
            super::invocation::InvocationResponse {
                logs: vec!["alerts: no alert route is configured (ALERT_TEAMS_WEBHOOK_URLS, ALERT_WEBHOOK_URLS, ALERT_BOT_CONVERSATION); nothing to do".into()],
                return_value: serde_json::json!({"skipped": true}),
                ..Default::default()
            },
        ),
        Some(dispatcher) => {
            let outcome = super::alert_timer::invoke(dispatcher, &body).await;
            let status = StatusCode::from_u16(outcome.status())
                .unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
            (status, outcome.response)
        }
    };
    warp::reply::with_status(warp::reply::json(&reply.to_json()), status).into_response()
}

/// The `validationToken` query parameter, form-decoded (`+` is a space, as Graph encodes it).
pub fn validation_token(query: &str) -> Option<String> {
    url::form_urlencoded::parse(query.as_bytes())
        .find(|(k, _)| k == "validationToken")
        .map(|(_, v)| v.into_owned())
}

#[derive(Debug)]
pub(super) enum BodyError {
    TooLarge(u64),
    Read(String),
    /// Not received within `BODY_READ_TIMEOUT_S`.
    Timeout(std::time::Duration),
}

pub(super) fn body_error(e: BodyError) -> warp::reply::Response {
    match e {
        BodyError::TooLarge(limit) => {
            tracing::warn!(limit, "notification body over MAX_BODY_BYTES");
            warp::reply::with_status(
                format!("body larger than {limit} bytes"),
                StatusCode::PAYLOAD_TOO_LARGE,
            )
            .into_response()
        }
        BodyError::Timeout(deadline) => {
            tracing::warn!(
                deadline_s = deadline.as_secs(),
                "request body not received within BODY_READ_TIMEOUT_S"
            );
            let reply = warp::reply::with_status(
                format!("body not received within {} s", deadline.as_secs()),
                StatusCode::REQUEST_TIMEOUT,
            );
            warp::reply::with_header(reply, header::CONNECTION, "close").into_response()
        }
        BodyError::Read(reason) => {
            tracing::warn!(reason = %escape(&reason), "could not read the request body");
            warp::reply::with_status("could not read the body", StatusCode::BAD_REQUEST)
                .into_response()
        }
    }
}

/// Reads a body of at most `limit` bytes within `deadline`, whether or not it declares its
/// length.
async fn read_limited<S, B>(
    length: Option<u64>,
    body: S,
    limit: u64,
    deadline: std::time::Duration,
) -> Result<Bytes, BodyError>
where
    S: futures::Stream<Item = Result<B, warp::Error>> + Unpin + Send,
    B: Buf,
{
    tokio::time::timeout(deadline, read_all(length, body, limit))
        .await
        .map_err(|_| BodyError::Timeout(deadline))?
}

async fn read_all<S, B>(length: Option<u64>, mut body: S, limit: u64) -> Result<Bytes, BodyError>
where
    S: futures::Stream<Item = Result<B, warp::Error>> + Unpin + Send,
    B: Buf,
{
    if length.is_some_and(|n| n > limit) {
        return Err(BodyError::TooLarge(limit));
    }
    let mut buf = BytesMut::with_capacity(length.unwrap_or(0).min(limit) as usize);
    while let Some(chunk) = body.next().await {
        let mut chunk = chunk.map_err(|e| BodyError::Read(e.to_string()))?;
        if (buf.len() + chunk.remaining()) as u64 > limit {
            return Err(BodyError::TooLarge(limit));
        }
        while chunk.has_remaining() {
            let part = chunk.chunk();
            let n = part.len();
            buf.extend_from_slice(part);
            chunk.advance(n);
        }
    }
    Ok(buf.freeze())
}

pub(super) fn body_limited(
    limit: u64,
    deadline: std::time::Duration,
) -> impl Filter<Extract = (Result<Bytes, BodyError>,), Error = Rejection> + Clone {
    warp::header::optional::<u64>("content-length")
        .and(warp::body::stream())
        .then(move |length, body| read_limited(length, body, limit, deadline))
}

async fn recover(err: Rejection) -> Result<warp::reply::Response, Infallible> {
    let (status, reason) = if err.is_not_found() {
        (StatusCode::NOT_FOUND, "not found")
    } else if err.find::<warp::reject::MethodNotAllowed>().is_some() {
        (StatusCode::METHOD_NOT_ALLOWED, "method not allowed")
    } else if err.find::<warp::reject::InvalidHeader>().is_some() {
        (StatusCode::BAD_REQUEST, "invalid header")
    } else {
        (StatusCode::BAD_REQUEST, "bad request")
    };
    tracing::debug!(?err, "request rejected");
    Ok(warp::reply::with_status(reason, status).into_response())
}

#[cfg(test)]
mod tests {
    use super::validation_token;

    #[test]
    fn tokens_are_form_decoded() {
        assert_eq!(
            validation_token("validationToken=Validation%3a+Testing+client+application+reachability+for+subscription+Request-Id%3a+b9a3e4e1").as_deref(),
            Some("Validation: Testing client application reachability for subscription Request-Id: b9a3e4e1")
        );
        assert_eq!(
            validation_token("code=abc&validationToken=a%2Bb%20c").as_deref(),
            Some("a+b c")
        );
        assert_eq!(validation_token("code=abc"), None);
        assert_eq!(validation_token("validationToken=").as_deref(), Some(""));
    }
}
