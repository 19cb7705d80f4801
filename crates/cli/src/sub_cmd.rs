//! `perdure sub ...`: stream subscriptions through `perdure-client` (put, get, list, pause,
//! resume, delete, dead-letters). Every command prints JSON; an error exits non-zero with the
//! server's message.

use crate::client_cmd::ClientFlags;
use anyhow::{bail, Context};
use clap::Subcommand;
use serde_json::{json, Value};
use std::path::PathBuf;

/// The subscription commands.
#[derive(Subcommand, Debug)]
pub enum SubCmd {
    /// Create or replace a subscription: `perdure sub put orders --file orders.json` (or
    /// `--json '{"source": ..., "mapping": ...}'`). Prints it, with `"created"`.
    Put {
        /// The subscription's name.
        name: String,
        /// A file holding the definition (JSON; `-` for standard input).
        #[arg(long, conflicts_with = "json", required_unless_present = "json")]
        file: Option<PathBuf>,
        /// The definition, inline.
        #[arg(long)]
        json: Option<String>,
        #[command(flatten)]
        client: ClientFlags,
    },
    /// Print a subscription with its progress per source partition.
    Get {
        /// The subscription's name.
        name: String,
        #[command(flatten)]
        client: ClientFlags,
    },
    /// List the subscriptions.
    List {
        #[command(flatten)]
        client: ClientFlags,
    },
    /// Pause a subscription: its consumers stop at their checkpoints.
    Pause {
        /// The subscription's name.
        name: String,
        #[command(flatten)]
        client: ClientFlags,
    },
    /// Resume a paused subscription.
    Resume {
        /// The subscription's name.
        name: String,
        #[command(flatten)]
        client: ClientFlags,
    },
    /// Delete a subscription.
    Delete {
        /// The subscription's name.
        name: String,
        #[command(flatten)]
        client: ClientFlags,
    },
    /// Print a subscription's dead letters.
    DeadLetters {
        /// The subscription's name.
        name: String,
        /// At most this many (the server caps it at 1000) [default: 100].
        #[arg(long)]
        limit: Option<u32>,
        #[command(flatten)]
        client: ClientFlags,
    },
}

fn print(v: &impl serde::Serialize) -> anyhow::Result<()> {
    println!("{}", serde_json::to_string_pretty(v)?);
    Ok(())
}

/// The definition `--file` or `--json` gives.
fn definition(file: Option<PathBuf>, json: Option<String>) -> anyhow::Result<Value> {
    let text = match (file, json) {
        (_, Some(j)) => j,
        (Some(f), None) if f.as_os_str() == "-" => {
            std::io::read_to_string(std::io::stdin()).context("reading standard input")?
        }
        (Some(f), None) => {
            std::fs::read_to_string(&f).with_context(|| format!("reading {}", f.display()))?
        }
        (None, None) => bail!("give the definition with --file or --json"),
    };
    serde_json::from_str(&text).context("the definition is not JSON")
}

/// Runs one `perdure sub` command.
pub async fn run(cmd: SubCmd) -> anyhow::Result<()> {
    match cmd {
        SubCmd::Put {
            name,
            file,
            json,
            client,
        } => {
            let spec = definition(file, json)?;
            let (mut s, created) = client
                .client()?
                .put_subscription(&name, &spec)
                .await
                .with_context(|| format!("put subscription {name}"))?;
            if let Value::Object(m) = &mut s {
                m.insert("created".into(), json!(created));
            }
            print(&s)
        }
        SubCmd::Get { name, client } => print(
            &client
                .client()?
                .subscription(&name)
                .await
                .with_context(|| format!("subscription {name}"))?,
        ),
        SubCmd::List { client } => print(
            &client
                .client()?
                .list_subscriptions()
                .await
                .context("list subscriptions")?,
        ),
        SubCmd::Pause { name, client } => print(
            &client
                .client()?
                .pause_subscription(&name, true)
                .await
                .with_context(|| format!("pause subscription {name}"))?,
        ),
        SubCmd::Resume { name, client } => print(
            &client
                .client()?
                .pause_subscription(&name, false)
                .await
                .with_context(|| format!("resume subscription {name}"))?,
        ),
        SubCmd::Delete { name, client } => {
            client
                .client()?
                .delete_subscription(&name)
                .await
                .with_context(|| format!("delete subscription {name}"))?;
            print(&json!({"name": name, "deleted": true}))
        }
        SubCmd::DeadLetters {
            name,
            limit,
            client,
        } => print(
            &client
                .client()?
                .subscription_dead_letters(&name, limit)
                .await
                .with_context(|| format!("dead letters of subscription {name}"))?,
        ),
    }
}
