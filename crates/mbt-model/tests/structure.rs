//! Structure tests: the information flow the method promises, checked by perturbing one input
//! and watching which outputs move.
//!
//! * late fusion: changing the audio changes nothing in the video stream;
//! * bottleneck fusion: video tokens are independent of audio through layer `Lf` itself (the
//!   bottlenecks entering `Lf` are the learned initial ones) and depend on it from `Lf + 1`
//!   (after the first averaging), so audio reaches video only through the B tokens;
//! * B = 0 behaves exactly as late fusion;
//! * full attention: from `Lf` on, every video token sees the audio.

use burn::prelude::*;
use mbt_model::{FusionKind, Mbt, ModelConfig};

fn cfg(fusion: FusionKind, lf: usize, b: usize) -> ModelConfig {
    let mut c = ModelConfig {
        width: 32,
        layers: 4,
        heads: 2,
        mlp_ratio: 2,
        fusion,
        fusion_layer: lf,
        bottlenecks: b,
        ..Default::default()
    };
    // Small inputs keep the test fast: 2 frames of 32x32 (8 tokens), 32 frames of audio (16).
    c.tokenizer.video = mbt_core::VideoConfig {
        num_frames: 2,
        resize_shorter: 32,
        height: 32,
        width: 32,
        patch_size: 16,
        tubelet: 1,
        ..Default::default()
    };
    c.tokenizer.audio.num_frames = 32;
    c.validate().unwrap();
    c
}

struct Run {
    video_trace: Vec<Vec<f32>>,
    video_logits: Vec<f32>,
    fused: Vec<f32>,
}

/// Deterministic pseudo-random input `[2, tokens, dim]` (a local LCG: the device's global RNG
/// is shared by the tests running in parallel, so it cannot make reproducible inputs).
fn input(tokens: usize, dim: usize, seed: u64, device: &Device) -> Tensor<3> {
    let mut s = seed.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1);
    let data: Vec<f32> = (0..2 * tokens * dim)
        .map(|_| {
            s = s
                .wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(1_442_695_040_888_963_407);
            ((s >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
        })
        .collect();
    Tensor::from_data(TensorData::new(data, [2, tokens, dim]), device)
}

fn run(model: &Mbt, cfg: &ModelConfig, audio_seed: u64, device: &Device) -> Run {
    let s = cfg.streams();
    let v = input(s[0].tokens, s[0].patch_dim, 1, device);
    let a = input(s[1].tokens, s[1].patch_dim, audio_seed, device);
    let out = model.forward_traced(vec![v, a]);
    let vec = |t: Tensor<3>| t.into_data().try_to_vec::<f32>().unwrap();
    Run {
        video_trace: out.trace[0].iter().cloned().map(vec).collect(),
        video_logits: out.stream_logits[0]
            .clone()
            .into_data()
            .try_to_vec::<f32>()
            .unwrap(),
        fused: out.logits.into_data().try_to_vec::<f32>().unwrap(),
    }
}

fn model(cfg: &ModelConfig, device: &Device) -> Mbt {
    device.seed(42);
    Mbt::new(cfg, device)
}

fn max_diff(a: &[f32], b: &[f32]) -> f32 {
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f32::max)
}

#[test]
fn late_fusion_video_ignores_audio() {
    let device = Device::flex();
    let c = cfg(FusionKind::Late, 2, 4);
    let m = model(&c, &device);
    let (r1, r2) = (run(&m, &c, 7, &device), run(&m, &c, 8, &device));
    for l in 0..c.layers {
        assert_eq!(r1.video_trace[l], r2.video_trace[l], "layer {l}");
    }
    assert_eq!(r1.video_logits, r2.video_logits);
    assert!(
        max_diff(&r1.fused, &r2.fused) > 1e-4,
        "the fused output must still see the audio head"
    );
}

#[test]
fn bottleneck_fusion_crosses_only_through_the_bottlenecks_from_lf() {
    let device = Device::flex();
    let c = cfg(FusionKind::Bottleneck, 1, 4);
    let m = model(&c, &device);
    let (r1, r2) = (run(&m, &c, 7, &device), run(&m, &c, 8, &device));
    // Layers 0 (unfused) and 1 (= Lf: the bottlenecks it reads carry no audio yet).
    for l in 0..=1 {
        assert_eq!(
            r1.video_trace[l], r2.video_trace[l],
            "video tokens after layer {l} must not depend on audio"
        );
    }
    // From Lf + 1 the averaged bottlenecks carry audio into every video token.
    for l in 2..c.layers {
        let d = max_diff(&r1.video_trace[l], &r2.video_trace[l]);
        assert!(
            d > 1e-5,
            "layer {l}: video tokens should depend on audio (diff {d})"
        );
    }
    assert!(max_diff(&r1.video_logits, &r2.video_logits) > 1e-6);
}

#[test]
fn zero_bottlenecks_is_late_fusion() {
    let device = Device::flex();
    let (cb, cl) = (
        cfg(FusionKind::Bottleneck, 1, 0),
        cfg(FusionKind::Late, 1, 0),
    );
    let mb = model(&cb, &device);
    // The same weights run as a late-fusion model (the device RNG is shared with tests running
    // in parallel, so two models from one seed need not be equal).
    let mut ml = mb.clone();
    ml.fusion_code = 0;
    ml.fusion_layer = cl.layers;
    let (rb, rl) = (run(&mb, &cb, 7, &device), run(&ml, &cl, 7, &device));
    assert_eq!(rb.fused, rl.fused, "same weights, same outputs");
    let rb2 = run(&mb, &cb, 8, &device);
    assert_eq!(
        rb.video_logits, rb2.video_logits,
        "B = 0: video ignores audio"
    );
}

#[test]
fn full_attention_sees_both_streams_from_lf() {
    let device = Device::flex();
    let c = cfg(FusionKind::FullAttention, 2, 4);
    let m = model(&c, &device);
    let (r1, r2) = (run(&m, &c, 7, &device), run(&m, &c, 8, &device));
    for l in 0..2 {
        assert_eq!(r1.video_trace[l], r2.video_trace[l], "layer {l}");
    }
    // At Lf already, and in every video token (each position of each sample).
    let d = 32;
    let (a, b) = (&r1.video_trace[2], &r2.video_trace[2]);
    for tok in 0..a.len() / d {
        let diff = max_diff(&a[tok * d..(tok + 1) * d], &b[tok * d..(tok + 1) * d]);
        assert!(
            diff > 1e-6,
            "token {tok} does not see the audio at layer Lf"
        );
    }
}
