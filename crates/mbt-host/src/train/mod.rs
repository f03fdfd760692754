//! `mbt train`: the training loop around [`mbt_model::train::Trainer`].
//!
//! A run directory holds everything needed to continue or inspect it:
//! `config.toml` (the effective model config with its `[train]` table), `run.json` (seed and
//! the data set's manifest hash), `checkpoint/` (latest weights, optimiser state and
//! `state.json` with the position in the schedule), `best.bpk` (weights of the best validation
//! epoch), `metrics.jsonl` (one line per logging interval and per epoch) and the plots.
//!
//! Reproducibility: the epoch's order comes from `(seed, epoch)`, each clip's augmentation from
//! `(seed, epoch, clip)`, mixup from `(seed, step)` and stochastic depth from `(seed, step)`, so
//! a run resumed from any checkpoint (every epoch, or on SIGINT mid-epoch) continues exactly in
//! schedule. The arithmetic is deterministic too: with `threads = N > 1` each step splits its
//! batch into one shard per thread (see [`mbt_model::train::Trainer::step`]) and sums the
//! shards' gradients in shard order, whichever finishes first, so two runs and a resumed one
//! end with the same weights (`tests/train.rs`); a run at one thread and one at two differ by
//! float rounding.
//!
//! Two loops share this file's run directory, checkpoints and logging: the from-scratch loop
//! ([`run`], here) and the cached-features loop of a model with trunks ([`cached`]); the step
//! both take, with the log interval's running tallies, is `interval.rs`.

pub mod augment;
pub mod cached;
pub mod dataset;
pub mod eval;
pub mod features;
pub mod fresh;
pub mod init;
mod interval;
pub mod metrics;
pub mod personalise;
pub mod plot;
pub mod replay;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Instant;

use anyhow::{bail, Context};
use burn::module::Module;
use mbt_model::train::{Batch, StreamTargets, TrainConfig, Trainer};
use mbt_model::ModelConfig;
use rayon::prelude::*;
use serde::{Deserialize, Serialize};

use crate::data::rng::Rng;
use augment::AugmentPlan;
use dataset::{Clip, DataSet, Split, Tokenizer};
use interval::Interval;

/// Arguments of `mbt train` (see cli.rs).
pub struct TrainArgs {
    pub config: Option<PathBuf>,
    pub overrides: Vec<String>,
    pub data: PathBuf,
    pub out: PathBuf,
    pub resume: bool,
    pub seed: u64,
    pub limit_train: Option<usize>,
    pub limit_val: Option<usize>,
    /// Stop after this many optimisation steps (smoke tests, throughput measurements).
    pub max_steps: Option<usize>,
    /// Source media for `train.fresh_renders` (default: `mbt data fetch`'s cache).
    pub cache: Option<PathBuf>,
    /// Source pool for `train.fresh_renders` (default: `data/pool.toml`).
    pub pool: Option<PathBuf>,
    /// Trunk directory for a model with `[trunks]` (default: the checkout's models/trunks).
    pub trunks: Option<PathBuf>,
    /// Personalisation: start from this model (`--init`) instead of a config.
    pub init: Option<personalise::InitArgs>,
}

/// Where a run stands: written with every checkpoint.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct RunState {
    /// The epoch in progress (== epochs when finished).
    pub epoch: usize,
    /// The next batch index within `epoch`.
    pub batch: usize,
    /// Optimisation steps taken.
    pub step: usize,
    pub best_val_top1: f64,
    pub seed: u64,
    pub data_manifest_sha256: String,
    /// Seconds spent training so far (over all sessions of the run).
    pub seconds: f64,
}

/// Reads `RUN/config.toml` back.
pub fn read_run_config(run: &Path) -> anyhow::Result<(ModelConfig, TrainConfig)> {
    let path = run.join("config.toml");
    let text = std::fs::read_to_string(&path)
        .with_context(|| format!("cannot read {}", path.display()))?;
    parse_config(&text, &path.display().to_string(), &[])
}

