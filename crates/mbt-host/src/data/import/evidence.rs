//! An `mbtd` evidence event (its key frame, the window's audio and the event's JSON record)
//! as one still clip: the key frame repeated over the clip's frames, the audio padded to 2 s,
//! the event's fields kept in the manifest line.

use std::collections::BTreeMap;
use std::path::Path;

use anyhow::{bail, Context, Result};
use mbt_media::RgbFrame;
use serde_json::json;

use super::super::pool::Split;
use super::super::render::{FRAMES, RATE, SAMPLES};
use super::clip::{file_sha256, Imported, Writer};
use super::ffmpeg;
use super::inputs::Item;

pub(super) fn import_evidence(
    item: &Item,
    ix: usize,
    split: Split,
    w: &Writer,
    jpg: &Path,
    wav: &Path,
    json_path: &Path,
) -> Result<Imported> {
    for (p, what) in [(jpg, "key frame"), (wav, "audio")] {
        if !p.is_file() {
            bail!(
                "evidence event {}: its {what} {} is missing (a still clip needs the key frame \
                 and the window's audio)",
                item.name,
                p.display()
            );
        }
    }
    let text =
        std::fs::read(json_path).with_context(|| format!("cannot read {}", json_path.display()))?;
    let event: mbt_core::event::Event = serde_json::from_slice(&text).with_context(|| {
        format!(
            "{}: not an mbtd event record (the event's JSON)",
            json_path.display()
        )
    })?;
    let frame = evidence_frame(jpg, w.frame_size)?;
    // The daemon's own WAV at a rate the tokenizer's resampler takes; ffmpeg for anything else.
    let mut audio = match mbt_media::audio::read_mono(wav, RATE) {
        Ok(a) => a,
        Err(_) => ffmpeg::audio(wav, RATE)?,
    };
    if audio.is_empty() {
        bail!("{}: the audio holds no samples", wav.display());
    }
    let seconds = audio.len() as f64 / RATE as f64;
    audio.resize(SAMPLES, 0.0);
    let frames = vec![frame; FRAMES];
    let label = item.primary_label().to_string();
    let id = format!("{}-{ix:04}-0000", split.name());
    let sha = json!({"jpg": file_sha256(jpg)?, "wav": file_sha256(wav)?, "json": file_sha256(json_path)?});
    let mut extra = serde_json::Map::new();
    extra.insert(
        "source".into(),
        json!({"file": item.name, "material": "evidence", "sha256": sha, "event": {
            "id": event.id, "label": event.label, "score": event.score,
            "start_s": event.start_s, "model_version": event.model_version}}),
    );
    let line = w.write(split, &id, &label, &audio, &frames, extra)?;
    Ok(Imported {
        lines: vec![line],
        clips: BTreeMap::from([(label, 1)]),
        skipped: BTreeMap::new(),
        seconds,
        note: sha,
    })
}

/// An evidence key frame at the clip size: decoded in process and resized with the
/// tokenizer's own resize-and-centre-crop (the daemon's JPEG, the daemon's resize), falling
/// back to ffmpeg for a picture the in-process decoder refuses. In process because three
/// ffmpeg runs per event made 100 events take 27 s.
fn evidence_frame(jpg: &Path, size: usize) -> Result<RgbFrame> {
    let Ok(f) = mbt_media::frames::read_image(jpg) else {
        return ffmpeg::still_frame(jpg, size);
    };
    if f.width == 0 || f.height == 0 {
        bail!("{}: the key frame is empty (0 pixels)", jpg.display());
    }
    let plan = mbt_core::video::resize::ResizeCrop::plan(f.width, f.height, size, size, size);
    let img = plan.apply(&f.as_frame());
    Ok(RgbFrame {
        width: img.width,
        height: img.height,
        data: img
            .data
            .iter()
            .map(|v| (v * 255.0).round().clamp(0.0, 255.0) as u8)
            .collect(),
    })
}
