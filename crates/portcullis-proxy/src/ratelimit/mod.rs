//! Rate limiting with nginx's `limit_req` semantics.
//!
//! Owns the zones: each has a rate, a burst, `nodelay` or `delay = N`, a key
//! (client IP, certificate identity, a header, …) and a bounded table of
//! per-key buckets with least-recently-used eviction. `bucket.rs` is the
//! leaky-bucket arithmetic; this module maps keys to buckets and verdicts to
//! responses (429 or the configured status, Retry-After, RateLimit-Policy /
//! RateLimit). Keys are stored as 64-bit hashes, which is what lets a zone
//! hold a million keys in a few tens of megabytes.

pub mod bucket;
pub mod cluster;

use std::hash::{BuildHasher, Hash, Hasher};
use std::num::NonZeroUsize;
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

pub use bucket::{BucketParams, BucketState, Verdict};

/// Shards per zone: enough that two workers rarely meet on one lock.
const SHARDS: usize = 64;

/// What a zone's key is made of.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeyPart {
    /// The client's address (after trusted proxies).
    Ip,
    /// The client certificate's subject and issuer (requests without one share the key "-").
    Cert,
    /// A request header's value.
    Header(http::header::HeaderName),
    /// The authenticated consumer's name (requests without one are not counted).
    Consumer,
    /// A claim of the verified JWT ("claim:sub", "claim:tenant"); requests without it are not counted.
    JwtClaim(String),
}

/// A zone's settings.
#[derive(Debug, Clone)]
pub struct ZoneConfig {
    pub name: String,
    pub key: Vec<KeyPart>,
    pub params: BucketParams,
    /// Human form of the rate for headers: requests per window.
    pub requests: u64,
    pub window_s: u64,
    pub dry_run: bool,
    pub status: u16,
    pub max_keys: usize,
    /// Cluster mode: what to do when Redis cannot be reached.
    pub on_store_failure: StoreFailure,
}

/// A zone's policy when the shared store (Redis) is unreachable.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum StoreFailure {
    /// Decide with this gateway's own table (limits hold per replica).
    #[default]
    Local,
    /// Fail open: pass every request of the zone.
    Allow,
    /// Fail closed: refuse every request of the zone.
    Deny,
}

impl StoreFailure {
    pub fn as_str(self) -> &'static str {
        match self {
            StoreFailure::Local => "local",
            StoreFailure::Allow => "allow",
            StoreFailure::Deny => "deny",
        }
    }
}

/// nginx's $limit_req_status.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LimitStatus {
    Passed,
    Delayed,
    Rejected,
    DelayedDryRun,
    RejectedDryRun,
}

impl LimitStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            LimitStatus::Passed => "PASSED",
            LimitStatus::Delayed => "DELAYED",
            LimitStatus::Rejected => "REJECTED",
            LimitStatus::DelayedDryRun => "DELAYED_DRY_RUN",
            LimitStatus::RejectedDryRun => "REJECTED_DRY_RUN",
        }
    }
}

/// Milliseconds on a process-wide monotonic clock. Read when the limiter
/// decides, not at the request's start: a request that waited (a JWKS fetch)
/// must not set a zone's clock back.
pub fn now_ms() -> u64 {
    static START: OnceLock<Instant> = OnceLock::new();
    START.get_or_init(Instant::now).elapsed().as_millis() as u64
}

type Shard = Mutex<lru::LruCache<u64, BucketState, foldhash::fast::FixedState>>;

/// How a zone turns key bytes into its 64-bit key.
enum KeyHasher {
    /// One gateway: foldhash with a random per-process seed (fast, and
    /// unpredictable to clients, so they cannot aim collisions).
    Local(foldhash::fast::FixedState),
    /// Cluster mode: HMAC-SHA-256 under the cluster's secret, truncated to 64
    /// bits: the same on every replica, platform and version, and still
    /// unpredictable to clients who do not know the secret.
    Keyed(Box<aws_lc_rs::hmac::Key>),
}

/// One zone: settings plus its bounded key table.
pub struct Zone {
    pub cfg: ZoneConfig,
    shards: Vec<Shard>,
    hasher: KeyHasher,
    /// Which secret keyed the hash (0 for the local hasher); a reload keeps a
    /// zone only when this does not change.
    hash_id: u64,
    /// This zone's counter per outcome, looked up in the metrics family once
    /// (see `Metrics::rate_limit`), not per request.
    pub(crate) counters: [std::sync::OnceLock<prometheus_client::metrics::counter::Counter>; 5],
}

