//! `perdure`: the one binary. `perdure serve` runs a node; `signal`, `call`, `get`, `list`,
//! `orch ...` and `sub ...` are clients of a node's HTTP API; other subcommands are tools.

mod cert;
mod client_cmd;
mod logging;
mod orch_cmd;
mod sub_cmd;

use anyhow::Context;
use clap::{Args, Parser, Subcommand};
use client_cmd::{ClientFlags, EntityArg};
use perdure_cluster::Partitions;
use perdure_types::command::{Command, Op, OpResult};
use perdure_types::config::NodeConfig;
use perdure_types::EntityId;
use std::io::Write;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

#[derive(Parser, Debug)]
#[command(
    name = "perdure",
    version,
    about = "Durable entities and orchestrations: one fast binary that keeps every acknowledged operation."
)]
struct Cli {
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Subcommand, Debug)]
enum Cmd {
    /// Run a node (single-node by default: no config needed).
    Serve(NodeFlags),
    /// Cluster tools.
    #[command(subcommand)]
    Cluster(ClusterCmd),
    /// Signal an entity: `perdure signal counter/a add 5`. Prints the acknowledgement.
    Signal {
        /// The entity, NAME/KEY.
        entity: EntityArg,
        /// The operation.
        op: String,
        /// Its input: JSON, or else taken as a JSON string.
        input: Option<String>,
        /// Idempotency key: a signal sent again with the same key is not applied again
        /// [default: a fresh random key].
        #[arg(long)]
        idempotency_key: Option<String>,
        #[command(flatten)]
        client: ClientFlags,
    },
    /// Run an operation and print its result: `perdure call counter/a get`.
    Call {
        /// The entity, NAME/KEY.
        entity: EntityArg,
        /// The operation.
        op: String,
        /// Its input: JSON, or else taken as a JSON string.
        input: Option<String>,
        #[command(flatten)]
        client: ClientFlags,
    },
    /// Print an entity's state: `perdure get counter/a` (fails if it does not exist).
    Get {
        /// The entity, NAME/KEY.
        entity: EntityArg,
        #[command(flatten)]
        client: ClientFlags,
    },
    /// List the entities of a type: `perdure list counter`.
    List {
        /// The entity type.
        name: String,
        /// Entities per page (the server caps it at 1000) [default: 100].
        #[arg(long)]
        top: Option<u32>,
        /// Follow the continuation through every page and print them as one.
        #[arg(long)]
        all: bool,
        #[command(flatten)]
        client: ClientFlags,
    },
    /// Orchestrations: `perdure orch start HelloSequence`, `orch status ID`, `orch wait ID`,
    /// `orch list`, `orch raise ID EVENT [DATA]`, `orch terminate|suspend|resume|rewind|restart
    /// ID`, `orch purge [ID]`. Every command prints JSON.
    #[command(subcommand)]
    Orch(orch_cmd::OrchCmd),
    /// Stream subscriptions: `perdure sub put NAME --file spec.json`, `sub get NAME`, `sub
    /// list`, `sub pause|resume|delete NAME`, `sub dead-letters NAME [--limit N]`. Every command
    /// prints JSON.
    #[command(subcommand)]
    Sub(sub_cmd::SubCmd),
    /// Make a CA and node certificates for the node channel's TLS (`[cluster.tls]`) of a local
    /// cluster: `perdure cert --dir perdure-certs --nodes 1,2,3` (again with more ids to add
    /// nodes: the CA in the directory is reused).
    Cert(cert::CertArgs),
    /// Developer and test tools (not a stable interface).
    #[command(hide = true, subcommand)]
    Debug(DebugCmd),
}

/// Settings of a node; each flag overrides the config file and `PERDURE_*` variables.
#[derive(Args, Debug, Clone)]
struct NodeFlags {
    /// TOML config file (see config/ for examples).
    #[arg(long, short)]
    config: Option<PathBuf>,
    /// Data directory [default: ./perdure-data].
    #[arg(long)]
    data_dir: Option<PathBuf>,
    /// HTTP listen address HOST:PORT [default: 127.0.0.1:7071].
    #[arg(long)]
    http_addr: Option<String>,
    /// Durable Task gRPC listen address HOST:PORT (`grpc.addr`; port 0: a free port)
    /// [default: 127.0.0.1:4001].
    #[arg(long)]
    grpc_addr: Option<String>,
    /// Number of partitions; fixed when the data directory is created [default: 16].
    #[arg(long)]
    partitions: Option<u32>,
    /// This node's id [default: 1].
    #[arg(long)]
    node_id: Option<u64>,
    /// Build a snapshot every N log entries [default: 10000].
    #[arg(long, hide = true)]
    snapshot_every: Option<u64>,
    /// WAL segment size in bytes [default: 64 MiB].
    #[arg(long, hide = true)]
    wal_segment_bytes: Option<u64>,
}

