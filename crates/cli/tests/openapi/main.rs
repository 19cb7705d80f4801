//! The HTTP API against its contract, `docs/api/openapi.yaml`, with requests generated from the
//! spec (see `generate.rs`) sent to the real binary: every answer's status must be one the spec
//! declares for its operation, with the declared `Content-Type`, a body that validates against
//! the declared schema (objects closed: no undescribed fields) and the declared headers; no
//! generated request may get a 5xx; the example request of each operation must succeed and every
//! invalid variant be refused. The other way round: every route the node serves
//! (`perdure_node::routes::ROUTES`) is in the spec and the spec lists nothing else; another
//! method on a listed path is 405, an unlisted path 404, both in the API's error shape. A second
//! node with `[auth]` tokens checks the spec's `security` and `x-perdure-role` of each operation:
//! 401 without a token, 403 with a token of the role below, both declared.
//!
//! Each test collects every mismatch and fails with the whole list.

#[path = "../common/mod.rs"]
mod common;

mod check;
mod generate;
mod spec;

use common::cluster::{member, start, test_config};
use generate::{Kind, Req};
use perdure_harness::Node;
use perdure_types::config::{NodeConfig, Role, TokenConfig};
use serde_json::{json, Value};
use spec::{Op, Side, Spec};
use std::collections::{BTreeSet, HashMap};
use std::time::Duration;

/// Examples the spec gives that a single node must refuse, with the status it answers.
const REFUSED_EXAMPLES: &[(&str, u16, &str)] = &[
    ("removeMember", 409, "a single node has no member to remove"),
    ("rewindInstance", 410, "the example instance has not failed"),
];

const READ: &str = "reader-token-0123456789";
const WRITE: &str = "writer-token-0123456789";
const ADMIN: &str = "admin-token-0123456789";

/// A running node and an HTTP client for it.
struct Target {
    url: String,
    http: reqwest::Client,
    _node: Node,
    _dir: tempfile::TempDir,
}

/// Starts one node (2 partitions, the test entity types, the sample orchestrations: the
/// examples start `HelloSequence` and `Approval`) with `tune` applied to its config.
fn node(tune: impl FnOnce(&mut NodeConfig)) -> Target {
    let dir = tempfile::tempdir().unwrap();
    let m = member(1, dir.path());
    let mut c = test_config(&m, &[], "openapi", "", 2);
    c.samples.enabled = true;
    tune(&mut c);
    m.write_config(&c).unwrap();
    let mut node = start(&m);
    node.wait_ready(Duration::from_secs(30)).unwrap();
    Target {
        url: m.url(),
        http: reqwest::Client::builder()
            .timeout(Duration::from_secs(10))
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .unwrap(),
        _node: node,
        _dir: dir,
    }
}

/// An answer.
struct Answer {
    status: u16,
    headers: reqwest::header::HeaderMap,
    body: Vec<u8>,
}

impl Answer {
    fn json(&self) -> Option<Value> {
        serde_json::from_slice(&self.body).ok()
    }
}

impl Target {
    /// Sends `req` for `op`, with `extra` headers.
    async fn send(&self, method: &str, path: &str, req: &Req, extra: &[(&str, &str)]) -> Answer {
        let method = reqwest::Method::from_bytes(method.as_bytes()).unwrap();
        let mut b = self
            .http
            .request(method, format!("{}{}", self.url, path))
            .query(&req.query);
        for (k, v) in req.headers.iter().map(|(k, v)| (k.as_str(), v.as_str())) {
            b = b.header(k, v);
        }
        for (k, v) in extra {
            b = b.header(*k, *v);
        }
        if let Some(body) = &req.body {
            b = b
                .header("content-type", "application/json")
                .body(body.clone());
        }
        let r = b.send().await.unwrap_or_else(|e| panic!("{path}: {e}"));
        let status = r.status().as_u16();
        let headers = r.headers().clone();
        let body = r.bytes().await.map(|b| b.to_vec()).unwrap_or_default();
        Answer {
            status,
            headers,
            body,
        }
    }

