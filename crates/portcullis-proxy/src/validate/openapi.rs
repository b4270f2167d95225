//! OpenAPI 3.0 / 3.1 documents, compiled once at config load into what the
//! request path needs: path templates, and per operation its parameters
//! (with coercion rules and compiled schemas) and request-body schemas.
//!
//! Owns the reading of the document (YAML or JSON), operation lookup by
//! method and path template, parameter extraction (path, query, header) and
//! the OpenAPI 3.0 → JSON Schema 2020-12 translation (`nullable`, boolean
//! `exclusiveMinimum`/`exclusiveMaximum`). Schemas may `$ref`
//! anything under `#/components`; external references are refused at load.

use std::collections::HashMap;

use http::Method;
use serde_json::{Map, Value};

use super::{compile_schema, Detail, Draft};

/// A compiled OpenAPI document.
#[derive(Debug)]
pub struct OpenApi {
    /// Path of the first `servers` URL ("" when none): removed before matching.
    pub base: String,
    paths: Vec<PathItem>,
}

#[derive(Debug)]
struct PathItem {
    segments: Vec<Segment>,
    literals: usize,
    ops: Vec<(Method, Operation)>,
}

#[derive(Debug, PartialEq)]
enum Segment {
    Literal(String),
    /// Literal text and parameters within one segment ("{id}", "{name}.{ext}").
    Pattern(Vec<Piece>),
}

#[derive(Debug, PartialEq)]
enum Piece {
    Lit(String),
    Param(String),
}

/// One operation of the document.
#[derive(Debug)]
pub struct Operation {
    pub params: Vec<Param>,
    pub body: Option<RequestBody>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Location {
    Path,
    Query,
    Header,
}

impl Location {
    fn as_str(self) -> &'static str {
        match self {
            Location::Path => "path",
            Location::Query => "query",
            Location::Header => "header",
        }
    }
}

/// How a parameter's text becomes a JSON value before its schema is applied.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Coerce {
    String,
    Integer,
    Number,
    Boolean,
    /// Repeated (`explode`, the query default) or comma-separated items.
    Array {
        item: Box<Coerce>,
        explode: bool,
    },
}

#[derive(Debug)]
pub struct Param {
    pub name: String,
    pub location: Location,
    pub required: bool,
    pub coerce: Coerce,
    pub schema: Option<jsonschema::Validator>,
}

#[derive(Debug)]
pub struct RequestBody {
    pub required: bool,
    /// Media ranges ("application/json", "application/*", "*/*") and the
    /// compiled schema of the JSON ones.
    pub content: Vec<(String, Option<jsonschema::Validator>)>,
}

impl RequestBody {
    /// The entry for a request media type (lowercase essence): exact, then `type/*`, then `*/*`.
    pub fn media(&self, essence: &str) -> Option<&(String, Option<jsonschema::Validator>)> {
        let major = essence.split('/').next().unwrap_or("");
        self.content
            .iter()
            .find(|(m, _)| m == essence)
            .or_else(|| {
                self.content
                    .iter()
                    .find(|(m, _)| m.strip_suffix("/*") == Some(major))
            })
            .or_else(|| self.content.iter().find(|(m, _)| m == "*/*"))
    }
}

/// The result of looking an operation up.
#[derive(Debug)]
pub enum Lookup<'a> {
    Found {
        op: &'a Operation,
        /// Path parameters, percent-decoded.
        params: Vec<(&'a str, String)>,
    },
    /// The path is known, the method is not: the methods that are.
    NoMethod(String),
    NoPath,
}

const METHODS: [(&str, Method); 8] = [
    ("get", Method::GET),
    ("put", Method::PUT),
    ("post", Method::POST),
    ("delete", Method::DELETE),
    ("options", Method::OPTIONS),
    ("head", Method::HEAD),
    ("patch", Method::PATCH),
    ("trace", Method::TRACE),
];

/// Reads an OpenAPI document from YAML or JSON text.
pub fn parse(text: &str) -> Result<Value, String> {
    if text.trim_start().starts_with('{') {
        return serde_json::from_str(text).map_err(|e| format!("invalid JSON: {e}"));
    }
    let y: serde_norway::Value =
        serde_norway::from_str(text).map_err(|e| format!("invalid YAML: {e}"))?;
    yaml_to_json(y, 0)
}

