//! Unit tests of the training step: the schedule, the losses by hand, sharded against whole
//! batches, the projected-token path, head-only training with distillation, and the recipe's
//! validation. They reach inside the trainer (its fields, `optimizer`, `trainable`), which is
//! why they sit in `train/` rather than in `tests/`.

use burn::prelude::*;

use super::shard::{loss, softmax_rows};
use super::trainer::{optimizer, trainable};
use super::*;
use crate::{Mbt, ModelConfig};

#[test]
fn schedule_warms_up_linearly_then_follows_a_half_cosine() {
    let t = TrainConfig {
        lr: 0.1,
        min_lr_ratio: 0.0,
        ..TrainConfig::default()
    };
    // warm-up over 4 steps: 0.025, 0.05, 0.075, 0.1
    for (s, want) in [(0, 0.025), (1, 0.05), (3, 0.1)] {
        assert!((t.lr_at(s, 4, 104) - want).abs() < 1e-12, "step {s}");
    }
    // halfway through the cosine: lr / 2; at the end: the floor.
    assert!((t.lr_at(54, 4, 104) - 0.05).abs() < 1e-12);
    assert!(t.lr_at(104, 4, 104).abs() < 1e-12);
    let t = TrainConfig {
        min_lr_ratio: 0.1,
        ..t
    };
    assert!((t.lr_at(104, 4, 104) - 0.01).abs() < 1e-12);
}

#[test]
fn losses_match_hand_computation() {
    let device = Device::flex();
    let logits: Tensor<2> =
        Tensor::from_data(TensorData::new(vec![1.0f32, 2.0, 3.0], [1, 3]), &device);
    let target: Tensor<2> =
        Tensor::from_data(TensorData::new(vec![0.0f32, 0.0, 1.0], [1, 3]), &device);
    // -log softmax(3 | 1,2,3) = log(e^1+e^2+e^3) - 3
    let want = ((1f64).exp() + (2f64).exp() + (3f64).exp()).ln() - 3.0;
    let got = loss(logits.clone(), target.clone(), Loss::Softmax).into_scalar::<f32>();
    assert!((got as f64 - want).abs() < 1e-6, "{got} vs {want}");
    // BCE: sum over classes of -[t log s(x) + (1-t) log(1-s(x))]
    let s = |x: f64| 1.0 / (1.0 + (-x).exp());
    let want = -(1.0 - s(1.0)).ln() - (1.0 - s(2.0)).ln() - s(3.0).ln();
    let got = loss(logits, target, Loss::Sigmoid).into_scalar::<f32>();
    assert!((got as f64 - want).abs() < 1e-5, "{got} vs {want}");
}

