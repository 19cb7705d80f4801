//! The client RPCs (instance management and entities) over the runtime's facades
//! ([`Orchestrations`], [`Entities`]), with the protocol's semantics where they differ from the
//! facade's (section 6 of the protocol reference):
//!
//! - a start without a reuse policy refuses any existing id (`ALREADY_EXISTS`);
//! - `GetInstance` answers `exists = false` for an unknown id; input and output only when asked;
//! - the waits hold the call until the condition holds and answer `DEADLINE_EXCEEDED` just
//!   before the caller's deadline ([`crate::deadline`]), never an early non-final state;
//! - raising an event on a finished instance, terminating an unknown or finished one, suspending
//!   a suspended one and resuming one that is not suspended are accepted and change nothing;
//! - purge of one instance that is unknown or not finished removes nothing (count 0);
//! - `ListInstanceIds` pages finished instances by completion time, its token holding the last id.
//!
//! Payloads are JSON text on the wire; the facade takes JSON values, so they are parsed here
//! (a payload that is not JSON is `INVALID_ARGUMENT`).

mod entities;

use crate::convert::{event_to_proto, millis, state_to_proto, statuses_from_proto, text};
use crate::proto;
use crate::status::from_runtime;
use perdure_runtime::entities::SignalRequest;
use perdure_runtime::orchestrations::{
    InstanceFilter, InstanceStatus, Query, StartRequest, MAX_QUERY_PAGE,
};
use perdure_runtime::{Entities, Error, Orchestrations};
use perdure_types::command::Millis;
use perdure_types::orchestration::{InstanceRecord, ReusePolicy, RuntimeStatus};
use perdure_types::EntityId;
use serde_json::Value;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;
use tonic::Status;

/// Events per `HistoryChunk` of `StreamInstanceHistory`.
pub const HISTORY_CHUNK_EVENTS: usize = 200;
/// Page size of a query or an id listing that asks for none (or for 0).
pub const DEFAULT_PAGE: u32 = 100;
/// Most finished instances one `ListInstanceIds` page sorts (it reads them all: the instances
/// table has no completion-time index yet).
pub const LIST_IDS_SCAN_CAP: usize = 100_000;
/// First and longest pause between two reads of `WaitForInstanceStart`.
const START_POLL: (Duration, Duration) = (Duration::from_millis(20), Duration::from_millis(500));

/// The client RPCs of one node.
#[derive(Debug, Clone)]
pub struct ClientApi {
    orchestrations: Arc<Orchestrations>,
    entities: Arc<Entities>,
    stopping: watch::Receiver<bool>,
}

/// The JSON text `s` (absent when empty) as a value for the facade.
fn json(what: &str, s: Option<String>) -> Result<Option<Value>, Status> {
    text(s)
        .map(|t| {
            serde_json::from_str(&t)
                .map_err(|e| Status::invalid_argument(format!("{what} is not JSON: {e}")))
        })
        .transpose()
}

/// The runtime's codes the protocol answers differently from their kind (matched by code, so
/// that an error forwarded from another node's leader, [`Error::Remote`], matches too).
const NOT_FOUND: &str = "instance_not_found";
const FINISHED: &str = "instance_finished";
const STATE: &str = "instance_state";

fn is(e: &Error, code: &str) -> bool {
    e.code() == code
}

fn get_response(s: InstanceStatus, payloads: bool) -> proto::GetInstanceResponse {
    proto::GetInstanceResponse {
        exists: true,
        orchestration_state: Some(state_to_proto(&s.record, payloads)),
    }
}

fn not_exists() -> proto::GetInstanceResponse {
    proto::GetInstanceResponse {
        exists: false,
        orchestration_state: None,
    }
}

fn deadline_exceeded(id: &str, what: &str, waited: Duration) -> Status {
    Status::deadline_exceeded(format!(
        "orchestration instance {id:?} did not {what} within {} ms (the call's deadline)",
        waited.as_millis()
    ))
}

impl ClientApi {
    /// The client RPCs over `orchestrations` and `entities`; long polls end (`UNAVAILABLE`) once
    /// `stopping` turns true.
    pub fn new(
        orchestrations: Arc<Orchestrations>,
        entities: Arc<Entities>,
        stopping: watch::Receiver<bool>,
    ) -> Self {
        Self {
            orchestrations,
            entities,
            stopping,
        }
    }

