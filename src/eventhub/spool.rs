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
//!
//! Temporary names are the archive's (`.tmp-` and 128 random bits, never the PID, which is 1 on
//! every start of a container), so a file a crash left behind never collides with a new write;
//! a write removes its temporary file whatever fails, and the start-up sweep removes the ones
//! old enough to be a crash's leftovers.

use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::archive::fs::{sweep_in_background_at, sweep_temporaries_in, temporary_name};

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

    /// Removes temporary files older than `older_than` (left by a crash or a kill), returning
    /// how many. Younger ones may be a live write of another process.
    pub async fn sweep_temporaries(&self, older_than: Duration) -> std::io::Result<usize> {
        let dir = self.dir.clone();
        tokio::task::spawn_blocking(move || sweep_temporaries_in(&dir, older_than))
            .await
            .map_err(std::io::Error::other)?
    }

    /// Sweeps temporary files older than [`crate::archive::fs::STALE_TEMPORARY_AGE`] in the
    /// background (the builder calls it at start-up), logging how many it removed.
    pub fn sweep_in_background(&self) {
        sweep_in_background_at(self.dir.clone(), "spool");
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
    if path.is_file() {
        return Ok(path);
    }
    std::fs::create_dir_all(dir)?;
    let tmp = dir.join(temporary_name()?);
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(&tmp)?;
    // The temporary file is ours from here on: removed again whatever fails.
    let written = (|| {
        file.write_all(body)?;
        file.sync_all()?;
        drop(file);
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
    use crate::archive::fs::STALE_TEMPORARY_AGE;

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

    fn temporaries(dir: &Path) -> Vec<PathBuf> {
        let mut found: Vec<PathBuf> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| {
                p.file_name()
                    .unwrap()
                    .to_string_lossy()
                    .starts_with(crate::archive::fs::TEMPORARY_PREFIX)
            })
            .collect();
        found.sort();
        found
    }

    fn age(path: &Path, by: Duration) {
        std::fs::File::options()
            .write(true)
            .open(path)
            .unwrap()
            .set_modified(std::time::SystemTime::now() - by)
            .unwrap();
    }

    #[tokio::test]
    async fn files_a_crashed_run_left_do_not_stop_a_write() {
        let dir = tempfile::tempdir().unwrap();
        let spool = Spool::new(dir.path());
        // What a crashed run left: the names a PID-and-counter scheme gives this process, and
        // a container's (PID 1).
        let mut leftovers: Vec<PathBuf> = (0..1000)
            .map(|n| dir.path().join(format!(".tmp-{}-{n}", std::process::id())))
            .chain((0..10).map(|n| dir.path().join(format!(".tmp-1-{n}"))))
            .collect();
        for path in &leftovers {
            std::fs::write(path, b"half").unwrap();
        }
        for n in 0..20 {
            let body = format!("{{\"n\":{n}}}");
            let spooled = spool.put(body.as_bytes()).await.unwrap();
            assert_eq!(spool.read(&spooled).await.unwrap(), body.as_bytes());
        }
        assert_eq!(spool.list().await.unwrap().len(), 20);
        // The writes left no temporary of their own and touched none of the leftovers.
        leftovers.sort();
        assert_eq!(temporaries(dir.path()), leftovers);
    }

    #[tokio::test]
    async fn the_sweep_removes_only_old_temporaries() {
        let dir = tempfile::tempdir().unwrap();
        let spool = Spool::new(dir.path());
        let kept = spool.put(b"{\"kept\":1}").await.unwrap();
        let old = dir.path().join(".tmp-1-0");
        let old_random = dir.path().join(temporary_name().unwrap());
        let young = dir.path().join(temporary_name().unwrap());
        for path in [&old, &old_random, &young] {
            std::fs::write(path, b"").unwrap();
        }
        for path in [&old, &old_random, &kept.path] {
            age(path, Duration::from_secs(3600));
        }
        assert_eq!(
            spool.sweep_temporaries(STALE_TEMPORARY_AGE).await.unwrap(),
            2
        );
        assert_eq!(temporaries(dir.path()), [young]);
        assert_eq!(spool.list().await.unwrap(), [kept]);
        // A spool folder that does not exist yet holds nothing to sweep.
        let missing = Spool::new(&dir.path().join("missing"));
        assert_eq!(missing.sweep_temporaries(Duration::ZERO).await.unwrap(), 0);
    }

    #[tokio::test]
    async fn a_failed_write_leaves_no_temporary() {
        let dir = tempfile::tempdir().unwrap();
        let spool = Spool::new(dir.path());
        // A folder where the body's file goes: the rename fails after the temporary is written.
        let body = b"{\"blocked\":1}";
        let name = format!("{}{SUFFIX}", hex::encode(openssl::sha::sha256(body)));
        std::fs::create_dir_all(dir.path().join(name).join("inside")).unwrap();
        assert!(spool.put(body).await.is_err());
        assert!(temporaries(dir.path()).is_empty());
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
