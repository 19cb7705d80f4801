//! [`NodeConfig::validate`]: every value checked at start-up, the error naming the first bad key.

use super::{channel, ConfigError, NodeConfig, MAX_PARTITIONS};

impl NodeConfig {
    /// Checks every value; the error names the first bad key.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.node_id == 0 {
            return Err(ConfigError::new("node_id", "must be at least 1"));
        }
        if self.data_dir.as_os_str().is_empty() {
            return Err(ConfigError::new("data_dir", "must not be empty"));
        }
        if self.partitions == 0 || self.partitions > MAX_PARTITIONS {
            return Err(ConfigError::new(
                "partitions",
                format!(
                    "must be between 1 and {MAX_PARTITIONS}, got {}",
                    self.partitions
                ),
            ));
        }
        if self.http_addr.parse::<std::net::SocketAddr>().is_err() {
            return Err(ConfigError::new(
                "http_addr",
                format!("{:?} is not HOST:PORT with a numeric host", self.http_addr),
            ));
        }
        let w = &self.wal;
        if w.segment_bytes < (1 << 20) {
            return Err(ConfigError::new(
                "wal.segment_bytes",
                "must be at least 1 MiB",
            ));
        }
        if w.max_batch_bytes < (64 << 10) || w.max_batch_bytes > w.segment_bytes {
            return Err(ConfigError::new(
                "wal.max_batch_bytes",
                "must be at least 64 KiB and at most wal.segment_bytes",
            ));
        }
        let r = &self.raft;
        if r.heartbeat_interval_ms == 0 {
            return Err(ConfigError::new(
                "raft.heartbeat_interval_ms",
                "must be at least 1",
            ));
        }
        if r.election_timeout_min_ms <= r.heartbeat_interval_ms {
            return Err(ConfigError::new(
                "raft.election_timeout_min_ms",
                "must be greater than raft.heartbeat_interval_ms",
            ));
        }
        if r.election_timeout_max_ms <= r.election_timeout_min_ms {
            return Err(ConfigError::new(
                "raft.election_timeout_max_ms",
                "must be greater than raft.election_timeout_min_ms",
            ));
        }
        if r.snapshot_every_entries == 0 {
            return Err(ConfigError::new(
                "raft.snapshot_every_entries",
                "must be at least 1",
            ));
        }
        self.validate_log_bytes()?;
        self.validate_entities_and_http()?;
        self.validate_orchestrations()?;
        self.grpc.validate()?;
        self.ingest.validate()?;
        self.validate_cluster()
    }

    /// The byte bounds of the Raft logs held in memory.
    fn validate_log_bytes(&self) -> Result<(), ConfigError> {
        let r = &self.raft;
        if r.snapshot_every_log_bytes < (1 << 20) {
            return Err(ConfigError::new(
                "raft.snapshot_every_log_bytes",
                "must be at least 1 MiB",
            ));
        }
        if r.keep_log_bytes_after_snapshot >= r.snapshot_every_log_bytes {
            return Err(ConfigError::new(
                "raft.keep_log_bytes_after_snapshot",
                "must be less than raft.snapshot_every_log_bytes",
            ));
        }
        if r.max_log_memory_bytes < r.snapshot_every_log_bytes {
            return Err(ConfigError::new(
                "raft.max_log_memory_bytes",
                "must be at least raft.snapshot_every_log_bytes",
            ));
        }
        Ok(())
    }

    fn validate_orchestrations(&self) -> Result<(), ConfigError> {
        let o = &self.orchestrations;
        let ranges: [(&'static str, u64, u64, u64, &'static str); 8] = [
            (
                "orchestrations.max_live",
                o.max_live,
                1,
                10_000_000,
                "must be between 1 and 10 000 000",
            ),
            (
                "orchestrations.max_history_events",
                o.max_history_events,
                100,
                100_000_000,
                "must be between 100 and 100 000 000",
            ),
            (
                "orchestrations.max_history_bytes",
                o.max_history_bytes,
                64 << 10,
                4 << 30,
                "must be between 64 KiB and 4 GiB",
            ),
            (
                "orchestrations.max_payload_bytes",
                o.max_payload_bytes,
                1 << 10,
                64 << 20,
                "must be between 1 KiB and 64 MiB",
            ),
            (
                "orchestrations.max_concurrent_activities",
                o.max_concurrent_activities.into(),
                1,
                1_000_000,
                "must be between 1 and 1 000 000",
            ),
            (
                "orchestrations.max_actions_per_turn",
                o.max_actions_per_turn.into(),
                1,
                1_000_000,
                "must be between 1 and 1 000 000",
            ),
            (
                "orchestrations.passivate_after_ms",
                o.passivate_after_ms,
                1,
                u64::MAX,
                "must be at least 1",
            ),
            (
                "orchestrations.max_dispatches",
                o.max_dispatches.into(),
                1,
                1_000,
                "must be between 1 and 1 000",
            ),
        ];
        for (key, v, lo, hi, why) in ranges {
            if !(lo..=hi).contains(&v) {
                return Err(ConfigError::new(key, why));
            }
        }
        Ok(())
    }

    fn validate_entities_and_http(&self) -> Result<(), ConfigError> {
        let e = &self.entities;
        if e.passivate_after_ms == 0 {
            return Err(ConfigError::new(
                "entities.passivate_after_ms",
                "must be at least 1",
            ));
        }
        if e.idempotency_window_ms < 1000 {
            return Err(ConfigError::new(
                "entities.idempotency_window_ms",
                "must be at least 1000 (1 s)",
            ));
        }
        if e.max_batch_ops == 0 {
            return Err(ConfigError::new(
                "entities.max_batch_ops",
                "must be at least 1",
            ));
        }
        let wd = self.watchdog.stall_after_ms;
        if wd != 0 && wd < 1000 {
            return Err(ConfigError::new(
                "watchdog.stall_after_ms",
                "must be 0 (off) or at least 1000 (1 s)",
            ));
        }
        if !((1 << 10)..=(64 << 20)).contains(&e.max_state_bytes) {
            return Err(ConfigError::new(
                "entities.max_state_bytes",
                "must be between 1 KiB and 64 MiB",
            ));
        }
        if !((64 << 10)..=(64 << 20)).contains(&e.max_batch_bytes) {
            return Err(ConfigError::new(
                "entities.max_batch_bytes",
                "must be between 64 KiB and 64 MiB",
            ));
        }
        if !(1..=10_000_000).contains(&e.max_active) {
            return Err(ConfigError::new(
                "entities.max_active",
                "must be between 1 and 10 000 000",
            ));
        }
        if !(1..=100_000_000).contains(&e.max_idempotency_keys) {
            return Err(ConfigError::new(
                "entities.max_idempotency_keys",
                "must be between 1 and 100 000 000",
            ));
        }
        if !(100..=3_600_000).contains(&e.request_timeout_ms) {
            return Err(ConfigError::new(
                "entities.request_timeout_ms",
                "must be between 100 ms and 3 600 000 ms (1 h)",
            ));
        }
        let h = &self.http;
        if h.max_body_bytes < 1024 || h.max_body_bytes > (256 << 20) {
            return Err(ConfigError::new(
                "http.max_body_bytes",
                "must be between 1 KiB and 256 MiB",
            ));
        }
        if h.max_batch_signals == 0 {
            return Err(ConfigError::new(
                "http.max_batch_signals",
                "must be at least 1",
            ));
        }
        for (key, ms) in [
            ("http.header_read_timeout_ms", h.header_read_timeout_ms),
            ("http.idle_timeout_ms", h.idle_timeout_ms),
            ("http.body_read_timeout_ms", h.body_read_timeout_ms),
        ] {
            if !(100..=3_600_000).contains(&ms) {
                return Err(ConfigError::new(
                    key,
                    "must be between 100 ms and 3 600 000 ms (1 h)",
                ));
            }
        }
        if h.max_connections == Some(0) {
            return Err(ConfigError::new(
                "http.max_connections",
                "must be at least 1",
            ));
        }
        if h.allowed_hosts
            .iter()
            .any(|n| n.is_empty() || n.contains(':'))
        {
            return Err(ConfigError::new(
                "http.allowed_hosts",
                "entries are host names without a port (or \"*\")",
            ));
        }
        if let Some(tls) = &h.tls {
            if tls.cert_file.as_os_str().is_empty() {
                return Err(ConfigError::new("http.tls.cert_file", "must not be empty"));
            }
            if tls.key_file.as_os_str().is_empty() {
                return Err(ConfigError::new("http.tls.key_file", "must not be empty"));
            }
        }
        let mut seen = std::collections::BTreeSet::new();
        for t in &self.auth.tokens {
            if t.name.is_empty() {
                return Err(ConfigError::new("auth.tokens", "every token needs a name"));
            }
            if t.token.len() < 16 || t.token.chars().any(|c| !c.is_ascii_graphic()) {
                return Err(ConfigError::new(
                    "auth.tokens",
                    format!(
                        "token {:?}: at least 16 visible ASCII characters, no spaces",
                        t.name
                    ),
                ));
            }
            if !seen.insert(&t.token) {
                return Err(ConfigError::new(
                    "auth.tokens",
                    format!("token {:?} is listed twice", t.name),
                ));
            }
        }
        Ok(())
    }

    fn validate_cluster(&self) -> Result<(), ConfigError> {
        let c = &self.cluster;
        if c.cluster_id.is_empty() || c.cluster_id.len() > 64 {
            return Err(ConfigError::new(
                "cluster.cluster_id",
                "must be 1 to 64 characters",
            ));
        }
        if c.listen_addr.parse::<std::net::SocketAddr>().is_err() {
            return Err(ConfigError::new(
                "cluster.listen_addr",
                format!("{:?} is not HOST:PORT with a numeric host", c.listen_addr),
            ));
        }
        if c.replication_factor == 0 {
            return Err(ConfigError::new(
                "cluster.replication_factor",
                "must be at least 1",
            ));
        }
        if c.rpc_timeout_ms < 10 {
            return Err(ConfigError::new(
                "cluster.rpc_timeout_ms",
                "must be at least 10",
            ));
        }
        if c.members.is_empty() {
            return Ok(());
        }
        let mut ids = std::collections::BTreeSet::new();
        for m in &c.members {
            if !ids.insert(m.node_id) {
                return Err(ConfigError::new(
                    "cluster.members",
                    format!("node_id {} is listed twice", m.node_id),
                ));
            }
            for (what, a) in [("addr", &m.addr), ("http_addr", &m.http_addr)] {
                if a.parse::<std::net::SocketAddr>().is_err() {
                    return Err(ConfigError::new(
                        "cluster.members",
                        format!("member {}: {what} {a:?} is not HOST:PORT", m.node_id),
                    ));
                }
            }
        }
        if !ids.contains(&self.node_id) {
            return Err(ConfigError::new(
                "cluster.members",
                format!(
                    "this node (node_id = {}) is not among the members",
                    self.node_id
                ),
            ));
        }
        channel::check(c)
    }
}
