//! Where audio and frames come from: one [`Source`] trait, four kinds behind it.
//!
//! * [`alsa`]: a microphone through alsa-lib (any rate and channel count the device offers,
//!   downmixed here and resampled by the shared tokenizer; overruns recovered and counted).
//! * [`v4l2`]: a camera through V4L2 (YUYV or MJPEG, converted to RGB here), behind a
//!   [`v4l2::CameraDevice`] seam so the conversion and reconnect logic is tested with a fake.
//! * [`replay`]: a recorded clip (WAV + frames directory or Y4M), paced in real time or as fast
//!   as inference goes.
//! * [`synthetic`]: test patterns.
//!
//! A source only knows how to open its device and read the next period or frame, stamped on
//! the pipeline's [`Clock`](crate::clock::Clock). What to do when it fails is the same for all
//! of them and lives in [`supervise`]: report the loss (the pipeline goes on with the other
//! modality), wait with exponential backoff, reopen, report the recovery. Reads block (ALSA
//! and V4L2 are blocking APIs), so each source runs on its own blocking task with a read
//! timeout, and talks to the async pipeline through a bounded channel.

pub mod alsa;
pub mod replay;
pub mod synthetic;
pub mod v4l2;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use mbt_media::RgbFrame;
use serde::Serialize;
use tokio::sync::mpsc;

use crate::clock::Micros;
use crate::stats::Stats;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Modality {
    Audio,
    Video,
}

impl std::fmt::Display for Modality {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Modality::Audio => "audio",
            Modality::Video => "video",
        })
    }
}

/// One audio period: mono samples in [-1, 1] at `rate` Hz; `t_us` is the first sample's time.
#[derive(Debug, Clone, PartialEq)]
pub struct AudioChunk {
    pub t_us: Micros,
    pub rate: u32,
    pub samples: Vec<f32>,
}

/// One RGB frame and its capture time. Shared (`Arc`) because overlapping windows hold the
/// same frames.
#[derive(Debug, Clone)]
pub struct VideoFrame {
    pub t_us: Micros,
    pub frame: Arc<RgbFrame>,
}

#[derive(Debug, Clone)]
pub enum Data {
    Audio(AudioChunk),
    Video(VideoFrame),
}

/// What a source delivers once opened.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Format {
    Audio { rate: u32, channels: u32 },
    Video { fps: f64, width: u32, height: u32 },
}

/// What went wrong with one read.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum SourceError {
    /// This item is lost but the stream goes on (a corrupt frame, an overrun): counted.
    #[error("{kind:?}: {reason}")]
    Skipped { kind: SkipKind, reason: String },
    /// The device is gone or broken: close it, and reopen it (live sources) after a backoff.
    #[error("{0}")]
    Failed(String),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SkipKind {
    CorruptFrame,
    Xrun,
    ShortRead,
}

/// A capture device or a recording. Implementations block in `read` for at most about the
/// configured read timeout, so shutdown is never held up for long.
pub trait Source: Send {
    fn modality(&self) -> Modality;
    /// For logs: "alsa:hw:1,0", "replay:models/demo/audio.wav".
    fn name(&self) -> String;
    /// Live devices are reopened after a failure; a recording or pattern that fails is over.
    fn live(&self) -> bool;
    fn open(&mut self) -> Result<Format, SourceError>;
    /// The next period or frame; `Ok(None)` at the end of a recording.
    fn read(&mut self) -> Result<Option<Data>, SourceError>;
    fn close(&mut self) {}
}

/// What the source tasks tell the windower.
#[derive(Debug, Clone)]
pub enum SourceMsg {
    /// Opened (or reopened) and delivering in this format.
    Up(Modality, Format),
    Data(Data),
    /// Failed; the windower stops waiting for it until it is `Up` again.
    Down(Modality, String),
    /// Will not deliver any more (a recording ended, or shutdown).
    Ended(Modality),
}

/// Exponential backoff between reopening attempts: `initial`, doubled up to `max`.
#[derive(Debug, Clone)]
pub struct Backoff {
    initial: Duration,
    max: Duration,
    next: Duration,
}

impl Backoff {
    pub fn new(initial: Duration, max: Duration) -> Self {
        Backoff {
            initial,
            max: max.max(initial),
            next: initial,
        }
    }

