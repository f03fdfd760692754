//! Cutting aligned windows from two streams on one clock.
//!
//! Window `k` spans `[k * hop, k * hop + length)` on the pipeline clock (see [`crate::clock`]),
//! for audio and video alike, so the two halves of a window are the same stretch of time
//! however the devices deliver. The first window is the first whose start is at or after the
//! first data of any stream.
//!
//! **Audio** is placed by sample count: sample `n` of a stream opened at rate `r` sits at
//! `n / r` seconds. Each period's timestamp is compared with where the count puts it; the
//! difference is the drift (counted, largest kept). Within `audio_tolerance_s` the count wins
//! (timestamps jitter, sample clocks do not); beyond it the stream is re-anchored on the clock:
//! a jump forward leaves a gap (an underrun: counted, the window sees silence there), a jump
//! back overlaps samples already placed (dropped and counted).
//!
//! **Video** frames sit at their timestamps. A frame older than the previous one, or older
//! than windows already cut, is late (counted, skipped); a gap longer than 1.5 frame periods
//! counts the frames missing in it.
//!
//! **When to cut** window `k`: when every stream that is up has delivered data at or past its
//! end. A stream that is down (failed), ended or, in live capture, stalled (lagging the other
//! by more than `stall_s`) is not waited for: the window is cut from what there is.
//!
//! **What a window holds**: audio when at least `min_audio_coverage` of its samples arrived;
//! video when it has at least `min_video_coverage` of the `T` frames the model samples, of
//! which `T` are then picked with the tokenizer's own [`uniform_indices`] (the frames are
//! shared `Arc`s, so overlapping windows copy no pixels). A window with neither is counted as
//! empty and not run.
//!
//! The windower is pure (no I/O, no time of its own): the pipeline feeds it messages, tests
//! feed it hand-made timestamps.

use std::collections::VecDeque;
use std::sync::Arc;

use mbt_core::video::uniform_indices;
use mbt_media::RgbFrame;

use crate::clock::{secs_to_us, Micros};
use crate::source::{AudioChunk, Format, Modality, SourceMsg, VideoFrame};
use crate::stats::Stats;

#[derive(Debug, Clone, PartialEq)]
pub struct WindowSpec {
    pub length_us: Micros,
    pub hop_us: Micros,
    /// Frames the model samples per window (`video.num_frames` in its metadata).
    pub video_frames: usize,
    pub min_audio_coverage: f64,
    pub min_video_coverage: f64,
    pub audio_tolerance_us: Micros,
    /// Live capture: lagging the other stream by more than this is a stall. None: the sources
    /// are not live (replay as fast as possible), so a lagging stream is always waited for.
    pub stall_us: Option<Micros>,
}

impl WindowSpec {
    pub fn from_config(w: &crate::config::WindowConfig, video_frames: usize, live: bool) -> Self {
        WindowSpec {
            length_us: secs_to_us(w.length_s),
            hop_us: secs_to_us(w.hop_s),
            video_frames,
            min_audio_coverage: w.min_audio_coverage,
            min_video_coverage: w.min_video_coverage,
            audio_tolerance_us: secs_to_us(w.audio_tolerance_s),
            stall_us: live.then(|| secs_to_us(w.stall_s)),
        }
    }

    /// Least number of frames for a window's video to count as present.
    fn min_frames(&self) -> usize {
        ((self.video_frames as f64 * self.min_video_coverage).ceil() as usize).max(1)
    }
}

#[derive(Debug, Clone)]
pub struct WindowAudio {
    pub rate: u32,
    /// `length * rate` samples; missing ones are zeros (silence).
    pub samples: Vec<f32>,
    /// Fraction of the samples that arrived.
    pub coverage: f64,
}

