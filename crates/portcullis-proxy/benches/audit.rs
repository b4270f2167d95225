//! What the audit log costs the request path: one `AuditLog::request` call
//! (build the event, queue it). The writer thread's share (chain, append,
//! fdatasync) shows in the end-to-end run of denied requests in BENCHMARKS.md.
//!
//!   cargo bench -p portcullis-proxy --bench audit -- --quick

use std::hint::black_box;
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, Criterion};
use portcullis_proxy::audit::{AuditKind, AuditLog};

/// Records per timed chunk: well under the queue's 8192, so nothing is dropped.
const CHUNK: u64 = 2048;

fn record(log: &AuditLog, i: u64) {
    log.request(
        AuditKind::AuthFailure,
        "192.0.2.7:50412".parse().unwrap(),
        Some("CN=client-42,O=Example"),
        "payments",
        black_box("0f3c9a7e5b1d4c2a8e6f0b9d7c5a3e1f"),
        if i.is_multiple_of(2) {
            "apikey: missing"
        } else {
            "apikey: unknown key"
        },
    );
}

fn bench(c: &mut Criterion) {
    let dir = tempfile::tempdir().unwrap();
    let log = AuditLog::open(&dir.path().join("audit.log")).unwrap();
    let mut g = c.benchmark_group("audit");
    // The caller's cost only; the writer drains between chunks (untimed).
    g.bench_function("request_path", |b| {
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            let mut left = iters;
            while left > 0 {
                let n = left.min(CHUNK);
                let t = Instant::now();
                for i in 0..n {
                    record(&log, i);
                }
                total += t.elapsed();
                log.flush_blocking();
                left -= n;
            }
            total
        })
    });
    g.finish();
    assert_eq!(log.dropped(), 0);
}

criterion_group!(benches, bench);
criterion_main!(benches);
