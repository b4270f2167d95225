//! JSON Web Keys (RFC 7517) for JWT verification, and the compact-JWS
//! signature check (RFC 7515) that uses them.
//!
//! Owns: parsing a JWKS document into verification keys, refusing the keys a
//! verifier must never use (RSA under 2048 bits, public exponent 1, ROCA
//! moduli, EC points off their curve, `alg` disagreeing with `kty`/`crv`,
//! private key material, empty or short HMAC keys, duplicate `kid`s, sets
//! mixing symmetric and asymmetric keys), and skipping keys that are not for
//! signatures (`use` ≠ `sig`, `key_ops` without `verify`, encryption `alg`s).
//! [`verify_compact`] checks one compact JWS against a [`JwkSet`] and a fixed
//! list of algorithms.
//!
//! Must not: follow anything a token says about where its key is (`jku`,
//! `x5u`, `x5c`, `jwk` are never read), treat a `kid` as anything but an
//! opaque string, or take the algorithm from the token without the caller's
//! list allowing it. It does no I/O; fetching a JWKS is the verifier's job.

use std::collections::HashSet;

use aws_lc_rs::signature::{self, ParsedPublicKey, RsaPublicKeyComponents};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use serde_json::{Map, Value};

use super::{Algorithm, JwtError};

/// Smallest RSA modulus accepted, in bits.
pub const MIN_RSA_BITS: usize = 2048;
/// Smallest HMAC key accepted for any HS algorithm, in bytes (RFC 7518 3.2
/// asks for at least the hash size; HS384 and HS512 need 48 and 64).
pub const MIN_HMAC_KEY_BYTES: usize = 32;
/// Most keys read from one JWKS document.
const MAX_KEYS: usize = 100;

/// Why a JWK or JWKS was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum JwkError {
    #[error("the JWKS is not a JSON object with a \"keys\" array")]
    NotAKeySet,
    #[error("key {index}: {reason}")]
    BadKey { index: usize, reason: String },
    #[error("two keys share the kid {0:?}")]
    DuplicateKid(String),
    #[error("the key set mixes symmetric (oct) and asymmetric keys")]
    MixedSymmetry,
    #[error("the key set has more than {MAX_KEYS} keys")]
    TooManyKeys,
}

/// The public (or, for HMAC, secret) part of a key.
#[derive(Clone)]
pub enum KeyMaterial {
    /// RSA: one pre-parsed key per RSA algorithm it may be used with.
    Rsa {
        bits: usize,
        parsed: Vec<(Algorithm, ParsedPublicKey)>,
    },
    /// EC or OKP (Ed25519): the algorithm its curve fixes, and the key.
    Curve {
        alg: Algorithm,
        parsed: ParsedPublicKey,
    },
    /// A shared HMAC secret.
    Oct(Vec<u8>),
}

impl std::fmt::Debug for KeyMaterial {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            KeyMaterial::Rsa { bits, .. } => write!(f, "Rsa({bits} bits)"),
            KeyMaterial::Curve { alg, .. } => write!(f, "Curve({alg:?})"),
            KeyMaterial::Oct(k) => write!(f, "Oct({} bytes, redacted)", k.len()),
        }
    }
}

/// One verification key.
#[derive(Debug, Clone)]
pub struct Jwk {
    /// Opaque identifier; compared as a string, never used as a path.
    pub kid: Option<String>,
    /// When set, the only algorithm this key verifies.
    pub alg: Option<Algorithm>,
    pub material: KeyMaterial,
}

/// A set of verification keys.
#[derive(Debug, Clone, Default)]
pub struct JwkSet {
    pub keys: Vec<Jwk>,
    /// Keys present in the document but not for signatures (skipped).
    pub skipped: usize,
}

// === impl Jwk ===

impl Jwk {
    /// A shared secret for HS256/384/512 (from configuration, not a JWKS).
    pub fn secret(secret: Vec<u8>) -> Jwk {
        Jwk {
            kid: None,
            alg: None,
            material: KeyMaterial::Oct(secret),
        }
    }