fn parse_config(
    text: &str,
    origin: &str,
    overrides: &[String],
) -> anyhow::Result<(ModelConfig, TrainConfig)> {
    let (model, train) =
        ModelConfig::from_toml_with_train(text, origin, overrides).map_err(anyhow::Error::msg)?;
    let train = TrainConfig::from_table(train, origin).map_err(anyhow::Error::msg)?;
    Ok((model, train))
}

pub(crate) fn write_run_config(
    run: &Path,
    model: &ModelConfig,
    train: &TrainConfig,
) -> anyhow::Result<()> {
    let mut table = toml::Table::try_from(model).context("serialising the model config")?;
    table.insert(
        "train".into(),
        toml::Value::try_from(train).context("serialising the train config")?,
    );
    let text = format!(
        "# Effective configuration of this run (written by `mbt train`; `--resume` reads it).\n{}",
        toml::to_string(&table)?
    );
    atomic_write(&run.join("config.toml"), text.as_bytes())
}

/// Writes via a temporary file and a rename, so a crash never leaves half a file.
pub fn atomic_write(path: &Path, bytes: &[u8]) -> anyhow::Result<()> {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, bytes).with_context(|| format!("cannot write {}", tmp.display()))?;
    std::fs::rename(&tmp, path).with_context(|| format!("cannot write {}", path.display()))
}

/// One metrics line.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct LogLine {
    /// "train" (running averages over the last interval) or "val" (end of an epoch).
    pub kind: String,
    pub epoch: usize,
    pub step: usize,
    pub lr: f64,
    pub loss: f64,
    /// Fused top-1 (%).
    pub top1: f64,
    #[serde(default)]
    pub top1_video: Option<f64>,
    #[serde(default)]
    pub top1_audio: Option<f64>,
    pub seconds: f64,
}

/// Tokens for a list of clips (one plan each), as a [`Batch`] with one-hot targets, and with
/// each stream's candidate labels as its head's targets when `stream_kinds` is set.
pub fn make_batch(
    tok: &Tokenizer,
    clips: &[&Clip],
    plans: &[AugmentPlan],
    classes: usize,
    stream_kinds: bool,
) -> anyhow::Result<Batch> {
    let pairs = clips
        .par_iter()
        .zip(plans)
        .map(|(c, p)| Ok((tok.video(c, p)?, tok.audio(c, p)?)))
        .collect::<anyhow::Result<Vec<_>>>()?;
    let mut video = Vec::new();
    let mut audio = Vec::new();
    for (v, a) in pairs {
        video.extend(v);
        audio.extend(a);
    }
    let mut targets = vec![0f32; clips.len() * classes];
    for (i, c) in clips.iter().enumerate() {
        targets[i * classes + c.label] = 1.0;
    }
    let mut stream_targets = Vec::new();
    if stream_kinds {
        stream_targets = vec![vec![0f32; clips.len() * classes]; 2];
        for (i, c) in clips.iter().enumerate() {
            let Some(cands) = &c.candidates else {
                bail!(
                    "clip {}: train.stream_targets = \"kinds\" needs the generator's `params` \
                     (kinds heard and seen) in manifest.jsonl, and this entry has none",
                    c.id
                );
            };
            for (s, cand) in cands.iter().enumerate() {
                for &k in cand {
                    stream_targets[s][i * classes + k] = 1.0;
                }
            }
        }
    }
    Ok(Batch {
        n: clips.len(),
        inputs: vec![video, audio],
        targets,
        stream_targets,
    })
}

pub(crate) fn smooth(targets: &mut [f32], classes: usize, eps: f64) {
    let eps = eps as f32;
    for row in targets.chunks_mut(classes) {
        for v in row.iter_mut() {
            *v = *v * (1.0 - eps) + eps / classes as f32;
        }
    }
}

