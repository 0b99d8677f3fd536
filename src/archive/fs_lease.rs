//! Filesystem leases for [`super::lease`]: an exclusive `flock` on `{root}/leases/{name}.lock`.
//! The kernel drops the lock when its file is closed, so a holder that crashes frees the lease at
//! once and no staleness rule is needed; the file keeps the last holder's process id and host
//! for the operator. (`flock` holds between processes on one machine, which is what a
//! filesystem archive shares; instances on several machines share a Blob archive.)

use std::io::Write as _;
use std::path::PathBuf;
use std::sync::Mutex;
use std::time::Duration;

use super::ArchiveError;
use super::fs::FsArchive;
use super::lease::{HeldLease, LeaseName, LeaseStore};

fn io(path: &std::path::Path, source: std::io::Error) -> ArchiveError {
    ArchiveError::Io {
        name: path.display().to_string(),
        source,
    }
}

fn try_lock(path: PathBuf) -> Result<Option<std::fs::File>, ArchiveError> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(|e| io(dir, e))?;
    }
    let mut file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .read(true)
        .write(true)
        .open(&path)
        .map_err(|e| io(&path, e))?;
    match file.try_lock() {
        Ok(()) => {}
        Err(std::fs::TryLockError::WouldBlock) => return Ok(None),
        Err(std::fs::TryLockError::Error(e)) => return Err(io(&path, e)),
    }
    let host = std::env::var("HOSTNAME").unwrap_or_default();
    let holder = format!("pid {} host {host}\n", std::process::id());
    file.set_len(0)
        .and_then(|()| file.write_all(holder.as_bytes()))
        .map_err(|e| io(&path, e))?;
    Ok(Some(file))
}

#[async_trait::async_trait]
impl LeaseStore for FsArchive {
    async fn try_acquire(
        &self,
        name: &LeaseName,
        _ttl: Duration,
    ) -> Result<Option<Box<dyn HeldLease>>, ArchiveError> {
        let path = self.root().join("leases").join(format!("{name}.lock"));
        let locked = tokio::task::spawn_blocking(move || try_lock(path))
            .await
            .map_err(|e| ArchiveError::backend(format!("leases/{name}"), e))??;
        Ok(locked.map(|file| Box::new(FsLease(Mutex::new(Some(file)))) as Box<dyn HeldLease>))
    }
}

/// The locked file; closing it releases the lock.
struct FsLease(Mutex<Option<std::fs::File>>);

#[async_trait::async_trait]
impl HeldLease for FsLease {
    async fn renew(&self) -> Result<(), ArchiveError> {
        Ok(())
    }

    async fn release(&self) -> Result<(), ArchiveError> {
        let file = self.0.lock().unwrap_or_else(|e| e.into_inner()).take();
        if let Some(file) = file {
            let _ = file.unlock();
        }
        Ok(())
    }
}
