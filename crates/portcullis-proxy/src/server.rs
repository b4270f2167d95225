//! Listeners: binding, accepting, TLS handshakes, connection lifetime, and
//! graceful shutdown.
//!
//! Owns the sockets. `Gateway::bind` builds the runtime, starts the worker
//! threads (`workers.rs`) and binds every address before anything is served
//! (so a busy port is an error at start, not a half-running gateway); each
//! TLS listener gets one `SO_REUSEPORT` socket per worker. `Gateway::serve`
//! runs every worker's accept loops until the shutdown signal, then stops
//! accepting and lets in-flight requests finish within the deadline.
//! Request handling itself is `stack.rs`.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{watch, Semaphore};

use crate::config::{Config, RedirectConfig};
use crate::mtls::{ClientIdentity, ConnRegistry};
use crate::runtime::{BuildError, Runtime};
use crate::stack::{self, ConnInfo};

/// Why the gateway could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error(transparent)]
    Build(#[from] BuildError),
    #[error("cannot start the worker threads: {0}")]
    Threads(std::io::Error),
    #[error("cannot listen on {addr}: {source}{hint}")]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
        hint: &'static str,
    },
}

/// Addresses actually bound (useful with port 0).
#[derive(Debug, Clone, Default)]
pub struct BoundAddrs {
    pub listeners: Vec<SocketAddr>,
    pub redirects: Vec<SocketAddr>,
    pub echo: Vec<SocketAddr>,
    pub admin: Option<SocketAddr>,
}

/// A bound, not yet serving gateway.
pub struct Gateway {
    runtime: Arc<ArcSwap<Runtime>>,
    ticketer: Arc<dyn rustls::server::ProducesTickets>,
    listen_addrs: Vec<SocketAddr>,
    registry: Arc<ConnRegistry>,
    fetcher: Arc<crate::mtls::fetch::RevocationFetcher>,
    config: Arc<ArcSwap<Config>>,
    /// Per listener, one socket per worker.
    listeners: Vec<Vec<std::net::TcpListener>>,
    workers: crate::workers::Workers,
    max_connections: Vec<usize>,
    conn_limits: Vec<Arc<crate::connlimit::ConnLimits>>,
    handshake_timeouts: Vec<Duration>,
    redirects: Vec<(TcpListener, RedirectConfig)>,
    echo: Vec<TcpListener>,
    shutdown_timeout: Duration,
    addrs: BoundAddrs,
    /// The admin API's listener (`[admin]`).
    admin: Option<TcpListener>,
    /// Reload when the config file or a file it names changes.
    watch_config: bool,
    last_error: Arc<std::sync::Mutex<Option<String>>>,
    slots: AcceptSlots,
}

/// Binds a listening socket for the control runtime (redirects, echo, admin).
fn bind_std(addr: SocketAddr) -> Result<TcpListener, StartError> {
    let l = socket(addr, false, true)?;
    TcpListener::from_std(l).map_err(|source| StartError::Bind {
        addr,
        source,
        hint: "",
    })
}

/// Binds `n` listening sockets to `addr` with `SO_REUSEPORT`, one per worker.
/// A probe bound first without `SO_REUSEPORT` makes a port held by anything
/// else (another gateway with `reuseport` included) an error instead of a
/// silent share.
fn bind_set(addr: SocketAddr, n: usize) -> Result<Vec<std::net::TcpListener>, StartError> {
    let probe = socket(addr, false, false)?;
    let actual = probe.local_addr().unwrap_or(addr);
    drop(probe);
    (0..n.max(1))
        .map(|_| socket(actual, true, true))
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| match e {
            StartError::Bind { source, hint, .. } => StartError::Bind { addr, source, hint },
            e => e,
        })
}

