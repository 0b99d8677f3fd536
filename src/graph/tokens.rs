//! validationTokens: the JWTs Microsoft Graph puts in every rich notification batch to prove that
//! the batch comes from Graph and is meant for this app.
//!
//! The rules are Graph's ("Validate tokens in the change notification", in Microsoft Graph's
//! change-notifications docs):
//! - RS256 only; the keys are Entra ID's, found through
//!   `{authority}/common/.well-known/openid-configuration` -> `jwks_uri`;
//! - `aud` is our app id; the publisher (`appid` in v1 tokens, `azp` in v2) is Graph's change
//!   tracking app [`GRAPH_PUBLISHER_APP_ID`];
//! - `iss` is `https://sts.windows.net/{tid}/` (v1) or `{authority}/{tid}/v2.0` (v2), and `tid`
//!   must be a tenant we serve;
//! - `exp` and `nbf` hold, with a little leeway for clock skew.
//!
//! Signatures, the algorithm and `aud` are checked by `jsonwebtoken`; the time, publisher, tenant
//! and issuer rules are checked here, in one place for both fresh and cached tokens.
//!
//! Graph reuses the same tokens across many batches, so a token that passed is remembered (by the
//! SHA-256 of its text, never the text) until it expires; a remembered token is re-checked only
//! against the clock. Keys are held by the one key cache ([`crate::jwks::JwksCache`], shared with
//! the bot's token checks): re-read at most once a day, and fetched again when a token names a
//! key we do not know, at most once per `refresh_interval` and by one request at a time.

use std::collections::{BTreeSet, HashMap};
use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde::Deserialize;

use crate::jwks::{JwksCache, JwksOptions, KeyLookupError, printable};

/// The app id Microsoft Graph's change tracking signs validationTokens as (`appid` / `azp`).
pub const GRAPH_PUBLISHER_APP_ID: &str = "0bf30f3b-4a52-48df-9a82-234910c4a086";

/// Tokens longer than this are refused before any parsing (Entra tokens are 1-2 KiB).
const MAX_TOKEN_BYTES: usize = 16 * 1024;

/// Why a validationToken (or the batch carrying it) is refused. The text never contains a token;
/// values taken from a token (algorithm, key id, tenant) are cut to a short, printable form.
#[derive(Debug, thiserror::Error)]
pub enum TokenError {
    #[error("the rich notification batch carries no validationTokens")]
    NoTokens,
    #[error("malformed validationToken: {0}")]
    Malformed(&'static str),
    #[error("validationToken lacks the claim `{0}`")]
    MissingClaim(&'static str),
    #[error("validationToken algorithm `{0}` is not RS256")]
    UnsupportedAlgorithm(String),
    #[error("validationToken is signed with key `{0}`, which Entra ID does not publish")]
    UnknownKey(String),
    #[error("validationToken signature does not verify")]
    BadSignature,
    #[error("validationToken expired at {exp} (unix seconds)")]
    Expired { exp: u64 },
    #[error("validationToken is not valid before {nbf} (unix seconds)")]
    NotYetValid { nbf: u64 },
    #[error("validationToken audience is not this app")]
    WrongAudience,
    #[error("validationToken was not issued to Microsoft Graph change tracking (appid/azp)")]
    WrongPublisher,
    #[error("validationToken issuer is neither the v1 nor the v2 issuer of its tenant")]
    WrongIssuer,
    #[error("validationToken tenant `{0}` is not one this app serves")]
    TenantNotAllowed(String),
    #[error("cannot get Entra ID signing keys: {0}")]
    Jwks(#[from] JwksError),
}

impl TokenError {
    /// A stable code for records and dashboards (the text may change, the code does not).
    pub fn code(&self) -> &'static str {
        match self {
            TokenError::NoTokens => "noTokens",
            TokenError::Malformed(_) => "malformedToken",
            TokenError::MissingClaim(_) => "missingClaim",
            TokenError::UnsupportedAlgorithm(_) => "unsupportedAlgorithm",
            TokenError::UnknownKey(_) => "unknownSigningKey",
            TokenError::BadSignature => "badSignature",
            TokenError::Expired { .. } => "expired",
            TokenError::NotYetValid { .. } => "notYetValid",
            TokenError::WrongAudience => "wrongAudience",
            TokenError::WrongPublisher => "wrongPublisher",
            TokenError::WrongIssuer => "wrongIssuer",
            TokenError::TenantNotAllowed(_) => "tenantNotAllowed",
            TokenError::Jwks(_) => "signingKeysUnavailable",
        }
    }
}

pub use crate::jwks::JwksError;

/// The tenants whose validationTokens were all valid.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ValidatedTokens {
    /// Lower-case tenant ids (`tid`).
    tenants: BTreeSet<String>,
}

impl ValidatedTokens {
    /// Whether a valid token covered `tenant` (a notification's `tenantId`); case-insensitive.
    pub fn covers(&self, tenant: &str) -> bool {
        self.tenants.iter().any(|t| t.eq_ignore_ascii_case(tenant))
    }

