//! Enrollment tokens and renewal: how a client gets its first certificate without ever
//! sending its key, and the next one with the same identity.
//!
//! Tokens are one-time secrets with a TTL; only their SHA-256 is stored. Redeeming checks
//! and burns the token in one inventory transaction, so it works once even when two
//! requests race. Renewal signs a new CSR with the identity recorded for the current
//! certificate (never the CSR's subject) and refuses revoked, expired or unknown ones.
//! Must not: authenticate the caller over TLS (the gateway does that before calling here).

use std::time::Duration;

use aws_lc_rs::digest;

use crate::bundle::Issued;
use crate::ca::{csr_public_key, pem_der, Ca, ClientRequest};
use crate::crl::hex_encode;
use crate::inventory::{now_unix, CertKind, CertRecord, Event, TokenRecord};
use crate::PkiError;

/// Longest allowed token lifetime.
pub const MAX_TOKEN_TTL: Duration = Duration::from_secs(7 * 86_400);
const TOKEN_PREFIX: &str = "pct_";

/// A token as handed to the operator: the secret is shown once and never stored.
#[derive(Clone)]
pub struct NewToken {
    pub secret: String,
    pub record: TokenRecord,
}

impl std::fmt::Debug for NewToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NewToken")
            .field("secret", &"<redacted>")
            .field("record", &self.record)
            .finish()
    }
}

fn token_hash(secret: &str) -> String {
    hex_encode(digest::digest(&digest::SHA256, secret.trim().as_bytes()).as_ref())
}

// === impl Ca (enrollment) ===

impl Ca {
    /// Creates a one-time enrollment token for client `name`, valid for `ttl`.
    pub fn create_token(&self, name: &str, ttl: Duration) -> Result<NewToken, PkiError> {
        let name = name.trim();
        if name.is_empty() || name.len() > 64 || name.chars().any(char::is_control) {
            return Err(PkiError::InvalidRequest(format!(
                "client name {name:?} must be 1 to 64 printable characters"
            )));
        }
        if ttl.is_zero() || ttl > MAX_TOKEN_TTL {
            return Err(PkiError::InvalidRequest(format!(
                "token TTL must be between 1 second and {} days",
                MAX_TOKEN_TTL.as_secs() / 86_400
            )));
        }
        let bytes: [u8; 32] = rand::random();
        let secret = format!("{TOKEN_PREFIX}{}", hex_encode(&bytes));
        let sha256 = token_hash(&secret);
        let now = now_unix();
        let record = TokenRecord {
            id: sha256[..16].to_string(),
            name: name.to_string(),
            sha256,
            created_at: now,
            expires_at: now + ttl.as_secs() as i64,
            redeemed_at: None,
        };
        self.inventory()
            .append(&[Event::TokenCreated(record.clone())])?;
        Ok(NewToken { secret, record })
    }

    /// Redeems a token with the client's CSR: burns the token, then issues a client
    /// certificate named after the token for `validity` (default 30 days).
    pub fn redeem_token(
        &self,
        secret: &str,
        csr_pem: &str,
        validity: Option<Duration>,
    ) -> Result<Issued, PkiError> {
        // Check the CSR before burning the token: a typo should not cost a token.
        csr_public_key(csr_pem)?;
        let hash = token_hash(secret);
        let name = self.inventory().transact(|state| {
            let tok = state
                .tokens
                .values()
                .find(|t| constant_time_eq(t.sha256.as_bytes(), hash.as_bytes()))
                .ok_or(PkiError::TokenRefused("unknown token"))?;
            if tok.redeemed_at.is_some() {
                return Err(PkiError::TokenRefused("token already used"));
            }
            let now = now_unix();
            if now >= tok.expires_at {
                return Err(PkiError::TokenRefused("token expired"));
            }
            Ok((
                vec![Event::TokenRedeemed {
                    id: tok.id.clone(),
                    at: now,
                }],
                tok.name.clone(),
            ))
        })?;
        let mut req = ClientRequest::new(name);
        if let Some(v) = validity {
            req.validity = v;
        }
        req.csr_pem = Some(csr_pem.to_string());
        self.issue_client(&req)
    }

    /// Renews the client certificate `current_cert_pem` (the one the caller authenticated
    /// with) for the key in `csr_pem`, keeping its name and SANs. `validity` defaults to
    /// the current certificate's lifetime, capped at the maximum.
    pub fn renew(
        &self,
        current_cert_pem: &str,
        csr_pem: &str,
        validity: Option<Duration>,
    ) -> Result<Issued, PkiError> {
        let der = pem_der(current_cert_pem, "CERTIFICATE")
            .ok_or_else(|| PkiError::InvalidRequest("current certificate is not PEM".into()))?;
        let (_, cert) = x509_parser::parse_x509_certificate(&der)
            .map_err(|e| PkiError::InvalidRequest(format!("current certificate: {e}")))?;
        let serial = hex_encode(cert.raw_serial())
            .trim_start_matches("00")
            .to_string();
        let state = self.state()?;
        let refuse = |reason: &str| PkiError::RenewalRefused {
            serial: serial.clone(),
            reason: reason.to_string(),
        };
        let rec = state
            .certs
            .get(&serial)
            .ok_or_else(|| refuse("not issued by this CA"))?;
        let rec_der = pem_der(&rec.cert_pem, "CERTIFICATE");
        if rec_der.as_deref() != Some(der.as_slice()) {
            return Err(refuse("does not match the certificate on record"));
        }
        if rec.kind != CertKind::Client {
            return Err(refuse("only client certificates renew"));
        }
        if rec.revoked.is_some() {
            return Err(refuse("it is revoked"));
        }
        let now = now_unix();
        if now >= rec.not_after || now < rec.not_before {
            return Err(refuse("it is expired or not yet valid"));
        }
        let mut req = request_from_record(rec)?;
        let lifetime = Duration::from_secs((rec.not_after - rec.not_before - 60).max(1) as u64);
        req.validity = validity.unwrap_or(lifetime).min(self.max_client_validity());
        req.csr_pem = Some(csr_pem.to_string());
        self.issue_client_inner(&req, Some(rec.serial.clone()))
    }
}

/// The identity of a recorded certificate as a new request.
fn request_from_record(rec: &CertRecord) -> Result<ClientRequest, PkiError> {
    let mut req = ClientRequest::new(rec.name.clone());
    for san in &rec.sans {
        match san.split_once(':') {
            Some(("dns", v)) => req.dns.push(v.to_string()),
            Some(("ip", v)) => req.ips.push(
                v.parse()
                    .map_err(|_| PkiError::corrupt("inventory", format!("bad IP SAN {v:?}")))?,
            ),
            Some(("uri", v)) => req.uris.push(v.to_string()),
            Some(("email", v)) => req.emails.push(v.to_string()),
            _ => {
                return Err(PkiError::corrupt(
                    "inventory",
                    format!("unsupported SAN {san:?}"),
                ))
            }
        }
    }
    Ok(req)
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}
