//! Signing keys found through an OpenID metadata document, cached: the one key cache for every
//! JWT this handler checks (Graph's validationTokens, the Bot Connector's tokens, Entra-issued
//! bot tokens).
//!
//! The metadata document names `jwks_uri` and, optionally, the algorithms its issuer signs with
//! (`id_token_signing_alg_values_supported`); the JWKS holds the keys. Both are read together,
//! kept for [`JwksOptions::key_max_age`], and read again when a token names a key we do not know,
//! at most once per [`JwksOptions::refresh_interval`] (a stream of forged `kid`s must not make us
//! hammer the issuer) and by one request at a time; while a re-read is under way, a known key
//! serves. After a failed read no new attempt is made for [`JwksOptions::failure_backoff`], and a
//! stale set still serves when its re-read fails (availability over freshness).
//!
//! Only RSA signing keys are kept (`kty` RSA, `use` absent or `sig`, `alg` absent or one of
//! RS256/RS384/RS512). The Bot Framework's JWKS adds `endorsements` (the channels a key may sign
//! for): kept with the key.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use jsonwebtoken::{Algorithm, DecodingKey};
use serde::Deserialize;
use serde::de::DeserializeOwned;

/// The metadata document and the JWKS are small; anything bigger is not an issuer's.
const MAX_DOCUMENT_BYTES: usize = 1024 * 1024;

/// Why the signing keys could not be read from the issuer.
#[derive(Debug, thiserror::Error)]
pub enum JwksError {
    #[error("GET {url}: {source}")]
    Request {
        url: String,
        #[source]
        source: reqwest::Error,
    },
    #[error("GET {url}: HTTP {status}")]
    Status { url: String, status: u16 },
    #[error("GET {url}: answer larger than {MAX_DOCUMENT_BYTES} bytes")]
    TooLarge { url: String },
    #[error("GET {url}: not the expected JSON: {source}")]
    Json {
        url: String,
        #[source]
        source: serde_json::Error,
    },
    #[error("the key set holds no RSA signing key")]
    NoUsableKeys,
    #[error("no answer within {0:?}")]
    Timeout(Duration),
    #[error("the last attempt failed moments ago; waiting before the next")]
    BackingOff,
}

/// Why no key could be given for a `kid`.
#[derive(Debug, thiserror::Error)]
pub enum KeyLookupError {
    /// The issuer's current key set does not hold this `kid` (cut to a printable form).
    #[error("no published key `{0}`")]
    Unknown(String),
    #[error(transparent)]
    Fetch(#[from] JwksError),
}

/// Tuning of a [`JwksCache`]; the defaults suit production.
#[derive(Debug, Clone)]
pub struct JwksOptions {
    /// Least time between two key refreshes caused by an unknown `kid`.
    pub refresh_interval: Duration,
    /// Keys older than this are re-read before use (issuers rotate keys; Microsoft advises a
    /// daily refresh).
    pub key_max_age: Duration,
    /// After a failed key fetch, no new attempt for this long.
    pub failure_backoff: Duration,
    /// Time allowed for metadata + JWKS together.
    pub fetch_timeout: Duration,
}

impl Default for JwksOptions {
    fn default() -> Self {
        Self {
            refresh_interval: Duration::from_secs(300),
            key_max_age: Duration::from_secs(24 * 3600),
            failure_backoff: Duration::from_secs(10),
            fetch_timeout: Duration::from_secs(2),
        }
    }
}

/// One published key.
pub struct SigningKey {
    pub key: DecodingKey,
    /// The key's own `alg`, when the JWKS names one.
    pub alg: Option<Algorithm>,
    /// The Bot Framework's `endorsements` (channel ids); `None` when the JWKS gives none.
    pub endorsements: Option<Vec<String>>,
    /// What the metadata says the issuer signs with (RSA algorithms only; RS256 when unsaid).
    pub issuer_algorithms: Arc<[Algorithm]>,
}

impl SigningKey {
    /// Whether a token whose header says `alg` may be checked with this key: the issuer signs
    /// with `alg`, and the key, if it names an algorithm, names this one.
    pub fn allows(&self, alg: Algorithm) -> bool {
        self.issuer_algorithms.contains(&alg) && self.alg.is_none_or(|a| a == alg)
    }

