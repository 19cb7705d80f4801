//! The source adapters against real brokers: a `nats-server -js` and the `perdure-kafka-mock`
//! Kafka broker (librdkafka's mock cluster), started by `perdure-harness`. A missing broker
//! binary skips the test (it fails under `PERDURE_TEST_REQUIRE_TOOLS=1`).

use perdure_harness::brokers::{self, KafkaCodec, KafkaMock, KafkaRecord, NatsMessage, NatsServer};
use perdure_ingest::source::nats::SUBJECT_HEADER;
use perdure_ingest::source::{Brokers, Connector, Record, Source, SourceError};
use perdure_types::subscription::{KafkaSource, NatsSource, SourceSpec};
use std::sync::Arc;
use std::time::{Duration, Instant};

const BIG: usize = 64 << 20;

fn nats_spec(url: &str, stream: &str, subject: Option<&str>) -> SourceSpec {
    SourceSpec::Nats(NatsSource {
        url: url.into(),
        stream: stream.into(),
        subject: subject.map(str::to_string),
        token: None,
        user: None,
        password: None,
    })
}

fn kafka_spec(bootstrap: &str, topic: &str) -> SourceSpec {
    SourceSpec::Kafka(KafkaSource {
        brokers: vec![bootstrap.into()],
        topic: topic.into(),
        sasl: None,
        tls: false,
        tls_ca_file: None,
    })
}

async fn connect(spec: &SourceSpec) -> Arc<dyn Source> {
    Brokers.connect("test", spec).await.expect("connect")
}

fn positions(records: &[Record]) -> Vec<u64> {
    records.iter().map(|r| r.position).collect()
}

fn header<'a>(r: &'a Record, name: &str) -> Option<&'a [u8]> {
    r.headers
        .iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.as_slice())
}

/// `records` are `first`, `first + 1`, ...: at least one, at most `max`.
fn assert_consecutive(records: &[Record], first: u64, max: usize) {
    let got = positions(records);
    assert!(!got.is_empty() && got.len() <= max, "{got:?}");
    let want: Vec<u64> = (first..first + got.len() as u64).collect();
    assert_eq!(got, want);
}

/// Reads `n` records after `after` (in as many reads as it takes).
async fn read_n(source: &dyn Source, after: u64, n: usize) -> Vec<Record> {
    let mut out: Vec<Record> = Vec::new();
    while out.len() < n {
        let from = out.last().map_or(after, |r| r.position);
        let got = source
            .read(0, from, n - out.len(), BIG, Duration::from_secs(2))
            .await
            .expect("read");
        assert!(!got.is_empty(), "no records after {from}");
        out.extend(got);
    }
    out
}

/// Reads everything after `after` up to `end` in reads of `max`.
async fn read_all(
    source: &dyn Source,
    partition: u32,
    mut after: u64,
    end: u64,
    max: usize,
) -> u64 {
    let mut n = 0;
    while after < end {
        let got = source
            .read(partition, after, max, BIG, Duration::from_secs(2))
            .await
            .expect("read");
        assert!(!got.is_empty(), "no records after {after} (end {end})");
        for r in &got {
            assert!(r.position > after, "position {} after {after}", r.position);
            after = r.position;
        }
        n += got.len() as u64;
    }
    n
}

/// `Unreachable` within a few seconds from a port nothing listens on.
async fn assert_unreachable(spec: SourceSpec) {
    let t = Instant::now();
    let got = Brokers.connect("test", &spec).await;
    let took = t.elapsed();
    assert!(
        matches!(got, Err(SourceError::Unreachable(_))),
        "{:?}",
        got.err()
    );
    assert!(took < Duration::from_secs(6), "took {took:?}");
}

fn closed_port() -> u16 {
    perdure_harness::free_port("127.0.0.1").unwrap()
}

// ---------------------------------------------------------------- NATS JetStream

struct Nats {
    server: NatsServer,
    _dir: tempfile::TempDir,
}

fn nats() -> Option<Nats> {
    let bin = brokers::nats_server_or_skip()?;
    let dir = tempfile::tempdir().unwrap();
    let server = NatsServer::start_with(&bin, dir.path()).expect("start nats-server");
    Some(Nats { server, _dir: dir })
}

