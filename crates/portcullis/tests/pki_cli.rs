//! The internal CA's command line, end to end with the real binary and openssl:
//! `ca init|show`, `cert issue|list|show|revoke`, `token create|list`, `crl`, their happy
//! paths and refusals, and a store that survives SIGKILL in the middle of `cert issue`.

mod pki_support;

use std::path::Path;
use std::time::{Duration, Instant};

use pki_support::*;

#[test]
fn ca_init_show_and_refusals() {
    let tmp = tempfile::tempdir().unwrap();
    let ca = tmp.path().join("ca");
    let mut init = pc_cmd(&[
        "ca",
        "init",
        "--dir",
        s(&ca),
        "--passphrase-env",
        "ROOT_PASS",
    ]);
    init.env("ROOT_PASS", "correct horse");
    let out = run_cmd(&mut init).expect_ok("ca init with a passphrase");
    assert!(out.stdout.contains("root.crt"), "{out:#?}");
    for f in ["root.key", "intermediate.key", "inventory.jsonl"] {
        assert_eq!(mode(&ca.join(f)), 0o600, "{f} must be 0600");
    }
    assert_eq!(mode(&ca.join("root.crt")), 0o644);

    // The root key is an encrypted PKCS#8 that openssl opens with the passphrase only.
    let key = std::fs::read_to_string(ca.join("root.key")).unwrap();
    assert!(key.contains("BEGIN ENCRYPTED PRIVATE KEY"));
    openssl(&[
        "pkey",
        "-in",
        s(&ca.join("root.key")),
        "-passin",
        "pass:correct horse",
        "-noout",
    ])
    .expect_ok("openssl pkey with the right passphrase");
    let wrong = openssl(&[
        "pkey",
        "-in",
        s(&ca.join("root.key")),
        "-passin",
        "pass:wrong",
        "-noout",
    ]);
    assert!(
        !wrong.ok(),
        "a wrong passphrase must not open root.key: {wrong:#?}"
    );

    // Refusals: overwrite, passphrase variable missing, unknown algorithm.
    pc(&["ca", "init", "--dir", s(&ca)])
        .expect_refused("ca init over an existing CA", "refusing to overwrite");
    let before = std::fs::read(ca.join("root.crt")).unwrap();
    pc(&["ca", "init", "--dir", s(&ca), "--key", "ed25519"])
        .expect_refused("second ca init", "refusing to overwrite");
    assert_eq!(
        std::fs::read(ca.join("root.crt")).unwrap(),
        before,
        "the refused init changed root.crt"
    );
    let other = tmp.path().join("other");
    pc(&[
        "ca",
        "init",
        "--dir",
        s(&other),
        "--passphrase-env",
        "PORTCULLIS_TEST_UNSET_VAR",
    ])
    .expect_refused(
        "ca init with an unset passphrase variable",
        "not set or empty",
    );
    pc(&["ca", "init", "--dir", s(&other), "--key", "dsa-512"])
        .expect_refused("ca init with a bad key", "unknown key algorithm");
    assert!(
        !other.join("ca.json").exists(),
        "a refused init must not leave a CA"
    );

    // show, with --dir and with $PORTCULLIS_CA_DIR.
    let out = pc(&["ca", "show", "--dir", s(&ca)]).expect_ok("ca show");
    assert!(out.stdout.contains("root key encrypted:  true"), "{out:#?}");
    assert!(
        out.stdout.contains("max client validity: 90 days"),
        "{out:#?}"
    );
    let mut show = pc_cmd(&["ca", "show"]);
    show.env("PORTCULLIS_CA_DIR", &ca);
    run_cmd(&mut show).expect_ok("ca show with PORTCULLIS_CA_DIR");

    // Missing CA: every command that needs one says so.
    let missing = tmp.path().join("missing");
    for args in [
        vec!["ca", "show"],
        vec!["cert", "list"],
        vec!["cert", "issue", "client", "alice"],
        vec!["cert", "revoke", "alice"],
        vec!["token", "create", "alice"],
        vec!["crl"],
    ] {
        let mut a = args.clone();
        a.extend(["--dir", s(&missing)]);
        pc(&a).expect_refused(&format!("{args:?} without a CA"), "no CA found");
    }
    assert!(
        !missing.exists(),
        "a refused command must not create the CA directory"
    );
}

