//! Real `perdure serve` processes: configs on 127.0.0.x with free ports, start (optionally in
//! a cgroup, under libfaketime, or with the chaos bug switch), `kill -9`, SIGSTOP/SIGCONT.

use std::fs::OpenOptions;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

/// A node process could not be managed.
#[derive(Debug, thiserror::Error)]
pub enum ClusterError {
    /// A file could not be written or read.
    #[error("{what} {path}: {source}")]
    Io {
        /// What it was.
        what: &'static str,
        /// The file.
        path: String,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// A process could not be started or signalled.
    #[error("node {node}: {message}")]
    Process {
        /// The node.
        node: u64,
        /// What went wrong.
        message: String,
    },
    /// No free port on the address.
    #[error("no free port on {0}: {1}")]
    Port(String, std::io::Error),
}

/// A port that was free a moment ago on `ip`.
pub fn free_port(ip: &str) -> Result<u16, ClusterError> {
    std::net::TcpListener::bind((ip, 0))
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .map_err(|e| ClusterError::Port(ip.into(), e))
}

/// Where a node listens and keeps its files.
#[derive(Debug, Clone)]
pub struct NodeSpec {
    /// Node id (1-based).
    pub id: u64,
    /// Its 127.0.0.x address.
    pub ip: String,
    /// HTTP port.
    pub http_port: u16,
    /// Node-to-node (peer) port.
    pub peer_port: u16,
    /// The data directory.
    pub data_dir: PathBuf,
    /// The config file.
    pub config: PathBuf,
    /// stdout and stderr of every incarnation, appended.
    pub log: PathBuf,
}

impl NodeSpec {
    /// A node on `127.0.0.{ip_base + id}` (past .255 on into 127.0.1.x ...) with free ports,
    /// files under `dir`.
    pub fn new(id: u64, ip_base: u8, dir: &Path) -> Result<Self, ClusterError> {
        // 127.0.0.x for the first few hundred ids, then on through 127/8 (all loopback)
        let n = u64::from(ip_base) + id;
        let ip = format!("127.{}.{}.{}", (n >> 16) & 0xff, (n >> 8) & 0xff, n & 0xff);
        Ok(NodeSpec {
            id,
            http_port: free_port(&ip)?,
            peer_port: free_port(&ip)?,
            ip,
            data_dir: dir.join(format!("n{id}-data")),
            config: dir.join(format!("n{id}.toml")),
            log: dir.join(format!("n{id}.log")),
        })
    }

    /// `http://IP:PORT`.
    pub fn url(&self) -> String {
        format!("http://{}:{}", self.ip, self.http_port)
    }

    /// The `[[cluster.members]]` entry of this node.
    pub fn member_entry(&self) -> String {
        format!(
            "{{ node_id = {}, addr = \"{}:{}\", http_addr = \"{}:{}\" }}",
            self.id, self.ip, self.peer_port, self.ip, self.http_port
        )
    }

    /// Writes this node's config: `members` (the whole cluster as this node should know it),
    /// every partition on `replication_factor` of them, test entity types on, short Raft
    /// timeouts.
    pub fn write_config(
        &self,
        members: &[NodeSpec],
        replication_factor: usize,
        partitions: u32,
    ) -> Result<(), ClusterError> {
        let members: Vec<String> = members.iter().map(NodeSpec::member_entry).collect();
        let text = format!(
            "# written by perdure-chaos\nnode_id = {}\ndata_dir = \"{}\"\npartitions = {partitions}\nhttp_addr = \"{}:{}\"\n\n\
             [raft]\nheartbeat_interval_ms = 100\nelection_timeout_min_ms = 400\nelection_timeout_max_ms = 800\n\n\
             [entities]\ntest_types = true\n\n\
             [cluster]\ncluster_id = \"chaos\"\nsecret = \"chaos-harness-secret-0123456789\"\nlisten_addr = \"{}:{}\"\n\
             replication_factor = {replication_factor}\nmembers = [{}]\n",
            self.id,
            self.data_dir.display(),
            self.ip,
            self.http_port,
            self.ip,
            self.peer_port,
            members.join(", ")
        );
        std::fs::write(&self.config, text).map_err(|source| ClusterError::Io {
            what: "config",
            path: self.config.display().to_string(),
            source,
        })
    }
}

/// How to start a node process.
#[derive(Debug, Clone, Default)]
pub struct StartOptions {
    /// The `cgroup.procs` file to join before exec (for network faults).
    pub cgroup_procs: Option<PathBuf>,
    /// A libfaketime offset such as `+90s` (wall clock only; monotonic time stays real).
    pub faketime: Option<String>,
    /// The value of `CHAOS_INJECT_BUG` (the deliberately broken build).
    pub bug: Option<String>,
}

/// Where libfaketime's multi-threaded library is.
pub fn libfaketime() -> Option<PathBuf> {
    let dirs = std::fs::read_dir("/usr/lib").ok()?;
    let mut candidates: Vec<PathBuf> = dirs
        .flatten()
        .map(|d| d.path().join("faketime/libfaketimeMT.so.1"))
        .collect();
    candidates.push(PathBuf::from("/usr/lib/faketime/libfaketimeMT.so.1"));
    candidates.into_iter().find(|p| p.exists())
}

/// A running (or stopped) node process.
#[derive(Debug)]
pub struct NodeProc {
    /// Its spec.
    pub spec: NodeSpec,
    child: Option<Child>,
    /// Whether it is SIGSTOPped.
    pub paused: bool,
    /// The libfaketime offset it runs under, if any.
    pub skew: Option<String>,
    /// Pids of every incarnation that ran with a skewed clock.
    pub skewed_pids: Vec<u32>,
}

impl NodeProc {
    /// A node not started yet.
    pub fn new(spec: NodeSpec) -> Self {
        Self {
            spec,
            child: None,
            paused: false,
            skew: None,
            skewed_pids: Vec::new(),
        }
    }

