//! Replay protection for signed requests.
//!
//! Owns the [`ReplayStore`] trait (remember a key until a deadline; refuse
//! the second sighting) and its bounded in-memory implementation. A cluster
//! implementation (Redis `SET key 1 NX PXAT until`) plugs in behind the same
//! trait. This module must not know what a signature is: callers hand it
//! opaque keys (see `signature::Verified::replay_key`).

use std::collections::{BTreeSet, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::SystemTime;

use aws_lc_rs::digest;

/// Remembers keys until a deadline. `check_and_insert` is atomic: of two
/// concurrent calls with the same key, exactly one returns `true`.
pub trait ReplayStore: Send + Sync {
    /// `true` when `key` was not seen (it is now remembered until `until`);
    /// `false` for a replay, or when the store cannot remember it (fail
    /// closed).
    fn check_and_insert(&self, key: &[u8], until: SystemTime) -> bool;
}

/// In-memory replay cache, bounded to `capacity` live entries. Keys are
/// stored as SHA-256 digests, so their size does not matter. When full of
/// unexpired entries it refuses new keys (fail closed) rather than forget
/// one that might be replayed.
pub struct ReplayCache {
    capacity: usize,
    inner: Mutex<Inner>,
    refused_full: AtomicU64,
}

#[derive(Default)]
struct Inner {
    seen: HashMap<[u8; 32], SystemTime>,
    by_expiry: BTreeSet<(SystemTime, [u8; 32])>,
}

// === impl ReplayCache ===

impl ReplayCache {
    pub fn new(capacity: usize) -> Self {
        Self {
            capacity: capacity.max(1),
            inner: Mutex::new(Inner::default()),
            refused_full: AtomicU64::new(0),
        }
    }

    /// As [`ReplayStore::check_and_insert`], with an explicit clock.
    pub fn check_and_insert_at(&self, key: &[u8], until: SystemTime, now: SystemTime) -> bool {
        let mut id = [0u8; 32];
        id.copy_from_slice(digest::digest(&digest::SHA256, key).as_ref());
        let mut inner = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        inner.prune(now);
        if inner.seen.contains_key(&id) {
            return false;
        }
        if inner.seen.len() >= self.capacity {
            self.refused_full.fetch_add(1, Ordering::Relaxed);
            return false;
        }
        inner.seen.insert(id, until);
        inner.by_expiry.insert((until, id));
        true
    }

    /// Live entries (expired ones are dropped lazily).
    pub fn len(&self) -> usize {
        self.inner
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .seen
            .len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// How many fresh keys were refused because the cache was full.
    pub fn refused_full(&self) -> u64 {
        self.refused_full.load(Ordering::Relaxed)
    }
}

impl ReplayStore for ReplayCache {
    fn check_and_insert(&self, key: &[u8], until: SystemTime) -> bool {
        self.check_and_insert_at(key, until, SystemTime::now())
    }
}

impl std::fmt::Debug for ReplayCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ReplayCache")
            .field("capacity", &self.capacity)
            .field("len", &self.len())
            .finish()
    }
}

// === impl Inner ===

impl Inner {
    fn prune(&mut self, now: SystemTime) {
        while let Some(&(until, id)) = self.by_expiry.first() {
            if until > now {
                break;
            }
            self.by_expiry.pop_first();
            self.seen.remove(&id);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn second_sighting_is_a_replay_until_expiry() {
        let c = ReplayCache::new(10);
        let t0 = SystemTime::UNIX_EPOCH + Duration::from_secs(1000);
        let until = t0 + Duration::from_secs(60);
        assert!(c.check_and_insert_at(b"k1", until, t0));
        assert!(!c.check_and_insert_at(b"k1", until, t0 + Duration::from_secs(59)));
        assert!(c.check_and_insert_at(b"k2", until, t0));
        // after the window the key is forgotten (the signature is stale by then)
        assert!(c.check_and_insert_at(b"k1", until + Duration::from_secs(60), until));
    }

    #[test]
    fn full_cache_fails_closed_then_recovers() {
        let c = ReplayCache::new(2);
        let t0 = SystemTime::UNIX_EPOCH + Duration::from_secs(1000);
        let until = t0 + Duration::from_secs(10);
        assert!(c.check_and_insert_at(b"a", until, t0));
        assert!(c.check_and_insert_at(b"b", until, t0));
        assert!(!c.check_and_insert_at(b"c", until, t0));
        assert_eq!(c.refused_full(), 1);
        assert!(c.check_and_insert_at(b"c", until + Duration::from_secs(10), until));
        assert_eq!(c.len(), 1);
    }
}
