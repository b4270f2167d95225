//! JWT verification against outside references: the Wycheproof JWS and JWK
//! vectors (../shared/data/wycheproof-jws.json, wycheproof-jwk.json) — every
//! `invalid` vector refused, every `valid` one accepted unless listed in
//! `SKIPPED` with its reason — and tokens made by Python's pyjwt verified by
//! `JwtVerifier`.

use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, SystemTime};

use serde_json::{json, Value};

use portcullis_proxy::auth::jwt;

use jwt::jwks::{self, JwkSet};
use jwt::{
    cert_bound_ok, check_rules, Algorithm, ClaimMatch, ClaimRule, IssuerConfig, JwtError,
    JwtVerifier, KeySource,
};

/// Vectors not run, by (file, tcId), with the reason.
const SKIPPED: &[(&str, u64, &str)] = &[
    (
        "jws",
        367,
        "invalidBase64Padding: upstream defect, the token is byte-identical to valid tcId 357 \
         (the padding it was meant to carry is lost); we accept 357",
    ),
    (
        "jws",
        370,
        "invalidBase64PaddingInPayload: upstream defect, byte-identical to valid tcId 357",
    ),
];

/// `valid` vectors we refuse on purpose, with the reason.
const REFUSED_ON_PURPOSE: &[(&str, u64, &str)] = &[
    (
        "jws",
        372,
        "InvalidCharacterInsertedInHeader: contains '?', outside the base64url alphabet; \
         RFC 7515 2 base64url is strict here",
    ),
    (
        "jws",
        373,
        "InvalidCharacterInsertedInPayload: contains '?', outside the base64url alphabet",
    ),
    (
        "jws",
        346,
        "RFC 7520 Figure 20: the header says PS384 but the JWK is marked alg PS256; a key \
         with alg verifies only that alg",
    ),
    (
        "jws",
        350,
        "RFC 7520 Figure 20 (key_ops variant): header PS384, JWK alg PS256",
    ),
    (
        "jws",
        347,
        "RFC 7520 Figure 27: the JWK says alg \"ES521\", not a JOSE algorithm, so the key is \
         not a signature key for us (the same token with alg removed from the key verifies \
         as ES512, checked below)",
    ),
    (
        "jws",
        351,
        "RFC 7520 Figure 27 (key_ops variant): JWK alg \"ES521\"",
    ),
];

fn data_dir() -> Option<PathBuf> {
    let manifest = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    // crates/portcullis-proxy → <repo> → <repo>/../shared/data
    let mut candidates = vec![manifest.join("../../../shared/data")];
    if let Some(dir) = std::env::var_os("PORTCULLIS_SHARED_DATA") {
        candidates.insert(0, PathBuf::from(dir));
    }
    candidates.push(PathBuf::from("/work/shared/data"));
    candidates
        .into_iter()
        .find(|p| p.join("wycheproof-jws.json").exists())
}

fn load(name: &str) -> Option<Value> {
    let Some(dir) = data_dir() else {
        eprintln!("SKIPPED: ../shared/data/{name} not found");
        return None;
    };
    let text = std::fs::read_to_string(dir.join(name)).expect("read vectors");
    Some(serde_json::from_str(&text).expect("vectors are JSON"))
}

/// The group's verification keys: "public" when given, else "private"
/// (HMAC groups), as a set.
fn group_keys(group: &Value) -> Value {
    let k = group
        .get("public")
        .or_else(|| group.get("private"))
        .expect("group has keys");
    if k.get("keys").is_some() {
        k.clone()
    } else {
        json!({ "keys": [k] })
    }
}

fn lookup<'a>(list: &'a [(&str, u64, &str)], file: &str, id: u64) -> Option<&'a str> {
    list.iter()
        .find(|(f, i, _)| *f == file && *i == id)
        .map(|(_, _, r)| *r)
}

fn run_file(file: &str, name: &str) {
    let Some(doc) = load(name) else { return };
    let (mut accepted, mut refused, mut skipped, mut on_purpose) = (0, 0, 0, 0);
    let mut failures = Vec::new();
    for group in doc["testGroups"].as_array().expect("testGroups") {
        let set = JwkSet::from_value(&group_keys(group));
        if let Err(e) = &set {
            eprintln!(
                "{file} group {}: key set refused: {e}",
                group["comment"].as_str().unwrap_or("")
            );
        }
        for t in group["tests"].as_array().expect("tests") {
            let id = t["tcId"].as_u64().expect("tcId");
            let valid = t["result"] == "valid";
            let token = t["jws"].as_str().expect("jws");
            let what = format!(
                "{file} tcId {id} ({} / {})",
                group["comment"].as_str().unwrap_or(""),
                t["comment"].as_str().unwrap_or("")
            );
            if let Some(reason) = lookup(SKIPPED, file, id) {
                eprintln!("skipped {what}: {reason}");
                skipped += 1;
                continue;
            }
            let outcome: Result<(), String> = match &set {
                Ok(keys) => jwks::verify_compact(token, keys, &Algorithm::ALL)
                    .map(|_| ())
                    .map_err(|e| e.reason().to_owned()),
                Err(e) => Err(format!("key set refused: {e}")),
            };
            let purposely = lookup(REFUSED_ON_PURPOSE, file, id);
            match (valid, &outcome, purposely) {
                (true, Ok(()), None) => accepted += 1,
                (false, Err(_), _) => refused += 1,
                (true, Err(_), Some(reason)) => {
                    eprintln!("refused on purpose {what}: {reason}");
                    on_purpose += 1;
                }
                (true, Err(e), None) => failures.push(format!("{what}: valid but refused: {e:?}")),
                (true, Ok(()), Some(_)) => failures.push(format!(
                    "{what}: listed as refused on purpose, but accepted"
                )),
                (false, Ok(()), _) => failures.push(format!("{what}: invalid but accepted")),
            }
        }
    }
    eprintln!(
        "{name}: {accepted} valid accepted, {refused} invalid refused, \
         {on_purpose} valid refused on purpose, {skipped} skipped"
    );
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    assert!(accepted + refused > 0);
}

