//! `docs/api/openapi.yaml` read for the test: its operations with their parameters (references
//! resolved), request bodies and responses, and its schemas turned into JSON Schema (2020-12)
//! validators.
//!
//! OpenAPI 3.0 schemas are nearly JSON Schema; the differences handled: `nullable: true` becomes
//! a `null` member of `type` (or `enum`), `#/components/schemas/X` references point into `$defs`,
//! `example` is dropped. Answers are validated strictly: an object schema that lists its
//! `properties` and says nothing of `additionalProperties` is closed, so a field the node
//! answers but the spec does not describe is a mismatch.

use openapiv3::{
    MediaType, OpenAPI, Operation, Parameter, ParameterData, ParameterSchemaOrContent, ReferenceOr,
    RequestBody, Response, SecurityRequirement,
};
use serde_json::{json, Map, Value};
use std::collections::BTreeMap;

/// Where a parameter goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum In {
    Path,
    Query,
    Header,
}

/// One parameter of an operation, resolved.
#[derive(Debug, Clone)]
pub struct Param {
    pub name: String,
    pub at: In,
    pub required: bool,
    /// Its schema as JSON Schema (request side).
    pub schema: Value,
    /// Its example (the parameter's or its schema's), if any.
    pub example: Option<Value>,
}

/// One operation of the spec.
#[derive(Debug, Clone)]
pub struct Op {
    pub id: String,
    pub method: String,
    pub path: String,
    pub params: Vec<Param>,
    /// The JSON request body: required, schema (request side), example.
    pub body: Option<Body>,
    /// Declared responses by status (`"200"`, `"4XX"`, `"default"`).
    pub responses: BTreeMap<String, Answer>,
    /// Needs a token (the effective `security` is not empty).
    pub secured: bool,
    /// The least role a token needs (`x-perdure-role`), when secured.
    pub role: Option<String>,
    /// Optional parameters the example request carries (`x-perdure-example-params`: an
    /// operation that needs one of several optional parameters, e.g. a purge by filter).
    pub example_params: Vec<String>,
}

/// A JSON request body.
#[derive(Debug, Clone)]
pub struct Body {
    pub required: bool,
    pub schema: Value,
    pub example: Option<Value>,
}

/// A declared response.
#[derive(Debug, Clone)]
pub struct Answer {
    /// Media type (as declared, parameters included) → response schema (JSON Schema).
    pub content: Vec<(String, Value)>,
    /// Header name (lower case) → (required, schema).
    pub headers: Vec<(String, bool, Value)>,
}

/// The spec, loaded.
pub struct Spec {
    /// The YAML as JSON, before the OpenAPI model dropped anything it does not know.
    pub raw: Value,
    pub api: OpenAPI,
    pub ops: Vec<Op>,
    /// Converted component schemas for requests and for answers (closed objects).
    defs_request: Value,
    defs_answer: Value,
}

/// Which side a schema describes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Side {
    Request,
    Answer,
}

pub const SPEC_PATH: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../docs/api/openapi.yaml");

impl Spec {
    /// Reads and resolves `yaml`.
    pub fn parse(yaml: &str) -> Spec {
        let raw: Value = serde_yaml_ng::from_str(yaml).expect("openapi.yaml is YAML");
        let api: OpenAPI =
            serde_json::from_value(raw.clone()).expect("openapi.yaml is OpenAPI 3.0");
        let components = api.components.clone().unwrap_or_default();
        let defs = |side| -> Value {
            let mut m = Map::new();
            for (name, s) in &components.schemas {
                m.insert(name.clone(), convert(&to_json(s), side));
            }
            Value::Object(m)
        };
        let (defs_request, defs_answer) = (defs(Side::Request), defs(Side::Answer));
        let mut spec = Spec {
            raw,
            ops: Vec::new(),
            defs_request,
            defs_answer,
            api,
        };
        spec.ops = spec.operations();
        spec
    }

