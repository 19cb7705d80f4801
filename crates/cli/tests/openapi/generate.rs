//! Requests made from the spec alone: for each operation a valid request (required parameters
//! and the body from the spec's examples, else sampled from their schemas), one more per optional
//! parameter, and invalid variants derived from the schemas (a required parameter or field
//! missing, a wrong type, a value outside `enum`, over `maxLength`, under `minLength` or
//! `minimum`, against `pattern`, an unknown field where `additionalProperties: false`, malformed
//! JSON). Every invalid variant is confirmed invalid by the schema's own validator before use.

use super::spec::{violations, In, Op, Param};
use serde_json::{json, Map, Value};
use std::collections::HashMap;

/// What a request is expected to be.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// The operation's example request: it should succeed.
    Example,
    /// Valid, with an optional parameter.
    Valid,
    /// Against the spec: must be refused (4xx), unless the fault is inside an array item
    /// (`per_item`: a batch answers per item).
    Invalid { per_item: bool },
}

/// One generated request.
#[derive(Debug, Clone)]
pub struct Req {
    pub label: String,
    pub kind: Kind,
    pub path_params: Vec<(String, String)>,
    pub query: Vec<(String, String)>,
    pub headers: Vec<(String, String)>,
    pub body: Option<Vec<u8>>,
}

impl Req {
    /// The path with its parameters filled in (percent-encoded).
    pub fn path(&self, template: &str) -> String {
        let mut p = template.to_string();
        for (name, value) in &self.path_params {
            p = p.replace(&format!("{{{name}}}"), &encode(value));
        }
        p
    }
}

/// `value` as one path segment.
fn encode(value: &str) -> String {
    let mut out = String::new();
    for b in value.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// A value for `schema` (JSON Schema with `$defs`): its default, first enum member, or one of
/// its type (at least `minLength`/`minimum`, all object properties filled).
pub fn sample(schema: &Value, root: &Value) -> Value {
    let s = resolve(schema, root);
    if let Some(d) = s.get("default") {
        return d.clone();
    }
    if let Some(e) = s
        .get("enum")
        .and_then(Value::as_array)
        .and_then(|e| e.first())
    {
        return e.clone();
    }
    if let Some(one) = s
        .get("oneOf")
        .and_then(Value::as_array)
        .and_then(|o| o.first())
    {
        return sample(one, root);
    }
    let ty = s.get("type").map(|t| match t {
        Value::Array(a) => a.first().and_then(Value::as_str).unwrap_or(""),
        t => t.as_str().unwrap_or(""),
    });
    match ty.unwrap_or("") {
        "string" => {
            let n = s
                .get("minLength")
                .and_then(Value::as_u64)
                .unwrap_or(1)
                .max(1);
            json!("x".repeat(n as usize))
        }
        "integer" | "number" => json!(s.get("minimum").and_then(Value::as_i64).unwrap_or(1)),
        "boolean" => json!(true),
        "array" => json!([sample(s.get("items").unwrap_or(&json!({})), root)]),
        "object" => {
            let mut m = Map::new();
            for (k, p) in s
                .get("properties")
                .and_then(Value::as_object)
                .into_iter()
                .flatten()
            {
                m.insert(k.clone(), sample(p, root));
            }
            Value::Object(m)
        }
        _ => Value::Null,
    }
}

/// `schema`, or what its `$ref` (into `root`'s `$defs`) points at.
fn resolve<'a>(schema: &'a Value, root: &'a Value) -> &'a Value {
    match schema.get("$ref").and_then(Value::as_str) {
        Some(r) => {
            let name = r.strip_prefix("#/$defs/").expect("a $defs reference");
            resolve(&root["$defs"][name], root)
        }
        None => schema,
    }
}

/// A parameter's value as text: its example, what an earlier answer taught (`learned`, by
/// name; optional parameters only, such as a listing's `continuation`), or a sample.
fn value_of(p: &Param, learned: &HashMap<String, String>) -> String {
    if let Some(v) = learned.get(&p.name).filter(|_| !p.required) {
        return v.clone();
    }
    let v = p
        .example
        .clone()
        .unwrap_or_else(|| sample(&p.schema, &p.schema));
    text(&v)
}

fn text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        v => v.to_string(),
    }
}

