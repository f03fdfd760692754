//! `mbt data probe`: what the trunks can recognise in a built data set before anyone trains.
//!
//! For each clip the trunks' cached features (the same cache `mbt train` fills, so a probe
//! costs nothing extra before a training run) are pooled to one audio vector (the max over
//! the clip's cells: a 1 s bark is loud in a few cells) and one video vector (each frame's
//! cells max- or mean-pooled, then the mean over frames: objects stay in view). Per kind, an
//! L2-regularised logistic regression ([`logistic`]) is fitted on the training split to say
//! "kind k is heard" from the audio vector and "kind k is seen" from the video vector, with the
//! targets from the generator's parameters in `manifest.jsonl`; it is scored on another split
//! (validation by default: choose on validation, keep test for the end):
//!
//! * per kind: ROC AUC and accuracy at 0.5, heard and seen; seen also by object height
//!   (in pixels of a 112-px frame, whatever the data's size, so 112- and 224-px data sets line
//!   up), each size bin's positives against all negatives;
//! * the exact set of kinds heard / seen (every kind's decision right);
//! * the intersection rule read off the probes: the clip's kind is the one with the highest
//!   `p_heard(k) * p_seen(k)`, `none` under a threshold fitted on the training split; scored on
//!   kinds (the two door labels count as "door": loudness is not probed).
//!
//! The figures behind the edge-0.3 issue came from such a probe; this makes it a command
//! anyone can run on their own pool and trunks, in minutes instead of a training run.

pub mod logistic;

use std::collections::HashMap;
use std::path::Path;

use anyhow::{bail, Context};
use half::f16;
use rayon::prelude::*;
use serde::Serialize;
use serde_json::Value;

use crate::data::pool::Kind;
use crate::data::probe_args::{Pooling, ProbeArgs};
use crate::train::augment::frame_indices;
use crate::train::dataset::DataSet;
use crate::train::features::{self, FeatureSplit};
use logistic::{auc, Fit, Logistic};

/// Object-height bins, in pixels of a 112-px frame (data v2 draws 96/d px, d in [1, 10]).
pub const SIZE_BINS: [(f64, f64); 4] = [(0.0, 15.0), (15.0, 30.0), (30.0, 60.0), (60.0, 1e9)];

/// What the generator put into one clip.
#[derive(Debug, Clone, Default)]
struct Truth {
    heard: Vec<Kind>,
    /// Kind and height in pixels (of the data's frames in the manifest; of a 112-px frame
    /// once pooled).
    seen: Vec<(Kind, f64)>,
    /// The clip's kind: the label's kind, None for `none`.
    kind: Option<Kind>,
}

/// Reads each clip's heard and seen kinds from `manifest.jsonl`.
fn truths(dir: &Path) -> anyhow::Result<HashMap<String, Truth>> {
    let path = dir.join("manifest.jsonl");
    let text = std::fs::read_to_string(&path)
        .with_context(|| format!("cannot read {}", path.display()))?;
    let mut out = HashMap::new();
    for (i, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let at = || format!("{} line {}", path.display(), i + 1);
        let v: Value = serde_json::from_str(line).with_context(at)?;
        let id = v["id"]
            .as_str()
            .with_context(|| format!("{}: no `id`", at()))?
            .to_string();
        let Some(params) = v.get("params") else {
            bail!(
                "{} ({id}): no `params`: the probe needs the generator's parameters (a data set from `mbt data build`)",
                at()
            );
        };
        let kind_of = |x: &Value, what: &str| -> anyhow::Result<Kind> {
            let name = x["kind"]
                .as_str()
                .with_context(|| format!("{} ({id}): {what} without a `kind`", at()))?;
            Kind::from_name(name)
                .with_context(|| format!("{} ({id}): unknown kind `{name}` in {what}", at()))
        };
        let mut t = Truth::default();
        for s in params["audio"]["sounds"].as_array().into_iter().flatten() {
            t.heard.push(kind_of(s, "params.audio.sounds")?);
        }
        for o in params["video"]["objects"].as_array().into_iter().flatten() {
            let h = o["height_px"].as_f64().with_context(|| {
                format!("{} ({id}): params.video.objects without `height_px`", at())
            })?;
            t.seen.push((kind_of(o, "params.video.objects")?, h));
        }
        let label = v["label"].as_str().unwrap_or("none");
        t.kind = Kind::EVENTS
            .into_iter()
            .find(|k| crate::data::spec::Class::labels_of_kind(k.name()).contains(&label));
        out.insert(id, t);
    }
    Ok(out)
}

