//! `perdure orch ...`: orchestration instances through `perdure-client` (start, status, wait,
//! list, raise, terminate, suspend, resume, rewind, restart, purge). Every command prints JSON.

use crate::client_cmd::{parse_input, ClientFlags};
use anyhow::{bail, Context};
use clap::{Args, Subcommand};
use perdure_client::{Client, OrchestrationFilter, RuntimeStatus, StartOptions};
use serde_json::json;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// How long one long poll of `orch wait` lasts before it prints its progress.
const PROGRESS_EVERY: Duration = Duration::from_secs(5);

/// The orchestration commands.
#[derive(Subcommand, Debug)]
pub enum OrchCmd {
    /// Start an orchestration: `perdure orch start HelloSequence`. Prints its id and management
    /// URLs.
    Start {
        /// The orchestrator's name.
        name: String,
        /// Its input: JSON, or else taken as a JSON string.
        input: Option<String>,
        /// The instance id [default: a new random id].
        #[arg(long)]
        id: Option<String>,
        /// Start no earlier than this time (RFC 3339, like 2030-01-01T09:00:00Z).
        #[arg(long)]
        at: Option<String>,
        /// The statuses (comma-separated) an existing instance of the id may have to be
        /// replaced, or `none` [default: Completed,Failed,Terminated].
        #[arg(long)]
        reuse: Option<String>,
        /// The orchestrator version to record.
        #[arg(long)]
        version: Option<String>,
        #[command(flatten)]
        client: ClientFlags,
    },
    /// Print an instance's status (`--history`: with its history).
    Status {
        /// The instance id.
        id: String,
        /// Include the history (payloads included).
        #[arg(long)]
        history: bool,
        #[command(flatten)]
        client: ClientFlags,
    },
    /// Wait until an instance finishes, printing progress to stderr, then print its status.
    /// Exits non-zero if it failed or did not finish in time.
    Wait {
        /// The instance id.
        id: String,
        /// Give up after this many seconds.
        #[arg(long, default_value_t = 300)]
        timeout: u64,
        #[command(flatten)]
        client: ClientFlags,
    },
    /// List instances (filters combine): `perdure orch list --status Running`.
    List {
        #[command(flatten)]
        filter: FilterArgs,
        /// Instances per page (the server caps it at 1000) [default: 100].
        #[arg(long)]
        top: Option<u32>,
        /// Follow the continuation through every page and print them as one.
        #[arg(long)]
        all: bool,
        #[command(flatten)]
        client: ClientFlags,
    },
    /// Raise an event on an instance: `perdure orch raise ID Approval true`.
    Raise {
        /// The instance id.
        id: String,
        /// The event's name.
        event: String,
        /// Its data: JSON, or else taken as a JSON string.
        data: Option<String>,
        #[command(flatten)]
        client: ClientFlags,
    },
    /// Terminate an instance.
    Terminate {
        /// The instance id.
        id: String,
        /// Why (its output).
        #[arg(long)]
        reason: Option<String>,
        /// Terminate its sub-orchestrations too.
        #[arg(long)]
        recursive: bool,
        #[command(flatten)]
        client: ClientFlags,
    },
    /// Suspend an instance: its events wait until it is resumed.
    Suspend {
        /// The instance id.
        id: String,
        /// Why.
        #[arg(long)]
        reason: Option<String>,
        #[command(flatten)]
        client: ClientFlags,
    },
    /// Resume a suspended instance.
    Resume {
        /// The instance id.
        id: String,
        /// Why.
        #[arg(long)]
        reason: Option<String>,
        #[command(flatten)]
        client: ClientFlags,
    },
    /// Rewind a failed instance.
    Rewind {
        /// The instance id.
        id: String,
        /// Why.
        #[arg(long)]
        reason: Option<String>,
        #[command(flatten)]
        client: ClientFlags,
    },
    /// Start an instance's orchestrator again with its input, under a new id (or `--same-id`,
    /// replacing the finished instance). Prints the new instance's id and URLs.
    Restart {
        /// The instance id.
        id: String,
        /// Restart under the same id (the instance must have finished).
        #[arg(long)]
        same_id: bool,
        #[command(flatten)]
        client: ClientFlags,
    },
    /// Purge a finished instance (`purge ID`), or every finished instance the filters select
    /// (`purge --status Completed --prefix test-`). Prints how many were removed.
    Purge {
        /// The instance id (none: purge by the filters).
        id: Option<String>,
        /// With an id: its sub-orchestrations too.
        #[arg(long)]
        recursive: bool,
        #[command(flatten)]
        filter: FilterArgs,
        #[command(flatten)]
        client: ClientFlags,
    },
}

