//! Running an exported MBT model with tract, through tract's runtime registry (`cpu` always;
//! `cuda` and `gpu-or-cpu` where a GPU runtime is compiled in), and reading the metadata the
//! file carries.
//!
//! A model file is refused, with the reason, when it is not ONNX, when its `metadata_props` are
//! missing or invalid, or when its graph inputs do not match what its own tokenizer settings
//! produce.

// Linking tract-cuda registers its "cuda" runtime in tract's registry.
#[cfg(feature = "cuda")]
use tract_cuda as _;

use std::path::Path;

use mbt_core::metadata::{MetadataError, ModelMetadata};
use thiserror::Error;
use tract_onnx::prelude::*;

#[cfg(feature = "ort")]
pub mod onnxruntime;
pub mod ops;
pub mod parts;

#[derive(Debug, Error)]
pub enum InferError {
    #[error("{path}: cannot read: {source}")]
    Io {
        path: String,
        source: std::io::Error,
    },
    #[error("{path}: not a readable ONNX model: {reason}")]
    NotOnnx { path: String, reason: String },
    #[error("{path}: {source}")]
    Metadata { path: String, source: MetadataError },
    #[error("{path}: the graph does not match its metadata: {reason}")]
    Inconsistent { path: String, reason: String },
    #[error("runtime `{name}`: {reason}")]
    Runtime { name: String, reason: String },
    #[error("input `{name}` has shape {got:?}: expected [N, {tokens}, {dim}] (N >= 1)")]
    InputShape {
        name: &'static str,
        got: Vec<usize>,
        tokens: usize,
        dim: usize,
    },
    #[error("inference failed: {0}")]
    Run(String),
}

/// Sets how many threads tract's matrix products use from now on, process-wide (tract keeps
/// one default executor). 1 (the default) runs everything on the calling thread; more splits
/// large products over a rayon pool, which helps a bigger model or batch more than the edge
/// model's small ones (see BENCHMARKS.md). Errors only when the pool cannot be created.
pub fn set_tract_threads(n: usize) -> Result<(), InferError> {
    use tract_linalg::multithread::{set_default_executor, Executor};
    if n <= 1 {
        set_default_executor(Executor::SingleThread);
        return Ok(());
    }
    // Built here rather than with `Executor::multithread`, which panics when the pool cannot
    // be created (thread limits): that is an error to report, not a crash.
    let pool = rayon::ThreadPoolBuilder::new()
        .thread_name(|i| format!("tract-{i}"))
        .num_threads(n)
        .build()
        .map_err(|e| InferError::Runtime {
            name: "cpu".into(),
            reason: format!("cannot start {n} tract threads: {e}"),
        })?;
    set_default_executor(Executor::MultiThread(std::sync::Arc::new(pool)));
    Ok(())
}

/// Logits for a batch, row-major `[batch, classes]` each.
#[derive(Debug, Clone, PartialEq)]
pub struct Logits {
    pub batch: usize,
    pub classes: usize,
    pub fused: Vec<f32>,
    pub video: Vec<f32>,
    pub audio: Vec<f32>,
}

/// A loaded, optimised model ready to run.
pub struct Model {
    plan: Box<dyn Runnable>,
    pub metadata: ModelMetadata,
    pub runtime: String,
    /// `(tokens, patch_dim)` of the `video` and `audio` inputs.
    pub video_shape: (usize, usize),
    pub audio_shape: (usize, usize),
}

impl Model {
    pub fn load(path: &Path, runtime: &str) -> Result<Self, InferError> {
        let bytes = std::fs::read(path).map_err(|source| InferError::Io {
            path: path.display().to_string(),
            source,
        })?;
        Self::from_bytes(&bytes, &path.display().to_string(), runtime)
    }

    /// Loads from memory; `name` is used in errors.
    pub fn from_bytes(bytes: &[u8], name: &str, runtime: &str) -> Result<Self, InferError> {
        Self::from_bytes_with_batch(bytes, name, runtime, None)
    }

    /// Like [`Model::load`], with the symbolic batch dimension `N` fixed to `batch` before
    /// tract optimises the graph: a plan for exactly that batch size (and only it).
    pub fn load_with_batch(path: &Path, runtime: &str, batch: usize) -> Result<Self, InferError> {
        let bytes = std::fs::read(path).map_err(|source| InferError::Io {
            path: path.display().to_string(),
            source,
        })?;
        Self::from_bytes_with_batch(&bytes, &path.display().to_string(), runtime, Some(batch))
    }

