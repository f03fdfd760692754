//! What the web page shows, as it is serialised for the page and the JSON API: the model and
//! tuning in force ([`Info`]), a window on the timeline ([`Point`]), an event ([`EventView`]),
//! the header's status ([`Status`]), and the pure helpers that make them (audio level, the
//! log-mel strip's bytes, rates, the JPEG of the latest frame).
//!
//! Why apart from [`super::live`]: that module owns the state the pipeline updates and its
//! locking; these are plain values with no lock and no channel, testable on their own.

use std::collections::VecDeque;
use std::time::Instant;

use mbt_core::event::Modalities;
use mbt_media::RgbFrame;
use serde::Serialize;

use crate::stats::Report;

/// What changes only on a model reload (labels, version) or a tuning change (thresholds,
/// switches).
#[derive(Debug, Clone, Serialize)]
pub struct Info {
    pub backend: String,
    pub model_version: String,
    pub labels: Vec<String>,
    /// The threshold in force per label (config, else the model's own, else the default).
    pub thresholds: Vec<f32>,
    /// Near-miss watch level per label (`web.watch_ratio` x threshold).
    pub watch: Vec<f32>,
    /// The labels that can fire (all but `none`).
    pub fires: Vec<bool>,
    pub audio: SourceInfo,
    pub video: SourceInfo,
    /// Window length and hop, seconds.
    pub window_s: f64,
    pub hop_s: f64,
}

#[derive(Debug, Clone, Serialize)]
pub struct SourceInfo {
    /// `alsa`, `v4l2`, `replay`, `synthetic` or `none`.
    pub kind: String,
    /// Device or file, as configured.
    pub name: String,
}

/// A label that came close: its score rose above the watch level but not to its threshold.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct NearMiss {
    pub label: String,
    pub score: f32,
    pub threshold: f32,
    pub start_s: f64,
    pub end_s: f64,
}

/// An event as the page lists it: the latest record of its id.
#[derive(Debug, Clone, Serialize)]
pub struct EventView {
    pub id: String,
    pub label: String,
    /// `open` until its `end` record arrives, then `ended`; `interrupted` when a previous run
    /// stopped before its end.
    pub state: &'static str,
    pub score: f32,
    pub score_audio: Option<f32>,
    pub score_video: Option<f32>,
    pub modalities: Modalities,
    /// The heads that reached the label's threshold on their own at the peak.
    pub fired: Vec<&'static str>,
    pub start_ms: u64,
    pub end_ms: Option<u64>,
    pub start_s: f64,
    pub end_s: Option<f64>,
    pub model_version: String,
    /// URLs of the key frame and the audio clip (`/evidence/<id>.jpg`), when written.
    pub jpeg: Option<String>,
    pub wav: Option<String>,
    /// The user's mark (`labels.csv`): the event's own label (right), `none` (wrong), or
    /// another label; `None`: not marked.
    pub mark: Option<String>,
}

/// One window on the timeline.
#[derive(Debug, Clone, Serialize)]
pub struct Point {
    pub index: u64,
    pub start_s: f64,
    pub end_s: f64,
    pub modalities: Modalities,
    pub fused: Vec<f32>,
    pub audio: Option<Vec<f32>>,
    pub video: Option<Vec<f32>>,
}

/// The log-mel strip of a window's newest part: `frames x bins` bytes, frame-major, 0 = the
/// tokenizer's silence level, 255 = the loudest seen in the last minute.
#[derive(Debug, Clone, Serialize)]
pub struct MelStrip {
    pub frames: usize,
    pub bins: usize,
    pub data: Vec<u8>,
}

/// Rates and latencies, from the pipeline's counters.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Throughput {
    pub windows: u64,
    pub windows_dropped: u64,
    pub windows_per_s: f64,
    pub latency_p50_ms: Option<f64>,
    pub latency_p99_ms: Option<f64>,
    pub compute_p50_ms: Option<f64>,
    pub compute_p99_ms: Option<f64>,
}

/// `/api/status`: what the live page's header shows.
#[derive(Debug, Clone, Serialize)]
pub struct Status {
    #[serde(flatten)]
    pub info: Info,
    pub version: &'static str,
    pub uptime_s: f64,
    /// `live`, `waiting`, `reconnecting`, `ended` or `absent` per source.
    pub audio_state: &'static str,
    pub video_state: &'static str,
    /// `both`, `audio only`, `video only` or `none`: what the latest window was scored on.
    pub mode: &'static str,
    pub throughput: Throughput,
    pub level_dbfs: Option<f32>,
    pub last_window: Option<Point>,
    pub near_misses: Vec<NearMiss>,
    pub open_events: Vec<String>,
    pub clients: usize,
    /// Writes failing now (a full or read-only disk): evidence, a sink's spool, the tuning
    /// file, `labels.csv`; one line each, empty when all is well.
    pub storage_errors: Vec<String>,
}

