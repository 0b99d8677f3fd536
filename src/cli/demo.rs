//! `handler demo`: the whole notification path on one machine, no Azure, no setup.
//!
//! It makes a fresh development certificate, starts a local token issuer whose keys the handler
//! trusts (in place of Entra ID), starts the real handler on a loopback port with a filesystem
//! archive, and plays Graph's side over HTTP: a meeting (call started, participants join, one waits in
//! the lobby and is admitted, chat, one leaves and rejoins, one is removed, call ended), an emergency call, a chat, a basic
//! notification and a lifecycle notification; then a resend and four forgeries. Finally it
//! prints what was verified, decrypted and archived, and where, and writes the meeting's
//! attendance page (`handler attendance --format html`).
//!
//! [`run`] reads as the demo's numbered steps; each step is one function below.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::Context;
use serde_json::{Value, json};

use crate::archive::Archive;
use crate::config::Config;
use crate::devtools::certificates as dev;
use crate::devtools::issuer::{LocalIssuer, TokenSpec};
use crate::devtools::simulate::{self, Scenario, Target};
use crate::keys::DecryptionKey;

const TENANT: &str = "f69f5191-20ae-4093-8dae-3ec09edeb253";
const APP_ID: &str = "5f3c9a1e-7d2b-4c8e-9a6f-1b2c3d4e5f60";
const SUBSCRIPTION: &str = "8b6f1c2d-4e5a-4b7c-9d8e-0f1a2b3c4d5e";
/// The channel message of the basic (unencrypted) notification.
const CHANNEL_MESSAGE: &str = "teams('fbe2bf47-16c8-47cf-b4a5-4b9b187c508b')/channels('19:4a95f7d8db4c4e7fae857bcebe0623e6@thread.tacv2')/messages('1612293113399')";

/// What the demo produced.
pub struct DemoOutcome {
    pub archive: Arc<dyn Archive>,
    pub archive_dir: PathBuf,
    pub report: crate::ops::report::Report,
    /// The attendance page (`handler attendance --format html`) of the demo's meeting.
    pub attendance_page: PathBuf,
}

pub async fn run(workdir: &Path) -> anyhow::Result<DemoOutcome> {
    let archive_dir = fresh_archive_dir(workdir)?;
    let (key, cert_path) = make_certificate(workdir)?;
    let issuer = start_issuer().await?;
    let handler = Handler::start(&archive_dir, &cert_path, &issuer).await?;

    let graph = GraphSide::new(&handler, &issuer, key);
    graph.handshake().await?;
    let played = graph.play_notifications().await?;
    graph.play_resend_and_forgeries(&played).await?;

    let archive = handler.stop().await?;
    issuer.shutdown().await;
    let report = print_report(&archive, &archive_dir, played.rich_sent).await?;
    let attendance_page = write_attendance_page(&archive, workdir).await?;
    println!(
        "\n8. The meeting's attendance (who, when, how long, the lobby), as a page to open in a browser:\n   {}",
        attendance_page.display()
    );
    Ok(DemoOutcome {
        archive,
        archive_dir,
        report,
        attendance_page,
    })
}

/// `workdir` exists and its `archive/` from a previous demo is gone.
fn fresh_archive_dir(workdir: &Path) -> anyhow::Result<PathBuf> {
    let archive_dir = workdir.join("archive");
    if archive_dir.exists() {
        std::fs::remove_dir_all(&archive_dir).with_context(|| {
            format!(
                "clearing the previous demo archive {}",
                archive_dir.display()
            )
        })?;
    }
    std::fs::create_dir_all(workdir)?;
    Ok(archive_dir)
}

/// Step 1: a fresh certificate, as an operator would create in Key Vault, written as PEM.
fn make_certificate(workdir: &Path) -> anyhow::Result<(DecryptionKey, PathBuf)> {
    let key = dev::self_signed("demo-cert", 30);
    let cert_path = workdir.join("demo-cert.pem");
    std::fs::write(&cert_path, dev::to_pem(&key)?)?;
    println!(
        "1. Made a development certificate {} (thumbprint {})",
        cert_path.display(),
        key.thumbprint
    );
    Ok((key, cert_path))
}

