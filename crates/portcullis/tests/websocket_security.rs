//! WebSocket security through the real gateway, with clients no one here
//! wrote: Python `websockets` over wss with a client certificate, raw
//! Python sockets for the cases a polite client cannot play (a dead client
//! that never answers pings), Python `h2` for WebSocket over HTTP/2
//! (RFC 8441), and the `kosoku` conformance suite (Autobahn's cases).
//!
//! What is checked: authentication and the Origin allowlist refuse the
//! upgrade before the upstream sees it; with terminated framing, a dead
//! client is closed (1001) after the heartbeat timeout, an oversize message
//! closes with 1009, a message flood with 1008, a revoked certificate with a
//! close frame (1008 "certificate revoked"); both modes pass the conformance
//! cases (all but groups 9, 12 and 13).

mod common;

use std::path::Path;

use common::*;
use portcullis_testkit::mtls::{wait_until, Bed, ClientCert, ClientSpec, MtlsCa};

fn log_of(g: &GatewayProcess) -> String {
    portcullis_testkit::mtls::strip_ansi(&(g.stderr_text() + &g.stdout_text()))
}

/// A raw WebSocket handshake over TLS; prints the status line.
/// argv: port path ca [cert key] ; env ORIGIN.
const RAW_HANDSHAKE: &str = r#"
import base64, os, socket, ssl, sys
port, path, ca = int(sys.argv[1]), sys.argv[2], sys.argv[3]
ctx = ssl.create_default_context(cafile=ca)
ctx.set_alpn_protocols(['http/1.1'])
if len(sys.argv) > 5: ctx.load_cert_chain(sys.argv[4], sys.argv[5])
s = ctx.wrap_socket(socket.create_connection(('127.0.0.1', port), timeout=20), server_hostname='localhost')
key = base64.b64encode(os.urandom(16)).decode()
origin = os.environ.get('ORIGIN')
extra = f"Origin: {origin}\r\n" if origin else ""
upgrade = os.environ.get('UPGRADE', 'websocket')
s.sendall((f"GET {path} HTTP/1.1\r\nHost: localhost:{port}\r\nUpgrade: {upgrade}\r\nConnection: Upgrade\r\n"
           f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n{extra}\r\n").encode())
head = b''
while b'\r\n\r\n' not in head:
    b = s.recv(1)
    if not b: break
    head += b
print(head.split(b'\r\n')[0].decode())
"#;

/// A raw client that completes the handshake and then never answers a ping:
/// prints each frame it receives ("ping", "close CODE REASON") and "eof".
const DEAD_CLIENT: &str = r#"
import base64, os, socket, ssl, struct, sys
port, path, ca = int(sys.argv[1]), sys.argv[2], sys.argv[3]
ctx = ssl.create_default_context(cafile=ca)
ctx.set_alpn_protocols(['http/1.1'])
s = ctx.wrap_socket(socket.create_connection(('127.0.0.1', port), timeout=30), server_hostname='localhost')
key = base64.b64encode(os.urandom(16)).decode()
s.sendall((f"GET {path} HTTP/1.1\r\nHost: localhost:{port}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
           f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n").encode())
head = b''
while b'\r\n\r\n' not in head:
    b = s.recv(1)
    if not b: break
    head += b
print(head.split(b'\r\n')[0].decode(), flush=True)
def recvn(n):
    out = b''
    while len(out) < n:
        b = s.recv(n - len(out))
        if not b: raise EOFError
        out += b
    return out
try:
    while True:
        b0, b1 = recvn(2)
        n = b1 & 0x7f
        if n == 126: n = struct.unpack('>H', recvn(2))[0]
        elif n == 127: n = struct.unpack('>Q', recvn(8))[0]
        op, data = b0 & 0x0f, recvn(n)
        if op == 9: print('ping', flush=True)
        elif op == 8:
            code = struct.unpack('>H', data[:2])[0] if len(data) >= 2 else None
            print('close', code, data[2:].decode(), flush=True)
        else: print('frame', op, flush=True)
except (EOFError, ConnectionError):
    print('eof')
except socket.timeout:
    print('timeout')
"#;

/// Python `websockets` over wss (client certificate optional).
/// argv: port path mode json-options. Prints what happened, one line each.
const WS_CLIENT: &str = r#"
import asyncio, json, os, ssl, sys
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed, InvalidStatus
port, path, mode, opts = int(sys.argv[1]), sys.argv[2], sys.argv[3], json.loads(sys.argv[4])
ctx = ssl.create_default_context(cafile=opts['ca'])
if opts.get('cert'): ctx.load_cert_chain(opts['cert'], opts['key'])
async def run(ws):
    if mode == 'echo':
        for m in ['hello', 'über', b'\x00\x01\x02']:
            await ws.send(m); print('echo', repr(await ws.recv()), flush=True)
        if opts.get('linger'):
            await asyncio.sleep(opts['linger'])   # the gateway's pings, answered by websockets
            await ws.send('still here'); print('echo', repr(await ws.recv()), flush=True)
        await ws.close(); print('closed', ws.close_code)
    elif mode == 'big':
        await ws.send('a' * 500); print('echo', len(await ws.recv()), flush=True)
        await ws.send('b' * opts['size'])
        await asyncio.wait_for(ws.recv(), 20); print('no close')
    elif mode == 'flood':
        for i in range(opts['n']): await ws.send(f'm{i}')
        while True: await asyncio.wait_for(ws.recv(), 20)
    elif mode == 'wait':
        await ws.send('hi'); print('echo', repr(await ws.recv()), flush=True)
        await asyncio.wait_for(ws.recv(), 40); print('no close')
    elif mode == 'revoke':
        await ws.send('hi'); print('echo', repr(await ws.recv()), flush=True)
        os.replace(opts['src'], opts['dst'])
        print('revoked', flush=True)
        await asyncio.wait_for(ws.recv(), 20); print('no close')
async def main():
    try:
        async with connect(f"wss://localhost:{port}{path}", ssl=ctx, ping_interval=None,
                           max_size=None, origin=opts.get('origin'), open_timeout=10,
                           additional_headers=opts.get('headers')) as ws:
            print('open', flush=True)
            await run(ws)
    except ConnectionClosed as e:
        print('close', e.rcvd.code if e.rcvd else None, e.rcvd.reason if e.rcvd else '')
    except InvalidStatus as e:
        print('status', e.response.status_code)
    except asyncio.TimeoutError:
        print('timeout')
asyncio.run(main())
"#;

fn ws_client(port: u16, path: &str, mode: &str, opts: serde_json::Value) -> Vec<String> {
    let out = python(
        WS_CLIENT,
        &[&port.to_string(), path, mode, &opts.to_string()],
    );
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "{text}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    text.lines().map(str::to_owned).collect()
}

fn cert_opts(ca: &Path, c: Option<&ClientCert>) -> serde_json::Value {
    match c {
        Some(c) => serde_json::json!({"ca": ca, "cert": c.cert_path, "key": c.key_path}),
        None => serde_json::json!({ "ca": ca }),
    }
}

fn raw_handshake(bed: &Bed, path: &str, cert: Option<&ClientCert>, origin: Option<&str>) -> String {
    let port = bed.port.to_string();
    let ca = bed.server_ca.display().to_string();
    let mut args = vec![port, path.to_string(), ca];
    if let Some(c) = cert {
        args.push(c.cert_path.display().to_string());
        args.push(c.key_path.display().to_string());
    }
    let mut cmd = std::process::Command::new("python3");
    cmd.arg("-c").arg(RAW_HANDSHAKE).args(&args);
    if let Some(o) = origin {
        cmd.env("ORIGIN", o);
    }
    let out = cmd.output().expect("python3");
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

#[test]
fn upgrade_refused_without_credentials_or_from_a_foreign_origin_before_the_upstream() {
    let bed = Bed::new();
    let ca = MtlsCa::new(&bed.dir.join("ca"), "Clients");
    let alice = ca.issue("alice", &ClientSpec::new("alice"));
    let mock = MockUpstream::start("ws-backend");
    let routes = format!(
        "[[upstream]]\nname = \"mock\"\nservers = [\"{}\"]\n\n\
         [[route]]\nname = \"ws\"\npath = \"/ws/\"\nupstream = \"mock\"\nclient_cert = \"required\"\n\
         [route.websocket]\nallowed_origins = [\"https://app.example.com\", \"https://*.example.org\"]\n",
        mock.authority()
    );
    let listener = format!(
        "client_auth = \"optional\"\nclient_ca = [\"{}\"]",
        ca.root_path().display()
    );
    let _g = bed.start(&bin_path(), &listener, &routes);

    // No client certificate: 496, whatever the Origin.
    assert!(
        raw_handshake(&bed, "/ws/x", None, Some("https://app.example.com")).contains(" 496 "),
        "no certificate"
    );
    // A certificate but a foreign, a look-alike or no Origin: 403.
    for origin in [
        Some("https://evil.example"),
        Some("https://app.example.com.evil.example"),
        Some("http://app.example.com"),
        Some("null"),
        Some("https://example.org"),
        None,
    ] {
        let line = raw_handshake(&bed, "/ws/x", Some(&alice), origin);
        assert!(line.contains(" 403 "), "origin {origin:?}: {line}");
    }
    // Python websockets sees the same refusal.
    let mut o = cert_opts(&bed.server_ca, Some(&alice));
    o["origin"] = "https://evil.example".into();
    assert_eq!(ws_client(bed.port, "/ws/x", "echo", o), ["status 403"]);
    assert!(
        mock.requests().is_empty(),
        "a refused upgrade reached the upstream: {:?}",
        mock.requests()
    );

    // The allowed origins (exact and wildcard) with a certificate do reach it.
    for origin in ["https://app.example.com", "https://chat.example.org"] {
        let line = raw_handshake(&bed, "/ws/x", Some(&alice), Some(origin));
        assert!(!line.contains(" 403 ") && !line.contains(" 496 "), "{line}");
    }
    let seen = mock.requests();
    assert_eq!(seen.len(), 2, "{seen:?}");
    assert_eq!(
        seen[0].header("upgrade").map(str::to_ascii_lowercase),
        Some("websocket".to_string())
    );
}

fn bin_path() -> std::path::PathBuf {
    std::path::PathBuf::from(BIN)
}

/// Routes on the echo upstream: "/tunnel/" (byte tunnel), "/ws/" (terminated: heartbeats every second).
const ECHO_ROUTES: &str =
    "[[route]]\nname = \"tunnel\"\npath = \"/tunnel/\"\nupstream = \"echo\"\n\n\
     [[route]]\nname = \"ws\"\npath = \"/ws/\"\nupstream = \"echo\"\n\
     [route.websocket]\nheartbeat_interval = \"1s\"\nheartbeat_timeout = \"2s\"\n";

#[test]
fn python_websockets_over_wss_with_a_client_certificate_echoes_in_both_modes() {
    let bed = Bed::new();
    let ca = MtlsCa::new(&bed.dir.join("ca"), "Clients");
    let alice = ca.issue("alice", &ClientSpec::new("alice"));
    let listener = format!(
        "client_auth = \"required\"\nclient_ca = [\"{}\"]",
        ca.root_path().display()
    );
    let g = bed.start(&bin_path(), &listener, ECHO_ROUTES);
    for path in ["/tunnel/chat", "/ws/chat"] {
        let mut o = cert_opts(&bed.server_ca, Some(&alice));
        // Long enough for the gateway to ping a few times on "/ws/": websockets answers them.
        o["linger"] = 3.into();
        let lines = ws_client(bed.port, path, "echo", o);
        assert_eq!(
            lines,
            [
                "open",
                "echo 'hello'",
                "echo 'über'",
                "echo b'\\x00\\x01\\x02'",
                "echo 'still here'",
                "closed 1000"
            ],
            "{path}"
        );
    }
    assert!(!log_of(&g).contains("heartbeat_timeout"), "{}", log_of(&g));
}

#[test]
fn a_dead_client_is_closed_after_the_heartbeat_timeout() {
    let env = env();
    let admin = free_port();
    let g = env.start(&echo_config(
        &env,
        &format!("[admin]\naddress = \"127.0.0.1:{admin}\"\n\n{ECHO_ROUTES}"),
    ));
    let out = python(
        DEAD_CLIENT,
        &[
            &env.https_port.to_string(),
            "/ws/dead",
            &env.ca_file().display().to_string(),
        ],
    );
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let lines: Vec<&str> = text.lines().collect();
    assert!(lines[0].starts_with("HTTP/1.1 101"), "{text}");
    assert!(lines.contains(&"ping"), "the gateway never pinged: {text}");
    assert!(
        lines.contains(&"close 1001 heartbeat timeout"),
        "no close frame for the dead client: {text}"
    );
    assert_eq!(lines.last(), Some(&"eof"), "{text}");
    assert!(
        wait_until(std::time::Duration::from_secs(5), || log_of(&g)
            .contains("heartbeat_timeout")),
        "{}",
        log_of(&g)
    );
    // Another protocol cannot use the route to get past its WebSocket limits.
    let out = std::process::Command::new("python3")
        .arg("-c")
        .arg(RAW_HANDSHAKE)
        .args([
            &env.https_port.to_string(),
            "/ws/other",
            &env.ca_file().display().to_string(),
        ])
        .env("UPGRADE", "not-websocket")
        .output()
        .expect("python3");
    let line = String::from_utf8_lossy(&out.stdout);
    assert!(line.starts_with("HTTP/1.1 400"), "{line}");
    // Counted for the metrics by a bounded reason.
    let m = Curl::new(format!("http://127.0.0.1:{admin}/metrics")).run();
    assert!(
        m.text()
            .lines()
            .any(|l| l == "portcullis_websocket_closes_total{reason=\"heartbeat_timeout\"} 1"),
        "{}",
        m.text()
    );
}

#[test]
fn oversize_message_closes_with_1009_and_a_flood_with_1008() {
    let env = env();
    let _g = env.start(&echo_config(
        &env,
        "[[route]]\nname = \"small\"\npath = \"/small/\"\nupstream = \"echo\"\n\
         [route.websocket]\nmax_message_size = \"1k\"\n\n\
         [[route]]\nname = \"slow\"\npath = \"/slow/\"\nupstream = \"echo\"\n\
         [route.websocket]\nmessage_rate = \"5r/s\"\nmessage_burst = 5\n\n\
         [[route]]\nname = \"open\"\npath = \"/open/\"\nupstream = \"echo\"\n",
    ));
    let ca = serde_json::json!({ "ca": env.ca_file() });
    let mut o = ca.clone();
    o["size"] = 2000.into();
    assert_eq!(
        ws_client(env.https_port, "/small/x", "big", o.clone()),
        ["open", "echo 500", "close 1009 message too big"]
    );
    // The byte tunnel has no such limit: the same message comes back.
    assert_eq!(
        ws_client(env.https_port, "/open/x", "big", o),
        ["open", "echo 500", "no close"]
    );

    let mut o = ca.clone();
    o["n"] = 50.into();
    let lines = ws_client(env.https_port, "/slow/x", "flood", o);
    assert_eq!(
        lines.last().map(String::as_str),
        Some("close 1008 message rate exceeded"),
        "{lines:?}"
    );
}

#[test]
fn a_revoked_certificate_closes_the_websocket_with_a_close_frame() {
    let bed = Bed::new();
    let ca = MtlsCa::new(&bed.dir.join("ca"), "Clients");
    let alice = ca.issue("alice", &ClientSpec::new("alice"));
    let crl = bed.dir.join("clients.crl.pem");
    std::fs::write(&crl, ca.crl_pem(1, &[], false)).unwrap();
    let revoked = bed.dir.join("revoked.crl.pem.new");
    std::fs::write(&revoked, ca.crl_pem(1, &[&alice.serial], false)).unwrap();
    let listener = format!(
        "client_auth = \"required\"\nclient_ca = [\"{}\"]\ncrl = [\"{}\"]",
        ca.root_path().display(),
        crl.display()
    );
    let g = bed.start(&bin_path(), &listener, ECHO_ROUTES);
    let mut o = cert_opts(&bed.server_ca, Some(&alice));
    o["src"] = revoked.display().to_string().into();
    o["dst"] = crl.display().to_string().into();
    let lines = ws_client(bed.port, "/ws/live", "revoke", o);
    assert_eq!(
        lines,
        [
            "open",
            "echo 'hi'",
            "revoked",
            "close 1008 certificate revoked"
        ],
        "{}",
        log_of(&g)
    );
    // And the certificate no longer gets in.
    let line = raw_handshake(&bed, "/ws/again", Some(&alice), None);
    assert!(!line.contains(" 101 "), "{line}");
}

/// kosoku (Autobahn's cases) speaks ws:// only: a local bridge (plain TCP in,
/// TLS to the gateway out, bytes copied untouched) carries it to the gateway.
/// argv: gateway-port ca paths(comma-separated); prints one JSON line per path.
const CONFORMANCE: &str = r#"
import asyncio, json, ssl, sys
import kosoku
gw_port, ca, paths = int(sys.argv[1]), sys.argv[2], sys.argv[3].split(',')
ctx = ssl.create_default_context(cafile=ca)
ctx.set_alpn_protocols(['http/1.1'])
async def pipe(r, w):
    try:
        while True:
            b = await r.read(65536)
            if not b: break
            w.write(b); await w.drain()
    except Exception: pass
    finally:
        try:
            if w.can_write_eof(): w.write_eof()
            else: w.close()
        except Exception: pass
async def handle(cr, cw):
    try:
        ur, uw = await asyncio.open_connection('127.0.0.1', gw_port, ssl=ctx, server_hostname='localhost')
    except Exception:
        cw.close(); return
    await asyncio.gather(pipe(cr, uw), pipe(ur, cw))
    cw.close(); uw.close()
async def main():
    srv = await asyncio.start_server(handle, '127.0.0.1', 0)
    port = srv.sockets[0].getsockname()[1]
    for path in paths:
        try:
            res = await kosoku.run_fuzzingclient(f"ws://localhost:{port}{path}", ['*'],
                                                 ['9.*', '12.*', '13.*'], concurrency=4)
        except kosoku.FailureError as e:
            res = e.results
        print(json.dumps({
            'path': path,
            'cases': [r.case_id for r in res],
            'failed': [f"{r.case_id}: {r.behavior} {r.behavior_close} {r.result} {r.result_close}"
                       for r in res if not r.passed],
        }), flush=True)
    srv.close()
asyncio.run(main())
"#;

#[test]
fn kosoku_conformance_cases_pass_through_the_tunnel_and_the_terminated_framing() {
    let env = env();
    // The terminated route pings every minute: Autobahn's cases that pause
    // (5.19, 6.4.x) count an unsolicited ping as an unexpected event.
    let _g = env.start(&echo_config(
        &env,
        "[[route]]\nname = \"tunnel\"\npath = \"/tunnel/\"\nupstream = \"echo\"\n\n\
         [[route]]\nname = \"terminated\"\npath = \"/terminated/\"\nupstream = \"echo\"\n\
         [route.websocket]\nheartbeat_interval = \"60s\"\nmax_message_size = \"16m\"\n\
         message_rate = \"1000r/s\"\nmessage_burst = 1000\n",
    ));
    let out = python(
        CONFORMANCE,
        &[
            &env.https_port.to_string(),
            &env.ca_file().display().to_string(),
            "/tunnel/,/terminated/",
        ],
    );
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "kosoku did not run (scripts/install-test-deps.sh installs it): {text}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let reports: Vec<serde_json::Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).expect("report line"))
        .collect();
    assert_eq!(reports.len(), 2, "{text}");
    for r in &reports {
        let cases: Vec<&str> = r["cases"]
            .as_array()
            .expect("cases")
            .iter()
            .filter_map(|c| c.as_str())
            .collect();
        // Every group but the excluded performance and compression ones ran.
        for group in ["1.", "2.", "3.", "4.", "5.", "6.", "7.", "10."] {
            assert!(
                cases.iter().any(|c| c.starts_with(group)),
                "{}: no case of group {group}",
                r["path"]
            );
        }
        assert!(
            !cases
                .iter()
                .any(|c| c.starts_with("9.") || c.starts_with("12.") || c.starts_with("13.")),
            "excluded groups ran"
        );
        assert!(
            cases.len() >= 200,
            "{}: only {} cases",
            r["path"],
            cases.len()
        );
        assert_eq!(
            r["failed"].as_array().map(Vec::len),
            Some(0),
            "{}: {}",
            r["path"],
            r["failed"]
        );
    }
}

/// Makes an ES256 key, its JWKS (argv[1]/jwks.json) and a token that expires in argv[2] seconds.
const MAKE_TOKEN: &str = r#"
import json, sys, time, jwt
from cryptography.hazmat.primitives.asymmetric import ec
out, ttl = sys.argv[1], int(sys.argv[2])
key = ec.generate_private_key(ec.SECP256R1())
jwk = json.loads(jwt.algorithms.ECAlgorithm.to_jwk(key.public_key()))
jwk.update({"kid": "k1", "use": "sig", "alg": "ES256"})
open(out + "/jwks.json", "w").write(json.dumps({"keys": [jwk]}))
now = int(time.time())
print(jwt.encode({"iss": "https://idp.test", "sub": "user-42", "iat": now, "exp": now + ttl},
                 key, algorithm="ES256", headers={"kid": "k1"}))
"#;

#[test]
fn a_jwt_authenticated_websocket_closes_when_its_token_expires() {
    let env = env();
    let out = python(MAKE_TOKEN, &[env.path().to_str().unwrap(), "15"]);
    assert!(
        out.status.success(),
        "pyjwt: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let token = String::from_utf8_lossy(&out.stdout).trim().to_string();
    let _g = env.start(&echo_config(
        &env,
        "[[jwt_issuer]]\nissuer = \"https://idp.test\"\nalgorithms = [\"ES256\"]\njwks_file = \"jwks.json\"\n\n\
         [[route]]\nname = \"ws\"\npath = \"/ws/\"\nupstream = \"echo\"\nauth = [\"jwt\"]\n\
         [route.websocket]\nclose_on_token_expiry = true\n",
    ));
    let ca = serde_json::json!({ "ca": env.ca_file() });
    // No token: 401 at the upgrade.
    assert_eq!(
        ws_client(env.https_port, "/ws/x", "echo", ca.clone()),
        ["status 401"]
    );
    let mut o = ca;
    o["headers"] = serde_json::json!({ "Authorization": format!("Bearer {token}") });
    assert_eq!(
        ws_client(env.https_port, "/ws/x", "wait", o),
        ["open", "echo 'hi'", "close 1008 token expired"]
    );
}

/// WebSocket over HTTP/2 (RFC 8441) with Python's `h2`: the gateway's
/// SETTINGS_ENABLE_CONNECT_PROTOCOL, an extended CONNECT, then masked
/// WebSocket frames in DATA frames. argv: port path ca [origin].
const H2_WS: &str = r#"
import os, socket, ssl, struct, sys
import h2.config, h2.connection, h2.events
port, path, ca = int(sys.argv[1]), sys.argv[2], sys.argv[3]
origin = sys.argv[4] if len(sys.argv) > 4 else None
ctx = ssl.create_default_context(cafile=ca)
ctx.set_alpn_protocols(['h2'])
s = ctx.wrap_socket(socket.create_connection(('127.0.0.1', port), timeout=15), server_hostname='localhost')
assert s.selected_alpn_protocol() == 'h2'
c = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True))
c.initiate_connection(); s.sendall(c.data_to_send())
def pump():
    data = s.recv(65536)
    if not data: raise EOFError
    evs = c.receive_data(data)
    out = c.data_to_send()
    if out: s.sendall(out)
    return evs
got_settings = False
while not got_settings:
    got_settings = any(isinstance(e, h2.events.RemoteSettingsChanged) for e in pump())
print('enable_connect_protocol', c.remote_settings.enable_connect_protocol, flush=True)
sid = c.get_next_available_stream_id()
headers = [(':method', 'CONNECT'), (':protocol', 'websocket'), (':scheme', 'https'),
           (':path', path), (':authority', f'localhost:{port}'), ('sec-websocket-version', '13')]
if origin: headers.append(('origin', origin))
c.send_headers(sid, headers); s.sendall(c.data_to_send())
buf = b''
status = None
while status is None:
    for e in pump():
        if isinstance(e, h2.events.ResponseReceived):
            status = dict(e.headers)[b':status'].decode()
        elif isinstance(e, h2.events.DataReceived):
            buf += e.data; c.acknowledge_received_data(e.flow_controlled_length, sid)
        elif isinstance(e, h2.events.StreamReset) and status is None:
            print('reset'); sys.exit(0)
print('status', status, flush=True)
if status != '200': sys.exit(0)
def frame(op, payload):
    mask = os.urandom(4); n = len(payload)
    hdr = bytes([0x80 | op]) + (bytes([0x80 | n]) if n < 126 else bytes([0x80 | 126]) + struct.pack('>H', n))
    return hdr + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
ended = False
def next_frame():
    global buf, ended
    while True:
        if len(buf) >= 2:
            n, off = buf[1] & 0x7f, 2
            if n == 126 and len(buf) >= 4: n, off = struct.unpack('>H', buf[2:4])[0], 4
            if n < 126 or off == 4:
                if len(buf) >= off + n:
                    op, data, buf = buf[0] & 0x0f, buf[off:off + n], buf[off + n:]
                    return op, data
        if ended: raise EOFError
        for e in pump():
            if isinstance(e, h2.events.DataReceived):
                buf += e.data; c.acknowledge_received_data(e.flow_controlled_length, sid)
            elif isinstance(e, (h2.events.StreamEnded, h2.events.StreamReset)):
                ended = True
for msg in [b'over h2', b'y' * 300]:
    c.send_data(sid, frame(1, msg)); s.sendall(c.data_to_send())
    while True:
        op, data = next_frame()
        if op != 9: break
    print('echo', op, data.decode() if len(data) < 100 else '%d bytes' % len(data), flush=True)
c.send_data(sid, frame(8, struct.pack('>H', 1000))); s.sendall(c.data_to_send())
while True:
    op, data = next_frame()
    if op == 8: print('close', struct.unpack('>H', data[:2])[0]); break
"#;

#[test]
fn websocket_over_http2_extended_connect_in_both_modes() {
    let env = env();
    let _g = env.start(&echo_config(
        &env,
        &format!(
            "{ECHO_ROUTES}\n[[route]]\nname = \"strict\"\npath = \"/strict/\"\nupstream = \"echo\"\n\
             [route.websocket]\nallowed_origins = [\"https://app.example.com\"]\n"
        ),
    ));
    let port = env.https_port.to_string();
    let ca = env.ca_file().display().to_string();
    for path in ["/tunnel/h2", "/ws/h2", "/strict/h2"] {
        let mut args = vec![port.as_str(), path, ca.as_str()];
        if path == "/strict/h2" {
            args.push("https://app.example.com");
        }
        let out = python(H2_WS, &args);
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "{path}: {text}\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(
            lines,
            [
                "enable_connect_protocol 1",
                "status 200",
                "echo 1 over h2",
                "echo 1 300 bytes",
                "close 1000"
            ],
            "{path}"
        );
    }
    // The Origin allowlist holds over HTTP/2 too.
    let out = python(H2_WS, &[&port, "/strict/h2", &ca, "https://evil.example"]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("status 403"), "{text}");
}

#[test]
fn websocket_policy_errors_name_the_line_field_and_fix() {
    let env = env();
    let toml = echo_config(
        &env,
        "[[route]]\nname = \"ws\"\npath = \"/\"\nupstream = \"echo\"\n[route.websocket]\n\
         allowed_origins = [\"app.example.com\"]\nmessage_rate = \"fast\"\n\
         heartbeat_interval = \"0s\"\nmax_frame_size = \"huge\"\n",
    );
    let out = env.check("portcullis.toml", &toml);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    let line = |needle: &str| {
        toml.lines()
            .position(|l| l.starts_with(needle))
            .map(|i| i + 1)
            .expect("line")
    };
    for (key, text) in [
        ("allowed_origins", "\"app.example.com\" is not an origin"),
        ("message_rate", "\"fast\" is not a rate"),
        ("heartbeat_interval", "must be longer than zero"),
        ("max_frame_size", "\"huge\" is not a size"),
    ] {
        let at = format!("portcullis.toml:{}:", line(key));
        let diag = err
            .lines()
            .zip(err.lines().skip(1))
            .find(|(l, _)| l.contains(&at) && l.contains(&format!("route \"ws\".websocket.{key}")))
            .unwrap_or_else(|| panic!("no error for {key} at {at}:\n{err}"));
        assert!(diag.0.contains(text), "{}", diag.0);
        assert!(diag.1.trim_start().starts_with("fix:"), "{}", diag.1);
    }
    // A misspelt key is refused with the accepted ones listed.
    let toml = echo_config(
        &env,
        "[[route]]\npath = \"/\"\nupstream = \"echo\"\n[route.websocket]\nheartbeat = \"30s\"\n",
    );
    let out = env.check("portcullis.toml", &toml);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains(&format!(
            "portcullis.toml:{}:",
            line_in(&toml, "heartbeat ")
        )) && err.contains("heartbeat_interval"),
        "{err}"
    );
    // close_on_token_expiry on a route without JWT: a warning, not an error.
    let toml = echo_config(
        &env,
        "[[route]]\npath = \"/\"\nupstream = \"echo\"\n[route.websocket]\nclose_on_token_expiry = true\n",
    );
    let out = env.check("portcullis.toml", &toml);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{err}");
    let at = format!(
        "portcullis.toml:{}:",
        line_in(&toml, "close_on_token_expiry")
    );
    assert!(
        err.lines().any(|l| l.contains(&at)
            && l.contains("warning")
            && l.contains("close_on_token_expiry")
            && l.contains("does not authenticate with JWT")),
        "{err}"
    );
}

fn line_in(toml: &str, prefix: &str) -> usize {
    toml.lines()
        .position(|l| l.starts_with(prefix))
        .map(|i| i + 1)
        .expect("line")
}

/// A raw client that sends and never reads: the echo's answers pile up until
/// the gateway cannot write to it. Prints "closed" when the gateway drops it.
const NON_READER: &str = r#"
import base64, os, socket, ssl, struct, sys
port, path, ca = int(sys.argv[1]), sys.argv[2], sys.argv[3]
ctx = ssl.create_default_context(cafile=ca)
ctx.set_alpn_protocols(['http/1.1'])
s = ctx.wrap_socket(socket.create_connection(('127.0.0.1', port), timeout=60), server_hostname='localhost')
s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 65536)
key = base64.b64encode(os.urandom(16)).decode()
s.sendall((f"GET {path} HTTP/1.1\r\nHost: localhost:{port}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
           f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n").encode())
head = b''
while b'\r\n\r\n' not in head:
    head += s.recv(1)
print(head.split(b'\r\n')[0].decode(), flush=True)
# A zero masking key leaves the payload as is (and is still a masked frame).
frame = bytes([0x82, 0x80 | 127]) + struct.pack('>Q', 65536) + b'\0\0\0\0' + b'a' * 65536
try:
    for i in range(2000):
        s.sendall(frame)
    print('all sent')
except socket.timeout:
    print('timeout')
except (OSError, ssl.SSLError):
    print('closed')
"#;

#[test]
fn a_client_that_stops_reading_is_closed_like_a_dead_one() {
    let env = env();
    // No heartbeat (a non-reader never answers pings either): the stalled write alone must end it.
    let g = env.start(&echo_config(
        &env,
        "[[route]]\nname = \"ws\"\npath = \"/ws/\"\nupstream = \"echo\"\nupgrade_idle_timeout = \"2s\"\n\
         [route.websocket]\nmax_message_size = \"1m\"\n",
    ));
    let out = python(
        NON_READER,
        &[
            &env.https_port.to_string(),
            "/ws/stuck",
            &env.ca_file().display().to_string(),
        ],
    );
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(text.starts_with("HTTP/1.1 101"), "{text}");
    assert!(
        text.trim_end().ends_with("closed"),
        "{text}\n{}",
        log_of(&g)
    );
    assert!(
        wait_until(std::time::Duration::from_secs(5), || log_of(&g)
            .contains("reason=\"idle_timeout\"")
            || log_of(&g).contains("reason=idle_timeout")),
        "{}",
        log_of(&g)
    );
}

/// A rustls client trusting the test environment's CA, speaking HTTP/1.1.
fn ws_tls(env: &TestEnv) -> tokio_rustls::TlsConnector {
    use rustls::pki_types::pem::PemObject;
    let provider = std::sync::Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let mut roots = rustls::RootCertStore::empty();
    for c in rustls::pki_types::CertificateDer::pem_file_iter(env.ca_file()).expect("ca file") {
        roots.add(c.expect("ca pem")).expect("root");
    }
    let mut cfg = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("versions")
        .with_root_certificates(roots)
        .with_no_client_auth();
    cfg.alpn_protocols = vec![b"http/1.1".to_vec()];
    tokio_rustls::TlsConnector::from(std::sync::Arc::new(cfg))
}

/// Sends `count` binary messages of `size` bytes while reading the echoes on
/// the same connection at the same time; returns how many echoes came back
/// intact (stops at the first wrong one, or when nothing arrives for 20 s).
async fn large_echoes(env: &TestEnv, path: &str, count: usize, size: usize) -> usize {
    use futures_util::{SinkExt, StreamExt};
    use tokio_tungstenite::tungstenite::Message;
    let tcp = tokio::net::TcpStream::connect(("127.0.0.1", env.https_port))
        .await
        .expect("connect");
    let name = rustls::pki_types::ServerName::try_from("localhost").expect("name");
    let tls = ws_tls(env).connect(name, tcp).await.expect("handshake");
    let cfg = tokio_tungstenite::tungstenite::protocol::WebSocketConfig::default()
        .max_message_size(Some(4 << 20))
        .max_frame_size(Some(4 << 20));
    let (ws, resp) = tokio_tungstenite::client_async_with_config(
        format!("wss://localhost:{}{path}", env.https_port),
        tls,
        Some(cfg),
    )
    .await
    .expect("websocket upgrade");
    assert_eq!(resp.status(), 101);
    let (mut tx, mut rx) = ws.split();
    let message = move |i: usize| {
        let mut v = vec![(i % 251) as u8; size];
        v[..8].copy_from_slice(&(i as u64).to_be_bytes());
        v
    };
    let sender = tokio::spawn(async move {
        for i in 0..count {
            if tx.send(Message::binary(message(i))).await.is_err() {
                break;
            }
        }
        tx
    });
    let mut intact = 0;
    while intact < count {
        match tokio::time::timeout(std::time::Duration::from_secs(20), rx.next()).await {
            Ok(Some(Ok(Message::Binary(b)))) if b[..] == message(intact)[..] => intact += 1,
            other => {
                eprintln!("echo {intact}: {other:?}");
                break;
            }
        }
    }
    if let Ok(mut tx) = sender.await {
        let _ = tx.close().await;
    }
    intact
}

#[test]
fn large_messages_both_ways_at_once_never_stall_in_either_mode() {
    let env = env();
    let _g = env.start(&echo_config(
        &env,
        "[[route]]\nname = \"tunnel\"\npath = \"/tunnel/\"\nupstream = \"echo\"\n\n\
         [[route]]\nname = \"framed\"\npath = \"/framed/\"\nupstream = \"echo\"\n\
         [route.websocket]\nmax_message_size = \"2m\"\n",
    ));
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    for path in ["/tunnel/big", "/framed/big"] {
        let n = rt.block_on(large_echoes(&env, path, 48, 1 << 20));
        assert_eq!(n, 48, "{path}: {n} of 48 echoes came back");
    }
}
