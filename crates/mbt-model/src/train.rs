//! One optimisation step of the MBT, its learning-rate schedule and losses, and checkpoints.
//!
//! The data side (reading clips, augmenting, batching, metrics, the loop) lives in `mbt-host`;
//! this module only sees batches of token matrices with soft targets, so the same code trains
//! any configuration of the model. Loss, per DESIGN.md section 2 and the issue: the fused
//! logits' loss plus `modality_loss_weight` times each stream head's own loss, so every head
//! learns to stand alone (the daemon falls back to one head when a sensor dies).

use std::ops::Range;
use std::path::Path;

use burn::module::{Module, ModuleMapper, ModuleVisitor, Param, ParamId};
use burn::optim::decay::WeightDecayConfig;
use burn::optim::grad_clipping::GradientClippingConfig;
use burn::optim::momentum::MomentumConfig;
use burn::optim::{AdamWConfig, GradientsAccumulator, GradientsParams, ModuleOptimizer, SgdConfig};
use burn::prelude::*;
use burn::tensor::activation::log_softmax;
use rayon::prelude::*;
use serde::{Deserialize, Serialize};
use thiserror::Error;

use crate::{DropPath, Mbt, ModelConfig};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Optimizer {
    /// SGD with momentum (the method's recipe).
    Sgd,
    AdamW,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Loss {
    /// Softmax cross-entropy: one label per clip (AVE-Intersect).
    Softmax,
    /// Sigmoid binary cross-entropy per class: multi-label sets (report mAP).
    Sigmoid,
}

/// What each stream head's own loss is measured against.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StreamTargets {
    /// The clip's label, with the `loss` above (the method's recipe).
    Label,
    /// What that modality alone can know: every label the kinds it perceives could make (the
    /// kinds heard for audio, the kinds seen for video, from the data set's manifest), with a
    /// sigmoid loss. On AVE-Intersect one modality cannot tell the label, so asking its head
    /// for the label only teaches it the guess; asking for its candidates teaches it to
    /// recognise what it perceives, which the fused head then intersects.
    Kinds,
}

/// Which weights a run trains.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Trainable {
    /// Every weight of the model (the trunks are outside it: they stay frozen either way).
    All,
    /// Everything but each stream's token projection (and the trunk last layer trained with
    /// `trunks.finetune_last`): the layers, CLS, positions, bottlenecks and heads. For
    /// personalisation: a clip's projected tokens then stay what they were, so a replay set of
    /// standard clips can be shipped as projected tokens (`crate::replay`).
    Fusion,
    /// The stream heads only (their LayerNorm and classifier); the rest is frozen. For
    /// personalisation: the features the old labels rely on cannot move.
    Heads,
    /// Personalisation: only the heads' columns of the added labels (see
    /// [`Trainer::keep_head_columns`]); every old label's logit stays what it was on any input.
    NewLabels,
}

/// What the distillation holds the student's old-label logits to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DistillLoss {
    /// The teacher's softmax over the old labels (learning without forgetting): relative
    /// logits only, so all old logits may sink together below a new label's.
    Softmax,
    /// The teacher's logits themselves (mean squared difference): their level too, so a new
    /// label has to rise above the old logits instead of pushing them down.
    Logits,
}

/// The training recipe: the `[train]` table of a model config file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TrainConfig {
    pub epochs: usize,
    pub batch_size: usize,
    pub optimizer: Optimizer,
    /// Peak learning rate, reached at the end of the warm-up.
    pub lr: f64,
    /// Linear warm-up length, in epochs (fractions allowed).
    pub warmup_epochs: f64,
    /// Final learning rate as a fraction of `lr` (cosine decay reaches it at the last step).
    pub min_lr_ratio: f64,
    pub momentum: f64,
    pub weight_decay: f64,
    /// Gradient clipping by global L2 norm; 0 disables it.
    pub clip_norm: f64,
    pub loss: Loss,
    pub label_smoothing: f64,
    /// Weight of each stream head's own loss next to the fused loss.
    pub modality_loss_weight: f64,
    /// Targets of the stream heads' losses (`label` or `kinds`).
    pub stream_targets: StreamTargets,
    /// Mixup: probability of mixing a batch, and the Beta(alpha, alpha) of the mixing weight.
    pub mixup_prob: f64,
    pub mixup_alpha: f64,
    /// SpecAugment: number of masks and the widest mask, in spectrogram frames / mel bins.
    pub time_masks: usize,
    pub time_mask_max: usize,
    pub freq_masks: usize,
    pub freq_mask_max: usize,
    /// Frame augmentation: random crop scale range (fraction of the side), horizontal flip
    /// probability, colour jitter strength (brightness/contrast/saturation, +-fraction).
    pub crop_min_scale: f64,
    pub flip_prob: f64,
    pub color_jitter: f64,
    /// Shift of the audio window, at most this many spectrogram frames either way.
    pub time_shift: usize,
    /// Threads for burn's CPU backend and data preparation. With more
    /// than one, every step also cuts its batch into one shard per thread, trained in
    /// parallel on forks of the weights with their gradients summed (see [`Trainer::step`]).
    pub threads: usize,
    /// Train each epoch after the first on a freshly rendered training split (same size, same
    /// training sources, new positions, levels, noise, pitch... drawn from `(seed, epoch)`)
    /// instead of the data set's clips again. Needs the source media of `mbt data fetch`. With
    /// a few thousand clips the model otherwise memorises clips rather than learning what is
    /// heard and seen; the next epoch's clips render on a background thread while this one
    /// trains.
    pub fresh_renders: bool,
    /// Personalisation (`mbt train --init`): weight of the distillation loss that holds the
    /// old labels' logits to the initial model's on the same clips (learning without
    /// forgetting, Li and Hoiem 2016); 0 disables it. Needs a teacher (see
    /// [`Trainer::step_distilled`]).
    pub distill_weight: f64,
    /// Temperature of that distillation (both softmaxes divided by it; the loss is scaled by
    /// its square so its gradient keeps its size).
    pub distill_temperature: f64,
    /// What the distillation matches (`softmax` or `logits`).
    pub distill_loss: DistillLoss,
    /// Which weights train (`all`, `fusion`, `heads` or `new_labels`).
    pub trainable: Trainable,
    /// Personalisation with a replay set: replayed standard clips per user clip in each batch
    /// (a batch holds `batch_size` user clips and `replay_ratio` times as many replayed ones;
    /// an epoch is one pass over the user's clips).
    pub replay_ratio: f64,
}

