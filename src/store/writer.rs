//! The writer: the only code that opens a redb write transaction.
//!
//! It runs on its own OS thread (redb is synchronous) and group-commits: it takes every
//! operation waiting in its channel, applies them all in one transaction and commits once
//! with `Durability::Immediate`. While one batch is being synced the next one forms in the
//! channel, so batches grow with load and no request ever waits for a batch to fill.
//!
//! Invariant: a caller's reply is sent only after its batch's commit returned; if the commit
//! fails, every operation of the batch gets the error and nothing of the batch is on disk.
//! After an I/O error (a full disk) the writer reopens the database (see `slot`), so the
//! store works again as soon as the cause is gone, without a restart.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Instant;

use redb::{ReadableDatabase, ReadableTable, WriteTransaction};
use tokio::sync::{mpsc, oneshot};
use uuid::Uuid;

use super::codec::{self, AttemptValue, DeadValue, PendingState, QueueValue};
use super::dedup::DedupIndex;
use super::health::HealthReport;
use super::pack::{self, Row};
use super::retention::{Sweep, SweepChanges, Tables};
use super::slot::{self, Slot};
use super::tables::{ATTEMPTS, DEAD, DEDUP_LOG, DEDUP_PACKS, EVENTS, PENDING, PROBE, QUEUE};
use super::{
    AttemptRecord, EventId, Ingested, NextStep, PurgeStep, QueueEntry, Replayed, StoreError,
    Watchers,
};
use crate::clock::now_ms;
use crate::metrics::StoreMetrics;

/// Most operations in one transaction: bounds the time one commit holds its callers.
const MAX_BATCH_OPS: usize = 4096;
/// The readiness probe's value size: the failed batch's records, within these bounds (as
/// much new space as a few dozen small events need, and no more than a few large ones).
const PROBE_BYTES: std::ops::Range<usize> = (64 << 10)..(4 << 20);
/// How long after a failed commit batches are refused without trying (a probe still
/// tries). A failed commit costs a reopen of the file, which checks it whole, and reads
/// wait for it: on a full disk every batch of delivery outcomes failed and reopened, and
/// dispatch, unable to read its queue meanwhile, stopped delivering.
const REST_AFTER_FAILURE: std::time::Duration = std::time::Duration::from_secs(1);
/// Most body bytes in one transaction, so a burst of large bodies does not build one huge
/// transaction in memory.
const MAX_BATCH_BYTES: usize = 64 << 20;

/// A request to the writer.
pub(super) enum Op {
    Ingest {
        event: PreparedEvent,
        reply: oneshot::Sender<Result<Ingested, StoreError>>,
    },
    Finish {
        entry: QueueEntry,
        attempt: AttemptRecord,
        next: NextStep,
        reply: oneshot::Sender<Result<(), StoreError>>,
    },
    Purge {
        cutoff_ms: u64,
        budget: usize,
        reply: oneshot::Sender<Result<PurgeStep, StoreError>>,
    },
    Replay {
        event_id: EventId,
        sinks: Vec<Arc<str>>,
        reply: oneshot::Sender<Result<Vec<Replayed>, StoreError>>,
    },
    ReplayDead {
        sink: Arc<str>,
        since_ms: u64,
        /// Only dead letters of events after this one: where the last page stopped.
        after: Option<u128>,
        limit: usize,
        reply: oneshot::Sender<Result<DeadPage, StoreError>>,
    },
    /// Rides along with the next batch: answered once a commit succeeded. With `probe`, the
    /// batch also rewrites [`PROBE`]'s value, so it needs new space like a batch of events.
    Ping {
        probe: bool,
        reply: oneshot::Sender<Result<(), StoreError>>,
    },
}

/// An event made ready on the caller's thread: encoded whole and fingerprinted, so this one
/// serial thread only copies bytes into its transaction (and frees one buffer, not the
/// dozen strings an event's metadata holds).
pub(super) struct PreparedEvent {
    /// The stored value, `codec::encode_event`.
    pub record: Vec<u8>,
    /// When ingress received it: the first attempt's due time.
    pub received_at_ms: u64,
    /// Sinks that get one queue entry each.
    pub sinks: Vec<Arc<str>>,
    /// `dedup::fingerprint` of (source, delivery id), when the sender gave a delivery id.
    pub fingerprint: Option<u64>,
}

