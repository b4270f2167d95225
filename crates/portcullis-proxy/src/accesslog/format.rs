//! The `log_format` language: parsing once, rendering per request.
//!
//! Owns [`LogFormat`] (nginx `log_format` text with `$name` / `${name}`
//! variables, or the `json` keyword), [`FormatError`] and the two escapers:
//! nginx's default `\xHH` for text lines and proper JSON escaping for JSON
//! lines. It must not allocate per variable when rendering: values are
//! written straight into the caller's buffer, and the two time stamps are
//! formatted once per second per thread.

use std::cell::RefCell;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use http::{HeaderMap, HeaderName, Version};

use super::record::{Headers, LogRecord, PickedHeaders};

/// A parsed access-log format.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LogFormat {
    /// One JSON object per line with every known field; absent ones are left out.
    Json,
    /// nginx `log_format` text.
    Text(TextFormat),
}

/// A parsed nginx `log_format` string.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TextFormat {
    source: String,
    segments: Vec<Segment>,
}

/// Why a `log_format` string was refused. Columns are 1-based byte offsets
/// into the format string (`offset` is the 0-based byte offset).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FormatError {
    #[error(
        "unknown variable ${name} at column {col}{hint}",
        col = offset + 1,
        hint = suggestion.map(|s| format!("; did you mean ${s}?")).unwrap_or_default()
    )]
    UnknownVariable {
        name: String,
        offset: usize,
        suggestion: Option<&'static str>,
    },
    #[error("`$` at column {col} is not followed by a variable name (write `${{name}}` or `$name`)", col = offset + 1)]
    MissingName { offset: usize },
    #[error("`${{` at column {col} is not closed: expected `}}` right after the variable name", col = offset + 1)]
    UnclosedBrace { offset: usize },
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Segment {
    Literal(Box<str>),
    Var(Var),
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Var {
    Simple(Simple),
    /// `$http_<name>`: a request header.
    Request(HeaderName),
    /// `$sent_http_<name>`: a response header.
    Response(HeaderName),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Simple {
    RemoteAddr,
    RemotePort,
    RemoteUser,
    TimeLocal,
    TimeIso8601,
    Msec,
    Request,
    RequestMethod,
    RequestUri,
    Uri,
    Args,
    ServerProtocol,
    Status,
    BodyBytesSent,
    BytesSent,
    RequestLength,
    RequestTime,
    UpstreamAddr,
    UpstreamStatus,
    UpstreamResponseTime,
    UpstreamConnectTime,
    RequestId,
    Host,
    ServerName,
    ServerPort,
    Scheme,
    SslProtocol,
    SslCipher,
    SslServerName,
    SslSessionReused,
    Route,
    Connection,
    ConnectionRequests,
    Pipe,
    SslClientSDn,
    SslClientIDn,
    SslClientSerial,
    SslClientFingerprint,
    SslClientVerify,
    SslClientVRemain,
    LimitReqStatus,
    LimitReqZone,
    Consumer,
}

const VARIABLES: &[(&str, Simple)] = &[
    ("remote_addr", Simple::RemoteAddr),
    ("remote_port", Simple::RemotePort),
    ("remote_user", Simple::RemoteUser),
    ("time_local", Simple::TimeLocal),
    ("time_iso8601", Simple::TimeIso8601),
    ("msec", Simple::Msec),
    ("request", Simple::Request),
    ("request_method", Simple::RequestMethod),
    ("request_uri", Simple::RequestUri),
    ("uri", Simple::Uri),
    ("args", Simple::Args),
    ("server_protocol", Simple::ServerProtocol),
    ("status", Simple::Status),
    ("body_bytes_sent", Simple::BodyBytesSent),
    ("bytes_sent", Simple::BytesSent),
    ("request_length", Simple::RequestLength),
    ("request_time", Simple::RequestTime),
    ("upstream_addr", Simple::UpstreamAddr),
    ("upstream_status", Simple::UpstreamStatus),
    ("upstream_response_time", Simple::UpstreamResponseTime),
    ("upstream_connect_time", Simple::UpstreamConnectTime),
    ("request_id", Simple::RequestId),
    ("host", Simple::Host),
    ("server_name", Simple::ServerName),
    ("server_port", Simple::ServerPort),
    ("scheme", Simple::Scheme),
    ("ssl_protocol", Simple::SslProtocol),
    ("ssl_cipher", Simple::SslCipher),
    ("ssl_server_name", Simple::SslServerName),
    ("ssl_session_reused", Simple::SslSessionReused),
    ("route", Simple::Route),
    ("connection", Simple::Connection),
    ("connection_requests", Simple::ConnectionRequests),
    ("pipe", Simple::Pipe),
    ("ssl_client_s_dn", Simple::SslClientSDn),
    ("ssl_client_i_dn", Simple::SslClientIDn),
    ("ssl_client_serial", Simple::SslClientSerial),
    ("ssl_client_fingerprint", Simple::SslClientFingerprint),
    ("ssl_client_verify", Simple::SslClientVerify),
    ("ssl_client_v_remain", Simple::SslClientVRemain),
    ("limit_req_status", Simple::LimitReqStatus),
    ("limit_req_zone", Simple::LimitReqZone),
    ("consumer", Simple::Consumer),
];

/// The fields of a JSON line, in order.
const JSON_FIELDS: &[(&str, Simple)] = &[
    ("time_iso8601", Simple::TimeIso8601),
    ("msec", Simple::Msec),
    ("remote_addr", Simple::RemoteAddr),
    ("remote_port", Simple::RemotePort),
    ("remote_user", Simple::RemoteUser),
    ("request_method", Simple::RequestMethod),
    ("request_uri", Simple::RequestUri),
    ("server_protocol", Simple::ServerProtocol),
    ("scheme", Simple::Scheme),
    ("host", Simple::Host),
    ("server_name", Simple::ServerName),
    ("server_port", Simple::ServerPort),
    ("status", Simple::Status),
    ("body_bytes_sent", Simple::BodyBytesSent),
    ("bytes_sent", Simple::BytesSent),
    ("request_length", Simple::RequestLength),
    ("request_time", Simple::RequestTime),
    ("request_id", Simple::RequestId),
    ("route", Simple::Route),
    ("upstream_addr", Simple::UpstreamAddr),
    ("upstream_status", Simple::UpstreamStatus),
    ("upstream_response_time", Simple::UpstreamResponseTime),
    ("upstream_connect_time", Simple::UpstreamConnectTime),
    ("ssl_protocol", Simple::SslProtocol),
    ("ssl_cipher", Simple::SslCipher),
    ("ssl_server_name", Simple::SslServerName),
    ("ssl_session_reused", Simple::SslSessionReused),
    ("connection", Simple::Connection),
    ("connection_requests", Simple::ConnectionRequests),
    ("ssl_client_s_dn", Simple::SslClientSDn),
    ("ssl_client_i_dn", Simple::SslClientIDn),
    ("ssl_client_serial", Simple::SslClientSerial),
    ("ssl_client_fingerprint", Simple::SslClientFingerprint),
    ("ssl_client_verify", Simple::SslClientVerify),
    ("ssl_client_v_remain", Simple::SslClientVRemain),
    ("limit_req_status", Simple::LimitReqStatus),
    ("limit_req_zone", Simple::LimitReqZone),
    ("consumer", Simple::Consumer),
];

/// The request headers a JSON line carries, as `http_<name>` keys.
static JSON_HEADERS: [(&str, HeaderName); 3] = [
    ("http_referer", http::header::REFERER),
    ("http_user_agent", http::header::USER_AGENT),
    (
        "http_x_forwarded_for",
        HeaderName::from_static("x-forwarded-for"),
    ),
];

const COMBINED: &str = r#"$remote_addr - $remote_user [$time_local] "$request" $status $body_bytes_sent "$http_referer" "$http_user_agent""#;
const API_LOG: &str = r#"$remote_addr - $remote_user [$time_local] "$request" $status $body_bytes_sent "$http_referer" "$http_user_agent" rt=$request_time uct="$upstream_connect_time" urt="$upstream_response_time" ssl=$ssl_protocol/$ssl_cipher"#;

// === impl LogFormat ===

impl LogFormat {
    /// Parses an nginx `log_format` string, or the keyword `json`.
    pub fn parse(s: &str) -> Result<LogFormat, FormatError> {
        if s.trim() == "json" {
            return Ok(LogFormat::Json);
        }
        TextFormat::parse(s).map(LogFormat::Text)
    }

    /// nginx's predefined `combined` format.
    pub fn combined() -> LogFormat {
        LogFormat::Text(TextFormat::parse(COMBINED).expect("the combined format parses"))
    }

    /// The guide's `api_log` format: combined plus timings and TLS.
    pub fn api_log() -> LogFormat {
        LogFormat::Text(TextFormat::parse(API_LOG).expect("the api_log format parses"))
    }

    /// Appends one line for `rec`, ending in `\n`, to `out`.
    pub fn render(&self, rec: &LogRecord<'_>, out: &mut Vec<u8>) {
        match self {
            LogFormat::Json => render_json(rec, out),
            LogFormat::Text(t) => t.render(rec, out),
        }
    }

    /// Copies out of `headers` only the request headers this format prints,
    /// for a request path that must keep them past the request.
    pub fn pick_request_headers(&self, headers: &HeaderMap) -> PickedHeaders {
        let mut picked = PickedHeaders::default();
        let mut pick = |name: &HeaderName| {
            if picked.0.iter().any(|(n, _)| n == name) {
                return;
            }
            for v in headers.get_all(name) {
                picked.0.push((name.clone(), v.clone()));
            }
        };
        match self {
            LogFormat::Json => {
                JSON_HEADERS.iter().for_each(|(_, n)| pick(n));
                pick(&http::header::HOST);
            }
            LogFormat::Text(t) => {
                for seg in &t.segments {
                    match seg {
                        Segment::Var(Var::Request(n)) => pick(n),
                        Segment::Var(Var::Simple(Simple::Host)) => pick(&http::header::HOST),
                        _ => {}
                    }
                }
            }
        }
        picked
    }
}

// === impl TextFormat ===

impl TextFormat {
    fn parse(s: &str) -> Result<TextFormat, FormatError> {
        let b = s.as_bytes();
        let mut segments = Vec::new();
        let mut lit_start = 0;
        let mut i = 0;
        while i < b.len() {
            if b[i] != b'$' {
                i += 1;
                continue;
            }
            if lit_start < i {
                segments.push(Segment::Literal(s[lit_start..i].into()));
            }
            let dollar = i;
            let braced = b.get(i + 1) == Some(&b'{');
            let name_start = if braced { i + 2 } else { i + 1 };
            let name_end = name_start
                + b[name_start..]
                    .iter()
                    .take_while(|c| c.is_ascii_alphanumeric() || **c == b'_')
                    .count();
            if braced {
                if b.get(name_end) != Some(&b'}') {
                    return Err(FormatError::UnclosedBrace { offset: dollar });
                }
                i = name_end + 1;
            } else {
                i = name_end;
            }
            if name_start == name_end {
                return Err(FormatError::MissingName { offset: dollar });
            }
            let name = s[name_start..name_end].to_ascii_lowercase();
            let var = lookup(&name).ok_or_else(|| FormatError::UnknownVariable {
                suggestion: suggest(&name),
                name,
                offset: dollar,
            })?;
            segments.push(Segment::Var(var));
            lit_start = i;
        }
        if lit_start < b.len() {
            segments.push(Segment::Literal(s[lit_start..].into()));
        }
        Ok(TextFormat {
            source: s.to_owned(),
            segments,
        })
    }

    /// The format string this was parsed from.
    pub fn source(&self) -> &str {
        &self.source
    }

    fn render(&self, rec: &LogRecord<'_>, out: &mut Vec<u8>) {
        for seg in &self.segments {
            match seg {
                Segment::Literal(l) => out.extend_from_slice(l.as_bytes()),
                Segment::Var(v) => write_text(&value(v, rec), rec, out),
            }
        }
        out.push(b'\n');
    }
}

fn lookup(name: &str) -> Option<Var> {
    if let Some((_, v)) = VARIABLES.iter().find(|(n, _)| *n == name) {
        return Some(Var::Simple(*v));
    }
    let header = |rest: &str| {
        if rest.is_empty() {
            return None;
        }
        HeaderName::from_bytes(rest.replace('_', "-").as_bytes()).ok()
    };
    if let Some(rest) = name.strip_prefix("sent_http_") {
        return header(rest).map(Var::Response);
    }
    if let Some(rest) = name.strip_prefix("http_") {
        return header(rest).map(Var::Request);
    }
    None
}

/// The known variable closest to `name`, if any is close enough to be a typo.
fn suggest(name: &str) -> Option<&'static str> {
    let candidates = VARIABLES.iter().map(|(n, _)| *n).chain([
        "http_user_agent",
        "http_referer",
        "http_x_forwarded_for",
    ]);
    let (best, d) = candidates
        .map(|c| (c, edit_distance(name, c)))
        .min_by_key(|(_, d)| *d)?;
    (d <= 2.max(name.len() / 4)).then_some(best)
}

fn edit_distance(a: &str, b: &str) -> usize {
    let (a, b) = (a.as_bytes(), b.as_bytes());
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    let mut cur = vec![0; b.len() + 1];
    for (i, ca) in a.iter().enumerate() {
        cur[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let sub = prev[j] + usize::from(ca != cb);
            cur[j + 1] = sub.min(prev[j + 1] + 1).min(cur[j] + 1);
        }
        std::mem::swap(&mut prev, &mut cur);
    }
    prev[b.len()]
}

// === values ===

/// One variable's value for one record, not yet written.
enum Value<'a> {
    Absent,
    Bytes(&'a [u8]),
    Num(u64),
    Status(u16),
    /// Seconds with millisecond resolution, as nginx prints times.
    Secs(Duration),
    /// A yes/no with nginx's text spelling; JSON prints a boolean.
    Flag(bool, &'static str, &'static str),
    Ip,
    Request,
    Host(&'a str),
    Header(Headers<'a>, &'a HeaderName),
    TimeLocal,
    TimeIso8601,
    Msec,
}

fn text(s: Option<&str>) -> Value<'_> {
    match s {
        Some(s) if !s.is_empty() => Value::Bytes(s.as_bytes()),
        _ => Value::Absent,
    }
}

fn value<'a>(var: &'a Var, rec: &'a LogRecord<'a>) -> Value<'a> {
    let s = match var {
        Var::Simple(s) => *s,
        Var::Request(n) => return header(rec.request_headers, n),
        Var::Response(n) => return header(Headers::Map(rec.response_headers), n),
    };
    simple_value(s, rec)
}

