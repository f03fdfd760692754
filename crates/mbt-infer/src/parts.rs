//! Running a model with pretrained trunks in parts, so no trunk runs twice on the same audio
//! patch or frame (DESIGN.md section 2, "streaming trunks").
//!
//! A composed model file (`mbt_model::export::compose`) holds the trunks, their glue and the
//! fusion graph in one graph, with named seams: `audio_cells` / `video_cells` (one patch's /
//! one frame's tokens) and `audio_tokens` / `video_tokens` (the fusion graph's inputs). This
//! module cuts the file at those seams into three graphs (the same nodes and weights, nothing
//! re-exported): a trunk part per modality, run on each new patch or frame as it arrives, and
//! the fusion part, run once per window on the cells the window covers. Because every op before
//! the seams works per patch or per frame, the parts give the whole-window model's result
//! (checked by `tests/trunks.rs`).

use std::collections::HashSet;

use prost::Message;
use tract_onnx::pb::{
    tensor_proto::DataType, tensor_shape_proto, type_proto, GraphProto, ModelProto,
    TensorShapeProto, TypeProto, ValueInfoProto,
};
use tract_onnx::prelude::*;

use crate::{InferError, OUTPUTS};

pub const AUDIO_CELLS: &str = "audio_cells";
pub const VIDEO_CELLS: &str = "video_cells";
pub const AUDIO_TOKENS: &str = "audio_tokens";
pub const VIDEO_TOKENS: &str = "video_tokens";

