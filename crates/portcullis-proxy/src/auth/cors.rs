//! CORS per route: allowed origins (exact or `*.example.com` patterns),
//! methods, headers, exposed headers, credentials, max-age. The gateway
//! answers preflights itself; a request from an origin that is not allowed
//! gets no CORS headers at all (the browser then blocks it).

use http::header::{self, HeaderMap, HeaderValue};
use http::Method;

/// A route's CORS policy.
#[derive(Debug, Clone, Default)]
pub struct Cors {
    /// "https://app.example.com", "https://*.example.com", or "*" (any, never with credentials).
    pub origins: Vec<String>,
    pub methods: Vec<Method>,
    pub headers: Vec<String>,
    pub expose: Vec<String>,
    pub credentials: bool,
    pub max_age: Option<u64>,
}

impl Cors {
    /// Is this Origin allowed?
    pub fn allows(&self, origin: &str) -> bool {
        self.origins.iter().any(|o| {
            if o == "*" {
                return !self.credentials;
            }
            match o.split_once("://*.") {
                Some((scheme, suffix)) => origin
                    .strip_prefix(scheme)
                    .and_then(|r| r.strip_prefix("://"))
                    .is_some_and(|host| {
                        host.len() > suffix.len() + 1
                            && host.ends_with(suffix)
                            && host.as_bytes()[host.len() - suffix.len() - 1] == b'.'
                    }),
                None => o.eq_ignore_ascii_case(origin),
            }
        })
    }

    /// Is this a preflight (OPTIONS with Origin and Access-Control-Request-Method)?
    pub fn is_preflight(method: &Method, h: &HeaderMap) -> bool {
        method == Method::OPTIONS
            && h.contains_key(header::ORIGIN)
            && h.contains_key(header::ACCESS_CONTROL_REQUEST_METHOD)
    }

