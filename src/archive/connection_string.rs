//! Storage connection strings (`ARCHIVE_CONNECTION`), parsed once into an endpoint and a way to
//! authorize.
//!
//! Accepted keys (case-insensitive, `;`-separated `Key=Value`): `UseDevelopmentStorage`,
//! `DefaultEndpointsProtocol`, `AccountName`, `AccountKey`, `EndpointSuffix`, `BlobEndpoint`,
//! `SharedAccessSignature`. The other services' endpoints are ignored; anything else is an error,
//! so a typo is reported instead of silently dropped. Errors name keys, never values.

use secrecy::SecretString;
use url::Url;

use super::ArchiveError;
use super::sas::AccountKey;

/// The Azurite account, as documented by Azurite and the Storage docs (a public, well-known key).
pub const DEVELOPMENT_ACCOUNT: &str = "devstoreaccount1";
/// The well-known key of [`DEVELOPMENT_ACCOUNT`].
pub const DEVELOPMENT_ACCOUNT_KEY: &str =
    "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw==";
/// Where `UseDevelopmentStorage=true` points: Azurite's default Blob port.
pub(crate) const DEVELOPMENT_BLOB_ENDPOINT: &str = "http://127.0.0.1:10000/devstoreaccount1";

const DEFAULT_ENDPOINT_SUFFIX: &str = "core.windows.net";

/// Keys of other services that may appear in a portal connection string; not ours to use.
const IGNORED_KEYS: [&str; 6] = [
    "queueendpoint",
    "tableendpoint",
    "fileendpoint",
    "queuesecondaryendpoint",
    "tablesecondaryendpoint",
    "filesecondaryendpoint",
];

/// How requests to the account are authorized.
#[derive(Debug)]
pub(crate) enum StorageAuth {
    /// `AccountKey`: we sign account SAS tokens with it.
    AccountKey(AccountKey),
    /// `SharedAccessSignature`: used as given (without a leading `?`).
    Sas(SecretString),
}

/// A parsed connection string.
#[derive(Debug)]
pub(crate) struct ConnectionString {
    /// The Blob service endpoint: http(s), no trailing slash, no query.
    pub blob_endpoint: Url,
    pub auth: StorageAuth,
}

fn config(msg: impl Into<String>) -> ArchiveError {
    ArchiveError::Config(format!("ARCHIVE_CONNECTION: {}", msg.into()))
}

impl ConnectionString {
    pub fn parse(s: &str) -> Result<Self, ArchiveError> {
        let fields = Fields::read(s)?;
        if let Some(dev) = fields.development {
            return development_storage(dev, &fields);
        }
        if let Some(account) = fields.account {
            check_account_name(account)?;
        }
        Ok(ConnectionString {
            blob_endpoint: blob_endpoint(&fields)?,
            auth: auth(&fields)?,
        })
    }
}

/// The values of the keys we use, trimmed, each given at most once and not empty.
#[derive(Default)]
struct Fields<'a> {
    development: Option<&'a str>,
    protocol: Option<&'a str>,
    account: Option<&'a str>,
    key: Option<&'a str>,
    suffix: Option<&'a str>,
    blob_endpoint: Option<&'a str>,
    sas: Option<&'a str>,
}

impl<'a> Fields<'a> {
    /// Reads the `;`-separated `Key=Value` parts.
    fn read(s: &'a str) -> Result<Self, ArchiveError> {
        let mut fields = Fields::default();
        for (index, segment) in s.split(';').enumerate() {
            let segment = segment.trim();
            if segment.is_empty() {
                continue;
            }
            let Some((key, value)) = segment.split_once('=') else {
                return Err(config(format!(
                    "part {} is not `Key=Value` (its text is not shown)",
                    index + 1
                )));
            };
            let (key, value) = (key.trim(), value.trim());
            let Some(slot) = fields.slot(key, index)? else {
                continue;
            };
            if slot.is_some() {
                return Err(config(format!("`{key}` is given twice")));
            }
            if value.is_empty() {
                return Err(config(format!("`{key}` is empty")));
            }
            *slot = Some(value);
        }
        Ok(fields)
    }

