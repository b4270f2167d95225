//! A tiny HTTP/1.1 upstream on std threads that records every raw request
//! head it reads and answers with its own name, optionally after a delay,
//! with a configurable status, and a `/healthz` whose status can be flipped.
//!
//! It is deliberately simple: it reads a head, then a Content-Length or
//! chunked body, and answers keep-alive. Good enough for gateway tests.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU16, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// One request as the upstream read it.
#[derive(Debug, Clone)]
pub struct SeenRequest {
    /// "GET /path?q HTTP/1.1".
    pub request_line: String,
    /// Header lines as received (name case kept).
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl SeenRequest {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
    pub fn target(&self) -> &str {
        self.request_line.split_whitespace().nth(1).unwrap_or("")
    }
}

#[derive(Debug)]
struct Shared {
    name: String,
    delay: Duration,
    status: AtomicU16,
    health_status: AtomicU16,
    seen: Mutex<Vec<SeenRequest>>,
    stop: AtomicBool,
}

/// A running mock upstream; stops accepting when dropped.
#[derive(Debug)]
pub struct MockUpstream {
    pub addr: SocketAddr,
    shared: Arc<Shared>,
}

impl MockUpstream {
    /// Answers every request with 200 and the body `name`.
    pub fn start(name: &str) -> MockUpstream {
        MockUpstream::start_with(name, Duration::ZERO)
    }

    /// Like `start`, but waits `delay` before answering (a slow upstream).
    pub fn start_with(name: &str, delay: Duration) -> MockUpstream {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind mock upstream");
        let addr = listener.local_addr().expect("addr");
        let shared = Arc::new(Shared {
            name: name.to_string(),
            delay,
            status: AtomicU16::new(200),
            health_status: AtomicU16::new(200),
            seen: Mutex::new(Vec::new()),
            stop: AtomicBool::new(false),
        });
        let s = shared.clone();
        std::thread::spawn(move || {
            for conn in listener.incoming() {
                if s.stop.load(Ordering::Relaxed) {
                    break;
                }
                let Ok(conn) = conn else { continue };
                let s = s.clone();
                std::thread::spawn(move || serve_conn(conn, &s));
            }
        });
        MockUpstream { addr, shared }
    }

    /// "127.0.0.1:port".
    pub fn authority(&self) -> String {
        self.addr.to_string()
    }

    /// The status of every answer but `/healthz`.
    pub fn set_status(&self, status: u16) {
        self.shared.status.store(status, Ordering::Relaxed);
    }

    /// The status of `/healthz`.
    pub fn set_health_status(&self, status: u16) {
        self.shared.health_status.store(status, Ordering::Relaxed);
    }

    /// Requests seen so far, health checks excluded.
    pub fn requests(&self) -> Vec<SeenRequest> {
        self.shared
            .seen
            .lock()
            .map(|v| {
                v.iter()
                    .filter(|r| !r.target().starts_with("/healthz"))
                    .cloned()
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Every request seen so far, health checks included.
    pub fn all_requests(&self) -> Vec<SeenRequest> {
        self.shared
            .seen
            .lock()
            .map(|v| v.clone())
            .unwrap_or_default()
    }
}

impl Drop for MockUpstream {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::Relaxed);
        let _ = TcpStream::connect_timeout(&self.addr, Duration::from_millis(200));
    }
}

fn serve_conn(conn: TcpStream, s: &Shared) {
    let _ = conn.set_read_timeout(Some(Duration::from_secs(60)));
    let mut w = match conn.try_clone() {
        Ok(w) => w,
        Err(_) => return,
    };
    let mut r = BufReader::new(conn);
    loop {
        let mut request_line = String::new();
        match r.read_line(&mut request_line) {
            Ok(0) | Err(_) => return,
            Ok(_) => {}
        }
        let request_line = request_line.trim_end().to_string();
        if request_line.is_empty() {
            continue;
        }
        let mut headers = Vec::new();
        loop {
            let mut line = String::new();
            match r.read_line(&mut line) {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
            let line = line.trim_end_matches(['\r', '\n']);
            if line.is_empty() {
                break;
            }
            if let Some((k, v)) = line.split_once(':') {
                headers.push((k.trim().to_string(), v.trim().to_string()));
            }
        }
        let get = |n: &str| {
            headers
                .iter()
                .find(|(k, _)| k.eq_ignore_ascii_case(n))
                .map(|(_, v)| v.clone())
        };
        let mut body = Vec::new();
        if get("transfer-encoding").is_some_and(|v| v.to_ascii_lowercase().contains("chunked")) {
            loop {
                let mut size = String::new();
                if r.read_line(&mut size).unwrap_or(0) == 0 {
                    return;
                }
                let n = usize::from_str_radix(size.trim().split(';').next().unwrap_or(""), 16)
                    .unwrap_or(0);
                let mut chunk = vec![0; n + 2];
                if r.read_exact(&mut chunk).is_err() {
                    return;
                }
                if n == 0 {
                    break;
                }
                body.extend_from_slice(&chunk[..n]);
            }
        } else if let Some(n) = get("content-length").and_then(|v| v.parse::<usize>().ok()) {
            body = vec![0; n];
            if r.read_exact(&mut body).is_err() {
                return;
            }
        }
        let target = request_line
            .split_whitespace()
            .nth(1)
            .unwrap_or("")
            .to_string();
        if let Ok(mut v) = s.seen.lock() {
            v.push(SeenRequest {
                request_line: request_line.clone(),
                headers: headers.clone(),
                body,
            });
        }
        let health = target.starts_with("/healthz");
        if !health && !s.delay.is_zero() {
            std::thread::sleep(s.delay);
        }
        let status = if health {
            s.health_status.load(Ordering::Relaxed)
        } else {
            s.status.load(Ordering::Relaxed)
        };
        let body = s.name.as_bytes();
        let resp = format!(
            "HTTP/1.1 {status} X\r\nContent-Type: text/plain\r\nContent-Length: {}\r\nServer: mock-internal/1.0\r\nX-Powered-By: mock\r\nX-Frame-Options: ALLOWALL\r\nConnection: keep-alive\r\nKeep-Alive: timeout=30\r\n\r\n",
            body.len()
        );
        if w.write_all(resp.as_bytes()).is_err() || w.write_all(body).is_err() {
            return;
        }
        let _ = w.flush();
    }
}
