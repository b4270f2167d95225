//! GraphQL limits per route ([route.graphql]) through the real binary:
//! refusals are HTTP 400 with a GraphQL `errors` body and never reach the
//! upstream (a recording mock proves it); accepted requests reach it byte for
//! byte; persisted queries by SHA-256 in allowlist-only mode, from Python
//! `requests`; config errors name the line, field and fix.

mod common;
use common::*;

fn sha256_hex(s: &str) -> String {
    use portcullis_proxy::graphql::{hex, sha256};
    hex(&sha256(s.as_bytes()))
}

const ALLOWED: &str = "query Me { me { id name } }";
const PAGED: &str = "query Users($n: Int) { users(first: $n) { id name } }";

/// Writes the allowlist and returns a config: /graphql with limits, /pq allowlist-only,
/// the admin API (metrics) on `admin`.
fn config(env: &TestEnv, up: &MockUpstream, admin: u16) -> String {
    let allow = serde_json::json!({
        sha256_hex(ALLOWED): ALLOWED,
        sha256_hex(PAGED): PAGED,
    });
    std::fs::write(env.path().join("persisted.json"), allow.to_string()).unwrap();
    env.config_with(&format!(
        "[admin]\naddress = \"127.0.0.1:{admin}\"\n\n\
         [[upstream]]\nname = \"gql\"\nservers = [\"{}\"]\n\n\
         [[route]]\nname = \"graphql\"\npath = \"/graphql\"\nupstream = \"gql\"\n\
         [route.graphql]\nmax_depth = 5\nmax_aliases = 5\nmax_root_fields = 5\nmax_batch = 3\n\
         max_cost = 100\nintrospection = \"deny\"\nweights = {{ \"Query.users\" = 2, \"posts\" = 3 }}\n\n\
         [[route]]\nname = \"pq\"\npath = \"/pq\"\nupstream = \"gql\"\n\
         [route.graphql]\npersisted_queries = \"persisted.json\"\nallowlist_only = true\nmax_cost = 100\n",
        up.authority()
    ))
}

fn post(env: &TestEnv, path: &str, body: &serde_json::Value) -> HttpResponse {
    Curl::https(env.https_port, path, env.ca_file())
        .header("Content-Type: application/json")
        .body(body.to_string().as_bytes(), env.path())
        .run()
}

/// A refusal: 400, JSON, `errors[0].extensions.code`.
fn refused(r: &HttpResponse, code: &str) -> String {
    assert_eq!(r.status, 400, "{}", r.text());
    assert!(
        r.header("content-type")
            .is_some_and(|c| c.starts_with("application/json")),
        "{:?}",
        r.header("content-type")
    );
    let j = r.json();
    assert_eq!(j["errors"][0]["extensions"]["code"], code, "{j}");
    j["errors"][0]["message"].as_str().unwrap_or("").to_string()
}

fn nested(depth: usize) -> String {
    format!(
        "{{{}{}}}",
        "a {".repeat(depth - 1) + "b",
        " }".repeat(depth - 1)
    )
}

