//! The built-in CA's HTTP endpoints, served by the gateway.
//!
//! Owns, under the configured prefix (default `/pki`):
//!   GET  {prefix}/ca.crt          the CA chain (PEM)
//!   GET  {prefix}/crl             the current CRL (DER, application/pkix-crl)
//!   GET  {prefix}/ocsp/{base64}   OCSP (RFC 6960 A.1, GET form)
//!   POST {prefix}/ocsp            OCSP (application/ocsp-request)
//!   POST {prefix}/enroll          CSR (PEM) + `Authorization: Bearer <token>` → chain (PEM)
//!   POST {prefix}/renew           CSR (PEM) over mTLS with the current certificate → chain
//! and a background task that re-signs the CRL before its nextUpdate.
//! CA work (signing, the journal's fsync) runs on the blocking pool, never
//! on the async workers. It knows nothing about routes.

use std::sync::Arc;
use std::time::Duration;

use base64::Engine;
use bytes::Bytes;
use http::header::{self, HeaderValue};
use http::{Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, Limited};
use hyper::body::Incoming;
use portcullis_pki::{Ca, PkiError};

use crate::audit::{AuditEvent, AuditKind, AuditLog};
use crate::body::ResponseBody;
use crate::mtls::ClientIdentity;

/// Largest CSR or OCSP request accepted.
const MAX_BODY: usize = 64 * 1024;

/// Settings of `[pki]`.
#[derive(Debug, Clone)]
pub struct PkiSettings {
    pub ca_dir: std::path::PathBuf,
    pub prefix: String,
    pub crl_validity: Duration,
    pub ocsp_validity: Duration,
    /// Listener indices serving the endpoints; empty = all.
    pub listeners: Vec<usize>,
}

/// The endpoints, with the CA opened once.
pub struct PkiService {
    ca: Arc<Ca>,
    pub settings: PkiSettings,
    audit: AuditLog,
    _resign: crate::upstream::TaskGuard,
}

fn reply(
    status: StatusCode,
    ctype: &'static str,
    body: impl Into<Bytes>,
) -> Response<ResponseBody> {
    let mut r = Response::new(ResponseBody::full(body.into()));
    *r.status_mut() = status;
    r.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(ctype));
    r.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    r
}

fn json_error(status: StatusCode, code: &str, message: &str) -> Response<ResponseBody> {
    reply(
        status,
        "application/json",
        serde_json::json!({ "error": code, "message": message }).to_string(),
    )
}

impl PkiService {
    /// Opens the CA and starts the CRL re-signing task; issues, renewals and
    /// refusals go to `audit`.
    pub fn start(settings: PkiSettings, audit: AuditLog) -> Result<PkiService, PkiError> {
        let ca = Arc::new(Ca::open(&settings.ca_dir)?);
        let resign = {
            let ca = ca.clone();
            let validity = settings.crl_validity;
            crate::upstream::TaskGuard::spawn(async move {
                // Re-sign when less than half the validity is left (or no CRL exists yet).
                loop {
                    let left = crl_time_left(&ca);
                    if left > validity / 2 {
                        tokio::time::sleep(left - validity / 2).await;
                        continue;
                    }
                    let ca2 = ca.clone();
                    let res = tokio::task::spawn_blocking(move || {
                        ca2.write_crl(&ca2.default_crl_path(), validity)
                    })
                    .await;
                    match res {
                        Ok(Ok(crl)) => tracing::debug!(number = crl.number, "CRL re-signed"),
                        Ok(Err(e)) => tracing::error!(error = %e, "cannot re-sign the CRL"),
                        Err(e) => tracing::error!(error = %e, "CRL task failed"),
                    }
                    tokio::time::sleep(Duration::from_secs(5)).await;
                }
            })
        };
        Ok(PkiService {
            ca,
            settings,
            audit,
            _resign: resign,
        })
    }

