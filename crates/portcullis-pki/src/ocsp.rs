//! OCSP (RFC 6960) as pure functions: parse a DER `OCSPRequest`, build a signed
//! `BasicOCSPResponse` (good / revoked / unknown), or an unsigned error response.
//!
//! The intermediate answers for the certificates it issued, signing directly (no delegated
//! responder certificate). Status comes from the inventory: a recorded serial is `good`
//! unless revoked, an unrecorded one or one from another issuer is `unknown`.
//! Must not: do any I/O. The gateway serves the bytes (GET with the base64 request in the
//! path, or POST `application/ocsp-request`) as `application/ocsp-response`.

use std::time::Duration;

use aws_lc_rs::digest;
use rcgen::SigningKey;
use time::OffsetDateTime;
use yasna::models::{GeneralizedTime, ObjectIdentifier};
use yasna::{ASN1Error, ASN1ErrorKind, BERReader, Tag};

use crate::ca::Ca;
use crate::crl::hex_encode;
use crate::inventory::{now_unix, InventoryState};
use crate::key::KeyAlgorithm;
use crate::revocation::RevocationReason;
use crate::PkiError;

const OID_SHA1: &[u64] = &[1, 3, 14, 3, 2, 26];
const OID_SHA256: &[u64] = &[2, 16, 840, 1, 101, 3, 4, 2, 1];
const OID_SHA384: &[u64] = &[2, 16, 840, 1, 101, 3, 4, 2, 2];
const OID_SHA512: &[u64] = &[2, 16, 840, 1, 101, 3, 4, 2, 3];
const OID_OCSP_BASIC: &[u64] = &[1, 3, 6, 1, 5, 5, 7, 48, 1, 1];
const OID_OCSP_NONCE: &[u64] = &[1, 3, 6, 1, 5, 5, 7, 48, 1, 2];

/// Default validity of an OCSP answer (its nextUpdate).
pub const DEFAULT_OCSP_VALIDITY: Duration = Duration::from_secs(3600);
/// Requests larger than this are refused before parsing.
pub const MAX_OCSP_REQUEST_LEN: usize = 16 * 1024;
/// At most this many certificates per request.
const MAX_CERTS_PER_REQUEST: usize = 16;

/// `OCSPResponseStatus` values for unsigned error responses.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OcspErrorStatus {
    MalformedRequest = 1,
    InternalError = 2,
    TryLater = 3,
    Unauthorized = 6,
}

/// The hash a `CertID` was computed with.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CertIdHash {
    Sha1,
    Sha256,
    Sha384,
    Sha512,
}

/// One certificate asked about.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CertId {
    pub hash: CertIdHash,
    pub issuer_name_hash: Vec<u8>,
    pub issuer_key_hash: Vec<u8>,
    /// Serial as lowercase hex, no leading zero bytes.
    pub serial_hex: String,
    /// The CertID's DER, echoed in the response.
    raw: Vec<u8>,
}

/// A parsed `OCSPRequest`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OcspRequest {
    pub cert_ids: Vec<CertId>,
    /// The nonce extension's value (echoed in the response).
    pub nonce: Option<Vec<u8>>,
}

/// What the responder said about one certificate.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CertStatus {
    Good,
    Revoked { at: i64, reason: RevocationReason },
    Unknown,
}

// === request parsing ===

