//! Kaldi-compatible log-mel filterbank, numerically equal to
//! `torchaudio.compliance.kaldi.fbank(x, htk_compat=True, use_energy=False,
//! window_type='hanning', num_mel_bins=128, dither=0.0, frame_shift=10)`, the front end the
//! AST and MBT recipes were trained with.
//!
//! Per frame (Kaldi's order, which matters: DC removal *before* pre-emphasis):
//! 1. cut `window_size` samples every `window_shift` (`snip_edges`: only whole frames, so fewer
//!    than `window_size` samples give zero frames, as in torchaudio);
//! 2. subtract the frame mean;
//! 3. pre-emphasis `x[i] -= 0.97 x[i-1]`, with `x[-1] := x[0]` (Kaldi replicates the first sample);
//! 4. multiply by the symmetric Hann window;
//! 5. zero-pad to the FFT size (512) and take the power spectrum `|X_k|^2`, `k = 0..=256`;
//! 6. apply triangular mel filters (HTK mel scale `1127 ln(1 + f/700)`, equally spaced between
//!    `low_freq` and `high_freq`, built over bins `0..256`; the Nyquist bin gets weight 0);
//! 7. `ln(max(e, 1.1920929e-7))`.
//!
//! With 128 bins at 16 kHz the lowest filters are narrower than one FFT bin, and filter 3
//! contains no bin at all: its energy is 0 and its output is exactly the log floor, as in
//! torchaudio. The per-frame work is done in `f64` (torchaudio uses `f32`); the golden tests
//! bound the difference.

use std::sync::Arc;

use realfft::{RealFftPlanner, RealToComplex};

use crate::config::AudioConfig;
use crate::error::TokenizeError;

/// A log-mel matrix, row-major `frames x bins` (one row per 10 ms frame).
#[derive(Debug, Clone, PartialEq)]
pub struct LogMel {
    pub frames: usize,
    pub bins: usize,
    pub data: Vec<f32>,
}

impl LogMel {
    pub fn row(&self, frame: usize) -> &[f32] {
        &self.data[frame * self.bins..(frame + 1) * self.bins]
    }
}

/// One triangular filter, stored sparsely: weights for FFT bins `first..first + weights.len()`.
#[derive(Debug, Clone)]
struct MelFilter {
    first: usize,
    weights: Vec<f64>,
}

/// A planned filterbank: window, mel filters and FFT plan are computed once.
pub struct Fbank {
    window_size: usize,
    window_shift: usize,
    fft_size: usize,
    preemphasis: f64,
    remove_dc_offset: bool,
    log_floor: f64,
    window: Vec<f64>,
    filters: Vec<MelFilter>,
    segments: Segments,
    fft: Arc<dyn RealToComplex<f64>>,
}

/// The filters regrouped by FFT bin for the per-frame loop. Triangular filters on consecutive
/// mel points overlap only pairwise: every bin lies in at most two filters (the falling half of
/// one and the rising half of the next), and runs of bins share the same pair. Walking the
/// power spectrum once, a run at a time, with two independent sums, touches each bin once;
/// a loop per filter visited most bins twice and stalled on one dependent sum per filter.
#[derive(Debug, Clone, Default)]
struct Segments {
    runs: Vec<Run>,
    /// Weights of the first and second filter of each run, bin after bin.
    wa: Vec<f64>,
    wb: Vec<f64>,
}

#[derive(Debug, Clone, Copy)]
struct Run {
    /// Filter indices; `bins` (one past the last filter) stands for "no filter".
    a: usize,
    b: usize,
    first_bin: usize,
    len: usize,
    offset: usize,
}

impl Segments {
    fn new(filters: &[MelFilter], num_fft_bins: usize) -> Self {
        let none = filters.len();
        let mut seg = Segments::default();
        let mut current: Option<(usize, usize)> = None;
        for k in 0..num_fft_bins {
            let members: Vec<(usize, f64)> = filters
                .iter()
                .enumerate()
                .filter_map(|(m, f)| {
                    let w = *f.weights.get(k.wrapping_sub(f.first))?;
                    (k >= f.first && w > 0.0).then_some((m, w))
                })
                .collect();
            // Two at most, by construction (left edge of filter m + 2 == right edge of m).
            debug_assert!(members.len() <= 2);
            let (a, wa) = members.first().copied().unwrap_or((none, 0.0));
            let (b, wb) = members.get(1).copied().unwrap_or((none, 0.0));
            if members.is_empty() {
                current = None;
                continue;
            }
            if current != Some((a, b)) {
                seg.runs.push(Run {
                    a,
                    b,
                    first_bin: k,
                    len: 0,
                    offset: seg.wa.len(),
                });
                current = Some((a, b));
            }
            if let Some(run) = seg.runs.last_mut() {
                run.len += 1;
            }
            seg.wa.push(wa);
            seg.wb.push(wb);
        }
        seg
    }

