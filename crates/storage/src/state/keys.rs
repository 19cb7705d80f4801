//! Every key layout of a partition's tree: the only code that builds or parses raw key bytes.
//!
//! The first byte is the table's namespace; integers are big-endian so keys sort numerically;
//! `E` is an entity's canonical id `@name@key`, which never holds a NUL byte; `iid` is an
//! orchestration instance id's bytes, which never hold a control character (so `0x00` ends it).
//! Under `'h'` (orchestration instances) the second byte names the sub-table.
//!
//! | key | value | table | what |
//! |---|---|---|---|
//! | `0x00 "applied"` | codec(LogId) | (apply loop) | last applied log id |
//! | `0x00 "membership"` | codec(StoredMembership) | (apply loop) | last applied membership |
//! | `0x00 "inbox_seq"` | u64 | inbox | last assigned inbox number |
//! | `0x00 "timer_seq"` | u64 | timers | last assigned timer number |
//! | `0x00 "ids_count"` | u64 | ids | how many idempotency ids are remembered |
//! | `'e' E` | bytes | entities | entity state |
//! | `'i' E 0x00 seq` | bytes | inbox | inbox message of an entity |
//! | `'r' source` | u64 | inbox | highest sequence number received from partition `source` |
//! | `'o' dest seq` | bytes | outbox | outbox message for partition `dest` |
//! | `'O' dest` | u64 | outbox | last outbox sequence number for `dest` |
//! | `'k' E 0x00 id` | u64 expiry | ids | remembered idempotency id |
//! | `'K' expiry E 0x00 id` | empty | ids | the same, ordered by expiry |
//! | `'t' due id` | codec((EntityId, bytes)) | timers | scheduled message |
//! | `'l' E` | codec(LockHolder) | locks | the critical section holding an entity's lock |
//! | `'h' 'I' iid` | codec(InstanceRecord) | instances | an instance's status record |
//! | `'h' 'E' iid 0x00 seq(u32)` | codec(HistoryEvent) | instances | event `seq` (from 0) of the current execution's history |
//! | `'h' 'A' iid 0x00 task(u32)` | codec(WorkItem) | instances | pending activity work item |
//! | `'h' 'T' iid 0x00 task(u32)` | codec((u64, u64)) | instances | a durable timer of the instance: the `(due, id)` of its `'t'` key |
//! | `'h' 'R' completed_at iid` | empty | instances | finished instance, by completion time (retention) |
//! | `'m' E 0x00 source` | u64 | ingest | the highest position of source partition `source` the entity applied (its mark) |
//! | `'s' source` | codec(CheckpointState) | ingest | a source partition's checkpoint on its home partition |
//! | `'d' source 0x00 position` | codec(DeadLetter) | ingest | a record of `source` that did not map |
//!
//! This layout is the on-disk format (snapshots copy the tree's pairs verbatim): the test vectors
//! at the bottom pin every key's bytes.

use perdure_types::{EntityId, InstanceId, Target};

/// Last applied log id.
pub const APPLIED: &[u8] = b"\x00applied";
/// Last applied membership.
pub const MEMBERSHIP: &[u8] = b"\x00membership";
/// Last assigned inbox sequence number (one counter over every entity of the partition).
pub const INBOX_SEQ: &[u8] = b"\x00inbox_seq";
/// Last assigned timer id.
pub const TIMER_SEQ: &[u8] = b"\x00timer_seq";
/// How many idempotency ids the partition remembers (absent in trees written before it was
/// kept: counted from 0, so ids remembered then are not counted until they expire).
pub const IDS_COUNT: &[u8] = b"\x00ids_count";

const ENTITY: u8 = b'e';
const INBOX: u8 = b'i';
const RECEIVED: u8 = b'r';
const OUTBOX: u8 = b'o';
const OUTBOX_LAST: u8 = b'O';
const ID: u8 = b'k';
const ID_BY_EXPIRY: u8 = b'K';
const TIMER: u8 = b't';
const LOCK: u8 = b'l';
const INSTANCES: u8 = b'h';
const INSTANCE_RECORD: u8 = b'I';
const INSTANCE_HISTORY: u8 = b'E';
const INSTANCE_WORK: u8 = b'A';
const INSTANCE_TIMER: u8 = b'T';
const INSTANCE_FINISHED: u8 = b'R';
const MARK: u8 = b'm';
const CHECKPOINT: u8 = b's';
const DEAD_LETTER: u8 = b'd';