#[derive(Debug, Clone)]
pub struct Window {
    pub index: u64,
    pub start_us: Micros,
    pub end_us: Micros,
    pub audio: Option<WindowAudio>,
    /// The `T` frames the model sees, picked uniformly from the window's frames.
    pub video: Option<Vec<Arc<RgbFrame>>>,
    /// Frames that fell inside the window.
    pub frames_in_window: usize,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StreamState {
    /// Not configured (`source = "none"`).
    Absent,
    /// Configured, not delivering yet.
    Waiting,
    Up,
    Down,
    Ended,
}

#[derive(Debug)]
struct AudioTrack {
    state: StreamState,
    rate: u32,
    /// `(first sample position, samples)`, in order, not overlapping.
    chunks: VecDeque<(u64, Vec<f32>)>,
    /// Where the next period goes by count; None until the first period (or after a reset).
    next_pos: Option<u64>,
    stalled: bool,
}

impl AudioTrack {
    fn end_us(&self) -> Option<Micros> {
        let end = self.next_pos?;
        Some((end as u128 * 1_000_000 / self.rate.max(1) as u128) as Micros)
    }
}

#[derive(Debug)]
struct VideoTrack {
    state: StreamState,
    fps: f64,
    frames: VecDeque<(Micros, Arc<RgbFrame>)>,
    latest: Option<Micros>,
    stalled: bool,
}

impl VideoTrack {
    fn period_us(&self) -> Micros {
        if self.fps > 0.0 {
            secs_to_us(1.0 / self.fps)
        } else {
            0
        }
    }
}

pub struct Windower {
    spec: WindowSpec,
    stats: Arc<Stats>,
    audio: AudioTrack,
    video: VideoTrack,
    /// Index of the next window to cut; None until the first data.
    next: Option<u64>,
}

fn sample_pos(t: Micros, rate: u32) -> u64 {
    ((t as u128 * rate as u128 + 500_000) / 1_000_000) as u64
}

impl Windower {
    /// `audio` / `video`: whether that stream is configured at all.
    pub fn new(spec: WindowSpec, audio: bool, video: bool, stats: Arc<Stats>) -> Self {
        let state = |on: bool| {
            if on {
                StreamState::Waiting
            } else {
                StreamState::Absent
            }
        };
        Windower {
            spec,
            stats,
            audio: AudioTrack {
                state: state(audio),
                rate: 0,
                chunks: VecDeque::new(),
                next_pos: None,
                stalled: false,
            },
            video: VideoTrack {
                state: state(video),
                fps: 0.0,
                frames: VecDeque::new(),
                latest: None,
                stalled: false,
            },
            next: None,
        }
    }

    pub fn spec(&self) -> &WindowSpec {
        &self.spec
    }

    pub fn state(&self, m: Modality) -> StreamState {
        match m {
            Modality::Audio => self.audio.state,
            Modality::Video => self.video.state,
        }
    }

    /// Clock time up to which a stream has delivered (None before its first data).
    pub fn latest(&self, m: Modality) -> Option<Micros> {
        match m {
            Modality::Audio => self.audio.end_us(),
            Modality::Video => self.video.latest,
        }
    }

    fn next_start(&self) -> Option<Micros> {
        self.next.map(|k| k * self.spec.hop_us)
    }

    /// Feeds one message; returns the windows it completes.
    pub fn push(&mut self, msg: SourceMsg) -> Vec<Window> {
        match msg {
            SourceMsg::Up(Modality::Audio, Format::Audio { rate, .. }) => {
                if rate != self.audio.rate {
                    // A new rate (a different device): samples at the old rate cannot be
                    // continued; start the stream over on the clock.
                    self.audio.chunks.clear();
                    self.audio.next_pos = None;
                    self.audio.rate = rate;
                }
                self.audio.state = StreamState::Up;
            }
            SourceMsg::Up(Modality::Video, Format::Video { fps, .. }) => {
                self.video.fps = fps;
                self.video.state = StreamState::Up;
            }
            SourceMsg::Up(m, f) => {
                tracing::warn!("{m} source reported a format of the other kind: {f:?}");
            }
            SourceMsg::Down(m, _) => self.set_state(m, StreamState::Down),
            SourceMsg::Ended(m) => self.set_state(m, StreamState::Ended),
            SourceMsg::Data(crate::source::Data::Audio(c)) => self.push_audio(c),
            SourceMsg::Data(crate::source::Data::Video(f)) => self.push_frame(f),
        }
        self.cut(false)
    }

