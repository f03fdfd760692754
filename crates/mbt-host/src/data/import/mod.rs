//! `mbt data import`: the user's own material as a data set `mbt train` reads, in the layout
//! `mbt data build` writes (`manifest.jsonl`, `train/`, `val/`, `test/` with a 16 kHz mono WAV
//! and a 16-frame 8 fps 112 x 112 Motion JPEG per 2 s clip, `summary.json`).
//!
//! * [`inputs`]: CSV files, label folders and `mbtd`'s evidence directories -> labelled items
//! * [`labels`]: what a label may look like and which labels a model allows
//! * [`windows`]: cutting a recording into windows and labelling them from time spans (pure)
//! * [`ffmpeg`]: decoding with the `ffmpeg`/`ffprobe` programs (why: see there)
//! * [`mix`]: audio-only and picture-only material rendered into scenes like the builder's
//!
//! Splits are drawn per *source file* (a video, an evidence event, a sound or a picture file),
//! stratified by label and seeded, so windows of one recording never sit on both sides of an
//! evaluation. The output directory must be empty (or `--force`, which replaces only the data
//! set's own files), so an import never mixes into an older data set.

pub mod ffmpeg;
pub mod inputs;
pub mod labels;
pub mod mix;
pub mod windows;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{bail, Context, Result};
use mbt_media::RgbFrame;
use rayon::prelude::*;
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

use super::build::{hex, wav_bytes, JPEG_QUALITY};
use super::pool::Split;
use super::render::{FPS, FRAMES, RATE, SAMPLES, SECONDS, SIZE};
use super::rng::Rng;
use super::sources;
use inputs::{Item, Material};
use labels::Allowed;
use windows::Outcome;

/// What to do with a video that has no audio track.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum SilentVideos {
    /// Stop with an error naming the file.
    Refuse,
    /// Use stills of it (one every 2 s, at most 8) as pictures of its label, mixed into
    /// rendered scenes like picture files.
    Pictures,
}

/// `mbt data import`'s arguments (the command line).
#[derive(Debug, clap::Args)]
pub struct ImportArgs {
    /// CSV files (file,label[,start,end]; paths relative to the CSV) and directories (label
    /// folders DIR/<label>/..., and/or DIR/labels.csv, e.g. mbtd's evidence directory)
    #[arg(required = true, value_name = "CSV|DIR")]
    pub inputs: Vec<PathBuf>,
    /// Output directory; must be empty unless --force
    #[arg(long, value_name = "DIR")]
    pub out: PathBuf,
    /// Seconds between the starts of consecutive 2 s windows of a video
    #[arg(long, default_value_t = 1.0, value_name = "SECONDS")]
    pub hop: f64,
    /// Label for windows no start/end span touches (default: leave them out)
    #[arg(long, value_name = "LABEL")]
    pub background_label: Option<String>,
    /// Share of each label's source files held out for validation
    #[arg(long, default_value_t = 0.15)]
    pub val_fraction: f64,
    /// Share of each label's source files held out for testing
    #[arg(long, default_value_t = 0.15)]
    pub test_fraction: f64,
    /// Seed of the split and of the rendered scenes
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// The labels allowed (comma separated); others are refused unless in --add-labels
    #[arg(long, value_name = "A,B,C", conflicts_with = "model")]
    pub labels: Option<String>,
    /// Allow the labels this model's metadata lists (plus --add-labels)
    #[arg(long, value_name = "ONNX")]
    pub model: Option<PathBuf>,
    /// New labels allowed besides --labels / --model's (comma separated)
    #[arg(long, value_name = "A,B")]
    pub add_labels: Option<String>,
    /// Rendered clips per sound-only or picture-only file
    #[arg(long, default_value_t = 8, value_name = "N")]
    pub renders: usize,
    /// A video without an audio track: refuse it, or use stills of it as pictures
    #[arg(long, value_enum, default_value = "refuse")]
    pub silent_videos: SilentVideos,
    /// Source pool for rendering sound-only and picture-only files [default: data/pool.toml]
    #[arg(long, value_name = "TOML")]
    pub pool: Option<PathBuf>,
    /// Package cache that `mbt data fetch` filled [default: as for fetch]
    #[arg(long, value_name = "DIR")]
    pub cache: Option<PathBuf>,
    /// Replace the data set in a non-empty --out (manifest.jsonl, summary.json, the splits)
    #[arg(long)]
    pub force: bool,
}