fn header<'a>(map: Headers<'a>, name: &'a HeaderName) -> Value<'a> {
    let mut all = map.values(name);
    match (all.next(), all.next()) {
        (None, _) => Value::Absent,
        (Some(v), None) if v.is_empty() => Value::Absent,
        (Some(v), None) => Value::Bytes(v.as_bytes()),
        (Some(_), Some(_)) => Value::Header(map, name),
    }
}

fn simple_value<'a>(s: Simple, rec: &'a LogRecord<'a>) -> Value<'a> {
    let tls = rec.tls;
    match s {
        Simple::RemoteAddr => Value::Ip,
        Simple::RemotePort => Value::Num(rec.peer.port().into()),
        Simple::RemoteUser => text(rec.remote_user),
        Simple::TimeLocal => Value::TimeLocal,
        Simple::TimeIso8601 => Value::TimeIso8601,
        Simple::Msec => Value::Msec,
        Simple::Request => Value::Request,
        Simple::RequestMethod => Value::Bytes(rec.method.as_str().as_bytes()),
        Simple::RequestUri => text(Some(request_uri(rec))),
        Simple::Uri => text(Some(rec.uri.path())),
        Simple::Args => text(rec.uri.query()),
        Simple::ServerProtocol => Value::Bytes(version_str(rec.version).as_bytes()),
        Simple::Status => Value::Status(rec.status),
        Simple::BodyBytesSent => Value::Num(rec.body_bytes_sent),
        Simple::BytesSent => rec.bytes_sent.map_or(Value::Absent, Value::Num),
        Simple::RequestLength => rec.request_length.map_or(Value::Absent, Value::Num),
        Simple::RequestTime => Value::Secs(rec.duration),
        Simple::UpstreamAddr => text(rec.upstream_addr),
        Simple::UpstreamStatus => rec
            .upstream_status
            .map_or(Value::Absent, |s| Value::Num(s.into())),
        Simple::UpstreamResponseTime => rec
            .upstream_response_time
            .map_or(Value::Absent, Value::Secs),
        Simple::UpstreamConnectTime => rec.upstream_connect_time.map_or(Value::Absent, Value::Secs),
        Simple::RequestId => text(Some(rec.request_id)),
        Simple::Host => match host(rec) {
            Some(h) if !h.is_empty() => Value::Host(h),
            _ => Value::Absent,
        },
        Simple::ServerName => text(rec.server_name),
        Simple::ServerPort => rec
            .local
            .map_or(Value::Absent, |a| Value::Num(a.port().into())),
        Simple::Scheme => text(Some(rec.scheme.unwrap_or(if tls.is_some() {
            "https"
        } else {
            "http"
        }))),
        Simple::SslProtocol => text(tls.map(|t| t.protocol)),
        Simple::SslCipher => text(tls.map(|t| t.cipher)),
        Simple::SslServerName => text(tls.and_then(|t| t.sni)),
        Simple::SslSessionReused => match tls {
            Some(t) => Value::Flag(t.session_reused, "r", "."),
            None => Value::Absent,
        },
        Simple::Route => text(rec.route),
        Simple::Connection => Value::Num(rec.connection),
        Simple::ConnectionRequests => Value::Num(rec.connection_requests),
        Simple::Pipe => Value::Flag(rec.pipelined, "p", "."),
        Simple::SslClientSDn => text(rec.ssl_client_s_dn),
        Simple::SslClientIDn => text(rec.ssl_client_i_dn),
        Simple::SslClientSerial => text(rec.ssl_client_serial),
        Simple::SslClientFingerprint => text(rec.ssl_client_fingerprint),
        Simple::SslClientVerify => text(rec.ssl_client_verify),
        Simple::SslClientVRemain => text(rec.ssl_client_v_remain),
        Simple::LimitReqStatus => text(rec.limit_req_status),
        Simple::LimitReqZone => text(rec.limit_req_zone),
        Simple::Consumer => text(rec.consumer),
    }
}

