//! What the admin API reads and asks of the store: recent events by cursor, one event's
//! deliveries and attempts, dead letters, per-sink queue figures, and replays.
//!
//! Reads run in their own redb read transaction, so they never wait for the writer nor hold
//! it up; they are blocking (call them from `spawn_blocking`). Replays are writes and go
//! through the writer's group commit like every other write.
//!
//! Invariant: a replay is a new round of deliveries of the same event (same id, so the same
//! `webhook-id`): the attempt numbers go on, the retry budget starts again, and each attempt
//! of the round is recorded as a replay.

use std::collections::BTreeMap;
use std::sync::Arc;

use redb::ReadableDatabase;
use uuid::Uuid;

use super::codec::{self, DeadValue, PendingState};
use super::pack::{self, Row};
use super::tables::{ATTEMPTS, DEAD, EVENTS, PENDING, QUEUE};
use super::{AttemptRecord, EventId, Store, StoreError, StoredEvent, writer};

/// Most events one page of [`Store::recent_events`] looks at, matching or not, so a filter
/// that matches rarely cannot turn one request into a scan of the whole store.
const SCAN_PER_PAGE: usize = 10_000;

/// Where an event stands, over all its deliveries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventStatus {
    /// At least one delivery is a dead letter.
    Dead,
    /// No dead letter, and at least one delivery is queued or in flight.
    Pending,
    /// Every delivery is done.
    Delivered,
    /// No route sent it anywhere.
    Unrouted,
}

impl EventStatus {
    /// The name used in the API.
    pub fn as_str(self) -> &'static str {
        match self {
            EventStatus::Dead => "dead",
            EventStatus::Pending => "pending",
            EventStatus::Delivered => "delivered",
            EventStatus::Unrouted => "unrouted",
        }
    }

    /// Parses [`EventStatus::as_str`]'s names.
    pub fn parse(text: &str) -> Option<EventStatus> {
        [
            EventStatus::Dead,
            EventStatus::Pending,
            EventStatus::Delivered,
            EventStatus::Unrouted,
        ]
        .into_iter()
        .find(|s| s.as_str() == text)
    }
}

/// A filter and a page position for [`Store::recent_events`].
#[derive(Debug, Clone, Default)]
pub struct EventQuery {
    /// Only events older than this one (the previous page's cursor).
    pub before: Option<EventId>,
    /// Only this source's events.
    pub source: Option<String>,
    /// Only events of this type.
    pub event_type: Option<String>,
    /// Only events in this state.
    pub status: Option<EventStatus>,
    /// Most events to return.
    pub limit: usize,
}

/// One line of the event list.
#[derive(Debug, Clone)]
pub struct EventSummary {
    /// Its id.
    pub id: EventId,
    /// Source name.
    pub source: String,
    /// The sender's event type.
    pub event_type: Option<String>,
    /// The sender's delivery id.
    pub delivery_id: Option<String>,
    /// Unix milliseconds at acceptance.
    pub received_at_ms: u64,
    /// Body length in bytes.
    pub size: usize,
    /// Where its deliveries stand.
    pub status: EventStatus,
}

/// A page of events, newest first.
#[derive(Debug, Clone, Default)]
pub struct EventPage {
    /// The events.
    pub events: Vec<EventSummary>,
    /// Pass as `before` for the next page; `None` when there is nothing older.
    pub next: Option<EventId>,
}

/// Where one delivery (one event to one sink) stands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DeliveryState {
    /// In the sink's queue (or in flight), due at this time.
    Queued {
        /// Unix milliseconds.
        due_ms: u64,
    },
    /// A dead letter.
    Dead {
        /// Unix milliseconds when it was dead-lettered; `None` if its record is unreadable.
        at_ms: Option<u64>,
        /// Why.
        reason: Option<String>,
    },
    /// Done.
    Delivered,
}

/// One recorded attempt, as the API shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AttemptView {
    /// The sink.
    pub sink: String,
    /// Its number for this sink, 1 for the first; replays go on counting.
    pub number: u32,
    /// What happened.
    pub record: AttemptRecord,
    /// Made in a round started by a replay.
    pub replay: bool,
}

/// One dead letter.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeadLetter {
    /// The event.
    pub event_id: EventId,
    /// Unix milliseconds when it was dead-lettered.
    pub at_ms: u64,
    /// Attempts made in its last round.
    pub attempts: u32,
    /// Why.
    pub reason: String,
}

