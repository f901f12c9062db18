//! Event rows: the events one commit accepts are stored together as one redb value (a pack),
//! so the writer makes one b-tree insert per batch instead of one per event.
//!
//! A row in `EVENTS` is keyed by the id of its first event and holds either a pack,
//! `[PACK_TAG][count u32][count × (id u128, end u32)][records]` (little endian; `end` is where
//! a member's record ends within `records`), or, in stores written before packs, a single
//! event record keyed by its own id. Either way a row holds the events whose ids lie between
//! its key and the next row's key, in id order: ids are strictly increasing across commits
//! (the writer starts above the largest stored id), so packs never interleave, and the event
//! with id `x` is in the last row keyed at or below `x`. Retention rewrites a pack without
//! the events it removes and keeps its key, which stays at or below every member's id.
//!
//! `DEDUP_PACKS` holds, under the same key, the (id, fingerprint) pairs of the pack's events
//! that have a delivery id: `[DEDUP_PACK_VERSION][count × (id u128, fingerprint u64)]`.
//! Single-record rows keep theirs in the older `DEDUP_LOG`, one row per event.

use redb::{AccessGuard, ReadableTable, StorageError};

use super::codec::DecodeError;

/// First byte of a pack. Single event records start with their version (1 or 2), so the
/// two row kinds cannot be mistaken for each other.
const PACK_TAG: u8 = 0xA1;
const PACK_HEAD: usize = 1 + 4;
const MEMBER_INDEX: usize = 16 + 4;

/// First byte of a dedup pack.
const DEDUP_PACK_VERSION: u8 = 1;
const DEDUP_ENTRY: usize = 16 + 8;

/// A pack is closed once its records reach this size: a reader fetches a whole row to read
/// one event, so rows stay small next to a page cache, and a burst of large bodies does not
/// become one huge value.
pub const PACK_TARGET_BYTES: usize = 32 << 10;

/// Encodes events (ids strictly increasing) as one pack.
pub fn encode_pack<'a>(
    members: impl ExactSizeIterator<Item = (u128, &'a [u8])> + Clone,
) -> Vec<u8> {
    let mut out = vec![0; pack_len(members.clone())];
    write_pack(&mut out, members);
    out
}

/// The length of the pack of `members`.
pub fn pack_len<'a>(members: impl ExactSizeIterator<Item = (u128, &'a [u8])>) -> usize {
    let count = members.len();
    let records: usize = members.map(|(_, record)| record.len()).sum();
    PACK_HEAD + count * MEMBER_INDEX + records
}

/// Writes the pack of `members` (ids strictly increasing) into `out`, which is
/// [`pack_len`] long: the writer fills the space redb reserves for the value in place, so a
/// batch's records are not copied into a buffer of their own first.
pub fn write_pack<'a>(
    out: &mut [u8],
    members: impl ExactSizeIterator<Item = (u128, &'a [u8])> + Clone,
) {
    let count = members.len();
    out[0] = PACK_TAG;
    out[1..PACK_HEAD].copy_from_slice(&(count as u32).to_le_bytes());
    let mut end = 0usize;
    let mut at = PACK_HEAD;
    for (id, record) in members.clone() {
        end += record.len();
        out[at..at + 16].copy_from_slice(&id.to_le_bytes());
        out[at + 16..at + MEMBER_INDEX].copy_from_slice(&(end as u32).to_le_bytes());
        at += MEMBER_INDEX;
    }
    for (_, record) in members {
        out[at..at + record.len()].copy_from_slice(record);
        at += record.len();
    }
    debug_assert_eq!(at, out.len(), "write_pack: out is not pack_len long");
}

/// One `EVENTS` row, parsed: its events' ids and records, borrowed from the stored value.
#[derive(Debug, Clone, Copy)]
pub struct Row<'a> {
    layout: Layout<'a>,
}

#[derive(Debug, Clone, Copy)]
enum Layout<'a> {
    /// A single event record written before packs, keyed by its own id.
    Single {
        id: u128,
        record: &'a [u8],
    },
    Pack {
        index: &'a [u8],
        records: &'a [u8],
    },
}