/// Longest side of a user picture kept for rendering (objects are drawn at most 96 px high).
const PICTURE_PX: usize = 256;
/// Stills taken from a silent video used as pictures.
const MAX_STILLS: usize = 8;

fn allowed(args: &ImportArgs) -> Result<Allowed> {
    let added = args
        .add_labels
        .as_deref()
        .map(labels::parse_list)
        .unwrap_or_default();
    let known = match (&args.labels, &args.model) {
        (Some(_), Some(_)) => bail!("give --labels or --model, not both"),
        (Some(l), None) => Some((labels::parse_list(l), "--labels".to_string())),
        (None, Some(m)) => {
            let bytes = std::fs::read(m).with_context(|| format!("cannot read {}", m.display()))?;
            let meta = mbt_infer::read_metadata(&bytes, &m.display().to_string())?;
            Some((meta.labels, format!("the model {}", m.display())))
        }
        (None, None) => None,
    };
    Allowed::new(known, added)
}

/// Refuses a non-empty output directory, or (with `--force`) removes the data set files in it.
fn prepare_out(out: &Path, force: bool) -> Result<()> {
    if out.exists() {
        let mut entries = std::fs::read_dir(out)
            .with_context(|| format!("{}: cannot list the output directory", out.display()))?;
        if entries.next().is_some() {
            if !force {
                bail!(
                    "{}: the output directory is not empty; choose an empty one, or pass --force to \
                     replace the data set in it (manifest.jsonl, summary.json, train/, val/, test/)",
                    out.display()
                );
            }
            for f in ["manifest.jsonl", "summary.json"] {
                let p = out.join(f);
                if p.exists() {
                    std::fs::remove_file(&p)
                        .with_context(|| format!("cannot remove {}", p.display()))?;
                }
            }
            for s in Split::ALL {
                let p = out.join(s.name());
                if p.exists() {
                    std::fs::remove_dir_all(&p)
                        .with_context(|| format!("cannot remove {}", p.display()))?;
                }
            }
        }
    }
    for s in Split::ALL {
        let p = out.join(s.name());
        std::fs::create_dir_all(&p).with_context(|| format!("cannot create {}", p.display()))?;
    }
    Ok(())
}

/// A stable 64-bit key of a label (FNV-1a), for per-label random streams.
fn key(s: &str) -> u64 {
    s.bytes().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ b as u64).wrapping_mul(0x0100_0000_01b3)
    })
}

/// The split of each item: per label (an item's first), a seeded shuffle, then `test` and
/// `val` shares rounded, at least one file each where a label has three or more (two: train
/// and val), and always at least one in train.
pub fn assign_splits(labels: &[&str], val: f64, test: f64, seed: u64) -> Vec<Split> {
    let mut out = vec![Split::Train; labels.len()];
    let mut names: Vec<&str> = labels.to_vec();
    names.sort_unstable();
    names.dedup();
    for name in names {
        let mut idx: Vec<usize> = (0..labels.len()).filter(|&i| labels[i] == name).collect();
        Rng::new(seed, &[0x5B117, key(name)]).shuffle(&mut idx);
        let n = idx.len();
        let mut nt = (n as f64 * test).round() as usize;
        let mut nv = (n as f64 * val).round() as usize;
        if n >= 3 {
            nt = if test > 0.0 { nt.max(1) } else { nt };
            nv = if val > 0.0 { nv.max(1) } else { nv };
        } else if n == 2 && val > 0.0 {
            nv = nv.max(1);
        }
        while nt + nv > n.saturating_sub(1) {
            if nt >= nv && nt > 0 {
                nt -= 1;
            } else {
                nv -= 1;
            }
        }
        for (k, &i) in idx.iter().enumerate() {
            out[i] = if k < nt {
                Split::Test
            } else if k < nt + nv {
                Split::Val
            } else {
                Split::Train
            };
        }
    }
    out
}

