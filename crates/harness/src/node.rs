//! One node process: start it from the real binary on its config, watch it, signal it, restart
//! it on the same data directory. Every incarnation appends its output to the node's log file.

use crate::{probe, Error, NodeSpec};
use std::fs::OpenOptions;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

/// The `PERDURE_LOG` of a node unless [`StartOptions::log`] says otherwise.
const DEFAULT_LOG: &str = "info,openraft=error";

/// How to start a node process.
#[derive(Debug, Clone, Default)]
pub struct StartOptions {
    /// The node's `PERDURE_LOG` filter (default `info,openraft=error`).
    pub log: Option<String>,
    /// More environment variables for the process (after the harness's own).
    pub env: Vec<(String, String)>,
    /// Environment variables the process must not inherit. Besides these, every inherited
    /// `PERDURE_*` variable but the `PERDURE_TEST_*` switches is removed: the node would read
    /// it as a setting over its config file.
    pub env_remove: Vec<String>,
    /// A cgroup v2 `cgroup.procs` file the process joins before it execs the binary (a `sh`
    /// wrapper writes its own pid there, so no process of the node runs outside the cgroup).
    pub cgroup_procs: Option<PathBuf>,
}

/// A node process (or a node not running now); killed when dropped.
#[derive(Debug)]
pub struct Node {
    /// Where it listens and keeps its files.
    pub spec: NodeSpec,
    bin: PathBuf,
    options: StartOptions,
    child: Option<Child>,
    paused: bool,
    starts: u32,
}

impl Node {
    /// Node `spec`, to be run from `bin` (the `perdure` binary); not started yet.
    pub fn new(spec: NodeSpec, bin: impl Into<PathBuf>) -> Self {
        Self {
            spec,
            bin: bin.into(),
            options: StartOptions::default(),
            child: None,
            paused: false,
            starts: 0,
        }
    }

    /// Starts `BIN serve --config CONFIG` with `options` (remembered for [`restart`](Self::restart));
    /// returns the pid. The config file must be written already.
    pub fn start(&mut self, options: &StartOptions) -> Result<u32, Error> {
        self.options = options.clone();
        self.starts += 1;
        let log = self.open_log()?;
        let mut cmd = self.command(log)?;
        let child = cmd.spawn().map_err(|source| Error::Spawn {
            node: self.spec.id,
            bin: self.bin.clone(),
            source,
        })?;
        let pid = child.id();
        self.child = Some(child);
        self.paused = false;
        Ok(pid)
    }