    /// Completes once the node is stopping.
    async fn stopped(&self) {
        let mut rx = self.stopping.clone();
        let _ = rx.wait_for(|s| *s).await;
    }

    /// `StartInstance`.
    pub async fn start(
        &self,
        r: proto::CreateInstanceRequest,
    ) -> Result<proto::CreateInstanceResponse, Status> {
        let policy = ReusePolicy {
            replaceable: r
                .orchestration_id_reuse_policy
                .map(|p| statuses_from_proto(&p.replaceable_status))
                .unwrap_or_default(),
            ignore_if_running: false,
        };
        let started = self
            .orchestrations
            .start(StartRequest {
                name: r.name,
                instance_id: Some(r.instance_id).filter(|s| !s.is_empty()),
                input: json("the input", r.input)?,
                scheduled_start: r.scheduled_start_timestamp.as_ref().map(millis),
                policy,
                version: text(r.version),
            })
            .await
            .map_err(|e| from_runtime(&e))?;
        Ok(proto::CreateInstanceResponse {
            instance_id: started.instance_id.as_str().to_string(),
        })
    }

    /// `GetInstance`.
    pub async fn get(
        &self,
        r: proto::GetInstanceRequest,
    ) -> Result<proto::GetInstanceResponse, Status> {
        match self.orchestrations.status(&r.instance_id, false).await {
            Ok(s) => Ok(get_response(s, r.get_inputs_and_outputs)),
            Err(e) if is(&e, NOT_FOUND) => Ok(not_exists()),
            Err(e) => Err(from_runtime(&e)),
        }
    }

    /// `WaitForInstanceCompletion`: holds the call until the instance is finished, for at most
    /// `budget`.
    pub async fn wait_completion(
        &self,
        r: proto::GetInstanceRequest,
        budget: Duration,
    ) -> Result<proto::GetInstanceResponse, Status> {
        let until = tokio::time::Instant::now() + budget;
        loop {
            let left = until.saturating_duration_since(tokio::time::Instant::now());
            let wait = self.orchestrations.wait(&r.instance_id, left, false);
            let status = tokio::select! {
                s = wait => s,
                () = self.stopped() => return Err(Status::unavailable("the node is shutting down")),
            };
            return match status {
                Ok(s) if s.record.status.is_terminal() => {
                    Ok(get_response(s, r.get_inputs_and_outputs))
                }
                Ok(_) => Err(deadline_exceeded(&r.instance_id, "finish", budget)),
                Err(e) if is(&e, NOT_FOUND) => Ok(not_exists()),
                Err(e) => {
                    let status = from_runtime(&e);
                    // an election (a leader moving, a node restarting) is waited out within the
                    // caller's deadline: the SDKs do not retry a wait themselves
                    let pause = Duration::from_millis(100);
                    if status.code() == tonic::Code::Unavailable
                        && tokio::time::Instant::now() + pause < until
                    {
                        tokio::time::sleep(pause).await;
                        continue;
                    }
                    Err(status)
                }
            };
        }
    }

    /// `WaitForInstanceStart`: holds the call until the instance is no longer pending, for at
    /// most `budget` (the facade has no wait for this: its status is read with a growing pause).
    pub async fn wait_start(
        &self,
        r: proto::GetInstanceRequest,
        budget: Duration,
    ) -> Result<proto::GetInstanceResponse, Status> {
        let until = tokio::time::Instant::now() + budget;
        let mut pause = START_POLL.0;
        loop {
            // each read bounded by what is left: the answer is ours, never tonic's timeout
            let read = self.orchestrations.status(&r.instance_id, false);
            let s = match tokio::time::timeout_at(until, read).await {
                Err(_) => return Err(deadline_exceeded(&r.instance_id, "start", budget)),
                Ok(Ok(s)) => s,
                Ok(Err(e)) if is(&e, NOT_FOUND) => return Ok(not_exists()),
                Ok(Err(e)) => return Err(from_runtime(&e)),
            };
            if s.record.status != RuntimeStatus::Pending {
                return Ok(get_response(s, r.get_inputs_and_outputs));
            }
            let now = tokio::time::Instant::now();
            if now >= until {
                return Err(deadline_exceeded(&r.instance_id, "start", budget));
            }
            tokio::select! {
                () = tokio::time::sleep(pause.min(until - now)) => {}
                () = self.stopped() => return Err(Status::unavailable("the node is shutting down")),
            }
            pause = (pause * 2).min(START_POLL.1);
        }
    }