/// Gamma(shape) by Marsaglia and Tsang (boosted for shape < 1).
fn gamma(rng: &mut Rng, shape: f64) -> f64 {
    if shape < 1.0 {
        let u = rng.f64().max(f64::MIN_POSITIVE);
        return gamma(rng, shape + 1.0) * u.powf(1.0 / shape);
    }
    let d = shape - 1.0 / 3.0;
    let c = 1.0 / (9.0 * d).sqrt();
    loop {
        let x = rng.normal();
        let v = (1.0 + c * x).powi(3);
        if v <= 0.0 {
            continue;
        }
        let u = rng.f64();
        if u.ln() < 0.5 * x * x + d - d * v + d * v.ln() {
            return d * v;
        }
    }
}

/// Mixup: every sample mixed with a partner from the same batch, weight `lam ~ Beta(a, a)`.
pub(crate) fn mixup(batch: &mut Batch, rng: &mut Rng, alpha: f64) -> f32 {
    let (g1, g2) = (gamma(rng, alpha), gamma(rng, alpha));
    let lam = (g1 / (g1 + g2)) as f32;
    let n = batch.n;
    let mut partner: Vec<usize> = (0..n).collect();
    rng.shuffle(&mut partner);
    let mix = |x: &[f32], width: usize| -> Vec<f32> {
        let mut out = Vec::with_capacity(x.len());
        for (i, &j) in partner.iter().enumerate() {
            let (a, b) = (
                &x[i * width..(i + 1) * width],
                &x[j * width..(j + 1) * width],
            );
            out.extend(a.iter().zip(b).map(|(p, q)| lam * p + (1.0 - lam) * q));
        }
        out
    };
    for input in batch.inputs.iter_mut() {
        let width = input.len() / n;
        *input = mix(input, width);
    }
    let classes = batch.targets.len() / n;
    batch.targets = mix(&batch.targets, classes);
    for t in batch.stream_targets.iter_mut() {
        *t = mix(t, classes);
    }
    lam
}

pub(crate) fn step_seed(seed: u64, step: usize) -> u64 {
    Rng::new(seed, &[0x57E9, step as u64]).next_u64()
}

/// The clip order of one epoch.
pub(crate) fn permutation(seed: u64, epoch: usize, n: usize) -> Vec<usize> {
    let mut order: Vec<usize> = (0..n).collect();
    Rng::new(seed, &[0x0DE5, epoch as u64]).shuffle(&mut order);
    order
}

pub(crate) fn argmax(row: &[f32]) -> usize {
    let mut best = 0;
    for (i, &v) in row.iter().enumerate() {
        if v > row[best] {
            best = i;
        }
    }
    best
}

/// Installs a SIGINT/SIGTERM flag: the loop checkpoints and stops at the next step boundary.
pub(crate) fn interrupt_flag() -> Arc<AtomicBool> {
    let flag = Arc::new(AtomicBool::new(false));
    for sig in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        if let Err(e) = signal_hook::flag::register(sig, Arc::clone(&flag)) {
            eprintln!("mbt train: warning: cannot watch signal {sig}: {e}");
        }
    }
    flag
}

/// Raised when a run stopped on a signal after saving its checkpoint (exit status 130).
#[derive(Debug)]
pub struct Interrupted(pub PathBuf);

impl std::fmt::Display for Interrupted {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "interrupted; checkpoint saved in {}, continue with `mbt train --resume --out {} --data ...`",
            self.0.join("checkpoint").display(),
            self.0.display()
        )
    }
}

impl std::error::Error for Interrupted {}

