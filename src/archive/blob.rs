//! Azure Blob archive backend (being written).
use super::*;
use secrecy::SecretString;
pub struct BlobArchive;
impl BlobArchive {
    pub async fn from_connection_string(
        _c: &SecretString,
        _container: &str,
    ) -> Result<Self, ArchiveError> {
        Err(ArchiveError::Config("not yet".into()))
    }
    pub async fn from_account_url(_u: &str, _container: &str) -> Result<Self, ArchiveError> {
        Err(ArchiveError::Config("not yet".into()))
    }
}
#[async_trait::async_trait]
impl Archive for BlobArchive {
    async fn put_if_absent(&self, _n: &ObjectName, _b: Bytes) -> Result<Written, ArchiveError> {
        unimplemented!()
    }
    async fn get(&self, _n: &ObjectName) -> Result<Option<Bytes>, ArchiveError> {
        unimplemented!()
    }
    async fn list(&self, _k: Kind) -> Result<Vec<ObjectName>, ArchiveError> {
        unimplemented!()
    }
    fn location(&self) -> String {
        String::new()
    }
}