    /// Starts `bin serve --config ...`, output appended to the node's log.
    pub fn start(&mut self, bin: &Path, opts: &StartOptions) -> Result<u32, ClusterError> {
        let id = self.spec.id;
        let log = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.spec.log)
            .map_err(|source| ClusterError::Io {
                what: "log",
                path: self.spec.log.display().to_string(),
                source,
            })?;
        let log2 = log.try_clone().map_err(|source| ClusterError::Io {
            what: "log",
            path: self.spec.log.display().to_string(),
            source,
        })?;
        let mut cmd = Command::new("sh");
        cmd.arg("-c")
            .arg(r#"if [ -n "$PDCHAOS_CGROUP" ]; then echo $$ > "$PDCHAOS_CGROUP" || exit 97; fi; exec "$@""#)
            .arg("sh")
            .arg(bin)
            .args(["serve", "--config"])
            .arg(&self.spec.config)
            .env("PERDURE_LOG", "info,openraft=error")
            .env_remove("CHAOS_INJECT_BUG")
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(log2);
        if let Some(cg) = &opts.cgroup_procs {
            cmd.env("PDCHAOS_CGROUP", cg);
        }
        if let Some(bug) = &opts.bug {
            cmd.env("CHAOS_INJECT_BUG", bug);
        }
        if let Some(offset) = &opts.faketime {
            let lib = libfaketime().ok_or_else(|| ClusterError::Process {
                node: id,
                message: "libfaketime not found (apt-get install -y faketime)".into(),
            })?;
            cmd.env("LD_PRELOAD", lib)
                .env("FAKETIME", offset)
                .env("FAKETIME_DONT_FAKE_MONOTONIC", "1")
                .env("FAKETIME_NO_CACHE", "1");
        }
        let child = cmd.spawn().map_err(|e| ClusterError::Process {
            node: id,
            message: format!("cannot start {}: {e}", bin.display()),
        })?;
        let pid = child.id();
        self.child = Some(child);
        self.paused = false;
        self.skew = opts.faketime.clone();
        if self.skew.is_some() {
            self.skewed_pids.push(pid);
        }
        Ok(pid)
    }

    /// The process id, while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// Whether a process is running (not exited; paused counts as running).
    pub fn running(&mut self) -> bool {
        match &mut self.child {
            Some(c) => matches!(c.try_wait(), Ok(None)),
            None => false,
        }
    }

    fn signal(&self, sig: &str) -> Result<(), ClusterError> {
        let pid = self.pid().ok_or_else(|| ClusterError::Process {
            node: self.spec.id,
            message: "not running".into(),
        })?;
        let st = Command::new("kill")
            .args([sig, &pid.to_string()])
            .stderr(Stdio::null())
            .status()
            .map_err(|e| ClusterError::Process {
                node: self.spec.id,
                message: format!("kill {sig}: {e}"),
            })?;
        if st.success() {
            Ok(())
        } else {
            Err(ClusterError::Process {
                node: self.spec.id,
                message: format!("kill {sig} {pid} failed"),
            })
        }
    }

    /// `kill -9` and reap.
    pub fn kill9(&mut self) -> Result<(), ClusterError> {
        let mut child = self.child.take().ok_or_else(|| ClusterError::Process {
            node: self.spec.id,
            message: "not running".into(),
        })?;
        let _ = child.kill();
        let _ = child.wait();
        self.paused = false;
        Ok(())
    }

    /// SIGSTOP.
    pub fn pause(&mut self) -> Result<(), ClusterError> {
        self.signal("-STOP")?;
        self.paused = true;
        Ok(())
    }

    /// SIGCONT.
    pub fn resume(&mut self) -> Result<(), ClusterError> {
        self.signal("-CONT")?;
        self.paused = false;
        Ok(())
    }

    /// SIGTERM, then `kill -9` if it is still there after `grace`.
    pub fn stop(&mut self, grace: std::time::Duration) {
        if self.pid().is_none() {
            return;
        }
        let _ = self.signal("-CONT");
        let _ = self.signal("-TERM");
        let t = std::time::Instant::now();
        while t.elapsed() < grace && self.running() {
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
        let _ = self.kill9();
    }
}

impl Drop for NodeProc {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = Command::new("kill")
                .args(["-CONT", &c.id().to_string()])
                .stderr(Stdio::null())
                .status();
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}
