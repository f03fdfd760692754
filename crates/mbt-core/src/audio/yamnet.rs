//! YAMNet's own log-mel front end: the input of the audio trunk `models/trunks/yamnet.onnx`.
//!
//! YAMNet (tensorflow/models `research/audioset/yamnet`) computes its spectrogram inside its
//! TensorFlow graph; our ONNX trunk starts after it (input `logmel [N, 96, 64]`), so this module
//! must reproduce that graph's numbers. Every constant below was read out of the saved graph
//! itself (`scripts/trunks/yamnet.py` prints them; `crates/mbt-core/tests/fixtures/yamnet/README.md`
//! explains them), not from documentation, and the golden tests compare against the graph's own
//! output.
//!
//! Steps, for 16 kHz mono samples:
//! 1. zero-pad at the end to at least [`MIN_SAMPLES`] (one whole patch), then to a whole number
//!    of [`PAD_HOP_SAMPLES`] (one patch hop) beyond that ([`padded_len`]): every input yields at
//!    least one patch and whole patches;
//! 2. frames of [`FRAME_LENGTH`] samples (25 ms) every [`FRAME_STEP`] (10 ms), no centring;
//! 3. periodic Hann window (`0.5 - 0.5 cos(2 pi n / 400)`, TensorFlow's `hann_window` default);
//! 4. zero-pad each frame at the end to [`FFT_LENGTH`], real FFT, **magnitude** (not power);
//!    no pre-emphasis, DC removal or dither (unlike the Kaldi front end in [`super::fbank`]);
//! 5. times the `257 x 64` mel matrix of `tf.signal.linear_to_mel_weight_matrix` (HTK mel scale,
//!    triangles in mel, no normalisation, DC bin weight zero), 125-7500 Hz ([`mel_matrix`]);
//! 6. `ln(mel + 0.001)` ([`LOG_OFFSET`]): silence sits at `ln(0.001) = -6.9078`.
//!
//! [`yamnet_patches`] then cuts [`PATCH_FRAMES`]-frame windows (0.96 s) every
//! `patch_hop_frames` (YAMNet: [`PATCH_HOP_FRAMES`], 0.48 s).
//!
//! The graph computes in `f32`; we compute each frame in `f64`. Against the graph the result is
//! within 1e-4 except in bands whose mel energy is near the 0.001 offset, where the graph's own
//! single-precision FFT rounding (~1e-6 absolute) is magnified by the log (up to ~3e-3 there);
//! see the tolerance in the fixtures' README.

use std::sync::Arc;

use realfft::{RealFftPlanner, RealToComplex};

use super::fbank::{mel_scale, LogMel};
use crate::error::TokenizeError;

/// Sample rate the front end expects (Hz). Resample first ([`super::resample`]).
pub const SAMPLE_RATE: u32 = 16_000;
/// Inputs are zero-padded to at least this many samples: one patch, `(96 - 1) * 160 + 400`.
pub const MIN_SAMPLES: usize = 15_600;
/// ... and then up to a whole number of these beyond it: one patch hop, `48 * 160`.
pub const PAD_HOP_SAMPLES: usize = 7_680;
/// STFT window length in samples (25 ms).
pub const FRAME_LENGTH: usize = 400;
/// STFT hop in samples (10 ms).
pub const FRAME_STEP: usize = 160;
/// FFT size: the next power of two above [`FRAME_LENGTH`]; frames are zero-padded at the end.
pub const FFT_LENGTH: usize = 512;
/// Number of FFT bins kept (`FFT_LENGTH / 2 + 1`).
pub const FFT_BINS: usize = FFT_LENGTH / 2 + 1;
/// Number of mel bands.
pub const MEL_BANDS: usize = 64;
/// Lower edge of the mel filterbank (Hz).
pub const MEL_MIN_HZ: f64 = 125.0;
/// Upper edge of the mel filterbank (Hz).
pub const MEL_MAX_HZ: f64 = 7_500.0;
/// Added to the mel magnitudes before the log (the graph's float32 constant 0.001).
pub const LOG_OFFSET: f32 = 0.001;
/// Frames per patch (0.96 s): the trunk's input is `[N, PATCH_FRAMES, MEL_BANDS]`.
pub const PATCH_FRAMES: usize = 96;
/// YAMNet's patch hop in frames (0.48 s).
pub const PATCH_HOP_FRAMES: usize = 48;

/// Length after step 1's zero padding, for an input of `n` samples.
pub fn padded_len(n: usize) -> usize {
    let beyond = n.saturating_sub(MIN_SAMPLES);
    MIN_SAMPLES + beyond.div_ceil(PAD_HOP_SAMPLES) * PAD_HOP_SAMPLES
}

/// Number of log-mel frames for an input of `n` samples (after padding).
pub fn num_frames(n: usize) -> usize {
    1 + (padded_len(n) - FRAME_LENGTH) / FRAME_STEP
}

/// Number of patches of [`PATCH_FRAMES`] frames every `hop` frames in `frames` frames (0 if
/// there are fewer frames than one patch or `hop` is 0).
pub fn num_patches(frames: usize, hop: usize) -> usize {
    if frames < PATCH_FRAMES || hop == 0 {
        0
    } else {
        1 + (frames - PATCH_FRAMES) / hop
    }
}