/// One split's pooled vectors and truths.
struct Pooled {
    audio: Vec<f32>,
    audio_dim: usize,
    video: Vec<f32>,
    video_dim: usize,
    truth: Vec<Truth>,
}

fn pool_split(
    fs: &FeatureSplit,
    truths: &HashMap<String, Truth>,
    cells: Pooling,
    frames: usize,
    scale_to_112: f64,
) -> anyhow::Result<Pooled> {
    let h = &fs.header;
    let (ad, vd) = (h.audio_dim, h.video_dim);
    let per_frame = h.video_cells * vd;
    let picked = frame_indices(h.frames, frames, 0);
    let rows = (0..fs.clips())
        .into_par_iter()
        .map(|i| -> anyhow::Result<(Vec<f32>, Vec<f32>, Truth)> {
            let mut a = vec![f32::NEG_INFINITY; ad];
            for cell in fs.clip_audio(i).chunks_exact(ad) {
                for (x, &b) in a.iter_mut().zip(cell) {
                    *x = x.max(f16::from_bits(b).to_f32());
                }
            }
            let v = fs.clip_video(i)?;
            let mut sum = vec![0f32; vd];
            for &f in &picked {
                let frame = &v[f * per_frame..(f + 1) * per_frame];
                let mut p = vec![
                    match cells {
                        Pooling::Max => f32::NEG_INFINITY,
                        Pooling::Mean => 0.0,
                    };
                    vd
                ];
                for cell in frame.chunks_exact(vd) {
                    for (x, &b) in p.iter_mut().zip(cell) {
                        let y = f16::from_bits(b).to_f32();
                        *x = match cells {
                            Pooling::Max => x.max(y),
                            Pooling::Mean => *x + y / h.video_cells as f32,
                        };
                    }
                }
                sum.iter_mut().zip(p).for_each(|(s, y)| *s += y);
            }
            sum.iter_mut().for_each(|s| *s /= frames as f32);
            let id = &h.ids[i];
            let mut t = truths
                .get(id)
                .with_context(|| {
                    format!("clip {id}: in the feature cache but not in manifest.jsonl")
                })?
                .clone();
            t.seen.iter_mut().for_each(|(_, px)| *px *= scale_to_112);
            Ok((a, sum, t))
        })
        .collect::<anyhow::Result<Vec<_>>>()?;
    let mut out = Pooled {
        audio: Vec::with_capacity(rows.len() * ad),
        audio_dim: ad,
        video: Vec::with_capacity(rows.len() * vd),
        video_dim: vd,
        truth: Vec::with_capacity(rows.len()),
    };
    for (a, v, t) in rows {
        out.audio.extend(a);
        out.video.extend(v);
        out.truth.push(t);
    }
    Ok(out)
}

#[derive(Debug, Serialize)]
pub struct KindFigures {
    pub kind: String,
    pub heard_positives: usize,
    pub heard_auc: Option<f64>,
    pub heard_accuracy: f64,
    pub seen_positives: usize,
    pub seen_auc: Option<f64>,
    pub seen_accuracy: f64,
    /// Seen AUC per [`SIZE_BINS`] bin (None where the bin has no positive).
    pub seen_auc_by_height: Vec<Option<f64>>,
}

