//! The example configs in examples/ are valid: the guide's nginx gateway
//! (examples/nginx-guide.toml) passes `check` once its certificates exist,
//! and an RSA server key works as well as an ECDSA one.

mod common;

use std::process::Command;

use common::*;

fn portcullis(dir: &std::path::Path, args: &[&str]) -> std::process::Output {
    Command::new(BIN)
        .args(args)
        .current_dir(dir)
        .output()
        .expect("run portcullis")
}

#[test]
fn the_nginx_guide_example_is_a_valid_config() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let example =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/nginx-guide.toml");
    std::fs::copy(&example, d.join("nginx-guide.toml")).unwrap();
    std::fs::create_dir_all(d.join("certs")).unwrap();
    for key in ["ecdsa-p256", "rsa-3072"] {
        let _ = std::fs::remove_dir_all(d.join("certs/ca"));
        assert!(
            portcullis(d, &["ca", "init", "--dir", "certs/ca", "--key", key])
                .status
                .success()
        );
        let out = portcullis(
            d,
            &[
                "cert",
                "issue",
                "server",
                "localhost",
                "--ip",
                "127.0.0.1",
                "--dir",
                "certs/ca",
                "--out",
                "certs",
            ],
        );
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        std::fs::rename(d.join("certs/localhost.crt"), d.join("certs/server.crt")).unwrap();
        std::fs::rename(d.join("certs/localhost.key"), d.join("certs/server.key")).unwrap();
        let out = portcullis(d, &["check", "--config", "nginx-guide.toml"]);
        assert!(
            out.status.success(),
            "{key}: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
}