    /// Headers of the answer to a preflight from an allowed origin; `None` when it is refused.
    pub fn preflight(&self, h: &HeaderMap) -> Option<Vec<(header::HeaderName, HeaderValue)>> {
        let origin = h.get(header::ORIGIN)?.to_str().ok()?;
        if !self.allows(origin) {
            return None;
        }
        let want = h
            .get(header::ACCESS_CONTROL_REQUEST_METHOD)?
            .to_str()
            .ok()?;
        let m = Method::from_bytes(want.as_bytes()).ok()?;
        if !self.methods.is_empty() && !self.methods.contains(&m) {
            return None;
        }
        if let Some(req_headers) = h
            .get(header::ACCESS_CONTROL_REQUEST_HEADERS)
            .and_then(|v| v.to_str().ok())
        {
            let all_allowed = req_headers
                .split(',')
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .all(|r| self.headers.iter().any(|a| a.eq_ignore_ascii_case(r)));
            if !all_allowed {
                return None;
            }
        }
        let mut out = self.origin_headers(origin);
        let methods = if self.methods.is_empty() {
            want.to_string()
        } else {
            self.methods
                .iter()
                .map(|m| m.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        };
        if let Ok(v) = HeaderValue::from_str(&methods) {
            out.push((header::ACCESS_CONTROL_ALLOW_METHODS, v));
        }
        if !self.headers.is_empty() {
            if let Ok(v) = HeaderValue::from_str(&self.headers.join(", ")) {
                out.push((header::ACCESS_CONTROL_ALLOW_HEADERS, v));
            }
        }
        if let Some(age) = self.max_age {
            out.push((header::ACCESS_CONTROL_MAX_AGE, HeaderValue::from(age)));
        }
        Some(out)
    }

    /// Headers for an actual (non-preflight) response to an allowed origin.
    pub fn response_headers(&self, h: &HeaderMap) -> Vec<(header::HeaderName, HeaderValue)> {
        let Some(origin) = h.get(header::ORIGIN).and_then(|v| v.to_str().ok()) else {
            return Vec::new();
        };
        if !self.allows(origin) {
            return Vec::new();
        }
        let mut out = self.origin_headers(origin);
        if !self.expose.is_empty() {
            if let Ok(v) = HeaderValue::from_str(&self.expose.join(", ")) {
                out.push((header::ACCESS_CONTROL_EXPOSE_HEADERS, v));
            }
        }
        out
    }

    fn origin_headers(&self, origin: &str) -> Vec<(header::HeaderName, HeaderValue)> {
        let mut out = Vec::with_capacity(4);
        let any = self.origins.iter().any(|o| o == "*") && !self.credentials;
        let value = if any {
            HeaderValue::from_static("*")
        } else {
            HeaderValue::from_str(origin).unwrap_or_else(|_| HeaderValue::from_static("null"))
        };
        out.push((header::ACCESS_CONTROL_ALLOW_ORIGIN, value));
        if !any {
            out.push((header::VARY, HeaderValue::from_static("Origin")));
        }
        if self.credentials {
            out.push((
                header::ACCESS_CONTROL_ALLOW_CREDENTIALS,
                HeaderValue::from_static("true"),
            ));
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cors() -> Cors {
        Cors {
            origins: vec![
                "https://app.example.com".into(),
                "https://*.partner.test".into(),
            ],
            methods: vec![Method::GET, Method::POST],
            headers: vec!["Content-Type".into(), "X-API-Key".into()],
            expose: vec!["X-Request-Id".into()],
            credentials: true,
            max_age: Some(600),
        }
    }

    #[test]
    fn origins_exact_and_pattern() {
        let c = cors();
        assert!(c.allows("https://app.example.com"));
        assert!(c.allows("https://a.partner.test"));
        assert!(!c.allows("https://partner.test"));
        assert!(!c.allows("https://evilpartner.test"));
        assert!(!c.allows("http://app.example.com"));
        assert!(!c.allows("https://app.example.com.evil.io"));
    }

    #[test]
    fn preflight_answers_only_allowed_requests() {
        let c = cors();
        let mut h = HeaderMap::new();
        h.insert(
            header::ORIGIN,
            HeaderValue::from_static("https://app.example.com"),
        );
        h.insert(
            header::ACCESS_CONTROL_REQUEST_METHOD,
            HeaderValue::from_static("POST"),
        );
        h.insert(
            header::ACCESS_CONTROL_REQUEST_HEADERS,
            HeaderValue::from_static("content-type, x-api-key"),
        );
        let out = c.preflight(&h).unwrap();
        assert!(out.iter().any(
            |(n, v)| n == header::ACCESS_CONTROL_ALLOW_ORIGIN && v == "https://app.example.com"
        ));
        assert!(out
            .iter()
            .any(|(n, v)| n == header::ACCESS_CONTROL_ALLOW_CREDENTIALS && v == "true"));
        assert!(out
            .iter()
            .any(|(n, v)| n == header::ACCESS_CONTROL_MAX_AGE && v == "600"));
        h.insert(
            header::ACCESS_CONTROL_REQUEST_METHOD,
            HeaderValue::from_static("DELETE"),
        );
        assert!(c.preflight(&h).is_none());
        h.insert(
            header::ACCESS_CONTROL_REQUEST_METHOD,
            HeaderValue::from_static("POST"),
        );
        h.insert(
            header::ACCESS_CONTROL_REQUEST_HEADERS,
            HeaderValue::from_static("x-secret"),
        );
        assert!(c.preflight(&h).is_none());
        h.insert(
            header::ORIGIN,
            HeaderValue::from_static("https://evil.test"),
        );
        assert!(c.preflight(&h).is_none());
        assert!(c.response_headers(&h).is_empty());
    }

    #[test]
    fn wildcard_is_never_combined_with_credentials() {
        let c = Cors {
            origins: vec!["*".into()],
            credentials: true,
            ..Default::default()
        };
        assert!(!c.allows("https://any.test"));
        let c = Cors {
            origins: vec!["*".into()],
            ..Default::default()
        };
        let mut h = HeaderMap::new();
        h.insert(header::ORIGIN, HeaderValue::from_static("https://any.test"));
        assert_eq!(c.response_headers(&h)[0].1, "*");
    }
}