pub fn run(args: TrainArgs) -> anyhow::Result<()> {
    if let Some(init) = &args.init {
        return personalise::run(&args, init);
    }
    let run = args.out.clone();
    let (model_cfg, train_cfg, mut state, mut trainer) = if args.resume {
        let (m, t) =
            read_run_config(&run).context("--resume needs a run directory made by `mbt train`")?;
        if args.config.is_some() || !args.overrides.is_empty() {
            eprintln!(
                "mbt train: --resume uses {} (--config/--set ignored)",
                run.join("config.toml").display()
            );
        }
        let state_path = run.join("checkpoint").join("state.json");
        let text = std::fs::read_to_string(&state_path)
            .with_context(|| format!("cannot read {}", state_path.display()))?;
        let state: RunState = serde_json::from_str(&text)
            .with_context(|| format!("{}: not a run state", state_path.display()))?;
        let mut trainer = Trainer::new(&m, &t, state.seed);
        trainer
            .load(&run.join("checkpoint"))
            .context("loading the checkpoint")?;
        (m, t, state, trainer)
    } else {
        let Some(cfg_path) = &args.config else {
            bail!("--config is required (unless --resume)");
        };
        let text = std::fs::read_to_string(cfg_path)
            .with_context(|| format!("cannot read {}", cfg_path.display()))?;
        let (m, t) = parse_config(&text, &cfg_path.display().to_string(), &args.overrides)?;
        if run.join("checkpoint").join("state.json").exists() {
            bail!(
                "{} already holds a run; use --resume to continue it or choose another --out",
                run.display()
            );
        }
        std::fs::create_dir_all(&run)
            .with_context(|| format!("cannot create {}", run.display()))?;
        let state = RunState {
            epoch: 0,
            batch: 0,
            step: 0,
            best_val_top1: -1.0,
            seed: args.seed,
            data_manifest_sha256: String::new(),
            seconds: 0.0,
        };
        let mut trainer = Trainer::new(&m, &t, args.seed);
        // A trained trunk layer starts from the trunk's own weights (a resumed run has them in
        // its checkpoint).
        if m.trunks.finetune_last {
            let dir = args
                .trunks
                .clone()
                .unwrap_or_else(mbt_model::trunk::default_dir);
            trainer
                .init_trunk_layers(&dir)
                .context("trunks.finetune_last")?;
        }
        (m, t, state, trainer)
    };
    // One pool for data preparation and burn's CPU kernels.
    if let Err(e) = rayon::ThreadPoolBuilder::new()
        .num_threads(train_cfg.threads)
        .build_global()
    {
        eprintln!("mbt train: warning: thread pool already set up ({e})");
    }

    let labels = model_cfg.labels.clone();
    let classes = labels.len();
    let data = DataSet::open(&args.data, &labels)?;
    if state.data_manifest_sha256.is_empty() {
        state.data_manifest_sha256 = data.manifest_sha256.clone();
    } else if state.data_manifest_sha256 != data.manifest_sha256 {
        bail!(
            "{}: this data set (manifest sha256 {}) is not the one the run started on ({})",
            args.data.display(),
            data.manifest_sha256,
            state.data_manifest_sha256
        );
    }
    if model_cfg.trunks.audio.is_some() || model_cfg.trunks.video.is_some() {
        return cached::run(&args, &model_cfg, &train_cfg, state, trainer, &data);
    }
    let t0 = Instant::now();
    let mut train = data.load("train", &labels, &model_cfg.tokenizer, args.limit_train)?;
    let val = data.load("val", &labels, &model_cfg.tokenizer, args.limit_val)?;
    eprintln!(
        "loaded {} train and {} val clips from {} in {:.1} s",
        train.clips.len(),
        val.clips.len(),
        args.data.display(),
        t0.elapsed().as_secs_f64()
    );
    let tok = Tokenizer::new(&model_cfg.tokenizer)?;
    // Token counts must match the model: check once, on the first clip, with a clear message.
    check_shapes(&tok, &model_cfg, &train)?;
    write_run_config(&run, &model_cfg, &train_cfg)?;
    atomic_write(
        &run.join("run.json"),
        serde_json::to_string_pretty(&serde_json::json!({
            "seed": state.seed,
            "data": args.data.display().to_string(),
            "data_manifest_sha256": data.manifest_sha256,
            "train_clips": train.clips.len(),
            "val_clips": val.clips.len(),
        }))?
        .as_bytes(),
    )?;

    let bs = train_cfg.batch_size.min(train.clips.len());
    let per_epoch = train.clips.len().div_ceil(bs);
    let total = per_epoch * train_cfg.epochs;
    let warmup = (train_cfg.warmup_epochs * per_epoch as f64).round() as usize;
    let stop = interrupt_flag();
    let mut log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(run.join("metrics.jsonl"))
        .with_context(|| format!("cannot write {}", run.join("metrics.jsonl").display()))?;
    let session = Instant::now();
    let start_seconds = state.seconds;
    let spec_frames = model_cfg.tokenizer.audio.num_frames;
    let bins = model_cfg.tokenizer.audio.num_mel_bins;
    let img = (train.clips[0].width, train.clips[0].height);
    let steps_at_start = state.step;
    let limit = args.max_steps.map(|m| steps_at_start + m);
    let bar = progress_bar(total as u64, state.step as u64);
    let mut interval = Interval::default();
    // Time spent reading, tokenizing and augmenting clips (not in the model), so the
    // throughput line can say how much of a step is data preparation.
    let mut prep_seconds = 0f64;
    let mut fresh = if train_cfg.fresh_renders {
        let cache = match &args.cache {
            Some(c) => c.clone(),
            None => crate::data::fetch::default_cache()?,
        };
        let pool = args
            .pool
            .clone()
            .unwrap_or_else(crate::data::pool::default_path);
        Some(fresh::FreshRenderer::new(
            &pool,
            &cache,
            &labels,
            &model_cfg.tokenizer,
            train.clips.len(),
            state.seed,
        )?)
    } else {
        None
    };
    while state.epoch < train_cfg.epochs {
        if let Some(f) = fresh.as_mut() {
            if state.epoch >= 1 {
                let t = Instant::now();
                let frames = train.clips[0].frames.len();
                train = f.take(state.epoch)?;
                let c = &train.clips[0];
                if (c.width, c.height, c.frames.len()) != (img.0, img.1, frames) {
                    bail!(
                        "train.fresh_renders: the generator renders {} frames of {}x{}, but {} holds {frames} frames of {}x{}; rebuild the data set with this `mbt`",
                        c.frames.len(),
                        c.width,
                        c.height,
                        args.data.display(),
                        img.0,
                        img.1
                    );
                }
                eprintln!(
                    "epoch {}: {} freshly rendered clips (waited {:.1} s)",
                    state.epoch + 1,
                    train.clips.len(),
                    t.elapsed().as_secs_f64()
                );
            }
            if state.epoch + 1 < train_cfg.epochs {
                f.prefetch(state.epoch + 1);
            }
        }
        let order = permutation(state.seed, state.epoch, train.clips.len());
        while state.batch < per_epoch {
            let idx = &order[state.batch * bs..((state.batch + 1) * bs).min(order.len())];
            let prep_start = Instant::now();
            let clips: Vec<&Clip> = idx.iter().map(|&i| &train.clips[i]).collect();
            let plans: Vec<AugmentPlan> = idx
                .iter()
                .map(|&i| {
                    let mut rng = Rng::new(state.seed, &[0xA06, state.epoch as u64, i as u64]);
                    AugmentPlan::draw(&mut rng, &train_cfg, (spec_frames, bins), img)
                })
                .collect();
            let mut batch = make_batch(
                &tok,
                &clips,
                &plans,
                classes,
                train_cfg.stream_targets == StreamTargets::Kinds,
            )?;
            let labels_now: Vec<usize> = clips.iter().map(|c| c.label).collect();
            let mut rng = Rng::new(state.seed, &[0x41C5, state.step as u64]);
            if rng.f64() < train_cfg.mixup_prob {
                mixup(&mut batch, &mut rng, train_cfg.mixup_alpha);
            }
            smooth(&mut batch.targets, classes, train_cfg.label_smoothing);
            prep_seconds += prep_start.elapsed().as_secs_f64();
            let lr = train_cfg.lr_at(state.step, warmup, total);
            interval.step(&mut trainer, &batch, &labels_now, classes, lr, &mut state)?;
            bar.set_position(state.step as u64);
            bar.set_message(format!(
                "epoch {}/{} loss {:.3} acc {:.1}%",
                state.epoch + 1,
                train_cfg.epochs,
                interval.loss(),
                interval.top1()
            ));
            if state.step % 25 == 0 || state.batch == per_epoch {
                let done = (state.step - steps_at_start).max(1);
                log_interval(
                    &mut log,
                    &bar,
                    &state,
                    lr,
                    interval.loss(),
                    interval.top1(),
                    start_seconds + session.elapsed().as_secs_f64(),
                    train_cfg.epochs,
                    total,
                    session.elapsed().as_secs_f64() / done as f64,
                )?;
                interval = Interval::default();
            }
            let interrupted = stop.load(Ordering::Relaxed);
            let out_of_steps = limit.is_some_and(|l| state.step >= l);
            if interrupted || out_of_steps {
                state.seconds = start_seconds + session.elapsed().as_secs_f64();
                save_checkpoint(&run, &trainer, &state)?;
                bar.finish_and_clear();
                if interrupted {
                    return Err(Interrupted(run).into());
                }
                let steps = (state.step - steps_at_start).max(1) as f64;
                eprintln!(
                    "stopped after {} steps (--max-steps): {:.3} s/step ({:.3} s of it data preparation), {:.1} samples/s; checkpoint in {}",
                    state.step - steps_at_start,
                    session.elapsed().as_secs_f64() / steps,
                    prep_seconds / steps,
                    ((state.step - steps_at_start) * bs) as f64 / session.elapsed().as_secs_f64(),
                    run.join("checkpoint").display()
                );
                return Ok(());
            }
        }
        // End of epoch: validate, log, checkpoint, keep the best weights, redraw the plots.
        let model = trainer.model();
        let ev = eval::evaluate_model(&model, &model_cfg, &tok, &val, 1, bs)?;
        let lr = train_cfg.lr_at(state.step.saturating_sub(1), warmup, total);
        let seconds = start_seconds + session.elapsed().as_secs_f64();
        end_epoch(
            &run,
            &mut log,
            &bar,
            &trainer,
            &mut state,
            &ev,
            lr,
            train_cfg.epochs,
            seconds,
        )?;
    }
    bar.finish_and_clear();
    eprintln!(
        "done: {} epochs, {} steps in {:.1} min; best val top-1 {:.2}% (weights {}), run in {}",
        train_cfg.epochs,
        state.step,
        state.seconds / 60.0,
        state.best_val_top1,
        run.join("best.bpk").display(),
        run.display()
    );
    Ok(())
}

