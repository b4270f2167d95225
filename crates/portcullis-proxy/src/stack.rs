//! The HTTP stack: the one place that decides what happens to a request.
//!
//! Outermost first, one stage a line (see `handle`):
//!   access log (on response end) → rescue (errors → responses) → request
//!   shape checks (smuggling, Host) → SNI/Host agreement (421) → path
//!   normalisation → route (404) → method (405) → body limit (413) →
//!   upstream request (headers rewritten) → forward with retries, or tunnel
//!   → response headers (hop-by-hop out, security headers in).
//! Later capabilities (authn, authz, rate limits, validation) slot in
//! between "method" and "upstream request".

use std::convert::Infallible;
use std::error::Error as StdError;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use http::header::{self, HeaderValue};
use http::{Method, Request, Response, StatusCode, Uri, Version};
use hyper::body::Incoming;

use crate::audit::AuditKind;
use crate::body::{BodyError, RequestBody, ResponseBody};
use crate::forward::{self, RequestId, X_REQUEST_ID};
use crate::observe::LoggedBody;
use crate::rescue::{error_response, GatewayError};
use crate::route::normalize_path;
use crate::runtime::{HeaderSet, RouteRuntime, Runtime};
use crate::upstream::SendError;

/// What a connection knows about itself, shared by its requests.
#[derive(Debug)]
pub struct ConnInfo {
    pub id: u64,
    pub peer: SocketAddr,
    /// The peer's address as text (X-Real-IP, X-Forwarded-For, $remote_addr), made once.
    pub peer_ip: HeaderValue,
    pub local: SocketAddr,
    pub listener: usize,
    pub sni: Option<String>,
    pub tls_version: &'static str,
    pub cipher: &'static str,
    pub session_reused: bool,
    pub requests: AtomicU64,
    /// The verified client certificate, parsed once.
    pub identity: Option<Arc<crate::mtls::ClientIdentity>>,
    /// Turns true when the client's certificate is revoked (tunnels watch it too).
    pub kill: Option<tokio::sync::watch::Receiver<bool>>,
    /// Per route: does the chain lead to that route's CAs (cached per connection)?
    pub route_ca: std::sync::Mutex<Vec<(u64, usize, bool)>>,
    /// The first HTTP/1.1 request head had both Content-Length and Transfer-Encoding.
    pub first_head_ambiguous: Arc<std::sync::atomic::AtomicBool>,
}