    /// Sends `req` to `op` and checks the answer against the spec and what `req` is.
    async fn exchange(
        &self,
        op: &Op,
        req: &Req,
        extra: &[(&str, &str)],
        found: &mut Vec<String>,
        learned: &mut HashMap<String, String>,
    ) -> Answer {
        let path = req.path(&op.path);
        let a = self.send(&op.method, &path, req, extra).await;
        eprintln!(
            "{} {} ({}): {}",
            op.method,
            path_shown(&path),
            req.label,
            a.status
        );
        let mut say = |what: String| {
            found.push(format!(
                "{} {} ({}), {}: {what}",
                op.method, op.path, op.id, req.label
            ))
        };
        if a.status >= 500 {
            say(format!(
                "answered {} (no generated request may get a 5xx): {}",
                a.status,
                String::from_utf8_lossy(&a.body)
            ));
        }
        for w in check::answer(op, a.status, &a.headers, &a.body) {
            say(w);
        }
        let ok = (200..300).contains(&a.status);
        match req.kind {
            Kind::Example => match REFUSED_EXAMPLES.iter().find(|r| r.0 == op.id) {
                Some((_, status, why)) if a.status != *status => {
                    say(format!("expected {status} ({why}), got {}", a.status))
                }
                Some(_) => {}
                None if !ok => say(format!(
                    "the spec's example request failed: {} {}",
                    a.status,
                    String::from_utf8_lossy(&a.body)
                )),
                None => {}
            },
            Kind::Invalid { per_item: false } if ok => {
                say(format!("an invalid request was accepted ({})", a.status))
            }
            _ => {}
        }
        if ok && extra.is_empty() {
            if let Some(Value::Object(m)) = a.json() {
                for (k, v) in m {
                    if let Value::String(s) = v {
                        learned.insert(k, s);
                    }
                }
            }
        }
        a
    }
}

/// `path`, shortened for the log.
fn path_shown(path: &str) -> String {
    if path.len() > 100 {
        format!("{}...({} bytes)", &path[..100], path.len())
    } else {
        path.to_string()
    }
}

/// Writes first, then reads, then deletes; the spec's operations come in path order (the YAML is
/// read through a sorted map), so a few ranks make the examples build on each other. Starts come
/// first: they create the orchestration instances the instance routes' examples name
/// (`openapi-1`, an `Approval` that waits for an event), then the other writes (signals, calls
/// and batches seed the entities later reads see; `openapi-1` is raised an event, restarted
/// under a new id, resumed, asked to rewind, suspended and terminated, in path order), then
/// reads, then the deletes of one resource (the purge of `openapi-1`, terminated by then) before
/// the deletes of many (the purge by filter, which finds the finished `HelloSequence` instances).
fn ordered(spec: &Spec) -> Vec<&Op> {
    let rank = |o: &Op| match o.method.as_str() {
        "POST" if o.path.contains("/orchestrators/") => 0,
        "POST" | "PUT" | "PATCH" => 1,
        "GET" => 2,
        _ if o.path.ends_with('}') => 3,
        _ => 4,
    };
    let mut ops: Vec<&Op> = spec.ops.iter().collect();
    ops.sort_by_key(|o| rank(o));
    ops
}

fn fail_on(found: Vec<String>, what: &str) {
    assert!(
        found.is_empty(),
        "{} mismatches between the node and docs/api/openapi.yaml ({what}):\n  {}",
        found.len(),
        found.join("\n  ")
    );
}

/// The spec's `Error` schema, as answers are checked.
fn error_schema(spec: &Spec) -> Value {
    spec.schema_of(&json!({"$ref": "#/components/schemas/Error"}), Side::Answer)
}

