//! An in-memory source for tests: partitions of records appended by the test, read by position.

use super::{Connector, Record, Source, SourceError, SourceInfo};
use futures::future::BoxFuture;
use perdure_types::subscription::SourceSpec;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::Notify;

/// Partitions of records held in memory. Positions are 1, 2, 3, ... per partition.
#[derive(Debug, Default)]
pub struct MemorySource {
    parts: Mutex<Vec<Vec<Record>>>,
    appended: Notify,
    /// Set to make every call fail as an unreachable broker.
    down: std::sync::atomic::AtomicBool,
    incarnation: Mutex<String>,
}

impl MemorySource {
    /// A source of `partitions` empty partitions.
    pub fn new(partitions: u32) -> Arc<Self> {
        let s = Self::default();
        *s.parts.lock().unwrap() = vec![Vec::new(); partitions as usize];
        *s.incarnation.lock().unwrap() = "mem-1".into();
        Arc::new(s)
    }

    /// Appends a record with `value` (and `key`) to `partition`; returns its position.
    pub fn append(&self, partition: u32, key: Option<&[u8]>, value: &[u8]) -> u64 {
        let mut parts = self.parts.lock().unwrap();
        let p = &mut parts[partition as usize];
        let position = p.len() as u64 + 1;
        p.push(Record {
            position,
            key: key.map(<[u8]>::to_vec),
            headers: Vec::new(),
            value: value.to_vec(),
            timestamp_ms: None,
        });
        drop(parts);
        self.appended.notify_waiters();
        position
    }

    /// Makes the broker unreachable (or reachable again).
    pub fn set_down(&self, down: bool) {
        self.down.store(down, std::sync::atomic::Ordering::Relaxed);
    }

    /// Deletes and recreates the source: empty partitions, another incarnation.
    pub fn recreate(&self, incarnation: &str) {
        let mut parts = self.parts.lock().unwrap();
        for p in parts.iter_mut() {
            p.clear();
        }
        *self.incarnation.lock().unwrap() = incarnation.into();
    }

    fn check(&self) -> Result<(), SourceError> {
        if self.down.load(std::sync::atomic::Ordering::Relaxed) {
            Err(SourceError::Unreachable("memory source is down".into()))
        } else {
            Ok(())
        }
    }

    fn take(
        &self,
        partition: u32,
        after: u64,
        max: usize,
        max_bytes: usize,
    ) -> Result<Vec<Record>, SourceError> {
        self.check()?;
        let parts = self.parts.lock().unwrap();
        let p = parts
            .get(partition as usize)
            .ok_or_else(|| SourceError::NotFound(format!("partition {partition}")))?;
        let mut out = Vec::new();
        let mut bytes = 0;
        for r in p.iter().skip(after as usize) {
            if out.len() >= max || (!out.is_empty() && bytes >= max_bytes) {
                break;
            }
            bytes += r.bytes();
            out.push(r.clone());
        }
        Ok(out)
    }
}

impl Source for MemorySource {
    fn info(&self) -> BoxFuture<'_, Result<SourceInfo, SourceError>> {
        Box::pin(async move {
            self.check()?;
            Ok(SourceInfo {
                partitions: (0..self.parts.lock().unwrap().len() as u32).collect(),
                incarnation: self.incarnation.lock().unwrap().clone(),
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
            let deadline = tokio::time::Instant::now() + wait;
            loop {
                let appended = self.appended.notified();
                let got = self.take(partition, after, max, max_bytes)?;
                if !got.is_empty() {
                    return Ok(got);
                }
                if tokio::time::timeout_at(deadline, appended).await.is_err() {
                    return Ok(Vec::new());
                }
            }
        })
    }

    fn end(&self, partition: u32) -> BoxFuture<'_, Result<u64, SourceError>> {
        Box::pin(async move {
            self.check()?;
            Ok(self
                .parts
                .lock()
                .unwrap()
                .get(partition as usize)
                .map_or(0, |p| p.len() as u64))
        })
    }

    fn start(&self, partition: u32) -> BoxFuture<'_, Result<u64, SourceError>> {
        let _ = partition;
        Box::pin(async move {
            self.check()?;
            Ok(1)
        })
    }
}

/// Hands out memory sources by subscription name (tests register them first).
#[derive(Debug, Default)]
pub struct MemoryConnector {
    sources: Mutex<HashMap<String, Arc<MemorySource>>>,
}

impl MemoryConnector {
    /// Subscription `name` reads `source`.
    pub fn insert(&self, name: &str, source: Arc<MemorySource>) {
        self.sources.lock().unwrap().insert(name.into(), source);
    }
}

impl Connector for MemoryConnector {
    fn connect<'a>(
        &'a self,
        name: &'a str,
        spec: &'a SourceSpec,
    ) -> BoxFuture<'a, Result<Arc<dyn Source>, SourceError>> {
        let _ = spec;
        Box::pin(async move {
            let source = self
                .sources
                .lock()
                .unwrap()
                .get(name)
                .cloned()
                .ok_or_else(|| SourceError::NotFound(format!("no memory source for {name}")))?;
            if source.down.load(std::sync::atomic::Ordering::Relaxed) {
                // as a real client does: a while before giving up on an unreachable broker
                tokio::time::sleep(Duration::from_secs(1)).await;
                return Err(SourceError::Unreachable("memory source is down".into()));
            }
            Ok(source as Arc<dyn Source>)
        })
    }
}
