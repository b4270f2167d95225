//! HTTP Message Signatures: RFC 9421 Appendix B test vectors, the refusals
//! a gateway must make, and interop with the Python `http-message-signatures`
//! library in both directions.

use std::io::Write as _;
use std::process::{Command, Stdio};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine as _;
use http::{HeaderMap, HeaderValue, Method};
use portcullis_proxy::auth::replay::ReplayCache;
use portcullis_proxy::auth::signature::{
    content_digest, random_nonce, sign, signature_base, verify, verify_signature_base, Component,
    RequestTarget, SigAlgorithm, SignOptions, SignaturePolicy, SigningKey, VerifyKey,
};

// === RFC 9421 Appendix B.1 keys ===

const RSA_PSS_PRIVATE: &str = "-----BEGIN PRIVATE KEY-----
MIIEvgIBADALBgkqhkiG9w0BAQoEggSqMIIEpgIBAAKCAQEAr4tmm3r20Wd/Pbqv
P1s2+QEtvpuRaV8Yq40gjUR8y2Rjxa6dpG2GXHbPfvMs8ct+Lh1GH45x28Rw3Ry5
3mm+oAXjyQ86OnDkZ5N8lYbggD4O3w6M6pAvLkhk95AndTrifbIFPNU8PPMO7Oyr
FAHqgDsznjPFmTOtCEcN2Z1FpWgchwuYLPL+Wokqltd11nqqzi+bJ9cvSKADYdUA
AN5WUtzdpiy6LbTgSxP7ociU4Tn0g5I6aDZJ7A8Lzo0KSyZYoA485mqcO0GVAdVw
9lq4aOT9v6d+nb4bnNkQVklLQ3fVAvJm+xdDOp9LCNCN48V2pnDOkFV6+U9nV5oy
c6XI2wIDAQABAoIBAQCUB8ip+kJiiZVKF8AqfB/aUP0jTAqOQewK1kKJ/iQCXBCq
pbo360gvdt05H5VZ/RDVkEgO2k73VSsbulqezKs8RFs2tEmU+JgTI9MeQJPWcP6X
aKy6LIYs0E2cWgp8GADgoBs8llBq0UhX0KffglIeek3n7Z6Gt4YFge2TAcW2WbN4
XfK7lupFyo6HHyWRiYHMMARQXLJeOSdTn5aMBP0PO4bQyk5ORxTUSeOciPJUFktQ
HkvGbym7KryEfwH8Tks0L7WhzyP60PL3xS9FNOJi9m+zztwYIXGDQuKM2GDsITeD
2mI2oHoPMyAD0wdI7BwSVW18p1h+jgfc4dlexKYRAoGBAOVfuiEiOchGghV5vn5N
RDNscAFnpHj1QgMr6/UG05RTgmcLfVsI1I4bSkbrIuVKviGGf7atlkROALOG/xRx
DLadgBEeNyHL5lz6ihQaFJLVQ0u3U4SB67J0YtVO3R6lXcIjBDHuY8SjYJ7Ci6Z6
vuDcoaEujnlrtUhaMxvSfcUJAoGBAMPsCHXte1uWNAqYad2WdLjPDlKtQJK1diCm
rqmB2g8QE99hDOHItjDBEdpyFBKOIP+NpVtM2KLhRajjcL9Ph8jrID6XUqikQuVi
4J9FV2m42jXMuioTT13idAILanYg8D3idvy/3isDVkON0X3UAVKrgMEne0hJpkPL
FYqgetvDAoGBAKLQ6JZMbSe0pPIJkSamQhsehgL5Rs51iX4m1z7+sYFAJfhvN3Q/
OGIHDRp6HjMUcxHpHw7U+S1TETxePwKLnLKj6hw8jnX2/nZRgWHzgVcY+sPsReRx
NJVf+Cfh6yOtznfX00p+JWOXdSY8glSSHJwRAMog+hFGW1AYdt7w80XBAoGBAImR
NUugqapgaEA8TrFxkJmngXYaAqpA0iYRA7kv3S4QavPBUGtFJHBNULzitydkNtVZ
3w6hgce0h9YThTo/nKc+OZDZbgfN9s7cQ75x0PQCAO4fx2P91Q+mDzDUVTeG30mE
t2m3S0dGe47JiJxifV9P3wNBNrZGSIF3mrORBVNDAoGBAI0QKn2Iv7Sgo4T/XjND
dl2kZTXqGAk8dOhpUiw/HdM3OGWbhHj2NdCzBliOmPyQtAr770GITWvbAI+IRYyF
S7Fnk6ZVVVHsxjtaHy1uJGFlaZzKR4AGNaUTOJMs6NadzCmGPAxNQQOCqoUjn4XR
rOjr9w349JooGXhOxbu8nOxX
-----END PRIVATE KEY-----";