    /// `RaiseEvent`: `NOT_FOUND` for an unknown instance; a finished one drops it.
    pub async fn raise_event(
        &self,
        r: proto::RaiseEventRequest,
    ) -> Result<proto::RaiseEventResponse, Status> {
        let data = json("the event data", r.input)?;
        match self
            .orchestrations
            .raise_event(&r.instance_id, &r.name, data)
            .await
        {
            Ok(()) => Ok(proto::RaiseEventResponse {}),
            Err(e) if is(&e, FINISHED) => Ok(proto::RaiseEventResponse {}),
            Err(e) => Err(from_runtime(&e)),
        }
    }

    /// `TerminateInstance`: an unknown or finished instance is left as it is.
    pub async fn terminate(
        &self,
        r: proto::TerminateRequest,
    ) -> Result<proto::TerminateResponse, Status> {
        let output = json("the output", r.output)?;
        match self
            .orchestrations
            .terminate(&r.instance_id, output, r.recursive)
            .await
        {
            Ok(()) => Ok(proto::TerminateResponse {}),
            Err(e) if is(&e, FINISHED) || is(&e, NOT_FOUND) => Ok(proto::TerminateResponse {}),
            Err(e) => Err(from_runtime(&e)),
        }
    }

    /// The status of an instance that must exist.
    async fn record(&self, id: &str) -> Result<InstanceRecord, Status> {
        self.orchestrations
            .status(id, false)
            .await
            .map(|s| s.record)
            .map_err(|e| from_runtime(&e))
    }

    /// `SuspendInstance`: `NOT_FOUND` for an unknown instance; a suspended one stays as it is.
    pub async fn suspend(
        &self,
        r: proto::SuspendRequest,
    ) -> Result<proto::SuspendResponse, Status> {
        if self.record(&r.instance_id).await?.status == RuntimeStatus::Suspended {
            return Ok(proto::SuspendResponse {});
        }
        self.orchestrations
            .suspend(&r.instance_id, text(r.reason))
            .await
            .map_err(|e| from_runtime(&e))?;
        Ok(proto::SuspendResponse {})
    }

    /// `ResumeInstance`: `NOT_FOUND` for an unknown instance; one that is not suspended stays as
    /// it is (the SDK fails an orchestration that sees a resume while not suspended).
    pub async fn resume(&self, r: proto::ResumeRequest) -> Result<proto::ResumeResponse, Status> {
        if self.record(&r.instance_id).await?.status != RuntimeStatus::Suspended {
            return Ok(proto::ResumeResponse {});
        }
        self.orchestrations
            .resume(&r.instance_id, text(r.reason))
            .await
            .map_err(|e| from_runtime(&e))?;
        Ok(proto::ResumeResponse {})
    }

    /// `RewindInstance`: only a failed instance (`NOT_FOUND`, `FAILED_PRECONDITION` otherwise).
    pub async fn rewind(
        &self,
        r: proto::RewindInstanceRequest,
    ) -> Result<proto::RewindInstanceResponse, Status> {
        self.orchestrations
            .rewind(&r.instance_id, text(r.reason))
            .await
            .map_err(|e| from_runtime(&e))?;
        Ok(proto::RewindInstanceResponse {})
    }

    /// `RestartInstance`: only a finished instance (`NOT_FOUND`, `FAILED_PRECONDITION`
    /// otherwise), under its id or a new one.
    pub async fn restart(
        &self,
        r: proto::RestartInstanceRequest,
    ) -> Result<proto::RestartInstanceResponse, Status> {
        let record = self.record(&r.instance_id).await?;
        if !record.status.is_terminal() {
            return Err(Status::failed_precondition(format!(
                "orchestration instance {:?} is {}: only a completed, failed or terminated instance is restarted",
                r.instance_id, record.status
            )));
        }
        let started = self
            .orchestrations
            .restart(&r.instance_id, r.restart_with_new_instance_id)
            .await
            .map_err(|e| from_runtime(&e))?;
        Ok(proto::RestartInstanceResponse {
            instance_id: started.instance_id.as_str().to_string(),
        })
    }

