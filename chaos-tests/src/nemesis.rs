//! Applying and healing the scheduled faults on the running cluster.

use perdure_chaos::cluster::{self, NodeProc, StartOptions};
use perdure_chaos::net::Net;
use perdure_chaos::schedule::{Fault, Nemesis};
use perdure_harness::{ready, NodeSpec};
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use serde::Serialize;
use std::collections::{BTreeSet, HashMap};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Pids of node processes this harness started, for the Ctrl-C / panic clean-up.
pub static PIDS: Mutex<BTreeSet<u32>> = Mutex::new(BTreeSet::new());

/// The cluster under test.
#[derive(Debug)]
pub struct Cluster {
    /// The nodes (the ones a membership fault adds come and go).
    pub nodes: Vec<NodeProc>,
    /// The network faults (`None` when iptables/cgroups are unusable).
    pub net: Option<Net>,
    /// Why `net` is `None`.
    pub net_error: Option<String>,
    /// The `perdure` binary.
    pub bin: PathBuf,
    /// Partitions per node.
    pub partitions: u32,
    /// `CHAOS_INJECT_BUG` for every node.
    pub bug: Option<String>,
    /// The directory of node files.
    pub dir: PathBuf,
    /// First octet offset of node addresses.
    pub ip_base: u8,
    /// Nodes of the initial cluster.
    pub initial: usize,
    /// Each registered node's cgroup folder.
    pub cgroups: HashMap<u64, PathBuf>,
    /// The id the next added node gets (a removed id may never join again).
    pub next_id: u64,
    /// `raft.snapshot_every_entries` of every node (`None`: the node's default).
    pub snapshot_every: Option<u64>,
    /// The powerfs mount of each initial node's data directory (runs with `powerloss` only);
    /// after `nodes`, so that a dropped cluster kills its nodes before it unmounts.
    pub power: HashMap<u64, perdure_chaos::powerfs::PowerMount>,
    /// The nodes running the `ingest` workload's consumers, as its monitor last saw them
    /// (empty without it): the "leader" variants pick one of them half the time.
    pub consumers: Arc<Mutex<Vec<u64>>>,
}

impl Cluster {
    fn options(&self, id: u64, faketime: Option<String>) -> StartOptions {
        StartOptions {
            cgroup_procs: self.cgroups.get(&id).map(|d| d.join("cgroup.procs")),
            faketime,
            bug: self.bug.clone(),
        }
    }

    /// Starts node at index `i` (normal clock unless `faketime`).
    pub fn start(&mut self, i: usize, faketime: Option<String>) -> Result<u32, String> {
        let id = self.nodes[i].spec.id;
        let opts = self.options(id, faketime);
        let pid = self.nodes[i].start(&opts).map_err(|e| e.to_string())?;
        PIDS.lock().unwrap_or_else(|p| p.into_inner()).insert(pid);
        Ok(pid)
    }

    /// `kill -9` of node at index `i`.
    pub fn kill(&mut self, i: usize) -> Result<(), String> {
        let pid = self.nodes[i].pid();
        self.nodes[i].kill9().map_err(|e| e.to_string())?;
        if let Some(pid) = pid {
            PIDS.lock().unwrap_or_else(|p| p.into_inner()).remove(&pid);
        }
        Ok(())
    }

    fn index(&self, id: u64) -> Option<usize> {
        self.nodes.iter().position(|n| n.spec.id == id)
    }

    /// Ids of the initial members.
    pub fn member_ids(&self) -> Vec<u64> {
        self.nodes[..self.initial]
            .iter()
            .map(|n| n.spec.id)
            .collect()
    }

    /// The specs of the initial members.
    pub fn specs(&self) -> Vec<NodeSpec> {
        self.nodes[..self.initial]
            .iter()
            .map(|n| n.spec.clone())
            .collect()
    }
}

impl Cluster {
    /// Registers node `id` with the network (its cgroup) when there is one.
    pub fn register(&mut self, id: u64, peer_port: u16) -> Result<(), String> {
        if let Some(net) = &mut self.net {
            let procs = net.add_node(id, peer_port).map_err(|e| e.to_string())?;
            let dir = procs.parent().map(PathBuf::from).unwrap_or_default();
            self.cgroups.insert(id, dir);
        }
        Ok(())
    }
}