fn socket(
    addr: SocketAddr,
    reuseport: bool,
    listen: bool,
) -> Result<std::net::TcpListener, StartError> {
    let map = |source: std::io::Error| {
        let hint = match source.kind() {
            std::io::ErrorKind::AddrInUse => {
                " (another process uses this port: stop it or change `address`)"
            }
            std::io::ErrorKind::PermissionDenied => {
                " (ports below 1024 need root or CAP_NET_BIND_SERVICE)"
            }
            std::io::ErrorKind::AddrNotAvailable => " (this machine has no such address)",
            _ => "",
        };
        StartError::Bind { addr, source, hint }
    };
    let socket = socket2::Socket::new(
        socket2::Domain::for_address(addr),
        socket2::Type::STREAM,
        Some(socket2::Protocol::TCP),
    )
    .map_err(map)?;
    socket.set_reuse_address(true).map_err(map)?;
    if reuseport {
        socket.set_reuse_port(true).map_err(map)?;
    }
    if addr.is_ipv6() {
        let _ = socket.set_only_v6(true);
    }
    socket.set_nonblocking(true).map_err(map)?;
    socket.bind(&addr.into()).map_err(map)?;
    if listen {
        socket.listen(4096).map_err(map)?;
    }
    Ok(socket.into())
}

impl Gateway {
    /// Builds the runtime, starts the workers and binds every listener.
    /// Must run inside a tokio runtime (the control runtime).
    pub fn bind(config: Arc<Config>) -> Result<Gateway, StartError> {
        let n_workers = crate::workers::count(config.server.worker_threads);
        let ticketer =
            crate::tls::new_ticketer().map_err(|e| BuildError::Tls("session tickets".into(), e))?;
        let fetcher = Arc::new(crate::mtls::fetch::RevocationFetcher::default());
        let runtime = Runtime::build(&config, n_workers, Some(ticketer.clone()), &fetcher, None)?;
        let mut addrs = BoundAddrs::default();
        let mut listeners = Vec::new();
        for l in &config.listeners {
            let set = bind_set(l.addr, n_workers)?;
            addrs.listeners.push(set[0].local_addr().unwrap_or(l.addr));
            listeners.push(set);
        }
        let mut redirects = Vec::new();
        for r in &config.redirects {
            let tl = bind_std(r.addr)?;
            addrs.redirects.push(tl.local_addr().unwrap_or(r.addr));
            redirects.push((tl, r.clone()));
        }
        let mut echo = Vec::new();
        for e in &config.echo {
            let tl = bind_std(*e)?;
            addrs.echo.push(tl.local_addr().unwrap_or(*e));
            echo.push(tl);
        }
        let admin = match &config.admin {
            Some(a) => {
                let tl = bind_std(a.addr)?;
                addrs.admin = Some(tl.local_addr().unwrap_or(a.addr));
                Some(tl)
            }
            None => None,
        };
        runtime.metrics.set_config_hash(&config.source_sha256);
        let workers = crate::workers::Workers::start(n_workers).map_err(StartError::Threads)?;
        Ok(Gateway {
            workers,
            runtime: Arc::new(ArcSwap::from_pointee(runtime)),
            ticketer,
            listen_addrs: config.listeners.iter().map(|l| l.addr).collect(),
            registry: Arc::new(ConnRegistry::default()),
            fetcher,
            config: Arc::new(ArcSwap::new(config.clone())),
            max_connections: config
                .listeners
                .iter()
                .map(|l| l.limits.max_connections)
                .collect(),
            conn_limits: config
                .listeners
                .iter()
                .map(|l| Arc::new(crate::connlimit::ConnLimits::new(&l.limits)))
                .collect(),
            handshake_timeouts: config
                .listeners
                .iter()
                .map(|l| l.limits.handshake_timeout)
                .collect(),
            listeners,
            redirects,
            echo,
            shutdown_timeout: config.server.shutdown_timeout,
            addrs,
            admin,
            watch_config: true,
            last_error: Arc::default(),
            slots: Arc::default(),
        })
    }

    /// The access log, for reopening on SIGUSR1.
    pub fn access_log(&self) -> crate::accesslog::AccessLog {
        self.runtime.load().access_log.clone()
    }

    /// A handle that swaps in a new runtime built from a new config.
    pub fn reloader(&self) -> Reloader {
        Reloader {
            runtime: self.runtime.clone(),
            ticketer: self.ticketer.clone(),
            listen_addrs: self.listen_addrs.clone(),
            slots: self.slots.clone(),
            workers: self.workers.handles().to_vec(),
            registry: self.registry.clone(),
            fetcher: self.fetcher.clone(),
            config: self.config.clone(),
            last_error: self.last_error.clone(),
        }
    }

    pub fn addrs(&self) -> &BoundAddrs {
        &self.addrs
    }

