//! Reading an `mbt data build` directory into memory, and turning clips into model tokens with
//! the shared tokenizer (mbt-core), with or without training augmentation.
//!
//! A clip is kept as its raw log-mel (before padding and normalisation) and its decoded RGB
//! frames, so augmentation happens on the signals the tokenizer sees (SpecAugment on the
//! spectrogram, crop/flip/jitter on the frames) and the tokens always come from the same
//! mbt-core functions the daemon runs: no train/serve skew.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context};
use mbt_core::audio::{spectrogram, AudioTokenizer, LogMel};
use mbt_core::video::{Frame, VideoTokenizer};
use mbt_core::TokenizerConfig;
use rayon::prelude::*;
use serde::Deserialize;
use sha2::{Digest, Sha256};

use super::augment::{self, AugmentPlan};

/// One line of `manifest.jsonl` (the fields training needs; the rest is ignored).
#[derive(Debug, Deserialize)]
struct Entry {
    id: String,
    split: String,
    label: String,
    audio: String,
    video: String,
    /// The generator's parameters; training with `stream_targets = "kinds"` reads the kinds
    /// heard (`params.audio.sounds[].kind`) and seen (`params.video.objects[].kind`).
    #[serde(default)]
    params: Option<Params>,
}

#[derive(Debug, Deserialize)]
struct Params {
    audio: AudioParams,
    video: VideoParams,
}

#[derive(Debug, Deserialize)]
struct AudioParams {
    sounds: Vec<Perceived>,
}

#[derive(Debug, Deserialize)]
struct VideoParams {
    objects: Vec<Perceived>,
}

/// A sound or an object: only its kind matters here.
#[derive(Debug, Deserialize)]
struct Perceived {
    kind: String,
}

/// The labels a perceived kind could make: the kind's event label(s) (a door sound or picture
/// alone cannot tell slammed from softly closed), and `none` always (the other modality may
/// not share the kind).
fn candidates(kinds: &[&str], labels: &[String]) -> Vec<usize> {
    let mut out: Vec<usize> = Vec::new();
    let mut add = |name: &str| {
        if let Some(i) = labels.iter().position(|l| l == name) {
            if !out.contains(&i) {
                out.push(i);
            }
        }
    };
    for kind in kinds {
        for label in crate::data::spec::Class::labels_of_kind(kind) {
            add(label);
        }
    }
    add("none");
    out.sort_unstable();
    out
}

/// A decoded clip.
pub struct Clip {
    pub id: String,
    pub label: usize,
    /// Per stream (video, audio): the labels what that stream perceives could make, when the
    /// manifest records the generator's parameters.
    pub candidates: Option<[Vec<usize>; 2]>,
    /// Raw log-mel, unpadded (frames x bins).
    pub log_mel: LogMel,
    pub width: usize,
    pub height: usize,
    /// Every frame of the clip, RGB, row-major.
    pub frames: Vec<Vec<u8>>,
}

/// One split of a data set, decoded.
pub struct Split {
    pub name: String,
    pub clips: Vec<Clip>,
}

/// A data set directory: its manifest's hash identifies the data a model was trained on.
pub struct DataSet {
    pub dir: PathBuf,
    pub manifest_sha256: String,
    entries: Vec<Entry>,
}

impl DataSet {
    pub fn open(dir: &Path, labels: &[String]) -> anyhow::Result<Self> {
        let path = dir.join("manifest.jsonl");
        let text = std::fs::read(&path).with_context(|| {
            format!(
                "cannot read {} (build a data set with `mbt data build --out {}`)",
                path.display(),
                dir.display()
            )
        })?;
        let manifest_sha256 = hex(&Sha256::digest(&text));
        let text = String::from_utf8(text)
            .with_context(|| format!("{}: not UTF-8 text", path.display()))?;
        let mut entries = Vec::new();
        for (i, line) in text.lines().enumerate() {
            if line.trim().is_empty() {
                continue;
            }
            let e: Entry = serde_json::from_str(line)
                .with_context(|| format!("{} line {}: not a clip entry", path.display(), i + 1))?;
            if !labels.contains(&e.label) {
                bail!(
                    "{} line {} ({}): label `{}` is not one of the model's labels {:?}",
                    path.display(),
                    i + 1,
                    e.id,
                    e.label,
                    labels
                );
            }
            entries.push(e);
        }
        if entries.is_empty() {
            bail!("{}: no clips", path.display());
        }
        Ok(DataSet {
            dir: dir.to_path_buf(),
            manifest_sha256,
            entries,
        })
    }