/// Parses a DER `OCSPRequest`. Signed requests are accepted; their signature is ignored
/// (RFC 6960 makes it optional and we answer everyone).
pub fn parse_request(der: &[u8]) -> Result<OcspRequest, PkiError> {
    if der.len() > MAX_OCSP_REQUEST_LEN {
        return Err(PkiError::OcspMalformed("request too large".into()));
    }
    let parsed = yasna::parse_der(der, |r| {
        r.read_sequence(|r| {
            let req = r.next().read_sequence(|r| {
                // version [0] EXPLICIT INTEGER DEFAULT v1
                r.read_optional(|r| r.read_tagged(Tag::context(0), |r| r.read_i64()))?;
                // requestorName [1] EXPLICIT GeneralName OPTIONAL
                r.read_optional(|r| r.read_tagged(Tag::context(1), |r| r.read_der()))?;
                let mut cert_ids = Vec::new();
                r.next().read_sequence_of(|r| {
                    let id = r.read_sequence(|r| {
                        let id = read_cert_id(r.next())?;
                        // singleRequestExtensions [0] EXPLICIT OPTIONAL
                        r.read_optional(|r| r.read_tagged(Tag::context(0), |r| r.read_der()))?;
                        Ok(id)
                    })?;
                    if cert_ids.len() >= MAX_CERTS_PER_REQUEST {
                        return Err(ASN1Error::new(ASN1ErrorKind::Invalid));
                    }
                    cert_ids.push(id);
                    Ok(())
                })?;
                let nonce = r
                    .read_optional(|r| r.read_tagged(Tag::context(2), read_nonce))?
                    .flatten();
                Ok(OcspRequest { cert_ids, nonce })
            })?;
            // optionalSignature [0] EXPLICIT OPTIONAL
            r.read_optional(|r| r.read_tagged(Tag::context(0), |r| r.read_der()))?;
            Ok(req)
        })
    })
    .map_err(|e| PkiError::OcspMalformed(e.to_string()))?;
    if parsed.cert_ids.is_empty() {
        return Err(PkiError::OcspMalformed("no certificate asked about".into()));
    }
    Ok(parsed)
}

fn read_cert_id(r: BERReader<'_, '_>) -> Result<CertId, ASN1Error> {
    let raw = r.read_der()?;
    yasna::parse_der(&raw, |r| {
        r.read_sequence(|r| {
            let oid = r.next().read_sequence(|r| {
                let oid = r.next().read_oid()?;
                r.read_optional(|r| r.read_null())?;
                Ok(oid)
            })?;
            let hash = if oid == ObjectIdentifier::from_slice(OID_SHA1) {
                CertIdHash::Sha1
            } else if oid == ObjectIdentifier::from_slice(OID_SHA256) {
                CertIdHash::Sha256
            } else if oid == ObjectIdentifier::from_slice(OID_SHA384) {
                CertIdHash::Sha384
            } else if oid == ObjectIdentifier::from_slice(OID_SHA512) {
                CertIdHash::Sha512
            } else {
                return Err(ASN1Error::new(ASN1ErrorKind::Invalid));
            };
            let issuer_name_hash = r.next().read_bytes()?;
            let issuer_key_hash = r.next().read_bytes()?;
            let (serial, _positive) = r.next().read_bigint_bytes()?;
            let start = serial.iter().position(|b| *b != 0).unwrap_or(serial.len());
            Ok(CertId {
                hash,
                issuer_name_hash,
                issuer_key_hash,
                serial_hex: hex_encode(&serial[start..]),
                raw: raw.clone(),
            })
        })
    })
}

/// Extensions: picks out the nonce.
fn read_nonce(r: BERReader<'_, '_>) -> Result<Option<Vec<u8>>, ASN1Error> {
    let mut nonce = None;
    r.read_sequence_of(|r| {
        r.read_sequence(|r| {
            let oid = r.next().read_oid()?;
            r.read_optional(|r| r.read_bool())?;
            let value = r.next().read_bytes()?;
            if oid == ObjectIdentifier::from_slice(OID_OCSP_NONCE) {
                nonce = Some(value);
            }
            Ok(())
        })
    })?;
    Ok(nonce)
}

// === responses ===

/// An unsigned error response (`malformedRequest`, `internalError`, …).
pub fn error_response(status: OcspErrorStatus) -> Vec<u8> {
    yasna::construct_der(|w| {
        w.write_sequence(|w| {
            w.next().write_enum(status as i64);
        })
    })
}

fn hash(alg: CertIdHash, data: &[u8]) -> Vec<u8> {
    let a = match alg {
        CertIdHash::Sha1 => &digest::SHA1_FOR_LEGACY_USE_ONLY,
        CertIdHash::Sha256 => &digest::SHA256,
        CertIdHash::Sha384 => &digest::SHA384,
        CertIdHash::Sha512 => &digest::SHA512,
    };
    digest::digest(a, data).as_ref().to_vec()
}