fn file_sha256(path: &Path) -> Result<String> {
    let mut f =
        std::fs::File::open(path).with_context(|| format!("cannot read {}", path.display()))?;
    let mut h = Sha256::new();
    std::io::copy(&mut f, &mut h).with_context(|| format!("cannot read {}", path.display()))?;
    Ok(h.finalize().iter().map(|b| format!("{b:02x}")).collect())
}

/// Writes one clip; returns the manifest fields of its files.
struct Writer<'a> {
    out: &'a Path,
    labels: &'a [String],
    seed: u64,
}

impl Writer<'_> {
    fn write(
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
            "sample_rate": RATE, "fps": FPS, "frames": FRAMES, "width": SIZE, "height": SIZE,
            "seed": self.seed,
        });
        if let Some(m) = line.as_object_mut() {
            m.append(&mut extra);
        }
        Ok(line.to_string())
    }
}

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

/// What importing one real recording gave.
struct Imported {
    lines: Vec<String>,
    clips: BTreeMap<String, usize>,
    skipped: BTreeMap<&'static str, usize>,
    seconds: f64,
    note: Value,
}

/// Cuts one video with sound into labelled windows and writes them.
#[allow(clippy::too_many_arguments)]
fn import_video(
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
    let frames = ffmpeg::frames(&item.path, FPS, SIZE)?;
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

fn import_evidence(
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
    let frame = evidence_frame(jpg)?;
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
fn evidence_frame(jpg: &Path) -> Result<RgbFrame> {
    let Ok(f) = mbt_media::frames::read_image(jpg) else {
        return ffmpeg::still_frame(jpg, SIZE);
    };
    if f.width == 0 || f.height == 0 {
        bail!("{}: the key frame is empty (0 pixels)", jpg.display());
    }
    let plan = mbt_core::video::resize::ResizeCrop::plan(f.width, f.height, SIZE, SIZE, SIZE);
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

/// Decodes a sound or picture item (or a silent video's stills) for mixing.
fn load_media(item: &Item) -> Result<mix::Media> {
    let id = format!("import:{}", item.name);
    match item.material {
        Material::Sound => {
            let s = ffmpeg::audio(&item.path, RATE)?;
            if s.is_empty() || s.iter().all(|v| *v == 0.0) {
                bail!("{}: the recording is empty or pure silence", item.name);
            }
            Ok(mix::Media::Sound(s))
        }
        Material::Picture => {
            let img = ffmpeg::picture(&item.path, None, PICTURE_PX)?;
            Ok(mix::Media::Pictures(vec![sources::to_image(&img, &id)]))
        }
        _ => {
            let p = ffmpeg::probe(&item.path)?;
            let dur = p.duration.unwrap_or(0.0);
            let n = ((dur / 2.0).floor() as usize).clamp(1, MAX_STILLS);
            let pics = (0..n)
                .map(|k| {
                    let t = (k as f64 + 0.5) * dur / n as f64;
                    ffmpeg::picture(&item.path, Some(t), PICTURE_PX)
                        .map(|i| sources::to_image(&i, &id))
                })
                .collect::<Result<Vec<_>>>()?;
            Ok(mix::Media::Pictures(pics))
        }
    }
}

/// `train 12 (dog 6, none 6), val 2 (...), test 2 (...)` from a summary.
pub fn count_line(summary: &Value) -> String {
    Split::ALL
        .iter()
        .map(|s| {
            let per = summary["counts"][s.name()].as_object();
            let total: u64 = per.map_or(0, |m| m.values().filter_map(Value::as_u64).sum());
            let parts: Vec<String> = per
                .map(|m| {
                    m.iter()
                        .filter(|(_, v)| v.as_u64() != Some(0))
                        .map(|(k, v)| format!("{k} {v}"))
                        .collect()
                })
                .unwrap_or_default();
            format!("{} {total} ({})", s.name(), parts.join(", "))
        })
        .collect::<Vec<_>>()
        .join(", ")
}

pub fn run(args: ImportArgs) -> Result<Value> {
    let fresh = std::fs::read_dir(&args.out).map_or(true, |mut d| d.next().is_none());
    let result = import(&args);
    if result.is_err() && fresh {
        // Leave no half data set behind, so the next try needs no --force.
        for s in Split::ALL {
            let _ = std::fs::remove_dir_all(args.out.join(s.name()));
        }
        for f in ["manifest.jsonl", "summary.json"] {
            let _ = std::fs::remove_file(args.out.join(f));
        }
        let _ = std::fs::remove_dir(&args.out);
    }
    result
}

fn import(args: &ImportArgs) -> Result<Value> {
    let t0 = Instant::now();
    anyhow::ensure!(
        args.hop.is_finite() && args.hop > 0.0,
        "--hop must be a positive number of seconds"
    );
    let (fv, ft) = (args.val_fraction, args.test_fraction);
    anyhow::ensure!(
        (0.0..1.0).contains(&fv) && (0.0..1.0).contains(&ft) && fv + ft < 1.0,
        "--val-fraction and --test-fraction must be in [0, 1) with a sum under 1 (train keeps the rest)"
    );
    anyhow::ensure!(args.renders >= 1, "--renders must be at least 1");
    anyhow::ensure!(
        !args.inputs.is_empty(),
        "name at least one input (a CSV or a directory)"
    );
    let occupied = std::fs::read_dir(&args.out).is_ok_and(|mut d| d.next().is_some());
    if occupied && !args.force {
        prepare_out(&args.out, false)?; // the error naming the directory, before any work
    }
    let allowed = allowed(args)?;
    if let Some(bg) = &args.background_label {
        allowed
            .check(bg)
            .map_err(|e| anyhow::anyhow!("--background-label: {e}"))?;
    }
    let found = inputs::collect(&args.inputs)?;
    let mut items = found.items;
    if items.is_empty() {
        bail!(
            "no labelled files in {} ({} evidence events without a label: label them in \
             labels.csv or move them into label folders)",
            args.inputs
                .iter()
                .map(|p| p.display().to_string())
                .collect::<Vec<_>>()
                .join(", "),
            found.unlabelled.len()
        );
    }
    for it in &items {
        for (s, origin) in it.segments.iter().zip(&it.origins) {
            allowed
                .check(&s.label)
                .map_err(|e| anyhow::anyhow!("{origin} ({}): {e}", it.name))?;
        }
    }
    // Videos: streams first, so a file without sound fails before any decoding.
    let mut silent = vec![false; items.len()];
    let mut container_s = vec![None; items.len()];
    let probes: Vec<Result<Option<ffmpeg::Probe>>> = items
        .par_iter()
        .map(|it| match it.material {
            Material::Video => ffmpeg::probe(&it.path).map(Some),
            _ => Ok(None),
        })
        .collect();
    for (i, p) in probes.into_iter().enumerate() {
        let Some(p) = p? else { continue };
        let it = &mut items[i];
        container_s[i] = p.duration;
        match (&p.video, &p.audio) {
            (Some(_), Some(_)) => {}
            (None, Some(_)) => it.material = Material::Sound,
            (None, None) => bail!("{}: neither a video nor an audio stream", it.name),
            (Some(v), None) => match args.silent_videos {
                SilentVideos::Refuse => bail!(
                    "{}: no audio track (only video, {v}); the model learns from sound and picture \
                     together, so a silent video cannot be cut into clips. Pass --silent-videos \
                     pictures to use its frames as pictures of its label in rendered scenes",
                    it.name
                ),
                SilentVideos::Pictures => {
                    if it.segments.iter().any(|s| s.span.is_some()) {
                        bail!(
                            "{}: --silent-videos pictures takes whole files; its rows give start/end times",
                            it.name
                        );
                    }
                    silent[i] = true;
                }
            },
        }
    }
    prepare_out(&args.out, args.force)?;
    let primary: Vec<&str> = items.iter().map(Item::primary_label).collect();
    let splits = assign_splits(&primary, fv, ft, args.seed);
    let used: Vec<String> = items
        .iter()
        .flat_map(|i| i.segments.iter().map(|s| s.label.clone()))
        .chain(args.background_label.clone())
        .collect();
    let label_list = allowed.list(&used);
    let writer = Writer {
        out: &args.out,
        labels: &label_list,
        seed: args.seed,
    };
    let shas: Vec<String> = items
        .par_iter()
        .map(|it| match &it.material {
            Material::Evidence { json, .. } => file_sha256(json),
            _ => file_sha256(&it.path),
        })
        .collect::<Result<_>>()?;
    // Real recordings: videos and evidence events.
    let real: Vec<Option<Imported>> = items
        .par_iter()
        .enumerate()
        .map(|(i, it)| -> Result<Option<Imported>> {
            match &it.material {
                Material::Video if !silent[i] => import_video(
                    it,
                    i,
                    splits[i],
                    &writer,
                    args.hop,
                    args.background_label.as_deref(),
                    &shas[i],
                    container_s[i],
                )
                .map(Some),
                Material::Evidence { jpg, wav, json } => {
                    import_evidence(it, i, splits[i], &writer, jpg, wav, json).map(Some)
                }
                _ => Ok(None),
            }
        })
        .collect::<Result<_>>()?;
    // Sounds and pictures: rendered scenes.
    let anchor_ix: Vec<usize> = (0..items.len()).filter(|&i| real[i].is_none()).collect();
    let mut mixed: BTreeMap<usize, Vec<String>> = BTreeMap::new();
    if !anchor_ix.is_empty() {
        let media: Vec<mix::Media> = anchor_ix
            .par_iter()
            .map(|&i| load_media(&items[i]))
            .collect::<Result<_>>()?;
        let anchors: Vec<mix::Anchor> = anchor_ix
            .iter()
            .zip(media)
            .map(|(&i, media)| mix::Anchor {
                item: i,
                name: items[i].name.clone(),
                label: items[i].primary_label().to_string(),
                split: splits[i],
                media,
            })
            .collect();
        let pool_file = args.pool.clone().unwrap_or_else(super::pool::default_path);
        let cache = match args.cache.clone() {
            Some(c) => c,
            None => super::fetch::default_cache()?,
        };
        let context = || {
            format!(
                "sound-only and picture-only files ({} of them, e.g. {}) are mixed into scenes \
                 rendered from a source pool (backgrounds, distractors); run `mbt data fetch` \
                 or pass --pool/--cache",
                anchors.len(),
                anchors[0].name
            )
        };
        let pool = super::pool::Pool::load(&pool_file).with_context(context)?;
        let mut sources = super::sources::Sources::load(&pool, &cache).with_context(context)?;
        let lines = mix::render_all(&mut sources, &anchors, args.renders, args.seed, |m| {
            let a = m.anchor;
            let id = format!("{}-{:04}-{:04}", a.split.name(), a.item, m.index);
            let mut extra = serde_json::Map::new();
            extra.insert(
                "source".into(),
                json!({"file": a.name, "material": items[a.item].material.name(),
                       "sha256": shas[a.item], "render": m.index,
                       "role": match a.media { mix::Media::Sound(_) => "sound", _ => "picture" }}),
            );
            extra.insert("params".into(), m.rendered.params.clone());
            writer.write(
                a.split,
                &id,
                &a.label,
                &m.rendered.audio,
                &m.rendered.frames,
                extra,
            )
        })?;
        for (a, l) in anchors.iter().zip(lines) {
            mixed.insert(a.item, l);
        }
    }
    // Manifest (train, val, test; items in order) and summary.
    let mut by_split: BTreeMap<usize, Vec<String>> = BTreeMap::new();
    let mut counts: BTreeMap<&str, BTreeMap<String, usize>> = BTreeMap::new();
    for s in Split::ALL {
        counts.insert(
            s.name(),
            label_list.iter().map(|l| (l.clone(), 0)).collect(),
        );
    }
    let mut files = Vec::new();
    let mut skipped: BTreeMap<&str, usize> = BTreeMap::new();
    for (i, it) in items.iter().enumerate() {
        let split = splits[i];
        let (lines, clips, note, seconds): (
            Vec<String>,
            BTreeMap<String, usize>,
            Value,
            Option<f64>,
        ) = match &real[i] {
            Some(r) => {
                for (k, v) in &r.skipped {
                    *skipped.entry(k).or_default() += v;
                }
                (
                    r.lines.clone(),
                    r.clips.clone(),
                    r.note.clone(),
                    Some(r.seconds),
                )
            }
            None => {
                let l = mixed.remove(&i).unwrap_or_default();
                let n = l.len();
                (
                    l,
                    BTreeMap::from([(it.primary_label().to_string(), n)]),
                    Value::Null,
                    None,
                )
            }
        };
        for (l, n) in &clips {
            *counts
                .entry(split.name())
                .or_default()
                .entry(l.clone())
                .or_default() += n;
        }
        by_split.entry(split as usize).or_default().extend(lines);
        let material = if silent[i] {
            "silent video (pictures)"
        } else {
            it.material.name()
        };
        files.push(json!({
            "file": it.name,
            "material": material,
            "sha256": if note.is_null() { json!(shas[i]) } else { note },
            "split": split.name(),
            "labels": it.segments.iter().map(|s| json!({"label": s.label, "span_s": s.span.map(|(a, b)| [a, b])})).collect::<Vec<_>>(),
            "seconds": seconds,
            "clips": clips,
        }));
    }
    let total: usize = by_split.values().map(Vec::len).sum();
    if total == 0 {
        bail!("no clips: no window of the inputs is labelled");
    }
    let mpath = args.out.join("manifest.jsonl");
    let text: String = by_split
        .values()
        .flatten()
        .map(|l| format!("{l}\n"))
        .collect();
    std::fs::write(&mpath, text).with_context(|| format!("cannot write {}", mpath.display()))?;
    let summary = json!({
        "dataset": "import",
        "seed": args.seed,
        "labels": label_list,
        "counts": counts,
        "clip": {"seconds": SECONDS, "sample_rate": RATE, "fps": FPS, "frames": FRAMES, "width": SIZE, "height": SIZE, "video_format": "mjpeg"},
        "hop_s": args.hop,
        "background_label": args.background_label,
        "val_fraction": fv,
        "test_fraction": ft,
        "renders_per_file": args.renders,
        "files": files,
        "skipped_windows": skipped,
        "unlabelled_evidence": found.unlabelled,
        "ignored_files": found.ignored,
        "threads": rayon::current_num_threads(),
        "total_seconds": t0.elapsed().as_secs_f64(),
    });
    let spath = args.out.join("summary.json");
    std::fs::write(&spath, serde_json::to_string_pretty(&summary)? + "\n")
        .with_context(|| format!("cannot write {}", spath.display()))?;
    Ok(summary)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_are_by_label_seeded_and_keep_train() {
        let labels: Vec<&str> = (0..20).map(|i| if i < 10 { "a" } else { "b" }).collect();
        let s = assign_splits(&labels, 0.2, 0.2, 7);
        for l in ["a", "b"] {
            let of = |x: Split| (0..20).filter(|&i| labels[i] == l && s[i] == x).count();
            assert_eq!(
                (of(Split::Train), of(Split::Val), of(Split::Test)),
                (6, 2, 2)
            );
        }
        assert_eq!(s, assign_splits(&labels, 0.2, 0.2, 7));
        assert_ne!(s, assign_splits(&labels, 0.2, 0.2, 8));
        // Few files: one each where there are three, train and val for two, train for one.
        let count = |v: &[Split], x: Split| v.iter().filter(|s| **s == x).count();
        let three = assign_splits(&["a"; 3], 0.1, 0.1, 0);
        assert_eq!(
            [Split::Train, Split::Val, Split::Test].map(|x| count(&three, x)),
            [1, 1, 1]
        );
        let two = assign_splits(&["a"; 2], 0.1, 0.1, 0);
        assert_eq!(
            [Split::Train, Split::Val, Split::Test].map(|x| count(&two, x)),
            [1, 1, 0]
        );
        assert_eq!(assign_splits(&["a"], 0.5, 0.4, 0), [Split::Train]);
    }
}
