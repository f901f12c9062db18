//! A budget of log lines per second, for lines that anyone outside can make the relay write
//! as fast as it works (refused requests): one line each would fill the disk, or make the
//! journal drop the lines that matter. Past the budget lines are held back and counted, and
//! the next line written reports how many were.

use std::sync::OnceLock;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering::Relaxed};
use std::time::Instant;

/// Lines of one kind that may be written per second.
#[derive(Debug)]
pub struct LineBudget {
    per_second: u32,
    start: OnceLock<Instant>,
    /// The second (since `start`) the budget is counted in.
    second: AtomicU64,
    /// Lines written in that second.
    written: AtomicU32,
    /// Lines held back since the last report of them.
    held: AtomicU64,
}

impl LineBudget {
    /// A budget of `per_second` lines.
    pub const fn new(per_second: u32) -> LineBudget {
        LineBudget {
            per_second,
            start: OnceLock::new(),
            second: AtomicU64::new(0),
            written: AtomicU32::new(0),
            held: AtomicU64::new(0),
        }
    }

    /// The lines it allows each second.
    pub fn per_second(&self) -> u32 {
        self.per_second
    }

    /// The lines held back since the last report of them, now reported: for a caller that
    /// says so once a flood is over, when no line may come to say it.
    pub fn take_held(&self) -> u64 {
        self.held.swap(0, Relaxed)
    }

    /// `None` when this line is to be held back; else `Some(n)`: write it, and report the `n`
    /// lines held back before it when `n > 0`.
    pub fn admit(&self) -> Option<u64> {
        let now = self.start.get_or_init(Instant::now).elapsed().as_secs();
        let second = self.second.load(Relaxed);
        let mut held_before = 0;
        if now != second
            && self
                .second
                .compare_exchange(second, now, Relaxed, Relaxed)
                .is_ok()
        {
            self.written.store(0, Relaxed);
            held_before = self.held.swap(0, Relaxed);
        }
        if self.written.fetch_add(1, Relaxed) < self.per_second {
            Some(held_before)
        } else {
            self.held.fetch_add(1 + held_before, Relaxed);
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn past_the_budget_lines_are_held_back_and_reported_by_the_next_second() {
        let budget = LineBudget::new(5);
        let second = budget.start.get_or_init(Instant::now).elapsed().as_secs();
        let admitted: Vec<_> = (0..20).map(|_| budget.admit()).collect();
        // Unless the second turned over during the loop (a very slow machine), five lines
        // were written, and the other fifteen are reported by the next second's first line.
        if budget.start.get().unwrap().elapsed().as_secs() == second {
            assert_eq!(admitted.iter().filter(|a| a.is_some()).count(), 5);
            assert_eq!(admitted[..5], [Some(0); 5]);
            std::thread::sleep(std::time::Duration::from_millis(1_050));
            assert_eq!(budget.admit(), Some(15));
            assert_eq!(budget.admit(), Some(0));
            for _ in 0..10 {
                budget.admit();
            }
            assert_eq!(budget.take_held(), 7);
            assert_eq!(budget.take_held(), 0);
        }
    }
}
