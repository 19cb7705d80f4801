//! Where a node listens and keeps its files, and its config: built as the node's own
//! [`NodeConfig`] and serialized, never written by hand.

use crate::Error;
use perdure_types::config::{MemberConfig, NodeConfig};
use rand::Rng;
use std::net::TcpListener;
use std::path::{Path, PathBuf};

/// Ports are picked at random in this range: below Linux's ephemeral range (32768-60999), so an
/// outgoing connection of another process cannot take a port between the pick and the node's
/// bind, and random so that concurrent runs rarely try the same one.
const PORTS: std::ops::Range<u16> = 20_000..32_768;

/// A TCP port on `ip` that was free a moment ago: random in 20000-32767, else one the OS picks.
pub fn free_port(ip: &str) -> Result<u16, Error> {
    let mut rng = rand::thread_rng();
    for _ in 0..64 {
        let port = rng.gen_range(PORTS);
        if TcpListener::bind((ip, port)).is_ok() {
            return Ok(port);
        }
    }
    TcpListener::bind((ip, 0))
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .map_err(|source| Error::Port {
            ip: ip.into(),
            source,
        })
}

/// `config` as the TOML text `perdure serve --config` reads.
pub fn to_toml(config: &NodeConfig) -> Result<String, toml::ser::Error> {
    toml::to_string(config)
}

/// Where one node listens and keeps its files.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeSpec {
    /// Node id (1-based).
    pub id: u64,
    /// Its loopback address (`127.0.0.x`).
    pub ip: String,
    /// HTTP port.
    pub http_port: u16,
    /// Node-to-node (peer) port.
    pub peer_port: u16,
    /// The Durable Task gRPC port; `None` (the default): port 0, a free port the node picks (so
    /// that nodes started in parallel never collide on the SDKs' default 4001). Tests of the
    /// gRPC interface set one with [`NodeSpec::with_grpc_port`].
    pub grpc_port: Option<u16>,
    /// The data directory (kept across restarts).
    pub data_dir: PathBuf,
    /// The config file.
    pub config: PathBuf,
    /// stdout and stderr of every incarnation, appended.
    pub log: PathBuf,
}

impl NodeSpec {
    /// Node `id` on `127.0.0.{ip_base + id}` (past .255 on into 127.0.1.x, all loopback) with
    /// two free ports; its files `n{id}-data`, `n{id}.toml` and `n{id}.log` under `dir`.
    pub fn new(id: u64, ip_base: u8, dir: &Path) -> Result<Self, Error> {
        let n = u64::from(ip_base) + id;
        let ip = format!("127.{}.{}.{}", (n >> 16) & 0xff, (n >> 8) & 0xff, n & 0xff);
        let http_port = free_port(&ip)?;
        let mut peer_port = free_port(&ip)?;
        while peer_port == http_port {
            peer_port = free_port(&ip)?;
        }
        Ok(NodeSpec {
            id,
            http_port,
            peer_port,
            grpc_port: None,
            ip,
            data_dir: dir.join(format!("n{id}-data")),
            config: dir.join(format!("n{id}.toml")),
            log: dir.join(format!("n{id}.log")),
        })
    }

    /// This spec with a gRPC port chosen now (a free one on its address).
    pub fn with_grpc_port(mut self) -> Result<Self, Error> {
        let mut port = free_port(&self.ip)?;
        while port == self.http_port || port == self.peer_port {
            port = free_port(&self.ip)?;
        }
        self.grpc_port = Some(port);
        Ok(self)
    }

    /// `IP:GRPC_PORT` (`IP:0` without a chosen port).
    pub fn grpc_addr(&self) -> String {
        format!("{}:{}", self.ip, self.grpc_port.unwrap_or(0))
    }

    /// `IP:HTTP_PORT`.
    pub fn http_addr(&self) -> String {
        format!("{}:{}", self.ip, self.http_port)
    }

    /// `IP:PEER_PORT`.
    pub fn peer_addr(&self) -> String {
        format!("{}:{}", self.ip, self.peer_port)
    }

    /// `http://IP:HTTP_PORT`.
    pub fn url(&self) -> String {
        format!("http://{}", self.http_addr())
    }

    /// This node as a `cluster.members` entry.
    pub fn member(&self) -> MemberConfig {
        MemberConfig {
            node_id: self.id,
            addr: self.peer_addr(),
            http_addr: self.http_addr(),
        }
    }

    /// This node's config: its id, data directory and its addresses (gRPC:
    /// [`grpc_addr`](Self::grpc_addr)), `members` as the cluster it knows (empty: a single
    /// node), everything else the node's defaults. Callers change fields (cluster id, secret, partitions, ...) before [`write_config`](Self::write_config).
    pub fn config(&self, members: &[NodeSpec]) -> NodeConfig {
        let mut c = NodeConfig {
            node_id: self.id,
            data_dir: self.data_dir.clone(),
            http_addr: self.http_addr(),
            ..NodeConfig::default()
        };
        c.cluster.listen_addr = self.peer_addr();
        c.grpc.addr = self.grpc_addr();
        c.cluster.members = members.iter().map(NodeSpec::member).collect();
        c
    }

    /// Writes `config` as TOML to this node's config file.
    pub fn write_config(&self, config: &NodeConfig) -> Result<(), Error> {
        let text = to_toml(config).map_err(|source| Error::Serialize {
            node: self.id,
            source,
        })?;
        std::fs::write(&self.config, text).map_err(|source| Error::Io {
            what: "config",
            path: self.config.clone(),
            source,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn specs_get_distinct_loopback_addresses_and_files() {
        let dir = Path::new("/tmp/x");
        let a = NodeSpec::new(1, 0, dir).unwrap();
        let b = NodeSpec::new(2, 0, dir).unwrap();
        assert_eq!(a.ip, "127.0.0.1");
        assert_eq!(b.ip, "127.0.0.2");
        assert_ne!(a.http_port, a.peer_port);
        assert_eq!(a.data_dir, dir.join("n1-data"));
        assert_eq!(NodeSpec::new(300, 0, dir).unwrap().ip, "127.0.1.44");
    }

    #[test]
    fn grpc_listens_on_a_free_port_unless_one_is_chosen() {
        let dir = Path::new("/tmp/x");
        let a = NodeSpec::new(1, 0, dir).unwrap();
        assert_eq!(a.config(&[]).grpc.addr, "127.0.0.1:0");
        let b = a.clone().with_grpc_port().unwrap();
        let port = b.grpc_port.unwrap();
        assert!(port != b.http_port && port != b.peer_port);
        assert_eq!(b.config(&[]).grpc.addr, format!("127.0.0.1:{port}"));
        b.config(&[]).validate().unwrap();
    }

    #[test]
    fn a_cluster_config_names_every_member_and_validates() {
        let dir = Path::new("/tmp/x");
        let specs: Vec<NodeSpec> = (1..=3)
            .map(|id| NodeSpec::new(id, 0, dir).unwrap())
            .collect();
        let mut c = specs[1].config(&specs);
        c.cluster.secret = "a-secret-of-enough-length".into();
        c.validate().unwrap();
        assert_eq!(c.node_id, 2);
        assert_eq!(c.cluster.members.len(), 3);
        assert_eq!(c.cluster.listen_addr, specs[1].peer_addr());
    }
}
