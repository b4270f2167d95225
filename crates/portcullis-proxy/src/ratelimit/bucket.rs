//! nginx's `limit_req` leaky bucket, exactly, for one key.
//!
//! Owns the arithmetic and nothing else (no clock, no map): state is the
//! "excess" in thousandths of a request and the time of the last accepted
//! request, as in ngx_http_limit_req_module.c. Pure functions, so the tests
//! drive them with a fake clock.

/// Limits of a zone, in nginx's units.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BucketParams {
    /// Requests per second × 1000 (nginx keeps rates in milli-requests).
    pub rate_milli_per_s: u64,
    /// Requests allowed above the rate (nginx `burst`), × 1000.
    pub burst_milli: u64,
    /// Requests of the burst served without delay (nginx `delay`; `nodelay` = burst), × 1000.
    pub delay_milli: u64,
}

/// One key's state.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct BucketState {
    pub excess_milli: u64,
    pub last_ms: u64,
}

/// What the bucket says about one request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Serve now.
    Pass,
    /// Serve after this many milliseconds (nginx's DELAYED).
    Delay(u64),
    /// Refuse; a request would fit again after this many milliseconds.
    Reject(u64),
}

impl BucketParams {
    /// From a rate (requests per `per_s` seconds), burst and delay
    /// (`None` = nodelay).
    pub fn new(requests: u64, per_s: u64, burst: u64, delay: Option<u64>) -> BucketParams {
        let rate_milli_per_s = (requests * 1000 / per_s.max(1)).max(1);
        let burst_milli = burst * 1000;
        let delay_milli = delay.map_or(burst_milli, |d| (d * 1000).min(burst_milli));
        BucketParams {
            rate_milli_per_s,
            burst_milli,
            delay_milli,
        }
    }

    /// Milliseconds for the bucket to leak `milli` thousandths of a request.
    fn leak_time_ms(&self, milli: u64) -> u64 {
        // milli / (rate_milli_per_s / 1000 per ms) = milli * 1000 / rate_milli_per_s
        (milli * 1000) / self.rate_milli_per_s
    }
}

/// Decides one request at `now_ms`, updating `st` when it is accepted
/// (nginx does not count rejected requests).
pub fn decide(p: &BucketParams, st: &mut BucketState, now_ms: u64, fresh: bool) -> Verdict {
    let excess: i64 = if fresh {
        0
    } else {
        let elapsed = now_ms.saturating_sub(st.last_ms) as i64;
        let leaked = (p.rate_milli_per_s as i64).saturating_mul(elapsed) / 1000;
        (st.excess_milli as i64 - leaked + 1000).max(0)
    };
    let excess = excess as u64;
    if excess > p.burst_milli {
        // How long until the excess is back at the burst line.
        return Verdict::Reject(p.leak_time_ms(excess - p.burst_milli));
    }
    st.excess_milli = excess;
    st.last_ms = now_ms;
    if excess <= p.delay_milli {
        Verdict::Pass
    } else {
        Verdict::Delay(p.leak_time_ms(excess - p.delay_milli))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(p: &BucketParams, times: &[u64]) -> Vec<Verdict> {
        let mut st = BucketState::default();
        let mut fresh = true;
        times
            .iter()
            .map(|&t| {
                let v = decide(p, &mut st, t, fresh);
                if !matches!(v, Verdict::Reject(_)) {
                    fresh = false;
                }
                v
            })
            .collect()
    }

    #[test]
    fn no_burst_one_per_interval() {
        // rate=10r/s, burst=0: one request per 100 ms; the second at the same instant is refused.
        let p = BucketParams::new(10, 1, 0, None);
        assert_eq!(
            run(&p, &[0, 0, 100, 150, 200]),
            vec![
                Verdict::Pass,
                Verdict::Reject(100),
                Verdict::Pass,
                Verdict::Reject(50),
                Verdict::Pass
            ]
        );
    }

    #[test]
    fn burst_with_nodelay_serves_the_burst_at_once() {
        // rate=10r/s burst=20 nodelay (the guide's zone): 21 at once pass, the 22nd is refused.
        let p = BucketParams::new(10, 1, 20, None);
        let v = run(&p, &[0; 22]);
        assert!(v[..21].iter().all(|x| *x == Verdict::Pass), "{v:?}");
        assert_eq!(v[21], Verdict::Reject(100));
    }

    #[test]
    fn burst_without_nodelay_delays_the_excess() {
        // rate=10r/s burst=5 (no nodelay): the first passes, the next five wait 100, 200, … ms.
        let p = BucketParams::new(10, 1, 5, Some(0));
        let v = run(&p, &[0; 7]);
        assert_eq!(
            v,
            vec![
                Verdict::Pass,
                Verdict::Delay(100),
                Verdict::Delay(200),
                Verdict::Delay(300),
                Verdict::Delay(400),
                Verdict::Delay(500),
                Verdict::Reject(100)
            ]
        );
    }

    #[test]
    fn two_stage_delay() {
        // rate=10r/s burst=4 delay=2: two extra pass at once, the next two are delayed.
        let p = BucketParams::new(10, 1, 4, Some(2));
        let v = run(&p, &[0; 6]);
        assert_eq!(
            v,
            vec![
                Verdict::Pass,
                Verdict::Pass,
                Verdict::Pass,
                Verdict::Delay(100),
                Verdict::Delay(200),
                Verdict::Reject(100)
            ]
        );
    }

    #[test]
    fn per_minute_rates() {
        // rate=6r/m: one request every 10 s.
        let p = BucketParams::new(6, 60, 0, None);
        assert_eq!(
            run(&p, &[0, 5_000, 10_000]),
            vec![Verdict::Pass, Verdict::Reject(5_000), Verdict::Pass]
        );
    }

    #[test]
    fn the_bucket_drains_over_time() {
        let p = BucketParams::new(10, 1, 2, None);
        // Three at once fill the burst; 300 ms later all of it has leaked.
        let v = run(&p, &[0, 0, 0, 0, 300, 300, 300, 300]);
        assert_eq!(v[3], Verdict::Reject(100));
        assert!(v[4..7].iter().all(|x| *x == Verdict::Pass), "{v:?}");
        assert!(matches!(v[7], Verdict::Reject(_)));
    }
}
