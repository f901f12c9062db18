//! Backoff: how long to wait before the next attempt after a failed one.
//!
//! Exponential with full jitter: after attempt `n` fails, the next one waits a uniformly
//! random time in `[0, min(max, initial × 2^(n−1))]`. Full jitter spreads the retries of
//! many events that failed together (a receiver that was down), so they do not return as
//! one herd.
//!
//! Invariants: the delay is never below [`FLOOR`] (a retry is never instant), never below
//! the `Retry-After` the receiver asked for, and never above [`CEILING`]; the arithmetic
//! saturates, so no attempt number or policy overflows. Pure: the caller passes the random
//! source, so tests are deterministic.

use std::time::Duration;

use rand::{Rng, RngExt};

use crate::config::RetryPolicy;

/// The shortest delay between two attempts, whatever the policy and the dice say.
pub const FLOOR: Duration = Duration::from_millis(10);

/// The longest delay between two attempts, even when a receiver asks for more: an entry
/// scheduled further out would look lost to an operator.
pub const CEILING: Duration = Duration::from_secs(24 * 60 * 60);

/// The upper bound of the jittered delay after attempt `attempt` (1-based) failed:
/// `min(policy.max, policy.initial × 2^(attempt−1))`, saturating, and at most [`CEILING`].
pub fn cap(policy: &RetryPolicy, attempt: u32) -> Duration {
    let limit = policy.max.min(CEILING).as_nanos();
    let initial = policy.initial.min(CEILING).as_nanos();
    // 2^(n−1), saturating: beyond 2^127 any non-zero initial delay is past the limit anyway.
    let factor = 1u128
        .checked_shl(attempt.saturating_sub(1))
        .unwrap_or(u128::MAX);
    let grown = initial.saturating_mul(factor).min(limit);
    // grown ≤ CEILING, about 2^46 ns: it fits in u64.
    Duration::from_nanos(grown as u64)
}

/// The delay before the next attempt after attempt `attempt` (1-based) failed; `after` is
/// the receiver's `Retry-After`, if it sent one.
pub fn delay<R: Rng + ?Sized>(
    policy: &RetryPolicy,
    attempt: u32,
    after: Option<Duration>,
    rng: &mut R,
) -> Duration {
    let cap_nanos = cap(policy, attempt).as_nanos() as u64;
    let jittered = Duration::from_nanos(rng.random_range(0..=cap_nanos));
    let mut delay = jittered.max(FLOOR);
    if let Some(after) = after {
        delay = delay.max(after);
    }
    delay.min(CEILING)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use rand::SeedableRng;
    use rand::rngs::StdRng;

    fn policy(initial_ms: u64, max_ms: u64) -> RetryPolicy {
        RetryPolicy {
            max_attempts: 10,
            initial: Duration::from_millis(initial_ms),
            max: Duration::from_millis(max_ms),
        }
    }

    #[test]
    fn the_cap_doubles_per_attempt_until_the_maximum() {
        let p = policy(100, 1_000);
        let caps: Vec<u64> = (1..=6).map(|n| cap(&p, n).as_millis() as u64).collect();
        assert_eq!(caps, [100, 200, 400, 800, 1_000, 1_000]);
    }

    #[test]
    fn the_cap_saturates_for_huge_attempt_numbers() {
        let p = policy(1_000, 3_600_000);
        assert_eq!(cap(&p, u32::MAX), Duration::from_secs(3_600));
        assert_eq!(cap(&p, 64), Duration::from_secs(3_600));
        assert_eq!(cap(&p, 200), Duration::from_secs(3_600));
    }

    #[test]
    fn attempt_zero_is_treated_as_the_first() {
        assert_eq!(cap(&policy(100, 1_000), 0), Duration::from_millis(100));
    }

    #[test]
    fn a_zero_initial_delay_still_waits_the_floor() {
        let mut rng = StdRng::seed_from_u64(7);
        assert_eq!(delay(&policy(0, 1_000), 5, None, &mut rng), FLOOR);
    }

    #[test]
    fn retry_after_wins_over_a_shorter_backoff() {
        let mut rng = StdRng::seed_from_u64(7);
        let d = delay(&policy(10, 20), 1, Some(Duration::from_secs(3)), &mut rng);
        assert_eq!(d, Duration::from_secs(3));
    }

    #[test]
    fn retry_after_is_clamped_to_a_day() {
        let mut rng = StdRng::seed_from_u64(7);
        let week = Duration::from_secs(7 * 24 * 3600);
        assert_eq!(delay(&policy(10, 20), 1, Some(week), &mut rng), CEILING);
    }

    #[test]
    fn the_delay_is_jittered_across_the_whole_range() {
        // Full jitter: over many draws both halves of [0, cap] are used.
        let p = policy(1_000, 1_000);
        let mut rng = StdRng::seed_from_u64(42);
        let draws: Vec<Duration> = (0..200).map(|_| delay(&p, 1, None, &mut rng)).collect();
        assert!(draws.iter().any(|d| *d < Duration::from_millis(250)));
        assert!(draws.iter().any(|d| *d > Duration::from_millis(750)));
    }

    proptest! {
        #[test]
        fn the_delay_stays_within_its_bounds(
            initial_ms in 0u64..10_000_000,
            max_ms in 0u64..200_000_000,
            attempt in any::<u32>(),
            after_ms in proptest::option::of(0u64..400_000_000),
            seed in any::<u64>(),
        ) {
            let p = policy(initial_ms, max_ms);
            let after = after_ms.map(Duration::from_millis);
            let mut rng = StdRng::seed_from_u64(seed);
            let d = delay(&p, attempt, after, &mut rng);
            let c = cap(&p, attempt);

            prop_assert!(d >= FLOOR);
            prop_assert!(d <= CEILING);
            prop_assert!(c <= p.max.min(CEILING));
            let doublings = attempt.saturating_sub(1);
            if doublings < 40 {
                let grown = u128::from(initial_ms) << doublings;
                let expected = grown.min(u128::from(max_ms)).min(CEILING.as_millis());
                prop_assert_eq!(c.as_millis(), expected);
            } else if initial_ms > 0 {
                prop_assert_eq!(c, p.max.min(CEILING));
            }
            if let Some(after) = after {
                prop_assert!(d >= after.min(CEILING));
            }
            let upper = c.max(FLOOR).max(after.unwrap_or(Duration::ZERO)).min(CEILING);
            prop_assert!(d <= upper, "delay {d:?} above {upper:?}");
        }

        #[test]
        fn the_cap_never_shrinks_as_attempts_grow(
            initial_ms in 0u64..10_000_000,
            max_ms in 0u64..200_000_000,
            attempt in 1u32..u32::MAX,
        ) {
            let p = policy(initial_ms, max_ms);
            prop_assert!(cap(&p, attempt) <= cap(&p, attempt + 1));
        }
    }
}
