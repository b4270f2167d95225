//! Rate limits through the real gateway: nginx's burst / nodelay / delay=N
//! seen in statuses (never timing), the 429 headers, keys by IP, client
//! certificate and header, the LRU bound, dry_run, $limit_req_status in the
//! access log; and cluster mode: three gateway processes and one real
//! redis-server enforce one shared limit, killing Redis follows each zone's
//! on_store_failure, and the limit is shared again once Redis is back.

mod common;

use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::*;

/// A config with an echo upstream, an access log with the limit fields, the
/// zones and routes of `rest`, and `listener_extra` inside the listener.
fn config(env: &TestEnv, listener_extra: &str, rest: &str) -> String {
    let echo = free_port();
    format!(
        "[log]\naccess_log = {:?}\naccess_format = \"$status $limit_req_status $limit_req_zone\"\nlevel = \"info\"\n\n{}\
         [[echo]]\naddress = \"127.0.0.1:{echo}\"\n\n[[upstream]]\nname = \"echo\"\nservers = [\"127.0.0.1:{echo}\"]\n\n{rest}",
        env.path().join("access.log").display().to_string(),
        env.listener_toml(listener_extra)
    )
}

fn get(env: &TestEnv, path: &str) -> HttpResponse {
    Curl::https(env.https_port, path, env.ca_file()).run()
}

fn get_h(env: &TestEnv, path: &str, header: &str) -> HttpResponse {
    Curl::https(env.https_port, path, env.ca_file())
        .header(header)
        .run()
}

fn statuses(env: &TestEnv, path: &str, n: usize) -> Vec<u16> {
    (0..n).map(|_| get(env, path).status).collect()
}

