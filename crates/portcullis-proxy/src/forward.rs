//! Header rewriting between client and upstream.
//!
//! Owns what crosses the gateway in headers: hop-by-hop removal (both ways),
//! the X-Forwarded-* family and X-Real-IP with trusted-proxy handling,
//! X-Request-Id, and the removal of identity headers a client must never be
//! able to forge. It changes headers only; bodies and URIs are the stack's.

use std::net::IpAddr;

use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use ipnet::IpNet;

pub static X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
pub static X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");
pub static X_FORWARDED_HOST: HeaderName = HeaderName::from_static("x-forwarded-host");
pub static X_REAL_IP: HeaderName = HeaderName::from_static("x-real-ip");
pub static X_REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");
static X_POWERED_BY: HeaderName = HeaderName::from_static("x-powered-by");

/// Hop-by-hop headers (RFC 9110 §7.6.1 and the usual non-standard ones).
static HOP_BY_HOP: [HeaderName; 8] = [
    HeaderName::from_static("connection"),
    HeaderName::from_static("keep-alive"),
    HeaderName::from_static("proxy-connection"),
    HeaderName::from_static("te"),
    HeaderName::from_static("trailer"),
    HeaderName::from_static("transfer-encoding"),
    HeaderName::from_static("upgrade"),
    HeaderName::from_static("http2-settings"),
];

/// Headers that carry an identity the gateway asserts; clients' copies are always dropped.
static IDENTITY_HEADERS: [HeaderName; 16] = [
    HeaderName::from_static("x-ssl-client-cert"),
    HeaderName::from_static("x-ssl-client-dn"),
    HeaderName::from_static("x-ssl-client-verify"),
    HeaderName::from_static("x-ssl-client-serial"),
    HeaderName::from_static("x-ssl-client-fingerprint"),
    HeaderName::from_static("x-ssl-client-not-after"),
    HeaderName::from_static("x-ssl-client-i-dn"),
    HeaderName::from_static("x-ssl-client-s-dn"),
    HeaderName::from_static("x-client-cert"),
    HeaderName::from_static("x-client-dn"),
    HeaderName::from_static("x-forwarded-client-cert"),
    HeaderName::from_static("client-cert"),
    HeaderName::from_static("client-cert-chain"),
    HeaderName::from_static("x-consumer"),
    HeaderName::from_static("x-authenticated-user"),
    HeaderName::from_static("x-jwt-claims"),
];

/// Method-override headers, honoured by some frameworks: a client could turn
/// an allowed GET into a DELETE behind the gateway's back.
static METHOD_OVERRIDE: [HeaderName; 3] = [
    HeaderName::from_static("x-http-method-override"),
    HeaderName::from_static("x-http-method"),
    HeaderName::from_static("x-method-override"),
];

/// Removes hop-by-hop headers, including those named in `Connection`.
/// With `keep_upgrade`, `Connection: upgrade` and `Upgrade` survive.
pub fn strip_hop_by_hop(h: &mut HeaderMap, keep_upgrade: bool) {
    strip_connection_tokens(h);
    remove_where(h, |n| is_hop_by_hop(n, keep_upgrade));
    if keep_upgrade {
        h.insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
    }
}

fn is_hop_by_hop(n: &HeaderName, keep_upgrade: bool) -> bool {
    HOP_BY_HOP.contains(n) && !(keep_upgrade && n == header::UPGRADE)
}

/// Removes the headers `Connection` names. Tokens that are hop-by-hop anyway
/// (`keep-alive`, `upgrade`) are left to the caller's pass, and `close` names
/// no header: the common `Connection` values build no name at all.
fn strip_connection_tokens(h: &mut HeaderMap) {
    let Some(list) = h.get(header::CONNECTION).and_then(|v| v.to_str().ok()) else {
        return;
    };
    // Names to remove, parsed first: the map cannot change while `list` borrows it.
    let mut named: smallvec::SmallVec<[HeaderName; 4]> = smallvec::SmallVec::new();
    for t in list.split(',').map(str::trim) {
        if t.is_empty()
            || t.eq_ignore_ascii_case("close")
            || HOP_BY_HOP
                .iter()
                .any(|n| t.eq_ignore_ascii_case(n.as_str()))
        {
            continue;
        }
        // Never let Connection remove the headers the gateway sets itself.
        if [
            "x-forwarded-for",
            "x-real-ip",
            "x-forwarded-proto",
            "x-forwarded-host",
            "x-request-id",
            "host",
        ]
        .iter()
        .any(|k| t.eq_ignore_ascii_case(k))
        {
            continue;
        }
        if let Ok(n) = HeaderName::from_bytes(t.as_bytes()) {
            named.push(n);
        }
    }
    for n in named {
        h.remove(n);
    }
}

