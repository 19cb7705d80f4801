//! Real message brokers for the ingestion tests, benchmarks and chaos runs: a NATS server with
//! JetStream (Debian's `nats-server`) and a Kafka-protocol broker (`perdure-kafka-mock`,
//! librdkafka's mock cluster, a binary of this workspace), each on a free port of 127.0.0.1 and
//! killed when dropped; and producers that fill them.
//!
//! A test that needs a broker asks for it through [`nats_server_or_skip`] or
//! [`kafka_mock_or_skip`]: when the tool is missing they print a skip message and give `None`
//! (the test then passes), unless `PERDURE_TEST_REQUIRE_TOOLS=1` (CI), where they panic naming
//! the install step.

use std::collections::VecDeque;
use std::fs::OpenOptions;
use std::io::{BufRead, BufReader, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// How long a broker may take to accept connections after it was started.
const READY_WITHIN: Duration = Duration::from_secs(20);

/// How many JetStream publishes may wait for their acks at once (async-nats blocks a publish
/// when too many acks are not awaited).
const NATS_ACKS_IN_FLIGHT: usize = 1024;

/// How many records one Kafka produce request carries.
const KAFKA_PRODUCE_CHUNK: usize = 2000;

/// A broker could not be started or used.
#[derive(Debug, thiserror::Error)]
pub enum BrokerError {
    /// A file (log, data directory) could not be made or opened.
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
    /// The binary could not be started.
    #[error("cannot start {}: {source}", bin.display())]
    Spawn {
        /// The binary.
        bin: PathBuf,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// The broker did not get ready (exited, or did not accept connections in time).
    #[error("{what} not ready: {reason}; log {}:\n{tail}", log.display())]
    NotReady {
        /// Which broker.
        what: &'static str,
        /// What happened.
        reason: String,
        /// Its log file.
        log: PathBuf,
        /// The log's last lines.
        tail: String,
    },
    /// The operation needs a running broker and there is none.
    #[error("{0} is not running")]
    NotRunning(&'static str),
    /// No free port.
    #[error(transparent)]
    Port(#[from] crate::Error),
    /// A client call (connect, create, publish, produce) failed.
    #[error("{what}: {reason}")]
    Client {
        /// The call.
        what: String,
        /// The client's error.
        reason: String,
    },
}

fn client_err(what: impl Into<String>) -> impl FnOnce(String) -> BrokerError {
    let what = what.into();
    move |reason| BrokerError::Client { what, reason }
}

/// The repository's root (the workspace).
fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// Whether `PERDURE_TEST_REQUIRE_TOOLS=1` (CI): a missing tool fails the test.
pub fn tools_required() -> bool {
    std::env::var("PERDURE_TEST_REQUIRE_TOOLS").is_ok_and(|v| v == "1")
}

/// `found` if it is there. Otherwise `None` after printing a skip message naming `install`, or a
/// panic naming it when `PERDURE_TEST_REQUIRE_TOOLS=1`.
pub fn tool_or_skip(what: &str, found: Option<PathBuf>, install: &str) -> Option<PathBuf> {
    if found.is_some() {
        return found;
    }
    assert!(
        !tools_required(),
        "{what} is missing and PERDURE_TEST_REQUIRE_TOOLS=1: {install}"
    );
    eprintln!("SKIPPED: {what} is missing: {install}");
    None
}

/// The `nats-server` binary: `PERDURE_NATS_SERVER`, else on `PATH` or in `/usr/sbin` (where
/// Debian puts it).
pub fn nats_server_bin() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("PERDURE_NATS_SERVER") {
        return Some(PathBuf::from(p)).filter(|p| p.is_file());
    }
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(["/usr/sbin".into(), "/usr/local/sbin".into()])
        .map(|d| d.join("nats-server"))
        .find(|p| p.is_file())
}

/// [`nats_server_bin`], or `None` after a skip message (a panic under
/// `PERDURE_TEST_REQUIRE_TOOLS=1`).
pub fn nats_server_or_skip() -> Option<PathBuf> {
    tool_or_skip(
        "nats-server",
        nats_server_bin(),
        "install it (`apt-get install -y nats-server`, or `bash .ci/brokers-env.sh`)",
    )
}

/// The `perdure-kafka-mock` binary: `PERDURE_KAFKA_MOCK`, else beside the running program or
/// one directory up (a test runs from `target/PROFILE/deps`), else in `target/debug` or
/// `target/release` of this workspace.
pub fn kafka_mock_bin() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("PERDURE_KAFKA_MOCK") {
        return Some(PathBuf::from(p)).filter(|p| p.is_file());
    }
    let name = "perdure-kafka-mock";
    let mut dirs = Vec::new();
    if let Some(dir) = std::env::current_exe()
        .ok()
        .and_then(|e| e.parent().map(Path::to_path_buf))
    {
        dirs.push(dir.join(name));
        if let Some(up) = dir.parent() {
            dirs.push(up.join(name));
        }
    }
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace_root().join("target"));
    dirs.push(target.join("debug").join(name));
    dirs.push(target.join("release").join(name));
    dirs.into_iter().find(|p| p.is_file())
}

/// [`kafka_mock_bin`], or `None` after a skip message (a panic under
/// `PERDURE_TEST_REQUIRE_TOOLS=1`). `cargo nextest run --workspace` builds it with the tests;
/// `cargo test -p CRATE` does not.
pub fn kafka_mock_or_skip() -> Option<PathBuf> {
    tool_or_skip(
        "perdure-kafka-mock",
        kafka_mock_bin(),
        "build it (`cargo build -p perdure-kafka-mock`; librdkafka's bundled build needs a C \
         compiler and make: `bash .ci/brokers-env.sh`)",
    )
}

/// Whether `addr` accepts a TCP connection now.
fn accepts(addr: &str) -> bool {
    addr.parse()
        .is_ok_and(|a| TcpStream::connect_timeout(&a, Duration::from_millis(200)).is_ok())
}

/// The last `n` lines of `log`.
fn tail(log: &Path, n: usize) -> String {
    let text = std::fs::read_to_string(log).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

fn open_log(path: &Path) -> Result<std::fs::File, BrokerError> {
    OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .map_err(|source| BrokerError::Io {
            what: "log",
            path: path.to_path_buf(),
            source,
        })
}

/// A `nats-server -js` process on a free port of 127.0.0.1, its JetStream files in a directory
/// of its own; killed when dropped.
#[derive(Debug)]
pub struct NatsServer {
    bin: PathBuf,
    dir: PathBuf,
    port: u16,
    log: PathBuf,
    child: Option<Child>,
}

impl NatsServer {
    /// Starts `nats-server` (found by [`nats_server_bin`]) with JetStream stored under
    /// `dir/jetstream` and its log in `dir/nats-server.log`; waits until it accepts connections.
    pub fn start(dir: &Path) -> Result<Self, BrokerError> {
        let bin = nats_server_bin().ok_or_else(|| BrokerError::Spawn {
            bin: "nats-server".into(),
            source: std::io::Error::new(std::io::ErrorKind::NotFound, "not installed"),
        })?;
        Self::start_with(&bin, dir)
    }

    /// Starts `bin` as [`start`](Self::start) does.
    pub fn start_with(bin: &Path, dir: &Path) -> Result<Self, BrokerError> {
        std::fs::create_dir_all(dir).map_err(|source| BrokerError::Io {
            what: "data directory",
            path: dir.to_path_buf(),
            source,
        })?;
        let mut server = Self {
            bin: bin.to_path_buf(),
            dir: dir.to_path_buf(),
            port: crate::free_port("127.0.0.1")?,
            log: dir.join("nats-server.log"),
            child: None,
        };
        server.run()?;
        Ok(server)
    }

    /// `nats://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }

    /// The port it listens on.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Its log file.
    pub fn log(&self) -> &Path {
        &self.log
    }

    /// Kills it (`kill -9`; JetStream keeps what it had written).
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Stops it if it runs, then starts it again on the same port and directory.
    pub fn restart(&mut self) -> Result<(), BrokerError> {
        self.stop();
        self.run()
    }

    fn run(&mut self) -> Result<(), BrokerError> {
        let mut log = open_log(&self.log)?;
        let _ = writeln!(
            log,
            "--- harness: {} on port {}",
            self.bin.display(),
            self.port
        );
        let log2 = log.try_clone().map_err(|source| BrokerError::Io {
            what: "log",
            path: self.log.clone(),
            source,
        })?;
        let child = Command::new(&self.bin)
            .arg("-js")
            .arg("-sd")
            .arg(self.dir.join("jetstream"))
            .args(["-a", "127.0.0.1", "-p"])
            .arg(self.port.to_string())
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(log2)
            .spawn()
            .map_err(|source| BrokerError::Spawn {
                bin: self.bin.clone(),
                source,
            })?;
        self.child = Some(child);
        let addr = format!("127.0.0.1:{}", self.port);
        let deadline = Instant::now() + READY_WITHIN;
        loop {
            let child = self
                .child
                .as_mut()
                .ok_or(BrokerError::NotRunning("nats-server"))?;
            if let Ok(Some(status)) = child.try_wait() {
                self.child = None;
                return Err(self.not_ready(format!("exited ({status})")));
            }
            // the client port opens once JetStream is up
            if accepts(&addr) {
                return Ok(());
            }
            if Instant::now() > deadline {
                self.stop();
                return Err(self.not_ready(format!("no connection within {READY_WITHIN:?}")));
            }
            std::thread::sleep(Duration::from_millis(25));
        }
    }

    fn not_ready(&self, reason: String) -> BrokerError {
        BrokerError::NotReady {
            what: "nats-server",
            reason,
            log: self.log.clone(),
            tail: tail(&self.log, 20),
        }
    }
}

impl Drop for NatsServer {
    fn drop(&mut self) {
        self.stop();
    }
}

/// A `perdure-kafka-mock` process (one in-memory Kafka broker); killed when dropped.
#[derive(Debug)]
pub struct KafkaMock {
    bootstrap: String,
    child: Option<Child>,
}

impl KafkaMock {
    /// Starts the mock (found by [`kafka_mock_bin`]) with `topic` of `partitions` partitions.
    pub fn start(topic: &str, partitions: u32) -> Result<Self, BrokerError> {
        let bin = kafka_mock_bin().ok_or_else(|| BrokerError::Spawn {
            bin: "perdure-kafka-mock".into(),
            source: std::io::Error::new(
                std::io::ErrorKind::NotFound,
                "not built (cargo build -p perdure-kafka-mock)",
            ),
        })?;
        Self::start_with(&bin, &[(topic, partitions)])
    }

    /// Starts `bin` with these topics (name, partitions); reads the bootstrap address it prints
    /// and waits until it accepts connections.
    pub fn start_with(bin: &Path, topics: &[(&str, u32)]) -> Result<Self, BrokerError> {
        let mut child = Command::new(bin)
            .args(topics.iter().map(|(t, n)| format!("{t}:{n}")))
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .map_err(|source| BrokerError::Spawn {
                bin: bin.to_path_buf(),
                source,
            })?;
        let mut line = String::new();
        let read = child
            .stdout
            .take()
            .map(|out| BufReader::new(out).read_line(&mut line));
        let bootstrap = line.trim().to_string();
        let mut mock = Self {
            bootstrap,
            child: Some(child),
        };
        if !matches!(read, Some(Ok(n)) if n > 0) || mock.bootstrap.is_empty() {
            mock.stop();
            return Err(BrokerError::NotReady {
                what: "perdure-kafka-mock",
                reason: "it printed no bootstrap address".into(),
                log: PathBuf::from("(stderr)"),
                tail: String::new(),
            });
        }
        let deadline = Instant::now() + READY_WITHIN;
        while !accepts(&mock.bootstrap) {
            if Instant::now() > deadline {
                mock.stop();
                return Err(BrokerError::NotReady {
                    what: "perdure-kafka-mock",
                    reason: format!("{} accepts no connection", mock.bootstrap),
                    log: PathBuf::from("(stderr)"),
                    tail: String::new(),
                });
            }
            std::thread::sleep(Duration::from_millis(25));
        }
        Ok(mock)
    }

    /// Its bootstrap address, `127.0.0.1:PORT`.
    pub fn bootstrap(&self) -> &str {
        &self.bootstrap
    }

    /// Kills it (the mock keeps everything in memory: its records are gone).
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for KafkaMock {
    fn drop(&mut self) {
        self.stop();
    }
}

/// One message to publish to JetStream.
#[derive(Debug, Clone, Default)]
pub struct NatsMessage {
    /// Its subject.
    pub subject: String,
    /// Its headers (none: published without).
    pub headers: Vec<(String, String)>,
    /// Its payload.
    pub payload: Vec<u8>,
}

async fn nats_connect(url: &str) -> Result<async_nats::Client, BrokerError> {
    async_nats::ConnectOptions::new()
        .connection_timeout(Duration::from_secs(3))
        .connect(url)
        .await
        .map_err(|e| client_err(format!("connect {url}"))(e.to_string()))
}

/// Creates JetStream stream `stream` on `subjects` if there is none (an existing one is kept as
/// it is).
pub async fn create_nats_stream(
    url: &str,
    stream: &str,
    subjects: &[&str],
) -> Result<(), BrokerError> {
    let js = async_nats::jetstream::new(nats_connect(url).await?);
    js.get_or_create_stream(async_nats::jetstream::stream::Config {
        name: stream.into(),
        subjects: subjects.iter().map(|s| s.to_string()).collect(),
        ..Default::default()
    })
    .await
    .map_err(|e| client_err(format!("create stream {stream}"))(e.to_string()))?;
    Ok(())
}

/// Deletes JetStream stream `stream`.
pub async fn delete_nats_stream(url: &str, stream: &str) -> Result<(), BrokerError> {
    let js = async_nats::jetstream::new(nats_connect(url).await?);
    js.delete_stream(stream)
        .await
        .map_err(|e| client_err(format!("delete stream {stream}"))(e.to_string()))?;
    Ok(())
}

/// Publishes `values` on `subject` to stream `stream` (created on `subject` if missing);
/// returns the stream sequence of the last one (0 when there were none).
pub async fn produce_nats<I>(
    url: &str,
    stream: &str,
    subject: &str,
    values: I,
) -> Result<u64, BrokerError>
where
    I: IntoIterator<Item = Vec<u8>>,
{
    create_nats_stream(url, stream, &[subject]).await?;
    let messages = values.into_iter().map(|payload| NatsMessage {
        subject: subject.into(),
        headers: Vec::new(),
        payload,
    });
    publish_nats(url, messages).await
}

/// Publishes `messages` (to the streams that take their subjects), with at most
/// [`NATS_ACKS_IN_FLIGHT`] acks awaited at once; returns the stream sequence of the last one.
pub async fn publish_nats<I>(url: &str, messages: I) -> Result<u64, BrokerError>
where
    I: IntoIterator<Item = NatsMessage>,
{
    let client = nats_connect(url).await?;
    let js = async_nats::jetstream::new(client.clone());
    let mut acks = VecDeque::new();
    let mut last = 0;
    let publish_err = |e: &dyn std::fmt::Display| client_err("publish")(e.to_string());
    for m in messages {
        let ack = if m.headers.is_empty() {
            js.publish(m.subject, m.payload.into()).await
        } else {
            let mut headers = async_nats::HeaderMap::new();
            for (k, v) in &m.headers {
                headers.append(k.as_str(), v.as_str());
            }
            js.publish_with_headers(m.subject, headers, m.payload.into())
                .await
        }
        .map_err(|e| publish_err(&e))?;
        acks.push_back(ack);
        if acks.len() >= NATS_ACKS_IN_FLIGHT {
            if let Some(ack) = acks.pop_front() {
                last = ack.await.map_err(|e| publish_err(&e))?.sequence;
            }
        }
    }
    while let Some(ack) = acks.pop_front() {
        last = ack.await.map_err(|e| publish_err(&e))?.sequence;
    }
    client
        .flush()
        .await
        .map_err(|e| client_err("flush")(e.to_string()))?;
    Ok(last)
}

/// One record to produce to a Kafka partition.
#[derive(Debug, Clone, Default)]
pub struct KafkaRecord {
    /// Its key.
    pub key: Option<Vec<u8>>,
    /// Its headers.
    pub headers: Vec<(String, Vec<u8>)>,
    /// Its value.
    pub value: Vec<u8>,
}

/// How produced record batches are compressed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum KafkaCodec {
    /// Not compressed.
    #[default]
    None,
    /// gzip.
    Gzip,
    /// snappy.
    Snappy,
}

/// Produces `records` (uncompressed) to `topic` partition `partition` at `bootstrap`; returns the
/// position (offset + 1) of the last one (0 when there were none).
pub async fn produce_kafka(
    bootstrap: &str,
    topic: &str,
    partition: u32,
    records: Vec<KafkaRecord>,
) -> Result<u64, BrokerError> {
    produce_kafka_with(bootstrap, topic, partition, records, KafkaCodec::None).await
}

/// [`produce_kafka`] with batches compressed by `codec`.
pub async fn produce_kafka_with(
    bootstrap: &str,
    topic: &str,
    partition: u32,
    records: Vec<KafkaRecord>,
    codec: KafkaCodec,
) -> Result<u64, BrokerError> {
    use rskafka::client::partition::{Compression, UnknownTopicHandling};
    let client = rskafka::client::ClientBuilder::new(vec![bootstrap.to_string()])
        .build()
        .await
        .map_err(|e| client_err(format!("connect {bootstrap}"))(e.to_string()))?;
    let what = format!("topic {topic} partition {partition}");
    let index = i32::try_from(partition).map_err(|e| client_err(what.clone())(e.to_string()))?;
    let part = client
        .partition_client(topic, index, UnknownTopicHandling::Retry)
        .await
        .map_err(|e| client_err(what.clone())(e.to_string()))?;
    let compression = match codec {
        KafkaCodec::None => Compression::NoCompression,
        KafkaCodec::Gzip => Compression::Gzip,
        KafkaCodec::Snappy => Compression::Snappy,
    };
    let mut last = 0;
    let mut records = records.into_iter().peekable();
    while records.peek().is_some() {
        let now = kafka_now();
        let chunk: Vec<rskafka::record::Record> = records
            .by_ref()
            .take(KAFKA_PRODUCE_CHUNK)
            .map(|r| rskafka::record::Record {
                key: r.key,
                value: Some(r.value),
                headers: r.headers.into_iter().collect(),
                timestamp: now,
            })
            .collect();
        let offsets = part
            .produce(chunk, compression)
            .await
            .map_err(|e| client_err(format!("produce to {what}"))(e.to_string()))?;
        if let Some(o) = offsets.last() {
            last = u64::try_from(*o).unwrap_or(0) + 1;
        }
    }
    Ok(last)
}

/// Now, as a Kafka record's timestamp (rskafka's chrono has no clock).
fn kafka_now() -> rskafka::chrono::DateTime<rskafka::chrono::Utc> {
    use rskafka::chrono::TimeZone;
    let ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(0));
    rskafka::chrono::Utc
        .timestamp_millis_opt(ms)
        .single()
        .unwrap_or_default()
}