/// What the access log needs once the response has been sent.
#[derive(Debug)]
pub struct LogCtx {
    pub conn: Arc<ConnInfo>,
    pub conn_requests: u64,
    pub started: SystemTime,
    pub start: Instant,
    pub method: Method,
    pub uri: Uri,
    pub version: Version,
    /// Only the request headers the log format names.
    pub req_headers: crate::accesslog::PickedHeaders,
    /// The Host (or HTTP/2 authority) as received.
    pub host: Option<HeaderValue>,
    pub request_id: RequestId,
    pub status: u16,
    pub route: Option<Arc<str>>,
    pub upstream_addr: Option<Arc<str>>,
    pub upstream_status: Option<u16>,
    pub upstream_response_time: Option<Duration>,
    /// Zone and $limit_req_status of the deciding rate limit.
    pub limit: Option<(Arc<crate::ratelimit::Zone>, &'static str)>,
    /// The authenticated consumer ($consumer).
    pub consumer: Option<String>,
    /// Headers added to the response whatever it is (CORS).
    pub response_extra: Vec<(http::header::HeaderName, HeaderValue)>,
}

/// Entry point of every request on a TLS listener.
///
/// Rare awaits in `proxy` (PKI, body reads, JWKS, Redis, validation, delays)
/// are boxed where they are taken: the request future is boxed and written
/// once per request, and its size is that of its largest await.
#[allow(clippy::manual_async_fn)] // on purpose: see the comment in the body
pub fn handle(
    rt: Arc<Runtime>,
    conn: Arc<ConnInfo>,
    req: Request<Incoming>,
) -> impl std::future::Future<Output = Result<Response<LoggedBody>, Infallible>> {
    // An `async` block, not an `async fn`: the arguments are kept once, not
    // twice (an `async fn` copies them into locals), in a future that is
    // boxed and written for every request.
    async move {
        let start = Instant::now();
        let _in_flight = crate::metrics::GaugeGuard::new(&rt.metrics.in_flight);
        let conn_requests = conn.requests.fetch_add(1, Ordering::Relaxed) + 1;
        let request_id = RequestId::of(req.headers());
        let mut log = LogCtx {
            conn: conn.clone(),
            conn_requests,
            started: SystemTime::now(),
            start,
            method: req.method().clone(),
            uri: req.uri().clone(),
            version: req.version(),
            req_headers: rt.log_format.pick_request_headers(req.headers()),
            host: None,
            request_id,
            status: 0,
            route: None,
            upstream_addr: None,
            upstream_status: None,
            upstream_response_time: None,
            limit: None,
            consumer: None,
            response_extra: Vec::new(),
        };
        let (mut resp, route) = match proxy(&rt, &conn, req, &mut log).await {
            Ok(ok) => ok,
            Err((e, route)) => {
                if matches!(
                    e,
                    GatewayError::BadGateway
                        | GatewayError::GatewayTimeout
                        | GatewayError::NoLiveUpstream
                ) {
                    tracing::debug!(request_id = %log.request_id, error = ?e, "upstream error");
                }
                (error_response(&e, &log.request_id), route)
            }
        };
        let extra: &HeaderSet = match route {
            Some(i) => &rt.routes[i].headers,
            None => &rt.default_headers,
        };
        let h = resp.headers_mut();
        for (n, v) in extra {
            h.insert(n.clone(), v.clone());
        }
        let mut id = log.request_id.header_value();
        if log.version == Version::HTTP_2 {
            // HPACK: a value that changes with every response (the id) or
            // every second (Date) would enter the connection's dynamic table
            // each time, evict the stable headers and lengthen the chain the
            // encoder compares every later value against. Never-indexed
            // literals keep the table for the headers that repeat.
            id.set_sensitive(true);
            if let Some(d) = h.get_mut(http::header::DATE) {
                d.set_sensitive(true);
            }
        }
        h.insert(X_REQUEST_ID.clone(), id);
        for (n, v) in log.response_extra.drain(..) {
            h.insert(n, v);
        }
        log.status = resp.status().as_u16();
        let rm = match route {
            Some(i) => &rt.routes[i].metrics,
            None if log.route.as_deref() == Some("pki") => &rt.pki_metrics,
            None => &rt.no_route_metrics,
        };
        rm.request(&log.method, log.status, start.elapsed().as_secs_f64());
        if let Some(t) = log.upstream_response_time {
            rm.upstream.observe(t.as_secs_f64());
        }
        let access = rt.access_log.clone();
        let format = rt.log_format.clone();
        Ok(resp.map(|b| LoggedBody::new(b, access, format, log)))
    }
}

type Rescue = (GatewayError, Option<usize>);

/// Where a request's host came from.
enum HostSource<'a> {
    Header(&'a HeaderValue),
    /// The URI's authority (HTTP/2, absolute-form), with no Host header or a matching one.
    Authority(&'a str),
}

/// The host a request is for: the URI authority (HTTP/2, absolute-form) or Host.
fn request_host(req: &Request<Incoming>) -> Result<Option<HostSource<'_>>, GatewayError> {
    let hosts = req.headers().get_all(header::HOST);
    let mut it = hosts.iter();
    let host_hdr = it.next();
    if it.next().is_some() {
        return Err(GatewayError::BadRequest("more than one Host header"));
    }
    let host_text = match host_hdr {
        Some(v) => Some(
            v.to_str()
                .map_err(|_| GatewayError::BadRequest("invalid Host header"))?,
        ),
        None => None,
    };
    let authority = req.uri().authority().map(|a| a.as_str());
    match (authority, host_hdr, host_text) {
        (Some(a), Some(_), Some(h)) if !a.eq_ignore_ascii_case(h) => Err(GatewayError::BadRequest(
            "Host does not match the request target",
        )),
        (Some(a), _, _) => Ok(Some(HostSource::Authority(a))),
        (None, Some(v), _) => Ok(Some(HostSource::Header(v))),
        (None, None, _) if req.version() == Version::HTTP_11 => {
            Err(GatewayError::BadRequest("missing Host header"))
        }
        (None, None, _) => Ok(None),
    }
}

/// "Api.Example.com:8443" → "api.example.com"; "[::1]:8443" → "::1". Borrows
/// when the name is already in that form (the usual case).
fn host_name(host: &str) -> std::borrow::Cow<'_, str> {
    let h = if let Some(rest) = host.strip_prefix('[') {
        rest.split(']').next().unwrap_or("")
    } else {
        host.rsplit_once(':')
            .filter(|(_, p)| p.bytes().all(|b| b.is_ascii_digit()))
            .map_or(host, |(h, _)| h)
    };
    let h = h.trim_end_matches('.');
    if h.bytes().any(|b| b.is_ascii_uppercase()) {
        std::borrow::Cow::Owned(h.to_ascii_lowercase())
    } else {
        std::borrow::Cow::Borrowed(h)
    }
}

fn is_valid_host(h: &str) -> bool {
    !h.is_empty()
        && h.len() <= 253
        && h.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b':'))
}

/// An HTTP/2 extended CONNECT for a WebSocket (RFC 8441)?
fn is_h2_websocket(req: &Request<Incoming>) -> bool {
    req.method() == Method::CONNECT
        && req.version() == Version::HTTP_2
        && req
            .extensions()
            .get::<hyper::ext::Protocol>()
            .is_some_and(|p| p.as_str().eq_ignore_ascii_case("websocket"))
}

fn wants_upgrade(req: &Request<Incoming>) -> bool {
    req.version() == Version::HTTP_11
        && req.headers().contains_key(header::UPGRADE)
        && req.headers().get_all(header::CONNECTION).iter().any(|v| {
            v.to_str()
                .map(|s| {
                    s.split(',')
                        .any(|t| t.trim().eq_ignore_ascii_case("upgrade"))
                })
                .unwrap_or(false)
        })
}

