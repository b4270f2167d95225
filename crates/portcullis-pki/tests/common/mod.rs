//! Shared helpers for the integration tests: a CA in a temp dir and an `openssl` runner.
#![allow(dead_code)]

use std::path::Path;
use std::process::Command;

use portcullis_pki::{Ca, CaInitOptions, KeyAlgorithm};

pub fn new_ca(dir: &Path, key: KeyAlgorithm) -> Ca {
    Ca::init(
        dir,
        &CaInitOptions {
            key,
            name: "Test Org".into(),
            root_passphrase: None,
        },
    )
    .expect("ca init")
}

/// Runs openssl with `args` in `cwd`; returns (success, stdout + stderr).
pub fn openssl(cwd: &Path, args: &[&str]) -> (bool, String) {
    let out = Command::new("openssl")
        .args(args)
        .current_dir(cwd)
        .output()
        .expect("openssl is installed");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

pub fn assert_openssl(cwd: &Path, args: &[&str]) -> String {
    let (ok, text) = openssl(cwd, args);
    assert!(ok, "openssl {args:?} failed:\n{text}");
    text
}

/// Writes the CA's certs and a leaf (leaf only) into `dir` as root.crt, intermediate.crt and
/// `leaf`.
pub fn write_pems(dir: &Path, ca: &Ca, leaf: &str, cert_pem: &str) {
    std::fs::write(dir.join("root.crt"), ca.root_cert_pem()).unwrap();
    std::fs::write(dir.join("intermediate.crt"), ca.intermediate_cert_pem()).unwrap();
    std::fs::write(dir.join(leaf), cert_pem).unwrap();
}