/// One page of a replay of a sink's dead letters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DeadPage {
    /// Dead letters queued again.
    pub replayed: usize,
    /// Where the next page starts (after this event), while there are more to look at.
    /// Pages go forward by event id, so an entry that fails again during the replay, and is
    /// dead-lettered again, is not replayed twice by one replay.
    pub next: Option<u128>,
}

/// A reply held back until the batch is committed.
enum Reply {
    Ingest(oneshot::Sender<Result<Ingested, StoreError>>, Ingested),
    /// An operation that returns nothing (finish, ping).
    Done(oneshot::Sender<Result<(), StoreError>>),
    Replay(
        oneshot::Sender<Result<Vec<Replayed>, StoreError>>,
        Vec<Replayed>,
    ),
    Purge(oneshot::Sender<Result<PurgeStep, StoreError>>, PurgeStep),
    DeadPage(oneshot::Sender<Result<DeadPage, StoreError>>, DeadPage),
}

impl Reply {
    fn send_ok(self) {
        // A dropped receiver means the caller went away (client disconnected); the data is
        // committed all the same, which is what the contract needs.
        match self {
            Reply::Ingest(tx, v) => drop(tx.send(Ok(v))),
            Reply::Done(tx) => drop(tx.send(Ok(()))),
            Reply::Replay(tx, r) => drop(tx.send(Ok(r))),
            Reply::Purge(tx, step) => drop(tx.send(Ok(step))),
            Reply::DeadPage(tx, page) => drop(tx.send(Ok(page))),
        }
    }

    fn send_err(self, message: &str) {
        let err = || StoreError::Commit(message.to_string());
        match self {
            Reply::Ingest(tx, _) => drop(tx.send(Err(err()))),
            Reply::Done(tx) => drop(tx.send(Err(err()))),
            Reply::Replay(tx, _) => drop(tx.send(Err(err()))),
            Reply::Purge(tx, _) => drop(tx.send(Err(err()))),
            Reply::DeadPage(tx, _) => drop(tx.send(Err(err()))),
        }
    }
}

impl Op {
    /// Whether it is the readiness probe, which tries the file even while the writer rests.
    fn is_probe(&self) -> bool {
        matches!(self, Op::Ping { probe: true, .. })
    }

    fn body_len(&self) -> usize {
        match self {
            Op::Ingest { event, .. } => event.record.len(),
            _ => 0,
        }
    }

    /// Answers the caller with a failed commit.
    fn fail(self, message: &str) {
        let err = || StoreError::Commit(message.to_string());
        match self {
            Op::Ingest { reply, .. } => drop(reply.send(Err(err()))),
            Op::Finish { reply, .. } | Op::Ping { reply, .. } => drop(reply.send(Err(err()))),
            Op::Purge { reply, .. } => drop(reply.send(Err(err()))),
            Op::ReplayDead { reply, .. } => drop(reply.send(Err(err()))),
            Op::Replay { reply, .. } => drop(reply.send(Err(err()))),
        }
    }
}

/// Ids sort by arrival: a UUIDv7, bumped past the previous one when the clock has not moved
/// (or moved back), so ids are strictly increasing in commit order, also across restarts
/// (it starts above the largest stored id): packs rely on it (see `pack`).
struct IdGenerator {
    last: u128,
}

impl IdGenerator {
    fn next(&mut self) -> Uuid {
        let candidate = Uuid::now_v7().as_u128();
        self.last = candidate.max(self.last.wrapping_add(1));
        Uuid::from_u128(self.last)
    }
}

/// What the writer keeps in memory beside the file; only this thread touches it.
struct Memory {
    ids: IdGenerator,
    dedup: DedupIndex,
    sweep: Sweep,
    /// The readiness probe's size: the records of the last batch that failed to commit
    /// (within bounds), so a probe that fits shows such a batch fits too.
    probe_bytes: usize,
    /// After a failed commit: until when batches without a probe are refused at once, and
    /// with what message.
    resting: Option<(Instant, String)>,
}

