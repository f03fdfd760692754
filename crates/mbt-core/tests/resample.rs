//! The resampler on its own: tones keep their frequency and level, nothing above 8 kHz folds
//! back into a 16 kHz output (and upsampling 8 kHz input leaves no images), and output lengths
//! and rate errors are as documented.
//!
//! Measurements use a windowed DFT written out here (a direct sum, 4-term Blackman-Harris
//! window, sidelobes about -92 dB) evaluated at arbitrary frequencies, on the steady-state
//! middle of each signal. `cargo test -p mbt-core --test resample -- --nocapture` prints the
//! figures the README quotes.

use std::f64::consts::PI;

use mbt_core::audio::{resample, SUPPORTED_RATES};
use mbt_core::TokenizeError;

const OUT_RATE: u32 = 16_000;
/// Rates the tone tests cover.
const RATES: [u32; 4] = [8_000, 22_050, 44_100, 48_000];
/// Seconds of signal skipped at each end before measuring (filter start-up and tail).
const SKIP_S: f64 = 0.1;
/// Alias and image products must stay below this, dB relative to the tone that made them.
const ALIAS_BOUND_DB: f64 = -60.0;
/// Bounds for a tone that passes: peak frequency error (Hz) and level error (dB).
const FREQ_TOL_HZ: f64 = 1e-3;
const LEVEL_TOL_DB: f64 = 0.05;

/// A sine of amplitude `amp` at `freq` Hz, `secs` long, sampled at `rate` Hz.
fn sine(freq: f64, amp: f64, rate: u32, secs: f64) -> Vec<f32> {
    let n = (rate as f64 * secs).round() as usize;
    (0..n)
        .map(|i| (amp * (2.0 * PI * freq * i as f64 / rate as f64).sin()) as f32)
        .collect()
}

fn db(ratio: f64) -> f64 {
    20.0 * ratio.max(1e-300).log10()
}

/// `x` minus its least-squares fit `a cos + b sin` at `freq` Hz over the steady-state middle:
/// what is left is everything the resampler added besides the tone (the window's own -92 dB
/// sidelobes would otherwise hide it near the tone).
fn remove_tone(x: &[f32], freq: f64, rate: u32) -> Vec<f32> {
    let skip = (SKIP_S * rate as f64).round() as usize;
    let w = 2.0 * PI * freq / rate as f64;
    let (mut cc, mut ss, mut cs, mut xc, mut xs) = (0.0, 0.0, 0.0, 0.0, 0.0);
    for (i, &v) in x.iter().enumerate().take(x.len() - skip).skip(skip) {
        let (s, c) = (w * i as f64).sin_cos();
        let v = v as f64;
        (cc, ss, cs, xc, xs) = (cc + c * c, ss + s * s, cs + c * s, xc + v * c, xs + v * s);
    }
    let det = cc * ss - cs * cs;
    let (a, b) = ((xc * ss - xs * cs) / det, (xs * cc - xc * cs) / det);
    x.iter()
        .enumerate()
        .map(|(i, &v)| {
            let (s, c) = (w * i as f64).sin_cos();
            (v as f64 - a * c - b * s) as f32
        })
        .collect()
}

/// A steady-state stretch of a signal at `rate` Hz, windowed and ready for [`Spectrum::amplitude`].
struct Spectrum {
    rate: f64,
    /// Samples times the window.
    xw: Vec<f64>,
    /// Sum of the window: a sine of amplitude `a` on a bin gives `|X| = a * sum / 2`.
    wsum: f64,
}

impl Spectrum {
    /// Windows `x[SKIP_S * rate .. len - SKIP_S * rate]`, at most `max_len` samples of it
    /// (taken from the middle).
    fn new(x: &[f32], rate: u32, max_len: usize) -> Self {
        let skip = (SKIP_S * rate as f64).round() as usize;
        assert!(x.len() > 2 * skip + 64, "signal too short to measure");
        let mid = &x[skip..x.len() - skip];
        let n = mid.len().min(max_len);
        let start = (mid.len() - n) / 2;
        let seg = &mid[start..start + n];
        // 4-term Blackman-Harris (symmetric): highest sidelobe about -92 dB.
        let a = [0.35875, 0.48829, 0.14128, 0.01168];
        let d = (n - 1) as f64;
        let w: Vec<f64> = (0..n)
            .map(|i| {
                let p = 2.0 * PI * i as f64 / d;
                a[0] - a[1] * p.cos() + a[2] * (2.0 * p).cos() - a[3] * (3.0 * p).cos()
            })
            .collect();
        Spectrum {
            rate: rate as f64,
            xw: seg.iter().zip(&w).map(|(&s, &w)| s as f64 * w).collect(),
            wsum: w.iter().sum(),
        }
    }

    /// DFT bin spacing of the segment, Hz.
    fn bin_hz(&self) -> f64 {
        self.rate / self.xw.len() as f64
    }

