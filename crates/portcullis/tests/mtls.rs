//! Mutual TLS end to end: the real `portcullis` binary, real sockets, real
//! TLS clients (curl, a rustls client, openssl as the oracle for what the
//! certificate says).
//!
//! - required / optional listeners and every handshake failure reason, each
//!   checked three ways: curl fails, the rustls client receives the proper
//!   alert, and the gateway's log line names the reason;
//! - per-route requirements on an optional listener: 496 / 495 / 403 and the
//!   matching success cases (subjects, DNS, URI, email, SPIFFE, pins);
//! - identity headers (nginx, XFCC, RFC 9440, custom names) byte for byte at
//!   the echo upstream, and forged copies never reaching it.

mod mtls_common;

use mtls_common::*;
use portcullis_testkit::mtls::{Bed, ClientCert, ClientSpec, Eku, MtlsCa, Validity};
use rustls::AlertDescription;

fn toml_list(paths: &[&std::path::Path]) -> String {
    let items: Vec<String> = paths
        .iter()
        .map(|p| format!("\"{}\"", p.display()))
        .collect();
    format!("[{}]", items.join(", "))
}

/// One required listener, and a client for every failure reason.
#[test]
fn required_listener_rejects_each_bad_certificate_with_its_reason() {
    let bed = Bed::new();
    let d = &bed.dir;
    let good_ca = MtlsCa::new(&d.join("good"), "Good");
    let other_ca = MtlsCa::new(&d.join("other"), "Other"); // not trusted
    let rev_int_ca = MtlsCa::new(&d.join("revint"), "RevInt"); // intermediate revoked by its root
    let deep_ca = MtlsCa::with_depth(&d.join("deep"), "Deep", 2); // root → int1 → int2 → leaf

    let good = good_ca.issue("good", &ClientSpec::new("good"));
    let unknown = other_ca.issue("unknown", &ClientSpec::new("unknown"));
    let expired = good_ca.issue(
        "expired",
        &ClientSpec::new("expired").validity(Validity::Expired),
    );
    let future = good_ca.issue(
        "future",
        &ClientSpec::new("future").validity(Validity::NotYetValid),
    );
    let revoked = good_ca.issue("revoked", &ClientSpec::new("revoked"));
    let under_revoked_int = rev_int_ca.issue("underrev", &ClientSpec::new("under-revoked-int"));
    let server_only = good_ca.issue(
        "serveronly",
        &ClientSpec::new("server-only").eku(Eku::Server),
    );
    let no_eku = good_ca.issue("noeku", &ClientSpec::new("no-eku").eku(Eku::None));
    let deep = deep_ca.issue("deep", &ClientSpec::new("deep"));

    // CRLs: the good intermediate revokes one leaf; the RevInt root revokes its intermediate.
    let crl_leaf = d.join("good-int.crl.pem");
    std::fs::write(&crl_leaf, good_ca.crl_pem(1, &[&revoked.serial], false)).unwrap();
    let crl_int = d.join("revint-root.crl.pem");
    std::fs::write(
        &crl_int,
        rev_int_ca.crl_pem(0, &[&rev_int_ca.cas[1].serial], false),
    )
    .unwrap();

    let listener = format!(
        "client_auth = \"required\"\nclient_ca = {}\nverify_depth = 2\ncrl = {}",
        toml_list(&[
            good_ca.root_path(),
            rev_int_ca.root_path(),
            deep_ca.root_path()
        ]),
        toml_list(&[&crl_leaf, &crl_int]),
    );
    let g = bed.start(
        &bin(),
        &listener,
        "[[route]]\npath = \"/\"\nupstream = \"echo\"\n",
    );

    // The valid client gets through, by curl and by the rustls client.
    let ok = bed.curl(Some(&good), "/", &[]);
    assert_eq!((ok.exit, ok.status), (0, 200), "{ok:?}");
    assert_eq!(try_request(&bed, Some(&good), "/"), Outcome::Status(200));

    // The gateway's log is a file here: it must be plain text (no ANSI colours).
    let raw = g.stderr_text();
    assert!(
        !raw.contains('\x1b'),
        "stderr to a file carries ANSI escapes:\n{raw}"
    );

    let cases: [(&str, Option<&ClientCert>, &str, AlertDescription); 9] = [
        (
            "no certificate",
            None,
            "no_certificate",
            AlertDescription::CertificateRequired,
        ),
        (
            "unknown CA",
            Some(&unknown),
            "unknown_ca",
            AlertDescription::UnknownCA,
        ),
        (
            "expired",
            Some(&expired),
            "expired",
            AlertDescription::CertificateExpired,
        ),
        (
            "not yet valid",
            Some(&future),
            "not_yet_valid",
            AlertDescription::CertificateExpired,
        ),
        (
            "revoked leaf",
            Some(&revoked),
            "revoked",
            AlertDescription::CertificateRevoked,
        ),
        (
            "revoked intermediate",
            Some(&under_revoked_int),
            "revoked",
            AlertDescription::CertificateRevoked,
        ),
        (
            "serverAuth-only EKU",
            Some(&server_only),
            "wrong_eku",
            AlertDescription::UnsupportedCertificate,
        ),
        (
            "no EKU",
            Some(&no_eku),
            "wrong_eku",
            AlertDescription::UnsupportedCertificate,
        ),
        (
            "chain longer than verify_depth",
            Some(&deep),
            "chain_too_long",
            AlertDescription::CertificateUnknown,
        ),
    ];
    for (what, cert, reason, alert) in cases {
        // curl: the transfer fails (TLS error), no HTTP status.
        let before = handshake_failures(&g, reason).len();
        let r = bed.curl(cert, "/", &[]);
        assert!(
            r.exit != 0 && r.status == 0,
            "{what}: curl got through: {r:?}"
        );
        let line = expect_failure_logged(&g, reason, before);
        assert!(
            line.contains("peer=127.0.0.1:"),
            "{what}: no peer in {line}"
        );
        assert!(
            line.contains("sni=\"localhost\""),
            "{what}: no sni in {line}"
        );
        assert!(
            line.contains("listener=main"),
            "{what}: no listener in {line}"
        );

        // rustls client: the handshake is refused with the proper alert.
        let before = handshake_failures(&g, reason).len();
        assert_eq!(
            try_request(&bed, cert, "/"),
            Outcome::Alert(alert),
            "{what}"
        );
        expect_failure_logged(&g, reason, before);
    }

    // openssl s_client without a certificate: no HTTP response ever comes back.
    let out = std::process::Command::new("sh")
        .arg("-c")
        .arg(format!(
            "printf 'GET / HTTP/1.1\\r\\nHost: localhost\\r\\nConnection: close\\r\\n\\r\\n' | \
             openssl s_client -quiet -connect 127.0.0.1:{} -servername localhost -CAfile {} 2>&1",
            bed.port,
            bed.server_ca.display()
        ))
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        !text.contains("HTTP/1.1 200"),
        "s_client got a response: {text}"
    );
    assert!(
        text.contains("alert certificate required") || text.contains("certificate required"),
        "s_client: {text}"
    );

    // And the valid client still works afterwards.
    assert_eq!(bed.curl(Some(&good), "/", &[]).status, 200);
}

