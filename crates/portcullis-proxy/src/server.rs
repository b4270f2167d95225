//! Listeners: binding, accepting, TLS handshakes, connection lifetime, and
//! graceful shutdown.
//!
//! Owns the sockets. `Gateway::bind` builds the runtime and binds every
//! address before anything is served (so a busy port is an error at start,
//! not a half-running gateway); `Gateway::serve` accepts until the shutdown
//! signal, then stops accepting and lets in-flight requests finish within the
//! deadline. Request handling itself is `stack.rs`.

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
use tokio_rustls::TlsAcceptor;

use crate::config::{Config, RedirectConfig};
use crate::runtime::{BuildError, Runtime};
use crate::stack::{self, ConnInfo};

/// Why the gateway could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error(transparent)]
    Build(#[from] BuildError),
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
}

/// A bound, not yet serving gateway.
pub struct Gateway {
    runtime: Arc<ArcSwap<Runtime>>,
    ticketer: Arc<dyn rustls::server::ProducesTickets>,
    listen_addrs: Vec<SocketAddr>,
    listeners: Vec<TcpListener>,
    max_connections: Vec<usize>,
    handshake_timeouts: Vec<Duration>,
    redirects: Vec<(TcpListener, RedirectConfig)>,
    echo: Vec<TcpListener>,
    shutdown_timeout: Duration,
    addrs: BoundAddrs,
}

fn bind_std(addr: SocketAddr) -> Result<TcpListener, StartError> {
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
    if addr.is_ipv6() {
        let _ = socket.set_only_v6(true);
    }
    socket.set_nonblocking(true).map_err(map)?;
    socket.bind(&addr.into()).map_err(map)?;
    socket.listen(4096).map_err(map)?;
    TcpListener::from_std(socket.into()).map_err(map)
}

impl Gateway {
    /// Builds the runtime and binds every listener. Must run inside a tokio runtime.
    pub fn bind(config: &Config) -> Result<Gateway, StartError> {
        let ticketer =
            crate::tls::new_ticketer().map_err(|e| BuildError::Tls("session tickets".into(), e))?;
        let runtime = Runtime::build(config, Some(ticketer.clone()))?;
        let mut addrs = BoundAddrs::default();
        let mut listeners = Vec::new();
        for l in &config.listeners {
            let tl = bind_std(l.addr)?;
            addrs.listeners.push(tl.local_addr().unwrap_or(l.addr));
            listeners.push(tl);
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
        Ok(Gateway {
            runtime: Arc::new(ArcSwap::from_pointee(runtime)),
            ticketer,
            listen_addrs: config.listeners.iter().map(|l| l.addr).collect(),
            max_connections: config
                .listeners
                .iter()
                .map(|l| l.limits.max_connections)
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
        }
    }

    pub fn addrs(&self) -> &BoundAddrs {
        &self.addrs
    }

    /// Serves until `shutdown` completes, then drains: stops accepting, waits
    /// up to the shutdown timeout for open requests, flushes the access log.
    pub async fn serve(self, shutdown: impl Future<Output = ()>) {
        let (stop_tx, stop_rx) = watch::channel(false);
        let conn_ids = Arc::new(AtomicU64::new(0));
        let mut tasks = Vec::new();
        let mut limits = Vec::new();
        for (i, l) in self.listeners.into_iter().enumerate() {
            let limit = Arc::new(Semaphore::new(self.max_connections[i]));
            limits.push((limit.clone(), self.max_connections[i] as u32));
            let ctx = AcceptCtx {
                runtime: self.runtime.clone(),
                listener: i,
                limit,
                max_connections: self.max_connections[i],
                handshake_timeout: self.handshake_timeouts[i],
                stop: stop_rx.clone(),
                conn_ids: conn_ids.clone(),
            };
            tasks.push(tokio::spawn(accept_loop(l, ctx, stop_rx.clone())));
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
    }
}

struct AcceptCtx {
    runtime: Arc<ArcSwap<Runtime>>,
    listener: usize,
    limit: Arc<Semaphore>,
    max_connections: usize,
    handshake_timeout: Duration,
    stop: watch::Receiver<bool>,
    conn_ids: Arc<AtomicU64>,
}

async fn accept_loop(listener: TcpListener, ctx: AcceptCtx, mut stop: watch::Receiver<bool>) {
    let mut cap_logged = false;
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
        let rt = ctx.runtime.load_full();
        let id = ctx.conn_ids.fetch_add(1, Ordering::Relaxed) + 1;
        let stop = ctx.stop.clone();
        let listener_idx = ctx.listener;
        let hs_timeout = ctx.handshake_timeout;
        tokio::spawn(async move {
            let _permit = permit;
            serve_tls(rt, tcp, peer, listener_idx, id, hs_timeout, stop).await;
        });
    }
}

async fn serve_tls(
    rt: Arc<Runtime>,
    tcp: TcpStream,
    peer: SocketAddr,
    listener: usize,
    id: u64,
    hs_timeout: Duration,
    mut stop: watch::Receiver<bool>,
) {
    let _ = tcp.set_nodelay(true);
    let local = tcp.local_addr().unwrap_or(peer);
    let lr = &rt.listeners[listener];
    let acceptor = TlsAcceptor::from(lr.tls.clone());
    let tls = match tokio::time::timeout(hs_timeout, acceptor.accept(tcp)).await {
        Ok(Ok(s)) => s,
        Ok(Err(e)) => {
            tracing::debug!(%peer, listener = %lr.name, error = %e, "TLS handshake failed");
            return;
        }
        Err(_) => {
            tracing::debug!(%peer, listener = %lr.name, "TLS handshake timed out");
            return;
        }
    };
    let (_, sc) = tls.get_ref();
    let info = Arc::new(ConnInfo {
        id,
        peer,
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
    });
    let rt2 = rt.clone();
    let service = service_fn(move |req| stack::handle(rt2.clone(), info.clone(), req));
    let conn = lr
        .http
        .serve_connection_with_upgrades(TokioIo::new(tls), service)
        .into_owned();
    tokio::pin!(conn);
    let res = tokio::select! {
        r = conn.as_mut() => r,
        _ = stop.changed() => {
            // Finish the request in flight, then close (GOAWAY on HTTP/2).
            conn.as_mut().graceful_shutdown();
            conn.await
        }
    };
    if let Err(e) = res {
        tracing::debug!(%peer, error = %e, "connection ended with an error");
    }
}

/// Applies a new config to a running gateway: builds a whole new runtime
/// (certificates, routes, upstreams, log) and swaps it in one step. New
/// connections use it; open ones finish on the snapshot they started with.
/// Session-ticket keys are kept, so resumption survives the reload.
#[derive(Clone)]
pub struct Reloader {
    runtime: Arc<ArcSwap<Runtime>>,
    ticketer: Arc<dyn rustls::server::ProducesTickets>,
    listen_addrs: Vec<SocketAddr>,
}

impl Reloader {
    /// Swaps in `config`; on error the running runtime stays.
    pub fn apply(&self, config: &Config) -> Result<(), String> {
        let addrs: Vec<SocketAddr> = config.listeners.iter().map(|l| l.addr).collect();
        if addrs != self.listen_addrs {
            return Err(
                "listener addresses changed: a reload cannot move listeners yet; restart to apply"
                    .into(),
            );
        }
        let rt = Runtime::build(config, Some(self.ticketer.clone())).map_err(|e| e.to_string())?;
        let old = self.runtime.swap(Arc::new(rt));
        old.access_log.flush_blocking();
        Ok(())
    }
}
