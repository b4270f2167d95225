//! Client-certificate verification for one listener.
//!
//! Owns the rustls `ClientCertVerifier`: path building and signature checks
//! by webpki against the listener's CAs, the clientAuth EKU (required by
//! default), a maximum chain depth (nginx's ssl_verify_depth), and CRLs
//! (whole chain or leaf only; an expired CRL rejects or is ignored with a
//! warning, by config). It also classifies every failure into a stable
//! reason for logs and metrics. It does not decide per-route policy.

use std::fmt;
use std::sync::Arc;

use rustls::client::danger::HandshakeSignatureValid;
use rustls::crypto::WebPkiSupportedAlgorithms;
use rustls::pki_types::{CertificateDer, CertificateRevocationListDer, UnixTime};
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::{
    CertificateError, DigitallySignedStruct, DistinguishedName, OtherError, SignatureScheme,
};
use webpki::{CertRevocationList, OwnedCertRevocationList};

/// Does the leaf carry an extended key usage that includes clientAuth?
fn leaf_has_client_auth(der: &CertificateDer<'_>) -> bool {
    use x509_parser::prelude::*;
    match X509Certificate::from_der(der.as_ref()) {
        Ok((_, c)) => {
            matches!(c.extended_key_usage(), Ok(Some(eku)) if eku.value.client_auth || eku.value.any)
        }
        Err(_) => false,
    }
}

/// What to check against CRLs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CrlScope {
    Chain,
    Leaf,
}

/// What an expired CRL means.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CrlExpiredPolicy {
    Reject,
    Warn,
}

/// Settings of one listener's verifier.
#[derive(Debug, Clone)]
pub struct VerifierSettings {
    pub mandatory: bool,
    /// Issuers allowed above the leaf (intermediates + the trust anchor).
    pub verify_depth: usize,
    pub require_client_auth_eku: bool,
    pub crl_scope: CrlScope,
    pub crl_expired: CrlExpiredPolicy,
}

/// The chain is longer than `verify_depth` allows.
#[derive(Debug)]
pub struct ChainTooLong {
    pub depth: usize,
    pub max: usize,
}

impl fmt::Display for ChainTooLong {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "certificate chain depth {} exceeds verify_depth {}",
            self.depth, self.max
        )
    }
}

impl std::error::Error for ChainTooLong {}

/// The listener's client-certificate verifier.
pub struct ClientVerifier {
    anchors: Vec<rustls_pki_types::TrustAnchor<'static>>,
    hints: Vec<DistinguishedName>,
    crls: Vec<CertRevocationList<'static>>,
    settings: VerifierSettings,
    algs: WebPkiSupportedAlgorithms,
}

impl fmt::Debug for ClientVerifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ClientVerifier")
            .field("anchors", &self.anchors.len())
            .field("crls", &self.crls.len())
            .field("settings", &self.settings)
            .finish()
    }
}

/// Why a verifier could not be built.
#[derive(Debug, thiserror::Error)]
pub enum VerifierError {
    #[error("CA certificate #{0} is not a usable trust anchor: {1}")]
    Anchor(usize, String),
    #[error("CRL #{0} cannot be parsed: {1}")]
    Crl(usize, String),
    #[error("no client CA given")]
    NoRoots,
}

