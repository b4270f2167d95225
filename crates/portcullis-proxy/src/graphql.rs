//! GraphQL limits per route (`[route.graphql]`).
//!
//! Owns what the gateway knows about GraphQL: reading a request's operations
//! (POST JSON, a batch array, `application/graphql`, GET query strings),
//! persisted queries (an allowlist of SHA-256 hashes loaded from a file, the
//! Apollo `extensions.persistedQuery.sha256Hash` form and the plain
//! `id` / `documentId` form), parsing with `async-graphql-parser`, and the
//! analysis that bounds depth, aliases, root fields, fragments, cost and
//! introspection. A refusal is a [`Refusal`] with a bounded reason (for
//! metrics) and a GraphQL-shaped body; nothing here talks to the upstream.
//!
//! Hostile documents: the text is bounded (`max_query_size`) and its
//! bracket nesting is measured before the parser sees it (the parser and its
//! grammar recurse, so a deeply nested document could otherwise exhaust the
//! stack); fragment cycles are found with an explicit-stack search; fragments
//! are summarised once each, in dependency order, so a spread used many times
//! costs nothing extra to analyse (no exponential expansion). Counts and
//! costs saturate instead of overflowing.

use std::collections::HashMap;
use std::sync::Arc;

use async_graphql_parser::types::{ExecutableDocument, OperationType, Selection, SelectionSet};
use async_graphql_value::{ConstValue, Value};
use http::{header, HeaderMap, Method, Uri};

/// Deepest bracket nesting (`{`, `[`, `(` together) handed to the parser.
/// The parser refuses selection sets nested deeper than 64 on its own; this
/// bound also covers argument values (lists, objects) it does not limit.
pub const MAX_NESTING: usize = 128;

/// The parser's own limit of nested selection sets.
pub const PARSER_DEPTH_LIMIT: u64 = 64;

/// A route's GraphQL policy, validated.
#[derive(Debug, Clone)]
pub struct GraphqlPolicy {
    pub max_depth: u64,
    pub max_aliases: u64,
    pub max_root_fields: u64,
    pub max_fragments: u64,
    pub max_cost: u64,
    pub max_batch: u64,
    /// Longest query text, in bytes.
    pub max_query_size: usize,
    /// Cost of a field without a weight.
    pub default_cost: u64,
    /// Weights by "Type.field" (type known from the operation or a type condition).
    pub type_weights: HashMap<String, HashMap<String, u64>>,
    /// Weights by field name alone.
    pub field_weights: HashMap<String, u64>,
    /// Arguments whose integer value multiplies the cost of a field's selection.
    pub list_arguments: Vec<String>,
    /// Multiplier when a list argument's value is not a known integer.
    pub default_list_size: u64,
    /// `__schema` / `__type` allowed.
    pub introspection: bool,
    pub persisted: Option<Arc<PersistedQueries>>,
    /// Refuse every operation not in `persisted`.
    pub allowlist_only: bool,
    /// Parsed documents of recent queries (`None`: parse every time).
    pub cache: Option<Arc<ParseCache>>,
}

impl Default for GraphqlPolicy {
    fn default() -> Self {
        GraphqlPolicy {
            max_depth: 10,
            max_aliases: 30,
            max_root_fields: 30,
            max_fragments: 50,
            max_cost: 5000,
            max_batch: 10,
            max_query_size: 32 * 1024,
            default_cost: 1,
            type_weights: HashMap::new(),
            field_weights: HashMap::new(),
            list_arguments: vec!["first".into(), "last".into(), "limit".into()],
            default_list_size: 10,
            introspection: true,
            persisted: None,
            allowlist_only: false,
            cache: Some(Arc::new(ParseCache::new())),
        }
    }
}

/// Shards of the parse cache (a lock each, so connections rarely meet on one).
const CACHE_SHARDS: usize = 16;
/// Documents kept per shard.
const CACHE_PER_SHARD: usize = 32;
/// Longer query texts are not cached (bounds the cache's memory).
const CACHE_MAX_TEXT: usize = 4096;

/// Parsed documents by SHA-256 of their text: clients send the same
/// operations again and again, and parsing is most of the cost of a check.
/// Only documents that parsed are kept; the analysis (which depends on the
/// request's variables) runs every time.
pub struct ParseCache {
    shards: Vec<std::sync::Mutex<lru::LruCache<[u8; 32], Arc<ExecutableDocument>>>>,
}

impl std::fmt::Debug for ParseCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ParseCache")
    }
}

impl Default for ParseCache {
    fn default() -> Self {
        ParseCache::new()
    }
}

impl ParseCache {
    pub fn new() -> Self {
        let n = std::num::NonZeroUsize::new(CACHE_PER_SHARD).unwrap_or(std::num::NonZeroUsize::MIN);
        ParseCache {
            shards: (0..CACHE_SHARDS)
                .map(|_| std::sync::Mutex::new(lru::LruCache::new(n)))
                .collect(),
        }
    }

    fn shard(
        &self,
        k: &[u8; 32],
    ) -> Option<std::sync::MutexGuard<'_, lru::LruCache<[u8; 32], Arc<ExecutableDocument>>>> {
        self.shards.get(k[0] as usize % CACHE_SHARDS)?.lock().ok()
    }

    fn get(&self, k: &[u8; 32]) -> Option<Arc<ExecutableDocument>> {
        self.shard(k)?.get(k).cloned()
    }

    fn put(&self, k: [u8; 32], doc: Arc<ExecutableDocument>) {
        if let Some(mut s) = self.shard(&k) {
            s.put(k, doc);
        }
    }
}

/// Why a request was refused: a bounded set, for metrics and logs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reason {
    Depth,
    Aliases,
    RootFields,
    Fragments,
    Cost,
    Batch,
    Introspection,
    NotAllowlisted,
    HashMismatch,
    FragmentCycle,
    ParseError,
    TooLarge,
    BadRequest,
}

impl Reason {
    /// Every reason, for metrics that pre-register their labels.
    pub const ALL: [Reason; 13] = [
        Reason::Depth,
        Reason::Aliases,
        Reason::RootFields,
        Reason::Fragments,
        Reason::Cost,
        Reason::Batch,
        Reason::Introspection,
        Reason::NotAllowlisted,
        Reason::HashMismatch,
        Reason::FragmentCycle,
        Reason::ParseError,
        Reason::TooLarge,
        Reason::BadRequest,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Reason::Depth => "depth",
            Reason::Aliases => "aliases",
            Reason::RootFields => "root_fields",
            Reason::Fragments => "fragments",
            Reason::Cost => "cost",
            Reason::Batch => "batch",
            Reason::Introspection => "introspection",
            Reason::NotAllowlisted => "not_allowlisted",
            Reason::HashMismatch => "hash_mismatch",
            Reason::FragmentCycle => "fragment_cycle",
            Reason::ParseError => "parse_error",
            Reason::TooLarge => "too_large",
            Reason::BadRequest => "bad_request",
        }
    }
}

/// A refused GraphQL request: reason, error code and a message safe to send.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    reason: Reason,
    code: &'static str,
    message: String,
}