    /// Amplitude of the component at `freq` Hz: `2 |sum x w e^{-i 2 pi f n / fs}| / sum w`.
    /// The phasor is advanced by rotation and re-anchored exactly every 256 samples.
    fn amplitude(&self, freq: f64) -> f64 {
        let step = 2.0 * PI * freq / self.rate;
        let (ds, dc) = step.sin_cos();
        let (mut re, mut im) = (0.0, 0.0);
        for (block, chunk) in self.xw.chunks(256).enumerate() {
            let (mut s, mut c) = (step * (block * 256) as f64).sin_cos();
            for &v in chunk {
                re += v * c;
                im -= v * s;
                (c, s) = (c * dc - s * ds, s * dc + c * ds);
            }
        }
        2.0 * re.hypot(im) / self.wsum
    }

    /// Frequency and amplitude of the strongest component within `span` Hz of `guess`: a grid
    /// of 0.1 Hz steps, then a golden-section search down to 1e-5 Hz around the best point.
    fn peak(&self, guess: f64, span: f64) -> (f64, f64) {
        let steps = (span / 0.1).round() as i64;
        let coarse = (-steps..=steps)
            .map(|k| guess + k as f64 * 0.1)
            .map(|f| (f, self.amplitude(f)))
            .fold((guess, f64::MIN), |b, p| if p.1 > b.1 { p } else { b });
        let (mut lo, mut hi) = (coarse.0 - 0.1, coarse.0 + 0.1);
        let g = (5f64.sqrt() - 1.0) / 2.0;
        let (mut a, mut b) = (hi - g * (hi - lo), lo + g * (hi - lo));
        let (mut fa, mut fb) = (self.amplitude(a), self.amplitude(b));
        while hi - lo > 1e-5 {
            if fa > fb {
                hi = b;
                (b, fb) = (a, fa);
                a = hi - g * (hi - lo);
                fa = self.amplitude(a);
            } else {
                lo = a;
                (a, fa) = (b, fb);
                b = lo + g * (hi - lo);
                fb = self.amplitude(b);
            }
        }
        let f = (lo + hi) / 2.0;
        (f, self.amplitude(f))
    }

    /// The strongest component anywhere in `lo..=hi` Hz: a scan in quarter-bin steps
    /// (scalloping under 0.05 dB with this window).
    fn max_in(&self, lo: f64, hi: f64) -> (f64, f64) {
        let step = self.bin_hz() / 4.0;
        let n = ((hi - lo) / step).floor() as usize;
        (0..=n)
            .map(|k| lo + k as f64 * step)
            .map(|f| (f, self.amplitude(f)))
            .fold((lo, 0.0), |b, p| if p.1 > b.1 { p } else { b })
    }
}

/// Samples measured for a tone's frequency and level (0.8 s at 16 kHz after the skips).
const TONE_LEN: usize = 1 << 20;
/// Samples for the whole-spectrum scans: 4096 at 16 kHz is a 3.9 Hz bin, enough to resolve
/// any product while keeping 8 000 Hz / (bin / 4) evaluations cheap.
const SCAN_LEN: usize = 4096;

/// The instrument itself: an off-grid tone (plus a weak second one) read back directly.
#[test]
fn dft_helper_measures_what_it_is_given() {
    let (f0, amp) = (1_234.567_8, 0.3);
    let x: Vec<f32> = sine(f0, amp, OUT_RATE, 1.0)
        .iter()
        .zip(sine(4_321.0, 1e-3, OUT_RATE, 1.0))
        .map(|(a, b)| a + b)
        .collect();
    let s = Spectrum::new(&x, OUT_RATE, TONE_LEN);
    let (f, a) = s.peak(f0 - 0.3, 2.0);
    assert!((f - f0).abs() < 1e-4, "{f}");
    assert!(db(a / amp).abs() < 1e-4, "{a}");
    let (f, a) = s.peak(4_321.2, 2.0);
    assert!(
        (f - 4_321.0).abs() < 1e-3 && db(a / 1e-3).abs() < 1e-3,
        "{f} {a}"
    );
    let (f, a) =
        Spectrum::new(&remove_tone(&x, f0, OUT_RATE), OUT_RATE, SCAN_LEN).max_in(0.0, 8_000.0);
    assert!(
        (f - 4_321.0).abs() < 2.0 && db(a / 1e-3).abs() < 0.05,
        "{f} {a}"
    );
}

