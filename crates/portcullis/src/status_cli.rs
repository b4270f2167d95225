//! `portcullis status`: one screen about a running gateway, read from its
//! admin API — readiness, listeners, routes, upstream health, the
//! certificates expiring soonest, request and error rates.
//!
//! A small blocking HTTP/1.1 client (plain on loopback, or TLS with the
//! admin client certificate): it makes six GETs, no async runtime needed.

use std::io::{Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{anyhow, bail, Context, Result};
use serde_json::Value;

#[derive(clap::Args, Debug)]
pub struct StatusArgs {
    /// The admin API: "http://127.0.0.1:9901" or "https://admin.example:9901".
    /// Default: the [admin] address of --config.
    #[arg(long)]
    admin: Option<String>,
    /// A config file with an [admin] section (used when --admin is absent).
    #[arg(long, short, default_value = "portcullis.toml")]
    config: PathBuf,
    /// Admin client certificate (PEM) for an admin API behind mutual TLS.
    #[arg(long)]
    cert: Option<PathBuf>,
    /// Its private key (PEM).
    #[arg(long)]
    key: Option<PathBuf>,
    /// The CA that signed the admin API's server certificate (PEM).
    #[arg(long)]
    cacert: Option<PathBuf>,
    /// Seconds between the two /metrics samples the rates come from.
    #[arg(long, default_value_t = 1.0)]
    interval: f64,
}

struct Target {
    https: bool,
    host: String,
    port: u16,
    tls: Option<Arc<rustls::ClientConfig>>,
}

pub fn run(a: StatusArgs) -> ExitCode {
    match status(&a) {
        Ok(ready) => {
            if ready {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(1)
            }
        }
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(2)
        }
    }
}

fn target(a: &StatusArgs) -> Result<Target> {
    let url = match &a.admin {
        Some(u) => u.clone(),
        None => {
            let text = std::fs::read_to_string(&a.config).with_context(|| {
                format!(
                    "cannot read {} (give --config FILE with an [admin] section, or --admin URL)",
                    a.config.display()
                )
            })?;
            let v: toml::Value = toml::from_str(&text)
                .with_context(|| format!("{} is not valid TOML", a.config.display()))?;
            let admin = v.get("admin").ok_or_else(|| {
                anyhow!(
                    "{} has no [admin] section: add one (e.g. address = \"127.0.0.1:9901\") or give --admin URL",
                    a.config.display()
                )
            })?;
            let addr = admin
                .get("address")
                .and_then(|x| x.as_str())
                .ok_or_else(|| anyhow!("[admin] has no address"))?;
            let scheme = if admin.get("client_ca").is_some() {
                "https"
            } else {
                "http"
            };
            format!("{scheme}://{addr}")
        }
    };
    let (https, rest) = if let Some(r) = url.strip_prefix("https://") {
        (true, r)
    } else if let Some(r) = url.strip_prefix("http://") {
        (false, r)
    } else {
        bail!("--admin must start with http:// or https:// (got \"{url}\")");
    };
    let authority = rest.trim_end_matches('/');
    let (host, port) = authority
        .rsplit_once(':')
        .and_then(|(h, p)| Some((h.trim_matches(|c| c == '[' || c == ']'), p.parse().ok()?)))
        .ok_or_else(|| anyhow!("--admin needs host:port (got \"{authority}\")"))?;
    let tls = if https {
        Some(Arc::new(client_tls(a)?))
    } else {
        None
    };
    Ok(Target {
        https,
        host: host.to_string(),
        port,
        tls,
    })
}

fn client_tls(a: &StatusArgs) -> Result<rustls::ClientConfig> {
    use rustls_pki_types::pem::PemObject;
    use rustls_pki_types::{CertificateDer, PrivateKeyDer};
    let ca = a.cacert.as_ref().ok_or_else(|| {
        anyhow!("an https admin API needs --cacert (the CA of its server certificate)")
    })?;
    let mut roots = rustls::RootCertStore::empty();
    for c in
        CertificateDer::pem_file_iter(ca).with_context(|| format!("reading {}", ca.display()))?
    {
        roots.add(c.with_context(|| format!("{} is not PEM", ca.display()))?)?;
    }
    let b = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::aws_lc_rs::default_provider(),
    ))
    .with_safe_default_protocol_versions()?
    .with_root_certificates(roots);
    Ok(match (&a.cert, &a.key) {
        (Some(c), Some(k)) => {
            let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(c)
                .with_context(|| format!("reading {}", c.display()))?
                .collect::<Result<_, _>>()
                .with_context(|| format!("{} is not PEM", c.display()))?;
            let key = PrivateKeyDer::from_pem_file(k)
                .with_context(|| format!("{} holds no PEM private key", k.display()))?;
            b.with_client_auth_cert(chain, key)?
        }
        (None, None) => b.with_no_client_auth(),
        _ => bail!("--cert and --key go together"),
    })
}

