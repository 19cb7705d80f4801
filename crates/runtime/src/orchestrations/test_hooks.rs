//! Test-only switches of the orchestration runtime (`PERDURE_TEST_*`, read once): nothing else
//! uses them.
//!
//! - `PERDURE_TEST_ORCH_PANIC_PREFIX=P`: a step of an instance whose id starts with `P` panics
//!   (how the tests show that a step that keeps crashing is quarantined).

use perdure_types::InstanceId;
use std::sync::OnceLock;

/// Whether a step of `id` panics on purpose.
pub(crate) fn panics(id: &InstanceId) -> bool {
    static PREFIX: OnceLock<Option<String>> = OnceLock::new();
    PREFIX
        .get_or_init(|| {
            let p = std::env::var("PERDURE_TEST_ORCH_PANIC_PREFIX").ok();
            if let Some(p) = &p {
                tracing::warn!(prefix = %p, "PERDURE_TEST_ORCH_PANIC_PREFIX: steps of these instances panic (a test switch)");
            }
            p
        })
        .as_deref()
        .is_some_and(|p| id.as_str().starts_with(p))
}
