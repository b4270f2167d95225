//! Routing and the plain-HTTP redirect: longest prefix, prefix stripping,
//! host routes, 404, 405 with Allow, API versions with Deprecation/Sunset,
//! and 301/308 redirects that keep path and query.

mod common;
use common::*;

use std::net::SocketAddr;

fn body(r: &HttpResponse) -> String {
    r.text()
}

#[test]
fn longest_prefix_strip_prefix_and_host_routes() {
    let env = env();
    let v1 = MockUpstream::start("v1");
    let v2 = MockUpstream::start("v2");
    let root = MockUpstream::start("root");
    let admin = MockUpstream::start("admin");
    let wild = MockUpstream::start("wild");
    let cfg = env.config_with(&format!(
        "[[upstream]]\nname = \"v1\"\nservers = [\"{}\"]\n\n\
         [[upstream]]\nname = \"v2\"\nservers = [\"{}\"]\n\n\
         [[upstream]]\nname = \"root\"\nservers = [\"{}\"]\n\n\
         [[upstream]]\nname = \"admin\"\nservers = [\"{}\"]\n\n\
         [[upstream]]\nname = \"wild\"\nservers = [\"{}\"]\n\n\
         [[route]]\nname = \"root\"\npath = \"/\"\nupstream = \"root\"\n\n\
         [[route]]\nname = \"api\"\npath = \"/api/\"\nupstream = \"v1\"\n\n\
         [[route]]\nname = \"api-v2\"\npath = \"/api/v2/\"\nupstream = \"v2\"\nstrip_prefix = true\n\n\
         [[route]]\nname = \"admin\"\nhosts = [\"admin.test\"]\npath = \"/\"\nupstream = \"admin\"\n\n\
         [[route]]\nname = \"wild\"\nhosts = [\"*.tenants.test\"]\npath = \"/\"\nupstream = \"wild\"\n",
        v1.authority(),
        v2.authority(),
        root.authority(),
        admin.authority(),
        wild.authority()
    ));
    env.ca.issue(
        "multi",
        &LeafSpec::server(&["localhost", "admin.test", "*.tenants.test"]),
    );
    let _gw = env.start(
        &cfg.replace("cert = \"server.crt\"", "cert = \"multi.crt\"")
            .replace("key = \"server.key\"", "key = \"multi.key\""),
    );
    let get =
        |host: &str, path: &str| Curl::https_host(host, env.https_port, path, env.ca_file()).run();

    let r = get("localhost", "/api/v2/users?id=7");
    assert_eq!(body(&r), "v2");
    let r = get("localhost", "/api/v1/users");
    assert_eq!(body(&r), "v1");
    let r = get("localhost", "/api");
    assert_eq!(body(&r), "root", "\"/api/\" must not match \"/api\"");
    let r = get("localhost", "/elsewhere");
    assert_eq!(body(&r), "root");
    let r = get("admin.test", "/api/v2/x");
    assert_eq!(body(&r), "admin", "a host route wins over any-host routes");
    let r = get("a.tenants.test", "/x");
    assert_eq!(body(&r), "wild");

    // strip_prefix: the upstream sees the rest of the path, query kept; others see it whole.
    let seen = v2.requests();
    assert_eq!(seen.len(), 1);
    assert_eq!(seen[0].target(), "/users?id=7");
    assert_eq!(v1.requests()[0].target(), "/api/v1/users");
}

#[test]
fn no_route_is_404_and_wrong_method_is_405_with_allow() {
    let env = env();
    let up = MockUpstream::start("ro");
    let cfg = env.config_with(&format!(
        "[[upstream]]\nname = \"ro\"\nservers = [\"{}\"]\n\n\
         [[route]]\nname = \"ro\"\npath = \"/ro/\"\nupstream = \"ro\"\nmethods = [\"GET\", \"HEAD\"]\n",
        up.authority()
    ));
    let _gw = env.start(&cfg);
    let r = Curl::https(env.https_port, "/nothing-here", env.ca_file()).run();
    assert_eq!(r.status, 404);
    assert_eq!(r.json()["error"], "not_found");
    let r = Curl::https(env.https_port, "/ro/x", env.ca_file())
        .method("DELETE")
        .run();
    assert_eq!(r.status, 405, "{}", r.text());
    let allow = r.header("allow").expect("Allow header");
    assert!(allow.contains("GET") && allow.contains("HEAD"), "{allow}");
    assert!(!allow.contains("DELETE"));
    let r = Curl::https(env.https_port, "/ro/x", env.ca_file()).run();
    assert_eq!(r.status, 200);
    assert_eq!(
        up.requests().len(),
        1,
        "the refused DELETE reached the upstream"
    );
}

