//! Prometheus metrics: what the gateway counts and how /metrics renders it.
//!
//! Owns the registry (created once per process and carried across reloads,
//! so counters never reset on SIGHUP) and the handles the request path
//! uses. Labels are bounded by the config, never by traffic: route,
//! upstream, listener and zone names, a method class, a status class,
//! static reason strings. No per-IP, per-path or per-client label exists.
//!
//! The hot path never builds a label set: each route resolves its counters
//! once (lazily, per method × status class) and keeps the handles; a
//! request costs a few atomic adds and one histogram observation.
//! Gauges that describe state (upstream health, certificate expiry, the
//! config hash) are computed when /metrics is scraped.

use std::sync::{Arc, OnceLock};

use http::Method;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;

type HistFamily<L> = Family<L, Histogram, fn() -> Histogram>;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RequestLabels {
    pub route: String,
    pub method: &'static str,
    pub status: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RouteLabel {
    pub route: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct UpstreamLabel {
    pub upstream: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ListenerLabel {
    pub listener: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct HandshakeLabels {
    pub listener: String,
    pub version: &'static str,
    pub cipher: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct FailureLabels {
    pub listener: String,
    pub reason: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ZoneLabels {
    pub zone: String,
    pub outcome: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct AuthLabels {
    pub scheme: &'static str,
    pub reason: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ServerLabels {
    pub upstream: String,
    pub server: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ExpiryLabels {
    pub kind: &'static str,
    pub name: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ResultLabel {
    pub result: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct HashLabel {
    pub sha256: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ReasonLabel {
    pub reason: &'static str,
}

fn latency_histogram() -> Histogram {
    // 100 µs … ~52 s.
    Histogram::new(exponential_buckets(0.0001, 2.0, 20))
}

fn handshake_histogram() -> Histogram {
    // 100 µs … ~3.3 s.
    Histogram::new(exponential_buckets(0.0001, 2.0, 16))
}

/// Every metric the gateway exports.
pub struct Metrics {
    registry: Registry,
    requests: Family<RequestLabels, Counter>,
    request_duration: HistFamily<RouteLabel>,
    upstream_duration: HistFamily<UpstreamLabel>,
    pub handshakes: Family<HandshakeLabels, Counter>,
    pub handshake_duration: HistFamily<ListenerLabel>,
    pub handshake_failures: Family<FailureLabels, Counter>,
    pub ratelimit: Family<ZoneLabels, Counter>,
    pub auth_failures: Family<AuthLabels, Counter>,
    upstream_up: Family<ServerLabels, Gauge>,
    pub connections: Family<ListenerLabel, Gauge>,
    pub in_flight: Gauge,
    expiry: Family<ExpiryLabels, Gauge>,
    pub reloads: Family<ResultLabel, Counter>,
    config_info: Family<HashLabel, Gauge>,
    pub revoked_closed: Counter,
    audit_dropped: Gauge,
    /// Requests refused by GraphQL limits, by reason.
    pub graphql_rejections: Family<ReasonLabel, Counter>,
    /// Requests refused by request validation, by reason.
    pub validation_failures: Family<ReasonLabel, Counter>,
    /// WebSocket connections closed by the gateway, by reason.
    pub websocket_closes: Family<ReasonLabel, Counter>,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    pub fn new() -> Metrics {
        let mut registry = Registry::with_prefix("portcullis");
        let requests = Family::<RequestLabels, Counter>::default();
        registry.register(
            "http_requests",
            "Requests answered, by route, method and status class",
            requests.clone(),
        );
        let request_duration: HistFamily<RouteLabel> =
            Family::new_with_constructor(latency_histogram as fn() -> Histogram);
        registry.register(
            "http_request_duration_seconds",
            "Time from the request head to the response head, by route",
            request_duration.clone(),
        );
        let upstream_duration: HistFamily<UpstreamLabel> =
            Family::new_with_constructor(latency_histogram as fn() -> Histogram);
        registry.register(
            "upstream_response_duration_seconds",
            "Time the upstream took to answer (response head), by upstream",
            upstream_duration.clone(),
        );
        let handshakes = Family::<HandshakeLabels, Counter>::default();
        registry.register(
            "tls_handshakes",
            "Completed TLS handshakes, by listener, protocol version and cipher suite",
            handshakes.clone(),
        );
        let handshake_duration: HistFamily<ListenerLabel> =
            Family::new_with_constructor(handshake_histogram as fn() -> Histogram);
        registry.register(
            "tls_handshake_duration_seconds",
            "Time from accepting the connection to the end of the TLS handshake",
            handshake_duration.clone(),
        );
        let handshake_failures = Family::<FailureLabels, Counter>::default();
        registry.register(
            "tls_handshake_failures",
            "Failed TLS handshakes, by listener and reason (no_certificate, unknown_ca, expired, revoked, wrong_eku, protocol_version, timeout, other, ...)",
            handshake_failures.clone(),
        );
        let ratelimit = Family::<ZoneLabels, Counter>::default();
        registry.register(
            "ratelimit_decisions",
            "Rate-limit decisions, by zone and outcome ($limit_req_status, lower case)",
            ratelimit.clone(),
        );
        let auth_failures = Family::<AuthLabels, Counter>::default();
        registry.register(
            "auth_failures",
            "Requests refused by authentication or authorization, by scheme and reason",
            auth_failures.clone(),
        );
        let upstream_up = Family::<ServerLabels, Gauge>::default();
        registry.register(
            "upstream_server_up",
            "1 when an upstream server takes traffic (not ejected, health check passing)",
            upstream_up.clone(),
        );
        let connections = Family::<ListenerLabel, Gauge>::default();
        registry.register(
            "open_connections",
            "Open client connections (after the TLS handshake), by listener",
            connections.clone(),
        );
        let in_flight = Gauge::default();
        registry.register(
            "requests_in_flight",
            "Requests (HTTP/2 streams included) being handled",
            in_flight.clone(),
        );
        let expiry = Family::<ExpiryLabels, Gauge>::default();
        registry.register(
            "certificate_expiry_seconds",
            "Seconds until a served certificate, client CA or built-in CA certificate expires, or a CRL's nextUpdate (negative: past)",
            expiry.clone(),
        );
        let reloads = Family::<ResultLabel, Counter>::default();
        registry.register(
            "config_reloads",
            "Configuration reloads, by result (success, failure)",
            reloads.clone(),
        );
        let config_info = Family::<HashLabel, Gauge>::default();
        registry.register(
            "config_info",
            "The configuration in force (SHA-256 of the config file), value 1",
            config_info.clone(),
        );
        let revoked_closed = Counter::default();
        registry.register(
            "revoked_connections_closed",
            "Live connections closed because their client certificate was revoked",
            revoked_closed.clone(),
        );
        let audit_dropped = Gauge::default();
        registry.register(
            "audit_dropped_events",
            "Audit events dropped because the audit file could not keep up (each loss is also recorded in the chain)",
            audit_dropped.clone(),
        );
        let graphql_rejections = Family::<ReasonLabel, Counter>::default();
        registry.register(
            "graphql_rejections",
            "GraphQL requests refused by the route's limits, by reason",
            graphql_rejections.clone(),
        );
        let validation_failures = Family::<ReasonLabel, Counter>::default();
        registry.register(
            "validation_failures",
            "Requests refused by request validation, by reason",
            validation_failures.clone(),
        );
        let websocket_closes = Family::<ReasonLabel, Counter>::default();
        registry.register(
            "websocket_closes",
            "WebSocket connections closed by the gateway, by reason",
            websocket_closes.clone(),
        );
        Metrics {
            registry,
            requests,
            request_duration,
            upstream_duration,
            handshakes,
            handshake_duration,
            handshake_failures,
            ratelimit,
            auth_failures,
            upstream_up,
            connections,
            in_flight,
            expiry,
            reloads,
            config_info,
            revoked_closed,
            audit_dropped,
            graphql_rejections,
            validation_failures,
            websocket_closes,
        }
    }

    /// The handles one route uses on every request.
    pub fn route(&self, route: &str, upstream: &str) -> RouteMetrics {
        RouteMetrics {
            name: route.to_string(),
            family: self.requests.clone(),
            counters: std::array::from_fn(|_| std::array::from_fn(|_| OnceLock::new())),
            duration: self
                .request_duration
                .get_or_create(&RouteLabel {
                    route: route.to_string(),
                })
                .clone(),
            upstream: self
                .upstream_duration
                .get_or_create(&UpstreamLabel {
                    upstream: upstream.to_string(),
                })
                .clone(),
        }
    }

    /// Counts one event of a by-reason family (graphql_rejections, validation_failures, websocket_closes).
    pub fn count(&self, family: &Family<ReasonLabel, Counter>, reason: &'static str) {
        family.get_or_create(&ReasonLabel { reason }).inc();
    }

    /// Counts an authentication or authorization refusal.
    pub fn auth_failure(&self, scheme: &'static str, reason: &'static str) {
        self.auth_failures
            .get_or_create(&AuthLabels { scheme, reason })
            .inc();
    }

    /// Counts the deciding rate-limit zone's outcome.
    pub fn rate_limit(&self, zone: &crate::ratelimit::Zone, st: crate::ratelimit::LimitStatus) {
        use crate::ratelimit::LimitStatus as S;
        let (i, outcome) = match st {
            S::Passed => (0, "passed"),
            S::Delayed => (1, "delayed"),
            S::Rejected => (2, "rejected"),
            S::DelayedDryRun => (3, "delayed_dry_run"),
            S::RejectedDryRun => (4, "rejected_dry_run"),
        };
        // One process keeps one `Metrics` across reloads, so the cached counter stays this family's.
        zone.counters[i]
            .get_or_init(|| {
                self.ratelimit
                    .get_or_create(&ZoneLabels {
                        zone: zone.cfg.name.clone(),
                        outcome,
                    })
                    .clone()
            })
            .inc();
    }

    /// Counts a configuration reload.
    pub fn reload(&self, ok: bool) {
        let result = if ok { "success" } else { "failure" };
        self.reloads.get_or_create(&ResultLabel { result }).inc();
    }

    /// Records the hash of the config in force (one series at a time).
    pub fn set_config_hash(&self, sha256: &str) {
        self.config_info.clear();
        self.config_info
            .get_or_create(&HashLabel {
                sha256: sha256.to_string(),
            })
            .set(1);
    }

    /// Renders the text exposition (OpenMetrics), refreshing the state gauges first.
    pub fn render(&self, rt: &crate::runtime::Runtime, cfg: &crate::config::Config) -> String {
        let now_ms = crate::ratelimit::now_ms();
        self.upstream_up.clear();
        for u in &rt.upstreams {
            for s in &u.servers {
                let up = !s.is_ejected(|| now_ms) && !s.is_health_down();
                self.upstream_up
                    .get_or_create(&ServerLabels {
                        upstream: u.name.clone(),
                        server: s.authority.to_string(),
                    })
                    .set(i64::from(up));
            }
        }
        self.expiry.clear();
        let now = std::time::SystemTime::now();
        for e in crate::expiry::report(cfg, now)
            .into_iter()
            .chain(crate::expiry::crl_report(cfg, now))
            // Issued client certificates are per client: not a metric label.
            .filter(|e| e.kind != "issued")
        {
            self.expiry
                .get_or_create(&ExpiryLabels {
                    kind: e.kind,
                    name: e.name,
                })
                .set(e.seconds_left);
        }
        self.audit_dropped
            .set(i64::try_from(rt.audit.dropped()).unwrap_or(i64::MAX));
        let mut out = String::with_capacity(8192);
        if prometheus_client::encoding::text::encode(&mut out, &self.registry).is_err() {
            out.clear();
        }
        out
    }
}

/// The method as a bounded label value.
pub fn method_class(m: &Method) -> (usize, &'static str) {
    match *m {
        Method::GET => (0, "GET"),
        Method::POST => (1, "POST"),
        Method::PUT => (2, "PUT"),
        Method::DELETE => (3, "DELETE"),
        Method::PATCH => (4, "PATCH"),
        Method::HEAD => (5, "HEAD"),
        Method::OPTIONS => (6, "OPTIONS"),
        Method::CONNECT => (7, "CONNECT"),
        Method::TRACE => (8, "TRACE"),
        _ => (9, "other"),
    }
}

/// The status as a bounded label value.
pub fn status_class(s: u16) -> (usize, &'static str) {
    match s {
        100..=199 => (0, "1xx"),
        200..=299 => (1, "2xx"),
        300..=399 => (2, "3xx"),
        400..=499 => (3, "4xx"),
        500..=599 => (4, "5xx"),
        _ => (5, "other"),
    }
}

/// Per route: resolved counters and histograms.
pub struct RouteMetrics {
    name: String,
    family: Family<RequestLabels, Counter>,
    counters: [[OnceLock<Counter>; 6]; 10],
    pub duration: Histogram,
    pub upstream: Histogram,
}

impl RouteMetrics {
    /// Counts one answered request.
    pub fn request(&self, method: &Method, status: u16, seconds: f64) {
        let (mi, method) = method_class(method);
        let (si, status) = status_class(status);
        self.counters[mi][si]
            .get_or_init(|| {
                self.family
                    .get_or_create(&RequestLabels {
                        route: self.name.clone(),
                        method,
                        status,
                    })
                    .clone()
            })
            .inc();
        self.duration.observe(seconds);
    }
}

/// Keeps a gauge raised while alive (open connections, requests in flight).
pub struct GaugeGuard(Gauge);

impl GaugeGuard {
    pub fn new(g: &Gauge) -> GaugeGuard {
        g.inc();
        GaugeGuard(g.clone())
    }
}

impl Drop for GaugeGuard {
    fn drop(&mut self) {
        self.0.dec();
    }
}

/// The shared handle the runtime keeps.
pub type SharedMetrics = Arc<Metrics>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn route_counters_render_with_bounded_labels() {
        let m = Metrics::new();
        let r = m.route("api", "backend");
        r.request(&Method::GET, 200, 0.01);
        r.request(&Method::GET, 204, 0.01);
        r.request(&Method::from_bytes(b"PURGE").unwrap(), 503, 0.5);
        m.auth_failure("api_key", "unknown key");
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, &m.registry).unwrap();
        assert!(
            out.contains(
                "portcullis_http_requests_total{route=\"api\",method=\"GET\",status=\"2xx\"} 2"
            ),
            "{out}"
        );
        assert!(
            out.contains(
                "portcullis_http_requests_total{route=\"api\",method=\"other\",status=\"5xx\"} 1"
            ),
            "{out}"
        );
        assert!(
            out.contains("portcullis_http_request_duration_seconds_count{route=\"api\"} 3"),
            "{out}"
        );
        assert!(
            out.contains(
                "portcullis_auth_failures_total{scheme=\"api_key\",reason=\"unknown key\"} 1"
            ),
            "{out}"
        );
    }

    #[test]
    fn a_second_route_handle_for_the_same_name_shares_the_series() {
        // A reload re-resolves the handles: counts continue.
        let m = Metrics::new();
        m.route("api", "b").request(&Method::POST, 201, 0.0);
        m.route("api", "b").request(&Method::POST, 201, 0.0);
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, &m.registry).unwrap();
        assert!(
            out.contains(
                "portcullis_http_requests_total{route=\"api\",method=\"POST\",status=\"2xx\"} 2"
            ),
            "{out}"
        );
    }

    #[test]
    fn config_hash_keeps_one_series() {
        let m = Metrics::new();
        m.set_config_hash("aaa");
        m.set_config_hash("bbb");
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, &m.registry).unwrap();
        assert!(!out.contains("aaa"), "{out}");
        assert!(
            out.contains("portcullis_config_info{sha256=\"bbb\"} 1"),
            "{out}"
        );
    }
}
