//! The admin API, Prometheus metrics, reloads (admin, SIGHUP, file watch)
//! and `portcullis status`, against the real binary with curl.

mod common;
use common::*;

use std::process::Command;
use std::time::{Duration, Instant};

fn admin_get(port: u16, path: &str) -> HttpResponse {
    Curl::new(format!("http://127.0.0.1:{port}{path}")).run()
}

fn admin_post(port: u16, path: &str, body: &str, dir: &std::path::Path) -> HttpResponse {
    Curl::new(format!("http://127.0.0.1:{port}{path}"))
        .method("POST")
        .header("content-type: application/json")
        .body(body.as_bytes(), dir)
        .run()
}

/// The value of one exposition line (`name{labels} value`), if present.
fn metric(text: &str, series: &str) -> Option<f64> {
    text.lines().find_map(|l| {
        l.strip_prefix(series)?
            .strip_prefix(' ')?
            .trim()
            .parse()
            .ok()
    })
}

/// Polls `f` until it is true or `limit` passes (readiness, not a timing assertion).
fn eventually(limit: Duration, mut f: impl FnMut() -> bool) -> bool {
    let end = Instant::now() + limit;
    while Instant::now() < end {
        if f() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    f()
}

fn admin_config(env: &TestEnv, admin: u16, extra: &str) -> String {
    echo_config(
        env,
        &format!(
            "[admin]\naddress = \"127.0.0.1:{admin}\"\n\n[[route]]\nname = \"api\"\npath = \"/\"\nupstream = \"echo\"\n\n{extra}"
        ),
    )
}

#[test]
fn health_readiness_state_endpoints_and_redacted_config() {
    let env = env();
    let admin = free_port();
    let toml = admin_config(
        &env,
        admin,
        "[[consumer]]\nname = \"alice\"\napi_keys = [{ hash = \"sha256:0f0e0d0c0b0a09080706050403020100ffeeddccbbaa99887766554433221100\" }]\n",
    );
    let _gw = env.start(&toml);

    let h = admin_get(admin, "/healthz");
    assert_eq!(h.status, 200, "{}", h.text());
    assert_eq!(h.json()["status"], "ok");
    let r = admin_get(admin, "/readyz");
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json()["ready"], true);

    let routes = admin_get(admin, "/routes").json();
    assert_eq!(routes["routes"][0]["name"], "api");
    assert_eq!(routes["routes"][0]["upstream"], "echo");

    let ups = admin_get(admin, "/upstreams").json();
    assert_eq!(ups["upstreams"][0]["name"], "echo");
    assert_eq!(ups["upstreams"][0]["servers"][0]["up"], true);

    let certs = admin_get(admin, "/certificates").json();
    let list = certs["certificates"].as_array().unwrap();
    assert!(
        list.iter()
            .any(|c| c["kind"] == "served" && c["seconds_left"].as_i64().unwrap() > 0),
        "{certs}"
    );

    let cfg = admin_get(admin, "/config");
    let text = cfg.text();
    assert!(!text.contains("0f0e0d0c0b0a0908"), "hash leaked: {text}");
    assert!(text.contains("[redacted]"), "{text}");
    assert_eq!(cfg.json()["config"]["route"][0]["name"], "api");

    let nf = admin_get(admin, "/nope");
    assert_eq!(nf.status, 404);
    let wrong = Curl::new(format!("http://127.0.0.1:{admin}/reload")).run();
    assert_eq!(wrong.status, 405, "GET /reload must not reload");
}

