//! Access-log `log_format` compiler (`LogFormat::parse`) and renderer.
//!
//! Input: the first line is the format string (operator input); the second
//! a request target and the rest `name: value` header lines (client input,
//! any bytes). Asserts: a parsed text format keeps its source; a rendered
//! text line holds exactly one newline, at its end (no client byte can
//! split or forge a log line); a JSON line parses as JSON; and rendering
//! with only the headers `pick_request_headers` kept gives the same bytes
//! as rendering with all of them.
#![no_main]

use std::net::SocketAddr;
use std::time::{Duration, UNIX_EPOCH};

use http::{HeaderMap, HeaderName, HeaderValue, Method, Uri, Version};
use libfuzzer_sys::fuzz_target;
use portcullis_proxy::accesslog::{Headers, LogFormat, LogRecord, TlsLogInfo};

fn render(format: &LogFormat, rec: &LogRecord<'_>) -> Vec<u8> {
    let mut out = Vec::new();
    format.render(rec, &mut out);
    out
}

/// What the record is built from, but for the request headers.
struct Request<'a> {
    method: &'a Method,
    uri: &'a Uri,
    headers: &'a HeaderMap,
    tls: &'a TlsLogInfo<'a>,
    user: Option<&'a str>,
    route: Option<&'a str>,
}

impl<'a> Request<'a> {
    fn record(&self, req: impl Into<Headers<'a>>) -> LogRecord<'a> {
        let peer: SocketAddr = "[2001:db8::7]:51234".parse().expect("static address");
        let mut r = LogRecord::new(peer, self.method, self.uri, Version::HTTP_11, req);
        r.response_headers = self.headers;
        r.status = 502;
        r.body_bytes_sent = u64::MAX;
        r.start = UNIX_EPOCH + Duration::from_millis(1_764_000_000_250);
        r.duration = Duration::from_micros(45_200);
        r.remote_user = self.user;
        r.route = self.route;
        r.upstream_addr = self.route;
        r.ssl_client_s_dn = self.user;
        r.consumer = self.route;
        r.request_id = "0f3c2a";
        r.tls = Some(self.tls);
        r
    }
}

fuzz_target!(|data: &[u8]| {
    let mut lines = data.split(|&b| b == b'\n');
    let Some(Ok(fmt)) = lines.next().map(std::str::from_utf8) else {
        return;
    };
    let Ok(format) = LogFormat::parse(fmt) else {
        return;
    };
    if let LogFormat::Text(t) = &format {
        assert_eq!(t.source(), fmt);
    }
    let uri = lines
        .next()
        .and_then(|l| Uri::try_from(l).ok())
        .unwrap_or_else(|| Uri::from_static("/"));
    let mut headers = HeaderMap::new();
    for line in lines {
        let Some(colon) = line.iter().position(|&b| b == b':') else {
            continue;
        };
        let (Ok(name), Ok(value)) = (
            HeaderName::from_bytes(&line[..colon]),
            HeaderValue::from_bytes(line[colon + 1..].trim_ascii()),
        ) else {
            continue;
        };
        headers.append(name, value);
    }
    let user = headers
        .get("authorization")
        .and_then(|v| std::str::from_utf8(v.as_bytes()).ok());
    let route = headers
        .get("x-route")
        .and_then(|v| std::str::from_utf8(v.as_bytes()).ok());
    let tls = TlsLogInfo {
        protocol: "TLSv1.3",
        cipher: "TLS_AES_128_GCM_SHA256",
        sni: user,
        session_reused: false,
    };
    let method = Method::POST;
    let r = Request {
        method: &method,
        uri: &uri,
        headers: &headers,
        tls: &tls,
        user,
        route,
    };
    let line = render(&format, &r.record(&headers));
    assert_eq!(line.last(), Some(&b'\n'), "line does not end in a newline");
    let newlines = line.iter().filter(|&&b| b == b'\n').count();
    assert_eq!(newlines, 1, "{:?}", String::from_utf8_lossy(&line));
    if format == LogFormat::Json {
        if let Err(e) = serde_json::from_slice::<serde_json::Value>(&line) {
            panic!("{e}: {:?}", String::from_utf8_lossy(&line));
        }
    }
    let picked = format.pick_request_headers(&headers);
    assert_eq!(
        render(&format, &r.record(&picked)),
        line,
        "picked headers differ"
    );
});
