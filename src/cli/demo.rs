//! `handler demo`: the whole notification path on one machine, no Azure, no setup.
//!
//! It makes a fresh development certificate, starts a local token issuer whose keys the handler
//! trusts (in place of Entra ID), starts the real handler on a loopback port with a filesystem
//! archive, and plays Graph's side over HTTP: a meeting (call started, participants join, one waits in
//! the lobby and is admitted, chat, one leaves and rejoins, one is removed, call ended), an emergency call, a chat, a basic
//! notification and a lifecycle notification; then a resend and four forgeries. Finally it
//! prints what was verified, decrypted and archived, and where, and writes the meeting's
//! attendance page (`handler attendance --format html`).

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::Context;
use serde_json::json;

use crate::archive::Archive;
use crate::config::Config;
use crate::devtools::certificates as dev;
use crate::devtools::issuer::{LocalIssuer, TokenSpec};
use crate::devtools::simulate::{self, Scenario, Target};

const TENANT: &str = "f69f5191-20ae-4093-8dae-3ec09edeb253";
const APP_ID: &str = "5f3c9a1e-7d2b-4c8e-9a6f-1b2c3d4e5f60";
const SUBSCRIPTION: &str = "8b6f1c2d-4e5a-4b7c-9d8e-0f1a2b3c4d5e";

/// What the demo produced (the test suite checks it).
pub struct DemoOutcome {
    pub archive: Arc<dyn Archive>,
    pub archive_dir: PathBuf,
    pub report: crate::ops::report::Report,
    /// The attendance page (`handler attendance --format html`) of the demo's meeting.
    pub attendance_page: PathBuf,
}

