//! The real `perdure` binary serving on a free local port (through `perdure-harness`), and a
//! runner for client commands.

#![allow(dead_code)]

pub mod cluster;
pub mod scrape;

use perdure_harness::{Node, NodeSpec, StartOptions};
use std::process::{Child, Command, Output};
use std::time::Duration;

/// The binary under test.
pub const BIN: &str = env!("CARGO_BIN_EXE_perdure");

/// A `perdure serve` child process (killed when dropped).
pub struct Server {
    /// `http://127.0.0.1:PORT`
    pub url: String,
    /// The data directory's parent (kept until the server is dropped).
    pub dir: tempfile::TempDir,
    node: Node,
}

/// A port that was free a moment ago.
pub fn free_port() -> u16 {
    free_port_on("127.0.0.1")
}

/// A free TCP port on `ip`.
pub fn free_port_on(ip: &str) -> u16 {
    perdure_harness::free_port(ip).unwrap()
}

/// The entity API's base path.
pub const BASE: &str = "/runtime/webhooks/durabletask";

/// The seed of a randomized test: `PERDURE_TEST_SEED` when set (a replay), else a fresh one;
/// printed, so a failing run can be replayed.
pub fn test_seed(what: &str) -> u64 {
    use rand::Rng;
    let seed = std::env::var("PERDURE_TEST_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| rand::thread_rng().gen());
    eprintln!("{what} seed {seed} (replay with PERDURE_TEST_SEED={seed})");
    seed
}

/// Status code of `GET path` on `127.0.0.1:port`, or `None` when nothing answers.
pub fn http_status(port: u16, path: &str) -> Option<u16> {
    perdure_harness::http_status(&format!("127.0.0.1:{port}"), path, Duration::from_secs(5))
}

impl Server {
    /// Starts `perdure serve` (4 partitions) on a free port with a fresh data directory and
    /// waits until `/readyz` answers 200; tries another port if the chosen one was taken
    /// meanwhile.
    pub fn start() -> Server {
        Server::start_with_env(&[])
    }

    /// [`Server::start`] with more environment variables for the node (`PERDURE_*` settings
    /// over its config file, e.g. `PERDURE_SAMPLES__ENABLED=true`).
    pub fn start_with_env(env: &[(&str, &str)]) -> Server {
        let dir = tempfile::tempdir().unwrap();
        for _ in 0..5 {
            let spec = NodeSpec::new(1, 0, dir.path()).unwrap();
            let mut config = spec.config(&[]);
            config.partitions = 4;
            spec.write_config(&config).unwrap();
            let addr = spec.http_addr();
            let mut node = Node::new(spec, BIN);
            let options = StartOptions {
                log: Some("info".into()),
                env: env
                    .iter()
                    .map(|(k, v)| (k.to_string(), v.to_string()))
                    .collect(),
                ..Default::default()
            };
            node.start(&options).expect("start perdure serve");
            match node.wait_ready(Duration::from_secs(30)) {
                Ok(()) => {
                    return Server {
                        url: node.spec.url(),
                        dir,
                        node,
                    }
                }
                // the port was taken: try another
                Err(perdure_harness::Error::Exited { tail, .. }) if tail.contains(&addr) => {}
                Err(e) => panic!("{e}"),
            }
        }
        panic!("no free port after 5 tries");
    }

    /// What the server wrote to stderr (and stdout) so far.
    pub fn stderr(&self) -> String {
        self.node.log()
    }

    /// The process id, while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.node.pid()
    }

    /// Whether the process still runs.
    pub fn running(&mut self) -> bool {
        self.node.running()
    }

    /// Sends SIGTERM and waits (at most `within`) for the exit; returns the exit status.
    pub fn terminate(&mut self, within: Duration) -> std::process::ExitStatus {
        self.node.stop(within).unwrap_or_else(|e| panic!("{e}"))
    }

    /// Runs `perdure ARGS --url URL`.
    pub fn run(&self, args: &[&str]) -> Output {
        run_with_url(&self.url, args)
    }
}

/// A process that is not a node (a Prometheus, say), killed when dropped.
pub struct KillOnDrop(pub Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Runs `perdure ARGS --url URL` (client commands only).
pub fn run_with_url(url: &str, args: &[&str]) -> Output {
    Command::new(BIN)
        .args(args)
        .args(["--url", url])
        .env("PERDURE_LOG", "warn")
        .env_remove("PERDURE_URL")
        .output()
        .expect("run perdure")
}

/// stdout parsed as JSON (panics with both streams otherwise).
pub fn stdout_json(out: &Output) -> serde_json::Value {
    let text = String::from_utf8_lossy(&out.stdout);
    serde_json::from_str(&text).unwrap_or_else(|e| {
        panic!(
            "stdout is not JSON ({e}): {text}\nstderr: {}",
            String::from_utf8_lossy(&out.stderr)
        )
    })
}

/// stderr as text.
pub fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}
