//! At most one message a minute for a failure that repeats: a full disk fails every write, and
//! a warning per event would fill the journal (on the same full disk) with the same line.
//! The count of failures since the last message goes in the next one, so nothing is hidden.

use std::time::{Duration, Instant};

/// How often a repeating failure is logged.
pub const EVERY: Duration = Duration::from_secs(60);

#[derive(Debug, Clone)]
pub struct Throttle {
    every: Duration,
    last: Option<Instant>,
    /// Failures since the last message (including the one being reported).
    since: u64,
    failing: bool,
}

impl Default for Throttle {
    fn default() -> Self {
        Throttle::new(EVERY)
    }
}

impl Throttle {
    pub fn new(every: Duration) -> Self {
        Throttle {
            every,
            last: None,
            since: 0,
            failing: false,
        }
    }

    /// Records a failure at `now`; `Some(n)` when it is time to log, `n` the failures since
    /// the last message (this one included).
    pub fn failed(&mut self, now: Instant) -> Option<u64> {
        self.since += 1;
        self.failing = true;
        let due = self
            .last
            .is_none_or(|t| now.saturating_duration_since(t) >= self.every);
        if !due {
            return None;
        }
        self.last = Some(now);
        Some(std::mem::take(&mut self.since))
    }

    /// Records a success; true when it ends a run of failures (time to say it recovered).
    pub fn succeeded(&mut self) -> bool {
        let was = self.failing;
        self.failing = false;
        self.since = 0;
        self.last = None;
        was
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn once_a_period_with_the_count_and_a_recovery() {
        let t0 = Instant::now();
        let mut t = Throttle::new(Duration::from_secs(60));
        assert_eq!(t.failed(t0), Some(1));
        assert_eq!(t.failed(t0 + Duration::from_secs(1)), None);
        assert_eq!(t.failed(t0 + Duration::from_secs(59)), None);
        assert_eq!(t.failed(t0 + Duration::from_secs(60)), Some(3));
        assert!(t.succeeded());
        assert!(!t.succeeded());
        // After a recovery the next failure is reported at once.
        assert_eq!(t.failed(t0 + Duration::from_secs(61)), Some(1));
    }
}