impl Default for TrainConfig {
    fn default() -> Self {
        TrainConfig {
            epochs: 20,
            batch_size: 32,
            optimizer: Optimizer::Sgd,
            lr: 0.05,
            warmup_epochs: 1.0,
            min_lr_ratio: 0.01,
            momentum: 0.9,
            weight_decay: 1e-4,
            clip_norm: 1.0,
            loss: Loss::Softmax,
            label_smoothing: 0.1,
            modality_loss_weight: 1.0,
            stream_targets: StreamTargets::Label,
            mixup_prob: 0.0,
            mixup_alpha: 0.3,
            time_masks: 2,
            time_mask_max: 24,
            freq_masks: 2,
            freq_mask_max: 16,
            crop_min_scale: 0.8,
            flip_prob: 0.5,
            color_jitter: 0.2,
            time_shift: 8,
            threads: 2,
            fresh_renders: false,
            distill_weight: 0.0,
            distill_temperature: 2.0,
            distill_loss: DistillLoss::Softmax,
            trainable: Trainable::All,
            replay_ratio: 1.0,
        }
    }
}

#[derive(Debug, Error)]
#[error("[train] {field}: {message}")]
pub struct TrainConfigError {
    pub field: &'static str,
    pub message: String,
}

impl TrainConfig {
    pub fn from_table(table: toml::Table, origin: &str) -> Result<Self, String> {
        let cfg: TrainConfig = mbt_core::settings::from_table(table, &format!("{origin} [train]"))
            .map_err(|e| e.to_string())?;
        cfg.validate().map_err(|e| format!("{origin}: {e}"))?;
        Ok(cfg)
    }

    pub fn validate(&self) -> Result<(), TrainConfigError> {
        let err = |field, message: &str| {
            Err(TrainConfigError {
                field,
                message: message.to_string(),
            })
        };
        let unit = |x: f64| (0.0..=1.0).contains(&x);
        if self.epochs == 0 {
            return err("epochs", "must be at least 1");
        }
        if self.batch_size == 0 {
            return err("batch_size", "must be at least 1");
        }
        if !(self.lr > 0.0 && self.lr.is_finite()) {
            return err("lr", "must be a positive number");
        }
        if !(self.warmup_epochs >= 0.0 && self.warmup_epochs < self.epochs as f64) {
            return err("warmup_epochs", "must be in [0, epochs)");
        }
        if !unit(self.min_lr_ratio) {
            return err("min_lr_ratio", "must be in [0, 1]");
        }
        if !(0.0..1.0).contains(&self.momentum) {
            return err("momentum", "must be in [0, 1)");
        }
        if !(self.weight_decay >= 0.0 && self.clip_norm >= 0.0) {
            return err("weight_decay", "weight_decay and clip_norm must be >= 0");
        }
        if !(0.0..1.0).contains(&self.label_smoothing) {
            return err("label_smoothing", "must be in [0, 1)");
        }
        if self.modality_loss_weight.is_nan() || self.modality_loss_weight < 0.0 {
            return err("modality_loss_weight", "must be >= 0");
        }
        if !unit(self.mixup_prob) || self.mixup_alpha.is_nan() || self.mixup_alpha <= 0.0 {
            return err(
                "mixup_prob",
                "mixup_prob must be in [0, 1] and mixup_alpha > 0",
            );
        }
        if !(self.crop_min_scale > 0.0 && self.crop_min_scale <= 1.0) {
            return err("crop_min_scale", "must be in (0, 1]");
        }
        if !unit(self.flip_prob) || !(0.0..1.0).contains(&self.color_jitter) {
            return err(
                "flip_prob",
                "flip_prob must be in [0, 1] and color_jitter in [0, 1)",
            );
        }
        if self.threads == 0 {
            return err("threads", "must be at least 1");
        }
        if !(self.distill_weight >= 0.0 && self.distill_weight.is_finite()) {
            return err("distill_weight", "must be a number >= 0");
        }
        if !(self.distill_temperature > 0.0 && self.distill_temperature.is_finite()) {
            return err("distill_temperature", "must be a positive number");
        }
        if !(self.replay_ratio >= 0.0 && self.replay_ratio <= 64.0) {
            return err("replay_ratio", "must be a number in [0, 64]");
        }
        Ok(())
    }

    /// Learning rate at optimisation step `step` of `total` (linear warm-up over `warmup`
    /// steps from `lr / warmup`, then a half cosine from `lr` down to `min_lr_ratio * lr`).
    pub fn lr_at(&self, step: usize, warmup: usize, total: usize) -> f64 {
        let lr = self.lr;
        if step < warmup {
            return lr * (step + 1) as f64 / warmup as f64;
        }
        let span = total.saturating_sub(warmup).max(1);
        let t = ((step - warmup) as f64 / span as f64).min(1.0);
        let floor = lr * self.min_lr_ratio;
        floor + 0.5 * (lr - floor) * (1.0 + (std::f64::consts::PI * t).cos())
    }
}

