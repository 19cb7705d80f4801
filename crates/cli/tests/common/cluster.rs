//! Real `perdure` clusters for tests: members on 127.0.0.x with free ports, their configs, the
//! node processes (killed when dropped), load that counts what was acknowledged, and checks.

use std::collections::HashMap;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub use super::free_port_on as free_port;

/// An HTTP client with the tests' 5 s timeout per request.
pub fn http_client() -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(Duration::from_secs(5))
        .build()
        .unwrap()
}

pub struct Member {
    pub id: u64,
    pub ip: String,
    pub http: u16,
    pub peer: u16,
}

impl Member {
    pub fn url(&self) -> String {
        format!("http://{}:{}", self.ip, self.http)
    }
}

/// Three members on 127.0.0.1-3 with free ports.
pub fn three_members() -> Vec<Member> {
    (1..=3).map(member).collect()
}

/// Member `id` on 127.0.0.`id` with free ports.
pub fn member(id: u64) -> Member {
    let ip = format!("127.0.0.{id}");
    Member {
        id,
        http: free_port(&ip),
        peer: free_port(&ip),
        ip,
    }
}

pub fn write_config_with(
    dir: &Path,
    m: &Member,
    all: &[Member],
    cluster_id: &str,
    secret: &str,
    partitions: usize,
) -> std::path::PathBuf {
    let members: Vec<String> = all
        .iter()
        .map(|o| {
            format!(
                "{{ node_id = {}, addr = \"{}:{}\", http_addr = \"{}:{}\" }}",
                o.id, o.ip, o.peer, o.ip, o.http
            )
        })
        .collect();
    let text = format!(
        "node_id = {}\ndata_dir = \"{}\"\npartitions = {partitions}\nhttp_addr = \"{}:{}\"\n\n[raft]\nheartbeat_interval_ms = 100\nelection_timeout_min_ms = 400\nelection_timeout_max_ms = 800\nsnapshot_every_entries = 2000\n\n[entities]\ntest_types = true\npassivate_after_ms = 200\n\n[cluster]\ncluster_id = \"{cluster_id}\"\nsecret = \"{secret}\"\nlisten_addr = \"{}:{}\"\nmembers = [{}]\n",
        m.id,
        dir.join(format!("node{}", m.id)).display(),
        m.ip,
        m.http,
        m.ip,
        m.peer,
        members.join(", ")
    );
    let path = dir.join(format!("node{}.toml", m.id));
    std::fs::write(&path, text).unwrap();
    path
}

/// The nodes; killed when dropped, so a failing test leaves no process behind.
pub struct Nodes(pub Vec<Option<Child>>);

impl Nodes {
    /// Kills node `i` with -9 (SIGKILL) and reaps it; its slot stays empty until started again.
    pub fn kill(&mut self, i: usize) {
        let mut child = self.0[i].take().expect("the node is running");
        child.kill().unwrap();
        child.wait().unwrap();
    }
}

impl Drop for Nodes {
    fn drop(&mut self) {
        for child in self.0.iter_mut().flatten() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// Starts a node on `config`: this build's binary, or the one `PERDURE_TEST_BIN` names (to see
/// whether a test fails on another build, e.g. one without a fix).
pub fn start(config: &Path) -> Child {
    let bin = std::env::var_os("PERDURE_TEST_BIN")
        .unwrap_or_else(|| env!("CARGO_BIN_EXE_perdure").into());
    Command::new(bin)
        .args(["serve", "--config"])
        .arg(config)
        .env("PERDURE_LOG", "error,openraft=off")
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap()
}

pub async fn ready(http: &reqwest::Client, url: &str, within: Duration) -> bool {
    let t = Instant::now();
    while t.elapsed() < within {
        if matches!(http.get(format!("{url}/readyz")).send().await, Ok(r) if r.status() == 200) {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    false
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
