//! Every tokenizer parameter, in one serde type.
//!
//! The same value is used by `mbt` when it builds training tensors, written into the exported
//! ONNX file's `metadata_props`, and read back by `mbtd`, which tokenizes with it. A parameter
//! that is not in here cannot silently differ between training and the device.
//!
//! Defaults are the edge model's: a 2 s window, AST/MBT audio front end (128 mel bins), 8 RGB
//! frames at 112 x 112 in 16 x 16 patches grouped in tubelets of 2 frames.

use serde::{Deserialize, Serialize};

use crate::error::TokenizeError;

fn c(field: &'static str, reason: impl Into<String>) -> TokenizeError {
    TokenizeError::config(field, reason)
}

/// Both modalities' tokenizer settings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(default, deny_unknown_fields)]
pub struct TokenizerConfig {
    pub audio: AudioConfig,
    pub video: VideoConfig,
}

impl TokenizerConfig {
    pub fn validate(&self) -> Result<(), TokenizeError> {
        self.audio.validate()?;
        self.video.validate()
    }
}

/// The analysis window applied to each audio frame. Only the recipe's window exists; the field
/// is still written out so a model file states it and a future variant cannot be mistaken for it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum WindowType {
    /// Symmetric ("non-periodic") Hann window, `0.5 - 0.5 cos(2 pi n / (N - 1))`; torchaudio's
    /// `window_type='hanning'`.
    #[default]
    Hanning,
}

/// Which log-mel front end makes the audio tokens.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum AudioFrontEnd {
    /// The AST/MBT recipe: Kaldi-compatible log-mel (`audio::fbank`), normalised, cut into
    /// `patch_time x patch_freq` patches (the from-scratch ViT stream's input).
    #[default]
    Kaldi,
    /// YAMNet's own front end (`audio::yamnet`: its fixed constants, no normalisation), cut
    /// into 96-frame x 64-band patches every `patch_hop` frames: the input of the YAMNet trunk.
    /// Of the fields below only `sample_rate` (must be 16 kHz), `num_frames` and `patch_hop`
    /// apply.
    Yamnet,
}

/// How frames become video tokens.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum VideoLayout {
    /// ViT patches / tubelets (`patch_size`, `tubelet`): the from-scratch stream's input.
    #[default]
    Patches,
    /// One token per frame holding the whole normalised frame channel-first (`3 x height x
    /// width`, NCHW order): the input of a convolutional trunk.
    Frames,
}

/// The audio front end (Kaldi-compatible log-mel, see `audio::fbank`, or YAMNet's) plus
/// normalisation and patching.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AudioConfig {
    pub front_end: AudioFrontEnd,
    /// Rate the filterbank runs at. Input at other rates is resampled to this first.
    pub sample_rate: u32,
    /// Analysis window length in milliseconds (25 ms = 400 samples at 16 kHz).
    pub frame_length_ms: f64,
    /// Hop between frames in milliseconds (10 ms = 160 samples).
    pub frame_shift_ms: f64,
    pub num_mel_bins: usize,
    /// Lower edge of the first mel filter, Hz.
    pub low_freq: f64,
    /// Upper edge of the last mel filter, Hz; `<= 0` means Nyquist plus this value (Kaldi's rule).
    pub high_freq: f64,
    pub preemphasis: f64,
    /// Subtract each frame's mean before pre-emphasis (Kaldi `remove_dc_offset`).
    pub remove_dc_offset: bool,
    pub window: WindowType,
    /// Energies are clamped to at least this before the log (float32 machine epsilon).
    pub log_floor: f64,
    /// Normalisation: `(x - norm_mean) / (2 * norm_std)`, the AST/MBT convention.
    pub norm_mean: f32,
    pub norm_std: f32,
    /// Frames per model input. Shorter spectrograms are padded with silence (the log floor),
    /// longer ones cropped at the end.
    pub num_frames: usize,
    /// Patch height along time (frames) and width along frequency (mel bins).
    pub patch_time: usize,
    pub patch_freq: usize,
    /// YAMNet front end: frames between patch starts (YAMNet's own is 48; 25 makes a 1 s
    /// window hop a whole number of patches, so a streaming trunk never reruns a patch).
    pub patch_hop: usize,
}