    /// Serves until `shutdown` completes, then drains: stops accepting, waits
    /// up to the shutdown timeout for open requests, flushes the access log.
    pub async fn serve(self, shutdown: impl Future<Output = ()>) {
        let (stop_tx, stop_rx) = watch::channel(false);
        let reloader = self.reloader();
        let conn_ids = Arc::new(AtomicU64::new(0));
        let mut tasks = Vec::new();
        let mut limits = Vec::new();
        for (i, set) in self.listeners.into_iter().enumerate() {
            let limit = Arc::new(Semaphore::new(self.max_connections[i]));
            limits.push((limit.clone(), self.max_connections[i] as u32));
            let ctx = AcceptCtx {
                runtime: self.runtime.clone(),
                listener: i,
                limit,
                max_connections: self.max_connections[i],
                conn_limits: self.conn_limits[i].clone(),
                handshake_timeout: self.handshake_timeouts[i],
                stop: stop_rx.clone(),
                registry: self.registry.clone(),
                fetcher: self.fetcher.clone(),
                conn_ids: conn_ids.clone(),
            };
            let (one_tx, one_rx) = watch::channel(false);
            if let Ok(mut slots) = self.slots.lock() {
                slots.push(AcceptSlot {
                    addr: self.listen_addrs[i],
                    stop: one_tx,
                    ctx: ctx.clone(),
                });
            }
            for (sock, worker) in set.into_iter().zip(self.workers.handles()) {
                tasks.push(worker.spawn(accept_on_worker(sock, ctx.clone(), one_rx.clone())));
            }
        }
        for (l, r) in self.redirects {
            let headers = self.runtime.load().default_headers.clone();
            tasks.push(tokio::spawn(crate::redirect::serve(
                l,
                r,
                headers,
                stop_rx.clone(),
            )));
        }
        for l in self.echo {
            tasks.push(tokio::spawn(crate::echo::serve(l, stop_rx.clone())));
        }
        let refresher = reloader.clone();
        let on_fetch = move || {
            if let Err(e) = refresher.refresh() {
                tracing::error!("fetched revocation data could not be applied: {e}");
            }
        };
        tasks.push(tokio::spawn(
            self.fetcher.clone().run(on_fetch, stop_rx.clone()),
        ));
        if self.watch_config {
            tasks.push(tokio::spawn(watch_config(
                reloader.clone(),
                stop_rx.clone(),
            )));
        }
        if let Some(l) = self.admin {
            let state = crate::admin::AdminState {
                runtime: self.runtime.clone(),
                config: self.config.clone(),
                reloader: reloader.clone(),
            };
            let cfg = self.config.load_full();
            let stop = stop_rx.clone();
            tasks.push(tokio::spawn(async move {
                if let Some(ac) = &cfg.admin {
                    crate::admin::serve(l, ac, state, stop).await
                }
            }));
        }
        tasks.push(tokio::spawn(watch_crls(reloader, stop_rx.clone())));
        tracing::info!(listeners = ?self.addrs.listeners, redirects = ?self.addrs.redirects, "portcullis is serving");
        shutdown.await;
        tracing::info!(
            "shutting down: no new connections; waiting up to {:?} for open requests",
            self.shutdown_timeout
        );
        let _ = stop_tx.send(true);
        for t in tasks {
            let _ = t.await;
        }
        let drained = async {
            for (sem, n) in limits {
                let _ = sem.acquire_many(n).await;
            }
        };
        match tokio::time::timeout(self.shutdown_timeout, drained).await {
            Ok(()) => tracing::info!("all connections closed"),
            Err(_) => tracing::warn!("shutdown deadline passed: closing remaining connections"),
        }
        self.runtime.load().access_log.flush_blocking();
        self.runtime.load().audit.flush_blocking();
        self.workers.stop().await;
    }
}

/// Registers a worker's socket with the worker's own runtime, then accepts.
async fn accept_on_worker(
    sock: std::net::TcpListener,
    ctx: AcceptCtx,
    stop: watch::Receiver<bool>,
) {
    match TcpListener::from_std(sock) {
        Ok(l) => accept_loop(l, ctx, stop).await,
        Err(e) => tracing::error!(error = %e, "a worker could not use its listening socket"),
    }
}

