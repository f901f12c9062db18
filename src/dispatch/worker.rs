//! One sink's delivery worker: reads due entries in batches, waits on the rate limiter,
//! takes a concurrency slot, runs each attempt as its own task and records its outcome.
//!
//! Invariants:
//! - An event is in at most one attempt at a time per sink: events in flight are passed to
//!   `Store::due` as `skip`, and leave the in-flight set only once their attempt task ended.
//! - Every concurrency permit is held by a task in the worker's `JoinSet`, so "no free slot"
//!   always has an attempt to wait for.
//! - The worker never spins: with nothing to do it sleeps until the store says entries were
//!   added, the next entry falls due, an attempt ends, or shutdown begins. A failing store
//!   read or write is retried after [`PAUSE`].
//! - No lock is held across an await; the store's blocking reads run on the blocking pool.

use std::collections::{HashMap, HashSet};
use std::pin::pin;
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use rand::Rng;
use tokio::sync::{OwnedSemaphorePermit, Semaphore, watch};
use tokio::task::{JoinError, JoinSet};
use tokio::time::Instant;

use super::Summaries;
use super::backoff;
use super::health::Health;
use super::limiter::Limiter;
use crate::clock::now_ms;
use crate::config::{RetryPolicy, SinkConfig};
use crate::metrics::{DeliveryOutcome, SinkMetrics};
use crate::sinks::{AnySink, Delivery, Outcome, Sink, SinkError};
use crate::store::{AttemptOutcome, AttemptRecord, Due, EventId, NextStep, Store};

/// How long the worker waits after a failed store read, and how long an entry whose attempt
/// could not be recorded stays out of reach: long enough that a full disk is no hot loop.
const PAUSE: Duration = Duration::from_secs(1);
/// Most events a worker passes over in one round while their outcomes cannot be recorded.
const MAX_UNRECORDED: usize = 100_000;

/// Time allowed past the sink's own timeout before dispatch gives up on an attempt: the
/// sink enforces its timeout; this only catches a sink that does not.
const TIMEOUT_MARGIN: Duration = Duration::from_secs(2);

/// Where a worker reports its attempts besides the store.
pub(super) struct Observe {
    /// This sink's metric handles.
    pub metrics: SinkMetrics,
    /// Every sink's health board.
    pub health: Arc<Health>,
}

/// What every attempt of one sink needs; shared by its attempt tasks.
struct Shared {
    store: Store,
    /// Summarizers by source name, for sinks that render messages; `None` for the others.
    /// A reload swaps the sources under every worker, changed sink or not.
    summaries: Option<Arc<ArcSwap<Summaries>>>,
    name: Arc<str>,
    sink: AnySink,
    retry: RetryPolicy,
    timeout: Duration,
    observe: Observe,
    /// What holds every attempt back: a 429 or 503 with a `Retry-After` is about the whole
    /// sink, not the one event, and so is a receiver out of reach. Shared with the sink's
    /// next worker after a reload.
    hold: Arc<Hold>,
    /// Events delivered in this round whose outcome could not be recorded (a full disk): they
    /// stay queued, first in due order, and are passed over until every other due entry has
    /// had its turn, so the same few are not sent again and again while the rest wait.
    unrecorded: std::sync::Mutex<HashSet<EventId>>,
}

/// What paces a sink's deliveries, handed from one of its workers to the next.
pub(super) struct Pace {
    /// The sink's `rate`, when it has one.
    pub limiter: Option<Arc<Limiter>>,
    /// The wait its receiver asked for.
    pub hold: Arc<Hold>,
}

/// What holds back every delivery of a sink: the wait its receiver asked for, and an outage.
#[derive(Debug, Default)]
pub(super) struct Hold(std::sync::Mutex<HoldState>);

#[derive(Debug, Default)]
struct HoldState {
    /// The end of the wait the receiver asked for (`Retry-After`), if any.
    asked: Option<Instant>,
    /// Set while the receiver is out of reach.
    outage: Option<Outage>,
}

impl HoldState {
    /// The end of the later of the two waits, past or not.
    fn until(&self) -> Option<Instant> {
        self.asked.max(self.outage.map(|outage| outage.until))
    }
}

/// A receiver out of reach. No attempt starts before `until`; after it, one attempt at a
/// time finds out whether it is back, so a long outage spends one delivery's attempt per
/// try instead of every queued delivery's.
#[derive(Debug, Clone, Copy)]
struct Outage {
    since: Instant,
    /// Tries that found the receiver out of reach: the wait grows with them as a retry's
    /// backoff grows with its attempts.
    failures: u32,
    /// When the current wait began: an attempt started before it was already on its way
    /// when the outage was seen, and its failure is not another try.
    began: Instant,
    until: Instant,
}

impl Hold {
    fn lock(&self) -> std::sync::MutexGuard<'_, HoldState> {
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Forgets an outage: a reload changed the sink (its URL, say), so the next attempt
    /// should not wait for a try scheduled against the old settings.
    pub(super) fn forget_outage(&self) {
        self.lock().outage = None;
    }
}

#[cfg(test)]
impl Hold {
    /// The end of the wait the receiver asked for, if one was asked for (past or not).
    pub(super) fn until(&self) -> Option<Instant> {
        self.lock().asked
    }
}

/// Whether an attempt's failure says the receiver, not the event, is the problem: no answer
/// at all, or a gateway saying the service behind it is down.
fn out_of_reach(outcome: &Outcome) -> bool {
    match outcome {
        Outcome::Retry { error, .. } => {
            error.unreachable || matches!(error.status, Some(502..=504))
        }
        _ => false,
    }
}

