//! `mbt train --init MODEL --data DIR [--add-labels a,b]`: personalisation. Fine-tunes the
//! fusion part and heads of an existing model on a user's own clips (the trunks stay frozen:
//! their features are computed once per clip, as for `mbt train` on a model with trunks), adds
//! labels, and reports what it gained and what it forgot.
//!
//! The run, in order: read the initial model ([`super::init`]), grow its heads by the new
//! labels (`Mbt::with_added_classes`: old columns kept exactly), compute or read the trunk
//! features of the user's splits (and of `--forgetting-data`, `--replay`), score the initial
//! model, train a few epochs, score again, write `RUN/best.bpk` (the final weights; `mbt eval
//! --model RUN` and a later `--init RUN` read it), `RUN/model.onnx` (the composed file for
//! `mbtd`, version `<old>+personal.<n>`, old labels' thresholds carried over) and
//! `RUN/personalise.json` (the report).
//!
//! Forgetting: ~100 clips of one house would pull every old label towards what that house
//! shows. The standard data set is not on the board, so the default remedy needs none:
//! distillation of the old labels' logits from the initial model on the user's own clips
//! (`train.distill_weight`, learning without forgetting), with a short, low-learning-rate
//! recipe. Also offered: `train.trainable = "heads"` (only the heads move) and `--replay DIR`
//! (cached features of a standard data set's training clips mixed into every epoch, where one
//! is at hand). `--forgetting-data DIR` measures it: the standard split's top-1 before and
//! after, on a fixed subset (its first N clips).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{bail, Context};
use mbt_model::replay::ReplaySet;
use mbt_model::train::{predict, Batch, TrainConfig, Trainable, Trainer};
use mbt_model::{Mbt, ModelConfig};
use serde::Serialize;

use super::dataset::DataSet;
use super::eval::{score, Evaluation};
use super::features::{load_or_build, FeatureSplit};
use super::{argmax, atomic_write, smooth, step_seed, write_run_config, TrainArgs};
use crate::data::rng::Rng;

/// What `--init` adds to `mbt train` (see cli.rs).
pub struct InitArgs {
    pub init: PathBuf,
    pub add_labels: Vec<String>,
    pub forgetting_data: Option<PathBuf>,
    pub forgetting_split: String,
    pub forgetting_limit: usize,
    pub replay: Option<PathBuf>,
    pub replay_limit: usize,
    pub no_replay: bool,
    pub new_label_threshold: f32,
}

/// The standard clips mixed into the user's: a shipped replay set (projected tokens) or a
/// standard data set's cached trunk features.
enum Replay {
    Set {
        path: PathBuf,
        set: ReplaySet,
        /// Set label index -> model label index.
        map: Vec<usize>,
    },
    Data {
        path: PathBuf,
        split: FeatureSplit,
    },
}

impl Replay {
    fn clips(&self) -> usize {
        match self {
            Replay::Set { set, .. } => set.clips(),
            Replay::Data { split, .. } => split.clips(),
        }
    }

    fn path(&self) -> &Path {
        match self {
            Replay::Set { path, .. } | Replay::Data { path, .. } => path,
        }
    }
}

/// The fine-tuning recipe before `--set train.*` overrides: 20 short epochs (an epoch is one
/// pass over the user's clips, each batch as many replayed standard clips as user clips),
/// projections frozen so the shipped replay set stays exact, distillation of the old labels
/// on (chosen on validation splits: models/README.md, "Personalisation").
pub fn recipe() -> TrainConfig {
    TrainConfig {
        epochs: 20,
        batch_size: 32,
        optimizer: mbt_model::train::Optimizer::AdamW,
        lr: 3e-3,
        warmup_epochs: 1.0,
        min_lr_ratio: 0.1,
        weight_decay: 0.01,
        label_smoothing: 0.1,
        mixup_prob: 0.0,
        distill_weight: 1.0,
        distill_temperature: 2.0,
        trainable: Trainable::Fusion,
        replay_ratio: 1.0,
        ..TrainConfig::default()
    }
}

