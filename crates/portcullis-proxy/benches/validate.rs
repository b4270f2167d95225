//! What request validation adds per request on a typical 1 KiB JSON body:
//! the streaming limit scan alone, scan + parse, and scan + parse + JSON
//! Schema (draft 2020-12, formats asserted) — the whole `check_json` the
//! stack runs on a `[route.validate] schema = …` route — plus an OpenAPI
//! operation lookup with path and query parameter checks.
//!
//!   cargo bench -p portcullis-proxy --bench validate -- --quick

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, Criterion};
use portcullis_proxy::validate::openapi::{check_params, parse, Lookup, OpenApi};
use portcullis_proxy::validate::{compile_schema, Draft, JsonLimits, Scanner, Validation};
use serde_json::json;

fn schema() -> serde_json::Value {
    json!({
        "type": "object",
        "required": ["id", "email", "name", "items"],
        "additionalProperties": false,
        "properties": {
            "id": {"type": "integer", "minimum": 1},
            "email": {"type": "string", "format": "email"},
            "name": {"type": "string", "maxLength": 80},
            "created": {"type": "string", "format": "date-time"},
            "tags": {"type": "array", "items": {"type": "string"}, "maxItems": 20},
            "items": {
                "type": "array",
                "items": {
                    "type": "object",
                    "required": ["sku", "qty", "price"],
                    "properties": {
                        "sku": {"type": "string", "pattern": "^[A-Z0-9-]+$"},
                        "qty": {"type": "integer", "minimum": 1},
                        "price": {"type": "number", "minimum": 0}
                    }
                }
            }
        }
    })
}

/// About 1 KiB, valid against `schema()`.
fn body() -> Vec<u8> {
    let items: Vec<_> = (0..17)
        .map(|i| json!({"sku": format!("SKU-{i:04}-AB"), "qty": i + 1, "price": 9.99 + i as f64}))
        .collect();
    let doc = json!({
        "id": 4711,
        "email": "ada.lovelace@example.com",
        "name": "Ada Lovelace",
        "created": "2026-11-29T02:00:00Z",
        "tags": ["vip", "beta", "eu-west", "newsletter"],
        "items": items,
    });
    serde_json::to_vec(&doc).unwrap()
}

const API: &str = r#"
openapi: 3.1.0
paths:
  /orders/{id}:
    get:
      parameters:
        - { name: id, in: path, required: true, schema: { type: integer, minimum: 1 } }
        - { name: view, in: query, schema: { type: string, enum: [short, full] } }
        - { name: limit, in: query, schema: { type: integer, maximum: 100 } }
"#;

fn bench(c: &mut Criterion) {
    let data = body();
    assert!((900..1200).contains(&data.len()), "{} bytes", data.len());
    let v = Validation {
        content_types: vec!["application/json".into()],
        limits: JsonLimits::default(),
        explicit_limits: true,
        schema: Some(compile_schema(&schema(), Draft::Draft202012).unwrap()),
        openapi: None,
        reject_unknown: false,
    };
    let limits = JsonLimits::default();
    assert!(v.check_json(&data, v.schema.as_ref(), limits).is_ok());

    let mut g = c.benchmark_group("validate_1k");
    g.bench_function("scan_limits", |b| {
        b.iter(|| Scanner::new(limits).feed(black_box(&data)).is_ok())
    });
    g.bench_function("scan_parse", |b| {
        b.iter(|| v.check_json(black_box(&data), None, limits).is_ok())
    });
    g.bench_function("scan_parse_schema", |b| {
        b.iter(|| {
            v.check_json(black_box(&data), v.schema.as_ref(), limits)
                .is_ok()
        })
    });
    g.finish();

    let api = OpenApi::compile(parse(API).unwrap()).unwrap();
    let headers = http::HeaderMap::new();
    c.bench_function("openapi_lookup_and_params", |b| {
        b.iter(|| {
            let Lookup::Found { op, params } =
                api.lookup(&http::Method::GET, black_box("/orders/42"))
            else {
                panic!("no operation")
            };
            let mut out = Vec::new();
            check_params(op, &params, Some("view=full&limit=10"), &headers, &mut out);
            assert!(out.is_empty());
        })
    });
}

criterion_group!(benches, bench);
criterion_main!(benches);
