//! Stage 1 of the config: the TOML file as serde structs.
//!
//! Owns the shape of `portcullis.toml` and nothing else: every table denies
//! unknown fields, and the values that later checks refer to keep their byte
//! span so an error can name the line. No file I/O and no validation here;
//! `validate.rs` turns these structs into a typed [`super::Config`].

use serde::Deserialize;
use toml::Spanned;

/// The whole file.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileConfig {
    #[serde(default)]
    pub server: ServerSection,
    #[serde(default)]
    pub log: LogSection,
    #[serde(default)]
    pub limits: LimitsSection,
    #[serde(default)]
    pub security_headers: SecurityHeadersSection,
    #[serde(default, rename = "listener")]
    pub listeners: Vec<Spanned<ListenerSection>>,
    #[serde(default, rename = "redirect")]
    pub redirects: Vec<Spanned<RedirectSection>>,
    #[serde(default, rename = "upstream")]
    pub upstreams: Vec<Spanned<UpstreamSection>>,
    #[serde(default, rename = "route")]
    pub routes: Vec<Spanned<RouteSection>>,
    #[serde(default, rename = "echo")]
    pub echo: Vec<Spanned<EchoSection>>,
    pub pki: Option<Spanned<PkiSection>>,
    #[serde(default, rename = "rate_limit")]
    pub rate_limits: Vec<Spanned<RateLimitSection>>,
    #[serde(default, rename = "consumer")]
    pub consumers: Vec<Spanned<ConsumerSection>>,
    #[serde(default, rename = "jwt_issuer")]
    pub jwt_issuers: Vec<Spanned<JwtIssuerSection>>,
    pub api_keys: Option<ApiKeysSection>,
    /// `[cluster]`: state shared by replicas through Redis.
    pub cluster: Option<Spanned<ClusterSection>>,
    /// `[admin]`: the admin API and /metrics on their own listener.
    pub admin: Option<Spanned<AdminSection>>,
    /// `[audit]`: the tamper-evident audit log.
    pub audit: Option<Spanned<AuditSection>>,
}

/// `[audit]`: one hash-chained JSON line per security decision.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuditSection {
    /// The audit file (appended to, created 0600).
    pub path: Spanned<String>,
}

/// `[admin]`: health, readiness, metrics, state and actions for operators.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AdminSection {
    /// "127.0.0.1:9901"; without TLS it must be a loopback address.
    pub address: Spanned<String>,
    /// Server certificate (PEM, full chain) of the admin listener.
    pub cert: Option<Spanned<String>>,
    /// Its private key (PEM).
    pub key: Option<Spanned<String>>,
    /// The admin CA: only clients with a certificate from it may connect.
    pub client_ca: Option<Spanned<String>>,
}

/// `[cluster]`: rate-limit state shared by all replicas through Redis.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClusterSection {
    /// "redis://host:port[/db]" (or "rediss://" for TLS).
    pub redis: Spanned<String>,
    /// Keys the hash of rate-limit keys (HMAC): the same on every replica.
    pub key_secret: Option<Spanned<String>>,
    /// Longest wait for Redis per decision before the zones' `on_store_failure` applies (default "250ms").
    pub timeout: Option<Spanned<String>>,
}

/// `[[consumer]]`: a named client and the identities that are it.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConsumerSection {
    pub name: Spanned<String>,
    #[serde(default)]
    pub groups: Vec<String>,
    /// RFC 2253 subject patterns of its client certificates.
    #[serde(default)]
    pub cert_subjects: Vec<String>,
    /// SPIFFE IDs of its client certificates.
    #[serde(default)]
    pub cert_spiffe: Vec<String>,
    /// Its API keys, as `portcullis apikey create` prints them (hashes only).
    #[serde(default)]
    pub api_keys: Vec<Spanned<ApiKeyEntrySection>>,
    /// Its JWT identities.
    #[serde(default)]
    pub jwt: Vec<JwtSubjectSection>,
    /// Keys it signs requests with (HTTP Message Signatures), by keyid.
    #[serde(default)]
    pub signing_keys: Vec<Spanned<SigningKeySection>>,
}

