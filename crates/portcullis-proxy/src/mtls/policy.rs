//! Per-route client-certificate policy.
//!
//! Owns what a route asks of a client certificate, after the handshake has
//! verified it against the listener's CAs: presence (496 when missing), the
//! route's own CAs (495 when the chain does not lead to one of them),
//! allow lists on the identity (subject DN patterns, SAN DNS / URI / email,
//! SPIFFE IDs) and pins (certificate or SPKI SHA-256) — 403 when they do
//! not match. Allow entries of different kinds are alternatives (any match
//! admits); pins, when given, must also match.

use std::sync::Arc;

use rustls_pki_types::{CertificateDer, TrustAnchor, UnixTime};

use super::identity::ClientIdentity;

/// Why a route refused a client.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Denial {
    /// 496: no certificate.
    Missing,
    /// 495: a certificate not issued under this route's CAs.
    Untrusted(String),
    /// 403: authenticated, not allowed.
    Forbidden(String),
}

/// A glob with `*` matching any run of characters, compared without case.
pub fn glob_match(pattern: &str, s: &str) -> bool {
    let p: Vec<char> = pattern.to_lowercase().chars().collect();
    let t: Vec<char> = s.to_lowercase().chars().collect();
    let (mut pi, mut ti, mut star, mut mark) = (0usize, 0usize, None, 0usize);
    while ti < t.len() {
        if pi < p.len() && p[pi] == '*' {
            star = Some(pi);
            mark = ti;
            pi += 1;
        } else if pi < p.len() && p[pi] == t[ti] {
            pi += 1;
            ti += 1;
        } else if let Some(sp) = star {
            pi = sp + 1;
            mark += 1;
            ti = mark;
        } else {
            return false;
        }
    }
    while pi < p.len() && p[pi] == '*' {
        pi += 1;
    }
    pi == p.len()
}

/// "*.example.com" matches exactly one label; otherwise exact (case-insensitive).
fn dns_match(pattern: &str, name: &str) -> bool {
    match pattern.strip_prefix("*.") {
        Some(suffix) => name
            .split_once('.')
            .is_some_and(|(label, rest)| !label.is_empty() && rest.eq_ignore_ascii_case(suffix)),
        None => pattern.eq_ignore_ascii_case(name),
    }
}

/// Exact, or a prefix when the pattern ends with "/*" (the prefix keeps its "/").
fn spiffe_match(pattern: &str, id: &str) -> bool {
    match pattern.strip_suffix('*') {
        Some(prefix) if prefix.ends_with('/') => id.starts_with(prefix) && id.len() > prefix.len(),
        _ => pattern == id,
    }
}

/// A route's requirements.
#[derive(Debug, Default)]
pub struct RoutePolicy {
    pub required: bool,
    /// The route's own CAs; `None` = any CA of the listener.
    pub anchors: Option<Vec<TrustAnchor<'static>>>,
    pub allow_subjects: Vec<String>,
    pub allow_dns: Vec<String>,
    pub allow_uris: Vec<String>,
    pub allow_emails: Vec<String>,
    pub allow_spiffe: Vec<String>,
    /// Lower-case hex SHA-256 of the certificate.
    pub pin_cert_sha256: Vec<String>,
    /// Base64 SHA-256 of the SubjectPublicKeyInfo.
    pub pin_spki_sha256: Vec<String>,
}

impl RoutePolicy {
    /// Does this route look at client certificates at all?
    pub fn is_active(&self) -> bool {
        self.required
            || self.anchors.is_some()
            || self.has_allow_list()
            || !self.pin_cert_sha256.is_empty()
            || !self.pin_spki_sha256.is_empty()
    }

    fn has_allow_list(&self) -> bool {
        !(self.allow_subjects.is_empty()
            && self.allow_dns.is_empty()
            && self.allow_uris.is_empty()
            && self.allow_emails.is_empty()
            && self.allow_spiffe.is_empty())
    }