impl Default for AudioConfig {
    fn default() -> Self {
        AudioConfig {
            sample_rate: 16_000,
            frame_length_ms: 25.0,
            frame_shift_ms: 10.0,
            num_mel_bins: 128,
            low_freq: 20.0,
            high_freq: 0.0,
            preemphasis: 0.97,
            remove_dc_offset: true,
            window: WindowType::Hanning,
            log_floor: f32::EPSILON as f64,
            // AudioSet statistics published with AST; replaced by the data set's own
            // statistics when a model is trained (they travel in the model file).
            norm_mean: -4.267_739_3,
            norm_std: 4.568_997_4,
            // 2 s -> 198 frames, padded to 13 patches of 16.
            num_frames: 208,
            patch_time: 16,
            patch_freq: 16,
            patch_hop: crate::audio::yamnet::PATCH_HOP_FRAMES,
            front_end: AudioFrontEnd::Kaldi,
        }
    }
}

impl AudioConfig {
    /// Window length in samples: `rate * ms / 1000`, rounded (every shipped setting is exact).
    pub fn window_size(&self) -> usize {
        (self.sample_rate as f64 * self.frame_length_ms / 1000.0).round() as usize
    }

    pub fn window_shift(&self) -> usize {
        (self.sample_rate as f64 * self.frame_shift_ms / 1000.0).round() as usize
    }

    /// FFT length: the window size rounded up to a power of two (Kaldi `round_to_power_of_two`).
    pub fn fft_size(&self) -> usize {
        self.window_size().next_power_of_two()
    }

    /// Number of frames Kaldi's `snip_edges = true` framing yields for `n` samples.
    pub fn frames_for(&self, n: usize) -> usize {
        let (w, s) = (self.window_size(), self.window_shift());
        if n < w {
            0
        } else {
            1 + (n - w) / s
        }
    }

    /// The log-mel value of silence: padding and masks use it.
    pub fn silence(&self) -> f32 {
        match self.front_end {
            AudioFrontEnd::Kaldi => (self.log_floor as f32).ln(),
            AudioFrontEnd::Yamnet => crate::audio::yamnet::LOG_OFFSET.ln(),
        }
    }

    /// Number of tokens (patches) per model input.
    pub fn token_count(&self) -> usize {
        match self.front_end {
            AudioFrontEnd::Kaldi => {
                (self.num_frames / self.patch_time) * (self.num_mel_bins / self.patch_freq)
            }
            AudioFrontEnd::Yamnet => {
                crate::audio::yamnet::num_patches(self.num_frames, self.patch_hop)
            }
        }
    }

    /// Length of one audio token vector.
    pub fn token_dim(&self) -> usize {
        match self.front_end {
            AudioFrontEnd::Kaldi => self.patch_time * self.patch_freq,
            AudioFrontEnd::Yamnet => {
                crate::audio::yamnet::PATCH_FRAMES * crate::audio::yamnet::MEL_BANDS
            }
        }
    }