    /// `PurgeInstances`: one instance (unknown or not finished: 0), or every finished one a
    /// filter selects (cut short at the filter's `timeout`: `isComplete = false`).
    pub async fn purge(
        &self,
        r: proto::PurgeInstancesRequest,
    ) -> Result<proto::PurgeInstancesResponse, Status> {
        use proto::purge_instances_request::Request;
        let answer = |n: u64, complete: bool| proto::PurgeInstancesResponse {
            deleted_instance_count: n.min(i32::MAX as u64) as i32,
            is_complete: Some(complete),
        };
        match r.request {
            Some(Request::InstanceId(id)) => {
                match self.orchestrations.purge(&id, r.recursive).await {
                    Ok(n) => Ok(answer(n, true)),
                    Err(e) if is(&e, NOT_FOUND) || is(&e, STATE) => Ok(answer(0, true)),
                    Err(e) => Err(from_runtime(&e)),
                }
            }
            Some(Request::PurgeInstanceFilter(f)) => {
                let filter = InstanceFilter {
                    statuses: statuses_from_proto(&f.runtime_status),
                    created_from: f.created_time_from.as_ref().map(millis),
                    created_to: f.created_time_to.as_ref().map(millis),
                    ..Default::default()
                };
                let timeout = f
                    .timeout
                    .and_then(|d| Duration::try_from(d).ok())
                    .filter(|d| !d.is_zero());
                let purge = self.orchestrations.purge_where(filter);
                let n = match timeout {
                    Some(t) => match tokio::time::timeout(t, purge).await {
                        Ok(n) => n,
                        // what was purged by then is not counted: the facade answers at the end
                        Err(_) => return Ok(answer(0, false)),
                    },
                    None => purge.await,
                };
                Ok(answer(n.map_err(|e| from_runtime(&e))?, true))
            }
            None => Err(Status::invalid_argument(
                "a purge names an instanceId or a purgeInstanceFilter",
            )),
        }
    }

    /// `QueryInstances`: a page of `maxInstanceCount` (at most the facade's page) and the token
    /// of the next.
    pub async fn query(
        &self,
        r: proto::QueryInstancesRequest,
    ) -> Result<proto::QueryInstancesResponse, Status> {
        let q = r.query.unwrap_or_default();
        let page_size = match q.max_instance_count {
            n if n <= 0 => DEFAULT_PAGE,
            n => (n as u32).min(MAX_QUERY_PAGE),
        };
        let page = self
            .orchestrations
            .query(Query {
                filter: InstanceFilter {
                    statuses: statuses_from_proto(&q.runtime_status),
                    created_from: q.created_time_from.as_ref().map(millis),
                    created_to: q.created_time_to.as_ref().map(millis),
                    prefix: text(q.instance_id_prefix),
                    poisoned: false,
                },
                page_size,
                continuation: text(q.continuation_token),
            })
            .await
            .map_err(|e| from_runtime(&e))?;
        Ok(proto::QueryInstancesResponse {
            orchestration_state: page
                .instances
                .iter()
                .map(|r| state_to_proto(r, q.fetch_inputs_and_outputs))
                .collect(),
            continuation_token: page.continuation,
        })
    }