/// The periodic Hann window of length [`FRAME_LENGTH`].
pub fn window() -> Vec<f64> {
    (0..FRAME_LENGTH)
        .map(|n| 0.5 - 0.5 * (2.0 * std::f64::consts::PI * n as f64 / FRAME_LENGTH as f64).cos())
        .collect()
}

/// The dense mel matrix, row-major `FFT_BINS x MEL_BANDS` (`mel = |X| @ M`), as
/// `tf.signal.linear_to_mel_weight_matrix(64, 257, 16000, 125, 7500)` builds it: band edges
/// equally spaced in HTK mel between the limits; bin `k` (at `k * 8000 / 256` Hz) gets the
/// triangle weight of its mel value; the DC row is zero. Computed in `f64` (TensorFlow uses
/// `f32`: the two differ by < 1e-5).
pub fn mel_matrix() -> Vec<f64> {
    let lo = mel_scale(MEL_MIN_HZ);
    let hi = mel_scale(MEL_MAX_HZ);
    let edges: Vec<f64> = (0..MEL_BANDS + 2)
        .map(|i| lo + (hi - lo) * i as f64 / (MEL_BANDS + 1) as f64)
        .collect();
    let nyquist = SAMPLE_RATE as f64 / 2.0;
    let mut m = vec![0.0; FFT_BINS * MEL_BANDS];
    for k in 1..FFT_BINS {
        let mel = mel_scale(nyquist * k as f64 / (FFT_BINS - 1) as f64);
        for (j, e) in edges.windows(3).enumerate() {
            let up = (mel - e[0]) / (e[1] - e[0]);
            let down = (e[2] - mel) / (e[2] - e[1]);
            m[k * MEL_BANDS + j] = up.min(down).max(0.0);
        }
    }
    m
}

/// One mel band stored sparsely: weights for FFT bins `first..first + weights.len()`.
#[derive(Debug, Clone)]
struct Band {
    first: usize,
    weights: Vec<f64>,
}

/// A planned YAMNet front end (window, mel bands and FFT plan computed once). Reuse it for many
/// calls; [`yamnet_logmel`] builds one per call.
pub struct YamnetFrontEnd {
    window: Vec<f64>,
    bands: Vec<Band>,
    fft: Arc<dyn RealToComplex<f64>>,
}

impl Default for YamnetFrontEnd {
    fn default() -> Self {
        Self::new()
    }
}

impl YamnetFrontEnd {
    pub fn new() -> Self {
        let dense = mel_matrix();
        let bands = (0..MEL_BANDS)
            .map(|j| {
                let col: Vec<f64> = (0..FFT_BINS).map(|k| dense[k * MEL_BANDS + j]).collect();
                let first = col.iter().position(|&w| w > 0.0).unwrap_or(0);
                let last = col.iter().rposition(|&w| w > 0.0).unwrap_or(0);
                Band {
                    first,
                    weights: col[first..=last.max(first)].to_vec(),
                }
            })
            .collect();
        YamnetFrontEnd {
            window: window(),
            bands,
            fft: RealFftPlanner::<f64>::new().plan_fft_forward(FFT_LENGTH),
        }
    }

    /// Log-mel of 16 kHz mono `samples` (values in [-1, 1] as YAMNet was trained; the caller
    /// resamples): `num_frames(samples.len())` rows of [`MEL_BANDS`]. Empty input and
    /// non-finite samples are errors (the graph would turn empty input into one silent patch).
    pub fn compute(&self, samples: &[f32]) -> Result<LogMel, TokenizeError> {
        if samples.is_empty() {
            return Err(TokenizeError::EmptyAudio);
        }
        super::check_finite(samples)?;
        let padded = padded_len(samples.len());
        let frames = num_frames(samples.len());
        let mut data = vec![0f32; frames * MEL_BANDS];
        let mut buf = self.fft.make_input_vec();
        let mut spec = self.fft.make_output_vec();
        let mut scratch = self.fft.make_scratch_vec();
        let mut mag = vec![0f64; spec.len()];
        let offset = f64::from(LOG_OFFSET);
        for (f, out) in data.chunks_exact_mut(MEL_BANDS).enumerate() {
            let start = f * FRAME_STEP;
            debug_assert!(start + FRAME_LENGTH <= padded);
            // Samples past the input's end are the zero padding of step 1; past FRAME_LENGTH,
            // the FFT's zero padding.
            for (i, b) in buf.iter_mut().enumerate() {
                *b = if i < FRAME_LENGTH {
                    samples
                        .get(start + i)
                        .map_or(0.0, |&x| f64::from(x) * self.window[i])
                } else {
                    0.0
                };
            }
            // realfft only fails on wrongly sized buffers, which the plan itself made.
            if self
                .fft
                .process_with_scratch(&mut buf, &mut spec, &mut scratch)
                .is_err()
            {
                unreachable!("FFT buffers come from the plan");
            }
            for (m, c) in mag.iter_mut().zip(&spec) {
                *m = c.re.hypot(c.im);
            }
            for (o, band) in out.iter_mut().zip(&self.bands) {
                let e: f64 = mag[band.first..band.first + band.weights.len()]
                    .iter()
                    .zip(&band.weights)
                    .map(|(m, w)| m * w)
                    .sum();
                *o = (e + offset).ln() as f32;
            }
        }
        Ok(LogMel {
            frames,
            bins: MEL_BANDS,
            data,
        })
    }
}

