//! The audit log through the real gateway: denials (401, 403, 496, 429) and
//! reloads (accepted and refused) become hash-chained JSON lines with request
//! ids; the chain continues across a reload and a restart; `portcullis audit
//! verify` says OK, then finds an edited and a deleted line in copies, and
//! the API key a client sent never reaches the file. Certificates issued,
//! renewed and refused at the gateway's PKI endpoints, and revoked with
//! `portcullis cert revoke --audit-log` while the gateway writes the same
//! file, join one chain.

mod common;
mod pki_support;

use std::path::Path;
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use common::*;

/// A key and its stored form, made by the CLI as an operator would.
fn new_key(name: &str) -> (String, String) {
    let out = Command::new(BIN)
        .args(["apikey", "create", name])
        .output()
        .unwrap();
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let key = text
        .lines()
        .map(str::trim)
        .find(|l| l.starts_with("pk_"))
        .unwrap()
        .to_string();
    let hash = text
        .split("hash = \"")
        .nth(1)
        .unwrap()
        .split('"')
        .next()
        .unwrap()
        .to_string();
    (key, hash)
}

fn records(path: &Path) -> Vec<serde_json::Value> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect()
}

/// Waits (up to 10 s) until the file holds `n` records; returns them.
fn wait_records(path: &Path, n: usize) -> Vec<serde_json::Value> {
    let until = Instant::now() + Duration::from_secs(10);
    loop {
        let r = records(path);
        if r.len() >= n || Instant::now() > until {
            return r;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn verify(file: &Path) -> Output {
    Command::new(BIN)
        .args(["audit", "verify"])
        .arg(file)
        .output()
        .unwrap()
}

fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

fn find<'a>(recs: &'a [serde_json::Value], request_id: &str) -> &'a serde_json::Value {
    recs.iter()
        .find(|r| r["request_id"] == request_id)
        .unwrap_or_else(|| panic!("no record for {request_id}: {recs:#?}"))
}

#[test]
fn denials_and_reloads_are_chained_and_verify_finds_tampering() {
    let env = env();
    let clients = TestCa::new(&env.path().join("clients"), "Clients");
    let alice = clients.issue("alice", &LeafSpec::client("alice"));
    let mallory = clients.issue("mallory", &LeafSpec::client("mallory"));
    let (key, hash) = new_key("svc");
    let listener_extra = format!(
        "client_auth = \"optional\"\nclient_ca = [{:?}]",
        clients.root_path.display().to_string()
    );
    let audit = env.path().join("audit.log");
    let cfg = format!(
        "[log]\naccess_log = \"off\"\n\n[audit]\npath = \"audit.log\"\n\n{}[[echo]]\naddress = \"127.0.0.1:{echo}\"\n[[upstream]]\nname = \"echo\"\nservers = [\"127.0.0.1:{echo}\"]\n\n\
         [[consumer]]\nname = \"alice\"\ncert_subjects = [\"CN=alice,*\"]\n\n[[consumer]]\nname = \"svc\"\napi_keys = [{{ hash = \"{hash}\" }}]\n\n\
         [[rate_limit]]\nname = \"tight\"\nrate = \"1r/m\"\n\n\
         [[route]]\nname = \"keyed\"\npath = \"/keyed\"\nupstream = \"echo\"\nauth = [\"apikey\"]\n\n\
         [[route]]\nname = \"alice-only\"\npath = \"/alice\"\nupstream = \"echo\"\nauth = [\"mtls\"]\nconsumers = [\"alice\"]\n\n\
         [[route]]\nname = \"certs\"\npath = \"/certs\"\nupstream = \"echo\"\nclient_cert = \"required\"\n\n\
         [[route]]\nname = \"limited\"\npath = \"/limited\"\nupstream = \"echo\"\nrate_limits = [\"tight\"]\n",
        env.listener_toml(&listener_extra),
        echo = free_port()
    );
    let mut gw = env.start(&cfg);
    let get = |path: &str, id: &str| {
        Curl::https(env.https_port, path, env.ca_file()).header(&format!("X-Request-Id: {id}"))
    };
    // 401: no key, then a wrong key (which must not be written down).
    assert_eq!(get("/keyed/x", "req-nokey").run().status, 401);
    let wrong = format!("{key}wrong");
    let r = get("/keyed/x", "req-badkey")
        .header(&format!("X-API-Key: {wrong}"))
        .run();
    assert_eq!(r.status, 401);
    // Allowed requests are not audited.
    let r = get("/keyed/x", "req-goodkey")
        .header(&format!("X-API-Key: {key}"))
        .run();
    assert_eq!(r.status, 200);
    // 403: a verified certificate whose consumer is not allowed; alice is.
    let r = get("/alice", "req-mallory")
        .client_cert(&mallory.cert_path, &mallory.key_path)
        .run();
    assert_eq!(r.status, 403);
    let r = get("/alice", "req-alice")
        .client_cert(&alice.cert_path, &alice.key_path)
        .run();
    assert_eq!(r.status, 200);
    // 496: the route needs a certificate.
    assert_eq!(get("/certs", "req-nocert").run().status, 496);
    // 429: one request a minute.
    assert_eq!(get("/limited", "req-limit-1").run().status, 200);
    assert_eq!(get("/limited", "req-limit-2").run().status, 429);

    let recs = wait_records(&audit, 5);
    assert_eq!(recs.len(), 5, "{recs:#?}");
    let r = find(&recs, "req-nokey");
    assert_eq!(r["event"], "auth_failure");
    assert_eq!(r["route"], "keyed");
    assert_eq!(r["reason"], "apikey: missing");
    assert!(r["peer"].as_str().unwrap().starts_with("127.0.0.1:"), "{r}");
    let r = find(&recs, "req-badkey");
    assert_eq!(r["event"], "auth_failure");
    let r = find(&recs, "req-mallory");
    assert_eq!(r["event"], "authz_denied");
    assert_eq!(r["route"], "alice-only");
    assert!(
        r["identity"].as_str().unwrap().contains("CN=mallory"),
        "{r}"
    );
    let r = find(&recs, "req-nocert");
    assert_eq!(r["event"], "cert_refused");
    assert_eq!(r["route"], "certs");
    assert_eq!(r["reason"], "no client certificate");
    let r = find(&recs, "req-limit-2");
    assert_eq!(r["event"], "rate_limited");
    assert_eq!(r["reason"], "zone \"tight\"");
    for (i, r) in recs.iter().enumerate() {
        assert_eq!(r["seq"], i as u64 + 1);
    }
    let raw = std::fs::read_to_string(&audit).unwrap();
    assert!(!raw.contains(&key), "an API key reached the audit log");
    for id in ["req-goodkey", "req-alice", "req-limit-1"] {
        assert!(!raw.contains(id), "an allowed request was audited: {id}");
    }

    // A reload that keeps the path continues the chain; a broken config is refused and recorded.
    let cfg_path = env.path().join("portcullis.toml");
    std::fs::write(&cfg_path, cfg.replace("1r/m", "2r/m")).unwrap();
    gw.signal("HUP");
    let recs = wait_records(&audit, 6);
    assert_eq!(recs[5]["event"], "reload", "{recs:#?}");
    assert_eq!(recs[5]["detail"]["trigger"], "sighup");
    std::fs::write(&cfg_path, cfg.replace("rate = \"1r/m\"", "rate = \"fast\"")).unwrap();
    gw.signal("HUP");
    let recs = wait_records(&audit, 7);
    assert_eq!(recs[6]["event"], "reload_failed", "{recs:#?}");
    assert!(
        recs[6]["reason"]
            .as_str()
            .unwrap()
            .contains("portcullis.toml:"),
        "{}",
        recs[6]
    );
    // The running config still audits.
    assert_eq!(get("/keyed/x", "req-after-reload").run().status, 401);
    wait_records(&audit, 8);
    gw.signal("TERM");
    assert_eq!(gw.wait_exit(Duration::from_secs(10)), Some(0));
    drop(gw);

    // A restart continues the same file's chain.
    std::fs::write(&cfg_path, &cfg).unwrap();
    let gw = env.start(&cfg);
    assert_eq!(get("/keyed/x", "req-after-restart").run().status, 401);
    let recs = wait_records(&audit, 9);
    assert_eq!(recs.len(), 9, "{recs:#?}");
    assert_eq!(recs[8]["request_id"], "req-after-restart");
    assert_eq!(recs[8]["seq"], 9);
    drop(gw);

    let out = verify(&audit);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert!(
        text(&out).contains("OK: 9 records, chain intact"),
        "{}",
        text(&out)
    );

    let lines: Vec<String> = std::fs::read_to_string(&audit)
        .unwrap()
        .lines()
        .map(str::to_owned)
        .collect();
    // Line 3 edited (a denial turned into something milder).
    let mut edited = lines.clone();
    edited[2] = edited[2].replace("authz_denied", "auth_failure");
    assert_ne!(edited[2], lines[2]);
    let copy = env.path().join("edited.log");
    std::fs::write(&copy, edited.join("\n") + "\n").unwrap();
    let out = verify(&copy);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(text(&out).contains("line 3 was edited"), "{}", text(&out));
    // Line 5 deleted.
    let mut deleted = lines.clone();
    deleted.remove(4);
    let copy = env.path().join("deleted.log");
    std::fs::write(&copy, deleted.join("\n") + "\n").unwrap();
    let out = verify(&copy);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let t = text(&out);
    assert!(t.contains("line 5:") && t.contains("deleted"), "{t}");
    // The last line cut short.
    let all = lines.join("\n") + "\n";
    let copy = env.path().join("cut.log");
    std::fs::write(&copy, &all[..all.len() - 20]).unwrap();
    let out = verify(&copy);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(text(&out).contains("line 9: truncated"), "{}", text(&out));
    // No such file.
    let out = verify(&env.path().join("nope.log"));
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(text(&out).contains("nope.log"), "{}", text(&out));
}

#[test]
fn audit_config_errors_name_the_line() {
    let env = env();
    let cfg = echo_config(
        &env,
        "[audit]\npath = \"no/such/dir/audit.log\"\n\n[[route]]\npath = \"/\"\nupstream = \"echo\"\n",
    );
    let out = env.check("missing-dir.toml", &cfg);
    assert_eq!(out.status.code(), Some(2));
    let t = text(&out);
    assert!(
        t.contains("missing-dir.toml:") && t.contains("audit.path") && t.contains("does not exist"),
        "{t}"
    );
    // A file whose last line was cut: a new record could not chain onto it.
    std::fs::write(env.path().join("cut.log"), "{\"seq\":1,\"prev\":\"00").unwrap();
    let cfg = cfg.replace("no/such/dir/audit.log", "cut.log");
    let out = env.check("cut.toml", &cfg);
    assert_eq!(out.status.code(), Some(2));
    let t = text(&out);
    assert!(
        t.contains("audit.path") && t.contains("incomplete") && t.contains("audit verify"),
        "{t}"
    );
}

/// `curl` POSTing `data` (`@file`) with extra args; returns the HTTP status (0: failed).
fn post(root: &Path, url: &str, data: &str, extra: &[&str]) -> u16 {
    let out = Command::new("curl")
        .args(["-sS", "--max-time", "15", "--cacert"])
        .arg(root)
        .args([
            "-o",
            "/dev/null",
            "-w",
            "%{http_code}",
            "--data-binary",
            data,
        ])
        .args(extra)
        .arg(url)
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout)
        .trim()
        .parse()
        .unwrap_or(0)
}

