//! The remote work this node issues, for the partitions it leads: work waiting for a worker,
//! and leases of work handed out. One per node; the workloads queue work with an [`Answer`]
//! saying where the worker's outcome goes.

use super::{
    Dispatched, Outcome, RemoteConfig, RemoteStats, RemoteWork, SessionKey, Token, WorkEvent,
    WorkFilter, WorkKind,
};
use crate::Error;
use perdure_types::NodeId;
use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};
use tokio::sync::{oneshot, Notify};

/// A session not heard from for this long has lost its leases (its node went away).
pub(crate) const SESSION_TTL: Duration = Duration::from_secs(20);

/// Where a job's outcome goes (implemented by the workloads).
pub(crate) trait Answer: Send + 'static {
    /// Nobody waits for the outcome any more (the instance task or actor is gone, the
    /// leadership ended): the job is dropped instead of dispatched.
    fn orphaned(&self) -> bool;
    /// The worker's outcome for `work` (of the work's kind).
    fn answer(self: Box<Self>, work: RemoteWork, outcome: Outcome);
}

/// An outcome awaited on a channel (a turn, an entity batch).
struct OneShot(oneshot::Sender<Outcome>);

impl Answer for OneShot {
    fn orphaned(&self) -> bool {
        self.0.is_closed()
    }

    fn answer(self: Box<Self>, _work: RemoteWork, outcome: Outcome) {
        // the waiter may have moved on (a leader change): its fence refuses then
        let _ = self.0.send(outcome);
    }
}

struct Job {
    work: RemoteWork,
    reply: Box<dyn Answer>,
    /// Handed out before (the next dispatch is a re-dispatch).
    handed: bool,
}

impl Job {
    fn orphaned(&self) -> bool {
        self.reply.orphaned()
    }
}

struct Lease {
    job: Job,
    salt: u32,
    session: SessionKey,
    until: Instant,
}

#[derive(Default)]
struct Inner {
    pending: VecDeque<Job>,
    leases: HashMap<u64, Lease>,
    next: u64,
    /// When each session fetched last.
    sessions: HashMap<SessionKey, Instant>,
    /// Sessions that ended (their worker went away), and when: a fetch of theirs still on its
    /// way is given nothing.
    ended: HashMap<SessionKey, Instant>,
}

/// The node's queue of remote work and its leases.
pub struct WorkQueue {
    me: NodeId,
    config: OnceLock<RemoteConfig>,
    inner: Mutex<Inner>,
    /// Work was queued (or given back).
    queued: Notify,
    pub(crate) stats: Arc<RemoteStats>,
}

impl std::fmt::Debug for WorkQueue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WorkQueue")
            .field("node", &self.me)
            .finish_non_exhaustive()
    }
}

impl WorkQueue {
    /// The queue of node `me`.
    pub fn new(me: NodeId) -> Self {
        Self {
            me,
            config: OnceLock::new(),
            inner: Mutex::new(Inner::default()),
            queued: Notify::new(),
            stats: Arc::default(),
        }
    }

    /// Remote workers are served from now on (names without a Rust function go to them).
    pub(crate) fn enable(&self, config: RemoteConfig) {
        let _ = self.config.set(config);
    }

