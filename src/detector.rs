//! Windows -> tokens -> model -> class probabilities, on the inference thread.
//!
//! Tokenization uses the shared tokenizer (`mbt_core`) built from the model file's own
//! metadata: the daemon has no tokenizer settings of its own, so it cannot drift from what the
//! model was trained on. [`check_model`] refuses, before anything starts, a configuration that
//! cannot feed the model (window too long or short for its audio input, too few frames per
//! window, thresholds for labels it does not have), naming both sides.
//!
//! One-modality windows still run the whole model (its inputs are fixed), with a neutral
//! stand-in for the missing stream: the tokens of silence (the log-mel floor, what training
//! pads audio with) or of a mid-grey picture (zeros after normalisation). Only the present
//! stream's own head is used then (`logits_audio` or `logits_video`), and the result is
//! marked with the modalities it came from.

use std::sync::Arc;
use std::time::Instant;

use mbt_core::audio::AudioTokenizer;
use mbt_core::event::Modalities;
use mbt_core::metadata::ModelMetadata;
use mbt_core::video::VideoTokenizer;
use mbt_core::TokenizeError;

use crate::backend::{softmax_rows, Backend, BackendError};
use crate::clock::Micros;
use crate::config::Config;
use crate::stats::Stats;
use crate::window::Window;
use mbt_media::RgbFrame;

/// A configuration that cannot feed this model.
#[derive(Debug, thiserror::Error)]
#[error("{model}: does not fit the configuration: `{field}` {reason}")]
pub struct ModelMismatch {
    pub model: String,
    pub field: String,
    pub reason: String,
}

/// Checks the configuration (and the video source's frame rate, if there is video) against
/// what the model's metadata says it takes.
pub fn check_model(
    cfg: &Config,
    meta: &ModelMetadata,
    video_fps: Option<f64>,
) -> Result<(), ModelMismatch> {
    let model = cfg.model.path.display().to_string();
    let err = |field: &str, reason: String| ModelMismatch {
        model: model.clone(),
        field: field.to_string(),
        reason,
    };
    let a = &meta.tokenizer.audio;
    let samples = (cfg.window.length_s * a.sample_rate as f64).round() as usize;
    let frames = a.frames_for(samples);
    if a.front_end == mbt_core::AudioFrontEnd::Yamnet {
        // YAMNet's framing (400-sample frames every 160) over the window must fill the
        // model's `num_frames` with signal, and not leave a whole patch hop unused.
        if frames < a.num_frames || frames >= a.num_frames + a.patch_hop {
            let lo = a.window_size() + (a.num_frames - 1) * a.window_shift();
            let hi = a.window_size() + (a.num_frames + a.patch_hop - 1) * a.window_shift() - 1;
            return Err(err(
                "window.length_s",
                format!(
                    "= {} s gives {frames} log-mel frames, but the model's audio input takes {} (mbt.tokenizer audio.num_frames, YAMNet front end): use a window of {:.3}-{:.3} s",
                    cfg.window.length_s,
                    a.num_frames,
                    lo as f64 / a.sample_rate as f64,
                    hi as f64 / a.sample_rate as f64
                ),
            ));
        }
    }
    let patches = frames.div_ceil(a.patch_time);
    let want = a.num_frames / a.patch_time;
    if a.front_end == mbt_core::AudioFrontEnd::Kaldi && (frames > a.num_frames || patches != want) {
        // The window lengths that fill exactly the model's patch rows.
        let lo = a.window_size() + (a.num_frames - a.patch_time) * a.window_shift();
        let hi = a.window_size() + (a.num_frames - 1) * a.window_shift() + a.window_shift() - 1;
        return Err(err(
            "window.length_s",
            format!(
                "= {} s gives {frames} log-mel frames, but the model's audio input takes {} (mbt.tokenizer audio.num_frames, in patches of {}): use a window of {:.3}-{:.3} s",
                cfg.window.length_s,
                a.num_frames,
                a.patch_time,
                lo as f64 / a.sample_rate as f64,
                hi as f64 / a.sample_rate as f64
            ),
        ));
    }
    if cfg.video.source != "none" {
        if let Some(fps) = video_fps {
            let per_window = fps * cfg.window.length_s;
            let t = meta.tokenizer.video.num_frames;
            if per_window + 1e-9 < t as f64 {
                let field = if cfg.video.source == "replay" {
                    "replay.fps"
                } else {
                    "video.fps"
                };
                return Err(err(
                    field,
                    format!(
                        "= {fps} gives {per_window:.1} frames per {} s window, but the model samples {t} (mbt.tokenizer video.num_frames)",
                        cfg.window.length_s
                    ),
                ));
            }
        }
    }
    for label in cfg.events.labels.keys() {
        if !meta.labels.contains(label) {
            return Err(err(
                &format!("events.labels.{label}"),
                format!(
                    "names a label the model does not have (its labels: {:?})",
                    meta.labels
                ),
            ));
        }
    }
    Ok(())
}

/// A window's class probabilities (softmax of the logits), in the model's label order.
#[derive(Debug, Clone, PartialEq)]
pub struct Scored {
    pub index: u64,
    pub start_us: Micros,
    pub end_us: Micros,
    pub modalities: Modalities,
    /// Fused head with both streams; with one stream, that stream's own head.
    pub fused: Vec<f32>,
    pub audio: Option<Vec<f32>>,
    pub video: Option<Vec<f32>>,
    /// What the window held, for evidence files ([`Detector::keep_media`]); empty otherwise.
    pub media: WindowMedia,
}

