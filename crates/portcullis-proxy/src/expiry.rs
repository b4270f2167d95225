//! Seconds to expiry of everything the gateway depends on: served
//! certificates, the client CAs of each listener, and — with `[pki]` — the
//! built-in CA's own certificates and every certificate it issued.
//!
//! Owns the report (for the metrics and admin issue to export, and for a
//! start-up warning); it reads, never changes anything.

use std::time::{Duration, SystemTime};

use crate::config::Config;

/// One certificate's expiry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Expiry {
    /// "served", "client_ca", "ca", "issued".
    pub kind: &'static str,
    /// Where it is used or what it is (listener name, subject, serial).
    pub name: String,
    /// Negative when already expired.
    pub seconds_left: i64,
}

fn seconds_left(t: SystemTime, now: SystemTime) -> i64 {
    match t.duration_since(now) {
        Ok(d) => d.as_secs() as i64,
        Err(e) => -(e.duration().as_secs() as i64),
    }
}

fn cert_not_after(der: &[u8]) -> Option<(String, SystemTime)> {
    let (_, c) = x509_parser::parse_x509_certificate(der).ok()?;
    let ts = c.validity().not_after.timestamp();
    Some((
        c.subject().to_string(),
        SystemTime::UNIX_EPOCH + Duration::from_secs(ts.max(0) as u64),
    ))
}

/// The report for a config at `now`.
pub fn report(cfg: &Config, now: SystemTime) -> Vec<Expiry> {
    let mut out = Vec::new();
    for l in &cfg.listeners {
        for c in &l.certificates {
            if let Some(na) = c.not_after {
                out.push(Expiry {
                    kind: "served",
                    name: format!("{} {}", l.name, c.cert_path.display()),
                    seconds_left: seconds_left(na, now),
                });
            }
        }
        for ca in &l.client_ca {
            if let Some((subject, na)) = cert_not_after(ca.as_ref()) {
                out.push(Expiry {
                    kind: "client_ca",
                    name: format!("{} {subject}", l.name),
                    seconds_left: seconds_left(na, now),
                });
            }
        }
    }
    if let Some(p) = &cfg.pki {
        if let Ok(ca) = portcullis_pki::Ca::open(&p.ca_dir) {
            for pem in [ca.root_cert_pem(), ca.intermediate_cert_pem()] {
                use rustls_pki_types::pem::PemObject;
                if let Ok(der) = rustls_pki_types::CertificateDer::from_pem_slice(pem.as_bytes()) {
                    if let Some((subject, na)) = cert_not_after(der.as_ref()) {
                        out.push(Expiry {
                            kind: "ca",
                            name: subject,
                            seconds_left: seconds_left(na, now),
                        });
                    }
                }
            }
            if let Ok(state) = ca.state() {
                for r in state.certs.values().filter(|r| r.is_live()) {
                    out.push(Expiry {
                        kind: "issued",
                        name: format!("{} {}", r.name, r.serial),
                        seconds_left: r.seconds_to_expiry(),
                    });
                }
            }
        }
    }
    out.sort_by_key(|e| e.seconds_left);
    out
}

/// Seconds to the nextUpdate of every CRL file the listeners read (kind "crl").
pub fn crl_report(cfg: &Config, now: SystemTime) -> Vec<Expiry> {
    let mut out = Vec::new();
    for l in &cfg.listeners {
        for p in &l.crl_paths {
            let Ok(crls) = crate::config::read_crls(std::slice::from_ref(p)) else {
                continue;
            };
            for der in crls {
                let Ok((_, crl)) = x509_parser::parse_x509_crl(der.as_ref()) else {
                    continue;
                };
                if let Some(next) = crl.next_update() {
                    let t = SystemTime::UNIX_EPOCH
                        + Duration::from_secs(next.timestamp().max(0) as u64);
                    out.push(Expiry {
                        kind: "crl",
                        name: format!("{} {} {}", l.name, p.display(), crl.issuer()),
                        seconds_left: seconds_left(t, now),
                    });
                }
            }
        }
    }
    out
}

/// Logs a warning for everything that expires within `within`.
pub fn warn_soon(cfg: &Config, within: Duration) {
    for e in report(cfg, SystemTime::now()) {
        if e.seconds_left < within.as_secs() as i64 {
            let days = e.seconds_left as f64 / 86400.0;
            tracing::warn!(kind = e.kind, name = %e.name, days = format!("{days:.1}"), "certificate expires soon");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn report_covers_served_certificates_client_cas_and_the_builtin_ca() {
        let dir = tempfile::tempdir().unwrap();
        let ca = portcullis_pki::Ca::init(
            &dir.path().join("ca"),
            &portcullis_pki::CaInitOptions::default(),
        )
        .unwrap();
        let server = ca
            .issue_server(&["localhost".into()], &[], Duration::from_secs(10 * 86400))
            .unwrap();
        server.write_to(dir.path(), "server").unwrap();
        ca.issue_client(&portcullis_pki::ClientRequest::new("alice"))
            .unwrap();
        std::fs::write(dir.path().join("root.crt"), ca.root_cert_pem()).unwrap();
        let toml = r#"
[[listener]]
name = "main"
address = "127.0.0.1:1"
client_auth = "optional"
client_ca = ["root.crt"]
[[listener.certificate]]
cert = "server.crt"
key = "server.key"
[pki]
ca_dir = "ca"
"#;
        let (cfg, _) = crate::config::load_str(&dir.path().join("p.toml"), toml).unwrap();
        let r = report(&cfg, SystemTime::now());
        let kinds: Vec<&str> = r.iter().map(|e| e.kind).collect();
        for k in ["served", "client_ca", "ca", "issued"] {
            assert!(kinds.contains(&k), "{k} missing in {r:?}");
        }
        // Sorted soonest first: the 10-day server certificate leads.
        assert_eq!(r[0].kind, "served");
        assert!(
            r[0].seconds_left > 9 * 86400 && r[0].seconds_left <= 10 * 86400,
            "{r:?}"
        );
    }
}