fn with(ns: u8, parts: &[&[u8]]) -> Vec<u8> {
    let mut k = Vec::with_capacity(1 + parts.iter().map(|p| p.len()).sum::<usize>());
    k.push(ns);
    for p in parts {
        k.extend_from_slice(p);
    }
    k
}

/// A big-endian integer from the last (at most) eight bytes of `v`; shorter input is
/// zero-extended. Counters are stored as values in this form too.
pub fn u64_of(v: &[u8]) -> u64 {
    let mut b = [0u8; 8];
    let n = v.len().min(8);
    b[8 - n..].copy_from_slice(&v[v.len() - n..]);
    u64::from_be_bytes(b)
}

/// The key just past every key starting with `prefix`.
pub fn prefix_end(prefix: &[u8]) -> Vec<u8> {
    let mut end = prefix.to_vec();
    while let Some(last) = end.pop() {
        if last < 0xff {
            end.push(last + 1);
            return end;
        }
    }
    vec![0xff; prefix.len() + 1]
}

// ---- entities ----

/// Prefix of every entity named `name` (already lower-cased).
pub fn entity_prefix(name: &str) -> Vec<u8> {
    with(ENTITY, &[b"@", name.as_bytes(), b"@"])
}

/// An entity's state.
pub fn entity(e: &EntityId) -> Vec<u8> {
    with(ENTITY, &[e.canonical().as_bytes()])
}

/// The first key past entity `after` under `prefix` (an [`entity_prefix`]): where a listing
/// that continues after `after` starts.
pub fn entity_after(prefix: &[u8], after: &str) -> Vec<u8> {
    let mut s = prefix.to_vec();
    s.extend_from_slice(after.as_bytes());
    s.push(0);
    s
}

/// The entity key (the part after `@name@`) of an entity state key under `prefix`.
pub fn entity_key_of(prefix: &[u8], k: &[u8]) -> String {
    String::from_utf8_lossy(&k[prefix.len()..]).into_owned()
}

// ---- inbox ----

/// Prefix of every inbox message of every entity.
pub const INBOX_ALL: &[u8] = &[INBOX];
/// The key just past every inbox message.
pub const INBOX_END: &[u8] = &[INBOX + 1];

/// Prefix of a target's inbox messages.
pub fn inbox_prefix(t: &Target) -> Vec<u8> {
    with(INBOX, &[t.canonical().as_bytes(), &[0]])
}

/// Inbox message `seq` of a target.
pub fn inbox(t: &Target, seq: u64) -> Vec<u8> {
    let mut k = inbox_prefix(t);
    k.extend_from_slice(&seq.to_be_bytes());
    k
}

/// The sequence number of an inbox message key under `prefix` (an [`inbox_prefix`]).
pub fn inbox_seq_of(prefix: &[u8], k: &[u8]) -> u64 {
    u64_of(&k[prefix.len()..])
}

/// The owner of an inbox message key, as its canonical id (lossy UTF-8), and the key just past
/// every message of that owner; `None` for a key without the NUL separator.
pub fn inbox_owner_of(k: &[u8]) -> Option<(String, Vec<u8>)> {
    let nul = k.iter().position(|b| *b == 0)?;
    let canonical = String::from_utf8_lossy(&k[1..nul]).into_owned();
    let mut past = k[..=nul].to_vec();
    past.extend_from_slice(&[0xff; 9]);
    Some((canonical, past))
}

/// Highest sequence number received from partition `source`.
pub fn received(source: u32) -> Vec<u8> {
    with(RECEIVED, &[&source.to_be_bytes()])
}

// ---- outbox ----

/// Prefix of every outbox message for every destination.
pub const OUTBOX_ALL: &[u8] = &[OUTBOX];

/// Outbox message `seq` for partition `dest`.
pub fn outbox(dest: u32, seq: u64) -> Vec<u8> {
    with(OUTBOX, &[&dest.to_be_bytes(), &seq.to_be_bytes()])
}

