//! Configuration structs, their defaults, and validation.
//!
//! Loading (defaults, then a TOML file, then `PERDURE_*` environment variables, then flags) lives
//! in the node crate; here are only the shapes and their defaults; `config/validate.rs` holds
//! [`NodeConfig::validate`], which names the bad key in every error.

use crate::ids::NodeId;
use serde::{Deserialize, Serialize};
use std::path::PathBuf;

pub mod channel;
pub mod grpc;
pub mod ingest;
mod validate;

pub use grpc::GrpcConfig;
pub use ingest::IngestConfig;

/// Most partitions a cluster may have.
pub const MAX_PARTITIONS: u32 = 4096;

/// A configuration value is out of range; `key` is its dotted TOML path.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid config `{key}`: {reason}")]
pub struct ConfigError {
    /// The dotted key, as written in TOML (`raft.election_timeout_min_ms`).
    pub key: String,
    /// What is wrong with it.
    pub reason: String,
}

impl ConfigError {
    fn new(key: &str, reason: impl Into<String>) -> Self {
        Self {
            key: key.to_string(),
            reason: reason.into(),
        }
    }
}

/// Everything one node needs to start.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct NodeConfig {
    /// This node's id in the cluster (and in every Raft group). Default 1.
    pub node_id: NodeId,
    /// Where the node keeps its data. Default `./perdure-data`.
    pub data_dir: PathBuf,
    /// Number of partitions. Fixed when the data directory is created: a different value on a
    /// later start is refused. Default 16.
    pub partitions: u32,
    /// HTTP listen address. Default `127.0.0.1:7071`.
    pub http_addr: String,
    /// Write-ahead log settings.
    pub wal: WalConfig,
    /// Raft settings shared by every partition group.
    pub raft: RaftConfig,
    /// Entity runtime settings.
    pub entities: EntitiesConfig,
    /// Orchestration runtime settings.
    pub orchestrations: OrchestrationsConfig,
    /// The sample orchestrations (`[samples] enabled = true`).
    pub samples: SamplesConfig,
    /// HTTP API settings.
    pub http: HttpConfig,
    /// Client authentication on the HTTP API (no tokens: none, see [`AuthConfig`]).
    pub auth: AuthConfig,
    /// Cluster settings (empty `members`: a single node).
    pub cluster: ClusterConfig,
    /// Metrics (`GET /metrics`) settings.
    pub metrics: MetricsConfig,
    /// The Durable Task gRPC interface (`[grpc]`).
    pub grpc: GrpcConfig,
    /// Stream ingestion (`[ingest]`).
    pub ingest: IngestConfig,
    /// Logging settings.
    pub log: LogConfig,
    /// The watchdog that fails stop a node whose async runtime stopped making progress.
    pub watchdog: WatchdogConfig,
}

impl Default for NodeConfig {
    fn default() -> Self {
        Self {
            node_id: 1,
            data_dir: PathBuf::from("perdure-data"),
            partitions: 16,
            http_addr: "127.0.0.1:7071".into(),
            wal: WalConfig::default(),
            raft: RaftConfig::default(),
            entities: EntitiesConfig::default(),
            orchestrations: OrchestrationsConfig::default(),
            samples: SamplesConfig::default(),
            http: HttpConfig::default(),
            auth: AuthConfig::default(),
            cluster: ClusterConfig::default(),
            metrics: MetricsConfig::default(),
            grpc: GrpcConfig::default(),
            ingest: IngestConfig::default(),
            log: LogConfig::default(),
            watchdog: WatchdogConfig::default(),
        }
    }
}

/// Watchdog settings.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct WatchdogConfig {
    /// How long the async runtime may make no progress at all before the node logs its threads'
    /// stacks and exits with code 70 (a supervisor restarts it; the cluster fails over). 0 turns
    /// the watchdog off; otherwise at least 1000. Default 30000 (30 s).
    pub stall_after_ms: u64,
}

impl Default for WatchdogConfig {
    fn default() -> Self {
        Self {
            stall_after_ms: 30_000,
        }
    }
}