impl std::fmt::Debug for Zone {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Zone").field("cfg", &self.cfg).finish()
    }
}

impl Zone {
    pub fn new(cfg: ZoneConfig) -> Zone {
        Zone::build(
            cfg,
            KeyHasher::Local(foldhash::fast::FixedState::with_seed(rand::random())),
            0,
        )
    }

    /// A zone whose key hashes are HMAC-SHA-256 under `secret` (cluster mode:
    /// every replica must compute the same Redis key for the same client).
    pub fn keyed(cfg: ZoneConfig, secret: &[u8]) -> Zone {
        Zone::build(
            cfg,
            KeyHasher::Keyed(Box::new(aws_lc_rs::hmac::Key::new(
                aws_lc_rs::hmac::HMAC_SHA256,
                secret,
            ))),
            secret_id(secret),
        )
    }

    /// 0 for a local zone, else a fingerprint of the secret of [`Zone::keyed`].
    pub fn hash_id(&self) -> u64 {
        self.hash_id
    }

    fn build(cfg: ZoneConfig, hasher: KeyHasher, hash_id: u64) -> Zone {
        let per_shard =
            NonZeroUsize::new(cfg.max_keys.div_ceil(SHARDS).max(1)).unwrap_or(NonZeroUsize::MIN);
        let shards = (0..SHARDS)
            .map(|_| {
                Mutex::new(lru::LruCache::with_hasher(
                    per_shard,
                    foldhash::fast::FixedState::with_seed(0x9e37_79b9),
                ))
            })
            .collect();
        Zone {
            counters: Default::default(),
            cfg,
            shards,
            hasher,
            hash_id,
        }
    }

    /// The 64-bit key of some bytes.
    pub fn key_hash(&self, parts: &[&[u8]]) -> u64 {
        match &self.hasher {
            KeyHasher::Local(state) => {
                let mut h = state.build_hasher();
                for p in parts {
                    p.hash(&mut h);
                }
                h.finish()
            }
            KeyHasher::Keyed(key) => {
                let mut ctx = aws_lc_rs::hmac::Context::with_key(key);
                for p in parts {
                    // Length-prefixed, so ("ab","c") and ("a","bc") differ.
                    ctx.update(&(p.len() as u64).to_be_bytes());
                    ctx.update(p);
                }
                let tag = ctx.sign();
                let mut b = [0u8; 8];
                b.copy_from_slice(&tag.as_ref()[..8]);
                u64::from_be_bytes(b)
            }
        }
    }

    /// Decides a request of `key` at `now` (milliseconds on [`now_ms`]'s clock).
    pub fn decide_at(&self, key: u64, now: u64) -> Verdict {
        let shard = &self.shards[(key as usize) % SHARDS];
        let Ok(mut table) = shard.lock() else {
            return Verdict::Pass;
        };
        match table.get_mut(&key) {
            Some(st) => bucket::decide(&self.cfg.params, st, now, false),
            None => {
                let mut st = BucketState::default();
                let v = bucket::decide(&self.cfg.params, &mut st, now, true);
                table.put(key, st);
                v
            }
        }
    }

    /// Keys held now.
    pub fn len(&self) -> usize {
        self.shards
            .iter()
            .map(|s| s.lock().map(|t| t.len()).unwrap_or(0))
            .sum()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The IETF RateLimit-Policy value for this zone.
    pub fn policy_header(&self) -> String {
        format!(
            "\"{}\";q={};w={}",
            self.cfg.name,
            self.cfg.requests.max(1) + self.cfg.params.burst_milli / 1000,
            self.cfg.window_s.max(1)
        )
    }
}

/// The outcome of all zones of a route for one request.
#[derive(Debug, Clone)]
pub struct Outcome {
    /// Longest delay asked by a zone.
    pub delay: Duration,
    /// The first zone that refused, with its status and retry time.
    pub rejected: Option<(usize, u16, Duration)>,
    /// For the log: the deciding zone and its status.
    pub log: Option<(usize, LimitStatus)>,
}

/// A fingerprint of a cluster secret (not the secret: it is kept in memory
/// only to compare zones across reloads).
pub fn secret_id(secret: &[u8]) -> u64 {
    let d = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, secret);
    let mut b = [0u8; 8];
    b.copy_from_slice(&d.as_ref()[..8]);
    u64::from_be_bytes(b).max(1)
}

