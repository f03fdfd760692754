//! `mbt train` for a model with pretrained trunks: the trunks are frozen, so each clip goes
//! through them once (the feature cache, [`super::features`]) and the epochs train the fusion
//! part (projections, transformer layers, bottlenecks, heads) on cached features.
//!
//! The run directory, checkpoints, resume, logging and plots are those of the from-scratch
//! loop (`super::run`); what differs is where a batch comes from. Augmentation on cached
//! features: the frame phase (which of the clip's frames the window samples) and mixup; the
//! pixel- and spectrogram-level augmentations would need the trunks rerun per epoch and are not
//! applied (`train.fresh_renders` is refused here for the same reason).

use std::sync::atomic::Ordering;
use std::time::Instant;

use anyhow::{bail, Context};
use mbt_model::train::{StreamTargets, TrainConfig, Trainer};
use mbt_model::ModelConfig;

use super::dataset::DataSet;
use super::features::load_or_build;
use super::interval::Interval;
use super::{
    atomic_write, end_epoch, eval, interrupt_flag, log_interval, mixup, permutation, progress_bar,
    save_checkpoint, smooth, write_run_config, Interrupted, RunState, TrainArgs,
};
use crate::data::rng::Rng;

pub fn run(
    args: &TrainArgs,
    model_cfg: &ModelConfig,
    train_cfg: &TrainConfig,
    mut state: RunState,
    mut trainer: Trainer,
    data: &DataSet,
) -> anyhow::Result<()> {
    if train_cfg.fresh_renders {
        bail!("train.fresh_renders: a model with trunks trains on cached trunk features of the data set's clips; fresh renders would rerun the trunks every epoch (set train.fresh_renders = false)");
    }
    let run = &args.out;
    let trunks = args
        .trunks
        .clone()
        .unwrap_or_else(mbt_model::trunk::default_dir);
    let classes = model_cfg.num_classes();
    let t0 = Instant::now();
    let train = load_or_build(data, model_cfg, "train", &trunks, args.limit_train)?;
    let val = load_or_build(data, model_cfg, "val", &trunks, args.limit_val)?;
    let cache_seconds = t0.elapsed().as_secs_f64();
    eprintln!(
        "features ready: {} train and {} val clips in {cache_seconds:.1} s",
        train.clips(),
        val.clips()
    );
    write_run_config(run, model_cfg, train_cfg)?;
    atomic_write(
        &run.join("run.json"),
        serde_json::to_string_pretty(&serde_json::json!({
            "seed": state.seed,
            "data": args.data.display().to_string(),
            "data_manifest_sha256": data.manifest_sha256,
            "train_clips": train.clips(),
            "val_clips": val.clips(),
            "feature_cache": super::features::cache_dir(data, model_cfg).display().to_string(),
            "feature_seconds": {"train": train.header.seconds, "val": val.header.seconds},
        }))?
        .as_bytes(),
    )?;
    let bs = train_cfg.batch_size.min(train.clips());
    let per_epoch = train.clips().div_ceil(bs);
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
    let steps_at_start = state.step;
    let limit = args.max_steps.map(|m| steps_at_start + m);
    let bar = progress_bar(total as u64, state.step as u64);
    let mut interval = Interval::default();
    let stream_kinds = train_cfg.stream_targets == StreamTargets::Kinds;
    while state.epoch < train_cfg.epochs {
        let order = permutation(state.seed, state.epoch, train.clips());
        while state.batch < per_epoch {
            let idx = &order[state.batch * bs..((state.batch + 1) * bs).min(order.len())];
            let phases: Vec<usize> = idx
                .iter()
                .map(|&i| Rng::new(state.seed, &[0xA06, state.epoch as u64, i as u64]).below(64))
                .collect();
            let mut batch = train.batch(model_cfg, idx, &phases, stream_kinds)?;
            let labels_now: Vec<usize> = idx.iter().map(|&i| train.header.labels[i]).collect();
            let mut rng = Rng::new(state.seed, &[0x41C5, state.step as u64]);
            if rng.f64() < train_cfg.mixup_prob {
                mixup(&mut batch, &mut rng, train_cfg.mixup_alpha);
            }
            smooth(&mut batch.targets, classes, train_cfg.label_smoothing);
            let lr = train_cfg.lr_at(state.step, warmup, total);
            interval.step(&mut trainer, &batch, &labels_now, classes, lr, &mut state)?;
            bar.set_position(state.step as u64);
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
            if interrupted || limit.is_some_and(|l| state.step >= l) {
                state.seconds = start_seconds + session.elapsed().as_secs_f64();
                save_checkpoint(run, &trainer, &state)?;
                bar.finish_and_clear();
                if interrupted {
                    return Err(Interrupted(run.clone()).into());
                }
                eprintln!(
                    "stopped after {} steps (--max-steps): {:.3} s/step; checkpoint in {}",
                    state.step - steps_at_start,
                    session.elapsed().as_secs_f64() / (state.step - steps_at_start).max(1) as f64,
                    run.join("checkpoint").display()
                );
                return Ok(());
            }
        }
        let ev = eval::evaluate_features(&trainer.model(), model_cfg, &val, 1, bs)?;
        let lr = train_cfg.lr_at(state.step.saturating_sub(1), warmup, total);
        let seconds = start_seconds + session.elapsed().as_secs_f64();
        end_epoch(
            run,
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
        "done: {} epochs, {} steps in {:.1} min (+ {cache_seconds:.0} s for the features); best val top-1 {:.2}% (weights {}), run in {}",
        train_cfg.epochs,
        state.step,
        state.seconds / 60.0,
        state.best_val_top1,
        run.join("best.bpk").display(),
        run.display()
    );
    Ok(())
}
