//! Inference backends behind one trait, and the choice between them.
//!
//! * `cpu`: tract's CPU runtime through `mbt-infer`, always built, always works. A model with
//!   pretrained trunks runs *streamed* (`TractStreaming`): each trunk runs once per new frame
//!   and log-mel patch, only the fusion part once per window.
//! * `cuda`: tract-cuda through tract's runtime registry (Jetson and other NVIDIA boards),
//!   with cargo feature `cuda`. The CUDA libraries are opened at run time; the first load on a
//!   machine compiles the GPU kernels (about 75 s on an H100), later loads take about a second,
//!   so the load is logged before it starts: a daemon that is compiling must not look hung.
//! * `ort`: ONNX Runtime opened at run time (feature `ort`, on by default: nothing is linked or
//!   downloaded at build time), with the execution providers of `model.ort_providers` (QNN, VSI
//!   NPU, OpenVINO, TensorRT...), for boards whose vendor ships the accelerator that way.
//!
//! `backend = "auto"` tries them best first and takes the first that loads, logging why each
//! one before it was skipped; ONNX Runtime is tried only when `model.ort_providers` names an
//! accelerator (its plain CPU provider is no reason to leave tract); the CPU is always last, so
//! `auto` always runs. An explicit choice that cannot load is an error: a user who asked for
//! the GPU must not silently get the CPU.
//!
//! The trait is what a GPU or NPU backend needs: it is `Send` (it lives on the inference
//! thread), takes whole batches (accelerators want them), reports its largest useful batch,
//! and its errors are values, never panics.

use std::path::Path;

use mbt_core::metadata::ModelMetadata;

use crate::config::ModelConfig;

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

/// tract on the CPU for a model with trunks: the composed file cut into its trunk parts and
/// fusion part (`mbt_infer::parts::Streaming`); overlapping windows reuse the trunk outputs of
/// the frames and patches they share. Same logits as the whole-window model (tests/hybrid.rs).
pub struct TractStreaming {
    stream: mbt_infer::parts::Streaming,
    metadata: ModelMetadata,
    shapes: ((usize, usize), (usize, usize)),
}

impl TractStreaming {
    pub fn from_bytes(bytes: &[u8], name: &str) -> Result<Self, BackendError> {
        let metadata = mbt_infer::read_metadata(bytes, name)?;
        let tok = &metadata.tokenizer;
        let shapes = (
            (tok.video.token_count(), tok.video.token_dim()),
            (tok.audio.token_count(), tok.audio.token_dim()),
        );
        let stream = mbt_infer::parts::Streaming::from_bytes(bytes, name, shapes.0, shapes.1)?;
        Ok(TractStreaming {
            stream,
            metadata,
            shapes,
        })
    }

    /// Trunk rows run and rows reused so far.
    pub fn stream_stats(&self) -> mbt_infer::parts::StreamStats {
        self.stream.stats
    }
}

impl Backend for TractStreaming {
    fn name(&self) -> String {
        "tract-cpu (streaming trunks)".into()
    }

    fn metadata(&self) -> &ModelMetadata {
        &self.metadata
    }

    fn input_shapes(&self) -> ((usize, usize), (usize, usize)) {
        self.shapes
    }

    fn max_batch(&self) -> usize {
        1
    }

    fn run(&mut self, batch: usize, video: &[f32], audio: &[f32]) -> Result<Logits, BackendError> {
        let ((tv, pv), (ta, pa)) = self.shapes;
        if batch == 0 || video.len() != batch * tv * pv || audio.len() != batch * ta * pa {
            return Err(mbt_infer::InferError::InputShape {
                name: "video",
                got: vec![video.len(), audio.len()],
                tokens: tv,
                dim: pv,
            }
            .into());
        }
        let classes = self.metadata.labels.len();
        let mut out = Logits {
            batch,
            classes,
            fused: Vec::new(),
            video: Vec::new(),
            audio: Vec::new(),
        };
        for (v, a) in video.chunks(tv * pv).zip(audio.chunks(ta * pa)) {
            let [f, lv, la] = self.stream.run(v, a)?;
            out.fused.extend(f);
            out.video.extend(lv);
            out.audio.extend(la);
        }
        Ok(out)
    }
}

#[cfg(feature = "cuda")]
fn cuda(path: &Path, max_batch: usize) -> Result<Box<dyn Backend>, BackendError> {
    tracing::info!(
        "loading {} on CUDA: the first load on this machine compiles GPU kernels (about a minute), later loads take about a second",
        path.display()
    );
    let t0 = std::time::Instant::now();
    let model = mbt_infer::Model::load(path, "cuda")?;
    tracing::info!("CUDA model ready in {:.1} s", t0.elapsed().as_secs_f64());
    Ok(Box::new(TractCpu {
        model,
        max_batch: max_batch.max(1),
    }))
}