    fn set_state(&mut self, m: Modality, s: StreamState) {
        match m {
            Modality::Audio => {
                self.audio.state = s;
                // Timing restarts when the device comes back.
                self.audio.next_pos = self.audio.next_pos.filter(|_| s != StreamState::Down);
            }
            Modality::Video => self.video.state = s,
        }
    }

    fn first_data(&mut self, t: Micros) {
        if self.next.is_none() {
            self.next = Some(t.div_ceil(self.spec.hop_us.max(1)));
        }
    }

    fn push_audio(&mut self, c: AudioChunk) {
        Stats::inc(&self.stats.audio_chunks);
        Stats::add(&self.stats.audio_samples, c.samples.len() as u64);
        if c.samples.is_empty() {
            return;
        }
        if c.rate != self.audio.rate {
            // Data without a matching `Up` (a source that changed rate on its own).
            self.audio.chunks.clear();
            self.audio.next_pos = None;
            self.audio.rate = c.rate;
        }
        if self.audio.state != StreamState::Ended {
            self.audio.state = StreamState::Up;
        }
        self.audio.stalled = false;
        self.first_data(c.t_us);
        let rate = c.rate;
        let observed = sample_pos(c.t_us, rate);
        let mut samples = c.samples;
        let pos = match self.audio.next_pos {
            None => observed,
            Some(expected) => {
                let drift = observed as i64 - expected as i64;
                let drift_us = drift * 1_000_000 / rate as i64;
                self.stats.record_drift(drift_us);
                if drift_us.unsigned_abs() <= self.spec.audio_tolerance_us {
                    expected
                } else if drift > 0 {
                    Stats::add(&self.stats.audio_gap_samples, drift as u64);
                    observed
                } else {
                    let overlap = ((-drift) as usize).min(samples.len());
                    Stats::add(&self.stats.audio_overlap_samples, overlap as u64);
                    samples.drain(..overlap);
                    expected
                }
            }
        };
        let end = pos + samples.len() as u64;
        self.audio.next_pos = Some(end.max(self.audio.next_pos.unwrap_or(0)));
        // Samples before the next window to cut can no longer be used.
        if let Some(s) = self.next_start() {
            let first_needed = sample_pos(s, rate);
            if end <= first_needed {
                if self.windows_cut() > 0 {
                    Stats::add(&self.stats.audio_late_samples, samples.len() as u64);
                }
                return;
            }
        }
        if !samples.is_empty() {
            self.audio.chunks.push_back((pos, samples));
        }
    }

    fn windows_cut(&self) -> u64 {
        self.stats
            .windows_cut
            .load(std::sync::atomic::Ordering::Relaxed)
    }

    fn push_frame(&mut self, f: VideoFrame) {
        Stats::inc(&self.stats.video_frames);
        if self.video.state != StreamState::Ended {
            self.video.state = StreamState::Up;
        }
        self.video.stalled = false;
        if let Some(latest) = self.video.latest {
            if f.t_us <= latest {
                Stats::inc(&self.stats.frames_late);
                return;
            }
            let period = self.video.period_us();
            let gap = f.t_us - latest;
            if period > 0 && gap * 2 > period * 3 {
                let missing = ((gap as f64 / period as f64).round() as u64).saturating_sub(1);
                Stats::add(&self.stats.frames_missing, missing);
            }
        }
        self.video.latest = Some(f.t_us);
        self.first_data(f.t_us);
        if let Some(s) = self.next_start() {
            if f.t_us < s {
                if self.windows_cut() > 0 {
                    Stats::inc(&self.stats.frames_late);
                }
                return;
            }
        }
        self.video.frames.push_back((f.t_us, f.frame));
    }

