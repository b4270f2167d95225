//! Revocation data from the network, with real peers: an OpenSSL OCSP
//! responder (`openssl ocsp -port`) and a plain HTTP server for CRL
//! distribution points (Python's http.server). Certificates come from the
//! built-in CA (`portcullis ca init --ocsp-url … --crl-url …`).

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use portcullis_testkit::curl::Curl;
use portcullis_testkit::{free_port, wait_for_port, GatewayProcess};

const BIN: &str = env!("CARGO_BIN_EXE_portcullis");

/// Kills a helper process when dropped.
struct Proc(Child);
impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn run(dir: &Path, args: &[&str]) -> String {
    let out = Command::new(BIN)
        .args(args)
        .current_dir(dir)
        .stdin(Stdio::null())
        .output()
        .expect("run portcullis");
    assert!(
        out.status.success(),
        "portcullis {args:?} failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn serial(cert: &Path) -> String {
    let out = Command::new("openssl")
        .args(["x509", "-noout", "-serial", "-in"])
        .arg(cert)
        .output()
        .expect("openssl");
    String::from_utf8_lossy(&out.stdout)
        .trim()
        .trim_start_matches("serial=")
        .to_string()
}

/// A CA whose certificates name an OCSP responder and a CRL URL on loopback.
struct Pki {
    dir: tempfile::TempDir,
    ocsp_port: u16,
    crl_port: u16,
}

impl Pki {
    fn new() -> Pki {
        let dir = tempfile::tempdir().unwrap();
        let (ocsp_port, crl_port) = (free_port(), free_port());
        let d = dir.path();
        run(
            d,
            &[
                "ca",
                "init",
                "--dir",
                "ca",
                "--ocsp-url",
                &format!("http://127.0.0.1:{ocsp_port}"),
                "--crl-url",
                &format!("http://127.0.0.1:{crl_port}/crl.der"),
            ],
        );
        run(
            d,
            &[
                "cert",
                "issue",
                "server",
                "localhost",
                "--ip",
                "127.0.0.1",
                "--dir",
                "ca",
                "--out",
                ".",
            ],
        );
        run(
            d,
            &[
                "cert", "issue", "client", "alice", "--dir", "ca", "--out", ".",
            ],
        );
        run(
            d,
            &[
                "cert", "issue", "client", "bob", "--dir", "ca", "--out", ".",
            ],
        );
        Pki {
            dir,
            ocsp_port,
            crl_port,
        }
    }

    fn path(&self, p: &str) -> PathBuf {
        self.dir.path().join(p)
    }

    /// `openssl ocsp` as a responder, with alice revoked and the rest good.
    fn ocsp_responder(&self) -> Proc {
        let line = |status: &str, rev: &str, cert: &str, cn: &str| {
            format!(
                "{status}\t301231235959Z\t{rev}\t{}\tunknown\t/CN={cn}\n",
                serial(&self.path(cert))
            )
        };
        let index = line("R", "261101000000Z,keyCompromise", "alice.crt", "alice")
            + &line("V", "", "bob.crt", "bob")
            + &line("V", "", "localhost.crt", "localhost");
        std::fs::write(self.path("index.txt"), index).unwrap();
        std::fs::write(self.path("index.txt.attr"), "unique_subject = no\n").unwrap();
        let child = Command::new("openssl")
            .args([
                "ocsp",
                "-index",
                "index.txt",
                "-port",
                &self.ocsp_port.to_string(),
                "-rsigner",
                "ca/intermediate.crt",
                "-rkey",
                "ca/intermediate.key",
                "-CA",
                "ca/intermediate.crt",
                "-nmin",
                "60",
            ])
            .current_dir(self.dir.path())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("openssl ocsp");
        let p = Proc(child);
        // Ready when it answers a real query (a bare TCP probe can wedge its one-at-a-time loop).
        let ready = eventually(Duration::from_secs(10), || {
            Command::new("openssl")
                .args([
                    "ocsp",
                    "-issuer",
                    "ca/intermediate.crt",
                    "-cert",
                    "bob.crt",
                    "-url",
                    &format!("http://127.0.0.1:{}", self.ocsp_port),
                    "-noverify",
                    "-timeout",
                    "2",
                ])
                .current_dir(self.dir.path())
                .stdin(Stdio::null())
                .output()
                .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).contains("bob.crt: good"))
        });
        assert!(ready, "OCSP responder did not start");
        p
    }

    /// Python's http.server serving www/ (the CRL as DER at /crl.der).
    fn crl_server(&self) -> Proc {
        std::fs::create_dir_all(self.path("www")).unwrap();
        let child = Command::new("python3")
            .args([
                "-m",
                "http.server",
                &self.crl_port.to_string(),
                "--bind",
                "127.0.0.1",
            ])
            .current_dir(self.path("www"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("python3 http.server");
        let p = Proc(child);
        assert!(
            wait_for_port(format!("127.0.0.1:{}", self.crl_port).parse().unwrap()),
            "CRL server did not start"
        );
        p
    }

    fn publish_crl(&self) {
        std::fs::create_dir_all(self.path("www")).unwrap();
        let st = Command::new("openssl")
            .args([
                "crl",
                "-in",
                "ca/crl.pem",
                "-outform",
                "DER",
                "-out",
                "www/crl.der",
            ])
            .current_dir(self.dir.path())
            .status()
            .unwrap();
        assert!(st.success());
    }

    fn gateway(&self, listener_extra: &str) -> (GatewayProcess, u16) {
        let port = free_port();
        let echo = free_port();
        let cfg = format!(
            r#"
[log]
access_log = "off"
[[listener]]
address = "127.0.0.1:{port}"
client_auth = "optional"
client_ca = ["ca.crt"]
{listener_extra}
[[listener.certificate]]
cert = "localhost.crt"
key = "localhost.key"
[[echo]]
address = "127.0.0.1:{echo}"
[[upstream]]
name = "echo"
servers = ["127.0.0.1:{echo}"]
[[route]]
upstream = "echo"
"#
        );
        let path = self.path("gateway.toml");
        std::fs::write(&path, cfg).unwrap();
        let g = GatewayProcess::start(
            Path::new(BIN),
            &path,
            format!("127.0.0.1:{port}").parse().unwrap(),
        );
        (g, port)
    }

    fn curl_as(&self, port: u16, who: Option<&str>) -> Result<u16, String> {
        let mut c = Curl::https(port, "/x", &self.path("ca.crt"));
        if let Some(w) = who {
            c = c.client_cert(
                &self.path(&format!("{w}.crt")),
                &self.path(&format!("{w}.key")),
            );
        }
        c.try_run().map(|r| r.status).map_err(|e| format!("{e:?}"))
    }
}

/// Polls `f` up to `limit`; true as soon as it holds.
fn eventually(limit: Duration, mut f: impl FnMut() -> bool) -> bool {
    let end = Instant::now() + limit;
    while Instant::now() < end {
        if f() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    f()
}

#[test]
fn ocsp_hard_refuses_a_revoked_client_and_admits_a_good_one() {
    let pki = Pki::new();
    let _responder = pki.ocsp_responder();
    let (g, port) = pki.gateway(r#"ocsp = "hard""#);
    assert_eq!(
        pki.curl_as(port, Some("bob")),
        Ok(200),
        "a good certificate is admitted"
    );
    assert!(
        pki.curl_as(port, Some("alice")).is_err(),
        "a certificate the responder says is revoked is refused"
    );
    assert_eq!(
        pki.curl_as(port, None),
        Ok(200),
        "no certificate on an optional listener is not an OCSP matter"
    );
    assert!(
        g.stderr_text().contains("revoked (OCSP)"),
        "the refusal is logged: {}",
        g.stderr_text()
    );
}

#[test]
fn ocsp_soft_passes_and_hard_refuses_when_the_responder_is_down() {
    let pki = Pki::new();
    // No responder runs on the OCSP port.
    let (_soft, soft_port) = pki.gateway(r#"ocsp = "soft""#);
    assert_eq!(pki.curl_as(soft_port, Some("bob")), Ok(200));
    let (_hard, hard_port) = pki.gateway(r#"ocsp = "hard""#);
    assert!(pki.curl_as(hard_port, Some("bob")).is_err());
}

#[test]
fn ocsp_stapling_serves_the_responders_answer() {
    let pki = Pki::new();
    let _responder = pki.ocsp_responder();
    let (g, port) = pki.gateway("ocsp_stapling = true");
    let stapled = eventually(Duration::from_secs(15), || {
        let out = Command::new("openssl")
            .args([
                "s_client",
                "-connect",
                &format!("127.0.0.1:{port}"),
                "-servername",
                "localhost",
                "-status",
                "-CAfile",
            ])
            .arg(pki.path("ca.crt"))
            .stdin(Stdio::null())
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout);
        text.contains("OCSP Response Status: successful") && text.contains("Cert Status: good")
    });
    assert!(
        stapled,
        "no good OCSP staple was served; gateway log:\n{}",
        g.stderr_text()
    );
}

#[test]
fn crl_distribution_point_is_fetched_and_enforced() {
    let pki = Pki::new();
    run(
        pki.dir.path(),
        &[
            "cert",
            "revoke",
            "alice",
            "--reason",
            "keyCompromise",
            "--dir",
            "ca",
        ],
    );
    pki.publish_crl();
    let _server = pki.crl_server();
    let (g, port) = pki.gateway("crl_fetch = true");
    // The first connection names the distribution point; the gateway fetches it in the background.
    let _ = pki.curl_as(port, Some("alice"));
    let refused = eventually(Duration::from_secs(15), || {
        pki.curl_as(port, Some("alice")).is_err()
    });
    assert!(
        refused,
        "alice was never refused; gateway log:\n{}",
        g.stderr_text()
    );
    assert_eq!(
        pki.curl_as(port, Some("bob")),
        Ok(200),
        "other clients of the same CA are untouched"
    );
    assert!(g
        .stderr_text()
        .contains("fetched CRL from distribution point"));
}
