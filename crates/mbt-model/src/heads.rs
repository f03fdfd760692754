//! Growing a trained model's heads by new classes (personalisation: `mbt train --init ...
//! --add-labels a,b`).
//!
//! Every stream head is a linear map `[d, C]` (burn stores `[in, out]`) with a bias `[C]`; the
//! fused logits are the mean of the heads'. New classes are new columns at the end: the old
//! columns are kept bit for bit, so label order, the daemon's per-label thresholds and MQTT
//! topics of the old labels stay valid.
//!
//! The new columns start at zero weight and the mean of the old biases. Why zero and not a
//! random or prototype row: a zero column adds no preference on any input, so the extended
//! model ranks the old labels exactly as before (the softmax over the old labels is unchanged)
//! and the new logit is one constant; the first gradient steps then move the column along the
//! new class's mean head feature minus the batch's, which is what a prototype ("imprinted")
//! row would start from, without a separate pass to compute it. The mean old bias puts the
//! new class at an average prior instead of an arbitrary 0 on the logit scale.

use burn::module::Param;
use burn::prelude::*;

use crate::mbt::Mbt;

impl Mbt {
    /// This model with `added` new classes appended to every head (see the module docs).
    pub fn with_added_classes(mut self, added: usize) -> Self {
        if added == 0 {
            return self;
        }
        for io in self.streams.iter_mut() {
            let w = io.head.weight.val();
            let [d, _] = w.dims();
            let device = w.device();
            let zeros = Tensor::<2>::zeros([d, added], &device);
            io.head.weight = Param::initialized(io.head.weight.id, Tensor::cat(vec![w, zeros], 1));
            if let Some(bp) = io.head.bias.take() {
                let b = bp.val();
                let mean = b.clone().mean().into_scalar::<f32>();
                let fill = Tensor::<1>::full([added], mean, &device);
                io.head.bias = Some(Param::initialized(bp.id, Tensor::cat(vec![b, fill], 0)));
            }
        }
        self
    }
}

#[cfg(test)]
mod tests {
    use crate::train::{predict, Batch};
    use crate::{Mbt, ModelConfig};
    use burn::prelude::*;

    #[test]
    fn new_columns_leave_the_old_logits_and_their_ranking_alone() {
        let cfg = ModelConfig {
            labels: vec!["a".into(), "b".into(), "c".into()],
            ..crate::config::tiny()
        };
        let device = Device::flex();
        device.seed(5);
        let model = Mbt::new(&cfg, &device);
        let mut wide = cfg.clone();
        wide.labels.extend(["d".to_string(), "e".to_string()]);
        let grown = model.clone().with_added_classes(2);
        let inputs: Vec<Vec<f32>> = cfg
            .streams()
            .iter()
            .map(|s| {
                (0..3 * s.tokens * s.patch_dim)
                    .map(|i| ((i * 7919) % 101) as f32 / 50.0 - 1.0)
                    .collect()
            })
            .collect();
        let b = Batch {
            n: 3,
            inputs,
            targets: vec![],
            stream_targets: vec![],
        };
        let (p, q) = (predict(&model, &cfg, &b), predict(&grown, &wide, &b));
        assert_eq!(q.fused.len(), 3 * 5);
        for (old, new) in p.fused.chunks(3).zip(q.fused.chunks(5)) {
            assert_eq!(old, &new[..3], "old columns changed");
            // One constant for both new classes on every clip: the mean old bias.
            assert_eq!(new[3], new[4]);
        }
        let biases: Vec<f32> = model.streams[0]
            .head
            .bias
            .as_ref()
            .unwrap()
            .val()
            .into_data()
            .try_to_vec::<f32>()
            .unwrap();
        let mean = biases.iter().sum::<f32>() / 3.0;
        let grown_bias: Vec<f32> = grown.streams[0]
            .head
            .bias
            .as_ref()
            .unwrap()
            .val()
            .into_data()
            .try_to_vec::<f32>()
            .unwrap();
        assert_eq!(&grown_bias[..3], &biases[..]);
        assert!((grown_bias[3] - mean).abs() < 1e-6);
    }
}