    /// Cuts the windows that are complete. `flush`: the sources are done; cut every window
    /// that some stream's data still covers.
    fn cut(&mut self, flush: bool) -> Vec<Window> {
        let mut out = Vec::new();
        while let Some(k) = self.next {
            let start = k * self.spec.hop_us;
            let end = start + self.spec.length_us;
            let ready = if flush {
                self.covers(Modality::Audio, end) || self.covers(Modality::Video, end)
            } else {
                self.update_stalls();
                self.ready(Modality::Audio, end)
                    && self.ready(Modality::Video, end)
                    && (self.covers(Modality::Audio, end) || self.covers(Modality::Video, end))
            };
            if !ready {
                break;
            }
            let w = self.build(k, start, end);
            Stats::inc(&self.stats.windows_cut);
            match (&w.audio, &w.video) {
                (Some(_), None) => Stats::inc(&self.stats.windows_audio_only),
                (None, Some(_)) => Stats::inc(&self.stats.windows_video_only),
                (None, None) => Stats::inc(&self.stats.windows_empty),
                _ => {}
            }
            self.next = Some(k + 1);
            self.prune((k + 1) * self.spec.hop_us);
            out.push(w);
        }
        out
    }

    /// All sources are done: cut what the remaining data covers.
    pub fn finish(&mut self) -> Vec<Window> {
        self.cut(true)
    }

    /// Whether stream `m`'s data reaches `end`.
    fn covers(&self, m: Modality, end: Micros) -> bool {
        match m {
            Modality::Audio => self.audio.end_us().is_some_and(|e| e >= end),
            Modality::Video => self
                .video
                .latest
                .is_some_and(|l| l + self.video.period_us() >= end),
        }
    }

    /// Whether window ending at `end` may be cut as far as stream `m` is concerned.
    fn ready(&self, m: Modality, end: Micros) -> bool {
        let (state, stalled, latest) = match m {
            Modality::Audio => (self.audio.state, self.audio.stalled, self.audio.end_us()),
            Modality::Video => (self.video.state, self.video.stalled, self.video.latest),
        };
        match state {
            StreamState::Absent | StreamState::Down | StreamState::Ended => true,
            StreamState::Waiting | StreamState::Up => stalled || latest.is_some_and(|l| l >= end),
        }
    }

    /// Live capture: a stream lagging the other by more than `stall_us` is not waited for.
    fn update_stalls(&mut self) {
        let Some(stall) = self.spec.stall_us else {
            return;
        };
        let a = self.audio.end_us().unwrap_or(0);
        let v = self.video.latest.unwrap_or(0);
        let waiting = |s: StreamState| matches!(s, StreamState::Waiting | StreamState::Up);
        if waiting(self.audio.state) && waiting(self.video.state) {
            if !self.audio.stalled && v > a + stall {
                self.audio.stalled = true;
                Stats::inc(&self.stats.stalls);
                tracing::warn!(
                    "audio lags video by {:.1} s: cutting windows without it",
                    (v - a) as f64 / 1e6
                );
            }
            if !self.video.stalled && a > v + stall {
                self.video.stalled = true;
                Stats::inc(&self.stats.stalls);
                tracing::warn!(
                    "video lags audio by {:.1} s: cutting windows without it",
                    (a - v) as f64 / 1e6
                );
            }
        }
    }

