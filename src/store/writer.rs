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
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use redb::{ReadableTable, WriteTransaction};
use tokio::sync::{mpsc, oneshot};
use uuid::Uuid;

use super::codec::{self, AttemptValue, DeadValue, EventMeta, PendingState, QueueValue};
use super::slot::{self, Slot};
use super::tables::{ATTEMPTS, DEAD, DEDUP, EVENTS, PENDING, QUEUE};
use super::{AttemptRecord, Ingested, NewEvent, NextStep, QueueEntry, StoreError, Watchers};

/// Most operations in one transaction: bounds the time one commit holds its callers.
const MAX_BATCH_OPS: usize = 4096;
/// Most body bytes in one transaction, so a burst of large bodies does not build one huge
/// transaction in memory.
const MAX_BATCH_BYTES: usize = 64 << 20;

/// A request to the writer.
pub(super) enum Op {
    Ingest {
        event: NewEvent,
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
        limit: usize,
        reply: oneshot::Sender<Result<usize, StoreError>>,
    },
}

/// A reply held back until the batch is committed.
enum Reply {
    Ingest(oneshot::Sender<Result<Ingested, StoreError>>, Ingested),
    Finish(oneshot::Sender<Result<(), StoreError>>),
    Purge(oneshot::Sender<Result<usize, StoreError>>, usize),
}

impl Reply {
    fn send_ok(self) {
        // A dropped receiver means the caller went away (client disconnected); the data is
        // committed all the same, which is what the contract needs.
        match self {
            Reply::Ingest(tx, v) => drop(tx.send(Ok(v))),
            Reply::Finish(tx) => drop(tx.send(Ok(()))),
            Reply::Purge(tx, n) => drop(tx.send(Ok(n))),
        }
    }

    fn send_err(self, message: &str) {
        let err = || StoreError::Commit(message.to_string());
        match self {
            Reply::Ingest(tx, _) => drop(tx.send(Err(err()))),
            Reply::Finish(tx) => drop(tx.send(Err(err()))),
            Reply::Purge(tx, _) => drop(tx.send(Err(err()))),
        }
    }
}

impl Op {
    fn body_len(&self) -> usize {
        match self {
            Op::Ingest { event, .. } => event.body.len(),
            _ => 0,
        }
    }

    /// Answers the caller with a failed commit.
    fn fail(self, message: &str) {
        let err = || StoreError::Commit(message.to_string());
        match self {
            Op::Ingest { reply, .. } => drop(reply.send(Err(err()))),
            Op::Finish { reply, .. } => drop(reply.send(Err(err()))),
            Op::Purge { reply, .. } => drop(reply.send(Err(err()))),
        }
    }
}

/// Ids sort by arrival: a UUIDv7, bumped past the previous one when the clock has not moved
/// (or moved back), so ids are strictly increasing in commit order.
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

pub(super) fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// Runs the writer until every sender is dropped; then returns.
pub(super) fn run(db: Arc<Slot>, mut rx: mpsc::Receiver<Op>, watchers: Arc<Watchers>) {
    let mut ids = IdGenerator { last: 0 };
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
        commit_batch(&db, &mut ids, &mut batch, &watchers);
    }
}