/// Runs the writer until every sender is dropped; then returns. `last_id` is the largest
/// event id stored.
pub(super) fn run(
    db: Arc<Slot>,
    mut rx: mpsc::Receiver<Op>,
    watchers: Arc<Watchers>,
    dedup: DedupIndex,
    last_id: u128,
    metrics: StoreMetrics,
    mut health: HealthReport,
) {
    let mut memory = Memory {
        ids: IdGenerator { last: last_id },
        dedup,
        sweep: Sweep::default(),
        probe_bytes: PROBE_BYTES.start,
        resting: None,
    };
    let mut batch: Vec<Op> = Vec::with_capacity(256);
    while let Some(first) = rx.blocking_recv() {
        let mut bytes = first.body_len();
        batch.push(first);
        while batch.len() < MAX_BATCH_OPS && bytes < MAX_BATCH_BYTES {
            match rx.try_recv() {
                Ok(op) => {
                    bytes += op.body_len();
                    batch.push(op);
                }
                Err(_) => break,
            }
        }
        let committed = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            commit_batch(
                &db,
                &mut memory,
                &mut batch,
                bytes,
                &watchers,
                &metrics,
                &mut health,
            )
        }));
        if let Err(panic) = committed {
            // redb panics on pages it cannot make sense of. The writer lives on, so callers
            // hear that the store cannot commit (not that the relay is stopping), `/readyz`
            // and the storage notice say why, and a repaired or replaced file is taken up.
            let message = super::slot::damaged(&super::panic_message(&*panic));
            tracing::error!(ops = batch.len(), error = %message, "store commit stopped on damaged data; the batch was refused and its callers were told");
            health.failed(&message, now_ms());
            // As after any failed commit: a damaged page read on every batch would otherwise
            // have the writer reopen the file in a loop while readers wait.
            memory.resting = Some((Instant::now() + REST_AFTER_FAILURE, message.clone()));
            for op in batch.drain(..) {
                op.fail(&message);
            }
            if let Err(reason) =
                std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| db.reopen()))
                    .unwrap_or_else(|panic| Err(super::panic_message(&*panic)))
            {
                tracing::error!(error = %reason, "cannot reopen the store after the failed commit; will try again with the next write");
            }
        }
    }
}

