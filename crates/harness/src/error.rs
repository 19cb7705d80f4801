//! The harness's one error type.

use std::path::PathBuf;
use std::process::ExitStatus;
use std::time::Duration;

/// A node could not be configured, started, signalled or seen ready.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A file (config, log) could not be written or opened.
    #[error("{what} {}: {source}", path.display())]
    Io {
        /// What the file is.
        what: &'static str,
        /// The file.
        path: PathBuf,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// No free port on the address.
    #[error("no free port on {ip}: {source}")]
    Port {
        /// The address.
        ip: String,
        /// The last bind error.
        #[source]
        source: std::io::Error,
    },
    /// The config does not serialize to TOML (a non-UTF-8 path, say).
    #[error("node {node}: config does not serialize: {source}")]
    Serialize {
        /// The node.
        node: u64,
        /// toml's reason.
        #[source]
        source: toml::ser::Error,
    },
    /// The binary could not be started.
    #[error("node {node}: cannot start {}: {source}", bin.display())]
    Spawn {
        /// The node.
        node: u64,
        /// The binary.
        bin: PathBuf,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// The operation needs a running process and there is none.
    #[error("node {node}: not running")]
    NotRunning {
        /// The node.
        node: u64,
    },
    /// `kill -SIGNAL` failed.
    #[error("node {node}: kill {signal} {pid} failed: {reason}")]
    Signal {
        /// The node.
        node: u64,
        /// The signal, as `kill` takes it (`-STOP`).
        signal: &'static str,
        /// The process.
        pid: u32,
        /// Why.
        reason: String,
    },
    /// The process exited while it was waited for (to become ready).
    #[error("node {node} exited ({status}) before it was ready; {}:\n{tail}", log.display())]
    Exited {
        /// The node.
        node: u64,
        /// Its exit status.
        status: ExitStatus,
        /// Its log file.
        log: PathBuf,
        /// The log's last lines.
        tail: String,
    },
    /// `/readyz` did not answer 200 in time.
    #[error("node {node} not ready within {within:?}; {}:\n{tail}", log.display())]
    NotReady {
        /// The node.
        node: u64,
        /// How long it was given.
        within: Duration,
        /// Its log file.
        log: PathBuf,
        /// The log's last lines.
        tail: String,
    },
    /// The process did not exit within the grace after SIGTERM (it was then killed with -9).
    #[error("node {node} did not exit within {grace:?} of SIGTERM (killed with -9)")]
    Stuck {
        /// The node.
        node: u64,
        /// The grace it had.
        grace: Duration,
    },
}
