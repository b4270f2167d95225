//! Per-worker HTTP/1.1 connections to plain-HTTP upstream servers.
//!
//! Owns the keep-alive pool used for ordinary requests to `http://` servers:
//! one list of `hyper::client::conn::http1` senders per worker thread and
//! server, nginx's `keepalive` per worker process. A request takes a ready
//! connection (or opens one), sends in origin form, and the connection goes
//! back to the list as soon as the response head arrives; it is taken again
//! only once hyper reports it ready, that is once that response's body is done.
//!
//! Why not hyper-util's legacy pooled client here: it keys its pool by scheme
//! and authority, rebuilds the URI, and hands each request to the connection
//! through a checkout future and an extra envelope: about 5 % of the gateway's
//! CPU per keep-alive request in the profile (BENCHMARKS.md). HTTPS upstreams,
//! upgrades (WebSocket) and health checks still use the legacy client.

use std::sync::Mutex;
use std::time::{Duration, Instant};

use http::{Request, Response};
use hyper::body::Incoming;
use hyper::client::conn::http1::{self, SendRequest};
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;

use crate::body::RequestBody;

struct Idle {
    tx: SendRequest<RequestBody>,
    since: Instant,
}

/// The connections of one upstream group: `slots[worker * servers + server]`.
pub struct DirectPool {
    slots: Vec<Mutex<Vec<Idle>>>,
    servers: usize,
    max_idle: usize,
    idle_timeout: Duration,
    connect_timeout: Duration,
}

impl std::fmt::Debug for DirectPool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DirectPool")
            .field("servers", &self.servers)
            .field("max_idle", &self.max_idle)
            .finish_non_exhaustive()
    }
}

