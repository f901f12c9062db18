//! Bounds the log lines of refused requests: anyone who can reach the listener can send
//! refusals as fast as the relay answers them (tens of thousands a second), and one line each
//! would fill the disk or make the journal drop lines that matter. Past a budget per second
//! the lines are held back and counted; the next line logged says how many were. The
//! `hookrelay_events_received_total` counters still count every request.

use std::sync::OnceLock;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering::Relaxed};
use std::time::Instant;

/// Refusal lines written per second at most; a misconfigured sender stays visible, a flood
/// costs a few KiB a second.
const PER_SECOND: u32 = 50;

static START: OnceLock<Instant> = OnceLock::new();
/// The second (since [`START`]) the budget is counted in.
static SECOND: AtomicU64 = AtomicU64::new(0);
/// Lines written in that second.
static WRITTEN: AtomicU32 = AtomicU32::new(0);
/// Lines held back since the last report of them.
static HELD: AtomicU64 = AtomicU64::new(0);

/// Whether a refusal's line may be written now. A new second's first caller reports the
/// lines held back before it.
pub(super) fn admit() -> bool {
    let now = START.get_or_init(Instant::now).elapsed().as_secs();
    let second = SECOND.load(Relaxed);
    if now != second
        && SECOND
            .compare_exchange(second, now, Relaxed, Relaxed)
            .is_ok()
    {
        WRITTEN.store(0, Relaxed);
        let held = HELD.swap(0, Relaxed);
        if held > 0 {
            tracing::warn!(
                held,
                per_second = PER_SECOND,
                "held back the log lines of {held} refused requests (more than {PER_SECOND} a \
                 second); hookrelay_events_received_total counts every one"
            );
        }
    }
    if WRITTEN.fetch_add(1, Relaxed) < PER_SECOND {
        true
    } else {
        HELD.fetch_add(1, Relaxed);
        false
    }
}

/// Logs a refused request at `level` (`info` or `warn`) unless this second's budget of
/// refusal lines is spent; takes what `tracing::info!` takes.
macro_rules! refused {
    ($level:ident, $($line:tt)+) => {
        if $crate::ingress::refusals::admit() {
            tracing::$level!($($line)+);
        }
    };
}
pub(crate) use refused;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn past_the_budget_lines_are_held_back_and_counted() {
        // One process-wide budget: take what is left of this second, then some more.
        let mut admitted = 0;
        let mut refused = 0;
        let second = START.get_or_init(Instant::now).elapsed().as_secs();
        for _ in 0..(PER_SECOND as usize * 3) {
            if admit() {
                admitted += 1;
            } else {
                refused += 1;
            }
        }
        // Unless the second turned over during the loop, at most a budget was written.
        if START.get().unwrap().elapsed().as_secs() == second {
            assert!(admitted <= PER_SECOND as usize, "{admitted}");
            assert!(refused >= 2 * PER_SECOND as usize, "{refused}");
            assert!(HELD.load(Relaxed) >= refused as u64);
        }
    }
}