    /// The log, opened for appending, with a line that says which incarnation follows.
    fn open_log(&self) -> Result<std::fs::File, Error> {
        let io = |source| Error::Io {
            what: "log",
            path: self.spec.log.clone(),
            source,
        };
        let mut log = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.spec.log)
            .map_err(io)?;
        writeln!(
            log,
            "--- harness: start {} of node {}: {} serve --config {}",
            self.starts,
            self.spec.id,
            self.bin.display(),
            self.spec.config.display()
        )
        .map_err(io)?;
        Ok(log)
    }

    /// The command line and environment of one start, output to `log`.
    fn command(&self, log: std::fs::File) -> Result<Command, Error> {
        let log2 = log.try_clone().map_err(|source| Error::Io {
            what: "log",
            path: self.spec.log.clone(),
            source,
        })?;
        let o = &self.options;
        let mut cmd = match &o.cgroup_procs {
            Some(procs) => {
                let mut c = Command::new("sh");
                c.arg("-c")
                    .arg(r#"echo $$ > "$0" || exit 97; exec "$@""#)
                    .arg(procs)
                    .arg(&self.bin);
                c
            }
            None => Command::new(&self.bin),
        };
        cmd.args(["serve", "--config"]).arg(&self.spec.config);
        for (name, _) in std::env::vars_os() {
            let name = name.to_string_lossy();
            if name.starts_with("PERDURE_") && !name.starts_with("PERDURE_TEST_") {
                cmd.env_remove(name.as_ref());
            }
        }
        for name in &o.env_remove {
            cmd.env_remove(name);
        }
        cmd.env("PERDURE_LOG", o.log.as_deref().unwrap_or(DEFAULT_LOG))
            .envs(o.env.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(log2);
        Ok(cmd)
    }

    /// The binary it runs.
    pub fn bin(&self) -> &Path {
        &self.bin
    }

    /// The process id, while there is a process.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// Whether a process is running (not exited; a paused one counts as running).
    pub fn running(&mut self) -> bool {
        match &mut self.child {
            Some(c) => matches!(c.try_wait(), Ok(None)),
            None => false,
        }
    }

    /// How the process ended, once it has (`None` while it runs, or when there is none).
    pub fn exit_status(&mut self) -> Option<ExitStatus> {
        self.child
            .as_mut()
            .and_then(|c| c.try_wait().ok().flatten())
    }

    /// Whether it is SIGSTOPped.
    pub fn is_paused(&self) -> bool {
        self.paused
    }

    /// Sends `signal` (as `kill` takes it: `-STOP`) to the process.
    fn signal(&self, signal: &'static str) -> Result<(), Error> {
        let node = self.spec.id;
        let pid = self.pid().ok_or(Error::NotRunning { node })?;
        let failed = |reason: String| Error::Signal {
            node,
            signal,
            pid,
            reason,
        };
        let st = Command::new("kill")
            .args([signal, &pid.to_string()])
            .stderr(Stdio::null())
            .status()
            .map_err(|e| failed(e.to_string()))?;
        if st.success() {
            Ok(())
        } else {
            Err(failed(st.to_string()))
        }
    }

    /// `kill -9`, and reaps the process.
    pub fn kill9(&mut self) -> Result<(), Error> {
        let node = self.spec.id;
        let mut child = self.child.take().ok_or(Error::NotRunning { node })?;
        let _ = child.kill();
        let _ = child.wait();
        self.paused = false;
        Ok(())
    }

    /// SIGSTOP.
    pub fn pause(&mut self) -> Result<(), Error> {
        self.signal("-STOP")?;
        self.paused = true;
        Ok(())
    }

    /// SIGCONT.
    pub fn resume(&mut self) -> Result<(), Error> {
        self.signal("-CONT")?;
        self.paused = false;
        Ok(())
    }

    /// SIGTERM (after a SIGCONT, should it be paused) and waits up to `grace` for the exit,
    /// returning its status; after that, `kill -9` and [`Error::Stuck`].
    pub fn stop(&mut self, grace: Duration) -> Result<ExitStatus, Error> {
        let node = self.spec.id;
        let _ = self.signal("-CONT");
        self.signal("-TERM")?;
        let t = Instant::now();
        let child = self.child.as_mut().ok_or(Error::NotRunning { node })?;
        while t.elapsed() < grace {
            if let Ok(Some(status)) = child.try_wait() {
                self.child = None;
                self.paused = false;
                return Ok(status);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.kill9();
        Err(Error::Stuck { node, grace })
    }

    /// `kill -9` if it runs, then starts it again with the same options on the same data
    /// directory (and the config file as it is now).
    pub fn restart(&mut self) -> Result<u32, Error> {
        if self.child.is_some() {
            self.kill9()?;
        }
        let options = self.options.clone();
        self.start(&options)
    }

    /// Waits (blocking) until `/readyz` answers 200; fails early if the process exits.
    pub fn wait_ready(&mut self, within: Duration) -> Result<(), Error> {
        let node = self.spec.id;
        let addr = self.spec.http_addr();
        let deadline = Instant::now() + within;
        loop {
            let child = self.child.as_mut().ok_or(Error::NotRunning { node })?;
            if let Ok(Some(status)) = child.try_wait() {
                self.child = None;
                return Err(Error::Exited {
                    node,
                    status,
                    log: self.spec.log.clone(),
                    tail: self.log_tail(20),
                });
            }
            if probe::http_status(&addr, "/readyz", Duration::from_secs(2)) == Some(200) {
                return Ok(());
            }
            if Instant::now() > deadline {
                return Err(Error::NotReady {
                    node,
                    within,
                    log: self.spec.log.clone(),
                    tail: self.log_tail(20),
                });
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Everything in its log file (every incarnation's output).
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.spec.log).unwrap_or_default()
    }

    /// The last `lines` lines of its log.
    pub fn log_tail(&self, lines: usize) -> String {
        let text = self.log();
        let all: Vec<&str> = text.lines().collect();
        all[all.len().saturating_sub(lines)..].join("\n")
    }
}

impl Drop for Node {
    /// Kills the process (a paused one too); while a test panics, shows the log's tail first.
    fn drop(&mut self) {
        if self.child.is_none() {
            return;
        }
        if std::thread::panicking() {
            eprintln!(
                "--- node {} log tail ({}):\n{}",
                self.spec.id,
                self.spec.log.display(),
                self.log_tail(30)
            );
        }
        let _ = self.signal("-CONT");
        let _ = self.kill9();
    }
}
