//! The ONNX form of [`Mbt`]: the same graph as `Mbt::forward` (inference mode), op for op.
//!
//! Interface (fixed; tools and people rely on it): inputs `video` `[N, Tv, Pv]` and `audio`
//! `[N, Ta, Pa]` (float32 patch vectors from the shared tokenizer; the patch projection is in
//! the graph), outputs `logits` `[N, C]` (fused), `logits_video` and `logits_audio` `[N, C]`.
//! `N` is symbolic. Opset 17 (LayerNormalization); GELU is written with `Erf`, which opset 17
//! has and every runtime runs.

use burn::module::Param;
use burn::nn::{LayerNorm, Linear};
use burn::prelude::*;
use prost::Message;
use thiserror::Error;
use tract_onnx::pb::{ModelProto, OperatorSetIdProto, StringStringEntryProto};

use super::graph::{attr_float, attr_int, attr_ints, value_info, Graph};
use crate::config::ModelConfig;
use crate::layers::Block;
use crate::mbt::Mbt;

pub const OPSET: i64 = 17;

/// Attention keys are padded to a multiple of this (see `Writer::qkv`): 4 is what tract's
/// aarch64 softmax row kernel needs; 8 (32-byte rows) measured fastest overall on x86 with
/// both runtimes (tract 9.2 -> 7.4 ms on the edge model, ONNX Runtime +0.4 ms; 32 made
/// tract's softmax faster still but ONNX Runtime slower; BENCHMARKS.md).
const KEY_MULTIPLE: usize = 8;

#[derive(Debug, Error)]
pub enum ExportError {
    #[error("cannot read parameter `{0}` from the model: {1}")]
    Param(String, String),
}

/// int8 forms of the weight matrices (attention, MLP and patch projections; the small
/// classifier heads stay float32). Never QDQ around Softmax: tract computes that wrong
/// (DESIGN.md section 7).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Int8 {
    /// Weights int8 (symmetric, per tensor) and activations quantised at run time:
    /// `DynamicQuantizeLinear -> MatMulInteger -> Cast -> scale`. tract runs it with int8 kernels.
    Dynamic,
    /// Weights stored int8 with one scale per output column and expanded with
    /// `DequantizeLinear` at load: a 4x smaller file, float arithmetic.
    Weights,
}

impl std::str::FromStr for Int8 {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "dynamic" => Ok(Int8::Dynamic),
            "weights" => Ok(Int8::Weights),
            other => Err(format!(
                "unknown int8 form `{other}`: expected `dynamic` or `weights`"
            )),
        }
    }
}

/// What goes into the file besides the graph.
#[derive(Debug, Clone)]
pub struct ExportOptions {
    pub model_version: String,
    pub training_data_hash: String,
    pub int8: Option<Int8>,
    /// Event thresholds per label (`mbt.thresholds`; empty: none written).
    pub thresholds: std::collections::BTreeMap<String, f32>,
}

/// Symmetric per-tensor int8: `q = round(w / s)`, `s = max|w| / levels`.
///
/// Used by the dynamic form, with 7-bit weights (`levels = 63`, onnxruntime's `reduce_range`): on x86
/// without VNNI onnxruntime multiplies u8 x s8 with `VPMADDUBSW`, whose 16-bit pair sums
/// saturate with full-range weights; measured here, full-range weights put onnxruntime's logits
/// 0.32 away from the fp32 model's while tract's stayed within 0.008.
fn quantize(w: &[f32], levels: f32) -> (Vec<u8>, f32) {
    let max = w.iter().fold(0f32, |m, v| m.max(v.abs()));
    let s = if max > 0.0 { max / levels } else { 1.0 };
    (
        w.iter()
            .map(|v| (v / s).round().clamp(-levels, levels) as i8 as u8)
            .collect(),
        s,
    )
}

fn values<const D: usize>(t: Tensor<D>, name: &str) -> Result<Vec<f32>, ExportError> {
    t.into_data()
        .try_to_vec::<f32>()
        .map_err(|e| ExportError::Param(name.into(), format!("{e:?}")))
}

struct Writer<'a> {
    g: Graph,
    cfg: &'a ModelConfig,
    int8: Option<Int8>,
}

