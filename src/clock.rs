//! The daemon's one clock.
//!
//! Every audio period and video frame is stamped in microseconds on this clock, and windows
//! are cut on it, so audio and video stay aligned whatever their devices do. Live sources
//! stamp with [`Clock::now_us`] (monotonic: `Instant`, never the wall clock, which NTP may
//! step); replayed and synthetic sources stamp with their media position, and when paced in
//! real time they sleep until the clock reaches it, so both kinds share one time base that
//! starts at 0 when the pipeline starts.
//!
//! Events also carry wall-clock times (Unix milliseconds): the wall time of the clock's zero
//! plus the clock time, so a stepped wall clock never reorders events.

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// Microseconds on the pipeline clock.
pub type Micros = u64;

pub const US_PER_S: f64 = 1e6;

pub fn secs_to_us(s: f64) -> Micros {
    (s * US_PER_S).round().max(0.0) as Micros
}

pub fn us_to_secs(us: Micros) -> f64 {
    us as f64 / US_PER_S
}

#[derive(Debug, Clone, Copy)]
pub struct Clock {
    start: Instant,
    /// Unix time of the clock's zero, milliseconds.
    wall_start_ms: u64,
}

impl Clock {
    pub fn start() -> Self {
        let wall_start_ms = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_millis() as u64)
            .unwrap_or(0);
        Clock {
            start: Instant::now(),
            wall_start_ms,
        }
    }

    pub fn now_us(&self) -> Micros {
        self.start.elapsed().as_micros() as Micros
    }

    /// Unix milliseconds of a clock time.
    pub fn wall_ms(&self, t: Micros) -> u64 {
        self.wall_start_ms + t / 1000
    }

    pub fn wall_start_ms(&self) -> u64 {
        self.wall_start_ms
    }

    /// How long until the clock reads `t` (zero if it already has).
    pub fn until(&self, t: Micros) -> Duration {
        Duration::from_micros(t.saturating_sub(self.now_us()))
    }
}
