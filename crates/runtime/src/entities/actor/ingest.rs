//! Stream records as an entity actor runs them: each is applied once per source position
//! (the entity's mark for that source), and the batch's command raises the marks it applied,
//! first, so a command whose mark does not rise applies nothing (see `entities/ingest.rs`).

use super::*;
use crate::entities::ingest::RecordOutcome;

/// A record for an entity that remote workers run: answered failed (subscriptions to such
/// types are refused when made; the type moved to workers since).
pub(super) fn refuse_remote(b: &mut Batch, w: Work) {
    if let Some(tx) = w.reply {
        b.replies.push((
            tx,
            Ok(Reply::Ingest(RecordOutcome::Failed(
                "the entity type is served by remote workers, which stream ingestion does not feed"
                    .into(),
            ))),
        ));
    }
}

impl EntityState {
    /// A stream record: skipped (answered `Duplicate`) at or below the entity's mark for its
    /// source, otherwise run like a signal, raising the batch's mark. Records of one source
    /// reach an entity in position order, so the mark says exactly which ones it applied.
    pub(super) fn ingest(&self, b: &mut Batch, w: Work, now: u64) {
        let WorkKind::Ingest { source, position } = &w.kind else {
            return;
        };
        let (source, position) = (source.clone(), *position);
        let mark = b
            .marks
            .get(&source)
            .or_else(|| self.marks.get(&source))
            .copied()
            .unwrap_or(0);
        let outcome = if position <= mark {
            RecordOutcome::Duplicate
        } else {
            if !b.marks.contains_key(&source) {
                b.other_bytes += 48 + source.len();
            }
            b.marks.insert(source, position);
            match self.execute(b, &w, now) {
                Ok(_) => RecordOutcome::Applied,
                Err(e) => RecordOutcome::Failed(e),
            }
        };
        if let Some(tx) = w.reply {
            b.replies.push((tx, Ok(Reply::Ingest(outcome))));
        }
    }

    /// The batch's raised marks as `SourceMark` ops (the first ops of its command).
    pub(super) fn mark_ops(&self, b: &Batch) -> Vec<Op> {
        b.marks
            .iter()
            .map(|(source, position)| Op::SourceMark {
                entity: self.entity.clone(),
                source: source.to_string(),
                position: *position,
            })
            .collect()
    }
}
