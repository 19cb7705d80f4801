//! The Kafka protocol (Apache Kafka, Redpanda, Event Hubs' Kafka endpoint) through rskafka, a
//! pure-Rust client: one source partition per topic partition, position = offset + 1.
//!
//! Reads are plain fetches by offset (no consumer group, no offset commits: perdure keeps
//! positions itself), each through the partition's cached client (its leader connection).
//! Record batches may be uncompressed, gzip or snappy; lz4 and zstd would need C libraries, so a
//! batch compressed with them fails the read with [`SourceError::Other`] naming the codec.
//!
//! rskafka does not expose topic ids: [`SourceInfo::incarnation`] is empty, so a topic deleted
//! and created again is noticed by its positions (a read past its end is
//! [`SourceError::OutOfRange`]), not by its identity.

use super::{Record, Source, SourceError, SourceInfo};
use futures::future::BoxFuture;
use perdure_types::subscription::{KafkaSource, Sasl};
use rskafka::client::error::{Error as KafkaError, ProtocolError};
use rskafka::client::partition::{OffsetAt, PartitionClient, UnknownTopicHandling};
use rskafka::client::{Client, ClientBuilder, Credentials, SaslConfig};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// How long rskafka retries an operation (connecting included) before it fails: an unreachable
/// broker is reported within this time.
const RETRY_DEADLINE: Duration = Duration::from_secs(3);

/// The smallest fetch asked of the broker (records beyond `max_bytes` are dropped here): a
/// smaller one would only cost round trips.
const MIN_FETCH_BYTES: usize = 64 << 10;

/// The largest fetch: a read grows its fetch up to this while the broker sends nothing though
/// it holds records (one batch larger than the fetch).
const MAX_FETCH_BYTES: usize = 64 << 20;

/// The longest one fetch waits on the broker; a longer `wait` takes several fetches. A broker
/// that does not answer a waiting fetch when records arrive (librdkafka's mock waits it out) then
/// delays a record by no more than this.
const MAX_FETCH_WAIT: Duration = Duration::from_millis(500);

/// A fetch that came back this early and empty did not wait on the broker (some brokers answer
/// at once): the read pauses this long before it asks again.
const EMPTY_FETCH_PAUSE: Duration = Duration::from_millis(20);

/// A Kafka-protocol topic read by offset.
pub struct KafkaTopicSource {
    client: Client,
    topic: String,
    /// One client per partition (it keeps the partition leader's connection).
    partitions: Mutex<HashMap<u32, Arc<PartitionClient>>>,
}

impl std::fmt::Debug for KafkaTopicSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KafkaTopicSource")
            .field("topic", &self.topic)
            .finish_non_exhaustive()
    }
}

impl KafkaTopicSource {
    /// Connects to the bootstrap brokers (TLS and SASL as `spec` says) and reads the cluster's
    /// metadata. Fails within a few seconds when no broker answers; does not check that the
    /// topic exists (every call does: [`SourceError::NotFound`]).
    pub async fn connect(spec: &KafkaSource) -> Result<Self, SourceError> {
        if spec.brokers.is_empty() {
            return Err(SourceError::Other(format!(
                "topic {}: no bootstrap brokers",
                spec.topic
            )));
        }
        let mut builder = ClientBuilder::new(spec.brokers.clone())
            .client_id("perdure")
            .backoff_config(rskafka::BackoffConfig {
                init_backoff: Duration::from_millis(100),
                max_backoff: Duration::from_secs(1),
                base: 3.0,
                deadline: Some(RETRY_DEADLINE),
            });
        if spec.tls {
            builder = builder.tls_config(Arc::new(tls_config(spec.tls_ca_file.as_deref())?));
        }
        if let Some(sasl) = &spec.sasl {
            builder = builder.sasl_config(sasl_config(sasl)?);
        }
        let what = format!("Kafka {}", spec.brokers.join(","));
        let client = builder.build().await.map_err(|e| map_error(&what, &e))?;
        Ok(Self {
            client,
            topic: spec.topic.clone(),
            partitions: Mutex::new(HashMap::new()),
        })
    }

    /// The partitions of the topic now (a metadata request for every topic: asking for this
    /// one would let a broker create it).
    async fn topic_partitions(&self) -> Result<Vec<u32>, SourceError> {
        let topics = self
            .client
            .list_topics()
            .await
            .map_err(|e| map_error(&format!("topic {}: metadata", self.topic), &e))?;
        let topic = topics
            .into_iter()
            .find(|t| t.name == self.topic)
            .ok_or_else(|| SourceError::NotFound(format!("Kafka topic {}", self.topic)))?;
        Ok(topic
            .partitions
            .into_iter()
            .filter_map(|p| u32::try_from(p).ok())
            .collect())
    }