fn commit_batch(slot: &Slot, ids: &mut IdGenerator, batch: &mut Vec<Op>, watchers: &Watchers) {
    // No database after a failed reopen: try again now, since space may have been freed.
    let db = match slot.current().map_or_else(|| slot.reopen(), Ok) {
        Ok(db) => db,
        Err(reason) => {
            let message = format!("the store cannot be reopened: {reason}");
            tracing::error!(ops = batch.len(), error = %message, "store unavailable; the batch was refused and its callers were told");
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
    let result = (|| -> Result<(), redb::Error> {
        let mut txn = db.begin_write()?;
        // Quick repair saves the allocator state with each commit, so reopening after a
        // crash is near-instant instead of a walk over the whole file; it costs a second
        // fsync per batch, which the group commit shares among all its callers.
        txn.set_quick_repair(true);
        apply_all(&txn, ids, &mut pending, &mut replies, &mut touched)?;
        txn.commit()?;
        Ok(())
    })();
    // Ops an error struck before were never applied; they are answered below.
    let unapplied: Vec<Op> = pending.collect();
    match result {
        Ok(()) => {
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
        Err(err) => {
            let message = describe(&err);
            tracing::error!(ops, error = %message, "store commit failed; the batch was not written and its callers were told");
            for reply in replies {
                reply.send_err(&message);
            }
            for op in unapplied {
                op.fail(&message);
            }
            if matches!(err, redb::Error::Io(_) | redb::Error::PreviousIo) {
                // redb now refuses every transaction, reads included, until reopened.
                drop(db);
                match slot.reopen() {
                    Ok(_) => tracing::info!(
                        "store reopened after the failed commit; it takes writes again"
                    ),
                    Err(reason) => {
                        tracing::error!(error = %reason, "cannot reopen the store after the failed commit; will try again with the next write")
                    }
                }
            }
        }
    }
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

fn apply_all(
    txn: &WriteTransaction,
    ids: &mut IdGenerator,
    ops: &mut std::vec::Drain<'_, Op>,
    replies: &mut Vec<Reply>,
    touched: &mut HashSet<Arc<str>>,
) -> Result<(), redb::Error> {
    let mut events = txn.open_table(EVENTS)?;
    let mut dedup = txn.open_table(DEDUP)?;
    let mut queue = txn.open_table(QUEUE)?;
    let mut pending = txn.open_table(PENDING)?;
    let mut attempts = txn.open_table(ATTEMPTS)?;
    let mut dead = txn.open_table(DEAD)?;
    let queue_value = codec::encode(&QueueValue { attempt: 1 });
    for op in ops {
        match op {
            Op::Ingest { event, reply } => {
                if let Some(delivery_id) = &event.delivery_id
                    && let Some(existing) = dedup.get((&*event.source, delivery_id.as_str()))?
                {
                    let id = Uuid::from_u128(existing.value());
                    replies.push(Reply::Ingest(reply, Ingested::Duplicate(id)));
                    continue;
                }
                let id = ids.next();
                let key = id.as_u128();
                let received_at_ms = now_ms();
                let meta = EventMeta {
                    source: event.source.to_string(),
                    event_type: event.event_type,
                    delivery_id: event.delivery_id,
                    content_type: event.content_type,
                    received_at_ms,
                    headers: event.headers,
                };
                let meta_bytes = codec::encode_event_meta(&meta);
                {
                    let len = codec::event_len(&meta_bytes, &event.body);
                    let mut slot = events.insert_reserve(key, len)?;
                    codec::write_event(slot.as_mut(), &meta_bytes, &event.body);
                }
                if let Some(delivery_id) = &meta.delivery_id {
                    dedup.insert((meta.source.as_str(), delivery_id.as_str()), key)?;
                }
                let state = codec::encode(&PendingState::Queued {
                    due_ms: received_at_ms,
                });
                for sink in &event.sinks {
                    queue.insert((&**sink, received_at_ms, key), queue_value.as_slice())?;
                    pending.insert((key, &**sink), state.as_slice())?;
                    touched.insert(sink.clone());
                }
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
                    codec::encode(&AttemptValue {
                        started_ms: attempt.started_ms,
                        duration_ms: attempt.duration_ms,
                        status: attempt.status,
                        error: attempt.error.clone(),
                        outcome: attempt.outcome,
                    })
                    .as_slice(),
                )?;
                if was_queued {
                    match next {
                        NextStep::Done => {
                            pending.remove((key, sink))?;
                        }
                        NextStep::RetryAt(due_ms) => {
                            let value = codec::encode(&QueueValue {
                                attempt: entry.attempt + 1,
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
                replies.push(Reply::Finish(reply));
            }
            Op::Purge {
                cutoff_ms,
                limit,
                reply,
            } => {
                let removed = purge(
                    &mut events,
                    &mut dedup,
                    &pending,
                    &mut attempts,
                    cutoff_ms,
                    limit,
                )?;
                replies.push(Reply::Purge(reply, removed));
            }
        }
    }
    Ok(())
}

/// Removes up to `limit` events received before `cutoff_ms` that have no pending or
/// dead-lettered delivery, with their dedup entry and attempts. Returns how many went.
fn purge(
    events: &mut redb::Table<u128, &[u8]>,
    dedup: &mut redb::Table<(&str, &str), u128>,
    pending: &redb::Table<(u128, &str), &[u8]>,
    attempts: &mut redb::Table<(u128, &str, u32), &[u8]>,
    cutoff_ms: u64,
    limit: usize,
) -> Result<usize, redb::Error> {
    // UUIDv7 keeps the Unix millisecond time in its top 48 bits.
    let cutoff_key = (cutoff_ms as u128) << 80;
    let mut doomed = Vec::new();
    for item in events.range(..cutoff_key)? {
        if doomed.len() >= limit {
            break;
        }
        let (key, value) = item?;
        let key = key.value();
        let has_work = pending
            .range((key, "")..(key + 1, ""))?
            .next()
            .transpose()?
            .is_some();
        if has_work {
            continue;
        }
        let dedup_key = codec::decode_event(value.value())
            .ok()
            .and_then(|(meta, _)| meta.delivery_id.map(|d| (meta.source, d)));
        doomed.push((key, dedup_key));
    }
    for (key, dedup_key) in &doomed {
        events.remove(*key)?;
        if let Some((source, delivery_id)) = dedup_key {
            dedup.remove((source.as_str(), delivery_id.as_str()))?;
        }
        attempts.retain_in((*key, "", 0)..(*key + 1, "", 0), |_, _| false)?;
    }
    Ok(doomed.len())
}