    /// Whether the key is endorsed for `channel` (exact match, as the Bot Framework compares).
    pub fn endorses(&self, channel: &str) -> bool {
        !channel.is_empty()
            && self
                .endorsements
                .as_ref()
                .is_some_and(|e| e.iter().any(|c| c == channel))
    }
}

/// Counters, for tests, benchmarks and metrics.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct JwksStats {
    /// Attempts to read the keys (metadata + JWKS).
    pub fetches: u64,
}

struct KeySet {
    keys: HashMap<String, Arc<SigningKey>>,
    loaded_at: Instant,
}

impl KeySet {
    fn fresh(&self, max_age: Duration) -> bool {
        self.loaded_at.elapsed() < max_age
    }
}

#[derive(Default)]
struct RefreshState {
    /// When a fetch caused by an unknown `kid` last succeeded (the rate limit).
    last_unknown_kid_refresh: Option<Instant>,
    /// When the last fetch failed, if the last fetch failed.
    last_failure: Option<Instant>,
}

/// The keys of one issuer. Share it (`Arc`) across requests: the cache is the point.
pub struct JwksCache {
    metadata_url: String,
    http: reqwest::Client,
    options: JwksOptions,
    /// The current key set; swapped whole, never held across an await.
    keys: RwLock<Option<Arc<KeySet>>>,
    /// Single flight for key fetches: only requests that need a fetch wait here.
    refresh: tokio::sync::Mutex<RefreshState>,
    fetches: AtomicU64,
}

impl std::fmt::Debug for JwksCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JwksCache")
            .field("metadata_url", &self.metadata_url)
            .field("options", &self.options)
            .finish_non_exhaustive()
    }
}

impl JwksCache {
    /// `metadata_url`: the OpenID metadata document (its `jwks_uri` names the keys).
    pub fn new(metadata_url: impl Into<String>, http: reqwest::Client) -> Self {
        Self {
            metadata_url: metadata_url.into(),
            http,
            options: JwksOptions::default(),
            keys: RwLock::new(None),
            refresh: tokio::sync::Mutex::new(RefreshState::default()),
            fetches: AtomicU64::new(0),
        }
    }

    pub fn with_options(mut self, options: JwksOptions) -> Self {
        self.options = options;
        self
    }

    pub fn metadata_url(&self) -> &str {
        &self.metadata_url
    }

    pub fn stats(&self) -> JwksStats {
        JwksStats {
            fetches: self.fetches.load(Ordering::Relaxed),
        }
    }

