//! Upstream groups: server selection, pooled connections, passive ejection.
//!
//! Owns, per `[[upstream]]`, the connection pools, one per worker thread (as
//! nginx's `keepalive` is per worker process, so a request never uses a
//! connection driven by another thread): direct HTTP/1.1 connections for
//! plain-HTTP requests (`direct.rs`), and hyper-util's pooled client for HTTPS
//! (optional upstream mTLS), upgrades and health checks; the balancer
//! (round-robin or least connections),
//! and each server's health: passive ejection after `max_fails` failures
//! within `fail_timeout` (nginx's semantics) and the verdict of active health
//! checks (`health.rs`). It does not build requests; `forward.rs` does.

mod direct;
mod health;

use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioTimer};

pub use direct::DirectError;
pub use health::{spawn_health_checks, TaskGuard};

use crate::body::RequestBody;
use crate::config::{Balance, UpstreamConfig};

pub type HttpClient = Client<HttpsConnector<HttpConnector>, RequestBody>;

use crate::ratelimit::now_ms;

/// One server of an upstream group.
#[derive(Debug)]
pub struct Server {
    /// "host:port"; shared with access-log records ($upstream_addr).
    pub authority: Arc<str>,
    /// The same as a Host header value (made once, cloned per request).
    pub host_value: Option<http::HeaderValue>,
    /// "http://host:port" or "https://host:port".
    pub base: String,
    pub https: bool,
    active: AtomicUsize,
    fails: AtomicU32,
    window_start_ms: AtomicU64,
    ejected_until_ms: AtomicU64,
    health_down: AtomicBool,
}

impl Server {
    fn new(authority: &str, https: bool) -> Self {
        Server {
            authority: Arc::from(authority),
            host_value: http::HeaderValue::from_str(authority).ok(),
            base: format!("{}://{}", if https { "https" } else { "http" }, authority),
            https,
            active: AtomicUsize::new(0),
            fails: AtomicU32::new(0),
            window_start_ms: AtomicU64::new(0),
            ejected_until_ms: AtomicU64::new(0),
            health_down: AtomicBool::new(false),
        }
    }

    /// Passively ejected now? `now` (ms) is asked only for a server that
    /// was ever ejected, so the usual pick reads no clock.
    pub fn is_ejected(&self, now: impl FnOnce() -> u64) -> bool {
        let until = self.ejected_until_ms.load(Ordering::Relaxed);
        until != 0 && until > now()
    }

    pub fn is_health_down(&self) -> bool {
        self.health_down.load(Ordering::Relaxed)
    }

    pub fn set_health_down(&self, down: bool) {
        self.health_down.store(down, Ordering::Relaxed);
    }

    pub fn active(&self) -> usize {
        self.active.load(Ordering::Relaxed)
    }
}

/// Counts a request in flight on a server (least-connections, the admin API).
pub struct ActiveGuard<'a>(&'a AtomicUsize);

impl Drop for ActiveGuard<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

/// A group of servers with pooled clients (one per worker).
#[derive(Debug)]
pub struct Upstream {
    pub name: String,
    pub servers: Vec<Server>,
    pub balance: Balance,
    pub response_timeout: Duration,
    pub retries: u32,
    max_fails: u32,
    fail_timeout_ms: u64,
    rr: AtomicUsize,
    /// Index `crate::workers::current()`: 0 for the control runtime.
    clients: Vec<HttpClient>,
    /// Plain-HTTP requests without an upgrade (`direct.rs`).
    direct: direct::DirectPool,
}

