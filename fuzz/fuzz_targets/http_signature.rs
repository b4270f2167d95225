//! RFC 9421 HTTP Message Signatures: the `Signature-Input` / `Signature`
//! parser and verifier, and the signature-base builder.
//!
//! Input lines: (0) a `Signature-Input` value, (1) a `Signature` value,
//! (2) the request's path-and-query, (3..) `name: value` header lines.
//! Three checks per input:
//! - `verify` on the request as sent: no panic (a forged HMAC cannot pass);
//! - the base built over line 0's tab-separated component identifiers has
//!   exactly one line per component plus the `@signature-params` line
//!   (no component value can inject a line);
//! - sign-then-verify: whatever `sign` accepts with those components,
//!   `verify` accepts, covering the same identifiers in the same order
//!   (the serializer and the parser agree).
#![no_main]

use std::time::{Duration, UNIX_EPOCH};

use http::{HeaderMap, HeaderName, HeaderValue, Method};
use libfuzzer_sys::fuzz_target;
use portcullis_proxy::auth::signature::{
    sign, signature_base, verify, Component, RequestTarget, SigAlgorithm, SignOptions,
    SignaturePolicy, SigningKey, VerifyKey,
};

/// RFC 9421 B.1.5's shared secret.
const SECRET: &str =
    "uzvJfB4u3N0Jy4T7NZ75MDVcr8zSTInedJtkgcu46YW4XByzNJjxBdtjUkdJPBtbmHhIDi6pcl8jsasjlTMtDQ==";
const KEYID: &str = "test-shared-secret";

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let mut lines = text.split('\n');
    let input = lines.next().unwrap_or("");
    let signature = lines.next().unwrap_or("");
    let pq = lines.next().unwrap_or("/");
    let mut headers = HeaderMap::new();
    for line in lines {
        let Some((n, v)) = line.split_once(':') else {
            continue;
        };
        let (Ok(n), Ok(v)) = (
            HeaderName::from_bytes(n.as_bytes()),
            HeaderValue::from_str(v.trim()),
        ) else {
            continue;
        };
        headers.append(n, v);
    }
    let authority = headers
        .get("host")
        .and_then(|h| h.to_str().ok())
        .unwrap_or("example.com")
        .to_string();
    let target = RequestTarget::new("https", &authority, pq);
    let method = Method::POST;
    let now = UNIX_EPOCH + Duration::from_secs(1_618_884_475);
    let policy = SignaturePolicy {
        required_components: vec![],
        algorithms: vec![SigAlgorithm::HmacSha256],
        max_age: Duration::from_secs(300),
        require_nonce: false,
    };
    let key = VerifyKey::hmac_from_base64(SECRET).expect("the RFC's secret");
    let keys = |id: &str| (id == KEYID).then(|| key.clone());

    // 1. The message as sent.
    let mut sent = headers.clone();
    for (name, value) in [("signature-input", input), ("signature", signature)] {
        if let Ok(v) = HeaderValue::from_str(value) {
            sent.insert(name, v);
        }
    }
    let _ = verify(
        &target.parts(&method, &sent),
        Some(b"{\"hello\": \"world\"}"),
        &policy,
        &keys,
        now,
    );

    // 2. The signature base over line 0's components.
    let names: Vec<&str> = input.split('\t').filter(|c| !c.trim().is_empty()).collect();
    let Ok(components) = names
        .iter()
        .map(|c| Component::parse(c))
        .collect::<Result<Vec<_>, _>>()
    else {
        return;
    };
    let parts = target.parts(&method, &headers);
    if let Ok(base) = signature_base(
        &parts,
        &components,
        ";created=1618884473;keyid=\"test-shared-secret\"",
    ) {
        assert_eq!(
            base.split('\n').count(),
            components.len() + 1,
            "signature base with an injected line: {base:?}"
        );
        assert!(base.is_ascii(), "non-ASCII signature base: {base:?}");
    }

    // 3. Sign, then verify what was signed.
    if components
        .iter()
        .any(|c| matches!(c.name(), "signature" | "signature-input"))
    {
        return; // covering the signature fields themselves cannot verify
    }
    let signing = SigningKey::hmac_from_base64(SECRET).expect("the RFC's secret");
    let mut opts = SignOptions::new(KEYID, now - Duration::from_secs(2));
    opts.nonce = Some("fuzz-nonce");
    let Ok((sig_input, sig)) = sign(&parts, &names, &signing, &opts) else {
        return;
    };
    let mut signed = headers.clone();
    signed.remove("signature-input");
    signed.remove("signature");
    signed.insert(
        "signature-input",
        HeaderValue::from_str(&sig_input).expect("Signature-Input is a valid field value"),
    );
    signed.insert(
        "signature",
        HeaderValue::from_str(&sig).expect("Signature is a valid field value"),
    );
    let verified = verify(&target.parts(&method, &signed), None, &policy, &keys, now)
        .unwrap_or_else(|e| panic!("signed {names:?} as {sig_input:?} but verify says: {e}"));
    let ids: Vec<String> = components.iter().map(|c| c.identifier()).collect();
    assert_eq!(verified.covered, ids);
    assert_eq!(verified.keyid, KEYID);
    assert_eq!(verified.nonce.as_deref(), Some("fuzz-nonce"));
});
