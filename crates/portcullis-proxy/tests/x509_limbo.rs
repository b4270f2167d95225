//! The x509-limbo subset (../shared/data/x509-limbo-subset.json, compiled
//! from C2SP x509-limbo) run through the gateway's own client-certificate
//! verifier, `portcullis_proxy::mtls::ClientVerifier`, at each case's
//! validation time, compared with the expected result.
//!
//! - CLIENT cases are run as they are (clientAuth EKU required, as the
//!   gateway's default).
//! - SERVER cases are run too, because path building, signatures, validity,
//!   basic constraints, path length, name constraints and CRLs are the same
//!   for a client chain. What belongs to server validation only is reported
//!   as "not applicable" and not compared: the peer-name check (a gateway does
//!   not match a client's name at the handshake) and leaves whose EKU excludes
//!   clientAuth (a client verifier refuses them by design). For SERVER cases
//!   whose leaf has no EKU, the clientAuth-EKU requirement is relaxed
//!   (`require_client_auth_eku = false`), so only the chain is judged.
//!
//! Known differences are listed in `DEVIATIONS` with a reason each; the test
//! fails on any other mismatch, and on a listed deviation that no longer
//! deviates (so the list stays true).

use std::path::PathBuf;
use std::time::Duration;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, CertificateRevocationListDer, ServerName, UnixTime};
use rustls::server::danger::ClientCertVerifier;

use portcullis_proxy::mtls::{ClientVerifier, CrlExpiredPolicy, CrlScope, VerifierSettings};

/// Cases where the verifier's verdict differs from x509-limbo's, and why.
const DEVIATIONS: &[(&str, &str)] = &[
    // webpki does not implement rfc822Name name constraints (rustls/webpki#19) and fails
    // closed: a CA with an email permittedSubtree refuses every leaf with an email SAN.
    // Safe (never accepts a violation), but these valid chains are refused.
    ("rfc5280::nc::nc-permits-email-exact", "webpki fails closed on email name constraints (rustls/webpki#19)"),
    ("rfc5280::nc::nc-permits-email-domain", "webpki fails closed on email name constraints (rustls/webpki#19)"),
    ("rfc5280::nc::nc-permits-email-literal-asterisk-exact-match", "webpki fails closed on email name constraints (rustls/webpki#19)"),
    ("rfc5280::nc::nc-permits-email-literal-double-asterisk", "webpki fails closed on email name constraints (rustls/webpki#19)"),
    ("rfc5280::nc::nc-permits-email-literal-mid-asterisk", "webpki fails closed on email name constraints (rustls/webpki#19)"),
    // A CA certificate in the leaf position: RFC 5280 allows it, webpki refuses it
    // (CaUsedAsEndEntity). For client identities refusing a CA certificate is what we want.
    ("rfc5280::ca-as-leaf", "webpki refuses a CA certificate as the end entity (desired for client identities)"),
    ("pathlen::validation-ignores-pathlen-in-leaf", "the 'leaf' is a CA certificate, which webpki refuses as the end entity"),
    // SERVER cases that fail only because the leaf is not a *server* certificate: the
    // client verifier wants clientAuth, so it rightly accepts them.
    ("rfc5280::eku::ee-wrong-eku", "SERVER case: the leaf is clientAuth-only, exactly what a client verifier accepts"),
    ("webpki::eku::ee-without-eku", "SERVER case run with require_client_auth_eku = false; with the gateway's default (true) it is refused (checked below)"),
];

fn data_file() -> PathBuf {
    let manifest = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    // crates/portcullis-proxy → <repo> → <repo>/../shared/data
    let repo = manifest
        .ancestors()
        .nth(2)
        .expect("repo root")
        .to_path_buf();
    let candidates = [
        repo.join("../shared/data/x509-limbo-subset.json"),
        PathBuf::from("/work/shared/data/x509-limbo-subset.json"),
    ];
    candidates
        .iter()
        .find(|p| p.exists())
        .cloned()
        .unwrap_or_else(|| panic!("x509-limbo-subset.json not found in {candidates:?}"))
}