    /// The cached client of `partition` (made once the topic's metadata lists it).
    async fn partition(&self, partition: u32) -> Result<Arc<PartitionClient>, SourceError> {
        if let Some(c) = self.cached(partition) {
            return Ok(c);
        }
        if !self.topic_partitions().await?.contains(&partition) {
            return Err(SourceError::NotFound(format!(
                "Kafka topic {} has no partition {partition}",
                self.topic
            )));
        }
        let index = i32::try_from(partition)
            .map_err(|_| SourceError::NotFound(format!("partition {partition}")))?;
        let client = self
            .client
            .partition_client(self.topic.clone(), index, UnknownTopicHandling::Error)
            .await
            .map_err(|e| map_error(&self.what(partition), &e))?;
        let client = Arc::new(client);
        self.lock().insert(partition, Arc::clone(&client));
        Ok(client)
    }

    fn cached(&self, partition: u32) -> Option<Arc<PartitionClient>> {
        self.lock().get(&partition).cloned()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<u32, Arc<PartitionClient>>> {
        self.partitions
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// A call's error, and the partition's client forgotten when the topic seems gone.
    fn failed(&self, partition: u32, e: &KafkaError) -> SourceError {
        let err = map_error(&self.what(partition), e);
        if matches!(err, SourceError::NotFound(_)) {
            self.lock().remove(&partition);
        }
        err
    }

    fn what(&self, partition: u32) -> String {
        format!("Kafka topic {} partition {partition}", self.topic)
    }

    async fn offset(&self, partition: u32, at: OffsetAt) -> Result<i64, SourceError> {
        let client = self.partition(partition).await?;
        client
            .get_offset(at)
            .await
            .map_err(|e| self.failed(partition, &e))
    }
}

/// The TLS setup: rustls with ring, the CA certificates of `ca_file` (PEM) or else the system's.
fn tls_config(ca_file: Option<&str>) -> Result<rustls::ClientConfig, SourceError> {
    use rustls_pki_types::pem::PemObject;
    use rustls_pki_types::CertificateDer;
    let mut roots = rustls::RootCertStore::empty();
    match ca_file {
        Some(path) => {
            let certs = CertificateDer::pem_file_iter(path)
                .and_then(|it| it.collect::<Result<Vec<_>, _>>())
                .map_err(|e| SourceError::Other(format!("Kafka TLS CA file {path}: {e}")))?;
            for cert in certs {
                roots
                    .add(cert)
                    .map_err(|e| SourceError::Other(format!("Kafka TLS CA file {path}: {e}")))?;
            }
        }
        None => {
            let found = rustls_native_certs::load_native_certs();
            let (added, _) = roots.add_parsable_certificates(found.certs);
            if added == 0 {
                return Err(SourceError::Other(format!(
                    "Kafka TLS: no system root certificates ({} errors); set tls_ca_file",
                    found.errors.len()
                )));
            }
        }
    }
    if roots.is_empty() {
        return Err(SourceError::Other(
            "Kafka TLS: the CA file holds no certificate".into(),
        ));
    }
    // ring, named explicitly as elsewhere in the workspace (no C toolchain for aws-lc); rustls
    // deprecates it for lacking post-quantum key exchange
    #[allow(deprecated)]
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    Ok(rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| SourceError::Other(format!("Kafka TLS: {e}")))?
        .with_root_certificates(roots)
        .with_no_client_auth())
}

/// rskafka's SASL setup for `sasl.mechanism`.
fn sasl_config(sasl: &Sasl) -> Result<SaslConfig, SourceError> {
    let credentials = Credentials::new(sasl.username.clone(), sasl.password.clone());
    match sasl.mechanism.to_ascii_uppercase().as_str() {
        "PLAIN" => Ok(SaslConfig::Plain(credentials)),
        "SCRAM-SHA-256" => Ok(SaslConfig::ScramSha256(credentials)),
        "SCRAM-SHA-512" => Ok(SaslConfig::ScramSha512(credentials)),
        other => Err(SourceError::Auth(format!(
            "SASL mechanism {other:?}: PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512"
        ))),
    }
}

/// rskafka's error as a [`SourceError`].
fn map_error(what: &str, e: &KafkaError) -> SourceError {
    let text = format!("{what}: {e}");
    if let Some(codec) = unsupported_codec(&text) {
        return SourceError::Other(format!(
            "{what}: a record batch is compressed with {codec}, which this build cannot read \
             (uncompressed, gzip and snappy only)"
        ));
    }
    match e {
        KafkaError::ServerError { protocol_error, .. } => match protocol_error {
            ProtocolError::OffsetOutOfRange => SourceError::OutOfRange(text),
            ProtocolError::UnknownTopicOrPartition | ProtocolError::UnknownTopicId => {
                SourceError::NotFound(text)
            }
            ProtocolError::TopicAuthorizationFailed
            | ProtocolError::ClusterAuthorizationFailed
            | ProtocolError::SaslAuthenticationFailed
            | ProtocolError::UnsupportedSaslMechanism
            | ProtocolError::IllegalSaslState => SourceError::Auth(text),
            ProtocolError::LeaderNotAvailable
            | ProtocolError::NotLeaderOrFollower
            | ProtocolError::BrokerNotAvailable
            | ProtocolError::RequestTimedOut
            | ProtocolError::NetworkException => SourceError::Unreachable(text),
            _ => SourceError::Other(text),
        },
        KafkaError::InvalidResponse(_) => SourceError::Other(text),
        _ if is_auth(&text) => SourceError::Auth(text),
        _ => SourceError::Unreachable(text),
    }
}

/// Whether an error's text tells of a refused login (rskafka wraps SASL failures in its
/// connection and retry errors).
fn is_auth(text: &str) -> bool {
    let t = text.to_ascii_lowercase();
    t.contains("sasl") || t.contains("authentication")
}

/// The codec of a record batch rskafka was not built to decompress, if that is the error.
fn unsupported_codec(text: &str) -> Option<&'static str> {
    let (_, rest) = text.split_once("Unimplemented compression")?;
    let rest = rest.to_ascii_lowercase();
    Some(if rest.contains("lz4") {
        "lz4"
    } else if rest.contains("zstd") {
        "zstd"
    } else {
        "an unknown codec"
    })
}