impl Refusal {
    fn new(reason: Reason, message: impl Into<String>) -> Self {
        let code = match reason {
            Reason::Depth => "GRAPHQL_DEPTH_LIMIT",
            Reason::Aliases => "GRAPHQL_ALIAS_LIMIT",
            Reason::RootFields => "GRAPHQL_ROOT_FIELD_LIMIT",
            Reason::Fragments => "GRAPHQL_FRAGMENT_LIMIT",
            Reason::Cost => "GRAPHQL_COST_LIMIT",
            Reason::Batch => "GRAPHQL_BATCH_LIMIT",
            Reason::Introspection => "GRAPHQL_INTROSPECTION_DISABLED",
            Reason::NotAllowlisted => "PERSISTED_QUERY_NOT_IN_LIST",
            Reason::HashMismatch => "PERSISTED_QUERY_HASH_MISMATCH",
            Reason::FragmentCycle => "GRAPHQL_FRAGMENT_CYCLE",
            Reason::ParseError => "GRAPHQL_PARSE_FAILED",
            Reason::TooLarge => "GRAPHQL_QUERY_TOO_LARGE",
            Reason::BadRequest => "BAD_REQUEST",
        };
        Refusal {
            reason,
            code,
            message: message.into(),
        }
    }

    fn limit(reason: Reason, what: &str, value: u64, limit: u64) -> Self {
        Refusal::new(
            reason,
            format!("{what} {value} exceeds the limit of {limit}"),
        )
    }

    /// The bounded reason ("depth", "aliases", "root_fields", "fragments",
    /// "cost", "batch", "introspection", "not_allowlisted", "hash_mismatch",
    /// "fragment_cycle", "parse_error", "too_large", "bad_request").
    pub fn reason(&self) -> &'static str {
        self.reason.as_str()
    }

    pub fn kind(&self) -> Reason {
        self.reason
    }

    /// The `extensions.code` of the error.
    pub fn code(&self) -> &'static str {
        self.code
    }

    pub fn message(&self) -> &str {
        &self.message
    }

    /// `{"errors":[{"message":…,"extensions":{"code":…,"reason":…,"request_id":…}}]}`.
    pub fn body(&self, request_id: &str) -> String {
        serde_json::json!({
            "errors": [{
                "message": self.message,
                "extensions": { "code": self.code, "reason": self.reason.as_str(), "request_id": request_id }
            }]
        })
        .to_string()
    }
}

/// The allowlist of persisted operations: SHA-256 of the text → the text, parsed once.
#[derive(Debug, Default)]
pub struct PersistedQueries {
    by_hash: HashMap<[u8; 32], Arc<PersistedOp>>,
}

/// One allowlisted operation.
#[derive(Debug)]
pub struct PersistedOp {
    pub text: String,
    doc: ExecutableDocument,
}

impl PersistedOp {
    /// Measures it against a policy with no variables (their defaults, else
    /// `default_list_size`): a refusal here means requests for it will be refused too.
    pub fn check_with_defaults(&self, policy: &GraphqlPolicy) -> Result<Measured, Refusal> {
        policy.measure(&self.doc, &serde_json::Map::new())
    }
}

impl PersistedQueries {
    /// Reads the allowlist file's JSON: either an object `{"<sha256 hex>": "<query>", …}`
    /// or an Apollo persisted-query manifest
    /// `{"format":"apollo-persisted-query-manifest","operations":[{"id":…,"body":…},…]}`.
    /// Every hash must be the SHA-256 of its text, and every text must parse.
    pub fn from_json(text: &str) -> Result<Self, String> {
        let v: serde_json::Value =
            serde_json::from_str(text).map_err(|e| format!("not JSON: {e}"))?;
        let obj = v
            .as_object()
            .ok_or("the file must hold a JSON object of \"<sha256 hex>\": \"<query>\"")?;
        let mut pairs: Vec<(String, String)> = Vec::new();
        if let Some(ops) = obj.get("operations") {
            let ops = ops
                .as_array()
                .ok_or("\"operations\" must be an array of {\"id\", \"body\"}")?;
            for (i, op) in ops.iter().enumerate() {
                let id = op.get("id").and_then(|x| x.as_str());
                let body = op.get("body").and_then(|x| x.as_str());
                match (id, body) {
                    (Some(id), Some(body)) => pairs.push((id.to_string(), body.to_string())),
                    _ => return Err(format!("operations[{i}] needs string \"id\" and \"body\"")),
                }
            }
        } else {
            for (k, val) in obj {
                let Some(q) = val.as_str() else {
                    return Err(format!("the value of \"{k}\" must be the query text"));
                };
                pairs.push((k.clone(), q.to_string()));
            }
        }
        let mut by_hash = HashMap::with_capacity(pairs.len());
        for (id, body) in pairs {
            let Some(hash) = parse_hash(&id) else {
                return Err(format!("\"{id}\" is not a SHA-256 hash (64 hex digits)"));
            };
            if sha256(body.as_bytes()) != hash {
                return Err(format!(
                    "\"{id}\" is not the SHA-256 of its query (it is {})",
                    hex(&sha256(body.as_bytes()))
                ));
            }
            if let Err(r) = check_nesting(&body) {
                return Err(format!("\"{id}\": {}", r.message));
            }
            let doc = async_graphql_parser::parse_query(&body)
                .map_err(|e| format!("\"{id}\": the query does not parse: {e}"))?;
            by_hash.insert(hash, Arc::new(PersistedOp { text: body, doc }));
        }
        Ok(PersistedQueries { by_hash })
    }

    pub fn len(&self) -> usize {
        self.by_hash.len()
    }

    pub fn is_empty(&self) -> bool {
        self.by_hash.is_empty()
    }

    pub fn get(&self, hash: &[u8; 32]) -> Option<&Arc<PersistedOp>> {
        self.by_hash.get(hash)
    }

    /// (hash, operation), in no particular order.
    pub fn iter(&self) -> impl Iterator<Item = (&[u8; 32], &Arc<PersistedOp>)> {
        self.by_hash.iter()
    }
}

/// SHA-256 of bytes.
pub fn sha256(data: &[u8]) -> [u8; 32] {
    let d = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, data);
    let mut out = [0u8; 32];
    out.copy_from_slice(d.as_ref());
    out
}

/// Lower-case hex.
pub fn hex(b: &[u8]) -> String {
    const H: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(b.len() * 2);
    for x in b {
        s.push(H[(x >> 4) as usize] as char);
        s.push(H[(x & 15) as usize] as char);
    }
    s
}

/// "abc…" (64 hex digits, any case), optionally prefixed "sha256:".
pub fn parse_hash(s: &str) -> Option<[u8; 32]> {
    let s = s.strip_prefix("sha256:").unwrap_or(s).as_bytes();
    if s.len() != 64 {
        return None;
    }
    let mut out = [0u8; 32];
    for (i, pair) in s.chunks(2).enumerate() {
        let d = |c: u8| (c as char).to_digit(16);
        out[i] = (d(pair[0])? * 16 + d(pair[1])?) as u8;
    }
    Some(out)
}

