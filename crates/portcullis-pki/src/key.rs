//! Key algorithms, key generation and passphrase-encrypted PKCS#8.
//!
//! Owns: which algorithms the CA offers, how a key is generated for each, and the
//! encrypted PKCS#8 (`ENCRYPTED PRIVATE KEY`, PBES2 = PBKDF2-HMAC-SHA256 + AES-256-CBC)
//! format of a root key kept under a passphrase. The format is the standard one, so
//! `openssl pkey -in root.key -passin pass:…` opens it too.
//! Must not: touch the filesystem.

use std::fmt;
use std::str::FromStr;

use aws_lc_rs::cipher::{
    DecryptionContext, PaddedBlockDecryptingKey, PaddedBlockEncryptingKey, UnboundCipherKey,
    AES_256,
};
use rcgen::KeyPair;
use serde::{Deserialize, Serialize};
use yasna::models::ObjectIdentifier;

use crate::PkiError;

/// The key algorithms the CA issues with. The default is ECDSA P-256.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum KeyAlgorithm {
    #[default]
    EcdsaP256,
    EcdsaP384,
    Ed25519,
    Rsa3072,
}

// === impl KeyAlgorithm ===

impl KeyAlgorithm {
    pub const ALL: [KeyAlgorithm; 4] = [
        KeyAlgorithm::EcdsaP256,
        KeyAlgorithm::EcdsaP384,
        KeyAlgorithm::Ed25519,
        KeyAlgorithm::Rsa3072,
    ];

    /// The name used on the command line and in `ca.json`.
    pub fn as_str(self) -> &'static str {
        match self {
            KeyAlgorithm::EcdsaP256 => "ecdsa-p256",
            KeyAlgorithm::EcdsaP384 => "ecdsa-p384",
            KeyAlgorithm::Ed25519 => "ed25519",
            KeyAlgorithm::Rsa3072 => "rsa-3072",
        }
    }

    pub fn signature_algorithm(self) -> &'static rcgen::SignatureAlgorithm {
        match self {
            KeyAlgorithm::EcdsaP256 => &rcgen::PKCS_ECDSA_P256_SHA256,
            KeyAlgorithm::EcdsaP384 => &rcgen::PKCS_ECDSA_P384_SHA384,
            KeyAlgorithm::Ed25519 => &rcgen::PKCS_ED25519,
            KeyAlgorithm::Rsa3072 => &rcgen::PKCS_RSA_SHA256,
        }
    }

    /// Generates a fresh key pair.
    pub fn generate(self) -> Result<KeyPair, PkiError> {
        Ok(match self {
            KeyAlgorithm::Rsa3072 => {
                KeyPair::generate_rsa_for(&rcgen::PKCS_RSA_SHA256, rcgen::RsaKeySize::_3072)?
            }
            other => KeyPair::generate_for(other.signature_algorithm())?,
        })
    }

    pub fn is_rsa(self) -> bool {
        self == KeyAlgorithm::Rsa3072
    }
}

impl FromStr for KeyAlgorithm {
    type Err = PkiError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let norm = s.trim().to_ascii_lowercase().replace('_', "-");
        Ok(match norm.as_str() {
            "ecdsa-p256" | "p256" | "p-256" | "ec" | "ecdsa" => KeyAlgorithm::EcdsaP256,
            "ecdsa-p384" | "p384" | "p-384" => KeyAlgorithm::EcdsaP384,
            "ed25519" => KeyAlgorithm::Ed25519,
            "rsa-3072" | "rsa3072" | "rsa" => KeyAlgorithm::Rsa3072,
            _ => return Err(PkiError::UnknownKeyAlgorithm(s.to_string())),
        })
    }
}

