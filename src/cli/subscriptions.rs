//! `handler subscriptions list|create|renew|delete|reconcile`: the operator's view of the Graph
//! subscriptions, with the configuration the Function App uses (same environment variables).
//! Tables for people, `--json` for scripts. A command that fails in Graph exits non-zero with
//! Graph's error code and message.

use std::collections::HashSet;

use anyhow::{Context, bail};
use clap::{Args, Subcommand};
use serde_json::json;
use time::OffsetDateTime;

use crate::config::Config;
use crate::graph::subscriptions::{
    ApiVersion, GraphClient, Subscription, default_lifetime, evaluation_mode_warning, format_time,
    payment_model,
};
use crate::renewer::{
    self, Delivery, DesiredEntry, DesiredSubscription, listing_version, load_desired,
    matching_desired,
};
use crate::startup::Builder;

#[derive(Debug, Clone, Subcommand)]
pub enum SubscriptionsCommand {
    /// List this app's subscriptions in Graph, marked against SUBSCRIPTIONS_FILE.
    List {
        /// List on this API version (default: beta when a desired subscription needs it).
        #[arg(long, value_parser = parse_api_version)]
        api_version: Option<ApiVersion>,
        #[arg(long)]
        json: bool,
    },
    /// Create one subscription now (SUBSCRIPTIONS_FILE is not changed: the timer will not keep
    /// it alive unless the file lists it).
    Create {
        #[command(flatten)]
        target: Target,
        /// created, updated, deleted (comma-separated); call events default to `updated`.
        #[arg(long)]
        change_type: Option<String>,
        /// Rich notifications: resource data encrypted with the current certificate.
        #[arg(long)]
        include_resource_data: bool,
        /// Lifetime in minutes (default: Graph's maximum for the resource).
        #[arg(long)]
        minutes: Option<u32>,
        #[arg(long, value_parser = parse_api_version)]
        api_version: Option<ApiVersion>,
        /// Payment model of a metered Teams API (A or B); without it: evaluation mode.
        #[arg(long)]
        model: Option<String>,
        #[arg(long)]
        json: bool,
    },
    /// Renew one subscription (default lifetime: Graph's maximum for its resource).
    Renew {
        id: String,
        #[arg(long)]
        minutes: Option<u32>,
        #[arg(long, value_parser = parse_api_version)]
        api_version: Option<ApiVersion>,
        #[arg(long)]
        json: bool,
    },
    /// Delete one subscription.
    Delete {
        id: String,
        #[arg(long, value_parser = parse_api_version)]
        api_version: Option<ApiVersion>,
        #[arg(long)]
        json: bool,
    },
    /// Bring Graph to SUBSCRIPTIONS_FILE now, as the renew timer does.
    Reconcile {
        #[arg(long)]
        json: bool,
    },
}

/// What to subscribe to: a Graph resource path, or one built by a helper.
#[derive(Debug, Clone, Args)]
#[group(required = true, multiple = false)]
pub struct Target {
    /// A Graph resource path, e.g. /chats/getAllMessages.
    #[arg(long)]
    pub resource: Option<String>,
    /// Meeting call events of the meeting with this raw join URL (Graph's meetingCallEvents; beta).
    #[arg(long)]
    pub meeting_join_url: Option<String>,
    /// Emergency call events of this emergency calling policy (Graph's getEmergencyEventsByPolicy; beta).
    #[arg(long)]
    pub emergency_policy: Option<String>,
}

fn parse_api_version(s: &str) -> Result<ApiVersion, String> {
    ApiVersion::parse(s).ok_or_else(|| format!("expected v1.0 or beta, got {s:?}"))
}