impl NodeFlags {
    fn load(&self) -> anyhow::Result<NodeConfig> {
        use toml::Value;
        let mut o: Vec<(String, Value)> = Vec::new();
        if let Some(v) = &self.data_dir {
            o.push(("data_dir".into(), Value::String(v.display().to_string())));
        }
        if let Some(v) = &self.http_addr {
            o.push(("http_addr".into(), Value::String(v.clone())));
        }
        if let Some(v) = &self.grpc_addr {
            o.push(("grpc.addr".into(), Value::String(v.clone())));
        }
        if let Some(v) = self.partitions {
            o.push(("partitions".into(), Value::Integer(v.into())));
        }
        if let Some(v) = self.node_id {
            o.push(("node_id".into(), Value::Integer(v as i64)));
        }
        if let Some(v) = self.snapshot_every {
            o.push((
                "raft.snapshot_every_entries".into(),
                Value::Integer(v as i64),
            ));
        }
        if let Some(v) = self.wal_segment_bytes {
            o.push(("wal.segment_bytes".into(), Value::Integer(v as i64)));
            o.push((
                "wal.max_batch_bytes".into(),
                Value::Integer((v as i64).min(8 << 20)),
            ));
        }
        Ok(perdure_node::config::load(
            self.config.as_deref(),
            std::env::vars(),
            o,
        )?)
    }
}

#[derive(Subcommand, Debug)]
enum ClusterCmd {
    /// Members and their health, partitions with their replicas and leaders, as a node sees them.
    Status {
        #[command(flatten)]
        client: client_cmd::ClientFlags,
    },
    /// Removes a member for good; its replicas move to the other members (watch `cluster
    /// status`). To add a node, start it with its own config listing the members as seeds.
    Remove {
        /// The node id to remove.
        node_id: u64,
        #[command(flatten)]
        client: client_cmd::ClientFlags,
    },
}

#[derive(Subcommand, Debug)]
enum DebugCmd {
    /// Concurrent clients enqueue numbered messages; prints `ack CLIENT RUN I SEQ` after each
    /// acknowledged (durable, applied) write. Runs until `--ops` per client or until killed.
    Load {
        #[command(flatten)]
        node: NodeFlags,
        /// Concurrent clients; client c writes to entity `crash/c{c}`.
        #[arg(long, default_value_t = 16)]
        clients: u32,
        /// A tag written into every message (`RUN:I`).
        #[arg(long, default_value_t = 0)]
        run: u64,
        /// Writes per client; 0 = until killed.
        #[arg(long, default_value_t = 0)]
        ops: u64,
    },
    /// Prints each client's inbox of `debug load` as a JSON line: `{"client":c,"items":[[seq,"RUN:I"],...]}`.
    Dump {
        #[command(flatten)]
        node: NodeFlags,
        /// Number of clients to dump.
        #[arg(long, default_value_t = 16)]
        clients: u32,
    },
}

/// How long a node may take to stop once asked (SIGTERM or Ctrl-C) before the process exits
/// anyway: longer than the node's own bounded stop (two request graces, then storage), so it
/// only fires when something hangs. A second signal exits at once.
const STOP_DEADLINE: Duration = Duration::from_secs(45);

/// Completes on Ctrl-C or SIGTERM. The handlers are installed at once (before the node starts),
/// so a signal that arrives during start-up still stops the node cleanly. From the first signal
/// on, the stop is bounded: a second signal, or [`STOP_DEADLINE`] passing, exits the process
/// with status 1 (nothing acknowledged depends on a clean stop: acknowledgements follow fsync).
fn shutdown_signal() -> anyhow::Result<impl std::future::Future<Output = ()>> {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        let mut int = signal(SignalKind::interrupt()).context("installing the SIGINT handler")?;
        let mut term = signal(SignalKind::terminate()).context("installing the SIGTERM handler")?;
        Ok(async move {
            tokio::select! {
                _ = int.recv() => {}
                _ = term.recv() => {}
            }
            tokio::spawn(async move {
                tokio::select! {
                    _ = int.recv() => {}
                    _ = term.recv() => {}
                }
                tracing::error!("second stop signal: exiting now");
                std::process::exit(1);
            });
            force_exit_after(STOP_DEADLINE);
        })
    }
    #[cfg(not(unix))]
    {
        Ok(async {
            let _ = tokio::signal::ctrl_c().await;
            force_exit_after(STOP_DEADLINE);
        })
    }
}

/// Exits the process with status 1 if it still runs `after` from now. A plain thread, so a
/// stuck async runtime cannot hold it up.
fn force_exit_after(after: Duration) {
    std::thread::spawn(move || {
        std::thread::sleep(after);
        tracing::error!(
            deadline_s = after.as_secs(),
            "the node did not stop within the deadline; exiting now"
        );
        std::process::exit(1);
    });
}

/// Raises the open-files soft limit to the hard limit (every HTTP and peer connection, WAL
/// segment and state file takes a descriptor) and logs both.
fn raise_open_files_limit() {
    let f = perdure_node::limits::raise_open_files_limit();
    let show = |v: Option<u64>| v.map_or_else(|| "unlimited".to_string(), |n| n.to_string());
    tracing::info!(
        before = %show(f.before),
        now = %show(f.after),
        hard = %show(f.hard),
        "open-files limit"
    );
    if f.after.is_some_and(|n| n < 4096) {
        tracing::warn!(
            now = %show(f.after),
            "the open-files limit is low: HTTP connections are capped at half of it \
             (raise the hard limit, e.g. LimitNOFILE= in systemd or ulimit -Hn)"
        );
    }
}

