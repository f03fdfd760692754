//! The daemon's one clock, and the wall clock event times are read from.
//!
//! Every audio period and video frame is stamped in microseconds on this clock, and windows
//! are cut on it, so audio and video stay aligned whatever their devices do. Live sources
//! stamp with [`Clock::now_us`] (monotonic: `Instant`, never the wall clock, which NTP may
//! step); replayed and synthetic sources stamp with their media position, and when paced in
//! real time they sleep until the clock reaches it, so both kinds share one time base that
//! starts at 0 when the pipeline starts.
//!
//! Events also carry wall-clock times (Unix milliseconds), read through the [`WallClock`]
//! trait (the system clock; tests plug in one that steps). [`WallTime`] maps a clock time to
//! Unix time from its latest anchor (a wall reading and the monotonic time it was taken at),
//! and re-anchors at every [`WallTime::check`]: a wall clock that moved more or less than the
//! monotonic one by over [`STEP_TOLERANCE_MS`] was *stepped* (NTP at boot, a user, a board
//! without a battery-backed clock), which the caller logs and counts, and event times follow
//! the new wall time from then on. Windows, the order of events and the spool's order never
//! depend on the wall clock, so a step cannot lose, double or reorder anything.

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// Microseconds on the pipeline clock.
pub type Micros = u64;

pub const US_PER_S: f64 = 1e6;

/// A wall clock that disagrees with the monotonic clock by more than this since the last
/// reading was stepped (slewing by NTP moves it by far less between two windows).
pub const STEP_TOLERANCE_MS: i64 = 1000;

pub fn secs_to_us(s: f64) -> Micros {
    (s * US_PER_S).round().max(0.0) as Micros
}

pub fn us_to_secs(us: Micros) -> f64 {
    us as f64 / US_PER_S
}

/// Where Unix time comes from: the system clock in the daemon, a stepping one in tests.
pub trait WallClock: Send + Sync + std::fmt::Debug {
    /// Unix time now, milliseconds.
    fn now_ms(&self) -> u64;
}

/// The system's wall clock (`CLOCK_REALTIME`).
#[derive(Debug, Default, Clone, Copy)]
pub struct SystemWall;

impl WallClock for SystemWall {
    fn now_ms(&self) -> u64 {
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_millis() as u64)
            .unwrap_or(0)
    }
}

#[derive(Debug, Clone)]
pub struct Clock {
    start: Instant,
    wall: Arc<dyn WallClock>,
    /// Unix time of the clock's zero, milliseconds (the run's id).
    wall_start_ms: u64,
}

impl Clock {
    /// Starts the clock now, with the system's wall clock.
    pub fn start() -> Self {
        Clock::with_wall(Arc::new(SystemWall))
    }

    /// Starts the clock now, reading Unix time from `wall`.
    pub fn with_wall(wall: Arc<dyn WallClock>) -> Self {
        let wall_start_ms = wall.now_ms();
        Clock {
            start: Instant::now(),
            wall,
            wall_start_ms,
        }
    }

    pub fn now_us(&self) -> Micros {
        self.start.elapsed().as_micros() as Micros
    }

    /// Unix time now, milliseconds, from the wall clock (which may have been stepped).
    pub fn wall_now_ms(&self) -> u64 {
        self.wall.now_ms()
    }

    pub fn wall_start_ms(&self) -> u64 {
        self.wall_start_ms
    }

    /// How long until the clock reads `t` (zero if it already has).
    pub fn until(&self, t: Micros) -> Duration {
        Duration::from_micros(t.saturating_sub(self.now_us()))
    }
}

/// A wall clock step that [`WallTime::check`] found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Step {
    /// How far the wall clock jumped, milliseconds (negative: back).
    pub by_ms: i64,
    /// The Unix time it reads now, milliseconds.
    pub now_ms: u64,
}

/// Clock times to Unix times, following the wall clock through steps.
#[derive(Debug, Clone)]
pub struct WallTime {
    clock: Clock,
    /// Monotonic clock time and the wall time read at it.
    anchor_us: Micros,
    anchor_ms: u64,
}

impl WallTime {
    pub fn new(clock: Clock) -> Self {
        WallTime {
            anchor_us: 0,
            anchor_ms: clock.wall_start_ms(),
            clock,
        }
    }

    /// Reads the wall clock and re-anchors on it; `Some` when it was stepped since the last
    /// reading (it moved unlike the monotonic clock by more than [`STEP_TOLERANCE_MS`]).
    pub fn check(&mut self) -> Option<Step> {
        let now_us = self.clock.now_us();
        let now_ms = self.clock.wall_now_ms();
        let expected =
            self.anchor_ms as i64 + (now_us.saturating_sub(self.anchor_us) / 1000) as i64;
        let by_ms = now_ms as i64 - expected;
        self.anchor_us = now_us;
        self.anchor_ms = now_ms;
        (by_ms.abs() > STEP_TOLERANCE_MS).then_some(Step { by_ms, now_ms })
    }

    /// Unix milliseconds of clock time `t` (a replay's media time may lie ahead of the
    /// monotonic clock: it maps the same way, from the anchor).
    pub fn wall_ms(&self, t: Micros) -> u64 {
        let since_ms = (t as i64 - self.anchor_us as i64).div_euclid(1000);
        (self.anchor_ms as i64 + since_ms).max(0) as u64
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicI64, Ordering};

    #[derive(Debug, Default)]
    struct Offset(AtomicI64);

    impl WallClock for Offset {
        fn now_ms(&self) -> u64 {
            (SystemWall.now_ms() as i64 + self.0.load(Ordering::SeqCst)) as u64
        }
    }

    #[test]
    fn a_step_is_found_once_and_event_times_follow_it() {
        let wall = Arc::new(Offset::default());
        let clock = Clock::with_wall(wall.clone());
        let mut w = WallTime::new(clock.clone());
        assert_eq!(w.check(), None, "no step: the clocks agree");
        let before = w.wall_ms(clock.now_us());
        wall.0.store(3_600_000, Ordering::SeqCst);
        let step = w.check().expect("a +1 h step is found");
        assert!(
            (step.by_ms - 3_600_000).abs() <= STEP_TOLERANCE_MS,
            "{step:?}"
        );
        assert_eq!(w.check(), None, "found once: the new time is the anchor");
        let after = w.wall_ms(clock.now_us());
        assert!(after >= before + 3_599_000, "{before} -> {after}");
        wall.0.store(0, Ordering::SeqCst);
        let back = w.check().expect("a -1 h step is found");
        assert!(
            (back.by_ms + 3_600_000).abs() <= STEP_TOLERANCE_MS,
            "{back:?}"
        );
        // A time before the anchor maps before the anchor's wall time, never below zero.
        assert!(w.wall_ms(0) <= back.now_ms);
    }
}