impl fmt::Display for KeyAlgorithm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Loads a key from PEM (unencrypted PKCS#8) with the signature algorithm the CA uses.
pub(crate) fn key_from_pem(pem: &str, alg: KeyAlgorithm) -> Result<KeyPair, rcgen::Error> {
    KeyPair::from_pem_and_sign_algo(pem, alg.signature_algorithm())
}

// === encrypted PKCS#8 ===

const OID_PBES2: &[u64] = &[1, 2, 840, 113549, 1, 5, 13];
const OID_PBKDF2: &[u64] = &[1, 2, 840, 113549, 1, 5, 12];
const OID_HMAC_SHA256: &[u64] = &[1, 2, 840, 113549, 2, 9];
const OID_AES256_CBC: &[u64] = &[2, 16, 840, 1, 101, 3, 4, 1, 42];

/// PBKDF2 iterations for new files (OWASP's 2023 figure for PBKDF2-HMAC-SHA256).
const PBKDF2_ITERATIONS: u32 = 600_000;
/// Refuse to spend more than this on a file someone else wrote.
const PBKDF2_MAX_ITERATIONS: u64 = 10_000_000;

pub(crate) const ENCRYPTED_KEY_TAG: &str = "ENCRYPTED PRIVATE KEY";

/// Encrypts a PKCS#8 DER private key under `passphrase`; returns the PEM text.
pub(crate) fn encrypt_pkcs8_pem(pkcs8_der: &[u8], passphrase: &str) -> Result<String, PkiError> {
    if passphrase.is_empty() {
        return Err(PkiError::InvalidRequest(
            "the root key passphrase is empty".into(),
        ));
    }
    let salt: [u8; 16] = rand::random();
    let mut key = [0u8; 32];
    pbkdf2(passphrase, &salt, PBKDF2_ITERATIONS, &mut key);
    let cipher = UnboundCipherKey::new(&AES_256, &key).map_err(|_| PkiError::Crypto("aes key"))?;
    let enc =
        PaddedBlockEncryptingKey::cbc_pkcs7(cipher).map_err(|_| PkiError::Crypto("aes-cbc"))?;
    let mut data = pkcs8_der.to_vec();
    let ctx = enc
        .encrypt(&mut data)
        .map_err(|_| PkiError::Crypto("aes-cbc encrypt"))?;
    let iv: &[u8] = (&ctx)
        .try_into()
        .map_err(|_| PkiError::Crypto("aes-cbc iv"))?;
    let iv = iv.to_vec();

    let der = yasna::construct_der(|w| {
        w.write_sequence(|w| {
            w.next().write_sequence(|w| {
                w.next().write_oid(&ObjectIdentifier::from_slice(OID_PBES2));
                w.next().write_sequence(|w| {
                    w.next().write_sequence(|w| {
                        w.next()
                            .write_oid(&ObjectIdentifier::from_slice(OID_PBKDF2));
                        w.next().write_sequence(|w| {
                            w.next().write_bytes(&salt);
                            w.next().write_u32(PBKDF2_ITERATIONS);
                            w.next().write_sequence(|w| {
                                w.next()
                                    .write_oid(&ObjectIdentifier::from_slice(OID_HMAC_SHA256));
                                w.next().write_null();
                            });
                        });
                    });
                    w.next().write_sequence(|w| {
                        w.next()
                            .write_oid(&ObjectIdentifier::from_slice(OID_AES256_CBC));
                        w.next().write_bytes(&iv);
                    });
                });
            });
            w.next().write_bytes(&data);
        })
    });
    Ok(pem_encode(ENCRYPTED_KEY_TAG, der))
}

struct Pbes2 {
    salt: Vec<u8>,
    iterations: u64,
    iv: Vec<u8>,
    data: Vec<u8>,
}

/// Decrypts an `ENCRYPTED PRIVATE KEY` PEM; returns the PKCS#8 DER.
pub(crate) fn decrypt_pkcs8_pem(pem_text: &str, passphrase: &str) -> Result<Vec<u8>, PkiError> {
    let unsupported = || {
        PkiError::InvalidRequest(
            "encrypted key uses an unsupported scheme (expected PBES2 with PBKDF2-HMAC-SHA256 and AES-256-CBC)"
                .into(),
        )
    };
    let block = pem::parse(pem_text).map_err(|_| PkiError::WrongPassphrase)?;
    if block.tag() != ENCRYPTED_KEY_TAG {
        return Err(PkiError::InvalidRequest(format!(
            "expected an {ENCRYPTED_KEY_TAG} PEM block, found {}",
            block.tag()
        )));
    }
    let parsed = yasna::parse_der(block.contents(), |r| {
        r.read_sequence(|r| {
            let (ok, salt, iterations, iv) = r.next().read_sequence(|r| {
                let pbes2 = r.next().read_oid()? == ObjectIdentifier::from_slice(OID_PBES2);
                r.next().read_sequence(|r| {
                    let (kdf_ok, salt, iterations) = r.next().read_sequence(|r| {
                        let is_pbkdf2 =
                            r.next().read_oid()? == ObjectIdentifier::from_slice(OID_PBKDF2);
                        r.next().read_sequence(|r| {
                            let salt = r.next().read_bytes()?;
                            let iterations = r.next().read_u64()?;
                            let _key_len = r.read_optional(|r| r.read_u64())?;
                            let prf = r.read_optional(|r| {
                                r.read_sequence(|r| {
                                    let oid = r.next().read_oid()?;
                                    r.read_optional(|r| r.read_null())?;
                                    Ok(oid)
                                })
                            })?;
                            let prf_ok = prf == Some(ObjectIdentifier::from_slice(OID_HMAC_SHA256));
                            Ok((is_pbkdf2 && prf_ok, salt, iterations))
                        })
                    })?;
                    let (enc_ok, iv) = r.next().read_sequence(|r| {
                        let is_aes =
                            r.next().read_oid()? == ObjectIdentifier::from_slice(OID_AES256_CBC);
                        let iv = r.next().read_bytes()?;
                        Ok((is_aes, iv))
                    })?;
                    Ok((pbes2 && kdf_ok && enc_ok, salt, iterations, iv))
                })
            })?;
            let data = r.next().read_bytes()?;
            Ok((
                ok,
                Pbes2 {
                    salt,
                    iterations,
                    iv,
                    data,
                },
            ))
        })
    })
    .map_err(|_| unsupported())?;
    let (ok, p) = parsed;
    if !ok || p.iv.len() != 16 || p.iterations == 0 || p.iterations > PBKDF2_MAX_ITERATIONS {
        return Err(unsupported());
    }
    let mut key = [0u8; 32];
    pbkdf2(passphrase, &p.salt, p.iterations as u32, &mut key);
    let cipher = UnboundCipherKey::new(&AES_256, &key).map_err(|_| PkiError::Crypto("aes key"))?;
    let dec =
        PaddedBlockDecryptingKey::cbc_pkcs7(cipher).map_err(|_| PkiError::Crypto("aes-cbc"))?;
    let mut iv = [0u8; 16];
    iv.copy_from_slice(&p.iv);
    let mut data = p.data;
    let plain = dec
        .decrypt(&mut data, DecryptionContext::Iv128(iv.into()))
        .map_err(|_| PkiError::WrongPassphrase)?;
    Ok(plain.to_vec())
}

fn pbkdf2(passphrase: &str, salt: &[u8], iterations: u32, out: &mut [u8]) {
    let iterations =
        std::num::NonZeroU32::new(iterations.max(1)).unwrap_or(std::num::NonZeroU32::MIN);
    aws_lc_rs::pbkdf2::derive(
        aws_lc_rs::pbkdf2::PBKDF2_HMAC_SHA256,
        iterations,
        salt,
        passphrase.as_bytes(),
        out,
    );
}

/// PEM with LF line endings, 64 columns.
pub(crate) fn pem_encode(tag: &str, der: impl Into<Vec<u8>>) -> String {
    pem::encode_config(
        &pem::Pem::new(tag, der),
        pem::EncodeConfig::new().set_line_ending(pem::LineEnding::LF),
    )
}

const OID_ED25519: &[u64] = &[1, 3, 101, 112];

/// The PKCS#8 PEM of a key as written to disk. Ed25519 keys are written as PKCS#8 v1
/// (RFC 8410 without the optional public key): OpenSSL 3.0 cannot read the v2 form that
/// aws-lc generates.
pub(crate) fn private_key_pem(key: &KeyPair) -> String {
    pem_encode("PRIVATE KEY", portable_pkcs8(key.serialized_der()))
}

/// PKCS#8 DER that every consumer reads (see [`private_key_pem`]).
pub(crate) fn portable_pkcs8(der: &[u8]) -> Vec<u8> {
    let v1 = yasna::parse_der(der, |r| {
        r.read_sequence(|r| {
            let version = r.next().read_u8()?;
            let alg = r.next().read_sequence(|r| r.next().read_oid())?;
            let private = r.next().read_bytes()?;
            // attributes [0] and publicKey [1] are dropped.
            let _ = r.read_optional(|r| {
                r.read_tagged_implicit(yasna::Tag::context(0), |r| r.read_der())
            })?;
            let _ = r.read_optional(|r| {
                r.read_tagged_implicit(yasna::Tag::context(1), |r| r.read_der())
            })?;
            Ok((version, alg, private))
        })
    });
    match v1 {
        Ok((1, alg, private)) if alg == ObjectIdentifier::from_slice(OID_ED25519) => {
            yasna::construct_der(|w| {
                w.write_sequence(|w| {
                    w.next().write_u8(0);
                    w.next().write_sequence(|w| {
                        w.next().write_oid(&alg);
                    });
                    w.next().write_bytes(&private);
                })
            })
        }
        _ => der.to_vec(),
    }
}
