//! A streaming structural scanner for JSON bodies: enforces depth, size,
//! keys-per-object and string-length limits on bytes as they arrive.
//!
//! It owns the limits only, not the syntax: it tracks strings, escapes and
//! nesting with a state machine (no recursion, memory bounded by the depth
//! limit), so a document that breaks a limit is refused at the byte that
//! breaks it, before the rest is read. Whether the text is valid JSON is
//! decided afterwards by `serde_json` on the complete (already bounded) body,
//! through [`parse_strict`], which also refuses duplicate keys: parsers
//! disagree on which copy wins, so a schema checked on one copy must not let
//! the upstream read the other.

use std::fmt;

use serde::de::{self, Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_json::{Map, Value};

/// The JSON limits of a route.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct JsonLimits {
    /// Largest body in bytes.
    pub max_body: u64,
    /// Deepest nesting of arrays and objects (the top-level value is depth 1).
    pub max_depth: usize,
    /// Most members in any one object.
    pub max_keys: usize,
    /// Longest string (keys included), in bytes as sent (escapes count as written).
    pub max_string: usize,
}

impl Default for JsonLimits {
    fn default() -> Self {
        JsonLimits {
            max_body: 1024 * 1024,
            max_depth: 32,
            max_keys: 1000,
            max_string: 64 * 1024,
        }
    }
}

/// The limit a document broke.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LimitError {
    Body,
    Depth,
    Keys,
    String,
}

impl LimitError {
    /// The rule name reported to clients.
    pub fn rule(self) -> &'static str {
        match self {
            LimitError::Body => "max_body",
            LimitError::Depth => "max_depth",
            LimitError::Keys => "max_keys",
            LimitError::String => "max_string",
        }
    }
}

/// One open container.
#[derive(Debug, Clone, Copy)]
enum Frame {
    Array,
    /// An object and the number of keys seen so far.
    Object(usize),
}

/// Scanner state between chunks.
#[derive(Debug)]
pub struct Scanner {
    limits: JsonLimits,
    seen: u64,
    stack: Vec<Frame>,
    in_string: bool,
    escape: bool,
    string_len: usize,
    /// Inside an object, the next string is a key.
    expect_key: bool,
}

impl Scanner {
    pub fn new(limits: JsonLimits) -> Scanner {
        Scanner {
            limits,
            seen: 0,
            stack: Vec::new(),
            in_string: false,
            escape: false,
            string_len: 0,
            expect_key: false,
        }
    }

    /// Bytes scanned so far.
    pub fn seen(&self) -> u64 {
        self.seen
    }

    /// Scans the next chunk; the first broken limit is returned and the
    /// scanner should not be fed again.
    pub fn feed(&mut self, chunk: &[u8]) -> Result<(), LimitError> {
        self.seen = self.seen.saturating_add(chunk.len() as u64);
        if self.seen > self.limits.max_body {
            return Err(LimitError::Body);
        }
        for &b in chunk {
            if self.in_string {
                if self.escape {
                    self.escape = false;
                } else if b == b'\\' {
                    self.escape = true;
                } else if b == b'"' {
                    self.in_string = false;
                    continue;
                }
                self.string_len += 1;
                if self.string_len > self.limits.max_string {
                    return Err(LimitError::String);
                }
                continue;
            }
            match b {
                b'"' => {
                    self.in_string = true;
                    self.string_len = 0;
                    if self.expect_key {
                        self.expect_key = false;
                        if let Some(Frame::Object(n)) = self.stack.last_mut() {
                            *n += 1;
                            if *n > self.limits.max_keys {
                                return Err(LimitError::Keys);
                            }
                        }
                    }
                }
                b'{' | b'[' => {
                    if self.stack.len() >= self.limits.max_depth {
                        return Err(LimitError::Depth);
                    }
                    if b == b'{' {
                        self.stack.push(Frame::Object(0));
                        self.expect_key = true;
                    } else {
                        self.stack.push(Frame::Array);
                        self.expect_key = false;
                    }
                }
                b'}' | b']' => {
                    self.stack.pop();
                    self.expect_key = false;
                }
                b',' => {
                    self.expect_key = matches!(self.stack.last(), Some(Frame::Object(_)));
                }
                _ => {}
            }
        }
        Ok(())
    }
}

/// Parses JSON into a `Value`, refusing an object that repeats a key (a data error).
pub fn parse_strict(data: &[u8]) -> Result<Value, serde_json::Error> {
    serde_json::from_slice::<Strict>(data).map(|s| s.0)
}

struct Strict(Value);

impl<'de> Deserialize<'de> for Strict {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Strict, D::Error> {
        d.deserialize_any(StrictVisitor)
    }
}

struct StrictVisitor;