#[test]
fn wycheproof_jws_vectors() {
    run_file("jws", "wycheproof-jws.json");
}

#[test]
fn wycheproof_jwk_vectors() {
    run_file("jwk", "wycheproof-jwk.json");
}

/// RFC 7520 Figure 27 verifies as ES512 once the key's non-JOSE `alg`
/// ("ES521") is dropped: the refusal above is about the key, not the curve.
#[test]
fn rfc7520_figure27_verifies_as_es512() {
    let Some(doc) = load("wycheproof-jws.json") else {
        return;
    };
    let mut seen = 0;
    for group in doc["testGroups"].as_array().unwrap() {
        for t in group["tests"].as_array().unwrap() {
            if t["comment"] != "Figure27" {
                continue;
            }
            let mut keys = group_keys(group);
            for k in keys["keys"].as_array_mut().unwrap() {
                k.as_object_mut().unwrap().remove("alg");
            }
            let set = JwkSet::from_value(&keys).expect("P-521 key");
            let v = jwks::verify_compact(t["jws"].as_str().unwrap(), &set, &[Algorithm::ES512])
                .expect("Figure 27 verifies");
            assert_eq!(v.alg, Algorithm::ES512);
            seen += 1;
        }
    }
    assert!(seen > 0);
}

// === Interop with Python pyjwt ===

fn pyjwt_available() -> bool {
    let ok = Command::new("python3")
        .args(["-c", "import jwt, cryptography"])
        .status()
        .map(|s| s.success())
        .unwrap_or(false);
    if !ok {
        let msg = "`import jwt, cryptography` failed; install with scripts/install-test-deps.sh \
                   (pip install pyjwt cryptography)";
        if std::env::var_os("CI").is_some() {
            panic!("{msg}");
        }
        eprintln!("\n!!! SKIPPED pyjwt interop: {msg}\n");
    }
    ok
}

/// Python makes the keys, exports the public JWKS, and signs tokens with
/// pyjwt: ES256, RS256, PS256, EdDSA from the JWKS keys; HS256 with the
/// secret given on the command line; plus attacks (alg none, an HS256 token
/// keyed with the RSA public key PEM, an expired token, a bound token).
const PY_MAKE_TOKENS: &str = r#"
import json, sys, time
import jwt
from jwt.algorithms import ECAlgorithm, RSAAlgorithm, OKPAlgorithm
from cryptography.hazmat.primitives.asymmetric import ec, rsa, ed25519
from cryptography.hazmat.primitives import serialization

secret = bytes.fromhex(sys.argv[1])
thumb = sys.argv[2]
now = int(time.time())
claims = {"iss": "https://py.example", "sub": "py-user", "aud": ["api", "other"],
          "iat": now, "nbf": now - 5, "exp": now + 300, "scope": "read payments:write"}

ec_key = ec.generate_private_key(ec.SECP256R1())
rsa_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
ed_key = ed25519.Ed25519PrivateKey.generate()

def pub_jwk(alg_cls, key, kid):
    d = json.loads(alg_cls.to_jwk(key.public_key()))
    d["kid"] = kid
    d["use"] = "sig"
    return d

jwks = {"keys": [pub_jwk(ECAlgorithm, ec_key, "ec-1"),
                 pub_jwk(RSAAlgorithm, rsa_key, "rsa-1"),
                 pub_jwk(OKPAlgorithm, ed_key, "ed-1")]}

tokens = {
    "ES256": jwt.encode(claims, ec_key, algorithm="ES256", headers={"kid": "ec-1"}),
    "RS256": jwt.encode(claims, rsa_key, algorithm="RS256", headers={"kid": "rsa-1"}),
    "PS256": jwt.encode(claims, rsa_key, algorithm="PS256", headers={"kid": "rsa-1"}),
    "EdDSA": jwt.encode(claims, ed_key, algorithm="EdDSA", headers={"kid": "ed-1"}),
    "HS256": jwt.encode(dict(claims, iss="https://py-hs.example"), secret, algorithm="HS256"),
    "bound": jwt.encode(dict(claims, cnf={"x5t#S256": thumb}), ec_key, algorithm="ES256",
                        headers={"kid": "ec-1"}),
    "none": jwt.encode(claims, None, algorithm="none"),
    "expired": jwt.encode(dict(claims, exp=now - 3600, iat=now - 7200, nbf=now - 7200), ec_key,
                          algorithm="ES256", headers={"kid": "ec-1"}),
    "wrong_aud": jwt.encode(dict(claims, aud="elsewhere"), ec_key, algorithm="ES256",
                            headers={"kid": "ec-1"}),
}

