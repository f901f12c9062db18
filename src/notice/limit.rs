//! The rate limit on notices: per subject (a sink, the store, the config), at most one
//! "unhealthy" notice per `min_interval`, each followed by at most one "recovered"; so a
//! flapping sink costs a channel at most one pair per window.
//!
//! A transition inside the window is held back and counted. When the window ends, the
//! subject's state then is compared with what operators were last told: a subject still in
//! trouble gets its (late) unhealthy notice then, one that flapped back to healthy gets
//! nothing. Either way the held-back count is carried into the next notice sent, so a
//! flapping sink is summarised, never hidden, and a sink that went down during the window
//! is never reported healthy for longer than the window.
//!
//! Invariant: pure; time is passed in. Memory is one small entry per subject ever seen,
//! bounded by the configured names.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::Trouble;

/// What a notice is about.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(super) enum Subject {
    /// A sink, by name.
    Sink(Arc<str>),
    /// The store.
    Store,
    /// The configuration file (its reloads).
    Config,
}

/// What to do with a transition.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Verdict {
    /// Send it now, telling how many notices were held back since the last one sent.
    Send { suppressed: u32 },
    /// Hold it back (already counted). `settle_at`: when to call [`Limiter::settle`], set
    /// for the first hold of a window only.
    Hold { settle_at: Option<Instant> },
}

#[derive(Debug, Default)]
struct State {
    /// The subject's trouble as last reported by its trigger; `None` while healthy.
    current: Option<Trouble>,
    /// Whether the last notice sent about it said "unhealthy".
    told_unhealthy: bool,
    /// When the last unhealthy (or reload-failed) notice was sent.
    last_sent: Option<Instant>,
    /// Notices held back since the last one sent.
    suppressed: u32,
    /// Whether a settle is due.
    settle_armed: bool,
}

/// The per-subject limiter.
#[derive(Debug)]
pub(super) struct Limiter {
    min_interval: Duration,
    subjects: HashMap<Subject, State>,
}

impl Limiter {
    /// A limiter allowing one unhealthy notice per subject per `min_interval` (zero: no
    /// limit).
    pub(super) fn new(min_interval: Duration) -> Limiter {
        Limiter {
            min_interval,
            subjects: HashMap::new(),
        }
    }

    /// The subject got into trouble at `now`.
    pub(super) fn unhealthy(
        &mut self,
        subject: &Subject,
        trouble: Trouble,
        now: Instant,
    ) -> Verdict {
        let min_interval = self.min_interval;
        let state = self.subjects.entry(subject.clone()).or_default();
        state.current = Some(trouble);
        if state.told_unhealthy {
            // Its trigger said so twice; operators already know.
            return Verdict::Hold { settle_at: None };
        }
        match state
            .last_sent
            .map(|at| at + min_interval)
            .filter(|&end| now < end)
        {
            None => {
                state.told_unhealthy = true;
                state.last_sent = Some(now);
                Verdict::Send {
                    suppressed: std::mem::take(&mut state.suppressed),
                }
            }
            Some(window_end) => state.hold(window_end),
        }
    }

    /// The subject is healthy again; `Send` only if operators were told it was not.
    pub(super) fn recovered(&mut self, subject: &Subject) -> Verdict {
        let state = self.subjects.entry(subject.clone()).or_default();
        state.current = None;
        if state.told_unhealthy {
            state.told_unhealthy = false;
            Verdict::Send {
                suppressed: std::mem::take(&mut state.suppressed),
            }
        } else {
            // Its unhealthy notice was held back: so is this one.
            state.suppressed = state.suppressed.saturating_add(1);
            Verdict::Hold { settle_at: None }
        }
    }

    /// A one-off notice (a failed reload): at most one per `min_interval`.
    pub(super) fn once(&mut self, subject: &Subject, now: Instant) -> Verdict {
        let min_interval = self.min_interval;
        let state = self.subjects.entry(subject.clone()).or_default();
        match state
            .last_sent
            .map(|at| at + min_interval)
            .filter(|&end| now < end)
        {
            None => {
                state.last_sent = Some(now);
                Verdict::Send {
                    suppressed: std::mem::take(&mut state.suppressed),
                }
            }
            Some(_) => {
                state.suppressed = state.suppressed.saturating_add(1);
                Verdict::Hold { settle_at: None }
            }
        }
    }

    /// The window of a held transition ended at `now`: the trouble to report now, with the
    /// count held back, if the subject is in trouble and operators were told otherwise.
    pub(super) fn settle(&mut self, subject: &Subject, now: Instant) -> Option<(Trouble, u32)> {
        let state = self.subjects.get_mut(subject)?;
        state.settle_armed = false;
        if state.told_unhealthy {
            return None;
        }
        let trouble = state.current.clone()?;
        state.told_unhealthy = true;
        state.last_sent = Some(now);
        // The late notice is the held one itself: it does not count as suppressed.
        let suppressed = std::mem::take(&mut state.suppressed).saturating_sub(1);
        Some((trouble, suppressed))
    }
}

