//! Retention's sweep: which expired events go, in steps small enough that a purge never
//! holds the writer long, and resuming where the last step stopped.
//!
//! Events are keyed by UUIDv7, so "received before the cutoff" is an id range. The sweep walks
//! that range once, from its cursor up, event by event through the packs that hold them: an
//! event with no pending or dead-lettered delivery (no `PENDING` row) is removed with
//! everything keyed by it (its attempts, its dedup entry and in-memory index entry; its pack
//! is rewritten without it, or removed with its last event); one that still has work is kept
//! back and stepped over. Every event below the cursor has been looked at, so the events left
//! there are exactly the kept ones, and a later pass reads none of them again. When the last
//! delivery of a kept event ends (`note_done`, called by the writer as it records a delivered
//! attempt), the event is *released*; the next step re-checks it and removes it.
//!
//! Invariants: only the writer thread holds a `Sweep`, so it needs no lock. A step changes the
//! sweep only through `SweepChanges`, applied once its transaction is committed: a failed
//! commit leaves the sweep as the file is. Ids are strictly increasing (across restarts too)
//! and every new event is newer than the cutoff, so no event appears below the cursor after
//! the sweep passed. The sweep lives in memory: at each start it begins at the oldest event
//! again, which costs one walk over the kept events per start, in the same small steps.

use std::collections::BTreeSet;

use redb::ReadableTable;

use super::PurgeStep;
use super::pack::{self, Row};

/// Where the sweep stands; held by the writer.
#[derive(Debug, Default)]
pub(super) struct Sweep {
    /// Every event whose key is below this has been looked at by a step.
    cursor: u128,
    /// Kept events below the cursor whose deliveries have all ended since.
    released: BTreeSet<u128>,
    /// Events below the cursor still held for a pending or dead-lettered delivery.
    kept: u64,
}

/// One batch's changes to the sweep, applied only after its commit succeeded.
#[derive(Debug, Default)]
pub(super) struct SweepChanges {
    cursor: Option<u128>,
    released: Vec<u128>,
    /// Released events a step removed, or found with work again (replayed).
    settled: Vec<u128>,
    /// Change in the number of kept events.
    kept: i64,
}

impl Sweep {
    /// Applies a committed batch's changes.
    pub(super) fn apply(&mut self, changes: SweepChanges) {
        if let Some(cursor) = changes.cursor {
            self.cursor = cursor;
        }
        for key in changes.settled {
            self.released.remove(&key);
        }
        self.released.extend(changes.released);
        self.kept = self.kept.saturating_add_signed(changes.kept);
    }

    /// Called after a delivery of event `key` ended (its `PENDING` row removed) in this
    /// transaction: an event the sweep kept back is released once its last delivery ended.
    /// Costs one comparison for any event newer than the cursor, which is nearly all of them.
    pub(super) fn note_done(
        &self,
        changes: &mut SweepChanges,
        pending: &redb::Table<(u128, &str), &[u8]>,
        key: u128,
    ) -> Result<(), redb::Error> {
        // Already released (and not settled by a step earlier in this batch): nothing to do.
        let released = (self.released.contains(&key) && !changes.settled.contains(&key))
            || changes.released.contains(&key);
        if key >= changes.cursor.unwrap_or(self.cursor) || released {
            return Ok(());
        }
        if has_work(pending, key)? {
            return Ok(());
        }
        changes.released.push(key);
        changes.kept -= 1;
        Ok(())
    }

