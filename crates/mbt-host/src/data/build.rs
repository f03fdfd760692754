//! `mbt data build`: render the AVE-Intersect splits into a directory.
//!
//! Output: `OUT/{train,val,test}/ID.wav` (16 kHz mono, 16-bit), `OUT/.../ID.mjpeg` (16 frames,
//! 8 fps, square, `--frame-size` px: 112 for data v2, 224 for data v3; Motion JPEG at quality [`JPEG_QUALITY`]: `ffmpeg -f mjpeg -framerate 8 -i`,
//! `mbt tokenize video`; or `--frames y4m`: uncompressed C444 Y4M, 5x larger), `OUT/manifest.jsonl`
//! (one line per clip: label, files, their sha256 and every generation parameter) and
//! `OUT/summary.json` (counts per class and split, seed, the pool and its packages, build time).
//! The classes are those of the event kinds the pool has in every split, plus `none`.
//!
//! Each clip's random stream is derived from `(seed, split, index)`, and classes are assigned by
//! a seeded shuffle of an exactly balanced list, so the output is byte-identical for a seed
//! whatever the number of threads.

use std::io::Write;
use std::path::Path;
use std::time::Instant;

use anyhow::{Context, Result};
use rayon::prelude::*;
use serde_json::json;
use sha2::{Digest, Sha256};

use super::pool::{Kind, Pool, Role, Split};
use super::render::{self, FPS, FRAMES, RATE};
use super::rng::Rng;
use super::sources::Sources;
use super::spec::{Class, Palette, Scene};

pub struct BuildArgs<'a> {
    pub seed: u64,
    pub out: &'a Path,
    pub counts: [usize; 3],
    pub frames: FrameFormat,
    /// Frame size and styles ([`render::Look`]).
    pub look: render::Look,
}

/// How a clip's frames are stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum FrameFormat {
    /// Motion JPEG (quality [`JPEG_QUALITY`]): about 117 KB per clip.
    Mjpeg,
    /// Uncompressed Y4M (C444): 602 KB per clip, lossless.
    Y4m,
}

/// JPEG quality of `.mjpeg` clips: artefacts well under the colour jitter of the augmentation.
pub const JPEG_QUALITY: u8 = 90;

