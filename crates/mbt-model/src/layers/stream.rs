//! A stream's input and output ends: patch projection + CLS token + learned positional
//! embedding on the way in, LayerNorm + linear classifier on the way out.

use burn::module::Param;
use burn::nn::{LayerNorm, LayerNormConfig, Linear, LinearConfig};
use burn::prelude::*;
use burn::tensor::Distribution;

use super::TrunkLast;
use crate::config::{Classifier, StreamSpec};

#[derive(Module, Debug)]
pub struct StreamIo {
    /// The trunk's last layer, with `trunks.finetune_last`: runs first, on the input cells.
    pub last: Option<TrunkLast>,
    /// Patch vector -> token, `[patch_dim, d]`.
    pub embed: Linear,
    /// `[1, 1, d]`, present with the token classifier.
    pub cls: Option<Param<Tensor<3>>>,
    /// `[1, n, d]` for the `n` tokens including CLS.
    pub pos: Param<Tensor<3>>,
    pub head_norm: LayerNorm,
    pub head: Linear,
}

impl StreamIo {
    pub fn new(
        spec: &StreamSpec,
        width: usize,
        classes: usize,
        classifier: Classifier,
        eps: f64,
        device: &Device,
    ) -> Self {
        let cls = (classifier == Classifier::Token).then(|| {
            Param::from_tensor(Tensor::random(
                [1, 1, width],
                Distribution::Normal(0.0, 0.02),
                device,
            ))
        });
        let n = spec.embed_tokens() + usize::from(cls.is_some());
        StreamIo {
            last: spec
                .last
                .as_ref()
                .map(|l| TrunkLast::new(spec.patch_dim, l, device)),
            embed: LinearConfig::new(spec.embed_dim(), width).init(device),
            cls,
            pos: Param::from_tensor(Tensor::random(
                [1, n, width],
                Distribution::Normal(0.0, 0.02),
                device,
            )),
            head_norm: LayerNormConfig::new(width).with_epsilon(eps).init(device),
            head: LinearConfig::new(width, classes).init(device),
        }
    }

    /// `[N, tokens, patch_dim]` -> `[N, n, d]` (CLS first when present).
    pub fn embed(&self, patches: Tensor<3>) -> Tensor<3> {
        self.place(self.project(patches))
    }

    /// The per-patch half of [`StreamIo::embed`]: the trunk's last layer (when trained here)
    /// and the linear projection, `[N, tokens, patch_dim]` -> `[N, tokens', d]`. Each patch
    /// maps on its own, so with these weights frozen the projected tokens of a clip never
    /// change: personalisation's replay set stores them instead of the trunk features (16x
    /// smaller, see `crate::replay`).
    pub fn project(&self, patches: Tensor<3>) -> Tensor<3> {
        let patches = match &self.last {
            Some(l) => l.forward(patches),
            None => patches,
        };
        self.embed.forward(patches)
    }

    /// The rest of [`StreamIo::embed`]: CLS token in front, positions added.
    pub fn place(&self, x: Tensor<3>) -> Tensor<3> {
        let [b, _, d] = x.dims();
        let x = match &self.cls {
            Some(cls) => Tensor::cat(vec![cls.val().expand([b, 1, d]), x], 1),
            None => x,
        };
        x + self.pos.val()
    }

    /// Logits `[N, classes]` from the stream's final tokens `[N, n, d]` (`n` may include
    /// bottleneck tokens at the end; they are not read).
    pub fn logits(&self, x: Tensor<3>, tokens: usize) -> Tensor<2> {
        let [b, _, d] = x.dims();
        let pooled = match &self.cls {
            Some(_) => x.narrow(1, 0, 1).reshape([b, d]),
            None => x.narrow(1, 0, tokens).mean_dim(1).reshape([b, d]),
        };
        self.head.forward(self.head_norm.forward(pooled))
    }
}
