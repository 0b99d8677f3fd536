//! Filesystem archive: the embedded default (`ARCHIVE_DIR`, else `./data/archive`).
//!
//! A write goes to a temporary file with a random name in the target folder, is made durable, and
//! is then hard-linked to its final name. `link` fails if the name exists, so create-if-absent is
//! atomic even between processes, and a crash never leaves a half-written file under a final
//! name (only a `.tmp-*` file, which listings ignore and [`FsArchive::sweep_temporaries`]
//! removes once it is old). Random names (not the PID, which is 1 on every start of a
//! container) never meet a file a crashed run left behind.
//!
//! A request's objects are written as one batch by one thread: each temporary file is created,
//! written and closed in turn (one descriptor at a time, whatever the batch size), then one
//! `syncfs(2)` makes all of them durable, the links are made, and a second `syncfs` makes the
//! names durable (and every folder the batch created). Two syncs per request instead of one per
//! file and one per folder: on this project's VMs an `fsync` per file cost three device
//! requests each (data, inode block, cache flush), about 245 µs of CPU per notification on
//! ext4; the filesystem-wide sync merges a batch's writes into a few requests (BENCHMARKS.md).
//! The price: `syncfs` also flushes what other processes wrote to the same filesystem, so the
//! archive wants a filesystem of its own when other programs write heavily beside it (README).
//! A name that occurs twice in one batch is written once. Every temporary file is removed again,
//! whatever fails.

use std::collections::HashSet;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use bytes::Bytes;

use super::{Archive, ArchiveError, Kind, ObjectName, Written};

/// A temporary file older than this was left by a crash: a live write takes milliseconds.
pub(crate) const STALE_TEMPORARY_AGE: Duration = Duration::from_secs(15 * 60);
pub(crate) const TEMPORARY_PREFIX: &str = ".tmp-";

pub struct FsArchive {
    root: PathBuf,
}

impl FsArchive {
    /// Creates the root folder if missing.
    pub async fn open(root: &Path) -> Result<Self, ArchiveError> {
        let root = root.to_path_buf();
        tokio::fs::create_dir_all(&root)
            .await
            .map_err(|source| ArchiveError::Io {
                name: root.display().to_string(),
                source,
            })?;
        Ok(FsArchive { root })
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    fn path_of(&self, name: &ObjectName) -> PathBuf {
        self.root.join(name.as_str())
    }

    /// Removes temporary files older than `older_than` (left by a crash or a kill), returning
    /// how many. Run at start-up; younger ones may belong to another live process.
    pub async fn sweep_temporaries(&self, older_than: Duration) -> Result<usize, ArchiveError> {
        let root = self.root.clone();
        tokio::task::spawn_blocking(move || sweep_temporaries_in(&root, older_than))
            .await
            .map_err(|e| ArchiveError::backend("temporary files", e))?
            .map_err(|source| ArchiveError::Io {
                name: "temporary files".into(),
                source,
            })
    }
}

impl FsArchive {
    /// Sweeps temporary files older than [`STALE_TEMPORARY_AGE`] in the background (the
    /// builder calls it at start-up), logging how many it removed.
    pub fn sweep_in_background(&self) {
        sweep_in_background_at(self.root.clone(), "archive");
    }
}

/// Removes the temporary files older than [`STALE_TEMPORARY_AGE`] under `dir` in a background
/// task, logging how many (`what` names the folder's role: the archive, the spool).
pub(crate) fn sweep_in_background_at(dir: PathBuf, what: &'static str) {
    tokio::task::spawn_blocking(
        move || match sweep_temporaries_in(&dir, STALE_TEMPORARY_AGE) {
            Ok(0) => {}
            Ok(removed) => {
                tracing::info!(removed, folder = what, path = %dir.display(), "temporary files of an earlier run removed")
            }
            Err(e) => {
                tracing::warn!(error = %e, folder = what, path = %dir.display(), "cannot sweep old temporary files")
            }
        },
    );
}

/// `.tmp-` and 128 random bits, hex (also the spool's temporary names).
pub(crate) fn temporary_name() -> std::io::Result<String> {
    let mut random = [0u8; 16];
    openssl::rand::rand_bytes(&mut random).map_err(std::io::Error::other)?;
    Ok(format!("{TEMPORARY_PREFIX}{}", hex::encode(random)))
}

/// Writes a batch (see the module docs). `paths[i]` gets `bodies[i]`.
fn write_batch(root: &Path, paths: &[PathBuf], bodies: &[Bytes]) -> std::io::Result<Vec<Written>> {
    let mut results = vec![Written::AlreadyExisted; paths.len()];
    let mut seen = HashSet::with_capacity(paths.len());
    let todo: Vec<usize> = (0..paths.len())
        .filter(|&i| seen.insert(&paths[i]) && !paths[i].exists())
        .collect();
    if todo.is_empty() {
        return Ok(results);
    }
    let mut staged = Vec::with_capacity(todo.len());
    let outcome = write_durably(root, &todo, paths, bodies, &mut staged, &mut results);
    for (_, tmp) in &staged {
        let _ = std::fs::remove_file(tmp);
    }
    outcome.map(|()| results)
}

/// The temporary files written and closed one at a time, made durable with one `syncfs`, linked
/// to their names, and the names made durable with a second one. Every temporary file created is
/// in `staged` before anything else can fail, so the caller removes it.
fn write_durably(
    root: &Path,
    todo: &[usize],
    paths: &[PathBuf],
    bodies: &[Bytes],
    staged: &mut Vec<(usize, PathBuf)>,
    results: &mut [Written],
) -> std::io::Result<()> {
    let mut folders: HashSet<&Path> = HashSet::new();
    for &i in todo {
        let dir = paths[i]
            .parent()
            .expect("object names always have a folder");
        if folders.insert(dir) {
            std::fs::create_dir_all(dir)?;
        }
        let tmp = dir.join(temporary_name()?);
        let mut file = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&tmp)?;
        staged.push((i, tmp));
        file.write_all(&bodies[i])?;
    }
    sync_filesystem(root)?;
    for (i, tmp) in staged.iter() {
        match std::fs::hard_link(tmp, &paths[*i]) {
            Ok(()) => results[*i] = Written::Created,
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
            Err(e) => return Err(e),
        }
    }
    sync_filesystem(root)
}