/// A parameter's text as the JSON value its schema would see (a number when it parses as one).
fn typed(p: &Param, raw: &str) -> Value {
    let ty = p.schema.get("type").and_then(Value::as_str).unwrap_or("");
    if matches!(ty, "integer" | "number") {
        if let Ok(n) = raw.parse::<i64>() {
            return json!(n);
        }
        if let Ok(n) = raw.parse::<f64>() {
            return json!(n);
        }
    }
    json!(raw)
}

fn base(op: &Op, learned: &HashMap<String, String>, with: Option<usize>) -> Req {
    let mut r = Req {
        label: String::new(),
        kind: Kind::Valid,
        path_params: Vec::new(),
        query: Vec::new(),
        headers: Vec::new(),
        body: None,
    };
    for (i, p) in op.params.iter().enumerate() {
        if !p.required && with != Some(i) && !op.example_params.contains(&p.name) {
            continue;
        }
        let v = value_of(p, learned);
        match p.at {
            In::Path => r.path_params.push((p.name.clone(), v)),
            In::Query => r.query.push((p.name.clone(), v)),
            In::Header => r.headers.push((p.name.clone(), v)),
        }
    }
    if let Some(b) = &op.body {
        let v = b
            .example
            .clone()
            .unwrap_or_else(|| sample(&b.schema, &b.schema));
        r.body = Some(serde_json::to_vec(&v).unwrap());
    }
    r
}

/// The example request of `op`.
pub fn example(op: &Op, learned: &HashMap<String, String>) -> Req {
    Req {
        label: "the example request".into(),
        kind: Kind::Example,
        ..base(op, learned, None)
    }
}

/// The example request plus optional parameter `i` (valid), for each optional parameter.
pub fn optional(op: &Op, i: usize, learned: &HashMap<String, String>) -> Option<Req> {
    let p = &op.params[i];
    if p.required {
        return None;
    }
    let mut r = base(op, learned, Some(i));
    r.label = format!("with {} {:?}", p.name, value_of(p, learned));
    Some(r)
}

/// Invalid variants of `op`'s example request.
pub fn invalid(op: &Op, learned: &HashMap<String, String>) -> Vec<Req> {
    let good = base(op, learned, None);
    let mut out = Vec::new();
    let bad = |label: String, per_item: bool, r: Req| Req {
        label,
        kind: Kind::Invalid { per_item },
        ..r
    };
    for p in &op.params {
        if p.required && p.at != In::Path {
            let mut r = good.clone();
            r.query.retain(|(n, _)| *n != p.name);
            r.headers.retain(|(n, _)| *n != p.name);
            out.push(bad(format!("without required {}", p.name), false, r));
        }
        for raw in wrong_values(p) {
            if violations(&p.schema, &typed(p, &raw)).is_none() {
                continue;
            }
            if p.at == In::Header && reqwest::header::HeaderValue::from_str(&raw).is_err() {
                continue;
            }
            let mut r = good.clone();
            let slot = match p.at {
                In::Path => &mut r.path_params,
                In::Query => &mut r.query,
                In::Header => &mut r.headers,
            };
            slot.retain(|(n, _)| *n != p.name);
            slot.push((p.name.clone(), raw.clone()));
            let shown: String = raw.chars().take(24).collect();
            out.push(bad(
                format!(
                    "{} {} = {shown:?} ({} chars)",
                    loc(p.at),
                    p.name,
                    raw.chars().count()
                ),
                false,
                r,
            ));
        }
    }
    if let Some(b) = &op.body {
        let example = b
            .example
            .clone()
            .unwrap_or_else(|| sample(&b.schema, &b.schema));
        let mut variants = Vec::new();
        body_variants(
            &b.schema,
            &b.schema,
            &example,
            "",
            false,
            &mut |what, v, per_item| variants.push((what, v, per_item)),
        );
        for (what, v, per_item) in variants {
            if violations(&b.schema, &v).is_some() {
                let mut r = good.clone();
                r.body = Some(serde_json::to_vec(&v).unwrap());
                out.push(bad(format!("body: {what}"), per_item, r));
            }
        }
        let mut r = good.clone();
        r.body = Some(b"{\"unterminated".to_vec());
        out.push(bad("body: malformed JSON".into(), false, r));
        if b.required {
            let mut r = good.clone();
            r.body = Some(Vec::new());
            out.push(bad("body: missing (required)".into(), false, r));
        }
    }
    out
}

fn loc(at: In) -> &'static str {
    match at {
        In::Path => "path",
        In::Query => "query",
        In::Header => "header",
    }
}