/// The same deep chain is accepted when verify_depth allows it.
#[test]
fn verify_depth_three_accepts_a_two_intermediate_chain() {
    let bed = Bed::new();
    let deep_ca = MtlsCa::with_depth(&bed.dir.join("deep"), "Deep", 2);
    let deep = deep_ca.issue("deep", &ClientSpec::new("deep"));
    let listener = format!(
        "client_auth = \"required\"\nclient_ca = {}\nverify_depth = 3",
        toml_list(&[deep_ca.root_path()])
    );
    let _g = bed.start(
        &bin(),
        &listener,
        "[[route]]\npath = \"/\"\nupstream = \"echo\"\n",
    );
    let r = bed.curl(Some(&deep), "/", &[]);
    assert_eq!((r.exit, r.status), (0, 200), "{r:?}");
}

/// With require_client_auth_eku = false a certificate without EKU is accepted
/// (a serverAuth-only one still is not: webpki refuses an EKU that excludes clientAuth).
#[test]
fn eku_requirement_can_be_relaxed() {
    let bed = Bed::new();
    let ca = MtlsCa::new(&bed.dir.join("ca"), "Ca");
    let no_eku = ca.issue("noeku", &ClientSpec::new("no-eku").eku(Eku::None));
    let listener = format!(
        "client_auth = \"required\"\nclient_ca = {}\nrequire_client_auth_eku = false",
        toml_list(&[ca.root_path()])
    );
    let _g = bed.start(
        &bin(),
        &listener,
        "[[route]]\npath = \"/\"\nupstream = \"echo\"\n",
    );
    assert_eq!(bed.curl(Some(&no_eku), "/", &[]).status, 200);
}

