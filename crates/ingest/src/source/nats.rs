//! NATS JetStream: one stream is one source partition (0), its positions the stream sequence.
//!
//! Reads go through an ordered pull consumer (ephemeral, no acks, flow-controlled by the client)
//! created at `ByStartSequence { after + 1 }` with the subscription's subject filter. It stays
//! open across reads while each read continues where the last one stopped, so a steady reader
//! pays for no round trip per read: the client pulls batches ahead and a read takes what has
//! arrived. A read that does not continue (a retry from an older position, a jump) recreates it.
//!
//! Nothing is acknowledged and no durable consumer is made: perdure keeps positions in its own
//! Raft state, so [`Source::committed`] keeps its default (it does nothing). An ordered consumer
//! has no acks to send, and a durable consumer made only to publish a position would be state
//! on the broker that nothing reads.

use super::{Record, Source, SourceError, SourceInfo};
use async_nats::jetstream::{self, consumer, stream};
use futures::future::BoxFuture;
use futures::{FutureExt, StreamExt};
use std::time::Duration;

/// How long the first connection may take before the server counts as unreachable.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);

/// The header that carries a message's subject (so a mapping can key records by it).
pub const SUBJECT_HEADER: &str = "nats-subject";

/// A JetStream stream read by sequence.
pub struct JetStreamSource {
    client: async_nats::Client,
    js: jetstream::Context,
    stream: String,
    /// The consumer's subject filter (`None`: every subject of the stream).
    filter: Option<String>,
    /// The open ordered consumer of partition 0, if any.
    reader: tokio::sync::Mutex<Option<Reader>>,
}

impl std::fmt::Debug for JetStreamSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JetStreamSource")
            .field("stream", &self.stream)
            .field("filter", &self.filter)
            .finish_non_exhaustive()
    }
}

/// An open ordered consumer and where it is.
struct Reader {
    messages: consumer::pull::Ordered,
    /// The position of the last record handed out (or the `after` it was created at): the
    /// next read continues on this consumer only if it asks for records after this position.
    last: u64,
    /// The stream's incarnation when the consumer was made.
    incarnation: String,
}

impl JetStreamSource {
    /// Connects to `spec.url` with its token or user and password. Fails within a few seconds
    /// (no retries) when the server cannot be reached; does not check that the stream exists
    /// (every call does: [`SourceError::NotFound`]). After the first connection the client
    /// reconnects on its own; calls made while it is disconnected fail as
    /// [`SourceError::Unreachable`].
    pub async fn connect(
        spec: &perdure_types::subscription::NatsSource,
    ) -> Result<Self, SourceError> {
        let mut options = async_nats::ConnectOptions::new()
            .name("perdure-ingest")
            .connection_timeout(CONNECT_TIMEOUT);
        if let Some(token) = &spec.token {
            options = options.token(token.clone());
        }
        if let Some(user) = &spec.user {
            options =
                options.user_and_password(user.clone(), spec.password.clone().unwrap_or_default());
        }
        let client = options
            .connect(spec.url.as_str())
            .await
            .map_err(|e| connect_error(&spec.url, &e))?;
        let js = jetstream::new(client.clone());
        Ok(Self {
            client,
            js,
            stream: spec.stream.clone(),
            filter: spec.subject.clone().filter(|s| !s.is_empty() && s != ">"),
            reader: tokio::sync::Mutex::new(None),
        })
    }

    /// The stream with its current info (one request).
    async fn get_stream(&self) -> Result<stream::Stream, SourceError> {
        self.js
            .get_stream(&self.stream)
            .await
            .map_err(|e| self.stream_error(&e))
    }

    /// Why a stream request failed, as a [`SourceError`].
    fn stream_error(&self, e: &jetstream::context::GetStreamError) -> SourceError {
        use jetstream::context::GetStreamErrorKind as K;
        match e.kind() {
            K::JetStream(js) if js.error_code() == jetstream::ErrorCode::STREAM_NOT_FOUND => {
                SourceError::NotFound(format!("JetStream stream {}", self.stream))
            }
            K::InvalidStreamName | K::EmptyName => {
                SourceError::NotFound(format!("JetStream stream {:?}: invalid name", self.stream))
            }
            _ => self.request_error(&format!("stream {} info", self.stream), e),
        }
    }

    /// A failed request: unreachable while the client is not connected (or nothing answered),
    /// else as the server said.
    fn request_error(&self, what: &str, e: &dyn std::fmt::Display) -> SourceError {
        let connected = self.client.connection_state() == async_nats::connection::State::Connected;
        let text = e.to_string();
        if !connected || text.contains("timed out") || text.contains("no responders") {
            SourceError::Unreachable(format!(
                "{what}: {text} (is the server up, with JetStream enabled?)"
            ))
        } else {
            SourceError::Other(format!("{what}: {text}"))
        }
    }