/// Values a parameter's schema may refuse (each is checked against it before use).
fn wrong_values(p: &Param) -> Vec<String> {
    let s = &p.schema;
    let mut v = Vec::new();
    let ty = s.get("type").and_then(Value::as_str).unwrap_or("");
    if matches!(ty, "integer" | "number" | "boolean") {
        v.push("not-a-number".into());
    }
    if ty == "integer" {
        v.push("1.5".into());
    }
    if let Some(min) = s.get("minimum").and_then(Value::as_i64) {
        v.push((min - 1).to_string());
    }
    if let Some(max) = s.get("maximum").and_then(Value::as_i64) {
        v.push((max + 1).to_string());
    }
    if let Some(n) = s.get("maxLength").and_then(Value::as_u64) {
        v.push("x".repeat(n as usize + 1));
    }
    if s.get("minLength").and_then(Value::as_u64).unwrap_or(0) > 0 && p.at != In::Path {
        v.push(String::new());
    }
    if s.get("enum").is_some() {
        v.push("not-a-listed-value".into());
    }
    if s.get("pattern").is_some() {
        // the first that breaks the pattern is enough
        if let Some(x) = ["a b", "a!", "ä", "a/b", "a\u{1}b"]
            .into_iter()
            .find(|x| violations(s, &json!(x)).is_some())
        {
            v.push(x.into());
        }
    }
    v
}

/// A value of another JSON type than `schema` allows.
fn wrong_type(schema: &Value) -> Option<Value> {
    let ty = match schema.get("type")? {
        Value::Array(a) => a.first()?.as_str()?.to_string(),
        t => t.as_str()?.to_string(),
    };
    Some(match ty.as_str() {
        "string" => json!(12345),
        "array" | "object" | "integer" | "number" | "boolean" => json!("not-the-type"),
        _ => return None,
    })
}

/// Calls `emit(what, body, per_item)` for each invalid variant of `value` (which matches
/// `schema`): at this level and, recursively, in object properties and the first array item.
fn body_variants(
    schema: &Value,
    root: &Value,
    value: &Value,
    at: &str,
    per_item: bool,
    emit: &mut dyn FnMut(String, Value, bool),
) {
    let s = resolve(schema, root);
    if let Some(w) = wrong_type(s) {
        emit(format!("{} of the wrong type", name(at)), w, per_item);
    }
    if let Some(n) = s.get("maxLength").and_then(Value::as_u64) {
        emit(
            format!("{} over maxLength {n}", name(at)),
            json!("x".repeat(n as usize + 1)),
            per_item,
        );
    }
    if s.get("enum").is_some() {
        emit(
            format!("{} not in enum", name(at)),
            json!("not-a-listed-value"),
            per_item,
        );
    }
    match value {
        Value::Object(m) => {
            let props = s.get("properties").and_then(Value::as_object);
            for r in s
                .get("required")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
            {
                let r = r.as_str().unwrap_or_default();
                let mut m2 = m.clone();
                if m2.remove(r).is_some() {
                    emit(
                        format!("{} without required field {r:?}", name(at)),
                        Value::Object(m2),
                        per_item,
                    );
                }
            }
            if s.get("additionalProperties") == Some(&Value::Bool(false)) {
                let mut m2 = m.clone();
                m2.insert("unexpectedField".into(), json!(1));
                emit(
                    format!("{} with an unknown field", name(at)),
                    Value::Object(m2),
                    per_item,
                );
            }
            for (k, p) in props.into_iter().flatten() {
                let Some(inner) = m.get(k) else { continue };
                let path = format!("{at}.{k}");
                body_variants(p, root, inner, &path, per_item, &mut |what, v, pi| {
                    let mut m2 = m.clone();
                    m2.insert(k.clone(), v);
                    emit(what, Value::Object(m2), pi);
                });
            }
        }
        Value::Array(a) => {
            if let (Some(items), Some(first)) = (s.get("items"), a.first()) {
                let path = format!("{at}[0]");
                body_variants(items, root, first, &path, true, &mut |what, v, pi| {
                    let mut a2 = a.clone();
                    a2[0] = v;
                    emit(what, Value::Array(a2), pi);
                });
            }
        }
        _ => {}
    }
}

fn name(at: &str) -> String {
    if at.is_empty() {
        "the body".into()
    } else {
        format!("field {}", at.trim_start_matches('.'))
    }
}
