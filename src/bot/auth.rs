//! Inbound authentication of the bot's messaging endpoint: the JWT the Bot Connector puts in
//! `Authorization: Bearer …`, checked as Microsoft's "Authentication with the Bot Connector API"
//! (connector to bot) specifies:
//!
//! 1. the `Bearer` scheme, a compact JWS;
//! 2. keys from the OpenID metadata at `BOT_OPENID_METADATA` (default
//!    [`crate::config::DEFAULT_BOT_OPENID_METADATA`]) → `jwks_uri`, cached and refreshed on an unknown `kid`,
//!    rate-limited ([`crate::jwks::JwksCache`], shared with Graph's validationTokens);
//! 3. `iss` = [`BOT_FRAMEWORK_ISSUER`]; `aud` = `BOT_APP_ID`; `exp`/`nbf` with 5 minutes of
//!    clock skew;
//! 4. the signature, with an algorithm the metadata lists (RS256, RS384 or RS512; `none` and
//!    HMAC are refused before any key is looked up);
//! 5. the `serviceurl` claim equals the activity's `serviceUrl` (exactly, as the Bot Framework
//!    SDKs compare);
//! 6. the signing key's `endorsements` include the activity's `channelId` (`msteams`).
//!
//! A single-tenant bot (`BOT_TENANT_ID`) also accepts tokens Entra ID issues for that tenant:
//! `iss` `https://sts.windows.net/{tid}/` or `{AUTHORITY_HOST}/{tid}/v2.0`, keys from
//! `{AUTHORITY_HOST}/{tid}/v2.0/.well-known/openid-configuration`, `tid` = `BOT_TENANT_ID`, the
//! same audience, lifetime and `serviceurl` rules. Entra's keys carry no endorsements, so rule 6
//! applies to Bot Framework keys only; a Bot Framework key without endorsements is refused.

use std::sync::Arc;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::{Algorithm, Validation};
use serde::Deserialize;

use crate::jwks::{JwksCache, JwksError, JwksOptions, KeyLookupError, printable, rsa_algorithm};

/// The Bot Connector's token issuer.
pub const BOT_FRAMEWORK_ISSUER: &str = "https://api.botframework.com";
/// Clock skew allowed on `exp` and `nbf` ("industry-standard clock-skew is 5 minutes").
pub const LEEWAY_SECS: u64 = 300;
/// Tokens longer than this are refused before any parsing (connector tokens are 1-2 KiB).
const MAX_TOKEN_BYTES: usize = 16 * 1024;

/// Why a request to the messaging endpoint is not from the Bot Connector. Values taken from the
/// token are cut to a short, printable form; the token itself is never in the text.
#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    #[error("no Authorization header")]
    NoHeader,
    #[error("the Authorization header is not `Bearer <token>`")]
    NotBearer,
    #[error("malformed token: {0}")]
    Malformed(&'static str),
    #[error("token algorithm `{0}` is not RS256, RS384 or RS512")]
    UnsupportedAlgorithm(String),
    #[error("token algorithm `{0}` is not one the issuer's metadata lists for this key")]
    AlgorithmNotListed(String),
    #[error("token issuer is neither the Bot Connector nor Entra ID for BOT_TENANT_ID")]
    WrongIssuer,
    #[error("token is signed with key `{0}`, which the issuer does not publish")]
    UnknownKey(String),
    #[error("cannot get the issuer's signing keys: {0}")]
    Keys(#[source] JwksError),
    #[error("token signature does not verify")]
    BadSignature,
    #[error("token expired")]
    Expired,
    #[error("token is not valid yet")]
    NotYetValid,
    #[error("token audience is not BOT_APP_ID")]
    WrongAudience,
    #[error("token tenant is not BOT_TENANT_ID")]
    WrongTenant,
    #[error("token lacks the claim `{0}`")]
    MissingClaim(&'static str),
    #[error("token serviceurl claim does not match the activity's serviceUrl")]
    ServiceUrlMismatch,
    #[error("signing key is not endorsed for channel `{0}`")]
    NotEndorsed(String),
}

impl AuthError {
    /// A stable code for the archive's rejection records.
    pub fn code(&self) -> &'static str {
        match self {
            AuthError::NoHeader => "noHeader",
            AuthError::NotBearer => "notBearer",
            AuthError::Malformed(_) => "malformed",
            AuthError::UnsupportedAlgorithm(_) => "unsupportedAlgorithm",
            AuthError::AlgorithmNotListed(_) => "algorithmNotListed",
            AuthError::WrongIssuer => "wrongIssuer",
            AuthError::UnknownKey(_) => "unknownKey",
            AuthError::Keys(_) => "keysUnavailable",
            AuthError::BadSignature => "badSignature",
            AuthError::Expired => "expired",
            AuthError::NotYetValid => "notYetValid",
            AuthError::WrongAudience => "wrongAudience",
            AuthError::WrongTenant => "wrongTenant",
            AuthError::MissingClaim(_) => "missingClaim",
            AuthError::ServiceUrlMismatch => "serviceUrlMismatch",
            AuthError::NotEndorsed(_) => "notEndorsed",
        }
    }
}

/// Who signed an accepted token.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenSource {
    /// The Bot Connector (`https://api.botframework.com`).
    BotFramework,
    /// Entra ID, for the single-tenant bot's tenant.
    Entra,
}

