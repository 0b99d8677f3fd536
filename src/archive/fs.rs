//! Filesystem archive: the embedded default (`ARCHIVE_DIR`, else `./data/archive`).
//!
//! A write goes to a unique temporary file in the target folder, is fsynced, and is then
//! hard-linked to its final name. `link` fails if the name exists, so create-if-absent is atomic
//! even between processes, and a crash never leaves a half-written file under a final name
//! (only a `.tmp-*` file, which listings ignore).

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

fn write_new(path: &Path, body: &[u8]) -> std::io::Result<Written> {
    use std::io::Write;
    let dir = path.parent().expect("object names always have a folder");
    std::fs::create_dir_all(dir)?;
    let tmp = dir.join(format!(
        ".tmp-{}-{}",
        std::process::id(),
        TMP_COUNTER.fetch_add(1, Ordering::Relaxed)
    ));
    let result = (|| {
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&tmp)?;
        f.write_all(body)?;
        f.sync_all()?;
        match std::fs::hard_link(&tmp, path) {
            Ok(()) => {
                // Make the new directory entry durable too.
                if let Ok(d) = std::fs::File::open(dir) {
                    let _ = d.sync_all();
                }
                Ok(Written::Created)
            }
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(Written::AlreadyExisted),
            Err(e) => Err(e),
        }
    })();
    let _ = std::fs::remove_file(&tmp);
    result
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
        let path = self.path_of(name);
        if tokio::fs::try_exists(&path).await.unwrap_or(false) {
            return Ok(Written::AlreadyExisted);
        }
        tokio::task::spawn_blocking(move || write_new(&path, &body))
            .await
            .map_err(|e| ArchiveError::Backend {
                name: name.to_string(),
                reason: e.to_string(),
            })?
            .map_err(|source| ArchiveError::Io {
                name: name.to_string(),
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
