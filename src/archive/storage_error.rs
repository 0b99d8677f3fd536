//! The Blob SDK's errors as the archive reports them: the HTTP status and Storage error code,
//! never the SDK's text (its transport errors quote the request URL, SAS signature included).

use azure_core::error::ErrorKind;

/// A failed Storage call: the SDK's error, kept whole for the caller ([`StorageError::sdk`]:
/// its kind, status and Storage error code), shown from its kind only. Neither its `Display`,
/// its `Debug` nor its `source()` shows the SDK's message or source chain, which can hold the
/// request's URL and its SAS.
pub struct StorageError {
    doing: Option<&'static str>,
    error: azure_core::Error,
}

impl StorageError {
    pub fn new(error: azure_core::Error) -> Self {
        StorageError { doing: None, error }
    }

    /// The error of a call, with what the archive was doing ("cannot create or open the
    /// container").
    pub fn during(doing: &'static str, error: azure_core::Error) -> Self {
        StorageError {
            doing: Some(doing),
            error,
        }
    }

    /// The SDK's error (its text may quote a SAS URL: never log it).
    pub fn sdk(&self) -> &azure_core::Error {
        &self.error
    }
}

impl std::fmt::Display for StorageError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.doing {
            Some(doing) => write!(f, "{doing}: {}", reason(&self.error)),
            None => f.write_str(&reason(&self.error)),
        }
    }
}

impl std::fmt::Debug for StorageError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("StorageError")
            .field(&self.to_string())
            .finish()
    }
}

impl std::error::Error for StorageError {}

/// A short reason for logs and errors. Built from the error's kind only: the SDK's transport
/// errors quote the request URL, SAS signature included, so their text is never used.
pub(crate) fn reason(e: &azure_core::Error) -> String {
    match e.kind() {
        ErrorKind::HttpResponse {
            status, error_code, ..
        } => {
            let code = error_code.as_deref().unwrap_or("no error code");
            let hint = if code == "InvalidHeaderValue" {
                " (Azurite refuses the SDK's x-ms-version: start it with --skipApiVersionCheck)"
            } else {
                ""
            };
            format!("HTTP {} {code}{hint}", u16::from(*status))
        }
        ErrorKind::Connection => "cannot connect to the storage endpoint".into(),
        ErrorKind::Io => "no complete answer from the storage endpoint (timeout or I/O)".into(),
        // Token errors come from the credential, not from a SAS URL: their text helps and is safe.
        ErrorKind::Credential => format!("credential: {e}"),
        ErrorKind::DataConversion => "unexpected answer from the storage endpoint".into(),
        _ => "storage client error".into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use azure_core::http::StatusCode;

    #[test]
    fn reasons_carry_status_and_code_only() {
        let e = azure_core::Error::with_message(
            ErrorKind::HttpResponse {
                status: StatusCode::Forbidden,
                error_code: Some("AuthenticationFailed".into()),
                raw_response: None,
            },
            "http://h/c?sig=secret",
        );
        assert_eq!(reason(&e), "HTTP 403 AuthenticationFailed");
        let e = azure_core::Error::with_message(ErrorKind::Connection, "http://h/c?sig=secret");
        assert!(!reason(&e).contains("secret"));
        let e = azure_core::Error::with_message(ErrorKind::Io, "http://h/c?sig=secret");
        assert!(!reason(&e).contains("secret"));
    }

    #[test]
    fn the_error_keeps_the_sdk_error_and_shows_no_url() {
        let sdk = azure_core::Error::with_message(ErrorKind::Connection, "http://h/c?sig=secret");
        let e = StorageError::during("cannot create or open the container", sdk);
        assert_eq!(
            e.to_string(),
            "cannot create or open the container: cannot connect to the storage endpoint"
        );
        assert!(!format!("{e:?}").contains("secret"));
        assert!(std::error::Error::source(&e).is_none());
        assert_eq!(*e.sdk().kind(), ErrorKind::Connection);
    }
}
