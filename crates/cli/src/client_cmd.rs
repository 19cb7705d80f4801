//! Client subcommands: `signal`, `call`, `get`, `list`, over `perdure-client`.

use anyhow::{bail, Context};
use clap::Args;
use perdure_client::Client;
use serde_json::{json, Value};

/// Where the node is.
#[derive(Args, Debug, Clone)]
pub struct ClientFlags {
    /// The node's HTTP address.
    #[arg(long, env = "PERDURE_URL", default_value = "http://127.0.0.1:7071")]
    pub url: String,
    /// The API token, for a node with `[auth]` tokens (sent as `Authorization: Bearer`).
    #[arg(long, env = "PERDURE_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
}

impl ClientFlags {
    /// A client of the node (routing off: one request per command).
    pub fn client(&self) -> anyhow::Result<Client> {
        // one request per command: learning the routing table first would only add a request
        let mut b = Client::builder(&self.url).routing(false);
        if let Some(t) = &self.token {
            b = b.token(t.clone());
        }
        Ok(b.build()?)
    }
}

/// An entity written `NAME/KEY` (the key may hold further `/`).
#[derive(Debug, Clone)]
pub struct EntityArg {
    /// The entity type.
    pub name: String,
    /// The key.
    pub key: String,
}

impl std::str::FromStr for EntityArg {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        match s.split_once('/') {
            Some((name, key)) if !name.is_empty() && !key.is_empty() => Ok(Self {
                name: name.to_string(),
                key: key.to_string(),
            }),
            _ => Err(format!("expected NAME/KEY (like counter/a), got {s:?}")),
        }
    }
}

impl std::fmt::Display for EntityArg {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.name, self.key)
    }
}

/// An operation's input: JSON, or else the text as a JSON string.
pub fn parse_input(s: &str) -> Value {
    serde_json::from_str(s).unwrap_or_else(|_| Value::String(s.to_string()))
}

fn print(v: &impl serde::Serialize) -> anyhow::Result<()> {
    println!("{}", serde_json::to_string_pretty(v)?);
    Ok(())
}

/// `perdure cluster status`
pub async fn cluster_status(flags: &ClientFlags) -> anyhow::Result<()> {
    let v = flags
        .client()?
        .cluster_status()
        .await
        .context("cluster status")?;
    print(&v)
}

/// `perdure cluster remove NODE_ID`
pub async fn remove_member(flags: &ClientFlags, node_id: u64) -> anyhow::Result<()> {
    let v = flags
        .client()?
        .remove_member(node_id)
        .await
        .with_context(|| format!("removing node {node_id}"))?;
    print(&v)
}

/// `perdure signal NAME/KEY OP [INPUT] [--idempotency-key K]`
pub async fn signal(
    flags: &ClientFlags,
    entity: &EntityArg,
    op: &str,
    input: Option<&str>,
    idempotency_key: Option<&str>,
) -> anyhow::Result<()> {
    let c = flags.client()?;
    let input = input.map(parse_input);
    let ack = match idempotency_key {
        Some(k) => {
            c.signal_with_key(&entity.name, &entity.key, op, input, k)
                .await
        }
        None => c.signal(&entity.name, &entity.key, op, input).await,
    }
    .with_context(|| format!("signal {op} to {entity}"))?;
    print(&ack)
}

/// `perdure call NAME/KEY OP [INPUT]`
pub async fn call(
    flags: &ClientFlags,
    entity: &EntityArg,
    op: &str,
    input: Option<&str>,
) -> anyhow::Result<()> {
    let c = flags.client()?;
    let v = c
        .call(&entity.name, &entity.key, op, input.map(parse_input))
        .await
        .with_context(|| format!("call {op} on {entity}"))?;
    print(&v)
}

/// `perdure get NAME/KEY`
pub async fn get(flags: &ClientFlags, entity: &EntityArg) -> anyhow::Result<()> {
    let c = flags.client()?;
    match c
        .get(&entity.name, &entity.key)
        .await
        .with_context(|| format!("get {entity}"))?
    {
        Some(state) => print(&state),
        None => bail!("entity {entity} does not exist"),
    }
}

/// `perdure list NAME [--top N] [--all]`
pub async fn list(
    flags: &ClientFlags,
    name: &str,
    top: Option<u32>,
    all: bool,
) -> anyhow::Result<()> {
    let c = flags.client()?;
    let mut page = c
        .list(name, None, top)
        .await
        .with_context(|| format!("list {name}"))?;
    if !all {
        return print(&page);
    }
    let mut entities = std::mem::take(&mut page.entities);
    while let Some(token) = page.continuation.take() {
        page = c
            .list(name, Some(&token), top)
            .await
            .with_context(|| format!("list {name} (continuing)"))?;
        if page.continuation.as_deref() == Some(token.as_str()) {
            bail!("the server returned the same continuation token twice: {token:?}");
        }
        entities.append(&mut page.entities);
    }
    print(&json!({ "entities": entities, "continuation": null }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entities_are_name_slash_key() {
        let e: EntityArg = "counter/a/b".parse().unwrap();
        assert_eq!((e.name.as_str(), e.key.as_str()), ("counter", "a/b"));
        for bad in ["counter", "/a", "counter/", ""] {
            assert!(bad.parse::<EntityArg>().is_err(), "{bad}");
        }
    }

    #[test]
    fn inputs_are_json_or_else_strings() {
        assert_eq!(parse_input("5"), json!(5));
        assert_eq!(parse_input("{\"a\":1}"), json!({"a": 1}));
        assert_eq!(parse_input("\"x\""), json!("x"));
        assert_eq!(parse_input("hello world"), json!("hello world"));
        assert_eq!(parse_input("null"), Value::Null);
    }
}