const RSA_PSS_PUBLIC: &str = "-----BEGIN PUBLIC KEY-----
MIIBIjANBgkqhkiG9w0BAQEFAAOCAQ8AMIIBCgKCAQEAr4tmm3r20Wd/PbqvP1s2
+QEtvpuRaV8Yq40gjUR8y2Rjxa6dpG2GXHbPfvMs8ct+Lh1GH45x28Rw3Ry53mm+
oAXjyQ86OnDkZ5N8lYbggD4O3w6M6pAvLkhk95AndTrifbIFPNU8PPMO7OyrFAHq
gDsznjPFmTOtCEcN2Z1FpWgchwuYLPL+Wokqltd11nqqzi+bJ9cvSKADYdUAAN5W
Utzdpiy6LbTgSxP7ociU4Tn0g5I6aDZJ7A8Lzo0KSyZYoA485mqcO0GVAdVw9lq4
aOT9v6d+nb4bnNkQVklLQ3fVAvJm+xdDOp9LCNCN48V2pnDOkFV6+U9nV5oyc6XI
2wIDAQAB
-----END PUBLIC KEY-----";

const ECC_P256_PRIVATE: &str = "-----BEGIN EC PRIVATE KEY-----
MHcCAQEEIFKbhfNZfpDsW43+0+JjUr9K+bTeuxopu653+hBaXGA7oAoGCCqGSM49
AwEHoUQDQgAEqIVYZVLCrPZHGHjP17CTW0/+D9Lfw0EkjqF7xB4FivAxzic30tMM
4GF+hR6Dxh71Z50VGGdldkkDXZCnTNnoXQ==
-----END EC PRIVATE KEY-----";

const ECC_P256_PUBLIC: &str = "-----BEGIN PUBLIC KEY-----
MFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAEqIVYZVLCrPZHGHjP17CTW0/+D9Lf
w0EkjqF7xB4FivAxzic30tMM4GF+hR6Dxh71Z50VGGdldkkDXZCnTNnoXQ==
-----END PUBLIC KEY-----";

const ED25519_PRIVATE: &str = "-----BEGIN PRIVATE KEY-----
MC4CAQAwBQYDK2VwBCIEIJ+DYvh6SEqVTm50DFtMDoQikTmiCqirVv9mWG9qfSnF
-----END PRIVATE KEY-----";

const ED25519_PUBLIC: &str = "-----BEGIN PUBLIC KEY-----
MCowBQYDK2VwAyEAJrQLj5P/89iXES9+vFgrIy29clF9CC/oPPsw3c5D0bs=
-----END PUBLIC KEY-----";

const SHARED_SECRET: &str =
    "uzvJfB4u3N0Jy4T7NZ75MDVcr8zSTInedJtkgcu46YW4XByzNJjxBdtjUkdJPBtbmHhIDi6pcl8jsasjlTMtDQ==";

const REQUEST_DIGEST: &str = "sha-512=:WZDPaVn/7XgHaAy8pmojAkGWoRx2UFChF41A2svX+TaPm+AbwAgBWnrIiYllu7BNNyealdVLvRwEmTHWXvJwew==:";
const REQUEST_BODY: &[u8] = br#"{"hello": "world"}"#;
const CREATED: u64 = 1618884473;

fn at(secs: u64) -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(secs)
}

/// RFC 9421 B.2 test-request.
fn test_request() -> (RequestTarget, HeaderMap) {
    let target = RequestTarget::parse("https://example.com/foo?param=Value&Pet=dog").unwrap();
    let mut h = HeaderMap::new();
    h.insert("host", HeaderValue::from_static("example.com"));
    h.insert(
        "date",
        HeaderValue::from_static("Tue, 20 Apr 2021 02:07:55 GMT"),
    );
    h.insert("content-type", HeaderValue::from_static("application/json"));
    h.insert("content-digest", HeaderValue::from_static(REQUEST_DIGEST));
    h.insert("content-length", HeaderValue::from_static("18"));
    (target, h)
}

fn components(list: &[&str]) -> Vec<Component> {
    list.iter().map(|c| Component::parse(c).unwrap()).collect()
}

fn rfc_keys(keyid: &str) -> Option<VerifyKey> {
    match keyid {
        "test-key-rsa-pss" => VerifyKey::from_pem(RSA_PSS_PUBLIC).ok(),
        "test-key-ecc-p256" => VerifyKey::from_pem(ECC_P256_PUBLIC).ok(),
        "test-key-ed25519" => VerifyKey::from_pem(ED25519_PUBLIC).ok(),
        "test-shared-secret" => VerifyKey::hmac_from_base64(SHARED_SECRET).ok(),
        _ => None,
    }
}

fn lenient(required: &[&str]) -> SignaturePolicy {
    SignaturePolicy {
        required_components: required.iter().map(|s| s.to_string()).collect(),
        algorithms: SigAlgorithm::ALL.to_vec(),
        max_age: Duration::from_secs(300),
        require_nonce: false,
    }
}

