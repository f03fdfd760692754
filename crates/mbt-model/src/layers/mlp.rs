//! The transformer MLP: `Linear(d, r d) -> GELU (exact, erf) -> Linear(r d, d)`.

use burn::nn::{Gelu, Linear, LinearConfig};
use burn::prelude::*;

#[derive(Module, Debug)]
pub struct Mlp {
    pub fc1: Linear,
    pub fc2: Linear,
    pub act: Gelu,
}

impl Mlp {
    pub fn new(width: usize, ratio: usize, device: &Device) -> Self {
        Mlp {
            fc1: LinearConfig::new(width, ratio * width).init(device),
            fc2: LinearConfig::new(ratio * width, width).init(device),
            act: Gelu::new(),
        }
    }

    pub fn forward(&self, x: Tensor<3>) -> Tensor<3> {
        self.fc2.forward(self.act.forward(self.fc1.forward(x)))
    }
}