/// How old [`Store::sink_stats_recent`]'s counts may be. Counting walks every queued
/// delivery and dead letter (0.2 s for two million), and each console tab and scraper asks
/// every few seconds: without a bound, a few of them together slowed ingest to a third.
const STATS_MAX_AGE: std::time::Duration = std::time::Duration::from_secs(1);
/// Counts that took less than this are counted afresh for every caller: exact, and cheap.
const STATS_EXPENSIVE: std::time::Duration = std::time::Duration::from_millis(20);

/// Counts kept for [`Store::sink_stats_recent`].
pub(super) struct CachedStats {
    at: std::time::Instant,
    /// How long counting them took.
    took: std::time::Duration,
    sinks: Vec<String>,
    stats: Vec<SinkStats>,
}

/// A sink's queue and dead letters, counted.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SinkStats {
    /// Entries queued, due or not, in flight included.
    pub queued: u64,
    /// Unix milliseconds at which the oldest queued event was received.
    pub oldest_queued_ms: Option<u64>,
    /// Dead letters.
    pub dead: u64,
}

/// What a replay did for one sink.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Replayed {
    /// Queued again, due now.
    Queued,
    /// Already queued or in flight: left as it was.
    AlreadyQueued,
    /// The event is gone (retention removed it).
    NoSuchEvent,
}

fn read_err(e: impl Into<redb::Error>) -> StoreError {
    StoreError::Read(e.into().to_string())
}

/// An `EVENTS` row, or a read error that names it.
fn parse_row(key: u128, bytes: &[u8]) -> Result<Row<'_>, StoreError> {
    Row::parse(key, bytes)
        .map_err(|e| StoreError::Read(format!("event row {}: {e}", Uuid::from_u128(key))))
}

/// The Unix millisecond time a UUIDv7 key carries in its top 48 bits.
fn key_ms(key: u128) -> u64 {
    (key >> 80) as u64
}

impl Store {
    /// A page of events, newest first, matching `query`. Blocking.
    pub fn recent_events(&self, query: &EventQuery) -> Result<EventPage, StoreError> {
        // Held for the whole read, so a reopen after an I/O error waits for it.
        let db = self.inner.db.get()?;
        let txn = db.begin_read().map_err(read_err)?;
        let events = txn.open_table(EVENTS).map_err(read_err)?;
        let pending = txn.open_table(PENDING).map_err(read_err)?;
        let attempts = txn.open_table(ATTEMPTS).map_err(read_err)?;
        let upper = query.before.map_or(u128::MAX, |id| id.as_u128());
        let mut page = EventPage::default();
        let mut last_key = None;
        let mut scanned = 0;
        for item in events.range(..upper).map_err(read_err)?.rev() {
            let (row_key, value) = item.map_err(read_err)?;
            let row = parse_row(row_key.value(), value.value())?;
            for (key, record) in row.members().rev().filter(|(key, _)| *key < upper) {
                if page.events.len() >= query.limit || scanned >= SCAN_PER_PAGE {
                    // More may follow: resume below the last one looked at.
                    page.next = last_key.map(Uuid::from_u128);
                    return Ok(page);
                }
                scanned += 1;
                last_key = Some(key);
                let id = Uuid::from_u128(key);
                let (meta, body_len) = codec::decode_event_head(record)
                    .map_err(|e| StoreError::Read(format!("event {id}: {e}")))?;
                if query.source.as_ref().is_some_and(|s| *s != meta.source)
                    || query
                        .event_type
                        .as_ref()
                        .is_some_and(|t| Some(t) != meta.event_type.as_ref())
                {
                    continue;
                }
                let status = status_of(&pending, &attempts, key)?;
                if query.status.is_some_and(|s| s != status) {
                    continue;
                }
                page.events.push(EventSummary {
                    id,
                    source: meta.source,
                    event_type: meta.event_type,
                    delivery_id: meta.delivery_id,
                    received_at_ms: meta.received_at_ms,
                    size: body_len,
                    status,
                });
            }
        }
        Ok(page)
    }

