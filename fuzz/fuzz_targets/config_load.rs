//! Config loader: TOML text → parse (serde, `deny_unknown_fields`) →
//! validate (stage 2, diagnostics naming file:line). Asserts: no panic, an
//! `Err` always carries at least one error, and every diagnostic points at a
//! line that exists in the text (or 0 for "no place").
#![no_main]

use std::path::Path;

use libfuzzer_sys::fuzz_target;

/// A path that does not exist: relative certificate and key paths in the
/// input resolve under it and fail to read, as in a real config with a typo.
const FAKE: &str = "/nonexistent/portcullis-fuzz/portcullis.toml";

fuzz_target!(|data: &[u8]| {
    let Ok(src) = std::str::from_utf8(data) else {
        return;
    };
    // Absolute paths in the input are read for real by validation; keep the
    // fuzzer away from device files that never end (/dev/zero, /dev/stdin).
    if src.contains("/dev") || src.contains("/proc") || src.contains("/sys") {
        return;
    }
    let lines = src.lines().count() + 1;
    let check = |d: &portcullis_proxy::config::Diagnostic| {
        assert!(
            d.line <= lines,
            "diagnostic line {} beyond the text's {lines} lines: {d}",
            d.line
        );
        let _ = d.to_string();
    };
    match portcullis_proxy::config::load_str(Path::new(FAKE), src) {
        Ok((_config, warnings)) => warnings.items.iter().for_each(check),
        Err(diags) => {
            assert!(diags.has_errors(), "Err without an error: {diags:?}");
            diags.items.iter().for_each(check);
        }
    }
});
