//! One optimisation step of the MBT, its learning-rate schedule and losses, and checkpoints.
//!
//! The data side (reading clips, augmenting, batching, metrics, the loop) lives in `mbt-host`;
//! this module only sees batches of token matrices with soft targets, so the same code trains
//! any configuration of the model. Loss, per DESIGN.md section 2 and the issue: the fused
//! logits' loss plus `modality_loss_weight` times each stream head's own loss, so every head
//! learns to stand alone (the daemon falls back to one head when a sensor dies).
//!
//! This file is the door: the types that cross it (a [`Batch`] in; [`StepStats`],
//! [`Predictions`] out; a distillation [`Teacher`]) and the re-exports. Behind it:
//!
//! | file | owns |
//! | --- | --- |
//! | `recipe.rs` | the `[train]` table ([`TrainConfig`] and its enums), its validation, the learning-rate schedule |
//! | `trainer.rs` | [`Trainer`]: building it, which weights train, the optimiser, one step cut into shards |
//! | `shard.rs` | one shard of a step: forward, the losses (fused, per stream, distillation), backward |
//! | `checkpoint.rs` | saving and resuming a trainer, loading weights into a model |
//! | `predict.rs` | evaluation-mode logits and the projected-token path ([`predict`], [`project`]) |
//! | `tests.rs` | the unit tests of all of the above |

mod checkpoint;
mod predict;
mod recipe;
mod shard;
mod trainer;

#[cfg(test)]
mod tests;

use serde::Serialize;

pub use checkpoint::{load_model, load_weights, CheckpointError};
pub use predict::{predict, predict_projected, project};
pub use recipe::{
    DistillLoss, Loss, Optimizer, StreamTargets, TrainConfig, TrainConfigError, Trainable,
};
pub use trainer::Trainer;

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