    /// Parses one JWK. `Ok(None)`: a well-formed key that is not for
    /// signatures (skipped).
    pub fn from_json(obj: &Map<String, Value>) -> Result<Option<Jwk>, String> {
        let kty = str_member(obj, "kty")?.ok_or("no \"kty\"")?;
        if let Some(u) = str_member(obj, "use")? {
            if u != "sig" {
                return Ok(None);
            }
        }
        if let Some(ops) = obj.get("key_ops") {
            let ops = ops.as_array().ok_or("\"key_ops\" is not an array")?;
            if !ops
                .iter()
                .any(|o| o.as_str() == Some("verify") || o.as_str() == Some("sign"))
            {
                return Ok(None);
            }
        }
        let alg = match str_member(obj, "alg")? {
            None => None,
            Some(a) => match Algorithm::from_jose(a) {
                Some(a) => Some(a),
                // An encryption algorithm (RSA-OAEP, A256GCM, ECDH-ES, ...)
                // or one we do not verify: not a signature key for us.
                None => return Ok(None),
            },
        };
        let kid = str_member(obj, "kid")?.map(str::to_owned);
        let material = match kty {
            "RSA" => rsa_key(obj, alg)?,
            "EC" => ec_key(obj, alg)?,
            "OKP" => okp_key(obj, alg)?,
            "oct" => oct_key(obj, alg)?,
            other => return Err(format!("unsupported kty {other:?}")),
        };
        Ok(Some(Jwk { kid, alg, material }))
    }

    /// Whether this key can verify `alg` at all.
    pub fn supports(&self, alg: Algorithm) -> bool {
        if self.alg.is_some_and(|a| a != alg) {
            return false;
        }
        match &self.material {
            KeyMaterial::Rsa { parsed, .. } => parsed.iter().any(|(a, _)| *a == alg),
            KeyMaterial::Curve { alg: a, .. } => *a == alg,
            KeyMaterial::Oct(k) => alg.is_hmac() && k.len() >= alg.min_hmac_key_len(),
        }
    }

    /// Checks `sig` over `signing_input` with `alg` (which the caller has
    /// already allowed). False on any mismatch.
    pub fn verify(&self, alg: Algorithm, signing_input: &[u8], sig: &[u8]) -> bool {
        if !self.supports(alg) {
            return false;
        }
        match &self.material {
            KeyMaterial::Rsa { parsed, .. } => parsed
                .iter()
                .find(|(a, _)| *a == alg)
                .is_some_and(|(_, k)| k.verify_sig(signing_input, sig).is_ok()),
            KeyMaterial::Curve { parsed, .. } => parsed.verify_sig(signing_input, sig).is_ok(),
            KeyMaterial::Oct(secret) => {
                let Some(h) = alg.hmac() else { return false };
                let key = aws_lc_rs::hmac::Key::new(h, secret);
                // Constant-time comparison inside.
                aws_lc_rs::hmac::verify(&key, signing_input, sig).is_ok()
            }
        }
    }

    pub fn is_symmetric(&self) -> bool {
        matches!(self.material, KeyMaterial::Oct(_))
    }
}

fn str_member<'a>(obj: &'a Map<String, Value>, name: &str) -> Result<Option<&'a str>, String> {
    match obj.get(name) {
        None => Ok(None),
        Some(Value::String(s)) => Ok(Some(s)),
        Some(_) => Err(format!("\"{name}\" is not a string")),
    }
}

fn b64_member(obj: &Map<String, Value>, name: &str) -> Result<Vec<u8>, String> {
    let s = str_member(obj, name)?.ok_or_else(|| format!("no \"{name}\""))?;
    b64url(s).ok_or_else(|| format!("\"{name}\" is not base64url without padding"))
}

fn refuse_private(obj: &Map<String, Value>, names: &[&str]) -> Result<(), String> {
    match names.iter().find(|n| obj.contains_key(**n)) {
        Some(n) => Err(format!(
            "private key member \"{n}\" present: a verifier needs only the public key"
        )),
        None => Ok(()),
    }
}

