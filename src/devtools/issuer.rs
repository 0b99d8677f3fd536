//! A local stand-in for Entra ID's token signing, for `handler demo`, `handler simulate` and the
//! tests: it holds RSA-2048 keys, serves the two documents a validationToken checker reads
//! (`GET /common/.well-known/openid-configuration` and the JWKS at `GET /common/discovery/keys`)
//! on `127.0.0.1`, and mints Graph-like validationTokens (v1 or v2).
//!
//! Point a [`TokenValidator`](crate::graph::tokens::TokenValidator) at
//! [`LocalIssuer::authority_host`] and it validates these tokens exactly as it validates Graph's.
//! [`TokenSpec`] can bend every claim, the `kid`, the header `alg` and the signature, so the
//! tests can forge each kind of bad token.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, OnceLock, RwLock};
use std::time::{SystemTime, UNIX_EPOCH};

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use openssl::hash::MessageDigest;
use openssl::pkey::{PKey, Private};
use openssl::rsa::Rsa;
use openssl::sign::Signer;
use serde_json::{Map, Value, json};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use warp::Filter;

use crate::graph::tokens::GRAPH_PUBLISHER_APP_ID;

#[derive(Debug, thiserror::Error)]
pub enum IssuerError {
    #[error("cannot generate an RSA key: {0}")]
    Key(#[from] openssl::error::ErrorStack),
    #[error("issuer I/O (listening on 127.0.0.1, or its key file): {0}")]
    Io(#[from] std::io::Error),
}

/// Which of Entra ID's token formats to mint.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenVersion {
    /// `iss` = `https://sts.windows.net/{tid}/`, publisher in `appid`.
    V1,
    /// `iss` = `{authority}/{tid}/v2.0`, publisher in `azp`.
    V2,
}

/// How the minted token is signed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Signing {
    /// RS256 with the published key named by the `kid` (the current key if the `kid` is not one
    /// of ours): a genuine token.
    Issuer,
    /// RS256 with a key that is never published: a forgery carrying a real `kid`.
    ForeignKey,
    /// HS256 with the published public key (PEM) as the HMAC secret: the algorithm-confusion
    /// attack.
    Hs256WithPublicKey,
    /// No signature at all (`alg: none` by default).
    Unsigned,
}

/// What to mint. `TokenSpec::v1(tenant, audience)` / `v2` give a valid token; change fields or
/// use the `with_*` methods to break it.
#[derive(Debug, Clone)]
pub struct TokenSpec {
    pub version: TokenVersion,
    /// `tid`, and the tenant in `iss`.
    pub tenant: String,
    /// `aud`: the subscribing app's id.
    pub audience: String,
    /// `appid` (v1) or `azp` (v2); Graph's change-tracking app by default.
    pub publisher: String,
    /// `nbf` relative to now, in seconds (negative = in the past).
    pub not_before_in: i64,
    /// `exp` relative to now, in seconds (negative = already expired).
    pub expires_in: i64,
    /// Header `kid`; `None` = the issuer's current key.
    pub kid: Option<String>,
    /// Header `alg`; `None` = what the signing implies (`RS256`, `HS256`, `none`).
    pub alg: Option<String>,
    pub signing: Signing,
    /// Claims set (or replaced) after the standard ones are built.
    pub claims: Map<String, Value>,
    /// Claims removed at the end.
    pub removed: Vec<String>,
}

impl TokenSpec {
    pub fn v1(tenant: &str, audience: &str) -> Self {
        Self::new(TokenVersion::V1, tenant, audience)
    }

    pub fn v2(tenant: &str, audience: &str) -> Self {
        Self::new(TokenVersion::V2, tenant, audience)
    }

    fn new(version: TokenVersion, tenant: &str, audience: &str) -> Self {
        Self {
            version,
            tenant: tenant.to_owned(),
            audience: audience.to_owned(),
            publisher: GRAPH_PUBLISHER_APP_ID.to_owned(),
            not_before_in: -300,
            expires_in: 3600,
            kid: None,
            alg: None,
            signing: Signing::Issuer,
            claims: Map::new(),
            removed: Vec::new(),
        }
    }