/// Metrics settings.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct MetricsConfig {
    /// Measure and serve Prometheus metrics at `GET /metrics`. Off: nothing is measured on the
    /// request path and `/metrics` answers 404 (for comparing throughput). Default true.
    pub enabled: bool,
}

impl Default for MetricsConfig {
    fn default() -> Self {
        Self { enabled: true }
    }
}

/// How log lines are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// Human-readable lines.
    Plain,
    /// One JSON object per line (with the span fields), for log collectors.
    Json,
}

/// The default log filter (see [`LogConfig::level`]).
pub const DEFAULT_LOG_LEVEL: &str = "info,openraft=warn,openraft::replication=off,openraft::engine=error,openraft::core::raft_core=off";

/// Logging settings. The environment overrides them: `PERDURE_LOG` (or else `RUST_LOG`) replaces
/// `level`, `PERDURE_LOG_FORMAT` replaces `format`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LogConfig {
    /// A `tracing` filter: a level (`info`) or directives (`info,openraft=warn,perdure_runtime=debug`).
    /// Default `info,openraft=warn` with openraft's per-RPC replication, vote and
    /// read-confirmation errors off: they repeat for every RPC to a down peer (hundreds a
    /// second), and the transport reports each outage once instead (`info,openraft=warn` shows
    /// them).
    pub level: String,
    /// `plain` or `json`. Default `plain`.
    pub format: LogFormat,
}

impl Default for LogConfig {
    fn default() -> Self {
        Self {
            level: DEFAULT_LOG_LEVEL.into(),
            format: LogFormat::Plain,
        }
    }
}

/// One member of the cluster, as listed in every node's config.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MemberConfig {
    /// The member's node id.
    pub node_id: NodeId,
    /// Where it listens for other nodes (`cluster.listen_addr` in its own config).
    pub addr: String,
    /// Its HTTP API address.
    pub http_addr: String,
}

/// Cluster settings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ClusterConfig {
    /// The cluster's name; a node of another cluster is refused. Default `perdure`.
    pub cluster_id: String,
    /// The secret that authenticates the node channel (the handshake's proofs and every frame's
    /// MAC; it never crosses the wire). Required when `members` is not empty: at least 16
    /// characters while every peer address is loopback, else 32 random bytes (64 hex digits);
    /// example secrets are refused (see [`channel`]). Best set from the environment
    /// (`PERDURE_CLUSTER__SECRET`) rather than in a file.
    pub secret: String,
    /// Where this node listens for other nodes. Default `127.0.0.1:7171`.
    pub listen_addr: String,
    /// The members this node knows at start, this node included (empty: a single node). The
    /// lowest node id among them founds the cluster on its first start; later, the replicated
    /// membership is authoritative and these are only seeds: a node not yet a member asks them to
    /// let it join.
    pub members: Vec<MemberConfig>,
    /// Replicas per partition (capped at the number of members). Default 3.
    pub replication_factor: u32,
    /// Timeout of one node-to-node request. Default 2 000 ms.
    pub rpc_timeout_ms: u64,
    /// TLS with mutual authentication on the node channel (`[cluster.tls]`); absent: the
    /// channel is authenticated by `secret` alone. With TLS, `secret` is not used.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tls: Option<TlsConfig>,
}

/// The node channel's TLS (`[cluster.tls]`): every node has a certificate for the name
/// `node-{node_id}.perdure` issued by the cluster's CA (`perdure cert` makes them); a peer is
/// the node its certificate names, and a certificate of another CA is refused.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsConfig {
    /// PEM file of the cluster's CA certificate (the only one trusted for peers).
    pub ca: PathBuf,
    /// PEM file of this node's certificate (chain), issued by the CA for `node-{node_id}.perdure`.
    pub cert: PathBuf,
    /// PEM file of this node's private key.
    pub key: PathBuf,
}

impl Default for ClusterConfig {
    fn default() -> Self {
        Self {
            cluster_id: "perdure".into(),
            secret: String::new(),
            listen_addr: "127.0.0.1:7171".into(),
            members: Vec::new(),
            replication_factor: 3,
            rpc_timeout_ms: 2000,
            tls: None,
        }
    }
}

