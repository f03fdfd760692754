//! `mbt eval`: a checkpoint (burn) or an exported ONNX model (tract) on a data set split, with
//! multi-crop averaging; fused, video-head and audio-head metrics, a JSON report and a
//! confusion-matrix picture.
//!
//! Both paths tokenize with the same [`Tokenizer`] and compute metrics with the same code, so
//! the checkpoint and its export can be compared number for number.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context};
use mbt_model::train::{predict, Batch, Predictions};
use mbt_model::{Mbt, ModelConfig};
use serde::Serialize;

use super::augment::AugmentPlan;
use super::dataset::{DataSet, Split, Tokenizer};
use super::make_batch;
use super::metrics::{self, Metrics};

#[derive(Debug, Clone, Serialize)]
pub struct Evaluation {
    pub split: String,
    pub crops: usize,
    pub fused: Metrics,
    /// Per stream head, in stream order (video, audio).
    pub streams: Vec<Metrics>,
    /// Mean softmax cross-entropy of the fused logits (crop-averaged) against the labels.
    pub loss: f64,
    /// Clip ids and the fused top-1 class index of each (to compare two models clip by clip,
    /// e.g. int8 against fp32).
    pub ids: Vec<String>,
    pub predictions: Vec<usize>,
    /// Per label but `none`: the event threshold on the fused softmax score that maximises
    /// that label's F1 on this split (grid 0.05-0.95 in steps of 0.05; the higher on a tie).
    /// Computed on the validation split, `mbt export --thresholds` writes them into the model.
    pub thresholds: std::collections::BTreeMap<String, f32>,
    /// The crop-averaged fused logits `[clips, classes]`, for `mbt eval --logits` (decision
    /// rules studied after the fact on the validation split, e.g. per-class thresholds or
    /// offsets); not in eval.json, which stays small.
    #[serde(skip)]
    pub fused_logits: Vec<f32>,
    /// The clips' label indices, in `ids` order (for `--logits`).
    #[serde(skip)]
    pub targets: Vec<usize>,
}

/// See [`Evaluation::thresholds`].
fn f1_thresholds(
    logits: &[f32],
    y: &[usize],
    labels: &[String],
) -> std::collections::BTreeMap<String, f32> {
    let classes = labels.len();
    let probs: Vec<Vec<f32>> = logits
        .chunks(classes)
        .map(|r| {
            let m = r.iter().cloned().fold(f32::NEG_INFINITY, f32::max);
            let e: Vec<f32> = r.iter().map(|v| (v - m).exp()).collect();
            let s: f32 = e.iter().sum();
            e.iter().map(|v| v / s).collect()
        })
        .collect();
    let mut out = std::collections::BTreeMap::new();
    for (c, label) in labels.iter().enumerate() {
        if label == "none" {
            continue;
        }
        let mut best = (-1.0f64, 0.5f32);
        for k in 1..=19 {
            let t = k as f32 * 0.05;
            let (mut tp, mut fp, mut fn_) = (0usize, 0usize, 0usize);
            for (p, &yy) in probs.iter().zip(y) {
                match (p[c] >= t, yy == c) {
                    (true, true) => tp += 1,
                    (true, false) => fp += 1,
                    (false, true) => fn_ += 1,
                    _ => {}
                }
            }
            let f1 = if tp == 0 {
                0.0
            } else {
                2.0 * tp as f64 / (2 * tp + fp + fn_) as f64
            };
            if f1 >= best.0 {
                best = (f1, t);
            }
        }
        out.insert(label.clone(), (best.1 * 100.0).round() / 100.0);
    }
    out
}

/// Runs `predict_batch` over `split` once per crop, averages logits over crops, scores them.
fn collect(
    tok: &Tokenizer,
    split: &Split,
    labels: &[String],
    crops: usize,
    batch_size: usize,
    mut predict_batch: impl FnMut(&Batch) -> anyhow::Result<Predictions>,
) -> anyhow::Result<Evaluation> {
    let classes = labels.len();
    let mut sums: Vec<Vec<f32>> = Vec::new();
    // ~8 frames (80 ms) for a 208-frame window. None with the YAMNet front end: a model with
    // trunks is evaluated on cached features of the unshifted patches, and its export must
    // see the same crops (crops then differ by frame phase only).
    let max_shift = match tok.cfg.audio.front_end {
        mbt_core::AudioFrontEnd::Kaldi => tok.cfg.audio.num_frames / 26,
        mbt_core::AudioFrontEnd::Yamnet => 0,
    };
    for k in 0..crops {
        let plan = AugmentPlan::eval_crop(k, crops, max_shift);
        let mut outs: Vec<Vec<f32>> = Vec::new();
        for chunk in split.clips.chunks(batch_size.max(1)) {
            let clips: Vec<_> = chunk.iter().collect();
            let plans = vec![plan.clone(); clips.len()];
            let batch = make_batch(tok, &clips, &plans, classes, false)?;
            append(&mut outs, predict_batch(&batch)?);
        }
        add_crop(&mut sums, outs);
    }
    let y: Vec<usize> = split.clips.iter().map(|c| c.label).collect();
    let ids = split.clips.iter().map(|c| c.id.clone()).collect();
    Ok(score(sums, &y, ids, labels, &split.name, crops))
}

