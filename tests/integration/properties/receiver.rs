//! The whole notification path (the production builder's receiver): over generated batches of
//! genuine and forged items, with valid, mutated or missing validationTokens, only the genuine
//! items of a batch whose tokens are valid ever become events.

use std::collections::HashSet;

use bytes::Bytes;
use proptest::prelude::*;
use serde_json::{Value, json};

use teams_notifications::devtools::certificates::{self_signed, to_pem};
use teams_notifications::devtools::issuer::{LocalIssuer, TokenSpec};
use teams_notifications::graph::crypto;
use teams_notifications::receiver::Endpoint;

use super::mutations::{Mutation, mutate, mutation};
use crate::support::CLIENT_STATE;

const APP: &str = "8f6c1e4a-34a4-4d25-9a4b-6b7a0c1d2e3f";
const TENANT: &str = "72f988bf-86f1-41af-91ab-2d7cd011db47";
/// The cases the test command runs (`PROPTEST_CASES` unset).
const TEST_COMMAND_CASES: u32 = 32;

/// One item of a generated batch.
#[derive(Debug, Clone)]
enum Item {
    Genuine,
    /// Right clientState, but the bytes of its `encryptedContent` field mutated.
    Tampered(&'static str, Mutation),
    WrongClientState(String),
    /// A basic notification (no resource data) with the right or a wrong clientState.
    Basic {
        genuine: bool,
    },
}

#[derive(Debug, Clone)]
enum Token {
    Valid,
    Mutated(Vec<Mutation>),
    Missing,
}

fn item() -> impl Strategy<Value = Item> {
    let field = prop_oneof![Just("data"), Just("dataSignature"), Just("dataKey")];
    prop_oneof![
        3 => Just(Item::Genuine),
        3 => (field, mutation()).prop_map(|(f, m)| Item::Tampered(f, m)),
        2 => ".{0,40}".prop_map(Item::WrongClientState),
        1 => any::<bool>().prop_map(|genuine| Item::Basic { genuine }),
    ]
}

fn token() -> impl Strategy<Value = Token> {
    prop_oneof![
        3 => Just(Token::Valid),
        2 => proptest::collection::vec(mutation(), 1..3).prop_map(Token::Mutated),
        1 => Just(Token::Missing),
    ]
}

#[test]
fn only_genuine_items_of_a_valid_batch_become_events() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let key = self_signed("prop", 1);
    let pem = dir.path().join("prop.pem");
    std::fs::write(&pem, to_pem(&key).unwrap()).unwrap();
    let issuer = rt.block_on(LocalIssuer::start()).unwrap();
    let archive = dir.path().join("archive");
    let settings = [
        ("ARCHIVE_DIR", archive.display().to_string()),
        ("NOTIFICATION_CLIENT_STATE", CLIENT_STATE.to_string()),
        ("GRAPH_TENANT_ID", TENANT.to_string()),
        ("GRAPH_CLIENT_ID", APP.to_string()),
        ("AUTHORITY_HOST", issuer.authority_host().to_string()),
        (
            "NOTIFICATION_CERTIFICATES",
            format!("prop={}", pem.display()),
        ),
    ];
    let config = teams_notifications::config::Config::from_lookup(|k| {
        settings
            .iter()
            .find(|(n, _)| *n == k)
            .map(|(_, v)| v.clone())
    })
    .unwrap();
    let app = rt
        .block_on(teams_notifications::startup::Builder::new(config).build())
        .unwrap();
    let good_token = issuer.mint(&TokenSpec::v1(TENANT, APP));
    let genuine_ids = std::cell::RefCell::new(HashSet::new());
    let case = std::cell::Cell::new(0u64);

