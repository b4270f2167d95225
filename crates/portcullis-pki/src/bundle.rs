//! What an issue hands out: the certificate, its key (unless a CSR was signed) and the
//! chain, and how they are written to disk.
//! Owns: file names and modes of a bundle. Must not: record anything (the CA already did).

use std::path::{Path, PathBuf};
use std::time::SystemTime;

use crate::atomic_file::{write_private_file, write_public_file};
use crate::PkiError;

/// A freshly issued certificate. It is in the inventory before this value exists.
#[derive(Clone)]
pub struct Issued {
    /// Lowercase hex, 32 digits.
    pub serial_hex: String,
    pub cert_pem: String,
    /// `None` when a CSR was signed: the key never left the client.
    pub key_pem: Option<String>,
    /// Leaf + intermediate: what a TLS peer presents.
    pub chain_pem: String,
    pub not_after: SystemTime,
}

impl std::fmt::Debug for Issued {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Issued")
            .field("serial_hex", &self.serial_hex)
            .field("key_pem", &self.key_pem.as_ref().map(|_| "<redacted>"))
            .field("not_after", &self.not_after)
            .finish_non_exhaustive()
    }
}

/// Where [`Issued::write_to`] put the files.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IssuedPaths {
    /// `stem.crt`: leaf + intermediate.
    pub cert: PathBuf,
    /// `stem.key`, mode 0600; `None` when a CSR was signed.
    pub key: Option<PathBuf>,
}

// === impl Issued ===

impl Issued {
    /// Writes `stem.crt` (leaf + intermediate) and `stem.key` (0600) into `dir`, each
    /// atomically. The key is written first, so a `stem.crt` on disk always has its key.
    pub fn write_to(&self, dir: &Path, stem: &str) -> Result<IssuedPaths, PkiError> {
        if stem.is_empty()
            || stem.contains('/')
            || stem.contains('\\')
            || stem == "."
            || stem == ".."
        {
            return Err(PkiError::InvalidRequest(format!(
                "{stem:?} is not a usable file name stem"
            )));
        }
        std::fs::create_dir_all(dir).map_err(|e| PkiError::io(dir, e))?;
        let key = match &self.key_pem {
            Some(k) => {
                let p = dir.join(format!("{stem}.key"));
                write_private_file(&p, k.as_bytes())?;
                Some(p)
            }
            None => None,
        };
        let cert = dir.join(format!("{stem}.crt"));
        write_public_file(&cert, self.chain_pem.as_bytes())?;
        Ok(IssuedPaths { cert, key })
    }
}