fn rsa_key(obj: &Map<String, Value>, alg: Option<Algorithm>) -> Result<KeyMaterial, String> {
    refuse_private(obj, &["d", "p", "q", "dp", "dq", "qi", "oth"])?;
    if let Some(a) = alg {
        if !a.is_rsa() {
            return Err(format!("alg {} does not use an RSA key", a.name()));
        }
    }
    let n = strip_leading_zeros(b64_member(obj, "n")?);
    let e = strip_leading_zeros(b64_member(obj, "e")?);
    let bits = bit_len(&n);
    if bits < MIN_RSA_BITS {
        return Err(format!(
            "RSA modulus of {bits} bits; at least {MIN_RSA_BITS} are required"
        ));
    }
    if e.len() > 4 || e.last().is_none_or(|b| b & 1 == 0) || e == [1] {
        return Err("RSA public exponent must be odd, at least 3 and fit 32 bits".into());
    }
    if n.last().is_some_and(|b| b & 1 == 0) {
        return Err("RSA modulus is even".into());
    }
    if roca_fingerprint(&n) {
        return Err("RSA modulus has the ROCA fingerprint (CVE-2017-15361)".into());
    }
    let components = RsaPublicKeyComponents {
        n: &n[..],
        e: &e[..],
    };
    let mut parsed = Vec::new();
    for a in Algorithm::ALL.iter().copied().filter(|a| a.is_rsa()) {
        if alg.is_some_and(|x| x != a) {
            continue;
        }
        let params = a.rsa_params().expect("RSA algorithm");
        let key = components
            .to_parsed_public_key(params)
            .map_err(|e| format!("RSA key refused: {e}"))?;
        parsed.push((a, key));
    }
    Ok(KeyMaterial::Rsa { bits, parsed })
}

fn ec_key(obj: &Map<String, Value>, alg: Option<Algorithm>) -> Result<KeyMaterial, String> {
    refuse_private(obj, &["d"])?;
    let crv = str_member(obj, "crv")?.ok_or("no \"crv\"")?;
    let (curve_alg, len) = match crv {
        "P-256" => (Algorithm::ES256, 32),
        "P-384" => (Algorithm::ES384, 48),
        "P-521" => (Algorithm::ES512, 66),
        other => return Err(format!("unsupported EC curve {other:?}")),
    };
    if alg.is_some_and(|a| a != curve_alg) {
        return Err(format!(
            "alg {} does not match curve {crv}",
            alg.map(Algorithm::name).unwrap_or_default()
        ));
    }
    let x = b64_member(obj, "x")?;
    let y = b64_member(obj, "y")?;
    if x.len() != len || y.len() != len {
        return Err(format!("{crv} coordinates must be {len} bytes each"));
    }
    let mut point = Vec::with_capacity(1 + 2 * len);
    point.push(4);
    point.extend_from_slice(&x);
    point.extend_from_slice(&y);
    let parsed = ParsedPublicKey::new(curve_alg.curve_verification().expect("EC"), &point)
        .map_err(|_| format!("the point is not on {crv}"))?;
    Ok(KeyMaterial::Curve {
        alg: curve_alg,
        parsed,
    })
}

fn okp_key(obj: &Map<String, Value>, alg: Option<Algorithm>) -> Result<KeyMaterial, String> {
    refuse_private(obj, &["d"])?;
    let crv = str_member(obj, "crv")?.ok_or("no \"crv\"")?;
    if crv != "Ed25519" {
        return Err(format!("unsupported OKP curve {crv:?}"));
    }
    if alg.is_some_and(|a| a != Algorithm::EdDSA) {
        return Err("an Ed25519 key verifies only EdDSA".into());
    }
    let x = b64_member(obj, "x")?;
    if x.len() != 32 {
        return Err("an Ed25519 key is 32 bytes".into());
    }
    let parsed =
        ParsedPublicKey::new(&signature::ED25519, &x).map_err(|_| "bad Ed25519 key".to_owned())?;
    Ok(KeyMaterial::Curve {
        alg: Algorithm::EdDSA,
        parsed,
    })
}