/// One operation of a request, as sent.
#[derive(Debug, Default)]
struct Envelope {
    query: Option<String>,
    variables: serde_json::Map<String, serde_json::Value>,
    /// A persisted-query id was sent (Apollo hash, `id` or `documentId`).
    has_id: bool,
    /// That id as a SHA-256, when it is one.
    hash: Option<[u8; 32]>,
}

fn bad(msg: &str) -> Refusal {
    Refusal::new(Reason::BadRequest, msg)
}

impl Envelope {
    /// From a JSON object `{query, operationName, variables, extensions, id, documentId}`.
    fn from_json(v: &serde_json::Value) -> Result<Self, Refusal> {
        let obj = v
            .as_object()
            .ok_or_else(|| bad("a GraphQL request is a JSON object with \"query\""))?;
        let mut e = Envelope::default();
        match obj.get("query") {
            None | Some(serde_json::Value::Null) => {}
            Some(serde_json::Value::String(q)) => e.query = Some(q.clone()),
            Some(_) => return Err(bad("\"query\" must be a string")),
        }
        match obj.get("variables") {
            None | Some(serde_json::Value::Null) => {}
            Some(serde_json::Value::Object(m)) => e.variables = m.clone(),
            Some(_) => return Err(bad("\"variables\" must be an object")),
        }
        let apq = obj
            .get("extensions")
            .and_then(|x| x.get("persistedQuery"))
            .and_then(|x| x.get("sha256Hash"));
        let id = apq
            .or_else(|| obj.get("documentId"))
            .or_else(|| obj.get("id"));
        match id {
            None | Some(serde_json::Value::Null) => {}
            Some(serde_json::Value::String(s)) => {
                e.has_id = true;
                e.hash = parse_hash(s);
            }
            Some(_) => return Err(bad("the persisted-query id must be a string")),
        }
        Ok(e)
    }

    /// From a GET query string: `query`, `variables` (JSON), `extensions` (JSON), `id`, `documentId`.
    fn from_query_string(q: &str) -> Result<Self, Refusal> {
        let mut obj = serde_json::Map::new();
        for (k, v) in form_urlencoded::parse(q.as_bytes()) {
            match &*k {
                "query" | "id" | "documentId" | "operationName" => {
                    obj.insert(k.into_owned(), serde_json::Value::String(v.into_owned()));
                }
                "variables" | "extensions" => {
                    let parsed: serde_json::Value = serde_json::from_str(&v).map_err(|_| {
                        bad("the \"variables\" and \"extensions\" parameters must be JSON")
                    })?;
                    obj.insert(k.into_owned(), parsed);
                }
                _ => {}
            }
        }
        Envelope::from_json(&serde_json::Value::Object(obj))
    }
}

/// What one checked operation cost.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Measured {
    pub depth: u64,
    pub aliases: u64,
    pub root_fields: u64,
    pub fragments: u64,
    pub cost: u64,
}

impl GraphqlPolicy {
    /// Whether [`check`](Self::check) needs the request body.
    pub fn needs_body(&self, method: &Method) -> bool {
        method == Method::POST
    }

    /// Checks a request; `Ok` carries the total cost (0 for an unknown
    /// persisted hash passed on to the upstream).
    pub fn check(
        &self,
        method: &Method,
        uri: &Uri,
        headers: &HeaderMap,
        body: Option<&[u8]>,
    ) -> Result<u64, Refusal> {
        if headers.contains_key(header::UPGRADE) {
            return Err(bad(
                "WebSocket upgrades are not analysed on a GraphQL route; serve subscriptions on another route",
            ));
        }
        if method == Method::GET {
            let env = Envelope::from_query_string(uri.query().unwrap_or(""))?;
            return self.check_one(&env, true);
        }
        if method != Method::POST {
            return Err(bad("GraphQL requests are GET or POST"));
        }
        let body = body.unwrap_or(&[]);
        let ct = headers
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("");
        let mime = ct
            .split(';')
            .next()
            .unwrap_or("")
            .trim()
            .to_ascii_lowercase();
        if mime == "application/graphql" {
            let q = std::str::from_utf8(body).map_err(|_| bad("the query is not UTF-8"))?;
            let env = Envelope {
                query: Some(q.to_string()),
                ..Envelope::default()
            };
            return self.check_one(&env, false);
        }
        if mime != "application/json" && !mime.ends_with("+json") {
            return Err(bad(
                "POST a JSON body with Content-Type: application/json (or application/graphql)",
            ));
        }
        let v: serde_json::Value =
            serde_json::from_slice(body).map_err(|_| bad("the request body is not valid JSON"))?;
        match &v {
            serde_json::Value::Array(items) => {
                if items.is_empty() {
                    return Err(bad("an empty batch"));
                }
                if items.len() as u64 > self.max_batch {
                    return Err(Refusal::new(
                        Reason::Batch,
                        format!(
                            "a batch of {} operations exceeds the limit of {}",
                            items.len(),
                            self.max_batch
                        ),
                    ));
                }
                let mut total: u64 = 0;
                for item in items {
                    total =
                        total.saturating_add(self.check_one(&Envelope::from_json(item)?, false)?);
                    if total > self.max_cost {
                        return Err(Refusal::limit(
                            Reason::Cost,
                            "batch cost",
                            total,
                            self.max_cost,
                        ));
                    }
                }
                Ok(total)
            }
            _ => self.check_one(&Envelope::from_json(&v)?, false),
        }
    }

    /// One operation; `get`: it came in a GET query string, where mutations are refused
    /// (GraphQL over HTTP: a GET must not change anything, and links can trigger GETs).
    fn check_one(&self, env: &Envelope, get: bool) -> Result<u64, Refusal> {
        let persisted = self.persisted.as_deref();
        let stored: Option<&Arc<PersistedOp>>;
        let parsed: Arc<ExecutableDocument>;
        let doc: &ExecutableDocument = match &env.query {
            Some(q) => {
                if q.len() > self.max_query_size {
                    return Err(Refusal::new(
                        Reason::TooLarge,
                        format!(
                            "the query is {} bytes, more than the limit of {}",
                            q.len(),
                            self.max_query_size
                        ),
                    ));
                }
                let digest = (env.has_id || self.allowlist_only || persisted.is_some())
                    .then(|| sha256(q.as_bytes()));
                if env.has_id && env.hash != digest {
                    return Err(Refusal::new(
                        Reason::HashMismatch,
                        "the persisted-query hash is not the SHA-256 of the query",
                    ));
                }
                stored = match (persisted, &digest) {
                    (Some(p), Some(d)) => p.get(d),
                    _ => None,
                };
                if self.allowlist_only && stored.is_none() {
                    return Err(Refusal::new(
                        Reason::NotAllowlisted,
                        "this route only serves allowlisted (persisted) queries",
                    )
                    .with_code("QUERY_NOT_IN_SAFELIST"));
                }
                match stored {
                    Some(op) => &op.doc,
                    None => {
                        parsed = self.parse(q, digest)?;
                        &parsed
                    }
                }
            }
            None if env.has_id => {
                match (persisted, env.hash.as_ref().and_then(|h| persisted?.get(h))) {
                    (_, Some(op)) => &op.doc,
                    (Some(_), None) if self.allowlist_only => {
                        return Err(Refusal::new(
                            Reason::NotAllowlisted,
                            "persisted query not in the allowlist",
                        ))
                    }
                    // Not ours to know: the upstream answers (Apollo's automatic
                    // persisted queries register a hash with a request that
                    // carries the query, and that request is checked).
                    _ => return Ok(0),
                }
            }
            None => return Err(bad("the request has no \"query\"")),
        };
        if get
            && doc
                .operations
                .iter()
                .any(|(_, op)| op.node.ty == OperationType::Mutation)
        {
            return Err(bad("mutations are not allowed over GET; use POST"));
        }
        let m = self.measure(doc, &env.variables)?;
        Ok(m.cost)
    }

