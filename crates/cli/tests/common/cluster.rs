//! Real `perdure` clusters for tests: members on 127.0.0.x with free ports, their configs and
//! node processes (through `perdure-harness`; killed when dropped), load that counts what was
//! acknowledged, and checks.

use perdure_types::config::NodeConfig;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

// not every test binary uses each
#[allow(unused_imports)]
pub use super::free_port_on as free_port;
#[allow(unused_imports)]
pub use perdure_harness::{ready, Node, NodeSpec};

/// An HTTP client with the tests' 5 s timeout per request.
pub fn http_client() -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(Duration::from_secs(5))
        .build()
        .unwrap()
}

/// Three members on 127.0.0.1-3 with free ports, their files in `dir`.
pub fn three_members(dir: &Path) -> Vec<NodeSpec> {
    (1..=3).map(|id| member(id, dir)).collect()
}

/// Member `id` on 127.0.0.`id` with free ports, its files in `dir`.
pub fn member(id: u64, dir: &Path) -> NodeSpec {
    NodeSpec::new(id, 0, dir).unwrap()
}

/// The tests' config of member `m` of a cluster that `all` seeds: test entity types on, quick
/// passivation, a snapshot every 2 000 entries.
pub fn test_config(
    m: &NodeSpec,
    all: &[NodeSpec],
    cluster_id: &str,
    secret: &str,
    partitions: usize,
) -> NodeConfig {
    let mut c = m.config(all);
    c.partitions = partitions as u32;
    c.raft.snapshot_every_entries = 2000;
    c.entities.test_types = true;
    c.entities.passivate_after_ms = 200;
    c.cluster.cluster_id = cluster_id.into();
    c.cluster.secret = secret.into();
    c
}

/// Writes [`test_config`] to `m`'s config file.
pub fn write_config_with(
    m: &NodeSpec,
    all: &[NodeSpec],
    cluster_id: &str,
    secret: &str,
    partitions: usize,
) {
    m.write_config(&test_config(m, all, cluster_id, secret, partitions))
        .unwrap();
}

/// This build's binary, or the one `PERDURE_TEST_BIN` names (to see whether a test fails on
/// another build, e.g. one without a fix).
pub fn test_bin() -> PathBuf {
    std::env::var_os("PERDURE_TEST_BIN")
        .unwrap_or_else(|| env!("CARGO_BIN_EXE_perdure").into())
        .into()
}

/// Starts node `m` on its config file (written already); output to its log file.
pub fn start(m: &NodeSpec) -> Node {
    let mut node = Node::new(m.clone(), test_bin());
    node.start(&Default::default()).unwrap();
    node
}

/// The nodes; killed when dropped (their logs' tails shown if a test fails), so a failing test
/// leaves no process behind.
pub struct Nodes(pub Vec<Node>);

impl Nodes {
    /// Starts every member in `specs`.
    pub fn start(specs: &[NodeSpec]) -> Self {
        Nodes(specs.iter().map(start).collect())
    }

    /// Kills node `i` with -9 (SIGKILL) and reaps it; it stays down until restarted.
    pub fn kill(&mut self, i: usize) {
        self.0[i].kill9().unwrap();
    }

    /// Starts node `i` again on its data directory and (current) config file.
    pub fn restart(&mut self, i: usize) {
        self.0[i].restart().unwrap();
    }
}

/// Partitions each node leads, as `url` sees it.
pub async fn leaders(http: &reqwest::Client, url: &str) -> Option<HashMap<u64, usize>> {
    let v = status(http, url).await?;
    let mut count = HashMap::new();
    for p in v["partitions"].as_array()? {
        if let Some(l) = p["leader"].as_u64() {
            *count.entry(l).or_insert(0) += 1;
        }
    }
    Some(count)
}

/// The cluster's status as node `url` sees it.
pub async fn status(http: &reqwest::Client, url: &str) -> Option<serde_json::Value> {
    http.get(format!("{url}/cluster"))
        .send()
        .await
        .ok()?
        .json()
        .await
        .ok()
}