fn check_shapes(tok: &Tokenizer, cfg: &ModelConfig, split: &Split) -> anyhow::Result<()> {
    let clip = &split.clips[0];
    let plan = AugmentPlan::none();
    let v = tok.video(clip, &plan)?;
    let a = tok.audio(clip, &plan)?;
    for (spec, got) in cfg.streams().iter().zip([v.len(), a.len()]) {
        let want = spec.tokens * spec.patch_dim;
        if got != want {
            bail!(
                "clip {}: the {} tokenizer gives {got} values, but the model expects {} tokens x {} = {want}; the config's tokenizer settings do not match the data",
                clip.id,
                spec.name,
                spec.tokens,
                spec.patch_dim
            );
        }
    }
    Ok(())
}

/// One `train` log line (running averages over the last interval), and the plain progress
/// line when the bar is hidden (a log file, systemd). Shared by both training loops.
#[allow(clippy::too_many_arguments)]
pub(crate) fn log_interval(
    log: &mut std::fs::File,
    bar: &indicatif::ProgressBar,
    state: &RunState,
    lr: f64,
    loss: f64,
    top1: f64,
    seconds: f64,
    epochs: usize,
    total: usize,
    per_step: f64,
) -> anyhow::Result<()> {
    let line = LogLine {
        kind: "train".into(),
        epoch: state.epoch,
        step: state.step,
        lr,
        loss,
        top1,
        top1_video: None,
        top1_audio: None,
        seconds,
    };
    writeln!(log, "{}", serde_json::to_string(&line)?)?;
    if bar.is_hidden() {
        eprintln!(
            "step {}/{total} epoch {}/{epochs} lr {lr:.2e} loss {loss:.4} top-1 {top1:.1}% ({per_step:.2} s/step, ETA {:.0} min)",
            state.step,
            state.epoch + 1,
            per_step * (total - state.step) as f64 / 60.0
        );
    }
    Ok(())
}