    /// Where the value of `key` (part `index`) goes; `None` for another service's key.
    fn slot(
        &mut self,
        key: &str,
        index: usize,
    ) -> Result<Option<&mut Option<&'a str>>, ArchiveError> {
        Ok(Some(match key.to_ascii_lowercase().as_str() {
            "usedevelopmentstorage" => &mut self.development,
            "defaultendpointsprotocol" => &mut self.protocol,
            "accountname" => &mut self.account,
            "accountkey" => &mut self.key,
            "endpointsuffix" => &mut self.suffix,
            "blobendpoint" => &mut self.blob_endpoint,
            "sharedaccesssignature" => &mut self.sas,
            other if IGNORED_KEYS.contains(&other) => return Ok(None),
            _ => return Err(unknown_key(key, index)),
        }))
    }
}

/// A pasted key without `AccountKey=` lands here: name it only if it looks like a key name,
/// never like a secret.
fn unknown_key(key: &str, index: usize) -> ArchiveError {
    if key.len() <= 32 && key.bytes().all(|b| b.is_ascii_alphabetic()) {
        config(format!("unknown key `{key}`"))
    } else {
        config(format!(
            "part {} has an unknown key (not shown: it does not look like a key name)",
            index + 1
        ))
    }
}

/// `UseDevelopmentStorage=true`: Azurite's default address and well-known account.
fn development_storage(dev: &str, f: &Fields) -> Result<ConnectionString, ArchiveError> {
    if !dev.eq_ignore_ascii_case("true") {
        return Err(config("UseDevelopmentStorage must be `true` (or left out)"));
    }
    if f.account.is_some()
        || f.key.is_some()
        || f.blob_endpoint.is_some()
        || f.sas.is_some()
        || f.protocol.is_some()
        || f.suffix.is_some()
    {
        return Err(config(
            "UseDevelopmentStorage=true stands alone; for another Azurite address give \
             DefaultEndpointsProtocol, AccountName, AccountKey and BlobEndpoint",
        ));
    }
    Ok(ConnectionString {
        blob_endpoint: Url::parse(DEVELOPMENT_BLOB_ENDPOINT).expect("constant URL"),
        auth: StorageAuth::AccountKey(AccountKey::from_base64(
            DEVELOPMENT_ACCOUNT,
            DEVELOPMENT_ACCOUNT_KEY,
        )?),
    })
}

fn check_account_name(account: &str) -> Result<(), ArchiveError> {
    let valid = (3..=24).contains(&account.len())
        && account
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit());
    if valid {
        Ok(())
    } else {
        Err(config(
            "AccountName must be 3 to 24 lowercase letters and digits",
        ))
    }
}

/// `BlobEndpoint` when given, else the public endpoint of `AccountName`.
fn blob_endpoint(f: &Fields) -> Result<Url, ArchiveError> {
    match (f.blob_endpoint, f.account) {
        (Some(endpoint), _) => parse_endpoint(endpoint),
        (None, Some(account)) => account_endpoint(account, f.protocol, f.suffix),
        (None, None) => Err(config(
            "needs AccountName (or BlobEndpoint), or UseDevelopmentStorage=true",
        )),
    }
}

/// `{protocol}://{account}.blob.{suffix}` (https and `core.windows.net` by default).
fn account_endpoint(
    account: &str,
    protocol: Option<&str>,
    suffix: Option<&str>,
) -> Result<Url, ArchiveError> {
    let protocol = match protocol.map(str::to_ascii_lowercase).as_deref() {
        None | Some("https") => "https",
        Some("http") => "http",
        Some(_) => {
            return Err(config("DefaultEndpointsProtocol must be `http` or `https`"));
        }
    };
    let suffix = suffix.unwrap_or(DEFAULT_ENDPOINT_SUFFIX);
    if suffix.contains(['/', '?', '#', '@', ':']) {
        return Err(config(
            "EndpointSuffix must be a DNS suffix such as core.windows.net",
        ));
    }
    parse_endpoint(&format!("{protocol}://{account}.blob.{suffix}"))
}

/// `AccountKey` (signed by us) or `SharedAccessSignature` (used as given), exactly one.
fn auth(f: &Fields) -> Result<StorageAuth, ArchiveError> {
    match (f.key, f.sas) {
        (Some(_), Some(_)) => Err(config("give AccountKey or SharedAccessSignature, not both")),
        (Some(key), None) => account_key(f.account, key),
        (None, Some(sas)) => shared_access_signature(sas),
        (None, None) => Err(config(
            "needs AccountKey or SharedAccessSignature (for managed identity set \
             ARCHIVE_ACCOUNT_URL instead)",
        )),
    }
}

