//! The machine's limits that are not a disk: an in-memory actor round trip with no persistence
//! (ractor on tokio, as the entity runtime uses) and an HTTP round trip to a handler that does
//! nothing (a node's `/healthz`), both measured with the generator's machinery.

use hdrhistogram::Histogram;
use ractor::{Actor, ActorProcessingErr, ActorRef, RpcReplyPort};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// A limit's outcome: operations per second and latency.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Limit {
    /// What ran.
    pub name: String,
    /// Operations per second.
    pub per_sec: f64,
    /// p50, ms.
    pub p50_ms: f64,
    /// p99, ms.
    pub p99_ms: f64,
}

impl Limit {
    fn from(name: String, n: u64, secs: f64, h: &Histogram<u64>) -> Self {
        Limit {
            name,
            per_sec: n as f64 / secs,
            p50_ms: h.value_at_quantile(0.5) as f64 / 1000.0,
            p99_ms: h.value_at_quantile(0.99) as f64 / 1000.0,
        }
    }
}

/// An in-memory counter actor: `add` answers the new value.
struct Counter;

enum Msg {
    Add(i64, RpcReplyPort<i64>),
}

impl Actor for Counter {
    type Msg = Msg;
    type State = i64;
    type Arguments = ();

    async fn pre_start(&self, _: ActorRef<Msg>, _: ()) -> Result<i64, ActorProcessingErr> {
        Ok(0)
    }

    async fn handle(
        &self,
        _: ActorRef<Msg>,
        msg: Msg,
        state: &mut i64,
    ) -> Result<(), ActorProcessingErr> {
        let Msg::Add(n, reply) = msg;
        *state += n;
        let _ = reply.send(*state);
        Ok(())
    }
}

/// Runs `callers` tasks for `secs`, each awaiting `call(caller, n)` (its n-th call) again and
/// again; answers the calls made and their latency histogram (µs).
async fn closed_loop<F, Fut>(
    callers: usize,
    secs: f64,
    call: F,
) -> anyhow::Result<(u64, f64, Histogram<u64>)>
where
    F: Fn(usize, u64) -> Fut + Clone + Send + 'static,
    Fut: std::future::Future<Output = anyhow::Result<()>> + Send,
{
    let stop = Arc::new(AtomicBool::new(false));
    let hist = Arc::new(Mutex::new(Histogram::<u64>::new_with_bounds(
        1, 60_000_000, 3,
    )?));
    let start = Instant::now();
    let tasks: Vec<_> = (0..callers)
        .map(|c| {
            let (stop, hist, call) = (stop.clone(), hist.clone(), call.clone());
            tokio::spawn(async move {
                let mut h = Histogram::<u64>::new_with_bounds(1, 60_000_000, 3).expect("bounds");
                let mut n = 0u64;
                while !stop.load(Ordering::Relaxed) {
                    let t = Instant::now();
                    call(c, n).await?;
                    let _ = h.record(t.elapsed().as_nanos().div_ceil(1000).max(1) as u64);
                    n += 1;
                }
                hist.lock().unwrap().add(&h)?;
                anyhow::Ok(n)
            })
        })
        .collect();
    tokio::time::sleep(Duration::from_secs_f64(secs)).await;
    stop.store(true, Ordering::Relaxed);
    let mut n = 0;
    for t in tasks {
        n += t.await??;
    }
    let secs = start.elapsed().as_secs_f64();
    let h = hist.lock().unwrap().clone();
    Ok((n, secs, h))
}

/// `callers` tasks, each calling `add` on one of `actors` counter actors and awaiting the
/// answer, for `secs`.
pub async fn actor_round_trip(actors: usize, callers: usize, secs: f64) -> anyhow::Result<Limit> {
    let mut refs = Vec::new();
    let mut handles = Vec::new();
    for _ in 0..actors {
        let (a, h) = Actor::spawn(None, Counter, ()).await?;
        refs.push(a);
        handles.push(h);
    }
    let refs = Arc::new(refs);
    let targets = refs.clone();
    let (n, secs, h) = closed_loop(callers, secs, move |c, n| {
        let a = targets[(c + n as usize) % targets.len()].clone();
        async move {
            ractor::call!(a, Msg::Add, 1).map_err(|e| anyhow::anyhow!("{e}"))?;
            Ok(())
        }
    })
    .await?;
    for a in refs.iter() {
        a.stop(None);
    }
    for h in handles {
        let _ = h.await;
    }
    Ok(Limit::from(
        format!("in-memory actor call (ractor), {callers} callers, {actors} actor(s)"),
        n,
        secs,
        &h,
    ))
}

/// `callers` HTTP/1.1 clients calling `GET {url}/healthz` (answers without any work) for `secs`.
pub async fn http_round_trip(url: &str, callers: usize, secs: f64) -> anyhow::Result<Limit> {
    let http = reqwest::Client::builder()
        .pool_max_idle_per_host(callers)
        .timeout(Duration::from_secs(10))
        .build()?;
    let health = format!("{url}/healthz");
    let (n, secs, h) = closed_loop(callers, secs, move |_, _| {
        let req = http.get(&health);
        async move {
            req.send().await?.error_for_status()?;
            Ok(())
        }
    })
    .await?;
    Ok(Limit::from(
        format!("HTTP no-op round trip (/healthz), {callers} in flight"),
        n,
        secs,
        &h,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn the_actor_round_trip_counts_answered_calls() {
        let l = actor_round_trip(2, 4, 0.2).await.unwrap();
        assert!(l.per_sec > 0.0 && l.p99_ms >= l.p50_ms, "{l:?}");
    }
}
