//! Request validation per route (`[route.validate]`) through the real binary
//! with curl and Python clients: JSON Schema (file and inline) with formats,
//! 415 on a content type the route does not accept, deep and huge JSON
//! refused while streaming (never reaching the upstream), OpenAPI-driven
//! path/query/body checks with 404/405 for unknown operations, and routes
//! without body rules still streaming large bodies through.

mod common;
use common::*;

const USER_SCHEMA: &str = r#"{
  "$schema": "https://json-schema.org/draft/2020-12/schema",
  "type": "object",
  "required": ["name", "email"],
  "additionalProperties": false,
  "properties": {
    "name": {"type": "string", "maxLength": 40},
    "email": {"type": "string", "format": "email"},
    "age": {"type": "integer", "minimum": 0},
    "born": {"type": "string", "format": "date-time"},
    "tags": {"type": "array", "items": {"type": "string"}}
  }
}"#;

const OPENAPI: &str = r##"
openapi: 3.0.3
info: { title: users, version: "1" }
servers:
  - url: https://api.example.com/v1
paths:
  /users/{id}:
    parameters:
      - { name: id, in: path, required: true, schema: { type: integer, minimum: 1 } }
    get:
      parameters:
        - { name: view, in: query, schema: { type: string, enum: [short, full] } }
    put:
      requestBody:
        required: true
        content:
          application/json:
            schema: { $ref: '#/components/schemas/User' }
  /search:
    get:
      parameters:
        - { name: q, in: query, required: true, schema: { type: string, minLength: 2 } }
        - { name: limit, in: query, schema: { type: integer, maximum: 100 } }
        - { name: exact, in: query, schema: { type: boolean } }
components:
  schemas:
    User:
      type: object
      required: [name]
      additionalProperties: false
      properties:
        name: { type: string }
        nickname: { type: string, nullable: true }
"##;

struct World {
    env: TestEnv,
    up: MockUpstream,
    _gw: GatewayProcess,
}

fn world() -> World {
    let env = env();
    let up = MockUpstream::start("ok");
    std::fs::write(env.path().join("user.schema.json"), USER_SCHEMA).unwrap();
    std::fs::write(env.path().join("openapi.yaml"), OPENAPI).unwrap();
    let cfg = env.config_with(&format!(
        r#"[[upstream]]
name = "m"
servers = ["{up}"]

[[route]]
name = "users"
path = "/users/"
upstream = "m"
[route.validate]
schema = "user.schema.json"
max_depth = 16
max_body = "64k"

[[route]]
name = "inline"
path = "/inline/"
upstream = "m"
[route.validate]
content_types = ["application/json", "application/merge-patch+json"]
schema = '''{{"type": "object", "required": ["n"], "properties": {{"n": {{"type": "integer"}}}}}}'''

[[route]]
name = "uploads"
path = "/uploads/"
upstream = "m"
[route.validate]
content_types = ["application/octet-stream", "application/json"]
max_body = "64k"

[[route]]
name = "api"
path = "/api/"
strip_prefix = true
upstream = "m"
[route.validate]
openapi = "openapi.yaml"
reject_unknown = true

[[route]]
name = "open"
path = "/"
upstream = "m"
"#,
        up = up.authority()
    ));
    let gw = env.start(&cfg);
    World { env, up, _gw: gw }
}

impl World {
    fn send(&self, method: &str, path: &str, ctype: Option<&str>, body: &[u8]) -> HttpResponse {
        let mut c = Curl::https(self.env.https_port, path, self.env.ca_file()).method(method);
        match ctype {
            Some("") => c = c.header("Content-Type:"),
            Some(t) => c = c.header(&format!("Content-Type: {t}")),
            None => {}
        }
        if !body.is_empty() {
            // HTTP/1.1: a refusal is sent before the body is read, and curl 7.88 reports the
            // HTTP/2 stream reset (NO_ERROR) that follows as error 92 (see tests/limits.rs).
            c = c.http1().body(body, self.env.path());
        }
        c.run()
    }
    fn post_json(&self, path: &str, body: &str) -> HttpResponse {
        self.send("POST", path, Some("application/json"), body.as_bytes())
    }
    fn seen(&self) -> Vec<String> {
        self.up
            .requests()
            .iter()
            .map(|r| r.target().to_string())
            .collect()
    }
}