    pub fn with_claim(mut self, name: &str, value: impl Into<Value>) -> Self {
        self.claims.insert(name.to_owned(), value.into());
        self
    }

    pub fn without_claim(mut self, name: &str) -> Self {
        self.removed.push(name.to_owned());
        self
    }

    pub fn with_kid(mut self, kid: &str) -> Self {
        self.kid = Some(kid.to_owned());
        self
    }

    pub fn with_alg(mut self, alg: &str) -> Self {
        self.alg = Some(alg.to_owned());
        self
    }

    pub fn with_signing(mut self, signing: Signing) -> Self {
        self.signing = signing;
        self
    }
}

struct IssuerKey {
    kid: String,
    private: PKey<Private>,
    /// SubjectPublicKeyInfo PEM: what a confused verifier would use as an HMAC secret.
    public_pem: Vec<u8>,
    jwk: Value,
}

impl IssuerKey {
    fn generate() -> Result<Self, IssuerError> {
        Self::from_rsa(Rsa::generate(2048)?)
    }

    /// The key in a PEM file, created (RSA-2048, mode 0600) when missing: a stable `kid`.
    fn load_or_create(path: &std::path::Path) -> Result<Self, IssuerError> {
        match std::fs::read(path) {
            Ok(pem) => Self::from_rsa(Rsa::private_key_from_pem(&pem)?),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let rsa = Rsa::generate(2048)?;
                if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
                    std::fs::create_dir_all(dir)?;
                }
                let mut options = std::fs::OpenOptions::new();
                options.write(true).create_new(true);
                #[cfg(unix)]
                std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
                std::io::Write::write_all(&mut options.open(path)?, &rsa.private_key_to_pem()?)?;
                Self::from_rsa(rsa)
            }
            Err(e) => Err(e.into()),
        }
    }

    fn from_rsa(rsa: Rsa<Private>) -> Result<Self, IssuerError> {
        let jwk_n = URL_SAFE_NO_PAD.encode(rsa.n().to_vec());
        let jwk_e = URL_SAFE_NO_PAD.encode(rsa.e().to_vec());
        let private = PKey::from_rsa(rsa)?;
        let public_der = private.public_key_to_der()?;
        // Entra's kids are certificate thumbprints; a key thumbprint serves the same purpose.
        let kid = URL_SAFE_NO_PAD.encode(&openssl::sha::sha256(&public_der)[..20]);
        let jwk = json!({
            "kty": "RSA",
            "use": "sig",
            "alg": "RS256",
            "kid": kid,
            "n": jwk_n,
            "e": jwk_e,
        });
        Ok(Self {
            kid,
            public_pem: private.public_key_to_pem()?,
            private,
            jwk,
        })
    }
}

struct Shared {
    authority: String,
    /// Published keys; the last one signs by default.
    keys: RwLock<Vec<Arc<IssuerKey>>>,
    /// Made on first use: only negative tests need it.
    foreign: OnceLock<PKey<Private>>,
    discovery_requests: AtomicU64,
    jwks_requests: AtomicU64,
    /// While set, both documents answer 503: an Entra ID outage.
    unavailable: AtomicBool,
}

impl Shared {
    fn keys(&self) -> std::sync::RwLockReadGuard<'_, Vec<Arc<IssuerKey>>> {
        self.keys.read().unwrap_or_else(|e| e.into_inner())
    }
}

/// A running local issuer. Stops serving on [`LocalIssuer::shutdown`] or when dropped.
pub struct LocalIssuer {
    shared: Arc<Shared>,
    stop: Option<oneshot::Sender<()>>,
    server: Option<JoinHandle<()>>,
}

impl LocalIssuer {
    /// Generates a key and starts serving on `127.0.0.1` at a free port.
    pub async fn start() -> Result<Self, IssuerError> {
        let first = tokio::task::spawn_blocking(IssuerKey::generate)
            .await
            .expect("RSA key generation does not panic")?;
        Self::serve(first, 0).await
    }