/// A batch of token matrices (one per stream, `[n, tokens, patch_dim]` row-major) with soft
/// targets `[n, classes]` (one-hot, smoothed or mixed by the data side).
pub struct Batch {
    pub n: usize,
    pub inputs: Vec<Vec<f32>>,
    pub targets: Vec<f32>,
    /// Per stream `[n, classes]` multi-hot targets of its head (`StreamTargets::Kinds`), or
    /// empty: every head is trained on `targets`.
    pub stream_targets: Vec<Vec<f32>>,
}

/// Losses of one step (before the optimiser moved the weights).
#[derive(Debug, Clone, Copy, Default, Serialize)]
pub struct StepStats {
    pub loss: f32,
    pub fused_loss: f32,
}

/// Logits of a batch: fused, then each stream's, each `[n, classes]` row-major.
pub struct Predictions {
    pub fused: Vec<f32>,
    pub streams: Vec<Vec<f32>>,
}

/// A teacher's logits for one batch (personalisation's distillation): the initial model's
/// fused logits, then each stream's, each `[n, classes]` over its `classes` (old) labels,
/// which are the first `classes` of the student's.
pub struct Teacher {
    pub classes: usize,
    pub logits: Vec<Vec<f32>>,
}

#[derive(Debug, Error)]
pub enum CheckpointError {
    #[error("{path}: {message}")]
    Io { path: String, message: String },
}

/// The model under training with its optimiser state.
pub struct Trainer {
    model: Option<Mbt>,
    optim: ModuleOptimizer,
    device: Device,
    cfg: ModelConfig,
    train: TrainConfig,
    /// Head columns put back after every step (see [`Trainer::keep_head_columns`]).
    keep: Option<KeptColumns>,
    /// Batches hold projected tokens (see [`Trainer::set_projected_inputs`]).
    projected: bool,
}

/// The first `n` columns of every stream head (weight and bias), as they were.
struct KeptColumns {
    n: usize,
    heads: Vec<(Tensor<2>, Option<Tensor<1>>)>,
}

impl KeptColumns {
    /// `model` with the kept columns written back over the optimiser's update.
    fn apply(&self, mut model: Mbt) -> Mbt {
        for (io, (w0, b0)) in model.streams.iter_mut().zip(&self.heads) {
            let w = io.head.weight.val();
            let [_, c] = w.dims();
            let w = Tensor::cat(vec![w0.clone(), w.narrow(1, self.n, c - self.n)], 1)
                .detach()
                .require_grad();
            io.head.weight = Param::initialized(io.head.weight.id, w);
            if let (Some(bp), Some(b0)) = (io.head.bias.take(), b0) {
                let b = bp.val();
                let b = Tensor::cat(vec![b0.clone(), b.narrow(0, self.n, c - self.n)], 0)
                    .detach()
                    .require_grad();
                io.head.bias = Some(Param::initialized(bp.id, b));
            }
        }
        model
    }
}

fn tensor3(data: Vec<f32>, shape: [usize; 3], device: &Device) -> Tensor<3> {
    Tensor::from_data(TensorData::new(data, shape), device)
}

impl Trainer {
    /// A fresh model initialised from `seed`.
    pub fn new(cfg: &ModelConfig, train: &TrainConfig, seed: u64) -> Self {
        let device = Device::flex().autodiff();
        device.seed(seed);
        let model = trainable(Mbt::new(cfg, &device), train.trainable);
        Trainer {
            model: Some(model),
            optim: optimizer(train),
            device,
            cfg: cfg.clone(),
            train: train.clone(),
            keep: None,
            projected: false,
        }
    }

    /// Keeps the first `n` columns of every head (the old labels' weights and biases) as they
    /// are now: after every step they are written back, so with `trainable = "new_labels"`
    /// (the rest frozen) only the added labels' columns learn.
    pub fn keep_head_columns(&mut self, n: usize) {
        let heads = self
            .model()
            .streams
            .iter()
            .map(|io| {
                (
                    io.head.weight.val().narrow(1, 0, n).detach(),
                    io.head
                        .bias
                        .as_ref()
                        .map(|b| b.val().narrow(0, 0, n).detach()),
                )
            })
            .collect();
        self.keep = Some(KeptColumns { n, heads });
    }

    /// A trainer that starts from `weights` (a model of `cfg`, e.g. read back from an exported
    /// file and grown by new classes) instead of a fresh initialisation.
    pub fn from_weights(
        cfg: &ModelConfig,
        train: &TrainConfig,
        seed: u64,
        weights: Mbt,
    ) -> Result<Self, CheckpointError> {
        let mut t = Trainer::new(cfg, train, seed);
        let Some(model) = t.model.take() else {
            unreachable!("a new trainer holds its model")
        };
        let loaded =
            model
                .try_load_record(weights.into_record())
                .map_err(|e| CheckpointError::Io {
                    path: "(initial weights)".into(),
                    message: e.to_string(),
                })?;
        t.model = Some(trainable(loaded, train.trainable));
        Ok(t)
    }

    /// Starts the trained trunk layers (`trunks.finetune_last`) from the trunks' own weights,
    /// read from `dir`; a no-op for models without them. Call before the first step.
    pub fn init_trunk_layers(&mut self, dir: &Path) -> Result<(), crate::trunk::TrunkError> {
        let Some(model) = self.model.take() else {
            unreachable!("the model is put back at the end of every step")
        };
        let keep = model.clone();
        match model.with_trunk_weights(&self.cfg, dir, &self.device) {
            Ok(m) => {
                self.model = Some(m);
                Ok(())
            }
            Err(e) => {
                self.model = Some(keep);
                Err(e)
            }
        }
    }

    pub fn model_config(&self) -> &ModelConfig {
        &self.cfg
    }