    /// The settings, when remote workers are served.
    pub(crate) fn config(&self) -> Option<&RemoteConfig> {
        self.config.get()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn push(&self, job: Job) {
        self.lock().pending.push_back(job);
        self.queued.notify_waiters();
    }

    /// Queues `work`; the outcome goes to `answer`.
    pub(crate) fn submit(&self, work: RemoteWork, answer: Box<dyn Answer>) {
        self.push(Job {
            work,
            reply: answer,
            handed: false,
        });
    }

    /// Queues `work`; the receiver gets the outcome (closed when the work is withdrawn).
    pub(crate) fn ask(&self, work: RemoteWork) -> oneshot::Receiver<Outcome> {
        let (tx, rx) = oneshot::channel();
        self.submit(work, Box::new(OneShot(tx)));
        rx
    }

    /// Work waiting for a worker, by kind (in [`WorkKind::ALL`]'s order).
    pub(crate) fn pending(&self) -> [usize; 3] {
        let inner = self.lock();
        let mut n = [0; 3];
        for j in &inner.pending {
            n[j.work.kind() as usize] += 1;
        }
        n
    }

    /// Up to `max_orchestrators` turns and `max_activities` activities that `filter` passes,
    /// leased to `session`; waits up to `wait` for some when there are none. A call (even for
    /// nothing) tells the queue the session is alive.
    pub(crate) async fn fetch(
        &self,
        session: SessionKey,
        max_orchestrators: u32,
        max_activities: u32,
        filter: Option<&WorkFilter>,
        wait: Duration,
    ) -> Vec<Dispatched> {
        let until = tokio::time::Instant::now() + wait;
        loop {
            let queued = self.queued.notified();
            tokio::pin!(queued);
            queued.as_mut().enable();
            let got = self.take(session, max_orchestrators, max_activities, filter);
            if !got.is_empty() || (max_orchestrators == 0 && max_activities == 0) {
                return got;
            }
            if tokio::time::timeout_at(until, queued).await.is_err() {
                return Vec::new();
            }
        }
    }

    fn take(
        &self,
        session: SessionKey,
        max_orchestrators: u32,
        max_activities: u32,
        filter: Option<&WorkFilter>,
    ) -> Vec<Dispatched> {
        let lease_for = self.config().map_or(Duration::from_secs(300), |c| c.lease);
        let now = Instant::now();
        let mut inner = self.lock();
        self.expire(&mut inner, now);
        if inner.ended.contains_key(&session) {
            return Vec::new();
        }
        inner.sessions.insert(session, now);
        let (mut o, mut a, mut e) = (max_orchestrators, max_activities, max_orchestrators);
        let mut out = Vec::new();
        let mut kept = VecDeque::with_capacity(inner.pending.len());
        while let Some(job) = inner.pending.pop_front() {
            if job.orphaned() {
                continue;
            }
            let room = match job.work.kind() {
                WorkKind::Orchestrator => &mut o,
                WorkKind::Activity => &mut a,
                // entity batches count against the orchestrator limit (the SDK's third limit
                // is never sent)
                WorkKind::Entity => &mut e,
            };
            if *room == 0 || filter.is_some_and(|f| !f.accepts(&job.work)) {
                kept.push_back(job);
                continue;
            }
            *room -= 1;
            let kind = job.work.kind();
            self.stats.inc(
                kind,
                if job.handed {
                    WorkEvent::Redispatched
                } else {
                    WorkEvent::Dispatched
                },
            );
            inner.next += 1;
            let token = Token {
                node: self.me,
                lease: inner.next,
                salt: rand::random(),
            };
            out.push(Dispatched {
                token: token.to_string(),
                work: job.work.clone(),
            });
            inner.leases.insert(
                token.lease,
                Lease {
                    job,
                    salt: token.salt,
                    session,
                    until: now + lease_for,
                },
            );
            if o == 0 && a == 0 && e == 0 {
                break;
            }
        }
        kept.append(&mut inner.pending);
        inner.pending = kept;
        out
    }

    /// Gives back the work of leases past their time or of sessions gone silent.
    fn expire(&self, inner: &mut Inner, now: Instant) {
        inner
            .sessions
            .retain(|_, seen| now.duration_since(*seen) < SESSION_TTL);
        inner
            .ended
            .retain(|_, at| now.duration_since(*at) < 2 * SESSION_TTL);
        let gone: Vec<u64> = inner
            .leases
            .iter()
            .filter(|(_, l)| l.until <= now || !inner.sessions.contains_key(&l.session))
            .map(|(n, _)| *n)
            .collect();
        for n in gone {
            if let Some(l) = inner.leases.remove(&n) {
                tracing::info!(subject = %l.job.work.subject(), kind = l.job.work.kind().label(), "a worker's lease ended without a completion: the work is dispatched again");
                inner.pending.push_front(Job {
                    handed: true,
                    ..l.job
                });
            }
        }
    }

    /// Ends the lease `token` names, when it is of kind `kind` (any kind: `None`); a lease of
    /// another kind stands.
    fn lease(&self, token: &str, kind: Option<WorkKind>) -> Result<Lease, Error> {
        let t = Token::parse(token)
            .ok_or_else(|| Error::BadRequest(format!("malformed completion token {token:?}")))?;
        let mut inner = self.lock();
        match inner.leases.get(&t.lease) {
            Some(l) if t.node == self.me && l.salt == t.salt => {
                let held = l.job.work.kind();
                if let Some(k) = kind.filter(|k| *k != held) {
                    return Err(Error::BadRequest(format!(
                        "completion token {token:?} is for {} work, not {}",
                        held.label(),
                        k.label()
                    )));
                }
            }
            _ => return Err(Error::UnknownToken(token.to_string())),
        }
        Ok(inner.leases.remove(&t.lease).expect("checked above"))
    }

    /// Completes the work leased under `token` with `outcome`.
    pub(crate) fn complete(&self, token: &str, outcome: Outcome) -> Result<(), Error> {
        let lease = self.lease(token, Some(outcome.kind()))?;
        self.stats.inc(outcome.kind(), WorkEvent::Completed);
        lease.job.reply.answer(lease.job.work, outcome);
        Ok(())
    }

    /// Session `session` ended (its worker's stream closed): everything leased to it is queued
    /// again at once, and a fetch of it still on its way (a long poll forwarded from its node)
    /// gets nothing.
    pub(crate) fn end_session(&self, session: SessionKey) {
        let mut inner = self.lock();
        inner.sessions.remove(&session);
        inner.ended.insert(session, Instant::now());
        let theirs: Vec<u64> = inner
            .leases
            .iter()
            .filter(|(_, l)| l.session == session)
            .map(|(n, _)| *n)
            .collect();
        for n in theirs {
            if let Some(l) = inner.leases.remove(&n) {
                self.stats.inc(l.job.work.kind(), WorkEvent::Abandoned);
                inner.pending.push_front(Job {
                    handed: true,
                    ..l.job
                });
            }
        }
        drop(inner);
        self.queued.notify_waiters();
    }

    /// Gives the work leased under `token` back: it is dispatched again at once.
    pub(crate) fn abandon(&self, token: &str) -> Result<(), Error> {
        let lease = self.lease(token, None)?;
        self.stats.inc(lease.job.work.kind(), WorkEvent::Abandoned);
        self.lock().pending.push_front(Job {
            handed: true,
            ..lease.job
        });
        self.queued.notify_waiters();
        Ok(())
    }

    /// Withdraws the turns of `instance` waiting for a worker or held by one (a terminate
    /// arrived: the instance task, told so by its turn's receiver closing, starts over and
    /// ends the execution itself; a worker completing a withdrawn turn applies nothing).
    pub(crate) fn withdraw(&self, instance: &perdure_types::InstanceId) {
        let mut inner = self.lock();
        let is_turn = |w: &RemoteWork| {
            w.kind() == WorkKind::Orchestrator && w.instance_id() == Some(instance)
        };
        inner.pending.retain(|j| !is_turn(&j.work));
        inner.leases.retain(|_, l| !is_turn(&l.job.work));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use perdure_types::orchestration::TurnOutput;
    use perdure_types::InstanceId;

    fn work(name: &str) -> RemoteWork {
        RemoteWork::Orchestrator(super::super::OrchestratorWork {
            instance_id: InstanceId::new("i").unwrap(),
            execution_id: "e".into(),
            name: name.into(),
            version: None,
            past: vec![],
            new: vec![],
        })
    }

    const S: SessionKey = SessionKey { node: 1, id: 1 };

    #[tokio::test]
    async fn work_is_leased_completed_once_and_given_back_when_abandoned() {
        let q = WorkQueue::new(1);
        let rx = q.ask(work("A"));
        let got = q.fetch(S, 10, 10, None, Duration::ZERO).await;
        assert_eq!(got.len(), 1);
        // nothing else to hand out while it is leased
        assert!(q.fetch(S, 10, 10, None, Duration::ZERO).await.is_empty());
        q.abandon(&got[0].token).unwrap();
        // the abandoned token is spent; the work comes back under a new one
        assert!(matches!(
            q.abandon(&got[0].token),
            Err(Error::UnknownToken(_))
        ));
        let again = q.fetch(S, 10, 10, None, Duration::ZERO).await;
        assert_eq!(again.len(), 1);
        assert_ne!(again[0].token, got[0].token);
        assert_eq!(
            q.stats.get(WorkKind::Orchestrator, WorkEvent::Redispatched),
            1
        );
        // a wrong kind of outcome is refused and the lease stands
        assert!(matches!(
            q.complete(&again[0].token, Outcome::Activity(Ok(None))),
            Err(Error::BadRequest(_))
        ));
        let out = TurnOutput {
            actions: vec![],
            custom_status: Some("\"x\"".into()),
        };
        q.complete(&again[0].token, Outcome::Orchestrator(out.clone()))
            .unwrap();
        assert_eq!(rx.await.unwrap(), Outcome::Orchestrator(out));
        // completed once: the same token again, a forged salt, garbage
        assert!(matches!(
            q.complete(
                &again[0].token,
                Outcome::Orchestrator(TurnOutput::default())
            ),
            Err(Error::UnknownToken(_))
        ));
        let mut forged = Token::parse(&again[0].token).unwrap();
        forged.salt ^= 1;
        assert!(q.abandon(&forged.to_string()).is_err());
        assert!(matches!(q.abandon("nonsense"), Err(Error::BadRequest(_))));
    }

    #[tokio::test]
    async fn filters_and_capacity_choose_what_is_handed_out_and_orphans_are_dropped() {
        let q = WorkQueue::new(1);
        let _a = q.ask(work("A"));
        let b = q.ask(work("B"));
        let _c = q.ask(work("C"));
        let only_c = WorkFilter {
            orchestrations: vec![super::super::NameFilter {
                name: "C".into(),
                versions: vec![],
            }],
            ..Default::default()
        };
        let got = q.fetch(S, 10, 10, Some(&only_c), Duration::ZERO).await;
        assert_eq!(got.len(), 1);
        assert!(matches!(&got[0].work, RemoteWork::Orchestrator(o) if o.name == "C"));
        // B's instance task went away: B is never handed out
        drop(b);
        let got = q.fetch(S, 1, 0, None, Duration::ZERO).await;
        assert_eq!(got.len(), 1);
        assert!(matches!(&got[0].work, RemoteWork::Orchestrator(o) if o.name == "A"));
        assert!(q.fetch(S, 5, 5, None, Duration::ZERO).await.is_empty());
        assert_eq!(q.pending(), [0, 0, 0]);
    }

    #[tokio::test]
    async fn an_ended_session_gives_its_leases_back_and_gets_nothing_more() {
        let q = WorkQueue::new(1);
        let _a = q.ask(work("A"));
        let got = q.fetch(S, 1, 1, None, Duration::ZERO).await;
        assert_eq!(got.len(), 1);
        q.end_session(S);
        // a fetch of the ended session (one forwarded before it ended) gets nothing
        assert!(q.fetch(S, 1, 1, None, Duration::ZERO).await.is_empty());
        // another session gets the work at once
        let other = SessionKey { node: 2, id: 9 };
        let again = q.fetch(other, 1, 1, None, Duration::ZERO).await;
        assert_eq!(again.len(), 1);
        assert!(q
            .complete(&got[0].token, Outcome::Orchestrator(TurnOutput::default()))
            .is_err());
    }

    #[tokio::test]
    async fn a_fetch_waits_for_work_and_a_silent_session_loses_its_leases() {
        let q = Arc::new(WorkQueue::new(1));
        let q2 = q.clone();
        let waiter =
            tokio::spawn(async move { q2.fetch(S, 1, 1, None, Duration::from_secs(5)).await });
        tokio::time::sleep(Duration::from_millis(50)).await;
        let _rx = q.ask(work("A"));
        let got = waiter.await.unwrap();
        assert_eq!(got.len(), 1);
        // the session is silent past the TTL: its lease ends when anyone fetches
        {
            let mut inner = q.lock();
            *inner.sessions.get_mut(&S).unwrap() -= SESSION_TTL;
        }
        let other = SessionKey { node: 2, id: 7 };
        let again = q.fetch(other, 1, 1, None, Duration::ZERO).await;
        assert_eq!(again.len(), 1);
        assert!(q
            .complete(&got[0].token, Outcome::Orchestrator(TurnOutput::default()))
            .is_err());
    }
}
