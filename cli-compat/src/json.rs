//! JSON as `af` (Ruby's `json` 2.6) sees it: objects keep the order the server sent their keys
//! in, numbers stay integers or floats as written, and every value prints the way Ruby prints it
//! (`to_s` in tables, `inspect` inside messages, `JSON.pretty_generate` for `--json`).
//!
//! `serde_json::Value` sorts object keys (the workspace does not enable `preserve_order`, and
//! turning it on would change the emulator's own output), so the client keeps its own small tree.

use std::fmt::Write as _;

use serde::de::{self, Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};
use serde::ser::{Serialize, SerializeMap, SerializeSeq, Serializer};

/// One JSON value, with object keys in document order.
#[derive(Clone, Debug, PartialEq, Default)]
pub enum Json {
    #[default]
    Null,
    Bool(bool),
    Int(i64),
    Float(f64),
    Str(String),
    Array(Vec<Json>),
    Object(Vec<(String, Json)>),
}

static NULL: Json = Json::Null;

impl Json {
    /// Parses a JSON text as Ruby's `JSON.parse` would (an empty text is an error).
    pub fn parse(text: &str) -> Result<Json, serde_json::Error> {
        serde_json::from_str(text)
    }

    pub fn object() -> Json {
        Json::Object(Vec::new())
    }

    pub fn str(value: impl Into<String>) -> Json {
        Json::Str(value.into())
    }

    /// `hash[key]`, or `Null` when this is not an object or has no such key.
    pub fn get(&self, key: &str) -> &Json {
        match self {
            Json::Object(pairs) => pairs
                .iter()
                .find(|(k, _)| k == key)
                .map_or(&NULL, |(_, v)| v),
            _ => &NULL,
        }
    }

    /// `hash[key]` for writing; turns `Null` into an empty object first, like a Ruby `||= {}`.
    pub fn get_mut(&mut self, key: &str) -> Option<&mut Json> {
        match self {
            Json::Object(pairs) => pairs.iter_mut().find(|(k, _)| k == key).map(|(_, v)| v),
            _ => None,
        }
    }

    /// `hash[key] = value`: replaces in place (keeping the key's position) or appends.
    pub fn set(&mut self, key: &str, value: Json) {
        if !matches!(self, Json::Object(_)) {
            *self = Json::object();
        }
        if let Json::Object(pairs) = self {
            match pairs.iter_mut().find(|(k, _)| k == key) {
                Some((_, slot)) => *slot = value,
                None => pairs.push((key.to_owned(), value)),
            }
        }
    }

    pub fn remove(&mut self, key: &str) -> Option<Json> {
        match self {
            Json::Object(pairs) => {
                let index = pairs.iter().position(|(k, _)| k == key)?;
                Some(pairs.remove(index).1)
            }
            _ => None,
        }
    }

    pub fn contains_key(&self, key: &str) -> bool {
        matches!(self, Json::Object(pairs) if pairs.iter().any(|(k, _)| k == key))
    }

    /// Ruby truthiness: everything but `nil` and `false`.
    pub fn truthy(&self) -> bool {
        !matches!(self, Json::Null | Json::Bool(false))
    }

    pub fn is_null(&self) -> bool {
        matches!(self, Json::Null)
    }

    pub fn as_str(&self) -> Option<&str> {
        match self {
            Json::Str(s) => Some(s),
            _ => None,
        }
    }

    pub fn as_i64(&self) -> Option<i64> {
        match self {
            Json::Int(i) => Some(*i),
            _ => None,
        }
    }

    /// A number as a float (`to_f`), integers included.
    pub fn as_f64(&self) -> Option<f64> {
        match self {
            Json::Int(i) => Some(*i as f64),
            Json::Float(f) => Some(*f),
            _ => None,
        }
    }

    pub fn as_array(&self) -> Option<&Vec<Json>> {
        match self {
            Json::Array(items) => Some(items),
            _ => None,
        }
    }

    pub fn as_array_mut(&mut self) -> Option<&mut Vec<Json>> {
        match self {
            Json::Array(items) => Some(items),
            _ => None,
        }
    }

