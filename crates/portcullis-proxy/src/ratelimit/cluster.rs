//! Cluster mode: rate-limit state shared by every replica through Redis.
//!
//! Owns the Redis side of the limiter: one server-side Lua script that runs
//! nginx's leaky bucket (the same arithmetic as `bucket.rs`, on Redis' own
//! clock so replicas with skewed clocks agree), called with EVALSHA (loaded
//! once, reloaded on NOSCRIPT) for all the zones of a request in one round
//! trip, and the failure policy when Redis cannot be reached: per zone
//! `local` (this gateway's own table), `allow` or `deny`, one warning per
//! outage, and a probe after a short backoff that ends the outage by itself
//! once Redis answers again.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use super::{fold, now_ms, Outcome, StoreFailure, Verdict, Zone};
use crate::config::ClusterConfig;

/// nginx's leaky bucket for the zones of one request, in order, stopping at
/// the first zone that refuses (unless it is dry-run), exactly as
/// `ratelimit::check` does with the local tables.
///
/// KEYS[i]: the zone's key; ARGV[5i-4..5i]: rate (milli-requests per second),
/// burst (milli), delay (milli), TTL (ms), dry-run (1/0).
/// State: hash {e = excess in milli-requests, l = last accepted ms}.
/// Returns one {verdict, ms} per zone decided: 0 pass, 1 delay, 2 reject.
const SCRIPT: &str = r#"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local out = {}
for i, key in ipairs(KEYS) do
  local b = (i - 1) * 5
  local rate = tonumber(ARGV[b + 1])
  local burst = tonumber(ARGV[b + 2])
  local delay = tonumber(ARGV[b + 3])
  local ttl = tonumber(ARGV[b + 4])
  local dry = ARGV[b + 5] == '1'
  local st = redis.call('HMGET', key, 'e', 'l')
  local excess = 0
  if st[1] and st[2] then
    local elapsed = now - tonumber(st[2])
    if elapsed < 0 then elapsed = 0 end
    excess = tonumber(st[1]) - math.floor(rate * elapsed / 1000) + 1000
    if excess < 0 then excess = 0 end
  end
  if excess > burst then
    out[i] = {2, math.floor((excess - burst) * 1000 / rate)}
    if not dry then return out end
  else
    redis.call('HSET', key, 'e', excess, 'l', now)
    redis.call('PEXPIRE', key, ttl)
    if excess <= delay then
      out[i] = {0, 0}
    else
      out[i] = {1, math.floor((excess - delay) * 1000 / rate)}
    end
  end
end
return out
"#;

/// How long an outage waits before the next probe of Redis.
const RETRY_AFTER_FAILURE_MS: u64 = 500;

/// The shared store and its health.
pub struct Cluster {
    cfg: ClusterConfig,
    client: redis::Client,
    /// Created on first use (it needs the Tokio runtime); reconnects by itself.
    conn: OnceLock<redis::aio::ConnectionManager>,
    script: redis::Script,
    /// An outage is on: decisions follow `on_store_failure` until a probe succeeds.
    down: AtomicBool,
    /// During an outage, no probe before this time (ms on `now_ms`).
    next_probe_ms: AtomicU64,
    /// A probe is in flight (the other requests do not wait for it).
    probing: AtomicBool,
    /// Decisions made without Redis (for metrics and tests).
    pub fallbacks: AtomicU64,
}

impl std::fmt::Debug for Cluster {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Cluster")
            .field("redis", &self.cfg.redis)
            .field("down", &self.down.load(Ordering::Relaxed))
            .finish()
    }
}

impl Cluster {
    /// Parses the URL; connects lazily (on the first decision).
    pub fn new(cfg: &ClusterConfig) -> Result<Cluster, String> {
        let client = redis::Client::open(cfg.redis.as_str()).map_err(|e| e.to_string())?;
        Ok(Cluster {
            cfg: cfg.clone(),
            client,
            conn: OnceLock::new(),
            script: redis::Script::new(SCRIPT),
            down: AtomicBool::new(false),
            next_probe_ms: AtomicU64::new(0),
            probing: AtomicBool::new(false),
            fallbacks: AtomicU64::new(0),
        })
    }

    pub fn config(&self) -> &ClusterConfig {
        &self.cfg
    }

    /// Whether an outage is on.
    pub fn is_down(&self) -> bool {
        self.down.load(Ordering::Relaxed)
    }

    fn connection(&self) -> Option<redis::aio::ConnectionManager> {
        if let Some(c) = self.conn.get() {
            return Some(c.clone());
        }
        let t = self.cfg.timeout;
        let mc = redis::aio::ConnectionManagerConfig::new()
            .set_connection_timeout(Some(t))
            .set_response_timeout(Some(t))
            .set_number_of_retries(1)
            .set_min_delay(Duration::from_millis(20))
            .set_max_delay(Duration::from_millis(100));
        match redis::aio::ConnectionManager::new_lazy_with_config(self.client.clone(), mc) {
            Ok(c) => Some(self.conn.get_or_init(|| c).clone()),
            Err(e) => {
                self.outage(&e.to_string());
                None
            }
        }
    }

