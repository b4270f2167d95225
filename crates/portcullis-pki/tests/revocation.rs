//! Revocation, CRLs and OCSP, checked with `openssl crl`, `openssl verify -crl_check` and
//! `openssl ocsp` (its requests parsed by us, our responses read by it).

mod common;

use std::time::Duration;

use common::{assert_openssl, new_ca, openssl, write_pems};
use portcullis_pki::ocsp::{self, CertStatus, OcspErrorStatus};
use portcullis_pki::{ClientRequest, KeyAlgorithm, PkiError, RevocationReason};

#[test]
fn revoke_refusals() {
    let tmp = tempfile::tempdir().unwrap();
    let ca = new_ca(tmp.path(), KeyAlgorithm::EcdsaP256);
    let a = ca.issue_client(&ClientRequest::new("alice")).unwrap();
    let rec = ca.revoke("alice", RevocationReason::KeyCompromise).unwrap();
    assert_eq!(rec.serial, a.serial_hex);
    assert!(matches!(
        ca.revoke(&a.serial_hex, RevocationReason::Superseded)
            .unwrap_err(),
        PkiError::AlreadyRevoked(_)
    ));
    assert!(matches!(
        ca.revoke("00ff", RevocationReason::Unspecified)
            .unwrap_err(),
        PkiError::UnknownCertificate(_)
    ));
    assert!("nonsense".parse::<RevocationReason>().is_err());
    assert_eq!(
        "key-compromise".parse::<RevocationReason>().unwrap(),
        RevocationReason::KeyCompromise
    );
    // The revocation survives a reopen.
    let ca = portcullis_pki::Ca::open(tmp.path()).unwrap();
    let state = ca.state().unwrap();
    assert_eq!(
        state
            .find(&a.serial_hex)
            .unwrap()
            .revoked
            .as_ref()
            .unwrap()
            .reason,
        RevocationReason::KeyCompromise
    );
}

#[test]
fn crl_verifies_with_openssl_and_revokes() {
    for key in [
        KeyAlgorithm::EcdsaP256,
        KeyAlgorithm::Rsa3072,
        KeyAlgorithm::Ed25519,
    ] {
        let tmp = tempfile::tempdir().unwrap();
        let ca = new_ca(&tmp.path().join("ca"), key);
        let out = tmp.path();
        let a = ca.issue_client(&ClientRequest::new("alice")).unwrap();
        let b = ca.issue_client(&ClientRequest::new("bob")).unwrap();
        write_pems(out, &ca, "a.crt", &a.cert_pem);
        std::fs::write(out.join("b.crt"), &b.cert_pem).unwrap();
        std::fs::write(out.join("chain.pem"), ca.chain_pem()).unwrap();

        let first = ca
            .write_crl(&out.join("crl.pem"), Duration::from_secs(3600))
            .unwrap();
        ca.revoke(&a.serial_hex, RevocationReason::KeyCompromise)
            .unwrap();
        let crl = ca
            .write_crl(&out.join("crl.pem"), Duration::from_secs(3600))
            .unwrap();
        assert!(crl.number > first.number);
        assert_eq!(crl.revoked_serials, vec![a.serial_hex.clone()]);

        let text = assert_openssl(
            out,
            &[
                "crl",
                "-in",
                "crl.pem",
                "-CAfile",
                "chain.pem",
                "-noout",
                "-text",
            ],
        );
        assert!(text.contains("verify OK"), "{key}: {text}");
        assert!(text.contains(&a.serial_hex.to_uppercase()), "{text}");
        assert!(text.contains("Key Compromise"), "{text}");
        assert!(!text.contains(&b.serial_hex.to_uppercase()), "{text}");

        let verify = |leaf: &str| {
            openssl(
                out,
                &[
                    "verify",
                    "-crl_check",
                    "-CAfile",
                    "root.crt",
                    "-untrusted",
                    "intermediate.crt",
                    "-CRLfile",
                    "crl.pem",
                    leaf,
                ],
            )
        };
        let (ok, text) = verify("a.crt");
        assert!(!ok && text.contains("revoked"), "{text}");
        let (ok, text) = verify("b.crt");
        assert!(ok, "{text}");

        // DER output by extension.
        ca.write_crl(&out.join("crl.der"), Duration::from_secs(60))
            .unwrap();
        assert_openssl(
            out,
            &[
                "crl",
                "-inform",
                "DER",
                "-in",
                "crl.der",
                "-CAfile",
                "chain.pem",
                "-noout",
            ],
        );
    }
}

#[test]
fn ocsp_good_revoked_unknown_with_openssl() {
    for key in KeyAlgorithm::ALL {
        ocsp_with_openssl(key);
    }
}