# RS/HS confusion: HS256 keyed with the RSA public key PEM (pyjwt refuses to
# do this itself, so build it by hand).
import base64, hmac, hashlib
def b64(b): return base64.urlsafe_b64encode(b).rstrip(b"=").decode()
pem = rsa_key.public_key().public_bytes(serialization.Encoding.PEM,
                                        serialization.PublicFormat.SubjectPublicKeyInfo)
head = b64(json.dumps({"alg": "HS256", "kid": "rsa-1"}).encode())
body = b64(json.dumps(claims).encode())
mac = hmac.new(pem, f"{head}.{body}".encode(), hashlib.sha256).digest()
tokens["hs_with_rsa_pem"] = f"{head}.{body}.{b64(mac)}"

print(json.dumps({"jwks": jwks, "tokens": tokens}))
"#;

#[tokio::test]
async fn pyjwt_tokens_verify() {
    if !pyjwt_available() {
        return;
    }
    let secret = [0x5au8; 32];
    let cert = b"the client certificate DER";
    let thumb = jwt::x5t_s256(cert);
    let hex: String = secret.iter().map(|b| format!("{b:02x}")).collect();
    let out = Command::new("python3")
        .args(["-c", PY_MAKE_TOKENS, &hex, &thumb])
        .output()
        .expect("python3 runs");
    assert!(
        out.status.success(),
        "python failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let made: Value = serde_json::from_slice(&out.stdout).expect("python prints JSON");
    let dir = tempfile::tempdir().unwrap();
    let jwks_path = dir.path().join("py-jwks.json");
    std::fs::write(&jwks_path, made["jwks"].to_string()).unwrap();

    let mut asym = IssuerConfig::new(
        "https://py.example",
        vec![
            Algorithm::ES256,
            Algorithm::RS256,
            Algorithm::PS256,
            Algorithm::EdDSA,
        ],
        KeySource::JwksFile(jwks_path),
    );
    asym.audiences = vec!["api".into()];
    let mut hs = IssuerConfig::new(
        "https://py-hs.example",
        vec![Algorithm::HS256],
        KeySource::Secret(secret.to_vec()),
    );
    hs.audiences = vec!["api".into()];
    let v = JwtVerifier::new(vec![asym, hs]).expect("verifier");
    let now = SystemTime::now();
    let tok = |name: &str| made["tokens"][name].as_str().unwrap().to_owned();

    for alg in ["ES256", "RS256", "PS256", "EdDSA", "HS256"] {
        let t = v
            .verify(&tok(alg), now)
            .await
            .unwrap_or_else(|e| panic!("pyjwt {alg} token refused: {e:?}"));
        assert_eq!(t.subject.as_deref(), Some("py-user"), "{alg}");
        assert_eq!(t.alg.name(), alg);
        check_rules(
            &t,
            &[ClaimRule {
                claim: "scope".into(),
                rule: ClaimMatch::Contains("payments:write".into()),
            }],
        )
        .unwrap();
        // Tampered payload.
        let parts: Vec<&str> = made["tokens"][alg].as_str().unwrap().split('.').collect();
        let mut payload = parts[1].to_owned();
        let swap = if payload.ends_with('A') { 'Q' } else { 'A' };
        payload.pop();
        payload.push(swap);
        let forged = format!("{}.{payload}.{}", parts[0], parts[2]);
        assert!(
            v.verify(&forged, now).await.is_err(),
            "{alg}: tampered accepted"
        );
    }

    let bound = v.verify(&tok("bound"), now).await.unwrap();
    assert!(cert_bound_ok(&bound, Some(cert)));
    assert!(!cert_bound_ok(&bound, Some(b"another certificate")));

    assert_eq!(
        v.verify(&tok("none"), now).await.unwrap_err(),
        JwtError::AlgNone
    );
    assert_eq!(
        v.verify(&tok("hs_with_rsa_pem"), now).await.unwrap_err(),
        JwtError::AlgNotAllowed
    );
    assert_eq!(
        v.verify(&tok("expired"), now).await.unwrap_err(),
        JwtError::Expired
    );
    assert_eq!(
        v.verify(&tok("wrong_aud"), now).await.unwrap_err(),
        JwtError::WrongAudience
    );
    // Five minutes on, still within exp; an hour on, expired.
    v.verify(&tok("ES256"), now + Duration::from_secs(200))
        .await
        .unwrap();
    assert_eq!(
        v.verify(&tok("ES256"), now + Duration::from_secs(3600))
            .await
            .unwrap_err(),
        JwtError::Expired
    );
}
