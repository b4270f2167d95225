//! Configuration in three stages: file → validated config → runtime.
//!
//! `file` holds the TOML shape, `validate` checks it and loads every file it
//! names (certificates, keys), producing the typed [`Config`] defined here.
//! The request path never sees this module's types directly: `runtime` turns a
//! `Config` into the `Arc`ed snapshot the stack reads.

pub mod error;
pub mod file;
mod units;
mod validate;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use http::Method;
use ipnet::IpNet;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

pub use error::{Diagnostic, Diagnostics, Severity};
pub use units::{parse_duration, parse_size};
pub use validate::parse_rfc3339;

use crate::accesslog::{LogFormat, LogTarget};

/// Loads, parses and validates a config file. Warnings are in the returned
/// diagnostics; on any error the `Err` holds every problem found.
pub fn load(path: &Path) -> Result<(Config, Diagnostics), Diagnostics> {
    let src = match std::fs::read_to_string(path) {
        Ok(s) => s,
        Err(e) => {
            return Err(Diagnostics {
                items: vec![Diagnostic {
                    severity: Severity::Error,
                    file: path.to_path_buf(),
                    line: 0,
                    column: 0,
                    field: String::new(),
                    message: format!("cannot read the config file: {e}"),
                    fix: Some("check the path given to --config".into()),
                }],
            })
        }
    };
    load_str(path, &src)
}

/// As [`load`], from text already read (`path` names it in messages and
/// anchors relative paths).
pub fn load_str(path: &Path, src: &str) -> Result<(Config, Diagnostics), Diagnostics> {
    let file: file::FileConfig = match toml::from_str(src) {
        Ok(f) => f,
        Err(e) => {
            return Err(Diagnostics {
                items: vec![error::from_toml_error(path, src, &e)],
            })
        }
    };
    validate::validate(path, src, file)
}

/// The validated, typed configuration.
#[derive(Debug)]
pub struct Config {
    pub source: PathBuf,
    /// Files the config names and the gateway reads at load (certificates,
    /// keys, key files), CRLs excepted (they have their own watch).
    pub files: Vec<PathBuf>,
    /// The file's text as loaded (for the admin API's redacted view).
    pub source_text: String,
    /// SHA-256 of that text, hex (the `config_info` metric).
    pub source_sha256: String,
    pub server: ServerConfig,
    pub log: LogConfig,
    pub security_headers: SecurityHeaders,
    pub listeners: Vec<ListenerConfig>,
    pub redirects: Vec<RedirectConfig>,
    pub upstreams: Vec<UpstreamConfig>,
    pub routes: Vec<RouteConfig>,
    pub echo: Vec<SocketAddr>,
    pub pki: Option<crate::pki_service::PkiSettings>,
    pub rate_limits: Vec<crate::ratelimit::ZoneConfig>,
    pub consumers: Vec<crate::auth::Consumer>,
    pub api_keys: ApiKeysConfig,
    /// (keyid, consumer name, key) of request-signing keys.
    pub signing_keys: Vec<(String, String, crate::auth::signature::VerifyKey)>,
    pub jwt_issuers: Vec<crate::auth::jwt::IssuerConfig>,
    /// `[cluster]`: shared state in Redis.
    pub cluster: Option<ClusterConfig>,
    /// `[audit] path`: the tamper-evident audit log (none without the section).
    pub audit_path: Option<PathBuf>,
    /// `[admin]`: the admin listener.
    pub admin: Option<AdminConfig>,
}

/// `[admin]`, validated.
#[derive(Debug)]
pub struct AdminConfig {
    pub addr: SocketAddr,
    /// TLS with client certificates from the admin CA; `None` = plain HTTP on loopback.
    pub tls: Option<AdminTls>,
}

#[derive(Debug)]
pub struct AdminTls {
    pub chain: Vec<CertificateDer<'static>>,
    pub key: PrivateKeyDer<'static>,
    pub client_ca: Vec<CertificateDer<'static>>,
}

/// `[cluster]`, validated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClusterConfig {
    /// The Redis URL as written.
    pub redis: String,
    /// Secret keying the hash of rate-limit keys (same on every replica).
    pub key_secret: String,
    /// Longest wait for Redis per decision.
    pub timeout: Duration,
}

/// A route's token requirements.
#[derive(Debug, Clone, Default)]
pub struct RouteJwt {
    pub claims: Vec<crate::auth::jwt::ClaimRule>,
    pub forward_claims: Vec<(String, http::header::HeaderName)>,
    pub strip_authorization: bool,
    pub cert_bound: bool,
}

