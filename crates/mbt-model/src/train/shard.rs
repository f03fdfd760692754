//! One shard of an optimisation step: the forward pass over some of the batch's rows, the
//! losses (the fused logits', each stream head's, personalisation's distillation against a
//! teacher), and the backward pass. [`Trainer::step`](super::Trainer::step) runs one per thread
//! and sums their gradients; this file is the arithmetic of the loss, apart from that plumbing.

use std::ops::Range;

use burn::optim::GradientsParams;
use burn::prelude::*;
use burn::tensor::activation::log_softmax;

use super::predict::tensor3;
use super::{Batch, DistillLoss, Loss, StepStats, Teacher, TrainConfig};
use crate::{DropPath, Mbt, ModelConfig};

/// What one shard of a step needs (shared read-only by the shards' threads).
pub(super) struct ShardCtx<'a> {
    pub(super) cfg: &'a ModelConfig,
    pub(super) train: &'a TrainConfig,
    pub(super) device: &'a Device,
    pub(super) batch: &'a Batch,
    pub(super) step_seed: u64,
    pub(super) teacher: Option<&'a Teacher>,
    pub(super) projected: bool,
}

/// One shard's losses (weighted by its share of the batch), fused logits and gradients.
pub(super) struct ShardOut {
    pub(super) stats: StepStats,
    pub(super) logits: Vec<f32>,
    pub(super) grads: GradientsParams,
}

impl ShardCtx<'_> {
    /// Forward and backward over the batch's samples `rows` with `model`.
    pub(super) fn pass(&self, model: &Mbt, rows: Range<usize>) -> ShardOut {
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
pub(super) fn softmax_rows(logits: &[f32], classes: usize, temperature: f64) -> Vec<f32> {
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

/// Mean over the batch of the loss of `logits` against soft `targets`.
pub(super) fn loss(logits: Tensor<2>, targets: Tensor<2>, kind: Loss) -> Tensor<1> {
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
