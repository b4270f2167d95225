//! Enrollment tokens, renewal, PKCS#12, the inventory's crash safety and queries.

mod common;

use std::io::Write;
use std::time::Duration;

use common::{assert_openssl, new_ca, openssl};
use portcullis_pki::{
    client_snippets, Ca, ClientRequest, KeyAlgorithm, PkiError, RevocationReason, SnippetPaths,
};

/// A CSR made by openssl (the client keeps its key). Returns the CSR PEM.
fn openssl_csr(dir: &std::path::Path, stem: &str, subject: &str) -> String {
    assert_openssl(
        dir,
        &[
            "req",
            "-new",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-nodes",
            "-keyout",
            &format!("{stem}.key"),
            "-out",
            &format!("{stem}.csr"),
            "-subj",
            subject,
        ],
    );
    std::fs::read_to_string(dir.join(format!("{stem}.csr"))).unwrap()
}

#[test]
fn csr_signing_keeps_the_identity_from_the_ca_side() {
    let tmp = tempfile::tempdir().unwrap();
    let ca = new_ca(&tmp.path().join("ca"), KeyAlgorithm::EcdsaP256);
    let csr = openssl_csr(tmp.path(), "c", "/CN=admin-i-wish");
    let mut req = ClientRequest::new("svc-a");
    req.csr_pem = Some(csr);
    let issued = ca.issue_client(&req).unwrap();
    assert!(issued.key_pem.is_none());
    std::fs::write(tmp.path().join("c.crt"), &issued.cert_pem).unwrap();
    let text = assert_openssl(tmp.path(), &["x509", "-in", "c.crt", "-noout", "-subject"]);
    assert!(text.contains("CN = svc-a"), "{text}");
    // The certificate carries the CSR's key.
    let a = assert_openssl(tmp.path(), &["pkey", "-in", "c.key", "-pubout"]);
    let b = assert_openssl(tmp.path(), &["x509", "-in", "c.crt", "-noout", "-pubkey"]);
    assert_eq!(a, b);
    // A tampered CSR is refused.
    let pem_text = std::fs::read_to_string(tmp.path().join("c.csr")).unwrap();
    let mut der = pem::parse(&pem_text).unwrap().into_contents();
    let at = der.windows(4).position(|w| w == b"wish").unwrap();
    der[at] = b'f';
    let bad = pem::encode(&pem::Pem::new("CERTIFICATE REQUEST", der));
    req.csr_pem = Some(bad);
    assert!(ca.issue_client(&req).is_err());
}

#[test]
fn tokens_work_once_and_expire() {
    let tmp = tempfile::tempdir().unwrap();
    let ca = new_ca(&tmp.path().join("ca"), KeyAlgorithm::EcdsaP256);
    let csr = openssl_csr(tmp.path(), "t", "/CN=whatever");
    let tok = ca
        .create_token("edge-01", Duration::from_secs(600))
        .unwrap();
    assert!(!format!("{tok:?}").contains(&tok.secret));
    // The secret is not stored.
    let journal = std::fs::read_to_string(tmp.path().join("ca/inventory.jsonl")).unwrap();
    assert!(!journal.contains(&tok.secret));

    // A bad CSR does not burn the token.
    assert!(ca.redeem_token(&tok.secret, "junk", None).is_err());
    let issued = ca.redeem_token(&tok.secret, &csr, None).unwrap();
    let rec = ca
        .state()
        .unwrap()
        .find(&issued.serial_hex)
        .unwrap()
        .clone();
    assert_eq!(rec.name, "edge-01");
    assert!(matches!(
        ca.redeem_token(&tok.secret, &csr, None).unwrap_err(),
        PkiError::TokenRefused("token already used")
    ));
    assert!(matches!(
        ca.redeem_token("pct_nope", &csr, None).unwrap_err(),
        PkiError::TokenRefused("unknown token")
    ));
    let short = ca.create_token("edge-02", Duration::from_secs(1)).unwrap();
    std::thread::sleep(Duration::from_millis(2100));
    assert!(matches!(
        ca.redeem_token(&short.secret, &csr, None).unwrap_err(),
        PkiError::TokenRefused("token expired")
    ));
    assert!(ca
        .create_token("x", Duration::from_secs(30 * 86_400))
        .is_err());
    assert!(ca.create_token("", Duration::from_secs(60)).is_err());
}