/// Applies and commits `batch`, whose records take `batch_bytes` (summed as it was taken).
fn commit_batch(
    slot: &Slot,
    memory: &mut Memory,
    batch: &mut Vec<Op>,
    batch_bytes: usize,
    watchers: &Watchers,
    metrics: &StoreMetrics,
    health: &mut HealthReport,
) {
    if let Some((until, message)) = &memory.resting
        && Instant::now() < *until
        && !batch.iter().any(Op::is_probe)
    {
        let message = message.clone();
        for op in batch.drain(..) {
            op.fail(&message);
        }
        return;
    }
    // No database after a failed reopen: try again now, since space may have been freed.
    let db = match slot.current().map_or_else(|| slot.reopen(), Ok) {
        Ok(db) => db,
        Err(reason) => {
            let message = format!("the store cannot be reopened: {reason}");
            tracing::error!(ops = batch.len(), error = %message, "store unavailable; the batch was refused and its callers were told");
            health.failed(&message, now_ms());
            memory.resting = Some((Instant::now() + REST_AFTER_FAILURE, message.clone()));
            for op in batch.drain(..) {
                op.fail(&message);
            }
            return;
        }
    };
    let started = Instant::now();
    let ops = batch.len();
    let mut touched: HashSet<Arc<str>> = HashSet::new();
    let mut replies = Vec::with_capacity(ops);
    let mut pending = batch.drain(..);
    // Index and sweep changes wait for the commit: a failed batch must leave them as the
    // file is (also across a reopen, which rolls the file back to the last commit).
    let mut index_changes = IndexChanges::default();
    let mut proof = Proof::default();
    let result = (|| -> Result<(), redb::Error> {
        // No quick repair: it saves the allocator state with every commit and needs a
        // second fsync, which halved the commit rate (6.3 ms vs 13.0 ms for a 1-event
        // commit, 8.0 vs 16.0 ms for 64 events; see BENCHMARKS.md). The price is a full
        // check of the file on the first open after a crash (or a reopen after an I/O error).
        let txn = db.begin_write()?;
        apply_all(
            &txn,
            memory,
            &mut index_changes,
            &mut pending,
            &mut replies,
            &mut touched,
            &mut proof,
        )?;
        txn.commit()?;
        Ok(())
    })();
    // Ops an error struck before were never applied; they are answered below.
    let unapplied: Vec<Op> = pending.collect();
    let failure = result.err().map(|err| {
        let message = describe(&err);
        // redb refuses every transaction after an I/O error, reads included, until reopened.
        let reopened = matches!(err, redb::Error::Io(_) | redb::Error::PreviousIo).then(|| {
            drop(db);
            slot.reopen()
        });
        (message, reopened)
    });
    // A commit can report an error after its data became durable (the failing write came
    // after the header switch). Its callers must then hear "stored": a sender told 503
    // would retry an event that is already queued, and its first copy would be delivered
    // although it was refused.
    let landed_anyway = match &failure {
        Some((_, Some(Ok(reopened)))) => commit_landed(reopened, &replies),
        _ => false,
    };
    if let Some((message, reopened)) = failure {
        if landed_anyway {
            tracing::warn!(ops, error = %message, "store commit reported an error, but the reopened store holds the batch; its callers were told it was stored");
        } else {
            tracing::error!(ops, error = %message, "store commit failed; the batch was not written and its callers were told");
        }
        match &reopened {
            Some(Ok(_)) => {
                tracing::info!("store reopened after the failed commit; it takes writes again")
            }
            Some(Err(reason)) => {
                tracing::error!(error = %reason, "cannot reopen the store after the failed commit; will try again with the next write")
            }
            None => {}
        }
        if !landed_anyway {
            health.failed(&message, now_ms());
            memory.resting = Some((Instant::now() + REST_AFTER_FAILURE, message.clone()));
            memory.probe_bytes = batch_bytes.clamp(PROBE_BYTES.start, PROBE_BYTES.end);
            for reply in replies {
                reply.send_err(&message);
            }
            for op in unapplied {
                op.fail(&message);
            }
            return;
        }
    }
    index_changes.apply(memory);
    memory.resting = None;
    metrics.batch(ops, started.elapsed().as_secs_f64());
    // After failures (a full disk), a batch of finishes, pings or one small notice can fit
    // where the failed batch did not: only the probe, or events taking at least as much
    // room as the probe would, show the store works again.
    health.committed(proof.probed || (proof.stored_events && batch_bytes >= memory.probe_bytes));
    for reply in replies {
        reply.send_ok();
    }
    for sink in &touched {
        watchers.notify(sink);
    }
    tracing::trace!(
        ops,
        elapsed_us = started.elapsed().as_micros() as u64,
        "committed batch"
    );
}

/// Whether a batch whose commit reported an error is in the store all the same, judged by
/// its first new event (a transaction lands whole or not at all). A batch without one is
/// taken as lost: its finishes and replays are safe to repeat.
fn commit_landed(db: &redb::Database, replies: &[Reply]) -> bool {
    let Some(probe) = replies.iter().find_map(|reply| match reply {
        Reply::Ingest(_, Ingested::Accepted(id)) => Some(id.as_u128()),
        _ => None,
    }) else {
        return false;
    };
    let found = || -> Result<bool, redb::Error> {
        let txn = db.begin_read()?;
        let events = txn.open_table(EVENTS)?;
        Ok(pack::contains(&events, probe)?)
    };
    found().unwrap_or(false)
}

/// A message for a failed commit that says what to do; the most common cause in the field is
/// a full disk.
fn describe(err: &redb::Error) -> String {
    match err {
        redb::Error::Io(io) if slot::is_disk_full(io) => {
            "disk full (ENOSPC): free space on the volume holding [storage] path".to_string()
        }
        other => other.to_string(),
    }
}

/// Dedup index and retention sweep changes of one batch, applied only once its commit
/// succeeded.
#[derive(Default)]
pub(super) struct IndexChanges {
    added: Vec<(u64, u128)>,
    /// Fingerprints of events removed by retention in this batch.
    pub(super) removed: Vec<(u64, u128)>,
    /// Fingerprints added in this batch, so two copies of one delivery in the same batch
    /// are recognised before the index itself is updated.
    pending: std::collections::HashMap<u64, u128>,
    pub(super) sweep: SweepChanges,
}