    pub fn validate(&self) -> Result<(), TokenizeError> {
        if self.front_end == AudioFrontEnd::Yamnet {
            use crate::audio::yamnet;
            if self.sample_rate != yamnet::SAMPLE_RATE {
                return Err(c(
                    "audio.sample_rate",
                    format!(
                        "the yamnet front end runs at {} Hz, got {}",
                        yamnet::SAMPLE_RATE,
                        self.sample_rate
                    ),
                ));
            }
            if self.num_frames < yamnet::PATCH_FRAMES {
                return Err(c(
                    "audio.num_frames",
                    format!(
                        "the yamnet front end needs at least one {}-frame patch, got {}",
                        yamnet::PATCH_FRAMES,
                        self.num_frames
                    ),
                ));
            }
            if self.patch_hop == 0 {
                return Err(c("audio.patch_hop", "must be at least 1 frame"));
            }
            return Ok(());
        }
        if self.sample_rate == 0 {
            return Err(c("audio.sample_rate", "must be positive"));
        }
        if !(self.frame_length_ms > 0.0 && self.frame_length_ms.is_finite()) {
            return Err(c("audio.frame_length_ms", "must be a positive number"));
        }
        if !(self.frame_shift_ms > 0.0 && self.frame_shift_ms.is_finite()) {
            return Err(c("audio.frame_shift_ms", "must be a positive number"));
        }
        if self.window_size() < 2 {
            return Err(c(
                "audio.frame_length_ms",
                "gives a window shorter than 2 samples",
            ));
        }
        if self.window_shift() == 0 {
            return Err(c("audio.frame_shift_ms", "gives a hop of 0 samples"));
        }
        if self.num_mel_bins < 3 {
            return Err(c("audio.num_mel_bins", "must be at least 3"));
        }
        let nyquist = self.sample_rate as f64 / 2.0;
        let high = if self.high_freq <= 0.0 {
            nyquist + self.high_freq
        } else {
            self.high_freq
        };
        if !(self.low_freq >= 0.0 && self.low_freq < high && high <= nyquist) {
            return Err(c(
                "audio.low_freq",
                format!(
                    "expected 0 <= low_freq ({}) < high_freq ({high}) <= Nyquist ({nyquist})",
                    self.low_freq
                ),
            ));
        }
        if !(0.0..1.0).contains(&self.preemphasis) {
            return Err(c("audio.preemphasis", "expected a value in [0, 1)"));
        }
        // Log-mel values are f32 and the log is taken in f32: the floor must be a normal f32.
        if !(self.log_floor >= f32::MIN_POSITIVE as f64 && self.log_floor <= f32::MAX as f64) {
            return Err(c(
                "audio.log_floor",
                "must be a positive number in f32's normal range (1.2e-38 to 3.4e38)",
            ));
        }
        if !self.norm_mean.is_finite() {
            return Err(c("audio.norm_mean", "must be finite"));
        }
        if !(self.norm_std > 0.0 && self.norm_std.is_finite()) {
            return Err(c("audio.norm_std", "must be a positive number"));
        }
        if self.patch_time == 0 {
            return Err(c("audio.patch_time", "must be positive"));
        }
        if self.patch_freq == 0 {
            return Err(c("audio.patch_freq", "must be positive"));
        }
        if self.num_frames == 0 || self.num_frames % self.patch_time != 0 {
            return Err(c(
                "audio.num_frames",
                format!(
                    "expected a positive multiple of patch_time ({}), got {}",
                    self.patch_time, self.num_frames
                ),
            ));
        }
        if self.num_mel_bins % self.patch_freq != 0 {
            return Err(c(
                "audio.patch_freq",
                format!(
                    "expected a divisor of num_mel_bins ({}), got {}",
                    self.num_mel_bins, self.patch_freq
                ),
            ));
        }
        Ok(())
    }
}

/// Frame preprocessing and patching.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct VideoConfig {
    pub layout: VideoLayout,
    /// Frames sampled uniformly over each window (`T`).
    pub num_frames: usize,
    /// The shorter side of each frame is resized to this (aspect ratio kept) ...
    pub resize_shorter: usize,
    /// ... then the centre `height x width` is cropped.
    pub height: usize,
    pub width: usize,
    /// Per-channel (R, G, B) normalisation of values scaled to [0, 1]: `(v - mean) / std`.
    pub mean: [f32; 3],
    pub std: [f32; 3],
    /// Square patch side in pixels (`P`).
    pub patch_size: usize,
    /// Frames per token (`t`); 1 = per-frame patches.
    pub tubelet: usize,
}

impl Default for VideoConfig {
    fn default() -> Self {
        VideoConfig {
            num_frames: 8,
            resize_shorter: 112,
            height: 112,
            width: 112,
            // ViT/MBT ImageNet-21k checkpoints normalise with 0.5 / 0.5.
            mean: [0.5, 0.5, 0.5],
            std: [0.5, 0.5, 0.5],
            patch_size: 16,
            tubelet: 2,
            layout: VideoLayout::Patches,
        }
    }
}

