//! JWT bearer tokens through the gateway, made by Python's pyjwt: a valid
//! ES256 token passes with its subject forwarded and its consumer named; a
//! missing scope, an expired token, alg=none and a token signed by another
//! key are refused with 401 and never reach the upstream.

mod common;

use common::*;

const MAKE: &str = r#"
import json, sys, time, jwt
from cryptography.hazmat.primitives.asymmetric import ec
out = sys.argv[1]
key = ec.generate_private_key(ec.SECP256R1())
other = ec.generate_private_key(ec.SECP256R1())
jwk = json.loads(jwt.algorithms.ECAlgorithm.to_jwk(key.public_key()))
jwk.update({"kid": "k1", "use": "sig", "alg": "ES256"})
open(out + "/jwks.json", "w").write(json.dumps({"keys": [jwk]}))
now = int(time.time())
base = {"iss": "https://idp.test", "aud": "payments", "sub": "user-42", "iat": now, "exp": now + 600}
def tok(claims, k=key, alg="ES256"):
    return jwt.encode(claims, k, algorithm=alg, headers={"kid": "k1"})
tokens = {
    "good": tok(dict(base, scope="payments:read payments:write")),
    "no_scope": tok(dict(base, scope="payments:read")),
    "expired": tok(dict(base, scope="payments:write", iat=now - 7200, exp=now - 3600)),
    "other_key": tok(dict(base, scope="payments:write"), k=other),
    "none": jwt.encode(dict(base, scope="payments:write"), None, algorithm="none"),
    "wrong_aud": tok(dict(base, aud="billing", scope="payments:write")),
}
print(json.dumps(tokens))
"#;

#[test]
fn pyjwt_tokens_are_verified_by_the_gateway() {
    let env = env();
    let out = python(MAKE, &[env.path().to_str().unwrap()]);
    if !out.status.success() {
        let err = String::from_utf8_lossy(&out.stderr);
        if err.contains("No module named") && std::env::var("CI").is_err() {
            eprintln!(
                "SKIPPED: pyjwt/cryptography not installed (bash scripts/install-test-deps.sh)"
            );
            return;
        }
        panic!("python failed: {err}");
    }
    let tokens: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let up = MockUpstream::start("jwt");
    let rest = format!(
        r#"
[[jwt_issuer]]
issuer = "https://idp.test"
audiences = ["payments"]
algorithms = ["ES256"]
jwks_file = "jwks.json"

[[consumer]]
name = "user42"
jwt = [{{ issuer = "https://idp.test", subject = "user-42" }}]

[[upstream]]
name = "m"
servers = ["{}"]

[[rate_limit]]
name = "per_user"
key = "claim:sub"
rate = "1r/m"

[[route]]
name = "limited"
path = "/limited"
upstream = "m"
auth = ["jwt"]
rate_limits = ["per_user"]

[[route]]
name = "pay"
path = "/pay"
upstream = "m"
auth = ["jwt"]
jwt = {{ claims = [{{ claim = "scope", contains = "payments:write" }}], forward_claims = {{ sub = "X-User" }}, strip_authorization = true }}
"#,
        up.authority()
    );
    let _gw = env.start(&env.config_with(&rest));
    let call = |name: &str| {
        let t = tokens[name].as_str().unwrap();
        Curl::https(env.https_port, "/pay", env.ca_file())
            .header(&format!("Authorization: Bearer {t}"))
            .run()
    };
    let r = call("good");
    assert_eq!(r.status, 200, "{}", r.text());
    let seen = up.requests();
    assert_eq!(seen.len(), 1);
    assert_eq!(seen[0].header("x-user"), Some("user-42"));
    assert_eq!(seen[0].header("x-consumer"), Some("user42"));
    assert!(
        seen[0].header("authorization").is_none(),
        "the token went upstream"
    );
    for bad in ["no_scope", "expired", "other_key", "none", "wrong_aud"] {
        let r = call(bad);
        assert_eq!(r.status, 401, "{bad} was not refused");
        assert!(
            r.header("www-authenticate")
                .is_some_and(|v| v.starts_with("Bearer")),
            "{bad}"
        );
    }
    let r = Curl::https(env.https_port, "/pay", env.ca_file()).run();
    assert_eq!(r.status, 401);
    assert_eq!(
        up.requests().len(),
        1,
        "a refused request reached the upstream"
    );
}