    /// Is this request for us?
    pub fn matches(&self, path: &str, listener: usize) -> bool {
        (self.settings.listeners.is_empty() || self.settings.listeners.contains(&listener))
            && path
                .strip_prefix(self.settings.prefix.as_str())
                .is_some_and(|rest| rest.starts_with('/'))
    }

    /// Is this an OCSP GET path (`{prefix}/ocsp/{url-encoded base64}`, RFC 6960 A.1)?
    /// Those are routed on the raw path: the base64 may hold `%2F`, which path
    /// normalisation refuses, and `//`, which it would collapse.
    pub fn is_ocsp_get(&self, raw_path: &str, listener: usize) -> bool {
        self.matches(raw_path, listener)
            && raw_path[self.settings.prefix.len()..].starts_with("/ocsp/")
    }

    /// Answers a request whose path [`Self::matches`]; `peer` and
    /// `request_id` go into audit records.
    pub async fn handle(
        &self,
        req: Request<Incoming>,
        path: &str,
        identity: Option<&Arc<ClientIdentity>>,
        peer: std::net::SocketAddr,
        request_id: &str,
    ) -> Response<ResponseBody> {
        let audit = |kind: AuditKind, who: Option<&str>, reason: &str| {
            self.audit.record(
                AuditEvent::new(kind, reason)
                    .peer(peer)
                    .identity(who)
                    .route("pki")
                    .request_id(request_id),
            )
        };
        let sub = &path[self.settings.prefix.len()..];
        let method = req.method().clone();
        match (&method, sub) {
            (&Method::GET | &Method::HEAD, "/ca.crt") => reply(
                StatusCode::OK,
                "application/x-pem-file",
                self.ca.chain_pem(),
            ),
            (&Method::GET | &Method::HEAD, "/crl") => {
                let ca = self.ca.clone();
                let validity = self.settings.crl_validity;
                match tokio::task::spawn_blocking(move || read_or_sign_crl(&ca, validity)).await {
                    Ok(Ok(der)) => reply(StatusCode::OK, "application/pkix-crl", der),
                    _ => json_error(
                        StatusCode::SERVICE_UNAVAILABLE,
                        "crl_unavailable",
                        "the CRL cannot be produced right now",
                    ),
                }
            }
            (&Method::GET, s) if s.starts_with("/ocsp/") => {
                let enc = &s["/ocsp/".len()..];
                let decoded = percent_decode(enc);
                let der = base64::engine::general_purpose::STANDARD
                    .decode(decoded.trim())
                    .or_else(|_| {
                        base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(decoded.trim())
                    });
                match der {
                    Ok(der) => self.ocsp(der).await,
                    Err(_) => reply(
                        StatusCode::OK,
                        "application/ocsp-response",
                        portcullis_pki::ocsp::error_response(
                            portcullis_pki::ocsp::OcspErrorStatus::MalformedRequest,
                        ),
                    ),
                }
            }
            (&Method::POST, "/ocsp") => match read_body(req).await {
                Some(der) => self.ocsp(der.to_vec()).await,
                None => json_error(
                    StatusCode::PAYLOAD_TOO_LARGE,
                    "payload_too_large",
                    "request too large",
                ),
            },
            (&Method::POST, "/enroll") => {
                let token = req
                    .headers()
                    .get(header::AUTHORIZATION)
                    .and_then(|v| v.to_str().ok())
                    .and_then(|v| v.strip_prefix("Bearer ").map(|t| t.trim().to_string()));
                // Read the body before any answer: answering an HTTP/2 request whose
                // body is still unread resets the stream, and curl reports that instead
                // of the 401.
                let Some(csr) = read_body(req).await else {
                    return json_error(
                        StatusCode::PAYLOAD_TOO_LARGE,
                        "payload_too_large",
                        "CSR too large",
                    );
                };
                let Some(token) = token else {
                    audit(AuditKind::CertRefused, None, "enrollment without a token");
                    let mut r = json_error(
                        StatusCode::UNAUTHORIZED,
                        "token_required",
                        "send the enrollment token as Authorization: Bearer <token>",
                    );
                    r.headers_mut().insert(
                        header::WWW_AUTHENTICATE,
                        HeaderValue::from_static("Bearer realm=\"portcullis-enroll\""),
                    );
                    return r;
                };
                let csr = String::from_utf8_lossy(&csr).into_owned();
                let ca = self.ca.clone();
                match tokio::task::spawn_blocking(move || ca.redeem_token(&token, &csr, None)).await
                {
                    Ok(Ok(issued)) => {
                        tracing::info!(serial = %issued.serial_hex, "enrollment: certificate issued");
                        self.audit.record(
                            AuditEvent::new(
                                AuditKind::CertIssued,
                                "enrollment with a one-time token",
                            )
                            .peer(peer)
                            .identity(issued_subject(&issued.cert_pem).as_deref())
                            .route("pki")
                            .request_id(request_id)
                            .detail("serial", issued.serial_hex.clone()),
                        );
                        reply(StatusCode::OK, "application/x-pem-file", issued.chain_pem)
                    }
                    Ok(Err(e)) => {
                        audit(AuditKind::CertRefused, None, &format!("enrollment: {e}"));
                        pki_error_response(&e)
                    }
                    Err(_) => json_error(
                        StatusCode::INTERNAL_SERVER_ERROR,
                        "internal",
                        "enrollment failed",
                    ),
                }
            }
            (&Method::POST, "/renew") => {
                let Some(csr) = read_body(req).await else {
                    return json_error(
                        StatusCode::PAYLOAD_TOO_LARGE,
                        "payload_too_large",
                        "CSR too large",
                    );
                };
                let Some(id) = identity.cloned() else {
                    audit(
                        AuditKind::CertRefused,
                        None,
                        "renewal without a client certificate",
                    );
                    return json_error(
                        StatusCode::from_u16(496).unwrap_or(StatusCode::UNAUTHORIZED),
                        "client_certificate_required",
                        "renewal needs the current certificate (mutual TLS)",
                    );
                };
                let csr = String::from_utf8_lossy(&csr).into_owned();
                let ca = self.ca.clone();
                let current = id.leaf_pem();
                match tokio::task::spawn_blocking(move || ca.renew(&current, &csr, None)).await {
                    Ok(Ok(issued)) => {
                        tracing::info!(old = %id.serial_hex, new = %issued.serial_hex, subject = %id.subject_dn, "renewal: certificate issued");
                        self.audit.record(
                            AuditEvent::new(AuditKind::CertRenewed, "renewal over mutual TLS")
                                .peer(peer)
                                .identity(Some(&id.subject_dn))
                                .route("pki")
                                .request_id(request_id)
                                .detail("old_serial", id.serial_hex.to_ascii_lowercase())
                                .detail("serial", issued.serial_hex.clone()),
                        );
                        reply(StatusCode::OK, "application/x-pem-file", issued.chain_pem)
                    }
                    Ok(Err(e)) => {
                        audit(
                            AuditKind::CertRefused,
                            Some(&id.subject_dn),
                            &format!("renewal: {e}"),
                        );
                        pki_error_response(&e)
                    }
                    Err(_) => json_error(
                        StatusCode::INTERNAL_SERVER_ERROR,
                        "internal",
                        "renewal failed",
                    ),
                }
            }
            (_, "/ca.crt" | "/crl" | "/ocsp" | "/enroll" | "/renew") => json_error(
                StatusCode::METHOD_NOT_ALLOWED,
                "method_not_allowed",
                "method not allowed",
            ),
            _ => json_error(StatusCode::NOT_FOUND, "not_found", "no such PKI endpoint"),
        }
    }

