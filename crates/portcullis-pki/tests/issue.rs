//! Issuing: profiles checked by `openssl verify` (chain, purpose) and by rustls-webpki,
//! and the refusals (overwrite, missing CA, too long validity, bad input).

mod common;

use std::net::IpAddr;
use std::time::Duration;

use common::{assert_openssl, new_ca, openssl, write_pems};
use portcullis_pki::{Ca, CaInitOptions, ClientRequest, KeyAlgorithm, PkiError};
use rustls_pki_types::{CertificateDer, UnixTime};

const DAY: Duration = Duration::from_secs(86_400);

fn der(pem_text: &str) -> Vec<u8> {
    let p = pem::parse(pem_text).unwrap();
    p.into_contents()
}

fn verify_with_openssl(key: KeyAlgorithm) {
    let tmp = tempfile::tempdir().unwrap();
    let ca = new_ca(&tmp.path().join("ca"), key);
    let out = tmp.path();

    let server = ca
        .issue_server(
            &["api.example.test".into(), "*.svc.example.test".into()],
            &["127.0.0.1".parse::<IpAddr>().unwrap()],
            30 * DAY,
        )
        .unwrap();
    write_pems(out, &ca, "server.crt", &server.cert_pem);
    assert_openssl(
        out,
        &[
            "verify",
            "-CAfile",
            "root.crt",
            "-untrusted",
            "intermediate.crt",
            "-purpose",
            "sslserver",
            "-x509_strict",
            "server.crt",
        ],
    );
    // A server certificate is no client certificate.
    let (ok, _) = openssl(
        out,
        &[
            "verify",
            "-CAfile",
            "root.crt",
            "-untrusted",
            "intermediate.crt",
            "-purpose",
            "sslclient",
            "server.crt",
        ],
    );
    assert!(!ok, "server cert must not pass as sslclient");

    let mut req = ClientRequest::new("billing-service");
    req.spiffe = Some("spiffe://example.test/billing".into());
    req.dns = vec!["billing.internal".into()];
    req.emails = vec!["ops@example.test".into()];
    let client = ca.issue_client(&req).unwrap();
    std::fs::write(out.join("client.crt"), &client.cert_pem).unwrap();
    assert_openssl(
        out,
        &[
            "verify",
            "-CAfile",
            "root.crt",
            "-untrusted",
            "intermediate.crt",
            "-purpose",
            "sslclient",
            "-x509_strict",
            "client.crt",
        ],
    );
    let (ok, _) = openssl(
        out,
        &[
            "verify",
            "-CAfile",
            "root.crt",
            "-untrusted",
            "intermediate.crt",
            "-purpose",
            "sslserver",
            "client.crt",
        ],
    );
    assert!(!ok, "client cert must not pass as sslserver");

    let text = assert_openssl(out, &["x509", "-in", "client.crt", "-noout", "-text"]);
    assert!(text.contains("CN = billing-service"), "{text}");
    assert!(text.contains("TLS Web Client Authentication"), "{text}");
    assert!(text.contains("URI:spiffe://example.test/billing"), "{text}");
    assert!(text.contains("Subject Key Identifier"), "{text}");
    assert!(text.contains("Authority Key Identifier"), "{text}");
    assert!(text.contains("Digital Signature"), "{text}");
    if key == KeyAlgorithm::Rsa3072 {
        assert!(text.contains("Key Encipherment"), "{text}");
    }

    // The chain file from write_to verifies as well, and the key matches.
    let paths = client.write_to(out, "bundle").unwrap();
    assert_openssl(
        out,
        &[
            "verify",
            "-CAfile",
            "root.crt",
            "-untrusted",
            paths.cert.to_str().unwrap(),
            paths.cert.to_str().unwrap(),
        ],
    );
    let pub_from_key = assert_openssl(out, &["pkey", "-in", "bundle.key", "-pubout"]);
    let pub_from_cert = assert_openssl(out, &["x509", "-in", "client.crt", "-noout", "-pubkey"]);
    assert_eq!(pub_from_key, pub_from_cert);

    // Intermediate: CA with pathlen 0.
    let text = assert_openssl(out, &["x509", "-in", "intermediate.crt", "-noout", "-text"]);
    assert!(text.contains("CA:TRUE, pathlen:0"), "{text}");
}

