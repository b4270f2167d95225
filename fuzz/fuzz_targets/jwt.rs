//! JWT front end: compact-JWS splitting, strict base64url, header checks
//! (`alg`, `none`, `crit`, `kid`), signature check against the issuer's
//! keys, registered claims and claim rules; and the JWKS parser.
//!
//! The first byte picks the mode:
//! - 0: the rest is a token given to the verifier as a client would send it;
//! - 1: the rest is `header JSON \n claims JSON`; the target signs it (HS256
//!   with the HS issuer's secret, or ES256 with the ES issuer's key when the
//!   header names ES256) so the fuzzer reaches the claim checks. Asserts: a
//!   token verifies only under the issuer whose key signed it and with an
//!   algorithm that issuer lists (no algorithm confusion), and `kid`/`iss`
//!   in the result are the token's own;
//! - 2: the rest is a JWKS document (`JwkSet::parse`): no panic.
#![no_main]

use std::sync::{Arc, OnceLock};
use std::time::{Duration, UNIX_EPOCH};

use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::signature::{EcdsaKeyPair, KeyPair, ECDSA_P256_SHA256_FIXED_SIGNING};
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64URL;
use base64::Engine as _;
use libfuzzer_sys::fuzz_target;
use portcullis_proxy::auth::jwt::{
    check_rules, Algorithm, ClaimMatch, ClaimRule, HttpsJwksFetcher, IssuerConfig, JwkSet,
    JwtVerifier, KeySource,
};

const HS_ISS: &str = "https://hs.example";
const ES_ISS: &str = "https://es.example";
const SECRET: &[u8] = b"0123456789abcdef0123456789abcdef-fuzz-secret";

struct Fixture {
    verifier: JwtVerifier,
    es_key: EcdsaKeyPair,
}

fn fixture() -> &'static Fixture {
    static F: OnceLock<Fixture> = OnceLock::new();
    F.get_or_init(|| {
        let rng = SystemRandom::new();
        let doc = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &rng)
            .expect("P-256 key");
        let es_key = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, doc.as_ref())
            .expect("P-256 key");
        let point = es_key.public_key().as_ref();
        let jwks = serde_json::json!({"keys": [{
            "kty": "EC", "crv": "P-256", "kid": "es-1", "use": "sig", "alg": "ES256",
            "x": B64URL.encode(&point[1..33]), "y": B64URL.encode(&point[33..65]),
        }]});
        let path =
            std::env::temp_dir().join(format!("portcullis-fuzz-jwks-{}.json", std::process::id()));
        std::fs::write(&path, jwks.to_string()).expect("write the JWKS");
        let mut hs = IssuerConfig::new(
            HS_ISS,
            vec![Algorithm::HS256],
            KeySource::Secret(SECRET.to_vec()),
        );
        hs.audiences = vec!["api".into()];
        let mut es = IssuerConfig::new(
            ES_ISS,
            vec![Algorithm::ES256],
            KeySource::JwksFile(path.clone()),
        );
        es.require_exp = false;
        es.leeway = Duration::ZERO;
        let verifier =
            JwtVerifier::with_options(vec![hs, es], Arc::new(HttpsJwksFetcher::default()), 0)
                .expect("the fuzz issuers are valid");
        let _ = std::fs::remove_file(path);
        Fixture { verifier, es_key }
    })
}

#[derive(PartialEq, Debug)]
enum Signer {
    Hmac,
    Ec,
}

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    let f = fixture();
    let now = UNIX_EPOCH + Duration::from_secs(1_764_000_000);
    match mode % 3 {
        0 => {
            if let Ok(token) = std::str::from_utf8(rest) {
                let _ = f.verifier.verify_cached_keys(token, now);
            }
        }
        1 => {
            let mut it = rest.splitn(2, |&b| b == b'\n');
            let header = it.next().unwrap_or_default();
            let claims = it.next().unwrap_or_default();
            let input = format!("{}.{}", B64URL.encode(header), B64URL.encode(claims));
            let (signer, sig) = if header.windows(5).any(|w| w == b"ES256") {
                let sig = f
                    .es_key
                    .sign(&SystemRandom::new(), input.as_bytes())
                    .expect("ECDSA signing");
                (Signer::Ec, sig.as_ref().to_vec())
            } else {
                let key = aws_lc_rs::hmac::Key::new(aws_lc_rs::hmac::HMAC_SHA256, SECRET);
                let tag = aws_lc_rs::hmac::sign(&key, input.as_bytes());
                (Signer::Hmac, tag.as_ref().to_vec())
            };
            let token = format!("{input}.{}", B64URL.encode(sig));
            let Ok(t) = f.verifier.verify_cached_keys(&token, now) else {
                return;
            };
            match signer {
                Signer::Hmac => assert!(t.issuer == HS_ISS && t.alg == Algorithm::HS256, "{t:?}"),
                Signer::Ec => assert!(t.issuer == ES_ISS && t.alg == Algorithm::ES256, "{t:?}"),
            }
            let header: serde_json::Map<String, serde_json::Value> =
                serde_json::from_slice(header).expect("a verified token has a JSON header");
            assert_eq!(
                header.get("alg").and_then(|a| a.as_str()),
                Some(t.alg.name())
            );
            assert_eq!(t.kid.as_deref(), header.get("kid").and_then(|k| k.as_str()));
            assert_eq!(
                t.claims.get("iss").and_then(|i| i.as_str()),
                Some(t.issuer.as_str())
            );
            let rules = [
                ClaimRule {
                    claim: "scope".into(),
                    rule: ClaimMatch::Contains("read".into()),
                },
                ClaimRule {
                    claim: "realm_access.roles".into(),
                    rule: ClaimMatch::Present,
                },
                ClaimRule {
                    claim: "tier".into(),
                    rule: ClaimMatch::OneOf(vec!["gold".into(), 1.into()]),
                },
            ];
            let _ = check_rules(&t, &rules);
        }
        _ => {
            let _ = JwkSet::parse(rest);
        }
    }
});
