//! Shared helpers of tests/pki_cli.rs and tests/pki_gateway.rs: run the `portcullis`
//! binary and `openssl`, read certificates.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

pub fn bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_portcullis"))
}

/// Exit code and output of a finished process.
#[derive(Debug)]
pub struct Out {
    pub code: Option<i32>,
    pub stdout: String,
    pub stderr: String,
}

impl Out {
    pub fn ok(&self) -> bool {
        self.code == Some(0)
    }

    /// Panics with the output unless the process exited 0.
    #[track_caller]
    pub fn expect_ok(self, what: &str) -> Out {
        assert!(self.ok(), "{what} failed: {self:#?}");
        self
    }

    /// Panics unless the process failed and stderr mentions `needle`.
    #[track_caller]
    pub fn expect_refused(self, what: &str, needle: &str) -> Out {
        assert!(!self.ok(), "{what} should be refused: {self:#?}");
        assert!(
            self.stderr.contains(needle),
            "{what}: stderr should mention {needle:?}: {self:#?}"
        );
        self
    }
}

pub fn run_cmd(cmd: &mut Command) -> Out {
    let o = cmd
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"));
    Out {
        code: o.status.code(),
        stdout: String::from_utf8_lossy(&o.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&o.stderr).into_owned(),
    }
}

/// `portcullis` with a clean environment for the CA settings.
pub fn pc_cmd(args: &[&str]) -> Command {
    let mut c = Command::new(bin());
    c.args(args)
        .env_remove("PORTCULLIS_CA_DIR")
        .env_remove("PORTCULLIS_TEST_SHORT_VALIDITY")
        .env("RUST_LOG", "info");
    c
}

pub fn pc(args: &[&str]) -> Out {
    run_cmd(&mut pc_cmd(args))
}

pub fn openssl(args: &[&str]) -> Out {
    run_cmd(Command::new("openssl").args(args))
}

pub fn s(p: &Path) -> &str {
    p.to_str().expect("utf-8 path")
}

/// `portcullis ca init --dir DIR` plus extra arguments.
pub fn init_ca(dir: &Path, extra: &[&str]) {
    let mut args = vec!["ca", "init", "--dir", s(dir)];
    args.extend_from_slice(extra);
    pc(&args).expect_ok("ca init");
}

/// root.crt + intermediate.crt in one file, for `openssl crl/ocsp -CAfile`.
pub fn write_chain_file(ca: &Path, out: &Path) {
    let mut pem = std::fs::read_to_string(ca.join("root.crt")).expect("root.crt");
    pem.push_str(&std::fs::read_to_string(ca.join("intermediate.crt")).expect("intermediate.crt"));
    std::fs::write(out, pem).expect("write chain file");
}

/// Parsed facts about the first certificate of a PEM file.
#[derive(Debug, Clone)]
pub struct CertInfo {
    pub serial: String,
    pub subject_cn: String,
    pub not_before: i64,
    pub not_after: i64,
}

pub fn cert_info(path: &Path) -> CertInfo {
    let pem = std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    cert_info_pem(&pem)
}

pub fn cert_info_pem(pem: &[u8]) -> CertInfo {
    use rustls_pki_types::pem::PemObject;
    let der = rustls_pki_types::CertificateDer::pem_slice_iter(pem)
        .next()
        .expect("a PEM certificate")
        .expect("valid PEM");
    let (_, c) = x509_parser::parse_x509_certificate(der.as_ref()).expect("X.509");
    let info = CertInfo {
        serial: c
            .raw_serial_as_string()
            .replace(':', "")
            .to_ascii_lowercase()
            .trim_start_matches("00")
            .to_string(),
        subject_cn: c
            .subject()
            .iter_common_name()
            .next()
            .and_then(|cn| cn.as_str().ok())
            .unwrap_or("")
            .to_string(),
        not_before: c.validity().not_before.timestamp(),
        not_after: c.validity().not_after.timestamp(),
    };
    info
}

/// `openssl verify` of the leaf in `cert` (leaf + intermediate) against root.crt.
pub fn openssl_verify(ca: &Path, cert: &Path, purpose: &str) -> Out {
    openssl(&[
        "verify",
        "-CAfile",
        s(&ca.join("root.crt")),
        "-untrusted",
        s(cert),
        "-purpose",
        purpose,
        s(cert),
    ])
}

/// `cert list --json` as parsed objects.
pub fn list_json(ca: &Path) -> Vec<serde_json::Value> {
    let out = pc(&["cert", "list", "--dir", s(ca), "--json"]).expect_ok("cert list --json");
    out.stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("bad JSON line {l:?}: {e}")))
        .collect()
}

/// The serial printed by `cert issue` ("Issued serial …").
pub fn issued_serial(out: &Out) -> String {
    out.stdout
        .lines()
        .find_map(|l| l.strip_prefix("Issued serial "))
        .unwrap_or_else(|| panic!("no serial in {out:#?}"))
        .trim()
        .to_string()
}

#[cfg(unix)]
pub fn mode(p: &Path) -> u32 {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(p)
        .unwrap_or_else(|e| panic!("{}: {e}", p.display()))
        .permissions()
        .mode()
        & 0o777
}
