//! HTTP Message Signatures (RFC 9421) enforced by the gateway on a route:
//! a signed request passes and names its consumer; a changed body, a missing
//! signature, an unknown key, a stale `created` and a replay are refused with
//! 401 and never reach the upstream.

mod common;

use std::process::Command;
use std::time::{Duration, SystemTime};

use common::*;
use portcullis_proxy::auth::signature::{
    content_digest, sign, RequestTarget, SignOptions, SigningKey,
};

struct Bed {
    env: TestEnv,
    up: MockUpstream,
    _gw: GatewayProcess,
    key: SigningKey,
}

fn bed() -> Bed {
    bed_with("")
}

fn bed_with(extra: &str) -> Bed {
    let env = env();
    let d = env.path();
    assert!(Command::new("openssl")
        .args(["genpkey", "-algorithm", "ed25519", "-out"])
        .arg(d.join("sig.key"))
        .status()
        .unwrap()
        .success());
    assert!(Command::new("openssl")
        .args(["pkey", "-pubout", "-in"])
        .arg(d.join("sig.key"))
        .arg("-out")
        .arg(d.join("sig.pub"))
        .status()
        .unwrap()
        .success());
    let key = SigningKey::from_pem(&std::fs::read_to_string(d.join("sig.key")).unwrap())
        .expect("ed25519 key");
    let up = MockUpstream::start("signed");
    let rest = format!(
        "{extra}[[consumer]]\nname = \"acme\"\nsigning_keys = [{{ keyid = \"acme-1\", key = \"sig.pub\" }}]\n\n\
         [[upstream]]\nname = \"m\"\nservers = [\"{}\"]\n\n\
         [[route]]\nname = \"pay\"\npath = \"/pay\"\nupstream = \"m\"\nauth = [\"signature\"]\n\
         signature = {{ components = [\"@method\", \"@target-uri\", \"content-digest\"], max_age = \"5m\" }}\n",
        up.authority()
    );
    let gw = env.start(&env.config_with(&rest));
    Bed {
        env,
        up,
        _gw: gw,
        key,
    }
}

/// Signs a POST of `body` to /pay as the client sees it; returns the three headers.
fn signed_headers(b: &Bed, body: &[u8], created: SystemTime) -> Vec<String> {
    let digest = content_digest(body);
    let mut h = http::HeaderMap::new();
    h.insert("content-digest", digest.parse().unwrap());
    let target = RequestTarget::new("https", &format!("localhost:{}", b.env.https_port), "/pay");
    let method = http::Method::POST;
    let parts = target.parts(&method, &h);
    let (input, sig) = sign(
        &parts,
        &["@method", "@target-uri", "content-digest"],
        &b.key,
        &SignOptions::new("acme-1", created),
    )
    .unwrap();
    vec![
        format!("Content-Digest: {digest}"),
        format!("Signature-Input: {input}"),
        format!("Signature: {sig}"),
    ]
}

fn post(b: &Bed, body: &[u8], headers: &[String]) -> HttpResponse {
    let mut c = Curl::https(b.env.https_port, "/pay", b.env.ca_file())
        .method("POST")
        .body(body, b.env.path());
    for h in headers {
        c = c.header(h);
    }
    c.run()
}

#[test]
fn signed_requests_pass_and_everything_else_is_refused() {
    let b = bed();
    let body = br#"{"amount": 100}"#;
    let headers = signed_headers(&b, body, SystemTime::now());
    let r = post(&b, body, &headers);
    assert_eq!(r.status, 200, "{}", r.text());
    let seen = b.up.requests();
    assert_eq!(seen.len(), 1);
    assert_eq!(seen[0].header("x-consumer"), Some("acme"));

    // The same signature again: a replay.
    let r = post(&b, body, &headers);
    assert_eq!(r.status, 401);
    assert!(r
        .header("www-authenticate")
        .is_some_and(|v| v.starts_with("Signature")));

    // A changed body under a fresh signature of the old body.
    let headers = signed_headers(&b, body, SystemTime::now() - Duration::from_secs(1));
    assert_eq!(post(&b, br#"{"amount": 100000}"#, &headers).status, 401);

    // No signature at all.
    assert_eq!(post(&b, body, &[]).status, 401);

    // A stale one.
    let headers = signed_headers(&b, body, SystemTime::now() - Duration::from_secs(3600));
    assert_eq!(post(&b, body, &headers).status, 401);

    assert_eq!(
        b.up.requests().len(),
        1,
        "a refused request reached the upstream"
    );
}

/// Two replicas sharing Redis: a signature used at one is refused at the other.
#[test]
fn a_replay_to_another_replica_is_refused_in_cluster_mode() {
    let Some(redis) = RedisServer::start() else {
        return;
    };
    let b = bed_with(&format!(
        "[cluster]\nredis = \"{}\"\nkey_secret = \"0123456789abcdef0123\"\n",
        redis.url()
    ));
    let env2 = env();
    std::fs::copy(b.env.path().join("sig.pub"), env2.path().join("sig.pub")).unwrap();
    let rest = format!(
        "[cluster]\nredis = \"{}\"\nkey_secret = \"0123456789abcdef0123\"\n\n[[consumer]]\nname = \"acme\"\nsigning_keys = [{{ keyid = \"acme-1\", key = \"sig.pub\" }}]\n\n\
         [[upstream]]\nname = \"m\"\nservers = [\"{}\"]\n\n\
         [[route]]\nname = \"pay\"\npath = \"/pay\"\nupstream = \"m\"\nauth = [\"signature\"]\n\
         signature = {{ components = [\"@method\", \"@target-uri\", \"content-digest\"], max_age = \"5m\" }}\n",
        redis.url(),
        b.up.authority()
    );
    let _gw2 = env2.start(&env2.config_with(&rest));
    let body = br#"{"amount": 5}"#;
    // The second replica, addressed by the same public name as the first
    // (its certificate comes from its own test CA).
    let at_replica_2 = |headers: &[String]| {
        let mut c = Curl::https(env2.https_port, "/pay", env2.ca_file())
            .method("POST")
            .body(body, env2.path())
            .header(&format!("Host: localhost:{}", b.env.https_port));
        for h in headers {
            c = c.header(h);
        }
        c.run().status
    };
    // Control: a fresh signature is accepted there.
    let fresh = signed_headers(&b, body, SystemTime::now() - Duration::from_secs(2));
    assert_eq!(at_replica_2(&fresh), 200);
    // A signature used at replica 1 is refused at replica 2.
    let headers = signed_headers(&b, body, SystemTime::now());
    assert_eq!(post(&b, body, &headers).status, 200);
    assert_eq!(
        at_replica_2(&headers),
        401,
        "the replay was accepted by the other replica"
    );
    assert_eq!(b.up.requests().len(), 2);
}