#[test]
fn issued_certificates_verify_with_openssl() {
    let tmp = tempfile::tempdir().unwrap();
    let ca = tmp.path().join("ca");
    let out_dir = tmp.path().join("out");
    init_ca(
        &ca,
        &[
            "--crl-url",
            "https://gw.example:8443/pki/crl",
            "--ocsp-url",
            "https://gw.example:8443/pki/ocsp",
        ],
    );

    let mut issue = pc_cmd(&[
        "cert",
        "issue",
        "client",
        "alice",
        "--dir",
        s(&ca),
        "--out",
        s(&out_dir),
        "--san",
        "alice.internal",
        "--spiffe",
        "spiffe://example.org/alice",
        "--p12-password-env",
        "P12_PASS",
        "--days",
        "7",
    ]);
    issue.env("P12_PASS", "p12 secret");
    let out = run_cmd(&mut issue).expect_ok("cert issue client");
    let serial = issued_serial(&out);
    assert!(
        out.stdout.contains("curl"),
        "the client snippets are printed: {out:#?}"
    );
    let crt = out_dir.join("alice.crt");
    let key = out_dir.join("alice.key");
    assert_eq!(mode(&key), 0o600);

    openssl_verify(&ca, &crt, "sslclient").expect_ok("openssl verify -purpose sslclient");
    let wrong = openssl_verify(&ca, &crt, "sslserver");
    assert!(
        !wrong.ok(),
        "a client certificate must not verify as a server: {wrong:#?}"
    );

    let text = openssl(&["x509", "-in", s(&crt), "-noout", "-text"])
        .expect_ok("x509 -text")
        .stdout;
    for needle in [
        "TLS Web Client Authentication",
        "Digital Signature",
        "CA:FALSE",
        "DNS:alice.internal",
        "URI:spiffe://example.org/alice",
        "Subject Key Identifier",
        "Authority Key Identifier",
        "https://gw.example:8443/pki/crl",
        "OCSP - URI:https://gw.example:8443/pki/ocsp",
    ] {
        assert!(
            text.contains(needle),
            "certificate text lacks {needle:?}:\n{text}"
        );
    }
    assert!(!text.contains("TLS Web Server Authentication"));
    assert_eq!(cert_info(&crt).serial, serial);

    // The .p12 opens with its password (OpenSSL 3, no legacy provider), not without.
    let p12 = out_dir.join("alice.p12");
    let opened = openssl(&[
        "pkcs12",
        "-in",
        s(&p12),
        "-passin",
        "pass:p12 secret",
        "-nodes",
    ])
    .expect_ok("openssl pkcs12 with the password");
    assert!(opened.stdout.contains("BEGIN CERTIFICATE"), "{opened:#?}");
    assert!(opened.stdout.contains("PRIVATE KEY"), "{opened:#?}");
    let bad = openssl(&["pkcs12", "-in", s(&p12), "-passin", "pass:nope", "-nodes"]);
    assert!(!bad.ok(), "a wrong .p12 password must fail: {bad:#?}");

    // A server certificate: serverAuth only, DNS + IP SANs.
    pc(&[
        "cert",
        "issue",
        "server",
        "api.internal",
        "--ip",
        "127.0.0.1",
        "--dir",
        s(&ca),
        "--out",
        s(&out_dir),
    ])
    .expect_ok("cert issue server");
    let srv = out_dir.join("api.internal.crt");
    openssl_verify(&ca, &srv, "sslserver").expect_ok("server verify -purpose sslserver");
    assert!(
        !openssl_verify(&ca, &srv, "sslclient").ok(),
        "a server certificate must not verify as a client"
    );
    let text = openssl(&["x509", "-in", s(&srv), "-noout", "-text"])
        .expect_ok("x509")
        .stdout;
    assert!(
        text.contains("DNS:api.internal") && text.contains("IP Address:127.0.0.1"),
        "{text}"
    );

    // --csr: the CA signs the client's key; no key file and no .p12 are written here.
    let csr = tmp.path().join("bob.csr");
    let bob_key = tmp.path().join("bob.key");
    openssl(&[
        "req",
        "-new",
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:P-256",
        "-nodes",
        "-keyout",
        s(&bob_key),
        "-out",
        s(&csr),
        "-subj",
        "/CN=ignored",
    ])
    .expect_ok("openssl req");
    pc(&[
        "cert",
        "issue",
        "client",
        "bob",
        "--csr",
        s(&csr),
        "--dir",
        s(&ca),
        "--out",
        s(&out_dir),
    ])
    .expect_ok("cert issue client --csr");
    assert!(!out_dir.join("bob.key").exists());
    let bob = out_dir.join("bob.crt");
    openssl_verify(&ca, &bob, "sslclient").expect_ok("verify the CSR-signed certificate");
    assert_eq!(
        cert_info(&bob).subject_cn,
        "bob",
        "the CA names the client, not the CSR"
    );
    let same_key = openssl(&["x509", "-in", s(&bob), "-noout", "-pubkey"]).stdout
        == openssl(&["pkey", "-in", s(&bob_key), "-pubout"]).stdout;
    assert!(same_key, "the certificate must carry the CSR's key");
}