impl<'de> Visitor<'de> for StrictVisitor {
    type Value = Strict;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON value")
    }
    fn visit_bool<E>(self, v: bool) -> Result<Strict, E> {
        Ok(Strict(Value::Bool(v)))
    }
    fn visit_i64<E>(self, v: i64) -> Result<Strict, E> {
        Ok(Strict(Value::from(v)))
    }
    fn visit_u64<E>(self, v: u64) -> Result<Strict, E> {
        Ok(Strict(Value::from(v)))
    }
    fn visit_f64<E>(self, v: f64) -> Result<Strict, E> {
        Ok(Strict(
            serde_json::Number::from_f64(v).map_or(Value::Null, Value::Number),
        ))
    }
    fn visit_str<E>(self, v: &str) -> Result<Strict, E> {
        Ok(Strict(Value::String(v.to_owned())))
    }
    fn visit_string<E>(self, v: String) -> Result<Strict, E> {
        Ok(Strict(Value::String(v)))
    }
    fn visit_unit<E>(self) -> Result<Strict, E> {
        Ok(Strict(Value::Null))
    }
    fn visit_none<E>(self) -> Result<Strict, E> {
        Ok(Strict(Value::Null))
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Strict, A::Error> {
        let mut out = Vec::with_capacity(seq.size_hint().unwrap_or(0).min(64));
        while let Some(Strict(v)) = seq.next_element()? {
            out.push(v);
        }
        Ok(Strict(Value::Array(out)))
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Strict, A::Error> {
        let mut out = Map::new();
        while let Some(k) = map.next_key::<String>()? {
            if out.contains_key(&k) {
                return Err(de::Error::custom("duplicate key"));
            }
            let Strict(v) = map.next_value()?;
            out.insert(k, v);
        }
        Ok(Strict(Value::Object(out)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits() -> JsonLimits {
        JsonLimits {
            max_body: 1024,
            max_depth: 4,
            max_keys: 3,
            max_string: 8,
        }
    }

    fn scan(doc: &str) -> Result<(), LimitError> {
        Scanner::new(limits()).feed(doc.as_bytes())
    }

    #[test]
    fn within_limits() {
        assert_eq!(scan(r#"{"a":[1,{"b":[true]}],"c":"12345678"}"#), Ok(()));
        assert_eq!(scan(r#"[[[["x"]]]]"#), Ok(()));
    }

    #[test]
    fn depth_counts_arrays_and_objects() {
        assert_eq!(scan(r#"[[[[[1]]]]]"#), Err(LimitError::Depth));
        assert_eq!(
            scan(r#"{"a":{"b":{"c":{"d":{}}}}}"#),
            Err(LimitError::Depth)
        );
        // Brackets inside strings are text.
        assert_eq!(scan(r#"["[[[[[[[[["]"#), Err(LimitError::String));
        assert_eq!(scan(r#"["[[[[[["]"#), Ok(()));
    }

    #[test]
    fn deep_document_refused_early_without_recursion() {
        let mut s = Scanner::new(JsonLimits {
            max_body: u64::MAX,
            ..limits()
        });
        let deep = vec![b'['; 100_000];
        assert_eq!(s.feed(&deep[..3]), Ok(()));
        assert_eq!(s.feed(&deep[3..]), Err(LimitError::Depth));
        assert!(s.stack.len() <= 4);
    }

    #[test]
    fn keys_are_counted_per_object() {
        assert_eq!(scan(r#"{"a":1,"b":2,"c":3}"#), Ok(()));
        assert_eq!(scan(r#"{"a":1,"b":2,"c":3,"d":4}"#), Err(LimitError::Keys));
        // Three keys in each of two objects is fine; values that are strings are not keys.
        assert_eq!(
            scan(r#"{"a":"x","b":{"a":"y","b":1,"c":2},"c":["p","q","r","s"]}"#),
            Ok(())
        );
    }

    #[test]
    fn string_length_and_escapes_across_chunks() {
        let mut s = Scanner::new(limits());
        assert_eq!(s.feed(br#"{"k":"ab\"#), Ok(()));
        // The escaped quote does not end the string.
        assert_eq!(s.feed(br#""cdef"}"#), Ok(()));
        let mut s = Scanner::new(limits());
        assert_eq!(s.feed(br#"["12345"#), Ok(()));
        assert_eq!(s.feed(br#"6789"]"#), Err(LimitError::String));
    }

    #[test]
    fn body_size_is_counted_per_chunk() {
        let mut s = Scanner::new(JsonLimits {
            max_body: 10,
            ..limits()
        });
        assert_eq!(s.feed(b"[1,2,3,"), Ok(()));
        assert_eq!(s.seen(), 7);
        assert_eq!(s.feed(b"4,5]"), Err(LimitError::Body));
    }

    #[test]
    fn strict_parse_refuses_duplicate_keys() {
        let v = parse_strict(br#"{"a":[1,2.5,"x",null,true],"b":{"c":{}}}"#).unwrap();
        assert_eq!(
            v,
            serde_json::json!({"a":[1,2.5,"x",null,true],"b":{"c":{}}})
        );
        let e = parse_strict(br#"{"age":5,"age":"x"}"#).unwrap_err();
        assert!(e.is_data(), "{e}");
        assert!(parse_strict(br#"[{"k":1},{"k":2}]"#).is_ok());
        assert!(parse_strict(br#"{"a":{"k":1,"k":2}}"#)
            .unwrap_err()
            .is_data());
        assert!(parse_strict(b"[1,").unwrap_err().is_eof());
        assert!(parse_strict(b"[1} ").unwrap_err().is_syntax());
    }

    #[test]
    fn garbage_never_panics() {
        for doc in ["}}}]]]", "\"\\", "{,,,,\"a\"", "]{[", "\u{0}\u{ff}"] {
            let _ = scan(doc);
        }
    }
}
