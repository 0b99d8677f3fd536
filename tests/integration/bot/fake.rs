//! A fake Bot Connector on loopback, speaking the documented wire protocol:
//! - the Bot Framework's OpenID metadata (`GET /v1/.well-known/openidconfiguration`) and JWKS
//!   (`GET /v1/.well-known/keys`) whose keys carry `endorsements`;
//! - Entra ID's keys for a single-tenant bot (`GET /{tenant}/discovery/v2.0/keys`, no
//!   endorsements); the metadata pointing there and the token endpoint the bot's credential
//!   uses (`POST /{tenant}/oauth2/v2.0/token`) are mounted on the fake Entra behind TLS
//!   ([`mount_entra`]), since azure_identity requires an https authority;
//! - the Bot APIs: `GET /v1/meetings/{id}`, `GET /v1/meetings/{id}/participants/{pid}?tenantId=`,
//!   `POST /v3/conversations/{id}/activities` (answers a `ResourceResponse` with a new activity
//!   id: 1700000000000, then one more each time) and
//!   `PUT /v3/conversations/{id}/activities/{activityId}` (replaces an activity it issued in
//!   that conversation; 404 for any other), each requiring the bot's bearer token.
//!
//! It mints Connector tokens ([`BotToken`]) that every test can bend into each kind of forgery.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{SystemTime, UNIX_EPOCH};

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use openssl::hash::MessageDigest;
use openssl::pkey::{PKey, Private};
use openssl::rsa::Rsa;
use openssl::sign::Signer;
use serde_json::{Map, Value, json};
use warp::Filter;

pub const BOT_APP_ID: &str = "5f6e7d8c-9b0a-4c1d-8e2f-3a4b5c6d7e8f";
pub const BOT_TENANT: &str = "3c2b1a09-8f7e-4d6c-b5a4-938271605f4e";
pub const BOT_SECRET: &str = "bot-secret-never-logged-4Tq";
pub const BOT_ACCESS_TOKEN: &str = "bot-access-token-never-logged-8Wd";
pub const ISSUER: &str = "https://api.botframework.com";
/// The key endorsed for Teams.
pub const TEAMS_KID: &str = "bf-teams";
/// A published key endorsed for another channel only.
pub const WEBCHAT_KID: &str = "bf-webchat";
/// Entra's key (single-tenant tokens).
pub const ENTRA_KID: &str = "entra-1";

struct Key {
    kid: String,
    private: PKey<Private>,
    public_pem: Vec<u8>,
    jwk: Value,
}

impl Key {
    fn generate(kid: &str, endorsements: Option<&[&str]>) -> Key {
        let rsa = Rsa::generate(2048).unwrap();
        let mut jwk = json!({
            "kty": "RSA", "use": "sig", "kid": kid,
            "n": URL_SAFE_NO_PAD.encode(rsa.n().to_vec()),
            "e": URL_SAFE_NO_PAD.encode(rsa.e().to_vec()),
        });
        if let Some(e) = endorsements {
            jwk["endorsements"] = json!(e);
        }
        let private = PKey::from_rsa(rsa).unwrap();
        Key {
            kid: kid.into(),
            public_pem: private.public_key_to_pem().unwrap(),
            private,
            jwk,
        }
    }
}

/// How a minted token is signed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Signing {
    /// RS256 with the published key named by the `kid`.
    Published,
    /// RS256 with a key that is never published (the `kid` is kept).
    Foreign,
    /// HS256 with the published public key (PEM) as the secret: algorithm confusion.
    Hs256WithPublicKey,
    /// `alg: none`, no signature.
    Unsigned,
}

/// A Connector token to mint: valid by default, every part bendable.
#[derive(Debug, Clone)]
pub struct BotToken {
    pub claims: Map<String, Value>,
    pub kid: String,
    pub alg: Option<String>,
    pub signing: Signing,
}

impl BotToken {
    /// What the Bot Connector sends for an activity from `service_url`.
    pub fn connector(service_url: &str) -> Self {
        let now = now();
        let mut claims = Map::new();
        claims.insert("iss".into(), ISSUER.into());
        claims.insert("aud".into(), BOT_APP_ID.into());
        claims.insert("serviceurl".into(), service_url.into());
        claims.insert("nbf".into(), (now - 60).into());
        claims.insert("exp".into(), (now + 3600).into());
        BotToken {
            claims,
            kid: TEAMS_KID.into(),
            alg: None,
            signing: Signing::Published,
        }
    }

