//! The HTTP client of the subscriptions API, with the retry policy for throttled answers.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

use azure_core::credentials::TokenCredential;
use percent_encoding::{AsciiSet, utf8_percent_encode};
use reqwest::{Method, StatusCode};
use serde::Deserialize;
use serde_json::Value;
use time::OffsetDateTime;

use super::error::{GraphError, api_error};
use super::model::{NewSubscription, Subscription, SubscriptionUpdate};
use super::resource::{ApiVersion, COMPONENT};

/// How throttled or unavailable answers are retried.
#[derive(Debug, Clone)]
pub struct RetryPolicy {
    /// Attempts per request, the first included.
    pub max_attempts: u32,
    /// First backoff delay; doubled per attempt, with jitter.
    pub base_delay: Duration,
    /// No single wait is longer; a `Retry-After` beyond it ends the retries.
    pub max_delay: Duration,
    /// No request keeps retrying past this (a timer invocation has a time limit).
    pub max_elapsed: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            max_attempts: 5,
            base_delay: Duration::from_secs(1),
            max_delay: Duration::from_secs(30),
            max_elapsed: Duration::from_secs(120),
        }
    }
}

impl RetryPolicy {
    /// The backoff before attempt `attempt + 1`: `base * 2^(attempt-1)`, capped, with "equal
    /// jitter" (a uniform draw in its upper half) so that instances do not retry in lockstep.
    pub fn backoff(&self, attempt: u32) -> Duration {
        let exp = self
            .base_delay
            .saturating_mul(1u32 << attempt.saturating_sub(1).min(16))
            .min(self.max_delay);
        let half = exp / 2;
        half + half.mul_f64(jitter())
    }
}

/// A uniform draw in `[0, 1)` from OpenSSL's CSPRNG (no extra dependency for one number).
fn jitter() -> f64 {
    let mut b = [0u8; 4];
    if openssl::rand::rand_bytes(&mut b).is_err() {
        return 0.5;
    }
    f64::from(u32::from_le_bytes(b)) / (f64::from(u32::MAX) + 1.0)
}

/// `Retry-After` in seconds (what Graph sends). HTTP dates are not used by Graph: ignored.
pub fn parse_retry_after(value: &str) -> Option<Duration> {
    value.trim().parse::<u64>().ok().map(Duration::from_secs)
}

/// Characters escaped in a path segment (a subscription id from a notification is input).
const SEGMENT: &AsciiSet = COMPONENT;

/// The subscriptions API of one Graph endpoint, authenticated by one credential.
#[derive(Clone)]
pub struct GraphClient {
    http: reqwest::Client,
    /// `GRAPH_ENDPOINT`, without a trailing slash.
    endpoint: String,
    credential: Arc<dyn TokenCredential>,
    /// `{endpoint}/.default`: the app's Graph application permissions.
    scope: String,
    retry: RetryPolicy,
}

impl std::fmt::Debug for GraphClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GraphClient")
            .field("endpoint", &self.endpoint)
            .field("scope", &self.scope)
            .field("retry", &self.retry)
            .finish_non_exhaustive()
    }
}

struct Answer {
    status: StatusCode,
    body: bytes::Bytes,
}

/// What one attempt came to, when it does not end the call with an error.
enum Outcome {
    Answered(Answer),
    /// Throttled, unavailable or unanswered: worth another attempt, after Graph's
    /// `Retry-After` when it sent one.
    Retry {
        error: GraphError,
        retry_after: Option<Duration>,
    },
}

impl GraphClient {
    pub fn new(
        http: reqwest::Client,
        endpoint: &str,
        credential: Arc<dyn TokenCredential>,
    ) -> Self {
        let endpoint = endpoint.trim_end_matches('/').to_string();
        GraphClient {
            scope: format!("{endpoint}/.default"),
            http,
            endpoint,
            credential,
            retry: RetryPolicy::default(),
        }
    }

    pub fn with_retry(mut self, retry: RetryPolicy) -> Self {
        self.retry = retry;
        self
    }

    pub fn endpoint(&self) -> &str {
        &self.endpoint
    }

    pub fn scope(&self) -> &str {
        &self.scope
    }

    fn url(&self, version: ApiVersion, id: Option<&str>, action: Option<&str>) -> String {
        let mut url = format!("{}/{}/subscriptions", self.endpoint, version.as_str());
        if let Some(id) = id {
            url.push('/');
            url.push_str(&utf8_percent_encode(id, SEGMENT).to_string());
        }
        if let Some(action) = action {
            url.push('/');
            url.push_str(action);
        }
        url
    }