#[cfg(not(feature = "cuda"))]
fn cuda(_path: &Path, _max_batch: usize) -> Result<Box<dyn Backend>, BackendError> {
    Err(BackendError::Unavailable {
        backend: "cuda",
        reason: "this mbtd was not built with feature `cuda` (tract-cuda): rebuild with `--features cuda`".into(),
    })
}

/// ONNX Runtime with the configured execution providers.
#[cfg(feature = "ort")]
pub struct Ort {
    model: mbt_infer::onnxruntime::OrtModel,
    max_batch: usize,
}

#[cfg(feature = "ort")]
impl Backend for Ort {
    fn name(&self) -> String {
        format!(
            "onnxruntime-{} [{}]",
            self.model.version,
            self.model.providers.join(", ")
        )
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

#[cfg(feature = "ort")]
fn ort(cfg: &ModelConfig) -> Result<Box<dyn Backend>, BackendError> {
    let library = if cfg.ort_library.is_empty() {
        mbt_infer::onnxruntime::default_library()
    } else {
        cfg.ort_library.clone()
    };
    let model = mbt_infer::onnxruntime::OrtModel::load(
        &cfg.path,
        &library,
        &cfg.ort_providers,
        cfg.ort_threads,
    )?;
    for s in &model.skipped {
        tracing::warn!("onnxruntime: execution provider not registered: {s}");
    }
    Ok(Box::new(Ort {
        model,
        max_batch: cfg.max_batch.max(1),
    }))
}

#[cfg(not(feature = "ort"))]
fn ort(_cfg: &ModelConfig) -> Result<Box<dyn Backend>, BackendError> {
    Err(BackendError::Unavailable {
        backend: "ort",
        reason: "this mbtd was not built with feature `ort` (ONNX Runtime, load-dynamic)".into(),
    })
}

/// Loads the model with the backend `cfg.backend` names ("auto", "cpu", "cuda", "ort").
/// Returns the backend and one line per backend `auto` skipped, saying why.
pub fn open(cfg: &ModelConfig) -> Result<(Box<dyn Backend>, Vec<String>), BackendError> {
    let cpu = || -> Result<Box<dyn Backend>, BackendError> {
        let name = cfg.path.display().to_string();
        let bytes = std::fs::read(&cfg.path).map_err(|source| mbt_infer::InferError::Io {
            path: name.clone(),
            source,
        })?;
        if !mbt_infer::read_metadata(&bytes, &name)?.trunks.is_empty() {
            return Ok(Box::new(TractStreaming::from_bytes(&bytes, &name)?));
        }
        Ok(Box::new(TractCpu::from_bytes(
            &bytes,
            &name,
            cfg.max_batch,
        )?))
    };
    match cfg.backend.as_str() {
        "cpu" => Ok((cpu()?, Vec::new())),
        "cuda" => Ok((cuda(&cfg.path, cfg.max_batch)?, Vec::new())),
        "ort" => Ok((ort(cfg)?, Vec::new())),
        _ => {
            let mut skipped = Vec::new();
            match cuda(&cfg.path, cfg.max_batch) {
                Ok(b) => return Ok((b, skipped)),
                Err(e) => skipped.push(format!("cuda: {e}")),
            }
            if cfg.ort_providers.iter().any(|p| p != "cpu") {
                match ort(cfg) {
                    Ok(b) => return Ok((b, skipped)),
                    Err(e) => skipped.push(format!("ort: {e}")),
                }
            } else {
                skipped.push(
                    "ort: model.ort_providers names no accelerator, so tract's CPU runtime is used"
                        .into(),
                );
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

    fn model(backend: &str, path: &str) -> ModelConfig {
        ModelConfig {
            path: path.into(),
            backend: backend.into(),
            ..ModelConfig::default()
        }
    }

    #[cfg(not(feature = "cuda"))]
    #[test]
    fn cuda_without_the_feature_is_an_error_naming_the_feature() {
        let e = open(&model("cuda", "/nonexistent/model.onnx"))
            .err()
            .unwrap()
            .to_string();
        assert!(e.contains("feature `cuda`"), "{e}");
    }

    #[test]
    fn auto_says_why_it_skipped_the_others_and_falls_back_to_the_cpu() {
        // auto gets to the CPU (which then fails on the missing file, naming it).
        let e = open(&model("auto", "/nonexistent/model.onnx"))
            .err()
            .unwrap()
            .to_string();
        assert!(e.contains("/nonexistent/model.onnx"), "{e}");
    }

    #[cfg(feature = "ort")]
    #[test]
    fn ort_with_a_missing_library_is_an_error_naming_it() {
        let mut cfg = model("ort", "models/edge.onnx");
        cfg.ort_library = "/nonexistent/libonnxruntime.so".into();
        let e = open(&cfg).err().unwrap().to_string();
        assert!(e.contains("/nonexistent/libonnxruntime.so"), "{e}");
    }
}