/// Prefix of every outbox message for partition `dest`.
pub fn outbox_prefix(dest: u32) -> Vec<u8> {
    with(OUTBOX, &[&dest.to_be_bytes()])
}

/// Last outbox sequence number assigned for partition `dest`.
pub fn outbox_last(dest: u32) -> Vec<u8> {
    with(OUTBOX_LAST, &[&dest.to_be_bytes()])
}

/// `(dest, seq)` of an outbox message key; `None` for a key of another length.
pub fn outbox_of(k: &[u8]) -> Option<(u32, u64)> {
    if k.len() != 13 {
        return None;
    }
    let dest = u32::from_be_bytes(k[1..5].try_into().expect("4 bytes"));
    Some((dest, u64_of(&k[5..13])))
}

/// The sequence number of an outbox message key under `prefix` (an [`outbox_prefix`]).
pub fn outbox_seq_of(prefix: &[u8], k: &[u8]) -> u64 {
    u64_of(&k[prefix.len()..])
}

// ---- remembered ids ----

/// A remembered idempotency id of a target.
pub fn id(t: &Target, id: &str) -> Vec<u8> {
    with(ID, &[t.canonical().as_bytes(), &[0], id.as_bytes()])
}

/// The same id, in the expiry index.
pub fn id_by_expiry(expiry: u64, t: &Target, id: &str) -> Vec<u8> {
    with(
        ID_BY_EXPIRY,
        &[
            &expiry.to_be_bytes(),
            t.canonical().as_bytes(),
            &[0],
            id.as_bytes(),
        ],
    )
}

/// The first key of the expiry index.
pub const IDS_BY_EXPIRY_START: &[u8] = &[ID_BY_EXPIRY];

/// The expiry-index key just past every id expiring before `now`.
pub fn ids_expiring_before(now: u64) -> Vec<u8> {
    with(ID_BY_EXPIRY, &[&now.to_be_bytes()])
}

/// The remembered-id key an expiry-index key stands for.
pub fn id_of_expiry_key(k: &[u8]) -> Vec<u8> {
    with(ID, &[&k[9..]])
}

// ---- timers ----

/// Prefix of every timer.
pub const TIMERS_ALL: &[u8] = &[TIMER];

/// Timer `id`, due at `due`.
pub fn timer(due: u64, id: u64) -> Vec<u8> {
    with(TIMER, &[&due.to_be_bytes(), &id.to_be_bytes()])
}

/// The due time of a timer key.
pub fn timer_due_of(k: &[u8]) -> u64 {
    u64_of(&k[1..9])
}

/// `(due, id)` of a timer key.
pub fn timer_of(k: &[u8]) -> (u64, u64) {
    (u64_of(&k[1..9]), u64_of(&k[9..17]))
}

// ---- entity locks ----

/// Prefix of every entity lock.
pub const LOCKS_ALL: &[u8] = &[LOCK];

/// The lock of an entity.
pub fn entity_lock(e: &EntityId) -> Vec<u8> {
    with(LOCK, &[e.canonical().as_bytes()])
}

/// The entity (canonical id, lossy UTF-8) of an entity lock key.
pub fn entity_lock_of(k: &[u8]) -> String {
    String::from_utf8_lossy(&k[LOCKS_ALL.len()..]).into_owned()
}

// ---- stream ingestion (source keys never hold a NUL byte) ----

/// Prefix of every mark of an entity.
pub fn marks_prefix(e: &EntityId) -> Vec<u8> {
    with(MARK, &[e.canonical().as_bytes(), &[0]])
}

/// An entity's mark for source partition `source`.
pub fn mark(e: &EntityId, source: &str) -> Vec<u8> {
    with(MARK, &[e.canonical().as_bytes(), &[0], source.as_bytes()])
}

/// The source of a mark key under `prefix` (a [`marks_prefix`]).
pub fn mark_source_of(prefix: &[u8], k: &[u8]) -> String {
    String::from_utf8_lossy(&k[prefix.len()..]).into_owned()
}

