//! Storage that refuses the handler at start (a role assignment not applied yet): the process
//! starts anyway, answers readiness and Graph's handshake, answers notifications 503 with a log
//! line that says why (Graph retries), and archives them once storage takes writes.
//!
//! The refusal is real Azurite's: an account SAS whose start time (`st`) is a few seconds
//! ahead is refused with 403 until then, as an identity is until its role applies.

use std::time::{Duration, Instant};

use reqwest::StatusCode;
use secrecy::{ExposeSecret, SecretString};
use teams_notifications::archive::blob::BlobArchive;
use teams_notifications::archive::sas::{AccountKey, AccountSas};
use teams_notifications::archive::{Archive, Kind};
use time::OffsetDateTime;

use super::process::{Launch, PATIENCE};
use super::{basic_body, post, scratch};
use crate::azurite;
use crate::support::CLIENT_STATE;

/// A connection string whose SAS Storage refuses until `valid_from`.
fn connection_valid_from(endpoint: &str, valid_from: OffsetDateTime) -> String {
    let key = AccountKey::from_base64(azurite::ACCOUNT, azurite::ACCOUNT_KEY).unwrap();
    let sas = AccountSas {
        start: Some(valid_from),
        permissions: "rwdlc".into(),
        ..AccountSas::for_archive(valid_from + time::Duration::hours(1), false)
    };
    format!(
        "BlobEndpoint={endpoint};SharedAccessSignature={}",
        key.sign(&sas).expose_secret()
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_archive_refused_at_start_answers_503_until_storage_takes_writes() {
    let s = scratch();
    let endpoint = azurite::endpoint();
    let container = azurite::unique_container("refused");
    // Seconds precision on the wire: a whole second later than now plus the margin.
    let valid_from =
        OffsetDateTime::now_utc().replace_nanosecond(0).unwrap() + time::Duration::seconds(6);
    let mut launch = Launch::new(&s.archive, &s.log)
        .set(
            "ARCHIVE_CONNECTION",
            &connection_valid_from(&endpoint, valid_from),
        )
        .set("ARCHIVE_CONTAINER", &container);
    launch.settings.remove("ARCHIVE_DIR");
    // `start` returns once `GET /` answers: the handler did not stop on the refusal.
    let handler = launch.start().await;
    let http = reqwest::Client::new();

    let handshake = http
        .post(format!(
            "{}/api/notifications?validationToken=Validation%3A+Testing",
            handler.url
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(handshake.status(), 200);
    assert_eq!(handshake.text().await.unwrap(), "Validation: Testing");

    let body = basic_body(&["refused-then-stored".to_string()], CLIENT_STATE);
    assert!(
        OffsetDateTime::now_utc() < valid_from - time::Duration::seconds(1),
        "the handler took over 5 s to start: the refusal window was missed"
    );
    assert_eq!(
        post(&http, &handler.url, body.clone()).await,
        Some(StatusCode::SERVICE_UNAVAILABLE),
        "{}",
        handler.log_text()
    );
    let log = handler.log_text();
    assert!(
        log.contains("the archive's storage refuses this identity"),
        "{log}"
    );
    assert!(
        log.contains("archive unavailable: answering 503 so Graph retries") && log.contains("403"),
        "{log}"
    );
    assert!(!log.contains("sig="), "the SAS is never logged: {log}");

    // Graph's retry, once storage takes writes: archived (the write makes the container).
    let deadline = Instant::now() + PATIENCE;
    loop {
        if post(&http, &handler.url, body.clone()).await == Some(StatusCode::ACCEPTED) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "still refused long after the SAS start time; log:\n{}",
            handler.log_text()
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    let reader = BlobArchive::from_connection_string(
        &SecretString::from(azurite::connection_string(&endpoint)),
        &container,
    )
    .await
    .unwrap();
    assert_eq!(reader.list(Kind::Events).await.unwrap().len(), 1);
}
