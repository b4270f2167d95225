//! Stage 3 of the config: the immutable snapshot the request path reads.
//!
//! Owns turning a validated `Config` into `Arc`ed, ready-to-use parts: one
//! rustls config and one HTTP server builder per listener, the router, the
//! upstream clients, precomputed response headers, the access log. Built
//! whole, away from the request path; a reload (later) swaps it in one step.

use std::sync::Arc;

use http::header::{HeaderName, HeaderValue};
use hyper_util::rt::{TokioExecutor, TokioTimer};
use hyper_util::server::conn::auto;
use ipnet::IpNet;

use crate::accesslog::{AccessLog, LogFormat};
use crate::config::{Config, Limits, RouteConfig, SecurityHeaders};
use crate::route::Router;
use crate::upstream::{spawn_health_checks, TaskGuard, Upstream};

/// Headers added to responses, precomputed.
pub type HeaderSet = Vec<(HeaderName, HeaderValue)>;

/// Why a runtime could not be built from a (valid) config.
#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    #[error("listener \"{0}\": {1}")]
    Tls(String, crate::tls::TlsError),
    #[error(transparent)]
    Upstream(#[from] crate::upstream::UpstreamBuildError),
    #[error("access log: {0}")]
    AccessLog(std::io::Error),
    #[error("{0}")]
    Audit(std::io::Error),
    #[error("pki: {0}")]
    Pki(String),
    #[error("cluster redis \"{0}\": {1}")]
    Cluster(String, String),
}

/// Per listener.
pub struct ListenerRuntime {
    pub name: String,
    /// Certificates this listener's CRLs revoke (its files, plus fetched ones with crl_fetch).
    pub revoked: crate::mtls::RevokedSet,
    /// Fetch CRL distribution points of client certificates.
    pub crl_fetch: bool,
    pub ocsp: crate::mtls::fetch::OcspMode,
    /// Client CAs (to find an issuer a client did not send, for OCSP).
    pub client_ca: Vec<rustls_pki_types::CertificateDer<'static>>,
    pub tls: crate::tls::ListenerTls,
    pub limits: Limits,
    pub http: auto::Builder<TokioExecutor>,
}

/// Per route.
pub struct RouteRuntime {
    pub cfg: RouteConfig,
    /// `cfg.name`, shared with access-log records ($route).
    pub name: Arc<str>,
    pub upstream: Arc<Upstream>,
    /// Security headers plus Deprecation / Sunset / Link.
    pub headers: HeaderSet,
    /// The `Allow` value for 405 answers.
    pub allow: String,
    /// Client-certificate requirements.
    pub policy: crate::mtls::policy::RoutePolicy,
    /// Rate-limit zones, all must pass.
    pub zones: Vec<Arc<crate::ratelimit::Zone>>,
    /// Request counters and latency histograms of this route.
    pub metrics: crate::metrics::RouteMetrics,
}

/// The whole snapshot.
pub struct Runtime {
    pub listeners: Vec<ListenerRuntime>,
    pub router: Router,
    pub routes: Vec<RouteRuntime>,
    pub upstreams: Vec<Arc<Upstream>>,
    /// Security headers for answers made before a route is known.
    pub default_headers: HeaderSet,
    /// The same as raw header lines, for the error answers hyper writes itself.
    pub error_head_lines: Arc<Vec<u8>>,
    pub trusted_proxies: Vec<IpNet>,
    pub access_log: AccessLog,
    pub log_format: Arc<LogFormat>,
    /// All rate-limit zones.
    pub zones: Vec<Arc<crate::ratelimit::Zone>>,
    /// Header names removed from every request: the built-in identity and
    /// method-override names and every route's own (`forward::StripSet`).
    pub strip_names: crate::forward::StripSet,
    /// Cluster mode: the shared rate-limit store (Redis).
    pub cluster: Option<Arc<crate::ratelimit::cluster::Cluster>>,
    pub consumers: crate::auth::Consumers,
    pub api_keys: crate::auth::apikey::ApiKeys,
    /// Request-signing keys by keyid, with their consumer.
    pub signing_keys: std::collections::HashMap<
        String,
        (
            crate::auth::signature::VerifyKey,
            Arc<crate::auth::Consumer>,
        ),
    >,
    /// Bearer-token verification (JWKS cache and verified-token cache kept across reloads when unchanged).
    pub jwt: Option<Arc<crate::auth::jwt::JwtVerifier>>,
    /// Signatures seen recently (kept across reloads).
    pub replay: Arc<crate::auth::replay::ReplayCache>,
    /// The built-in CA's endpoints, when `[pki]` is configured.
    pub pki: Option<crate::pki_service::PkiService>,
    /// The audit log (disabled without `[audit]`); the same handle across
    /// reloads that keep its path.
    pub audit: crate::audit::AuditLog,
    /// Prometheus metrics (one registry for the process, kept across reloads).
    pub metrics: Arc<crate::metrics::Metrics>,
    /// Counters of requests answered before a route was found, and of the PKI endpoints.
    pub no_route_metrics: crate::metrics::RouteMetrics,
    pub pki_metrics: crate::metrics::RouteMetrics,
    /// Unique per built runtime (process-wide counter): per-connection caches
    /// keyed by route index include it, since a reload renumbers routes.
    pub generation: u64,
    _health: Vec<TaskGuard>,
}