/// The end of an epoch, after validation: the `val` log line and the summary line, the best
/// weights kept (`best.bpk`), the checkpoint written, the plots redrawn. Shared by the
/// from-scratch loop and the loop on cached trunk features (`cached.rs`).
#[allow(clippy::too_many_arguments)]
pub(crate) fn end_epoch(
    run: &Path,
    log: &mut std::fs::File,
    bar: &indicatif::ProgressBar,
    trainer: &Trainer,
    state: &mut RunState,
    ev: &eval::Evaluation,
    lr: f64,
    epochs: usize,
    seconds: f64,
) -> anyhow::Result<()> {
    let m = &ev.fused;
    let line = LogLine {
        kind: "val".into(),
        epoch: state.epoch,
        step: state.step,
        lr,
        loss: ev.loss,
        top1: m.top1,
        top1_video: Some(ev.streams[0].top1),
        top1_audio: Some(ev.streams[1].top1),
        seconds,
    };
    writeln!(log, "{}", serde_json::to_string(&line)?)?;
    let say = |msg: String| {
        if bar.is_hidden() {
            eprintln!("{msg}");
        } else {
            bar.println(msg);
        }
    };
    say(format!(
        "epoch {:>3}/{epochs}: val top-1 fused {:.2}%  video {:.2}%  audio {:.2}%  loss {:.3}",
        state.epoch + 1,
        m.top1,
        ev.streams[0].top1,
        ev.streams[1].top1,
        ev.loss
    ));
    state.epoch += 1;
    state.batch = 0;
    state.seconds = seconds;
    if m.top1 > state.best_val_top1 {
        state.best_val_top1 = m.top1;
        trainer
            .model()
            .save_file(run.join("best.bpk"))
            .with_context(|| format!("cannot write {}", run.join("best.bpk").display()))?;
    }
    save_checkpoint(run, trainer, state)?;
    if let Err(e) = plot::curves(run) {
        say(format!("mbt train: warning: no plots: {e:#}"));
    }
    Ok(())
}