#[derive(Debug, Serialize)]
pub struct Report {
    pub data: String,
    pub split: String,
    pub train_clips: usize,
    pub clips: usize,
    pub frame_px: f64,
    pub tokenizer_px: usize,
    pub video_cells: usize,
    pub cells: Pooling,
    pub frames: usize,
    pub lambda: f64,
    pub kinds: Vec<KindFigures>,
    pub size_bins_px_at_112: Vec<(f64, f64)>,
    /// Over event kinds: mean AUC heard / seen, and seen by height bin.
    pub mean_heard_auc: f64,
    pub mean_seen_auc: f64,
    pub mean_seen_auc_by_height: Vec<Option<f64>>,
    pub exact_heard_set: f64,
    pub exact_seen_set: f64,
    /// The intersection rule on kinds (doors merged), and `none` recall under it.
    pub intersection_kind_top1: f64,
    pub intersection_none_recall: f64,
    pub intersection_threshold: f64,
    pub seconds: f64,
}

fn mean_some(v: impl Iterator<Item = Option<f64>>) -> Option<f64> {
    let xs: Vec<f64> = v.flatten().collect();
    (!xs.is_empty()).then(|| xs.iter().sum::<f64>() / xs.len() as f64)
}

/// The kind the intersection rule picks, or None (`none`) when no product reaches `tau`.
fn intersect(ph: &[f32], ps: &[f32], tau: f64) -> Option<usize> {
    let (best, score) = ph
        .iter()
        .zip(ps)
        .map(|(a, b)| (*a as f64) * (*b as f64))
        .enumerate()
        .fold(
            (0, f64::NEG_INFINITY),
            |acc, (i, s)| if s > acc.1 { (i, s) } else { acc },
        );
    (score >= tau).then_some(best)
}

