//! Azure Blob archive backend, through the official `azure_storage_blob` crate.
//!
//! One container holds the whole archive; an [`ObjectName`] is the blob name (its `/` make
//! virtual folders). A write is one `Put Blob` with `If-None-Match: *`: Storage creates the blob
//! atomically or answers 409 `BlobAlreadyExists`, which is [`Written::AlreadyExisted`].
//!
//! Two ways in:
//! - a connection string ([`BlobArchive::from_connection_string`]): an `AccountKey` is turned
//!   into account SAS tokens ([`super::sas`]), a `SharedAccessSignature` is used as is; either
//!   way requests carry a SAS and no credential, so plain-http Azurite works;
//! - an account URL with a token credential ([`BlobArchive::from_account_url_with_credential`]),
//!   managed identity in production. Bearer tokens need https (azure_core refuses them on http).
//!
//! The archive is on Graph's hot path (Graph wants an answer within 3 s, and a 503 makes it
//! retry): retries are few and short and every try has a deadline, so a dead or stuck storage
//! account fails in seconds and the caller answers 503 instead of hanging.
//!
//! Errors carry the SDK's error as their source, wrapped in a [`StorageError`] that shows the
//! HTTP status and Storage error code, never a URL: the SDK's transport errors carry the request
//! URL, SAS signature included, in their text and source chain.

use std::num::{NonZeroU32, NonZeroU64};
use std::sync::Arc;
use std::time::Duration;

use azure_core::credentials::TokenCredential;
use azure_core::error::ErrorKind;
use azure_core::http::policies::{Policy, PolicyResult};
use azure_core::http::{
    ClientOptions, Context, ExponentialRetryOptions, Request, RetryOptions, StatusCode, Transport,
    Url,
};
use azure_storage_blob::models::{
    BlobClientUploadOptions, BlobContainerClientListBlobsOptions, StorageErrorCode,
};
use azure_storage_blob::{BlobContainerClient, BlobContainerClientOptions};
use bytes::Bytes;
use futures::{StreamExt as _, TryStreamExt as _};
use secrecy::{ExposeSecret, SecretString};

use super::connection_string::{ConnectionString, StorageAuth};
use super::sas::SasPolicy;
use super::storage_error::StorageError;
use super::{Archive, ArchiveError, Kind, ObjectName, Written};

/// Deadline of one HTTP try (connect, send, response head). Small objects take milliseconds;
/// a try that takes this long is a stuck service, better retried or reported.
const TRY_TIMEOUT: Duration = Duration::from_secs(5);

/// Bounded retries: ~0.1 s, ~0.2 s, ~0.4 s (+ jitter), and no new try 2 s after the first
/// failure. A refused connection fails in about 1–2 s, a stuck service in about
/// `TRY_TIMEOUT` + 2 s + `TRY_TIMEOUT` at worst.
fn retry_options() -> RetryOptions {
    RetryOptions::exponential(ExponentialRetryOptions {
        initial_delay: azure_core::time::Duration::milliseconds(100),
        max_retries: 3,
        max_total_elapsed: azure_core::time::Duration::seconds(2),
        max_delay: azure_core::time::Duration::seconds(1),
    })
}

/// Uploads (or `HEAD`s) in flight for one request. A rich batch of 100 is 101 objects; one
/// connection per upload in flight. Measured against Azurite (BENCHMARKS.md, "The Blob path"):
/// CHOSEN_BELOW
pub const UPLOADS_PER_REQUEST: usize = 16;

/// Objects up to this size are written with a single `Put Blob`; notification bodies are capped
/// far below it (`MAX_BODY_BYTES`, 4 MiB by default).
const SINGLE_PUT_LIMIT: NonZeroU64 = NonZeroU64::new(256 * 1024 * 1024).unwrap();

/// The Blob archive. Cheap to share (`Arc<dyn Archive>`); the HTTP connection pool is reused.
pub struct BlobArchive {
    /// The container client; blob clients are derived per request.
    pub(super) container: Arc<BlobContainerClient>,
    /// The container URL without query, for people and logs.
    location: String,
    /// `maxresults` of a listing page; `None` = the service default (5000).
    list_page_size: Option<NonZeroU32>,
    /// Uploads in flight per request ([`UPLOADS_PER_REQUEST`] unless a benchmark sets it).
    uploads_in_flight: usize,
}

