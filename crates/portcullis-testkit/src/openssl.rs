//! `openssl s_client` as a TLS probe: which protocol, ALPN and certificate a
//! listener gives to a given ClientHello.

use std::process::{Command, Stdio};

/// What one `s_client` run saw.
#[derive(Debug, Clone)]
pub struct Handshake {
    /// The handshake completed.
    pub ok: bool,
    /// "TLSv1.3", "TLSv1.2" … when it completed.
    pub protocol: Option<String>,
    /// The cipher suite, as s_client names it ("TLS_AES_128_GCM_SHA256",
    /// "ECDHE-ECDSA-AES128-GCM-SHA256").
    pub cipher: Option<String>,
    /// The ALPN protocol the server chose.
    pub alpn: Option<String>,
    /// The subject line of the server's leaf certificate.
    pub subject: Option<String>,
    /// Everything s_client printed (stdout then stderr), for failure messages.
    pub output: String,
}

/// Runs `openssl s_client -connect 127.0.0.1:port` with `args` and no input.
pub fn s_client(port: u16, args: &[&str]) -> Handshake {
    let out = Command::new("openssl")
        .arg("s_client")
        .arg("-connect")
        .arg(format!("127.0.0.1:{port}"))
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("run openssl s_client");
    let text = format!(
        "{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let field = |prefix: &str| {
        text.lines()
            .map(str::trim)
            .find_map(|l| l.strip_prefix(prefix))
            .map(|v| v.trim().to_string())
    };
    let protocol = field("Protocol  :")
        .or_else(|| field("Protocol version:"))
        .or_else(|| {
            text.lines()
                .find_map(|l| l.split_once(", Cipher is ").map(|(a, _)| a.to_string()))
                .and_then(|a| a.split_whitespace().last().map(str::to_owned))
        });
    let cipher = text
        .lines()
        .find_map(|l| {
            l.split_once(", Cipher is ")
                .map(|(_, c)| c.trim().to_string())
        })
        .filter(|c| c != "(NONE)");
    let alpn = field("ALPN protocol:");
    let subject = field("subject=");
    let ok = text.contains("-----BEGIN CERTIFICATE-----")
        && !text.contains("Cipher is (NONE)")
        && protocol.as_deref().is_some_and(|p| p.starts_with("TLS"));
    Handshake {
        ok,
        protocol,
        cipher,
        alpn,
        subject,
        output: text,
    }
}
