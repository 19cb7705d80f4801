//! Network faults between node processes on one machine, with iptables (needs root).
//!
//! On loopback every connection's source address is 127.0.0.1, whatever address the peer
//! listens on, so node-to-node traffic cannot be told apart by address. Instead each node
//! process runs in its own cgroup (v2); a rule in our chain marks every new connection with the
//! cgroup of the process that opened it (`CONNMARK`), so every packet of that connection, in both
//! directions, is known to belong to "node A's connection to node B's peer port". Cutting A from B
//! drops both A's connections to B's peer port and B's connections to A's peer port, both ways.
//! Clients' HTTP traffic to the nodes (the harness) is never touched: it comes from no node
//! cgroup and goes to HTTP ports.
//!
//! Everything lives in two dedicated chains named after the harness's pid (`PDCHAOS-<pid>`,
//! jumped to from `OUTPUT`, holds the marking rules; `PDFAULT-<pid>` the faults), so a heal is one
//! flush and the teardown removes exactly what this run added. Chains of runs whose process is
//! gone are removed at start-up.

use std::path::{Path, PathBuf};
use std::process::Command;

/// A network operation failed.
#[derive(Debug, thiserror::Error)]
pub enum NetError {
    /// iptables could not be run or refused a rule.
    #[error("iptables {args}: {message}")]
    Iptables {
        /// The arguments.
        args: String,
        /// What it said.
        message: String,
    },
    /// The cgroup (v2) file system is missing or not writable.
    #[error("cgroup v2: {0}")]
    Cgroup(String),
    /// A node is not known to the network.
    #[error("node {0} is not registered with the network")]
    UnknownNode(u64),
}

/// Mark of node `id`'s connections.
fn mark(id: u64) -> u64 {
    0x7c00 + id
}

/// Runs `iptables -w ARGS`.
pub fn iptables(args: &[&str]) -> Result<String, NetError> {
    let out = Command::new("iptables")
        .arg("-w")
        .args(args)
        .output()
        .map_err(|e| NetError::Iptables {
            args: args.join(" "),
            message: format!("cannot run iptables ({e}); apt-get install -y iptables"),
        })?;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    } else {
        Err(NetError::Iptables {
            args: args.join(" "),
            message: String::from_utf8_lossy(&out.stderr).trim().to_string(),
        })
    }
}

/// Where cgroup v2 is mounted (`/sys/fs/cgroup` or `/sys/fs/cgroup/unified`).
fn cgroup2_root() -> Result<PathBuf, NetError> {
    let mounts = std::fs::read_to_string("/proc/mounts")
        .map_err(|e| NetError::Cgroup(format!("/proc/mounts: {e}")))?;
    mounts
        .lines()
        .filter_map(|l| {
            let mut f = l.split_whitespace();
            let (_, dir, fs) = (f.next()?, f.next()?, f.next()?);
            (fs == "cgroup2").then(|| PathBuf::from(dir))
        })
        .next()
        .ok_or_else(|| NetError::Cgroup("no cgroup2 file system mounted".into()))
}

/// The two chain names of the harness process `pid`.
pub fn chains(pid: u32) -> (String, String) {
    (format!("PDCHAOS-{pid}"), format!("PDFAULT-{pid}"))
}

/// Removes the chains of harness process `pid` (ignoring what is already gone).
pub fn remove_chains(pid: u32) {
    let (main, fault) = chains(pid);
    while iptables(&["-D", "OUTPUT", "-j", &main]).is_ok() {}
    for c in [&main, &fault] {
        let _ = iptables(&["-F", c]);
    }
    for c in [&main, &fault] {
        let _ = iptables(&["-X", c]);
    }
}

