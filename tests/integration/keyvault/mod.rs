//! The Key Vault certificate source against a FAKE Key Vault (see [`fake`]) over https with a
//! test CA: challenge authentication, version listing with paging, secrets as PFX (current and
//! legacy) or PEM, and the certificate store's refresh on unknown ids.
//!
//! The token comes from a recording test credential here; `tests/keyvault_identity.rs` drives the
//! same fake through the real `ManagedIdentityCredential`.

pub mod fake;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use azure_core::credentials::{AccessToken, TokenCredential, TokenRequestOptions};
use fake::{DAY, FakeVault, FakeVersion, TestCa, TestCertificate, VAULT_SCOPE, now_unix};
use openssl::rsa::Padding;
use teams_notifications::keys::keyvault::{KeyVaultOptions, KeyVaultSource};
use teams_notifications::keys::{CertificateStore, DecryptionKey, KeyError};

const NAME: &str = "graph-notifications";
const TOKEN: &str = "test-vault-token";

/// Hands out [`TOKEN`] and records the scopes it was asked for.
#[derive(Debug, Default)]
struct RecordingCredential {
    scopes: Mutex<Vec<String>>,
}

#[async_trait::async_trait]
impl TokenCredential for RecordingCredential {
    async fn get_token(
        &self,
        scopes: &[&str],
        _: Option<TokenRequestOptions<'_>>,
    ) -> azure_core::Result<AccessToken> {
        self.scopes
            .lock()
            .unwrap()
            .extend(scopes.iter().map(|s| s.to_string()));
        Ok(AccessToken::new(
            TOKEN.to_string(),
            azure_core::time::OffsetDateTime::now_utc() + azure_core::time::Duration::hours(1),
        ))
    }
}

struct Setup {
    vault: Arc<FakeVault>,
    credential: Arc<RecordingCredential>,
    source: KeyVaultSource,
}

async fn setup(versions: Vec<FakeVersion>) -> Setup {
    let ca = TestCa::generate();
    let vault = FakeVault::start(&ca, TOKEN).await;
    for v in versions {
        vault.add_version(NAME, v);
    }
    let credential = Arc::new(RecordingCredential::default());
    let source = KeyVaultSource::new(
        &vault.url,
        NAME,
        credential.clone(),
        KeyVaultOptions {
            client_options: ca.client_options(),
            // The fake's challenge names https://vault.azure.net, which a loopback host never
            // matches; production keeps the SDK's check.
            verify_challenge_resource: Some(false),
        },
    )
    .unwrap();
    Setup {
        vault,
        credential,
        source,
    }
}

fn ids(keys: &[DecryptionKey]) -> Vec<String> {
    let mut ids: Vec<String> = keys.iter().map(|k| k.id.clone()).collect();
    ids.sort();
    ids
}

/// Encrypts with the certificate's public key (as Graph does, RSA-OAEP SHA-1) and decrypts with
/// the key the store resolved.
fn assert_decrypts(key: &DecryptionKey, cert: &TestCertificate) {
    let secret = b"0123456789abcdef0123456789abcdef";
    let public = cert.cert.public_key().unwrap().rsa().unwrap();
    let mut wrapped = vec![0; public.size() as usize];
    let n = public
        .public_encrypt(secret, &mut wrapped, Padding::PKCS1_OAEP)
        .unwrap();
    let private = key.private_key.rsa().unwrap();
    let mut out = vec![0; private.size() as usize];
    let n = private
        .private_decrypt(&wrapped[..n], &mut out, Padding::PKCS1_OAEP)
        .unwrap();
    assert_eq!(&out[..n], secret);
}

/// Secret reads that got past the challenge (whatever the vault answered).
fn secret_reads(vault: &FakeVault) -> Vec<String> {
    vault
        .seen()
        .into_iter()
        .filter(|s| s.path.starts_with("/secrets/") && s.status != 401)
        .map(|s| s.path)
        .collect()
}

