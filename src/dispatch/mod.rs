//! Dispatch: one worker per sink takes due queue entries, waits on the sink's rate limiter,
//! delivers with bounded concurrency and records each attempt through the store.
//!
//! Invariant: dispatch alone decides *when* (backoff, jitter, `Retry-After`, dead letter);
//! the sink decides *whether*. It turns store records into [`crate::sinks::Delivery`], so
//! sinks never learn a store exists. A slow or failing sink never holds anything ingest needs.

// TEMPORARY stand-in until the dispatch branch lands.
/// Dispatcher.
pub struct Dispatcher;
impl Dispatcher {
    /// Start.
    pub fn start(
        _s: crate::store::Store,
        _c: &[crate::config::SinkConfig],
    ) -> Result<Dispatcher, crate::sinks::SinkBuildError> {
        Ok(Dispatcher)
    }
    /// Stop.
    pub async fn shutdown(self, _g: std::time::Duration) {}
}
