//! Whether the store's commits succeed, as the writer saw them, for whoever watches (the
//! own-health notices).
//!
//! Invariant: the writer publishes only changes (the first failure, each further failure
//! while failing, the first success after); a healthy commit costs one branch on a local
//! flag and no lock. Messages are the writer's own descriptions: a path and an OS error,
//! never an event's content.

use tokio::sync::watch;

/// The store's recent commit health.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StoreHealth {
    /// Failed commits (or reopen attempts) since the last successful commit.
    pub consecutive_failures: u32,
    /// Unix milliseconds of the first failure of the current run; `None` while healthy.
    pub failing_since_ms: Option<u64>,
    /// The most recent failure's message (e.g. "disk full (ENOSPC): …").
    pub last_error: Option<String>,
}

/// The writer's side: publishes changes to [`StoreHealth`].
pub(super) struct HealthReport {
    tx: watch::Sender<StoreHealth>,
    failing: bool,
}

impl HealthReport {
    /// A reporter and the receiver the store hands out clones of.
    pub(super) fn new() -> (HealthReport, watch::Receiver<StoreHealth>) {
        let (tx, rx) = watch::channel(StoreHealth::default());
        (HealthReport { tx, failing: false }, rx)
    }

    /// A batch committed: healthy again if it was failing and the batch `proves_writable`
    /// (it needed new space: it stored events, or the probe).
    pub(super) fn committed(&mut self, proves_writable: bool) {
        if self.failing && proves_writable {
            self.failing = false;
            self.tx.send_replace(StoreHealth::default());
        }
    }

    /// A batch could not be committed (or the store could not be reopened) at `now_ms`.
    pub(super) fn failed(&mut self, message: &str, now_ms: u64) {
        self.failing = true;
        self.tx.send_modify(|h| {
            h.consecutive_failures = h.consecutive_failures.saturating_add(1);
            h.failing_since_ms.get_or_insert(now_ms);
            h.last_error = Some(message.to_string());
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failures_run_until_a_commit_succeeds_and_only_changes_are_published() {
        let (mut report, mut rx) = HealthReport::new();
        report.committed(true);
        assert!(
            !rx.has_changed().unwrap(),
            "a healthy commit publishes nothing"
        );
        report.failed("disk full", 10);
        report.failed("disk full again", 20);
        assert!(rx.has_changed().unwrap());
        let failing = rx.borrow_and_update().clone();
        assert_eq!(failing.consecutive_failures, 2);
        assert_eq!(failing.failing_since_ms, Some(10));
        assert_eq!(failing.last_error.as_deref(), Some("disk full again"));
        // A small batch that fits where events do not proves nothing.
        report.committed(false);
        assert!(!rx.has_changed().unwrap());
        report.committed(true);
        assert_eq!(*rx.borrow_and_update(), StoreHealth::default());
        report.committed(true);
        assert!(!rx.has_changed().unwrap());
    }
}