/// The outcome of an attempt the sink itself did not end within `limit` (its own `timeout`
/// plus a margin): no answer came, so it counts as out of reach, like a timeout the sink
/// enforced.
fn no_outcome_within(limit: Duration, sink: &str) -> Outcome {
    Outcome::Retry {
        after: None,
        error: SinkError::unreachable(format!(
            "no outcome within {}; raise [sinks.{sink}] timeout if the receiver is slow",
            humantime::format_duration(limit),
        )),
    }
}

/// Whether an attempt's outcome shows the receiver answering.
fn answered(outcome: &Outcome) -> bool {
    match outcome {
        Outcome::Delivered { .. } => true,
        Outcome::Retry { error, .. } | Outcome::Failed(error) => {
            error.status.is_some() && !out_of_reach(outcome)
        }
        Outcome::Skipped { .. } => false,
    }
}

impl Shared {
    /// Passes `event` over until the round ends (see `unrecorded`).
    fn pass_over(&self, event: EventId) {
        let mut unrecorded = self.unrecorded.lock().unwrap_or_else(|e| e.into_inner());
        if unrecorded.len() >= MAX_UNRECORDED {
            // A round that long on a full disk: start the next one rather than grow.
            unrecorded.clear();
        }
        unrecorded.insert(event);
    }

    /// The events passed over until the round ends (see `unrecorded`), as they are now.
    fn unrecorded(&self) -> HashSet<EventId> {
        self.unrecorded
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Holds the sink when `outcome` is a 429 or 503 that says how long to wait.
    fn hold_if_asked(&self, outcome: &Outcome) {
        let Outcome::Retry {
            after: Some(after),
            error,
        } = outcome
        else {
            return;
        };
        if !matches!(error.status, Some(429 | 503)) {
            return;
        }
        let until = Instant::now() + (*after).min(backoff::CEILING);
        let mut hold = self.hold.lock();
        if hold.asked.is_none_or(|current| current < until) {
            hold.asked = Some(until);
            self.publish_hold(&hold);
            tracing::info!(
                sink = %self.name,
                wait_ms = u64::try_from(after.as_millis()).unwrap_or(u64::MAX),
                "the receiver asked to wait (Retry-After); holding every delivery of this sink until then"
            );
        }
    }

    /// Starts, extends or ends an outage after an attempt that began at `started`. When the
    /// attempt found the receiver out of reach, returns how long until the sink is tried
    /// again.
    fn note_reach(&self, outcome: &Outcome, started: Instant) -> Option<Duration> {
        let now = Instant::now();
        let mut hold = self.hold.lock();
        if out_of_reach(outcome) {
            let failures = match hold.outage {
                None => 1,
                // On its way before the current wait began: already counted.
                Some(outage) if started < outage.began => {
                    return Some(outage.until.saturating_duration_since(now));
                }
                Some(outage) => outage.failures.saturating_add(1),
            };
            let wait = backoff::cap(&self.retry, failures).max(backoff::FLOOR);
            let since = hold.outage.map_or(now, |outage| outage.since);
            hold.outage = Some(Outage {
                since,
                failures,
                began: now,
                until: now + wait,
            });
            self.publish_hold(&hold);
            drop(hold);
            let wait_ms = u64::try_from(wait.as_millis()).unwrap_or(u64::MAX);
            if failures == 1 {
                tracing::warn!(
                    sink = %self.name,
                    wait_ms,
                    "the receiver is out of reach; holding every delivery of this sink, then trying one at a time until one gets through"
                );
            } else {
                tracing::debug!(sink = %self.name, tries = failures, wait_ms, "the receiver is still out of reach");
            }
            return Some(wait);
        } else if answered(outcome)
            && let Some(outage) = hold.outage.take()
        {
            self.publish_hold(&hold);
            drop(hold);
            tracing::info!(
                sink = %self.name,
                out_of_reach_ms = u64::try_from(outage.since.elapsed().as_millis()).unwrap_or(u64::MAX),
                tries = outage.failures,
                "the receiver answers again; resuming deliveries"
            );
        }
        None
    }

    /// Shows the end of the hold in the sink's health, for the admin API.
    fn publish_hold(&self, hold: &HoldState) {
        let now = Instant::now();
        let until_ms = hold.until().filter(|until| *until > now).map(|until| {
            let left = u64::try_from((until - now).as_millis()).unwrap_or(u64::MAX);
            now_ms().saturating_add(left)
        });
        self.observe.health.held(&self.name, until_ms);
    }

    /// When the sink is held, the instant the hold ends.
    fn held(&self) -> Option<Instant> {
        self.hold
            .lock()
            .until()
            .filter(|until| *until > Instant::now())
    }

    /// Whether the receiver was out of reach and has not answered since: then attempts go
    /// one at a time.
    fn probing(&self) -> bool {
        self.hold.lock().outage.is_some()
    }
}

/// One sink's worker; [`Worker::run`] is its task.
pub(super) struct Worker {
    shared: Arc<Shared>,
    /// Shared with the worker that replaces this one when a reload keeps the rate.
    limiter: Option<Arc<Limiter>>,
    permits: Arc<Semaphore>,
    stop: watch::Receiver<Option<Instant>>,
}

/// The attempts in flight and the events they carry.
#[derive(Default)]
struct InFlight {
    tasks: JoinSet<EventId>,
    by_task: HashMap<tokio::task::Id, EventId>,
    events: HashSet<EventId>,
}

impl InFlight {
    /// Runs `task` for `event`, which stays in flight until the task ends.
    fn spawn(&mut self, event: EventId, task: impl Future<Output = EventId> + Send + 'static) {
        let handle = self.tasks.spawn(task);
        self.by_task.insert(handle.id(), event);
        self.events.insert(event);
    }