/// `syncfs(2)` on the archive's filesystem: every dirty file, folder and inode on it reaches
/// the disk, and a writeback error since the last call is returned (Linux 5.8 and later).
fn sync_filesystem(root: &Path) -> std::io::Result<()> {
    use std::os::fd::AsRawFd;
    let dir = std::fs::File::open(root)?;
    // SAFETY: syncfs takes a valid open descriptor, which `dir` holds for the call.
    if unsafe { libc::syncfs(dir.as_raw_fd()) } == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}

/// Removes the temporary files ([`temporary_name`]) under `root`, at any depth, modified more
/// than `older_than` ago; a missing `root` holds none. Returns how many it removed.
pub(crate) fn sweep_temporaries_in(root: &Path, older_than: Duration) -> std::io::Result<usize> {
    let cutoff = SystemTime::now()
        .checked_sub(older_than)
        .unwrap_or(SystemTime::UNIX_EPOCH);
    let mut removed = 0;
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        let entries = match std::fs::read_dir(&dir) {
            Ok(e) => e,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(e) => return Err(e),
        };
        for entry in entries {
            let entry = entry?;
            let kind = entry.file_type()?;
            if kind.is_dir() {
                stack.push(entry.path());
                continue;
            }
            let stale = kind.is_file()
                && entry
                    .file_name()
                    .to_string_lossy()
                    .starts_with(TEMPORARY_PREFIX)
                && entry.metadata()?.modified()? < cutoff;
            if stale {
                match std::fs::remove_file(entry.path()) {
                    Ok(()) => removed += 1,
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                    Err(e) => return Err(e),
                }
            }
        }
    }
    Ok(removed)
}

fn list_files(root: &Path, kind: Kind) -> std::io::Result<Vec<ObjectName>> {
    let mut out = Vec::new();
    let mut stack = vec![root.join(kind.prefix())];
    while let Some(dir) = stack.pop() {
        let entries = match std::fs::read_dir(&dir) {
            Ok(e) => e,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(e) => return Err(e),
        };
        for entry in entries {
            let entry = entry?;
            let path = entry.path();
            if entry.file_type()?.is_dir() {
                stack.push(path);
            } else if let Ok(rel) = path.strip_prefix(root) {
                let rel = rel.to_string_lossy().replace('\\', "/");
                // Temporary files and anything not written by us are ignored.
                if let Some(name) = ObjectName::parse(&rel) {
                    out.push(name);
                }
            }
        }
    }
    out.sort();
    Ok(out)
}

#[async_trait::async_trait]
impl Archive for FsArchive {
    async fn put_if_absent(&self, name: &ObjectName, body: Bytes) -> Result<Written, ArchiveError> {
        let written = self.put_all_if_absent(vec![(name.clone(), body)]).await?;
        Ok(written[0])
    }

    async fn put_all_if_absent(
        &self,
        objects: Vec<(ObjectName, Bytes)>,
    ) -> Result<Vec<Written>, ArchiveError> {
        let root = self.root.clone();
        let paths: Vec<PathBuf> = objects.iter().map(|(n, _)| self.path_of(n)).collect();
        let (names, bodies): (Vec<ObjectName>, Vec<Bytes>) = objects.into_iter().unzip();
        let describe = || match names.as_slice() {
            [one] => one.to_string(),
            many => format!("{} objects from {}", many.len(), many[0]),
        };
        tokio::task::spawn_blocking(move || write_batch(&root, &paths, &bodies))
            .await
            .map_err(|e| ArchiveError::backend(describe(), e))?
            .map_err(|source| ArchiveError::Io {
                name: describe(),
                source,
            })
    }

    async fn exist_all(&self, names: &[ObjectName]) -> Result<Vec<bool>, ArchiveError> {
        let paths: Vec<PathBuf> = names.iter().map(|n| self.path_of(n)).collect();
        let first = names.first().map(ToString::to_string).unwrap_or_default();
        tokio::task::spawn_blocking(move || {
            paths
                .iter()
                .map(|p| p.try_exists())
                .collect::<std::io::Result<Vec<bool>>>()
        })
        .await
        .map_err(|e| ArchiveError::backend(first.clone(), e))?
        .map_err(|source| ArchiveError::Io {
            name: first,
            source,
        })
    }