impl State {
    fn hold(&mut self, window_end: Instant) -> Verdict {
        self.suppressed = self.suppressed.saturating_add(1);
        let first = !std::mem::replace(&mut self.settle_armed, true);
        Verdict::Hold {
            settle_at: first.then_some(window_end),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const WINDOW: Duration = Duration::from_secs(600);

    fn trouble(failures: u32) -> Trouble {
        Trouble {
            since_ms: 1_000,
            failures,
            last_error: Some("receiver answered 503".into()),
            reason: format!("{failures} failed attempts in a row"),
        }
    }

    fn sink() -> Subject {
        Subject::Sink(Arc::from("audit"))
    }

    #[test]
    fn one_pair_per_window_and_the_flaps_are_summarised_in_the_next() {
        let mut limiter = Limiter::new(WINDOW);
        let t0 = Instant::now();
        assert_eq!(
            limiter.unhealthy(&sink(), trouble(5), t0),
            Verdict::Send { suppressed: 0 }
        );
        assert_eq!(limiter.recovered(&sink()), Verdict::Send { suppressed: 0 });
        // Flapping inside the window: all held, one settle scheduled at the window's end.
        let t1 = t0 + Duration::from_secs(60);
        assert_eq!(
            limiter.unhealthy(&sink(), trouble(5), t1),
            Verdict::Hold {
                settle_at: Some(t0 + WINDOW)
            }
        );
        assert_eq!(
            limiter.recovered(&sink()),
            Verdict::Hold { settle_at: None }
        );
        assert_eq!(
            limiter.unhealthy(&sink(), trouble(5), t1),
            Verdict::Hold { settle_at: None }
        );
        assert_eq!(
            limiter.recovered(&sink()),
            Verdict::Hold { settle_at: None }
        );
        // It ended healthy, as operators were told: nothing to say at the window's end.
        assert_eq!(limiter.settle(&sink(), t0 + WINDOW), None);
        // The next unhealthy after the window goes out and carries the count.
        let t2 = t0 + WINDOW + Duration::from_secs(1);
        assert_eq!(
            limiter.unhealthy(&sink(), trouble(5), t2),
            Verdict::Send { suppressed: 4 }
        );
    }

    #[test]
    fn a_sink_still_down_at_the_end_of_the_window_is_reported_then() {
        let mut limiter = Limiter::new(WINDOW);
        let t0 = Instant::now();
        limiter.unhealthy(&sink(), trouble(5), t0);
        limiter.recovered(&sink());
        let t1 = t0 + Duration::from_secs(30);
        assert_eq!(
            limiter.unhealthy(&sink(), trouble(6), t1),
            Verdict::Hold {
                settle_at: Some(t0 + WINDOW)
            }
        );
        assert_eq!(
            limiter.recovered(&sink()),
            Verdict::Hold { settle_at: None }
        );
        assert_eq!(
            limiter.unhealthy(&sink(), trouble(7), t1),
            Verdict::Hold { settle_at: None }
        );
        let (late, suppressed) = limiter.settle(&sink(), t0 + WINDOW).unwrap();
        assert_eq!(late.failures, 7, "the latest trouble is reported");
        assert_eq!(suppressed, 2, "the flap before it was held back");
        // Its recovery then goes out at once, like any other.
        assert_eq!(limiter.recovered(&sink()), Verdict::Send { suppressed: 0 });
    }

    #[test]
    fn subjects_are_limited_apart() {
        let mut limiter = Limiter::new(WINDOW);
        let now = Instant::now();
        let other = Subject::Sink(Arc::from("chat"));
        assert!(matches!(
            limiter.unhealthy(&sink(), trouble(5), now),
            Verdict::Send { .. }
        ));
        assert!(matches!(
            limiter.unhealthy(&other, trouble(5), now),
            Verdict::Send { .. }
        ));
        assert!(matches!(
            limiter.unhealthy(&Subject::Store, trouble(1), now),
            Verdict::Send { .. }
        ));
    }

    #[test]
    fn a_recovery_without_a_told_trouble_is_not_sent() {
        let mut limiter = Limiter::new(WINDOW);
        assert_eq!(
            limiter.recovered(&sink()),
            Verdict::Hold { settle_at: None }
        );
    }

    #[test]
    fn one_off_notices_once_per_window() {
        let mut limiter = Limiter::new(WINDOW);
        let t0 = Instant::now();
        assert_eq!(
            limiter.once(&Subject::Config, t0),
            Verdict::Send { suppressed: 0 }
        );
        assert_eq!(
            limiter.once(&Subject::Config, t0 + Duration::from_secs(1)),
            Verdict::Hold { settle_at: None }
        );
        assert_eq!(
            limiter.once(&Subject::Config, t0 + WINDOW),
            Verdict::Send { suppressed: 1 }
        );
    }

    #[test]
    fn a_zero_interval_limits_nothing() {
        let mut limiter = Limiter::new(Duration::ZERO);
        let now = Instant::now();
        for _ in 0..3 {
            assert!(matches!(
                limiter.unhealthy(&sink(), trouble(5), now),
                Verdict::Send { .. }
            ));
            assert!(matches!(limiter.recovered(&sink()), Verdict::Send { .. }));
        }
    }
}