#[tokio::test]
async fn a_rotation_loads_every_enabled_version_across_pages_after_the_challenge() {
    let old = TestCertificate::valid("old");
    let new = TestCertificate::valid("new");
    let withdrawn = TestCertificate::valid("withdrawn");
    let s = setup(vec![
        FakeVersion::pfx("0a1b2c3d4e5f60718293a4b5c6d7e8f9", &old),
        FakeVersion::pfx("ffeeddccbbaa99887766554433221100", &withdrawn).disabled(),
        FakeVersion::pfx("1234567890abcdef1234567890abcdef", &new),
    ])
    .await;
    s.vault.set_page_size(1);

    let store = Arc::new(CertificateStore::from_key_vault(s.source).await.unwrap());
    let mut loaded: Vec<String> = store.keys().iter().map(|k| k.id.clone()).collect();
    loaded.sort();
    assert_eq!(
        loaded,
        vec![
            format!("{NAME}.0a1b2c3d4e5f60718293a4b5c6d7e8f9"),
            format!("{NAME}.1234567890abcdef1234567890abcdef"),
        ]
    );

    // Both live keys are found by id and by thumbprint (any case), and really decrypt.
    for (version, cert) in [
        ("0a1b2c3d4e5f60718293a4b5c6d7e8f9", &old),
        ("1234567890abcdef1234567890abcdef", &new),
    ] {
        let by_id = store
            .lookup(Some(&format!("{NAME}.{version}")), None)
            .unwrap();
        assert_eq!(by_id.thumbprint, cert.thumbprint());
        assert_eq!(
            by_id.source,
            format!(
                "keyvault:{}/{NAME}/{version}",
                s.vault.url.trim_start_matches("https://")
            )
        );
        assert_decrypts(&by_id, cert);
        let by_thumbprint = store
            .lookup(None, Some(&cert.thumbprint().to_lowercase()))
            .unwrap();
        assert_eq!(by_thumbprint.id, by_id.id);
        assert_decrypts(&by_thumbprint, cert);
    }
    assert!(store.lookup(None, Some(&withdrawn.thumbprint())).is_none());

    let seen = s.vault.seen();
    // Challenge authentication: the first request carried no token and was answered 401...
    assert_eq!(seen[0].authorization, None);
    assert_eq!(seen[0].status, 401);
    // ...once per client (certificates, secrets): after that the challenge's scope is known.
    assert_eq!(
        seen.iter().filter(|r| r.status == 401).count(),
        2,
        "{seen:#?}"
    );
    // ...then the credential was asked for the challenge's resource, and every later successful
    // request carried its token.
    assert!(
        s.credential
            .scopes
            .lock()
            .unwrap()
            .iter()
            .all(|scope| scope == VAULT_SCOPE)
    );
    assert!(!s.credential.scopes.lock().unwrap().is_empty());
    let ok: Vec<_> = seen.iter().filter(|r| r.status == 200).collect();
    assert!(
        ok.iter()
            .all(|r| r.authorization.as_deref() == Some("Bearer test-vault-token"))
    );
    // Paging: three versions, one per page, so three listing pages, the later ones via nextLink.
    let pages: Vec<_> = ok
        .iter()
        .filter(|r| r.path == format!("/certificates/{NAME}/versions"))
        .collect();
    assert_eq!(pages.len(), 3, "{pages:#?}");
    assert_eq!(
        pages[1].query.get("$skiptoken").map(String::as_str),
        Some("1")
    );
    assert_eq!(
        pages[2].query.get("$skiptoken").map(String::as_str),
        Some("2")
    );
    assert!(pages.iter().all(|p| p.query.contains_key("api-version")));
    // The disabled version's secret was never asked for.
    let mut reads = secret_reads(&s.vault);
    reads.sort();
    assert_eq!(
        reads,
        vec![
            format!("/secrets/{NAME}/0a1b2c3d4e5f60718293a4b5c6d7e8f9"),
            format!("/secrets/{NAME}/1234567890abcdef1234567890abcdef"),
        ]
    );
}

