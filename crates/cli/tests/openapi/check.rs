//! Whether an answer is one the spec declares for its operation: the status (exact, `4XX`-style
//! or `default`), the `Content-Type` (no body where none is declared), the body against the
//! declared schema, and the declared headers.

use super::spec::{violations, Answer, Op};
use reqwest::header::HeaderMap;
use serde_json::{json, Value};

/// The declared response `status` falls under, if any.
pub fn declared(op: &Op, status: u16) -> Option<&Answer> {
    let class = format!("{}XX", status / 100);
    op.responses
        .get(&status.to_string())
        .or_else(|| op.responses.get(&class))
        .or_else(|| op.responses.get("default"))
}

/// `type/subtype` and the parameters of a media type, lower case.
fn media(m: &str) -> (String, Vec<String>) {
    let mut parts = m.split(';').map(|p| p.trim().to_ascii_lowercase());
    let essence = parts.next().unwrap_or_default();
    (essence, parts.filter(|p| !p.is_empty()).collect())
}

/// What is wrong with an answer to `op` (empty: nothing).
pub fn answer(op: &Op, status: u16, headers: &HeaderMap, body: &[u8]) -> Vec<String> {
    let mut wrong = Vec::new();
    let Some(a) = declared(op, status) else {
        let codes: Vec<&String> = op.responses.keys().collect();
        return vec![format!(
            "status {status} is not declared (declared: {codes:?}); body {}",
            String::from_utf8_lossy(&body[..body.len().min(300)])
        )];
    };
    let ct = headers
        .get(reqwest::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok());
    if a.content.is_empty() {
        if !body.is_empty() {
            wrong.push(format!(
                "status {status} declares no body, the node answered {} bytes ({ct:?})",
                body.len()
            ));
        }
    } else {
        let Some(ct) = ct else {
            return vec![format!("status {status}: no Content-Type")];
        };
        let (essence, params) = media(ct);
        let matched = a.content.iter().find(|(m, _)| {
            let (e, p) = media(m);
            e == essence && p.iter().all(|p| params.contains(p))
        });
        match matched {
            None => wrong.push(format!(
                "status {status}: Content-Type {ct:?} is not declared ({:?})",
                a.content.iter().map(|c| &c.0).collect::<Vec<_>>()
            )),
            Some((_, schema)) if essence == "application/json" => {
                match serde_json::from_slice::<Value>(body) {
                    Err(e) => wrong.push(format!("status {status}: the body is not JSON: {e}")),
                    Ok(v) => {
                        if let Some(why) = violations(schema, &v) {
                            wrong.push(format!(
                                "status {status}: the body does not match its schema: {why}; body {}",
                                cut(&v)
                            ));
                        }
                    }
                }
            }
            Some((_, schema)) => {
                let text = String::from_utf8_lossy(body).into_owned();
                if let Some(why) = violations(schema, &json!(text)) {
                    wrong.push(format!("status {status}: the body does not match: {why}"));
                }
            }
        }
    }
    for (name, required, schema) in &a.headers {
        match headers.get(name.as_str()).and_then(|v| v.to_str().ok()) {
            None if *required => wrong.push(format!("status {status}: header {name} missing")),
            None => {}
            Some(v) => {
                // a header is text; read as a number only where the spec declares one (an
                // opaque token such as `31` stays a string)
                let numeric = |t: &Value| matches!(t.as_str(), Some("integer" | "number"));
                let declared_number = match schema.get("type") {
                    Some(Value::Array(a)) => a.iter().any(numeric),
                    Some(t) => numeric(t),
                    None => false,
                };
                let value = match v.parse::<i64>() {
                    Ok(n) if declared_number => json!(n),
                    _ => json!(v),
                };
                if let Some(why) = violations(schema, &value) {
                    wrong.push(format!("status {status}: header {name}: {why}"));
                }
            }
        }
    }
    wrong
}

/// A value, shortened for a message.
pub fn cut(v: &Value) -> String {
    let s = v.to_string();
    if s.chars().count() > 400 {
        format!("{}...", s.chars().take(400).collect::<String>())
    } else {
        s
    }
}
