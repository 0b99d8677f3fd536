//! The archive: where every verified notification ends up, without loss and without duplicates.
//!
//! One [`Archive`] trait, two backends: [`fs::FsArchive`] (the embedded default) and
//! [`blob::BlobArchive`] (Azure Blob Storage through the official `azure_storage_blob` crate).
//! Every write is create-if-absent under a content-addressed name ([`ObjectName`]), so Graph's
//! resends of the same notification are one object, and "already exists" counts as success.
//! Both backends also hold [`lease::LeaseStore`] leases (one renewer at a time across instances).

pub mod blob;
mod blob_lease;
pub mod connection_string;
pub mod fs;
mod fs_lease;
pub mod lease;
pub mod recent;
pub mod records;
pub mod sas;
mod storage_error;

pub use storage_error::StorageError;

use bytes::Bytes;

/// The top-level prefixes of the archive. A closed set: every object lives under one of them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Kind {
    /// Raw rich batches, as received (clientState removed), kept so decryption can be replayed.
    Raw,
    /// Verified events: basic notifications and decrypted rich notifications.
    Events,
    /// Items that passed validation but could not be decrypted yet, with the reason.
    Quarantine,
    /// Lifecycle notifications (`reauthorizationRequired`, `subscriptionRemoved`, `missed`).
    Lifecycle,
    /// Batches whose validationTokens failed: kept for forensics, never treated as genuine.
    Rejected,
    /// Resync markers written after a `missed` lifecycle notification.
    Resync,
    /// The alert outbox: one record per alerting event, written with the event, and the
    /// per-route attempts and deliveries (see `alerts::outbox`).
    Alerts,
    /// Meetings seen starting and ending (the Teams bot's events): the desired state of the
    /// meetings' call-event subscriptions, shared by every instance.
    Meetings,
    /// A rich batch every item of which has its event: written after the events are durable,
    /// named like the batch's `raw/` record, so a resend of the whole batch is recognised by
    /// one name instead of one per item (see `receiver::resend`).
    Complete,
}

impl Kind {
    pub const ALL: [Kind; 9] = [
        Kind::Raw,
        Kind::Events,
        Kind::Quarantine,
        Kind::Lifecycle,
        Kind::Rejected,
        Kind::Resync,
        Kind::Alerts,
        Kind::Meetings,
        Kind::Complete,
    ];

    pub fn prefix(self) -> &'static str {
        match self {
            Kind::Raw => "raw",
            Kind::Events => "events",
            Kind::Quarantine => "quarantine",
            Kind::Lifecycle => "lifecycle",
            Kind::Rejected => "rejected",
            Kind::Resync => "resync",
            Kind::Alerts => "alerts",
            Kind::Meetings => "meetings",
            Kind::Complete => "complete",
        }
    }
}

/// A validated archive object name: `{kind}/{yyyy}/{mm}/{dd}/{subscription}/{sha256}.json`.
///
/// The date partition comes from the notification itself (its `subscriptionExpirationDateTime`),
/// never from the clock: a resend that arrives after midnight must land on the same name.
/// Every segment is restricted to `[A-Za-z0-9._-]`, so a hostile subscription id cannot escape
/// its folder on the filesystem or in Blob Storage.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ObjectName(String);

impl ObjectName {
    /// `date` is `(year, month, day)`; `None` files the object under `undated`.
    pub fn new(kind: Kind, date: Option<(i32, u8, u8)>, partition: &str, digest_hex: &str) -> Self {
        let date = match date {
            Some((y, m, d)) => format!("{y:04}/{m:02}/{d:02}"),
            None => "undated".to_string(),
        };
        ObjectName(format!(
            "{}/{}/{}/{}.json",
            kind.prefix(),
            date,
            sanitize_segment(partition),
            sanitize_segment(digest_hex)
        ))
    }

    /// Parses a name read back from a backend (a listing). Rejects anything a backend could not
    /// have been given by [`ObjectName::new`].
    pub fn parse(name: &str) -> Option<Self> {
        let ok = !name.is_empty()
            && name.ends_with(".json")
            && Kind::ALL
                .iter()
                .any(|k| name.starts_with(k.prefix()) && name[k.prefix().len()..].starts_with('/'))
            && name.split('/').all(|seg| {
                !seg.is_empty()
                    && seg != "."
                    && seg != ".."
                    && seg
                        .bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b))
            });
        ok.then(|| ObjectName(name.to_string()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    pub fn kind(&self) -> Kind {
        let prefix = self.0.split('/').next().unwrap_or_default();
        Kind::ALL
            .into_iter()
            .find(|k| k.prefix() == prefix)
            .unwrap_or(Kind::Events)
    }
}

impl std::fmt::Display for ObjectName {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// Keeps `[A-Za-z0-9._-]`, maps everything else to `_`, and never yields `.`/`..`/empty.
pub(crate) fn sanitize_segment(s: &str) -> String {
    let cleaned: String = s
        .chars()
        .take(128)
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' || c == '.' {
                c
            } else {
                '_'
            }
        })
        .collect();
    if cleaned.is_empty() || cleaned.chars().all(|c| c == '.') {
        "_".to_string()
    } else {
        cleaned
    }
}

