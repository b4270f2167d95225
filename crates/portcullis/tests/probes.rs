//! The hostile clients of ../shared/probes against a real gateway: the
//! HTTP/1.1 desync corpus with the strict recording backend as upstream, and
//! the HTTP/2 abuse probe. Skipped with a message when ../shared is missing.

mod common;
use common::*;

use std::process::{Child, Command, Stdio};

struct Backend(Child);
impl Drop for Backend {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn probes_dir() -> Option<std::path::PathBuf> {
    let d = shared_dir(env!("CARGO_MANIFEST_DIR"))?.join("probes");
    d.join("http1_desync_probe.py").exists().then_some(d)
}

/// Cases that are valid (or tolerated) requests and are forwarded as exactly one
/// request: a GET with a body; `Transfer-Encoding:<TAB>chunked` (TAB is legal
/// whitespace); an Upgrade the backend declines (the bytes after it are parsed
/// by the gateway as a new request, answered 421 there, never tunnelled); bare
/// LF line ends (tolerated by hyper as by nginx; re-serialised with CRLF).
const VALID_CASES: [&str; 4] = [
    "get-with-body",
    "te-tab",
    "upgrade-smuggle",
    "bare-lf-headers",
];

/// Cases that are forwarded by design; none (CL+TE is refused by the read guard, sniff.rs).
const KNOWN_FORWARDED: [&str; 0] = [];

#[test]
fn http1_desync_probe_finds_no_desync_and_nothing_malformed_reaches_the_backend() {
    let Some(probes) = probes_dir() else {
        eprintln!("SKIPPED: ../shared/probes not found next to the repository");
        return;
    };
    let env = env();
    let backend_port = free_port();
    let blog = env.path().join("backend.log");
    std::fs::write(&blog, "").unwrap();
    let _backend = Backend(
        Command::new("python3")
            .arg(probes.join("recording_backend.py"))
            .arg(backend_port.to_string())
            .arg(&blog)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start recording backend"),
    );
    assert!(wait_for_port(([127, 0, 0, 1], backend_port).into()));
    let _gw = env.start(&env.config_with(&format!(
        "[[upstream]]\nname = \"rec\"\nservers = [\"127.0.0.1:{backend_port}\"]\n\n[[route]]\npath = \"/\"\nupstream = \"rec\"\n"
    )));
    let out = run(Command::new("python3")
        .arg(probes.join("http1_desync_probe.py"))
        .arg("localhost")
        .arg(env.https_port.to_string())
        .arg("--tls")
        .arg(&blog));
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "{text}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    eprintln!("{text}");
    assert!(!text.contains("DESYNC?"), "desync suspects:\n{text}");
    assert!(text.contains("desync-suspect=0"), "{text}");
    let mut refused = Vec::new();
    for line in text.lines().filter(|l| l.contains(" front=")) {
        let name = line.split_whitespace().next().unwrap_or("");
        let front = line
            .split(" front=")
            .nth(1)
            .unwrap_or("")
            .split_whitespace()
            .next()
            .unwrap_or("");
        let backend = line
            .split(" backend=")
            .nth(1)
            .unwrap_or("")
            .split(" follow-up=")
            .next()
            .unwrap_or("")
            .trim();
        assert!(
            line.contains("follow-up=200"),
            "follow-up failed after {name}: {line}"
        );
        if VALID_CASES.contains(&name) {
            assert!(front.starts_with("200"), "{line}");
            continue;
        }
        if KNOWN_FORWARDED.contains(&name) {
            continue;
        }
        assert!(
            backend.is_empty(),
            "malformed case {name} reached the backend: {line}"
        );
        assert!(
            ["400", "501", "431", "413", "closed/none"].contains(&front),
            "{name} answered {front}: {line}"
        );
        refused.push(format!("{name}={front}"));
    }
    assert_eq!(
        refused.len() + VALID_CASES.len() + KNOWN_FORWARDED.len(),
        29,
        "{text}"
    );
    eprintln!("refused: {}", refused.join(" "));
}

#[test]
fn h2_abuse_probe_leaves_the_gateway_serving() {
    let Some(probes) = probes_dir() else {
        eprintln!("SKIPPED: ../shared/probes not found next to the repository");
        return;
    };
    let env = env();
    let mut gw = env.start(&echo_config(
        &env,
        "[[route]]\npath = \"/\"\nupstream = \"echo\"\n",
    ));
    // The probe's own loop stops at the first client-side exception (Python's ssl
    // raises BAD_LENGTH when the server stops reading mid-flood); run each probe
    // on its own and report such an exception as the probe's outcome.
    let wrapper = format!(
        "import sys\nsys.argv = ['h2_abuse_probe.py', '127.0.0.1', '{}']\n\
         src = open({:?}).read()\nsrc = src[:src.rindex('for f in (')]\nexec(src)\n\
         for f in (rapid_reset, continuation_flood, ping_flood):\n\
         \x20   try: r = f()\n\
         \x20   except Exception as e: r = 'server reaction: client error after the server stopped reading: %r' % e\n\
         \x20   print('%-20s %s' % (f.__name__, r), flush=True)\n",
        env.https_port,
        probes.join("h2_abuse_probe.py").display().to_string()
    );
    let out = python(&wrapper, &[]);
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    eprintln!("{text}");
    assert!(
        out.status.success(),
        "{text}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for probe in ["rapid_reset", "continuation_flood", "ping_flood"] {
        assert!(text.contains(probe), "{probe} did not run:\n{text}");
    }
    // The CONTINUATION flood must be cut off (GOAWAY or close), not absorbed.
    let cont = text
        .lines()
        .find(|l| l.starts_with("continuation_flood"))
        .unwrap_or("");
    assert!(!cont.contains("reaction: none"), "{cont}");
    // So must the PING flood (the read guard counts control frames, sniff.rs).
    let ping = text
        .lines()
        .find(|l| l.starts_with("ping_flood"))
        .unwrap_or("");
    assert!(!ping.contains("reaction: none"), "{ping}");
    // Still alive, and serving another client over both protocols.
    assert!(
        gw.child.try_wait().unwrap().is_none(),
        "the gateway died:\n{}",
        gw.stderr_text()
    );
    for proto in ["--http2", "--http1.1"] {
        let r = Curl::https(env.https_port, "/after", env.ca_file())
            .arg(proto)
            .run();
        assert_eq!(r.status, 200, "{proto}");
    }
}

// hyper removes Content-Length before the stack sees the request; the read
// guard (sniff.rs) saw both headers in the raw head.
#[test]
fn content_length_with_transfer_encoding_is_400_and_not_forwarded() {
    let env = env();
    let up = MockUpstream::start("up");
    let _gw = env.start(&env.config_with(&format!(
        "[[upstream]]\nname = \"m\"\nservers = [\"{}\"]\n\n[[route]]\npath = \"/\"\nupstream = \"m\"\n",
        up.authority()
    )));
    let req = b"POST /c HTTP/1.1\r\nHost: localhost\r\nContent-Length: 6\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\nG";
    let resp = raw_tls_exchange(env.https_port, "localhost", req);
    assert_eq!(statuses(&resp), vec![400], "{resp}");
    assert!(up.requests().is_empty());
}