    /// Takes note of an ended task. A panicked attempt keeps its event in flight for
    /// [`PAUSE`], so a delivery that panics every time is no hot loop.
    fn ended(&mut self, sink: &str, result: Result<(tokio::task::Id, EventId), JoinError>) {
        match result {
            Ok((task, event)) => {
                self.by_task.remove(&task);
                self.events.remove(&event);
            }
            Err(err) => {
                let Some(event) = self.by_task.remove(&err.id()) else {
                    return;
                };
                if err.is_panic() {
                    tracing::error!(sink, event_id = %event, "delivery attempt panicked; the entry stays queued");
                    self.spawn(event, async move {
                        tokio::time::sleep(PAUSE).await;
                        event
                    });
                } else {
                    self.events.remove(&event);
                }
            }
        }
    }

    /// Notes every task that has already ended.
    fn reap(&mut self, sink: &str) {
        while let Some(result) = self.tasks.try_join_next_with_id() {
            self.ended(sink, result);
        }
    }
}

impl Worker {
    /// A worker for one enabled sink, paced by `pace`.
    pub(super) fn new(
        store: Store,
        config: &SinkConfig,
        summaries: &Arc<ArcSwap<Summaries>>,
        sink: AnySink,
        observe: Observe,
        pace: Pace,
        stop: watch::Receiver<Option<Instant>>,
    ) -> Worker {
        let Pace { limiter, hold } = pace;
        let concurrency = config.concurrency.max(1);
        Worker {
            shared: Arc::new(Shared {
                store,
                summaries: sink.renders_messages().then(|| summaries.clone()),
                name: Arc::from(config.name.as_str()),
                sink,
                retry: config.retry,
                timeout: config.timeout,
                observe,
                hold,
                unrecorded: std::sync::Mutex::default(),
            }),
            limiter,
            permits: Arc::new(Semaphore::new(concurrency)),
            stop,
        }
    }

    /// Delivers until shutdown, then gives attempts in flight until the deadline.
    pub(super) async fn run(self) {
        let Worker {
            shared,
            limiter,
            permits,
            mut stop,
        } = self;
        let name = shared.name.clone();
        let added = shared.store.watch(&name);
        // What holds the sink now: a reload may have ended an outage's wait.
        shared.publish_hold(&shared.hold.lock());
        let mut inflight = InFlight::default();

        'work: while !stopping(&stop) {
            inflight.reap(&name);
            let free = permits.available_permits();
            if free == 0 {
                tokio::select! {
                    Some(result) = inflight.tasks.join_next_with_id() => inflight.ended(&name, result),
                    () = stopped(&mut stop) => {}
                }
                continue;
            }

            // Registered before the read, so entries committed during or after it wake us.
            let mut notified = pin!(added.notified());
            notified.as_mut().enable();

            // Enough to fill the free slots, and as many again for slots that free up while
            // these start; more would only go stale while waiting.
            let limit = 2 * free;
            let passed_over = shared.unrecorded();
            let batch = {
                let store = shared.store.clone();
                let sink = name.clone();
                let mut skip = inflight.events.clone();
                skip.extend(passed_over.iter().copied());
                let now = now_ms();
                tokio::task::spawn_blocking(move || store.due(&sink, now, limit, &skip)).await
            };
            let batch = match batch {
                Ok(Ok(batch)) => batch,
                Ok(Err(err)) => {
                    tracing::warn!(sink = %name, error = %err, "cannot read the delivery queue; trying again shortly");
                    pause(&mut stop).await;
                    continue;
                }
                Err(err) => {
                    tracing::error!(sink = %name, error = %err, "reading the delivery queue failed; trying again shortly");
                    pause(&mut stop).await;
                    continue;
                }
            };

            let fetched = batch.entries.len();
            if fetched < limit && !passed_over.is_empty() {
                // Every other due entry has had its turn: the next round may send these again.
                shared
                    .unrecorded
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .retain(|event| !passed_over.contains(event));
                if fetched == 0 {
                    continue;
                }
            }
            for due in batch.entries {
                let permit = tokio::select! {
                    permit = permits.clone().acquire_owned() => {
                        permit.expect("the semaphore is never closed")
                    }
                    () = stopped(&mut stop) => break 'work,
                };
                // The rate's cell is taken last, right before the attempt starts: one taken
                // before a wait for a slot or a hold is spent while the limiter refills to
                // its burst, and the receiver then got burst + 1 requests at once.
                loop {
                    // Checked with the slot in hand: the attempt that asked for the hold sets
                    // it before it gives its slot back.
                    while let Some(until) = shared.held() {
                        tokio::select! {
                            () = tokio::time::sleep_until(until) => {}
                            () = stopped(&mut stop) => break 'work,
                        }
                    }
                    if probe_in_flight(&shared, &inflight) {
                        tokio::select! {
                            Some(result) = inflight.tasks.join_next_with_id() => inflight.ended(&name, result),
                            () = stopped(&mut stop) => break 'work,
                        }
                        continue;
                    }
                    if let Some(limiter) = &limiter {
                        tokio::select! {
                            () = limiter.until_ready() => {}
                            () = stopped(&mut stop) => break 'work,
                        }
                    }
                    // A hold set while waiting for the cell comes first; the cell is lost,
                    // which only slows the sink.
                    if shared.held().is_none() && !probe_in_flight(&shared, &inflight) {
                        break;
                    }
                }
                if stopping(&stop) {
                    break 'work;
                }
                let event = due.entry.event_id;
                inflight.spawn(event, attempt(shared.clone(), due, permit));
            }
            if fetched >= limit {
                // The page was full: more may be due right now.
                continue;
            }

            let next_due = batch
                .next_due_ms
                .map(|ms| Instant::now() + Duration::from_millis(ms.saturating_sub(now_ms())));
            tokio::select! {
                // A commit queued entries; one may be due before anything seen so far.
                () = &mut notified => {}
                () = sleep_until(next_due), if next_due.is_some() => {}
                // A slot is free again, and its entry may have been rescheduled.
                Some(result) = inflight.tasks.join_next_with_id() => inflight.ended(&name, result),
                () = stopped(&mut stop) => {}
            }
        }