/// Runs blocking process and iptables work off the async workers' way (a `kill -9` reaps,
/// a stop waits up to its grace): without it one blocked worker thread stalled every client
/// worker of the run for seconds (seen as a 5 s throughput hole at each membership removal).
fn blocking<T>(f: impl FnOnce() -> T) -> T {
    tokio::task::block_in_place(f)
}

/// Runs `f` on the run's network (blocking), or says why there is none.
fn with_net<T>(
    cl: &Mutex<Cluster>,
    f: impl FnOnce(&Net) -> Result<T, perdure_chaos::net::NetError>,
) -> Result<T, String> {
    blocking(|| {
        let c = cl.lock().unwrap_or_else(|p| p.into_inner());
        let net = c.net.as_ref().ok_or_else(|| {
            format!(
                "no network control: {}",
                c.net_error.clone().unwrap_or_default()
            )
        })?;
        f(net).map_err(|e| e.to_string())
    })
}

/// What happened to one scheduled fault.
#[derive(Debug, Clone, Serialize)]
pub struct FaultRecord {
    /// The schedule entry.
    pub fault: Fault,
    /// When it was applied (ms since the start).
    pub applied_ms: u64,
    /// When it was healed.
    pub healed_ms: Option<u64>,
    /// Whether it took effect.
    pub applied: bool,
    /// The nodes it hit.
    pub targets: Vec<u64>,
    /// What exactly was done.
    pub detail: String,
    /// Why it could not be applied.
    pub error: Option<String>,
    /// Why its heal failed.
    pub heal_error: Option<String>,
    /// What the heal observed (for network faults: packets the rules dropped).
    pub effect: Option<String>,
}

/// How to undo an applied fault.
#[derive(Debug)]
pub enum Heal {
    /// Start these nodes again.
    Restart(Vec<u64>),
    /// SIGCONT these.
    Resume(Vec<u64>),
    /// Flush the network fault rules.
    Net,
    /// Restart this node without the skew.
    Unskew(u64),
    /// Remove this added node.
    Membership(u64),
    /// Nothing to undo: the fault was over once applied.
    Nothing,
}

/// The node leading the most partitions, as the first answering node sees it.
pub async fn leader(http: &reqwest::Client, urls: &[String]) -> Option<u64> {
    for url in urls {
        let Ok(r) = http.get(format!("{url}/cluster")).send().await else {
            continue;
        };
        let Ok(v) = r.json::<serde_json::Value>().await else {
            continue;
        };
        let mut count: HashMap<u64, usize> = HashMap::new();
        for p in v["partitions"].as_array().into_iter().flatten() {
            if let Some(l) = p["leader"].as_u64() {
                *count.entry(l).or_default() += 1;
            }
        }
        if let Some((l, _)) = count.into_iter().max_by_key(|(l, c)| (*c, *l)) {
            return Some(l);
        }
    }
    None
}

/// The node's start-up error from its log, else its last `lines` lines.
pub fn tail(path: &std::path::Path, lines: usize) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    if let Some(e) = text.lines().find(|l| l.starts_with("Error:")) {
        return e.to_string();
    }
    let v: Vec<&str> = text.lines().collect();
    v[v.len().saturating_sub(lines)..].join(" | ")
}

