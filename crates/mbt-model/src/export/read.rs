//! Reading the fusion part back from an ONNX file that [`super::export`] wrote (alone, or
//! composed with its trunks by [`super::compose`]).
//!
//! Why: personalisation on the board (`mbt train --init models/edge.onnx`) starts from the one
//! file a user has, not from a training checkpoint they never had. The file carries its model
//! config, labels and tokenizer in `metadata_props`, and every fusion weight as an initializer
//! named after its place in [`Mbt`] by our own exporter (`streams.0.embed.weight`,
//! `layers.1.3.attn.qkv.bias`, `bottleneck`, ...; a composed file prefixes them `fusion/`). This
//! module walks a freshly built model in the exporter's order with the exporter's names and
//! copies each initializer in, checking its shape, so a name or shape that does not match is an
//! error naming it, never a silently random weight. An int8 export is refused: its matrices
//! are quantised and would not give back the trained weights.

use std::collections::HashMap;

use burn::module::Param;
use burn::nn::{LayerNorm, Linear};
use burn::prelude::*;
use mbt_core::metadata::ModelMetadata;
use prost::Message;
use thiserror::Error;
use tract_onnx::pb::{tensor_proto::DataType, ModelProto, TensorProto};

use crate::config::ModelConfig;
use crate::mbt::Mbt;

/// A model read back from a file: its config (labels included), the fusion part's weights
/// and the file's metadata (version, thresholds, training-data hash).
pub struct Loaded {
    pub config: ModelConfig,
    pub model: Mbt,
    pub metadata: ModelMetadata,
}

#[derive(Debug, Error)]
pub enum ReadError {
    #[error("{origin}: not a readable ONNX model: {reason}")]
    Decode { origin: String, reason: String },
    #[error("{origin}: {reason}")]
    Metadata { origin: String, reason: String },
    #[error("{origin}: weight `{name}`: {reason}")]
    Weight {
        origin: String,
        name: String,
        reason: String,
    },
}

/// The initializers of one file, by name, and the prefix its fusion weights carry.
struct Weights<'a> {
    origin: &'a str,
    prefix: &'static str,
    table: HashMap<&'a str, &'a TensorProto>,
    device: &'a Device,
}

impl Weights<'_> {
    fn err(&self, name: &str, reason: String) -> ReadError {
        ReadError::Weight {
            origin: self.origin.to_string(),
            name: format!("{}{name}", self.prefix),
            reason,
        }
    }

    /// The float values of initializer `name` (without the prefix), checked against `dims`.
    fn values(&mut self, name: &str, dims: &[usize]) -> Result<Vec<f32>, ReadError> {
        let full = format!("{}{name}", self.prefix);
        let Some(t) = self.table.get(full.as_str()) else {
            let quantised = ["_int8", "_int8_cols"]
                .iter()
                .any(|s| self.table.contains_key(format!("{full}{s}").as_str()));
            return Err(self.err(
                name,
                if quantised {
                    "stored as int8 (an `--int8` export): start from the fp32 file".into()
                } else {
                    "missing (not a file written by `mbt export`, or another config)".into()
                },
            ));
        };
        if t.data_type != DataType::Float as i32 {
            return Err(self.err(name, format!("data type {}, expected float32", t.data_type)));
        }
        let got: Vec<usize> = t.dims.iter().map(|&d| d.max(0) as usize).collect();
        if got != dims {
            return Err(self.err(
                name,
                format!("shape {got:?}, but this config's model has {dims:?}"),
            ));
        }
        let n: usize = dims.iter().product();
        let v: Vec<f32> = if !t.raw_data.is_empty() {
            t.raw_data
                .chunks_exact(4)
                .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
                .collect()
        } else {
            t.float_data.clone()
        };
        if v.len() != n {
            return Err(self.err(name, format!("{} values for shape {dims:?}", v.len())));
        }
        Ok(v)
    }

    fn param<const D: usize>(
        &mut self,
        p: &mut Param<Tensor<D>>,
        name: &str,
    ) -> Result<(), ReadError> {
        let dims: [usize; D] = p.val().dims();
        let v = self.values(name, &dims)?;
        let t = Tensor::from_data(TensorData::new(v, dims), self.device);
        *p = Param::initialized(p.id, t);
        Ok(())
    }

    fn linear(&mut self, l: &mut Linear, name: &str) -> Result<(), ReadError> {
        self.param(&mut l.weight, &format!("{name}.weight"))?;
        if let Some(b) = l.bias.as_mut() {
            self.param(b, &format!("{name}.bias"))?;
        }
        Ok(())
    }

    fn layer_norm(&mut self, ln: &mut LayerNorm, name: &str) -> Result<(), ReadError> {
        self.param(&mut ln.gamma, &format!("{name}.gamma"))?;
        if let Some(b) = ln.beta.as_mut() {
            self.param(b, &format!("{name}.beta"))?;
        }
        Ok(())
    }
}