    /// Mel energies of one power spectrum into `out` (`filters + 1` slots; the last is scratch).
    fn apply(&self, power: &[f64], out: &mut [f64]) {
        out.iter_mut().for_each(|e| *e = 0.0);
        for r in &self.runs {
            let p = &power[r.first_bin..r.first_bin + r.len];
            let wa = &self.wa[r.offset..r.offset + r.len];
            let wb = &self.wb[r.offset..r.offset + r.len];
            let (mut x, mut y) = (0.0, 0.0);
            for ((&p, &a), &b) in p.iter().zip(wa).zip(wb) {
                x += a * p;
                y += b * p;
            }
            out[r.a] += x;
            out[r.b] += y;
        }
    }
}

/// HTK mel scale, as Kaldi and torchaudio use it.
pub fn mel_scale(hz: f64) -> f64 {
    1127.0 * (1.0 + hz / 700.0).ln()
}

impl Fbank {
    pub fn new(cfg: &AudioConfig) -> Result<Self, TokenizeError> {
        cfg.validate()?;
        let window_size = cfg.window_size();
        let fft_size = cfg.fft_size();
        let denom = (window_size - 1) as f64;
        let window = (0..window_size)
            .map(|n| 0.5 - 0.5 * (2.0 * std::f64::consts::PI * n as f64 / denom).cos())
            .collect();
        let filters = mel_filters(cfg);
        let segments = Segments::new(&filters, fft_size / 2);
        let fft = RealFftPlanner::<f64>::new().plan_fft_forward(fft_size);
        Ok(Fbank {
            window_size,
            window_shift: cfg.window_shift(),
            fft_size,
            preemphasis: cfg.preemphasis,
            remove_dc_offset: cfg.remove_dc_offset,
            log_floor: cfg.log_floor,
            window,
            filters,
            segments,
            fft,
        })
    }

    pub fn num_bins(&self) -> usize {
        self.filters.len()
    }

    /// The dense `bins x (fft_size / 2 + 1)` filter matrix, for inspection and tests.
    pub fn filter_matrix(&self) -> Vec<Vec<f64>> {
        let n = self.fft_size / 2 + 1;
        self.filters
            .iter()
            .map(|f| {
                let mut row = vec![0.0; n];
                row[f.first..f.first + f.weights.len()].copy_from_slice(&f.weights);
                row
            })
            .collect()
    }

    /// Log-mel energies of `samples` (mono, at the configured rate, any scale; the recipe feeds
    /// values in [-1, 1]). Empty input and non-finite samples are errors; input shorter than one
    /// window gives zero frames.
    pub fn compute(&self, samples: &[f32]) -> Result<LogMel, TokenizeError> {
        if samples.is_empty() {
            return Err(TokenizeError::EmptyAudio);
        }
        super::check_finite(samples)?;
        let frames = if samples.len() < self.window_size {
            0
        } else {
            1 + (samples.len() - self.window_size) / self.window_shift
        };
        let bins = self.filters.len();
        let mut data = vec![0f32; frames * bins];
        let mut buf = self.fft.make_input_vec();
        let mut spec = self.fft.make_output_vec();
        let mut scratch = self.fft.make_scratch_vec();
        let mut power = vec![0f64; spec.len()];
        let mut energies = vec![0f64; bins + 1];
        for (f, out) in data.chunks_exact_mut(bins.max(1)).enumerate().take(frames) {
            let start = f * self.window_shift;
            self.prepare_frame(&samples[start..start + self.window_size], &mut buf);
            // realfft only fails on wrongly sized buffers, which the plan itself made.
            if self
                .fft
                .process_with_scratch(&mut buf, &mut spec, &mut scratch)
                .is_err()
            {
                unreachable!("FFT buffers come from the plan");
            }
            for (p, c) in power.iter_mut().zip(&spec) {
                *p = c.re * c.re + c.im * c.im;
            }
            self.segments.apply(&power, &mut energies);
            // A separate pass so it vectorises; energies are finite, and >= the floor after max.
            for (o, &e) in out.iter_mut().zip(&energies) {
                *o = ln_positive(e.max(self.log_floor)) as f32;
            }
        }
        Ok(LogMel { frames, bins, data })
    }

