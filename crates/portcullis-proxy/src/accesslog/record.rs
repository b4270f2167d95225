//! The facts one access-log line is made of.
//!
//! Owns [`LogRecord`]: every field borrows from what the request path already
//! holds, so building one costs a few pointer copies. It must not own data or
//! compute anything; rendering lives in `format`.

use std::net::SocketAddr;
use std::sync::LazyLock;
use std::time::{Duration, SystemTime};

use http::{HeaderMap, HeaderName, HeaderValue, Method, Uri, Version};

static EMPTY_HEADERS: LazyLock<HeaderMap> = LazyLock::new(HeaderMap::new);

/// Request headers as a record sees them: a whole map, or the few a format
/// prints, kept past the request ([`PickedHeaders`]).
#[derive(Debug, Clone, Copy)]
pub enum Headers<'a> {
    Map(&'a HeaderMap),
    Picked(&'a PickedHeaders),
}

impl<'a> From<&'a HeaderMap> for Headers<'a> {
    fn from(m: &'a HeaderMap) -> Self {
        Headers::Map(m)
    }
}

impl<'a> From<&'a PickedHeaders> for Headers<'a> {
    fn from(p: &'a PickedHeaders) -> Self {
        Headers::Picked(p)
    }
}

impl<'a> Headers<'a> {
    /// Every value of `name`, in order.
    pub fn values(self, name: &'a HeaderName) -> impl Iterator<Item = &'a HeaderValue> + 'a {
        let (map, picked) = match self {
            Headers::Map(m) => (Some(m.get_all(name).iter()), None),
            Headers::Picked(p) => (None, Some(p.0.iter())),
        };
        map.into_iter().flatten().chain(
            picked
                .into_iter()
                .flatten()
                .filter(move |(n, _)| n == name)
                .map(|(_, v)| v),
        )
    }
}

/// The request headers a log format prints, copied out of a request (the
/// values are shared, not copied; two fit without allocating (the api_log format prints two)).
#[derive(Debug, Clone, Default)]
pub struct PickedHeaders(pub(crate) smallvec::SmallVec<[(HeaderName, HeaderValue); 2]>);

impl PickedHeaders {
    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The first value of `name` (any case).
    pub fn get(&self, name: &str) -> Option<&HeaderValue> {
        self.0
            .iter()
            .find(|(n, _)| n.as_str().eq_ignore_ascii_case(name))
            .map(|(_, v)| v)
    }
}

/// The TLS session a request came in on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TlsLogInfo<'a> {
    /// As nginx prints it: "TLSv1.2", "TLSv1.3".
    pub protocol: &'a str,
    /// IANA name, e.g. "TLS_AES_128_GCM_SHA256".
    pub cipher: &'a str,
    pub sni: Option<&'a str>,
    pub session_reused: bool,
}

/// One finished request, as the access log sees it.
///
/// Build it with [`LogRecord::new`] and set the fields the request path
/// knows; everything else prints as `-` (or is left out of JSON lines).
/// Empty strings print as `-` too, like nginx.
#[derive(Debug, Clone)]
pub struct LogRecord<'a> {
    /// `$remote_addr`, `$remote_port`.
    pub peer: SocketAddr,
    /// `peer`'s address as text, when the caller has it already (else it is formatted).
    pub peer_text: Option<&'a str>,
    /// `$server_port` (and nothing else); `None` prints `-`.
    pub local: Option<SocketAddr>,
    pub method: &'a Method,
    /// The request target as received. `$request_uri` and `$request` use its
    /// path and query, `$uri` its path, `$args` its query.
    pub uri: &'a Uri,
    pub version: Version,
    /// `$http_*`. May be only the headers the format names
    /// ([`LogFormat::pick_request_headers`](super::LogFormat::pick_request_headers)).
    pub request_headers: Headers<'a>,
    /// `$sent_http_*`.
    pub response_headers: &'a HeaderMap,
    /// `$status`; 0 prints `000`, as nginx does for a request without a response.
    pub status: u16,
    /// `$body_bytes_sent`.
    pub body_bytes_sent: u64,
    /// `$bytes_sent` (status line and headers included); `None` prints `-`.
    pub bytes_sent: Option<u64>,
    /// `$request_length` (request line, headers and body); `None` prints `-`.
    pub request_length: Option<u64>,
    /// When the request started: `$time_local`, `$time_iso8601`, `$msec`.
    pub start: SystemTime,
    /// `$request_time`.
    pub duration: Duration,
    /// `$remote_user`: the authenticated user, if the request path knows one.
    pub remote_user: Option<&'a str>,
    pub upstream_addr: Option<&'a str>,
    pub upstream_status: Option<u16>,
    pub upstream_response_time: Option<Duration>,
    pub upstream_connect_time: Option<Duration>,
    pub request_id: &'a str,
    pub tls: Option<&'a TlsLogInfo<'a>>,
    /// `$route`: the name of the route that served the request.
    pub route: Option<&'a str>,
    /// `$scheme`; `None` means "https" with TLS, "http" without.
    pub scheme: Option<&'a str>,
    /// `$host`; `None` falls back to the Host header, then the URI's host.
    /// A port is cut off and the name is printed in lower case.
    pub host: Option<&'a str>,
    /// `$server_name`.
    pub server_name: Option<&'a str>,
    /// `$connection`: the connection's serial number.
    pub connection: u64,
    /// `$connection_requests`: this request's number on its connection.
    pub connection_requests: u64,
    /// `$pipe`: "p" when the request was pipelined, "." otherwise.
    pub pipelined: bool,
    // Filled by later features; `-` until then.
    pub ssl_client_s_dn: Option<&'a str>,
    pub ssl_client_i_dn: Option<&'a str>,
    pub ssl_client_serial: Option<&'a str>,
    pub ssl_client_fingerprint: Option<&'a str>,
    pub ssl_client_verify: Option<&'a str>,
    pub ssl_client_v_remain: Option<&'a str>,
    pub limit_req_status: Option<&'a str>,
    pub limit_req_zone: Option<&'a str>,
    pub consumer: Option<&'a str>,
}

// === impl LogRecord ===

impl<'a> LogRecord<'a> {
    /// A record with what every request has; the rest is absent, status 0,
    /// no bytes sent, start "now", zero duration.
    pub fn new(
        peer: SocketAddr,
        method: &'a Method,
        uri: &'a Uri,
        version: Version,
        request_headers: impl Into<Headers<'a>>,
    ) -> Self {
        LogRecord {
            peer,
            peer_text: None,
            local: None,
            method,
            uri,
            version,
            request_headers: request_headers.into(),
            response_headers: &EMPTY_HEADERS,
            status: 0,
            body_bytes_sent: 0,
            bytes_sent: None,
            request_length: None,
            start: SystemTime::now(),
            duration: Duration::ZERO,
            remote_user: None,
            upstream_addr: None,
            upstream_status: None,
            upstream_response_time: None,
            upstream_connect_time: None,
            request_id: "",
            tls: None,
            route: None,
            scheme: None,
            host: None,
            server_name: None,
            connection: 0,
            connection_requests: 0,
            pipelined: false,
            ssl_client_s_dn: None,
            ssl_client_i_dn: None,
            ssl_client_serial: None,
            ssl_client_fingerprint: None,
            ssl_client_verify: None,
            ssl_client_v_remain: None,
            limit_req_status: None,
            limit_req_zone: None,
            consumer: None,
        }
    }
}