/// (path, rule) of each detail of a 400.
fn rules(r: &HttpResponse) -> Vec<(String, String)> {
    assert_eq!(r.status, 400, "{}", r.text());
    let j = r.json();
    assert_eq!(j["error"], "validation_failed", "{j}");
    j["details"]
        .as_array()
        .unwrap_or_else(|| panic!("no details: {j}"))
        .iter()
        .map(|d| {
            (
                d["path"].as_str().unwrap_or("?").to_string(),
                d["rule"].as_str().unwrap_or("?").to_string(),
            )
        })
        .collect()
}

#[test]
fn json_schema_valid_and_invalid_bodies() {
    let w = world();
    let good = r#"{"name":"Ada","email":"ada@example.com","age":36,"born":"1815-12-10T00:00:00Z"}"#;
    let r = w.post_json("/users/new", good);
    assert_eq!(r.status, 200, "{}", r.text());
    // The validated body is forwarded unchanged.
    assert_eq!(w.up.requests()[0].body, good.as_bytes());
    // Over HTTP/2 too (the body is read from DATA frames, then forwarded from memory).
    let r = Curl::https(w.env.https_port, "/users/h2", w.env.ca_file())
        .http2()
        .header("Content-Type: application/json")
        .body(good.as_bytes(), w.env.path())
        .run();
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(w.up.requests()[1].body, good.as_bytes());

    let cases: &[(&str, (&str, &str))] = &[
        (
            r#"{"name":"Ada","email":"ada@example.com","age":"SECRET-36"}"#,
            ("/age", "type"),
        ),
        (r#"{"email":"ada@example.com"}"#, ("", "required")),
        (
            r#"{"name":"Ada","email":"ada@example.com","admin":true}"#,
            ("", "additionalProperties"),
        ),
        (
            r#"{"name":"Ada","email":"SECRET-not-an-email"}"#,
            ("/email", "format"),
        ),
        (
            r#"{"name":"Ada","email":"ada@example.com","born":"SECRET-yesterday"}"#,
            ("/born", "format"),
        ),
        (
            r#"{"name":"Ada","email":"ada@example.com","tags":["a",7]}"#,
            ("/tags/1", "type"),
        ),
        (
            r#"{"name":"Ada","email":"ada@example.com","age":1,"age":"SECRET"}"#,
            ("", "duplicate_key"),
        ),
        (r#"{"name": "Ada", SECRET"#, ("", "json")),
    ];
    for (body, want) in cases {
        let r = w.post_json("/users/new", body);
        let got = rules(&r);
        assert_eq!(
            got[0],
            (want.0.to_string(), want.1.to_string()),
            "{body}: {}",
            r.text()
        );
        // Short and safe: no value is echoed, nothing about the schema file.
        let text = r.text();
        assert!(!text.contains("SECRET"), "value echoed: {text}");
        assert!(
            !text.contains("schema.json") && !text.contains(w.env.path().to_str().unwrap()),
            "{text}"
        );
        assert_eq!(r.header("content-type"), Some("application/json"));
    }
    let r = w.post_json(
        "/users/new",
        r#"{"name":"Ada","email":"ada@example.com","age":"x"}"#,
    );
    let j = r.json();
    assert_eq!(j["message"], "request validation failed");
    assert_eq!(j["details"][0]["message"], "expected integer");
    let r = w.post_json("/users/new", r#"{"email":"ada@example.com"}"#);
    assert_eq!(
        r.json()["details"][0]["message"],
        "missing required property \"name\""
    );

    // A schema route needs a body on POST.
    let r = w.send("POST", "/users/new", Some("application/json"), b"");
    assert_eq!(rules(&r), [("".to_string(), "required".to_string())]);
    // GET carries no body and passes.
    assert_eq!(w.send("GET", "/users/1", None, b"").status, 200);

    // Inline schema; `+json` types listed in content_types are JSON too.
    assert_eq!(w.post_json("/inline/x", r#"{"n": 3}"#).status, 200);
    assert_eq!(
        rules(&w.post_json("/inline/x", r#"{"n": 3.5}"#))[0].1,
        "type"
    );
    let r = w.send(
        "POST",
        "/inline/x",
        Some("application/merge-patch+json"),
        br#"{"n":"a"}"#,
    );
    assert_eq!(rules(&r)[0], ("/n".to_string(), "type".to_string()));

    assert_eq!(
        w.seen(),
        ["/users/new", "/users/h2", "/users/1", "/inline/x"],
        "an invalid body reached the upstream"
    );
}

#[test]
fn wrong_content_type_is_415() {
    let w = world();
    // "" sends no Content-Type at all.
    for ct in ["text/plain", "application/x-www-form-urlencoded", ""] {
        let r = w.send(
            "POST",
            "/users/new",
            Some(ct),
            br#"{"name":"Ada","email":"ada@example.com"}"#,
        );
        assert_eq!(r.status, 415, "{ct:?}: {}", r.text());
        assert_eq!(r.json()["error"], "unsupported_media_type");
    }
    // Type and parameters compare case-insensitively, parameters ignored.
    let r = w.send(
        "POST",
        "/users/new",
        Some("Application/JSON; charset=UTF-8"),
        br#"{"name":"Ada","email":"ada@example.com"}"#,
    );
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(w.seen(), ["/users/new"]);
}

#[test]
fn deep_and_huge_json_refused_before_the_upstream() {
    let w = world();
    // 100 000 levels, chunked: refused at depth 17 with a 400 (no recursion, no crash),
    // without the rest being read.
    let (status, sent, text) = streamed(&w, "deep");
    assert_eq!(status, 400, "{text}");
    assert!(text.contains("\"rule\":\"max_depth\""), "{text}");
    assert!(sent < 100_000, "sent {sent}");
    let deep_obj = "{\"a\":".repeat(20) + "1" + &"}".repeat(20);
    assert_eq!(
        rules(&w.post_json("/users/deep", &deep_obj))[0].1,
        "max_depth"
    );

    // A declared 10 MB body over max_body = 64k: 413 at once.
    let huge = format!("[\"{}\"]", "x".repeat(10 * 1024 * 1024));
    let r = w.send(
        "POST",
        "/users/huge",
        Some("application/json"),
        huge.as_bytes(),
    );
    assert_eq!(r.status, 413, "{}", r.text());

    // 10 MB chunked (no declared size): the gateway stops reading shortly after 64 KB and
    // answers 413; the client could only push a fraction of the 10 MB before that.
    let (status, sent, text) = streamed(&w, "string");
    assert_eq!(status, 413, "{text}");
    assert!(
        sent < 4 * 1024 * 1024,
        "the client sent {sent} bytes before the refusal"
    );
    eprintln!("chunked 10 MB: {sent} bytes sent before the 413");

    assert!(
        w.seen().is_empty(),
        "a refused body reached the upstream: {:?}",
        w.seen()
    );
}

/// Streams a chunked JSON body to /users/stream ("string": a 10 MB string;
/// "deep": 100 000 '[') and stops sending as soon as a response is readable:
/// (status, body bytes sent, response).
fn streamed(w: &World, kind: &str) -> (u16, u64, String) {
    let out = python(
        CHUNKED_CLIENT,
        &[
            &w.env.https_port.to_string(),
            w.env.ca_file().to_str().unwrap(),
            kind,
        ],
    );
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let (first, rest) = text.split_once('\n').unwrap_or((&text, ""));
    let mut it = first.split_whitespace();
    let status: u16 = it.next().and_then(|s| s.parse().ok()).unwrap_or(0);
    let sent: u64 = it.next().and_then(|s| s.parse().ok()).unwrap_or(u64::MAX);
    (status, sent, rest.to_string())
}

const CHUNKED_CLIENT: &str = r#"
import socket, ssl, sys, select
port, ca, kind = int(sys.argv[1]), sys.argv[2], sys.argv[3]
ctx = ssl.create_default_context(cafile=ca)
s = ctx.wrap_socket(socket.create_connection(("127.0.0.1", port)), server_hostname="localhost")
s.sendall(b"POST /users/stream HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n")
sent = 0
chunk = b"x" * 16384 if kind == "string" else b"[" * 16384
first = b'["' + chunk[2:] if kind == "string" else chunk
count = 640 if kind == "string" else 7
body = b""
try:
    for i in range(count):
        data = first if i == 0 else chunk
        s.sendall(b"%x\r\n" % len(data) + data + b"\r\n")
        sent += len(data)
        r, _, _ = select.select([s], [], [], 0.005)
        if r:
            # Readable may be only a TLS session ticket: a response is application data.
            s.setblocking(False)
            try:
                body += s.recv(65536)
            except ssl.SSLWantReadError:
                pass
            s.setblocking(True)
            if body:
                break
except (BrokenPipeError, ConnectionResetError, ssl.SSLError):
    pass
s.settimeout(30)
def complete(b):
    head, sep, rest = b.partition(b"\r\n\r\n")
    if not sep:
        return False
    for line in head.split(b"\r\n"):
        if line.lower().startswith(b"content-length:"):
            return len(rest) >= int(line.split(b":")[1])
    return False
try:
    while not complete(body):
        d = s.recv(65536)
        if not d:
            break
        body += d
except (ConnectionResetError, ssl.SSLError, socket.timeout):
    pass
status = body.split(b" ")[1].decode() if body.startswith(b"HTTP/1.1") else "0"
print(status, sent)
print(body.decode("latin-1"))
"#;

#[test]
fn openapi_parameters_and_bodies() {
    let w = world();
    // The route strips /api; the document's server base is /v1: /api/v1/users/{id}.
    assert_eq!(
        w.send("GET", "/api/v1/users/42?view=full", None, b"")
            .status,
        200
    );
    let r = w.send("GET", "/api/v1/users/abc", None, b"");
    assert_eq!(rules(&r), [("path.id".to_string(), "type".to_string())]);
    assert_eq!(
        rules(&w.send("GET", "/api/v1/users/0", None, b""))[0].1,
        "minimum"
    );
    let r = w.send("GET", "/api/v1/users/7?view=SECRET", None, b"");
    assert_eq!(rules(&r), [("query.view".to_string(), "enum".to_string())]);
    assert!(!r.text().contains("SECRET"));

    let r = w.send("GET", "/api/v1/search?limit=10", None, b"");
    assert_eq!(rules(&r), [("query.q".to_string(), "required".to_string())]);
    // Query strings are coerced: "10" is an integer, "true" a boolean.
    assert_eq!(
        w.send("GET", "/api/v1/search?q=ab&limit=10&exact=true", None, b"")
            .status,
        200
    );
    let r = w.send(
        "GET",
        "/api/v1/search?q=ab&limit=1000&exact=maybe",
        None,
        b"",
    );
    assert_eq!(
        rules(&r),
        [
            ("query.limit".to_string(), "maximum".to_string()),
            ("query.exact".to_string(), "type".to_string())
        ]
    );

    // Request body from the document ($ref to components, 3.0 nullable).
    let put = |body: &str, ct: &str| w.send("PUT", "/api/v1/users/5", Some(ct), body.as_bytes());
    assert_eq!(
        put(r#"{"name":"a","nickname":null}"#, "application/json").status,
        200
    );
    assert_eq!(
        rules(&put(r#"{"nickname":"b"}"#, "application/json"))[0].1,
        "required"
    );
    assert_eq!(
        rules(&put(r#"{"name":"a","x":1}"#, "application/json"))[0].1,
        "additionalProperties"
    );
    assert_eq!(put(r#"name=a"#, "text/plain").status, 415);
    let r = w.send("PUT", "/api/v1/users/5", None, b"");
    assert_eq!(rules(&r), [("".to_string(), "required".to_string())]);

    // Unknown operations with reject_unknown: 404 for a path, 405 (+ Allow) for a method.
    let r = w.send("GET", "/api/v1/admin", None, b"");
    assert_eq!(r.status, 404, "{}", r.text());
    let r = w.send("DELETE", "/api/v1/users/5", None, b"");
    assert_eq!(r.status, 405, "{}", r.text());
    assert_eq!(r.header("allow"), Some("GET, PUT"));

    assert_eq!(
        w.seen(),
        [
            "/v1/users/42?view=full",
            "/v1/search?q=ab&limit=10&exact=true",
            "/v1/users/5"
        ],
    );
}

#[test]
fn routes_without_body_rules_stream_large_bodies() {
    let w = world();
    let big = vec![b'z'; 3 * 1024 * 1024];
    // No [route.validate]: 3 MB passes whole.
    let r = w.send("POST", "/files/big", Some("application/octet-stream"), &big);
    assert_eq!(r.status, 200, "{}", r.text());
    // A validate table with only content types (and JSON limits): non-JSON bodies are not
    // buffered or limited by the JSON max_body; they stream through.
    let r = w.send(
        "POST",
        "/uploads/big",
        Some("application/octet-stream"),
        &big,
    );
    assert_eq!(r.status, 200, "{}", r.text());
    let seen = w.up.requests();
    assert_eq!(seen.len(), 2);
    assert!(seen.iter().all(|s| s.body.len() == big.len()));
    // The same route parses JSON with its limits (over 1 MB, so curl waits for 100-continue
    // and sees the early 413 instead of a reset).
    let r = w.send(
        "POST",
        "/uploads/j",
        Some("application/json"),
        format!("[\"{}\"]", "y".repeat(1_100_000)).as_bytes(),
    );
    assert_eq!(r.status, 413);
    assert_eq!(rules(&w.post_json("/uploads/j", "[1,"))[0].1, "json");
    assert_eq!(w.post_json("/uploads/j", "[1,2]").status, 200);
}

#[test]
fn schema_problems_are_config_errors() {
    let env = env();
    std::fs::write(env.path().join("bad.json"), "{\"type\": 12}").unwrap();
    std::fs::write(env.path().join("broken.json"), "{\"type\": \n").unwrap();
    std::fs::write(env.path().join("api.yaml"), "openapi: 3.0.0\npaths:\n  /a:\n    post:\n      requestBody:\n        content:\n          application/json:\n            schema: { $ref: '#/components/schemas/Missing' }\n").unwrap();
    for (value, needle) in [
        ("schema = \"missing.json\"", "cannot read schema file"),
        ("schema = \"bad.json\"", "is not a valid JSON Schema"),
        ("schema = \"broken.json\"", "is not JSON"),
        ("openapi = \"api.yaml\"", "paths./a.post.requestBody"),
        ("max_depth = 1000", "out of range"),
    ] {
        let toml = echo_config(
            &env,
            &format!("[[route]]\npath = \"/\"\nupstream = \"echo\"\n[route.validate]\n{value}\n"),
        );
        let out = env.check("portcullis.toml", &toml);
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{value}: {err}");
        let line = toml.lines().position(|l| l == value).unwrap() + 1;
        assert!(
            err.contains(&format!("portcullis.toml:{line}:")),
            "{value}: {err}"
        );
        assert!(
            err.contains(needle) && err.contains("route") && err.contains("fix:"),
            "{value}: {err}"
        );
    }
    // A switch that does nothing is a warning, not an error.
    let toml = echo_config(
        &env,
        "[[route]]\npath = \"/\"\nupstream = \"echo\"\n[route.validate]\nreject_unknown = true\n",
    );
    let out = env.check("portcullis.toml", &toml);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{err}");
    assert!(err.contains("has no effect without `openapi`"), "{err}");
}
