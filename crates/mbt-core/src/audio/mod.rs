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

use crate::config::{AudioConfig, AudioFrontEnd};
use crate::error::TokenizeError;
use crate::tokens::Tokens;

/// Turns a window of mono samples into audio tokens. Build once, reuse: construction plans the
/// FFT and the mel filters.
pub struct AudioTokenizer {
    cfg: AudioConfig,
    fbank: Fbank,
    /// Planned when the config selects YAMNet's front end.
    yamnet: Option<yamnet::YamnetFrontEnd>,
}

impl AudioTokenizer {
    pub fn new(cfg: AudioConfig) -> Result<Self, TokenizeError> {
        cfg.validate()?;
        let fbank = Fbank::new(&cfg)?;
        let yamnet = (cfg.front_end == AudioFrontEnd::Yamnet).then(yamnet::YamnetFrontEnd::new);
        Ok(AudioTokenizer { cfg, fbank, yamnet })
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
        match &self.yamnet {
            Some(y) => y.compute(s),
            None => self.fbank.compute(s),
        }
    }

    /// Normalised log-mel padded or cropped to `num_frames` (the model's input spectrogram).
    pub fn spectrogram(&self, samples: &[f32], rate: u32) -> Result<LogMel, TokenizeError> {
        let raw = self.log_mel(samples, rate)?;
        Ok(self.spectrogram_of(&raw))
    }

    /// [`AudioTokenizer::spectrogram`] from a raw log-mel already computed by
    /// [`AudioTokenizer::log_mel`].
    pub fn spectrogram_of(&self, raw: &LogMel) -> LogMel {
        let fixed = spectrogram::pad_or_crop(raw, self.cfg.num_frames, self.cfg.silence());
        if self.yamnet.is_some() {
            // YAMNet was trained on its raw log-mel: no normalisation.
            return fixed;
        }
        spectrogram::normalize(fixed, self.cfg.norm_mean, self.cfg.norm_std)
    }

    /// Tokens for the model's `audio` input: `[token_count, patch_time * patch_freq]`.
    pub fn tokenize(&self, samples: &[f32], rate: u32) -> Result<Tokens, TokenizeError> {
        let spec = self.spectrogram(samples, rate)?;
        self.patches(&spec)
    }

    /// Tokens from a model-input spectrogram (`num_frames` frames, already normalised when
    /// the front end normalises): Kaldi patches, or YAMNet's 96-frame patches flattened.
    pub fn patches(&self, spec: &LogMel) -> Result<Tokens, TokenizeError> {
        match self.cfg.front_end {
            AudioFrontEnd::Kaldi => {
                spectrogram::patches(spec, self.cfg.patch_time, self.cfg.patch_freq)
            }
            AudioFrontEnd::Yamnet => {
                let p = yamnet::yamnet_patches(spec, self.cfg.patch_hop)?;
                Ok(Tokens {
                    count: p.count,
                    dim: p.frames * p.bins,
                    data: p.data,
                })
            }
        }
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn yamnet_front_end_tokens_are_yamnets_own_patches() {
        // 2 s of a 440 Hz tone: the tokenizer's patches must be exactly what the YAMNet front
        // end (checked against the TF graph in tests/yamnet.rs) and its framing give.
        let cfg = AudioConfig {
            front_end: AudioFrontEnd::Yamnet,
            num_frames: 196,
            patch_hop: 25,
            ..Default::default()
        };
        let samples: Vec<f32> = (0..32_000)
            .map(|i| 0.3 * (2.0 * std::f32::consts::PI * 440.0 * i as f32 / 16_000.0).sin())
            .collect();
        let tok = AudioTokenizer::new(cfg.clone()).unwrap();
        let t = tok.tokenize(&samples, 16_000).unwrap();
        assert_eq!(t.shape(), [5, 96 * 64]);
        assert_eq!((cfg.token_count(), cfg.token_dim()), (5, 96 * 64));
        let raw = yamnet::yamnet_logmel(&samples).unwrap();
        let cropped = spectrogram::pad_or_crop(&raw, 196, cfg.silence());
        let want = yamnet::yamnet_patches(&cropped, 25).unwrap();
        assert_eq!(t.data, want.data);
        // Patch 4 starts at frame 100: one second later, the start of the next window's
        // patch 0 (what lets a streaming daemon reuse it).
        assert_eq!(&t.data[4 * 96 * 64..4 * 96 * 64 + 64], raw.row(100));
        // A Kaldi setting is refused for YAMNet at another rate.
        let bad = AudioConfig {
            sample_rate: 22_050,
            ..cfg
        };
        assert!(bad
            .validate()
            .unwrap_err()
            .to_string()
            .contains("audio.sample_rate"));
    }
}