/// What a create-if-absent write did. Both are success.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Written {
    Created,
    AlreadyExisted,
}

/// A failure to persist. The caller answers 503 so Graph retries.
#[derive(Debug, thiserror::Error)]
pub enum ArchiveError {
    #[error("archive I/O failed for {name}: {source}")]
    Io {
        name: String,
        #[source]
        source: std::io::Error,
    },
    /// The backend failed: Storage's answer ([`StorageError`]), a worker task that did not
    /// finish, or an answer the archive cannot use.
    #[error("archive backend failed for {name}: {source}")]
    Backend {
        name: String,
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    #[error("archive configuration: {0}")]
    Config(String),
    /// A setting the archive could not use, with the parser's or the SDK's error.
    #[error("archive configuration: {what}: {source}")]
    Setting {
        what: String,
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
}

impl ArchiveError {
    /// A setting (`what`) the archive could not use, and why.
    pub(crate) fn setting(
        what: impl Into<String>,
        source: impl Into<Box<dyn std::error::Error + Send + Sync>>,
    ) -> Self {
        ArchiveError::Setting {
            what: what.into(),
            source: source.into(),
        }
    }

    /// A backend failure of `name` (an object, a prefix, a lease) with its cause.
    pub fn backend(
        name: impl Into<String>,
        source: impl Into<Box<dyn std::error::Error + Send + Sync>>,
    ) -> Self {
        ArchiveError::Backend {
            name: name.into(),
            source: source.into(),
        }
    }
}

/// The storage of archived objects. Implementations must make [`Archive::put_if_absent`] atomic:
/// an object is either absent or whole under its final name, never half-written.
#[async_trait::async_trait]
pub trait Archive: Send + Sync {
    /// Stores `body` under `name` unless an object of that name exists.
    async fn put_if_absent(&self, name: &ObjectName, body: Bytes) -> Result<Written, ArchiveError>;
    /// Stores a request's objects, each create-if-absent; `Ok` only when every one is durable.
    /// The default writes them concurrently; a backend may do better with the whole batch at
    /// once (the filesystem syncs once per batch instead of once per file).
    async fn put_all_if_absent(
        &self,
        objects: Vec<(ObjectName, Bytes)>,
    ) -> Result<Vec<Written>, ArchiveError> {
        futures::future::join_all(
            objects
                .iter()
                .map(|(name, body)| self.put_if_absent(name, body.clone())),
        )
        .await
        .into_iter()
        .collect()
    }
    /// Which of `names` exist, one answer per name in order: lets a resend skip its work.
    /// The default reads each object; backends answer from metadata (a stat, a `HEAD`).
    async fn exist_all(&self, names: &[ObjectName]) -> Result<Vec<bool>, ArchiveError> {
        futures::future::join_all(names.iter().map(|name| self.get(name)))
            .await
            .into_iter()
            .map(|got| got.map(|body| body.is_some()))
            .collect()
    }
    /// Reads an object; `Ok(None)` when it does not exist.
    async fn get(&self, name: &ObjectName) -> Result<Option<Bytes>, ArchiveError>;
    /// Lists every object under `kind`, in name order.
    async fn list(&self, kind: Kind) -> Result<Vec<ObjectName>, ArchiveError>;
    /// Where the objects are, for people: a directory or a container URL (no secrets).
    fn location(&self) -> String;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_partitioned_and_safe() {
        let n = ObjectName::new(Kind::Events, Some((2026, 1, 2)), "../../etc/passwd", "ab12");
        assert_eq!(n.as_str(), "events/2026/01/02/.._.._etc_passwd/ab12.json");
        assert!(ObjectName::parse(n.as_str()).is_some());
        assert_eq!(n.kind(), Kind::Events);
        let undated = ObjectName::new(Kind::Lifecycle, None, "..", "x");
        assert_eq!(undated.as_str(), "lifecycle/undated/_/x.json");
    }

    #[test]
    fn parse_rejects_escapes() {
        for bad in [
            "",
            "events/../x.json",
            "/events/x.json",
            "other/x.json",
            "events/a b.json",
            "events/x.txt",
            "eventsx/a.json",
        ] {
            assert!(ObjectName::parse(bad).is_none(), "{bad}");
        }
    }
}
