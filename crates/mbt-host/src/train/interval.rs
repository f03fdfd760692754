//! One optimisation step as both training loops take it (the from-scratch loop in `mod.rs`
//! and the cached-features loop in `cached.rs`): the step, the loss checked finite, and the
//! running tallies of the log interval the `train` lines report ([`Interval`]). One place, so
//! the two loops cannot drift apart in what they count or when they stop on a bad loss.

use anyhow::bail;
use mbt_model::train::{Batch, Trainer};

use super::{argmax, step_seed, RunState};

/// The running loss and top-1 of one log interval (reset after each `train` line).
#[derive(Debug, Default)]
pub(crate) struct Interval {
    loss: f64,
    correct: usize,
    n: usize,
    steps: usize,
}

impl Interval {
    /// One optimisation step at `lr` on `batch` (the clips' labels are `labels`, the model has
    /// `classes` outputs): its loss checked finite, its loss and fused top-1 counted into this
    /// interval, the run's step and batch counters advanced.
    pub(crate) fn step(
        &mut self,
        trainer: &mut Trainer,
        batch: &Batch,
        labels: &[usize],
        classes: usize,
        lr: f64,
        state: &mut RunState,
    ) -> anyhow::Result<()> {
        let (stats, logits) = trainer.step(batch, lr, step_seed(state.seed, state.step));
        if !stats.loss.is_finite() {
            bail!(
                "the loss became {} at step {} (lr {lr:.3e}); lower train.lr or enable train.clip_norm",
                stats.loss,
                state.step
            );
        }
        self.loss += stats.loss as f64;
        self.correct += logits
            .chunks(classes)
            .zip(labels)
            .filter(|(r, &y)| argmax(r) == y)
            .count();
        self.n += batch.n;
        self.steps += 1;
        state.step += 1;
        state.batch += 1;
        Ok(())
    }

    /// Mean loss of the interval's steps.
    pub(crate) fn loss(&self) -> f64 {
        self.loss / self.steps as f64
    }

    /// Top-1 of the interval's samples, in percent.
    pub(crate) fn top1(&self) -> f64 {
        100.0 * self.correct as f64 / self.n as f64
    }
}