#[test]
fn openssl_verifies_ecdsa_p256() {
    verify_with_openssl(KeyAlgorithm::EcdsaP256);
}

#[test]
fn openssl_verifies_ecdsa_p384() {
    verify_with_openssl(KeyAlgorithm::EcdsaP384);
}

#[test]
fn openssl_verifies_ed25519() {
    verify_with_openssl(KeyAlgorithm::Ed25519);
}

#[test]
fn openssl_verifies_rsa_3072() {
    verify_with_openssl(KeyAlgorithm::Rsa3072);
}

#[test]
fn webpki_verifies_client_and_server() {
    let tmp = tempfile::tempdir().unwrap();
    let ca = new_ca(tmp.path(), KeyAlgorithm::EcdsaP256);
    let root_der = CertificateDer::from(der(ca.root_cert_pem()));
    let anchor = webpki::anchor_from_trusted_cert(&root_der).unwrap();
    let anchors = [anchor];
    let int_der = CertificateDer::from(der(ca.intermediate_cert_pem()));
    let now = UnixTime::now();
    let algs = webpki::ALL_VERIFICATION_ALGS;

    let client = ca.issue_client(&ClientRequest::new("alice")).unwrap();
    let leaf_der = CertificateDer::from(der(&client.cert_pem));
    let leaf = webpki::EndEntityCert::try_from(&leaf_der).unwrap();
    leaf.verify_for_usage(
        algs,
        &anchors,
        std::slice::from_ref(&int_der),
        now,
        webpki::KeyUsage::client_auth(),
        None,
        None,
    )
    .expect("client cert verifies for clientAuth");
    assert!(leaf
        .verify_for_usage(
            algs,
            &anchors,
            std::slice::from_ref(&int_der),
            now,
            webpki::KeyUsage::server_auth(),
            None,
            None,
        )
        .is_err());

    let server = ca
        .issue_server(&["gw.example.test".into()], &[], 10 * DAY)
        .unwrap();
    let leaf_der = CertificateDer::from(der(&server.cert_pem));
    let leaf = webpki::EndEntityCert::try_from(&leaf_der).unwrap();
    leaf.verify_for_usage(
        algs,
        &anchors,
        std::slice::from_ref(&int_der),
        now,
        webpki::KeyUsage::server_auth(),
        None,
        None,
    )
    .expect("server cert verifies for serverAuth");
    let name = rustls_pki_types::ServerName::try_from("gw.example.test").unwrap();
    leaf.verify_is_valid_for_subject_name(&name).unwrap();
}

#[test]
fn init_refuses_to_overwrite() {
    let tmp = tempfile::tempdir().unwrap();
    let _ca = new_ca(tmp.path(), KeyAlgorithm::EcdsaP256);
    let root_before = std::fs::read(tmp.path().join("root.crt")).unwrap();
    let err = Ca::init(tmp.path(), &CaInitOptions::default()).unwrap_err();
    assert!(matches!(err, PkiError::AlreadyExists { .. }), "{err}");
    assert_eq!(
        std::fs::read(tmp.path().join("root.crt")).unwrap(),
        root_before
    );
}

#[test]
fn open_missing_ca_is_not_found() {
    let tmp = tempfile::tempdir().unwrap();
    let err = Ca::open(&tmp.path().join("nope")).unwrap_err();
    assert!(matches!(err, PkiError::NotFound { .. }), "{err}");
    assert!(err.to_string().contains("ca init"), "{err}");
}

