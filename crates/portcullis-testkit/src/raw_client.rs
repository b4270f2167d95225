//! Clients that send exactly the bytes a test wants, through Python's `ssl`
//! (and `h2` for HTTP/2 frames): for requests curl will not send or reports
//! badly (a response that arrives while the client is still sending).

use std::io::Write;
use std::process::{Command, Stdio};

const RAW_TLS: &str = r#"
import socket, ssl, sys
port, sni = int(sys.argv[1]), sys.argv[2]
data = sys.stdin.buffer.read()
ctx = ssl.create_default_context(); ctx.check_hostname = False; ctx.verify_mode = ssl.CERT_NONE
ctx.set_alpn_protocols(['http/1.1'])
s = ctx.wrap_socket(socket.create_connection(('127.0.0.1', port), timeout=20), server_hostname=sni)
try:
    s.sendall(data)
except (OSError, ssl.SSLError):
    pass   # the server may answer and close before reading everything
out = b''
try:
    while True:
        b = s.recv(65536)
        if not b:
            break
        out += b
except (OSError, ssl.SSLError):
    pass
sys.stdout.buffer.write(out)
"#;

/// Sends `request` on a new TLS connection (ALPN http/1.1, SNI `sni`, no
/// certificate check), reads until the server closes (or 20 s pass) and
/// returns what came back. The request should ask for `Connection: close`.
pub fn raw_tls_exchange(port: u16, sni: &str, request: &[u8]) -> String {
    let mut child = Command::new("python3")
        .arg("-c")
        .arg(RAW_TLS)
        .arg(port.to_string())
        .arg(sni)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn python3");
    if let Some(mut stdin) = child.stdin.take() {
        let _ = stdin.write_all(request);
    }
    let out = child.wait_with_output().expect("python3 output");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The status codes of every HTTP/1.x status line in `text`.
pub fn statuses(text: &str) -> Vec<u16> {
    text.match_indices("HTTP/1.")
        .filter_map(|(i, _)| text.get(i + 9..i + 12))
        .filter_map(|s| s.parse().ok())
        .collect()
}

const H2_REQUEST: &str = r#"
import json, socket, ssl, sys, h2.connection, h2.config, h2.events
port, method, path, body_len, declare = int(sys.argv[1]), sys.argv[2], sys.argv[3], int(sys.argv[4]), sys.argv[5] == '1'
ctx = ssl.create_default_context(); ctx.check_hostname = False; ctx.verify_mode = ssl.CERT_NONE
ctx.set_alpn_protocols(['h2'])
s = ctx.wrap_socket(socket.create_connection(('127.0.0.1', port), timeout=20), server_hostname='localhost')
c = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True))
c.initiate_connection(); s.sendall(c.data_to_send())
hdrs = [(':method', method), (':path', path), (':scheme', 'https'), (':authority', 'localhost')]
if declare:
    hdrs.append(('content-length', str(body_len)))
c.send_headers(1, hdrs, end_stream=(body_len == 0))
left = body_len
out = {'status': None, 'headers': [], 'body': '', 'reset': None}
done = False
def pump():
    global done
    d = s.recv(65536)
    if not d:
        done = True; return
    for e in c.receive_data(d):
        if isinstance(e, h2.events.ResponseReceived):
            out['headers'] = [(k.decode(), v.decode()) for k, v in e.headers]
            out['status'] = int(dict(out['headers'])[':status'])
        elif isinstance(e, h2.events.DataReceived):
            out['body'] += e.data.decode('latin1'); c.acknowledge_received_data(e.flow_controlled_length, e.stream_id)
        elif isinstance(e, (h2.events.StreamEnded,)):
            done = True
        elif isinstance(e, h2.events.StreamReset):
            out['reset'] = int(e.error_code); done = True
        elif isinstance(e, h2.events.ConnectionTerminated):
            done = True
    s.sendall(c.data_to_send())
try:
    while left > 0 and not done and out['status'] is None:
        n = min(left, c.local_flow_control_window(1), c.max_outbound_frame_size, 16384)
        if n <= 0:
            pump(); continue
        left -= n
        c.send_data(1, b'x' * n, end_stream=(left == 0)); s.sendall(c.data_to_send())
    while not done:
        pump()
except Exception as e:
    out['error'] = str(e)
print(json.dumps(out))
"#;

/// What one HTTP/2 request got back.
#[derive(Debug, Clone)]
pub struct H2Response {
    pub status: Option<u16>,
    pub headers: Vec<(String, String)>,
    pub body: String,
    /// RST_STREAM code before a response, if any.
    pub reset: Option<u32>,
}

/// One HTTP/2 request with a body of `body_len` bytes ("x"), with or
/// without a declared content-length, through Python's `h2`.
pub fn h2_request(
    port: u16,
    method: &str,
    path: &str,
    body_len: usize,
    declare: bool,
) -> H2Response {
    let out = Command::new("python3")
        .arg("-c")
        .arg(H2_REQUEST)
        .arg(port.to_string())
        .arg(method)
        .arg(path)
        .arg(body_len.to_string())
        .arg(if declare { "1" } else { "0" })
        .stdin(Stdio::null())
        .output()
        .expect("run python3");
    let text = String::from_utf8_lossy(&out.stdout);
    let v: serde_json::Value = serde_json::from_str(text.trim()).unwrap_or_else(|e| {
        panic!(
            "h2 client output is not JSON ({e}): {text}\n{}",
            String::from_utf8_lossy(&out.stderr)
        )
    });
    H2Response {
        status: v["status"].as_u64().map(|s| s as u16),
        headers: v["headers"]
            .as_array()
            .map(|a| {
                a.iter()
                    .map(|p| {
                        (
                            p[0].as_str().unwrap_or("").to_string(),
                            p[1].as_str().unwrap_or("").to_string(),
                        )
                    })
                    .collect()
            })
            .unwrap_or_default(),
        body: v["body"].as_str().unwrap_or("").to_string(),
        reset: v["reset"].as_u64().map(|c| c as u32),
    }
}
