//! JWT / OAuth 2.0 bearer tokens: verification per issuer, claim rules per
//! route, certificate-bound tokens (RFC 8705), and a verified-token cache.
//!
//! Owns: [`JwtVerifier`] (issuers with fixed algorithm lists and key sources;
//! JWKS files loaded at construction, JWKS URLs fetched on first need and
//! again on an unknown `kid`, at most once per 30 s per issuer, keeping the
//! last good set when a fetch fails), the registered-claim checks (`iss`,
//! `aud`, `exp`, `nbf`, `iat`, with a leeway), [`check_rules`],
//! [`cert_bound_ok`] and the cache of verified tokens keyed by SHA-256 of the
//! token.
//!
//! Must not: take the algorithm from the token (it must be in the issuer's
//! list; `none` in any casing is refused), verify HS* against anything but a
//! configured secret (so an HS256 token "signed" with an RSA public key never
//! verifies), follow `jku`/`x5u`/`x5c`/`jwk` headers, use a `kid` as a path,
//! or log a token or a secret.
//!
//! Built directly on aws-lc-rs rather than the `jsonwebtoken` crate: the
//! checks Wycheproof asks for (strict base64url with zero trailing bits,
//! `crit` refusal, ROCA / exponent / key-size / point checks on JWKS keys,
//! refusing key sets with duplicate kids or mixed symmetric and asymmetric
//! keys, `key_ops`/`use` handling) sit in our code where the vector tests can
//! see them, the algorithm list stays the issuer's alone, and no second
//! crypto backend enters the build. The JOSE part is small (see `jwks.rs`).

#[path = "jwks.rs"]
pub mod jwks;

use std::collections::HashMap;
use std::future::Future;
use std::num::NonZeroUsize;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::{Arc, Mutex, OnceLock, RwLock};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use aws_lc_rs::digest;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use serde_json::{Map, Value};

pub use jwks::{Jwk, JwkError, JwkSet};

/// Default clock leeway for `exp`, `nbf` and `iat`.
pub const DEFAULT_LEEWAY: Duration = Duration::from_secs(60);
/// A JWKS URL is fetched at most once per this interval per issuer.
pub const JWKS_REFRESH_MIN_INTERVAL: Duration = Duration::from_secs(30);
/// Default bound of the verified-token cache.
pub const DEFAULT_CACHE_ENTRIES: usize = 10_000;
/// Largest token accepted, in bytes.
pub const MAX_TOKEN_LEN: usize = 16 * 1024;
/// Largest JWKS document fetched, in bytes.
const MAX_JWKS_BYTES: usize = 1024 * 1024;
const JWKS_FETCH_TIMEOUT: Duration = Duration::from_secs(5);
const CACHE_SHARDS: usize = 16;

// === Algorithm ===

/// A JWS algorithm we verify.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[allow(clippy::upper_case_acronyms)]
pub enum Algorithm {
    RS256,
    RS384,
    RS512,
    PS256,
    PS384,
    PS512,
    ES256,
    ES384,
    ES512,
    EdDSA,
    HS256,
    HS384,
    HS512,
}

impl Algorithm {
    pub const ALL: [Algorithm; 13] = [
        Algorithm::RS256,
        Algorithm::RS384,
        Algorithm::RS512,
        Algorithm::PS256,
        Algorithm::PS384,
        Algorithm::PS512,
        Algorithm::ES256,
        Algorithm::ES384,
        Algorithm::ES512,
        Algorithm::EdDSA,
        Algorithm::HS256,
        Algorithm::HS384,
        Algorithm::HS512,
    ];

    /// The JOSE name, exact case (`"ES256"`).
    pub fn name(self) -> &'static str {
        match self {
            Algorithm::RS256 => "RS256",
            Algorithm::RS384 => "RS384",
            Algorithm::RS512 => "RS512",
            Algorithm::PS256 => "PS256",
            Algorithm::PS384 => "PS384",
            Algorithm::PS512 => "PS512",
            Algorithm::ES256 => "ES256",
            Algorithm::ES384 => "ES384",
            Algorithm::ES512 => "ES512",
            Algorithm::EdDSA => "EdDSA",
            Algorithm::HS256 => "HS256",
            Algorithm::HS384 => "HS384",
            Algorithm::HS512 => "HS512",
        }
    }

    /// From a JOSE name, exact case only (`"hs256"` is not `HS256`).
    pub fn from_jose(s: &str) -> Option<Algorithm> {
        Algorithm::ALL.into_iter().find(|a| a.name() == s)
    }

    pub fn is_hmac(self) -> bool {
        matches!(self, Algorithm::HS256 | Algorithm::HS384 | Algorithm::HS512)
    }

    pub fn is_rsa(self) -> bool {
        self.rsa_params().is_some()
    }

    /// RFC 7518 3.2: an HMAC key at least as long as the hash output.
    pub fn min_hmac_key_len(self) -> usize {
        match self {
            Algorithm::HS384 => 48,
            Algorithm::HS512 => 64,
            _ => jwks::MIN_HMAC_KEY_BYTES,
        }
    }

    fn hmac(self) -> Option<aws_lc_rs::hmac::Algorithm> {
        use aws_lc_rs::hmac;
        match self {
            Algorithm::HS256 => Some(hmac::HMAC_SHA256),
            Algorithm::HS384 => Some(hmac::HMAC_SHA384),
            Algorithm::HS512 => Some(hmac::HMAC_SHA512),
            _ => None,
        }
    }

    fn rsa_params(self) -> Option<&'static aws_lc_rs::signature::RsaParameters> {
        use aws_lc_rs::signature as s;
        match self {
            Algorithm::RS256 => Some(&s::RSA_PKCS1_2048_8192_SHA256),
            Algorithm::RS384 => Some(&s::RSA_PKCS1_2048_8192_SHA384),
            Algorithm::RS512 => Some(&s::RSA_PKCS1_2048_8192_SHA512),
            Algorithm::PS256 => Some(&s::RSA_PSS_2048_8192_SHA256),
            Algorithm::PS384 => Some(&s::RSA_PSS_2048_8192_SHA384),
            Algorithm::PS512 => Some(&s::RSA_PSS_2048_8192_SHA512),
            _ => None,
        }
    }

    fn curve_verification(
        self,
    ) -> Option<&'static dyn aws_lc_rs::signature::VerificationAlgorithm> {
        use aws_lc_rs::signature as s;
        match self {
            Algorithm::ES256 => Some(&s::ECDSA_P256_SHA256_FIXED),
            Algorithm::ES384 => Some(&s::ECDSA_P384_SHA384_FIXED),
            Algorithm::ES512 => Some(&s::ECDSA_P521_SHA512_FIXED),
            Algorithm::EdDSA => Some(&s::ED25519),
            _ => None,
        }
    }
}

impl std::str::FromStr for Algorithm {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        Algorithm::from_jose(s).ok_or_else(|| {
            format!(
                "unknown JWT algorithm {s:?}; one of {}",
                Algorithm::ALL.map(Algorithm::name).join(", ")
            )
        })
    }
}

// === configuration ===

/// Where an issuer's keys come from.
#[derive(Clone)]
pub enum KeySource {
    /// A JWKS document on disk, read once at construction.
    JwksFile(PathBuf),
    /// A JWKS URL (https; http only to a loopback address), fetched on
    /// first need and on an unknown kid.
    JwksUrl(String),
    /// A shared secret for HS256/384/512, and only for those.
    Secret(Vec<u8>),
}

impl std::fmt::Debug for KeySource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            KeySource::JwksFile(p) => f.debug_tuple("JwksFile").field(p).finish(),
            KeySource::JwksUrl(u) => f.debug_tuple("JwksUrl").field(u).finish(),
            KeySource::Secret(_) => f.write_str("Secret(redacted)"),
        }
    }
}

/// One trusted token issuer.
#[derive(Debug, Clone)]
pub struct IssuerConfig {
    /// The exact `iss` value.
    pub issuer: String,
    /// `aud` must contain one of these (empty: not checked).
    pub audiences: Vec<String>,
    /// The algorithms this issuer signs with; the token's `alg` must be one.
    pub algorithms: Vec<Algorithm>,
    pub keys: KeySource,
    /// Clock leeway for `exp`, `nbf`, `iat`.
    pub leeway: Duration,
    /// Refuse tokens without `exp` (default true).
    pub require_exp: bool,
}

impl IssuerConfig {
    /// An issuer with the default leeway, `exp` required, no audience check.
    pub fn new(issuer: impl Into<String>, algorithms: Vec<Algorithm>, keys: KeySource) -> Self {
        IssuerConfig {
            issuer: issuer.into(),
            audiences: Vec::new(),
            algorithms,
            keys,
            leeway: DEFAULT_LEEWAY,
            require_exp: true,
        }
    }
}

