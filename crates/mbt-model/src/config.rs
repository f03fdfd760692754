//! The model configuration: one TOML file (with `--set key=value` overrides) describes the
//! architecture, the tokenizer it is fed by and its labels.
//!
//! Token counts and patch-vector sizes are *derived* from the tokenizer settings, never stated
//! twice, so a model cannot be configured for inputs its tokenizer does not produce.

use mbt_core::{AudioFrontEnd, TokenizerConfig, VideoLayout};

use crate::trunk::{Activation, Trunks};
use serde::{Deserialize, Serialize};
use thiserror::Error;

/// How the streams exchange information.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FusionKind {
    /// From layer `fusion_layer` on, `bottlenecks` shared tokens are appended to every stream;
    /// each stream's layer updates its own copy and the copies are averaged (the MBT method).
    Bottleneck,
    /// From `fusion_layer` on, each stream's queries attend over every stream's tokens (the
    /// baseline bottlenecks beat on compute).
    FullAttention,
    /// No exchange at all: the streams meet only when their logits are averaged.
    Late,
}

/// What each stream's classifier reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Classifier {
    /// The stream's CLS token (the paper's default).
    Token,
    /// Global average of the stream's patch tokens.
    Gap,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ModelConfig {
    /// Token width `d`.
    pub width: usize,
    /// Transformer layers per stream (`L`).
    pub layers: usize,
    pub heads: usize,
    /// MLP hidden width = `mlp_ratio * width`.
    pub mlp_ratio: usize,
    pub fusion: FusionKind,
    /// First fused layer (`Lf`); `layers` means no fusion layer.
    pub fusion_layer: usize,
    /// Bottleneck tokens (`B`); 0 makes bottleneck fusion late fusion.
    pub bottlenecks: usize,
    /// One set of transformer weights for all streams instead of one per stream.
    pub shared_weights: bool,
    pub classifier: Classifier,
    pub layer_norm_eps: f64,
    /// Stochastic depth: the drop probability of the last layer's residual branches (linear
    /// ramp from 0 at the first layer). Training only.
    pub drop_path: f64,
    /// Class names in logit order.
    pub labels: Vec<String>,
    /// Pretrained trunks under the streams (`[trunks]`; none: the from-scratch streams).
    pub trunks: Trunks,
    pub tokenizer: TokenizerConfig,
}

impl Default for ModelConfig {
    /// The edge default: ViT-tiny width, 6 layers, fusion from layer 3 through 4 bottlenecks.
    fn default() -> Self {
        ModelConfig {
            width: 192,
            layers: 6,
            heads: 3,
            mlp_ratio: 4,
            fusion: FusionKind::Bottleneck,
            fusion_layer: 3,
            bottlenecks: 4,
            shared_weights: false,
            classifier: Classifier::Token,
            layer_norm_eps: 1e-6,
            drop_path: 0.1,
            labels: mbt_core::AVE_CLASSES.map(String::from).to_vec(),
            trunks: Trunks::default(),
            tokenizer: TokenizerConfig::default(),
        }
    }
}

/// One input stream: how many tokens it gets and how long each patch vector is.
///
/// `tokens` x `patch_dim` is the stream's *input* (what the burn model, the fusion graph and
/// the feature cache hold). With `trunks.finetune_last` that is the cut trunk's cells, which
/// the trunk's last layer ([`StreamSpec::last`]) turns into the tokens the transformer sees
/// ([`StreamSpec::embed_tokens`] x [`StreamSpec::embed_dim`]).
#[derive(Debug, Clone, PartialEq)]
pub struct StreamSpec {
    pub name: String,
    pub tokens: usize,
    pub patch_dim: usize,
    pub last: Option<LastSpec>,
}

/// A trunk's last layer run inside the fusion part (`trunks.finetune_last`): a per-cell
/// linear map `patch_dim -> channels`, the activation, then an average pool of
/// `pool x pool` blocks of each `grid` (1: no pool).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LastSpec {
    pub channels: usize,
    pub activation: Activation,
    /// The cell grid of one frame or patch (rows, columns), row-major in the input.
    pub grid: (usize, usize),
    pub pool: usize,
}