/// Appends a batch's logits (fused, then each stream's) to one crop's outputs.
fn append(outs: &mut Vec<Vec<f32>>, p: Predictions) {
    let all = std::iter::once(p.fused).chain(p.streams);
    if outs.is_empty() {
        *outs = all.collect();
    } else {
        for (o, v) in outs.iter_mut().zip(all) {
            o.extend(v);
        }
    }
}

/// Adds one crop's outputs to the running sums over crops.
fn add_crop(sums: &mut Vec<Vec<f32>>, outs: Vec<Vec<f32>>) {
    if sums.is_empty() {
        *sums = outs;
    } else {
        for (s, o) in sums.iter_mut().zip(outs) {
            s.iter_mut().zip(o).for_each(|(a, b)| *a += b);
        }
    }
}

/// Metrics from per-crop logit sums (fused first, then each stream's), `crops` crops.
pub fn score(
    mut sums: Vec<Vec<f32>>,
    y: &[usize],
    ids: Vec<String>,
    labels: &[String],
    split: &str,
    crops: usize,
) -> Evaluation {
    let classes = labels.len();
    let n = y.len();
    for s in sums.iter_mut() {
        s.iter_mut().for_each(|v| *v /= crops as f32);
    }
    let loss = sums[0]
        .chunks(classes)
        .zip(y)
        .map(|(r, &t)| {
            let m = r.iter().cloned().fold(f32::NEG_INFINITY, f32::max) as f64;
            let lse = m + r.iter().map(|&v| (v as f64 - m).exp()).sum::<f64>().ln();
            lse - r[t] as f64
        })
        .sum::<f64>()
        / n.max(1) as f64;
    let predictions = sums[0]
        .chunks(classes)
        .map(|r| {
            r.iter()
                .enumerate()
                .fold(
                    (0, f32::NEG_INFINITY),
                    |b, (i, &v)| if v > b.1 { (i, v) } else { b },
                )
                .0
        })
        .collect();
    let thresholds = f1_thresholds(&sums[0], y, labels);
    Evaluation {
        thresholds,
        fused_logits: sums[0].clone(),
        targets: y.to_vec(),
        ids,
        predictions,
        split: split.to_string(),
        crops,
        fused: metrics::compute(&sums[0], y, labels),
        streams: sums[1..]
            .iter()
            .map(|s| metrics::compute(s, y, labels))
            .collect(),
        loss,
    }
}

/// Evaluates burn weights on cached trunk features: crop `k` samples the frames at phase `k`
/// (the audio patches are the same for every crop: they are cached once per clip).
pub fn evaluate_features(
    model: &Mbt,
    cfg: &ModelConfig,
    split: &super::features::FeatureSplit,
    crops: usize,
    batch_size: usize,
) -> anyhow::Result<Evaluation> {
    let n = split.clips();
    let mut sums: Vec<Vec<f32>> = Vec::new();
    for k in 0..crops {
        let mut outs: Vec<Vec<f32>> = Vec::new();
        let idx: Vec<usize> = (0..n).collect();
        for chunk in idx.chunks(batch_size.max(1)) {
            let b = split.batch(cfg, chunk, &vec![k; chunk.len()], false)?;
            append(&mut outs, predict(model, cfg, &b));
        }
        add_crop(&mut sums, outs);
    }
    Ok(score(
        sums,
        &split.header.labels,
        split.header.ids.clone(),
        &cfg.labels,
        &split.name,
        crops,
    ))
}

/// Evaluates burn weights.
pub fn evaluate_model(
    model: &Mbt,
    cfg: &ModelConfig,
    tok: &Tokenizer,
    split: &Split,
    crops: usize,
    batch_size: usize,
) -> anyhow::Result<Evaluation> {
    collect(tok, split, &cfg.labels, crops, batch_size, |b| {
        Ok(predict(model, cfg, b))
    })
}

