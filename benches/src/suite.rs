//! `perdure-bench suite`: every headline scenario in one run, so ratios compare like with like.
//!
//! 1. Limits of this machine: raw append + `fdatasync` on the disk the nodes use (one record per
//!    sync, and batched), an in-memory actor round trip (no persistence), and (with a node up)
//!    an HTTP round trip to a handler that does nothing.
//! 2. Systems, one after another on the same machine: one perdure node, a 3-node perdure cluster
//!    (replication 3, durability on, started from the real binary on 127.0.0.x), and the Restate
//!    peer (`benches/peers/restate.sh`). On each: hot key (closed-loop max, then an open-loop
//!    rate sweep), many keys (10k and 100k counters, uniform and zipf; sweep on 10k uniform),
//!    batched signals (perdure), the latency floor (calls at 100/s, open loop), and on the
//!    cluster a failover (steady open-loop load, `kill -9` of the node leading most partitions).
//! 3. Around every perdure scenario the nodes' metrics are read: Raft entries and fsyncs the load
//!    cost (adds per entry, entries per fsync) and node CPU.
//! 4. With `--channel tls,mac` the 3-node cluster runs twice, its node channel on TLS
//!    (`[cluster.tls]`, certificates by `perdure cert`) and on the MAC'd plain channel (the shared
//!    secret): hot key, many keys and calls one at a time on both, compared side by side.
//! 5. With `--systems ingest` (not in the default set: it preloads millions of records),
//!    stream ingestion from a Kafka broker on 1 node and 3 nodes (`ingest.rs`), after the rest.
//!
//! Writes `results.json`, `summary.md` (the tables) and SVG plots into `--out`.

use crate::limits::{self, Limit};
use crate::load::{self, Dist, Op, Outcome, Plan, Target};
use crate::orchestrations;
use crate::plot::{self, Panel, Series};
use crate::scrape::{self, Batching};
use anyhow::{bail, Context};
use perdure_harness::{Node, NodeSpec};
use serde_json::json;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// Options of `perdure-bench suite`.
#[derive(Debug, Clone, clap::Args)]
pub struct SuiteArgs {
    /// Where results, tables and plots go (default `target/bench/suite-<unix time>`).
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// The `perdure` binary to run (default: `perdure` next to this program, e.g.
    /// `target/release/perdure`).
    #[arg(long)]
    pub bin: Option<PathBuf>,
    /// Where the nodes keep their data (the disk measured for the fsync limit). Default: `--out`.
    #[arg(long)]
    pub data_dir: Option<PathBuf>,
    /// Seconds measured per scenario (after the warm-up).
    #[arg(long, default_value_t = 8.0)]
    pub seconds: f64,
    /// Seconds of warm-up per scenario.
    #[arg(long, default_value_t = 2.0)]
    pub warmup: f64,
    /// Seconds per point of a rate sweep.
    #[arg(long, default_value_t = 4.0)]
    pub sweep_seconds: f64,
    /// Partitions of the perdure systems.
    #[arg(long, default_value_t = 16)]
    pub partitions: u32,
    /// Which systems to run, comma-separated: `single`, `cluster` (every scenario: entities,
    /// then orchestrations), `restate`; `single-orch`, `cluster-orch` (the orchestration
    /// scenarios only), `orchestrations` (= `single-orch,cluster-orch`), `duroxide` (the
    /// orchestration peer, `benches/peers/duroxide.sh`), `sdk` (the Durable Task Python SDK as
    /// worker and client on 1 and 3 nodes and its in-memory backend), `ingest` (stream
    /// ingestion from a Kafka broker on 1 and 3 nodes, uniform and zipf: `ingest.rs`).
    #[arg(long, value_delimiter = ',', default_value = "single,cluster,restate")]
    pub systems: Vec<Pick>,
    /// Records the ingestion scenarios preload (`--systems ingest`; quick: 100,000).
    #[arg(long, default_value_t = 2_000_000)]
    pub ingest_records: u64,
    /// HelloSequence5 instances measured for the throughput (after 5% warm-up).
    #[arg(long, default_value_t = 10_000)]
    pub orch_instances: u64,
    /// HelloSequence5 instances in flight in the throughput scenario (closed loop).
    #[arg(long, default_value_t = 256)]
    pub orch_concurrency: usize,
    /// HelloSequence5 instances run one at a time for the latency.
    #[arg(long, default_value_t = 1_000)]
    pub orch_latency_instances: u64,
    /// Activities of the fan-out/fan-in scenario.
    #[arg(long, default_value_t = 1_000)]
    pub fan_out: u64,
    /// HelloSequence5 instances the duroxide peer runs for its throughput (it is slow).
    #[arg(long, default_value_t = 1_000)]
    pub duroxide_instances: u64,
    /// HelloSequence5 instances the Python SDK scenarios measure for the throughput.
    #[arg(long, default_value_t = 1_000)]
    pub sdk_instances: u64,
    /// The duroxide peer's dispatcher poll interval, ms (its default is 100).
    #[arg(long, default_value_t = 2)]
    pub duroxide_poll_ms: u64,
    /// The duroxide peer's orchestration+activity slots per throughput run, comma-separated
    /// (`2` is its default of 2 + 2).
    #[arg(long, default_value = "2,8")]
    pub duroxide_slots: String,
    /// A smoke run: short scenarios, small key counts, two sweep points (numbers meaningless;
    /// proves the suite works end to end).
    #[arg(long)]
    pub quick: bool,
    /// The node channels the 3-node cluster runs on, comma-separated: `mac` (the shared secret,
    /// every frame MAC'd: all the cluster's scenarios and the failover), `tls` (`[cluster.tls]`:
    /// hot key, many keys and calls one at a time, to compare with `mac` in the same run).
    #[arg(long, value_delimiter = ',', default_value = "mac")]
    pub channel: Vec<Channel>,
}

/// What `--systems` selects: a system and which of its scenarios.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Pick {
    /// One perdure node: every scenario.
    Single,
    /// Three perdure nodes (RF 3): every scenario.
    Cluster,
    /// One perdure node: the orchestration scenarios only.
    SingleOrch,
    /// Three perdure nodes: the orchestration scenarios only.
    ClusterOrch,
    /// `single-orch` and `cluster-orch`.
    Orchestrations,
    /// The Restate peer (entities).
    Restate,
    /// The duroxide peer (orchestrations).
    Duroxide,
    /// The official Durable Task Python SDK as worker and client: HelloSequence5 against one
    /// perdure node, three, and the SDK's own in-memory backend; entity signals from its client
    /// against a Rust entity (`benches/peers/durabletask/`; needs `bash .ci/sdk-env.sh`).
    Sdk,
    /// Stream ingestion from a Kafka broker (`perdure-bench ingest`): 1 node and 3 nodes,
    /// uniform and zipf keys.
    Ingest,
}

/// Which scenarios of a system run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Scope {
    /// Entities, then orchestrations.
    All,
    /// Orchestrations only.
    Orchestrations,
}

/// The node channel of the 3-node cluster.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Channel {
    /// The shared secret: a proven handshake, then a MAC on every frame.
    Mac,
    /// TLS 1.3 with certificates of the cluster's CA.
    Tls,
}

/// A system under test.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum System {
    /// One perdure node.
    Single,
    /// Three perdure nodes, replication 3.
    Cluster,
    /// Three perdure nodes, replication 3, the node channel on TLS (`--channel tls`).
    #[value(skip)]
    #[serde(rename = "cluster-tls")]
    ClusterTls,
    /// The Restate peer, one node.
    Restate,
    /// The duroxide peer (in-process Rust, SQLite).
    Duroxide,
    /// The Python SDK's scenarios (their rows carry the backend they ran on).
    #[value(skip)]
    Sdk,
    /// The Durable Task Python SDK's in-memory backend (durabletask 1.12.0, not durable).
    #[value(skip)]
    #[serde(rename = "sdk-inmemory")]
    SdkInMemory,
}

