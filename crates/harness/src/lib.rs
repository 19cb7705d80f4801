//! Real `perdure serve` processes for the multi-process tests (`crates/cli/tests`), the benchmark
//! suite (`benches`) and the fault runs (`chaos-tests`): one way to configure, start, stop and
//! watch a node.
//!
//! - [`NodeSpec`]: where a node listens (127.0.0.x, free ports picked at random) and keeps its
//!   files (data directory, config, log). [`NodeSpec::config`] builds its
//!   [`NodeConfig`](perdure_types::config::NodeConfig), the node's own config type, and
//!   [`NodeSpec::write_config`] serializes it to TOML: a renamed config key fails the build
//!   instead of producing a config the node ignores or refuses.
//! - [`Node`]: the process. Start (output appended to the node's log file), wait for `/readyz`,
//!   `kill -9`, SIGTERM, SIGSTOP / SIGCONT, restart on the same data directory.
//! - [`http_status`] and [`ready`]: plain HTTP probes (blocking and async), no client library.
//!
//! - [`brokers`]: message brokers for the ingestion tests (a JetStream `nats-server`, the
//!   `perdure-kafka-mock` Kafka broker), producers that fill them, and the skip-or-fail rule for
//!   a missing tool.
//!
//! The harness knows the node only through its binary, its config type and its HTTP API.

#![deny(missing_docs)]

pub mod brokers;
mod error;
mod node;
mod probe;
mod spec;

pub use error::Error;
pub use node::{Node, StartOptions};
pub use probe::{http_status, ready};
pub use spec::{free_port, to_toml, NodeSpec};
