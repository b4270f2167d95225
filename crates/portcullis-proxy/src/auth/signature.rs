//! HTTP Message Signatures (RFC 9421) over requests, with Content-Digest
//! (RFC 9530).
//!
//! Owns: the signature base (§2.5) for derived components and header fields,
//! parsing of `Signature-Input` / `Signature` (RFC 8941 structured fields via
//! `sfv`), verification against a per-route [`SignaturePolicy`], signing (for
//! `portcullis sign` and tests), key loading (PEM, JWK, raw secrets) and
//! `Content-Digest` (sha-256 / sha-512).
//!
//! Must not: take the algorithm from the message (the key decides; an `alg`
//! parameter must agree with it), accept a signature that leaves a required
//! component uncovered, log or format secret key material, or know about the
//! rest of the gateway (routes, consumers, replay storage live elsewhere; see
//! `replay.rs` for the cache fed by [`Verified::replay_key`]).

use std::fmt;
use std::str::FromStr;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use aws_lc_rs::{digest, hmac, rand::SystemRandom, signature as sig};
use base64::engine::general_purpose::{STANDARD as B64, URL_SAFE_NO_PAD as B64URL};
use base64::Engine as _;
use sfv::{BareItem, FieldType as _, InnerList, Item, ListEntry, Parameters, Parser};

/// How far in the future `created` may be (clock skew between client and
/// gateway).
pub const CREATED_SKEW: Duration = Duration::from_secs(60);

/// At most this many signatures in one message are considered.
const MAX_SIGNATURES: usize = 8;

// === SigAlgorithm ===

/// The RFC 9421 algorithms Portcullis supports.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SigAlgorithm {
    HmacSha256,
    EcdsaP256Sha256,
    Ed25519,
    RsaPssSha512,
}

impl SigAlgorithm {
    pub const ALL: [SigAlgorithm; 4] = [
        SigAlgorithm::HmacSha256,
        SigAlgorithm::EcdsaP256Sha256,
        SigAlgorithm::Ed25519,
        SigAlgorithm::RsaPssSha512,
    ];

    /// The registered `alg` name (RFC 9421 §6.2).
    pub fn name(self) -> &'static str {
        match self {
            SigAlgorithm::HmacSha256 => "hmac-sha256",
            SigAlgorithm::EcdsaP256Sha256 => "ecdsa-p256-sha256",
            SigAlgorithm::Ed25519 => "ed25519",
            SigAlgorithm::RsaPssSha512 => "rsa-pss-sha512",
        }
    }
}

impl fmt::Display for SigAlgorithm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for SigAlgorithm {
    type Err = SigError;
    fn from_str(s: &str) -> Result<Self, SigError> {
        SigAlgorithm::ALL
            .into_iter()
            .find(|a| a.name() == s)
            .ok_or(SigError::UnknownAlgorithm)
    }
}

// === SigError ===

/// Why a signature was refused or could not be made. [`SigError::reason`]
/// is a short, stable, non-secret string for logs and metrics; `Display`
/// adds detail that is safe to log (never key material).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SigError {
    #[error("no Signature-Input / Signature header")]
    MissingSignature,
    #[error("malformed signature field: {0}")]
    Malformed(String),
    #[error("no signature covers the required component {0}")]
    RequiredNotCovered(String),
    #[error("covered component {0} is missing from the message")]
    MissingComponent(String),
    #[error("unsupported component or parameter: {0}")]
    UnsupportedComponent(String),
    #[error("invalid component value for {0}")]
    InvalidComponentValue(String),
    #[error("signature has no keyid")]
    MissingKeyId,
    #[error("unknown keyid")]
    UnknownKey,
    #[error("unknown algorithm")]
    UnknownAlgorithm,
    #[error("algorithm {0} not allowed here")]
    AlgorithmNotAllowed(SigAlgorithm),
    #[error("alg parameter does not match the key's algorithm")]
    AlgorithmMismatch,
    #[error("signature has no created parameter")]
    MissingCreated,
    #[error("signature too old")]
    Stale,
    #[error("signature created in the future")]
    CreatedInFuture,
    #[error("signature expired")]
    Expired,
    #[error("signature has no nonce")]
    MissingNonce,
    #[error("signature does not verify")]
    BadSignature,
    #[error("Content-Digest does not match the body")]
    DigestMismatch,
    #[error("Content-Digest missing or without sha-256 / sha-512")]
    UnsupportedDigest,
    #[error("replayed signature")]
    Replay,
    #[error("bad key: {0}")]
    BadKey(String),
}

impl SigError {
    pub fn reason(&self) -> &'static str {
        match self {
            SigError::MissingSignature => "signature_missing",
            SigError::Malformed(_) => "signature_malformed",
            SigError::RequiredNotCovered(_) => "required_component_not_covered",
            SigError::MissingComponent(_) => "covered_component_missing",
            SigError::UnsupportedComponent(_) => "component_unsupported",
            SigError::InvalidComponentValue(_) => "component_value_invalid",
            SigError::MissingKeyId => "keyid_missing",
            SigError::UnknownKey => "keyid_unknown",
            SigError::UnknownAlgorithm => "alg_unknown",
            SigError::AlgorithmNotAllowed(_) => "alg_not_allowed",
            SigError::AlgorithmMismatch => "alg_mismatch",
            SigError::MissingCreated => "created_missing",
            SigError::Stale => "signature_stale",
            SigError::CreatedInFuture => "created_in_future",
            SigError::Expired => "signature_expired",
            SigError::MissingNonce => "nonce_missing",
            SigError::BadSignature => "signature_invalid",
            SigError::DigestMismatch => "content_digest_mismatch",
            SigError::UnsupportedDigest => "content_digest_unsupported",
            SigError::Replay => "signature_replayed",
            SigError::BadKey(_) => "key_invalid",
        }
    }
}

fn malformed(what: impl Into<String>) -> SigError {
    SigError::Malformed(what.into())
}

// === Keys ===

/// A verification key. Asymmetric keys hold public material only.
#[derive(Clone, PartialEq, Eq)]
pub enum VerifyKey {
    Hmac(Vec<u8>),
    /// SPKI DER or an uncompressed SEC1 point.
    EcdsaP256(Vec<u8>),
    Ed25519([u8; 32]),
    /// SPKI DER (rsaEncryption) or PKCS#1 `RSAPublicKey` DER.
    RsaPss(Vec<u8>),
}

impl fmt::Debug for VerifyKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            VerifyKey::Hmac(_) => f.write_str("VerifyKey::Hmac(<redacted>)"),
            other => write!(f, "VerifyKey::{}", other.algorithm()),
        }
    }
}

