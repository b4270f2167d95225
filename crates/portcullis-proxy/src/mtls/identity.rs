//! The client identity of a mutual-TLS connection.
//!
//! Owns parsing the client's certificate chain once per connection into a
//! `ClientIdentity` (subject and issuer DN in RFC 2253 form, serial,
//! fingerprints, validity, SANs, SPIFFE ID, PEM forms). Everything later
//! (authorization, identity headers, logs, revocation) reads this struct;
//! nothing re-parses the certificate per request.

use std::time::{Duration, SystemTime};

use base64::Engine;
use rustls_pki_types::CertificateDer;
use x509_parser::prelude::*;

/// What the gateway knows about an authenticated client.
#[derive(Debug, Clone)]
pub struct ClientIdentity {
    /// RFC 2253 subject, e.g. "CN=client,O=Example" (nginx's $ssl_client_s_dn).
    pub subject_dn: String,
    pub issuer_dn: String,
    /// Upper-case hex serial in whole bytes without leading zero bytes, as OpenSSL and nginx's $ssl_client_serial print it.
    pub serial_hex: String,
    /// Big-endian serial bytes (for CRL matching).
    pub serial_bytes: Vec<u8>,
    /// DER of the issuer name (for CRL matching).
    pub issuer_der: Vec<u8>,
    /// SHA-256 of the certificate DER, lower-case hex.
    pub fingerprint_sha256: String,
    /// SHA-256 of the SubjectPublicKeyInfo, base64 (Envoy's verify_certificate_spki).
    pub spki_sha256_b64: String,
    pub not_before: SystemTime,
    pub not_after: SystemTime,
    pub dns: Vec<String>,
    pub uris: Vec<String>,
    pub emails: Vec<String>,
    /// The first URI SAN of the form spiffe://…
    pub spiffe: Option<String>,
    /// Leaf certificate DER.
    pub leaf_der: Vec<u8>,
    /// Intermediates presented by the client (DER), in order.
    pub chain_der: Vec<Vec<u8>>,
    /// Serial and issuer DER of every presented intermediate (for CRL matching).
    pub chain_ids: Vec<(Vec<u8>, Vec<u8>)>,
}

/// Why a chain could not be read.
#[derive(Debug, thiserror::Error)]
#[error("client certificate cannot be parsed: {0}")]
pub struct IdentityError(String);

pub fn sha256(data: &[u8]) -> [u8; 32] {
    let d = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, data);
    let mut out = [0u8; 32];
    out.copy_from_slice(d.as_ref());
    out
}

pub fn hex_lower(b: &[u8]) -> String {
    const H: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(b.len() * 2);
    for &x in b {
        s.push(H[(x >> 4) as usize] as char);
        s.push(H[(x & 15) as usize] as char);
    }
    s
}

fn to_system_time(t: ASN1Time) -> SystemTime {
    let ts = t.timestamp();
    if ts >= 0 {
        SystemTime::UNIX_EPOCH + Duration::from_secs(ts as u64)
    } else {
        SystemTime::UNIX_EPOCH
    }
}

fn attr_short_name(oid: &x509_parser::der_parser::oid::Oid) -> String {
    use x509_parser::oid_registry::*;
    let known: [(&Oid, &str); 12] = [
        (&OID_X509_COMMON_NAME, "CN"),
        (&OID_X509_COUNTRY_NAME, "C"),
        (&OID_X509_LOCALITY_NAME, "L"),
        (&OID_X509_STATE_OR_PROVINCE_NAME, "ST"),
        (&OID_X509_ORGANIZATION_NAME, "O"),
        (&OID_X509_ORGANIZATIONAL_UNIT, "OU"),
        (&OID_X509_STREET_ADDRESS, "street"),
        (&OID_DOMAIN_COMPONENT, "DC"),
        (&OID_PKCS9_EMAIL_ADDRESS, "emailAddress"),
        (&OID_X509_SERIALNUMBER, "serialNumber"),
        (&OID_X509_GIVEN_NAME, "GN"),
        (&OID_X509_SURNAME, "SN"),
    ];
    for (o, n) in known {
        if o == oid {
            return n.to_string();
        }
    }
    if oid.to_id_string() == "0.9.2342.19200300.100.1.1" {
        return "UID".into();
    }
    oid.to_id_string()
}

/// Escapes an attribute value per RFC 2253 §2.4.
fn escape_rfc2253(v: &str, out: &mut String) {
    let n = v.chars().count();
    for (i, c) in v.chars().enumerate() {
        let special = matches!(c, ',' | '+' | '"' | '\\' | '<' | '>' | ';' | '=');
        if special || (i == 0 && (c == '#' || c == ' ')) || (i + 1 == n && c == ' ') {
            out.push('\\');
            out.push(c);
        } else if (c as u32) < 0x20 || c as u32 == 0x7f {
            out.push_str(&format!("\\{:02X}", c as u32));
        } else {
            out.push(c);
        }
    }
}

