//! Retry policies, run inside the orchestration: each attempt is a task of its own (a new task
//! id), and the wait between two attempts is a durable timer, so a retry survives a crash and
//! replays to the same decisions.

use super::context::OrchestrationContext;
use super::state::SlotId;
use super::task::Task;
use perdure_types::command::Millis;
use perdure_types::orchestration::FailureDetails;
use serde::{Deserialize, Serialize};

/// How a task is retried (Durable Task's `RetryPolicy`). After attempt `n` (from 1) fails, the
/// next one starts `first_retry_interval_ms * backoff_coefficient^(n-1)` ms later (at most
/// `max_retry_interval_ms`), unless `max_attempts` were made, the failure is non-retriable, or
/// `retry_timeout_ms` has passed since the first attempt started (orchestration time).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RetryPolicy {
    /// Attempts in all, the first included (0 counts as 1).
    pub max_attempts: u32,
    /// The wait after the first failure, in milliseconds.
    pub first_retry_interval_ms: u64,
    /// Each wait is the previous one times this (1.0: constant).
    pub backoff_coefficient: f64,
    /// The longest wait, in milliseconds.
    pub max_retry_interval_ms: u64,
    /// No attempt starts once this long has passed since the first one started.
    pub retry_timeout_ms: Option<u64>,
}

impl RetryPolicy {
    /// `max_attempts` attempts, `first_retry_interval_ms` apart; no backoff, no cap, no timeout.
    pub fn new(max_attempts: u32, first_retry_interval_ms: u64) -> Self {
        Self {
            max_attempts,
            first_retry_interval_ms,
            backoff_coefficient: 1.0,
            max_retry_interval_ms: u64::MAX,
            retry_timeout_ms: None,
        }
    }

    /// With each wait `coefficient` times the previous one.
    pub fn with_backoff(mut self, coefficient: f64) -> Self {
        self.backoff_coefficient = coefficient;
        self
    }

    /// With waits of at most `ms`.
    pub fn with_max_interval(mut self, ms: u64) -> Self {
        self.max_retry_interval_ms = ms;
        self
    }

    /// With no attempt started `ms` after the first one started.
    pub fn with_timeout(mut self, ms: u64) -> Self {
        self.retry_timeout_ms = Some(ms);
        self
    }

    /// The wait after attempt `attempt` (from 1) failed, in milliseconds.
    pub fn delay_after(&self, attempt: u32) -> u64 {
        let exp = i32::try_from(attempt.saturating_sub(1)).unwrap_or(i32::MAX);
        let ms = self.first_retry_interval_ms as f64 * self.backoff_coefficient.powi(exp);
        // `as` saturates (and NaN is 0): a silly coefficient cannot overflow
        (ms as u64).min(self.max_retry_interval_ms)
    }

    /// The wait before the next attempt, or `None` to give up, after attempt `attempt` failed
    /// with `failure` at `now`; the first attempt started at `started`.
    pub(crate) fn next_delay(
        &self,
        attempt: u32,
        failure: &FailureDetails,
        started: Millis,
        now: Millis,
    ) -> Option<u64> {
        if failure.non_retriable || attempt >= self.max_attempts.max(1) {
            return None;
        }
        if let Some(t) = self.retry_timeout_ms {
            if now >= started.saturating_add(t) {
                return None;
            }
        }
        Some(self.delay_after(attempt))
    }
}

/// The retry loop: runs `attempt` until it succeeds or the policy gives up, then resolves `slot`
/// with the last result.
pub(crate) async fn run(
    ctx: OrchestrationContext,
    policy: RetryPolicy,
    attempt: impl Fn(&OrchestrationContext) -> Task,
    slot: SlotId,
) {
    let started = ctx.current_time();
    let mut n: u32 = 1;
    let outcome = loop {
        match attempt(&ctx).await {
            Ok(v) => break Ok(v),
            Err(e) => {
                let now = ctx.current_time();
                match policy.next_delay(n, e.details(), started, now) {
                    None => break Err(e),
                    Some(delay) => {
                        // a timer resolves Ok(null); nothing can cancel this one
                        let _ = ctx.create_timer(now.saturating_add(delay)).await;
                        n = n.saturating_add(1);
                    }
                }
            }
        }
    };
    ctx.shared.lock().resolve(slot, outcome);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delays_back_off_up_to_the_cap() {
        let p = RetryPolicy::new(5, 1000)
            .with_backoff(2.0)
            .with_max_interval(5000);
        let d: Vec<u64> = (1..=5).map(|a| p.delay_after(a)).collect();
        assert_eq!(d, [1000, 2000, 4000, 5000, 5000]);
        let f = FailureDetails::new("E", "x");
        assert_eq!(p.next_delay(4, &f, 0, 0), Some(5000));
        assert_eq!(p.next_delay(5, &f, 0, 0), None);
        let nr = FailureDetails {
            non_retriable: true,
            ..f.clone()
        };
        assert_eq!(p.next_delay(1, &nr, 0, 0), None);
        let t = p.clone().with_timeout(10_000);
        assert_eq!(t.next_delay(1, &f, 0, 9_999), Some(1000));
        assert_eq!(t.next_delay(1, &f, 0, 10_000), None);
    }
}
