//! GraphQL limits (`GraphqlPolicy::check`): reading the request (POST JSON,
//! batches, `application/graphql`, GET query strings), parsing, and the
//! depth / alias / root-field / fragment / cost analysis of hostile
//! documents.
//!
//! The first byte picks the request form (0: POST JSON, 1: POST
//! application/graphql, 2: GET with the rest as query string). Asserts:
//! an accepted single operation costs at most `max_cost`; the parse cache
//! never changes a verdict (a policy with the cache and one without agree,
//! on a first and a second sight of the same text: same cost, same
//! refusal reason); a refusal's body is JSON.
#![no_main]

use std::sync::OnceLock;

use http::{HeaderMap, HeaderValue, Method, Uri};
use libfuzzer_sys::fuzz_target;
use portcullis_proxy::graphql::GraphqlPolicy;

fn policies() -> &'static (GraphqlPolicy, GraphqlPolicy) {
    static P: OnceLock<(GraphqlPolicy, GraphqlPolicy)> = OnceLock::new();
    P.get_or_init(|| {
        let cached = GraphqlPolicy {
            max_cost: 1000,
            introspection: false,
            ..GraphqlPolicy::default()
        };
        let uncached = GraphqlPolicy {
            cache: None,
            ..cached.clone()
        };
        (cached, uncached)
    })
}

fn verdict(r: &Result<u64, portcullis_proxy::graphql::Refusal>) -> Result<u64, String> {
    match r {
        Ok(c) => Ok(*c),
        Err(e) => {
            let body: serde_json::Value =
                serde_json::from_str(&e.body("fuzz")).expect("a refusal body is JSON");
            assert!(body["errors"][0]["message"].is_string());
            assert!(!e.message().is_empty());
            // The reason, not the message: which fragment of a cycle the
            // message names depends on hash-map order.
            Err(e.reason().to_string())
        }
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    let (cached, uncached) = policies();
    let mut headers = HeaderMap::new();
    let (method, uri, body) = match mode % 3 {
        0 | 1 => {
            let ct = if mode % 3 == 0 {
                "application/json"
            } else {
                "application/graphql"
            };
            headers.insert("content-type", HeaderValue::from_static(ct));
            (Method::POST, Uri::from_static("/graphql"), Some(rest))
        }
        _ => {
            let Ok(q) = std::str::from_utf8(rest) else {
                return;
            };
            let Ok(uri) = format!("/graphql?{q}").parse::<Uri>() else {
                return;
            };
            (Method::GET, uri, None)
        }
    };
    let first = verdict(&cached.check(&method, &uri, &headers, body));
    let second = verdict(&cached.check(&method, &uri, &headers, body));
    let plain = verdict(&uncached.check(&method, &uri, &headers, body));
    assert_eq!(first, plain, "the parse cache changed the verdict");
    assert_eq!(second, plain, "a cached document changed the verdict");
    let batch = mode % 3 == 0 && rest.trim_ascii_start().first() == Some(&b'[');
    if let (Ok(cost), false) = (plain, batch) {
        assert!(
            cost <= cached.max_cost,
            "cost {cost} accepted over {}",
            cached.max_cost
        );
    }
});