#[allow(clippy::manual_async_fn)] // on purpose: see `handle`
fn proxy<'a>(
    rt: &'a Runtime,
    conn: &'a ConnInfo,
    mut req: Request<Incoming>,
    log: &'a mut LogCtx,
) -> impl std::future::Future<Output = Result<(Response<ResponseBody>, Option<usize>), Rescue>> + 'a
{
    // An `async` block for the reason given at `handle`.
    async move {
        // Request shape: what an HTTP/1.1 parser may let through but a proxy must refuse.
        // hyper drops Content-Length when Transfer-Encoding is present; the guard saw both.
        if log.conn_requests == 1 && conn.first_head_ambiguous.load(Ordering::Relaxed) {
            return Err((
                GatewayError::BadRequest("both Transfer-Encoding and Content-Length"),
                None,
            ));
        }
        let h = req.headers();
        if h.contains_key(header::TRANSFER_ENCODING) && h.contains_key(header::CONTENT_LENGTH) {
            return Err((
                GatewayError::BadRequest("both Transfer-Encoding and Content-Length"),
                None,
            ));
        }
        if h.get_all(header::CONTENT_LENGTH).iter().count() > 1 {
            return Err((
                GatewayError::BadRequest("more than one Content-Length"),
                None,
            ));
        }
        // Held as a header value: the log, X-Forwarded-Host and a preserved Host share it.
        let host_value: Option<HeaderValue> = match request_host(&req).map_err(|e| (e, None))? {
            None => None,
            Some(HostSource::Header(v)) => Some(v.clone()),
            Some(HostSource::Authority(a)) => Some(
                HeaderValue::from_str(a)
                    .map_err(|_| (GatewayError::BadRequest("invalid Host"), None))?,
            ),
        };
        let host_raw: Option<&str> = host_value.as_ref().and_then(|v| v.to_str().ok());
        let host = host_raw.map(host_name).unwrap_or_default();
        if host_raw.is_some() && !is_valid_host(&host) {
            return Err((GatewayError::BadRequest("invalid Host"), None));
        }
        log.host = host_value.clone();

        // The Host must be the name the TLS session was made for.
        if let Some(sni) = &conn.sni {
            if !host.is_empty() && !host.eq_ignore_ascii_case(sni) {
                return Err((GatewayError::MisdirectedRequest, None));
            }
        }
        let lookup_host: &str = if host.is_empty() {
            conn.sni.as_deref().unwrap_or_default()
        } else {
            &host
        };

        // Route on the normalised path; OCSP GET keeps its raw path (url-encoded base64,
        // `%2F` included, RFC 6960 A.1), which only the PKI endpoint reads.
        // Borrowed from the log's copy of the URI: `req` is taken apart below.
        let raw_path = log.uri.path();
        let path: std::borrow::Cow<'_, str> = match &rt.pki {
            Some(pki)
                if req.method() == Method::GET && pki.is_ocsp_get(raw_path, conn.listener) =>
            {
                std::borrow::Cow::Borrowed(raw_path)
            }
            _ => normalize_path(raw_path)
                .map_err(|e| (GatewayError::BadRequest(path_error_text(e)), None))?,
        };
        if let Some(pki) = &rt.pki {
            if pki.matches(&path, conn.listener) {
                log.route = Some(Arc::from("pki"));
                return Ok((
                    Box::pin(pki.handle(
                        req,
                        &path,
                        conn.identity.as_ref(),
                        conn.peer,
                        &log.request_id,
                    ))
                    .await,
                    None,
                ));
            }
        }
        let ri = rt
            .router
            .find(lookup_host, &path, conn.listener)
            .ok_or((GatewayError::NotFound, None))?;
        let route: &RouteRuntime = &rt.routes[ri];
        log.route = Some(route.name.clone());
        if let Some(methods) = &route.cfg.methods {
            // An HTTP/2 WebSocket (extended CONNECT) is a GET for the route's methods.
            let method = if is_h2_websocket(&req) {
                &Method::GET
            } else {
                req.method()
            };
            if !methods.contains(method) {
                return Err((
                    GatewayError::MethodNotAllowed {
                        allow: route.allow.clone(),
                    },
                    Some(ri),
                ));
            }
        }

        // Client-certificate policy of the route (the handshake already verified the chain).
        if route.policy.is_active() {
            let verdict = route.policy.check(conn.identity.as_ref(), |id| {
                let Ok(mut cache) = conn.route_ca.lock() else {
                    return route.policy.chain_under_route_cas(id);
                };
                // Keyed by runtime generation too: a reload renumbers routes.
                if let Some((_, _, ok)) = cache
                    .iter()
                    .find(|(g, r, _)| *g == rt.generation && *r == ri)
                {
                    return *ok;
                }
                let ok = route.policy.chain_under_route_cas(id);
                cache.retain(|(g, _, _)| *g == rt.generation);
                cache.push((rt.generation, ri, ok));
                ok
            });
            if let Err(denial) = verdict {
                use crate::mtls::policy::Denial;
                let (err, reason) = match denial {
                    Denial::Missing => (
                        GatewayError::CertRequired,
                        "no client certificate".to_string(),
                    ),
                    Denial::Untrusted(r) => (GatewayError::CertUntrusted, r),
                    Denial::Forbidden(r) => (GatewayError::Forbidden, r),
                };
                rt.metrics.auth_failure(
                    "mtls",
                    match err {
                        GatewayError::CertRequired => "no_certificate",
                        GatewayError::CertUntrusted => "untrusted_for_route",
                        _ => "forbidden",
                    },
                );
                tracing::info!(request_id = %log.request_id, peer = %conn.peer, route = %route.cfg.name, %reason, "client certificate refused by route policy");
                let kind = match err {
                    GatewayError::Forbidden => AuditKind::AuthzDenied,
                    _ => AuditKind::CertRefused,
                };
                rt.audit.request(
                    kind,
                    conn.peer,
                    cert_subject(conn),
                    &route.cfg.name,
                    &log.request_id,
                    &reason,
                );
                return Err((err, Some(ri)));
            }
        }

        // CORS preflight: answered here, never forwarded.
        if let Some(cors) = &route.cfg.cors {
            if crate::auth::cors::Cors::is_preflight(req.method(), req.headers()) {
                return match cors.preflight(req.headers()) {
                    Some(hs) => {
                        let mut r = Response::new(ResponseBody::empty());
                        *r.status_mut() = StatusCode::NO_CONTENT;
                        r.headers_mut().extend(hs);
                        Ok((r, Some(ri)))
                    }
                    None => Err((GatewayError::Forbidden, Some(ri))),
                };
            }
            log.response_extra = cors.response_headers(req.headers());
        }

        // A signature that covers Content-Digest needs the whole body before anything goes upstream.
        let limits = &rt.listeners[conn.listener].limits;
        let mut buffered: Option<bytes::Bytes> = None;
        if let Some(policy) = &route.cfg.signature {
            let covers_digest = policy
                .required_components
                .iter()
                .any(|c| c.trim_matches('"').eq_ignore_ascii_case("content-digest"));
            if covers_digest && !http_body::Body::is_end_stream(req.body()) {
                buffered = Some(
                    Box::pin(read_body(
                        req.body_mut(),
                        limits.max_body_size,
                        limits.body_timeout,
                    ))
                    .await
                    .map_err(|e| (e, Some(ri)))?,
                );
            }
        }

        // Authentication and consumers: all of `auth`, one of `auth_any`.
        let mut consumer: Option<Arc<crate::auth::Consumer>> = None;
        // Boxed, like the verification result: a token is large and rare, and
        // this future holds both across every later await.
        let mut jwt_token: Option<Box<crate::auth::jwt::VerifiedToken>> = None;
        // Tokens are verified before the verdict (a JWKS URL may need fetching).
        let uses_jwt = route.cfg.auth.all.contains(&crate::auth::Scheme::Jwt)
            || route.cfg.auth.any.contains(&crate::auth::Scheme::Jwt);
        let mut jwt_checked = match (
            &rt.jwt,
            uses_jwt.then(|| bearer_token(req.headers())).flatten(),
        ) {
            (Some(v), Some(tok)) => Some(
                Box::pin(v.verify(tok, SystemTime::now()))
                    .await
                    .map(Box::new),
            ),
            _ => None,
        };
        // Signatures are verified (and remembered against replays, across replicas
        // in cluster mode) before the verdict.
        let uses_sig = route.cfg.auth.all.contains(&crate::auth::Scheme::Signature)
            || route.cfg.auth.any.contains(&crate::auth::Scheme::Signature);
        let mut sig_checked: Option<Result<Option<Arc<crate::auth::Consumer>>, &'static str>> =
            None;
        if let (true, Some(policy)) = (
            uses_sig && req.headers().contains_key("signature"),
            &route.cfg.signature,
        ) {
            let pq = req.uri().path_and_query().map_or("/", |p| p.as_str());
            let target =
                crate::auth::signature::RequestTarget::new("https", host_raw.unwrap_or(""), pq);
            let parts = target.parts(req.method(), req.headers());
            let keys = |id: &str| rt.signing_keys.get(id).map(|(k, _)| k.clone());
            sig_checked = Some(
                match crate::auth::signature::verify(
                    &parts,
                    buffered.as_deref(),
                    policy,
                    &keys,
                    SystemTime::now(),
                ) {
                    Err(e) => Err(e.reason()),
                    Ok(v) => {
                        use crate::auth::replay::ReplayStore;
                        let (key, until) = (v.replay_key(), v.replay_until(policy.max_age));
                        let fresh = match &rt.cluster {
                            Some(c) => match Box::pin(c.remember_once(&key, until)).await {
                                Ok(fresh) => fresh && rt.replay.check_and_insert(&key, until),
                                Err(e) => {
                                    tracing::warn!(error = %e, "replay cache in Redis unavailable: using this replica's own");
                                    rt.replay.check_and_insert(&key, until)
                                }
                            },
                            None => rt.replay.check_and_insert(&key, until),
                        };
                        if fresh {
                            Ok(rt.signing_keys.get(&v.keyid).map(|(_, c)| c.clone()))
                        } else {
                            Err("replayed signature")
                        }
                    }
                },
            );
        }
        if route.cfg.auth.is_active() {
            use crate::auth::{Scheme, SchemeResult, Verdict};
            let now = SystemTime::now();
            let verdict = crate::auth::decide(&route.cfg.auth, |scheme| match scheme {
                Scheme::Mtls => match &conn.identity {
                    Some(id) => SchemeResult::Ok(rt.consumers.by_certificate(id).cloned()),
                    None => SchemeResult::Missing,
                },
                Scheme::ApiKey => match rt.api_keys.presented(req.headers(), req.uri().query()) {
                    None => SchemeResult::Missing,
                    Some(k) => match rt.api_keys.check(&k, now) {
                        Ok(e) => SchemeResult::Ok(Some(e.consumer.clone())),
                        Err(why) => SchemeResult::Invalid(why),
                    },
                },
                Scheme::Signature => match sig_checked.take() {
                    None => SchemeResult::Missing,
                    Some(Err(reason)) => SchemeResult::Invalid(reason),
                    Some(Ok(c)) => SchemeResult::Ok(c),
                },
                Scheme::Jwt => match jwt_checked.take() {
                    None => SchemeResult::Missing,
                    Some(r) => match r {
                        Err(e) => SchemeResult::Invalid(e.reason()),
                        Ok(t) => {
                            let bound_ok = !route.cfg.jwt.cert_bound
                                || crate::auth::jwt::cert_bound_ok(
                                    &t,
                                    conn.identity.as_ref().map(|i| i.leaf_der.as_slice()),
                                );
                            if !bound_ok {
                                SchemeResult::Invalid("token bound to another certificate")
                            } else if let Err(why) =
                                crate::auth::jwt::check_rules(&t, &route.cfg.jwt.claims)
                            {
                                tracing::info!(request_id = %log.request_id, route = %route.cfg.name, reason = %why, "token claims refused");
                                SchemeResult::Invalid("claims not satisfied")
                            } else {
                                let c = t
                                    .subject
                                    .as_deref()
                                    .and_then(|sub| rt.consumers.by_jwt(&t.issuer, sub))
                                    .cloned();
                                jwt_token = Some(t);
                                SchemeResult::Ok(c)
                            }
                        }
                    },
                },
            });
            match verdict {
                Verdict::Allowed(c) => consumer = c,
                Verdict::Unauthenticated(scheme, reason) => {
                    rt.metrics.auth_failure(scheme.as_str(), reason);
                    tracing::info!(request_id = %log.request_id, peer = %conn.peer, route = %route.cfg.name, scheme = scheme.as_str(), reason, "authentication failed");
                    rt.audit.request(
                        AuditKind::AuthFailure,
                        conn.peer,
                        cert_subject(conn),
                        &route.cfg.name,
                        &log.request_id,
                        &format!("{}: {reason}", scheme.as_str()),
                    );
                    return Err((GatewayError::Unauthorized(scheme.challenge()), Some(ri)));
                }
                Verdict::Forbidden(reason) => {
                    rt.metrics.auth_failure("authz", "forbidden");
                    tracing::info!(request_id = %log.request_id, peer = %conn.peer, route = %route.cfg.name, %reason, "authorization denied");
                    rt.audit.request(
                        AuditKind::AuthzDenied,
                        conn.peer,
                        cert_subject(conn),
                        &route.cfg.name,
                        &log.request_id,
                        &reason,
                    );
                    return Err((GatewayError::Forbidden, Some(ri)));
                }
            }
            log.consumer = consumer.as_ref().map(|c| c.name.clone());
        }

        // Rate limits (nginx limit_req): every zone of the route must pass; delays wait here.
        // The client's address (after trusted proxies): rate-limit key and X-Real-IP.
        let client = forward::client_ip(conn.peer.ip(), req.headers(), &rt.trusted_proxies);
        if !route.zones.is_empty() {
            let mut applied: smallvec::SmallVec<[Arc<crate::ratelimit::Zone>; 4]> =
                smallvec::SmallVec::new();
            let mut keys: smallvec::SmallVec<[u64; 4]> = smallvec::SmallVec::new();
            for z in &route.zones {
                if let Some(k) = zone_key(
                    z,
                    &client,
                    conn,
                    req.headers(),
                    consumer.as_deref(),
                    jwt_token.as_deref(),
                ) {
                    applied.push(z.clone());
                    keys.push(k);
                }
            }
            let outcome = match &rt.cluster {
                None => crate::ratelimit::check(&applied, &keys, crate::ratelimit::now_ms()),
                Some(c) => Box::pin(c.check(&applied, &keys)).await,
            };
            if let Some((i, st)) = outcome.log {
                log.limit = Some((applied[i].clone(), st.as_str()));
                rt.metrics.rate_limit(&applied[i], st);
            }
            if let Some((i, status, retry)) = outcome.rejected {
                let z = &applied[i];
                let who = consumer
                    .as_deref()
                    .map(|c| c.name.as_str())
                    .or(cert_subject(conn));
                rt.audit.request(
                    AuditKind::RateLimited,
                    conn.peer,
                    who,
                    &route.cfg.name,
                    &log.request_id,
                    &format!("zone \"{}\"", z.cfg.name),
                );
                return Err((
                    GatewayError::RateLimited {
                        status,
                        retry_after_s: retry.as_millis().div_ceil(1000).max(1) as u64,
                        policy: z.policy_header(),
                        zone: z.cfg.name.clone(),
                    },
                    Some(ri),
                ));
            }
            if !outcome.delay.is_zero() {
                Box::pin(tokio::time::sleep(outcome.delay)).await;
            }
        }

        // Body limit: refuse a declared size at once, cut a streamed one when it passes the limit.
        let limit = rt.listeners[conn.listener].limits.max_body_size;
        if http_body::Body::size_hint(req.body()).lower() > limit {
            return Err((GatewayError::PayloadTooLarge, Some(ri)));
        }
        // Request validation ([route.validate]): content type, parameters, JSON limits while
        // reading, schema; a validated JSON body ends up in `buffered` and is forwarded from there.
        if let Some(v) = &route.cfg.validate {
            if let Err(e) = Box::pin(crate::validate::check(
                v,
                &route.cfg,
                &mut req,
                &path,
                &mut buffered,
                limits,
            ))
            .await
            {
                rt.metrics.count(
                    &rt.metrics.validation_failures,
                    match &e {
                        GatewayError::UnsupportedMediaType => "content_type",
                        GatewayError::ValidationFailed(_) => "invalid",
                        GatewayError::PayloadTooLarge => "too_large",
                        _ => "other",
                    },
                );
                return Err((e, Some(ri)));
            }
        }
        // GraphQL limits ([route.graphql]): operations parsed and measured; a refusal never goes upstream.
        if let Some(g) = &route.cfg.graphql {
            if buffered.is_none() && g.needs_body(req.method()) {
                let read = Box::pin(read_body(req.body_mut(), limit, limits.body_timeout)).await;
                buffered = Some(read.map_err(|e| (e, Some(ri)))?);
            }
            if let Err(r) = g.check(req.method(), req.uri(), req.headers(), buffered.as_deref()) {
                rt.metrics.count(&rt.metrics.graphql_rejections, r.reason());
                tracing::info!(request_id = %log.request_id, route = %route.cfg.name, reason = r.reason(), message = r.message(), "graphql request refused");
                return Err((GatewayError::Graphql(Box::new(r)), Some(ri)));
            }
        }
        let h2_ws = is_h2_websocket(&req);
        let upgrade = wants_upgrade(&req) || h2_ws;
        if upgrade && !route.cfg.websocket {
            return Err((GatewayError::UpgradeRefused, Some(ri)));
        }
        // WebSocket policy at the upgrade: the Origin allowlist (CSRF), before the upstream sees anything.
        let ws_policy = &route.cfg.websocket_policy;
        if upgrade && !ws_policy.origin_allowed(req.headers().get(header::ORIGIN)) {
            let origin = req.headers().get(header::ORIGIN).map(|o| {
                String::from_utf8_lossy(o.as_bytes())
                    .chars()
                    .take(200)
                    .collect::<String>()
            });
            rt.metrics.auth_failure("websocket", "origin_not_allowed");
            tracing::info!(request_id = %log.request_id, peer = %conn.peer, route = %route.cfg.name, origin = origin.as_deref().unwrap_or("(none)"), "websocket upgrade refused: origin not allowed");
            return Err((GatewayError::Forbidden, Some(ri)));
        }
        let ws_terminate = upgrade && ws_policy.terminates();
        // The relay speaks WebSocket only: another protocol must not slip past the route's limits.
        if ws_terminate
            && !h2_ws
            && !req
                .headers()
                .get(header::UPGRADE)
                .and_then(|v| v.to_str().ok())
                .is_some_and(|v| v.trim().eq_ignore_ascii_case("websocket"))
        {
            return Err((GatewayError::UpgradeRefused, Some(ri)));
        }
        let token_expires = jwt_token.as_ref().and_then(|t| t.expires_at);
        let client_upgrade = upgrade.then(|| hyper::upgrade::on(&mut req));

        // The upstream request target: the client's own when nothing changes it
        // (shared with the request, not copied), else rebuilt in `path_q`.
        let strip = route.cfg.strip_prefix && route.cfg.path != "/";
        let mut target: Option<http::uri::PathAndQuery> =
            match (&path, strip, req.uri().path_and_query()) {
                (std::borrow::Cow::Borrowed(_), false, Some(pq)) => Some(pq.clone()),
                _ => None,
            };
        let mut path_q = String::new();
        if target.is_none() {
            path_q.reserve(path.len() + 32);
            let fwd_path: &str = if strip {
                let rest = &path[route.cfg.path.trim_end_matches('/').len().min(path.len())..];
                if rest.starts_with('/') {
                    rest
                } else {
                    path_q.push('/');
                    rest
                }
            } else {
                &path
            };
            path_q.push_str(fwd_path);
            if let Some(q) = req.uri().query() {
                path_q.push('?');
                path_q.push_str(q);
            }
        }
        let body_empty = http_body::Body::is_end_stream(req.body());
        let (mut parts, body) = req.into_parts();
        // HTTP/2 extended CONNECT (RFC 8441) goes upstream as an HTTP/1.1 Upgrade
        // with a key of the gateway's; the gateway checks the upstream's accept.
        let ws_key = if h2_ws {
            let key = tokio_tungstenite::tungstenite::handshake::client::generate_key();
            parts.method = Method::GET;
            let h = &mut parts.headers;
            h.remove(header::CONNECTION);
            h.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
            h.insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
            h.insert(
                header::SEC_WEBSOCKET_VERSION,
                HeaderValue::from_static("13"),
            );
            if let Ok(v) = HeaderValue::from_str(&key) {
                h.insert(header::SEC_WEBSOCKET_KEY, v);
            }
            Some(key)
        } else {
            None
        };
        // Terminated framing: no extension (permessage-deflate) is negotiated on either side.
        if ws_terminate {
            parts.headers.remove(header::SEC_WEBSOCKET_EXTENSIONS);
        }
        let body = if let Some(data) = buffered {
            RequestBody::Buffered {
                data: (!data.is_empty()).then_some(data),
            }
        } else if body_empty {
            RequestBody::Empty
        } else {
            RequestBody::limited(body, limit, rt.listeners[conn.listener].limits.body_timeout)
        };
        let headers = &mut parts.headers;
        forward::strip_hop_by_hop(headers, upgrade);
        // Every identity header name any route uses (custom names and consumer
        // headers included): a client's copies never pass, on any route.
        rt.strip_names.strip(headers);
        // The consumer, as the gateway established it (a client's copy is gone:
        // every route's consumer header is in `strip_names`).
        if let Some(c) = &consumer {
            if let Ok(v) = HeaderValue::from_str(&c.name) {
                headers.insert(route.cfg.consumer_header.clone(), v);
            }
        }
        // Token claims the route forwards; Authorization removed when asked.
        for (claim, header) in &route.cfg.jwt.forward_claims {
            headers.remove(header);
            if let Some(v) = jwt_token.as_ref().and_then(|t| t.claims.get(claim)) {
                let text = match v {
                    serde_json::Value::String(s) => s.clone(),
                    other => other.to_string(),
                };
                if let Ok(hv) = HeaderValue::from_str(&text) {
                    headers.insert(header.clone(), hv);
                }
            }
        }
        if route.cfg.jwt.strip_authorization {
            headers.remove(header::AUTHORIZATION);
        }
        // API keys never go upstream.
        if route.cfg.auth.all.contains(&crate::auth::Scheme::ApiKey)
            || route.cfg.auth.any.contains(&crate::auth::Scheme::ApiKey)
        {
            let current = target.as_ref().map_or(path_q.as_str(), |t| t.as_str());
            if let Some(stripped) = rt.api_keys.strip(headers, current) {
                path_q = stripped;
                target = None;
            }
        }
        let formats = &route.cfg.mtls.identity_headers;
        if !formats.is_empty() {
            match &conn.identity {
                Some(id) => crate::mtls::headers::add_identity_headers(
                    headers,
                    id,
                    formats,
                    &route.cfg.mtls.header_names,
                ),
                None => crate::mtls::headers::add_no_identity(
                    headers,
                    formats,
                    &route.cfg.mtls.header_names,
                ),
            }
        }
        let peer = conn.peer.ip();
        forward::set_forwarded(
            headers,
            peer,
            &conn.peer_ip,
            client,
            host_value.as_ref(),
            &rt.trusted_proxies,
        );
        headers.insert(X_REQUEST_ID.clone(), log.request_id.header_value());
        let upstream = &route.upstream;
        let host_value: Option<HeaderValue> = if let Some(fixed) = &route.cfg.host_header {
            HeaderValue::from_str(fixed).ok()
        } else if route.cfg.preserve_host {
            host_value
        } else {
            None
        };

        let target = match target {
            Some(t) => t,
            None => http::uri::PathAndQuery::try_from(path_q)
                .map_err(|_| (GatewayError::BadRequest("invalid request target"), Some(ri)))?,
        };
        let idempotent = matches!(
            parts.method,
            Method::GET
                | Method::HEAD
                | Method::OPTIONS
                | Method::PUT
                | Method::DELETE
                | Method::TRACE
        );
        let max_attempts = if idempotent && body_empty && !upgrade {
            1 + upstream.retries as usize
        } else {
            1
        };
        let timeout = route
            .cfg
            .response_timeout
            .unwrap_or(upstream.response_timeout);
        let mut tried: smallvec::SmallVec<[usize; 4]> = smallvec::SmallVec::new();
        let mut body = Some(body);
        let started = Instant::now();
        let mut resp = loop {
            let Some((si, guard)) = upstream.select(&tried) else {
                return Err((
                    if tried.is_empty() {
                        GatewayError::NoLiveUpstream
                    } else {
                        GatewayError::BadGateway
                    },
                    Some(ri),
                ));
            };
            tried.push(si);
            let server = &upstream.servers[si];
            log.upstream_addr = Some(server.authority.clone());
            let last = tried.len() >= max_attempts || tried.len() >= upstream.servers.len();
            // The first attempt's clock is the one read for the response time.
            let attempt_start = if tried.len() == 1 {
                started
            } else {
                Instant::now()
            };
            // Built inside the awaited expression: a request kept in a local would
            // stay in this future's state across the await, unused.
            let sending = {
                let mut out = Request::new(body.take().unwrap_or(RequestBody::Empty));
                *out.method_mut() = parts.method.clone();
                *out.version_mut() = Version::HTTP_11;
                *out.headers_mut() = if last {
                    std::mem::take(&mut parts.headers)
                } else {
                    parts.headers.clone()
                };
                if let Some(hv) = host_value.clone().or_else(|| server.host_value.clone()) {
                    out.headers_mut().insert(header::HOST, hv);
                }
                tokio::time::timeout_at(
                    deadline(attempt_start, timeout),
                    upstream.send(si, &target, out, upgrade),
                )
            };
            match sending.await {
                Ok(Ok(r)) => {
                    drop(guard);
                    break r;
                }
                Ok(Err(SendError::BadTarget(_))) => {
                    return Err((GatewayError::BadRequest("invalid request target"), Some(ri)))
                }
                Ok(Err(e)) => {
                    drop(guard);
                    // The client's body was too large, too slow or malformed (bad chunk size,
                    // bare LF): the client's fault, never counted toward ejecting the server.
                    match client_body_error(&e) {
                        Some(BodyError::TooLarge(_)) => {
                            return Err((GatewayError::PayloadTooLarge, Some(ri)))
                        }
                        Some(BodyError::Timeout(_)) => {
                            return Err((GatewayError::RequestTimeout, Some(ri)))
                        }
                        Some(BodyError::Stream(_)) => {
                            return Err((
                                GatewayError::BadRequest("malformed request body"),
                                Some(ri),
                            ))
                        }
                        None => {}
                    }
                    upstream.record_failure(si);
                    tracing::warn!(request_id = %log.request_id, upstream = %upstream.name, server = %server.authority, error = %error_chain(&e), "upstream request failed");
                    if e.is_connect() && !last {
                        body = Some(RequestBody::Empty);
                        continue;
                    }
                    return Err((GatewayError::BadGateway, Some(ri)));
                }
                Err(_) => {
                    drop(guard);
                    upstream.record_failure(si);
                    tracing::warn!(request_id = %log.request_id, upstream = %upstream.name, server = %server.authority, "upstream response timed out after {:?}", timeout);
                    return Err((GatewayError::GatewayTimeout, Some(ri)));
                }
            }
        };
        log.upstream_response_time = Some(started.elapsed());
        log.upstream_status = Some(resp.status().as_u16());

        if resp.status() == StatusCode::SWITCHING_PROTOCOLS {
            match client_upgrade {
                Some(client_upgrade) => {
                    if let Some(key) = &ws_key {
                        let expected = tokio_tungstenite::tungstenite::handshake::derive_accept_key(
                            key.as_bytes(),
                        );
                        let accept = resp.headers().get(header::SEC_WEBSOCKET_ACCEPT);
                        if accept.map(|a| a.as_bytes()) != Some(expected.as_bytes()) {
                            tracing::warn!(request_id = %log.request_id, upstream = %upstream.name, "upstream answered the WebSocket upgrade without the right Sec-WebSocket-Accept");
                            return Err((GatewayError::BadGateway, Some(ri)));
                        }
                    }
                    if ws_terminate
                        && resp
                            .headers()
                            .contains_key(header::SEC_WEBSOCKET_EXTENSIONS)
                    {
                        tracing::warn!(request_id = %log.request_id, upstream = %upstream.name, "upstream negotiated a WebSocket extension the gateway did not offer");
                        return Err((GatewayError::BadGateway, Some(ri)));
                    }
                    let upstream_upgrade = hyper::upgrade::on(&mut resp);
                    if ws_terminate {
                        crate::websocket::spawn_terminated(
                            client_upgrade,
                            upstream_upgrade,
                            crate::websocket::Session {
                                policy: ws_policy.clone(),
                                idle: route.cfg.upgrade_idle_timeout,
                                request_id: log.request_id.to_string(),
                                kill: conn.kill.clone(),
                                token_expires: token_expires
                                    .filter(|_| ws_policy.close_on_token_expiry),
                                metrics: Some(rt.metrics.clone()),
                            },
                        );
                    } else {
                        crate::tunnel::spawn(
                            client_upgrade,
                            upstream_upgrade,
                            route.cfg.upgrade_idle_timeout,
                            log.request_id.to_string(),
                            conn.kill.clone(),
                        );
                    }
                    forward::clean_response_headers(resp.headers_mut(), true);
                    let (mut p, _) = resp.into_parts();
                    if h2_ws {
                        // RFC 8441: a 200 on the stream; no upgrade or accept headers in HTTP/2.
                        p.status = StatusCode::OK;
                        for h in [
                            header::UPGRADE,
                            header::CONNECTION,
                            header::SEC_WEBSOCKET_ACCEPT,
                        ] {
                            p.headers.remove(h);
                        }
                    }
                    return Ok((Response::from_parts(p, ResponseBody::empty()), Some(ri)));
                }
                None => return Err((GatewayError::BadGateway, Some(ri))),
            }
        }
        forward::clean_response_headers(resp.headers_mut(), false);
        Ok((resp.map(|b| ResponseBody::Upstream { inner: b }), Some(ri)))
    }
}

