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

/// A float32 tensor value description (a graph input or output) with dimensions `dims`, `None`
/// being the symbolic batch dimension `N`. The one such builder: the parts' new inputs here,
/// and every input and output of the ONNX files `mbt_model::export` writes (its
/// `export::graph` re-exports this), so the writer and the cutter name shapes alike.
pub fn value_info(name: &str, dims: &[Option<usize>]) -> ValueInfoProto {
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
        input: inputs.iter().map(|(n, d)| value_info(n, d)).collect(),
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

/// How a [`Part`] is planned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PartOptions {
    /// The batch `N` fixed before optimisation (the plan then runs exactly that many rows), or
    /// `None` for a plan that runs any number.
    pub batch: Option<usize>,
    /// Whether our depthwise convolution (`ops::depthwise`) replaces tract's in the plan.
    pub depthwise: bool,
}

impl Default for PartOptions {
    /// A symbolic batch; the depthwise convolution as [`crate::ops::depthwise::enabled`] says
    /// (ours, unless `MBT_DEPTHWISE=tract`).
    fn default() -> Self {
        PartOptions {
            batch: None,
            depthwise: crate::ops::depthwise::enabled(),
        }
    }
}

/// One optimised graph with a symbolic batch: a trunk part (`[N, dim]` rows in, `[N, cells,
/// channels]` out) or the fusion part (two token inputs, three logit outputs).
pub struct Part {
    plan: Box<dyn Runnable>,
    name: String,
    depthwise: usize,
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
        Self::from_bytes_with(
            bytes,
            name,
            PartOptions {
                batch,
                ..PartOptions::default()
            },
        )
    }

    /// Like [`Part::from_bytes`], with the batch and the depthwise convolution chosen
    /// ([`PartOptions`]). Our depthwise convolution (`ops::depthwise`) replaces tract's on the
    /// decluttered graph, after the batch is fixed and before tract optimises it.
    pub fn from_bytes_with(
        bytes: &[u8],
        name: &str,
        PartOptions { batch, depthwise }: PartOptions,
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
        let mut typed = typed;
        let depthwise = if depthwise {
            crate::ops::depthwise::rewrite(&mut typed)
                .map_err(bad)?
                .replaced
        } else {
            0
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
            depthwise,
        })
    }

    /// How many depthwise convolutions of this plan run as our operator
    /// (`ops::depthwise::MbtDepthwiseConv`) rather than tract's.
    pub fn depthwise_replaced(&self) -> usize {
        self.depthwise
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

/// `(tokens, channels)` of a seam: the constant shape `[-1, tokens, channels]` of the Reshape
/// that produces `name` in a composed file.
fn token_shape(proto: &ModelProto, name: &str) -> Option<(usize, usize)> {
    let g = proto.graph.as_ref()?;
    let node = g
        .node
        .iter()
        .find(|n| n.op_type == "Reshape" && n.output.iter().any(|o| o == name))?;
    let shape = g
        .initializer
        .iter()
        .find(|t| Some(&t.name) == node.input.get(1))?;
    let v: Vec<i64> = if !shape.int64_data.is_empty() {
        shape.int64_data.clone()
    } else {
        shape
            .raw_data
            .chunks_exact(8)
            .map(|c| i64::from_le_bytes([c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7]]))
            .collect()
    };
    match v[..] {
        [_, t, c] if t > 0 && c > 0 => Some((t as usize, c as usize)),
        _ => None,
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
    ) -> Result<Self, InferError> {
        Self::from_bytes_with(bytes, name, video_dim, audio_dim, PartOptions::default())
    }

    /// Like [`Split::from_bytes`], with the trunk parts planned as `trunks` says (the batch,
    /// the depthwise convolution); the fusion part keeps a symbolic batch and gets the same
    /// depthwise setting.
    pub fn from_bytes_with(
        bytes: &[u8],
        name: &str,
        video_dim: usize,
        audio_dim: usize,
        trunks: PartOptions,
    ) -> Result<Self, InferError> {
        let proto = ModelProto::decode(bytes).map_err(|e| InferError::NotOnnx {
            path: name.into(),
            reason: e.to_string(),
        })?;
        let video_tokens =
            token_shape(&proto, VIDEO_TOKENS).ok_or_else(|| InferError::Inconsistent {
                path: name.into(),
                reason: format!(
                    "no `{VIDEO_TOKENS}` reshape: not a model with trunks composed by `mbt export`"
                ),
            })?;
        let audio_tokens =
            token_shape(&proto, AUDIO_TOKENS).ok_or_else(|| InferError::Inconsistent {
                path: name.into(),
                reason: format!(
                    "no `{AUDIO_TOKENS}` reshape: not a model with trunks composed by `mbt export`"
                ),
            })?;
        let cut = |inputs: &[(&str, Vec<Option<usize>>)],
                   outputs: &[&str],
                   what: &str,
                   opts: PartOptions| {
            let m = extract(&proto, inputs, outputs).map_err(|reason| InferError::Inconsistent {
                path: name.into(),
                reason: format!("cannot cut out the {what}: {reason} (is this a model with trunks, composed by `mbt export`?)"),
            })?;
            Part::from_bytes_with(&m.encode_to_vec(), &format!("{name} ({what})"), opts)
        };
        Ok(Split {
            audio: cut(
                &[("audio", vec![None, Some(audio_dim)])],
                &[AUDIO_CELLS],
                "audio trunk part",
                trunks,
            )?,
            video: cut(
                &[("video", vec![None, Some(video_dim)])],
                &[VIDEO_CELLS],
                "video trunk part",
                trunks,
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
                PartOptions {
                    batch: None,
                    ..trunks
                },
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

/// Multiply-accumulates and parameters of a trunk part on `rows` rows of `dim` values, counted
/// by tract's own cost model (`TypedOp::cost`, the FMA entries) on the decluttered graph, and
/// from the file's float initializers.
pub fn trunk_cost(bytes: &[u8], rows: usize, dim: usize) -> Result<(u64, u64), InferError> {
    let bad = |e: TractError| InferError::Run(format!("counting MACs: {e:#}"));
    let proto = ModelProto::decode(bytes).map_err(|e| InferError::NotOnnx {
        path: "trunk part".into(),
        reason: e.to_string(),
    })?;
    let params: u64 = proto
        .graph
        .as_ref()
        .map(|g| {
            g.initializer
                .iter()
                .filter(|t| t.data_type == DataType::Float as i32)
                .map(|t| t.dims.iter().product::<i64>().max(0) as u64)
                .sum()
        })
        .unwrap_or(0);
    let model = tract_onnx::onnx()
        .model_for_read(&mut &bytes[..])
        .and_then(|m| m.with_input_fact(0, f32::fact([rows, dim]).into()))
        .and_then(|m| m.into_typed())
        .and_then(|m| m.into_decluttered())
        .map_err(bad)?;
    let mut macs = 0u64;
    for node in model.nodes() {
        let facts = model.node_input_facts(node.id).map_err(bad)?;
        for (cost, n) in node.op.cost(&facts).map_err(bad)? {
            if matches!(cost, tract_onnx::tract_core::ops::Cost::FMA(_)) {
                macs += n
                    .to_i64()
                    .map_err(|e| InferError::Run(format!("counting MACs: {e}")))?
                    .max(0) as u64;
            }
        }
    }
    Ok((macs, params))
}

/// The most recent rows a trunk part ran on and their outputs. A window overlapping the
/// previous one holds the same frames and the same log-mel patches again, bit for bit (the
/// tokenizer is deterministic and a patch's frames come from the same samples), so each row is
/// looked up by its content before the trunk runs: with 2 s windows and a 1 s hop, half the
/// rows of every window are hits.
struct RowCache {
    capacity: usize,
    /// `(hash, row, output)`, most recent last.
    entries: Vec<(u64, Vec<f32>, Vec<f32>)>,
}

fn row_hash(row: &[f32]) -> u64 {
    // FNV-1a over the bits: a cheap filter; equality of the whole row is checked on a hit.
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for v in row {
        h ^= u64::from(v.to_bits());
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h
}

impl RowCache {
    fn get(&self, hash: u64, row: &[f32]) -> Option<&[f32]> {
        self.entries
            .iter()
            .rev()
            .find(|(h, r, _)| *h == hash && r.as_slice() == row)
            .map(|(_, _, o)| o.as_slice())
    }

    fn put(&mut self, hash: u64, row: &[f32], out: Vec<f32>) {
        if self.entries.len() >= self.capacity {
            self.entries.remove(0);
        }
        self.entries.push((hash, row.to_vec(), out));
    }
}

/// Counters of the streaming runner: rows run through a trunk, and rows found in the cache.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct StreamStats {
    pub trunk_runs: u64,
    pub cache_hits: u64,
}

/// Runs windows of a composed model with each trunk run once per distinct frame and patch
/// (DESIGN.md section 2, "streaming trunks"): the trunk parts run on the rows not seen in the
/// recent windows, then the fusion part on the window's cells. Gives the whole-window model's
/// logits (the parts are cut from it; `tests/hybrid.rs`).
pub struct Streaming {
    split: Split,
    video_dim: usize,
    audio_dim: usize,
    video_cache: RowCache,
    audio_cache: RowCache,
    pub stats: StreamStats,
}

impl Streaming {
    /// `video_rows` / `audio_rows`: rows per window (frames and patches), `*_dim` their
    /// lengths; the caches keep two windows' worth.
    ///
    /// The trunk parts run one row at a time, so their plans are made for a batch of exactly
    /// one (tract then picks its convolution kernels for concrete shapes: per row, 2.5x (video)
    /// and 1.3x (audio) faster than a symbolic-batch plan with our depthwise convolution, 7x
    /// and 4.3x with tract's; BENCHMARKS.md), with our depthwise convolution unless
    /// `MBT_DEPTHWISE=tract`.
    pub fn from_bytes(
        bytes: &[u8],
        name: &str,
        (video_rows, video_dim): (usize, usize),
        (audio_rows, audio_dim): (usize, usize),
    ) -> Result<Self, InferError> {
        Ok(Streaming {
            split: Split::from_bytes_with(
                bytes,
                name,
                video_dim,
                audio_dim,
                PartOptions {
                    batch: Some(1),
                    ..PartOptions::default()
                },
            )?,
            video_dim,
            audio_dim,
            video_cache: RowCache {
                capacity: 2 * video_rows.max(1),
                entries: Vec::new(),
            },
            audio_cache: RowCache {
                capacity: 2 * audio_rows.max(1),
                entries: Vec::new(),
            },
            stats: StreamStats::default(),
        })
    }

    fn cells(
        part: &Part,
        cache: &mut RowCache,
        stats: &mut StreamStats,
        rows: &[f32],
        dim: usize,
    ) -> Result<Vec<f32>, InferError> {
        let mut out = Vec::new();
        for row in rows.chunks_exact(dim) {
            let h = row_hash(row);
            if let Some(c) = cache.get(h, row) {
                out.extend_from_slice(c);
                stats.cache_hits += 1;
                continue;
            }
            let c = part.run_rows(row, 1, dim)?;
            out.extend_from_slice(&c);
            cache.put(h, row, c);
            stats.trunk_runs += 1;
        }
        Ok(out)
    }

    /// One window: `video` `frames x video_dim`, `audio` `patches x audio_dim` values (the
    /// tokenizer's output); returns (fused, video head, audio head) logits.
    pub fn run(&mut self, video: &[f32], audio: &[f32]) -> Result<[Vec<f32>; 3], InferError> {
        if video.len() % self.video_dim != 0 || audio.len() % self.audio_dim != 0 {
            return Err(InferError::Run(format!(
                "streaming: expected whole rows of {} (video) and {} (audio) values, got {} and {}",
                self.video_dim,
                self.audio_dim,
                video.len(),
                audio.len()
            )));
        }
        let v = Self::cells(
            &self.split.video,
            &mut self.video_cache,
            &mut self.stats,
            video,
            self.video_dim,
        )?;
        let a = Self::cells(
            &self.split.audio,
            &mut self.audio_cache,
            &mut self.stats,
            audio,
            self.audio_dim,
        )?;
        self.split.fuse(&v, &a)
    }
}