/// The checkpoint of source partition `source`.
pub fn checkpoint(source: &str) -> Vec<u8> {
    with(CHECKPOINT, &[source.as_bytes()])
}

/// Prefix of the checkpoints whose source key starts with `source_prefix`.
pub fn checkpoints_prefix(source_prefix: &str) -> Vec<u8> {
    checkpoint(source_prefix)
}

/// The source of a checkpoint key.
pub fn checkpoint_source_of(k: &[u8]) -> String {
    String::from_utf8_lossy(&k[1..]).into_owned()
}

/// Prefix of the dead letters of source partition `source`.
pub fn dead_letters_prefix(source: &str) -> Vec<u8> {
    with(DEAD_LETTER, &[source.as_bytes(), &[0]])
}

/// A dead letter of `source` at `position`.
pub fn dead_letter(source: &str, position: u64) -> Vec<u8> {
    with(
        DEAD_LETTER,
        &[source.as_bytes(), &[0], &position.to_be_bytes()],
    )
}

// ---- orchestration instances ----

/// Prefix of every instance status record.
pub const INSTANCES_ALL: &[u8] = &[INSTANCES, INSTANCE_RECORD];
/// Prefix of every instance work item.
pub const INSTANCE_WORK_ALL: &[u8] = &[INSTANCES, INSTANCE_WORK];
/// Prefix of the finished-instances index.
pub const INSTANCES_FINISHED_ALL: &[u8] = &[INSTANCES, INSTANCE_FINISHED];

/// `'h' sub iid 0x00`: the prefix of one instance's keys in sub-table `sub`.
fn instance_sub_prefix(sub: u8, i: &InstanceId) -> Vec<u8> {
    with(INSTANCES, &[&[sub], i.as_str().as_bytes(), &[0]])
}

/// An instance's status record.
pub fn instance(i: &InstanceId) -> Vec<u8> {
    with(INSTANCES, &[&[INSTANCE_RECORD], i.as_str().as_bytes()])
}

/// The first record key past instance `after`: where a listing that continues after it starts.
pub fn instance_after(after: &InstanceId) -> Vec<u8> {
    let mut k = instance(after);
    k.push(0);
    k
}

/// Prefix of an instance's history events.
pub fn instance_history_prefix(i: &InstanceId) -> Vec<u8> {
    instance_sub_prefix(INSTANCE_HISTORY, i)
}

/// History event `seq` of an instance's current execution.
pub fn instance_history(i: &InstanceId, seq: u32) -> Vec<u8> {
    let mut k = instance_history_prefix(i);
    k.extend_from_slice(&seq.to_be_bytes());
    k
}

/// Prefix of an instance's work items.
pub fn instance_work_prefix(i: &InstanceId) -> Vec<u8> {
    instance_sub_prefix(INSTANCE_WORK, i)
}

/// The work item of task `task` of an instance.
pub fn instance_work(i: &InstanceId, task: u32) -> Vec<u8> {
    let mut k = instance_work_prefix(i);
    k.extend_from_slice(&task.to_be_bytes());
    k
}

/// The owner of a work item key, as its id (lossy UTF-8), and the key just past every work
/// item of that owner; `None` for a key without the NUL separator.
pub fn instance_work_owner_of(k: &[u8]) -> Option<(String, Vec<u8>)> {
    let start = INSTANCE_WORK_ALL.len();
    let nul = start + k.get(start..)?.iter().position(|b| *b == 0)?;
    let id = String::from_utf8_lossy(&k[start..nul]).into_owned();
    Some((id, prefix_end(&k[..=nul])))
}

/// Prefix of an instance's timer references.
pub fn instance_timer_prefix(i: &InstanceId) -> Vec<u8> {
    instance_sub_prefix(INSTANCE_TIMER, i)
}

/// The reference to the durable timer of task `task` of an instance.
pub fn instance_timer(i: &InstanceId, task: u32) -> Vec<u8> {
    let mut k = instance_timer_prefix(i);
    k.extend_from_slice(&task.to_be_bytes());
    k
}

/// An instance in the finished-instances index, finished at `completed_at`.
pub fn instance_finished(completed_at: u64, i: &InstanceId) -> Vec<u8> {
    with(
        INSTANCES,
        &[
            &[INSTANCE_FINISHED],
            &completed_at.to_be_bytes(),
            i.as_str().as_bytes(),
        ],
    )
}