/// The key of a zone for this request; `None` when a part is empty (nginx
/// does not account requests with an empty key).
fn zone_key(
    z: &crate::ratelimit::Zone,
    client: &std::net::IpAddr,
    conn: &ConnInfo,
    h: &http::HeaderMap,
    consumer: Option<&crate::auth::Consumer>,
    token: Option<&crate::auth::jwt::VerifiedToken>,
) -> Option<u64> {
    use crate::ratelimit::KeyPart;
    // The peer's text is made once per connection; a client behind a trusted proxy differs.
    let other;
    let ip: &[u8] = if *client == conn.peer.ip() {
        conn.peer_ip.as_bytes()
    } else {
        other = forward::ip_value(*client);
        other.as_bytes()
    };
    // JWT claims first (owned strings), so the byte slices below can borrow them.
    let mut claims: Vec<String> = Vec::new();
    for p in &z.cfg.key {
        if let KeyPart::JwtClaim(name) = p {
            claims.push(match token?.claims.get(name)? {
                serde_json::Value::String(s) => s.clone(),
                other => other.to_string(),
            });
        }
    }
    let mut claim_iter = claims.iter();
    let mut parts: smallvec::SmallVec<[&[u8]; 8]> = smallvec::SmallVec::new();
    for p in &z.cfg.key {
        match p {
            KeyPart::Ip => parts.push(ip),
            KeyPart::Cert => {
                let id = conn.identity.as_ref()?;
                parts.push(id.subject_dn.as_bytes());
                parts.push(id.issuer_dn.as_bytes());
            }
            KeyPart::Consumer => parts.push(consumer?.name.as_bytes()),
            KeyPart::JwtClaim(_) => parts.push(claim_iter.next()?.as_bytes()),
            KeyPart::Header(name) => {
                let v = h.get(name)?.as_bytes();
                if v.is_empty() {
                    return None;
                }
                parts.push(v);
            }
        }
    }
    Some(z.key_hash(&parts))
}