    /// From now on the batches given to [`Trainer::step_distilled`] hold each stream's
    /// projected tokens (`[n, tokens', width]`, from [`project`]) instead of trunk features:
    /// how personalisation trains on user clips and a replay set together. Only meaningful
    /// when the projections are frozen (`Trainable::Fusion`, `Heads`, `NewLabels`).
    pub fn set_projected_inputs(&mut self, on: bool) {
        self.projected = on;
    }

    /// The current weights as a plain (non-autodiff) model, for evaluation and export.
    pub fn model(&self) -> Mbt {
        match &self.model {
            Some(m) => m.valid(),
            None => unreachable!("the model is only taken out inside step()"),
        }
    }

    /// One optimisation step at learning rate `lr`; `step_seed` seeds stochastic depth so a
    /// resumed run draws the same masks as an uninterrupted one. Returns the losses and the
    /// fused logits of the batch (before the update), for running training metrics.
    ///
    /// With `threads > 1` the batch is cut into that many contiguous shards whose forward and
    /// backward passes run at the same time on the thread pool, each on its own fork of the
    /// weights (so each has its own autograd graph); their gradients, each weighted by its
    /// share of the batch, are summed into the gradient of the whole batch's mean loss. The
    /// CPU backend's kernels barely use a second core on tensors this small (1.09x from one
    /// thread to two, BENCHMARKS.md); whole shards do.
    pub fn step(&mut self, batch: &Batch, lr: f64, step_seed: u64) -> (StepStats, Vec<f32>) {
        self.step_distilled(batch, None, lr, step_seed)
    }

    /// [`Trainer::step`] with the distillation loss against `teacher`'s logits for the same
    /// batch (weighted by `train.distill_weight`; the stream heads' terms also by
    /// `modality_loss_weight`): for each output, the cross-entropy of the student's softmax
    /// over the teacher's classes against the teacher's, both at `distill_temperature`.
    pub fn step_distilled(
        &mut self,
        batch: &Batch,
        teacher: Option<&Teacher>,
        lr: f64,
        step_seed: u64,
    ) -> (StepStats, Vec<f32>) {
        let Some(model) = self.model.take() else {
            unreachable!("the model is put back at the end of every step")
        };
        let parts = shards(batch.n, self.train.threads);
        let ctx = ShardCtx {
            cfg: &self.cfg,
            train: &self.train,
            device: &self.device,
            batch,
            step_seed,
            teacher: teacher.filter(|_| self.train.distill_weight > 0.0),
            projected: self.projected,
        };
        let (stats, logits, grads) = if parts.len() == 1 {
            // One shard: the model itself, no fork, no weighting (the single-thread
            // arithmetic stays what it always was).
            let out = ctx.pass(&model, 0..batch.n);
            (out.stats, out.logits, out.grads)
        } else {
            let outs: Vec<ShardOut> = parts
                .into_par_iter()
                .map(|r| ctx.pass(&model.clone().fork(ctx.device), r))
                .collect();
            let mut acc = GradientsAccumulator::<Mbt>::new();
            let mut stats = StepStats::default();
            let mut logits = Vec::with_capacity(batch.n * self.cfg.num_classes());
            for out in outs {
                acc.accumulate(&model, out.grads);
                stats.loss += out.stats.loss;
                stats.fused_loss += out.stats.fused_loss;
                logits.extend(out.logits);
            }
            (stats, logits, acc.grads())
        };
        let model = self.optim.step(lr, model, grads);
        self.model = Some(match &self.keep {
            Some(k) => k.apply(model),
            None => model,
        });
        (stats, logits)
    }

    /// Logits without gradients or stochastic depth.
    pub fn predict(&self, batch: &Batch) -> Predictions {
        predict(&self.model(), &self.cfg, batch)
    }

    /// Writes `dir/model.bpk` and `dir/optim.bin` (the caller writes the run state beside).
    pub fn save(&self, dir: &Path) -> Result<(), CheckpointError> {
        let io = |p: &Path, e: &dyn std::fmt::Display| CheckpointError::Io {
            path: p.display().to_string(),
            message: e.to_string(),
        };
        std::fs::create_dir_all(dir).map_err(|e| io(dir, &e))?;
        let mp = dir.join("model.bpk");
        self.model().save_file(&mp).map_err(|e| io(&mp, &e))?;
        let op = dir.join("optim.bin");
        self.optim.save(&op).map_err(|e| io(&op, &e))?;
        // The optimiser state is keyed by parameter id; a model rebuilt on resume gets fresh
        // ids, so the ids are saved (in visiting order) and given back on load.
        let mut ids = CollectIds(Vec::new());
        self.model().visit(&mut ids);
        let ip = dir.join("param_ids.json");
        let text = serde_json::to_string(&ids.0).map_err(|e| io(&ip, &e))?;
        std::fs::write(&ip, text).map_err(|e| io(&ip, &e))?;
        Ok(())
    }

    /// Restores weights and optimiser state written by [`Trainer::save`].
    pub fn load(&mut self, dir: &Path) -> Result<(), CheckpointError> {
        let io = |p: &Path, e: &dyn std::fmt::Display| CheckpointError::Io {
            path: p.display().to_string(),
            message: e.to_string(),
        };
        let mp = dir.join("model.bpk");
        let Some(model) = self.model.take() else {
            unreachable!("the model is put back at the end of every step")
        };
        let ip = dir.join("param_ids.json");
        let ids: Vec<u64> = std::fs::read_to_string(&ip)
            .map_err(|e| io(&ip, &e))
            .and_then(|t| serde_json::from_str(&t).map_err(|e| io(&ip, &e)))?;
        let mut count = CollectIds(Vec::new());
        model.visit(&mut count);
        if count.0.len() != ids.len() {
            self.model = Some(model);
            return Err(io(
                &ip,
                &format!(
                    "{} parameter ids, but the model has {} parameters (a checkpoint of another config)",
                    ids.len(),
                    count.0.len()
                ),
            ));
        }
        let loaded = load_weights(model.clone(), &mp).map(|m| m.map(&mut SetIds { ids, next: 0 }));
        self.model = Some(match loaded {
            Ok(m) => m,
            Err(e) => {
                self.model = Some(model);
                return Err(e);
            }
        });
        let op = dir.join("optim.bin");
        let optim = optimizer(&self.train);
        self.optim = optim.load(&op).map_err(|e| io(&op, &e))?;
        Ok(())
    }
}