fn request_uri<'a>(rec: &'a LogRecord<'a>) -> &'a str {
    match rec.uri.path_and_query() {
        Some(pq) => pq.as_str(),
        // An authority-form target (CONNECT host:port).
        None => rec.uri.authority().map_or("", |a| a.as_str()),
    }
}

/// `$host`: the record's host, else the Host header, else the URI's; no port.
fn host<'a>(rec: &'a LogRecord<'a>) -> Option<&'a str> {
    let raw = rec
        .host
        .or_else(|| {
            rec.request_headers
                .values(&http::header::HOST)
                .next()
                .and_then(|v| v.to_str().ok())
        })
        .or_else(|| rec.uri.authority().map(|a| a.as_str()))?;
    let raw = raw.rsplit_once('@').map_or(raw, |(_, h)| h);
    Some(if let Some(rest) = raw.strip_prefix('[') {
        // [v6]:port → [v6]
        rest.find(']').map_or(raw, |end| &raw[..end + 2])
    } else {
        raw.split_once(':').map_or(raw, |(h, _)| h)
    })
}

fn version_str(v: Version) -> &'static str {
    match v {
        Version::HTTP_09 => "HTTP/0.9",
        Version::HTTP_10 => "HTTP/1.0",
        Version::HTTP_11 => "HTTP/1.1",
        Version::HTTP_2 => "HTTP/2.0",
        Version::HTTP_3 => "HTTP/3.0",
        _ => "HTTP/?",
    }
}