impl BlobArchive {
    /// Opens the archive described by a storage connection string (`ARCHIVE_CONNECTION`),
    /// creating `container` if missing. `UseDevelopmentStorage=true` means Azurite on
    /// `127.0.0.1:10000`.
    pub async fn from_connection_string(
        connection_string: &SecretString,
        container: &str,
    ) -> Result<Self, ArchiveError> {
        Self::from_connection_string_with(connection_string, container, None).await
    }

    /// [`BlobArchive::from_connection_string`], sending through `transport` (the app's one HTTP
    /// client, so Blob shares its connection pool and trusted roots) instead of a client of its
    /// own.
    pub async fn from_connection_string_with(
        connection_string: &SecretString,
        container: &str,
        transport: Option<Transport>,
    ) -> Result<Self, ArchiveError> {
        let parsed = ConnectionString::parse(connection_string.expose_secret())?;
        let url = container_url(&parsed.blob_endpoint, container)?;
        let sas = match parsed.auth {
            StorageAuth::AccountKey(key) => SasPolicy::signed(key, url.scheme() == "https"),
            StorageAuth::Sas(token) => SasPolicy::fixed(&token),
        };
        let client =
            BlobContainerClient::new(url, None, Some(client_options(Some(sas), transport)))
                .map_err(|e| ArchiveError::setting("blob container client", e))?;
        Self::open(client).await
    }

    /// Opens the archive at `account_url` (`ARCHIVE_ACCOUNT_URL`, e.g.
    /// `https://acct.blob.core.windows.net`) with a token credential (the Function App's managed
    /// identity in production, see `identity`; scope
    /// `https://storage.azure.com/.default`; the identity needs "Storage Blob Data Contributor").
    pub async fn from_account_url_with_credential(
        account_url: &str,
        container: &str,
        credential: Arc<dyn TokenCredential>,
        transport: Option<Transport>,
    ) -> Result<Self, ArchiveError> {
        let endpoint = Url::parse(account_url.trim())
            .map_err(|e| ArchiveError::setting("ARCHIVE_ACCOUNT_URL is not a URL", e))?;
        if endpoint.scheme() != "https" || endpoint.host_str().is_none() {
            return Err(ArchiveError::Config(
                "ARCHIVE_ACCOUNT_URL must be an https URL (tokens are never sent over http); \
                 for Azurite use ARCHIVE_CONNECTION"
                    .into(),
            ));
        }
        if endpoint.query().is_some() || endpoint.fragment().is_some() {
            return Err(ArchiveError::Config(
                "ARCHIVE_ACCOUNT_URL must not carry a query; a SAS belongs in ARCHIVE_CONNECTION \
                 as SharedAccessSignature"
                    .into(),
            ));
        }
        let url = container_url(&endpoint, container)?;
        let client =
            BlobContainerClient::new(url, Some(credential), Some(client_options(None, transport)))
                .map_err(|e| ArchiveError::setting("blob container client", e))?;
        Self::open(client).await
    }

    /// Lists in pages of `size` blobs instead of the service default (5000).
    pub fn with_list_page_size(mut self, size: NonZeroU32) -> Self {
        self.list_page_size = Some(size);
        self
    }

    /// At most `n` (at least 1) uploads or `HEAD`s in flight per request.
    pub fn with_uploads_in_flight(mut self, n: usize) -> Self {
        self.uploads_in_flight = n.max(1);
        self
    }