/// Why a request could not be sent on a direct connection.
#[derive(Debug, thiserror::Error)]
pub enum DirectError {
    #[error("connect: {0}")]
    Connect(#[source] std::io::Error),
    #[error("connect timed out after {0:?}")]
    ConnectTimeout(Duration),
    #[error("handshake: {0}")]
    Handshake(#[source] hyper::Error),
    #[error(transparent)]
    Http(hyper::Error),
}

impl DirectError {
    /// Nothing reached the server: the request may go to another one.
    pub fn is_connect(&self) -> bool {
        matches!(
            self,
            DirectError::Connect(_) | DirectError::ConnectTimeout(_)
        )
    }
}

impl DirectPool {
    pub fn new(
        workers: usize,
        servers: usize,
        max_idle: usize,
        idle_timeout: Duration,
        connect_timeout: Duration,
    ) -> DirectPool {
        DirectPool {
            slots: (0..crate::workers::slots(workers) * servers)
                .map(|_| Mutex::new(Vec::new()))
                .collect(),
            servers,
            max_idle,
            idle_timeout,
            connect_timeout,
        }
    }

    fn slot(&self, server: usize) -> &Mutex<Vec<Idle>> {
        let workers = self.slots.len() / self.servers.max(1);
        let w = crate::workers::current() % workers.max(1);
        &self.slots[w * self.servers + server]
    }

    /// A ready connection from the list; closed and expired ones are dropped.
    fn checkout(&self, server: usize) -> Option<SendRequest<RequestBody>> {
        let mut list = self.slot(server).lock().unwrap_or_else(|e| e.into_inner());
        let now = Instant::now();
        list.retain(|i| !i.tx.is_closed() && now.duration_since(i.since) < self.idle_timeout);
        let pos = list.iter().position(|i| i.tx.is_ready())?;
        Some(list.swap_remove(pos).tx)
    }

    /// Back to the list (busy until its response ends); beyond `keepalive`
    /// connections it is dropped and closes once its response is done.
    fn checkin(&self, server: usize, tx: SendRequest<RequestBody>) {
        let mut list = self.slot(server).lock().unwrap_or_else(|e| e.into_inner());
        if list.len() < self.max_idle {
            list.push(Idle {
                tx,
                since: Instant::now(),
            });
        }
    }

    async fn connect(&self, authority: &str) -> Result<SendRequest<RequestBody>, DirectError> {
        let tcp = tokio::time::timeout(self.connect_timeout, TcpStream::connect(authority))
            .await
            .map_err(|_| DirectError::ConnectTimeout(self.connect_timeout))?
            .map_err(DirectError::Connect)?;
        let _ = tcp.set_nodelay(true);
        let _ = socket2::SockRef::from(&tcp)
            .set_tcp_keepalive(&socket2::TcpKeepalive::new().with_time(Duration::from_secs(60)));
        let (tx, conn) = http1::Builder::new()
            .handshake(TokioIo::new(tcp))
            .await
            .map_err(DirectError::Handshake)?;
        // The connection's own task, on this worker: it ends when the server
        // closes or when the last sender is dropped and the exchange is done.
        tokio::spawn(async move {
            let _ = conn.await;
        });
        Ok(tx)
    }

    /// Sends `req` (origin-form URI, Host set) to `server` at `authority`.
    /// A pooled connection that turns out to be closing gives the request
    /// back unsent; it is then tried on another (or a new) connection.
    pub async fn send(
        &self,
        server: usize,
        authority: &str,
        mut req: Request<RequestBody>,
    ) -> Result<Response<Incoming>, DirectError> {
        while let Some(mut tx) = self.checkout(server) {
            match tx.try_send_request(req).await {
                Ok(resp) => {
                    self.checkin(server, tx);
                    return Ok(resp);
                }
                Err(mut e) => match e.take_message() {
                    Some(unsent) => req = unsent,
                    None => return Err(DirectError::Http(e.into_error())),
                },
            }
        }
        // Boxed: on a warm pool this is rare, and its future (the connect)
        // would otherwise sit in every request's state.
        Box::pin(self.send_new(server, authority, req)).await
    }

    /// Sends `req` on a new connection (kept for reuse afterwards).
    async fn send_new(
        &self,
        server: usize,
        authority: &str,
        req: Request<RequestBody>,
    ) -> Result<Response<Incoming>, DirectError> {
        let mut tx = self.connect(authority).await?;
        match tx.try_send_request(req).await {
            Ok(resp) => {
                self.checkin(server, tx);
                Ok(resp)
            }
            Err(e) => Err(DirectError::Http(e.into_error())),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::{BodyExt, Full};
    use hyper::service::service_fn;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;

    /// An HTTP/1.1 server counting its connections; each answers `max` requests
    /// (then hyper closes it, as a server with a keep-alive request limit does).
    async fn server(max: usize) -> (String, Arc<AtomicUsize>) {
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap().to_string();
        let conns = Arc::new(AtomicUsize::new(0));
        let c = conns.clone();
        tokio::spawn(async move {
            loop {
                let (tcp, _) = l.accept().await.unwrap();
                c.fetch_add(1, Ordering::SeqCst);
                tokio::spawn(async move {
                    let served = Arc::new(AtomicUsize::new(0));
                    let svc = service_fn(move |req: Request<Incoming>| {
                        let n = served.fetch_add(1, Ordering::SeqCst) + 1;
                        async move {
                            let mut r =
                                Response::new(Full::new(bytes::Bytes::from(req.uri().to_string())));
                            if n >= max {
                                r.headers_mut()
                                    .insert("connection", http::HeaderValue::from_static("close"));
                            }
                            Ok::<_, std::convert::Infallible>(r)
                        }
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(tcp), svc)
                        .await;
                });
            }
        });
        (addr, conns)
    }

    async fn get(pool: &DirectPool, addr: &str, path: &str) -> String {
        let mut req = Request::new(RequestBody::Empty);
        *req.uri_mut() = path.parse().unwrap();
        req.headers_mut()
            .insert("host", http::HeaderValue::from_static("upstream"));
        let resp = pool.send(0, addr, req).await.expect("response");
        let body = resp.into_body().collect().await.unwrap().to_bytes();
        String::from_utf8(body.to_vec()).unwrap()
    }

    fn pool(keepalive: usize) -> DirectPool {
        DirectPool::new(
            1,
            1,
            keepalive,
            Duration::from_secs(60),
            Duration::from_secs(2),
        )
    }

    #[tokio::test]
    async fn sequential_requests_reuse_one_connection_in_origin_form() {
        let (addr, conns) = server(usize::MAX).await;
        let p = pool(8);
        for i in 0..20 {
            assert_eq!(
                get(&p, &addr, &format!("/r/{i}?q=1")).await,
                format!("/r/{i}?q=1")
            );
        }
        assert_eq!(conns.load(Ordering::SeqCst), 1);
    }

    #[tokio::test]
    async fn keepalive_zero_opens_a_connection_per_request() {
        let (addr, conns) = server(usize::MAX).await;
        let p = pool(0);
        for _ in 0..5 {
            get(&p, &addr, "/").await;
        }
        assert_eq!(conns.load(Ordering::SeqCst), 5);
    }

    #[tokio::test]
    async fn a_connection_the_server_closed_is_replaced() {
        // The server closes after every 2nd request: requests keep working.
        let (addr, conns) = server(2).await;
        let p = pool(8);
        for i in 0..10 {
            assert_eq!(get(&p, &addr, &format!("/{i}")).await, format!("/{i}"));
        }
        assert_eq!(conns.load(Ordering::SeqCst), 5);
    }

    #[tokio::test]
    async fn concurrent_requests_open_parallel_connections_then_reuse_them() {
        let (addr, conns) = server(usize::MAX).await;
        let p = Arc::new(pool(8));
        for _round in 0..3 {
            let mut tasks = Vec::new();
            for i in 0..4 {
                let (p, addr) = (p.clone(), addr.clone());
                tasks.push(tokio::spawn(async move {
                    get(&p, &addr, &format!("/{i}")).await
                }));
            }
            for (i, t) in tasks.into_iter().enumerate() {
                assert_eq!(t.await.unwrap(), format!("/{i}"));
            }
        }
        // 4 at once need 4 connections; later rounds reuse them (at most 4 more
        // when a finished response's connection is not yet marked ready).
        let n = conns.load(Ordering::SeqCst);
        assert!((4..=8).contains(&n), "{n} connections");
    }

    #[tokio::test]
    async fn refused_connections_are_connect_errors() {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = l.local_addr().unwrap().to_string();
        drop(l);
        let mut req = Request::new(RequestBody::Empty);
        *req.uri_mut() = "/".parse().unwrap();
        let e = pool(8).send(0, &addr, req).await.unwrap_err();
        assert!(e.is_connect(), "{e}");
    }
}
