//! Tokenizer benchmarks. The log-mel row is compared with torchaudio by `bench/tokenizer.sh`,
//! which runs this bench and `bench/torchaudio_fbank.py` on the same input in one go.
//!
//! Input: 10 s of 16 kHz white noise from `bench_noise` (a fixed LCG, so the Python script
//! generates bit-identical samples).

use criterion::{criterion_group, criterion_main, Criterion};
use mbt_core::audio::Fbank;
use mbt_core::video::{Frame, VideoTokenizer};
use mbt_core::{AudioConfig, VideoConfig};

/// Uniform noise in [-0.5, 0.5) from a 32-bit LCG (Numerical Recipes constants).
pub fn bench_noise(n: usize) -> Vec<f32> {
    let mut s: u32 = 12345;
    (0..n)
        .map(|_| {
            s = s.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
            (s >> 8) as f32 / (1u32 << 24) as f32 - 0.5
        })
        .collect()
}

fn log_mel(c: &mut Criterion) {
    let fb = Fbank::new(&AudioConfig::default()).expect("default config is valid");
    let x = bench_noise(160_000);
    c.bench_function("logmel_10s_16k", |b| {
        b.iter(|| fb.compute(std::hint::black_box(&x)).expect("finite input"))
    });
}

fn video_patches(c: &mut Criterion) {
    let cfg = VideoConfig {
        num_frames: 8,
        resize_shorter: 224,
        height: 224,
        width: 224,
        tubelet: 1,
        ..Default::default()
    };
    let tok = VideoTokenizer::new(cfg).expect("valid config");
    let data: Vec<u8> = (0..224 * 224 * 3).map(|i| (i * 31 % 251) as u8).collect();
    let frames = vec![Frame::rgb(224, 224, &data); 8];
    c.bench_function("patches_8x224x224", |b| {
        b.iter(|| {
            tok.tokenize_frames(std::hint::black_box(&frames))
                .expect("valid frames")
        })
    });

    let vga: Vec<u8> = (0..640 * 480 * 3).map(|i| (i * 31 % 251) as u8).collect();
    let frames = vec![Frame::rgb(640, 480, &vga); 8];
    c.bench_function("resize_crop_patches_8x640x480_to_224", |b| {
        b.iter(|| {
            tok.tokenize_frames(std::hint::black_box(&frames))
                .expect("valid frames")
        })
    });
}

criterion_group!(benches, log_mel, video_patches);
criterion_main!(benches);