    /// An Entra-issued v2 token for the bot's tenant (single-tenant bots).
    pub fn entra(authority: &str, service_url: &str) -> Self {
        let mut t = Self::connector(service_url);
        t.claims.insert(
            "iss".into(),
            format!("{authority}/{BOT_TENANT}/v2.0").into(),
        );
        t.claims.insert("tid".into(), BOT_TENANT.into());
        t.kid = ENTRA_KID.into();
        t
    }

    pub fn claim(mut self, name: &str, value: impl Into<Value>) -> Self {
        self.claims.insert(name.into(), value.into());
        self
    }

    pub fn kid(mut self, kid: &str) -> Self {
        self.kid = kid.into();
        self
    }

    pub fn signing(mut self, signing: Signing) -> Self {
        self.signing = signing;
        self
    }
}

fn now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

/// A recorded Bot API call.
#[derive(Debug, Clone)]
pub struct Call {
    pub method: String,
    /// Path and query as received (still percent-encoded).
    pub target: String,
    pub authorization: Option<String>,
    pub body: Option<Value>,
}

#[derive(Default)]
struct State {
    calls: Vec<Call>,
    /// Participants by participant id: their `meeting.role`.
    roles: HashMap<String, String>,
    /// Activities posted, as (conversation id, activity id): what a PUT may replace.
    activities: Vec<(String, String)>,
    /// How many activity ids were issued.
    issued: u64,
}

/// The first activity id the fake issues (Teams' ids are millisecond timestamps).
pub const FIRST_ACTIVITY_ID: u64 = 1_700_000_000_000;

pub struct FakeConnector {
    pub url: String,
    keys: Arc<Vec<Key>>,
    foreign: Arc<Key>,
    state: Arc<Mutex<State>>,
    jwks_requests: Arc<AtomicU64>,
    server: tokio::task::JoinHandle<()>,
}

impl Drop for FakeConnector {
    fn drop(&mut self) {
        self.server.abort();
    }
}

impl FakeConnector {
    /// Starts the fake on `127.0.0.1:0`.
    pub async fn start() -> FakeConnector {
        Self::start_on(0).await
    }

    /// Starts the fake on `127.0.0.1:port` (0 = any): a connector that was down comes back on
    /// its own address.
    pub async fn start_on(port: u16) -> FakeConnector {
        let keys = Arc::new(vec![
            Key::generate(TEAMS_KID, Some(&["msteams", "skype"])),
            Key::generate(WEBCHAT_KID, Some(&["webchat"])),
            Key::generate(ENTRA_KID, None),
        ]);
        let foreign = Arc::new(Key::generate("never-published", None));
        let state = Arc::new(Mutex::new(State::default()));
        let jwks_requests = Arc::new(AtomicU64::new(0));
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", port))
            .await
            .unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let routes = routes(
            url.clone(),
            keys.clone(),
            state.clone(),
            jwks_requests.clone(),
        );
        let server = tokio::spawn(warp::serve(routes).incoming(listener).run());
        FakeConnector {
            url,
            keys,
            foreign,
            state,
            jwks_requests,
            server,
        }
    }

    /// `BOT_OPENID_METADATA` for this fake.
    pub fn metadata_url(&self) -> String {
        format!("{}/v1/.well-known/openidconfiguration", self.url)
    }

    /// The `serviceUrl` activities name: this fake, as Teams' regional path.
    pub fn service_url(&self) -> String {
        format!("{}/teams/", self.url)
    }

    pub fn jwks_requests(&self) -> u64 {
        self.jwks_requests.load(Ordering::SeqCst)
    }

    pub fn set_role(&self, participant: &str, role: &str) {
        self.state
            .lock()
            .unwrap()
            .roles
            .insert(participant.into(), role.into());
    }

    /// Forgets the activities posted so far (someone deleted the messages): a PUT of one is a 404.
    pub fn forget_activities(&self) {
        self.state.lock().unwrap().activities.clear();
    }

    pub fn calls(&self) -> Vec<Call> {
        self.state.lock().unwrap().calls.clone()
    }