/// "optional": no certificate is fine, a valid one is used, a bad one still fails the handshake.
#[test]
fn optional_listener() {
    let bed = Bed::new();
    let ca = MtlsCa::new(&bed.dir.join("ca"), "Ca");
    let other = MtlsCa::new(&bed.dir.join("other"), "Other");
    let alice = ca.issue("alice", &ClientSpec::new("alice"));
    let stranger = other.issue("stranger", &ClientSpec::new("stranger"));
    let expired = ca.issue(
        "expired",
        &ClientSpec::new("expired").validity(Validity::Expired),
    );
    let listener = format!(
        "client_auth = \"optional\"\nclient_ca = {}",
        toml_list(&[ca.root_path()])
    );
    let routes = "[[route]]\npath = \"/\"\nupstream = \"echo\"\nidentity_headers = [\"nginx\"]\n";
    let g = bed.start(&bin(), &listener, routes);

    let anon = bed.curl(None, "/", &[]);
    assert_eq!((anon.exit, anon.status), (0, 200), "{anon:?}");
    assert_eq!(anon.echoed("x-ssl-client-verify").as_deref(), Some("NONE"));
    assert_eq!(anon.echoed("x-ssl-client-dn"), None);

    let a = bed.curl(Some(&alice), "/", &[]);
    assert_eq!(a.status, 200, "{a:?}");
    assert_eq!(a.echoed("x-ssl-client-verify").as_deref(), Some("SUCCESS"));
    assert_eq!(
        a.echoed("x-ssl-client-dn").as_deref(),
        Some("CN=alice,O=Portcullis Test")
    );

    for (cert, reason) in [(&stranger, "unknown_ca"), (&expired, "expired")] {
        let before = handshake_failures(&g, reason).len();
        let r = bed.curl(Some(cert), "/", &[]);
        assert!(r.exit != 0 && r.status == 0, "{reason}: {r:?}");
        expect_failure_logged(&g, reason, before);
    }
}