/// mimalloc instead of glibc malloc: under load the node allocates per request, per Raft entry
/// and per state page, and glibc's malloc/free/consolidate took about 15% of its CPU.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();

    // `serve` logs as its config says; other commands use the defaults (and the environment)
    let serve_config = match &cli.command {
        Cmd::Serve(flags) => Some(flags.load()?),
        _ => None,
    };
    logging::init(
        &serve_config
            .as_ref()
            .map(|c| c.log.clone())
            .unwrap_or_default(),
    );
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    rt.block_on(async move {
        match cli.command {
            Cmd::Cert(args) => cert::run(args),
            Cmd::Serve(flags) => {
                let config = match serve_config {
                    Some(c) => c,
                    None => flags.load()?,
                };
                let shutdown = shutdown_signal()?;
                raise_open_files_limit();
                let listener = tokio::net::TcpListener::bind(&config.http_addr)
                    .await
                    .with_context(|| format!("cannot listen on http_addr {}", config.http_addr))?;
                perdure_node::run(config, listener, shutdown).await?;
                Ok(())
            }
            Cmd::Signal {
                entity,
                op,
                input,
                idempotency_key,
                client,
            } => {
                client_cmd::signal(
                    &client,
                    &entity,
                    &op,
                    input.as_deref(),
                    idempotency_key.as_deref(),
                )
                .await
            }
            Cmd::Call {
                entity,
                op,
                input,
                client,
            } => client_cmd::call(&client, &entity, &op, input.as_deref()).await,
            Cmd::Get { entity, client } => client_cmd::get(&client, &entity).await,
            Cmd::Cluster(ClusterCmd::Status { client }) => {
                client_cmd::cluster_status(&client).await
            }
            Cmd::Cluster(ClusterCmd::Remove { node_id, client }) => {
                client_cmd::remove_member(&client, node_id).await
            }
            Cmd::List {
                name,
                top,
                all,
                client,
            } => client_cmd::list(&client, &name, top, all).await,
            Cmd::Orch(cmd) => orch_cmd::run(cmd).await,
            Cmd::Sub(cmd) => sub_cmd::run(cmd).await,
            Cmd::Debug(DebugCmd::Load {
                node,
                clients,
                run,
                ops,
            }) => debug_load(node.load()?, clients, run, ops).await,
            Cmd::Debug(DebugCmd::Dump { node, clients }) => debug_dump(node.load()?, clients).await,
        }
    })
}

fn client_entity(c: u32) -> EntityId {
    EntityId::new("crash", &format!("c{c}")).expect("valid id")
}

async fn start(config: &NodeConfig) -> anyhow::Result<Partitions> {
    let parts = Partitions::start(config).await?;
    parts.wait_ready(Duration::from_secs(30)).await?;
    Ok(parts)
}

async fn debug_load(config: NodeConfig, clients: u32, run: u64, ops: u64) -> anyhow::Result<()> {
    let parts = Arc::new(start(&config).await?);
    let mut tasks = Vec::new();
    for c in 0..clients {
        let parts = parts.clone();
        tasks.push(tokio::spawn(async move {
            let entity = client_entity(c);
            let p = parts.partition_of(&entity);
            let mut i = 0u64;
            while ops == 0 || i < ops {
                let cmd = Command::single(Op::Enqueue {
                    target: perdure_types::Target::Entity(entity.clone()),
                    message: format!("{run}:{i}").into_bytes(),
                });
                match parts.propose(p, cmd).await {
                    Ok(r) => {
                        let Some(OpResult::Enqueued(seq)) = r.first() else {
                            anyhow::bail!("unexpected result {r:?}");
                        };
                        let mut out = std::io::stdout().lock();
                        writeln!(out, "ack {c} {run} {i} {seq}")?;
                        out.flush()?;
                    }
                    Err(e) => anyhow::bail!("client {c}: {e}"),
                }
                i += 1;
            }
            Ok(())
        }));
    }
    for t in tasks {
        t.await??;
    }
    let parts = Arc::try_unwrap(parts).map_err(|_| anyhow::anyhow!("partitions still shared"))?;
    parts.shutdown().await;
    Ok(())
}

async fn debug_dump(config: NodeConfig, clients: u32) -> anyhow::Result<()> {
    let parts = start(&config).await?;
    for c in 0..clients {
        let entity = client_entity(c);
        let state = parts.read(parts.partition_of(&entity)).await?;
        let items: Vec<(u64, String)> = state
            .inbox()
            .messages(&perdure_types::Target::Entity(entity))?
            .into_iter()
            .map(|(seq, m)| (seq, String::from_utf8_lossy(&m).into_owned()))
            .collect();
        println!("{}", serde_json::json!({ "client": c, "items": items }));
    }
    parts.shutdown().await;
    Ok(())
}
