//! Audio augmentation for the generator: pitch shift, peaking EQ, reverb, coloured noise, and
//! the level measure that ties a recording to the scene's received level.
//!
//! All of it is plain f32/f64 arithmetic in a fixed order, so the same inputs give the same
//! bytes on every run (the data set's determinism depends on it).

use std::f64::consts::PI;

use super::rng::Rng;

/// "Active" RMS: the RMS of the loudest 50 ms window (hop 10 ms) at 16 kHz. Used instead of the
/// whole-file RMS so a short bang and a long sentence at the same level sound equally loud.
pub fn active_rms(x: &[f32]) -> f64 {
    const WIN: usize = 800;
    const HOP: usize = 160;
    if x.is_empty() {
        return 0.0;
    }
    if x.len() <= WIN {
        return (x.iter().map(|v| (*v as f64).powi(2)).sum::<f64>() / x.len() as f64).sqrt();
    }
    let mut best = 0.0f64;
    let mut start = 0;
    while start + WIN <= x.len() {
        let e = x[start..start + WIN]
            .iter()
            .map(|v| (*v as f64).powi(2))
            .sum::<f64>()
            / WIN as f64;
        best = best.max(e);
        start += HOP;
    }
    best.sqrt()
}

/// Lanczos kernel (a = 4), for fractional-delay interpolation.
fn lanczos_exact(x: f64) -> f64 {
    const A: f64 = 4.0;
    if x.abs() < 1e-12 {
        1.0
    } else if x.abs() >= A {
        0.0
    } else {
        let px = PI * x;
        A * px.sin() * (px / A).sin() / (px * px)
    }
}

/// Table steps per unit of the kernel's argument.
const LUT_STEPS: usize = 2048;

/// The kernel tabulated on [0, 4] and linearly interpolated (error < 1e-6): pitch shifting
/// evaluates it ~10 times per output sample, and two `sin` calls each made it the data build's
/// hot spot.
fn lanczos(x: f64) -> f64 {
    static LUT: std::sync::OnceLock<Vec<f64>> = std::sync::OnceLock::new();
    let lut = LUT.get_or_init(|| {
        (0..=4 * LUT_STEPS + 1)
            .map(|i| lanczos_exact(i as f64 / LUT_STEPS as f64))
            .collect()
    });
    let p = x.abs() * LUT_STEPS as f64;
    let i = p as usize;
    if i >= 4 * LUT_STEPS {
        return 0.0;
    }
    let f = p - i as f64;
    lut[i] + (lut[i + 1] - lut[i]) * f
}

/// Shifts pitch by `semitones` by resampling (duration changes by the same factor, like a tape
/// played faster or slower). When raising the pitch the kernel is widened to low-pass at the new
/// Nyquist, so nothing aliases.
pub fn pitch_shift(x: &[f32], semitones: f64) -> Vec<f32> {
    resample_by(x, 2f64.powf(semitones / 12.0))
}

/// Resamples by `ratio` = input rate / output rate with a Lanczos-3 kernel, widened to low-pass
/// at the output's Nyquist when decimating. For source recordings at rates the tokenizer's exact
/// resampler does not take (a 30,594 Hz WAV): good enough for material that is then pitch
/// shifted and filtered anyway, not a replacement for the tokenizer's.
pub fn resample_by(x: &[f32], ratio: f64) -> Vec<f32> {
    if (ratio - 1.0).abs() < 1e-9 || x.is_empty() {
        return x.to_vec();
    }
    let n_out = ((x.len() as f64) / ratio).floor().max(1.0) as usize;
    let scale = ratio.max(1.0); // kernel stretch when decimating
    let half = (4.0 * scale).ceil() as isize;
    (0..n_out)
        .map(|i| {
            let pos = i as f64 * ratio;
            let c = pos.floor() as isize;
            let mut acc = 0.0;
            let mut wsum = 0.0;
            for j in (c - half + 1)..=(c + half) {
                if j < 0 || j as usize >= x.len() {
                    continue;
                }
                let w = lanczos((pos - j as f64) / scale);
                acc += w * x[j as usize] as f64;
                wsum += w;
            }
            if wsum.abs() > 1e-9 {
                (acc / wsum) as f32
            } else {
                0.0
            }
        })
        .collect()
}

/// RBJ peaking equaliser at `freq` Hz (16 kHz), `gain_db`, Q = 1.
pub fn peaking_eq(x: &[f32], freq: f64, gain_db: f64) -> Vec<f32> {
    let a = 10f64.powf(gain_db / 40.0);
    let w0 = 2.0 * PI * freq / 16_000.0;
    let alpha = w0.sin() / 2.0;
    let (b0, b1, b2) = (1.0 + alpha * a, -2.0 * w0.cos(), 1.0 - alpha * a);
    let (a0, a1, a2) = (1.0 + alpha / a, -2.0 * w0.cos(), 1.0 - alpha / a);
    let (mut x1, mut x2, mut y1, mut y2) = (0.0, 0.0, 0.0, 0.0);
    x.iter()
        .map(|&v| {
            let v = v as f64;
            let y = (b0 * v + b1 * x1 + b2 * x2 - a1 * y1 - a2 * y2) / a0;
            x2 = x1;
            x1 = v;
            y2 = y1;
            y1 = y;
            y as f32
        })
        .collect()
}