/// A consumer's signing key: a public key file (PEM or JWK), or an HMAC secret from the environment.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SigningKeySection {
    pub keyid: String,
    /// PEM public key (SPKI) or a JWK file.
    pub key: Option<Spanned<String>>,
    /// Environment variable holding a base64 HMAC secret (never in the file).
    pub secret_env: Option<Spanned<String>>,
}

/// `[route.signature]`: HTTP Message Signatures (RFC 9421) required on this route.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SignatureSection {
    /// Components every signature must cover, e.g. ["@method", "@target-uri", "content-digest"].
    pub components: Vec<String>,
    /// Allowed algorithms: "hmac-sha256", "ecdsa-p256-sha256", "ed25519", "rsa-pss-sha512" (default all).
    #[serde(default)]
    pub algorithms: Vec<Spanned<String>>,
    /// `created` must be within this (default "5m"); signatures are remembered as long to refuse replays.
    pub max_age: Option<Spanned<String>>,
    #[serde(default)]
    pub nonce: bool,
}

/// One stored API key.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ApiKeyEntrySection {
    /// "sha256:<hex>".
    pub hash: Spanned<String>,
    /// RFC 3339 expiry.
    pub expires: Option<Spanned<String>>,
    #[serde(default)]
    pub disabled: bool,
}

/// A JWT (issuer, subject) that identifies a consumer.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JwtSubjectSection {
    pub issuer: String,
    pub subject: String,
}

/// `[[jwt_issuer]]`: a trusted issuer of bearer tokens.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JwtIssuerSection {
    /// The exact `iss`.
    pub issuer: Spanned<String>,
    /// Accepted `aud` values (one must be present); empty = not checked.
    #[serde(default)]
    pub audiences: Vec<String>,
    /// Algorithms this issuer signs with ("ES256", "RS256", "EdDSA", "HS256", …); never taken from tokens.
    pub algorithms: Vec<Spanned<String>>,
    /// A JWKS file.
    pub jwks_file: Option<Spanned<String>>,
    /// A JWKS URL (https), fetched and refreshed on unknown kids.
    pub jwks_url: Option<Spanned<String>>,
    /// Environment variable with the HS* shared secret (base64 or raw), for HS algorithms only.
    pub secret_env: Option<Spanned<String>>,
    /// Clock leeway (default "60s").
    pub leeway: Option<Spanned<String>>,
}

/// `[route.jwt]`: what a route asks of a verified token.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RouteJwtSection {
    /// Claims that must hold: `{ claim = "scope", contains = "payments:write" }`,
    /// `{ claim = "tenant", equals = "acme" }`, `{ claim = "role", one_of = [...] }`, `{ claim = "email", present = true }`.
    #[serde(default)]
    pub claims: Vec<ClaimRuleSection>,
    /// Claims forwarded as headers: `{ sub = "X-User", tenant = "X-Tenant" }`.
    #[serde(default)]
    pub forward_claims: std::collections::BTreeMap<String, String>,
    /// Remove `Authorization` before the upstream (default false).
    #[serde(default)]
    pub strip_authorization: bool,
    /// RFC 8705: the token's cnf."x5t#S256" must match the client certificate.
    #[serde(default)]
    pub cert_bound: bool,
}

/// One claim rule.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClaimRuleSection {
    pub claim: String,
    pub equals: Option<toml::Value>,
    pub contains: Option<String>,
    pub one_of: Option<Vec<toml::Value>>,
    pub present: Option<bool>,
}

/// `[api_keys]`: where keys are read.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ApiKeysSection {
    /// Header carrying the key (default "X-API-Key").
    pub header: Option<Spanned<String>>,
    /// Also accept the key in this query parameter (off unless set).
    pub query_param: Option<Spanned<String>>,
    /// A file of `[[key]]` tables (consumer, hash, expires, disabled), kept apart from the config.
    pub file: Option<Spanned<String>>,
}

/// The API keys file.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ApiKeysFile {
    #[serde(default)]
    pub key: Vec<ApiKeysFileEntry>,
}

