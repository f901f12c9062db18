//! Dispatch: one worker per sink takes due queue entries, waits on the sink's rate limiter,
//! delivers with bounded concurrency and records each attempt through the store.
//!
//! Invariant: dispatch alone decides *when* (backoff, jitter, `Retry-After`, dead letter);
//! the sink decides *whether*. It turns store records into [`crate::sinks::Delivery`], so
//! sinks never learn a store exists. A slow or failing sink never holds anything ingest needs.
//!
//! Delivery is at-least-once: an entry leaves the queue only in `Store::finish`, after its
//! attempt. An attempt cut short (shutdown, crash) leaves its entry queued, so it runs
//! again after the next start.

pub mod backoff;
pub mod health;
pub mod limiter;
mod worker;

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio::time::Instant;

use crate::config::{SinkConfig, SourceConfig};
use crate::summary::Summarizer;

/// Each source's summarizer, by source name: shared by the workers of sinks that render
/// messages, so a template sees the same summary the routes matched on.
pub(crate) type Summaries = std::collections::HashMap<Arc<str>, Summarizer>;
use crate::metrics::{Metrics, SinkMetrics};
use crate::sinks::{AnySink, SinkBuildError};
use crate::store::Store;

/// Extra time a worker's handle is given past the grace period before it is aborted; the
/// worker enforces the grace period itself, this only guards against a stuck worker.
const JOIN_MARGIN: Duration = Duration::from_secs(1);

/// The running workers, one per enabled sink that is not paused.
pub struct Dispatcher {
    /// Carries the shutdown deadline: `None` while running.
    stop: watch::Sender<Option<Instant>>,
    workers: Vec<(Arc<str>, JoinHandle<()>)>,
}

impl Dispatcher {
    /// Builds every enabled sink, then starts one worker task for each. Call inside a tokio
    /// runtime. Disabled and paused sinks get no worker: their queued entries wait.
    pub fn start(store: Store, sinks: &[SinkConfig]) -> Result<Dispatcher, SinkBuildError> {
        Dispatcher::start_observed(
            store,
            sinks,
            &[],
            None,
            Arc::new(health::Health::new(sinks)),
        )
    }

    /// Like [`Dispatcher::start`], counting into `metrics` (when given) and noting each
    /// sink's health in `health`.
    pub fn start_observed(
        store: Store,
        sinks: &[SinkConfig],
        sources: &[SourceConfig],
        metrics: Option<&Metrics>,
        health: Arc<health::Health>,
    ) -> Result<Dispatcher, SinkBuildError> {
        // Build all sinks before starting any worker, so a bad one starts nothing.
        let built = sinks
            .iter()
            .filter(|config| config.enabled)
            .map(|config| Ok((config, AnySink::new(config)?)))
            .collect::<Result<Vec<_>, SinkBuildError>>()?;
        let summaries: Arc<Summaries> = Arc::new(
            sources
                .iter()
                .map(|source| (Arc::from(source.name.as_str()), Summarizer::new(source)))
                .collect(),
        );
        let (stop, _) = watch::channel(None);
        // A paused sink is built (so a bad one still fails the start) but gets no worker:
        // ingress keeps queueing for it, and its queue waits for the pause to end.
        let workers = built
            .into_iter()
            .filter(|(config, _)| {
                if config.paused {
                    tracing::info!(sink = %config.name, "sink paused: queueing, not delivering");
                }
                !config.paused
            })
            .map(|(config, sink)| {
                let observe = worker::Observe {
                    metrics: metrics.map_or_else(SinkMetrics::detached, |m| m.sink(&config.name)),
                    health: health.clone(),
                };
                let worker = worker::Worker::new(
                    store.clone(),
                    config,
                    &summaries,
                    sink,
                    observe,
                    stop.subscribe(),
                );
                (Arc::from(config.name.as_str()), tokio::spawn(worker.run()))
            })
            .collect();
        Ok(Dispatcher { stop, workers })
    }

    /// Stops taking new entries, lets attempts in flight finish within `grace`, then aborts
    /// the rest (their entries stay queued and run after the next start).
    pub async fn shutdown(self, grace: Duration) {
        let deadline = Instant::now() + grace;
        self.stop.send_replace(Some(deadline));
        for (sink, mut handle) in self.workers {
            match tokio::time::timeout_at(deadline + JOIN_MARGIN, &mut handle).await {
                Ok(Ok(())) => {}
                Ok(Err(err)) if err.is_panic() => {
                    tracing::error!(sink = %sink, "delivery worker panicked; its queue is intact and resumes after restart");
                }
                Ok(Err(_)) => {}
                Err(_) => {
                    handle.abort();
                    tracing::warn!(sink = %sink, "delivery worker did not stop in time; aborted it");
                }
            }
        }
    }
}