/// Entity runtime settings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct EntitiesConfig {
    /// An entity actor idle this long is passivated (stopped; its state stays durable).
    /// Default 60 000 ms.
    pub passivate_after_ms: u64,
    /// How long a signal's idempotency key is remembered: a retry within this window is
    /// acknowledged again but not applied again. Keys are partition state (snapshotted with it),
    /// so the window trades retry safety against state size. Default 1 h.
    pub idempotency_window_ms: u64,
    /// Most operations one entity runs in one batch (one commit). Default 1 000.
    pub max_batch_ops: u32,
    /// Largest state one entity may hold, as stored (JSON bytes): an operation that would grow it
    /// past this fails (its effects discarded, the state unchanged). Default 16 MiB; between
    /// 1 KiB and 64 MiB.
    pub max_state_bytes: u64,
    /// An entity's batch stops taking operations once its command (new state, messages, ids)
    /// weighs this much; the rest go in the next batch. Default 4 MiB; between 64 KiB and 64 MiB.
    pub max_batch_bytes: u64,
    /// Also register the test entity types `relay` and `probe` (for tests and fault runs).
    /// Default false.
    pub test_types: bool,
    /// Longest an entity request (signal, call, read, listing page) waits for its partition:
    /// past it the request is answered 504, `outcome_unknown` for a write (it may still take
    /// effect once a quorum is back; a signal retried with the same idempotency key is applied
    /// at most once), `deadline_exceeded` for a read. Default 10 000 ms.
    pub request_timeout_ms: u64,
    /// Most entity actors active on this node. Each partition it leads may keep an equal share
    /// (`max_active / partitions`, at least 1) active: when a partition is at its share, the
    /// actor idle the longest is passivated to make room for a new entity (or, with every one
    /// busy, the new entity's requests wait until one is idle). An active actor costs about
    /// 3 KiB beside its state (docs/PERFORMANCE.md). Default 20 000; between 1 and 10 000 000.
    pub max_active: u64,
    /// Most idempotency keys one partition remembers. A signal with a new key past it is
    /// refused (HTTP 429 `too_many_idempotency_keys`, nothing applied) until older keys expire;
    /// a retry of a remembered key is acknowledged as before. A key costs about 350 bytes of
    /// state on disk (both indexes, redb pages) and is copied into every snapshot of its
    /// partition. Default 250 000 (about 90 MB per partition); between 1 and 100 000 000.
    pub max_idempotency_keys: u64,
}

impl Default for EntitiesConfig {
    fn default() -> Self {
        Self {
            passivate_after_ms: 60_000,
            idempotency_window_ms: 3600 * 1000,
            max_batch_ops: 1000,
            max_state_bytes: 16 << 20,
            max_batch_bytes: 4 << 20,
            test_types: false,
            request_timeout_ms: 10_000,
            max_active: 20_000,
            max_idempotency_keys: 250_000,
        }
    }
}

/// Orchestration runtime settings.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct OrchestrationsConfig {
    /// Most events one execution's history may hold: a turn that would pass it fails the
    /// instance with a clear error (continue-as-new keeps eternal orchestrations under it).
    /// Default 1 000 000; between 100 and 100 000 000.
    pub max_history_events: u64,
    /// Most bytes one execution's history may hold (encoded events), likewise. Default
    /// 256 MiB; between 64 KiB and 4 GiB.
    pub max_history_bytes: u64,
    /// Largest input, output, custom status or event payload (JSON bytes) a client or an
    /// orchestration may hand in: larger ones are refused (nothing written), or fail the step
    /// that made them. Default 4 MiB; between 1 KiB and 64 MiB.
    pub max_payload_bytes: u64,
    /// Activities running at once on this node (in-process); more wait for a slot. Default
    /// 1 000; between 1 and 1 000 000.
    pub max_concurrent_activities: u32,
    /// Most activities a turn dispatches at once per instance, and most new decisions one
    /// command carries (a wider fan-out commits in several commands). Default 5 000; between
    /// 1 and 1 000 000.
    pub max_actions_per_turn: u32,
    /// A live orchestrator (its replayed state kept in memory between turns) idle this long is
    /// dropped; its next event replays its history. Default 60 000 ms.
    pub passivate_after_ms: u64,
    /// Most live orchestrators on this node (an equal share per partition it leads): past its
    /// share, a partition drops the live orchestrators idle the longest (their next event
    /// replays their history). Default 10 000; between 1 and 10 000 000.
    pub max_live: u64,
    /// A step (a turn or an activity) that fails this many times in a row by crashing (a panic,
    /// a storage error) is quarantined: the instance fails with a `PoisonMessage` error naming
    /// the step. Default 5; between 1 and 1 000.
    pub max_dispatches: u32,
    /// Finished instances (completed, failed, terminated) are purged this long after they
    /// finished, by each partition's leader in bounded batches. 0 keeps them for ever. Default
    /// 30 days.
    pub retention_ms: u64,
}

