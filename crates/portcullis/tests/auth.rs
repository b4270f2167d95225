//! Authentication layers through the real gateway: API keys (header and
//! opt-in query parameter, expiry, disabling, never forwarded), consumers and
//! groups, mTLS as a scheme mapped to a consumer, `auth` (all) and
//! `auth_any` (one of), 401 with WWW-Authenticate and 403, forged consumer
//! headers, and CORS preflights.

mod common;

use std::process::Command;

use common::*;

/// A key and its stored form, made by the CLI as an operator would.
fn new_key(name: &str) -> (String, String) {
    let out = Command::new(BIN)
        .args(["apikey", "create", name])
        .output()
        .unwrap();
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let key = text
        .lines()
        .map(str::trim)
        .find(|l| l.starts_with("pk_"))
        .unwrap()
        .to_string();
    let hash = text
        .split("hash = \"")
        .nth(1)
        .unwrap()
        .split('"')
        .next()
        .unwrap()
        .to_string();
    (key, hash)
}

struct World {
    env: TestEnv,
    _gw: GatewayProcess,
    acme: String,
    bob: String,
    expired: String,
    disabled: String,
}

fn world() -> World {
    let env = env();
    let (acme, acme_h) = new_key("acme");
    let (bob, bob_h) = new_key("bob");
    let (expired, expired_h) = new_key("acme");
    let (disabled, disabled_h) = new_key("acme");
    let rest = format!(
        r#"
[api_keys]
query_param = "api_key"

[[consumer]]
name = "acme"
groups = ["partners"]
api_keys = [{{ hash = "{acme_h}" }}, {{ hash = "{expired_h}", expires = "2020-01-01T00:00:00Z" }}, {{ hash = "{disabled_h}", disabled = true }}]

[[consumer]]
name = "bob"
api_keys = [{{ hash = "{bob_h}" }}]

[[route]]
name = "partners"
path = "/partners"
upstream = "echo"
auth = ["apikey"]
groups = ["partners"]

[[route]]
name = "keyed"
path = "/keyed"
upstream = "echo"
auth = ["apikey"]
cors = {{ origins = ["https://app.example.com"], methods = ["GET", "POST"], headers = ["X-API-Key", "Content-Type"], expose = ["X-Request-Id"], max_age = 600 }}

[[route]]
name = "open"
path = "/"
upstream = "echo"
"#
    );
    let gw = env.start(&echo_config(&env, &rest));
    World {
        env,
        _gw: gw,
        acme,
        bob,
        expired,
        disabled,
    }
}

fn get(w: &World, path: &str, headers: &[&str]) -> HttpResponse {
    let mut c = Curl::https(w.env.https_port, path, w.env.ca_file());
    for h in headers {
        c = c.header(h);
    }
    c.run()
}

#[test]
fn api_keys_authenticate_consumers_and_never_reach_the_upstream() {
    let w = world();
    let r = get(&w, "/keyed/x", &[]);
    assert_eq!(r.status, 401);
    assert!(
        r.header("www-authenticate")
            .is_some_and(|v| v.starts_with("ApiKey")),
        "{:?}",
        r.headers
    );
    for bad in ["pk_wrong", &w.expired, &w.disabled] {
        let r = get(&w, "/keyed/x", &[&format!("X-API-Key: {bad}")]);
        assert_eq!(r.status, 401, "{bad}");
        assert!(
            !r.text().contains("expired") && !r.text().contains("disabled"),
            "the reason leaks: {}",
            r.text()
        );
    }
    let r = get(
        &w,
        "/keyed/x",
        &[&format!("X-API-Key: {}", w.acme), "X-Consumer: admin"],
    );
    assert_eq!(r.status, 200);
    assert_eq!(
        r.echoed_header("x-consumer").as_deref(),
        Some("acme"),
        "the gateway names the consumer, not the client"
    );
    assert!(
        r.echoed_header("x-api-key").is_none(),
        "the key went upstream"
    );
    // Query parameter (enabled in this config), removed before the upstream.
    let r = get(&w, &format!("/keyed/x?a=1&api_key={}&b=2", w.bob), &[]);
    assert_eq!(r.status, 200);
    assert_eq!(r.json()["query"], "a=1&b=2");
    assert_eq!(r.echoed_header("x-consumer").as_deref(), Some("bob"));
    // Unauthenticated routes strip a forged consumer too.
    let r = get(&w, "/open", &["X-Consumer: admin"]);
    assert_eq!(r.status, 200);
    assert!(r.echoed_header("x-consumer").is_none());
}

