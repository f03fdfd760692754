//! The Multimodal Bottleneck Transformer (Nagrani et al., NeurIPS 2021): its configuration,
//! its compute model, the burn implementation used for training and as the reference forward,
//! and the ONNX writer that produces the same graph for tract and onnxruntime.

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