/// The verified client certificate's subject, for audit records.
fn cert_subject(conn: &ConnInfo) -> Option<&str> {
    conn.identity.as_deref().map(|i| i.subject_dn.as_str())
}

fn path_error_text(e: crate::route::PathError) -> &'static str {
    use crate::route::PathError::*;
    match e {
        NotAbsolute => "the request target must be an absolute path",
        BadEncoding => "invalid percent-encoding in the path",
        EncodedSeparator => "encoded slash, backslash or NUL in the path",
        AboveRoot => "the path climbs above the root",
        DotSegmentParams => "dot segment with parameters in the path",
    }
}

/// The token of `Authorization: Bearer <token>`.
fn bearer_token(h: &http::HeaderMap) -> Option<&str> {
    let v = h.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, tok) = v.split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then(|| tok.trim())
        .filter(|t| !t.is_empty())
}

/// Reads a whole request body: at most `limit` bytes (413), no pause longer than `idle` (408).
async fn read_body(
    body: &mut Incoming,
    limit: u64,
    idle: Duration,
) -> Result<bytes::Bytes, GatewayError> {
    use http_body_util::BodyExt;
    let mut out = bytes::BytesMut::new();
    loop {
        match tokio::time::timeout(idle, body.frame()).await {
            Err(_) => return Err(GatewayError::RequestTimeout),
            Ok(None) => return Ok(out.freeze()),
            Ok(Some(Err(_))) => return Err(GatewayError::BadRequest("malformed request body")),
            Ok(Some(Ok(frame))) => {
                if let Ok(data) = frame.into_data() {
                    if (out.len() + data.len()) as u64 > limit {
                        return Err(GatewayError::PayloadTooLarge);
                    }
                    out.extend_from_slice(&data);
                }
            }
        }
    }
}