impl VerifyKey {
    pub fn algorithm(&self) -> SigAlgorithm {
        match self {
            VerifyKey::Hmac(_) => SigAlgorithm::HmacSha256,
            VerifyKey::EcdsaP256(_) => SigAlgorithm::EcdsaP256Sha256,
            VerifyKey::Ed25519(_) => SigAlgorithm::Ed25519,
            VerifyKey::RsaPss(_) => SigAlgorithm::RsaPssSha512,
        }
    }

    /// A shared HMAC secret given in standard base64 (as in RFC 9421 B.1.5).
    pub fn hmac_from_base64(secret: &str) -> Result<Self, SigError> {
        let raw = B64
            .decode(secret.trim())
            .map_err(|_| SigError::BadKey("HMAC secret is not base64".into()))?;
        if raw.len() < 32 {
            return Err(SigError::BadKey("HMAC secret shorter than 32 bytes".into()));
        }
        Ok(VerifyKey::Hmac(raw))
    }

    /// A `PUBLIC KEY` (SPKI) PEM: P-256, Ed25519, RSA (rsaEncryption or
    /// RSASSA-PSS); `RSA PUBLIC KEY` (PKCS#1) is taken as RSA-PSS.
    pub fn from_pem(pem: &str) -> Result<Self, SigError> {
        let (label, der) = pem_decode(pem)?;
        match label.as_str() {
            "PUBLIC KEY" => Self::from_spki_der(&der),
            "RSA PUBLIC KEY" => Ok(VerifyKey::RsaPss(der)),
            "CERTIFICATE" => Err(SigError::BadKey(
                "give the public key, not a certificate".into(),
            )),
            other => Err(SigError::BadKey(format!(
                "expected a PUBLIC KEY PEM, found {other}"
            ))),
        }
    }

    pub fn from_spki_der(der: &[u8]) -> Result<Self, SigError> {
        let (oid, params, bits) = parse_spki(der)?;
        match oid {
            OID_EC_PUBLIC_KEY => {
                if params != Some(OID_P256) {
                    return Err(SigError::BadKey("EC key is not on P-256".into()));
                }
                check_ec_point(bits)?;
                Ok(VerifyKey::EcdsaP256(bits.to_vec()))
            }
            OID_ED25519 => bits
                .try_into()
                .map(VerifyKey::Ed25519)
                .map_err(|_| SigError::BadKey("Ed25519 key is not 32 bytes".into())),
            OID_RSA_ENCRYPTION | OID_RSASSA_PSS => {
                // `bits` is the PKCS#1 RSAPublicKey; aws-lc-rs takes it as is.
                Ok(VerifyKey::RsaPss(bits.to_vec()))
            }
            _ => Err(SigError::BadKey("unsupported public key type".into())),
        }
    }

    /// A JWK (RFC 7517) object: `OKP`/`Ed25519`, `EC`/`P-256`, `RSA`, `oct`.
    pub fn from_jwk(json: &str) -> Result<Self, SigError> {
        let v: serde_json::Value =
            serde_json::from_str(json).map_err(|e| SigError::BadKey(format!("JWK: {e}")))?;
        let field = |name: &str| -> Result<Vec<u8>, SigError> {
            let s = v
                .get(name)
                .and_then(|x| x.as_str())
                .ok_or_else(|| SigError::BadKey(format!("JWK lacks \"{name}\"")))?;
            B64URL
                .decode(s.trim_end_matches('='))
                .map_err(|_| SigError::BadKey(format!("JWK \"{name}\" is not base64url")))
        };
        let kty = v.get("kty").and_then(|x| x.as_str()).unwrap_or("");
        let crv = v.get("crv").and_then(|x| x.as_str()).unwrap_or("");
        match (kty, crv) {
            ("OKP", "Ed25519") => field("x")?
                .try_into()
                .map(VerifyKey::Ed25519)
                .map_err(|_| SigError::BadKey("Ed25519 x is not 32 bytes".into())),
            ("EC", "P-256") => {
                let (x, y) = (field("x")?, field("y")?);
                if x.len() != 32 || y.len() != 32 {
                    return Err(SigError::BadKey("P-256 x/y must be 32 bytes".into()));
                }
                let mut point = vec![4u8];
                point.extend_from_slice(&x);
                point.extend_from_slice(&y);
                check_ec_point(&point)?;
                Ok(VerifyKey::EcdsaP256(point))
            }
            ("RSA", _) => Ok(VerifyKey::RsaPss(rsa_public_key_der(
                &field("n")?,
                &field("e")?,
            ))),
            ("oct", _) => {
                let k = field("k")?;
                if k.len() < 32 {
                    return Err(SigError::BadKey("HMAC secret shorter than 32 bytes".into()));
                }
                Ok(VerifyKey::Hmac(k))
            }
            _ => Err(SigError::BadKey(format!(
                "unsupported JWK kty={kty:?} crv={crv:?}"
            ))),
        }
    }

    fn verify_raw(&self, base: &[u8], signature: &[u8]) -> Result<(), SigError> {
        let ok = match self {
            VerifyKey::Hmac(secret) => {
                // hmac::verify compares in constant time.
                let key = hmac::Key::new(hmac::HMAC_SHA256, secret);
                hmac::verify(&key, base, signature).is_ok()
            }
            VerifyKey::EcdsaP256(public) => {
                signature.len() == 64
                    && sig::UnparsedPublicKey::new(&sig::ECDSA_P256_SHA256_FIXED, public)
                        .verify(base, signature)
                        .is_ok()
            }
            VerifyKey::Ed25519(public) => sig::UnparsedPublicKey::new(&sig::ED25519, public)
                .verify(base, signature)
                .is_ok(),
            VerifyKey::RsaPss(public) => {
                sig::UnparsedPublicKey::new(&sig::RSA_PSS_2048_8192_SHA512, public)
                    .verify(base, signature)
                    .is_ok()
            }
        };
        if ok {
            Ok(())
        } else {
            Err(SigError::BadSignature)
        }
    }
}

/// Verify `signature` over an already built signature base (for response
/// signatures and tests; requests go through [`verify`]).
pub fn verify_signature_base(
    key: &VerifyKey,
    base: &str,
    signature: &[u8],
) -> Result<(), SigError> {
    key.verify_raw(base.as_bytes(), signature)
}

/// A signing key (client side: `portcullis sign`, tests).
pub enum SigningKey {
    Hmac(Vec<u8>),
    EcdsaP256(sig::EcdsaKeyPair),
    Ed25519(sig::Ed25519KeyPair),
    RsaPss(sig::RsaKeyPair),
}

impl fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SigningKey::{}(<redacted>)", self.algorithm())
    }
}