/// Per-route requirements on an optional listener trusting two CAs.
#[test]
fn per_route_requirements_and_authorization() {
    let bed = Bed::new();
    let d = &bed.dir;
    let ca_a = MtlsCa::new(&d.join("a"), "TeamA");
    let ca_b = MtlsCa::new(&d.join("b"), "TeamB");
    let alice = ca_a.issue("alice", &ClientSpec::new("alice"));
    let from_b = ca_b.issue("fromb", &ClientSpec::new("from-b"));
    let svc = ca_a.issue("svc", &ClientSpec::new("svc-a").org(Some("Payments")));
    let svc_other_org = ca_a.issue("svc2", &ClientSpec::new("svc-a").org(Some("Billing")));
    let dns_ok = ca_a.issue("dnsok", &ClientSpec::new("d1").dns("api.svc.example.com"));
    let dns_deep = ca_a.issue(
        "dnsdeep",
        &ClientSpec::new("d2").dns("a.api.svc.example.com"),
    );
    let spiffe_ok = ca_a.issue(
        "sp1",
        &ClientSpec::new("sp1").uri("spiffe://example.org/ns/pay/sa/api"),
    );
    let spiffe_near = ca_a.issue(
        "sp2",
        &ClientSpec::new("sp2").uri("spiffe://example.org/ns/payroll"),
    );
    let spiffe_exact = ca_a.issue(
        "sp3",
        &ClientSpec::new("sp3").uri("spiffe://example.org/job/exact"),
    );
    let spiffe_other_td = ca_a.issue(
        "sp4",
        &ClientSpec::new("sp4").uri("spiffe://evil.org/ns/pay/sa/api"),
    );
    let uri_ok = ca_a.issue(
        "uri1",
        &ClientSpec::new("u1").uri("https://clients.example.com/acme"),
    );
    let mail_ok = ca_a.issue("mail1", &ClientSpec::new("m1").email("ops@example.com"));
    let mail_no = ca_a.issue("mail2", &ClientSpec::new("m2").email("ops@evil.com"));
    let bob = ca_a.issue("bob", &ClientSpec::new("bob"));

    // Pins computed by openssl, as an operator would (Envoy's documented commands).
    let fp = x509_field(&alice.leaf_path, &["-fingerprint", "-sha256"]); // AB:CD:… upper-case
    let spki_der = bed.dir.join("alice.spki.der");
    openssl(&[
        "x509",
        "-in",
        alice.leaf_path.to_str().unwrap(),
        "-noout",
        "-pubkey",
        "-out",
        bed.dir.join("alice.pub.pem").to_str().unwrap(),
    ]);
    openssl(&[
        "pkey",
        "-pubin",
        "-in",
        bed.dir.join("alice.pub.pem").to_str().unwrap(),
        "-outform",
        "der",
        "-out",
        spki_der.to_str().unwrap(),
    ]);
    let spki_b64 = {
        use base64::Engine;
        let der = std::fs::read(&spki_der).unwrap();
        let h = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, &der);
        base64::engine::general_purpose::STANDARD.encode(h.as_ref())
    };

    let listener = format!(
        "client_auth = \"optional\"\nclient_ca = {}",
        toml_list(&[ca_a.root_path(), ca_b.root_path()])
    );
    let routes = format!(
        r#"
[[route]]
path = "/open"
upstream = "echo"

[[route]]
path = "/need"
upstream = "echo"
client_cert = "required"

[[route]]
path = "/only-a"
upstream = "echo"
client_cert = "required"
client_ca = ["{a_root}"]

[[route]]
path = "/subj"
upstream = "echo"
allow_subjects = ["CN=svc-*,O=Payments"]

[[route]]
path = "/dns"
upstream = "echo"
allow_dns = ["*.svc.example.com"]

[[route]]
path = "/spiffe"
upstream = "echo"
allow_spiffe = ["spiffe://example.org/ns/pay/*", "spiffe://example.org/job/exact"]

[[route]]
path = "/uri"
upstream = "echo"
allow_uris = ["https://clients.example.com/*"]

[[route]]
path = "/email"
upstream = "echo"
allow_emails = ["*@example.com"]

[[route]]
path = "/pin-cert"
upstream = "echo"
pin_cert_sha256 = ["{fp}"]

[[route]]
path = "/pin-spki"
upstream = "echo"
pin_spki_sha256 = ["{spki_b64}"]
"#,
        a_root = ca_a.root_path().display(),
    );
    let g = bed.start(&bin(), &listener, &routes);

    // Open route: anyone.
    assert_eq!(bed.curl(None, "/open", &[]).status, 200);
    assert_eq!(bed.curl(Some(&from_b), "/open", &[]).status, 200);

    // 496 without a certificate, JSON body.
    let r = bed.curl(None, "/need", &[]);
    assert_eq!(r.status, 496, "{r:?}");
    let j = r.json();
    assert!(
        j.to_string().contains("client certificate required"),
        "496 body: {}",
        r.body
    );
    assert_eq!(bed.curl(Some(&alice), "/need", &[]).status, 200);
    assert_eq!(bed.curl(Some(&from_b), "/need", &[]).status, 200);

    // 495: a certificate of the listener's other CA on a route trusting only A.
    let r = bed.curl(Some(&from_b), "/only-a", &[]);
    assert_eq!(r.status, 495, "{r:?}");
    r.json();
    assert_eq!(bed.curl(Some(&alice), "/only-a", &[]).status, 200);
    assert_eq!(bed.curl(None, "/only-a", &[]).status, 496);

    // Allow lists and pins: success and 403 for each kind. Every allow route
    // also refuses an anonymous client (496).
    let table: Vec<(&str, &ClientCert, u16)> = vec![
        ("/subj", &svc, 200),
        ("/subj", &svc_other_org, 403),
        ("/subj", &alice, 403),
        ("/dns", &dns_ok, 200),
        ("/dns", &dns_deep, 403),
        ("/dns", &alice, 403),
        ("/spiffe", &spiffe_ok, 200),
        ("/spiffe", &spiffe_exact, 200),
        ("/spiffe", &spiffe_near, 403),
        ("/spiffe", &spiffe_other_td, 403),
        ("/spiffe", &alice, 403),
        ("/uri", &uri_ok, 200),
        ("/uri", &spiffe_ok, 403),
        ("/email", &mail_ok, 200),
        ("/email", &mail_no, 403),
        ("/pin-cert", &alice, 200),
        ("/pin-cert", &bob, 403),
        ("/pin-spki", &alice, 200),
        ("/pin-spki", &bob, 403),
    ];
    for (path, cert, want) in &table {
        let r = bed.curl(Some(cert), path, &[]);
        assert_eq!(
            r.status,
            *want,
            "{path} with {:?}: {r:?}",
            cert.cert_path.file_name()
        );
        if *want == 403 {
            // The reason goes to the log, not to the client.
            assert!(
                !r.body.contains("allow rule") && !r.body.contains("pin"),
                "{path}: 403 body leaks the reason: {}",
                r.body
            );
        }
    }
    for path in [
        "/subj",
        "/dns",
        "/spiffe",
        "/uri",
        "/email",
        "/pin-cert",
        "/pin-spki",
    ] {
        assert_eq!(bed.curl(None, path, &[]).status, 496, "{path} anonymous");
    }
    let l = log(&g);
    assert!(
        l.contains("client certificate refused by route policy"),
        "{l}"
    );
    assert!(l.contains("matches no allow rule"), "{l}");
    assert!(l.contains("matches no pin"), "{l}");
    assert!(l.contains("is not trusted on this route"), "{l}");
}

