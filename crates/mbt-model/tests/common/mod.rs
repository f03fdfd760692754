//! Shared by the model's test binaries.

use mbt_model::{FusionKind, ModelConfig};

/// A small model (d 48, 3 layers) on the default tokenizer settings.
pub fn small(fusion: FusionKind, lf: usize) -> ModelConfig {
    ModelConfig {
        width: 48,
        layers: 3,
        heads: 3,
        mlp_ratio: 2,
        fusion,
        fusion_layer: lf,
        ..Default::default()
    }
}