    /// Parses a query (nesting measured first), through the cache when it is short.
    fn parse(&self, q: &str, digest: Option<[u8; 32]>) -> Result<Arc<ExecutableDocument>, Refusal> {
        let key = match &self.cache {
            Some(c) if q.len() <= CACHE_MAX_TEXT => {
                let k = digest.unwrap_or_else(|| sha256(q.as_bytes()));
                if let Some(doc) = c.get(&k) {
                    return Ok(doc);
                }
                Some((c, k))
            }
            _ => None,
        };
        check_nesting(q)?;
        let doc = Arc::new(async_graphql_parser::parse_query(q).map_err(parse_refusal)?);
        if let Some((c, k)) = key {
            c.put(k, doc.clone());
        }
        Ok(doc)
    }

    /// Analyses a parsed document against the limits; variables resolve list arguments.
    pub fn measure(
        &self,
        doc: &ExecutableDocument,
        variables: &serde_json::Map<String, serde_json::Value>,
    ) -> Result<Measured, Refusal> {
        let fragments = doc.fragments.len() as u64;
        if fragments > self.max_fragments {
            return Err(Refusal::limit(
                Reason::Fragments,
                "fragment count",
                fragments,
                self.max_fragments,
            ));
        }
        // Scan every selection set once: introspection and the fragment graph.
        let mut deps: HashMap<&str, Vec<&str>> = HashMap::with_capacity(doc.fragments.len());
        for (name, f) in &doc.fragments {
            let mut spreads = Vec::new();
            self.scan(&f.node.selection_set.node, &mut spreads, 0)?;
            deps.insert(name.as_str(), spreads);
        }
        for (_, op) in doc.operations.iter() {
            let mut spreads = Vec::new();
            self.scan(&op.node.selection_set.node, &mut spreads, 0)?;
            for s in spreads {
                if !doc.fragments.contains_key(s) {
                    return Err(Refusal::new(
                        Reason::ParseError,
                        format!("fragment \"{s}\" is not defined"),
                    ));
                }
            }
        }
        let order = topo_order(&deps)?;

        // Variable values: the request's, else the operations' defaults.
        let mut defaults: HashMap<&str, &ConstValue> = HashMap::new();
        for (_, op) in doc.operations.iter() {
            for vd in &op.node.variable_definitions {
                if let Some(dv) = &vd.node.default_value {
                    defaults
                        .entry(vd.node.name.node.as_str())
                        .or_insert(&dv.node);
                }
            }
        }
        let ctx = Ctx {
            policy: self,
            variables,
            defaults,
        };
        let mut summaries: HashMap<&str, Summary> = HashMap::with_capacity(order.len());
        for name in order {
            let Some(f) = doc.fragments.get(name) else {
                continue;
            };
            let ty = f.node.type_condition.node.on.node.as_str();
            let s = ctx.summarise(&f.node.selection_set.node, Some(ty), &summaries, 0)?;
            summaries.insert(name, s);
        }
        let mut worst = Measured {
            fragments,
            ..Measured::default()
        };
        for (_, op) in doc.operations.iter() {
            let root = match op.node.ty {
                OperationType::Query => "Query",
                OperationType::Mutation => "Mutation",
                OperationType::Subscription => "Subscription",
            };
            let s = ctx.summarise(&op.node.selection_set.node, Some(root), &summaries, 0)?;
            worst.depth = worst.depth.max(s.depth);
            worst.aliases = worst.aliases.max(s.aliases);
            worst.root_fields = worst.root_fields.max(s.top_fields);
            worst.cost = worst.cost.max(s.cost);
        }
        if worst.depth > self.max_depth {
            return Err(Refusal::limit(
                Reason::Depth,
                "query depth",
                worst.depth,
                self.max_depth,
            ));
        }
        if worst.aliases > self.max_aliases {
            return Err(Refusal::limit(
                Reason::Aliases,
                "alias count",
                worst.aliases,
                self.max_aliases,
            ));
        }
        if worst.root_fields > self.max_root_fields {
            return Err(Refusal::limit(
                Reason::RootFields,
                "root field count",
                worst.root_fields,
                self.max_root_fields,
            ));
        }
        if worst.cost > self.max_cost {
            return Err(Refusal::limit(
                Reason::Cost,
                "query cost",
                worst.cost,
                self.max_cost,
            ));
        }
        // A document with several operations runs one of them: each was measured, the worst counts.
        Ok(worst)
    }

    /// Walks a selection set (depth-bounded by the parser and [`MAX_NESTING`]):
    /// refuses introspection when denied and collects fragment spreads.
    fn scan<'d>(
        &self,
        set: &'d SelectionSet,
        spreads: &mut Vec<&'d str>,
        level: usize,
    ) -> Result<(), Refusal> {
        if level > MAX_NESTING {
            return Err(nesting_refusal());
        }
        for item in &set.items {
            match &item.node {
                Selection::Field(f) => {
                    let name = f.node.name.node.as_str();
                    if !self.introspection && (name == "__schema" || name == "__type") {
                        return Err(Refusal::new(
                            Reason::Introspection,
                            "introspection is disabled on this route",
                        ));
                    }
                    self.scan(&f.node.selection_set.node, spreads, level + 1)?;
                }
                Selection::InlineFragment(i) => {
                    self.scan(&i.node.selection_set.node, spreads, level + 1)?
                }
                Selection::FragmentSpread(s) => spreads.push(s.node.fragment_name.node.as_str()),
            }
        }
        Ok(())
    }

    fn weight(&self, ty: Option<&str>, field: &str) -> u64 {
        if let Some(w) = ty
            .and_then(|t| self.type_weights.get(t))
            .and_then(|m| m.get(field))
        {
            return *w;
        }
        self.field_weights
            .get(field)
            .copied()
            .unwrap_or(self.default_cost)
    }
}

impl Refusal {
    fn with_code(mut self, code: &'static str) -> Self {
        self.code = code;
        self
    }
}

