//! Dispatch: one worker per sink takes due queue entries, waits on the sink's rate limiter,
//! delivers with bounded concurrency and records each attempt through the store.
//!
//! Invariant: dispatch alone decides *when* (backoff, jitter, `Retry-After`, dead letter);
//! the sink decides *whether*. It turns store records into [`crate::sinks::Delivery`], so
//! sinks never learn a store exists. A slow or failing sink never holds anything ingest needs.
