//! The Multimodal Bottleneck Transformer (Nagrani et al., NeurIPS 2021): its configuration,
//! its compute model, the burn implementation used for training and as the reference forward,
//! and the ONNX writer that produces the same graph for tract and onnxruntime.
//!
//! | module | owns |
//! | --- | --- |
//! | [`config`] | the model config file: architecture, tokenizer, labels |
//! | [`mbt`], [`layers`] | the model and its layers, one per file |
//! | [`trunk`] | the pretrained trunks (frozen CNNs whose feature cells become tokens) |
//! | [`stats`] | parameters and multiply-accumulates, counted from the config |
//! | [`train`] | one optimisation step: the `[train]` recipe, the trainer, losses, checkpoints, evaluation-mode logits (the loops are `mbt-host`'s) |
//! | [`export`] | the ONNX writer (trunks and fusion composed into one file, read back) |
//! | [`heads`] | growing a trained model's heads by new labels |
//! | [`replay`] | the replay set shipped beside a model for personalisation |

pub mod config;
pub mod export;
pub mod heads;
pub mod layers;
pub mod mbt;
pub mod replay;
pub mod stats;
pub mod train;
pub mod trunk;

pub use config::{Classifier, FusionKind, ModelConfig, StreamSpec};
pub use layers::DropPath;
pub use mbt::{Mbt, Output};
