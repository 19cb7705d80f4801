//! The request deadline (`entities.request_timeout_ms`): a request to a partition that cannot
//! reach a quorum is answered instead of waiting for ever (Hardening case 8).
//!
//! Only the caller stops waiting. What was handed to a partition (an operation queued at its
//! entity actor, a proposal in Raft) is not taken back: a Raft entry cannot be un-proposed, and
//! the actor must learn its batch's outcome before it runs anything else (an actor that forgot
//! an uncommitted batch could compute the next one from a stale state once the first commits).
//! So a write past its deadline has an unknown outcome ([`Error::DeadlineExceeded`]): it takes
//! effect if a quorum comes back while its leader still leads; a signal retried with the same
//! idempotency key is applied at most once.

use crate::Error;
use perdure_types::PartitionId;
use std::future::Future;
use std::time::{Duration, Instant};

/// Runs `request` on `partition` for at most `limit`; past it, [`Error::DeadlineExceeded`]
/// (`write` says whether the request may have changed state).
pub async fn within<T>(
    limit: Duration,
    partition: PartitionId,
    write: bool,
    request: impl Future<Output = Result<T, Error>>,
) -> Result<T, Error> {
    let started = Instant::now();
    match tokio::time::timeout(limit, request).await {
        Ok(r) => r,
        Err(_) => {
            tracing::warn!(
                partition,
                write,
                waited_ms = started.elapsed().as_millis() as u64,
                "request deadline passed; answering without its outcome"
            );
            Err(Error::DeadlineExceeded {
                partition,
                waited_ms: started.elapsed().as_millis() as u64,
                write,
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn a_request_that_never_ends_is_answered_at_its_deadline() {
        let t = tokio::time::Instant::now();
        let r: Result<(), Error> =
            within(Duration::from_secs(10), 7, true, std::future::pending()).await;
        assert_eq!(t.elapsed(), Duration::from_secs(10));
        match r {
            Err(Error::DeadlineExceeded {
                partition: 7,
                write: true,
                ..
            }) => {}
            other => panic!("{other:?}"),
        }
        let r = within(Duration::from_secs(10), 7, true, async { Ok(5) }).await;
        assert_eq!(r.unwrap(), 5);
    }
}