/// YAMNet log-mel of 16 kHz mono samples; see the module documentation and
/// [`YamnetFrontEnd::compute`].
pub fn yamnet_logmel(samples: &[f32]) -> Result<LogMel, TokenizeError> {
    YamnetFrontEnd::new().compute(samples)
}

/// Log-mel patches, row-major `[count, frames, bins]`: the trunk's `logmel` input.
#[derive(Debug, Clone, PartialEq)]
pub struct Patches {
    /// Number of patches (the trunk's `N`).
    pub count: usize,
    /// Frames per patch ([`PATCH_FRAMES`]).
    pub frames: usize,
    /// Mel bands per frame.
    pub bins: usize,
    pub data: Vec<f32>,
}

impl Patches {
    pub fn shape(&self) -> [usize; 3] {
        [self.count, self.frames, self.bins]
    }

    pub fn patch(&self, i: usize) -> &[f32] {
        let n = self.frames * self.bins;
        &self.data[i * n..(i + 1) * n]
    }
}

/// Cuts `logmel` into [`PATCH_FRAMES`]-frame windows every `patch_hop_frames` frames, as
/// YAMNet's `tf.signal.frame` does: only whole windows (trailing frames that do not fill one are
/// dropped; after [`yamnet_logmel`]'s padding with the default hop none are). A log-mel shorter
/// than one patch gives zero patches. `patch_hop_frames` must be at least 1.
pub fn yamnet_patches(logmel: &LogMel, patch_hop_frames: usize) -> Result<Patches, TokenizeError> {
    if patch_hop_frames == 0 {
        return Err(TokenizeError::config(
            "patch_hop_frames",
            "must be at least 1 (YAMNet uses 48)",
        ));
    }
    if logmel.data.len() != logmel.frames * logmel.bins {
        return Err(TokenizeError::Count {
            what: "log-mel values (frames x bins)",
            expected: logmel.frames * logmel.bins,
            got: logmel.data.len(),
        });
    }
    let count = num_patches(logmel.frames, patch_hop_frames);
    let len = PATCH_FRAMES * logmel.bins;
    let mut data = Vec::with_capacity(count * len);
    for p in 0..count {
        let start = p * patch_hop_frames * logmel.bins;
        data.extend_from_slice(&logmel.data[start..start + len]);
    }
    Ok(Patches {
        count,
        frames: PATCH_FRAMES,
        bins: logmel.bins,
        data,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn padding_matches_the_graph() {
        // Lengths and padded lengths observed in the TF graph (fixtures' versions.txt).
        for (n, want) in [
            (1, 15_600),
            (6_400, 15_600),
            (15_600, 15_600),
            (15_601, 23_280),
            (16_000, 23_280),
            (20_800, 23_280),
            (24_000, 30_960),
            (32_000, 38_640),
        ] {
            assert_eq!(padded_len(n), want, "n = {n}");
        }
        assert_eq!(num_frames(6_400), 96);
        assert_eq!(num_frames(32_000), 240);
        assert_eq!(num_patches(96, 48), 1);
        assert_eq!(num_patches(240, 48), 4);
        assert_eq!(num_patches(95, 48), 0);
    }

    #[test]
    fn silence_sits_at_the_log_floor() {
        let lm = yamnet_logmel(&[0.0; 100]).unwrap();
        assert_eq!((lm.frames, lm.bins), (96, 64));
        let floor = f64::from(LOG_OFFSET).ln() as f32;
        assert!(lm.data.iter().all(|&v| v == floor));
    }

    #[test]
    fn dc_row_is_zero_and_bands_are_triangles() {
        let m = mel_matrix();
        assert!(m[..MEL_BANDS].iter().all(|&w| w == 0.0));
        assert!(m.iter().all(|&w| (0.0..=1.0).contains(&w)));
        let fe = YamnetFrontEnd::new();
        assert!(fe.bands.iter().all(|b| !b.weights.is_empty()));
    }

    #[test]
    fn bad_input_is_an_error() {
        assert_eq!(yamnet_logmel(&[]), Err(TokenizeError::EmptyAudio));
        assert!(matches!(
            yamnet_logmel(&[0.0, f32::NAN]),
            Err(TokenizeError::NonFiniteSample { index: 1, .. })
        ));
        let lm = yamnet_logmel(&[0.1; 10]).unwrap();
        assert!(yamnet_patches(&lm, 0).is_err());
        let broken = LogMel {
            frames: 2,
            bins: 64,
            data: vec![0.0; 10],
        };
        assert!(yamnet_patches(&broken, 48).is_err());
    }
}