#[derive(Clone)]
struct AcceptCtx {
    runtime: Arc<ArcSwap<Runtime>>,
    listener: usize,
    limit: Arc<Semaphore>,
    conn_limits: Arc<crate::connlimit::ConnLimits>,
    max_connections: usize,
    handshake_timeout: Duration,
    stop: watch::Receiver<bool>,
    conn_ids: Arc<AtomicU64>,
    registry: Arc<ConnRegistry>,
    fetcher: Arc<crate::mtls::fetch::RevocationFetcher>,
}

/// A serving listener: its configured address, the switch that stops its
/// accept loop alone (a reload that moves it), and what a replacement needs.
struct AcceptSlot {
    addr: SocketAddr,
    stop: watch::Sender<bool>,
    ctx: AcceptCtx,
}

type AcceptSlots = Arc<std::sync::Mutex<Vec<AcceptSlot>>>;

async fn accept_loop(listener: TcpListener, ctx: AcceptCtx, mut stop: watch::Receiver<bool>) {
    let mut cap_logged = false;
    let mut global = ctx.stop.clone();
    loop {
        let (tcp, peer) = tokio::select! {
            r = listener.accept() => match r {
                Ok(v) => v,
                Err(e) => {
                    // EMFILE and friends: back off briefly instead of spinning.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            _ = stop.changed() => break,
            _ = global.changed() => break,
        };
        let permit = match ctx.limit.clone().try_acquire_owned() {
            Ok(p) => {
                cap_logged = false;
                p
            }
            Err(_) => {
                if !cap_logged {
                    tracing::warn!(limit = ctx.max_connections, %peer, "connection limit reached: refusing new connections until some close (raise limits.max_connections if this is normal load)");
                    cap_logged = true;
                }
                drop(tcp);
                continue;
            }
        };
        // Per-IP rate of new connections and concurrent connections, before the handshake.
        let ip_slot = match ctx.conn_limits.admit(peer.ip()) {
            Ok(slot) => slot,
            Err(_) => {
                drop(tcp);
                continue;
            }
        };
        let conn_limits = ctx.conn_limits.clone();
        let rt = ctx.runtime.load_full();
        let current = ctx.runtime.clone();
        let id = ctx.conn_ids.fetch_add(1, Ordering::Relaxed) + 1;
        let stop = ctx.stop.clone();
        let registry = ctx.registry.clone();
        let fetcher = ctx.fetcher.clone();
        let listener_idx = ctx.listener;
        let hs_timeout = ctx.handshake_timeout;
        tokio::spawn(async move {
            let _permit = permit;
            let _ip_slot = ip_slot;
            serve_tls(
                rt,
                registry,
                tcp,
                ConnStart {
                    current,
                    fetcher,
                    conn_limits,
                    peer,
                    listener: listener_idx,
                    id,
                    hs_timeout,
                },
                stop,
            )
            .await;
        });
    }
}

/// The CA certificate (DER) whose subject is `issuer_name` (raw DER name).
fn find_issuer(
    cas: &[rustls_pki_types::CertificateDer<'static>],
    issuer_name: &[u8],
) -> Option<Vec<u8>> {
    use x509_parser::prelude::*;
    cas.iter()
        .find(|c| {
            X509Certificate::from_der(c.as_ref())
                .is_ok_and(|(_, x)| x.subject().as_raw() == issuer_name)
        })
        .map(|c| c.as_ref().to_vec())
}

/// Where a new connection came from.
struct ConnStart {
    /// The live runtime (requests load it; the handshake uses the one at accept).
    current: Arc<ArcSwap<Runtime>>,
    fetcher: Arc<crate::mtls::fetch::RevocationFetcher>,
    conn_limits: Arc<crate::connlimit::ConnLimits>,
    peer: SocketAddr,
    listener: usize,
    id: u64,
    hs_timeout: Duration,
}

async fn serve_tls(
    rt: Arc<Runtime>,
    registry: Arc<ConnRegistry>,
    tcp: TcpStream,
    start: ConnStart,
    mut stop: watch::Receiver<bool>,
) {
    let ConnStart {
        current,
        fetcher: registry_fetcher,
        conn_limits,
        peer,
        listener,
        id,
        hs_timeout,
    } = start;
    let _ = tcp.set_nodelay(true);
    let local = tcp.local_addr().unwrap_or(peer);
    let lr = &rt.listeners[listener];
    let hs_start = std::time::Instant::now();
    let hs_failed = |reason: &'static str| {
        rt.metrics
            .handshake_failures
            .get_or_create(&crate::metrics::FailureLabels {
                listener: lr.name.clone(),
                reason,
            })
            .inc();
    };
    // Read the ClientHello first so a failed handshake can be logged with its SNI.
    let mut sni_seen: Option<String> = None;
    let handshake = async {
        let start =
            tokio_rustls::LazyConfigAcceptor::new(rustls::server::Acceptor::default(), tcp).await?;
        sni_seen = start.client_hello().server_name().map(str::to_owned);
        let config = lr.tls.for_hello(&start.client_hello());
        start.into_stream(config).await
    };
    let tls = match tokio::time::timeout(hs_timeout, handshake).await {
        Ok(Ok(s)) => s,
        Ok(Err(e)) => {
            let reason = crate::mtls::failure_reason(&e);
            hs_failed(reason);
            if matches!(reason, "client_closed" | "io") {
                tracing::debug!(%peer, listener = %lr.name, sni = sni_seen.as_deref().unwrap_or("-"), reason, "TLS handshake aborted");
            } else {
                tracing::info!(%peer, listener = %lr.name, sni = sni_seen.as_deref().unwrap_or("-"), reason, error = %e, "TLS handshake failed");
            }
            return;
        }
        Err(_) => {
            hs_failed("timeout");
            tracing::info!(%peer, listener = %lr.name, sni = sni_seen.as_deref().unwrap_or("-"), reason = "timeout", "TLS handshake timed out");
            return;
        }
    };
    let (_, sc) = tls.get_ref();
    {
        let m = &rt.metrics;
        let l = crate::metrics::ListenerLabel {
            listener: lr.name.clone(),
        };
        m.handshake_duration
            .get_or_create(&l)
            .observe(hs_start.elapsed().as_secs_f64());
        m.handshakes
            .get_or_create(&crate::metrics::HandshakeLabels {
                listener: lr.name.clone(),
                version: sc
                    .protocol_version()
                    .map(crate::tls::protocol_name)
                    .unwrap_or("-"),
                cipher: sc
                    .negotiated_cipher_suite()
                    .map(crate::tls::cipher_name)
                    .unwrap_or("-"),
            })
            .inc();
    }
    let _open = crate::metrics::GaugeGuard::new(&rt.metrics.connections.get_or_create(
        &crate::metrics::ListenerLabel {
            listener: lr.name.clone(),
        },
    ));
    let identity = sc.peer_certificates().and_then(|chain| match ClientIdentity::from_chain(chain) {
        Ok(id) => Some(Arc::new(id)),
        Err(e) => {
            tracing::warn!(%peer, error = %e, "verified client certificate could not be parsed");
            None
        }
    });
    if let Some(idn) = &identity {
        if lr.crl_fetch {
            registry_fetcher.want_crls(&crate::mtls::ocsp::crl_urls(&idn.leaf_der));
        }
        if lr.ocsp != crate::mtls::fetch::OcspMode::Off {
            let issuer = idn
                .chain_der
                .first()
                .cloned()
                .or_else(|| find_issuer(&lr.client_ca, &idn.issuer_der));
            if let Err(reason) = registry_fetcher
                .check_client_ocsp(
                    &idn.fingerprint_sha256,
                    &idn.leaf_der,
                    issuer.as_deref(),
                    lr.ocsp,
                )
                .await
            {
                hs_failed(if reason.to_string().contains("revoked") {
                    "revoked"
                } else {
                    "ocsp_failure"
                });
                tracing::info!(%peer, listener = %lr.name, subject = %idn.subject_dn, %reason, "client certificate refused by OCSP: connection closed");
                return;
            }
        }
    }
    // Concurrent connections per client certificate (limit_conn on the identity).
    let _cert_slot = match (&identity, &conn_limits.per_cert) {
        (Some(idn), Some(limit)) => {
            match limit.acquire(format!("{}|{}", idn.issuer_dn, idn.subject_dn)) {
                Some(slot) => Some(slot),
                None => {
                    tracing::warn!(%peer, subject = %idn.subject_dn, "concurrent connections per client certificate exceeded: connection closed");
                    return;
                }
            }
        }
        _ => None,
    };
    // Register authenticated connections so a revocation can close them at once.
    let (_registration, kill) = match &identity {
        Some(idn) => {
            if lr.revoked.revokes(idn) {
                hs_failed("revoked");
                tracing::info!(%peer, listener = %lr.name, subject = %idn.subject_dn, reason = "revoked", "client certificate revoked since the handshake began: connection closed");
                return;
            }
            let (r, k) = registry.register(id, listener, idn.clone());
            (Some(r), Some(k))
        }
        None => (None, None),
    };
    let is_h2 = sc.alpn_protocol() == Some(b"h2");
    let ambiguous = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let max_head = lr.limits.max_header_size;
    let info = Arc::new(ConnInfo {
        first_head_ambiguous: ambiguous.clone(),
        id,
        peer,
        peer_ip: crate::forward::ip_value(peer.ip()),
        local,
        listener,
        sni: sc.server_name().map(|s| s.to_ascii_lowercase()),
        tls_version: sc
            .protocol_version()
            .map(crate::tls::protocol_name)
            .unwrap_or("-"),
        cipher: sc
            .negotiated_cipher_suite()
            .map(crate::tls::cipher_name)
            .unwrap_or("-"),
        session_reused: matches!(sc.handshake_kind(), Some(rustls::HandshakeKind::Resumed)),
        requests: AtomicU64::new(0),
        identity,
        kill: kill.clone(),
        route_ca: std::sync::Mutex::new(Vec::new()),
    });
    let guarded = crate::sniff::Guard::new(
        tls,
        is_h2,
        max_head,
        ambiguous,
        Some(rt.error_head_lines.clone()),
    )
    .with_head_timeout(lr.limits.header_timeout);
    // Every request reads the runtime current when it arrives, so a reload
    // applies to open keep-alive and HTTP/2 connections too (routes, upstreams,
    // auth, limits), not only to connections accepted after it.
    // Boxed: the request future is a few KB, and hyper moves what the service returns.
    let service =
        service_fn(move |req| Box::pin(stack::handle(current.load_full(), info.clone(), req)));
    let conn = lr
        .http
        .serve_connection_with_upgrades(TokioIo::new(guarded), service)
        .into_owned();
    // Requests load the current runtime: holding the accept-time one for the
    // connection's lifetime would keep a replaced runtime (its upstream pools
    // and health checks) alive after a reload.
    drop(rt);
    let mut conn = Box::pin(conn);
    let mut kill = kill;
    let revoked = async move { crate::mtls::revoked(&mut kill).await };
    let res = tokio::select! {
        r = conn.as_mut() => r,
        _ = revoked => {
            // The client's certificate was revoked: drop the connection now, mid-request or not.
            tracing::info!(%peer, conn = id, "connection closed: client certificate revoked");
            return;
        }
        _ = stop.changed() => {
            // Finish the request in flight, then close (GOAWAY on HTTP/2).
            conn.as_mut().graceful_shutdown();
            conn.as_mut().await
        }
    };
    if let Err(e) = res {
        tracing::debug!(%peer, error = %e, "connection ended with an error");
    }
    // An upgraded tunnel (WebSocket) outlives the HTTP connection and holds a
    // receiver of the kill switch: stay registered until it ends, so that a
    // revocation still reaches it (a shutdown stops waiting, as before).
    drop(conn);
    if let Some(r) = &_registration {
        tokio::select! {
            _ = r.until_unused() => {}
            _ = stop.wait_for(|s| *s) => {}
        }
    }
}

/// Applies a new config to a running gateway: builds a whole new runtime
/// (certificates, routes, upstreams, log) and swaps it in one step. New
/// connections use it, and so does the next request on an open connection;
/// in-flight requests finish on the snapshot they started with.
/// Session-ticket keys are kept, so resumption survives the reload.
#[derive(Clone)]
pub struct Reloader {
    runtime: Arc<ArcSwap<Runtime>>,
    ticketer: Arc<dyn rustls::server::ProducesTickets>,
    listen_addrs: Vec<SocketAddr>,
    slots: AcceptSlots,
    /// The worker runtimes (a moved listener gets a socket on each).
    workers: Vec<tokio::runtime::Handle>,
    registry: Arc<ConnRegistry>,
    fetcher: Arc<crate::mtls::fetch::RevocationFetcher>,
    config: Arc<ArcSwap<Config>>,
    /// Why the last load of the config file failed (cleared by a good one).
    last_error: Arc<std::sync::Mutex<Option<String>>>,
}

impl Reloader {
    /// Re-reads the config file and applies it (SIGHUP, a file change, the
    /// admin API). A broken file is refused: its errors are logged, counted,
    /// audited and kept for /readyz; the running configuration stays.
    pub fn reload_file(&self, trigger: &str) -> Result<(), String> {
        let path = self.config.load().source.clone();
        let result = match crate::config::load(&path) {
            Ok((cfg, diags)) => {
                for w in diags.warnings() {
                    tracing::warn!("{w}");
                }
                let hash = cfg.source_sha256.clone();
                self.apply(Arc::new(cfg)).map(|()| hash).map_err(|e| {
                    (
                        e,
                        "the new configuration could not be applied (see the event log)"
                            .to_string(),
                    )
                })
            }
            Err(diags) => {
                for d in diags.errors() {
                    tracing::error!("{d}");
                }
                let first = diags.errors().next();
                // The audit record names the place, never the message: a
                // message may quote the refused value (a URL with a password).
                let place = first.map_or_else(String::new, |d| {
                    format!("; first at {}:{} `{}`", d.file.display(), d.line, d.field)
                });
                Err((
                    first
                        .map(|d| d.to_string())
                        .unwrap_or_else(|| "the configuration has errors".into()),
                    format!("{} error(s){place}", diags.errors().count()),
                ))
            }
        };
        let rt = self.runtime.load();
        match result {
            Ok(hash) => {
                rt.metrics.reload(true);
                rt.metrics.set_config_hash(&hash);
                rt.audit.reload(trigger, &path, Ok(()));
                if let Ok(mut e) = self.last_error.lock() {
                    *e = None;
                }
                tracing::info!(config = %path.display(), trigger, "configuration reloaded");
                Ok(())
            }
            Err((e, audit_reason)) => {
                rt.metrics.reload(false);
                rt.audit.reload(trigger, &path, Err(&audit_reason));
                if let Ok(mut le) = self.last_error.lock() {
                    *le = Some(e.clone());
                }
                tracing::error!(config = %path.display(), trigger, "reload refused, the running configuration stays: {e}");
                Err(e)
            }
        }
    }

    /// Why the last load of the config file failed, if it did.
    pub fn last_error(&self) -> Option<String> {
        self.last_error.lock().ok().and_then(|e| e.clone())
    }

    /// The config file and every file it names, with modification stamps
    /// (CRLs excepted: `watch_crls` applies those without re-reading the config).
    fn file_stamps(&self) -> Vec<(std::path::PathBuf, Option<(std::time::SystemTime, u64)>)> {
        let cfg = self.config.load();
        std::iter::once(&cfg.source)
            .chain(cfg.files.iter())
            .map(|p| (p.clone(), stamp(p)))
            .collect()
    }

    /// Swaps in `config`; on error the running runtime stays.
    /// A listener whose address changed is bound at the new address before
    /// the old one stops accepting (connections already open carry on).
    pub fn apply(&self, config: Arc<Config>) -> Result<(), String> {
        let addrs: Vec<SocketAddr> = config.listeners.iter().map(|l| l.addr).collect();
        let current: Vec<SocketAddr> = match self.slots.lock() {
            Ok(s) if !s.is_empty() => s.iter().map(|s| s.addr).collect(),
            _ => self.listen_addrs.clone(),
        };
        if addrs.len() != current.len() {
            return Err(format!(
                "the config has {} listener(s), the running gateway {}: adding or removing a listener needs a restart (a reload can move one to a new address)",
                addrs.len(),
                current.len()
            ));
        }
        let mut moved = Vec::new();
        for (i, (new, old)) in addrs.iter().zip(&current).enumerate() {
            if new != old {
                let l = bind_set(*new, self.workers.len()).map_err(|e| e.to_string())?;
                moved.push((i, *old, *new, l));
            }
        }
        self.swap(&config)?;
        self.config.store(config);
        if let Ok(mut slots) = self.slots.lock() {
            for (i, old, new, set) in moved {
                let Some(slot) = slots.get_mut(i) else {
                    continue;
                };
                let (tx, rx) = watch::channel(false);
                for (sock, worker) in set.into_iter().zip(&self.workers) {
                    worker.spawn(accept_on_worker(sock, slot.ctx.clone(), rx.clone()));
                }
                let _ = slot.stop.send(true);
                slot.stop = tx;
                slot.addr = new;
                tracing::info!(%old, %new, "listener moved: the new address accepts, the old one is closed; open connections carry on");
            }
        }
        Ok(())
    }

    /// The access log of the runtime in force (for SIGUSR1).
    pub fn access_log(&self) -> crate::accesslog::AccessLog {
        self.runtime.load().access_log.clone()
    }

    /// The audit log of the runtime in force (reloads and admin actions are recorded there).
    pub fn audit(&self) -> crate::audit::AuditLog {
        self.runtime.load().audit.clone()
    }

    /// Rebuilds the runtime from the current config, re-reading the files it
    /// names (CRLs, certificates); used when a CRL file changes.
    pub fn refresh(&self) -> Result<(), String> {
        let cfg = self.config.load_full();
        self.swap(&cfg)
    }

    fn swap(&self, config: &Config) -> Result<(), String> {
        let current = self.runtime.load_full();
        let rt = Runtime::build(
            config,
            self.workers.len(),
            Some(self.ticketer.clone()),
            &self.fetcher,
            Some(&current),
        )
        .map_err(|e| e.to_string())?;
        let sets: Vec<&crate::mtls::RevokedSet> = rt.listeners.iter().map(|l| &l.revoked).collect();
        let closed = self.registry.close_revoked(&sets);
        rt.metrics.revoked_closed.inc_by(closed as u64);
        let old = self.runtime.swap(Arc::new(rt));
        if closed > 0 {
            tracing::warn!(
                closed,
                "closed live connections whose client certificate is now revoked"
            );
        }
        old.access_log.flush_blocking();
        Ok(())
    }

    /// The CRL files of the current config with their modification stamps.
    fn crl_stamps(&self) -> Vec<(std::path::PathBuf, Option<(std::time::SystemTime, u64)>)> {
        let cfg = self.config.load();
        cfg.listeners
            .iter()
            .flat_map(|l| l.crl_paths.iter())
            .map(|p| (p.clone(), stamp(p)))
            .collect()
    }
}

fn stamp(p: &std::path::Path) -> Option<(std::time::SystemTime, u64)> {
    std::fs::metadata(p)
        .ok()
        .and_then(|m| Some((m.modified().ok()?, m.len())))
}

/// Polls the config file and the files it names every 500 ms; a change
/// reloads the config (a certificate swapped on disk is served to the next
/// handshake). A change is applied once the file has stopped changing for
/// one poll, so a half-written file is not read; a broken one is refused.
async fn watch_config(reloader: Reloader, mut stop: watch::Receiver<bool>) {
    let mut applied = reloader.file_stamps();
    let mut seen = applied.clone();
    let mut tick = tokio::time::interval(Duration::from_millis(500));
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = stop.changed() => return,
        }
        let now = reloader.file_stamps();
        if now != seen {
            // Still changing: wait for it to settle.
            seen = now;
            continue;
        }
        if now != applied {
            let _ = reloader.reload_file("file change");
            // Whatever the outcome, don't retry the same stamps; the set of
            // files may have changed with the config.
            applied = reloader.file_stamps();
            seen = applied.clone();
        }
    }
}

/// Polls the CRL files every 250 ms; a change rebuilds the runtime (new
/// handshakes see the new CRL) and closes live connections it revokes.
async fn watch_crls(reloader: Reloader, mut stop: watch::Receiver<bool>) {
    let mut last = reloader.crl_stamps();
    if last.is_empty() {
        // Nothing to watch until a reload adds CRLs; check rarely.
    }
    let mut tick = tokio::time::interval(Duration::from_millis(250));
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = stop.changed() => return,
        }
        let now = reloader.crl_stamps();
        if now != last {
            match reloader.refresh() {
                Ok(()) => tracing::info!("CRL changed on disk: revocations applied"),
                Err(e) => tracing::error!(
                    "CRL changed on disk but could not be loaded; the previous one stays: {e}"
                ),
            }
            last = now;
        }
    }
}