/// Step 2: Entra ID's part, a token issuer on loopback.
async fn start_issuer() -> anyhow::Result<LocalIssuer> {
    let issuer = LocalIssuer::start().await?;
    println!(
        "2. Started a local token issuer at {} (stands in for Entra ID)",
        issuer.authority_host()
    );
    Ok(issuer)
}

/// The real handler, built by the builder and serving on a loopback port.
struct Handler {
    base: String,
    client_state: String,
    archive: Arc<dyn Archive>,
    stop_tx: tokio::sync::oneshot::Sender<()>,
    server: tokio::task::JoinHandle<()>,
}

impl Handler {
    /// Step 3: configured as an operator would (a filesystem archive, the certificate file, a
    /// fresh clientState, the local issuer as the authority), then started.
    async fn start(
        archive_dir: &Path,
        cert_path: &Path,
        issuer: &LocalIssuer,
    ) -> anyhow::Result<Self> {
        let mut client_state_bytes = [0u8; 18];
        openssl::rand::rand_bytes(&mut client_state_bytes)?;
        let client_state = hex::encode(client_state_bytes);
        let settings: HashMap<&str, String> = HashMap::from([
            ("ARCHIVE_DIR", archive_dir.display().to_string()),
            ("NOTIFICATION_CLIENT_STATE", client_state.clone()),
            ("GRAPH_TENANT_ID", TENANT.to_string()),
            ("GRAPH_CLIENT_ID", APP_ID.to_string()),
            ("AUTHORITY_HOST", issuer.authority_host().to_string()),
            (
                "NOTIFICATION_CERTIFICATES",
                format!("demo-cert={}", cert_path.display()),
            ),
        ]);
        let config = Config::from_lookup(|k| settings.get(k).cloned())?;
        let state = crate::startup::build(&config).await?.state();
        let archive = state.receiver.archive.clone();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let base = format!("http://{}", listener.local_addr()?);
        let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
        let server = tokio::spawn(crate::functions::routes::run(listener, state, async {
            let _ = stop_rx.await;
        }));
        println!(
            "3. Started the handler at {base} (archive: {})",
            archive.location()
        );
        Ok(Handler {
            base,
            client_state,
            archive,
            stop_tx,
            server,
        })
    }

    /// Stops serving (after the answers in flight) and hands back its archive.
    async fn stop(self) -> anyhow::Result<Arc<dyn Archive>> {
        let _ = self.stop_tx.send(());
        self.server.await?;
        Ok(self.archive)
    }
}

/// What step 5 sent: how many rich notifications, and the first batch with its item (for the
/// resend and the forged clientState of step 6).
struct Played {
    rich_sent: usize,
    first_batch: String,
    first_item: Value,
}

/// Graph's side: the notifications it sends, signed and encrypted as Graph does.
struct GraphSide {
    http: reqwest::Client,
    notify: String,
    lifecycle: String,
    target: Target,
    tokens: Vec<String>,
    key: DecryptionKey,
}

impl GraphSide {
    fn new(handler: &Handler, issuer: &LocalIssuer, key: DecryptionKey) -> Self {
        GraphSide {
            http: reqwest::Client::new(),
            notify: format!("{}/api/notifications", handler.base),
            lifecycle: format!("{}/api/lifecycle", handler.base),
            target: Target {
                subscription_id: SUBSCRIPTION.into(),
                client_state: handler.client_state.clone(),
                tenant_id: TENANT.into(),
            },
            tokens: vec![issuer.mint(&TokenSpec::v2(TENANT, APP_ID))],
            key,
        }
    }

    /// Step 4: Graph's handshake, as when a subscription is created.
    async fn handshake(&self) -> anyhow::Result<()> {
        let r = self
            .http
            .post(format!(
                "{}?validationToken=Validation%3a+Testing+client+application+reachability",
                self.notify
            ))
            .send()
            .await?;
        println!(
            "4. Validation handshake: {} {:?}",
            r.status().as_u16(),
            r.text().await?
        );
        Ok(())
    }