fn yaml_to_json(y: serde_norway::Value, depth: usize) -> Result<Value, String> {
    use serde_norway::Value as Y;
    if depth > 128 {
        return Err("the document nests deeper than 128 levels".into());
    }
    Ok(match y {
        Y::Null => Value::Null,
        Y::Bool(b) => Value::Bool(b),
        Y::Number(n) => {
            if let Some(i) = n.as_i64() {
                Value::from(i)
            } else if let Some(u) = n.as_u64() {
                Value::from(u)
            } else {
                n.as_f64()
                    .and_then(serde_json::Number::from_f64)
                    .map_or(Value::Null, Value::Number)
            }
        }
        Y::String(s) => Value::String(s),
        Y::Sequence(seq) => Value::Array(
            seq.into_iter()
                .map(|v| yaml_to_json(v, depth + 1))
                .collect::<Result<_, _>>()?,
        ),
        Y::Mapping(m) => {
            let mut out = Map::new();
            for (k, v) in m {
                let key = match k {
                    Y::String(s) => s,
                    Y::Number(n) => n.to_string(),
                    Y::Bool(b) => b.to_string(),
                    _ => return Err("a mapping key is not a string".into()),
                };
                out.insert(key, yaml_to_json(v, depth + 1)?);
            }
            Value::Object(out)
        }
        Y::Tagged(t) => yaml_to_json(t.value, depth + 1)?,
    })
}

/// 3.0 → JSON Schema 2020-12: `nullable: true` adds "null" to `type` (and to
/// `enum`); draft-4 style boolean `exclusiveMinimum`/`exclusiveMaximum` take the
/// bound of `minimum`/`maximum`.
fn translate_30(v: &mut Value, depth: usize) {
    if depth > 128 {
        return;
    }
    match v {
        Value::Object(m) => {
            if m.get("nullable") == Some(&Value::Bool(true)) {
                match m.get_mut("type") {
                    Some(Value::String(t)) => {
                        let t = std::mem::take(t);
                        m.insert("type".into(), Value::from(vec![t, "null".to_string()]));
                    }
                    Some(Value::Array(ts)) if !ts.iter().any(|t| t == "null") => {
                        ts.push(Value::from("null"));
                    }
                    _ => {}
                }
                if let Some(Value::Array(e)) = m.get_mut("enum") {
                    if !e.contains(&Value::Null) {
                        e.push(Value::Null);
                    }
                }
            }
            for (flag, bound) in [
                ("exclusiveMinimum", "minimum"),
                ("exclusiveMaximum", "maximum"),
            ] {
                match m.get(flag) {
                    Some(Value::Bool(true)) => match m.remove(bound) {
                        Some(b) => {
                            m.insert(flag.into(), b);
                        }
                        None => {
                            m.remove(flag);
                        }
                    },
                    Some(Value::Bool(false)) => {
                        m.remove(flag);
                    }
                    _ => {}
                }
            }
            for (_, x) in m.iter_mut() {
                translate_30(x, depth + 1);
            }
        }
        Value::Array(a) => {
            for x in a {
                translate_30(x, depth + 1);
            }
        }
        _ => {}
    }
}

/// Follows local `$ref`s (`#/…`) of non-schema objects (parameters, request bodies).
fn deref<'a>(doc: &'a Value, mut v: &'a Value) -> Result<&'a Value, String> {
    for _ in 0..16 {
        let Some(r) = v.get("$ref").and_then(Value::as_str) else {
            return Ok(v);
        };
        let ptr = r
            .strip_prefix('#')
            .ok_or_else(|| format!("reference \"{r}\" is not local to the document"))?;
        v = doc
            .pointer(ptr)
            .ok_or_else(|| format!("reference \"{r}\" points to nothing"))?;
    }
    Err("references nest more than 16 deep".into())
}

