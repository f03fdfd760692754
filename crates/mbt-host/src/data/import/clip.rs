//! Where every kind of input ends: one clip's 16 kHz WAV and Motion JPEG written into its
//! split's folder and its manifest line returned ([`Writer`]), what importing one real
//! recording gave ([`Imported`]), and the sha256 of a source file for the manifest.

use std::collections::BTreeMap;
use std::path::Path;

use anyhow::{Context, Result};
use mbt_media::RgbFrame;
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

use super::super::build::{hex, wav_bytes, JPEG_QUALITY};
use super::super::pool::Split;
use super::super::render::{FPS, FRAMES, RATE};

pub(super) fn file_sha256(path: &Path) -> Result<String> {
    let mut f =
        std::fs::File::open(path).with_context(|| format!("cannot read {}", path.display()))?;
    let mut h = Sha256::new();
    std::io::copy(&mut f, &mut h).with_context(|| format!("cannot read {}", path.display()))?;
    Ok(h.finalize().iter().map(|b| format!("{b:02x}")).collect())
}

/// Writes one clip; returns the manifest fields of its files.
pub(super) struct Writer<'a> {
    pub(super) out: &'a Path,
    pub(super) labels: &'a [String],
    pub(super) seed: u64,
    /// Square frame size of every clip.
    pub(super) frame_size: usize,
}

impl Writer<'_> {
    pub(super) fn write(
        &self,
        split: Split,
        id: &str,
        label: &str,
        audio: &[f32],
        frames: &[RgbFrame],
        mut extra: serde_json::Map<String, Value>,
    ) -> Result<String> {
        let wav = wav_bytes(audio)?;
        let video = mbt_media::mjpeg::encode(frames, FPS, JPEG_QUALITY)
            .with_context(|| format!("clip {id}: encoding its frames"))?;
        let (ar, vr) = (
            format!("{}/{id}.wav", split.name()),
            format!("{}/{id}.mjpeg", split.name()),
        );
        for (rel, bytes) in [(&ar, &wav), (&vr, &video)] {
            let p = self.out.join(rel);
            std::fs::write(&p, bytes).with_context(|| format!("cannot write {}", p.display()))?;
        }
        let mut line = json!({
            "id": id,
            "split": split.name(),
            "label": label,
            "label_index": self.labels.iter().position(|l| l == label),
            "audio": ar,
            "video": vr,
            "audio_sha256": hex(&wav),
            "video_sha256": hex(&video),
            "sample_rate": RATE, "fps": FPS, "frames": FRAMES, "width": self.frame_size, "height": self.frame_size,
            "seed": self.seed,
        });
        if let Some(m) = line.as_object_mut() {
            m.append(&mut extra);
        }
        Ok(line.to_string())
    }
}

/// What importing one real recording gave.
pub(super) struct Imported {
    pub(super) lines: Vec<String>,
    pub(super) clips: BTreeMap<String, usize>,
    pub(super) skipped: BTreeMap<&'static str, usize>,
    pub(super) seconds: f64,
    pub(super) note: Value,
}