/// Evaluates an exported model on tract.
pub fn evaluate_onnx(
    model: &mbt_infer::Model,
    tok: &Tokenizer,
    split: &Split,
    crops: usize,
    batch_size: usize,
) -> anyhow::Result<Evaluation> {
    let labels = model.metadata.labels.clone();
    evaluate_exported(&labels, tok, split, crops, batch_size, |n, v, a| {
        model.run(n, v, a)
    })
}

/// Evaluates an exported model on whichever runtime `run` drives (tract or ONNX Runtime).
fn evaluate_exported(
    labels: &[String],
    tok: &Tokenizer,
    split: &Split,
    crops: usize,
    batch_size: usize,
    mut run: impl FnMut(usize, &[f32], &[f32]) -> Result<mbt_infer::Logits, mbt_infer::InferError>,
) -> anyhow::Result<Evaluation> {
    collect(tok, split, labels, crops, batch_size, |b| {
        let out = run(b.n, &b.inputs[0], &b.inputs[1])?;
        Ok(Predictions {
            fused: out.fused,
            streams: vec![out.video, out.audio],
        })
    })
}

pub struct EvalArgs {
    pub model: PathBuf,
    pub config: Option<PathBuf>,
    pub data: PathBuf,
    pub split: String,
    pub crops: usize,
    pub batch_size: usize,
    pub limit: Option<usize>,
    pub out: Option<PathBuf>,
    /// Also write the fused logits, labels and clip ids as JSON here.
    pub logits: Option<PathBuf>,
    pub runtime: crate::cli::RuntimeArgs,
}

/// A checkpoint's model config: `RUN/config.toml` beside `RUN/best.bpk` or
/// `RUN/checkpoint/model.bpk`, or the one given with `--config`.
pub fn checkpoint_config(weights: &Path, config: Option<&Path>) -> anyhow::Result<ModelConfig> {
    if let Some(c) = config {
        let text =
            std::fs::read_to_string(c).with_context(|| format!("cannot read {}", c.display()))?;
        return ModelConfig::from_toml(&text, &c.display().to_string(), &[])
            .map_err(anyhow::Error::msg);
    }
    for dir in weights.ancestors().skip(1).take(2) {
        let p = dir.join("config.toml");
        if p.exists() {
            return Ok(super::read_run_config(dir)?.0);
        }
    }
    bail!(
        "{}: no config.toml beside this checkpoint; pass --config",
        weights.display()
    )
}

/// Resolves `RUN` (a run directory) or a `.bpk` file to the weights file.
pub fn checkpoint_weights(path: &Path) -> anyhow::Result<PathBuf> {
    if path.is_dir() {
        for c in [
            path.join("best.bpk"),
            path.join("checkpoint").join("model.bpk"),
        ] {
            if c.exists() {
                return Ok(c);
            }
        }
        bail!(
            "{}: a directory without best.bpk or checkpoint/model.bpk (not a `mbt train` run)",
            path.display()
        );
    }
    if !path.exists() {
        bail!("{}: no such file", path.display());
    }
    Ok(path.to_path_buf())
}