    /// Decodes every clip of `split` (in manifest order), in parallel.
    pub fn load(
        &self,
        split: &str,
        labels: &[String],
        tok: &TokenizerConfig,
        limit: Option<usize>,
    ) -> anyhow::Result<Split> {
        let audio = AudioTokenizer::new(tok.audio.clone())?;
        let mut wanted: Vec<&Entry> = self.entries.iter().filter(|e| e.split == split).collect();
        if let Some(n) = limit {
            wanted.truncate(n);
        }
        if wanted.is_empty() {
            bail!(
                "{}: the manifest has no `{split}` clips",
                self.dir.join("manifest.jsonl").display()
            );
        }
        let clips = wanted
            .par_iter()
            .map(|e| self.decode(e, labels, &audio))
            .collect::<anyhow::Result<Vec<_>>>()?;
        let (w, h, n) = (clips[0].width, clips[0].height, clips[0].frames.len());
        if let Some(c) = clips
            .iter()
            .find(|c| (c.width, c.height, c.frames.len()) != (w, h, n))
        {
            bail!(
                "clip {}: {} frames of {}x{}, but {} has {n} frames of {w}x{h}; a split must be uniform",
                c.id,
                c.frames.len(),
                c.width,
                c.height,
                clips[0].id
            );
        }
        if n < tok.video.num_frames {
            bail!(
                "clip {}: {n} frames, but the model's tokenizer samples {} (tokenizer.video.num_frames)",
                clips[0].id,
                tok.video.num_frames
            );
        }
        Ok(Split {
            name: split.to_string(),
            clips,
        })
    }

    /// Indices of `split`'s entries in manifest order (the first `limit` of them).
    pub fn entries(&self, split: &str, limit: Option<usize>) -> anyhow::Result<Vec<usize>> {
        let mut v: Vec<usize> = (0..self.entries.len())
            .filter(|&i| self.entries[i].split == split)
            .collect();
        if let Some(n) = limit {
            v.truncate(n);
        }
        if v.is_empty() {
            bail!(
                "{}: the manifest has no `{split}` clips",
                self.dir.join("manifest.jsonl").display()
            );
        }
        Ok(v)
    }

    /// Whether the manifest has clips of `split`.
    pub fn has_split(&self, split: &str) -> bool {
        self.entries.iter().any(|e| e.split == split)
    }

    /// The label index (in `labels`) of each of `split`'s first `limit` entries, in manifest
    /// order: what a feature cache's header must say for these labels (a cache records
    /// indices, and the same data set may be read with a longer label list, e.g. after
    /// personalisation added labels).
    pub fn label_indices(
        &self,
        split: &str,
        limit: Option<usize>,
        labels: &[String],
    ) -> anyhow::Result<Vec<usize>> {
        self.entries(split, limit)?
            .into_iter()
            .map(|i| {
                let e = &self.entries[i];
                labels.iter().position(|l| *l == e.label).ok_or_else(|| {
                    anyhow::anyhow!(
                        "{}: clip {} has label `{}`, not one of {:?}",
                        self.dir.join("manifest.jsonl").display(),
                        e.id,
                        e.label,
                        labels
                    )
                })
            })
            .collect()
    }

    /// Decodes entry `index` (from [`DataSet::entries`]).
    pub fn decode_entry(
        &self,
        index: usize,
        labels: &[String],
        audio: &AudioTokenizer,
    ) -> anyhow::Result<Clip> {
        let Some(e) = self.entries.get(index) else {
            bail!("no manifest entry {index}");
        };
        self.decode(e, labels, audio)
    }

    fn decode(&self, e: &Entry, labels: &[String], audio: &AudioTokenizer) -> anyhow::Result<Clip> {
        let wav_path = self.dir.join(&e.audio);
        let wav = mbt_media::wav::read(&wav_path)
            .with_context(|| format!("clip {}: audio {}", e.id, wav_path.display()))?;
        let mono = wav.to_mono();
        if mono.is_empty() {
            bail!("clip {}: audio {} is empty", e.id, wav_path.display());
        }
        let log_mel = audio
            .log_mel(&mono, wav.sample_rate)
            .with_context(|| format!("clip {}: audio {}", e.id, wav_path.display()))?;
        let video_path = self.dir.join(&e.video);
        let frames = mbt_media::frames::load(&video_path)
            .with_context(|| format!("clip {}: video {}", e.id, video_path.display()))?;
        let Some(first) = frames.first() else {
            bail!(
                "clip {}: video {} has no frames",
                e.id,
                video_path.display()
            );
        };
        let (width, height) = (first.width, first.height);
        let label = labels.iter().position(|l| *l == e.label).unwrap_or(0);
        Ok(Clip {
            id: e.id.clone(),
            label,
            candidates: e.params.as_ref().map(|p| p.candidates(labels)),
            log_mel,
            width,
            height,
            frames: frames.into_iter().map(|f| f.data).collect(),
        })
    }
}