fn float_input(name: &str, dims: &[Option<usize>]) -> ValueInfoProto {
    let dim = dims
        .iter()
        .map(|d| tensor_shape_proto::Dimension {
            value: Some(match d {
                Some(v) => tensor_shape_proto::dimension::Value::DimValue(*v as i64),
                None => tensor_shape_proto::dimension::Value::DimParam("N".into()),
            }),
            ..Default::default()
        })
        .collect();
    ValueInfoProto {
        name: name.into(),
        r#type: Some(TypeProto {
            value: Some(type_proto::Value::TensorType(type_proto::Tensor {
                elem_type: DataType::Float as i32,
                shape: Some(TensorShapeProto { dim }),
            })),
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// The sub-model of `model` that computes `outputs` from `inputs` (name and shape; `None` is
/// the symbolic batch): the nodes the outputs depend on, stopping at the inputs, and the
/// initializers those nodes read. Errors when an output needs a graph input not listed.
pub fn extract(
    model: &ModelProto,
    inputs: &[(&str, Vec<Option<usize>>)],
    outputs: &[&str],
) -> Result<ModelProto, String> {
    let graph = model.graph.as_ref().ok_or("no graph")?;
    let stops: HashSet<&str> = inputs.iter().map(|(n, _)| *n).collect();
    let inits: HashSet<&str> = graph.initializer.iter().map(|t| t.name.as_str()).collect();
    let mut needed: HashSet<String> = outputs.iter().map(|s| s.to_string()).collect();
    let mut keep = vec![false; graph.node.len()];
    for (i, node) in graph.node.iter().enumerate().rev() {
        if node.output.iter().any(|o| needed.contains(o)) {
            keep[i] = true;
            for inp in &node.input {
                if !inp.is_empty() && !stops.contains(inp.as_str()) {
                    needed.insert(inp.clone());
                }
            }
        }
    }
    let produced: HashSet<&str> = graph
        .node
        .iter()
        .zip(&keep)
        .filter(|(_, k)| **k)
        .flat_map(|(n, _)| n.output.iter().map(|s| s.as_str()))
        .collect();
    if let Some(missing) = needed
        .iter()
        .find(|n| !produced.contains(n.as_str()) && !inits.contains(n.as_str()))
    {
        return Err(format!(
            "`{missing}` is needed for {outputs:?} but is neither computed nor one of the inputs {:?}",
            stops
        ));
    }
    let sub = GraphProto {
        name: format!("{}-part", graph.name),
        node: graph
            .node
            .iter()
            .zip(&keep)
            .filter(|(_, k)| **k)
            .map(|(n, _)| n.clone())
            .collect(),
        initializer: graph
            .initializer
            .iter()
            .filter(|t| needed.contains(&t.name))
            .cloned()
            .collect(),
        input: inputs.iter().map(|(n, d)| float_input(n, d)).collect(),
        output: outputs
            .iter()
            .map(|o| {
                graph
                    .output
                    .iter()
                    .find(|v| v.name == *o)
                    .cloned()
                    .unwrap_or_else(|| ValueInfoProto {
                        name: o.to_string(),
                        ..Default::default()
                    })
            })
            .collect(),
        ..Default::default()
    };
    Ok(ModelProto {
        graph: Some(sub),
        metadata_props: Vec::new(),
        ..model.clone()
    })
}

/// One optimised graph with a symbolic batch: a trunk part (`[N, dim]` rows in, `[N, cells,
/// channels]` out) or the fusion part (two token inputs, three logit outputs).
pub struct Part {
    plan: Box<dyn Runnable>,
    name: String,
}

impl Part {
    /// Loads ONNX bytes with tract (`name` for errors) and optimises for any batch size.
    pub fn from_bytes(bytes: &[u8], name: &str) -> Result<Self, InferError> {
        Self::from_bytes_with_batch(bytes, name, None)
    }

    /// Like [`Part::from_bytes`], with the batch `N` fixed before optimisation: tract picks
    /// its convolution kernels for concrete shapes, measured 10x faster on the trunks than a
    /// plan for a symbolic batch. Such a plan runs exactly `batch` rows.
    pub fn from_bytes_with_batch(
        bytes: &[u8],
        name: &str,
        batch: Option<usize>,
    ) -> Result<Self, InferError> {
        let bad = |e: TractError| InferError::NotOnnx {
            path: name.into(),
            reason: format!("{e:#}"),
        };
        let typed = tract_onnx::onnx()
            .model_for_read(&mut &bytes[..])
            .and_then(|m| m.into_typed())
            .and_then(|m| m.into_decluttered())
            .map_err(bad)?;
        let typed = match batch {
            Some(n) => {
                let mut subs = std::collections::HashMap::new();
                subs.insert(typed.symbols.sym("N"), TDim::Val(n as i64));
                typed.set_symbols(&subs).map_err(bad)?
            }
            None => typed,
        };
        let rt = tract_onnx::tract_core::runtime::runtime_for_name("cpu")
            .map_err(bad)?
            .ok_or_else(|| InferError::Runtime {
                name: "cpu".into(),
                reason: "not compiled into this build".into(),
            })?;
        let plan = rt.prepare(typed).map_err(bad)?;
        Ok(Part {
            plan,
            name: name.into(),
        })
    }

    /// Runs on row-major inputs, each `(data, shape)`; returns each output's values.
    pub fn run(&self, inputs: &[(&[f32], Vec<usize>)]) -> Result<Vec<Vec<f32>>, InferError> {
        let run_err = |e: TractError| InferError::Run(format!("{}: {e:#}", self.name));
        let mut tv = TVec::new();
        for (data, shape) in inputs {
            tv.push(Tensor::from_shape(shape, data).map_err(run_err)?.into());
        }
        let out = self.plan.run(tv).map_err(run_err)?;
        out.iter()
            .map(|t| {
                let view = t.try_as_plain_ram().map_err(run_err)?;
                Ok(view.as_slice::<f32>().map_err(run_err)?.to_vec())
            })
            .collect()
    }

    /// A trunk part on `n` rows of `dim` values: `n * cells * channels` values.
    pub fn run_rows(&self, rows: &[f32], n: usize, dim: usize) -> Result<Vec<f32>, InferError> {
        if n == 0 || rows.len() != n * dim {
            return Err(InferError::Run(format!(
                "{}: expected {n} rows of {dim} values, got {} values",
                self.name,
                rows.len()
            )));
        }
        let mut out = self.run(&[(rows, vec![n, dim])])?;
        out.pop()
            .ok_or_else(|| InferError::Run(format!("{}: no output", self.name)))
    }
}

/// A composed model cut into its three parts.
pub struct Split {
    pub audio: Part,
    pub video: Part,
    pub fusion: Part,
    /// `(tokens, channels)` of the fusion inputs `video_tokens` and `audio_tokens`.
    pub video_tokens: (usize, usize),
    pub audio_tokens: (usize, usize),
}

impl Split {
    /// Cuts a composed model (bytes of the whole file; `name` for errors). `video_dim` /
    /// `audio_dim` are the tokenizer's row sizes (one frame, one patch); the token shapes
    /// the fusion graph's inputs (from the model config).
    pub fn from_bytes(
        bytes: &[u8],
        name: &str,
        video_dim: usize,
        audio_dim: usize,
        video_tokens: (usize, usize),
        audio_tokens: (usize, usize),
    ) -> Result<Self, InferError> {
        let proto = ModelProto::decode(bytes).map_err(|e| InferError::NotOnnx {
            path: name.into(),
            reason: e.to_string(),
        })?;
        let cut = |inputs: &[(&str, Vec<Option<usize>>)], outputs: &[&str], what: &str| {
            let m = extract(&proto, inputs, outputs).map_err(|reason| InferError::Inconsistent {
                path: name.into(),
                reason: format!("cannot cut out the {what}: {reason} (is this a model with trunks, composed by `mbt export`?)"),
            })?;
            Part::from_bytes(&m.encode_to_vec(), &format!("{name} ({what})"))
        };
        Ok(Split {
            audio: cut(
                &[("audio", vec![None, Some(audio_dim)])],
                &[AUDIO_CELLS],
                "audio trunk part",
            )?,
            video: cut(
                &[("video", vec![None, Some(video_dim)])],
                &[VIDEO_CELLS],
                "video trunk part",
            )?,
            fusion: cut(
                &[
                    (
                        VIDEO_TOKENS,
                        vec![None, Some(video_tokens.0), Some(video_tokens.1)],
                    ),
                    (
                        AUDIO_TOKENS,
                        vec![None, Some(audio_tokens.0), Some(audio_tokens.1)],
                    ),
                ],
                &OUTPUTS,
                "fusion part",
            )?,
            video_tokens,
            audio_tokens,
        })
    }

    /// The fusion part on one window's cells: `video` `video_tokens.0 * .1` values and `audio`
    /// likewise, concatenated in time order. Returns (fused, video head, audio head) logits.
    pub fn fuse(&self, video: &[f32], audio: &[f32]) -> Result<[Vec<f32>; 3], InferError> {
        let (vt, vc) = self.video_tokens;
        let (at, ac) = self.audio_tokens;
        if video.len() != vt * vc || audio.len() != at * ac {
            return Err(InferError::Run(format!(
                "fusion part: expected {vt} x {vc} video and {at} x {ac} audio values, got {} and {}",
                video.len(),
                audio.len()
            )));
        }
        let mut out = self
            .fusion
            .run(&[(video, vec![1, vt, vc]), (audio, vec![1, at, ac])])?;
        if out.len() != 3 {
            return Err(InferError::Run("fusion part: expected 3 outputs".into()));
        }
        let a = out.pop().unwrap_or_default();
        let v = out.pop().unwrap_or_default();
        let f = out.pop().unwrap_or_default();
        Ok([f, v, a])
    }
}