    /// Step 5: the meeting, emergency and chat scenarios one notification per batch, then a
    /// basic notification and a lifecycle notification.
    async fn play_notifications(&self) -> anyhow::Result<Played> {
        println!("5. Playing Graph's notifications:");
        let mut rich_sent = 0;
        let mut first = None;
        for (label, scenario) in [
            ("meeting", Scenario::Meeting),
            ("emergency", Scenario::Emergency),
            ("chat", Scenario::Chat),
        ] {
            for step in simulate::steps(scenario, 0) {
                let item = self.rich_item(&step, &self.key)?;
                let batch = simulate::collection(vec![item.clone()], &self.tokens);
                let status = self.post(&self.notify, batch.clone()).await?;
                first.get_or_insert((batch, item));
                rich_sent += 1;
                print_sent(label, &step_label(&step), status);
            }
        }
        let status = self.post(&self.notify, self.basic_notification()).await?;
        print_sent("basic", "channel message", status);
        let status = self
            .post(&self.lifecycle, self.lifecycle_notification())
            .await?;
        print_sent("lifecycle", "reauthorizationRequired", status);

        let (first_batch, first_item) = first.context("the scenarios have steps")?;
        Ok(Played {
            rich_sent,
            first_batch,
            first_item,
        })
    }

    /// Step 6: a resend and four forgeries, each answered 202; none becomes an event.
    async fn play_resend_and_forgeries(&self, played: &Played) -> anyhow::Result<()> {
        println!(
            "6. Graph resends and forgeries (each answered 202, as Graph advises; none becomes an event):"
        );
        let attacker = LocalIssuer::start().await?;
        let cases = [
            (
                "resend of the call-started notification",
                "archived once",
                played.first_batch.clone(),
            ),
            (
                "wrong clientState",
                "dropped",
                self.with_wrong_client_state(&played.first_item),
            ),
            (
                "token signed by someone else",
                "batch rejected",
                self.with_foreign_token(&attacker)?,
            ),
            (
                "ciphertext altered in transit",
                "quarantined: signature mismatch",
                self.with_altered_ciphertext()?,
            ),
            (
                "encrypted for a certificate we lack",
                "quarantined: unknown certificate",
                self.for_unknown_certificate()?,
            ),
        ];
        for (label, outcome, batch) in cases {
            let status = self.post(&self.notify, batch).await?;
            println!("   {label:<39} -> {status} ({outcome})");
        }
        attacker.shutdown().await;
        Ok(())
    }

    fn with_wrong_client_state(&self, item: &Value) -> String {
        let mut forged = item.clone();
        forged["clientState"] = "guessed-secret".into();
        simulate::collection(vec![forged], &self.tokens)
    }

    /// A genuine chat notification whose validationToken another issuer signed.
    fn with_foreign_token(&self, attacker: &LocalIssuer) -> anyhow::Result<String> {
        let item = self.rich_item(&simulate::steps(Scenario::Chat, 7)[2], &self.key)?;
        let forged_token = attacker.mint(&TokenSpec::v2(TENANT, APP_ID));
        Ok(simulate::collection(vec![item], &[forged_token]))
    }

