//! The redb tables and their keys. Event ids are stored as `u128` (the UUIDv7's big-endian
//! value), so numeric key order is arrival order.

use redb::TableDefinition;

/// Event id → encoded event (`codec::encode_event`).
pub const EVENTS: TableDefinition<u128, &[u8]> = TableDefinition::new("events");

/// Event id → fingerprint of (source, delivery id), for events that have a delivery id:
/// the persisted half of `dedup::DedupIndex`, appended in id order.
pub const DEDUP_LOG: TableDefinition<u128, u64> = TableDefinition::new("dedup_log");

/// (sink, due ms, event id) → `QueueValue`: each sink's queue in due order.
pub const QUEUE: TableDefinition<(&str, u64, u128), &[u8]> = TableDefinition::new("queue");

/// (event id, sink) → `PendingState`: deliveries not yet done, for retention and lookups.
pub const PENDING: TableDefinition<(u128, &str), &[u8]> = TableDefinition::new("pending");

/// (event id, sink, attempt number) → `AttemptValue`.
pub const ATTEMPTS: TableDefinition<(u128, &str, u32), &[u8]> = TableDefinition::new("attempts");

/// (sink, event id) → `DeadValue`.
pub const DEAD: TableDefinition<(&str, u128), &[u8]> = TableDefinition::new("dead_letters");