/// Removes the cgroup folders of harness process `pid` (retrying briefly while killed
/// processes leave them).
pub fn remove_cgroups(pid: u32) {
    let Ok(root) = cgroup2_root() else { return };
    let dir = root.join(format!("perdure-chaos-{pid}"));
    for _ in 0..20 {
        if let Ok(rd) = std::fs::read_dir(&dir) {
            for e in rd.flatten() {
                if e.path().is_dir() {
                    let _ = std::fs::remove_dir(e.path());
                }
            }
        }
        if std::fs::remove_dir(&dir).is_ok() || !dir.exists() {
            return;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
}

/// Removes chains and cgroups left by harness runs whose process is gone (a `kill -9` of the
/// harness).
pub fn remove_stale_chains() {
    if let Ok(root) = cgroup2_root() {
        for e in std::fs::read_dir(root).into_iter().flatten().flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            if let Some(pid) = name
                .strip_prefix("perdure-chaos-")
                .and_then(|p| p.parse::<u32>().ok())
            {
                if !Path::new(&format!("/proc/{pid}")).exists() {
                    remove_cgroups(pid);
                }
            }
        }
    }
    let Ok(rules) = iptables(&["-S"]) else { return };
    for line in rules.lines() {
        if let Some(pid) = line
            .strip_prefix("-N PDCHAOS-")
            .and_then(|p| p.trim().parse::<u32>().ok())
        {
            if !Path::new(&format!("/proc/{pid}")).exists() {
                tracing::warn!(pid, "removing iptables chains left by a dead chaos run");
                remove_chains(pid);
            }
        }
    }
}

/// The network of one run.
#[derive(Debug)]
pub struct Net {
    pid: u32,
    main: String,
    fault: String,
    /// Our cgroup folder (absolute) and its path relative to the cgroup2 root.
    cgroup_dir: PathBuf,
    cgroup_rel: String,
    /// Registered nodes: (id, peer port).
    nodes: Vec<(u64, u16)>,
}

impl Net {
    /// Creates the chains and the run's cgroup folder.
    pub fn setup() -> Result<Net, NetError> {
        remove_stale_chains();
        let pid = std::process::id();
        let root = cgroup2_root()?;
        let cgroup_rel = format!("perdure-chaos-{pid}");
        let cgroup_dir = root.join(&cgroup_rel);
        std::fs::create_dir_all(&cgroup_dir)
            .map_err(|e| NetError::Cgroup(format!("mkdir {}: {e}", cgroup_dir.display())))?;
        let (main, fault) = chains(pid);
        let net = Net {
            pid,
            main,
            fault,
            cgroup_dir,
            cgroup_rel,
            nodes: Vec::new(),
        };
        iptables(&["-N", &net.main])?;
        iptables(&["-N", &net.fault])?;
        iptables(&["-A", &net.main, "-j", &net.fault])?;
        iptables(&["-I", "OUTPUT", "1", "-j", &net.main])?;
        Ok(net)
    }

    /// Registers node `id` (peer port `peer_port`) and returns the `cgroup.procs` file its
    /// process must write its pid to before it opens any connection.
    pub fn add_node(&mut self, id: u64, peer_port: u16) -> Result<PathBuf, NetError> {
        let dir = self.cgroup_dir.join(format!("n{id}"));
        std::fs::create_dir_all(&dir)
            .map_err(|e| NetError::Cgroup(format!("mkdir {}: {e}", dir.display())))?;
        let path = format!("{}/n{id}", self.cgroup_rel);
        let m = format!("{:#x}", mark(id));
        // before the jump to the fault chain, so a connection is marked on its first packet
        iptables(&[
            "-I",
            &self.main,
            "1",
            "-m",
            "cgroup",
            "--path",
            &path,
            "-m",
            "conntrack",
            "--ctstate",
            "NEW",
            "-j",
            "CONNMARK",
            "--set-mark",
            &m,
        ])?;
        self.nodes.retain(|(n, _)| *n != id);
        self.nodes.push((id, peer_port));
        Ok(dir.join("cgroup.procs"))
    }

    fn port(&self, id: u64) -> Result<u16, NetError> {
        self.nodes
            .iter()
            .find(|(n, _)| *n == id)
            .map(|(_, p)| *p)
            .ok_or(NetError::UnknownNode(id))
    }

    /// Cuts all traffic between `a` and `b`, both directions, both nodes' connections.
    pub fn cut(&self, a: u64, b: u64) -> Result<(), NetError> {
        for (from, to) in [(a, b), (b, a)] {
            let port = self.port(to)?.to_string();
            let m = format!("{:#x}", mark(from));
            iptables(&[
                "-A",
                &self.fault,
                "-p",
                "tcp",
                "-m",
                "connmark",
                "--mark",
                &m,
                "-m",
                "multiport",
                "--ports",
                &port,
                "-j",
                "DROP",
            ])?;
        }
        Ok(())
    }

    /// Cuts every link between nodes of different groups.
    pub fn partition(&self, groups: &[Vec<u64>]) -> Result<(), NetError> {
        for (i, g) in groups.iter().enumerate() {
            for h in &groups[i + 1..] {
                for a in g {
                    for b in h {
                        self.cut(*a, *b)?;
                    }
                }
            }
        }
        Ok(())
    }

    /// Drops each packet of node-to-node traffic with probability `p` (both directions).
    pub fn loss(&self, p: f64) -> Result<(), NetError> {
        for (id, port) in &self.nodes {
            let _ = id;
            let prob = format!("{p}");
            let port = port.to_string();
            iptables(&[
                "-A",
                &self.fault,
                "-p",
                "tcp",
                "-m",
                "connmark",
                "--mark",
                &format!("{:#x}/0xff00", 0x7c00),
                "-m",
                "multiport",
                "--ports",
                &port,
                "-m",
                "statistic",
                "--mode",
                "random",
                "--probability",
                &prob,
                "-j",
                "DROP",
            ])?;
        }
        Ok(())
    }

    /// Removes every fault rule (marking stays); returns how many packets the rules dropped
    /// (evidence that the fault took effect).
    pub fn heal(&self) -> Result<u64, NetError> {
        let dropped = self.dropped();
        iptables(&["-F", &self.fault])?;
        Ok(dropped)
    }

    /// Packets dropped by the fault rules now in place.
    pub fn dropped(&self) -> u64 {
        iptables(&["-L", &self.fault, "-v", "-n", "-x"])
            .map(|s| {
                s.lines()
                    .skip(2)
                    .filter_map(|l| l.split_whitespace().next()?.parse::<u64>().ok())
                    .sum()
            })
            .unwrap_or(0)
    }

    /// The fault rules now in place (for the report).
    pub fn rules(&self) -> Vec<String> {
        iptables(&["-S", &self.fault])
            .map(|s| s.lines().skip(1).map(str::to_string).collect())
            .unwrap_or_default()
    }

    /// Removes the chains and (once the processes are gone) the cgroup folders.
    pub fn teardown(&self) {
        remove_chains(self.pid);
        remove_cgroups(self.pid);
    }
}
