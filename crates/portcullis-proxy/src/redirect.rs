//! The plain-HTTP listener that only redirects to HTTPS.
//!
//! Owns answering every request on a `[[redirect]]` address with 301 (or the
//! configured 308) to the same host, path and query on HTTPS. It never
//! proxies anything, and refuses a missing or malformed Host with 400 rather
//! than redirecting somewhere a client chose.

use std::convert::Infallible;

use http::header::{self, HeaderValue};
use http::{Request, Response, StatusCode};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use tokio::net::TcpListener;
use tokio::sync::watch;

use crate::body::ResponseBody;
use crate::config::RedirectConfig;
use crate::runtime::HeaderSet;

/// The redirect for one request.
pub fn redirect_response(
    req: &Request<Incoming>,
    cfg: &RedirectConfig,
    headers: &HeaderSet,
) -> Response<ResponseBody> {
    let host = req
        .uri()
        .authority()
        .map(|a| a.host().to_string())
        .or_else(|| {
            req.headers()
                .get(header::HOST)
                .and_then(|h| h.to_str().ok())
                .map(|h| {
                    if let Some(rest) = h.strip_prefix('[') {
                        format!("[{}]", rest.split(']').next().unwrap_or(""))
                    } else {
                        h.rsplit_once(':').map_or(h, |(n, _)| n).to_string()
                    }
                })
        });
    let valid = |h: &str| {
        !h.is_empty()
            && h.len() <= 253
            && h.bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'[' | b']' | b':'))
    };
    let mut resp = match host.filter(|h| valid(h)) {
        None => {
            let mut r = Response::new(ResponseBody::full(
                "{\"error\":\"bad_request\",\"message\":\"missing or invalid Host\"}",
            ));
            *r.status_mut() = StatusCode::BAD_REQUEST;
            r.headers_mut().insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/json"),
            );
            r
        }
        Some(host) => {
            let port = if cfg.https_port == 443 {
                String::new()
            } else {
                format!(":{}", cfg.https_port)
            };
            let pq = req.uri().path_and_query().map_or("/", |p| p.as_str());
            let location = format!("https://{host}{port}{pq}");
            let mut r = Response::new(ResponseBody::empty());
            *r.status_mut() =
                StatusCode::from_u16(cfg.status).unwrap_or(StatusCode::MOVED_PERMANENTLY);
            match HeaderValue::from_str(&location) {
                Ok(v) => {
                    r.headers_mut().insert(header::LOCATION, v);
                }
                Err(_) => *r.status_mut() = StatusCode::BAD_REQUEST,
            }
            r
        }
    };
    for (n, v) in headers {
        // HSTS over plain HTTP is ignored by browsers (RFC 6797 §8.1); send the rest.
        if n != "strict-transport-security" {
            resp.headers_mut().insert(n.clone(), v.clone());
        }
    }
    resp.headers_mut()
        .insert(header::CONTENT_LENGTH, HeaderValue::from_static("0"));
    if resp.status() == StatusCode::BAD_REQUEST {
        resp.headers_mut().remove(header::CONTENT_LENGTH);
    }
    resp
}

/// Serves redirects on `listener` until `stop` changes.
pub async fn serve(
    listener: TcpListener,
    cfg: RedirectConfig,
    headers: HeaderSet,
    mut stop: watch::Receiver<bool>,
) {
    let mut builder =
        hyper_util::server::conn::auto::Builder::new(TokioExecutor::new()).http1_only();
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(std::time::Duration::from_secs(10))
        .max_buf_size(16 * 1024);
    loop {
        let tcp = tokio::select! {
            r = listener.accept() => match r { Ok((t, _)) => t, Err(_) => { tokio::time::sleep(std::time::Duration::from_millis(50)).await; continue } },
            _ = stop.changed() => break,
        };
        let cfg = cfg.clone();
        let headers = headers.clone();
        let builder = builder.clone();
        tokio::spawn(async move {
            let svc = service_fn(move |req: Request<Incoming>| {
                let r = redirect_response(&req, &cfg, &headers);
                async move { Ok::<_, Infallible>(r) }
            });
            let _ = builder.serve_connection(TokioIo::new(tcp), svc).await;
        });
    }
}
