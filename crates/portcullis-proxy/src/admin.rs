//! The admin API: health, readiness, metrics, state and operator actions on
//! a listener of their own.
//!
//! Owns the admin listener (plain HTTP on loopback, or TLS that requires a
//! client certificate from the admin CA) and its endpoints:
//!
//! ```text
//! GET  /healthz        liveness: the process answers
//! GET  /readyz         503 while the last config load failed or a route has no live upstream
//! GET  /metrics        Prometheus text exposition (OpenMetrics)
//! GET  /config         the config in force, secrets redacted (JSON)
//! GET  /routes         routes with their upstream, auth and limits
//! GET  /upstreams      upstream servers and their state
//! GET  /certificates   served certificates, CAs and CRLs with time to expiry
//! GET  /revocations    CRL files in force and the built-in CA's revocations
//! POST /revoke         {"serial": "...", "reason": "keyCompromise"}: revoke with the built-in CA
//! POST /reload         reload the config file now (as SIGHUP)
//! ```
//!
//! Every action is logged and written to the audit log when one is configured.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;

use arc_swap::ArcSwap;
use bytes::Bytes;
use http::{Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use serde_json::{json, Value};
use tokio::net::TcpListener;
use tokio::sync::watch;

use crate::config::{AdminConfig, Config};
use crate::runtime::Runtime;
use crate::server::Reloader;

/// What the endpoints read and act on.
#[derive(Clone)]
pub struct AdminState {
    pub runtime: Arc<ArcSwap<Runtime>>,
    pub config: Arc<ArcSwap<Config>>,
    pub reloader: Reloader,
}

/// Builds the TLS config of an admin listener with client certificates.
fn tls_config(cfg: &AdminConfig) -> Result<Option<Arc<rustls::ServerConfig>>, String> {
    let Some(t) = &cfg.tls else {
        return Ok(None);
    };
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let mut roots = rustls::RootCertStore::empty();
    for c in &t.client_ca {
        roots
            .add(c.clone())
            .map_err(|e| format!("admin client_ca: {e}"))?;
    }
    let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
        Arc::new(roots),
        provider.clone(),
    )
    .build()
    .map_err(|e| format!("admin client_ca: {e}"))?;
    let mut sc = rustls::ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
        .map_err(|e| e.to_string())?
        .with_client_cert_verifier(verifier)
        .with_single_cert(t.chain.clone(), t.key.clone_key())
        .map_err(|e| format!("admin cert/key: {e}"))?;
    sc.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Some(Arc::new(sc)))
}

/// Serves the admin API until `stop` turns true.
pub async fn serve(
    listener: TcpListener,
    cfg: &AdminConfig,
    state: AdminState,
    mut stop: watch::Receiver<bool>,
) {
    let tls = match tls_config(cfg) {
        Ok(t) => t.map(tokio_rustls::TlsAcceptor::from),
        Err(e) => {
            tracing::error!("admin API not started: {e}");
            return;
        }
    };
    loop {
        let (tcp, peer) = tokio::select! {
            r = listener.accept() => match r {
                Ok(v) => v,
                Err(e) => {
                    tracing::warn!(error = %e, "admin accept failed");
                    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                    continue;
                }
            },
            _ = stop.changed() => return,
        };
        let state = state.clone();
        let tls = tls.clone();
        tokio::spawn(async move {
            let builder = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
            match tls {
                None => {
                    let svc = service_fn(move |req| handle(state.clone(), peer, None, req));
                    let _ = builder.serve_connection(TokioIo::new(tcp), svc).await;
                }
                Some(acc) => {
                    let stream = match tokio::time::timeout(
                        std::time::Duration::from_secs(10),
                        acc.accept(tcp),
                    )
                    .await
                    {
                        Ok(Ok(s)) => s,
                        Ok(Err(e)) => {
                            tracing::warn!(%peer, error = %e, "admin API: TLS handshake refused");
                            return;
                        }
                        Err(_) => return,
                    };
                    let actor = stream
                        .get_ref()
                        .1
                        .peer_certificates()
                        .and_then(|c| c.first())
                        .and_then(|c| {
                            x509_parser::parse_x509_certificate(c.as_ref())
                                .ok()
                                .map(|(_, x)| x.subject().to_string())
                        });
                    let svc =
                        service_fn(move |req| handle(state.clone(), peer, actor.clone(), req));
                    let _ = builder.serve_connection(TokioIo::new(stream), svc).await;
                }
            }
        });
    }
}

type AdminResponse = Response<Full<Bytes>>;

fn json_reply(status: StatusCode, v: &Value) -> AdminResponse {
    let mut body = serde_json::to_vec_pretty(v).unwrap_or_default();
    body.push(b'\n');
    let mut r = Response::new(Full::new(Bytes::from(body)));
    *r.status_mut() = status;
    r.headers_mut().insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static("application/json"),
    );
    r.headers_mut().insert(
        http::header::CACHE_CONTROL,
        http::HeaderValue::from_static("no-store"),
    );
    r
}