/// GET `path`; returns (status, body).
fn get(t: &Target, path: &str) -> Result<(u16, Vec<u8>)> {
    let addr = (t.host.as_str(), t.port)
        .to_socket_addrs()?
        .next()
        .ok_or_else(|| anyhow!("{} does not resolve", t.host))?;
    let tcp = TcpStream::connect_timeout(&addr, Duration::from_secs(5)).with_context(|| {
        format!("cannot connect to the admin API at {addr} (is the gateway running with [admin]?)")
    })?;
    tcp.set_read_timeout(Some(Duration::from_secs(10)))?;
    let req = format!(
        "GET {path} HTTP/1.1\r\nHost: {}\r\nConnection: close\r\nUser-Agent: portcullis-status\r\n\r\n",
        t.host
    );
    let mut raw = Vec::new();
    match &t.tls {
        Some(cfg) if t.https => {
            let name = rustls_pki_types::ServerName::try_from(t.host.clone())
                .map_err(|_| anyhow!("invalid server name {}", t.host))?;
            let conn = rustls::ClientConnection::new(cfg.clone(), name)?;
            let mut s = rustls::StreamOwned::new(conn, tcp);
            s.write_all(req.as_bytes())
                .context("TLS with the admin API failed (wrong --cacert, or the admin client certificate was refused)")?;
            read_all(&mut s, &mut raw)?;
        }
        _ => {
            let mut s = tcp;
            s.write_all(req.as_bytes())?;
            read_all(&mut s, &mut raw)?;
        }
    }
    parse_response(&raw)
}

fn read_all(r: &mut impl Read, out: &mut Vec<u8>) -> Result<()> {
    match r.read_to_end(out) {
        Ok(_) => Ok(()),
        // A peer that closes without close_notify after a full response is fine.
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof && !out.is_empty() => Ok(()),
        Err(e) => Err(anyhow!(e).context("reading from the admin API")),
    }
}

fn parse_response(raw: &[u8]) -> Result<(u16, Vec<u8>)> {
    let end = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .ok_or_else(|| anyhow!("the admin API sent no HTTP response"))?;
    let head = std::str::from_utf8(&raw[..end])?;
    let status: u16 = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| anyhow!("bad status line"))?;
    let body = &raw[end + 4..];
    let chunked = head.lines().any(|l| {
        l.to_ascii_lowercase().starts_with("transfer-encoding:")
            && l.to_ascii_lowercase().contains("chunked")
    });
    if !chunked {
        return Ok((status, body.to_vec()));
    }
    let mut out = Vec::new();
    let mut rest = body;
    loop {
        let nl = rest
            .windows(2)
            .position(|w| w == b"\r\n")
            .ok_or_else(|| anyhow!("bad chunked body"))?;
        let size = usize::from_str_radix(std::str::from_utf8(&rest[..nl])?.trim(), 16)?;
        rest = &rest[nl + 2..];
        if size == 0 || rest.len() < size {
            break;
        }
        out.extend_from_slice(&rest[..size]);
        rest = rest.get(size + 2..).unwrap_or(&[]);
    }
    Ok((status, out))
}

fn get_json(t: &Target, path: &str) -> Result<(u16, Value)> {
    let (s, b) = get(t, path)?;
    let v = serde_json::from_slice(&b).with_context(|| format!("{path}: not JSON"))?;
    Ok((s, v))
}

/// Sums of `portcullis_http_requests_total` (all, 5xx) in a /metrics text.
fn request_totals(text: &str) -> (f64, f64) {
    let mut all = 0.0;
    let mut errors = 0.0;
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("portcullis_http_requests_total{") {
            let Some((labels, value)) = rest.rsplit_once("} ") else {
                continue;
            };
            let v: f64 = value.trim().parse().unwrap_or(0.0);
            all += v;
            if labels.contains("status=\"5xx\"") {
                errors += v;
            }
        }
    }
    (all, errors)
}