/// Reads the model in `bytes` (an ONNX file from `mbt export`, composed or not; `origin`
/// names it in errors) onto `device`.
pub fn read(bytes: &[u8], origin: &str, device: &Device) -> Result<Loaded, ReadError> {
    let proto = ModelProto::decode(bytes).map_err(|e| ReadError::Decode {
        origin: origin.into(),
        reason: e.to_string(),
    })?;
    let meta_err = |reason: String| ReadError::Metadata {
        origin: origin.into(),
        reason,
    };
    let metadata = ModelMetadata::from_props(
        proto
            .metadata_props
            .iter()
            .map(|p| (p.key.as_str(), p.value.as_str())),
    )
    .map_err(|e| meta_err(e.to_string()))?;
    let config = ModelConfig::from_toml(
        &metadata.model_config,
        &format!("{origin} (mbt.model_config)"),
        &[],
    )
    .map_err(meta_err)?;
    if config.labels != metadata.labels {
        return Err(meta_err(format!(
            "mbt.labels {:?} differ from the labels of mbt.model_config {:?}",
            metadata.labels, config.labels
        )));
    }
    if config.tokenizer != metadata.tokenizer {
        return Err(meta_err(
            "mbt.tokenizer differs from the tokenizer of mbt.model_config".into(),
        ));
    }
    let graph = proto.graph.as_ref().ok_or_else(|| ReadError::Decode {
        origin: origin.into(),
        reason: "no graph".into(),
    })?;
    let table: HashMap<&str, &TensorProto> = graph
        .initializer
        .iter()
        .map(|t| (t.name.as_str(), t))
        .collect();
    // A composed file (trunks + fusion part) prefixes the fusion graph's names.
    let prefix = if table.keys().any(|k| k.starts_with("fusion/streams.")) {
        "fusion/"
    } else {
        ""
    };
    let mut w = Weights {
        origin,
        prefix,
        table,
        device,
    };
    let mut model = Mbt::new(&config, device);
    let layers = model.num_layers;
    for (s, io) in model.streams.iter_mut().enumerate() {
        let n = format!("streams.{s}");
        if let Some(last) = io.last.as_mut() {
            w.linear(&mut last.linear, &format!("{n}.last"))?;
        }
        w.linear(&mut io.embed, &format!("{n}.embed"))?;
        if let Some(c) = io.cls.as_mut() {
            w.param(c, &format!("{n}.cls"))?;
        }
        w.param(&mut io.pos, &format!("{n}.pos"))?;
        w.layer_norm(&mut io.head_norm, &format!("{n}.head_norm"))?;
        w.linear(&mut io.head, &format!("{n}.head"))?;
    }
    for (i, b) in model.layers.iter_mut().enumerate() {
        let n = format!("layers.{}.{}", i / layers, i % layers);
        w.layer_norm(&mut b.ln1, &format!("{n}.ln1"))?;
        w.linear(&mut b.attn.qkv, &format!("{n}.attn.qkv"))?;
        w.linear(&mut b.attn.proj, &format!("{n}.attn.proj"))?;
        w.layer_norm(&mut b.ln2, &format!("{n}.ln2"))?;
        w.linear(&mut b.mlp.fc1, &format!("{n}.mlp.fc1"))?;
        w.linear(&mut b.mlp.fc2, &format!("{n}.mlp.fc2"))?;
    }
    if let Some(bn) = model.bottleneck.as_mut() {
        w.param(bn, "bottleneck")?;
    }
    Ok(Loaded {
        config,
        model,
        metadata,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::export::{export, ExportOptions, Int8};
    use crate::train::{predict, Batch};

    fn tiny() -> ModelConfig {
        ModelConfig {
            width: 16,
            layers: 2,
            heads: 2,
            mlp_ratio: 2,
            fusion_layer: 1,
            labels: vec!["dog_barking".into(), "none".into(), "cat_meowing".into()],
            ..Default::default()
        }
    }

    fn opts(int8: Option<Int8>) -> ExportOptions {
        ExportOptions {
            model_version: "t-1".into(),
            training_data_hash: "none".into(),
            int8,
            thresholds: [("dog_barking".to_string(), 0.3f32)].into_iter().collect(),
        }
    }

    fn batch(cfg: &ModelConfig) -> Batch {
        let mut s = 7u32;
        Batch {
            n: 2,
            inputs: cfg
                .streams()
                .iter()
                .map(|st| {
                    (0..2 * st.tokens * st.patch_dim)
                        .map(|_| {
                            s = s.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
                            (s >> 8) as f32 / (1u32 << 24) as f32 * 2.0 - 1.0
                        })
                        .collect()
                })
                .collect(),
            targets: vec![],
            stream_targets: vec![],
        }
    }

    #[test]
    fn a_written_model_reads_back_to_the_same_weights() {
        let cfg = tiny();
        let device = Device::flex();
        device.seed(3);
        let model = Mbt::new(&cfg, &device);
        let bytes = export(&model, &cfg, &opts(None)).unwrap();
        let back = read(&bytes, "tiny.onnx", &device).unwrap();
        assert_eq!(back.config, cfg);
        assert_eq!(back.metadata.model_version, "t-1");
        assert_eq!(back.metadata.thresholds.get("dog_barking"), Some(&0.3));
        let b = batch(&cfg);
        let (p, q) = (predict(&model, &cfg, &b), predict(&back.model, &cfg, &b));
        assert_eq!(
            p.fused, q.fused,
            "the read-back model computes the same logits"
        );
        assert_eq!(p.streams, q.streams);
        // Not vacuous: another initialisation gives other logits.
        device.seed(4);
        let other = Mbt::new(&cfg, &device);
        assert_ne!(predict(&other, &cfg, &b).fused, p.fused);
    }

    #[test]
    fn int8_files_and_foreign_bytes_are_refused_with_the_reason() {
        let cfg = tiny();
        let device = Device::flex();
        device.seed(3);
        let model = Mbt::new(&cfg, &device);
        let bytes = export(&model, &cfg, &opts(Some(Int8::Weights))).unwrap();
        let e = read(&bytes, "q.onnx", &device).err().unwrap().to_string();
        assert!(e.contains("q.onnx") && e.contains("int8"), "{e}");
        let e = read(b"not onnx at all", "x.onnx", &device)
            .err()
            .unwrap()
            .to_string();
        assert!(e.contains("x.onnx"), "{e}");
    }
}
