//! Sink health: what dispatch has seen of each sink's recent attempts, for the admin API.
//!
//! In memory only: after a restart every sink starts healthy until an attempt says
//! otherwise (its dead letters and attempt history stay in the store).
//!
//! Once given [`Notices`] ([`Health::notify`]), it raises `sink.unhealthy` when a sink's
//! consecutive failures reach `[notices] failures` or an entry is dead-lettered, and
//! `sink.recovered` at the first success after that.
//!
//! Invariant: holds only what a sink's `SinkError` message says (never a URL, a secret or a
//! body). Each sink's state is behind its own std `Mutex`, held for a field update once per
//! attempt and never across an await; notices are raised after it is released. A healthy
//! attempt raises nothing and writes nothing to the store. The map of sinks is behind a
//! `RwLock` written only when a reload adds a sink.

use std::collections::HashMap;
use std::sync::{Mutex, OnceLock, RwLock};

use crate::config::SinkConfig;
use crate::notice::{Notices, Trouble};

/// One sink's recent delivery health.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SinkHealth {
    /// Failed attempts since the last success.
    pub consecutive_failures: u32,
    /// Unix milliseconds of the first failure of the current run of failures.
    pub failing_since_ms: Option<u64>,
    /// The most recent failure's message.
    pub last_error: Option<String>,
    /// Unix milliseconds of the most recent failure.
    pub last_error_ms: Option<u64>,
    /// Unix milliseconds of the most recent success.
    pub last_delivered_ms: Option<u64>,
    /// Unix milliseconds before which no delivery starts: the receiver asked to wait
    /// (`Retry-After`) or is out of reach. May be past; only a later one holds anything.
    pub held_until_ms: Option<u64>,
}

/// One sink's health and whether `sink.unhealthy` was raised for its current failures.
#[derive(Debug, Default)]
struct State {
    health: SinkHealth,
    raised: bool,
}

/// Every configured sink's health.
#[derive(Debug, Default)]
pub struct Health {
    by_sink: RwLock<HashMap<String, Mutex<State>>>,
    /// Where transitions are raised; unset, nothing is.
    notices: OnceLock<Notices>,
}

/// What an attempt changed that operators should hear of.
enum Change {
    Unhealthy(Trouble),
    Recovered(Trouble),
}

impl Health {
    /// A healthy board for the configured sinks.
    pub fn new(sinks: &[SinkConfig]) -> Health {
        let health = Health::default();
        health.track(sinks);
        health
    }

    /// Adds a healthy entry for each sink not yet known (a reload's new sinks). Known sinks
    /// keep their health, also across a removal and return.
    pub fn track(&self, sinks: &[SinkConfig]) {
        let mut by_sink = self.by_sink.write().unwrap_or_else(|e| e.into_inner());
        for sink in sinks {
            by_sink.entry(sink.name.clone()).or_default();
        }
    }

    /// Raises sinks' health transitions through `notices` from now on (once; a second call
    /// is ignored).
    pub fn notify(&self, notices: Notices) {
        let _ = self.notices.set(notices);
    }

    /// Notes a successful attempt at `now_ms`.
    pub fn delivered(&self, sink: &str, now_ms: u64) {
        let change = self.update(sink, |state| {
            let h = &mut state.health;
            // What the failures were, for the recovery notice, before they are forgotten.
            let ended = std::mem::take(&mut state.raised).then(|| Trouble {
                since_ms: h.failing_since_ms.unwrap_or(now_ms),
                failures: h.consecutive_failures,
                last_error: h.last_error.clone(),
                reason: String::new(),
            });
            h.consecutive_failures = 0;
            h.failing_since_ms = None;
            h.last_delivered_ms = Some(now_ms);
            ended.map(Change::Recovered)
        });
        self.raise(sink, change, now_ms);
    }

    /// Notes that no delivery to `sink` starts before `until_ms`, or, with `None`, that
    /// nothing holds it.
    pub fn held(&self, sink: &str, until_ms: Option<u64>) {
        self.update(sink, |state| {
            state.health.held_until_ms = until_ms;
            None
        });
    }

    /// Notes a failed attempt that will be retried at `now_ms`.
    pub fn failed(&self, sink: &str, error: &str, now_ms: u64) {
        self.failure(sink, error, now_ms, false);
    }

    /// Notes a failed attempt whose entry was dead-lettered at `now_ms`: the sink counts as
    /// unhealthy at once, whatever `[notices] failures` says, since an event was lost to it.
    pub fn dead_lettered(&self, sink: &str, error: &str, now_ms: u64) {
        self.failure(sink, error, now_ms, true);
    }

