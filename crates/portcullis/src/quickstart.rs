//! `portcullis quickstart`: the zero-config first run.
//!
//! Makes (once) a development CA, a server certificate for localhost,
//! 127.0.0.1 and ::1, one client certificate and a commented config in the
//! data directory, then serves that config with the built-in echo upstream
//! and prints curl commands that work as pasted. A second run reuses the
//! files; nothing is overwritten.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, Result};
use portcullis_pki::{Ca, CaInitOptions, ClientRequest, KeyAlgorithm};

use crate::serve;

const CONFIG_NAME: &str = "portcullis.toml";

/// The config the quickstart writes. Paths are relative to the config file.
pub const QUICKSTART_CONFIG: &str = r#"# Portcullis configuration written by `portcullis quickstart`.
#
#   portcullis check --config portcullis-data/portcullis.toml   # validate it
#   portcullis serve --config portcullis-data/portcullis.toml   # run it
#
# Relative paths are relative to this file. The full reference is in README.md.

[log]
access_log = "stdout"        # a file path, "stdout" or "off"; reopened on SIGUSR1
access_format = "api_log"    # "combined", "json", "api_log" or an nginx log_format string
level = "info"               # event log (stderr): error, warn, info, debug, trace

# The HTTPS listener: TLS 1.2 and 1.3 with Mozilla's intermediate ciphers, HTTP/2.
[[listener]]
name = "https"
address = "127.0.0.1:8443"
tls_profile = "intermediate" # "modern" = TLS 1.3 only
client_auth = "optional"     # mutual TLS: "off", "optional" or "required"
client_ca = ["ca.crt"]       # CAs trusted for client certificates

[[listener.certificate]]
cert = "server.crt"          # leaf first, then the intermediate
key = "server.key"

# Plain HTTP: only redirects to HTTPS (301; path and query kept).
[[redirect]]
address = "127.0.0.1:8080"
https_port = 8443

# The built-in echo upstream: answers with the request it saw, as JSON.
[[echo]]
address = "127.0.0.1:9090"

[[upstream]]
name = "echo"
servers = ["127.0.0.1:9090"]

# Every path goes to the echo upstream. Add routes per API version:
#   [[route]]
#   name = "v1"
#   path = "/v1/"
#   upstream = "echo"
#   deprecated = "2025-01-01T00:00:00Z"   # sends Deprecation and Sunset headers
#   sunset = "2026-06-30T00:00:00Z"
[[route]]
name = "api"
path = "/"
upstream = "echo"

# The admin API: /healthz, /readyz, Prometheus /metrics, /routes, /upstreams,
# /certificates, POST /reload. Loopback only; set cert, key and client_ca to
# expose it behind mutual TLS. `portcullis status --config <this file>` reads it.
[admin]
address = "127.0.0.1:9901"
"#;

pub fn run(dir: &Path) -> ExitCode {
    serve::init_logging("info", false);
    let cfg_path = match prepare(dir) {
        Ok(p) => p,
        Err(e) => {
            eprintln!("error: quickstart: {e:#}");
            return ExitCode::FAILURE;
        }
    };
    let Some(cfg) = serve::load_reporting(&cfg_path) else {
        return ExitCode::from(2);
    };
    let d = dir.display();
    serve::run_gateway(cfg, |addrs| {
        let https = addrs.listeners.first().map(|a| a.port()).unwrap_or(8443);
        let http = addrs.redirects.first().map(|a| a.port()).unwrap_or(8080);
        let admin = addrs
            .admin
            .map(|a| {
                format!(
                    "\n  # the admin API: Prometheus metrics, and one screen of status\n  curl http://{a}/metrics\n  cargo run --release -- status --config {}\n",
                    cfg_path.display()
                )
            })
            .unwrap_or_default();
        println!(
            r#"
Portcullis is running (Ctrl-C stops it).

  HTTPS   https://localhost:{https}   (TLS 1.2/1.3, HTTP/2, client certificate optional)
  HTTP    http://localhost:{http}    (redirects to HTTPS)
  config  {cfg}

Try it:

  # a request through the gateway to the echo upstream (it shows the headers it received)
  curl --cacert {d}/ca.crt https://localhost:{https}/hello

  # the same with the client certificate (mutual TLS)
  curl --cacert {d}/ca.crt --cert {d}/client.crt --key {d}/client.key https://localhost:{https}/hello

  # HTTP/2, and the response's security headers
  curl -sI --http2 --cacert {d}/ca.crt https://localhost:{https}/hello

  # plain HTTP is redirected
  curl -i http://localhost:{http}/hello?x=1
{admin}"#,
            cfg = cfg_path.display(),
        );
    })
}

/// Creates what is missing in `dir`; returns the config path.
fn prepare(dir: &Path) -> Result<PathBuf> {
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let cfg_path = dir.join(CONFIG_NAME);
    let ca_dir = dir.join("ca");
    let ca = if ca_dir.join("intermediate.crt").exists() {
        Ca::open(&ca_dir).with_context(|| format!("cannot open the CA in {}", ca_dir.display()))?
    } else {
        println!("Creating a development CA in {}", ca_dir.display());
        let opts = CaInitOptions {
            key: KeyAlgorithm::EcdsaP256,
            name: "Portcullis Development CA".into(),
            root_passphrase: None,
        };
        Ca::init(&ca_dir, &opts).context("cannot create the development CA")?
    };
    let ca_pem = dir.join("ca.crt");
    if !ca_pem.exists() {
        portcullis_pki::write_public_file(&ca_pem, ca.root_cert_pem().as_bytes())?;
    }
    if !dir.join("server.crt").exists() || !dir.join("server.key").exists() {
        println!("Issuing a server certificate for localhost, 127.0.0.1 and ::1");
        let ips = [
            IpAddr::V4(Ipv4Addr::LOCALHOST),
            IpAddr::V6(Ipv6Addr::LOCALHOST),
        ];
        let issued = ca.issue_server(
            &["localhost".to_string()],
            &ips,
            Duration::from_secs(90 * 86400),
        )?;
        issued.write_to(dir, "server")?;
    }
    if !dir.join("client.crt").exists() || !dir.join("client.key").exists() {
        println!("Issuing a client certificate (CN=quickstart-client)");
        let req = ClientRequest::new("quickstart-client");
        let issued = ca.issue_client(&req)?;
        issued.write_to(dir, "client")?;
    }
    if !cfg_path.exists() {
        std::fs::write(&cfg_path, QUICKSTART_CONFIG)
            .with_context(|| format!("cannot write {}", cfg_path.display()))?;
        println!("Wrote {}", cfg_path.display());
    } else {
        println!("Using the existing {}", cfg_path.display());
    }
    Ok(cfg_path)
}