/// A configuration the verifier refuses; each message says what to fix.
#[derive(Debug, thiserror::Error)]
pub enum JwtConfigError {
    #[error("issuer {issuer:?}: {reason}")]
    Issuer { issuer: String, reason: String },
    #[error("issuer {issuer:?}: JWKS file {path}: {reason}")]
    JwksFile {
        issuer: String,
        path: PathBuf,
        reason: String,
    },
}

// === errors ===

/// Why a token was refused. `reason()` is stable, for logs and metrics.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum JwtError {
    #[error("malformed token")]
    Malformed,
    #[error("token too large")]
    TooLarge,
    #[error("alg none is refused")]
    AlgNone,
    #[error("unsupported alg {0:?}")]
    UnsupportedAlg(String),
    #[error("alg not allowed for this issuer")]
    AlgNotAllowed,
    #[error("token has a crit header")]
    UnsupportedCrit,
    #[error("unknown issuer")]
    UnknownIssuer,
    #[error("no key for this kid and alg")]
    UnknownKid,
    #[error("bad signature")]
    BadSignature,
    #[error("the claims are not a JSON object")]
    MalformedClaims,
    #[error("claim {0} has the wrong type")]
    InvalidClaim(&'static str),
    #[error("token expired")]
    Expired,
    #[error("token not yet valid")]
    NotYetValid,
    #[error("token issued in the future")]
    IssuedInFuture,
    #[error("wrong audience")]
    WrongAudience,
    #[error("missing claim {0}")]
    MissingClaim(&'static str),
    #[error("issuer keys unavailable")]
    KeysUnavailable,
}

impl JwtError {
    /// A stable snake_case label.
    pub fn reason(&self) -> &'static str {
        match self {
            JwtError::Malformed => "malformed",
            JwtError::TooLarge => "too_large",
            JwtError::AlgNone => "alg_none",
            JwtError::UnsupportedAlg(_) => "unsupported_alg",
            JwtError::AlgNotAllowed => "alg_not_allowed",
            JwtError::UnsupportedCrit => "unsupported_crit",
            JwtError::UnknownIssuer => "unknown_issuer",
            JwtError::UnknownKid => "unknown_kid",
            JwtError::BadSignature => "bad_signature",
            JwtError::MalformedClaims => "malformed_claims",
            JwtError::InvalidClaim(_) => "invalid_claim",
            JwtError::Expired => "expired",
            JwtError::NotYetValid => "not_yet_valid",
            JwtError::IssuedInFuture => "issued_in_future",
            JwtError::WrongAudience => "wrong_audience",
            JwtError::MissingClaim(_) => "missing_claim",
            JwtError::KeysUnavailable => "keys_unavailable",
        }
    }
}

// === verified token ===

/// A token whose signature and registered claims checked out.
#[derive(Debug, Clone, PartialEq)]
pub struct VerifiedToken {
    pub issuer: String,
    pub subject: Option<String>,
    pub claims: Map<String, Value>,
    /// `cnf."x5t#S256"` (RFC 8705), when the token is certificate-bound.
    pub cnf_x5t_s256: Option<String>,
    pub expires_at: Option<SystemTime>,
    pub not_before: Option<SystemTime>,
    pub issued_at: Option<SystemTime>,
    pub alg: Algorithm,
    pub kid: Option<String>,
}

// === JWKS fetching ===

/// Fetches a JWKS document. The default speaks HTTPS with the system's
/// roots; tests plug in their own.
pub trait JwksFetcher: Send + Sync + 'static {
    fn fetch<'a>(
        &'a self,
        url: &'a str,
    ) -> Pin<Box<dyn Future<Output = Result<Vec<u8>, String>> + Send + 'a>>;
}

type HttpClient = hyper_util::client::legacy::Client<
    hyper_rustls::HttpsConnector<hyper_util::client::legacy::connect::HttpConnector>,
    http_body_util::Empty<bytes::Bytes>,
>;

/// HTTPS (and loopback-only HTTP) JWKS fetcher with the system's roots, a
/// 5 s timeout and a 1 MiB limit.
#[derive(Default)]
pub struct HttpsJwksFetcher {
    client: OnceLock<Result<HttpClient, String>>,
}

impl HttpsJwksFetcher {
    fn client(&self) -> Result<&HttpClient, String> {
        self.client
            .get_or_init(|| {
                let mut roots = rustls::RootCertStore::empty();
                for cert in rustls_native_certs::load_native_certs().certs {
                    let _ = roots.add(cert);
                }
                let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
                let tls = rustls::ClientConfig::builder_with_provider(provider)
                    .with_safe_default_protocol_versions()
                    .map_err(|e| e.to_string())?
                    .with_root_certificates(roots)
                    .with_no_client_auth();
                let https = hyper_rustls::HttpsConnectorBuilder::new()
                    .with_tls_config(tls)
                    .https_or_http()
                    .enable_http1()
                    .build();
                Ok(
                    hyper_util::client::legacy::Client::builder(
                        hyper_util::rt::TokioExecutor::new(),
                    )
                    .build(https),
                )
            })
            .as_ref()
            .map_err(Clone::clone)
    }
}

impl JwksFetcher for HttpsJwksFetcher {
    fn fetch<'a>(
        &'a self,
        url: &'a str,
    ) -> Pin<Box<dyn Future<Output = Result<Vec<u8>, String>> + Send + 'a>> {
        Box::pin(async move {
            use http_body_util::BodyExt as _;
            let uri: http::Uri = url.parse().map_err(|_| "bad URL".to_owned())?;
            check_jwks_url(url)?;
            let client = self.client()?;
            let req = http::Request::get(uri)
                .header(
                    http::header::ACCEPT,
                    "application/jwk-set+json, application/json",
                )
                .body(http_body_util::Empty::new())
                .map_err(|e| e.to_string())?;
            let fut = async {
                let resp = client.request(req).await.map_err(|e| e.to_string())?;
                if !resp.status().is_success() {
                    return Err(format!("HTTP status {}", resp.status()));
                }
                let body = http_body_util::Limited::new(resp.into_body(), MAX_JWKS_BYTES)
                    .collect()
                    .await
                    .map_err(|e| e.to_string())?;
                Ok(body.to_bytes().to_vec())
            };
            tokio::time::timeout(JWKS_FETCH_TIMEOUT, fut)
                .await
                .map_err(|_| "timed out".to_owned())?
        })
    }
}

/// https, or http to a loopback host only.
fn check_jwks_url(url: &str) -> Result<(), String> {
    let uri: http::Uri = url.parse().map_err(|_| format!("{url:?} is not a URL"))?;
    match (uri.scheme_str(), uri.host()) {
        (Some("https"), Some(_)) => Ok(()),
        (Some("http"), Some(h)) if h == "localhost" || h == "127.0.0.1" || h == "[::1]" => Ok(()),
        _ => Err(format!(
            "JWKS URL {url:?} must be https (plain http only to a loopback address)"
        )),
    }
}

// === JwtVerifier ===

struct IssuerState {
    cfg: IssuerConfig,
    keys: RwLock<Arc<JwkSet>>,
    /// When the JWKS URL was last fetched (successfully or not).
    last_fetch: Mutex<Option<Instant>>,
    /// One fetch at a time per issuer.
    fetching: tokio::sync::Mutex<()>,
}

/// Verifies bearer tokens for a set of issuers. `Send + Sync`; share it in
/// an `Arc`.
pub struct JwtVerifier {
    issuers: HashMap<String, IssuerState>,
    fetcher: Arc<dyn JwksFetcher>,
    cache: TokenCache,
}

impl std::fmt::Debug for JwtVerifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JwtVerifier")
            .field("issuers", &self.issuers.keys().collect::<Vec<_>>())
            .finish_non_exhaustive()
    }
}

impl JwtVerifier {
    /// Validates the issuers and loads their JWKS files.
    pub fn new(issuers: Vec<IssuerConfig>) -> Result<Self, JwtConfigError> {
        Self::with_options(
            issuers,
            Arc::new(HttpsJwksFetcher::default()),
            DEFAULT_CACHE_ENTRIES,
        )
    }