impl SigningKey {
    pub fn algorithm(&self) -> SigAlgorithm {
        match self {
            SigningKey::Hmac(_) => SigAlgorithm::HmacSha256,
            SigningKey::EcdsaP256(_) => SigAlgorithm::EcdsaP256Sha256,
            SigningKey::Ed25519(_) => SigAlgorithm::Ed25519,
            SigningKey::RsaPss(_) => SigAlgorithm::RsaPssSha512,
        }
    }

    pub fn hmac_from_base64(secret: &str) -> Result<Self, SigError> {
        match VerifyKey::hmac_from_base64(secret)? {
            VerifyKey::Hmac(k) => Ok(SigningKey::Hmac(k)),
            _ => unreachable!("hmac_from_base64 returns an HMAC key"),
        }
    }

    /// `PRIVATE KEY` (PKCS#8: Ed25519, P-256, RSA or RSASSA-PSS),
    /// `EC PRIVATE KEY` (SEC1, P-256) or `RSA PRIVATE KEY` (PKCS#1).
    pub fn from_pem(pem: &str) -> Result<Self, SigError> {
        let (label, der) = pem_decode(pem)?;
        let rejected = |e: aws_lc_rs::error::KeyRejected| SigError::BadKey(e.to_string());
        match label.as_str() {
            "PRIVATE KEY" => {
                let (oid, params, inner) = parse_pkcs8(&der)?;
                match oid {
                    OID_ED25519 => sig::Ed25519KeyPair::from_pkcs8_maybe_unchecked(&der)
                        .map(SigningKey::Ed25519)
                        .map_err(rejected),
                    OID_EC_PUBLIC_KEY if params == Some(OID_P256) => {
                        sig::EcdsaKeyPair::from_pkcs8(&sig::ECDSA_P256_SHA256_FIXED_SIGNING, &der)
                            .map(SigningKey::EcdsaP256)
                            .map_err(rejected)
                    }
                    // The RFC's test-key-rsa-pss is PKCS#8 with the PSS OID;
                    // the inner key is a plain PKCS#1 RSAPrivateKey.
                    OID_RSA_ENCRYPTION | OID_RSASSA_PSS => sig::RsaKeyPair::from_der(inner)
                        .map(SigningKey::RsaPss)
                        .map_err(rejected),
                    _ => Err(SigError::BadKey("unsupported private key type".into())),
                }
            }
            "EC PRIVATE KEY" => {
                sig::EcdsaKeyPair::from_private_key_der(&sig::ECDSA_P256_SHA256_FIXED_SIGNING, &der)
                    .map(SigningKey::EcdsaP256)
                    .map_err(rejected)
            }
            "RSA PRIVATE KEY" => sig::RsaKeyPair::from_der(&der)
                .map(SigningKey::RsaPss)
                .map_err(rejected),
            other => Err(SigError::BadKey(format!(
                "expected a PRIVATE KEY PEM, found {other}"
            ))),
        }
    }

    /// The matching verification key (the secret itself for HMAC).
    pub fn verify_key(&self) -> VerifyKey {
        use aws_lc_rs::signature::KeyPair as _;
        match self {
            SigningKey::Hmac(k) => VerifyKey::Hmac(k.clone()),
            SigningKey::EcdsaP256(kp) => VerifyKey::EcdsaP256(kp.public_key().as_ref().to_vec()),
            SigningKey::Ed25519(kp) => {
                let mut x = [0u8; 32];
                x.copy_from_slice(kp.public_key().as_ref());
                VerifyKey::Ed25519(x)
            }
            SigningKey::RsaPss(kp) => VerifyKey::RsaPss(kp.public_key().as_ref().to_vec()),
        }
    }

    fn sign_raw(&self, base: &[u8]) -> Result<Vec<u8>, SigError> {
        let fail = |_| SigError::BadKey("signing failed".into());
        match self {
            SigningKey::Hmac(k) => {
                let key = hmac::Key::new(hmac::HMAC_SHA256, k);
                Ok(hmac::sign(&key, base).as_ref().to_vec())
            }
            SigningKey::EcdsaP256(kp) => kp
                .sign(&SystemRandom::new(), base)
                .map(|s| s.as_ref().to_vec())
                .map_err(fail),
            SigningKey::Ed25519(kp) => Ok(kp.sign(base).as_ref().to_vec()),
            SigningKey::RsaPss(kp) => {
                let mut out = vec![0u8; kp.public_modulus_len()];
                kp.sign(&sig::RSA_PSS_SHA512, &SystemRandom::new(), base, &mut out)
                    .map_err(fail)?;
                Ok(out)
            }
        }
    }
}

// === Request view ===

/// What the signature base is computed from: the request as the gateway
/// received it. `target_uri` is the absolute URI the client addressed
/// (`https://host/path?query`), `authority` its host[:port] (lowercase, the
/// default port omitted), `path` never empty, `query` without the `?`.
#[derive(Debug, Clone, Copy)]
pub struct RequestParts<'a> {
    pub method: &'a http::Method,
    pub target_uri: &'a str,
    pub authority: &'a str,
    pub scheme: &'a str,
    pub path: &'a str,
    pub query: Option<&'a str>,
    pub headers: &'a http::HeaderMap,
}

/// Owned URI pieces from an absolute URL, to build [`RequestParts`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestTarget {
    pub target_uri: String,
    pub authority: String,
    pub scheme: String,
    pub path: String,
    pub query: Option<String>,
}

impl RequestTarget {
    /// From scheme, authority (e.g. the Host header) and the request's
    /// path-and-query, as a gateway sees them.
    pub fn new(scheme: &str, authority: &str, path_and_query: &str) -> Self {
        let scheme = scheme.to_ascii_lowercase();
        let mut authority = authority.to_ascii_lowercase();
        let default_port = match scheme.as_str() {
            "https" => Some(":443"),
            "http" => Some(":80"),
            _ => None,
        };
        if let Some(p) = default_port {
            if authority.ends_with(p) && !authority.ends_with(']') {
                authority.truncate(authority.len() - p.len());
            }
        }
        let (path, query) = match path_and_query.split_once('?') {
            Some((p, q)) => (p, Some(q.to_string())),
            None => (path_and_query, None),
        };
        let path = if path.is_empty() { "/" } else { path }.to_string();
        let target_uri = match &query {
            Some(q) => format!("{scheme}://{authority}{path}?{q}"),
            None => format!("{scheme}://{authority}{path}"),
        };
        RequestTarget {
            target_uri,
            authority,
            scheme,
            path,
            query,
        }
    }