static GENERATION: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);

fn route_policy(m: &crate::config::RouteMtls) -> crate::mtls::policy::RoutePolicy {
    let anchors = m.client_ca.as_ref().map(|cas| {
        cas.iter()
            .filter_map(|c| {
                webpki::anchor_from_trusted_cert(c)
                    .ok()
                    .map(|a| a.to_owned())
            })
            .collect()
    });
    crate::mtls::policy::RoutePolicy {
        required: m.required,
        anchors,
        allow_subjects: m.allow_subjects.clone(),
        allow_dns: m.allow_dns.clone(),
        allow_uris: m.allow_uris.clone(),
        allow_emails: m.allow_emails.clone(),
        allow_spiffe: m.allow_spiffe.clone(),
        pin_cert_sha256: m.pin_cert_sha256.clone(),
        pin_spki_sha256: m.pin_spki_sha256.clone(),
    }
}

/// The security headers of a config as a header set.
pub fn security_header_set(s: &SecurityHeaders) -> HeaderSet {
    let mut out = HeaderSet::new();
    let mut add = |name: &'static str, v: &Option<String>| {
        if let Some(v) = v {
            if let Ok(v) = HeaderValue::from_str(v) {
                out.push((HeaderName::from_static(name), v));
            }
        }
    };
    add("strict-transport-security", &s.strict_transport_security);
    add("x-content-type-options", &s.x_content_type_options);
    add("x-frame-options", &s.x_frame_options);
    add("content-security-policy", &s.content_security_policy);
    add("referrer-policy", &s.referrer_policy);
    out
}

fn http_builder(l: &Limits, http2: bool) -> auto::Builder<TokioExecutor> {
    let mut b = auto::Builder::new(TokioExecutor::new());
    b.http1()
        .timer(TokioTimer::new())
        .header_read_timeout(l.header_timeout + std::time::Duration::from_secs(1))
        .max_buf_size(l.max_header_size.max(8192))
        .max_headers(l.max_headers)
        .keep_alive(true)
        .half_close(false)
        // One buffer per response: head and body leave in one TLS record, not two.
        .writev(false);
    b.http2()
        .timer(TokioTimer::new())
        .max_concurrent_streams(l.h2_max_concurrent_streams)
        .max_header_list_size(l.max_header_size as u32)
        .max_pending_accept_reset_streams(50)
        .max_local_error_reset_streams(256)
        // RFC 8441: WebSocket over HTTP/2 (extended CONNECT with :protocol).
        .enable_connect_protocol()
        .keep_alive_interval(Some(std::time::Duration::from_secs(30)))
        .keep_alive_timeout(std::time::Duration::from_secs(20));
    if !http2 {
        b = b.http1_only();
    }
    b
}