impl IndexChanges {
    fn apply(self, memory: &mut Memory) {
        for (fingerprint, event) in self.removed {
            memory.dedup.remove(fingerprint, event);
        }
        for (fingerprint, event) in self.added {
            memory.dedup.insert(fingerprint, event);
        }
        memory.sweep.apply(self.sweep);
    }
}

/// The id of a stored event (or one accepted earlier in this batch, in `fresh`) with the
/// same source and delivery id as `record`, if there is one.
fn find_duplicate(
    events: &redb::Table<u128, &[u8]>,
    dedup: &DedupIndex,
    changes: &IndexChanges,
    fresh: &[FreshEvent],
    fingerprint: u64,
    record: &[u8],
) -> Result<Option<u128>, redb::Error> {
    let candidate = changes
        .pending
        .get(&fingerprint)
        .copied()
        .or_else(|| dedup.candidate(fingerprint));
    let Some(candidate) = candidate else {
        return Ok(None);
    };
    // Confirm against the stored event: a 64-bit collision must never turn a new event
    // into a "duplicate" and drop it. Decoding is rare: only on a fingerprint match.
    let key = |bytes: &[u8]| {
        codec::decode_event_head(bytes)
            .ok()
            .map(|(meta, _)| (meta.source, meta.delivery_id))
    };
    let stored = if let Ok(i) = fresh.binary_search_by_key(&candidate, |e| e.id) {
        key(&fresh[i].record)
    } else {
        match pack::row_for(events, candidate)? {
            Some((row_key, row)) => Row::parse(row_key.value(), row.value())
                .ok()
                .and_then(|row| row.get(candidate))
                .and_then(key),
            None => None,
        }
    };
    let same = match (stored, key(record)) {
        (Some(stored), Some(new)) => stored == new,
        _ => false,
    };
    Ok(same.then_some(candidate))
}

/// An event accepted in the batch being applied, written with the others as packs at its
/// end.
struct FreshEvent {
    id: u128,
    record: Vec<u8>,
    fingerprint: Option<u64>,
}

/// Stores a batch's new events (in id order) as packs of about `PACK_TARGET_BYTES` each, and
/// their fingerprints as one dedup pack per pack.
fn write_packs(
    events: &mut redb::Table<u128, &[u8]>,
    dedup_packs: &mut redb::Table<u128, &[u8]>,
    fresh: &[FreshEvent],
) -> Result<(), redb::Error> {
    let mut rest = fresh;
    while let Some(first) = rest.first() {
        let mut bytes = 0;
        let count = rest
            .iter()
            .take_while(|e| {
                let take = bytes == 0 || bytes + e.record.len() <= pack::PACK_TARGET_BYTES;
                bytes += e.record.len();
                take
            })
            .count();
        let (members, later) = rest.split_at(count);
        rest = later;
        let records = || members.iter().map(|e| (e.id, e.record.as_slice()));
        let mut value = events.insert_reserve(first.id, pack::pack_len(records()))?;
        pack::write_pack(value.as_mut(), records());
        drop(value);
        let prints: Vec<(u128, u64)> = members
            .iter()
            .filter_map(|e| e.fingerprint.map(|print| (e.id, print)))
            .collect();
        if !prints.is_empty() {
            dedup_packs.insert(first.id, pack::encode_dedup_pack(&prints).as_slice())?;
        }
    }
    Ok(())
}

/// What a batch's commit shows about the store, beyond having committed.
#[derive(Default)]
struct Proof {
    /// It stored new events.
    stored_events: bool,
    /// It rewrote the readiness probe.
    probed: bool,
}

