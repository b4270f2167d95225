//! The built-in CA served by the gateway, end to end with the real binary, curl and
//! openssl: CRL and OCSP (GET and POST, good/revoked/unknown), token enrollment (reuse
//! and expiry refused), renewal over mutual TLS (revoked refused in the handshake and at
//! the endpoint), and `portcullis agent` enrolling and renewing a 2-minute certificate.

mod pki_support;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use base64::Engine;
use pki_support::*;
use portcullis_testkit::{free_port, GatewayProcess};

/// A CA, a server certificate for 127.0.0.1, and a gateway serving `[pki]` on two
/// listeners: `port` checks client certificates against the CA's CRL, `nocrl_port` does
/// not (so a revoked certificate reaches the renewal endpoint, which must refuse it too).
struct Env {
    tmp: tempfile::TempDir,
    ca: PathBuf,
    certs: PathBuf,
    root: PathBuf,
    chain: PathBuf,
    port: u16,
    nocrl_port: u16,
    _gw: GatewayProcess,
}

impl Env {
    fn start() -> Env {
        let tmp = tempfile::tempdir().unwrap();
        let ca = tmp.path().join("ca");
        let certs = tmp.path().join("certs");
        init_ca(&ca, &[]);
        pc(&[
            "cert",
            "issue",
            "server",
            "localhost",
            "--ip",
            "127.0.0.1",
            "--dir",
            s(&ca),
            "--out",
            s(&certs),
        ])
        .expect_ok("server certificate");
        let chain = tmp.path().join("chain.pem");
        write_chain_file(&ca, &chain);
        let (port, nocrl_port) = (free_port(), free_port());
        let config = tmp.path().join("gateway.toml");
        let q = |p: &Path| format!("{:?}", s(p));
        let listener = |name: &str, port: u16, crl: bool| {
            format!(
                "[[listener]]\nname = \"{name}\"\naddress = \"127.0.0.1:{port}\"\nclient_auth = \"optional\"\nclient_ca = [{root}]\n{crl}[[listener.certificate]]\ncert = {cert}\nkey = {key}\n\n",
                root = q(&ca.join("root.crt")),
                crl = if crl { format!("crl = [{}]\n", q(&ca.join("crl.pem"))) } else { String::new() },
                cert = q(&certs.join("localhost.crt")),
                key = q(&certs.join("localhost.key")),
            )
        };
        let toml = format!(
            "{}{}[pki]\nca_dir = {}\nprefix = \"/pki\"\nocsp_validity = \"1h\"\n",
            listener("main", port, true),
            listener("nocrl", nocrl_port, false),
            q(&ca)
        );
        std::fs::write(&config, toml).unwrap();
        let gw = GatewayProcess::start(&bin(), &config, SocketAddr::from(([127, 0, 0, 1], port)));
        assert!(portcullis_testkit::wait_for_port(SocketAddr::from((
            [127, 0, 0, 1],
            nocrl_port
        ))));
        Env {
            root: ca.join("root.crt"),
            tmp,
            ca,
            certs,
            chain,
            port,
            nocrl_port,
            _gw: gw,
        }
    }

    fn url(&self, path: &str) -> String {
        format!("https://127.0.0.1:{}{path}", self.port)
    }

    fn p(&self, name: &str) -> PathBuf {
        self.tmp.path().join(name)
    }

    /// `curl` trusting the CA; returns (HTTP status or 0 when the transfer failed,
    /// content type, body file contents, curl output).
    fn curl(&self, args: &[&str]) -> (u16, String, Vec<u8>, Out) {
        let body = self.p(&format!("body-{}", rand_suffix()));
        let mut c = Command::new("curl");
        c.args([
            "-sS",
            "--max-time",
            "15",
            "--cacert",
            s(&self.root),
            "-o",
            s(&body),
            "-w",
            "%{http_code} %{content_type}",
        ])
        .args(args);
        let out = run_cmd(&mut c);
        let mut parts = out.stdout.splitn(2, ' ');
        let status = parts.next().unwrap_or("0").parse().unwrap_or(0);
        let ctype = parts.next().unwrap_or("").to_string();
        let data = std::fs::read(&body).unwrap_or_default();
        let _ = std::fs::remove_file(&body);
        (status, ctype, data, out)
    }