/// What is wrong with an error answer that should be `status` with `code`.
fn error_answer(spec: &Spec, a: &Answer, status: u16, code: &str) -> Option<String> {
    if a.status != status {
        return Some(format!("expected {status} {code}, got {}", a.status));
    }
    let Some(v) = a.json() else {
        return Some(format!(
            "{status}: not a JSON body: {:?}",
            String::from_utf8_lossy(&a.body)
        ));
    };
    if let Some(why) = spec::violations(&error_schema(spec), &v) {
        return Some(format!("{status}: not the error shape: {why}"));
    }
    (v["error"]["code"] != code)
        .then(|| format!("{status}: code {} is not {code}", v["error"]["code"]))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_api_answers_as_its_openapi_file_declares() {
    let spec = Spec::load();
    let t = node(|_| {});
    let mut found = Vec::new();
    let mut learned = HashMap::new();
    let mut sent = 0;
    // valid requests: each operation's example, then one per optional parameter
    for op in ordered(&spec) {
        let r = generate::example(op, &learned);
        t.exchange(op, &r, &[], &mut found, &mut learned).await;
        sent += 1;
        for i in 0..op.params.len() {
            if let Some(r) = generate::optional(op, i, &learned) {
                t.exchange(op, &r, &[], &mut found, &mut learned).await;
                sent += 1;
            }
        }
    }
    // invalid variants
    for op in ordered(&spec) {
        for r in generate::invalid(op, &learned) {
            t.exchange(op, &r, &[], &mut found, &mut learned).await;
            sent += 1;
        }
    }
    // the browser guards of a node without tokens: any route, another Host; a write, another
    // Origin
    for op in ordered(&spec) {
        let mut r = generate::example(op, &learned);
        r.kind = Kind::Valid;
        r.label = "from Host attacker.example".into();
        let a = t
            .exchange(
                op,
                &r,
                &[("host", "attacker.example")],
                &mut found,
                &mut learned,
            )
            .await;
        if let Some(w) = error_answer(&spec, &a, 403, "host_not_allowed") {
            found.push(format!("{} {}: {}: {w}", op.method, op.path, r.label));
        }
        if op.method != "GET" {
            r.label = "from Origin https://evil.example".into();
            let a = t
                .exchange(
                    op,
                    &r,
                    &[("origin", "https://evil.example")],
                    &mut found,
                    &mut learned,
                )
                .await;
            if let Some(w) = error_answer(&spec, &a, 403, "cross_origin") {
                found.push(format!("{} {}: {}: {w}", op.method, op.path, r.label));
            }
        }
        sent += 1;
    }
    // another method on a listed path: 405; an unlisted path: 404; both in the error shape
    let mut paths: Vec<(&str, &Op)> = Vec::new();
    for op in &spec.ops {
        if !paths.iter().any(|(p, _)| *p == op.path) {
            paths.push((&op.path, op));
        }
    }
    for (template, op) in paths {
        let r = generate::example(op, &learned);
        let path = r.path(template);
        let served: BTreeSet<&str> = spec
            .ops
            .iter()
            .filter(|o| o.path == template)
            .map(|o| o.method.as_str())
            .collect();
        for m in ["GET", "POST", "PUT", "DELETE", "PATCH"] {
            if served.contains(m) {
                continue;
            }
            let a = t.send(m, &path, &r, &[]).await;
            sent += 1;
            if let Some(w) = error_answer(&spec, &a, 405, "method_not_allowed") {
                found.push(format!("{m} {template} (not in the spec): {w}"));
            }
        }
    }
    let empty = generate::example(&spec.ops[0], &learned);
    let empty = Req {
        query: Vec::new(),
        headers: Vec::new(),
        body: None,
        ..empty
    };
    for path in [
        "/nope",
        "/runtime/webhooks/durabletask",
        "/runtime/webhooks/durabletask/entities",
        "/runtime/webhooks/durabletask/entities/counter/a/call/more",
        "/runtime/webhooks/durabletask/orchestrators",
        "/runtime/webhooks/durabletask/instances/openapi-1/nope",
        "/runtime/webhooks/durabletask/instances/openapi-1/raiseEvent",
        "/cluster/members",
        "/dashboard",
        "/dashboard/nope.js",
        "/healthz/",
        "/metrics/x",
    ] {
        let a = t.send("GET", path, &empty, &[]).await;
        sent += 1;
        if let Some(w) = error_answer(&spec, &a, 404, "not_found") {
            found.push(format!("GET {path} (not in the spec): {w}"));
        }
    }
    eprintln!("{sent} requests sent, {} mismatches", found.len());
    assert!(sent > 50, "the generator made too few requests ({sent})");
    fail_on(found, "a node without tokens");
}

/// The role one step below `role` (`None` below `read`).
fn below(role: &str) -> Option<&'static str> {
    match role {
        "write" => Some(READ),
        "admin" => Some(WRITE),
        _ => None,
    }
}