    /// The covered tenants, lower case, sorted.
    pub fn tenants(&self) -> impl Iterator<Item = &str> {
        self.tenants.iter().map(String::as_str)
    }
}

/// Tuning of a [`TokenValidator`]; the defaults suit production.
#[derive(Debug, Clone)]
pub struct ValidatorOptions {
    /// Clock skew allowed on `exp` and `nbf`.
    pub leeway: Duration,
    /// Least time between two key refreshes caused by an unknown `kid`: a stream of forged kids
    /// must not make us hammer Entra ID.
    pub refresh_interval: Duration,
    /// Keys older than this are re-read before use (Entra ID rotates keys; Microsoft advises a
    /// daily refresh). If the re-read fails the old keys stay in use.
    pub key_max_age: Duration,
    /// After a failed key fetch, no new attempt for this long.
    pub failure_backoff: Duration,
    /// Time allowed for discovery + JWKS together: Graph wants an answer within 3 s.
    pub fetch_timeout: Duration,
    /// Verified tokens remembered at most.
    pub cache_capacity: usize,
}

impl Default for ValidatorOptions {
    fn default() -> Self {
        Self {
            leeway: Duration::from_secs(300),
            refresh_interval: Duration::from_secs(300),
            key_max_age: Duration::from_secs(24 * 3600),
            failure_backoff: Duration::from_secs(10),
            fetch_timeout: Duration::from_secs(2),
            cache_capacity: 1024,
        }
    }
}

impl ValidatorOptions {
    /// The key cache's share of the tuning.
    fn jwks(&self) -> JwksOptions {
        JwksOptions {
            refresh_interval: self.refresh_interval,
            key_max_age: self.key_max_age,
            failure_backoff: self.failure_backoff,
            fetch_timeout: self.fetch_timeout,
        }
    }
}

/// Counters, for tests, benchmarks and metrics.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ValidatorStats {
    /// Attempts to read the keys (discovery + JWKS).
    pub key_fetches: u64,
    /// Signatures verified (tokens not found in the cache).
    pub verifications: u64,
    /// Tokens answered from the cache.
    pub cache_hits: u64,
}

/// Seconds since the Unix epoch; replaceable so tests can move time.
pub type Clock = Arc<dyn Fn() -> u64 + Send + Sync>;

fn system_clock() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// Validates the validationTokens of rich notification batches. Share it (`Arc`) across requests:
/// its key and token caches are the point.
pub struct TokenValidator {
    /// `{authority}` without a trailing slash: builds the discovery URL and the v2 issuer.
    authority: String,
    /// Lower-case tenant ids we serve.
    tenants: Vec<String>,
    /// RS256 only, `aud` required and among our audiences; time checks are ours.
    validation: Validation,
    http: reqwest::Client,
    options: ValidatorOptions,
    clock: Clock,
    /// Entra ID's signing keys (the cache shared with the bot's token checks).
    keys: JwksCache,
    verified: Mutex<VerifiedCache>,
    verifications: AtomicU64,
    cache_hits: AtomicU64,
}