#[test]
fn open_reloads_and_issues() {
    let tmp = tempfile::tempdir().unwrap();
    let ca = new_ca(tmp.path(), KeyAlgorithm::Ed25519);
    let root = ca.root_cert_pem().to_string();
    drop(ca);
    let ca = Ca::open(tmp.path()).unwrap();
    assert_eq!(ca.root_cert_pem(), root);
    let chain = ca.chain_pem();
    assert!(chain.starts_with(ca.intermediate_cert_pem()));
    assert!(chain.ends_with(ca.root_cert_pem()));
    ca.issue_client(&ClientRequest::new("bob")).unwrap();
}

#[cfg(unix)]
#[test]
fn key_files_are_private() {
    use std::os::unix::fs::PermissionsExt;
    let tmp = tempfile::tempdir().unwrap();
    let ca = new_ca(tmp.path(), KeyAlgorithm::EcdsaP256);
    for f in ["root.key", "intermediate.key"] {
        let mode = std::fs::metadata(tmp.path().join(f))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600, "{f}");
    }
    let issued = ca.issue_client(&ClientRequest::new("carol")).unwrap();
    let out = tmp.path().join("out");
    let paths = issued.write_to(&out, "carol").unwrap();
    let mode = std::fs::metadata(paths.key.unwrap())
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600);
}

#[test]
fn client_validity_limits() {
    let tmp = tempfile::tempdir().unwrap();
    let ca = new_ca(tmp.path(), KeyAlgorithm::EcdsaP256);
    let mut req = ClientRequest::new("dave");
    req.validity = 91 * DAY;
    let err = ca.issue_client(&req).unwrap_err();
    assert!(matches!(err, PkiError::ValidityTooLong { .. }), "{err}");
    req.validity = 90 * DAY;
    ca.issue_client(&req).unwrap();
    req.validity = Duration::ZERO;
    assert!(ca.issue_client(&req).is_err());
    // Default is 30 days.
    let issued = ca.issue_client(&ClientRequest::new("erin")).unwrap();
    let left = issued
        .not_after
        .duration_since(std::time::SystemTime::now())
        .unwrap();
    assert!(left > 29 * DAY && left <= 30 * DAY, "{left:?}");
}

#[test]
fn serials_are_random_and_long() {
    let tmp = tempfile::tempdir().unwrap();
    let ca = new_ca(tmp.path(), KeyAlgorithm::EcdsaP256);
    let a = ca.issue_client(&ClientRequest::new("x")).unwrap();
    let b = ca.issue_client(&ClientRequest::new("x")).unwrap();
    assert_ne!(a.serial_hex, b.serial_hex);
    assert_eq!(a.serial_hex.len(), 32);
    let leaf = der(&a.cert_pem);
    let (_, cert) = x509_parser::parse_x509_certificate(&leaf).unwrap();
    assert_eq!(cert.raw_serial().len(), 16);
    assert_eq!(cert.raw_serial_as_string().replace(':', ""), a.serial_hex);
}

#[test]
fn bad_input_is_an_error_not_a_panic() {
    let tmp = tempfile::tempdir().unwrap();
    let ca = new_ca(tmp.path(), KeyAlgorithm::EcdsaP256);
    assert!(ca.issue_server(&[], &[], DAY).is_err());
    assert!(ca.issue_server(&["bad name!".into()], &[], DAY).is_err());
    assert!(ca
        .issue_server(&["ok.test".into()], &[], 400 * DAY)
        .is_err());
    let mut req = ClientRequest::new("");
    assert!(ca.issue_client(&req).is_err());
    req.name = "ok".into();
    req.spiffe = Some("http://not-spiffe".into());
    assert!(ca.issue_client(&req).is_err());
    req.spiffe = None;
    req.uris = vec!["no scheme".into()];
    assert!(ca.issue_client(&req).is_err());
    req.uris.clear();
    req.csr_pem = Some("garbage".into());
    assert!(matches!(
        ca.issue_client(&req).unwrap_err(),
        PkiError::InvalidCsr(_)
    ));
    assert!("dsa".parse::<KeyAlgorithm>().is_err());
    assert_eq!(
        "ECDSA-P384".parse::<KeyAlgorithm>().unwrap(),
        KeyAlgorithm::EcdsaP384
    );
    assert!(issued_write_rejects_bad_stem(&ca));
}

