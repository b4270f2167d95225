//! Stage 2 of the config: checks every field and cross-reference, loads the
//! files the config names, and produces a typed [`Config`].
//!
//! Owns all config errors and warnings: each one names file, line, field and
//! the fix. It collects every problem rather than stopping at the first, and
//! never panics on any input.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use http::Method;
use ipnet::IpNet;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use toml::Spanned;

use super::error::Reporter;
use super::file::*;
use super::units::{parse_duration, parse_size};
use super::*;
use crate::accesslog::{LogFormat, LogTarget};

/// Certificates closer than this to expiry are a warning.
const EXPIRY_WARNING: Duration = Duration::from_secs(30 * 86400);

pub(super) fn validate(
    path: &Path,
    src: &str,
    file: FileConfig,
) -> Result<(Config, Diagnostics), Diagnostics> {
    let base = path.parent().map(Path::to_path_buf).unwrap_or_default();
    let mut v = Validator {
        r: Reporter::new(path, src),
        base,
        files: Vec::new(),
    };
    let mut config = v.config(file);
    v.files.sort();
    v.files.dedup();
    config.files = std::mem::take(&mut v.files);
    config.source_text = src.to_string();
    config.source_sha256 = {
        let d = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, src.as_bytes());
        d.as_ref().iter().map(|b| format!("{b:02x}")).collect()
    };
    if v.r.diags.has_errors() {
        Err(v.r.diags)
    } else {
        Ok((config, v.r.diags))
    }
}

struct Validator<'a> {
    r: Reporter<'a>,
    base: PathBuf,
    /// Every file the config made us read (certificates, keys, key files):
    /// a change to one of them reloads the config.
    files: Vec<PathBuf>,
}

/// One of a fixed set of keywords (or the default when absent); an unknown
/// value is an error that lists the accepted ones.
fn keyword<T: Copy>(
    r: &mut Reporter,
    v: &Option<Spanned<String>>,
    field: &str,
    options: &[(&str, T)],
    default: T,
) -> T {
    let Some(v) = v else { return default };
    match options.iter().find(|(k, _)| *k == v.get_ref().as_str()) {
        Some((_, t)) => *t,
        None => {
            let list: Vec<String> = options.iter().map(|(k, _)| format!("\"{k}\"")).collect();
            r.error(
                Some(v.span()),
                field,
                format!("unknown value \"{}\"", v.get_ref()),
                Some(format!("use {}", list.join(" or "))),
            );
            default
        }
    }
}

fn span<T>(s: &Spanned<T>) -> Option<Range<usize>> {
    Some(s.span())
}

