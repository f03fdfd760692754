//! Counters every stage updates, and the report a run ends with.
//!
//! A daemon that silently loses frames or windows cannot be trusted, so everything that is
//! dropped, skipped, late or recovered is counted here; `mbtd` logs the report on exit (and
//! every minute while running), and tests assert on it.

use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};

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
        }

        /// A snapshot of [`Stats`].
        #[derive(Debug, Clone, Default, PartialEq, Serialize)]
        pub struct Report {
            $($(#[$doc])* pub $name: u64,)*
            pub audio_drift_last_us: i64,
            pub audio_drift_max_abs_us: u64,
        }

        impl Stats {
            pub fn snapshot(&self) -> Report {
                Report {
                    $($name: self.$name.load(Ordering::Relaxed),)*
                    audio_drift_last_us: self.audio_drift_last_us.load(Ordering::Relaxed),
                    audio_drift_max_abs_us: self.audio_drift_max_abs_us.load(Ordering::Relaxed),
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
    sink_errors,
}

impl Stats {
    pub fn add(counter: &AtomicU64, n: u64) {
        counter.fetch_add(n, Ordering::Relaxed);
    }

    pub fn inc(counter: &AtomicU64) {
        counter.fetch_add(1, Ordering::Relaxed);
    }

    pub fn record_drift(&self, drift_us: i64) {
        self.audio_drift_last_us.store(drift_us, Ordering::Relaxed);
        self.audio_drift_max_abs_us
            .fetch_max(drift_us.unsigned_abs(), Ordering::Relaxed);
    }
}