fn oct_key(obj: &Map<String, Value>, alg: Option<Algorithm>) -> Result<KeyMaterial, String> {
    if alg.is_some_and(|a| !a.is_hmac()) {
        return Err("an oct key verifies only HS256/384/512".into());
    }
    let k = b64_member(obj, "k")?;
    let min = alg.map_or(MIN_HMAC_KEY_BYTES, Algorithm::min_hmac_key_len);
    if k.len() < min {
        return Err(format!(
            "HMAC key of {} bytes; at least {min} are required",
            k.len()
        ));
    }
    Ok(KeyMaterial::Oct(k))
}

fn strip_leading_zeros(mut v: Vec<u8>) -> Vec<u8> {
    let z = v.iter().take_while(|b| **b == 0).count();
    v.drain(..z);
    v
}

fn bit_len(be: &[u8]) -> usize {
    match be.first() {
        None => 0,
        Some(b) => (be.len() - 1) * 8 + (8 - b.leading_zeros() as usize),
    }
}

/// The ROCA test (Nemec et al., CCS 2017): a modulus made by the flawed
/// Infineon generator is, modulo each of these small primes, a power of
/// 65537. A random modulus passes all 38 by chance with probability ~2^-154.
fn roca_fingerprint(n: &[u8]) -> bool {
    const PRIMES: [u32; 38] = [
        3, 5, 7, 11, 13, 17, 19, 23, 29, 31, 37, 41, 43, 47, 53, 59, 61, 67, 71, 73, 79, 83, 89,
        97, 101, 103, 107, 109, 113, 127, 131, 137, 139, 149, 151, 157, 163, 167,
    ];
    PRIMES.iter().all(|&p| {
        let r = n
            .iter()
            .fold(0u32, |acc, b| (acc * 256 + u32::from(*b)) % p);
        let g = 65537 % p;
        let mut x = 1u32;
        for _ in 0..p {
            if x == r {
                return true;
            }
            x = x * g % p;
            if x == 1 {
                break;
            }
        }
        false
    })
}

// === impl JwkSet ===

impl JwkSet {
    /// Parses a JWKS document (`{"keys": [...]}`).
    pub fn parse(json: &[u8]) -> Result<JwkSet, JwkError> {
        let v: Value = serde_json::from_slice(json).map_err(|_| JwkError::NotAKeySet)?;
        JwkSet::from_value(&v)
    }

    pub fn from_value(v: &Value) -> Result<JwkSet, JwkError> {
        let keys = v
            .get("keys")
            .and_then(Value::as_array)
            .ok_or(JwkError::NotAKeySet)?;
        if keys.len() > MAX_KEYS {
            return Err(JwkError::TooManyKeys);
        }
        let mut set = JwkSet::default();
        let mut kids = HashSet::new();
        for (index, k) in keys.iter().enumerate() {
            let obj = k.as_object().ok_or_else(|| JwkError::BadKey {
                index,
                reason: "not a JSON object".into(),
            })?;
            match Jwk::from_json(obj).map_err(|reason| JwkError::BadKey { index, reason })? {
                None => set.skipped += 1,
                Some(jwk) => {
                    if let Some(kid) = &jwk.kid {
                        if !kids.insert(kid.clone()) {
                            return Err(JwkError::DuplicateKid(kid.clone()));
                        }
                    }
                    set.keys.push(jwk);
                }
            }
        }
        let symmetric = set.keys.iter().filter(|k| k.is_symmetric()).count();
        if symmetric != 0 && symmetric != set.keys.len() {
            return Err(JwkError::MixedSymmetry);
        }
        Ok(set)
    }

    pub fn has_symmetric(&self) -> bool {
        self.keys.iter().any(Jwk::is_symmetric)
    }

    /// Keys that may have signed a token with this `kid` and `alg`. A
    /// token's kid matches a key with the same kid, or a key without one; a
    /// token without a kid is tried against every key that fits `alg`.
    fn candidates<'a>(
        &'a self,
        kid: Option<&'a str>,
        alg: Algorithm,
    ) -> impl Iterator<Item = &'a Jwk> + 'a {
        self.keys.iter().filter(move |k| {
            k.supports(alg)
                && match (kid, k.kid.as_deref()) {
                    (Some(t), Some(own)) => t == own,
                    _ => true,
                }
        })
    }
}

// === compact JWS ===