fn apply_all(
    txn: &WriteTransaction,
    memory: &mut Memory,
    changes: &mut IndexChanges,
    ops: &mut std::vec::Drain<'_, Op>,
    replies: &mut Vec<Reply>,
    touched: &mut HashSet<Arc<str>>,
    proof: &mut Proof,
) -> Result<(), redb::Error> {
    let Proof {
        stored_events,
        probed,
    } = proof;
    let mut events = txn.open_table(EVENTS)?;
    let mut dedup_packs = txn.open_table(DEDUP_PACKS)?;
    let mut dedup_log = txn.open_table(DEDUP_LOG)?;
    let mut queue = txn.open_table(QUEUE)?;
    let mut pending = txn.open_table(PENDING)?;
    let mut attempts = txn.open_table(ATTEMPTS)?;
    let mut dead = txn.open_table(DEAD)?;
    let Memory {
        ids,
        dedup,
        sweep,
        probe_bytes,
        ..
    } = memory;
    let queue_value = codec::encode_v2(&QueueValue {
        attempt: 1,
        first_attempt: 1,
    });
    let mut fresh: Vec<FreshEvent> = Vec::new();
    for op in ops {
        match op {
            Op::Ingest { event, reply } => {
                let print = event.fingerprint;
                if let Some(print) = print
                    && let Some(existing) =
                        find_duplicate(&events, dedup, changes, &fresh, print, &event.record)?
                {
                    replies.push(Reply::Ingest(
                        reply,
                        Ingested::Duplicate(Uuid::from_u128(existing)),
                    ));
                    continue;
                }
                let id = ids.next();
                let key = id.as_u128();
                if let Some(print) = print {
                    changes.pending.insert(print, key);
                    changes.added.push((print, key));
                }
                let due_ms = event.received_at_ms;
                let state = codec::encode(&PendingState::Queued { due_ms });
                for sink in &event.sinks {
                    queue.insert((&**sink, due_ms, key), queue_value.as_slice())?;
                    pending.insert((key, &**sink), state.as_slice())?;
                    touched.insert(sink.clone());
                }
                fresh.push(FreshEvent {
                    id: key,
                    record: event.record,
                    fingerprint: print,
                });
                replies.push(Reply::Ingest(reply, Ingested::Accepted(id)));
            }
            Op::Finish {
                entry,
                attempt,
                next,
                reply,
            } => {
                let key = entry.event_id.as_u128();
                let sink = &*entry.sink;
                // The entry may be gone already (a replay or purge raced it); recording the
                // attempt is still right, but it must not resurrect the queue entry.
                let was_queued = queue.remove((sink, entry.due_ms, key))?.is_some();
                attempts.insert(
                    (key, sink, entry.attempt),
                    codec::encode_v2(&AttemptValue {
                        started_ms: attempt.started_ms,
                        duration_ms: attempt.duration_ms,
                        status: attempt.status,
                        error: attempt.error.clone(),
                        outcome: attempt.outcome,
                        message_id: attempt.message_id.clone(),
                        replay: entry.first_attempt > 1,
                    })
                    .as_slice(),
                )?;
                if was_queued {
                    match next {
                        NextStep::Done => {
                            pending.remove((key, sink))?;
                            sweep.note_done(&mut changes.sweep, &pending, key)?;
                        }
                        NextStep::RetryAt(due_ms) => {
                            let value = codec::encode_v2(&QueueValue {
                                attempt: entry.attempt + 1,
                                first_attempt: entry.first_attempt,
                            });
                            queue.insert((sink, due_ms, key), value.as_slice())?;
                            pending.insert(
                                (key, sink),
                                codec::encode(&PendingState::Queued { due_ms }).as_slice(),
                            )?;
                            touched.insert(entry.sink.clone());
                        }
                        NextStep::DeadLetter(reason) => {
                            dead.insert(
                                (sink, key),
                                codec::encode(&DeadValue {
                                    at_ms: now_ms(),
                                    attempts: entry.attempt,
                                    reason,
                                })
                                .as_slice(),
                            )?;
                            pending.insert(
                                (key, sink),
                                codec::encode(&PendingState::Dead).as_slice(),
                            )?;
                        }
                    }
                }
                replies.push(Reply::Done(reply));
            }
            Op::Purge {
                cutoff_ms,
                budget,
                reply,
            } => {
                let mut tables = Tables {
                    events: &mut events,
                    dedup_packs: &mut dedup_packs,
                    dedup_log: &mut dedup_log,
                    pending: &pending,
                    attempts: &mut attempts,
                };
                let step = sweep.step(
                    &mut changes.sweep,
                    &mut changes.removed,
                    &mut tables,
                    cutoff_ms,
                    budget,
                )?;
                replies.push(Reply::Purge(reply, step));
            }
            Op::Replay {
                event_id,
                sinks,
                reply,
            } => {
                let key = event_id.as_u128();
                let mut outcomes = Vec::with_capacity(sinks.len());
                let exists = pack::contains(&events, key)?;
                for sink in &sinks {
                    if !exists {
                        outcomes.push(Replayed::NoSuchEvent);
                        continue;
                    }
                    let outcome = requeue(
                        &mut queue,
                        &mut pending,
                        &attempts,
                        &mut dead,
                        key,
                        sink,
                        now_ms(),
                    )?;
                    if outcome == Replayed::Queued {
                        touched.insert(sink.clone());
                    }
                    outcomes.push(outcome);
                }
                replies.push(Reply::Replay(reply, outcomes));
            }
            Op::ReplayDead {
                sink,
                since_ms,
                after,
                limit,
                reply,
            } => {
                let mut chosen = Vec::new();
                let mut next = None;
                let from = after.map_or(0, |id| id.saturating_add(1));
                for item in dead.range((&*sink, from)..=(&*sink, u128::MAX))? {
                    let (k, v) = item?;
                    if chosen.len() >= limit {
                        // More to look at: the next page starts after the last one chosen.
                        next = chosen.last().copied();
                        break;
                    }
                    // A damaged record is replayed too: its delivery is what matters.
                    let at_ms = codec::decode::<DeadValue>(v.value()).map_or(u64::MAX, |d| d.at_ms);
                    if at_ms >= since_ms {
                        chosen.push(k.value().1);
                    }
                }
                let now = now_ms();
                for key in &chosen {
                    requeue(
                        &mut queue,
                        &mut pending,
                        &attempts,
                        &mut dead,
                        *key,
                        &sink,
                        now,
                    )?;
                }
                if !chosen.is_empty() {
                    touched.insert(sink.clone());
                }
                replies.push(Reply::DeadPage(
                    reply,
                    DeadPage {
                        replayed: chosen.len(),
                        next,
                    },
                ));
            }
            Op::Ping { probe, reply } => {
                if probe && !*probed {
                    let mut table = txn.open_table(PROBE)?;
                    table.insert(0, vec![0u8; *probe_bytes].as_slice())?;
                    *probed = true;
                }
                replies.push(Reply::Done(reply));
            }
        }
    }
    *stored_events |= !fresh.is_empty();
    write_packs(&mut events, &mut dedup_packs, &fresh)
}