fn to_record(r: rskafka::record::RecordAndOffset) -> Record {
    let position = u64::try_from(r.offset).unwrap_or(0) + 1;
    let rec = r.record;
    Record {
        position,
        key: rec.key,
        headers: rec.headers.into_iter().collect(),
        value: rec.value.unwrap_or_default(),
        timestamp_ms: u64::try_from(rec.timestamp.timestamp_millis()).ok(),
    }
}

impl Source for KafkaTopicSource {
    fn info(&self) -> BoxFuture<'_, Result<SourceInfo, SourceError>> {
        Box::pin(async move {
            Ok(SourceInfo {
                partitions: self.topic_partitions().await?,
                incarnation: String::new(),
            })
        })
    }

    /// A fetch from offset `after` (the first record held when `after` is 0) that waits up to
    /// `wait` on the broker for a first record, at most `max_bytes` (the broker still sends a
    /// first batch larger than that whole), trimmed to `max` records and about `max_bytes`.
    fn read(
        &self,
        partition: u32,
        after: u64,
        max: usize,
        max_bytes: usize,
        wait: Duration,
    ) -> BoxFuture<'_, Result<Vec<Record>, SourceError>> {
        Box::pin(async move {
            let client = self.partition(partition).await?;
            let offset = if after == 0 {
                client
                    .get_offset(OffsetAt::Earliest)
                    .await
                    .map_err(|e| self.failed(partition, &e))?
            } else {
                i64::try_from(after)
                    .map_err(|_| SourceError::OutOfRange(format!("position {after}")))?
            };
            let mut fetch_bytes = max_bytes.clamp(MIN_FETCH_BYTES, MAX_FETCH_BYTES);
            let deadline = tokio::time::Instant::now() + wait;
            loop {
                let now = tokio::time::Instant::now();
                let left = deadline.saturating_duration_since(now).min(MAX_FETCH_WAIT);
                let max_wait_ms = i32::try_from(left.as_millis()).unwrap_or(i32::MAX);
                let bytes = 1..i32::try_from(fetch_bytes).unwrap_or(i32::MAX);
                let (records, high_watermark) = client
                    .fetch_records(offset, bytes, max_wait_ms)
                    .await
                    .map_err(|e| self.failed(partition, &e))?;
                if !records.is_empty() {
                    let mut records: Vec<Record> = records.into_iter().map(to_record).collect();
                    records.sort_by_key(|r| r.position);
                    let mut out = Vec::with_capacity(records.len().min(max.max(1)));
                    let mut taken = 0;
                    for r in records {
                        if out.len() >= max.max(1) || (!out.is_empty() && taken >= max_bytes) {
                            break;
                        }
                        taken += r.bytes();
                        out.push(r);
                    }
                    return Ok(out);
                }
                let now = tokio::time::Instant::now();
                if now >= deadline {
                    return Ok(Vec::new());
                }
                if high_watermark > offset && fetch_bytes < MAX_FETCH_BYTES {
                    // records are there but none came: a broker that sends no batch larger than
                    // the limit (not every one sends the first whole): a larger limit
                    fetch_bytes = (fetch_bytes * 4).min(MAX_FETCH_BYTES);
                    continue;
                }
                // an empty answer before the deadline: the broker did not wait (or held only
                // control records): ask again shortly
                tokio::time::sleep(EMPTY_FETCH_PAUSE.min(deadline - now)).await;
            }
        })
    }

    /// The high watermark: the offset of the next record, which is the position of the last.
    fn end(&self, partition: u32) -> BoxFuture<'_, Result<u64, SourceError>> {
        Box::pin(async move {
            let next = self.offset(partition, OffsetAt::Latest).await?;
            Ok(u64::try_from(next).unwrap_or(0))
        })
    }

    /// The earliest offset held, plus one.
    fn start(&self, partition: u32) -> BoxFuture<'_, Result<u64, SourceError>> {
        Box::pin(async move {
            let first = self.offset(partition, OffsetAt::Earliest).await?;
            Ok(u64::try_from(first).unwrap_or(0) + 1)
        })
    }
}