    /// From an absolute `http(s)://` URL.
    pub fn parse(url: &str) -> Result<Self, SigError> {
        let uri: http::Uri = url
            .parse()
            .map_err(|_| malformed(format!("not a URL: {url}")))?;
        let scheme = uri
            .scheme_str()
            .ok_or_else(|| malformed("URL has no scheme"))?;
        let authority = uri
            .authority()
            .ok_or_else(|| malformed("URL has no host"))?;
        if authority.as_str().contains('@') {
            return Err(malformed("URL with userinfo"));
        }
        let pq = uri.path_and_query().map(|p| p.as_str()).unwrap_or("/");
        Ok(Self::new(scheme, authority.as_str(), pq))
    }

    pub fn parts<'a>(
        &'a self,
        method: &'a http::Method,
        headers: &'a http::HeaderMap,
    ) -> RequestParts<'a> {
        RequestParts {
            method,
            target_uri: &self.target_uri,
            authority: &self.authority,
            scheme: &self.scheme,
            path: &self.path,
            query: self.query.as_deref(),
            headers,
        }
    }
}

// === Components ===

/// A component identifier: a name (`@method`, `content-digest`) with its
/// parameters, kept as the structured-field item it was parsed from so that
/// its serialization is reproduced exactly.
#[derive(Debug, Clone, PartialEq)]
pub struct Component {
    item: Item,
}

impl Component {
    /// `@method`, `content-digest`, or a serialized identifier such as
    /// `"@query-param";name="Pet"` or `"example-dict";key="a"`.
    pub fn parse(s: &str) -> Result<Self, SigError> {
        let s = s.trim();
        let item = if s.starts_with('"') {
            Parser::new(s)
                .parse::<Item>()
                .map_err(|e| malformed(format!("component {s}: {e}")))?
        } else {
            let name = sfv::String::from_string(s.to_string())
                .map_err(|_| malformed(format!("component {s}")))?;
            Item::new(name)
        };
        Self::from_item(item)
    }

    fn from_item(item: Item) -> Result<Self, SigError> {
        let name = match &item.bare_item {
            BareItem::String(s) => s.as_str(),
            _ => return Err(malformed("component identifier is not a string")),
        };
        if name.is_empty() || name.bytes().any(|b| b.is_ascii_uppercase()) {
            return Err(malformed(format!(
                "component name {name:?} must be lowercase"
            )));
        }
        Ok(Component { item })
    }

    pub fn name(&self) -> &str {
        match &self.item.bare_item {
            BareItem::String(s) => s.as_str(),
            _ => unreachable!("checked in from_item"),
        }
    }

    /// The serialized identifier, as it appears in the signature base.
    pub fn identifier(&self) -> String {
        self.item.serialize()
    }

    fn param(&self, key: &str) -> Option<&BareItem> {
        self.item.params.get(key)
    }

    fn flag(&self, key: &str) -> Result<bool, SigError> {
        match self.param(key) {
            None => Ok(false),
            Some(BareItem::Boolean(b)) => Ok(*b),
            Some(_) => Err(malformed(format!(
                "{}: {key} must be a boolean",
                self.identifier()
            ))),
        }
    }
}

impl fmt::Display for Component {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.identifier())
    }
}

/// Structured-field types of the fields `;sf` and `;key` may be used with.
fn sf_type(field: &str) -> Option<SfType> {
    match field {
        "content-digest"
        | "repr-digest"
        | "want-content-digest"
        | "want-repr-digest"
        | "signature"
        | "signature-input"
        | "accept-signature"
        | "priority"
        | "cache-control"
        | "example-dict" => Some(SfType::Dictionary),
        "cache-status" | "proxy-status" | "client-hints" | "accept-ch" => Some(SfType::List),
        _ => None,
    }
}

#[derive(Clone, Copy)]
enum SfType {
    Dictionary,
    List,
}

/// The value of one covered component (RFC 9421 §2.1, §2.2).
fn component_value(parts: &RequestParts, c: &Component) -> Result<String, SigError> {
    let name = c.name();
    let id = c.identifier();
    let unsupported = |what: &str| SigError::UnsupportedComponent(format!("{id}: {what}"));
    for (k, _) in c.item.params.iter() {
        let allowed = match k.as_str() {
            "name" => name == "@query-param",
            "sf" | "key" | "bs" => !name.starts_with('@'),
            "req" => return Err(unsupported("req applies to responses only")),
            "tr" => return Err(unsupported("trailers are not signed here")),
            _ => false,
        };
        if !allowed {
            return Err(unsupported(&format!("parameter {}", k.as_str())));
        }
    }
    let value = if let Some(derived) = name.strip_prefix('@') {
        match derived {
            "method" => parts.method.as_str().to_string(),
            "target-uri" => parts.target_uri.to_string(),
            "authority" => parts.authority.to_ascii_lowercase(),
            "scheme" => parts.scheme.to_ascii_lowercase(),
            "request-target" => match parts.query {
                Some(q) => format!("{}?{q}", parts.path),
                None => parts.path.to_string(),
            },
            "path" => {
                if parts.path.is_empty() {
                    "/".to_string()
                } else {
                    parts.path.to_string()
                }
            }
            "query" => format!("?{}", parts.query.unwrap_or("")),
            "query-param" => {
                let wanted = match c.param("name") {
                    Some(BareItem::String(s)) => s.as_str().to_string(),
                    _ => return Err(malformed(format!("{id}: name must be a string"))),
                };
                query_param(parts.query.unwrap_or(""), &wanted).map_err(|e| match e {
                    QueryParamError::Missing => SigError::MissingComponent(id.clone()),
                    QueryParamError::Repeated => SigError::InvalidComponentValue(format!(
                        "{id} (parameter repeated; sign @query instead)"
                    )),
                })?
            }
            "signature-params" => {
                return Err(malformed("@signature-params cannot be a covered component"))
            }
            "status" => return Err(unsupported("@status is a response component")),
            _ => return Err(unsupported("unknown derived component")),
        }
    } else {
        field_value(parts.headers, c)?
    };
    check_value(&id, &value)?;
    Ok(value)
}