/// Why an upstream request failed, from either client.
#[derive(Debug, thiserror::Error)]
pub enum SendError {
    /// The path and query do not make a URI (nothing was sent).
    #[error("invalid request target: {0}")]
    BadTarget(#[source] http::uri::InvalidUri),
    #[error(transparent)]
    Pooled(#[from] hyper_util::client::legacy::Error),
    #[error(transparent)]
    Direct(#[from] DirectError),
}

impl SendError {
    /// Nothing reached the server (connection refused, connect timeout).
    pub fn is_connect(&self) -> bool {
        match self {
            SendError::Pooled(e) => e.is_connect(),
            SendError::Direct(e) => e.is_connect(),
            SendError::BadTarget(_) => false,
        }
    }
}

/// Why an upstream could not be built.
#[derive(Debug, thiserror::Error)]
pub enum UpstreamBuildError {
    #[error("upstream \"{0}\": TLS: {1}")]
    Tls(String, String),
}

impl Upstream {
    pub fn build(cfg: &UpstreamConfig, workers: usize) -> Result<Self, UpstreamBuildError> {
        let mut http = HttpConnector::new();
        http.enforce_http(false);
        http.set_nodelay(true);
        http.set_connect_timeout(Some(cfg.connect_timeout));
        http.set_keepalive(Some(Duration::from_secs(60)));

        let tls = crate::tls::upstream_client_config(cfg)
            .map_err(|e| UpstreamBuildError::Tls(cfg.name.clone(), e))?;
        let builder = hyper_rustls::HttpsConnectorBuilder::new()
            .with_tls_config(tls)
            .https_or_http();
        let builder = match cfg.tls.as_ref().and_then(|t| t.server_name.clone()) {
            Some(n) => {
                builder.with_server_name_resolver(hyper_rustls::FixedServerNameResolver::new(
                    match rustls_pki_types::ServerName::try_from(n) {
                        Ok(s) => s,
                        Err(e) => {
                            return Err(UpstreamBuildError::Tls(cfg.name.clone(), e.to_string()))
                        }
                    },
                ))
            }
            None => builder,
        };
        let connector = builder.enable_http1().wrap_connector(http);
        let clients = (0..crate::workers::slots(workers))
            .map(|_| {
                Client::builder(TokioExecutor::new())
                    .pool_timer(TokioTimer::new())
                    .pool_idle_timeout(cfg.keepalive_timeout)
                    .pool_max_idle_per_host(cfg.keepalive)
                    .set_host(false)
                    .retry_canceled_requests(true)
                    .build(connector.clone())
            })
            .collect();
        Ok(Upstream {
            name: cfg.name.clone(),
            servers: cfg
                .servers
                .iter()
                .map(|s| Server::new(&s.authority, s.https))
                .collect(),
            balance: cfg.balance,
            response_timeout: cfg.response_timeout,
            retries: cfg.retries,
            max_fails: cfg.max_fails,
            fail_timeout_ms: cfg.fail_timeout.as_millis() as u64,
            rr: AtomicUsize::new(0),
            clients,
            direct: direct::DirectPool::new(
                workers,
                cfg.servers.len(),
                cfg.keepalive,
                cfg.keepalive_timeout,
                cfg.connect_timeout,
            ),
        })
    }

    /// The pooled client of the calling worker thread.
    pub fn client(&self) -> &HttpClient {
        &self.clients[crate::workers::current() % self.clients.len()]
    }

    /// Sends a request to server `si`: `target` is the path and query the
    /// upstream receives, `req`'s URI is replaced. Plain-HTTP requests that do
    /// not upgrade go over this worker's direct connections; HTTPS and
    /// upgrades over the pooled client.
    ///
    /// Not an `async fn`: the future returned is the client's own (no copy
    /// of the request kept in an extra state; it is part of every request's
    /// future).
    pub fn send<'a>(
        &'a self,
        si: usize,
        target: &http::uri::PathAndQuery,
        mut req: http::Request<RequestBody>,
        upgrade: bool,
    ) -> impl std::future::Future<Output = Result<http::Response<hyper::body::Incoming>, SendError>> + 'a
    {
        use futures_util::future::{ready, Either, TryFutureExt};
        let server = &self.servers[si];
        if !server.https && !upgrade {
            *req.uri_mut() = http::Uri::from(target.clone());
            return Either::Left(
                self.direct
                    .send(si, &server.authority, req)
                    .map_err(SendError::from),
            );
        }
        match http::Uri::try_from(format!("{}{}", server.base, target.as_str())) {
            Ok(uri) => {
                *req.uri_mut() = uri;
                Either::Right(Either::Left(
                    self.client().request(req).map_err(SendError::from),
                ))
            }
            Err(e) => Either::Right(Either::Right(ready(Err(SendError::BadTarget(e))))),
        }
    }

    /// Picks a server not in `tried`: healthy and not ejected first; if every
    /// server is ejected (but not health-checked down), the one whose ejection
    /// ends first, as nginx does rather than failing outright.
    pub fn select(&self, tried: &[usize]) -> Option<(usize, ActiveGuard<'_>)> {
        let n = self.servers.len();
        // The clock is read only if some server was ever ejected.
        let now = std::cell::OnceCell::new();
        let usable = |i: usize| !tried.contains(&i) && !self.servers[i].is_health_down();
        let available =
            |i: usize| usable(i) && !self.servers[i].is_ejected(|| *now.get_or_init(now_ms));
        let pick = match self.balance {
            Balance::RoundRobin => {
                // One server: nothing to rotate (the shared counter is not touched).
                let start = if n == 1 {
                    0
                } else {
                    self.rr.fetch_add(1, Ordering::Relaxed)
                };
                (0..n).map(|k| (start + k) % n).find(|&i| available(i))
            }
            Balance::LeastConn => {
                let start = self.rr.fetch_add(1, Ordering::Relaxed);
                (0..n)
                    .map(|k| (start + k) % n)
                    .filter(|&i| available(i))
                    .min_by_key(|&i| self.servers[i].active())
            }
        };
        let pick = pick.or_else(|| {
            (0..n)
                .filter(|&i| usable(i))
                .min_by_key(|&i| self.servers[i].ejected_until_ms.load(Ordering::Relaxed))
        })?;
        let active = &self.servers[pick].active;
        active.fetch_add(1, Ordering::Relaxed);
        Some((pick, ActiveGuard(active)))
    }

    /// Records a failed attempt (connect error, reset, timeout) on a server.
    pub fn record_failure(&self, i: usize) {
        if self.max_fails == 0 {
            return;
        }
        let s = &self.servers[i];
        let now = now_ms();
        let start = s.window_start_ms.load(Ordering::Relaxed);
        if now.saturating_sub(start) > self.fail_timeout_ms {
            s.window_start_ms.store(now, Ordering::Relaxed);
            s.fails.store(0, Ordering::Relaxed);
        }
        let fails = s.fails.fetch_add(1, Ordering::Relaxed) + 1;
        if fails >= self.max_fails {
            s.ejected_until_ms
                .store(now + self.fail_timeout_ms, Ordering::Relaxed);
            s.fails.store(0, Ordering::Relaxed);
            tracing::warn!(upstream = %self.name, server = %s.authority, fails, "upstream server ejected for {} ms after failures", self.fail_timeout_ms);
        }
    }

    /// True when no server can take a request (all health-checked down).
    pub fn all_down(&self) -> bool {
        self.servers.iter().all(|s| s.is_health_down())
    }
}