impl fmt::Debug for TokenValidator {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TokenValidator")
            .field("authority", &self.authority)
            .field("tenants", &self.tenants)
            .field("options", &self.options)
            .finish_non_exhaustive()
    }
}

impl TokenValidator {
    /// `authority_host`: e.g. `https://login.microsoftonline.com`; `audiences`: our app id(s);
    /// `tenants`: the tenant ids whose notifications we accept.
    pub fn new(
        authority_host: &str,
        audiences: Vec<String>,
        tenants: Vec<String>,
        http: reqwest::Client,
    ) -> Self {
        let authority = authority_host.trim_end_matches('/').to_owned();
        let mut validation = Validation::new(Algorithm::RS256);
        validation.validate_exp = false;
        validation.validate_nbf = false;
        validation.leeway = 0;
        validation.set_required_spec_claims(&["aud"]);
        validation.set_audience(&audiences);
        let options = ValidatorOptions::default();
        let keys = JwksCache::new(
            format!("{authority}/common/.well-known/openid-configuration"),
            http.clone(),
        )
        .with_options(options.jwks());
        Self {
            authority,
            tenants: tenants.iter().map(|t| t.to_ascii_lowercase()).collect(),
            validation,
            http,
            verified: Mutex::new(VerifiedCache::new(options.cache_capacity)),
            options,
            clock: Arc::new(system_clock),
            keys,
            verifications: AtomicU64::new(0),
            cache_hits: AtomicU64::new(0),
        }
    }

    pub fn with_options(mut self, options: ValidatorOptions) -> Self {
        self.verified = Mutex::new(VerifiedCache::new(options.cache_capacity));
        self.keys = JwksCache::new(self.keys.metadata_url(), self.http.clone())
            .with_options(options.jwks());
        self.options = options;
        self
    }

    pub fn with_clock(mut self, clock: Clock) -> Self {
        self.clock = clock;
        self
    }

    pub fn stats(&self) -> ValidatorStats {
        ValidatorStats {
            key_fetches: self.keys.stats().fetches,
            verifications: self.verifications.load(Ordering::Relaxed),
            cache_hits: self.cache_hits.load(Ordering::Relaxed),
        }
    }

    /// Validates every token of a batch; one bad token fails the batch. An empty list fails too:
    /// a rich batch must carry tokens.
    pub async fn validate(&self, tokens: &[String]) -> Result<ValidatedTokens, TokenError> {
        if tokens.is_empty() {
            return Err(TokenError::NoTokens);
        }
        let now = (self.clock)();
        let mut tenants = BTreeSet::new();
        for token in tokens {
            tenants.insert(self.validate_one(token, now).await?);
        }
        Ok(ValidatedTokens { tenants })
    }

    /// Returns the token's tenant (lower case).
    async fn validate_one(&self, token: &str, now: u64) -> Result<String, TokenError> {
        if token.len() > MAX_TOKEN_BYTES {
            return Err(TokenError::Malformed("longer than any Entra ID token"));
        }
        let digest = openssl::sha::sha256(token.as_bytes());
        let leeway = self.options.leeway.as_secs();
        if let Some(hit) = self.lock_verified().get(&digest, now, leeway) {
            self.cache_hits.fetch_add(1, Ordering::Relaxed);
            return hit;
        }

        let kid = signing_key_id(token)?;
        let key = self.key_for(&kid).await?;
        self.verifications.fetch_add(1, Ordering::Relaxed);
        let data = jsonwebtoken::decode::<GraphClaims>(token, &key, &self.validation)
            .map_err(map_jwt_error)?;
        let verified = check_claims(&data.claims, &self.authority, &self.tenants, now, leeway)?;
        let tenant = verified.tenant.clone();
        self.lock_verified().insert(digest, verified, now, leeway);
        Ok(tenant)
    }