impl StreamSpec {
    /// Tokens entering the transformer (after the trunk's last layer and its pool).
    pub fn embed_tokens(&self) -> usize {
        match &self.last {
            Some(l) => self.tokens / (l.pool * l.pool),
            None => self.tokens,
        }
    }

    /// Length of the vectors the patch projection reads.
    pub fn embed_dim(&self) -> usize {
        match &self.last {
            Some(l) => l.channels,
            None => self.patch_dim,
        }
    }
}

#[derive(Debug, Error, PartialEq)]
#[error("invalid model setting `{field}`: {reason}")]
pub struct ConfigError {
    pub field: &'static str,
    pub reason: String,
}

fn err(field: &'static str, reason: impl Into<String>) -> ConfigError {
    ConfigError {
        field,
        reason: reason.into(),
    }
}

impl ModelConfig {
    /// The streams, in input order (`video`, then `audio`), as the transformer sees them:
    /// with a trunk, its (pooled) feature map cells are the tokens (see `trunk`).
    pub fn streams(&self) -> Vec<StreamSpec> {
        let (v, a) = (&self.tokenizer.video, &self.tokenizer.audio);
        let fine = self.trunks.finetune_last;
        let video = match self.trunks.video {
            Some(t) => {
                let spec = t.spec();
                StreamSpec {
                    name: "video".into(),
                    tokens: v.num_frames * self.video_input_cells(),
                    patch_dim: if fine {
                        spec.last.in_channels
                    } else {
                        spec.channels
                    },
                    last: fine.then(|| LastSpec {
                        channels: spec.channels,
                        activation: spec.last.activation,
                        grid: t.grid(v.height, v.width),
                        pool: self.trunks.video_pool.max(1),
                    }),
                }
            }
            None => StreamSpec {
                name: "video".into(),
                tokens: v.token_count(),
                patch_dim: v.token_dim(),
                last: None,
            },
        };
        let audio = match self.trunks.audio {
            Some(t) => {
                let spec = t.spec();
                StreamSpec {
                    name: "audio".into(),
                    tokens: a.token_count() * t.cells(),
                    patch_dim: if fine {
                        spec.last.in_channels
                    } else {
                        spec.channels
                    },
                    last: fine.then_some(LastSpec {
                        channels: spec.channels,
                        activation: spec.last.activation,
                        grid: crate::trunk::YAMNET_CELLS,
                        pool: 1,
                    }),
                }
            }
            None => StreamSpec {
                name: "audio".into(),
                tokens: a.token_count(),
                patch_dim: a.token_dim(),
                last: None,
            },
        };
        vec![video, audio]
    }

    /// Video cells per frame the trunk part outputs: the pooled grid, or with
    /// `trunks.finetune_last` the whole grid (the pool runs after the trained last layer).
    pub fn video_input_cells(&self) -> usize {
        match (self.trunks.video, self.trunks.finetune_last) {
            (Some(t), true) => {
                let (gh, gw) = t.grid(self.tokenizer.video.height, self.tokenizer.video.width);
                gh * gw
            }
            _ => self.video_cells(),
        }
    }

    /// Video tokens per frame with a video trunk (pooled grid cells); 0 without one.
    pub fn video_cells(&self) -> usize {
        match self.trunks.video {
            Some(t) => {
                let (gh, gw) = t.grid(self.tokenizer.video.height, self.tokenizer.video.width);
                let p = self.trunks.video_pool.max(1);
                (gh / p) * (gw / p)
            }
            None => 0,
        }
    }

    pub fn num_classes(&self) -> usize {
        self.labels.len()
    }