fn parse_refusal(e: async_graphql_parser::Error) -> Refusal {
    match e {
        async_graphql_parser::Error::RecursionLimitExceeded => Refusal::new(
            Reason::Depth,
            format!("query depth exceeds {PARSER_DEPTH_LIMIT}, the most the gateway parses"),
        ),
        other => {
            // The parser's message names positions and tokens, never anything of ours.
            let mut m = other.to_string();
            if m.len() > 200 {
                let mut cut = 200;
                while !m.is_char_boundary(cut) {
                    cut -= 1;
                }
                m.truncate(cut);
            }
            Refusal::new(Reason::ParseError, format!("the query does not parse: {m}"))
        }
    }
}

fn nesting_refusal() -> Refusal {
    Refusal::new(
        Reason::Depth,
        format!("the document nests deeper than {MAX_NESTING} levels"),
    )
}

/// Measures bracket nesting outside strings and comments, before parsing.
fn check_nesting(q: &str) -> Result<(), Refusal> {
    let b = q.as_bytes();
    let (mut i, mut depth) = (0usize, 0usize);
    while i < b.len() {
        match b[i] {
            b'#' => {
                while i < b.len() && b[i] != b'\n' && b[i] != b'\r' {
                    i += 1;
                }
            }
            b'"' if b[i..].starts_with(b"\"\"\"") => {
                i += 3;
                while i < b.len() && !b[i..].starts_with(b"\"\"\"") {
                    // \""" is an escaped triple quote inside a block string.
                    i += if b[i..].starts_with(b"\\\"\"\"") {
                        4
                    } else {
                        1
                    };
                }
                i += 2;
            }
            b'"' => {
                i += 1;
                while i < b.len() && b[i] != b'"' && b[i] != b'\n' {
                    i += if b[i] == b'\\' { 2 } else { 1 };
                }
            }
            b'{' | b'[' | b'(' => {
                depth += 1;
                if depth > MAX_NESTING {
                    return Err(nesting_refusal());
                }
            }
            b'}' | b']' | b')' => depth = depth.saturating_sub(1),
            _ => {}
        }
        i += 1;
    }
    Ok(())
}

/// Dependency order of fragments (a fragment after those it spreads), or the cycle.
fn topo_order<'d>(deps: &HashMap<&'d str, Vec<&'d str>>) -> Result<Vec<&'d str>, Refusal> {
    #[derive(Clone, Copy, PartialEq)]
    enum Mark {
        Open,
        Done,
    }
    let mut mark: HashMap<&str, Mark> = HashMap::with_capacity(deps.len());
    let mut order = Vec::with_capacity(deps.len());
    for &start in deps.keys() {
        if mark.contains_key(start) {
            continue;
        }
        // Explicit stack of (fragment, index of the next dependency to visit).
        let mut stack: Vec<(&str, usize)> = vec![(start, 0)];
        mark.insert(start, Mark::Open);
        while let Some((node, next)) = stack.last_mut() {
            let list = deps.get(*node).map(Vec::as_slice).unwrap_or(&[]);
            if let Some(&dep) = list.get(*next) {
                *next += 1;
                if !deps.contains_key(dep) {
                    return Err(Refusal::new(
                        Reason::ParseError,
                        format!("fragment \"{dep}\" is not defined"),
                    ));
                }
                match mark.get(dep) {
                    Some(Mark::Open) => {
                        return Err(Refusal::new(
                            Reason::FragmentCycle,
                            format!("fragment \"{dep}\" spreads itself (a cycle)"),
                        ))
                    }
                    Some(Mark::Done) => {}
                    None => {
                        mark.insert(dep, Mark::Open);
                        stack.push((dep, 0));
                    }
                }
            } else {
                let done = *node;
                mark.insert(done, Mark::Done);
                order.push(done);
                stack.pop();
            }
        }
    }
    Ok(order)
}

/// What a selection set adds up to.
#[derive(Debug, Clone, Copy, Default)]
struct Summary {
    depth: u64,
    aliases: u64,
    /// Fields at this level (spreads and inline fragments looked through).
    top_fields: u64,
    cost: u64,
}

struct Ctx<'a> {
    policy: &'a GraphqlPolicy,
    variables: &'a serde_json::Map<String, serde_json::Value>,
    defaults: HashMap<&'a str, &'a ConstValue>,
}

impl Ctx<'_> {
    fn summarise(
        &self,
        set: &SelectionSet,
        ty: Option<&str>,
        fragments: &HashMap<&str, Summary>,
        level: usize,
    ) -> Result<Summary, Refusal> {
        if level > MAX_NESTING {
            return Err(nesting_refusal());
        }
        let mut s = Summary::default();
        for item in &set.items {
            let sub = match &item.node {
                Selection::Field(f) => {
                    let f = &f.node;
                    let inner =
                        self.summarise(&f.selection_set.node, None, fragments, level + 1)?;
                    let name = f.name.node.as_str();
                    let mult = self.multiplier(&f.arguments);
                    Summary {
                        depth: inner.depth.saturating_add(1),
                        aliases: inner.aliases.saturating_add(u64::from(f.alias.is_some())),
                        top_fields: 1,
                        cost: self
                            .policy
                            .weight(ty, name)
                            .saturating_add(mult.saturating_mul(inner.cost)),
                    }
                }
                Selection::InlineFragment(i) => {
                    let i = &i.node;
                    let t = i
                        .type_condition
                        .as_ref()
                        .map(|c| c.node.on.node.as_str())
                        .or(ty);
                    self.summarise(&i.selection_set.node, t, fragments, level + 1)?
                }
                Selection::FragmentSpread(sp) => fragments
                    .get(sp.node.fragment_name.node.as_str())
                    .copied()
                    .ok_or_else(|| {
                        Refusal::new(
                            Reason::ParseError,
                            format!("fragment \"{}\" is not defined", sp.node.fragment_name.node),
                        )
                    })?,
            };
            s.depth = s.depth.max(sub.depth);
            s.aliases = s.aliases.saturating_add(sub.aliases);
            s.top_fields = s.top_fields.saturating_add(sub.top_fields);
            s.cost = s.cost.saturating_add(sub.cost);
        }
        Ok(s)
    }

    /// The list size a field asks for (`first: 50`, `limit: $n`), 1 without one.
    fn multiplier(
        &self,
        args: &[(
            async_graphql_parser::Positioned<async_graphql_value::Name>,
            async_graphql_parser::Positioned<Value>,
        )],
    ) -> u64 {
        let mut mult: Option<u64> = None;
        for (name, value) in args {
            if !self
                .policy
                .list_arguments
                .iter()
                .any(|a| a == name.node.as_str())
            {
                continue;
            }
            let n = match &value.node {
                Value::Number(n) => int_of(n),
                Value::Variable(v) => match self.variables.get(v.as_str()) {
                    Some(serde_json::Value::Number(n)) => int_of(n),
                    Some(_) => None,
                    None => match self.defaults.get(v.as_str()) {
                        Some(ConstValue::Number(n)) => int_of(n),
                        _ => None,
                    },
                },
                _ => None,
            }
            .unwrap_or(self.policy.default_list_size);
            mult = Some(mult.map_or(n, |m| m.max(n)));
        }
        mult.unwrap_or(1)
    }
}