    fn from_bytes_with_batch(
        bytes: &[u8],
        name: &str,
        runtime: &str,
        batch: Option<usize>,
    ) -> Result<Self, InferError> {
        let Checked {
            metadata,
            video_shape,
            audio_shape,
            mut typed,
        } = check(bytes, name)?;
        if let Some(n) = batch {
            let mut subs = std::collections::HashMap::new();
            subs.insert(typed.symbols.sym("N"), TDim::Val(n as i64));
            typed = typed
                .set_symbols(&subs)
                .map_err(|e| InferError::Inconsistent {
                    path: name.into(),
                    reason: format!("fixing the batch to {n}: {e:#}"),
                })?;
        }
        let rt_err = |reason: String| InferError::Runtime {
            name: runtime.into(),
            reason,
        };
        let rt = tract_onnx::tract_core::runtime::runtime_for_name(runtime)
            .map_err(|e| rt_err(format!("{e:#}")))?
            .ok_or_else(|| rt_err("not compiled into this build".into()))?;
        // Our depthwise convolution (ops::depthwise) is a CPU operator: only the CPU runtime's
        // plan gets it, and tract keeps every depthwise convolution it does not cover.
        if rt.name() == "cpu" && ops::depthwise::enabled() {
            ops::depthwise::rewrite(&mut typed).map_err(|e| rt_err(format!("{e:#}")))?;
        }
        // tract-cuda 0.23 panics (`expect("Could not create CUDA context")`) when the CUDA
        // libraries load but no device answers: a GPU-less machine with the toolkit
        // installed, a broken driver, the toolkit's stub libcuda on the library path (seen
        // on the H100 host). A panic there must become an error, so `backend = "auto"` falls
        // back to the CPU instead of taking the daemon down.
        let prepared = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| rt.prepare(typed)));
        let plan = match prepared {
            Ok(plan) => plan.map_err(|e| rt_err(format!("{e:#}")))?,
            Err(panic) => {
                let msg = panic
                    .downcast_ref::<String>()
                    .cloned()
                    .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
                    .unwrap_or_else(|| "unknown panic".into());
                return Err(rt_err(format!(
                    "the runtime failed while preparing the model: {msg}"
                )));
            }
        };
        Ok(Model {
            plan,
            metadata,
            runtime: rt.name().to_string(),
            video_shape,
            audio_shape,
        })
    }

    pub fn classes(&self) -> usize {
        self.metadata.labels.len()
    }

    /// Runs a batch: `video` holds `batch * Tv * Pv` values, `audio` `batch * Ta * Pa`.
    pub fn run(&self, batch: usize, video: &[f32], audio: &[f32]) -> Result<Logits, InferError> {
        check_batch(batch, video, audio, self.video_shape, self.audio_shape)?;
        let run_err = |e: TractError| InferError::Run(format!("{e:#}"));
        let v = Tensor::from_shape(&[batch, self.video_shape.0, self.video_shape.1], video)
            .map_err(run_err)?;
        let a = Tensor::from_shape(&[batch, self.audio_shape.0, self.audio_shape.1], audio)
            .map_err(run_err)?;
        let out = self.plan.run(tvec!(v.into(), a.into())).map_err(run_err)?;
        let take = |i: usize| -> Result<Vec<f32>, InferError> {
            let t = out
                .get(i)
                .ok_or_else(|| InferError::Run(format!("missing output {i}")))?;
            let view = t.try_as_plain_ram().map_err(run_err)?;
            Ok(view.as_slice::<f32>().map_err(run_err)?.to_vec())
        };
        Ok(Logits {
            batch,
            classes: self.classes(),
            fused: take(0)?,
            video: take(1)?,
            audio: take(2)?,
        })
    }
}

/// A model file's metadata alone (no graph analysis): what a caller needs to choose how to run
/// it (for example whether it holds trunks, `mbt.trunks`).
pub fn read_metadata(bytes: &[u8], name: &str) -> Result<ModelMetadata, InferError> {
    let proto = tract_onnx::onnx()
        .proto_model_for_read(&mut &bytes[..])
        .map_err(|e| InferError::NotOnnx {
            path: name.into(),
            reason: format!("{e:#}"),
        })?;
    metadata_of(&proto, name)
}

