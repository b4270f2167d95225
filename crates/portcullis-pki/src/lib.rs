//! Portcullis' internal CA: a root and an intermediate kept in a directory, issuing
//! short-lived client and server certificates, recording each in a crash-safe inventory,
//! revoking them, and producing what relying parties need (CRLs, OCSP responses, PKCS#12
//! bundles, client snippets).
//!
//! This crate has no async runtime and no HTTP: the gateway serves its CRL and OCSP
//! output, and the CLI drives the rest. See docs/pki.md.
#![forbid(unsafe_code)]

mod atomic_file;
mod bundle;
mod ca;
mod crl;
mod enroll;
mod error;
mod inventory;
mod key;
pub mod ocsp;
mod revocation;
mod snippet;

pub use atomic_file::{write_private_file, write_public_file};
pub use bundle::{Issued, IssuedPaths};
pub use ca::{
    Ca, CaConfig, CaInitOptions, ClientRequest, DEFAULT_CLIENT_VALIDITY, DEFAULT_SERVER_VALIDITY,
    MAX_CLIENT_VALIDITY, MAX_SERVER_VALIDITY,
};
pub use crl::{Crl, DEFAULT_CRL_VALIDITY};
pub use enroll::{NewToken, MAX_TOKEN_TTL};
pub use error::PkiError;
pub use inventory::{
    normalize_serial, rfc3339, CertKind, CertRecord, Inventory, InventoryState, Revocation,
    TokenRecord,
};
pub use key::KeyAlgorithm;
pub use revocation::RevocationReason;
pub use snippet::{client_snippets, SnippetPaths};