/// A non-negative integer list size (negative counts as 0).
fn int_of(n: &serde_json::Number) -> Option<u64> {
    n.as_u64()
        .or_else(|| n.as_i64().map(|i| if i < 0 { 0 } else { i as u64 }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy() -> GraphqlPolicy {
        GraphqlPolicy {
            max_depth: 8,
            max_aliases: 10,
            max_root_fields: 5,
            max_fragments: 10,
            max_cost: 1000,
            max_batch: 5,
            introspection: false,
            ..GraphqlPolicy::default()
        }
    }

    fn post(p: &GraphqlPolicy, body: serde_json::Value) -> Result<u64, Refusal> {
        let mut h = HeaderMap::new();
        h.insert(header::CONTENT_TYPE, "application/json".parse().unwrap());
        p.check(
            &Method::POST,
            &Uri::from_static("/graphql"),
            &h,
            Some(body.to_string().as_bytes()),
        )
    }

    fn query(p: &GraphqlPolicy, q: &str) -> Result<u64, Refusal> {
        post(p, serde_json::json!({ "query": q }))
    }

    fn nested(depth: usize) -> String {
        format!(
            "{{{}{}}}",
            "a {".repeat(depth - 1) + "b",
            " }".repeat(depth - 1)
        )
    }

    #[test]
    fn a_plain_query_passes_and_costs_its_fields() {
        let p = policy();
        assert_eq!(query(&p, "{ user { id name } }").unwrap(), 3);
        assert_eq!(query(&p, "query Q { me { id } }").unwrap(), 2);
    }

    #[test]
    fn deep_query_refused_with_its_depth() {
        let p = policy();
        assert!(query(&p, &nested(8)).is_ok());
        let r = query(&p, &nested(12)).unwrap_err();
        assert_eq!(r.reason(), "depth");
        assert_eq!(r.code(), "GRAPHQL_DEPTH_LIMIT");
        assert_eq!(r.message(), "query depth 12 exceeds the limit of 8");
        let body: serde_json::Value = serde_json::from_str(&r.body("rid")).unwrap();
        assert_eq!(
            body["errors"][0]["extensions"]["code"],
            "GRAPHQL_DEPTH_LIMIT"
        );
        assert_eq!(body["errors"][0]["extensions"]["request_id"], "rid");
    }

    #[test]
    fn depth_through_fragments_counts() {
        let p = policy();
        let q = "{ a { ...F } } fragment F on T { b { c { d { e { f { g { h { i } } } } } } } }";
        let r = query(&p, q).unwrap_err();
        assert_eq!(r.reason(), "depth");
        assert_eq!(r.message(), "query depth 9 exceeds the limit of 8");
    }

    #[test]
    fn hostile_nesting_is_refused_without_overflowing_the_stack() {
        let p = policy();
        // Far past the parser's limit and ours; run on a 2 MiB stack like a worker thread.
        let handle = std::thread::Builder::new()
            .stack_size(2 * 1024 * 1024)
            .spawn(move || {
                let deep = nested(100_000);
                let r1 = query(&p, &deep).map_err(|r| r.reason());
                let list = format!("{{ a(x: {}1{}) }}", "[".repeat(50_000), "]".repeat(50_000));
                let r2 = query(&p, &list).map_err(|r| r.reason());
                // Just under our bound: the parser's own limit answers.
                let mid = nested(100);
                let r3 = query(&p, &mid).map_err(|r| r.reason());
                let vals = format!("{{ a(x: {}1{}) }}", "[".repeat(120), "]".repeat(120));
                let r4 = query(&p, &vals).map_err(|r| r.reason());
                (r1, r2, r3, r4)
            })
            .unwrap();
        let (r1, r2, r3, r4) = handle.join().unwrap();
        // 100k levels is over max_query_size (32k) already.
        assert_eq!(r1, Err("too_large"));
        assert_eq!(r2, Err("too_large"));
        assert_eq!(r3, Err("depth"));
        assert!(r4.is_ok(), "{r4:?}");
        let handle = std::thread::Builder::new()
            .stack_size(2 * 1024 * 1024)
            .spawn(|| {
                let p = GraphqlPolicy {
                    max_query_size: 1 << 20,
                    ..policy()
                };
                let r1 = query(&p, &nested(100_000)).map_err(|r| r.reason());
                let list = format!("{{ a(x: {}1{}) }}", "[".repeat(50_000), "]".repeat(50_000));
                let r2 = query(&p, &list).map_err(|r| r.reason());
                (r1, r2)
            })
            .unwrap();
        let (r1, r2) = handle.join().unwrap();
        assert_eq!(r1, Err("depth"));
        assert_eq!(r2, Err("depth"));
    }

    #[test]
    fn alias_bomb_refused() {
        let p = policy();
        let q = format!(
            "{{ {} }}",
            (0..100)
                .map(|i| format!("a{i}: __typename"))
                .collect::<Vec<_>>()
                .join(" ")
        );
        let r = query(&p, &q).unwrap_err();
        assert_eq!(r.reason(), "aliases");
        assert_eq!(r.message(), "alias count 100 exceeds the limit of 10");
        // Aliases inside a fragment count once per spread.
        let q = "{ x { ...F ...F } y { ...F } } fragment F on T { a1: id a2: id a3: id a4: id }";
        assert_eq!(
            query(&p, q).unwrap_err().message(),
            "alias count 12 exceeds the limit of 10"
        );
    }

    #[test]
    fn root_fields_and_fragment_count() {
        let p = policy();
        let r = query(&p, "{ a b c d e f }").unwrap_err();
        assert_eq!(r.reason(), "root_fields");
        let r = query(&p, "{ a ...R } fragment R on Query { b c d e f }").unwrap_err();
        assert_eq!(r.message(), "root field count 6 exceeds the limit of 5");
        let frags: String = (0..11)
            .map(|i| format!(" fragment F{i} on T {{ id }}"))
            .collect();
        let spreads: String = (0..11).map(|i| format!(" ...F{i}")).collect();
        let r = query(&p, &format!("{{ x {{ {spreads} }} }}{frags}")).unwrap_err();
        assert_eq!(r.reason(), "fragments");
    }

    #[test]
    fn fragment_cycles_refused() {
        let p = policy();
        let r = query(
            &p,
            "{ a { ...A } } fragment A on T { b { ...B } } fragment B on T { c { ...A } }",
        )
        .unwrap_err();
        assert_eq!(r.reason(), "fragment_cycle");
        assert_eq!(r.code(), "GRAPHQL_FRAGMENT_CYCLE");
        let r = query(&p, "{ a { ...A } } fragment A on T { ...A }").unwrap_err();
        assert_eq!(r.reason(), "fragment_cycle");
        let r = query(&p, "{ a { ...Missing } }").unwrap_err();
        assert_eq!(r.reason(), "parse_error");
    }

    #[test]
    fn exponential_fragment_fan_out_is_summarised_not_expanded() {
        // F0 spreads F1 twice, F1 spreads F2 twice, … 2^40 fields if expanded.
        let mut p = policy();
        p.max_fragments = 100;
        p.max_aliases = u64::MAX;
        p.max_depth = 60;
        let mut q = String::from("{ a { ...F0 } }");
        for i in 0..40 {
            q.push_str(&format!(
                " fragment F{i} on T {{ x: f{i} {{ ...F{} }} y: g{i} {{ ...F{} }} }}",
                i + 1,
                i + 1
            ));
        }
        q.push_str(" fragment F40 on T { leaf }");
        let r = query(&p, &q).unwrap_err();
        assert_eq!(r.reason(), "cost");
    }

    #[test]
    fn batches_bounded() {
        let p = policy();
        let ok = serde_json::json!([{ "query": "{ a }" }, { "query": "{ b { c } }" }]);
        assert_eq!(post(&p, ok).unwrap(), 3);
        let big: Vec<_> = (0..1000)
            .map(|_| serde_json::json!({ "query": "{ a }" }))
            .collect();
        let r = post(&p, serde_json::Value::Array(big)).unwrap_err();
        assert_eq!(r.reason(), "batch");
        assert_eq!(
            r.message(),
            "a batch of 1000 operations exceeds the limit of 5"
        );
        // One bad operation in a batch refuses the batch.
        let mixed = serde_json::json!([{ "query": "{ a }" }, { "query": "{ __schema { types { name } } }" }]);
        assert_eq!(post(&p, mixed).unwrap_err().reason(), "introspection");
    }

    #[test]
    fn introspection_refused_typename_allowed() {
        let p = policy();
        let r = query(&p, "{ __schema { types { name } } }").unwrap_err();
        assert_eq!(r.reason(), "introspection");
        assert_eq!(r.code(), "GRAPHQL_INTROSPECTION_DISABLED");
        let r = query(
            &p,
            "{ user { ...F } } fragment F on User { t: __type(name: \"X\") { name } }",
        )
        .unwrap_err();
        assert_eq!(r.reason(), "introspection");
        assert!(query(&p, "{ user { __typename id } __typename }").is_ok());
        let allow = GraphqlPolicy {
            introspection: true,
            max_cost: 100_000,
            ..policy()
        };
        assert!(query(&allow, "{ __schema { types { name } } }").is_ok());
    }

    #[test]
    fn cost_with_weights_list_multipliers_and_variables() {
        let mut p = policy();
        p.type_weights
            .entry("Query".into())
            .or_default()
            .insert("users".into(), 5);
        p.field_weights.insert("posts".into(), 3);
        // users: 5 + 10 × (id 1 + posts (3 + 20 × title 1)) = 5 + 10 × 24 = 245.
        let q = "{ users(first: 10) { id posts(limit: 20) { title } } }";
        assert_eq!(query(&p, q).unwrap(), 245);
        // The same with variables from the request …
        let q = "query($n: Int, $m: Int) { users(first: $n) { id posts(limit: $m) { title } } }";
        let v = serde_json::json!({ "query": q, "variables": { "n": 10, "m": 20 } });
        assert_eq!(post(&p, v).unwrap(), 245);
        let v = serde_json::json!({ "query": q, "variables": { "n": 100, "m": 20 } });
        let r = post(&p, v).unwrap_err();
        assert_eq!(r.reason(), "cost");
        assert_eq!(r.message(), "query cost 2405 exceeds the limit of 1000");
        // … from defaults, and the default list size when unknown.
        let q = "query($n: Int = 2) { users(first: $n) { id } }";
        assert_eq!(query(&p, q).unwrap(), 5 + 2);
        let q = "query($n: Int) { users(first: $n) { id } }";
        assert_eq!(query(&p, q).unwrap(), 5 + 10);
        // "Query.users" applies only where the type is known: nested it is a plain field.
        assert_eq!(query(&p, "{ me { users { id } } }").unwrap(), 3);
        // Inline fragments' type conditions name the type.
        assert_eq!(query(&p, "{ ... on Query { users { id } } }").unwrap(), 6);
        // Huge multipliers saturate instead of overflowing.
        let q = "{ a(first: 4000000000) { b(first: 4000000000) { c(first: 4000000000) { d } } } }";
        assert_eq!(query(&p, q).unwrap_err().reason(), "cost");
    }

    fn persisted(p: &mut GraphqlPolicy, text: &str) -> String {
        let h = hex(&sha256(text.as_bytes()));
        let file = serde_json::json!({ h.clone(): text }).to_string();
        p.persisted = Some(Arc::new(PersistedQueries::from_json(&file).unwrap()));
        h
    }

    #[test]
    fn persisted_queries_in_allowlist_mode() {
        let mut p = policy();
        p.allowlist_only = true;
        let text = "query Me { me { id name } }";
        let h = persisted(&mut p, text);
        // Apollo form, hash only and with the query.
        let apq = |q: Option<&str>, h: &str| {
            let mut v = serde_json::json!({ "extensions": { "persistedQuery": { "version": 1, "sha256Hash": h } } });
            if let Some(q) = q {
                v["query"] = q.into();
            }
            v
        };
        assert_eq!(post(&p, apq(None, &h)).unwrap(), 3);
        assert_eq!(post(&p, apq(Some(text), &h)).unwrap(), 3);
        // Plain id forms, "sha256:" prefix allowed, upper-case hex too.
        assert!(post(&p, serde_json::json!({ "id": h })).is_ok());
        assert!(post(
            &p,
            serde_json::json!({ "documentId": format!("sha256:{}", h.to_uppercase()) })
        )
        .is_ok());
        // The full text of an allowlisted operation, without a hash.
        assert!(query(&p, text).is_ok());
        // Unknown hash, unknown text: refused.
        let unknown = hex(&sha256(b"{ other }"));
        let r = post(&p, apq(None, &unknown)).unwrap_err();
        assert_eq!(r.reason(), "not_allowlisted");
        assert_eq!(r.code(), "PERSISTED_QUERY_NOT_IN_LIST");
        assert_eq!(
            post(&p, serde_json::json!({ "id": "not-a-hash" }))
                .unwrap_err()
                .reason(),
            "not_allowlisted"
        );
        let r = query(&p, "{ other }").unwrap_err();
        assert_eq!(r.reason(), "not_allowlisted");
        assert_eq!(r.code(), "QUERY_NOT_IN_SAFELIST");
        // Hash and text that disagree.
        let r = post(&p, apq(Some("{ me { id name password } }"), &h)).unwrap_err();
        assert_eq!(r.reason(), "hash_mismatch");
        // Allowlisted operations still obey the cost limit with the request's variables.
        let mut p2 = policy();
        p2.allowlist_only = true;
        let t = "query($n: Int) { users(first: $n) { id } }";
        let h2 = persisted(&mut p2, t);
        assert!(post(
            &p2,
            serde_json::json!({ "id": h2, "variables": { "n": 5 } })
        )
        .is_ok());
        let r = post(
            &p2,
            serde_json::json!({ "id": h2, "variables": { "n": 5000 } }),
        )
        .unwrap_err();
        assert_eq!(r.reason(), "cost");
    }

    #[test]
    fn persisted_hash_without_allowlist_only() {
        let mut p = policy();
        let h = persisted(&mut p, "{ me { id } }");
        assert_eq!(post(&p, serde_json::json!({ "id": h })).unwrap(), 2);
        // An unknown hash alone goes to the upstream (automatic persisted queries).
        let unknown = hex(&sha256(b"{ x }"));
        assert_eq!(
            post(
                &p,
                serde_json::json!({ "extensions": { "persistedQuery": { "sha256Hash": unknown } } })
            )
            .unwrap(),
            0
        );
        // Free-form queries are analysed.
        assert_eq!(query(&p, "{ x }").unwrap(), 1);
        assert_eq!(
            post(&p, serde_json::json!({ "query": "{ x }", "extensions": { "persistedQuery": { "sha256Hash": h } } }))
                .unwrap_err()
                .reason(),
            "hash_mismatch"
        );
    }

    #[test]
    fn allowlist_file_forms_and_errors() {
        let t = "{ me { id } }";
        let h = hex(&sha256(t.as_bytes()));
        let apollo = serde_json::json!({
            "format": "apollo-persisted-query-manifest", "version": 1,
            "operations": [{ "id": h, "name": "Me", "type": "query", "body": t }]
        });
        let pq = PersistedQueries::from_json(&apollo.to_string()).unwrap();
        assert_eq!(pq.len(), 1);
        assert_eq!(pq.get(&parse_hash(&h).unwrap()).unwrap().text, t);
        let wrong = serde_json::json!({ hex(&sha256(b"x")): t });
        assert!(PersistedQueries::from_json(&wrong.to_string())
            .unwrap_err()
            .contains("is not the SHA-256 of its query"));
        let bad_hash = serde_json::json!({ "abc": t });
        assert!(PersistedQueries::from_json(&bad_hash.to_string())
            .unwrap_err()
            .contains("64 hex"));
        let bad_q = serde_json::json!({ hex(&sha256(b"{ a ")): "{ a " });
        assert!(PersistedQueries::from_json(&bad_q.to_string())
            .unwrap_err()
            .contains("does not parse"));
        assert!(PersistedQueries::from_json("[1]").is_err());
    }

    #[test]
    fn get_requests_and_envelopes() {
        let p = policy();
        let h = HeaderMap::new();
        let uri: Uri = "/graphql?query=%7B%20a%20%7B%20b%20%7D%20%7D"
            .parse()
            .unwrap();
        assert_eq!(p.check(&Method::GET, &uri, &h, None).unwrap(), 2);
        let uri: Uri = "/graphql?query=query(%24n%3AInt)%7Bu(first%3A%24n)%7Bid%7D%7D&variables=%7B%22n%22%3A3%7D"
            .parse()
            .unwrap();
        assert_eq!(p.check(&Method::GET, &uri, &h, None).unwrap(), 4);
        let uri: Uri = "/graphql?query=%7B__schema%7Btypes%7Bname%7D%7D%7D"
            .parse()
            .unwrap();
        assert_eq!(
            p.check(&Method::GET, &uri, &h, None).unwrap_err().reason(),
            "introspection"
        );
        let uri: Uri = "/graphql".parse().unwrap();
        assert_eq!(
            p.check(&Method::GET, &uri, &h, None).unwrap_err().reason(),
            "bad_request"
        );
        let uri: Uri = "/graphql?query=mutation%7Bdelete%7D".parse().unwrap();
        let r = p.check(&Method::GET, &uri, &h, None).unwrap_err();
        assert_eq!(r.message(), "mutations are not allowed over GET; use POST");
        let m = serde_json::json!({ "query": "mutation { delete }" });
        assert_eq!(post(&p, m).unwrap(), 1);
        // Wrong content type, bad JSON, syntax errors, wrong method.
        let mut form = HeaderMap::new();
        form.insert(
            header::CONTENT_TYPE,
            "application/x-www-form-urlencoded".parse().unwrap(),
        );
        let u = Uri::from_static("/graphql");
        assert_eq!(
            p.check(&Method::POST, &u, &form, Some(b"{}"))
                .unwrap_err()
                .reason(),
            "bad_request"
        );
        assert_eq!(
            post(&p, serde_json::json!({ "query": 5 }))
                .unwrap_err()
                .reason(),
            "bad_request"
        );
        assert_eq!(query(&p, "{ a ").unwrap_err().reason(), "parse_error");
        assert_eq!(
            p.check(&Method::PUT, &u, &h, None).unwrap_err().reason(),
            "bad_request"
        );
        let mut gql = HeaderMap::new();
        gql.insert(
            header::CONTENT_TYPE,
            "application/graphql; charset=utf-8".parse().unwrap(),
        );
        assert_eq!(p.check(&Method::POST, &u, &gql, Some(b"{ a }")).unwrap(), 1);
        // Too large before parsing.
        let small = GraphqlPolicy {
            max_query_size: 10,
            ..policy()
        };
        assert_eq!(
            query(&small, "{ aaaaaaaaaaaaaaaa }").unwrap_err().reason(),
            "too_large"
        );
    }

    #[test]
    fn nesting_scan_ignores_strings_and_comments() {
        let q = format!(
            "{{ a(s: \"{}\", t: \"\"\"{}\"\"\") # {}\n }}",
            "{".repeat(500),
            "[".repeat(500),
            "(".repeat(500)
        );
        assert!(check_nesting(&q).is_ok());
        assert!(check_nesting(&"{".repeat(129)).is_err());
    }

    #[test]
    fn cached_documents_are_measured_with_each_requests_variables() {
        let p = policy();
        let q = "query($n: Int) { users(first: $n) { id } }";
        for (n, cost) in [(3, 4), (50, 51), (3, 4)] {
            let v = serde_json::json!({ "query": q, "variables": { "n": n } });
            assert_eq!(post(&p, v).unwrap(), cost);
        }
        let cache = p.cache.as_ref().unwrap();
        assert!(cache.get(&sha256(q.as_bytes())).is_some());
        // Refused documents are not kept; a refusal stays a refusal.
        let bad = "{ a { ...A } } fragment A on T { ...A }";
        for _ in 0..2 {
            assert_eq!(query(&p, bad).unwrap_err().reason(), "fragment_cycle");
        }
        assert!(query(&p, "{ a ").is_err());
        assert!(cache.get(&sha256(b"{ a ")).is_none());
        // Without the cache, the same answers.
        let nc = GraphqlPolicy {
            cache: None,
            ..policy()
        };
        let v = serde_json::json!({ "query": q, "variables": { "n": 50 } });
        assert_eq!(post(&nc, v).unwrap(), 51);
    }

    #[test]
    fn every_reason_has_a_distinct_name() {
        let mut names: Vec<_> = Reason::ALL.iter().map(|r| r.as_str()).collect();
        names.sort();
        names.dedup();
        assert_eq!(names.len(), Reason::ALL.len());
    }
}
