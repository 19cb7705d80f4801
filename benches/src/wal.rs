//! `perdure-bench wal`: the raw `fdatasync` limit of a disk (one small record per sync, and
//! batches of records per sync) beside perdure's write-ahead log with group commit under
//! concurrent writers. Each figure is records made durable per second, with latency
//! percentiles, syncs, and records per sync. The suite reuses [`raw`] as its disk limit.

use anyhow::Context;
use hdrhistogram::Histogram;
use perdure_storage::wal::{Record, RecordKind, Wal, WalOptions};
use serde_json::json;
use std::fs::OpenOptions;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// One scenario's outcome.
pub struct Outcome {
    /// What ran.
    pub name: String,
    /// Records made durable.
    pub records: u64,
    /// fdatasync calls.
    pub syncs: u64,
    /// Seconds measured.
    pub secs: f64,
    /// Latency per record (µs).
    pub hist: Histogram<u64>,
}

impl Outcome {
    /// Prints one line.
    pub fn print(&self) {
        println!(
            "{:<34} {:>10.0} rec/s {:>8.0} syncs/s {:>7.1} rec/sync   p50 {:>7.3} ms  p99 {:>7.3} ms  p99.9 {:>7.3} ms",
            self.name,
            self.records as f64 / self.secs,
            self.syncs as f64 / self.secs,
            self.records as f64 / self.syncs.max(1) as f64,
            self.hist.value_at_quantile(0.5) as f64 / 1000.0,
            self.hist.value_at_quantile(0.99) as f64 / 1000.0,
            self.hist.value_at_quantile(0.999) as f64 / 1000.0,
        );
    }
    /// JSON form.
    pub fn json(&self) -> serde_json::Value {
        json!({
            "scenario": self.name,
            "records_per_sec": self.records as f64 / self.secs,
            "syncs_per_sec": self.syncs as f64 / self.secs,
            "records_per_sync": self.records as f64 / self.syncs.max(1) as f64,
            "latency_us": {
                "p50": self.hist.value_at_quantile(0.5),
                "p99": self.hist.value_at_quantile(0.99),
                "p999": self.hist.value_at_quantile(0.999),
                "max": self.hist.max(),
            },
        })
    }
}

fn hist() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 60_000_000, 3).expect("histogram bounds")
}

/// Raw limit: append `batch` records of `bytes` each, then one `fdatasync`, for `secs`.
pub fn raw(dir: &Path, bytes: usize, batch: usize, secs: f64) -> anyhow::Result<Outcome> {
    let path = dir.join(format!("raw-{batch}.bin"));
    let mut f = OpenOptions::new()
        .create(true)
        .append(true)
        .open(&path)
        .with_context(|| path.display().to_string())?;
    let buf = vec![0xabu8; bytes * batch];
    let mut h = hist();
    let (mut records, mut syncs) = (0u64, 0u64);
    let start = Instant::now();
    while start.elapsed().as_secs_f64() < secs {
        let t = Instant::now();
        f.write_all(&buf)?;
        f.sync_data()?;
        h.record(t.elapsed().as_micros().max(1) as u64)?;
        records += batch as u64;
        syncs += 1;
    }
    let secs = start.elapsed().as_secs_f64();
    std::fs::remove_file(&path)?;
    Ok(Outcome {
        name: format!("raw write+fdatasync, {batch}/sync"),
        records,
        syncs,
        secs,
        hist: h,
    })
}

/// perdure's WAL: `writers` threads, each appending one record and waiting for its sync.
fn wal(dir: &Path, bytes: usize, writers: usize, secs: f64) -> anyhow::Result<Outcome> {
    let wal_dir = dir.join(format!("wal-{writers}"));
    let (wal, _) = Wal::open(
        &wal_dir,
        WalOptions {
            segment_bytes: 64 << 20,
            max_batch_bytes: 8 << 20,
        },
    )?;
    let before = wal.stats();
    let stop = Arc::new(AtomicBool::new(false));
    let start = Instant::now();
    let handles: Vec<_> = (0..writers)
        .map(|w| {
            let wal = wal.clone();
            let stop = stop.clone();
            std::thread::spawn(move || -> anyhow::Result<(u64, Histogram<u64>)> {
                let mut h = hist();
                let mut n = 0u64;
                while !stop.load(Ordering::Relaxed) {
                    let rec = Record {
                        partition: (w % 16) as u32,
                        kind: RecordKind::Entries,
                        index: n + 1,
                        payload: vec![0xcd; bytes],
                    };
                    let t = Instant::now();
                    wal.write_blocking(vec![rec])?;
                    h.record(t.elapsed().as_micros().max(1) as u64)?;
                    n += 1;
                }
                Ok((n, h))
            })
        })
        .collect();
    std::thread::sleep(Duration::from_secs_f64(secs));
    stop.store(true, Ordering::Relaxed);
    let mut h = hist();
    let mut records = 0;
    for t in handles {
        let (n, th) = t.join().map_err(|_| anyhow::anyhow!("writer panicked"))??;
        records += n;
        h.add(th)?;
    }
    let secs = start.elapsed().as_secs_f64();
    let syncs = wal.stats().syncs - before.syncs;
    wal.close();
    std::fs::remove_dir_all(&wal_dir)?;
    Ok(Outcome {
        name: format!("perdure WAL, {writers} writers"),
        records,
        syncs,
        secs,
        hist: h,
    })
}

/// Runs the raw and WAL scenarios on the disk under `dir`, prints them, and writes JSON to
/// `json_out` if given.
pub fn run(
    dir: &Path,
    seconds: f64,
    record_bytes: usize,
    writers: &[usize],
    json_out: Option<PathBuf>,
) -> anyhow::Result<()> {
    let tmp = tempfile::Builder::new()
        .prefix("perdure-bench-")
        .tempdir_in(dir)
        .with_context(|| format!("temporary directory in {}", dir.display()))?;
    println!(
        "disk under {}: {record_bytes}-byte records, {seconds} s per scenario",
        std::fs::canonicalize(dir)?.display()
    );
    let mut outcomes = Vec::new();
    for batch in [1, 16, 256] {
        eprintln!("running raw fdatasync, {batch} records per sync ...");
        let o = raw(tmp.path(), record_bytes, batch, seconds)?;
        o.print();
        outcomes.push(o);
    }
    for &w in writers {
        eprintln!("running WAL with {w} writers ...");
        let o = wal(tmp.path(), record_bytes, w, seconds)?;
        o.print();
        outcomes.push(o);
    }
    let raw1 = outcomes[0].records as f64 / outcomes[0].secs;
    println!("\nrecords/s relative to raw (1 record per fdatasync):");
    for o in &outcomes {
        println!(
            "  {:<34} {:>7.2}x",
            o.name,
            o.records as f64 / o.secs / raw1
        );
    }
    if let Some(path) = json_out {
        let v = json!({
            "record_bytes": record_bytes,
            "seconds": seconds,
            "results": outcomes.iter().map(Outcome::json).collect::<Vec<_>>(),
        });
        std::fs::write(&path, serde_json::to_string_pretty(&v)?)
            .with_context(|| path.display().to_string())?;
    }
    Ok(())
}
