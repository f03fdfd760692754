//! The training recipe: the `[train]` table of a model config file ([`TrainConfig`] and the
//! enums of its choices), its validation, and the learning-rate schedule. Plain data, no
//! tensors: the host reads and checks it before any model is built.

use serde::{Deserialize, Serialize};
use thiserror::Error;

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
    /// [`Trainer::keep_head_columns`](super::Trainer::keep_head_columns)); every old label's
    /// logit stays what it was on any input.
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
    /// parallel on forks of the weights with their gradients summed (see
    /// [`Trainer::step`](super::Trainer::step)).
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
    /// [`Trainer::step_distilled`](super::Trainer::step_distilled)).
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