/// What one shard of a step needs (shared read-only by the shards' threads).
struct ShardCtx<'a> {
    cfg: &'a ModelConfig,
    train: &'a TrainConfig,
    device: &'a Device,
    batch: &'a Batch,
    step_seed: u64,
    teacher: Option<&'a Teacher>,
    projected: bool,
}

/// One shard's losses (weighted by its share of the batch), fused logits and gradients.
struct ShardOut {
    stats: StepStats,
    logits: Vec<f32>,
    grads: GradientsParams,
}

impl ShardCtx<'_> {
    /// Forward and backward over the batch's samples `rows` with `model`.
    fn pass(&self, model: &Mbt, rows: Range<usize>) -> ShardOut {
        let (b, n) = (self.batch, rows.len());
        let classes = self.cfg.num_classes();
        let part = |v: &[f32]| {
            let row = v.len() / b.n.max(1);
            v[rows.start * row..rows.end * row].to_vec()
        };
        let width = self.cfg.width;
        let inputs = self
            .cfg
            .streams()
            .iter()
            .zip(&b.inputs)
            .map(|(s, x)| {
                let shape = if self.projected {
                    [n, x.len() / (b.n.max(1) * width), width]
                } else {
                    [n, s.tokens, s.patch_dim]
                };
                tensor3(part(x), shape, self.device)
            })
            .collect();
        let matrix = |v: &[f32]| -> Tensor<2> {
            Tensor::from_data(TensorData::new(part(v), [n, classes]), self.device)
        };
        let targets = matrix(&b.targets);
        let drop = DropPath {
            seed: self.step_seed,
            first_row: rows.start,
        };
        let out = if self.projected {
            model.forward_projected(inputs, Some(drop))
        } else {
            model.forward(inputs, Some(drop))
        };
        let logits = out
            .logits
            .clone()
            .into_data()
            .try_to_vec::<f32>()
            .unwrap_or_default();
        let mut distill = None;
        if let Some(t) = self.teacher {
            let temp = self.train.distill_temperature;
            let outputs = std::iter::once(&out.logits).chain(&out.stream_logits);
            for (o, (student, teacher)) in outputs.zip(&t.logits).enumerate() {
                let weight = if o == 0 {
                    self.train.distill_weight
                } else {
                    self.train.distill_weight * self.train.modality_loss_weight
                };
                if weight == 0.0 {
                    continue;
                }
                let own = student.clone().narrow(1, 0, t.classes);
                let kd = match self.train.distill_loss {
                    DistillLoss::Softmax => {
                        let soft = softmax_rows(&part(teacher), t.classes, temp);
                        let soft =
                            Tensor::from_data(TensorData::new(soft, [n, t.classes]), self.device);
                        (soft * log_softmax(own / temp, 1)).sum_dim(1).mean().neg()
                            * (weight * temp * temp)
                    }
                    DistillLoss::Logits => {
                        let target = Tensor::from_data(
                            TensorData::new(part(teacher), [n, t.classes]),
                            self.device,
                        );
                        (own - target).powi_scalar(2).mean() * weight
                    }
                };
                distill = Some(match distill {
                    Some(d) => d + kd,
                    None => kd,
                });
            }
        }
        let fused = loss(out.logits, targets.clone(), self.train.loss);
        let mut total = fused.clone();
        if let Some(d) = distill {
            total = total + d;
        }
        if self.train.modality_loss_weight > 0.0 {
            for (i, l) in out.stream_logits.into_iter().enumerate() {
                let own = match b.stream_targets.get(i) {
                    Some(t) => loss(l, matrix(t), Loss::Sigmoid),
                    None => loss(l, targets.clone(), self.train.loss),
                };
                total = total + own * self.train.modality_loss_weight;
            }
        }
        // The batch loss is the mean over all samples: a shard's mean counts by its share.
        let (total, fused) = if n == b.n {
            (total, fused)
        } else {
            let share = n as f64 / b.n as f64;
            (total * share, fused * share)
        };
        let stats = StepStats {
            loss: total.clone().into_scalar::<f32>(),
            fused_loss: fused.into_scalar::<f32>(),
        };
        ShardOut {
            stats,
            logits,
            grads: GradientsParams::from_grads(total.backward(), model),
        }
    }
}

/// Row-wise softmax of `logits / temperature` (`[rows, classes]`), in f64 for the sums.
fn softmax_rows(logits: &[f32], classes: usize, temperature: f64) -> Vec<f32> {
    let mut out = Vec::with_capacity(logits.len());
    for row in logits.chunks(classes) {
        let m = row.iter().cloned().fold(f32::NEG_INFINITY, f32::max) as f64;
        let e: Vec<f64> = row
            .iter()
            .map(|&v| ((v as f64 - m) / temperature).exp())
            .collect();
        let s: f64 = e.iter().sum();
        out.extend(e.iter().map(|v| (v / s) as f32));
    }
    out
}