#[test]
fn validity_limits() {
    let tmp = tempfile::tempdir().unwrap();
    let ca = tmp.path().join("ca");
    let out_dir = tmp.path().join("out");
    init_ca(&ca, &[]);
    let d = s(&ca);
    let o = s(&out_dir);
    pc(&[
        "cert", "issue", "client", "a", "--days", "91", "--dir", d, "--out", o,
    ])
    .expect_refused("91 days", "over the maximum of 90 days");
    pc(&[
        "cert", "issue", "client", "a", "--hours", "2161", "--dir", d, "--out", o,
    ])
    .expect_refused("2161 hours", "over the maximum");
    pc(&[
        "cert", "issue", "client", "a", "--days", "0", "--dir", d, "--out", o,
    ])
    .expect_refused("0 days", "positive");
    pc(&[
        "cert",
        "issue",
        "server",
        "s.internal",
        "--days",
        "399",
        "--dir",
        d,
        "--out",
        o,
    ])
    .expect_refused("server 399 days", "over the maximum");
    assert!(
        list_json(&ca).is_empty(),
        "refused issues must not be recorded"
    );
    pc(&[
        "cert", "issue", "client", "a", "--days", "90", "--dir", d, "--out", o,
    ])
    .expect_ok("90 days");

    // A lower ceiling set at init.
    let low = tmp.path().join("low");
    init_ca(&low, &["--max-client-days", "7"]);
    pc(&[
        "cert",
        "issue",
        "client",
        "a",
        "--days",
        "8",
        "--dir",
        s(&low),
        "--out",
        o,
    ])
    .expect_refused("8 days under a 7-day ceiling", "over the maximum of 7 days");
    pc(&[
        "cert",
        "issue",
        "client",
        "a",
        "--days",
        "7",
        "--dir",
        s(&low),
        "--out",
        o,
    ])
    .expect_ok("7 days");

    // Minutes are for tests only, behind an environment switch.
    pc(&[
        "cert",
        "issue",
        "client",
        "short",
        "--minutes",
        "2",
        "--dir",
        d,
        "--out",
        o,
    ])
    .expect_refused(
        "--minutes without the test switch",
        "PORTCULLIS_TEST_SHORT_VALIDITY",
    );
    let mut short = pc_cmd(&[
        "cert",
        "issue",
        "client",
        "short",
        "--minutes",
        "2",
        "--dir",
        d,
        "--out",
        o,
    ]);
    short.env("PORTCULLIS_TEST_SHORT_VALIDITY", "1");
    run_cmd(&mut short).expect_ok("--minutes 2 with the test switch");
    let info = cert_info(&out_dir.join("short.crt"));
    // Leaves are backdated one minute for clock skew: 1 + 2 minutes.
    assert_eq!(info.not_after - info.not_before, 180, "{info:?}");
}