/// `[api_keys]` plus every consumer's keys.
#[derive(Debug, Clone)]
pub struct ApiKeysConfig {
    pub header: http::header::HeaderName,
    pub query_param: Option<String>,
    /// (hash, consumer name, expiry, disabled).
    pub keys: Vec<([u8; 32], String, Option<SystemTime>, bool)>,
}

#[derive(Debug, Clone)]
pub struct ServerConfig {
    pub worker_threads: Option<usize>,
    pub shutdown_timeout: Duration,
    pub trusted_proxies: Vec<IpNet>,
}

#[derive(Debug, Clone)]
pub struct LogConfig {
    pub access_target: LogTarget,
    pub access_format: LogFormat,
    pub level: String,
    pub json: bool,
}

#[derive(Debug, Clone)]
pub struct Limits {
    pub max_body_size: u64,
    pub max_header_size: usize,
    pub max_headers: usize,
    /// Time to receive a request's headers; HTTP/1.1 keep-alive connections
    /// idle this long are closed too (hyper starts the timer when it waits
    /// for the next request).
    pub header_timeout: Duration,
    pub handshake_timeout: Duration,
    pub h2_max_concurrent_streams: u32,
    pub max_connections: usize,
    pub max_connections_per_ip: Option<usize>,
    pub max_connections_per_cert: Option<usize>,
    /// (requests, per seconds, burst) of new connections per IP.
    pub connection_rate_per_ip: Option<(u64, u64, u64)>,
    pub body_timeout: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_body_size: 10 * 1024 * 1024,
            max_header_size: 32 * 1024,
            max_headers: 100,
            header_timeout: Duration::from_secs(10),
            handshake_timeout: Duration::from_secs(10),
            h2_max_concurrent_streams: 128,
            max_connections: 10_000,
            max_connections_per_ip: None,
            max_connections_per_cert: None,
            connection_rate_per_ip: None,
            body_timeout: Duration::from_secs(30),
        }
    }
}

/// Security headers as final values; `None` = not sent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SecurityHeaders {
    pub strict_transport_security: Option<String>,
    pub x_content_type_options: Option<String>,
    pub x_frame_options: Option<String>,
    pub content_security_policy: Option<String>,
    pub referrer_policy: Option<String>,
}