/// Runs a `subscriptions` command.
pub async fn run(cmd: SubscriptionsCommand, config: &Config) -> anyhow::Result<()> {
    let parts = Parts::new(config)?;
    let graph = parts.builder.graph_client(&parts.http)?;
    match cmd {
        SubscriptionsCommand::List { api_version, json } => {
            list(&graph, config, api_version, json).await
        }
        SubscriptionsCommand::Create {
            target,
            change_type,
            include_resource_data,
            minutes,
            api_version,
            model,
            json,
        } => {
            let entry = DesiredEntry {
                resource: target.resource,
                meeting_join_url: target.meeting_join_url,
                emergency_policy: target.emergency_policy,
                change_type,
                include_resource_data: include_resource_data.then_some(true),
                expiration_minutes: minutes,
                api_version: api_version.map(|v| v.as_str().to_string()),
                model,
                description: None,
                delivery: None,
                notification_url: None,
            };
            let desired = entry.validate().map_err(anyhow::Error::msg)?;
            create(&graph, &parts, &desired, json).await
        }
        SubscriptionsCommand::Renew {
            id,
            minutes,
            api_version,
            json,
        } => renew_one(&graph, config, &id, minutes, api_version, json).await,
        SubscriptionsCommand::Delete {
            id,
            api_version,
            json,
        } => {
            let version = match api_version {
                Some(v) => v,
                None => locate(&graph, config, &id).await?.1,
            };
            graph
                .delete(version, &id)
                .await
                .with_context(|| format!("deleting {id}"))?;
            if json {
                println!("{}", json!({"deleted": id, "apiVersion": version}));
            } else {
                println!("deleted {id} ({version})");
            }
            Ok(())
        }
        SubscriptionsCommand::Reconcile { json } => reconcile(&graph, &parts, json).await,
    }
}

/// The Graph client of the configuration (`GRAPH_ENDPOINT`, the app's credential).
/// What the commands build, through the builder: one HTTP client and one credential.
struct Parts {
    builder: Builder,
    http: reqwest::Client,
}

impl Parts {
    fn new(config: &Config) -> anyhow::Result<Self> {
        let builder = Builder::new(config.clone());
        let http = builder.http_client()?;
        Ok(Parts { builder, http })
    }

    fn config(&self) -> &Config {
        self.builder.config()
    }

    /// The certificate store of the configuration (the one given to Graph is its current key).
    async fn certificate_store(&self) -> anyhow::Result<crate::keys::CertificateStore> {
        Ok(self.builder.certificate_store(&self.http).await?)
    }
}

fn desired_or_empty(config: &Config) -> anyhow::Result<Vec<DesiredSubscription>> {
    match &config.subscriptions_file {
        Some(path) => Ok(load_desired(path)?),
        None => Ok(Vec::new()),
    }
}

/// The subscription Graph has under `id`, and the API version to manage it on.
async fn locate(
    graph: &GraphClient,
    config: &Config,
    id: &str,
) -> anyhow::Result<(Subscription, ApiVersion, Option<DesiredSubscription>)> {
    let desired = desired_or_empty(config)?;
    // Beta lists every subscription of the app, whatever version created it.
    let listed = graph
        .list(ApiVersion::Beta)
        .await
        .context("listing subscriptions")?;
    let Some(s) = listed.into_iter().find(|s| s.id == id) else {
        bail!("Graph lists no subscription {id} for this app");
    };
    let url = config.notification_url.clone().unwrap_or_default();
    let (matched, version) = matching_desired(&desired, &s, &url);
    let matched = matched.cloned();
    Ok((s, version, matched))
}

/// How a listed subscription relates to the desired state.
fn state(
    s: &Subscription,
    desired: &[DesiredSubscription],
    url: &str,
    now: OffsetDateTime,
) -> &'static str {
    if s.expiration_date_time <= now {
        "expired"
    } else if desired.iter().any(|d| d.matches(s, url)) {
        "desired"
    } else if s.delivers_to(url) {
        "unmanaged"
    } else {
        "elsewhere"
    }
}