    /// A chat notification with one bit of its ciphertext flipped.
    fn with_altered_ciphertext(&self) -> anyhow::Result<String> {
        let mut item = self.rich_item(&simulate::steps(Scenario::Chat, 8)[2], &self.key)?;
        let data = item["encryptedContent"]["data"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        item["encryptedContent"]["data"] = flip_base64(&data).into();
        Ok(simulate::collection(vec![item], &self.tokens))
    }

    /// A chat notification encrypted for a certificate the handler does not have.
    fn for_unknown_certificate(&self) -> anyhow::Result<String> {
        let stranger = dev::self_signed("not-ours", 1);
        let item = self.rich_item(&simulate::steps(Scenario::Chat, 9)[2], &stranger)?;
        Ok(simulate::collection(vec![item], &self.tokens))
    }

    fn rich_item(&self, step: &simulate::Step, key: &DecryptionKey) -> anyhow::Result<Value> {
        Ok(simulate::rich_item(
            step,
            &self.target,
            &key.certificate,
            &key.id,
        )?)
    }

    /// A basic notification (no resource data) of a channel message.
    fn basic_notification(&self) -> String {
        json!({"value": [{
            "subscriptionId": SUBSCRIPTION, "clientState": self.target.client_state,
            "changeType": "created", "tenantId": TENANT,
            "subscriptionExpirationDateTime": "2026-12-01T00:00:00Z",
            "resource": CHANNEL_MESSAGE,
            "resourceData": {"id": "1612293113399", "@odata.type": "#Microsoft.Graph.chatMessage",
                "@odata.id": CHANNEL_MESSAGE}
        }]})
        .to_string()
    }

    fn lifecycle_notification(&self) -> String {
        json!({"value": [{
            "subscriptionId": SUBSCRIPTION, "clientState": self.target.client_state,
            "lifecycleEvent": "reauthorizationRequired",
            "subscriptionExpirationDateTime": "2026-12-01T00:00:00Z", "tenantId": TENANT
        }]})
        .to_string()
    }

    async fn post(&self, url: &str, body: String) -> anyhow::Result<u16> {
        let r = self
            .http
            .post(url)
            .header("content-type", "application/json")
            .body(body)
            .send()
            .await
            .with_context(|| format!("posting to {url}"))?;
        Ok(r.status().as_u16())
    }
}

/// One line of step 5: the scenario, what was sent, the handler's answer.
fn print_sent(label: &str, what: &str, status: u16) {
    println!("   {label:<9} {what:<26} -> {status}");
}

/// Step 7: what the archive holds, and where.
async fn print_report(
    archive: &Arc<dyn Archive>,
    archive_dir: &Path,
    rich_sent: usize,
) -> anyhow::Result<crate::ops::report::Report> {
    let report = crate::ops::report::build(archive).await?;
    println!(
        "\n7. What was verified, decrypted and archived ({rich_sent} rich notifications sent):\n"
    );
    print!("{}", report.render());
    println!(
        "\nBrowse the archive under {}; run `handler report` with ARCHIVE_DIR={} to see this again.",
        archive.location(),
        archive_dir.display()
    );
    Ok(report)
}

/// Step 8: `handler attendance --format html` of the demo's archive, into `workdir`.
async fn write_attendance_page(
    archive: &Arc<dyn Archive>,
    workdir: &Path,
) -> anyhow::Result<PathBuf> {
    use crate::ops::attendance;
    let report = attendance::build(archive, None, &indicatif::ProgressBar::hidden()).await?;
    let page = workdir.join("attendance.html");
    std::fs::write(
        &page,
        attendance::render(&report.meetings, attendance::Format::Html),
    )
    .with_context(|| format!("writing {}", page.display()))?;
    Ok(std::fs::canonicalize(&page).unwrap_or(page))
}

fn step_label(step: &simulate::Step) -> String {
    step.payload
        .get("eventType")
        .and_then(|v| v.as_str())
        .map(str::to_string)
        .or_else(|| {
            step.payload
                .pointer("/emergencyCallEvent/callEventType")
                .and_then(|v| v.as_str())
                .map(|s| format!("emergency {s}"))
        })
        .unwrap_or_else(|| {
            step.odata_type
                .trim_start_matches("#Microsoft.Graph.")
                .trim_start_matches("#microsoft.graph.")
                .to_string()
        })
}

fn flip_base64(b64: &str) -> String {
    use base64::Engine;
    let engine = base64::engine::general_purpose::STANDARD;
    let mut raw = engine.decode(b64).unwrap_or_default();
    if let Some(b) = raw.get_mut(5) {
        *b ^= 0x40;
    }
    engine.encode(raw)
}