#[test]
fn list_show_revoke_and_crl() {
    let tmp = tempfile::tempdir().unwrap();
    let ca = tmp.path().join("ca");
    let out_dir = tmp.path().join("out");
    init_ca(&ca, &[]);
    let d = s(&ca);
    let o = s(&out_dir);
    let alice = issued_serial(
        &pc(&["cert", "issue", "client", "alice", "--dir", d, "--out", o]).expect_ok("alice"),
    );
    let brief = issued_serial(
        &pc(&[
            "cert", "issue", "client", "brief", "--hours", "2", "--dir", d, "--out", o,
        ])
        .expect_ok("brief"),
    );

    let all = list_json(&ca);
    assert_eq!(all.len(), 2);
    assert!(all
        .iter()
        .all(|r| r["status"] == "valid" && r.get("cert_pem").is_none()));
    let out =
        pc(&["cert", "list", "--dir", d, "--expiring", "1d", "--json"]).expect_ok("--expiring");
    assert!(
        out.stdout.contains(&brief) && !out.stdout.contains(&alice),
        "{out:#?}"
    );
    let table = pc(&["cert", "list", "--dir", d])
        .expect_ok("cert list")
        .stdout;
    assert!(
        table.contains("alice") && table.contains("brief"),
        "{table}"
    );

    let show = pc(&["cert", "show", "alice", "--dir", d])
        .expect_ok("show by name")
        .stdout;
    assert!(
        show.contains(&alice) && show.contains("status:     valid"),
        "{show}"
    );
    let shown: serde_json::Value = serde_json::from_str(
        &pc(&["cert", "show", &brief, "--dir", d, "--json"])
            .expect_ok("show --json")
            .stdout,
    )
    .unwrap();
    assert_eq!(shown["name"], "brief");
    assert!(shown["cert_pem"]
        .as_str()
        .unwrap()
        .contains("BEGIN CERTIFICATE"));

    let unknown = "0123456789abcdef0123456789abcdef";
    pc(&["cert", "show", unknown, "--dir", d])
        .expect_refused("show unknown serial", "no certificate with serial or name");
    pc(&["cert", "revoke", unknown, "--dir", d]).expect_refused(
        "revoke unknown serial",
        "no certificate with serial or name",
    );
    pc(&["cert", "revoke", "alice", "--reason", "sleepy", "--dir", d])
        .expect_refused("bad reason", "unknown revocation reason");

    let out = pc(&[
        "cert",
        "revoke",
        &alice,
        "--reason",
        "keyCompromise",
        "--dir",
        d,
    ])
    .expect_ok("revoke");
    assert!(out.stdout.contains("CRL #"), "{out:#?}");
    pc(&["cert", "revoke", &alice, "--dir", d]).expect_refused("revoke twice", "already revoked");
    let revoked = pc(&["cert", "list", "--revoked", "--json", "--dir", d])
        .expect_ok("list --revoked")
        .stdout;
    assert!(
        revoked.contains(&alice) && !revoked.contains(&brief),
        "{revoked}"
    );

    // The CRL written by revoke verifies against the CA and lists alice, not brief.
    let chain = tmp.path().join("chain.pem");
    write_chain_file(&ca, &chain);
    let crl = openssl(&[
        "crl",
        "-in",
        s(&ca.join("crl.pem")),
        "-CAfile",
        s(&chain),
        "-noout",
        "-text",
    ])
    .expect_ok("openssl crl -CAfile");
    assert!(
        crl.stderr.contains("verify OK") || crl.stdout.contains("verify OK"),
        "{crl:#?}"
    );
    let upper = |x: &str| x.to_ascii_uppercase();
    assert!(
        crl.stdout.contains(&upper(&alice)),
        "CRL lacks alice: {}",
        crl.stdout
    );
    assert!(!crl.stdout.contains(&upper(&brief)));
    assert!(crl.stdout.contains("Key Compromise"), "{}", crl.stdout);

    // `portcullis crl` re-signs with a higher number; .der gives DER.
    let der = tmp.path().join("ca.crl.der");
    let out = pc(&["crl", "--dir", d, "--out", s(&der), "--next-update", "2h"])
        .expect_ok("portcullis crl");
    assert!(out.stdout.contains("CRL #"), "{out:#?}");
    let crl = openssl(&[
        "crl",
        "-inform",
        "DER",
        "-in",
        s(&der),
        "-CAfile",
        s(&chain),
        "-noout",
        "-crlnumber",
    ])
    .expect_ok("openssl crl DER");
    assert!(
        crl.stderr.contains("verify OK") || crl.stdout.contains("verify OK"),
        "{crl:#?}"
    );
    pc(&["crl", "--dir", d, "--next-update", "soon"])
        .expect_refused("bad --next-update", "not a duration");
}

