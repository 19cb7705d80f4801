//! A deliberately broken build for the chaos harness (`chaos-tests/`), switched on only by the
//! environment variable `CHAOS_INJECT_BUG` holding the exact value
//! `stale-read:i-know-this-breaks-linearizability` (read once, at runtime start-up). Any other
//! value is ignored with a warning. When on, every node logs a loud error, and client state reads
//! (`GET /entities/{name}/{key}`) are served from the local state without the linearizable read
//! barrier and without forwarding to the leader: a follower or a deposed leader answers with
//! stale state. The harness's checkers must flag that; nothing else in perdure uses it.

use std::sync::OnceLock;

/// The variable, and the one value that turns the bug on.
const VAR: &str = "CHAOS_INJECT_BUG";
const STALE_READ: &str = "stale-read:i-know-this-breaks-linearizability";

/// Whether state reads skip the linearizable barrier (the injected bug).
pub(crate) fn stale_reads() -> bool {
    static ON: OnceLock<bool> = OnceLock::new();
    *ON.get_or_init(|| match std::env::var(VAR) {
        Ok(v) if v == STALE_READ => {
            tracing::error!(
                "!!! {VAR}={v}: THIS NODE IS DELIBERATELY BROKEN: state reads skip the \
                 linearizable barrier (a chaos-test switch; never use it outside chaos-tests) !!!"
            );
            true
        }
        Ok(v) => {
            tracing::warn!("{VAR}={v:?} is not a known chaos bug; ignored");
            false
        }
        Err(_) => false,
    })
}
