//! Rich notifications over Event Hubs' 1 MB limit.
//!
//! Graph then sends the item without `resource`, `resourceData` and `encryptedContent`, with an
//! `additionalPayloadStorageId` naming the blob (in the container the subscription's
//! `blobStoreUrl` points to) that holds those properties (Microsoft's "Receive change
//! notifications through Azure Event Hubs", "Receive rich notifications"). [`PayloadStore`]
//! reads that blob through the official `azure_storage_blob` client: with the app's credential
//! (managed identity, "Storage Blob Data Reader" on the container) or, for a URL carrying a SAS
//! (Azurite in tests), with no credential. [`complete`] puts the properties back into the item,
//! which then goes through the usual decryption.
//!
//! The item keeps its identity: its archive name is the hash of the item as received (with the
//! storage id), whether the payload was fetched on arrival or by a later replay.

use std::sync::Arc;

use azure_core::credentials::TokenCredential;
use azure_core::http::{StatusCode, Transport, Url};
use azure_storage_blob::BlobContainerClient;
use azure_storage_blob::models::BlobClientDownloadOptions;
use secrecy::SecretString;
use serde::Deserialize;
use serde_json::Value;

use crate::archive::StorageError;
use crate::archive::blob::client_options;
use crate::archive::sas::SasPolicy;
use crate::graph::notification::{ChangeNotification, EncryptedContent};

/// The property Graph puts in place of the payload.
pub const STORAGE_ID: &str = "additionalPayloadStorageId";
/// Largest payload blob read (Graph's large notifications are a few MB; this bounds memory).
pub const MAX_PAYLOAD_BYTES: usize = 32 * 1024 * 1024;

/// The storage id of an item whose payload Graph stored in a blob, if it is such an item.
pub fn storage_id(item: &ChangeNotification) -> Option<&str> {
    if item.encrypted_content.is_some() {
        return None;
    }
    item.extra.get(STORAGE_ID).and_then(Value::as_str)
}

/// The properties held in the payload blob.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct LargePayload {
    #[serde(default)]
    pub resource: Option<String>,
    #[serde(default)]
    pub resource_data: Option<Value>,
    pub encrypted_content: EncryptedContent,
}

/// Why a payload could not be had. Each has a stable [`code`](FetchError::code), written into the
/// quarantine record so that a replay knows what it is finishing.
#[derive(Debug, thiserror::Error)]
pub enum FetchError {
    #[error("the payload is in blob storage and EVENTHUB_PAYLOAD_CONTAINER_URL is not configured")]
    NotConfigured,
    #[error("additionalPayloadStorageId is not a usable blob name")]
    BadId,
    #[error("the payload blob does not exist (yet)")]
    NotFound,
    #[error("the payload blob is larger than {MAX_PAYLOAD_BYTES} bytes")]
    TooLarge,
    #[error("the payload blob could not be read: {0}")]
    Unavailable(#[source] StorageError),
    #[error("the payload blob is not the properties of a rich notification")]
    Invalid(#[source] serde_json::Error),
}

impl FetchError {
    pub fn code(&self) -> &'static str {
        match self {
            FetchError::NotConfigured => "additionalPayloadNotConfigured",
            FetchError::BadId => "additionalPayloadBadId",
            FetchError::NotFound => "additionalPayloadNotFound",
            FetchError::TooLarge => "additionalPayloadTooLarge",
            FetchError::Unavailable(_) => "additionalPayloadUnavailable",
            FetchError::Invalid(_) => "additionalPayloadInvalid",
        }
    }
}

/// A configuration error of `EVENTHUB_PAYLOAD_CONTAINER_URL`.
#[derive(Debug, thiserror::Error)]
#[error("EVENTHUB_PAYLOAD_CONTAINER_URL: {0}")]
pub struct PayloadStoreConfigError(String);

/// The container Graph writes large payloads to.
pub struct PayloadStore {
    container: BlobContainerClient,
}

impl PayloadStore {
    /// `url` is the container URL. With a query (a SAS) no credential is used; without one the
    /// URL must be https and `credential` signs the requests.
    pub fn new(
        url: &str,
        credential: Option<Arc<dyn TokenCredential>>,
        transport: Option<Transport>,
    ) -> Result<Self, PayloadStoreConfigError> {
        let err = |m: &str| PayloadStoreConfigError(m.to_string());
        let mut url = Url::parse(url.trim()).map_err(|_| err("not a URL"))?;
        let sas = url
            .query()
            .map(|q| SasPolicy::fixed(&SecretString::from(q.to_string())));
        url.set_query(None);
        let credential = match (&sas, credential) {
            (Some(_), _) => None,
            (None, Some(c)) if url.scheme() == "https" => Some(c),
            (None, Some(_)) => return Err(err("a URL without SAS must be https")),
            (None, None) => return Err(err("a URL without SAS needs the app's credential")),
        };
        let container =
            BlobContainerClient::new(url, credential, Some(client_options(sas, transport)))
                .map_err(|_| err("cannot make a container client"))?;
        Ok(PayloadStore { container })
    }