        drain(&name, inflight, deadline(&stop)).await;
    }
}

/// Whether a try of a receiver out of reach is still on its way: the next attempt waits for
/// its outcome.
fn probe_in_flight(shared: &Shared, inflight: &InFlight) -> bool {
    shared.probing() && !inflight.tasks.is_empty()
}

/// Waits for attempts in flight until `deadline`, then aborts the rest: their entries were
/// never removed from the queue, so they run again after the next start.
async fn drain(sink: &str, mut inflight: InFlight, deadline: Instant) {
    let finished = tokio::time::timeout_at(deadline, async {
        while let Some(result) = inflight.tasks.join_next_with_id().await {
            if let Err(err) = result
                && err.is_panic()
            {
                tracing::error!(
                    sink,
                    "delivery attempt panicked during shutdown; the entry stays queued"
                );
            }
        }
    })
    .await;
    if finished.is_err() {
        tracing::warn!(
            sink,
            in_flight = inflight.tasks.len(),
            "shutdown grace period over: stopping deliveries in flight; they stay queued and run after restart"
        );
        inflight.tasks.shutdown().await;
    }
}

/// One attempt: deliver, decide, record. Returns the event id when the entry may be read
/// again.
async fn attempt(shared: Arc<Shared>, due: Due, permit: OwnedSemaphorePermit) -> EventId {
    let Due { entry, event } = due;
    let delivery = Delivery {
        summary: shared.summaries.as_ref().and_then(|summaries| {
            let summaries = summaries.load();
            let summarizer = summaries.get(&event.source)?;
            Some(Arc::new(
                summarizer.summarize(event.event_type.as_deref(), &event.body),
            ))
        }),
        event,
        attempt: entry.attempt,
    };
    let started_ms = now_ms();
    let started = Instant::now();
    let limit = shared.timeout + TIMEOUT_MARGIN;
    let outcome = tokio::time::timeout(limit, shared.sink.deliver(&delivery))
        .await
        .unwrap_or_else(|_| no_outcome_within(limit, &shared.name));
    let duration = started.elapsed();
    shared.hold_if_asked(&outcome);
    let sink_held = shared.note_reach(&outcome, started);
    // The slot is free once the receiver is done; recording is the store's work.
    drop(permit);

    // A replay starts a new round with a full retry budget.
    let round_attempt = entry.attempt.saturating_sub(entry.first_attempt) + 1;
    let finished_ms = now_ms();
    let mut decision = decide(
        &outcome,
        round_attempt,
        &shared.retry,
        finished_ms,
        &mut rand::rng(),
    );
    // A receiver that said how long to wait keeps that wait in the stored due time, also
    // across a restart, which forgets holds.
    let asked_to_wait = matches!(outcome, Outcome::Retry { after: Some(_), .. });
    if let Some(wait) = sink_held.filter(|_| !asked_to_wait) {
        decision.behind_hold(finished_ms, wait);
    }
    observe(&shared, &decision, duration, finished_ms);
    let duration_ms = u32::try_from(duration.as_millis()).unwrap_or(u32::MAX);
    log_outcome(
        &shared.name,
        &entry.event_id,
        entry.attempt,
        duration_ms,
        &decision,
    );
    let record = AttemptRecord {
        started_ms,
        duration_ms,
        status: decision.status,
        error: decision.error,
        outcome: decision.outcome,
        message_id: decision.message_id,
    };
    let event_id = entry.event_id;
    if let Err(err) = shared.store.finish(entry, record, decision.next).await {
        shared.pass_over(event_id);
        tracing::error!(
            sink = %shared.name,
            event_id = %event_id,
            error = %err,
            "cannot record the delivery attempt; the entry stays queued and will be tried again"
        );
        // Still in flight meanwhile: a full disk must not turn into a hot retry loop.
        tokio::time::sleep(PAUSE).await;
    }
    event_id
}

/// Counts the attempt and notes the sink's health.
fn observe(shared: &Shared, decision: &Decision, duration: Duration, now_ms: u64) {
    let outcome = match decision.outcome {
        AttemptOutcome::Delivered => DeliveryOutcome::Delivered,
        AttemptOutcome::Retrying => DeliveryOutcome::Retrying,
        AttemptOutcome::DeadLettered => DeliveryOutcome::DeadLettered,
        AttemptOutcome::Skipped => DeliveryOutcome::Skipped,
    };
    shared
        .observe
        .metrics
        .attempt(outcome, duration.as_secs_f64());
    let health = &shared.observe.health;
    // A skip is the sink working as meant: its reason is not a failure.
    let failure = decision
        .error
        .as_ref()
        .filter(|_| decision.outcome != AttemptOutcome::Skipped);
    match failure {
        None => health.delivered(&shared.name, now_ms),
        Some(error) if decision.outcome == AttemptOutcome::DeadLettered => {
            health.dead_lettered(&shared.name, error, now_ms)
        }
        Some(error) => health.failed(&shared.name, error, now_ms),
    }
}