    /// One step: looks at up to `budget` events received before `cutoff_ms` (released ones
    /// first, then from the cursor up) and removes those with no pending or dead-lettered
    /// delivery, with everything keyed by them.
    pub(super) fn step(
        &self,
        changes: &mut SweepChanges,
        removed_prints: &mut Vec<(u64, u128)>,
        tables: &mut Tables<'_, '_>,
        cutoff_ms: u64,
        budget: usize,
    ) -> Result<PurgeStep, redb::Error> {
        // UUIDv7 keeps the Unix millisecond time in its top 48 bits.
        let cutoff_key = u128::from(cutoff_ms.min((1 << 48) - 1)) << 80;
        let mut step = PurgeStep::default();
        let mut looked = 0;
        let mut doomed = Vec::new();
        // Only committed releases: one made earlier in this batch waits for the next step.
        for &key in self.released.range(..cutoff_key).take(budget) {
            looked += 1;
            changes.settled.push(key);
            if has_work(tables.pending, key)? {
                // Replayed since: kept again, released again when this round ends.
                changes.kept += 1;
            } else {
                doomed.push(key);
            }
        }
        let start = changes.cursor.unwrap_or(self.cursor);
        let mut next = start;
        let mut exhausted = true;
        if start < cutoff_key {
            'rows: for item in pack::rows_between(&*tables.events, start, cutoff_key)? {
                let (row_key, value) = item?;
                let row_key = row_key.value();
                let row = match Row::parse(row_key, value.value()) {
                    Ok(row) => row,
                    Err(_) if row_key < start => continue,
                    Err(err) => {
                        if looked >= budget {
                            exhausted = false;
                            break;
                        }
                        // Its events cannot be told apart: kept, as one, and reported.
                        tracing::error!(row = %uuid::Uuid::from_u128(row_key), error = %err, "retention skips a damaged event row");
                        looked += 1;
                        next = row_key + 1;
                        changes.kept += 1;
                        continue;
                    }
                };
                for (key, _) in row.members() {
                    if key < start {
                        continue;
                    }
                    if key >= cutoff_key {
                        break 'rows;
                    }
                    if looked >= budget {
                        exhausted = false;
                        break 'rows;
                    }
                    looked += 1;
                    next = key + 1;
                    if has_work(tables.pending, key)? {
                        changes.kept += 1;
                    } else {
                        doomed.push(key);
                    }
                }
            }
        }
        step.removed = remove_events(tables, removed_prints, &mut doomed)?;
        // One past the last key looked at, not the cutoff: a new event's key is above every
        // stored one, but may be below an old cutoff if the clock stepped back.
        changes.cursor = Some(next);
        step.looked = looked;
        step.done = exhausted && self.released.range(..cutoff_key).nth(budget).is_none();
        step.kept = self.kept.saturating_add_signed(changes.kept);
        Ok(step)
    }
}