#[test]
fn metrics_count_requests_handshake_failures_and_auth_failures() {
    let env = env();
    let admin = free_port();
    let other = TestCa::new(&env.path().join("other"), "Other");
    let stranger = other.issue("stranger", &LeafSpec::client("stranger"));
    let good = env.ca.issue("good", &LeafSpec::client("good"));
    // An optional-mTLS listener: a certificate from an unknown CA still fails the handshake.
    let toml = format!(
        "[log]\naccess_log = \"off\"\n\n{}[[echo]]\naddress = \"127.0.0.1:{echo}\"\n\n[[upstream]]\nname = \"echo\"\nservers = [\"127.0.0.1:{echo}\"]\n\n[admin]\naddress = \"127.0.0.1:{admin}\"\n\n[[route]]\nname = \"api\"\npath = \"/\"\nupstream = \"echo\"\n\n[[route]]\nname = \"keyed\"\npath = \"/keyed\"\nupstream = \"echo\"\nauth = [\"api_key\"]\n",
        env.listener_toml(&format!(
            "client_auth = \"optional\"\nclient_ca = [\"{}\"]\n",
            env.ca_file().display()
        )),
        echo = free_port(),
    );
    let _gw = env.start(&toml);
    for _ in 0..5 {
        let r = Curl::https(env.https_port, "/hello", env.ca_file()).run();
        assert_eq!(r.status, 200);
    }
    let r = Curl::https(env.https_port, "/hello", env.ca_file())
        .client_cert(&good.cert_path, &good.key_path)
        .method("POST")
        .run();
    assert_eq!(r.status, 200);
    for _ in 0..3 {
        let r = Curl::https(env.https_port, "/hello", env.ca_file())
            .client_cert(&stranger.cert_path, &stranger.key_path)
            .try_run();
        assert!(
            r.is_err(),
            "a certificate from an unknown CA must fail the handshake"
        );
    }
    for _ in 0..2 {
        let r = Curl::https(env.https_port, "/keyed", env.ca_file()).run();
        assert_eq!(r.status, 401);
    }

    let m = admin_get(admin, "/metrics");
    assert_eq!(m.status, 200);
    assert!(
        m.header("content-type")
            .unwrap_or("")
            .contains("openmetrics-text"),
        "{:?}",
        m.headers
    );
    let text = m.text();
    let get = |s: &str| metric(&text, s);
    assert_eq!(
        get("portcullis_http_requests_total{route=\"api\",method=\"GET\",status=\"2xx\"}"),
        Some(5.0),
        "{text}"
    );
    assert_eq!(
        get("portcullis_http_requests_total{route=\"api\",method=\"POST\",status=\"2xx\"}"),
        Some(1.0),
        "{text}"
    );
    assert_eq!(
        get("portcullis_http_requests_total{route=\"keyed\",method=\"GET\",status=\"4xx\"}"),
        Some(2.0),
        "{text}"
    );
    assert_eq!(
        get("portcullis_tls_handshake_failures_total{listener=\"https\",reason=\"unknown_ca\"}"),
        Some(3.0),
        "{text}"
    );
    assert_eq!(
        get("portcullis_auth_failures_total{scheme=\"apikey\",reason=\"missing\"}"),
        Some(2.0),
        "{text}"
    );
    assert_eq!(
        get("portcullis_http_request_duration_seconds_count{route=\"api\"}"),
        Some(6.0),
        "{text}"
    );
    let handshakes: f64 = text
        .lines()
        .filter(|l| l.starts_with("portcullis_tls_handshakes_total{listener=\"https\""))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum();
    assert_eq!(handshakes, 8.0, "5 + 1 + 2 good handshakes: {text}");
    assert!(
        text.lines().any(
            |l| l.starts_with("portcullis_upstream_server_up{upstream=\"echo\"")
                && l.ends_with(" 1")
        ),
        "{text}"
    );
    assert!(
        text.lines()
            .any(|l| l.starts_with("portcullis_certificate_expiry_seconds{kind=\"served\"")),
        "{text}"
    );
    assert!(text.contains("portcullis_config_info{sha256=\""), "{text}");
    // Label cardinality: no peer address, path or client name anywhere.
    assert!(
        !text.contains("127.0.0.1:")
            || text
                .lines()
                .filter(|l| l.contains("127.0.0.1:"))
                .all(|l| l.starts_with("portcullis_upstream_server_up")),
        "{text}"
    );
    assert!(!text.contains("/hello"), "{text}");
    assert!(!text.contains("stranger"), "{text}");
}