/// Checks the base byte for byte, then verifies the published signature
/// through `verify` with the headers as the RFC shows them.
fn check_vector(label: &str, comps: &[&str], params: &str, expected_base: &str, sig_b64: &str) {
    let (target, mut headers) = test_request();
    let m = Method::POST;
    let base = signature_base(&target.parts(&m, &headers), &components(comps), params).unwrap();
    assert_eq!(base, expected_base, "{label}: signature base");

    let inner = expected_base
        .rsplit_once("\"@signature-params\": ")
        .unwrap()
        .1;
    headers.insert(
        "signature-input",
        format!("{label}={inner}").parse().unwrap(),
    );
    headers.insert("signature", format!("{label}=:{sig_b64}:").parse().unwrap());
    let v = verify(
        &target.parts(&m, &headers),
        Some(REQUEST_BODY),
        &lenient(&[]),
        &rfc_keys,
        at(CREATED + 10),
    )
    .unwrap_or_else(|e| panic!("{label}: {e}"));
    assert_eq!(v.label, label);
    assert_eq!(v.created, at(CREATED));
}

#[test]
fn rfc9421_b21_minimal_rsa_pss() {
    check_vector(
        "sig-b21",
        &[],
        r#";created=1618884473;keyid="test-key-rsa-pss";nonce="b3k2pp5k7z-50gnwp.yemd""#,
        r#""@signature-params": ();created=1618884473;keyid="test-key-rsa-pss";nonce="b3k2pp5k7z-50gnwp.yemd""#,
        "d2pmTvmbncD3xQm8E9ZV2828BjQWGgiwAaw5bAkgibUopemLJcWDy/lkbbHAve4cRAtx31Iq786U7it++wgGxbtRxf8Udx7zFZsckzXaJMkA7ChG52eSkFxykJeNqsrWH5S+oxNFlD4dzVuwe8DhTSja8xxbR/Z2cOGdCbzR72rgFWhzx2VjBqJzsPLMIQKhO4DGezXehhWwE56YCE+O6c0mKZsfxVrogUvA4HELjVKWmAvtl6UnCh8jYzuVG5WSb/QEVPnP5TmcAnLH1g+s++v6d4s8m0gCw1fV5/SITLq9mhho8K3+7EPYTU8IU1bLhdxO5Nyt8C8ssinQ98Xw9Q==",
    );
}