#[test]
fn tones_keep_frequency_and_level() {
    let amp = 0.5;
    let mut worst = (0.0f64, 0.0f64);
    for from in RATES {
        let tones: &[f64] = if from > OUT_RATE {
            &[1_000.0, 3_000.0, 6_000.0]
        } else {
            &[1_000.0, 3_000.0]
        };
        for &f0 in tones {
            let x = sine(f0, amp, from, 1.0);
            let y = resample(&x, from, OUT_RATE).unwrap();
            let input = Spectrum::new(&x, from, TONE_LEN);
            let output = Spectrum::new(&y, OUT_RATE, TONE_LEN);
            let (_, in_amp) = input.peak(f0, 2.0);
            let (f_out, out_amp) = output.peak(f0, 2.0);
            let (df, dl) = (f_out - f0, db(out_amp / in_amp));
            println!(
                "{from:>6} Hz -> 16 kHz, {f0:>5} Hz tone: peak at {f_out:.5} Hz (error {df:+.1e} Hz), \
                 level {:.4} dB vs input {:.4} dB (error {dl:+.1e} dB)",
                db(out_amp),
                db(in_amp)
            );
            worst = (worst.0.max(df.abs()), worst.1.max(dl.abs()));
            assert!(
                df.abs() <= FREQ_TOL_HZ,
                "{from} Hz, {f0} Hz tone: output peak at {f_out} Hz"
            );
            assert!(
                dl.abs() <= LEVEL_TOL_DB,
                "{from} Hz, {f0} Hz tone: level changed by {dl} dB"
            );
        }
    }
    println!(
        "worst: frequency error {:.1e} Hz, level error {:.1e} dB",
        worst.0, worst.1
    );
}

#[test]
fn nothing_above_8k_aliases_into_the_output() {
    // Full-scale tones between 8 kHz and the input's Nyquist frequency: the output should hold
    // nothing but the filter's stopband leakage. The alias would land at |16 kHz - f| folded.
    for (from, f0) in [(22_050, 9_500.0), (44_100, 10_000.0), (48_000, 10_000.0)] {
        let amp = 1.0;
        let x = sine(f0, amp, from, 1.0);
        let y = resample(&x, from, OUT_RATE).unwrap();
        let alias = (OUT_RATE as f64 - f0).abs();
        let fine = Spectrum::new(&y, OUT_RATE, TONE_LEN);
        let alias_db = db(fine.amplitude(alias) / amp);
        let scan = Spectrum::new(&y, OUT_RATE, SCAN_LEN);
        let (f_max, a_max) = scan.max_in(0.0, OUT_RATE as f64 / 2.0);
        let max_db = db(a_max / amp);
        println!(
            "{from:>6} Hz -> 16 kHz, {f0} Hz tone: alias at {alias} Hz {alias_db:.1} dB, \
             strongest output component {max_db:.1} dB (at {f_max:.0} Hz), re full-level tone"
        );
        assert!(
            alias_db < ALIAS_BOUND_DB,
            "{from} Hz: alias at {alias_db} dB"
        );
        assert!(
            max_db < ALIAS_BOUND_DB,
            "{from} Hz: {max_db} dB at {f_max} Hz"
        );
    }
}

#[test]
fn upsampling_8k_leaves_no_image() {
    let (from, f0, amp) = (8_000, 3_000.0, 0.5);
    let x = sine(f0, amp, from, 1.0);
    let y = resample(&x, from, OUT_RATE).unwrap();
    let image = from as f64 - f0;
    let fine = Spectrum::new(&y, OUT_RATE, TONE_LEN);
    let (_, tone) = fine.peak(f0, 2.0);
    let image_db = db(fine.amplitude(image) / tone);
    // Everything else in 0..8 kHz: the output with the tone fitted and subtracted.
    let scan = Spectrum::new(&remove_tone(&y, f0, OUT_RATE), OUT_RATE, SCAN_LEN);
    let (f_max, a_max) = scan.max_in(0.0, OUT_RATE as f64 / 2.0);
    let max_db = db(a_max / tone);
    println!(
        "{from:>6} Hz -> 16 kHz, {f0} Hz tone: image at {image} Hz {image_db:.1} dB, strongest \
         other component (tone removed) {max_db:.1} dB (at {f_max:.0} Hz), re the tone"
    );
    assert!(image_db < ALIAS_BOUND_DB, "image at {image_db} dB");
    assert!(max_db < ALIAS_BOUND_DB, "{max_db} dB at {f_max} Hz");
}

#[test]
fn output_length_is_ceil_n_times_ratio() {
    for &from in SUPPORTED_RATES {
        for n in (1..=16).chain([441, 4_410, 44_099, 44_100, 44_101, 48_001]) {
            let y = resample(&vec![0.25; n], from, OUT_RATE).unwrap();
            let expect = (n as u64 * OUT_RATE as u64).div_ceil(from as u64) as usize;
            assert_eq!(y.len(), expect, "{n} samples at {from} Hz");
        }
    }
}

#[test]
fn same_rate_is_a_copy() {
    let x = sine(440.0, 0.3, OUT_RATE, 0.05);
    assert_eq!(resample(&x, OUT_RATE, OUT_RATE).unwrap(), x);
}

#[test]
fn unsupported_rates_are_errors() {
    for (from, to) in [
        (12_345, OUT_RATE),
        (0, OUT_RATE),
        (44_100, 12_345),
        (16_001, 16_000),
    ] {
        let bad = if SUPPORTED_RATES.contains(&from) {
            to
        } else {
            from
        };
        match resample(&[0.0; 100], from, to) {
            Err(TokenizeError::UnsupportedSampleRate { rate, supported }) => {
                assert_eq!(rate, bad);
                assert_eq!(supported, SUPPORTED_RATES);
            }
            other => panic!("{from} -> {to}: {other:?}"),
        }
    }
}