async fn handle(
    state: AdminState,
    peer: SocketAddr,
    actor: Option<String>,
    req: Request<Incoming>,
) -> Result<AdminResponse, Infallible> {
    let path = req.uri().path().to_string();
    let method = req.method().clone();
    let rt = state.runtime.load_full();
    let cfg = state.config.load_full();
    let resp = match (&method, path.as_str()) {
        (&Method::GET, "/healthz") => json_reply(StatusCode::OK, &json!({"status": "ok"})),
        (&Method::GET, "/readyz") => {
            let reasons = not_ready_reasons(&state, &rt);
            if reasons.is_empty() {
                json_reply(StatusCode::OK, &json!({"ready": true}))
            } else {
                json_reply(
                    StatusCode::SERVICE_UNAVAILABLE,
                    &json!({"ready": false, "reasons": reasons}),
                )
            }
        }
        (&Method::GET, "/metrics") => {
            let text = rt.metrics.render(&rt, &cfg);
            let mut r = Response::new(Full::new(Bytes::from(text)));
            r.headers_mut().insert(
                http::header::CONTENT_TYPE,
                http::HeaderValue::from_static(
                    "application/openmetrics-text; version=1.0.0; charset=utf-8",
                ),
            );
            r
        }
        (&Method::GET, "/config") => json_reply(StatusCode::OK, &redacted_config(&cfg)),
        (&Method::GET, "/routes") => json_reply(StatusCode::OK, &routes(&rt, &cfg)),
        (&Method::GET, "/upstreams") => json_reply(StatusCode::OK, &upstreams(&rt)),
        (&Method::GET, "/certificates") => json_reply(StatusCode::OK, &certificates(&cfg)),
        (&Method::GET, "/revocations") => json_reply(StatusCode::OK, &revocations(&cfg).await),
        (&Method::POST, "/reload") => {
            let who = actor.clone().unwrap_or_else(|| format!("admin@{peer}"));
            tracing::info!(actor = %who, "admin API: reload requested");
            rt.audit.admin_action(&who, "reload", "POST /reload");
            match state.reloader.reload_file("admin API") {
                Ok(()) => json_reply(StatusCode::OK, &json!({"reloaded": true})),
                Err(e) => json_reply(
                    StatusCode::UNPROCESSABLE_ENTITY,
                    &json!({"reloaded": false, "error": e, "note": "the running configuration stays"}),
                ),
            }
        }
        (&Method::POST, "/revoke") => {
            let who = actor.clone().unwrap_or_else(|| format!("admin@{peer}"));
            let body = match http_body_util::Limited::new(req.into_body(), 4096)
                .collect()
                .await
            {
                Ok(b) => b.to_bytes(),
                Err(_) => {
                    return Ok(json_reply(
                        StatusCode::BAD_REQUEST,
                        &json!({"error": "body too large or unreadable"}),
                    ))
                }
            };
            revoke(&state, &cfg, &who, &body).await
        }
        (
            _,
            "/healthz" | "/readyz" | "/metrics" | "/config" | "/routes" | "/upstreams"
            | "/certificates" | "/revocations" | "/reload" | "/revoke",
        ) => json_reply(
            StatusCode::METHOD_NOT_ALLOWED,
            &json!({"error": "method not allowed"}),
        ),
        _ => json_reply(
            StatusCode::NOT_FOUND,
            &json!({"error": "not found", "endpoints": ["/healthz", "/readyz", "/metrics", "/config", "/routes", "/upstreams", "/certificates", "/revocations", "POST /revoke", "POST /reload"]}),
        ),
    };
    Ok(resp)
}

fn not_ready_reasons(state: &AdminState, rt: &Runtime) -> Vec<String> {
    let mut reasons = Vec::new();
    if let Some(e) = state.reloader.last_error() {
        reasons.push(format!(
            "the configuration file failed to load (the previous one is serving): {e}"
        ));
    }
    for r in &rt.routes {
        if r.upstream.all_down() {
            reasons.push(format!(
                "route \"{}\": every server of upstream \"{}\" is down",
                r.cfg.name, r.upstream.name
            ));
        }
    }
    reasons
}

/// Keys whose values are secrets, wherever they appear in the file.
fn is_secret_key(k: &str) -> bool {
    let k = k.to_ascii_lowercase();
    k.contains("secret") && k != "secret_env"
        || k.contains("password")
        || k.contains("passphrase")
        || k.contains("token")
        || k == "hash"
        || k == "api_key"
}