/// `model` with the weights [`Trainable`] excludes frozen (no gradients, so the optimiser
/// never moves them).
fn trainable(model: Mbt, which: Trainable) -> Mbt {
    match which {
        Trainable::All => model,
        Trainable::Fusion => {
            let mut model = model;
            for io in model.streams.iter_mut() {
                io.last = io.last.take().map(|l| l.no_grad());
                io.embed = io.embed.clone().no_grad();
            }
            model
        }
        Trainable::Heads | Trainable::NewLabels => {
            let Mbt {
                streams,
                layers,
                bottleneck,
                num_layers,
                fusion_layer,
                fusion_code,
                tokens,
            } = model;
            Mbt {
                streams: streams
                    .into_iter()
                    .map(|mut io| {
                        io.last = io.last.map(|l| l.no_grad());
                        io.embed = io.embed.no_grad();
                        io.cls = io.cls.map(|p| p.set_require_grad(false));
                        io.pos = io.pos.set_require_grad(false);
                        io
                    })
                    .collect(),
                layers: layers.into_iter().map(|b| b.no_grad()).collect(),
                bottleneck: bottleneck.map(|p| p.set_require_grad(false)),
                num_layers,
                fusion_layer,
                fusion_code,
                tokens,
            }
        }
    }
}

/// `threads` contiguous row ranges covering `0..n` (fewer when `n` is smaller), sizes
/// differing by at most one.
fn shards(n: usize, threads: usize) -> Vec<Range<usize>> {
    let k = threads.clamp(1, n.max(1));
    (0..k).map(|i| (i * n / k)..((i + 1) * n / k)).collect()
}

struct CollectIds(Vec<u64>);

impl ModuleVisitor for CollectIds {
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
        self.0.push(param.id.val());
    }
}

struct SetIds {
    ids: Vec<u64>,
    next: usize,
}

impl ModuleMapper for SetIds {
    fn map_float<const D: usize>(&mut self, mut param: Param<Tensor<D>>) -> Param<Tensor<D>> {
        if let Some(&id) = self.ids.get(self.next) {
            param.id = ParamId::from(id);
        }
        self.next += 1;
        param
    }
}

/// Loads weights saved by [`Trainer::save`] (or [`save_weights`]) into `model`.
pub fn load_weights(model: Mbt, path: &Path) -> Result<Mbt, CheckpointError> {
    let io = |e: &dyn std::fmt::Display| CheckpointError::Io {
        path: path.display().to_string(),
        message: e.to_string(),
    };
    let record = burn::store::ModuleRecord::load(path).map_err(|e| io(&e))?;
    model.try_load_record(record).map_err(|e| io(&e))
}

/// Builds a model for `cfg` on the plain CPU device and loads `path` into it.
pub fn load_model(cfg: &ModelConfig, path: &Path) -> Result<Mbt, CheckpointError> {
    let device = Device::flex();
    load_weights(Mbt::new(cfg, &device), path)
}

/// Logits of `model` on `batch` (evaluation mode).
pub fn predict(model: &Mbt, cfg: &ModelConfig, batch: &Batch) -> Predictions {
    let out = model.forward(inputs(cfg, batch), None);
    predictions(out)
}

/// [`predict`] on a batch of projected tokens (from [`project`]).
pub fn predict_projected(model: &Mbt, cfg: &ModelConfig, batch: &Batch) -> Predictions {
    let device = Device::flex();
    let tokens = batch
        .inputs
        .iter()
        .map(|x| {
            let t = x.len() / (batch.n.max(1) * cfg.width);
            tensor3(x.clone(), [batch.n, t, cfg.width], &device)
        })
        .collect();
    predictions(model.forward_projected(tokens, None))
}

/// Each stream's trunk features in `batch` through `model`'s projections: per stream
/// `[n, tokens', width]` row-major (the inputs of [`predict_projected`] and of a trainer in
/// projected mode).
pub fn project(model: &Mbt, cfg: &ModelConfig, batch: &Batch) -> Vec<Vec<f32>> {
    model
        .project(inputs(cfg, batch))
        .into_iter()
        .map(|t| t.into_data().try_to_vec::<f32>().unwrap_or_default())
        .collect()
}

fn inputs(cfg: &ModelConfig, batch: &Batch) -> Vec<Tensor<3>> {
    let device = Device::flex();
    cfg.streams()
        .iter()
        .zip(&batch.inputs)
        .map(|(s, x)| tensor3(x.clone(), [batch.n, s.tokens, s.patch_dim], &device))
        .collect()
}

fn predictions(out: crate::Output) -> Predictions {
    let vec = |t: Tensor<2>| t.into_data().try_to_vec::<f32>().unwrap_or_default();
    Predictions {
        fused: vec(out.logits),
        streams: out.stream_logits.into_iter().map(vec).collect(),
    }
}

fn optimizer(t: &TrainConfig) -> ModuleOptimizer {
    let clip = (t.clip_norm > 0.0).then_some(GradientClippingConfig::Norm(t.clip_norm as f32));
    match t.optimizer {
        Optimizer::Sgd => SgdConfig::new()
            .with_momentum(Some(MomentumConfig {
                momentum: t.momentum,
                dampening: 0.0,
                nesterov: false,
            }))
            .with_weight_decay(
                (t.weight_decay > 0.0).then(|| WeightDecayConfig::new(t.weight_decay as f32)),
            )
            .with_gradient_clipping(clip)
            .init(),
        Optimizer::AdamW => AdamWConfig::new()
            .with_weight_decay(t.weight_decay as f32)
            .with_grad_clipping(clip)
            .init(),
    }
}

