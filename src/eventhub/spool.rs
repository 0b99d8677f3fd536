//! The spool: a second store for an invocation the archive could not take.
//!
//! The Event Hubs trigger advances its checkpoint whether an invocation succeeds or fails; only
//! the function's `retry` policy runs a failed batch again, and after its last try the batch is
//! gone from the host. So when the archive fails, the whole invocation body is written here
//! (as received: the events and their metadata) before the answer, and the replay timer feeds it
//! through the receiver again once the archive is back, then removes it.
//!
//! A folder (`EVENTHUB_SPOOL_DIR`) on a different device than the archive's service: for a Blob
//! archive a local or mounted disk survives a storage outage. Files are named by the SHA-256 of
//! the body (a retry spools onto the same file), written to a temporary name, fsynced, renamed
//! and the folder fsynced: a file under a final name is always whole.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

static TMP_COUNTER: AtomicU64 = AtomicU64::new(0);
const SUFFIX: &str = ".invocation.json";

/// A spool folder.
#[derive(Debug, Clone)]
pub struct Spool {
    dir: PathBuf,
}

/// A spooled invocation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Spooled {
    pub path: PathBuf,
}

impl Spool {
    /// Uses `dir` (created on the first write).
    pub fn new(dir: &Path) -> Self {
        Spool {
            dir: dir.to_path_buf(),
        }
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Stores `body` durably; a body already spooled is not written twice.
    pub async fn put(&self, body: &[u8]) -> std::io::Result<Spooled> {
        let dir = self.dir.clone();
        let name = format!("{}{SUFFIX}", hex::encode(openssl::sha::sha256(body)));
        let body = body.to_vec();
        tokio::task::spawn_blocking(move || write_durably(&dir, &name, &body))
            .await
            .map_err(std::io::Error::other)?
            .map(|path| Spooled { path })
    }

    /// The spooled invocations, oldest name order (names are hashes: any order is fair).
    pub async fn list(&self) -> std::io::Result<Vec<Spooled>> {
        let mut entries = match tokio::fs::read_dir(&self.dir).await {
            Ok(e) => e,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(e),
        };
        let mut out = Vec::new();
        while let Some(entry) = entries.next_entry().await? {
            let name = entry.file_name();
            if name.to_string_lossy().ends_with(SUFFIX) {
                out.push(Spooled { path: entry.path() });
            }
        }
        out.sort_by(|a, b| a.path.cmp(&b.path));
        Ok(out)
    }

    pub async fn read(&self, item: &Spooled) -> std::io::Result<Vec<u8>> {
        tokio::fs::read(&item.path).await
    }

    /// Removes an invocation once everything in it is in the archive.
    pub async fn remove(&self, item: &Spooled) -> std::io::Result<()> {
        match tokio::fs::remove_file(&item.path).await {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e),
            _ => Ok(()),
        }
    }
}

fn write_durably(dir: &Path, name: &str, body: &[u8]) -> std::io::Result<PathBuf> {
    use std::io::Write;
    let path = dir.join(name);
    if path.exists() {
        return Ok(path);
    }
    std::fs::create_dir_all(dir)?;
    let tmp = dir.join(format!(
        ".tmp-{}-{}",
        std::process::id(),
        TMP_COUNTER.fetch_add(1, Ordering::Relaxed)
    ));
    let written = (|| {
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&tmp)?;
        f.write_all(body)?;
        f.sync_all()?;
        std::fs::rename(&tmp, &path)?;
        std::fs::File::open(dir)?.sync_all()
    })();
    if written.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    written.map(|()| path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn put_is_idempotent_and_listed_until_removed() {
        let dir = tempfile::tempdir().unwrap();
        let spool = Spool::new(&dir.path().join("spool"));
        assert!(
            spool.list().await.unwrap().is_empty(),
            "missing folder = empty"
        );
        let a = spool.put(b"{\"a\":1}").await.unwrap();
        let again = spool.put(b"{\"a\":1}").await.unwrap();
        assert_eq!(a, again);
        spool.put(b"{\"b\":2}").await.unwrap();
        let listed = spool.list().await.unwrap();
        assert_eq!(listed.len(), 2);
        assert_eq!(spool.read(&a).await.unwrap(), b"{\"a\":1}");
        spool.remove(&a).await.unwrap();
        spool.remove(&a).await.unwrap();
        assert_eq!(spool.list().await.unwrap().len(), 1);
    }

    #[tokio::test]
    async fn an_unwritable_spool_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("file");
        std::fs::write(&file, b"x").unwrap();
        let spool = Spool::new(&file.join("spool"));
        assert!(spool.put(b"x").await.is_err());
    }
}
