//! Reading the instances table: records, histories, work items, listings and counts (what the
//! runtime and the metrics read; the ops that write it are in `mod.rs`).

use super::keys;
use crate::state::PartitionState;
use crate::{Error, Result};
use perdure_types::command::{Millis, WorkItem};
use perdure_types::orchestration::{HistoryEvent, InstanceRecord, RuntimeStatus};
use perdure_types::InstanceId;
use std::collections::BTreeMap;

/// Read access to a partition's orchestration instances (see [`PartitionState::instances`]).
#[derive(Debug, Clone, Copy)]
pub struct InstancesTable<'a> {
    pub(in crate::state) state: &'a PartitionState,
}

impl InstancesTable<'_> {
    fn codec_error(&self, source: perdure_types::codec::Error) -> Error {
        Error::Codec {
            path: self.state.tree.path().to_path_buf(),
            source,
        }
    }

    /// An instance's status record.
    pub fn get(&self, instance: &InstanceId) -> Result<Option<InstanceRecord>> {
        self.state
            .tree
            .get(&keys::instance(instance))?
            .map(|v| self.state.decode(&v))
            .transpose()
    }

    /// The current execution's history from event `from` (0 is the first), at most `limit`
    /// events, in order.
    pub fn history(
        &self,
        instance: &InstanceId,
        from: u32,
        limit: usize,
    ) -> Result<Vec<HistoryEvent>> {
        let prefix = keys::instance_history_prefix(instance);
        let start = keys::instance_history(instance, from);
        self.state
            .tree
            .range(&start, &keys::prefix_end(&prefix), limit)?
            .into_iter()
            .map(|(_, v)| HistoryEvent::decode(&v).map_err(|e| self.codec_error(e)))
            .collect()
    }

    /// An instance's pending work items, by task id.
    pub fn work_items(&self, instance: &InstanceId) -> Result<Vec<WorkItem>> {
        let prefix = keys::instance_work_prefix(instance);
        self.state
            .tree
            .scan_prefix(&prefix, usize::MAX)?
            .into_iter()
            .map(|(_, v)| self.state.decode(&v))
            .collect()
    }

    /// Instances holding work items (each once), in id order, after `after`, at most `limit`:
    /// whose activities a new leader dispatches again.
    pub fn with_work_items(
        &self,
        after: Option<&InstanceId>,
        limit: usize,
    ) -> Result<Vec<InstanceId>> {
        let mut out = Vec::new();
        let mut start = match after {
            Some(a) => keys::prefix_end(&keys::instance_work_prefix(a)),
            None => keys::INSTANCE_WORK_ALL.to_vec(),
        };
        let end = keys::prefix_end(keys::INSTANCE_WORK_ALL);
        while out.len() < limit {
            let Some((k, _)) = self.state.tree.range(&start, &end, 1)?.pop() else {
                break;
            };
            let Some((id, past)) = keys::instance_work_owner_of(&k) else {
                break;
            };
            match InstanceId::new(&id) {
                Ok(id) => out.push(id),
                Err(e) => tracing::warn!(key = %id, error = %e, "unreadable work item key"),
            }
            // skip past every work item of this instance
            start = past;
        }
        Ok(out)
    }

    /// Records in instance-id order after `after` that pass `filter`, examining at most
    /// `scan_limit` records (at least one); with the id to continue after, `None` once the table
    /// is exhausted.
    pub fn list(
        &self,
        after: Option<&InstanceId>,
        scan_limit: usize,
        filter: impl Fn(&InstanceRecord) -> bool,
    ) -> Result<(Vec<InstanceRecord>, Option<InstanceId>)> {
        let scan_limit = scan_limit.max(1);
        let start = match after {
            Some(a) => keys::instance_after(a),
            None => keys::INSTANCES_ALL.to_vec(),
        };
        let end = keys::prefix_end(keys::INSTANCES_ALL);
        // one more than examined: whether the table goes on
        let mut pairs = self
            .state
            .tree
            .range(&start, &end, scan_limit.saturating_add(1))?;
        let more = pairs.len() > scan_limit;
        pairs.truncate(scan_limit);
        let mut out = Vec::new();
        let mut last = None;
        for (_, v) in pairs {
            let record: InstanceRecord = self.state.decode(&v)?;
            // a record's key is its own id's (`start` and turns write it so)
            last = Some(record.instance_id.clone());
            if filter(&record) {
                out.push(record);
            }
        }
        let next = if more { last } else { None };
        Ok((out, next))
    }

    /// Instances of this partition, counted up to `cap` (for metrics: bounded work at scrape
    /// time).
    pub fn count(&self, cap: usize) -> usize {
        self.state
            .tree
            .count_prefix(keys::INSTANCES_ALL, cap)
            .unwrap_or(0)
    }

    /// Pending activity work items of every instance of this partition, counted up to `cap` (for
    /// metrics: bounded work at scrape time).
    pub fn count_work_items(&self, cap: usize) -> usize {
        self.state
            .tree
            .count_prefix(keys::INSTANCE_WORK_ALL, cap)
            .unwrap_or(0)
    }

    /// Instances by status, over at most `cap` records in id order (for metrics: bounded work at
    /// scrape time).
    pub fn count_by_status(&self, cap: usize) -> Result<BTreeMap<RuntimeStatus, u64>> {
        let mut out = BTreeMap::new();
        self.state
            .tree
            .for_each_value(keys::INSTANCES_ALL, cap, |v| {
                let record: InstanceRecord = self.state.decode(v)?;
                *out.entry(record.status).or_insert(0) += 1;
                Ok(())
            })?;
        Ok(out)
    }

    /// Instances that finished before `before`, oldest first, at most `limit`: `(completed_at,
    /// id)`.
    pub fn finished_before(
        &self,
        before: Millis,
        limit: usize,
    ) -> Result<Vec<(Millis, InstanceId)>> {
        let end = keys::instances_finished_before(before);
        let mut out = Vec::new();
        for (k, _) in self
            .state
            .tree
            .range(keys::INSTANCES_FINISHED_ALL, &end, limit)?
        {
            let Some((at, id)) = keys::instance_finished_of(&k) else {
                continue;
            };
            match InstanceId::new(&id) {
                Ok(id) => out.push((at, id)),
                Err(e) => tracing::warn!(key = %id, error = %e, "unreadable finished instance key"),
            }
        }
        Ok(out)
    }
}