    fn lock_verified(&self) -> std::sync::MutexGuard<'_, VerifiedCache> {
        // The cache holds no invariant a panicking thread could break halfway: keep using it.
        self.verified.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The RS256 key named `kid` (a key published for another algorithm counts as unknown).
    async fn key_for(&self, kid: &str) -> Result<DecodingKey, TokenError> {
        match self.keys.key(kid).await {
            Ok(key) if key.allows(Algorithm::RS256) => Ok(key.key.clone()),
            Ok(_) | Err(KeyLookupError::Unknown(_)) => {
                Err(TokenError::UnknownKey(printable(kid, 64)))
            }
            Err(KeyLookupError::Fetch(e)) => Err(TokenError::Jwks(e)),
        }
    }
}

#[derive(Deserialize)]
struct RawHeader {
    alg: String,
    kid: Option<String>,
}

/// The `kid` of an RS256 compact JWS; anything else is refused before any key is looked up.
fn signing_key_id(token: &str) -> Result<String, TokenError> {
    let mut parts = token.split('.');
    let (Some(header), Some(_), Some(_), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(TokenError::Malformed("not three dot-separated parts"));
    };
    let header: RawHeader = URL_SAFE_NO_PAD
        .decode(header)
        .ok()
        .and_then(|bytes| serde_json::from_slice(&bytes).ok())
        .ok_or(TokenError::Malformed(
            "header is not base64url JSON with `alg`",
        ))?;
    if header.alg != "RS256" {
        return Err(TokenError::UnsupportedAlgorithm(printable(&header.alg, 16)));
    }
    header
        .kid
        .ok_or(TokenError::Malformed("header has no `kid`"))
}

fn map_jwt_error(error: jsonwebtoken::errors::Error) -> TokenError {
    match error.kind() {
        ErrorKind::InvalidSignature | ErrorKind::InvalidRsaKey(_) | ErrorKind::InvalidKeyFormat => {
            TokenError::BadSignature
        }
        ErrorKind::InvalidAudience => TokenError::WrongAudience,
        ErrorKind::MissingRequiredClaim(claim) if claim == "aud" => TokenError::MissingClaim("aud"),
        ErrorKind::InvalidAlgorithm
        | ErrorKind::UnsupportedAlgorithm
        | ErrorKind::InvalidAlgorithmName => TokenError::UnsupportedAlgorithm("?".into()),
        _ => TokenError::Malformed("claims are not JSON of the expected shape"),
    }
}

/// A JWT NumericDate: integer or fractional seconds.
#[derive(Deserialize, Clone, Copy)]
#[serde(untagged)]
enum NumericDate {
    Integer(u64),
    Fraction(f64),
}

impl NumericDate {
    fn seconds(self) -> u64 {
        match self {
            NumericDate::Integer(s) => s,
            // Saturating cast: negative and NaN give 0.
            NumericDate::Fraction(s) => s as u64,
        }
    }
}

/// The claims Graph's rules look at (beyond `aud`, checked by `jsonwebtoken`).
#[derive(Deserialize, Default)]
struct GraphClaims {
    iss: Option<String>,
    tid: Option<String>,
    appid: Option<String>,
    azp: Option<String>,
    exp: Option<NumericDate>,
    nbf: Option<NumericDate>,
}

/// What a token proved, remembered until it expires.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Verified {
    tenant: String,
    exp: u64,
}

/// Graph's rules on a token whose signature and audience already hold.
fn check_claims(
    claims: &GraphClaims,
    authority: &str,
    tenants: &[String],
    now: u64,
    leeway: u64,
) -> Result<Verified, TokenError> {
    let exp = claims.exp.ok_or(TokenError::MissingClaim("exp"))?.seconds();
    let nbf = claims.nbf.ok_or(TokenError::MissingClaim("nbf"))?.seconds();
    if now > exp.saturating_add(leeway) {
        return Err(TokenError::Expired { exp });
    }
    if nbf > now.saturating_add(leeway) {
        return Err(TokenError::NotYetValid { nbf });
    }

    let publishers = [claims.appid.as_deref(), claims.azp.as_deref()];
    let named = publishers.iter().flatten().count();
    if named == 0
        || publishers
            .iter()
            .flatten()
            .any(|p| *p != GRAPH_PUBLISHER_APP_ID)
    {
        return Err(TokenError::WrongPublisher);
    }

    let tid = claims
        .tid
        .as_deref()
        .ok_or(TokenError::MissingClaim("tid"))?;
    if !tenants.iter().any(|t| t.eq_ignore_ascii_case(tid)) {
        return Err(TokenError::TenantNotAllowed(printable(tid, 64)));
    }

    let iss = claims
        .iss
        .as_deref()
        .ok_or(TokenError::MissingClaim("iss"))?;
    let v1 = iss
        .strip_prefix("https://sts.windows.net/")
        .and_then(|rest| rest.strip_suffix('/'));
    let v2 = iss
        .strip_prefix(authority)
        .and_then(|rest| rest.strip_prefix('/'))
        .and_then(|rest| rest.strip_suffix("/v2.0"));
    if v1 != Some(tid) && v2 != Some(tid) {
        return Err(TokenError::WrongIssuer);
    }

    Ok(Verified {
        tenant: tid.to_ascii_lowercase(),
        exp,
    })
}