/// One key of the keys file.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ApiKeysFileEntry {
    pub consumer: String,
    pub hash: String,
    pub expires: Option<String>,
    #[serde(default)]
    pub disabled: bool,
}

/// `[route.cors]`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CorsSection {
    #[serde(default)]
    pub origins: Vec<Spanned<String>>,
    #[serde(default)]
    pub methods: Vec<Spanned<String>>,
    #[serde(default)]
    pub headers: Vec<String>,
    #[serde(default)]
    pub expose: Vec<String>,
    #[serde(default)]
    pub credentials: bool,
    pub max_age: Option<u64>,
}

/// `[[rate_limit]]`: a zone, as nginx's limit_req_zone + limit_req.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RateLimitSection {
    pub name: Spanned<String>,
    /// "ip", "cert", "header:NAME", or a list of them (combined).
    pub key: Option<Spanned<toml::Value>>,
    /// "10r/s" or "600r/m".
    pub rate: Spanned<String>,
    pub burst: Option<Spanned<u64>>,
    /// Serve the burst without delay (nginx `nodelay`).
    #[serde(default)]
    pub nodelay: bool,
    /// Serve this many of the burst without delay, delay the rest (nginx `delay=N`).
    pub delay: Option<Spanned<u64>>,
    /// Count and log, never refuse or delay.
    #[serde(default)]
    pub dry_run: bool,
    /// Status of refusals (default 429; nginx uses 503).
    pub status: Option<Spanned<u16>>,
    /// Most keys kept (least recently used are forgotten), default 100000.
    pub max_keys: Option<Spanned<usize>>,
    /// Cluster mode, Redis unreachable: "local" (default), "allow" or "deny".
    pub on_store_failure: Option<Spanned<String>>,
}

/// `[pki]`: serve the built-in CA's endpoints (CRL, OCSP, enrollment, renewal).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PkiSection {
    /// The CA directory (`portcullis ca init --dir …`).
    pub ca_dir: Spanned<String>,
    /// URL path prefix of the endpoints (default "/pki").
    pub prefix: Option<Spanned<String>>,
    /// nextUpdate of the CRLs it signs (default "24h"); re-signed at half of it.
    pub crl_validity: Option<Spanned<String>>,
    /// Validity of OCSP responses (default "1h").
    pub ocsp_validity: Option<Spanned<String>>,
    /// Listener names serving the endpoints (default all).
    pub listeners: Option<Vec<Spanned<String>>>,
}

/// `[server]`: process-wide settings.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServerSection {
    /// Runtime worker threads; default: the number of cores.
    pub worker_threads: Option<Spanned<usize>>,
    /// How long graceful shutdown waits for in-flight requests ("30s").
    pub shutdown_timeout: Option<Spanned<String>>,
    /// CIDRs whose X-Forwarded-For / X-Real-IP are believed.
    #[serde(default)]
    pub trusted_proxies: Vec<Spanned<String>>,
}

/// `[log]`: access log and event log.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LogSection {
    /// "stdout", "off", or a file path.
    pub access_log: Option<Spanned<String>>,
    /// "combined", "api_log", "json", or an nginx log_format string.
    pub access_format: Option<Spanned<String>>,
    /// Event log level: "error", "warn", "info", "debug", "trace".
    pub level: Option<Spanned<String>>,
    /// Event log as JSON lines instead of text.
    pub json: Option<bool>,
}

/// `[limits]` (global) and `[listener.limits]` (override).
#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LimitsSection {
    pub max_body_size: Option<Spanned<String>>,
    pub max_header_size: Option<Spanned<String>>,
    pub max_headers: Option<Spanned<usize>>,
    pub header_timeout: Option<Spanned<String>>,
    pub handshake_timeout: Option<Spanned<String>>,
    pub h2_max_concurrent_streams: Option<Spanned<u32>>,
    pub max_connections: Option<Spanned<usize>>,
    /// Concurrent connections per client IP (nginx limit_conn by $binary_remote_addr).
    pub max_connections_per_ip: Option<Spanned<usize>>,
    /// Concurrent connections per client certificate identity.
    pub max_connections_per_cert: Option<Spanned<usize>>,
    /// New connections (and so TLS handshakes) per client IP: "20r/s" or "600r/m".
    pub connection_rate_per_ip: Option<Spanned<String>>,
    /// Extra connections allowed above that rate at once.
    pub connection_burst_per_ip: Option<Spanned<u64>>,
    /// Longest pause while a request body is received (slow POST) → 408.
    pub body_timeout: Option<Spanned<String>>,
}