pub fn run(args: EvalArgs) -> anyhow::Result<()> {
    if args.crops == 0 {
        bail!("--crops must be at least 1");
    }
    let is_onnx = args.model.extension().is_some_and(|e| e == "onnx");
    let (labels, tok_cfg) = if is_onnx {
        let m = mbt_infer::Model::load(&args.model, "cpu")?;
        (m.metadata.labels.clone(), m.metadata.tokenizer.clone())
    } else {
        let w = checkpoint_weights(&args.model)?;
        let cfg = checkpoint_config(&w, args.config.as_deref())?;
        (cfg.labels.clone(), cfg.tokenizer.clone())
    };
    let data = DataSet::open(&args.data, &labels)?;
    if !is_onnx {
        // A checkpoint with trunks runs on the cached trunk features (computed on first use).
        let w = checkpoint_weights(&args.model)?;
        let cfg = checkpoint_config(&w, args.config.as_deref())?;
        if cfg.trunks.audio.is_some() || cfg.trunks.video.is_some() {
            let t0 = std::time::Instant::now();
            let feats = super::features::load_or_build(
                &data,
                &cfg,
                &args.split,
                &mbt_model::trunk::default_dir(),
                args.limit,
            )?;
            let model = mbt_model::train::load_model(&cfg, &w)
                .with_context(|| format!("loading {}", w.display()))?;
            let ev = evaluate_features(&model, &cfg, &feats, args.crops, args.batch_size)?;
            return report(&args, &ev, &labels, t0);
        }
    }
    let split = data.load(&args.split, &labels, &tok_cfg, args.limit)?;
    let tok = Tokenizer::new(&tok_cfg)?;
    let t0 = std::time::Instant::now();
    let rt = &args.runtime;
    if !is_onnx && rt.backend != "tract" {
        bail!(
            "--backend {}: only an .onnx model runs on another runtime (a checkpoint runs on burn)",
            rt.backend
        );
    }
    let ev = if is_onnx && rt.backend == "ort" {
        let lib = rt
            .ort_lib
            .clone()
            .unwrap_or_else(mbt_infer::onnxruntime::default_library);
        let mut m = mbt_infer::onnxruntime::OrtModel::load(
            &args.model,
            &lib,
            &rt.providers,
            rt.ort_threads,
        )?;
        eprintln!(
            "evaluating on onnxruntime-{} [{}]",
            m.version,
            m.providers.join(", ")
        );
        let labels = m.metadata.labels.clone();
        evaluate_exported(
            &labels,
            &tok,
            &split,
            args.crops,
            args.batch_size,
            |n, v, a| m.run(n, v, a),
        )?
    } else if is_onnx {
        if rt.backend != "tract" {
            bail!("--backend {}: expected `tract` or `ort`", rt.backend);
        }
        let m = mbt_infer::Model::load(&args.model, "cpu")?;
        evaluate_onnx(&m, &tok, &split, args.crops, args.batch_size)?
    } else {
        let w = checkpoint_weights(&args.model)?;
        let cfg = checkpoint_config(&w, args.config.as_deref())?;
        let model = mbt_model::train::load_model(&cfg, &w)
            .with_context(|| format!("loading {}", w.display()))?;
        evaluate_model(&model, &cfg, &tok, &split, args.crops, args.batch_size)?
    };
    report(&args, &ev, &labels, t0)
}

/// Prints the evaluation and, with `--out`, writes eval.json and the confusion picture.
fn report(
    args: &EvalArgs,
    ev: &Evaluation,
    labels: &[String],
    t0: std::time::Instant,
) -> anyhow::Result<()> {
    let secs = t0.elapsed().as_secs_f64();
    if let Some(path) = &args.logits {
        let classes = labels.len();
        let rows: Vec<&[f32]> = ev.fused_logits.chunks(classes).collect();
        let json = serde_json::json!({
            "split": ev.split,
            "crops": ev.crops,
            "labels": labels,
            "ids": ev.ids,
            "targets": ev.targets,
            "logits": rows,
        });
        super::atomic_write(path, serde_json::to_string(&json)?.as_bytes())?;
        eprintln!("wrote {}", path.display());
    }
    let data = DataSet::open(&args.data, labels)?;
    let labels = labels.to_vec();
    print_report(&args.model, ev, secs);
    if let Some(out) = &args.out {
        std::fs::create_dir_all(out).with_context(|| format!("cannot create {}", out.display()))?;
        let report = serde_json::json!({
            "model": args.model.display().to_string(),
            "data": args.data.display().to_string(),
            "data_manifest_sha256": data.manifest_sha256,
            "seconds": secs,
            "evaluation": ev,
        });
        super::atomic_write(
            &out.join("eval.json"),
            serde_json::to_string_pretty(&report)?.as_bytes(),
        )?;
        let png = out.join("confusion.png");
        if let Err(e) = super::plot::confusion(&png, &ev.fused, &labels) {
            eprintln!("mbt eval: warning: no confusion picture: {e:#}");
        }
        eprintln!(
            "wrote {} and {}",
            out.join("eval.json").display(),
            png.display()
        );
    }
    Ok(())
}

fn print_report(model: &Path, ev: &Evaluation, secs: f64) {
    println!(
        "{} on {} ({} clips, {} crop(s), {:.1} s)",
        model.display(),
        ev.split,
        ev.fused.samples,
        ev.crops,
        secs
    );
    println!(
        "{:<8} {:>8} {:>8} {:>8}",
        "output", "top-1 %", "top-5 %", "mAP %"
    );
    for (name, m) in [
        ("fused", &ev.fused),
        ("video", &ev.streams[0]),
        ("audio", &ev.streams[1]),
    ] {
        println!("{name:<8} {:>8.2} {:>8.2} {:>8.2}", m.top1, m.top5, m.map);
    }
    println!(
        "\n{:<20} {:>9} {:>9} {:>7}",
        "class (fused)", "precision", "recall", "n"
    );
    for c in &ev.fused.per_class {
        println!(
            "{:<20} {:>9.3} {:>9.3} {:>7}",
            c.label, c.precision, c.recall, c.support
        );
    }
}