    /// Reads the payload blob named `id`.
    pub async fn fetch(&self, id: &str) -> Result<LargePayload, FetchError> {
        let bad_segment = |s: &str| s.is_empty() || s == "." || s == "..";
        if id.len() > 1024 || id.split('/').any(bad_segment) || id.chars().any(char::is_control) {
            return Err(FetchError::BadId);
        }
        let blob = self.container.blob_client(id);
        // A bounded range: a huge blob costs at most one byte more than the limit.
        let options = BlobClientDownloadOptions {
            range: Some((0..MAX_PAYLOAD_BYTES as u64 + 1).into()),
            ..Default::default()
        };
        let response = match blob.download(Some(options)).await {
            Ok(r) => r,
            Err(e) if e.http_status() == Some(StatusCode::NotFound) => {
                return Err(FetchError::NotFound);
            }
            Err(e) => return Err(FetchError::Unavailable(StorageError::new(e))),
        };
        let body = response
            .body
            .collect()
            .await
            .map_err(|e| FetchError::Unavailable(StorageError::new(e)))?;
        if body.len() > MAX_PAYLOAD_BYTES {
            return Err(FetchError::TooLarge);
        }
        serde_json::from_slice(&body).map_err(FetchError::Invalid)
    }
}

/// The item with the fetched properties in place (the storage id stays, for the record).
pub fn complete(item: &ChangeNotification, payload: LargePayload) -> ChangeNotification {
    let mut full = item.clone();
    if payload.resource.is_some() {
        full.resource = payload.resource;
    }
    if payload.resource_data.is_some() {
        full.resource_data = payload.resource_data;
    }
    full.encrypted_content = Some(payload.encrypted_content);
    full
}

/// Fetches the payload of `item` when it has one, with `store` if configured.
pub async fn resolve(
    store: Option<&PayloadStore>,
    item: &ChangeNotification,
) -> Option<Result<ChangeNotification, FetchError>> {
    let id = storage_id(item)?;
    Some(match store {
        None => Err(FetchError::NotConfigured),
        Some(store) => store.fetch(id).await.map(|p| complete(item, p)),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::graph::notification::parse_collection;

    #[test]
    fn items_with_a_storage_id_are_recognized_and_completed() {
        let c = parse_collection(br#"{"value":[{"subscriptionId":"s","changeType":"created","additionalPayloadStorageId":"p/123"},{"subscriptionId":"s","additionalPayloadStorageId":"x","encryptedContent":{"data":"d"}}]}"#).unwrap();
        assert_eq!(storage_id(&c.value[0]), Some("p/123"));
        assert_eq!(
            storage_id(&c.value[1]),
            None,
            "content present: nothing to fetch"
        );
        let payload: LargePayload = serde_json::from_str(r#"{"resource":"chats('1')/messages('2')","resourceData":{"id":"2"},"encryptedContent":{"data":"d","dataKey":"k","dataSignature":"s","encryptionCertificateId":"c"}}"#).unwrap();
        let full = complete(&c.value[0], payload);
        assert!(full.is_rich());
        assert_eq!(full.resource.as_deref(), Some("chats('1')/messages('2')"));
        assert_eq!(storage_id(&full), None);
        assert!(full.extra.contains_key(STORAGE_ID));
    }

    #[tokio::test]
    async fn without_a_store_the_reason_is_not_configured() {
        let c = parse_collection(
            br#"{"value":[{"subscriptionId":"s","additionalPayloadStorageId":"p"}]}"#,
        )
        .unwrap();
        let e = resolve(None, &c.value[0]).await.unwrap().unwrap_err();
        assert_eq!(e.code(), "additionalPayloadNotConfigured");
        let plain = parse_collection(br#"{"value":[{"subscriptionId":"s"}]}"#).unwrap();
        assert!(resolve(None, &plain.value[0]).await.is_none());
    }

    #[test]
    fn configuration_is_checked() {
        assert!(PayloadStore::new("nope", None, None).is_err());
        assert!(PayloadStore::new("http://127.0.0.1:1/c", None, None).is_err());
        assert!(PayloadStore::new("http://127.0.0.1:1/c?sv=1&sig=x", None, None).is_ok());
    }
}