    /// Steps 2-5 for one frame, into the zero-padded FFT input buffer, in one pass:
    /// `buf[i] = ((x[i] - mean) - p (x[i-1] - mean)) w[i]`, with `x[-1] := x[0]`.
    fn prepare_frame(&self, frame: &[f32], buf: &mut [f64]) {
        let n = self.window_size;
        let mean = if self.remove_dc_offset {
            sum_f64(frame) / n as f64
        } else {
            0.0
        };
        let p = self.preemphasis;
        buf[0] = (frame[0] as f64 - mean) * (1.0 - p) * self.window[0];
        for i in 1..n {
            let cur = frame[i] as f64 - mean;
            let prev = frame[i - 1] as f64 - mean;
            buf[i] = (cur - p * prev) * self.window[i];
        }
        buf[n..].iter_mut().for_each(|b| *b = 0.0);
    }
}

/// Sum in f64 with eight independent partial sums (a single running sum is a chain of
/// dependent additions, which cost more than the rest of the frame's preparation).
fn sum_f64(x: &[f32]) -> f64 {
    let mut acc = [0f64; 8];
    let chunks = x.chunks_exact(8);
    let tail: f64 = chunks.remainder().iter().map(|&v| v as f64).sum();
    for c in chunks {
        for k in 0..8 {
            acc[k] += c[k] as f64;
        }
    }
    acc.iter().sum::<f64>() + tail
}

/// Natural log of a positive, finite, normal `f64`, within ~1e-12 absolute of `f64::ln`.
///
/// The library log is an opaque call per value and was a third of the filterbank's time; this
/// form is plain arithmetic the compiler vectorises: `x = m 2^e` with `m` in
/// `[sqrt(1/2), sqrt(2))`, then `ln m = 2 atanh(s)`, `s = (m - 1) / (m + 1)`, `|s| <= 0.172`,
/// by its odd series to `s^13` (truncation < 2e-11 relative to `ln m`, far below the f32
/// result's precision).
#[inline]
fn ln_positive(x: f64) -> f64 {
    const LN2: f64 = std::f64::consts::LN_2;
    let bits = x.to_bits();
    let mut e = ((bits >> 52) & 0x7ff) as i64 - 1023;
    let mut m = f64::from_bits((bits & 0x000f_ffff_ffff_ffff) | 0x3ff0_0000_0000_0000);
    if m > std::f64::consts::SQRT_2 {
        m *= 0.5;
        e += 1;
    }
    let s = (m - 1.0) / (m + 1.0);
    let s2 = s * s;
    let poly = 1.0
        + s2 * (1.0 / 3.0
            + s2 * (1.0 / 5.0
                + s2 * (1.0 / 7.0 + s2 * (1.0 / 9.0 + s2 * (1.0 / 11.0 + s2 / 13.0)))));
    e as f64 * LN2 + 2.0 * s * poly
}