    async fn ocsp(&self, der: Vec<u8>) -> Response<ResponseBody> {
        let ca = self.ca.clone();
        let validity = self.settings.ocsp_validity;
        let out = tokio::task::spawn_blocking(move || ca.ocsp_respond(&der, validity))
            .await
            .unwrap_or_else(|_| {
                portcullis_pki::ocsp::error_response(
                    portcullis_pki::ocsp::OcspErrorStatus::InternalError,
                )
            });
        reply(StatusCode::OK, "application/ocsp-response", out)
    }
}

/// Time until the current CRL file's nextUpdate (zero when missing or unreadable).
fn crl_time_left(ca: &Ca) -> Duration {
    use rustls_pki_types::pem::PemObject;
    let Ok(data) = std::fs::read(ca.default_crl_path()) else {
        return Duration::ZERO;
    };
    let Ok(der) = rustls_pki_types::CertificateRevocationListDer::from_pem_slice(&data) else {
        return Duration::ZERO;
    };
    let Ok((_, crl)) = x509_parser::parse_x509_crl(der.as_ref()) else {
        return Duration::ZERO;
    };
    let next = crl.next_update().map(|n| n.timestamp()).unwrap_or(0);
    let now = time::OffsetDateTime::now_utc().unix_timestamp();
    Duration::from_secs(next.saturating_sub(now).max(0) as u64)
}

