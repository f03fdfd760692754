//! `mbt data build`: render the AVE-Intersect splits into a directory.
//!
//! Output: `OUT/{train,val,test}/ID.wav` (16 kHz mono, 16-bit), `OUT/.../ID.y4m` (16 frames,
//! 8 fps, 112 x 112, C444: opens in ffmpeg/mpv and in `mbt tokenize video`), `OUT/manifest.jsonl`
//! (one line per clip: label, files, their sha256 and every generation parameter) and
//! `OUT/summary.json` (counts per class and split, seed, sources, build time).
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

use super::manifest::{Manifest, Split};
use super::render::{self, FPS, FRAMES, RATE, SIZE};
use super::rng::Rng;
use super::sources::Sources;
use super::spec::{Class, Scene, CLASSES};

pub struct BuildArgs<'a> {
    pub seed: u64,
    pub out: &'a Path,
    pub counts: [usize; 3],
}

fn hex(bytes: &[u8]) -> String {
    Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

fn wav_bytes(samples: &[f32]) -> Result<Vec<u8>> {
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

/// The class of every clip of a split: exactly balanced, then shuffled by the seed.
pub fn class_plan(seed: u64, split: Split, n: usize) -> Vec<Class> {
    let mut v: Vec<Class> = (0..n).map(|i| Class::ALL[i % 6]).collect();
    Rng::new(seed, &[0xC1A55, split as u64]).shuffle(&mut v);
    v
}

/// Renders clip `i` of `split` for `seed`: its id and its audio, frames and parameters. Each
/// clip's random stream is its own, so any subset renders the same in any order.
pub fn render_clip(
    sources: &Sources,
    seed: u64,
    split: Split,
    i: usize,
    class: Class,
) -> Result<(String, render::Rendered)> {
    let id = format!("{}-{i:05}", split.name());
    let mut rng = Rng::new(seed, &[split as u64, i as u64]);
    let scene = Scene::sample(&mut rng, class);
    // The label must follow from what is heard and seen; a generator bug must not silently
    // mislabel data.
    anyhow::ensure!(
        scene.label_from_observation() == class,
        "internal error: clip {id}: the scene does not show its label {}",
        class.name()
    );
    let r = render::render(&mut rng, &scene, sources, split)?;
    Ok((id, r))
}

pub fn build(manifest: &Manifest, cache: &Path, args: &BuildArgs) -> Result<serde_json::Value> {
    let t0 = Instant::now();
    let sources = Sources::load(manifest, cache)?;
    let load_s = t0.elapsed().as_secs_f64();
    let mut lines = Vec::new();
    let mut counts = serde_json::Map::new();
    for (si, split) in Split::ALL.iter().copied().enumerate() {
        let n = args.counts[si];
        let dir = args.out.join(split.name());
        std::fs::create_dir_all(&dir)
            .with_context(|| format!("cannot create {}", dir.display()))?;
        let plan = class_plan(args.seed, split, n);
        let rendered: Vec<String> = plan
            .par_iter()
            .enumerate()
            .map(|(i, &class)| -> Result<String> {
                let (id, r) = render_clip(&sources, args.seed, split, i, class)?;
                let wav = wav_bytes(&r.audio)?;
                let y4m = mbt_media::y4m::encode(&r.frames, FPS);
                let (wp, vp) = (dir.join(format!("{id}.wav")), dir.join(format!("{id}.y4m")));
                std::fs::write(&wp, &wav).with_context(|| format!("cannot write {}", wp.display()))?;
                std::fs::write(&vp, &y4m).with_context(|| format!("cannot write {}", vp.display()))?;
                let line = json!({
                    "id": id,
                    "split": split.name(),
                    "label": class.name(),
                    "label_index": class.index(),
                    "audio": format!("{}/{id}.wav", split.name()),
                    "video": format!("{}/{id}.y4m", split.name()),
                    "audio_sha256": hex(&wav),
                    "video_sha256": hex(&y4m),
                    "sample_rate": RATE, "fps": FPS, "frames": FRAMES, "width": SIZE, "height": SIZE,
                    "seed": args.seed,
                    "params": r.params,
                });
                Ok(line.to_string())
            })
            .collect::<Result<_>>()?;
        lines.extend(rendered);
        let mut per_class = serde_json::Map::new();
        for c in Class::ALL {
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
        "labels": CLASSES,
        "counts": counts,
        "clip": {"seconds": render::SECONDS, "sample_rate": RATE, "fps": FPS, "frames": FRAMES, "width": SIZE, "height": SIZE},
        "packages": manifest.packages.iter().map(|p| json!({"name": p.name, "version": p.version, "sha256": p.sha256})).collect::<Vec<_>>(),
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
        let p = class_plan(5, Split::Train, 6000);
        for c in Class::ALL {
            assert_eq!(p.iter().filter(|x| **x == c).count(), 1000);
        }
        assert_eq!(p, class_plan(5, Split::Train, 6000));
        assert_ne!(p, class_plan(6, Split::Train, 6000));
        let q = class_plan(5, Split::Test, 2003);
        for c in Class::ALL {
            let n = q.iter().filter(|x| **x == c).count();
            assert!((333..=334).contains(&n));
        }
    }
}