fn field_value(headers: &http::HeaderMap, c: &Component) -> Result<String, SigError> {
    let name = c.name();
    let id = c.identifier();
    let lines: Vec<&[u8]> = headers.get_all(name).iter().map(|v| v.as_bytes()).collect();
    if lines.is_empty() {
        return Err(SigError::MissingComponent(id));
    }
    let bs = c.flag("bs")?;
    let sf = c.flag("sf")?;
    let key = c.param("key");
    if bs && (sf || key.is_some()) {
        return Err(malformed(format!(
            "{id}: bs cannot be combined with sf or key"
        )));
    }
    if bs {
        let encoded: Vec<String> = lines
            .iter()
            .map(|l| format!(":{}:", B64.encode(trim_ows(l))))
            .collect();
        return Ok(encoded.join(", "));
    }
    let joined = lines
        .iter()
        .map(|l| {
            std::str::from_utf8(trim_ows(l))
                .map_err(|_| SigError::InvalidComponentValue(id.clone()))
        })
        .collect::<Result<Vec<_>, _>>()?
        .join(", ");
    if let Some(key) = key {
        let key = match key {
            BareItem::String(s) => s.as_str(),
            _ => return Err(malformed(format!("{id}: key must be a string"))),
        };
        if !matches!(sf_type(name), Some(SfType::Dictionary)) {
            return Err(SigError::UnsupportedComponent(format!(
                "{id}: {name} is not a known dictionary field"
            )));
        }
        let dict: sfv::Dictionary = Parser::new(&joined)
            .parse()
            .map_err(|_| SigError::InvalidComponentValue(id.clone()))?;
        let member = dict
            .get(key)
            .ok_or_else(|| SigError::MissingComponent(id.clone()))?;
        return Ok(serialize_member(member));
    }
    if sf {
        return match sf_type(name) {
            Some(SfType::Dictionary) => Parser::new(&joined)
                .parse::<sfv::Dictionary>()
                .ok()
                .and_then(|d| d.serialize())
                .ok_or(SigError::InvalidComponentValue(id)),
            Some(SfType::List) => Parser::new(&joined)
                .parse::<sfv::List>()
                .ok()
                .and_then(|l| l.serialize())
                .ok_or(SigError::InvalidComponentValue(id)),
            None => Err(SigError::UnsupportedComponent(format!(
                "{id}: structured type of {name} unknown"
            ))),
        };
    }
    Ok(joined)
}

/// One dictionary member serialized alone (an item or an inner list).
fn serialize_member(member: &ListEntry) -> String {
    let list: sfv::List = vec![member.clone()];
    list.serialize().unwrap_or_default()
}

fn trim_ows(v: &[u8]) -> &[u8] {
    let start = v
        .iter()
        .position(|b| !matches!(b, b' ' | b'\t'))
        .unwrap_or(v.len());
    let end = v
        .iter()
        .rposition(|b| !matches!(b, b' ' | b'\t'))
        .map_or(start, |e| e + 1);
    &v[start..end]
}

/// Component values go into a line-based text format: visible ASCII, spaces
/// and tabs only.
fn check_value(id: &str, value: &str) -> Result<(), SigError> {
    if value
        .bytes()
        .all(|b| b == b'\t' || (0x20..0x7f).contains(&b))
    {
        Ok(())
    } else {
        Err(SigError::InvalidComponentValue(id.to_string()))
    }
}

enum QueryParamError {
    Missing,
    Repeated,
}

/// `@query-param` (§2.2.8): parse as application/x-www-form-urlencoded,
/// re-encode name and value (space as `%20`), match the encoded name.
fn query_param(query: &str, wanted: &str) -> Result<String, QueryParamError> {
    let mut found = None;
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        let (n, v) = pair.split_once('=').unwrap_or((pair, ""));
        if form_reencode(n) == wanted {
            if found.is_some() {
                return Err(QueryParamError::Repeated);
            }
            found = Some(form_reencode(v));
        }
    }
    found.ok_or(QueryParamError::Missing)
}

fn form_reencode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut decoded = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => decoded.push(b' '),
            b'%' if i + 2 < bytes.len() => match (hex(bytes[i + 1]), hex(bytes[i + 2])) {
                (Some(h), Some(l)) => {
                    decoded.push(h << 4 | l);
                    i += 2;
                }
                _ => decoded.push(b'%'),
            },
            b => decoded.push(b),
        }
        i += 1;
    }
    let mut out = String::with_capacity(decoded.len());
    for b in decoded {
        if b.is_ascii_alphanumeric() || matches!(b, b'*' | b'-' | b'.' | b'_') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

fn hex(b: u8) -> Option<u8> {
    (b as char).to_digit(16).map(|d| d as u8)
}

// === Signature base ===

/// The signature base (RFC 9421 §2.5) for `components`, with `params` the
/// serialized signature parameters that follow the inner list (for example
/// `;created=1618884473;keyid="k"`).
pub fn signature_base(
    parts: &RequestParts,
    components: &[Component],
    params: &str,
) -> Result<String, SigError> {
    let dict: sfv::Dictionary = Parser::new(&format!("x=(){params}"))
        .parse()
        .map_err(|e| malformed(format!("signature parameters: {e}")))?;
    let params = match dict.get("x") {
        Some(ListEntry::InnerList(l)) if dict.len() == 1 => l.params.clone(),
        _ => return Err(malformed("signature parameters")),
    };
    build_base(parts, components, &params)
}

fn build_base(
    parts: &RequestParts,
    components: &[Component],
    params: &Parameters,
) -> Result<String, SigError> {
    let mut base = String::new();
    let mut seen: Vec<String> = Vec::with_capacity(components.len());
    for c in components {
        let id = c.identifier();
        if seen.contains(&id) {
            return Err(malformed(format!("component {id} covered twice")));
        }
        let value = component_value(parts, c)?;
        base.push_str(&id);
        base.push_str(": ");
        base.push_str(&value);
        base.push('\n');
        seen.push(id);
    }
    base.push_str("\"@signature-params\": ");
    base.push_str(&signature_params_value(components, params)?);
    Ok(base)
}

/// The serialized inner list `("a" "b");p=1`.
fn signature_params_value(
    components: &[Component],
    params: &Parameters,
) -> Result<String, SigError> {
    let list = InnerList::with_params(
        components.iter().map(|c| c.item.clone()).collect(),
        params.clone(),
    );
    let entries: sfv::List = vec![ListEntry::InnerList(list)];
    entries
        .serialize()
        .ok_or_else(|| malformed("cannot serialize signature parameters"))
}

// === Content-Digest ===

/// `Content-Digest` for `body` with SHA-256: `sha-256=:…:`.
pub fn content_digest(body: &[u8]) -> String {
    format!(
        "sha-256=:{}:",
        B64.encode(digest::digest(&digest::SHA256, body))
    )
}

/// `Content-Digest` for `body` with SHA-512: `sha-512=:…:`.
pub fn content_digest_sha512(body: &[u8]) -> String {
    format!(
        "sha-512=:{}:",
        B64.encode(digest::digest(&digest::SHA512, body))
    )
}

/// Checks a `Content-Digest` field value against `body`: at least one of
/// sha-256 / sha-512 present, and every one present matches.
pub fn check_content_digest(field: &str, body: &[u8]) -> Result<(), SigError> {
    let dict: sfv::Dictionary = Parser::new(field)
        .parse()
        .map_err(|_| malformed("Content-Digest"))?;
    let mut checked = false;
    for (alg, member) in dict.iter() {
        let algorithm = match alg.as_str() {
            "sha-256" => &digest::SHA256,
            "sha-512" => &digest::SHA512,
            _ => continue,
        };
        let claimed = match member {
            ListEntry::Item(Item {
                bare_item: BareItem::ByteSequence(b),
                ..
            }) => b,
            _ => return Err(malformed("Content-Digest value is not a byte sequence")),
        };
        let actual = digest::digest(algorithm, body);
        // Digests of public data; constant time is not needed, but cheap.
        if aws_lc_rs::constant_time::verify_slices_are_equal(actual.as_ref(), claimed).is_err() {
            return Err(SigError::DigestMismatch);
        }
        checked = true;
    }
    if checked {
        Ok(())
    } else {
        Err(SigError::UnsupportedDigest)
    }
}

// === Verification ===

/// What a route demands of a signature.
#[derive(Debug, Clone)]
pub struct SignaturePolicy {
    /// Components every accepted signature must cover, e.g. `@method`,
    /// `@target-uri`, `content-digest`, `date` (or serialized identifiers
    /// with parameters).
    pub required_components: Vec<String>,
    pub algorithms: Vec<SigAlgorithm>,
    /// `created` must be within this window.
    pub max_age: Duration,
    pub require_nonce: bool,
}

impl SignaturePolicy {
    fn required(&self) -> Result<Vec<String>, SigError> {
        self.required_components
            .iter()
            .map(|r| Component::parse(r).map(|c| c.identifier()))
            .collect()
    }
}

/// A verified signature.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verified {
    pub keyid: String,
    pub label: String,
    pub algorithm: SigAlgorithm,
    pub created: SystemTime,
    pub expires: Option<SystemTime>,
    pub nonce: Option<String>,
    /// The covered component identifiers, in order.
    pub covered: Vec<String>,
    /// Whether `Content-Digest` was covered and checked against a body.
    pub body_checked: bool,
    signature_hash: [u8; 32],
}