    /// Makes the archive and its container. Storage refusing the identity (401/403, or no
    /// token yet: a role assignment just made takes minutes to apply) does not stop the start:
    /// the archive is returned, every write fails (the receiver answers 503, Graph retries) until
    /// storage takes it, and the container is tried again in the background with backoff (a
    /// write that finds it missing also makes it). Any other failure is returned.
    async fn open(container: BlobContainerClient) -> Result<Self, ArchiveError> {
        let mut location = container.url().clone();
        location.set_query(None);
        let archive = BlobArchive {
            container: Arc::new(container),
            location: location.to_string(),
            list_page_size: None,
            uploads_in_flight: UPLOADS_PER_REQUEST,
        };
        match create_container(&archive.container).await {
            Ok(()) => tracing::info!(location = %archive.location, "blob archive ready"),
            Err(e) if is_refused(&e) => {
                tracing::error!(
                    location = %archive.location,
                    error = %StorageError::during("cannot create or open the container", e),
                    "the archive's storage refuses this identity (a role assignment not applied yet, or missing): the handler starts anyway, answers 503 to notifications until storage takes writes (Graph retries them), and tries the container again in the background"
                );
                let (container, location) = (archive.container.clone(), archive.location.clone());
                tokio::spawn(retry_container(container, location));
            }
            Err(e) => return Err(archive.container_error(e)),
        }
        Ok(archive)
    }

    async fn create_container_if_missing(&self) -> Result<(), ArchiveError> {
        create_container(&self.container)
            .await
            .map_err(|e| self.container_error(e))
    }

    fn container_error(&self, e: azure_core::Error) -> ArchiveError {
        ArchiveError::Backend {
            name: self.location.clone(),
            source: Box::new(StorageError::during(
                "cannot create or open the container",
                e,
            )),
        }
    }

    async fn exists(&self, name: &ObjectName) -> Result<bool, ArchiveError> {
        self.container
            .blob_client(name.as_str())
            .exists()
            .await
            .map_err(|e| ArchiveError::backend(name.to_string(), StorageError::new(e)))
    }

    async fn put_owned(&self, name: ObjectName, body: Bytes) -> Result<Written, ArchiveError> {
        self.put_if_absent(&name, body).await
    }

    async fn upload(&self, name: &ObjectName, body: Bytes) -> azure_core::Result<()> {
        let options = BlobClientUploadOptions {
            blob_content_type: Some("application/json".into()),
            // One `Put Blob` whatever the size (it takes up to 5000 MiB): no staged blocks left
            // behind by a losing concurrent writer, one request on the hot path.
            partition_size: Some(SINGLE_PUT_LIMIT),
            ..Default::default()
        }
        .if_not_exists();
        self.container
            .blob_client(name.as_str())
            .upload(body.into(), Some(options))
            .await
            .map(|_| ())
    }
}

#[async_trait::async_trait]
impl Archive for BlobArchive {
    async fn put_if_absent(&self, name: &ObjectName, body: Bytes) -> Result<Written, ArchiveError> {
        let mut result = self.upload(name, body.clone()).await;
        if matches!(&result, Err(e) if has_code(e, StorageErrorCode::ContainerNotFound)) {
            // Someone deleted the container: make it again rather than fail every write
            // until a restart.
            tracing::warn!(location = %self.location, "archive container vanished; recreating it");
            self.create_container_if_missing().await?;
            result = self.upload(name, body).await;
        }
        match result {
            Ok(()) => Ok(Written::Created),
            Err(e)
                if has_code(&e, StorageErrorCode::BlobAlreadyExists)
                    || has_code(&e, StorageErrorCode::ConditionNotMet) =>
            {
                Ok(Written::AlreadyExisted)
            }
            Err(e) => Err(ArchiveError::backend(
                name.to_string(),
                StorageError::new(e),
            )),
        }
    }

    /// One `Get Blob Properties` (`HEAD`) per name, at most `uploads_in_flight` at a time.
    async fn exist_all(&self, names: &[ObjectName]) -> Result<Vec<bool>, ArchiveError> {
        let checks: Vec<_> = names.iter().map(|name| self.exists(name)).collect();
        futures::stream::iter(checks)
            .buffered(self.uploads_in_flight)
            .try_collect()
            .await
    }

    /// A request's objects, at most `uploads_in_flight` uploads at a time.
    async fn put_all_if_absent(
        &self,
        objects: Vec<(ObjectName, Bytes)>,
    ) -> Result<Vec<Written>, ArchiveError> {
        let puts: Vec<_> = objects
            .into_iter()
            .map(|(name, body)| self.put_owned(name, body))
            .collect();
        futures::stream::iter(puts)
            .buffered(self.uploads_in_flight)
            .try_collect()
            .await
    }