    async fn token(&self) -> Result<String, GraphError> {
        self.credential
            .get_token(&[self.scope.as_str()], None)
            .await
            .map(|t| t.token.secret().to_string())
            .map_err(|e| GraphError::Token {
                scope: self.scope.clone(),
                reason: e.to_string(),
                source: Arc::new(e),
            })
    }

    /// One call with the retry policy. `idempotent` calls are also retried when no answer came.
    async fn call(
        &self,
        method: Method,
        url: &str,
        body: Option<&Value>,
        idempotent: bool,
    ) -> Result<Answer, GraphError> {
        let started = Instant::now();
        let mut attempt = 0u32;
        loop {
            attempt += 1;
            let (error, retry_after) = match self.attempt(&method, url, body, idempotent).await? {
                Outcome::Answered(answer) => return Ok(answer),
                Outcome::Retry { error, retry_after } => (error, retry_after),
            };
            let Some(delay) = self.next_delay(&method, attempt, started, &error, retry_after)
            else {
                return Err(error);
            };
            tracing::info!(
                %method,
                attempt,
                delay_ms = delay.as_millis() as u64,
                retry_after = retry_after.is_some(),
                error = %error,
                "Graph: throttled or unavailable; retrying"
            );
            tokio::time::sleep(delay).await;
        }
    }

    /// One attempt: an answer, an error worth retrying, or (`Err`) an error that ends the call.
    async fn attempt(
        &self,
        method: &Method,
        url: &str,
        body: Option<&Value>,
        idempotent: bool,
    ) -> Result<Outcome, GraphError> {
        let request = self.request(method, url, body).await?;
        match request.send().await {
            Ok(response) => Self::read_response(response).await,
            Err(e) if idempotent && !e.is_builder() => Ok(Outcome::Retry {
                error: GraphError::transport(e),
                retry_after: None,
            }),
            Err(e) => Err(GraphError::transport(e)),
        }
    }

    /// The authenticated request, with a fresh token (the credential caches it).
    async fn request(
        &self,
        method: &Method,
        url: &str,
        body: Option<&Value>,
    ) -> Result<reqwest::RequestBuilder, GraphError> {
        let token = self.token().await?;
        let request = self
            .http
            .request(method.clone(), url)
            .bearer_auth(&token)
            .header(reqwest::header::ACCEPT, "application/json");
        Ok(match body {
            Some(b) => request.json(b),
            None if *method == Method::POST => request.header(reqwest::header::CONTENT_LENGTH, 0),
            None => request,
        })
    }

    /// Reads an answer: success, throttling (429, 503, 504: retried), or any other error.
    async fn read_response(response: reqwest::Response) -> Result<Outcome, GraphError> {
        let status = response.status();
        let header = |name: &str| {
            response
                .headers()
                .get(name)
                .and_then(|v| v.to_str().ok())
                .map(str::to_string)
        };
        let retry_after = header(reqwest::header::RETRY_AFTER.as_str())
            .as_deref()
            .and_then(parse_retry_after);
        let request_id = header("request-id");
        let body = response.bytes().await.map_err(GraphError::transport)?;
        if status.is_success() {
            return Ok(Outcome::Answered(Answer { status, body }));
        }
        let error = api_error(status, &body, request_id);
        if matches!(status.as_u16(), 429 | 503 | 504) {
            Ok(Outcome::Retry { error, retry_after })
        } else {
            Err(error)
        }
    }

    /// The wait before the next attempt, or `None` (logged) when the retries end: attempts,
    /// a `Retry-After` beyond the longest wait, or the time budget spent.
    fn next_delay(
        &self,
        method: &Method,
        attempt: u32,
        started: Instant,
        error: &GraphError,
        retry_after: Option<Duration>,
    ) -> Option<Duration> {
        if attempt >= self.retry.max_attempts {
            tracing::warn!(%method, attempts = attempt, error = %error, "Graph: giving up after the last attempt");
            return None;
        }
        let delay = match retry_after {
            Some(d) if d > self.retry.max_delay => {
                tracing::warn!(%method, retry_after_s = d.as_secs(), "Graph: Retry-After beyond the longest wait; giving up");
                return None;
            }
            Some(d) => d,
            None => self.retry.backoff(attempt),
        };
        if started.elapsed() + delay > self.retry.max_elapsed {
            tracing::warn!(%method, attempts = attempt, "Graph: retry budget spent; giving up");
            return None;
        }
        Some(delay)
    }

    fn decode<T: serde::de::DeserializeOwned>(answer: &Answer) -> Result<T, GraphError> {
        serde_json::from_slice(&answer.body).map_err(|e| {
            GraphError::decode(format!("{} answer: {e}", answer.status.as_u16()), Some(e))
        })
    }