#[tokio::test]
async fn expired_legacy_pfx_and_pem_versions_all_load() {
    let dir = tempfile::tempdir().unwrap();
    let now = now_unix();
    let expired = TestCertificate::new("expired", now - 400 * DAY, now - DAY);
    let legacy = TestCertificate::new("legacy", now - 2 * DAY, now + 100 * DAY);
    let pem = TestCertificate::new("pem", now - DAY, now + 200 * DAY);
    let s = setup(vec![
        FakeVersion::pfx("e1", &expired),
        FakeVersion::pfx_bytes("l1", &legacy, legacy.legacy_pfx(dir.path())),
        FakeVersion::pem("p1", &pem),
    ])
    .await;

    let keys = s.source.load().await.unwrap();
    assert_eq!(
        ids(&keys),
        vec![
            format!("{NAME}.e1"),
            format!("{NAME}.l1"),
            format!("{NAME}.p1")
        ]
    );
    for (id, cert) in [("e1", &expired), ("l1", &legacy), ("p1", &pem)] {
        let key = keys
            .iter()
            .find(|k| k.id == format!("{NAME}.{id}"))
            .unwrap();
        assert_eq!(key.thumbprint, cert.thumbprint());
        assert_decrypts(key, cert);
    }
    let expired_key = keys.iter().find(|k| k.id.ends_with(".e1")).unwrap();
    assert!(expired_key.not_after < time::OffsetDateTime::now_utc());

    // New subscriptions get the newest certificate valid now, never the expired one.
    let store = CertificateStore::from_keys(keys);
    assert_eq!(store.current().unwrap().id, format!("{NAME}.p1"));
}

#[tokio::test]
async fn an_unusable_version_is_skipped_and_the_others_load() {
    use base64::Engine;
    let good = TestCertificate::valid("good");
    let other = TestCertificate::valid("other");
    let corrupt_pfx = FakeVersion {
        value: Some(base64::engine::general_purpose::STANDARD.encode(b"not a PKCS#12 file")),
        ..FakeVersion::pfx("c0", &other)
    };
    let not_base64 = FakeVersion {
        value: Some("%%% not base64 %%%".into()),
        ..FakeVersion::pfx("b0", &other)
    };
    let wrong_type = FakeVersion {
        content_type: Some("text/plain".into()),
        ..FakeVersion::pem("t0", &other)
    };
    let no_value = FakeVersion {
        value: None,
        ..FakeVersion::pfx("n0", &other)
    };
    // The vault lists one certificate but the secret holds another.
    let mismatched = FakeVersion {
        x5t: Some(good.sha1()),
        ..FakeVersion::pfx("m0", &other)
    };
    let s = setup(vec![
        corrupt_pfx,
        not_base64,
        FakeVersion::pfx("g0", &good),
        wrong_type,
        no_value,
        mismatched,
    ])
    .await;

    let logs = crate::support::CapturedLogs::default();
    let keys = {
        let _guard = logs.install();
        s.source.load().await.unwrap()
    };
    assert_eq!(ids(&keys), vec![format!("{NAME}.g0")]);
    assert_eq!(keys[0].thumbprint, good.thumbprint());
    // Each bad version was read (and rejected), not silently ignored.
    assert_eq!(secret_reads(&s.vault).len(), 6);

    // One warning per skipped version, naming it; no secret material in any log line.
    let logs = logs.text();
    for version in ["c0", "b0", "t0", "n0", "m0"] {
        assert!(
            logs.lines()
                .any(|l| l.contains("WARN") && l.contains(&format!("version={version}"))),
            "no warning for {version}:\n{logs}"
        );
    }
    let other_pem = other.pem();
    let key_body: Vec<&str> = other_pem.lines().skip(1).take(3).collect();
    for line in key_body {
        assert!(!logs.contains(line), "secret material in the logs:\n{logs}");
    }
    assert!(!logs.contains("PRIVATE KEY"), "{logs}");
    assert!(!logs.contains(TOKEN), "{logs}");
}