impl System {
    fn label(self) -> &'static str {
        match self {
            System::Single => "perdure, 1 node",
            System::Cluster => "perdure, 3 nodes (RF 3)",
            System::ClusterTls => "perdure, 3 nodes (RF 3), TLS node channel",
            System::Restate => "Restate 1.7.12, 1 node",
            System::Duroxide => "duroxide 0.1.32, SQLite",
            System::Sdk => "the Durable Task Python SDK (durabletask 1.12.0)",
            System::SdkInMemory => "durabletask 1.12.0 in-memory backend",
        }
    }
}

/// One scenario's result.
#[derive(Debug, Clone)]
struct Row {
    system: System,
    scenario: String,
    outcome: Outcome,
    batching: Option<Batching>,
}

impl Row {
    fn json(&self) -> serde_json::Value {
        let mut v = self.outcome.json();
        v["system"] = json!(self.system);
        v["scenario"] = json!(self.scenario);
        if let Some(b) = &self.batching {
            v["batching"] = json!(b);
            v["adds_per_entry"] = json!(self.adds_per_entry());
        }
        v
    }

    fn adds_per_entry(&self) -> Option<f64> {
        let b = self.batching.as_ref()?;
        (b.entries > 0.0).then(|| self.outcome.acknowledged as f64 / b.entries)
    }
}

/// One orchestration scenario's result: the outcome's JSON (`OrchOutcome::json`, or the
/// duroxide peer's rows of the same shape) and, for perdure, what the nodes' metrics said.
#[derive(Debug, Clone)]
struct OrchRow {
    system: System,
    scenario: String,
    v: serde_json::Value,
    batching: Option<Batching>,
    /// Wall seconds the scenario took, warm-up included (node cores = CPU / this).
    wall: f64,
}

impl OrchRow {
    fn json(&self) -> serde_json::Value {
        let mut v = self.v.clone();
        v["system"] = json!(self.system);
        v["scenario"] = json!(self.scenario);
        if let Some(b) = &self.batching {
            v["batching"] = json!(b);
            v["commands_per_entry"] = json!(self.commands_per_entry());
            v["commands_per_instance"] = json!(self.commands_per_instance());
            v["node_cores"] = json!(b.node_cpu_seconds / self.wall.max(1e-9));
        }
        v
    }

    fn f(&self, path: &[&str]) -> f64 {
        let mut v = &self.v;
        for p in path {
            v = &v[*p];
        }
        v.as_f64().unwrap_or(f64::NAN)
    }

    /// Commands per Raft entry, as the proposers counted them.
    fn commands_per_entry(&self) -> Option<f64> {
        let b = self.batching.as_ref()?;
        (b.proposals > 0.0).then(|| b.commands / b.proposals)
    }

    /// Commands per instance run (warm-up included in both).
    fn commands_per_instance(&self) -> Option<f64> {
        let b = self.batching.as_ref()?;
        let n = self.v["instances_run"].as_f64()?;
        (n > 0.0).then(|| b.commands / n)
    }

    fn markdown(&self) -> String {
        let opt = |x: Option<f64>, d: usize| x.map_or("-".to_string(), |x| format!("{x:.d$}"));
        let b = self.batching.as_ref();
        format!(
            "| {} | {} | {:.0} | {:.2} ms | {:.2} ms | {} | {} | {} | {} | {} | {} | {:.2} |",
            short(self.system),
            self.scenario,
            self.f(&["instances_per_sec"]),
            self.f(&["latency_ms", "p50"]),
            self.f(&["latency_ms", "p99"]),
            self.f(&["completed"]),
            self.f(&["errors"]),
            opt(self.commands_per_instance(), 1),
            opt(self.commands_per_entry(), 1),
            opt(b.map(|b| b.entries_per_fsync), 1),
            opt(b.map(|b| b.node_cpu_seconds / self.wall.max(1e-9)), 2),
            self.f(&["generator_cpu"]),
        )
    }
}

/// One scenario the cluster ran on both node channels.
struct ChannelRow<'a> {
    scenario: &'a str,
    mac: &'a Row,
    tls: &'a Row,
}

impl ChannelRow<'_> {
    /// Node cores a run used (its node CPU over its duration), if measured.
    fn cores(r: &Row) -> Option<f64> {
        let secs = (r.outcome.plan.warmup + r.outcome.plan.measure).as_secs_f64();
        r.batching.as_ref().map(|b| b.node_cpu_seconds / secs)
    }

    fn json(&self) -> serde_json::Value {
        let (m, t) = (&self.mac.outcome, &self.tls.outcome);
        json!({
            "scenario": self.scenario,
            "mac_per_sec": m.per_sec, "tls_per_sec": t.per_sec,
            "tls_over_mac": t.per_sec / m.per_sec.max(1e-9),
            "mac_p50_ms": m.q(0.5), "tls_p50_ms": t.q(0.5),
            "mac_p99_ms": m.q(0.99), "tls_p99_ms": t.q(0.99),
            "mac_node_cores": Self::cores(self.mac), "tls_node_cores": Self::cores(self.tls),
        })
    }

    fn markdown(&self) -> String {
        let (m, t) = (&self.mac.outcome, &self.tls.outcome);
        let cores = |r| Self::cores(r).map_or("-".into(), |c| format!("{c:.2}"));
        format!(
            "| {} | {:.0} | {:.0} | {:.2} | {:.2} ms | {:.2} ms | {:.2} ms | {:.2} ms | {} | {} |",
            self.scenario,
            m.per_sec,
            t.per_sec,
            t.per_sec / m.per_sec.max(1e-9),
            m.q(0.5),
            t.q(0.5),
            m.q(0.99),
            t.q(0.99),
            cores(self.mac),
            cores(self.tls)
        )
    }
}

/// A running system.
enum Running {
    Perdure {
        nodes: Vec<Node>,
        urls: Vec<String>,
        /// Each node's gRPC address.
        grpc: Vec<String>,
    },
    Restate {
        url: String,
    },
}

impl Running {
    fn url(&self) -> String {
        match self {
            Running::Perdure { urls, .. } => urls[0].clone(),
            Running::Restate { url } => url.clone(),
        }
    }

    fn target(&self) -> Target {
        match self {
            Running::Perdure { .. } => Target::Perdure,
            Running::Restate { .. } => Target::Restate,
        }
    }

    fn stop(self) -> anyhow::Result<()> {
        match self {
            Running::Perdure { mut nodes, .. } => {
                for n in &mut nodes {
                    let _ = n.stop(Duration::from_secs(10));
                }
                Ok(())
            }
            Running::Restate { .. } => restate_script("stop"),
        }
    }
}

fn restate_script(what: &str) -> anyhow::Result<()> {
    let root = workspace_root();
    let status = std::process::Command::new("bash")
        .arg(root.join("benches/peers/restate.sh"))
        .arg(what)
        .current_dir(&root)
        .status()
        .context("running benches/peers/restate.sh")?;
    if !status.success() {
        bail!("benches/peers/restate.sh {what} failed ({status})");
    }
    Ok(())
}

pub(crate) fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from("."))
}

/// The node config of a benchmark system: the node's defaults (production Raft timeouts,
/// durability on); more than one member: a cluster with replication 3, its node channel on
/// the shared secret, or on TLS with the certificates in `tls` (made by [`make_certs`]).
pub(crate) fn write_config(
    spec: &NodeSpec,
    members: &[NodeSpec],
    partitions: u32,
    tls: Option<&Path>,
) -> anyhow::Result<()> {
    let members = if members.len() > 1 { members } else { &[] };
    let mut c = spec.config(members);
    c.partitions = partitions;
    // the orchestration scenarios run the samples (HelloSequence5, FanOutFanIn)
    c.samples.enabled = true;
    c.cluster.cluster_id = "bench".into();
    c.cluster.replication_factor = 3;
    match tls {
        None => c.cluster.secret = "bench-suite-secret-0123456789abcdef".into(),
        Some(dir) => {
            c.cluster.tls = Some(perdure_types::config::TlsConfig {
                ca: dir.join("ca.pem"),
                cert: dir.join(format!("node-{}.pem", spec.id)),
                key: dir.join(format!("node-{}.key", spec.id)),
            })
        }
    }
    Ok(spec.write_config(&c)?)
}