#[test]
fn retired_version_sends_deprecation_and_sunset() {
    let env = env();
    let up = MockUpstream::start("api");
    let cfg = env.config_with(&format!(
        "[[upstream]]\nname = \"api\"\nservers = [\"{}\"]\n\n\
         [[route]]\nname = \"v1\"\npath = \"/v1/\"\nupstream = \"api\"\n\
         deprecated = \"2025-01-01T00:00:00Z\"\nsunset = \"2026-06-30T00:00:00Z\"\n\
         deprecation_link = \"https://docs.example.test/migrate\"\n\n\
         [[route]]\nname = \"v2\"\npath = \"/v2/\"\nupstream = \"api\"\n",
        up.authority()
    ));
    let _gw = env.start(&cfg);
    let r = Curl::https(env.https_port, "/v1/a", env.ca_file()).run();
    assert_eq!(r.status, 200);
    let dep = r.header("deprecation").expect("Deprecation");
    // RFC 9745: a structured-field date (@epoch) or the legacy HTTP-date form.
    assert!(dep == "@1735689600" || dep.contains("2025"), "{dep}");
    assert_eq!(r.header("sunset"), Some("Tue, 30 Jun 2026 00:00:00 GMT"));
    let link = r.header("link").expect("Link");
    assert!(
        link.contains("https://docs.example.test/migrate") && link.contains("deprecation"),
        "{link}"
    );
    let r = Curl::https(env.https_port, "/v2/a", env.ca_file()).run();
    assert_eq!(r.status, 200);
    assert!(!r.has_header("deprecation"));
    assert!(!r.has_header("sunset"));
}

fn redirect_gateway(env: &TestEnv, status: Option<u16>) -> (GatewayProcess, u16) {
    let http = free_port();
    let status_line = status
        .map(|s| format!("status = {s}\n"))
        .unwrap_or_default();
    let cfg = echo_config(
        env,
        &format!(
            "[[route]]\npath = \"/\"\nupstream = \"echo\"\n\n[[redirect]]\naddress = \"127.0.0.1:{http}\"\n{status_line}"
        ),
    );
    let gw = env.start(&cfg);
    assert!(wait_for_port(SocketAddr::from(([127, 0, 0, 1], http))));
    (gw, http)
}

#[test]
fn plain_http_redirects_301_keeping_path_and_query() {
    let env = env();
    let (_gw, http) = redirect_gateway(&env, None);
    let r = Curl::new(format!("http://localhost:{http}/a/b?x=1&y=%20z"))
        .resolve("localhost", http)
        .run();
    assert_eq!(r.status, 301);
    assert_eq!(
        r.header("location"),
        Some(format!("https://localhost:{}/a/b?x=1&y=%20z", env.https_port).as_str())
    );
    // Following it lands on the HTTPS listener.
    let r = Curl::new(format!("http://localhost:{http}/a/b?x=1"))
        .resolve("localhost", http)
        .resolve("localhost", env.https_port)
        .cacert(env.ca_file())
        .arg("-L")
        .run();
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json()["path"], "/a/b");
    assert_eq!(r.json()["query"], "x=1");
}

#[test]
fn plain_http_redirects_308_by_option() {
    let env = env();
    let (_gw, http) = redirect_gateway(&env, Some(308));
    let r = Curl::new(format!("http://localhost:{http}/p?q=2"))
        .resolve("localhost", http)
        .method("POST")
        .run();
    assert_eq!(r.status, 308);
    assert_eq!(
        r.header("location"),
        Some(format!("https://localhost:{}/p?q=2", env.https_port).as_str())
    );
}
