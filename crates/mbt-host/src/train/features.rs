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
//!
//! Each clip's cells are written at their own offset as soon as the trunks have run (the
//! file is sized up front), so building holds no split in memory; and a video block larger
//! than [`IN_MEMORY_BYTES`] stays on disk and is read clip by clip. Why: at 224 px with a token
//! per cell (7 x 7 cells of 1280 channels, 16 frames) a clip's video cells are 2 MB, 24 GB for
//! data v3's training split, more than this machine's memory; the page cache keeps what fits.

use std::borrow::Cow;
use std::os::unix::fs::FileExt;
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

/// A video block larger than this stays on disk (read clip by clip); smaller ones are read
/// into memory.
pub const IN_MEMORY_BYTES: u64 = 3 << 30;

/// One split's cached features: the audio block in memory, the video block in memory or on
/// disk.
pub struct FeatureSplit {
    pub name: String,
    pub header: Header,
    /// `[clips, audio_rows * audio_dim]`, f16 bits.
    audio: Vec<u16>,
    /// `[clips, frames * video_cells * video_dim]`, f16 bits.
    video: Block,
}

/// f16 words in memory, or in a file from a byte offset on.
enum Block {
    Memory(Vec<u16>),
    File {
        file: std::fs::File,
        path: PathBuf,
        offset: u64,
    },
}

impl Block {
    /// Words `start..start + len`.
    fn words(&self, start: usize, len: usize) -> anyhow::Result<Cow<'_, [u16]>> {
        match self {
            Block::Memory(v) => Ok(Cow::Borrowed(&v[start..start + len])),
            Block::File { file, path, offset } => {
                let mut bytes = vec![0u8; 2 * len];
                file.read_exact_at(&mut bytes, offset + 2 * start as u64)
                    .with_context(|| format!("cannot read {} (truncated?)", path.display()))?;
                Ok(Cow::Owned(words_of(&bytes)))
            }
        }
    }
}

fn words_of(bytes: &[u8]) -> Vec<u16> {
    bytes
        .chunks_exact(2)
        .map(|c| u16::from_le_bytes([c[0], c[1]]))
        .collect()
}

