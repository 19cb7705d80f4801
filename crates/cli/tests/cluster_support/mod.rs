//! Real `perdure` clusters for tests: members on 127.0.0.x with free ports, their configs, and
//! the node processes (killed when dropped).

#![allow(dead_code)]

use std::collections::HashMap;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub fn free_port(ip: &str) -> u16 {
    std::net::TcpListener::bind((ip, 0))
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
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

impl Drop for Nodes {
    fn drop(&mut self) {
        for child in self.0.iter_mut().flatten() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

pub fn start(config: &Path) -> Child {
    Command::new(env!("CARGO_BIN_EXE_perdure"))
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
    let v: serde_json::Value = http
        .get(format!("{url}/cluster"))
        .send()
        .await
        .ok()?
        .json()
        .await
        .ok()?;
    let mut count = HashMap::new();
    for p in v["partitions"].as_array()? {
        if let Some(l) = p["leader"].as_u64() {
            *count.entry(l).or_insert(0) += 1;
        }
    }
    Some(count)
}