/// Calls `part` with the pieces of a string value, in order.
fn for_each_part(v: &Value<'_>, rec: &LogRecord<'_>, mut part: impl FnMut(&[u8])) {
    match v {
        Value::Bytes(b) => part(b),
        Value::Ip => match rec.peer_text {
            Some(t) => part(t.as_bytes()),
            None => {
                let mut buf = [0u8; 48];
                part(crate::forward::ip_text(rec.peer.ip(), &mut buf));
            }
        },
        Value::Request => {
            part(rec.method.as_str().as_bytes());
            part(b" ");
            part(request_uri(rec).as_bytes());
            part(b" ");
            part(version_str(rec.version).as_bytes());
        }
        Value::Host(h) => {
            let mut buf = [0u8; 64];
            for chunk in h.as_bytes().chunks(buf.len()) {
                let lower = &mut buf[..chunk.len()];
                lower.copy_from_slice(chunk);
                lower.make_ascii_lowercase();
                part(lower);
            }
        }
        Value::Header(map, name) => {
            // nginx joins repeated headers; cookies with "; ".
            let sep: &[u8] = if *name == http::header::COOKIE {
                b"; "
            } else {
                b", "
            };
            for (i, v) in map.values(name).enumerate() {
                if i > 0 {
                    part(sep);
                }
                part(v.as_bytes());
            }
        }
        Value::TimeLocal => with_clock(rec.start, |c| part(&c.local)),
        Value::TimeIso8601 => with_clock(rec.start, |c| part(&c.iso)),
        Value::Flag(yes, t, f) => part(if *yes { t } else { f }.as_bytes()),
        Value::Absent | Value::Num(_) | Value::Status(_) | Value::Secs(_) | Value::Msec => {}
    }
}

// === text lines ===

fn write_text(v: &Value<'_>, rec: &LogRecord<'_>, out: &mut Vec<u8>) {
    match v {
        Value::Absent => out.push(b'-'),
        Value::Num(n) => push_u64(out, *n),
        Value::Status(s) => {
            let s = (*s).min(999);
            out.extend_from_slice(&[
                b'0' + (s / 100) as u8,
                b'0' + (s / 10 % 10) as u8,
                b'0' + (s % 10) as u8,
            ]);
        }
        Value::Secs(d) => push_secs_ms(out, d.as_secs(), d.subsec_millis()),
        Value::Msec => {
            let d = since_epoch(rec.start);
            push_secs_ms(out, d.as_secs(), d.subsec_millis());
        }
        _ => for_each_part(v, rec, |p| push_escaped(out, p)),
    }
}

/// nginx's default escaping: `"`, `\`, control bytes and bytes from 0x7f
/// up become `\xHH`.
fn push_escaped(out: &mut Vec<u8>, b: &[u8]) {
    let needs = |c: u8| c == b'"' || c == b'\\' || !(0x20..0x7f).contains(&c);
    if is_plain(b) {
        out.extend_from_slice(b);
        return;
    }
    for &c in b {
        if needs(c) {
            out.extend_from_slice(&[b'\\', b'x', HEX[(c >> 4) as usize], HEX[(c & 15) as usize]]);
        } else {
            out.push(c);
        }
    }
}

const HEX: &[u8; 16] = b"0123456789ABCDEF";