impl Writer<'_> {
    fn param<const D: usize>(
        &mut self,
        name: &str,
        p: &Param<Tensor<D>>,
    ) -> Result<String, ExportError> {
        let t = p.val();
        let dims = t.dims().to_vec();
        let v = values(t, name)?;
        Ok(self.g.weight(name, &dims, &v))
    }

    /// A trunk's last layer trained in the fusion part (`trunks.finetune_last`, the burn
    /// `TrunkLast`): per-cell linear map, activation, then the pool of each frame's grid.
    fn trunk_last(
        &mut self,
        x: &str,
        spec: &crate::config::StreamSpec,
        last: &crate::layers::TrunkLast,
        name: &str,
    ) -> Result<String, ExportError> {
        let y = self.linear(x, &last.linear, name)?;
        let y = match last.activation() {
            crate::trunk::Activation::Relu => self.g.node("Relu", &[&y], vec![]),
            crate::trunk::Activation::Relu6 => {
                let lo = self.g.scalar("relu6_min", 0.0);
                let hi = self.g.scalar("relu6_max", 6.0);
                self.g.node("Clip", &[&y, &lo, &hi], vec![])
            }
        };
        let p = last.pool;
        if p <= 1 {
            return Ok(y);
        }
        let (gh, gw, c) = (last.grid_h, last.grid_w, spec.embed_dim());
        let blocks = self.g.reshape(
            &y,
            &[
                -1,
                (gh / p) as i64,
                p as i64,
                (gw / p) as i64,
                p as i64,
                c as i64,
            ],
        );
        let pooled = self.g.node(
            "ReduceMean",
            &[&blocks],
            vec![attr_ints("axes", &[2, 4]), attr_int("keepdims", 0)],
        );
        Ok(self
            .g
            .reshape(&pooled, &[-1, spec.embed_tokens() as i64, c as i64]))
    }

    fn linear(&mut self, x: &str, l: &Linear, name: &str) -> Result<String, ExportError> {
        let quantise = self.int8.filter(|_| !name.ends_with(".head"));
        let y = match quantise {
            None => {
                let w = self.param(&format!("{name}.weight"), &l.weight)?;
                self.g.matmul(x, &w)
            }
            Some(form) => {
                let dims = l.weight.val().dims().to_vec();
                match form {
                    Int8::Weights => {
                        // Per output column: a column's scale follows its own largest weight.
                        let vals = values(l.weight.val(), name)?;
                        let (rows, cols) = (dims[0], dims[1]);
                        let mut scales = vec![1f32; cols];
                        for (c, sc) in scales.iter_mut().enumerate() {
                            let max = (0..rows).fold(0f32, |m, r| m.max(vals[r * cols + c].abs()));
                            if max > 0.0 {
                                *sc = max / 127.0;
                            }
                        }
                        let q: Vec<u8> = vals
                            .iter()
                            .enumerate()
                            .map(|(i, v)| {
                                (v / scales[i % cols]).round().clamp(-127.0, 127.0) as i8 as u8
                            })
                            .collect();
                        let wq = self
                            .g
                            .bytes(&format!("{name}.weight_int8_cols"), &dims, q, true);
                        let ws = self
                            .g
                            .weight(&format!("{name}.weight_scales"), &[cols], &scales);
                        let wz = self.g.bytes(
                            &format!("{name}.weight_zeros"),
                            &[cols],
                            vec![0; cols],
                            true,
                        );
                        let w = self.g.node(
                            "DequantizeLinear",
                            &[&wq, &ws, &wz],
                            vec![attr_int("axis", 1)],
                        );
                        self.g.matmul(x, &w)
                    }
                    Int8::Dynamic => {
                        // One scale for the matrix, 7-bit weights (see `quantize`).
                        let (q, scale) = quantize(&values(l.weight.val(), name)?, 63.0);
                        let wq = self.g.bytes(&format!("{name}.weight_int8"), &dims, q, true);
                        let ws = self.g.scalar("w_scale", scale);
                        let wz = self
                            .g
                            .bytes(&format!("{name}.weight_zero"), &[], vec![0], true);
                        let xq = self.g.node_multi("DynamicQuantizeLinear", &[x], 3, vec![]);
                        let acc = self
                            .g
                            .node("MatMulInteger", &[&xq[0], &wq, &xq[2], &wz], vec![]);
                        let f = self.g.node("Cast", &[&acc], vec![attr_int("to", 1)]);
                        let f = self.g.mul(&f, &xq[1]);
                        self.g.mul(&f, &ws)
                    }
                }
            }
        };
        match &l.bias {
            Some(b) => {
                let b = self.param(&format!("{name}.bias"), b)?;
                Ok(self.g.add(&y, &b))
            }
            None => Ok(y),
        }
    }

    fn layer_norm(&mut self, x: &str, ln: &LayerNorm, name: &str) -> Result<String, ExportError> {
        let gamma = self.param(&format!("{name}.gamma"), &ln.gamma)?;
        let mut inputs = vec![x.to_string(), gamma];
        if let Some(b) = &ln.beta {
            inputs.push(self.param(&format!("{name}.beta"), b)?);
        }
        let refs: Vec<&str> = inputs.iter().map(String::as_str).collect();
        Ok(self.g.node(
            "LayerNormalization",
            &refs,
            vec![
                attr_int("axis", -1),
                attr_float("epsilon", self.cfg.layer_norm_eps as f32),
            ],
        ))
    }

    fn gelu(&mut self, x: &str) -> String {
        let sqrt2 = self.g.scalar("sqrt2", std::f32::consts::SQRT_2);
        let one = self.g.scalar("one", 1.0);
        let half = self.g.scalar("half", 0.5);
        let d = self.g.node("Div", &[x, &sqrt2], vec![]);
        let e = self.g.node("Erf", &[&d], vec![]);
        let e1 = self.g.add(&e, &one);
        let xe = self.g.mul(x, &e1);
        self.g.mul(&xe, &half)
    }

    /// `[N, n, d]` -> per-head `[N, H, n + pad, d/H]` (`transposed`: `[N, H, d/H, n + pad]`),
    /// the `pad` extra tokens zero vectors.
    fn heads(&mut self, x: &str, which: usize, transposed: bool, pad: usize) -> String {
        let d = self.cfg.width as i64;
        let h = self.cfg.heads as i64;
        let mut part = self.g.slice(x, 2, which as i64 * d, (which as i64 + 1) * d);
        if pad > 0 {
            let pads = self
                .g
                .ints("pad_tokens", &[6], &[0, 0, 0, 0, pad as i64, 0]);
            part = self.g.node("Pad", &[&part, &pads], vec![]);
        }
        let r = self.g.reshape(&part, &[0, 0, h, d / h]);
        self.g.transpose(
            &r,
            if transposed {
                &[0, 2, 3, 1]
            } else {
                &[0, 2, 1, 3]
            },
        )
    }

    /// Queries, transposed keys and values of `block` for `x` (`tokens` tokens). Keys and
    /// values are padded with zero vectors to a multiple of `KEY_MULTIPLE`; the returned
    /// mask (one entry per padded key: 0, or -1e4 for padding) is added to the attention
    /// scores, so a padded key's softmax weight underflows to exactly 0 and the result is
    /// that of the unpadded attention. Why: tract's vectorised softmax row kernel (aarch64)
    /// takes only rows whose length is a multiple of 4, and on x86 aligned rows run faster;
    /// our attentions have 99 to 109 keys (patches + CLS + bottlenecks). BENCHMARKS.md,
    /// "tract vs ONNX Runtime", has the profile that found it.
    fn qkv(
        &mut self,
        x: &str,
        tokens: usize,
        block: &Block,
        name: &str,
    ) -> Result<(String, String, String, Vec<f32>), ExportError> {
        let pad = tokens.next_multiple_of(KEY_MULTIPLE) - tokens;
        let h = self.layer_norm(x, &block.ln1, &format!("{name}.ln1"))?;
        let qkv = self.linear(&h, &block.attn.qkv, &format!("{name}.attn.qkv"))?;
        let mut mask = vec![0f32; tokens + pad];
        mask[tokens..].fill(-1e4);
        Ok((
            self.heads(&qkv, 0, false, 0),
            self.heads(&qkv, 1, true, pad),
            self.heads(&qkv, 2, false, pad),
            mask,
        ))
    }

    /// Attention of queries `q` over keys `kt` / values `v` (padded as [`Self::qkv`] says,
    /// `mask` the scores' additive mask), then the projection and the MLP, residuals around
    /// both.
    #[allow(clippy::too_many_arguments)]
    fn finish(
        &mut self,
        x: &str,
        q: &str,
        kt: &str,
        v: &str,
        mask: &[f32],
        block: &Block,
        name: &str,
    ) -> Result<String, ExportError> {
        let dh = (self.cfg.width / self.cfg.heads) as f32;
        let scale = self.g.scalar("scale", 1.0 / dh.sqrt());
        let s = self.g.matmul(q, kt);
        let mut s = self.g.mul(&s, &scale);
        if mask.iter().any(|&m| m != 0.0) {
            // Named by its length and padded positions, so equal masks are stored once.
            let padded: Vec<String> = (0..mask.len())
                .filter(|&i| mask[i] != 0.0)
                .map(|i| i.to_string())
                .collect();
            let name = format!("key_mask_{}_{}", mask.len(), padded.join("_"));
            let m = self.g.weight(&name, &[mask.len()], mask);
            s = self.g.add(&s, &m);
        }
        let p = self.g.node("Softmax", &[&s], vec![attr_int("axis", -1)]);
        let a = self.g.matmul(&p, v);
        let a = self.g.transpose(&a, &[0, 2, 1, 3]);
        let a = self.g.reshape(&a, &[0, 0, self.cfg.width as i64]);
        let a = self.linear(&a, &block.attn.proj, &format!("{name}.attn.proj"))?;
        let x = self.g.add(x, &a);
        let m = self.layer_norm(&x, &block.ln2, &format!("{name}.ln2"))?;
        let m = self.linear(&m, &block.mlp.fc1, &format!("{name}.mlp.fc1"))?;
        let m = self.gelu(&m);
        let m = self.linear(&m, &block.mlp.fc2, &format!("{name}.mlp.fc2"))?;
        Ok(self.g.add(&x, &m))
    }

    /// One encoder block over `x`, which holds `tokens` tokens.
    fn block(
        &mut self,
        x: &str,
        tokens: usize,
        block: &Block,
        name: &str,
    ) -> Result<String, ExportError> {
        let (q, kt, v, mask) = self.qkv(x, tokens, block, name)?;
        self.finish(x, &q, &kt, &v, &mask, block, name)
    }
}