    /// One event with where each of its deliveries stands, by sink name; `None` if there is
    /// no such event. Blocking.
    #[allow(clippy::type_complexity)]
    pub fn event_detail(
        &self,
        id: EventId,
    ) -> Result<Option<(StoredEvent, Vec<(String, DeliveryState)>, Vec<AttemptView>)>, StoreError>
    {
        // Held for the whole read, so a reopen after an I/O error waits for it.
        let db = self.inner.db.get()?;
        let txn = db.begin_read().map_err(read_err)?;
        let events = txn.open_table(EVENTS).map_err(read_err)?;
        let pending = txn.open_table(PENDING).map_err(read_err)?;
        let attempts = txn.open_table(ATTEMPTS).map_err(read_err)?;
        let dead = txn.open_table(DEAD).map_err(read_err)?;
        let key = id.as_u128();
        let Some(event) = super::read_event(&events, id)? else {
            return Ok(None);
        };

        let mut history = Vec::new();
        let mut states: BTreeMap<String, DeliveryState> = BTreeMap::new();
        for item in attempts
            .range((key, "", 0u32)..(key + 1, "", 0u32))
            .map_err(read_err)?
        {
            let (k, v) = item.map_err(read_err)?;
            let (_, sink, number) = k.value();
            let value = codec::decode_attempt(v.value())
                .map_err(|e| StoreError::Read(format!("attempt of event {id}: {e}")))?;
            states.insert(sink.to_string(), DeliveryState::Delivered);
            history.push(AttemptView {
                sink: sink.to_string(),
                number,
                record: AttemptRecord {
                    started_ms: value.started_ms,
                    duration_ms: value.duration_ms,
                    status: value.status,
                    error: value.error,
                    outcome: value.outcome,
                    message_id: value.message_id,
                },
                replay: value.replay,
            });
        }
        for item in pending.range((key, "")..(key + 1, "")).map_err(read_err)? {
            let (k, v) = item.map_err(read_err)?;
            let sink = k.value().1;
            let state = match codec::decode::<PendingState>(v.value()) {
                Ok(PendingState::Queued { due_ms }) => DeliveryState::Queued { due_ms },
                Ok(PendingState::Dead) | Err(_) => {
                    let record = dead
                        .get((sink, key))
                        .map_err(read_err)?
                        .and_then(|d| codec::decode::<DeadValue>(d.value()).ok());
                    DeliveryState::Dead {
                        at_ms: record.as_ref().map(|d| d.at_ms),
                        reason: record.map(|d| d.reason),
                    }
                }
            };
            states.insert(sink.to_string(), state);
        }
        Ok(Some((event, states.into_iter().collect(), history)))
    }

    /// Up to `limit` dead letters of `sink`, newest event first, older than `before`.
    /// Blocking.
    pub fn dead_letter_page(
        &self,
        sink: &str,
        before: Option<EventId>,
        limit: usize,
    ) -> Result<(Vec<DeadLetter>, Option<EventId>), StoreError> {
        // Held for the whole read, so a reopen after an I/O error waits for it.
        let db = self.inner.db.get()?;
        let txn = db.begin_read().map_err(read_err)?;
        let dead = txn.open_table(DEAD).map_err(read_err)?;
        let upper = before.map_or(u128::MAX, |id| id.as_u128());
        let mut out = Vec::new();
        let range = dead
            .range((sink, 0u128)..(sink, upper))
            .map_err(read_err)?
            .rev();
        for item in range {
            if out.len() >= limit {
                let next = out.last().map(|d: &DeadLetter| d.event_id);
                return Ok((out, next));
            }
            let (k, v) = item.map_err(read_err)?;
            let event_id = Uuid::from_u128(k.value().1);
            let value: DeadValue = codec::decode(v.value()).map_err(|e| {
                StoreError::Read(format!("dead letter of sink {sink}, event {event_id}: {e}"))
            })?;
            out.push(DeadLetter {
                event_id,
                at_ms: value.at_ms,
                attempts: value.attempts,
                reason: value.reason,
            });
        }
        Ok((out, None))
    }

    /// [`Store::sink_stats`] for the admin API and `/metrics`. While counting is cheap, it
    /// is done for every caller; once it takes long (a large backlog), at most once a second
    /// for the same sinks however many ask: a caller then gets counts up to a second old,
    /// and one that comes while they are being counted waits for them instead of counting
    /// again. Blocking.
    pub fn sink_stats_recent(&self, sinks: &[&str]) -> Result<Vec<SinkStats>, StoreError> {
        let mut cache = self
            .inner
            .stats_cache
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        if let Some(cached) = cache.as_ref()
            && cached.took >= STATS_EXPENSIVE
            && cached.at.elapsed() < STATS_MAX_AGE
            && cached
                .sinks
                .iter()
                .map(String::as_str)
                .eq(sinks.iter().copied())
        {
            return Ok(cached.stats.clone());
        }
        let started = std::time::Instant::now();
        let stats = self.sink_stats(sinks)?;
        *cache = Some(CachedStats {
            at: std::time::Instant::now(),
            took: started.elapsed(),
            sinks: sinks.iter().map(|s| s.to_string()).collect(),
            stats: stats.clone(),
        });
        Ok(stats)
    }