#[test]
fn rfc9421_b22_selective_rsa_pss() {
    check_vector(
        "sig-b22",
        &["@authority", "content-digest", r#""@query-param";name="Pet""#],
        r#";created=1618884473;keyid="test-key-rsa-pss";tag="header-example""#,
        &format!(
            "\"@authority\": example.com\n\"content-digest\": {REQUEST_DIGEST}\n\"@query-param\";name=\"Pet\": dog\n\"@signature-params\": (\"@authority\" \"content-digest\" \"@query-param\";name=\"Pet\");created=1618884473;keyid=\"test-key-rsa-pss\";tag=\"header-example\""
        ),
        "LjbtqUbfmvjj5C5kr1Ugj4PmLYvx9wVjZvD9GsTT4F7GrcQEdJzgI9qHxICagShLRiLMlAJjtq6N4CDfKtjvuJyE5qH7KT8UCMkSowOB4+ECxCmT8rtAmj/0PIXxi0A0nxKyB09RNrCQibbUjsLS/2YyFYXEu4TRJQzRw1rLEuEfY17SARYhpTlaqwZVtR8NV7+4UKkjqpcAoFqWFQh62s7Cl+H2fjBSpqfZUJcsIk4N6wiKYd4je2U/lankenQ99PZfB4jY3I5rSV2DSBVkSFsURIjYErOs0tFTQosMTAoxk//0RoKUqiYY8Bh0aaUEb0rQl3/XaVe4bXTugEjHSw==",
    );
}

#[test]
fn rfc9421_b23_full_coverage_rsa_pss() {
    check_vector(
        "sig-b23",
        &["date", "@method", "@path", "@query", "@authority", "content-type", "content-digest", "content-length"],
        r#";created=1618884473;keyid="test-key-rsa-pss""#,
        &format!(
            "\"date\": Tue, 20 Apr 2021 02:07:55 GMT\n\"@method\": POST\n\"@path\": /foo\n\"@query\": ?param=Value&Pet=dog\n\"@authority\": example.com\n\"content-type\": application/json\n\"content-digest\": {REQUEST_DIGEST}\n\"content-length\": 18\n\"@signature-params\": (\"date\" \"@method\" \"@path\" \"@query\" \"@authority\" \"content-type\" \"content-digest\" \"content-length\");created=1618884473;keyid=\"test-key-rsa-pss\""
        ),
        "bbN8oArOxYoyylQQUU6QYwrTuaxLwjAC9fbY2F6SVWvh0yBiMIRGOnMYwZ/5MR6fb0Kh1rIRASVxFkeGt683+qRpRRU5p2voTp768ZrCUb38K0fUxN0O0iC59DzYx8DFll5GmydPxSmme9v6ULbMFkl+V5B1TP/yPViV7KsLNmvKiLJH1pFkh/aYA2HXXZzNBXmIkoQoLd7YfW91kE9o/CCoC1xMy7JA1ipwvKvfrs65ldmlu9bpG6A9BmzhuzF8Eim5f8ui9eH8LZH896+QIF61ka39VBrohr9iyMUJpvRX2Zbhl5ZJzSRxpJyoEZAFL2FUo5fTIztsDZKEgM4cUA==",
    );
}

/// B.2.4 signs a response (`@status`), which the request path never builds;
/// the published base and signature still verify with the ECDSA key.
#[test]
fn rfc9421_b24_response_ecdsa_p256() {
    let body = br#"{"message": "good dog"}"#;
    let digest = portcullis_proxy::auth::signature::content_digest_sha512(body);
    assert_eq!(
        digest,
        "sha-512=:mEWXIS7MaLRuGgxOBdODa3xqM1XdEvxoYhvlCFJ41QJgJc4GTsPp29l5oGX69wWdXymyU0rjJuahq4l5aGgfLQ==:"
    );
    let base = format!(
        "\"@status\": 200\n\"content-type\": application/json\n\"content-digest\": {digest}\n\"content-length\": 23\n\"@signature-params\": (\"@status\" \"content-type\" \"content-digest\" \"content-length\");created=1618884473;keyid=\"test-key-ecc-p256\""
    );
    let sig = B64
        .decode("wNmSUAhwb5LxtOtOpNa6W5xj067m5hFrj0XQ4fvpaCLx0NKocgPquLgyahnzDnDAUy5eCdlYUEkLIj+32oiasw==")
        .unwrap();
    let key = VerifyKey::from_pem(ECC_P256_PUBLIC).unwrap();
    verify_signature_base(&key, &base, &sig).unwrap();
    // a fresh signature by the private key verifies too (ECDSA is randomized)
    let sk = SigningKey::from_pem(ECC_P256_PRIVATE).unwrap();
    assert_eq!(sk.verify_key(), key);
    let mut tampered = sig.clone();
    tampered[10] ^= 1;
    assert!(verify_signature_base(&key, &base, &tampered).is_err());
}

#[test]
fn rfc9421_b25_hmac_reproduced() {
    let expected = "\"date\": Tue, 20 Apr 2021 02:07:55 GMT\n\"@authority\": example.com\n\"content-type\": application/json\n\"@signature-params\": (\"date\" \"@authority\" \"content-type\");created=1618884473;keyid=\"test-shared-secret\"";
    let sig = "pxcQw6G3AjtMBQjwo8XzkZf/bws5LelbaMk5rGIGtE8=";
    check_vector(
        "sig-b25",
        &["date", "@authority", "content-type"],
        r#";created=1618884473;keyid="test-shared-secret""#,
        expected,
        sig,
    );
    // HMAC is deterministic: `sign` reproduces the published value.
    let (target, headers) = test_request();
    let m = Method::POST;
    let key = SigningKey::hmac_from_base64(SHARED_SECRET).unwrap();
    let mut opts = SignOptions::new("test-shared-secret", at(CREATED));
    opts.label = "sig-b25";
    opts.include_alg = false;
    let (input, signature) = sign(
        &target.parts(&m, &headers),
        &["date", "@authority", "content-type"],
        &key,
        &opts,
    )
    .unwrap();
    assert_eq!(
        input,
        r#"sig-b25=("date" "@authority" "content-type");created=1618884473;keyid="test-shared-secret""#
    );
    assert_eq!(signature, format!("sig-b25=:{sig}:"));
}

#[test]
fn rfc9421_b26_ed25519_reproduced() {
    let comps = [
        "date",
        "@method",
        "@path",
        "@authority",
        "content-type",
        "content-length",
    ];
    let expected = "\"date\": Tue, 20 Apr 2021 02:07:55 GMT\n\"@method\": POST\n\"@path\": /foo\n\"@authority\": example.com\n\"content-type\": application/json\n\"content-length\": 18\n\"@signature-params\": (\"date\" \"@method\" \"@path\" \"@authority\" \"content-type\" \"content-length\");created=1618884473;keyid=\"test-key-ed25519\"";
    let sig =
        "wqcAqbmYJ2ji2glfAMaRy4gruYYnx2nEFN2HN6jrnDnQCK1u02Gb04v9EDgwUPiu4A0w6vuQv5lIp5WPpBKRCw==";
    check_vector(
        "sig-b26",
        &comps,
        r#";created=1618884473;keyid="test-key-ed25519""#,
        expected,
        sig,
    );

    let (target, headers) = test_request();
    let m = Method::POST;
    let key = SigningKey::from_pem(ED25519_PRIVATE).unwrap();
    assert_eq!(
        key.verify_key(),
        VerifyKey::from_pem(ED25519_PUBLIC).unwrap()
    );
    let mut opts = SignOptions::new("test-key-ed25519", at(CREATED));
    opts.label = "sig-b26";
    opts.include_alg = false;
    let (_, signature) = sign(&target.parts(&m, &headers), &comps, &key, &opts).unwrap();
    assert_eq!(signature, format!("sig-b26=:{sig}:"));
}

#[test]
fn rsa_pss_and_ecdsa_sign_then_verify() {
    for (pem, keyid) in [
        (RSA_PSS_PRIVATE, "test-key-rsa-pss"),
        (ECC_P256_PRIVATE, "test-key-ecc-p256"),
    ] {
        let key = SigningKey::from_pem(pem).unwrap();
        assert_eq!(
            Some(key.verify_key().algorithm()),
            rfc_keys(keyid).map(|k| k.algorithm())
        );
        let (target, mut headers) = test_request();
        let m = Method::POST;
        let (i, s) = sign(
            &target.parts(&m, &headers),
            &["@method", "@target-uri", "content-digest"],
            &key,
            &SignOptions::new(keyid, at(CREATED)),
        )
        .unwrap();
        headers.insert("signature-input", i.parse().unwrap());
        headers.insert("signature", s.parse().unwrap());
        let v = verify(
            &target.parts(&m, &headers),
            Some(REQUEST_BODY),
            &lenient(&["@method", "@target-uri", "content-digest"]),
            &rfc_keys,
            at(CREATED + 1),
        )
        .unwrap();
        assert!(v.body_checked);
        assert_eq!(v.keyid, keyid);
    }
}

#[test]
fn jwk_keys_match_pem_keys() {
    let ed = r#"{"kty":"OKP","crv":"Ed25519","kid":"test-key-ed25519","x":"JrQLj5P_89iXES9-vFgrIy29clF9CC_oPPsw3c5D0bs"}"#;
    assert_eq!(
        VerifyKey::from_jwk(ed).unwrap(),
        VerifyKey::from_pem(ED25519_PUBLIC).unwrap()
    );
    let ec = r#"{"kty":"EC","crv":"P-256","kid":"test-key-ecc-p256","x":"qIVYZVLCrPZHGHjP17CTW0_-D9Lfw0EkjqF7xB4FivA","y":"Mc4nN9LTDOBhfoUeg8Ye9WedFRhnZXZJA12Qp0zZ6F0"}"#;
    let from_jwk = VerifyKey::from_jwk(ec).unwrap();
    let sk = SigningKey::from_pem(ECC_P256_PRIVATE).unwrap();
    assert_eq!(from_jwk, sk.verify_key());
    let oct = format!(
        r#"{{"kty":"oct","k":"{}"}}"#,
        SHARED_SECRET
            .replace('+', "-")
            .replace('/', "_")
            .trim_end_matches('=')
    );
    assert_eq!(
        VerifyKey::from_jwk(&oct).unwrap(),
        VerifyKey::hmac_from_base64(SHARED_SECRET).unwrap()
    );
}

// === Refusals ===

const NOW: u64 = 1_700_000_000;

struct Fixture {
    target: RequestTarget,
    method: Method,
    headers: HeaderMap,
    body: Vec<u8>,
}

fn ed_keys(keyid: &str) -> Option<VerifyKey> {
    match keyid {
        "client-ed" => VerifyKey::from_pem(ED25519_PUBLIC).ok(),
        "client-hmac" => VerifyKey::hmac_from_base64(SHARED_SECRET).ok(),
        _ => None,
    }
}

fn strict() -> SignaturePolicy {
    SignaturePolicy {
        required_components: vec![
            "@method".into(),
            "@target-uri".into(),
            "content-digest".into(),
            "date".into(),
        ],
        algorithms: vec![SigAlgorithm::Ed25519, SigAlgorithm::EcdsaP256Sha256],
        max_age: Duration::from_secs(300),
        require_nonce: true,
    }
}

fn signed(
    comps: &[&str],
    created: u64,
    nonce: Option<&str>,
    key: &SigningKey,
    keyid: &str,
) -> Fixture {
    let target = RequestTarget::parse("https://api.example.com/payments?account=42").unwrap();
    let body = br#"{"amount": 100}"#.to_vec();
    let mut headers = HeaderMap::new();
    headers.insert(
        "date",
        HeaderValue::from_static("Tue, 14 Nov 2023 22:13:20 GMT"),
    );
    headers.insert("content-type", HeaderValue::from_static("application/json"));
    headers.insert("content-digest", content_digest(&body).parse().unwrap());
    let method = Method::POST;
    let mut opts = SignOptions::new(keyid, at(created));
    opts.nonce = nonce;
    let (i, s) = sign(&target.parts(&method, &headers), comps, key, &opts).unwrap();
    headers.insert("signature-input", i.parse().unwrap());
    headers.insert("signature", s.parse().unwrap());
    Fixture {
        target,
        method,
        headers,
        body,
    }
}

const ALL: &[&str] = &["@method", "@target-uri", "content-digest", "date"];

fn good() -> Fixture {
    let key = SigningKey::from_pem(ED25519_PRIVATE).unwrap();
    signed(ALL, NOW - 5, Some("n-1"), &key, "client-ed")
}

fn check(
    f: &Fixture,
    policy: &SignaturePolicy,
) -> Result<portcullis_proxy::auth::signature::Verified, &'static str> {
    verify(
        &f.target.parts(&f.method, &f.headers),
        Some(&f.body),
        policy,
        &ed_keys,
        at(NOW),
    )
    .map_err(|e| e.reason())
}