fn token_of(role: &str) -> &'static str {
    match role {
        "read" => READ,
        "write" => WRITE,
        "admin" => ADMIN,
        other => panic!("x-perdure-role {other:?} is not read, write or admin"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_tokens_every_refusal_is_declared_and_roles_are_as_the_spec_says() {
    let spec = Spec::load();
    let t = node(|c| {
        let token = |name: &str, token: &str, role| TokenConfig {
            name: name.into(),
            token: token.into(),
            role,
        };
        c.auth.tokens = vec![
            token("reader", READ, Role::Read),
            token("writer", WRITE, Role::Write),
            token("ops", ADMIN, Role::Admin),
        ];
    });
    let mut found = Vec::new();
    let mut learned = HashMap::new();
    for op in ordered(&spec) {
        let mut r = generate::example(op, &learned);
        r.kind = Kind::Valid;
        r.label = "without a token".into();
        let a = t.exchange(op, &r, &[], &mut found, &mut learned).await;
        let say = |w: String| format!("{} {} ({}): {w}", op.method, op.path, op.id);
        if !op.secured {
            if a.status == 401 || a.status == 403 {
                found.push(say(format!(
                    "the spec says no token is needed, the node answered {}",
                    a.status
                )));
            }
            continue;
        }
        if let Some(w) = error_answer(&spec, &a, 401, "unauthorized") {
            found.push(say(format!("without a token: {w}")));
        }
        if a.headers.get("www-authenticate").is_none() {
            found.push(say("401 without WWW-Authenticate".into()));
        }
        let Some(role) = op.role.as_deref() else {
            found.push(say("secured, but no x-perdure-role".into()));
            continue;
        };
        if let Some(lower) = below(role) {
            r.label = format!("with a token of the role below {role}");
            let bearer = format!("Bearer {lower}");
            let a = t
                .exchange(
                    op,
                    &r,
                    &[("authorization", &bearer)],
                    &mut found,
                    &mut learned,
                )
                .await;
            if let Some(w) = error_answer(&spec, &a, 403, "forbidden") {
                found.push(say(format!("{}: {w}", r.label)));
            }
        }
        r.label = format!("with a {role} token");
        r.kind = Kind::Example;
        let bearer = format!("Bearer {}", token_of(role));
        t.exchange(
            op,
            &r,
            &[("authorization", &bearer)],
            &mut found,
            &mut learned,
        )
        .await;
    }
    fail_on(found, "a node with [auth] tokens");
}

#[test]
fn every_route_the_node_serves_is_in_the_spec_and_nothing_else() {
    let spec = Spec::load();
    let in_spec: BTreeSet<(String, String)> = spec
        .ops
        .iter()
        .map(|o| (o.method.clone(), o.path.clone()))
        .collect();
    let served: BTreeSet<(String, String)> = perdure_node::routes::ROUTES
        .iter()
        .map(|r| (r.method.to_string(), r.path.to_string()))
        .collect();
    let missing: Vec<_> = served.difference(&in_spec).collect();
    let extra: Vec<_> = in_spec.difference(&served).collect();
    assert!(
        missing.is_empty() && extra.is_empty(),
        "served but not in the spec: {missing:?}; in the spec but not served: {extra:?}"
    );
    // every router registers its routes by the catalog's constants: a literal path in a
    // `.route(` call would be a route the catalog (and so this test) does not see
    let src = concat!(env!("CARGO_MANIFEST_DIR"), "/../node/src");
    let mut literal = Vec::new();
    let mut dirs = vec![std::path::PathBuf::from(src)];
    while let Some(d) = dirs.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                dirs.push(p);
            } else if p.extension().is_some_and(|x| x == "rs") && !p.ends_with("routes.rs") {
                let text = std::fs::read_to_string(&p).unwrap();
                // test modules build their own small routers
                let code = text.split("#[cfg(test)]").next().unwrap_or_default();
                let squashed: String = code.split_whitespace().collect();
                if squashed.contains(".route(\"") || squashed.contains(".nest(") {
                    literal.push(p.display().to_string());
                }
            }
        }
    }
    assert!(
        literal.is_empty(),
        "routes registered by literal path (use perdure_node::routes): {literal:?}"
    );
}

#[test]
fn the_spec_declares_a_role_for_every_secured_operation() {
    let spec = Spec::load();
    for op in &spec.ops {
        assert_eq!(
            op.secured,
            op.role.is_some(),
            "{} {}: x-perdure-role iff a token is needed",
            op.method,
            op.path
        );
    }
}

#[test]
fn the_spec_uses_only_openapi_schema_keywords() {
    let spec = Spec::load();
    let unknown = spec::unknown_keywords(&spec.raw);
    assert!(
        unknown.is_empty(),
        "not OpenAPI schema keywords (a YAML slip such as an unquoted comma?): {unknown:?}"
    );
}