/// What becomes of an entry after one attempt.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Decision {
    next: NextStep,
    outcome: AttemptOutcome,
    status: Option<u16>,
    /// This attempt's error, as recorded.
    error: Option<String>,
    /// The delay before the next attempt, when there is one.
    retry_in: Option<Duration>,
    /// The sink's id for the delivered message, when it gave one.
    message_id: Option<String>,
    /// The retry waits for the sink's hold (its receiver is out of reach), not for a
    /// backoff of its own.
    held: bool,
}

impl Decision {
    /// A retry after the receiver was out of reach is due at once and waits behind the
    /// sink's hold, which alone says when the receiver is tried again: so when it answers,
    /// or a reload or restart changes the sink, every such delivery goes out then, not at a
    /// backoff of its own. `wait` is the hold's, for the log.
    fn behind_hold(&mut self, now_ms: u64, wait: Duration) {
        if let NextStep::RetryAt(_) = self.next {
            self.next = NextStep::RetryAt(now_ms);
            self.retry_in = Some(wait);
            self.held = true;
        }
    }
}

/// Decides, from a sink's outcome, whether the entry is done, retried (and when) or
/// dead-lettered. `attempt` is the number of the attempt that just ended.
fn decide<R: Rng + ?Sized>(
    outcome: &Outcome,
    attempt: u32,
    policy: &RetryPolicy,
    now_ms: u64,
    rng: &mut R,
) -> Decision {
    match outcome {
        Outcome::Delivered { status, message_id } => Decision {
            next: NextStep::Done,
            outcome: AttemptOutcome::Delivered,
            status: *status,
            error: None,
            retry_in: None,
            message_id: message_id.clone(),
            held: false,
        },
        Outcome::Retry { after, error } if attempt < policy.max_attempts => {
            let delay = backoff::delay(policy, attempt, *after, rng);
            let delay_ms = u64::try_from(delay.as_millis()).unwrap_or(u64::MAX);
            Decision {
                next: NextStep::RetryAt(now_ms.saturating_add(delay_ms)),
                outcome: AttemptOutcome::Retrying,
                status: error.status,
                error: Some(error.message.clone()),
                retry_in: Some(delay),
                message_id: None,
                held: false,
            }
        }
        Outcome::Retry { error, .. } => Decision {
            next: NextStep::DeadLetter(format!(
                "gave up after {attempt} attempts (retry max_attempts = {}); last error: {}",
                policy.max_attempts, error.message
            )),
            outcome: AttemptOutcome::DeadLettered,
            status: error.status,
            error: Some(error.message.clone()),
            retry_in: None,
            message_id: None,
            held: false,
        },
        Outcome::Failed(error) => Decision {
            next: NextStep::DeadLetter(error.message.clone()),
            outcome: AttemptOutcome::DeadLettered,
            status: error.status,
            error: Some(error.message.clone()),
            retry_in: None,
            message_id: None,
            held: false,
        },
        // Done like a delivery; the reason goes where an error would, so it can be read back.
        Outcome::Skipped { reason } => Decision {
            next: NextStep::Done,
            outcome: AttemptOutcome::Skipped,
            status: None,
            error: Some(reason.clone()),
            retry_in: None,
            message_id: None,
            held: false,
        },
    }
}

/// One log line per attempt: never the URL or the body.
fn log_outcome(sink: &str, event_id: &EventId, attempt: u32, duration_ms: u32, d: &Decision) {
    match (&d.next, d.retry_in) {
        (NextStep::Done, _) if d.outcome == AttemptOutcome::Skipped => tracing::info!(
            sink,
            event_id = %event_id,
            attempt,
            duration_ms,
            reason = d.error.as_deref().unwrap_or(""),
            "skipped: nothing in this event for the sink"
        ),
        (NextStep::Done, _) => tracing::info!(
            sink,
            event_id = %event_id,
            attempt,
            status = d.status,
            duration_ms,
            message_id = d.message_id.as_deref(),
            "delivered"
        ),
        (NextStep::RetryAt(_), retry_in) => tracing::warn!(
            sink,
            event_id = %event_id,
            attempt,
            status = d.status,
            duration_ms,
            error = d.error.as_deref().unwrap_or(""),
            retry_in_ms = retry_in.map_or(0, |r| r.as_millis() as u64),
            sink_held = d.held,
            "delivery failed; will retry"
        ),
        (NextStep::DeadLetter(reason), _) => tracing::warn!(
            sink,
            event_id = %event_id,
            attempt,
            status = d.status,
            duration_ms,
            error = reason.as_str(),
            "delivery failed; dead-lettered"
        ),
    }
}

/// Whether shutdown has begun (or the dispatcher is gone).
fn stopping(stop: &watch::Receiver<Option<Instant>>) -> bool {
    stop.borrow().is_some() || stop.has_changed().is_err()
}

/// Resolves once shutdown has begun.
async fn stopped(stop: &mut watch::Receiver<Option<Instant>>) {
    // An error means the dispatcher was dropped without a shutdown: stop as well.
    let _ = stop.wait_for(Option::is_some).await;
}

/// The shutdown deadline; now when the dispatcher went away without naming one.
fn deadline(stop: &watch::Receiver<Option<Instant>>) -> Instant {
    stop.borrow().unwrap_or_else(Instant::now)
}