    /// The wait before the next attempt; each call doubles the following one.
    pub fn next_delay(&mut self) -> Duration {
        let d = self.next;
        self.next = (self.next * 2).min(self.max);
        d
    }

    pub fn reset(&mut self) {
        self.next = self.initial;
    }
}

/// Sleeps for `d` unless shutdown is asked for first; returns false on shutdown.
pub fn sleep_unless(d: Duration, shutdown: &AtomicBool) -> bool {
    let step = Duration::from_millis(20);
    let mut left = d;
    while !left.is_zero() {
        if shutdown.load(Ordering::Relaxed) {
            return false;
        }
        let s = left.min(step);
        std::thread::sleep(s);
        left -= s;
    }
    !shutdown.load(Ordering::Relaxed)
}

/// Runs one source until it ends, the pipeline stops listening, or shutdown: opens it, sends
/// what it reads, counts what it skips, and on failure reports it down, backs off and
/// reopens (live sources) or ends (recordings). Blocking: run it with `spawn_blocking`.
pub fn supervise(
    mut source: Box<dyn Source>,
    tx: mpsc::Sender<SourceMsg>,
    stats: Arc<Stats>,
    shutdown: Arc<AtomicBool>,
    mut backoff: Backoff,
) {
    let m = source.modality();
    let name = source.name();
    let mut failed_before = false;
    let send = |msg: SourceMsg| tx.blocking_send(msg).is_ok();
    'reopen: loop {
        if shutdown.load(Ordering::Relaxed) {
            break;
        }
        let format = match source.open() {
            Ok(f) => f,
            Err(e) => {
                if !failed_before {
                    Stats::inc(&stats.source_failures);
                    failed_before = true;
                    if !send(SourceMsg::Down(m, e.to_string())) {
                        return;
                    }
                }
                if !source.live() {
                    tracing::error!(source = %name, "cannot open: {e}");
                    break;
                }
                let d = backoff.next_delay();
                tracing::warn!(source = %name, "cannot open: {e}; retrying in {:.1} s", d.as_secs_f64());
                if !sleep_unless(d, &shutdown) {
                    break;
                }
                continue;
            }
        };
        if failed_before {
            Stats::inc(&stats.source_recoveries);
            tracing::info!(source = %name, "{m} source is back: {format:?}");
        } else {
            tracing::info!(source = %name, "{m} source open: {format:?}");
        }
        backoff.reset();
        if !send(SourceMsg::Up(m, format)) {
            return;
        }
        loop {
            if shutdown.load(Ordering::Relaxed) {
                source.close();
                break 'reopen;
            }
            match source.read() {
                Ok(Some(data)) => {
                    if !send(SourceMsg::Data(data)) {
                        source.close();
                        return;
                    }
                }
                Ok(None) => {
                    tracing::info!(source = %name, "{m} recording ended");
                    source.close();
                    break 'reopen;
                }
                Err(SourceError::Skipped { kind, reason }) => {
                    let c = match kind {
                        SkipKind::CorruptFrame => &stats.frames_corrupt,
                        SkipKind::Xrun => &stats.audio_xruns,
                        SkipKind::ShortRead => &stats.audio_short_reads,
                    };
                    Stats::inc(c);
                    tracing::debug!(source = %name, "skipped: {reason}");
                }
                Err(SourceError::Failed(reason)) => {
                    Stats::inc(&stats.source_failures);
                    source.close();
                    failed_before = true;
                    tracing::warn!(source = %name, "{m} source failed: {reason}");
                    if !send(SourceMsg::Down(m, reason)) {
                        return;
                    }
                    if !source.live() {
                        break 'reopen;
                    }
                    let d = backoff.next_delay();
                    if !sleep_unless(d, &shutdown) {
                        break 'reopen;
                    }
                    continue 'reopen;
                }
            }
        }
    }
    let _ = send(SourceMsg::Ended(m));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_to_the_cap_and_resets() {
        let mut b = Backoff::new(Duration::from_millis(500), Duration::from_secs(3));
        let got: Vec<u64> = (0..6).map(|_| b.next_delay().as_millis() as u64).collect();
        assert_eq!(got, [500, 1000, 2000, 3000, 3000, 3000]);
        b.reset();
        assert_eq!(b.next_delay(), Duration::from_millis(500));
    }
}