/// A distinguished name in RFC 2253 form: last RDN first, "," between RDNs, "+" inside one.
pub fn rfc2253(name: &X509Name<'_>) -> String {
    let mut out = String::new();
    let rdns: Vec<_> = name.iter().collect();
    for (i, rdn) in rdns.iter().rev().enumerate() {
        if i > 0 {
            out.push(',');
        }
        for (j, atv) in rdn.iter().enumerate() {
            if j > 0 {
                out.push('+');
            }
            out.push_str(&attr_short_name(atv.attr_type()));
            out.push('=');
            match atv.as_str() {
                Ok(s) => escape_rfc2253(s, &mut out),
                Err(_) => {
                    out.push('#');
                    out.push_str(&hex_lower(atv.attr_value().data));
                }
            }
        }
    }
    out
}

fn serial_hex(bytes: &[u8]) -> String {
    let trimmed: &[u8] = {
        let first = bytes
            .iter()
            .position(|&b| b != 0)
            .unwrap_or(bytes.len().saturating_sub(1));
        &bytes[first..]
    };
    hex_lower(trimmed).to_ascii_uppercase()
}

impl ClientIdentity {
    /// Parses the chain a client presented (leaf first).
    pub fn from_chain(chain: &[CertificateDer<'_>]) -> Result<ClientIdentity, IdentityError> {
        let leaf_der = chain
            .first()
            .ok_or_else(|| IdentityError("empty chain".into()))?;
        let (_, cert) = X509Certificate::from_der(leaf_der.as_ref())
            .map_err(|e| IdentityError(e.to_string()))?;
        let mut dns = Vec::new();
        let mut uris = Vec::new();
        let mut emails = Vec::new();
        if let Ok(Some(san)) = cert.subject_alternative_name() {
            for n in &san.value.general_names {
                match n {
                    GeneralName::DNSName(d) => dns.push(d.to_string()),
                    GeneralName::URI(u) => uris.push(u.to_string()),
                    GeneralName::RFC822Name(e) => emails.push(e.to_string()),
                    _ => {}
                }
            }
        }
        let spiffe = uris.iter().find(|u| u.starts_with("spiffe://")).cloned();
        let serial_bytes = cert.raw_serial().to_vec();
        let mut chain_ids = Vec::new();
        for c in chain.iter().skip(1) {
            if let Ok((_, ic)) = X509Certificate::from_der(c.as_ref()) {
                chain_ids.push((ic.raw_serial().to_vec(), ic.issuer().as_raw().to_vec()));
            }
        }
        Ok(ClientIdentity {
            subject_dn: rfc2253(cert.subject()),
            issuer_dn: rfc2253(cert.issuer()),
            serial_hex: serial_hex(&serial_bytes),
            serial_bytes,
            issuer_der: cert.issuer().as_raw().to_vec(),
            fingerprint_sha256: hex_lower(&sha256(leaf_der.as_ref())),
            spki_sha256_b64: base64::engine::general_purpose::STANDARD
                .encode(sha256(cert.public_key().raw)),
            not_before: to_system_time(cert.validity().not_before),
            not_after: to_system_time(cert.validity().not_after),
            dns,
            uris,
            emails,
            spiffe,
            leaf_der: leaf_der.as_ref().to_vec(),
            chain_der: chain.iter().skip(1).map(|c| c.as_ref().to_vec()).collect(),
            chain_ids,
        })
    }

    /// Whole days of validity left (nginx's $ssl_client_v_remain).
    pub fn days_remaining(&self, now: SystemTime) -> u64 {
        self.not_after
            .duration_since(now)
            .map(|d| d.as_secs() / 86400)
            .unwrap_or(0)
    }

    /// The leaf as PEM.
    pub fn leaf_pem(&self) -> String {
        pem_encode(&self.leaf_der)
    }
}

/// PEM-encodes one certificate.
pub fn pem_encode(der: &[u8]) -> String {
    let b64 = base64::engine::general_purpose::STANDARD.encode(der);
    let mut s = String::with_capacity(b64.len() + 64);
    s.push_str("-----BEGIN CERTIFICATE-----\n");
    for chunk in b64.as_bytes().chunks(64) {
        s.push_str(std::str::from_utf8(chunk).unwrap_or(""));
        s.push('\n');
    }
    s.push_str("-----END CERTIFICATE-----\n");
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn serials_and_hex() {
        assert_eq!(serial_hex(&[0x00, 0x0a, 0xff]), "0AFF");
        assert_eq!(serial_hex(&[0x00]), "00");
        assert_eq!(hex_lower(&[0xde, 0xad]), "dead");
    }

    #[test]
    fn rfc2253_escaping() {
        let mut s = String::new();
        escape_rfc2253(" a,b+c\"d\\e<f>g;h#", &mut s);
        assert_eq!(s, "\\ a\\,b\\+c\\\"d\\\\e\\<f\\>g\\;h#");
    }
}