fn account_key(account: Option<&str>, key: &str) -> Result<StorageAuth, ArchiveError> {
    let account = account.ok_or_else(|| {
        config("AccountKey needs AccountName (the account is part of what is signed)")
    })?;
    AccountKey::from_base64(account, key)
        .map(StorageAuth::AccountKey)
        .map_err(|e| match e {
            ArchiveError::Config(m) => config(m),
            other => other,
        })
}

fn shared_access_signature(sas: &str) -> Result<StorageAuth, ArchiveError> {
    let sas = sas.trim_start_matches('?');
    if !sas.split('&').any(|p| p.starts_with("sig=")) {
        return Err(config("SharedAccessSignature has no `sig` parameter"));
    }
    Ok(StorageAuth::Sas(SecretString::from(sas)))
}

/// An http(s) endpoint with a host, no query or fragment, without a trailing slash.
fn parse_endpoint(s: &str) -> Result<Url, ArchiveError> {
    let mut url = Url::parse(s.trim())
        .map_err(|e| ArchiveError::setting("ARCHIVE_CONNECTION: BlobEndpoint is not a URL", e))?;
    if !matches!(url.scheme(), "http" | "https") || url.host_str().is_none() {
        return Err(config("BlobEndpoint must be an http(s) URL with a host"));
    }
    if url.query().is_some() || url.fragment().is_some() {
        return Err(config(
            "BlobEndpoint must not carry a query; put a SAS in SharedAccessSignature",
        ));
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err(config("BlobEndpoint must not contain user information"));
    }
    // Azurite routes `//container` wrongly: keep the endpoint without a trailing slash.
    let path = url.path().trim_end_matches('/').to_string();
    url.set_path(&path);
    Ok(url)
}

#[cfg(test)]
mod tests {
    use super::*;
    use secrecy::ExposeSecret;

    fn parse(s: &str) -> Result<ConnectionString, ArchiveError> {
        ConnectionString::parse(s)
    }

    fn config_error(s: &str) -> String {
        match parse(s) {
            Err(ArchiveError::Config(m)) => m,
            Err(ArchiveError::Setting { what, source }) => format!("{what}: {source}"),
            other => panic!("{s:?} should be a configuration error, got {other:?}"),
        }
    }

    #[test]
    fn development_storage_is_azurite() {
        let c = parse("UseDevelopmentStorage=true").unwrap();
        assert_eq!(c.blob_endpoint.as_str(), DEVELOPMENT_BLOB_ENDPOINT);
        assert!(
            matches!(c.auth, StorageAuth::AccountKey(ref k) if k.account() == DEVELOPMENT_ACCOUNT)
        );
        // Case and a trailing `;` do not matter.
        assert!(parse("usedevelopmentstorage=TRUE;").is_ok());
    }

    #[test]
    fn account_key_strings_build_the_public_endpoint() {
        let c = parse(&format!(
            "DefaultEndpointsProtocol=https;AccountName=myacct;AccountKey={DEVELOPMENT_ACCOUNT_KEY};EndpointSuffix=core.chinacloudapi.cn"
        ))
        .unwrap();
        assert_eq!(
            c.blob_endpoint.as_str(),
            "https://myacct.blob.core.chinacloudapi.cn/"
        );
        assert!(matches!(c.auth, StorageAuth::AccountKey(ref k) if k.account() == "myacct"));

        let c = parse(&format!(
            "AccountName=myacct;AccountKey={DEVELOPMENT_ACCOUNT_KEY};QueueEndpoint=https://q"
        ))
        .unwrap();
        assert_eq!(
            c.blob_endpoint.as_str(),
            "https://myacct.blob.core.windows.net/"
        );
    }

    #[test]
    fn blob_endpoint_wins_and_loses_its_trailing_slash() {
        let c = parse(&format!(
            "DefaultEndpointsProtocol=http;AccountName=devstoreaccount1;AccountKey={DEVELOPMENT_ACCOUNT_KEY};BlobEndpoint=http://127.0.0.1:10123/devstoreaccount1/"
        ))
        .unwrap();
        assert_eq!(
            c.blob_endpoint.as_str(),
            "http://127.0.0.1:10123/devstoreaccount1"
        );
    }

