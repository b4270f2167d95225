//! Routing: request path normalisation, then host and longest path prefix.
//!
//! Owns the compiled route table. A host picks a group of routes the way
//! nginx picks a `server` (exact name, then the longest wildcard, then the
//! routes without hosts); inside the group the longest prefix wins. Prefixes
//! match whole path segments: "/v1" matches "/v1" and "/v1/x", never "/v1x".
//! The path is normalised before matching and the normalised path is what
//! goes upstream, so the router and the backend always see the same path.

use std::borrow::Cow;
use std::collections::HashMap;

use crate::config::{HostMatch, RouteConfig};

/// Why a path was refused (400).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum PathError {
    #[error("the path must start with /")]
    NotAbsolute,
    #[error("invalid percent-encoding in the path")]
    BadEncoding,
    #[error("encoded slash, backslash or NUL in the path")]
    EncodedSeparator,
    #[error("the path climbs above the root")]
    AboveRoot,
    #[error("dot segment with parameters in the path")]
    DotSegmentParams,
}

fn is_unreserved(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~')
}

fn hex(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

/// Normalises a request path (no query): decodes percent-encoded unreserved
/// characters, upper-cases other escapes, merges repeated slashes, resolves
/// "." and ".." segments, and refuses encoded separators, backslashes and
/// dot segments with `;` parameters. Returns the input when nothing changes.
pub fn normalize_path(path: &str) -> Result<Cow<'_, str>, PathError> {
    let bytes = path.as_bytes();
    if bytes.first() != Some(&b'/') {
        return Err(PathError::NotAbsolute);
    }
    let simple = !bytes.iter().any(|&b| b == b'%' || b == b'\\')
        && !path.contains("//")
        && !path.contains("/.")
        && !path.contains(";");
    if simple {
        return Ok(Cow::Borrowed(path));
    }
    // Decode what may be decoded.
    let mut decoded = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let b = bytes[i];
        if b == b'%' {
            let (h, l) = match (
                bytes.get(i + 1).and_then(|&c| hex(c)),
                bytes.get(i + 2).and_then(|&c| hex(c)),
            ) {
                (Some(h), Some(l)) => (h, l),
                _ => return Err(PathError::BadEncoding),
            };
            let v = h * 16 + l;
            if v == b'/' || v == b'\\' || v == 0 {
                return Err(PathError::EncodedSeparator);
            }
            if is_unreserved(v) {
                decoded.push(v);
            } else {
                decoded.push(b'%');
                decoded.push(bytes[i + 1].to_ascii_uppercase());
                decoded.push(bytes[i + 2].to_ascii_uppercase());
            }
            i += 3;
        } else if b == b'\\' {
            return Err(PathError::EncodedSeparator);
        } else {
            decoded.push(b);
            i += 1;
        }
    }
    // Resolve segments.
    let s = String::from_utf8(decoded).map_err(|_| PathError::BadEncoding)?;
    let trailing_slash = s.ends_with('/') || s.ends_with("/.") || s.ends_with("/..");
    let mut out: Vec<&str> = Vec::new();
    for seg in s.split('/') {
        match seg {
            "" | "." => {}
            ".." => {
                if out.pop().is_none() {
                    return Err(PathError::AboveRoot);
                }
            }
            seg if seg.starts_with("..;") || seg.starts_with(".;") => {
                return Err(PathError::DotSegmentParams)
            }
            seg => out.push(seg),
        }
    }
    let mut res = String::with_capacity(s.len());
    for seg in &out {
        res.push('/');
        res.push_str(seg);
    }
    if res.is_empty() || (trailing_slash && !res.ends_with('/')) {
        res.push('/');
    }
    Ok(Cow::Owned(res))
}

/// Does `prefix` match `path` on a segment boundary?
pub fn prefix_matches(prefix: &str, path: &str) -> bool {
    if !path.starts_with(prefix) {
        return false;
    }
    prefix.ends_with('/') || path.len() == prefix.len() || path.as_bytes()[prefix.len()] == b'/'
}

/// One group of routes sharing a host pattern, longest prefix first.
#[derive(Debug, Default)]
struct Group {
    routes: Vec<usize>,
}