/// Kaldi's triangular mel filters (no VTLN warping), over FFT bins `0..fft_size/2`.
///
/// Computed in `f32` with torchaudio's operation order (`get_mel_banks`): the recipe's filters
/// *are* those float32 values, and matching their rounding keeps the weights within ~1e-7 of
/// the reference instead of ~1e-5.
fn mel_filters(cfg: &AudioConfig) -> Vec<MelFilter> {
    let fft_size = cfg.fft_size();
    let num_fft_bins = fft_size / 2;
    let rate = cfg.sample_rate as f64;
    let nyquist = rate / 2.0;
    let high = if cfg.high_freq <= 0.0 {
        nyquist + cfg.high_freq
    } else {
        cfg.high_freq
    };
    let bin_width = (rate / fft_size as f64) as f32;
    let mel_low = mel_scale(cfg.low_freq);
    let mel_high = mel_scale(high);
    let delta = ((mel_high - mel_low) / (cfg.num_mel_bins + 1) as f64) as f32;
    let mel_low = mel_low as f32;
    let bin_mels: Vec<f32> = (0..num_fft_bins)
        .map(|k| 1127.0f32 * (1.0f32 + bin_width * k as f32 / 700.0f32).ln())
        .collect();
    (0..cfg.num_mel_bins)
        .map(|m| {
            let left = mel_low + m as f32 * delta;
            let center = mel_low + (m as f32 + 1.0) * delta;
            let right = mel_low + (m as f32 + 2.0) * delta;
            let dense: Vec<f64> = bin_mels
                .iter()
                .map(|&mel| {
                    let up = (mel - left) / (center - left);
                    let down = (right - mel) / (right - center);
                    up.min(down).max(0.0) as f64
                })
                .collect();
            match (
                dense.iter().position(|&w| w > 0.0),
                dense.iter().rposition(|&w| w > 0.0),
            ) {
                (Some(a), Some(b)) => MelFilter {
                    first: a,
                    weights: dense[a..=b].to_vec(),
                },
                _ => MelFilter {
                    first: 0,
                    weights: Vec::new(),
                },
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fbank() -> Fbank {
        Fbank::new(&AudioConfig::default()).unwrap()
    }

    #[test]
    fn fast_log_matches_std() {
        let mut worst = 0f64;
        let mut x = 1.1920929e-7f64;
        while x < 1e30 {
            for k in 0..97 {
                let v = x * (1.0 + k as f64 / 97.0);
                worst = worst.max((ln_positive(v) - v.ln()).abs());
            }
            x *= 1.37;
        }
        assert!(worst < 1e-11, "worst {worst}");
    }

    #[test]
    fn frame_count_follows_snip_edges() {
        let fb = fbank();
        assert_eq!(fb.compute(&[0.0; 399]).unwrap().frames, 0);
        assert_eq!(fb.compute(&[0.0; 400]).unwrap().frames, 1);
        assert_eq!(fb.compute(&[0.0; 559]).unwrap().frames, 1);
        assert_eq!(fb.compute(&[0.0; 560]).unwrap().frames, 2);
        assert_eq!(fb.compute(&[0.0; 16_000]).unwrap().frames, 98);
    }

    #[test]
    fn silence_is_the_log_floor_everywhere() {
        let m = fbank().compute(&[0.0; 1600]).unwrap();
        let floor = f32::EPSILON.ln();
        assert!(m.data.iter().all(|&v| v == floor));
    }

    #[test]
    fn exactly_one_filter_is_empty_at_128_bins_16k() {
        // Hand check: mel(20 Hz) = 31.75, mel(8 kHz) = 2840.0, spacing 21.77 mel. Filter 3 spans
        // mel 97.06..140.6 (62.6..93.3 Hz) and the FFT bins nearest are 62.5 Hz (96.4 mel)
        // and 93.75 Hz (141.6 mel): both outside.
        let empty: Vec<usize> = fbank()
            .filters
            .iter()
            .enumerate()
            .filter(|(_, f)| f.weights.is_empty())
            .map(|(i, _)| i)
            .collect();
        assert_eq!(empty, vec![3]);
    }

    #[test]
    fn a_tone_peaks_in_the_filter_around_its_frequency() {
        let fb = fbank();
        let f0 = 1000.0;
        let x: Vec<f32> = (0..16_000)
            .map(|n| (2.0 * std::f32::consts::PI * f0 * n as f32 / 16_000.0).sin() * 0.5)
            .collect();
        let m = fb.compute(&x).unwrap();
        let row = m.row(10);
        let argmax = row
            .iter()
            .enumerate()
            .max_by(|a, b| a.1.total_cmp(b.1))
            .unwrap()
            .0;
        // Centre of filter m is mel_low + (m + 1) * delta; find the one nearest mel(1000).
        let delta = (mel_scale(8000.0) - mel_scale(20.0)) / 129.0;
        let expect = ((mel_scale(f0 as f64) - mel_scale(20.0)) / delta - 1.0).round() as usize;
        assert!(
            (argmax as i64 - expect as i64).abs() <= 1,
            "peak {argmax}, expected about {expect}"
        );
    }

    #[test]
    fn errors() {
        let fb = fbank();
        assert_eq!(fb.compute(&[]).unwrap_err(), TokenizeError::EmptyAudio);
        let mut x = vec![0.0; 500];
        x[17] = f32::NAN;
        assert!(matches!(
            fb.compute(&x),
            Err(TokenizeError::NonFiniteSample { index: 17, .. })
        ));
        x[17] = f32::INFINITY;
        assert!(matches!(
            fb.compute(&x),
            Err(TokenizeError::NonFiniteSample { index: 17, .. })
        ));
    }
}