impl Verified {
    /// Key for the replay cache: keyid and nonce when there is a nonce,
    /// otherwise keyid and a hash of the signature value.
    pub fn replay_key(&self) -> Vec<u8> {
        let mut k = Vec::with_capacity(self.keyid.len() + 40);
        k.extend_from_slice(self.keyid.as_bytes());
        k.push(0);
        match &self.nonce {
            Some(n) => {
                k.push(b'n');
                k.extend_from_slice(n.as_bytes());
            }
            None => {
                k.push(b's');
                k.extend_from_slice(&self.signature_hash);
            }
        }
        k
    }

    /// How long the replay cache must remember this signature: until it
    /// would be refused as stale anyway.
    pub fn replay_until(&self, max_age: Duration) -> SystemTime {
        let stale = self.created + max_age;
        match self.expires {
            Some(e) if e < stale => e,
            _ => stale,
        }
    }
}

/// Verify the request's HTTP message signature against `policy`.
///
/// Parses `Signature-Input` / `Signature`, keeps the signatures that cover
/// every required component, and accepts the first that verifies: known
/// keyid, the key's algorithm allowed (an `alg` parameter must name it),
/// `created` within `max_age` (and at most [`CREATED_SKEW`] ahead), not
/// expired, nonce when required. If `content-digest` is covered and `body` is
/// given, `Content-Digest` must match it. Replay checking is the caller's
/// (see [`Verified::replay_key`]).
pub fn verify(
    parts: &RequestParts,
    body: Option<&[u8]>,
    policy: &SignaturePolicy,
    keys: &dyn Fn(&str) -> Option<VerifyKey>,
    now: SystemTime,
) -> Result<Verified, SigError> {
    let inputs = joined_field(parts.headers, "signature-input")?;
    let signatures = joined_field(parts.headers, "signature")?;
    let (Some(inputs), Some(signatures)) = (inputs, signatures) else {
        return Err(SigError::MissingSignature);
    };
    let inputs: sfv::Dictionary = Parser::new(&inputs)
        .parse()
        .map_err(|e| malformed(format!("Signature-Input: {e}")))?;
    let signatures: sfv::Dictionary = Parser::new(&signatures)
        .parse()
        .map_err(|e| malformed(format!("Signature: {e}")))?;
    let required = policy.required()?;

    let mut first_error = None;
    for (label, entry) in inputs.iter().take(MAX_SIGNATURES) {
        let result = (|| {
            let ListEntry::InnerList(list) = entry else {
                return Err(malformed(format!(
                    "Signature-Input {}: not an inner list",
                    label.as_str()
                )));
            };
            let components = list
                .items
                .iter()
                .cloned()
                .map(Component::from_item)
                .collect::<Result<Vec<_>, _>>()?;
            let covered: Vec<String> = components.iter().map(|c| c.identifier()).collect();
            if let Some(missing) = required.iter().find(|r| !covered.contains(r)) {
                return Err(SigError::RequiredNotCovered(missing.clone()));
            }
            let signature = match signatures.get(label.as_str()) {
                Some(ListEntry::Item(Item {
                    bare_item: BareItem::ByteSequence(b),
                    ..
                })) => b.as_slice(),
                Some(_) => return Err(malformed("Signature value is not a byte sequence")),
                None => {
                    return Err(malformed(format!(
                        "no Signature for label {}",
                        label.as_str()
                    )))
                }
            };
            verify_one(
                parts,
                body,
                policy,
                keys,
                now,
                label.as_str(),
                components,
                covered,
                &list.params,
                signature,
            )
        })();
        match result {
            Ok(v) => return Ok(v),
            Err(e) => {
                first_error.get_or_insert(e);
            }
        }
    }
    Err(first_error.unwrap_or(SigError::MissingSignature))
}

