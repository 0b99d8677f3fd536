//! Property tests over generated and mutated inputs (bit flips, truncations, wrong lengths,
//! wrong types, huge values): the collection parser, the decryption path and the token
//! validator never panic and never accept what fails a check.
//!
//! The test command runs a few hundred cases per property (the receiver's, which runs the whole
//! path with an RSA operation per genuine item, 32); `scripts/fuzz` sets `PROPTEST_CASES` to
//! 100,000 and every property runs that many.

mod mutations;
mod receiver;

use std::sync::{Arc, OnceLock};

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use proptest::prelude::*;
use proptest::test_runner::{Config, TestRunner};
use serde_json::Value;

use teams_notifications::devtools::certificates::self_signed;
use teams_notifications::graph::crypto::{self, DecryptError};
use teams_notifications::graph::notification::{EncryptedContent, parse_collection};
use teams_notifications::graph::screening::{ScreenError, screen};
use teams_notifications::keys::DecryptionKey;

use mutations::{Mutation, mutate, mutation};

/// Cases per property when `PROPTEST_CASES` is unset (the test command's share).
const DEFAULT_CASES: u32 = 256;

/// The cases a property runs: `PROPTEST_CASES` when set (`scripts/fuzz` sets 100,000), the
/// property's share of the test command otherwise. Every property honours the setting whole.
pub(crate) fn cases(test_command_share: u32) -> u32 {
    std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(test_command_share)
}

/// A runner for `cases` cases.
pub(crate) fn runner_for(cases: u32) -> TestRunner {
    TestRunner::new(Config {
        cases,
        failure_persistence: None,
        ..Config::default()
    })
}

pub(crate) fn runner() -> TestRunner {
    runner_for(cases(DEFAULT_CASES))
}

/// The bodies mutations start from: Microsoft's samples and a minimal rich batch.
fn seeds() -> Vec<Vec<u8>> {
    let mut out: Vec<Vec<u8>> = [
        "callevent_envelope.json",
        "chat_message_envelope.json",
        "emergency_call_envelope.json",
        "channel_message_basic_item.json",
    ]
    .iter()
    .map(|f| crate::support::fixture(f).into_bytes())
    .collect();
    out.push(
        br#"{"value":[{"subscriptionId":"s","clientState":"c","changeType":"created","resource":"chats('1')/messages('2')","tenantId":"t","encryptedContent":{"data":"AAAA","dataSignature":"AAAA","dataKey":"AAAA","encryptionCertificateId":"k"}}],"validationTokens":["a.b.c"]}"#.to_vec(),
    );
    out
}

fn key() -> &'static DecryptionKey {
    static KEY: OnceLock<DecryptionKey> = OnceLock::new();
    KEY.get_or_init(|| self_signed("prop", 1))
}

#[test]
fn the_collection_parsers_never_panic_and_agree() {
    let seeds = seeds();
    let body = prop_oneof![
        proptest::collection::vec(any::<u8>(), 0..512),
        (0..seeds.len(), proptest::collection::vec(mutation(), 1..4))
            .prop_map(move |(i, ms)| ms.iter().fold(seeds[i].clone(), |b, m| mutate(&b, m))),
    ];
    runner()
        .run(&body, |body| {
            let full = parse_collection(&body);
            let mut relaxed = None;
            match (screen(&body, &mut relaxed, 10_000), full) {
                (Ok(screened), Ok(full)) => {
                    prop_assert_eq!(screened.items.len(), full.value.len());
                    for (s, f) in screened.items.iter().zip(&full.value) {
                        prop_assert_eq!(s.client_state.as_deref(), f.client_state.as_deref());
                        let built = s.build();
                        prop_assert!(built.is_ok(), "{:?}", built);
                        prop_assert_eq!(built.unwrap().canonical(), f.canonical());
                    }
                }
                // The first pass reads less than the full parse, so it may accept a body whose
                // items do not build (the receiver then answers 400 for a matching item);
                // it never refuses a body the full parser accepts (but see UTF-8, below).
                (Ok(_), Err(_)) => {}
                (Err(ScreenError::TooMany { .. }), _) => {}
                // JSON is UTF-8 (RFC 8259): the first pass reads items as text and refuses a
                // body that is not, where the full parser skipped invalid bytes inside a value
                // it ignores. Any other disagreement is a bug.
                (Err(e), Ok(_)) => prop_assert!(
                    std::str::from_utf8(&body).is_err(),
                    "screening refused a valid body: {e}"
                ),
                (Err(_), Err(_)) => {}
            }
            Ok(())
        })
        .unwrap();
}

/// A genuine `encryptedContent` for `key()`.
fn genuine() -> &'static EncryptedContent {
    static CONTENT: OnceLock<EncryptedContent> = OnceLock::new();
    CONTENT.get_or_init(|| {
        crypto::encrypt(
            br#"{"id":"1","body":{"content":"hello"}}"#,
            &key().certificate,
            "prop",
        )
        .unwrap()
    })
}

#[derive(Debug, Clone, Copy)]
enum Field {
    Data,
    Signature,
    Key,
}

fn field_of(c: &mut EncryptedContent, f: Field) -> &mut Option<String> {
    match f {
        Field::Data => &mut c.data,
        Field::Signature => &mut c.data_signature,
        Field::Key => &mut c.data_key,
    }
}

/// What to do to one field: mutate its decoded bytes (then re-encode), replace its text, or
/// remove it.
#[derive(Debug, Clone)]
enum ContentChange {
    Bytes(Field, Mutation),
    Text(Field, String),
    Remove(Field),
}