/// Applies `fault`; returns the targets, a description and how to heal it.
pub async fn apply(
    fault: &Fault,
    cl: &Mutex<Cluster>,
    http: &reqwest::Client,
) -> Result<(Vec<u64>, String, Heal), String> {
    let mut rng = rand::rngs::StdRng::seed_from_u64(fault.pick);
    let (ids, urls) = {
        let c = cl.lock().unwrap_or_else(|p| p.into_inner());
        let urls: Vec<String> = c.nodes[..c.initial]
            .iter()
            .filter(|n| !n.is_paused())
            .map(|n| n.spec.url())
            .collect();
        (c.member_ids(), urls)
    };
    let random = ids[rng.gen_range(0..ids.len())];
    // with the ingest workload, half the "leader" picks go to a node running its consumers
    // (the rng is drawn only then: schedules of runs without it stay as they were)
    let consumers: Vec<u64> = {
        let c = cl.lock().unwrap_or_else(|p| p.into_inner());
        let v = c
            .consumers
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        v.into_iter().filter(|n| ids.contains(n)).collect()
    };
    let consumer = (!consumers.is_empty() && rng.gen_bool(0.5))
        .then(|| consumers[rng.gen_range(0..consumers.len())]);
    let pick_leader = || async {
        if let Some(n) = consumer {
            return (n, "runs the ingest consumers");
        }
        match leader(http, &urls).await {
            Some(l) if ids.contains(&l) => (l, "leader of the most partitions"),
            _ => (random, "random (no leader known)"),
        }
    };
    match fault.nemesis {
        Nemesis::Restart => {
            // Back before the others elect anyone: openraft resumes the leadership the node
            // held (same term), with whatever commit index it had saved.
            let (t, why) = match fault.variant.as_str() {
                "leader" => pick_leader().await,
                _ => (random, "random"),
            };
            blocking(|| {
                let mut c = cl.lock().unwrap_or_else(|p| p.into_inner());
                let i = c.index(t).ok_or("no such node")?;
                c.kill(i)?;
                c.start(i, None).map(|_| ())
            })?;
            Ok((
                vec![t],
                format!("kill -9 [{t}] ({why}) and start it again at once"),
                Heal::Nothing,
            ))
        }
        Nemesis::Kill | Nemesis::Pause | Nemesis::Powerloss => {
            let (targets, why) = match fault.variant.as_str() {
                "leader" => {
                    let (l, why) = pick_leader().await;
                    (vec![l], why.to_string())
                }
                "minority" => {
                    let mut v = ids.clone();
                    v.shuffle(&mut rng);
                    v.truncate((ids.len() - 1) / 2);
                    (v, "a minority".to_string())
                }
                _ => (vec![random], "random".to_string()),
            };
            let dropped = blocking(|| {
                let mut c = cl.lock().unwrap_or_else(|p| p.into_inner());
                let mut dropped = Vec::new();
                for t in &targets {
                    let i = c.index(*t).ok_or("no such node")?;
                    match fault.nemesis {
                        Nemesis::Kill => c.kill(i)?,
                        Nemesis::Powerloss => {
                            dropped.push(crate::powerloss::pull_plug(&mut c, *t)?)
                        }
                        _ => c.nodes[i].pause().map_err(|e| e.to_string())?,
                    }
                }
                Ok::<_, String>(dropped)
            })?;
            let (verb, heal) = match fault.nemesis {
                Nemesis::Kill => ("kill -9", Heal::Restart(targets.clone())),
                Nemesis::Powerloss => ("pull the plug on", Heal::Restart(targets.clone())),
                _ => ("SIGSTOP", Heal::Resume(targets.clone())),
            };
            let dropped = if dropped.is_empty() {
                String::new()
            } else {
                format!(": {}", dropped.join("; "))
            };
            Ok((
                targets.clone(),
                format!("{verb} {targets:?} ({why}){dropped}"),
                heal,
            ))
        }
        Nemesis::Partition => {
            let mut shuffled = ids.clone();
            shuffled.shuffle(&mut rng);
            let (groups, what): (Vec<Vec<u64>>, String) = match fault.variant.as_str() {
                "isolate-leader" => {
                    let (l, why) = pick_leader().await;
                    let rest: Vec<u64> = ids.iter().copied().filter(|i| *i != l).collect();
                    (vec![vec![l], rest], format!("isolate {l} ({why})"))
                }
                "halves" => {
                    let k = ids.len() / 2;
                    let (a, b) = shuffled.split_at(k);
                    (
                        vec![a.to_vec(), b.to_vec()],
                        format!("minority {a:?} | majority {b:?}"),
                    )
                }
                "bridge" | "ring" => {
                    // handled below as explicit links
                    (Vec::new(), String::new())
                }
                _ => {
                    let rest: Vec<u64> = ids.iter().copied().filter(|i| *i != random).collect();
                    (vec![vec![random], rest], format!("isolate {random}"))
                }
            };
            let what = with_net(cl, |net| {
                Ok(if fault.variant == "bridge" {
                    let (a, b) = (shuffled[0], shuffled[1]);
                    net.cut(a, b)?;
                    format!("cut the link {a} <-> {b} only (others see both)")
                } else if fault.variant == "ring" {
                    let n = shuffled.len();
                    for i in 0..n {
                        for j in i + 1..n {
                            let adjacent = j == i + 1 || (i == 0 && j == n - 1);
                            if !adjacent {
                                net.cut(shuffled[i], shuffled[j])?;
                            }
                        }
                    }
                    format!("ring {shuffled:?}: each node reaches only its neighbours")
                } else {
                    net.partition(&groups)?;
                    what
                })
            })?;
            Ok((ids.clone(), what, Heal::Net))
        }
        Nemesis::Loss => {
            let p = if fault.variant == "loss-30" { 0.3 } else { 0.1 };
            with_net(cl, |net| net.loss(p))?;
            Ok((
                ids.clone(),
                format!("drop {:.0}% of node-to-node packets", p * 100.0),
                Heal::Net,
            ))
        }
        Nemesis::Skew => {
            let secs = rng.gen_range(30..180);
            let offset = if fault.variant == "behind" {
                format!("-{secs}s")
            } else {
                format!("+{secs}s")
            };
            blocking(|| {
                let mut c = cl.lock().unwrap_or_else(|p| p.into_inner());
                let i = c.index(random).ok_or("no such node")?;
                c.kill(i)?;
                c.start(i, Some(offset.clone()))
            })?;
            Ok((
                vec![random],
                format!("restart {random} under libfaketime {offset} (wall clock only)"),
                Heal::Unskew(random),
            ))
        }
        Nemesis::Membership => {
            let (spec, url0) = blocking(|| {
                let mut c = cl.lock().unwrap_or_else(|p| p.into_inner());
                let id = c.next_id;
                c.next_id += 1;
                let spec = NodeSpec::new(id, c.ip_base, &c.dir).map_err(|e| e.to_string())?;
                let mut members = c.specs();
                members.push(spec.clone());
                cluster::write_config(&spec, &members, c.initial, c.partitions, c.snapshot_every)
                    .map_err(|e| e.to_string())?;
                c.register(id, spec.peer_port)?;
                let node = NodeProc::new(spec.clone(), &c.bin);
                c.nodes.push(node);
                let i = c.nodes.len() - 1;
                c.start(i, None)?;
                Ok::<_, String>((spec, urls.first().cloned().unwrap_or_default()))
            })?;
            let _ = url0;
            let t = Instant::now();
            while t.elapsed() < Duration::from_secs(45) {
                let running = {
                    let mut c = cl.lock().unwrap_or_else(|p| p.into_inner());
                    let i = c.index(spec.id).ok_or("added node vanished")?;
                    c.nodes[i].running()
                };
                if !running {
                    return Err(format!(
                        "membership: the added node {} exited at start-up (auto-join not supported by this build?): {}",
                        spec.id,
                        tail(&spec.log, 3)
                    ));
                }
                if ready(&spec.url(), Duration::from_millis(500)).await {
                    return Ok((
                        vec![spec.id],
                        format!("added node {} ({})", spec.id, spec.url()),
                        Heal::Membership(spec.id),
                    ));
                }
            }
            Err(format!(
                "membership: the added node {} never became ready within 45 s: {}",
                spec.id,
                tail(&spec.log, 3)
            ))
        }
    }
}

