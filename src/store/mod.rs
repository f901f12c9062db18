//! The store: the only part that touches redb. It keeps events, the dedup log, one queue
//! per sink ordered by due time, delivery attempts and dead letters.
//!
//! Invariant: every write goes through the one writer thread (`writer`), which group-commits
//! batches with `Durability::Immediate`; a caller's future resolves only after its batch is
//! on disk. Callers see events, queue entries and attempts, never tables or transactions.

mod codec;
mod dedup;
mod health;
mod inspect;
mod pack;
mod prefill;
mod recent;
mod retention;
mod slot;
mod tables;
mod writer;

pub use health::StoreHealth;
pub use inspect::{
    AttemptView, DeadLetter, DeliveryState, EventPage, EventQuery, EventStatus, EventSummary,
    Replayed, SinkStats,
};

use std::borrow::Cow;
use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use redb::{Database, ReadableDatabase, ReadableTable, ReadableTableMetadata};

use slot::Slot;
use tokio::sync::{Notify, mpsc, oneshot};
use uuid::Uuid;

use pack::Row;
use tables::{ATTEMPTS, DEAD, DEDUP_LOG, DEDUP_PACKS, EVENTS, PENDING, QUEUE};

use crate::config::StorageConfig;
use crate::metrics::StoreMetrics;

/// Entry points for the fuzz targets only: decoding records read from a possibly damaged file.
#[doc(hidden)]
pub mod fuzzing {
    /// Decodes bytes as every kind of stored record; must never panic.
    pub fn decode_records(bytes: &[u8]) {
        let _ = super::codec::decode_event(bytes);
        let _ = super::codec::decode_event_head(bytes);
        if let Ok(row) = super::pack::Row::parse(0, bytes) {
            for (_, record) in row.members() {
                let _ = super::codec::decode_event(record);
            }
        }
        let _ = super::pack::decode_dedup_pack(bytes);
        let _ = super::codec::decode_queue(bytes);
        let _ = super::codec::decode_attempt(bytes);
        let _ = super::codec::decode::<super::codec::DeadValue>(bytes);
        let _ = super::codec::decode::<super::codec::PendingState>(bytes);
    }
}

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
    /// The first attempt of this round: 1, or the first attempt after a replay. The retry
    /// budget counts from here.
    pub first_attempt: u32,
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
    /// The sink found nothing to do with the event (the record's error says why); done.
    /// Last, so records written before it existed decode unchanged.
    Skipped,
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
    /// The sink's id for the delivered message (Slack's `ts`), when it gave one.
    pub message_id: Option<String>,
}

/// What one retention step did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PurgeStep {
    /// Events looked at: at most the step's budget.
    pub looked: usize,
    /// Events removed.
    pub removed: usize,
    /// Events received before the cutoff still held for a pending or dead-lettered delivery
    /// (as far as the sweep has come since the relay started).
    pub kept: u64,
    /// Nothing more to look at below this cutoff: the pass is over.
    pub done: bool,
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
    /// Another process (a running relay) holds the file open.
    #[error(
        "cannot open store {path}: the file is in use by another hookrelay process; stop it or choose another [storage] path"
    )]
    InUse { path: String },
}

/// A handle to the store; cheap to clone.
#[derive(Clone)]
pub struct Store {
    inner: Arc<Inner>,
}

struct Inner {
    /// The open database; the writer replaces it after an I/O error.
    db: Arc<Slot>,
    path: PathBuf,
    /// `None` once closed; a std Mutex because it is only held to clone the sender.
    ops: Mutex<Option<mpsc::Sender<writer::Op>>>,
    writer: Mutex<Option<std::thread::JoinHandle<()>>>,
    watchers: Arc<Watchers>,
    /// Whether commits succeed, as the writer publishes it.
    health: tokio::sync::watch::Receiver<StoreHealth>,
    /// The last counts of [`Store::sink_stats_recent`]: when, for which sinks, and what.
    stats_cache: Mutex<Option<inspect::CachedStats>>,
    /// Events read for delivery lately, shared by the sinks they fan out to.
    recent: recent::RecentEvents,
}

/// One `Notify` per sink, woken by the writer after a commit adds to that sink's queue.
#[derive(Default)]
pub(crate) struct Watchers {
    // A std Mutex: held for a map lookup only, never across an await.
    by_sink: Mutex<HashMap<Arc<str>, Arc<Notify>>>,
}