    #[test]
    fn shared_access_signature_is_kept_as_given() {
        let c = parse(
            "BlobEndpoint=https://myacct.blob.core.windows.net;SharedAccessSignature=?sv=2022-11-02&ss=b&sig=a%2Bb%3D",
        )
        .unwrap();
        match c.auth {
            StorageAuth::Sas(s) => assert_eq!(s.expose_secret(), "sv=2022-11-02&ss=b&sig=a%2Bb%3D"),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn bad_strings_are_clear_config_errors() {
        let key = DEVELOPMENT_ACCOUNT_KEY;
        let cases: Vec<(String, &str)> = vec![
            ("".into(), "needs AccountName"),
            ("garbage".into(), "not `Key=Value`"),
            ("UseDevelopmentStorage=false".into(), "must be `true`"),
            (
                format!("UseDevelopmentStorage=true;AccountKey={key}"),
                "stands alone",
            ),
            (
                "AccountName=myacct".into(),
                "needs AccountKey or SharedAccessSignature",
            ),
            (format!("AccountKey={key}"), "needs AccountName"),
            (
                format!("BlobEndpoint=http://127.0.0.1:1/x;AccountKey={key}"),
                "AccountKey needs AccountName",
            ),
            (
                "AccountName=myacct;AccountKey=%%%".into(),
                "not valid base64",
            ),
            (
                "AccountName=My_Acct;AccountKey=AAAA".into(),
                "AccountName must be",
            ),
            (
                "AccountName=myacct;AccountName=other;AccountKey=AAAA".into(),
                "given twice",
            ),
            (
                "AccountName=myacct;AcountKey=AAAA".into(),
                "unknown key `AcountKey`",
            ),
            (
                "AccountName=myacct;AccountKey=".into(),
                "`AccountKey` is empty",
            ),
            (
                "DefaultEndpointsProtocol=ftp;AccountName=myacct;AccountKey=AAAA".into(),
                "`http` or `https`",
            ),
            (
                "AccountName=myacct;AccountKey=AAAA;EndpointSuffix=evil.com/x".into(),
                "DNS suffix",
            ),
            (
                "BlobEndpoint=not a url;SharedAccessSignature=sig=x".into(),
                "not a URL",
            ),
            (
                "BlobEndpoint=ftp://h/x;SharedAccessSignature=sig=x".into(),
                "http(s) URL",
            ),
            (
                "BlobEndpoint=https://h/?sv=1&sig=x;SharedAccessSignature=sig=x".into(),
                "must not carry a query",
            ),
            (
                "BlobEndpoint=https://h;SharedAccessSignature=sv=2022-11-02".into(),
                "no `sig`",
            ),
            (
                "AccountName=myacct;AccountKey=AAAA;SharedAccessSignature=sig=x".into(),
                "not both",
            ),
        ];
        for (input, expected) in cases {
            let message = config_error(&input);
            assert!(
                message.contains(expected),
                "{input:?}: {message:?} should mention {expected:?}"
            );
            assert!(message.starts_with("ARCHIVE_CONNECTION: "), "{message}");
        }
    }

    #[test]
    fn errors_never_echo_secrets() {
        let secret_key = "c2VjcmV0LWtleS1ub3QtdG8tYmUtc2hvd24=";
        let inputs = [
            format!("AccountName=myacct;{secret_key}"),
            format!("AccountKey={secret_key}"),
            format!("AccountName=x;AccountKey={secret_key}"),
            "AccountName=myacct;AccountKey=s3cr3t-not-base64!".to_string(),
            format!("AccountName=myacct;AccountKey={secret_key};SharedAccessSignature=sig=s3cr3t"),
        ];
        for input in inputs {
            let message = config_error(&input);
            for secret in [secret_key, "s3cr3t"] {
                assert!(!message.contains(secret), "{message}");
            }
        }
        let debug = format!(
            "{:?}",
            parse(&format!("AccountName=myacct;AccountKey={secret_key}")).unwrap()
        );
        assert!(!debug.contains(secret_key), "{debug}");
    }
}