    async fn get(&self, name: &ObjectName) -> Result<Option<Bytes>, ArchiveError> {
        let backend =
            |e: azure_core::Error| ArchiveError::backend(name.to_string(), StorageError::new(e));
        let response = match self
            .container
            .blob_client(name.as_str())
            .download(None)
            .await
        {
            Ok(r) => r,
            Err(e) if e.http_status() == Some(StatusCode::NotFound) => return Ok(None),
            Err(e) => return Err(backend(e)),
        };
        response.body.collect().await.map(Some).map_err(backend)
    }

    async fn list(&self, kind: Kind) -> Result<Vec<ObjectName>, ArchiveError> {
        let backend =
            |e: azure_core::Error| ArchiveError::backend(kind.prefix(), StorageError::new(e));
        let options = BlobContainerClientListBlobsOptions {
            prefix: Some(format!("{}/", kind.prefix())),
            maxresults: self
                .list_page_size
                .map(|n| i32::try_from(n.get()).unwrap_or(i32::MAX)),
            ..Default::default()
        };
        let mut blobs = self.container.list_blobs(Some(options)).map_err(&backend)?;
        let mut names = Vec::new();
        while let Some(blob) = blobs.try_next().await.map_err(&backend)? {
            // Anything not written by us (a stray upload by hand) is ignored, as on disk.
            if let Some(name) = blob.name.as_deref().and_then(ObjectName::parse) {
                names.push(name);
            }
        }
        names.sort();
        Ok(names)
    }

    fn location(&self) -> String {
        self.location.clone()
    }
}

/// `endpoint` + `/container`, after checking the container name against Azure's rules.
fn container_url(endpoint: &Url, container: &str) -> Result<Url, ArchiveError> {
    let valid = (3..=63).contains(&container.len())
        && container
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !container.starts_with('-')
        && !container.ends_with('-')
        && !container.contains("--");
    if !valid {
        return Err(ArchiveError::Config(format!(
            "ARCHIVE_CONTAINER {container:?}: 3 to 63 lowercase letters, digits and single \
             hyphens, starting and ending with a letter or digit"
        )));
    }
    let mut url = endpoint.clone();
    url.set_query(None);
    url.path_segments_mut()
        .map_err(|()| ArchiveError::Config("the Blob endpoint cannot be a base URL".into()))?
        .pop_if_empty()
        .push(container);
    Ok(url)
}

pub(crate) fn client_options(
    sas: Option<SasPolicy>,
    transport: Option<Transport>,
) -> BlobContainerClientOptions {
    let mut per_call_policies: Vec<Arc<dyn Policy>> = Vec::new();
    if let Some(sas) = sas {
        per_call_policies.push(Arc::new(sas));
    }
    BlobContainerClientOptions {
        client_options: ClientOptions {
            per_call_policies,
            per_try_policies: vec![Arc::new(TryTimeout(TRY_TIMEOUT))],
            retry: retry_options(),
            transport,
            ..Default::default()
        },
        ..Default::default()
    }
}

/// Gives each try a deadline. A timeout is an I/O error, which the retry policy retries.
#[derive(Debug)]
struct TryTimeout(Duration);

#[async_trait::async_trait]
impl Policy for TryTimeout {
    async fn send(
        &self,
        ctx: &Context,
        request: &mut Request,
        next: &[Arc<dyn Policy>],
    ) -> PolicyResult {
        match tokio::time::timeout(self.0, next[0].send(ctx, request, &next[1..])).await {
            Ok(result) => result,
            Err(_) => Err(azure_core::Error::with_message(
                ErrorKind::Io,
                format!("no answer within {} s", self.0.as_secs()),
            )),
        }
    }
}

/// Creates the container; one that exists already is fine.
async fn create_container(container: &BlobContainerClient) -> azure_core::Result<()> {
    match container.create(None).await {
        Ok(_) => Ok(()),
        Err(e) if has_code(&e, StorageErrorCode::ContainerAlreadyExists) => Ok(()),
        Err(e) => Err(e),
    }
}

