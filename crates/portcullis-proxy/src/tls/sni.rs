//! SNI certificate selection for one listener.
//!
//! Owns the name → certificate table: exact names first, then the longest
//! wildcard suffix, then the default. Several certificates may serve one name
//! (an ECDSA and an RSA one); the first whose key can sign with a scheme the
//! client offers wins.

use std::collections::HashMap;
use std::sync::Arc;

use rustls::crypto::CryptoProvider;
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;

use super::TlsError;
use crate::config::CertifiedKeyConfig;

#[derive(Debug)]
pub struct SniResolver {
    exact: HashMap<String, Vec<Arc<CertifiedKey>>>,
    /// ".example.com" → certificates for "*.example.com".
    wildcard: HashMap<String, Vec<Arc<CertifiedKey>>>,
    default: Vec<Arc<CertifiedKey>>,
}

impl SniResolver {
    /// `staple` gives the current OCSP response of a leaf (DER), if stapling.
    pub fn build(
        certs: &[CertifiedKeyConfig],
        provider: &CryptoProvider,
        staple: &dyn Fn(&[u8]) -> Option<Vec<u8>>,
    ) -> Result<Self, TlsError> {
        let mut r = SniResolver {
            exact: HashMap::new(),
            wildcard: HashMap::new(),
            default: Vec::new(),
        };
        let mut first = Vec::new();
        for c in certs {
            let mut ck = CertifiedKey::from_der(c.chain.clone(), c.key.clone_key(), provider)?;
            if let Some(leaf) = c.chain.first() {
                ck.ocsp = staple(leaf.as_ref());
            }
            let ck = Arc::new(ck);
            for n in &c.names {
                match n.strip_prefix('*') {
                    Some(suffix) => r
                        .wildcard
                        .entry(suffix.to_string())
                        .or_default()
                        .push(ck.clone()),
                    None => r.exact.entry(n.clone()).or_default().push(ck.clone()),
                }
            }
            if c.default {
                r.default.push(ck.clone());
            }
            first.push(ck);
        }
        if r.default.is_empty() {
            // No explicit default: the first certificate (and any other of a different key type).
            r.default = first;
        }
        Ok(r)
    }

    fn candidates(&self, sni: Option<&str>) -> &[Arc<CertifiedKey>] {
        if let Some(name) = sni {
            let name = name.trim_end_matches('.');
            let lower;
            let name = if name.bytes().any(|b| b.is_ascii_uppercase()) {
                lower = name.to_ascii_lowercase();
                lower.as_str()
            } else {
                name
            };
            if let Some(v) = self.exact.get(name) {
                return v;
            }
            // A wildcard covers exactly one label: "*.example.com" matches "a.example.com".
            if let Some(dot) = name.find('.') {
                if let Some(v) = self.wildcard.get(&name[dot..]) {
                    return v;
                }
            }
        }
        &self.default
    }
}

impl ResolvesServerCert for SniResolver {
    fn resolve(&self, hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        let schemes = hello.signature_schemes();
        let cands = self.candidates(hello.server_name());
        cands
            .iter()
            .find(|ck| ck.key.choose_scheme(schemes).is_some())
            .or_else(|| cands.first())
            .cloned()
    }
}