/// The client-body error behind an upstream request failure, if that is the cause.
fn client_body_error<'a>(e: &'a (dyn StdError + 'static)) -> Option<&'a BodyError> {
    let mut cur: Option<&(dyn StdError + 'static)> = Some(e);
    while let Some(err) = cur {
        if let Some(b) = err.downcast_ref::<BodyError>() {
            return Some(b);
        }
        cur = err.source();
    }
    None
}

fn error_chain(e: &(dyn StdError + 'static)) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(err) = cur {
        s.push_str(": ");
        s.push_str(&err.to_string());
        cur = err.source();
    }
    s
}

/// `start + d` as a timer deadline; a duration too long for the clock waits
/// "forever" (30 years) instead of overflowing.
fn deadline(start: Instant, d: std::time::Duration) -> tokio::time::Instant {
    start
        .checked_add(d)
        .unwrap_or_else(|| start + std::time::Duration::from_secs(30 * 365 * 86_400))
        .into()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_names() {
        assert_eq!(host_name("Api.Example.com:8443"), "api.example.com");
        assert_eq!(host_name("[::1]:8443"), "::1");
        assert_eq!(host_name("localhost."), "localhost");
        assert!(is_valid_host("api.example.com"));
        assert!(!is_valid_host("evil.com/x"));
    }
}