fn redact(v: &mut toml::Value) {
    match v {
        toml::Value::Table(t) => {
            for (k, val) in t.iter_mut() {
                if is_secret_key(k) && !val.is_table() && !val.is_array() {
                    *val = toml::Value::String("[redacted]".into());
                } else {
                    redact(val);
                }
            }
        }
        toml::Value::Array(a) => a.iter_mut().for_each(redact),
        _ => {}
    }
}

/// The config file in force as JSON, secrets replaced by "[redacted]".
pub fn redacted_config(cfg: &Config) -> Value {
    let mut v: toml::Value = match toml::from_str(&cfg.source_text) {
        Ok(v) => v,
        Err(_) => return json!({"error": "the config text could not be re-read"}),
    };
    redact(&mut v);
    json!({
        "file": cfg.source.display().to_string(),
        "sha256": cfg.source_sha256,
        "config": serde_json::to_value(&v).unwrap_or(Value::Null),
    })
}

fn routes(rt: &Runtime, cfg: &Config) -> Value {
    let list: Vec<Value> = rt
        .routes
        .iter()
        .map(|r| {
            let c = &r.cfg;
            json!({
                "name": c.name,
                "hosts": c.hosts.iter().map(|h| match h {
                    crate::config::HostMatch::Exact(s) => s.clone(),
                    crate::config::HostMatch::Suffix(s) => format!("*{s}"),
                }).collect::<Vec<_>>(),
                "path": c.path,
                "strip_prefix": c.strip_prefix,
                "methods": c.methods.as_ref().map(|m| m.iter().map(|m| m.as_str().to_string()).collect::<Vec<_>>()),
                "upstream": r.upstream.name,
                "listeners": if c.listeners.is_empty() {
                    cfg.listeners.iter().map(|l| l.name.clone()).collect::<Vec<_>>()
                } else {
                    c.listeners.iter().filter_map(|&i| cfg.listeners.get(i).map(|l| l.name.clone())).collect()
                },
                "client_cert_required": c.mtls.required,
                "auth": {
                    "all": c.auth.all.iter().map(|s| s.as_str()).collect::<Vec<_>>(),
                    "any": c.auth.any.iter().map(|s| s.as_str()).collect::<Vec<_>>(),
                },
                "rate_limits": r.zones.iter().map(|z| z.cfg.name.clone()).collect::<Vec<_>>(),
                "deprecation": c.deprecation,
                "sunset": c.sunset,
            })
        })
        .collect();
    json!({ "routes": list })
}

fn upstreams(rt: &Runtime) -> Value {
    let now = crate::ratelimit::now_ms();
    let list: Vec<Value> = rt
        .upstreams
        .iter()
        .map(|u| {
            json!({
                "name": u.name,
                "balance": format!("{:?}", u.balance).to_lowercase(),
                "all_down": u.all_down(),
                "servers": u.servers.iter().map(|s| json!({
                    "address": &*s.authority,
                    "https": s.https,
                    "up": !s.is_ejected(|| now) && !s.is_health_down(),
                    "ejected": s.is_ejected(|| now),
                    "health_check_failing": s.is_health_down(),
                    "active_requests": s.active(),
                })).collect::<Vec<_>>(),
            })
        })
        .collect();
    json!({ "upstreams": list })
}

fn certificates(cfg: &Config) -> Value {
    let now = std::time::SystemTime::now();
    let list: Vec<Value> = crate::expiry::report(cfg, now)
        .into_iter()
        .chain(crate::expiry::crl_report(cfg, now))
        .map(|e| {
            json!({
                "kind": e.kind,
                "name": e.name,
                "seconds_left": e.seconds_left,
                "days_left": (e.seconds_left as f64 / 86400.0 * 10.0).round() / 10.0,
                "expired": e.seconds_left < 0,
            })
        })
        .collect();
    json!({ "certificates": list })
}

async fn revocations(cfg: &Config) -> Value {
    let mut crls = Vec::new();
    for l in &cfg.listeners {
        for p in &l.crl_paths {
            let Ok(list) = crate::config::read_crls(std::slice::from_ref(p)) else {
                crls.push(json!({"listener": l.name, "file": p.display().to_string(), "error": "unreadable"}));
                continue;
            };
            for der in list {
                if let Ok((_, crl)) = x509_parser::parse_x509_crl(der.as_ref()) {
                    let serials: Vec<String> = crl
                        .iter_revoked_certificates()
                        .map(|r| r.raw_serial_as_string().replace(':', ""))
                        .collect();
                    crls.push(json!({
                        "listener": l.name,
                        "file": p.display().to_string(),
                        "issuer": crl.issuer().to_string(),
                        "this_update": crl.last_update().to_rfc2822().ok(),
                        "next_update": crl.next_update().and_then(|t| t.to_rfc2822().ok()),
                        "revoked_serials": serials,
                    }));
                }
            }
        }
    }
    let mut builtin = Vec::new();
    if let Some(p) = &cfg.pki {
        let dir = p.ca_dir.clone();
        let recs = tokio::task::spawn_blocking(move || {
            portcullis_pki::Ca::open(&dir)
                .and_then(|ca| ca.state())
                .map(|st| {
                    st.certs
                        .values()
                        .filter_map(|r| {
                            r.revoked.as_ref().map(|rv| {
                                json!({
                                    "serial": r.serial,
                                    "name": r.name,
                                    "revoked_at": rv.at,
                                    "reason": rv.reason.to_string(),
                                })
                            })
                        })
                        .collect::<Vec<_>>()
                })
        })
        .await;
        if let Ok(Ok(r)) = recs {
            builtin = r;
        }
    }
    json!({ "crls": crls, "builtin_ca": builtin })
}

