//! The trunk feature cache: with frozen pretrained trunks, each clip's trunk outputs never
//! change, so `mbt train` computes them once (tract, the same trunk parts the exported file
//! holds) and every epoch then costs only the fusion part.
//!
//! Per clip the cache holds the audio cells of every log-mel patch of the clip (`[P, 6,
//! 1024]`) and the video cells of **every** frame of the clip (`[F, cells, 1280]`, F = the
//! clip's frame count, 16 in data v2; with `trunks.finetune_last` the cells one layer earlier,
//! `[F, 16, 320]` unpooled), so training can still draw which frames a window samples
//! (the frame phase) and evaluation can average over phases. Values are stored as f16 (the
//! trunks' outputs are post-ReLU activations of a few units; f16 keeps 3 significant digits).
//!
//! Layout on disk, one directory per (data set, trunks, tokenizer) key under
//! `DATA/features/<key>/`: `<split>.json` (ids, labels, candidate labels, shapes) and
//! `<split>.f16` (audio block then video block, little-endian). The key hashes the manifest,
//! the trunks' sha256 and the tokenizer settings, so a stale cache is never read.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{bail, Context};
use half::f16;
use mbt_core::audio::AudioTokenizer;
use mbt_core::video::{Frame, VideoTokenizer};
use mbt_infer::parts::Part;
use mbt_model::export::compose::{self, Part as Which};
use mbt_model::train::Batch;
use mbt_model::ModelConfig;
use rayon::prelude::*;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::augment::frame_indices;
use super::dataset::{hex, DataSet};

/// One split's cached features, in memory.
pub struct FeatureSplit {
    pub name: String,
    pub header: Header,
    /// `[clips, audio_rows * audio_dim]`, f16 bits.
    audio: Vec<u16>,
    /// `[clips, frames * video_cells * video_dim]`, f16 bits.
    video: Vec<u16>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Header {
    pub ids: Vec<String>,
    pub labels: Vec<usize>,
    pub candidates: Vec<Option<[Vec<usize>; 2]>>,
    /// Audio tokens per clip and channels.
    pub audio_tokens: usize,
    pub audio_dim: usize,
    /// Frames cached per clip, tokens per frame and channels.
    pub frames: usize,
    pub video_cells: usize,
    pub video_dim: usize,
    pub seconds: f64,
}

impl FeatureSplit {
    /// Number of clips.
    pub fn clips(&self) -> usize {
        self.header.ids.len()
    }

