//! Tests with the REAL `azure_identity::ManagedIdentityCredential`: the Key Vault source, and the
//! start-up cases of `keyvault_identity/startup.rs` through the production builder. As on Azure
//! Functions: the App Service managed-identity protocol (`IDENTITY_ENDPOINT` + `IDENTITY_HEADER`)
//! answered by a FAKE identity endpoint on loopback, then the FAKE Key Vault of the integration
//! tests (neither service can run here).
//!
//! The credential reads those variables from the process environment, when it is built and on
//! every token request, and the environment is process-global. So this is its own test binary
//! without the libtest harness (`harness = false` in Cargo.toml): `main` sets the variables
//! before any thread exists, then starts the runtime. It honours a name filter and `--list`, and
//! prints libtest's summary line.

#[path = "integration/keyvault/fake.rs"]
mod fake;
#[path = "keyvault_identity/startup.rs"]
mod startup;

use std::collections::HashMap;
use std::convert::Infallible;
use std::sync::{Arc, Mutex};

use fake::{FakeVault, FakeVersion, TestCa, TestCertificate, now_unix, reply};
use hyper::body::Incoming;
use hyper::{Request, StatusCode};
use hyper_util::rt::TokioIo;
use serde_json::json;
use teams_notifications::keys::keyvault::{KeyVaultOptions, KeyVaultSource};

const NAME: &str = "graph-notifications";
const TESTS: [&str; 3] = [
    "keyvault_managed_identity_token_reaches_the_vault",
    "startup_client_secret_for_graph_managed_identity_for_key_vault_and_blob",
    "startup_no_certificate_yet_then_one_appears",
];

/// The fake managed-identity endpoint, shared by every test of this binary.
pub struct Identity {
    pub token: String,
    pub header: String,
    pub requests: Arc<Mutex<Vec<TokenRequest>>>,
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.iter().any(|a| a == "--list") {
        for t in TESTS {
            println!("{t}: test");
        }
        return;
    }
    let chosen: Vec<&str> = TESTS.into_iter().filter(|t| selected(t, &args)).collect();

    // Bind first so the endpoint's port is known; no thread has started yet.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let identity_header = random_hex(16);
    // SAFETY: single-threaded here: no runtime, no test harness, nothing else reads the
    // environment concurrently.
    unsafe {
        std::env::set_var(
            "IDENTITY_ENDPOINT",
            format!("http://{}/msi/token", listener.local_addr().unwrap()),
        );
        std::env::set_var("IDENTITY_HEADER", &identity_header);
        // Whatever the machine has, the credential must choose App Service.
        for other in [
            "IDENTITY_SERVER_THUMBPRINT",
            "IMDS_ENDPOINT",
            "MSI_ENDPOINT",
            "MSI_SECRET",
        ] {
            std::env::remove_var(other);
        }
    }

    println!("\nrunning {} tests", chosen.len());
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let token = format!("mi-{}", random_hex(12));
    let identity = runtime.block_on(async {
        Identity {
            requests: serve_identity_endpoint(listener, identity_header.clone(), token.clone()),
            token,
            header: identity_header,
        }
    });
    let (mut passed, mut failed) = (0, 0);
    for name in &chosen {
        identity.requests.lock().unwrap().clear();
        let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            runtime.block_on(async {
                match *name {
                    "keyvault_managed_identity_token_reaches_the_vault" => {
                        managed_identity_token_reaches_the_vault(&identity).await
                    }
                    "startup_client_secret_for_graph_managed_identity_for_key_vault_and_blob" => {
                        startup::client_secret_for_graph_managed_identity_for_key_vault_and_blob(
                            &identity,
                        )
                        .await
                    }
                    _ => startup::no_certificate_yet_then_one_appears(&identity).await,
                }
            })
        }));
        match outcome {
            Ok(()) => {
                passed += 1;
                println!("test {name} ... ok");
            }
            Err(_) => {
                failed += 1;
                println!("test {name} ... FAILED");
            }
        }
    }
    let filtered = TESTS.len() - chosen.len();
    let result = if failed == 0 { "ok" } else { "FAILED" };
    println!(
        "\ntest result: {result}. {passed} passed; {failed} failed; 0 ignored; 0 measured; {filtered} filtered out\n"
    );
    if failed > 0 {
        std::process::exit(101);
    }
}

fn random_hex(n: usize) -> String {
    let mut bytes = vec![0; n];
    openssl::rand::rand_bytes(&mut bytes).unwrap();
    hex::encode(bytes)
}

/// libtest's selection: no name filter, or one the test name contains (`--exact`: equals).
fn selected(test_name: &str, args: &[String]) -> bool {
    const TAKES_VALUE: [&str; 7] = [
        "--test-threads",
        "--skip",
        "--format",
        "--color",
        "--logfile",
        "--shuffle-seed",
        "-Z",
    ];
    let exact = args.iter().any(|a| a == "--exact");
    let mut filters = Vec::new();
    let mut skips = Vec::new();
    let mut i = 0;
    while i < args.len() {
        let a = &args[i];
        if TAKES_VALUE.contains(&a.as_str()) {
            if a == "--skip"
                && let Some(v) = args.get(i + 1)
            {
                skips.push(v.as_str());
            }
            i += 2;
            continue;
        }
        if !a.starts_with('-') {
            filters.push(a.as_str());
        }
        i += 1;
    }
    let matches = |f: &str| {
        if exact {
            test_name == f
        } else {
            test_name.contains(f)
        }
    };
    (filters.is_empty() || filters.iter().any(|f| matches(f))) && !skips.iter().any(|s| matches(s))
}