async fn revoke(state: &AdminState, cfg: &Config, actor: &str, body: &[u8]) -> AdminResponse {
    let Some(pki) = &cfg.pki else {
        return json_reply(
            StatusCode::CONFLICT,
            &json!({"error": "no built-in CA: add a [pki] section, or revoke with your CA and update the CRL file (the gateway picks it up within a second)"}),
        );
    };
    let v: Value = match serde_json::from_slice(body) {
        Ok(v) => v,
        Err(_) => {
            return json_reply(
                StatusCode::BAD_REQUEST,
                &json!({"error": "expected JSON: {\"serial\": \"<hex serial or name>\", \"reason\": \"keyCompromise\"}"}),
            )
        }
    };
    let Some(serial) = v.get("serial").and_then(Value::as_str).map(str::to_owned) else {
        return json_reply(
            StatusCode::BAD_REQUEST,
            &json!({"error": "\"serial\" is required (hex serial or certificate name)"}),
        );
    };
    let reason_s = v
        .get("reason")
        .and_then(Value::as_str)
        .unwrap_or("unspecified")
        .to_string();
    let reason: portcullis_pki::RevocationReason = match reason_s.parse() {
        Ok(r) => r,
        Err(e) => {
            return json_reply(
                StatusCode::BAD_REQUEST,
                &json!({"error": format!("reason: {e}")}),
            )
        }
    };
    let dir = pki.ca_dir.clone();
    let validity = pki.crl_validity;
    let res = tokio::task::spawn_blocking(move || {
        let ca = portcullis_pki::Ca::open(&dir)?;
        let rec = ca.revoke(&serial, reason)?;
        let crl = ca.write_crl(&ca.default_crl_path(), validity)?;
        Ok::<_, portcullis_pki::PkiError>((rec, crl.number))
    })
    .await;
    match res {
        Ok(Ok((rec, number))) => {
            tracing::warn!(%actor, serial = %rec.serial, name = %rec.name, %reason, "admin API: certificate revoked");
            // Apply at once (the CRL watch would within 250 ms): live connections close now.
            if let Err(e) = state.reloader.refresh() {
                tracing::error!("revoked, but the runtime could not be rebuilt: {e}");
            }
            state.runtime.load().audit.admin_action(
                actor,
                "revoke",
                &format!("serial {} ({}) {reason}", rec.serial, rec.name),
            );
            json_reply(
                StatusCode::OK,
                &json!({"revoked": rec.serial, "name": rec.name, "reason": reason.to_string(), "crl_number": number}),
            )
        }
        Ok(Err(e)) => {
            let status = match e {
                portcullis_pki::PkiError::AlreadyRevoked(_) => StatusCode::CONFLICT,
                _ => StatusCode::UNPROCESSABLE_ENTITY,
            };
            json_reply(status, &json!({"error": e.to_string()}))
        }
        Err(_) => json_reply(
            StatusCode::INTERNAL_SERVER_ERROR,
            &json!({"error": "revocation task failed"}),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_are_redacted_wherever_they_are() {
        let mut v: toml::Value = toml::from_str(
            r#"
[cluster]
redis = "redis://127.0.0.1:6379"
key_secret = "0123456789abcdef0123"
[[consumer]]
name = "a"
signing_keys = [{ keyid = "k", secret_env = "HMAC_KEY" }]
api_keys = [{ hash = "sha256:abcd" }]
[[jwt_issuer]]
issuer = "x"
client_secret = "s3cret"
"#,
        )
        .unwrap();
        redact(&mut v);
        let s = v.to_string();
        assert!(!s.contains("0123456789abcdef0123"), "{s}");
        assert!(!s.contains("s3cret"), "{s}");
        assert!(!s.contains("sha256:abcd"), "{s}");
        assert!(s.contains("HMAC_KEY"), "env var names are not secrets: {s}");
        assert!(s.contains("redis://127.0.0.1:6379"), "{s}");
    }
}
