//! Rational-ratio polyphase resampler (Kaiser-windowed sinc), used to bring 8, 11.025, 22.05,
//! 44.1, 48 kHz... input to the filterbank's 16 kHz.
//!
//! Why our own and not a crate: every supported rate pair is an exact ratio `L/M` (44.1 kHz ->
//! 16 kHz is 160/441), so a polyphase FIR computes each output sample exactly at its ideal time
//! with no drift, it is deterministic bit-for-bit on every target, and the design is 80 lines a
//! reader can check:
//!
//! * Conceptually the input is upsampled by `L` (zeros inserted), low-pass filtered at the
//!   prototype rate `fs_in * L`, and every `M`-th sample kept. Polyphase form skips the zeros:
//!   output `n` uses filter phase `(n M + c) mod L`, about `N / L` taps.
//! * The low-pass passes up to 0.9 x the lower Nyquist and stops (>= 90 dB, Kaiser
//!   `beta = 0.1102 (A - 8.7)`) from the lower Nyquist on, so nothing above 8 kHz can alias
//!   into a 16 kHz output, and upsampling from 8 kHz leaves no images above 4 kHz.
//! * The filter is centred (zero phase): output sample `n` is aligned with input time
//!   `n M / L`, and the output has `ceil(len L / M)` samples.
//! * DC gain is normalised to exactly 1.

use crate::error::TokenizeError;

/// Input rates accepted by [`resample`] and the tokenizer.
pub const SUPPORTED_RATES: &[u32] = &[
    8_000, 11_025, 12_000, 16_000, 22_050, 24_000, 32_000, 44_100, 48_000, 88_200, 96_000,
];

/// Stopband attenuation the filter is designed for, dB.
const ATTENUATION_DB: f64 = 90.0;
/// Passband edge as a fraction of the lower Nyquist frequency; the stopband starts at 1.0.
const PASSBAND: f64 = 0.9;

/// A planned resampler for one rate pair.
pub struct Resampler {
    up: usize,
    down: usize,
    center: usize,
    /// `phases[p][m]` = prototype tap `p + m * up`.
    phases: Vec<Vec<f64>>,
}

fn gcd(a: u64, b: u64) -> u64 {
    if b == 0 {
        a
    } else {
        gcd(b, a % b)
    }
}

/// Zeroth-order modified Bessel function of the first kind (power series).
fn bessel_i0(x: f64) -> f64 {
    let (mut sum, mut term, q) = (1.0, 1.0, x * x / 4.0);
    for k in 1..200 {
        term *= q / (k as f64 * k as f64);
        sum += term;
        if term < sum * 1e-17 {
            break;
        }
    }
    sum
}

fn check_rate(rate: u32) -> Result<(), TokenizeError> {
    if SUPPORTED_RATES.contains(&rate) {
        Ok(())
    } else {
        Err(TokenizeError::UnsupportedSampleRate {
            rate,
            supported: SUPPORTED_RATES,
        })
    }
}

impl Resampler {
    pub fn new(from: u32, to: u32) -> Result<Self, TokenizeError> {
        check_rate(from)?;
        check_rate(to)?;
        let g = gcd(from as u64, to as u64);
        let up = (to as u64 / g) as usize;
        let down = (from as u64 / g) as usize;
        let proto_rate = from as f64 * up as f64;
        let nyquist = from.min(to) as f64 / 2.0;
        let transition = (1.0 - PASSBAND) * nyquist;
        let cutoff = (1.0 + PASSBAND) / 2.0 * nyquist;
        // Kaiser's length estimate: N = (A - 7.95) / (2.285 * delta_omega).
        let delta_omega = 2.0 * std::f64::consts::PI * transition / proto_rate;
        let mut len = ((ATTENUATION_DB - 7.95) / (2.285 * delta_omega)).ceil() as usize;
        len |= 1; // odd, so the centre is a tap
        let center = (len - 1) / 2;
        let beta = 0.1102 * (ATTENUATION_DB - 8.7);
        let i0_beta = bessel_i0(beta);
        let fc = cutoff / proto_rate; // cycles per prototype sample
        let mut proto: Vec<f64> = (0..len)
            .map(|j| {
                let t = j as f64 - center as f64;
                let sinc = if t == 0.0 {
                    2.0 * fc
                } else {
                    (2.0 * std::f64::consts::PI * fc * t).sin() / (std::f64::consts::PI * t)
                };
                let r = t / center.max(1) as f64;
                let w = bessel_i0(beta * (1.0 - r * r).max(0.0).sqrt()) / i0_beta;
                sinc * w
            })
            .collect();
        let sum: f64 = proto.iter().sum();
        proto.iter_mut().for_each(|h| *h *= up as f64 / sum);
        let phases = (0..up)
            .map(|p| proto.iter().skip(p).step_by(up).copied().collect())
            .collect();
        Ok(Resampler {
            up,
            down,
            center,
            phases,
        })
    }