impl VideoConfig {
    pub fn token_count(&self) -> usize {
        match self.layout {
            VideoLayout::Patches => {
                (self.num_frames / self.tubelet)
                    * (self.height / self.patch_size)
                    * (self.width / self.patch_size)
            }
            VideoLayout::Frames => self.num_frames,
        }
    }

    pub fn token_dim(&self) -> usize {
        match self.layout {
            VideoLayout::Patches => self.tubelet * self.patch_size * self.patch_size * 3,
            VideoLayout::Frames => 3 * self.height * self.width,
        }
    }

    pub fn validate(&self) -> Result<(), TokenizeError> {
        if self.num_frames == 0 {
            return Err(c("video.num_frames", "must be positive"));
        }
        if self.layout == VideoLayout::Frames {
            if self.height == 0 || self.width == 0 {
                return Err(c("video.height", "height and width must be positive"));
            }
            return self.validate_resize_and_norm();
        }
        if self.tubelet == 0 || self.num_frames % self.tubelet != 0 {
            return Err(c(
                "video.tubelet",
                format!(
                    "expected a positive divisor of num_frames ({}), got {}",
                    self.num_frames, self.tubelet
                ),
            ));
        }
        if self.patch_size == 0 {
            return Err(c("video.patch_size", "must be positive"));
        }
        for (field, v) in [("video.height", self.height), ("video.width", self.width)] {
            if v == 0 || v % self.patch_size != 0 {
                return Err(c(
                    field,
                    format!(
                        "expected a positive multiple of patch_size ({}), got {v}",
                        self.patch_size
                    ),
                ));
            }
        }
        self.validate_resize_and_norm()
    }

    fn validate_resize_and_norm(&self) -> Result<(), TokenizeError> {
        if self.resize_shorter < self.height.max(self.width) {
            return Err(c(
                "video.resize_shorter",
                format!(
                    "expected at least max(height, width) = {}, got {}",
                    self.height.max(self.width),
                    self.resize_shorter
                ),
            ));
        }
        for ch in 0..3 {
            if !self.mean[ch].is_finite() {
                return Err(c("video.mean", "must be finite"));
            }
            if !(self.std[ch] > 0.0 && self.std[ch].is_finite()) {
                return Err(c("video.std", "must be positive"));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid_and_give_expected_token_counts() {
        let cfg = TokenizerConfig::default();
        cfg.validate().unwrap();
        assert_eq!(cfg.audio.window_size(), 400);
        assert_eq!(cfg.audio.window_shift(), 160);
        assert_eq!(cfg.audio.fft_size(), 512);
        // 2 s at 16 kHz: 1 + (32000 - 400) / 160 = 198 frames.
        assert_eq!(cfg.audio.frames_for(32_000), 198);
        assert_eq!(cfg.audio.frames_for(399), 0);
        assert_eq!(cfg.audio.token_count(), 13 * 8);
        assert_eq!(cfg.video.token_count(), 4 * 7 * 7);
        assert_eq!(cfg.video.token_dim(), 2 * 16 * 16 * 3);
    }

    #[test]
    fn invalid_values_name_the_field() {
        let mut a = AudioConfig {
            num_frames: 200,
            ..Default::default()
        };
        let e = a.validate().unwrap_err().to_string();
        assert!(e.contains("audio.num_frames"), "{e}");
        a = AudioConfig {
            patch_freq: 10,
            ..Default::default()
        };
        assert!(a
            .validate()
            .unwrap_err()
            .to_string()
            .contains("audio.patch_freq"));
        let v = VideoConfig {
            tubelet: 3,
            ..Default::default()
        };
        assert!(v
            .validate()
            .unwrap_err()
            .to_string()
            .contains("video.tubelet"));
        let v = VideoConfig {
            resize_shorter: 64,
            ..Default::default()
        };
        assert!(v
            .validate()
            .unwrap_err()
            .to_string()
            .contains("video.resize_shorter"));
    }

    #[test]
    fn unknown_fields_are_rejected() {
        let e =
            serde_json::from_str::<TokenizerConfig>(r#"{"audio": {"mel_bins": 64}}"#).unwrap_err();
        assert!(e.to_string().contains("mel_bins"), "{e}");
    }
}