/// A small Schroeder reverb (4 parallel combs + 2 all-passes), mixed in at `wet`, with comb
/// feedback set for a decay time of `rt60` seconds. Room size is the comb delays' `size` factor.
pub fn reverb(x: &[f32], rt60: f64, size: f64, wet: f64) -> Vec<f32> {
    if wet <= 0.0 {
        return x.to_vec();
    }
    let combs = [1557.0, 1617.0, 1491.0, 1422.0].map(|d: f64| (d * size) as usize);
    let mut acc = vec![0.0f64; x.len()];
    for &d in &combs {
        let d = d.max(1);
        let g = 10f64.powf(-3.0 * d as f64 / (rt60 * 16_000.0));
        let mut buf = vec![0.0f64; x.len()];
        for i in 0..x.len() {
            let fb = if i >= d { buf[i - d] } else { 0.0 };
            buf[i] = x[i] as f64 + g * fb;
            acc[i] += buf[i] * 0.25;
        }
    }
    for d in [225usize, 556] {
        let g = 0.5;
        let mut out = vec![0.0f64; acc.len()];
        for i in 0..acc.len() {
            let xd = if i >= d { acc[i - d] } else { 0.0 };
            let yd = if i >= d { out[i - d] } else { 0.0 };
            out[i] = -g * acc[i] + xd + g * yd;
        }
        acc = out;
    }
    x.iter()
        .zip(&acc)
        .map(|(&dry, &w)| ((1.0 - wet) * dry as f64 + wet * w) as f32)
        .collect()
}

/// Coloured noise: white noise through a one-pole low-pass (`colour` in [0, 0.98]; 0 = white),
/// scaled to RMS `rms`.
pub fn noise(rng: &mut Rng, n: usize, colour: f64, rms: f64) -> Vec<f32> {
    let mut y = 0.0f64;
    let raw: Vec<f64> = (0..n)
        .map(|_| {
            y = colour * y + (1.0 - colour) * rng.normal();
            y
        })
        .collect();
    let r = (raw.iter().map(|v| v * v).sum::<f64>() / n.max(1) as f64).sqrt();
    let k = if r > 0.0 { rms / r } else { 0.0 };
    raw.iter().map(|v| (v * k) as f32).collect()
}

pub fn db_to_gain(db: f64) -> f64 {
    10f64.powf(db / 20.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sine(f: f64, n: usize) -> Vec<f32> {
        (0..n)
            .map(|i| (2.0 * PI * f * i as f64 / 16_000.0).sin() as f32 * 0.5)
            .collect()
    }

    /// Dominant frequency by counting zero crossings.
    fn freq(x: &[f32]) -> f64 {
        let z = x.windows(2).filter(|w| w[0] < 0.0 && w[1] >= 0.0).count();
        z as f64 * 16_000.0 / x.len() as f64
    }

    #[test]
    fn tabulated_kernel_matches_the_exact_one() {
        for i in 0..10_000 {
            let x = i as f64 * 4.5 / 10_000.0;
            assert!((lanczos(x) - lanczos_exact(x)).abs() < 1e-6, "{x}");
            assert_eq!(lanczos(-x), lanczos(x));
        }
    }

    #[test]
    fn pitch_shift_moves_frequency_by_the_semitone_ratio() {
        let x = sine(1000.0, 16_000);
        for st in [-3.0, 3.0] {
            let y = pitch_shift(&x, st);
            let want = 1000.0 * 2f64.powf(st / 12.0);
            assert!((freq(&y[100..y.len() - 100]) - want).abs() < 5.0, "{st}");
            assert!((active_rms(&y) - active_rms(&x)).abs() < 0.01);
        }
    }

    #[test]
    fn eq_boosts_at_its_centre_only() {
        let boosted = peaking_eq(&sine(1000.0, 16_000), 1000.0, 6.0);
        let far = peaking_eq(&sine(100.0, 16_000), 4000.0, 6.0);
        let r = active_rms(&boosted[4000..]) / active_rms(&sine(1000.0, 16_000));
        assert!((20.0 * r.log10() - 6.0).abs() < 0.3, "{r}");
        let r = active_rms(&far[4000..]) / active_rms(&sine(100.0, 16_000));
        assert!((20.0 * r.log10()).abs() < 0.5, "{r}");
    }

    #[test]
    fn reverb_adds_a_tail_and_noise_has_its_level() {
        let mut x = vec![0.0f32; 16_000];
        x[0] = 1.0;
        let y = reverb(&x, 0.5, 1.0, 0.5);
        assert!(active_rms(&y[4000..8000]) > 1e-4);
        let n = noise(&mut Rng::new(1, &[]), 16_000, 0.5, 0.1);
        let r = (n.iter().map(|v| (*v as f64).powi(2)).sum::<f64>() / 16_000.0).sqrt();
        assert!((r - 0.1).abs() < 1e-6);
    }
}