    /// The spec in the repository.
    pub fn load() -> Spec {
        let yaml = std::fs::read_to_string(SPEC_PATH).expect("docs/api/openapi.yaml");
        Spec::parse(&yaml)
    }

    fn operations(&self) -> Vec<Op> {
        let mut ops = Vec::new();
        for (path, item) in self.api.paths.iter() {
            let item = match item {
                ReferenceOr::Item(i) => i,
                ReferenceOr::Reference { reference } => panic!("path {path}: $ref {reference}"),
            };
            for (method, op) in item.iter() {
                let mut params: Vec<Param> = Vec::new();
                for p in item.parameters.iter().chain(&op.parameters) {
                    let p = self.param(p);
                    params.retain(|q| !(q.name == p.name && q.at == p.at));
                    params.push(p);
                }
                ops.push(Op {
                    id: op
                        .operation_id
                        .clone()
                        .unwrap_or_else(|| format!("{method} {path}")),
                    method: method.to_ascii_uppercase(),
                    path: path.clone(),
                    params,
                    body: op.request_body.as_ref().and_then(|b| self.body(b)),
                    responses: self.responses(op),
                    secured: self.secured(op),
                    role: op
                        .extensions
                        .get("x-perdure-role")
                        .and_then(Value::as_str)
                        .map(str::to_string),
                    example_params: op
                        .extensions
                        .get("x-perdure-example-params")
                        .and_then(Value::as_array)
                        .map(|a| {
                            a.iter()
                                .filter_map(Value::as_str)
                                .map(str::to_string)
                                .collect()
                        })
                        .unwrap_or_default(),
                });
            }
        }
        ops
    }

    fn secured(&self, op: &Operation) -> bool {
        let effective: &Vec<SecurityRequirement> = match &op.security {
            Some(s) => s,
            None => match &self.api.security {
                Some(s) => s,
                None => return false,
            },
        };
        !effective.is_empty() && effective.iter().all(|r| !r.is_empty())
    }

    fn param(&self, p: &ReferenceOr<Parameter>) -> Param {
        let p = match p {
            ReferenceOr::Item(p) => p.clone(),
            ReferenceOr::Reference { reference } => {
                let name = component(reference, "parameters");
                self.components()
                    .parameters
                    .get(name)
                    .and_then(ReferenceOr::as_item)
                    .unwrap_or_else(|| panic!("unresolved {reference}"))
                    .clone()
            }
        };
        let (at, data): (In, &ParameterData) = match &p {
            Parameter::Path { parameter_data, .. } => (In::Path, parameter_data),
            Parameter::Query { parameter_data, .. } => (In::Query, parameter_data),
            Parameter::Header { parameter_data, .. } => (In::Header, parameter_data),
            Parameter::Cookie { .. } => panic!("cookie parameters are not used"),
        };
        let schema = match &data.format {
            ParameterSchemaOrContent::Schema(s) => to_json(s),
            ParameterSchemaOrContent::Content(_) => panic!("{}: content parameters", data.name),
        };
        let example = data
            .example
            .clone()
            .or_else(|| self.resolve_schema(&schema).get("example").cloned());
        Param {
            name: data.name.clone(),
            at,
            required: data.required,
            schema: self.schema_of(&schema, Side::Request),
            example,
        }
    }

    fn body(&self, b: &ReferenceOr<RequestBody>) -> Option<Body> {
        let b = match b {
            ReferenceOr::Item(b) => b.clone(),
            ReferenceOr::Reference { reference } => self
                .components()
                .request_bodies
                .get(component(reference, "requestBodies"))
                .and_then(ReferenceOr::as_item)
                .unwrap_or_else(|| panic!("unresolved {reference}"))
                .clone(),
        };
        let media: &MediaType = b.content.get("application/json")?;
        let schema = media.schema.as_ref().map(to_json).unwrap_or(json!({}));
        let example = media
            .example
            .clone()
            .or_else(|| self.resolve_schema(&schema).get("example").cloned());
        Some(Body {
            required: b.required,
            schema: self.schema_of(&schema, Side::Request),
            example,
        })
    }

