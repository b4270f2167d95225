//! Upstream groups: round-robin, retry of an idempotent request when a
//! server refuses connections, passive ejection, active health checks, and
//! HTTPS upstreams verified with a CA, with and without upstream mTLS.

mod common;
use common::*;

use std::time::{Duration, Instant};

fn gateway_for(env: &TestEnv, upstream: &str) -> GatewayProcess {
    env.start(&env.config_with(&format!(
        "{upstream}\n[[route]]\npath = \"/\"\nupstream = \"u\"\n"
    )))
}

fn get(env: &TestEnv, path: &str) -> HttpResponse {
    Curl::https(env.https_port, path, env.ca_file()).run()
}

/// Waits (bounded) until `cond` holds; the test then asserts behaviour, not time.
fn wait_until(what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while !cond() {
        assert!(Instant::now() < deadline, "gave up waiting for {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn round_robin_alternates_between_two_servers() {
    let env = env();
    let a = MockUpstream::start("A");
    let b = MockUpstream::start("B");
    let _gw = gateway_for(
        &env,
        &format!(
            "[[upstream]]\nname = \"u\"\nservers = [\"{}\", \"{}\"]\n",
            a.authority(),
            b.authority()
        ),
    );
    let bodies: Vec<String> = (0..6).map(|i| get(&env, &format!("/{i}")).text()).collect();
    for w in bodies.windows(2) {
        assert_ne!(w[0], w[1], "not alternating: {bodies:?}");
    }
    assert_eq!(a.requests().len(), 3);
    assert_eq!(b.requests().len(), 3);
}

#[test]
fn get_is_retried_on_another_server_when_the_first_refuses() {
    let env = env();
    let a = MockUpstream::start("A");
    let dead = free_port();
    let _gw = gateway_for(
        &env,
        &format!(
            "[[upstream]]\nname = \"u\"\nservers = [\"127.0.0.1:{dead}\", \"{}\"]\nretries = 1\nmax_fails = 0\n",
            a.authority()
        ),
    );
    for i in 0..4 {
        let r = get(&env, &format!("/get{i}"));
        assert_eq!(r.status, 200, "GET {i}: {}", r.text());
        assert_eq!(r.text(), "A");
    }
    assert_eq!(a.requests().len(), 4);
    // A POST with a body is not retried: one of two lands on the dead server.
    let statuses: Vec<u16> = (0..2)
        .map(|i| {
            // HTTP/1.1: over h2 the gateway answers 502 before reading the body and
            // resets the stream with NO_ERROR, which curl 7.88 reports as error 92.
            Curl::https(env.https_port, &format!("/post{i}"), env.ca_file())
                .http1()
                .arg("--data")
                .arg("x=1")
                .run()
                .status
        })
        .collect();
    assert!(statuses.contains(&502), "{statuses:?}");
    assert!(statuses.contains(&200), "{statuses:?}");
}

#[test]
fn passive_ejection_takes_a_failing_server_out() {
    let env = env();
    let a = MockUpstream::start("A");
    let dead = free_port();
    let _gw = gateway_for(
        &env,
        &format!(
            "[[upstream]]\nname = \"u\"\nservers = [\"127.0.0.1:{dead}\", \"{}\"]\nretries = 0\nmax_fails = 1\nfail_timeout = \"1h\"\n",
            a.authority()
        ),
    );
    let statuses: Vec<u16> = (0..8).map(|i| get(&env, &format!("/{i}")).status).collect();
    // Without ejection round-robin would send 4 of 8 to the dead server.
    assert_eq!(
        statuses.iter().filter(|s| **s == 502).count(),
        1,
        "{statuses:?}"
    );
    assert_eq!(a.requests().len(), 7);
}

#[test]
fn active_health_check_marks_a_server_down_and_up_again() {
    let env = env();
    let a = MockUpstream::start("A");
    let b = MockUpstream::start("B");
    b.set_health_status(503);
    let _gw = gateway_for(
        &env,
        &format!(
            "[[upstream]]\nname = \"u\"\nservers = [\"{}\", \"{}\"]\n\
             [upstream.health_check]\npath = \"/healthz\"\ninterval = \"100ms\"\ntimeout = \"2s\"\nfails = 1\npasses = 1\n",
            a.authority(),
            b.authority()
        ),
    );
    // Two checks seen by B means the first one's verdict (down) was taken.
    let checks = |m: &MockUpstream| {
        m.all_requests()
            .iter()
            .filter(|r| r.target() == "/healthz")
            .count()
    };
    wait_until("two health checks on B", || checks(&b) >= 2);
    for i in 0..6 {
        assert_eq!(get(&env, &format!("/{i}")).text(), "A");
    }
    assert!(b.requests().is_empty(), "a server marked down got traffic");
    let ua = a
        .all_requests()
        .iter()
        .find(|r| r.target() == "/healthz")
        .cloned();
    assert_eq!(
        ua.and_then(|r| r.header("user-agent").map(str::to_owned))
            .as_deref(),
        Some("portcullis-health-check")
    );

    b.set_health_status(200);
    let seen = checks(&b);
    wait_until("two more health checks on B", || checks(&b) >= seen + 2);
    let bodies: Vec<String> = (0..4)
        .map(|i| get(&env, &format!("/up{i}")).text())
        .collect();
    assert!(
        bodies.contains(&"B".to_string()),
        "B never came back: {bodies:?}"
    );
}

/// A second gateway as the HTTPS upstream: its own CA, client certificates
/// required from the CA of `client_ca`, identity sent to its echo upstream.
fn https_upstream(env: &TestEnv) -> (TestEnv, GatewayProcess) {
    let up = common::env();
    let echo = free_port();
    let client_ca = env.ca_file().display().to_string();
    let cfg = format!(
        "[log]\naccess_log = \"off\"\n\n{}[[echo]]\naddress = \"127.0.0.1:{echo}\"\n\n\
         [[upstream]]\nname = \"echo\"\nservers = [\"127.0.0.1:{echo}\"]\n\n\
         [[route]]\npath = \"/\"\nupstream = \"echo\"\nidentity_headers = [\"nginx\"]\n",
        up.listener_toml(&format!(
            "client_auth = \"required\"\nclient_ca = [\"{client_ca}\"]\n"
        ))
    );
    let gw = up.start(&cfg);
    (up, gw)
}

#[test]
fn https_upstream_verified_with_a_ca_and_upstream_mtls() {
    let env = env();
    let client = env.ca.issue("gw-client", &LeafSpec::client("gateway-one"));
    let (up, _up_gw) = https_upstream(&env);
    let up_ca = up.ca_file().display().to_string();
    let _gw = gateway_for(
        &env,
        &format!(
            "[[upstream]]\nname = \"u\"\nservers = [\"https://localhost:{}\"]\n\
             [upstream.tls]\nca = \"{up_ca}\"\ncert = \"{}\"\nkey = \"{}\"\n",
            up.https_port,
            client.cert_path.display(),
            client.key_path.display()
        ),
    );
    let r = get(&env, "/through?x=1");
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json()["path"], "/through");
    // The far gateway verified our client certificate and passed its identity on.
    let dn = r
        .echoed_header("x-ssl-client-s-dn")
        .or_else(|| r.echoed_header("x-ssl-client-dn"));
    assert!(
        dn.as_deref().is_some_and(|d| d.contains("gateway-one")),
        "{}",
        r.text()
    );
}

#[test]
fn https_upstream_with_an_untrusted_certificate_is_502() {
    let env = env();
    let client = env.ca.issue("gw-client", &LeafSpec::client("gateway-one"));
    let (up, _up_gw) = https_upstream(&env);
    // Trust our own CA instead of the upstream's: verification must fail.
    let _gw = gateway_for(
        &env,
        &format!(
            "[[upstream]]\nname = \"u\"\nservers = [\"https://localhost:{}\"]\n\
             [upstream.tls]\nca = \"root.crt\"\ncert = \"{}\"\nkey = \"{}\"\n",
            up.https_port,
            client.cert_path.display(),
            client.key_path.display()
        ),
    );
    let r = get(&env, "/x");
    assert_eq!(r.status, 502, "{}", r.text());
    assert!(
        !r.text().to_lowercase().contains("certificate"),
        "{}",
        r.text()
    );
}

#[test]
fn https_upstream_without_the_client_certificate_is_502() {
    let env = env();
    let (up, _up_gw) = https_upstream(&env);
    let up_ca = up.ca_file().display().to_string();
    let _gw = gateway_for(
        &env,
        &format!(
            "[[upstream]]\nname = \"u\"\nservers = [\"https://localhost:{}\"]\n\
             [upstream.tls]\nca = \"{up_ca}\"\n",
            up.https_port
        ),
    );
    let r = get(&env, "/x");
    assert_eq!(r.status, 502, "{}", r.text());
}