    /// [`JwtVerifier::new`] with another JWKS fetcher and cache bound
    /// (0 disables the cache).
    pub fn with_options(
        issuers: Vec<IssuerConfig>,
        fetcher: Arc<dyn JwksFetcher>,
        cache_entries: usize,
    ) -> Result<Self, JwtConfigError> {
        let mut map = HashMap::new();
        for cfg in issuers {
            let err = |reason: String| JwtConfigError::Issuer {
                issuer: cfg.issuer.clone(),
                reason,
            };
            if cfg.issuer.is_empty() {
                return Err(err("the issuer (iss) must not be empty".into()));
            }
            if map.contains_key(&cfg.issuer) {
                return Err(err("configured twice".into()));
            }
            if cfg.algorithms.is_empty() {
                return Err(err("list the algorithms this issuer signs with".into()));
            }
            let keys = match &cfg.keys {
                KeySource::Secret(secret) => {
                    if let Some(a) = cfg.algorithms.iter().find(|a| !a.is_hmac()) {
                        return Err(err(format!(
                            "a shared secret verifies only HS256/HS384/HS512, not {}; use a JWKS for it",
                            a.name()
                        )));
                    }
                    let need = cfg
                        .algorithms
                        .iter()
                        .map(|a| a.min_hmac_key_len())
                        .max()
                        .unwrap_or(jwks::MIN_HMAC_KEY_BYTES);
                    if secret.len() < need {
                        return Err(err(format!(
                            "the shared secret is {} bytes; at least {need} are required for {}",
                            secret.len(),
                            cfg.algorithms
                                .iter()
                                .map(|a| a.name())
                                .collect::<Vec<_>>()
                                .join(", ")
                        )));
                    }
                    JwkSet {
                        keys: vec![Jwk::secret(secret.clone())],
                        skipped: 0,
                    }
                }
                KeySource::JwksFile(path) => {
                    refuse_hmac_without_secret(&cfg).map_err(err)?;
                    let file_err = |reason: String| JwtConfigError::JwksFile {
                        issuer: cfg.issuer.clone(),
                        path: path.clone(),
                        reason,
                    };
                    let bytes = std::fs::read(path).map_err(|e| file_err(e.to_string()))?;
                    let set = load_asymmetric(&bytes).map_err(file_err)?;
                    if set.keys.is_empty() {
                        return Err(file_err("no signature keys in it".into()));
                    }
                    set
                }
                KeySource::JwksUrl(url) => {
                    refuse_hmac_without_secret(&cfg).map_err(err)?;
                    check_jwks_url(url).map_err(err)?;
                    JwkSet::default()
                }
            };
            map.insert(
                cfg.issuer.clone(),
                IssuerState {
                    keys: RwLock::new(Arc::new(keys)),
                    last_fetch: Mutex::new(None),
                    fetching: tokio::sync::Mutex::new(()),
                    cfg,
                },
            );
        }
        Ok(JwtVerifier {
            issuers: map,
            fetcher,
            cache: TokenCache::new(cache_entries),
        })
    }

    /// Verifies a token; on an unknown kid from a JWKS-URL issuer, fetches
    /// the JWKS again (at most once per 30 s per issuer; a failed fetch keeps
    /// the last good keys) and retries once.
    pub async fn verify(&self, token: &str, now: SystemTime) -> Result<VerifiedToken, JwtError> {
        match self.verify_cached_keys(token, now) {
            Err(JwtError::UnknownKid) => {}
            other => return other,
        }
        let Some(state) = self.issuer_of(token) else {
            return Err(JwtError::UnknownIssuer);
        };
        if !matches!(state.cfg.keys, KeySource::JwksUrl(_)) {
            return Err(JwtError::UnknownKid);
        }
        if !self.refresh_issuer(state, false).await {
            return Err(if state.keys.read().expect("keys lock").keys.is_empty() {
                JwtError::KeysUnavailable
            } else {
                JwtError::UnknownKid
            });
        }
        self.verify_cached_keys(token, now)
    }

    /// Verifies a token with the keys at hand; no network.
    pub fn verify_cached_keys(
        &self,
        token: &str,
        now: SystemTime,
    ) -> Result<VerifiedToken, JwtError> {
        if token.len() > MAX_TOKEN_LEN {
            return Err(JwtError::TooLarge);
        }
        let digest = self.cache.enabled().then(|| token_digest(token));
        if let Some(d) = &digest {
            if let Some(hit) = self.cache.get(d, now) {
                let state = self
                    .issuers
                    .get(&hit.issuer)
                    .ok_or(JwtError::UnknownIssuer)?;
                check_times(&hit, now, state.cfg.leeway)?;
                return Ok((*hit).clone());
            }
        }
        let jws = jwks::parse_compact(token)?;
        let claims: Map<String, Value> =
            serde_json::from_slice(&jws.payload).map_err(|_| JwtError::MalformedClaims)?;
        let iss = match claims.get("iss") {
            Some(Value::String(s)) => s.as_str(),
            Some(_) => return Err(JwtError::InvalidClaim("iss")),
            None => return Err(JwtError::MissingClaim("iss")),
        };
        let state = self.issuers.get(iss).ok_or(JwtError::UnknownIssuer)?;
        let keys = state.keys.read().expect("keys lock").clone();
        let verified = jws.verify(&keys, &state.cfg.algorithms)?;
        let token = build_verified(&state.cfg, verified, claims)?;
        check_times(&token, now, state.cfg.leeway)?;
        if let Some(d) = digest {
            self.cache.insert(d, Arc::new(token.clone()), now);
        }
        Ok(token)
    }

    /// Fetches every JWKS URL now (e.g. at startup, or periodically),
    /// regardless of the rate limit. Returns the errors by issuer.
    pub async fn refresh_all(&self) -> Vec<(String, String)> {
        let mut errors = Vec::new();
        for (name, state) in &self.issuers {
            if let KeySource::JwksUrl(_) = state.cfg.keys {
                if let Err(e) = self.fetch_into(state).await {
                    errors.push((name.clone(), e));
                }
            }
        }
        errors
    }

    /// Number of tokens in the verified-token cache.
    pub fn cached_tokens(&self) -> usize {
        self.cache.len()
    }

    fn issuer_of(&self, token: &str) -> Option<&IssuerState> {
        let payload = token.split('.').nth(1)?;
        let claims: Map<String, Value> = serde_json::from_slice(&jwks::b64url(payload)?).ok()?;
        self.issuers.get(claims.get("iss")?.as_str()?)
    }

    /// Fetches the issuer's JWKS unless fetched within the last 30 s.
    /// True when new keys were installed.
    async fn refresh_issuer(&self, state: &IssuerState, force: bool) -> bool {
        let _one = state.fetching.lock().await;
        {
            let mut last = state.last_fetch.lock().expect("last_fetch lock");
            if !force && last.is_some_and(|t| t.elapsed() < JWKS_REFRESH_MIN_INTERVAL) {
                return false;
            }
            *last = Some(Instant::now());
        }
        match self.fetch_into(state).await {
            Ok(()) => true,
            Err(e) => {
                tracing::warn!(issuer = %state.cfg.issuer, error = %e,
                    "JWKS fetch failed; keeping the last good keys");
                false
            }
        }
    }

    async fn fetch_into(&self, state: &IssuerState) -> Result<(), String> {
        let KeySource::JwksUrl(url) = &state.cfg.keys else {
            return Ok(());
        };
        let bytes = self.fetcher.fetch(url).await?;
        let set = load_asymmetric(&bytes)?;
        if set.keys.is_empty() {
            return Err("no signature keys in the JWKS".into());
        }
        tracing::debug!(issuer = %state.cfg.issuer, keys = set.keys.len(), "JWKS loaded");
        *state.keys.write().expect("keys lock") = Arc::new(set);
        Ok(())
    }
}

fn refuse_hmac_without_secret(cfg: &IssuerConfig) -> Result<(), String> {
    match cfg.algorithms.iter().find(|a| a.is_hmac()) {
        Some(a) => Err(format!(
            "{} needs a shared secret (keys = secret), never a JWKS",
            a.name()
        )),
        None => Ok(()),
    }
}

/// A JWKS for an issuer: asymmetric keys only (HS* verifies only against a
/// configured secret).
fn load_asymmetric(bytes: &[u8]) -> Result<JwkSet, String> {
    let set = JwkSet::parse(bytes).map_err(|e| e.to_string())?;
    if set.has_symmetric() {
        return Err("symmetric (oct) keys do not belong in a JWKS; configure a secret".into());
    }
    Ok(set)
}

fn numeric_date(
    claims: &Map<String, Value>,
    name: &'static str,
) -> Result<Option<SystemTime>, JwtError> {
    match claims.get(name) {
        None => Ok(None),
        Some(Value::Number(n)) => {
            let secs = n.as_f64().ok_or(JwtError::InvalidClaim(name))?;
            if !secs.is_finite() || !(0.0..=1e11).contains(&secs) {
                return Err(JwtError::InvalidClaim(name));
            }
            Ok(Some(UNIX_EPOCH + Duration::from_secs_f64(secs)))
        }
        Some(_) => Err(JwtError::InvalidClaim(name)),
    }
}