    /// Queue and dead-letter figures of each sink, in one consistent read. Blocking; counts
    /// every entry, so it costs O(queued + dead).
    pub fn sink_stats(&self, sinks: &[&str]) -> Result<Vec<SinkStats>, StoreError> {
        // Held for the whole read, so a reopen after an I/O error waits for it.
        let db = self.inner.db.get()?;
        let txn = db.begin_read().map_err(read_err)?;
        let queue = txn.open_table(QUEUE).map_err(read_err)?;
        let dead = txn.open_table(DEAD).map_err(read_err)?;
        let mut out = Vec::with_capacity(sinks.len());
        for sink in sinks {
            let mut stats = SinkStats::default();
            let mut oldest = u128::MAX;
            for item in queue
                .range((*sink, 0u64, 0u128)..=(*sink, u64::MAX, u128::MAX))
                .map_err(read_err)?
            {
                let (k, _) = item.map_err(read_err)?;
                stats.queued += 1;
                oldest = oldest.min(k.value().2);
            }
            if stats.queued > 0 {
                stats.oldest_queued_ms = Some(key_ms(oldest));
            }
            stats.dead = dead
                .range((*sink, 0u128)..=(*sink, u128::MAX))
                .map_err(read_err)?
                .count() as u64;
            out.push(stats);
        }
        Ok(out)
    }

    /// Names of the sinks the store holds queued entries or dead letters for, configured
    /// or not (a sink removed from the config keeps its queue), in name order. Blocking;
    /// one seek per name, whatever the queues' lengths.
    pub fn sinks_with_entries(&self) -> Result<Vec<String>, StoreError> {
        use std::ops::Bound::{Excluded, Unbounded};
        // Held for the whole read, so a reopen after an I/O error waits for it.
        let db = self.inner.db.get()?;
        let txn = db.begin_read().map_err(read_err)?;
        let queue = txn.open_table(QUEUE).map_err(read_err)?;
        let dead = txn.open_table(DEAD).map_err(read_err)?;
        let mut names = std::collections::BTreeSet::new();
        // Each step skips past every key of the name just seen: keys sort by sink first.
        each_leading_name(&mut names, |after| {
            let mut range = match after {
                None => queue.range::<(&str, u64, u128)>(..),
                Some(name) => queue
                    .range::<(&str, u64, u128)>((Excluded((name, u64::MAX, u128::MAX)), Unbounded)),
            }?;
            Ok(range
                .next()
                .transpose()?
                .map(|(key, _)| key.value().0.to_string()))
        })?;
        each_leading_name(&mut names, |after| {
            let mut range = match after {
                None => dead.range::<(&str, u128)>(..),
                Some(name) => dead.range::<(&str, u128)>((Excluded((name, u128::MAX)), Unbounded)),
            }?;
            Ok(range
                .next()
                .transpose()?
                .map(|(key, _)| key.value().0.to_string()))
        })?;
        Ok(names.into_iter().collect())
    }

    /// Ids of up to `limit` events received in `[from_ms, to_ms)`, oldest first, after
    /// `after` (the last id of the previous page). Blocking.
    pub fn event_ids_between(
        &self,
        from_ms: u64,
        to_ms: u64,
        after: Option<EventId>,
        limit: usize,
    ) -> Result<Vec<EventId>, StoreError> {
        // Held for the whole read, so a reopen after an I/O error waits for it.
        let db = self.inner.db.get()?;
        let txn = db.begin_read().map_err(read_err)?;
        let events = txn.open_table(EVENTS).map_err(read_err)?;
        // Ids are UUIDv7: their top 48 bits are the acceptance time, so a time range is a
        // key range.
        let lower = match after {
            Some(id) => id.as_u128().saturating_add(1),
            None => u128::from(from_ms) << 80,
        };
        let upper = u128::from(to_ms.min((1 << 48) - 1)) << 80;
        let mut out = Vec::new();
        if lower >= upper {
            return Ok(out);
        }
        for item in pack::rows_between(&events, lower, upper).map_err(read_err)? {
            let (row_key, value) = item.map_err(read_err)?;
            let row = parse_row(row_key.value(), value.value())?;
            for (key, _) in row.members() {
                if out.len() >= limit || key >= upper {
                    return Ok(out);
                }
                if key >= lower {
                    out.push(Uuid::from_u128(key));
                }
            }
        }
        Ok(out)
    }