    fn build(&self, index: u64, start: Micros, end: Micros) -> Window {
        let audio = if self.audio.rate > 0 && self.audio.state != StreamState::Absent {
            let rate = self.audio.rate;
            let first = sample_pos(start, rate);
            let n = sample_pos(self.spec.length_us, rate) as usize;
            let mut samples = vec![0f32; n];
            let mut got = 0usize;
            for (pos, chunk) in &self.audio.chunks {
                let (cs, ce) = (*pos, *pos + chunk.len() as u64);
                let (s, e) = (cs.max(first), ce.min(first + n as u64));
                if s < e {
                    let dst = (s - first) as usize..(e - first) as usize;
                    let src = (s - cs) as usize..(e - cs) as usize;
                    got += dst.len();
                    samples[dst].copy_from_slice(&chunk[src]);
                }
            }
            let coverage = got as f64 / n.max(1) as f64;
            (got > 0 && coverage + 1e-9 >= self.spec.min_audio_coverage).then_some(WindowAudio {
                rate,
                samples,
                coverage,
            })
        } else {
            None
        };
        let in_window: Vec<&Arc<RgbFrame>> = self
            .video
            .frames
            .iter()
            .filter(|(t, _)| *t >= start && *t < end)
            .map(|(_, f)| f)
            .collect();
        let video = if in_window.len() >= self.spec.min_frames() {
            uniform_indices(in_window.len(), self.spec.video_frames)
                .ok()
                .map(|ix| ix.into_iter().map(|i| in_window[i].clone()).collect())
        } else {
            None
        };
        Window {
            index,
            start_us: start,
            end_us: end,
            audio,
            video,
            frames_in_window: in_window.len(),
        }
    }

    fn prune(&mut self, keep_from: Micros) {
        while self
            .video
            .frames
            .front()
            .is_some_and(|(t, _)| *t < keep_from)
        {
            self.video.frames.pop_front();
        }
        if self.audio.rate > 0 {
            let first = sample_pos(keep_from, self.audio.rate);
            while self
                .audio
                .chunks
                .front()
                .is_some_and(|(p, c)| p + c.len() as u64 <= first)
            {
                self.audio.chunks.pop_front();
            }
        }
    }