fn gen_time(unix: i64) -> GeneralizedTime {
    GeneralizedTime::from_datetime(
        OffsetDateTime::from_unix_timestamp(unix).unwrap_or(OffsetDateTime::UNIX_EPOCH),
    )
}

fn write_sig_alg(w: yasna::DERWriter<'_>, key: KeyAlgorithm) {
    w.write_sequence(|w| {
        let (oid, null): (&[u64], bool) = match key {
            KeyAlgorithm::EcdsaP256 => (&[1, 2, 840, 10045, 4, 3, 2], false),
            KeyAlgorithm::EcdsaP384 => (&[1, 2, 840, 10045, 4, 3, 3], false),
            KeyAlgorithm::Ed25519 => (&[1, 3, 101, 112], false),
            KeyAlgorithm::Rsa3072 => (&[1, 2, 840, 113549, 1, 1, 11], true),
        };
        w.next().write_oid(&ObjectIdentifier::from_slice(oid));
        if null {
            w.next().write_null();
        }
    });
}

// === impl Ca (OCSP) ===

impl Ca {
    /// The status of each certificate in `req` according to `state`.
    pub fn ocsp_status(&self, req: &OcspRequest, state: &InventoryState) -> Vec<CertStatus> {
        let (name_der, key_bits) = match self.intermediate_name_and_key() {
            Ok(v) => v,
            Err(_) => return vec![CertStatus::Unknown; req.cert_ids.len()],
        };
        req.cert_ids
            .iter()
            .map(|id| {
                if hash(id.hash, &name_der) != id.issuer_name_hash
                    || hash(id.hash, &key_bits) != id.issuer_key_hash
                {
                    return CertStatus::Unknown;
                }
                match state.certs.get(&id.serial_hex) {
                    Some(rec) => match &rec.revoked {
                        Some(rev) => CertStatus::Revoked {
                            at: rev.at,
                            reason: rev.reason,
                        },
                        None => CertStatus::Good,
                    },
                    None => CertStatus::Unknown,
                }
            })
            .collect()
    }

    /// A signed `OCSPResponse` (successful, BasicOCSPResponse) for `req`, valid for
    /// `validity`. Echoes the request's nonce.
    pub fn ocsp_response(
        &self,
        req: &OcspRequest,
        state: &InventoryState,
        validity: Duration,
    ) -> Result<Vec<u8>, PkiError> {
        let statuses = self.ocsp_status(req, state);
        let (_, key_bits) = self.intermediate_name_and_key()?;
        let key_hash = hash(CertIdHash::Sha1, &key_bits);
        let now = now_unix();
        let next = now.saturating_add(validity.as_secs().min(i64::MAX as u64) as i64);

        let tbs = yasna::construct_der(|w| {
            w.write_sequence(|w| {
                // responderID byKey [2]
                w.next()
                    .write_tagged(Tag::context(2), |w| w.write_bytes(&key_hash));
                w.next().write_generalized_time(&gen_time(now));
                w.next().write_sequence(|w| {
                    for (id, status) in req.cert_ids.iter().zip(&statuses) {
                        w.next().write_sequence(|w| {
                            w.next().write_der(&id.raw);
                            match status {
                                CertStatus::Good => w
                                    .next()
                                    .write_tagged_implicit(Tag::context(0), |w| w.write_null()),
                                CertStatus::Revoked { at, reason } => {
                                    w.next().write_tagged_implicit(Tag::context(1), |w| {
                                        w.write_sequence(|w| {
                                            w.next().write_generalized_time(&gen_time(*at));
                                            w.next().write_tagged(Tag::context(0), |w| {
                                                w.write_enum(reason.code() as i64)
                                            });
                                        })
                                    })
                                }
                                CertStatus::Unknown => w
                                    .next()
                                    .write_tagged_implicit(Tag::context(2), |w| w.write_null()),
                            }
                            w.next().write_generalized_time(&gen_time(now));
                            w.next().write_tagged(Tag::context(0), |w| {
                                w.write_generalized_time(&gen_time(next))
                            });
                        });
                    }
                });
                if let Some(nonce) = &req.nonce {
                    w.next().write_tagged(Tag::context(1), |w| {
                        w.write_sequence(|w| {
                            w.next().write_sequence(|w| {
                                w.next()
                                    .write_oid(&ObjectIdentifier::from_slice(OID_OCSP_NONCE));
                                w.next().write_bytes(nonce);
                            });
                        });
                    });
                }
            })
        });
        let signature = self.signing_key().sign(&tbs)?;
        let basic = yasna::construct_der(|w| {
            w.write_sequence(|w| {
                w.next().write_der(&tbs);
                write_sig_alg(w.next(), self.config().key);
                w.next().write_bitvec_bytes(&signature, signature.len() * 8);
                // certs [0]: the signer, so clients find it without configuration.
                w.next().write_tagged(Tag::context(0), |w| {
                    w.write_sequence(|w| w.next().write_der(self.intermediate_cert_der()))
                });
            })
        });
        Ok(yasna::construct_der(|w| {
            w.write_sequence(|w| {
                w.next().write_enum(0); // successful
                w.next().write_tagged(Tag::context(0), |w| {
                    w.write_sequence(|w| {
                        w.next()
                            .write_oid(&ObjectIdentifier::from_slice(OID_OCSP_BASIC));
                        w.next().write_bytes(&basic);
                    })
                });
            })
        }))
    }

