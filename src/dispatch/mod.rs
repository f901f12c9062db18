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
//!
//! A reload ([`Dispatcher::reconfigure`]) leaves the worker of an unchanged sink alone. A
//! changed sink's worker is retired like at shutdown (attempts in flight get the grace
//! period, then stay queued) and its successor starts only once it has ended, so an event
//! is never in two attempts for one sink; it keeps the limiter when the rate is the same,
//! and the receiver's `Retry-After` hold in any case.
//! A removed, paused or disabled sink's queue stays in the store, untouched.

pub mod backoff;
pub mod health;
pub mod limiter;
mod worker;

use std::sync::Arc;
use std::time::Duration;

use std::collections::HashMap;

use arc_swap::ArcSwap;
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
use limiter::Limiter;

/// Extra time a worker's handle is given past the grace period before it is aborted; the
/// worker enforces the grace period itself, this only guards against a stuck worker.
const JOIN_MARGIN: Duration = Duration::from_secs(1);

/// The running workers: one per enabled sink that is not paused.
pub struct Dispatcher {
    store: Store,
    health: Arc<health::Health>,
    /// Read by every worker at each attempt; replaced whole by a reload.
    summaries: Arc<ArcSwap<Summaries>>,
    /// Each configured sink's settings, as its worker (if any) runs them.
    sinks: HashMap<String, SinkConfig>,
    /// One lane per sink name seen since start, removed ones included.
    lanes: HashMap<Arc<str>, Lane>,
}

/// One sink name's workers over time.
#[derive(Default)]
struct Lane {
    /// Carries the current worker's stop deadline (`None` while it runs); absent when no
    /// worker is meant to run (paused, disabled, removed).
    stop: Option<watch::Sender<Option<Instant>>>,
    /// The last task that delivers or may still deliver for this sink. A new worker waits
    /// for it to end before it reads the queue.
    task: Option<JoinHandle<()>>,
    /// The sink's rate limiter, handed from worker to worker while the rate stays the same.
    limiter: Option<Arc<Limiter>>,
    /// The receiver's `Retry-After`, handed from worker to worker: a reload that changes,
    /// pauses or resumes the sink does not cut short the wait its receiver asked for. (An
    /// outage's wait is cut short: the change may be its fix.)
    hold: Arc<worker::Hold>,
}

/// Builds every enabled sink of `sinks` (paused ones included), by name; every sink that
/// cannot be built is reported, none is started.
pub fn build(sinks: &[SinkConfig]) -> Result<HashMap<String, AnySink>, Vec<SinkBuildError>> {
    let mut built = HashMap::new();
    let mut problems = Vec::new();
    for config in sinks.iter().filter(|config| config.enabled) {
        match AnySink::new(config) {
            Ok(sink) => {
                built.insert(config.name.clone(), sink);
            }
            Err(err) => problems.push(err),
        }
    }
    if problems.is_empty() {
        Ok(built)
    } else {
        Err(problems)
    }
}