/// Applies zones (all must pass) to one request's keys.
pub fn check(zones: &[std::sync::Arc<Zone>], keys: &[u64], now: u64) -> Outcome {
    fold(zones, keys, |_, z, k| z.decide_at(k, now))
}

/// Folds the zones' verdicts into an outcome, in order, stopping at the
/// first zone that refuses (a dry-run zone never stops it). `verdict` is
/// asked once per zone, in order, until then.
pub(crate) fn fold<F>(zones: &[std::sync::Arc<Zone>], keys: &[u64], mut verdict: F) -> Outcome
where
    F: FnMut(usize, &Zone, u64) -> Verdict,
{
    let mut out = Outcome {
        delay: Duration::ZERO,
        rejected: None,
        log: None,
    };
    for (i, (z, k)) in zones.iter().zip(keys).enumerate() {
        match verdict(i, z, *k) {
            Verdict::Pass => {
                if out.log.is_none() {
                    out.log = Some((i, LimitStatus::Passed));
                }
            }
            Verdict::Delay(ms) => {
                if z.cfg.dry_run {
                    out.log = Some((i, LimitStatus::DelayedDryRun));
                } else {
                    out.delay = out.delay.max(Duration::from_millis(ms));
                    out.log = Some((i, LimitStatus::Delayed));
                }
            }
            Verdict::Reject(ms) => {
                if z.cfg.dry_run {
                    out.log = Some((i, LimitStatus::RejectedDryRun));
                } else {
                    out.log = Some((i, LimitStatus::Rejected));
                    out.rejected = Some((i, z.cfg.status, Duration::from_millis(ms)));
                    return out;
                }
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn zone(max_keys: usize) -> Zone {
        Zone::new(ZoneConfig {
            name: "t".into(),
            key: vec![KeyPart::Ip],
            params: BucketParams::new(1, 1, 0, None),
            requests: 1,
            window_s: 1,
            dry_run: false,
            status: 429,
            max_keys,
            on_store_failure: StoreFailure::Local,
        })
    }

    #[test]
    fn keyed_hashes_agree_across_zones_built_apart() {
        let (a, b) = (zone(10).cfg, zone(10).cfg);
        let (a, b) = (Zone::keyed(a, b"s3cret"), Zone::keyed(b, b"s3cret"));
        assert_eq!(a.key_hash(&[b"10.0.0.1"]), b.key_hash(&[b"10.0.0.1"]));
        assert_ne!(a.key_hash(&[b"ab", b"c"]), a.key_hash(&[b"a", b"bc"]));
        let c = Zone::keyed(zone(10).cfg, b"other");
        assert_ne!(a.key_hash(&[b"10.0.0.1"]), c.key_hash(&[b"10.0.0.1"]));
        assert_ne!(a.hash_id(), c.hash_id());
        assert_eq!(zone(10).hash_id(), 0);
    }

    #[test]
    fn keys_are_limited_separately() {
        let z = zone(1000);
        let (a, b) = (z.key_hash(&[b"10.0.0.1"]), z.key_hash(&[b"10.0.0.2"]));
        assert_eq!(z.decide_at(a, 0), Verdict::Pass);
        assert!(matches!(z.decide_at(a, 0), Verdict::Reject(_)));
        assert_eq!(z.decide_at(b, 0), Verdict::Pass);
    }

    #[test]
    fn the_table_is_bounded_with_lru_eviction() {
        let z = zone(SHARDS * 2);
        for i in 0..10_000u32 {
            z.decide_at(z.key_hash(&[&i.to_be_bytes()]), 0);
        }
        assert!(z.len() <= SHARDS * 2, "{} keys held", z.len());
        // An evicted key starts afresh (it passes again at once).
        let first = z.key_hash(&[&0u32.to_be_bytes()]);
        assert_eq!(z.decide_at(first, 0), Verdict::Pass);
    }

    #[test]
    fn dry_run_never_refuses() {
        let mut cfg = zone(10).cfg;
        cfg.dry_run = true;
        let z = std::sync::Arc::new(Zone::new(cfg));
        let k = z.key_hash(&[b"x"]);
        check(std::slice::from_ref(&z), &[k], 0);
        let o = check(std::slice::from_ref(&z), &[k], 0);
        assert!(o.rejected.is_none());
        assert_eq!(o.log.map(|l| l.1), Some(LimitStatus::RejectedDryRun));
    }
}
