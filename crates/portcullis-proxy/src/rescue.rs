//! The rescue layer: request-path errors become short JSON responses.
//!
//! Owns [`GatewayError`] and the only function that builds error responses.
//! Bodies carry a stable code, a human sentence and the request id, never
//! internal detail (no upstream addresses, no OS errors); the detail goes to
//! the event log instead.

use http::{header, HeaderValue, Response, StatusCode};

use crate::body::ResponseBody;

/// Every way the gateway itself answers a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GatewayError {
    BadRequest(&'static str),
    NotFound,
    MethodNotAllowed {
        allow: String,
    },
    PayloadTooLarge,
    /// 408: the request body paused too long (slow POST).
    RequestTimeout,
    HeadersTooLarge,
    MisdirectedRequest,
    BadGateway,
    NoLiveUpstream,
    GatewayTimeout,
    UpgradeRefused,
    /// 496 (nginx): the route needs a client certificate and none was sent.
    CertRequired,
    /// 495 (nginx): the certificate is not trusted on this route.
    CertUntrusted,
    /// 403: authenticated, not allowed here.
    Forbidden,
    /// 401 with this WWW-Authenticate challenge.
    Unauthorized(&'static str),
    /// A rate-limit zone refused (429 unless the zone says otherwise).
    RateLimited {
        status: u16,
        retry_after_s: u64,
        policy: String,
        zone: String,
    },
    /// 415: the route does not accept this Content-Type.
    UnsupportedMediaType,
    /// 404: the route's OpenAPI document has no operation for this path.
    UnknownOperation,
    /// 400: the request broke the route's validation rules (first few details).
    ValidationFailed(Vec<crate::validate::Detail>),
    /// 400 with a GraphQL-shaped body (`{"errors":[…]}`): the route's GraphQL
    /// limits refused the request; `reason()` of the refusal is bounded, for metrics.
    Graphql(Box<crate::graphql::Refusal>),
}

impl GatewayError {
    pub fn status(&self) -> StatusCode {
        match self {
            GatewayError::BadRequest(_)
            | GatewayError::UpgradeRefused
            | GatewayError::ValidationFailed(_)
            | GatewayError::Graphql(_) => StatusCode::BAD_REQUEST,
            GatewayError::UnsupportedMediaType => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            GatewayError::UnknownOperation => StatusCode::NOT_FOUND,
            GatewayError::NotFound => StatusCode::NOT_FOUND,
            GatewayError::MethodNotAllowed { .. } => StatusCode::METHOD_NOT_ALLOWED,
            GatewayError::PayloadTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            GatewayError::RequestTimeout => StatusCode::REQUEST_TIMEOUT,
            GatewayError::HeadersTooLarge => StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
            GatewayError::MisdirectedRequest => StatusCode::MISDIRECTED_REQUEST,
            GatewayError::BadGateway => StatusCode::BAD_GATEWAY,
            GatewayError::NoLiveUpstream => StatusCode::SERVICE_UNAVAILABLE,
            GatewayError::GatewayTimeout => StatusCode::GATEWAY_TIMEOUT,
            GatewayError::CertRequired => {
                StatusCode::from_u16(496).unwrap_or(StatusCode::BAD_REQUEST)
            }
            GatewayError::CertUntrusted => {
                StatusCode::from_u16(495).unwrap_or(StatusCode::BAD_REQUEST)
            }
            GatewayError::Forbidden => StatusCode::FORBIDDEN,
            GatewayError::Unauthorized(_) => StatusCode::UNAUTHORIZED,
            GatewayError::RateLimited { status, .. } => {
                StatusCode::from_u16(*status).unwrap_or(StatusCode::TOO_MANY_REQUESTS)
            }
        }
    }

    fn code_and_message(&self) -> (&'static str, &'static str) {
        match self {
            GatewayError::BadRequest(m) => ("bad_request", m),
            GatewayError::NotFound => ("not_found", "no route matches this request"),
            GatewayError::MethodNotAllowed { .. } => (
                "method_not_allowed",
                "this method is not allowed on this route",
            ),
            GatewayError::PayloadTooLarge => (
                "payload_too_large",
                "the request body is larger than allowed",
            ),
            GatewayError::HeadersTooLarge => (
                "headers_too_large",
                "the request headers are larger than allowed",
            ),
            GatewayError::MisdirectedRequest => (
                "misdirected_request",
                "the Host does not match the TLS server name of this connection",
            ),
            GatewayError::BadGateway => {
                ("bad_gateway", "the upstream service could not be reached")
            }
            GatewayError::NoLiveUpstream => {
                ("service_unavailable", "no upstream server is available")
            }
            GatewayError::GatewayTimeout => (
                "gateway_timeout",
                "the upstream service did not answer in time",
            ),
            GatewayError::UpgradeRefused => (
                "upgrade_refused",
                "protocol upgrade is not allowed on this route",
            ),
            GatewayError::CertRequired => {
                ("client_certificate_required", "client certificate required")
            }
            GatewayError::CertUntrusted => (
                "client_certificate_untrusted",
                "the client certificate is not trusted for this resource",
            ),
            GatewayError::Forbidden => ("forbidden", "access to this resource is not allowed"),
            GatewayError::Unauthorized(_) => ("unauthorized", "authentication is required"),
            GatewayError::RequestTimeout => (
                "request_timeout",
                "the request body was not received in time",
            ),
            GatewayError::RateLimited { .. } => ("rate_limited", "too many requests; retry later"),
            GatewayError::UnsupportedMediaType => (
                "unsupported_media_type",
                "this Content-Type is not accepted on this route",
            ),
            GatewayError::UnknownOperation => {
                ("not_found", "no operation of this API matches the request")
            }
            GatewayError::ValidationFailed(_) => ("validation_failed", "request validation failed"),
            GatewayError::Graphql(_) => ("graphql_refused", "the GraphQL request was refused"),
        }
    }
}

/// Builds the response for an error. Security headers are added by the stack.
pub fn error_response(err: &GatewayError, request_id: &str) -> Response<ResponseBody> {
    let (code, message) = err.code_and_message();
    let mut body =
        serde_json::json!({ "error": code, "message": message, "request_id": request_id });
    if let GatewayError::ValidationFailed(details) = err {
        body["details"] = details
            .iter()
            .map(|d| serde_json::json!({ "path": d.path, "rule": d.rule, "message": d.message }))
            .collect();
    }
    let body = match err {
        GatewayError::Graphql(r) => r.body(request_id),
        _ => body.to_string(),
    };
    let mut resp = Response::new(ResponseBody::full(body));
    *resp.status_mut() = err.status();
    let h = resp.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    if let GatewayError::RateLimited {
        retry_after_s,
        policy,
        zone,
        ..
    } = err
    {
        h.insert(header::RETRY_AFTER, HeaderValue::from(*retry_after_s));
        if let Ok(v) = HeaderValue::from_str(policy) {
            h.insert("ratelimit-policy", v);
        }
        if let Ok(v) = HeaderValue::from_str(&format!("\"{zone}\";r=0;t={retry_after_s}")) {
            h.insert("ratelimit", v);
        }
    }
    if let GatewayError::Unauthorized(challenge) = err {
        h.insert(
            header::WWW_AUTHENTICATE,
            HeaderValue::from_static(challenge),
        );
    }
    if let GatewayError::MethodNotAllowed { allow } = err {
        if let Ok(v) = HeaderValue::from_str(allow) {
            h.insert(header::ALLOW, v);
        }
    }
    if matches!(
        err,
        GatewayError::BadRequest(_)
            | GatewayError::PayloadTooLarge
            | GatewayError::HeadersTooLarge
            | GatewayError::RequestTimeout
    ) {
        h.insert(header::CONNECTION, HeaderValue::from_static("close"));
    }
    resp
}