impl<'a> Row<'a> {
    /// Reads the row stored under `key`, checking that its index is consistent, so that
    /// every later access is in bounds.
    pub fn parse(key: u128, bytes: &'a [u8]) -> Result<Row<'a>, DecodeError> {
        let Some((&tag, rest)) = bytes.split_first() else {
            return Err(DecodeError::Empty);
        };
        if tag != PACK_TAG {
            return Ok(Row {
                layout: Layout::Single {
                    id: key,
                    record: bytes,
                },
            });
        }
        let damaged = |what: &str| DecodeError::Body(format!("damaged event pack: {what}"));
        let count = rest
            .get(..4)
            .map(|b| u32::from_le_bytes(b.try_into().expect("4 bytes")) as usize)
            .ok_or_else(|| damaged("no member count"))?;
        if count == 0 {
            return Err(damaged("no members"));
        }
        let index_len = count
            .checked_mul(MEMBER_INDEX)
            .filter(|len| *len <= rest.len() - 4)
            .ok_or_else(|| damaged("member count larger than the row"))?;
        let (index, records) = rest[4..].split_at(index_len);
        let row = Row {
            layout: Layout::Pack { index, records },
        };
        let mut previous: Option<(u128, usize)> = None;
        for i in 0..count {
            let (id, end) = row.entry(i);
            let (last_id, last_end) = previous.unwrap_or((0, 0));
            if (previous.is_some() && id <= last_id) || id < key {
                return Err(damaged("member ids out of order"));
            }
            if end < last_end || end > records.len() {
                return Err(damaged("member record outside the row"));
            }
            previous = Some((id, end));
        }
        Ok(row)
    }

    /// Number of events in the row: at least one.
    pub fn len(&self) -> usize {
        match self.layout {
            Layout::Single { .. } => 1,
            Layout::Pack { index, .. } => index.len() / MEMBER_INDEX,
        }
    }

    /// Whether this is a single record written before packs.
    pub fn is_single(&self) -> bool {
        matches!(self.layout, Layout::Single { .. })
    }

    fn entry(&self, i: usize) -> (u128, usize) {
        match self.layout {
            Layout::Single { id, record } => (id, record.len()),
            Layout::Pack { index, .. } => {
                let at = &index[i * MEMBER_INDEX..(i + 1) * MEMBER_INDEX];
                let id = u128::from_le_bytes(at[..16].try_into().expect("16 bytes"));
                let end = u32::from_le_bytes(at[16..].try_into().expect("4 bytes")) as usize;
                (id, end)
            }
        }
    }

    /// The `i`th event (in id order): its id and record.
    pub fn member(&self, i: usize) -> (u128, &'a [u8]) {
        match self.layout {
            Layout::Single { id, record } => (id, record),
            Layout::Pack { records, .. } => {
                let start = if i == 0 { 0 } else { self.entry(i - 1).1 };
                let (id, end) = self.entry(i);
                (id, &records[start..end])
            }
        }
    }

    /// The events of the row in id order.
    pub fn members(&self) -> impl DoubleEndedIterator<Item = (u128, &'a [u8])> + '_ {
        (0..self.len()).map(|i| self.member(i))
    }

    /// The record of event `id`, if the row holds it.
    pub fn get(&self, id: u128) -> Option<&'a [u8]> {
        let (mut low, mut high) = (0, self.len());
        while low < high {
            let mid = (low + high) / 2;
            match self.entry(mid).0.cmp(&id) {
                std::cmp::Ordering::Less => low = mid + 1,
                std::cmp::Ordering::Greater => high = mid,
                std::cmp::Ordering::Equal => return Some(self.member(mid).1),
            }
        }
        None
    }
}

type Guards<'t> = (AccessGuard<'t, u128>, AccessGuard<'t, &'static [u8]>);

/// The row that holds event `id` if it is stored: the last row keyed at or below it.
pub fn row_for<'t>(
    events: &'t impl ReadableTable<u128, &'static [u8]>,
    id: u128,
) -> Result<Option<Guards<'t>>, StorageError> {
    events.range(..=id)?.next_back().transpose()
}