fn certs(v: &serde_json::Value) -> Vec<CertificateDer<'static>> {
    v.as_array()
        .map(|a| {
            a.iter()
                .map(|p| {
                    CertificateDer::from_pem_slice(p.as_str().expect("pem").as_bytes())
                        .expect("certificate PEM")
                })
                .collect()
        })
        .unwrap_or_default()
}

fn crls(v: &serde_json::Value) -> Vec<CertificateRevocationListDer<'static>> {
    v.as_array()
        .map(|a| {
            a.iter()
                .map(|p| {
                    CertificateRevocationListDer::from_pem_slice(
                        p.as_str().expect("pem").as_bytes(),
                    )
                    .expect("CRL PEM")
                })
                .collect()
        })
        .unwrap_or_default()
}

fn time_of(v: &serde_json::Value) -> UnixTime {
    match v.as_str() {
        Some(s) => {
            let t = time::OffsetDateTime::parse(s, &time::format_description::well_known::Rfc3339)
                .expect("validation_time");
            UnixTime::since_unix_epoch(Duration::from_secs(t.unix_timestamp() as u64))
        }
        None => UnixTime::now(),
    }
}

/// Does the leaf have an EKU extension, and does it allow clientAuth?
fn leaf_eku(der: &[u8]) -> (bool, bool) {
    use x509_parser::prelude::*;
    match X509Certificate::from_der(der) {
        Ok((_, c)) => match c.extended_key_usage() {
            Ok(Some(e)) => (true, e.value.client_auth || e.value.any),
            _ => (false, false),
        },
        Err(_) => (false, false),
    }
}

/// Does the leaf match the expected peer name (the server-only check)?
fn name_ok(leaf: &CertificateDer<'_>, name: &serde_json::Value) -> bool {
    let Some(value) = name["value"].as_str() else {
        return true;
    };
    let Ok(ee) = webpki::EndEntityCert::try_from(leaf) else {
        return false;
    };
    match ServerName::try_from(value.to_string()) {
        Ok(sn) => ee.verify_is_valid_for_subject_name(&sn).is_ok(),
        Err(_) => false,
    }
}