/// Which instances a listing or a purge selects.
#[derive(Args, Debug, Clone, Default)]
pub struct FilterArgs {
    /// Statuses, comma-separated (Pending, Running, Completed, ContinuedAsNew, Failed,
    /// Terminated, Suspended; any case).
    #[arg(long)]
    status: Option<String>,
    /// Instance ids starting with this.
    #[arg(long)]
    prefix: Option<String>,
    /// Created at or after this time (RFC 3339).
    #[arg(long)]
    from: Option<String>,
    /// Created before this time (RFC 3339).
    #[arg(long)]
    to: Option<String>,
    /// Only instances quarantined as poison.
    #[arg(long)]
    poisoned: bool,
}

impl FilterArgs {
    fn is_empty(&self) -> bool {
        self.status.is_none()
            && self.prefix.is_none()
            && self.from.is_none()
            && self.to.is_none()
            && !self.poisoned
    }

    fn filter(&self) -> anyhow::Result<OrchestrationFilter> {
        Ok(OrchestrationFilter {
            runtime_status: match &self.status {
                Some(s) => statuses(s)?,
                None => Vec::new(),
            },
            created_from: self.from.as_deref().map(time).transpose()?,
            created_to: self.to.as_deref().map(time).transpose()?,
            instance_id_prefix: self.prefix.clone(),
            poisoned: self.poisoned,
        })
    }
}

/// `Completed,failed` as statuses.
fn statuses(text: &str) -> anyhow::Result<Vec<RuntimeStatus>> {
    text.split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(|s| s.parse::<RuntimeStatus>().map_err(anyhow::Error::from))
        .collect()
}

/// An RFC 3339 time.
fn time(text: &str) -> anyhow::Result<SystemTime> {
    let ms = perdure_types::time::parse_rfc3339(text)?;
    Ok(UNIX_EPOCH + Duration::from_millis(ms))
}

fn print(v: &impl serde::Serialize) -> anyhow::Result<()> {
    println!("{}", serde_json::to_string_pretty(v)?);
    Ok(())
}

fn accepted(id: &str) -> anyhow::Result<()> {
    print(&json!({"instanceId": id, "accepted": true}))
}

/// Runs one `perdure orch` command.
pub async fn run(cmd: OrchCmd) -> anyhow::Result<()> {
    match cmd {
        OrchCmd::Start {
            name,
            input,
            id,
            at,
            reuse,
            version,
            client,
        } => {
            let options = StartOptions {
                scheduled_start: at.as_deref().map(time).transpose()?,
                reuse_policy: match reuse.as_deref() {
                    Some(r) if r.trim().eq_ignore_ascii_case("none") => Some(Vec::new()),
                    Some(r) => Some(statuses(r)?),
                    None => None,
                },
                version,
            };
            let started = client
                .client()?
                .start_orchestration_with(
                    &name,
                    id.as_deref(),
                    input.as_deref().map(parse_input),
                    &options,
                )
                .await
                .with_context(|| format!("start {name}"))?;
            print(&started)
        }
        OrchCmd::Status {
            id,
            history,
            client,
        } => {
            let s = client
                .client()?
                .orchestration_status(&id, history)
                .await
                .with_context(|| format!("status of {id}"))?;
            print(&s)
        }
        OrchCmd::Wait {
            id,
            timeout,
            client,
        } => wait(&client.client()?, &id, Duration::from_secs(timeout)).await,
        OrchCmd::List {
            filter,
            top,
            all,
            client,
        } => list(&client.client()?, &filter.filter()?, top, all).await,
        OrchCmd::Raise {
            id,
            event,
            data,
            client,
        } => {
            client
                .client()?
                .raise_event(&id, &event, data.as_deref().map(parse_input))
                .await
                .with_context(|| format!("raise {event} on {id}"))?;
            accepted(&id)
        }
        OrchCmd::Terminate {
            id,
            reason,
            recursive,
            client,
        } => {
            client
                .client()?
                .terminate(&id, reason.as_deref(), recursive)
                .await
                .with_context(|| format!("terminate {id}"))?;
            accepted(&id)
        }
        OrchCmd::Suspend { id, reason, client } => {
            client
                .client()?
                .suspend(&id, reason.as_deref())
                .await
                .with_context(|| format!("suspend {id}"))?;
            accepted(&id)
        }
        OrchCmd::Resume { id, reason, client } => {
            client
                .client()?
                .resume(&id, reason.as_deref())
                .await
                .with_context(|| format!("resume {id}"))?;
            accepted(&id)
        }
        OrchCmd::Rewind { id, reason, client } => {
            client
                .client()?
                .rewind(&id, reason.as_deref())
                .await
                .with_context(|| format!("rewind {id}"))?;
            accepted(&id)
        }
        OrchCmd::Restart {
            id,
            same_id,
            client,
        } => {
            let started = client
                .client()?
                .restart(&id, !same_id)
                .await
                .with_context(|| format!("restart {id}"))?;
            print(&started)
        }
        OrchCmd::Purge {
            id,
            recursive,
            filter,
            client,
        } => {
            let c = client.client()?;
            let n = match id {
                Some(id) => {
                    if !filter.is_empty() {
                        bail!("give an instance id or filters, not both");
                    }
                    c.purge_orchestration(&id, recursive)
                        .await
                        .with_context(|| format!("purge {id}"))?
                }
                None => {
                    if recursive {
                        bail!("--recursive needs an instance id");
                    }
                    c.purge_orchestrations(&filter.filter()?)
                        .await
                        .context("purge by filter")?
                }
            };
            print(&json!({ "instancesDeleted": n }))
        }
    }
}