    /// `ListInstanceIds`: finished instances by completion time then id, filtered on completion
    /// time; the token is `<completed ms>|<last id>`, absent on the last page.
    pub async fn list_ids(
        &self,
        r: proto::ListInstanceIdsRequest,
    ) -> Result<proto::ListInstanceIdsResponse, Status> {
        let wanted = statuses_from_proto(&r.runtime_status);
        let statuses: Vec<RuntimeStatus> = RuntimeStatus::ALL
            .into_iter()
            .filter(|s| s.is_terminal() && (wanted.is_empty() || wanted.contains(s)))
            .collect();
        if statuses.is_empty() {
            return Ok(proto::ListInstanceIdsResponse::default());
        }
        let from = r.completed_time_from.as_ref().map(millis);
        let to = r.completed_time_to.as_ref().map(millis);
        let after = match text(r.last_instance_key) {
            None => None,
            Some(t) => Some(parse_list_token(&t).ok_or_else(|| {
                Status::invalid_argument(format!("invalid lastInstanceKey {t:?}"))
            })?),
        };
        let mut done: Vec<(Millis, String)> = Vec::new();
        let mut continuation = None;
        loop {
            let page = self
                .orchestrations
                .query(Query {
                    filter: InstanceFilter {
                        statuses: statuses.clone(),
                        ..Default::default()
                    },
                    page_size: MAX_QUERY_PAGE,
                    continuation,
                })
                .await
                .map_err(|e| from_runtime(&e))?;
            done.extend(page.instances.into_iter().filter_map(|r| {
                let at = r.completed_at.unwrap_or(r.updated_at);
                (from.is_none_or(|f| at >= f) && to.is_none_or(|t| at < t))
                    .then(|| (at, r.instance_id.as_str().to_string()))
            }));
            if done.len() > LIST_IDS_SCAN_CAP {
                return Err(Status::resource_exhausted(format!(
                    "more than {LIST_IDS_SCAN_CAP} finished instances match; narrow the completion-time range"
                )));
            }
            continuation = page.continuation;
            if continuation.is_none() {
                break;
            }
        }
        done.sort();
        let start = after.map_or(0, |a| done.partition_point(|x| *x <= a));
        let size = match r.page_size {
            n if n <= 0 => DEFAULT_PAGE as usize,
            n => n as usize,
        };
        let page: Vec<(Millis, String)> = done[start..].iter().take(size).cloned().collect();
        let more = start + page.len() < done.len();
        Ok(proto::ListInstanceIdsResponse {
            last_instance_key: page
                .last()
                .filter(|_| more)
                .map(|(at, id)| format!("{at}|{id}")),
            instance_ids: page.into_iter().map(|(_, id)| id).collect(),
        })
    }

    /// `StreamInstanceHistory`: the current execution's events in chunks
    /// ([`HISTORY_CHUNK_EVENTS`]); `NOT_FOUND` for an unknown instance or another execution.
    pub async fn history(
        &self,
        r: proto::StreamInstanceHistoryRequest,
    ) -> Result<Vec<proto::HistoryChunk>, Status> {
        let s = self
            .orchestrations
            .status(&r.instance_id, true)
            .await
            .map_err(|e| from_runtime(&e))?;
        if let Some(x) = text(r.execution_id) {
            if x != s.record.execution_id {
                return Err(Status::not_found(format!(
                    "orchestration instance {:?} has no execution {x:?} (its current one is {:?})",
                    r.instance_id, s.record.execution_id
                )));
            }
        }
        let events = s.history.unwrap_or_default();
        Ok(events
            .chunks(HISTORY_CHUNK_EVENTS)
            .map(|c| proto::HistoryChunk {
                events: c
                    .iter()
                    .map(|e| event_to_proto(e, &r.instance_id))
                    .collect(),
            })
            .collect())
    }
}

/// Reads a `ListInstanceIds` token, `<completed ms>|<instance id>`.
fn parse_list_token(t: &str) -> Option<(Millis, String)> {
    let (at, id) = t.split_once('|')?;
    Some((at.parse().ok()?, id.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn list_tokens_hold_the_completion_time_and_the_last_id() {
        assert_eq!(
            parse_list_token("1700000000000|a|b"),
            Some((1_700_000_000_000, "a|b".into()))
        );
        assert_eq!(parse_list_token("x|a"), None);
        assert_eq!(parse_list_token("17"), None);
    }

    #[test]
    fn payloads_must_be_json_and_empty_is_absent() {
        assert_eq!(json("x", Some(String::new())).unwrap(), None);
        assert_eq!(
            json("x", Some("[1]".into())).unwrap(),
            Some(serde_json::json!([1]))
        );
        let e = json("the input", Some("{".into())).unwrap_err();
        assert_eq!(e.code(), tonic::Code::InvalidArgument);
        assert!(e.message().starts_with("the input is not JSON"), "{e}");
    }
}
