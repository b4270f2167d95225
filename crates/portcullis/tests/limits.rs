//! Request limits with the right status: body size (413, declared and
//! chunked), header size and count (431), time to send headers (408 or close,
//! against slowloris). Refused requests never reach the upstream.

mod common;
use common::*;

fn limited_gateway(env: &TestEnv, up: &MockUpstream, limits: &str) -> GatewayProcess {
    let cfg = env.config_with(&format!(
        "[[upstream]]\nname = \"m\"\nservers = [\"{}\"]\n\n[[route]]\npath = \"/\"\nupstream = \"m\"\n",
        up.authority()
    ));
    env.start(&cfg.replace("[log]", &format!("[limits]\n{limits}\n[log]")))
}

#[test]
fn body_over_the_limit_is_413_declared_or_chunked() {
    let env = env();
    let up = MockUpstream::start("ok");
    let _gw = limited_gateway(&env, &up, "max_body_size = \"1k\"\n");
    let small = vec![b'a'; 512];
    let big = vec![b'b'; 64 * 1024];

    let r = Curl::https(env.https_port, "/small", env.ca_file())
        .body(&small, env.path())
        .run();
    assert_eq!(r.status, 200);
    assert_eq!(up.requests()[0].body.len(), 512);

    let r = Curl::https(env.https_port, "/declared", env.ca_file())
        .http1()
        .body(&big, env.path())
        .run();
    assert_eq!(r.status, 413, "{}", r.text());
    assert_eq!(r.json()["error"], "payload_too_large");

    // Chunked, no declared size: cut when it passes the limit. Raw, because the
    // gateway answers while the client is still sending (curl reports EPIPE then).
    let mut req = b"POST /chunked HTTP/1.1\r\nHost: localhost\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n".to_vec();
    for _ in 0..64 {
        req.extend_from_slice(b"400\r\n");
        req.extend_from_slice(&[b'c'; 1024]);
        req.extend_from_slice(b"\r\n");
    }
    req.extend_from_slice(b"0\r\n\r\n");
    let resp = raw_tls_exchange(env.https_port, "localhost", &req);
    assert_eq!(statuses(&resp), vec![413], "chunked: {resp}");
    assert!(resp.contains("payload_too_large"), "{resp}");

    // HTTP/2, declared and streamed. (Python's h2, not curl: the gateway answers 413 and then
    // resets the stream with NO_ERROR as RFC 9113 §8.1 allows; curl 7.88 reports that as
    // error 92 and drops the response.)
    for (path, declare) in [("/h2-declared", true), ("/h2-streamed", false)] {
        let r = h2_request(env.https_port, "POST", path, big.len(), declare);
        assert_eq!(r.status, Some(413), "{path}: {r:?}");
        assert!(r.body.contains("payload_too_large"), "{path}: {r:?}");
    }

    let paths: Vec<String> = up
        .requests()
        .iter()
        .map(|r| r.target().to_string())
        .collect();
    assert_eq!(
        paths,
        vec!["/small"],
        "an oversized body reached the upstream whole"
    );
}

#[test]
fn huge_header_is_431() {
    let env = env();
    let up = MockUpstream::start("ok");
    let _gw = limited_gateway(&env, &up, "");
    let huge = format!("X-Huge: {}", "a".repeat(70_000));
    // Raw, because the gateway answers before reading all of it and curl then
    // reports the broken pipe instead of the response.
    let req = format!("GET / HTTP/1.1\r\nHost: localhost\r\n{huge}\r\nConnection: close\r\n\r\n");
    let resp = raw_tls_exchange(env.https_port, "localhost", req.as_bytes());
    assert_eq!(statuses(&resp), vec![431], "{resp}");
    let r2 = Curl::https(env.https_port, "/", env.ca_file())
        .http2()
        .header(&huge)
        .try_run();
    // h2: a 431 response or a stream/connection reset, but never a forwarded request.
    if let Ok(r2) = r2 {
        assert_eq!(r2.status, 431, "{}", r2.text());
    }
    assert!(up.requests().is_empty());
}

#[test]
fn too_many_headers_is_431() {
    let env = env();
    let up = MockUpstream::start("ok");
    let _gw = limited_gateway(&env, &up, "max_headers = 20\n");
    let mut c = Curl::https(env.https_port, "/", env.ca_file()).http1();
    for i in 0..40 {
        c = c.header(&format!("X-Many-{i}: v"));
    }
    let r = c.run();
    assert_eq!(r.status, 431, "{}", r.text());
    let r = Curl::https(env.https_port, "/", env.ca_file())
        .http1()
        .run();
    assert_eq!(r.status, 200);
    assert_eq!(up.requests().len(), 1);
}

