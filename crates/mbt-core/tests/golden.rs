//! Golden tests: the shared tokenizer against independent references made by
//! `fixtures/gen_fixtures.py` (torchaudio's Kaldi fbank; Pillow + numpy for frames).
//!
//! Each comparison prints its maximum absolute error (`cargo test -p mbt-core --test golden --
//! --nocapture` shows them); the README states the figures.

use std::path::PathBuf;

use mbt_core::audio::{AudioTokenizer, Fbank};
use mbt_core::npy;
use mbt_core::video::{Frame, VideoTokenizer};
use mbt_core::{AudioConfig, VideoConfig};

/// Log-mel tolerance against torchaudio (the goal).
const LOGMEL_TOL: f32 = 1e-3;

fn fixture(name: &str) -> npy::Array {
    let p = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name);
    let bytes = std::fs::read(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
    npy::decode_f32(&bytes).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

fn max_abs_diff(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len());
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f32::max)
}

/// Compares our log-mel with torchaudio's on float64 input (within [`LOGMEL_TOL`]) and on
/// float32 input, the recipe's own precision. On float32 torchaudio's FFT rounding shows in
/// bins far below the frame's peak (a pure tone's spectrum spans e^25 in energy): there each
/// value may differ by `LOGMEL_TOL` plus torchaudio's own f32-vs-f64 difference at that value,
/// and the test reports how many values that allowance covered.
fn check_case(name: &str) {
    let fb = Fbank::new(&AudioConfig::default()).unwrap();
    let input = fixture(&format!("{name}.input.npy"));
    let ours = fb.compute(&input.data).unwrap();
    let ref32 = fixture(&format!("{name}.fbank.npy"));
    let ref64 = fixture(&format!("{name}.fbank64.npy"));
    for r in [&ref32, &ref64] {
        assert_eq!(r.shape, vec![ours.frames, ours.bins], "{name}: shape");
    }
    let err64 = max_abs_diff(&ours.data, &ref64.data);
    let err32 = max_abs_diff(&ours.data, &ref32.data);
    let mut noisy = 0;
    for ((o, a), b) in ours.data.iter().zip(&ref32.data).zip(&ref64.data) {
        let torch_noise = (a - b).abs();
        assert!(
            (o - a).abs() <= LOGMEL_TOL + torch_noise,
            "{name}: {o} vs torchaudio f32 {a} (f64 {b})"
        );
        if (o - a).abs() > LOGMEL_TOL {
            noisy += 1;
        }
    }
    println!(
        "{name:<12} {} frames: max abs error {err64:.2e} vs torchaudio f64, {err32:.2e} vs f32 ({noisy} of {} values beyond {LOGMEL_TOL:e}, each within torchaudio's own f32 error)",
        ours.frames,
        ours.data.len()
    );
    assert!(
        err64 <= LOGMEL_TOL,
        "{name} vs torchaudio f64: max abs error {err64} > {LOGMEL_TOL}"
    );
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
fn logmel_clipped_full_scale() {
    check_case("clipped");
}

#[test]
fn logmel_shorter_than_one_frame_gives_no_frames_and_pads_to_silence() {
    // torchaudio refuses this input (fixtures/short.torchaudio_error.txt); Kaldi's own
    // compute-fbank-feats with snip_edges emits zero frames, and so do we.
    let input = fixture("short.input.npy");
    assert!(input.data.len() < 400);
    let fb = Fbank::new(&AudioConfig::default()).unwrap();
    assert_eq!(fb.compute(&input.data).unwrap().frames, 0);
    let cfg = AudioConfig::default();
    let tok = AudioTokenizer::new(cfg.clone()).unwrap();
    let spec = tok.spectrogram(&input.data, 16_000).unwrap();
    let floor_norm = (f32::EPSILON.ln() - cfg.norm_mean) / (2.0 * cfg.norm_std);
    assert_eq!(spec.frames, cfg.num_frames);
    assert!(spec.data.iter().all(|&v| (v - floor_norm).abs() < 1e-6));
}

#[test]
fn mel_filters_equal_torchaudio_get_mel_banks() {
    let fb = Fbank::new(&AudioConfig::default()).unwrap();
    let reference = fixture("mel_banks.npy");
    assert_eq!(reference.shape, vec![128, 256]);
    let ours: Vec<f32> = fb
        .filter_matrix()
        .iter()
        .flat_map(|row| row[..256].iter().map(|&v| v as f32))
        .collect();
    let err = max_abs_diff(&ours, &reference.data);
    println!("mel filter weights: max abs error {err:.3e}");
    // Same f32 operation order as torchaudio; what remains is torch's vectorised f32 log, which
    // can differ from a correctly rounded one by 1 ulp of the mel value (2.4e-4 near 2800 mel),
    // moving a weight by up to 2.4e-4 / 21.8 (the filter spacing) = 1.1e-5.
    assert!(err < 2e-5, "mel filters differ by {err}");
    // The one empty filter (DESIGN.md: torchaudio yields the log floor for it).
    let empty: Vec<usize> = (0..128)
        .filter(|&m| {
            reference.data[m * 256..(m + 1) * 256]
                .iter()
                .all(|&w| w == 0.0)
        })
        .collect();
    assert_eq!(empty, vec![3]);
}

#[test]
fn video_tokens_equal_pillow_numpy_reference() {
    let frames = fixture("video_frames_u8.npy");
    let [t, h, w, c] = frames.shape[..] else {
        panic!("shape {:?}", frames.shape)
    };
    assert_eq!((t, c), (2, 3));
    let bytes: Vec<u8> = frames.data.iter().map(|&v| v as u8).collect();
    let views: Vec<Frame> = bytes
        .chunks_exact(h * w * 3)
        .map(|d| Frame::rgb(w, h, d))
        .collect();
    let cfg = VideoConfig {
        num_frames: 2,
        resize_shorter: 40,
        height: 32,
        width: 32,
        mean: [0.485, 0.456, 0.406],
        std: [0.229, 0.224, 0.225],
        patch_size: 16,
        tubelet: 2,
        layout: mbt_core::VideoLayout::Patches,
    };
    let ours = VideoTokenizer::new(cfg)
        .unwrap()
        .tokenize_frames(&views)
        .unwrap();
    let reference = fixture("video_tokens.npy");
    assert_eq!(reference.shape, ours.shape().to_vec());
    let err = max_abs_diff(&ours.data, &reference.data);
    // 1e-3 grey levels, in normalised units (divided by 255 and the smallest std).
    let tol = 1e-3 / 255.0 / 0.224;
    println!("video tokens: max abs error {err:.3e} (tolerance {tol:.3e})");
    assert!(err <= tol, "video tokens differ by {err}");
}
