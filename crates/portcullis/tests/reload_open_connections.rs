//! A reload applies to connections that are already open: the next request
//! on the same HTTP/1.1 keep-alive connection is routed by the new config
//! (found by the soak, scripts/soak.sh: open connections kept the runtime of
//! their accept time, old routes and upstreams included, for their lifetime).

mod common;
use common::*;

use std::time::{Duration, Instant};

/// Two GETs on one keep-alive connection (python http.client), with the
/// config rewritten and SIGHUP sent in between; prints both statuses and
/// whether the socket was the same.
const CLIENT: &str = r#"
import http.client, ssl, sys, time
port, ca, flag = int(sys.argv[1]), sys.argv[2], sys.argv[3]
ctx = ssl.create_default_context(cafile=ca)
c = http.client.HTTPSConnection('localhost', port, context=ctx, timeout=10)
c.request('GET', '/old/x'); r = c.getresponse(); r.read(); first = r.status
sock = c.sock
open(flag, 'w').write('go')
deadline = time.time() + 20
while open(flag).read() != 'reloaded' and time.time() < deadline:
    time.sleep(0.05)
c.request('GET', '/old/x'); r = c.getresponse(); r.read(); second = r.status
print(first, second, 'same' if c.sock is sock else 'new')
"#;

#[test]
fn a_reload_applies_to_open_keep_alive_connections() {
    let env = env();
    let echo = free_port();
    let cfg = |path: &str| {
        env.config_with(&format!(
            "[[echo]]\naddress = \"127.0.0.1:{echo}\"\n\n[[upstream]]\nname = \"echo\"\nservers = [\"127.0.0.1:{echo}\"]\n\n\
             [[route]]\npath = \"{path}\"\nupstream = \"echo\"\n"
        ))
    };
    let gw = env.start(&cfg("/old/"));
    let flag = env.path().join("flag");
    std::fs::write(&flag, "").expect("flag");
    let port = env.https_port.to_string();
    let ca = env.ca_file().to_string_lossy().into_owned();
    let flag_s = flag.to_string_lossy().into_owned();
    let client = std::thread::spawn(move || python(CLIENT, &[&port, &ca, &flag_s]));

    let deadline = Instant::now() + Duration::from_secs(20);
    while std::fs::read_to_string(&flag).unwrap_or_default() != "go" {
        assert!(
            Instant::now() < deadline,
            "the client did not make its first request"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    // The route /old/ is gone after the reload.
    env.write("portcullis.toml", &cfg("/new/"));
    gw.signal("HUP");
    while !gw.stderr_text().contains("configuration reloaded") {
        assert!(Instant::now() < deadline, "no reload: {}", gw.stderr_text());
        std::thread::sleep(Duration::from_millis(20));
    }
    std::fs::write(&flag, "reloaded").expect("flag");

    let out = client.join().expect("client thread");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{text}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        text.trim(),
        "200 404 same",
        "the second request on the same connection must see the new routes"
    );
}