    /// A fresh P-256 key and CSR made by openssl; returns (key path, csr path).
    fn csr(&self, stem: &str) -> (PathBuf, PathBuf) {
        let key = self.p(&format!("{stem}.key"));
        let csr = self.p(&format!("{stem}.csr"));
        openssl(&[
            "req",
            "-new",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-nodes",
            "-keyout",
            s(&key),
            "-out",
            s(&csr),
            "-subj",
            "/CN=from-the-csr",
        ])
        .expect_ok("openssl req");
        (key, csr)
    }

    fn token(&self, name: &str, ttl: &str) -> String {
        pc(&["token", "create", name, "--ttl", ttl, "--dir", s(&self.ca)])
            .expect_ok("token create")
            .stdout
            .trim()
            .to_string()
    }

    fn issue_client(&self, name: &str, extra: &[&str]) -> String {
        let mut args = vec![
            "cert",
            "issue",
            "client",
            name,
            "--dir",
            s(&self.ca),
            "--out",
            s(&self.certs),
        ];
        args.extend_from_slice(extra);
        issued_serial(&pc(&args).expect_ok("cert issue client"))
    }

    /// `portcullis agent … --once` plus `extra`, with `--url` at `port`.
    fn agent(&self, stem: &str, port: u16, extra: &[&str]) -> Out {
        let url = format!("https://127.0.0.1:{port}");
        let cert = self.certs.join(format!("{stem}.crt"));
        let key = self.certs.join(format!("{stem}.key"));
        let mut args = vec![
            "agent",
            "--cert",
            s(&cert),
            "--key",
            s(&key),
            "--ca",
            s(&self.root),
            "--url",
            &url,
            "--once",
        ];
        args.extend_from_slice(extra);
        run_cmd(&mut pc_cmd(&args))
    }
}

