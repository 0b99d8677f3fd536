//! Shared access signatures (SAS) for the Blob archive.
//!
//! `azure_storage_blob` 1.x has no shared-key authentication (Azure/azure-sdk-for-rust#2975) and
//! `azure_storage_sas` signs only user-delegation SAS, so an account key from a connection string
//! is turned into an *account SAS* here: HMAC-SHA256 over the string-to-sign of the Storage REST
//! docs, "Create an account SAS", layout of version 2020-12-06 and later (we sign
//! [`SAS_VERSION`]). Requests then carry the SAS in their query and no credential at all.
//!
//! [`SasPolicy`] appends the SAS to every request the SDK sends, so no URL we keep or show
//! contains a signature, and a signed SAS is renewed long before it expires (the handler runs
//! for days). The SDK's logging policy redacts `sig` (it is not in its allow list).

use std::sync::{Arc, Mutex};

use azure_core::http::policies::{Policy, PolicyResult};
use azure_core::http::{Context, Request, Url};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use openssl::hash::MessageDigest;
use openssl::pkey::PKey;
use openssl::sign::Signer;
use secrecy::{ExposeSecret, SecretSlice, SecretString};
use time::OffsetDateTime;
use time::macros::format_description;

use super::ArchiveError;

/// The signed storage version (`sv`). Azurite 3.35 and Azure both verify this layout.
pub(crate) const SAS_VERSION: &str = "2022-11-02";

/// How long a SAS signed by [`SasPolicy`] is valid.
const SIGNED_LIFETIME: time::Duration = time::Duration::hours(2);
/// A cached SAS is replaced once less than this is left, so a request (and its retries) never
/// carries a token about to expire.
const RENEW_BEFORE_EXPIRY: time::Duration = time::Duration::hours(1);

/// A storage account name with its key (the base64 key of a connection string, decoded).
pub struct AccountKey {
    account: String,
    key: SecretSlice<u8>,
}

impl std::fmt::Debug for AccountKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AccountKey")
            .field("account", &self.account)
            .field("key", &"[REDACTED]")
            .finish()
    }
}

impl AccountKey {
    /// `key_base64` is the `AccountKey` of a connection string. Errors never echo the key.
    pub fn from_base64(account: &str, key_base64: &str) -> Result<Self, ArchiveError> {
        let key = BASE64.decode(key_base64.trim()).map_err(|_| {
            ArchiveError::Config("AccountKey is not valid base64 (the key is not shown)".into())
        })?;
        if key.is_empty() {
            return Err(ArchiveError::Config("AccountKey is empty".into()));
        }
        Ok(AccountKey {
            account: account.to_string(),
            key: key.into(),
        })
    }

    pub fn account(&self) -> &str {
        &self.account
    }

    /// Signs `sas` and returns its query string (`sv=...&sig=...`), percent-encoded.
    pub fn sign(&self, sas: &AccountSas) -> SecretString {
        let signature = hmac_sha256_base64(
            self.key.expose_secret(),
            sas.string_to_sign(&self.account).as_bytes(),
        );
        let mut query = url::form_urlencoded::Serializer::new(String::new());
        for (name, value) in sas.fields() {
            query.append_pair(name, &value);
        }
        query.append_pair("sig", &signature);
        SecretString::from(query.finish())
    }
}

fn hmac_sha256_base64(key: &[u8], message: &[u8]) -> String {
    // HMAC with a non-empty key and SHA-256 cannot fail in OpenSSL; a failure here would be a
    // broken libcrypto, not bad input.
    let pkey = PKey::hmac(key).expect("OpenSSL HMAC key");
    let mut signer = Signer::new(MessageDigest::sha256(), &pkey).expect("OpenSSL HMAC-SHA256");
    let mac = signer
        .sign_oneshot_to_vec(message)
        .expect("OpenSSL HMAC-SHA256");
    BASE64.encode(mac)
}

/// The fields of an account SAS, as the REST docs name them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccountSas {
    /// `ss`: services, e.g. `b` (Blob).
    pub services: String,
    /// `srt`: resource types, e.g. `co` (container and object).
    pub resource_types: String,
    /// `sp`: permissions in the documented order, e.g. `rwl`.
    pub permissions: String,
    /// `st`: optional start; without it the SAS is valid at once (no clock-skew trouble).
    pub start: Option<OffsetDateTime>,
    /// `se`: expiry.
    pub expiry: OffsetDateTime,
    /// `sip`: optional IP or IP range.
    pub ip_range: Option<String>,
    /// `spr`: `https` for https-only, `None` to allow http too (Azurite).
    pub protocol: Option<String>,
    /// `sv`: the signed version.
    pub version: String,
    /// `ses`: optional encryption scope.
    pub encryption_scope: Option<String>,
}

impl AccountSas {
    /// What the archive needs and nothing more: Blob service, containers and blobs,
    /// read + write (create the container, put blobs) + list. No delete.
    pub fn for_archive(expiry: OffsetDateTime, https_only: bool) -> Self {
        AccountSas {
            services: "b".into(),
            resource_types: "co".into(),
            permissions: "rwl".into(),
            start: None,
            expiry,
            ip_range: None,
            protocol: https_only.then(|| "https".into()),
            version: SAS_VERSION.into(),
            encryption_scope: None,
        }
    }

