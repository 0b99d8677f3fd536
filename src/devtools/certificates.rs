//! Development certificates: the fresh self-signed certificate of `handler demo`, and the keys of
//! tests and benchmarks. Graph accepts self-signed certificates for `encryptionCertificate`.

use openssl::asn1::Asn1Time;
use openssl::bn::{BigNum, MsbOption};
use openssl::hash::MessageDigest;
use openssl::pkey::PKey;
use openssl::rsa::Rsa;
use openssl::x509::{X509, X509NameBuilder};
use time::OffsetDateTime;

use crate::keys::{DecryptionKey, KeyError};

/// An RSA-2048 key with a self-signed certificate valid from an hour ago for `valid_days`.
pub fn self_signed(id: &str, valid_days: i64) -> DecryptionKey {
    let now = OffsetDateTime::now_utc();
    self_signed_between(
        id,
        now - time::Duration::hours(1),
        now + time::Duration::days(valid_days),
    )
    .expect("generating an RSA-2048 certificate succeeds with a working OpenSSL")
}

/// A self-signed certificate with the given validity (either bound may be in the past).
pub fn self_signed_between(
    id: &str,
    not_before: OffsetDateTime,
    not_after: OffsetDateTime,
) -> Result<DecryptionKey, KeyError> {
    let label = format!("generated:{id}");
    let fail = |e: openssl::error::ErrorStack| KeyError::unusable(&label, "generating", e);
    let rsa = Rsa::generate(2048).map_err(fail)?;
    let key = PKey::from_rsa(rsa).map_err(fail)?;
    let mut name = X509NameBuilder::new().map_err(fail)?;
    name.append_entry_by_text("CN", &format!("teams-notifications {id}"))
        .map_err(fail)?;
    let name = name.build();
    let mut builder = X509::builder().map_err(fail)?;
    builder.set_version(2).map_err(fail)?;
    let mut serial = BigNum::new().map_err(fail)?;
    serial
        .rand(127, MsbOption::MAYBE_ZERO, false)
        .map_err(fail)?;
    let serial = serial.to_asn1_integer().map_err(fail)?;
    builder.set_serial_number(&serial).map_err(fail)?;
    builder.set_subject_name(&name).map_err(fail)?;
    builder.set_issuer_name(&name).map_err(fail)?;
    builder.set_pubkey(&key).map_err(fail)?;
    let from = Asn1Time::from_unix(not_before.unix_timestamp()).map_err(fail)?;
    let until = Asn1Time::from_unix(not_after.unix_timestamp()).map_err(fail)?;
    builder.set_not_before(&from).map_err(fail)?;
    builder.set_not_after(&until).map_err(fail)?;
    builder.sign(&key, MessageDigest::sha256()).map_err(fail)?;
    DecryptionKey::new(
        id.to_string(),
        key,
        builder.build(),
        format!("generated:{id}"),
    )
}

/// PEM with the private key then the certificate: the format `NOTIFICATION_CERTIFICATES` reads.
pub fn to_pem(key: &DecryptionKey) -> Result<Vec<u8>, KeyError> {
    let fail = |e: openssl::error::ErrorStack| KeyError::unusable(&key.source, "PEM encoding", e);
    let mut pem = key.private_key.private_key_to_pem_pkcs8().map_err(fail)?;
    pem.extend(key.certificate.to_pem().map_err(fail)?);
    Ok(pem)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::keys::local::load_key;

    #[test]
    fn pem_round_trips_through_the_local_loader() {
        let k = self_signed("dev", 30);
        let loaded = load_key("dev".into(), &to_pem(&k).unwrap(), "", "mem".into()).unwrap();
        assert_eq!(loaded.thumbprint, k.thumbprint);
        assert_eq!(loaded.thumbprint.len(), 40);
    }

    #[test]
    fn pfx_with_password_loads() {
        let k = self_signed("pfx", 30);
        let pfx = openssl::pkcs12::Pkcs12::builder()
            .name("pfx")
            .pkey(&k.private_key)
            .cert(&k.certificate)
            .build2("pw")
            .unwrap()
            .to_der()
            .unwrap();
        assert_eq!(
            load_key("pfx".into(), &pfx, "pw", "mem".into())
                .unwrap()
                .thumbprint,
            k.thumbprint
        );
        assert!(load_key("pfx".into(), &pfx, "wrong", "mem".into()).is_err());
        assert!(load_key("x".into(), b"garbage", "", "mem".into()).is_err());
    }

    #[test]
    fn store_finds_by_id_or_thumbprint_and_picks_current() {
        let now = OffsetDateTime::now_utc();
        let old = self_signed_between(
            "old",
            now - time::Duration::days(400),
            now - time::Duration::days(10),
        )
        .unwrap();
        let new = self_signed("new", 30);
        let old_thumb = old.thumbprint.to_lowercase();
        let store = crate::keys::CertificateStore::from_keys(vec![old, new]);
        assert_eq!(store.lookup(Some("old"), None).unwrap().id, "old");
        assert_eq!(
            store.lookup(Some("nope"), Some(&old_thumb)).unwrap().id,
            "old"
        );
        assert!(store.lookup(Some("nope"), Some("00")).is_none());
        assert_eq!(store.current().unwrap().id, "new");
    }
}