    fn responses(&self, op: &Operation) -> BTreeMap<String, Answer> {
        let mut out = BTreeMap::new();
        let all = op
            .responses
            .responses
            .iter()
            .map(|(code, r)| (code.to_string(), r))
            .chain(op.responses.default.iter().map(|r| ("default".into(), r)));
        for (code, r) in all {
            let r: Response = match r {
                ReferenceOr::Item(r) => r.clone(),
                ReferenceOr::Reference { reference } => self
                    .components()
                    .responses
                    .get(component(reference, "responses"))
                    .and_then(ReferenceOr::as_item)
                    .unwrap_or_else(|| panic!("unresolved {reference}"))
                    .clone(),
            };
            let content = r
                .content
                .iter()
                .map(|(media, m)| {
                    let s = m.schema.as_ref().map(to_json).unwrap_or(json!({}));
                    (media.clone(), self.schema_of(&s, Side::Answer))
                })
                .collect();
            let headers = r
                .headers
                .iter()
                .map(|(name, h)| {
                    let h = h.as_item().expect("inline response headers");
                    let s = match &h.format {
                        ParameterSchemaOrContent::Schema(s) => to_json(s),
                        ParameterSchemaOrContent::Content(_) => json!({}),
                    };
                    (
                        name.to_ascii_lowercase(),
                        h.required,
                        self.schema_of(&s, Side::Answer),
                    )
                })
                .collect();
            out.insert(code, Answer { content, headers });
        }
        out
    }

    fn components(&self) -> &openapiv3::Components {
        self.api.components.as_ref().expect("components")
    }

    /// `schema` itself, or the component schema it references (unconverted JSON).
    fn resolve_schema(&self, schema: &Value) -> Value {
        match schema.get("$ref").and_then(Value::as_str) {
            Some(r) => self
                .components()
                .schemas
                .get(component(r, "schemas"))
                .map(to_json)
                .unwrap_or(Value::Null),
            None => schema.clone(),
        }
    }

    /// `schema` (OpenAPI JSON) as a self-contained JSON Schema: converted, with the component
    /// schemas of `side` under `$defs`.
    pub fn schema_of(&self, schema: &Value, side: Side) -> Value {
        let mut s = convert(schema, side);
        if let Value::Object(m) = &mut s {
            m.insert(
                "$defs".into(),
                match side {
                    Side::Request => self.defs_request.clone(),
                    Side::Answer => self.defs_answer.clone(),
                },
            );
        } else {
            s = json!({"allOf": [s], "$defs": self.defs_request.clone()});
        }
        s
    }
}

/// `X` of `#/components/{kind}/X`.
fn component<'a>(reference: &'a str, kind: &str) -> &'a str {
    reference
        .strip_prefix(&format!("#/components/{kind}/"))
        .unwrap_or_else(|| panic!("{reference} is not a #/components/{kind}/ reference"))
}

fn to_json<T: serde::Serialize>(v: &T) -> Value {
    serde_json::to_value(v).expect("a spec part serializes")
}

/// An OpenAPI 3.0 schema as JSON Schema 2020-12 (see the module doc).
pub fn convert(schema: &Value, side: Side) -> Value {
    let Value::Object(m) = schema else {
        return schema.clone();
    };
    let mut out = Map::new();
    for (k, v) in m {
        let v = match k.as_str() {
            "$ref" => {
                let r = v.as_str().unwrap_or_default();
                json!(r.replace("#/components/schemas/", "#/$defs/"))
            }
            "example" | "nullable" | "description" => continue,
            "properties" => Value::Object(
                v.as_object()
                    .into_iter()
                    .flatten()
                    .map(|(name, s)| (name.clone(), convert(s, side)))
                    .collect(),
            ),
            "items" | "not" => convert(v, side),
            "additionalProperties" if v.is_object() => convert(v, side),
            "oneOf" | "anyOf" | "allOf" => Value::Array(
                v.as_array()
                    .into_iter()
                    .flatten()
                    .map(|s| convert(s, side))
                    .collect(),
            ),
            _ => v.clone(),
        };
        out.insert(k.clone(), v);
    }
    if m.get("nullable") == Some(&Value::Bool(true)) {
        if let Some(t) = out.get("type").cloned() {
            out.insert("type".into(), json!([t, "null"]));
        }
        if let Some(Value::Array(e)) = out.get_mut("enum") {
            e.push(Value::Null);
        }
    }
    let closed = side == Side::Answer
        && out.contains_key("properties")
        && !out.contains_key("additionalProperties");
    if closed {
        out.insert("additionalProperties".into(), Value::Bool(false));
    }
    Value::Object(out)
}

