//! Helpers shared by the mutual-TLS integration tests (mtls*.rs): a real
//! rustls client over TCP, openssl as an independent oracle, log scanning.
#![allow(dead_code)]

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

use portcullis_testkit::mtls::{strip_ansi, wait_until, Bed, ClientCert};
use portcullis_testkit::GatewayProcess;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;

pub fn bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_portcullis"))
}

fn pem_certs(pem: &str) -> Vec<CertificateDer<'static>> {
    use rustls::pki_types::pem::PemObject;
    CertificateDer::pem_slice_iter(pem.as_bytes())
        .collect::<Result<Vec<_>, _>>()
        .expect("certificates")
}

/// A rustls client config trusting the bed's server CA, with an optional client certificate.
pub fn client_config(
    bed: &Bed,
    cert: Option<&ClientCert>,
    alpn: &[&[u8]],
) -> Arc<rustls::ClientConfig> {
    client_config_pem(
        bed,
        cert.map(|c| (c.chain_pem.as_str(), c.key_pem.as_str())),
        alpn,
    )
}

/// As [`client_config`], with the client's chain and key given as PEM.
pub fn client_config_pem(
    bed: &Bed,
    cert: Option<(&str, &str)>,
    alpn: &[&[u8]],
) -> Arc<rustls::ClientConfig> {
    use rustls::pki_types::pem::PemObject;
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let mut roots = rustls::RootCertStore::empty();
    for c in pem_certs(&std::fs::read_to_string(&bed.server_ca).expect("server ca")) {
        roots.add(c).expect("root");
    }
    let b = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("versions")
        .with_root_certificates(roots);
    let mut cfg = match cert {
        Some((chain, key)) => b
            .with_client_auth_cert(
                pem_certs(chain),
                PrivateKeyDer::from_pem_slice(key.as_bytes()).expect("key"),
            )
            .expect("client cert"),
        None => b.with_no_client_auth(),
    };
    cfg.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    Arc::new(cfg)
}

/// TCP + TLS handshake to the bed's gateway (SNI localhost).
pub async fn connect(
    bed: &Bed,
    cfg: Arc<rustls::ClientConfig>,
) -> std::io::Result<TlsStream<TcpStream>> {
    let tcp = TcpStream::connect(bed.addr()).await?;
    tokio_rustls::TlsConnector::from(cfg)
        .connect(ServerName::try_from("localhost").expect("name"), tcp)
        .await
}

/// What a client saw when it tried a request with `cert`.
#[derive(Debug, PartialEq, Eq)]
pub enum Outcome {
    /// An HTTP response with this status.
    Status(u16),
    /// The server refused the handshake with this TLS alert.
    Alert(rustls::AlertDescription),
    /// Anything else (connection reset, EOF …).
    Other(String),
}

/// Connects with `cert`, sends one GET, and reports the status or the TLS alert
/// (with TLS 1.3 a rejected client certificate surfaces on the first read).
pub fn try_request(bed: &Bed, cert: Option<&ClientCert>, path: &str) -> Outcome {
    try_request_with(bed, client_config(bed, cert, &[b"http/1.1"]), path)
}

/// As [`try_request`] with a given client config.
pub fn try_request_with(bed: &Bed, cfg: Arc<rustls::ClientConfig>, path: &str) -> Outcome {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("rt");
    rt.block_on(async {
        let classify = |e: std::io::Error| -> Outcome {
            if let Some(rustls::Error::AlertReceived(a)) =
                e.get_ref().and_then(|i| i.downcast_ref::<rustls::Error>())
            {
                return Outcome::Alert(*a);
            }
            Outcome::Other(e.to_string())
        };
        let mut s = match connect(bed, cfg).await {
            Ok(s) => s,
            Err(e) => return classify(e),
        };
        let req = format!("GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n");
        if let Err(e) = s.write_all(req.as_bytes()).await {
            return classify(e);
        }
        let mut buf = Vec::new();
        match tokio::time::timeout(Duration::from_secs(10), s.read_to_end(&mut buf)).await {
            Err(_) => Outcome::Other("timeout".into()),
            Ok(Err(e)) if buf.is_empty() => classify(e),
            Ok(_) => {
                let head = String::from_utf8_lossy(&buf);
                match head.split_whitespace().nth(1).and_then(|c| c.parse().ok()) {
                    Some(code) => Outcome::Status(code),
                    None => Outcome::Other(format!("no response: {head:?}")),
                }
            }
        }
    })
}

/// Runs openssl with `args` and returns stdout (trimmed).
pub fn openssl(args: &[&str]) -> String {
    let out = Command::new("openssl")
        .args(args)
        .output()
        .expect("openssl");
    assert!(
        out.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim_end().to_string()
}

/// `openssl x509 -noout <field>` of a certificate file, without the "name=" prefix.
pub fn x509_field(cert: &Path, args: &[&str]) -> String {
    let p = cert.to_str().expect("path");
    let mut a = vec!["x509", "-in", p, "-noout"];
    a.extend_from_slice(args);
    let s = openssl(&a);
    s.split_once('=').map(|(_, v)| v.to_string()).unwrap_or(s)
}

/// The gateway's event log (stderr), without colours.
pub fn log(g: &GatewayProcess) -> String {
    strip_ansi(&g.stderr_text())
}

/// Log lines of failed handshakes with this reason.
pub fn handshake_failures(g: &GatewayProcess, reason: &str) -> Vec<String> {
    let needle = format!("reason=\"{reason}\"");
    log(g)
        .lines()
        .filter(|l| l.contains("TLS handshake failed") && l.contains(&needle))
        .map(str::to_string)
        .collect()
}

/// Waits (up to 3 s) for a new handshake-failure line with `reason`, beyond `before` of them.
pub fn expect_failure_logged(g: &GatewayProcess, reason: &str, before: usize) -> String {
    let mut last = Vec::new();
    let ok = wait_until(Duration::from_secs(3), || {
        last = handshake_failures(g, reason);
        last.len() > before
    });
    assert!(ok, "no log line with reason=\"{reason}\"; log:\n{}", log(g));
    last.pop().expect("line")
}

pub fn addr_of(bed: &Bed) -> SocketAddr {
    bed.addr()
}