/// Whether event `id` is stored. A damaged row holds nothing that can be read.
pub fn contains(
    events: &impl ReadableTable<u128, &'static [u8]>,
    id: u128,
) -> Result<bool, StorageError> {
    Ok(row_for(events, id)?.is_some_and(|(key, row)| {
        Row::parse(key.value(), row.value()).is_ok_and(|row| row.get(id).is_some())
    }))
}

/// The rows that may hold events with ids in `lower..upper`, in key order: the row
/// holding `lower`'s neighbours below it (keyed before `lower`), then every row keyed in
/// the range. Callers skip the members outside the range.
pub fn rows_between<'t>(
    events: &'t impl ReadableTable<u128, &'static [u8]>,
    lower: u128,
    upper: u128,
) -> Result<impl Iterator<Item = Result<Guards<'t>, StorageError>> + 't, StorageError> {
    let before = if lower == 0 {
        None
    } else {
        events.range(..lower)?.next_back()
    };
    Ok(before
        .into_iter()
        .chain(events.range(lower..upper.max(lower))?))
}

/// Encodes the (event id, fingerprint) pairs of one pack.
pub fn encode_dedup_pack(entries: &[(u128, u64)]) -> Vec<u8> {
    let mut out = Vec::with_capacity(1 + entries.len() * DEDUP_ENTRY);
    out.push(DEDUP_PACK_VERSION);
    for (id, print) in entries {
        out.extend_from_slice(&id.to_le_bytes());
        out.extend_from_slice(&print.to_le_bytes());
    }
    out
}