impl Watchers {
    fn get(&self, sink: &str) -> Arc<Notify> {
        let mut map = self.by_sink.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(n) = map.get(sink) {
            return n.clone();
        }
        let n = Arc::new(Notify::new());
        map.insert(Arc::from(sink), n.clone());
        n
    }

    pub(crate) fn notify(&self, sink: &str) {
        let map = self.by_sink.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(n) = map.get(sink) {
            // notify_one keeps a permit when nobody waits yet, so a wake-up is never lost.
            n.notify_one();
        }
    }
}

/// Bounded so that a stalled disk pushes back on ingress instead of growing memory.
const OPS_CHANNEL: usize = 8192;

impl Store {
    /// Opens (or creates) the redb file and starts the writer thread.
    pub fn open(config: &StorageConfig) -> Result<Store, StoreError> {
        Store::open_observed(config, StoreMetrics::default())
    }

    /// Like [`Store::open`]; the writer records each commit's latency and size in `metrics`.
    pub fn open_observed(
        config: &StorageConfig,
        metrics: StoreMetrics,
    ) -> Result<Store, StoreError> {
        let path = config.path.clone();
        let open_err = |message: String| StoreError::Open {
            path: path.display().to_string(),
            message,
        };
        if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
            std::fs::create_dir_all(parent)
                .map_err(|e| open_err(format!("cannot create folder {}: {e}", parent.display())))?;
        }
        // A damaged file can make redb panic while it reads the pages: say so, not a trace.
        let opened = std::panic::catch_unwind(|| -> Result<_, StoreError> {
            let db = slot::open_database(&path).map_err(|e| match e {
                redb::DatabaseError::DatabaseAlreadyOpen => StoreError::InUse {
                    path: path.display().to_string(),
                },
                other => open_err(slot::describe_open(&other)),
            })?;
            create_tables(&db).map_err(|e| open_err(e.to_string()))?;
            let dedup = load_dedup_index(&db).map_err(|e| open_err(e.to_string()))?;
            let last_id = last_event_id(&db).map_err(|e| open_err(e.to_string()))?;
            Ok((db, dedup, last_id))
        })
        .unwrap_or_else(|panic| Err(open_err(slot::damaged(&panic_message(&*panic)))));
        let (db, dedup, last_id) = opened?;
        let db = Arc::new(Slot::new(path.clone(), db));
        let watchers = Arc::new(Watchers::default());
        let (tx, rx) = mpsc::channel(OPS_CHANNEL);
        let (report, health) = health::HealthReport::new();
        let writer = {
            let db = db.clone();
            let watchers = watchers.clone();
            std::thread::Builder::new()
                .name("store-writer".into())
                .spawn(move || writer::run(db, rx, watchers, dedup, last_id, metrics, report))
                .map_err(|e| open_err(format!("cannot start the writer thread: {e}")))?
        };
        Ok(Store {
            inner: Arc::new(Inner {
                db,
                path,
                ops: Mutex::new(Some(tx)),
                writer: Mutex::new(Some(writer)),
                watchers,
                health,
                stats_cache: Mutex::new(None),
                recent: recent::RecentEvents::default(),
            }),
        })
    }

    /// The redb file's path.
    pub fn path(&self) -> &Path {
        &self.inner.path
    }

    /// Whether commits succeed; changes when the first commit fails and when one succeeds
    /// again.
    pub fn health(&self) -> tokio::sync::watch::Receiver<StoreHealth> {
        self.inner.health.clone()
    }

    async fn submit<T>(
        &self,
        make: impl FnOnce(oneshot::Sender<Result<T, StoreError>>) -> writer::Op,
    ) -> Result<T, StoreError> {
        let sender = self
            .inner
            .ops
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
            .ok_or(StoreError::Closed)?;
        let (reply, answer) = oneshot::channel();
        sender
            .send(make(reply))
            .await
            .map_err(|_| StoreError::Closed)?;
        answer.await.unwrap_or_else(|_| {
            Err(StoreError::Commit(
                "the writer stopped before confirming the commit".into(),
            ))
        })
    }

    /// Stores the event and one queue entry per sink in one durable commit.
    pub async fn ingest(&self, event: NewEvent) -> Result<Ingested, StoreError> {
        let received_at_ms = crate::clock::now_ms();
        let fingerprint = event
            .delivery_id
            .as_deref()
            .map(|delivery_id| dedup::fingerprint(&event.source, delivery_id));
        // The metadata's strings are freed here, before the wait, on this thread.
        let record = codec::encode_event(
            &codec::EventMeta {
                source: event.source.to_string(),
                event_type: event.event_type,
                delivery_id: event.delivery_id,
                content_type: event.content_type,
                received_at_ms,
                headers: event.headers,
            },
            &event.body,
        );
        // The record holds the body now: this copy is not kept for the commit's wait, which
        // for a large body is most of the memory it takes.
        drop(event.body);
        let prepared = writer::PreparedEvent {
            record,
            received_at_ms,
            sinks: event.sinks,
            fingerprint,
        };
        self.submit(|reply| writer::Op::Ingest {
            event: prepared,
            reply,
        })
        .await
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
        let read = |e: redb::Error| StoreError::Read(e.to_string());
        // Held for the whole read, so a reopen waits for it rather than cutting it short.
        let db = self.inner.db.get()?;
        let txn = db.begin_read().map_err(|e| read(e.into()))?;
        let queue = txn.open_table(QUEUE).map_err(|e| read(e.into()))?;
        let events = txn.open_table(EVENTS).map_err(|e| read(e.into()))?;
        let mut batch = DueBatch::default();
        let range = queue
            .range((sink, 0u64, 0u128)..=(sink, u64::MAX, u128::MAX))
            .map_err(|e| read(e.into()))?;
        for item in range {
            let (key, value) = item.map_err(|e| read(e.into()))?;
            let (_, due_ms, id) = key.value();
            if due_ms > now_ms {
                batch.next_due_ms = Some(due_ms);
                break;
            }
            let event_id = Uuid::from_u128(id);
            if skip.contains(&event_id) {
                continue;
            }
            if batch.entries.len() >= limit {
                // There is more due now: tell the worker to come straight back.
                batch.next_due_ms = Some(due_ms);
                break;
            }
            let (attempt, first_attempt) = codec::decode_queue(value.value())
                .map(|v| (v.attempt, v.first_attempt))
                .unwrap_or((1, 1));
            let event = match self.inner.recent.get(id) {
                Some(event) => event,
                None => {
                    let Some(event) = read_event(&events, event_id)? else {
                        tracing::error!(%event_id, sink, "queue entry without its event; skipping it");
                        continue;
                    };
                    let event = Arc::new(event);
                    self.inner.recent.keep(id, &event);
                    event
                }
            };
            batch.entries.push(Due {
                entry: QueueEntry {
                    event_id,
                    sink: Arc::from(sink),
                    due_ms,
                    attempt,
                    first_attempt,
                },
                event,
            });
        }
        Ok(batch)
    }

    /// Records an attempt and moves the entry on (removed, rescheduled or dead-lettered),
    /// durably, through the group commit.
    pub async fn finish(
        &self,
        entry: QueueEntry,
        attempt: AttemptRecord,
        next: NextStep,
    ) -> Result<(), StoreError> {
        self.submit(|reply| writer::Op::Finish {
            entry,
            attempt,
            next,
            reply,
        })
        .await
    }

    /// One step of retention, in one small transaction: looks at up to `budget` events
    /// received before `cutoff_ms`, resuming where the last step stopped, and removes those
    /// whose deliveries have all ended (delivered or skipped), with their attempts and dedup
    /// entry. Events with a pending or dead-lettered delivery are kept, and removed by a later
    /// step once it ends. Call again until [`PurgeStep::done`].
    pub async fn purge(&self, cutoff_ms: u64, budget: usize) -> Result<PurgeStep, StoreError> {
        self.submit(|reply| writer::Op::Purge {
            cutoff_ms,
            budget,
            reply,
        })
        .await
    }

    /// A notifier woken after each commit that adds entries to `sink`'s queue.
    pub fn watch(&self, sink: &str) -> Arc<Notify> {
        self.inner.watchers.get(sink)
    }

    /// Reads one event. Blocking.
    pub fn event(&self, id: EventId) -> Result<Option<StoredEvent>, StoreError> {
        let read = |e: redb::Error| StoreError::Read(e.to_string());
        // Held for the whole read, so a reopen waits for it rather than cutting it short.
        let db = self.inner.db.get()?;
        let txn = db.begin_read().map_err(|e| read(e.into()))?;
        let events = txn.open_table(EVENTS).map_err(|e| read(e.into()))?;
        read_event(&events, id)
    }

    /// The recorded attempts of one event, per sink, in order. Blocking.
    pub fn attempts(&self, id: EventId) -> Result<Vec<(String, u32, AttemptRecord)>, StoreError> {
        let read = |e: redb::Error| StoreError::Read(e.to_string());
        // Held for the whole read, so a reopen waits for it rather than cutting it short.
        let db = self.inner.db.get()?;
        let txn = db.begin_read().map_err(|e| read(e.into()))?;
        let table = txn.open_table(ATTEMPTS).map_err(|e| read(e.into()))?;
        let key = id.as_u128();
        let mut out = Vec::new();
        for item in table
            .range((key, "", 0u32)..(key + 1, "", 0u32))
            .map_err(|e| read(e.into()))?
        {
            let (k, v) = item.map_err(|e| read(e.into()))?;
            let (_, sink, number) = k.value();
            let value = codec::decode_attempt(v.value())
                .map_err(|e| StoreError::Read(format!("attempt of event {id}: {e}")))?;
            out.push((
                sink.to_string(),
                number,
                AttemptRecord {
                    started_ms: value.started_ms,
                    duration_ms: value.duration_ms,
                    status: value.status,
                    error: value.error,
                    outcome: value.outcome,
                    message_id: value.message_id,
                },
            ));
        }
        Ok(out)
    }

    /// Dead letters of one sink: event id, attempts made and the reason. Blocking.
    pub fn dead_letters(&self, sink: &str) -> Result<Vec<(EventId, u32, String)>, StoreError> {
        let read = |e: redb::Error| StoreError::Read(e.to_string());
        // Held for the whole read, so a reopen waits for it rather than cutting it short.
        let db = self.inner.db.get()?;
        let txn = db.begin_read().map_err(|e| read(e.into()))?;
        let table = txn.open_table(DEAD).map_err(|e| read(e.into()))?;
        let mut out = Vec::new();
        for item in table
            .range((sink, 0u128)..=(sink, u128::MAX))
            .map_err(|e| read(e.into()))?
        {
            let (k, v) = item.map_err(|e| read(e.into()))?;
            let value: codec::DeadValue = codec::decode(v.value())
                .map_err(|e| StoreError::Read(format!("dead letter of sink {sink}: {e}")))?;
            out.push((Uuid::from_u128(k.value().1), value.attempts, value.reason));
        }
        Ok(out)
    }

    /// Number of entries in `sink`'s queue, due or not. Blocking; O(n).
    pub fn queue_len(&self, sink: &str) -> Result<u64, StoreError> {
        let read = |e: redb::Error| StoreError::Read(e.to_string());
        // Held for the whole read, so a reopen waits for it rather than cutting it short.
        let db = self.inner.db.get()?;
        let txn = db.begin_read().map_err(|e| read(e.into()))?;
        let queue = txn.open_table(QUEUE).map_err(|e| read(e.into()))?;
        let range = queue
            .range((sink, 0u64, 0u128)..=(sink, u64::MAX, u128::MAX))
            .map_err(|e| read(e.into()))?;
        Ok(range.count() as u64)
    }

    /// Stops the writer after the batches already submitted are committed, and waits for it.
    pub async fn close(&self) {
        drop(
            self.inner
                .ops
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .take(),
        );
        let handle = self
            .inner
            .writer
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take();
        if let Some(handle) = handle {
            // The writer drains what is queued, then sees the channel closed.
            let _ = tokio::task::spawn_blocking(move || handle.join()).await;
        }
    }
}

