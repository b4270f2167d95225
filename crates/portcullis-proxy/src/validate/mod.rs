//! Request validation per route (`[route.validate]`): allowed content types
//! (415), JSON limits enforced while the body streams in (depth, size, keys
//! per object, string length), a JSON Schema (inline or file), or an OpenAPI
//! 3.0/3.1 document whose operation (method + path template) gives the path,
//! query and header parameters and the request-body schema.
//!
//! Owns the request-time check ([`check`], called once by the stack after
//! rate limits) and the compiled [`Validation`] that config load builds:
//! schemas are compiled there, never per request. Failures become
//! [`GatewayError::ValidationFailed`] with at most [`MAX_DETAILS`] short
//! details (instance path, rule, a message that never quotes the value).
//! Routes without body rules keep streaming; a route that validates a JSON
//! body reads it (bounded) into the stack's `buffered`, which the forwarder
//! then sends.

pub mod json;
pub mod openapi;

use std::time::Duration;

use bytes::Bytes;
use http::{header, Method, Request};
use hyper::body::Incoming;
use serde_json::Value;

pub use json::{JsonLimits, LimitError, Scanner};
pub use jsonschema::Draft;

use crate::config::{Limits, RouteConfig};
use crate::rescue::GatewayError;

/// At most this many details in a 400 response.
pub const MAX_DETAILS: usize = 5;

/// One reason a request was refused: where, which rule, what (never the value).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Detail {
    /// JSON pointer in the body ("/items/0/age"), or "query.limit", "path.id", "header.x-trace".
    pub path: String,
    /// The rule: a JSON Schema keyword ("type", "required", "format", …) or a limit ("max_depth").
    pub rule: String,
    pub message: String,
}

impl Detail {
    pub fn new(
        path: impl Into<String>,
        rule: impl Into<String>,
        message: impl Into<String>,
    ) -> Self {
        let mut path: String = path.into();
        if path.len() > 200 {
            let mut cut = 200;
            while !path.is_char_boundary(cut) {
                cut -= 1;
            }
            path.truncate(cut);
            path.push('…');
        }
        Detail {
            path,
            rule: rule.into(),
            message: message.into(),
        }
    }
}

/// A route's compiled validation rules.
#[derive(Debug)]
pub struct Validation {
    /// Allowed media types, lowercase essences ("application/json", "text/*", "*/*"); empty = any.
    pub content_types: Vec<String>,
    /// JSON limits (`max_body` is further capped by the listener's `max_body_size`).
    pub limits: JsonLimits,
    /// Limits were configured: JSON bodies are scanned and parsed even without a schema.
    pub explicit_limits: bool,
    pub schema: Option<jsonschema::Validator>,
    pub openapi: Option<openapi::OpenApi>,
    /// Requests that match no operation of the OpenAPI document: 404 (unknown
    /// path) or 405 (unknown method) when true; forwarded unchecked otherwise.
    pub reject_unknown: bool,
}

/// Compiles a JSON Schema (the draft is the schema's `$schema`, else `draft`),
/// with `format` asserted.
pub fn compile_schema(schema: &Value, draft: Draft) -> Result<jsonschema::Validator, String> {
    jsonschema::options()
        .with_draft(draft)
        .should_validate_formats(true)
        .build(schema)
        .map_err(|e| e.to_string())
}

/// "Application/JSON; charset=utf-8" → "application/json".
pub fn media_essence(v: &str) -> String {
    v.split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase()
}

/// `application/json` and any `+json` suffix type.
pub fn is_json(essence: &str) -> bool {
    essence == "application/json" || (essence.ends_with("+json") && essence.contains('/'))
}

/// Does an allowed entry ("type/subtype", "type/*", "*/*") admit a request essence?
fn media_allowed(allowed: &str, essence: &str) -> bool {
    allowed == essence
        || allowed == "*/*"
        || allowed
            .strip_suffix("/*")
            .is_some_and(|major| essence.split('/').next() == Some(major))
}

/// The path the upstream sees (after `strip_prefix`): the one OpenAPI paths describe.
pub fn upstream_path<'a>(route: &RouteConfig, path: &'a str) -> std::borrow::Cow<'a, str> {
    if route.strip_prefix && route.path != "/" {
        let rest = path
            .get(route.path.trim_end_matches('/').len()..)
            .unwrap_or("");
        if rest.starts_with('/') {
            rest.into()
        } else {
            format!("/{rest}").into()
        }
    } else {
        path.into()
    }
}