    /// A batch of clips `idx`, each with its frame phase: video `[n, T * cells, Cv]` (the
    /// model's `T` frames picked as the tokenizer would), audio `[n, Ta, Ca]`, one-hot
    /// targets, and the per-stream candidate targets when `stream_kinds`.
    pub fn batch(
        &self,
        cfg: &ModelConfig,
        idx: &[usize],
        phases: &[usize],
        stream_kinds: bool,
    ) -> anyhow::Result<Batch> {
        let h = &self.header;
        let classes = cfg.num_classes();
        let t = cfg.tokenizer.video.num_frames;
        let frame_len = h.video_cells * h.video_dim;
        let clip_v = h.frames * frame_len;
        let clip_a = h.audio_tokens * h.audio_dim;
        let mut video = Vec::with_capacity(idx.len() * t * frame_len);
        let mut audio = Vec::with_capacity(idx.len() * clip_a);
        let mut targets = vec![0f32; idx.len() * classes];
        let mut stream_targets = if stream_kinds {
            vec![vec![0f32; idx.len() * classes]; 2]
        } else {
            Vec::new()
        };
        for (j, (&i, &phase)) in idx.iter().zip(phases).enumerate() {
            for f in frame_indices(h.frames, t, phase) {
                let o = i * clip_v + f * frame_len;
                video.extend(
                    self.video[o..o + frame_len]
                        .iter()
                        .map(|&b| f16::from_bits(b).to_f32()),
                );
            }
            audio.extend(
                self.audio[i * clip_a..(i + 1) * clip_a]
                    .iter()
                    .map(|&b| f16::from_bits(b).to_f32()),
            );
            targets[j * classes + h.labels[i]] = 1.0;
            if stream_kinds {
                let Some(c) = &h.candidates[i] else {
                    bail!(
                        "clip {}: train.stream_targets = \"kinds\" needs the generator's params in manifest.jsonl",
                        h.ids[i]
                    );
                };
                for (s, cand) in c.iter().enumerate() {
                    for &k in cand {
                        stream_targets[s][j * classes + k] = 1.0;
                    }
                }
            }
        }
        Ok(Batch {
            n: idx.len(),
            inputs: vec![video, audio],
            targets,
            stream_targets,
        })
    }
}

/// Where the cache for `cfg` on `data` lives.
pub fn cache_dir(data: &DataSet, cfg: &ModelConfig) -> PathBuf {
    let mut h = Sha256::new();
    h.update(data.manifest_sha256.as_bytes());
    if let Some(t) = cfg.trunks.audio {
        h.update(t.spec().sha256.as_bytes());
    }
    if let Some(t) = cfg.trunks.video {
        h.update(t.spec().sha256.as_bytes());
    }
    h.update(cfg.trunks.video_pool.to_le_bytes());
    // Cut one layer earlier: other features. (Only hashed when set, so the keys of caches
    // made before the switch existed stay valid.)
    if cfg.trunks.finetune_last {
        h.update(b"finetune_last");
    }
    h.update(
        serde_json::to_string(&cfg.tokenizer)
            .unwrap_or_default()
            .as_bytes(),
    );
    let key = hex(&h.finalize());
    data.dir.join("features").join(&key[..16])
}

/// Loads `split`'s features from the cache, computing and writing them first if absent.
pub fn load_or_build(
    data: &DataSet,
    cfg: &ModelConfig,
    split: &str,
    trunks: &Path,
    limit: Option<usize>,
) -> anyhow::Result<FeatureSplit> {
    if cfg.trunks.audio.is_none() || cfg.trunks.video.is_none() {
        bail!("the feature cache needs a model with both an audio and a video trunk ([trunks] audio and video)");
    }
    let dir = cache_dir(data, cfg);
    let tag = match limit {
        Some(n) => format!("{split}-first{n}"),
        None => split.to_string(),
    };
    let (hp, bp) = (
        dir.join(format!("{tag}.json")),
        dir.join(format!("{tag}.f16")),
    );
    if hp.exists() && bp.exists() {
        let t = Instant::now();
        let header: Header = serde_json::from_slice(
            &std::fs::read(&hp).with_context(|| format!("cannot read {}", hp.display()))?,
        )
        .with_context(|| {
            format!(
                "{}: not a feature cache header (delete it to rebuild)",
                hp.display()
            )
        })?;
        let bytes = std::fs::read(&bp).with_context(|| format!("cannot read {}", bp.display()))?;
        let n = header.ids.len();
        let (na, nv) = (
            n * header.audio_tokens * header.audio_dim,
            n * header.frames * header.video_cells * header.video_dim,
        );
        if bytes.len() != 2 * (na + nv) {
            bail!(
                "{}: {} bytes, expected {} for {n} clips (an interrupted build? delete it to rebuild)",
                bp.display(),
                bytes.len(),
                2 * (na + nv)
            );
        }
        let words: Vec<u16> = bytes
            .chunks_exact(2)
            .map(|c| u16::from_le_bytes([c[0], c[1]]))
            .collect();
        let (audio, video) = words.split_at(na);
        eprintln!(
            "features: {tag} from {} ({n} clips, {:.1} s)",
            dir.display(),
            t.elapsed().as_secs_f64()
        );
        return Ok(FeatureSplit {
            name: split.into(),
            header,
            audio: audio.to_vec(),
            video: video.to_vec(),
        });
    }
    let fs = build(data, cfg, split, trunks, limit)?;
    std::fs::create_dir_all(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let tmp = bp.with_extension("f16.partial");
    {
        let f = std::fs::File::create(&tmp)
            .with_context(|| format!("cannot write {}", tmp.display()))?;
        let mut w = std::io::BufWriter::new(f);
        for v in fs.audio.iter().chain(&fs.video) {
            w.write_all(&v.to_le_bytes())?;
        }
        w.flush()?;
    }
    std::fs::rename(&tmp, &bp)?;
    super::atomic_write(&hp, serde_json::to_string(&fs.header)?.as_bytes())?;
    Ok(fs)
}

/// A trunk part on the runtime the cache uses: ONNX Runtime when its library is there and
/// loads (one single-threaded session per worker thread), else tract. Both run the same graph; they agree
/// within 4e-5 on the trunks (`crates/mbt-infer/tests/trunks.rs`), far below the f16 rounding
/// of the cache, and ONNX Runtime measured 6.8x faster on this model (BENCHMARKS.md).
enum Runner {
    Tract(Part),
    Ort(Vec<std::sync::Mutex<mbt_infer::onnxruntime::OrtPart>>),
}

impl Runner {
    fn new(bytes: &[u8], name: &str, batch: usize) -> anyhow::Result<Self> {
        if std::env::var_os("MBT_FEATURES_TRACT").is_none() {
            if let Ok(lib) = mbt_infer::onnxruntime::reference_library() {
                let threads = rayon::current_num_threads().max(1);
                let sessions = (0..threads)
                    .map(|_| {
                        mbt_infer::onnxruntime::OrtPart::from_bytes(bytes, name, &lib)
                            .map(std::sync::Mutex::new)
                    })
                    .collect::<Result<Vec<_>, _>>();
                // A library that is there but cannot be used (another architecture's copy,
                // a broken install) costs speed, not the run: tract computes the same.
                static WARNED: std::sync::atomic::AtomicBool =
                    std::sync::atomic::AtomicBool::new(false);
                match sessions {
                    Ok(sessions) => return Ok(Runner::Ort(sessions)),
                    Err(e) if !WARNED.swap(true, std::sync::atomic::Ordering::Relaxed) => {
                        eprintln!(
                            "mbt: warning: features: ONNX Runtime is not usable ({e}); the trunks run on tract instead (the same graph, slower)"
                        )
                    }
                    Err(_) => {}
                }
            }
        }
        Ok(Runner::Tract(Part::from_bytes_with_batch(
            bytes,
            name,
            Some(batch),
        )?))
    }

    fn name(&self) -> &'static str {
        match self {
            Runner::Tract(_) => "tract",
            Runner::Ort(_) => "onnxruntime",
        }
    }

    fn run_rows(&self, rows: &[f32], n: usize, dim: usize) -> anyhow::Result<Vec<f32>> {
        match self {
            Runner::Tract(p) => Ok(p.run_rows(rows, n, dim)?),
            Runner::Ort(sessions) => {
                let i = rayon::current_thread_index().unwrap_or(0) % sessions.len();
                let mut s = sessions[i]
                    .lock()
                    .map_err(|_| anyhow::anyhow!("a trunk session panicked"))?;
                Ok(s.run_rows(rows, n, dim)?)
            }
        }
    }
}

/// Runs the trunks over every clip of `split`.
fn build(
    data: &DataSet,
    cfg: &ModelConfig,
    split: &str,
    trunks: &Path,
    limit: Option<usize>,
) -> anyhow::Result<FeatureSplit> {
    let t0 = Instant::now();
    let entries = data.entries(split, limit)?;
    // Plans for exactly one clip's patches and frames (see `Part::from_bytes_with_batch`).
    let first = data.decode_entry(
        entries[0],
        &cfg.labels,
        &AudioTokenizer::new(cfg.tokenizer.audio.clone())?,
    )?;
    let audio_part = Runner::new(
        &compose::trunk_part(cfg, Which::Audio, trunks)?,
        "audio trunk part",
        cfg.tokenizer.audio.token_count(),
    )?;
    let video_part = Runner::new(
        &compose::trunk_part(cfg, Which::Video, trunks)?,
        "video trunk part",
        first.frames.len(),
    )?;
    eprintln!("features: {split}: trunks on {}", audio_part.name());
    let atok = AudioTokenizer::new(cfg.tokenizer.audio.clone())?;
    let (a_rows, a_dim) = (
        cfg.tokenizer.audio.token_count(),
        cfg.tokenizer.audio.token_dim(),
    );
    let streams = cfg.streams();
    let (audio_tokens, audio_dim) = (streams[1].tokens, streams[1].patch_dim);
    let (cells, video_dim) = (cfg.video_input_cells(), streams[0].patch_dim);
    let labels = &cfg.labels;
    let bar = super::progress_bar(entries.len() as u64, 0);
    bar.set_message(format!("trunk features, {split}"));
    let done = std::sync::atomic::AtomicU64::new(0);
    let per_clip = entries
        .par_iter()
        .map(|&e| {
            let clip = data.decode_entry(e, labels, &atok)?;
            // Audio: the model's patches of the clip (the same tokenizer call as the daemon's).
            let frames_a = atok.spectrogram_of(&clip.log_mel);
            let tokens = atok
                .patches(&frames_a)
                .with_context(|| format!("clip {}", clip.id))?;
            if tokens.count != a_rows || tokens.dim != a_dim {
                bail!(
                    "clip {}: {} audio patches, expected {a_rows}",
                    clip.id,
                    tokens.count
                );
            }
            let a = audio_part.run_rows(&tokens.data, tokens.count, tokens.dim)?;
            // Video: every frame of the clip, so any phase can be drawn later.
            let mut vcfg = cfg.tokenizer.video.clone();
            vcfg.num_frames = clip.frames.len();
            let vtok = VideoTokenizer::new(vcfg)?;
            let frames: Vec<Frame> = clip
                .frames
                .iter()
                .map(|f| Frame::rgb(clip.width, clip.height, f))
                .collect();
            let vt = vtok
                .tokenize_frames(&frames)
                .with_context(|| format!("clip {}", clip.id))?;
            let v = video_part.run_rows(&vt.data, vt.count, vt.dim)?;
            let n = done.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            if n % 16 == 0 {
                bar.set_position(n);
            }
            Ok((
                clip.id,
                clip.label,
                clip.candidates,
                clip.frames.len(),
                a.iter()
                    .map(|&x| f16::from_f32(x).to_bits())
                    .collect::<Vec<u16>>(),
                v.iter()
                    .map(|&x| f16::from_f32(x).to_bits())
                    .collect::<Vec<u16>>(),
            ))
        })
        .collect::<anyhow::Result<Vec<_>>>()?;
    bar.finish_and_clear();
    let frames = per_clip.first().map(|c| c.3).unwrap_or(0);
    if let Some(c) = per_clip.iter().find(|c| c.3 != frames) {
        bail!(
            "clip {}: {} frames, but the split's first clip has {frames}; a split must be uniform",
            c.0,
            c.3
        );
    }
    if frames < cfg.tokenizer.video.num_frames {
        bail!(
            "{split}: clips hold {frames} frames, but the model samples {} (tokenizer.video.num_frames)",
            cfg.tokenizer.video.num_frames
        );
    }
    let mut header = Header {
        ids: Vec::new(),
        labels: Vec::new(),
        candidates: Vec::new(),
        audio_tokens,
        audio_dim,
        frames,
        video_cells: cells,
        video_dim,
        seconds: 0.0,
    };
    let (mut audio, mut video) = (Vec::new(), Vec::new());
    for (id, label, cand, _, a, v) in per_clip {
        header.ids.push(id);
        header.labels.push(label);
        header.candidates.push(cand);
        audio.extend(a);
        video.extend(v);
    }
    header.seconds = t0.elapsed().as_secs_f64();
    eprintln!(
        "features: {split}: {} clips through the trunks in {:.1} s ({:.1} ms per clip, {:.0} MB as f16)",
        header.ids.len(),
        header.seconds,
        1e3 * header.seconds / header.ids.len().max(1) as f64,
        2.0 * (audio.len() + video.len()) as f64 / 1e6
    );
    Ok(FeatureSplit {
        name: split.into(),
        header,
        audio,
        video,
    })
}
