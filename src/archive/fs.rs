//! Filesystem archive: the embedded default (`ARCHIVE_DIR`, else `./data/archive`).
//!
//! A write goes to a unique temporary file in the target folder, is fsynced, and is then
//! hard-linked to its final name. `link` fails if the name exists, so create-if-absent is atomic
//! even between processes, and a crash never leaves a half-written file under a final name
//! (only a `.tmp-*` file, which listings ignore).
//!
//! A request's objects are written as one batch by one thread: all temporary files first, then
//! their fsyncs (the first commits the journal for all of them, the rest find them clean), then
//! the links, then one fsync per folder. Parallel writers in one folder would mostly contend
//! on the folder's lock, and a sync per file would pay a journal commit per file.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use bytes::Bytes;

use super::{Archive, ArchiveError, Kind, ObjectName, Written};

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
}

static TMP_COUNTER: AtomicU64 = AtomicU64::new(0);

/// Writes a batch (see the module docs). `paths[i]` gets `bodies[i]`.
fn write_batch(paths: &[PathBuf], bodies: &[Bytes]) -> std::io::Result<Vec<Written>> {
    use std::io::Write;
    let mut results = vec![Written::AlreadyExisted; paths.len()];
    let mut folders: Vec<&Path> = Vec::new();
    let mut staged: Vec<(usize, PathBuf, std::fs::File)> = Vec::with_capacity(paths.len());
    let outcome = (|| {
        for (i, (path, body)) in paths.iter().zip(bodies).enumerate() {
            if path.exists() {
                continue;
            }
            let dir = path.parent().expect("object names always have a folder");
            if !folders.contains(&dir) {
                std::fs::create_dir_all(dir)?;
                folders.push(dir);
            }
            let tmp = dir.join(format!(
                ".tmp-{}-{}",
                std::process::id(),
                TMP_COUNTER.fetch_add(1, Ordering::Relaxed)
            ));
            let mut f = std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .open(&tmp)?;
            staged.push((i, tmp, f.try_clone()?));
            f.write_all(body)?;
        }
        for (_, _, f) in &staged {
            f.sync_all()?;
        }
        for (i, tmp, _) in &staged {
            match std::fs::hard_link(tmp, &paths[*i]) {
                Ok(()) => results[*i] = Written::Created,
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
                Err(e) => return Err(e),
            }
        }
        // Make the new directory entries durable too.
        for dir in &folders {
            std::fs::File::open(dir)?.sync_all()?;
        }
        Ok(())
    })();
    for (_, tmp, _) in &staged {
        let _ = std::fs::remove_file(tmp);
    }
    outcome.map(|()| results)
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
        let paths: Vec<PathBuf> = objects.iter().map(|(n, _)| self.path_of(n)).collect();
        let (names, bodies): (Vec<ObjectName>, Vec<Bytes>) = objects.into_iter().unzip();
        let describe = || match names.as_slice() {
            [one] => one.to_string(),
            many => format!("{} objects from {}", many.len(), many[0]),
        };
        tokio::task::spawn_blocking(move || write_batch(&paths, &bodies))
            .await
            .map_err(|e| ArchiveError::Backend {
                name: describe(),
                reason: e.to_string(),
            })?
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
        .map_err(|e| ArchiveError::Backend {
            name: first.clone(),
            reason: e.to_string(),
        })?
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
            .map_err(|e| ArchiveError::Backend {
                name: kind.prefix().into(),
                reason: e.to_string(),
            })?
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