fn rand_suffix() -> String {
    use std::sync::atomic::{AtomicU64, Ordering};
    static N: AtomicU64 = AtomicU64::new(0);
    format!(
        "{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    )
}

fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

fn json(body: &[u8]) -> serde_json::Value {
    serde_json::from_slice(body)
        .unwrap_or_else(|e| panic!("not JSON ({e}): {}", String::from_utf8_lossy(body)))
}

fn record(ca: &Path, serial: &str) -> serde_json::Value {
    serde_json::from_str(
        &pc(&["cert", "show", serial, "--dir", s(ca), "--json"])
            .expect_ok("cert show")
            .stdout,
    )
    .unwrap()
}

/// Polls (up to 15 s) until a TLS handshake with this client certificate fails on `port`;
/// the gateway reloads the CRL file when it changes. Returns the last curl output.
fn wait_until_refused(env: &Env, port: u16, cert: &Path, key: &Path) -> Out {
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let (status, _, _, out) = env.curl(&[
            "--cert",
            s(cert),
            "--key",
            s(key),
            &format!("https://127.0.0.1:{port}/pki/ca.crt"),
        ]);
        if status == 0 || Instant::now() > deadline {
            return out;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn crl_and_ocsp_through_the_gateway() {
    let env = Env::start();
    let good = env.issue_client("alice", &[]);
    let bad = env.issue_client("mallory", &[]);
    pc(&[
        "cert",
        "revoke",
        &bad,
        "--reason",
        "keyCompromise",
        "--dir",
        s(&env.ca),
    ])
    .expect_ok("revoke");

    // The CA chain.
    let (status, _, body, out) = env.curl(&[&env.url("/pki/ca.crt")]);
    assert_eq!(status, 200, "{out:#?}");
    assert_eq!(
        String::from_utf8_lossy(&body)
            .matches("BEGIN CERTIFICATE")
            .count(),
        2
    );

    // The CRL: DER, application/pkix-crl, signed by the CA, listing mallory only.
    let (status, ctype, der, out) = env.curl(&[&env.url("/pki/crl")]);
    assert_eq!(status, 200, "{out:#?}");
    assert_eq!(ctype, "application/pkix-crl");
    let crl_file = env.p("served.crl");
    std::fs::write(&crl_file, &der).unwrap();
    let crl = openssl(&[
        "crl",
        "-inform",
        "DER",
        "-in",
        s(&crl_file),
        "-CAfile",
        s(&env.chain),
        "-noout",
        "-text",
    ])
    .expect_ok("openssl crl -CAfile on the served CRL");
    assert!(
        crl.stderr.contains("verify OK") || crl.stdout.contains("verify OK"),
        "{crl:#?}"
    );
    assert!(
        crl.stdout.contains(&bad.to_ascii_uppercase()),
        "{}",
        crl.stdout
    );
    assert!(!crl.stdout.contains(&good.to_ascii_uppercase()));

    // OCSP POST, by openssl's own client over HTTPS: good, revoked, unknown.
    let unknown = "0x0badc0ffee0ddf00d";
    let reqfile = env.p("ocsp.req");
    let ocsp = openssl(&[
        "ocsp",
        "-issuer",
        s(&env.ca.join("intermediate.crt")),
        "-cert",
        s(&env.certs.join("alice.crt")),
        "-cert",
        s(&env.certs.join("mallory.crt")),
        "-serial",
        unknown,
        "-url",
        &env.url("/pki/ocsp"),
        "-CAfile",
        s(&env.chain),
        "-reqout",
        s(&reqfile),
    ])
    .expect_ok("openssl ocsp -url https://…/pki/ocsp");
    assert!(ocsp.stderr.contains("Response verify OK"), "{ocsp:#?}");
    assert!(ocsp.stdout.contains("alice.crt: good"), "{ocsp:#?}");
    assert!(ocsp.stdout.contains("mallory.crt: revoked"), "{ocsp:#?}");
    assert!(ocsp.stdout.contains("Reason: keyCompromise"), "{ocsp:#?}");
    assert!(
        ocsp.stdout.contains(&format!("{unknown}: unknown")),
        "{ocsp:#?}"
    );

    // OCSP GET (RFC 6960 A.1): the same request, base64 and percent-encoded in the path.
    let req = std::fs::read(&reqfile).unwrap();
    let b64 = base64::engine::general_purpose::STANDARD.encode(&req);
    let enc = b64
        .replace('+', "%2B")
        .replace('/', "%2F")
        .replace('=', "%3D");
    let (status, ctype, resp, out) = env.curl(&[&env.url(&format!("/pki/ocsp/{enc}"))]);
    assert_eq!(status, 200, "{out:#?}");
    assert_eq!(ctype, "application/ocsp-response");
    let respfile = env.p("ocsp.resp");
    std::fs::write(&respfile, &resp).unwrap();
    let check = openssl(&[
        "ocsp",
        "-respin",
        s(&respfile),
        "-CAfile",
        s(&env.chain),
        "-issuer",
        s(&env.ca.join("intermediate.crt")),
        "-cert",
        s(&env.certs.join("alice.crt")),
        "-cert",
        s(&env.certs.join("mallory.crt")),
        "-serial",
        unknown,
        "-no_nonce",
    ])
    .expect_ok("openssl ocsp -respin on the GET answer");
    assert!(check.stderr.contains("Response verify OK"), "{check:#?}");
    for needle in [
        "alice.crt: good",
        "mallory.crt: revoked",
        &format!("{unknown}: unknown"),
    ] {
        assert!(
            check.stdout.contains(needle),
            "{needle:?} missing: {check:#?}"
        );
    }

    // Garbage is answered with an OCSP error, not a crash.
    let (status, _, resp, _) = env.curl(&[
        "--data-binary",
        "not der",
        "-H",
        "Content-Type: application/ocsp-request",
        &env.url("/pki/ocsp"),
    ]);
    assert_eq!(status, 200);
    std::fs::write(&respfile, &resp).unwrap();
    let text = openssl(&["ocsp", "-respin", s(&respfile), "-resp_text", "-noverify"]);
    assert!(
        format!("{}{}", text.stdout, text.stderr).contains("malformedrequest"),
        "{text:#?}"
    );
}

#[test]
fn enrollment_with_a_token() {
    let env = Env::start();
    let token = env.token("svc-orders", "10m");
    let (key, csr) = env.csr("orders");
    let enroll = env.url("/pki/enroll");
    let auth = format!("Authorization: Bearer {token}");

    // A bad CSR is refused before the token is burned.
    let (status, _, body, _) = env.curl(&["-H", &auth, "--data-binary", "not a csr", &enroll]);
    assert_eq!(status, 400, "{}", String::from_utf8_lossy(&body));

    let csr_arg = format!("@{}", s(&csr));
    let (status, ctype, chain, out) = env.curl(&["-H", &auth, "--data-binary", &csr_arg, &enroll]);
    assert_eq!(status, 200, "{out:#?} {}", String::from_utf8_lossy(&chain));
    assert_eq!(ctype, "application/x-pem-file");
    let crt = env.p("orders.crt");
    std::fs::write(&crt, &chain).unwrap();
    openssl_verify(&env.ca, &crt, "sslclient").expect_ok("openssl verify the enrolled certificate");
    let info = cert_info(&crt);
    assert_eq!(
        info.subject_cn, "svc-orders",
        "the token names the client, not the CSR"
    );
    assert_eq!(
        openssl(&["x509", "-in", s(&crt), "-noout", "-pubkey"]).stdout,
        openssl(&["pkey", "-in", s(&key), "-pubout"]).stdout,
        "the certificate carries the client's own key"
    );
    let rec = record(&env.ca, &info.serial);
    assert_eq!(rec["from_csr"], true);

    // Reuse refused.
    let (status, _, body, _) = env.curl(&["-H", &auth, "--data-binary", &csr_arg, &enroll]);
    assert_eq!(status, 401);
    assert_eq!(json(&body)["error"], "token_refused");
    // No token, unknown token.
    let (status, _, body, _) = env.curl(&["--data-binary", &csr_arg, &enroll]);
    assert_eq!(
        (status, json(&body)["error"].clone()),
        (401, "token_required".into())
    );
    let (status, _, _, _) = env.curl(&[
        "-H",
        "Authorization: Bearer pct_nope",
        "--data-binary",
        &csr_arg,
        &enroll,
    ]);
    assert_eq!(status, 401);

    // Expired refused: a one-second token, used after it expired.
    let short = env.token("svc-late", "1s");
    let created = now();
    while now() < created + 2 {
        std::thread::sleep(Duration::from_millis(100));
    }
    let (status, _, body, _) = env.curl(&[
        "-H",
        &format!("Authorization: Bearer {short}"),
        "--data-binary",
        &csr_arg,
        &enroll,
    ]);
    assert_eq!(status, 401);
    assert_eq!(json(&body)["error"], "token_refused");
    let tokens = pc(&["token", "list", "--dir", s(&env.ca)])
        .expect_ok("token list")
        .stdout;
    assert!(
        tokens.contains("used") && tokens.contains("expired"),
        "{tokens}"
    );
}

#[test]
fn renewal_over_mutual_tls() {
    let env = Env::start();
    let old = env.issue_client("carol", &["--san", "carol.internal"]);
    let (ckey, ccrt) = (env.certs.join("carol.key"), env.certs.join("carol.crt"));
    let (new_key, csr) = env.csr("carol-next");
    let csr_arg = format!("@{}", s(&csr));
    let renew = env.url("/pki/renew");

    // Without a client certificate: 496.
    let (status, _, body, _) = env.curl(&["--data-binary", &csr_arg, &renew]);
    assert_eq!(status, 496, "{}", String::from_utf8_lossy(&body));

    let (status, _, chain, out) = env.curl(&[
        "--cert",
        s(&ccrt),
        "--key",
        s(&ckey),
        "--data-binary",
        &csr_arg,
        &renew,
    ]);
    assert_eq!(status, 200, "{out:#?} {}", String::from_utf8_lossy(&chain));
    let next = env.p("carol-next.crt");
    std::fs::write(&next, &chain).unwrap();
    openssl_verify(&env.ca, &next, "sslclient").expect_ok("verify the renewed certificate");
    let info = cert_info(&next);
    assert_eq!(
        info.subject_cn, "carol",
        "same identity, not the CSR's subject"
    );
    assert_ne!(info.serial, old);
    let rec = record(&env.ca, &info.serial);
    assert_eq!(rec["renewed_from"], old.as_str());
    assert_eq!(rec["sans"], serde_json::json!(["dns:carol.internal"]));
    assert_eq!(
        openssl(&["x509", "-in", s(&next), "-noout", "-pubkey"]).stdout,
        openssl(&["pkey", "-in", s(&new_key), "-pubout"]).stdout
    );

    // Revoked: the CRL listener refuses the handshake; the other one reaches the
    // endpoint, which refuses the renewal (the CA checks its own records).
    pc(&[
        "cert",
        "revoke",
        &old,
        "--reason",
        "superseded",
        "--dir",
        s(&env.ca),
    ])
    .expect_ok("revoke");
    let refused = wait_until_refused(&env, env.port, &ccrt, &ckey);
    assert!(
        !refused.ok(),
        "a revoked certificate still completes the handshake: {refused:#?}"
    );
    let url = format!("https://127.0.0.1:{}/pki/renew", env.nocrl_port);
    let (status, _, body, out) = env.curl(&[
        "--cert",
        s(&ccrt),
        "--key",
        s(&ckey),
        "--data-binary",
        &csr_arg,
        &url,
    ]);
    assert_eq!(status, 403, "{out:#?}");
    assert_eq!(json(&body)["error"], "renewal_refused");
    // The renewed certificate is unaffected.
    let (status, _, _, out) = env.curl(&[
        "--cert",
        s(&next),
        "--key",
        s(&new_key),
        &env.url("/pki/ca.crt"),
    ]);
    assert_eq!(status, 200, "{out:#?}");
}

#[test]
fn agent_enrolls_then_renews_a_two_minute_certificate() {
    let env = Env::start();

    // 1. Enrollment: no certificate yet, a token; the reload command runs once.
    let token = env.token("svc-agent", "10m");
    let reload_log = env.p("reload.log");
    let reload = format!("echo \"$PORTCULLIS_CERT\" >> {}", s(&reload_log));
    let out = env
        .agent(
            "svc",
            env.port,
            &["--token", &token, "--reload-cmd", &reload],
        )
        .expect_ok("agent enrolls");
    assert!(out.stderr.contains("enrolling with the token"), "{out:#?}");
    assert!(!out.stderr.contains(&token), "the token must not be logged");
    let (crt, key) = (env.certs.join("svc.crt"), env.certs.join("svc.key"));
    assert_eq!(mode(&key), 0o600);
    assert!(!env.certs.join("svc.key.pending").exists());
    openssl_verify(&env.ca, &crt, "sslclient").expect_ok("verify the agent's certificate");
    let enrolled = cert_info(&crt);
    assert_eq!(enrolled.subject_cn, "svc-agent");
    assert_eq!(record(&env.ca, &enrolled.serial)["from_csr"], true);
    assert_eq!(
        std::fs::read_to_string(&reload_log)
            .unwrap()
            .lines()
            .count(),
        1
    );

    // 2. Again: a 30-day certificate is not due; nothing changes, the token is not reused.
    let out = env
        .agent(
            "svc",
            env.port,
            &["--token", &token, "--reload-cmd", &reload],
        )
        .expect_ok("agent, not due");
    assert!(out.stderr.contains("renewal not due yet"), "{out:#?}");
    assert_eq!(cert_info(&crt).serial, enrolled.serial);
    assert_eq!(
        std::fs::read_to_string(&reload_log)
            .unwrap()
            .lines()
            .count(),
        1
    );

    // 3. A 2-minute certificate (test-only switch). Leaves are backdated one minute, so
    // its lifetime is 180 s and it was issued 60 s into it: at the default 2/3 (120 s)
    // renewal is not due yet; at 0.3 (54 s) it is due now. No waiting.
    let mut issue = pc_cmd(&[
        "cert",
        "issue",
        "client",
        "short",
        "--minutes",
        "2",
        "--dir",
        s(&env.ca),
        "--out",
        s(&env.certs),
    ]);
    issue.env("PORTCULLIS_TEST_SHORT_VALIDITY", "1");
    let short_serial =
        issued_serial(&run_cmd(&mut issue).expect_ok("issue a 2-minute certificate"));
    let (scrt, skey) = (env.certs.join("short.crt"), env.certs.join("short.key"));
    let first = cert_info(&scrt);
    assert_eq!(first.not_after - first.not_before, 180);
    let old_key = std::fs::read(&skey).unwrap();
    let out = env
        .agent("short", env.port, &[])
        .expect_ok("agent on a fresh 2-minute certificate");
    if now() < first.not_before + 110 {
        assert!(out.stderr.contains("renewal not due yet"), "{out:#?}");
        assert_eq!(cert_info(&scrt).serial, short_serial);
    }
    let out = env
        .agent("short", env.port, &["--renew-at-fraction", "0.3"])
        .expect_ok("agent renews");
    assert!(
        out.stderr.contains("renewing over mutual TLS")
            && out.stderr.contains("new certificate installed"),
        "{out:#?}"
    );
    let renewed = cert_info(&scrt);
    assert_ne!(renewed.serial, short_serial);
    assert_eq!(renewed.subject_cn, "short");
    assert_eq!(
        renewed.not_after - renewed.not_before,
        180,
        "renewal keeps the lifetime"
    );
    assert_eq!(
        record(&env.ca, &renewed.serial)["renewed_from"],
        short_serial.as_str()
    );
    let new_key = std::fs::read(&skey).unwrap();
    assert_ne!(new_key, old_key, "a renewal uses a new key");
    assert_eq!(mode(&skey), 0o600);
    assert_eq!(
        openssl(&["x509", "-in", s(&scrt), "-noout", "-pubkey"]).stdout,
        openssl(&["pkey", "-in", s(&skey), "-pubout"]).stdout,
        "the installed key belongs to the installed certificate"
    );
    openssl_verify(&env.ca, &scrt, "sslclient").expect_ok("verify the renewed certificate");

    // 4. A crash between writing the certificate and the key: KEY.pending holds the new
    // key, KEY still the old one. The next run finishes the installation.
    let pending = env.certs.join("short.key.pending");
    std::fs::write(&pending, &new_key).unwrap();
    std::fs::write(&skey, &old_key).unwrap();
    let out = env
        .agent("short", env.port, &[])
        .expect_ok("agent recovers an interrupted install");
    assert!(out.stderr.contains("interrupted installation"), "{out:#?}");
    assert_eq!(std::fs::read(&skey).unwrap(), new_key);
    assert!(!pending.exists());
    // A stale pending key (crash before the certificate was written) is removed.
    std::fs::write(&pending, &old_key).unwrap();
    env.agent("short", env.port, &[])
        .expect_ok("agent drops a stale pending key");
    assert!(!pending.exists());
    assert_eq!(std::fs::read(&skey).unwrap(), new_key);

    // 5. Revoked: the endpoint refuses (no-CRL listener), and so does the handshake
    // (CRL listener); the agent exits 1 and leaves the files alone.
    pc(&["cert", "revoke", &renewed.serial, "--dir", s(&env.ca)]).expect_ok("revoke");
    let out = env.agent("short", env.nocrl_port, &["--renew-at-fraction", "0.3"]);
    assert_eq!(out.code, Some(1), "{out:#?}");
    assert!(out.stderr.contains("renewal_refused"), "{out:#?}");
    let refused = wait_until_refused(&env, env.port, &scrt, &skey);
    assert!(!refused.ok(), "{refused:#?}");
    let out = env.agent("short", env.port, &["--renew-at-fraction", "0.3"]);
    assert_eq!(out.code, Some(1), "{out:#?}");
    assert!(out.stderr.contains("revoked"), "{out:#?}");
    assert_eq!(cert_info(&scrt).serial, renewed.serial);
    assert_eq!(std::fs::read(&skey).unwrap(), new_key);

    // 6. Refusals: a used token, no token, nothing listening, bad arguments.
    let out = env.agent("late", env.port, &["--token", &token]);
    assert_eq!(out.code, Some(1), "{out:#?}");
    assert!(out.stderr.contains("token_refused"), "{out:#?}");
    assert!(!env.certs.join("late.crt").exists() && !env.certs.join("late.key").exists());
    let out = env.agent("late", env.port, &[]);
    assert_eq!(out.code, Some(1), "{out:#?}");
    assert!(out.stderr.contains("no --token"), "{out:#?}");
    let fresh = env.token("svc-down", "10m");
    let token_file = env.p("token.txt");
    std::fs::write(&token_file, format!("{fresh}\n")).unwrap();
    let out = env.agent("down", free_port(), &["--token-file", s(&token_file)]);
    assert_eq!(out.code, Some(1), "{out:#?}");
    for bad in [
        vec!["--url", "http://127.0.0.1:1"],
        vec!["--renew-at-fraction", "1.5"],
        vec!["--max-backoff", "forever"],
    ] {
        let out = env.agent("svc", env.port, &bad);
        assert_eq!(out.code, Some(2), "{bad:?}: {out:#?}");
    }
    let out = run_cmd(&mut pc_cmd(&[
        "agent",
        "--cert",
        "x.crt",
        "--key",
        "x.key",
        "--ca",
        "/nonexistent/ca.pem",
        "--url",
        "https://127.0.0.1:1",
        "--once",
    ]));
    assert_eq!(out.code, Some(2), "{out:#?}");
    // The token that met a closed port is still unused: it enrolls when the gateway answers.
    env.agent("down", env.port, &["--token-file", s(&token_file)])
        .expect_ok("enroll after the outage");
    assert_eq!(
        cert_info(&env.certs.join("down.crt")).subject_cn,
        "svc-down"
    );
}

#[test]
fn agent_daemon_retries_then_stops_on_sigterm() {
    let env = Env::start();
    let dead = free_port();
    let token = env.token("svc-daemon", "10m");
    let stderr = env.p("agent.stderr");
    let mut child = pc_cmd(&[
        "agent",
        "--cert",
        s(&env.certs.join("d.crt")),
        "--key",
        s(&env.certs.join("d.key")),
        "--ca",
        s(&env.root),
        "--url",
        &format!("https://127.0.0.1:{dead}"),
        "--token",
        &token,
    ])
    .stderr(std::fs::File::create(&stderr).unwrap())
    .spawn()
    .expect("spawn agent");
    // Wait for the first failure to be logged with its retry delay.
    let deadline = Instant::now() + Duration::from_secs(20);
    while !std::fs::read_to_string(&stderr)
        .unwrap_or_default()
        .contains("retry_in_secs")
    {
        assert!(
            Instant::now() < deadline,
            "no retry logged: {}",
            std::fs::read_to_string(&stderr).unwrap_or_default()
        );
        assert!(
            child.try_wait().unwrap().is_none(),
            "the agent exited instead of retrying"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let _ = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status();
    let deadline = Instant::now() + Duration::from_secs(10);
    let status = loop {
        if let Some(st) = child.try_wait().unwrap() {
            break st;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("the agent did not stop on SIGTERM");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    assert!(status.success(), "SIGTERM is a clean stop: {status:?}");
    assert!(std::fs::read_to_string(&stderr)
        .unwrap()
        .contains("agent stopped"));
}