/// `[security_headers]` (global) and `[route.security_headers]` (override).
/// An empty string removes a header.
#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SecurityHeadersSection {
    pub hsts_max_age: Option<Spanned<u64>>,
    pub hsts_include_subdomains: Option<bool>,
    pub hsts_preload: Option<bool>,
    /// A whole Strict-Transport-Security value; "" removes the header.
    pub strict_transport_security: Option<Spanned<String>>,
    pub x_content_type_options: Option<Spanned<String>>,
    pub x_frame_options: Option<Spanned<String>>,
    pub content_security_policy: Option<Spanned<String>>,
    pub referrer_policy: Option<Spanned<String>>,
}

/// `[[listener]]`: an HTTPS listener.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ListenerSection {
    pub name: Option<Spanned<String>>,
    pub address: Spanned<String>,
    /// "intermediate" (TLS 1.2 + 1.3, Mozilla intermediate) or "modern" (TLS 1.3 only).
    pub tls_profile: Option<Spanned<String>>,
    /// Key exchange groups in preference order ("X25519MLKEM768", "X25519", "P-256", "P-384").
    pub key_exchange: Option<Vec<Spanned<String>>>,
    /// TLS session tickets and session cache (default on).
    pub session_resumption: Option<bool>,
    /// Offer HTTP/2 in ALPN (default on).
    pub http2: Option<bool>,
    #[serde(default, rename = "certificate")]
    pub certificates: Vec<Spanned<CertificateSection>>,
    /// "off" (default), "optional" or "required".
    pub client_auth: Option<Spanned<String>>,
    /// PEM bundles of CAs trusted for client certificates.
    #[serde(default)]
    pub client_ca: Vec<Spanned<String>>,
    /// Issuers allowed above the client's leaf (nginx's ssl_verify_depth; default 2).
    pub verify_depth: Option<Spanned<usize>>,
    /// Require the clientAuth extended key usage (default true).
    pub require_client_auth_eku: Option<bool>,
    /// CRL files (PEM or DER), reloaded when they change.
    #[serde(default)]
    pub crl: Vec<Spanned<String>>,
    /// "chain" (default) or "leaf": which certificates CRLs are checked for.
    pub crl_scope: Option<Spanned<String>>,
    /// "reject" (default) or "warn": what an expired CRL means.
    pub crl_expired: Option<Spanned<String>>,
    /// Fetch the CRLs that client certificates name (distribution points), over HTTP.
    pub crl_fetch: Option<bool>,
    /// OCSP for client certificates: "off" (default), "soft" or "hard".
    pub ocsp: Option<Spanned<String>>,
    /// Staple OCSP responses for the served certificates (default false).
    pub ocsp_stapling: Option<bool>,
    pub limits: Option<LimitsSection>,
}

/// `[[listener.certificate]]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CertificateSection {
    /// PEM file: leaf first, then intermediates.
    pub cert: Spanned<String>,
    /// PEM private key (PKCS#8, SEC1 or PKCS#1).
    pub key: Spanned<String>,
    /// SNI names served with it; default: the certificate's DNS SANs.
    pub names: Option<Vec<Spanned<String>>>,
    /// Served when SNI is absent or matches nothing (default: the first one).
    #[serde(default)]
    pub default: bool,
}

/// `[[redirect]]`: a plain-HTTP listener that only redirects to HTTPS.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RedirectSection {
    pub address: Spanned<String>,
    /// 301 (default) or 308.
    pub status: Option<Spanned<u16>>,
    /// Port of the HTTPS URL; default: the first listener's port.
    pub https_port: Option<Spanned<u16>>,
}

