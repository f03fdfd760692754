//! Inference backends behind one trait, and the choice between them.
//!
//! * `cpu`: tract's CPU runtime through `mbt-infer`, always built, always works.
//! * `cuda`: tract-cuda through tract's runtime registry (Jetson and other NVIDIA boards). Not
//!   built into this version: it is refused with the reason, and `auto` skips it.
//! * `ort`: ONNX Runtime loaded at run time (`load-dynamic`) with the execution providers of
//!   `model.ort_providers` (QNN, VSI NPU, OpenVINO, TensorRT...). Not built into this version
//!   either.
//!
//! `backend = "auto"` tries them best first and takes the first that loads, logging why each
//! one before it was skipped; the CPU is always last, so `auto` always runs. An explicit
//! choice that cannot load is an error: a user who asked for the GPU must not silently get the
//! CPU.
//!
//! The trait is what a GPU or NPU backend needs: it is `Send` (it lives on the inference
//! thread), takes whole batches (accelerators want them), reports its largest useful batch,
//! and its errors are values, never panics.

use std::path::Path;

use mbt_core::metadata::ModelMetadata;

/// Logits of a batch, row-major `[batch, classes]` each.
pub use mbt_infer::Logits;

#[derive(Debug, thiserror::Error)]
pub enum BackendError {
    #[error("backend `{backend}` is not available: {reason}")]
    Unavailable {
        backend: &'static str,
        reason: String,
    },
    #[error(transparent)]
    Model(#[from] mbt_infer::InferError),
}

pub trait Backend: Send {
    /// What runs, for logs and the report: "tract-cpu".
    fn name(&self) -> String;
    fn metadata(&self) -> &ModelMetadata;
    /// `(tokens, dim)` of the video and audio inputs.
    fn input_shapes(&self) -> ((usize, usize), (usize, usize));
    /// Largest batch worth sending at once (1 = no batching).
    fn max_batch(&self) -> usize;
    /// Runs `batch` windows: `video` holds `batch * Tv * Pv` values, `audio` `batch * Ta * Pa`.
    fn run(&mut self, batch: usize, video: &[f32], audio: &[f32]) -> Result<Logits, BackendError>;
}

/// tract on the CPU.
pub struct TractCpu {
    model: mbt_infer::Model,
    max_batch: usize,
}

impl TractCpu {
    pub fn load(path: &Path, max_batch: usize) -> Result<Self, BackendError> {
        Ok(TractCpu {
            model: mbt_infer::Model::load(path, "cpu")?,
            max_batch: max_batch.max(1),
        })
    }

    pub fn from_bytes(bytes: &[u8], name: &str, max_batch: usize) -> Result<Self, BackendError> {
        Ok(TractCpu {
            model: mbt_infer::Model::from_bytes(bytes, name, "cpu")?,
            max_batch: max_batch.max(1),
        })
    }
}

impl Backend for TractCpu {
    fn name(&self) -> String {
        format!("tract-{}", self.model.runtime)
    }

    fn metadata(&self) -> &ModelMetadata {
        &self.model.metadata
    }

    fn input_shapes(&self) -> ((usize, usize), (usize, usize)) {
        (self.model.video_shape, self.model.audio_shape)
    }

    fn max_batch(&self) -> usize {
        self.max_batch
    }

    fn run(&mut self, batch: usize, video: &[f32], audio: &[f32]) -> Result<Logits, BackendError> {
        Ok(self.model.run(batch, video, audio)?)
    }
}

fn cuda(_path: &Path, _max_batch: usize) -> Result<Box<dyn Backend>, BackendError> {
    Err(BackendError::Unavailable {
        backend: "cuda",
        reason: "this mbtd was not built with feature `cuda` (tract-cuda); the CUDA backend is not implemented in this version".into(),
    })
}

fn ort(
    _path: &Path,
    _max_batch: usize,
    _providers: &[String],
) -> Result<Box<dyn Backend>, BackendError> {
    Err(BackendError::Unavailable {
        backend: "ort",
        reason: "this mbtd was not built with feature `ort` (ONNX Runtime, load-dynamic); the ONNX Runtime backend is not implemented in this version".into(),
    })
}

/// Loads the model with the backend `choice` names ("auto", "cpu", "cuda", "ort"). Returns the
/// backend and one line per backend `auto` skipped, saying why.
pub fn open(
    choice: &str,
    path: &Path,
    max_batch: usize,
    ort_providers: &[String],
) -> Result<(Box<dyn Backend>, Vec<String>), BackendError> {
    let cpu = || -> Result<Box<dyn Backend>, BackendError> {
        Ok(Box::new(TractCpu::load(path, max_batch)?))
    };
    match choice {
        "cpu" => Ok((cpu()?, Vec::new())),
        "cuda" => Ok((cuda(path, max_batch)?, Vec::new())),
        "ort" => Ok((ort(path, max_batch, ort_providers)?, Vec::new())),
        _ => {
            let mut skipped = Vec::new();
            for (name, attempt) in [
                ("cuda", cuda(path, max_batch)),
                ("ort", ort(path, max_batch, ort_providers)),
            ] {
                match attempt {
                    Ok(b) => return Ok((b, skipped)),
                    Err(e) => skipped.push(format!("{name}: {e}")),
                }
            }
            Ok((cpu()?, skipped))
        }
    }
}

/// Softmax of each row of `[batch, classes]` logits: the model is single-label, so these are
/// the class probabilities the event thresholds apply to.
pub fn softmax_rows(logits: &[f32], classes: usize) -> Vec<f32> {
    let mut out = Vec::with_capacity(logits.len());
    for row in logits.chunks(classes.max(1)) {
        let max = row.iter().copied().fold(f32::NEG_INFINITY, f32::max);
        let exps: Vec<f32> = row.iter().map(|v| (v - max).exp()).collect();
        let sum: f32 = exps.iter().sum();
        out.extend(exps.iter().map(|e| e / sum));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn softmax_by_hand() {
        // ln 1, ln 2, ln 5 -> 1/8, 2/8, 5/8; a second row shifted by +100 gives the same.
        let l = [0.0, 2f32.ln(), 5f32.ln()];
        let shifted: Vec<f32> = l.iter().map(|v| v + 100.0).collect();
        let p = softmax_rows(&[l.as_slice(), &shifted].concat(), 3);
        for (got, want) in p.iter().zip([0.125, 0.25, 0.625, 0.125, 0.25, 0.625]) {
            assert!((got - want).abs() < 1e-6, "{p:?}");
        }
    }

    #[test]
    fn explicit_unavailable_backends_are_errors_and_auto_says_why_it_skipped_them() {
        let missing = Path::new("/nonexistent/model.onnx");
        for b in ["cuda", "ort"] {
            let e = open(b, missing, 1, &[]).err().unwrap().to_string();
            assert!(e.contains(&format!("feature `{b}`")), "{e}");
        }
        // auto gets to the CPU (which then fails on the missing file, naming it).
        let e = open("auto", missing, 1, &[]).err().unwrap().to_string();
        assert!(e.contains("/nonexistent/model.onnx"), "{e}");
    }
}