    pub fn as_object(&self) -> Option<&Vec<(String, Json)>> {
        match self {
            Json::Object(pairs) => Some(pairs),
            _ => None,
        }
    }

    /// The elements of an array; nothing for anything else.
    pub fn items(&self) -> &[Json] {
        match self {
            Json::Array(items) => items,
            _ => &[],
        }
    }

    /// Ruby's `to_s`: strings bare, `nil` empty, numbers as Ruby prints them, collections as
    /// `inspect`.
    pub fn to_ruby_s(&self) -> String {
        match self {
            Json::Null => String::new(),
            Json::Str(s) => s.clone(),
            other => other.inspect(),
        }
    }

    /// Ruby's `inspect` of the value `JSON.parse(…, symbolize_names: true)` returns.
    pub fn inspect(&self) -> String {
        match self {
            Json::Null => "nil".into(),
            Json::Bool(b) => b.to_string(),
            Json::Int(i) => i.to_string(),
            Json::Float(f) => ruby_float(*f),
            Json::Str(s) => inspect_str(s),
            Json::Array(items) => {
                let inner: Vec<String> = items.iter().map(Json::inspect).collect();
                format!("[{}]", inner.join(", "))
            }
            Json::Object(pairs) => {
                let inner: Vec<String> = pairs
                    .iter()
                    .map(|(k, v)| format!("{}=>{}", inspect_symbol(k), v.inspect()))
                    .collect();
                format!("{{{}}}", inner.join(", "))
            }
        }
    }

    /// `JSON.generate`: compact, keys in order.
    pub fn compact(&self) -> String {
        let mut out = String::new();
        self.write(&mut out, None, 0);
        out
    }

    /// `JSON.pretty_generate` of af's `json/pure`: two-space indent, `"key": value`; an empty
    /// array is `[`, two newlines, the indent and `]`, an empty object `{`, a newline and `}`.
    pub fn pretty(&self) -> String {
        let mut out = String::new();
        self.write(&mut out, Some("  "), 0);
        out
    }

    fn write(&self, out: &mut String, indent: Option<&str>, depth: usize) {
        let newline = |out: &mut String, depth: usize| {
            if let Some(unit) = indent {
                out.push('\n');
                for _ in 0..depth {
                    out.push_str(unit);
                }
            }
        };
        match self {
            Json::Null => out.push_str("null"),
            Json::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
            Json::Int(i) => {
                let _ = write!(out, "{i}");
            }
            Json::Float(f) => out.push_str(&ruby_float(*f)),
            Json::Str(s) => out.push_str(&serde_json::to_string(s).unwrap_or_default()),
            Json::Array(items) => {
                if items.is_empty() {
                    out.push('[');
                    if indent.is_some() {
                        out.push('\n');
                        newline(out, depth);
                    }
                    out.push(']');
                    return;
                }
                out.push('[');
                for (i, item) in items.iter().enumerate() {
                    if i > 0 {
                        out.push(',');
                    }
                    newline(out, depth + 1);
                    item.write(out, indent, depth + 1);
                }
                newline(out, depth);
                out.push(']');
            }
            Json::Object(pairs) => {
                if pairs.is_empty() {
                    out.push_str(if indent.is_some() { "{\n}" } else { "{}" });
                    return;
                }
                out.push('{');
                for (i, (key, value)) in pairs.iter().enumerate() {
                    if i > 0 {
                        out.push(',');
                    }
                    newline(out, depth + 1);
                    out.push_str(&serde_json::to_string(key).unwrap_or_default());
                    out.push(':');
                    if indent.is_some() {
                        out.push(' ');
                    }
                    value.write(out, indent, depth + 1);
                }
                newline(out, depth);
                out.push('}');
            }
        }
    }
}

impl From<&str> for Json {
    fn from(s: &str) -> Json {
        Json::Str(s.to_owned())
    }
}

impl From<String> for Json {
    fn from(s: String) -> Json {
        Json::Str(s)
    }
}

impl From<i64> for Json {
    fn from(i: i64) -> Json {
        Json::Int(i)
    }
}

impl From<bool> for Json {
    fn from(b: bool) -> Json {
        Json::Bool(b)
    }
}

impl From<Option<String>> for Json {
    fn from(s: Option<String>) -> Json {
        s.map_or(Json::Null, Json::Str)
    }
}