#[test]
fn accepts_a_good_signature() {
    let v = check(&good(), &strict()).unwrap();
    assert_eq!(
        (v.keyid.as_str(), v.nonce.as_deref()),
        ("client-ed", Some("n-1"))
    );
    assert!(v.body_checked);
}

#[test]
fn refuses_a_changed_body() {
    let mut f = good();
    f.body = br#"{"amount": 100000}"#.to_vec();
    assert_eq!(check(&f, &strict()).unwrap_err(), "content_digest_mismatch");
}

#[test]
fn refuses_a_changed_digest_header() {
    let mut f = good();
    f.body = br#"{"amount": 100000}"#.to_vec();
    f.headers
        .insert("content-digest", content_digest(&f.body).parse().unwrap());
    assert_eq!(check(&f, &strict()).unwrap_err(), "signature_invalid");
}

#[test]
fn refuses_a_missing_covered_component() {
    let mut f = good();
    f.headers.remove("date");
    assert_eq!(
        check(&f, &strict()).unwrap_err(),
        "covered_component_missing"
    );
}

#[test]
fn refuses_a_required_component_not_covered() {
    let key = SigningKey::from_pem(ED25519_PRIVATE).unwrap();
    let f = signed(
        &["@method", "@target-uri", "date"],
        NOW,
        Some("n"),
        &key,
        "client-ed",
    );
    assert_eq!(
        check(&f, &strict()).unwrap_err(),
        "required_component_not_covered"
    );
}