    /// Fast replay: whether reading more of stream `m` is useful now, or whether it is far
    /// enough ahead of the other that it should wait (bounds what the windower buffers).
    pub fn may_read(&self, m: Modality) -> bool {
        let other = match m {
            Modality::Audio => Modality::Video,
            Modality::Video => Modality::Audio,
        };
        if !matches!(self.state(other), StreamState::Waiting | StreamState::Up) {
            return true;
        }
        let mine = self.latest(m).unwrap_or(0);
        let theirs = self.latest(other).unwrap_or(0);
        mine <= theirs + self.spec.length_us
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::source::Data;

    const RATE: u32 = 16_000;

    fn spec(live: bool) -> WindowSpec {
        WindowSpec {
            length_us: 2_000_000,
            hop_us: 1_000_000,
            video_frames: 4,
            min_audio_coverage: 0.9,
            min_video_coverage: 0.5,
            audio_tolerance_us: 50_000,
            stall_us: live.then_some(3_000_000),
        }
    }

    fn windower(live: bool) -> (Windower, Arc<Stats>) {
        let stats = Arc::new(Stats::default());
        let mut w = Windower::new(spec(live), true, true, stats.clone());
        w.push(SourceMsg::Up(
            Modality::Audio,
            Format::Audio {
                rate: RATE,
                channels: 1,
            },
        ));
        w.push(SourceMsg::Up(
            Modality::Video,
            Format::Video {
                fps: 8.0,
                width: 2,
                height: 2,
            },
        ));
        (w, stats)
    }

    /// 0.1 s of audio whose samples hold their own sample position (so tests see exactly
    /// which samples a window got), stamped `t_us`.
    fn audio(first_sample: u64, t_us: Micros) -> SourceMsg {
        let samples = (first_sample..first_sample + 1600)
            .map(|n| n as f32)
            .collect();
        SourceMsg::Data(Data::Audio(AudioChunk {
            t_us,
            rate: RATE,
            samples,
        }))
    }

    /// A 2x2 frame whose red channel holds the frame number.
    fn frame(i: u64, t_us: Micros) -> SourceMsg {
        SourceMsg::Data(Data::Video(VideoFrame {
            t_us,
            frame: Arc::new(RgbFrame {
                width: 2,
                height: 2,
                data: [i as u8, 0, 0].repeat(4),
            }),
        }))
    }

    /// Feeds `secs` seconds of both streams (audio in 0.1 s periods, video at 8 fps), in
    /// time order, audio timestamps offset by `jitter(n)` µs.
    fn feed(w: &mut Windower, secs: u64, jitter: impl Fn(u64) -> i64) -> Vec<Window> {
        let mut out = Vec::new();
        let mut f = 0;
        for p in 0..secs * 10 {
            let t = p * 100_000;
            while f * 125_000 < t + 100_000 {
                out.extend(w.push(frame(f, f * 125_000)));
                f += 1;
            }
            out.extend(w.push(audio(p * 1600, (t as i64 + jitter(p)).max(0) as Micros)));
        }
        out
    }

    #[test]
    fn windows_are_aligned_on_the_clock() {
        let (mut w, stats) = windower(false);
        let mut got = feed(&mut w, 6, |_| 0);
        got.extend(w.finish());
        // 6 s at length 2 / hop 1: [0,2) ... [4,6).
        assert_eq!(got.len(), 5);
        for (k, win) in got.iter().enumerate() {
            let k = k as u64;
            assert_eq!(
                (win.index, win.start_us, win.end_us),
                (k, k * 1_000_000, k * 1_000_000 + 2_000_000)
            );
            let a = win.audio.as_ref().expect("audio present");
            // The window's audio is exactly samples [16000 k, 16000 k + 32000).
            assert_eq!(a.samples.len(), 32_000);
            assert_eq!(a.samples[0], (k * 16_000) as f32);
            assert_eq!(a.samples[31_999], (k * 16_000 + 31_999) as f32);
            assert_eq!(a.coverage, 1.0);
            // Its frames are those of the same 2 s: frames 8k .. 8k+15, 4 picked uniformly
            // (floor((i + 0.5) * 16 / 4) = 2, 6, 10, 14).
            assert_eq!(win.frames_in_window, 16);
            let picked: Vec<u64> = win
                .video
                .as_ref()
                .unwrap()
                .iter()
                .map(|f| f.data[0] as u64)
                .collect();
            assert_eq!(picked, vec![8 * k + 2, 8 * k + 6, 8 * k + 10, 8 * k + 14]);
        }
        let r = stats.snapshot();
        assert_eq!(
            (
                r.windows_cut,
                r.frames_missing,
                r.frames_late,
                r.audio_gap_samples
            ),
            (5, 0, 0, 0)
        );
    }

    #[test]
    fn jitter_within_tolerance_is_drift_not_a_gap() {
        let (mut w, stats) = windower(false);
        // Timestamps wobble by up to +-30 ms (tolerance 50 ms): samples stay where the count
        // puts them, the drift is measured.
        let got = feed(&mut w, 4, |p| [0, 30_000, -30_000, 10_000][p as usize % 4]);
        assert_eq!(got[1].audio.as_ref().unwrap().samples[0], 16_000.0);
        let r = stats.snapshot();
        assert_eq!(r.audio_gap_samples + r.audio_overlap_samples, 0);
        assert_eq!(r.audio_drift_max_abs_us, 30_000);
    }

    #[test]
    fn gaps_beyond_tolerance_are_counted_and_leave_silence() {
        let (mut w, stats) = windower(false);
        // Periods 0..9 (0-1 s) arrive, 10..14 are lost (an underrun), 15.. go on at their
        // true times.
        let mut got = Vec::new();
        for p in (0..40).filter(|p| !(10..15).contains(p)) {
            got.extend(w.push(audio(p * 1600, p * 100_000)));
        }
        for f in 0..=32 {
            got.extend(w.push(frame(f, f * 125_000)));
        }
        let r = stats.snapshot();
        assert_eq!(r.audio_gap_samples, 5 * 1600);
        // Window [0, 2) lost 0.5 of 2 s: coverage 0.75 < 0.9, so it is video-only, with silence
        // (zeros) where the gap was; [1, 3) too; [2, 4) is whole.
        assert!(got[0].audio.is_none() && got[1].audio.is_none());
        assert_eq!(got[2].audio.as_ref().unwrap().coverage, 1.0);
        assert_eq!(r.windows_video_only, 2);
    }

    #[test]
    fn late_and_missing_frames_are_counted() {
        let (mut w, stats) = windower(false);
        for f in [0u64, 1, 2, 6, 7, 5, 8] {
            w.push(frame(f, f * 125_000));
        }
        let r = stats.snapshot();
        // 3, 4, 5 missing between 2 and 6 (then 5 arrives late: out of order).
        assert_eq!((r.frames_missing, r.frames_late), (3, 1));
    }

    #[test]
    fn a_down_stream_is_not_waited_for_and_rejoins() {
        let (mut w, _) = windower(false);
        let mut got = Vec::new();
        // 0-3 s both; video fails at 3 s; 3-7 s audio only; video is back from 7 s.
        for p in 0..100u64 {
            let t = p * 100_000;
            if t == 3_000_000 {
                got.extend(w.push(SourceMsg::Down(Modality::Video, "unplugged".into())));
            }
            if t == 7_000_000 {
                got.extend(w.push(SourceMsg::Up(
                    Modality::Video,
                    Format::Video {
                        fps: 8.0,
                        width: 2,
                        height: 2,
                    },
                )));
            }
            if !(3_000_000..7_000_000).contains(&t) {
                for f in t.div_ceil(125_000)..(t + 100_000).div_ceil(125_000) {
                    got.extend(w.push(frame(f, f * 125_000)));
                }
            }
            got.extend(w.push(audio(p * 1600, t)));
        }
        let has: Vec<(bool, bool)> = got
            .iter()
            .map(|w| (w.audio.is_some(), w.video.is_some()))
            .collect();
        // [0,2) [1,3) both; [2,4) has 8 of 16 frames (>= half of 4): both; [3,5) [4,6) [5,7):
        // audio only; [6,8) 8 frames again: both, and so on.
        assert_eq!(
            &has[..7],
            &[
                (true, true),
                (true, true),
                (true, true),
                (true, false),
                (true, false),
                (true, false),
                (true, true)
            ]
        );
        assert!(has[7..].iter().all(|&h| h == (true, true)));
    }

    #[test]
    fn live_capture_cuts_without_a_stalled_stream() {
        let (mut w, stats) = windower(true);
        let mut got = Vec::new();
        // The camera never delivers; audio runs on. Nothing is cut until audio is 3 s (stall_s)
        // ahead, then windows come audio-only.
        for p in 0..60 {
            got.extend(w.push(audio(p * 1600, p * 100_000)));
            if p == 29 {
                assert!(got.is_empty(), "waits for video until the stall limit");
            }
        }
        assert_eq!(stats.snapshot().stalls, 1);
        assert_eq!(got.len(), 5, "[0,2) .. [4,6)");
        assert!(got.iter().all(|w| w.audio.is_some() && w.video.is_none()));
    }

    #[test]
    fn fast_replay_reads_the_stream_that_is_behind() {
        let (mut w, _) = windower(false);
        for p in 0..25 {
            w.push(audio(p * 1600, p * 100_000));
        }
        // Audio is 2.5 s ahead of a video stream that has not delivered: wait for video.
        assert!(!w.may_read(Modality::Audio));
        assert!(w.may_read(Modality::Video));
        w.push(SourceMsg::Ended(Modality::Video));
        assert!(
            w.may_read(Modality::Audio),
            "nothing to wait for once video ended"
        );
    }
}