pub async fn run(workdir: &Path) -> anyhow::Result<DemoOutcome> {
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

    // A fresh certificate, as an operator would create in Key Vault.
    let key = dev::self_signed("demo-cert", 30);
    let cert_path = workdir.join("demo-cert.pem");
    std::fs::write(&cert_path, dev::to_pem(&key)?)?;
    println!(
        "1. Made a development certificate {} (thumbprint {})",
        cert_path.display(),
        key.thumbprint
    );

    // Entra ID's part: a token issuer on loopback.
    let issuer = LocalIssuer::start().await?;
    println!(
        "2. Started a local token issuer at {} (stands in for Entra ID)",
        issuer.authority_host()
    );

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

    let http = reqwest::Client::new();
    let notify = format!("{base}/api/notifications");
    let target = Target {
        subscription_id: SUBSCRIPTION.into(),
        client_state: client_state.clone(),
        tenant_id: TENANT.into(),
    };
    let token = issuer.mint(&TokenSpec::v2(TENANT, APP_ID));
    let tokens = vec![token.clone()];

    // Graph's handshake first, as when a subscription is created.
    let r = http
        .post(format!(
            "{notify}?validationToken=Validation%3a+Testing+client+application+reachability"
        ))
        .send()
        .await?;
    println!(
        "4. Validation handshake: {} {:?}",
        r.status().as_u16(),
        r.text().await?
    );

    println!("5. Playing Graph's notifications:");
    let mut sent_rich = 0;
    let mut first_batch = None;
    for (label, scenario) in [
        ("meeting", Scenario::Meeting),
        ("emergency", Scenario::Emergency),
        ("chat", Scenario::Chat),
    ] {
        for step in simulate::steps(scenario, 0) {
            let item = simulate::rich_item(&step, &target, &key.certificate, &key.id)?;
            let batch = simulate::collection(vec![item.clone()], &tokens);
            let status = post(&http, &notify, batch.clone()).await?;
            first_batch.get_or_insert((batch, item));
            sent_rich += 1;
            println!("   {label:<9} {:<26} -> {status}", step_label(&step));
        }
    }
    let basic = json!({"value": [{
        "subscriptionId": SUBSCRIPTION, "clientState": client_state, "changeType": "created", "tenantId": TENANT,
        "subscriptionExpirationDateTime": "2026-12-01T00:00:00Z",
        "resource": "teams('fbe2bf47-16c8-47cf-b4a5-4b9b187c508b')/channels('19:4a95f7d8db4c4e7fae857bcebe0623e6@thread.tacv2')/messages('1612293113399')",
        "resourceData": {"id": "1612293113399", "@odata.type": "#Microsoft.Graph.chatMessage",
            "@odata.id": "teams('fbe2bf47-16c8-47cf-b4a5-4b9b187c508b')/channels('19:4a95f7d8db4c4e7fae857bcebe0623e6@thread.tacv2')/messages('1612293113399')"}
    }]});
    println!(
        "   basic     channel message            -> {}",
        post(&http, &notify, basic.to_string()).await?
    );
    let lifecycle = json!({"value": [{
        "subscriptionId": SUBSCRIPTION, "clientState": client_state, "lifecycleEvent": "reauthorizationRequired",
        "subscriptionExpirationDateTime": "2026-12-01T00:00:00Z", "tenantId": TENANT
    }]});
    println!(
        "   lifecycle reauthorizationRequired    -> {}",
        post(
            &http,
            &format!("{base}/api/lifecycle"),
            lifecycle.to_string()
        )
        .await?
    );

    println!(
        "6. Graph resends and forgeries (each answered 202, as Graph advises; none becomes an event):"
    );
    let (batch, item) = first_batch.context("the scenarios have steps")?;
    println!(
        "   resend of the call-started notification -> {} (archived once)",
        post(&http, &notify, batch).await?
    );

    let mut forged_state = item.clone();
    forged_state["clientState"] = "guessed-secret".into();
    println!(
        "   wrong clientState                       -> {} (dropped)",
        post(
            &http,
            &notify,
            simulate::collection(vec![forged_state], &tokens)
        )
        .await?
    );

    let attacker = LocalIssuer::start().await?;
    let forged_token = attacker.mint(&TokenSpec::v2(TENANT, APP_ID));
    let other = simulate::rich_item(
        &simulate::steps(Scenario::Chat, 7)[2],
        &target,
        &key.certificate,
        &key.id,
    )?;
    println!(
        "   token signed by someone else            -> {} (batch rejected)",
        post(
            &http,
            &notify,
            simulate::collection(vec![other], &[forged_token])
        )
        .await?
    );

    let mut tampered = simulate::rich_item(
        &simulate::steps(Scenario::Chat, 8)[2],
        &target,
        &key.certificate,
        &key.id,
    )?;
    let data = tampered["encryptedContent"]["data"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    tampered["encryptedContent"]["data"] = flip_base64(&data).into();
    println!(
        "   ciphertext altered in transit           -> {} (quarantined: signature mismatch)",
        post(
            &http,
            &notify,
            simulate::collection(vec![tampered], &tokens)
        )
        .await?
    );

    let stranger = dev::self_signed("not-ours", 1);
    let unknown = simulate::rich_item(
        &simulate::steps(Scenario::Chat, 9)[2],
        &target,
        &stranger.certificate,
        &stranger.id,
    )?;
    println!(
        "   encrypted for a certificate we lack     -> {} (quarantined: unknown certificate)",
        post(&http, &notify, simulate::collection(vec![unknown], &tokens)).await?
    );

    let _ = stop_tx.send(());
    server.await?;
    issuer.shutdown().await;
    attacker.shutdown().await;

    let report = crate::ops::report::build(&archive).await?;
    println!(
        "\n7. What was verified, decrypted and archived ({sent_rich} rich notifications sent):\n"
    );
    print!("{}", report.render());
    println!(
        "\nBrowse the archive under {}; run `handler report` with ARCHIVE_DIR={} to see this again.",
        archive.location(),
        archive_dir.display()
    );
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

/// `handler attendance --format html` of the demo's archive, into `workdir`.
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

async fn post(http: &reqwest::Client, url: &str, body: String) -> anyhow::Result<u16> {
    let r = http
        .post(url)
        .header("content-type", "application/json")
        .body(body)
        .send()
        .await
        .with_context(|| format!("posting to {url}"))?;
    Ok(r.status().as_u16())
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