fn status(a: &StatusArgs) -> Result<bool> {
    let t = target(a)?;
    let (rs, ready) = get_json(&t, "/readyz")?;
    let (_, routes) = get_json(&t, "/routes")?;
    let (_, ups) = get_json(&t, "/upstreams")?;
    let (_, certs) = get_json(&t, "/certificates")?;
    let (_, cfg) = get_json(&t, "/config")?;
    let (_, m1) = get(&t, "/metrics")?;
    let interval = a.interval.clamp(0.1, 60.0);
    std::thread::sleep(Duration::from_secs_f64(interval));
    let (_, m2) = get(&t, "/metrics")?;
    let (a1, e1) = request_totals(&String::from_utf8_lossy(&m1));
    let (a2, e2) = request_totals(&String::from_utf8_lossy(&m2));

    let is_ready = rs == 200;
    println!(
        "Portcullis — {}",
        if is_ready { "READY" } else { "NOT READY" }
    );
    if let Some(rs) = ready.get("reasons").and_then(Value::as_array) {
        for r in rs {
            println!("  ! {}", r.as_str().unwrap_or("?"));
        }
    }
    if let Some(f) = cfg.get("file").and_then(Value::as_str) {
        let h = cfg.get("sha256").and_then(Value::as_str).unwrap_or("");
        println!("config     {f} (sha256 {})", h.get(..12).unwrap_or(h));
    }
    println!();
    println!("Listeners");
    if let Some(ls) = cfg.pointer("/config/listener").and_then(Value::as_array) {
        for l in ls {
            println!(
                "  {:<16} {:<22} client_auth={}",
                l.get("name").and_then(Value::as_str).unwrap_or("-"),
                l.get("address").and_then(Value::as_str).unwrap_or("-"),
                l.get("client_auth")
                    .and_then(Value::as_str)
                    .unwrap_or("off"),
            );
        }
    }
    println!();
    println!("Routes");
    for r in routes["routes"].as_array().into_iter().flatten() {
        let hosts = r["hosts"]
            .as_array()
            .map(|h| {
                h.iter()
                    .filter_map(Value::as_str)
                    .collect::<Vec<_>>()
                    .join(",")
            })
            .filter(|s| !s.is_empty())
            .unwrap_or_else(|| "*".into());
        let mut auth: Vec<String> = Vec::new();
        for k in ["all", "any"] {
            for s in r["auth"][k].as_array().into_iter().flatten() {
                auth.push(s.as_str().unwrap_or("?").to_string());
            }
        }
        if r["client_cert_required"].as_bool() == Some(true) && !auth.iter().any(|s| s == "mtls") {
            auth.push("client-cert".into());
        }
        println!(
            "  {:<16} {}{} → {}  auth: {}",
            r["name"].as_str().unwrap_or("-"),
            hosts,
            r["path"].as_str().unwrap_or("/"),
            r["upstream"].as_str().unwrap_or("-"),
            if auth.is_empty() {
                "none".into()
            } else {
                auth.join("+")
            },
        );
    }
    println!();
    println!("Upstreams");
    for u in ups["upstreams"].as_array().into_iter().flatten() {
        let servers: Vec<String> = u["servers"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|s| {
                format!(
                    "{} {}",
                    s["address"].as_str().unwrap_or("?"),
                    if s["up"].as_bool() == Some(true) {
                        "up"
                    } else {
                        "DOWN"
                    }
                )
            })
            .collect();
        println!(
            "  {:<16} {}",
            u["name"].as_str().unwrap_or("-"),
            servers.join(", ")
        );
    }
    println!();
    println!("Expiring soonest");
    for c in certs["certificates"]
        .as_array()
        .into_iter()
        .flatten()
        .take(5)
    {
        println!(
            "  {:>8.1} days  {:<9} {}",
            c["days_left"].as_f64().unwrap_or(0.0),
            c["kind"].as_str().unwrap_or("-"),
            c["name"].as_str().unwrap_or("-"),
        );
    }
    println!();
    println!(
        "Traffic    {:.1} req/s, {:.1} errors (5xx)/s over {interval:.1} s; {} requests since start",
        ((a2 - a1) / interval).max(0.0),
        ((e2 - e1) / interval).max(0.0),
        a2 as u64
    );
    Ok(is_ready)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn totals_sum_all_series_and_5xx() {
        let text = "# TYPE portcullis_http_requests counter\nportcullis_http_requests_total{route=\"a\",method=\"GET\",status=\"2xx\"} 10\nportcullis_http_requests_total{route=\"a\",method=\"GET\",status=\"5xx\"} 2\nportcullis_http_requests_created 1\n";
        assert_eq!(request_totals(text), (12.0, 2.0));
    }

    #[test]
    fn chunked_and_plain_responses_parse() {
        let (s, b) = parse_response(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok").unwrap();
        assert_eq!((s, b.as_slice()), (200, &b"ok"[..]));
        let (s, b) = parse_response(
            b"HTTP/1.1 503 Service Unavailable\r\ntransfer-encoding: chunked\r\n\r\n3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n",
        )
        .unwrap();
        assert_eq!((s, b.as_slice()), (503, &b"abcde"[..]));
    }
}