    /// The redb file's size in bytes.
    pub fn file_size(&self) -> std::io::Result<u64> {
        Ok(std::fs::metadata(&self.inner.path)?.len())
    }

    /// Resolves once a commit succeeded after the call: the store is writable. While
    /// commits fail, the ping is a probe that needs new space as events do (a full disk can
    /// still take a commit of nothing), and the store counts as writable only once one
    /// succeeds.
    pub async fn ping(&self) -> Result<(), StoreError> {
        let failing = self.health().borrow().failing_since_ms.is_some();
        self.submit(|reply| writer::Op::Ping {
            probe: failing,
            reply,
        })
        .await?;
        match self.health().borrow().last_error.clone() {
            Some(error) => Err(StoreError::Commit(error)),
            None => Ok(()),
        }
    }

    /// Queues `event_id` again for each of `sinks`, as a new round of deliveries, durably.
    /// Returns what happened for each sink, in order.
    pub async fn replay(
        &self,
        event_id: EventId,
        sinks: Vec<Arc<str>>,
    ) -> Result<Vec<Replayed>, StoreError> {
        self.submit(|reply| writer::Op::Replay {
            event_id,
            sinks,
            reply,
        })
        .await
    }

    /// Queues `sink`'s dead letters dead-lettered at or after `since_ms` again, `limit` at a
    /// time, each page one small transaction; returns how many.
    pub async fn replay_dead(
        &self,
        sink: Arc<str>,
        since_ms: u64,
        limit: usize,
    ) -> Result<usize, StoreError> {
        let mut replayed = 0;
        let mut after = None;
        loop {
            let page = self
                .replay_dead_page(sink.clone(), since_ms, after, limit)
                .await?;
            replayed += page.replayed;
            match page.next {
                Some(next) => after = Some(next),
                None => return Ok(replayed),
            }
        }
    }

    /// One page of [`Store::replay_dead`]: up to `limit` dead letters of events after
    /// `after`, in one small transaction.
    async fn replay_dead_page(
        &self,
        sink: Arc<str>,
        since_ms: u64,
        after: Option<u128>,
        limit: usize,
    ) -> Result<writer::DeadPage, StoreError> {
        self.submit(|reply| writer::Op::ReplayDead {
            sink,
            since_ms,
            after,
            limit,
            reply,
        })
        .await
    }
}

/// An event's status from its pending deliveries and attempts.
fn status_of(
    pending: &redb::ReadOnlyTable<(u128, &str), &[u8]>,
    attempts: &redb::ReadOnlyTable<(u128, &str, u32), &[u8]>,
    key: u128,
) -> Result<EventStatus, StoreError> {
    let mut queued = false;
    for item in pending.range((key, "")..(key + 1, "")).map_err(read_err)? {
        let (_, v) = item.map_err(read_err)?;
        match codec::decode::<PendingState>(v.value()) {
            Ok(PendingState::Queued { .. }) => queued = true,
            Ok(PendingState::Dead) | Err(_) => return Ok(EventStatus::Dead),
        }
    }
    if queued {
        return Ok(EventStatus::Pending);
    }
    let attempted = attempts
        .range((key, "", 0u32)..(key + 1, "", 0u32))
        .map_err(read_err)?
        .next()
        .is_some();
    Ok(if attempted {
        EventStatus::Delivered
    } else {
        EventStatus::Unrouted
    })
}