    // The receiver's path costs an RSA operation per genuine item: a smaller share of the test
    // command, but all of `PROPTEST_CASES` when it is set (scripts/fuzz).
    let cases = super::cases(TEST_COMMAND_CASES);
    let mut runner = super::runner_for(cases);
    let batch = (proptest::collection::vec(item(), 1..5), token());
    runner
        .run(&batch, |(items, token)| {
            case.set(case.get() + 1);
            let case = case.get();
            let mut expected = 0;
            let value: Vec<Value> = items
                .iter()
                .enumerate()
                .map(|(i, item)| {
                    let id = format!("c{case}-i{i}");
                    let (body, genuine) = build(item, &id, &key);
                    if genuine {
                        expected += 1;
                        genuine_ids.borrow_mut().insert(id);
                    }
                    body
                })
                .collect();
            let tokens = match &token {
                Token::Valid => vec![good_token.clone()],
                Token::Mutated(ms) => {
                    let bytes = ms
                        .iter()
                        .fold(good_token.clone().into_bytes(), |b, m| mutate(&b, m));
                    vec![String::from_utf8_lossy(&bytes).into_owned()]
                }
                Token::Missing => vec![],
            };
            let rich = items
                .iter()
                .any(|i| matches!(i, Item::Genuine | Item::Tampered(..)));
            let token_ok = matches!(token, Token::Valid)
                || matches!(&token, Token::Mutated(_) if tokens[0] == good_token);
            let body = json!({"value": value, "validationTokens": tokens}).to_string();
            let receipt = rt
                .block_on(
                    app.receiver
                        .receive(Endpoint::Notifications, Bytes::from(body)),
                )
                .expect("every generated body is a collection the archive stores");
            let want = if rich && !token_ok { 0 } else { expected };
            prop_assert_eq!(receipt.events, want, "{:?} {:?}", items, token);
            if rich && !token_ok {
                prop_assert!(receipt.rejection.is_some());
            }
            Ok(())
        })
        .unwrap();
    // Every case asked for ran (scripts/fuzz asks 100,000 through `PROPTEST_CASES`).
    let asked = std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|v| v.parse::<u64>().ok())
        .unwrap_or(TEST_COMMAND_CASES.into());
    assert_eq!(case.get(), asked, "cases run against cases asked");
    eprintln!("receiver property: {} cases", case.get());

    // And in the archive: every event is one of the genuine items.
    let events = rt
        .block_on(app.archive.list(teams_notifications::archive::Kind::Events))
        .unwrap();
    for name in events {
        let record: Value =
            serde_json::from_slice(&rt.block_on(app.archive.get(&name)).unwrap().unwrap()).unwrap();
        let id = record["resourceData"]["id"].as_str().unwrap_or_default();
        assert!(
            genuine_ids.borrow().contains(id),
            "{name} holds {id}, which was forged"
        );
    }
    rt.block_on(issuer.shutdown());
}

/// The item's JSON and whether it is genuine.
fn build(item: &Item, id: &str, key: &teams_notifications::keys::DecryptionKey) -> (Value, bool) {
    let mut v = json!({
        "subscriptionId": "5a1b2c3d-0000-4000-8000-0000000000p1",
        "clientState": CLIENT_STATE,
        "changeType": "created",
        "resource": format!("chats('c')/messages('{id}')"),
        "resourceData": {"id": id},
        "subscriptionExpirationDateTime": "2026-12-02T10:00:00Z",
        "tenantId": TENANT,
    });
    let content = || {
        serde_json::to_value(
            crypto::encrypt(
                json!({"id": id, "body": {"content": "x"}})
                    .to_string()
                    .as_bytes(),
                &key.certificate,
                "prop",
            )
            .unwrap(),
        )
        .unwrap()
    };
    match item {
        Item::Genuine => {
            v["encryptedContent"] = content();
            (v, true)
        }
        Item::Tampered(field, m) => {
            let mut c = content();
            let raw = base64_decode(c[*field].as_str().unwrap());
            let changed = mutate(&raw, m);
            let unchanged = changed == raw;
            c[*field] = base64_encode(&changed).into();
            v["encryptedContent"] = c;
            (v, unchanged)
        }
        Item::WrongClientState(s) => {
            v["clientState"] = if s == CLIENT_STATE {
                format!("{s}x").into()
            } else {
                s.clone().into()
            };
            v["encryptedContent"] = content();
            (v, false)
        }
        Item::Basic { genuine } => {
            if !genuine {
                v["clientState"] = "forged".into();
            }
            (v, *genuine)
        }
    }
}

fn base64_decode(s: &str) -> Vec<u8> {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.decode(s).unwrap()
}

fn base64_encode(b: &[u8]) -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode(b)
}