#[derive(Debug, PartialEq)]
enum Verdict {
    Pass,
    Deviation,
    NotApplicable(&'static str),
    Mismatch(String),
}

#[test]
fn x509_limbo_subset_through_the_client_verifier() {
    let path = data_file();
    let doc: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&path).expect("read limbo")).expect("json");
    let cases = doc["testcases"].as_array().expect("testcases");
    assert!(!cases.is_empty());
    let algs = rustls::crypto::aws_lc_rs::default_provider().signature_verification_algorithms;

    let mut results: Vec<(String, Verdict)> = Vec::new();
    for c in cases {
        let id = c["id"].as_str().expect("id").to_string();
        let kind = c["validation_kind"].as_str().unwrap_or("");
        let expect_ok = c["expected_result"] == "SUCCESS";
        let roots = certs(&c["trusted_certs"]);
        let inters = certs(&c["untrusted_intermediates"]);
        let leaf = CertificateDer::from_pem_slice(
            c["peer_certificate"].as_str().expect("peer").as_bytes(),
        )
        .expect("peer PEM");
        let (has_eku, eku_client) = leaf_eku(leaf.as_ref());
        if kind == "SERVER" && has_eku && !eku_client {
            results.push((id, Verdict::NotApplicable("serverAuth-only leaf")));
            continue;
        }
        let settings = VerifierSettings {
            mandatory: true,
            verify_depth: c["max_chain_depth"]
                .as_u64()
                .map(|d| d as usize)
                .unwrap_or(64),
            require_client_auth_eku: kind == "CLIENT" || has_eku,
            crl_scope: CrlScope::Chain,
            crl_expired: CrlExpiredPolicy::Reject,
        };
        let verdict = match ClientVerifier::new(&roots, &crls(&c["crls"]), settings, algs) {
            // A trust anchor or CRL the verifier cannot even load: a refusal.
            Err(e) => Err(format!("setup: {e}")),
            Ok(v) => v
                .verify_client_cert(&leaf, &inters, time_of(&c["validation_time"]))
                .map(|_| ())
                .map_err(|e| {
                    format!(
                        "{e} [{}]",
                        portcullis_proxy::mtls::verifier::rustls_reason(&e)
                    )
                }),
        };
        let listed = DEVIATIONS.iter().any(|(d, _)| *d == id);
        let agrees = verdict.is_ok() == expect_ok;
        let v = if agrees && !listed {
            Verdict::Pass
        } else if !agrees && listed {
            Verdict::Deviation
        } else if !agrees
            && kind == "SERVER"
            && !expect_ok
            && !name_ok(&leaf, &c["expected_peer_name"])
        {
            Verdict::NotApplicable("server name mismatch")
        } else if agrees && listed {
            Verdict::Mismatch(
                "listed as a deviation but now agrees: remove it from DEVIATIONS".into(),
            )
        } else {
            Verdict::Mismatch(format!(
                "{kind}: expected {}, got {:?}; features {}",
                c["expected_result"], verdict, c["features"]
            ))
        };
        results.push((id, v));
    }

    // The gateway's default (clientAuth EKU required) refuses a leaf without EKU.
    let no_eku = cases
        .iter()
        .find(|c| c["id"] == "webpki::eku::ee-without-eku")
        .expect("ee-without-eku case");
    let strict = ClientVerifier::new(
        &certs(&no_eku["trusted_certs"]),
        &[],
        VerifierSettings {
            mandatory: true,
            verify_depth: 64,
            require_client_auth_eku: true,
            crl_scope: CrlScope::Chain,
            crl_expired: CrlExpiredPolicy::Reject,
        },
        algs,
    )
    .expect("verifier");
    let leaf =
        CertificateDer::from_pem_slice(no_eku["peer_certificate"].as_str().unwrap().as_bytes())
            .unwrap();
    let err = strict
        .verify_client_cert(
            &leaf,
            &certs(&no_eku["untrusted_intermediates"]),
            time_of(&no_eku["validation_time"]),
        )
        .expect_err("a leaf without EKU must be refused by default");
    assert_eq!(
        portcullis_proxy::mtls::verifier::rustls_reason(&err),
        "wrong_eku"
    );

    let count = |f: &dyn Fn(&Verdict) -> bool| results.iter().filter(|(_, v)| f(v)).count();
    let passed = count(&|v| *v == Verdict::Pass);
    let deviations = count(&|v| *v == Verdict::Deviation);
    let na = count(&|v| matches!(v, Verdict::NotApplicable(_)));
    let client_cases = cases
        .iter()
        .filter(|c| c["validation_kind"] == "CLIENT")
        .count();
    println!(
        "x509-limbo ({}): {} cases ({} CLIENT): {passed} passed, {deviations} expected deviations, {na} not applicable (server-only semantics)",
        path.display(),
        results.len(),
        client_cases
    );
    for (id, v) in &results {
        if let Verdict::NotApplicable(why) = v {
            println!("  n/a        {id}: {why}");
        }
    }
    for (id, why) in DEVIATIONS {
        println!("  deviation  {id}: {why}");
    }
    let bad: Vec<String> = results
        .iter()
        .filter_map(|(id, v)| match v {
            Verdict::Mismatch(m) => Some(format!("{id}: {m}")),
            _ => None,
        })
        .collect();
    assert!(
        bad.is_empty(),
        "{} unexpected mismatches:\n{}",
        bad.len(),
        bad.join("\n")
    );
}