/// Tokens that passed, by SHA-256 of their text, until `exp` (+ leeway).
struct VerifiedCache {
    capacity: usize,
    entries: HashMap<[u8; 32], Verified>,
}

impl VerifiedCache {
    fn new(capacity: usize) -> Self {
        Self {
            capacity,
            entries: HashMap::new(),
        }
    }

    /// `Some(Ok(tenant))` for a remembered token still in date, `Some(Err(Expired))` for one that
    /// has since expired (and is forgotten), `None` if unknown.
    fn get(
        &mut self,
        digest: &[u8; 32],
        now: u64,
        leeway: u64,
    ) -> Option<Result<String, TokenError>> {
        let entry = self.entries.get(digest)?;
        if now > entry.exp.saturating_add(leeway) {
            let exp = entry.exp;
            self.entries.remove(digest);
            return Some(Err(TokenError::Expired { exp }));
        }
        Some(Ok(entry.tenant.clone()))
    }

    fn insert(&mut self, digest: [u8; 32], verified: Verified, now: u64, leeway: u64) {
        if self.capacity == 0 {
            return;
        }
        if self.entries.len() >= self.capacity && !self.entries.contains_key(&digest) {
            self.entries
                .retain(|_, v| now <= v.exp.saturating_add(leeway));
            if self.entries.len() >= self.capacity
                && let Some(soonest) = self
                    .entries
                    .iter()
                    .min_by_key(|(_, v)| v.exp)
                    .map(|(k, _)| *k)
            {
                self.entries.remove(&soonest);
            }
        }
        self.entries.insert(digest, verified);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const AUTHORITY: &str = "https://login.microsoftonline.com";
    const TENANT: &str = "72f988bf-86f1-41af-91ab-2d7cd011db47";
    const NOW: u64 = 1_800_000_000;
    const LEEWAY: u64 = 300;

    fn b64(json: &str) -> String {
        URL_SAFE_NO_PAD.encode(json)
    }

    fn claims() -> GraphClaims {
        GraphClaims {
            iss: Some(format!("https://sts.windows.net/{TENANT}/")),
            tid: Some(TENANT.into()),
            appid: Some(GRAPH_PUBLISHER_APP_ID.into()),
            azp: None,
            exp: Some(NumericDate::Integer(NOW + 3600)),
            nbf: Some(NumericDate::Integer(NOW - 60)),
        }
    }

    fn check(claims: &GraphClaims) -> Result<Verified, TokenError> {
        check_claims(claims, AUTHORITY, &[TENANT.to_owned()], NOW, LEEWAY)
    }

    #[test]
    fn v1_and_v2_issuers_of_the_token_tenant_pass() {
        assert_eq!(check(&claims()).unwrap().tenant, TENANT);
        let v2 = GraphClaims {
            iss: Some(format!("{AUTHORITY}/{TENANT}/v2.0")),
            appid: None,
            azp: Some(GRAPH_PUBLISHER_APP_ID.into()),
            ..claims()
        };
        assert_eq!(check(&v2).unwrap().exp, NOW + 3600);
    }

    #[test]
    fn issuer_must_name_the_token_tenant_in_a_known_shape() {
        let other = "11111111-1111-1111-1111-111111111111";
        for iss in [
            format!("https://sts.windows.net/{other}/"),
            format!("https://sts.windows.net/{TENANT}"),
            format!("http://sts.windows.net/{TENANT}/"),
            format!("{AUTHORITY}/{TENANT}/v2.0/"),
            format!("https://login.example.com/{TENANT}/v2.0"),
            format!("{AUTHORITY}/{TENANT}/v1.0"),
            format!("{AUTHORITY}/common/v2.0"),
        ] {
            let c = GraphClaims {
                iss: Some(iss.clone()),
                ..claims()
            };
            assert!(matches!(check(&c), Err(TokenError::WrongIssuer)), "{iss}");
        }
    }

    #[test]
    fn publisher_is_graph_in_every_claim_that_names_one() {
        let stranger = "22222222-2222-2222-2222-222222222222".to_owned();
        let cases = [
            (Some(stranger.clone()), None),
            (None, Some(stranger.clone())),
            (Some(GRAPH_PUBLISHER_APP_ID.into()), Some(stranger)),
            (None, None),
        ];
        for (appid, azp) in cases {
            let c = GraphClaims {
                appid,
                azp,
                ..claims()
            };
            assert!(matches!(check(&c), Err(TokenError::WrongPublisher)));
        }
    }

    #[test]
    fn time_checks_allow_the_leeway_and_no_more() {
        let at = |exp, nbf| GraphClaims {
            exp: Some(NumericDate::Integer(exp)),
            nbf: Some(NumericDate::Integer(nbf)),
            ..claims()
        };
        assert!(check(&at(NOW - LEEWAY, NOW - 7200)).is_ok());
        assert!(matches!(
            check(&at(NOW - LEEWAY - 1, NOW - 7200)),
            Err(TokenError::Expired { exp }) if exp == NOW - LEEWAY - 1
        ));
        assert!(check(&at(NOW + 7200, NOW + LEEWAY)).is_ok());
        assert!(matches!(
            check(&at(NOW + 7200, NOW + LEEWAY + 1)),
            Err(TokenError::NotYetValid { .. })
        ));
        let fractional = GraphClaims {
            exp: Some(NumericDate::Fraction((NOW + 10) as f64 + 0.5)),
            ..claims()
        };
        assert_eq!(check(&fractional).unwrap().exp, NOW + 10);
    }

    #[test]
    fn required_claims_are_named_when_missing() {
        let cases: [(GraphClaims, &str); 4] = [
            (
                GraphClaims {
                    exp: None,
                    ..claims()
                },
                "exp",
            ),
            (
                GraphClaims {
                    nbf: None,
                    ..claims()
                },
                "nbf",
            ),
            (
                GraphClaims {
                    tid: None,
                    ..claims()
                },
                "tid",
            ),
            (
                GraphClaims {
                    iss: None,
                    ..claims()
                },
                "iss",
            ),
        ];
        for (c, name) in cases {
            assert!(matches!(check(&c), Err(TokenError::MissingClaim(n)) if n == name));
        }
    }

    #[test]
    fn tenant_must_be_served_and_matches_case_insensitively() {
        let c = GraphClaims {
            tid: Some("33333333-3333-3333-3333-333333333333".into()),
            iss: Some("https://sts.windows.net/33333333-3333-3333-3333-333333333333/".into()),
            ..claims()
        };
        assert!(matches!(check(&c), Err(TokenError::TenantNotAllowed(t)) if t.starts_with("3333")));
        let upper = TENANT.to_ascii_uppercase();
        let c = GraphClaims {
            tid: Some(upper.clone()),
            iss: Some(format!("https://sts.windows.net/{upper}/")),
            ..claims()
        };
        assert_eq!(check(&c).unwrap().tenant, TENANT);
    }

    #[test]
    fn header_gate_refuses_other_algorithms_and_shapes() {
        let body = b64(r#"{"aud":"x"}"#);
        let token = |header: &str| format!("{}.{body}.c2ln", b64(header));
        assert_eq!(
            signing_key_id(&token(r#"{"alg":"RS256","kid":"k1"}"#)).unwrap(),
            "k1"
        );
        for alg in ["none", "HS256", "RS384", "PS256", "ES256", "rs256"] {
            let t = token(&format!(r#"{{"alg":"{alg}","kid":"k1"}}"#));
            assert!(
                matches!(signing_key_id(&t), Err(TokenError::UnsupportedAlgorithm(a)) if a == alg),
                "{alg}"
            );
        }
        for bad in [
            String::new(),
            "abc".into(),
            "a.b".into(),
            "a.b.c.d".into(),
            format!("{}.{body}.", b64("not json")),
            format!("{}.{body}.x", b64(r#"{"kid":"k1"}"#)),
            format!("%%%.{body}.x"),
        ] {
            assert!(
                matches!(signing_key_id(&bad), Err(TokenError::Malformed(_))),
                "{bad}"
            );
        }
        assert!(matches!(
            signing_key_id(&token(r#"{"alg":"RS256"}"#)),
            Err(TokenError::Malformed(_))
        ));
    }

    #[test]
    fn error_text_keeps_token_values_short_and_printable() {
        let alg = format!("{}\n\u{1b}[31mforged{}", "A".repeat(40), "B".repeat(40));
        let header = serde_json::json!({"alg": alg, "kid": "k"}).to_string();
        let t = format!("{}.e30.c2ln", b64(&header));
        let err = signing_key_id(&t).unwrap_err().to_string();
        assert!(!err.contains('\n') && !err.contains('\u{1b}'), "{err}");
        assert!(err.len() < 80, "{err}");
        assert!(!err.contains(&t));
    }

    #[tokio::test]
    async fn an_empty_batch_is_refused_without_any_fetch() {
        let v = TokenValidator::new(
            "http://127.0.0.1:9",
            vec!["app".into()],
            vec![TENANT.into()],
            reqwest::Client::new(),
        );
        assert!(matches!(v.validate(&[]).await, Err(TokenError::NoTokens)));
        assert_eq!(v.stats(), ValidatorStats::default());
    }

    fn verified(tenant: &str, exp: u64) -> Verified {
        Verified {
            tenant: tenant.into(),
            exp,
        }
    }

    #[test]
    fn cache_rechecks_expiry_on_every_hit() {
        let mut cache = VerifiedCache::new(4);
        cache.insert([1; 32], verified("t", NOW + 10), NOW, LEEWAY);
        assert!(matches!(cache.get(&[1; 32], NOW + 10 + LEEWAY, LEEWAY), Some(Ok(t)) if t == "t"));
        assert!(matches!(
            cache.get(&[1; 32], NOW + 11 + LEEWAY, LEEWAY),
            Some(Err(TokenError::Expired { .. }))
        ));
        assert!(
            cache.get(&[1; 32], NOW, LEEWAY).is_none(),
            "an expired entry is forgotten"
        );
        assert!(cache.get(&[2; 32], NOW, LEEWAY).is_none());
    }

    #[test]
    fn cache_stays_bounded_evicting_expired_then_soonest() {
        let mut cache = VerifiedCache::new(3);
        cache.insert([1; 32], verified("a", NOW - LEEWAY - 1), NOW - 1000, LEEWAY);
        cache.insert([2; 32], verified("b", NOW + 50), NOW, LEEWAY);
        cache.insert([3; 32], verified("c", NOW + 20), NOW, LEEWAY);
        cache.insert([4; 32], verified("d", NOW + 90), NOW, LEEWAY);
        assert_eq!(cache.entries.len(), 3);
        assert!(!cache.entries.contains_key(&[1; 32]), "expired goes first");
        cache.insert([5; 32], verified("e", NOW + 99), NOW, LEEWAY);
        assert_eq!(cache.entries.len(), 3);
        assert!(
            !cache.entries.contains_key(&[3; 32]),
            "then the soonest to expire"
        );
        let mut none = VerifiedCache::new(0);
        none.insert([1; 32], verified("a", NOW + 50), NOW, LEEWAY);
        assert!(none.entries.is_empty());
    }
}