#[test]
fn refuses_stale_and_future_created() {
    let key = SigningKey::from_pem(ED25519_PRIVATE).unwrap();
    let f = signed(ALL, NOW - 301, Some("n"), &key, "client-ed");
    assert_eq!(check(&f, &strict()).unwrap_err(), "signature_stale");
    let f = signed(ALL, NOW + 3600, Some("n"), &key, "client-ed");
    assert_eq!(check(&f, &strict()).unwrap_err(), "created_in_future");
}

#[test]
fn refuses_an_algorithm_not_allowed() {
    let key = SigningKey::hmac_from_base64(SHARED_SECRET).unwrap();
    let f = signed(ALL, NOW, Some("n"), &key, "client-hmac");
    assert_eq!(check(&f, &strict()).unwrap_err(), "alg_not_allowed");
}

#[test]
fn refuses_an_alg_parameter_that_disagrees_with_the_key() {
    // An HMAC signature presented under the Ed25519 keyid, claiming hmac.
    let key = SigningKey::hmac_from_base64(SHARED_SECRET).unwrap();
    let f = signed(ALL, NOW, Some("n"), &key, "client-ed");
    assert_eq!(check(&f, &strict()).unwrap_err(), "alg_mismatch");
}

#[test]
fn refuses_an_unknown_keyid() {
    let key = SigningKey::from_pem(ED25519_PRIVATE).unwrap();
    let f = signed(ALL, NOW, Some("n"), &key, "someone-else");
    assert_eq!(check(&f, &strict()).unwrap_err(), "keyid_unknown");
}

#[test]
fn refuses_a_tampered_signature_and_request() {
    let mut f = good();
    let s = f
        .headers
        .get("signature")
        .unwrap()
        .to_str()
        .unwrap()
        .to_string();
    let (label, b64) = s.split_once("=:").unwrap();
    let mut raw = B64.decode(b64.trim_end_matches(':')).unwrap();
    raw[0] ^= 0x01;
    f.headers.insert(
        "signature",
        format!("{label}=:{}:", B64.encode(raw)).parse().unwrap(),
    );
    assert_eq!(check(&f, &strict()).unwrap_err(), "signature_invalid");

    let mut f = good();
    f.target = RequestTarget::parse("https://api.example.com/payments?account=43").unwrap();
    assert_eq!(check(&f, &strict()).unwrap_err(), "signature_invalid");
    let mut f = good();
    f.method = Method::PUT;
    assert_eq!(check(&f, &strict()).unwrap_err(), "signature_invalid");
}

#[test]
fn refuses_missing_nonce_and_missing_headers() {
    let key = SigningKey::from_pem(ED25519_PRIVATE).unwrap();
    let f = signed(ALL, NOW, None, &key, "client-ed");
    assert_eq!(check(&f, &strict()).unwrap_err(), "nonce_missing");
    let mut f = good();
    f.headers.remove("signature");
    assert_eq!(check(&f, &strict()).unwrap_err(), "signature_missing");
    let mut f = good();
    f.headers.insert(
        "signature-input",
        HeaderValue::from_static("sig1=(\"@method\""),
    );
    assert_eq!(check(&f, &strict()).unwrap_err(), "signature_malformed");
}