    /// Serves on `127.0.0.1:port` (0 = any) with the key kept in `key_path` (created if
    /// missing), so a handler configured with this `AUTHORITY_HOST` keeps trusting it across
    /// runs: what `handler simulate` uses.
    pub async fn start_persistent(
        port: u16,
        key_path: &std::path::Path,
    ) -> Result<Self, IssuerError> {
        let path = key_path.to_path_buf();
        let key = tokio::task::spawn_blocking(move || IssuerKey::load_or_create(&path))
            .await
            .expect("RSA key loading does not panic")?;
        Self::serve(key, port).await
    }

    async fn serve(first: IssuerKey, port: u16) -> Result<Self, IssuerError> {
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", port)).await?;
        let port = listener.local_addr()?.port();
        let shared = Arc::new(Shared {
            authority: format!("http://127.0.0.1:{port}"),
            keys: RwLock::new(vec![Arc::new(first)]),
            foreign: OnceLock::new(),
            discovery_requests: AtomicU64::new(0),
            jwks_requests: AtomicU64::new(0),
            unavailable: AtomicBool::new(false),
        });
        let (stop, stopped) = oneshot::channel::<()>();
        let server = warp::serve(routes(shared.clone()))
            .incoming(listener)
            .graceful(async {
                // A dropped sender means the issuer is gone: stop as well.
                let _ = stopped.await;
            })
            .run();
        tracing::debug!(authority = %shared.authority, "local token issuer listening");
        Ok(Self {
            shared,
            stop: Some(stop),
            server: Some(tokio::spawn(server)),
        })
    }

    /// `http://127.0.0.1:PORT`: the `AUTHORITY_HOST` that makes a validator trust this issuer.
    pub fn authority_host(&self) -> &str {
        &self.shared.authority
    }

    /// The `kid` of the key that signs by default.
    pub fn current_kid(&self) -> String {
        self.shared
            .keys()
            .last()
            .map(|k| k.kid.clone())
            .expect("an issuer always holds a key")
    }

    /// Publishes a new key and signs with it from now on; older keys stay published, as in
    /// Entra ID's rotation. Returns the new `kid`.
    pub fn rotate_key(&self) -> Result<String, IssuerError> {
        let key = IssuerKey::generate()?;
        let kid = key.kid.clone();
        self.shared
            .keys
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .push(Arc::new(key));
        Ok(kid)
    }

    /// Simulates an outage: while `true`, discovery and JWKS answer 503 Service Unavailable.
    pub fn set_unavailable(&self, unavailable: bool) {
        self.shared.unavailable.store(unavailable, Ordering::SeqCst);
    }

    /// How many times the JWKS was asked for (served or, during an outage, refused).
    pub fn jwks_requests(&self) -> u64 {
        self.shared.jwks_requests.load(Ordering::SeqCst)
    }

    /// How many times the OpenID configuration was asked for.
    pub fn discovery_requests(&self) -> u64 {
        self.shared.discovery_requests.load(Ordering::SeqCst)
    }

    /// A compact JWS as `spec` describes.
    pub fn mint(&self, spec: &TokenSpec) -> String {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_secs() as i64)
            .unwrap_or(0);
        let (issuer, publisher_claim) = match spec.version {
            TokenVersion::V1 => (format!("https://sts.windows.net/{}/", spec.tenant), "appid"),
            TokenVersion::V2 => (
                format!("{}/{}/v2.0", self.shared.authority, spec.tenant),
                "azp",
            ),
        };
        let mut claims = Map::new();
        claims.insert("aud".into(), spec.audience.clone().into());
        claims.insert("iss".into(), issuer.into());
        claims.insert("iat".into(), now.into());
        claims.insert("nbf".into(), (now + spec.not_before_in).into());
        claims.insert("exp".into(), (now + spec.expires_in).into());
        claims.insert(publisher_claim.into(), spec.publisher.clone().into());
        claims.insert("tid".into(), spec.tenant.clone().into());
        if spec.version == TokenVersion::V2 {
            claims.insert("ver".into(), "2.0".into());
        } else {
            claims.insert("ver".into(), "1.0".into());
        }
        for (name, value) in &spec.claims {
            claims.insert(name.clone(), value.clone());
        }
        for name in &spec.removed {
            claims.remove(name);
        }