impl Default for OrchestrationsConfig {
    fn default() -> Self {
        Self {
            max_history_events: 1_000_000,
            max_history_bytes: 256 << 20,
            max_payload_bytes: 4 << 20,
            max_concurrent_activities: 1_000,
            max_actions_per_turn: 5_000,
            passivate_after_ms: 60_000,
            max_live: 10_000,
            max_dispatches: 5,
            retention_ms: 30 * 24 * 3600 * 1000,
        }
    }
}

/// The sample orchestrations the standard binary ships (README "Orchestrations"):
/// `HelloSequence`, `FanOutFanIn`, `Monitor`, `Approval`, `CounterAggregation` and their
/// activities.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(default, deny_unknown_fields)]
pub struct SamplesConfig {
    /// Register the samples. Default false.
    pub enabled: bool,
}

/// HTTP API settings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct HttpConfig {
    /// Largest request body accepted; larger ones get 413. Default 1 MiB.
    pub max_body_bytes: u64,
    /// Most signals in one batch-signal request. Default 10 000.
    pub max_batch_signals: u32,
    /// Time a client has to send a complete request head (request line and headers), counted
    /// from its first byte; a slower one (slowloris) is disconnected. Default 10 000 ms.
    pub header_read_timeout_ms: u64,
    /// A connection with no request in flight that sends nothing for this long is closed (idle
    /// keep-alive, or a connection that never sends a request). Default 60 000 ms.
    pub idle_timeout_ms: u64,
    /// Time a client has to send a request's whole body once its head arrived; a slower one gets
    /// 408 and the connection is closed. Default 30 000 ms.
    pub body_read_timeout_ms: u64,
    /// Most open client connections; a connection over the cap is answered 503
    /// `too_many_connections` and closed at once. Default: 10 000 or half the process's
    /// open-files limit, whichever is lower.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_connections: Option<u32>,
    /// Without `[auth]` tokens, the `Host` names (without port) requests may carry besides IP
    /// addresses and `localhost`: a request for another name (a DNS-rebinding page) is refused
    /// 403. `"*"` allows every name. Default empty.
    pub allowed_hosts: Vec<String>,
    /// Serve HTTPS instead of HTTP (`[http.tls]`). Default off.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tls: Option<HttpTlsConfig>,
}

/// The HTTP port's certificate (`[http.tls]`), both PEM files read at start.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HttpTlsConfig {
    /// The certificate chain, leaf first (PEM).
    pub cert_file: PathBuf,
    /// Its private key (PEM: PKCS#8, PKCS#1 or SEC1).
    pub key_file: PathBuf,
}

impl Default for HttpConfig {
    fn default() -> Self {
        Self {
            max_body_bytes: 1 << 20,
            max_batch_signals: 10_000,
            header_read_timeout_ms: 10_000,
            idle_timeout_ms: 60_000,
            body_read_timeout_ms: 30_000,
            max_connections: None,
            allowed_hosts: Vec::new(),
            tls: None,
        }
    }
}