    /// A new ordered consumer for records after `after`; checks `after` against what the stream
    /// holds first.
    async fn open(&self, after: u64) -> Result<Reader, SourceError> {
        let stream = self.get_stream().await?;
        let info = stream.cached_info();
        check_range(&self.stream, after, &info.state)?;
        let config = consumer::pull::OrderedConfig {
            filter_subject: self.filter.clone().unwrap_or_default(),
            deliver_policy: if after == 0 {
                consumer::DeliverPolicy::All
            } else {
                consumer::DeliverPolicy::ByStartSequence {
                    start_sequence: after + 1,
                }
            },
            ..Default::default()
        };
        let what = format!("stream {}: ordered consumer", self.stream);
        let consumer = stream
            .create_consumer(config)
            .await
            .map_err(|e| match e.kind() {
                jetstream::stream::ConsumerErrorKind::JetStream(js)
                    if js.error_code() == jetstream::ErrorCode::STREAM_NOT_FOUND =>
                {
                    SourceError::NotFound(format!("JetStream stream {}", self.stream))
                }
                _ => self.request_error(&what, &e),
            })?;
        let messages = consumer
            .messages()
            .await
            .map_err(|e| self.request_error(&what, &e))?;
        Ok(Reader {
            messages,
            last: after,
            incarnation: incarnation(info),
        })
    }

    /// After a read found nothing: is the consumer still reading the stream it was made on?
    /// Fails when the stream is gone or no longer holds `after`; drops the consumer when the
    /// stream was recreated (an ordered consumer would retry a deleted stream forever).
    async fn check_idle(&self, slot: &mut Option<Reader>, after: u64) -> Result<(), SourceError> {
        let stream = match self.get_stream().await {
            Ok(s) => s,
            Err(e) => {
                *slot = None;
                return Err(e);
            }
        };
        let info = stream.cached_info();
        if slot
            .as_ref()
            .is_some_and(|r| r.incarnation != incarnation(info))
        {
            *slot = None;
        }
        let checked = check_range(&self.stream, after, &info.state);
        if checked.is_err() {
            *slot = None;
        }
        checked
    }
}

/// Whether the stream (in `state`) holds the records after `after`: `after` is past its last
/// sequence (recreated, behind the checkpoint) or retention removed the record after it.
fn check_range(name: &str, after: u64, state: &stream::State) -> Result<(), SourceError> {
    if after > state.last_sequence {
        return Err(SourceError::OutOfRange(format!(
            "stream {name} ends at sequence {}, asked for records after {after} (recreated?)",
            state.last_sequence
        )));
    }
    if after > 0 && after + 1 < state.first_sequence {
        return Err(SourceError::OutOfRange(format!(
            "stream {name} starts at sequence {}, asked for records after {after} (removed by \
             its retention)",
            state.first_sequence
        )));
    }
    Ok(())
}

/// A stream's incarnation: its creation time, in nanoseconds since the epoch.
fn incarnation(info: &stream::Info) -> String {
    info.created.unix_timestamp_nanos().to_string()
}

/// Why the first connection failed.
fn connect_error(url: &str, e: &async_nats::ConnectError) -> SourceError {
    use async_nats::ConnectErrorKind as K;
    let text = format!("NATS {url}: {e}");
    match e.kind() {
        K::Authentication | K::AuthorizationViolation => SourceError::Auth(text),
        K::ServerParse => SourceError::Other(text),
        _ => SourceError::Unreachable(text),
    }
}

/// A JetStream message as a record (its subject in the `nats-subject` header).
fn to_record(message: &jetstream::Message, position: u64, published_ms: u64) -> Record {
    let mut headers: Vec<(String, Vec<u8>)> = message
        .headers
        .iter()
        .flat_map(|h| h.iter())
        .flat_map(|(name, values)| {
            values
                .iter()
                .map(move |v| (name.to_string(), v.as_str().as_bytes().to_vec()))
        })
        .collect();
    // the header map keeps no order: sorted by name, so a record reads the same every time
    headers.sort_by(|a, b| a.0.cmp(&b.0));
    headers.push((SUBJECT_HEADER.into(), message.subject.as_bytes().to_vec()));
    Record {
        position,
        key: None,
        headers,
        value: message.payload.to_vec(),
        timestamp_ms: Some(published_ms),
    }
}

