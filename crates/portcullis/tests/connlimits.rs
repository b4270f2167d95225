//! Connection-level limits with real clients: the per-IP rate of new
//! connections (refused before the TLS handshake) and concurrent connections
//! per IP. A second client address on loopback (127.0.0.2) shows that other
//! clients are untouched.

mod common;

use common::*;

fn gateway(env: &TestEnv, limits: &str) -> GatewayProcess {
    let cfg = echo_config(env, "[[route]]\npath = \"/\"\nupstream = \"echo\"\n");
    env.start(&cfg.replace("[log]", &format!("[limits]\n{limits}\n[log]")))
}

fn status_from(env: &TestEnv, source: &str) -> Result<u16, String> {
    Curl::https(env.https_port, "/", env.ca_file())
        .args(["--interface", source, "--max-time", "5"])
        .try_run()
        .map(|r| r.status)
        .map_err(|e| format!("{e:?}"))
}

#[test]
fn a_connection_flood_from_one_ip_is_cut_before_the_handshake_and_others_still_connect() {
    let env = env();
    let gw = gateway(
        &env,
        "connection_rate_per_ip = \"1r/m\"\nconnection_burst_per_ip = 2\n",
    );
    // One plus a burst of two per minute (the start-up probe used one of them):
    // the first connections pass, then the flood is cut.
    assert_eq!(status_from(&env, "127.0.0.1"), Ok(200));
    let results: Vec<bool> = (0..6)
        .map(|_| status_from(&env, "127.0.0.1").is_ok())
        .collect();
    let passed = results.iter().filter(|ok| **ok).count();
    assert!(
        passed <= 1,
        "too many connections from one IP got through: {results:?}"
    );
    assert!(!results[5], "the flood was not cut: {results:?}");
    assert_eq!(
        status_from(&env, "127.0.0.2"),
        Ok(200),
        "another IP is not affected"
    );
    assert!(
        gw.stderr_text()
            .contains("new-connection rate per IP exceeded"),
        "{}",
        gw.stderr_text()
    );
}

const HOLD: &str = r#"
import socket, ssl, sys, time
port, n = int(sys.argv[1]), int(sys.argv[2])
ctx = ssl.create_default_context(); ctx.check_hostname = False; ctx.verify_mode = ssl.CERT_NONE
ctx.set_alpn_protocols(['http/1.1'])
held, results = [], []
for i in range(n):
    try:
        s = ctx.wrap_socket(socket.create_connection(('127.0.0.1', port), timeout=5), server_hostname='localhost')
        s.sendall(b"GET / HTTP/1.1\r\nHost: localhost\r\n\r\n")
        r = s.recv(65536)
        results.append(r.split(b"\r\n")[0].decode() if r else "CLOSED")
        held.append(s)
    except (OSError, ssl.SSLError) as e:
        results.append("REFUSED")
print(",".join(results))
"#;

#[test]
fn concurrent_connections_per_ip_are_capped() {
    let env = env();
    let _gw = gateway(&env, "max_connections_per_ip = 2\n");
    let out = python(HOLD, &[&env.https_port.to_string(), "3"]);
    let text = String::from_utf8_lossy(&out.stdout).trim().to_string();
    let parts: Vec<&str> = text.split(',').collect();
    assert_eq!(parts.len(), 3, "{text}");
    assert!(
        parts[0].starts_with("HTTP/1.1 200") && parts[1].starts_with("HTTP/1.1 200"),
        "{text}"
    );
    assert!(
        parts[2] == "REFUSED" || parts[2] == "CLOSED",
        "a third concurrent connection was served: {text}"
    );
    // Once they are closed (the script ended), the IP may connect again.
    let ok = (0..50).any(|_| {
        std::thread::sleep(std::time::Duration::from_millis(100));
        status_from(&env, "127.0.0.1") == Ok(200)
    });
    assert!(
        ok,
        "the IP could not connect again after its connections closed"
    );
}
