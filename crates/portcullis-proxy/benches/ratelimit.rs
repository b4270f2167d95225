//! Rate limiter: decision time with 1 million distinct keys held, and the
//! memory those keys take (issue 5: ≤ 100 MB, well under a microsecond).
//!
//! `cargo bench -p portcullis-proxy --bench ratelimit -- --quick`

use std::hint::black_box;
use std::sync::Arc;

use criterion::{criterion_group, criterion_main, BatchSize, Criterion};
use portcullis_proxy::ratelimit::{check, BucketParams, KeyPart, Zone, ZoneConfig};

const KEYS: u64 = 1_000_000;

fn zone() -> Zone {
    Zone::new(ZoneConfig {
        name: "bench".into(),
        key: vec![KeyPart::Ip],
        // 10r/s burst 20 nodelay: the guide's zone.
        params: BucketParams::new(10, 1, 20, None),
        requests: 10,
        window_s: 1,
        dry_run: false,
        status: 429,
        max_keys: KEYS as usize,
        on_store_failure: Default::default(),
    })
}

/// Resident memory of this process, bytes (Linux).
fn rss() -> u64 {
    let s = std::fs::read_to_string("/proc/self/statm").unwrap_or_default();
    let pages: u64 = s
        .split_whitespace()
        .nth(1)
        .and_then(|x| x.parse().ok())
        .unwrap_or(0);
    pages * 4096
}

fn ip_of(i: u64) -> [u8; 4] {
    (0x0a00_0000u32 + i as u32).to_be_bytes()
}

fn filled() -> Zone {
    let z = zone();
    for i in 0..KEYS {
        let k = z.key_hash(&[&ip_of(i)]);
        z.decide_at(k, 0);
    }
    z
}

fn bench(c: &mut Criterion) {
    let before = rss();
    let z = filled();
    let after = rss();
    let held = z.len();
    println!(
        "ratelimit: zone holding {held} keys: RSS delta {:.1} MB ({:.0} bytes per key)",
        (after - before) as f64 / 1e6,
        (after - before) as f64 / held as f64
    );
    let z = Arc::new(z);
    let mut g = c.benchmark_group("ratelimit_1M_keys");
    // A known key: hash + decision (what the stack does per request and zone).
    let mut i = 0u64;
    g.bench_function("hash_and_decide_existing_key", |b| {
        b.iter(|| {
            i = (i + 7919) % KEYS;
            let k = z.key_hash(&[&ip_of(i)]);
            black_box(z.decide_at(k, 1_000))
        })
    });
    let mut i = 0u64;
    let keys: Vec<u64> = (0..KEYS).map(|i| z.key_hash(&[&ip_of(i)])).collect();
    g.bench_function("decide_existing_key", |b| {
        b.iter(|| {
            i = (i + 7919) % KEYS;
            black_box(z.decide_at(keys[i as usize], 1_000))
        })
    });
    // A new key: insert with least-recently-used eviction (the table is full).
    let mut n = KEYS;
    g.bench_function("hash_and_decide_new_key_evicting", |b| {
        b.iter(|| {
            n += 1;
            let k = z.key_hash(&[&ip_of(n)]);
            black_box(z.decide_at(k, 1_000))
        })
    });
    // The stack's call: `check` over the route's zones (one here).
    let zones = vec![z.clone()];
    g.bench_function("check_one_zone", |b| {
        b.iter_batched(
            || keys[(n as usize * 7919) % KEYS as usize],
            |k| black_box(check(&zones, &[k], 2_000)),
            BatchSize::SmallInput,
        )
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