        let key = {
            let keys = self.shared.keys();
            let named = spec
                .kid
                .as_deref()
                .and_then(|kid| keys.iter().find(|k| k.kid == kid));
            named
                .or(keys.last())
                .cloned()
                .expect("an issuer always holds a key")
        };
        let kid = spec.kid.clone().unwrap_or_else(|| key.kid.clone());
        let default_alg = match spec.signing {
            Signing::Issuer | Signing::ForeignKey => "RS256",
            Signing::Hs256WithPublicKey => "HS256",
            Signing::Unsigned => "none",
        };
        let header = json!({
            "typ": "JWT",
            "alg": spec.alg.as_deref().unwrap_or(default_alg),
            "kid": kid,
        });
        let signing_input = format!(
            "{}.{}",
            URL_SAFE_NO_PAD.encode(header.to_string()),
            URL_SAFE_NO_PAD.encode(Value::Object(claims).to_string())
        );
        let signature = match spec.signing {
            Signing::Issuer => sign(MessageDigest::sha256(), &key.private, &signing_input),
            Signing::ForeignKey => sign(
                MessageDigest::sha256(),
                self.shared.foreign.get_or_init(|| {
                    IssuerKey::generate()
                        .expect("RSA key generation works once it has worked")
                        .private
                }),
                &signing_input,
            ),
            Signing::Hs256WithPublicKey => {
                let secret = PKey::hmac(&key.public_pem).expect("any byte string is an HMAC key");
                sign(MessageDigest::sha256(), &secret, &signing_input)
            }
            Signing::Unsigned => Vec::new(),
        };
        format!("{signing_input}.{}", URL_SAFE_NO_PAD.encode(signature))
    }

    /// Stops accepting, lets requests in flight finish, and waits for the server to end.
    pub async fn shutdown(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(server) = self.server.take() {
            let _ = server.await;
        }
    }
}

impl Drop for LocalIssuer {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

fn sign(digest: MessageDigest, key: &PKey<Private>, input: &str) -> Vec<u8> {
    // Signing in memory with a key we generated fails only if OpenSSL itself is broken.
    let mut signer = Signer::new(digest, key).expect("OpenSSL signer for our own key");
    signer
        .sign_oneshot_to_vec(input.as_bytes())
        .expect("OpenSSL signs with our own key")
}

fn routes(
    shared: Arc<Shared>,
) -> impl Filter<Extract = (impl warp::Reply,), Error = warp::Rejection> + Clone + Send + Sync + 'static
{
    let state = warp::any().map(move || shared.clone());
    let discovery = warp::get()
        .and(warp::path!(
            "common" / ".well-known" / "openid-configuration"
        ))
        .and(state.clone())
        .map(|shared: Arc<Shared>| {
            shared.discovery_requests.fetch_add(1, Ordering::SeqCst);
            let authority = &shared.authority;
            answer(
                &shared,
                json!({
                    "issuer": format!("{authority}/{{tenantid}}/v2.0"),
                    "jwks_uri": format!("{authority}/common/discovery/keys"),
                    "id_token_signing_alg_values_supported": ["RS256"],
                }),
            )
        });
    let jwks = warp::get()
        .and(warp::path!("common" / "discovery" / "keys"))
        .and(state)
        .map(|shared: Arc<Shared>| {
            shared.jwks_requests.fetch_add(1, Ordering::SeqCst);
            let keys: Vec<Value> = shared.keys().iter().map(|k| k.jwk.clone()).collect();
            answer(&shared, json!({ "keys": keys }))
        });
    discovery.or(jwks)
}

fn answer(shared: &Shared, document: Value) -> warp::reply::Response {
    use warp::Reply;
    if shared.unavailable.load(Ordering::SeqCst) {
        return warp::http::StatusCode::SERVICE_UNAVAILABLE.into_response();
    }
    warp::reply::json(&document).into_response()
}