/// The header names no client may send upstream: the built-in identity and
/// method-override names plus the identity and consumer headers the routes
/// configure. Built once per runtime. A request's names are filtered by
/// length and first byte before any comparison, so the usual headers (Host,
/// User-Agent, Accept, ...) cost two bit tests each and nothing is hashed
/// unless a header is removed.
#[derive(Debug, Clone)]
pub struct StripSet {
    names: Vec<HeaderName>,
    /// Bit `min(len, 63)` for every name's length.
    lens: u64,
    /// Bit `b` for every name's first byte `b`.
    firsts: [u64; 4],
}

impl StripSet {
    pub fn new(extra: &[HeaderName]) -> StripSet {
        let mut set = StripSet {
            names: Vec::new(),
            lens: 0,
            firsts: [0; 4],
        };
        for n in IDENTITY_HEADERS
            .iter()
            .chain(METHOD_OVERRIDE.iter())
            .chain(extra)
        {
            if set.names.contains(n) {
                continue;
            }
            let b = n.as_str().as_bytes();
            set.lens |= 1 << b.len().min(63);
            set.firsts[usize::from(b[0] >> 6)] |= 1 << (b[0] & 63);
            set.names.push(n.clone());
        }
        set
    }

    fn matches(&self, n: &HeaderName) -> bool {
        let b = n.as_str().as_bytes();
        let Some(&first) = b.first() else {
            return false;
        };
        self.lens & (1 << b.len().min(63)) != 0
            && self.firsts[usize::from(first >> 6)] & (1 << (first & 63)) != 0
            && self.names.contains(n)
    }

    /// Drops every header of the set a client sent.
    pub fn strip(&self, h: &mut HeaderMap) {
        remove_where(h, |n| self.matches(n));
    }
}

/// Removes every header whose name matches. One pass over the (few) names a
/// request has instead of one hashed lookup per listed name: on the hot path
/// nothing matches and nothing is hashed.
fn remove_where(h: &mut HeaderMap, pred: impl Fn(&HeaderName) -> bool) {
    while let Some(n) = h.keys().find(|n| pred(n)).cloned() {
        h.remove(n);
    }
}

fn is_trusted(ip: IpAddr, trusted: &[IpNet]) -> bool {
    trusted.iter().any(|n| n.contains(&ip))
}

/// The client's address: the peer, or, when the peer is a trusted proxy, the
/// right-most untrusted address of X-Forwarded-For (nginx's real_ip_recursive).
pub fn client_ip(peer: IpAddr, h: &HeaderMap, trusted: &[IpNet]) -> IpAddr {
    if trusted.is_empty() || !is_trusted(peer, trusted) {
        return peer;
    }
    let mut addrs: Vec<IpAddr> = Vec::new();
    for v in h.get_all(&X_FORWARDED_FOR) {
        if let Ok(s) = v.to_str() {
            addrs.extend(s.split(',').filter_map(|p| p.trim().parse::<IpAddr>().ok()));
        }
    }
    addrs
        .iter()
        .rev()
        .copied()
        .find(|ip| !is_trusted(*ip, trusted))
        .or_else(|| addrs.first().copied())
        .unwrap_or(peer)
}

/// An address as a header value ("203.0.113.7", "2001:db8::7").
pub fn ip_value(ip: IpAddr) -> HeaderValue {
    let mut buf = [0u8; 48];
    HeaderValue::from_bytes(ip_text(ip, &mut buf)).unwrap_or_else(|_| HeaderValue::from_static("-"))
}

/// An address as text in `buf`, without allocating.
pub fn ip_text(ip: IpAddr, buf: &mut [u8; 48]) -> &[u8] {
    use std::io::Write;
    let mut cur = std::io::Cursor::new(&mut buf[..]);
    // An IPv6 address is at most 45 bytes; the write cannot fail.
    let _ = write!(cur, "{ip}");
    let n = cur.position() as usize;
    &buf[..n]
}

