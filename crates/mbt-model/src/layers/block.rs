//! A pre-norm transformer layer: `x + attn(ln1(x))`, then `x + mlp(ln2(x))`, with stochastic
//! depth on both residual branches while training.
//!
//! The attention is exposed in two steps ([`Block::qkv`] then [`Block::finish`]) so a fusion
//! layer can give a stream's queries keys/values from every stream; [`Block::forward`] is the
//! plain self-attention layer.

use burn::nn::{LayerNorm, LayerNormConfig};
use burn::prelude::*;

use super::attention::{attend, Attention, Qkv};
use super::mlp::Mlp;

/// Where the stochastic-depth masks of a training forward pass come from.
///
/// Each sample's keep/drop decision for a branch is a hash of `(seed, layer, branch, row)`,
/// where `row` is the sample's row in the whole batch (`first_row` plus its row in this
/// pass). So the masks do not depend on how a batch is split across threads, nor on the
/// order threads draw in: a batch cut into shards gets exactly the masks it would get whole.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DropPath {
    pub seed: u64,
    pub first_row: usize,
}

impl DropPath {
    /// The masks of another layer (or stream): a new seed from this one and `key`.
    pub fn derive(self, key: u64) -> Self {
        DropPath {
            seed: splitmix(self.seed ^ splitmix(key)),
            ..self
        }
    }

    /// `n` per-sample multipliers for branch `which`: 0 (dropped) or `1 / keep`.
    fn mask(self, which: u64, n: usize, keep: f64) -> Vec<f32> {
        let seed = splitmix(self.seed ^ splitmix(which.wrapping_add(0x5D)));
        (0..n)
            .map(|r| {
                let u = (splitmix(seed ^ (self.first_row + r) as u64) >> 11) as f64
                    / (1u64 << 53) as f64;
                if u < keep {
                    (1.0 / keep) as f32
                } else {
                    0.0
                }
            })
            .collect()
    }
}

/// SplitMix64's output function: a well-mixed 64-bit hash of `x`.
fn splitmix(x: u64) -> u64 {
    let mut z = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

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
        drop: Option<DropPath>,
    ) -> Tensor<3> {
        let a = self.attn.output(attend(q, k, v));
        let x = x + self.drop(a, drop, 0);
        let m = self.mlp.forward(self.ln2.forward(x.clone()));
        x + self.drop(m, drop, 1)
    }

    /// The layer; `drop` is `Some` while training (stochastic depth), `None` for inference.
    pub fn forward(&self, x: Tensor<3>, drop: Option<DropPath>) -> Tensor<3> {
        let Qkv { q, k, v } = self.qkv(x.clone());
        self.finish(x, q, k, v, drop)
    }

    /// Stochastic depth: zero branch `which` for a random subset of samples, rescale the rest.
    fn drop(&self, branch: Tensor<3>, drop: Option<DropPath>, which: u64) -> Tensor<3> {
        let Some(drop) = drop else {
            return branch;
        };
        if self.drop_path == 0.0 {
            return branch;
        }
        let [b, _, _] = branch.dims();
        let mask = drop.mask(which, b, 1.0 - self.drop_path);
        let mask = Tensor::<3>::from_data(TensorData::new(mask, [b, 1, 1]), &branch.device());
        branch * mask
    }
}
