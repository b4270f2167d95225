//! Security headers on every response the gateway sends: proxied 200s, its
//! own 404 and 502, the redirect; and per-route override or removal.

mod common;
use common::*;

fn assert_defaults(r: &HttpResponse, what: &str) {
    assert_eq!(
        r.header("strict-transport-security"),
        Some("max-age=31536000"),
        "{what}: {:?}",
        r.headers
    );
    assert_eq!(
        r.header("x-content-type-options"),
        Some("nosniff"),
        "{what}"
    );
    assert_eq!(r.header("x-frame-options"), Some("DENY"), "{what}");
    assert_eq!(
        r.header("content-security-policy"),
        Some("default-src 'none'"),
        "{what}"
    );
    assert_eq!(r.header("referrer-policy"), Some("no-referrer"), "{what}");
}

#[test]
fn defaults_on_200_404_and_502_over_h1_and_h2() {
    let env = env();
    let dead = free_port();
    let cfg = echo_config(
        &env,
        &format!(
            "[[upstream]]\nname = \"dead\"\nservers = [\"127.0.0.1:{dead}\"]\n\n\
             [[route]]\npath = \"/api/\"\nupstream = \"echo\"\n\n\
             [[route]]\npath = \"/down/\"\nupstream = \"dead\"\n"
        ),
    );
    let _gw = env.start(&cfg);
    for proto in ["--http1.1", "--http2"] {
        let ok = Curl::https(env.https_port, "/api/x", env.ca_file())
            .arg(proto)
            .run();
        assert_eq!(ok.status, 200);
        assert_defaults(&ok, "200");
        let nf = Curl::https(env.https_port, "/nope", env.ca_file())
            .arg(proto)
            .run();
        assert_eq!(nf.status, 404);
        assert_defaults(&nf, "404");
        let bg = Curl::https(env.https_port, "/down/x", env.ca_file())
            .arg(proto)
            .run();
        assert_eq!(bg.status, 502);
        assert_defaults(&bg, "502");
    }
}

#[test]
fn upstream_security_headers_are_overridden_not_duplicated() {
    let env = env();
    // The mock upstream answers with `X-Frame-Options: ALLOWALL`; the gateway's value wins.
    let up = MockUpstream::start("x");
    let cfg = env.config_with(&format!(
        "[[upstream]]\nname = \"m\"\nservers = [\"{}\"]\n\n[[route]]\npath = \"/\"\nupstream = \"m\"\n",
        up.authority()
    ));
    let _gw = env.start(&cfg);
    let r = Curl::https(env.https_port, "/", env.ca_file()).run();
    assert_defaults(&r, "mock");
    let n = r
        .headers
        .iter()
        .filter(|(k, _)| k == "x-frame-options")
        .count();
    assert_eq!(n, 1);
}

#[test]
fn global_options_and_per_route_override_and_removal() {
    let env = env();
    let cfg = echo_config(
        &env,
        "[[route]]\nname = \"default\"\npath = \"/\"\nupstream = \"echo\"\n\n\
         [[route]]\nname = \"embed\"\npath = \"/embed/\"\nupstream = \"echo\"\n\
         [route.security_headers]\nx_frame_options = \"SAMEORIGIN\"\ncontent_security_policy = \"\"\nreferrer_policy = \"strict-origin\"\n",
    )
    .replace(
        "[log]",
        "[security_headers]\nhsts_max_age = 63072000\nhsts_include_subdomains = true\nhsts_preload = true\n\n[log]",
    );
    let _gw = env.start(&cfg);
    let hsts = "max-age=63072000; includeSubDomains; preload";
    let r = Curl::https(env.https_port, "/a", env.ca_file()).run();
    assert_eq!(r.header("strict-transport-security"), Some(hsts));
    assert_eq!(r.header("x-frame-options"), Some("DENY"));
    assert_eq!(
        r.header("content-security-policy"),
        Some("default-src 'none'")
    );

    let r = Curl::https(env.https_port, "/embed/a", env.ca_file()).run();
    assert_eq!(r.status, 200);
    assert_eq!(r.header("x-frame-options"), Some("SAMEORIGIN"));
    assert_eq!(
        r.header("content-security-policy"),
        None,
        "\"\" removes the header"
    );
    assert_eq!(r.header("referrer-policy"), Some("strict-origin"));
    // Not overridden on the route: inherited from the global section.
    assert_eq!(r.header("strict-transport-security"), Some(hsts));
    assert_eq!(r.header("x-content-type-options"), Some("nosniff"));
}

// Responses hyper builds itself for unparsable requests (431 for a huge head,
// 400 for a malformed one) bypass the stack; the connection guard (sniff.rs)
// adds the security headers to them on the way out.
#[test]
fn security_headers_on_parser_generated_431() {
    let env = env();
    let _gw = env.start(&echo_config(
        &env,
        "[[route]]\npath = \"/\"\nupstream = \"echo\"\n",
    ));
    let req = format!(
        "GET / HTTP/1.1\r\nHost: localhost\r\nX-Huge: {}\r\nConnection: close\r\n\r\n",
        "a".repeat(40_000)
    );
    let resp = raw_tls_exchange(env.https_port, "localhost", req.as_bytes());
    assert_eq!(statuses(&resp), vec![431], "{resp}");
    let lower = resp.to_ascii_lowercase();
    assert!(lower.contains("strict-transport-security:"), "{resp}");
    assert!(lower.contains("x-content-type-options: nosniff"), "{resp}");
}