fn values(n: usize) -> Vec<Vec<u8>> {
    (1..=n).map(|i| format!("v{i}").into_bytes()).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nats_positions_bounds_wait_end_start() {
    let Some(nats) = nats() else { return };
    let url = nats.server.url();
    let last = brokers::produce_nats(&url, "orders", "orders.new", values(100))
        .await
        .unwrap();
    assert_eq!(last, 100);
    let source = connect(&nats_spec(&url, "orders", None)).await;

    let info = source.info().await.unwrap();
    assert_eq!(info.partitions, vec![0]);
    assert!(!info.incarnation.is_empty());

    let all = read_n(source.as_ref(), 0, 100).await;
    assert_eq!(positions(&all), (1..=100).collect::<Vec<_>>());
    assert_eq!(all[0].value, b"v1");
    assert_eq!(all[99].value, b"v100");
    assert_eq!(header(&all[0], SUBJECT_HEADER), Some(&b"orders.new"[..]));
    assert!(all[0].timestamp_ms.is_some_and(|t| t > 1_600_000_000_000));

    // after a position (a new consumer), then continuing on it; never more than `max`
    let some = source
        .read(0, 40, 10, BIG, Duration::from_secs(2))
        .await
        .unwrap();
    assert_consecutive(&some, 41, 10);
    let rest = read_n(
        source.as_ref(),
        some.last().unwrap().position,
        100 - 40 - some.len(),
    )
    .await;
    assert_consecutive(&rest, 41 + some.len() as u64, 100);

    // max_bytes: one record at least, about max_bytes
    let one = source
        .read(0, 0, 1000, 1, Duration::from_secs(2))
        .await
        .unwrap();
    assert_eq!(positions(&one), vec![1]);
    let size = one[0].bytes();
    let few = source
        .read(0, 1, 1000, size * 3, Duration::from_secs(2))
        .await
        .unwrap();
    assert_consecutive(&few, 2, 3);

    // wait: nothing after the end comes back empty in about `wait`
    let t = Instant::now();
    let none = source
        .read(0, 100, 1000, BIG, Duration::from_millis(400))
        .await
        .unwrap();
    let took = t.elapsed();
    assert!(none.is_empty());
    assert!(
        took >= Duration::from_millis(350) && took < Duration::from_secs(3),
        "{took:?}"
    );

    // ... and a record published while waiting comes back before the wait is over
    let url2 = url.clone();
    let publisher = tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(200)).await;
        brokers::produce_nats(&url2, "orders", "orders.new", vec![b"late".to_vec()]).await
    });
    let t = Instant::now();
    let late = source
        .read(0, 100, 1000, BIG, Duration::from_secs(10))
        .await
        .unwrap();
    assert_eq!(positions(&late), vec![101]);
    assert!(t.elapsed() < Duration::from_secs(5), "{:?}", t.elapsed());
    assert_eq!(publisher.await.unwrap().unwrap(), 101);

    assert_eq!(source.end(0).await.unwrap(), 101);
    assert_eq!(source.start(0).await.unwrap(), 1);
    assert!(matches!(source.end(1).await, Err(SourceError::NotFound(_))));
    source.committed(0, 101).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nats_headers_and_subject_filter() {
    let Some(nats) = nats() else { return };
    let url = nats.server.url();
    brokers::create_nats_stream(&url, "events", &["events.>"])
        .await
        .unwrap();
    // odd sequences on events.a.x (with headers), even ones on events.b.y; the last on events.b.y
    let messages = (1..=20).map(|i| NatsMessage {
        subject: if i % 2 == 1 {
            "events.a.x"
        } else {
            "events.b.y"
        }
        .into(),
        headers: if i % 2 == 1 {
            vec![
                ("user".into(), format!("u{i}")),
                ("kind".into(), "a".into()),
            ]
        } else {
            Vec::new()
        },
        payload: format!("{i}").into_bytes(),
    });
    assert_eq!(brokers::publish_nats(&url, messages).await.unwrap(), 20);

    let a = connect(&nats_spec(&url, "events", Some("events.a.x"))).await;
    let got = read_n(a.as_ref(), 0, 10).await;
    assert_eq!(positions(&got), (1..=20).step_by(2).collect::<Vec<_>>());
    let r = &got[1];
    assert_eq!(r.value, b"3");
    assert_eq!(header(r, "user"), Some(&b"u3"[..]));
    assert_eq!(header(r, "kind"), Some(&b"a"[..]));
    assert_eq!(header(r, SUBJECT_HEADER), Some(&b"events.a.x"[..]));
    assert_eq!(r.key, None);
    // the end is the last record this filter reads, not the stream's last
    assert_eq!(a.end(0).await.unwrap(), 19);
    // reading after it finds nothing (no lag)
    assert!(a
        .read(0, 19, 1000, BIG, Duration::from_millis(200))
        .await
        .unwrap()
        .is_empty());

    // wildcard filters
    let b = connect(&nats_spec(&url, "events", Some("events.b.*"))).await;
    let got = read_n(b.as_ref(), 0, 10).await;
    assert_eq!(positions(&got), (2..=20).step_by(2).collect::<Vec<_>>());
    assert_eq!(b.end(0).await.unwrap(), 20);
    let both = connect(&nats_spec(&url, "events", Some("events.*.*"))).await;
    assert_eq!(both.end(0).await.unwrap(), 20);
    let wa = connect(&nats_spec(&url, "events", Some("events.a.>"))).await;
    assert_eq!(read_n(wa.as_ref(), 0, 10).await.len(), 10);
    let end_wa = wa.end(0).await.unwrap();
    println!("end() with the wildcard filter events.a.> (last match 19, stream last 20): {end_wa}");
    assert!(end_wa == 19 || end_wa == 20, "{end_wa}");
    // a filter nothing matches: end 0
    let none = connect(&nats_spec(&url, "events", Some("events.zzz"))).await;
    assert_eq!(none.end(0).await.unwrap(), 0);
    // a filter outside the stream's subjects: the server refuses the consumer
    let outside = connect(&nats_spec(&url, "events", Some("*.b"))).await;
    let refused = outside
        .read(0, 0, 10, BIG, Duration::from_millis(200))
        .await;
    assert!(matches!(refused, Err(SourceError::Other(_))), "{refused:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nats_missing_stream_and_unreachable() {
    let Some(nats) = nats() else { return };
    let url = nats.server.url();
    let source = connect(&nats_spec(&url, "nope", None)).await;
    assert!(matches!(source.info().await, Err(SourceError::NotFound(_))));
    assert!(matches!(source.end(0).await, Err(SourceError::NotFound(_))));
    assert!(matches!(
        source.start(0).await,
        Err(SourceError::NotFound(_))
    ));
    assert!(matches!(
        source.read(0, 0, 10, BIG, Duration::from_millis(100)).await,
        Err(SourceError::NotFound(_))
    ));
    assert_unreachable(nats_spec(
        &format!("nats://127.0.0.1:{}", closed_port()),
        "orders",
        None,
    ))
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nats_stream_recreated() {
    let Some(nats) = nats() else { return };
    let url = nats.server.url();
    brokers::produce_nats(&url, "jobs", "jobs.x", values(50))
        .await
        .unwrap();
    let source = connect(&nats_spec(&url, "jobs", None)).await;
    let before = source.info().await.unwrap().incarnation;
    assert_eq!(read_all(source.as_ref(), 0, 0, 50, 1000).await, 50);

    brokers::delete_nats_stream(&url, "jobs").await.unwrap();
    // the open consumer finds the stream gone
    let gone = source
        .read(0, 50, 100, BIG, Duration::from_millis(300))
        .await;
    assert!(matches!(gone, Err(SourceError::NotFound(_))), "{gone:?}");

    brokers::produce_nats(&url, "jobs", "jobs.x", values(5))
        .await
        .unwrap();
    let after = source.info().await.unwrap().incarnation;
    assert_ne!(before, after, "a recreated stream has another incarnation");
    assert_eq!(source.end(0).await.unwrap(), 5);
    // the old position is past the new stream's end
    let t = Instant::now();
    let behind = source
        .read(0, 50, 100, BIG, Duration::from_millis(300))
        .await;
    assert!(
        matches!(behind, Err(SourceError::OutOfRange(_))),
        "{behind:?}"
    );
    assert!(t.elapsed() < Duration::from_secs(3));
    let fresh = read_n(source.as_ref(), 0, 5).await;
    assert_eq!(positions(&fresh), vec![1, 2, 3, 4, 5]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nats_read_throughput() {
    let Some(nats) = nats() else { return };
    let url = nats.server.url();
    let n = 200_000;
    let t = Instant::now();
    let payloads = (0..n).map(|i| format!("{{\"n\":{i:08}}}").into_bytes());
    let last = brokers::produce_nats(&url, "bulk", "bulk.x", payloads)
        .await
        .unwrap();
    let produced = t.elapsed();
    assert_eq!(last, n as u64);
    let source = connect(&nats_spec(&url, "bulk", None)).await;
    let t = Instant::now();
    let read = read_all(source.as_ref(), 0, 0, last, 10_000).await;
    let took = t.elapsed();
    assert_eq!(read, n as u64);
    println!(
        "NATS JetStream: produced {n} records in {produced:?} ({:.0}/s); read them in {took:?} \
         ({:.0} records/s)",
        n as f64 / produced.as_secs_f64(),
        n as f64 / took.as_secs_f64()
    );
}

// ---------------------------------------------------------------- Kafka protocol

fn kafka(topics: &[(&str, u32)]) -> Option<KafkaMock> {
    let bin = brokers::kafka_mock_or_skip()?;
    Some(KafkaMock::start_with(&bin, topics).expect("start perdure-kafka-mock"))
}

fn kafka_records(n: usize) -> Vec<KafkaRecord> {
    (1..=n)
        .map(|i| KafkaRecord {
            key: Some(format!("k{i}").into_bytes()),
            headers: vec![("h".into(), format!("x{i}").into_bytes())],
            value: format!("v{i}").into_bytes(),
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kafka_positions_bounds_wait_end_start() {
    let Some(mock) = kafka(&[("orders", 1), ("wide", 8)]) else {
        return;
    };
    let bs = mock.bootstrap().to_string();
    let last = brokers::produce_kafka(&bs, "orders", 0, kafka_records(100))
        .await
        .unwrap();
    assert_eq!(last, 100);
    let source = connect(&kafka_spec(&bs, "orders")).await;
    assert_eq!(source.info().await.unwrap().partitions, vec![0]);

    let all = source
        .read(0, 0, 1000, BIG, Duration::from_secs(2))
        .await
        .unwrap();
    assert_eq!(positions(&all), (1..=100).collect::<Vec<_>>());
    let r = &all[6];
    assert_eq!(r.key.as_deref(), Some(&b"k7"[..]));
    assert_eq!(r.value, b"v7");
    assert_eq!(header(r, "h"), Some(&b"x7"[..]));
    assert!(r.timestamp_ms.is_some_and(|t| t > 1_600_000_000_000));

    let some = source
        .read(0, 40, 10, BIG, Duration::from_secs(2))
        .await
        .unwrap();
    assert_eq!(positions(&some), (41..=50).collect::<Vec<_>>());
    let one = source
        .read(0, 0, 1000, 1, Duration::from_secs(2))
        .await
        .unwrap();
    assert_eq!(positions(&one), vec![1]);
    let size = one[0].bytes();
    let few = source
        .read(0, 1, 1000, size * 3, Duration::from_secs(2))
        .await
        .unwrap();
    assert_eq!(positions(&few), vec![2, 3, 4]);

    let t = Instant::now();
    let none = source
        .read(0, 100, 1000, BIG, Duration::from_millis(400))
        .await
        .unwrap();
    let took = t.elapsed();
    assert!(none.is_empty());
    assert!(
        took >= Duration::from_millis(350) && took < Duration::from_secs(3),
        "{took:?}"
    );

    let bs2 = bs.clone();
    let producer = tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(200)).await;
        brokers::produce_kafka(&bs2, "orders", 0, kafka_records(1)).await
    });
    let t = Instant::now();
    let late = source
        .read(0, 100, 1000, BIG, Duration::from_secs(10))
        .await
        .unwrap();
    assert_eq!(positions(&late), vec![101]);
    assert!(t.elapsed() < Duration::from_secs(5), "{:?}", t.elapsed());
    assert_eq!(producer.await.unwrap().unwrap(), 101);

    assert_eq!(source.end(0).await.unwrap(), 101);
    assert_eq!(source.start(0).await.unwrap(), 1);
    let past = source
        .read(0, 1000, 10, BIG, Duration::from_millis(200))
        .await;
    assert!(matches!(past, Err(SourceError::OutOfRange(_))), "{past:?}");
    assert!(matches!(source.end(3).await, Err(SourceError::NotFound(_))));

    // 8 partitions listed; each read by position on its own
    let wide = connect(&kafka_spec(&bs, "wide")).await;
    let info = wide.info().await.unwrap();
    assert_eq!(info.partitions, (0..8).collect::<Vec<_>>());
    println!(
        "Kafka incarnation (rskafka exposes no topic id): {:?}",
        info.incarnation
    );
    brokers::produce_kafka(&bs, "wide", 5, kafka_records(3))
        .await
        .unwrap();
    assert_eq!(wide.end(5).await.unwrap(), 3);
    assert_eq!(wide.end(4).await.unwrap(), 0);
    let got = wide
        .read(5, 0, 10, BIG, Duration::from_secs(2))
        .await
        .unwrap();
    assert_eq!(positions(&got), vec![1, 2, 3]);
    assert!(wide
        .read(4, 0, 10, BIG, Duration::from_millis(200))
        .await
        .unwrap()
        .is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kafka_compressed_batches() {
    let Some(mock) = kafka(&[("zipped", 1)]) else {
        return;
    };
    let bs = mock.bootstrap().to_string();
    brokers::produce_kafka_with(&bs, "zipped", 0, kafka_records(30), KafkaCodec::Gzip)
        .await
        .unwrap();
    let last = brokers::produce_kafka_with(&bs, "zipped", 0, kafka_records(30), KafkaCodec::Snappy)
        .await
        .unwrap();
    assert_eq!(last, 60);
    let source = connect(&kafka_spec(&bs, "zipped")).await;
    let mut got = Vec::new();
    let mut after = 0;
    while after < 60 {
        let part = source
            .read(0, after, 1000, BIG, Duration::from_secs(2))
            .await
            .unwrap();
        after = part.last().unwrap().position;
        got.extend(part);
    }
    assert_eq!(positions(&got), (1..=60).collect::<Vec<_>>());
    assert_eq!(got[30].value, b"v1");
    assert_eq!(got[30].key.as_deref(), Some(&b"k1"[..]));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kafka_missing_topic_and_unreachable() {
    let Some(mock) = kafka(&[("orders", 1)]) else {
        return;
    };
    let source = connect(&kafka_spec(mock.bootstrap(), "nope")).await;
    assert!(matches!(source.info().await, Err(SourceError::NotFound(_))));
    assert!(matches!(source.end(0).await, Err(SourceError::NotFound(_))));
    assert!(matches!(
        source.read(0, 0, 10, BIG, Duration::from_millis(100)).await,
        Err(SourceError::NotFound(_))
    ));
    // asking did not create it
    assert!(matches!(source.info().await, Err(SourceError::NotFound(_))));
    assert_unreachable(kafka_spec(
        &format!("127.0.0.1:{}", closed_port()),
        "orders",
    ))
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kafka_read_throughput() {
    let Some(mock) = kafka(&[("bulk", 1)]) else {
        return;
    };
    let bs = mock.bootstrap().to_string();
    let n = 200_000;
    let records = (0..n)
        .map(|i| KafkaRecord {
            key: None,
            headers: Vec::new(),
            value: format!("{{\"n\":{i:08}}}").into_bytes(),
        })
        .collect();
    let t = Instant::now();
    let last = brokers::produce_kafka(&bs, "bulk", 0, records)
        .await
        .unwrap();
    let produced = t.elapsed();
    assert_eq!(last, n as u64);
    let source = connect(&kafka_spec(&bs, "bulk")).await;
    let t = Instant::now();
    let read = read_all(source.as_ref(), 0, 0, last, 10_000).await;
    let took = t.elapsed();
    assert_eq!(read, n as u64);
    println!(
        "Kafka (mock): produced {n} records in {produced:?} ({:.0}/s); read them in {took:?} \
         ({:.0} records/s)",
        n as f64 / produced.as_secs_f64(),
        n as f64 / took.as_secs_f64()
    );
}
