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
    if let Some(conn) = h.get(header::CONNECTION) {
        if let Ok(list) = conn.to_str() {
            let named: Vec<String> = list
                .split(',')
                .map(|t| t.trim().to_ascii_lowercase())
                .filter(|t| !t.is_empty())
                .collect();
            for n in named {
                if keep_upgrade && n == "upgrade" {
                    continue;
                }
                // Never let Connection remove the headers the gateway sets itself.
                if matches!(
                    n.as_str(),
                    "x-forwarded-for"
                        | "x-real-ip"
                        | "x-forwarded-proto"
                        | "x-forwarded-host"
                        | "x-request-id"
                        | "host"
                ) {
                    continue;
                }
                h.remove(n.as_str());
            }
        }
    }
    remove_where(h, |n| {
        HOP_BY_HOP.contains(n) && !(keep_upgrade && n == header::UPGRADE)
    });
    if keep_upgrade {
        h.insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
    }
}

/// Drops every identity and method-override header a client sent.
pub fn strip_client_assertions(h: &mut HeaderMap) {
    remove_where(h, |n| {
        IDENTITY_HEADERS.contains(n) || METHOD_OVERRIDE.contains(n)
    });
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

/// Sets X-Forwarded-For, X-Real-IP, X-Forwarded-Proto and X-Forwarded-Host.
/// Incoming X-Forwarded-* values are kept only from trusted proxies.
pub fn set_forwarded(
    h: &mut HeaderMap,
    peer: IpAddr,
    client: IpAddr,
    host: Option<&str>,
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
    if !xff.is_empty() {
        xff.push_str(", ");
    }
    xff.push_str(&peer.to_string());
    h.remove(&X_FORWARDED_FOR);
    if let Ok(v) = HeaderValue::from_str(&xff) {
        h.insert(X_FORWARDED_FOR.clone(), v);
    }
    if let Ok(v) = HeaderValue::from_str(&client.to_string()) {
        h.insert(X_REAL_IP.clone(), v);
    }
    if !(from_trusted && h.contains_key(&X_FORWARDED_PROTO)) {
        h.insert(X_FORWARDED_PROTO.clone(), HeaderValue::from_static("https"));
    }
    match host.and_then(|hv| HeaderValue::from_str(hv).ok()) {
        Some(v) if !(from_trusted && h.contains_key(&X_FORWARDED_HOST)) => {
            h.insert(X_FORWARDED_HOST.clone(), v);
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

/// A new request id: 32 hex digits, like nginx's $request_id.
pub fn new_request_id() -> String {
    use rand::Rng;
    let v: u128 = rand::rng().random();
    format!("{v:032x}")
}

/// Cleans an upstream response's headers before they reach the client.
pub fn clean_response_headers(h: &mut HeaderMap, keep_upgrade: bool) {
    strip_hop_by_hop(h, keep_upgrade);
    remove_where(h, |n| n == header::SERVER || n == X_POWERED_BY);
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
            client,
            Some("api.example.com"),
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
        set_forwarded(&mut h, peer, client, None, &t);
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
        strip_client_assertions(&mut h);
        assert!(h.is_empty());
    }

    #[test]
    fn request_ids() {
        assert_eq!(
            valid_request_id(&HeaderValue::from_static("abc-123")),
            Some("abc-123")
        );
        assert_eq!(valid_request_id(&HeaderValue::from_static("a b")), None);
        assert_eq!(new_request_id().len(), 32);
    }
}