/// One scored set: overall, on the clips of the added labels and on the others.
#[derive(Debug, Clone, Serialize)]
pub struct Score {
    pub clips: usize,
    pub top1: f64,
    /// Top-1 on the clips whose label was added (None: no such clip).
    pub top1_new_labels: Option<f64>,
    /// Top-1 on the clips of the model's old labels.
    pub top1_old_labels: Option<f64>,
    /// Clips of old labels the model called one of the new labels.
    pub old_called_new: usize,
    /// Per label: (recall %, clips).
    pub recall: BTreeMap<String, (f64, usize)>,
}

fn summarise(ev: &Evaluation, labels: &[String], old: usize) -> Score {
    let pairs: Vec<(usize, usize)> = ev
        .targets
        .iter()
        .copied()
        .zip(ev.predictions.iter().copied())
        .collect();
    let acc = |keep: &dyn Fn(usize) -> bool| {
        let sel: Vec<&(usize, usize)> = pairs.iter().filter(|(y, _)| keep(*y)).collect();
        (!sel.is_empty())
            .then(|| 100.0 * sel.iter().filter(|(y, p)| y == p).count() as f64 / sel.len() as f64)
    };
    let mut recall = BTreeMap::new();
    for (c, l) in labels.iter().enumerate() {
        let n = pairs.iter().filter(|(y, _)| *y == c).count();
        if n > 0 {
            let hit = pairs.iter().filter(|(y, p)| *y == c && *p == c).count();
            recall.insert(l.clone(), (100.0 * hit as f64 / n as f64, n));
        }
    }
    Score {
        clips: pairs.len(),
        top1: acc(&|_| true).unwrap_or(0.0),
        top1_new_labels: acc(&|y| y >= old),
        top1_old_labels: acc(&|y| y < old),
        old_called_new: pairs.iter().filter(|(y, p)| *y < old && *p >= old).count(),
        recall,
    }
}

/// Scores `model` (of `cfg`, which may have fewer labels than `wide`: the initial model,
/// which cannot say the new ones) on cached features, `crops` frame phases averaged; labels
/// from index `old` on are the added ones.
fn evaluate(
    model: &Mbt,
    cfg: &ModelConfig,
    wide: &ModelConfig,
    old: usize,
    split: &FeatureSplit,
    crops: usize,
) -> anyhow::Result<Score> {
    let (n, classes, all) = (split.clips(), cfg.num_classes(), wide.num_classes());
    let mut sums: Vec<Vec<f32>> = Vec::new();
    let idx: Vec<usize> = (0..n).collect();
    for k in 0..crops {
        let mut outs: Vec<Vec<f32>> = Vec::new();
        for chunk in idx.chunks(64) {
            // Batches are built for the wide label list (targets are not read here).
            let b = split.batch(wide, chunk, &vec![k; chunk.len()], false)?;
            let p = predict(model, cfg, &b);
            let widen = |v: Vec<f32>| -> Vec<f32> {
                v.chunks(classes)
                    .flat_map(|r| {
                        r.iter()
                            .copied()
                            .chain(std::iter::repeat_n(-1e9, all - classes))
                    })
                    .collect()
            };
            let rows = std::iter::once(p.fused)
                .chain(p.streams)
                .map(widen)
                .collect::<Vec<_>>();
            if outs.is_empty() {
                outs = rows;
            } else {
                for (o, r) in outs.iter_mut().zip(rows) {
                    o.extend(r);
                }
            }
        }
        if sums.is_empty() {
            sums = outs;
        } else {
            for (s, o) in sums.iter_mut().zip(outs) {
                s.iter_mut().zip(o).for_each(|(a, b)| *a += b);
            }
        }
    }
    let ev = score(
        sums,
        &split.header.labels,
        split.header.ids.clone(),
        &wide.labels,
        &split.name,
        crops,
    );
    Ok(summarise(&ev, &wide.labels, old))
}

/// Features of `split` (first `limit` clips) with label indices for `labels`, whatever label
/// list the cache was built with.
pub(super) fn features(
    data: &DataSet,
    cfg: &ModelConfig,
    split: &str,
    trunks: &Path,
    limit: Option<usize>,
) -> anyhow::Result<FeatureSplit> {
    let mut f = load_or_build(data, cfg, split, trunks, limit)?;
    f.header.labels = data.label_indices(split, limit, &cfg.labels)?;
    if f.header.labels.len() != f.clips() {
        bail!(
            "{}: the feature cache of `{split}` holds {} clips, the manifest {} (delete {} to rebuild)",
            data.dir.display(),
            f.clips(),
            f.header.labels.len(),
            super::features::cache_dir(data, cfg).display()
        );
    }
    Ok(f)
}

