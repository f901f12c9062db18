//! The retention task: removes events older than `[storage] retention` whose deliveries have
//! all ended, in the background, in steps small enough that ingest never waits on it.
//!
//! Each pass runs [`Store::purge`] steps until the store says the pass is over. A step looks
//! at a bounded number of events in one transaction that rides the writer's group commit like
//! any ingest, so an ingest waits at most one step (see `RETENTION_STEP`); steps resume where
//! the last one stopped, so events kept for a pending or dead-lettered delivery are not read
//! again on every pass. redb reuses the pages freed here for new events, so under steady
//! load the file stops growing; it shrinks only when the free space is at its end.
//!
//! Invariant: never removes an event with a pending or dead-lettered delivery (the store
//! checks it inside the step's transaction, not here).

use std::time::{Duration, Instant};

use tokio::sync::watch;

use crate::store::Store;

/// Events one step looks at (and at most removes). Measured with `examples/purge_hold.rs`:
/// a step of 512 one-KiB events takes a few milliseconds, the order of one group commit's
/// fsync, so an ingest that shares its batch waits about twice its usual time, once.
const RETENTION_STEP: usize = 512;

/// How often a pass starts: a quarter of the retention, at least every minute and at most
/// every second. A short retention (tests, a small disk) is then honoured closely, and a
/// pass with nothing to do costs one short read.
pub(crate) fn interval(retention: Duration) -> Duration {
    (retention / 4).clamp(Duration::from_secs(1), Duration::from_secs(60))
}

/// Runs passes every [`interval`] of the current retention until aborted. The first pass
/// runs at once, and again at once when a reload changes the retention.
pub(crate) async fn run(store: Store, mut retention: watch::Receiver<Duration>) {
    loop {
        let current = *retention.borrow_and_update();
        let mut tick = tokio::time::interval(interval(current));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = tick.tick() => {
                    let now_ms = crate::clock::now_ms();
                    pass(&store, now_ms.saturating_sub(current.as_millis() as u64)).await;
                }
                // A closed channel (the relay is stopping) disables this branch.
                Ok(()) = retention.changed() => break,
            }
        }
    }
}

/// One pass: steps until the store has looked at everything below the cutoff.
async fn pass(store: &Store, cutoff_ms: u64) {
    let mut removed = 0;
    let mut steps = 0u32;
    let mut longest = Duration::ZERO;
    let kept = loop {
        let started = Instant::now();
        match store.purge(cutoff_ms, RETENTION_STEP).await {
            Ok(step) => {
                steps += 1;
                longest = longest.max(started.elapsed());
                removed += step.removed;
                if step.done {
                    break step.kept;
                }
                // Let ingest and dispatch submit between steps, so each step shares a batch
                // with them rather than several steps queueing back to back.
                tokio::task::yield_now().await;
            }
            Err(err) => {
                tracing::warn!(error = %err, "retention pass failed; will try again at the next pass");
                return;
            }
        }
    };
    if removed > 0 {
        tracing::info!(
            removed,
            kept,
            steps,
            longest_step_ms = longest.as_millis() as u64,
            "retention removed expired events"
        );
    } else {
        tracing::debug!(kept, steps, "retention pass found nothing to remove");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use std::sync::Arc;

    use crate::config::StorageConfig;
    use crate::store::{Ingested, NewEvent};

    #[tokio::test]
    async fn a_reloaded_retention_applies_at_once() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&StorageConfig {
            path: dir.path().join("store.redb"),
            retention: Duration::from_secs(3600),
        })
        .unwrap();
        let event = NewEvent {
            source: Arc::from("github"),
            event_type: None,
            delivery_id: None,
            content_type: None,
            headers: Vec::new(),
            body: bytes::Bytes::from_static(b"{}"),
            sinks: Vec::new(),
        };
        let Ingested::Accepted(id) = store.ingest(event).await.unwrap() else {
            panic!("a new event is accepted")
        };
        let (setting, watched) = watch::channel(Duration::from_secs(3600));
        let task = tokio::spawn(run(store.clone(), watched));
        // Under the hour-long retention the event stays, and the next pass is a minute away:
        // only a pass started by the change can remove it in time.
        setting.send_replace(Duration::ZERO);
        let deadline = Instant::now() + Duration::from_secs(10);
        while store.event(id).unwrap().is_some() {
            assert!(
                Instant::now() < deadline,
                "the event outlived a retention of zero"
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        task.abort();
        store.close().await;
    }

    #[test]
    fn the_interval_follows_the_retention_within_a_second_and_a_minute() {
        assert_eq!(interval(Duration::from_secs(2)), Duration::from_secs(1));
        assert_eq!(interval(Duration::from_secs(20)), Duration::from_secs(5));
        assert_eq!(
            interval(Duration::from_secs(7 * 24 * 3600)),
            Duration::from_secs(60)
        );
    }
}
