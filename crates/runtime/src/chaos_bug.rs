//! Deliberately broken builds for the chaos harness (`chaos-tests/`), switched on only by the
//! environment variable `CHAOS_INJECT_BUG` holding one of two exact values (read once, at
//! runtime start-up); any other value is ignored with a warning. When one is on, every node logs
//! a loud error. The harness's checkers must flag each; nothing else in perdure uses them.
//!
//! - `stale-read:i-know-this-breaks-linearizability`: client state reads
//!   (`GET /entities/{name}/{key}`) are served from the local state without the linearizable
//!   read barrier and without forwarding to the leader: a follower or a deposed leader answers
//!   with stale state.
//! - `duplicate-activity:i-know-this-breaks-exactly-once`: one in [`DUPLICATE_EVERY`]
//!   orchestration turns that record activity results records the first of them twice (two
//!   results for one scheduled task in the history; the replay engine ignores the second, so
//!   outputs stay right and only the history shows it).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::OnceLock;

/// The variable, and the values that turn a bug on.
const VAR: &str = "CHAOS_INJECT_BUG";
const STALE_READ: &str = "stale-read:i-know-this-breaks-linearizability";
const DUPLICATE_ACTIVITY: &str = "duplicate-activity:i-know-this-breaks-exactly-once";

/// One in this many turns with activity results records a result twice (the injected bug).
const DUPLICATE_EVERY: u64 = 10;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Bug {
    None,
    StaleRead,
    DuplicateActivity,
}

/// The injected bug, read once (logs loudly when one is on).
fn bug() -> Bug {
    static ON: OnceLock<Bug> = OnceLock::new();
    *ON.get_or_init(|| {
        let what = match std::env::var(VAR) {
            Ok(v) if v == STALE_READ => (
                Bug::StaleRead,
                v,
                "state reads skip the linearizable barrier",
            ),
            Ok(v) if v == DUPLICATE_ACTIVITY => (
                Bug::DuplicateActivity,
                v,
                "orchestration turns record some activity results twice",
            ),
            Ok(v) => {
                tracing::warn!("{VAR}={v:?} is not a known chaos bug; ignored");
                return Bug::None;
            }
            Err(_) => return Bug::None,
        };
        let (bug, v, effect) = what;
        tracing::error!(
            "!!! {VAR}={v}: THIS NODE IS DELIBERATELY BROKEN: {effect} (a chaos-test switch; \
             never use it outside chaos-tests) !!!"
        );
        bug
    })
}

/// Whether state reads skip the linearizable barrier (the injected `stale-read` bug).
pub(crate) fn stale_reads() -> bool {
    bug() == Bug::StaleRead
}

/// Whether this turn, which records activity results, records one of them twice (the injected
/// `duplicate-activity` bug: true for one in [`DUPLICATE_EVERY`] such turns, logged).
pub(crate) fn duplicate_activity() -> bool {
    static TURNS: AtomicU64 = AtomicU64::new(0);
    if bug() != Bug::DuplicateActivity {
        return false;
    }
    let dup = TURNS.fetch_add(1, Ordering::Relaxed) % DUPLICATE_EVERY == DUPLICATE_EVERY - 1;
    if dup {
        tracing::error!("{VAR}: recording an activity result twice (deliberately broken)");
    }
    dup
}