/// What the fake identity endpoint was asked.
#[derive(Debug, Clone)]
pub struct TokenRequest {
    path: String,
    pub query: HashMap<String, String>,
    identity_header: Option<String>,
}

async fn managed_identity_token_reaches_the_vault(identity: &Identity) {
    let token = identity.token.clone();
    let token_requests = identity.requests.clone();
    let identity_header = identity.header.clone();

    let ca = TestCa::generate();
    let vault = FakeVault::start(&ca, &token).await;
    let old = TestCertificate::valid("old");
    let new = TestCertificate::valid("new");
    vault.add_version(NAME, FakeVersion::pfx("a1", &old));
    vault.add_version(NAME, FakeVersion::pem("b2", &new));

    // The production credential, with its production options.
    let credential = azure_identity::ManagedIdentityCredential::new(None).unwrap();
    let source = KeyVaultSource::new(
        &vault.url,
        NAME,
        credential,
        KeyVaultOptions {
            client_options: ca.client_options(),
            verify_challenge_resource: Some(false),
        },
    )
    .unwrap();
    let keys = source.load().await.expect("load through managed identity");

    let mut ids: Vec<&str> = keys.iter().map(|k| k.id.as_str()).collect();
    ids.sort();
    assert_eq!(ids, [format!("{NAME}.a1"), format!("{NAME}.b2")]);
    let thumbprints: Vec<&str> = keys.iter().map(|k| k.thumbprint.as_str()).collect();
    assert!(thumbprints.contains(&old.thumbprint().as_str()));
    assert!(thumbprints.contains(&new.thumbprint().as_str()));

    // The App Service protocol: the secret header, the 2019-08-01 API, the vault's resource
    // (from the challenge); one request, as the credential caches the token.
    let requests = token_requests.lock().unwrap().clone();
    assert_eq!(requests.len(), 1, "{requests:#?}");
    let r = &requests[0];
    assert_eq!(r.path, "/msi/token");
    assert_eq!(r.identity_header.as_deref(), Some(identity_header.as_str()));
    assert_eq!(
        r.query.get("api-version").map(String::as_str),
        Some("2019-08-01")
    );
    assert_eq!(
        r.query.get("resource").map(String::as_str),
        Some("https://vault.azure.net")
    );

    // The vault challenged the first request, then saw the managed identity's token.
    let seen = vault.seen();
    assert_eq!(
        (seen[0].authorization.as_deref(), seen[0].status),
        (None, 401)
    );
    let bearer = format!("Bearer {token}");
    let served: Vec<_> = seen.iter().filter(|s| s.status == 200).collect();
    assert_eq!(served.len(), 3, "one listing and two secrets: {seen:#?}");
    assert!(
        served
            .iter()
            .all(|s| s.authorization.as_deref() == Some(bearer.as_str()))
    );
}

/// The App Service / Functions identity endpoint: `GET {IDENTITY_ENDPOINT}?api-version=2019-08-01&resource=...`
/// with `X-IDENTITY-HEADER`; answers `expires_on` as a string of unix seconds.
fn serve_identity_endpoint(
    listener: std::net::TcpListener,
    expected_header: String,
    token: String,
) -> Arc<Mutex<Vec<TokenRequest>>> {
    listener.set_nonblocking(true).unwrap();
    let listener = tokio::net::TcpListener::from_std(listener).unwrap();
    let requests = Arc::new(Mutex::new(Vec::new()));
    let recorded = requests.clone();
    tokio::spawn(async move {
        loop {
            let Ok((tcp, _)) = listener.accept().await else {
                return;
            };
            let (recorded, expected_header, token) =
                (recorded.clone(), expected_header.clone(), token.clone());
            tokio::spawn(async move {
                let service = hyper::service::service_fn(move |req: Request<Incoming>| {
                    let request = TokenRequest {
                        path: req.uri().path().to_string(),
                        query: fake::query_of(req.uri()),
                        identity_header: req
                            .headers()
                            .get("x-identity-header")
                            .and_then(|v| v.to_str().ok())
                            .map(str::to_string),
                    };
                    let response = if request.identity_header.as_deref()
                        != Some(expected_header.as_str())
                    {
                        reply(
                            StatusCode::UNAUTHORIZED,
                            json!({"error": "missing or wrong X-IDENTITY-HEADER"}),
                        )
                    } else {
                        let resource = request.query.get("resource").cloned().unwrap_or_default();
                        reply(
                            StatusCode::OK,
                            json!({
                                "access_token": token,
                                "expires_on": (now_unix() + 3600).to_string(),
                                "resource": resource,
                                "token_type": "Bearer",
                                "client_id": "00000000-0000-0000-0000-000000000001",
                            }),
                        )
                    };
                    recorded.lock().unwrap().push(request);
                    async move { Ok::<_, Infallible>(response) }
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(tcp), service)
                    .await;
            });
        }
    });
    requests
}