#[test]
fn pki_issue_renew_and_cli_revoke_join_one_chain() {
    use pki_support::{init_ca, issued_serial, openssl, pc, s};
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
    let port = free_port();
    let audit = tmp.path().join("audit.log");
    let root = ca.join("root.crt");
    let config = tmp.path().join("gateway.toml");
    std::fs::write(
        &config,
        format!(
            "[log]\naccess_log = \"off\"\n\n[audit]\npath = \"audit.log\"\n\n\
             [[listener]]\naddress = \"127.0.0.1:{port}\"\nclient_auth = \"optional\"\nclient_ca = [{root:?}]\n\
             [[listener.certificate]]\ncert = {cert:?}\nkey = {key:?}\n\n[pki]\nca_dir = {ca:?}\n",
            root = s(&root),
            cert = s(&certs.join("localhost.crt")),
            key = s(&certs.join("localhost.key")),
            ca = s(&ca),
        ),
    )
    .unwrap();
    let gw = GatewayProcess::start(BIN.as_ref(), &config, ([127, 0, 0, 1], port).into());
    let url = |p: &str| format!("https://127.0.0.1:{port}{p}");
    let csr = |stem: &str| {
        let csr = tmp.path().join(format!("{stem}.csr"));
        let key = tmp.path().join(format!("{stem}.key"));
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
            "/CN=ignored",
        ])
        .expect_ok("openssl req");
        format!("@{}", s(&csr))
    };

    // Enrollment: issued once, then the used token refused.
    let token = pc(&[
        "token",
        "create",
        "svc-orders",
        "--ttl",
        "10m",
        "--dir",
        s(&ca),
    ])
    .expect_ok("token create")
    .stdout
    .trim()
    .to_string();
    let auth = format!("Authorization: Bearer {token}");
    let data = csr("orders");
    let enroll = url("/pki/enroll");
    let with_id = |id: &str| format!("X-Request-Id: {id}");
    let h = |a: &str, b: &str| [("-H", a.to_string()), ("-H", b.to_string())];
    let args = |hs: &[(&str, String)]| -> Vec<String> {
        hs.iter()
            .flat_map(|(f, v)| [f.to_string(), v.clone()])
            .collect()
    };
    let run = |data: &str, u: &str, a: Vec<String>| {
        let refs: Vec<&str> = a.iter().map(String::as_str).collect();
        post(&root, u, data, &refs)
    };
    assert_eq!(
        run(&data, &enroll, args(&h(&auth, &with_id("enroll-1")))),
        200
    );
    assert_eq!(
        run(&data, &enroll, args(&h(&auth, &with_id("enroll-2")))),
        401
    );

    // Renewal over mutual TLS.
    let old = issued_serial(
        &pc(&[
            "cert",
            "issue",
            "client",
            "carol",
            "--dir",
            s(&ca),
            "--out",
            s(&certs),
        ])
        .expect_ok("cert issue client"),
    );
    let (ccrt, ckey) = (certs.join("carol.crt"), certs.join("carol.key"));
    let mut a = args(&[("-H", with_id("renew-1"))]);
    a.extend(["--cert", s(&ccrt), "--key", s(&ckey)].map(String::from));
    assert_eq!(run(&csr("carol-next"), &url("/pki/renew"), a), 200);

    // Revoked from the command line into the file the gateway is writing.
    let cli = pc(&[
        "cert",
        "revoke",
        &old,
        "--reason",
        "keyCompromise",
        "--dir",
        s(&ca),
        "--audit-log",
        s(&audit),
    ])
    .expect_ok("cert revoke --audit-log");
    assert!(cli.stdout.contains("Revoked"), "{cli:#?}");
    // The gateway chains its next record onto the CLI's.
    assert_eq!(
        run(
            &csr("x"),
            &url("/pki/renew"),
            args(&[("-H", with_id("renew-2"))])
        ),
        496
    );

    let recs = wait_records(&audit, 5);
    assert_eq!(recs.len(), 5, "{recs:#?}");
    let r = find(&recs, "enroll-1");
    assert_eq!(r["event"], "cert_issued");
    assert!(
        r["identity"].as_str().unwrap().contains("CN=svc-orders"),
        "{r}"
    );
    assert_eq!(r["detail"]["serial"].as_str().unwrap().len(), 32, "{r}");
    let r = find(&recs, "enroll-2");
    assert_eq!(r["event"], "cert_refused");
    assert!(
        r["reason"].as_str().unwrap().contains("token already used"),
        "{r}"
    );
    let r = find(&recs, "renew-1");
    assert_eq!(r["event"], "cert_renewed");
    assert!(r["identity"].as_str().unwrap().contains("CN=carol"), "{r}");
    let old_serial = r["detail"]["old_serial"].as_str().unwrap();
    assert_eq!(
        old_serial.trim_start_matches('0'),
        old.trim_start_matches('0'),
        "{r}"
    );
    let r = &recs[3];
    assert_eq!(r["event"], "cert_revoked", "{recs:#?}");
    assert_eq!(r["identity"], "carol");
    assert_eq!(r["reason"], "keyCompromise");
    assert_eq!(r["detail"]["serial"], old.as_str());
    assert_eq!(find(&recs, "renew-2")["event"], "cert_refused");
    let raw = std::fs::read_to_string(&audit).unwrap();
    assert!(
        !raw.contains(&token),
        "an enrollment token reached the audit log"
    );
    drop(gw);
    let out = verify(&audit);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert!(
        text(&out).contains("OK: 5 records, chain intact"),
        "{}",
        text(&out)
    );
}