/// Identity headers, byte for byte, with openssl as the oracle; forged copies never reach the upstream.
#[test]
fn identity_headers_byte_for_byte_and_unforgeable() {
    use base64::Engine;
    let b64 = |d: &[u8]| base64::engine::general_purpose::STANDARD.encode(d);
    let bed = Bed::new();
    let ca = MtlsCa::new(&bed.dir.join("ca"), "Ident");
    let alice = ca.issue(
        "alice",
        &ClientSpec::new("alice")
            .dns("alice.svc.example.com")
            .uri("spiffe://example.org/ns/pay/sa/alice"),
    );
    let listener = format!(
        "client_auth = \"optional\"\nclient_ca = {}",
        toml_list(&[ca.root_path()])
    );
    let routes = r#"
[[route]]
path = "/nginx"
upstream = "echo"
identity_headers = ["nginx"]

[[route]]
path = "/xfcc"
upstream = "echo"
identity_headers = ["xfcc"]

[[route]]
path = "/rfc9440"
upstream = "echo"
identity_headers = ["rfc9440"]

[[route]]
path = "/custom"
upstream = "echo"
identity_headers = ["nginx"]
[route.identity_header_names]
cert = "X-Peer-Cert"
dn = "X-Peer-DN"
verify = "X-Peer-Verify"

[[route]]
path = "/plain"
upstream = "echo"
"#;
    let _g = bed.start(&bin(), &listener, routes);

    // The oracle: openssl's view of the leaf.
    let leaf = &alice.leaf_path;
    let pem = openssl(&["x509", "-in", leaf.to_str().unwrap()]) + "\n";
    let escaped = portcullis_testkit::mtls::url_escape(&pem);
    let subject = x509_field(leaf, &["-subject", "-nameopt", "RFC2253"]);
    let issuer = x509_field(leaf, &["-issuer", "-nameopt", "RFC2253"]);
    let serial = x509_field(leaf, &["-serial"]);
    let not_after = x509_field(leaf, &["-enddate"]);
    let fingerprint = x509_field(leaf, &["-fingerprint", "-sha256"])
        .replace(':', "")
        .to_lowercase();
    assert_eq!(subject, "CN=alice,O=Portcullis Test");
    assert_eq!(issuer, "CN=Ident Intermediate 1,O=Ident");

    // Forged copies of every identity header, sent by the client.
    let forged = [
        "X-SSL-Client-Cert: forged",
        "X-SSL-Client-DN: CN=admin",
        "X-SSL-Client-I-DN: CN=forged",
        "X-SSL-Client-Verify: SUCCESS",
        "X-SSL-Client-Serial: 01",
        "X-SSL-Client-Fingerprint: 00",
        "X-SSL-Client-Not-After: never",
        "X-Forwarded-Client-Cert: Hash=00;Subject=\"CN=admin\"",
        "Client-Cert: :AAAA:",
        "Client-Cert-Chain: :AAAA:",
        "X-Peer-Cert: forged",
        "X-Peer-DN: CN=admin",
        "X-Peer-Verify: SUCCESS",
    ];
    let mut fargs: Vec<&str> = Vec::new();
    for h in &forged {
        fargs.push("-H");
        fargs.push(h);
    }

    // nginx style.
    let r = bed.curl(Some(&alice), "/nginx", &fargs);
    assert_eq!(r.status, 200, "{r:?}");
    assert_eq!(r.echoed("x-ssl-client-cert").unwrap(), escaped);
    assert_eq!(r.echoed("x-ssl-client-dn").unwrap(), subject);
    assert_eq!(r.echoed("x-ssl-client-i-dn").unwrap(), issuer);
    assert_eq!(r.echoed("x-ssl-client-verify").unwrap(), "SUCCESS");
    assert_eq!(r.echoed("x-ssl-client-serial").unwrap(), serial);
    assert_eq!(r.echoed("x-ssl-client-fingerprint").unwrap(), fingerprint);
    assert_eq!(r.echoed("x-ssl-client-not-after").unwrap(), not_after);
    for h in [
        "x-forwarded-client-cert",
        "client-cert",
        "client-cert-chain",
    ] {
        assert_eq!(r.echoed(h), None, "/nginx: forged {h} reached the upstream");
    }

    // XFCC (Envoy): Hash, Cert, Subject, URI, DNS.
    let r = bed.curl(Some(&alice), "/xfcc", &fargs);
    let want = format!(
        "Hash={fingerprint};Cert=\"{escaped}\";Subject=\"{subject}\";URI=spiffe://example.org/ns/pay/sa/alice;DNS=alice.svc.example.com"
    );
    assert_eq!(r.echoed("x-forwarded-client-cert").unwrap(), want);
    for h in ["x-ssl-client-cert", "x-ssl-client-verify", "client-cert"] {
        assert_eq!(r.echoed(h), None, "/xfcc: forged {h} reached the upstream");
    }

    // RFC 9440: base64 DER between colons; the chain is the intermediate.
    let r = bed.curl(Some(&alice), "/rfc9440", &fargs);
    assert_eq!(
        r.echoed("client-cert").unwrap(),
        format!(":{}:", b64(&alice.leaf_der))
    );
    assert_eq!(
        r.echoed("client-cert-chain").unwrap(),
        format!(":{}:", b64(&alice.intermediates_der[0]))
    );
    for h in ["x-ssl-client-cert", "x-forwarded-client-cert"] {
        assert_eq!(
            r.echoed(h),
            None,
            "/rfc9440: forged {h} reached the upstream"
        );
    }

    // Custom names replace the defaults; the other nginx headers keep theirs.
    let r = bed.curl(Some(&alice), "/custom", &fargs);
    assert_eq!(r.echoed("x-peer-cert").unwrap(), escaped);
    assert_eq!(r.echoed("x-peer-dn").unwrap(), subject);
    assert_eq!(r.echoed("x-peer-verify").unwrap(), "SUCCESS");
    assert_eq!(r.echoed("x-ssl-client-serial").unwrap(), serial);
    assert_eq!(r.echoed("x-ssl-client-cert"), None);
    assert_eq!(r.echoed("x-ssl-client-dn"), None);

    // Without a certificate: nothing forged survives (the custom names are
    // checked on the route that configures them).
    for path in ["/nginx", "/xfcc", "/rfc9440", "/custom", "/plain"] {
        let r = bed.curl(None, path, &fargs);
        assert_eq!(r.status, 200, "{path}: {r:?}");
        for (name, value) in r.echoed_headers() {
            if name.starts_with("x-peer-") && path != "/custom" {
                continue;
            }
            let forged_value = forged.iter().any(|f| {
                f.split_once(": ")
                    .is_some_and(|(n, v)| n.eq_ignore_ascii_case(&name) && v == value)
            });
            assert!(
                !forged_value,
                "{path} (no cert): forged {name}: {value} reached the upstream"
            );
        }
        let verify = if path == "/custom" {
            "x-peer-verify"
        } else {
            "x-ssl-client-verify"
        };
        let want = matches!(path, "/nginx" | "/custom").then(|| "NONE".to_string());
        assert_eq!(r.echoed(verify), want, "{path}");
    }
    // With a certificate on a route without identity headers: none at all.
    let r = bed.curl(Some(&alice), "/plain", &fargs);
    for (name, _) in r.echoed_headers() {
        assert!(
            !(name.starts_with("x-ssl-client")
                || name.starts_with("client-cert")
                || name == "x-forwarded-client-cert"),
            "/plain: {name} reached the upstream"
        );
    }
}