/// The finished-index key just past every instance finished before `t`.
pub fn instances_finished_before(t: u64) -> Vec<u8> {
    with(INSTANCES, &[&[INSTANCE_FINISHED], &t.to_be_bytes()])
}

/// `(completed_at, instance id)` of a finished-index key (the id lossy UTF-8); `None` for a key
/// too short to hold them.
pub fn instance_finished_of(k: &[u8]) -> Option<(u64, String)> {
    let at = INSTANCES_FINISHED_ALL.len();
    if k.len() <= at + 8 {
        return None;
    }
    let completed_at = u64_of(&k[at..at + 8]);
    Some((
        completed_at,
        String::from_utf8_lossy(&k[at + 8..]).into_owned(),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn e() -> EntityId {
        EntityId::new("Ab", "k1").unwrap()
    }

    fn t() -> Target {
        Target::Entity(e())
    }

    fn iid() -> InstanceId {
        InstanceId::new("order-7").unwrap()
    }

    fn instance() -> Target {
        Target::Instance(iid())
    }

    /// Test vectors: the on-disk layout of every key. A change here is a format change.
    #[test]
    fn every_key_has_the_pinned_layout() {
        let vectors: Vec<(&str, Vec<u8>, &[u8])> = vec![
            ("mark", mark(&e(), "s#1:2"), b"m@ab@k1\x00s#1:2"),
            ("checkpoint", checkpoint("s#1:2"), b"ss#1:2"),
            (
                "dead letter",
                dead_letter("s#1:2", 258),
                b"ds#1:2\x00\x00\x00\x00\x00\x00\x00\x01\x02",
            ),
            ("applied", APPLIED.to_vec(), b"\x00applied"),
            ("membership", MEMBERSHIP.to_vec(), b"\x00membership"),
            ("inbox_seq", INBOX_SEQ.to_vec(), b"\x00inbox_seq"),
            ("timer_seq", TIMER_SEQ.to_vec(), b"\x00timer_seq"),
            ("ids_count", IDS_COUNT.to_vec(), b"\x00ids_count"),
            ("entity_prefix", entity_prefix("ab"), b"e@ab@"),
            ("entity", entity(&e()), b"e@ab@k1"),
            ("entity_after", entity_after(b"e@ab@", "k1"), b"e@ab@k1\x00"),
            ("inbox_all", INBOX_ALL.to_vec(), b"i"),
            ("inbox_end", INBOX_END.to_vec(), b"j"),
            ("inbox_prefix", inbox_prefix(&t()), b"i@ab@k1\x00"),
            (
                "inbox_prefix of an instance",
                inbox_prefix(&instance()),
                b"iorder-7\x00",
            ),
            (
                "inbox",
                inbox(&t(), 0x0102),
                b"i@ab@k1\x00\x00\x00\x00\x00\x00\x00\x01\x02",
            ),
            ("received", received(0x0a0b0c0d), b"r\x0a\x0b\x0c\x0d"),
            ("outbox_all", OUTBOX_ALL.to_vec(), b"o"),
            (
                "outbox",
                outbox(3, 0x0102),
                b"o\x00\x00\x00\x03\x00\x00\x00\x00\x00\x00\x01\x02",
            ),
            ("outbox_prefix", outbox_prefix(3), b"o\x00\x00\x00\x03"),
            ("outbox_last", outbox_last(3), b"O\x00\x00\x00\x03"),
            ("id", id(&t(), "req-1"), b"k@ab@k1\x00req-1"),
            (
                "id_by_expiry",
                id_by_expiry(0x0102, &t(), "req-1"),
                b"K\x00\x00\x00\x00\x00\x00\x01\x02@ab@k1\x00req-1",
            ),
            ("ids_by_expiry_start", IDS_BY_EXPIRY_START.to_vec(), b"K"),
            (
                "ids_expiring_before",
                ids_expiring_before(0x0102),
                b"K\x00\x00\x00\x00\x00\x00\x01\x02",
            ),
            ("timers_all", TIMERS_ALL.to_vec(), b"t"),
            (
                "timer",
                timer(0x0102, 7),
                b"t\x00\x00\x00\x00\x00\x00\x01\x02\x00\x00\x00\x00\x00\x00\x00\x07",
            ),
            ("locks_all", LOCKS_ALL.to_vec(), b"l"),
            ("entity_lock", entity_lock(&e()), b"l@ab@k1"),
            ("instances_all", INSTANCES_ALL.to_vec(), b"hI"),
            ("instance", super::instance(&iid()), b"hIorder-7"),
            ("instance_after", instance_after(&iid()), b"hIorder-7\x00"),
            (
                "instance_history_prefix",
                instance_history_prefix(&iid()),
                b"hEorder-7\x00",
            ),
            (
                "instance_history",
                instance_history(&iid(), 0x0102),
                b"hEorder-7\x00\x00\x00\x01\x02",
            ),
            ("instance_work_all", INSTANCE_WORK_ALL.to_vec(), b"hA"),
            (
                "instance_work_prefix",
                instance_work_prefix(&iid()),
                b"hAorder-7\x00",
            ),
            (
                "instance_work",
                instance_work(&iid(), 3),
                b"hAorder-7\x00\x00\x00\x00\x03",
            ),
            (
                "instance_timer_prefix",
                instance_timer_prefix(&iid()),
                b"hTorder-7\x00",
            ),
            (
                "instance_timer",
                instance_timer(&iid(), 3),
                b"hTorder-7\x00\x00\x00\x00\x03",
            ),
            (
                "instances_finished_all",
                INSTANCES_FINISHED_ALL.to_vec(),
                b"hR",
            ),
            (
                "instance_finished",
                instance_finished(0x0102, &iid()),
                b"hR\x00\x00\x00\x00\x00\x00\x01\x02order-7",
            ),
            (
                "instances_finished_before",
                instances_finished_before(0x0102),
                b"hR\x00\x00\x00\x00\x00\x00\x01\x02",
            ),
        ];
        for (what, got, want) in vectors {
            assert_eq!(got, want, "{what}");
        }
    }

    #[test]
    fn parsers_invert_the_builders() {
        let prefix = inbox_prefix(&t());
        assert_eq!(inbox_seq_of(&prefix, &inbox(&t(), 42)), 42);
        assert_eq!(
            inbox_owner_of(&inbox(&t(), 42)),
            Some((
                "@ab@k1".to_string(),
                b"i@ab@k1\x00\xff\xff\xff\xff\xff\xff\xff\xff\xff".to_vec()
            ))
        );
        assert_eq!(outbox_of(&outbox(3, 9)), Some((3, 9)));
        assert_eq!(outbox_of(&outbox_prefix(3)), None);
        assert_eq!(outbox_seq_of(&outbox_prefix(3), &outbox(3, 9)), 9);
        assert_eq!(entity_key_of(&entity_prefix("ab"), &entity(&e())), "k1");
        assert_eq!(
            id_of_expiry_key(&id_by_expiry(5, &t(), "req-1")),
            id(&t(), "req-1")
        );
        assert_eq!(timer_of(&timer(100, 2)), (100, 2));
        assert_eq!(timer_due_of(&timer(100, 2)), 100);
        assert_eq!(entity_lock_of(&entity_lock(&e())), "@ab@k1");
        assert_eq!(prefix_end(b"i@a\x00"), b"i@a\x01");
        assert_eq!(prefix_end(b"a\xff"), b"b");
        assert_eq!(prefix_end(b"\xff\xff"), vec![0xff; 3]);
        assert_eq!(u64_of(&[1, 2]), 0x0102);
        assert_eq!(
            instance_work_owner_of(&instance_work(&iid(), 5)),
            Some(("order-7".to_string(), b"hAorder-7\x01".to_vec()))
        );
        assert_eq!(instance_work_owner_of(b"hAorder-7"), None);
        assert_eq!(
            instance_finished_of(&instance_finished(9, &iid())),
            Some((9, "order-7".to_string()))
        );
        assert_eq!(instance_finished_of(&instances_finished_before(9)), None);
    }
}
