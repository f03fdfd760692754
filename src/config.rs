//! The daemon's one TOML configuration, with documented defaults.
//!
//! `mbtd --print-config` prints the effective configuration (defaults, then the file, then
//! `--set` overrides), so what runs is never a guess. Unknown keys are errors naming the key:
//! a typo must not silently fall back to a default.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    pub model: ModelConfig,
    pub window: WindowConfig,
    pub audio: AudioSourceConfig,
    pub video: VideoSourceConfig,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ModelConfig {
    /// Exported ONNX model; its metadata carries the tokenizer settings and labels.
    pub path: PathBuf,
    /// Inference backend: "auto" (best present, CPU fallback), "cpu", "cuda" or "ort".
    pub backend: String,
}

impl Default for ModelConfig {
    fn default() -> Self {
        ModelConfig {
            path: PathBuf::from("models/edge.onnx"),
            backend: "auto".into(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct WindowConfig {
    /// Window length in seconds (the model's input span).
    pub length_s: f64,
    /// Hop between window starts in seconds.
    pub hop_s: f64,
}

impl Default for WindowConfig {
    fn default() -> Self {
        WindowConfig {
            length_s: 2.0,
            hop_s: 1.0,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AudioSourceConfig {
    /// "alsa", "replay", "synthetic" or "none".
    pub source: String,
    /// ALSA PCM name (e.g. "default", "hw:1,0", "plughw:CARD=Mic").
    pub device: String,
}

impl Default for AudioSourceConfig {
    fn default() -> Self {
        AudioSourceConfig {
            source: "alsa".into(),
            device: "default".into(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct VideoSourceConfig {
    /// "v4l2", "replay", "synthetic" or "none".
    pub source: String,
    /// V4L2 device node.
    pub device: PathBuf,
    pub width: u32,
    pub height: u32,
    pub fps: u32,
}

impl Default for VideoSourceConfig {
    fn default() -> Self {
        VideoSourceConfig {
            source: "v4l2".into(),
            device: PathBuf::from("/dev/video0"),
            width: 640,
            height: 480,
            fps: 15,
        }
    }
}

#[derive(Debug, thiserror::Error)]
#[error("invalid setting `{field}`: {reason}")]
pub struct ConfigError {
    pub field: &'static str,
    pub reason: String,
}

impl Config {
    pub fn validate(&self) -> Result<(), ConfigError> {
        let err = |field, reason: &str| {
            Err(ConfigError {
                field,
                reason: reason.to_string(),
            })
        };
        if !["auto", "cpu", "cuda", "ort"].contains(&self.model.backend.as_str()) {
            return err("model.backend", "expected one of auto, cpu, cuda, ort");
        }
        if !(self.window.length_s > 0.0 && self.window.length_s.is_finite()) {
            return err("window.length_s", "expected a positive number of seconds");
        }
        if !(self.window.hop_s > 0.0 && self.window.hop_s <= self.window.length_s) {
            return err("window.hop_s", "expected 0 < hop_s <= length_s");
        }
        if !["alsa", "replay", "synthetic", "none"].contains(&self.audio.source.as_str()) {
            return err(
                "audio.source",
                "expected one of alsa, replay, synthetic, none",
            );
        }
        if !["v4l2", "replay", "synthetic", "none"].contains(&self.video.source.as_str()) {
            return err(
                "video.source",
                "expected one of v4l2, replay, synthetic, none",
            );
        }
        if self.audio.source == "none" && self.video.source == "none" {
            return err("audio.source", "audio and video cannot both be none");
        }
        if self.video.width == 0 || self.video.height == 0 || self.video.fps == 0 {
            return err("video.width", "width, height and fps must be positive");
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_validate_and_print_round_trip() {
        let c = Config::default();
        c.validate().unwrap();
        let text = toml::to_string_pretty(&c).unwrap();
        let back: Config = mbt_core::settings::load(&text, "printed", &[]).unwrap();
        assert_eq!(back, c);
    }

    #[test]
    fn errors_name_the_field() {
        let c: Config = mbt_core::settings::load("", "t", &["model.backend=tpu".into()]).unwrap();
        assert_eq!(c.validate().unwrap_err().field, "model.backend");
        let c: Config =
            mbt_core::settings::load("[window]\nlength_s = 2.0\nhop_s = 3.0\n", "t", &[]).unwrap();
        assert_eq!(c.validate().unwrap_err().field, "window.hop_s");
        let e = mbt_core::settings::load::<Config>("[window]\nlenght_s = 2.0\n", "mbtd.toml", &[])
            .unwrap_err()
            .to_string();
        assert!(e.contains("lenght_s") && e.contains("mbtd.toml"), "{e}");
    }
}
