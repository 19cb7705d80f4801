//! The watchdog: a node whose async runtime stopped making progress fails stop, with its threads'
//! stacks in the log, instead of living on as a silent zombie that answers nothing (not even
//! `/readyz`) while its supervisor and its peers think it alive.
//!
//! A task on the runtime bumps a counter every [`BEAT`]; an OS thread outside the runtime looks at
//! it every [`BEAT`]. When the counter has not moved for `watchdog.stall_after_ms`, every worker is
//! stuck (a deadlock, a blocking call on every worker): the watchdog logs each thread's name, state
//! and kernel wait channel, the native stacks of all threads when `eu-stack` or `gdb` is installed,
//! and exits with code [`EXIT_STALLED`] so that a supervisor restarts the node and the cluster fails
//! over. A look that comes late (the whole process was stopped, e.g. SIGSTOP, or starved of CPU)
//! does not count towards the stall: only time the watchdog itself saw pass does.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// How often the runtime beats and the watchdog looks.
pub const BEAT: Duration = Duration::from_millis(250);

/// The exit code of a node the watchdog stopped (`EX_SOFTWARE`).
pub const EXIT_STALLED: i32 = 70;

/// Stops the watchdog when dropped (the node is shutting down).
#[derive(Debug)]
pub struct Watchdog {
    stop: Arc<AtomicBool>,
}

impl Drop for Watchdog {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

/// Starts the watchdog over the current runtime, failing stop after `stall_after` without a beat.
/// `None` when it is disabled (`stall_after` zero).
pub fn start(stall_after: Duration) -> Option<Watchdog> {
    if stall_after.is_zero() {
        return None;
    }
    let beats = Arc::new(AtomicU64::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let handle = tokio::runtime::Handle::current();
    {
        let (beats, stop) = (beats.clone(), stop.clone());
        handle.spawn(async move {
            let mut tick = tokio::time::interval(BEAT);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            while !stop.load(Ordering::Relaxed) {
                tick.tick().await;
                beats.fetch_add(1, Ordering::Relaxed);
            }
        });
    }
    let watched = stop.clone();
    let spawned = std::thread::Builder::new()
        .name("perdure-watchdog".into())
        .spawn(move || watch(&beats, &watched, stall_after));
    if let Err(e) = spawned {
        tracing::warn!(error = %e, "the watchdog thread could not start; running without it");
    }
    Some(Watchdog { stop })
}

/// `PERDURE_TEST_STALL_RUNTIME_MS=N`: N ms from now, block every worker of the runtime for good
/// (what a deadlock in a store under every worker looks like), to test the watchdog.
pub fn test_stall() {
    let Some(ms) = std::env::var("PERDURE_TEST_STALL_RUNTIME_MS")
        .ok()
        .and_then(|v| v.parse::<u64>().ok())
    else {
        return;
    };
    tracing::warn!(
        after_ms = ms,
        "PERDURE_TEST_STALL_RUNTIME_MS: the runtime will be stalled"
    );
    tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(ms)).await;
        // more blocked tasks than workers: every worker takes one and never comes back
        for _ in 0..256 {
            tokio::spawn(async { std::thread::sleep(Duration::from_secs(3600)) });
        }
    });
}

fn watch(beats: &AtomicU64, stop: &AtomicBool, stall_after: Duration) {
    let mut last = beats.load(Ordering::Relaxed);
    let mut still = Duration::ZERO;
    let mut looked = Instant::now();
    while !stop.load(Ordering::Relaxed) {
        std::thread::sleep(BEAT);
        let now = Instant::now();
        let slept = now - looked;
        looked = now;
        let b = beats.load(Ordering::Relaxed);
        if b != last {
            last = b;
            still = Duration::ZERO;
            continue;
        }
        // a look that came late: the process was stopped or starved; the runtime gets a new chance
        if slept > BEAT * 4 {
            continue;
        }
        still += slept;
        if still >= stall_after && !stop.load(Ordering::Relaxed) {
            fail_stop(still);
        }
    }
}

fn fail_stop(still: Duration) -> ! {
    let threads = threads();
    let stacks = native_stacks().unwrap_or_else(|| {
        "(install eu-stack (elfutils) or gdb for native stacks of every thread)".into()
    });
    tracing::error!(
        stalled_ms = still.as_millis() as u64,
        "the async runtime made no progress for {:.1} s: failing stop so that a supervisor restarts \
         the node and the cluster fails over.\nthreads (tid name state wait-channel):\n{threads}\n\
         stacks:\n{stacks}",
        still.as_secs_f64()
    );
    eprintln!(
        "perdure: the async runtime made no progress for {:.1} s; exiting with code {EXIT_STALLED} \
         (threads and stacks are in the log)",
        still.as_secs_f64()
    );
    std::process::exit(EXIT_STALLED)
}

/// Each thread of this process: id, name, state and kernel wait channel.
fn threads() -> String {
    let mut out = String::new();
    let Ok(tasks) = std::fs::read_dir("/proc/self/task") else {
        return "(no /proc/self/task)".into();
    };
    for t in tasks.flatten() {
        let p = t.path();
        let read = |f: &str| std::fs::read_to_string(p.join(f)).unwrap_or_default();
        let stat = read("stat");
        // the state follows the parenthesised name
        let state = stat
            .rsplit_once(") ")
            .and_then(|(_, rest)| rest.split_whitespace().next())
            .unwrap_or("?")
            .to_string();
        out.push_str(&format!(
            "{} {} {} {}\n",
            t.file_name().to_string_lossy(),
            read("comm").trim(),
            state,
            read("wchan").trim()
        ));
    }
    out
}

/// How long a stack tool may take before it is killed (the node must exit regardless).
const STACKS_WITHIN: Duration = Duration::from_secs(20);

/// Every thread's native stack from `eu-stack` or `gdb`, when one is installed and may attach.
/// The tool writes to a file, not a pipe: while it holds this process stopped, no thread of ours
/// could drain a pipe, and a full one would block the tool for good.
fn native_stacks() -> Option<String> {
    // a child may trace its parent only when the parent says so (Yama ptrace_scope 1)
    let _ = rustix::process::set_ptracer(rustix::process::PTracer::Any);
    let pid = std::process::id().to_string();
    let file = std::env::temp_dir().join(format!("perdure-{pid}-stacks.txt"));
    let tools: [(&str, Vec<&str>); 2] = [
        ("eu-stack", vec!["-p", &pid]),
        (
            "gdb",
            vec!["-batch", "-p", &pid, "-ex", "thread apply all bt"],
        ),
    ];
    for (tool, args) in tools {
        let Ok(out) = std::fs::File::create(&file) else {
            return None;
        };
        let Ok(mut child) = std::process::Command::new(tool)
            .args(&args)
            .stdin(std::process::Stdio::null())
            .stdout(out)
            .stderr(std::process::Stdio::null())
            .spawn()
        else {
            continue;
        };
        let deadline = Instant::now() + STACKS_WITHIN;
        while matches!(child.try_wait(), Ok(None)) && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = child.kill();
        let _ = child.wait();
        let stacks = std::fs::read_to_string(&file).unwrap_or_default();
        let _ = std::fs::remove_file(&file);
        if !stacks.trim().is_empty() {
            return Some(stacks);
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_thread_list_names_this_thread() {
        std::thread::Builder::new()
            .name("watchdog-probe".into())
            .spawn(|| assert!(threads().contains("watchdog-probe")))
            .unwrap()
            .join()
            .unwrap();
    }
}