impl From<&serde_json::Value> for Json {
    fn from(value: &serde_json::Value) -> Json {
        match value {
            serde_json::Value::Null => Json::Null,
            serde_json::Value::Bool(b) => Json::Bool(*b),
            serde_json::Value::Number(n) => match n.as_i64() {
                Some(i) => Json::Int(i),
                None => Json::Float(n.as_f64().unwrap_or(0.0)),
            },
            serde_json::Value::String(s) => Json::Str(s.clone()),
            serde_json::Value::Array(items) => Json::Array(items.iter().map(Json::from).collect()),
            serde_json::Value::Object(map) => Json::Object(
                map.iter()
                    .map(|(k, v)| (k.clone(), Json::from(v)))
                    .collect(),
            ),
        }
    }
}

/// Ruby's `Float#to_s`: the shortest representation that reads back, with `.0` on whole numbers
/// and scientific notation (`1.0e+20`) below 1e-4 and from 1e16 on.
pub fn ruby_float(f: f64) -> String {
    if f.is_nan() {
        return "NaN".into();
    }
    if f.is_infinite() {
        return if f > 0.0 { "Infinity" } else { "-Infinity" }.into();
    }
    if f == 0.0 {
        return if f.is_sign_negative() { "-0.0" } else { "0.0" }.into();
    }
    let magnitude = f.abs();
    if (1e-4..1e16).contains(&magnitude) {
        let s = format!("{f}");
        if s.contains('.') { s } else { format!("{s}.0") }
    } else {
        // Rust's `{:e}` gives the shortest digits too: `1e20`, `1.5e-7`.
        let s = format!("{f:e}");
        let (mantissa, exponent) = s.split_once('e').unwrap_or((&s, "0"));
        let mantissa = if mantissa.contains('.') {
            mantissa.to_owned()
        } else {
            format!("{mantissa}.0")
        };
        let exponent: i32 = exponent.parse().unwrap_or(0);
        let sign = if exponent < 0 { '-' } else { '+' };
        format!("{mantissa}e{sign}{:02}", exponent.abs())
    }
}