#[test]
fn tokens_create_and_list() {
    let tmp = tempfile::tempdir().unwrap();
    let ca = tmp.path().join("ca");
    init_ca(&ca, &[]);
    let d = s(&ca);
    let out =
        pc(&["token", "create", "svc-a", "--ttl", "10m", "--dir", d]).expect_ok("token create");
    let secret = out.stdout.trim();
    assert!(secret.starts_with("pct_") && secret.len() > 40, "{out:#?}");
    let list = pc(&["token", "list", "--dir", d])
        .expect_ok("token list")
        .stdout;
    assert!(list.contains("svc-a") && list.contains("unused"), "{list}");
    assert!(
        !list.contains(secret),
        "token list must never show the secret"
    );
    let journal = std::fs::read_to_string(ca.join("inventory.jsonl")).unwrap();
    assert!(
        !journal.contains(secret),
        "only the hash of a token is stored"
    );
    pc(&["token", "create", "svc-a", "--ttl", "8d", "--dir", d])
        .expect_refused("TTL over 7 days", "TTL");
    pc(&["token", "create", "svc-a", "--ttl", "0s", "--dir", d])
        .expect_refused("zero TTL", "positive");
}

/// SIGKILL `cert issue client` at varying moments, then check the store:
/// `cert list --json` parses, every certificate file on disk is complete and recorded,
/// and the CA keeps working (the next writer repairs a torn journal tail).
///
/// Why a real kill rather than a hook in the pki crate: it tests the binary users run,
/// needs no test-only code in the CA, and the delays sweep the whole run (process start,
/// key generation, journal append + fsync, file writes), so over the iterations kills
/// land before, during and after each step.
#[test]
fn sigkill_during_issue_leaves_a_consistent_store() {
    let tmp = tempfile::tempdir().unwrap();
    let ca = tmp.path().join("ca");
    let out_dir = tmp.path().join("out");
    init_ca(&ca, &[]);
    let d = s(&ca);
    let o = s(&out_dir);

    // How long does one uninterrupted issue take here?
    let t = Instant::now();
    pc(&["cert", "issue", "client", "warmup", "--dir", d, "--out", o]).expect_ok("warm-up issue");
    let full = t.elapsed().max(Duration::from_millis(5));

    let rounds = 40u32;
    let mut killed = 0;
    for i in 0..rounds {
        let name = format!("k{i}");
        let mut child = pc_cmd(&["cert", "issue", "client", &name, "--dir", d, "--out", o])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("spawn cert issue");
        // Sweep 0 .. 1.2 × the full run time.
        let delay = full.mul_f64(1.2 * f64::from(i) / f64::from(rounds));
        std::thread::sleep(delay);
        if child.try_wait().expect("try_wait").is_none() {
            let _ = child.kill(); // SIGKILL
            killed += 1;
        }
        let _ = child.wait();
    }
    assert!(
        killed > 0,
        "no issue was interrupted; the sweep is too slow"
    );

    check_store(&ca, &out_dir);
    // The store still takes writes after the kills, and they are all visible.
    let before = list_json(&ca).len();
    pc(&["cert", "issue", "client", "after", "--dir", d, "--out", o])
        .expect_ok("issue after the kills");
    pc(&["cert", "revoke", "after", "--dir", d]).expect_ok("revoke after the kills");
    let after = list_json(&ca);
    assert_eq!(after.len(), before + 1);
    check_store(&ca, &out_dir);
}