/// Mean over the batch of the loss of `logits` against soft `targets`.
fn loss(logits: Tensor<2>, targets: Tensor<2>, kind: Loss) -> Tensor<1> {
    match kind {
        Loss::Softmax => (targets * log_softmax(logits, 1)).sum_dim(1).mean().neg(),
        Loss::Sigmoid => {
            // max(x, 0) - x t + log(1 + exp(-|x|)): BCE with logits, stable for large |x|.
            let pos = logits.clone().clamp_min(0.0);
            let soft = logits.clone().abs().neg().exp().log1p();
            (pos - logits * targets + soft).sum_dim(1).mean()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn schedule_warms_up_linearly_then_follows_a_half_cosine() {
        let t = TrainConfig {
            lr: 0.1,
            min_lr_ratio: 0.0,
            ..TrainConfig::default()
        };
        // warm-up over 4 steps: 0.025, 0.05, 0.075, 0.1
        for (s, want) in [(0, 0.025), (1, 0.05), (3, 0.1)] {
            assert!((t.lr_at(s, 4, 104) - want).abs() < 1e-12, "step {s}");
        }
        // halfway through the cosine: lr / 2; at the end: the floor.
        assert!((t.lr_at(54, 4, 104) - 0.05).abs() < 1e-12);
        assert!(t.lr_at(104, 4, 104).abs() < 1e-12);
        let t = TrainConfig {
            min_lr_ratio: 0.1,
            ..t
        };
        assert!((t.lr_at(104, 4, 104) - 0.01).abs() < 1e-12);
    }

    #[test]
    fn losses_match_hand_computation() {
        let device = Device::flex();
        let logits: Tensor<2> =
            Tensor::from_data(TensorData::new(vec![1.0f32, 2.0, 3.0], [1, 3]), &device);
        let target: Tensor<2> =
            Tensor::from_data(TensorData::new(vec![0.0f32, 0.0, 1.0], [1, 3]), &device);
        // -log softmax(3 | 1,2,3) = log(e^1+e^2+e^3) - 3
        let want = ((1f64).exp() + (2f64).exp() + (3f64).exp()).ln() - 3.0;
        let got = loss(logits.clone(), target.clone(), Loss::Softmax).into_scalar::<f32>();
        assert!((got as f64 - want).abs() < 1e-6, "{got} vs {want}");
        // BCE: sum over classes of -[t log s(x) + (1-t) log(1-s(x))]
        let s = |x: f64| 1.0 / (1.0 + (-x).exp());
        let want = -(1.0 - s(1.0)).ln() - (1.0 - s(2.0)).ln() - s(3.0).ln();
        let got = loss(logits, target, Loss::Sigmoid).into_scalar::<f32>();
        assert!((got as f64 - want).abs() < 1e-5, "{got} vs {want}");
    }

    /// A batch of `n` samples for `cfg` with inputs in [-1, 1) from a fixed LCG and one-hot
    /// targets cycling through the classes.
    fn toy_batch(cfg: &ModelConfig, n: usize) -> Batch {
        let mut state = 0x2545_F491_4F6C_DD1Du64;
        let mut next = move || {
            state = state
                .wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(1);
            ((state >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
        };
        let classes = cfg.num_classes();
        Batch {
            n,
            inputs: cfg
                .streams()
                .iter()
                .map(|s| (0..n * s.tokens * s.patch_dim).map(|_| next()).collect())
                .collect(),
            targets: (0..n * classes)
                .map(|i| f32::from(i % classes == (i / classes) % classes))
                .collect(),
            stream_targets: Vec::new(),
        }
    }

    #[test]
    fn a_batch_cut_into_shards_steps_like_the_whole_batch() {
        // Stochastic depth on, so the test also holds the masks to the same rows.
        let cfg = ModelConfig {
            drop_path: 0.4,
            ..crate::config::tiny()
        };
        let recipe = |threads| TrainConfig {
            optimizer: Optimizer::Sgd,
            threads,
            ..TrainConfig::default()
        };
        let batch = toy_batch(&cfg, 5);
        let whole = Trainer::new(&cfg, &recipe(1), 1);
        let before = whole.predict(&batch).fused;
        // Three trainers on the same weights: whole batch, 3 shards (rows 0-0, 1-2, 3-4), and
        // the whole batch with other stochastic-depth masks.
        let same = |threads| Trainer {
            model: whole.model.clone(),
            optim: optimizer(&recipe(threads)),
            device: whole.device.clone(),
            cfg: cfg.clone(),
            train: recipe(threads),
            keep: None,
            projected: false,
        };
        let (mut one, mut three, mut other) = (same(1), same(3), same(1));
        let (s1, l1) = one.step(&batch, 0.5, 7);
        let (s3, l3) = three.step(&batch, 0.5, 7);
        let (s_other, _) = other.step(&batch, 0.5, 8);
        let close = |a: &[f32], b: &[f32], what: &str| {
            assert_eq!(a.len(), b.len(), "{what}");
            for (i, (x, y)) in a.iter().zip(b).enumerate() {
                assert!(
                    (x - y).abs() <= 1e-4 * (1.0 + x.abs()),
                    "{what}[{i}]: {x} vs {y}"
                );
            }
        };
        close(
            &[s1.loss, s1.fused_loss],
            &[s3.loss, s3.fused_loss],
            "losses",
        );
        close(&l1, &l3, "logits before the update");
        let after = one.predict(&batch).fused;
        close(
            &after,
            &three.predict(&batch).fused,
            "logits after the update",
        );
        // The comparison is not vacuous: the step moved the weights, and the masks matter.
        assert!(before.iter().zip(&after).any(|(a, b)| (a - b).abs() > 1e-3));
        assert!(
            (s1.loss - s_other.loss).abs() > 1e-4,
            "{} vs {}",
            s1.loss,
            s_other.loss
        );
    }

    #[test]
    fn fusion_keeps_the_projections_and_a_projected_batch_trains_like_the_raw_one() {
        let cfg = ModelConfig {
            drop_path: 0.1,
            ..crate::config::tiny()
        };
        let recipe = TrainConfig {
            optimizer: Optimizer::Sgd,
            trainable: Trainable::Fusion,
            threads: 2,
            ..TrainConfig::default()
        };
        let batch = toy_batch(&cfg, 4);
        let mut raw = Trainer::new(&cfg, &recipe, 1);
        let mut proj = Trainer::new(&cfg, &recipe, 1);
        proj.model = raw.model.clone();
        proj.set_projected_inputs(true);
        let tokens = Batch {
            n: 4,
            inputs: project(&raw.model(), &cfg, &batch),
            targets: batch.targets.clone(),
            stream_targets: Vec::new(),
        };
        let v = |x: Tensor<2>| x.into_data().try_to_vec::<f32>().unwrap();
        let before = raw.model();
        let (s_raw, l_raw) = raw.step(&batch, 0.5, 3);
        let (s_proj, l_proj) = proj.step(&tokens, 0.5, 3);
        // Same masks, same inputs to the first layer: the same losses and logits.
        assert!(
            (s_raw.loss - s_proj.loss).abs() < 1e-5,
            "{s_raw:?} vs {s_proj:?}"
        );
        for (a, b) in l_raw.iter().zip(&l_proj) {
            assert!((a - b).abs() < 1e-4, "{a} vs {b}");
        }
        let (after_raw, after_proj) = (raw.model(), proj.model());
        for m in [&after_raw, &after_proj] {
            assert_eq!(
                v(before.streams[0].embed.weight.val()),
                v(m.streams[0].embed.weight.val()),
                "a projection moved"
            );
            assert_ne!(
                v(before.layers[0].attn.qkv.weight.val()),
                v(m.layers[0].attn.qkv.weight.val()),
                "the layers did not move"
            );
        }
        // Both took the same step: the same layer weights after it.
        for (a, b) in v(after_raw.layers[1].attn.qkv.weight.val())
            .iter()
            .zip(v(after_proj.layers[1].attn.qkv.weight.val()))
        {
            assert!((a - b).abs() < 1e-5, "{a} vs {b}");
        }
    }

    #[test]
    fn heads_only_moves_only_the_heads_and_distillation_adds_the_teacher_term() {
        let cfg = ModelConfig {
            drop_path: 0.0,
            ..crate::config::tiny()
        };
        let recipe = TrainConfig {
            optimizer: Optimizer::Sgd,
            trainable: Trainable::Heads,
            modality_loss_weight: 0.0,
            label_smoothing: 0.0,
            threads: 2,
            ..TrainConfig::default()
        };
        let batch = toy_batch(&cfg, 4);
        let mut t = Trainer::new(&cfg, &recipe, 1);
        let vals = |m: &Mbt| {
            let v = |x: Tensor<2>| x.into_data().try_to_vec::<f32>().unwrap();
            (
                v(m.streams[0].embed.weight.val()),
                v(m.layers[0].attn.qkv.weight.val()),
                v(m.streams[0].head.weight.val()),
            )
        };
        let before = vals(&t.model());
        let (plain, logits) = t.step(&batch, 0.5, 3);
        let after = vals(&t.model());
        assert_eq!(before.0, after.0, "the patch embedding moved");
        assert_eq!(before.1, after.1, "a transformer layer moved");
        assert_ne!(before.2, after.2, "the head did not move");

        // The distillation term, by hand from the same logits: T^2 * mean over rows of the
        // cross-entropy of softmax(student[:k] / T) against softmax(teacher / T).
        let k = cfg.num_classes() - 2;
        let teacher: Vec<f32> = (0..4 * k)
            .map(|i| ((i * 37) % 11) as f32 / 3.0 - 1.5)
            .collect();
        let recipe = TrainConfig {
            distill_weight: 0.7,
            distill_temperature: 2.0,
            ..recipe
        };
        let mut d = Trainer::new(&cfg, &recipe, 1);
        let mut same = Trainer::new(&cfg, &recipe, 1);
        d.model = Some(trainable(t.model.clone().unwrap(), Trainable::Heads));
        same.model = d.model.clone();
        let (no_teacher, l0) = same.step(&batch, 0.0, 3);
        let tch = Teacher {
            classes: k,
            logits: vec![teacher.clone(), vec![], vec![]],
        };
        let (with, l1) = d.step_distilled(&batch, Some(&tch), 0.0, 3);
        assert_eq!(l0, l1);
        let classes = cfg.num_classes();
        let mut want = 0f64;
        for (s, tr) in l1.chunks(classes).zip(teacher.chunks(k)) {
            let p = softmax_rows(tr, k, 2.0);
            let q = softmax_rows(&s[..k], k, 2.0);
            want -= p
                .iter()
                .zip(&q)
                .map(|(a, b)| *a as f64 * (*b as f64).ln())
                .sum::<f64>();
        }
        want *= 0.7 * 4.0 / 4.0;
        let got = (with.loss - no_teacher.loss) as f64;
        assert!(
            (got - want).abs() < 1e-4,
            "distillation term {got} vs {want}"
        );
        assert!(want > 0.01);
        let _ = (plain, logits);
    }

    #[test]
    fn bad_recipes_name_the_field() {
        let bad = |f: fn(&mut TrainConfig)| {
            let mut c = TrainConfig::default();
            f(&mut c);
            c.validate().unwrap_err().field
        };
        assert_eq!(bad(|c| c.epochs = 0), "epochs");
        assert_eq!(bad(|c| c.lr = -1.0), "lr");
        assert_eq!(bad(|c| c.warmup_epochs = 50.0), "warmup_epochs");
        assert_eq!(bad(|c| c.momentum = 1.0), "momentum");
        assert_eq!(bad(|c| c.label_smoothing = 1.0), "label_smoothing");
    }
}