/// Waits until the access log has `n` lines (it is written off the request path).
fn access_lines(env: &TestEnv, n: usize) -> Vec<String> {
    let p = env.path().join("access.log");
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let lines: Vec<String> = std::fs::read_to_string(&p)
            .unwrap_or_default()
            .lines()
            .map(str::to_string)
            .collect();
        if lines.len() >= n || Instant::now() > deadline {
            return lines;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn burst_nodelay_passes_the_burst_then_429_with_headers_and_log() {
    let env = env();
    let _gw = env.start(&config(
        &env,
        "",
        "[[rate_limit]]\nname = \"api\"\nrate = \"1r/m\"\nburst = 2\nnodelay = true\n\n\
         [[route]]\npath = \"/\"\nupstream = \"echo\"\nrate_limits = [\"api\"]\n",
    ));
    // One plus a burst of two pass at once; the fourth is refused.
    assert_eq!(statuses(&env, "/", 3), vec![200, 200, 200]);
    let r = get(&env, "/");
    assert_eq!(r.status, 429);
    let retry: u64 = r.header("retry-after").unwrap().parse().unwrap();
    // 1r/m is 16 milli-requests per second in nginx's integer units: one
    // request leaks in 62.5 s.
    assert!((55..=63).contains(&retry), "Retry-After {retry}");
    assert_eq!(r.header("ratelimit-policy"), Some("\"api\";q=3;w=60"));
    let rl = r.header("ratelimit").expect("RateLimit header");
    assert!(
        rl.contains("\"api\"") && rl.contains("r=0"),
        "RateLimit: {rl}"
    );
    let log = access_lines(&env, 4);
    assert_eq!(
        log,
        vec![
            "200 PASSED api",
            "200 PASSED api",
            "200 PASSED api",
            "429 REJECTED api"
        ],
        "access log"
    );
}

#[test]
fn delay_n_serves_n_at_once_delays_the_rest_and_refuses_past_the_burst() {
    let env = env();
    // 30r/m: one request leaks every 2 s. burst 3 delay 1: of five requests at
    // once, two pass, two wait (2 s and 4 s) and are served, one is refused.
    let _gw = env.start(&config(
        &env,
        "",
        "[[rate_limit]]\nname = \"d\"\nrate = \"30r/m\"\nburst = 3\ndelay = 1\n\n\
         [[route]]\npath = \"/\"\nupstream = \"echo\"\nrate_limits = [\"d\"]\n",
    ));
    let port = env.https_port;
    let ca = env.ca_file().to_path_buf();
    let handles: Vec<_> = (0..5)
        .map(|_| {
            let ca = ca.clone();
            std::thread::spawn(move || Curl::https(port, "/", &ca).run().status)
        })
        .collect();
    let mut got: Vec<u16> = handles.into_iter().map(|h| h.join().unwrap()).collect();
    got.sort();
    assert_eq!(got, vec![200, 200, 200, 200, 429]);
    let mut log = access_lines(&env, 5);
    log.sort();
    assert_eq!(
        log,
        vec![
            "200 DELAYED d",
            "200 DELAYED d",
            "200 PASSED d",
            "200 PASSED d",
            "429 REJECTED d"
        ]
    );
}

#[test]
fn ip_key_and_certificate_key_two_certificates_from_one_ip_are_limited_separately() {
    let env = env();
    let ca = TestCa::new(&env.path().join("clients"), "Clients");
    let alice = ca.issue("alice", &LeafSpec::client("alice"));
    let bob = ca.issue("bob", &LeafSpec::client("bob"));
    let extra = format!(
        "client_auth = \"optional\"\nclient_ca = [{:?}]",
        ca.root_path.display().to_string()
    );
    let _gw = env.start(&config(
        &env,
        &extra,
        "[[rate_limit]]\nname = \"by_cert\"\nkey = \"cert\"\nrate = \"1r/m\"\n\n\
         [[rate_limit]]\nname = \"by_ip\"\nkey = \"ip\"\nrate = \"1r/m\"\n\n\
         [[route]]\nname = \"cert\"\npath = \"/cert\"\nupstream = \"echo\"\nrate_limits = [\"by_cert\"]\n\n\
         [[route]]\nname = \"ip\"\npath = \"/ip\"\nupstream = \"echo\"\nrate_limits = [\"by_ip\"]\n",
    ));
    let with = |c: &TestCert, path: &str| {
        Curl::https(env.https_port, path, env.ca_file())
            .client_cert(&c.cert_path, &c.key_path)
            .run()
            .status
    };
    // Per certificate: alice's second is refused, bob (same IP) has his own bucket.
    assert_eq!(with(&alice, "/cert"), 200);
    assert_eq!(with(&alice, "/cert"), 429);
    assert_eq!(with(&bob, "/cert"), 200);
    assert_eq!(with(&bob, "/cert"), 429);
    // Per IP: the two certificates share 127.0.0.1's bucket.
    assert_eq!(with(&alice, "/ip"), 200);
    assert_eq!(with(&bob, "/ip"), 429);
}

#[test]
fn header_key_limits_each_value_and_does_not_count_requests_without_it() {
    let env = env();
    let _gw = env.start(&config(
        &env,
        "",
        "[[rate_limit]]\nname = \"tenant\"\nkey = \"header:X-Tenant\"\nrate = \"1r/m\"\n\n\
         [[route]]\npath = \"/\"\nupstream = \"echo\"\nrate_limits = [\"tenant\"]\n",
    ));
    assert_eq!(get_h(&env, "/", "X-Tenant: a").status, 200);
    assert_eq!(get_h(&env, "/", "X-Tenant: a").status, 429);
    assert_eq!(get_h(&env, "/", "X-Tenant: b").status, 200);
    // nginx does not account requests whose key is empty.
    assert_eq!(statuses(&env, "/", 3), vec![200, 200, 200]);
}

const MANY_KEYS: &str = r#"
import http.client, ssl, sys
port, n = int(sys.argv[1]), int(sys.argv[2])
ctx = ssl.create_default_context(); ctx.check_hostname = False; ctx.verify_mode = ssl.CERT_NONE
c = http.client.HTTPSConnection('127.0.0.1', port, context=ctx)
ok = 0
for i in range(n):
    c.request('GET', '/', headers={'X-Tenant': 'k%d' % i})
    r = c.getresponse(); r.read()
    ok += r.status == 200
print(ok)
"#;

#[test]
fn the_lru_bound_keeps_the_zone_working_and_forgets_the_oldest_keys() {
    let env = env();
    // max_keys = 64: one key per shard of the table.
    let _gw = env.start(&config(
        &env,
        "",
        "[[rate_limit]]\nname = \"small\"\nkey = \"header:X-Tenant\"\nrate = \"1r/m\"\nmax_keys = 64\n\n\
         [[route]]\npath = \"/\"\nupstream = \"echo\"\nrate_limits = [\"small\"]\n",
    ));
    assert_eq!(get_h(&env, "/", "X-Tenant: first").status, 200);
    assert_eq!(get_h(&env, "/", "X-Tenant: first").status, 429);
    // 1000 new keys: each is new, so each passes; the table stays bounded.
    let out = python(MANY_KEYS, &[&env.https_port.to_string(), "1000"]);
    assert!(out.status.success(), "{out:?}");
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "1000");
    // "first" was the least recently used: it was forgotten and starts afresh.
    assert_eq!(get_h(&env, "/", "X-Tenant: first").status, 200);
}

#[test]
fn dry_run_logs_and_never_refuses() {
    let env = env();
    let _gw = env.start(&config(
        &env,
        "",
        "[[rate_limit]]\nname = \"trial\"\nrate = \"1r/m\"\ndry_run = true\n\n\
         [[route]]\npath = \"/\"\nupstream = \"echo\"\nrate_limits = [\"trial\"]\n",
    ));
    assert_eq!(statuses(&env, "/", 4), vec![200; 4]);
    assert_eq!(
        access_lines(&env, 4),
        vec![
            "200 PASSED trial",
            "200 REJECTED_DRY_RUN trial",
            "200 REJECTED_DRY_RUN trial",
            "200 REJECTED_DRY_RUN trial"
        ]
    );
}

// ---- cluster mode ----

/// A redis-server of the test's own on a free port, killed on drop.
struct Redis {
    child: Child,
    port: u16,
}

fn redis_available() -> bool {
    let ok = Command::new("redis-server")
        .arg("--version")
        .stdout(Stdio::null())
        .status()
        .map(|s| s.success())
        .unwrap_or(false);
    if !ok {
        eprintln!(
            "\n!!!!! SKIPPED: redis-server is not installed; the cluster tests need it \
             (scripts/install-test-deps.sh installs it) !!!!!\n"
        );
    }
    ok
}

impl Redis {
    fn start(port: u16) -> Redis {
        let child = Command::new("redis-server")
            .args(["--port", &port.to_string()])
            .args(["--bind", "127.0.0.1", "--save", "", "--appendonly", "no"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start redis-server");
        assert!(
            wait_for_port(SocketAddr::from(([127, 0, 0, 1], port))),
            "redis-server did not listen on {port}"
        );
        Redis { child, port }
    }

    fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    fn kill(mut self) -> u16 {
        let _ = self.child.kill();
        let _ = self.child.wait();
        self.port
    }

    fn cli(&self, args: &[&str]) -> String {
        let out = Command::new("redis-cli")
            .args(["-p", &self.port.to_string()])
            .args(args)
            .output()
            .expect("redis-cli");
        String::from_utf8_lossy(&out.stdout).into_owned()
    }
}

impl Drop for Redis {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn cluster_gateway(url: &str, zones_and_routes: &str) -> (TestEnv, GatewayProcess) {
    let env = env();
    let cfg = config(
        &env,
        "",
        &format!(
            "[cluster]\nredis = \"{url}\"\nkey_secret = \"test-secret-0123456789\"\n\n{zones_and_routes}"
        ),
    );
    let gw = env.start(&cfg);
    (env, gw)
}

#[test]
fn cluster_three_gateways_share_one_limit() {
    if !redis_available() {
        return;
    }
    let redis = Redis::start(free_port());
    let zone = "[[rate_limit]]\nname = \"shared\"\nrate = \"1r/m\"\nburst = 5\nnodelay = true\n\n\
                [[route]]\npath = \"/\"\nupstream = \"echo\"\nrate_limits = [\"shared\"]\n";
    let gws: Vec<(TestEnv, GatewayProcess)> = (0..3)
        .map(|_| cluster_gateway(&redis.url(), zone))
        .collect();
    // 15 requests spread over the three: one plus a burst of five pass in total.
    let mut passed = 0;
    let mut per_gateway = [0; 3];
    for i in 0..15 {
        let s = get(&gws[i % 3].0, "/").status;
        assert!(s == 200 || s == 429, "status {s}");
        if s == 200 {
            passed += 1;
            per_gateway[i % 3] += 1;
        }
    }
    assert_eq!(passed, 6, "passed per gateway: {per_gateway:?}");
    let keys = redis.cli(&["--scan", "--pattern", "portcullis:rl:shared:*"]);
    let keys: Vec<&str> = keys.lines().collect();
    assert_eq!(keys.len(), 1, "one shared key for 127.0.0.1: {keys:?}");
    assert_eq!(keys[0].len(), "portcullis:rl:shared:".len() + 16);
    let ttl: i64 = redis.cli(&["PTTL", keys[0]]).trim().parse().unwrap();
    assert!(ttl > 0 && ttl <= 7 * 60_000, "TTL {ttl} ms");
}

#[test]
fn cluster_redis_down_follows_on_store_failure_and_recovers() {
    if !redis_available() {
        return;
    }
    let redis = Redis::start(free_port());
    let zones = "[[rate_limit]]\nname = \"loc\"\nrate = \"1r/m\"\nburst = 1\nnodelay = true\non_store_failure = \"local\"\n\n\
                 [[rate_limit]]\nname = \"open\"\nrate = \"1r/m\"\non_store_failure = \"allow\"\n\n\
                 [[rate_limit]]\nname = \"closed\"\nrate = \"1r/m\"\non_store_failure = \"deny\"\n\n\
                 [[route]]\nname = \"loc\"\npath = \"/local\"\nupstream = \"echo\"\nrate_limits = [\"loc\"]\n\n\
                 [[route]]\nname = \"open\"\npath = \"/allow\"\nupstream = \"echo\"\nrate_limits = [\"open\"]\n\n\
                 [[route]]\nname = \"closed\"\npath = \"/deny\"\nupstream = \"echo\"\nrate_limits = [\"closed\"]\n";
    let (a, gw_a) = cluster_gateway(&redis.url(), zones);
    let (b, gw_b) = cluster_gateway(&redis.url(), zones);

    // Redis up: each limit is shared by a and b.
    assert_eq!(get(&a, "/allow").status, 200);
    assert_eq!(get(&b, "/allow").status, 429);
    assert_eq!(get(&a, "/deny").status, 200);
    assert_eq!(get(&b, "/deny").status, 429);
    assert_eq!(get(&a, "/local").status, 200);
    assert_eq!(get(&b, "/local").status, 200);
    assert_eq!(get(&a, "/local").status, 429);

    // Redis dies.
    let port = redis.kill();
    // allow: fail open.
    assert_eq!(statuses(&a, "/allow", 3), vec![200, 200, 200]);
    // deny: fail closed, retry soon.
    for _ in 0..3 {
        let r = get(&a, "/deny");
        assert_eq!(r.status, 429);
        assert_eq!(r.header("retry-after"), Some("1"));
    }
    // local: each gateway's own table (one plus a burst of one, per replica).
    assert_eq!(statuses(&a, "/local", 3), vec![200, 200, 429]);
    assert_eq!(statuses(&b, "/local", 3), vec![200, 200, 429]);
    // One warning per outage, not one per request.
    let warned = gw_a.stderr_text().matches("Redis unreachable").count();
    assert_eq!(warned, 1, "{}", gw_a.stderr_text());

    // Redis is back (empty): both gateways share the limits again.
    let redis = Redis::start(port);
    let shared_again = |env: &TestEnv| {
        // A shared refusal of 1r/m says retry in about a minute; the deny
        // policy says 1 s, so the Retry-After tells which one answered.
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            let r = get(env, "/deny");
            if r.status == 200 || r.header("retry-after") != Some("1") {
                return r.status;
            }
            assert!(Instant::now() < deadline, "never recovered");
            std::thread::sleep(Duration::from_millis(200));
        }
    };
    assert_eq!(shared_again(&a), 200);
    assert_eq!(shared_again(&b), 429, "b shares a's bucket again");
    assert_eq!(get(&b, "/allow").status, 200);
    assert_eq!(get(&a, "/allow").status, 429);
    assert!(
        gw_a.stderr_text().contains("Redis reachable again"),
        "{}",
        gw_a.stderr_text()
    );
    drop(redis);
    let _ = (gw_b, Path::new(""));
}

const LATENCY: &str = r#"
import http.client, ssl, sys, time
port, n = int(sys.argv[1]), int(sys.argv[2])
ctx = ssl.create_default_context(); ctx.check_hostname = False; ctx.verify_mode = ssl.CERT_NONE
c = http.client.HTTPSConnection('127.0.0.1', port, context=ctx)
def one():
    t = time.perf_counter()
    c.request('GET', '/'); r = c.getresponse(); r.read()
    assert r.status == 200, r.status
    return (time.perf_counter() - t) * 1e6
for _ in range(200): one()
xs = sorted(one() for _ in range(n))
q = lambda p: xs[min(len(xs) - 1, int(p * len(xs)))]
print('mean %.0f us  p50 %.0f  p90 %.0f  p99 %.0f' % (sum(xs) / len(xs), q(.5), q(.9), q(.99)))
"#;

/// Not a test: the latency a request gains in cluster mode (one Redis round
/// trip), for BENCHMARKS.md. Use a release binary:
/// `cargo build --release -p portcullis && PORTCULLIS_BIN=target/release/portcullis
///  cargo test -p portcullis --test ratelimit -- --ignored --nocapture cluster_latency`
#[test]
#[ignore]
fn cluster_latency_report() {
    if !redis_available() {
        return;
    }
    let bin = std::env::var("PORTCULLIS_BIN").unwrap_or_else(|_| BIN.to_string());
    let redis = Redis::start(free_port());
    let zone =
        "[[rate_limit]]\nname = \"wide\"\nrate = \"1000000r/s\"\nburst = 1000\nnodelay = true\n\n";
    let cases = [
        (
            "no rate limit",
            String::new(),
            "[[route]]\npath = \"/\"\nupstream = \"echo\"\n",
        ),
        (
            "local zone (non-binding)",
            String::new(),
            "[[route]]\npath = \"/\"\nupstream = \"echo\"\nrate_limits = [\"wide\"]\n",
        ),
        (
            "cluster zone (non-binding, Redis on loopback)",
            format!(
                "[cluster]\nredis = \"{}\"\nkey_secret = \"bench-secret-0123456789\"\n\n",
                redis.url()
            ),
            "[[route]]\npath = \"/\"\nupstream = \"echo\"\nrate_limits = [\"wide\"]\n",
        ),
    ];
    for (what, cluster, route) in cases {
        let env = TestEnv::new(&bin);
        let zones = if route.contains("wide") { zone } else { "" };
        let cfg = config(&env, "", &format!("{cluster}{zones}{route}"))
            .replace("access_log = ", "access_log = \"off\"\n#");
        let _gw = env.start(&cfg);
        let out = python(LATENCY, &[&env.https_port.to_string(), "3000"]);
        assert!(out.status.success(), "{out:?}");
        println!("{what}: {}", String::from_utf8_lossy(&out.stdout).trim());
    }
}

#[test]
fn cluster_config_errors_name_file_and_line() {
    let env = env();
    let base = "[[rate_limit]]\nname = \"z\"\nrate = \"1r/s\"\n";
    let check = |toml: &str| {
        let out = env.check("portcullis.toml", toml);
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let line_of =
        |toml: &str, needle: &str| toml.lines().position(|l| l.contains(needle)).unwrap() + 1;
    for (bad, needle, text) in [
        (
            "[cluster]\nredis = \"http://x:6379\"\n",
            "http://x",
            "is not a Redis URL",
        ),
        (
            "[cluster]\nredis = \"redis://127.0.0.1:6379\"\nkey_secret = \"short\"\n",
            "short",
            "too short",
        ),
        (
            "[cluster]\nredis = \"redis://127.0.0.1:6379\"\nkey_secret = \"0123456789abcdef\"\n",
            "",
            "",
        ),
    ] {
        let toml = env.config_with(&format!("{bad}{base}"));
        let (code, err) = check(&toml);
        if text.is_empty() {
            assert_eq!(code, Some(0), "{err}");
            continue;
        }
        assert_eq!(code, Some(2), "{err}");
        let loc = format!("portcullis.toml:{}:", line_of(&toml, needle));
        assert!(
            err.contains(&loc) && err.contains(text),
            "{loc} {text}: {err}"
        );
    }
    let toml = env.config_with(&format!("{base}on_store_failure = \"maybe\"\n"));
    let (code, err) = check(&toml);
    assert_eq!(code, Some(2), "{err}");
    let loc = format!("portcullis.toml:{}:", line_of(&toml, "maybe"));
    assert!(
        err.contains(&loc) && err.contains("on_store_failure"),
        "{err}"
    );
    // No key_secret: a warning, not an error.
    let toml = env.config_with(&format!(
        "[cluster]\nredis = \"redis://127.0.0.1:6379\"\n{base}"
    ));
    let (code, err) = check(&toml);
    assert_eq!(code, Some(0), "{err}");
    assert!(err.contains("key_secret"), "{err}");
}
