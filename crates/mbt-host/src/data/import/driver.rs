//! The `mbt data import` command from start to end: the arguments checked, the inputs
//! collected and their labels checked against what is allowed, videos probed (a file without
//! sound fails before any decoding), the output directory prepared, splits drawn, then the
//! three kinds of work (videos, evidence events, rendered scenes of sounds and pictures) and
//! at last the manifest and `summary.json`. The per-kind work lives in the files beside.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Instant;

use anyhow::{bail, Context, Result};
use rayon::prelude::*;
use serde_json::{json, Value};

use super::super::pool::Split;
use super::super::render::{self, FPS, FRAMES, RATE, SECONDS, SIZE};
use super::clip::{file_sha256, Imported, Writer};
use super::evidence::import_evidence;
use super::inputs::{self, Item, Material};
use super::labels::{self, Allowed};
use super::media::load_media;
use super::split::assign_splits;
use super::video::import_video;
use super::{ffmpeg, mix, ImportArgs, SilentVideos};

/// The labels the import allows, and the frame size of the `--model` (its tokenizer's) if
/// one is given.
fn allowed(args: &ImportArgs) -> Result<(Allowed, Option<usize>)> {
    let added = args
        .add_labels
        .as_deref()
        .map(labels::parse_list)
        .unwrap_or_default();
    let mut model_size = None;
    let known = match (&args.labels, &args.model) {
        (Some(_), Some(_)) => bail!("give --labels or --model, not both"),
        (Some(l), None) => Some((labels::parse_list(l), "--labels".to_string())),
        (None, Some(m)) => {
            let bytes = std::fs::read(m).with_context(|| format!("cannot read {}", m.display()))?;
            let meta = mbt_infer::read_metadata(&bytes, &m.display().to_string())?;
            model_size = Some(meta.tokenizer.video.height);
            Some((meta.labels, format!("the model {}", m.display())))
        }
        (None, None) => None,
    };
    Ok((Allowed::new(known, added)?, model_size))
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

pub(super) fn import(args: &ImportArgs) -> Result<Value> {
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
    let (allowed, model_size) = allowed(args)?;
    // The clips at the size the model's tokenizer reads (a frame shrunk from 224 px to 112
    // loses what the model was trained to see).
    let frame_size = match (args.frame_size, model_size) {
        (Some(n), _) => render::check_frame_size(n)?,
        (None, Some(n)) => {
            render::check_frame_size(n).context("the --model's tokenizer frame size")?
        }
        (None, None) => SIZE,
    };
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
        frame_size,
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
        let pool_file = args
            .pool
            .clone()
            .unwrap_or_else(super::super::pool::default_path);
        let cache = match args.cache.clone() {
            Some(c) => c,
            None => super::super::fetch::default_cache()?,
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
        let pool = super::super::pool::Pool::load(&pool_file).with_context(context)?;
        let mut sources =
            super::super::sources::Sources::load(&pool, &cache).with_context(context)?;
        let look = render::Look {
            frame_size,
            styles: 0.0,
        };
        let lines = mix::render_all(
            &mut sources,
            &anchors,
            args.renders,
            args.seed,
            &look,
            |m| {
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
            },
        )?;
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
        "clip": {"seconds": SECONDS, "sample_rate": RATE, "fps": FPS, "frames": FRAMES, "width": frame_size, "height": frame_size, "video_format": "mjpeg"},
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
