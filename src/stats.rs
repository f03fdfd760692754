//! Counters every stage updates, and the report a run ends with.
//!
//! A daemon that silently loses frames or windows cannot be trusted, so everything that is
//! dropped, skipped, late or recovered is counted here; `mbtd` logs the report on exit (and
//! every minute while running), and tests assert on it.

use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::Mutex;

use serde::Serialize;

macro_rules! counters {
    ($($(#[$doc:meta])* $name:ident),* $(,)?) => {
        /// Live counters, shared by the pipeline's stages (`Arc<Stats>`).
        #[derive(Debug, Default)]
        pub struct Stats {
            $($(#[$doc])* pub $name: AtomicU64,)*
            /// Last and largest measured audio drift (clock time minus sample-count time), µs.
            pub audio_drift_last_us: AtomicI64,
            pub audio_drift_max_abs_us: AtomicU64,
            /// Per-window latencies, for the quantiles of the report.
            pub latencies: Mutex<Latencies>,
            /// Writes that fail now, by what writes (`evidence`, `spool mqtt`, `tuning file`,
            /// `labels.csv`): the latest error of each, cleared when a write succeeds again.
            pub storage: Mutex<std::collections::BTreeMap<String, String>>,
        }

        /// A snapshot of [`Stats`].
        #[derive(Debug, Clone, Default, PartialEq, Serialize)]
        pub struct Report {
            $($(#[$doc])* pub $name: u64,)*
            pub audio_drift_last_us: i64,
            pub audio_drift_max_abs_us: u64,
            /// Tokenize + infer time per window (a batch's time shared by its windows), µs:
            /// median, 99th percentile and maximum of the last [`LATENCY_KEEP`] windows.
            pub compute_p50_us: Option<u64>,
            pub compute_p99_us: Option<u64>,
            pub compute_max_us: Option<u64>,
            /// From the end of a window on the clock (its last sample due) to its scores
            /// being ready, µs: what a live source or a paced replay waits for a detection.
            /// `None` when no window was scored after its end (replay as fast as possible
            /// runs ahead of the clock).
            pub latency_p50_us: Option<u64>,
            pub latency_p99_us: Option<u64>,
            pub latency_max_us: Option<u64>,
            /// Writes failing now (a full or read-only disk), one line each: the web page's
            /// status shows them.
            pub storage_errors: Vec<String>,
        }

        impl Stats {
            pub fn snapshot(&self) -> Report {
                let (compute, latency) = match self.latencies.lock() {
                    Ok(l) => (l.compute.quantiles(), l.latency.quantiles()),
                    Err(_) => (None, None),
                };
                Report {
                    $($name: self.$name.load(Ordering::Relaxed),)*
                    audio_drift_last_us: self.audio_drift_last_us.load(Ordering::Relaxed),
                    audio_drift_max_abs_us: self.audio_drift_max_abs_us.load(Ordering::Relaxed),
                    compute_p50_us: compute.map(|q| q.0),
                    compute_p99_us: compute.map(|q| q.1),
                    compute_max_us: compute.map(|q| q.2),
                    latency_p50_us: latency.map(|q| q.0),
                    latency_p99_us: latency.map(|q| q.1),
                    latency_max_us: latency.map(|q| q.2),
                    storage_errors: self
                        .storage
                        .lock()
                        .map(|m| m.iter().map(|(k, v)| format!("{k}: {v}")).collect())
                        .unwrap_or_default(),
                }
            }
        }
    };
}

counters! {
    /// Audio periods and video frames received from the sources.
    audio_chunks,
    audio_samples,
    video_frames,
    /// Frames missing on the clock (gaps longer than 1.5 frame periods), whatever the cause.
    frames_missing,
    /// Frames that arrived after the windows they belong to were cut, or out of order.
    frames_late,
    /// Frames that could not be decoded (corrupt MJPEG, wrong size): skipped.
    frames_corrupt,
    /// Audio samples missing on the clock (underruns, gaps): the window sees silence there.
    audio_gap_samples,
    /// Audio samples that overlapped samples already placed (clock went back): dropped.
    audio_overlap_samples,
    /// Audio samples that arrived after the windows they belong to were cut: dropped.
    audio_late_samples,
    /// ALSA overruns recovered, short reads.
    audio_xruns,
    audio_short_reads,
    /// Times a stream lagged the other by more than `window.stall_s`.
    stalls,
    /// Source failures and successful reopenings.
    source_failures,
    source_recoveries,
    /// Windows cut, by what they hold.
    windows_cut,
    windows_audio_only,
    windows_video_only,
    /// Windows with neither modality present: not run.
    windows_empty,
    /// Windows dropped because inference fell behind (oldest first).
    windows_dropped,
    /// Windows whose tokenization failed (bad frames or samples): skipped.
    windows_failed,
    windows_inferred,
    /// Batches run and the time spent in them (tokenize + infer), µs.
    batches,
    infer_us,
    /// Events delivered, and deliveries a sink refused.
    events,
    /// Evidence files (media, records) the disk refused to write: the events went out without.
    evidence_write_failures,
    /// Times the wall clock was found stepped (it moved unlike the monotonic clock by over
    /// a second between two windows): logged; event times follow it.
    wall_clock_steps,
    sink_errors,
    /// Models loaded while running (SIGHUP or the file changed), and reloads refused (the new
    /// file failed to load or did not fit; the running model was kept).
    model_reloads,
    model_reload_failures,
    /// Run-time tuning changes applied (web page, MQTT) and refused (unknown label, bad value,
    /// malformed command).
    tuning_changes,
    tuning_rejected,
}

/// How many recent windows the latency quantiles cover (a bounded memory for a daemon that
/// runs for months: the report describes the recent past).
pub const LATENCY_KEEP: usize = 4096;

/// The last [`LATENCY_KEEP`] values of a series, oldest overwritten first.
#[derive(Debug, Default)]
pub struct Ring {
    values: Vec<u64>,
    next: usize,
}

impl Ring {
    pub fn push(&mut self, v: u64) {
        if self.values.len() < LATENCY_KEEP {
            self.values.push(v);
        } else {
            self.values[self.next] = v;
        }
        self.next = (self.next + 1) % LATENCY_KEEP;
    }

    /// (median, 99th percentile, maximum) by the nearest-rank method; `None` when empty.
    pub fn quantiles(&self) -> Option<(u64, u64, u64)> {
        let mut v = self.values.clone();
        if v.is_empty() {
            return None;
        }
        v.sort_unstable();
        let rank = |q: f64| v[((q * v.len() as f64).ceil() as usize).clamp(1, v.len()) - 1];
        Some((rank(0.5), rank(0.99), v[v.len() - 1]))
    }
}

/// Per-window compute time and detection latency.
#[derive(Debug, Default)]
pub struct Latencies {
    pub compute: Ring,
    pub latency: Ring,
}

impl Stats {
    /// Records a scored batch: its compute time shared by its `n` windows, and for each window
    /// the time from its end on the clock to now (skipped when negative: replay ahead of the
    /// clock).
    pub fn record_batch(&self, compute_us: u64, n: usize, now_us: u64, window_ends_us: &[u64]) {
        let Ok(mut l) = self.latencies.lock() else {
            return;
        };
        for _ in 0..n {
            l.compute.push(compute_us / n.max(1) as u64);
        }
        for &end in window_ends_us {
            if now_us >= end {
                l.latency.push(now_us - end);
            }
        }
    }

    pub fn add(counter: &AtomicU64, n: u64) {
        counter.fetch_add(n, Ordering::Relaxed);
    }

    pub fn inc(counter: &AtomicU64) {
        counter.fetch_add(1, Ordering::Relaxed);
    }

    /// A write of `what` fails now with `error` (shown on the web page until cleared).
    pub fn set_storage_error(&self, what: &str, error: String) {
        if let Ok(mut m) = self.storage.lock() {
            m.insert(what.to_string(), error);
        }
    }

    /// Writes of `what` succeed again.
    pub fn clear_storage_error(&self, what: &str) {
        if let Ok(mut m) = self.storage.lock() {
            m.remove(what);
        }
    }

    pub fn record_drift(&self, drift_us: i64) {
        self.audio_drift_last_us.store(drift_us, Ordering::Relaxed);
        self.audio_drift_max_abs_us
            .fetch_max(drift_us.unsigned_abs(), Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantiles_by_nearest_rank() {
        let mut r = Ring::default();
        assert_eq!(r.quantiles(), None);
        for v in (1..=100).rev() {
            r.push(v);
        }
        // 1..=100: the 50th value is 50, the 99th is 99.
        assert_eq!(r.quantiles(), Some((50, 99, 100)));
    }

    #[test]
    fn the_ring_keeps_only_the_most_recent_values() {
        let mut r = Ring::default();
        for _ in 0..LATENCY_KEEP {
            r.push(1_000_000);
        }
        for _ in 0..LATENCY_KEEP {
            r.push(7);
        }
        assert_eq!(r.quantiles(), Some((7, 7, 7)));
    }

    #[test]
    fn a_batch_shares_its_time_and_skips_windows_ahead_of_the_clock() {
        let s = Stats::default();
        s.record_batch(3000, 3, 10_000, &[9_000, 8_000, 20_000]);
        let r = s.snapshot();
        assert_eq!(r.compute_p50_us, Some(1000));
        assert_eq!(r.latency_max_us, Some(2000));
        assert_eq!(r.latency_p50_us, Some(1000));
    }
}