/// The tables a sweep step reads and writes, open in the writer's transaction.
pub(super) struct Tables<'a, 't> {
    pub(super) events: &'a mut redb::Table<'t, u128, &'static [u8]>,
    pub(super) dedup_packs: &'a mut redb::Table<'t, u128, &'static [u8]>,
    pub(super) dedup_log: &'a mut redb::Table<'t, u128, u64>,
    pub(super) pending: &'a redb::Table<'t, (u128, &'static str), &'static [u8]>,
    pub(super) attempts: &'a mut redb::Table<'t, (u128, &'static str, u32), &'static [u8]>,
}

/// Whether the event still has a pending or dead-lettered delivery.
fn has_work(pending: &redb::Table<(u128, &str), &[u8]>, key: u128) -> Result<bool, redb::Error> {
    Ok(pending
        .range((key, "")..(key + 1, ""))?
        .next()
        .transpose()?
        .is_some())
}

/// Removes events and everything keyed by them: their attempts and their dedup entries
/// (whose fingerprints go to `removed_prints`, for the in-memory index once the batch
/// commits). Each pack holding some of them is rewritten once without them, or removed with
/// its last event. Queue and dead-letter rows exist only beside a `PENDING` row, so an event
/// without one has none. Returns how many were removed.
fn remove_events(
    tables: &mut Tables<'_, '_>,
    removed_prints: &mut Vec<(u64, u128)>,
    ids: &mut [u128],
) -> Result<usize, redb::Error> {
    ids.sort_unstable();
    let mut removed = 0;
    let mut rest = &ids[..];
    while let Some(&first) = rest.first() {
        let found = pack::row_for(&*tables.events, first)?
            .map(|(key, value)| (key.value(), value.value().to_vec()));
        let Some((row_key, bytes)) = found else {
            rest = &rest[1..];
            continue;
        };
        let Ok(row) = Row::parse(row_key, &bytes) else {
            rest = &rest[1..];
            continue;
        };
        let last = row.member(row.len() - 1).0;
        let in_row = rest.iter().take_while(|id| **id <= last).count().max(1);
        let (gone, later) = rest.split_at(in_row);
        rest = later;
        let stays = |id: &u128| gone.binary_search(id).is_err();
        let kept: Vec<(u128, &[u8])> = row.members().filter(|(id, _)| stays(id)).collect();
        removed += row.len() - kept.len();
        if kept.is_empty() {
            tables.events.remove(row_key)?;
        } else if kept.len() < row.len() {
            let value = pack::encode_pack(kept.iter().copied());
            tables.events.insert(row_key, value.as_slice())?;
        }
        if row.is_single() {
            if kept.is_empty()
                && let Some(print) = tables.dedup_log.remove(row_key)?
            {
                removed_prints.push((print.value(), row_key));
            }
        } else {
            remove_dedup_entries(tables.dedup_packs, removed_prints, row_key, &stays)?;
        }
        for &id in gone {
            tables
                .attempts
                .retain_in((id, "", 0)..(id + 1, "", 0), |_, _| false)?;
        }
    }
    Ok(removed)
}

/// Rewrites the dedup pack under `row_key` with only the events that stay.
fn remove_dedup_entries(
    dedup_packs: &mut redb::Table<u128, &[u8]>,
    removed_prints: &mut Vec<(u64, u128)>,
    row_key: u128,
    stays: &impl Fn(&u128) -> bool,
) -> Result<(), redb::Error> {
    let Some(value) = dedup_packs.get(row_key)? else {
        return Ok(());
    };
    // A damaged dedup pack cannot be read: it goes, and the events that stay lose only
    // their dedup entry.
    let entries = pack::decode_dedup_pack(value.value()).unwrap_or_default();
    drop(value);
    let (kept, gone): (Vec<_>, Vec<_>) = entries.into_iter().partition(|(id, _)| stays(id));
    removed_prints.extend(gone.iter().map(|&(id, print)| (print, id)));
    if kept.is_empty() {
        dedup_packs.remove(row_key)?;
    } else if !gone.is_empty() {
        dedup_packs.insert(row_key, pack::encode_dedup_pack(&kept).as_slice())?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;
    use std::sync::Arc;
    use std::time::Duration;

    use bytes::Bytes;
    use redb::{ReadableDatabase, ReadableTable, ReadableTableMetadata};

    use super::super::pack;
    use super::super::tables::{ATTEMPTS, DEDUP_LOG, DEDUP_PACKS};
    use super::super::{
        AttemptOutcome, AttemptRecord, EventId, Ingested, NewEvent, NextStep, PurgeStep, Replayed,
        Store,
    };
    use crate::clock::now_ms;
    use crate::config::StorageConfig;

    fn open(dir: &tempfile::TempDir) -> Store {
        Store::open(&StorageConfig {
            path: dir.path().join("store.redb"),
            retention: Duration::from_secs(3600),
        })
        .unwrap()
    }

    async fn ingest(store: &Store, delivery: &str, sinks: &[&str]) -> EventId {
        let new = NewEvent {
            source: Arc::from("github"),
            event_type: Some("push".into()),
            delivery_id: Some(delivery.into()),
            content_type: None,
            headers: Vec::new(),
            body: Bytes::from_static(b"{}"),
            sinks: sinks.iter().map(|s| Arc::from(*s)).collect(),
        };
        match store.ingest(new).await.unwrap() {
            Ingested::Accepted(id) => id,
            other => panic!("{delivery}: expected a new event, got {other:?}"),
        }
    }

    /// Every step of one pass, until the store says it is over.
    async fn pass(store: &Store, budget: usize) -> Vec<PurgeStep> {
        let cutoff_ms = now_ms() + 1000;
        let mut steps = Vec::new();
        loop {
            let step = store.purge(cutoff_ms, budget).await.unwrap();
            steps.push(step);
            if step.done {
                return steps;
            }
            assert!(steps.len() < 1000, "the pass never ends: {steps:?}");
        }
    }

    fn total(steps: &[PurgeStep]) -> (usize, usize) {
        steps
            .iter()
            .fold((0, 0), |(l, r), s| (l + s.looked, r + s.removed))
    }

    /// Ends `sink`'s delivery of the one due entry of `id` with `next`.
    async fn finish(store: &Store, sink: &str, id: EventId, next: NextStep) {
        let due = store.due(sink, u64::MAX, 100, &HashSet::new()).unwrap();
        let entry = due
            .entries
            .into_iter()
            .find(|d| d.entry.event_id == id)
            .unwrap_or_else(|| panic!("no due entry of {id} for {sink}"))
            .entry;
        let outcome = match next {
            NextStep::Done => AttemptOutcome::Delivered,
            NextStep::RetryAt(_) => AttemptOutcome::Retrying,
            NextStep::DeadLetter(_) => AttemptOutcome::DeadLettered,
        };
        let attempt = AttemptRecord {
            started_ms: now_ms(),
            duration_ms: 1,
            status: Some(200),
            error: None,
            outcome,
            message_id: None,
        };
        store.finish(entry, attempt, next).await.unwrap();
    }

    /// Dedup entries on disk: in packs and in the older one-row-per-event log.
    fn dedup_entries(store: &Store) -> u64 {
        let db = store.inner.db.get().unwrap();
        let txn = db.begin_read().unwrap();
        let packs = txn.open_table(DEDUP_PACKS).unwrap();
        let in_packs: usize = packs
            .iter()
            .unwrap()
            .map(|item| {
                pack::decode_dedup_pack(item.unwrap().1.value())
                    .unwrap()
                    .len()
            })
            .sum();
        in_packs as u64 + txn.open_table(DEDUP_LOG).unwrap().len().unwrap()
    }

    fn attempts_len(store: &Store) -> u64 {
        let db = store.inner.db.get().unwrap();
        let txn = db.begin_read().unwrap();
        txn.open_table(ATTEMPTS).unwrap().len().unwrap()
    }

    #[tokio::test]
    async fn a_pass_goes_in_bounded_steps_and_the_next_one_skips_kept_events() {
        let dir = tempfile::tempdir().unwrap();
        let store = open(&dir);
        let mut kept = Vec::new();
        for i in 0..60 {
            if i % 2 == 0 {
                kept.push(ingest(&store, &format!("kept-{i}"), &["a"]).await);
            } else {
                ingest(&store, &format!("done-{i}"), &[]).await;
            }
        }
        let first = pass(&store, 16).await;
        assert!(first.iter().all(|s| s.looked <= 16), "{first:?}");
        assert!(first.len() >= 60 / 16, "{first:?}");
        assert_eq!(total(&first), (60, 30), "{first:?}");
        assert_eq!(first.last().unwrap().kept, 30);
        for id in &kept {
            assert!(store.event(*id).unwrap().is_some(), "{id} is pending");
        }

        // The cursor held: the kept events are not read again.
        let second = pass(&store, 16).await;
        assert_eq!(second.len(), 1, "{second:?}");
        assert_eq!(
            (second[0].looked, second[0].removed, second[0].kept),
            (0, 0, 30)
        );

        // Newer events are above the cursor: the next pass finds them.
        let newer = ingest(&store, "newer", &[]).await;
        let third = pass(&store, 16).await;
        assert_eq!(total(&third), (1, 1), "{third:?}");
        assert!(store.event(newer).unwrap().is_none());
        store.close().await;
    }

    #[tokio::test]
    async fn a_kept_event_goes_with_everything_keyed_by_it_once_its_delivery_ends() {
        let dir = tempfile::tempdir().unwrap();
        let store = open(&dir);
        let id = ingest(&store, "d-1", &["a", "b"]).await;
        // Retried: still pending.
        finish(&store, "a", id, NextStep::RetryAt(0)).await;
        assert_eq!(total(&pass(&store, 8).await), (1, 0));

        // One of two sinks done: still kept; the other done: released, removed next pass,
        // which looks at that one event only.
        finish(&store, "a", id, NextStep::Done).await;
        let steps = pass(&store, 8).await;
        assert_eq!(total(&steps), (0, 0), "{steps:?}");
        assert_eq!(steps.last().unwrap().kept, 1);
        finish(&store, "b", id, NextStep::Done).await;
        assert!(
            store.event(id).unwrap().is_some(),
            "removed by a pass, not by finish"
        );
        let steps = pass(&store, 8).await;
        assert_eq!(total(&steps), (1, 1), "{steps:?}");
        assert_eq!(steps.last().unwrap().kept, 0);

        assert!(store.event(id).unwrap().is_none());
        assert_eq!(attempts_len(&store), 0, "its attempts went with it");
        assert_eq!(dedup_entries(&store), 0, "its dedup entry went with it");
        // The same delivery id is a new event now.
        let again = ingest(&store, "d-1", &[]).await;
        assert_ne!(again, id);
        store.close().await;
    }

    #[tokio::test]
    async fn a_dead_letter_keeps_its_event_until_replayed_and_delivered() {
        let dir = tempfile::tempdir().unwrap();
        let store = open(&dir);
        let id = ingest(&store, "d-dead", &["a"]).await;
        finish(&store, "a", id, NextStep::DeadLetter("answered 500".into())).await;
        pass(&store, 8).await;
        pass(&store, 8).await;
        assert!(store.event(id).unwrap().is_some(), "a dead letter is kept");
        assert_eq!(store.dead_letters("a").unwrap().len(), 1);

        assert_eq!(store.replay_dead(Arc::from("a"), 0, 10).await.unwrap(), 1);
        assert!(store.dead_letters("a").unwrap().is_empty());
        pass(&store, 8).await;
        assert!(
            store.event(id).unwrap().is_some(),
            "replayed: pending again"
        );
        finish(&store, "a", id, NextStep::Done).await;
        assert_eq!(total(&pass(&store, 8).await), (1, 1));
        assert!(store.event(id).unwrap().is_none());
        store.close().await;
    }

    #[tokio::test]
    async fn a_released_event_replayed_before_the_next_pass_is_kept_again() {
        let dir = tempfile::tempdir().unwrap();
        let store = open(&dir);
        let id = ingest(&store, "d-r", &["a"]).await;
        pass(&store, 8).await;
        finish(&store, "a", id, NextStep::Done).await;
        // Released, then queued again by a replay before retention came by.
        assert_eq!(
            store.replay(id, vec![Arc::from("a")]).await.unwrap(),
            vec![Replayed::Queued]
        );
        let steps = pass(&store, 8).await;
        assert_eq!(total(&steps), (1, 0), "{steps:?}");
        assert_eq!(steps.last().unwrap().kept, 1);
        assert!(store.event(id).unwrap().is_some());
        // The replayed round ends: released again, and removed.
        finish(&store, "a", id, NextStep::Done).await;
        assert_eq!(total(&pass(&store, 8).await), (1, 1));
        assert!(store.event(id).unwrap().is_none());
        store.close().await;
    }

    #[tokio::test]
    async fn events_newer_than_the_cutoff_are_left_alone() {
        let dir = tempfile::tempdir().unwrap();
        let store = open(&dir);
        let id = ingest(&store, "young", &[]).await;
        // A cutoff an hour back: nothing is old enough.
        let step = store.purge(now_ms() - 3_600_000, 8).await.unwrap();
        assert_eq!((step.looked, step.removed, step.done), (0, 0, true));
        assert!(store.event(id).unwrap().is_some());
        store.close().await;
    }
}
