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

// === PKCS#12 ===

impl Issued {
    /// A password-protected PKCS#12 (.p12) with the key, the leaf, the intermediate and
    /// `root_pem`, for browsers, Java and Windows. PBES2 (PBKDF2-HMAC-SHA256, AES-256-CBC)
    /// and an HMAC-SHA256 MAC: what OpenSSL 3 opens without the legacy provider.
    pub fn to_pkcs12(&self, password: &str, root_pem: &str) -> Result<Vec<u8>, PkiError> {
        use p12_keystore::{
            Certificate, KeyStore, KeyStoreEntry, LocalKeyId, PrivateKey, PrivateKeyChain,
        };
        if password.is_empty() {
            return Err(PkiError::InvalidRequest(
                "the PKCS#12 password is empty".into(),
            ));
        }
        let key_pem = self.key_pem.as_deref().ok_or_else(|| {
            PkiError::InvalidRequest(
                "no private key here (a CSR was signed): build the .p12 where the key lives".into(),
            )
        })?;
        let key_der = crate::ca::pem_der(key_pem, "PRIVATE KEY")
            .ok_or_else(|| PkiError::Pkcs12("the key is not PKCS#8 PEM".into()))?;
        let p12err = |e: p12_keystore::error::Error| PkiError::Pkcs12(e.to_string());
        let mut certs = Vec::new();
        for block in pem::parse_many(&self.chain_pem)
            .map_err(|e| PkiError::Pkcs12(e.to_string()))?
            .iter()
            .chain(
                pem::parse_many(root_pem)
                    .map_err(|e| PkiError::Pkcs12(e.to_string()))?
                    .iter(),
            )
        {
            certs.push(Certificate::from_der(block.contents()).map_err(p12err)?);
        }
        let key = PrivateKey::from_der(&key_der).map_err(p12err)?;
        let local_key_id = LocalKeyId(self.serial_hex.as_bytes().to_vec());
        let chain = PrivateKeyChain::new(local_key_id, key, certs);
        let mut store = KeyStore::new();
        store.add_entry(&self.serial_hex, KeyStoreEntry::PrivateKeyChain(chain));
        store
            .writer(password)
            .encryption_algorithm(p12_keystore::EncryptionAlgorithm::PbeWithHmacSha256AndAes256)
            .mac_algorithm(p12_keystore::MacAlgorithm::HmacSha256)
            .encryption_iterations(100_000)
            .mac_iterations(100_000)
            .write()
            .map_err(p12err)
    }

    /// Writes `stem.p12` (0600) into `dir`.
    pub fn write_pkcs12(
        &self,
        dir: &Path,
        stem: &str,
        password: &str,
        root_pem: &str,
    ) -> Result<PathBuf, PkiError> {
        let der = self.to_pkcs12(password, root_pem)?;
        let p = dir.join(format!("{stem}.p12"));
        write_private_file(&p, &der)?;
        Ok(p)
    }
}