    async fn get(&self, name: &ObjectName) -> Result<Option<Bytes>, ArchiveError> {
        match tokio::fs::read(self.path_of(name)).await {
            Ok(b) => Ok(Some(Bytes::from(b))),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(source) => Err(ArchiveError::Io {
                name: name.to_string(),
                source,
            }),
        }
    }

    async fn list(&self, kind: Kind) -> Result<Vec<ObjectName>, ArchiveError> {
        let root = self.root.clone();
        tokio::task::spawn_blocking(move || list_files(&root, kind))
            .await
            .map_err(|e| ArchiveError::backend(kind.prefix(), e))?
            .map_err(|source| ArchiveError::Io {
                name: kind.prefix().into(),
                source,
            })
    }

    fn location(&self) -> String {
        std::fs::canonicalize(&self.root)
            .unwrap_or_else(|_| self.root.clone())
            .display()
            .to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn temporaries(root: &Path) -> Vec<PathBuf> {
        let mut found = Vec::new();
        let mut stack = vec![root.to_path_buf()];
        while let Some(dir) = stack.pop() {
            for entry in std::fs::read_dir(&dir).unwrap() {
                let path = entry.unwrap().path();
                if path.is_dir() {
                    stack.push(path);
                } else if path
                    .file_name()
                    .unwrap()
                    .to_string_lossy()
                    .starts_with(TEMPORARY_PREFIX)
                {
                    found.push(path);
                }
            }
        }
        found
    }

    fn name(i: usize) -> ObjectName {
        ObjectName::new(Kind::Events, Some((2026, 1, 2)), "s", &format!("{i:04}"))
    }

    #[tokio::test]
    async fn a_large_batch_is_written_whole_and_once_per_name() {
        let dir = tempfile::tempdir().unwrap();
        let archive = FsArchive::open(dir.path()).await.unwrap();
        let count = 101;
        let mut objects: Vec<_> = (0..count)
            .map(|i| (name(i), Bytes::from(format!("{i}"))))
            .collect();
        // The same name again in one batch is written once; the copy is a duplicate.
        objects.push((name(7), Bytes::from_static(b"other")));
        let written = archive.put_all_if_absent(objects).await.unwrap();
        assert_eq!(
            written.iter().filter(|w| **w == Written::Created).count(),
            count
        );
        assert_eq!(written[count], Written::AlreadyExisted);
        assert_eq!(archive.list(Kind::Events).await.unwrap().len(), count);
        assert_eq!(archive.get(&name(7)).await.unwrap().unwrap(), "7");
        assert!(temporaries(dir.path()).is_empty());
    }

    #[tokio::test]
    async fn a_failed_batch_leaves_no_temporary_file() {
        let dir = tempfile::tempdir().unwrap();
        let archive = FsArchive::open(dir.path()).await.unwrap();
        // A later object's folder is blocked by a file: the batch fails after writing others.
        let blocked = ObjectName::new(Kind::Events, Some((2026, 1, 2)), "blocked", "x");
        std::fs::create_dir_all(dir.path().join("events/2026/01/02")).unwrap();
        std::fs::write(dir.path().join("events/2026/01/02/blocked"), b"").unwrap();
        let mut objects: Vec<_> = (0..35)
            .map(|i| (name(i), Bytes::from_static(b"{}")))
            .collect();
        objects.push((blocked, Bytes::from_static(b"{}")));
        assert!(archive.put_all_if_absent(objects).await.is_err());
        assert!(temporaries(dir.path()).is_empty());
    }

    #[tokio::test]
    async fn only_old_temporaries_are_swept() {
        let dir = tempfile::tempdir().unwrap();
        let archive = FsArchive::open(dir.path()).await.unwrap();
        let folder = dir.path().join("events/2026/01/02/s");
        std::fs::create_dir_all(&folder).unwrap();
        let old = folder.join(".tmp-1-0");
        let young = folder.join(".tmp-1-1");
        let object = folder.join("0001.json");
        for path in [&old, &young, &object] {
            std::fs::write(path, b"").unwrap();
        }
        let an_hour_ago = SystemTime::now() - Duration::from_secs(3600);
        for path in [&old, &object] {
            std::fs::File::options()
                .write(true)
                .open(path)
                .unwrap()
                .set_modified(an_hour_ago)
                .unwrap();
        }
        assert_eq!(
            archive
                .sweep_temporaries(STALE_TEMPORARY_AGE)
                .await
                .unwrap(),
            1
        );
        assert!(!old.exists());
        assert!(young.exists() && object.exists());
    }

    #[test]
    fn temporary_names_are_random() {
        let a = temporary_name().unwrap();
        let b = temporary_name().unwrap();
        assert_ne!(a, b);
        assert!(a.starts_with(TEMPORARY_PREFIX) && a.len() == TEMPORARY_PREFIX.len() + 32);
    }
}