    /// Number of output samples for `n` input samples.
    pub fn output_len(&self, n: usize) -> usize {
        (n * self.up).div_ceil(self.down)
    }

    /// Resamples a whole buffer (samples outside it count as zero).
    pub fn process(&self, x: &[f32]) -> Vec<f32> {
        let n_out = self.output_len(x.len());
        let mut y = Vec::with_capacity(n_out);
        for n in 0..n_out {
            let i = n * self.down + self.center;
            let k_max = i / self.up;
            let taps = &self.phases[i % self.up];
            // Taps m with 0 <= k_max - m < x.len().
            let m_lo = (k_max + 1).saturating_sub(x.len());
            let m_hi = taps.len().min(k_max + 1);
            let mut acc = 0.0f64;
            for m in m_lo..m_hi {
                acc += taps[m] * x[k_max - m] as f64;
            }
            // Saturate: the filter's overshoot must not turn finite input near f32::MAX into
            // infinity (which the filterbank would then refuse, naming a resampled index).
            y.push(acc.clamp(f32::MIN as f64, f32::MAX as f64) as f32);
        }
        y
    }
}

/// Resamples mono `samples` from `from` Hz to `to` Hz. Both rates must be in
/// [`SUPPORTED_RATES`]; samples must be finite and non-empty.
pub fn resample(samples: &[f32], from: u32, to: u32) -> Result<Vec<f32>, TokenizeError> {
    let rs = Resampler::new(from, to)?;
    if samples.is_empty() {
        return Err(TokenizeError::EmptyAudio);
    }
    super::check_finite(samples)?;
    if from == to {
        return Ok(samples.to_vec());
    }
    Ok(rs.process(samples))
}

/// Resamples to the filterbank's rate (16 kHz by default) if needed.
pub fn to_model_rate(
    samples: &[f32],
    rate: u32,
    model_rate: u32,
) -> Result<Vec<f32>, TokenizeError> {
    resample(samples, rate, model_rate)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ratios_are_reduced() {
        let r = Resampler::new(44_100, 16_000).unwrap();
        assert_eq!((r.up, r.down), (160, 441));
        let r = Resampler::new(8_000, 16_000).unwrap();
        assert_eq!((r.up, r.down), (2, 1));
    }

    #[test]
    fn lengths() {
        let r = Resampler::new(48_000, 16_000).unwrap();
        assert_eq!(r.output_len(48_000), 16_000);
        assert_eq!(r.output_len(4), 2);
        let r = Resampler::new(44_100, 16_000).unwrap();
        assert_eq!(r.output_len(44_100), 16_000);
    }

    #[test]
    fn dc_is_kept() {
        let y = resample(&[0.5; 4_410], 44_100, 16_000).unwrap();
        // Away from the edges (which see zeros beyond the buffer) the level is exact.
        for v in &y[400..1200] {
            assert!((v - 0.5).abs() < 1e-4, "{v}");
        }
    }

    #[test]
    fn bad_rates_and_samples() {
        assert!(matches!(
            resample(&[0.0; 10], 12_345, 16_000),
            Err(TokenizeError::UnsupportedSampleRate { rate: 12_345, .. })
        ));
        assert_eq!(
            resample(&[], 48_000, 16_000),
            Err(TokenizeError::EmptyAudio)
        );
        assert!(matches!(
            resample(&[0.0, f32::NAN], 48_000, 16_000),
            Err(TokenizeError::NonFiniteSample { index: 1, .. })
        ));
    }
}