/// Waits until every one of the `partitions` partitions is led by its preferred leader, the
/// first of its replicas by placement over `members` (computed here, not taken from the node),
/// as `url` sees it: leader balancing is then done. Panics after 60 s.
pub async fn wait_balanced(
    http: &reqwest::Client,
    url: &str,
    partitions: usize,
    members: &[u64],
) -> serde_json::Value {
    let t = Instant::now();
    loop {
        let v = status(http, url).await.unwrap_or_default();
        let settled = v["partitions"].as_array().is_some_and(|ps| {
            ps.len() == partitions
                && ps.iter().all(|p| {
                    let preferred = perdure_types::placement::replicas(
                        p["partition"].as_u64().unwrap_or(u64::MAX) as u32,
                        members,
                        3,
                    )[0];
                    p["leader"].as_u64() == Some(preferred)
                })
        });
        if settled {
            return v;
        }
        assert!(
            t.elapsed() < Duration::from_secs(60),
            "leaders never settled on their preferred nodes: {v}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Clients adding random amounts to `counter/k{i}` (`i < counters`) with idempotency keys,
/// each add retried (on a node picked again from `targets`) until acknowledged, and counted
/// only then. Panics if an add is not acknowledged within 60 s or is refused as bad input.
pub struct Adders {
    /// The node URLs the clients use now (tests change them as nodes come and go).
    pub targets: std::sync::Arc<std::sync::Mutex<Vec<String>>>,
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    /// Acknowledged sum per counter, and acknowledged adds.
    acked: std::sync::Arc<std::sync::Mutex<Added>>,
    retries: std::sync::Arc<std::sync::atomic::AtomicU64>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Adders {
    /// Starts `clients` clients, seeded from `seed`.
    pub fn start(
        http: &reqwest::Client,
        targets: Vec<String>,
        clients: u64,
        counters: usize,
        seed: u64,
    ) -> Self {
        use rand::{Rng, SeedableRng};
        use std::sync::atomic::Ordering;
        let targets = std::sync::Arc::new(std::sync::Mutex::new(targets));
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let acked: std::sync::Arc<std::sync::Mutex<Added>> = Default::default();
        let retries = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
        let tasks = (0..clients)
            .map(|c| {
                let (http, targets, stop, acked, retries) = (
                    http.clone(),
                    targets.clone(),
                    stop.clone(),
                    acked.clone(),
                    retries.clone(),
                );
                let mut rng = rand::rngs::StdRng::seed_from_u64(seed ^ (c + 1));
                tokio::spawn(async move {
                    let mut n = 0;
                    while !stop.load(Ordering::Relaxed) {
                        let counter = rng.gen_range(0..counters);
                        let amount: i64 = rng.gen_range(1..=9);
                        let key = format!("c{c}-{n}");
                        n += 1;
                        let since = Instant::now();
                        loop {
                            assert!(
                                since.elapsed() < Duration::from_secs(60),
                                "signal {key} not acknowledged within 60 s"
                            );
                            let url = {
                                let t = targets.lock().unwrap();
                                t[rng.gen_range(0..t.len())].clone()
                            };
                            let r = http
                                .post(format!("{url}{BASE}/entities/counter/k{counter}?op=add"))
                                .header("Idempotency-Key", &key)
                                .json(&amount)
                                .send()
                                .await;
                            match r {
                                Ok(resp) if resp.status() == 202 => {
                                    let body: serde_json::Value =
                                        resp.json().await.unwrap_or_default();
                                    let mut a = acked.lock().unwrap();
                                    *a.sums.entry(counter).or_default() += amount;
                                    a.adds += 1;
                                    a.duplicates += u64::from(body["duplicate"] == true);
                                    break;
                                }
                                Ok(resp) if resp.status().is_client_error() => {
                                    panic!("{url}: {}", resp.status())
                                }
                                other => {
                                    if std::env::var("PERDURE_TEST_VERBOSE").is_ok() {
                                        let what = match other {
                                            Ok(r) => format!(
                                                "{} {}",
                                                r.status(),
                                                r.text().await.unwrap_or_default()
                                            ),
                                            Err(e) => e.to_string(),
                                        };
                                        eprintln!("retry {url}: {what}");
                                    }
                                    retries.fetch_add(1, Ordering::Relaxed);
                                    tokio::time::sleep(Duration::from_millis(20)).await;
                                }
                            }
                        }
                    }
                })
            })
            .collect();
        Self {
            targets,
            stop,
            acked,
            retries,
            tasks,
        }
    }

    /// The sums acknowledged so far (each recorded just after its acknowledgement arrived, so
    /// a read that starts after this call must see at least these).
    pub fn sums(&self) -> HashMap<usize, i64> {
        self.acked.lock().unwrap().sums.clone()
    }

    /// Stops the clients (each finishes the add it is retrying).
    pub async fn stop(self) -> Added {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
        for t in self.tasks {
            t.await.unwrap();
        }
        let mut added = self.acked.lock().unwrap().clone();
        added.retries = self.retries.load(std::sync::atomic::Ordering::Relaxed);
        added
    }
}

/// What [`Adders`] got acknowledged.
#[derive(Debug, Clone, Default)]
pub struct Added {
    /// The acknowledged sum per counter.
    pub sums: HashMap<usize, i64>,
    /// Acknowledged adds.
    pub adds: u64,
    /// Of those, acknowledged as duplicates (a retry of an add applied before).
    pub duplicates: u64,
    /// Attempts that failed and were retried.
    pub retries: u64,
}

/// Asserts that every counter in `acked` reads exactly its acknowledged sum through `url`
/// (reads that fail, e.g. while a leader is elected, are retried for 30 s in all).
pub async fn assert_counters_exact(http: &reqwest::Client, url: &str, acked: &HashMap<usize, i64>) {
    // One deadline for all reads: a node that cannot serve fails the test in bounded time
    // (each read has the client's own timeout too) instead of retrying for minutes.
    let deadline = Instant::now() + Duration::from_secs(30);
    for (counter, sum) in acked {
        let mut last: String;
        let v = loop {
            match http
                .get(format!("{url}{BASE}/entities/counter/k{counter}"))
                .timeout(Duration::from_secs(5))
                .send()
                .await
            {
                Ok(r) if r.status() == 200 => break r.json::<serde_json::Value>().await.unwrap(),
                Ok(r) => last = format!("status {}", r.status()),
                Err(e) => last = e.to_string(),
            }
            assert!(
                Instant::now() < deadline,
                "counter k{counter} unreadable via {url} for 30 s: {last}"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        };
        assert_eq!(v.as_i64(), Some(*sum), "counter k{counter} via {url}");
    }
}

pub use super::BASE;