    /// Whether any layer exchanges information between streams.
    pub fn fuses(&self) -> bool {
        match self.fusion {
            FusionKind::Late => false,
            FusionKind::Bottleneck => self.fusion_layer < self.layers && self.bottlenecks > 0,
            FusionKind::FullAttention => self.fusion_layer < self.layers,
        }
    }

    /// Bottleneck tokens actually used (0 unless bottleneck fusion has a fused layer).
    pub fn active_bottlenecks(&self) -> usize {
        if self.fusion == FusionKind::Bottleneck && self.fuses() {
            self.bottlenecks
        } else {
            0
        }
    }

    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.width == 0 {
            return Err(err("width", "must be positive"));
        }
        if self.heads == 0 || self.width % self.heads != 0 {
            return Err(err(
                "heads",
                format!(
                    "expected a divisor of width ({}), got {}",
                    self.width, self.heads
                ),
            ));
        }
        if self.layers == 0 {
            return Err(err("layers", "must be positive"));
        }
        if self.mlp_ratio == 0 {
            return Err(err("mlp_ratio", "must be positive"));
        }
        if self.fusion_layer > self.layers {
            return Err(err(
                "fusion_layer",
                format!(
                    "expected at most layers ({}), got {}",
                    self.layers, self.fusion_layer
                ),
            ));
        }
        if !(self.layer_norm_eps > 0.0 && self.layer_norm_eps < 1.0) {
            return Err(err("layer_norm_eps", "expected a small positive number"));
        }
        if !(0.0..1.0).contains(&self.drop_path) {
            return Err(err("drop_path", "expected a probability in [0, 1)"));
        }
        if self.labels.is_empty() {
            return Err(err("labels", "expected at least one label"));
        }
        if let Some(dup) = self
            .labels
            .iter()
            .enumerate()
            .find(|(i, l)| self.labels[..*i].contains(l))
        {
            return Err(err("labels", format!("label `{}` appears twice", dup.1)));
        }
        self.tokenizer
            .validate()
            .map_err(|e| err("tokenizer", e.to_string()))?;
        if let Some(t) = self.trunks.audio {
            if self.tokenizer.audio.front_end != AudioFrontEnd::Yamnet {
                return Err(err(
                    "trunks.audio",
                    format!(
                        "the {} trunk takes YAMNet log-mel patches: set tokenizer.audio.front_end = \"yamnet\"",
                        t.spec().name
                    ),
                ));
            }
        }
        if let Some(t) = self.trunks.video {
            if self.tokenizer.video.layout != VideoLayout::Frames {
                return Err(err(
                    "trunks.video",
                    format!(
                        "the {} trunk takes whole frames: set tokenizer.video.layout = \"frames\"",
                        t.spec().name
                    ),
                ));
            }
            let (gh, gw) = t.grid(self.tokenizer.video.height, self.tokenizer.video.width);
            let p = self.trunks.video_pool;
            if p == 0 || gh % p != 0 || gw % p != 0 {
                return Err(err(
                    "trunks.video_pool",
                    format!("expected a positive divisor of the trunk's {gh} x {gw} grid, got {p}"),
                ));
            }
        }
        if self.trunks.finetune_last && self.trunks.audio.is_none() && self.trunks.video.is_none() {
            return Err(err(
                "trunks.finetune_last",
                "needs a trunk ([trunks] audio or video)",
            ));
        }
        for s in self.streams() {
            if s.tokens == 0 {
                return Err(err(
                    "tokenizer",
                    format!("the {} stream gets zero tokens", s.name),
                ));
            }
        }
        Ok(())
    }

    /// Parses TOML text with `--set` overrides and validates.
    /// A `[train]` table (the training recipe, read by `mbt train`) is allowed and ignored here.
    pub fn from_toml(text: &str, origin: &str, overrides: &[String]) -> Result<Self, String> {
        Self::from_toml_with_train(text, origin, overrides).map(|(cfg, _)| cfg)
    }

    /// As [`ModelConfig::from_toml`], also returning the file's `[train]` table (empty when
    /// there is none) for the trainer to deserialise.
    pub fn from_toml_with_train(
        text: &str,
        origin: &str,
        overrides: &[String],
    ) -> Result<(Self, toml::Table), String> {
        use mbt_core::settings;
        let mut table = settings::load_table(text, origin, overrides).map_err(|e| e.to_string())?;
        let train = match table.remove("train") {
            Some(toml::Value::Table(t)) => t,
            Some(_) => return Err(format!("{origin}: `train` must be a table ([train])")),
            None => toml::Table::new(),
        };
        let described = settings::describe(origin, overrides);
        let cfg: ModelConfig =
            settings::from_table(table, &described).map_err(|e| e.to_string())?;
        cfg.validate().map_err(|e| format!("{described}: {e}"))?;
        Ok((cfg, train))
    }
}