/// The per-window message of `/api/scores`.
#[derive(Debug, Serialize)]
pub(super) struct Tick<'a> {
    pub(super) window: &'a Point,
    /// The model that scored it: the page starts over when another one takes over (a reload
    /// may keep the number of labels and change their names).
    pub(super) model_version: &'a str,
    pub(super) thresholds: &'a [f32],
    pub(super) level_dbfs: Option<f32>,
    pub(super) mel: Option<MelStrip>,
    pub(super) audio_state: &'static str,
    pub(super) video_state: &'static str,
    pub(super) mode: &'static str,
    pub(super) throughput: &'a Throughput,
    pub(super) near_misses: &'a [NearMiss],
    pub(super) events: &'a [EventView],
    /// Writes failing now (see [`Status::storage_errors`]): the page shows them in a banner.
    pub(super) storage_errors: &'a [String],
}

pub(super) fn upsert(events: &mut VecDeque<EventView>, v: EventView, limit: usize) {
    match events.iter_mut().find(|e| e.id == v.id) {
        Some(e) => {
            // An `end` keeps the evidence its `new`/`update` named.
            let (jpeg, wav) = (e.jpeg.take(), e.wav.take());
            *e = v;
            e.jpeg = e.jpeg.take().or(jpeg);
            e.wav = e.wav.take().or(wav);
        }
        None => {
            events.push_back(v);
            while events.len() > limit {
                events.pop_front();
            }
        }
    }
}

pub(super) fn mode(m: Modalities) -> &'static str {
    match (m.audio, m.video) {
        (true, true) => "both",
        (true, false) => "audio only",
        (false, true) => "video only",
        (false, false) => "none",
    }
}

pub(super) fn tail(s: &[f32], fraction: f64) -> &[f32] {
    let keep = ((s.len() as f64 * fraction).round() as usize).min(s.len());
    &s[s.len() - keep..]
}

/// RMS level in dBFS (a full-scale sine is -3 dBFS); `None` for no samples, floor -120.
pub fn dbfs(s: &[f32]) -> Option<f32> {
    if s.is_empty() {
        return None;
    }
    let ms = s.iter().map(|&x| (x as f64) * (x as f64)).sum::<f64>() / s.len() as f64;
    Some((10.0 * ms.max(1e-12).log10()) as f32)
}

pub(super) fn quantize(frames: usize, bins: usize, data: &[f32], lo: f32, hi: f32) -> MelStrip {
    let span = (hi - lo).max(1e-3);
    MelStrip {
        frames,
        bins,
        data: data
            .iter()
            .map(|&v| ((v - lo) / span * 255.0).clamp(0.0, 255.0) as u8)
            .collect(),
    }
}

pub(super) fn throughput(rate: &mut VecDeque<(Instant, u64)>, r: &Report) -> Throughput {
    let now = Instant::now();
    rate.push_back((now, r.windows_inferred));
    while rate
        .front()
        .is_some_and(|(t, _)| now.duration_since(*t).as_secs_f64() > 10.0)
        && rate.len() > 2
    {
        rate.pop_front();
    }
    let windows_per_s = match (rate.front(), rate.back()) {
        (Some((t0, n0)), Some((t1, n1))) if t1 > t0 => {
            (n1 - n0) as f64 / t1.duration_since(*t0).as_secs_f64()
        }
        _ => 0.0,
    };
    let ms = |us: Option<u64>| us.map(|v| v as f64 / 1000.0);
    Throughput {
        windows: r.windows_inferred,
        windows_dropped: r.windows_dropped,
        windows_per_s,
        latency_p50_ms: ms(r.latency_p50_us),
        latency_p99_ms: ms(r.latency_p99_us),
        compute_p50_ms: ms(r.compute_p50_us),
        compute_p99_ms: ms(r.compute_p99_us),
    }
}

pub(super) fn encode_jpeg(f: &RgbFrame) -> Option<Vec<u8>> {
    let (w, h) = (u32::try_from(f.width).ok()?, u32::try_from(f.height).ok()?);
    if f.data.len() != f.width * f.height * 3 || w == 0 || h == 0 {
        return None;
    }
    let mut out = Vec::new();
    image::codecs::jpeg::JpegEncoder::new_with_quality(&mut out, 80)
        .encode(&f.data, w, h, image::ExtendedColorType::Rgb8)
        .ok()?;
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dbfs_of_known_signals() {
        // A full-scale sine has RMS 1/sqrt(2): -3.01 dBFS; a square wave at 0.1: -20 dBFS.
        let sine: Vec<f32> = (0..16000)
            .map(|i| (i as f32 * 2.0 * std::f32::consts::PI * 440.0 / 16000.0).sin())
            .collect();
        assert!((dbfs(&sine).unwrap() + 3.01).abs() < 0.01);
        let square: Vec<f32> = (0..100)
            .map(|i| if i % 2 == 0 { 0.1 } else { -0.1 })
            .collect();
        assert!((dbfs(&square).unwrap() + 20.0).abs() < 1e-3);
        assert_eq!(dbfs(&[]), None);
        assert_eq!(dbfs(&[0.0; 10]), Some(-120.0));
    }

    #[test]
    fn quantize_maps_silence_to_0_and_the_top_to_255() {
        let m = quantize(1, 3, &[-7.0, -2.0, 3.0], -7.0, 3.0);
        assert_eq!(m.data, vec![0, 127, 255]);
    }
}