pub fn run(args: ProbeArgs) -> anyhow::Result<()> {
    let t0 = std::time::Instant::now();
    let text = std::fs::read_to_string(&args.config)
        .with_context(|| format!("cannot read {}", args.config.display()))?;
    let (cfg, _) = mbt_model::ModelConfig::from_toml_with_train(
        &text,
        &args.config.display().to_string(),
        &args.overrides,
    )
    .map_err(anyhow::Error::msg)?;
    anyhow::ensure!(
        args.lambda > 0.0 && args.iterations > 0,
        "--lambda and --iterations must be positive"
    );
    if args.split == "train" {
        bail!("--split train: the probes are fitted on the training split; score them on `val` (or `test`)");
    }
    let trunks = args
        .trunks
        .clone()
        .unwrap_or_else(mbt_model::trunk::default_dir);
    let data = DataSet::open(&args.data, &cfg.labels)?;
    let truths = truths(&args.data)?;
    let summary: Value = std::fs::read(args.data.join("summary.json"))
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok())
        .unwrap_or(Value::Null);
    let frame_px = summary["clip"]["height"].as_f64().unwrap_or(112.0);
    let scale = 112.0 / frame_px;
    let train = features::load_or_build(&data, &cfg, "train", &trunks, Some(args.train_clips))?;
    let test = features::load_or_build(&data, &cfg, &args.split, &trunks, args.clips)?;
    let frames = args.frames.unwrap_or(cfg.tokenizer.video.num_frames);
    anyhow::ensure!(
        (1..=train.header.frames).contains(&frames),
        "--frames {frames}: expected 1 to {} (the clips' frames)",
        train.header.frames
    );
    let tr = pool_split(&train, &truths, args.cells, frames, scale)?;
    let te = pool_split(&test, &truths, args.cells, frames, scale)?;
    let kinds = Kind::ALL;
    let targets = |p: &Pooled, heard: bool| -> Vec<Vec<bool>> {
        kinds
            .iter()
            .map(|k| {
                p.truth
                    .iter()
                    .map(|t| {
                        if heard {
                            t.heard.contains(k)
                        } else {
                            t.seen.iter().any(|(s, _)| s == k)
                        }
                    })
                    .collect()
            })
            .collect()
    };
    let fit = Fit {
        lambda: args.lambda,
        iterations: args.iterations,
    };
    eprintln!(
        "probe: fitting {} heard and {} seen probes on {} clips",
        kinds.len(),
        kinds.len(),
        train.clips()
    );
    let heard = Logistic::fit(&tr.audio, tr.audio_dim, &targets(&tr, true), fit)?;
    let seen = Logistic::fit(&tr.video, tr.video_dim, &targets(&tr, false), fit)?;
    let (ph, ps) = (heard.predict(&te.audio), seen.predict(&te.video));
    let (yh, ys) = (targets(&te, true), targets(&te, false));
    let mut figures = Vec::new();
    for (o, k) in kinds.iter().enumerate() {
        let sh: Vec<f32> = ph.iter().map(|p| p[o]).collect();
        let ss: Vec<f32> = ps.iter().map(|p| p[o]).collect();
        let acc = |s: &[f32], y: &[bool]| {
            s.iter().zip(y).filter(|(p, &y)| (**p > 0.5) == y).count() as f64 / y.len() as f64
        };
        let by_height = SIZE_BINS
            .iter()
            .map(|&(lo, hi)| {
                // Positives with an object of this kind in the bin, against all negatives.
                let (mut s, mut y) = (Vec::new(), Vec::new());
                for (i, t) in te.truth.iter().enumerate() {
                    let pos = t.seen.iter().any(|(x, h)| x == k && *h >= lo && *h < hi);
                    if pos || !ys[o][i] {
                        s.push(ss[i]);
                        y.push(pos);
                    }
                }
                auc(&s, &y)
            })
            .collect();
        figures.push(KindFigures {
            kind: k.name().to_string(),
            heard_positives: yh[o].iter().filter(|&&y| y).count(),
            heard_auc: auc(&sh, &yh[o]),
            heard_accuracy: acc(&sh, &yh[o]),
            seen_positives: ys[o].iter().filter(|&&y| y).count(),
            seen_auc: auc(&ss, &ys[o]),
            seen_accuracy: acc(&ss, &ys[o]),
            seen_auc_by_height: by_height,
        });
    }
    let exact = |p: &[Vec<f32>], y: &[Vec<bool>]| {
        (0..p.len())
            .filter(|&i| (0..kinds.len()).all(|o| (p[i][o] > 0.5) == y[o][i]))
            .count() as f64
            / p.len().max(1) as f64
    };
    // The intersection rule over event kinds only; its threshold fitted on the training split.
    let events: Vec<usize> = (0..kinds.len())
        .filter(|&o| Kind::EVENTS.contains(&kinds[o]))
        .collect();
    let pick = |h: &[f32], s: &[f32], tau: f64| {
        let h: Vec<f32> = events.iter().map(|&o| h[o]).collect();
        let s: Vec<f32> = events.iter().map(|&o| s[o]).collect();
        intersect(&h, &s, tau).map(|j| kinds[events[j]])
    };
    let score = |ph: &[Vec<f32>], ps: &[Vec<f32>], truth: &[Truth], tau: f64| {
        let right = (0..truth.len())
            .filter(|&i| pick(&ph[i], &ps[i], tau) == truth[i].kind)
            .count();
        let none: Vec<usize> = (0..truth.len())
            .filter(|&i| truth[i].kind.is_none())
            .collect();
        let none_right = none
            .iter()
            .filter(|&&i| pick(&ph[i], &ps[i], tau).is_none())
            .count();
        (
            right as f64 / truth.len().max(1) as f64,
            none_right as f64 / none.len().max(1) as f64,
        )
    };
    let (tph, tps) = (heard.predict(&tr.audio), seen.predict(&tr.video));
    // Each candidate threshold scored once on the training split; the best one kept.
    let tau = (1..50)
        .map(|i| {
            let tau = i as f64 / 50.0;
            (tau, score(&tph, &tps, &tr.truth, tau).0)
        })
        .max_by(|a, b| a.1.total_cmp(&b.1))
        .map_or(0.25, |(tau, _)| tau);
    let (top1, none_recall) = score(&ph, &ps, &te.truth, tau);
    let ev = |f: &dyn Fn(&KindFigures) -> Option<f64>| {
        mean_some(
            figures
                .iter()
                .filter(|k| k.kind != Kind::Other.name())
                .map(f),
        )
        .unwrap_or(f64::NAN)
    };
    let report = Report {
        data: args.data.display().to_string(),
        split: args.split.clone(),
        train_clips: train.clips(),
        clips: test.clips(),
        frame_px,
        tokenizer_px: cfg.tokenizer.video.height,
        video_cells: test.header.video_cells,
        cells: args.cells,
        frames,
        lambda: args.lambda,
        mean_heard_auc: ev(&|k| k.heard_auc),
        mean_seen_auc: ev(&|k| k.seen_auc),
        mean_seen_auc_by_height: (0..SIZE_BINS.len())
            .map(|b| {
                mean_some(
                    figures
                        .iter()
                        .filter(|k| k.kind != Kind::Other.name())
                        .map(|k| k.seen_auc_by_height[b]),
                )
            })
            .collect(),
        kinds: figures,
        size_bins_px_at_112: SIZE_BINS.to_vec(),
        exact_heard_set: exact(&ph, &yh),
        exact_seen_set: exact(&ps, &ys),
        intersection_kind_top1: top1,
        intersection_none_recall: none_recall,
        intersection_threshold: tau,
        seconds: t0.elapsed().as_secs_f64(),
    };
    print!("{}", table(&report));
    if let Some(out) = &args.out {
        std::fs::write(out, serde_json::to_string_pretty(&report)? + "\n")
            .with_context(|| format!("cannot write {}", out.display()))?;
    }
    Ok(())
}

