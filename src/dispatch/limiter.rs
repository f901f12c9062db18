//! A sink's rate limiter: `count` deliveries per `per`, in bursts of at most `burst`
//! (`[sinks.NAME] rate`). A thin wrapper over governor's GCRA limiter.
//!
//! Invariant: every delivery attempt of a sink takes one cell first, so the receiver never
//! sees more than its configured rate, retries included. Waiting uses tokio's timer (not
//! governor's own), so a wait is cancelled cleanly when shutdown drops it.

use std::num::NonZeroU32;
use std::time::Duration;

use governor::clock::{Clock, DefaultClock};
use governor::middleware::NoOpMiddleware;
use governor::state::{InMemoryState, NotKeyed};
use governor::{Quota, RateLimiter};

use crate::config::Rate;

/// One sink's rate limiter; `C` is the clock (a fake one in tests).
#[derive(Debug)]
pub struct Limiter<C: Clock = DefaultClock> {
    inner: RateLimiter<NotKeyed, InMemoryState, C, NoOpMiddleware<C::Instant>>,
}

/// The governor quota for a configured rate: one cell every `per / count`, bursts of `burst`.
pub fn quota(rate: &Rate) -> Quota {
    let count = rate.count.max(1);
    // A rate faster than one per nanosecond is no limit worth keeping apart: round it up.
    let period = (rate.per / count).max(Duration::from_nanos(1));
    let burst = NonZeroU32::new(rate.burst).unwrap_or(NonZeroU32::MIN);
    Quota::with_period(period)
        .expect("the period is at least one nanosecond")
        .allow_burst(burst)
}

impl Limiter {
    /// A limiter on the real clock.
    pub fn new(rate: &Rate) -> Limiter {
        Limiter {
            inner: RateLimiter::direct(quota(rate)),
        }
    }

    /// Waits until the rate allows one more delivery, and takes that cell.
    pub async fn until_ready(&self) {
        while let Err(wait) = self.check() {
            tokio::time::sleep(wait).await;
        }
    }
}

impl<C: Clock> Limiter<C> {
    /// A limiter on the given clock.
    pub fn with_clock(rate: &Rate, clock: C) -> Limiter<C> {
        Limiter {
            inner: RateLimiter::direct_with_clock(quota(rate), clock),
        }
    }

    /// Takes one cell if the rate allows it now; otherwise says how long until it may.
    pub fn check(&self) -> Result<(), Duration> {
        self.inner
            .check()
            .map_err(|not_until| not_until.wait_time_from(self.inner.clock().now()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use governor::clock::FakeRelativeClock;

    fn rate(count: u32, per_secs: u64, burst: u32) -> Rate {
        Rate {
            count,
            per: Duration::from_secs(per_secs),
            burst,
        }
    }

    #[test]
    fn two_per_second_with_burst_one_spaces_cells_half_a_second_apart() {
        let clock = FakeRelativeClock::default();
        let limiter = Limiter::with_clock(&rate(2, 1, 1), clock.clone());
        assert_eq!(limiter.check(), Ok(()));
        assert_eq!(limiter.check(), Err(Duration::from_millis(500)));
        clock.advance(Duration::from_millis(499));
        assert_eq!(limiter.check(), Err(Duration::from_millis(1)));
        clock.advance(Duration::from_millis(1));
        assert_eq!(limiter.check(), Ok(()));
        assert!(limiter.check().is_err());
    }

    #[test]
    fn five_per_minute_allows_a_burst_then_one_every_twelve_seconds() {
        let clock = FakeRelativeClock::default();
        let limiter = Limiter::with_clock(&rate(5, 60, 3), clock.clone());
        for i in 0..3 {
            assert_eq!(limiter.check(), Ok(()), "cell {i} of the burst");
        }
        assert_eq!(limiter.check(), Err(Duration::from_secs(12)));
        clock.advance(Duration::from_secs(12));
        assert_eq!(limiter.check(), Ok(()));
        assert_eq!(limiter.check(), Err(Duration::from_secs(12)));
    }

    #[test]
    fn over_a_long_run_the_rate_is_never_exceeded() {
        // 5/s, burst 1: stepping the clock 10 ms at a time for 10 s lets through at most
        // 50 cells plus the first.
        let clock = FakeRelativeClock::default();
        let limiter = Limiter::with_clock(&rate(5, 1, 1), clock.clone());
        let mut passed = 0;
        for _ in 0..1_000 {
            if limiter.check().is_ok() {
                passed += 1;
            }
            clock.advance(Duration::from_millis(10));
        }
        assert_eq!(passed, 50);
    }

    #[test]
    fn an_absurdly_fast_rate_does_not_panic() {
        let q = quota(&rate(u32::MAX, 1, u32::MAX));
        assert_eq!(q.replenish_interval(), Duration::from_nanos(1));
        assert_eq!(q.burst_size().get(), u32::MAX);
    }

    #[test]
    fn an_hourly_rate_keeps_its_period() {
        let q = quota(&rate(2, 3600, 1));
        assert_eq!(q.replenish_interval(), Duration::from_secs(1800));
    }

    #[tokio::test]
    async fn until_ready_takes_a_free_cell_at_once_and_waits_for_a_spent_one() {
        let limiter = Limiter::new(&rate(1, 3600, 1));
        tokio::time::timeout(Duration::from_secs(10), limiter.until_ready())
            .await
            .expect("the first cell is free");
        // The next cell is an hour away, so this wait cannot end within the timeout.
        let waited = tokio::time::timeout(Duration::from_millis(50), limiter.until_ready()).await;
        assert!(waited.is_err(), "a second cell came within the hour");
    }
}