/// What an accepted token proved.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BotIdentity {
    pub source: TokenSource,
    /// The `serviceurl` claim (equal to the activity's `serviceUrl`).
    pub service_url: String,
}

/// The claims checked here beyond what `jsonwebtoken` checks (`iss`, `aud`, `exp`, `nbf`).
#[derive(Deserialize)]
struct BotClaims {
    serviceurl: Option<String>,
    tid: Option<String>,
}

#[derive(Deserialize)]
struct RawHeader {
    alg: String,
    kid: Option<String>,
}

#[derive(Deserialize)]
struct IssuerOnly {
    iss: Option<String>,
}

/// Checks the messaging endpoint's tokens. Share it (`Arc`): its key caches are the point.
pub struct BotAuthenticator {
    /// `BOT_APP_ID`: the audience.
    app_id: String,
    /// `BOT_TENANT_ID`, lower case: Entra-issued tokens of this tenant are accepted too.
    tenant: Option<String>,
    /// `AUTHORITY_HOST`, without a trailing slash: the v2 issuer of Entra tokens.
    authority: String,
    bot_framework: Arc<JwksCache>,
    entra: Option<Arc<JwksCache>>,
}

impl std::fmt::Debug for BotAuthenticator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BotAuthenticator")
            .field("app_id", &self.app_id)
            .field("tenant", &self.tenant)
            .finish_non_exhaustive()
    }
}

impl BotAuthenticator {
    /// `metadata_url`: `BOT_OPENID_METADATA`; `authority_host`: `AUTHORITY_HOST`; `options`
    /// tune both key caches (tests shorten the rate limit).
    pub fn new(
        app_id: &str,
        tenant: Option<&str>,
        metadata_url: &str,
        authority_host: &str,
        http: reqwest::Client,
        options: JwksOptions,
    ) -> Self {
        let authority = authority_host.trim_end_matches('/').to_owned();
        let tenant = tenant.map(str::to_ascii_lowercase);
        let entra = tenant.as_ref().map(|t| {
            Arc::new(
                JwksCache::new(
                    format!("{authority}/{t}/v2.0/.well-known/openid-configuration"),
                    http.clone(),
                )
                .with_options(options.clone()),
            )
        });
        Self {
            app_id: app_id.to_owned(),
            tenant,
            authority,
            bot_framework: Arc::new(JwksCache::new(metadata_url, http).with_options(options)),
            entra,
        }
    }

    /// Key fetches so far (Bot Framework, Entra).
    pub fn key_fetches(&self) -> (u64, u64) {
        (
            self.bot_framework.stats().fetches,
            self.entra.as_ref().map_or(0, |c| c.stats().fetches),
        )
    }