    fn current(&self) -> Option<Arc<KeySet>> {
        self.keys.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// The key named `kid`, fetching the key set if it is missing, stale, or lacks `kid`.
    pub async fn key(&self, kid: &str) -> Result<Arc<SigningKey>, KeyLookupError> {
        let max_age = self.options.key_max_age;
        let current = self.current();
        let known = current.as_ref().and_then(|s| s.keys.get(kid)).cloned();
        if let (Some(key), Some(set)) = (&known, &current)
            && set.fresh(max_age)
        {
            return Ok(key.clone());
        }

        let mut state = match (self.refresh.try_lock(), known) {
            (Ok(state), _) => state,
            // A fetch is under way: a stale but known key serves meanwhile instead of waiting.
            (Err(_), Some(key)) => return Ok(key),
            (Err(_), None) => self.refresh.lock().await,
        };
        // Another request may have fetched while this one waited.
        let current = self.current();
        let stale = current.as_ref().is_none_or(|s| !s.fresh(max_age));
        if !stale && let Some(key) = current.as_ref().and_then(|s| s.keys.get(kid)) {
            return Ok(key.clone());
        }

        let now = Instant::now();
        let backing_off = state
            .last_failure
            .is_some_and(|t| now.duration_since(t) < self.options.failure_backoff);
        let may_fetch = !backing_off
            && (stale
                || state
                    .last_unknown_kid_refresh
                    .is_none_or(|t| now.duration_since(t) >= self.options.refresh_interval));
        let mut fetch_error = None;
        if may_fetch {
            match self.fetch().await {
                Ok(set) => {
                    tracing::info!(
                        keys = set.keys.len(),
                        metadata = %self.metadata_url,
                        reason = if stale { "stale" } else { "unknown kid" },
                        "signing keys loaded"
                    );
                    if !stale {
                        state.last_unknown_kid_refresh = Some(now);
                    }
                    state.last_failure = None;
                    *self.keys.write().unwrap_or_else(|e| e.into_inner()) = Some(Arc::new(set));
                }
                Err(error) => {
                    tracing::warn!(%error, metadata = %self.metadata_url, "cannot load signing keys");
                    state.last_failure = Some(now);
                    fetch_error = Some(error);
                }
            }
        }
        drop(state);

        let current = self.current();
        match current.as_ref().and_then(|s| s.keys.get(kid)) {
            Some(key) => Ok(key.clone()),
            None => Err(match (fetch_error, current) {
                (Some(error), _) => KeyLookupError::Fetch(error),
                (None, None) => KeyLookupError::Fetch(JwksError::BackingOff),
                (None, Some(_)) => KeyLookupError::Unknown(printable(kid, 64)),
            }),
        }
    }

    async fn fetch(&self) -> Result<KeySet, JwksError> {
        self.fetches.fetch_add(1, Ordering::Relaxed);
        let timeout = self.options.fetch_timeout;
        tokio::time::timeout(timeout, async {
            let metadata: OpenIdMetadata = self.get_json(&self.metadata_url).await?;
            let jwks: RawJwks = self.get_json(&metadata.jwks_uri).await?;
            key_set(jwks, issuer_algorithms(&metadata))
        })
        .await
        .map_err(|_| JwksError::Timeout(timeout))?
    }

    async fn get_json<T: DeserializeOwned>(&self, url: &str) -> Result<T, JwksError> {
        let request_error = |source| JwksError::Request {
            url: url.to_owned(),
            source,
        };
        let mut response = self
            .http
            .get(url)
            .header(reqwest::header::ACCEPT, "application/json")
            .send()
            .await
            .map_err(request_error)?;
        if !response.status().is_success() {
            return Err(JwksError::Status {
                url: url.to_owned(),
                status: response.status().as_u16(),
            });
        }
        let mut body = Vec::new();
        while let Some(chunk) = response.chunk().await.map_err(request_error)? {
            if body.len() + chunk.len() > MAX_DOCUMENT_BYTES {
                return Err(JwksError::TooLarge {
                    url: url.to_owned(),
                });
            }
            body.extend_from_slice(&chunk);
        }
        serde_json::from_slice(&body).map_err(|source| JwksError::Json {
            url: url.to_owned(),
            source,
        })
    }
}

#[derive(Deserialize)]
struct OpenIdMetadata {
    jwks_uri: String,
    #[serde(default)]
    id_token_signing_alg_values_supported: Option<Vec<serde_json::Value>>,
}

#[derive(Deserialize)]
struct RawJwks {
    keys: Vec<serde_json::Value>,
}

/// One JWKS entry, as far as we use it. Entra adds `x5t`, `x5c`, `issuer`: ignored.
#[derive(Deserialize)]
struct RawJwk {
    kty: String,
    kid: Option<String>,
    #[serde(rename = "use")]
    usage: Option<String>,
    alg: Option<String>,
    n: Option<String>,
    e: Option<String>,
    #[serde(default)]
    endorsements: Option<Vec<serde_json::Value>>,
}

/// The RSA algorithms a JWT from us may use, by name (case-sensitive, as RFC 7518 spells them).
pub fn rsa_algorithm(name: &str) -> Option<Algorithm> {
    match name {
        "RS256" => Some(Algorithm::RS256),
        "RS384" => Some(Algorithm::RS384),
        "RS512" => Some(Algorithm::RS512),
        _ => None,
    }
}

/// The RSA algorithms the metadata lists; RS256 alone when it lists none we accept.
fn issuer_algorithms(metadata: &OpenIdMetadata) -> Arc<[Algorithm]> {
    let listed: Vec<Algorithm> = metadata
        .id_token_signing_alg_values_supported
        .iter()
        .flatten()
        .filter_map(|v| v.as_str().and_then(rsa_algorithm))
        .collect();
    if listed.is_empty() {
        Arc::from([Algorithm::RS256])
    } else {
        Arc::from(listed)
    }
}

/// The RSA signing keys of a JWKS, by `kid`; entries of other kinds or uses are skipped.
fn key_set(jwks: RawJwks, issuer_algorithms: Arc<[Algorithm]>) -> Result<KeySet, JwksError> {
    let mut keys = HashMap::new();
    for value in jwks.keys {
        let Ok(jwk) = serde_json::from_value::<RawJwk>(value) else {
            continue;
        };
        let alg = match jwk.alg.as_deref() {
            None => None,
            Some(name) => match rsa_algorithm(name) {
                Some(a) => Some(a),
                None => continue,
            },
        };
        let usable = jwk.kty == "RSA" && jwk.usage.as_deref().is_none_or(|u| u == "sig");
        if let (true, Some(kid), Some(n), Some(e)) = (usable, jwk.kid, jwk.n, jwk.e)
            && let Ok(key) = DecodingKey::from_rsa_components(&n, &e)
        {
            let endorsements = jwk.endorsements.map(|list| {
                list.into_iter()
                    .filter_map(|v| v.as_str().map(str::to_owned))
                    .collect()
            });
            let signing = SigningKey {
                key,
                alg,
                endorsements,
                issuer_algorithms: issuer_algorithms.clone(),
            };
            keys.insert(kid, Arc::new(signing));
        }
    }
    if keys.is_empty() {
        return Err(JwksError::NoUsableKeys);
    }
    Ok(KeySet {
        keys,
        loaded_at: Instant::now(),
    })
}

/// A short, log-safe rendering of a value read from a token or a request.
pub fn printable(value: &str, max: usize) -> String {
    let mut out: String = value
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || "-_.:/".contains(*c))
        .take(max)
        .collect();
    if value.chars().count() > max {
        out.push('…');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use base64::Engine;
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;

    fn rsa_parts() -> (String, String) {
        let rsa = openssl::rsa::Rsa::generate(2048).unwrap();
        (
            URL_SAFE_NO_PAD.encode(rsa.n().to_vec()),
            URL_SAFE_NO_PAD.encode(rsa.e().to_vec()),
        )
    }

    #[test]
    fn key_set_keeps_rsa_signing_keys_with_their_endorsements() {
        let (n, e) = rsa_parts();
        let jwks: RawJwks = serde_json::from_value(serde_json::json!({"keys": [
            {"kty": "RSA", "use": "sig", "kid": "good", "n": n, "e": e, "endorsements": ["msteams", 7, "skype"]},
            {"kty": "RSA", "kid": "no-use", "n": n, "e": e},
            {"kty": "RSA", "use": "enc", "kid": "enc", "n": n, "e": e},
            {"kty": "RSA", "alg": "RS512", "kid": "rs512", "n": n, "e": e},
            {"kty": "RSA", "alg": "PS256", "kid": "ps256", "n": n, "e": e},
            {"kty": "EC", "kid": "ec", "crv": "P-256", "x": "AA", "y": "AA"},
            {"kty": "RSA", "use": "sig", "n": n, "e": e},
            "not an object"
        ]}))
        .unwrap();
        let set = key_set(jwks, Arc::from([Algorithm::RS256])).unwrap();
        let mut kids: Vec<_> = set.keys.keys().cloned().collect();
        kids.sort();
        assert_eq!(kids, ["good", "no-use", "rs512"]);
        let good = &set.keys["good"];
        assert!(good.endorses("msteams") && good.endorses("skype"));
        assert!(!good.endorses("MSTEAMS") && !good.endorses(""));
        assert!(
            !set.keys["no-use"].endorses("msteams"),
            "no list, no endorsement"
        );
        assert!(good.allows(Algorithm::RS256) && !good.allows(Algorithm::RS384));
        assert!(!set.keys["rs512"].allows(Algorithm::RS256));
        let empty: RawJwks = serde_json::from_str(r#"{"keys": []}"#).unwrap();
        assert!(matches!(
            key_set(empty, Arc::from([Algorithm::RS256])),
            Err(JwksError::NoUsableKeys)
        ));
    }

    #[test]
    fn metadata_algorithms_are_the_listed_rsa_ones_else_rs256() {
        let read = |v: serde_json::Value| {
            let m: OpenIdMetadata = serde_json::from_value(
                serde_json::json!({"jwks_uri": "x", "id_token_signing_alg_values_supported": v}),
            )
            .unwrap();
            issuer_algorithms(&m).to_vec()
        };
        assert_eq!(
            read(serde_json::json!([
                "RS256", "RS384", "RS512", "HS256", "none", 3
            ])),
            [Algorithm::RS256, Algorithm::RS384, Algorithm::RS512]
        );
        assert_eq!(read(serde_json::json!(["HS256"])), [Algorithm::RS256]);
        assert_eq!(read(serde_json::Value::Null), [Algorithm::RS256]);
    }

    #[test]
    fn printable_cuts_and_filters() {
        assert_eq!(printable("ab\ncd\u{1b}[31m", 64), "abcd31m");
        assert_eq!(printable(&"x".repeat(70), 64).chars().count(), 65);
    }
}