/// `perdure cert --dir DIR --nodes 1,..,n`: the cluster's CA and a certificate per node.
fn make_certs(bin: &Path, dir: &Path, nodes: u64) -> anyhow::Result<()> {
    let ids: Vec<String> = (1..=nodes).map(|i| i.to_string()).collect();
    let out = std::process::Command::new(bin)
        .args(["cert", "--dir"])
        .arg(dir)
        .args(["--nodes", &ids.join(",")])
        .output()
        .with_context(|| format!("running {} cert", bin.display()))?;
    if !out.status.success() {
        bail!(
            "perdure cert failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(())
}

/// Each partition's leader, from `GET /cluster` of `url` (`None` while one has none).
async fn leaders(url: &str) -> Option<Vec<(u32, u64)>> {
    let client = perdure_client::Client::builder(url)
        .routing(false)
        .attempts(1)
        .timeout(Duration::from_secs(10))
        .build()
        .ok()?;
    let v = client.cluster_status().await.ok()?;
    v["partitions"]
        .as_array()?
        .iter()
        .map(|p| Some((p["partition"].as_u64()? as u32, p["leader"].as_u64()?)))
        .collect()
}

/// Waits until every partition has a leader, every node leads some, and nothing moved for 3 s
/// (the leader balancer is done), at most 60 s.
pub(crate) async fn wait_balanced(url: &str, nodes: usize) {
    let t = Instant::now();
    let mut stable_since = Instant::now();
    let mut last = None;
    while t.elapsed() < Duration::from_secs(60) {
        let now = leaders(url).await;
        let spread = now.as_ref().is_some_and(|l| {
            let mut who: Vec<u64> = l.iter().map(|x| x.1).collect();
            who.sort_unstable();
            who.dedup();
            who.len() == nodes
        });
        if now != last || !spread {
            stable_since = Instant::now();
            last = now;
        } else if stable_since.elapsed() > Duration::from_secs(3) {
            return;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    eprintln!("  (leaders not balanced after 60 s; going on)");
}

struct Suite {
    args: SuiteArgs,
    out: PathBuf,
    data: PathBuf,
    bin: PathBuf,
    http: reqwest::Client,
    rows: Vec<Row>,
    orch_rows: Vec<OrchRow>,
    sweeps: Vec<(System, String, Vec<Outcome>)>,
    limits: Vec<Limit>,
    failover: Option<serde_json::Value>,
    ingest: Vec<crate::ingest::IngestRow>,
    started: Instant,
}

impl Suite {
    fn secs(&self) -> (Duration, Duration) {
        if self.args.quick {
            (Duration::from_secs_f64(0.5), Duration::from_secs_f64(1.5))
        } else {
            (
                Duration::from_secs_f64(self.args.warmup),
                Duration::from_secs_f64(self.args.seconds),
            )
        }
    }

    fn log(&self, msg: &str) {
        eprintln!("[{:>6.1} s] {msg}", self.started.elapsed().as_secs_f64());
    }

    async fn start(&self, system: System) -> anyhow::Result<Running> {
        match system {
            System::Restate => {
                restate_script("start")?;
                Ok(Running::Restate {
                    url: "http://127.0.0.1:18080".into(),
                })
            }
            System::Duroxide => bail!("duroxide runs through its own script"),
            System::Sdk | System::SdkInMemory => bail!("the SDK runs through its own scripts"),
            System::Single | System::Cluster | System::ClusterTls => {
                let n = if system == System::Single { 1 } else { 3 };
                let dir = self.data.join(format!("{system:?}").to_lowercase());
                if dir.exists() {
                    std::fs::remove_dir_all(&dir)?;
                }
                std::fs::create_dir_all(&dir)?;
                let base = match system {
                    System::Single => 60,
                    System::Cluster => 70,
                    _ => 80,
                };
                // gRPC on a port of its own (the SDK scenarios' workers connect to it)
                let specs: Vec<NodeSpec> = (1..=n)
                    .map(|id| NodeSpec::new(id, base, &dir).and_then(NodeSpec::with_grpc_port))
                    .collect::<Result<_, _>>()?;
                let certs = dir.join("certs");
                let tls = (system == System::ClusterTls).then_some(certs.as_path());
                if tls.is_some() {
                    make_certs(&self.bin, &certs, n)?;
                }
                for s in &specs {
                    write_config(s, &specs, self.args.partitions, tls)?;
                }
                let mut nodes: Vec<Node> = specs
                    .iter()
                    .map(|s| Node::new(s.clone(), &self.bin))
                    .collect();
                for node in &mut nodes {
                    node.start(&Default::default())?;
                }
                let urls: Vec<String> = specs.iter().map(NodeSpec::url).collect();
                let grpc: Vec<String> = specs.iter().map(NodeSpec::grpc_addr).collect();
                for u in &urls {
                    if !perdure_harness::ready(u, Duration::from_secs(60)).await {
                        bail!("{u} not ready within 60 s");
                    }
                }
                if n > 1 {
                    wait_balanced(&urls[0], n as usize).await;
                }
                Ok(Running::Perdure { nodes, urls, grpc })
            }
        }
    }

    fn plan(&self, running: &Running, keys: u32, dist: Dist, op: Op) -> Plan {
        let (warmup, measure) = self.secs();
        Plan {
            target: running.target(),
            url: running.url(),
            keys,
            dist,
            op,
            batch: 1,
            concurrency: 64,
            rate: None,
            warmup,
            measure,
            routing: true,
            attempts: 3,
            prefix: load::fresh_prefix(),
            tick: Duration::from_millis(250),
            progress: true,
        }
    }

    async fn measure(
        &mut self,
        system: System,
        running: &Running,
        scenario: &str,
        plan: Plan,
    ) -> anyhow::Result<Outcome> {
        self.measure_with(system, running, scenario, plan, None)
            .await
    }

    async fn measure_with(
        &mut self,
        system: System,
        running: &Running,
        scenario: &str,
        plan: Plan,
        event: Option<load::Event>,
    ) -> anyhow::Result<Outcome> {
        self.log(&format!(
            "{}: {scenario}: {}",
            system.label(),
            plan.describe()
        ));
        let urls = match running {
            Running::Perdure { urls, .. } => urls.clone(),
            Running::Restate { .. } => Vec::new(),
        };
        // node CPU from /proc (exact to the clock tick; the metric has whole seconds)
        let stats: Vec<String> = match running {
            Running::Perdure { nodes, .. } => nodes
                .iter()
                .filter_map(|n| n.pid())
                .map(|pid| format!("/proc/{pid}/stat"))
                .collect(),
            Running::Restate { .. } => Vec::new(),
        };
        let cpu = || stats.iter().map(|s| load::cpu_seconds(s)).sum::<f64>();
        let before = scrape::scrape(&self.http, &urls).await;
        let cpu0 = cpu();
        let outcome = load::execute_with(plan, event).await?;
        let cpu1 = cpu();
        let after = scrape::scrape(&self.http, &urls).await;
        let batching = (!urls.is_empty()).then(|| {
            let mut b = scrape::batching(&before, &after);
            // a killed node's CPU is lost with it: keep the metric's figure then
            if cpu1 >= cpu0 && cpu1 > 0.0 {
                b.node_cpu_seconds = cpu1 - cpu0;
            }
            b
        });
        let row = Row {
            system,
            scenario: scenario.to_string(),
            outcome: outcome.clone(),
            batching,
        };
        let extra = match (row.adds_per_entry(), &row.batching) {
            (Some(a), Some(b)) => format!(
                "; {a:.1} adds/entry, {:.1} entries/fsync, nodes {:.2} cores, generator {:.2} cores",
                b.entries_per_fsync,
                b.node_cpu_seconds / (self.secs().0 + self.secs().1).as_secs_f64(),
                outcome.generator_cpu
            ),
            _ => format!("; generator {:.2} cores", outcome.generator_cpu),
        };
        self.log(&format!("  -> {}{extra}", outcome.summary()));
        if !outcome.verified() {
            bail!(
                "{}: {scenario}: applied {} vs acknowledged {} (+{} unknown)",
                system.label(),
                outcome.applied,
                outcome.acknowledged,
                outcome.unknown
            );
        }
        self.rows.push(row);
        Ok(outcome)
    }

    /// Closed-loop max, then an open-loop sweep at fractions of its request rate.
    async fn sweep(
        &mut self,
        system: System,
        running: &Running,
        scenario: &str,
        keys: u32,
    ) -> anyhow::Result<()> {
        let max = self
            .measure(
                system,
                running,
                scenario,
                self.plan(running, keys, Dist::Uniform, Op::Signal),
            )
            .await?;
        let fractions: &[f64] = if self.args.quick {
            &[0.5, 1.0]
        } else {
            &[0.25, 0.5, 0.75, 0.9, 1.0, 1.2]
        };
        let mut points = Vec::new();
        for f in fractions {
            let mut plan = self.plan(running, keys, Dist::Uniform, Op::Signal);
            plan.rate = Some((max.requests_per_sec * f).max(10.0));
            plan.concurrency = 256;
            if !self.args.quick {
                plan.warmup = Duration::from_secs(1);
                plan.measure = Duration::from_secs_f64(self.args.sweep_seconds);
            }
            let o = self
                .measure(
                    system,
                    running,
                    &format!("{scenario}, open loop {:.0}% of max", f * 100.0),
                    plan,
                )
                .await?;
            points.push(o);
        }
        self.sweeps.push((system, scenario.to_string(), points));
        Ok(())
    }

    async fn run_system(&mut self, system: System, scope: Scope) -> anyhow::Result<()> {
        if system == System::Duroxide {
            return self.duroxide().await;
        }
        if system == System::Sdk {
            return self.sdk().await;
        }
        self.log(&format!("starting {}", system.label()));
        let running = self.start(system).await?;
        let result = match scope {
            Scope::All => self.scenarios(system, &running).await,
            Scope::Orchestrations => self.orch_scenarios(system, &running).await,
        };
        self.log(&format!("stopping {}", system.label()));
        let stopped = running.stop();
        result.and(stopped)
    }

    /// The key counts of the many-keys scenarios: 10k and 100k (quick: 100 and 1000).
    fn key_counts(&self) -> (u32, u32) {
        if self.args.quick {
            (100, 1000)
        } else {
            (10_000, 100_000)
        }
    }

    /// The scenarios the cluster runs on both node channels (closed-loop maxima of the hot key
    /// and of many keys, calls one at a time): all that runs on TLS; `mac` runs them among the
    /// rest under the same names.
    async fn channel_scenarios(&mut self, system: System, running: &Running) -> anyhow::Result<()> {
        let (k10, k100) = self.key_counts();
        let p = self.plan(running, 1, Dist::Uniform, Op::Signal);
        self.measure(system, running, "hot key (1 counter)", p)
            .await?;
        for keys in [k10, k100] {
            let p = self.plan(running, keys, Dist::Uniform, Op::Signal);
            self.measure(system, running, &format!("{keys} counters, uniform"), p)
                .await?;
        }
        let mut p = self.plan(running, 1000, Dist::Uniform, Op::Call);
        p.concurrency = 1;
        self.measure(system, running, "calls one at a time (closed loop)", p)
            .await
            .map(|_| ())
    }

    async fn scenarios(&mut self, system: System, running: &Running) -> anyhow::Result<()> {
        if system == System::ClusterTls {
            return self.channel_scenarios(system, running).await;
        }
        let quick = self.args.quick;
        let (k10, k100) = self.key_counts();
        if system == System::Single {
            let secs = if quick { 0.5 } else { 3.0 };
            for callers in [1, 64] {
                let l = limits::http_round_trip(&running.url(), callers, secs).await?;
                self.log(&format!(
                    "limit: {} {:.0}/s, p50 {:.3} ms, p99 {:.3} ms",
                    l.name, l.per_sec, l.p50_ms, l.p99_ms
                ));
                self.limits.push(l);
            }
        }
        self.sweep(system, running, "hot key (1 counter)", 1)
            .await?;
        self.sweep(system, running, &format!("{k10} counters, uniform"), k10)
            .await?;
        let p = self.plan(running, k10, Dist::Zipf, Op::Signal);
        self.measure(system, running, &format!("{k10} counters, zipf"), p)
            .await?;
        if system != System::Restate {
            // Restate's read-back is one request per counter: 100k is left to perdure
            for dist in [Dist::Uniform, Dist::Zipf] {
                let p = self.plan(running, k100, dist, Op::Signal);
                self.measure(
                    system,
                    running,
                    &format!("{k100} counters, {dist:?}").to_lowercase(),
                    p,
                )
                .await?;
            }
            for keys in [1, k10] {
                let mut p = self.plan(running, keys, Dist::Uniform, Op::Signal);
                p.batch = 100;
                p.concurrency = 16;
                let name = if keys == 1 {
                    "hot key".to_string()
                } else {
                    format!("{keys} counters")
                };
                self.measure(
                    system,
                    running,
                    &format!("{name}, 100 signals per request"),
                    p,
                )
                .await?;
            }
        }
        let mut p = self.plan(running, 1000, Dist::Uniform, Op::Call);
        p.rate = Some(100.0);
        p.concurrency = 256;
        if !quick {
            p.measure = Duration::from_secs(10);
        }
        self.measure(system, running, "latency floor: calls at 100/s", p)
            .await?;
        // the same calls back to back: the service time without the wake-ups of an idle machine
        let mut p = self.plan(running, 1000, Dist::Uniform, Op::Call);
        p.concurrency = 1;
        self.measure(system, running, "calls one at a time (closed loop)", p)
            .await?;
        if system != System::Restate {
            // before the failover, which leaves the cluster a node short
            self.orch_scenarios(system, running).await?;
        }
        if system == System::Cluster {
            self.failover(running).await?;
        }
        Ok(())
    }

    /// Runs `scenario` (an orchestration scenario against `running`) with the nodes' metrics
    /// read before and after.
    async fn measure_orch(
        &mut self,
        system: System,
        running: &Running,
        scenario: &str,
        run: impl std::future::Future<Output = anyhow::Result<orchestrations::OrchOutcome>>,
        instances_run: u64,
    ) -> anyhow::Result<orchestrations::OrchOutcome> {
        self.log(&format!("{}: {scenario}", system.label()));
        let Running::Perdure { nodes, urls, .. } = running else {
            bail!("orchestration scenarios run on perdure");
        };
        let stats: Vec<String> = nodes
            .iter()
            .filter_map(|n| n.pid())
            .map(|pid| format!("/proc/{pid}/stat"))
            .collect();
        let cpu = || stats.iter().map(|s| load::cpu_seconds(s)).sum::<f64>();
        let before = scrape::scrape(&self.http, urls).await;
        let cpu0 = cpu();
        let t = Instant::now();
        let outcome = run.await?;
        let wall = t.elapsed().as_secs_f64();
        let cpu1 = cpu();
        let after = scrape::scrape(&self.http, urls).await;
        let mut b = scrape::batching(&before, &after);
        b.node_cpu_seconds = cpu1 - cpu0;
        let mut v = outcome.json();
        v["instances_run"] = json!(instances_run);
        let row = OrchRow {
            system,
            scenario: scenario.to_string(),
            v,
            batching: Some(b),
            wall,
        };
        self.log(&format!(
            "  -> {}; {} commands per instance, {} commands/entry, {:.1} entries/fsync, nodes {:.2} cores, generator {:.2} cores",
            outcome.summary(),
            row.commands_per_instance().map_or("-".into(), |x| format!("{x:.1}")),
            row.commands_per_entry().map_or("-".into(), |x| format!("{x:.1}")),
            row.batching.as_ref().map_or(0.0, |b| b.entries_per_fsync),
            row.batching.as_ref().map_or(0.0, |b| b.node_cpu_seconds / wall),
            outcome.generator_cpu
        ));
        self.orch_rows.push(row);
        Ok(outcome)
    }

    /// HelloSequence5: the closed-loop throughput, then one at a time; a fan-out/fan-in.
    async fn orch_scenarios(&mut self, system: System, running: &Running) -> anyhow::Result<()> {
        let a = &self.args;
        let (n, conc, lat, fan) = if a.quick {
            (200, 32, 20, 100)
        } else {
            (
                a.orch_instances,
                a.orch_concurrency,
                a.orch_latency_instances,
                a.fan_out,
            )
        };
        let url = running.url();
        let prefix = load::fresh_prefix();
        let warm = (n / 20).max(1);
        let p = format!("{prefix}h5-");
        self.measure_orch(
            system,
            running,
            &format!("HelloSequence5, {n} instances, {conc} in flight"),
            orchestrations::hello5(&url, &p, n, warm, conc),
            n + warm,
        )
        .await?;
        let warm = (lat / 10).max(1);
        let p = format!("{prefix}one-");
        self.measure_orch(
            system,
            running,
            "HelloSequence5 one at a time (start to completion, long poll)",
            orchestrations::one_at_a_time(&url, &p, lat, warm),
            lat + warm,
        )
        .await?;
        let runs = 3;
        let p = format!("{prefix}fan-");
        self.measure_orch(
            system,
            running,
            &format!("fan-out/fan-in of {fan} activities (time to complete, {runs} runs)"),
            orchestrations::fan_out(&url, &p, fan, runs),
            u64::from(runs),
        )
        .await?;
        Ok(())
    }

    /// The duroxide peer (`benches/peers/duroxide.sh run`): its rows, in the same shape.
    async fn duroxide(&mut self) -> anyhow::Result<()> {
        let a = &self.args;
        let (n, lat, fan) = if a.quick {
            (100, 10, 100)
        } else {
            (
                a.duroxide_instances,
                a.orch_latency_instances.min(300),
                a.fan_out,
            )
        };
        let out = self.out.join("duroxide.json");
        let db = self.data.join("duroxide");
        let _ = std::fs::remove_dir_all(&db);
        std::fs::create_dir_all(&db)?;
        let root = workspace_root();
        self.log(&format!(
            "duroxide: HelloSequence5 x {n} (closed loop), {lat} one at a time, poll {} ms",
            a.duroxide_poll_ms
        ));
        let status = std::process::Command::new("bash")
            .arg(root.join("benches/peers/duroxide.sh"))
            .arg("run")
            .args(["--instances", &n.to_string()])
            .args(["--concurrency", &a.orch_concurrency.to_string()])
            .args(["--latency-instances", &lat.to_string()])
            .args(["--poll-ms", &a.duroxide_poll_ms.to_string()])
            .args(["--slots", &a.duroxide_slots])
            .args(["--fan-out", &fan.to_string()])
            .arg("--db-dir")
            .arg(&db)
            .arg("--json")
            .arg(&out)
            .current_dir(&root)
            .status()
            .context("running benches/peers/duroxide.sh")?;
        if !status.success() {
            bail!("benches/peers/duroxide.sh run failed ({status})");
        }
        let rows: Vec<serde_json::Value> = serde_json::from_slice(&std::fs::read(&out)?)?;
        for v in rows {
            let scenario = v["scenario"].as_str().unwrap_or("?").to_string();
            self.log(&format!(
                "  -> duroxide: {scenario}: {:.0}/s, p50 {:.2} ms, p99 {:.2} ms",
                v["instances_per_sec"].as_f64().unwrap_or(0.0),
                v["latency_ms"]["p50"].as_f64().unwrap_or(0.0),
                v["latency_ms"]["p99"].as_f64().unwrap_or(0.0)
            ));
            self.orch_rows.push(OrchRow {
                system: System::Duroxide,
                scenario,
                wall: v["seconds"].as_f64().unwrap_or(0.0),
                v,
                batching: None,
            });
        }
        Ok(())
    }

    /// The Python SDK's scenarios: HelloSequence5 (the SDK worker's orchestrator and activity)
    /// on one perdure node, on three (worker and client on node 2) and on the SDK's in-memory
    /// backend, with the same worker; entity signals from its client to the Rust `counter`.
    async fn sdk(&mut self) -> anyhow::Result<()> {
        let root = workspace_root();
        let python = root.join("target/sdk-venv/bin/python");
        if !python.exists() {
            bail!(
                "no Python SDK venv at {}: run `bash .ci/sdk-env.sh`",
                python.display()
            );
        }
        let (n, lat, ops) = if self.args.quick {
            (50, 10, 500)
        } else {
            (self.args.sdk_instances, 100, 5_000)
        };
        let script = |name: &str, args: &[String]| -> anyhow::Result<serde_json::Value> {
            let out = std::process::Command::new(&python)
                .arg(root.join("benches/peers/durabletask").join(name))
                .args(args)
                .stderr(std::process::Stdio::null())
                .output()
                .with_context(|| format!("running {name}"))?;
            let line = String::from_utf8_lossy(&out.stdout)
                .lines()
                .last()
                .unwrap_or_default()
                .to_string();
            if !out.status.success() {
                bail!("{name} failed ({}): {line}", out.status);
            }
            Ok(serde_json::from_str(&line)?)
        };
        let hello = |addr: Option<&str>| -> Vec<String> {
            let mut a = match addr {
                Some(a) => vec!["--addr".to_string(), a.to_string()],
                None => vec!["--inmemory".to_string()],
            };
            a.extend([
                "--instances".into(),
                n.to_string(),
                "--latency-runs".into(),
                lat.to_string(),
            ]);
            a
        };
        let row = |v: &serde_json::Value, per: &str| {
            json!({
                "instances_per_sec": v[per],
                "latency_ms": {"p50": v["p50_ms"], "p99": v["p99_ms"]},
                "completed": v["instances"].as_u64().or(v["ops"].as_u64()),
                "errors": v["failures"].as_u64().or(v["wrong_counters"].as_u64()),
                "seconds": v["seconds"],
            })
        };
        for system in [System::Single, System::Cluster] {
            self.log(&format!("the Python SDK against {}", system.label()));
            let running = self.start(system).await?;
            let Running::Perdure { grpc, .. } = &running else {
                bail!("not a perdure system");
            };
            let addr = grpc[grpc.len().min(2) - 1].clone();
            let result = (|| -> anyhow::Result<()> {
                let v = script("hello5.py", &hello(Some(&addr)))?;
                self.log(&format!(
                    "  -> {}: HelloSequence5 via the Python SDK: {v}",
                    short(system)
                ));
                self.orch_rows.push(OrchRow {
                    system,
                    scenario: "Python SDK worker: HelloSequence5".into(),
                    wall: v["seconds"].as_f64().unwrap_or(0.0),
                    v: row(&v, "per_sec"),
                    batching: None,
                });
                let args = ["--addr", &addr, "--ops", &ops.to_string(), "--threads", "8"]
                    .map(String::from);
                let e = script("entity_ops.py", &args)?;
                self.log(&format!(
                    "  -> {}: counter signals via the Python SDK client: {e}",
                    short(system)
                ));
                self.orch_rows.push(OrchRow {
                    system,
                    scenario: "Python SDK client: counter signals (ops/s)".into(),
                    wall: e["seconds"].as_f64().unwrap_or(0.0),
                    v: row(&e, "ops_per_sec"),
                    batching: None,
                });
                Ok(())
            })();
            let stopped = running.stop();
            result.and(stopped)?;
        }
        self.log("the Python SDK against its in-memory backend");
        let v = script("hello5.py", &hello(None))?;
        self.log(&format!(
            "  -> in-memory: HelloSequence5 via the Python SDK: {v}"
        ));
        self.orch_rows.push(OrchRow {
            system: System::SdkInMemory,
            scenario: "Python SDK worker: HelloSequence5".into(),
            wall: v["seconds"].as_f64().unwrap_or(0.0),
            v: row(&v, "per_sec"),
            batching: None,
        });
        Ok(())
    }

    /// Steady open-loop signals at half the many-keys maximum; `kill -9` of the node leading
    /// most partitions; time until p99 is back to normal; nothing acknowledged may be lost.
    async fn failover(&mut self, running: &Running) -> anyhow::Result<()> {
        let Running::Perdure { nodes, urls, .. } = running else {
            return Ok(());
        };
        let max = self
            .rows
            .iter()
            .find(|r| r.system == System::Cluster && r.scenario.ends_with("uniform"))
            .map(|r| r.outcome.requests_per_sec)
            .unwrap_or(1000.0);
        let rate = (max * 0.5).max(50.0);
        let (before_kill, after_kill) = if self.args.quick {
            (3.0, 4.0)
        } else {
            (8.0, 14.0)
        };
        let leads = leaders(&urls[0]).await.unwrap_or_default();
        let victim_id = (1..=nodes.len() as u64)
            .max_by_key(|id| leads.iter().filter(|l| l.1 == *id).count())
            .unwrap_or(1);
        let victim_pid = nodes[(victim_id - 1) as usize]
            .pid()
            .context("the victim is not running")?;
        let entry = urls[if victim_id == 1 { 1 } else { 0 }].clone();
        let led = leads.iter().filter(|l| l.1 == victim_id).count();
        let mut plan = self.plan(running, 10_000, Dist::Uniform, Op::Signal);
        plan.url = entry;
        plan.rate = Some(rate);
        // room for every request the dead leader's partitions hold up (rate x election time):
        // with fewer, waiting requests would take all permits and stall the healthy partitions
        // in the generator, which is not the system's doing
        plan.concurrency = 8192;
        plan.attempts = 100;
        plan.warmup = Duration::from_secs(2);
        plan.measure = Duration::from_secs_f64(before_kill - 2.0 + after_kill);
        plan.tick = Duration::from_millis(100);
        let kill: load::Event = (
            Duration::from_secs_f64(before_kill),
            Box::new(move || {
                // SIGKILL by pid: the Node stays with the suite, which reaps it at the end
                let _ = std::process::Command::new("kill")
                    .args(["-9", &victim_pid.to_string()])
                    .status();
            }),
        );
        let o = self
            .measure_with(
                System::Cluster,
                running,
                &format!("failover: kill -9 node {victim_id} (leading {led} of {} partitions) under {rate:.0} signals/s", leads.len()),
                plan,
                Some(kill),
            )
            .await?;
        let kill_t = o.event_at.context("the kill did not happen")?;
        // normal = the p99 of the ticks between warm-up and half a second before the kill
        let pre: Vec<f64> = o
            .timeline
            .iter()
            .filter(|t| t.t >= 2.0 && t.t + 0.1 <= kill_t - 0.5)
            .filter_map(|t| t.p99_ms)
            .collect();
        let mut sorted = pre.clone();
        sorted.sort_by(f64::total_cmp);
        let normal = sorted.get(sorted.len() * 9 / 10).copied().unwrap_or(50.0);
        let threshold = (normal * 2.0).max(normal + 5.0);
        let after: Vec<&load::Tick> = o.timeline.iter().filter(|t| t.t + 0.1 > kill_t).collect();
        // back: the first second (10 ticks) after the kill in which every tick's p99 is normal
        // again (a later, unrelated hiccup does not move it)
        let recovered_at = (0..after.len().saturating_sub(9))
            .find(|&i| {
                after[i..i + 10]
                    .iter()
                    .all(|t| t.p99_ms.is_none_or(|p| p <= threshold))
            })
            .map(|i| after[i].t);
        let recovery = recovered_at.map(|t| (t - kill_t).max(0.0));
        let lost = o.acknowledged.saturating_sub(o.applied);
        self.log(&format!(
            "  failover: normal p99 {normal:.1} ms (threshold {threshold:.1} ms); p99 back {} after the kill; {lost} acknowledged adds lost; max latency {:.0} ms",
            recovery.map(|r| format!("{r:.1} s")).unwrap_or_else(|| "never".into()),
            o.hist.max() as f64 / 1000.0
        ));
        self.failover = Some(json!({
            "victim": victim_id, "partitions_led": led, "rate": rate, "kill_at_s": kill_t,
            "normal_p99_ms": normal, "threshold_ms": threshold, "recovery_s": recovery,
            "lost": lost, "max_latency_ms": o.hist.max() as f64 / 1000.0,
        }));
        let mut panels = load::timeline_panels(
            &[("acknowledged", &o)],
            &[(kill_t, format!("kill -9 node {victim_id}"))],
        );
        panels[1].reference = Some((threshold, format!("normal x2: {threshold:.0} ms")));
        std::fs::write(
            self.out.join("failover.svg"),
            plot::svg("perdure 3 nodes: failover under steady load", &panels),
        )?;
        if lost > 0 {
            bail!("failover lost {lost} acknowledged adds");
        }
        Ok(())
    }

    fn limits(&mut self) -> anyhow::Result<()> {
        let secs = if self.args.quick { 0.3 } else { 2.0 };
        let tmp = tempfile::Builder::new()
            .prefix("fsync-limit-")
            .tempdir_in(&self.data)?;
        for batch in [1, 16, 256] {
            let o = crate::wal::raw(tmp.path(), 128, batch, secs)?;
            let l = Limit {
                name: format!("raw write + fdatasync, {batch} x 128 B per sync"),
                per_sec: o.records as f64 / o.secs,
                p50_ms: o.hist.value_at_quantile(0.5) as f64 / 1000.0,
                p99_ms: o.hist.value_at_quantile(0.99) as f64 / 1000.0,
            };
            self.log(&format!(
                "limit: {} {:.0}/s, p99 {:.3} ms",
                l.name, l.per_sec, l.p99_ms
            ));
            self.limits.push(l);
        }
        Ok(())
    }

    async fn actor_limits(&mut self) -> anyhow::Result<()> {
        let secs = if self.args.quick { 0.3 } else { 2.0 };
        for (actors, callers) in [(1, 1), (1, 64), (1000, 64)] {
            let l = limits::actor_round_trip(actors, callers, secs).await?;
            self.log(&format!(
                "limit: {} {:.0}/s, p99 {:.3} ms",
                l.name, l.per_sec, l.p99_ms
            ));
            self.limits.push(l);
        }
        Ok(())
    }

    fn write(&self) -> anyhow::Result<()> {
        let v = json!({
            "machine": machine(),
            "args": format!("{:?}", self.args),
            "limits": self.limits,
            "scenarios": self.rows.iter().map(Row::json).collect::<Vec<_>>(),
            "orchestrations": self.orch_rows.iter().map(OrchRow::json).collect::<Vec<_>>(),
            "failover": self.failover,
            "ingest": self.ingest,
            "channel": self.channel_rows().iter().map(|c| c.json()).collect::<Vec<_>>(),
            "ratios": self.ratios().iter().map(|(s, r)| json!({"scenario": s, "perdure_over_restate": r})).collect::<Vec<_>>(),
        });
        std::fs::write(
            self.out.join("results.json"),
            serde_json::to_string_pretty(&v)?,
        )?;
        std::fs::write(self.out.join("summary.md"), self.markdown())?;
        for system in [
            System::Single,
            System::Cluster,
            System::ClusterTls,
            System::Restate,
        ] {
            let runs: Vec<(&str, &Outcome)> = self
                .rows
                .iter()
                .filter(|r| {
                    r.system == system
                        && (r.scenario == "hot key (1 counter)"
                            || r.scenario.ends_with("counters, uniform"))
                })
                .map(|r| (r.scenario.as_str(), &r.outcome))
                .collect();
            if !runs.is_empty() {
                std::fs::write(
                    self.out
                        .join(format!("timeline-{system:?}.svg").to_lowercase()),
                    plot::svg(
                        &format!("{}: closed-loop maxima over time", system.label()),
                        &load::timeline_panels(&runs, &[]),
                    ),
                )?;
            }
        }
        for (i, name) in ["hot key (1 counter)", "counters, uniform"]
            .iter()
            .enumerate()
        {
            let sweeps: Vec<&(System, String, Vec<Outcome>)> =
                self.sweeps.iter().filter(|s| s.1.ends_with(name)).collect();
            if sweeps.is_empty() {
                continue;
            }
            let lat = |q: f64| -> Vec<Series> {
                sweeps
                    .iter()
                    .map(|(sys, _, pts)| Series {
                        name: format!("{} p{}", short(*sys), if q == 0.5 { "50" } else { "99" }),
                        points: pts.iter().map(|o| (o.requests_per_sec, o.q(q))).collect(),
                    })
                    .collect()
            };
            let mut series = lat(0.99);
            series.extend(lat(0.5));
            let panels = vec![
                Panel {
                    title: "latency against offered rate (open loop, from intended send time)"
                        .into(),
                    x_label: "offered requests/s".into(),
                    y_label: "ms".into(),
                    log_y: true,
                    series,
                    reference: Some((50.0, "p99 target 50 ms".into())),
                    ..Panel::default()
                },
                Panel {
                    title: "acknowledged against offered".into(),
                    x_label: "offered requests/s".into(),
                    y_label: "acknowledged adds/s".into(),
                    series: sweeps
                        .iter()
                        .map(|(sys, _, pts)| Series {
                            name: short(*sys).into(),
                            points: pts
                                .iter()
                                .map(|o| (o.requests_per_sec, o.per_sec))
                                .collect(),
                        })
                        .collect(),
                    ..Panel::default()
                },
            ];
            let file = ["sweep-hot-key.svg", "sweep-many-keys.svg"][i];
            std::fs::write(
                self.out.join(file),
                plot::svg(&format!("rate sweep: {}", sweeps[0].1), &panels),
            )?;
        }
        Ok(())
    }

    /// The scenarios the cluster ran on both node channels, TLS beside MAC (closed loop only:
    /// the `mac` cluster's sweep points share a scenario prefix, not a name).
    fn channel_rows(&self) -> Vec<ChannelRow<'_>> {
        self.rows
            .iter()
            .filter(|t| t.system == System::ClusterTls)
            .filter_map(|t| {
                let mac = self.rows.iter().find(|m| {
                    m.system == System::Cluster
                        && m.scenario == t.scenario
                        && m.outcome.plan.rate.is_none()
                })?;
                Some(ChannelRow {
                    scenario: &t.scenario,
                    mac,
                    tls: t,
                })
            })
            .collect()
    }

    /// Each perdure system over Restate, per scenario both ran: throughput, or for calls Restate's
    /// p50 over perdure's.
    fn ratios(&self) -> Vec<(String, f64)> {
        let mut out = Vec::new();
        // closed-loop maxima and latencies only: an open-loop point's rate is each system's own
        for r in self.rows.iter().filter(|r| {
            r.system == System::Restate
                && (r.outcome.plan.rate.is_none() || r.scenario.starts_with("latency floor"))
        }) {
            for p in self
                .rows
                .iter()
                .filter(|p| p.system != System::Restate && p.scenario == r.scenario)
            {
                let ratio = if r.outcome.plan.op == Op::Call {
                    // lower is better: Restate's p50 over perdure's
                    r.outcome.q(0.5) / p.outcome.q(0.5).max(1e-6)
                } else {
                    p.outcome.per_sec / r.outcome.per_sec.max(1e-9)
                };
                out.push((
                    format!("{} vs Restate: {}", short(p.system), r.scenario),
                    ratio,
                ));
            }
        }
        out
    }

    fn markdown(&self) -> String {
        let mut s = String::new();
        let _ = writeln!(s, "# perdure-bench suite\n\nmachine: {}\n", machine());
        let _ = writeln!(s, "## Limits of this machine (same run)\n\n| limit | per second | p50 | p99 |\n|---|---:|---:|---:|");
        for l in &self.limits {
            let _ = writeln!(
                s,
                "| {} | {:.0} | {:.3} ms | {:.3} ms |",
                l.name, l.per_sec, l.p50_ms, l.p99_ms
            );
        }
        let _ = writeln!(s, "\n## Scenarios\n\nClosed loop = 64 in flight (the maximum; its latency is not a quote); open loop = fixed rate, latency from the intended send time. Every run read its counters back: applied = acknowledged.\n\n| system | scenario | adds/s | p50 | p99 | p99.9 | errors | adds/entry | entries/fsync | node cores | generator cores |\n|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
        for r in &self.rows {
            let o = &r.outcome;
            let secs = (o.plan.warmup + o.plan.measure).as_secs_f64();
            let (ape, epf, cores) = match (&r.batching, r.adds_per_entry()) {
                (Some(b), Some(a)) => (
                    format!("{a:.1}"),
                    format!("{:.1}", b.entries_per_fsync),
                    format!("{:.2}", b.node_cpu_seconds / secs),
                ),
                _ => ("-".into(), "-".into(), "-".into()),
            };
            let _ = writeln!(
                s,
                "| {} | {} | {:.0} | {:.2} ms | {:.2} ms | {:.2} ms | {} | {ape} | {epf} | {cores} | {:.2} |",
                short(r.system),
                r.scenario,
                o.per_sec,
                o.q(0.5),
                o.q(0.99),
                o.q(0.999),
                o.errors,
                o.generator_cpu
            );
        }
        if !self.orch_rows.is_empty() {
            let _ = writeln!(s, "{}", self.orch_markdown());
        }
        let channel = self.channel_rows();
        if !channel.is_empty() {
            let _ = writeln!(s, "\n## Node channel: TLS against the MAC'd plain channel (3 nodes, same run)\n\n| scenario | MAC adds/s | TLS adds/s | TLS / MAC | MAC p50 | TLS p50 | MAC p99 | TLS p99 | MAC node cores | TLS node cores |\n|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
            for c in &channel {
                let _ = writeln!(s, "{}", c.markdown());
            }
        }
        if !self.ingest.is_empty() {
            let _ = writeln!(s, "{}", crate::ingest::markdown(&self.ingest));
        }
        if let Some(f) = &self.failover {
            let _ = writeln!(
                s,
                "\n## Failover\n\n```json\n{}\n```",
                serde_json::to_string_pretty(f).unwrap_or_default()
            );
        }
        let _ = writeln!(
            s,
            "\n## Highest offered rate with p99 under 50 ms (sweeps)\n"
        );
        for (sys, name, pts) in &self.sweeps {
            let best = pts
                .iter()
                .filter(|o| {
                    o.q(0.99) < 50.0 && o.per_sec >= 0.95 * o.requests_per_sec * o.plan.batch as f64
                })
                .map(|o| o.requests_per_sec)
                .fold(0.0, f64::max);
            let _ = writeln!(s, "- {} / {name}: {best:.0} requests/s", short(*sys));
        }
        let _ = writeln!(
            s,
            "\n## perdure / Restate (throughput; calls: Restate p50 / perdure p50)\n"
        );
        for (name, r) in self.ratios() {
            let _ = writeln!(s, "- {name}: {r:.1}x");
        }
        s
    }
}

impl Suite {
    /// The orchestration section of `summary.md`: the table, then each system's HelloSequence5
    /// throughput beside what it cost and the machine's limits.
    fn orch_markdown(&self) -> String {
        let mut s = String::new();
        let _ = writeln!(s, "\n## Orchestrations\n\nHelloSequence5 = 5 activities in sequence (in-process Rust on both systems); throughput = closed loop, each worker starting an instance and long-polling its completion (`GET .../wait`), counting only instances completed with the expected output; one at a time = start to the long poll's answer; fan-out = `FanOutFanIn` N (N activities in parallel, output N(N-1)/2), time from start to completion (p50/p99 over the runs). Commands = atomic changes the nodes' leaderships proposed (an orchestration start, a turn), per Raft entry as proposed (the nodes' `perdure_proposed_commands_total` / `perdure_proposals_total`). duroxide: SQLite in WAL mode, which does not fsync each commit (perdure fsyncs every commit, on a majority).\n\n| system | scenario | instances/s | p50 | p99 | completed | errors | commands/instance | commands/entry | entries/fsync | node cores | generator cores |\n|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
        for r in &self.orch_rows {
            let _ = writeln!(s, "{}", r.markdown());
        }
        let fsync1 = self
            .limits
            .iter()
            .find(|l| l.name.contains("fdatasync, 1 x"))
            .map(|l| l.per_sec);
        let _ = writeln!(s, "\nBeside the limits (same run):\n");
        for r in self
            .orch_rows
            .iter()
            .filter(|r| r.scenario.starts_with("HelloSequence5,") && r.batching.is_some())
        {
            let b = r.batching.as_ref().expect("filtered");
            let per = r.f(&["instances_per_sec"]);
            let cpi = r.commands_per_instance().unwrap_or(f64::NAN);
            let _ = writeln!(
                s,
                "- {}: {per:.0} HelloSequence5/s = {:.0} commands/s ({cpi:.1} per instance) in {:.0} Raft entries/s ({:.1} commands per entry), {:.0} fsyncs/s over all nodes (the disk: {} single-record fdatasyncs/s); node CPU {:.2} cores = {:.0} µs of node CPU per instance",
                short(r.system),
                per * cpi,
                b.proposals / r.wall,
                r.commands_per_entry().unwrap_or(f64::NAN),
                b.fsyncs / r.wall,
                fsync1.map_or("-".into(), |f| format!("{f:.0}")),
                b.node_cpu_seconds / r.wall,
                b.node_cpu_seconds * 1e6 / r.v["instances_run"].as_f64().unwrap_or(f64::NAN),
            );
        }
        s
    }
}

fn short(s: System) -> &'static str {
    match s {
        System::Single => "perdure 1 node",
        System::Cluster => "perdure 3 nodes",
        System::ClusterTls => "perdure 3 nodes TLS",
        System::Restate => "Restate 1 node",
        System::Duroxide => "duroxide",
        System::Sdk => "Python SDK",
        System::SdkInMemory => "SDK in-memory backend",
    }
}

/// Cores, memory and kernel of this machine.
pub(crate) fn machine() -> String {
    let cores = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(0);
    let mem = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|m| {
            m.lines()
                .next()
                .map(|l| l.split_whitespace().nth(1).unwrap_or("0").to_string())
        })
        .and_then(|kb| kb.parse::<u64>().ok())
        .map(|kb| format!("{:.1} GiB", kb as f64 / 1048576.0))
        .unwrap_or_default();
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    format!("{cores} cores, {mem}, Linux {}", kernel.trim())
}

/// `perdure-bench suite`.
pub async fn run(args: SuiteArgs) -> anyhow::Result<()> {
    let out = args.out.clone().unwrap_or_else(|| {
        let t = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0);
        workspace_root().join(format!("target/bench/suite-{t}"))
    });
    std::fs::create_dir_all(&out).with_context(|| out.display().to_string())?;
    let data = args.data_dir.clone().unwrap_or_else(|| out.clone());
    std::fs::create_dir_all(&data).with_context(|| data.display().to_string())?;
    let bin = match &args.bin {
        Some(b) => b.clone(),
        None => std::env::current_exe()?
            .parent()
            .context("the program's directory")?
            .join("perdure"),
    };
    if !bin.exists() {
        bail!(
            "{} does not exist: build it (cargo build --release -p perdure-cli) or pass --bin",
            bin.display()
        );
    }
    let mut suite = Suite {
        http: reqwest::Client::builder()
            .timeout(Duration::from_secs(10))
            .build()?,
        out: out.clone(),
        data,
        bin,
        rows: Vec::new(),
        orch_rows: Vec::new(),
        sweeps: Vec::new(),
        limits: Vec::new(),
        failover: None,
        ingest: Vec::new(),
        started: Instant::now(),
        args,
    };
    suite.log(&format!(
        "perdure-bench suite: {}; results in {}",
        machine(),
        out.display()
    ));
    suite.limits()?;
    suite.actor_limits().await?;
    // the cluster once per node channel, in the order given
    let channels: Vec<System> = suite
        .args
        .channel
        .iter()
        .map(|c| match c {
            Channel::Mac => System::Cluster,
            Channel::Tls => System::ClusterTls,
        })
        .collect();
    let systems: Vec<(System, Scope)> = suite
        .args
        .systems
        .iter()
        .flat_map(|&s| match s {
            Pick::Single => vec![(System::Single, Scope::All)],
            Pick::Cluster => channels.iter().map(|&c| (c, Scope::All)).collect(),
            Pick::SingleOrch => vec![(System::Single, Scope::Orchestrations)],
            Pick::ClusterOrch => vec![(System::Cluster, Scope::Orchestrations)],
            Pick::Orchestrations => vec![
                (System::Single, Scope::Orchestrations),
                (System::Cluster, Scope::Orchestrations),
            ],
            Pick::Restate => vec![(System::Restate, Scope::All)],
            Pick::Duroxide => vec![(System::Duroxide, Scope::All)],
            Pick::Sdk => vec![(System::Sdk, Scope::All)],
            Pick::Ingest => Vec::new(),
        })
        .collect();
    let mut failed = Vec::new();
    for (s, scope) in systems {
        if let Err(e) = suite.run_system(s, scope).await {
            suite.log(&format!("{} FAILED: {e:#}", s.label()));
            failed.push(format!("{}: {e:#}", s.label()));
        }
        suite.write()?;
    }
    if suite.args.systems.contains(&Pick::Ingest) {
        let quick = suite.args.quick;
        let setup = crate::ingest::Setup {
            bin: suite.bin.clone(),
            data: suite.data.clone(),
            partitions: suite.args.partitions,
            records: if quick {
                100_000
            } else {
                suite.args.ingest_records
            },
            counters: if quick { 1_000 } else { 10_000 },
            source_partitions: 8,
            rate: None,
            rate_seconds: if quick { 3.0 } else { 20.0 },
            http_seconds: if quick {
                1.0
            } else {
                suite.args.seconds.min(5.0)
            },
        };
        let (rows, errors) = crate::ingest::run_scenarios(
            &setup,
            &[1, 3],
            &[load::Dist::Uniform, load::Dist::Zipf],
            suite.started,
        )
        .await;
        suite.ingest = rows;
        failed.extend(errors.into_iter().map(|e| format!("ingest: {e}")));
        suite.write()?;
    }
    suite.log(&format!(
        "done: {} scenarios; {}",
        suite.rows.len(),
        out.join("summary.md").display()
    ));
    if !failed.is_empty() {
        bail!("{}", failed.join("; "));
    }
    Ok(())
}