    /// Checks `authorization` (the header's value) for an activity with `service_url` and
    /// `channel_id`.
    pub async fn authenticate(
        &self,
        authorization: Option<&str>,
        service_url: &str,
        channel_id: &str,
    ) -> Result<BotIdentity, AuthError> {
        let token = bearer_token(authorization)?;
        let (alg, kid) = header_of(token)?;
        let (source, issuer) = self.issuer_of(token)?;
        let cache = match source {
            TokenSource::BotFramework => &self.bot_framework,
            TokenSource::Entra => self.entra.as_ref().ok_or(AuthError::WrongIssuer)?,
        };
        let key = cache.key(&kid).await.map_err(|e| match e {
            KeyLookupError::Unknown(kid) => AuthError::UnknownKey(kid),
            KeyLookupError::Fetch(e) => AuthError::Keys(e),
        })?;
        if !key.allows(alg) {
            return Err(AuthError::AlgorithmNotListed(format!("{alg:?}")));
        }

        let mut validation = Validation::new(alg);
        validation.leeway = LEEWAY_SECS;
        validation.validate_exp = true;
        validation.validate_nbf = true;
        validation.set_required_spec_claims(&["exp", "aud", "iss"]);
        validation.set_audience(&[&self.app_id]);
        validation.set_issuer(&[&issuer]);
        let claims = jsonwebtoken::decode::<BotClaims>(token, &key.key, &validation)
            .map_err(map_jwt_error)?
            .claims;

        if source == TokenSource::BotFramework && !key.endorses(channel_id) {
            return Err(AuthError::NotEndorsed(printable(channel_id, 32)));
        }
        if source == TokenSource::Entra {
            let tid = claims
                .tid
                .as_deref()
                .ok_or(AuthError::MissingClaim("tid"))?;
            if Some(tid.to_ascii_lowercase()) != self.tenant {
                return Err(AuthError::WrongTenant);
            }
        }
        let claimed = claims
            .serviceurl
            .ok_or(AuthError::MissingClaim("serviceurl"))?;
        if claimed != service_url {
            return Err(AuthError::ServiceUrlMismatch);
        }
        Ok(BotIdentity {
            source,
            service_url: claimed,
        })
    }

    /// Which issuer the (not yet verified) token names, and its exact `iss` to require. The
    /// signature is then checked with that issuer's keys only, so a forged `iss` gains nothing.
    fn issuer_of(&self, token: &str) -> Result<(TokenSource, String), AuthError> {
        let claims: IssuerOnly = jsonwebtoken::dangerous::insecure_decode_claims(token)
            .map_err(|_| AuthError::Malformed("claims are not base64url JSON"))?;
        let iss = claims.iss.ok_or(AuthError::MissingClaim("iss"))?;
        if iss == BOT_FRAMEWORK_ISSUER {
            return Ok((TokenSource::BotFramework, iss));
        }
        let Some(tenant) = &self.tenant else {
            return Err(AuthError::WrongIssuer);
        };
        let v1 = format!("https://sts.windows.net/{tenant}/");
        let v2 = format!("{}/{tenant}/v2.0", self.authority);
        if iss.eq_ignore_ascii_case(&v1) || iss.eq_ignore_ascii_case(&v2) {
            Ok((TokenSource::Entra, iss))
        } else {
            Err(AuthError::WrongIssuer)
        }
    }
}

/// The token of `Bearer <token>` (the scheme is case-insensitive, as HTTP auth schemes are).
fn bearer_token(authorization: Option<&str>) -> Result<&str, AuthError> {
    let value = authorization
        .map(str::trim)
        .filter(|v| !v.is_empty())
        .ok_or(AuthError::NoHeader)?;
    let (scheme, token) = value.split_once(' ').ok_or(AuthError::NotBearer)?;
    let token = token.trim();
    if !scheme.eq_ignore_ascii_case("bearer") || token.is_empty() || token.contains(' ') {
        return Err(AuthError::NotBearer);
    }
    if token.len() > MAX_TOKEN_BYTES {
        return Err(AuthError::Malformed("longer than any connector token"));
    }
    Ok(token)
}

/// The algorithm and `kid` of a compact JWS; anything but RS256/384/512 is refused here.
fn header_of(token: &str) -> Result<(Algorithm, String), AuthError> {
    let mut parts = token.split('.');
    let (Some(header), Some(_), Some(_), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(AuthError::Malformed("not three dot-separated parts"));
    };
    let header: RawHeader = URL_SAFE_NO_PAD
        .decode(header)
        .ok()
        .and_then(|bytes| serde_json::from_slice(&bytes).ok())
        .ok_or(AuthError::Malformed(
            "header is not base64url JSON with `alg`",
        ))?;
    let alg = rsa_algorithm(&header.alg)
        .ok_or_else(|| AuthError::UnsupportedAlgorithm(printable(&header.alg, 16)))?;
    let kid = header
        .kid
        .ok_or(AuthError::Malformed("header has no `kid`"))?;
    Ok((alg, kid))
}