    /// Request bytes in, response bytes out: what the gateway's responder calls. Any
    /// failure becomes the matching unsigned error response.
    pub fn ocsp_respond(&self, request_der: &[u8], validity: Duration) -> Vec<u8> {
        let req = match parse_request(request_der) {
            Ok(r) => r,
            Err(_) => return error_response(OcspErrorStatus::MalformedRequest),
        };
        let state = match self.state() {
            Ok(s) => s,
            Err(_) => return error_response(OcspErrorStatus::TryLater),
        };
        self.ocsp_response(&req, &state, validity)
            .unwrap_or_else(|_| error_response(OcspErrorStatus::InternalError))
    }

    /// The intermediate's subject Name DER and its subjectPublicKey bits (CertID inputs).
    fn intermediate_name_and_key(&self) -> Result<(Vec<u8>, Vec<u8>), PkiError> {
        let (_, cert) = x509_parser::parse_x509_certificate(self.intermediate_cert_der())
            .map_err(|e| PkiError::corrupt(self.dir().join("intermediate.crt"), e.to_string()))?;
        Ok((
            cert.subject().as_raw().to_vec(),
            cert.public_key().subject_public_key.data.to_vec(),
        ))
    }
}

/// Builds a DER `OCSPRequest` for `serial_hex` issued by `ca` (SHA-1 CertID, the form
/// `openssl ocsp` sends), with an optional nonce. For tests and the agent.
pub fn build_request(ca: &Ca, serial_hex: &str, nonce: Option<&[u8]>) -> Result<Vec<u8>, PkiError> {
    let (name_der, key_bits) = ca.intermediate_name_and_key()?;
    let serial = crate::crl::hex_decode(&crate::inventory::normalize_serial(serial_hex))
        .ok_or_else(|| PkiError::InvalidRequest(format!("{serial_hex:?} is not a hex serial")))?;
    Ok(yasna::construct_der(|w| {
        w.write_sequence(|w| {
            w.next().write_sequence(|w| {
                w.next().write_sequence(|w| {
                    w.next().write_sequence(|w| {
                        w.next().write_sequence(|w| {
                            w.next().write_sequence(|w| {
                                w.next().write_oid(&ObjectIdentifier::from_slice(OID_SHA1));
                                w.next().write_null();
                            });
                            w.next().write_bytes(&hash(CertIdHash::Sha1, &name_der));
                            w.next().write_bytes(&hash(CertIdHash::Sha1, &key_bits));
                            w.next().write_bigint_bytes(&serial, true);
                        });
                    });
                });
                if let Some(n) = nonce {
                    w.next().write_tagged(Tag::context(2), |w| {
                        w.write_sequence(|w| {
                            w.next().write_sequence(|w| {
                                w.next()
                                    .write_oid(&ObjectIdentifier::from_slice(OID_OCSP_NONCE));
                                w.next().write_bytes(n);
                            });
                        });
                    });
                }
            });
        })
    }))
}