fn build_verified(
    cfg: &IssuerConfig,
    jws: jwks::VerifiedJws,
    claims: Map<String, Value>,
) -> Result<VerifiedToken, JwtError> {
    let expires_at = numeric_date(&claims, "exp")?;
    if cfg.require_exp && expires_at.is_none() {
        return Err(JwtError::MissingClaim("exp"));
    }
    let not_before = numeric_date(&claims, "nbf")?;
    let issued_at = numeric_date(&claims, "iat")?;
    let subject = match claims.get("sub") {
        None => None,
        Some(Value::String(s)) => Some(s.clone()),
        Some(_) => return Err(JwtError::InvalidClaim("sub")),
    };
    if !cfg.audiences.is_empty() {
        let ok = match claims.get("aud") {
            None => return Err(JwtError::MissingClaim("aud")),
            Some(Value::String(a)) => cfg.audiences.iter().any(|x| x == a),
            Some(Value::Array(list)) => list.iter().any(|a| {
                a.as_str()
                    .is_some_and(|a| cfg.audiences.iter().any(|x| x == a))
            }),
            Some(_) => return Err(JwtError::InvalidClaim("aud")),
        };
        if !ok {
            return Err(JwtError::WrongAudience);
        }
    }
    let cnf_x5t_s256 = match claims.get("cnf") {
        None => None,
        Some(Value::Object(cnf)) => match cnf.get("x5t#S256") {
            None => None,
            Some(Value::String(t)) => Some(t.clone()),
            Some(_) => return Err(JwtError::InvalidClaim("cnf")),
        },
        Some(_) => return Err(JwtError::InvalidClaim("cnf")),
    };
    Ok(VerifiedToken {
        issuer: cfg.issuer.clone(),
        subject,
        claims,
        cnf_x5t_s256,
        expires_at,
        not_before,
        issued_at,
        alg: jws.alg,
        kid: jws.kid,
    })
}

/// `exp`, `nbf`, `iat` against `now`, with the leeway.
fn check_times(t: &VerifiedToken, now: SystemTime, leeway: Duration) -> Result<(), JwtError> {
    if let Some(exp) = t.expires_at {
        if now >= exp + leeway {
            return Err(JwtError::Expired);
        }
    }
    if let Some(nbf) = t.not_before {
        if now + leeway < nbf {
            return Err(JwtError::NotYetValid);
        }
    }
    if let Some(iat) = t.issued_at {
        if now + leeway < iat {
            return Err(JwtError::IssuedInFuture);
        }
    }
    Ok(())
}

fn token_digest(token: &str) -> [u8; 32] {
    let d = digest::digest(&digest::SHA256, token.as_bytes());
    let mut out = [0u8; 32];
    out.copy_from_slice(d.as_ref());
    out
}

// === TokenCache ===

/// Verified tokens by SHA-256 of the token string, each kept until its
/// `exp` (plus leeway; at most 5 minutes without `exp`), LRU-bounded,
/// sharded to keep lock contention low.
struct TokenCache {
    shards: Vec<CacheShard>,
}

/// One lock's worth of the cache: digest → (token, kept until).
type CacheShard = Mutex<lru::LruCache<[u8; 32], (Arc<VerifiedToken>, SystemTime)>>;

/// Longest a token without `exp` stays cached.
const CACHE_TTL_WITHOUT_EXP: Duration = Duration::from_secs(300);

impl TokenCache {
    fn new(entries: usize) -> Self {
        if entries == 0 {
            return TokenCache { shards: Vec::new() };
        }
        let per = NonZeroUsize::new(entries.div_ceil(CACHE_SHARDS)).expect("non-zero");
        TokenCache {
            shards: (0..CACHE_SHARDS)
                .map(|_| Mutex::new(lru::LruCache::new(per)))
                .collect(),
        }
    }

    fn enabled(&self) -> bool {
        !self.shards.is_empty()
    }

    fn shard(&self, d: &[u8; 32]) -> &CacheShard {
        &self.shards[usize::from(d[0]) % self.shards.len()]
    }

    /// The entry, unless it has outlived `now` (then it is dropped).
    fn get(&self, d: &[u8; 32], now: SystemTime) -> Option<Arc<VerifiedToken>> {
        let mut shard = self.shard(d).lock().expect("cache lock");
        let (tok, until) = shard.get(d)?;
        if now > *until {
            shard.pop(d);
            return None;
        }
        Some(tok.clone())
    }

    fn insert(&self, d: [u8; 32], tok: Arc<VerifiedToken>, now: SystemTime) {
        let until = tok
            .expires_at
            .unwrap_or(now + CACHE_TTL_WITHOUT_EXP)
            .min(now + Duration::from_secs(24 * 3600));
        // The caller's `now` is re-checked on every hit; this only bounds
        // how long the entry occupies the cache.
        self.shard(&d)
            .lock()
            .expect("cache lock")
            .put(d, (tok, until + DEFAULT_LEEWAY));
    }

    fn len(&self) -> usize {
        self.shards
            .iter()
            .map(|s| s.lock().expect("cache lock").len())
            .sum()
    }
}

// === claim rules ===

/// A per-route requirement on one claim.
#[derive(Debug, Clone, PartialEq)]
pub struct ClaimRule {
    /// Claim name; a dotted path (`realm_access.roles`) reaches into objects.
    pub claim: String,
    pub rule: ClaimMatch,
}

#[derive(Debug, Clone, PartialEq)]
pub enum ClaimMatch {
    /// The claim equals this JSON value.
    Equals(Value),
    /// A space-separated string (OAuth `scope`) has this word, or an array
    /// has this string.
    Contains(String),
    /// The claim equals one of these values.
    OneOf(Vec<Value>),
    /// The claim is present (and not null).
    Present,
}

fn claim_at<'a>(claims: &'a Map<String, Value>, path: &str) -> Option<&'a Value> {
    if let Some(v) = claims.get(path) {
        return Some(v);
    }
    let mut parts = path.split('.');
    let mut v = claims.get(parts.next()?)?;
    for p in parts {
        v = v.as_object()?.get(p)?;
    }
    Some(v)
}

/// All rules must hold. The error names the first failing claim (safe to
/// log; no claim values).
pub fn check_rules(token: &VerifiedToken, rules: &[ClaimRule]) -> Result<(), String> {
    for r in rules {
        let v = claim_at(&token.claims, &r.claim).filter(|v| !v.is_null());
        let ok = match (&r.rule, v) {
            (_, None) => false,
            (ClaimMatch::Present, Some(_)) => true,
            (ClaimMatch::Equals(want), Some(v)) => v == want,
            (ClaimMatch::OneOf(list), Some(v)) => list.contains(v),
            (ClaimMatch::Contains(word), Some(Value::String(s))) => s.split(' ').any(|w| w == word),
            (ClaimMatch::Contains(word), Some(Value::Array(a))) => {
                a.iter().any(|x| x.as_str() == Some(word))
            }
            (ClaimMatch::Contains(_), Some(_)) => false,
        };
        if !ok {
            return Err(format!(
                "claim {:?} does not satisfy the route's rule",
                r.claim
            ));
        }
    }
    Ok(())
}

// === certificate binding ===

/// base64url(SHA-256(DER)) without padding: the RFC 8705 thumbprint.
pub fn x5t_s256(cert_der: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(digest::digest(&digest::SHA256, cert_der).as_ref())
}

