//! Shared by the test binaries: running `mbt`, scratch directories, and a tiny synthetic
//! source pool laid out like the package cache (tones, decaying sines and coloured shapes per
//! kind and split), so data sets can be built without the network or the real packages.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

pub fn mbt(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_mbt"))
        .args(args)
        .output()
        .expect("run mbt")
}

pub fn tmp(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("mbt-test-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

pub fn write_wav(path: &Path, rate: u32, samples: &[f32]) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    let spec = hound::WavSpec {
        channels: 1,
        sample_rate: rate,
        bits_per_sample: 16,
        sample_format: hound::SampleFormat::Int,
    };
    let mut w = hound::WavWriter::create(path, spec).unwrap();
    for s in samples {
        w.write_sample((s * 32767.0) as i16).unwrap();
    }
    w.finalize().unwrap();
}

pub fn write_png(path: &Path, w: u32, h: u32, rgba: [u8; 4], alpha_disc: bool) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    let img = image::RgbaImage::from_fn(w, h, |x, y| {
        let (dx, dy) = (x as f32 - w as f32 / 2.0, y as f32 - h as f32 / 2.0);
        let inside = dx * dx + dy * dy < (w.min(h) as f32 / 2.0).powi(2);
        let mut p = rgba;
        p[0] = p[0].wrapping_add((x * 3) as u8);
        if alpha_disc && !inside {
            p[3] = 0;
        }
        image::Rgba(p)
    });
    img.save(path).unwrap();
}

/// A synthetic source pool: every kind has a distinct sound and picture per split.
pub fn fixture(root: &Path) -> PathBuf {
    let cache = root.join("cache");
    let media = cache.join("media/fixture");
    let mut toml = format!(
        "[[package]]\nname = \"fixture\"\nversion = \"1\"\nsha256 = \"{}\"\nlicence = \"CC0-1.0\"\nwhy = \"test fixture\"\n",
        "0".repeat(64)
    );
    let kinds = ["dog", "glass", "speech", "door", "other"];
    for (ki, kind) in kinds.iter().enumerate() {
        for (si, split) in ["train", "val", "test"].iter().enumerate() {
            let f0 = 200.0 * (ki + 1) as f32 + 37.0 * si as f32;
            let rate = [16_000, 22_050, 44_100][si];
            let n = (rate as f32 * (0.3 + 0.2 * ki as f32)) as usize;
            let x: Vec<f32> = (0..n)
                .map(|i| {
                    let t = i as f32 / rate as f32;
                    0.5 * (2.0 * std::f32::consts::PI * f0 * t).sin() * (-3.0 * t).exp()
                })
                .collect();
            let rel = format!("snd/{kind}_{split}.wav");
            write_wav(&media.join(&rel), rate, &x);
            toml += &format!("[[source]]\npackage = \"fixture\"\npath = \"{rel}\"\nrole = \"sound\"\nkind = \"{kind}\"\nsplit = \"{split}\"\n");
            let rel = format!("img/{kind}_{split}.png");
            let c = [(ki * 50) as u8, (si * 80) as u8, 200, 255];
            write_png(&media.join(&rel), 20 + 4 * ki as u32, 30, c, ki % 2 == 0);
            toml += &format!("[[source]]\npackage = \"fixture\"\npath = \"{rel}\"\nrole = \"object\"\nkind = \"{kind}\"\nsplit = \"{split}\"\n");
        }
    }
    for split in ["train", "val", "test"] {
        let rel = format!("bg/{split}.png");
        write_png(
            &media.join(&rel),
            160,
            120,
            [90, 120, split.len() as u8 * 40, 255],
            false,
        );
        toml += &format!("[[source]]\npackage = \"fixture\"\npath = \"{rel}\"\nrole = \"background\"\nkind = \"other\"\nsplit = \"{split}\"\n");
    }
    let m = root.join("packages.toml");
    std::fs::write(&m, toml).unwrap();
    m
}

pub fn build(root: &Path, manifest: &Path, seed: &str, out: &str) -> Output {
    mbt(&build_args(root, manifest, seed, out)
        .iter()
        .map(String::as_str)
        .collect::<Vec<_>>())
}

/// `build` on `threads` rayon threads.
pub fn build_threads(
    root: &Path,
    manifest: &Path,
    seed: &str,
    out: &str,
    threads: usize,
) -> Output {
    Command::new(env!("CARGO_BIN_EXE_mbt"))
        .args(build_args(root, manifest, seed, out))
        .env("RAYON_NUM_THREADS", threads.to_string())
        .output()
        .expect("run mbt")
}

pub fn build_args(root: &Path, manifest: &Path, seed: &str, out: &str) -> Vec<String> {
    let cache = root.join("cache");
    [
        "data",
        "build",
        "--seed",
        seed,
        "--out",
        root.join(out).to_str().unwrap(),
        "--train",
        "18",
        "--val",
        "6",
        "--test",
        "12",
        "--cache",
        cache.to_str().unwrap(),
        "--pool",
        manifest.to_str().unwrap(),
    ]
    .map(String::from)
    .to_vec()
}

/// The ONNX Runtime library the `ort` backend tests open (`ORT_DYLIB_PATH`, else where
/// `scripts/fetch-onnxruntime.sh`, run by `scripts/test.sh`, puts the official build).
pub fn onnxruntime_library() -> String {
    mbt_infer::onnxruntime::reference_library().unwrap_or_else(|e| panic!("{e}"))
}

/// A tiny fusion part over the real pretrained trunks (configs/edge.toml's trunk and tokenizer
/// settings, six labels): the model of the fast tests that train or personalise with trunks.
pub const TINY_HYBRID: &str = r#"
width = 16
layers = 2
heads = 2
mlp_ratio = 2
fusion = "bottleneck"
fusion_layer = 1
bottlenecks = 2
labels = ["dog_barking", "glass_breaking", "person_speaking", "door_slammed", "door_closed_softly", "none"]

[trunks]
audio = "yamnet"
video = "efficientnet-lite0"
video_pool = 2

[tokenizer.audio]
front_end = "yamnet"
num_frames = 196
patch_hop = 25

[tokenizer.video]
layout = "frames"
num_frames = 8
"#;

/// `n` values in [lo, hi) from a fixed LCG (inputs for the trunk and model checks).
pub fn fill(n: usize, seed: u32, lo: f32, hi: f32) -> Vec<f32> {
    let mut s = seed;
    (0..n)
        .map(|_| {
            s = s.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
            lo + (hi - lo) * ((s >> 8) as f32 / (1u32 << 24) as f32)
        })
        .collect()
}