/// Sleeps [`PAUSE`], or less if shutdown begins.
async fn pause(stop: &mut watch::Receiver<Option<Instant>>) {
    tokio::select! {
        () = tokio::time::sleep(PAUSE) => {}
        () = stopped(stop) => {}
    }
}

async fn sleep_until(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Rate;
    use crate::dispatch::Dispatcher;
    use crate::sinks::webhook::test_receiver::{Answer, Receiver, WAIT};
    use rand::SeedableRng;
    use rand::rngs::StdRng;

    use crate::dispatch::test_support::{SINK, ingest, open_store, policy, sink_config};

    /// Stops the dispatcher (awaiting the attempts in flight, their records included) and
    /// reads back what the store holds for `id`.
    async fn stop_and_read(
        dispatcher: Dispatcher,
        store: &Store,
        id: EventId,
    ) -> Vec<(String, u32, AttemptRecord)> {
        dispatcher.shutdown(WAIT).await;
        store.attempts(id).unwrap()
    }

    fn outcomes(
        attempts: &[(String, u32, AttemptRecord)],
    ) -> Vec<(u32, Option<u16>, AttemptOutcome)> {
        attempts
            .iter()
            .map(|(_, n, r)| (*n, r.status, r.outcome))
            .collect()
    }

    #[tokio::test]
    async fn server_errors_are_retried_until_the_receiver_takes_the_event() {
        let (_dir, store) = open_store();
        let mut receiver = Receiver::start(vec![Answer::status(503), Answer::status(500)]).await;
        let config = sink_config(
            receiver.url(),
            policy(5, 20, 50),
            None,
            Duration::from_secs(5),
        );
        let dispatcher = Dispatcher::start(store.clone(), &[config]).unwrap();
        let id = ingest(&store, 1).await;

        for attempt in 1..=3 {
            let got = receiver.next().await;
            assert_eq!(got.header("webhook-id"), id.to_string());
            assert_eq!(got.header("x-hookrelay-attempt"), attempt.to_string());
            assert_eq!(&got.body[..], b"{\"n\":1}");
        }
        let attempts = stop_and_read(dispatcher, &store, id).await;
        assert_eq!(
            outcomes(&attempts),
            [
                (1, Some(503), AttemptOutcome::Retrying),
                (2, Some(500), AttemptOutcome::Retrying),
                (3, Some(204), AttemptOutcome::Delivered),
            ]
        );
        assert_eq!(store.queue_len(SINK).unwrap(), 0);
        assert!(store.dead_letters(SINK).unwrap().is_empty());
        store.close().await;
    }

    #[tokio::test]
    async fn a_client_error_is_dead_lettered_without_retrying() {
        let (_dir, store) = open_store();
        let mut receiver = Receiver::start(vec![Answer::status(400).body("bad payload")]).await;
        let config = sink_config(
            receiver.url(),
            policy(5, 10, 20),
            None,
            Duration::from_secs(5),
        );
        let dispatcher = Dispatcher::start(store.clone(), &[config]).unwrap();

        let refused = ingest(&store, 1).await;
        assert_eq!(
            receiver.next().await.header("webhook-id"),
            refused.to_string()
        );
        // The next request is the next event: the refused one was not tried again.
        let next = ingest(&store, 2).await;
        assert_eq!(receiver.next().await.header("webhook-id"), next.to_string());

        let attempts = stop_and_read(dispatcher, &store, refused).await;
        assert_eq!(
            outcomes(&attempts),
            [(1, Some(400), AttemptOutcome::DeadLettered)]
        );
        let dead = store.dead_letters(SINK).unwrap();
        assert_eq!(dead.len(), 1);
        let (dead_id, dead_attempts, reason) = &dead[0];
        assert_eq!((*dead_id, *dead_attempts), (refused, 1));
        assert!(
            reason.contains("400") && reason.contains("bad payload"),
            "{reason}"
        );
        store.close().await;
    }

    #[tokio::test]
    async fn running_out_of_attempts_dead_letters_the_entry() {
        let (_dir, store) = open_store();
        let mut receiver = Receiver::start(vec![Answer::status(503), Answer::status(503)]).await;
        let config = sink_config(
            receiver.url(),
            policy(2, 10, 20),
            None,
            Duration::from_secs(5),
        );
        let dispatcher = Dispatcher::start(store.clone(), &[config]).unwrap();
        let id = ingest(&store, 1).await;
        receiver.next().await;
        receiver.next().await;
        // A later event gets through; had the first been retried a third time, the
        // receiver's default 204 would have gone to it first.
        let next = ingest(&store, 2).await;
        assert_eq!(receiver.next().await.header("webhook-id"), next.to_string());

        let attempts = stop_and_read(dispatcher, &store, id).await;
        assert_eq!(
            outcomes(&attempts),
            [
                (1, Some(503), AttemptOutcome::Retrying),
                (2, Some(503), AttemptOutcome::DeadLettered),
            ]
        );
        let dead = store.dead_letters(SINK).unwrap();
        assert_eq!(dead.len(), 1);
        assert!(
            dead[0].2.starts_with("gave up after 2 attempts"),
            "{}",
            dead[0].2
        );
        store.close().await;
    }

    #[tokio::test]
    async fn retry_after_from_the_receiver_is_obeyed() {
        let (_dir, store) = open_store();
        let mut receiver =
            Receiver::start(vec![Answer::status(429).header("retry-after", "1")]).await;
        // The policy alone would retry within 20 ms.
        let config = sink_config(
            receiver.url(),
            policy(5, 10, 20),
            None,
            Duration::from_secs(5),
        );
        let dispatcher = Dispatcher::start(store.clone(), &[config]).unwrap();
        ingest(&store, 1).await;

        let first = receiver.next().await;
        let second = receiver.next().await;
        let waited = second.at - first.at;
        // Due times are whole Unix milliseconds: allow their rounding, nothing more.
        assert!(
            waited >= Duration::from_millis(990),
            "the retry came {waited:?} after a 429 with Retry-After: 1"
        );
        dispatcher.shutdown(WAIT).await;
        store.close().await;
    }

    #[tokio::test]
    async fn a_429_with_retry_after_holds_every_delivery_of_the_sink() {
        let (_dir, store) = open_store();
        let mut receiver =
            Receiver::start(vec![Answer::status(429).header("retry-after", "1")]).await;
        let mut config = sink_config(
            receiver.url(),
            policy(5, 10, 20),
            None,
            Duration::from_secs(5),
        );
        config.concurrency = 1;
        // Both due before the worker starts: the second would go out at once, unheld.
        ingest(&store, 1).await;
        ingest(&store, 2).await;
        let dispatcher = Dispatcher::start(store.clone(), &[config]).unwrap();

        let refused = receiver.next().await;
        let next = receiver.next().await;
        let waited = next.at - refused.at;
        assert!(
            waited >= Duration::from_millis(990),
            "the next request came {waited:?} after a 429 with Retry-After: 1"
        );
        dispatcher.shutdown(WAIT).await;
        store.close().await;
    }

    #[tokio::test]
    async fn a_receiver_out_of_reach_holds_the_sink_and_is_tried_one_delivery_at_a_time() {
        let (_dir, store) = open_store();
        // Down (a gateway's 502) for five tries, then back.
        let mut receiver = Receiver::start(vec![Answer::status(502); 5]).await;
        let mut config = sink_config(
            receiver.url(),
            policy(3, 20, 100),
            None,
            Duration::from_secs(5),
        );
        config.concurrency = 1;
        let mut ids = Vec::new();
        for n in 1..=10 {
            ids.push(ingest(&store, n).await);
        }
        let dispatcher = Dispatcher::start(store.clone(), &[config]).unwrap();

        // Each try waits out the sink's backoff after the one before, instead of the next
        // queued delivery going out at once and spending its own attempt.
        let mut previous = receiver.next().await.at;
        for wait_ms in [20, 40, 80, 100] {
            let at = receiver.next().await.at;
            assert!(
                at - previous >= Duration::from_millis(wait_ms),
                "a try came {:?} after the one before, not after the {wait_ms} ms hold",
                at - previous
            );
            previous = at;
        }
        let mut delivered = std::collections::HashSet::new();
        while delivered.len() < ids.len() {
            delivered.insert(receiver.next().await.header("webhook-id").to_string());
        }
        dispatcher.shutdown(WAIT).await;
        // Five failed tries over ten deliveries with three attempts each: none ran out.
        assert!(store.dead_letters(SINK).unwrap().is_empty());
        assert_eq!(store.queue_len(SINK).unwrap(), 0);
        store.close().await;
    }

    #[test]
    fn only_a_receiver_that_does_not_answer_or_a_gateway_counts_as_out_of_reach() {
        let retry = |status: Option<u16>, unreachable: bool| Outcome::Retry {
            after: None,
            error: SinkError {
                status,
                message: String::new(),
                unreachable,
            },
        };
        assert!(out_of_reach(&retry(None, true)));
        for gateway in [502, 503, 504] {
            assert!(out_of_reach(&retry(Some(gateway), false)), "{gateway}");
            assert!(!answered(&retry(Some(gateway), false)), "{gateway}");
        }
        // The event, not the receiver: a crash on this payload, a rate limit, a refusal.
        for status in [500, 429, 408] {
            assert!(!out_of_reach(&retry(Some(status), false)), "{status}");
            assert!(answered(&retry(Some(status), false)), "{status}");
        }
        // Nothing sent (a busy local rate bucket): no news either way.
        assert!(!out_of_reach(&retry(None, false)));
        // A sink that did not end its own attempt: no answer came either.
        assert!(out_of_reach(&no_outcome_within(
            Duration::from_secs(12),
            SINK
        )));
        assert!(!answered(&retry(None, false)));
        assert!(answered(&Outcome::Failed(error(Some(400), "bad"))));
        assert!(!answered(&Outcome::Skipped {
            reason: String::new()
        }));
    }

    #[tokio::test]
    async fn the_rate_limit_spaces_deliveries() {
        let (_dir, store) = open_store();
        let mut receiver = Receiver::start(Vec::new()).await;
        let rate = Rate {
            count: 5,
            per: Duration::from_secs(1),
            burst: 1,
        };
        let config = sink_config(
            receiver.url(),
            policy(5, 10, 20),
            Some(rate),
            Duration::from_secs(5),
        );
        // Queue everything first, so the limiter, not ingestion, sets the pace.
        for n in 0..6 {
            ingest(&store, n).await;
        }
        let dispatcher = Dispatcher::start(store.clone(), &[config]).unwrap();
        let mut at = Vec::new();
        for _ in 0..6 {
            at.push(receiver.next().await.at);
        }
        // Cells are 200 ms apart, so the sixth request leaves at least a second after the
        // first. The slack covers a first request slowed by its connection set-up on a busy
        // machine; without the limiter all six arrive within a few milliseconds.
        let spread = at[5] - at[0];
        assert!(
            spread >= Duration::from_millis(900),
            "6 deliveries at 5/s took only {spread:?}"
        );
        dispatcher.shutdown(WAIT).await;
        store.close().await;
    }

    #[tokio::test]
    async fn shutdown_cuts_an_attempt_short_and_leaves_it_queued() {
        let (_dir, store) = open_store();
        // A receiver that accepts and never answers.
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/hook", listener.local_addr().unwrap());
        let (accepted_tx, mut accepted) = tokio::sync::mpsc::unbounded_channel();
        let hold = tokio::spawn(async move {
            let mut held = Vec::new();
            while let Ok((stream, _)) = listener.accept().await {
                held.push(stream);
                let _ = accepted_tx.send(());
            }
        });
        let config = sink_config(url, policy(5, 10, 20), None, Duration::from_secs(600));
        let dispatcher = Dispatcher::start(store.clone(), &[config]).unwrap();
        let id = ingest(&store, 1).await;
        tokio::time::timeout(WAIT, accepted.recv())
            .await
            .expect("the attempt started");

        tokio::time::timeout(WAIT, dispatcher.shutdown(Duration::from_millis(100)))
            .await
            .expect("shutdown ends after its grace period, not after the sink's timeout");
        hold.abort();

        assert!(store.attempts(id).unwrap().is_empty());
        let due = store.due(SINK, u64::MAX, 10, &HashSet::new()).unwrap();
        assert_eq!(
            due.entries.len(),
            1,
            "the cut-short delivery is still queued"
        );
        assert_eq!(due.entries[0].entry.attempt, 1);
        store.close().await;
    }

    #[tokio::test]
    async fn a_disabled_sink_gets_no_worker() {
        let (_dir, store) = open_store();
        let mut config = sink_config(
            "http://127.0.0.1:1/".to_string(),
            policy(5, 10, 20),
            None,
            Duration::from_secs(5),
        );
        config.enabled = false;
        let dispatcher = Dispatcher::start(store.clone(), &[config]).unwrap();
        assert_eq!(dispatcher.running(), 0);
        dispatcher.shutdown(Duration::ZERO).await;
        store.close().await;
    }

    fn error(status: Option<u16>, message: &str) -> SinkError {
        SinkError::new(status, message.to_string())
    }

    #[test]
    fn delivered_is_done() {
        let d = decide(
            &Outcome::Delivered {
                status: Some(200),
                message_id: None,
            },
            1,
            &policy(3, 10, 20),
            1_000,
            &mut StdRng::seed_from_u64(1),
        );
        assert_eq!(d.next, NextStep::Done);
        assert_eq!(d.outcome, AttemptOutcome::Delivered);
        assert_eq!((d.status, d.error), (Some(200), None));
    }

    #[test]
    fn skipped_is_done_and_keeps_its_reason() {
        let d = decide(
            &Outcome::Skipped {
                reason: "no SBOM at /sbom".to_string(),
            },
            1,
            &policy(3, 10, 20),
            1_000,
            &mut StdRng::seed_from_u64(1),
        );
        assert_eq!(d.next, NextStep::Done);
        assert_eq!(d.outcome, AttemptOutcome::Skipped);
        assert_eq!(d.status, None);
        assert_eq!(d.error.as_deref(), Some("no SBOM at /sbom"));
    }

    #[test]
    fn a_retry_is_scheduled_within_the_backoff_and_not_before_retry_after() {
        let p = policy(3, 100, 1_000);
        let mut rng = StdRng::seed_from_u64(1);
        for attempt in 1..3 {
            let plain = decide(
                &Outcome::Retry {
                    after: None,
                    error: error(Some(503), "down"),
                },
                attempt,
                &p,
                1_000,
                &mut rng,
            );
            let NextStep::RetryAt(at) = plain.next else {
                panic!("expected a retry, got {:?}", plain.next);
            };
            let cap_ms = backoff::cap(&p, attempt).as_millis() as u64;
            assert!((1_010..=1_000 + cap_ms.max(10)).contains(&at), "{at}");
            assert_eq!(plain.outcome, AttemptOutcome::Retrying);

            let asked = decide(
                &Outcome::Retry {
                    after: Some(Duration::from_secs(30)),
                    error: error(Some(429), "slow down"),
                },
                attempt,
                &p,
                1_000,
                &mut rng,
            );
            assert_eq!(asked.next, NextStep::RetryAt(31_000));
        }
    }

    #[test]
    fn the_last_allowed_attempt_dead_letters_instead_of_retrying() {
        let d = decide(
            &Outcome::Retry {
                after: None,
                error: error(None, "could not connect"),
            },
            3,
            &policy(3, 10, 20),
            1_000,
            &mut StdRng::seed_from_u64(1),
        );
        assert_eq!(
            d.next,
            NextStep::DeadLetter(
                "gave up after 3 attempts (retry max_attempts = 3); last error: could not connect"
                    .to_string()
            )
        );
        assert_eq!(d.outcome, AttemptOutcome::DeadLettered);
        assert_eq!(d.error.as_deref(), Some("could not connect"));
    }

    #[test]
    fn a_failure_dead_letters_at_once() {
        let d = decide(
            &Outcome::Failed(error(Some(410), "gone")),
            1,
            &policy(10, 10, 20),
            1_000,
            &mut StdRng::seed_from_u64(1),
        );
        assert_eq!(d.next, NextStep::DeadLetter("gone".to_string()));
        assert_eq!(d.status, Some(410));
    }
}