/// `[[upstream]]`: a group of servers.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UpstreamSection {
    pub name: Spanned<String>,
    /// "host:port", "http://host:port" or "https://host:port".
    pub servers: Spanned<Vec<Spanned<String>>>,
    /// "round_robin" (default) or "least_conn".
    pub balance: Option<Spanned<String>>,
    pub connect_timeout: Option<Spanned<String>>,
    pub response_timeout: Option<Spanned<String>>,
    /// Idle pooled connections kept per server (default 64).
    pub keepalive: Option<Spanned<usize>>,
    pub keepalive_timeout: Option<Spanned<String>>,
    /// Passive ejection: failures within `fail_timeout` that eject a server for `fail_timeout`.
    pub max_fails: Option<Spanned<u32>>,
    pub fail_timeout: Option<Spanned<String>>,
    /// Extra attempts on another server after a connect failure (idempotent requests only).
    pub retries: Option<Spanned<u32>>,
    pub tls: Option<Spanned<UpstreamTlsSection>>,
    pub health_check: Option<Spanned<HealthCheckSection>>,
}

/// `[upstream.tls]`: HTTPS to the upstream.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UpstreamTlsSection {
    /// PEM bundle of CAs that sign the upstream's certificate.
    pub ca: Spanned<String>,
    /// Client certificate and key for upstream mTLS.
    pub cert: Option<Spanned<String>>,
    pub key: Option<Spanned<String>>,
    /// Name verified in the upstream's certificate (default: the server's host).
    pub server_name: Option<Spanned<String>>,
}

/// `[upstream.health_check]`: active health checks.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HealthCheckSection {
    pub path: Spanned<String>,
    pub interval: Option<Spanned<String>>,
    pub timeout: Option<Spanned<String>>,
    /// Consecutive failures that mark a server down (default 2).
    pub fails: Option<Spanned<u32>>,
    /// Consecutive successes that mark it up again (default 1).
    pub passes: Option<Spanned<u32>>,
}