#[test]
fn refuses_a_replay_by_nonce_and_by_signature() {
    // The cache's clock is the verifier's clock (NOW), not the wall clock.
    let cache = ReplayCache::new(1000);
    let policy = strict();
    let v = check(&good(), &policy).unwrap();
    assert!(cache.check_and_insert_at(&v.replay_key(), v.replay_until(policy.max_age), at(NOW)));
    let again = check(&good(), &policy).unwrap();
    assert!(!cache.check_and_insert_at(
        &again.replay_key(),
        again.replay_until(policy.max_age),
        at(NOW)
    ));

    // Without a nonce the signature value itself is the replay key.
    let mut no_nonce = strict();
    no_nonce.require_nonce = false;
    let key = SigningKey::from_pem(ED25519_PRIVATE).unwrap();
    let f = signed(ALL, NOW - 1, None, &key, "client-ed");
    let v = check(&f, &no_nonce).unwrap();
    assert!(cache.check_and_insert_at(&v.replay_key(), v.replay_until(no_nonce.max_age), at(NOW)));
    let v = check(&f, &no_nonce).unwrap();
    assert!(!cache.check_and_insert_at(&v.replay_key(), v.replay_until(no_nonce.max_age), at(NOW)));
    // A new signature (new created) is fresh.
    let f = signed(ALL, NOW, None, &key, "client-ed");
    let v = check(&f, &no_nonce).unwrap();
    assert!(cache.check_and_insert_at(&v.replay_key(), v.replay_until(no_nonce.max_age), at(NOW)));
}

#[test]
fn picks_the_signature_that_covers_the_policy() {
    // A weak signature first, a complete one second: the complete one wins.
    let key = SigningKey::from_pem(ED25519_PRIVATE).unwrap();
    let mut f = good();
    let weak = signed(&["@method"], NOW, Some("w"), &key, "client-ed");
    let strong_i = f
        .headers
        .get("signature-input")
        .unwrap()
        .to_str()
        .unwrap()
        .replace("sig1=", "strong=");
    let strong_s = f
        .headers
        .get("signature")
        .unwrap()
        .to_str()
        .unwrap()
        .replace("sig1=", "strong=");
    let weak_i = weak
        .headers
        .get("signature-input")
        .unwrap()
        .to_str()
        .unwrap()
        .to_string();
    let weak_s = weak
        .headers
        .get("signature")
        .unwrap()
        .to_str()
        .unwrap()
        .to_string();
    f.headers.insert(
        "signature-input",
        format!("{weak_i}, {strong_i}").parse().unwrap(),
    );
    f.headers.insert(
        "signature",
        format!("{weak_s}, {strong_s}").parse().unwrap(),
    );
    assert_eq!(check(&f, &strict()).unwrap().label, "strong");
}

// === Interop with Python http-message-signatures ===

fn python_available() -> bool {
    let ok = Command::new("python3")
        .args(["-c", "import http_message_signatures, requests"])
        .status()
        .map(|s| s.success())
        .unwrap_or(false);
    if !ok {
        eprintln!(
            "\n!!! SKIPPING Python interop: `import http_message_signatures, requests` failed.\n\
             !!! Install with scripts/install-test-deps.sh (pip install http-message-signatures requests).\n"
        );
    }
    ok
}

const PY_COMMON: &str = r#"
import base64, datetime, json, sys
import requests
from cryptography.hazmat.primitives.serialization import load_pem_private_key, load_pem_public_key
from http_message_signatures import HTTPMessageSigner, HTTPMessageVerifier, HTTPSignatureKeyResolver, algorithms

SECRET = base64.b64decode(sys.argv[2])
ED_PRIV = load_pem_private_key(sys.argv[3].encode(), password=None)
ED_PUB = load_pem_public_key(sys.argv[4].encode())

class Keys(HTTPSignatureKeyResolver):
    def resolve_private_key(self, key_id):
        return SECRET if key_id == "client-hmac" else ED_PRIV
    def resolve_public_key(self, key_id):
        return SECRET if key_id == "client-hmac" else ED_PUB

ALGS = {"hmac": (algorithms.HMAC_SHA256, "client-hmac"), "ed25519": (algorithms.ED25519, "client-ed")}
"#;

const PY_SIGN: &str = r#"
alg, keyid = ALGS[sys.argv[1]]
body = b'{"amount": 100, "currency": "EUR"}'
req = requests.Request("POST", "https://api.example.com/payments?account=42&note=a+b",
                       data=body, headers={"Content-Type": "application/json",
                                           "Date": "Tue, 14 Nov 2023 22:13:20 GMT"}).prepare()
HTTPMessageSigner(signature_algorithm=alg, key_resolver=Keys()).sign(
    req, key_id=keyid, nonce="py-nonce-1", label="py",
    covered_component_ids=("@method", "@target-uri", "@authority", "@path", "@query", '"@query-param";name="note"', "content-type", "date"),
    body=body)
print(json.dumps({"method": req.method, "url": req.url, "headers": dict(req.headers),
                  "body": base64.b64encode(body).decode()}))
"#;

const PY_VERIFY: &str = r#"
alg, keyid = ALGS[sys.argv[1]]
msg = json.load(sys.stdin)
body = base64.b64decode(msg["body"])
req = requests.Request(msg["method"], msg["url"], data=body, headers=msg["headers"]).prepare()
for k, v in msg["headers"].items():
    req.headers[k] = v
