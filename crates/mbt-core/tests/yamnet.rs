//! Golden tests: the YAMNet log-mel front end against the TensorFlow graph's own output, made by
//! `fixtures/yamnet/gen_yamnet_fixtures.py` (see `fixtures/yamnet/README.md`).
//!
//! Tolerance: `1e-4 + 5e-6 * exp(-ref)`, i.e. 1e-4 in the log plus 5e-6 in mel-magnitude units.
//! The graph computes its FFT in single precision; in bands whose mel magnitude is near the 0.001
//! offset that rounding (~1e-6 absolute) is magnified by the log, up to ~3e-3 at the floor (a
//! float64 numpy implementation shows the same). `cargo test -p mbt-core --test yamnet --
//! --nocapture` prints the errors.

use std::path::PathBuf;

use mbt_core::audio::yamnet::{
    self, yamnet_logmel, yamnet_patches, FFT_BINS, MEL_BANDS, PATCH_FRAMES, PATCH_HOP_FRAMES,
};
use mbt_core::npy;

fn fixture(name: &str) -> npy::Array {
    let p = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/yamnet")
        .join(name);
    let bytes = std::fs::read(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
    npy::decode_f32(&bytes).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

fn tolerance(reference: f32) -> f64 {
    1e-4 + 5e-6 * (-f64::from(reference)).exp()
}

/// Checks `ours` against `reference` element-wise; returns (max abs error, max error where the
/// reference is above -4, i.e. away from the floor).
fn compare(name: &str, ours: &[f32], reference: &[f32]) -> (f64, f64) {
    assert_eq!(ours.len(), reference.len(), "{name}: length");
    let (mut worst, mut worst_loud) = (0f64, 0f64);
    for (i, (&o, &r)) in ours.iter().zip(reference).enumerate() {
        let d = f64::from((o - r).abs());
        assert!(
            d <= tolerance(r),
            "{name}[{i}] (frame {}, band {}): ours {o} vs graph {r}, diff {d:.2e} > {:.2e}",
            i / MEL_BANDS,
            i % MEL_BANDS,
            tolerance(r)
        );
        worst = worst.max(d);
        if r > -4.0 {
            worst_loud = worst_loud.max(d);
        }
    }
    (worst, worst_loud)
}

fn check_case(name: &str) {
    let input = fixture(&format!("{name}.input.npy"));
    let reference = fixture(&format!("{name}.logmel.npy"));
    let ours = yamnet_logmel(&input.data).unwrap();
    assert_eq!(
        reference.shape,
        vec![ours.frames, ours.bins],
        "{name}: log-mel shape"
    );
    assert_eq!(ours.frames, yamnet::num_frames(input.data.len()));
    let (err, loud) = compare(name, &ours.data, &reference.data);

    let ref_patches = fixture(&format!("{name}.patches.npy"));
    let patches = yamnet_patches(&ours, PATCH_HOP_FRAMES).unwrap();
    assert_eq!(
        ref_patches.shape,
        patches.shape().to_vec(),
        "{name}: patches shape"
    );
    let (perr, _) = compare(name, &patches.data, &ref_patches.data);
    println!(
        "{name:<12} {} samples -> {} frames, {} patches: max abs error {err:.2e} (bands above -4: {loud:.2e}), patches {perr:.2e}",
        input.data.len(),
        ours.frames,
        patches.count
    );
    assert!(loud <= 1e-4, "{name}: {loud} in bands away from the floor");
}

#[test]
fn logmel_sine_sweep() {
    check_case("sine_sweep");
}

#[test]
fn logmel_white_noise() {
    check_case("white_noise");
}

#[test]
fn logmel_speech() {
    check_case("speech");
}

#[test]
fn logmel_silence() {
    check_case("silence");
}

#[test]
fn logmel_shorter_than_one_patch() {
    check_case("short");
}

#[test]
fn mel_matrix_matches_the_graph() {
    let reference = fixture("mel_matrix.npy");
    assert_eq!(reference.shape, vec![FFT_BINS, MEL_BANDS]);
    let ours = yamnet::mel_matrix();
    let err = ours
        .iter()
        .zip(&reference.data)
        .map(|(&a, &b)| (a - f64::from(b)).abs())
        .fold(0.0, f64::max);
    println!("mel matrix: max abs error {err:.2e} (TensorFlow builds it in f32)");
    assert!(err <= 2e-5, "mel matrix differs by {err}");
}

#[test]
fn window_matches_the_graph() {
    let reference = fixture("window.npy");
    let ours = yamnet::window();
    assert_eq!(reference.shape, vec![ours.len()]);
    let err = ours
        .iter()
        .zip(&reference.data)
        .map(|(&a, &b)| (a - f64::from(b)).abs())
        .fold(0.0, f64::max);
    println!("window: max abs error {err:.2e}");
    assert!(err <= 1e-6, "window differs by {err}");
}

/// The trunk fixtures are consistent: the SavedModel's embeddings are the mean of the feature
/// map over its 3 x 2 cells (what a Rust caller of `yamnet.onnx` computes).
#[test]
fn speech_features_pool_to_the_graph_embeddings() {
    let features = fixture("speech.features.npy");
    let embeddings = fixture("speech.embeddings.npy");
    let patches = fixture("speech.patches.npy");
    assert_eq!(features.shape, vec![patches.shape[0], 1024, 3, 2]);
    assert_eq!(embeddings.shape, vec![patches.shape[0], 1024]);
    assert_eq!(patches.shape[1..], [PATCH_FRAMES, MEL_BANDS]);
    let err = features
        .data
        .chunks_exact(6)
        .zip(&embeddings.data)
        .map(|(cells, &e)| (cells.iter().sum::<f32>() / 6.0 - e).abs())
        .fold(0.0, f32::max);
    assert!(err <= 1e-4, "features pool to embeddings within {err}");
}