/// What an API token may do; each role includes the ones before it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Read entity state and listings, the cluster status, metrics.
    Read,
    /// Also signal entities and call operations.
    Write,
    /// Also change the cluster's membership (and purge, when purges exist).
    Admin,
}

/// One API token (`[[auth.tokens]]`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TokenConfig {
    /// A name for logs (never the token itself).
    pub name: String,
    /// The secret a client presents: `Authorization: Bearer TOKEN`, the `x-functions-key`
    /// header or the `code` query parameter. At least 16 characters.
    pub token: String,
    /// What it may do: `read`, `write` or `admin`.
    pub role: Role,
}

/// Client authentication on the HTTP API. With tokens, every request but `/healthz`, `/readyz`
/// and the dashboard's static files needs one (401 without, 403 for a role too low). Without
/// tokens, anyone who reaches the port may do anything, and only browsers are kept out: the
/// `Host` must be an IP address, `localhost` or in `http.allowed_hosts`, and a state-changing
/// request from another `Origin` is refused.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AuthConfig {
    /// The accepted tokens. Default none.
    pub tokens: Vec<TokenConfig>,
}

/// Write-ahead log settings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct WalConfig {
    /// A segment file is closed and a new one started past this size. Default 64 MiB.
    pub segment_bytes: u64,
    /// Most bytes one group commit writes before it syncs. Default 8 MiB.
    pub max_batch_bytes: u64,
}

impl Default for WalConfig {
    fn default() -> Self {
        Self {
            segment_bytes: 64 << 20,
            max_batch_bytes: 8 << 20,
        }
    }
}

/// Raft settings, the same for every partition group.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RaftConfig {
    /// Leader heartbeat interval. Default 100 ms.
    pub heartbeat_interval_ms: u64,
    /// Lower bound of the randomized election timeout. Default 400 ms.
    pub election_timeout_min_ms: u64,
    /// Upper bound of the randomized election timeout. Default 800 ms.
    pub election_timeout_max_ms: u64,
    /// Build a snapshot after this many log entries since the last one. Default 50 000: each
    /// snapshot copies the partition's whole state (idempotency keys included) and holds its
    /// applies meanwhile; at 10 000 a busy partition snapshotted every few seconds and those
    /// pauses were its p99 (docs/PERFORMANCE.md). The log since the last snapshot stays in memory.
    pub snapshot_every_entries: u64,
    /// Log entries kept after a snapshot, for lagging followers. Default 1 000.
    pub keep_entries_after_snapshot: u64,
    /// Build a snapshot once the applied log entries since the last one weigh this many bytes
    /// (their payloads), whatever their count: a partition of large entries is bounded by bytes
    /// like one of small entries by `snapshot_every_entries`. Per partition. Default 64 MiB.
    pub snapshot_every_log_bytes: u64,
    /// The log kept after a snapshot (for lagging followers) is cut to at most this many bytes,
    /// and to at most `keep_entries_after_snapshot` entries: whichever keeps less. A follower
    /// behind what was cut gets the snapshot. Per partition. Default 8 MiB.
    pub keep_log_bytes_after_snapshot: u64,
    /// The node's bound on its Raft logs in memory: once the log written on this node since the
    /// oldest entry it still holds weighs more, the group holding that entry is snapshotted and
    /// purged (oldest first). This also bounds what the write-ahead log keeps on disk, and so
    /// what a restart reads back. Default 256 MiB.
    pub max_log_memory_bytes: u64,
}

