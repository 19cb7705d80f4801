//! `perdure-bench`: perdure's benchmarks.
//!
//! - `suite` (`suite.rs`): every headline scenario in one run, beside the machine's limits
//!   (`limits.rs`, and `wal::raw`) and the Restate peer; results, tables and plots (`plot.rs`),
//!   batching read from the nodes' metrics (`scrape.rs`).
//! - `load` (`load.rs`): the load generator, open or closed loop, against a running node.
//! - `wal` (`wal.rs`): the write-ahead log against raw `fdatasync` on the same disk.
//! - `fanout` (`orchestrations.rs`, which also holds the suite's orchestration scenarios): one
//!   very wide fan-out on a fresh node, its time and the node's peak memory.
//! - `ingest` (`ingest.rs`, also the suite's `--systems ingest`): stream ingestion from a Kafka
//!   broker: drain rate, latency at a fixed rate, counters verified, beside HTTP batches.

mod ingest;
mod limits;
mod load;
mod orchestrations;
mod plot;
mod scrape;
mod suite;
mod wal;

use clap::{Parser, Subcommand};
use std::path::PathBuf;

#[derive(Parser, Debug)]
#[command(name = "perdure-bench", about = "perdure's benchmarks")]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand, Debug)]
enum Cmd {
    /// Every headline scenario in one run: the machine's limits, one node, a 3-node cluster
    /// (with a failover), and the Restate peer; writes results, a table and plots.
    Suite(suite::SuiteArgs),
    /// Load against a running node (`perdure serve`) or the peer, verified against the
    /// applied counters.
    Load(load::LoadArgs),
    /// One very wide FanOutFanIn (100,000 activities by default) on a fresh node: its time and
    /// the node's peak resident memory (VmHWM).
    Fanout(orchestrations::FanoutArgs),
    /// Stream ingestion from a Kafka broker (the librdkafka mock) on 1 node and 3 nodes: records/s
    /// draining a preloaded topic, record-to-commit latency at a fixed rate, the time to zero lag
    /// once the producer stops, every counter verified; HTTP batches beside it.
    Ingest(ingest::IngestArgs),
    /// Write-ahead log append throughput beside the raw fdatasync limit of the same disk.
    Wal {
        /// Directory on the disk to measure (a temporary directory inside it is used and removed).
        #[arg(long, default_value = ".")]
        dir: PathBuf,
        /// Seconds per scenario.
        #[arg(long, default_value_t = 3.0)]
        seconds: f64,
        /// Payload bytes per record (a small Raft entry is about 100).
        #[arg(long, default_value_t = 128)]
        record_bytes: usize,
        /// Concurrent writers for the WAL scenarios, comma-separated.
        #[arg(long, default_value = "1,4,16,64", value_delimiter = ',')]
        writers: Vec<usize>,
        /// Write the results as JSON to this file too.
        #[arg(long)]
        json: Option<PathBuf>,
    },
}

fn main() -> anyhow::Result<()> {
    let rt = || {
        tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()
    };
    match Cli::parse().cmd {
        Cmd::Suite(args) => rt()?.block_on(suite::run(args)),
        Cmd::Load(args) => rt()?.block_on(load::run(args)),
        Cmd::Fanout(args) => rt()?.block_on(orchestrations::fanout_command(args)),
        Cmd::Ingest(args) => rt()?.block_on(ingest::run(args)),
        Cmd::Wal {
            dir,
            seconds,
            record_bytes,
            writers,
            json,
        } => wal::run(&dir, seconds, record_bytes, &writers, json),
    }
}