    /// The string-to-sign of an account SAS, version 2020-12-06 and later: every field on its
    /// own line (empty when absent), ending with a newline after the encryption scope.
    pub fn string_to_sign(&self, account: &str) -> String {
        let start = self.start.map(format_time).unwrap_or_default();
        [
            account,
            &self.permissions,
            &self.services,
            &self.resource_types,
            &start,
            &format_time(self.expiry),
            self.ip_range.as_deref().unwrap_or(""),
            self.protocol.as_deref().unwrap_or(""),
            &self.version,
            self.encryption_scope.as_deref().unwrap_or(""),
            "",
        ]
        .join("\n")
    }

    /// The query fields, unencoded, without `sig`.
    fn fields(&self) -> Vec<(&'static str, String)> {
        let mut fields = vec![
            ("sv", self.version.clone()),
            ("ss", self.services.clone()),
            ("srt", self.resource_types.clone()),
            ("sp", self.permissions.clone()),
        ];
        if let Some(start) = self.start {
            fields.push(("st", format_time(start)));
        }
        fields.push(("se", format_time(self.expiry)));
        if let Some(ip) = &self.ip_range {
            fields.push(("sip", ip.clone()));
        }
        if let Some(protocol) = &self.protocol {
            fields.push(("spr", protocol.clone()));
        }
        if let Some(scope) = &self.encryption_scope {
            fields.push(("ses", scope.clone()));
        }
        fields
    }
}

/// The SAS time format: ISO 8601 UTC to the second (`2026-01-02T03:04:05Z`).
fn format_time(t: OffsetDateTime) -> String {
    t.to_offset(time::UtcOffset::UTC)
        .format(format_description!(
            "[year]-[month]-[day]T[hour]:[minute]:[second]Z"
        ))
        .expect("a UTC date formats")
}

/// A pipeline policy that appends a SAS to the query of every request.
#[derive(Clone)]
pub(crate) struct SasPolicy {
    source: Arc<SasSource>,
}

enum SasSource {
    /// A `SharedAccessSignature` given in the connection string, used as is.
    Fixed(SecretString),
    /// Signed here with the account key, renewed before it expires.
    Signed {
        key: AccountKey,
        https_only: bool,
        current: Mutex<Option<(OffsetDateTime, SecretString)>>,
    },
}

impl std::fmt::Debug for SasPolicy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SasPolicy { .. }")
    }
}

impl SasPolicy {
    /// A SAS token given by the operator (a leading `?` is ignored).
    pub fn fixed(token: &SecretString) -> Self {
        let token = token.expose_secret().trim().trim_start_matches('?');
        SasPolicy {
            source: Arc::new(SasSource::Fixed(SecretString::from(token))),
        }
    }

    /// Account SAS signed with `key` ([`AccountSas::for_archive`]); `https_only` adds `spr=https`.
    pub fn signed(key: AccountKey, https_only: bool) -> Self {
        SasPolicy {
            source: Arc::new(SasSource::Signed {
                key,
                https_only,
                current: Mutex::new(None),
            }),
        }
    }

    /// The token to send now.
    fn token(&self) -> SecretString {
        match self.source.as_ref() {
            SasSource::Fixed(token) => token.clone(),
            SasSource::Signed {
                key,
                https_only,
                current,
            } => {
                let now = OffsetDateTime::now_utc();
                let mut current = current.lock().unwrap_or_else(|p| p.into_inner());
                match current.as_ref() {
                    Some((expiry, token)) if *expiry - now > RENEW_BEFORE_EXPIRY => token.clone(),
                    _ => {
                        // Whole seconds: the signed and the sent `se` must be the same string.
                        let expiry = (now + SIGNED_LIFETIME)
                            .replace_nanosecond(0)
                            .expect("0 ns is valid");
                        let token = key.sign(&AccountSas::for_archive(expiry, *https_only));
                        *current = Some((expiry, token.clone()));
                        token
                    }
                }
            }
        }
    }
}

/// Appends an already-encoded query string to `url`'s query.
fn append_query(url: &mut Url, extra: &str) {
    let query = match url.query() {
        Some(q) if !q.is_empty() => format!("{q}&{extra}"),
        _ => extra.to_string(),
    };
    url.set_query(Some(&query));
}

