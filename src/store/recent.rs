//! Events recently read for delivery, decoded once and shared by every sink they fan out to:
//! an event routed to four sinks is due at each of their workers at about the same time, and
//! each would otherwise read its row and decode its metadata and body again.
//!
//! Stored events never change (retention only removes events whose deliveries all ended),
//! so an entry is never stale; it is only dropped, oldest first, past a bound.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};

use super::StoredEvent;

/// At most this many events are kept.
const MAX_EVENTS: usize = 4096;

/// At most this many bytes of bodies are kept: large bodies make room for themselves by
/// dropping older ones, and one above the bound is not kept at all.
const MAX_BODY_BYTES: usize = 8 << 20;

/// The recently read events, by id.
#[derive(Debug, Default)]
pub(super) struct RecentEvents {
    // A std Mutex: held for a map lookup or insert only, from blocking reads.
    inner: Mutex<Recent>,
}

#[derive(Debug, Default)]
struct Recent {
    by_id: HashMap<u128, Arc<StoredEvent>>,
    /// Ids in the order they were added: the first is dropped first.
    order: VecDeque<u128>,
    body_bytes: usize,
}

impl RecentEvents {
    /// The event with `id`, if it was read recently.
    pub(super) fn get(&self, id: u128) -> Option<Arc<StoredEvent>> {
        self.lock().by_id.get(&id).cloned()
    }

    /// Keeps `event` for the next reader, dropping the oldest past the bounds.
    pub(super) fn keep(&self, id: u128, event: &Arc<StoredEvent>) {
        let size = event.body.len();
        if size > MAX_BODY_BYTES {
            return;
        }
        let mut recent = self.lock();
        if recent.by_id.contains_key(&id) {
            return;
        }
        while recent.order.len() >= MAX_EVENTS || recent.body_bytes + size > MAX_BODY_BYTES {
            let Some(oldest) = recent.order.pop_front() else {
                break;
            };
            if let Some(dropped) = recent.by_id.remove(&oldest) {
                recent.body_bytes -= dropped.body.len();
            }
        }
        recent.by_id.insert(id, event.clone());
        recent.order.push_back(id);
        recent.body_bytes += size;
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Recent> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;
    use uuid::Uuid;

    fn event(id: u128, body_len: usize) -> Arc<StoredEvent> {
        Arc::new(StoredEvent {
            id: Uuid::from_u128(id),
            source: Arc::from("github"),
            event_type: Some("push".into()),
            delivery_id: None,
            content_type: None,
            received_at_ms: 0,
            headers: Vec::new(),
            body: Bytes::from(vec![b'x'; body_len]),
        })
    }

    #[test]
    fn a_kept_event_is_shared_not_copied() {
        let recent = RecentEvents::default();
        let first = event(1, 10);
        recent.keep(1, &first);
        assert!(Arc::ptr_eq(&recent.get(1).unwrap(), &first));
        assert!(recent.get(2).is_none());
    }

    #[test]
    fn the_oldest_events_make_room_past_either_bound() {
        let recent = RecentEvents::default();
        for id in 0..MAX_EVENTS as u128 + 10 {
            recent.keep(id, &event(id, 1));
        }
        assert!(recent.get(9).is_none(), "the oldest went first");
        assert!(recent.get(10).is_some());
        assert!(recent.get(MAX_EVENTS as u128 + 9).is_some());
        assert_eq!(recent.lock().order.len(), MAX_EVENTS);

        // Bodies: two of just over half the bound cannot both stay.
        let half = MAX_BODY_BYTES / 2 + 1;
        recent.keep(100_000, &event(100_000, half));
        recent.keep(100_001, &event(100_001, half));
        assert!(recent.get(100_000).is_none());
        assert!(recent.get(100_001).is_some());
        assert!(recent.lock().body_bytes <= MAX_BODY_BYTES);
        // One above the bound is not kept, and drops nothing.
        recent.keep(100_002, &event(100_002, MAX_BODY_BYTES + 1));
        assert!(recent.get(100_002).is_none());
        assert!(recent.get(100_001).is_some());
    }
}