pub(crate) fn save_checkpoint(
    run: &Path,
    trainer: &Trainer,
    state: &RunState,
) -> anyhow::Result<()> {
    // Write into a fresh directory, then swap it in: a kill mid-save leaves the old checkpoint.
    let dir = run.join("checkpoint");
    let tmp = run.join("checkpoint.tmp");
    if tmp.exists() {
        std::fs::remove_dir_all(&tmp).with_context(|| format!("cannot clear {}", tmp.display()))?;
    }
    trainer.save(&tmp)?;
    atomic_write(
        &tmp.join("state.json"),
        serde_json::to_string_pretty(state)?.as_bytes(),
    )?;
    let old = run.join("checkpoint.old");
    if dir.exists() {
        if old.exists() {
            std::fs::remove_dir_all(&old).ok();
        }
        std::fs::rename(&dir, &old).with_context(|| format!("cannot move {}", dir.display()))?;
    }
    std::fs::rename(&tmp, &dir).with_context(|| format!("cannot write {}", dir.display()))?;
    if old.exists() {
        std::fs::remove_dir_all(&old).ok();
    }
    Ok(())
}

pub(crate) fn progress_bar(total: u64, at: u64) -> indicatif::ProgressBar {
    let bar = indicatif::ProgressBar::new(total);
    bar.set_position(at);
    if let Ok(style) = indicatif::ProgressStyle::with_template(
        "{elapsed_precise} [{bar:30}] {pos}/{len} steps, {per_sec}, ETA {eta}  {msg}",
    ) {
        bar.set_style(style.progress_chars("=> "));
    }
    bar
}