/// Appends the errors of `value` against `schema` to `out` (up to [`MAX_DETAILS`] in all).
pub fn schema_details(
    schema: &jsonschema::Validator,
    value: &Value,
    prefix: &str,
    out: &mut Vec<Detail>,
) {
    if out.len() >= MAX_DETAILS {
        return;
    }
    let room = MAX_DETAILS - out.len();
    for e in schema.iter_errors(value).take(room) {
        let path = format!("{prefix}{}", e.instance_path().as_str());
        out.push(Detail::new(path, e.kind().keyword(), message(e.kind())));
    }
}

/// A short message for an error kind: the rule's own limits, never the value.
fn message(kind: &jsonschema::error::ValidationErrorKind) -> String {
    use jsonschema::error::{TypeKind, ValidationErrorKind as K};
    fn names(list: &[String]) -> String {
        list.iter()
            .take(3)
            .map(|n| {
                let short: String = n.chars().take(64).collect();
                format!("\"{short}\"")
            })
            .collect::<Vec<_>>()
            .join(", ")
    }
    match kind {
        K::Type { kind } => match kind {
            TypeKind::Single(t) => format!("expected {t}"),
            TypeKind::Multiple(ts) => format!(
                "expected one of {}",
                ts.iter()
                    .map(|t| t.to_string())
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        },
        K::Required { property } => match property.as_str() {
            Some(p) => format!("missing required property \"{p}\""),
            None => "missing required property".into(),
        },
        K::AdditionalProperties { unexpected } | K::UnevaluatedProperties { unexpected } => {
            format!("property not allowed: {}", names(unexpected))
        }
        K::AdditionalItems { .. } | K::UnevaluatedItems { .. } => "too many items".into(),
        K::Format { format } => format!("not a valid {format}"),
        K::Enum { .. } => "not one of the allowed values".into(),
        K::Constant { .. } => "not the expected value".into(),
        K::MaxLength { limit } => format!("longer than {limit} characters"),
        K::MinLength { limit } => format!("shorter than {limit} characters"),
        K::Maximum { limit } => format!("greater than {limit}"),
        K::Minimum { limit } => format!("less than {limit}"),
        K::ExclusiveMaximum { limit } => format!("not less than {limit}"),
        K::ExclusiveMinimum { limit } => format!("not greater than {limit}"),
        K::MultipleOf { .. } => "not a multiple of the required step".into(),
        K::MaxItems { limit } => format!("more than {limit} items"),
        K::MinItems { limit } => format!("fewer than {limit} items"),
        K::MaxProperties { limit } => format!("more than {limit} properties"),
        K::MinProperties { limit } => format!("fewer than {limit} properties"),
        K::UniqueItems => "items are not unique".into(),
        K::Pattern { .. } => "does not match the required pattern".into(),
        K::Contains => "no item matches the required schema".into(),
        K::AnyOf { .. } | K::OneOfNotValid { .. } => {
            "does not match any of the allowed schemas".into()
        }
        K::OneOfMultipleValid { .. } => "matches more than one of the exclusive schemas".into(),
        K::Not { .. } => "matches a forbidden schema".into(),
        K::FalseSchema => "no value is allowed here".into(),
        K::PropertyNames { .. } => "a property name is not allowed".into(),
        _ => "invalid value".into(),
    }
}

fn limit_failure(e: LimitError, l: &JsonLimits) -> GatewayError {
    let message = match e {
        LimitError::Body => return GatewayError::PayloadTooLarge,
        LimitError::Depth => format!("nested deeper than {} levels", l.max_depth),
        LimitError::Keys => format!("an object has more than {} members", l.max_keys),
        LimitError::String => format!("a string is longer than {} bytes", l.max_string),
    };
    GatewayError::ValidationFailed(vec![Detail::new("", e.rule(), message)])
}

impl Validation {
    /// Checks a complete JSON body: limits (scanner), syntax, then the schema.
    /// The stack scans while reading; this is the whole check on bytes at hand.
    pub fn check_json(
        &self,
        data: &[u8],
        schema: Option<&jsonschema::Validator>,
        limits: JsonLimits,
    ) -> Result<(), GatewayError> {
        Scanner::new(limits)
            .feed(data)
            .map_err(|e| limit_failure(e, &limits))?;
        parse_and_check(data, schema)
    }
}

fn parse_and_check(
    data: &[u8],
    schema: Option<&jsonschema::Validator>,
) -> Result<(), GatewayError> {
    let value: Value = json::parse_strict(data).map_err(|e| {
        let (rule, what) = if e.is_data() {
            ("duplicate_key", "an object repeats a key")
        } else {
            ("json", "the body is not valid JSON")
        };
        GatewayError::ValidationFailed(vec![Detail::new(
            "",
            rule,
            format!("{what} (line {}, column {})", e.line(), e.column()),
        )])
    })?;
    if let Some(schema) = schema {
        let mut out = Vec::new();
        schema_details(schema, &value, "", &mut out);
        if !out.is_empty() {
            return Err(GatewayError::ValidationFailed(out));
        }
    }
    Ok(())
}

/// Reads the whole body through the scanner: refused at the first broken limit.
async fn read_scanned(
    body: &mut Incoming,
    scanner: &mut Scanner,
    limits: &JsonLimits,
    idle: Duration,
) -> Result<Bytes, GatewayError> {
    use http_body_util::BodyExt;
    let mut out = bytes::BytesMut::new();
    loop {
        match tokio::time::timeout(idle, body.frame()).await {
            Err(_) => return Err(GatewayError::RequestTimeout),
            Ok(None) => return Ok(out.freeze()),
            Ok(Some(Err(_))) => return Err(GatewayError::BadRequest("malformed request body")),
            Ok(Some(Ok(frame))) => {
                if let Ok(data) = frame.into_data() {
                    scanner.feed(&data).map_err(|e| limit_failure(e, limits))?;
                    out.extend_from_slice(&data);
                }
            }
        }
    }
}

/// The request-time check of a route with `[route.validate]`. Reads a JSON
/// body into `buffered` (when it is not there yet) only when it must be parsed.
pub async fn check(
    v: &Validation,
    route: &RouteConfig,
    req: &mut Request<Incoming>,
    path: &str,
    buffered: &mut Option<Bytes>,
    listener: &Limits,
) -> Result<(), GatewayError> {
    // The operation of the OpenAPI document, if any.
    let mut op = None;
    let mut path_params = Vec::new();
    if let Some(api) = &v.openapi {
        let api_path = upstream_path(route, path);
        match api.lookup(req.method(), &api_path) {
            openapi::Lookup::Found { op: o, params } => {
                op = Some(o);
                path_params = params;
            }
            openapi::Lookup::NoMethod(allow) if v.reject_unknown => {
                return Err(GatewayError::MethodNotAllowed { allow })
            }
            openapi::Lookup::NoPath if v.reject_unknown => {
                return Err(GatewayError::UnknownOperation)
            }
            _ => {}
        }
    }

    // Content type: the route's list, then the operation's request-body media types.
    let essence = req
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|h| h.to_str().ok())
        .map(media_essence);
    let has_body = match buffered {
        Some(b) => !b.is_empty(),
        None => !http_body::Body::is_end_stream(req.body()),
    };
    if has_body && !v.content_types.is_empty() {
        match &essence {
            Some(e) if v.content_types.iter().any(|a| media_allowed(a, e)) => {}
            _ => return Err(GatewayError::UnsupportedMediaType),
        }
    }
    let mut schema = v.schema.as_ref();
    let mut body_required =
        v.schema.is_some() && matches!(*req.method(), Method::POST | Method::PUT | Method::PATCH);
    if let Some(op) = op {
        body_required = op.body.as_ref().is_some_and(|b| b.required);
        if let (Some(rb), true) = (&op.body, has_body) {
            match essence.as_deref().and_then(|e| rb.media(e)) {
                Some((_, s)) => schema = s.as_ref(),
                None => return Err(GatewayError::UnsupportedMediaType),
            }
        }
    }

    // Parameters, before any body is read.
    if let Some(op) = op {
        let mut details = Vec::new();
        openapi::check_params(
            op,
            &path_params,
            req.uri().query(),
            req.headers(),
            &mut details,
        );
        if !details.is_empty() {
            details.truncate(MAX_DETAILS);
            return Err(GatewayError::ValidationFailed(details));
        }
    }
    if body_required && !has_body {
        return Err(GatewayError::ValidationFailed(vec![Detail::new(
            "",
            "required",
            "a request body is required",
        )]));
    }

    // The JSON body: scanned while it arrives, then parsed and checked.
    let json_body = has_body && essence.as_deref().is_some_and(is_json);
    if !json_body || (schema.is_none() && !v.explicit_limits) {
        return Ok(());
    }
    let limits = JsonLimits {
        max_body: v.limits.max_body.min(listener.max_body_size),
        ..v.limits
    };
    if http_body::Body::size_hint(req.body()).lower() > limits.max_body {
        return Err(GatewayError::PayloadTooLarge);
    }
    let data = match buffered {
        Some(b) => {
            Scanner::new(limits)
                .feed(b)
                .map_err(|e| limit_failure(e, &limits))?;
            b.clone()
        }
        None => {
            let mut scanner = Scanner::new(limits);
            let data =
                read_scanned(req.body_mut(), &mut scanner, &limits, listener.body_timeout).await?;
            *buffered = Some(data.clone());
            data
        }
    };
    parse_and_check(&data, schema)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn validation(schema: Value) -> Validation {
        Validation {
            content_types: vec!["application/json".into()],
            limits: JsonLimits::default(),
            explicit_limits: false,
            schema: Some(compile_schema(&schema, Draft::Draft202012).unwrap()),
            openapi: None,
            reject_unknown: false,
        }
    }

    fn details(r: Result<(), GatewayError>) -> Vec<(String, String, String)> {
        match r {
            Err(GatewayError::ValidationFailed(d)) => {
                d.into_iter().map(|d| (d.path, d.rule, d.message)).collect()
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn media_types() {
        assert_eq!(
            media_essence("Application/JSON ; charset=UTF-8"),
            "application/json"
        );
        assert!(is_json("application/problem+json"));
        assert!(!is_json("text/json5"));
        assert!(media_allowed("text/*", "text/plain"));
        assert!(!media_allowed("text/*", "application/json"));
        assert!(media_allowed("*/*", "image/png"));
    }

    #[test]
    fn schema_errors_are_short_and_never_quote_values() {
        let v = validation(serde_json::json!({
            "type": "object",
            "required": ["name", "email"],
            "additionalProperties": false,
            "properties": {
                "name": {"type": "string"},
                "age": {"type": "integer"},
                "email": {"type": "string", "format": "email"},
                "born": {"type": "string", "format": "date-time"}
            }
        }));
        let schema = v.schema.as_ref();
        let l = JsonLimits::default();
        assert!(v
            .check_json(
                br#"{"name":"a","email":"a@example.com","age":3}"#,
                schema,
                l
            )
            .is_ok());
        let d = details(v.check_json(
            br#"{"name":"a","email":"a@example.com","age":"SECRET"}"#,
            schema,
            l,
        ));
        assert_eq!(
            d,
            [("/age".into(), "type".into(), "expected integer".into())]
        );
        let d = details(v.check_json(br#"{"name":"a","email":"not-an-email"}"#, schema, l));
        assert_eq!(
            d,
            [("/email".into(), "format".into(), "not a valid email".into())]
        );
        let d = details(v.check_json(
            br#"{"name":"a","email":"a@b.co","born":"yesterday"}"#,
            schema,
            l,
        ));
        assert_eq!(d[0].1, "format");
        let d = details(v.check_json(br#"{"email":"a@b.co"}"#, schema, l));
        assert_eq!(d[0].1, "required");
        assert!(d[0].2.contains("\"name\""));
        let d = details(v.check_json(
            br#"{"name":"a","email":"a@b.co","role":"admin"}"#,
            schema,
            l,
        ));
        assert_eq!(d[0].1, "additionalProperties");
        let d = details(v.check_json(br#"{"name": SECRET"#, schema, l));
        assert_eq!(d[0].1, "json");
        let d = details(v.check_json(br#"{"name":"a","email":"a@b.co","name":7}"#, schema, l));
        assert_eq!(d[0].1, "duplicate_key");
        for (_, _, m) in
            details(v.check_json(br#"{"name":5,"age":"SECRET","email":"SECRET"}"#, schema, l))
        {
            assert!(!m.contains("SECRET"), "{m}");
        }
    }

    #[test]
    fn limits_map_to_errors() {
        let v = validation(serde_json::json!(true));
        let l = JsonLimits {
            max_body: 64,
            max_depth: 3,
            max_keys: 2,
            max_string: 4,
        };
        assert_eq!(
            details(v.check_json(b"[[[[]]]]", None, l))[0].1,
            "max_depth"
        );
        assert_eq!(
            details(v.check_json(br#"{"a":1,"b":2,"c":3}"#, None, l))[0].1,
            "max_keys"
        );
        assert_eq!(
            details(v.check_json(br#"["abcde"]"#, None, l))[0].1,
            "max_string"
        );
        assert_eq!(
            v.check_json(&[b' '; 65], None, l),
            Err(GatewayError::PayloadTooLarge)
        );
    }

    #[test]
    fn at_most_five_details() {
        let v = validation(serde_json::json!({"type": "array", "items": {"type": "integer"}}));
        let d = details(v.check_json(
            br#"["a","b","c","d","e","f","g"]"#,
            v.schema.as_ref(),
            JsonLimits::default(),
        ));
        assert_eq!(d.len(), MAX_DETAILS);
        assert_eq!(d[0].0, "/0");
    }
}