impl Default for SecurityHeaders {
    fn default() -> Self {
        SecurityHeaders {
            strict_transport_security: Some("max-age=31536000".into()),
            x_content_type_options: Some("nosniff".into()),
            x_frame_options: Some("DENY".into()),
            content_security_policy: Some("default-src 'none'".into()),
            referrer_policy: Some("no-referrer".into()),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TlsProfile {
    /// TLS 1.2 + 1.3, Mozilla "intermediate" suites.
    Intermediate,
    /// TLS 1.3 only.
    Modern,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClientAuth {
    Off,
    Optional,
    Required,
}

#[derive(Debug)]
pub struct CertifiedKeyConfig {
    pub cert_path: PathBuf,
    pub chain: Vec<CertificateDer<'static>>,
    pub key: PrivateKeyDer<'static>,
    /// Lower-cased SNI names: exact or `*.suffix`.
    pub names: Vec<String>,
    pub default: bool,
    pub not_after: Option<SystemTime>,
}

#[derive(Debug)]
pub struct ListenerConfig {
    pub name: String,
    pub addr: SocketAddr,
    pub profile: TlsProfile,
    pub key_exchange: Vec<String>,
    pub session_resumption: bool,
    pub http2: bool,
    pub certificates: Vec<CertifiedKeyConfig>,
    pub client_auth: ClientAuth,
    pub client_ca: Vec<CertificateDer<'static>>,
    pub verify_depth: usize,
    pub require_client_auth_eku: bool,
    /// CRL files, read at each runtime build (and so on change).
    pub crl_paths: Vec<PathBuf>,
    pub crl_scope: crate::mtls::CrlScope,
    pub crl_expired: crate::mtls::CrlExpiredPolicy,
    pub crl_fetch: bool,
    pub ocsp: crate::mtls::fetch::OcspMode,
    pub ocsp_stapling: bool,
    pub limits: Limits,
}

#[derive(Debug, Clone)]
pub struct RedirectConfig {
    pub addr: SocketAddr,
    pub status: u16,
    pub https_port: u16,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Balance {
    RoundRobin,
    LeastConn,
}

#[derive(Debug, Clone)]
pub struct UpstreamServerConfig {
    pub https: bool,
    /// "host:port" as written.
    pub authority: String,
}

#[derive(Debug)]
pub struct UpstreamTlsConfig {
    pub ca: Vec<CertificateDer<'static>>,
    pub client_cert: Option<(Vec<CertificateDer<'static>>, PrivateKeyDer<'static>)>,
    pub server_name: Option<String>,
}

#[derive(Debug, Clone)]
pub struct HealthCheckConfig {
    pub path: String,
    pub interval: Duration,
    pub timeout: Duration,
    pub fails: u32,
    pub passes: u32,
}

#[derive(Debug)]
pub struct UpstreamConfig {
    pub name: String,
    pub servers: Vec<UpstreamServerConfig>,
    pub balance: Balance,
    pub connect_timeout: Duration,
    pub response_timeout: Duration,
    pub keepalive: usize,
    pub keepalive_timeout: Duration,
    pub max_fails: u32,
    pub fail_timeout: Duration,
    pub retries: u32,
    pub tls: Option<UpstreamTlsConfig>,
    pub health_check: Option<HealthCheckConfig>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HostMatch {
    Exact(String),
    /// `*.example.com` stored as ".example.com".
    Suffix(String),
}

#[derive(Debug, Clone)]
pub struct RouteConfig {
    pub name: String,
    pub hosts: Vec<HostMatch>,
    pub path: String,
    pub strip_prefix: bool,
    pub methods: Option<Vec<Method>>,
    pub upstream: usize,
    pub preserve_host: bool,
    pub host_header: Option<String>,
    /// Value of the `Deprecation` header (RFC 9745), e.g. "@1735689600" or "true".
    pub deprecation: Option<String>,
    /// Value of the `Sunset` header (an HTTP-date).
    pub sunset: Option<String>,
    pub deprecation_link: Option<String>,
    pub response_timeout: Option<Duration>,
    pub upgrade_idle_timeout: Duration,
    pub websocket: bool,
    /// `[route.websocket]`: Origin allowlist, heartbeats, message limits.
    pub websocket_policy: crate::websocket::WebsocketPolicy,
    /// Indices of the listeners serving this route; empty = all.
    pub listeners: Vec<usize>,
    pub security_headers: SecurityHeaders,
    pub mtls: RouteMtls,
    /// Indices into `Config::rate_limits`.
    pub rate_limits: Vec<usize>,
    pub auth: crate::auth::RouteAuth,
    pub consumer_header: http::header::HeaderName,
    pub cors: Option<crate::auth::cors::Cors>,
    pub signature: Option<crate::auth::signature::SignaturePolicy>,
    pub jwt: RouteJwt,
    /// `[route.validate]`, compiled (schemas, OpenAPI operations).
    pub validate: Option<std::sync::Arc<crate::validate::Validation>>,
    /// `[route.graphql]`, with its allowlist loaded.
    pub graphql: Option<std::sync::Arc<crate::graphql::GraphqlPolicy>>,
}

/// A route's client-certificate settings.
#[derive(Debug, Clone, Default)]
pub struct RouteMtls {
    pub required: bool,
    pub client_ca: Option<Vec<CertificateDer<'static>>>,
    pub allow_subjects: Vec<String>,
    pub allow_dns: Vec<String>,
    pub allow_uris: Vec<String>,
    pub allow_emails: Vec<String>,
    pub allow_spiffe: Vec<String>,
    pub pin_cert_sha256: Vec<String>,
    pub pin_spki_sha256: Vec<String>,
    pub identity_headers: Vec<crate::mtls::headers::IdentityFormat>,
    pub header_names: crate::mtls::headers::NginxHeaderNames,
}

/// Reads CRL files (PEM or DER).
pub fn read_crls(
    paths: &[PathBuf],
) -> Result<Vec<rustls_pki_types::CertificateRevocationListDer<'static>>, String> {
    use rustls_pki_types::pem::PemObject;
    use rustls_pki_types::CertificateRevocationListDer;
    let mut out = Vec::new();
    for p in paths {
        let data = std::fs::read(p).map_err(|e| format!("cannot read CRL {}: {e}", p.display()))?;
        if data.starts_with(b"-----") || data.windows(10).any(|w| w == b"-----BEGIN") {
            let crls: Result<Vec<_>, _> =
                CertificateRevocationListDer::pem_slice_iter(&data).collect();
            match crls {
                Ok(c) if !c.is_empty() => out.extend(c),
                _ => return Err(format!("{} holds no PEM X509 CRL", p.display())),
            }
        } else {
            out.push(CertificateRevocationListDer::from(data));
        }
    }
    for (i, c) in out.iter().enumerate() {
        if x509_parser::prelude::FromDer::from_der(c.as_ref())
            .map(
                |(_, _): (
                    _,
                    x509_parser::revocation_list::CertificateRevocationList<'_>,
                )| (),
            )
            .is_err()
        {
            return Err(format!("CRL #{} cannot be parsed", i + 1));
        }
    }
    Ok(out)
}