/// A validator of `schema` (self-contained JSON Schema).
pub fn validator(schema: &Value) -> jsonschema::Validator {
    jsonschema::options()
        .with_draft(jsonschema::Draft::Draft202012)
        .build(schema)
        .unwrap_or_else(|e| panic!("a schema of the spec does not compile: {e}\n{schema:#}"))
}

/// Why `value` does not match `schema`, or `None` when it does.
pub fn violations(schema: &Value, value: &Value) -> Option<String> {
    let v = validator(schema);
    let errors: Vec<String> = v
        .iter_errors(value)
        .map(|e| format!("{} (at {})", e, e.instance_path()))
        .take(5)
        .collect();
    (!errors.is_empty()).then(|| errors.join("; "))
}

/// The keywords of an OpenAPI 3.0 Schema Object (besides `x-` extensions).
const SCHEMA_KEYWORDS: &[&str] = &[
    "$ref",
    "title",
    "description",
    "type",
    "format",
    "nullable",
    "default",
    "example",
    "enum",
    "properties",
    "required",
    "additionalProperties",
    "minProperties",
    "maxProperties",
    "items",
    "minItems",
    "maxItems",
    "uniqueItems",
    "minLength",
    "maxLength",
    "pattern",
    "minimum",
    "maximum",
    "exclusiveMinimum",
    "exclusiveMaximum",
    "multipleOf",
    "oneOf",
    "anyOf",
    "allOf",
    "not",
    "readOnly",
    "writeOnly",
    "deprecated",
    "discriminator",
    "xml",
    "externalDocs",
];

/// Words used as schema keywords that OpenAPI does not know, with where (`raw` is the whole
/// spec). A YAML slip such as `{description: a, b}` makes `b` a keyword: the model drops it
/// silently, and the schema means something else than was written.
pub fn unknown_keywords(raw: &Value) -> Vec<String> {
    fn schema(s: &Value, at: &str, out: &mut Vec<String>) {
        let Value::Object(m) = s else { return };
        for (k, v) in m {
            let here = format!("{at}/{k}");
            match k.as_str() {
                "properties" => {
                    for (name, p) in v.as_object().into_iter().flatten() {
                        schema(p, &format!("{here}/{name}"), out);
                    }
                }
                "items" | "not" | "additionalProperties" => schema(v, &here, out),
                "oneOf" | "anyOf" | "allOf" => {
                    for (i, x) in v.as_array().into_iter().flatten().enumerate() {
                        schema(x, &format!("{here}/{i}"), out);
                    }
                }
                k if SCHEMA_KEYWORDS.contains(&k) || k.starts_with("x-") => {}
                _ => out.push(here),
            }
        }
    }
    fn walk(v: &Value, at: &str, out: &mut Vec<String>) {
        match v {
            Value::Object(m) => {
                for (k, x) in m {
                    let here = format!("{at}/{k}");
                    if k == "schema" || at == "/components/schemas" {
                        schema(x, &here, out);
                    } else {
                        walk(x, &here, out);
                    }
                }
            }
            Value::Array(a) => {
                for (i, x) in a.iter().enumerate() {
                    walk(x, &format!("{at}/{i}"), out);
                }
            }
            _ => {}
        }
    }
    let mut out = Vec::new();
    walk(raw, "", &mut out);
    out
}
