//! What authentication costs per request: JWT (ES256) verification with and
//! without the verified-token cache, and an HTTP message signature check
//! (Ed25519 and HMAC-SHA256, with Content-Digest over a 1 KiB body).
//!
//!   cargo bench -p portcullis-proxy --bench auth -- --quick

use std::hint::black_box;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::signature::{
    EcdsaKeyPair, Ed25519KeyPair, KeyPair, ECDSA_P256_SHA256_FIXED_SIGNING,
};
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use base64::Engine;
use criterion::{criterion_group, criterion_main, Criterion};
use portcullis_proxy::auth::jwt::{
    Algorithm, HttpsJwksFetcher, IssuerConfig, JwtVerifier, KeySource,
};
use portcullis_proxy::auth::signature::{
    content_digest, sign, verify, RequestTarget, SignOptions, SignaturePolicy, SigningKey,
};

fn pem(label: &str, der: &[u8]) -> String {
    let b = STANDARD.encode(der);
    let lines: Vec<&str> = b
        .as_bytes()
        .chunks(64)
        .map(|c| std::str::from_utf8(c).unwrap())
        .collect();
    format!(
        "-----BEGIN {label}-----\n{}\n-----END {label}-----\n",
        lines.join("\n")
    )
}

fn jwt_setup(dir: &std::path::Path) -> (String, IssuerConfig) {
    let rng = SystemRandom::new();
    let pkcs8 = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &rng).unwrap();
    let key = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, pkcs8.as_ref()).unwrap();
    let point = key.public_key().as_ref();
    let (x, y) = (&point[1..33], &point[33..65]);
    let jwks = serde_json::json!({"keys": [{"kty": "EC", "crv": "P-256", "kid": "k1", "use": "sig", "alg": "ES256",
        "x": URL_SAFE_NO_PAD.encode(x), "y": URL_SAFE_NO_PAD.encode(y)}]});
    let path = dir.join("jwks.json");
    std::fs::write(&path, jwks.to_string()).unwrap();
    let now = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let header = URL_SAFE_NO_PAD.encode(br#"{"alg":"ES256","typ":"JWT","kid":"k1"}"#);
    let claims = serde_json::json!({"iss": "https://idp.test", "sub": "user-42", "aud": "api", "iat": now, "exp": now + 3600, "scope": "payments:write"});
    let payload = URL_SAFE_NO_PAD.encode(claims.to_string());
    let input = format!("{header}.{payload}");
    let sig = key.sign(&rng, input.as_bytes()).unwrap();
    let token = format!("{input}.{}", URL_SAFE_NO_PAD.encode(sig.as_ref()));
    let mut cfg = IssuerConfig::new(
        "https://idp.test",
        vec![Algorithm::ES256],
        KeySource::JwksFile(path),
    );
    cfg.audiences = vec!["api".into()];
    (token, cfg)
}

fn bench(c: &mut Criterion) {
    let dir = tempfile::tempdir().unwrap();
    let (token, cfg) = jwt_setup(dir.path());
    let cached = JwtVerifier::new(vec![cfg.clone()]).unwrap();
    let uncached =
        JwtVerifier::with_options(vec![cfg], Arc::new(HttpsJwksFetcher::default()), 0).unwrap();
    let now = SystemTime::now();
    assert!(uncached.verify_cached_keys(&token, now).is_ok());
    c.bench_function("jwt ES256 verify, no cache", |b| {
        b.iter(|| black_box(uncached.verify_cached_keys(black_box(&token), now).is_ok()))
    });
    c.bench_function("jwt ES256 verify, cached token", |b| {
        b.iter(|| black_box(cached.verify_cached_keys(black_box(&token), now).is_ok()))
    });

    let body = vec![b'x'; 1024];
    let rng = SystemRandom::new();
    let ed = Ed25519KeyPair::generate_pkcs8(&rng).unwrap();
    let hmac_secret = STANDARD.encode([7u8; 32]);
    for (name, key) in [
        (
            "ed25519",
            SigningKey::from_pem(&pem("PRIVATE KEY", ed.as_ref())).unwrap(),
        ),
        (
            "hmac-sha256",
            SigningKey::hmac_from_base64(&hmac_secret).unwrap(),
        ),
    ] {
        let mut h = http::HeaderMap::new();
        h.insert("content-digest", content_digest(&body).parse().unwrap());
        let target = RequestTarget::new("https", "api.test", "/pay?x=1");
        let method = http::Method::POST;
        let (input, sig) = sign(
            &target.parts(&method, &h),
            &["@method", "@target-uri", "content-digest"],
            &key,
            &SignOptions::new("k", now),
        )
        .unwrap();
        h.insert("signature-input", input.parse().unwrap());
        h.insert("signature", sig.parse().unwrap());
        let policy = SignaturePolicy {
            required_components: vec![
                "@method".into(),
                "@target-uri".into(),
                "content-digest".into(),
            ],
            algorithms: vec![key.algorithm()],
            max_age: Duration::from_secs(300),
            require_nonce: false,
        };
        let vk = key.verify_key();
        let keys = move |_: &str| Some(vk.clone());
        assert!(verify(&target.parts(&method, &h), Some(&body), &policy, &keys, now).is_ok());
        c.bench_function(
            &format!("signature {name} verify + content-digest (1 KiB)"),
            |b| {
                b.iter(|| {
                    black_box(
                        verify(
                            &target.parts(&method, &h),
                            Some(black_box(&body)),
                            &policy,
                            &keys,
                            now,
                        )
                        .is_ok(),
                    )
                })
            },
        );
    }
}

criterion_group!(benches, bench);
criterion_main!(benches);