impl StoredEvent {
    fn from_parts(id: EventId, meta: codec::EventMeta, body: Cow<'_, [u8]>) -> StoredEvent {
        StoredEvent {
            id,
            source: Arc::from(meta.source),
            event_type: meta.event_type,
            delivery_id: meta.delivery_id,
            content_type: meta.content_type,
            received_at_ms: meta.received_at_ms,
            headers: meta.headers,
            body: match body {
                Cow::Borrowed(stored) => Bytes::copy_from_slice(stored),
                Cow::Owned(decompressed) => Bytes::from(decompressed),
            },
        }
    }
}

/// Reads event `id` from the `EVENTS` table; `None` if it is not stored.
fn read_event(
    events: &impl ReadableTable<u128, &'static [u8]>,
    id: EventId,
) -> Result<Option<StoredEvent>, StoreError> {
    let key = id.as_u128();
    let found = pack::row_for(events, key).map_err(|e| StoreError::Read(e.to_string()))?;
    let Some((row_key, value)) = found else {
        return Ok(None);
    };
    let damaged = |e: codec::DecodeError| StoreError::Read(format!("event {id}: {e}"));
    let row = Row::parse(row_key.value(), value.value()).map_err(damaged)?;
    let Some(record) = row.get(key) else {
        return Ok(None);
    };
    let (meta, body) = codec::decode_event(record).map_err(damaged)?;
    Ok(Some(StoredEvent::from_parts(id, meta, body)))
}

