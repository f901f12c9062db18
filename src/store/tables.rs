//! The redb tables and their keys. Event ids are stored as `u128` (the UUIDv7's big-endian
//! value), so numeric key order is arrival order.

use redb::TableDefinition;

/// Id of a row's first event → a pack of events (`pack`), or one encoded event
/// (`codec::encode_event`) in stores written before packs.
pub const EVENTS: TableDefinition<u128, &[u8]> = TableDefinition::new("events");

/// Pack key → the (event id, fingerprint of (source, delivery id)) pairs of that pack's
/// events that have a delivery id: the persisted half of `dedup::DedupIndex`, appended in
/// id order.
pub const DEDUP_PACKS: TableDefinition<u128, &[u8]> = TableDefinition::new("dedup_packs");

/// Event id → fingerprint, for single-event rows written before packs; read at open and
/// emptied by retention, never written.
pub const DEDUP_LOG: TableDefinition<u128, u64> = TableDefinition::new("dedup_log");

/// (sink, due ms, event id) → `QueueValue`: each sink's queue in due order.
pub const QUEUE: TableDefinition<(&str, u64, u128), &[u8]> = TableDefinition::new("queue");

/// (event id, sink) → `PendingState`: deliveries not yet done, for retention and lookups.
pub const PENDING: TableDefinition<(u128, &str), &[u8]> = TableDefinition::new("pending");

/// (event id, sink, attempt number) → `AttemptValue`.
pub const ATTEMPTS: TableDefinition<(u128, &str, u32), &[u8]> = TableDefinition::new("attempts");

/// (sink, event id) → `DeadValue`.
pub const DEAD: TableDefinition<(&str, u128), &[u8]> = TableDefinition::new("dead_letters");

/// One value, rewritten by a readiness probe while commits fail: a write that needs as much
/// new space as a batch of events does, so its success says events can be stored again.
pub const PROBE: TableDefinition<u8, &[u8]> = TableDefinition::new("probe");
