//! The crate's one error type. Every variant says what went wrong and, where the operator
//! can act, what to do about it. Nothing in this crate panics on operator or client input.

use std::path::PathBuf;

/// Errors from the internal CA.
#[derive(Debug, thiserror::Error)]
pub enum PkiError {
    #[error("{path}: a CA already exists here; refusing to overwrite it (choose another --dir or remove the old CA deliberately)")]
    AlreadyExists { path: PathBuf },

    #[error("{path}: no CA found (run `portcullis ca init --dir {path}` first)")]
    NotFound { path: PathBuf },

    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },

    #[error("{path}: {reason}")]
    Corrupt { path: PathBuf, reason: String },

    #[error(
        "unknown key algorithm {0:?} (expected one of: ecdsa-p256, ecdsa-p384, ed25519, rsa-3072)"
    )]
    UnknownKeyAlgorithm(String),

    #[error("wrong passphrase for the encrypted key, or the key file is damaged")]
    WrongPassphrase,

    #[error("the root key is encrypted: a passphrase is needed")]
    PassphraseRequired,

    #[error("invalid request: {0}")]
    InvalidRequest(String),

    #[error("validity {requested_days:.2} days is over the maximum of {max_days} days")]
    ValidityTooLong { requested_days: f64, max_days: u64 },

    #[error("invalid CSR: {0}")]
    InvalidCsr(String),

    #[error(
        "no certificate with serial or name {0:?} in the inventory (see `portcullis cert list`)"
    )]
    UnknownCertificate(String),

    #[error("{0:?} matches several certificates ({1}); give the serial instead")]
    AmbiguousName(String, String),

    #[error("certificate {0} is already revoked")]
    AlreadyRevoked(String),

    #[error("certificate {serial} cannot be renewed: {reason}")]
    RenewalRefused { serial: String, reason: String },

    #[error("enrollment token refused: {0}")]
    TokenRefused(&'static str),

    #[error("unknown revocation reason {0:?} (expected one of: unspecified, keyCompromise, caCompromise, affiliationChanged, superseded, cessationOfOperation, certificateHold, privilegeWithdrawn, aaCompromise)")]
    UnknownReason(String),

    #[error("malformed OCSP request: {0}")]
    OcspMalformed(String),

    #[error("certificate generation failed: {0}")]
    Rcgen(#[from] rcgen::Error),

    #[error("PKCS#12 export failed: {0}")]
    Pkcs12(String),

    #[error("cryptographic operation failed: {0}")]
    Crypto(&'static str),
}

impl PkiError {
    pub(crate) fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        PkiError::Io {
            path: path.into(),
            source,
        }
    }

    pub(crate) fn corrupt(path: impl Into<PathBuf>, reason: impl Into<String>) -> Self {
        PkiError::Corrupt {
            path: path.into(),
            reason: reason.into(),
        }
    }
}