/// RFC 8705: a certificate-bound token (`cnf."x5t#S256"`) is good only with
/// the client certificate it names. An unbound token or no certificate:
/// false (call it only on routes that require binding).
pub fn cert_bound_ok(token: &VerifiedToken, client_cert_der: Option<&[u8]>) -> bool {
    match (&token.cnf_x5t_s256, client_cert_der) {
        (Some(want), Some(der)) => {
            let have = x5t_s256(der);
            // Thumbprints are public, but compare in constant time anyway.
            have.len() == want.len()
                && aws_lc_rs::constant_time::verify_slices_are_equal(
                    have.as_bytes(),
                    want.as_bytes(),
                )
                .is_ok()
        }
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use aws_lc_rs::rand::SystemRandom;
    use aws_lc_rs::rsa::KeySize;
    use aws_lc_rs::signature::{
        EcdsaKeyPair, Ed25519KeyPair, KeyPair, RsaKeyPair, ECDSA_P256_SHA256_FIXED_SIGNING,
        RSA_PKCS1_SHA256, RSA_PSS_SHA256,
    };
    use serde_json::json;
    use std::sync::atomic::{AtomicUsize, Ordering};

    const ISS: &str = "https://idp.example";

    fn b64(b: &[u8]) -> String {
        URL_SAFE_NO_PAD.encode(b)
    }

    /// A key the tests sign with.
    enum Signer {
        Rsa(RsaKeyPair, bool),
        Ec(EcdsaKeyPair),
        Ed(Ed25519KeyPair),
        Hmac(Vec<u8>, Algorithm),
    }

    impl Signer {
        fn rsa() -> Self {
            Signer::Rsa(RsaKeyPair::generate(KeySize::Rsa2048).unwrap(), false)
        }
        fn rsa_pss() -> Self {
            Signer::Rsa(RsaKeyPair::generate(KeySize::Rsa2048).unwrap(), true)
        }
        fn ec() -> Self {
            Signer::Ec(EcdsaKeyPair::generate(&ECDSA_P256_SHA256_FIXED_SIGNING).unwrap())
        }
        fn ed() -> Self {
            Signer::Ed(Ed25519KeyPair::generate().unwrap())
        }
        fn hmac(secret: &[u8]) -> Self {
            Signer::Hmac(secret.to_vec(), Algorithm::HS256)
        }

        fn alg(&self) -> &'static str {
            match self {
                Signer::Rsa(_, false) => "RS256",
                Signer::Rsa(_, true) => "PS256",
                Signer::Ec(_) => "ES256",
                Signer::Ed(_) => "EdDSA",
                Signer::Hmac(_, a) => a.name(),
            }
        }

        fn sign_bytes(&self, msg: &[u8]) -> Vec<u8> {
            match self {
                Signer::Rsa(k, pss) => {
                    let mut sig = vec![0; k.public_modulus_len()];
                    let enc = if *pss {
                        &RSA_PSS_SHA256
                    } else {
                        &RSA_PKCS1_SHA256
                    };
                    k.sign(enc, &SystemRandom::new(), msg, &mut sig).unwrap();
                    sig
                }
                Signer::Ec(k) => k.sign(&SystemRandom::new(), msg).unwrap().as_ref().to_vec(),
                Signer::Ed(k) => k.sign(msg).as_ref().to_vec(),
                Signer::Hmac(s, a) => {
                    let key = aws_lc_rs::hmac::Key::new(a.hmac().unwrap(), s);
                    aws_lc_rs::hmac::sign(&key, msg).as_ref().to_vec()
                }
            }
        }

        /// The public JWK, with `kid`.
        fn jwk(&self, kid: &str) -> Value {
            match self {
                Signer::Rsa(k, _) => {
                    let p = k.public_key();
                    json!({"kty": "RSA", "kid": kid, "use": "sig",
                        "n": b64(p.modulus().big_endian_without_leading_zero()),
                        "e": b64(p.exponent().big_endian_without_leading_zero())})
                }
                Signer::Ec(k) => {
                    let pt = k.public_key().as_ref();
                    json!({"kty": "EC", "crv": "P-256", "kid": kid,
                        "x": b64(&pt[1..33]), "y": b64(&pt[33..65])})
                }
                Signer::Ed(k) => {
                    json!({"kty": "OKP", "crv": "Ed25519", "kid": kid, "x": b64(k.public_key().as_ref())})
                }
                Signer::Hmac(..) => panic!("no public JWK for a secret"),
            }
        }

        fn token_with_header(&self, header: Value, claims: &Value) -> String {
            let input = format!(
                "{}.{}",
                b64(header.to_string().as_bytes()),
                b64(claims.to_string().as_bytes())
            );
            let sig = self.sign_bytes(input.as_bytes());
            format!("{input}.{}", b64(&sig))
        }

        fn token(&self, kid: &str, claims: &Value) -> String {
            self.token_with_header(json!({"alg": self.alg(), "typ": "JWT", "kid": kid}), claims)
        }
    }

    fn now() -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(1_750_000_000)
    }

    fn secs(t: SystemTime) -> u64 {
        t.duration_since(UNIX_EPOCH).unwrap().as_secs()
    }

    fn claims() -> Value {
        json!({"iss": ISS, "sub": "alice", "aud": "api", "exp": secs(now()) + 600,
            "iat": secs(now()) - 10, "scope": "read payments:write"})
    }

    fn jwks_file(keys: &[Value]) -> tempfile::NamedTempFile {
        let f = tempfile::NamedTempFile::new().unwrap();
        std::fs::write(f.path(), json!({ "keys": keys }).to_string()).unwrap();
        f
    }

    fn issuer(algs: Vec<Algorithm>, keys: KeySource) -> IssuerConfig {
        let mut c = IssuerConfig::new(ISS, algs, keys);
        c.audiences = vec!["api".into()];
        c
    }

    /// A verifier for one JWKS-file issuer; the file must outlive it only
    /// during `new`.
    fn verifier_for(signer: &Signer, alg: Algorithm) -> JwtVerifier {
        let f = jwks_file(&[signer.jwk("k1")]);
        JwtVerifier::new(vec![issuer(
            vec![alg],
            KeySource::JwksFile(f.path().into()),
        )])
        .unwrap()
    }

    fn es256() -> (Signer, JwtVerifier) {
        let s = Signer::ec();
        let v = verifier_for(&s, Algorithm::ES256);
        (s, v)
    }

    fn check(v: &JwtVerifier, token: &str) -> Result<VerifiedToken, JwtError> {
        v.verify_cached_keys(token, now())
    }

    #[test]
    fn verifier_is_send_sync() {
        fn assert<T: Send + Sync>() {}
        assert::<JwtVerifier>();
        assert::<Arc<JwtVerifier>>();
    }

    #[test]
    fn each_algorithm_verifies() {
        for (s, alg) in [
            (Signer::ec(), Algorithm::ES256),
            (Signer::rsa(), Algorithm::RS256),
            (Signer::rsa_pss(), Algorithm::PS256),
            (Signer::ed(), Algorithm::EdDSA),
        ] {
            let v = verifier_for(&s, alg);
            let t = check(&v, &s.token("k1", &claims())).unwrap_or_else(|e| panic!("{alg:?}: {e}"));
            assert_eq!(t.issuer, ISS);
            assert_eq!(t.subject.as_deref(), Some("alice"));
            assert_eq!(t.alg, alg);
            assert_eq!(t.expires_at, Some(now() + Duration::from_secs(600)));
        }
        let secret = [7u8; 32];
        let v = JwtVerifier::new(vec![issuer(
            vec![Algorithm::HS256],
            KeySource::Secret(secret.to_vec()),
        )])
        .unwrap();
        let s = Signer::hmac(&secret);
        check(&v, &s.token("any", &claims())).unwrap();
        // HS512 with a 64-byte secret.
        let secret = [9u8; 64];
        let v = JwtVerifier::new(vec![issuer(
            vec![Algorithm::HS512],
            KeySource::Secret(secret.to_vec()),
        )])
        .unwrap();
        check(
            &v,
            &Signer::Hmac(secret.to_vec(), Algorithm::HS512).token("x", &claims()),
        )
        .unwrap();
    }

    #[test]
    fn alg_none_in_every_casing_is_refused() {
        let (s, v) = es256();
        let good = s.token("k1", &claims());
        let parts: Vec<&str> = good.split('.').collect();
        for none in ["none", "None", "NONE", "nOnE", "noNe"] {
            let h = b64(json!({"alg": none, "kid": "k1"}).to_string().as_bytes());
            for sig in ["", parts[2]] {
                let t = format!("{h}.{}.{sig}", parts[1]);
                let e = check(&v, &t).unwrap_err();
                assert!(
                    matches!(e, JwtError::AlgNone | JwtError::Malformed),
                    "{none}: {e:?}"
                );
            }
            let t = format!("{h}.{}.{}", parts[1], parts[2]);
            assert_eq!(check(&v, &t).unwrap_err(), JwtError::AlgNone);
        }
    }

    #[test]
    fn alg_names_are_case_sensitive_and_fixed_per_issuer() {
        let (s, v) = es256();
        for alg in ["es256", "Es256", "ES257", "HS1", "RSA-OAEP"] {
            let t = s.token_with_header(json!({"alg": alg, "kid": "k1"}), &claims());
            assert!(
                matches!(check(&v, &t), Err(JwtError::UnsupportedAlg(_))),
                "{alg}"
            );
        }
        // ES384 is a real algorithm but not this issuer's.
        let t = s.token_with_header(json!({"alg": "ES384", "kid": "k1"}), &claims());
        assert_eq!(check(&v, &t).unwrap_err(), JwtError::AlgNotAllowed);
    }

    #[test]
    fn hs256_signed_with_the_rsa_public_key_never_verifies() {
        let rsa = Signer::rsa();
        let v = verifier_for(&rsa, Algorithm::RS256);
        let jwk = rsa.jwk("k1");
        let Signer::Rsa(kp, _) = &rsa else {
            unreachable!()
        };
        let n = URL_SAFE_NO_PAD.decode(jwk["n"].as_str().unwrap()).unwrap();
        // Every byte string an attacker might think the verifier uses as the
        // HMAC key.
        for key in [
            jwk.to_string().into_bytes(),
            n,
            kp.public_key().as_ref().to_vec(),
            aws_lc_rs::encoding::AsDer::<aws_lc_rs::encoding::PublicKeyX509Der>::as_der(
                kp.public_key(),
            )
            .unwrap()
            .as_ref()
            .to_vec(),
        ] {
            let t = Signer::hmac(&key).token("k1", &claims());
            assert_eq!(check(&v, &t).unwrap_err(), JwtError::AlgNotAllowed);
        }
        // And no configuration lets HS* use a JWKS.
        let f = jwks_file(&[rsa.jwk("k1")]);
        let e = JwtVerifier::new(vec![issuer(
            vec![Algorithm::RS256, Algorithm::HS256],
            KeySource::JwksFile(f.path().into()),
        )])
        .unwrap_err();
        assert!(e.to_string().contains("needs a shared secret"), "{e}");
    }

    #[test]
    fn key_headers_are_never_followed() {
        let (s, v) = es256();
        let attacker = Signer::ec();
        for extra in [
            json!({"jwk": attacker.jwk("k1")}),
            json!({"jku": "https://attacker.example/jwks.json"}),
            json!({"x5u": "https://attacker.example/cert.pem"}),
            json!({"x5c": ["MIIBIjANBgkqhkiG9w0BAQEFAAOCAQ8AMIIBCgKCAQEA"]}),
        ] {
            let mut h = json!({"alg": "ES256", "kid": "k1"});
            h.as_object_mut()
                .unwrap()
                .extend(extra.as_object().unwrap().clone());
            // Signed by the attacker's key: refused.
            let t = attacker.token_with_header(h.clone(), &claims());
            assert_eq!(check(&v, &t).unwrap_err(), JwtError::BadSignature, "{h}");
            // Signed by the real key: the header is ignored.
            check(&v, &s.token_with_header(h, &claims())).unwrap();
        }
        // A kid the attacker names that we do not know.
        let mut h = json!({"alg": "ES256", "kid": "attacker", "jwk": attacker.jwk("attacker")});
        h["jku"] = json!("https://attacker.example/");
        assert_eq!(
            check(&v, &attacker.token_with_header(h, &claims())).unwrap_err(),
            JwtError::UnknownKid
        );
    }

    #[test]
    fn crit_is_refused() {
        let (s, v) = es256();
        for crit in [json!(["exp"]), json!(["b64"]), json!([]), json!("x")] {
            let t = s.token_with_header(
                json!({"alg": "ES256", "kid": "k1", "crit": crit}),
                &claims(),
            );
            assert_eq!(check(&v, &t).unwrap_err(), JwtError::UnsupportedCrit);
        }
    }

    #[test]
    fn kid_with_path_characters_is_an_opaque_string() {
        let s = Signer::ec();
        let kid = "../../../../etc/passwd";
        let f = jwks_file(&[s.jwk(kid)]);
        let v = JwtVerifier::new(vec![issuer(
            vec![Algorithm::ES256],
            KeySource::JwksFile(f.path().into()),
        )])
        .unwrap();
        check(&v, &s.token(kid, &claims())).unwrap();
        for other in [
            "/etc/passwd",
            "../../../../etc/passwd\0",
            "..%2f..%2fetc%2fpasswd",
            "/dev/null",
            "C:\\Windows\\win.ini",
        ] {
            assert_eq!(
                check(&v, &s.token(other, &claims())).unwrap_err(),
                JwtError::UnknownKid,
                "{other}"
            );
        }
        // A kid must be a string.
        let t = s.token_with_header(json!({"alg": "ES256", "kid": 5}), &claims());
        assert_eq!(check(&v, &t).unwrap_err(), JwtError::Malformed);
    }

    #[test]
    fn times_are_checked_with_the_leeway() {
        let (s, v) = es256();
        let n = secs(now());
        let with = |k: &str, val: u64| {
            let mut c = claims();
            c[k] = json!(val);
            s.token("k1", &c)
        };
        check(&v, &with("exp", n - 30)).unwrap();
        assert_eq!(
            check(&v, &with("exp", n - 61)).unwrap_err(),
            JwtError::Expired
        );
        assert_eq!(
            check(&v, &with("exp", n - 60)).unwrap_err(),
            JwtError::Expired
        );
        check(&v, &with("nbf", n + 30)).unwrap();
        assert_eq!(
            check(&v, &with("nbf", n + 61)).unwrap_err(),
            JwtError::NotYetValid
        );
        check(&v, &with("iat", n + 30)).unwrap();
        assert_eq!(
            check(&v, &with("iat", n + 3600)).unwrap_err(),
            JwtError::IssuedInFuture
        );
        let mut c = claims();
        c.as_object_mut().unwrap().remove("exp");
        assert_eq!(
            check(&v, &s.token("k1", &c)).unwrap_err(),
            JwtError::MissingClaim("exp")
        );
        for bad in [json!("1750000600"), json!(-5), json!(1e300), json!(null)] {
            let mut c = claims();
            c["exp"] = bad.clone();
            assert_eq!(
                check(&v, &s.token("k1", &c)).unwrap_err(),
                JwtError::InvalidClaim("exp"),
                "{bad}"
            );
        }
        // Fractional NumericDate is allowed.
        let mut c = claims();
        c["exp"] = json!(n as f64 + 0.5);
        check(&v, &s.token("k1", &c)).unwrap();
    }

    #[test]
    fn issuer_and_audience_are_checked() {
        let (s, v) = es256();
        let mut c = claims();
        c["iss"] = json!("https://other.example");
        assert_eq!(
            check(&v, &s.token("k1", &c)).unwrap_err(),
            JwtError::UnknownIssuer
        );
        c["iss"] = json!("https://idp.example/");
        assert_eq!(
            check(&v, &s.token("k1", &c)).unwrap_err(),
            JwtError::UnknownIssuer
        );
        c.as_object_mut().unwrap().remove("iss");
        assert_eq!(
            check(&v, &s.token("k1", &c)).unwrap_err(),
            JwtError::MissingClaim("iss")
        );
        let mut c = claims();
        c["aud"] = json!("other-api");
        assert_eq!(
            check(&v, &s.token("k1", &c)).unwrap_err(),
            JwtError::WrongAudience
        );
        c["aud"] = json!(["other-api", "api"]);
        check(&v, &s.token("k1", &c)).unwrap();
        c["aud"] = json!(["other-api"]);
        assert_eq!(
            check(&v, &s.token("k1", &c)).unwrap_err(),
            JwtError::WrongAudience
        );
        c.as_object_mut().unwrap().remove("aud");
        assert_eq!(
            check(&v, &s.token("k1", &c)).unwrap_err(),
            JwtError::MissingClaim("aud")
        );
    }

    #[test]
    fn tampering_is_refused() {
        let (s, v) = es256();
        let t = s.token("k1", &claims());
        let p: Vec<&str> = t.split('.').collect();
        let mut c = claims();
        c["sub"] = json!("admin");
        let forged = format!("{}.{}.{}", p[0], b64(c.to_string().as_bytes()), p[2]);
        assert_eq!(check(&v, &forged).unwrap_err(), JwtError::BadSignature);
        let mut sig = URL_SAFE_NO_PAD.decode(p[2]).unwrap();
        sig[5] ^= 1;
        let t2 = format!("{}.{}.{}", p[0], p[1], b64(&sig));
        assert_eq!(check(&v, &t2).unwrap_err(), JwtError::BadSignature);
        // Truncated / extended signature.
        let t3 = format!("{}.{}.{}", p[0], p[1], b64(&sig[..63]));
        assert_eq!(check(&v, &t3).unwrap_err(), JwtError::BadSignature);
        // The header re-encoded (same JSON, different bytes) breaks it too.
        let h2 = b64(json!({"kid": "k1", "alg": "ES256"}).to_string().as_bytes());
        let t4 = format!("{h2}.{}.{}", p[1], p[2]);
        assert_eq!(check(&v, &t4).unwrap_err(), JwtError::BadSignature);
    }

    #[test]
    fn base64url_is_strict() {
        let (s, v) = es256();
        let t = s.token("k1", &claims());
        check(&v, &t).unwrap();
        let p: Vec<&str> = t.split('.').collect();
        let std_sig =
            base64::engine::general_purpose::STANDARD.encode(URL_SAFE_NO_PAD.decode(p[2]).unwrap());
        for bad in [
            format!("{}=.{}.{}", p[0], p[1], p[2]),
            format!("{}.{}.{}==", p[0], p[1], p[2]),
            format!("{}.{}.{std_sig}", p[0], p[1]),
            format!(" {}.{}.{}", p[0], p[1], p[2]),
            format!("{}.{}.{} ", p[0], p[1], p[2]),
            format!("{}.{}\n.{}", p[0], p[1], p[2]),
            format!("{}.{}.{}.", p[0], p[1], p[2]),
            format!("{}.{}", p[0], p[1]),
            format!(".{}.{}", p[1], p[2]),
            format!("{}.{}.", p[0], p[1]),
            String::new(),
        ] {
            let e = check(&v, &bad).unwrap_err();
            assert!(
                matches!(e, JwtError::Malformed | JwtError::BadSignature),
                "{bad:?}: {e:?}"
            );
            assert_ne!(bad, t);
        }
        // Non-zero unused bits in the last character.
        let sig = p[2];
        let last = sig.chars().last().unwrap();
        let idx = base64::alphabet::URL_SAFE.as_str().find(last).unwrap();
        let bumped = base64::alphabet::URL_SAFE.as_str().as_bytes()[idx | 1] as char;
        if bumped != last {
            let t5 = format!("{}.{}.{}{bumped}", p[0], p[1], &sig[..sig.len() - 1]);
            assert_eq!(check(&v, &t5).unwrap_err(), JwtError::Malformed);
        }
        assert_eq!(
            check(&v, &"a".repeat(MAX_TOKEN_LEN + 1)).unwrap_err(),
            JwtError::TooLarge
        );
    }

    #[test]
    fn payload_must_be_a_claims_object() {
        let (s, v) = es256();
        let h = json!({"alg": "ES256", "kid": "k1"});
        for payload in [
            "foo",
            "[1,2]",
            "\"x\"",
            "null",
            "{\"iss\": \"https://idp.example\"",
        ] {
            let input = format!(
                "{}.{}",
                b64(h.to_string().as_bytes()),
                b64(payload.as_bytes())
            );
            let t = format!("{input}.{}", b64(&s.sign_bytes(input.as_bytes())));
            assert_eq!(
                check(&v, &t).unwrap_err(),
                JwtError::MalformedClaims,
                "{payload}"
            );
        }
    }

    #[test]
    fn configuration_errors() {
        let rsa = Signer::rsa();
        let ec = Signer::ec();
        let cfg =
            |algs: Vec<Algorithm>, keys: KeySource| JwtVerifier::new(vec![issuer(algs, keys)]);
        // HS* without a secret.
        let f = jwks_file(&[ec.jwk("k")]);
        assert!(cfg(vec![Algorithm::HS256], KeySource::JwksFile(f.path().into())).is_err());
        assert!(cfg(
            vec![Algorithm::HS256],
            KeySource::JwksUrl("https://idp.example/jwks".into())
        )
        .is_err());
        // Short secrets.
        assert!(cfg(vec![Algorithm::HS256], KeySource::Secret(vec![1; 31])).is_err());
        assert!(cfg(vec![Algorithm::HS256], KeySource::Secret(vec![1; 32])).is_ok());
        assert!(cfg(vec![Algorithm::HS512], KeySource::Secret(vec![1; 32])).is_err());
        assert!(cfg(vec![Algorithm::HS256], KeySource::Secret(Vec::new())).is_err());
        // A secret for an asymmetric algorithm.
        assert!(cfg(vec![Algorithm::RS256], KeySource::Secret(vec![1; 64])).is_err());
        // No algorithms.
        assert!(cfg(vec![], KeySource::JwksFile(f.path().into())).is_err());
        // A 1024-bit RSA key in the JWKS.
        let mut n = vec![0xC5u8; 128];
        n[127] = 0x01;
        let small = json!({"kty": "RSA", "kid": "small", "n": b64(&n), "e": "AQAB"});
        let f = jwks_file(&[rsa.jwk("ok"), small]);
        let e = cfg(vec![Algorithm::RS256], KeySource::JwksFile(f.path().into())).unwrap_err();
        assert!(e.to_string().contains("1024 bits"), "{e}");
        // e = 1.
        let mut bad = rsa.jwk("e1");
        bad["e"] = json!("AQ");
        let f = jwks_file(&[bad]);
        assert!(cfg(vec![Algorithm::RS256], KeySource::JwksFile(f.path().into())).is_err());
        // A symmetric key in a JWKS.
        let f = jwks_file(&[json!({"kty": "oct", "k": b64(&[1; 32])})]);
        let e = cfg(vec![Algorithm::RS256], KeySource::JwksFile(f.path().into())).unwrap_err();
        assert!(e.to_string().contains("oct"), "{e}");
        // Private key material in a JWKS.
        let mut private = ec.jwk("p");
        private["d"] = json!(b64(&[1; 32]));
        let f = jwks_file(&[private]);
        assert!(cfg(vec![Algorithm::ES256], KeySource::JwksFile(f.path().into())).is_err());
        // A point off the curve.
        let mut off = ec.jwk("off");
        let mut y = URL_SAFE_NO_PAD.decode(off["y"].as_str().unwrap()).unwrap();
        y[31] ^= 1;
        off["y"] = json!(b64(&y));
        let f = jwks_file(&[off]);
        assert!(cfg(vec![Algorithm::ES256], KeySource::JwksFile(f.path().into())).is_err());
        // Duplicate kids.
        let f = jwks_file(&[ec.jwk("same"), Signer::ec().jwk("same")]);
        assert!(cfg(vec![Algorithm::ES256], KeySource::JwksFile(f.path().into())).is_err());
        // Missing file, plain-http URL.
        assert!(cfg(
            vec![Algorithm::ES256],
            KeySource::JwksFile("/nonexistent/jwks.json".into())
        )
        .is_err());
        assert!(cfg(
            vec![Algorithm::ES256],
            KeySource::JwksUrl("http://idp.example/jwks".into())
        )
        .is_err());
        // Encryption keys are skipped, not used.
        let mut enc = ec.jwk("enc");
        enc["use"] = json!("enc");
        let f = jwks_file(&[enc, rsa.jwk("sig")]);
        let v = cfg(
            vec![Algorithm::ES256, Algorithm::RS256],
            KeySource::JwksFile(f.path().into()),
        )
        .unwrap();
        assert_eq!(
            check(&v, &ec.token("enc", &claims())).unwrap_err(),
            JwtError::UnknownKid
        );
        check(&v, &rsa.token("sig", &claims())).unwrap();
    }

    #[test]
    fn a_key_with_alg_verifies_only_that_alg() {
        let rsa = Signer::rsa();
        let mut jwk = rsa.jwk("k1");
        jwk["alg"] = json!("PS256");
        let f = jwks_file(&[jwk]);
        let v = JwtVerifier::new(vec![issuer(
            vec![Algorithm::RS256, Algorithm::PS256],
            KeySource::JwksFile(f.path().into()),
        )])
        .unwrap();
        assert_eq!(
            check(&v, &rsa.token("k1", &claims())).unwrap_err(),
            JwtError::UnknownKid
        );
        let Signer::Rsa(kp, _) = rsa else {
            unreachable!()
        };
        check(&v, &Signer::Rsa(kp, true).token("k1", &claims())).unwrap();
    }

    #[test]
    fn claim_rules() {
        let (s, v) = es256();
        let mut c = claims();
        c["roles"] = json!(["admin", "ops"]);
        c["realm"] = json!({"tier": "gold"});
        c["n"] = json!(3);
        let t = check(&v, &s.token("k1", &c)).unwrap();
        let rule = |claim: &str, rule: ClaimMatch| ClaimRule {
            claim: claim.into(),
            rule,
        };
        let ok = |rules: &[ClaimRule]| check_rules(&t, rules).is_ok();
        assert!(ok(&[rule(
            "scope",
            ClaimMatch::Contains("payments:write".into())
        )]));
        assert!(!ok(&[rule(
            "scope",
            ClaimMatch::Contains("payments".into())
        )]));
        assert!(!ok(&[rule(
            "scope",
            ClaimMatch::Contains("payments:write read".into())
        )]));
        assert!(ok(&[rule("roles", ClaimMatch::Contains("ops".into()))]));
        assert!(!ok(&[rule("roles", ClaimMatch::Contains("root".into()))]));
        assert!(ok(&[rule("sub", ClaimMatch::Equals(json!("alice")))]));
        assert!(!ok(&[rule("sub", ClaimMatch::Equals(json!("bob")))]));
        assert!(ok(&[rule(
            "n",
            ClaimMatch::OneOf(vec![json!(1), json!(3)])
        )]));
        assert!(!ok(&[rule("n", ClaimMatch::OneOf(vec![json!("3")]))]));
        assert!(ok(&[rule("realm.tier", ClaimMatch::Equals(json!("gold")))]));
        assert!(ok(&[rule("iat", ClaimMatch::Present)]));
        assert!(!ok(&[rule("email", ClaimMatch::Present)]));
        assert!(!ok(&[rule("n", ClaimMatch::Contains("3".into()))]));
        let e = check_rules(
            &t,
            &[
                rule("sub", ClaimMatch::Present),
                rule("groups", ClaimMatch::Present),
            ],
        )
        .unwrap_err();
        assert!(e.contains("groups"), "{e}");
        assert!(ok(&[]));
    }

    #[test]
    fn certificate_bound_tokens() {
        let (s, v) = es256();
        let cert = b"client certificate DER";
        let other = b"another client's certificate DER";
        let mut c = claims();
        c["cnf"] = json!({"x5t#S256": x5t_s256(cert)});
        let t = check(&v, &s.token("k1", &c)).unwrap();
        assert!(cert_bound_ok(&t, Some(cert)));
        assert!(!cert_bound_ok(&t, Some(other)));
        assert!(!cert_bound_ok(&t, None));
        let unbound = check(&v, &s.token("k1", &claims())).unwrap();
        assert!(!cert_bound_ok(&unbound, Some(cert)));
        // The thumbprint is base64url SHA-256 without padding.
        let d = digest::digest(&digest::SHA256, cert);
        assert_eq!(x5t_s256(cert), b64(d.as_ref()));
        assert_eq!(x5t_s256(cert).len(), 43);
        c["cnf"] = json!("not an object");
        assert_eq!(
            check(&v, &s.token("k1", &c)).unwrap_err(),
            JwtError::InvalidClaim("cnf")
        );
    }

    #[test]
    fn cache_rechecks_times() {
        let (s, v) = es256();
        let t = s.token("k1", &claims());
        check(&v, &t).unwrap();
        assert_eq!(v.cached_tokens(), 1);
        let again = check(&v, &t).unwrap();
        assert_eq!(v.cached_tokens(), 1);
        assert_eq!(again.subject.as_deref(), Some("alice"));
        // A refused token is not cached.
        let mut bad = claims();
        bad["aud"] = json!("x");
        let _ = check(&v, &s.token("k1", &bad));
        assert_eq!(v.cached_tokens(), 1);
        // A hit still checks the times against the caller's clock.
        let earlier = now() - Duration::from_secs(3600);
        assert_eq!(
            v.verify_cached_keys(&t, earlier).unwrap_err(),
            JwtError::IssuedInFuture
        );
        let later = now() + Duration::from_secs(590);
        check(&v, &t).unwrap();
        v.verify_cached_keys(&t, later).unwrap();
        let later = now() + Duration::from_secs(3600);
        assert_eq!(
            v.verify_cached_keys(&t, later).unwrap_err(),
            JwtError::Expired
        );
        assert_eq!(v.cached_tokens(), 0);
    }

    #[test]
    fn cache_is_bounded() {
        let s = Signer::ec();
        let f = jwks_file(&[s.jwk("k1")]);
        let v = JwtVerifier::with_options(
            vec![issuer(
                vec![Algorithm::ES256],
                KeySource::JwksFile(f.path().into()),
            )],
            Arc::new(HttpsJwksFetcher::default()),
            64,
        )
        .unwrap();
        for i in 0..500 {
            let mut c = claims();
            c["jti"] = json!(i);
            check(&v, &s.token("k1", &c)).unwrap();
        }
        assert!(v.cached_tokens() <= 64, "{}", v.cached_tokens());
    }

    #[test]
    fn reasons_are_stable() {
        assert_eq!(JwtError::AlgNone.reason(), "alg_none");
        assert_eq!(JwtError::UnknownKid.reason(), "unknown_kid");
        assert_eq!(JwtError::MissingClaim("exp").reason(), "missing_claim");
        assert_eq!(
            JwtError::UnsupportedAlg("x".into()).reason(),
            "unsupported_alg"
        );
    }

    /// A fetcher serving a JWKS the test can change, counting fetches.
    struct FakeFetcher {
        body: Mutex<Result<Vec<u8>, String>>,
        fetches: AtomicUsize,
    }

    impl JwksFetcher for FakeFetcher {
        fn fetch<'a>(
            &'a self,
            _url: &'a str,
        ) -> Pin<Box<dyn Future<Output = Result<Vec<u8>, String>> + Send + 'a>> {
            self.fetches.fetch_add(1, Ordering::SeqCst);
            let r = self.body.lock().unwrap().clone();
            Box::pin(async move { r })
        }
    }

    #[tokio::test]
    async fn jwks_url_refresh_is_rate_limited_and_stale_if_error() {
        let k1 = Signer::ec();
        let k2 = Signer::ec();
        let fetcher = Arc::new(FakeFetcher {
            body: Mutex::new(Ok(json!({"keys": [k1.jwk("k1")]}).to_string().into_bytes())),
            fetches: AtomicUsize::new(0),
        });
        let v = JwtVerifier::with_options(
            vec![issuer(
                vec![Algorithm::ES256],
                KeySource::JwksUrl("https://idp.example/jwks".into()),
            )],
            fetcher.clone(),
            0,
        )
        .unwrap();
        // Nothing fetched yet: the sync path has no keys.
        let t1 = k1.token("k1", &claims());
        assert_eq!(
            v.verify_cached_keys(&t1, now()).unwrap_err(),
            JwtError::UnknownKid
        );
        // The first verify fetches.
        v.verify(&t1, now()).await.unwrap();
        assert_eq!(fetcher.fetches.load(Ordering::SeqCst), 1);
        v.verify(&t1, now()).await.unwrap();
        assert_eq!(fetcher.fetches.load(Ordering::SeqCst), 1);
        // The IdP rotates to k2; a k2 token within 30 s does not refetch.
        *fetcher.body.lock().unwrap() = Ok(json!({"keys": [k1.jwk("k1"), k2.jwk("k2")]})
            .to_string()
            .into_bytes());
        let t2 = k2.token("k2", &claims());
        assert_eq!(
            v.verify(&t2, now()).await.unwrap_err(),
            JwtError::UnknownKid
        );
        assert_eq!(fetcher.fetches.load(Ordering::SeqCst), 1);
        // Once the interval has passed it does.
        *v.issuers[ISS].last_fetch.lock().unwrap() =
            Some(Instant::now() - JWKS_REFRESH_MIN_INTERVAL - Duration::from_secs(1));
        v.verify(&t2, now()).await.unwrap();
        assert_eq!(fetcher.fetches.load(Ordering::SeqCst), 2);
        // The IdP fails: the last good keys stay.
        *fetcher.body.lock().unwrap() = Err("connection refused".into());
        *v.issuers[ISS].last_fetch.lock().unwrap() = None;
        let t3 = Signer::ec().token("k3", &claims());
        assert_eq!(
            v.verify(&t3, now()).await.unwrap_err(),
            JwtError::UnknownKid
        );
        assert_eq!(fetcher.fetches.load(Ordering::SeqCst), 3);
        v.verify(&t1, now()).await.unwrap();
        v.verify(&t2, now()).await.unwrap();
        // A bad JWKS (a symmetric key) is not installed either.
        *fetcher.body.lock().unwrap() = Ok(json!({"keys": [{"kty": "oct", "k": b64(&[1; 32])}]})
            .to_string()
            .into_bytes());
        assert!(!v.refresh_all().await.is_empty());
        v.verify(&t1, now()).await.unwrap();
    }

    #[tokio::test]
    async fn jwks_url_with_nothing_fetched_reports_keys_unavailable() {
        let fetcher = Arc::new(FakeFetcher {
            body: Mutex::new(Err("down".into())),
            fetches: AtomicUsize::new(0),
        });
        let v = JwtVerifier::with_options(
            vec![issuer(
                vec![Algorithm::ES256],
                KeySource::JwksUrl("https://idp.example/jwks".into()),
            )],
            fetcher,
            0,
        )
        .unwrap();
        let t = Signer::ec().token("k1", &claims());
        assert_eq!(
            v.verify(&t, now()).await.unwrap_err(),
            JwtError::KeysUnavailable
        );
    }

    #[tokio::test]
    async fn https_fetcher_reads_a_loopback_http_jwks() {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let s = Signer::ed();
        let body = json!({"keys": [s.jwk("ed")]}).to_string();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            while let Ok((mut c, _)) = listener.accept().await {
                let mut buf = [0u8; 2048];
                let _ = c.read(&mut buf).await;
                let resp = format!(
                    "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                    body.len()
                );
                let _ = c.write_all(resp.as_bytes()).await;
            }
        });
        let v = JwtVerifier::new(vec![issuer(
            vec![Algorithm::EdDSA],
            KeySource::JwksUrl(format!("http://127.0.0.1:{}/jwks", addr.port())),
        )])
        .unwrap();
        let t = s.token("ed", &claims());
        assert_eq!(
            v.verify(&t, now()).await.unwrap().kid.as_deref(),
            Some("ed")
        );
    }
}