/// Every line of the journal but a torn last one is JSON; every .crt/.key in `out` is a
/// complete PEM whose certificate is recorded with the same bytes.
fn check_store(ca: &Path, out: &Path) {
    let recs = list_json(ca);
    let journal = std::fs::read_to_string(ca.join("inventory.jsonl")).unwrap();
    let complete: Vec<&str> = journal
        .split_inclusive('\n')
        .filter(|l| l.ends_with('\n'))
        .collect();
    for l in &complete {
        serde_json::from_str::<serde_json::Value>(l)
            .unwrap_or_else(|e| panic!("journal line is not JSON ({e}): {l:?}"));
    }
    for entry in std::fs::read_dir(out).unwrap() {
        let path = entry.unwrap().path();
        let fname = path.file_name().unwrap().to_string_lossy().into_owned();
        if fname.starts_with('.') {
            continue; // a temp file of an interrupted atomic write, never the real name
        }
        let data = std::fs::read_to_string(&path).unwrap();
        if fname.ends_with(".key") {
            openssl(&["pkey", "-in", s(&path), "-noout"])
                .expect_ok(&format!("complete key {fname}"));
        } else if fname.ends_with(".crt") && fname != "ca.crt" {
            assert!(
                data.trim_end().ends_with("-----END CERTIFICATE-----"),
                "{fname} is cut: {data:?}"
            );
            let info = cert_info(&path);
            let rec = recs
                .iter()
                .find(|r| r["serial"] == info.serial.as_str())
                .unwrap_or_else(|| {
                    panic!(
                        "{fname} (serial {}) is on disk but not recorded",
                        info.serial
                    )
                });
            assert_eq!(rec["name"], info.subject_cn);
            let shown: serde_json::Value = serde_json::from_str(
                &pc(&["cert", "show", &info.serial, "--dir", s(ca), "--json"])
                    .expect_ok("show")
                    .stdout,
            )
            .unwrap();
            let leaf_on_disk = data
                .split_inclusive("-----END CERTIFICATE-----\n")
                .next()
                .unwrap();
            assert_eq!(
                shown["cert_pem"].as_str().unwrap().trim(),
                leaf_on_disk.trim(),
                "{fname} differs from its record"
            );
        }
    }
}

/// `ca init --passphrase-prompt` asks on the terminal (driven here through `script`, which gives
/// it a pty): matching passphrases encrypt root.key; different ones create nothing.
#[test]
fn ca_init_asks_for_the_passphrase_on_the_terminal() {
    if std::process::Command::new("script")
        .arg("--version")
        .output()
        .is_err()
    {
        eprintln!("SKIPPED: no `script` (util-linux) to give the prompt a terminal");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let run = |input: &str| {
        let mut child = std::process::Command::new("script")
            .args([
                "-q",
                "-c",
                &format!(
                    "{} ca init --dir ca --passphrase-prompt",
                    env!("CARGO_BIN_EXE_portcullis")
                ),
                "/dev/null",
            ])
            .current_dir(dir.path())
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        use std::io::Write;
        child
            .stdin
            .take()
            .unwrap()
            .write_all(input.as_bytes())
            .unwrap();
        String::from_utf8_lossy(&child.wait_with_output().unwrap().stdout).into_owned()
    };
    let out = run("first-try\nsecond-try\n");
    assert!(out.contains("differ"), "{out}");
    assert!(
        !dir.path().join("ca").exists(),
        "a CA was created with mismatched passphrases"
    );
    run("hunter22-long\nhunter22-long\n");
    let key = std::fs::read_to_string(dir.path().join("ca/root.key")).unwrap();
    assert!(key.starts_with("-----BEGIN ENCRYPTED PRIVATE KEY-----"));
    let ok = |pass: &str| {
        std::process::Command::new("openssl")
            .args(["pkey", "-noout", "-passin", &format!("pass:{pass}"), "-in"])
            .arg(dir.path().join("ca/root.key"))
            .output()
            .unwrap()
            .status
            .success()
    };
    assert!(ok("hunter22-long"));
    assert!(!ok("wrong"), "a wrong passphrase opened the root key");
}