fn content_change() -> impl Strategy<Value = ContentChange> {
    let field = prop_oneof![Just(Field::Data), Just(Field::Signature), Just(Field::Key)];
    prop_oneof![
        4 => (field.clone(), mutation()).prop_map(|(f, m)| ContentChange::Bytes(f, m)),
        1 => (field.clone(), ".{0,64}").prop_map(|(f, t)| ContentChange::Text(f, t)),
        1 => field.prop_map(ContentChange::Remove),
    ]
}

fn apply(content: &EncryptedContent, change: &ContentChange) -> EncryptedContent {
    let mut c = content.clone();
    match change {
        ContentChange::Bytes(f, m) => {
            let slot = field_of(&mut c, *f);
            let raw = slot
                .as_deref()
                .and_then(|t| STANDARD.decode(t).ok())
                .unwrap_or_default();
            *slot = Some(STANDARD.encode(mutate(&raw, m)));
        }
        ContentChange::Text(f, t) => *field_of(&mut c, *f) = Some(t.clone()),
        ContentChange::Remove(f) => *field_of(&mut c, *f) = None,
    }
    c
}

#[test]
fn decryption_never_panics_and_refuses_every_change() {
    let good = genuine();
    assert!(crypto::decrypt(good, &key().private_key).is_ok());
    runner()
        .run(
            &proptest::collection::vec(content_change(), 1..3),
            |changes| {
                let changed = changes.iter().fold(good.clone(), |c, ch| apply(&c, ch));
                let result = crypto::decrypt(&changed, &key().private_key);
                if changed == *good {
                    prop_assert!(result.is_ok());
                } else {
                    prop_assert!(result.is_err(), "a changed item decrypted: {changes:?}");
                    // A dataKey of the wrong length never reaches the private-key operation.
                    let wrapped = changed
                        .data_key
                        .as_deref()
                        .and_then(|k| STANDARD.decode(k).ok());
                    if let (Some(w), Err(e)) = (wrapped, &result)
                        && w.len() != key().private_key.size()
                        && matches!(e, DecryptError::KeyUnwrap | DecryptError::BadKeyLength(_))
                    {
                        prop_assert!(false, "mis-sized dataKey reached RSA: {e:?}");
                    }
                }
                Ok(())
            },
        )
        .unwrap();
}

/// Wrong types and huge values where Graph puts strings, through the parser then decryption.
#[test]
fn items_of_any_shape_parse_or_fail_cleanly_and_never_decrypt_wrongly() {
    let good = serde_json::to_value(genuine()).unwrap();
    let value = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        any::<f64>()
            .prop_map(|f| serde_json::Number::from_f64(f).map_or(Value::Null, Value::Number)),
        ".{0,32}".prop_map(Value::from),
        (1usize..200_000).prop_map(|n| Value::from("A".repeat(n))),
        Just(serde_json::json!({"nested": [1, {"x": []}]})),
        Just(serde_json::json!(["AAAA"])),
    ];
    let name = prop_oneof![
        Just("data"),
        Just("dataSignature"),
        Just("dataKey"),
        Just("encryptionCertificateId"),
        Just("encryptionCertificateThumbprint"),
    ];
    runner()
        .run(&(name, value), |(name, value)| {
            let mut content = good.clone();
            content[name] = value;
            let body = serde_json::json!({"value": [{"subscriptionId": "s", "encryptedContent": content}]});
            let bytes = serde_json::to_vec(&body).unwrap();
            if let Ok(collection) = parse_collection(&bytes) {
                let c = collection.value[0].encrypted_content.as_ref().unwrap();
                let result = crypto::decrypt(c, &key().private_key);
                let unchanged = c.data == genuine().data
                    && c.data_signature == genuine().data_signature
                    && c.data_key == genuine().data_key;
                prop_assert_eq!(result.is_ok(), unchanged);
            }
            Ok(())
        })
        .unwrap();
}

#[test]
fn the_token_validator_never_panics_and_refuses_every_change() {
    use teams_notifications::devtools::issuer::{LocalIssuer, TokenSpec};
    use teams_notifications::graph::tokens::TokenValidator;
    const APP: &str = "8f6c1e4a-34a4-4d25-9a4b-6b7a0c1d2e3f";
    const TENANT: &str = "72f988bf-86f1-41af-91ab-2d7cd011db47";

    let rt = tokio::runtime::Runtime::new().unwrap();
    let issuer = rt.block_on(LocalIssuer::start()).unwrap();
    let validator = Arc::new(TokenValidator::new(
        issuer.authority_host(),
        vec![APP.into()],
        vec![TENANT.into()],
        reqwest::Client::new(),
    ));
    let good = issuer.mint(&TokenSpec::v1(TENANT, APP));
    assert!(
        rt.block_on(validator.validate(std::slice::from_ref(&good)))
            .is_ok()
    );
    runner()
        .run(&proptest::collection::vec(mutation(), 1..4), |ms| {
            let bytes = ms
                .iter()
                .fold(good.clone().into_bytes(), |b, m| mutate(&b, m));
            let token = String::from_utf8_lossy(&bytes).into_owned();
            let result = rt.block_on(validator.validate(std::slice::from_ref(&token)));
            prop_assert_eq!(result.is_ok(), token == good, "{:?}", token);
            Ok(())
        })
        .unwrap();
    rt.block_on(issuer.shutdown());
}