#[test]
fn renewal_keeps_identity_and_refuses_revoked() {
    let tmp = tempfile::tempdir().unwrap();
    let ca = new_ca(&tmp.path().join("ca"), KeyAlgorithm::EcdsaP256);
    let mut req = ClientRequest::new("payments");
    req.spiffe = Some("spiffe://corp.test/payments".into());
    req.validity = Duration::from_secs(120);
    let first = ca.issue_client(&req).unwrap();
    let csr = openssl_csr(tmp.path(), "r", "/CN=evil");
    let second = ca.renew(&first.cert_pem, &csr, None).unwrap();
    let state = ca.state().unwrap();
    let rec = state.find(&second.serial_hex).unwrap();
    assert_eq!(rec.name, "payments");
    assert_eq!(
        rec.sans,
        vec!["uri:spiffe://corp.test/payments".to_string()]
    );
    assert_eq!(rec.renewed_from.as_deref(), Some(first.serial_hex.as_str()));
    assert!(rec.not_after - rec.not_before <= 121 + 60);

    ca.revoke(&second.serial_hex, RevocationReason::KeyCompromise)
        .unwrap();
    assert!(matches!(
        ca.renew(&second.cert_pem, &csr, None).unwrap_err(),
        PkiError::RenewalRefused { .. }
    ));
    // A certificate from another CA is refused.
    let other = tempfile::tempdir().unwrap();
    let other = new_ca(other.path(), KeyAlgorithm::EcdsaP256);
    let foreign = other.issue_client(&ClientRequest::new("payments")).unwrap();
    assert!(ca.renew(&foreign.cert_pem, &csr, None).is_err());
}

#[test]
fn pkcs12_opens_with_openssl() {
    for key in [
        KeyAlgorithm::EcdsaP256,
        KeyAlgorithm::Rsa3072,
        KeyAlgorithm::Ed25519,
    ] {
        let tmp = tempfile::tempdir().unwrap();
        let ca = new_ca(&tmp.path().join("ca"), key);
        let issued = ca
            .issue_client(&ClientRequest::new("browser-user"))
            .unwrap();
        let p = issued
            .write_pkcs12(tmp.path(), "u", "s3cret pass", ca.root_cert_pem())
            .unwrap();
        let text = assert_openssl(
            tmp.path(),
            &[
                "pkcs12",
                "-in",
                p.to_str().unwrap(),
                "-passin",
                "pass:s3cret pass",
                "-nokeys",
            ],
        );
        assert!(text.contains("CN = browser-user"), "{text}");
        assert!(text.contains("Intermediate CA"), "{text}");
        assert!(text.contains("Root CA"), "{text}");
        assert_openssl(
            tmp.path(),
            &[
                "pkcs12",
                "-in",
                p.to_str().unwrap(),
                "-passin",
                "pass:s3cret pass",
                "-nocerts",
                "-nodes",
            ],
        );
        let (ok, _) = openssl(
            tmp.path(),
            &[
                "pkcs12",
                "-in",
                p.to_str().unwrap(),
                "-passin",
                "pass:wrong",
                "-nokeys",
            ],
        );
        assert!(!ok);
    }
}