#[test]
fn admin_api_behind_mtls_refuses_clients_without_the_admin_certificate() {
    let env = env();
    let admin = free_port();
    let admin_ca = TestCa::new(&env.path().join("adminca"), "Admin");
    let operator = admin_ca.issue("operator", &LeafSpec::client("operator"));
    let user = env.ca.issue("user", &LeafSpec::client("user"));
    let admin_server = env
        .ca
        .issue("admin-server", &LeafSpec::server(&["localhost"]));
    let toml = admin_config(&env, admin, "")
        .replace(
            &format!("[admin]\naddress = \"127.0.0.1:{admin}\"\n"),
            &format!(
                "[admin]\naddress = \"0.0.0.0:{admin}\"\ncert = \"{}\"\nkey = \"{}\"\nclient_ca = \"{}\"\n",
                admin_server.cert_path.display(),
                admin_server.key_path.display(),
                admin_ca.root_path.display()
            ),
        );
    let _gw = env.start(&toml);
    let url = format!("https://localhost:{admin}/healthz");
    let base = || {
        Curl::new(url.clone())
            .resolve("localhost", admin)
            .cacert(env.ca_file())
    };
    assert!(base().try_run().is_err(), "no client certificate: refused");
    assert!(
        base()
            .client_cert(&user.cert_path, &user.key_path)
            .try_run()
            .is_err(),
        "a certificate of the gateway's client CA is not an admin certificate"
    );
    let ok = base()
        .client_cert(&operator.cert_path, &operator.key_path)
        .run();
    assert_eq!(ok.status, 200, "{}", ok.text());

    // `portcullis status` through mutual TLS.
    let out = Command::new(BIN)
        .args(["status", "--admin", &format!("https://localhost:{admin}")])
        .arg("--cacert")
        .arg(env.ca_file())
        .arg("--cert")
        .arg(&operator.cert_path)
        .arg("--key")
        .arg(&operator.key_path)
        .args(["--interval", "0.2"])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("READY"), "{stdout}");
    assert!(stdout.contains("api"), "{stdout}");
    assert!(stdout.contains("Expiring soonest"), "{stdout}");
}

#[test]
fn admin_on_a_public_address_without_client_ca_is_a_config_error() {
    let env = env();
    let toml = echo_config(
        &env,
        "[admin]\naddress = \"0.0.0.0:9901\"\n\n[[route]]\nname = \"api\"\npath = \"/\"\nupstream = \"echo\"\n",
    );
    let out = env.check("bad.toml", &toml);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("admin.address"), "{err}");
    assert!(err.contains("fix:"), "{err}");
    assert!(err.contains("bad.toml:"), "{err}");
}

#[test]
fn broken_reload_is_refused_old_config_serves_and_readyz_says_why() {
    let env = env();
    let admin = free_port();
    let toml = admin_config(&env, admin, "");
    let gw = env.start(&toml);
    assert_eq!(
        Curl::https(env.https_port, "/x", env.ca_file())
            .run()
            .status,
        200
    );

    std::fs::write(
        &gw.config,
        format!("{toml}\n[[route]]\nname = \"bad\"\npath = \"/b\"\nupstream = \"nowhere\"\n"),
    )
    .unwrap();
    let r = admin_post(admin, "/reload", "", env.path());
    assert_eq!(r.status, 422, "{}", r.text());
    assert!(r.text().contains("nowhere"), "{}", r.text());
    // Still serving with the old config.
    assert_eq!(
        Curl::https(env.https_port, "/x", env.ca_file())
            .run()
            .status,
        200
    );
    let ready = admin_get(admin, "/readyz");
    assert_eq!(ready.status, 503, "{}", ready.text());
    assert!(ready.text().contains("failed to load"), "{}", ready.text());

    // Fixed: a route added by the reload answers, readiness comes back.
    std::fs::write(
        &gw.config,
        format!("{toml}\n[[route]]\nname = \"new\"\npath = \"/new\"\nupstream = \"echo\"\nmethods = [\"POST\"]\n"),
    )
    .unwrap();
    let r = admin_post(admin, "/reload", "", env.path());
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(admin_get(admin, "/readyz").status, 200);
    assert_eq!(
        Curl::https(env.https_port, "/new", env.ca_file())
            .run()
            .status,
        405,
        "the new route (POST only) is in force"
    );
    let m = admin_get(admin, "/metrics").text();
    assert!(
        metric(&m, "portcullis_config_reloads_total{result=\"failure\"}").unwrap_or(0.0) >= 1.0,
        "{m}"
    );
    assert!(
        metric(&m, "portcullis_config_reloads_total{result=\"success\"}").unwrap_or(0.0) >= 1.0,
        "{m}"
    );
}

