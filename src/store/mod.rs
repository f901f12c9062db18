//! The store: the only part that touches redb. It keeps events, the dedup index, one queue
//! per sink ordered by due time, delivery attempts and dead letters.
//!
//! Invariant: every write goes through the one writer thread (`writer`), which group-commits
//! batches with `Durability::Immediate`; a caller's future resolves only after its batch is
//! on disk. Callers see events, queue entries and attempts, never tables or transactions.

mod codec;
mod tables;
mod writer;

use std::collections::HashSet;
use std::sync::Arc;

use bytes::Bytes;
use uuid::Uuid;

use crate::config::StorageConfig;

/// An event's id: a UUIDv7, so ids sort by arrival time.
pub type EventId = Uuid;

/// An event as ingress hands it to the store.
#[derive(Debug, Clone)]
pub struct NewEvent {
    /// Source name.
    pub source: Arc<str>,
    /// The sender's event type.
    pub event_type: Option<String>,
    /// The sender's delivery id; a second event with the same source and delivery id is a
    /// duplicate.
    pub delivery_id: Option<String>,
    /// The request's `Content-Type`.
    pub content_type: Option<String>,
    /// Request headers worth keeping, secrets already removed.
    pub headers: Vec<(String, Vec<u8>)>,
    /// The body, byte for byte.
    pub body: Bytes,
    /// Sinks that get one queue entry each, in the same transaction.
    pub sinks: Vec<Arc<str>>,
}

/// What became of an ingested event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ingested {
    /// Stored and queued: this is its new id.
    Accepted(EventId),
    /// Seen before: the first event's id; nothing new was queued.
    Duplicate(EventId),
}

/// An event read back from the store.
#[derive(Debug, Clone)]
pub struct StoredEvent {
    /// Its id.
    pub id: EventId,
    /// Source name.
    pub source: Arc<str>,
    /// The sender's event type.
    pub event_type: Option<String>,
    /// The sender's delivery id.
    pub delivery_id: Option<String>,
    /// The request's `Content-Type`.
    pub content_type: Option<String>,
    /// Unix milliseconds at acceptance.
    pub received_at_ms: u64,
    /// Kept request headers.
    pub headers: Vec<(String, Vec<u8>)>,
    /// The body.
    pub body: Bytes,
}

/// One pending delivery of one event to one sink.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueueEntry {
    /// The event.
    pub event_id: EventId,
    /// The sink.
    pub sink: Arc<str>,
    /// Unix milliseconds at which it is due.
    pub due_ms: u64,
    /// The number of the attempt about to be made, 1 for the first.
    pub attempt: u32,
}

/// A due queue entry with its event loaded.
#[derive(Debug, Clone)]
pub struct Due {
    /// The queue entry.
    pub entry: QueueEntry,
    /// Its event.
    pub event: Arc<StoredEvent>,
}

/// A page of due entries for one sink.
#[derive(Debug, Clone, Default)]
pub struct DueBatch {
    /// Entries due now, oldest due time first.
    pub entries: Vec<Due>,
    /// Due time of the first entry not yet due, so the worker knows when to look again.
    pub next_due_ms: Option<u64>,
}

/// How one attempt ended, as recorded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum AttemptOutcome {
    /// The sink took it.
    Delivered,
    /// Failed; another attempt is scheduled.
    Retrying,
    /// Failed for good; the entry is now a dead letter.
    DeadLettered,
}

/// One delivery attempt, as recorded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AttemptRecord {
    /// Unix milliseconds when the attempt started.
    pub started_ms: u64,
    /// How long it took.
    pub duration_ms: u32,
    /// The receiver's HTTP status, if it answered.
    pub status: Option<u16>,
    /// Why it failed, if it did.
    pub error: Option<String>,
    /// How it ended.
    pub outcome: AttemptOutcome,
}

/// What happens to a queue entry after an attempt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NextStep {
    /// Delivered: remove it from the queue.
    Done,
    /// Try again at this Unix millisecond time.
    RetryAt(u64),
    /// Give up: move it to the dead letters with this reason.
    DeadLetter(String),
}

/// Errors from the store. A variant only where the caller acts differently.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The file could not be opened or created.
    #[error("cannot open store {path}: {message}")]
    Open { path: String, message: String },
    /// A commit failed (disk full, I/O error): nothing of the batch was written; retry later.
    #[error("store commit failed: {0}")]
    Commit(String),
    /// A read failed.
    #[error("store read failed: {0}")]
    Read(String),
    /// The writer has stopped (shutdown in progress).
    #[error("store is shut down")]
    Closed,
}

/// A handle to the store; cheap to clone.
#[derive(Clone)]
pub struct Store {
    inner: Arc<Inner>,
}

struct Inner {}

impl Store {
    /// Opens (or creates) the redb file and starts the writer thread.
    pub fn open(config: &StorageConfig) -> Result<Store, StoreError> {
        todo!()
    }

    /// Stores the event and one queue entry per sink in one durable commit.
    pub async fn ingest(&self, event: NewEvent) -> Result<Ingested, StoreError> {
        todo!()
    }

    /// Reads up to `limit` entries of `sink` due at `now_ms`, skipping events in `skip`
    /// (those already in flight). Blocking: call from `spawn_blocking`.
    pub fn due(
        &self,
        sink: &str,
        now_ms: u64,
        limit: usize,
        skip: &HashSet<EventId>,
    ) -> Result<DueBatch, StoreError> {
        todo!()
    }

    /// Records an attempt and moves the entry on (removed, rescheduled or dead-lettered),
    /// durably, through the group commit.
    pub async fn finish(
        &self,
        entry: QueueEntry,
        attempt: AttemptRecord,
        next: NextStep,
    ) -> Result<(), StoreError> {
        todo!()
    }

    /// A notifier woken after each commit that adds entries to `sink`'s queue.
    pub fn watch(&self, sink: &str) -> Arc<tokio::sync::Notify> {
        todo!()
    }

    /// Stops the writer after the batches already submitted are committed.
    pub async fn close(&self) {
        todo!()
    }
}