/// Sets X-Forwarded-For, X-Real-IP, X-Forwarded-Proto and X-Forwarded-Host.
/// Incoming X-Forwarded-* values are kept only from trusted proxies.
/// `peer_value` is `peer` as a header value (made once per connection).
pub fn set_forwarded(
    h: &mut HeaderMap,
    peer: IpAddr,
    peer_value: &HeaderValue,
    client: IpAddr,
    host: Option<&HeaderValue>,
    trusted: &[IpNet],
) {
    let from_trusted = !trusted.is_empty() && is_trusted(peer, trusted);
    let mut xff = String::new();
    if from_trusted {
        for v in h.get_all(&X_FORWARDED_FOR) {
            if let Ok(s) = v.to_str() {
                if !xff.is_empty() {
                    xff.push_str(", ");
                }
                xff.push_str(s.trim());
            }
        }
    }
    // Room for what is added below: one growth of the map at most.
    h.reserve(4);
    let xff_value = if xff.is_empty() {
        Some(peer_value.clone())
    } else {
        xff.push_str(", ");
        xff.push_str(peer_value.to_str().unwrap_or_default());
        HeaderValue::from_str(&xff).ok()
    };
    // `insert` replaces every value the client sent.
    match xff_value {
        Some(v) => {
            h.insert(X_FORWARDED_FOR.clone(), v);
        }
        None => {
            h.remove(&X_FORWARDED_FOR);
        }
    }
    let real_ip = if client == peer {
        peer_value.clone()
    } else {
        ip_value(client)
    };
    h.insert(X_REAL_IP.clone(), real_ip);
    if !(from_trusted && h.contains_key(&X_FORWARDED_PROTO)) {
        h.insert(X_FORWARDED_PROTO.clone(), HeaderValue::from_static("https"));
    }
    match host {
        Some(v) if !(from_trusted && h.contains_key(&X_FORWARDED_HOST)) => {
            h.insert(X_FORWARDED_HOST.clone(), v.clone());
        }
        Some(_) => {}
        None => {
            if !from_trusted {
                h.remove(&X_FORWARDED_HOST);
            }
        }
    }
}

/// A request id the client sent, if it is safe to keep (1–128 of `[A-Za-z0-9._:-]`).
pub fn valid_request_id(v: &HeaderValue) -> Option<&str> {
    let s = v.to_str().ok()?;
    (!s.is_empty()
        && s.len() <= 128
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b':')))
    .then_some(s)
}

/// A request's id ($request_id, X-Request-Id both ways): the client's when
/// it is safe to keep, else 32 new hex digits, like nginx's. Held as a header
/// value so that putting it on the upstream request and on the response
/// copies nothing.
#[derive(Clone, Debug)]
pub struct RequestId(HeaderValue);

impl RequestId {
    /// The id of a request with these headers.
    pub fn of(h: &HeaderMap) -> RequestId {
        match h.get(&X_REQUEST_ID) {
            Some(v) if valid_request_id(v).is_some() => RequestId(v.clone()),
            _ => RequestId::generate(),
        }
    }

    /// 128 random bits in lower-case hex.
    pub fn generate() -> RequestId {
        use rand::Rng;
        const HEX: &[u8; 16] = b"0123456789abcdef";
        let v: u128 = rand::rng().random();
        let mut out = [0u8; 32];
        for (i, b) in out.iter_mut().enumerate() {
            *b = HEX[(v >> (124 - 4 * i) & 0xf) as usize];
        }
        // One allocation, shared by every clone; hex digits are always a valid value.
        RequestId(
            HeaderValue::from_maybe_shared(bytes::Bytes::from_owner(out))
                .unwrap_or_else(|_| HeaderValue::from_static("-")),
        )
    }

    pub fn as_str(&self) -> &str {
        // Only visible ASCII gets in (valid_request_id, hex digits).
        self.0.to_str().unwrap_or("-")
    }

    pub fn header_value(&self) -> HeaderValue {
        self.0.clone()
    }
}

impl std::ops::Deref for RequestId {
    type Target = str;
    fn deref(&self) -> &str {
        self.as_str()
    }
}