/// Reads a dedup pack's (event id, fingerprint) pairs.
pub fn decode_dedup_pack(bytes: &[u8]) -> Result<Vec<(u128, u64)>, DecodeError> {
    let Some((&version, rest)) = bytes.split_first() else {
        return Err(DecodeError::Empty);
    };
    if version != DEDUP_PACK_VERSION {
        return Err(DecodeError::Version(version));
    }
    if rest.len() % DEDUP_ENTRY != 0 {
        return Err(DecodeError::Body("damaged dedup pack: cut entry".into()));
    }
    Ok(rest
        .chunks_exact(DEDUP_ENTRY)
        .map(|entry| {
            let id = u128::from_le_bytes(entry[..16].try_into().expect("16 bytes"));
            let print = u64::from_le_bytes(entry[16..].try_into().expect("8 bytes"));
            (id, print)
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pack(members: &[(u128, &[u8])]) -> Vec<u8> {
        encode_pack(members.iter().copied())
    }

    #[test]
    fn a_pack_gives_back_each_member_byte_for_byte() {
        let members: [(u128, &[u8]); 3] = [(10, b"first"), (11, b""), (400, b"third record")];
        let bytes = pack(&members);
        let row = Row::parse(10, &bytes).unwrap();
        assert_eq!(row.len(), 3);
        assert!(!row.is_single());
        assert_eq!(row.members().collect::<Vec<_>>(), members.to_vec());
        assert_eq!(row.members().next_back(), Some((400, &b"third record"[..])));
        for (id, record) in members {
            assert_eq!(row.get(id), Some(record));
        }
        assert_eq!(row.get(9), None);
        assert_eq!(row.get(12), None);
        assert_eq!(row.get(401), None);
    }

    #[test]
    fn a_record_written_before_packs_is_a_row_of_one() {
        // An event record starts with its version byte (1 or 2), never the pack tag.
        let record = [2u8, 0, 0, 0];
        let row = Row::parse(77, &record).unwrap();
        assert!(row.is_single());
        assert_eq!(row.members().collect::<Vec<_>>(), vec![(77, &record[..])]);
        assert_eq!(row.get(77), Some(&record[..]));
        assert_eq!(row.get(78), None);
    }

    #[test]
    fn a_damaged_pack_is_refused_before_any_member_is_read() {
        let good = pack(&[(5, b"abc"), (6, b"de")]);
        // Cut anywhere inside the index: the count no longer fits.
        for cut in 1..PACK_HEAD + 2 * MEMBER_INDEX {
            assert!(Row::parse(5, &good[..cut]).is_err(), "cut at {cut}");
        }
        // Records cut short: the last end points past the row.
        assert!(Row::parse(5, &good[..good.len() - 1]).is_err());
        // A count that would overflow the index size.
        let mut huge = good.clone();
        huge[1..5].copy_from_slice(&u32::MAX.to_le_bytes());
        assert!(Row::parse(5, &huge).is_err());
        // Ids out of order, or below the row's key.
        let swapped = pack(&[(6, b"abc"), (5, b"de")]);
        assert!(Row::parse(5, &swapped).is_err());
        assert!(Row::parse(6, &good).is_err());
        assert!(Row::parse(5, &[]).is_err());
        assert!(Row::parse(5, &pack(&[])).is_err(), "a pack of nothing");
    }

    #[test]
    fn the_fuzz_seeds_of_packs_decode() {
        // The two event seeds packed by hand, so the fuzzer starts from valid packs.
        let seed = include_bytes!("../../fuzz/corpus/record_decode/event-pack");
        let first_id = 0x0190_0000_0000_7000_8000_0000_0000_0000;
        let row = Row::parse(first_id, seed).unwrap();
        assert_eq!(row.len(), 2);
        for (id, record) in row.members() {
            let (meta, _) = super::super::codec::decode_event(record).unwrap();
            assert_eq!(meta.source, "github", "member {id:x}");
        }
        let seed = include_bytes!("../../fuzz/corpus/record_decode/dedup-pack");
        assert_eq!(decode_dedup_pack(seed).unwrap().len(), 3);
    }

    #[test]
    fn dedup_packs_round_trip_and_refuse_cut_entries() {
        let entries = vec![(1u128, 0xdead_beef_u64), (u128::MAX, u64::MAX)];
        let bytes = encode_dedup_pack(&entries);
        assert_eq!(decode_dedup_pack(&bytes).unwrap(), entries);
        assert!(decode_dedup_pack(&bytes[..bytes.len() - 1]).is_err());
        assert!(decode_dedup_pack(&[9]).is_err());
        assert!(decode_dedup_pack(&[]).is_err());
        assert_eq!(decode_dedup_pack(&[DEDUP_PACK_VERSION]).unwrap(), vec![]);
    }
}

/// Packs as the store writes, reads, sweeps and reopens them.
#[cfg(test)]
mod in_the_store {
    use std::collections::HashSet;
    use std::sync::Arc;
    use std::time::Duration;

    use bytes::Bytes;
    use redb::{ReadableDatabase, ReadableTable};

    use super::super::tables::{DEDUP_LOG, EVENTS};
    use super::super::{EventId, EventQuery, Ingested, NewEvent, Store, codec, dedup};
    use super::{PACK_TARGET_BYTES, Row};
    use crate::clock::now_ms;
    use crate::config::StorageConfig;

    fn open(path: &std::path::Path) -> Store {
        Store::open(&StorageConfig {
            path: path.to_path_buf(),
            retention: Duration::from_secs(3600),
        })
        .unwrap()
    }

    /// A body that LZ4 cannot shrink (so record sizes are known), different per `seed`.
    fn noise(seed: u64, len: usize) -> Vec<u8> {
        let mut state = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
        (0..len)
            .map(|_| {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                state as u8
            })
            .collect()
    }

    fn event(delivery: &str, body: Vec<u8>, sinks: &[&str]) -> NewEvent {
        NewEvent {
            source: Arc::from("github"),
            event_type: Some("push".into()),
            delivery_id: Some(delivery.into()),
            content_type: Some("application/json".into()),
            headers: Vec::new(),
            body: Bytes::from(body),
            sinks: sinks.iter().map(|s| Arc::from(*s)).collect(),
        }
    }

    /// Ingests all at once, so they share commits (and packs); ids in sending order.
    async fn burst(store: &Store, events: Vec<NewEvent>) -> Vec<EventId> {
        let tasks: Vec<_> = events
            .into_iter()
            .map(|e| {
                let store = store.clone();
                tokio::spawn(async move { store.ingest(e).await.unwrap() })
            })
            .collect();
        let mut ids = Vec::new();
        for task in tasks {
            match task.await.unwrap() {
                Ingested::Accepted(id) => ids.push(id),
                other => panic!("expected a new event, got {other:?}"),
            }
        }
        ids
    }

    /// Each row's number of events and record bytes.
    fn rows(store: &Store) -> Vec<(usize, usize)> {
        let db = store.inner.db.get().unwrap();
        let txn = db.begin_read().unwrap();
        let events = txn.open_table(EVENTS).unwrap();
        events
            .iter()
            .unwrap()
            .map(|item| {
                let (key, value) = item.unwrap();
                let row = Row::parse(key.value(), value.value()).unwrap();
                (row.len(), row.members().map(|(_, r)| r.len()).sum())
            })
            .collect()
    }

    #[tokio::test]
    async fn a_burst_is_stored_in_packs_read_back_byte_for_byte_and_deduplicated_after_reopening() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("store.redb");
        let store = open(&path);
        // Small bodies, and 12 KB ones that fill a pack in three.
        let body = |i: usize| noise(i as u64, if i.is_multiple_of(5) { 12_000 } else { 40 + i });
        let sent: Vec<NewEvent> = (0..300)
            .map(|i| event(&format!("d-{i}"), body(i), &["a"]))
            .collect();
        let ids = burst(&store, sent).await;

        let rows = rows(&store);
        assert!(
            rows.iter().any(|(events, _)| *events > 1),
            "a burst shares rows: {rows:?}"
        );
        assert_eq!(rows.iter().map(|(events, _)| events).sum::<usize>(), 300);
        for (events, bytes) in &rows {
            // A pack closes at the target; only a single record may exceed it.
            assert!(
                *events == 1 || *bytes <= PACK_TARGET_BYTES + 12_200,
                "{rows:?}"
            );
        }
        let due = store.due("a", u64::MAX, 1000, &HashSet::new()).unwrap();
        assert_eq!(due.entries.len(), 300);
        store.close().await;
        drop(store);

        let store = open(&path);
        for (i, id) in ids.iter().enumerate() {
            let stored = store.event(*id).unwrap().expect("stored");
            assert_eq!(&stored.body[..], &body(i)[..], "event {i}");
            assert_eq!(stored.delivery_id.as_deref(), Some(&*format!("d-{i}")));
        }
        // The dedup index came back from the packs.
        for i in [0, 1, 150, 299] {
            let again = store
                .ingest(event(&format!("d-{i}"), b"{}".to_vec(), &["a"]))
                .await
                .unwrap();
            assert_eq!(again, Ingested::Duplicate(ids[i]), "re-sent d-{i}");
        }
        // New ids go on above the stored ones.
        let newer = burst(&store, vec![event("new", b"{}".to_vec(), &[])]).await;
        assert!(newer[0] > *ids.iter().max().unwrap());
        // Listings walk the packs newest first, and by time range oldest first.
        let page = store
            .recent_events(&EventQuery {
                before: None,
                source: None,
                event_type: None,
                status: None,
                limit: 50,
            })
            .unwrap();
        let mut newest_first: Vec<EventId> = ids.iter().rev().copied().collect();
        newest_first.insert(0, newer[0]);
        let listed: Vec<EventId> = page.events.iter().map(|e| e.id).collect();
        assert_eq!(listed, newest_first[..50]);
        let page = store
            .recent_events(&EventQuery {
                before: page.next,
                source: None,
                event_type: None,
                status: None,
                limit: 50,
            })
            .unwrap();
        let listed: Vec<EventId> = page.events.iter().map(|e| e.id).collect();
        assert_eq!(listed, newest_first[50..100]);
        let mut sorted = ids.clone();
        sorted.sort();
        let middle = store
            .event_ids_between(0, u64::MAX >> 16, Some(sorted[99]), 50)
            .unwrap();
        assert_eq!(middle, sorted[100..150]);
        store.close().await;
    }

    #[tokio::test]
    async fn retention_takes_events_out_of_their_packs_and_keeps_the_rest_readable() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("store.redb");
        let store = open(&path);
        // Every third event waits for a delivery to sink "a"; the others have none.
        let kept = |i: usize| i.is_multiple_of(3);
        let sent: Vec<NewEvent> = (0..120)
            .map(|i| {
                let sinks: &[&str] = if kept(i) { &["a"] } else { &[] };
                event(&format!("d-{i}"), noise(i as u64, 300), sinks)
            })
            .collect();
        let ids = burst(&store, sent).await;
        let before = rows(&store);
        assert!(before.iter().any(|(events, _)| *events > 1), "{before:?}");

        // Small steps stop inside packs and resume there.
        let cutoff_ms = now_ms() + 1000;
        let mut removed = 0;
        loop {
            let step = store.purge(cutoff_ms, 7).await.unwrap();
            assert!(step.looked <= 7, "{step:?}");
            removed += step.removed;
            if step.done {
                assert_eq!(step.kept, 40);
                break;
            }
        }
        assert_eq!(removed, 80);
        let after = rows(&store);
        assert_eq!(after.iter().map(|(events, _)| events).sum::<usize>(), 40);
        store.close().await;
        drop(store);

        let store = open(&path);
        for (i, id) in ids.iter().enumerate() {
            let stored = store.event(*id).unwrap();
            if kept(i) {
                assert_eq!(&stored.expect("kept").body[..], &noise(i as u64, 300)[..]);
            } else {
                assert!(stored.is_none(), "event {i} was swept");
            }
        }
        // Only the kept events' dedup entries are left.
        for i in [0, 1, 2, 3, 118, 119] {
            let again = store
                .ingest(event(&format!("d-{i}"), b"{}".to_vec(), &[]))
                .await
                .unwrap();
            match again {
                Ingested::Duplicate(id) => assert!(kept(i) && id == ids[i], "d-{i}"),
                Ingested::Accepted(_) => assert!(!kept(i), "d-{i} is still stored"),
            }
        }
        assert_eq!(
            store
                .due("a", u64::MAX, 1000, &HashSet::new())
                .unwrap()
                .entries
                .len(),
            40
        );
        store.close().await;
    }

    #[tokio::test]
    async fn a_store_written_before_packs_is_read_deduplicated_and_swept() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("store.redb");
        // One row per event and a dedup log row each, as builds before packs wrote them.
        let mut old_ids = Vec::new();
        {
            let db = redb::Database::create(&path).unwrap();
            let txn = db.begin_write().unwrap();
            {
                let mut events = txn.open_table(EVENTS).unwrap();
                let mut log = txn.open_table(DEDUP_LOG).unwrap();
                for i in 0..5u64 {
                    let id = uuid::Uuid::now_v7().as_u128() + u128::from(i);
                    let meta = codec::EventMeta {
                        source: "github".into(),
                        event_type: Some("push".into()),
                        delivery_id: Some(format!("old-{i}")),
                        content_type: None,
                        received_at_ms: now_ms(),
                        headers: Vec::new(),
                    };
                    let record = codec::encode_event(&meta, &noise(i, 500));
                    events.insert(id, record.as_slice()).unwrap();
                    log.insert(id, dedup::fingerprint("github", &format!("old-{i}")))
                        .unwrap();
                    old_ids.push(uuid::Uuid::from_u128(id));
                }
            }
            txn.commit().unwrap();
        }
        let store = open(&path);
        for (i, id) in old_ids.iter().enumerate() {
            let stored = store.event(*id).unwrap().expect("an old row is read");
            assert_eq!(&stored.body[..], &noise(i as u64, 500)[..]);
        }
        let again = store
            .ingest(event("old-3", b"{}".to_vec(), &[]))
            .await
            .unwrap();
        assert_eq!(again, Ingested::Duplicate(old_ids[3]));
        let new = burst(&store, vec![event("new", b"{}".to_vec(), &[])]).await[0];
        assert!(new > old_ids[4], "new ids start above the old rows");

        let step = store.purge(now_ms() + 1000, 100).await.unwrap();
        assert_eq!((step.looked, step.removed, step.done), (6, 6, true));
        for id in old_ids.iter().chain([&new]) {
            assert!(store.event(*id).unwrap().is_none());
        }
        {
            let db = store.inner.db.get().unwrap();
            let txn = db.begin_read().unwrap();
            let log = txn.open_table(DEDUP_LOG).unwrap();
            assert!(
                log.iter().unwrap().next().is_none(),
                "old dedup rows went too"
            );
        }
        let fresh = store
            .ingest(event("old-3", b"{}".to_vec(), &[]))
            .await
            .unwrap();
        assert!(matches!(fresh, Ingested::Accepted(_)), "{fresh:?}");
        store.close().await;
    }
}