#[async_trait::async_trait]
impl Policy for SasPolicy {
    async fn send(
        &self,
        ctx: &Context,
        request: &mut Request,
        next: &[Arc<dyn Policy>],
    ) -> PolicyResult {
        append_query(request.url_mut(), self.token().expose_secret());
        next[0].send(ctx, request, &next[1..]).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::datetime;

    /// Azurite's documented development key.
    const KEY: &str =
        "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw==";

    fn sample() -> AccountSas {
        AccountSas::for_archive(datetime!(2026-01-02 03:04:05 UTC), false)
    }

    #[test]
    fn string_to_sign_follows_the_account_sas_layout() {
        // Docs, "Create an account SAS", version 2020-12-06 and later: accountname, sp, ss,
        // srt, st, se, sip, spr, sv, ses, each followed by "\n".
        assert_eq!(
            sample().string_to_sign("devstoreaccount1"),
            "devstoreaccount1\nrwl\nb\nco\n\n2026-01-02T03:04:05Z\n\n\n2022-11-02\n\n"
        );
        let full = AccountSas {
            start: Some(datetime!(2026-01-01 00:00:00 +02:00)),
            ip_range: Some("10.0.0.1-10.0.0.9".into()),
            protocol: Some("https".into()),
            encryption_scope: Some("scope1".into()),
            ..sample()
        };
        assert_eq!(
            full.string_to_sign("acct"),
            "acct\nrwl\nb\nco\n2025-12-31T22:00:00Z\n2026-01-02T03:04:05Z\n10.0.0.1-10.0.0.9\nhttps\n2022-11-02\nscope1\n"
        );
    }

    #[test]
    fn signature_matches_an_independent_hmac() {
        // Expected value computed outside Rust from the string-to-sign above:
        //   printf 'devstoreaccount1\nrwl\nb\nco\n\n2026-01-02T03:04:05Z\n\n\n2022-11-02\n\n' |
        //   openssl dgst -sha256 -mac HMAC -macopt hexkey:$(echo "$KEY" | base64 -d | xxd -p -c 256) -binary | base64
        // Azurite's own verifier (generateAccountSASSignature) yields the same value.
        let key = AccountKey::from_base64("devstoreaccount1", KEY).unwrap();
        let query = key.sign(&sample());
        let pairs: Vec<(String, String)> =
            url::form_urlencoded::parse(query.expose_secret().as_bytes())
                .into_owned()
                .collect();
        let get = |name: &str| {
            pairs
                .iter()
                .find(|(k, _)| k == name)
                .map(|(_, v)| v.as_str())
        };
        assert_eq!(get("sv"), Some("2022-11-02"));
        assert_eq!(get("ss"), Some("b"));
        assert_eq!(get("srt"), Some("co"));
        assert_eq!(get("sp"), Some("rwl"));
        assert_eq!(get("se"), Some("2026-01-02T03:04:05Z"));
        assert_eq!(get("spr"), None);
        assert_eq!(get("st"), None);
        assert_eq!(get("sig"), Some(EXPECTED_SIG));
    }

    const EXPECTED_SIG: &str = "iswtOt5bK3KSay1AsnpyPmUMaT/8Lw7v9MaeSbo5ne0=";

    #[test]
    fn https_only_is_signed_and_sent() {
        let sas = AccountSas::for_archive(datetime!(2026-01-02 03:04:05 UTC), true);
        assert!(sas.string_to_sign("a").contains("\nhttps\n"));
        let key = AccountKey::from_base64("a", KEY).unwrap();
        assert!(key.sign(&sas).expose_secret().contains("spr=https"));
    }

    #[test]
    fn bad_keys_are_config_errors_without_the_key() {
        for bad in ["not base64!", "", "   "] {
            let err = AccountKey::from_base64("a", bad).unwrap_err();
            assert!(matches!(err, ArchiveError::Config(_)), "{err}");
            if !bad.trim().is_empty() {
                assert!(!err.to_string().contains(bad));
            }
        }
        let debug = format!("{:?}", AccountKey::from_base64("a", KEY).unwrap());
        assert!(!debug.contains(KEY) && debug.contains("REDACTED"));
    }

    #[test]
    fn signed_tokens_are_cached_and_long_lived() {
        let policy = SasPolicy::signed(AccountKey::from_base64("a", KEY).unwrap(), false);
        let first = policy.token();
        assert_eq!(first.expose_secret(), policy.token().expose_secret());
        let se: String = url::form_urlencoded::parse(first.expose_secret().as_bytes())
            .find(|(k, _)| k == "se")
            .map(|(_, v)| v.into_owned())
            .unwrap();
        let expiry =
            OffsetDateTime::parse(&se, &time::format_description::well_known::Rfc3339).unwrap();
        let left = expiry - OffsetDateTime::now_utc();
        assert!(
            left > RENEW_BEFORE_EXPIRY && left <= SIGNED_LIFETIME,
            "{left}"
        );
    }

    #[test]
    fn query_is_appended_after_existing_parameters() {
        let mut url = Url::parse("http://h/a/c?restype=container&comp=list").unwrap();
        append_query(&mut url, "sv=1&sig=x%2By");
        assert_eq!(
            url.query(),
            Some("restype=container&comp=list&sv=1&sig=x%2By")
        );
        let mut url = Url::parse("http://h/a/c/b").unwrap();
        append_query(&mut url, "sv=1");
        assert_eq!(url.as_str(), "http://h/a/c/b?sv=1");
        let fixed = SasPolicy::fixed(&SecretString::from("?sv=1&sig=abc"));
        assert_eq!(fixed.token().expose_secret(), "sv=1&sig=abc");
    }
}
