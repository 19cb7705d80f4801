//! The real `perdure` binary serving on a free local port, and a runner for client commands.

#![allow(dead_code)]

pub mod cluster;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::process::{Child, Command, Output, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// The binary under test.
pub const BIN: &str = env!("CARGO_BIN_EXE_perdure");

/// A `perdure serve` child process.
pub struct Server {
    /// `http://127.0.0.1:PORT`
    pub url: String,
    /// The data directory's parent (kept until the server is dropped).
    pub dir: tempfile::TempDir,
    child: Option<Child>,
    stderr: Arc<Mutex<String>>,
}

/// A port that was free a moment ago.
pub fn free_port() -> u16 {
    free_port_on("127.0.0.1")
}

/// A free TCP port on `ip`.
pub fn free_port_on(ip: &str) -> u16 {
    std::net::TcpListener::bind((ip, 0))
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
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
    let mut s = TcpStream::connect(("127.0.0.1", port)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n"
    )
    .ok()?;
    let mut resp = String::new();
    s.read_to_string(&mut resp).ok()?;
    resp.split(' ').nth(1)?.parse().ok()
}

impl Server {
    /// Starts `perdure serve` on a free port with a fresh data directory and waits until
    /// `/readyz` answers 200; tries another port if the chosen one was taken meanwhile.
    pub fn start() -> Server {
        let dir = tempfile::tempdir().unwrap();
        for _ in 0..5 {
            let port = free_port();
            let addr = format!("127.0.0.1:{port}");
            let mut child = Command::new(BIN)
                .args(["serve", "--partitions", "4", "--http-addr", &addr])
                .arg("--data-dir")
                .arg(dir.path().join("data"))
                .env("PERDURE_LOG", "info")
                .stdout(Stdio::null())
                .stderr(Stdio::piped())
                .spawn()
                .expect("start perdure serve");
            let stderr = Arc::new(Mutex::new(String::new()));
            {
                let err = child.stderr.take().unwrap();
                let sink = stderr.clone();
                std::thread::spawn(move || {
                    for line in BufReader::new(err).lines().map_while(Result::ok) {
                        eprintln!("[perdure] {line}");
                        let mut s = sink.lock().unwrap();
                        s.push_str(&line);
                        s.push('\n');
                    }
                });
            }
            let deadline = Instant::now() + Duration::from_secs(30);
            loop {
                if let Some(status) = child.try_wait().unwrap() {
                    let text = stderr.lock().unwrap().clone();
                    assert!(
                        text.contains(&addr),
                        "perdure serve exited with {status} for another reason than its port:\n{text}"
                    );
                    break; // the port was taken: try another
                }
                if http_status(port, "/readyz") == Some(200) {
                    return Server {
                        url: format!("http://{addr}"),
                        dir,
                        child: Some(child),
                        stderr,
                    };
                }
                if Instant::now() > deadline {
                    let _ = child.kill();
                    panic!("perdure serve not ready within 30 s");
                }
                std::thread::sleep(Duration::from_millis(20));
            }
        }
        panic!("no free port after 5 tries");
    }

    /// What the server wrote to stderr so far.
    pub fn stderr(&self) -> String {
        self.stderr.lock().unwrap().clone()
    }

    /// Sends SIGTERM and waits (at most `within`) for the exit; returns the exit status.
    pub fn terminate(&mut self, within: Duration) -> std::process::ExitStatus {
        let mut child = self.child.take().expect("running");
        let ok = Command::new("kill")
            .arg("-TERM")
            .arg(child.id().to_string())
            .status()
            .unwrap();
        assert!(ok.success(), "kill -TERM failed");
        let deadline = Instant::now() + within;
        loop {
            if let Some(status) = child.try_wait().unwrap() {
                return status;
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                panic!("perdure did not exit within {within:?} of SIGTERM");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Runs `perdure ARGS --url URL`.
    pub fn run(&self, args: &[&str]) -> Output {
        run_with_url(&self.url, args)
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
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