/// Rebuilds the in-memory dedup index from its packs (and the one-row-per-event log of
/// older stores): one sequential read of 24 bytes per event.
fn load_dedup_index(db: &Database) -> Result<dedup::DedupIndex, redb::Error> {
    let txn = db.begin_read()?;
    let log = txn.open_table(DEDUP_LOG)?;
    let packs = txn.open_table(DEDUP_PACKS)?;
    let mut index = dedup::DedupIndex::with_capacity(log.len()? as usize);
    for item in log.iter()? {
        let (event, print) = item?;
        index.insert(print.value(), event.value());
    }
    for item in packs.iter()? {
        let (key, value) = item?;
        match pack::decode_dedup_pack(value.value()) {
            Ok(entries) => {
                for (event, print) in entries {
                    index.insert(print, event);
                }
            }
            // Its events are still delivered; only a re-sent copy of one would not be
            // recognised.
            Err(err) => tracing::error!(
                row = %Uuid::from_u128(key.value()),
                error = %err,
                "damaged dedup entries: re-sent copies of these events will be taken as new"
            ),
        }
    }
    Ok(index)
}

/// The largest stored event id (0 in an empty store): new ids start above it.
fn last_event_id(db: &Database) -> Result<u128, redb::Error> {
    let txn = db.begin_read()?;
    let events = txn.open_table(EVENTS)?;
    let Some(last) = events.last()? else {
        return Ok(0);
    };
    let key = last.0.value();
    // A damaged last row: its key is the best bound there is.
    Ok(Row::parse(key, last.1.value())
        .map(|row| row.member(row.len() - 1).0)
        .unwrap_or(key))
}

