//! Connection-level limits: concurrent connections per client IP and per
//! client certificate (nginx's limit_conn), and the rate of new connections
//! per IP — checked at accept, before the TLS handshake, because a handshake
//! costs the server far more than the client.
//!
//! Owns the counters. It never reads requests; `server.rs` asks it at accept
//! and after the handshake and drops what it refuses.

use std::collections::HashMap;
use std::hash::Hash;
use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use crate::config::Limits;
use crate::ratelimit::{BucketParams, KeyPart, Verdict, Zone, ZoneConfig};

const SHARDS: usize = 16;

/// Concurrent holders per key, sharded.
pub struct ConcurrentLimit<K: Hash + Eq + Clone> {
    max: usize,
    shards: Vec<Mutex<HashMap<K, usize>>>,
}

/// Releases one slot when dropped.
pub struct Slot<K: Hash + Eq + Clone> {
    limit: Arc<ConcurrentLimit<K>>,
    key: K,
}

impl<K: Hash + Eq + Clone> Drop for Slot<K> {
    fn drop(&mut self) {
        let shard = self.limit.shard(&self.key);
        if let Ok(mut m) = shard.lock() {
            if let Some(n) = m.get_mut(&self.key) {
                *n -= 1;
                if *n == 0 {
                    m.remove(&self.key);
                }
            }
        }
    }
}

impl<K: Hash + Eq + Clone> ConcurrentLimit<K> {
    pub fn new(max: usize) -> Arc<Self> {
        Arc::new(ConcurrentLimit {
            max,
            shards: (0..SHARDS).map(|_| Mutex::new(HashMap::new())).collect(),
        })
    }

    fn shard(&self, k: &K) -> &Mutex<HashMap<K, usize>> {
        use std::hash::{BuildHasher, RandomState};
        static STATE: std::sync::OnceLock<RandomState> = std::sync::OnceLock::new();
        let h = STATE.get_or_init(RandomState::new).hash_one(k);
        &self.shards[(h as usize) % SHARDS]
    }

    /// A slot for `key`, or `None` when it already holds `max`.
    pub fn acquire(self: &Arc<Self>, key: K) -> Option<Slot<K>> {
        let Ok(mut m) = self.shard(&key).lock() else {
            return None;
        };
        let n = m.entry(key.clone()).or_insert(0);
        if *n >= self.max {
            return None;
        }
        *n += 1;
        drop(m);
        Some(Slot {
            limit: self.clone(),
            key,
        })
    }
}

/// A listener's connection limits.
pub struct ConnLimits {
    pub per_ip: Option<Arc<ConcurrentLimit<IpAddr>>>,
    pub per_cert: Option<Arc<ConcurrentLimit<String>>>,
    rate: Option<Zone>,
    last_warn_ms: AtomicU64,
}

/// Why a connection was refused at accept.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    Rate,
    PerIp,
}

impl ConnLimits {
    pub fn new(l: &Limits) -> ConnLimits {
        ConnLimits {
            per_ip: l.max_connections_per_ip.map(ConcurrentLimit::new),
            per_cert: l.max_connections_per_cert.map(ConcurrentLimit::new),
            rate: l.connection_rate_per_ip.map(|(n, per, burst)| {
                Zone::new(ZoneConfig {
                    name: "connections".into(),
                    key: vec![KeyPart::Ip],
                    params: BucketParams::new(n, per, burst, None),
                    requests: n,
                    window_s: per,
                    dry_run: false,
                    status: 429,
                    max_keys: 100_000,
                    on_store_failure: Default::default(),
                })
            }),
            last_warn_ms: AtomicU64::new(0),
        }
    }

    /// Checks a new connection from `ip`; the slot must live as long as the connection.
    pub fn admit(&self, ip: IpAddr) -> Result<Option<Slot<IpAddr>>, Refusal> {
        if let Some(z) = &self.rate {
            let key = match ip {
                IpAddr::V4(a) => z.key_hash(&[&a.octets()]),
                IpAddr::V6(a) => z.key_hash(&[&a.octets()]),
            };
            if let Verdict::Reject(_) = z.decide_at(key, crate::ratelimit::now_ms()) {
                self.warn_sometimes(ip, "new-connection rate per IP exceeded: connection dropped before the TLS handshake");
                return Err(Refusal::Rate);
            }
        }
        match &self.per_ip {
            Some(l) => match l.acquire(ip) {
                Some(slot) => Ok(Some(slot)),
                None => {
                    self.warn_sometimes(
                        ip,
                        "concurrent connections per IP exceeded: connection dropped",
                    );
                    Err(Refusal::PerIp)
                }
            },
            None => Ok(None),
        }
    }

    /// One warning per second at most, so a flood cannot flood the log.
    fn warn_sometimes(&self, ip: IpAddr, what: &str) {
        let now = crate::ratelimit::now_ms();
        let last = self.last_warn_ms.load(Ordering::Relaxed);
        if (last == 0 || now >= last + 1000)
            && self
                .last_warn_ms
                .compare_exchange(last, now.max(1), Ordering::Relaxed, Ordering::Relaxed)
                .is_ok()
        {
            tracing::warn!(%ip, "{what}");
        } else {
            tracing::debug!(%ip, "{what}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn concurrent_slots_are_counted_and_released() {
        let l = ConcurrentLimit::new(2);
        let a = l.acquire(1u32).unwrap();
        let _b = l.acquire(1u32).unwrap();
        assert!(l.acquire(1u32).is_none());
        assert!(l.acquire(2u32).is_some(), "other keys are independent");
        drop(a);
        assert!(l.acquire(1u32).is_some(), "a released slot is free again");
    }

    #[test]
    fn connection_rate_per_ip() {
        let lim = Limits {
            connection_rate_per_ip: Some((1, 60, 2)),
            ..Limits::default()
        };
        let c = ConnLimits::new(&lim);
        let ip: IpAddr = "192.0.2.1".parse().unwrap();
        let other: IpAddr = "192.0.2.2".parse().unwrap();
        assert!(c.admit(ip).is_ok());
        assert!(c.admit(ip).is_ok());
        assert!(c.admit(ip).is_ok());
        assert_eq!(c.admit(ip).err(), Some(Refusal::Rate));
        assert!(c.admit(other).is_ok(), "another IP still connects");
    }
}