/// crl_expired = "reject" refuses clients of an issuer whose CRL expired
/// (reason crl_expired); "warn" lets them in. A revoked intermediate is
/// refused under crl_scope = "chain".
#[test]
fn expired_crl_policy() {
    let bed = Bed::new();
    let d = &bed.dir;
    let ca = MtlsCa::new(&d.join("a"), "Alpha");
    let alice = ca.issue("alice", &ClientSpec::new("alice"));
    let expired_crl = d.join("expired.crl.pem");
    std::fs::write(&expired_crl, ca.crl_pem(1, &[], true)).unwrap();
    let rev = MtlsCa::new(&d.join("r"), "RevInt");
    let under = rev.issue("under", &ClientSpec::new("under"));
    let root_crl = d.join("revint-root.crl.pem");
    std::fs::write(&root_crl, rev.crl_pem(0, &[&rev.cas[1].serial], false)).unwrap();

    let run = |policy: &str, scope: &str| {
        let listener = format!(
            "client_auth = \"required\"\nclient_ca = {}\ncrl = {}\ncrl_expired = \"{policy}\"\ncrl_scope = \"{scope}\"",
            toml_list(&[ca.root_path(), rev.root_path()]),
            toml_list(&[&expired_crl, &root_crl]),
        );
        bed.start(
            &bin(),
            &listener,
            "[[route]]\npath = \"/\"\nupstream = \"echo\"\n",
        )
    };

    let mut g = run("reject", "chain");
    let before = handshake_failures(&g, "crl_expired").len();
    let r = bed.curl(Some(&alice), "/", &[]);
    assert!(r.exit != 0 && r.status == 0, "{r:?}");
    expect_failure_logged(&g, "crl_expired", before);
    assert_eq!(
        try_request(&bed, Some(&under), "/"),
        Outcome::Alert(AlertDescription::CertificateRevoked)
    );
    g.signal("TERM");
    g.wait_exit(std::time::Duration::from_secs(10));
    drop(g);

    let g = run("warn", "chain");
    let r = bed.curl(Some(&alice), "/", &[]);
    assert_eq!(r.status, 200, "{r:?}\n{}", log(&g));
}

/// crl_scope = "leaf": a leaf under a revoked intermediate is accepted.
#[test]
fn crl_scope_leaf_ignores_a_revoked_intermediate() {
    let bed = Bed::new();
    let rev = MtlsCa::new(&bed.dir.join("r"), "RevInt");
    let under = rev.issue("under", &ClientSpec::new("under"));
    let root_crl = bed.dir.join("revint-root.crl.pem");
    std::fs::write(&root_crl, rev.crl_pem(0, &[&rev.cas[1].serial], false)).unwrap();
    let listener = format!(
        "client_auth = \"required\"\nclient_ca = {}\ncrl = {}\ncrl_scope = \"leaf\"",
        toml_list(&[rev.root_path()]),
        toml_list(&[&root_crl]),
    );
    let _g = bed.start(
        &bin(),
        &listener,
        "[[route]]\npath = \"/\"\nupstream = \"echo\"\n",
    );
    let r = bed.curl(Some(&under), "/", &[]);
    assert_eq!(r.status, 200, "{r:?}\n{}", _g.stderr_text());
}
