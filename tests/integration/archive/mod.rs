//! The archive contract, written once and run against both backends: the filesystem on a
//! temporary directory, and Azure Blob on the real Azurite emulator (a fresh container per test,
//! created by the backend itself). Then what only Blob has: authorization by SAS, paging,
//! a vanished container, and a dead service.

use std::num::NonZeroU32;
use std::sync::Arc;
use std::time::Duration;

use azure_storage_blob::models::BlobClientGetPropertiesResultHeaders as _;
use bytes::Bytes;
use secrecy::{ExposeSecret, SecretString};
use teams_notifications::archive::blob::BlobArchive;
use teams_notifications::archive::fs::FsArchive;
use teams_notifications::archive::sas::{AccountKey, AccountSas};
use teams_notifications::archive::{Archive, ArchiveError, Kind, ObjectName, Written};

use crate::azurite::{self, Azurite};

mod lease;

fn digest(i: u32) -> String {
    format!("{i:064x}")
}

fn name(kind: Kind, date: Option<(i32, u8, u8)>, partition: &str, i: u32) -> ObjectName {
    ObjectName::new(kind, date, partition, &digest(i))
}

fn json(text: &str) -> Bytes {
    Bytes::from(format!("{{\"value\":{text:?}}}"))
}

/// What every backend must do. `archive` must be empty.
async fn keeps_the_archive_contract(archive: Arc<dyn Archive>) {
    for kind in Kind::ALL {
        assert_eq!(
            archive.list(kind).await.unwrap(),
            vec![],
            "{kind:?} starts empty"
        );
    }

    // A missing object is `None`, not an error.
    let missing = name(Kind::Events, Some((2026, 1, 2)), "sub", 0);
    assert_eq!(archive.get(&missing).await.unwrap(), None);

    // Round trip.
    let first = name(Kind::Events, Some((2026, 1, 2)), "sub-1", 1);
    let body = json("first");
    assert_eq!(
        archive.put_if_absent(&first, body.clone()).await.unwrap(),
        Written::Created
    );
    assert_eq!(archive.get(&first).await.unwrap(), Some(body.clone()));

    // A resend is a no-op: reported, and the stored content is unchanged.
    assert_eq!(
        archive.put_if_absent(&first, json("second")).await.unwrap(),
        Written::AlreadyExisted
    );
    assert_eq!(archive.get(&first).await.unwrap(), Some(body));

    // Concurrent writers of one name: exactly one creates it, and its body is what is stored.
    let contested = name(Kind::Raw, Some((2026, 1, 2)), "sub-1", 2);
    let tasks: Vec<_> = (0..8)
        .map(|i| {
            let archive = archive.clone();
            let contested = contested.clone();
            tokio::spawn(async move {
                let body = json(&format!("writer {i}"));
                let written = archive.put_if_absent(&contested, body.clone()).await;
                (written.unwrap(), body)
            })
        })
        .collect();
    let mut created = Vec::new();
    for task in tasks {
        let (written, body) = task.await.unwrap();
        if written == Written::Created {
            created.push(body);
        }
    }
    assert_eq!(
        created.len(),
        1,
        "exactly one concurrent put creates the object"
    );
    assert_eq!(
        archive.get(&contested).await.unwrap().as_ref(),
        Some(&created[0])
    );

    // Deep and odd partitions: several dates, undated, hostile subscription ids (sanitized).
    let mut events = vec![
        first.clone(),
        name(Kind::Events, Some((2025, 12, 31)), "sub-1", 3),
        name(Kind::Events, Some((2026, 1, 2)), "sub-2", 4),
        name(Kind::Events, Some((2026, 11, 30)), "a/b\\c d", 5),
        name(Kind::Events, None, "..", 6),
        name(Kind::Events, Some((2026, 1, 2)), "sub-1", 7),
    ];
    // Written out of order; listed in name order.
    for (i, n) in events.iter().enumerate().skip(1).rev() {
        assert_eq!(
            archive
                .put_if_absent(n, json(&format!("event {i}")))
                .await
                .unwrap(),
            Written::Created,
            "{n}"
        );
    }
    let quarantined = name(Kind::Quarantine, Some((2026, 1, 2)), "sub-1", 8);
    archive
        .put_if_absent(&quarantined, json("undecryptable"))
        .await
        .unwrap();
    // Each listing holds its own kind, all of it, and nothing else.
    events.sort();
    assert_eq!(archive.list(Kind::Events).await.unwrap(), events);
    assert_eq!(archive.list(Kind::Raw).await.unwrap(), vec![contested]);
    assert_eq!(
        archive.list(Kind::Quarantine).await.unwrap(),
        vec![quarantined]
    );
    for kind in [Kind::Lifecycle, Kind::Rejected, Kind::Resync] {
        assert_eq!(archive.list(kind).await.unwrap(), vec![], "{kind:?}");
    }
    for n in &events {
        assert!(archive.get(n).await.unwrap().is_some(), "{n} reads back");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn filesystem_archive_keeps_the_contract() {
    let dir = tempfile::tempdir().unwrap();
    let archive = FsArchive::open(&dir.path().join("archive")).await.unwrap();
    keeps_the_archive_contract(Arc::new(archive)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn blob_archive_keeps_the_contract() {
    keeps_the_archive_contract(Arc::new(azurite::blob_archive("contract").await)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn blob_archive_with_a_shared_access_signature_keeps_the_contract() {
    // A SAS minted elsewhere (here: by our signer, as an operator's tool would) and given in the
    // connection string is used as is, with no account key in sight.
    let endpoint = azurite::endpoint();
    let key = AccountKey::from_base64(azurite::ACCOUNT, azurite::ACCOUNT_KEY).unwrap();
    let sas = key.sign(&AccountSas::for_archive(
        time::OffsetDateTime::now_utc() + time::Duration::hours(1),
        false,
    ));
    let connection = format!(
        "BlobEndpoint={endpoint};SharedAccessSignature={}",
        sas.expose_secret()
    );
    let archive = BlobArchive::from_connection_string(
        &SecretString::from(connection),
        &azurite::unique_container("sas"),
    )
    .await
    .unwrap();
    keeps_the_archive_contract(Arc::new(archive)).await;
}

#[tokio::test]
async fn blob_location_is_the_container_url_without_secrets() {
    let endpoint = azurite::endpoint();
    let container = azurite::unique_container("location");
    let archive = BlobArchive::from_connection_string(
        &SecretString::from(azurite::connection_string(&endpoint)),
        &container,
    )
    .await
    .unwrap();
    assert_eq!(archive.location(), format!("{endpoint}/{container}"));
}

#[tokio::test]
async fn blob_objects_are_stored_as_json_under_their_name() {
    let endpoint = azurite::endpoint();
    let container = azurite::unique_container("json");
    let archive = BlobArchive::from_connection_string(
        &SecretString::from(azurite::connection_string(&endpoint)),
        &container,
    )
    .await
    .unwrap();
    let n = name(Kind::Lifecycle, Some((2026, 3, 4)), "sub", 1);
    archive.put_if_absent(&n, json("x")).await.unwrap();

    let blob = azurite::admin_container(&endpoint, &container).blob_client(n.as_str());
    let properties = blob.get_properties(None).await.unwrap();
    assert_eq!(
        properties.content_type().unwrap().as_deref(),
        Some("application/json")
    );
}

#[tokio::test]
async fn blob_objects_larger_than_a_transfer_partition_round_trip() {
    // 4 MiB is the SDK's partition size for uploads and downloads; bodies up to MAX_BODY_BYTES
    // (configurable) must still be one create-if-absent write and read back whole.
    let archive = azurite::blob_archive("large").await;
    let n = name(Kind::Raw, Some((2026, 1, 2)), "sub", 1);
    let body: Bytes = (0..5 * 1024 * 1024 + 3).map(|i| (i % 251) as u8).collect();
    assert_eq!(
        archive.put_if_absent(&n, body.clone()).await.unwrap(),
        Written::Created
    );
    assert_eq!(
        archive
            .put_if_absent(&n, Bytes::from_static(b"{}"))
            .await
            .unwrap(),
        Written::AlreadyExisted
    );
    assert_eq!(archive.get(&n).await.unwrap(), Some(body));
}

#[tokio::test]
async fn blob_listing_follows_continuation_pages() {
    let archive = azurite::blob_archive("paging")
        .await
        .with_list_page_size(NonZeroU32::new(2).unwrap());
    let mut names: Vec<ObjectName> = (0..7)
        .map(|i| name(Kind::Resync, Some((2026, 1, 1 + i as u8)), "sub", i))
        .collect();
    for n in names.iter().rev() {
        archive.put_if_absent(n, json("marker")).await.unwrap();
    }
    names.sort();
    assert_eq!(archive.list(Kind::Resync).await.unwrap(), names);
}

#[tokio::test]
async fn blob_archive_recreates_a_vanished_container() {
    let endpoint = azurite::endpoint();
    let container = azurite::unique_container("vanished");
    let archive = BlobArchive::from_connection_string(
        &SecretString::from(azurite::connection_string(&endpoint)),
        &container,
    )
    .await
    .unwrap();
    azurite::admin_container(&endpoint, &container)
        .delete(None)
        .await
        .expect("deleting the container behind the archive's back");

    let n = name(Kind::Events, Some((2026, 1, 2)), "sub", 1);
    assert_eq!(
        archive.put_if_absent(&n, json("after")).await.unwrap(),
        Written::Created
    );
    assert_eq!(archive.get(&n).await.unwrap(), Some(json("after")));
}

#[tokio::test]
async fn blob_archive_with_a_wrong_key_opens_and_every_write_fails_without_showing_it() {
    let endpoint = azurite::endpoint();
    // Valid base64, wrong key: Storage answers 403 as it does to an identity whose role
    // assignment has not applied yet, which must not stop the handler's start.
    let wrong_key = "d3Jvbmcta2V5LXdyb25nLWtleS13cm9uZy1rZXktd3Jvbmcta2V5LXdyb25n";
    let connection = format!(
        "DefaultEndpointsProtocol=http;AccountName={};AccountKey={wrong_key};BlobEndpoint={endpoint}",
        azurite::ACCOUNT
    );
    let archive = BlobArchive::from_connection_string(
        &SecretString::from(connection),
        &azurite::unique_container("wrong-key"),
    )
    .await
    .expect("a refused identity does not stop the open");
    let n = name(Kind::Events, Some((2026, 1, 2)), "sub", 1);
    let error = archive
        .put_if_absent(&n, json("refused"))
        .await
        .expect_err("storage refuses the write");
    let message = error.to_string();
    assert!(matches!(error, ArchiveError::Backend { .. }), "{message}");
    assert!(message.contains("HTTP 403"), "{message}");
    assert!(
        !message.contains(wrong_key) && !message.contains("sig="),
        "{message}"
    );
}

#[tokio::test]
async fn blob_archive_down_fails_fast_with_an_error() {
    let mut azurite = Azurite::start_private();
    let archive = BlobArchive::from_connection_string(
        &SecretString::from(azurite::connection_string(azurite.endpoint())),
        &azurite::unique_container("down"),
    )
    .await
    .unwrap();
    let before = name(Kind::Events, Some((2026, 1, 2)), "sub", 1);
    assert_eq!(
        archive.put_if_absent(&before, json("up")).await.unwrap(),
        Written::Created
    );

    azurite.stop();

    // The bound is the retry policy's (about 2 s for a refused connection), with a wide margin:
    // this checks "fails instead of hanging", not speed.
    let after = name(Kind::Events, Some((2026, 1, 2)), "sub", 2);
    let result = tokio::time::timeout(
        Duration::from_secs(20),
        archive.put_if_absent(&after, json("down")),
    )
    .await
    .expect("a dead archive must fail within the retry policy, not hang");
    let error = result.expect_err("writing to a stopped Azurite must fail");
    let message = error.to_string();
    assert!(matches!(error, ArchiveError::Backend { .. }), "{message}");
    assert!(message.contains(after.as_str()), "{message}");
    assert!(!message.contains("sig="), "{message}");

    let read = tokio::time::timeout(Duration::from_secs(20), archive.get(&before))
        .await
        .expect("reads fail fast too");
    assert!(
        read.is_err(),
        "a read from a stopped Azurite is an error, not `None`"
    );
}

#[tokio::test]
async fn blob_archive_that_never_answers_fails_instead_of_hanging() {
    // A listener that accepts connections (kernel backlog) but never answers: a stuck service.
    // Each try has a deadline, so this fails after a couple of tries, well before reqwest's
    // own 60 s read timeout.
    let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let endpoint = format!(
        "http://{}/{}",
        silent.local_addr().unwrap(),
        azurite::ACCOUNT
    );
    let started = std::time::Instant::now();
    let result = tokio::time::timeout(
        Duration::from_secs(30),
        BlobArchive::from_connection_string(
            &SecretString::from(azurite::connection_string(&endpoint)),
            "stuck",
        ),
    )
    .await
    .expect("a silent service must fail within the per-try deadline and retry policy");
    let error = match result {
        Err(e) => e.to_string(),
        Ok(_) => panic!("a silent service cannot open an archive"),
    };
    assert!(error.contains("no complete answer"), "{error}");
    assert!(
        started.elapsed() < Duration::from_secs(20),
        "{:?}",
        started.elapsed()
    );
}

#[tokio::test(flavor = "current_thread")]
async fn blob_traffic_never_logs_the_key_or_the_signature() {
    let logs = crate::support::CapturedLogs::default();
    // Thread-local: this current-thread runtime runs the SDK's tasks on this thread too.
    let _guard = logs.install();

    let mut azurite = Azurite::start_private();
    let archive = BlobArchive::from_connection_string(
        &SecretString::from(azurite::connection_string(azurite.endpoint())),
        &azurite::unique_container("logs"),
    )
    .await
    .unwrap();
    let n = name(Kind::Events, Some((2026, 1, 2)), "sub", 1);
    archive.put_if_absent(&n, json("x")).await.unwrap();
    archive.put_if_absent(&n, json("x")).await.unwrap();
    archive.get(&n).await.unwrap();
    archive.list(Kind::Events).await.unwrap();
    azurite.stop();
    let failed = archive
        .put_if_absent(&name(Kind::Events, None, "sub", 2), json("y"))
        .await;
    assert!(failed.is_err());

    let text = logs.text();
    assert!(
        text.contains("sig=REDACTED"),
        "the SDK's request log was captured (else this test proves nothing):\n{text}"
    );
    assert!(
        !text.contains(azurite::ACCOUNT_KEY),
        "the account key was logged"
    );
    let leaked: Vec<&str> = text
        .match_indices("sig=")
        .map(|(i, _)| &text[i..(i + 20).min(text.len())])
        .filter(|s| !s.starts_with("sig=REDACTED"))
        .collect();
    assert!(leaked.is_empty(), "signatures in the logs: {leaked:?}");
}
