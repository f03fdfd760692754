//! A pretrained trunk's last layer, trained inside the fusion part (`trunks.finetune_last`):
//! the trunk is cut one layer earlier, and this per-cell linear map + activation (the trunk's
//! 1x1 conv with batch norm folded in), initialised from the trunk's own weights, turns the
//! cut cells into the cells the frozen trunk would have given; the video stream's pool runs
//! after it. Gradients reach the one trunk layer whose features are the most specific to the
//! trunk's pre-training task, at the cost of one matrix product per cell.

use burn::module::Param;
use burn::nn::{Linear, LinearConfig};
use burn::prelude::*;
use burn::tensor::activation::relu;

use crate::config::LastSpec;
use crate::trunk::{Activation, LastWeights};

#[derive(Module, Debug)]
pub struct TrunkLast {
    /// `[in, out]`: the trunk's 1x1 conv.
    pub linear: Linear,
    /// 0: ReLU, 1: ReLU6 (a plain field so the module derive needs nothing of the enum).
    pub activation_code: usize,
    /// One frame's (or patch's) cell grid and the pool over it.
    pub grid_h: usize,
    pub grid_w: usize,
    pub pool: usize,
}

impl TrunkLast {
    /// Randomly initialised (the trunk's weights are put in by [`TrunkLast::set_weights`]).
    pub fn new(in_dim: usize, spec: &LastSpec, device: &Device) -> Self {
        TrunkLast {
            linear: LinearConfig::new(in_dim, spec.channels).init(device),
            activation_code: match spec.activation {
                Activation::Relu => 0,
                Activation::Relu6 => 1,
            },
            grid_h: spec.grid.0,
            grid_w: spec.grid.1,
            pool: spec.pool.max(1),
        }
    }

    pub fn activation(&self) -> Activation {
        if self.activation_code == 1 {
            Activation::Relu6
        } else {
            Activation::Relu
        }
    }

    /// Replaces the weights with the trunk's own (`w` from `trunk::last_weights`).
    pub fn set_weights(mut self, w: &LastWeights, device: &Device) -> Self {
        self.linear.weight = Param::from_tensor(Tensor::from_data(
            TensorData::new(w.weight.clone(), [w.in_channels, w.out_channels]),
            device,
        ));
        self.linear.bias = Some(Param::from_tensor(Tensor::from_data(
            TensorData::new(w.bias.clone(), [w.out_channels]),
            device,
        )));
        self
    }

    /// `[N, frames * gh * gw, in]` -> `[N, frames * (gh / p) * (gw / p), out]`.
    pub fn forward(&self, x: Tensor<3>) -> Tensor<3> {
        let y = self.linear.forward(x);
        let y = match self.activation() {
            Activation::Relu => relu(y),
            Activation::Relu6 => y.clamp(0.0, 6.0),
        };
        let p = self.pool;
        if p <= 1 {
            return y;
        }
        let [n, t, c] = y.dims();
        let (gh, gw) = (self.grid_h, self.grid_w);
        let frames = t / (gh * gw);
        let blocks: Tensor<6> = y.reshape([n * frames, gh / p, p, gw / p, p, c]);
        blocks
            .mean_dim(4)
            .mean_dim(2)
            .reshape([n, frames * (gh / p) * (gw / p), c])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pools_each_frames_blocks_after_the_activation() {
        let device = Device::flex();
        let spec = LastSpec {
            channels: 1,
            activation: Activation::Relu6,
            grid: (2, 4),
            pool: 2,
        };
        // Identity weight, zero bias: the layer is ReLU6 then the pool.
        let layer = TrunkLast::new(1, &spec, &device).set_weights(
            &LastWeights {
                weight: vec![1.0],
                bias: vec![0.0],
                in_channels: 1,
                out_channels: 1,
            },
            &device,
        );
        // Two frames of 2 x 4 cells, row-major.
        let x: Vec<f32> = vec![
            1.0, 2.0, -5.0, 9.0, //
            3.0, 4.0, 1.0, 1.0, //
            0.0, 0.0, 0.0, 0.0, //
            8.0, 8.0, 8.0, -8.0,
        ];
        let y = layer
            .forward(Tensor::from_data(TensorData::new(x, [1, 16, 1]), &device))
            .into_data()
            .try_to_vec::<f32>()
            .unwrap();
        // Frame 1: (1+2+3+4)/4, (0+6+1+1)/4; frame 2: (0+0+6+6)/4, (0+0+6+0)/4.
        assert_eq!(y, vec![2.5, 2.0, 3.0, 1.5]);
    }
}
