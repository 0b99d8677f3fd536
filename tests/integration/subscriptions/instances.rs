//! Two `handler` processes (the built binary, as two Function App instances run it) sharing one
//! Blob container on the real Azurite and one Graph: triggered to reconcile at the same moment,
//! they take the renewer's Blob lease in turn, so Graph never sees their reconciles overlap,
//! and the one that waited says in its log that another instance held the lease.

use std::time::{Duration, Instant};

use serde_json::{Value, json};

use super::fakes::*;
use super::timer_body;
use crate::faults::process::{Handler, Launch};

/// Every Graph answer takes this long, so a reconcile (a listing, then one call per change, one
/// after the other) spans several of them and two at once could not miss each other.
const GRAPH_DELAY: Duration = Duration::from_millis(300);

struct Shared {
    dir: tempfile::TempDir,
    launch: Launch,
    graph_uri: String,
}

/// The settings both instances share: the fake Entra (behind TLS, trusted through
/// `SSL_CERT_FILE`), the desired file, one Azurite container.
fn shared(entra: &TlsFront, graph_uri: String, desired: &Value) -> Shared {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("subscriptions.json");
    std::fs::write(&file, desired.to_string()).unwrap();
    let ca = dir.path().join("test-ca.pem");
    std::fs::write(&ca, &pki().ca_pem).unwrap();
    let connection = crate::azurite::connection_string(&crate::azurite::endpoint());
    let container = crate::azurite::unique_container("instances");
    let mut launch = Launch::new(&dir.path().join("unused"), &dir.path().join("unused.log"))
        .set("GRAPH_TENANT_ID", TENANT)
        .set("GRAPH_CLIENT_ID", CLIENT_ID)
        .set("GRAPH_CLIENT_SECRET", CLIENT_SECRET)
        .set("NOTIFICATION_CLIENT_STATE", CLIENT_STATE)
        .set("NOTIFICATION_URL", NOTIFICATION_URL)
        .set("LIFECYCLE_NOTIFICATION_URL", LIFECYCLE_URL)
        .set("SUBSCRIPTIONS_FILE", &file.display().to_string())
        .set("AUTHORITY_HOST", &entra.url())
        .set("SSL_CERT_FILE", &ca.display().to_string())
        .set("ARCHIVE_CONNECTION", &connection)
        .set("ARCHIVE_CONTAINER", &container);
    launch.settings.remove("ARCHIVE_DIR");
    Shared {
        dir,
        launch,
        graph_uri,
    }
}

impl Shared {
    /// Instance `name`: the shared settings, its own port, log and `GRAPH_ENDPOINT` prefix.
    async fn start(&self, name: &str) -> Handler {
        let mut launch = self
            .launch
            .clone()
            .set("GRAPH_ENDPOINT", &instance_endpoint(&self.graph_uri, name));
        launch.log = self.dir.path().join(format!("{name}.log"));
        launch.start().await
    }
}

/// From an instance's first Graph request to the answer of its last.
fn window(arrivals: &[(String, Instant)], instance: &str) -> Option<(Instant, Instant)> {
    let mine: Vec<Instant> = arrivals
        .iter()
        .filter(|(who, _)| who == instance)
        .map(|(_, at)| *at)
        .collect();
    Some((*mine.first()?, *mine.last()? + GRAPH_DELAY))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_handler_processes_sharing_the_lease_never_reconcile_at_once() {
    let (graph, fake) = FakeGraph::start().await;
    let (_entra, entra_front) = fake_entra().await;
    let desired = json!([
        {"resource": "/teams/getAllChannels", "changeType": "created,deleted"},
        {"resource": "/chats", "changeType": "created,updated"},
        {"resource": "/teams", "changeType": "created,updated"},
    ]);
    let shared = shared(&entra_front, graph.uri(), &desired);
    let (a, b) = (shared.start("a").await, shared.start("b").await);
    fake.set_delay(GRAPH_DELAY);

    // The host's timer fires on both instances at once.
    let http = reqwest::Client::new();
    let renew = |h: &Handler| {
        http.post(format!("{}/renew", h.url))
            .header("content-type", "application/json")
            .body(timer_body(false))
            .send()
    };
    let (answer_a, answer_b) = tokio::join!(renew(&a), renew(&b));
    for (who, answer, handler) in [("a", answer_a, &a), ("b", answer_b, &b)] {
        let answer = answer.expect("the timer invocation is answered");
        assert_eq!(answer.status(), 200, "{who}: {}", handler.log_text());
        let body: Value = answer.json().await.unwrap();
        assert!(body["ReturnValue"]["error"].is_null(), "{who}: {body}");
    }

    // Each subscription was created once, by whichever instance reconciled first.
    assert_eq!(fake.all().len(), 3, "{:?}", fake.all());
    let arrivals = fake.arrivals_by_instance();
    let (wa, wb) = (
        window(&arrivals, "instance-a").expect("instance a called Graph"),
        window(&arrivals, "instance-b").expect("instance b called Graph"),
    );
    let (first, second) = if wa.0 <= wb.0 { (wa, wb) } else { (wb, wa) };
    assert!(
        second.0 + Duration::from_millis(2) >= first.1,
        "the second reconcile's first Graph request came {:?} before the first reconcile's last answer",
        first.1.saturating_duration_since(second.0)
    );
    // The one that came second waited for the lease, and said so.
    let waited = if wa.0 <= wb.0 { &b } else { &a };
    let log = waited.log_text();
    assert!(
        log.contains("another instance holds the renewer lease; waiting for it"),
        "{log}"
    );
    assert!(log.contains("renewer lease taken after waiting"), "{log}");
}
