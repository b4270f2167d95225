//! The built-in echo upstream, for first runs and tests.
//!
//! Owns a plain-HTTP server (HTTP/1.1 and h2c) that answers every request
//! with the request it saw as JSON: method, path, query, version, headers in
//! order, and the body. A WebSocket upgrade is accepted and every message is
//! sent back. It is a development aid: it has no limits beyond 1 MiB bodies.

use std::convert::Infallible;

use bytes::Bytes;
use http::header::{self, HeaderValue};
use http::{Request, Response, StatusCode};
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio_tungstenite::tungstenite::handshake::derive_accept_key;
use tokio_tungstenite::tungstenite::protocol::Role;
use tokio_tungstenite::WebSocketStream;

/// Largest body the echo server reads.
const MAX_BODY: usize = 1024 * 1024;

/// Serves the echo upstream on `listener` until `stop` changes.
pub async fn serve(listener: TcpListener, mut stop: watch::Receiver<bool>) {
    let builder = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
    loop {
        let tcp = tokio::select! {
            r = listener.accept() => match r { Ok((t, _)) => t, Err(_) => { tokio::time::sleep(std::time::Duration::from_millis(50)).await; continue } },
            _ = stop.changed() => break,
        };
        let _ = tcp.set_nodelay(true);
        let builder = builder.clone();
        tokio::spawn(async move {
            let _ = builder
                .serve_connection_with_upgrades(TokioIo::new(tcp), service_fn(echo))
                .await;
        });
    }
}

/// Answers one request.
pub async fn echo(mut req: Request<Incoming>) -> Result<Response<Full<Bytes>>, Infallible> {
    if let Some(key) = req.headers().get(header::SEC_WEBSOCKET_KEY).cloned() {
        if req
            .headers()
            .get(header::UPGRADE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.eq_ignore_ascii_case("websocket"))
        {
            let on_upgrade = hyper::upgrade::on(&mut req);
            tokio::spawn(async move {
                if let Ok(up) = on_upgrade.await {
                    let ws = WebSocketStream::from_raw_socket(TokioIo::new(up), Role::Server, None)
                        .await;
                    crate::websocket::echo_session(ws).await;
                }
            });
            let mut r = Response::new(Full::new(Bytes::new()));
            *r.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
            let h = r.headers_mut();
            h.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
            h.insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
            if let Ok(v) = HeaderValue::from_str(&derive_accept_key(key.as_bytes())) {
                h.insert(header::SEC_WEBSOCKET_ACCEPT, v);
            }
            return Ok(r);
        }
    }
    let (parts, body) = req.into_parts();
    let body = match Limited::new(body, MAX_BODY).collect().await {
        Ok(b) => b.to_bytes(),
        Err(_) => {
            let mut r = Response::new(Full::new(Bytes::from_static(
                b"{\"error\":\"body too large or broken\"}",
            )));
            *r.status_mut() = StatusCode::PAYLOAD_TOO_LARGE;
            return Ok(r);
        }
    };
    let headers: Vec<(String, String)> = parts
        .headers
        .iter()
        .map(|(k, v)| {
            (
                k.as_str().to_string(),
                String::from_utf8_lossy(v.as_bytes()).into_owned(),
            )
        })
        .collect();
    let json = serde_json::json!({
        "method": parts.method.as_str(),
        "path": parts.uri.path(),
        "query": parts.uri.query(),
        "uri": parts.uri.to_string(),
        "version": format!("{:?}", parts.version),
        "headers": headers,
        "body": String::from_utf8_lossy(&body),
        "body_length": body.len(),
    });
    let mut out = serde_json::to_vec_pretty(&json).unwrap_or_default();
    out.push(b'\n');
    let mut r = Response::new(Full::new(Bytes::from(out)));
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    Ok(r)
}
