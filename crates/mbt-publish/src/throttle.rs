//! At most one message a minute for a failure that repeats: a full disk fails every write, and
//! a warning per event would fill the journal (on the same full disk) with the same line.
//! The count of failures since the last message goes in the next one, so nothing is hidden.
//!
//! A success in between does not start the clock over: on a full disk some writes still succeed
//! (an acknowledgement deletes a delivered segment, a small file fits), and the soak
//! (`tests/soak.rs`) saw a spool alternate failure and success many times a second, logging a
//! warning and a "writing again" for each until this held both to one a period.

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
    /// A failure was logged since the last recovery message.
    reported: bool,
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
            reported: false,
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
        self.reported = true;
        Some(std::mem::take(&mut self.since))
    }

    /// Records a success; true when it ends a run of failures that was logged (time to say it
    /// recovered). Failures not logged yet stay counted for the next message.
    pub fn succeeded(&mut self) -> bool {
        let say = self.failing && self.reported;
        self.failing = false;
        if say {
            self.reported = false;
        }
        say
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
        // After a quiet period the next failure is reported at once.
        assert_eq!(t.failed(t0 + Duration::from_secs(121)), Some(1));
    }

    #[test]
    fn failures_and_successes_that_alternate_are_still_one_message_a_period() {
        let t0 = Instant::now();
        let mut t = Throttle::new(Duration::from_secs(60));
        assert_eq!(t.failed(t0), Some(1));
        assert!(t.succeeded(), "the logged failure ended: say so once");
        // A full disk on which some writes still succeed: fail, succeed, many times a second.
        for k in 1..=50 {
            let now = t0 + Duration::from_millis(100 * k);
            assert_eq!(t.failed(now), None, "failure {k} within the period");
            assert!(
                !t.succeeded(),
                "no recovery message for an unlogged failure"
            );
        }
        // The next message counts every failure since the last one.
        assert_eq!(t.failed(t0 + Duration::from_secs(60)), Some(51));
    }
}
