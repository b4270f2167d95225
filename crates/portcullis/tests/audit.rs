//! The audit log through the real gateway: denials (401, 403, 496, 429) and
//! reloads (accepted and refused) become hash-chained JSON lines with request
//! ids; the chain continues across a reload and a restart; `portcullis audit
//! verify` says OK, then finds an edited and a deleted line in copies, and
//! the API key a client sent never reaches the file.

mod common;

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
