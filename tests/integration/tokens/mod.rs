//! validationTokens against a local issuer (`LocalIssuer`) that speaks Entra ID's discovery and
//! JWKS protocol on loopback: Entra ID itself cannot run here.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use teams_notifications::devtools::issuer::{LocalIssuer, Signing, TokenSpec};
use teams_notifications::graph::tokens::{
    GRAPH_PUBLISHER_APP_ID, JwksError, TokenError, TokenValidator, ValidatorOptions,
};

const APP: &str = "8f6c1e4a-34a4-4d25-9a4b-6b7a0c1d2e3f";
const TENANT: &str = "72f988bf-86f1-41af-91ab-2d7cd011db47";
const TENANT_2: &str = "5d1b7c2e-0000-4f1a-9e8b-1a2b3c4d5e6f";
const STRANGER: &str = "99999999-9999-4999-8999-999999999999";

fn validator(issuer: &LocalIssuer) -> TokenValidator {
    TokenValidator::new(
        issuer.authority_host(),
        vec![APP.to_owned()],
        vec![TENANT.to_owned(), TENANT_2.to_owned()],
        reqwest::Client::new(),
    )
}

/// A named token and the refusal it must meet.
type Case = (&'static str, TokenSpec, fn(&TokenError) -> bool);

async fn setup() -> (LocalIssuer, TokenValidator) {
    let issuer = LocalIssuer::start().await.expect("local issuer starts");
    let validator = validator(&issuer);
    (issuer, validator)
}

async fn check(v: &TokenValidator, token: String) -> Result<Vec<String>, TokenError> {
    v.validate(&[token])
        .await
        .map(|ok| ok.tenants().map(str::to_owned).collect())
}

#[tokio::test]
async fn genuine_v1_and_v2_tokens_are_accepted() {
    let (issuer, v) = setup().await;
    let v1 = issuer.mint(&TokenSpec::v1(TENANT, APP));
    let v2 = issuer.mint(&TokenSpec::v2(TENANT, APP));
    assert_eq!(check(&v, v1).await.unwrap(), [TENANT]);
    assert_eq!(check(&v, v2).await.unwrap(), [TENANT]);
    assert_eq!(issuer.discovery_requests(), 1);
    assert_eq!(issuer.jwks_requests(), 1, "keys are fetched once and kept");
}

#[tokio::test]
async fn tokens_breaking_a_claim_rule_are_refused_with_the_rule() {
    let (issuer, v) = setup().await;
    let other_app = "22222222-2222-4222-8222-222222222222";
    let cases: Vec<Case> = vec![
        ("wrong aud", TokenSpec::v1(TENANT, other_app), |e| {
            matches!(e, TokenError::WrongAudience)
        }),
        (
            "no aud",
            TokenSpec::v1(TENANT, APP).without_claim("aud"),
            |e| matches!(e, TokenError::MissingClaim("aud")),
        ),
        (
            "v1 appid not Graph",
            TokenSpec {
                publisher: other_app.into(),
                ..TokenSpec::v1(TENANT, APP)
            },
            |e| matches!(e, TokenError::WrongPublisher),
        ),
        (
            "v2 azp not Graph",
            TokenSpec {
                publisher: other_app.into(),
                ..TokenSpec::v2(TENANT, APP)
            },
            |e| matches!(e, TokenError::WrongPublisher),
        ),
        (
            "v2 with a foreign appid next to Graph's azp",
            TokenSpec::v2(TENANT, APP).with_claim("appid", other_app),
            |e| matches!(e, TokenError::WrongPublisher),
        ),
        (
            "no publisher",
            TokenSpec::v1(TENANT, APP).without_claim("appid"),
            |e| matches!(e, TokenError::WrongPublisher),
        ),
        (
            "tenant not served",
            TokenSpec::v1(STRANGER, APP),
            |e| matches!(e, TokenError::TenantNotAllowed(t) if t == STRANGER),
        ),
        (
            "issuer of another tenant",
            TokenSpec::v1(TENANT, APP)
                .with_claim("iss", format!("https://sts.windows.net/{STRANGER}/")),
            |e| matches!(e, TokenError::WrongIssuer),
        ),
        (
            "issuer of another shape",
            TokenSpec::v1(TENANT, APP)
                .with_claim("iss", format!("https://evil.example/{TENANT}/v2.0")),
            |e| matches!(e, TokenError::WrongIssuer),
        ),
        (
            "v1 issuer without trailing slash",
            TokenSpec::v1(TENANT, APP)
                .with_claim("iss", format!("https://sts.windows.net/{TENANT}")),
            |e| matches!(e, TokenError::WrongIssuer),
        ),
        (
            "expired beyond the leeway",
            TokenSpec {
                expires_in: -600,
                not_before_in: -7200,
                ..TokenSpec::v1(TENANT, APP)
            },
            |e| matches!(e, TokenError::Expired { .. }),
        ),
        (
            "not yet valid beyond the leeway",
            TokenSpec {
                not_before_in: 900,
                ..TokenSpec::v2(TENANT, APP)
            },
            |e| matches!(e, TokenError::NotYetValid { .. }),
        ),
        (
            "no exp",
            TokenSpec::v1(TENANT, APP).without_claim("exp"),
            |e| matches!(e, TokenError::MissingClaim("exp")),
        ),
        (
            "no nbf",
            TokenSpec::v1(TENANT, APP).without_claim("nbf"),
            |e| matches!(e, TokenError::MissingClaim("nbf")),
        ),
        (
            "no tid",
            TokenSpec::v1(TENANT, APP).without_claim("tid"),
            |e| matches!(e, TokenError::MissingClaim("tid")),
        ),
        (
            "exp of the wrong type",
            TokenSpec::v1(TENANT, APP).with_claim("exp", "tomorrow"),
            |e| matches!(e, TokenError::Malformed(_)),
        ),
    ];
    for (name, spec, expected) in cases {
        let token = issuer.mint(&spec);
        let err = check(&v, token.clone()).await.expect_err(name);
        assert!(expected(&err), "{name}: got {err:?}");
        assert!(
            !err.to_string().contains(&token),
            "{name}: token in error text"
        );
    }
}

#[tokio::test]
async fn a_token_within_the_clock_skew_leeway_is_accepted() {
    let (issuer, v) = setup().await;
    let just_expired = TokenSpec {
        expires_in: -60,
        not_before_in: -3600,
        ..TokenSpec::v1(TENANT, APP)
    };
    let early = TokenSpec {
        not_before_in: 60,
        ..TokenSpec::v2(TENANT, APP)
    };
    assert!(check(&v, issuer.mint(&just_expired)).await.is_ok());
    assert!(check(&v, issuer.mint(&early)).await.is_ok());
}

#[tokio::test]
async fn forged_signatures_and_algorithms_are_refused() {
    let (issuer, v) = setup().await;
    let genuine = TokenSpec::v1(TENANT, APP);
    let cases: Vec<Case> = vec![
        (
            "another key under our kid",
            genuine.clone().with_signing(Signing::ForeignKey),
            |e| matches!(e, TokenError::BadSignature),
        ),
        (
            "alg none",
            genuine.clone().with_signing(Signing::Unsigned),
            |e| matches!(e, TokenError::UnsupportedAlgorithm(a) if a == "none"),
        ),
        (
            "unsigned but claiming RS256",
            genuine
                .clone()
                .with_signing(Signing::Unsigned)
                .with_alg("RS256"),
            |e| matches!(e, TokenError::BadSignature),
        ),
        (
            "HS256 keyed with the public key",
            genuine.clone().with_signing(Signing::Hs256WithPublicKey),
            |e| matches!(e, TokenError::UnsupportedAlgorithm(a) if a == "HS256"),
        ),
        (
            "HS256 keyed with the public key, header says RS256",
            genuine
                .clone()
                .with_signing(Signing::Hs256WithPublicKey)
                .with_alg("RS256"),
            |e| matches!(e, TokenError::BadSignature),
        ),
        (
            "RS512 label",
            genuine.clone().with_alg("RS512"),
            |e| matches!(e, TokenError::UnsupportedAlgorithm(a) if a == "RS512"),
        ),
        ("PS256 label", genuine.clone().with_alg("PS256"), |e| {
            matches!(e, TokenError::UnsupportedAlgorithm(_))
        }),
    ];
    for (name, spec, expected) in cases {
        let err = check(&v, issuer.mint(&spec)).await.expect_err(name);
        assert!(expected(&err), "{name}: got {err:?}");
    }

    // A valid token whose signature was swapped for another valid token's.
    let a = issuer.mint(&TokenSpec::v1(TENANT, APP));
    let b = issuer.mint(&TokenSpec::v1(TENANT_2, APP));
    let (a_input, _) = a.rsplit_once('.').unwrap();
    let (_, b_signature) = b.rsplit_once('.').unwrap();
    let spliced = format!("{a_input}.{b_signature}");
    assert!(matches!(
        check(&v, spliced).await,
        Err(TokenError::BadSignature)
    ));
}

#[tokio::test]
async fn malformed_strings_and_empty_batches_are_refused() {
    let (issuer, v) = setup().await;
    let good = issuer.mint(&TokenSpec::v1(TENANT, APP));
    let (header, rest) = good.split_once('.').unwrap();
    let (_, signature) = rest.split_once('.').unwrap();
    let malformed = [
        String::new(),
        "validation-token".into(),
        "a.b".into(),
        "a.b.c".into(),
        format!("{good}.extra"),
        format!("%%%.{rest}"),
        "x".repeat(20_000),
    ];
    for token in malformed {
        let shown: String = token.chars().take(40).collect();
        match check(&v, token).await {
            Err(TokenError::Malformed(_)) => {}
            other => panic!("{shown}: {other:?}"),
        }
    }
    // Well-formed header, replaced claims: the signature no longer covers them.
    for claims in ["!!!", "e30"] {
        let token = format!("{header}.{claims}.{signature}");
        assert!(
            matches!(check(&v, token).await, Err(TokenError::BadSignature)),
            "{claims}"
        );
    }
    assert!(matches!(v.validate(&[]).await, Err(TokenError::NoTokens)));
}

#[tokio::test]
async fn one_bad_token_fails_the_whole_batch() {
    let (issuer, v) = setup().await;
    let good = issuer.mint(&TokenSpec::v1(TENANT, APP));
    let bad = issuer.mint(&TokenSpec::v1(TENANT_2, "someone-else"));
    let err = v.validate(&[good.clone(), bad]).await.unwrap_err();
    assert!(matches!(err, TokenError::WrongAudience), "{err:?}");
    assert!(v.validate(&[good]).await.is_ok());
}

#[tokio::test]
async fn two_tokens_for_two_tenants_cover_both() {
    let (issuer, v) = setup().await;
    let tokens = [
        issuer.mint(&TokenSpec::v1(TENANT, APP)),
        issuer.mint(&TokenSpec::v2(TENANT_2, APP)),
    ];
    let ok = v.validate(&tokens).await.unwrap();
    assert!(ok.covers(TENANT));
    assert!(ok.covers(&TENANT_2.to_ascii_uppercase()));
    assert!(!ok.covers(STRANGER));
    assert_eq!(ok.tenants().count(), 2);
}

#[tokio::test]
async fn an_unknown_kid_refreshes_the_keys_once_then_is_rate_limited() {
    let (issuer, v) = setup().await;
    let first_kid = issuer.current_kid();
    assert!(
        check(&v, issuer.mint(&TokenSpec::v1(TENANT, APP)))
            .await
            .is_ok()
    );
    assert_eq!(issuer.jwks_requests(), 1);

    issuer.rotate_key().unwrap();
    let rotated = issuer.mint(&TokenSpec::v2(TENANT, APP));
    assert!(check(&v, rotated.clone()).await.is_ok());
    assert_eq!(
        issuer.jwks_requests(),
        2,
        "exactly one refresh for the new kid"
    );
    assert!(check(&v, rotated).await.is_ok());
    assert_eq!(issuer.jwks_requests(), 2);

    // A second new key within the refresh interval: no fetch, the key stays unknown.
    let newest = issuer.rotate_key().unwrap();
    let err = check(&v, issuer.mint(&TokenSpec::v1(TENANT, APP)))
        .await
        .unwrap_err();
    assert!(
        matches!(&err, TokenError::UnknownKey(kid) if *kid == newest),
        "{err:?}"
    );
    let forged_kid = TokenSpec::v1(TENANT, APP).with_kid("never-published");
    assert!(matches!(
        check(&v, issuer.mint(&forged_kid)).await,
        Err(TokenError::UnknownKey(_))
    ));
    assert_eq!(issuer.jwks_requests(), 2);
    // Keys known before still work.
    let first_kid_token = issuer.mint(&TokenSpec::v1(TENANT_2, APP).with_kid(&first_kid));
    assert_eq!(check(&v, first_kid_token).await.unwrap(), [TENANT_2]);
    assert_eq!(issuer.jwks_requests(), 2);
}

#[tokio::test]
async fn once_the_refresh_interval_has_passed_an_unknown_kid_refreshes_again() {
    let issuer = LocalIssuer::start().await.unwrap();
    let v = validator(&issuer).with_options(ValidatorOptions {
        refresh_interval: Duration::ZERO,
        ..ValidatorOptions::default()
    });
    assert!(
        check(&v, issuer.mint(&TokenSpec::v1(TENANT, APP)))
            .await
            .is_ok()
    );
    for round in 2..=3 {
        issuer.rotate_key().unwrap();
        assert!(
            check(&v, issuer.mint(&TokenSpec::v1(TENANT, APP)))
                .await
                .is_ok()
        );
        assert_eq!(issuer.jwks_requests(), round);
    }
}

#[tokio::test]
async fn stale_keys_are_re_read_and_still_serve_when_the_authority_is_down() {
    let issuer = LocalIssuer::start().await.unwrap();
    let v = validator(&issuer).with_options(ValidatorOptions {
        key_max_age: Duration::ZERO,
        ..ValidatorOptions::default()
    });
    let tokens: Vec<String> = (0..3)
        .map(|_| issuer.mint(&TokenSpec::v1(TENANT, APP).with_claim("uti", unique())))
        .collect();
    assert!(check(&v, tokens[0].clone()).await.is_ok());
    assert!(check(&v, tokens[1].clone()).await.is_ok());
    assert_eq!(issuer.jwks_requests(), 2, "stale keys are read again");

    issuer.set_unavailable(true);
    assert!(check(&v, tokens[2].clone()).await.is_ok());
    assert_eq!(
        v.stats().key_fetches,
        3,
        "the re-read was tried, failed, and the old key served"
    );
}

fn unique() -> String {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    format!("token-{}", NEXT.fetch_add(1, Ordering::SeqCst))
}

#[tokio::test]
async fn concurrent_requests_for_a_new_kid_share_one_refresh() {
    let (issuer, v) = setup().await;
    assert!(
        check(&v, issuer.mint(&TokenSpec::v1(TENANT, APP)))
            .await
            .is_ok()
    );
    issuer.rotate_key().unwrap();
    let v = Arc::new(v);
    let mut tasks = Vec::new();
    for i in 0..16 {
        let tenant = if i % 2 == 0 { TENANT } else { TENANT_2 };
        let token = issuer.mint(&TokenSpec::v2(tenant, APP));
        let v = v.clone();
        tasks.push(tokio::spawn(async move { v.validate(&[token]).await }));
    }
    for task in tasks {
        assert!(task.await.unwrap().is_ok());
    }
    assert_eq!(issuer.jwks_requests(), 2);
    assert_eq!(v.stats().key_fetches, 2);
}

#[tokio::test]
async fn a_known_token_is_answered_from_the_cache_until_it_expires() {
    let issuer = LocalIssuer::start().await.unwrap();
    let now = Arc::new(AtomicU64::new(
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_secs(),
    ));
    let clock = now.clone();
    let v = validator(&issuer).with_clock(Arc::new(move || clock.load(Ordering::SeqCst)));

    let token = issuer.mint(&TokenSpec {
        expires_in: 600,
        ..TokenSpec::v1(TENANT, APP)
    });
    for _ in 0..5 {
        assert_eq!(check(&v, token.clone()).await.unwrap(), [TENANT]);
    }
    let stats = v.stats();
    assert_eq!(stats.verifications, 1, "verified once");
    assert_eq!(stats.cache_hits, 4);
    assert_eq!(issuer.jwks_requests(), 1);

    // At exp + leeway the cached entry still holds; one second later it is refused from the
    // cache, by the clock alone.
    let claims: serde_json::Value =
        jsonwebtoken::dangerous::insecure_decode_claims(&token).unwrap();
    let exp = claims["exp"].as_u64().unwrap();
    now.store(exp + 300, Ordering::SeqCst);
    assert!(check(&v, token.clone()).await.is_ok());
    now.store(exp + 301, Ordering::SeqCst);
    assert!(matches!(
        check(&v, token.clone()).await,
        Err(TokenError::Expired { .. })
    ));
    assert_eq!(v.stats().verifications, 1, "refused from the cache");
    assert_eq!(v.stats().cache_hits, 6);
    // Forgotten now: a later attempt verifies again and is still refused.
    assert!(matches!(
        check(&v, token).await,
        Err(TokenError::Expired { .. })
    ));
    assert_eq!(v.stats().verifications, 2);
    assert_eq!(issuer.jwks_requests(), 1);
}

#[tokio::test]
async fn refused_tokens_are_not_cached() {
    let (issuer, v) = setup().await;
    let forged = issuer.mint(&TokenSpec::v1(TENANT, APP).with_signing(Signing::ForeignKey));
    for _ in 0..3 {
        assert!(matches!(
            check(&v, forged.clone()).await,
            Err(TokenError::BadSignature)
        ));
    }
    assert_eq!(v.stats().verifications, 3);
    assert_eq!(v.stats().cache_hits, 0);
}

#[tokio::test]
async fn an_authority_outage_is_a_jwks_error_and_backs_off() {
    let (issuer, v) = setup().await;
    let token = issuer.mint(&TokenSpec::v1(TENANT, APP));
    issuer.set_unavailable(true);
    let err = check(&v, token.clone()).await.unwrap_err();
    assert!(
        matches!(err, TokenError::Jwks(JwksError::Status { status: 503, .. })),
        "{err:?}"
    );
    // Within the failure backoff, no new attempt is made.
    assert!(matches!(
        check(&v, token).await,
        Err(TokenError::Jwks(JwksError::BackingOff))
    ));
    assert_eq!(v.stats().key_fetches, 1);
    assert_eq!(issuer.discovery_requests(), 1);
}

#[tokio::test]
async fn a_silent_authority_times_out() {
    let issuer = LocalIssuer::start().await.unwrap();
    let token = issuer.mint(&TokenSpec::v1(TENANT, APP));
    // Accepts connections (the kernel's backlog) but never answers.
    let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let authority = format!("http://{}", silent.local_addr().unwrap());
    let v = TokenValidator::new(
        &authority,
        vec![APP.to_owned()],
        vec![TENANT.to_owned()],
        reqwest::Client::new(),
    )
    .with_options(ValidatorOptions {
        fetch_timeout: Duration::from_millis(200),
        ..ValidatorOptions::default()
    });
    let err = check(&v, token).await.unwrap_err();
    assert!(
        matches!(err, TokenError::Jwks(JwksError::Timeout(_))),
        "{err:?}"
    );
}

#[tokio::test]
async fn the_issuer_publishes_graph_shaped_documents() {
    let issuer = LocalIssuer::start().await.unwrap();
    let http = reqwest::Client::new();
    let discovery: serde_json::Value = http
        .get(format!(
            "{}/common/.well-known/openid-configuration",
            issuer.authority_host()
        ))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let jwks_uri = discovery["jwks_uri"].as_str().unwrap();
    assert_eq!(
        jwks_uri,
        format!("{}/common/discovery/keys", issuer.authority_host())
    );
    let jwks: serde_json::Value = http
        .get(jwks_uri)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let key = &jwks["keys"][0];
    for field in ["kid", "n", "e"] {
        assert!(
            key[field].as_str().is_some_and(|s| !s.is_empty()),
            "{field}"
        );
    }
    assert_eq!(key["kty"], "RSA");
    assert_eq!(key["use"], "sig");
    assert_eq!(key["alg"], "RS256");
    assert_eq!(key["kid"], issuer.current_kid().as_str());

    // Minted claims, read without verification: the shapes Graph sends.
    let token = issuer.mint(&TokenSpec::v2(TENANT, APP));
    let claims: serde_json::Value =
        jsonwebtoken::dangerous::insecure_decode_claims(&token).unwrap();
    assert_eq!(claims["azp"], GRAPH_PUBLISHER_APP_ID);
    assert_eq!(
        claims["iss"],
        format!("{}/{TENANT}/v2.0", issuer.authority_host())
    );
    issuer.shutdown().await;
}

#[tokio::test]
async fn the_issuer_stops_serving_on_shutdown_and_on_drop() {
    let discovery = |issuer: &LocalIssuer| {
        format!(
            "{}/common/.well-known/openid-configuration",
            issuer.authority_host()
        )
    };
    // A fresh client per request: no pooled connection outlives the server.
    let get = |url: String| async move {
        reqwest::Client::new()
            .get(url)
            .send()
            .await
            .map(|r| r.status())
    };

    let issuer = LocalIssuer::start().await.unwrap();
    let url = discovery(&issuer);
    assert!(get(url.clone()).await.unwrap().is_success());
    issuer.shutdown().await;
    assert!(get(url).await.unwrap_err().is_connect());

    let issuer = LocalIssuer::start().await.unwrap();
    let url = discovery(&issuer);
    assert!(get(url.clone()).await.unwrap().is_success());
    drop(issuer);
    let mut stopped = false;
    for _ in 0..100 {
        if get(url.clone()).await.is_err_and(|e| e.is_connect()) {
            stopped = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(stopped, "still serving after drop");
}