/// The report as a plain-text table.
fn table(r: &Report) -> String {
    let f = |x: Option<f64>| x.map_or("-".into(), |v| format!("{:.2}", v));
    let mut s = format!(
        "probe: {} ({} px frames, tokenizer {} px, {} cells per frame, {:?}-pooled, {} frames per window); fitted on {} train clips, scored on {} {} clips\n",
        r.data, r.frame_px, r.tokenizer_px, r.video_cells, r.cells, r.frames, r.train_clips, r.clips, r.split
    );
    s += "kind               heard: n   AUC   acc | seen: n   AUC   acc | seen AUC by height (px of 112): <15  15-30  30-60  >=60\n";
    for k in &r.kinds {
        s += &format!(
            "{:<18} {:>7} {:>5} {:>5.2} | {:>6} {:>5} {:>5.2} | {:>40} {:>6} {:>6} {:>5}\n",
            k.kind,
            k.heard_positives,
            f(k.heard_auc),
            k.heard_accuracy,
            k.seen_positives,
            f(k.seen_auc),
            k.seen_accuracy,
            f(k.seen_auc_by_height[0]),
            f(k.seen_auc_by_height[1]),
            f(k.seen_auc_by_height[2]),
            f(k.seen_auc_by_height[3]),
        );
    }
    s += &format!(
        "mean over event kinds: heard AUC {:.3}, seen AUC {:.3} (by height {} / {} / {} / {})\n",
        r.mean_heard_auc,
        r.mean_seen_auc,
        f(r.mean_seen_auc_by_height[0]),
        f(r.mean_seen_auc_by_height[1]),
        f(r.mean_seen_auc_by_height[2]),
        f(r.mean_seen_auc_by_height[3]),
    );
    s += &format!(
        "exact set of kinds: heard {:.1} %, seen {:.1} %\nintersection rule (argmax p_heard * p_seen, `none` under {:.2}; doors merged): kind top-1 {:.1} %, none recall {:.1} %\n",
        100.0 * r.exact_heard_set,
        100.0 * r.exact_seen_set,
        r.intersection_threshold,
        100.0 * r.intersection_kind_top1,
        100.0 * r.intersection_none_recall
    );
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_intersection_rule_takes_the_best_product_or_none() {
        // Kind 0 heard strongly but not seen; kind 1 heard and seen: kind 1.
        assert_eq!(intersect(&[0.9, 0.6], &[0.1, 0.7], 0.3), Some(1));
        // Nothing reaches the threshold: none.
        assert_eq!(intersect(&[0.9, 0.2], &[0.2, 0.9], 0.3), None);
    }
}