fn create_tables(db: &Database) -> Result<(), redb::Error> {
    let txn = db.begin_write()?;
    txn.open_table(EVENTS)?;
    txn.open_table(DEDUP_PACKS)?;
    txn.open_table(DEDUP_LOG)?;
    txn.open_table(QUEUE)?;
    txn.open_table(PENDING)?;
    txn.open_table(ATTEMPTS)?;
    txn.open_table(DEAD)?;
    txn.commit()?;
    Ok(())
}

/// What a caught panic said, for a message.
pub fn panic_message(panic: &(dyn std::any::Any + Send)) -> String {
    panic
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| panic.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "a panic with no message".to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn open(dir: &tempfile::TempDir) -> Store {
        Store::open(&StorageConfig {
            path: dir.path().join("nested/folder/store.redb"),
            retention: Duration::from_secs(3600),
        })
        .unwrap()
    }

    fn event(delivery: Option<&str>, sinks: &[&str]) -> NewEvent {
        NewEvent {
            source: Arc::from("github"),
            event_type: Some("push".into()),
            delivery_id: delivery.map(String::from),
            content_type: Some("application/json".into()),
            headers: vec![("x-github-event".into(), b"push".to_vec())],
            body: Bytes::from_static(b"{\"ref\":\"refs/heads/main\"}"),
            sinks: sinks.iter().map(|s| Arc::from(*s)).collect(),
        }
    }

    fn id_of(i: Ingested) -> EventId {
        match i {
            Ingested::Accepted(id) | Ingested::Duplicate(id) => id,
        }
    }

    #[tokio::test]
    async fn ingest_queues_one_entry_per_sink_and_dedups_redeliveries() {
        let dir = tempfile::tempdir().unwrap();
        let store = open(&dir);
        let first = store.ingest(event(Some("d-1"), &["a", "b"])).await.unwrap();
        let Ingested::Accepted(id) = first else {
            panic!("first delivery must be accepted, got {first:?}")
        };
        let again = store.ingest(event(Some("d-1"), &["a", "b"])).await.unwrap();
        assert_eq!(again, Ingested::Duplicate(id));
        for sink in ["a", "b"] {
            let batch = store.due(sink, u64::MAX, 10, &HashSet::new()).unwrap();
            assert_eq!(batch.entries.len(), 1, "sink {sink}");
            let due = &batch.entries[0];
            assert_eq!(due.entry.event_id, id);
            assert_eq!(due.entry.attempt, 1);
            assert_eq!(&due.event.body[..], b"{\"ref\":\"refs/heads/main\"}");
            assert_eq!(due.event.event_type.as_deref(), Some("push"));
        }
        assert_eq!(store.queue_len("c").unwrap(), 0);
        store.close().await;
    }

    #[tokio::test]
    async fn concurrent_ingests_all_commit_with_increasing_ids() {
        let dir = tempfile::tempdir().unwrap();
        let store = open(&dir);
        let mut tasks = Vec::new();
        for i in 0..200 {
            let store = store.clone();
            let delivery = format!("d-{i}");
            tasks.push(tokio::spawn(async move {
                id_of(store.ingest(event(Some(&delivery), &["a"])).await.unwrap())
            }));
        }
        let mut ids = Vec::new();
        for t in tasks {
            ids.push(t.await.unwrap());
        }
        let mut sorted = ids.clone();
        sorted.sort();
        sorted.dedup();
        assert_eq!(sorted.len(), 200, "every event gets its own id");
        assert_eq!(store.queue_len("a").unwrap(), 200);
        store.close().await;
    }

    #[tokio::test]
    async fn copies_of_one_delivery_sent_at_once_are_accepted_once() {
        let dir = tempfile::tempdir().unwrap();
        let store = open(&dir);
        // Sent together, the copies land in one batch: the second must see the first.
        let tasks: Vec<_> = (0..8)
            .map(|_| {
                let store = store.clone();
                tokio::spawn(
                    async move { store.ingest(event(Some("same"), &["a"])).await.unwrap() },
                )
            })
            .collect();
        let mut accepted = Vec::new();
        let mut duplicates = Vec::new();
        for task in tasks {
            match task.await.unwrap() {
                Ingested::Accepted(id) => accepted.push(id),
                Ingested::Duplicate(id) => duplicates.push(id),
            }
        }
        assert_eq!(accepted.len(), 1);
        assert!(duplicates.iter().all(|id| *id == accepted[0]));
        assert_eq!(store.queue_len("a").unwrap(), 1);
        store.close().await;
    }

    #[tokio::test]
    async fn finish_reschedules_then_dead_letters_and_records_attempts() {
        let dir = tempfile::tempdir().unwrap();
        let store = open(&dir);
        let id = id_of(store.ingest(event(None, &["a"])).await.unwrap());
        let due = store.due("a", u64::MAX, 10, &HashSet::new()).unwrap();
        let entry = due.entries[0].entry.clone();
        let attempt = |outcome| AttemptRecord {
            started_ms: 1,
            duration_ms: 2,
            status: Some(503),
            error: Some("receiver answered 503".into()),
            outcome,
            message_id: None,
        };
        let retry_at = entry.due_ms + 60_000;
        store
            .finish(
                entry.clone(),
                attempt(AttemptOutcome::Retrying),
                NextStep::RetryAt(retry_at),
            )
            .await
            .unwrap();
        let now = store.due("a", entry.due_ms, 10, &HashSet::new()).unwrap();
        assert!(now.entries.is_empty(), "the retry is not due yet");
        assert_eq!(now.next_due_ms, Some(retry_at));
        let later = store.due("a", retry_at, 10, &HashSet::new()).unwrap();
        let second = later.entries[0].entry.clone();
        assert_eq!(second.attempt, 2);
        store
            .finish(
                second,
                attempt(AttemptOutcome::DeadLettered),
                NextStep::DeadLetter("receiver answered 503".into()),
            )
            .await
            .unwrap();
        assert_eq!(store.queue_len("a").unwrap(), 0);
        let dead = store.dead_letters("a").unwrap();
        assert_eq!(dead, vec![(id, 2, "receiver answered 503".to_string())]);
        let attempts = store.attempts(id).unwrap();
        assert_eq!(attempts.len(), 2);
        assert_eq!(attempts[1].2.outcome, AttemptOutcome::DeadLettered);
        store.close().await;
    }

    #[tokio::test]
    async fn due_skips_in_flight_entries_and_honours_the_limit() {
        let dir = tempfile::tempdir().unwrap();
        let store = open(&dir);
        let a = id_of(store.ingest(event(None, &["s"])).await.unwrap());
        let b = id_of(store.ingest(event(None, &["s"])).await.unwrap());
        let c = id_of(store.ingest(event(None, &["s"])).await.unwrap());
        let first = store.due("s", u64::MAX, 1, &HashSet::new()).unwrap();
        assert_eq!(first.entries[0].entry.event_id, a);
        assert!(
            first.next_due_ms.is_some(),
            "more is due: come back at once"
        );
        let skip: HashSet<_> = [a, b].into_iter().collect();
        let rest = store.due("s", u64::MAX, 10, &skip).unwrap();
        let ids: Vec<_> = rest.entries.iter().map(|d| d.entry.event_id).collect();
        assert_eq!(ids, vec![c]);
        store.close().await;
    }

    #[tokio::test]
    async fn committed_events_survive_reopening() {
        let dir = tempfile::tempdir().unwrap();
        let id = {
            let store = open(&dir);
            let id = id_of(store.ingest(event(Some("x"), &["a"])).await.unwrap());
            store.close().await;
            id
        };
        let store = open(&dir);
        assert_eq!(
            store.event(id).unwrap().unwrap().delivery_id.as_deref(),
            Some("x")
        );
        assert_eq!(store.queue_len("a").unwrap(), 1);
        assert_eq!(
            store.ingest(event(Some("x"), &["a"])).await.unwrap(),
            Ingested::Duplicate(id)
        );
        store.close().await;
    }

    #[tokio::test]
    async fn purge_removes_finished_events_and_keeps_pending_ones() {
        let dir = tempfile::tempdir().unwrap();
        let store = open(&dir);
        let done = id_of(store.ingest(event(Some("done"), &[])).await.unwrap());
        let waiting = id_of(store.ingest(event(Some("waiting"), &["a"])).await.unwrap());
        let step = store
            .purge(crate::clock::now_ms() + 1000, 100)
            .await
            .unwrap();
        assert_eq!((step.removed, step.kept, step.done), (1, 1, true));
        assert!(store.event(done).unwrap().is_none());
        assert!(store.event(waiting).unwrap().is_some());
        // Its dedup entry went with it: the same delivery id is a new event now.
        assert!(matches!(
            store.ingest(event(Some("done"), &[])).await.unwrap(),
            Ingested::Accepted(_)
        ));
        store.close().await;
    }

    #[tokio::test]
    async fn a_closed_store_refuses_new_work() {
        let dir = tempfile::tempdir().unwrap();
        let store = open(&dir);
        store.close().await;
        assert!(matches!(
            store.ingest(event(None, &["a"])).await,
            Err(StoreError::Closed)
        ));
    }

    #[tokio::test]
    async fn a_second_process_cannot_open_the_same_file() {
        let dir = tempfile::tempdir().unwrap();
        let store = open(&dir);
        let err = Store::open(&StorageConfig {
            path: store.path().to_path_buf(),
            retention: Duration::from_secs(1),
        })
        .err()
        .expect("second open must fail");
        assert!(err.to_string().contains("in use"), "{err}");
        store.close().await;
    }

    #[tokio::test]
    async fn a_damaged_file_is_named_damaged_with_what_to_do_not_a_panic() {
        let dir = tempfile::tempdir().unwrap();
        let store = open(&dir);
        for n in 0..200 {
            store
                .ingest(event(Some(&format!("d-{n}")), &["a"]))
                .await
                .unwrap();
        }
        let path = store.path().to_path_buf();
        store.close().await;
        drop(store);
        // Zero pages past the header, where the tables' pages are.
        let mut bytes = std::fs::read(&path).unwrap();
        let end = bytes.len().min(64 << 10);
        bytes[4096..end].fill(0);
        std::fs::write(&path, &bytes).unwrap();
        let err = Store::open(&StorageConfig {
            path,
            retention: Duration::from_secs(3600),
        })
        .err()
        .expect("a damaged file must not open");
        let err = err.to_string();
        assert!(
            err.contains("the file is damaged") && err.contains("restore the store from a backup"),
            "{err}"
        );
    }
}