    /// A compact JWS as `spec` says.
    pub fn mint(&self, spec: &BotToken) -> String {
        let published = self.keys.iter().find(|k| k.kid == spec.kid);
        let key = match spec.signing {
            Signing::Foreign => &self.foreign,
            _ => published.unwrap_or(&self.keys[0]),
        };
        let default_alg = match spec.signing {
            Signing::Published | Signing::Foreign => "RS256",
            Signing::Hs256WithPublicKey => "HS256",
            Signing::Unsigned => "none",
        };
        let header = json!({"typ": "JWT", "alg": spec.alg.as_deref().unwrap_or(default_alg), "kid": spec.kid, "x5t": spec.kid});
        let input = format!(
            "{}.{}",
            URL_SAFE_NO_PAD.encode(header.to_string()),
            URL_SAFE_NO_PAD.encode(Value::Object(spec.claims.clone()).to_string())
        );
        let signature = match spec.signing {
            Signing::Published | Signing::Foreign => sign(&key.private, &input),
            Signing::Hs256WithPublicKey => sign(&PKey::hmac(&key.public_pem).unwrap(), &input),
            Signing::Unsigned => Vec::new(),
        };
        format!("{input}.{}", URL_SAFE_NO_PAD.encode(signature))
    }
}

fn sign(key: &PKey<Private>, input: &str) -> Vec<u8> {
    let mut signer = Signer::new(MessageDigest::sha256(), key).unwrap();
    signer.sign_oneshot_to_vec(input.as_bytes()).unwrap()
}

type Shared<T> = Arc<T>;

fn routes(
    base: String,
    keys: Shared<Vec<Key>>,
    state: Shared<Mutex<State>>,
    jwks_requests: Shared<AtomicU64>,
) -> impl Filter<Extract = (warp::reply::Response,), Error = warp::Rejection>
+ Clone
+ Send
+ Sync
+ 'static {
    use warp::Reply;
    let b = base.clone();
    let bf_metadata = warp::get()
        .and(warp::path!("v1" / ".well-known" / "openidconfiguration"))
        .map(move || {
            warp::reply::json(&json!({
                "issuer": ISSUER,
                "authorization_endpoint": "https://invalid.botframework.com",
                "jwks_uri": format!("{b}/v1/.well-known/keys"),
                "id_token_signing_alg_values_supported": ["RS256"],
                "token_endpoint_auth_methods_supported": ["private_key_jwt"],
            }))
            .into_response()
        });
    let (k1, r1) = (keys.clone(), jwks_requests.clone());
    let bf_keys = warp::get()
        .and(warp::path!("v1" / ".well-known" / "keys"))
        .map(move || {
            r1.fetch_add(1, Ordering::SeqCst);
            let published: Vec<Value> = k1
                .iter()
                .filter(|k| k.kid != ENTRA_KID)
                .map(|k| k.jwk.clone())
                .collect();
            warp::reply::json(&json!({ "keys": published })).into_response()
        });
    let k2 = keys.clone();
    let entra_keys = warp::get()
        .and(warp::path!(String / "discovery" / "v2.0" / "keys"))
        .map(move |_tenant: String| {
            let published: Vec<Value> = k2
                .iter()
                .filter(|k| k.kid == ENTRA_KID)
                .map(|k| k.jwk.clone())
                .collect();
            warp::reply::json(&json!({ "keys": published })).into_response()
        });
    let api = warp::any()
        .and(warp::method())
        .and(warp::path::full())
        .and(warp::query::raw().or(warp::any().map(String::new)).unify())
        .and(warp::header::optional::<String>("authorization"))
        .and(warp::body::bytes())
        .map(
            move |method: warp::http::Method,
                  path: warp::path::FullPath,
                  query: String,
                  authorization: Option<String>,
                  body: bytes::Bytes| {
                bot_api(&state, method, path.as_str(), &query, authorization, &body)
            },
        );
    bf_metadata
        .or(bf_keys)
        .unify()
        .or(entra_keys)
        .unify()
        .or(api)
        .unify()
}