#[test]
fn limits_refuse_before_the_upstream_and_pass_the_rest_untouched() {
    let env = env();
    let up = MockUpstream::start("graphql-upstream");
    let admin = free_port();
    let gw = env.start(&config(&env, &up, admin));
    let mut accepted: Vec<String> = Vec::new();

    // Accepted: a plain query, forwarded byte for byte (the gateway buffered it).
    let ok = serde_json::json!({ "query": "{ me { id posts { title } } }", "operationName": null });
    let r = post(&env, "/graphql", &ok);
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.text(), "graphql-upstream");
    accepted.push(ok.to_string());
    // __typename is not introspection.
    let tn = serde_json::json!({ "query": "{ __typename me { __typename id } }" });
    assert_eq!(post(&env, "/graphql", &tn).status, 200);
    accepted.push(tn.to_string());
    // A list multiplier from variables within the cost limit: 2 + 10 × 2 = 22.
    let v = serde_json::json!({ "query": PAGED, "variables": { "n": 10 } });
    assert_eq!(post(&env, "/graphql", &v).status, 200);
    accepted.push(v.to_string());

    // Refused, each with its code.
    let m = refused(
        &post(
            &env,
            "/graphql",
            &serde_json::json!({ "query": nested(12) }),
        ),
        "GRAPHQL_DEPTH_LIMIT",
    );
    assert_eq!(m, "query depth 12 exceeds the limit of 5");
    let bomb = format!(
        "{{ {} }}",
        (0..200)
            .map(|i| format!("a{i}: me {{ id }}"))
            .collect::<Vec<_>>()
            .join(" ")
    );
    refused(
        &post(&env, "/graphql", &serde_json::json!({ "query": bomb })),
        "GRAPHQL_ALIAS_LIMIT",
    );
    refused(
        &post(
            &env,
            "/graphql",
            &serde_json::json!({ "query": "{ me { ...A } } fragment A on User { friends { ...B } } fragment B on User { friends { ...A } }" }),
        ),
        "GRAPHQL_FRAGMENT_CYCLE",
    );
    let batch: Vec<_> = (0..1000)
        .map(|_| serde_json::json!({ "query": "{ me { id } }" }))
        .collect();
    let m = refused(
        &post(&env, "/graphql", &serde_json::Value::Array(batch)),
        "GRAPHQL_BATCH_LIMIT",
    );
    assert_eq!(m, "a batch of 1000 operations exceeds the limit of 3");
    refused(
        &post(
            &env,
            "/graphql",
            &serde_json::json!({ "query": "{ __schema { types { name } } }" }),
        ),
        "GRAPHQL_INTROSPECTION_DISABLED",
    );
    let m = refused(
        &post(
            &env,
            "/graphql",
            &serde_json::json!({ "query": PAGED, "variables": { "n": 1000 } }),
        ),
        "GRAPHQL_COST_LIMIT",
    );
    assert_eq!(m, "query cost 2002 exceeds the limit of 100");
    refused(
        &post(
            &env,
            "/graphql",
            &serde_json::json!({ "query": "{ me { id " }),
        ),
        "GRAPHQL_PARSE_FAILED",
    );
    // A hostile nesting far past the parser's limit: refused, the gateway still answers.
    let hostile = format!("{{ a(x: {}1{}) }}", "[".repeat(5000), "]".repeat(5000));
    refused(
        &post(&env, "/graphql", &serde_json::json!({ "query": hostile })),
        "GRAPHQL_DEPTH_LIMIT",
    );

    // GET: the query string is checked the same way, over HTTP/2 too.
    let r = Curl::https(
        env.https_port,
        "/graphql?query=%7B%20me%20%7B%20id%20%7D%20%7D",
        env.ca_file(),
    )
    .http2()
    .run();
    assert_eq!(r.status, 200, "{}", r.text());
    let r = Curl::https(
        env.https_port,
        "/graphql?query=%7B__schema%7Btypes%7Bname%7D%7D%7D",
        env.ca_file(),
    )
    .http2()
    .run();
    refused(&r, "GRAPHQL_INTROSPECTION_DISABLED");

    // The upstream saw exactly the accepted requests, bodies as sent.
    let seen = up.requests();
    let posts: Vec<String> = seen
        .iter()
        .filter(|s| s.request_line.starts_with("POST"))
        .map(|s| String::from_utf8_lossy(&s.body).into_owned())
        .collect();
    assert_eq!(posts, accepted);
    let gets: Vec<&str> = seen
        .iter()
        .filter(|s| s.request_line.starts_with("GET"))
        .map(|s| s.target())
        .collect();
    assert_eq!(gets, ["/graphql?query=%7B%20me%20%7B%20id%20%7D%20%7D"]);
    // Refusals are counted by reason (Prometheus) and logged with it.
    let metrics = Curl::new(format!("http://127.0.0.1:{admin}/metrics"))
        .run()
        .text();
    for (reason, n) in [
        ("depth", 2),
        ("aliases", 1),
        ("fragment_cycle", 1),
        ("batch", 1),
        ("introspection", 2),
        ("cost", 1),
        ("parse_error", 1),
    ] {
        let series = format!("portcullis_graphql_rejections_total{{reason=\"{reason}\"}} {n}");
        assert!(
            metrics.lines().any(|l| l == series),
            "no `{series}` in:\n{}",
            metrics
                .lines()
                .filter(|l| l.contains("graphql"))
                .collect::<Vec<_>>()
                .join("\n")
        );
    }
    let log = gw.stderr_text();
    for reason in [
        "depth",
        "aliases",
        "fragment_cycle",
        "batch",
        "introspection",
        "cost",
        "parse_error",
    ] {
        assert!(
            log.contains(&format!("reason=\"{reason}\""))
                || log.contains(&format!("reason={reason}")),
            "no log line with reason {reason}:\n{log}"
        );
    }
}

const PY_CLIENT: &str = r#"
import hashlib, json, sys, requests
port, ca = sys.argv[1], sys.argv[2]
url = f"https://localhost:{port}/pq"
def h(q): return hashlib.sha256(q.encode()).hexdigest()
allowed = "query Me { me { id name } }"
paged = "query Users($n: Int) { users(first: $n) { id name } }"
def send(body):
    r = requests.post(url, json=body, verify=ca, timeout=30)
    code = None
    if r.status_code != 200:
        code = r.json()["errors"][0]["extensions"]["code"]
    return [r.status_code, code]
apq = lambda hh, q=None: dict({"extensions": {"persistedQuery": {"version": 1, "sha256Hash": hh}}}, **({"query": q} if q else {}))
out = {
  "apq_hash_only": send(apq(h(allowed))),
  "apq_with_query": send(apq(h(allowed), allowed)),
  "plain_id": send({"id": h(paged), "variables": {"n": 5}}),
  "document_id": send({"documentId": "sha256:" + h(allowed)}),
  "full_text": send({"query": allowed}),
  "unknown_hash": send(apq(h("{ secrets }"))),
  "free_form": send({"query": "{ secrets }"}),
  "mismatch": send(apq(h(allowed), "query Me { me { id name password } }")),
  "allowlisted_but_costly": send({"id": h(paged), "variables": {"n": 100000}}),
}
print(json.dumps(out))
"#;