#[test]
fn groups_decide_who_may_use_a_route() {
    let w = world();
    assert_eq!(
        get(&w, "/partners", &[&format!("X-API-Key: {}", w.acme)]).status,
        200
    );
    let r = get(&w, "/partners", &[&format!("X-API-Key: {}", w.bob)]);
    assert_eq!(r.status, 403);
    assert!(
        !r.text().contains("bob"),
        "the body says too much: {}",
        r.text()
    );
}

#[test]
fn cors_preflight_is_answered_by_the_gateway() {
    let w = world();
    let pre = |origin: &str, method: &str| {
        Curl::https(w.env.https_port, "/keyed/x", w.env.ca_file())
            .method("OPTIONS")
            .header(&format!("Origin: {origin}"))
            .header(&format!("Access-Control-Request-Method: {method}"))
            .header("Access-Control-Request-Headers: x-api-key")
            .run()
    };
    let ok = pre("https://app.example.com", "POST");
    assert_eq!(ok.status, 204);
    assert_eq!(
        ok.header("access-control-allow-origin"),
        Some("https://app.example.com")
    );
    assert_eq!(ok.header("access-control-max-age"), Some("600"));
    let bad = pre("https://evil.test", "POST");
    assert!(bad.header("access-control-allow-origin").is_none());
    assert_ne!(bad.status, 204);
    let bad = pre("https://app.example.com", "DELETE");
    assert!(bad.header("access-control-allow-origin").is_none());
    // The actual request carries the CORS headers for an allowed origin only.
    let r = get(
        &w,
        "/keyed/x",
        &[
            &format!("X-API-Key: {}", w.acme),
            "Origin: https://app.example.com",
        ],
    );
    assert_eq!(
        r.header("access-control-allow-origin"),
        Some("https://app.example.com")
    );
    assert_eq!(
        r.header("access-control-expose-headers"),
        Some("X-Request-Id")
    );
    let r = get(
        &w,
        "/keyed/x",
        &[
            &format!("X-API-Key: {}", w.acme),
            "Origin: https://evil.test",
        ],
    );
    assert!(r.header("access-control-allow-origin").is_none());
}

#[test]
fn mtls_as_a_scheme_with_consumers_and_auth_any() {
    let env = env();
    let ca = TestCa::new(&env.path().join("clients"), "Clients");
    let alice = ca.issue("alice", &LeafSpec::client("alice"));
    let (key, hash) = new_key("svc");
    let listener_extra = format!(
        "client_auth = \"optional\"\nclient_ca = [{:?}]",
        ca.root_path.display().to_string()
    );
    let cfg = format!(
        "[log]\naccess_log = \"off\"\n\n{}[[echo]]\naddress = \"127.0.0.1:{echo}\"\n[[upstream]]\nname = \"echo\"\nservers = [\"127.0.0.1:{echo}\"]\n\n\
         [[consumer]]\nname = \"alice\"\ncert_subjects = [\"CN=alice,*\"]\n\n[[consumer]]\nname = \"svc\"\napi_keys = [{{ hash = \"{hash}\" }}]\n\n\
         [[route]]\nname = \"cert\"\npath = \"/cert\"\nupstream = \"echo\"\nauth = [\"mtls\"]\nconsumers = [\"alice\"]\n\n\
         [[route]]\nname = \"either\"\npath = \"/either\"\nupstream = \"echo\"\nauth_any = [\"mtls\", \"apikey\"]\n",
        env.listener_toml(&listener_extra),
        echo = free_port()
    );
    let _gw = env.start(&cfg);
    let with_cert = |path: &str| {
        Curl::https(env.https_port, path, env.ca_file())
            .client_cert(&alice.cert_path, &alice.key_path)
            .run()
    };
    let r = with_cert("/cert");
    assert_eq!(r.status, 200);
    assert_eq!(r.echoed_header("x-consumer").as_deref(), Some("alice"));
    let r = Curl::https(env.https_port, "/cert", env.ca_file()).run();
    assert_eq!(r.status, 401);
    assert!(r.header("www-authenticate").is_some());
    // One of: certificate or key.
    assert_eq!(with_cert("/either").status, 200);
    let r = Curl::https(env.https_port, "/either", env.ca_file())
        .header(&format!("X-API-Key: {key}"))
        .run();
    assert_eq!(r.status, 200);
    assert_eq!(r.echoed_header("x-consumer").as_deref(), Some("svc"));
    assert_eq!(
        Curl::https(env.https_port, "/either", env.ca_file())
            .run()
            .status,
        401
    );
}