/// The compiled route table.
#[derive(Debug, Default)]
pub struct Router {
    exact: HashMap<String, Group>,
    /// (".example.com", group), longest suffix first.
    wildcard: Vec<(String, Group)>,
    any: Group,
    paths: Vec<String>,
    listeners: Vec<Vec<usize>>,
}

impl Router {
    pub fn new(routes: &[RouteConfig]) -> Self {
        let mut r = Router::default();
        let mut wild: HashMap<String, Group> = HashMap::new();
        for (i, rc) in routes.iter().enumerate() {
            r.paths.push(rc.path.clone());
            r.listeners.push(rc.listeners.clone());
            if rc.hosts.is_empty() {
                r.any.routes.push(i);
            }
            for h in &rc.hosts {
                match h {
                    HostMatch::Exact(n) => r.exact.entry(n.clone()).or_default().routes.push(i),
                    HostMatch::Suffix(s) => wild.entry(s.clone()).or_default().routes.push(i),
                }
            }
        }
        r.wildcard = wild.into_iter().collect();
        r.wildcard.sort_by_key(|w| std::cmp::Reverse(w.0.len()));
        let paths = r.paths.clone();
        let sort = |g: &mut Group| {
            g.routes
                .sort_by(|&a, &b| paths[b].len().cmp(&paths[a].len()).then(a.cmp(&b)))
        };
        r.exact.values_mut().for_each(sort);
        r.wildcard.iter_mut().for_each(|(_, g)| sort(g));
        sort(&mut r.any);
        r
    }

    /// The route for a (lower-case, port-less) host and a normalised path on a listener.
    pub fn find(&self, host: &str, path: &str, listener: usize) -> Option<usize> {
        let group = self
            .exact
            .get(host)
            .or_else(|| {
                self.wildcard
                    .iter()
                    .find(|(suffix, _)| {
                        host.ends_with(suffix.as_str())
                            && host.len() > suffix.len()
                            && !host[..host.len() - suffix.len()].contains('.')
                    })
                    .map(|(_, g)| g)
            })
            .unwrap_or(&self.any);
        group.routes.iter().copied().find(|&i| {
            prefix_matches(&self.paths[i], path)
                && (self.listeners[i].is_empty() || self.listeners[i].contains(&listener))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalisation() {
        assert_eq!(normalize_path("/a/b").unwrap(), "/a/b");
        assert_eq!(normalize_path("/a/./b/../c").unwrap(), "/a/c");
        assert_eq!(normalize_path("/a//b").unwrap(), "/a/b");
        assert_eq!(normalize_path("/%61%2e%2E/x").unwrap(), "/a../x");
        assert_eq!(normalize_path("/public/%2e%2e/admin").unwrap(), "/admin");
        assert_eq!(normalize_path("/a/%3f").unwrap(), "/a/%3F");
        assert_eq!(normalize_path("/a/b/..").unwrap(), "/a/");
        assert_eq!(normalize_path("/a%252e%252e/").unwrap(), "/a%252e%252e/");
        assert_eq!(normalize_path("/..").unwrap_err(), PathError::AboveRoot);
        assert_eq!(
            normalize_path("/a/%2f/b").unwrap_err(),
            PathError::EncodedSeparator
        );
        assert_eq!(
            normalize_path("/a/%5c").unwrap_err(),
            PathError::EncodedSeparator
        );
        assert_eq!(
            normalize_path("/a\\b").unwrap_err(),
            PathError::EncodedSeparator
        );
        assert_eq!(
            normalize_path("/a/%00").unwrap_err(),
            PathError::EncodedSeparator
        );
        assert_eq!(
            normalize_path("/a/%zz").unwrap_err(),
            PathError::BadEncoding
        );
        assert_eq!(
            normalize_path("/public/..;/admin").unwrap_err(),
            PathError::DotSegmentParams
        );
        assert_eq!(normalize_path("a").unwrap_err(), PathError::NotAbsolute);
        assert_eq!(normalize_path("/a;b/c").unwrap(), "/a;b/c");
    }

    #[test]
    fn prefixes() {
        assert!(prefix_matches("/v1", "/v1"));
        assert!(prefix_matches("/v1", "/v1/x"));
        assert!(!prefix_matches("/v1", "/v1x"));
        assert!(prefix_matches("/v1/", "/v1/x"));
        assert!(!prefix_matches("/v1/", "/v1"));
        assert!(prefix_matches("/", "/anything"));
    }
}