/// Two batches as one (user clips and replayed ones).
fn join(mut a: Batch, b: Batch) -> Batch {
    a.n += b.n;
    for (x, y) in a.inputs.iter_mut().zip(b.inputs) {
        x.extend(y);
    }
    a.targets.extend(b.targets);
    a
}

fn print_score(what: &str, before: &Score, after: &Score) {
    let pct = |x: Option<f64>| x.map_or("-".to_string(), |v| format!("{v:.1}"));
    println!(
        "{what:<28} {:>5} clips  top-1 {:>5.1} -> {:>5.1} %   new labels {:>5} -> {:>5} %   old labels {:>5} -> {:>5} %   old called new {} -> {}",
        after.clips,
        before.top1,
        after.top1,
        pct(before.top1_new_labels),
        pct(after.top1_new_labels),
        pct(before.top1_old_labels),
        pct(after.top1_old_labels),
        before.old_called_new,
        after.old_called_new
    );
}

pub fn run(args: &TrainArgs, init: &InitArgs) -> anyhow::Result<()> {
    let t_start = Instant::now();
    if args.resume || args.config.is_some() {
        bail!("--init starts a new run from the model's own config: it excludes --config and --resume");
    }
    if !(init.new_label_threshold > 0.0 && init.new_label_threshold <= 1.0) {
        bail!(
            "--new-label-threshold {}: expected 0 < threshold <= 1",
            init.new_label_threshold
        );
    }
    let run = &args.out;
    if run.join("personalise.json").exists() || run.join("checkpoint").exists() {
        bail!(
            "{} already holds a run; choose another --out",
            run.display()
        );
    }
    let initial = super::init::load(&init.init)?;
    super::init::check_new_labels(&initial.config.labels, &init.add_labels)?;
    let old_cfg = initial.config.clone();
    let old = old_cfg.num_classes();
    let mut cfg = old_cfg.clone();
    cfg.labels.extend(init.add_labels.iter().cloned());
    // The recipe, then `--set` (train.* only: the model's shape is the file's).
    let mut table = toml::Table::try_from(&cfg).context("serialising the model config")?;
    table.insert(
        "train".into(),
        toml::Value::try_from(recipe()).context("serialising the recipe")?,
    );
    let origin = format!("{} (--init)", init.init.display());
    let (set_cfg, train_cfg) =
        super::parse_config(&toml::to_string(&table)?, &origin, &args.overrides)?;
    if set_cfg != cfg {
        bail!("--set: with --init only train.* settings can change (the model's shape and labels come from {})", init.init.display());
    }
    if let Err(e) = rayon::ThreadPoolBuilder::new()
        .num_threads(train_cfg.threads)
        .build_global()
    {
        eprintln!("mbt train: warning: thread pool already set up ({e})");
    }
    std::fs::create_dir_all(run).with_context(|| format!("cannot create {}", run.display()))?;
    let trunks = args
        .trunks
        .clone()
        .unwrap_or_else(mbt_model::trunk::default_dir);
    let version = super::init::next_version(&initial.version);
    eprintln!(
        "personalising {} ({}, {} labels) -> {version}, adding {:?}",
        init.init.display(),
        initial.version,
        old,
        init.add_labels
    );

    // Trunk features: the user's splits, the forgetting set, the replay set.
    let t0 = Instant::now();
    let data = DataSet::open(&args.data, &cfg.labels)?;
    let train = features(&data, &cfg, "train", &trunks, args.limit_train)?;
    let held: Vec<FeatureSplit> = ["val", "test"]
        .iter()
        .filter(|s| data.has_split(s))
        .map(|s| features(&data, &cfg, s, &trunks, args.limit_val))
        .collect::<anyhow::Result<_>>()?;
    if held.is_empty() {
        eprintln!(
            "mbt train: warning: {} has no val or test clips: nothing held back to score the result on",
            args.data.display()
        );
    }
    let forgetting = match &init.forgetting_data {
        Some(dir) => {
            let d = DataSet::open(dir, &cfg.labels)?;
            Some((
                dir.clone(),
                features(
                    &d,
                    &cfg,
                    &init.forgetting_split,
                    &trunks,
                    Some(init.forgetting_limit),
                )?,
            ))
        }
        None => None,
    };
    let projected = matches!(
        train_cfg.trainable,
        Trainable::Fusion | Trainable::Heads | Trainable::NewLabels
    );
    let shipped = super::replay::beside(&init.init);
    let replay_path = match (&init.replay, init.no_replay) {
        (_, true) => None,
        (Some(p), false) => Some(p.clone()),
        (None, false) => shipped.is_file().then_some(shipped),
    };
    let replay = match replay_path {
        Some(path) if path.is_dir() => {
            let d = DataSet::open(&path, &cfg.labels)?;
            let split = features(&d, &cfg, "train", &trunks, Some(init.replay_limit))?;
            Some(Replay::Data { path, split })
        }
        Some(path) => {
            if !projected {
                bail!(
                    "{}: a replay set holds projected tokens, which stay valid only while the projections are frozen: use it with train.trainable = \"fusion\" (the default), \"heads\" or \"new_labels\", or give --replay a data set directory",
                    path.display()
                );
            }
            let (set, map) = super::replay::open(&path, &initial.model, &cfg.labels)?;
            Some(Replay::Set { path, set, map })
        }
        None => None,
    };
    match &replay {
        Some(r) => eprintln!(
            "replay: {} standard clips from {} mixed into every batch ({} per user clip)",
            r.clips(),
            r.path().display(),
            train_cfg.replay_ratio
        ),
        None if init.no_replay => eprintln!(
            "mbt train: warning: --no-replay: the new labels may take over the old ones' inputs (models/README.md, \"Personalisation\")"
        ),
        None => eprintln!(
            "mbt train: warning: no replay set ({} not found, no --replay): the new labels may take over the old ones' inputs (models/README.md, \"Personalisation\")",
            super::replay::beside(&init.init).display()
        ),
    }
    let feature_seconds = t0.elapsed().as_secs_f64();

    // Before.
    let t0 = Instant::now();
    let crops = 4;
    let mut before = Vec::new();
    for h in &held {
        before.push(evaluate(&initial.model, &old_cfg, &cfg, old, h, crops)?);
    }
    let forgetting_before = match &forgetting {
        Some((_, f)) => Some(evaluate(&initial.model, &old_cfg, &cfg, old, f, crops)?),
        None => None,
    };
    let mut eval_seconds = t0.elapsed().as_secs_f64();

    // Train.
    let t0 = Instant::now();
    let grown = initial
        .model
        .clone()
        .with_added_classes(init.add_labels.len());
    let mut trainer = Trainer::from_weights(&cfg, &train_cfg, args.seed, grown)?;
    if train_cfg.trainable == Trainable::NewLabels {
        trainer.keep_head_columns(old);
    }
    trainer.set_projected_inputs(projected);
    let n_user = train.clips();
    if n_user == 0 {
        bail!(
            "{}: no training clips (split `train`) to fine-tune on",
            args.data.display()
        );
    }
    let n_replay = replay.as_ref().map_or(0, |r| r.clips());
    let bs = train_cfg.batch_size.min(n_user);
    let per_epoch = n_user.div_ceil(bs);
    let total = per_epoch * train_cfg.epochs;
    let warmup = (train_cfg.warmup_epochs * per_epoch as f64).round() as usize;
    let classes = cfg.num_classes();
    let replay_bs = if n_replay > 0 {
        ((bs as f64 * train_cfg.replay_ratio).round() as usize).min(n_replay)
    } else {
        0
    };
    // The replayed clips are drawn in a seeded order, a new one each pass over them.
    let mut replay_order: Vec<usize> = Vec::new();
    let (mut replay_pass, mut replay_seen) = (0usize, 0usize);
    let mut step = 0usize;
    let mut log = Vec::new();
    for epoch in 0..train_cfg.epochs {
        let order = super::permutation(args.seed, epoch, n_user);
        let (mut loss_sum, mut correct, mut seen) = (0f64, 0usize, 0usize);
        for b in 0..per_epoch {
            let u = &order[b * bs..((b + 1) * bs).min(n_user)];
            let phase = |i: usize| Rng::new(args.seed, &[0xA06, epoch as u64, i as u64]).below(64);
            let mut batch = train.batch(
                &cfg,
                u,
                &u.iter().map(|&i| phase(i)).collect::<Vec<_>>(),
                false,
            )?;
            if projected {
                batch.inputs = mbt_model::train::project(&initial.model, &cfg, &batch);
            }
            let mut ys: Vec<usize> = u.iter().map(|&i| train.header.labels[i]).collect();
            if let Some(rp) = replay.as_ref().filter(|_| replay_bs > 0) {
                let mut ri = Vec::with_capacity(replay_bs);
                while ri.len() < replay_bs {
                    if replay_seen == replay_order.len() {
                        replay_order =
                            super::permutation(args.seed ^ 0x5E1A, replay_pass, n_replay);
                        replay_pass += 1;
                        replay_seen = 0;
                    }
                    ri.push(replay_order[replay_seen]);
                    replay_seen += 1;
                }
                let extra = match rp {
                    Replay::Set { set, map, .. } => {
                        ys.extend(ri.iter().map(|&i| map[set.labels[i]]));
                        set.batch(&ri, map, classes)
                    }
                    Replay::Data { split, .. } => {
                        let phases: Vec<usize> = ri.iter().map(|&i| phase(n_user + i)).collect();
                        let mut e = split.batch(&cfg, &ri, &phases, false)?;
                        if projected {
                            e.inputs = mbt_model::train::project(&initial.model, &cfg, &e);
                        }
                        ys.extend(ri.iter().map(|&i| split.header.labels[i]));
                        e
                    }
                };
                batch = join(batch, extra);
            }
            let mut rng = Rng::new(args.seed, &[0x41C5, step as u64]);
            if rng.f64() < train_cfg.mixup_prob {
                super::mixup(&mut batch, &mut rng, train_cfg.mixup_alpha);
            }
            smooth(&mut batch.targets, classes, train_cfg.label_smoothing);
            let teacher = (train_cfg.distill_weight > 0.0).then(|| {
                let p = if projected {
                    mbt_model::train::predict_projected(&initial.model, &old_cfg, &batch)
                } else {
                    predict(&initial.model, &old_cfg, &batch)
                };
                mbt_model::train::Teacher {
                    classes: old,
                    logits: std::iter::once(p.fused).chain(p.streams).collect(),
                }
            });
            let lr = train_cfg.lr_at(step, warmup, total);
            let (stats, logits) =
                trainer.step_distilled(&batch, teacher.as_ref(), lr, step_seed(args.seed, step));
            if !stats.loss.is_finite() {
                bail!(
                    "the loss became {} at step {step} (lr {lr:.3e}); lower train.lr",
                    stats.loss
                );
            }
            loss_sum += stats.loss as f64 * batch.n as f64;
            seen += batch.n;
            correct += logits
                .chunks(classes)
                .zip(&ys)
                .filter(|(row, &y)| argmax(row) == y)
                .count();
            step += 1;
        }
        let n = seen.max(1);
        let line = serde_json::json!({
            "epoch": epoch + 1, "step": step,
            "loss": loss_sum / n as f64, "train_top1": 100.0 * correct as f64 / n as f64,
        });
        eprintln!(
            "epoch {:>2}/{}: loss {:.3}, running top-1 {:.1} %",
            epoch + 1,
            train_cfg.epochs,
            loss_sum / n as f64,
            100.0 * correct as f64 / n as f64
        );
        log.push(line);
    }
    let train_seconds = t0.elapsed().as_secs_f64();

    // After.
    let t0 = Instant::now();
    let model = trainer.model();
    let mut after = Vec::new();
    for h in &held {
        after.push(evaluate(&model, &cfg, &cfg, old, h, crops)?);
    }
    let forgetting_after = match &forgetting {
        Some((_, f)) => Some(evaluate(&model, &cfg, &cfg, old, f, crops)?),
        None => None,
    };
    eval_seconds += t0.elapsed().as_secs_f64();

    // Outputs: weights, config, the composed file.
    let t0 = Instant::now();
    use burn::module::Module;
    model
        .clone()
        .save_file(run.join("best.bpk"))
        .with_context(|| format!("cannot write {}", run.join("best.bpk").display()))?;
    write_run_config(run, &cfg, &train_cfg)?;
    let mut thresholds = initial.thresholds.clone();
    for l in &init.add_labels {
        thresholds.insert(l.clone(), init.new_label_threshold);
    }
    let opts = mbt_model::export::ExportOptions {
        model_version: version.clone(),
        training_data_hash: format!(
            "sha256:{} (manifest.jsonl of the user's clips), personalised from {} (trained on {})",
            data.manifest_sha256, initial.version, initial.training_data_hash
        ),
        int8: None,
        thresholds: thresholds.clone(),
    };
    let fusion = mbt_model::export::export(&model, &cfg, &opts)?;
    let bytes = mbt_model::export::compose::compose(&cfg, &fusion, &trunks)?;
    let onnx = run.join("model.onnx");
    std::fs::write(&onnx, &bytes).with_context(|| format!("cannot write {}", onnx.display()))?;
    // The projections were frozen, so the shipped set still fits the new model: it goes
    // beside it, where a later `--init RUN/model.onnx` (or the board) looks.
    if let Some(Replay::Set { path, .. }) = &replay {
        let dst = super::replay::beside(&onnx);
        std::fs::copy(path, &dst)
            .with_context(|| format!("cannot copy {} to {}", path.display(), dst.display()))?;
    }
    let export_seconds = t0.elapsed().as_secs_f64();
    let total_seconds = t_start.elapsed().as_secs_f64();

    // Report.
    println!(
        "\n{} -> {version}: labels {:?} added; {} user clips trained ({} replayed), {} steps",
        initial.version, init.add_labels, n_user, n_replay, step
    );
    for ((h, b), a) in held.iter().zip(&before).zip(&after) {
        print_score(&format!("user {} (held back)", h.name), b, a);
    }
    if let (Some((dir, f)), Some(b), Some(a)) = (&forgetting, &forgetting_before, &forgetting_after)
    {
        print_score(
            &format!("{} {} (first {})", dir.display(), f.name, f.clips()),
            b,
            a,
        );
    }
    println!(
        "time: {total_seconds:.1} s (features {feature_seconds:.1}, training {train_seconds:.1}, scoring {eval_seconds:.1}, export {export_seconds:.1}); wrote {} and {}",
        onnx.display(),
        run.join("best.bpk").display()
    );
    let pairs = |b: &[Score], a: &[Score]| -> serde_json::Value {
        held.iter()
            .zip(b.iter().zip(a))
            .map(|(h, (b, a))| (h.name.clone(), serde_json::json!({"before": b, "after": a})))
            .collect::<serde_json::Map<_, _>>()
            .into()
    };
    let report = serde_json::json!({
        "init": init.init.display().to_string(),
        "init_version": initial.version,
        "model_version": version,
        "labels": cfg.labels,
        "labels_added": init.add_labels,
        "data": args.data.display().to_string(),
        "data_manifest_sha256": data.manifest_sha256,
        "user_train_clips": n_user,
        "replay": replay.as_ref().map(|r| r.path().display().to_string()),
        "replay_clips": n_replay,
        "crops": crops,
        "user": pairs(&before, &after),
        "forgetting": forgetting.as_ref().map(|(dir, f)| serde_json::json!({
            "data": dir.display().to_string(),
            "split": f.name,
            "clips": f.clips(),
            "before": forgetting_before,
            "after": forgetting_after,
        })),
        "train": train_cfg,
        "epochs": log,
        "seconds": {
            "total": total_seconds, "features": feature_seconds, "training": train_seconds,
            "scoring": eval_seconds, "export": export_seconds,
        },
        "onnx": onnx.display().to_string(),
    });
    atomic_write(
        &run.join("personalise.json"),
        serde_json::to_string_pretty(&report)?.as_bytes(),
    )?;
    // For `mbt eval --model RUN`, `mbt export --checkpoint RUN` and a later `--init RUN`.
    atomic_write(
        &run.join("run.json"),
        serde_json::to_string_pretty(&serde_json::json!({
            "seed": args.seed,
            "data": args.data.display().to_string(),
            "data_manifest_sha256": data.manifest_sha256,
            "init": init.init.display().to_string(),
            "model_version": version,
            "thresholds": thresholds,
            "train_clips": n_user,
        }))?
        .as_bytes(),
    )?;
    Ok(())
}
