//! Audio tokenization: samples -> 16 kHz -> Kaldi log-mel -> normalise -> pad/crop -> patches.
//!
//! [`AudioTokenizer`] is the one entry point both binaries use; the pieces are public so tools
//! (`mbt tokenize audio --raw`) and tests can look at each stage.

pub mod fbank;
pub mod resample;
pub mod spectrogram;
pub mod yamnet;

pub use fbank::{Fbank, LogMel};
pub use resample::{resample, to_model_rate, SUPPORTED_RATES};

use crate::config::AudioConfig;
use crate::error::TokenizeError;
use crate::tokens::Tokens;

/// Turns a window of mono samples into audio tokens. Build once, reuse: construction plans the
/// FFT and the mel filters.
pub struct AudioTokenizer {
    cfg: AudioConfig,
    fbank: Fbank,
}

impl AudioTokenizer {
    pub fn new(cfg: AudioConfig) -> Result<Self, TokenizeError> {
        let fbank = Fbank::new(&cfg)?;
        Ok(AudioTokenizer { cfg, fbank })
    }

    pub fn config(&self) -> &AudioConfig {
        &self.cfg
    }

    pub fn fbank(&self) -> &Fbank {
        &self.fbank
    }

    /// Raw log-mel of samples at `rate` Hz (resampled to the model rate first if needed).
    pub fn log_mel(&self, samples: &[f32], rate: u32) -> Result<LogMel, TokenizeError> {
        let resampled;
        let s = if rate == self.cfg.sample_rate {
            samples
        } else {
            resampled = resample(samples, rate, self.cfg.sample_rate)?;
            &resampled
        };
        self.fbank.compute(s)
    }

    /// Normalised log-mel padded or cropped to `num_frames` (the model's input spectrogram).
    pub fn spectrogram(&self, samples: &[f32], rate: u32) -> Result<LogMel, TokenizeError> {
        let raw = self.log_mel(samples, rate)?;
        let fixed =
            spectrogram::pad_or_crop(&raw, self.cfg.num_frames, (self.cfg.log_floor as f32).ln());
        Ok(spectrogram::normalize(
            fixed,
            self.cfg.norm_mean,
            self.cfg.norm_std,
        ))
    }

    /// Tokens for the model's `audio` input: `[token_count, patch_time * patch_freq]`.
    pub fn tokenize(&self, samples: &[f32], rate: u32) -> Result<Tokens, TokenizeError> {
        let spec = self.spectrogram(samples, rate)?;
        spectrogram::patches(&spec, self.cfg.patch_time, self.cfg.patch_freq)
    }
}

/// Checks that every sample is finite; the error names the first bad one.
pub fn check_finite(samples: &[f32]) -> Result<(), TokenizeError> {
    match samples.iter().position(|v| !v.is_finite()) {
        Some(index) => Err(TokenizeError::NonFiniteSample {
            index,
            value: samples[index],
        }),
        None => Ok(()),
    }
}