fn issued_write_rejects_bad_stem(ca: &Ca) -> bool {
    let issued = ca.issue_client(&ClientRequest::new("stem")).unwrap();
    let tmp = tempfile::tempdir().unwrap();
    issued.write_to(tmp.path(), "../evil").is_err() && issued.write_to(tmp.path(), "").is_err()
}

#[test]
fn encrypted_root_key_opens_with_the_passphrase_only() {
    let tmp = tempfile::tempdir().unwrap();
    let ca = Ca::init(
        tmp.path(),
        &CaInitOptions {
            key: KeyAlgorithm::EcdsaP256,
            name: "Enc".into(),
            root_passphrase: Some("correct horse".into()),
        },
    )
    .unwrap();
    let text = std::fs::read_to_string(tmp.path().join("root.key")).unwrap();
    assert!(
        text.starts_with("-----BEGIN ENCRYPTED PRIVATE KEY-----"),
        "{text}"
    );
    // OpenSSL reads the standard PBES2 format.
    assert_openssl(
        tmp.path(),
        &[
            "pkey",
            "-in",
            "root.key",
            "-passin",
            "pass:correct horse",
            "-noout",
        ],
    );
    let (ok, _) = openssl(
        tmp.path(),
        &["pkey", "-in", "root.key", "-passin", "pass:wrong", "-noout"],
    );
    assert!(!ok);
    ca.load_root_key(Some("correct horse")).unwrap();
    assert!(matches!(
        ca.load_root_key(Some("wrong")).unwrap_err(),
        PkiError::WrongPassphrase
    ));
    assert!(matches!(
        ca.load_root_key(None).unwrap_err(),
        PkiError::PassphraseRequired
    ));
    // Issuing needs only the intermediate.
    Ca::open(tmp.path())
        .unwrap()
        .issue_client(&ClientRequest::new("z"))
        .unwrap();
}

#[test]
fn crl_and_ocsp_urls_go_into_leaves_when_configured() {
    let tmp = tempfile::tempdir().unwrap();
    let mut ca = new_ca(tmp.path(), KeyAlgorithm::EcdsaP256);
    assert!(ca
        .update_config(|c| c.crl_url = Some("ftp://x".into()))
        .is_err());
    assert!(ca
        .update_config(|c| c.max_client_validity_secs = 91 * 86_400)
        .is_err());
    ca.update_config(|c| {
        c.crl_url = Some("http://gw.test/pki/crl".into());
        c.ocsp_url = Some("http://gw.test/pki/ocsp".into());
        c.max_client_validity_secs = 7 * 86_400;
    })
    .unwrap();
    let ca = Ca::open(tmp.path()).unwrap();
    let mut req = ClientRequest::new("u");
    assert!(
        ca.issue_client(&req).is_err(),
        "30 days > lowered ceiling of 7"
    );
    req.validity = 7 * DAY;
    let issued = ca.issue_client(&req).unwrap();
    std::fs::write(tmp.path().join("u.crt"), &issued.cert_pem).unwrap();
    let text = assert_openssl(tmp.path(), &["x509", "-in", "u.crt", "-noout", "-text"]);
    assert!(text.contains("URI:http://gw.test/pki/crl"), "{text}");
    assert!(
        text.contains("OCSP - URI:http://gw.test/pki/ocsp"),
        "{text}"
    );
    let uri = assert_openssl(tmp.path(), &["x509", "-in", "u.crt", "-noout", "-ocsp_uri"]);
    assert_eq!(uri.trim(), "http://gw.test/pki/ocsp");
}