fn segments(template: &str) -> Result<Vec<Segment>, String> {
    let mut out = Vec::new();
    for seg in template.trim_start_matches('/').split('/') {
        if !seg.contains('{') {
            out.push(Segment::Literal(seg.to_string()));
            continue;
        }
        let mut pieces = Vec::new();
        let mut rest = seg;
        while let Some(open) = rest.find('{') {
            if open > 0 {
                pieces.push(Piece::Lit(rest[..open].to_string()));
            }
            let close = rest[open..]
                .find('}')
                .ok_or_else(|| format!("unclosed '{{' in path \"{template}\""))?
                + open;
            let name = &rest[open + 1..close];
            if name.is_empty() {
                return Err(format!("empty parameter name in path \"{template}\""));
            }
            if matches!(pieces.last(), Some(Piece::Param(_))) {
                return Err(format!(
                    "two parameters without text between them in path \"{template}\""
                ));
            }
            pieces.push(Piece::Param(name.to_string()));
            rest = &rest[close + 1..];
        }
        if !rest.is_empty() {
            pieces.push(Piece::Lit(rest.to_string()));
        }
        out.push(Segment::Pattern(pieces));
    }
    Ok(out)
}

/// Matches one path segment against literal pieces and parameters.
fn match_pattern<'t>(pieces: &'t [Piece], seg: &str, out: &mut Vec<(&'t str, String)>) -> bool {
    let mut rest = seg;
    let mut i = 0;
    while i < pieces.len() {
        match &pieces[i] {
            Piece::Lit(l) => match rest.strip_prefix(l.as_str()) {
                Some(r) => rest = r,
                None => return false,
            },
            Piece::Param(name) => {
                // The value runs to the next literal piece (or the segment's end).
                let end = match pieces.get(i + 1) {
                    Some(Piece::Lit(l)) => match rest.find(l.as_str()) {
                        Some(e) => e,
                        None => return false,
                    },
                    _ => rest.len(),
                };
                if end == 0 {
                    return false;
                }
                out.push((name.as_str(), percent_decode(&rest[..end], false)));
                rest = &rest[end..];
            }
        }
        i += 1;
    }
    rest.is_empty()
}

/// Percent-decodes (and, in query strings, turns '+' into a space); invalid escapes stay as written.
pub fn percent_decode(s: &str, plus_is_space: bool) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'%' if i + 2 < b.len() => {
                let hex = |c: u8| (c as char).to_digit(16);
                match (hex(b[i + 1]), hex(b[i + 2])) {
                    (Some(h), Some(l)) => {
                        out.push((h * 16 + l) as u8);
                        i += 3;
                        continue;
                    }
                    _ => out.push(b'%'),
                }
            }
            b'+' if plus_is_space => out.push(b' '),
            c => out.push(c),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The path of a server URL: "https://api.example.com/v1" → "/v1", variables by their defaults.
fn server_base(doc: &Value) -> String {
    let Some(server) = doc.pointer("/servers/0") else {
        return String::new();
    };
    let mut url = server
        .get("url")
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_string();
    if let Some(Value::Object(vars)) = server.get("variables") {
        for (name, var) in vars {
            if let Some(d) = var.get("default").and_then(Value::as_str) {
                url = url.replace(&format!("{{{name}}}"), d);
            }
        }
    }
    let path = match url.find("://") {
        Some(i) => url[i + 3..].find('/').map_or("", |p| &url[i + 3 + p..]),
        None => url.as_str(),
    };
    path.trim_end_matches('/').to_string()
}

fn schema_type(doc: &Value, schema: &Value) -> Option<String> {
    let s = deref(doc, schema).ok()?;
    match s.get("type")? {
        Value::String(t) => Some(t.clone()),
        Value::Array(ts) => ts
            .iter()
            .filter_map(Value::as_str)
            .find(|t| *t != "null")
            .map(str::to_string),
        _ => None,
    }
}

fn coerce_for(doc: &Value, schema: &Value, explode: bool) -> Coerce {
    match schema_type(doc, schema).as_deref() {
        Some("integer") => Coerce::Integer,
        Some("number") => Coerce::Number,
        Some("boolean") => Coerce::Boolean,
        Some("array") => {
            let items = deref(doc, schema)
                .ok()
                .and_then(|s| s.get("items"))
                .map_or(Coerce::String, |i| coerce_for(doc, i, false));
            let item = match items {
                Coerce::Array { .. } => Coerce::String,
                c => c,
            };
            Coerce::Array {
                item: Box::new(item),
                explode,
            }
        }
        _ => Coerce::String,
    }
}

