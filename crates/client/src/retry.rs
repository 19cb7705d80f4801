//! When a failed request is tried again, and how long to wait first.

use std::time::Duration;

/// How often and how patiently a request is retried.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Attempts in all, the first included (1 = never retry). Default 5.
    pub attempts: u32,
    /// Wait before the first retry; doubled before each further one. Default 50 ms.
    pub initial_backoff: Duration,
    /// Longest wait between two attempts. Default 2 s.
    pub max_backoff: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            attempts: 5,
            initial_backoff: Duration::from_millis(50),
            max_backoff: Duration::from_secs(2),
        }
    }
}

impl RetryPolicy {
    /// A policy that never retries.
    pub fn none() -> Self {
        Self {
            attempts: 1,
            ..Self::default()
        }
    }

    /// The wait before retry number `retry` (1 = the first retry).
    pub fn backoff(&self, retry: u32) -> Duration {
        let factor = 1u32
            .checked_shl(retry.saturating_sub(1))
            .unwrap_or(u32::MAX);
        self.initial_backoff
            .saturating_mul(factor)
            .min(self.max_backoff)
    }
}

/// What a request may safely repeat.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    /// Signals carrying an idempotency key, reads: repeating them changes nothing. Also the
    /// orchestration requests whose repeat changes nothing more: a start under an instance id
    /// (a repeat finds the instance: 409 `instance_exists`, see `Client::start_orchestration`),
    /// terminate, suspend, resume (a repeat adds the same request again, or finds the instance
    /// finished: 410), purges (a repeat finds nothing: 404).
    Idempotent,
    /// A call runs an operation and is not idempotent: repeated only when it never reached the
    /// server. So are raising an orchestration event (a repeat raises it twice), rewind and
    /// restart (a repeat starts again).
    Call,
}

/// Why an attempt failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Failure {
    /// The server answered with this status.
    Status(u16),
    /// The connection was refused: the request never reached the server.
    Refused,
    /// Another failure while connecting (the request was not sent).
    Connect,
    /// The request timed out (it may have been served).
    Timeout,
    /// The connection failed during the exchange (it may have been served).
    Io,
    /// Anything else (a bad request that cannot be sent, a redirect loop).
    Other,
}

impl Failure {
    /// Classifies a transport error.
    pub(crate) fn of(e: &reqwest::Error) -> Self {
        if refused(e) {
            Failure::Refused
        } else if e.is_timeout() {
            Failure::Timeout
        } else if e.is_connect() {
            Failure::Connect
        } else if e.is_request() || e.is_body() || e.is_decode() {
            Failure::Io
        } else {
            Failure::Other
        }
    }
}

impl Failure {
    /// Whether the request may have been served before it failed (it timed out, its connection
    /// broke during the exchange, or it was answered 503, which a node also answers when
    /// leadership changed under a write): a repeat may then meet its own effect.
    pub(crate) fn maybe_served(self) -> bool {
        matches!(
            self,
            Failure::Timeout | Failure::Io | Failure::Other | Failure::Status(_)
        )
    }
}

/// Whether an I/O error of kind "connection refused" is somewhere in `e`'s chain of sources.
fn refused(e: &(dyn std::error::Error + 'static)) -> bool {
    let mut cur: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(err) = cur {
        if let Some(io) = err.downcast_ref::<std::io::Error>() {
            if io.kind() == std::io::ErrorKind::ConnectionRefused {
                return true;
            }
        }
        cur = err.source();
    }
    false
}

/// Whether a `kind` request that failed with `failure` may be tried again. Never on a 4xx; an
/// idempotent request also on 503 (unavailable) and 504 (its partition missed the request
/// deadline: `outcome_unknown`, and the retry carries the same idempotency key).
pub(crate) fn retryable(kind: Kind, failure: Failure) -> bool {
    match (kind, failure) {
        (_, Failure::Refused) => true,
        (Kind::Call, _) => false,
        (Kind::Idempotent, Failure::Status(s)) => s == 503 || s == 504,
        (Kind::Idempotent, Failure::Connect | Failure::Timeout | Failure::Io) => true,
        (Kind::Idempotent, Failure::Other) => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn idempotent_requests_retry_on_connection_errors_timeouts_503_and_504_only() {
        use Failure::*;
        for f in [Refused, Connect, Timeout, Io, Status(503), Status(504)] {
            assert!(retryable(Kind::Idempotent, f), "{f:?}");
        }
        for f in [
            Other,
            Status(400),
            Status(404),
            Status(413),
            Status(422),
            Status(500),
        ] {
            assert!(!retryable(Kind::Idempotent, f), "{f:?}");
        }
    }

    #[test]
    fn calls_retry_only_when_the_request_never_reached_the_server() {
        use Failure::*;
        assert!(retryable(Kind::Call, Refused));
        for f in [
            Connect,
            Timeout,
            Io,
            Other,
            Status(503),
            Status(504),
            Status(400),
            Status(422),
        ] {
            assert!(!retryable(Kind::Call, f), "{f:?}");
        }
    }

    #[test]
    fn only_failures_before_sending_are_known_unserved() {
        use Failure::*;
        for f in [Refused, Connect] {
            assert!(!f.maybe_served(), "{f:?}");
        }
        for f in [Timeout, Io, Other, Status(503), Status(504)] {
            assert!(f.maybe_served(), "{f:?}");
        }
    }

    #[test]
    fn backoff_doubles_up_to_the_cap() {
        let p = RetryPolicy {
            attempts: 10,
            initial_backoff: Duration::from_millis(50),
            max_backoff: Duration::from_millis(300),
        };
        let waits: Vec<u64> = (1..=6).map(|r| p.backoff(r).as_millis() as u64).collect();
        assert_eq!(waits, [50, 100, 200, 300, 300, 300]);
        assert_eq!(p.backoff(100), Duration::from_millis(300));
    }

    #[test]
    fn a_refused_connection_is_found_in_the_source_chain() {
        #[derive(Debug)]
        struct Wrap(std::io::Error);
        impl std::fmt::Display for Wrap {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("wrapped")
            }
        }
        impl std::error::Error for Wrap {
            fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
                Some(&self.0)
            }
        }
        let e = Wrap(std::io::Error::from(std::io::ErrorKind::ConnectionRefused));
        assert!(refused(&e));
        let e = Wrap(std::io::Error::from(std::io::ErrorKind::ConnectionReset));
        assert!(!refused(&e));
    }
}