#[tokio::test]
async fn no_usable_version_is_an_error_that_names_the_certificate_and_no_secret() {
    let withdrawn = TestCertificate::valid("withdrawn");
    let other = TestCertificate::valid("other");
    let pem = FakeVersion {
        content_type: Some("application/octet-stream".into()),
        ..FakeVersion::pem("t0", &other)
    };
    let secret_text = pem.value.clone().unwrap();
    let s = setup(vec![FakeVersion::pfx("d0", &withdrawn).disabled(), pem]).await;

    let e = s.source.load().await.unwrap_err();
    assert!(matches!(e, KeyError::KeyVault(_)), "{e:?}");
    let message = e.to_string();
    assert!(message.contains(NAME), "{message}");
    assert!(!message.contains("PRIVATE KEY"), "{message}");
    assert!(!message.contains(&secret_text[40..80]), "{message}");
}

#[tokio::test]
async fn a_missing_certificate_is_an_error() {
    let s = setup(Vec::new()).await;
    let e = s.source.load().await.unwrap_err();
    assert!(e.to_string().contains("listing versions"), "{e}");
}

#[tokio::test]
async fn an_unknown_id_refreshes_once_and_a_second_within_the_interval_not_at_all() {
    let first = TestCertificate::valid("first");
    let rotated = TestCertificate::valid("rotated");
    let s = setup(vec![FakeVersion::pfx("v1", &first)]).await;
    let vault = s.vault.clone();
    let store = CertificateStore::from_key_vault(s.source)
        .await
        .unwrap()
        .with_min_refresh_interval(Duration::from_secs(3600));
    let listings = || {
        vault
            .seen()
            .iter()
            .filter(|r| r.path.ends_with("/versions") && r.status == 200)
            .count()
    };
    assert_eq!(listings(), 1);
    let requests_after_load = vault.seen().len();

    // The certificate is rotated in the vault; Graph starts naming the new version.
    vault.add_version(NAME, FakeVersion::pfx("v2", &rotated));
    let key = store
        .resolve(Some(&format!("{NAME}.v2")), None)
        .await
        .expect("the refresh on the unknown id found the rotated version");
    assert_decrypts(&key, &rotated);
    assert_eq!(listings(), 2, "exactly one refresh");
    let requests_after_refresh = vault.seen().len();
    assert_eq!(
        requests_after_refresh - requests_after_load,
        3,
        "one listing and one secret read per version"
    );

    // A forged id right after: no request reaches the vault.
    assert!(
        store
            .resolve(
                Some("forged-id"),
                Some("00112233445566778899AABBCCDDEEFF00112233")
            )
            .await
            .is_none()
    );
    assert_eq!(vault.seen().len(), requests_after_refresh);
    // Known ids still resolve without I/O.
    assert!(
        store
            .resolve(Some(&format!("{NAME}.v1")), None)
            .await
            .is_some()
    );
    assert_eq!(vault.seen().len(), requests_after_refresh);
}

#[tokio::test]
async fn the_periodic_refresh_follows_the_vault() {
    let first = TestCertificate::valid("first");
    let rotated = TestCertificate::valid("rotated");
    let s = setup(vec![FakeVersion::pfx("v1", &first)]).await;
    let vault = s.vault.clone();
    let store = Arc::new(CertificateStore::from_key_vault(s.source).await.unwrap());
    let task = store.spawn_periodic_refresh(Duration::from_millis(50));

    vault.add_version(NAME, FakeVersion::pfx("v2", &rotated));
    let seen = async {
        while store.lookup(Some(&format!("{NAME}.v2")), None).is_none() {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    };
    tokio::time::timeout(Duration::from_secs(20), seen)
        .await
        .expect("the periodic refresh never loaded the new version");
    assert!(store.lookup(Some(&format!("{NAME}.v1")), None).is_some());
    task.abort();
}