#[test]
fn persisted_queries_allowlist_only_from_python_requests() {
    let env = env();
    let up = MockUpstream::start("pq-upstream");
    let _gw = env.start(&config(&env, &up, free_port()));
    let out = python(
        PY_CLIENT,
        &[&env.https_port.to_string(), env.ca_file().to_str().unwrap()],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let j: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let expect = [
        ("apq_hash_only", 200, None),
        ("apq_with_query", 200, None),
        ("plain_id", 200, None),
        ("document_id", 200, None),
        ("full_text", 200, None),
        ("unknown_hash", 400, Some("PERSISTED_QUERY_NOT_IN_LIST")),
        ("free_form", 400, Some("QUERY_NOT_IN_SAFELIST")),
        ("mismatch", 400, Some("PERSISTED_QUERY_HASH_MISMATCH")),
        ("allowlisted_but_costly", 400, Some("GRAPHQL_COST_LIMIT")),
    ];
    for (name, status, code) in expect {
        assert_eq!(j[name][0], status, "{name}: {j}");
        assert_eq!(j[name][1].as_str(), code, "{name}: {j}");
    }
    // Five accepted requests reached the upstream as sent: the hash-only one without a query.
    let seen = up.requests();
    assert_eq!(seen.len(), 5, "{seen:?}");
    let first: serde_json::Value = serde_json::from_slice(&seen[0].body).unwrap();
    assert_eq!(
        first["extensions"]["persistedQuery"]["sha256Hash"],
        sha256_hex(ALLOWED)
    );
    assert!(first.get("query").is_none());
    for s in &seen {
        let body = String::from_utf8_lossy(&s.body);
        assert!(
            !body.contains("secrets") && !body.contains("password"),
            "{body}"
        );
    }
}

#[test]
fn graphql_config_errors_name_line_field_and_fix() {
    let env = env();
    let up = MockUpstream::start("unused");
    let base = |graphql: &str| {
        env.config_with(&format!(
            "[[upstream]]\nname = \"gql\"\nservers = [\"{}\"]\n\n\
             [[route]]\nname = \"g\"\npath = \"/graphql\"\nupstream = \"gql\"\n[route.graphql]\n{graphql}",
            up.authority()
        ))
    };
    let check = |toml: String| {
        let out = env.check("portcullis.toml", &toml);
        assert_eq!(out.status.code(), Some(2), "{out:?}");
        String::from_utf8_lossy(&out.stderr).into_owned() + &String::from_utf8_lossy(&out.stdout)
    };
    let e = check(base("allowlist_only = true\n"));
    assert!(
        e.contains("route \"g\".graphql.allowlist_only")
            && e.contains("fix: add persisted_queries"),
        "{e}"
    );
    let e = check(base("max_depth = 100\n"));
    assert!(
        e.contains("graphql.max_depth") && e.contains("fix: write a number from 1 to 60"),
        "{e}"
    );
    let e = check(base("introspection = \"sometimes\"\n"));
    assert!(e.contains("use \"allow\" or \"deny\""), "{e}");
    // A hash that is not the SHA-256 of its query: the file is named, with the line of the field.
    std::fs::write(
        env.path().join("pq.json"),
        serde_json::json!({ sha256_hex("{ a }"): "{ b }" }).to_string(),
    )
    .unwrap();
    let toml = base("persisted_queries = \"pq.json\"\n");
    let line = toml
        .lines()
        .position(|l| l.starts_with("persisted_queries"))
        .unwrap()
        + 1;
    let e = check(toml);
    assert!(
        e.contains(&format!("portcullis.toml:{line}:"))
            && e.contains("pq.json")
            && e.contains("is not the SHA-256 of its query"),
        "{e}"
    );
    let e = check(base("weights = { \"Query.users.x\" = 2 }\n"));
    assert!(e.contains("graphql.weights"), "{e}");
    let e = check(base("max_deep = 3\n"));
    assert!(e.contains("unknown field"), "{e}");
    // An allowlisted operation over the route's limits: a warning, the config still loads.
    let deep = "{ a { b { c } } }";
    std::fs::write(
        env.path().join("deep.json"),
        serde_json::json!({ sha256_hex(deep): deep }).to_string(),
    )
    .unwrap();
    let out = env.check(
        "portcullis.toml",
        &base("max_depth = 2\npersisted_queries = \"deep.json\"\n"),
    );
    let text =
        String::from_utf8_lossy(&out.stderr).into_owned() + &String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{text}");
    assert!(
        text.contains("warning")
            && text.contains("1 allowlisted operation(s) exceed this route's limits")
            && text.contains("query depth 3 exceeds the limit of 2"),
        "{text}"
    );
}