fn summaries(sources: &[SourceConfig]) -> Summaries {
    sources
        .iter()
        .map(|source| (Arc::from(source.name.as_str()), Summarizer::new(source)))
        .collect()
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
        let built = build(sinks).map_err(|mut problems| problems.remove(0))?;
        let mut dispatcher = Dispatcher {
            store,
            health,
            summaries: Arc::new(ArcSwap::from_pointee(summaries(sources))),
            sinks: HashMap::new(),
            lanes: HashMap::new(),
        };
        // Nothing runs yet, so there is nothing to retire: the grace period is unused.
        dispatcher.reconfigure(sinks, sources, built, metrics, Duration::ZERO);
        Ok(dispatcher)
    }

    /// Runs `sinks` from now on, with `built` holding every enabled one ([`build`]).
    ///
    /// An unchanged sink's worker is left alone. A changed, paused, disabled or removed
    /// sink's worker is told to stop: its attempts in flight get `grace`, then stay queued.
    /// A changed or new sink that is enabled and not paused gets a new worker, which starts
    /// once its predecessor has ended and keeps its limiter if the rate is the same. No
    /// queue entry is touched: a removed sink's queue waits in the store for its return.
    pub fn reconfigure(
        &mut self,
        sinks: &[SinkConfig],
        sources: &[SourceConfig],
        mut built: HashMap<String, AnySink>,
        metrics: Option<&Metrics>,
        grace: Duration,
    ) {
        self.summaries.store(Arc::new(summaries(sources)));
        let retire_at = Instant::now() + grace;
        let mut previous = std::mem::take(&mut self.sinks);
        for config in sinks {
            let before = previous.remove(&config.name);
            self.sinks.insert(config.name.clone(), config.clone());
            if before.as_ref() == Some(config) {
                continue;
            }
            let lane = self
                .lanes
                .entry(Arc::from(config.name.as_str()))
                .or_default();
            retire(lane, retire_at);
            lane.hold.forget_outage();
            let same_rate = before.as_ref().is_some_and(|b| b.rate == config.rate);
            if !same_rate {
                lane.limiter = config
                    .rate
                    .as_ref()
                    .map(|rate| Arc::new(Limiter::new(rate)));
            }
            if !config.enabled {
                continue;
            }
            if config.paused {
                tracing::info!(sink = %config.name, "sink paused: queueing, not delivering");
                continue;
            }
            let Some(sink) = built.remove(&config.name) else {
                // `build` covers every enabled sink; a caller that skipped it gets a log
                // line and no worker rather than a panic.
                tracing::error!(sink = %config.name, "sink was not built; not delivering");
                continue;
            };
            let observe = worker::Observe {
                metrics: metrics.map_or_else(SinkMetrics::detached, |m| m.sink(&config.name)),
                health: self.health.clone(),
            };
            let (stop, stop_rx) = watch::channel(None);
            let worker = worker::Worker::new(
                self.store.clone(),
                config,
                &self.summaries,
                sink,
                observe,
                worker::Pace {
                    limiter: lane.limiter.clone(),
                    hold: lane.hold.clone(),
                },
                stop_rx,
            );
            let predecessor = lane.task.take();
            let name = config.name.clone();
            lane.stop = Some(stop);
            lane.task = Some(tokio::spawn(async move {
                if let Some(predecessor) = predecessor
                    && let Err(err) = predecessor.await
                    && err.is_panic()
                {
                    tracing::error!(sink = %name, "the previous delivery worker panicked; its queue is intact");
                }
                worker.run().await;
            }));
        }
        // Removed sinks: the worker stops, the lane (and the store's queue) stays.
        for name in previous.into_keys() {
            if let Some(lane) = self.lanes.get_mut(name.as_str()) {
                retire(lane, retire_at);
                lane.limiter = None;
            }
        }
    }

    /// Stops taking new entries, lets attempts in flight finish within `grace`, then aborts
    /// the rest (their entries stay queued and run after the next start).
    pub async fn shutdown(self, grace: Duration) {
        let deadline = Instant::now() + grace;
        for lane in self.lanes.values() {
            if let Some(stop) = &lane.stop {
                stop.send_replace(Some(deadline));
            }
        }
        for (sink, lane) in self.lanes {
            let Some(mut handle) = lane.task else {
                continue;
            };
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

    /// How many sinks have a worker meant to run (neither paused, disabled nor removed).
    pub fn running(&self) -> usize {
        self.lanes.values().filter(|l| l.stop.is_some()).count()
    }
}

/// Tells the lane's worker, if one runs, to stop taking entries and to end its attempts in
/// flight by `at`; the lane keeps its task, for the successor to wait on.
fn retire(lane: &mut Lane, at: Instant) {
    if let Some(stop) = lane.stop.take() {
        stop.send_replace(Some(at));
    }
}

#[cfg(test)]
mod test_support;
#[cfg(test)]
mod tests;