impl Runtime {
    /// Builds a runtime for `workers` worker threads (one upstream pool each);
    /// starts health checks (they stop when it is dropped).
    /// `previous` lends its rate-limit zones: a zone whose settings did not
    /// change keeps its counters across a reload.
    pub fn build(
        cfg: &Config,
        workers: usize,
        ticketer: Option<Arc<dyn rustls::server::ProducesTickets>>,
        fetched: &crate::mtls::fetch::RevocationFetcher,
        previous: Option<&Runtime>,
    ) -> Result<Runtime, BuildError> {
        // Cluster mode: the Redis client survives reloads that keep `[cluster]`.
        let cluster = match &cfg.cluster {
            None => None,
            Some(cc) => Some(
                previous
                    .and_then(|p| p.cluster.as_ref())
                    .filter(|c| c.config() == cc)
                    .cloned()
                    .map_or_else(
                        || crate::ratelimit::cluster::Cluster::new(cc).map(Arc::new),
                        Ok,
                    )
                    .map_err(|e| BuildError::Cluster(cc.redis.clone(), e))?,
            ),
        };
        let new_zone = |zc: &crate::ratelimit::ZoneConfig| match &cfg.cluster {
            None => crate::ratelimit::Zone::new(zc.clone()),
            Some(cc) => crate::ratelimit::Zone::keyed(zc.clone(), cc.key_secret.as_bytes()),
        };
        let zones: Vec<Arc<crate::ratelimit::Zone>> = cfg
            .rate_limits
            .iter()
            .map(|zc| {
                let hash_id = cfg.cluster.as_ref().map_or(0, |cc| {
                    crate::ratelimit::secret_id(cc.key_secret.as_bytes())
                });
                previous
                    .and_then(|p| {
                        p.zones
                            .iter()
                            .find(|z| {
                                z.cfg.name == zc.name
                                    && z.cfg.params == zc.params
                                    && z.cfg.key == zc.key
                                    && z.cfg.max_keys == zc.max_keys
                                    && z.cfg.dry_run == zc.dry_run
                                    && z.cfg.status == zc.status
                                    && z.cfg.on_store_failure == zc.on_store_failure
                                    && z.hash_id() == hash_id
                            })
                            .cloned()
                    })
                    .unwrap_or_else(|| Arc::new(new_zone(zc)))
            })
            .collect();
        let metrics = previous
            .map(|p| p.metrics.clone())
            .unwrap_or_else(|| Arc::new(crate::metrics::Metrics::new()));
        let mut listeners = Vec::new();
        let mut staple_targets = Vec::new();
        for l in &cfg.listeners {
            if l.ocsp_stapling {
                for c in &l.certificates {
                    if let (Some(leaf), Some(issuer)) = (c.chain.first(), c.chain.get(1)) {
                        if let Some(url) = crate::mtls::ocsp::responder_url(leaf.as_ref()) {
                            staple_targets.push((
                                leaf.as_ref().to_vec(),
                                issuer.as_ref().to_vec(),
                                url,
                            ));
                        }
                    }
                }
            }
            let tls = crate::tls::server_config(l, ticketer.clone(), fetched)
                .map_err(|e| BuildError::Tls(l.name.clone(), e))?;
            listeners.push(ListenerRuntime {
                name: l.name.clone(),
                revoked: {
                    let mut crls = crate::config::read_crls(&l.crl_paths).unwrap_or_default();
                    if l.crl_fetch {
                        crls.extend(fetched.crls());
                    }
                    let mut set = crate::mtls::RevokedSet::from_crls(&crls);
                    set.leaf_only = l.crl_scope == crate::mtls::CrlScope::Leaf;
                    set
                },
                tls,
                crl_fetch: l.crl_fetch,
                ocsp: l.ocsp,
                client_ca: l.client_ca.clone(),
                limits: l.limits.clone(),
                http: http_builder(&l.limits, l.http2),
            });
        }
        let mut upstreams = Vec::new();
        let mut health = Vec::new();
        for u in &cfg.upstreams {
            let up = Arc::new(Upstream::build(u, workers)?);
            if let Some(hc) = &u.health_check {
                health.extend(spawn_health_checks(&up, hc));
            }
            upstreams.push(up);
        }
        let routes = cfg
            .routes
            .iter()
            .map(|r| {
                let mut headers = security_header_set(&r.security_headers);
                let mut add = |name: &'static str, v: &Option<String>| {
                    if let Some(v) = v.as_ref().and_then(|v| HeaderValue::from_str(v).ok()) {
                        headers.push((HeaderName::from_static(name), v));
                    }
                };
                add("deprecation", &r.deprecation);
                add("sunset", &r.sunset);
                add(
                    "link",
                    &r.deprecation_link
                        .as_ref()
                        .map(|l| format!("<{l}>; rel=\"deprecation\"")),
                );
                let allow = r
                    .methods
                    .as_ref()
                    .map(|ms| ms.iter().map(|m| m.as_str()).collect::<Vec<_>>().join(", "))
                    .unwrap_or_default();
                RouteRuntime {
                    name: Arc::from(r.name.as_str()),
                    cfg: r.clone(),
                    upstream: upstreams[r.upstream].clone(),
                    headers,
                    allow,
                    policy: route_policy(&r.mtls),
                    zones: r.rate_limits.iter().map(|&i| zones[i].clone()).collect(),
                    metrics: metrics.route(&r.name, &upstreams[r.upstream].name),
                }
            })
            .collect();
        let access_log =
            AccessLog::open(cfg.log.access_target.clone()).map_err(BuildError::AccessLog)?;
        fetched.set_staple_targets(staple_targets);
        // The same path keeps the running writer and its chain.
        let audit = match &cfg.audit_path {
            Some(path) => match previous.filter(|p| p.audit.path() == Some(path.as_path())) {
                Some(p) => p.audit.clone(),
                None => crate::audit::AuditLog::open(path).map_err(BuildError::Audit)?,
            },
            None => crate::audit::AuditLog::disabled(),
        };
        let pki = match &cfg.pki {
            Some(p) => Some(
                crate::pki_service::PkiService::start(p.clone(), audit.clone())
                    .map_err(|e| BuildError::Pki(e.to_string()))?,
            ),
            None => None,
        };
        let consumers = crate::auth::Consumers {
            list: cfg.consumers.iter().map(|c| Arc::new(c.clone())).collect(),
        };
        let mut api_keys = crate::auth::apikey::ApiKeys::new(
            cfg.api_keys.header.clone(),
            cfg.api_keys.query_param.clone(),
        );
        for (hash, name, expires, disabled) in &cfg.api_keys.keys {
            if let Some(c) = consumers.by_name(name) {
                api_keys.insert(
                    *hash,
                    crate::auth::apikey::KeyEntry {
                        consumer: c.clone(),
                        expires: *expires,
                        disabled: *disabled,
                    },
                );
            }
        }
        let signing_keys = cfg
            .signing_keys
            .iter()
            .filter_map(|(id, name, key)| {
                consumers
                    .by_name(name)
                    .map(|c| (id.clone(), (key.clone(), c.clone())))
            })
            .collect();
        let replay = previous
            .map(|p| p.replay.clone())
            .unwrap_or_else(|| Arc::new(crate::auth::replay::ReplayCache::new(1_000_000)));
        let jwt = if cfg.jwt_issuers.is_empty() {
            None
        } else {
            Some(Arc::new(
                crate::auth::jwt::JwtVerifier::new(cfg.jwt_issuers.clone())
                    .map_err(|e| BuildError::Pki(format!("jwt: {e}")))?,
            ))
        };
        let mut identity_header_names: Vec<HeaderName> = Vec::new();
        for r in &cfg.routes {
            let n = &r.mtls.header_names;
            for name in [
                &n.cert,
                &n.dn,
                &n.issuer_dn,
                &n.verify,
                &n.serial,
                &n.fingerprint,
                &n.not_after,
                &r.consumer_header,
            ] {
                if !identity_header_names.contains(name) {
                    identity_header_names.push(name.clone());
                }
            }
        }
        Ok(Runtime {
            audit,
            no_route_metrics: metrics.route("none", "none"),
            pki_metrics: metrics.route("pki", "none"),
            metrics,
            strip_names: crate::forward::StripSet::new(&identity_header_names),
            jwt,
            signing_keys,
            replay,
            consumers,
            api_keys,
            zones,
            cluster,
            pki,
            listeners,
            router: Router::new(&cfg.routes),
            routes,
            upstreams,
            default_headers: security_header_set(&cfg.security_headers),
            error_head_lines: Arc::new(
                security_header_set(&cfg.security_headers)
                    .iter()
                    .flat_map(|(n, v)| {
                        [n.as_str().as_bytes(), b": ", v.as_bytes(), b"\r\n"].concat()
                    })
                    .collect(),
            ),
            trusted_proxies: cfg.server.trusted_proxies.clone(),
            access_log,
            log_format: Arc::new(cfg.log.access_format.clone()),
            generation: GENERATION.fetch_add(1, std::sync::atomic::Ordering::Relaxed),
            _health: health,
        })
    }
}