/// `[[route]]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RouteSection {
    pub name: Option<Spanned<String>>,
    /// Exact ("api.example.com") or wildcard ("*.example.com") hosts; default any.
    #[serde(default)]
    pub hosts: Vec<Spanned<String>>,
    /// Path prefix, "/" by default.
    pub path: Option<Spanned<String>>,
    #[serde(default)]
    pub strip_prefix: bool,
    /// Allowed methods; default all.
    pub methods: Option<Vec<Spanned<String>>>,
    pub upstream: Spanned<String>,
    /// Keep the client's Host (default) or send the upstream's.
    pub preserve_host: Option<bool>,
    /// A fixed Host header for the upstream.
    pub host_header: Option<Spanned<String>>,
    /// Marks a retired API version: RFC 3339 date or `true` (sends `Deprecation`).
    pub deprecated: Option<Spanned<toml::Value>>,
    /// RFC 3339 date sent as `Sunset` (RFC 8594).
    pub sunset: Option<Spanned<String>>,
    /// Link to migration docs, sent as `Link: <…>; rel="deprecation"`.
    pub deprecation_link: Option<Spanned<String>>,
    /// Overrides the upstream's response timeout.
    pub response_timeout: Option<Spanned<String>>,
    /// Idle timeout of upgraded (WebSocket) tunnels (default 1h).
    pub upgrade_idle_timeout: Option<Spanned<String>>,
    /// `websocket = false` refuses Upgrade requests (default: allowed);
    /// a `[route.websocket]` table allows them with a policy.
    pub websocket: Option<WebsocketField>,
    /// Listener names this route is served on; default all.
    pub listeners: Option<Vec<Spanned<String>>>,
    pub security_headers: Option<SecurityHeadersSection>,
    /// "required" or "optional" (default): a client certificate for this route.
    pub client_cert: Option<Spanned<String>>,
    /// CAs this route trusts (a subset of its listeners' `client_ca`).
    #[serde(default)]
    pub client_ca: Vec<Spanned<String>>,
    /// Subject DN patterns in RFC 2253 form, `*` as wildcard ("CN=*,O=Payments").
    #[serde(default)]
    pub allow_subjects: Vec<Spanned<String>>,
    #[serde(default)]
    pub allow_dns: Vec<Spanned<String>>,
    #[serde(default)]
    pub allow_uris: Vec<Spanned<String>>,
    #[serde(default)]
    pub allow_emails: Vec<Spanned<String>>,
    /// SPIFFE IDs, exact or prefix ("spiffe://example.org/ns/pay/*").
    #[serde(default)]
    pub allow_spiffe: Vec<Spanned<String>>,
    /// SHA-256 of allowed certificates (hex, colons allowed).
    #[serde(default)]
    pub pin_cert_sha256: Vec<Spanned<String>>,
    /// SHA-256 of allowed public keys (base64 of the SPKI hash, as Envoy).
    #[serde(default)]
    pub pin_spki_sha256: Vec<Spanned<String>>,
    /// Identity headers to the backend: "nginx", "xfcc", "rfc9440".
    #[serde(default)]
    pub identity_headers: Vec<Spanned<String>>,
    /// Names of the nginx-style headers.
    pub identity_header_names: Option<IdentityHeaderNamesSection>,
    /// Rate-limit zones applied to this route (all must pass).
    #[serde(default)]
    pub rate_limits: Vec<Spanned<String>>,
    /// Authentication schemes that must all pass: "mtls", "apikey", "jwt", "signature".
    #[serde(default)]
    pub auth: Vec<Spanned<String>>,
    /// Authentication schemes of which one must pass.
    #[serde(default)]
    pub auth_any: Vec<Spanned<String>>,
    /// Consumers allowed (by name); with `groups`, any of them.
    #[serde(default)]
    pub consumers: Vec<Spanned<String>>,
    #[serde(default)]
    pub groups: Vec<Spanned<String>>,
    /// Header naming the consumer to the backend (default "X-Consumer").
    pub consumer_header: Option<Spanned<String>>,
    pub signature: Option<Spanned<SignatureSection>>,
    pub jwt: Option<RouteJwtSection>,
    pub cors: Option<CorsSection>,
    /// `[route.validate]`: content types, JSON limits, JSON Schema or OpenAPI.
    pub validate: Option<Spanned<ValidateSection>>,
    /// `[route.graphql]`: GraphQL limits, introspection, persisted queries.
    pub graphql: Option<Spanned<GraphqlSection>>,
}

/// `[route.graphql]`: limits on the GraphQL operations a route accepts.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GraphqlSection {
    /// Deepest field nesting (default 10, at most 60).
    pub max_depth: Option<Spanned<u64>>,
    /// Aliased fields per operation, fragments expanded (default 30).
    pub max_aliases: Option<Spanned<u64>>,
    /// Fields at the operation's top level (default 30).
    pub max_root_fields: Option<Spanned<u64>>,
    /// Fragment definitions in a document (default 50).
    pub max_fragments: Option<Spanned<u64>>,
    /// Total cost (default 5000): weights, times list sizes.
    pub max_cost: Option<Spanned<u64>>,
    /// Operations in a batch (a JSON array) (default 10).
    pub max_batch: Option<Spanned<u64>>,
    /// Longest query text (default "32k").
    pub max_query_size: Option<Spanned<String>>,
    /// Cost of a field without a weight (default 1).
    pub default_cost: Option<Spanned<u64>>,
    /// `{ "Query.users" = 5, "posts" = 3 }`: cost per field, by "Type.field" or field name.
    pub weights: Option<Spanned<std::collections::BTreeMap<String, u64>>>,
    /// Arguments whose integer value multiplies a field's selection (default ["first", "last", "limit"]).
    pub list_arguments: Option<Vec<Spanned<String>>>,
    /// Multiplier when such an argument's value is unknown (default 10).
    pub default_list_size: Option<Spanned<u64>>,
    /// "allow" (default) or "deny" (`__schema` and `__type` refused; `__typename` stays allowed).
    pub introspection: Option<Spanned<String>>,
    /// JSON allowlist of operations by SHA-256: `{"<hex>": "<query>"}` or an Apollo manifest.
    pub persisted_queries: Option<Spanned<String>>,
    /// Refuse every operation that is not in `persisted_queries` (default false).
    pub allowlist_only: Option<Spanned<bool>>,
}