/// Storage refused the caller (401, 403) or no token could be had: what a role assignment or
/// identity that has not propagated yet looks like, and what time may fix.
fn is_refused(e: &azure_core::Error) -> bool {
    matches!(e.kind(), ErrorKind::Credential)
        || matches!(
            e.http_status(),
            Some(StatusCode::Unauthorized | StatusCode::Forbidden)
        )
}

/// First wait of [`retry_container`], doubled after each failure up to the last.
const CONTAINER_RETRY_FIRST: Duration = Duration::from_secs(5);
const CONTAINER_RETRY_MAX: Duration = Duration::from_secs(300);

/// Tries the container until storage takes it (5 s, 10 s, 20 s ... then every 5 minutes).
async fn retry_container(container: Arc<BlobContainerClient>, location: String) {
    let mut wait = CONTAINER_RETRY_FIRST;
    for attempt in 1u32.. {
        tokio::time::sleep(wait).await;
        match create_container(&container).await {
            Ok(()) => {
                tracing::info!(%location, attempt, "blob archive ready: storage accepts this identity now");
                return;
            }
            Err(e) => tracing::warn!(
                %location,
                attempt,
                error = %StorageError::during("cannot create or open the container", e),
                next_s = (wait * 2).min(CONTAINER_RETRY_MAX).as_secs(),
                "the archive's storage still refuses this identity; notifications are answered 503 meanwhile"
            ),
        }
        wait = (wait * 2).min(CONTAINER_RETRY_MAX);
    }
}

pub(super) fn has_code(e: &azure_core::Error, code: StorageErrorCode) -> bool {
    matches!(e.kind(), ErrorKind::HttpResponse { error_code: Some(c), .. } if c == code.as_ref())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn container_url_appends_one_segment() {
        let endpoint = Url::parse("http://127.0.0.1:10000/devstoreaccount1").unwrap();
        assert_eq!(
            container_url(&endpoint, "teams-notifications")
                .unwrap()
                .as_str(),
            "http://127.0.0.1:10000/devstoreaccount1/teams-notifications"
        );
        let endpoint = Url::parse("https://acct.blob.core.windows.net/").unwrap();
        assert_eq!(
            container_url(&endpoint, "abc").unwrap().as_str(),
            "https://acct.blob.core.windows.net/abc"
        );
    }

    #[test]
    fn container_names_follow_azure_rules() {
        let endpoint = Url::parse("https://acct.blob.core.windows.net").unwrap();
        for bad in [
            "ab",
            "Upper",
            "a--b",
            "-ab",
            "ab-",
            "a/b",
            "a_b",
            &"a".repeat(64),
        ] {
            assert!(
                matches!(container_url(&endpoint, bad), Err(ArchiveError::Config(_))),
                "{bad}"
            );
        }
        for good in ["abc", "a-b-c", "0archive", &"a".repeat(63)] {
            assert!(container_url(&endpoint, good).is_ok(), "{good}");
        }
    }

    #[tokio::test]
    async fn account_url_must_be_https_without_query() {
        #[derive(Debug)]
        struct NoToken;
        #[async_trait::async_trait]
        impl TokenCredential for NoToken {
            async fn get_token(
                &self,
                _scopes: &[&str],
                _options: Option<azure_core::credentials::TokenRequestOptions<'_>>,
            ) -> azure_core::Result<azure_core::credentials::AccessToken> {
                Err(azure_core::Error::with_message(
                    ErrorKind::Credential,
                    "test credential has no token",
                ))
            }
        }
        for (url, expected) in [
            (
                "http://127.0.0.1:10000/devstoreaccount1",
                "must be an https URL",
            ),
            (
                "https://acct.blob.core.windows.net?sv=1&sig=x",
                "must not carry a query",
            ),
            ("not a url", "is not a URL"),
        ] {
            let result = BlobArchive::from_account_url_with_credential(
                url,
                "archive",
                Arc::new(NoToken),
                None,
            )
            .await;
            match result {
                Err(e @ (ArchiveError::Config(_) | ArchiveError::Setting { .. })) => {
                    assert!(e.to_string().contains(expected), "{url}: {e}")
                }
                Err(other) => panic!("{url}: {other}"),
                Ok(_) => panic!("{url}: accepted"),
            }
        }
    }
}