async fn list(
    graph: &GraphClient,
    config: &Config,
    version: Option<ApiVersion>,
    json: bool,
) -> anyhow::Result<()> {
    let desired = desired_or_empty(config)?;
    let version = version.unwrap_or_else(|| listing_version(&desired));
    let mut listed = graph.list(version).await.context("listing subscriptions")?;
    listed.sort_by(|a, b| a.resource.cmp(&b.resource).then(a.id.cmp(&b.id)));
    let url = config.notification_url.clone().unwrap_or_default();
    let now = OffsetDateTime::now_utc();
    if json {
        let items: Vec<_> = listed
            .iter()
            .map(|s| {
                json!({
                    "id": s.id,
                    "resource": s.resource,
                    "changeType": s.change_type,
                    "notificationUrl": s.notification_url,
                    "lifecycleNotificationUrl": s.lifecycle_notification_url,
                    "expirationDateTime": format_time(s.expiration_date_time),
                    "remainingSeconds": s.remaining(now).as_secs(),
                    "includeResourceData": s.include_resource_data,
                    "encryptionCertificateId": s.encryption_certificate_id,
                    "state": state(s, &desired, &url, now),
                    "paymentModel": payment_model(&s.resource),
                    "warning": evaluation_mode_warning(&s.resource),
                })
            })
            .collect();
        println!("{}", serde_json::to_string_pretty(&items)?);
        return Ok(());
    }
    let rows: Vec<Vec<String>> = listed
        .iter()
        .map(|s| {
            vec![
                s.id.clone(),
                shorten(&s.resource, 64),
                s.change_type.clone(),
                format_time(s.expiration_date_time),
                remaining(s.remaining(now)),
                s.encryption_certificate_id
                    .clone()
                    .unwrap_or_else(|| "-".into()),
                state(s, &desired, &url, now).to_string(),
            ]
        })
        .collect();
    print!(
        "{}",
        table(
            &[
                "ID",
                "RESOURCE",
                "CHANGE",
                "EXPIRES (UTC)",
                "LEFT",
                "CERTIFICATE",
                "STATE"
            ],
            &rows
        )
    );
    println!("{} subscriptions ({version})", listed.len());
    for warning in listed
        .iter()
        .filter(|s| s.expiration_date_time > now)
        .filter_map(|s| evaluation_mode_warning(&s.resource).map(|w| (s, w)))
    {
        println!("warning: {} {}", warning.0.id, warning.1);
    }
    Ok(())
}

async fn create(
    graph: &GraphClient,
    parts: &Parts,
    desired: &DesiredSubscription,
    json: bool,
) -> anyhow::Result<()> {
    let delivery = Delivery::from_config(parts.config())?;
    let keys = parts.certificate_store().await?;
    let new = renewer::new_subscription(desired, &delivery, &keys, OffsetDateTime::now_utc())
        .map_err(anyhow::Error::msg)?;
    let s = graph
        .create(desired.api_version, &new)
        .await
        .with_context(|| format!("creating {}", desired.resource))?;
    print_subscription("created", &s, desired.api_version, json)
}

async fn renew_one(
    graph: &GraphClient,
    config: &Config,
    id: &str,
    minutes: Option<u32>,
    version: Option<ApiVersion>,
    json: bool,
) -> anyhow::Result<()> {
    let has_lifecycle = config.lifecycle_notification_url.is_some();
    let minutes = minutes.map(|m| std::time::Duration::from_secs(u64::from(m) * 60));
    let (lifetime, version) = match (minutes, version) {
        (Some(lifetime), Some(version)) => (lifetime, version),
        _ => {
            let (s, found_version, matched) = locate(graph, config, id).await?;
            let lifetime = minutes.unwrap_or_else(|| {
                matched
                    .map(|d| d.lifetime(has_lifecycle))
                    .unwrap_or_else(|| default_lifetime(&s.resource, has_lifecycle))
            });
            (lifetime, version.unwrap_or(found_version))
        }
    };
    let s = graph
        .renew(version, id, OffsetDateTime::now_utc() + lifetime)
        .await
        .with_context(|| format!("renewing {id}"))?;
    print_subscription("renewed", &s, version, json)
}

fn print_subscription(
    what: &str,
    s: &Subscription,
    version: ApiVersion,
    json: bool,
) -> anyhow::Result<()> {
    if json {
        let mut v = serde_json::to_value(s)?;
        v["apiVersion"] = json!(version);
        v["expirationDateTime"] = json!(format_time(s.expiration_date_time));
        println!("{}", serde_json::to_string_pretty(&json!({what: v}))?);
    } else {
        println!(
            "{what} {} ({version}) {} [{}] until {}",
            s.id,
            s.resource,
            s.change_type,
            format_time(s.expiration_date_time)
        );
    }
    Ok(())
}