/// The small model of the unit tests: width 16, 2 layers of 2 heads, fusion from layer 1,
/// the default labels and tokenizer (set other fields with `..tiny()`).
#[cfg(test)]
pub(crate) fn tiny() -> ModelConfig {
    ModelConfig {
        width: 16,
        layers: 2,
        heads: 2,
        mlp_ratio: 2,
        fusion_layer: 1,
        ..Default::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_is_valid() {
        let c = ModelConfig::default();
        c.validate().unwrap();
        assert_eq!(c.streams()[0].tokens, 196);
        assert_eq!(c.streams()[1].tokens, 104);
        assert_eq!(c.active_bottlenecks(), 4);
    }

    #[test]
    fn impossible_values_name_the_field() {
        let bad = |f: fn(&mut ModelConfig)| {
            let mut c = ModelConfig::default();
            f(&mut c);
            c.validate().unwrap_err().field
        };
        assert_eq!(bad(|c| c.heads = 5), "heads");
        assert_eq!(bad(|c| c.fusion_layer = 7), "fusion_layer");
        assert_eq!(bad(|c| c.width = 0), "width");
        assert_eq!(bad(|c| c.labels.clear()), "labels");
        assert_eq!(bad(|c| c.tokenizer.video.num_frames = 0), "tokenizer");
    }

    #[test]
    fn finetune_last_feeds_the_cut_cells_and_embeds_the_pooled_ones() {
        let text = std::fs::read_to_string(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../../configs/edge.toml"
        ))
        .unwrap();
        let plain = ModelConfig::from_toml(&text, "edge.toml", &[]).unwrap();
        let fine = ModelConfig::from_toml(
            &text,
            "edge.toml",
            &["trunks.finetune_last=true".to_string()],
        )
        .unwrap();
        let (p, f) = (plain.streams(), fine.streams());
        // Video: 8 frames of 4 x 4 cells of 320 in, 2 x 2 of 1280 into the transformer.
        assert_eq!((f[0].tokens, f[0].patch_dim), (8 * 16, 320));
        assert_eq!(
            (f[0].embed_tokens(), f[0].embed_dim()),
            (p[0].tokens, p[0].patch_dim)
        );
        // Audio: the same cells, one layer earlier.
        assert_eq!((f[1].tokens, f[1].patch_dim), (30, 1024));
        assert_eq!(
            (f[1].embed_tokens(), f[1].embed_dim()),
            (p[1].tokens, p[1].patch_dim)
        );
        assert!(p.iter().all(|s| s.last.is_none()));
        assert_eq!(fine.video_input_cells(), 16);
        assert_eq!(plain.video_input_cells(), 4);
        let mut bad = ModelConfig::default();
        bad.trunks.finetune_last = true;
        assert_eq!(bad.validate().unwrap_err().field, "trunks.finetune_last");
    }

    #[test]
    fn b0_or_lf_eq_l_is_late() {
        let c = ModelConfig {
            bottlenecks: 0,
            ..Default::default()
        };
        assert!(!c.fuses());
        let c = ModelConfig {
            fusion_layer: 6,
            ..Default::default()
        };
        assert!(!c.fuses());
    }
}