impl Coerce {
    /// The JSON value of a parameter's text; text that does not fit stays a
    /// string so the schema reports the type error.
    pub fn scalar(&self, text: &str) -> Value {
        match self {
            Coerce::Integer => text
                .parse::<i64>()
                .map(Value::from)
                .unwrap_or_else(|_| Value::from(text)),
            Coerce::Number => text
                .parse::<f64>()
                .ok()
                .filter(|f| f.is_finite())
                .and_then(serde_json::Number::from_f64)
                .map_or_else(|| Value::from(text), Value::Number),
            Coerce::Boolean => match text {
                "true" => Value::Bool(true),
                "false" => Value::Bool(false),
                _ => Value::from(text),
            },
            Coerce::String | Coerce::Array { .. } => Value::from(text),
        }
    }

    /// The value of all occurrences of a parameter.
    pub fn value(&self, texts: &[String]) -> Value {
        match self {
            Coerce::Array { item, explode } => {
                let items: Vec<Value> = if *explode {
                    texts.iter().map(|t| item.scalar(t)).collect()
                } else {
                    texts
                        .iter()
                        .flat_map(|t| t.split(','))
                        .filter(|t| !t.is_empty())
                        .map(|t| item.scalar(t))
                        .collect()
                };
                Value::Array(items)
            }
            c => c.scalar(texts.first().map_or("", String::as_str)),
        }
    }
}

impl OpenApi {
    /// Compiles a parsed document. Errors name the place in the document.
    pub fn compile(mut doc: Value) -> Result<OpenApi, String> {
        let version = doc
            .get("openapi")
            .and_then(Value::as_str)
            .ok_or("the document has no `openapi` version field (Swagger 2.0 is not supported)")?
            .to_string();
        let draft = if version.starts_with("3.0") {
            translate_30(&mut doc, 0);
            Draft::Draft202012
        } else if version.starts_with("3.1") || version.starts_with("3.2") {
            Draft::Draft202012
        } else {
            return Err(format!(
                "openapi \"{version}\" is not supported; use a 3.0 or 3.1 document"
            ));
        };
        let components = doc.get("components").cloned();
        let compile = |s: &Value, at: &str| -> Result<jsonschema::Validator, String> {
            let mut root = s.clone();
            if let (Value::Object(m), Some(c)) = (&mut root, &components) {
                m.entry("components").or_insert_with(|| c.clone());
            }
            compile_schema(&root, draft).map_err(|e| format!("{at}: {e}"))
        };
        let mut paths = Vec::new();
        let Some(Value::Object(ps)) = doc.get("paths") else {
            return Err("the document has no `paths`".into());
        };
        for (template, item) in ps {
            let at = format!("paths.{template}");
            if !template.starts_with('/') {
                return Err(format!("{at}: a path must start with '/'"));
            }
            let item = deref(&doc, item).map_err(|e| format!("{at}: {e}"))?;
            let segments = segments(template).map_err(|e| format!("{at}: {e}"))?;
            let literals = segments
                .iter()
                .filter(|s| matches!(s, Segment::Literal(_)))
                .count();
            let shared = item.get("parameters").and_then(Value::as_array);
            let mut ops = Vec::new();
            for (key, method) in METHODS.iter() {
                let Some(op) = item.get(*key) else { continue };
                let at = format!("{at}.{key}");
                let mut params: Vec<Param> = Vec::new();
                // Operation parameters override path-item ones of the same name and place.
                let own = op.get("parameters").and_then(Value::as_array);
                let all = own
                    .into_iter()
                    .flatten()
                    .map(|p| (p, true))
                    .chain(shared.into_iter().flatten().map(|p| (p, false)));
                for (i, (p, _)) in all.enumerate() {
                    let at = format!("{at}.parameters[{i}]");
                    let p = deref(&doc, p).map_err(|e| format!("{at}: {e}"))?;
                    let name = p
                        .get("name")
                        .and_then(Value::as_str)
                        .ok_or_else(|| format!("{at}: a parameter has no `name`"))?;
                    let location = match p.get("in").and_then(Value::as_str) {
                        Some("path") => Location::Path,
                        Some("query") => Location::Query,
                        Some("header") => Location::Header,
                        Some("cookie") => continue,
                        _ => {
                            return Err(format!("{at}: `in` must be path, query, header or cookie"))
                        }
                    };
                    if params
                        .iter()
                        .any(|q| q.location == location && q.name.eq_ignore_ascii_case(name))
                    {
                        continue;
                    }
                    let explode = p
                        .get("explode")
                        .and_then(Value::as_bool)
                        .unwrap_or(location == Location::Query);
                    let (coerce, schema) = match p.get("schema") {
                        Some(s) => (
                            coerce_for(&doc, s, explode),
                            Some(compile(s, &format!("{at}.schema"))?),
                        ),
                        None => (Coerce::String, None),
                    };
                    params.push(Param {
                        name: name.to_string(),
                        location,
                        required: location == Location::Path
                            || p.get("required").and_then(Value::as_bool).unwrap_or(false),
                        coerce,
                        schema,
                    });
                }
                let body = match op.get("requestBody") {
                    None => None,
                    Some(b) => {
                        let at = format!("{at}.requestBody");
                        let b = deref(&doc, b).map_err(|e| format!("{at}: {e}"))?;
                        let mut content = Vec::new();
                        if let Some(Value::Object(c)) = b.get("content") {
                            for (media, mt) in c {
                                let essence = media
                                    .split(';')
                                    .next()
                                    .unwrap_or("")
                                    .trim()
                                    .to_ascii_lowercase();
                                let schema = match mt.get("schema") {
                                    Some(s) if super::is_json(&essence) || essence == "*/*" => {
                                        Some(compile(s, &format!("{at}.content.{media}.schema"))?)
                                    }
                                    _ => None,
                                };
                                content.push((essence, schema));
                            }
                        }
                        Some(RequestBody {
                            required: b.get("required").and_then(Value::as_bool).unwrap_or(false),
                            content,
                        })
                    }
                };
                ops.push((method.clone(), Operation { params, body }));
            }
            paths.push(PathItem {
                segments,
                literals,
                ops,
            });
        }
        Ok(OpenApi {
            base: server_base(&doc),
            paths,
        })
    }