fn bytes_of(words: &[u16]) -> Vec<u8> {
    words.iter().flat_map(|w| w.to_le_bytes()).collect()
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

    /// Clip `i`'s audio cells, `[audio_tokens, audio_dim]` as f16 bits.
    pub fn clip_audio(&self, i: usize) -> &[u16] {
        let n = self.header.audio_tokens * self.header.audio_dim;
        &self.audio[i * n..(i + 1) * n]
    }

    /// Clip `i`'s video cells, `[frames, video_cells, video_dim]` as f16 bits.
    pub fn clip_video(&self, i: usize) -> anyhow::Result<Cow<'_, [u16]>> {
        let h = &self.header;
        let n = h.frames * h.video_cells * h.video_dim;
        self.video.words(i * n, n)
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
            let clip = self.video.words(i * clip_v, clip_v)?;
            for f in frame_indices(h.frames, t, phase) {
                let o = f * frame_len;
                video.extend(
                    clip[o..o + frame_len]
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
    if !(hp.exists() && bp.exists()) {
        build(data, cfg, split, trunks, limit, &dir, &hp, &bp)?;
    }
    open(split, &tag, &hp, &bp, IN_MEMORY_BYTES)
}

/// Opens a cache's files: the audio block into memory, the video block too when it is at most
/// `in_memory` bytes, else read from the file clip by clip.
fn open(
    split: &str,
    tag: &str,
    hp: &Path,
    bp: &Path,
    in_memory: u64,
) -> anyhow::Result<FeatureSplit> {
    let t = Instant::now();
    let header: Header = serde_json::from_slice(
        &std::fs::read(hp).with_context(|| format!("cannot read {}", hp.display()))?,
    )
    .with_context(|| {
        format!(
            "{}: not a feature cache header (delete it to rebuild)",
            hp.display()
        )
    })?;
    let file = std::fs::File::open(bp).with_context(|| format!("cannot read {}", bp.display()))?;
    let len = file
        .metadata()
        .with_context(|| format!("cannot read {}", bp.display()))?
        .len();
    let n = header.ids.len();
    let (na, nv) = (
        (n * header.audio_tokens * header.audio_dim) as u64,
        (n * header.frames * header.video_cells * header.video_dim) as u64,
    );
    if len != 2 * (na + nv) {
        bail!(
            "{}: {len} bytes, expected {} for {n} clips (an interrupted build? delete it to rebuild)",
            bp.display(),
            2 * (na + nv)
        );
    }
    let read = |offset: u64, words: u64| -> anyhow::Result<Vec<u16>> {
        let mut bytes = vec![0u8; 2 * words as usize];
        file.read_exact_at(&mut bytes, offset)
            .with_context(|| format!("cannot read {}", bp.display()))?;
        Ok(words_of(&bytes))
    };
    let audio = read(0, na)?;
    let video = if 2 * nv <= in_memory {
        Block::Memory(read(2 * na, nv)?)
    } else {
        Block::File {
            file: file.try_clone()?,
            path: bp.to_path_buf(),
            offset: 2 * na,
        }
    };
    eprintln!(
        "features: {tag} from {} ({n} clips, {:.1} s{})",
        hp.parent().unwrap_or(Path::new(".")).display(),
        t.elapsed().as_secs_f64(),
        if matches!(video, Block::File { .. }) {
            format!(
                ", video cells read from disk: {:.1} GB",
                2.0 * nv as f64 / 1e9
            )
        } else {
            String::new()
        }
    );
    Ok(FeatureSplit {
        name: split.into(),
        header,
        audio,
        video,
    })
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

/// Runs the trunks over every clip of `split` and writes the cache files `hp` and `bp` (the
/// cells straight to their offsets in a partial file, renamed when complete).
#[allow(clippy::too_many_arguments)]
fn build(
    data: &DataSet,
    cfg: &ModelConfig,
    split: &str,
    trunks: &Path,
    limit: Option<usize>,
    dir: &Path,
    hp: &Path,
    bp: &Path,
) -> anyhow::Result<()> {
    let t0 = Instant::now();
    let entries = data.entries(split, limit)?;
    // Plans for exactly one clip's patches and frames (see `Part::from_bytes_with_batch`).
    let first = data.decode_entry(
        entries[0],
        &cfg.labels,
        &AudioTokenizer::new(cfg.tokenizer.audio.clone())?,
    )?;
    let frames = first.frames.len();
    if frames < cfg.tokenizer.video.num_frames {
        bail!(
            "{split}: clips hold {frames} frames, but the model samples {} (tokenizer.video.num_frames)",
            cfg.tokenizer.video.num_frames
        );
    }
    let audio_part = Runner::new(
        &compose::trunk_part(cfg, Which::Audio, trunks)?,
        "audio trunk part",
        cfg.tokenizer.audio.token_count(),
    )?;
    let video_part = Runner::new(
        &compose::trunk_part(cfg, Which::Video, trunks)?,
        "video trunk part",
        frames,
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
    let (clip_a, clip_v) = (audio_tokens * audio_dim, frames * cells * video_dim);
    let n = entries.len();
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let tmp = bp.with_extension("f16.partial");
    let file =
        std::fs::File::create(&tmp).with_context(|| format!("cannot write {}", tmp.display()))?;
    let audio_bytes = (2 * n * clip_a) as u64;
    file.set_len(audio_bytes + (2 * n * clip_v) as u64)
        .with_context(|| format!("cannot size {} (disk full?)", tmp.display()))?;
    let labels = &cfg.labels;
    let bar = super::progress_bar(n as u64, 0);
    bar.set_message(format!("trunk features, {split}"));
    let done = std::sync::atomic::AtomicU64::new(0);
    let per_clip = entries
        .par_iter()
        .enumerate()
        .map(|(k, &e)| {
            let clip = data.decode_entry(e, labels, &atok)?;
            if clip.frames.len() != frames {
                bail!(
                    "clip {}: {} frames, but the split's first clip has {frames}; a split must be uniform",
                    clip.id,
                    clip.frames.len()
                );
            }
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
            let fr: Vec<Frame> = clip
                .frames
                .iter()
                .map(|f| Frame::rgb(clip.width, clip.height, f))
                .collect();
            let vt = vtok
                .tokenize_frames(&fr)
                .with_context(|| format!("clip {}", clip.id))?;
            let v = video_part.run_rows(&vt.data, vt.count, vt.dim)?;
            if a.len() != clip_a || v.len() != clip_v {
                bail!(
                    "clip {}: the trunks gave {} audio and {} video values, expected {clip_a} and {clip_v}",
                    clip.id,
                    a.len(),
                    v.len()
                );
            }
            let f16s = |x: &[f32]| -> Vec<u16> { x.iter().map(|&v| f16::from_f32(v).to_bits()).collect() };
            file.write_all_at(&bytes_of(&f16s(&a)), (2 * k * clip_a) as u64)
                .and_then(|_| {
                    file.write_all_at(&bytes_of(&f16s(&v)), audio_bytes + (2 * k * clip_v) as u64)
                })
                .with_context(|| format!("cannot write {} (disk full?)", tmp.display()))?;
            let d = done.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            if d % 16 == 0 {
                bar.set_position(d);
            }
            Ok((clip.id, clip.label, clip.candidates))
        })
        .collect::<anyhow::Result<Vec<_>>>()?;
    bar.finish_and_clear();
    file.sync_all()
        .with_context(|| format!("cannot write {}", tmp.display()))?;
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
    for (id, label, cand) in per_clip {
        header.ids.push(id);
        header.labels.push(label);
        header.candidates.push(cand);
    }
    header.seconds = t0.elapsed().as_secs_f64();
    std::fs::rename(&tmp, bp)?;
    super::atomic_write(hp, serde_json::to_string(&header)?.as_bytes())?;
    eprintln!(
        "features: {split}: {n} clips through the trunks in {:.1} s ({:.1} ms per clip, {:.0} MB as f16)",
        header.seconds,
        1e3 * header.seconds / n.max(1) as f64,
        2.0 * (n * (clip_a + clip_v)) as f64 / 1e6
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A cache written by hand (2 clips, 3 audio rows of 2, 4 frames of 2 cells of 3): read with
    /// the video block in memory and from disk, every clip's cells and a batch are the same,
    /// and equal to the values written.
    #[test]
    fn a_video_block_on_disk_reads_as_the_one_in_memory() {
        let dir = std::env::temp_dir().join(format!("mbt-features-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let (hp, bp) = (dir.join("t.json"), dir.join("t.f16"));
        let header = Header {
            ids: vec!["a".into(), "b".into()],
            labels: vec![0, 1],
            candidates: vec![None, None],
            audio_tokens: 3,
            audio_dim: 2,
            frames: 4,
            video_cells: 2,
            video_dim: 3,
            seconds: 0.0,
        };
        std::fs::write(&hp, serde_json::to_string(&header).unwrap()).unwrap();
        let value = |i: usize| f16::from_f32(i as f32 * 0.25).to_bits();
        let words: Vec<u16> = (0..2 * 6 + 2 * 24).map(value).collect();
        std::fs::write(&bp, bytes_of(&words)).unwrap();
        let mem = open("t", "t", &hp, &bp, u64::MAX).unwrap();
        let disk = open("t", "t", &hp, &bp, 0).unwrap();
        assert!(matches!(mem.video, Block::Memory(_)));
        assert!(matches!(disk.video, Block::File { .. }));
        for i in 0..2 {
            let want: Vec<u16> = (12 + 24 * i..12 + 24 * (i + 1)).map(value).collect();
            assert_eq!(mem.clip_video(i).unwrap().as_ref(), &want[..]);
            assert_eq!(disk.clip_video(i).unwrap().as_ref(), &want[..]);
            assert_eq!(mem.clip_audio(i), &words[6 * i..6 * (i + 1)]);
            assert_eq!(disk.clip_audio(i), mem.clip_audio(i));
        }
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