/// Parses a loaded file's `metadata_props`; errors name the file.
fn metadata_of(
    proto: &tract_onnx::pb::ModelProto,
    name: &str,
) -> Result<ModelMetadata, InferError> {
    ModelMetadata::from_props(
        proto
            .metadata_props
            .iter()
            .map(|p| (p.key.as_str(), p.value.as_str())),
    )
    .map_err(|source| InferError::Metadata {
        path: name.into(),
        source,
    })
}

/// What every backend needs to know about a model file before running it.
pub(crate) struct Checked {
    pub metadata: ModelMetadata,
    pub video_shape: (usize, usize),
    pub audio_shape: (usize, usize),
    pub typed: TypedModel,
}

/// Parses an ONNX file and refuses it, with the reason, unless its metadata is valid and its
/// graph's interface is the one the metadata's tokenizer settings produce. Every backend goes
/// through here, so a model tract would refuse is refused by ONNX Runtime too.
pub(crate) fn check(bytes: &[u8], name: &str) -> Result<Checked, InferError> {
    let onnx = tract_onnx::onnx();
    let not_onnx = |e: TractError| InferError::NotOnnx {
        path: name.into(),
        reason: format!("{e:#}"),
    };
    let proto = onnx
        .proto_model_for_read(&mut &bytes[..])
        .map_err(not_onnx)?;
    let metadata = metadata_of(&proto, name)?;
    let tok = &metadata.tokenizer;
    let video_shape = (tok.video.token_count(), tok.video.token_dim());
    let audio_shape = (tok.audio.token_count(), tok.audio.token_dim());
    let inconsistent = |reason: String| InferError::Inconsistent {
        path: name.into(),
        reason,
    };
    let graph = proto
        .graph
        .as_ref()
        .ok_or_else(|| inconsistent("no graph".into()))?;
    let inputs: Vec<&str> = graph
        .input
        .iter()
        .map(|i| i.name.as_str())
        .filter(|n| !graph.initializer.iter().any(|t| t.name == *n))
        .collect();
    if inputs != ["video", "audio"] {
        return Err(inconsistent(format!(
            "expected inputs [video, audio], found {inputs:?}"
        )));
    }
    let outputs: Vec<&str> = graph.output.iter().map(|o| o.name.as_str()).collect();
    if outputs != OUTPUTS {
        return Err(inconsistent(format!(
            "expected outputs [logits, logits_video, logits_audio], found {outputs:?}"
        )));
    }
    let model = onnx.model_for_proto_model(&proto).map_err(not_onnx)?;
    let typed = model
        .into_typed()
        .and_then(|m| m.into_decluttered())
        .map_err(|e| inconsistent(format!("{e:#}")))?;
    for (ix, (input, (t, p))) in ["video", "audio"]
        .iter()
        .zip([video_shape, audio_shape])
        .enumerate()
    {
        let fact = typed
            .input_fact(ix)
            .map_err(|e| inconsistent(format!("{e:#}")))?;
        let dims: Vec<String> = fact.shape.iter().map(|d| d.to_string()).collect();
        if dims.len() != 3 || dims[1] != t.to_string() || dims[2] != p.to_string() {
            return Err(inconsistent(format!(
                "input `{input}` is {dims:?} but the tokenizer settings give [N, {t}, {p}]"
            )));
        }
    }
    Ok(Checked {
        metadata,
        video_shape,
        audio_shape,
        typed,
    })
}

/// The graph's outputs, in order: fused, video head, audio head.
pub(crate) const OUTPUTS: [&str; 3] = ["logits", "logits_video", "logits_audio"];

/// Refuses a batch whose buffers do not hold `batch` windows of the model's token shapes.
pub(crate) fn check_batch(
    batch: usize,
    video: &[f32],
    audio: &[f32],
    video_shape: (usize, usize),
    audio_shape: (usize, usize),
) -> Result<(), InferError> {
    let check = |name: &'static str, data: &[f32], (t, p): (usize, usize)| {
        if batch == 0 || data.len() != batch * t * p {
            let got = if t * p > 0 && data.len() % (t * p) == 0 {
                vec![data.len() / (t * p), t, p]
            } else {
                vec![data.len()]
            };
            return Err(InferError::InputShape {
                name,
                got,
                tokens: t,
                dim: p,
            });
        }
        Ok(())
    };
    check("video", video, video_shape)?;
    check("audio", audio, audio_shape)
}