/// The CRL file as DER, signing a new one when it is missing or stale.
fn read_or_sign_crl(ca: &Ca, validity: Duration) -> Result<Vec<u8>, PkiError> {
    use rustls_pki_types::pem::PemObject;
    let path = ca.default_crl_path();
    if let Ok(data) = std::fs::read(&path) {
        if let Ok(der) = rustls_pki_types::CertificateRevocationListDer::from_pem_slice(&data) {
            if let Ok((_, crl)) = x509_parser::parse_x509_crl(der.as_ref()) {
                let fresh = crl.next_update().is_some_and(|n| {
                    n.timestamp() > time::OffsetDateTime::now_utc().unix_timestamp()
                });
                if fresh {
                    return Ok(der.as_ref().to_vec());
                }
            }
        }
    }
    Ok(ca.write_crl(&path, validity)?.der)
}

/// The RFC 2253 subject of an issued certificate (PEM), for the audit log.
fn issued_subject(cert_pem: &str) -> Option<String> {
    use rustls_pki_types::pem::PemObject;
    let der = rustls_pki_types::CertificateDer::from_pem_slice(cert_pem.as_bytes()).ok()?;
    ClientIdentity::from_chain(&[der])
        .ok()
        .map(|i| i.subject_dn)
}

fn pki_error_response(e: &PkiError) -> Response<ResponseBody> {
    match e {
        PkiError::TokenRefused(reason) => {
            tracing::info!(%reason, "enrollment refused");
            json_error(
                StatusCode::UNAUTHORIZED,
                "token_refused",
                "the enrollment token is unknown, used or expired",
            )
        }
        PkiError::RenewalRefused { .. } => {
            tracing::info!(error = %e, "renewal refused");
            json_error(
                StatusCode::FORBIDDEN,
                "renewal_refused",
                "this certificate cannot be renewed",
            )
        }
        PkiError::InvalidCsr(_) | PkiError::InvalidRequest(_) => json_error(
            StatusCode::BAD_REQUEST,
            "invalid_csr",
            "the CSR is not a valid PEM certificate request",
        ),
        PkiError::ValidityTooLong { .. } => json_error(
            StatusCode::BAD_REQUEST,
            "validity_too_long",
            "the requested validity is over the maximum",
        ),
        other => {
            tracing::error!(error = %other, "CA operation failed");
            json_error(
                StatusCode::INTERNAL_SERVER_ERROR,
                "internal",
                "the CA could not complete the request",
            )
        }
    }
}

async fn read_body(req: Request<Incoming>) -> Option<Bytes> {
    Limited::new(req.into_body(), MAX_BODY)
        .collect()
        .await
        .ok()
        .map(|b| b.to_bytes())
}

fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' && i + 2 < b.len() {
            if let Ok(v) = std::str::from_utf8(&b[i + 1..i + 3])
                .ok()
                .and_then(|h| u8::from_str_radix(h, 16).ok())
                .ok_or(())
            {
                out.push(v);
                i += 3;
                continue;
            }
        }
        out.push(b[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}