/// Ruby's `String#inspect` for the common cases.
pub fn inspect_str(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            '\r' => out.push_str("\\r"),
            '\u{1b}' => out.push_str("\\e"),
            '#' => out.push('#'),
            c if (c as u32) < 0x20 => {
                let _ = write!(out, "\\x{:02X}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// A symbol key as Ruby 3.1 inspects it: `:name`, or `:"odd key"`.
fn inspect_symbol(key: &str) -> String {
    let simple = key
        .chars()
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && key.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
    if simple {
        format!(":{key}")
    } else {
        format!(":{}", inspect_str(key))
    }
}

impl<'de> Deserialize<'de> for Json {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Json, D::Error> {
        struct JsonVisitor;

        impl<'de> Visitor<'de> for JsonVisitor {
            type Value = Json;

            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("any JSON value")
            }

            fn visit_bool<E: de::Error>(self, b: bool) -> Result<Json, E> {
                Ok(Json::Bool(b))
            }

            fn visit_i64<E: de::Error>(self, i: i64) -> Result<Json, E> {
                Ok(Json::Int(i))
            }

            fn visit_u64<E: de::Error>(self, u: u64) -> Result<Json, E> {
                Ok(i64::try_from(u).map_or(Json::Float(u as f64), Json::Int))
            }

            fn visit_f64<E: de::Error>(self, f: f64) -> Result<Json, E> {
                Ok(Json::Float(f))
            }

            fn visit_str<E: de::Error>(self, s: &str) -> Result<Json, E> {
                Ok(Json::Str(s.to_owned()))
            }

            fn visit_string<E: de::Error>(self, s: String) -> Result<Json, E> {
                Ok(Json::Str(s))
            }

            fn visit_unit<E: de::Error>(self) -> Result<Json, E> {
                Ok(Json::Null)
            }

            fn visit_none<E: de::Error>(self) -> Result<Json, E> {
                Ok(Json::Null)
            }

            fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Json, D::Error> {
                Json::deserialize(d)
            }

            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Json, A::Error> {
                let mut items = Vec::new();
                while let Some(item) = seq.next_element()? {
                    items.push(item);
                }
                Ok(Json::Array(items))
            }

            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Json, A::Error> {
                let mut pairs: Vec<(String, Json)> = Vec::new();
                while let Some((key, value)) = map.next_entry::<String, Json>()? {
                    // A repeated key keeps its first position and its last value, like a Hash.
                    match pairs.iter_mut().find(|(k, _)| *k == key) {
                        Some((_, slot)) => *slot = value,
                        None => pairs.push((key, value)),
                    }
                }
                Ok(Json::Object(pairs))
            }
        }

        deserializer.deserialize_any(JsonVisitor)
    }
}

impl Serialize for Json {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match self {
            Json::Null => serializer.serialize_unit(),
            Json::Bool(b) => serializer.serialize_bool(*b),
            Json::Int(i) => serializer.serialize_i64(*i),
            Json::Float(f) => serializer.serialize_f64(*f),
            Json::Str(s) => serializer.serialize_str(s),
            Json::Array(items) => {
                let mut seq = serializer.serialize_seq(Some(items.len()))?;
                for item in items {
                    seq.serialize_element(item)?;
                }
                seq.end()
            }
            Json::Object(pairs) => {
                let mut map = serializer.serialize_map(Some(pairs.len()))?;
                for (k, v) in pairs {
                    map.serialize_entry(k, v)?;
                }
                map.end()
            }
        }
    }
}

/// Builds a [`Json::Object`] from `key => value` pairs, keeping their order.
#[macro_export]
macro_rules! json_object {
    ($($key:expr => $value:expr),* $(,)?) => {
        $crate::json::Json::Object(vec![$(($key.to_string(), $crate::json::Json::from($value))),*])
    };
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_keep_their_order() {
        let doc =
            Json::parse(r#"{"name":"a","uris":[],"instances":1,"meta":{"z":1,"a":2}}"#).unwrap();
        assert_eq!(
            doc.compact(),
            r#"{"name":"a","uris":[],"instances":1,"meta":{"z":1,"a":2}}"#
        );
    }

    #[test]
    fn pretty_is_ruby_pretty_generate() {
        let doc = Json::parse(r#"[{"a":1,"b":[],"c":{},"d":[1,2.5]}]"#).unwrap();
        assert_eq!(
            doc.pretty(),
            "[\n  {\n    \"a\": 1,\n    \"b\": [\n\n    ],\n    \"c\": {\n},\n    \"d\": [\n      1,\n      2.5\n    ]\n  }\n]"
        );
        assert_eq!(Json::Array(vec![]).pretty(), "[\n\n]");
        assert_eq!(Json::object().pretty(), "{\n}");
        assert_eq!(Json::Array(vec![]).compact(), "[]");
    }

    #[test]
    fn floats_print_like_ruby() {
        assert_eq!(ruby_float(0.999), "0.999");
        assert_eq!(ruby_float(1.0), "1.0");
        assert_eq!(ruby_float(20480.0), "20480.0");
        assert_eq!(ruby_float(1e20), "1.0e+20");
        assert_eq!(ruby_float(1.5e-7), "1.5e-07");
        assert_eq!(ruby_float(1e16), "1.0e+16");
        assert_eq!(ruby_float(0.0001), "0.0001");
    }

    #[test]
    fn inspect_is_ruby_inspect() {
        let doc = Json::parse(r#"{"provider":"aws","n":[1,null,true],"odd key":"x\"y"}"#).unwrap();
        assert_eq!(
            doc.inspect(),
            r#"{:provider=>"aws", :n=>[1, nil, true], :"odd key"=>"x\"y"}"#
        );
        assert_eq!(Json::Null.to_ruby_s(), "");
        assert_eq!(Json::Int(3).to_ruby_s(), "3");
    }

    #[test]
    fn set_replaces_in_place_and_appends() {
        let mut doc = Json::parse(r#"{"a":1,"b":2}"#).unwrap();
        doc.set("a", Json::Int(5));
        doc.set("c", Json::Null);
        assert_eq!(doc.compact(), r#"{"a":5,"b":2,"c":null}"#);
    }
}
