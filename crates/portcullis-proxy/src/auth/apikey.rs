//! API keys: presented in a header (X-API-Key by default) or, only when
//! enabled, a query parameter; stored only as SHA-256 hashes; expiry and
//! disabling; removed from the request before it goes upstream.
//!
//! Owns the key table and the lookup. A key's hash is looked up, then
//! compared in constant time; the key itself is never stored or logged.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::SystemTime;

use base64::Engine;
use http::header::{HeaderMap, HeaderName};

use super::Consumer;

/// One stored key.
#[derive(Debug, Clone)]
pub struct KeyEntry {
    pub consumer: Arc<Consumer>,
    pub expires: Option<SystemTime>,
    pub disabled: bool,
}

/// Where keys are read from in a request, and the table of known keys.
#[derive(Debug)]
pub struct ApiKeys {
    pub header: HeaderName,
    pub query_param: Option<String>,
    keys: HashMap<[u8; 32], KeyEntry>,
}

/// SHA-256 of a key.
pub fn hash_key(key: &str) -> [u8; 32] {
    crate::mtls::identity::sha256(key.as_bytes())
}

/// "sha256:<hex>" → digest.
pub fn parse_hash(s: &str) -> Option<[u8; 32]> {
    let hex = s.trim().strip_prefix("sha256:")?;
    if hex.len() != 64 {
        return None;
    }
    let mut out = [0u8; 32];
    for (i, chunk) in hex.as_bytes().chunks(2).enumerate() {
        out[i] = u8::from_str_radix(std::str::from_utf8(chunk).ok()?, 16).ok()?;
    }
    Some(out)
}

/// A new random key ("pk_" + 32 random bytes, base64url) and its stored form.
pub fn new_key() -> (String, String) {
    let bytes: [u8; 32] = rand::random();
    let key = format!(
        "pk_{}",
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
    );
    let stored = format!(
        "sha256:{}",
        crate::mtls::identity::hex_lower(&hash_key(&key))
    );
    (key, stored)
}

impl ApiKeys {
    pub fn new(header: HeaderName, query_param: Option<String>) -> ApiKeys {
        ApiKeys {
            header,
            query_param,
            keys: HashMap::new(),
        }
    }

    pub fn insert(&mut self, hash: [u8; 32], entry: KeyEntry) {
        self.keys.insert(hash, entry);
    }

    pub fn len(&self) -> usize {
        self.keys.len()
    }

    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    /// The key a request presents (header first, then the query parameter if enabled).
    pub fn presented<'a>(
        &self,
        headers: &'a HeaderMap,
        query: Option<&'a str>,
    ) -> Option<std::borrow::Cow<'a, str>> {
        if let Some(v) = headers.get(&self.header).and_then(|v| v.to_str().ok()) {
            return Some(std::borrow::Cow::Borrowed(v.trim()));
        }
        let name = self.query_param.as_deref()?;
        query?.split('&').find_map(|pair| {
            let (k, v) = pair.split_once('=')?;
            (k == name).then(|| percent_decode(v))
        })
    }

    /// The consumer of a presented key, or why it is refused.
    pub fn check(&self, presented: &str, now: SystemTime) -> Result<&KeyEntry, &'static str> {
        let h = hash_key(presented);
        let Some((stored, entry)) = self.keys.get_key_value(&h) else {
            return Err("unknown api key");
        };
        if aws_lc_rs::constant_time::verify_slices_are_equal(stored, &h).is_err() {
            return Err("unknown api key");
        }
        if entry.disabled {
            return Err("api key disabled");
        }
        if entry.expires.is_some_and(|e| e <= now) {
            return Err("api key expired");
        }
        Ok(entry)
    }

    /// Removes the key from what goes upstream: the header, and the query parameter.
    pub fn strip(&self, headers: &mut HeaderMap, path_and_query: &str) -> Option<String> {
        headers.remove(&self.header);
        let name = self.query_param.as_deref()?;
        let (path, query) = path_and_query.split_once('?')?;
        let kept: Vec<&str> = query
            .split('&')
            .filter(|p| p.split_once('=').map_or(*p, |(k, _)| k) != name)
            .collect();
        Some(if kept.is_empty() {
            path.to_string()
        } else {
            format!("{path}?{}", kept.join("&"))
        })
    }
}

fn percent_decode(s: &str) -> std::borrow::Cow<'_, str> {
    if !s.contains('%') && !s.contains('+') {
        return std::borrow::Cow::Borrowed(s);
    }
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'%' if i + 2 < b.len() => match std::str::from_utf8(&b[i + 1..i + 3])
                .ok()
                .and_then(|h| u8::from_str_radix(h, 16).ok())
                .ok_or(())
            {
                Ok(v) => {
                    out.push(v);
                    i += 3;
                }
                Err(_) => {
                    out.push(b'%');
                    i += 1;
                }
            },
            b'+' => {
                out.push(b' ');
                i += 1;
            }
            c => {
                out.push(c);
                i += 1;
            }
        }
    }
    std::borrow::Cow::Owned(String::from_utf8_lossy(&out).into_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn table() -> (ApiKeys, String, String, String) {
        let acme = Arc::new(Consumer {
            name: "acme".into(),
            ..Default::default()
        });
        let mut t = ApiKeys::new(HeaderName::from_static("x-api-key"), Some("api_key".into()));
        let (good, h1) = new_key();
        let (old, h2) = new_key();
        let (off, h3) = new_key();
        t.insert(
            parse_hash(&h1).unwrap(),
            KeyEntry {
                consumer: acme.clone(),
                expires: None,
                disabled: false,
            },
        );
        t.insert(
            parse_hash(&h2).unwrap(),
            KeyEntry {
                consumer: acme.clone(),
                expires: Some(SystemTime::UNIX_EPOCH),
                disabled: false,
            },
        );
        t.insert(
            parse_hash(&h3).unwrap(),
            KeyEntry {
                consumer: acme,
                expires: None,
                disabled: true,
            },
        );
        (t, good, old, off)
    }

    #[test]
    fn keys_are_checked_by_hash_with_expiry_and_disabling() {
        let (t, good, old, off) = table();
        let now = SystemTime::now();
        assert_eq!(t.check(&good, now).unwrap().consumer.name, "acme");
        assert_eq!(t.check(&old, now).unwrap_err(), "api key expired");
        assert_eq!(t.check(&off, now).unwrap_err(), "api key disabled");
        assert_eq!(t.check("pk_nope", now).unwrap_err(), "unknown api key");
    }

    #[test]
    fn presented_from_header_or_query_and_stripped() {
        let (t, good, _, _) = table();
        let mut h = HeaderMap::new();
        assert!(t.presented(&h, Some("a=1")).is_none());
        assert_eq!(
            t.presented(&h, Some(&format!("a=1&api_key={good}")))
                .as_deref(),
            Some(good.as_str())
        );
        h.insert("x-api-key", good.parse().unwrap());
        assert_eq!(t.presented(&h, None).as_deref(), Some(good.as_str()));
        let pq = format!("/x?a=1&api_key={good}&b=2");
        assert_eq!(t.strip(&mut h, &pq).as_deref(), Some("/x?a=1&b=2"));
        assert!(h.get("x-api-key").is_none());
        assert_eq!(
            t.strip(&mut h, &format!("/x?api_key={good}")).as_deref(),
            Some("/x")
        );
    }

    #[test]
    fn hashes_parse() {
        let (_, stored) = new_key();
        assert!(parse_hash(&stored).is_some());
        assert!(parse_hash("sha256:zz").is_none());
        assert!(parse_hash("md5:00").is_none());
    }
}