/// `orch wait`: long polls of [`PROGRESS_EVERY`], a progress line on stderr after each, the
/// final status on stdout; an error (exit 1) when the instance failed or is still going.
async fn wait(c: &Client, id: &str, timeout: Duration) -> anyhow::Result<()> {
    let started = Instant::now();
    let status = loop {
        let left = timeout.saturating_sub(started.elapsed());
        let s = c
            .wait_for_orchestration(id, left.min(PROGRESS_EVERY))
            .await
            .with_context(|| format!("wait for {id}"))?;
        if s.runtime_status.is_terminal() || started.elapsed() >= timeout {
            break s;
        }
        eprintln!(
            "waiting for {id}: {} ({} s)",
            s.runtime_status,
            started.elapsed().as_secs()
        );
    };
    print(&status)?;
    match status.runtime_status {
        RuntimeStatus::Failed => {
            let why = status
                .failure_details
                .map(|f| format!("{}: {}", f.error_type, f.error_message))
                .unwrap_or_default();
            bail!("instance {id} failed: {why}")
        }
        s if !s.is_terminal() => bail!(
            "instance {id} did not finish within {} s (it is {s})",
            timeout.as_secs()
        ),
        _ => Ok(()),
    }
}

/// `orch list`: one page, or with `all` every page as one.
async fn list(
    c: &Client,
    filter: &OrchestrationFilter,
    top: Option<u32>,
    all: bool,
) -> anyhow::Result<()> {
    let mut page = c
        .list_orchestrations(filter, top, None)
        .await
        .context("list instances")?;
    if all {
        let mut instances = std::mem::take(&mut page.instances);
        while let Some(token) = page.continuation.take() {
            page = c
                .list_orchestrations(filter, top, Some(&token))
                .await
                .context("list instances (continuing)")?;
            if page.continuation.as_deref() == Some(token.as_str()) {
                bail!("the server returned the same continuation token twice: {token:?}");
            }
            instances.append(&mut page.instances);
        }
        page.instances = instances;
    }
    print(&json!({ "instances": page.instances, "continuation": page.continuation }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_and_times_parse() {
        assert_eq!(
            statuses("completed, Failed").unwrap(),
            vec![RuntimeStatus::Completed, RuntimeStatus::Failed]
        );
        assert!(statuses("done").is_err());
        assert_eq!(
            time("1970-01-01T00:00:01Z").unwrap(),
            UNIX_EPOCH + Duration::from_secs(1)
        );
        assert!(time("yesterday").is_err());
        assert!(FilterArgs::default().is_empty());
    }
}