/// A scored window's key frame and audio, kept only when evidence is on (moved out of the
/// window, not copied: the frame is shared, the samples change hands).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct WindowMedia {
    /// The middle one of the frames the model saw.
    pub key_frame: Option<Arc<RgbFrame>>,
    /// `(sample rate, mono samples)` of the whole window.
    pub audio: Option<(u32, Arc<Vec<f32>>)>,
}

pub struct Detector {
    backend: Box<dyn Backend>,
    audio_tok: AudioTokenizer,
    video_tok: VideoTokenizer,
    silence: Vec<f32>,
    grey: Vec<f32>,
    classes: usize,
    keep_media: bool,
}

#[derive(Debug, thiserror::Error)]
pub enum DetectorError {
    #[error("the model's tokenizer settings are unusable: {0}")]
    Tokenizer(#[from] TokenizeError),
    #[error(transparent)]
    Backend(#[from] BackendError),
}

impl Detector {
    pub fn new(backend: Box<dyn Backend>) -> Result<Self, DetectorError> {
        let meta = backend.metadata().clone();
        let audio_tok = AudioTokenizer::new(meta.tokenizer.audio.clone())?;
        let video_tok = VideoTokenizer::new(meta.tokenizer.video.clone())?;
        let rate = meta.tokenizer.audio.sample_rate;
        let silence = audio_tok.tokenize(&vec![0.0; rate as usize], rate)?.data;
        let ((vt, vp), _) = backend.input_shapes();
        Ok(Detector {
            classes: meta.labels.len(),
            backend,
            audio_tok,
            video_tok,
            silence,
            grey: vec![0.0; vt * vp],
            keep_media: false,
        })
    }

    /// Keep each window's key frame and audio in its [`Scored::media`] (for evidence files).
    pub fn keep_media(&mut self, on: bool) {
        self.keep_media = on;
    }

    pub fn backend_name(&self) -> String {
        self.backend.name()
    }

    pub fn metadata(&self) -> &ModelMetadata {
        self.backend.metadata()
    }

    pub fn max_batch(&self) -> usize {
        self.backend.max_batch()
    }

    /// Tokenizes and runs a batch of windows. Windows that cannot be tokenized are skipped and
    /// counted; a failing backend fails the whole batch (returned as the error).
    pub fn run(
        &mut self,
        windows: Vec<Window>,
        stats: &Stats,
    ) -> Result<Vec<Scored>, BackendError> {
        let t0 = Instant::now();
        let mut video = Vec::new();
        let mut audio = Vec::new();
        let mut kept = Vec::new();
        for w in windows {
            let a = match &w.audio {
                Some(wa) => match self.audio_tok.tokenize(&wa.samples, wa.rate) {
                    Ok(t) => Some(t.data),
                    Err(e) => {
                        tracing::warn!("window {}: audio skipped: {e}", w.index);
                        None
                    }
                },
                None => None,
            };
            let v = match &w.video {
                Some(frames) => {
                    let views: Vec<_> = frames.iter().map(|f| f.as_frame()).collect();
                    match self.video_tok.tokenize_window(&views) {
                        Ok(t) => Some(t.data),
                        Err(e) => {
                            tracing::warn!("window {}: video skipped: {e}", w.index);
                            None
                        }
                    }
                }
                None => None,
            };
            let modalities = Modalities {
                audio: a.is_some(),
                video: v.is_some(),
            };
            if !modalities.audio && !modalities.video {
                if w.audio.is_some() || w.video.is_some() {
                    Stats::inc(&stats.windows_failed);
                }
                continue;
            }
            audio.extend_from_slice(a.as_deref().unwrap_or(&self.silence));
            video.extend_from_slice(v.as_deref().unwrap_or(&self.grey));
            let media = if self.keep_media {
                WindowMedia {
                    key_frame: w
                        .video
                        .as_ref()
                        .filter(|_| modalities.video)
                        .and_then(|f| f.get(f.len() / 2).cloned()),
                    audio: w
                        .audio
                        .filter(|_| modalities.audio)
                        .map(|wa| (wa.rate, Arc::new(wa.samples))),
                }
            } else {
                WindowMedia::default()
            };
            kept.push((w.index, w.start_us, w.end_us, modalities, media));
        }
        if kept.is_empty() {
            return Ok(Vec::new());
        }
        let n = kept.len();
        let logits = self.backend.run(n, &video, &audio)?;
        let c = self.classes;
        let (pf, pa, pv) = (
            softmax_rows(&logits.fused, c),
            softmax_rows(&logits.audio, c),
            softmax_rows(&logits.video, c),
        );
        Stats::inc(&stats.batches);
        Stats::add(&stats.windows_inferred, n as u64);
        Stats::add(&stats.infer_us, t0.elapsed().as_micros() as u64);
        Ok(kept
            .into_iter()
            .enumerate()
            .map(|(i, (index, start_us, end_us, m, media))| {
                let row = |p: &[f32]| p[i * c..(i + 1) * c].to_vec();
                let (a, v) = (m.audio.then(|| row(&pa)), m.video.then(|| row(&pv)));
                let fused = match (m.audio, m.video) {
                    (true, true) => row(&pf),
                    (true, false) => row(&pa),
                    _ => row(&pv),
                };
                Scored {
                    index,
                    start_us,
                    end_us,
                    modalities: m,
                    fused,
                    audio: a,
                    video: v,
                    media,
                }
            })
            .collect())
    }
}