/// Adds to `names` every distinct sink name that leads a table's keys, one seek per name:
/// `first_after` returns the first name after the given one (or the table's first).
fn each_leading_name(
    names: &mut std::collections::BTreeSet<String>,
    mut first_after: impl FnMut(Option<&str>) -> Result<Option<String>, redb::StorageError>,
) -> Result<(), StoreError> {
    let mut last: Option<String> = None;
    while let Some(name) = first_after(last.as_deref()).map_err(read_err)? {
        names.insert(name.clone());
        last = Some(name);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;
    use std::time::Duration;

    use bytes::Bytes;

    use super::*;
    use crate::config::StorageConfig;
    use crate::store::{AttemptOutcome, Ingested, NewEvent, NextStep};

    fn open(dir: &tempfile::TempDir) -> Store {
        Store::open(&StorageConfig {
            path: dir.path().join("store.redb"),
            retention: Duration::from_secs(3600),
        })
        .unwrap()
    }

    async fn ingest(store: &Store, source: &str, event_type: &str, sinks: &[&str]) -> EventId {
        let event = NewEvent {
            source: Arc::from(source),
            event_type: Some(event_type.into()),
            delivery_id: None,
            content_type: None,
            headers: Vec::new(),
            body: Bytes::from_static(b"{}"),
            sinks: sinks.iter().map(|s| Arc::from(*s)).collect(),
        };
        match store.ingest(event).await.unwrap() {
            Ingested::Accepted(id) => id,
            other => panic!("{other:?}"),
        }
    }

    /// Takes `sink`'s due entry for `id` and records one attempt ending in `next`.
    async fn attempt(store: &Store, sink: &str, outcome: AttemptOutcome, next: NextStep) {
        let due = store.due(sink, u64::MAX, 1, &HashSet::new()).unwrap();
        let entry = due.entries[0].entry.clone();
        let record = AttemptRecord {
            started_ms: 1,
            duration_ms: 1,
            status: Some(500),
            error: Some("receiver answered 500".into()),
            outcome,
            message_id: None,
        };
        store.finish(entry, record, next).await.unwrap();
    }

    #[tokio::test]
    async fn sinks_with_entries_names_each_queue_and_dead_letter_holder_once() {
        let dir = tempfile::tempdir().unwrap();
        let store = open(&dir);
        assert!(store.sinks_with_entries().unwrap().is_empty());
        for _ in 0..3 {
            ingest(&store, "github", "push", &["audit", "chat", "gone"]).await;
        }
        ingest(&store, "github", "push", &["a"]).await;
        // "dead" ends with one dead letter and an empty queue.
        ingest(&store, "github", "push", &["dead"]).await;
        attempt(
            &store,
            "dead",
            AttemptOutcome::DeadLettered,
            NextStep::DeadLetter("gave up".into()),
        )
        .await;
        // "done" ends with nothing: it is not named.
        ingest(&store, "github", "push", &["done"]).await;
        attempt(&store, "done", AttemptOutcome::Delivered, NextStep::Done).await;
        assert_eq!(
            store.sinks_with_entries().unwrap(),
            ["a", "audit", "chat", "dead", "gone"]
        );
        store.close().await;
    }

    #[tokio::test]
    async fn recent_events_page_newest_first_with_filters() {
        let dir = tempfile::tempdir().unwrap();
        let store = open(&dir);
        let mut ids = Vec::new();
        for i in 0..5 {
            let source = if i % 2 == 0 { "github" } else { "gitlab" };
            ids.push(ingest(&store, source, "push", &[]).await);
        }
        let first = store
            .recent_events(&EventQuery {
                limit: 2,
                ..EventQuery::default()
            })
            .unwrap();
        let got: Vec<_> = first.events.iter().map(|e| e.id).collect();
        assert_eq!(got, vec![ids[4], ids[3]]);
        let second = store
            .recent_events(&EventQuery {
                limit: 2,
                before: first.next,
                ..EventQuery::default()
            })
            .unwrap();
        let got: Vec<_> = second.events.iter().map(|e| e.id).collect();
        assert_eq!(got, vec![ids[2], ids[1]]);
        let github = store
            .recent_events(&EventQuery {
                limit: 10,
                source: Some("github".into()),
                ..EventQuery::default()
            })
            .unwrap();
        let got: Vec<_> = github.events.iter().map(|e| e.id).collect();
        assert_eq!(got, vec![ids[4], ids[2], ids[0]]);
        assert_eq!(github.next, None, "nothing older");
        assert!(
            github
                .events
                .iter()
                .all(|e| e.status == EventStatus::Unrouted)
        );
        store.close().await;
    }

    #[tokio::test]
    async fn a_replayed_dead_letter_is_a_new_round_recorded_as_a_replay() {
        let dir = tempfile::tempdir().unwrap();
        let store = open(&dir);
        let id = ingest(&store, "github", "push", &["a"]).await;
        attempt(
            &store,
            "a",
            AttemptOutcome::DeadLettered,
            NextStep::DeadLetter("gave up".into()),
        )
        .await;
        let status = |store: &Store| {
            store
                .recent_events(&EventQuery {
                    limit: 1,
                    ..EventQuery::default()
                })
                .unwrap()
                .events[0]
                .status
        };
        assert_eq!(status(&store), EventStatus::Dead);
        assert_eq!(store.sink_stats(&["a"]).unwrap()[0].dead, 1);

        assert_eq!(store.replay_dead(Arc::from("a"), 0, 10).await.unwrap(), 1);
        assert_eq!(status(&store), EventStatus::Pending);
        let stats = store.sink_stats(&["a"]).unwrap()[0];
        assert_eq!((stats.queued, stats.dead), (1, 0));
        assert!(stats.oldest_queued_ms.is_some());
        let due = store.due("a", u64::MAX, 1, &HashSet::new()).unwrap();
        let entry = &due.entries[0].entry;
        assert_eq!((entry.attempt, entry.first_attempt), (2, 2));
        // Replaying what is already queued leaves it as it is.
        assert_eq!(
            store.replay(id, vec![Arc::from("a")]).await.unwrap(),
            vec![Replayed::AlreadyQueued]
        );

        attempt(&store, "a", AttemptOutcome::Delivered, NextStep::Done).await;
        assert_eq!(status(&store), EventStatus::Delivered);
        let (_, states, history) = store.event_detail(id).unwrap().unwrap();
        assert_eq!(states, vec![("a".to_string(), DeliveryState::Delivered)]);
        let replays: Vec<_> = history.iter().map(|a| (a.number, a.replay)).collect();
        assert_eq!(replays, vec![(1, false), (2, true)]);

        // A delivered event can be replayed too; an unknown one cannot.
        assert_eq!(
            store.replay(id, vec![Arc::from("a")]).await.unwrap(),
            vec![Replayed::Queued]
        );
        assert_eq!(
            store
                .replay(Uuid::now_v7(), vec![Arc::from("a")])
                .await
                .unwrap(),
            vec![Replayed::NoSuchEvent]
        );
        store.ping().await.unwrap();
        store.close().await;
    }

    #[tokio::test]
    async fn dead_letters_replay_only_since_the_given_time() {
        let dir = tempfile::tempdir().unwrap();
        let store = open(&dir);
        for _ in 0..3 {
            ingest(&store, "github", "push", &["a"]).await;
            attempt(
                &store,
                "a",
                AttemptOutcome::DeadLettered,
                NextStep::DeadLetter("gave up".into()),
            )
            .await;
        }
        let (all, next) = store.dead_letter_page("a", None, 10).unwrap();
        assert_eq!(all.len(), 3);
        assert_eq!(next, None);
        assert!(all[0].event_id > all[1].event_id, "newest first");
        let (first, next) = store.dead_letter_page("a", None, 2).unwrap();
        assert_eq!(first.len(), 2);
        let (rest, _) = store.dead_letter_page("a", next, 2).unwrap();
        assert_eq!(rest, vec![all[2].clone()]);

        let future = crate::clock::now_ms() + 60_000;
        assert_eq!(
            store.replay_dead(Arc::from("a"), future, 10).await.unwrap(),
            0
        );
        // One replay goes forward by event id: a page's entries that fail again and are
        // dead-lettered again while it runs are not replayed twice. Before, each page read
        // from the start, and one "replay all" sent an event up to five times.
        let sink: Arc<str> = Arc::from("a");
        let page = store
            .replay_dead_page(sink.clone(), 0, None, 2)
            .await
            .unwrap();
        assert_eq!(page.replayed, 2);
        for _ in 0..2 {
            attempt(
                &store,
                "a",
                AttemptOutcome::DeadLettered,
                NextStep::DeadLetter("gave up again".into()),
            )
            .await;
        }
        assert_eq!(store.sink_stats(&["a"]).unwrap()[0].dead, 3);
        let rest = store
            .replay_dead_page(sink.clone(), 0, page.next, 2)
            .await
            .unwrap();
        assert_eq!(
            rest,
            writer::DeadPage {
                replayed: 1,
                next: None
            }
        );
        let stats = store.sink_stats(&["a"]).unwrap()[0];
        assert_eq!((stats.queued, stats.dead), (1, 2));
        store.close().await;
    }
}