    /// Does the chain lead to one of the route's CAs? (A path check with webpki
    /// against only those anchors; signatures and EKU were already verified at
    /// the handshake, this decides which of the listener's CAs issued it.)
    pub fn chain_under_route_cas(&self, id: &ClientIdentity) -> bool {
        let Some(anchors) = &self.anchors else {
            return true;
        };
        let leaf = CertificateDer::from(id.leaf_der.as_slice());
        let Ok(ee) = webpki::EndEntityCert::try_from(&leaf) else {
            return false;
        };
        let inter: Vec<CertificateDer<'_>> = id
            .chain_der
            .iter()
            .map(|c| CertificateDer::from(c.as_slice()))
            .collect();
        let algs = rustls::crypto::aws_lc_rs::default_provider().signature_verification_algorithms;
        ee.verify_for_usage(
            algs.all,
            anchors,
            &inter,
            UnixTime::now(),
            webpki::KeyUsage::client_auth(),
            None,
            None,
        )
        .is_ok()
    }

    /// The verdict for a request on this route. `route_ca_ok` is the cached
    /// result of [`Self::chain_under_route_cas`] for the connection.
    pub fn check(
        &self,
        id: Option<&Arc<ClientIdentity>>,
        route_ca_ok: impl FnOnce(&ClientIdentity) -> bool,
    ) -> Result<(), Denial> {
        let Some(id) = id else {
            return if self.is_active() {
                Err(Denial::Missing)
            } else {
                Ok(())
            };
        };
        if self.anchors.is_some() && !route_ca_ok(id) {
            return Err(Denial::Untrusted(format!(
                "issuer \"{}\" is not trusted on this route",
                id.issuer_dn
            )));
        }
        if self.has_allow_list() {
            let ok = self
                .allow_subjects
                .iter()
                .any(|p| glob_match(p, &id.subject_dn))
                || self
                    .allow_dns
                    .iter()
                    .any(|p| id.dns.iter().any(|d| dns_match(p, d)))
                || self.allow_uris.iter().any(|p| {
                    id.uris.iter().any(|u| {
                        if let Some(pre) = p.strip_suffix('*') {
                            u.starts_with(pre)
                        } else {
                            u == p
                        }
                    })
                })
                || self
                    .allow_emails
                    .iter()
                    .any(|p| id.emails.iter().any(|e| glob_match(p, e)))
                || self
                    .allow_spiffe
                    .iter()
                    .any(|p| id.spiffe.as_deref().is_some_and(|s| spiffe_match(p, s)));
            if !ok {
                return Err(Denial::Forbidden(format!(
                    "identity \"{}\" matches no allow rule of this route",
                    id.subject_dn
                )));
            }
        }
        if !self.pin_cert_sha256.is_empty() || !self.pin_spki_sha256.is_empty() {
            let pinned = self
                .pin_cert_sha256
                .iter()
                .any(|p| p.eq_ignore_ascii_case(&id.fingerprint_sha256))
                || self
                    .pin_spki_sha256
                    .iter()
                    .any(|p| p == &id.spki_sha256_b64);
            if !pinned {
                return Err(Denial::Forbidden(format!(
                    "certificate {} matches no pin of this route",
                    id.fingerprint_sha256
                )));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn globs() {
        assert!(glob_match("CN=*,O=Payments", "CN=svc-a,O=Payments"));
        assert!(!glob_match("CN=*,O=Payments", "CN=svc-a,O=Payments,OU=x"));
        assert!(glob_match("*O=Payments*", "CN=a,O=Payments,C=US"));
        assert!(glob_match("cn=ADMIN", "CN=admin"));
        assert!(!glob_match("CN=admin", "CN=admin2"));
    }

    #[test]
    fn dns_and_spiffe() {
        assert!(dns_match("*.svc.example.com", "a.svc.example.com"));
        assert!(!dns_match("*.svc.example.com", "a.b.svc.example.com"));
        assert!(!dns_match("*.svc.example.com", "svc.example.com"));
        assert!(spiffe_match(
            "spiffe://example.org/ns/pay/*",
            "spiffe://example.org/ns/pay/sa/api"
        ));
        assert!(!spiffe_match(
            "spiffe://example.org/ns/pay/*",
            "spiffe://example.org/ns/payroll"
        ));
        assert!(spiffe_match(
            "spiffe://example.org/a",
            "spiffe://example.org/a"
        ));
        assert!(!spiffe_match(
            "spiffe://example.org/a",
            "spiffe://example.org/a/b"
        ));
    }
}