/// True when no byte of `b` needs escaping. Eight bytes at a time (most
/// values are plain ASCII): a word is flagged when a byte may be below 0x20,
/// at or above 0x7f, `"` or `\`. The tests can flag a plain word only when
/// another of its bytes really matches, so a flag is never wrong about the
/// word as a whole.
fn is_plain(b: &[u8]) -> bool {
    const L: u64 = 0x0101_0101_0101_0101;
    const H: u64 = 0x8080_8080_8080_8080;
    let zero = |v: u64| v.wrapping_sub(L) & !v & H;
    let mut words = b.chunks_exact(8);
    for w in &mut words {
        let w = u64::from_le_bytes([w[0], w[1], w[2], w[3], w[4], w[5], w[6], w[7]]);
        let below_space = w.wrapping_sub(L * 0x20) & !w & H;
        let flagged = below_space
            | (w & H)
            | zero(w ^ (L * 0x7f))
            | zero(w ^ (L * u64::from(b'"')))
            | zero(w ^ (L * u64::from(b'\\')));
        if flagged != 0 {
            return false;
        }
    }
    words
        .remainder()
        .iter()
        .all(|&c| c != b'"' && c != b'\\' && (0x20..0x7f).contains(&c))
}

fn push_u64(out: &mut Vec<u8>, mut n: u64) {
    let mut buf = [0u8; 20];
    let mut i = buf.len();
    loop {
        i -= 1;
        buf[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    out.extend_from_slice(&buf[i..]);
}

fn push_secs_ms(out: &mut Vec<u8>, secs: u64, ms: u32) {
    push_u64(out, secs);
    out.extend_from_slice(&[
        b'.',
        b'0' + (ms / 100) as u8,
        b'0' + (ms / 10 % 10) as u8,
        b'0' + (ms % 10) as u8,
    ]);
}

// === JSON lines ===

fn render_json(rec: &LogRecord<'_>, out: &mut Vec<u8>) {
    out.push(b'{');
    let mut first = true;
    let mut field = |out: &mut Vec<u8>, key: &str, v: Value<'_>| {
        if matches!(v, Value::Absent) {
            return;
        }
        if !first {
            out.push(b',');
        }
        first = false;
        out.push(b'"');
        out.extend_from_slice(key.as_bytes());
        out.extend_from_slice(b"\":");
        write_json(&v, rec, out);
    };
    for (key, s) in JSON_FIELDS {
        field(out, key, simple_value(*s, rec));
    }
    for (key, name) in JSON_HEADERS.iter() {
        field(out, key, header(rec.request_headers, name));
    }
    out.extend_from_slice(b"}\n");
}

fn write_json(v: &Value<'_>, rec: &LogRecord<'_>, out: &mut Vec<u8>) {
    match v {
        Value::Absent => out.extend_from_slice(b"null"),
        Value::Num(n) => push_u64(out, *n),
        Value::Status(s) => push_u64(out, (*s).into()),
        Value::Secs(d) => push_secs_ms(out, d.as_secs(), d.subsec_millis()),
        Value::Msec => {
            let d = since_epoch(rec.start);
            push_secs_ms(out, d.as_secs(), d.subsec_millis());
        }
        Value::Flag(b, _, _) => out.extend_from_slice(if *b { b"true" } else { b"false" }),
        _ => {
            out.push(b'"');
            for_each_part(v, rec, |p| push_json_escaped(out, p));
            out.push(b'"');
        }
    }
}

/// JSON string escaping. Bytes that are not UTF-8 (header values may carry
/// any obs-text) are kept visible as the four characters `\xHH`.
fn push_json_escaped(out: &mut Vec<u8>, b: &[u8]) {
    for chunk in b.utf8_chunks() {
        for &c in chunk.valid().as_bytes() {
            match c {
                b'"' => out.extend_from_slice(b"\\\""),
                b'\\' => out.extend_from_slice(b"\\\\"),
                b'\n' => out.extend_from_slice(b"\\n"),
                b'\r' => out.extend_from_slice(b"\\r"),
                b'\t' => out.extend_from_slice(b"\\t"),
                0..0x20 | 0x7f => out.extend_from_slice(&[
                    b'\\',
                    b'u',
                    b'0',
                    b'0',
                    HEX[(c >> 4) as usize],
                    HEX[(c & 15) as usize],
                ]),
                _ => out.push(c),
            }
        }
        for &c in chunk.invalid() {
            out.extend_from_slice(&[
                b'\\',
                b'\\',
                b'x',
                HEX[(c >> 4) as usize],
                HEX[(c & 15) as usize],
            ]);
        }
    }
}

// === time stamps ===

/// `$time_local` and `$time_iso8601` for one second, per thread.
struct Clock {
    secs: u64,
    local: [u8; 26],
    iso: [u8; 25],
}

thread_local! {
    static CLOCK: RefCell<Option<Clock>> = const { RefCell::new(None) };
}

fn since_epoch(t: SystemTime) -> Duration {
    t.duration_since(UNIX_EPOCH).unwrap_or_default()
}

fn with_clock<R>(t: SystemTime, f: impl FnOnce(&Clock) -> R) -> R {
    let secs = since_epoch(t).as_secs();
    CLOCK.with(|c| {
        let mut c = c.borrow_mut();
        if c.as_ref().is_none_or(|c| c.secs != secs) {
            *c = Some(Clock::at(secs));
        }
        f(c.as_ref().expect("just set"))
    })
}

impl Clock {
    fn at(secs: u64) -> Clock {
        const MONTHS: [&[u8; 3]; 12] = [
            b"Jan", b"Feb", b"Mar", b"Apr", b"May", b"Jun", b"Jul", b"Aug", b"Sep", b"Oct", b"Nov",
            b"Dec",
        ];
        let t = i64::try_from(secs)
            .ok()
            .and_then(|s| time::OffsetDateTime::from_unix_timestamp(s).ok())
            .unwrap_or(time::OffsetDateTime::UNIX_EPOCH);
        let two = |n: u8| [b'0' + n / 10, b'0' + n % 10];
        let year = t.year().clamp(0, 9999) as u16;
        let y = [
            b'0' + (year / 1000) as u8,
            b'0' + (year / 100 % 10) as u8,
            b'0' + (year / 10 % 10) as u8,
            b'0' + (year % 10) as u8,
        ];
        let (mo, d, h, mi, s) = (
            u8::from(t.month()),
            two(t.day()),
            two(t.hour()),
            two(t.minute()),
            two(t.second()),
        );
        let mon = MONTHS[usize::from(mo - 1)];
        let mut local = [0u8; 26];
        // 28/Nov/2026:23:04:02 +0000
        local[..2].copy_from_slice(&d);
        local[2] = b'/';
        local[3..6].copy_from_slice(mon);
        local[6] = b'/';
        local[7..11].copy_from_slice(&y);
        local[11] = b':';
        local[12..14].copy_from_slice(&h);
        local[14] = b':';
        local[15..17].copy_from_slice(&mi);
        local[17] = b':';
        local[18..20].copy_from_slice(&s);
        local[20..].copy_from_slice(b" +0000");
        let mut iso = [0u8; 25];
        // 2026-11-28T23:04:02+00:00
        iso[..4].copy_from_slice(&y);
        iso[4] = b'-';
        iso[5..7].copy_from_slice(&two(mo));
        iso[7] = b'-';
        iso[8..10].copy_from_slice(&d);
        iso[10] = b'T';
        iso[11..13].copy_from_slice(&h);
        iso[13] = b':';
        iso[14..16].copy_from_slice(&mi);
        iso[16] = b':';
        iso[17..19].copy_from_slice(&s);
        iso[19..].copy_from_slice(b"+00:00");
        Clock { secs, local, iso }
    }
}

#[cfg(test)]
mod tests {
    use std::net::SocketAddr;
    use std::time::{Duration, UNIX_EPOCH};

    use http::{HeaderMap, HeaderValue, Method, Uri, Version};

    use super::*;

    use crate::accesslog::{LogRecord, TlsLogInfo};

    #[test]
    fn is_plain_agrees_with_the_byte_rule() {
        let bytewise = |b: &[u8]| {
            b.iter()
                .all(|&c| c != b'"' && c != b'\\' && (0x20..0x7f).contains(&c))
        };
        let base = b"GET /v1/items?id=42 HTTP/1.1 curl/8".to_vec();
        assert!(is_plain(&base));
        for len in 0..base.len() {
            let s = &base[..len];
            for pos in 0..len {
                for c in 0..=255u8 {
                    let mut v = s.to_vec();
                    v[pos] = c;
                    assert_eq!(is_plain(&v), bytewise(&v), "byte {c:#x} at {pos} of {len}");
                }
            }
        }
        // Several special bytes in one word, and a plain byte next to a borrow.
        for v in [
            &b"\x00\x01aaaaaa"[..],
            b"a\"b\\cdefg",
            b"\x7f\x80\xffabcde",
            b"\x1f !~~~~~~",
        ] {
            assert_eq!(is_plain(v), bytewise(v), "{v:?}");
        }
    }

    /// 28/Nov/2026:23:04:02 UTC.
    const T: u64 = 1_795_907_042;

    struct Sample {
        method: Method,
        uri: Uri,
        req: HeaderMap,
        resp: HeaderMap,
        tls: TlsLogInfo<'static>,
    }

    fn sample() -> Sample {
        let mut req = HeaderMap::new();
        req.insert("referer", HeaderValue::from_static("https://example.com/"));
        req.insert("user-agent", HeaderValue::from_static("curl/8.5.0"));
        req.insert("host", HeaderValue::from_static("API.Example.com:8443"));
        let mut resp = HeaderMap::new();
        resp.insert("content-type", HeaderValue::from_static("application/json"));
        Sample {
            method: Method::GET,
            uri: Uri::from_static("/api/v1/items?limit=10"),
            req,
            resp,
            tls: TlsLogInfo {
                protocol: "TLSv1.3",
                cipher: "TLS_AES_128_GCM_SHA256",
                sni: Some("api.example.com"),
                session_reused: false,
            },
        }
    }

    fn record(s: &Sample) -> LogRecord<'_> {
        let peer: SocketAddr = "203.0.113.7:51234".parse().unwrap();
        let mut r = LogRecord::new(peer, &s.method, &s.uri, Version::HTTP_11, &s.req);
        r.response_headers = &s.resp;
        r.status = 200;
        r.body_bytes_sent = 1234;
        r.start = UNIX_EPOCH + Duration::from_millis(T * 1000 + 250);
        r.duration = Duration::from_micros(45_200);
        r.upstream_addr = Some("10.0.0.5:8080");
        r.upstream_status = Some(200);
        r.upstream_connect_time = Some(Duration::from_millis(2));
        r.upstream_response_time = Some(Duration::from_micros(41_900));
        r.request_id = "0f3c2a";
        r.tls = Some(&s.tls);
        r.route = Some("items");
        r.connection = 17;
        r.connection_requests = 3;
        r
    }

    fn render(f: &LogFormat, r: &LogRecord<'_>) -> String {
        let mut out = Vec::new();
        f.render(r, &mut out);
        String::from_utf8(out).unwrap()
    }

    fn text(fmt: &str, r: &LogRecord<'_>) -> String {
        render(&LogFormat::parse(fmt).unwrap(), r)
    }

    #[test]
    fn api_log_byte_for_byte() {
        let s = sample();
        assert_eq!(
            render(&LogFormat::api_log(), &record(&s)),
            "203.0.113.7 - - [28/Nov/2026:23:04:02 +0000] \"GET /api/v1/items?limit=10 HTTP/1.1\" \
             200 1234 \"https://example.com/\" \"curl/8.5.0\" rt=0.045 uct=\"0.002\" urt=\"0.041\" \
             ssl=TLSv1.3/TLS_AES_128_GCM_SHA256\n"
        );
    }

    #[test]
    fn api_log_without_tls_or_upstream() {
        let s = sample();
        let mut r = record(&s);
        r.tls = None;
        r.upstream_connect_time = None;
        r.upstream_response_time = None;
        r.remote_user = Some("alice");
        assert_eq!(
            render(&LogFormat::api_log(), &r),
            "203.0.113.7 - alice [28/Nov/2026:23:04:02 +0000] \"GET /api/v1/items?limit=10 HTTP/1.1\" \
             200 1234 \"https://example.com/\" \"curl/8.5.0\" rt=0.045 uct=\"-\" urt=\"-\" ssl=-/-\n"
        );
    }

    #[test]
    fn combined_byte_for_byte() {
        let mut s = sample();
        s.req.remove("referer");
        let mut r = record(&s);
        r.status = 404;
        r.body_bytes_sent = 0;
        assert_eq!(
            render(&LogFormat::combined(), &r),
            "203.0.113.7 - - [28/Nov/2026:23:04:02 +0000] \"GET /api/v1/items?limit=10 HTTP/1.1\" \
             404 0 \"-\" \"curl/8.5.0\"\n"
        );
    }

    #[test]
    fn unknown_variable_names_it_and_suggests() {
        let e = LogFormat::parse("$remote_adr - $status").unwrap_err();
        assert_eq!(
            e.to_string(),
            "unknown variable $remote_adr at column 1; did you mean $remote_addr?"
        );
        assert_eq!(
            e,
            FormatError::UnknownVariable {
                name: "remote_adr".into(),
                offset: 0,
                suggestion: Some("remote_addr"),
            }
        );
        let e = LogFormat::parse("[$time_locl] ${stauts}").unwrap_err();
        assert_eq!(
            e.to_string(),
            "unknown variable $time_locl at column 2; did you mean $time_local?"
        );
        let e = LogFormat::parse("ok $status ${stauts}").unwrap_err();
        assert_eq!(
            e.to_string(),
            "unknown variable $stauts at column 12; did you mean $status?"
        );
        let e = LogFormat::parse("x $frobnicator_quux").unwrap_err();
        assert_eq!(
            e.to_string(),
            "unknown variable $frobnicator_quux at column 3"
        );
    }

    #[test]
    fn dollar_at_end_and_unclosed_brace() {
        assert_eq!(
            LogFormat::parse("$status $").unwrap_err(),
            FormatError::MissingName { offset: 8 }
        );
        assert_eq!(
            LogFormat::parse("a $ b").unwrap_err(),
            FormatError::MissingName { offset: 2 }
        );
        assert_eq!(
            LogFormat::parse("${}").unwrap_err(),
            FormatError::MissingName { offset: 0 }
        );
        let e = LogFormat::parse("rt=${unclosed").unwrap_err();
        assert_eq!(e, FormatError::UnclosedBrace { offset: 3 });
        assert!(e.to_string().contains("column 4"), "{e}");
        assert_eq!(
            LogFormat::parse("${remote addr}").unwrap_err(),
            FormatError::UnclosedBrace { offset: 0 }
        );
        assert!(matches!(
            LogFormat::parse("$http_").unwrap_err(),
            FormatError::UnknownVariable { .. }
        ));
    }

    #[test]
    fn braces_headers_and_case() {
        let s = sample();
        let r = record(&s);
        assert_eq!(text("${status}ms $STATUS", &r), "200ms 200\n");
        assert_eq!(
            text(
                "$http_user_agent|$sent_http_content_type|$http_x_missing",
                &r
            ),
            "curl/8.5.0|application/json|-\n"
        );
        assert_eq!(text("literal only", &r), "literal only\n");
        assert_eq!(text("", &r), "\n");
    }

    #[test]
    fn every_variable_renders() {
        let s = sample();
        let mut r = record(&s);
        r.local = Some("192.0.2.1:443".parse().unwrap());
        r.bytes_sent = Some(1400);
        r.request_length = Some(210);
        r.server_name = Some("api");
        let all: String = VARIABLES
            .iter()
            .map(|(n, _)| format!("{n}=${n}"))
            .collect::<Vec<_>>()
            .join(" ");
        let line = text(&all, &r);
        for want in [
            "remote_addr=203.0.113.7 ",
            "remote_port=51234 ",
            "remote_user=- ",
            "time_iso8601=2026-11-28T23:04:02+00:00 ",
            "msec=1795907042.250 ",
            "request_method=GET ",
            "request_uri=/api/v1/items?limit=10 ",
            "uri=/api/v1/items ",
            "args=limit=10 ",
            "server_protocol=HTTP/1.1 ",
            "bytes_sent=1400 ",
            "request_length=210 ",
            "upstream_addr=10.0.0.5:8080 ",
            "upstream_status=200 ",
            "request_id=0f3c2a ",
            "host=api.example.com ",
            "server_name=api ",
            "server_port=443 ",
            "scheme=https ",
            "ssl_server_name=api.example.com ",
            "ssl_session_reused=. ",
            "route=items ",
            "connection=17 ",
            "connection_requests=3 ",
            "pipe=. ",
            "ssl_client_s_dn=- ",
            "ssl_client_verify=- ",
            "limit_req_status=- ",
            "consumer=-\n",
        ] {
            assert!(line.contains(want), "{want:?} not in {line:?}");
        }
    }

    #[test]
    fn placeholders_print_what_later_features_fill() {
        let s = sample();
        let mut r = record(&s);
        let f = "$ssl_client_s_dn|$ssl_client_i_dn|$ssl_client_serial|$ssl_client_fingerprint|\
                 $ssl_client_verify|$ssl_client_v_remain|$limit_req_status|$limit_req_zone|$consumer";
        assert_eq!(text(f, &r), "-|-|-|-|-|-|-|-|-\n");
        r.ssl_client_s_dn = Some("CN=client,O=Acme");
        r.ssl_client_i_dn = Some("CN=Intermediate");
        r.ssl_client_serial = Some("1A2B");
        r.ssl_client_fingerprint = Some("ab12");
        r.ssl_client_verify = Some("SUCCESS");
        r.ssl_client_v_remain = Some("89");
        r.limit_req_status = Some("PASSED");
        r.limit_req_zone = Some("per_ip");
        r.consumer = Some("acme");
        assert_eq!(
            text(f, &r),
            "CN=client,O=Acme|CN=Intermediate|1A2B|ab12|SUCCESS|89|PASSED|per_ip|acme\n"
        );
    }

    #[test]
    fn escaping_like_nginx() {
        let mut s = sample();
        s.req.insert(
            "user-agent",
            HeaderValue::from_bytes(b"a \"quoted\" \\ back\ttab \xff\x80").unwrap(),
        );
        let mut r = record(&s);
        r.remote_user = Some("bob\nevil=1");
        assert_eq!(
            text("\"$http_user_agent\" $remote_user", &r),
            "\"a \\x22quoted\\x22 \\x5C back\\x09tab \\xFF\\x80\" bob\\x0Aevil=1\n"
        );
        // Literal text is the operator's: written as is.
        assert_eq!(text("é\"$status", &r), "é\"200\n");
    }

    #[test]
    fn repeated_headers_are_joined() {
        let mut s = sample();
        s.req
            .append("x-forwarded-for", HeaderValue::from_static("198.51.100.1"));
        s.req
            .append("x-forwarded-for", HeaderValue::from_static("10.1.1.1"));
        s.req.append("cookie", HeaderValue::from_static("a=1"));
        s.req.append("cookie", HeaderValue::from_static("b=2"));
        let r = record(&s);
        assert_eq!(
            text("$http_x_forwarded_for|$http_cookie", &r),
            "198.51.100.1, 10.1.1.1|a=1; b=2\n"
        );
    }

    #[test]
    fn host_request_and_status_edge_cases() {
        let mut s = sample();
        s.uri = Uri::from_static("https://API.example.com/h2/path?x=1");
        s.req.remove("host");
        let mut r = record(&s);
        r.version = Version::HTTP_2;
        r.status = 0;
        r.tls = None;
        r.request_id = "";
        assert_eq!(
            text(
                "$host \"$request\" $status $scheme $request_id $ssl_session_reused",
                &r
            ),
            "api.example.com \"GET /h2/path?x=1 HTTP/2.0\" 000 http - -\n"
        );
        r.host = Some("[2001:DB8::1]:8443");
        assert_eq!(text("$host", &r), "[2001:db8::1]\n");
        r.peer = "[2001:db8::7]:1".parse().unwrap();
        assert_eq!(text("$remote_addr $remote_port", &r), "2001:db8::7 1\n");
    }

    #[test]
    fn time_cache_follows_the_clock() {
        let s = sample();
        let mut r = record(&s);
        let f = LogFormat::parse("$time_local $time_iso8601").unwrap();
        assert_eq!(
            render(&f, &r),
            "28/Nov/2026:23:04:02 +0000 2026-11-28T23:04:02+00:00\n"
        );
        r.start = UNIX_EPOCH + Duration::from_secs(T + 3600 * 24 * 34 - 2);
        assert_eq!(
            render(&f, &r),
            "01/Jan/2027:23:04:00 +0000 2027-01-01T23:04:00+00:00\n"
        );
        r.start = UNIX_EPOCH;
        assert_eq!(
            render(&f, &r),
            "01/Jan/1970:00:00:00 +0000 1970-01-01T00:00:00+00:00\n"
        );
    }

    #[test]
    fn json_lines_parse_back() {
        assert_eq!(LogFormat::parse("json").unwrap(), LogFormat::Json);
        let mut s = sample();
        s.req.insert(
            "user-agent",
            HeaderValue::from_bytes(b"q\"b\\s\ttab \xff end").unwrap(),
        );
        let mut r = record(&s);
        r.remote_user = Some("line\nbreak \u{1} \u{e9}");
        let line = render(&LogFormat::Json, &r);
        assert!(line.ends_with("}\n"));
        assert_eq!(line.matches('\n').count(), 1);
        let v: serde_json::Value = serde_json::from_str(&line).unwrap();
        assert_eq!(v["remote_addr"], "203.0.113.7");
        assert_eq!(v["remote_port"], 51234);
        assert_eq!(v["status"], 200);
        assert_eq!(v["request_time"], 0.045);
        assert_eq!(v["time_iso8601"], "2026-11-28T23:04:02+00:00");
        assert_eq!(v["request_uri"], "/api/v1/items?limit=10");
        assert_eq!(v["host"], "api.example.com");
        assert_eq!(v["ssl_session_reused"], false);
        assert_eq!(v["http_user_agent"], "q\"b\\s\ttab \\xFF end");
        assert_eq!(v["remote_user"], "line\nbreak \u{1} \u{e9}");
        assert_eq!(v["connection"], 17);
        // Absent fields are left out.
        assert!(v.get("consumer").is_none());
        assert!(v.get("http_x_forwarded_for").is_none());
        assert!(v.get("bytes_sent").is_none());
    }

    #[test]
    fn pick_request_headers_keeps_only_what_is_printed() {
        let mut s = sample();
        s.req
            .insert("authorization", HeaderValue::from_static("Bearer secret"));
        s.req
            .append("x-forwarded-for", HeaderValue::from_static("1.1.1.1"));
        s.req
            .append("x-forwarded-for", HeaderValue::from_static("2.2.2.2"));
        let picked = LogFormat::parse("$http_user_agent $http_x_forwarded_for $http_user_agent")
            .unwrap()
            .pick_request_headers(&s.req);
        assert_eq!(picked.len(), 3);
        assert!(picked.get("authorization").is_none());
        let picked = LogFormat::Json.pick_request_headers(&s.req);
        assert!(picked.get("authorization").is_none());
        assert_eq!(picked.get("referer").unwrap(), "https://example.com/");
        assert_eq!(picked.get("host").unwrap(), "API.Example.com:8443");
        assert!(LogFormat::parse("$status")
            .unwrap()
            .pick_request_headers(&s.req)
            .is_empty());
    }
}
