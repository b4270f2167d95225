//! Interop with the guide's own client snippets: Python `requests` with
//! `cert=(crt, key)` and `verify=ca`, and Node.js `https.request` with
//! cert/key/ca, against a listener with `client_auth = "required"`. Each
//! succeeds with a certificate (and the upstream sees the client's DN) and
//! fails cleanly without one (Python: requests.exceptions.SSLError; Node: a
//! TLS error event with an OpenSSL alert code, no response).

mod mtls_common;

use std::process::Command;

use mtls_common::*;
use portcullis_testkit::mtls::{Bed, ClientSpec, MtlsCa};

const PY: &str = r#"
import json, sys, requests
url, crt, key, ca = sys.argv[1:5]
try:
    r = requests.get(url, cert=(crt, key) if crt else None, verify=ca, timeout=10)
except requests.exceptions.SSLError as e:
    print("SSLERROR", e)
    sys.exit(3)
except Exception as e:
    print("OTHER", type(e).__name__, e)
    sys.exit(4)
dn = [v for k, v in r.json()["headers"] if k.lower() == "x-ssl-client-dn"]
print("STATUS", r.status_code, dn[0] if dn else "-")
"#;

const NODE: &str = r#"
const fs = require('fs');
const https = require('https');
const [url, crt, key, ca] = process.argv.slice(2);
const opts = { ca: fs.readFileSync(ca) };
if (crt) { opts.cert = fs.readFileSync(crt); opts.key = fs.readFileSync(key); }
const req = https.request(url, opts, (res) => {
  let body = '';
  res.on('data', (c) => body += c);
  res.on('end', () => {
    const dn = JSON.parse(body).headers.filter(([k]) => k.toLowerCase() === 'x-ssl-client-dn');
    console.log('STATUS', res.statusCode, dn.length ? dn[0][1] : '-');
    process.exit(0);
  });
});
req.on('error', (e) => { console.log('TLSERROR', e.code || '', e.message); process.exit(3); });
req.setTimeout(10000, () => { console.log('TIMEOUT'); process.exit(4); });
req.end();
"#;

fn setup() -> (
    Bed,
    portcullis_testkit::GatewayProcess,
    portcullis_testkit::mtls::ClientCert,
) {
    let bed = Bed::new();
    let ca = MtlsCa::new(&bed.dir.join("ca"), "Interop");
    let alice = ca.issue("alice", &ClientSpec::new("alice"));
    let listener = format!(
        "client_auth = \"required\"\nclient_ca = [\"{}\"]",
        ca.root_path().display()
    );
    let routes = "[[route]]\npath = \"/\"\nupstream = \"echo\"\nidentity_headers = [\"nginx\"]\n";
    let g = bed.start(&bin(), &listener, routes);
    (bed, g, alice)
}

fn run(cmd: &mut Command) -> (i32, String) {
    let out = cmd.output().expect("run client");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.code().unwrap_or(-1), text)
}

#[test]
fn python_requests_with_and_without_a_certificate() {
    let (bed, g, alice) = setup();
    let url = format!("https://localhost:{}/py", bed.port);
    let ca = bed.server_ca.to_str().unwrap();
    let (code, out) = run(Command::new("python3").args([
        "-c",
        PY,
        &url,
        alice.cert_path.to_str().unwrap(),
        alice.key_path.to_str().unwrap(),
        ca,
    ]));
    assert_eq!(code, 0, "{out}");
    assert!(
        out.contains("STATUS 200 CN=alice,O=Portcullis Test"),
        "{out}"
    );

    let before = handshake_failures(&g, "no_certificate").len();
    let (code, out) = run(Command::new("python3").args(["-c", PY, &url, "", "", ca]));
    assert_eq!(code, 3, "expected requests.exceptions.SSLError: {out}");
    assert!(out.contains("SSLERROR"), "{out}");
    expect_failure_logged(&g, "no_certificate", before);
}

#[test]
fn node_https_request_with_and_without_a_certificate() {
    let (bed, g, alice) = setup();
    let url = format!("https://localhost:{}/node", bed.port);
    let ca = bed.server_ca.to_str().unwrap();
    let script = bed.dir.join("client.js");
    std::fs::write(&script, NODE).unwrap();
    let script = script.to_str().unwrap();
    let (code, out) = run(Command::new("node").args([
        script,
        &url,
        alice.cert_path.to_str().unwrap(),
        alice.key_path.to_str().unwrap(),
        ca,
    ]));
    assert_eq!(code, 0, "{out}");
    assert!(
        out.contains("STATUS 200 CN=alice,O=Portcullis Test"),
        "{out}"
    );

    let before = handshake_failures(&g, "no_certificate").len();
    let (code, out) = run(Command::new("node").args([script, &url, "", "", ca]));
    assert_eq!(code, 3, "expected a TLS error event: {out}");
    assert!(
        out.contains("TLSERROR") && out.to_uppercase().contains("CERTIFICATE_REQUIRED"),
        "{out}"
    );
    expect_failure_logged(&g, "no_certificate", before);
}
