//! Evaluation-mode logits of a model on a [`Batch`] (no gradients, no stochastic depth), and
//! the projected-token path personalisation uses: [`project`] turns trunk features into each
//! stream's projected tokens, [`predict_projected`] runs the rest of the model on them.

use burn::prelude::*;

use super::{Batch, Predictions};
use crate::{Mbt, ModelConfig};

pub(super) fn tensor3(data: Vec<f32>, shape: [usize; 3], device: &Device) -> Tensor<3> {
    Tensor::from_data(TensorData::new(data, shape), device)
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
