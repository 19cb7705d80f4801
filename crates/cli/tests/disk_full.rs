//! A full disk answers 503, stops the node (fail-stop) and loses nothing already acknowledged.
//! The data directory lives on a 3 MiB tmpfs (this test mounts it, so it needs root, as CI has);
//! registers are written until the disk is full; the failure must be a 503 (not a hang, a panic
//! or a 500); then the node must exit non-zero with the cause in its log (a node that cannot
//! commit does not stay up answering `ready`: Hardening case 5), so a supervisor restarts it;
//! then the filesystem is grown, the node restarted, and every acknowledged write is there.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const BASE: &str = "/runtime/webhooks/durabletask";

/// A tmpfs mounted for the test, unmounted when dropped.
struct Tmpfs(PathBuf);

impl Tmpfs {
    fn mount(at: &Path, size: &str) -> Tmpfs {
        std::fs::create_dir_all(at).unwrap();
        let ok = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(at)
            .status()
            .expect("run mount");
        assert!(
            ok.success(),
            "mounting a tmpfs failed: this test needs root (CI runs as root)"
        );
        Tmpfs(at.to_path_buf())
    }
    fn resize(&self, size: &str) {
        let ok = Command::new("mount")
            .args(["-o", &format!("remount,size={size}")])
            .arg(&self.0)
            .status()
            .unwrap();
        assert!(ok.success());
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

fn start(data: &Path, port: u16, log: &Path) -> Child {
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(log)
        .unwrap();
    Command::new(
        std::env::var_os("PERDURE_TEST_BIN")
            .unwrap_or_else(|| env!("CARGO_BIN_EXE_perdure").into()),
    )
    .args([
        "serve",
        "--partitions",
        "2",
        "--http-addr",
        &format!("127.0.0.1:{port}"),
        "--grpc-addr",
        "127.0.0.1:0",
    ])
    .arg("--data-dir")
    .arg(data)
    .env("PERDURE_LOG", "error")
    .stdout(Stdio::null())
    .stderr(log)
    .spawn()
    .unwrap()
}

async fn wait_ready(http: &reqwest::Client, url: &str) {
    let t = Instant::now();
    while !matches!(http.get(format!("{url}/readyz")).send().await, Ok(r) if r.status() == 200) {
        assert!(t.elapsed() < Duration::from_secs(30), "not ready");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_disk_answers_503_stops_the_node_and_loses_nothing_acknowledged() {
    let dir = tempfile::tempdir().unwrap();
    let fs = Tmpfs::mount(&dir.path().join("mnt"), "3m");
    let data = fs.0.join("data");
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let url = format!("http://127.0.0.1:{port}");
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(20))
        .build()
        .unwrap();
    let log = dir.path().join("node.log");
    let mut node = start(&data, port, &log);
    wait_ready(&http, &url).await;

    let payload = "x".repeat(4096);
    let mut acked = Vec::new();
    let mut first_failure = None;
    for i in 0..5000 {
        let r = http
            .post(format!("{url}{BASE}/entities/register/r{i}/call?op=set"))
            .json(&format!("{i}:{payload}"))
            .send()
            .await
            .expect("the node must answer, not hang or die");
        match r.status().as_u16() {
            200 => acked.push(i),
            503 => {
                first_failure = Some(i);
                break;
            }
            s => panic!(
                "write {i}: status {s}: {}",
                r.text().await.unwrap_or_default()
            ),
        }
    }
    let failed_at = first_failure.expect("the disk never filled up");
    assert!(
        acked.len() > 50,
        "only {} writes fit: the test proves little",
        acked.len()
    );
    // fail-stop: the node exits non-zero, the cause in its log, instead of staying up unable
    // to commit (later requests fail cleanly meanwhile: 503, or no connection)
    let t = Instant::now();
    let status = loop {
        if let Some(status) = node.try_wait().unwrap() {
            break status;
        }
        assert!(
            t.elapsed() < Duration::from_secs(30),
            "the node stayed up for 30 s on a full disk (it cannot commit)"
        );
        if let Ok(r) = http
            .post(format!("{url}{BASE}/entities/register/late/call?op=set"))
            .json(&payload)
            .send()
            .await
        {
            assert_eq!(r.status(), 503, "a write after the disk filled up");
            assert!(r.headers().contains_key("retry-after"));
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert!(
        !status.success(),
        "exit status {status} after a fatal storage error"
    );
    let text = std::fs::read_to_string(&log).unwrap();
    assert!(
        text.contains("fail-stop") && text.contains("No space left"),
        "the log does not say why the node stopped:\n{text}"
    );
    eprintln!(
        "{} writes acknowledged before the disk filled up at write {failed_at}; the node stopped with {status}",
        acked.len()
    );

    // grow the disk, restart: every acknowledged write is there
    fs.resize("256m");
    let mut node = start(&data, port, &log);
    wait_ready(&http, &url).await;
    for &i in &acked {
        let r = http
            .get(format!("{url}{BASE}/entities/register/r{i}"))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200, "acknowledged write r{i} is lost");
        let v: String = r.json().await.unwrap();
        assert!(
            v.starts_with(&format!("{i}:")),
            "r{i} holds the wrong value"
        );
    }
    // and the node takes writes again
    let r = http
        .post(format!("{url}{BASE}/entities/register/after/call?op=set"))
        .json(&1)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    node.kill().unwrap();
    node.wait().unwrap();
}
