//! `handler simulate`: plays Graph against a running handler (local or deployed).
//!
//! Notifications are built exactly as Graph builds them: the payload encrypted for the
//! certificate's public key, the AES key wrapped with RSA-OAEP, HMAC-SHA256 signature, and
//! validationTokens signed by a local issuer. For the handler to accept those tokens it must
//! trust that issuer: run it with `AUTHORITY_HOST=http://127.0.0.1:<--issuer-port>`. Against a
//! handler that trusts Entra ID (a deployment), the batches are answered 202 and kept as
//! rejected evidence: the check that the URL, the function key and the clientState are right.

use std::path::PathBuf;

use anyhow::{Context, bail};
use openssl::x509::X509;

use crate::config::Config;
use crate::devtools::eventhub_host::{self, HostEncoding};
use crate::devtools::issuer::{LocalIssuer, TokenSpec};
use crate::devtools::simulate::{self, Scenario, Target};

#[derive(Debug, clap::Args)]
pub struct SimulateArgs {
    /// The notification URL (with `?code=<function key>` for a deployed function).
    #[arg(long)]
    pub url: String,
    #[arg(long, value_enum, default_value = "meeting")]
    pub scenario: Scenario,
    /// The certificate to encrypt for (PEM or DER; a PEM with its key is fine). Default: the
    /// first of NOTIFICATION_CERTIFICATES.
    #[arg(long)]
    pub cert: Option<PathBuf>,
    /// The encryptionCertificateId to send. Default: the id configured for --cert, or its file stem.
    #[arg(long)]
    pub cert_id: Option<String>,
    /// How many notifications to send (the scenario repeats with fresh ids).
    #[arg(long, default_value_t = 0)]
    pub count: usize,
    /// Notifications per request.
    #[arg(long, default_value_t = 1)]
    pub batch: usize,
    /// Requests per second (default: one after another, as fast as the handler answers).
    #[arg(long)]
    pub rate: Option<f64>,
    /// Port of the local token issuer (the handler's AUTHORITY_HOST must point at it).
    #[arg(long, default_value_t = 0)]
    pub issuer_port: u16,
    /// The issuer's signing key (PEM, created if missing) so its `kid` is stable across runs.
    #[arg(long, default_value = "./data/simulate-issuer-key.pem")]
    pub issuer_key: PathBuf,
    /// Play the Functions host's eventHubTrigger invocation instead of Graph's webhook POST:
    /// `--url` is the handler's `/eventhub`, each event a collection without validationTokens
    /// (Graph sends none through Event Hubs), `--batch` events per invocation.
    #[arg(long)]
    pub eventhub: bool,
    /// How the host serializes the batch (with --eventhub).
    #[arg(long, value_enum, default_value = "string-of-array")]
    pub encoding: HostEncoding,
}

pub async fn run(args: SimulateArgs, config: &Config) -> anyhow::Result<()> {
    let (target, audience) = target(config)?;
    let (certificate, cert_id) = certificate(&args, config)?;
    let issuer = LocalIssuer::start_persistent(args.issuer_port, &args.issuer_key).await?;
    println!(
        "token issuer at {} (run the handler with AUTHORITY_HOST={})",
        issuer.authority_host(),
        issuer.authority_host()
    );
    let tokens = vec![issuer.mint(&TokenSpec::v2(&target.tenant_id, &audience))];

    let steps = steps(args.scenario, args.count);
    let batch = args.batch.max(1);
    let items = steps
        .iter()
        .map(|s| simulate::rich_item(s, &target, &certificate, &cert_id))
        .collect::<Result<Vec<_>, _>>()?;
    let bodies = if args.eventhub {
        invocations(items, batch, args.encoding)
    } else {
        items
            .chunks(batch)
            .map(|chunk| simulate::collection(chunk.to_vec(), &tokens))
            .collect()
    };
    let http = crate::startup::Builder::new(config.clone()).http_client()?;
    let stats = simulate::post_all(&http, &args.url, bodies, args.rate).await;
    println!(
        "{} notification(s) of scenario {:?} in batches of {batch}{}: {}",
        steps.len(),
        args.scenario,
        if args.eventhub {
            " (Event Hubs invocations)"
        } else {
            ""
        },
        stats.render()
    );
    issuer.shutdown().await;
    if stats.errors > 0 || stats.statuses.keys().any(|s| *s >= 300) {
        bail!("some requests failed");
    }
    Ok(())
}

/// Event Hubs invocations of `batch` events each, one notification per event, numbered on.
fn invocations(items: Vec<serde_json::Value>, batch: usize, encoding: HostEncoding) -> Vec<String> {
    items
        .chunks(batch)
        .enumerate()
        .map(|(i, chunk)| {
            let events: Vec<String> = chunk
                .iter()
                .map(|item| simulate::collection(vec![item.clone()], &[]))
                .collect();
            eventhub_host::invocation(&events, encoding, Some((0, 5)), "0", (i * batch) as i64)
        })
        .collect()
}

/// Whom the notifications are for (the handler's clientState and first tenant), and the
/// audience of their validationTokens (the first GRAPH_CLIENT_ID).
fn target(config: &Config) -> anyhow::Result<(Target, String)> {
    let client_state = config
        .client_state
        .as_ref()
        .map(|s| secrecy::ExposeSecret::expose_secret(s).to_string())
        .context("NOTIFICATION_CLIENT_STATE must be set (the same value the handler has)")?;
    let tenant = config
        .tenant_ids
        .first()
        .context("GRAPH_TENANT_ID must be set")?
        .clone();
    let audience = config
        .client_ids
        .first()
        .context("GRAPH_CLIENT_ID must be set")?
        .clone();
    let target = Target {
        subscription_id: "simulated-subscription".into(),
        client_state,
        tenant_id: tenant,
    };
    Ok((target, audience))
}

/// The certificate to encrypt for and the encryptionCertificateId to send: `--cert` (with
/// its configured id) or the first of NOTIFICATION_CERTIFICATES; `--cert-id` overrides the id.
fn certificate(args: &SimulateArgs, config: &Config) -> anyhow::Result<(X509, String)> {
    let (cert_path, default_id) = match (&args.cert, config.local_certificates.first()) {
        (Some(p), _) => {
            let configured = config
                .local_certificates
                .iter()
                .find(|c| &c.path == p)
                .and_then(|c| c.id.clone());
            (
                p.clone(),
                configured.unwrap_or_else(|| crate::keys::local::default_id(p)),
            )
        }
        (None, Some(c)) => (
            c.path.clone(),
            c.id.clone()
                .unwrap_or_else(|| crate::keys::local::default_id(&c.path)),
        ),
        (None, None) => bail!("give --cert or set NOTIFICATION_CERTIFICATES"),
    };
    let bytes =
        std::fs::read(&cert_path).with_context(|| format!("reading {}", cert_path.display()))?;
    let certificate = X509::from_pem(&bytes)
        .or_else(|_| X509::from_der(&bytes))
        .with_context(|| format!("{} holds no certificate", cert_path.display()))?;
    Ok((certificate, args.cert_id.clone().unwrap_or(default_id)))
}

/// `count` steps of the scenario (0: the scenario once), repeating it with fresh ids.
fn steps(scenario: Scenario, count: usize) -> Vec<simulate::Step> {
    let count = if count == 0 {
        simulate::steps(scenario, 0).len()
    } else {
        count
    };
    let mut steps = Vec::with_capacity(count);
    let mut round = 0;
    while steps.len() < count {
        steps.extend(simulate::steps(scenario, round));
        round += 1;
    }
    steps.truncate(count);
    steps
}