res = HTTPMessageVerifier(signature_algorithm=alg, key_resolver=Keys()).verify(
    req, max_age=datetime.timedelta(minutes=5), body=body,
    require_components=("@method", "@target-uri", "content-digest"))
print(json.dumps({"keyid": res[0].parameters["keyid"], "label": res[0].label}))
"#;

fn python(script: &str, alg: &str, stdin: Option<&str>) -> Result<String, String> {
    let mut child = Command::new("python3")
        .arg("-c")
        .arg(format!("{PY_COMMON}\n{script}"))
        .args([alg, SHARED_SECRET, ED25519_PRIVATE, ED25519_PUBLIC])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("python3 runs");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(stdin.unwrap_or("").as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    if out.status.success() {
        Ok(String::from_utf8(out.stdout).unwrap())
    } else {
        Err(String::from_utf8_lossy(&out.stderr).into_owned())
    }
}

#[test]
fn python_signed_requests_verify_here() {
    if !python_available() {
        return;
    }
    for alg in ["hmac", "ed25519"] {
        let out = python(PY_SIGN, alg, None).unwrap_or_else(|e| panic!("python sign {alg}: {e}"));
        let msg: serde_json::Value = serde_json::from_str(&out).unwrap();
        let target = RequestTarget::parse(msg["url"].as_str().unwrap()).unwrap();
        let method: Method = msg["method"].as_str().unwrap().parse().unwrap();
        let mut headers = HeaderMap::new();
        for (k, v) in msg["headers"].as_object().unwrap() {
            headers.append(
                http::HeaderName::from_bytes(k.as_bytes()).unwrap(),
                v.as_str().unwrap().parse().unwrap(),
            );
        }
        let body = B64.decode(msg["body"].as_str().unwrap()).unwrap();
        let policy = SignaturePolicy {
            required_components: vec![
                "@method".into(),
                "@target-uri".into(),
                "content-digest".into(),
            ],
            algorithms: vec![SigAlgorithm::HmacSha256, SigAlgorithm::Ed25519],
            max_age: Duration::from_secs(300),
            require_nonce: true,
        };
        let v = verify(
            &target.parts(&method, &headers),
            Some(&body),
            &policy,
            &ed_keys,
            SystemTime::now(),
        )
        .unwrap_or_else(|e| panic!("python-signed {alg} request refused: {e}\n{out}"));
        assert_eq!(v.nonce.as_deref(), Some("py-nonce-1"));
        assert!(v.body_checked);
        // and a changed body is refused
        let err = verify(
            &target.parts(&method, &headers),
            Some(b"{}"),
            &policy,
            &ed_keys,
            SystemTime::now(),
        )
        .unwrap_err();
        assert_eq!(err.reason(), "content_digest_mismatch");
    }
}

#[test]
fn requests_signed_here_verify_in_python() {
    if !python_available() {
        return;
    }
    for (alg, keyid, key) in [
        (
            "hmac",
            "client-hmac",
            SigningKey::hmac_from_base64(SHARED_SECRET).unwrap(),
        ),
        (
            "ed25519",
            "client-ed",
            SigningKey::from_pem(ED25519_PRIVATE).unwrap(),
        ),
    ] {
        let url = "https://api.example.com/payments?account=42";
        let target = RequestTarget::parse(url).unwrap();
        let body = br#"{"amount": 100}"#;
        let mut headers = HeaderMap::new();
        headers.insert("content-type", HeaderValue::from_static("application/json"));
        headers.insert("content-digest", content_digest(body).parse().unwrap());
        let method = Method::POST;
        let nonce = random_nonce();
        let mut opts = SignOptions::new(keyid, SystemTime::now());
        opts.nonce = Some(&nonce);
        let (i, s) = sign(
            &target.parts(&method, &headers),
            &[
                "@method",
                "@target-uri",
                "@authority",
                "content-type",
                "content-digest",
            ],
            &key,
            &opts,
        )
        .unwrap();
        let mut hdrs = serde_json::Map::new();
        for (k, v) in [
            ("Content-Type", "application/json".to_string()),
            ("Content-Digest", content_digest(body)),
            ("Signature-Input", i),
            ("Signature", s.clone()),
        ] {
            hdrs.insert(k.into(), v.into());
        }
        let msg = serde_json::json!({"method": "POST", "url": url, "headers": hdrs, "body": B64.encode(body)});
        let out = python(PY_VERIFY, alg, Some(&msg.to_string()))
            .unwrap_or_else(|e| panic!("python refused our {alg} signature: {e}"));
        assert!(out.contains(keyid), "{out}");

        // and Python refuses a tampered one
        let mut bad = msg.clone();
        bad["url"] = "https://api.example.com/payments?account=43".into();
        assert!(
            python(PY_VERIFY, alg, Some(&bad.to_string())).is_err(),
            "python accepted a changed URL"
        );
    }
}