/// A batch of `n` samples for `cfg` with inputs in [-1, 1) from a fixed LCG and one-hot
/// targets cycling through the classes.
fn toy_batch(cfg: &ModelConfig, n: usize) -> Batch {
    let mut state = 0x2545_F491_4F6C_DD1Du64;
    let mut next = move || {
        state = state
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1);
        ((state >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
    };
    let classes = cfg.num_classes();
    Batch {
        n,
        inputs: cfg
            .streams()
            .iter()
            .map(|s| (0..n * s.tokens * s.patch_dim).map(|_| next()).collect())
            .collect(),
        targets: (0..n * classes)
            .map(|i| f32::from(i % classes == (i / classes) % classes))
            .collect(),
        stream_targets: Vec::new(),
    }
}

#[test]
fn a_batch_cut_into_shards_steps_like_the_whole_batch() {
    // Stochastic depth on, so the test also holds the masks to the same rows.
    let cfg = ModelConfig {
        drop_path: 0.4,
        ..crate::config::tiny()
    };
    let recipe = |threads| TrainConfig {
        optimizer: Optimizer::Sgd,
        threads,
        ..TrainConfig::default()
    };
    let batch = toy_batch(&cfg, 5);
    let whole = Trainer::new(&cfg, &recipe(1), 1);
    let before = whole.predict(&batch).fused;
    // Three trainers on the same weights: whole batch, 3 shards (rows 0-0, 1-2, 3-4), and
    // the whole batch with other stochastic-depth masks.
    let same = |threads| Trainer {
        model: whole.model.clone(),
        optim: optimizer(&recipe(threads)),
        device: whole.device.clone(),
        cfg: cfg.clone(),
        train: recipe(threads),
        keep: None,
        projected: false,
    };
    let (mut one, mut three, mut other) = (same(1), same(3), same(1));
    let (s1, l1) = one.step(&batch, 0.5, 7);
    let (s3, l3) = three.step(&batch, 0.5, 7);
    let (s_other, _) = other.step(&batch, 0.5, 8);
    let close = |a: &[f32], b: &[f32], what: &str| {
        assert_eq!(a.len(), b.len(), "{what}");
        for (i, (x, y)) in a.iter().zip(b).enumerate() {
            assert!(
                (x - y).abs() <= 1e-4 * (1.0 + x.abs()),
                "{what}[{i}]: {x} vs {y}"
            );
        }
    };
    close(
        &[s1.loss, s1.fused_loss],
        &[s3.loss, s3.fused_loss],
        "losses",
    );
    close(&l1, &l3, "logits before the update");
    let after = one.predict(&batch).fused;
    close(
        &after,
        &three.predict(&batch).fused,
        "logits after the update",
    );
    // The comparison is not vacuous: the step moved the weights, and the masks matter.
    assert!(before.iter().zip(&after).any(|(a, b)| (a - b).abs() > 1e-3));
    assert!(
        (s1.loss - s_other.loss).abs() > 1e-4,
        "{} vs {}",
        s1.loss,
        s_other.loss
    );
}

#[test]
fn fusion_keeps_the_projections_and_a_projected_batch_trains_like_the_raw_one() {
    let cfg = ModelConfig {
        drop_path: 0.1,
        ..crate::config::tiny()
    };
    let recipe = TrainConfig {
        optimizer: Optimizer::Sgd,
        trainable: Trainable::Fusion,
        threads: 2,
        ..TrainConfig::default()
    };
    let batch = toy_batch(&cfg, 4);
    let mut raw = Trainer::new(&cfg, &recipe, 1);
    let mut proj = Trainer::new(&cfg, &recipe, 1);
    proj.model = raw.model.clone();
    proj.set_projected_inputs(true);
    let tokens = Batch {
        n: 4,
        inputs: project(&raw.model(), &cfg, &batch),
        targets: batch.targets.clone(),
        stream_targets: Vec::new(),
    };
    let v = |x: Tensor<2>| x.into_data().try_to_vec::<f32>().unwrap();
    let before = raw.model();
    let (s_raw, l_raw) = raw.step(&batch, 0.5, 3);
    let (s_proj, l_proj) = proj.step(&tokens, 0.5, 3);
    // Same masks, same inputs to the first layer: the same losses and logits.
    assert!(
        (s_raw.loss - s_proj.loss).abs() < 1e-5,
        "{s_raw:?} vs {s_proj:?}"
    );
    for (a, b) in l_raw.iter().zip(&l_proj) {
        assert!((a - b).abs() < 1e-4, "{a} vs {b}");
    }
    let (after_raw, after_proj) = (raw.model(), proj.model());
    for m in [&after_raw, &after_proj] {
        assert_eq!(
            v(before.streams[0].embed.weight.val()),
            v(m.streams[0].embed.weight.val()),
            "a projection moved"
        );
        assert_ne!(
            v(before.layers[0].attn.qkv.weight.val()),
            v(m.layers[0].attn.qkv.weight.val()),
            "the layers did not move"
        );
    }
    // Both took the same step: the same layer weights after it.
    for (a, b) in v(after_raw.layers[1].attn.qkv.weight.val())
        .iter()
        .zip(v(after_proj.layers[1].attn.qkv.weight.val()))
    {
        assert!((a - b).abs() < 1e-5, "{a} vs {b}");
    }
}

#[test]
fn heads_only_moves_only_the_heads_and_distillation_adds_the_teacher_term() {
    let cfg = ModelConfig {
        drop_path: 0.0,
        ..crate::config::tiny()
    };
    let recipe = TrainConfig {
        optimizer: Optimizer::Sgd,
        trainable: Trainable::Heads,
        modality_loss_weight: 0.0,
        label_smoothing: 0.0,
        threads: 2,
        ..TrainConfig::default()
    };
    let batch = toy_batch(&cfg, 4);
    let mut t = Trainer::new(&cfg, &recipe, 1);
    let vals = |m: &Mbt| {
        let v = |x: Tensor<2>| x.into_data().try_to_vec::<f32>().unwrap();
        (
            v(m.streams[0].embed.weight.val()),
            v(m.layers[0].attn.qkv.weight.val()),
            v(m.streams[0].head.weight.val()),
        )
    };
    let before = vals(&t.model());
    let (plain, logits) = t.step(&batch, 0.5, 3);
    let after = vals(&t.model());
    assert_eq!(before.0, after.0, "the patch embedding moved");
    assert_eq!(before.1, after.1, "a transformer layer moved");
    assert_ne!(before.2, after.2, "the head did not move");

    // The distillation term, by hand from the same logits: T^2 * mean over rows of the
    // cross-entropy of softmax(student[:k] / T) against softmax(teacher / T).
    let k = cfg.num_classes() - 2;
    let teacher: Vec<f32> = (0..4 * k)
        .map(|i| ((i * 37) % 11) as f32 / 3.0 - 1.5)
        .collect();
    let recipe = TrainConfig {
        distill_weight: 0.7,
        distill_temperature: 2.0,
        ..recipe
    };
    let mut d = Trainer::new(&cfg, &recipe, 1);
    let mut same = Trainer::new(&cfg, &recipe, 1);
    d.model = Some(trainable(t.model.clone().unwrap(), Trainable::Heads));
    same.model = d.model.clone();
    let (no_teacher, l0) = same.step(&batch, 0.0, 3);
    let tch = Teacher {
        classes: k,
        logits: vec![teacher.clone(), vec![], vec![]],
    };
    let (with, l1) = d.step_distilled(&batch, Some(&tch), 0.0, 3);
    assert_eq!(l0, l1);
    let classes = cfg.num_classes();
    let mut want = 0f64;
    for (s, tr) in l1.chunks(classes).zip(teacher.chunks(k)) {
        let p = softmax_rows(tr, k, 2.0);
        let q = softmax_rows(&s[..k], k, 2.0);
        want -= p
            .iter()
            .zip(&q)
            .map(|(a, b)| *a as f64 * (*b as f64).ln())
            .sum::<f64>();
    }
    want *= 0.7 * 4.0 / 4.0;
    let got = (with.loss - no_teacher.loss) as f64;
    assert!(
        (got - want).abs() < 1e-4,
        "distillation term {got} vs {want}"
    );
    assert!(want > 0.01);
    let _ = (plain, logits);
}

#[test]
fn bad_recipes_name_the_field() {
    let bad = |f: fn(&mut TrainConfig)| {
        let mut c = TrainConfig::default();
        f(&mut c);
        c.validate().unwrap_err().field
    };
    assert_eq!(bad(|c| c.epochs = 0), "epochs");
    assert_eq!(bad(|c| c.lr = -1.0), "lr");
    assert_eq!(bad(|c| c.warmup_epochs = 50.0), "warmup_epochs");
    assert_eq!(bad(|c| c.momentum = 1.0), "momentum");
    assert_eq!(bad(|c| c.label_smoothing = 1.0), "label_smoothing");
}