impl Validator<'_> {
    fn resolve(&self, p: &str) -> PathBuf {
        let p = Path::new(p);
        if p.is_absolute() {
            p.to_path_buf()
        } else {
            self.base.join(p)
        }
    }

    fn duration(
        &mut self,
        v: &Option<Spanned<String>>,
        field: &str,
        default: Duration,
    ) -> Duration {
        match v {
            None => default,
            Some(s) => match parse_duration(s.get_ref()) {
                Ok(d) => d,
                Err(e) => {
                    self.r.error(
                        span(s),
                        field,
                        e,
                        Some("write a duration like \"10s\"".to_string()),
                    );
                    default
                }
            },
        }
    }

    fn addr(&mut self, s: &Spanned<String>, field: &str) -> Option<SocketAddr> {
        match s.get_ref().parse::<SocketAddr>() {
            Ok(a) => Some(a),
            Err(_) => {
                self.r.error(
                    span(s),
                    field,
                    format!("\"{}\" is not a socket address", s.get_ref()),
                    Some(
                        "write IP:port, like \"127.0.0.1:8443\", \"0.0.0.0:443\" or \"[::]:443\""
                            .to_string(),
                    ),
                );
                None
            }
        }
    }

    fn config(&mut self, f: FileConfig) -> Config {
        let server = self.server(&f.server);
        let log = self.log(&f.log);
        let global_limits = self.limits(&f.limits, Limits::default(), "limits");
        let security_headers = self.security_headers(
            &f.security_headers,
            SecurityHeaders::default(),
            "security_headers",
        );

        let mut listeners = Vec::new();
        let mut seen_addrs: HashMap<SocketAddr, String> = HashMap::new();
        for (i, l) in f.listeners.iter().enumerate() {
            if let Some(lc) = self.listener(i, l, &global_limits) {
                if let Some(prev) = seen_addrs.insert(lc.addr, format!("listener \"{}\"", lc.name))
                {
                    self.r.error(
                        span(&l.get_ref().address),
                        &format!("listener[{i}].address"),
                        format!("{} is already used by {prev}", lc.addr),
                        Some("give each listener its own address".to_string()),
                    );
                }
                listeners.push(lc);
            }
        }
        let mut names = HashMap::new();
        for (i, l) in listeners.iter().enumerate() {
            if names.insert(l.name.clone(), i).is_some() {
                self.r.error(
                    f.listeners.get(i).map(|s| s.span()),
                    &format!("listener[{i}].name"),
                    format!("listener name \"{}\" is used twice", l.name),
                    Some("give each listener a unique `name`".to_string()),
                );
            }
        }

        let mut redirects = Vec::new();
        for (i, rd) in f.redirects.iter().enumerate() {
            let field = format!("redirect[{i}]");
            let rs = rd.get_ref();
            let Some(addr) = self.addr(&rs.address, &format!("{field}.address")) else {
                continue;
            };
            if let Some(prev) = seen_addrs.insert(addr, field.clone()) {
                self.r.error(
                    span(&rs.address),
                    &format!("{field}.address"),
                    format!("{addr} is already used by {prev}"),
                    None,
                );
            }
            let status = match &rs.status {
                None => 301,
                Some(s) if matches!(*s.get_ref(), 301 | 302 | 307 | 308) => *s.get_ref(),
                Some(s) => {
                    self.r.error(
                        span(s),
                        &format!("{field}.status"),
                        format!("{} is not a redirect status", s.get_ref()),
                        Some("use 301 (default) or 308 (keeps the method)".to_string()),
                    );
                    301
                }
            };
            let https_port = match &rs.https_port {
                Some(p) => *p.get_ref(),
                None => listeners.first().map(|l| l.addr.port()).unwrap_or(443),
            };
            redirects.push(RedirectConfig {
                addr,
                status,
                https_port,
            });
        }

        let mut echo = Vec::new();
        for (i, e) in f.echo.iter().enumerate() {
            let field = format!("echo[{i}].address");
            if let Some(a) = self.addr(&e.get_ref().address, &field) {
                if let Some(prev) = seen_addrs.insert(a, format!("echo[{i}]")) {
                    if prev != format!("echo[{i}]") {
                        self.r.error(
                            span(&e.get_ref().address),
                            &field,
                            format!("{a} is already used by {prev}"),
                            None,
                        );
                    }
                }
                echo.push(a);
            }
        }

        let mut upstreams = Vec::new();
        let mut upstream_index: HashMap<String, usize> = HashMap::new();
        for (i, u) in f.upstreams.iter().enumerate() {
            if let Some(uc) = self.upstream(i, u) {
                if upstream_index.contains_key(&uc.name) {
                    self.r.error(
                        span(&u.get_ref().name),
                        &format!("upstream[{i}].name"),
                        format!("upstream \"{}\" is defined twice", uc.name),
                        Some("rename one of them".to_string()),
                    );
                    continue;
                }
                upstream_index.insert(uc.name.clone(), upstreams.len());
                upstreams.push(uc);
            }
        }

        let mut zones: Vec<crate::ratelimit::ZoneConfig> = Vec::new();
        for z in &f.rate_limits {
            if let Some(zc) = self.zone(z) {
                if zones.iter().any(|o| o.name == zc.name) {
                    self.r.error(
                        span(&z.get_ref().name),
                        "rate_limit.name",
                        format!("zone \"{}\" is defined twice", zc.name),
                        Some("rename one of them".to_string()),
                    );
                } else {
                    zones.push(zc);
                }
            }
        }
        let mut routes = Vec::new();
        let listener_names: HashMap<String, usize> = listeners
            .iter()
            .enumerate()
            .map(|(i, l)| (l.name.clone(), i))
            .collect();
        for (i, rt) in f.routes.iter().enumerate() {
            if let Some(rc) = self.route(i, rt, &upstream_index, &listener_names, &security_headers)
            {
                routes.push(rc);
            }
        }
        for (i, rc) in routes.iter().enumerate() {
            let m = &rc.mtls;
            let active = m.required
                || m.client_ca.is_some()
                || !m.allow_subjects.is_empty()
                || !m.allow_dns.is_empty()
                || !m.allow_uris.is_empty()
                || !m.allow_emails.is_empty()
                || !m.allow_spiffe.is_empty()
                || !m.pin_cert_sha256.is_empty()
                || !m.pin_spki_sha256.is_empty()
                || !m.identity_headers.is_empty();
            if !active {
                continue;
            }
            for (li, l) in listeners.iter().enumerate() {
                let serves = rc.listeners.is_empty() || rc.listeners.contains(&li);
                if serves && l.client_auth == ClientAuth::Off {
                    self.r.error(
                        f.routes.get(i).map(|s| s.span()),
                        &format!("route \"{}\"", rc.name),
                        format!("the route checks client certificates but listener \"{}\" never asks for one (client_auth = \"off\")", l.name),
                        Some(format!("set client_auth = \"optional\" on listener \"{}\", or limit the route with listeners = [...]", l.name)),
                    );
                }
            }
        }
        let mut route_names = HashMap::new();
        for (i, rc) in routes.iter().enumerate() {
            if route_names.insert(rc.name.clone(), i).is_some() {
                self.r.error(
                    f.routes.get(i).map(|s| s.span()),
                    &format!("route[{i}].name"),
                    format!("route name \"{}\" is used twice", rc.name),
                    Some("give each route a unique `name`".to_string()),
                );
            }
        }

        if listeners.is_empty() && redirects.is_empty() && echo.is_empty() {
            self.r.error(
                None,
                "listener",
                "the config defines no listener",
                Some(
                    "add a [[listener]] table with an `address` and a [[listener.certificate]]"
                        .to_string(),
                ),
            );
        }
        if !listeners.is_empty() && routes.is_empty() {
            self.r.warn(
                None,
                "route",
                "no [[route]] is defined: every request will get 404",
                Some("add a [[route]] with `path` and `upstream`".to_string()),
            );
        }

        for (i, rt) in f.routes.iter().enumerate() {
            let Some(rc) = routes.iter_mut().find(|r| {
                r.name
                    == rt
                        .get_ref()
                        .name
                        .as_ref()
                        .map(|n| n.get_ref().clone())
                        .unwrap_or_else(|| format!("route{i}"))
            }) else {
                continue;
            };
            for z in &rt.get_ref().rate_limits {
                match zones.iter().position(|zc| &zc.name == z.get_ref()) {
                    Some(idx) => rc.rate_limits.push(idx),
                    None => {
                        let defined: Vec<String> =
                            zones.iter().map(|z| format!("\"{}\"", z.name)).collect();
                        self.r.error(
                            span(z),
                            &format!("route \"{}\".rate_limits", rc.name),
                            format!(
                                "zone \"{}\" is not defined (defined: {})",
                                z.get_ref(),
                                if defined.is_empty() {
                                    "none".to_string()
                                } else {
                                    defined.join(", ")
                                }
                            ),
                            Some("add a [[rate_limit]] with this name".to_string()),
                        );
                    }
                }
            }
        }
        let (consumers, api_keys) = self.consumers(&f);
        let signing_keys = self.signing_keys(&f);
        let jwt_issuers = self.jwt_issuers(&f);
        for (i, rc) in routes.iter().enumerate() {
            let uses_jwt = rc.auth.all.contains(&crate::auth::Scheme::Jwt)
                || rc.auth.any.contains(&crate::auth::Scheme::Jwt);
            if uses_jwt && jwt_issuers.is_empty() {
                self.r.error(
                    f.routes.get(i).map(|s| s.span()),
                    &format!("route \"{}\".auth", rc.name),
                    "the route asks for \"jwt\" but no [[jwt_issuer]] is configured",
                    Some(
                        "add a [[jwt_issuer]] with issuer, algorithms and jwks_file / jwks_url"
                            .to_string(),
                    ),
                );
            }
        }
        for (i, rc) in routes.iter().enumerate() {
            let uses_sig = rc.auth.all.contains(&crate::auth::Scheme::Signature)
                || rc.auth.any.contains(&crate::auth::Scheme::Signature);
            if uses_sig && rc.signature.is_none() {
                self.r.error(f.routes.get(i).map(|s| s.span()), &format!("route \"{}\".auth", rc.name), "the route asks for \"signature\" but has no [route.signature] policy", Some("add signature = { components = [\"@method\", \"@target-uri\", \"content-digest\"] }".to_string()));
            }
        }
        for (i, rc) in routes.iter().enumerate() {
            let at = f.routes.get(i).map(|s| s.span());
            for c in &rc.auth.consumers {
                if !consumers.iter().any(|k| &k.name == c) {
                    self.r.error(
                        at.clone(),
                        &format!("route \"{}\".consumers", rc.name),
                        format!("consumer \"{c}\" is not defined"),
                        Some("add a [[consumer]] with this name".to_string()),
                    );
                }
            }
            for g in &rc.auth.groups {
                if !consumers.iter().any(|k| k.groups.contains(g)) {
                    self.r.warn(
                        at.clone(),
                        &format!("route \"{}\".groups", rc.name),
                        format!("no consumer is in group \"{g}\""),
                        None,
                    );
                }
            }
            let schemes: Vec<_> = rc.auth.all.iter().chain(rc.auth.any.iter()).collect();
            if schemes.contains(&&crate::auth::Scheme::ApiKey) && api_keys.keys.is_empty() {
                self.r.warn(
                    at.clone(),
                    &format!("route \"{}\".auth", rc.name),
                    "the route accepts API keys but no consumer has one",
                    Some("create one with `portcullis apikey create NAME`".to_string()),
                );
            }
            if schemes.contains(&&crate::auth::Scheme::Mtls) {
                for (li, l) in listeners.iter().enumerate() {
                    if (rc.listeners.is_empty() || rc.listeners.contains(&li))
                        && l.client_auth == ClientAuth::Off
                    {
                        self.r.error(at.clone(), &format!("route \"{}\".auth", rc.name), format!("the route asks for mtls but listener \"{}\" never asks for a certificate", l.name), Some(format!("set client_auth = \"optional\" on listener \"{}\"", l.name)));
                    }
                }
            }
        }
        let pki = f.pki.as_ref().map(|p| {
            let ps = p.get_ref();
            let ca_dir = self.resolve(ps.ca_dir.get_ref());
            if let Err(e) = portcullis_pki::Ca::open(&ca_dir) {
                self.r.error(
                    span(&ps.ca_dir),
                    "pki.ca_dir",
                    e.to_string(),
                    Some("create it with `portcullis ca init --dir DIR`".to_string()),
                );
            }
            let prefix = ps
                .prefix
                .as_ref()
                .map(|p| p.get_ref().trim_end_matches('/').to_string())
                .unwrap_or_else(|| "/pki".into());
            if !prefix.starts_with('/') || prefix.len() < 2 {
                self.r.error(
                    ps.prefix.as_ref().map(|p| p.span()),
                    "pki.prefix",
                    "must be a path like \"/pki\"",
                    None,
                );
            }
            let mut pl = Vec::new();
            for l in ps.listeners.iter().flatten() {
                match listener_names.get(l.get_ref()) {
                    Some(i) => pl.push(*i),
                    None => self.r.error(
                        span(l),
                        "pki.listeners",
                        format!("listener \"{}\" is not defined", l.get_ref()),
                        None,
                    ),
                }
            }
            crate::pki_service::PkiSettings {
                ca_dir,
                prefix,
                crl_validity: self
                    .duration(
                        &ps.crl_validity,
                        "pki.crl_validity",
                        Duration::from_secs(86400),
                    )
                    .max(Duration::from_secs(60)),
                ocsp_validity: self
                    .duration(
                        &ps.ocsp_validity,
                        "pki.ocsp_validity",
                        Duration::from_secs(3600),
                    )
                    .max(Duration::from_secs(60)),
                listeners: pl,
            }
        });

        let cluster = f.cluster.as_ref().and_then(|c| self.cluster(c));
        let audit_path = f.audit.as_ref().and_then(|a| self.audit(a, &log));
        let admin = f.admin.as_ref().and_then(|a| self.admin(a));

        Config {
            audit_path,
            admin,
            cluster,
            pki,
            rate_limits: zones,
            consumers,
            api_keys,
            signing_keys,
            jwt_issuers,
            source: self.r.file().to_path_buf(),
            files: Vec::new(),
            source_text: String::new(),
            source_sha256: String::new(),
            server,
            log,
            security_headers,
            listeners,
            redirects,
            upstreams,
            routes,
            echo,
        }
    }

    fn server(&mut self, s: &ServerSection) -> ServerConfig {
        let mut trusted = Vec::new();
        for (i, c) in s.trusted_proxies.iter().enumerate() {
            let t = c.get_ref().trim();
            let parsed = t
                .parse::<IpNet>()
                .or_else(|_| t.parse::<std::net::IpAddr>().map(IpNet::from));
            match parsed {
                Ok(n) => trusted.push(n),
                Err(_) => self.r.error(
                    span(c),
                    &format!("server.trusted_proxies[{i}]"),
                    format!("\"{t}\" is not an IP address or CIDR"),
                    Some("write it like \"10.0.0.0/8\" or \"192.0.2.7\"".to_string()),
                ),
            }
        }
        let worker_threads = s.worker_threads.as_ref().and_then(|w| {
            if *w.get_ref() == 0 || *w.get_ref() > 1024 {
                self.r.error(
                    span(w),
                    "server.worker_threads",
                    "must be between 1 and 1024",
                    Some("remove it to use one thread per core".to_string()),
                );
                None
            } else {
                Some(*w.get_ref())
            }
        });
        ServerConfig {
            worker_threads,
            shutdown_timeout: self.duration(
                &s.shutdown_timeout,
                "server.shutdown_timeout",
                Duration::from_secs(30),
            ),
            trusted_proxies: trusted,
        }
    }

    fn log(&mut self, l: &LogSection) -> LogConfig {
        let access_target = match &l.access_log {
            None => LogTarget::Stdout,
            Some(s) => match s.get_ref().as_str() {
                "stdout" | "-" => LogTarget::Stdout,
                "off" | "" => LogTarget::Off,
                p => LogTarget::File(self.resolve(p)),
            },
        };
        let access_format = match &l.access_format {
            None => LogFormat::combined(),
            Some(s) => match s.get_ref().as_str() {
                "combined" => LogFormat::combined(),
                "api_log" => LogFormat::api_log(),
                "json" => LogFormat::Json,
                fmt => match LogFormat::parse(fmt) {
                    Ok(f) => f,
                    Err(e) => {
                        self.r.error(span(s), "log.access_format", e.to_string(), Some("use nginx variables such as $remote_addr, or one of \"combined\", \"api_log\", \"json\"".to_string()));
                        LogFormat::combined()
                    }
                },
            },
        };
        let level = match &l.level {
            None => "info".to_string(),
            Some(s) => {
                let v = s.get_ref().to_ascii_lowercase();
                if !matches!(v.as_str(), "error" | "warn" | "info" | "debug" | "trace") {
                    self.r.error(
                        span(s),
                        "log.level",
                        format!("unknown level \"{v}\""),
                        Some("use error, warn, info, debug or trace".to_string()),
                    );
                }
                v
            }
        };
        LogConfig {
            access_target,
            access_format,
            level,
            json: l.json.unwrap_or(false),
        }
    }

    fn limits(&mut self, l: &LimitsSection, base: Limits, prefix: &str) -> Limits {
        let mut out = base.clone();
        if let Some(s) = &l.max_body_size {
            match parse_size(s.get_ref()) {
                Ok(v) => out.max_body_size = v,
                Err(e) => self
                    .r
                    .error(span(s), &format!("{prefix}.max_body_size"), e, None),
            }
        }
        if let Some(s) = &l.max_header_size {
            match parse_size(s.get_ref()) {
                Ok(v) if (8192..=1024 * 1024).contains(&v) => out.max_header_size = v as usize,
                Ok(_) => self.r.error(
                    span(s),
                    &format!("{prefix}.max_header_size"),
                    "must be between 8k and 1m",
                    Some("the default, 32k, suits most APIs".to_string()),
                ),
                Err(e) => self
                    .r
                    .error(span(s), &format!("{prefix}.max_header_size"), e, None),
            }
        }
        if let Some(s) = &l.max_headers {
            if (1..=1000).contains(s.get_ref()) {
                out.max_headers = *s.get_ref();
            } else {
                self.r.error(
                    span(s),
                    &format!("{prefix}.max_headers"),
                    "must be between 1 and 1000",
                    None,
                );
            }
        }
        out.header_timeout = self.duration(
            &l.header_timeout,
            &format!("{prefix}.header_timeout"),
            base.header_timeout,
        );
        out.handshake_timeout = self.duration(
            &l.handshake_timeout,
            &format!("{prefix}.handshake_timeout"),
            base.handshake_timeout,
        );
        for (d, name) in [
            (out.header_timeout, "header_timeout"),
            (out.handshake_timeout, "handshake_timeout"),
        ] {
            if d.is_zero() {
                self.r.error(
                    None,
                    &format!("{prefix}.{name}"),
                    "must be more than zero",
                    None,
                );
            }
        }
        if let Some(s) = &l.h2_max_concurrent_streams {
            if (1..=10_000).contains(s.get_ref()) {
                out.h2_max_concurrent_streams = *s.get_ref();
            } else {
                self.r.error(
                    span(s),
                    &format!("{prefix}.h2_max_concurrent_streams"),
                    "must be between 1 and 10000",
                    None,
                );
            }
        }
        for (v, slot, name) in [
            (
                &l.max_connections_per_ip,
                &mut out.max_connections_per_ip,
                "max_connections_per_ip",
            ),
            (
                &l.max_connections_per_cert,
                &mut out.max_connections_per_cert,
                "max_connections_per_cert",
            ),
        ] {
            if let Some(s) = v {
                if *s.get_ref() >= 1 {
                    *slot = Some(*s.get_ref());
                } else {
                    self.r.error(
                        span(s),
                        &format!("{prefix}.{name}"),
                        "must be at least 1",
                        None,
                    );
                }
            }
        }
        if let Some(r) = &l.connection_rate_per_ip {
            let parsed = super::units::parse_rate(r.get_ref());
            match parsed {
                Some((n, w)) => {
                    out.connection_rate_per_ip = Some((
                        n,
                        w,
                        l.connection_burst_per_ip
                            .as_ref()
                            .map(|b| *b.get_ref())
                            .unwrap_or(n),
                    ))
                }
                None => self.r.error(
                    span(r),
                    &format!("{prefix}.connection_rate_per_ip"),
                    format!("\"{}\" is not a rate", r.get_ref()),
                    Some("write \"20r/s\" or \"600r/m\"".to_string()),
                ),
            }
        }
        out.body_timeout = self.duration(
            &l.body_timeout,
            &format!("{prefix}.body_timeout"),
            base.body_timeout,
        );
        if let Some(s) = &l.max_connections {
            if *s.get_ref() >= 1 {
                out.max_connections = *s.get_ref();
            } else {
                self.r.error(
                    span(s),
                    &format!("{prefix}.max_connections"),
                    "must be at least 1",
                    None,
                );
            }
        }
        out
    }

    fn security_headers(
        &mut self,
        s: &SecurityHeadersSection,
        base: SecurityHeaders,
        prefix: &str,
    ) -> SecurityHeaders {
        let mut out = base;
        let set = |v: &Option<Spanned<String>>,
                   slot: &mut Option<String>,
                   name: &str,
                   r: &mut Reporter| {
            if let Some(v) = v {
                let val = v.get_ref().trim();
                if val.is_empty() {
                    *slot = None;
                } else if http::HeaderValue::from_str(val).is_err() {
                    r.error(
                        span(v),
                        &format!("{prefix}.{name}"),
                        "is not a valid header value",
                        Some("use visible ASCII characters only".to_string()),
                    );
                } else {
                    *slot = Some(val.to_string());
                }
            }
        };
        set(
            &s.x_content_type_options,
            &mut out.x_content_type_options,
            "x_content_type_options",
            &mut self.r,
        );
        set(
            &s.x_frame_options,
            &mut out.x_frame_options,
            "x_frame_options",
            &mut self.r,
        );
        set(
            &s.content_security_policy,
            &mut out.content_security_policy,
            "content_security_policy",
            &mut self.r,
        );
        set(
            &s.referrer_policy,
            &mut out.referrer_policy,
            "referrer_policy",
            &mut self.r,
        );
        if s.hsts_max_age.is_some()
            || s.hsts_include_subdomains.is_some()
            || s.hsts_preload.is_some()
        {
            let max_age = s
                .hsts_max_age
                .as_ref()
                .map(|m| *m.get_ref())
                .unwrap_or(31_536_000);
            let sub = s.hsts_include_subdomains.unwrap_or(false);
            let preload = s.hsts_preload.unwrap_or(false);
            if preload && (!sub || max_age < 31_536_000) {
                self.r.error(
                    s.hsts_max_age.as_ref().map(|m| m.span()),
                    &format!("{prefix}.hsts_preload"),
                    "HSTS preload needs includeSubDomains and a max-age of at least one year",
                    Some(
                        "set hsts_include_subdomains = true and hsts_max_age >= 31536000"
                            .to_string(),
                    ),
                );
            }
            let mut v = format!("max-age={max_age}");
            if sub {
                v.push_str("; includeSubDomains");
            }
            if preload {
                v.push_str("; preload");
            }
            out.strict_transport_security = Some(v);
        }
        set(
            &s.strict_transport_security,
            &mut out.strict_transport_security,
            "strict_transport_security",
            &mut self.r,
        );
        out
    }

    fn listener(
        &mut self,
        i: usize,
        l: &Spanned<ListenerSection>,
        global: &Limits,
    ) -> Option<ListenerConfig> {
        let ls = l.get_ref();
        let name = ls
            .name
            .as_ref()
            .map(|n| n.get_ref().clone())
            .unwrap_or_else(|| format!("listener{i}"));
        let field = match &ls.name {
            Some(n) => format!("listener \"{}\"", n.get_ref()),
            None => format!("listener[{i}]"),
        };
        let addr = self.addr(&ls.address, &format!("{field}.address"));
        let profile = match &ls.tls_profile {
            None => TlsProfile::Intermediate,
            Some(p) => match p.get_ref().as_str() {
                "intermediate" => TlsProfile::Intermediate,
                "modern" => TlsProfile::Modern,
                other => {
                    self.r.error(
                        span(p),
                        &format!("{field}.tls_profile"),
                        format!("unknown TLS profile \"{other}\""),
                        Some(
                            "use \"intermediate\" (TLS 1.2 + 1.3) or \"modern\" (TLS 1.3 only)"
                                .to_string(),
                        ),
                    );
                    TlsProfile::Intermediate
                }
            },
        };
        let mut key_exchange = Vec::new();
        if let Some(groups) = &ls.key_exchange {
            for g in groups {
                let n = g.get_ref().as_str();
                if crate::tls::kx_group(n).is_none() {
                    self.r.error(
                        span(g),
                        &format!("{field}.key_exchange"),
                        format!("unknown key exchange group \"{n}\""),
                        Some("use X25519MLKEM768, X25519, P-256 or P-384".to_string()),
                    );
                } else {
                    key_exchange.push(n.to_string());
                }
            }
            if groups.is_empty() {
                self.r.error(
                    span(l),
                    &format!("{field}.key_exchange"),
                    "is empty",
                    Some("remove it to use the defaults".to_string()),
                );
            }
        }
        if ls.certificates.is_empty() {
            self.r.error(
                span(&ls.address),
                &format!("{field}.certificate"),
                format!("listener \"{name}\" has no certificate"),
                Some("add [[listener.certificate]] with `cert` and `key` PEM files (`portcullis cert issue server NAME` makes one)".to_string()),
            );
        }
        let mut certificates = Vec::new();
        for (j, c) in ls.certificates.iter().enumerate() {
            if let Some(ck) = self.certificate(&format!("{field}.certificate[{j}]"), c) {
                certificates.push(ck);
            }
        }
        if certificates.iter().filter(|c| c.default).count() > 1 {
            self.r.error(
                span(&ls.address),
                &format!("{field}.certificate"),
                "more than one certificate is marked `default = true`",
                Some("mark only one".to_string()),
            );
        }
        let client_auth = match &ls.client_auth {
            None => ClientAuth::Off,
            Some(s) => match s.get_ref().as_str() {
                "off" => ClientAuth::Off,
                "optional" => ClientAuth::Optional,
                "required" | "on" => ClientAuth::Required,
                other => {
                    self.r.error(
                        span(s),
                        &format!("{field}.client_auth"),
                        format!("unknown value \"{other}\""),
                        Some("use \"off\", \"optional\" or \"required\"".to_string()),
                    );
                    ClientAuth::Off
                }
            },
        };
        let mut client_ca = Vec::new();
        for (j, p) in ls.client_ca.iter().enumerate() {
            client_ca.extend(self.cert_bundle(p, &format!("{field}.client_ca[{j}]")));
        }
        if client_auth != ClientAuth::Off && ls.client_ca.is_empty() {
            self.r.error(
                ls.client_auth.as_ref().map(|s| s.span()),
                &format!("{field}.client_ca"),
                "client_auth is on but no client CA is given",
                Some("add client_ca = [\"path/to/ca.pem\"] with the CA that signs your clients' certificates".to_string()),
            );
        }
        let limits = match &ls.limits {
            Some(l) => self.limits(l, global.clone(), &format!("{field}.limits")),
            None => global.clone(),
        };
        let verify_depth = match &ls.verify_depth {
            None => 2,
            Some(d) if (1..=10).contains(d.get_ref()) => *d.get_ref(),
            Some(d) => {
                self.r.error(
                    span(d),
                    &format!("{field}.verify_depth"),
                    "must be between 1 and 10",
                    Some(
                        "2 allows root → intermediate → client, as the guide's ssl_verify_depth 2"
                            .to_string(),
                    ),
                );
                2
            }
        };
        let mut crl_paths = Vec::new();
        for (j, c) in ls.crl.iter().enumerate() {
            let path = self.resolve(c.get_ref());
            match read_crls(std::slice::from_ref(&path)) {
                Ok(crls) => {
                    for crl in &crls {
                        self.check_crl_dates(crl, c, &format!("{field}.crl[{j}]"));
                    }
                }
                Err(e) => self.r.error(
                    span(c),
                    &format!("{field}.crl[{j}]"),
                    e,
                    Some("give a PEM (-----BEGIN X509 CRL-----) or DER CRL file".to_string()),
                ),
            }
            crl_paths.push(path);
        }
        if !ls.crl.is_empty() && client_auth == ClientAuth::Off {
            self.r.error(
                span(&ls.crl[0]),
                &format!("{field}.crl"),
                "CRLs are given but client_auth is \"off\"",
                Some("set client_auth = \"optional\" or \"required\", or remove crl".to_string()),
            );
        }
        use crate::mtls::fetch::OcspMode;
        use crate::mtls::{CrlExpiredPolicy, CrlScope};
        let crl_scope = keyword(
            &mut self.r,
            &ls.crl_scope,
            &format!("{field}.crl_scope"),
            &[("chain", CrlScope::Chain), ("leaf", CrlScope::Leaf)],
            CrlScope::Chain,
        );
        let crl_expired = keyword(
            &mut self.r,
            &ls.crl_expired,
            &format!("{field}.crl_expired"),
            &[
                ("reject", CrlExpiredPolicy::Reject),
                ("warn", CrlExpiredPolicy::Warn),
            ],
            CrlExpiredPolicy::Reject,
        );
        let ocsp = keyword(
            &mut self.r,
            &ls.ocsp,
            &format!("{field}.ocsp"),
            &[
                ("off", OcspMode::Off),
                ("soft", OcspMode::Soft),
                ("hard", OcspMode::Hard),
            ],
            OcspMode::Off,
        );
        if (ocsp != crate::mtls::fetch::OcspMode::Off || ls.crl_fetch == Some(true))
            && client_auth == ClientAuth::Off
        {
            self.r.error(
                span(&ls.address),
                &field,
                "ocsp / crl_fetch check client certificates but client_auth is \"off\"",
                Some("set client_auth = \"optional\" or \"required\"".to_string()),
            );
        }
        Some(ListenerConfig {
            crl_fetch: ls.crl_fetch.unwrap_or(false),
            ocsp,
            ocsp_stapling: ls.ocsp_stapling.unwrap_or(false),
            verify_depth,
            require_client_auth_eku: ls.require_client_auth_eku.unwrap_or(true),
            crl_paths,
            crl_scope,
            crl_expired,
            name,
            addr: addr?,
            profile,
            key_exchange,
            session_resumption: ls.session_resumption.unwrap_or(true),
            http2: ls.http2.unwrap_or(true),
            certificates,
            client_auth,
            client_ca,
            limits,
        })
    }

    fn cert_bundle(&mut self, p: &Spanned<String>, field: &str) -> Vec<CertificateDer<'static>> {
        let path = self.resolve(p.get_ref());
        self.files.push(path.clone());
        let data = match std::fs::read(&path) {
            Ok(d) => d,
            Err(e) => {
                self.r.error(
                    span(p),
                    field,
                    format!("cannot read {}: {e}", path.display()),
                    Some(
                        "check the path (relative paths are relative to the config file)"
                            .to_string(),
                    ),
                );
                return Vec::new();
            }
        };
        let certs: Result<Vec<_>, _> = CertificateDer::pem_slice_iter(&data).collect();
        match certs {
            Ok(c) if !c.is_empty() => c,
            Ok(_) => {
                self.r.error(
                    span(p),
                    field,
                    format!("{} holds no PEM certificate", path.display()),
                    Some("give a file with -----BEGIN CERTIFICATE----- blocks".to_string()),
                );
                Vec::new()
            }
            Err(e) => {
                self.r.error(
                    span(p),
                    field,
                    format!("{} is not valid PEM: {e:?}", path.display()),
                    None,
                );
                Vec::new()
            }
        }
    }

    fn certificate(
        &mut self,
        field: &str,
        c: &Spanned<CertificateSection>,
    ) -> Option<CertifiedKeyConfig> {
        let cs = c.get_ref();
        let chain = self.cert_bundle(&cs.cert, &format!("{field}.cert"));
        let key_path = self.resolve(cs.key.get_ref());
        self.files.push(key_path.clone());
        let key = match std::fs::read(&key_path) {
            Err(e) => {
                self.r.error(
                    span(&cs.key),
                    &format!("{field}.key"),
                    format!("cannot read {}: {e}", key_path.display()),
                    Some(
                        "check the path (relative paths are relative to the config file)"
                            .to_string(),
                    ),
                );
                None
            }
            Ok(data) => match PrivateKeyDer::from_pem_slice(&data) {
                Ok(k) => Some(k),
                Err(_) => {
                    self.r.error(
                        span(&cs.key),
                        &format!("{field}.key"),
                        format!("{} holds no PEM private key", key_path.display()),
                        Some("give a PKCS#8, SEC1 (EC) or PKCS#1 (RSA) PEM key".to_string()),
                    );
                    None
                }
            },
        };
        #[cfg(unix)]
        if let Ok(md) = std::fs::metadata(&key_path) {
            use std::os::unix::fs::PermissionsExt;
            let mode = md.permissions().mode();
            if mode & 0o044 != 0 {
                self.r.warn(
                    span(&cs.key),
                    &format!("{field}.key"),
                    format!(
                        "private key {} is readable by group or others (mode {:o})",
                        key_path.display(),
                        mode & 0o777
                    ),
                    Some(format!("chmod 600 {}", key_path.display())),
                );
            }
        }
        let (chain, key) = (chain, key?);
        if chain.is_empty() {
            return None;
        }
        if let Err(e) = crate::tls::check_key_matches(&chain, &key) {
            self.r.error(
                span(&cs.key),
                &format!("{field}.key"),
                format!("the key does not fit the certificate: {e}"),
                Some("give the key that was generated with this certificate".to_string()),
            );
            return None;
        }
        let info = match crate::tls::inspect_chain(&chain) {
            Ok(i) => i,
            Err(e) => {
                self.r.error(
                    span(&cs.cert),
                    &format!("{field}.cert"),
                    e,
                    Some(
                        "give a PEM chain: the server certificate first, then its intermediates"
                            .to_string(),
                    ),
                );
                return None;
            }
        };
        if let Some(problem) = &info.chain_order_problem {
            self.r.error(
                span(&cs.cert),
                &format!("{field}.cert"),
                problem.clone(),
                Some("order the PEM file leaf first, then each issuer".to_string()),
            );
        }
        let now = SystemTime::now();
        if let Some(na) = info.not_after {
            if na <= now {
                self.r.error(
                    span(&cs.cert),
                    &format!("{field}.cert"),
                    format!("the certificate expired on {}", httpdate::fmt_http_date(na)),
                    Some("renew it (`portcullis cert issue server …`)".to_string()),
                );
            } else if na.duration_since(now).unwrap_or_default() < EXPIRY_WARNING {
                self.r.warn(
                    span(&cs.cert),
                    &format!("{field}.cert"),
                    format!(
                        "the certificate expires on {} (within 30 days)",
                        httpdate::fmt_http_date(na)
                    ),
                    Some("renew it soon".to_string()),
                );
            }
        }
        let mut names = Vec::new();
        match &cs.names {
            Some(list) => {
                for n in list {
                    let v = n
                        .get_ref()
                        .trim()
                        .trim_end_matches('.')
                        .to_ascii_lowercase();
                    if v.is_empty() || v.contains(' ') || (v.contains('*') && !v.starts_with("*."))
                    {
                        self.r.error(
                            span(n),
                            &format!("{field}.names"),
                            format!("\"{v}\" is not a host name"),
                            Some("write \"api.example.com\" or \"*.example.com\"".to_string()),
                        );
                    } else {
                        names.push(v);
                    }
                }
            }
            None => names = info.dns_names.clone(),
        }
        Some(CertifiedKeyConfig {
            cert_path: self.resolve(cs.cert.get_ref()),
            chain,
            key,
            names,
            default: cs.default,
            not_after: info.not_after,
        })
    }

    fn route_auth(&mut self, rs: &RouteSection, field: &str) -> crate::auth::RouteAuth {
        use crate::auth::Scheme;
        let parse = |list: &Vec<Spanned<String>>, name: &str, r: &mut Reporter| {
            let mut out = Vec::new();
            for s in list {
                match Scheme::parse(s.get_ref()) {
                    Some(sc) => out.push(sc),
                    None => r.error(
                        span(s),
                        &format!("{field}.{name}"),
                        format!("unknown scheme \"{}\"", s.get_ref()),
                        Some("use \"mtls\", \"apikey\", \"jwt\" or \"signature\"".to_string()),
                    ),
                }
            }
            out
        };
        let all = parse(&rs.auth, "auth", &mut self.r);
        let any = parse(&rs.auth_any, "auth_any", &mut self.r);
        let consumers: Vec<String> = rs.consumers.iter().map(|c| c.get_ref().clone()).collect();
        let groups: Vec<String> = rs.groups.iter().map(|g| g.get_ref().clone()).collect();
        if (!consumers.is_empty() || !groups.is_empty()) && all.is_empty() && any.is_empty() {
            self.r.error(
                rs.consumers.first().or(rs.groups.first()).map(|s| s.span()),
                &format!("{field}.consumers"),
                "consumers/groups are set but the route asks for no authentication",
                Some("add auth = [\"mtls\"] or auth = [\"apikey\"] (or auth_any)".to_string()),
            );
        }
        crate::auth::RouteAuth {
            all,
            any,
            consumers,
            groups,
        }
    }

    fn signature_policy(
        &mut self,
        sig: &Spanned<SignatureSection>,
        field: &str,
    ) -> crate::auth::signature::SignaturePolicy {
        use crate::auth::signature::{Component, SigAlgorithm};
        let ss = sig.get_ref();
        for c in &ss.components {
            if let Err(e) = Component::parse(c) {
                self.r.error(span(sig), &format!("{field}.signature.components"), format!("\"{c}\": {e}"), Some("write component names like \"@method\", \"@target-uri\", \"content-digest\"".to_string()));
            }
        }
        if ss.components.is_empty() {
            self.r.error(
                span(sig),
                &format!("{field}.signature.components"),
                "no components: a signature over nothing proves nothing",
                Some("list at least \"@method\" and \"@target-uri\"".to_string()),
            );
        }
        let mut algorithms = Vec::new();
        for a in &ss.algorithms {
            match a.get_ref().parse::<SigAlgorithm>() {
                Ok(x) => algorithms.push(x),
                Err(_) => self.r.error(
                    span(a),
                    &format!("{field}.signature.algorithms"),
                    format!("unknown algorithm \"{}\"", a.get_ref()),
                    Some(
                        "use hmac-sha256, ecdsa-p256-sha256, ed25519 or rsa-pss-sha512".to_string(),
                    ),
                ),
            }
        }
        if algorithms.is_empty() {
            algorithms = SigAlgorithm::ALL.to_vec();
        }
        crate::auth::signature::SignaturePolicy {
            required_components: ss.components.clone(),
            algorithms,
            max_age: self.duration(
                &ss.max_age,
                &format!("{field}.signature.max_age"),
                Duration::from_secs(300),
            ),
            require_nonce: ss.nonce,
        }
    }

    fn route_jwt(&mut self, j: &RouteJwtSection, field: &str) -> RouteJwt {
        use crate::auth::jwt::{ClaimMatch, ClaimRule};
        let to_json = |v: &toml::Value| serde_json::to_value(v).unwrap_or(serde_json::Value::Null);
        let mut claims = Vec::new();
        for c in &j.claims {
            let rule = match (&c.equals, &c.contains, &c.one_of, c.present) {
                (Some(v), None, None, None) => ClaimMatch::Equals(to_json(v)),
                (None, Some(w), None, None) => ClaimMatch::Contains(w.clone()),
                (None, None, Some(l), None) => ClaimMatch::OneOf(l.iter().map(to_json).collect()),
                (None, None, None, Some(true)) => ClaimMatch::Present,
                _ => {
                    self.r.error(None, &format!("{field}.jwt.claims"), format!("claim rule for \"{}\" needs exactly one of equals, contains, one_of, present = true", c.claim), None);
                    continue;
                }
            };
            claims.push(ClaimRule {
                claim: c.claim.clone(),
                rule,
            });
        }
        let mut forward_claims = Vec::new();
        for (claim, header) in &j.forward_claims {
            match http::header::HeaderName::from_bytes(header.as_bytes()) {
                Ok(h) => forward_claims.push((claim.clone(), h)),
                Err(_) => self.r.error(
                    None,
                    &format!("{field}.jwt.forward_claims"),
                    format!("\"{header}\" is not a header name"),
                    None,
                ),
            }
        }
        RouteJwt {
            claims,
            forward_claims,
            strip_authorization: j.strip_authorization,
            cert_bound: j.cert_bound,
        }
    }

    fn jwt_issuers(&mut self, f: &FileConfig) -> Vec<crate::auth::jwt::IssuerConfig> {
        use crate::auth::jwt::{Algorithm, IssuerConfig, KeySource};
        let mut out = Vec::new();
        for i in &f.jwt_issuers {
            let is = i.get_ref();
            let field = format!("jwt_issuer \"{}\"", is.issuer.get_ref());
            let mut algorithms = Vec::new();
            for a in &is.algorithms {
                match Algorithm::from_jose(a.get_ref()) {
                    Some(x) => algorithms.push(x),
                    None => self.r.error(
                        span(a),
                        &format!("{field}.algorithms"),
                        format!("unknown algorithm \"{}\"", a.get_ref()),
                        Some(
                            "use RS256, RS384, RS512, PS256, ES256, ES384, EdDSA or HS256"
                                .to_string(),
                        ),
                    ),
                }
            }
            let keys = match (&is.jwks_file, &is.jwks_url, &is.secret_env) {
                (Some(p), None, None) => Some(KeySource::JwksFile(self.resolve(p.get_ref()))),
                (None, Some(u), None) => Some(KeySource::JwksUrl(u.get_ref().clone())),
                (None, None, Some(env)) => match std::env::var(env.get_ref()) {
                    Ok(v) => Some(KeySource::Secret(v.trim().as_bytes().to_vec())),
                    Err(_) => {
                        self.r.error(
                            span(env),
                            &format!("{field}.secret_env"),
                            format!("environment variable {} is not set", env.get_ref()),
                            None,
                        );
                        None
                    }
                },
                _ => {
                    self.r.error(
                        span(&is.issuer),
                        &field,
                        "give exactly one of jwks_file, jwks_url or secret_env",
                        None,
                    );
                    None
                }
            };
            let Some(keys) = keys else { continue };
            let mut cfg = IssuerConfig::new(is.issuer.get_ref().clone(), algorithms, keys);
            cfg.audiences = is.audiences.clone();
            cfg.leeway = self.duration(
                &is.leeway,
                &format!("{field}.leeway"),
                Duration::from_secs(60),
            );
            out.push(cfg);
        }
        if let Err(e) = crate::auth::jwt::JwtVerifier::new(out.clone()) {
            self.r.error(
                f.jwt_issuers.first().map(|i| i.span()),
                "jwt_issuer",
                e.to_string(),
                None,
            );
        }
        out
    }

    fn signing_keys(
        &mut self,
        f: &FileConfig,
    ) -> Vec<(String, String, crate::auth::signature::VerifyKey)> {
        use crate::auth::signature::VerifyKey;
        let mut out: Vec<(String, String, VerifyKey)> = Vec::new();
        for c in &f.consumers {
            let cs = c.get_ref();
            for k in &cs.signing_keys {
                let ks = k.get_ref();
                let field = format!("consumer \"{}\".signing_keys", cs.name.get_ref());
                let key = match (&ks.key, &ks.secret_env) {
                    (Some(path), None) => {
                        let p = self.resolve(path.get_ref());
                        self.files.push(p.clone());
                        match std::fs::read_to_string(&p) {
                            Err(e) => {
                                self.r.error(
                                    span(path),
                                    &field,
                                    format!("cannot read {}: {e}", p.display()),
                                    None,
                                );
                                None
                            }
                            Ok(text) => {
                                let parsed = if text.trim_start().starts_with('{') {
                                    VerifyKey::from_jwk(&text)
                                } else {
                                    VerifyKey::from_pem(&text)
                                };
                                match parsed {
                                    Ok(v) => Some(v),
                                    Err(e) => {
                                        self.r.error(
                                            span(path),
                                            &field,
                                            format!("{}: {e}", p.display()),
                                            Some(
                                                "give a PEM public key (SPKI) or a JWK".to_string(),
                                            ),
                                        );
                                        None
                                    }
                                }
                            }
                        }
                    }
                    (None, Some(env)) => match std::env::var(env.get_ref()) {
                        Ok(v) => match VerifyKey::hmac_from_base64(v.trim()) {
                            Ok(k) => Some(k),
                            Err(e) => {
                                self.r.error(
                                    span(env),
                                    &field,
                                    format!("${}: {e}", env.get_ref()),
                                    Some("export a base64 secret of at least 32 bytes".to_string()),
                                );
                                None
                            }
                        },
                        Err(_) => {
                            self.r.error(
                                span(env),
                                &field,
                                format!("environment variable {} is not set", env.get_ref()),
                                Some("export it before starting the gateway".to_string()),
                            );
                            None
                        }
                    },
                    _ => {
                        self.r.error(
                            span(k),
                            &field,
                            "give exactly one of `key` (a public key file) or `secret_env`",
                            None,
                        );
                        None
                    }
                };
                if let Some(key) = key {
                    if out.iter().any(|(id, _, _)| id == &ks.keyid) {
                        self.r.error(
                            span(k),
                            &field,
                            format!("keyid \"{}\" is used twice", ks.keyid),
                            None,
                        );
                    } else {
                        out.push((ks.keyid.clone(), cs.name.get_ref().clone(), key));
                    }
                }
            }
        }
        out
    }

    fn route_websocket(
        &mut self,
        w: &RouteWebsocketSection,
        field: &str,
        uses_jwt: bool,
    ) -> crate::websocket::WebsocketPolicy {
        let field = format!("{field}.websocket");
        let close_on_token_expiry = w
            .close_on_token_expiry
            .as_ref()
            .is_some_and(|b| *b.get_ref());
        if let (true, false, Some(b)) = (close_on_token_expiry, uses_jwt, &w.close_on_token_expiry)
        {
            self.r.warn(
                span(b),
                &format!("{field}.close_on_token_expiry"),
                "has no effect: the route does not authenticate with JWT",
                Some("add \"jwt\" to the route's `auth` or `auth_any`".to_string()),
            );
        }
        let mut allowed_origins = Vec::new();
        for o in &w.allowed_origins {
            let v = o
                .get_ref()
                .trim()
                .trim_end_matches('/')
                .to_ascii_lowercase();
            let host = v.split_once("://").map(|(_, h)| h).unwrap_or("");
            let ok = v == "*"
                || ((v.starts_with("https://") || v.starts_with("http://"))
                    && !host.is_empty()
                    && !host.contains('/')
                    && (!host.contains('*')
                        || (host.starts_with("*.") && host.len() > 2 && !host[2..].contains('*'))));
            if ok {
                allowed_origins.push(v);
            } else {
                self.r.error(
                    span(o),
                    &format!("{field}.allowed_origins"),
                    format!("\"{}\" is not an origin", o.get_ref()),
                    Some(
                        "write \"https://app.example.com\", \"https://*.example.com\" or \"*\" (scheme and host, no path)"
                            .to_string(),
                    ),
                );
            }
        }
        let positive =
            |s: &mut Self, v: &Option<Spanned<String>>, name: &str| -> Option<Duration> {
                let d = s.duration(v, &format!("{field}.{name}"), Duration::ZERO);
                if v.is_some() && d.is_zero() {
                    if let Some(v) = v {
                        if parse_duration(v.get_ref()).is_ok() {
                            s.r.error(
                                span(v),
                                &format!("{field}.{name}"),
                                "must be longer than zero",
                                Some("write a duration like \"30s\"".to_string()),
                            );
                        }
                    }
                    return None;
                }
                v.as_ref().map(|_| d)
            };
        let heartbeat_interval = positive(self, &w.heartbeat_interval, "heartbeat_interval");
        let heartbeat_timeout = positive(self, &w.heartbeat_timeout, "heartbeat_timeout");
        if let (Some(t), None) = (&w.heartbeat_timeout, &w.heartbeat_interval) {
            self.r.error(
                span(t),
                &format!("{field}.heartbeat_timeout"),
                "has no effect without heartbeat_interval",
                Some("add heartbeat_interval = \"30s\" or remove heartbeat_timeout".to_string()),
            );
        }
        let size = |s: &mut Self, v: &Option<Spanned<String>>, name: &str| -> Option<usize> {
            let v = v.as_ref()?;
            match parse_size(v.get_ref()) {
                Ok(n) if n > 0 && n <= (1 << 30) => Some(n as usize),
                Ok(_) => {
                    s.r.error(
                        span(v),
                        &format!("{field}.{name}"),
                        "must be between 1 byte and 1g",
                        Some("write a size like \"1m\" or \"64k\"".to_string()),
                    );
                    None
                }
                Err(e) => {
                    s.r.error(
                        span(v),
                        &format!("{field}.{name}"),
                        e,
                        Some("write a size like \"1m\" or \"64k\"".to_string()),
                    );
                    None
                }
            }
        };
        let max_message_size = size(self, &w.max_message_size, "max_message_size");
        let max_frame_size = size(self, &w.max_frame_size, "max_frame_size");
        let mut message_rate = None;
        let mut per_second_n = 1;
        if let Some(r) = &w.message_rate {
            match super::units::parse_rate(r.get_ref()) {
                Some((n, per)) => {
                    message_rate = Some(n as f64 / per as f64);
                    per_second_n = n.div_ceil(per).max(1);
                }
                None => self.r.error(
                    span(r),
                    &format!("{field}.message_rate"),
                    format!("\"{}\" is not a rate", r.get_ref()),
                    Some(
                        "write messages per second or minute, like \"50r/s\" or \"600r/m\""
                            .to_string(),
                    ),
                ),
            }
        }
        if let (Some(b), None) = (&w.message_burst, &w.message_rate) {
            self.r.error(
                span(b),
                &format!("{field}.message_burst"),
                "has no effect without message_rate",
                Some("add message_rate = \"50r/s\" or remove message_burst".to_string()),
            );
        }
        crate::websocket::WebsocketPolicy {
            allowed_origins,
            allow_missing_origin: w.allow_missing_origin,
            heartbeat_timeout: heartbeat_timeout
                .or(heartbeat_interval)
                .unwrap_or(Duration::from_secs(30)),
            heartbeat_interval,
            max_message_size,
            max_frame_size,
            message_rate,
            message_burst: w
                .message_burst
                .as_ref()
                .map_or(per_second_n, |b| *b.get_ref()),
            close_on_token_expiry,
        }
    }

    fn cors(&mut self, c: &CorsSection, field: &str) -> crate::auth::cors::Cors {
        let mut origins = Vec::new();
        for o in &c.origins {
            let v = o.get_ref().trim().trim_end_matches('/').to_string();
            let ok = v == "*"
                || ((v.starts_with("https://") || v.starts_with("http://"))
                    && !v[v.find("://").map_or(0, |i| i + 3)..].contains('/'));
            if !ok {
                self.r.error(
                    span(o),
                    &format!("{field}.cors.origins"),
                    format!("\"{v}\" is not an origin"),
                    Some(
                        "write \"https://app.example.com\", \"https://*.example.com\" or \"*\""
                            .to_string(),
                    ),
                );
            }
            if v == "*" && c.credentials {
                self.r.error(
                    span(o),
                    &format!("{field}.cors.origins"),
                    "\"*\" cannot be combined with credentials",
                    Some("list the origins explicitly".to_string()),
                );
            }
            origins.push(v);
        }
        let mut methods = Vec::new();
        for m in &c.methods {
            match Method::from_bytes(m.get_ref().to_ascii_uppercase().as_bytes()) {
                Ok(mm) => methods.push(mm),
                Err(_) => self.r.error(
                    span(m),
                    &format!("{field}.cors.methods"),
                    format!("\"{}\" is not a method", m.get_ref()),
                    None,
                ),
            }
        }
        crate::auth::cors::Cors {
            origins,
            methods,
            headers: c.headers.clone(),
            expose: c.expose.clone(),
            credentials: c.credentials,
            max_age: c.max_age,
        }
    }

    fn consumers(&mut self, f: &FileConfig) -> (Vec<crate::auth::Consumer>, ApiKeysConfig) {
        let mut out: Vec<crate::auth::Consumer> = Vec::new();
        let mut keys = Vec::new();
        for c in &f.consumers {
            let cs = c.get_ref();
            let name = cs.name.get_ref().clone();
            if out.iter().any(|o| o.name == name) {
                self.r.error(
                    span(&cs.name),
                    "consumer.name",
                    format!("consumer \"{name}\" is defined twice"),
                    None,
                );
                continue;
            }
            for k in &cs.api_keys {
                let ks = k.get_ref();
                let Some(hash) = crate::auth::apikey::parse_hash(ks.hash.get_ref()) else {
                    self.r.error(span(&ks.hash), &format!("consumer \"{name}\".api_keys"), "is not a key hash", Some("paste the `hash = \"sha256:…\"` line `portcullis apikey create` printed; never the key itself".to_string()));
                    continue;
                };
                let expires = ks.expires.as_ref().and_then(|e| {
                    let t = parse_rfc3339(e.get_ref());
                    if t.is_none() {
                        self.r.error(
                            span(e),
                            &format!("consumer \"{name}\".api_keys.expires"),
                            "is not an RFC 3339 date",
                            Some("write \"2027-01-01T00:00:00Z\"".to_string()),
                        );
                    }
                    t
                });
                if keys.iter().any(|(h, _, _, _)| *h == hash) {
                    self.r.error(
                        span(&ks.hash),
                        &format!("consumer \"{name}\".api_keys"),
                        "this key is listed twice",
                        None,
                    );
                }
                keys.push((hash, name.clone(), expires, ks.disabled));
            }
            out.push(crate::auth::Consumer {
                name,
                groups: cs.groups.clone(),
                cert_subjects: cs.cert_subjects.clone(),
                cert_spiffe: cs.cert_spiffe.clone(),
                jwt_subjects: cs
                    .jwt
                    .iter()
                    .map(|j| (j.issuer.clone(), j.subject.clone()))
                    .collect(),
            });
        }
        let ak = f.api_keys.as_ref();
        let header = match ak.and_then(|a| a.header.as_ref()) {
            None => http::header::HeaderName::from_static("x-api-key"),
            Some(h) => {
                http::header::HeaderName::from_bytes(h.get_ref().as_bytes()).unwrap_or_else(|_| {
                    self.r.error(
                        span(h),
                        "api_keys.header",
                        format!("\"{}\" is not a header name", h.get_ref()),
                        None,
                    );
                    http::header::HeaderName::from_static("x-api-key")
                })
            }
        };
        let query_param = ak
            .and_then(|a| a.query_param.as_ref())
            .map(|q| q.get_ref().clone());
        if let Some(kf) = ak.and_then(|a| a.file.as_ref()) {
            let path = self.resolve(kf.get_ref());
            self.files.push(path.clone());
            match std::fs::read_to_string(&path) {
                Err(e) => self.r.error(
                    span(kf),
                    "api_keys.file",
                    format!("cannot read {}: {e}", path.display()),
                    Some("check the path (relative to the config file)".to_string()),
                ),
                Ok(text) => match toml::from_str::<ApiKeysFile>(&text) {
                    Err(e) => {
                        let d = super::error::from_toml_error(&path, &text, &e);
                        self.r.diags.items.push(d);
                    }
                    Ok(file) => {
                        for (n, k) in file.key.iter().enumerate() {
                            let where_ = format!("{} key #{}", path.display(), n + 1);
                            if !out.iter().any(|c| c.name == k.consumer) {
                                self.r.error(
                                    span(kf),
                                    "api_keys.file",
                                    format!("{where_}: consumer \"{}\" is not defined", k.consumer),
                                    Some(
                                        "add a [[consumer]] with this name to the config"
                                            .to_string(),
                                    ),
                                );
                                continue;
                            }
                            let Some(hash) = crate::auth::apikey::parse_hash(&k.hash) else {
                                self.r.error(
                                    span(kf),
                                    "api_keys.file",
                                    format!("{where_}: hash is not \"sha256:<64 hex>\""),
                                    Some(
                                        "paste what `portcullis apikey create` printed".to_string(),
                                    ),
                                );
                                continue;
                            };
                            let expires = match &k.expires {
                                None => None,
                                Some(e) => {
                                    match parse_rfc3339(e) {
                                        Some(t) => Some(t),
                                        None => {
                                            self.r.error(span(kf), "api_keys.file", format!("{where_}: expires \"{e}\" is not an RFC 3339 date"), None);
                                            continue;
                                        }
                                    }
                                }
                            };
                            keys.push((hash, k.consumer.clone(), expires, k.disabled));
                        }
                    }
                },
            }
        }
        (
            out,
            ApiKeysConfig {
                header,
                query_param,
                keys,
            },
        )
    }

    fn admin(&mut self, a: &Spanned<AdminSection>) -> Option<super::AdminConfig> {
        let s = a.get_ref();
        let addr = self.addr(&s.address, "admin.address")?;
        let tls = match (&s.cert, &s.key, &s.client_ca) {
            (None, None, None) => {
                if !addr.ip().is_loopback() {
                    self.r.error(
                        span(&s.address),
                        "admin.address",
                        format!("{addr} is reachable from other machines, and the admin API has no client_ca"),
                        Some("bind it to 127.0.0.1 (or ::1), or set cert, key and client_ca so only holders of an admin certificate can connect".to_string()),
                    );
                    return None;
                }
                None
            }
            (Some(cert), Some(key), Some(ca)) => {
                let chain = self.cert_bundle(cert, "admin.cert");
                let client_ca = self.cert_bundle(ca, "admin.client_ca");
                let kp = self.resolve(key.get_ref());
                self.files.push(kp.clone());
                let k = std::fs::read(&kp)
                    .ok()
                    .and_then(|d| PrivateKeyDer::from_pem_slice(&d).ok());
                let Some(k) = k else {
                    self.r.error(
                        span(key),
                        "admin.key",
                        format!("cannot read a PEM private key from {}", kp.display()),
                        Some(
                            "give the admin listener's PKCS#8, SEC1 or PKCS#1 PEM key".to_string(),
                        ),
                    );
                    return None;
                };
                if chain.is_empty() || client_ca.is_empty() {
                    return None;
                }
                Some(super::AdminTls {
                    chain,
                    key: k,
                    client_ca,
                })
            }
            _ => {
                self.r.error(
                    span(a),
                    "admin",
                    "cert, key and client_ca go together",
                    Some("set all three (TLS with admin client certificates), or none (plain HTTP on a loopback address)".to_string()),
                );
                return None;
            }
        };
        Some(super::AdminConfig { addr, tls })
    }

    /// `[audit] path`: a file in an existing directory, not the access log, and
    /// when it exists already, ending in a complete record to chain onto.
    fn audit(&mut self, a: &Spanned<AuditSection>, log: &LogConfig) -> Option<PathBuf> {
        let p = &a.get_ref().path;
        if p.get_ref().trim().is_empty() {
            self.r.error(
                span(p),
                "audit.path",
                "is empty",
                Some(
                    "write a file path like \"/var/log/portcullis/audit.log\", or remove [audit]"
                        .to_string(),
                ),
            );
            return None;
        }
        let path = self.resolve(p.get_ref());
        if log.access_target == LogTarget::File(path.clone()) {
            self.r.error(
                span(p),
                "audit.path",
                "is the access log's file",
                Some("give the audit log a file of its own".to_string()),
            );
            return None;
        }
        let dir = path.parent().filter(|d| !d.as_os_str().is_empty());
        if let Some(d) = dir.filter(|d| !d.is_dir()) {
            self.r.error(
                span(p),
                "audit.path",
                format!("directory {} does not exist", d.display()),
                Some(
                    "create the directory (writable by the gateway's user), or fix the path"
                        .to_string(),
                ),
            );
            return None;
        }
        if path.is_dir() {
            self.r.error(
                span(p),
                "audit.path",
                format!("{} is a directory", path.display()),
                Some("name a file inside it, like \"audit.log\"".to_string()),
            );
            return None;
        }
        // A file this process writes already (a reload) is not read under its writer.
        let head = if crate::audit::is_open(&path) {
            Ok(())
        } else {
            crate::audit::read_head(&path).map(|_| ())
        };
        if let Err(e) = head {
            self.r.error(
                span(p),
                "audit.path",
                format!("{}: {e}", path.display()),
                Some(format!("run `portcullis audit verify {}`, then move the file aside to start a new chain", path.display())),
            );
            return None;
        }
        Some(path)
    }

    fn cluster(&mut self, c: &Spanned<ClusterSection>) -> Option<super::ClusterConfig> {
        let cs = c.get_ref();
        let url = cs.redis.get_ref().trim().to_string();
        let parsed = (url.starts_with("redis://")
            || url.starts_with("rediss://")
            || url.starts_with("redis+unix://")
            || url.starts_with("unix://"))
            && redis::Client::open(url.as_str()).is_ok();
        if !parsed {
            self.r.error(
                span(&cs.redis),
                "cluster.redis",
                format!("\"{url}\" is not a Redis URL"),
                Some("write it like \"redis://127.0.0.1:6379\"".to_string()),
            );
            return None;
        }
        let key_secret = match &cs.key_secret {
            Some(k) if k.get_ref().len() >= 16 => k.get_ref().clone(),
            Some(k) => {
                self.r.error(
                    span(k),
                    "cluster.key_secret",
                    "too short to key the hash of rate-limit keys",
                    Some("use 16 characters or more (e.g. `openssl rand -hex 32`), the same on every replica".to_string()),
                );
                return None;
            }
            None => {
                self.r.warn(
                    span(&cs.redis),
                    "cluster.key_secret",
                    "not set: rate-limit keys are hashed with a public built-in secret, so a client could aim a collision at another client's key",
                    Some("set key_secret to the same random string on every replica".to_string()),
                );
                "portcullis default cluster key secret".to_string()
            }
        };
        let timeout = self
            .duration(&cs.timeout, "cluster.timeout", Duration::from_millis(250))
            .clamp(Duration::from_millis(1), Duration::from_secs(10));
        Some(super::ClusterConfig {
            redis: url,
            key_secret,
            timeout,
        })
    }

    fn zone(&mut self, z: &Spanned<RateLimitSection>) -> Option<crate::ratelimit::ZoneConfig> {
        use crate::ratelimit::{BucketParams, KeyPart, StoreFailure, ZoneConfig};
        let zs = z.get_ref();
        let name = zs.name.get_ref().clone();
        let field = format!("rate_limit \"{name}\"");
        let parsed = super::units::parse_rate(zs.rate.get_ref());
        let Some((requests, window_s)) = parsed else {
            self.r.error(
                span(&zs.rate),
                &format!("{field}.rate"),
                format!("\"{}\" is not a rate", zs.rate.get_ref()),
                Some(
                    "write requests per second or minute, like \"10r/s\" or \"600r/m\"".to_string(),
                ),
            );
            return None;
        };
        let mut key = Vec::new();
        let key_strings: Vec<(String, std::ops::Range<usize>)> = match &zs.key {
            None => vec![("ip".to_string(), zs.name.span())],
            Some(v) => match v.get_ref() {
                toml::Value::String(s) => vec![(s.clone(), v.span())],
                toml::Value::Array(a) => a
                    .iter()
                    .filter_map(|x| x.as_str().map(|s| (s.to_string(), v.span())))
                    .collect(),
                _ => vec![("?".to_string(), v.span())],
            },
        };
        for (k, sp) in key_strings {
            match k.as_str() {
                "ip" => key.push(KeyPart::Ip),
                "cert" => key.push(KeyPart::Cert),
                "consumer" => key.push(KeyPart::Consumer),
                c if c.starts_with("claim:") && c.len() > 6 => key.push(KeyPart::JwtClaim(c[6..].to_string())),
                h if h.starts_with("header:") => match http::header::HeaderName::from_bytes(
                    h["header:".len()..].trim().as_bytes(),
                ) {
                    Ok(n) => key.push(KeyPart::Header(n)),
                    Err(_) => self.r.error(
                        Some(sp),
                        &format!("{field}.key"),
                        format!("\"{h}\" names no valid header"),
                        None,
                    ),
                },
                other => self.r.error(
                    Some(sp),
                    &format!("{field}.key"),
                    format!("unknown key \"{other}\""),
                    Some(
                        "use \"ip\", \"cert\", \"consumer\", \"claim:NAME\", \"header:NAME\" or a list of them"
                            .to_string(),
                    ),
                ),
            }
        }
        let burst = zs.burst.as_ref().map(|b| *b.get_ref()).unwrap_or(0);
        if zs.nodelay && zs.delay.is_some() {
            self.r.error(
                zs.delay.as_ref().map(|d| d.span()),
                &format!("{field}.delay"),
                "`nodelay` and `delay` exclude each other",
                Some("keep one (nodelay = delay equal to burst)".to_string()),
            );
        }
        let delay = if zs.nodelay {
            None
        } else {
            Some(zs.delay.as_ref().map(|d| *d.get_ref()).unwrap_or(0))
        };
        let status = match &zs.status {
            None => 429,
            Some(s) if (400..=599).contains(s.get_ref()) => *s.get_ref(),
            Some(s) => {
                self.r.error(
                    span(s),
                    &format!("{field}.status"),
                    "must be a 4xx or 5xx status",
                    Some("429 (default) or 503 as nginx".to_string()),
                );
                429
            }
        };
        let on_store_failure = match zs
            .on_store_failure
            .as_ref()
            .map(|v| (v, v.get_ref().as_str()))
        {
            None | Some((_, "local")) => StoreFailure::Local,
            Some((_, "allow")) => StoreFailure::Allow,
            Some((_, "deny")) => StoreFailure::Deny,
            Some((v, other)) => {
                self.r.error(
                    span(v),
                    &format!("{field}.on_store_failure"),
                    format!("unknown policy \"{other}\""),
                    Some(
                        "use \"local\" (this gateway's own table), \"allow\" or \"deny\""
                            .to_string(),
                    ),
                );
                StoreFailure::Local
            }
        };
        Some(ZoneConfig {
            name,
            key,
            params: BucketParams::new(requests, window_s, burst, delay),
            requests,
            window_s,
            dry_run: zs.dry_run,
            status,
            max_keys: zs
                .max_keys
                .as_ref()
                .map(|m| *m.get_ref())
                .unwrap_or(100_000)
                .max(1),
            on_store_failure,
        })
    }

    fn check_crl_dates(
        &mut self,
        crl: &rustls_pki_types::CertificateRevocationListDer<'_>,
        at: &Spanned<String>,
        field: &str,
    ) {
        use x509_parser::prelude::FromDer;
        if let Ok((_, c)) =
            x509_parser::revocation_list::CertificateRevocationList::from_der(crl.as_ref())
        {
            if let Some(next) = c.next_update() {
                let ts = next.timestamp();
                let now = SystemTime::now()
                    .duration_since(SystemTime::UNIX_EPOCH)
                    .map(|d| d.as_secs() as i64)
                    .unwrap_or(0);
                if ts < now {
                    self.r.warn(span(at), field, format!("the CRL from \"{}\" expired (nextUpdate passed)", c.issuer()), Some("publish a fresh CRL; with crl_expired = \"reject\" clients of this issuer are refused until then".to_string()));
                }
            }
        }
    }

    fn route_mtls(&mut self, rs: &RouteSection, field: &str) -> RouteMtls {
        use crate::mtls::headers::{IdentityFormat, NginxHeaderNames};
        let mut m = RouteMtls::default();
        match rs.client_cert.as_ref().map(|s| s.get_ref().as_str()) {
            None | Some("optional") => {}
            Some("required") => m.required = true,
            Some(other) => self.r.error(
                rs.client_cert.as_ref().map(|s| s.span()),
                &format!("{field}.client_cert"),
                format!("unknown value \"{other}\""),
                Some("use \"required\" or \"optional\"".to_string()),
            ),
        }
        if !rs.client_ca.is_empty() {
            let mut cas = Vec::new();
            for (j, p) in rs.client_ca.iter().enumerate() {
                cas.extend(self.cert_bundle(p, &format!("{field}.client_ca[{j}]")));
            }
            m.client_ca = Some(cas);
        }
        let strings = |v: &Vec<Spanned<String>>| {
            v.iter()
                .map(|s| s.get_ref().trim().to_string())
                .collect::<Vec<_>>()
        };
        m.allow_subjects = strings(&rs.allow_subjects);
        m.allow_dns = strings(&rs.allow_dns)
            .into_iter()
            .map(|s| s.to_ascii_lowercase())
            .collect();
        m.allow_uris = strings(&rs.allow_uris);
        m.allow_emails = strings(&rs.allow_emails);
        m.allow_spiffe = strings(&rs.allow_spiffe);
        for s in &rs.allow_spiffe {
            if !s.get_ref().starts_with("spiffe://") {
                self.r.error(
                    span(s),
                    &format!("{field}.allow_spiffe"),
                    format!("\"{}\" is not a SPIFFE ID", s.get_ref()),
                    Some(
                        "write spiffe://trust-domain/path, or end with /* for a prefix".to_string(),
                    ),
                );
            }
        }
        for p in &rs.pin_cert_sha256 {
            let hex: String = p
                .get_ref()
                .chars()
                .filter(|c| *c != ':')
                .collect::<String>()
                .to_ascii_lowercase();
            if hex.len() != 64 || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
                self.r.error(
                    span(p),
                    &format!("{field}.pin_cert_sha256"),
                    "is not a SHA-256 fingerprint",
                    Some(
                        "64 hex digits: openssl x509 -in client.crt -noout -fingerprint -sha256"
                            .to_string(),
                    ),
                );
            } else {
                m.pin_cert_sha256.push(hex);
            }
        }
        for p in &rs.pin_spki_sha256 {
            use base64::Engine;
            match base64::engine::general_purpose::STANDARD.decode(p.get_ref().trim()) {
                Ok(b) if b.len() == 32 => m.pin_spki_sha256.push(p.get_ref().trim().to_string()),
                _ => self.r.error(span(p), &format!("{field}.pin_spki_sha256"), "is not a base64 SHA-256", Some("openssl x509 -in c.crt -noout -pubkey | openssl pkey -pubin -outform der | openssl dgst -sha256 -binary | base64".to_string())),
            }
        }
        for f in &rs.identity_headers {
            match f.get_ref().as_str() {
                "nginx" => m.identity_headers.push(IdentityFormat::Nginx),
                "xfcc" => m.identity_headers.push(IdentityFormat::Xfcc),
                "rfc9440" => m.identity_headers.push(IdentityFormat::Rfc9440),
                other => self.r.error(
                    span(f),
                    &format!("{field}.identity_headers"),
                    format!("unknown format \"{other}\""),
                    Some("use \"nginx\", \"xfcc\" or \"rfc9440\"".to_string()),
                ),
            }
        }
        let mut names = NginxHeaderNames::default();
        if let Some(n) = &rs.identity_header_names {
            let set = |v: &Option<Spanned<String>>,
                       slot: &mut http::header::HeaderName,
                       r: &mut Reporter| {
                if let Some(v) = v {
                    match http::header::HeaderName::from_bytes(v.get_ref().as_bytes()) {
                        Ok(h) => *slot = h,
                        Err(_) => r.error(
                            span(v),
                            &format!("{field}.identity_header_names"),
                            format!("\"{}\" is not a header name", v.get_ref()),
                            None,
                        ),
                    }
                }
            };
            set(&n.cert, &mut names.cert, &mut self.r);
            set(&n.dn, &mut names.dn, &mut self.r);
            set(&n.issuer_dn, &mut names.issuer_dn, &mut self.r);
            set(&n.verify, &mut names.verify, &mut self.r);
            set(&n.serial, &mut names.serial, &mut self.r);
            set(&n.fingerprint, &mut names.fingerprint, &mut self.r);
            set(&n.not_after, &mut names.not_after, &mut self.r);
        }
        m.header_names = names;
        m
    }

    fn upstream(&mut self, i: usize, u: &Spanned<UpstreamSection>) -> Option<UpstreamConfig> {
        let us = u.get_ref();
        let name = us.name.get_ref().clone();
        let field = format!("upstream \"{name}\"");
        let mut servers = Vec::new();
        for s in us.servers.get_ref() {
            let raw = s.get_ref().trim();
            let (https, rest) = if let Some(r) = raw.strip_prefix("https://") {
                (true, r)
            } else if let Some(r) = raw.strip_prefix("http://") {
                (false, r)
            } else {
                (us.tls.is_some(), raw)
            };
            let rest = rest.trim_end_matches('/');
            match rest.parse::<http::uri::Authority>() {
                Ok(a) if a.port_u16().is_some() && !rest.contains('@') => servers.push(UpstreamServerConfig { https, authority: a.to_string() }),
                _ => self.r.error(span(s), &format!("{field}.servers"), format!("\"{raw}\" is not host:port"), Some("write \"127.0.0.1:9000\", \"backend.internal:8080\" or \"https://10.0.0.2:443\"".to_string())),
            }
        }
        if us.servers.get_ref().is_empty() {
            self.r.error(
                span(&us.servers),
                &format!("{field}.servers"),
                "no servers",
                Some("list at least one \"host:port\"".to_string()),
            );
        }
        let balance = match &us.balance {
            None => Balance::RoundRobin,
            Some(b) => match b.get_ref().as_str() {
                "round_robin" => Balance::RoundRobin,
                "least_conn" => Balance::LeastConn,
                other => {
                    self.r.error(
                        span(b),
                        &format!("{field}.balance"),
                        format!("unknown balancing \"{other}\""),
                        Some("use \"round_robin\" or \"least_conn\"".to_string()),
                    );
                    Balance::RoundRobin
                }
            },
        };
        let tls = us.tls.as_ref().map(|t| {
            let ts = t.get_ref();
            let ca = self.cert_bundle(&ts.ca, &format!("{field}.tls.ca"));
            let client_cert = match (&ts.cert, &ts.key) {
                (Some(c), Some(k)) => {
                    let chain = self.cert_bundle(c, &format!("{field}.tls.cert"));
                    let kp = self.resolve(k.get_ref());
                    self.files.push(kp.clone());
                    match std::fs::read(&kp)
                        .ok()
                        .and_then(|d| PrivateKeyDer::from_pem_slice(&d).ok())
                    {
                        Some(key) if !chain.is_empty() => {
                            if let Err(e) = crate::tls::check_key_matches(&chain, &key) {
                                self.r.error(
                                    span(k),
                                    &format!("{field}.tls.key"),
                                    format!("the key does not fit the certificate: {e}"),
                                    None,
                                );
                                None
                            } else {
                                Some((chain, key))
                            }
                        }
                        Some(_) => None,
                        None => {
                            self.r.error(
                                span(k),
                                &format!("{field}.tls.key"),
                                format!("cannot read a PEM private key from {}", kp.display()),
                                None,
                            );
                            None
                        }
                    }
                }
                (None, None) => None,
                (Some(c), None) | (None, Some(c)) => {
                    self.r.error(
                        span(c),
                        &format!("{field}.tls"),
                        "`cert` and `key` go together",
                        Some("give both, or neither".to_string()),
                    );
                    None
                }
            };
            UpstreamTlsConfig {
                ca,
                client_cert,
                server_name: ts.server_name.as_ref().map(|s| s.get_ref().clone()),
            }
        });
        if tls.is_none() && servers.iter().any(|s| s.https) {
            self.r.error(
                span(&us.servers),
                &format!("{field}.servers"),
                "an https:// server needs [upstream.tls] with the CA that signs it",
                Some("add tls = { ca = \"upstream-ca.pem\" }".to_string()),
            );
        }
        let health_check = us.health_check.as_ref().map(|h| {
            let hs = h.get_ref();
            if !hs.path.get_ref().starts_with('/') {
                self.r.error(
                    span(&hs.path),
                    &format!("{field}.health_check.path"),
                    "must start with /",
                    None,
                );
            }
            HealthCheckConfig {
                path: hs.path.get_ref().clone(),
                interval: self
                    .duration(
                        &hs.interval,
                        &format!("{field}.health_check.interval"),
                        Duration::from_secs(5),
                    )
                    .max(Duration::from_millis(100)),
                timeout: self.duration(
                    &hs.timeout,
                    &format!("{field}.health_check.timeout"),
                    Duration::from_secs(2),
                ),
                fails: hs.fails.as_ref().map(|v| *v.get_ref()).unwrap_or(2).max(1),
                passes: hs.passes.as_ref().map(|v| *v.get_ref()).unwrap_or(1).max(1),
            }
        });
        let _ = i;
        Some(UpstreamConfig {
            servers,
            balance,
            connect_timeout: self.duration(
                &us.connect_timeout,
                &format!("{field}.connect_timeout"),
                Duration::from_secs(5),
            ),
            response_timeout: self.duration(
                &us.response_timeout,
                &format!("{field}.response_timeout"),
                Duration::from_secs(60),
            ),
            keepalive: us.keepalive.as_ref().map(|k| *k.get_ref()).unwrap_or(64),
            keepalive_timeout: self.duration(
                &us.keepalive_timeout,
                &format!("{field}.keepalive_timeout"),
                Duration::from_secs(60),
            ),
            max_fails: us.max_fails.as_ref().map(|k| *k.get_ref()).unwrap_or(3),
            fail_timeout: self.duration(
                &us.fail_timeout,
                &format!("{field}.fail_timeout"),
                Duration::from_secs(10),
            ),
            retries: us.retries.as_ref().map(|k| *k.get_ref()).unwrap_or(1),
            tls,
            health_check,
            name,
        })
    }

    fn route(
        &mut self,
        i: usize,
        r: &Spanned<RouteSection>,
        upstreams: &HashMap<String, usize>,
        listeners: &HashMap<String, usize>,
        global_headers: &SecurityHeaders,
    ) -> Option<RouteConfig> {
        let rs = r.get_ref();
        let name = rs
            .name
            .as_ref()
            .map(|n| n.get_ref().clone())
            .unwrap_or_else(|| format!("route{i}"));
        let field = format!("route \"{name}\"");
        let upstream = match upstreams.get(rs.upstream.get_ref()) {
            Some(u) => Some(*u),
            None => {
                let mut defined: Vec<_> = upstreams.keys().map(|k| format!("\"{k}\"")).collect();
                defined.sort();
                let defined = if defined.is_empty() {
                    "none".to_string()
                } else {
                    defined.join(", ")
                };
                self.r.error(
                    span(&rs.upstream),
                    &format!("{field}.upstream"),
                    format!(
                        "upstream \"{}\" is not defined (defined: {defined})",
                        rs.upstream.get_ref()
                    ),
                    Some("name an [[upstream]] that exists, or add one with this name".to_string()),
                );
                None
            }
        };
        let path = rs
            .path
            .as_ref()
            .map(|p| p.get_ref().clone())
            .unwrap_or_else(|| "/".to_string());
        if !path.starts_with('/') || path.contains("..") || path.contains('?') || path.contains('#')
        {
            self.r.error(
                rs.path.as_ref().map(|p| p.span()),
                &format!("{field}.path"),
                format!("\"{path}\" is not a path prefix"),
                Some("write an absolute path such as \"/v1/\"".to_string()),
            );
        }
        let mut hosts = Vec::new();
        for h in &rs.hosts {
            let v = h
                .get_ref()
                .trim()
                .trim_end_matches('.')
                .to_ascii_lowercase();
            if let Some(suffix) = v.strip_prefix("*.") {
                if suffix.is_empty() || suffix.contains('*') {
                    self.r.error(
                        span(h),
                        &format!("{field}.hosts"),
                        format!("\"{v}\" is not a host pattern"),
                        Some("write \"*.example.com\"".to_string()),
                    );
                } else {
                    hosts.push(HostMatch::Suffix(format!(".{suffix}")));
                }
            } else if v.is_empty() || v.contains('*') || v.contains('/') || v.contains(' ') {
                self.r.error(
                    span(h),
                    &format!("{field}.hosts"),
                    format!("\"{v}\" is not a host name"),
                    Some("write \"api.example.com\" or \"*.example.com\"".to_string()),
                );
            } else {
                hosts.push(HostMatch::Exact(v));
            }
        }
        let methods = rs.methods.as_ref().map(|ms| {
            let mut out = Vec::new();
            for m in ms {
                match Method::from_bytes(m.get_ref().to_ascii_uppercase().as_bytes()) {
                    Ok(mm) => out.push(mm),
                    Err(_) => self.r.error(
                        span(m),
                        &format!("{field}.methods"),
                        format!("\"{}\" is not an HTTP method", m.get_ref()),
                        None,
                    ),
                }
            }
            out
        });
        let deprecation = rs.deprecated.as_ref().and_then(|d| match d.get_ref() {
            toml::Value::Boolean(true) => Some("true".to_string()),
            toml::Value::Boolean(false) => None,
            toml::Value::String(s) => match parse_rfc3339(s) {
                Some(t) => Some(format!(
                    "@{}",
                    t.duration_since(SystemTime::UNIX_EPOCH)
                        .unwrap_or_default()
                        .as_secs()
                )),
                None => {
                    self.r.error(
                        span(d),
                        &format!("{field}.deprecated"),
                        format!("\"{s}\" is not an RFC 3339 date"),
                        Some("write \"2025-01-01T00:00:00Z\" or true".to_string()),
                    );
                    None
                }
            },
            toml::Value::Datetime(dt) => match parse_rfc3339(&dt.to_string()) {
                Some(t) => Some(format!(
                    "@{}",
                    t.duration_since(SystemTime::UNIX_EPOCH)
                        .unwrap_or_default()
                        .as_secs()
                )),
                None => {
                    self.r.error(
                        span(d),
                        &format!("{field}.deprecated"),
                        "needs a full date and time with offset",
                        Some("write 2025-01-01T00:00:00Z".to_string()),
                    );
                    None
                }
            },
            _ => {
                self.r.error(
                    span(d),
                    &format!("{field}.deprecated"),
                    "must be true or a date",
                    Some("write deprecated = \"2025-01-01T00:00:00Z\"".to_string()),
                );
                None
            }
        });
        let sunset = rs
            .sunset
            .as_ref()
            .and_then(|s| match parse_rfc3339(s.get_ref()) {
                Some(t) => Some(httpdate::fmt_http_date(t)),
                None => {
                    self.r.error(
                        span(s),
                        &format!("{field}.sunset"),
                        format!("\"{}\" is not an RFC 3339 date", s.get_ref()),
                        Some("write \"2026-06-30T00:00:00Z\"".to_string()),
                    );
                    None
                }
            });
        let mut route_listeners = Vec::new();
        if let Some(ls) = &rs.listeners {
            for l in ls {
                match listeners.get(l.get_ref()) {
                    Some(idx) => route_listeners.push(*idx),
                    None => self.r.error(
                        span(l),
                        &format!("{field}.listeners"),
                        format!("listener \"{}\" is not defined", l.get_ref()),
                        Some("name a [[listener]] by its `name`".to_string()),
                    ),
                }
            }
        }
        let host_header = rs.host_header.as_ref().and_then(|h| {
            if http::HeaderValue::from_str(h.get_ref()).is_err() || h.get_ref().is_empty() {
                self.r.error(
                    span(h),
                    &format!("{field}.host_header"),
                    "is not a valid Host value",
                    None,
                );
                None
            } else {
                Some(h.get_ref().clone())
            }
        });
        let security_headers = match &rs.security_headers {
            Some(s) => self.security_headers(
                s,
                global_headers.clone(),
                &format!("{field}.security_headers"),
            ),
            None => global_headers.clone(),
        };
        Some(RouteConfig {
            hosts,
            path,
            strip_prefix: rs.strip_prefix,
            methods,
            upstream: upstream?,
            preserve_host: rs.preserve_host.unwrap_or(true),
            host_header,
            deprecation,
            sunset,
            deprecation_link: rs.deprecation_link.as_ref().map(|l| l.get_ref().clone()),
            response_timeout: rs.response_timeout.as_ref().map(|_| {
                self.duration(
                    &rs.response_timeout,
                    &format!("{field}.response_timeout"),
                    Duration::from_secs(60),
                )
            }),
            upgrade_idle_timeout: self.duration(
                &rs.upgrade_idle_timeout,
                &format!("{field}.upgrade_idle_timeout"),
                Duration::from_secs(3600),
            ),
            websocket: !matches!(rs.websocket, Some(WebsocketField::Enabled(false))),
            websocket_policy: match &rs.websocket {
                Some(WebsocketField::Policy(w)) => {
                    let uses_jwt = rs.auth.iter().chain(rs.auth_any.iter()).any(|a| {
                        crate::auth::Scheme::parse(a.get_ref()) == Some(crate::auth::Scheme::Jwt)
                    });
                    self.route_websocket(w, &field, uses_jwt)
                }
                _ => crate::websocket::WebsocketPolicy::default(),
            },
            listeners: route_listeners,
            security_headers,
            mtls: self.route_mtls(rs, &field),
            rate_limits: Vec::new(),
            auth: self.route_auth(rs, &field),
            consumer_header: match &rs.consumer_header {
                None => http::header::HeaderName::from_static("x-consumer"),
                Some(h) => http::header::HeaderName::from_bytes(h.get_ref().as_bytes())
                    .unwrap_or_else(|_| {
                        self.r.error(
                            span(h),
                            &format!("{field}.consumer_header"),
                            format!("\"{}\" is not a header name", h.get_ref()),
                            None,
                        );
                        http::header::HeaderName::from_static("x-consumer")
                    }),
            },
            cors: rs.cors.as_ref().map(|c| self.cors(c, &field)),
            signature: rs
                .signature
                .as_ref()
                .map(|sig| self.signature_policy(sig, &field)),
            jwt: rs
                .jwt
                .as_ref()
                .map(|j| self.route_jwt(j, &field))
                .unwrap_or_default(),
            validate: rs
                .validate
                .as_ref()
                .and_then(|v| self.route_validate(v, &field)),
            graphql: rs
                .graphql
                .as_ref()
                .map(|g| std::sync::Arc::new(self.route_graphql(g, &field))),
            name,
        })
    }

    /// `[route.validate]`: limits checked, schema / OpenAPI read and compiled now.
    fn route_validate(
        &mut self,
        sec: &Spanned<ValidateSection>,
        field: &str,
    ) -> Option<std::sync::Arc<crate::validate::Validation>> {
        use crate::validate::{compile_schema, media_essence, openapi, Draft, JsonLimits};
        let v = sec.get_ref();
        let field = format!("{field}.validate");
        let errors_before = self.r.diags.errors().count();
        let mut content_types = Vec::new();
        for c in &v.content_types {
            let e = media_essence(c.get_ref());
            let ok = e
                .split_once('/')
                .is_some_and(|(a, b)| !a.is_empty() && !b.is_empty() && (a != "*" || b == "*"));
            if !ok {
                self.r.error(
                    span(c),
                    &format!("{field}.content_types"),
                    format!("\"{}\" is not a media type", c.get_ref()),
                    Some("write \"application/json\", \"text/*\" or \"*/*\"".to_string()),
                );
            }
            content_types.push(e);
        }
        let mut limits = JsonLimits {
            max_body: u64::MAX,
            ..JsonLimits::default()
        };
        if let Some(m) = &v.max_body {
            match parse_size(m.get_ref()) {
                Ok(n) if n > 0 => limits.max_body = n,
                Ok(_) => self.r.error(
                    span(m),
                    &format!("{field}.max_body"),
                    "must be positive",
                    Some("write a size like \"64k\"".to_string()),
                ),
                Err(e) => self.r.error(
                    span(m),
                    &format!("{field}.max_body"),
                    e,
                    Some("write a size like \"64k\"".to_string()),
                ),
            }
        }
        let positive = |r: &mut super::error::Reporter,
                        x: &Option<Spanned<usize>>,
                        name: &str,
                        max: usize,
                        out: &mut usize| {
            if let Some(x) = x {
                if *x.get_ref() == 0 || *x.get_ref() > max {
                    r.error(
                        span(x),
                        &format!("{field}.{name}"),
                        format!("{} is out of range", x.get_ref()),
                        Some(format!("use 1 to {max}")),
                    );
                } else {
                    *out = *x.get_ref();
                }
            }
        };
        // serde_json refuses documents nested deeper than 128.
        positive(
            &mut self.r,
            &v.max_depth,
            "max_depth",
            128,
            &mut limits.max_depth,
        );
        positive(
            &mut self.r,
            &v.max_keys,
            "max_keys",
            usize::MAX,
            &mut limits.max_keys,
        );
        positive(
            &mut self.r,
            &v.max_string,
            "max_string",
            usize::MAX,
            &mut limits.max_string,
        );
        let explicit_limits = v.max_body.is_some()
            || v.max_depth.is_some()
            || v.max_keys.is_some()
            || v.max_string.is_some();
        if v.schema.is_some() && v.openapi.is_some() {
            self.r.error(
                span(sec),
                &field,
                "`schema` and `openapi` cannot both be set",
                Some(
                    "keep one: the OpenAPI document's request bodies carry their schemas"
                        .to_string(),
                ),
            );
        }
        let mut schema = None;
        if let Some(s) = &v.schema {
            let text = s.get_ref();
            let f = format!("{field}.schema");
            let fix = "give a JSON Schema (draft 2020-12 unless it names its `$schema`) inline or as a file path";
            let (doc, origin) = if text.trim_start().starts_with('{') {
                (Some(text.clone()), "the inline schema".to_string())
            } else {
                let p = self.resolve(text);
                match std::fs::read_to_string(&p) {
                    Ok(t) => (Some(t), format!("schema file {}", p.display())),
                    Err(e) => {
                        self.r.error(
                            span(s),
                            &f,
                            format!("cannot read schema file {}: {e}", p.display()),
                            Some("check the path (a relative path is resolved from the config file's directory)".to_string()),
                        );
                        (None, String::new())
                    }
                }
            };
            if let Some(doc) = doc {
                match serde_json::from_str::<serde_json::Value>(&doc) {
                    Err(e) => self.r.error(
                        span(s),
                        &f,
                        format!("{origin} is not JSON: {e}"),
                        Some(fix.to_string()),
                    ),
                    Ok(json) => match compile_schema(&json, Draft::Draft202012) {
                        Ok(c) => schema = Some(c),
                        Err(e) => self.r.error(
                            span(s),
                            &f,
                            format!("{origin} is not a valid JSON Schema: {e}"),
                            Some(fix.to_string()),
                        ),
                    },
                }
            }
            if content_types.is_empty() {
                content_types.push("application/json".to_string());
            }
        }
        if v.reject_unknown.is_some() && v.openapi.is_none() {
            self.r.warn(
                span(sec),
                &format!("{field}.reject_unknown"),
                "has no effect without `openapi`",
                Some("set `openapi = \"…\"` or remove `reject_unknown`".to_string()),
            );
        }
        let mut api = None;
        if let Some(o) = &v.openapi {
            let p = self.resolve(o.get_ref());
            let f = format!("{field}.openapi");
            match std::fs::read_to_string(&p) {
                Err(e) => self.r.error(
                    span(o),
                    &f,
                    format!("cannot read OpenAPI document {}: {e}", p.display()),
                    Some("check the path (a relative path is resolved from the config file's directory)".to_string()),
                ),
                Ok(text) => match openapi::parse(&text).and_then(openapi::OpenApi::compile) {
                    Ok(a) => api = Some(a),
                    Err(e) => self.r.error(
                        span(o),
                        &f,
                        format!("OpenAPI document {}: {e}", p.display()),
                        Some("fix the document (OpenAPI 3.0 or 3.1; only local $refs under #/components)".to_string()),
                    ),
                },
            }
        }
        if self.r.diags.errors().count() > errors_before {
            return None;
        }
        Some(std::sync::Arc::new(crate::validate::Validation {
            content_types,
            limits,
            explicit_limits,
            schema,
            openapi: api,
            reject_unknown: v.reject_unknown.unwrap_or(false),
        }))
    }
}

