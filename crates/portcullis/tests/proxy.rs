//! Forwarding through the gateway, as the upstream sees it: X-Forwarded-*,
//! X-Real-IP, X-Request-Id, hop-by-hop removal, forged identity headers,
//! Host handling; and the upstream failure answers (502, 504) with no detail.

mod common;
use common::*;

#[test]
fn forwarded_headers_as_seen_by_the_upstream() {
    let env = env();
    let gw = env.start(&echo_config(
        &env,
        "[[route]]\nname = \"api\"\npath = \"/\"\nupstream = \"echo\"\n",
    ));
    let r = Curl::https(env.https_port, "/hello?x=1", env.ca_file())
        .http1()
        .header("X-Forwarded-For: 6.6.6.6")
        .header("X-Real-IP: 6.6.6.6")
        .header("X-Forwarded-Proto: http")
        .header("X-Forwarded-Host: evil.example")
        .header("Connection: keep-alive, X-Secret-Hop")
        .header("X-Secret-Hop: drop-me")
        .header("Keep-Alive: timeout=5")
        .header("TE: trailers")
        .header("X-SSL-Client-DN: CN=admin")
        .header("X-SSL-Client-Verify: SUCCESS")
        .header("X-Forwarded-Client-Cert: Hash=abc;Subject=\"CN=admin\"")
        .header("X-HTTP-Method-Override: DELETE")
        .header("X-Kept: yes")
        .run();
    assert_eq!(r.status, 200, "{}", r.text());
    let j = r.json();
    assert_eq!(j["path"], "/hello");
    assert_eq!(j["query"], "x=1");
    // The peer is untrusted: its X-Forwarded-For is replaced, not appended.
    assert_eq!(
        r.echoed_header("x-forwarded-for").as_deref(),
        Some("127.0.0.1")
    );
    assert_eq!(r.echoed_header("x-real-ip").as_deref(), Some("127.0.0.1"));
    assert_eq!(
        r.echoed_header("x-forwarded-proto").as_deref(),
        Some("https")
    );
    assert_eq!(
        r.echoed_header("x-forwarded-host").as_deref(),
        Some(format!("localhost:{}", env.https_port).as_str())
    );
    // Host kept by default.
    assert_eq!(
        r.echoed_header("host").as_deref(),
        Some(format!("localhost:{}", env.https_port).as_str())
    );
    // A generated request id reaches the upstream and comes back in the response.
    let rid = r.header("x-request-id").expect("x-request-id in response");
    assert_eq!(rid.len(), 32, "{rid}");
    assert_eq!(r.echoed_header("x-request-id").as_deref(), Some(rid));
    // Hop-by-hop and forged identity headers never reach the upstream.
    for h in [
        "x-secret-hop",
        "keep-alive",
        "te",
        "x-ssl-client-dn",
        "x-ssl-client-verify",
        "x-forwarded-client-cert",
        "x-http-method-override",
    ] {
        assert_eq!(r.echoed_header(h), None, "{h} reached the upstream");
    }
    assert_eq!(r.echoed_header("connection"), None);
    assert_eq!(r.echoed_header("x-kept").as_deref(), Some("yes"));
    drop(gw);
}

#[test]
fn request_id_from_the_client_is_kept_and_a_bad_one_replaced() {
    let env = env();
    let _gw = env.start(&echo_config(
        &env,
        "[[route]]\npath = \"/\"\nupstream = \"echo\"\n",
    ));
    let r = Curl::https(env.https_port, "/", env.ca_file())
        .header("X-Request-Id: client-id-42")
        .run();
    assert_eq!(r.status, 200);
    assert_eq!(r.header("x-request-id"), Some("client-id-42"));
    assert_eq!(
        r.echoed_header("x-request-id").as_deref(),
        Some("client-id-42")
    );

    let r = Curl::https(env.https_port, "/", env.ca_file())
        .header("X-Request-Id: has spaces; and=junk")
        .run();
    let rid = r.header("x-request-id").unwrap().to_string();
    assert_ne!(rid, "has spaces; and=junk");
    assert_eq!(r.echoed_header("x-request-id"), Some(rid));
}