impl std::fmt::Display for RequestId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Cleans an upstream response's headers before they reach the client.
pub fn clean_response_headers(h: &mut HeaderMap, keep_upgrade: bool) {
    strip_connection_tokens(h);
    remove_where(h, |n| {
        is_hop_by_hop(n, keep_upgrade) || n == header::SERVER || n == X_POWERED_BY
    });
    if keep_upgrade {
        h.insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn nets(v: &[&str]) -> Vec<IpNet> {
        v.iter().map(|s| s.parse().unwrap()).collect()
    }

    #[test]
    fn xff_from_untrusted_is_replaced() {
        let mut h = HeaderMap::new();
        h.insert("x-forwarded-for", HeaderValue::from_static("6.6.6.6"));
        let peer: IpAddr = "203.0.113.9".parse().unwrap();
        let client = client_ip(peer, &h, &nets(&["10.0.0.0/8"]));
        assert_eq!(client, peer);
        set_forwarded(
            &mut h,
            peer,
            &ip_value(peer),
            client,
            Some(&HeaderValue::from_static("api.example.com")),
            &nets(&["10.0.0.0/8"]),
        );
        assert_eq!(h["x-forwarded-for"], "203.0.113.9");
        assert_eq!(h["x-real-ip"], "203.0.113.9");
        assert_eq!(h["x-forwarded-proto"], "https");
        assert_eq!(h["x-forwarded-host"], "api.example.com");
    }

    #[test]
    fn xff_from_trusted_is_appended() {
        let mut h = HeaderMap::new();
        h.insert(
            "x-forwarded-for",
            HeaderValue::from_static("198.51.100.1, 10.0.0.5"),
        );
        let peer: IpAddr = "10.0.0.2".parse().unwrap();
        let t = nets(&["10.0.0.0/8"]);
        let client = client_ip(peer, &h, &t);
        assert_eq!(client, "198.51.100.1".parse::<IpAddr>().unwrap());
        set_forwarded(&mut h, peer, &ip_value(peer), client, None, &t);
        assert_eq!(h["x-forwarded-for"], "198.51.100.1, 10.0.0.5, 10.0.0.2");
        assert_eq!(h["x-real-ip"], "198.51.100.1");
    }

    #[test]
    fn hop_by_hop_and_connection_tokens() {
        let mut h = HeaderMap::new();
        h.insert(
            "connection",
            HeaderValue::from_static("keep-alive, x-secret, x-real-ip"),
        );
        h.insert("x-secret", HeaderValue::from_static("1"));
        h.insert("keep-alive", HeaderValue::from_static("timeout=5"));
        h.insert("te", HeaderValue::from_static("trailers"));
        h.insert("x-real-ip", HeaderValue::from_static("1.2.3.4"));
        strip_hop_by_hop(&mut h, false);
        assert!(h.get("x-secret").is_none());
        assert!(h.get("keep-alive").is_none());
        assert!(h.get("te").is_none());
        assert!(h.get("connection").is_none());
        assert!(h.get("x-real-ip").is_some());
    }

    #[test]
    fn upgrade_survives_only_when_kept_and_server_banners_go() {
        let mut h = HeaderMap::new();
        h.insert("upgrade", HeaderValue::from_static("websocket"));
        h.insert("connection", HeaderValue::from_static("upgrade"));
        h.insert("server", HeaderValue::from_static("Apache/2.4.1"));
        h.insert("x-powered-by", HeaderValue::from_static("PHP/5.1"));
        h.insert("x-kept", HeaderValue::from_static("1"));
        let mut kept = h.clone();
        clean_response_headers(&mut kept, true);
        assert_eq!(kept["upgrade"], "websocket");
        assert_eq!(kept["connection"], "upgrade");
        assert!(kept.get("server").is_none() && kept.get("x-powered-by").is_none());
        clean_response_headers(&mut h, false);
        assert!(h.get("upgrade").is_none() && h.get("connection").is_none());
        assert!(h.get("server").is_none() && h.get("x-powered-by").is_none());
        assert_eq!(h["x-kept"], "1");
    }

    #[test]
    fn identity_headers_are_stripped() {
        let mut h = HeaderMap::new();
        h.insert("x-ssl-client-dn", HeaderValue::from_static("CN=admin"));
        h.insert(
            "x-forwarded-client-cert",
            HeaderValue::from_static("Hash=1"),
        );
        h.insert("x-http-method-override", HeaderValue::from_static("DELETE"));
        h.insert("x-team-cert", HeaderValue::from_static("forged"));
        h.append("x-team-cert", HeaderValue::from_static("forged too"));
        h.insert("accept", HeaderValue::from_static("*/*"));
        StripSet::new(&[HeaderName::from_static("x-team-cert")]).strip(&mut h);
        assert_eq!(h.len(), 1, "{h:?}");
        assert_eq!(h["accept"], "*/*");
    }

    #[test]
    fn request_ids() {
        assert_eq!(
            valid_request_id(&HeaderValue::from_static("abc-123")),
            Some("abc-123")
        );
        assert_eq!(valid_request_id(&HeaderValue::from_static("a b")), None);
        let id = RequestId::generate();
        assert_eq!(id.len(), 32);
        assert!(id
            .bytes()
            .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase()));
        assert_ne!(id.as_str(), RequestId::generate().as_str());
        assert_eq!(id.header_value(), id.as_str());
        let mut h = HeaderMap::new();
        h.insert(&X_REQUEST_ID, HeaderValue::from_static("client-id.1"));
        assert_eq!(RequestId::of(&h).as_str(), "client-id.1");
        h.insert(&X_REQUEST_ID, HeaderValue::from_static("bad id"));
        assert_eq!(RequestId::of(&h).len(), 32);
        assert_eq!(ip_value("2001:db8::7".parse().unwrap()), "2001:db8::7");
    }
}