impl Validator<'_> {
    /// `[route.graphql]`: limits with their defaults, weights split by "Type.field"
    /// and field name, the persisted-query allowlist read and parsed now.
    fn route_graphql(
        &mut self,
        sec: &Spanned<GraphqlSection>,
        field: &str,
    ) -> crate::graphql::GraphqlPolicy {
        use crate::graphql::{GraphqlPolicy, PersistedQueries, PARSER_DEPTH_LIMIT};
        let g = sec.get_ref();
        let field = format!("{field}.graphql");
        let d = GraphqlPolicy::default();
        let mut p = GraphqlPolicy::default();
        let limit = |r: &mut Reporter,
                     v: &Option<Spanned<u64>>,
                     name: &str,
                     min: u64,
                     max: u64,
                     default: u64|
         -> u64 {
            let Some(v) = v else { return default };
            let x = *v.get_ref();
            if x < min || x > max {
                r.error(
                    span(v),
                    &format!("{field}.{name}"),
                    format!("{x} is out of range"),
                    Some(format!("write a number from {min} to {max}")),
                );
                return default;
            }
            x
        };
        // The parser refuses selection sets nested deeper than 64; leave room for inline fragments.
        p.max_depth = limit(
            &mut self.r,
            &g.max_depth,
            "max_depth",
            1,
            PARSER_DEPTH_LIMIT - 4,
            d.max_depth,
        );
        p.max_aliases = limit(
            &mut self.r,
            &g.max_aliases,
            "max_aliases",
            0,
            u64::MAX,
            d.max_aliases,
        );
        p.max_root_fields = limit(
            &mut self.r,
            &g.max_root_fields,
            "max_root_fields",
            1,
            u64::MAX,
            d.max_root_fields,
        );
        p.max_fragments = limit(
            &mut self.r,
            &g.max_fragments,
            "max_fragments",
            0,
            u64::MAX,
            d.max_fragments,
        );
        p.max_cost = limit(
            &mut self.r,
            &g.max_cost,
            "max_cost",
            1,
            u64::MAX,
            d.max_cost,
        );
        p.max_batch = limit(
            &mut self.r,
            &g.max_batch,
            "max_batch",
            1,
            10_000,
            d.max_batch,
        );
        p.default_cost = limit(
            &mut self.r,
            &g.default_cost,
            "default_cost",
            0,
            u32::MAX as u64,
            d.default_cost,
        );
        p.default_list_size = limit(
            &mut self.r,
            &g.default_list_size,
            "default_list_size",
            0,
            u32::MAX as u64,
            d.default_list_size,
        );
        if let Some(s) = &g.max_query_size {
            match parse_size(s.get_ref()) {
                Ok(n) if n > 0 && n <= 16 * 1024 * 1024 => p.max_query_size = n as usize,
                Ok(_) => self.r.error(
                    span(s),
                    &format!("{field}.max_query_size"),
                    "must be between 1 byte and 16m",
                    Some("write a size like \"32k\"".to_string()),
                ),
                Err(e) => self.r.error(
                    span(s),
                    &format!("{field}.max_query_size"),
                    e,
                    Some("write a size like \"32k\"".to_string()),
                ),
            }
        }
        let is_name = |s: &str| {
            let mut c = s.chars();
            c.next()
                .is_some_and(|f| f == '_' || f.is_ascii_alphabetic())
                && c.all(|x| x == '_' || x.is_ascii_alphanumeric())
        };
        if let Some(w) = &g.weights {
            for (key, cost) in w.get_ref() {
                let (ty, name) = match key.split_once('.') {
                    Some((t, f)) => (Some(t), f),
                    None => (None, key.as_str()),
                };
                if !is_name(name) || ty.is_some_and(|t| !is_name(t)) {
                    self.r.error(
                        span(w),
                        &format!("{field}.weights"),
                        format!("\"{key}\" is not a field name or \"Type.field\""),
                        Some("write weights = { \"Query.users\" = 5, \"posts\" = 3 }".to_string()),
                    );
                    continue;
                }
                match ty {
                    Some(t) => {
                        p.type_weights
                            .entry(t.to_string())
                            .or_default()
                            .insert(name.to_string(), *cost);
                    }
                    None => {
                        p.field_weights.insert(name.to_string(), *cost);
                    }
                }
            }
        }
        if let Some(args) = &g.list_arguments {
            p.list_arguments.clear();
            for a in args {
                if is_name(a.get_ref()) {
                    p.list_arguments.push(a.get_ref().clone());
                } else {
                    self.r.error(
                        span(a),
                        &format!("{field}.list_arguments"),
                        format!("\"{}\" is not an argument name", a.get_ref()),
                        Some("write names like \"first\", \"limit\"".to_string()),
                    );
                }
            }
        }
        p.introspection = keyword(
            &mut self.r,
            &g.introspection,
            &format!("{field}.introspection"),
            &[("allow", true), ("deny", false)],
            true,
        );
        if let Some(file) = &g.persisted_queries {
            let path = self.resolve(file.get_ref());
            match std::fs::read_to_string(&path) {
                Err(e) => self.r.error(
                    span(file),
                    &format!("{field}.persisted_queries"),
                    format!("cannot read {}: {e}", path.display()),
                    Some("give the path of a JSON allowlist (relative to this config file)".to_string()),
                ),
                Ok(text) => match PersistedQueries::from_json(&text) {
                    Ok(pq) => {
                        // An allowlisted operation the limits refuse is a mistake worth knowing now.
                        let mut over: Vec<String> = pq
                            .iter()
                            .filter_map(|(h, op)| {
                                let r = op.check_with_defaults(&p).err()?;
                                Some(format!("{}…: {}", &crate::graphql::hex(h)[..12], r.message()))
                            })
                            .collect();
                        over.sort();
                        if !over.is_empty() {
                            self.r.warn(
                                span(file),
                                &format!("{field}.persisted_queries"),
                                format!(
                                    "{} allowlisted operation(s) exceed this route's limits and will be refused: {}",
                                    over.len(),
                                    over.iter().take(3).cloned().collect::<Vec<_>>().join("; ")
                                ),
                                Some("raise the limit or remove the operation from the allowlist".to_string()),
                            );
                        }
                        p.persisted = Some(std::sync::Arc::new(pq));
                    }
                    Err(e) => self.r.error(
                        span(file),
                        &format!("{field}.persisted_queries"),
                        format!("{}: {e}", path.display()),
                        Some("write {\"<sha256 hex of the query>\": \"<query>\", …} or an Apollo persisted-query manifest (docs/graphql.md)".to_string()),
                    ),
                },
            }
        }
        if let Some(only) = &g.allowlist_only {
            p.allowlist_only = *only.get_ref();
            if p.allowlist_only && g.persisted_queries.is_none() {
                self.r.error(
                    span(only),
                    &format!("{field}.allowlist_only"),
                    "allowlist_only needs an allowlist",
                    Some("add persisted_queries = \"persisted-queries.json\"".to_string()),
                );
            }
        }
        p
    }
}

/// Parses "2025-01-01T00:00:00Z" / "+02:00" offsets.
pub fn parse_rfc3339(s: &str) -> Option<SystemTime> {
    let dt = time::OffsetDateTime::parse(s.trim(), &time::format_description::well_known::Rfc3339)
        .ok()?;
    let secs = dt.unix_timestamp();
    if secs < 0 {
        return None;
    }
    Some(SystemTime::UNIX_EPOCH + Duration::from_secs(secs as u64))
}