    fn failure(&self, sink: &str, error: &str, now_ms: u64, dead: bool) {
        let threshold = self.notices.get().map(Notices::failures);
        let change = self.update(sink, |state| {
            let h = &mut state.health;
            h.consecutive_failures = h.consecutive_failures.saturating_add(1);
            h.failing_since_ms.get_or_insert(now_ms);
            h.last_error = Some(error.to_string());
            h.last_error_ms = Some(now_ms);
            let threshold = threshold?;
            if state.raised || !(dead || h.consecutive_failures >= threshold) {
                return None;
            }
            state.raised = true;
            let n = h.consecutive_failures;
            let s = if n == 1 { "" } else { "s" };
            Some(Change::Unhealthy(Trouble {
                since_ms: h.failing_since_ms.unwrap_or(now_ms),
                failures: n,
                last_error: h.last_error.clone(),
                reason: if dead {
                    // Not "dead-lettered": that word marks the delivery's own log line.
                    format!("a delivery became a dead letter after {n} failed attempt{s} in a row")
                } else {
                    format!("{n} failed attempt{s} in a row")
                },
            }))
        });
        self.raise(sink, change, now_ms);
    }

    /// A sink's health; `None` for a name not in the config.
    pub fn get(&self, sink: &str) -> Option<SinkHealth> {
        let by_sink = self.by_sink.read().unwrap_or_else(|e| e.into_inner());
        let state = by_sink.get(sink)?;
        Some(
            state
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .health
                .clone(),
        )
    }

    fn update(
        &self,
        sink: &str,
        change: impl FnOnce(&mut State) -> Option<Change>,
    ) -> Option<Change> {
        let by_sink = self.by_sink.read().unwrap_or_else(|e| e.into_inner());
        let state = by_sink.get(sink)?;
        change(&mut state.lock().unwrap_or_else(|e| e.into_inner()))
    }

    /// Raises a change, with the sink's lock already released.
    fn raise(&self, sink: &str, change: Option<Change>, now_ms: u64) {
        let (Some(change), Some(notices)) = (change, self.notices.get()) else {
            return;
        };
        match change {
            Change::Unhealthy(trouble) => notices.sink_unhealthy(sink, trouble),
            Change::Recovered(trouble) => notices.sink_recovered(sink, trouble, now_ms),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failures_run_until_a_success() {
        let config = crate::config::Config::parse(
            "[sinks.a]\nkind = \"webhook\"\nurl = \"https://h/\"\n",
            "t",
        )
        .unwrap();
        let health = Health::new(&config.sinks);
        assert_eq!(health.get("a"), Some(SinkHealth::default()));
        health.failed("a", "receiver answered 503", 10);
        health.failed("a", "receiver answered 502", 20);
        let failing = health.get("a").unwrap();
        assert_eq!(failing.consecutive_failures, 2);
        assert_eq!(
            failing.failing_since_ms,
            Some(10),
            "the run's first failure"
        );
        assert_eq!(failing.last_error.as_deref(), Some("receiver answered 502"));
        health.delivered("a", 30);
        let healthy = health.get("a").unwrap();
        assert_eq!(healthy.consecutive_failures, 0);
        assert_eq!(healthy.failing_since_ms, None);
        assert_eq!(healthy.last_delivered_ms, Some(30));
        assert_eq!(
            healthy.last_error_ms,
            Some(20),
            "the last error stays visible"
        );
        health.failed("nope", "x", 1);
        assert_eq!(health.get("nope"), None);
    }

    #[test]
    fn tracking_a_reload_adds_new_sinks_and_keeps_known_ones() {
        let first = crate::config::Config::parse(
            "[sinks.a]\nkind = \"webhook\"\nurl = \"https://h/\"\n",
            "t",
        )
        .unwrap();
        let second = crate::config::Config::parse(
            "[sinks.a]\nkind = \"webhook\"\nurl = \"https://h/\"\n[sinks.b]\nkind = \"webhook\"\nurl = \"https://h/\"\n",
            "t",
        )
        .unwrap();
        let health = Health::new(&first.sinks);
        health.failed("a", "receiver answered 503", 10);
        assert_eq!(health.get("b"), None);
        health.track(&second.sinks);
        assert_eq!(health.get("b"), Some(SinkHealth::default()));
        assert_eq!(health.get("a").unwrap().consecutive_failures, 1);
    }
}
