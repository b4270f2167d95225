//! One test's world: a temp directory, a test PKI with a server certificate
//! for localhost, a free HTTPS port, and the gateway started on a config
//! written there. Each test makes its own, so tests run in parallel.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::pki::{LeafSpec, TestCa, TestCert};
use crate::process::{free_port, run, GatewayProcess};

/// A temp directory with a CA and a `localhost` server certificate.
pub struct TestEnv {
    pub dir: tempfile::TempDir,
    pub ca: TestCa,
    /// Server certificate for localhost, 127.0.0.1 and ::1 (files `server.crt`, `server.key`).
    pub server: TestCert,
    /// A free port for the HTTPS listener.
    pub https_port: u16,
    bin: PathBuf,
}

impl TestEnv {
    /// `bin` is the gateway binary (`env!("CARGO_BIN_EXE_portcullis")`).
    pub fn new(bin: &str) -> TestEnv {
        let dir = tempfile::tempdir().expect("tempdir");
        let ca = TestCa::new(dir.path(), "Test");
        let server = ca.issue("server", &LeafSpec::server(&["localhost"]));
        TestEnv {
            dir,
            ca,
            server,
            https_port: free_port(),
            bin: PathBuf::from(bin),
        }
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    /// The root CA file clients trust.
    pub fn ca_file(&self) -> &Path {
        &self.ca.root_path
    }

    pub fn bin(&self) -> &Path {
        &self.bin
    }

    /// `[[listener]]` on 127.0.0.1:https_port with the server certificate, then `extra` lines
    /// inside the listener table (before the certificate).
    pub fn listener_toml(&self, extra: &str) -> String {
        format!(
            "[[listener]]\nname = \"https\"\naddress = \"127.0.0.1:{}\"\n{extra}\n[[listener.certificate]]\ncert = \"server.crt\"\nkey = \"server.key\"\n\n",
            self.https_port
        )
    }

    /// A whole config: quiet logs, the listener, then `rest`.
    pub fn config_with(&self, rest: &str) -> String {
        format!(
            "[log]\naccess_log = \"off\"\nlevel = \"info\"\n\n{}{rest}",
            self.listener_toml("")
        )
    }

    /// Writes `toml` to `<dir>/<name>` and returns its path.
    pub fn write(&self, name: &str, toml: &str) -> PathBuf {
        let p = self.dir.path().join(name);
        std::fs::write(&p, toml).expect("write config");
        p
    }

    /// Writes `portcullis.toml` and starts `serve`, waiting for the HTTPS port.
    pub fn start(&self, toml: &str) -> GatewayProcess {
        let cfg = self.write("portcullis.toml", toml);
        GatewayProcess::start(&self.bin, &cfg, self.https_addr())
    }

    pub fn https_addr(&self) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.https_port))
    }

    /// Runs `portcullis check --config <dir>/<name>` on `toml`.
    pub fn check(&self, name: &str, toml: &str) -> std::process::Output {
        let cfg = self.write(name, toml);
        run(Command::new(&self.bin)
            .arg("check")
            .arg("--config")
            .arg(cfg))
    }
}
