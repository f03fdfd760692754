//! A video with sound: decoded with ffmpeg, checked against its container's length and its
//! rows' spans, cut into 2 s windows every `--hop` seconds, each window labelled from the
//! spans (`windows.rs`) and written as a clip.

use std::collections::BTreeMap;

use anyhow::{bail, Result};
use mbt_media::RgbFrame;
use serde_json::{json, Value};

use super::super::pool::Split;
use super::super::render::{FPS, FRAMES, RATE, SAMPLES, SECONDS};
use super::clip::{Imported, Writer};
use super::ffmpeg;
use super::inputs::Item;
use super::windows::{self, Outcome};

/// Audio and frames of the window starting at `t`: samples past the end are silence, frames
/// past the end repeat the last one.
fn cut(audio: &[f32], frames: &[RgbFrame], t: f64) -> Option<(Vec<f32>, Vec<RgbFrame>)> {
    let a0 = (t * RATE as f64).round() as usize;
    let mut a: Vec<f32> = audio.iter().skip(a0).take(SAMPLES).copied().collect();
    a.resize(SAMPLES, 0.0);
    let f0 = (t * FPS as f64).round() as usize;
    let last = frames.len().checked_sub(1)?;
    let f = (f0..f0 + FRAMES)
        .map(|i| frames[i.min(last)].clone())
        .collect();
    Some((a, f))
}

/// Cuts one video with sound into labelled windows and writes them.
#[allow(clippy::too_many_arguments)]
pub(super) fn import_video(
    item: &Item,
    ix: usize,
    split: Split,
    w: &Writer,
    hop: f64,
    background: Option<&str>,
    sha: &str,
    container_s: Option<f64>,
) -> Result<Imported> {
    let audio = ffmpeg::audio(&item.path, RATE)?;
    let frames = ffmpeg::frames(&item.path, FPS, w.frame_size)?;
    let dur = (audio.len() as f64 / RATE as f64).min(frames.len() as f64 / FPS as f64);
    if let Some(full) = container_s {
        if full > 3.0 && dur < 0.9 * full - 0.5 {
            bail!(
                "{}: decoding stopped at {dur:.2} s of {full:.2} s (truncated or corrupt \
                 stream?)",
                item.name
            );
        }
    }
    for s in &item.segments {
        if let Some((a, _)) = s.span {
            if a >= dur {
                bail!(
                    "{}: a row starts at {a} s, but the file is {dur:.2} s long",
                    item.name
                );
            }
        }
    }
    let starts = windows::starts(dur, hop);
    if starts.is_empty() {
        bail!(
            "{}: {dur:.2} s of sound and picture, shorter than one {SECONDS} s window",
            item.name
        );
    }
    let mut out = Imported {
        lines: Vec::new(),
        clips: BTreeMap::new(),
        skipped: BTreeMap::new(),
        seconds: dur,
        note: Value::Null,
    };
    for (wi, &t) in starts.iter().enumerate() {
        let label = match windows::label_window(t, &item.segments, background) {
            Outcome::Labelled(l) => l,
            other => {
                let why = match other {
                    Outcome::Partial => "partly_in_a_span",
                    Outcome::Conflict => "two_labels",
                    _ => "background",
                };
                *out.skipped.entry(why).or_default() += 1;
                continue;
            }
        };
        let Some((a, f)) = cut(&audio, &frames, t) else {
            bail!("{}: no frames decoded", item.name);
        };
        let id = format!("{}-{ix:04}-{wi:04}", split.name());
        let mut extra = serde_json::Map::new();
        extra.insert(
            "source".into(),
            json!({"file": item.name, "material": "video", "sha256": sha, "start_s": t}),
        );
        out.lines.push(w.write(split, &id, &label, &a, &f, extra)?);
        *out.clips.entry(label).or_default() += 1;
    }
    if out.lines.is_empty() {
        bail!(
            "{}: none of its {} windows ({dur:.2} s, hop {hop} s) is labelled ({}); widen the \
             start/end times, use a smaller --hop, or --background-label none",
            item.name,
            starts.len(),
            out.skipped
                .iter()
                .map(|(k, v)| format!("{v} {}", k.replace('_', " ")))
                .collect::<Vec<_>>()
                .join(", ")
        );
    }
    Ok(out)
}
