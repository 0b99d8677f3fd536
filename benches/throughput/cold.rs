//! Cold start as the Functions host sees it: exec of the `handler` binary -> its first `200` to
//! `GET /` (the host's readiness probe), and -> the first rich notification archived as a
//! decrypted event (202, its event object on disk), with a local certificate. The first rich
//! notification also pays for the first JWKS download (validationTokens).
//!
//! Key Vault: the handler loads its certificates before it serves, so with `KEY_VAULT_URL` the
//! readiness time grows by the load. The load is measured in process against the fake Key
//! Vault of the integration tests (https with a test CA, challenge authentication, a version
//! listing, a PFX secret): a fresh client each time, so each load pays its TLS handshakes. The
//! handler binary cannot be pointed at a loopback vault (the SDK's challenge check wants a
//! vault domain; only the builder can turn it off), so this part is in process.

use std::io::{Read as _, Write as _};
use std::net::TcpStream;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use azure_core::credentials::{AccessToken, TokenCredential, TokenRequestOptions};
use teams_notifications::devtools::certificates as dev;
use teams_notifications::devtools::issuer::LocalIssuer;
use teams_notifications::keys::keyvault::{KeyVaultOptions, KeyVaultSource};
use teams_notifications::keys::{CertificateStore, DecryptionKey};

use super::keyvault_fake::{FakeVault, FakeVersion, TestCa, TestCertificate};
use super::{APP_ID, CLIENT_STATE, TENANT, percentile, rich_bodies, scale};

const VAULT_TOKEN: &str = "bench-vault-token";
const CERTIFICATE_NAME: &str = "graph-notifications";

/// The status code of one plain HTTP/1.1 request on loopback, `None` if nothing answered.
fn status(port: u16, request: &[u8]) -> Option<u16> {
    let mut tcp = TcpStream::connect(("127.0.0.1", port)).ok()?;
    tcp.set_read_timeout(Some(Duration::from_secs(10))).ok()?;
    tcp.write_all(request).ok()?;
    let mut head = [0u8; 12];
    tcp.read_exact(&mut head).ok()?;
    std::str::from_utf8(&head[9..12]).ok()?.parse().ok()
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn events_in(dir: &Path) -> usize {
    let mut stack = vec![dir.join("events")];
    let mut n = 0;
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            if entry.file_type().is_ok_and(|t| t.is_dir()) {
                stack.push(entry.path());
            } else if entry.file_name().to_string_lossy().ends_with(".json") {
                n += 1;
            }
        }
    }
    n
}

/// One cold start of the real binary: (exec -> ready, exec -> first rich event archived).
fn one_start(key: &DecryptionKey, issuer: &LocalIssuer, body: &[u8]) -> (Duration, Duration) {
    let dir = tempfile::tempdir().unwrap();
    let pem = dir.path().join("key.pem");
    std::fs::write(&pem, dev::to_pem(key).unwrap()).unwrap();
    let archive = dir.path().join("archive");
    let port = free_port();
    let started = Instant::now();
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_handler"))
        .env("FUNCTIONS_CUSTOMHANDLER_PORT", port.to_string())
        .env("ARCHIVE_DIR", &archive)
        .env("NOTIFICATION_CLIENT_STATE", CLIENT_STATE)
        .env(
            "NOTIFICATION_CERTIFICATES",
            format!("{}={}", key.id, pem.display()),
        )
        .env("GRAPH_TENANT_ID", TENANT)
        .env("GRAPH_CLIENT_ID", APP_ID)
        .env("AUTHORITY_HOST", issuer.authority_host())
        .env_remove("KEY_VAULT_URL")
        .env_remove("NOTIFICATION_CERTIFICATE_NAME")
        .env_remove("ARCHIVE_CONNECTION")
        .env_remove("ARCHIVE_ACCOUNT_URL")
        .env_remove("SUBSCRIPTIONS_FILE")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let probe = b"GET / HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n";
    while status(port, probe) != Some(200) {
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "the handler did not become ready"
        );
        assert!(child.try_wait().unwrap().is_none(), "the handler exited");
        std::thread::sleep(Duration::from_millis(1));
    }
    let ready = started.elapsed();
    let mut post = format!(
        "POST /api/notifications HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    )
    .into_bytes();
    post.extend_from_slice(body);
    assert_eq!(status(port, &post), Some(202));
    let decrypted = started.elapsed();
    assert_eq!(
        events_in(&archive),
        1,
        "the rich notification became an event"
    );
    let _ = child.kill();
    let _ = child.wait();
    (ready, decrypted)
}

/// Hands out the fake vault's token (the credential is not what is measured).
#[derive(Debug)]
struct VaultToken;

#[async_trait::async_trait]
impl TokenCredential for VaultToken {
    async fn get_token(
        &self,
        _: &[&str],
        _: Option<TokenRequestOptions<'_>>,
    ) -> azure_core::Result<AccessToken> {
        Ok(AccessToken::new(
            VAULT_TOKEN.to_string(),
            azure_core::time::OffsetDateTime::now_utc() + azure_core::time::Duration::hours(1),
        ))
    }
}

/// Loads the certificate from the fake Key Vault `n` times, each with a fresh client.
async fn key_vault_loads(n: usize) -> Vec<Duration> {
    let ca = TestCa::generate();
    let vault = FakeVault::start(&ca, VAULT_TOKEN).await;
    let cert = TestCertificate::valid("bench");
    vault.add_version(CERTIFICATE_NAME, FakeVersion::pfx("v1", &cert));
    let mut loads = Vec::with_capacity(n);
    for _ in 0..n {
        let started = Instant::now();
        let source = KeyVaultSource::new(
            &vault.url,
            CERTIFICATE_NAME,
            Arc::new(VaultToken),
            KeyVaultOptions {
                client_options: ca.client_options(),
                verify_challenge_resource: Some(false),
            },
        )
        .unwrap();
        let store = CertificateStore::from_key_vault(source).await.unwrap();
        loads.push(started.elapsed());
        assert_eq!(store.keys().len(), 1);
    }
    loads
}

/// The cold-start figures (see the module docs).
pub fn run(
    rt: &tokio::runtime::Runtime,
    key: &DecryptionKey,
    issuer: &LocalIssuer,
    tokens: &[String],
) {
    let starts = if scale().divide == 1 { 10 } else { 1 };
    let body = rich_bodies(key, tokens, 1, 1).remove(0);
    let (ready, decrypted): (Vec<Duration>, Vec<Duration>) =
        (0..starts).map(|_| one_start(key, issuer, &body)).unzip();
    let loads = rt.block_on(key_vault_loads(starts));
    println!("cold start ({starts} starts of the release binary, local certificate):");
    println!(
        "  exec -> first 200 to GET /: p50 {:.1?}, max {:.1?}",
        percentile(&ready, 50.0),
        percentile(&ready, 100.0)
    );
    println!(
        "  exec -> first rich notification archived decrypted: p50 {:.1?}, max {:.1?}",
        percentile(&decrypted, 50.0),
        percentile(&decrypted, 100.0)
    );
    println!(
        "  Key Vault certificate load (fake vault, https, fresh client), in process: p50 {:.1?}, max {:.1?}",
        percentile(&loads, 50.0),
        percentile(&loads, 100.0)
    );
}