#[test]
fn a_certificate_swapped_on_disk_is_served_to_the_next_handshake() {
    let env = env();
    let admin = free_port();
    let toml = admin_config(&env, admin, "");
    let _gw = env.start(&toml);
    let serial_now = || {
        let out = Command::new("sh")
            .arg("-c")
            .arg(format!(
                "openssl s_client -connect 127.0.0.1:{} -servername localhost </dev/null 2>/dev/null | openssl x509 -noout -subject",
                env.https_port
            ))
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let before = serial_now();
    assert!(before.contains("CN = localhost"), "{before}");
    // A new certificate for the same names, with another CN, written over the files.
    let renewed = env.ca.issue(
        "renewed",
        &LeafSpec {
            cn: "renewed-server".into(),
            ..LeafSpec::server(&["localhost"])
        },
    );
    std::fs::copy(&renewed.key_path, env.path().join("server.key.new")).unwrap();
    std::fs::copy(&renewed.cert_path, env.path().join("server.crt.new")).unwrap();
    std::fs::rename(env.path().join("server.key.new"), &env.server.key_path).unwrap();
    std::fs::rename(env.path().join("server.crt.new"), &env.server.cert_path).unwrap();
    assert!(
        eventually(Duration::from_secs(15), || serial_now()
            .contains("renewed-server")),
        "the new certificate was not served: {}",
        serial_now()
    );
    // And the gateway still proxies with it.
    assert_eq!(
        Curl::https(env.https_port, "/x", env.ca_file())
            .run()
            .status,
        200
    );
}

#[test]
fn reloads_under_load_fail_no_request() {
    let env = env();
    let admin = free_port();
    let toml = admin_config(&env, admin, "");
    let gw = env.start(&toml);
    // A keep-alive client and a new-connection-per-request client, both looping.
    let script = format!(
        r#"
import requests, sys, time, subprocess
s = requests.Session()
url = "https://localhost:{port}/load"
ok = fail = 0
errors = []
end = time.time() + float(sys.argv[1])
i = 0
while time.time() < end:
    i += 1
    try:
        r = (s if i % 2 else requests).get(url, verify="{ca}", timeout=10)
        if r.status_code == 200: ok += 1
        else:
            fail += 1; errors.append(r.status_code)
    except Exception as e:
        fail += 1; errors.append(repr(e)[:200])
print(ok, fail, errors[:5])
"#,
        port = env.https_port,
        ca = env.ca_file().display()
    );
    let script_path = env.path().join("load.py");
    std::fs::write(&script_path, script).unwrap();
    let client = Command::new("python3")
        .arg(&script_path)
        .arg("6")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    for i in 0..6 {
        std::thread::sleep(Duration::from_millis(500));
        if i % 2 == 0 {
            gw.signal("HUP");
        } else {
            let r = admin_post(admin, "/reload", "", env.path());
            assert_eq!(r.status, 200, "{}", r.text());
        }
    }
    let out = client.wait_with_output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let mut it = stdout.split_whitespace();
    let ok: u64 = it.next().and_then(|x| x.parse().ok()).unwrap_or(0);
    let fail: u64 = it.next().and_then(|x| x.parse().ok()).unwrap_or(u64::MAX);
    assert!(
        ok > 20,
        "too few requests to mean anything: {stdout} {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(fail, 0, "requests failed across reloads: {stdout}");
    let m = admin_get(admin, "/metrics").text();
    assert!(
        metric(&m, "portcullis_config_reloads_total{result=\"success\"}").unwrap_or(0.0) >= 6.0,
        "{m}"
    );
}

#[test]
fn a_reload_moves_a_listener_and_its_open_connections_carry_on() {
    use std::io::{BufRead, BufReader, Write};
    let env = env();
    let admin = free_port();
    let toml = admin_config(&env, admin, "");
    let gw = env.start(&toml);
    // A keep-alive connection on the old address, held across the move.
    let script = format!(
        r#"
import http.client, ssl, sys
ctx = ssl.create_default_context(cafile="{ca}")
c = http.client.HTTPSConnection("localhost", {port}, context=ctx)
c.request("GET", "/before"); r = c.getresponse(); r.read(); print(r.status, flush=True)
sys.stdin.readline()
c.request("GET", "/after"); r = c.getresponse(); r.read(); print(r.status, flush=True)
"#,
        ca = env.ca_file().display(),
        port = env.https_port
    );
    let mut py = Command::new("python3")
        .arg("-c")
        .arg(script)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(py.stdout.take().unwrap()).lines();
    assert_eq!(lines.next().unwrap().unwrap(), "200");

    let new_port = free_port();
    std::fs::write(
        &gw.config,
        toml.replace(
            &format!("127.0.0.1:{}", env.https_port),
            &format!("127.0.0.1:{new_port}"),
        ),
    )
    .unwrap();
    let r = admin_post(admin, "/reload", "", env.path());
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(
        Curl::https(new_port, "/moved", env.ca_file()).run().status,
        200
    );
    assert!(
        Curl::https(env.https_port, "/old", env.ca_file())
            .try_run()
            .is_err(),
        "the old address must no longer accept"
    );
    // The connection opened before the move still answers.
    writeln!(py.stdin.as_mut().unwrap()).unwrap();
    assert_eq!(lines.next().unwrap().unwrap(), "200");
    let _ = py.wait();

    // Adding a listener is refused with the reason; the gateway keeps serving.
    let two = toml.replace(
        &format!("127.0.0.1:{}", env.https_port),
        &format!("127.0.0.1:{new_port}"),
    ) + &env
        .listener_toml("")
        .replace(&env.https_port.to_string(), &free_port().to_string())
        .replace("name = \"https\"", "name = \"second\"");
    std::fs::write(&gw.config, two).unwrap();
    let r = admin_post(admin, "/reload", "", env.path());
    assert_eq!(r.status, 422, "{}", r.text());
    assert!(r.text().contains("restart"), "{}", r.text());
    assert_eq!(
        Curl::https(new_port, "/still", env.ca_file()).run().status,
        200
    );
}

#[test]
fn tls_session_resumption_survives_a_reload() {
    let env = env();
    let admin = free_port();
    let toml = admin_config(&env, admin, "");
    let _gw = env.start(&toml);
    let sess = env.path().join("tls12.sess");
    let s_client = |extra: &str| {
        let out = Command::new("sh")
            .arg("-c")
            .arg(format!(
                "sleep 0.3 | openssl s_client -tls1_2 -connect 127.0.0.1:{} -servername localhost -CAfile {} {extra} 2>&1",
                env.https_port,
                env.ca_file().display()
            ))
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let first = s_client(&format!("-sess_out {}", sess.display()));
    assert!(first.contains("New,"), "{first}");
    let r = admin_post(admin, "/reload", "", env.path());
    assert_eq!(r.status, 200, "{}", r.text());
    let again = s_client(&format!("-sess_in {}", sess.display()));
    assert!(
        again.contains("Reused,"),
        "a ticket issued before the reload must resume after it: {again}"
    );
}
