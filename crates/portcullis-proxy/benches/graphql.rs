//! What the GraphQL limits cost per request: the whole check (JSON envelope,
//! parse, fragment order, depth/alias/root-field/cost analysis) of a typical
//! query of ~20 fields and 2 fragments with a list multiplier from variables,
//! parsed each time and found in the parse cache; the same query sent as a
//! persisted hash (lookup of the pre-parsed document, then the analysis); and
//! the hash lookup alone.
//!
//!   cargo bench -p portcullis-proxy --bench graphql -- --quick

use std::hint::black_box;
use std::sync::Arc;

use criterion::{criterion_group, criterion_main, Criterion};
use http::{header, HeaderMap, Method, Uri};
use portcullis_proxy::graphql::{hex, parse_hash, sha256, GraphqlPolicy, PersistedQueries};

const QUERY: &str = r#"
query Dashboard($n: Int!, $after: String) {
  viewer {
    id
    login
    name
    avatarUrl
    repositories(first: $n, after: $after) {
      totalCount
      pageInfo { hasNextPage endCursor }
      nodes { ...Repo }
    }
  }
  recent: search(query: "is:open", first: 5) {
    nodes { ...Issue }
  }
}
fragment Repo on Repository {
  id
  name
  description
  stargazerCount
  updatedAt
}
fragment Issue on Issue {
  id
  title
  number
  author { login }
}
"#;

fn policy() -> GraphqlPolicy {
    let mut p = GraphqlPolicy {
        introspection: false,
        ..GraphqlPolicy::default()
    };
    p.type_weights
        .entry("Query".into())
        .or_default()
        .insert("search".into(), 10);
    p.field_weights.insert("repositories".into(), 2);
    p
}

fn bench(c: &mut Criterion) {
    let mut h = HeaderMap::new();
    h.insert(header::CONTENT_TYPE, "application/json".parse().unwrap());
    let uri = Uri::from_static("/graphql");
    let p = policy();
    let body = serde_json::json!({
        "query": QUERY, "operationName": "Dashboard", "variables": { "n": 20, "after": null }
    })
    .to_string();
    let cost = p
        .check(&Method::POST, &uri, &h, Some(body.as_bytes()))
        .expect("the typical query passes");
    eprintln!("typical query: {} bytes, cost {cost}", QUERY.len());
    // Parsed every time (a query the route has not seen recently) …
    let cold = GraphqlPolicy {
        cache: None,
        ..policy()
    };
    c.bench_function("graphql/check_typical_query_parsed", |b| {
        b.iter(|| {
            cold.check(&Method::POST, &uri, &h, Some(black_box(body.as_bytes())))
                .unwrap()
        })
    });
    // … and found in the parse cache (the same operation again, any variables).
    c.bench_function("graphql/check_typical_query_cached", |b| {
        b.iter(|| {
            p.check(&Method::POST, &uri, &h, Some(black_box(body.as_bytes())))
                .unwrap()
        })
    });

    // The same operation as a persisted query: the gateway looks the hash up.
    let hash = hex(&sha256(QUERY.as_bytes()));
    let file = serde_json::json!({ hash.clone(): QUERY }).to_string();
    let pq = Arc::new(PersistedQueries::from_json(&file).unwrap());
    let mut pp = policy();
    pp.persisted = Some(pq.clone());
    pp.allowlist_only = true;
    let by_hash = serde_json::json!({
        "extensions": { "persistedQuery": { "version": 1, "sha256Hash": hash } },
        "variables": { "n": 20 }
    })
    .to_string();
    c.bench_function("graphql/check_persisted_hash", |b| {
        b.iter(|| {
            pp.check(&Method::POST, &uri, &h, Some(black_box(by_hash.as_bytes())))
                .unwrap()
        })
    });
    c.bench_function("graphql/persisted_lookup_only", |b| {
        b.iter(|| {
            let k = parse_hash(black_box(&hash)).unwrap();
            pq.get(&k).is_some()
        })
    });
}

criterion_group!(benches, bench);
criterion_main!(benches);
