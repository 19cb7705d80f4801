//! The caller's deadline (the `grpc-timeout` header) and how long a long poll may hold a call
//! under it.
//!
//! tonic enforces `grpc-timeout` itself by answering `CANCELLED "Timeout expired"`, which the
//! SDKs do not map; their waits expect `DEADLINE_EXCEEDED`. So a long poll stops
//! [`MARGIN`] before the deadline and answers `DEADLINE_EXCEEDED` itself.

use std::time::Duration;
use tonic::metadata::MetadataMap;

/// How long before the caller's deadline a long poll gives up (halved for deadlines under
/// twice this): room for the answer to reach a busy client before tonic's own timeout does.
pub const MARGIN: Duration = Duration::from_millis(500);

/// Longest a long poll holds a call that carries no deadline.
pub const MAX_POLL: Duration = Duration::from_secs(300);

/// The `grpc-timeout` header's value (`<digits><unit>`, unit one of `H M S m u n`), if any and
/// well formed.
pub fn timeout(metadata: &MetadataMap) -> Option<Duration> {
    parse(metadata.get("grpc-timeout")?.to_str().ok()?)
}

fn parse(v: &str) -> Option<Duration> {
    if v.len() < 2 || v.len() > 9 {
        return None;
    }
    let (digits, unit) = v.split_at(v.len() - 1);
    let n: u64 = digits.parse().ok()?;
    Some(match unit {
        "H" => Duration::from_secs(n.checked_mul(3600)?),
        "M" => Duration::from_secs(n.checked_mul(60)?),
        "S" => Duration::from_secs(n),
        "m" => Duration::from_millis(n),
        "u" => Duration::from_micros(n),
        "n" => Duration::from_nanos(n),
        _ => return None,
    })
}

/// How long a long poll may hold a call with these `metadata`: [`MARGIN`] short of its
/// deadline, or [`MAX_POLL`] without one.
pub fn poll_budget(metadata: &MetadataMap) -> Duration {
    match timeout(metadata) {
        Some(t) if t >= MARGIN * 2 => (t - MARGIN).min(MAX_POLL),
        Some(t) => t / 2,
        None => MAX_POLL,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn meta(v: &str) -> MetadataMap {
        let mut m = MetadataMap::new();
        m.insert("grpc-timeout", v.parse().unwrap());
        m
    }

    #[test]
    fn every_unit_of_grpc_timeout_parses_and_garbage_does_not() {
        assert_eq!(parse("1H"), Some(Duration::from_secs(3600)));
        assert_eq!(parse("2M"), Some(Duration::from_secs(120)));
        assert_eq!(parse("3S"), Some(Duration::from_secs(3)));
        assert_eq!(parse("999m"), Some(Duration::from_millis(999)));
        assert_eq!(parse("5u"), Some(Duration::from_micros(5)));
        assert_eq!(parse("7n"), Some(Duration::from_nanos(7)));
        for bad in ["", "S", "12", "1x", "-1S", "123456789S"] {
            assert_eq!(parse(bad), None, "{bad}");
        }
    }

    #[test]
    fn a_long_poll_ends_a_margin_before_the_deadline() {
        assert_eq!(poll_budget(&meta("3000m")), Duration::from_millis(2500));
        assert_eq!(poll_budget(&meta("1000m")), Duration::from_millis(500));
        assert_eq!(poll_budget(&meta("300m")), Duration::from_millis(150));
        assert_eq!(poll_budget(&meta("1H")), MAX_POLL);
        assert_eq!(poll_budget(&MetadataMap::new()), MAX_POLL);
    }
}
