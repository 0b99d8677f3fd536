//! `handler decrypt FILE`: decrypts a captured notification offline with the configured keys.
//!
//! FILE may be a notification collection (`{"value": [...]}`, as Graph posts it), a single item,
//! a quarantine record or a raw batch from the archive. validationTokens are not checked here
//! (they expire within the hour); this is for inspecting what a notification holds.

use std::path::Path;

use anyhow::Context;
use serde_json::{Value, json};

use crate::config::Config;
use crate::graph::crypto;
use crate::graph::events::{EventKind, TeamsEvent};
use crate::graph::notification::ChangeNotification;

/// The items in a file of any of the accepted shapes.
pub fn items_of(text: &str) -> anyhow::Result<Vec<ChangeNotification>> {
    if let Ok(c) = crate::graph::notification::parse_collection(text.as_bytes()) {
        return Ok(c.value);
    }
    let v: Value = serde_json::from_str(text).context("the file is not JSON")?;
    let items = if let Some(n) = v.get("notification") {
        vec![n.clone()]
    } else if let Some(Value::Array(ns)) = v.get("notifications") {
        ns.clone()
    } else {
        vec![v]
    };
    items
        .into_iter()
        .map(|i| serde_json::from_value(i).context("not a change notification"))
        .collect()
}

pub async fn run(file: &Path, config: &Config) -> anyhow::Result<()> {
    let text =
        std::fs::read_to_string(file).with_context(|| format!("reading {}", file.display()))?;
    let items = items_of(&text)?;
    let builder = crate::startup::Builder::new(config.clone());
    let keys = builder.certificate_store(&builder.http_client()?).await?;
    let mut out = Vec::new();
    let mut failures = 0;
    for item in items {
        let Some(content) = &item.encrypted_content else {
            out.push(json!({"subscriptionId": item.subscription_id, "rich": false, "resourceData": item.resource_data}));
            continue;
        };
        let key = keys
            .resolve(
                content.encryption_certificate_id.as_deref(),
                content.encryption_certificate_thumbprint.as_deref(),
            )
            .await;
        let result = match key {
            None if keys.is_empty() => Err(crypto::DecryptError::NoKeys),
            None => Err(crypto::DecryptError::UnknownKey {
                id: content.encryption_certificate_id.clone(),
                thumbprint: content.encryption_certificate_thumbprint.clone(),
            }),
            Some(k) => crypto::decrypt(content, &k.private_key).map(|p| (k.id.clone(), p)),
        };
        match result {
            Ok((certificate_id, payload)) => {
                let kind = EventKind::of(Some(&payload), item.resource_data.as_ref());
                out.push(json!({
                    "subscriptionId": item.subscription_id,
                    "certificateId": certificate_id,
                    "eventKind": kind.name(),
                    "summary": TeamsEvent::read(kind, &payload).summary(),
                    "payload": payload,
                }));
            }
            Err(e) => {
                failures += 1;
                out.push(json!({"subscriptionId": item.subscription_id, "error": e.to_string(), "reasonCode": e.code()}));
            }
        }
    }
    println!("{}", serde_json::to_string_pretty(&out)?);
    if failures > 0 {
        anyhow::bail!("{failures} item(s) could not be decrypted");
    }
    Ok(())
}
