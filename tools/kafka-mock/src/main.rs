//! `perdure-kafka-mock TOPIC:PARTITIONS...`: a Kafka-protocol broker for tests, benchmarks and
//! chaos runs (started by `perdure_harness::KafkaMock`).
//!
//! It is librdkafka's mock cluster: one broker, records kept in memory, listening on a free port
//! of 127.0.0.1. Each argument creates a topic with that many partitions (more topics can be
//! produced to: the mock creates them on first use by a producer that asks). The first line on
//! stdout is the bootstrap address (`127.0.0.1:PORT`); then it runs until it is killed.

use rdkafka::mocking::MockCluster;
use std::io::Write;
use std::process::ExitCode;

fn main() -> ExitCode {
    let mut topics = Vec::new();
    for arg in std::env::args().skip(1) {
        let parsed = arg
            .rsplit_once(':')
            .and_then(|(t, n)| Some((t.to_string(), n.parse::<i32>().ok()?)))
            .filter(|(t, n)| !t.is_empty() && *n > 0);
        match parsed {
            Some(topic) => topics.push(topic),
            None => {
                eprintln!("usage: perdure-kafka-mock TOPIC:PARTITIONS... (got {arg:?})");
                return ExitCode::from(2);
            }
        }
    }
    let cluster = match MockCluster::new(1) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("perdure-kafka-mock: cannot start the mock cluster: {e}");
            return ExitCode::FAILURE;
        }
    };
    for (topic, partitions) in &topics {
        if let Err(e) = cluster.create_topic(topic, *partitions, 1) {
            eprintln!("perdure-kafka-mock: cannot create topic {topic}: {e}");
            return ExitCode::FAILURE;
        }
    }
    let mut out = std::io::stdout().lock();
    if writeln!(out, "{}", cluster.bootstrap_servers())
        .and_then(|()| out.flush())
        .is_err()
    {
        return ExitCode::FAILURE;
    }
    drop(out);
    // the broker runs on librdkafka's own threads; this one only keeps the process alive
    loop {
        std::thread::park();
    }
}