#[test]
fn inventory_survives_a_torn_write() {
    let tmp = tempfile::tempdir().unwrap();
    let ca = new_ca(tmp.path(), KeyAlgorithm::EcdsaP256);
    let a = ca.issue_client(&ClientRequest::new("a")).unwrap();
    // Simulate a crash in the middle of appending: half a line, no newline.
    let journal = tmp.path().join("inventory.jsonl");
    let mut f = std::fs::OpenOptions::new()
        .append(true)
        .open(&journal)
        .unwrap();
    f.write_all(br#"{"event":"issued","serial":"dead"#).unwrap();
    drop(f);
    let ca = Ca::open(tmp.path()).unwrap();
    let state = ca.state().unwrap();
    assert_eq!(state.certs.len(), 1);
    assert!(state.certs.contains_key(&a.serial_hex));
    // The next write cuts the torn tail and the journal stays readable.
    let b = ca.issue_client(&ClientRequest::new("b")).unwrap();
    let state = ca.state().unwrap();
    assert_eq!(state.certs.len(), 2);
    assert!(state.certs.contains_key(&b.serial_hex));
    let text = std::fs::read_to_string(&journal).unwrap();
    assert!(text.ends_with('\n'));
    assert!(!text.contains("\"dead"));
}

#[test]
fn concurrent_issuers_all_get_recorded() {
    let tmp = tempfile::tempdir().unwrap();
    new_ca(tmp.path(), KeyAlgorithm::EcdsaP256);
    let serials: Vec<String> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..4)
            .map(|i| {
                let dir = tmp.path().to_path_buf();
                s.spawn(move || {
                    let ca = Ca::open(&dir).unwrap();
                    (0..5)
                        .map(|j| {
                            ca.issue_client(&ClientRequest::new(format!("c{i}-{j}")))
                                .unwrap()
                                .serial_hex
                        })
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        handles
            .into_iter()
            .flat_map(|h| h.join().unwrap())
            .collect()
    });
    let state = Ca::open(tmp.path()).unwrap().state().unwrap();
    assert_eq!(state.certs.len(), 20);
    for s in serials {
        assert!(state.certs.contains_key(&s));
    }
}

#[test]
fn list_queries_expiring_and_find() {
    let tmp = tempfile::tempdir().unwrap();
    let ca = new_ca(tmp.path(), KeyAlgorithm::EcdsaP256);
    let mut req = ClientRequest::new("soon");
    req.validity = Duration::from_secs(3 * 86_400);
    let soon = ca.issue_client(&req).unwrap();
    ca.issue_client(&ClientRequest::new("later")).unwrap();
    let state = ca.state().unwrap();
    let exp = state.expiring(Duration::from_secs(7 * 86_400));
    assert_eq!(exp.len(), 1);
    assert_eq!(exp[0].serial, soon.serial_hex);
    assert!(exp[0].seconds_to_expiry() > 0);
    // Find by serial with colons and upper case.
    let colon: String = soon
        .serial_hex
        .to_uppercase()
        .as_bytes()
        .chunks(2)
        .map(|c| std::str::from_utf8(c).unwrap())
        .collect::<Vec<_>>()
        .join(":");
    assert_eq!(state.find(&colon).unwrap().name, "soon");
    // Two live certificates with one name are ambiguous.
    ca.issue_client(&ClientRequest::new("soon")).unwrap();
    assert!(matches!(
        ca.state().unwrap().find("soon").unwrap_err(),
        PkiError::AmbiguousName(..)
    ));
}

#[test]
fn snippets_name_the_real_paths() {
    let s = client_snippets(&SnippetPaths {
        cert: std::path::Path::new("/srv/my certs/a.crt"),
        key: std::path::Path::new("/srv/my certs/a.key"),
        ca: std::path::Path::new("/srv/ca.crt"),
        url: "https://api.example.test/",
    });
    assert!(s.contains("curl --cert '/srv/my certs/a.crt' --key '/srv/my certs/a.key' --cacert /srv/ca.crt https://api.example.test/"), "{s}");
    assert!(
        s.contains(r#"cert=("/srv/my certs/a.crt", "/srv/my certs/a.key"), verify="/srv/ca.crt""#),
        "{s}"
    );
    assert!(s.contains(r#"fs.readFileSync("/srv/ca.crt")"#), "{s}");
}