#[allow(clippy::too_many_arguments)]
fn verify_one(
    parts: &RequestParts,
    body: Option<&[u8]>,
    policy: &SignaturePolicy,
    keys: &dyn Fn(&str) -> Option<VerifyKey>,
    now: SystemTime,
    label: &str,
    components: Vec<Component>,
    covered: Vec<String>,
    params: &Parameters,
    signature: &[u8],
) -> Result<Verified, SigError> {
    let string_param = |k: &str| -> Result<Option<String>, SigError> {
        match params.get(k) {
            None => Ok(None),
            Some(BareItem::String(s)) => Ok(Some(s.as_str().to_string())),
            Some(_) => Err(malformed(format!("{k} must be a string"))),
        }
    };
    let time_param = |k: &str| -> Result<Option<SystemTime>, SigError> {
        match params.get(k) {
            None => Ok(None),
            Some(BareItem::Integer(i)) => {
                let secs = u64::try_from(i64::from(*i))
                    .map_err(|_| malformed(format!("{k} is negative")))?;
                Ok(Some(UNIX_EPOCH + Duration::from_secs(secs)))
            }
            Some(_) => Err(malformed(format!("{k} must be an integer"))),
        }
    };
    let keyid = string_param("keyid")?.ok_or(SigError::MissingKeyId)?;
    let created = time_param("created")?.ok_or(SigError::MissingCreated)?;
    let expires = time_param("expires")?;
    let nonce = string_param("nonce")?;
    let alg = string_param("alg")?;

    let key = keys(&keyid).ok_or(SigError::UnknownKey)?;
    let algorithm = key.algorithm();
    if !policy.algorithms.contains(&algorithm) {
        return Err(SigError::AlgorithmNotAllowed(algorithm));
    }
    if let Some(alg) = alg {
        if alg.parse::<SigAlgorithm>()? != algorithm {
            return Err(SigError::AlgorithmMismatch);
        }
    }
    if created > now + CREATED_SKEW {
        return Err(SigError::CreatedInFuture);
    }
    if now.duration_since(created).unwrap_or_default() > policy.max_age {
        return Err(SigError::Stale);
    }
    if expires.is_some_and(|e| e <= now) {
        return Err(SigError::Expired);
    }
    if policy.require_nonce && nonce.as_deref().is_none_or(str::is_empty) {
        return Err(SigError::MissingNonce);
    }

    let base = build_base(parts, &components, params)?;
    key.verify_raw(base.as_bytes(), signature)?;

    let mut body_checked = false;
    if covered.iter().any(|c| c == "\"content-digest\"") {
        if let Some(body) = body {
            let field = joined_field(parts.headers, "content-digest")?
                .ok_or_else(|| SigError::MissingComponent("\"content-digest\"".into()))?;
            check_content_digest(&field, body)?;
            body_checked = true;
        }
    }

    let mut signature_hash = [0u8; 32];
    signature_hash.copy_from_slice(digest::digest(&digest::SHA256, signature).as_ref());
    Ok(Verified {
        keyid,
        label: label.to_string(),
        algorithm,
        created,
        expires,
        nonce,
        covered,
        body_checked,
        signature_hash,
    })
}

fn joined_field(headers: &http::HeaderMap, name: &str) -> Result<Option<String>, SigError> {
    let mut out: Option<String> = None;
    for v in headers.get_all(name) {
        let s = v
            .to_str()
            .map_err(|_| malformed(format!("{name} is not ASCII")))?;
        match &mut out {
            Some(o) => {
                o.push_str(", ");
                o.push_str(s);
            }
            None => out = Some(s.to_string()),
        }
    }
    Ok(out)
}

// === Signing ===

/// How to sign (beyond the key and components).
#[derive(Debug, Clone)]
pub struct SignOptions<'a> {
    pub keyid: &'a str,
    pub created: SystemTime,
    pub expires: Option<SystemTime>,
    pub nonce: Option<&'a str>,
    /// Dictionary label; `sig1` by default.
    pub label: &'a str,
    /// Whether to state the algorithm in an `alg` parameter.
    pub include_alg: bool,
}

impl<'a> SignOptions<'a> {
    pub fn new(keyid: &'a str, created: SystemTime) -> Self {
        SignOptions {
            keyid,
            created,
            expires: None,
            nonce: None,
            label: "sig1",
            include_alg: true,
        }
    }
}

/// Signs the request: returns the `Signature-Input` and `Signature` field
/// values. Parameters are written in the order created, expires, keyid,
/// alg, nonce. A covered `content-digest` must already be in `parts.headers`.
pub fn sign(
    parts: &RequestParts,
    components: &[&str],
    key: &SigningKey,
    opts: &SignOptions,
) -> Result<(String, String), SigError> {
    let components = components
        .iter()
        .map(|c| Component::parse(c))
        .collect::<Result<Vec<_>, _>>()?;
    let unix = |t: SystemTime| -> Result<BareItem, SigError> {
        let secs = t
            .duration_since(UNIX_EPOCH)
            .map_err(|_| malformed("time before 1970"))?
            .as_secs();
        let secs = i64::try_from(secs).map_err(|_| malformed("time out of range"))?;
        sfv::Integer::try_from(secs)
            .map(BareItem::Integer)
            .map_err(|_| malformed("time out of range"))
    };
    let string = |s: &str| -> Result<BareItem, SigError> {
        sfv::String::from_string(s.to_string())
            .map(BareItem::String)
            .map_err(|_| malformed(format!("{s:?} is not a structured-field string")))
    };
    let key_of =
        |k: &str| sfv::Key::from_string(k.to_string()).expect("static key names are valid");
    let mut params = Parameters::new();
    params.insert(key_of("created"), unix(opts.created)?);
    if let Some(e) = opts.expires {
        params.insert(key_of("expires"), unix(e)?);
    }
    params.insert(key_of("keyid"), string(opts.keyid)?);
    if opts.include_alg {
        params.insert(key_of("alg"), string(key.algorithm().name())?);
    }
    if let Some(n) = opts.nonce {
        params.insert(key_of("nonce"), string(n)?);
    }
    let label = sfv::Key::from_string(opts.label.to_string())
        .map_err(|_| malformed(format!("label {:?}", opts.label)))?;

    let base = build_base(parts, &components, &params)?;
    let signature = key.sign_raw(base.as_bytes())?;

    let input = format!(
        "{}={}",
        label.as_str(),
        signature_params_value(&components, &params)?
    );
    let signature = format!("{}=:{}:", label.as_str(), B64.encode(signature));
    Ok((input, signature))
}

/// A fresh random nonce (128 bits, base64url).
pub fn random_nonce() -> String {
    use aws_lc_rs::rand::SecureRandom as _;
    let mut b = [0u8; 16];
    SystemRandom::new()
        .fill(&mut b)
        .expect("system randomness is available");
    B64URL.encode(b)
}

// === DER / PEM ===

const OID_EC_PUBLIC_KEY: &[u8] = &[0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01];
const OID_P256: &[u8] = &[0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07];
const OID_ED25519: &[u8] = &[0x2b, 0x65, 0x70];
const OID_RSA_ENCRYPTION: &[u8] = &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x01];
const OID_RSASSA_PSS: &[u8] = &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x0a];

fn pem_decode(pem: &str) -> Result<(String, Vec<u8>), SigError> {
    let bad = || SigError::BadKey("not a PEM block".into());
    let start = pem.find("-----BEGIN ").ok_or_else(bad)?;
    let rest = &pem[start + 11..];
    let label_end = rest.find("-----").ok_or_else(bad)?;
    let label = rest[..label_end].to_string();
    let body = &rest[label_end + 5..];
    let end_marker = format!("-----END {label}-----");
    let end = body.find(&end_marker).ok_or_else(bad)?;
    let b64: String = body[..end].chars().filter(|c| !c.is_whitespace()).collect();
    if b64.contains(':') {
        return Err(SigError::BadKey(
            "encrypted PEM keys are not supported".into(),
        ));
    }
    let der = B64.decode(b64).map_err(|_| bad())?;
    Ok((label, der))
}