impl Default for RaftConfig {
    fn default() -> Self {
        Self {
            heartbeat_interval_ms: 100,
            election_timeout_min_ms: 400,
            election_timeout_max_ms: 800,
            snapshot_every_entries: 50_000,
            keep_entries_after_snapshot: 1_000,
            snapshot_every_log_bytes: 64 << 20,
            keep_log_bytes_after_snapshot: 8 << 20,
            max_log_memory_bytes: 256 << 20,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid() {
        NodeConfig::default().validate().unwrap();
    }

    #[test]
    fn entity_and_http_settings_are_checked() {
        let mut c = NodeConfig::default();
        c.entities.passivate_after_ms = 0;
        assert_eq!(c.validate().unwrap_err().key, "entities.passivate_after_ms");
        c.entities = EntitiesConfig::default();
        c.entities.max_active = 0;
        assert_eq!(c.validate().unwrap_err().key, "entities.max_active");
        c.entities = EntitiesConfig::default();
        c.entities.max_idempotency_keys = 0;
        assert_eq!(
            c.validate().unwrap_err().key,
            "entities.max_idempotency_keys"
        );
        c.entities = EntitiesConfig::default();
        c.http.max_body_bytes = 10;
        assert_eq!(c.validate().unwrap_err().key, "http.max_body_bytes");
        c.http = HttpConfig::default();
        c.http.header_read_timeout_ms = 0;
        assert_eq!(c.validate().unwrap_err().key, "http.header_read_timeout_ms");
        c.http = HttpConfig {
            max_connections: Some(0),
            ..HttpConfig::default()
        };
        assert_eq!(c.validate().unwrap_err().key, "http.max_connections");
        c.http = HttpConfig::default();
        c.auth.tokens.push(TokenConfig {
            name: "ops".into(),
            token: "short".into(),
            role: Role::Admin,
        });
        assert_eq!(c.validate().unwrap_err().key, "auth.tokens");
        c.auth.tokens[0].token = "long-enough-token-1".into();
        c.validate().unwrap();
    }

    #[test]
    fn log_byte_bounds_are_checked_naming_the_key() {
        let mut c = NodeConfig::default();
        c.raft.snapshot_every_log_bytes = 1000;
        assert_eq!(
            c.validate().unwrap_err().key,
            "raft.snapshot_every_log_bytes"
        );
        c.raft = RaftConfig::default();
        c.raft.keep_log_bytes_after_snapshot = c.raft.snapshot_every_log_bytes;
        assert_eq!(
            c.validate().unwrap_err().key,
            "raft.keep_log_bytes_after_snapshot"
        );
        c.raft = RaftConfig::default();
        c.raft.max_log_memory_bytes = c.raft.snapshot_every_log_bytes - 1;
        assert_eq!(c.validate().unwrap_err().key, "raft.max_log_memory_bytes");
        c.raft.max_log_memory_bytes = c.raft.snapshot_every_log_bytes;
        c.raft.keep_log_bytes_after_snapshot = 0;
        c.validate().unwrap();
    }

    #[test]
    fn cluster_settings_are_checked() {
        let member = |id: u64| MemberConfig {
            node_id: id,
            addr: format!("127.0.0.{id}:7171"),
            http_addr: format!("127.0.0.{id}:7071"),
        };
        let mut c = NodeConfig::default();
        c.cluster.members = vec![member(1), member(2), member(3)];
        assert_eq!(c.validate().unwrap_err().key, "cluster.secret");
        c.cluster.secret = "sixteen-chars-at-least".into();
        c.validate().unwrap();
        c.cluster.members.push(member(4));
        c.validate().unwrap();
        c.cluster.members = vec![member(2), member(3)];
        assert!(c
            .validate()
            .unwrap_err()
            .reason
            .contains("not among the members"));
        c.cluster.members = vec![member(1), member(1)];
        assert!(c.validate().unwrap_err().reason.contains("twice"));
        c.cluster.members = vec![member(1)];
        c.cluster.listen_addr = "nowhere".into();
        assert_eq!(c.validate().unwrap_err().key, "cluster.listen_addr");
    }

    #[test]
    fn errors_name_the_key() {
        let mut c = NodeConfig {
            partitions: 0,
            ..Default::default()
        };
        assert_eq!(c.validate().unwrap_err().key, "partitions");
        c.partitions = 8;
        c.raft.election_timeout_max_ms = 10;
        assert_eq!(
            c.validate().unwrap_err().key,
            "raft.election_timeout_max_ms"
        );
        c.raft = RaftConfig::default();
        c.http_addr = "localhost".into();
        let e = c.validate().unwrap_err();
        assert_eq!(e.key, "http_addr");
        assert!(e.to_string().contains("http_addr"), "{e}");
    }
}
