//! Recognising re-sent deliveries without a random-key index on disk.
//!
//! A B-tree keyed by (source, delivery id) puts every insert on a random leaf: with group
//! commits, each event then dirties a page of its own, which doubled the bytes written per
//! event (measured: 7.3 KiB against 3.0 KiB per 1 KiB event, `examples`-style store bench).
//! Instead, each pack of events (`pack`) appends one row to `DEDUP_PACKS` (keyed by the pack's
//! key, so appends land on the tail page) holding the 64-bit fingerprint of (source, delivery
//! id) of each of its events that has one, and the writer keeps fingerprint → event id in
//! memory, rebuilt from those rows (and the per-event `DEDUP_LOG` of older stores) at open.
//!
//! Invariants: only the writer thread touches the index, so it needs no lock. A fingerprint
//! match is only a candidate: the writer confirms it against the stored event before
//! answering "duplicate", so a collision can never drop a new event. Memory: about 30 bytes
//! per stored event that has a delivery id.

use std::collections::HashMap;

use sha2::{Digest, Sha256};

/// 64-bit fingerprint of a delivery: stable across builds and platforms (it is persisted),
/// so a cryptographic digest, truncated, rather than std's unspecified hasher.
pub fn fingerprint(source: &str, delivery_id: &str) -> u64 {
    let mut hasher = Sha256::new();
    hasher.update(source.as_bytes());
    hasher.update([0u8]);
    hasher.update(delivery_id.as_bytes());
    let digest = hasher.finalize();
    u64::from_be_bytes(
        digest[..8]
            .try_into()
            .expect("a SHA-256 digest has 32 bytes"),
    )
}

/// Fingerprint → event id of every stored event that has a delivery id.
#[derive(Debug, Default)]
pub struct DedupIndex {
    by_fingerprint: HashMap<u64, u128>,
}

impl DedupIndex {
    /// An index able to hold `n` entries without growing.
    pub fn with_capacity(n: usize) -> DedupIndex {
        DedupIndex {
            by_fingerprint: HashMap::with_capacity(n),
        }
    }

    /// The event id last recorded under this fingerprint, if any.
    pub fn candidate(&self, fingerprint: u64) -> Option<u128> {
        self.by_fingerprint.get(&fingerprint).copied()
    }

    /// Records an event (later events win: after a collision the newer one is kept).
    pub fn insert(&mut self, fingerprint: u64, event: u128) {
        self.by_fingerprint.insert(fingerprint, event);
    }

    /// Forgets an event removed by retention, unless a newer event holds the fingerprint.
    pub fn remove(&mut self, fingerprint: u64, event: u128) {
        if self.by_fingerprint.get(&fingerprint) == Some(&event) {
            self.by_fingerprint.remove(&fingerprint);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fingerprints_are_stable_and_separate_source_from_delivery() {
        // Persisted values: a change here would silently break dedup of stored events.
        assert_eq!(fingerprint("github", "d-1"), fingerprint("github", "d-1"));
        assert_ne!(fingerprint("github", "d-1"), fingerprint("gitlab", "d-1"));
        assert_ne!(fingerprint("ab", "c"), fingerprint("a", "bc"));
        // First 8 bytes of SHA-256("github\0d-1"), computed independently with Python's hashlib.
        assert_eq!(fingerprint("github", "d-1"), 0x328b_81c2_be4c_dbda);
    }

    #[test]
    fn removal_keeps_a_newer_event_with_the_same_fingerprint() {
        let mut index = DedupIndex::default();
        index.insert(7, 1);
        index.insert(7, 2);
        index.remove(7, 1);
        assert_eq!(index.candidate(7), Some(2));
        index.remove(7, 2);
        assert_eq!(index.candidate(7), None);
    }
}
