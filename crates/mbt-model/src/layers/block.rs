//! A pre-norm transformer layer: `x + attn(ln1(x))`, then `x + mlp(ln2(x))`, with stochastic
//! depth on both residual branches while training.
//!
//! The attention is exposed in two steps ([`Block::qkv`] then [`Block::finish`]) so a fusion
//! layer can give a stream's queries keys/values from every stream; [`Block::forward`] is the
//! plain self-attention layer.

use burn::nn::{LayerNorm, LayerNormConfig};
use burn::prelude::*;
use burn::tensor::Distribution;

use super::attention::{attend, Attention, Qkv};
use super::mlp::Mlp;

#[derive(Module, Debug)]
pub struct Block {
    pub ln1: LayerNorm,
    pub attn: Attention,
    pub ln2: LayerNorm,
    pub mlp: Mlp,
    /// Probability of dropping each residual branch per sample while training.
    pub drop_path: f64,
}

impl Block {
    pub fn new(
        width: usize,
        heads: usize,
        mlp_ratio: usize,
        eps: f64,
        drop_path: f64,
        device: &Device,
    ) -> Self {
        let ln = || LayerNormConfig::new(width).with_epsilon(eps).init(device);
        Block {
            ln1: ln(),
            attn: Attention::new(width, heads, device),
            ln2: ln(),
            mlp: Mlp::new(width, mlp_ratio, device),
            drop_path,
        }
    }

    /// Queries, keys and values of this layer for its own stream's tokens.
    pub fn qkv(&self, x: Tensor<3>) -> Qkv {
        self.attn.qkv(self.ln1.forward(x))
    }

    /// The rest of the layer, given this stream's queries and the keys/values to attend over.
    pub fn finish(
        &self,
        x: Tensor<3>,
        q: Tensor<4>,
        k: Tensor<4>,
        v: Tensor<4>,
        train: bool,
    ) -> Tensor<3> {
        let a = self.attn.output(attend(q, k, v));
        let x = x + self.drop(a, train);
        let m = self.mlp.forward(self.ln2.forward(x.clone()));
        x + self.drop(m, train)
    }

    pub fn forward(&self, x: Tensor<3>, train: bool) -> Tensor<3> {
        let Qkv { q, k, v } = self.qkv(x.clone());
        self.finish(x, q, k, v, train)
    }

    /// Stochastic depth: zero the branch for a random subset of samples, rescale the rest.
    fn drop(&self, branch: Tensor<3>, train: bool) -> Tensor<3> {
        if !train || self.drop_path == 0.0 {
            return branch;
        }
        let keep = 1.0 - self.drop_path;
        let [b, _, _] = branch.dims();
        let mask = Tensor::<3>::random([b, 1, 1], Distribution::Bernoulli(keep), &branch.device());
        branch * mask * (1.0 / keep)
    }
}