    /// Finds the operation for a method and a path (relative to the API, base removed).
    pub fn lookup(&self, method: &Method, path: &str) -> Lookup<'_> {
        let Some(rel) = (if self.base.is_empty() {
            Some(path)
        } else {
            path.strip_prefix(self.base.as_str())
                .filter(|r| r.is_empty() || r.starts_with('/'))
        }) else {
            return Lookup::NoPath;
        };
        let rel = if rel.is_empty() { "/" } else { rel };
        let segs: Vec<&str> = rel.trim_start_matches('/').split('/').collect();
        let mut best: Option<(&PathItem, Vec<(&str, String)>)> = None;
        for item in &self.paths {
            if item.segments.len() != segs.len() {
                continue;
            }
            if best
                .as_ref()
                .is_some_and(|(b, _)| b.literals >= item.literals)
            {
                continue;
            }
            let mut params = Vec::new();
            let ok = item.segments.iter().zip(&segs).all(|(t, s)| match t {
                Segment::Literal(l) => l == s,
                Segment::Pattern(p) => match_pattern(p, s, &mut params),
            });
            if ok {
                best = Some((item, params));
            }
        }
        let Some((item, params)) = best else {
            return Lookup::NoPath;
        };
        let op = item.ops.iter().find(|(m, _)| m == method).or_else(|| {
            (method == Method::HEAD)
                .then(|| item.ops.iter().find(|(m, _)| m == Method::GET))
                .flatten()
        });
        match op {
            Some((_, op)) => Lookup::Found { op, params },
            None => Lookup::NoMethod(
                item.ops
                    .iter()
                    .map(|(m, _)| m.as_str())
                    .collect::<Vec<_>>()
                    .join(", "),
            ),
        }
    }

    /// Number of path templates (for tests and logs).
    pub fn path_count(&self) -> usize {
        self.paths.len()
    }
}

