//! The generic webhook's signature: HMAC-SHA256 with `ALERT_WEBHOOK_SECRET` over
//! `{timestamp}.{body}`, sent in headers a receiver can verify (docs/deploy.md has an example):
//!
//! - `X-Alert-Timestamp`: Unix seconds when the request was signed;
//! - `X-Alert-Signature`: `v1=` and the lower-case hex HMAC-SHA256 of the timestamp, a `.`, and
//!   the exact body bytes;
//! - `X-Alert-Id`: the alert's archive name (the same on every retry: the receiver's dedup key).
//!
//! The timestamp is inside the signature, so a captured request cannot be replayed later than the
//! receiver's tolerance (5 minutes is the usual choice, [`DEFAULT_TOLERANCE_S`]).

use openssl::hash::MessageDigest;
use openssl::pkey::PKey;
use openssl::sign::Signer;

pub(crate) const TIMESTAMP_HEADER: &str = "X-Alert-Timestamp";
pub(crate) const SIGNATURE_HEADER: &str = "X-Alert-Signature";
pub(crate) const ID_HEADER: &str = "X-Alert-Id";
/// How far a verifier accepts a timestamp from its own clock, either way.
pub const DEFAULT_TOLERANCE_S: i64 = 300;

/// `v1=<hex>` for `timestamp` and `body`.
pub(crate) fn sign(secret: &[u8], timestamp: i64, body: &[u8]) -> String {
    format!("v1={}", hex::encode(mac(secret, timestamp, body)))
}

/// Why a signature does not verify.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum VerifyError {
    #[error("the timestamp is not Unix seconds")]
    BadTimestamp,
    #[error("the timestamp is more than {0} s away from now")]
    Stale(i64),
    #[error("the signature header has no v1= value")]
    NoSignature,
    #[error("the signature does not match the body")]
    Mismatch,
}

/// What a receiver does: checks the timestamp against `now` and every `v1=` value of the
/// signature header (comma-separated, so a sender can sign with an old and a new secret during a
/// rotation) in constant time.
pub fn verify(
    secret: &[u8],
    timestamp: &str,
    body: &[u8],
    signature_header: &str,
    now: i64,
    tolerance_s: i64,
) -> Result<(), VerifyError> {
    let ts: i64 = timestamp
        .trim()
        .parse()
        .map_err(|_| VerifyError::BadTimestamp)?;
    if (now - ts).abs() > tolerance_s {
        return Err(VerifyError::Stale(tolerance_s));
    }
    let expected = mac(secret, ts, body);
    let mut any = false;
    for value in signature_header
        .split(',')
        .filter_map(|v| v.trim().strip_prefix("v1="))
    {
        any = true;
        if let Ok(got) = hex::decode(value)
            && got.len() == expected.len()
            && openssl::memcmp::eq(&got, &expected)
        {
            return Ok(());
        }
    }
    Err(if any {
        VerifyError::Mismatch
    } else {
        VerifyError::NoSignature
    })
}

fn mac(secret: &[u8], timestamp: i64, body: &[u8]) -> Vec<u8> {
    let key = PKey::hmac(secret).expect("any byte string is an HMAC key");
    let mut signer = Signer::new(MessageDigest::sha256(), &key).expect("HMAC-SHA256 exists");
    signer
        .update(format!("{timestamp}.").as_bytes())
        .expect("HMAC update");
    signer.update(body).expect("HMAC update");
    signer.sign_to_vec().expect("HMAC final")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_signature_verifies_and_any_change_breaks_it() {
        let secret = b"0123456789abcdef0123";
        let body = br#"{"type":"emergencyCallAlert"}"#;
        let sig = sign(secret, 1_700_000_000, body);
        assert!(sig.starts_with("v1=") && sig.len() == 3 + 64);
        assert_eq!(
            verify(secret, "1700000000", body, &sig, 1_700_000_010, 300),
            Ok(())
        );
        // A rotation header with an old value first still verifies.
        let both = format!("v1={},{sig}", "00".repeat(32));
        assert_eq!(
            verify(secret, "1700000000", body, &both, 1_700_000_000, 300),
            Ok(())
        );
        let altered = br#"{"type":"emergencyCallAlerT"}"#;
        assert_eq!(
            verify(secret, "1700000000", altered, &sig, 1_700_000_000, 300),
            Err(VerifyError::Mismatch)
        );
        assert_eq!(
            verify(secret, "1700000001", body, &sig, 1_700_000_000, 300),
            Err(VerifyError::Mismatch)
        );
        assert_eq!(
            verify(
                b"another-secret-of-20",
                "1700000000",
                body,
                &sig,
                1_700_000_000,
                300
            ),
            Err(VerifyError::Mismatch)
        );
        assert_eq!(
            verify(secret, "1700000000", body, &sig, 1_700_001_000, 300),
            Err(VerifyError::Stale(300))
        );
        assert_eq!(
            verify(secret, "x", body, &sig, 0, 300),
            Err(VerifyError::BadTimestamp)
        );
        assert_eq!(
            verify(secret, "1700000000", body, "sha256=ab", 1_700_000_000, 300),
            Err(VerifyError::NoSignature)
        );
    }

    #[test]
    fn the_scheme_matches_an_independent_hmac() {
        // `printf '1700000000.{}' | openssl dgst -sha256 -hmac 0123456789abcdef0123`
        assert_eq!(
            sign(b"0123456789abcdef0123", 1_700_000_000, b"{}"),
            format!("v1={}", openssl_cli_hmac())
        );
    }

    fn openssl_cli_hmac() -> String {
        let out = std::process::Command::new("sh")
            .args([
                "-c",
                "printf '1700000000.{}' | openssl dgst -sha256 -hmac 0123456789abcdef0123 -r",
            ])
            .output()
            .expect("openssl is installed");
        String::from_utf8(out.stdout)
            .unwrap()
            .split_whitespace()
            .next()
            .unwrap()
            .to_string()
    }
}