async fn reconcile(graph: &GraphClient, parts: &Parts, json: bool) -> anyhow::Result<()> {
    let config = parts.config();
    let path = config
        .subscriptions_file
        .as_deref()
        .context("SUBSCRIPTIONS_FILE is not set: nothing to reconcile")?;
    let desired = load_desired(path)?;
    let delivery = Delivery::from_config(config)?;
    let keys = parts.certificate_store().await?;
    let report = renewer::reconcile(
        graph,
        &keys,
        &delivery,
        &desired,
        &config.reconcile,
        &HashSet::new(),
    )
    .await;
    if json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        let rows: Vec<Vec<String>> = report
            .actions
            .iter()
            .map(|a| {
                vec![
                    a.action.as_str().to_string(),
                    a.api_version.to_string(),
                    shorten(&a.resource, 64),
                    a.subscription_id.clone().unwrap_or_else(|| "-".into()),
                    a.expiration.clone().unwrap_or_else(|| "-".into()),
                    a.failure
                        .as_ref()
                        .map(|f| f.message.clone())
                        .unwrap_or_default(),
                ]
            })
            .collect();
        print!(
            "{}",
            table(
                &["ACTION", "VER", "RESOURCE", "ID", "EXPIRES (UTC)", "DETAIL"],
                &rows
            )
        );
        if let Some(line) = report.log_lines().last() {
            println!("{}", line.trim_start_matches("renew: "));
        }
    }
    if report.failures() > 0 {
        bail!(
            "{} subscription(s) could not be reconciled{}",
            report.failures(),
            report
                .error
                .as_deref()
                .map(|e| format!(": {e}"))
                .unwrap_or_default()
        );
    }
    Ok(())
}

/// `2d 3h`, `45m`, `expired`.
fn remaining(d: std::time::Duration) -> String {
    let m = d.as_secs() / 60;
    match (m / 1440, (m % 1440) / 60, m % 60) {
        (0, 0, 0) => "expired".into(),
        (0, 0, min) => format!("{min}m"),
        (0, h, min) => format!("{h}h {min}m"),
        (days, h, _) => format!("{days}d {h}h"),
    }
}

/// Keeps both ends of a long resource (the join URL's meeting id is in the middle, the kind at
/// the end).
fn shorten(s: &str, max: usize) -> String {
    let n = s.chars().count();
    if n <= max {
        return s.to_string();
    }
    let head: String = s.chars().take(max / 2 - 1).collect();
    let tail: String = s.chars().skip(n - (max - max / 2)).collect();
    format!("{head}…{tail}")
}

/// A plain left-aligned table.
fn table(headers: &[&str], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = headers.iter().map(|h| h.chars().count()).collect();
    for row in rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let line = |cells: Vec<&str>| -> String {
        let mut out = cells
            .iter()
            .zip(&widths)
            .map(|(c, w)| format!("{c:<w$}"))
            .collect::<Vec<_>>()
            .join("  ");
        out.truncate(out.trim_end().len());
        out.push('\n');
        out
    };
    let mut out = line(headers.to_vec());
    for row in rows {
        out.push_str(&line(row.iter().map(String::as_str).collect()));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tables_align_and_trim() {
        let t = table(
            &["A", "BB"],
            &[vec!["xxx".into(), "y".into()], vec!["z".into(), "".into()]],
        );
        assert_eq!(t, "A    BB\nxxx  y\nz\n");
    }

    #[test]
    fn long_resources_keep_both_ends() {
        let s = format!("communications/{}/meetingCallEvents", "x".repeat(200));
        let short = shorten(&s, 40);
        assert_eq!(short.chars().count(), 40);
        assert!(short.starts_with("communications/"));
        assert!(short.ends_with("meetingCallEvents"));
    }

    #[test]
    fn remaining_is_readable() {
        use std::time::Duration;
        assert_eq!(remaining(Duration::ZERO), "expired");
        assert_eq!(remaining(Duration::from_secs(45 * 60)), "45m");
        assert_eq!(remaining(Duration::from_secs(3 * 3600 + 60)), "3h 1m");
        assert_eq!(
            remaining(Duration::from_secs(2 * 86400 + 3 * 3600)),
            "2d 3h"
        );
    }
}
