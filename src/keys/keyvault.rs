//! Azure Key Vault certificate source (being written).
use super::{DecryptionKey, KeyError};
pub struct KeyVaultSource;
impl KeyVaultSource {
    pub async fn load(&self) -> Result<Vec<DecryptionKey>, KeyError> {
        Err(KeyError::KeyVault("not yet".into()))
    }
}