/// Checks an operation's parameters; details are appended to `out`.
pub fn check_params(
    op: &Operation,
    path_params: &[(&str, String)],
    query: Option<&str>,
    headers: &http::HeaderMap,
    out: &mut Vec<Detail>,
) {
    let mut query_map: HashMap<String, Vec<String>> = HashMap::new();
    if let Some(q) = query {
        for pair in q.split('&').filter(|p| !p.is_empty()) {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            query_map
                .entry(percent_decode(k, true))
                .or_default()
                .push(percent_decode(v, true));
        }
    }
    for p in &op.params {
        let texts: Vec<String> = match p.location {
            Location::Path => path_params
                .iter()
                .filter(|(n, _)| *n == p.name)
                .map(|(_, v)| v.clone())
                .collect(),
            Location::Query => query_map.get(&p.name).cloned().unwrap_or_default(),
            Location::Header => headers
                .get_all(p.name.as_str())
                .iter()
                .filter_map(|v| v.to_str().ok())
                .map(str::to_string)
                .collect(),
        };
        let at = format!("{}.{}", p.location.as_str(), p.name);
        if texts.is_empty() {
            if p.required {
                out.push(Detail::new(
                    at,
                    "required",
                    "a required parameter is missing",
                ));
            }
            continue;
        }
        if let Some(schema) = &p.schema {
            let v = p.coerce.value(&texts);
            super::schema_details(schema, &v, &at, out);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const DOC: &str = r##"
openapi: 3.0.3
servers:
  - url: https://api.example.com/v1
paths:
  /users/{id}:
    parameters:
      - name: id
        in: path
        required: true
        schema: { type: integer, minimum: 1 }
    get:
      parameters:
        - name: fields
          in: query
          schema: { type: string, enum: [short, full] }
    put:
      requestBody:
        required: true
        content:
          application/json:
            schema: { $ref: '#/components/schemas/User' }
  /users/me:
    get: {}
  /search:
    get:
      parameters:
        - $ref: '#/components/parameters/Q'
        - name: tags
          in: query
          schema: { type: array, items: { type: string } }
        - name: exact
          in: query
          schema: { type: boolean }
  /files/{name}.{ext}:
    get: {}
components:
  parameters:
    Q:
      name: q
      in: query
      required: true
      schema: { type: string, pattern: '^[a-z]+$' }
  schemas:
    User:
      type: object
      required: [name]
      additionalProperties: false
      properties:
        name: { type: string }
        nickname: { type: string, nullable: true }
"##;

    fn api() -> OpenApi {
        OpenApi::compile(parse(DOC).unwrap()).unwrap()
    }

    fn params(api: &OpenApi, m: Method, path: &str, q: Option<&str>) -> Vec<Detail> {
        let mut out = Vec::new();
        match api.lookup(&m, path) {
            Lookup::Found { op, params } => {
                check_params(op, &params, q, &http::HeaderMap::new(), &mut out)
            }
            other => panic!("no operation: {other:?}"),
        }
        out
    }

    #[test]
    fn lookup_by_template_and_base() {
        let api = api();
        assert_eq!(api.base, "/v1");
        assert!(matches!(
            api.lookup(&Method::GET, "/v1/users/42"),
            Lookup::Found { ref params, .. } if params == &[("id", "42".to_string())]
        ));
        // The literal path wins over the template.
        assert!(matches!(
            api.lookup(&Method::GET, "/v1/users/me"),
            Lookup::Found { ref params, .. } if params.is_empty()
        ));
        assert!(matches!(
            api.lookup(&Method::DELETE, "/v1/users/42"),
            Lookup::NoMethod(ref a) if a == "GET, PUT"
        ));
        assert!(matches!(
            api.lookup(&Method::GET, "/users/42"),
            Lookup::NoPath
        ));
        assert!(matches!(
            api.lookup(&Method::GET, "/v1/users"),
            Lookup::NoPath
        ));
        assert!(matches!(
            api.lookup(&Method::GET, "/v1/files/report.pdf"),
            Lookup::Found { ref params, .. } if params == &[("name", "report".to_string()), ("ext", "pdf".to_string())]
        ));
        // HEAD falls back to GET.
        assert!(matches!(
            api.lookup(&Method::HEAD, "/v1/users/me"),
            Lookup::Found { .. }
        ));
    }

    #[test]
    fn path_and_query_parameters() {
        let api = api();
        assert!(params(&api, Method::GET, "/v1/users/42", Some("fields=full")).is_empty());
        let d = params(&api, Method::GET, "/v1/users/abc", None);
        assert_eq!(d.len(), 1);
        assert_eq!(
            (d[0].path.as_str(), d[0].rule.as_str()),
            ("path.id", "type")
        );
        let d = params(&api, Method::GET, "/v1/users/0", None);
        assert_eq!(d[0].rule, "minimum");
        let d = params(&api, Method::GET, "/v1/users/7", Some("fields=secret"));
        assert_eq!(
            (d[0].path.as_str(), d[0].rule.as_str()),
            ("query.fields", "enum")
        );
        let d = params(&api, Method::GET, "/v1/search", None);
        assert_eq!(
            (d[0].path.as_str(), d[0].rule.as_str()),
            ("query.q", "required")
        );
        assert!(params(
            &api,
            Method::GET,
            "/v1/search",
            Some("q=abc&tags=a&tags=b&exact=true")
        )
        .is_empty());
        let d = params(&api, Method::GET, "/v1/search", Some("q=ABC&exact=yes"));
        let rules: Vec<_> = d
            .iter()
            .map(|d| (d.path.as_str(), d.rule.as_str()))
            .collect();
        assert_eq!(rules, [("query.q", "pattern"), ("query.exact", "type")]);
        // '+' and percent escapes are decoded before the pattern applies.
        assert!(params(&api, Method::GET, "/v1/search", Some("q=%61bc")).is_empty());
    }

    #[test]
    fn body_schema_with_ref_and_nullable() {
        let api = api();
        let Lookup::Found { op, .. } = api.lookup(&Method::PUT, "/v1/users/1") else {
            panic!()
        };
        let body = op.body.as_ref().unwrap();
        assert!(body.required);
        let (_, schema) = body.media("application/json").unwrap();
        let schema = schema.as_ref().unwrap();
        let check = |v: Value| {
            let mut out = Vec::new();
            crate::validate::schema_details(schema, &v, "", &mut out);
            let mut rules: Vec<_> = out.into_iter().map(|d| d.rule).collect();
            rules.sort();
            rules
        };
        assert!(check(serde_json::json!({"name": "a", "nickname": null})).is_empty());
        assert_eq!(
            check(serde_json::json!({"nickname": 3})),
            ["required", "type"]
        );
        assert_eq!(
            check(serde_json::json!({"name": "a", "x": 1})),
            ["additionalProperties"]
        );
        assert!(body.media("text/plain").is_none());
    }

    #[test]
    fn openapi_30_schemas_become_2020_12() {
        let doc = "openapi: 3.0.0\npaths:\n  /a:\n    get:\n      parameters:\n        - { name: d, in: query, schema: { type: string, format: date } }\n        - { name: n, in: query, schema: { type: number, minimum: 0, exclusiveMinimum: true, maximum: 10, exclusiveMaximum: false } }\n";
        let api = OpenApi::compile(parse(doc).unwrap()).unwrap();
        let rules = |q: &str| {
            let Lookup::Found { op, params } = api.lookup(&Method::GET, "/a") else {
                panic!()
            };
            let mut out = Vec::new();
            check_params(op, &params, Some(q), &http::HeaderMap::new(), &mut out);
            out.into_iter()
                .map(|d| format!("{} {}", d.path, d.rule))
                .collect::<Vec<_>>()
        };
        assert!(rules("d=2026-11-29&n=10").is_empty());
        assert_eq!(rules("d=29.11.2026"), ["query.d format"]);
        assert_eq!(rules("n=0"), ["query.n exclusiveMinimum"]);
        assert_eq!(rules("n=10.5"), ["query.n maximum"]);
    }

    #[test]
    fn bad_documents_are_refused() {
        let e = OpenApi::compile(parse("swagger: '2.0'\npaths: {}").unwrap()).unwrap_err();
        assert!(e.contains("Swagger 2.0"), "{e}");
        let e = OpenApi::compile(
            parse("openapi: 3.1.0\npaths:\n  /a:\n    post:\n      requestBody:\n        content:\n          application/json:\n            schema: { $ref: '#/components/schemas/Nope' }\n").unwrap(),
        )
        .unwrap_err();
        assert!(
            e.starts_with("paths./a.post.requestBody.content.application/json.schema"),
            "{e}"
        );
        assert!(parse("a: [").is_err());
        let e = OpenApi::compile(parse("openapi: 3.1.0\npaths:\n  /a/{:\n    get: {}\n").unwrap())
            .unwrap_err();
        assert!(e.contains("unclosed"), "{e}");
    }

    #[test]
    fn decoding() {
        assert_eq!(percent_decode("a%20b+c%zz%4", true), "a b c%zz%4");
        assert_eq!(percent_decode("a+b", false), "a+b");
        assert_eq!(Coerce::Number.scalar("1.5"), serde_json::json!(1.5));
        assert_eq!(Coerce::Number.scalar("NaN"), serde_json::json!("NaN"));
        assert_eq!(Coerce::Integer.scalar("1.5"), serde_json::json!("1.5"));
    }
}