/// Sends a request head that never ends and reports what came back before the close.
const SLOWLORIS: &str = r#"
import socket, ssl, sys, time
port = int(sys.argv[1])
ctx = ssl.create_default_context(); ctx.check_hostname = False; ctx.verify_mode = ssl.CERT_NONE
ctx.set_alpn_protocols(['http/1.1'])
s = ctx.wrap_socket(socket.create_connection(('127.0.0.1', port), timeout=30), server_hostname='localhost')
s.sendall(b"GET / HTTP/1.1\r\nHost: localhost\r\nX-a: 1\r\n")
out = b''
try:
    # keep trickling a header byte now and then, never the blank line
    s.settimeout(0.5)
    for i in range(60):
        try:
            b = s.recv(65536)
            if not b:
                break
            out += b
        except socket.timeout:
            try:
                s.sendall(b"X-b%d: 2\r\n" % i)
            except OSError:
                break
except (OSError, ssl.SSLError):
    pass
else:
    if len(out) == 0 and i == 59:
        print("STILL-OPEN"); sys.exit(0)
print("CLOSED " + out.decode('latin1').split("\r\n")[0])
"#;

#[test]
fn slowloris_gets_408_and_a_closed_connection() {
    let env = env();
    let up = MockUpstream::start("ok");
    let _gw = limited_gateway(&env, &up, "header_timeout = \"1s\"\n");
    let port = env.https_port.to_string();
    let out = python(SLOWLORIS, &[&port]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{text}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let line = text.trim();
    assert!(
        line.starts_with("CLOSED HTTP/1.1 408"),
        "slow client did not get 408 before the close: {line}"
    );
    assert!(up.requests().is_empty());
    // The gateway still serves others.
    let r = Curl::https(env.https_port, "/", env.ca_file()).run();
    assert_eq!(r.status, 200);
}

#[test]
fn malformed_chunked_body_is_400_and_does_not_eject_the_upstream() {
    let env = env();
    let up = MockUpstream::start("ok");
    let cfg = env.config_with(&format!(
        "[[upstream]]\nname = \"m\"\nservers = [\"{}\"]\nmax_fails = 1\nfail_timeout = \"1h\"\n\n[[route]]\npath = \"/\"\nupstream = \"m\"\n",
        up.authority()
    ));
    let _gw = env.start(&cfg);
    let req = b"POST /c HTTP/1.1\r\nHost: localhost\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\nffffffffffffffff1\r\nA\r\n0\r\n\r\n";
    let resp = raw_tls_exchange(env.https_port, "localhost", req);
    assert_eq!(statuses(&resp), vec![400], "{resp}");
    // Before the fix this was a 502 that also counted against the server, so one
    // bad client could eject every upstream.
    let r = Curl::https(env.https_port, "/after", env.ca_file()).run();
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.text(), "ok");
}

const SLOW_POST: &str = r#"
import socket, ssl, sys, time
port = int(sys.argv[1])
ctx = ssl.create_default_context(); ctx.check_hostname = False; ctx.verify_mode = ssl.CERT_NONE
ctx.set_alpn_protocols(['http/1.1'])
s = ctx.wrap_socket(socket.create_connection(('127.0.0.1', port), timeout=30), server_hostname='localhost')
s.sendall(b"POST / HTTP/1.1\r\nHost: localhost\r\nContent-Length: 100\r\n\r\n0123456789")
# then nothing: the body stalls
s.settimeout(20)
out = b''
try:
    while True:
        b = s.recv(65536)
        if not b:
            break
        out += b
except (OSError, ssl.SSLError):
    pass
print("GOT " + out.decode('latin1').split("\r\n")[0])
"#;

#[test]
fn slow_post_body_gets_408() {
    let env = env();
    let up = MockUpstream::start("ok");
    let _gw = limited_gateway(&env, &up, "body_timeout = \"1s\"\n");
    let out = python(SLOW_POST, &[&env.https_port.to_string()]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.trim().starts_with("GOT HTTP/1.1 408"),
        "a stalled body was not cut with 408: {text}"
    );
    // The gateway still serves others.
    let r = Curl::https(env.https_port, "/", env.ca_file()).run();
    assert_eq!(r.status, 200);
}
