//! Request path normalisation (`route::normalize_path`), the step that
//! decides which route a request reaches and what path goes upstream.
//! Asserts on every accepted path: it starts with `/`; normalising it again
//! gives the same path (idempotent, so the router and the backend agree);
//! no `.`/`..` segment, empty segment, backslash or encoded separator
//! survives; and a prefix never matches inside a segment.
#![no_main]

use libfuzzer_sys::fuzz_target;
use portcullis_proxy::route::{normalize_path, prefix_matches};

fuzz_target!(|data: &[u8]| {
    let Ok(path) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(norm) = normalize_path(path) else {
        return;
    };
    assert!(norm.starts_with('/'), "{path:?} -> {norm:?}");
    let again = normalize_path(&norm)
        .unwrap_or_else(|e| panic!("{path:?} -> {norm:?} refused the second time: {e}"));
    assert_eq!(again, norm, "not idempotent for {path:?}");
    assert!(!norm.contains('\\'), "{path:?} -> {norm:?}");
    let lower = norm.to_ascii_lowercase();
    for bad in ["%2f", "%5c", "%00"] {
        assert!(!lower.contains(bad), "{path:?} -> {norm:?} keeps {bad}");
    }
    // Interior segments are never empty, "." or "..".
    let body = norm.strip_prefix('/').unwrap_or(&norm);
    let body = body.strip_suffix('/').unwrap_or(body);
    if !body.is_empty() {
        for seg in body.split('/') {
            assert!(
                !matches!(seg, "" | "." | ".."),
                "{path:?} -> {norm:?} keeps segment {seg:?}"
            );
        }
    }
    // A prefix made of the first segments matches; cut inside a segment it
    // matches only on a boundary.
    for (i, _) in norm.char_indices().skip(1) {
        let prefix = &norm[..i];
        let on_boundary = norm.as_bytes()[i] == b'/' || prefix.ends_with('/');
        assert_eq!(
            prefix_matches(prefix, &norm),
            on_boundary,
            "prefix {prefix:?} of {norm:?}"
        );
    }
});