#[test]
fn trusted_proxy_forwarded_for_is_appended() {
    let env = env();
    let cfg = echo_config(&env, "[[route]]\npath = \"/\"\nupstream = \"echo\"\n").replace(
        "[log]",
        "[server]\ntrusted_proxies = [\"127.0.0.0/8\"]\n\n[log]",
    );
    let _gw = env.start(&cfg);
    let r = Curl::https(env.https_port, "/", env.ca_file())
        .header("X-Forwarded-For: 198.51.100.7")
        .run();
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(
        r.echoed_header("x-forwarded-for").as_deref(),
        Some("198.51.100.7, 127.0.0.1")
    );
    assert_eq!(
        r.echoed_header("x-real-ip").as_deref(),
        Some("198.51.100.7")
    );
}

#[test]
fn host_header_rewritten_by_option() {
    let env = env();
    let up = MockUpstream::start("fixed");
    let cfg = env.config_with(&format!(
        "[[upstream]]\nname = \"m\"\nservers = [\"{}\"]\n\n\
         [[route]]\npath = \"/fixed/\"\nupstream = \"m\"\nhost_header = \"internal.example\"\n\n\
         [[route]]\npath = \"/\"\nupstream = \"m\"\npreserve_host = false\n",
        up.authority()
    ));
    let _gw = env.start(&cfg);
    let r = Curl::https(env.https_port, "/fixed/a", env.ca_file()).run();
    assert_eq!(r.status, 200);
    let r2 = Curl::https(env.https_port, "/other", env.ca_file()).run();
    assert_eq!(r2.status, 200);
    let seen = up.requests();
    assert_eq!(seen.len(), 2);
    assert_eq!(seen[0].header("host"), Some("internal.example"));
    assert_eq!(seen[1].header("host"), Some(up.authority().as_str()));
    // Upstream's Server / X-Powered-By never reach the client.
    assert!(!r.has_header("x-powered-by"));
    assert_ne!(r.header("server"), Some("mock-internal/1.0"));
}

#[test]
fn upstream_down_is_502_without_internal_detail() {
    let env = env();
    let dead = free_port();
    let cfg = env.config_with(&format!(
        "[[upstream]]\nname = \"dead\"\nservers = [\"127.0.0.1:{dead}\"]\n\n[[route]]\npath = \"/\"\nupstream = \"dead\"\n"
    ));
    let _gw = env.start(&cfg);
    let r = Curl::https(env.https_port, "/x", env.ca_file()).run();
    assert_eq!(r.status, 502, "{}", r.text());
    let body = r.text();
    assert_eq!(r.json()["error"], "bad_gateway");
    assert!(!body.contains(&dead.to_string()), "port leaked: {body}");
    assert!(!body.contains("127.0.0.1"), "address leaked: {body}");
    assert!(
        !body.to_lowercase().contains("refused"),
        "OS error leaked: {body}"
    );
    assert!(
        !body.to_lowercase().contains("tcp"),
        "detail leaked: {body}"
    );
}

#[test]
fn slow_upstream_is_504() {
    let env = env();
    let slow = MockUpstream::start_with("slow", std::time::Duration::from_secs(5));
    let cfg = env.config_with(&format!(
        "[[upstream]]\nname = \"slow\"\nservers = [\"{}\"]\nresponse_timeout = \"500ms\"\n\n[[route]]\npath = \"/\"\nupstream = \"slow\"\n",
        slow.authority()
    ));
    let _gw = env.start(&cfg);
    let r = Curl::https(env.https_port, "/slow", env.ca_file()).run();
    assert_eq!(r.status, 504, "{}", r.text());
    assert_eq!(r.json()["error"], "gateway_timeout");
    assert!(!r.text().contains("127.0.0.1"));
    assert_eq!(slow.requests().len(), 1);
}
