//! The pretrained trunks (`models/trunks/`) run on tract and give what their reference gives.
//!
//! * YAMNet: on the log-mel patches of a spoken sentence, tract's feature map equals the one of
//!   the TensorFlow convnet the ONNX file was converted from, and its mean over the 3 x 2 cells
//!   equals the SavedModel's own embeddings (fixtures from the TF graph,
//!   `crates/mbt-core/tests/fixtures/yamnet/`).
//! * EfficientNet-Lite0: on a real photo (and its mirror image, a batch of two), tract's feature
//!   map equals ONNX Runtime's (`tests/fixtures/trunks/gen_lite0_fixture.py`; ONNX Runtime was
//!   checked against PyTorch at conversion, `models/trunks/PROVENANCE.md`). The file's input
//!   size is symbolic: tract is given the fixture's concrete 112 x 112.

use std::path::{Path, PathBuf};

use mbt_core::npy;
use tract_onnx::prelude::*;

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn load_npy(path: &Path) -> npy::Array {
    let bytes = std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    npy::decode_f32(&bytes).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// Runs `model` on tract with `input` of concrete `shape`; returns the first output.
fn run(model: &str, input: &npy::Array) -> (Vec<usize>, Vec<f32>) {
    let path = root().join("models/trunks").join(model);
    let shape: TVec<usize> = input.shape.iter().copied().collect();
    let plan = tract_onnx::onnx()
        .model_for_path(&path)
        .and_then(|m| m.with_input_fact(0, f32::fact(&shape).into()))
        .and_then(|m| m.into_optimized())
        .and_then(|m| m.into_runnable())
        .unwrap_or_else(|e| panic!("{model}: {e:#}"));
    let x = tract_ndarray::ArrayD::from_shape_vec(input.shape.clone(), input.data.clone())
        .expect("fixture shape");
    let out = plan
        .run(tvec!(Tensor::from(x).into()))
        .unwrap_or_else(|e| panic!("{model}: {e:#}"));
    let t = out[0].to_plain_array_view::<f32>().expect("f32 output");
    (t.shape().to_vec(), t.iter().copied().collect())
}

fn max_abs_diff(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len());
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f32::max)
}

#[test]
fn yamnet_on_tract_gives_the_tensorflow_features_and_embeddings() {
    let fx = root().join("crates/mbt-core/tests/fixtures/yamnet");
    let patches = load_npy(&fx.join("speech.patches.npy"));
    let want = load_npy(&fx.join("speech.features.npy"));
    let emb = load_npy(&fx.join("speech.embeddings.npy"));
    let (shape, got) = run("yamnet.onnx", &patches);
    assert_eq!(shape, want.shape);
    let scale = want.data.iter().fold(0.0f32, |m, v| m.max(v.abs()));
    let d = max_abs_diff(&got, &want.data);
    eprintln!("yamnet features: max |tract - TF| = {d:.2e} (largest value {scale:.2})");
    assert!(d <= 1e-4 * scale.max(1.0), "{d}");
    // Mean over the 3 x 2 cells = YAMNet's own 1024-d embedding.
    let n = shape[0];
    let pooled: Vec<f32> = (0..n * 1024)
        .map(|i| got[i * 6..i * 6 + 6].iter().sum::<f32>() / 6.0)
        .collect();
    let d = max_abs_diff(&pooled, &emb.data);
    eprintln!("yamnet embeddings: max |tract - SavedModel| = {d:.2e}");
    assert!(d <= 1e-4, "{d}");
}

#[test]
fn efficientnet_lite0_on_tract_gives_onnx_runtimes_features() {
    let fx = root().join("crates/mbt-infer/tests/fixtures/trunks");
    let input = load_npy(&fx.join("lite0_input.npy"));
    let want = load_npy(&fx.join("lite0_features.npy"));
    let (shape, got) = run("efficientnet-lite0.onnx", &input);
    assert_eq!(shape, [2, 1280, 4, 4]);
    assert_eq!(shape, want.shape);
    let scale = want.data.iter().fold(0.0f32, |m, v| m.max(v.abs()));
    let d = max_abs_diff(&got, &want.data);
    eprintln!("lite0 features: max |tract - ONNX Runtime| = {d:.2e} (largest value {scale:.2})");
    assert!(d <= 1e-4 * scale.max(1.0), "{d}");
    // The two pictures of the batch are a photo and its mirror: their features differ (the
    // batch is not collapsed), and each matches its own reference.
    let half = got.len() / 2;
    assert!(max_abs_diff(&got[..half], &got[half..]) > 0.1);
}
