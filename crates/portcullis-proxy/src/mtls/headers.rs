//! Identity headers for backends, in the format each backend expects.
//!
//! Owns the encodings: nginx style (X-SSL-Client-Cert as URL-escaped PEM
//! like $ssl_client_escaped_cert, X-SSL-Client-DN in RFC 2253 form, -Verify,
//! -Serial, -Fingerprint, -Not-After; names configurable), Envoy's
//! X-Forwarded-Client-Cert, and RFC 9440 Client-Cert / Client-Cert-Chain.
//! Clients' own copies are removed by `forward::StripSet`
//! before these are added.

use base64::Engine;
use http::header::{HeaderMap, HeaderName, HeaderValue};

use super::identity::{pem_encode, ClientIdentity};

/// Which format a route sends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IdentityFormat {
    Nginx,
    Xfcc,
    Rfc9440,
}

/// Header names of the nginx style (defaults match common nginx setups).
#[derive(Debug, Clone)]
pub struct NginxHeaderNames {
    pub cert: HeaderName,
    pub dn: HeaderName,
    pub issuer_dn: HeaderName,
    pub verify: HeaderName,
    pub serial: HeaderName,
    pub fingerprint: HeaderName,
    pub not_after: HeaderName,
}

impl Default for NginxHeaderNames {
    fn default() -> Self {
        NginxHeaderNames {
            cert: HeaderName::from_static("x-ssl-client-cert"),
            dn: HeaderName::from_static("x-ssl-client-dn"),
            issuer_dn: HeaderName::from_static("x-ssl-client-i-dn"),
            verify: HeaderName::from_static("x-ssl-client-verify"),
            serial: HeaderName::from_static("x-ssl-client-serial"),
            fingerprint: HeaderName::from_static("x-ssl-client-fingerprint"),
            not_after: HeaderName::from_static("x-ssl-client-not-after"),
        }
    }
}

/// Percent-encodes everything but unreserved characters (nginx's $ssl_client_escaped_cert).
pub fn url_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len() * 3 / 2);
    for &b in s.as_bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// "Sep 22 12:00:00 2027 GMT", as nginx's $ssl_client_v_end.
pub fn openssl_time(t: std::time::SystemTime) -> String {
    let secs = t
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0);
    match time::OffsetDateTime::from_unix_timestamp(secs) {
        Ok(dt) => {
            let fmt = time::macros::format_description!(
                "[month repr:short] [day padding:space] [hour]:[minute]:[second] [year] GMT"
            );
            dt.format(&fmt).unwrap_or_default()
        }
        Err(_) => String::new(),
    }
}

fn quote_if_needed(v: &str) -> String {
    if v.contains([',', ';', '=', '"']) {
        format!("\"{}\"", v.replace('\\', "\\\\").replace('"', "\\\""))
    } else {
        v.to_string()
    }
}

/// Percent-encodes control bytes (and DEL) of a SAN value. A certificate
/// may carry them (an IA5String is any 7-bit byte); unescaped, one would
/// make the whole X-Forwarded-Client-Cert value invalid and the backend
/// would get no XFCC header at all (found by fuzz/client_cert).
fn escape_controls(v: &str) -> std::borrow::Cow<'_, str> {
    if !v.bytes().any(|b| b < 0x20 || b == 0x7f) {
        return std::borrow::Cow::Borrowed(v);
    }
    let mut out = String::with_capacity(v.len() + 8);
    for c in v.chars() {
        if (c as u32) < 0x20 || c as u32 == 0x7f {
            out.push_str(&format!("%{:02X}", c as u32));
        } else {
            out.push(c);
        }
    }
    std::borrow::Cow::Owned(out)
}

/// Envoy's X-Forwarded-Client-Cert value: Hash, Cert, Subject, URI, DNS.
pub fn xfcc_value(id: &ClientIdentity) -> String {
    let mut parts = vec![
        format!("Hash={}", id.fingerprint_sha256),
        format!("Cert=\"{}\"", url_escape(&id.leaf_pem())),
        format!("Subject={}", quote_if_needed(&id.subject_dn)),
    ];
    if let Some(u) = id.uris.first() {
        parts.push(format!("URI={}", quote_if_needed(&escape_controls(u))));
    }
    for d in &id.dns {
        parts.push(format!("DNS={}", quote_if_needed(&escape_controls(d))));
    }
    parts.join(";")
}