/// Whether some partition still lists `id` among its replicas, as the first answering node says.
async fn hosts_replicas(http: &reqwest::Client, urls: &[String], id: u64) -> Option<bool> {
    for url in urls {
        let Ok(r) = http.get(format!("{url}/cluster")).send().await else {
            continue;
        };
        let Ok(v) = r.json::<serde_json::Value>().await else {
            continue;
        };
        let listed = v["partitions"].as_array().into_iter().flatten().any(|p| {
            ["replicas", "voters", "learners"].iter().any(|k| {
                p[*k]
                    .as_array()
                    .is_some_and(|a| a.iter().any(|x| x.as_u64() == Some(id)))
            })
        });
        return Some(listed);
    }
    None
}

/// Removes a node added by the membership nemesis (also after a failed add).
pub async fn remove_added(
    cl: &Mutex<Cluster>,
    http: &reqwest::Client,
    id: u64,
) -> Result<(), String> {
    let urls: Vec<String> = {
        let c = cl.lock().unwrap_or_else(|p| p.into_inner());
        c.nodes[..c.initial].iter().map(|n| n.spec.url()).collect()
    };
    let mut result = Err("no node answered the removal".to_string());
    // `DELETE /cluster/members/{id}`; a 503 (the metadata group has no leader right now) is
    // tried again for a while
    let t = Instant::now();
    'attempts: while t.elapsed() < Duration::from_secs(20) {
        for url in &urls {
            for path in [format!("{url}/cluster/members/{id}")] {
                match http.delete(&path).send().await {
                    Ok(r) if r.status().is_success() => {
                        result = Ok(());
                        break 'attempts;
                    }
                    Ok(r)
                        if r.status() == reqwest::StatusCode::NOT_FOUND
                            || r.status() == reqwest::StatusCode::METHOD_NOT_ALLOWED =>
                    {
                        result = Err(format!(
                            "DELETE {path} answered {} (no membership removal in this build)",
                            r.status()
                        ));
                    }
                    Ok(r) => {
                        let status = r.status();
                        let body = r.text().await.unwrap_or_default();
                        result = Err(format!("DELETE {path} answered {status}: {body}"));
                        if status != reqwest::StatusCode::SERVICE_UNAVAILABLE {
                            break 'attempts;
                        }
                        break;
                    }
                    Err(e) => {
                        result = Err(format!("DELETE {path}: {e}"));
                        break;
                    }
                }
            }
        }
        if matches!(&result, Err(e) if e.contains("no membership removal")) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    if result.is_ok() {
        // let the replicas move off the removed node before it goes
        let t = Instant::now();
        while t.elapsed() < Duration::from_secs(60) {
            if !hosts_replicas(http, &urls, id).await.unwrap_or(true) {
                break;
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
        if hosts_replicas(http, &urls, id).await.unwrap_or(false) {
            result = Err(format!(
                "node {id} removed, but it still holds replicas after 60 s"
            ));
        }
    }
    blocking(|| {
        let mut c = cl.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(i) = c.index(id) {
            if let Some(pid) = c.nodes[i].pid() {
                PIDS.lock().unwrap_or_else(|p| p.into_inner()).remove(&pid);
            }
            let _ = c.nodes[i].stop(Duration::from_secs(5));
            c.nodes.remove(i);
        }
    });
    result
}

/// Undoes an applied fault; returns what it observed (e.g. packets dropped).
pub async fn heal(
    heal: Heal,
    cl: &Mutex<Cluster>,
    http: &reqwest::Client,
) -> Result<String, String> {
    if let Heal::Membership(id) = heal {
        return remove_added(cl, http, id)
            .await
            .map(|_| format!("removed node {id}"));
    }
    blocking(|| match heal {
        Heal::Restart(ids) => {
            let mut c = cl.lock().unwrap_or_else(|p| p.into_inner());
            for id in ids {
                let i = c.index(id).ok_or("no such node")?;
                c.start(i, None)?;
            }
            Ok("restarted".into())
        }
        Heal::Resume(ids) => {
            let mut c = cl.lock().unwrap_or_else(|p| p.into_inner());
            for id in ids {
                let i = c.index(id).ok_or("no such node")?;
                c.nodes[i].resume().map_err(|e| e.to_string())?;
            }
            Ok("resumed".into())
        }
        Heal::Net => {
            let c = cl.lock().unwrap_or_else(|p| p.into_inner());
            match &c.net {
                Some(n) => n
                    .heal()
                    .map(|dropped| format!("the rules dropped {dropped} packets"))
                    .map_err(|e| e.to_string()),
                None => Ok(String::new()),
            }
        }
        Heal::Unskew(id) => {
            let mut c = cl.lock().unwrap_or_else(|p| p.into_inner());
            let i = c.index(id).ok_or("no such node")?;
            c.kill(i)?;
            c.start(i, None)
                .map(|_| "restarted with the real clock".into())
        }
        Heal::Nothing => Ok(String::new()),
        Heal::Membership(_) => unreachable!("handled above"),
    })
}