    /// Every subscription of this app, following `@odata.nextLink` (on this endpoint only).
    /// An item Graph lists in a shape we cannot read is skipped with a warning.
    pub async fn list(&self, version: ApiVersion) -> Result<Vec<Subscription>, GraphError> {
        #[derive(Deserialize)]
        struct Page {
            #[serde(default)]
            value: Vec<Value>,
            #[serde(default, rename = "@odata.nextLink")]
            next_link: Option<String>,
        }
        let mut out = Vec::new();
        let mut seen = HashSet::new();
        let mut next = Some(self.url(version, None, None));
        while let Some(url) = next.take() {
            if !seen.insert(url.clone()) {
                return Err(GraphError::decode("@odata.nextLink loops", None));
            }
            let page: Page = Self::decode(&self.call(Method::GET, &url, None, true).await?)?;
            for item in page.value {
                match serde_json::from_value::<Subscription>(item) {
                    Ok(s) => out.push(s),
                    Err(e) => {
                        tracing::warn!(error = %e, "Graph listed a subscription we cannot read; skipped")
                    }
                }
            }
            if let Some(link) = page.next_link {
                if !link.starts_with(&format!("{}/", self.endpoint)) {
                    return Err(GraphError::ForeignLink {
                        endpoint: self.endpoint.clone(),
                    });
                }
                next = Some(link);
            }
        }
        Ok(out)
    }

    pub async fn get(&self, version: ApiVersion, id: &str) -> Result<Subscription, GraphError> {
        let answer = self
            .call(Method::GET, &self.url(version, Some(id), None), None, true)
            .await?;
        Self::decode(&answer)
    }

    /// `POST /subscriptions`. Graph validates `notificationUrl` (and the lifecycle URL) with a
    /// handshake before it answers.
    pub async fn create(
        &self,
        version: ApiVersion,
        new: &NewSubscription,
    ) -> Result<Subscription, GraphError> {
        let answer = self
            .call(
                Method::POST,
                &self.url(version, None, None),
                Some(&new.to_json()),
                false,
            )
            .await?;
        Self::decode(&answer)
    }

    /// `PATCH /subscriptions/{id}`. Returns the subscription as Graph now has it.
    pub async fn update(
        &self,
        version: ApiVersion,
        id: &str,
        update: &SubscriptionUpdate,
    ) -> Result<Subscription, GraphError> {
        let answer = self
            .call(
                Method::PATCH,
                &self.url(version, Some(id), None),
                Some(&update.to_json()),
                true,
            )
            .await?;
        if answer.body.iter().all(u8::is_ascii_whitespace) {
            return self.get(version, id).await;
        }
        Self::decode(&answer)
    }

    /// Renewal: a new `expirationDateTime`.
    pub async fn renew(
        &self,
        version: ApiVersion,
        id: &str,
        expiration: OffsetDateTime,
    ) -> Result<Subscription, GraphError> {
        let update = SubscriptionUpdate {
            expiration: Some(expiration),
            ..SubscriptionUpdate::default()
        };
        self.update(version, id, &update).await
    }

    /// `POST /subscriptions/{id}/reauthorize` (answer to `reauthorizationRequired`).
    pub async fn reauthorize(&self, version: ApiVersion, id: &str) -> Result<(), GraphError> {
        self.call(
            Method::POST,
            &self.url(version, Some(id), Some("reauthorize")),
            None,
            true,
        )
        .await
        .map(|_| ())
    }

    pub async fn delete(&self, version: ApiVersion, id: &str) -> Result<(), GraphError> {
        self.call(
            Method::DELETE,
            &self.url(version, Some(id), None),
            None,
            true,
        )
        .await
        .map(|_| ())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_with_jitter_and_caps() {
        let p = RetryPolicy {
            max_attempts: 10,
            base_delay: Duration::from_millis(100),
            max_delay: Duration::from_millis(1000),
            max_elapsed: Duration::from_secs(10),
        };
        for _ in 0..50 {
            let d1 = p.backoff(1);
            assert!(
                d1 >= Duration::from_millis(50) && d1 <= Duration::from_millis(100),
                "{d1:?}"
            );
            let d3 = p.backoff(3);
            assert!(
                d3 >= Duration::from_millis(200) && d3 <= Duration::from_millis(400),
                "{d3:?}"
            );
            let d9 = p.backoff(9);
            assert!(
                d9 >= Duration::from_millis(500) && d9 <= Duration::from_millis(1000),
                "{d9:?}"
            );
        }
        assert_eq!(parse_retry_after(" 7 "), Some(Duration::from_secs(7)));
        assert_eq!(parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT"), None);
    }
}