/// RFC 9440 Client-Cert: the DER leaf as an sf-binary.
pub fn rfc9440_cert(id: &ClientIdentity) -> String {
    format!(
        ":{}:",
        base64::engine::general_purpose::STANDARD.encode(&id.leaf_der)
    )
}

/// RFC 9440 Client-Cert-Chain: the intermediates as an sf-list of sf-binary.
pub fn rfc9440_chain(id: &ClientIdentity) -> Option<String> {
    if id.chain_der.is_empty() {
        return None;
    }
    Some(
        id.chain_der
            .iter()
            .map(|c| format!(":{}:", base64::engine::general_purpose::STANDARD.encode(c)))
            .collect::<Vec<_>>()
            .join(", "),
    )
}

fn put(h: &mut HeaderMap, name: &HeaderName, value: &str) {
    if let Ok(v) = HeaderValue::from_str(value) {
        h.insert(name.clone(), v);
    }
}

/// Adds the identity headers of `formats` for a verified client.
pub fn add_identity_headers(
    h: &mut HeaderMap,
    id: &ClientIdentity,
    formats: &[IdentityFormat],
    names: &NginxHeaderNames,
) {
    for f in formats {
        match f {
            IdentityFormat::Nginx => {
                put(h, &names.cert, &url_escape(&pem_encode(&id.leaf_der)));
                put(h, &names.dn, &id.subject_dn);
                put(h, &names.issuer_dn, &id.issuer_dn);
                put(h, &names.verify, "SUCCESS");
                put(h, &names.serial, &id.serial_hex);
                put(h, &names.fingerprint, &id.fingerprint_sha256);
                put(h, &names.not_after, &openssl_time(id.not_after));
            }
            IdentityFormat::Xfcc => put(
                h,
                &HeaderName::from_static("x-forwarded-client-cert"),
                &xfcc_value(id),
            ),
            IdentityFormat::Rfc9440 => {
                put(
                    h,
                    &HeaderName::from_static("client-cert"),
                    &rfc9440_cert(id),
                );
                if let Some(chain) = rfc9440_chain(id) {
                    put(h, &HeaderName::from_static("client-cert-chain"), &chain);
                }
            }
        }
    }
}

/// Tells the backend that no certificate was presented (nginx style only: Verify: NONE).
pub fn add_no_identity(h: &mut HeaderMap, formats: &[IdentityFormat], names: &NginxHeaderNames) {
    if formats.contains(&IdentityFormat::Nginx) {
        put(h, &names.verify, "NONE");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escaping() {
        assert_eq!(
            url_escape("-----BEGIN CERTIFICATE-----\nAB+/=\n"),
            "-----BEGIN%20CERTIFICATE-----%0AAB%2B%2F%3D%0A"
        );
        assert_eq!(quote_if_needed("CN=a,O=b"), "\"CN=a,O=b\"");
        assert_eq!(quote_if_needed("plain"), "plain");
    }

    /// fuzz/client_cert found it: a client certificate whose URI SAN holds
    /// NUL bytes made the XFCC value invalid, so the header was dropped.
    #[test]
    fn xfcc_survives_control_bytes_in_sans() {
        let der =
            include_bytes!("../../../../fuzz/seeds/client_cert/crash-xfcc-nul-in-uri-san.der");
        let chain = [rustls_pki_types::CertificateDer::from(der.to_vec())];
        let id = ClientIdentity::from_chain(&chain).expect("the certificate parses");
        assert!(id.uris[0].contains('\0'));
        let mut h = HeaderMap::new();
        add_identity_headers(
            &mut h,
            &id,
            &[IdentityFormat::Xfcc],
            &NginxHeaderNames::default(),
        );
        let xfcc = h.get("x-forwarded-client-cert").expect("XFCC is sent");
        let xfcc = xfcc.to_str().expect("visible ASCII");
        assert!(
            xfcc.contains("URI=spiffe://example.org/ns/prod<%00%00%00payments"),
            "{xfcc}"
        );
        assert_eq!(escape_controls("a\r\nb\x7f"), "a%0D%0Ab%7F");
        assert_eq!(escape_controls("plain.example"), "plain.example");
    }

    #[test]
    fn openssl_times() {
        let t = std::time::UNIX_EPOCH + std::time::Duration::from_secs(1_821_700_800);
        assert_eq!(openssl_time(t), "Sep 23 12:00:00 2027 GMT");
    }
}
