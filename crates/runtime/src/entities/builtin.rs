//! The entity types built into the default binary: `counter`, `register`, `list`, `aggregator`.

use super::entity::{Context, EntityType, OperationError};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

fn number(input: Option<&Value>, what: &str) -> Result<f64, OperationError> {
    match input {
        Some(Value::Number(n)) => n
            .as_f64()
            .filter(|f| f.is_finite())
            .ok_or_else(|| OperationError::BadInput(format!("{what} must be a finite number"))),
        other => Err(OperationError::BadInput(format!(
            "{what} must be a JSON number, got {}",
            other.map(short).unwrap_or_else(|| "nothing".into())
        ))),
    }
}

fn integer(input: Option<&Value>, what: &str) -> Result<i64, OperationError> {
    match input {
        Some(Value::Number(n)) => n
            .as_i64()
            .ok_or_else(|| OperationError::BadInput(format!("{what} must be an integer (i64)"))),
        other => Err(OperationError::BadInput(format!(
            "{what} must be a JSON integer, got {}",
            other.map(short).unwrap_or_else(|| "nothing".into())
        ))),
    }
}

fn short(v: &Value) -> String {
    let s = v.to_string();
    if s.len() > 40 {
        format!("{}...", &s[..s.floor_char_boundary(40)])
    } else {
        s
    }
}

/// `counter`: `add(n)` (an integer, default 1), `reset`, `get` → the value. State: an integer.
#[derive(Debug, Default)]
pub struct Counter;

impl EntityType for Counter {
    fn name(&self) -> &'static str {
        "counter"
    }
    fn operations(&self) -> &'static [&'static str] {
        &["add", "reset", "get"]
    }
    fn validate(&self, op: &str, input: Option<&Value>) -> Result<(), OperationError> {
        match (op, input) {
            ("add", None | Some(Value::Null)) => Ok(()),
            ("add", i) => integer(i, "the amount").map(|_| ()),
            _ => Ok(()),
        }
    }
    fn execute(&self, ctx: &mut Context<'_>) -> Result<Option<Value>, OperationError> {
        let value: i64 = ctx.state_or_default()?;
        match ctx.operation() {
            "add" => {
                let n = match ctx.input() {
                    None | Some(Value::Null) => 1,
                    i => integer(i, "the amount")?,
                };
                let v = value
                    .checked_add(n)
                    .ok_or_else(|| OperationError::Failed("counter overflow".into()))?;
                ctx.set_state(&v)?;
                Ok(Some(json!(v)))
            }
            "reset" => {
                ctx.set_state(&0i64)?;
                Ok(None)
            }
            _ => Ok(Some(json!(value))),
        }
    }
}

/// `register`: `set(v)`, `get` → v or null, `cas({expected, new})` → whether it swapped,
/// `delete`. State: any JSON value.
#[derive(Debug, Default)]
pub struct Register;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Cas {
    expected: Value,
    new: Value,
}

impl EntityType for Register {
    fn name(&self) -> &'static str {
        "register"
    }
    fn operations(&self) -> &'static [&'static str] {
        &["set", "get", "cas", "delete"]
    }
    fn validate(&self, op: &str, input: Option<&Value>) -> Result<(), OperationError> {
        match op {
            "set" if input.is_none() => Err(OperationError::BadInput(
                "set takes the new value as its JSON body".into(),
            )),
            "cas" => serde_json::from_value::<Cas>(input.cloned().unwrap_or(Value::Null))
                .map(|_| ())
                .map_err(|e| {
                    OperationError::BadInput(format!(
                        "cas takes {{\"expected\": .., \"new\": ..}}: {e}"
                    ))
                }),
            _ => Ok(()),
        }
    }
    fn execute(&self, ctx: &mut Context<'_>) -> Result<Option<Value>, OperationError> {
        match ctx.operation() {
            "set" => {
                let v = ctx.input().cloned().unwrap_or(Value::Null);
                ctx.set_state(&v)?;
                Ok(None)
            }
            "cas" => {
                let Cas { expected, new } = ctx.input_as()?;
                let current = ctx.state().cloned().unwrap_or(Value::Null);
                if current == expected {
                    ctx.set_state(&new)?;
                    Ok(Some(json!(true)))
                } else {
                    Ok(Some(json!(false)))
                }
            }
            "delete" => {
                ctx.delete();
                Ok(None)
            }
            _ => Ok(Some(ctx.state().cloned().unwrap_or(Value::Null))),
        }
    }
}

/// `list`: `append(v)` → the new length, `get` → the list. State: a JSON array.
#[derive(Debug, Default)]
pub struct List;

impl EntityType for List {
    fn name(&self) -> &'static str {
        "list"
    }
    fn operations(&self) -> &'static [&'static str] {
        &["append", "get"]
    }
    fn validate(&self, op: &str, input: Option<&Value>) -> Result<(), OperationError> {
        if op == "append" && input.is_none() {
            return Err(OperationError::BadInput(
                "append takes the element as its JSON body".into(),
            ));
        }
        Ok(())
    }
    fn execute(&self, ctx: &mut Context<'_>) -> Result<Option<Value>, OperationError> {
        let mut items: Vec<Value> = ctx.state_or_default()?;
        match ctx.operation() {
            "append" => {
                items.push(ctx.input().cloned().unwrap_or(Value::Null));
                ctx.set_state(&items)?;
                Ok(Some(json!(items.len())))
            }
            _ => Ok(Some(Value::Array(items))),
        }
    }
}

/// `aggregator`: `record(x)` a number; `get` → `{count, sum, min, max, mean}`.
#[derive(Debug, Default)]
pub struct Aggregator;

#[derive(Debug, Default, Serialize, Deserialize)]
struct Stats {
    count: u64,
    sum: f64,
    min: Option<f64>,
    max: Option<f64>,
}

