//! Multi-head attention, split in two halves so fusion can sit between them: [`Attention::qkv`]
//! projects a stream's own tokens, [`attend`] lets queries attend over keys/values that may come
//! from several streams (full-attention fusion concatenates them), and [`Attention::output`]
//! projects back.
//!
//! Layout: one `[d, 3d]` QKV projection (q, k, v in that order along the output), heads split
//! as `[N, n, H, d/H] -> [N, H, n, d/H]`. The ONNX writer emits the same sequence.

use burn::nn::{Linear, LinearConfig};
use burn::prelude::*;
use burn::tensor::activation::softmax;

#[derive(Module, Debug)]
pub struct Attention {
    pub qkv: Linear,
    pub proj: Linear,
    pub heads: usize,
}

/// Queries, keys and values, each `[N, H, n, d/H]`.
pub struct Qkv {
    pub q: Tensor<4>,
    pub k: Tensor<4>,
    pub v: Tensor<4>,
}

impl Attention {
    pub fn new(width: usize, heads: usize, device: &Device) -> Self {
        Attention {
            qkv: LinearConfig::new(width, 3 * width).init(device),
            proj: LinearConfig::new(width, width).init(device),
            heads,
        }
    }

    /// Projects `x` `[N, n, d]` to per-head queries, keys and values.
    pub fn qkv(&self, x: Tensor<3>) -> Qkv {
        let [b, n, d] = x.dims();
        let qkv = self.qkv.forward(x);
        let split = |i: usize| {
            qkv.clone()
                .narrow(2, i * d, d)
                .reshape([b, n, self.heads, d / self.heads])
                .swap_dims(1, 2)
        };
        Qkv {
            q: split(0),
            k: split(1),
            v: split(2),
        }
    }

    /// Merges heads `[N, H, n, d/H] -> [N, n, d]` and applies the output projection.
    pub fn output(&self, heads: Tensor<4>) -> Tensor<3> {
        let [b, h, n, dh] = heads.dims();
        self.proj
            .forward(heads.swap_dims(1, 2).reshape([b, n, h * dh]))
    }
}

/// Scaled dot-product attention: `softmax(q k^T / sqrt(d/H)) v`.
pub fn attend(q: Tensor<4>, k: Tensor<4>, v: Tensor<4>) -> Tensor<4> {
    let dh = q.dims()[3];
    let scores = q.matmul(k.swap_dims(2, 3)) * (1.0 / (dh as f64).sqrt());
    softmax(scores, 3).matmul(v)
}
