//! Revoking certificates and signing CRLs with the intermediate.
//!
//! Owns: the revoke transaction (check and record under the inventory lock), CRL numbers
//! (recorded in the inventory, so they only grow), CRL contents and where a CRL is written.
//! Must not: serve the CRL (the gateway does) or decide when to re-sign (the caller does,
//! e.g. at revoke time and before `next_update`).

use std::path::Path;
use std::time::{Duration, SystemTime};

use rcgen::{CertificateRevocationListParams, KeyIdMethod, RevokedCertParams, SerialNumber};
use time::OffsetDateTime;

use crate::atomic_file::write_public_file;
use crate::ca::Ca;
use crate::inventory::{now_unix, CertRecord, Event, Revocation};
use crate::key::pem_encode;
use crate::revocation::RevocationReason;
use crate::PkiError;

/// Default time until a CRL's nextUpdate.
pub const DEFAULT_CRL_VALIDITY: Duration = Duration::from_secs(24 * 3600);

/// A signed CRL.
#[derive(Clone, Debug)]
pub struct Crl {
    pub number: u64,
    pub der: Vec<u8>,
    pub pem: String,
    pub this_update: SystemTime,
    pub next_update: SystemTime,
    /// Serials listed, lowercase hex.
    pub revoked_serials: Vec<String>,
}

// === impl Ca (revocation) ===

impl Ca {
    /// Revokes the certificate named by serial or name. Refuses an unknown or already
    /// revoked certificate. Sign a new CRL afterwards ([`Ca::write_crl`]).
    pub fn revoke(
        &self,
        serial_or_name: &str,
        reason: RevocationReason,
    ) -> Result<CertRecord, PkiError> {
        self.inventory().transact(|state| {
            let rec = state.find(serial_or_name)?;
            if rec.revoked.is_some() {
                return Err(PkiError::AlreadyRevoked(rec.serial.clone()));
            }
            let at = now_unix();
            let mut out = rec.clone();
            out.revoked = Some(Revocation { at, reason });
            Ok((
                vec![Event::Revoked {
                    serial: rec.serial.clone(),
                    at,
                    reason,
                }],
                out,
            ))
        })
    }

    /// Signs a CRL of every revoked certificate that has not expired yet, valid for
    /// `next_update` from now. The CRL number is recorded first, so numbers never repeat.
    pub fn sign_crl(&self, next_update: Duration) -> Result<Crl, PkiError> {
        if next_update.is_zero() {
            return Err(PkiError::InvalidRequest(
                "CRL nextUpdate must be in the future".into(),
            ));
        }
        let (number, state) = self.inventory().transact(|state| {
            let number = state.last_crl_number + 1;
            Ok((
                vec![Event::CrlSigned {
                    number,
                    at: now_unix(),
                }],
                (number, state.clone()),
            ))
        })?;
        let now = now_unix();
        let this_update = OffsetDateTime::from_unix_timestamp(now)
            .map_err(|_| PkiError::Crypto("clock out of range"))?;
        let next = this_update
            + time::Duration::try_from(next_update)
                .map_err(|_| PkiError::InvalidRequest("CRL nextUpdate out of range".into()))?;
        let mut revoked_serials = Vec::new();
        let mut revoked_certs = Vec::new();
        for rec in state.revoked() {
            // An expired certificate fails validation anyway (RFC 5280 §3.3).
            if rec.not_after < now {
                continue;
            }
            let Some(rev) = &rec.revoked else { continue };
            let Some(bytes) = hex_decode(&rec.serial) else {
                continue;
            };
            revoked_serials.push(rec.serial.clone());
            revoked_certs.push(RevokedCertParams {
                serial_number: SerialNumber::from_slice(&bytes),
                revocation_time: OffsetDateTime::from_unix_timestamp(rev.at)
                    .map_err(|_| PkiError::Crypto("revocation time out of range"))?,
                reason_code: Some(rev.reason.to_rcgen()),
                invalidity_date: None,
            });
        }
        let params = CertificateRevocationListParams {
            this_update,
            next_update: next,
            crl_number: SerialNumber::from(number),
            issuing_distribution_point: None,
            revoked_certs,
            key_identifier_method: KeyIdMethod::PreSpecified(self.intermediate_key_id()?),
        };
        let crl = params.signed_by(self.issuer())?;
        let der = crl.der().to_vec();
        Ok(Crl {
            number,
            pem: pem_encode("X509 CRL", der.clone()),
            der,
            this_update: SystemTime::from(this_update),
            next_update: SystemTime::from(next),
            revoked_serials,
        })
    }

    /// Signs a CRL and writes it atomically to `path`: DER when the name ends in `.der` or
    /// `.crl`, PEM otherwise.
    pub fn write_crl(&self, path: &Path, next_update: Duration) -> Result<Crl, PkiError> {
        let crl = self.sign_crl(next_update)?;
        let der = matches!(
            path.extension().and_then(|e| e.to_str()),
            Some("der") | Some("crl")
        );
        write_public_file(path, if der { &crl.der } else { crl.pem.as_bytes() })?;
        Ok(crl)
    }

    /// Where `portcullis crl` writes by default: `crl.pem` in the CA directory.
    pub fn default_crl_path(&self) -> std::path::PathBuf {
        self.dir().join("crl.pem")
    }

    /// The intermediate's subject key identifier.
    pub(crate) fn intermediate_key_id(&self) -> Result<Vec<u8>, PkiError> {
        let (_, cert) = x509_parser::parse_x509_certificate(self.intermediate_cert_der())
            .map_err(|e| PkiError::corrupt(self.dir().join("intermediate.crt"), e.to_string()))?;
        for ext in cert.extensions() {
            if let x509_parser::extensions::ParsedExtension::SubjectKeyIdentifier(ki) =
                ext.parsed_extension()
            {
                return Ok(ki.0.to_vec());
            }
        }
        Err(PkiError::corrupt(
            self.dir().join("intermediate.crt"),
            "no subject key identifier",
        ))
    }
}

pub(crate) fn hex_decode(s: &str) -> Option<Vec<u8>> {
    if !s.len().is_multiple_of(2) {
        return None;
    }
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(s.get(i..i + 2)?, 16).ok())
        .collect()
}

pub(crate) fn hex_encode(b: &[u8]) -> String {
    b.iter().map(|b| format!("{b:02x}")).collect()
}