    /// Remembers `key` until `until` across all replicas (`SET … NX PXAT`):
    /// `Ok(true)` the first time, `Ok(false)` for a replay; `Err` when Redis
    /// cannot answer (the caller falls back to its local cache).
    pub async fn remember_once(
        &self,
        key: &[u8],
        until: std::time::SystemTime,
    ) -> Result<bool, String> {
        let Some(mut conn) = self.connection() else {
            return Err("no redis connection".into());
        };
        let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, key);
        let hex: String = digest.as_ref().iter().map(|b| format!("{b:02x}")).collect();
        let at_ms = until
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_millis() as u64)
            .unwrap_or(0)
            .max(1);
        let cmd = redis::cmd("SET")
            .arg(format!("portcullis:replay:{hex}"))
            .arg(1)
            .arg("NX")
            .arg("PXAT")
            .arg(at_ms)
            .clone();
        let res: Result<Option<String>, _> =
            tokio::time::timeout(self.cfg.timeout, cmd.query_async(&mut conn))
                .await
                .map_err(|_| "timed out".to_string())?
                .map_err(|e| e.to_string());
        res.map(|r| r.is_some())
    }

    /// Decides a request against the zones (all must pass); Redis holds the
    /// state, or each zone's `on_store_failure` decides when it cannot.
    pub async fn check(&self, zones: &[Arc<Zone>], keys: &[u64]) -> Outcome {
        if let Some(verdicts) = self.shared(zones, keys).await {
            return fold(zones, keys, |i, _, _| {
                verdicts.get(i).copied().unwrap_or(Verdict::Pass)
            });
        }
        self.fallbacks.fetch_add(1, Ordering::Relaxed);
        let now = now_ms();
        fold(zones, keys, |_, z, k| match z.cfg.on_store_failure {
            StoreFailure::Local => z.decide_at(k, now),
            StoreFailure::Allow => Verdict::Pass,
            StoreFailure::Deny => Verdict::Reject(1000),
        })
    }

    /// The verdicts from Redis, or `None` when it cannot be asked now.
    async fn shared(&self, zones: &[Arc<Zone>], keys: &[u64]) -> Option<Vec<Verdict>> {
        let probe = self.down.load(Ordering::Relaxed);
        // Cleared on drop, so a request cancelled mid-probe does not stop probing.
        let mut probe_guard = None;
        if probe {
            if now_ms() < self.next_probe_ms.load(Ordering::Relaxed)
                || self.probing.swap(true, Ordering::AcqRel)
            {
                return None;
            }
            probe_guard = Some(ProbeGuard(&self.probing));
        }
        let r = self.eval(zones, keys).await;
        drop(probe_guard);
        match r {
            Ok(v) => {
                if self.down.swap(false, Ordering::AcqRel) {
                    tracing::warn!(redis = %self.cfg.redis, "cluster: Redis reachable again; rate limits are shared again");
                }
                Some(v)
            }
            Err(e) => {
                self.outage(&e);
                None
            }
        }
    }

    fn outage(&self, why: &str) {
        self.next_probe_ms
            .store(now_ms() + RETRY_AFTER_FAILURE_MS, Ordering::Relaxed);
        if !self.down.swap(true, Ordering::AcqRel) {
            tracing::warn!(redis = %self.cfg.redis, error = %why, "cluster: Redis unreachable; rate-limit zones follow their on_store_failure policy until it answers again");
        }
    }

    async fn eval(&self, zones: &[Arc<Zone>], keys: &[u64]) -> Result<Vec<Verdict>, String> {
        let mut conn = self
            .connection()
            .ok_or_else(|| "no connection".to_string())?;
        let mut inv = self.script.prepare_invoke();
        for (z, k) in zones.iter().zip(keys) {
            let p = &z.cfg.params;
            let rate = p.rate_milli_per_s.max(1);
            // Past this, the state is worth a fresh key (excess fully leaked).
            let ttl_ms = (p.burst_milli + 1000).saturating_mul(1000) / rate + 1000;
            inv.key(redis_key(&z.cfg.name, *k))
                .arg(rate)
                .arg(p.burst_milli)
                .arg(p.delay_milli)
                .arg(ttl_ms)
                .arg(u8::from(z.cfg.dry_run));
        }
        let fut = inv.invoke_async::<Vec<(i64, i64)>>(&mut conn);
        let raw = match tokio::time::timeout(self.cfg.timeout, fut).await {
            Ok(Ok(v)) => v,
            Ok(Err(e)) => return Err(e.to_string()),
            Err(_) => return Err(format!("no answer within {:?}", self.cfg.timeout)),
        };
        Ok(raw
            .into_iter()
            .map(|(v, ms)| {
                let ms = ms.max(0) as u64;
                match v {
                    0 => Verdict::Pass,
                    1 => Verdict::Delay(ms),
                    _ => Verdict::Reject(ms),
                }
            })
            .collect())
    }
}

struct ProbeGuard<'a>(&'a AtomicBool);

impl Drop for ProbeGuard<'_> {
    fn drop(&mut self) {
        self.0.store(false, Ordering::Release);
    }
}

/// `portcullis:rl:<zone>:<hex key hash>`.
pub fn redis_key(zone: &str, key: u64) -> String {
    format!("portcullis:rl:{zone}:{key:016x}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_names() {
        assert_eq!(redis_key("api", 0xab), "portcullis:rl:api:00000000000000ab");
    }
}