impl Source for JetStreamSource {
    fn info(&self) -> BoxFuture<'_, Result<SourceInfo, SourceError>> {
        Box::pin(async move {
            let stream = self.get_stream().await?;
            Ok(SourceInfo {
                partitions: vec![0],
                incarnation: incarnation(stream.cached_info()),
            })
        })
    }

    fn read(
        &self,
        partition: u32,
        after: u64,
        max: usize,
        max_bytes: usize,
        wait: Duration,
    ) -> BoxFuture<'_, Result<Vec<Record>, SourceError>> {
        Box::pin(async move {
            only_partition_zero(partition)?;
            let deadline = tokio::time::Instant::now() + wait;
            let mut slot = self.reader.lock().await;
            if slot.as_ref().is_none_or(|r| r.last != after) {
                *slot = None;
                *slot = Some(self.open(after).await?);
            }
            let Some(reader) = slot.as_mut() else {
                return Ok(Vec::new());
            };
            let mut out = Vec::new();
            let mut bytes = 0;
            let mut failed = None;
            let mut yielded = false;
            while out.len() < max.max(1) && (out.is_empty() || bytes < max_bytes) {
                // the first record is waited for; after it only what has arrived is taken
                let next = if out.is_empty() {
                    match tokio::time::timeout_at(deadline, reader.messages.next()).await {
                        Ok(next) => next,
                        Err(_) => break,
                    }
                } else {
                    match reader.messages.next().now_or_never() {
                        Some(next) => next,
                        // the connection's task may be parsing the rest of a batch: let it run
                        // once before the read ends
                        None if !yielded => {
                            yielded = true;
                            tokio::task::yield_now().await;
                            continue;
                        }
                        None => break,
                    }
                };
                yielded = false;
                let message = match next {
                    Some(Ok(m)) => m,
                    Some(Err(e)) => {
                        failed = Some(
                            self.request_error(&format!("stream {}: reading", self.stream), &e),
                        );
                        break;
                    }
                    None => {
                        failed = Some(SourceError::Unreachable(format!(
                            "stream {}: the consumer's subscription ended",
                            self.stream
                        )));
                        break;
                    }
                };
                let (position, published_ms) = match message.info() {
                    Ok(i) => (
                        i.stream_sequence,
                        u64::try_from(i.published.unix_timestamp_nanos() / 1_000_000).unwrap_or(0),
                    ),
                    Err(e) => {
                        failed = Some(SourceError::Other(format!(
                            "stream {}: a message without JetStream metadata: {e}",
                            self.stream
                        )));
                        break;
                    }
                };
                // an ordered consumer recreated before its first message starts over from the
                // stream's first record: what was handed out already is skipped
                if position <= reader.last {
                    continue;
                }
                let record = to_record(&message, position, published_ms);
                bytes += record.bytes();
                reader.last = position;
                out.push(record);
            }
            if let Some(e) = failed {
                *slot = None;
                return if out.is_empty() { Err(e) } else { Ok(out) };
            }
            if out.is_empty() {
                self.check_idle(&mut slot, after).await?;
            }
            Ok(out)
        })
    }

    /// The stream's last sequence. With a subject filter: the sequence of the last message on
    /// a matching subject (the server's "last message by subject", which takes wildcards), so a
    /// reader that got it has no lag; when the server cannot answer that, the stream's last
    /// sequence (an end at or above the true one: lag may show records that are not ours).
    fn end(&self, partition: u32) -> BoxFuture<'_, Result<u64, SourceError>> {
        Box::pin(async move {
            only_partition_zero(partition)?;
            let stream = self.get_stream().await?;
            let last = stream.cached_info().state.last_sequence;
            let Some(filter) = &self.filter else {
                return Ok(last);
            };
            match stream.get_last_raw_message_by_subject(filter).await {
                Ok(m) => Ok(m.sequence),
                Err(e) => match e.kind() {
                    jetstream::stream::LastRawMessageErrorKind::NoMessageFound => Ok(0),
                    _ if self.client.connection_state()
                        != async_nats::connection::State::Connected =>
                    {
                        Err(self
                            .request_error(&format!("stream {}: last by subject", self.stream), &e))
                    }
                    _ => {
                        tracing::debug!(stream = %self.stream, %filter, error = %e,
                            "no last message by subject: the stream's last sequence is the end");
                        Ok(last)
                    }
                },
            }
        })
    }

    /// The stream's first sequence (1 for a stream that never held a record).
    fn start(&self, partition: u32) -> BoxFuture<'_, Result<u64, SourceError>> {
        Box::pin(async move {
            only_partition_zero(partition)?;
            let stream = self.get_stream().await?;
            Ok(stream.cached_info().state.first_sequence.max(1))
        })
    }
}

/// A stream has one source partition, 0.
fn only_partition_zero(partition: u32) -> Result<(), SourceError> {
    if partition == 0 {
        Ok(())
    } else {
        Err(SourceError::NotFound(format!(
            "partition {partition}: a JetStream stream has only partition 0"
        )))
    }
}
