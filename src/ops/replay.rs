//! Replay: turns quarantined and raw items into events once their key is available.
//!
//! Idempotent by construction: an item's event has the same content-addressed name whether it
//! was written on arrival or by a replay, so an item whose event exists is skipped, and running
//! replay twice adds nothing.

use std::sync::Arc;

use indicatif::ProgressBar;

use crate::archive::records::{self, QuarantineRecord, RawRecord};
use crate::archive::{Archive, ArchiveError, Kind, ObjectName, Written};
use crate::eventhub::large_payload::{self, PayloadStore};
use crate::graph::crypto::DecryptError;
use crate::graph::notification::ChangeNotification;
use crate::keys::CertificateStore;
use crate::receiver::{quarantine_entry, rich_entry};

/// What a replay did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct ReplayStats {
    /// Items looked at (quarantined items plus items of raw batches).
    pub examined: usize,
    /// Events written by this run.
    pub recovered: usize,
    /// Items whose event already existed.
    pub already_done: usize,
    /// Items still not decryptable (left in, or added to, quarantine).
    pub still_quarantined: usize,
    /// Unreadable objects (named in the log).
    pub unreadable: usize,
}

/// Re-processes `quarantine/` and `raw/` with the keys of `keys`; items whose payload Graph
/// left in blob storage are fetched from `payloads` when it is configured.
pub async fn replay(
    archive: &Arc<dyn Archive>,
    keys: &CertificateStore,
    payloads: Option<&PayloadStore>,
    progress: &ProgressBar,
) -> Result<ReplayStats, ArchiveError> {
    let quarantined = archive.list(Kind::Quarantine).await?;
    let raws = archive.list(Kind::Raw).await?;
    progress.set_length((quarantined.len() + raws.len()) as u64);
    let mut stats = ReplayStats::default();

    for name in quarantined {
        progress.inc(1);
        let Some(record) = read::<QuarantineRecord>(archive, &name, &mut stats).await? else {
            continue;
        };
        stats.examined += 1;
        let item = record.notification;
        replay_item(
            archive,
            keys,
            payloads,
            &record.received_at,
            item,
            &mut stats,
        )
        .await?;
    }
    for name in raws {
        progress.inc(1);
        let Some(record) = read::<RawRecord>(archive, &name, &mut stats).await? else {
            continue;
        };
        for item in record.notifications {
            // A quarantined item was handled by the first pass: once is enough.
            let quarantined = records::item_name(Kind::Quarantine, &item, &item.canonical());
            if archive.get(&quarantined).await?.is_some() {
                continue;
            }
            stats.examined += 1;
            replay_item(
                archive,
                keys,
                payloads,
                &record.received_at,
                item,
                &mut stats,
            )
            .await?;
        }
    }
    progress.finish_and_clear();
    Ok(stats)
}

/// A replay with no progress bar, its outcome logged: what runs unattended (once a missing
/// certificate has arrived, or from a timer).
pub(crate) async fn replay_unattended(
    archive: &Arc<dyn Archive>,
    keys: &CertificateStore,
    payloads: Option<&PayloadStore>,
) -> Result<ReplayStats, ArchiveError> {
    let stats = replay(archive, keys, payloads, &ProgressBar::hidden()).await;
    match &stats {
        Ok(s) => tracing::info!(
            examined = s.examined,
            recovered = s.recovered,
            already_done = s.already_done,
            still_quarantined = s.still_quarantined,
            unreadable = s.unreadable,
            "replay finished"
        ),
        Err(e) => tracing::error!(error = %e, "replay failed; `handler replay` finishes it"),
    }
    stats
}

async fn read<T: serde::de::DeserializeOwned>(
    archive: &Arc<dyn Archive>,
    name: &ObjectName,
    stats: &mut ReplayStats,
) -> Result<Option<T>, ArchiveError> {
    let Some(bytes) = archive.get(name).await? else {
        return Ok(None);
    };
    match serde_json::from_slice(&bytes) {
        Ok(r) => Ok(Some(r)),
        Err(e) => {
            tracing::warn!(object = %name, error = %e, "unreadable archive object skipped");
            stats.unreadable += 1;
            Ok(None)
        }
    }
}

async fn replay_item(
    archive: &Arc<dyn Archive>,
    keys: &CertificateStore,
    payloads: Option<&PayloadStore>,
    received_at: &str,
    item: ChangeNotification,
    stats: &mut ReplayStats,
) -> Result<(), ArchiveError> {
    // The name is the item's as received (with its storage id, if Graph left the payload in a
    // blob), so a replayed item lands where it would have on arrival.
    let canonical = item.canonical();
    let event_name = records::item_name(Kind::Events, &item, &canonical);
    if archive.get(&event_name).await?.is_some() {
        stats.already_done += 1;
        return Ok(());
    }
    let item = match large_payload::resolve(payloads, &item).await {
        None => item,
        Some(Ok(full)) => full,
        Some(Err(e)) => {
            let code = e.code();
            let pending = quarantine_entry(received_at, item, &canonical, e.to_string(), code);
            archive.put_if_absent(&pending.name, pending.body).await?;
            stats.still_quarantined += 1;
            return Ok(());
        }
    };
    let Some(content) = &item.encrypted_content else {
        return Ok(());
    };
    let key = keys
        .resolve(
            content.encryption_certificate_id.as_deref(),
            content.encryption_certificate_thumbprint.as_deref(),
        )
        .await
        .ok_or_else(|| {
            if keys.is_empty() {
                DecryptError::NoKeys
            } else {
                DecryptError::UnknownKey {
                    id: content.encryption_certificate_id.clone(),
                    thumbprint: content.encryption_certificate_thumbprint.clone(),
                }
            }
        });
    let received_at = received_at.to_string();
    let pending =
        tokio::task::spawn_blocking(move || rich_entry(&received_at, item, canonical, key))
            .await
            .map_err(|e| ArchiveError::backend(event_name.to_string(), e))?;
    let is_event = pending.name.kind() == Kind::Events;
    let written = archive.put_if_absent(&pending.name, pending.body).await?;
    match (is_event, written) {
        (true, Written::Created) => stats.recovered += 1,
        (true, Written::AlreadyExisted) => stats.already_done += 1,
        (false, _) => stats.still_quarantined += 1,
    }
    Ok(())
}
