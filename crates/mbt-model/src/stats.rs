//! The compute model: parameters and multiply-accumulates per part, counted from the config.
//!
//! Counting rules (the usual ones for transformer FLOP tables): a `[n, a] x [a, b]` matmul is
//! `n a b` MACs; LayerNorm, softmax, GELU, additions and the bottleneck averaging are not
//! counted; attention costs `2 n n_kv d` (scores and the weighted sum). Per layer and stream:
//! QKV `3 d^2 n`, output projection `d^2 n`, MLP `2 r d^2 n`. A bottleneck-fused layer adds the
//! `B` tokens to each stream's sequence; a full-attention layer lets each stream's `n` queries
//! attend over every stream's tokens (`n_kv` = all tokens), with each stream projecting only
//! its own tokens. The `mbt model stats` output and the `vit-b-paper` figures in the README
//! come from here; the unit test checks them against an independent hand count.

use serde::Serialize;

use crate::config::{Classifier, FusionKind, ModelConfig};

#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Part {
    pub params: u64,
    pub macs: u64,
}

impl std::ops::AddAssign for Part {
    fn add_assign(&mut self, o: Part) {
        self.params += o.params;
        self.macs += o.macs;
    }
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Stats {
    pub patch_embedding: Part,
    pub unfused_layers: Part,
    pub fused_layers: Part,
    pub heads: Part,
    pub total: Part,
}

/// Parameters of one pre-norm transformer layer.
fn layer_params(d: u64, r: u64) -> u64 {
    let ln = 2 * d;
    let qkv = 3 * d * d + 3 * d;
    let proj = d * d + d;
    let mlp = d * (r * d) + r * d + (r * d) * d + d;
    2 * ln + qkv + proj + mlp
}

/// MACs of one layer for `n` query tokens attending over `n_kv` tokens.
fn layer_macs(d: u64, r: u64, n: u64, n_kv: u64) -> u64 {
    (3 + 1 + 2 * r) * d * d * n + 2 * n * n_kv * d
}

pub fn stats(cfg: &ModelConfig) -> Stats {
    let d = cfg.width as u64;
    let r = cfg.mlp_ratio as u64;
    let c = cfg.num_classes() as u64;
    let streams = cfg.streams();
    let cls = u64::from(cfg.classifier == Classifier::Token);
    let seq: Vec<u64> = streams
        .iter()
        .map(|s| s.embed_tokens() as u64 + cls)
        .collect();
    let b = cfg.active_bottlenecks() as u64;
    let fused_from = if cfg.fuses() {
        cfg.fusion_layer
    } else {
        cfg.layers
    };
    let weight_sets = if cfg.shared_weights {
        1
    } else {
        streams.len() as u64
    };

    let mut patch = Part::default();
    for (s, &n) in streams.iter().zip(&seq) {
        let p = s.embed_dim() as u64;
        patch += Part {
            params: p * d + d + cls * d + n * d,
            macs: s.embed_tokens() as u64 * p * d,
        };
        // A trunk's last layer trained in the fusion part (`trunks.finetune_last`).
        if let Some(l) = &s.last {
            let (i, o) = (s.patch_dim as u64, l.channels as u64);
            patch += Part {
                params: i * o + o,
                macs: s.tokens as u64 * i * o,
            };
        }
    }
    let mut unfused = Part {
        params: fused_from as u64 * weight_sets * layer_params(d, r),
        macs: 0,
    };
    let mut fused = Part {
        params: (cfg.layers - fused_from) as u64 * weight_sets * layer_params(d, r),
        macs: 0,
    };
    if b > 0 {
        fused.params += b * d;
    }
    let all: u64 = seq.iter().sum();
    for &n in &seq {
        unfused.macs += fused_from as u64 * layer_macs(d, r, n, n);
        let per_fused = match cfg.fusion {
            FusionKind::Bottleneck => layer_macs(d, r, n + b, n + b),
            FusionKind::FullAttention => layer_macs(d, r, n, all),
            FusionKind::Late => layer_macs(d, r, n, n),
        };
        fused.macs += (cfg.layers - fused_from) as u64 * per_fused;
    }
    let _ = &mut unfused;
    let heads = Part {
        params: streams.len() as u64 * (2 * d + d * c + c),
        macs: streams.len() as u64 * d * c,
    };
    let mut total = Part::default();
    for p in [&patch, &unfused, &fused, &heads] {
        total += p.clone();
    }
    Stats {
        patch_embedding: patch,
        unfused_layers: unfused,
        fused_layers: fused,
        heads,
        total,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use mbt_core::{AudioConfig, TokenizerConfig, VideoConfig};

    /// The paper's ViT-B setting (configs/vit-b-paper.toml).
    pub(crate) fn vit_b(fusion: FusionKind, lf: usize) -> ModelConfig {
        ModelConfig {
            width: 768,
            layers: 12,
            heads: 12,
            mlp_ratio: 4,
            fusion,
            fusion_layer: lf,
            bottlenecks: 4,
            labels: (0..527).map(|i| format!("c{i}")).collect(),
            tokenizer: TokenizerConfig {
                video: VideoConfig {
                    num_frames: 8,
                    resize_shorter: 224,
                    height: 224,
                    width: 224,
                    patch_size: 16,
                    tubelet: 1,
                    ..Default::default()
                },
                audio: AudioConfig {
                    num_frames: 800,
                    ..Default::default()
                },
            },
            ..Default::default()
        }
    }

    #[test]
    fn hand_count_of_one_small_layer() {
        // d = 2, r = 1, n = 3: QKV 3*4*3 = 36, proj 4*3 = 12, MLP 2*1*4*3 = 24, attention
        // 2*3*3*2 = 36 -> 108.
        assert_eq!(layer_macs(2, 1, 3, 3), 108);
        // LN 2*(2*2) = 8, QKV 12 + 6 = 18, proj 4 + 2 = 6, MLP 4 + 2 + 4 + 2 = 12 -> 44.
        assert_eq!(layer_params(2, 1), 44);
    }

    #[test]
    fn vit_b_paper_figures() {
        // Independent figures (issue): ~174 M parameters with separate streams; 215.4 GMACs late,
        // 216.4 bottleneck at Lf = 0, 238.5 full attention at Lf = 0 (within 2 %).
        let g = |s: Stats| s.total.macs as f64 / 1e9;
        let late = g(stats(&vit_b(FusionKind::Late, 12)));
        let bott = g(stats(&vit_b(FusionKind::Bottleneck, 0)));
        let full = g(stats(&vit_b(FusionKind::FullAttention, 0)));
        let params = stats(&vit_b(FusionKind::Bottleneck, 8)).total.params as f64 / 1e6;
        println!("vit-b-paper: {params:.1} M params; late {late:.1}, bottleneck@0 {bott:.1}, full@0 {full:.1} GMACs");
        for (ours, want) in [(late, 215.4), (bott, 216.4), (full, 238.5), (params, 174.0)] {
            assert!((ours - want).abs() / want < 0.02, "{ours} vs {want}");
        }
    }
}