/// Strict base64url (RFC 7515 2): URL alphabet, no padding, no whitespace,
/// zero unused trailing bits.
pub fn b64url(s: &str) -> Option<Vec<u8>> {
    URL_SAFE_NO_PAD.decode(s.as_bytes()).ok()
}

/// A compact JWS whose signature checked out.
#[derive(Debug, Clone)]
pub struct VerifiedJws {
    pub alg: Algorithm,
    pub kid: Option<String>,
    pub header: Map<String, Value>,
    pub payload: Vec<u8>,
}

/// A compact JWS taken apart, not yet verified.
#[derive(Debug)]
pub struct ParsedJws<'a> {
    pub alg: Algorithm,
    pub kid: Option<String>,
    pub header: Map<String, Value>,
    pub payload: Vec<u8>,
    signing_input: &'a str,
    signature: Vec<u8>,
}

/// Splits and decodes a compact JWS and checks its header: exactly three
/// non-empty-header parts, strict base64url everywhere, a JSON object header
/// with a known `alg` (exact case; `none` in any casing refused), no `crit`
/// (we understand no extensions), a string `kid` if any. `jku`, `x5u`,
/// `x5c`, `jwk` are ignored.
pub fn parse_compact(token: &str) -> Result<ParsedJws<'_>, JwtError> {
    let mut parts = token.split('.');
    let (Some(h), Some(p), Some(s), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(JwtError::Malformed);
    };
    if h.is_empty() {
        return Err(JwtError::Malformed);
    }
    let header_bytes = b64url(h).ok_or(JwtError::Malformed)?;
    let header: Map<String, Value> =
        serde_json::from_slice(&header_bytes).map_err(|_| JwtError::Malformed)?;
    let alg = match header.get("alg") {
        Some(Value::String(a)) => {
            if a.eq_ignore_ascii_case("none") {
                return Err(JwtError::AlgNone);
            }
            Algorithm::from_jose(a).ok_or_else(|| JwtError::UnsupportedAlg(truncate(a)))?
        }
        _ => return Err(JwtError::Malformed),
    };
    if header.contains_key("crit") {
        return Err(JwtError::UnsupportedCrit);
    }
    if header.contains_key("enc") {
        // A JWE header: not a signed token.
        return Err(JwtError::Malformed);
    }
    let kid = match header.get("kid") {
        None => None,
        Some(Value::String(k)) => Some(k.clone()),
        Some(_) => return Err(JwtError::Malformed),
    };
    if s.is_empty() {
        return Err(JwtError::Malformed);
    }
    let payload = b64url(p).ok_or(JwtError::Malformed)?;
    let signature = b64url(s).ok_or(JwtError::Malformed)?;
    let signing_input = &token[..h.len() + 1 + p.len()];
    Ok(ParsedJws {
        alg,
        kid,
        header,
        payload,
        signing_input,
        signature,
    })
}

impl ParsedJws<'_> {
    /// Checks the signature with `keys`, `alg` being one of `allowed`.
    pub fn verify(self, keys: &JwkSet, allowed: &[Algorithm]) -> Result<VerifiedJws, JwtError> {
        if !allowed.contains(&self.alg) {
            return Err(JwtError::AlgNotAllowed);
        }
        let mut any = false;
        let mut good = false;
        for key in keys.candidates(self.kid.as_deref(), self.alg) {
            any = true;
            if key.verify(self.alg, self.signing_input.as_bytes(), &self.signature) {
                good = true;
                break;
            }
        }
        match (any, good) {
            (_, true) => Ok(VerifiedJws {
                alg: self.alg,
                kid: self.kid,
                header: self.header,
                payload: self.payload,
            }),
            (true, false) => Err(JwtError::BadSignature),
            (false, _) => Err(JwtError::UnknownKid),
        }
    }
}

/// Parses and verifies one compact JWS. The payload need not be JSON.
pub fn verify_compact(
    token: &str,
    keys: &JwkSet,
    allowed: &[Algorithm],
) -> Result<VerifiedJws, JwtError> {
    parse_compact(token)?.verify(keys, allowed)
}

fn truncate(s: &str) -> String {
    s.chars().take(32).collect()
}