/// One DER TLV: (tag, contents, rest).
fn der_tlv(input: &[u8]) -> Result<(u8, &[u8], &[u8]), SigError> {
    let bad = || SigError::BadKey("malformed DER".into());
    let (&tag, rest) = input.split_first().ok_or_else(bad)?;
    let (&first, mut rest) = rest.split_first().ok_or_else(bad)?;
    let len = if first < 0x80 {
        first as usize
    } else {
        let n = (first & 0x7f) as usize;
        if n == 0 || n > 4 || rest.len() < n {
            return Err(bad());
        }
        let len = rest[..n].iter().fold(0usize, |a, &b| a << 8 | b as usize);
        rest = &rest[n..];
        len
    };
    if rest.len() < len {
        return Err(bad());
    }
    Ok((tag, &rest[..len], &rest[len..]))
}

/// AlgorithmIdentifier → (algorithm OID, named-curve OID if any).
fn der_algorithm(alg: &[u8]) -> Result<(&[u8], Option<&[u8]>), SigError> {
    let (tag, oid, rest) = der_tlv(alg)?;
    if tag != 0x06 {
        return Err(SigError::BadKey("malformed AlgorithmIdentifier".into()));
    }
    let params = match der_tlv(rest) {
        Ok((0x06, curve, _)) => Some(curve),
        _ => None,
    };
    Ok((oid, params))
}

type KeyInfo<'a> = (&'a [u8], Option<&'a [u8]>, &'a [u8]);

/// SubjectPublicKeyInfo → (algorithm OID, curve OID, key bits).
fn parse_spki(der: &[u8]) -> Result<KeyInfo<'_>, SigError> {
    let bad = || SigError::BadKey("malformed SubjectPublicKeyInfo".into());
    let (0x30, spki, _) = der_tlv(der)? else {
        return Err(bad());
    };
    let (0x30, alg, rest) = der_tlv(spki)? else {
        return Err(bad());
    };
    let (0x03, bits, _) = der_tlv(rest)? else {
        return Err(bad());
    };
    let (oid, params) = der_algorithm(alg)?;
    let bits = bits.strip_prefix(&[0u8]).ok_or_else(bad)?;
    Ok((oid, params, bits))
}

/// PKCS#8 PrivateKeyInfo → (algorithm OID, curve OID, inner private key).
fn parse_pkcs8(der: &[u8]) -> Result<KeyInfo<'_>, SigError> {
    let bad = || SigError::BadKey("malformed PKCS#8 key".into());
    let (0x30, info, _) = der_tlv(der)? else {
        return Err(bad());
    };
    let (0x02, _version, rest) = der_tlv(info)? else {
        return Err(bad());
    };
    let (0x30, alg, rest) = der_tlv(rest)? else {
        return Err(bad());
    };
    let (0x04, inner, _) = der_tlv(rest)? else {
        return Err(bad());
    };
    let (oid, params) = der_algorithm(alg)?;
    Ok((oid, params, inner))
}

fn check_ec_point(point: &[u8]) -> Result<(), SigError> {
    if point.len() == 65 && point[0] == 4 {
        Ok(())
    } else {
        Err(SigError::BadKey(
            "P-256 public key must be an uncompressed point".into(),
        ))
    }
}

/// PKCS#1 RSAPublicKey DER from modulus and exponent.
fn rsa_public_key_der(n: &[u8], e: &[u8]) -> Vec<u8> {
    fn integer(v: &[u8]) -> Vec<u8> {
        let v = match v.iter().position(|&b| b != 0) {
            Some(i) => &v[i..],
            None => &[0u8][..],
        };
        let mut body = Vec::with_capacity(v.len() + 1);
        if v[0] & 0x80 != 0 {
            body.push(0);
        }
        body.extend_from_slice(v);
        tlv(0x02, &body)
    }
    fn tlv(tag: u8, body: &[u8]) -> Vec<u8> {
        let mut out = vec![tag];
        let len = body.len();
        if len < 0x80 {
            out.push(len as u8);
        } else {
            let bytes: Vec<u8> = len
                .to_be_bytes()
                .into_iter()
                .skip_while(|&b| b == 0)
                .collect();
            out.push(0x80 | bytes.len() as u8);
            out.extend_from_slice(&bytes);
        }
        out.extend_from_slice(body);
        out
    }
    let mut seq = integer(n);
    seq.extend(integer(e));
    tlv(0x30, &seq)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_param_reencoding() {
        let q = "param=value&foo=bar&baz=batman&qux=&bar=with+plus+whitespace&fa%C3%A7ade%22%3A%20=something";
        assert_eq!(query_param(q, "baz").ok(), Some("batman".into()));
        assert_eq!(query_param(q, "qux").ok(), Some(String::new()));
        assert_eq!(
            query_param(q, "bar").ok(),
            Some("with%20plus%20whitespace".into())
        );
        assert_eq!(
            query_param(q, "fa%C3%A7ade%22%3A%20").ok(),
            Some("something".into())
        );
        assert!(matches!(
            query_param("a=1&a=2", "a"),
            Err(QueryParamError::Repeated)
        ));
        assert!(matches!(
            query_param("a=1", "b"),
            Err(QueryParamError::Missing)
        ));
    }

    #[test]
    fn target_normalization() {
        let t = RequestTarget::parse("https://Example.COM:443/foo?x=1").unwrap();
        assert_eq!(t.authority, "example.com");
        assert_eq!(t.target_uri, "https://example.com/foo?x=1");
        let t = RequestTarget::parse("http://h:8080").unwrap();
        assert_eq!((t.authority.as_str(), t.path.as_str()), ("h:8080", "/"));
    }

    #[test]
    fn unsupported_parameters_refused() {
        let headers = http::HeaderMap::new();
        let t = RequestTarget::parse("https://example.com/").unwrap();
        let m = http::Method::GET;
        let parts = t.parts(&m, &headers);
        for c in [
            r#""@method";req"#,
            r#""@path";sf"#,
            r#""date";tr"#,
            r#""date";foo"#,
            "@status",
            "@nope",
        ] {
            let err = signature_base(&parts, &[Component::parse(c).unwrap()], "").unwrap_err();
            assert_eq!(err.reason(), "component_unsupported", "{c}");
        }
        assert!(Component::parse("Content-Type").is_err());
    }

    #[test]
    fn rsa_der_from_jwk_parts() {
        assert_eq!(
            rsa_public_key_der(&[0x80], &[1, 0, 1]),
            vec![0x30, 9, 2, 2, 0, 0x80, 2, 3, 1, 0, 1]
        );
    }
}
