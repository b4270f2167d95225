//! Client-certificate identity (`ClientIdentity::from_chain`: DER →
//! subject/issuer DN in RFC 2253 form, serial, fingerprints, SANs, SPIFFE
//! ID) and the identity headers sent to backends (nginx X-SSL-Client-*,
//! Envoy X-Forwarded-Client-Cert, RFC 9440 Client-Cert / -Chain).
//!
//! Input: DER of the leaf, optionally followed by intermediates (the first
//! DER element's length splits them). Asserts for every parsed identity:
//! every header of every format is present (a value that is not a valid
//! field value would be dropped silently and the backend would see a
//! half identity), none holds CR, LF or NUL, the DN survives the header
//! unchanged, and the fingerprint is the SHA-256 of the leaf.
#![no_main]

use http::HeaderMap;
use libfuzzer_sys::fuzz_target;
use portcullis_proxy::mtls::headers::{add_identity_headers, IdentityFormat, NginxHeaderNames};
use portcullis_proxy::mtls::identity::{hex_lower, sha256, ClientIdentity};
use rustls_pki_types::CertificateDer;

/// Length of the first DER TLV in `b` (None if malformed or indefinite).
fn der_len(b: &[u8]) -> Option<usize> {
    let first = *b.get(1)?;
    if first < 0x80 {
        return Some(2 + first as usize);
    }
    let n = (first & 0x7f) as usize;
    if n == 0 || n > 4 {
        return None;
    }
    let mut len = 0usize;
    for i in 0..n {
        len = (len << 8) | *b.get(2 + i)? as usize;
    }
    Some(2 + n + len)
}

fuzz_target!(|data: &[u8]| {
    let mut chain = Vec::new();
    let mut rest = data;
    while !rest.is_empty() && chain.len() < 4 {
        let n = der_len(rest).unwrap_or(rest.len()).min(rest.len());
        chain.push(CertificateDer::from(rest[..n].to_vec()));
        rest = &rest[n..];
    }
    if chain.is_empty() {
        return;
    }
    let Ok(id) = ClientIdentity::from_chain(&chain) else {
        return;
    };
    assert_eq!(id.fingerprint_sha256, hex_lower(&sha256(chain[0].as_ref())));
    let _ = id.leaf_pem();
    let names = NginxHeaderNames::default();
    let mut h = HeaderMap::new();
    add_identity_headers(
        &mut h,
        &id,
        &[
            IdentityFormat::Nginx,
            IdentityFormat::Xfcc,
            IdentityFormat::Rfc9440,
        ],
        &names,
    );
    let mut expected = vec![
        names.cert.as_str(),
        names.dn.as_str(),
        names.issuer_dn.as_str(),
        names.verify.as_str(),
        names.serial.as_str(),
        names.fingerprint.as_str(),
        names.not_after.as_str(),
        "x-forwarded-client-cert",
        "client-cert",
    ];
    if chain.len() > 1 {
        expected.push("client-cert-chain");
    }
    for name in expected {
        let v = h.get(name).unwrap_or_else(|| {
            panic!(
                "{name} missing for subject {:?} issuer {:?}",
                id.subject_dn, id.issuer_dn
            )
        });
        assert!(
            !v.as_bytes()
                .iter()
                .any(|&b| b == b'\r' || b == b'\n' || b == 0),
            "{name}: {v:?}"
        );
    }
    assert_eq!(
        h.get(&names.dn).map(|v| v.as_bytes()),
        Some(id.subject_dn.as_bytes())
    );
    assert_eq!(
        h.get(&names.issuer_dn).map(|v| v.as_bytes()),
        Some(id.issuer_dn.as_bytes())
    );
});
