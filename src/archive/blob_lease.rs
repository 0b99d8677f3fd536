//! Blob leases ("Lease Blob" in the Storage REST docs) for [`super::lease`]: the lease `name` is
//! held on the empty blob `leases/{name}` of the archive's container, made on first use. A
//! lease Storage refuses with 409 `LeaseAlreadyPresent` is held by someone else.

use std::time::Duration;

use azure_core::http::StatusCode;
use azure_storage_blob::BlobClient;
use azure_storage_blob::models::{
    BlobClientAcquireLeaseResultHeaders as _, BlobClientUploadOptions, StorageErrorCode,
};

use super::ArchiveError;
use super::StorageError;
use super::blob::{BlobArchive, has_code};
use super::lease::{HeldLease, LeaseName, LeaseStore};

/// Storage's bounds on a lease's duration, in seconds.
const MIN_LEASE_S: u64 = 15;
const MAX_LEASE_S: u64 = 60;

fn blob_name(name: &LeaseName) -> String {
    format!("leases/{name}")
}

fn backend(name: &LeaseName, e: azure_core::Error) -> ArchiveError {
    ArchiveError::backend(blob_name(name), StorageError::new(e))
}

impl BlobArchive {
    /// Makes the empty lease blob unless it exists (a leased blob refuses the write: it exists).
    async fn create_lease_blob(
        &self,
        blob: &BlobClient,
        name: &LeaseName,
    ) -> Result<(), ArchiveError> {
        let options = BlobClientUploadOptions::default().if_not_exists();
        match blob.upload(bytes::Bytes::new().into(), Some(options)).await {
            Ok(_) => Ok(()),
            Err(e)
                if has_code(&e, StorageErrorCode::BlobAlreadyExists)
                    || has_code(&e, StorageErrorCode::ConditionNotMet)
                    || has_code(&e, StorageErrorCode::LeaseIdMissing) =>
            {
                Ok(())
            }
            Err(e) => Err(backend(name, e)),
        }
    }
}

#[async_trait::async_trait]
impl LeaseStore for BlobArchive {
    async fn try_acquire(
        &self,
        name: &LeaseName,
        ttl: Duration,
    ) -> Result<Option<Box<dyn HeldLease>>, ArchiveError> {
        let blob = self.container.blob_client(&blob_name(name));
        let seconds = ttl.as_secs().clamp(MIN_LEASE_S, MAX_LEASE_S) as i32;
        let mut result = blob.acquire_lease(seconds, None).await;
        if matches!(&result, Err(e) if e.http_status() == Some(StatusCode::NotFound)) {
            self.create_lease_blob(&blob, name).await?;
            result = blob.acquire_lease(seconds, None).await;
        }
        let response = match result {
            Ok(r) => r,
            Err(e) if has_code(&e, StorageErrorCode::LeaseAlreadyPresent) => return Ok(None),
            Err(e) => return Err(backend(name, e)),
        };
        let lease_id = response
            .lease_id()
            .map_err(|e| backend(name, e))?
            .ok_or_else(|| {
                ArchiveError::backend(
                    blob_name(name),
                    "Storage granted a lease without an x-ms-lease-id",
                )
            })?;
        Ok(Some(Box::new(BlobLease {
            blob,
            name: name.clone(),
            lease_id,
        })))
    }
}

struct BlobLease {
    blob: BlobClient,
    name: LeaseName,
    lease_id: String,
}

#[async_trait::async_trait]
impl HeldLease for BlobLease {
    async fn renew(&self) -> Result<(), ArchiveError> {
        self.blob
            .renew_lease(self.lease_id.clone(), None)
            .await
            .map(|_| ())
            .map_err(|e| backend(&self.name, e))
    }

    async fn release(&self) -> Result<(), ArchiveError> {
        self.blob
            .release_lease(self.lease_id.clone(), None)
            .await
            .map(|_| ())
            .map_err(|e| backend(&self.name, e))
    }
}