fn block_name(model: &Mbt, stream: usize, layer: usize) -> (usize, String) {
    let set = if model.layers.len() == model.num_layers {
        0
    } else {
        stream
    };
    (
        set * model.num_layers + layer,
        format!("layers.{set}.{layer}"),
    )
}

/// Serialises `model` (configured by `cfg`) to ONNX bytes.
pub fn export(
    model: &Mbt,
    cfg: &ModelConfig,
    opts: &ExportOptions,
) -> Result<Vec<u8>, ExportError> {
    let mut w = Writer {
        g: Graph::default(),
        cfg,
        int8: opts.int8,
    };
    let specs = cfg.streams();
    let d = cfg.width;
    // Stream inputs: embedding, CLS, positions.
    let mut xs = Vec::new();
    let mut lens = Vec::new();
    for (s, (spec, io)) in specs.iter().zip(&model.streams).enumerate() {
        let name = format!("streams.{s}");
        let input = match &io.last {
            Some(last) => w.trunk_last(&spec.name, spec, last, &format!("{name}.last"))?,
            None => spec.name.clone(),
        };
        let x = w.linear(&input, &io.embed, &format!("{name}.embed"))?;
        let x = match &io.cls {
            Some(cls) => {
                let c = w.param(&format!("{name}.cls"), cls)?;
                let c = w.g.expand_batch(&c, &spec.name, 1, d);
                w.g.concat(&[&c, &x], 1)
            }
            None => x,
        };
        let pos = w.param(&format!("{name}.pos"), &io.pos)?;
        lens.push(io.pos.val().dims()[1]);
        xs.push(w.g.add(&x, &pos));
    }
    let mut bottleneck: Option<String> = None;
    for l in 0..model.num_layers {
        let fused = l >= model.fusion_layer;
        if !fused || model.fusion_code == 0 {
            for (s, x) in xs.iter_mut().enumerate() {
                let (i, name) = block_name(model, s, l);
                *x = w.block(x, lens[s], &model.layers[i], &name)?;
            }
        } else if model.fusion_code == 1 {
            let (bn, nb) = match (bottleneck.take(), &model.bottleneck) {
                (Some(b), Some(p)) => (b, p.val().dims()[1]),
                (None, Some(p)) => {
                    let init = w.param("bottleneck", p)?;
                    (
                        w.g.expand_batch(&init, &specs[0].name, p.val().dims()[1], d),
                        p.val().dims()[1],
                    )
                }
                (_, None) => unreachable!("fusion_code 1 implies bottleneck tokens"),
            };
            let mut sum: Option<String> = None;
            for (s, x) in xs.iter_mut().enumerate() {
                let (i, name) = block_name(model, s, l);
                let joined = w.g.concat(&[x, &bn], 1);
                let y = w.block(&joined, lens[s] + nb, &model.layers[i], &name)?;
                let n = lens[s] as i64;
                *x = w.g.slice(&y, 1, 0, n);
                let b = w.g.slice(&y, 1, n, n + nb as i64);
                sum = Some(match sum {
                    Some(acc) => w.g.add(&acc, &b),
                    None => b,
                });
            }
            let inv = w.g.scalar("inv_streams", 1.0 / xs.len() as f32);
            bottleneck = sum.map(|s| w.g.mul(&s, &inv));
        } else {
            let mut parts = Vec::new();
            for (s, x) in xs.iter().enumerate() {
                let (i, name) = block_name(model, s, l);
                parts.push(w.qkv(x, lens[s], &model.layers[i], &name)?);
            }
            let kts: Vec<&str> = parts.iter().map(|p| p.1.as_str()).collect();
            let vs: Vec<&str> = parts.iter().map(|p| p.2.as_str()).collect();
            let kt = w.g.concat(&kts, 3);
            let v = w.g.concat(&vs, 2);
            let mask: Vec<f32> = parts.iter().flat_map(|p| p.3.iter().copied()).collect();
            for (s, x) in xs.iter_mut().enumerate() {
                let (i, name) = block_name(model, s, l);
                *x = w.finish(x, &parts[s].0, &kt, &v, &mask, &model.layers[i], &name)?;
            }
        }
    }
    // Heads.
    let mut outputs = Vec::new();
    for (s, ((x, io), spec)) in xs.iter().zip(&model.streams).zip(&specs).enumerate() {
        let name = format!("streams.{s}");
        let pooled = match &io.cls {
            Some(_) => {
                let idx = w.g.ints("cls_index", &[], &[0]);
                w.g.node("Gather", &[x, &idx], vec![attr_int("axis", 1)])
            }
            None => {
                let t = w.g.slice(x, 1, 0, spec.embed_tokens() as i64);
                w.g.node(
                    "ReduceMean",
                    &[&t],
                    vec![attr_ints("axes", &[1]), attr_int("keepdims", 0)],
                )
            }
        };
        let h = w.layer_norm(&pooled, &io.head_norm, &format!("{name}.head_norm"))?;
        let logits = w.linear(&h, &io.head, &format!("{name}.head"))?;
        let out = format!("logits_{}", spec.name);
        w.g.node_named("Identity", &[&logits], vec![], &out);
        outputs.push(out);
    }
    let sum = outputs[1..]
        .iter()
        .fold(outputs[0].clone(), |acc, o| w.g.add(&acc, o));
    let inv = w.g.scalar("inv_streams", 1.0 / outputs.len() as f32);
    w.g.node_named("Mul", &[&sum, &inv], vec![], "logits");

    let c = cfg.num_classes();
    let mut graph_outputs = vec![value_info("logits", &[None, Some(c)])];
    graph_outputs.extend(outputs.iter().map(|o| value_info(o, &[None, Some(c)])));
    let graph = tract_onnx::pb::GraphProto {
        name: "mbt".into(),
        node: w.g.nodes,
        initializer: w.g.initializers,
        input: specs
            .iter()
            .map(|s| value_info(&s.name, &[None, Some(s.tokens), Some(s.patch_dim)]))
            .collect(),
        output: graph_outputs,
        ..Default::default()
    };
    let meta = mbt_core::metadata::ModelMetadata {
        model_version: opts.model_version.clone(),
        labels: cfg.labels.clone(),
        tokenizer: cfg.tokenizer.clone(),
        model_config: toml::to_string(cfg).unwrap_or_default(),
        training_data_hash: opts.training_data_hash.clone(),
        trunks: String::new(),
        thresholds: opts.thresholds.clone(),
    };
    let proto = ModelProto {
        ir_version: 8,
        opset_import: vec![OperatorSetIdProto {
            domain: String::new(),
            version: OPSET,
        }],
        producer_name: "mbt-edge".into(),
        producer_version: env!("CARGO_PKG_VERSION").into(),
        graph: Some(graph),
        metadata_props: meta
            .to_props()
            .into_iter()
            .map(|(key, value)| StringStringEntryProto { key, value })
            .collect(),
        ..Default::default()
    };
    Ok(proto.encode_to_vec())
}