impl ClientVerifier {
    pub fn new(
        roots: &[CertificateDer<'static>],
        crls: &[CertificateRevocationListDer<'static>],
        settings: VerifierSettings,
        algs: WebPkiSupportedAlgorithms,
    ) -> Result<ClientVerifier, VerifierError> {
        if roots.is_empty() {
            return Err(VerifierError::NoRoots);
        }
        let mut anchors = Vec::new();
        let mut hints = Vec::new();
        for (i, r) in roots.iter().enumerate() {
            let ta = webpki::anchor_from_trusted_cert(r)
                .map_err(|e| VerifierError::Anchor(i + 1, format!("{e:?}")))?
                .to_owned();
            hints.push(DistinguishedName::in_sequence(ta.subject.as_ref()));
            anchors.push(ta);
        }
        let mut parsed = Vec::new();
        for (i, c) in crls.iter().enumerate() {
            let owned = OwnedCertRevocationList::from_der(c.as_ref())
                .map_err(|e| VerifierError::Crl(i + 1, format!("{e:?}")))?;
            parsed.push(CertRevocationList::Owned(owned));
        }
        Ok(ClientVerifier {
            anchors,
            hints,
            crls: parsed,
            settings,
            algs,
        })
    }
}

/// Maps webpki's verdict to the rustls error (and so to the TLS alert).
fn to_rustls(e: webpki::Error) -> rustls::Error {
    use webpki::Error as W;
    let ce = match e {
        W::CertExpired { time, not_after } => CertificateError::ExpiredContext { time, not_after },
        W::CertNotValidYet { time, not_before } => {
            CertificateError::NotValidYetContext { time, not_before }
        }
        W::InvalidCertValidity => CertificateError::Expired,
        W::UnknownIssuer => CertificateError::UnknownIssuer,
        W::CertRevoked => CertificateError::Revoked,
        W::UnknownRevocationStatus => CertificateError::UnknownRevocationStatus,
        W::CrlExpired { time, next_update } => {
            CertificateError::ExpiredRevocationListContext { time, next_update }
        }
        W::InvalidSignatureForPublicKey => CertificateError::BadSignature,
        W::BadDer | W::BadDerTime | W::TrailingData(_) => CertificateError::BadEncoding,
        #[allow(deprecated)]
        W::RequiredEkuNotFound | W::RequiredEkuNotFoundContext(_) => {
            CertificateError::InvalidPurpose
        }
        other => CertificateError::Other(OtherError(Arc::new(other))),
    };
    rustls::Error::InvalidCertificate(ce)
}

impl ClientCertVerifier for ClientVerifier {
    fn offer_client_auth(&self) -> bool {
        true
    }

    fn client_auth_mandatory(&self) -> bool {
        self.settings.mandatory
    }

    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        &self.hints
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        let cert = webpki::EndEntityCert::try_from(end_entity).map_err(to_rustls)?;
        let crl_refs: Vec<&CertRevocationList<'_>> = self.crls.iter().collect();
        let revocation = if crl_refs.is_empty() {
            None
        } else {
            webpki::RevocationOptionsBuilder::new(&crl_refs)
                .ok()
                .map(|b| {
                    b.with_depth(match self.settings.crl_scope {
                        CrlScope::Chain => webpki::RevocationCheckDepth::Chain,
                        CrlScope::Leaf => webpki::RevocationCheckDepth::EndEntity,
                    })
                    // A certificate whose issuer published no CRL here is not "unknown": only
                    // the CAs the operator gave CRLs for are checked.
                    .with_status_policy(webpki::UnknownStatusPolicy::Allow)
                    .with_expiration_policy(match self.settings.crl_expired {
                        CrlExpiredPolicy::Reject => webpki::ExpirationPolicy::Enforce,
                        CrlExpiredPolicy::Warn => webpki::ExpirationPolicy::Ignore,
                    })
                    .build()
                })
        };
        // webpki applies EKU rules to every certificate of the path, so "required" would refuse
        // intermediates without an EKU extension; the leaf's EKU is checked strictly below.
        let path = cert
            .verify_for_usage(
                self.algs.all,
                &self.anchors,
                intermediates,
                now,
                webpki::KeyUsage::client_auth(),
                revocation,
                None,
            )
            .map_err(to_rustls)?;
        if self.settings.require_client_auth_eku && !leaf_has_client_auth(end_entity) {
            return Err(rustls::Error::InvalidCertificate(
                CertificateError::InvalidPurpose,
            ));
        }
        let depth = path.intermediate_certificates().count() + 1;
        if depth > self.settings.verify_depth {
            return Err(rustls::Error::InvalidCertificate(CertificateError::Other(
                OtherError(Arc::new(ChainTooLong {
                    depth,
                    max: self.settings.verify_depth,
                })),
            )));
        }
        Ok(ClientCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.algs)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.algs)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.algs.supported_schemes()
    }
}

/// A stable name for why a TLS handshake failed, for logs and metrics:
/// no_certificate, unknown_ca, expired, not_yet_valid, revoked, wrong_eku,
/// chain_too_long, bad_signature, crl_expired, protocol_version, other.
pub fn failure_reason(err: &std::io::Error) -> &'static str {
    let Some(inner) = err.get_ref() else {
        return if err.kind() == std::io::ErrorKind::UnexpectedEof {
            "client_closed"
        } else {
            "io"
        };
    };
    let Some(re) = inner.downcast_ref::<rustls::Error>() else {
        return "other";
    };
    rustls_reason(re)
}

/// As [`failure_reason`], from a rustls error.
pub fn rustls_reason(re: &rustls::Error) -> &'static str {
    use rustls::Error as R;
    match re {
        R::NoCertificatesPresented => "no_certificate",
        R::InvalidCertificate(ce) => match ce {
            CertificateError::UnknownIssuer => "unknown_ca",
            CertificateError::Expired | CertificateError::ExpiredContext { .. } => "expired",
            CertificateError::NotValidYet | CertificateError::NotValidYetContext { .. } => {
                "not_yet_valid"
            }
            CertificateError::Revoked => "revoked",
            CertificateError::InvalidPurpose | CertificateError::InvalidPurposeContext { .. } => {
                "wrong_eku"
            }
            CertificateError::BadSignature => "bad_signature",
            CertificateError::ExpiredRevocationList
            | CertificateError::ExpiredRevocationListContext { .. } => "crl_expired",
            CertificateError::Other(OtherError(e))
                if e.downcast_ref::<ChainTooLong>().is_some() =>
            {
                "chain_too_long"
            }
            CertificateError::Other(OtherError(e))
                if matches!(
                    e.downcast_ref::<webpki::Error>(),
                    Some(webpki::Error::MaximumPathDepthExceeded)
                ) =>
            {
                "chain_too_long"
            }
            _ => "bad_certificate",
        },
        R::PeerIncompatible(rustls::PeerIncompatible::Tls12NotOffered)
        | R::PeerIncompatible(rustls::PeerIncompatible::Tls12NotOfferedOrEnabled)
        | R::PeerIncompatible(rustls::PeerIncompatible::SupportedVersionsExtensionRequired) => {
            "protocol_version"
        }
        R::PeerIncompatible(_) => "incompatible",
        R::InvalidMessage(_) => "bad_message",
        _ => "other",
    }
}
