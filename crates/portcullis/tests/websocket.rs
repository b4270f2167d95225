//! WebSocket through the gateway's upgrade tunnel, with a real client
//! (Python, raw frames over TLS) and the built-in echo upstream.

mod common;
use common::*;

const WS_CLIENT: &str = r#"
import base64, os, socket, ssl, struct, sys
port, path = int(sys.argv[1]), sys.argv[2]
ctx = ssl.create_default_context(); ctx.check_hostname = False; ctx.verify_mode = ssl.CERT_NONE
ctx.set_alpn_protocols(['http/1.1'])
s = ctx.wrap_socket(socket.create_connection(('127.0.0.1', port), timeout=20), server_hostname='localhost')
key = base64.b64encode(os.urandom(16)).decode()
s.sendall((f"GET {path} HTTP/1.1\r\nHost: localhost:{port}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
           f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n").encode())
head = b''
while b'\r\n\r\n' not in head:
    b = s.recv(1)
    if not b: break
    head += b
print(head.split(b'\r\n')[0].decode())
if b' 101 ' not in head.split(b'\r\n')[0]:
    sys.exit(0)
def send(op, data):
    mask = os.urandom(4)
    hdr = bytes([0x80 | op]) + (bytes([0x80 | len(data)]) if len(data) < 126 else bytes([0x80 | 126]) + struct.pack('>H', len(data)))
    s.sendall(hdr + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(data)))
def recvn(n):
    out = b''
    while len(out) < n:
        b = s.recv(n - len(out))
        if not b: raise EOFError
        out += b
    return out
def recv():
    b0, b1 = recvn(2)
    n = b1 & 0x7f
    if n == 126: n = struct.unpack('>H', recvn(2))[0]
    elif n == 127: n = struct.unpack('>Q', recvn(8))[0]
    return b0 & 0x0f, recvn(n)
for msg in [b'hello', b'through the gate', b'x' * 1000]:
    send(1, msg)
    op, data = recv()
    print('echo', op, data.decode() if len(data) < 100 else '%d bytes' % len(data))
send(8, struct.pack('>H', 1000))
print('closed')
"#;

#[test]
fn websocket_echo_through_the_tunnel() {
    let env = env();
    let _gw = env.start(&echo_config(
        &env,
        "[[route]]\nname = \"ws\"\npath = \"/ws/\"\nupstream = \"echo\"\n\n\
         [[route]]\nname = \"nows\"\npath = \"/nows/\"\nupstream = \"echo\"\nwebsocket = false\n",
    ));
    let port = env.https_port.to_string();
    let out = python(WS_CLIENT, &[&port, "/ws/chat"]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{text}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let lines: Vec<&str> = text.lines().collect();
    assert!(lines[0].starts_with("HTTP/1.1 101"), "{text}");
    assert_eq!(lines[1], "echo 1 hello");
    assert_eq!(lines[2], "echo 1 through the gate");
    assert_eq!(lines[3], "echo 1 1000 bytes");

    // A route with websocket = false refuses the upgrade.
    let out = python(WS_CLIENT, &[&port, "/nows/chat"]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.starts_with("HTTP/1.1 400"), "{text}");
}