/// Puts one delivery back in `sink`'s queue, due now, as a new round (the attempt numbers
/// go on; the retry budget starts again). A dead letter leaves the dead letters; an entry
/// already queued (or in flight) is left as it is.
fn requeue(
    queue: &mut redb::Table<(&str, u64, u128), &[u8]>,
    pending: &mut redb::Table<(u128, &str), &[u8]>,
    attempts: &redb::Table<(u128, &str, u32), &[u8]>,
    dead: &mut redb::Table<(&str, u128), &[u8]>,
    key: u128,
    sink: &str,
    now_ms: u64,
) -> Result<Replayed, redb::Error> {
    let queued = match pending.get((key, sink))? {
        Some(state) => matches!(
            codec::decode::<PendingState>(state.value()),
            Ok(PendingState::Queued { .. })
        ),
        None => false,
    };
    if queued {
        return Ok(Replayed::AlreadyQueued);
    }
    dead.remove((sink, key))?;
    let last = attempts
        .range((key, sink, 0u32)..=(key, sink, u32::MAX))?
        .next_back()
        .transpose()?
        .map_or(0, |(k, _)| k.value().2);
    let next = last.saturating_add(1);
    queue.insert(
        (sink, now_ms, key),
        codec::encode_v2(&QueueValue {
            attempt: next,
            first_attempt: next,
        })
        .as_slice(),
    )?;
    pending.insert(
        (key, sink),
        codec::encode(&PendingState::Queued { due_ms: now_ms }).as_slice(),
    )?;
    Ok(Replayed::Queued)
}