/// `[route.validate]`: request validation (see docs/validation.md).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ValidateSection {
    /// Allowed media types of request bodies ("application/json", "text/*"); 415 otherwise.
    #[serde(default)]
    pub content_types: Vec<Spanned<String>>,
    /// Largest JSON body ("64k"); capped by the listener's `max_body_size`.
    pub max_body: Option<Spanned<String>>,
    /// Deepest nesting of arrays/objects (default 32, at most 128).
    pub max_depth: Option<Spanned<usize>>,
    /// Most members of any one object (default 1000).
    pub max_keys: Option<Spanned<usize>>,
    /// Longest string or key in bytes as sent (default 65536).
    pub max_string: Option<Spanned<usize>>,
    /// A JSON Schema file, or the schema itself inline (text starting with '{').
    pub schema: Option<Spanned<String>>,
    /// An OpenAPI 3.0/3.1 document (YAML or JSON).
    pub openapi: Option<Spanned<String>>,
    /// Refuse requests matching no OpenAPI operation: 404/405 (default false: forwarded unchecked).
    pub reject_unknown: Option<bool>,
}

/// `[route.identity_header_names]`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IdentityHeaderNamesSection {
    pub cert: Option<Spanned<String>>,
    pub dn: Option<Spanned<String>>,
    pub issuer_dn: Option<Spanned<String>>,
    pub verify: Option<Spanned<String>>,
    pub serial: Option<Spanned<String>>,
    pub fingerprint: Option<Spanned<String>>,
    pub not_after: Option<Spanned<String>>,
}

/// `[[echo]]`: a built-in echo upstream (answers with the request it saw, as JSON).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EchoSection {
    pub address: Spanned<String>,
}

/// `websocket = true|false`, or a `[route.websocket]` table.
#[derive(Debug)]
pub enum WebsocketField {
    Enabled(bool),
    Policy(Box<RouteWebsocketSection>),
}

impl<'de> Deserialize<'de> for WebsocketField {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> serde::de::Visitor<'de> for V {
            type Value = WebsocketField;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("true, false or a [route.websocket] table")
            }
            fn visit_bool<E: serde::de::Error>(self, v: bool) -> Result<WebsocketField, E> {
                Ok(WebsocketField::Enabled(v))
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(
                self,
                map: A,
            ) -> Result<WebsocketField, A::Error> {
                RouteWebsocketSection::deserialize(serde::de::value::MapAccessDeserializer::new(
                    map,
                ))
                .map(|s| WebsocketField::Policy(Box::new(s)))
            }
        }
        d.deserialize_any(V)
    }
}

/// `[route.websocket]`: the route's WebSocket policy.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RouteWebsocketSection {
    /// Origins allowed at the upgrade: "https://app.example.com", "https://*.example.com", "*".
    #[serde(default)]
    pub allowed_origins: Vec<Spanned<String>>,
    /// Let upgrades without an Origin header through (default false).
    #[serde(default)]
    pub allow_missing_origin: bool,
    /// Ping the client this often ("30s"); terminates the framing.
    pub heartbeat_interval: Option<Spanned<String>>,
    /// Close (1001) when no pong arrives this long after a ping (default: the interval).
    pub heartbeat_timeout: Option<Spanned<String>>,
    /// Largest client message ("1m"); beyond: close 1009.
    pub max_message_size: Option<Spanned<String>>,
    /// Largest client frame ("64k"); beyond: close 1009.
    pub max_frame_size: Option<Spanned<String>>,
    /// Client messages per connection: "50r/s" or "600r/m"; beyond the burst: close 1008.
    pub message_rate: Option<Spanned<String>>,
    /// Messages allowed at once above the rate (default: one second's worth).
    pub message_burst: Option<Spanned<u64>>,
    /// Close a JWT-authenticated connection (1008 "token expired") at the token's `exp`.
    pub close_on_token_expiry: Option<Spanned<bool>>,
}
