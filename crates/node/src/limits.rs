//! The process's open-files limit: raised at start, and the base of the HTTP connection cap.
//!
//! Every client connection, peer connection, WAL segment, snapshot and sled file takes a file
//! descriptor. At the usual default soft limit (1 024) about a thousand idle HTTP connections
//! were enough to make snapshot writes fail with EMFILE and stop every Raft group, so the node
//! raises its soft limit to the hard limit at start (what the administrator allows) and caps its
//! HTTP connections below it ([`default_max_connections`]).

use rustix::process::{getrlimit, setrlimit, Resource};

/// The open-files limit before and after [`raise_open_files_limit`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OpenFiles {
    /// The soft limit the process started with (`None`: unlimited).
    pub before: Option<u64>,
    /// The soft limit now.
    pub after: Option<u64>,
    /// The hard limit (the most the soft limit may be raised to).
    pub hard: Option<u64>,
}

/// Raises the soft open-files limit (`RLIMIT_NOFILE`) to the hard limit and says what it was
/// and is; on failure the limit stays as it was (and `after` says so).
pub fn raise_open_files_limit() -> OpenFiles {
    let lim = getrlimit(Resource::Nofile);
    let mut raised = lim;
    raised.current = lim.maximum;
    if raised.current != lim.current {
        if let Err(e) = setrlimit(Resource::Nofile, raised) {
            tracing::warn!(error = %e, "could not raise the open-files limit");
        }
    }
    OpenFiles {
        before: lim.current,
        after: getrlimit(Resource::Nofile).current,
        hard: lim.maximum,
    }
}

/// The soft open-files limit now (`None`: unlimited).
pub fn open_files_limit() -> Option<u64> {
    getrlimit(Resource::Nofile).current
}

/// Most HTTP connections when `http.max_connections` is not set: 10 000, or half the
/// open-files limit when that is lower (the other half is for storage and peers), at least 16.
pub fn default_max_connections(open_files: Option<u64>) -> u32 {
    let half = open_files.map_or(u64::MAX, |n| n / 2);
    half.clamp(16, 10_000) as u32
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_default_cap_leaves_half_the_files_for_storage() {
        assert_eq!(default_max_connections(Some(1024)), 512);
        assert_eq!(default_max_connections(Some(1 << 20)), 10_000);
        assert_eq!(default_max_connections(None), 10_000);
        assert_eq!(default_max_connections(Some(10)), 16);
    }

    #[test]
    fn raising_never_lowers_the_limit() {
        let before = open_files_limit();
        let r = raise_open_files_limit();
        assert_eq!(r.before, before);
        assert!(r.after >= r.before || r.after.is_none());
        if r.hard.is_some() {
            assert_eq!(r.after, r.hard);
        }
    }
}
