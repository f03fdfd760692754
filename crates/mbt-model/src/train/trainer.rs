//! [`Trainer`]: the model under training with its optimiser state. Building it (fresh, from
//! weights, with the trunks' own last layers), which weights a run trains ([`Trainable`]), the
//! optimiser a recipe asks for, and one optimisation step: the batch cut into one shard per
//! thread (`shard.rs` does each shard's pass), the shards' gradients summed, the kept head
//! columns written back. Saving and loading live in `checkpoint.rs`.

use std::ops::Range;
use std::path::Path;

use burn::module::{Module, Param};
use burn::optim::decay::WeightDecayConfig;
use burn::optim::grad_clipping::GradientClippingConfig;
use burn::optim::momentum::MomentumConfig;
use burn::optim::{AdamWConfig, GradientsAccumulator, ModuleOptimizer, SgdConfig};
use burn::prelude::*;
use rayon::prelude::*;

use super::checkpoint::CheckpointError;
use super::predict::predict;
use super::shard::{ShardCtx, ShardOut};
use super::{Batch, Optimizer, Predictions, StepStats, Teacher, TrainConfig, Trainable};
use crate::{Mbt, ModelConfig};

/// The model under training with its optimiser state.
pub struct Trainer {
    pub(super) model: Option<Mbt>,
    pub(super) optim: ModuleOptimizer,
    pub(super) device: Device,
    pub(super) cfg: ModelConfig,
    pub(super) train: TrainConfig,
    /// Head columns put back after every step (see [`Trainer::keep_head_columns`]).
    pub(super) keep: Option<KeptColumns>,
    /// Batches hold projected tokens (see [`Trainer::set_projected_inputs`]).
    pub(super) projected: bool,
}

/// The first `n` columns of every stream head (weight and bias), as they were.
pub(super) struct KeptColumns {
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
    /// projected tokens (`[n, tokens', width]`, from [`project`](super::project)) instead of
    /// trunk features: how personalisation trains on user clips and a replay set together.
    /// Only meaningful when the projections are frozen (`Trainable::Fusion`, `Heads`,
    /// `NewLabels`).
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
}

/// `model` with the weights [`Trainable`] excludes frozen (no gradients, so the optimiser
/// never moves them).
pub(super) fn trainable(model: Mbt, which: Trainable) -> Mbt {
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

pub(super) fn optimizer(t: &TrainConfig) -> ModuleOptimizer {
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