fn ocsp_with_openssl(key: KeyAlgorithm) {
    let tmp = tempfile::tempdir().unwrap();
    let ca = new_ca(&tmp.path().join("ca"), key);
    let out = tmp.path();
    let good = ca.issue_client(&ClientRequest::new("good")).unwrap();
    let bad = ca.issue_client(&ClientRequest::new("bad")).unwrap();
    ca.revoke("bad", RevocationReason::Superseded).unwrap();
    write_pems(out, &ca, "good.crt", &good.cert_pem);
    std::fs::write(out.join("bad.crt"), &bad.cert_pem).unwrap();

    // A certificate this CA never recorded (another CA with the same names would differ in
    // key hash; here we use a fresh CA's leaf written under our issuer: unknown serial).
    let other_dir = tempfile::tempdir().unwrap();
    let other = new_ca(other_dir.path(), KeyAlgorithm::EcdsaP256);
    let stranger = other.issue_client(&ClientRequest::new("stranger")).unwrap();
    std::fs::write(out.join("stranger.crt"), &stranger.cert_pem).unwrap();

    for (leaf, expect) in [
        ("good.crt", "Cert Status: good"),
        ("bad.crt", "Cert Status: revoked"),
        ("stranger.crt", "Cert Status: unknown"),
    ] {
        // openssl writes the request (with a nonce); we parse and answer it.
        assert_openssl(
            out,
            &[
                "ocsp",
                "-issuer",
                "intermediate.crt",
                "-cert",
                leaf,
                "-reqout",
                "req.der",
            ],
        );
        let req_der = std::fs::read(out.join("req.der")).unwrap();
        let req = ocsp::parse_request(&req_der).unwrap();
        assert_eq!(req.cert_ids.len(), 1);
        assert!(req.nonce.is_some());
        let resp = ca.ocsp_respond(&req_der, Duration::from_secs(600));
        std::fs::write(out.join("resp.der"), &resp).unwrap();
        let text = assert_openssl(
            out,
            &[
                "ocsp",
                "-reqin",
                "req.der",
                "-respin",
                "resp.der",
                "-CAfile",
                "root.crt",
                "-resp_text",
            ],
        );
        assert!(text.contains("Response verify OK"), "{leaf}: {text}");
        assert!(text.contains(expect), "{leaf}: {text}");
        if leaf == "bad.crt" {
            assert!(text.contains("Revocation Reason: superseded"), "{text}");
        }

        // The way an operator checks one certificate: -issuer/-cert, no nonce.
        assert_openssl(
            out,
            &[
                "ocsp",
                "-issuer",
                "intermediate.crt",
                "-cert",
                leaf,
                "-no_nonce",
                "-reqout",
                "req2.der",
            ],
        );
        let resp = ca.ocsp_respond(
            &std::fs::read(out.join("req2.der")).unwrap(),
            Duration::from_secs(600),
        );
        std::fs::write(out.join("resp2.der"), &resp).unwrap();
        let text = assert_openssl(
            out,
            &[
                "ocsp",
                "-issuer",
                "intermediate.crt",
                "-cert",
                leaf,
                "-no_nonce",
                "-respin",
                "resp2.der",
                "-CAfile",
                "root.crt",
            ],
        );
        let short = expect.replace("Cert Status", leaf);
        assert!(text.contains(&short), "{key} {leaf}: {text}");
    }

    // Our own builder round-trips too.
    let req = ocsp::build_request(&ca, &good.serial_hex, None).unwrap();
    let parsed = ocsp::parse_request(&req).unwrap();
    assert_eq!(parsed.cert_ids[0].serial_hex, good.serial_hex);
    let state = ca.state().unwrap();
    assert_eq!(ca.ocsp_status(&parsed, &state), vec![CertStatus::Good]);
}

#[test]
fn ocsp_malformed_requests_get_error_responses() {
    let tmp = tempfile::tempdir().unwrap();
    let ca = new_ca(tmp.path(), KeyAlgorithm::EcdsaP256);
    for junk in [
        &b""[..],
        b"\x30\x00",
        b"\x30\x03\x30\x01\x00",
        &[0xffu8; 40][..],
    ] {
        assert!(ocsp::parse_request(junk).is_err());
        assert_eq!(
            ca.ocsp_respond(junk, Duration::from_secs(60)),
            ocsp::error_response(OcspErrorStatus::MalformedRequest)
        );
    }
    assert!(ocsp::parse_request(&vec![0x30; 100_000]).is_err());
    std::fs::write(
        tmp.path().join("err.der"),
        ocsp::error_response(OcspErrorStatus::MalformedRequest),
    )
    .unwrap();
    let (_, text) = openssl(tmp.path(), &["ocsp", "-respin", "err.der", "-resp_text"]);
    assert!(text.contains("malformedrequest"), "{text}");
}