impl EntityType for Aggregator {
    fn name(&self) -> &'static str {
        "aggregator"
    }
    fn operations(&self) -> &'static [&'static str] {
        &["record", "get"]
    }
    fn validate(&self, op: &str, input: Option<&Value>) -> Result<(), OperationError> {
        if op == "record" {
            number(input, "the recorded value")?;
        }
        Ok(())
    }
    fn execute(&self, ctx: &mut Context<'_>) -> Result<Option<Value>, OperationError> {
        let mut s: Stats = ctx.state_or_default()?;
        match ctx.operation() {
            "record" => {
                let x = number(ctx.input(), "the recorded value")?;
                // Overflow is an operation error that leaves the state as it was: an infinite
                // sum would be stored as JSON null and break every later operation.
                let sum = s.sum + x;
                if !sum.is_finite() {
                    return Err(OperationError::Failed(format!(
                        "aggregator overflow: the sum {} + {x} is not a finite number",
                        s.sum
                    )));
                }
                s.count = s
                    .count
                    .checked_add(1)
                    .ok_or_else(|| OperationError::Failed("aggregator count overflow".into()))?;
                s.sum = sum;
                s.min = Some(s.min.map_or(x, |m| m.min(x)));
                s.max = Some(s.max.map_or(x, |m| m.max(x)));
                ctx.set_state(&s)?;
                Ok(None)
            }
            _ => {
                let mean = if s.count == 0 {
                    None
                } else {
                    Some(s.sum / s.count as f64)
                };
                Ok(Some(json!({
                    "count": s.count, "sum": s.sum, "min": s.min, "max": s.max, "mean": mean
                })))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use perdure_types::EntityId;

    /// Runs `ops` in order on a fresh entity of type `t`; returns each result.
    fn run(
        t: &dyn EntityType,
        ops: &[(&str, Option<Value>)],
    ) -> Vec<Result<Option<Value>, OperationError>> {
        let id = EntityId::new(t.name(), "k").unwrap();
        let mut state = None;
        ops.iter()
            .map(|(op, input)| {
                let mut ctx = Context::new(&id, op, input.as_ref(), state.as_ref(), 0);
                let r = t.execute(&mut ctx);
                let (new_state, _) = ctx.into_effects();
                if let (true, Some(s)) = (r.is_ok(), new_state) {
                    state = s;
                }
                r
            })
            .collect()
    }

    #[test]
    fn counter() {
        let r = run(
            &Counter,
            &[
                ("add", Some(json!(5))),
                ("add", None),
                ("get", None),
                ("reset", None),
                ("get", None),
            ],
        );
        assert_eq!(r[2], Ok(Some(json!(6))));
        assert_eq!(r[4], Ok(Some(json!(0))));
        assert!(Counter.validate("add", Some(&json!("x"))).is_err());
        assert!(Counter.validate("add", Some(&json!(1.5))).is_err());
        let over = run(
            &Counter,
            &[
                ("add", Some(json!(i64::MAX))),
                ("add", Some(json!(1))),
                ("get", None),
            ],
        );
        assert!(over[1].is_err());
        assert_eq!(
            over[2],
            Ok(Some(json!(i64::MAX))),
            "a failed op leaves the state as it was"
        );
    }

    #[test]
    fn register() {
        let r = run(
            &Register,
            &[
                ("get", None),
                ("set", Some(json!({"a": 1}))),
                ("cas", Some(json!({"expected": 1, "new": 2}))),
                ("cas", Some(json!({"expected": {"a": 1}, "new": 2}))),
                ("get", None),
                ("delete", None),
                ("get", None),
            ],
        );
        assert_eq!(r[0], Ok(Some(Value::Null)));
        assert_eq!(r[2], Ok(Some(json!(false))));
        assert_eq!(r[3], Ok(Some(json!(true))));
        assert_eq!(r[4], Ok(Some(json!(2))));
        assert_eq!(r[6], Ok(Some(Value::Null)));
        assert!(Register
            .validate("cas", Some(&json!({"expected": 1})))
            .is_err());
    }

    #[test]
    fn list_and_aggregator() {
        let r = run(
            &List,
            &[
                ("append", Some(json!("a"))),
                ("append", Some(json!(2))),
                ("get", None),
            ],
        );
        assert_eq!(r[1], Ok(Some(json!(2))));
        assert_eq!(r[2], Ok(Some(json!(["a", 2]))));
        let r = run(
            &Aggregator,
            &[
                ("get", None),
                ("record", Some(json!(2))),
                ("record", Some(json!(-4.5))),
                ("get", None),
            ],
        );
        assert_eq!(
            r[0],
            Ok(Some(
                json!({"count": 0, "sum": 0.0, "min": null, "max": null, "mean": null})
            ))
        );
        assert_eq!(
            r[3],
            Ok(Some(
                json!({"count": 2, "sum": -2.5, "min": -4.5, "max": 2.0, "mean": -1.25})
            ))
        );
        assert!(Aggregator.validate("record", Some(&json!("1"))).is_err());
        let over = run(
            &Aggregator,
            &[
                ("record", Some(json!(1e308))),
                ("record", Some(json!(1e308))),
                ("record", Some(json!(-1e308))),
                ("get", None),
            ],
        );
        assert!(
            matches!(&over[1], Err(OperationError::Failed(m)) if m.contains("overflow")),
            "{:?}",
            over[1]
        );
        assert_eq!(
            over[3],
            Ok(Some(
                json!({"count": 2, "sum": 0.0, "min": -1e308, "max": 1e308, "mean": 0.0})
            )),
            "the overflowing record left the state as it was, and later ones still apply"
        );
    }
}