fn map_jwt_error(error: jsonwebtoken::errors::Error) -> AuthError {
    match error.kind() {
        ErrorKind::InvalidSignature | ErrorKind::InvalidRsaKey(_) | ErrorKind::InvalidKeyFormat => {
            AuthError::BadSignature
        }
        ErrorKind::ExpiredSignature => AuthError::Expired,
        ErrorKind::ImmatureSignature => AuthError::NotYetValid,
        ErrorKind::InvalidAudience => AuthError::WrongAudience,
        ErrorKind::InvalidIssuer => AuthError::WrongIssuer,
        ErrorKind::MissingRequiredClaim(claim) => AuthError::MissingClaim(match claim.as_str() {
            "exp" => "exp",
            "aud" => "aud",
            "iss" => "iss",
            _ => "a required claim",
        }),
        ErrorKind::InvalidAlgorithm
        | ErrorKind::UnsupportedAlgorithm
        | ErrorKind::InvalidAlgorithmName => AuthError::UnsupportedAlgorithm("?".into()),
        _ => AuthError::Malformed("claims are not JSON of the expected shape"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn b64(json: &str) -> String {
        URL_SAFE_NO_PAD.encode(json)
    }

    #[test]
    fn only_bearer_tokens_of_sane_size_pass_the_header_gate() {
        assert_eq!(bearer_token(Some("Bearer abc")).unwrap(), "abc");
        assert_eq!(bearer_token(Some("bearer  abc ")).unwrap(), "abc");
        assert!(matches!(bearer_token(None), Err(AuthError::NoHeader)));
        assert!(matches!(bearer_token(Some("  ")), Err(AuthError::NoHeader)));
        for bad in ["Basic abc", "Bearer", "Bearer a b", "abc"] {
            assert!(
                matches!(bearer_token(Some(bad)), Err(AuthError::NotBearer)),
                "{bad}"
            );
        }
        let long = format!("Bearer {}", "a".repeat(MAX_TOKEN_BYTES + 1));
        assert!(matches!(
            bearer_token(Some(&long)),
            Err(AuthError::Malformed(_))
        ));
    }

    #[test]
    fn only_rsa_algorithms_with_a_kid_are_looked_at() {
        let token = |header: &str| format!("{}.{}.c2ln", b64(header), b64("{}"));
        for alg in ["RS256", "RS384", "RS512"] {
            let (a, kid) = header_of(&token(&format!(r#"{{"alg":"{alg}","kid":"k"}}"#))).unwrap();
            assert_eq!(format!("{a:?}"), alg);
            assert_eq!(kid, "k");
        }
        for alg in ["none", "HS256", "PS256", "ES256", "rs256"] {
            let t = token(&format!(r#"{{"alg":"{alg}","kid":"k"}}"#));
            assert!(
                matches!(header_of(&t), Err(AuthError::UnsupportedAlgorithm(a)) if a == alg),
                "{alg}"
            );
        }
        assert!(matches!(
            header_of(&token(r#"{"alg":"RS256"}"#)),
            Err(AuthError::Malformed(_))
        ));
        assert!(matches!(header_of("a.b"), Err(AuthError::Malformed(_))));
    }

    #[test]
    fn the_issuer_picks_the_key_source() {
        let auth = BotAuthenticator::new(
            "app",
            Some("72F988BF-86F1-41AF-91AB-2D7CD011DB47"),
            crate::config::DEFAULT_BOT_OPENID_METADATA,
            "https://login.microsoftonline.com/",
            reqwest::Client::new(),
            JwksOptions::default(),
        );
        let with_iss = |iss: &str| {
            format!(
                "{}.{}.c2ln",
                b64(r#"{"alg":"RS256","kid":"k"}"#),
                b64(&serde_json::json!({ "iss": iss }).to_string())
            )
        };
        let tid = "72f988bf-86f1-41af-91ab-2d7cd011db47";
        assert_eq!(
            auth.issuer_of(&with_iss(BOT_FRAMEWORK_ISSUER)).unwrap().0,
            TokenSource::BotFramework
        );
        for iss in [
            format!("https://sts.windows.net/{tid}/"),
            format!("https://login.microsoftonline.com/{tid}/v2.0"),
        ] {
            assert_eq!(
                auth.issuer_of(&with_iss(&iss)).unwrap(),
                (TokenSource::Entra, iss)
            );
        }
        for iss in [
            "https://api.botframework.com/",
            "https://sts.windows.net/11111111-1111-1111-1111-111111111111/",
            "https://login.microsoftonline.com/common/v2.0",
            "https://evil.example",
        ] {
            assert!(
                matches!(auth.issuer_of(&with_iss(iss)), Err(AuthError::WrongIssuer)),
                "{iss}"
            );
        }
        let multi = BotAuthenticator::new(
            "app",
            None,
            crate::config::DEFAULT_BOT_OPENID_METADATA,
            "https://login.microsoftonline.com",
            reqwest::Client::new(),
            JwksOptions::default(),
        );
        assert!(matches!(
            multi.issuer_of(&with_iss(&format!("https://sts.windows.net/{tid}/"))),
            Err(AuthError::WrongIssuer)
        ));
    }
}