/// The Bot APIs under the `serviceUrl` path `/teams/`.
fn bot_api(
    state: &Mutex<State>,
    method: warp::http::Method,
    path: &str,
    query: &str,
    authorization: Option<String>,
    body: &[u8],
) -> warp::reply::Response {
    use warp::Reply;
    let target = if query.is_empty() {
        path.to_string()
    } else {
        format!("{path}?{query}")
    };
    let mut state = state.lock().unwrap();
    state.calls.push(Call {
        method: method.to_string(),
        target,
        authorization: authorization.clone(),
        body: serde_json::from_slice(body).ok(),
    });
    if authorization.as_deref() != Some(&format!("Bearer {BOT_ACCESS_TOKEN}")) {
        return warp::http::StatusCode::UNAUTHORIZED.into_response();
    }
    let segments: Vec<String> = path
        .trim_matches('/')
        .split('/')
        .map(|s| {
            percent_encoding::percent_decode_str(s)
                .decode_utf8_lossy()
                .into_owned()
        })
        .collect();
    let segments: Vec<&str> = segments.iter().map(String::as_str).collect();
    match (method.as_str(), segments.as_slice()) {
        ("GET", ["teams", "v1", "meetings", id]) => warp::reply::json(&json!({
            "details": {
                "id": id, "msGraphResourceId": "MSo1N2Y5ZGFjYy03MWJhLTQ3NDAtOTQ5Ni00ZjhjMDBhMzdiMjAqMA**",
                "scheduledStartTime": "2026-11-30T10:00:00Z", "scheduledEndTime": "2026-11-30T11:00:00Z",
                "joinUrl": "https://teams.microsoft.com/l/meetup-join/19%3ameeting_fake%40thread.v2/0",
                "title": "Weekly sync", "type": "Scheduled",
            },
            "conversation": {"isGroup": true, "conversationType": "groupchat", "id": "19:meeting_fake@thread.v2"},
            "organizer": {"id": "29:organizer", "aadObjectId": "organizer-oid", "tenantId": BOT_TENANT},
        }))
        .into_response(),
        ("GET", ["teams", "v1", "meetings", _id, "participants", pid]) => {
            let role = state.roles.get(*pid).cloned().unwrap_or_else(|| "Attendee".into());
            warp::reply::json(&json!({
                "user": {"id": format!("29:{pid}"), "aadObjectId": pid, "name": format!("User {pid}"), "tenantId": BOT_TENANT},
                "meeting": {"role": role, "inMeeting": true},
                "conversation": {"id": "19:meeting_fake@thread.v2", "isGroup": true},
            }))
            .into_response()
        }
        ("POST", ["teams", "v3", "conversations", conversation, "activities"]) => {
            let id = (FIRST_ACTIVITY_ID + state.issued).to_string();
            state.issued += 1;
            state.activities.push((conversation.to_string(), id.clone()));
            warp::reply::json(&json!({ "id": id })).into_response()
        }
        ("PUT", ["teams", "v3", "conversations", conversation, "activities", id]) => {
            let known = state
                .activities
                .iter()
                .any(|(c, a)| c == conversation && a == id);
            if known {
                warp::reply::json(&json!({ "id": id })).into_response()
            } else {
                warp::http::StatusCode::NOT_FOUND.into_response()
            }
        }
        _ => warp::http::StatusCode::NOT_FOUND.into_response(),
    }
}

/// On the fake Entra (behind TLS, the harness's `AUTHORITY_HOST`): the bot tenant's OpenID
/// metadata (keys on this fake) and its token endpoint, which gives the bot its token for the Bot
/// APIs only for the client-credentials grant of `BOT_APP_ID` + `BOT_SECRET` and the Bot
/// Framework's scope.
pub async fn mount_entra(entra: &wiremock::MockServer, authority: &str, connector: &FakeConnector) {
    use wiremock::matchers::{method, path};
    use wiremock::{Mock, ResponseTemplate};
    Mock::given(method("GET"))
        .and(path(format!(
            "/{BOT_TENANT}/v2.0/.well-known/openid-configuration"
        )))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({
            "issuer": format!("{authority}/{BOT_TENANT}/v2.0"),
            "jwks_uri": format!("{}/{BOT_TENANT}/discovery/v2.0/keys", connector.url),
            "id_token_signing_alg_values_supported": ["RS256"],
        })))
        .mount(entra)
        .await;
    mount_bot_token(entra).await;
}

/// On the fake Entra: the bot tenant's token endpoint (client-credentials grant of `BOT_APP_ID`
/// + `BOT_SECRET` for the Bot Framework's scope only).
pub async fn mount_bot_token(entra: &wiremock::MockServer) {
    use wiremock::matchers::{body_string_contains, method, path};
    use wiremock::{Mock, ResponseTemplate};
    Mock::given(method("POST"))
        .and(path(format!("/{BOT_TENANT}/oauth2/v2.0/token")))
        .and(body_string_contains("grant_type=client_credentials"))
        .and(body_string_contains(format!("client_id={BOT_APP_ID}")))
        .and(body_string_contains(format!("client_secret={BOT_SECRET}")))
        .and(body_string_contains(
            "scope=https%3A%2F%2Fapi.botframework.com%2F.default",
        ))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({
            "token_type": "Bearer", "expires_in": 3599, "ext_expires_in": 3599,
            "access_token": BOT_ACCESS_TOKEN,
        })))
        .mount(entra)
        .await;
}