#[test]
fn api_keys_can_live_in_their_own_file() {
    let env = env();
    let (key, hash) = new_key("acme");
    std::fs::write(
        env.path().join("api-keys.toml"),
        format!("[[key]]\nconsumer = \"acme\"\nhash = \"{hash}\"\n"),
    )
    .unwrap();
    let rest = "[api_keys]\nfile = \"api-keys.toml\"\n\n[[consumer]]\nname = \"acme\"\n\n[[route]]\npath = \"/\"\nupstream = \"echo\"\nauth = [\"apikey\"]\n";
    let cfg = echo_config(&env, rest);
    let _gw = env.start(&cfg);
    let r = Curl::https(env.https_port, "/x", env.ca_file())
        .header(&format!("X-API-Key: {key}"))
        .run();
    assert_eq!(r.status, 200);
    assert_eq!(r.echoed_header("x-consumer").as_deref(), Some("acme"));
    // A bad entry is named with the keys file.
    std::fs::write(
        env.path().join("api-keys.toml"),
        "[[key]]\nconsumer = \"nobody\"\nhash = \"sha256:00\"\n",
    )
    .unwrap();
    let out = env.check("again.toml", &cfg);
    assert_eq!(out.status.code(), Some(2));
    let text = String::from_utf8_lossy(&out.stderr);
    assert!(
        text.contains("api-keys.toml key #1")
            && text.contains("consumer \"nobody\" is not defined"),
        "{text}"
    );
}

/// A custom identity header name configured on one route is removed from client
/// requests on every route (so no backend can be handed a forged one).
#[test]
fn custom_identity_header_names_are_stripped_on_every_route() {
    let env = env();
    let ca = TestCa::new(&env.path().join("clients"), "Clients");
    let listener_extra = format!(
        "client_auth = \"optional\"\nclient_ca = [{:?}]",
        ca.root_path.display().to_string()
    );
    let cfg = format!(
        "[log]\naccess_log = \"off\"\n\n{}[[echo]]\naddress = \"127.0.0.1:{echo}\"\n[[upstream]]\nname = \"echo\"\nservers = [\"127.0.0.1:{echo}\"]\n\n\
         [[route]]\nname = \"idp\"\npath = \"/idp\"\nupstream = \"echo\"\nidentity_headers = [\"nginx\"]\nidentity_header_names = {{ dn = \"X-Peer-DN\" }}\nconsumer_header = \"X-Caller\"\n\n\
         [[route]]\nname = \"plain\"\npath = \"/\"\nupstream = \"echo\"\n",
        env.listener_toml(&listener_extra),
        echo = free_port()
    );
    let _gw = env.start(&cfg);
    let r = Curl::https(env.https_port, "/plain", env.ca_file())
        .header("X-Peer-DN: CN=admin")
        .header("X-Caller: root")
        .run();
    assert_eq!(r.status, 200);
    assert!(
        r.echoed_header("x-peer-dn").is_none(),
        "a forged custom identity header reached the upstream"
    );
    assert!(
        r.echoed_header("x-caller").is_none(),
        "a forged custom consumer header reached the upstream"
    );
}