impl Params {
    /// Per stream (video, audio): the labels what it perceives could make.
    fn candidates(&self, labels: &[String]) -> [Vec<usize>; 2] {
        let seen: Vec<&str> = self.video.objects.iter().map(|o| o.kind.as_str()).collect();
        let heard: Vec<&str> = self.audio.sounds.iter().map(|s| s.kind.as_str()).collect();
        [candidates(&seen, labels), candidates(&heard, labels)]
    }
}

/// A clip from signals in memory (a fresh render): what [`DataSet::load`] would make of the
/// same audio and frames written to disk and read back. `params` are the generator's.
#[allow(clippy::too_many_arguments)]
pub fn clip_from_signals(
    id: String,
    label: usize,
    params: &serde_json::Value,
    samples: &[f32],
    sample_rate: u32,
    frames: Vec<mbt_media::RgbFrame>,
    labels: &[String],
    audio: &AudioTokenizer,
) -> anyhow::Result<Clip> {
    let params = Params::deserialize(params)
        .with_context(|| format!("clip {id}: generator parameters without sounds/objects"))?;
    let log_mel = audio
        .log_mel(samples, sample_rate)
        .with_context(|| format!("clip {id}: audio"))?;
    let Some(first) = frames.first() else {
        bail!("clip {id}: no frames");
    };
    let (width, height) = (first.width, first.height);
    Ok(Clip {
        candidates: Some(params.candidates(labels)),
        id,
        label,
        log_mel,
        width,
        height,
        frames: frames.into_iter().map(|f| f.data).collect(),
    })
}

pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Turns clips into the model's two token matrices with the shared tokenizer.
pub struct Tokenizer {
    pub cfg: TokenizerConfig,
    video: VideoTokenizer,
    audio: AudioTokenizer,
}

impl Tokenizer {
    pub fn new(cfg: &TokenizerConfig) -> anyhow::Result<Self> {
        Ok(Tokenizer {
            cfg: cfg.clone(),
            video: VideoTokenizer::new(cfg.video.clone())?,
            audio: AudioTokenizer::new(cfg.audio.clone())?,
        })
    }

    /// Audio tokens `[tokens, patch]` of a clip, after the plan's shift and masks (Kaldi
    /// patches, normalised; or YAMNet patches, which are not normalised).
    pub fn audio(&self, clip: &Clip, plan: &AugmentPlan) -> anyhow::Result<Vec<f32>> {
        let a = &self.cfg.audio;
        let floor = a.silence();
        let shifted = augment::shift(&clip.log_mel, plan.time_shift, floor);
        let mut fixed = spectrogram::pad_or_crop(&shifted, a.num_frames, floor);
        let kaldi = a.front_end == mbt_core::AudioFrontEnd::Kaldi;
        let mask_value = if kaldi { a.norm_mean } else { floor };
        augment::spec_masks(&mut fixed, &plan.time_masks, &plan.freq_masks, mask_value);
        let spec = if kaldi {
            spectrogram::normalize(fixed, a.norm_mean, a.norm_std)
        } else {
            fixed
        };
        let t = self
            .audio
            .patches(&spec)
            .with_context(|| format!("clip {}", clip.id))?;
        Ok(t.data)
    }

    /// Video tokens `[tokens, patch]` of a clip: the plan's frames, crop, flip and jitter.
    pub fn video(&self, clip: &Clip, plan: &AugmentPlan) -> anyhow::Result<Vec<f32>> {
        let picked =
            augment::frame_indices(clip.frames.len(), self.cfg.video.num_frames, plan.phase);
        let images: Vec<mbt_media::RgbFrame> = picked
            .iter()
            .map(|&i| augment::frame(&clip.frames[i], clip.width, clip.height, plan))
            .collect();
        let frames: Vec<Frame> = images.iter().map(|f| f.as_frame()).collect();
        let t = self
            .video
            .tokenize_frames(&frames)
            .with_context(|| format!("clip {}", clip.id))?;
        Ok(t.data)
    }
}