pub(crate) fn hex(bytes: &[u8]) -> String {
    Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

pub(crate) fn wav_bytes(samples: &[f32]) -> Result<Vec<u8>> {
    let spec = hound::WavSpec {
        channels: 1,
        sample_rate: RATE,
        bits_per_sample: 16,
        sample_format: hound::SampleFormat::Int,
    };
    let mut cur = std::io::Cursor::new(Vec::new());
    {
        let mut w = hound::WavWriter::new(&mut cur, spec)?;
        for &s in samples {
            w.write_sample((s.clamp(-1.0, 1.0) * 32767.0).round() as i16)?;
        }
        w.finalize()?;
    }
    Ok(cur.into_inner())
}

/// The class of every clip of a split: exactly balanced over `classes`, then shuffled by the
/// seed.
pub fn class_plan(seed: u64, split: Split, n: usize, classes: &[Class]) -> Vec<Class> {
    let mut v: Vec<Class> = (0..n).map(|i| classes[i % classes.len()]).collect();
    Rng::new(seed, &[0xC1A55, split as u64]).shuffle(&mut v);
    v
}

/// The event kinds the loaded pool offers: those with sounds and pictures in every split.
/// A kind present in some splits only is an error naming what is missing (a data set whose
/// test split silently lacked a class would not measure what it says). `mbt data pool` makes
/// the stricter checks (content and picture sets shared between splits) on a pool.
pub fn palette(sources: &Sources) -> Result<Palette> {
    let mut kinds = Vec::new();
    for kind in Kind::EVENTS {
        let cells: Vec<(Split, Role)> = Split::ALL
            .iter()
            .flat_map(|&s| [Role::Sound, Role::Object].map(move |r| (s, r)))
            .collect();
        let missing = cells.iter().find(|(s, r)| !sources.has(*s, *r, kind));
        let present = cells.iter().any(|(s, r)| sources.has(*s, *r, kind));
        match missing {
            None => kinds.push(kind),
            Some((s, r)) if present => anyhow::bail!(
                "the pool has sources of kind `{}` but no {r:?} source of it for the {} split \
                 (every split needs both sounds and pictures of a kind; `mbt data pool` lists them)",
                kind.name(),
                s.name()
            ),
            Some(_) => {} // the pool does not cover this kind: it is not a class of its data set
        }
    }
    anyhow::ensure!(
        !kinds.is_empty(),
        "the pool has no event kind with sounds and pictures in every split"
    );
    Ok(Palette { kinds })
}

/// Renders clip `i` of `split` for `seed`: its id and its audio, frames and parameters. Each
/// clip's random stream is its own, so any subset renders the same in any order.
pub fn render_clip(
    sources: &Sources,
    palette: &Palette,
    seed: u64,
    split: Split,
    i: usize,
    class: Class,
    look: &render::Look,
) -> Result<(String, render::Rendered)> {
    let id = format!("{}-{i:05}", split.name());
    let mut rng = Rng::new(seed, &[split as u64, i as u64]);
    let scene = Scene::sample(&mut rng, class, palette);
    // The label must follow from what is heard and seen; a generator bug must not silently
    // mislabel data.
    anyhow::ensure!(
        scene.label_from_observation() == class,
        "internal error: clip {id}: the scene does not show its label {}",
        class.name()
    );
    let r = render::render(&mut rng, &scene, sources, split, look)?;
    Ok((id, r))
}

pub fn build(pool: &Pool, cache: &Path, args: &BuildArgs) -> Result<serde_json::Value> {
    let t0 = Instant::now();
    let size = render::check_frame_size(args.look.frame_size)?;
    anyhow::ensure!(
        (0.0..=1.0).contains(&args.look.styles),
        "--styles {}: expected a chance from 0 to 1",
        args.look.styles
    );
    let sources = Sources::load(pool, cache)?;
    let palette = palette(&sources)?;
    let classes = palette.classes();
    let load_s = t0.elapsed().as_secs_f64();
    let mut lines = Vec::new();
    let mut counts = serde_json::Map::new();
    for (si, split) in Split::ALL.iter().copied().enumerate() {
        let n = args.counts[si];
        let dir = args.out.join(split.name());
        std::fs::create_dir_all(&dir)
            .with_context(|| format!("cannot create {}", dir.display()))?;
        let plan = class_plan(args.seed, split, n, &classes);
        let rendered: Vec<String> = plan
            .par_iter()
            .enumerate()
            .map(|(i, &class)| -> Result<String> {
                let (id, r) = render_clip(&sources, &palette, args.seed, split, i, class, &args.look)?;
                let wav = wav_bytes(&r.audio)?;
                let (video, ext) = match args.frames {
                    FrameFormat::Mjpeg => (mbt_media::mjpeg::encode(&r.frames, FPS, JPEG_QUALITY)?, "mjpeg"),
                    FrameFormat::Y4m => (mbt_media::y4m::encode(&r.frames, FPS), "y4m"),
                };
                let (wp, vp) = (dir.join(format!("{id}.wav")), dir.join(format!("{id}.{ext}")));
                std::fs::write(&wp, &wav).with_context(|| format!("cannot write {}", wp.display()))?;
                std::fs::write(&vp, &video).with_context(|| format!("cannot write {}", vp.display()))?;
                let line = json!({
                    "id": id,
                    "split": split.name(),
                    "label": class.name(),
                    "label_index": class.index(),
                    "audio": format!("{}/{id}.wav", split.name()),
                    "video": format!("{}/{id}.{ext}", split.name()),
                    "audio_sha256": hex(&wav),
                    "video_sha256": hex(&video),
                    "sample_rate": RATE, "fps": FPS, "frames": FRAMES, "width": size, "height": size,
                    "seed": args.seed,
                    "params": r.params,
                });
                Ok(line.to_string())
            })
            .collect::<Result<_>>()?;
        lines.extend(rendered);
        let mut per_class = serde_json::Map::new();
        for &c in &classes {
            per_class.insert(
                c.name().into(),
                json!(plan.iter().filter(|x| **x == c).count()),
            );
        }
        counts.insert(split.name().into(), serde_json::Value::Object(per_class));
    }
    let mpath = args.out.join("manifest.jsonl");
    let mut f = std::io::BufWriter::new(
        std::fs::File::create(&mpath)
            .with_context(|| format!("cannot write {}", mpath.display()))?,
    );
    for l in &lines {
        writeln!(f, "{l}").with_context(|| format!("cannot write {}", mpath.display()))?;
    }
    f.flush()
        .with_context(|| format!("cannot write {}", mpath.display()))?;
    let summary = json!({
        "dataset": "AVE-Intersect",
        "seed": args.seed,
        "labels": classes.iter().map(|c| c.name()).collect::<Vec<_>>(),
        "counts": counts,
        "pool": {"file": pool.file.display().to_string(), "name": pool.pool.name},
        "clip": {"seconds": render::SECONDS, "sample_rate": RATE, "fps": FPS, "frames": FRAMES, "width": size, "height": size, "styles": args.look.styles, "video_format": format!("{:?}", args.frames).to_lowercase()},
        "packages": pool.packages.iter().map(|p| json!({"name": p.name, "registry": format!("{:?}", p.registry).to_lowercase(), "version": p.version, "sha256": p.sha256})).collect::<Vec<_>>(),
        "source_files": sources.sounds.len() + sources.images.len(),
        "threads": rayon::current_num_threads(),
        "load_seconds": load_s,
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
    fn classes_are_exactly_balanced_and_seeded() {
        let all = Class::ALL;
        let p = class_plan(5, Split::Train, 6000, &all);
        for c in all {
            assert_eq!(p.iter().filter(|x| **x == c).count(), 600);
        }
        assert_eq!(p, class_plan(5, Split::Train, 6000, &all));
        assert_ne!(p, class_plan(6, Split::Train, 6000, &all));
        let q = class_plan(5, Split::Test, 2003, &all);
        for c in all {
            let n = q.iter().filter(|x| **x == c).count();
            assert!((200..=201).contains(&n));
        }
    }
}
