//! What an exported model file carries in its ONNX `metadata_props`, so it is self-describing:
//! the daemon tokenizes with exactly the parameters the model was trained with, and refuses a
//! file whose metadata it cannot honour.
//!
//! Keys (all values are strings, as ONNX requires):
//!
//! | key                      | value                                                    |
//! |--------------------------|----------------------------------------------------------|
//! | `mbt.format`             | metadata format version, currently `1`                   |
//! | `mbt.model_version`      | free text, e.g. `edge-0.1.0+<git sha>`                   |
//! | `mbt.labels`             | JSON array of class names, in logit order                |
//! | `mbt.tokenizer`          | JSON of [`TokenizerConfig`]                              |
//! | `mbt.model_config`       | the model config (TOML text), for provenance             |
//! | `mbt.training_data_hash` | hash of the training manifest, or `none` for random init |
//! | `mbt.thresholds`         | optional: JSON object label -> event threshold, tuned on the validation split |
//! | `mbt.trunks`             | optional: JSON array of the pretrained trunks composed into the graph (name, file sha256, package, licence) |

use serde::{Deserialize, Serialize};
use thiserror::Error;

use crate::config::TokenizerConfig;

pub const FORMAT_VERSION: u32 = 1;

pub const KEY_FORMAT: &str = "mbt.format";
pub const KEY_MODEL_VERSION: &str = "mbt.model_version";
pub const KEY_LABELS: &str = "mbt.labels";
pub const KEY_TOKENIZER: &str = "mbt.tokenizer";
pub const KEY_MODEL_CONFIG: &str = "mbt.model_config";
pub const KEY_TRAINING_DATA_HASH: &str = "mbt.training_data_hash";
pub const KEY_TRUNKS: &str = "mbt.trunks";
pub const KEY_THRESHOLDS: &str = "mbt.thresholds";

#[derive(Debug, Error, PartialEq)]
pub enum MetadataError {
    #[error("model metadata lacks `{0}`: is this file exported by `mbt export`?")]
    Missing(&'static str),
    #[error("model metadata `{key}` is invalid: {reason}")]
    Invalid { key: &'static str, reason: String },
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ModelMetadata {
    pub model_version: String,
    pub labels: Vec<String>,
    pub tokenizer: TokenizerConfig,
    pub model_config: String,
    pub training_data_hash: String,
    /// Provenance of the pretrained trunks inside the graph (JSON array text); empty for a
    /// model without trunks.
    pub trunks: String,
    /// Event thresholds per label the model was tuned for (on its validation split); the
    /// daemon uses them where the user's config sets no threshold for the label.
    pub thresholds: std::collections::BTreeMap<String, f32>,
}

impl ModelMetadata {
    /// The `(key, value)` pairs to store in `metadata_props`.
    pub fn to_props(&self) -> Vec<(String, String)> {
        let mut props = vec![
            (KEY_FORMAT.into(), FORMAT_VERSION.to_string()),
            (KEY_MODEL_VERSION.into(), self.model_version.clone()),
            (KEY_LABELS.into(), to_json(&self.labels)),
            (KEY_TOKENIZER.into(), to_json(&self.tokenizer)),
            (KEY_MODEL_CONFIG.into(), self.model_config.clone()),
            (
                KEY_TRAINING_DATA_HASH.into(),
                self.training_data_hash.clone(),
            ),
        ];
        if !self.trunks.is_empty() {
            props.push((KEY_TRUNKS.into(), self.trunks.clone()));
        }
        if !self.thresholds.is_empty() {
            props.push((KEY_THRESHOLDS.into(), to_json(&self.thresholds)));
        }
        props
    }

    /// Parses and validates `metadata_props`. Every error names the key.
    pub fn from_props<'a>(
        props: impl IntoIterator<Item = (&'a str, &'a str)>,
    ) -> Result<Self, MetadataError> {
        let props: Vec<(&str, &str)> = props.into_iter().collect();
        let get = |key: &'static str| {
            props
                .iter()
                .find(|(k, _)| *k == key)
                .map(|(_, v)| *v)
                .ok_or(MetadataError::Missing(key))
        };
        let invalid = |key: &'static str, reason: String| MetadataError::Invalid { key, reason };

        let format = get(KEY_FORMAT)?;
        if format.trim() != FORMAT_VERSION.to_string() {
            return Err(invalid(KEY_FORMAT, format!("expected {FORMAT_VERSION}, got `{format}`: this mbtd is too old or too new for the file")));
        }
        let labels: Vec<String> = serde_json::from_str(get(KEY_LABELS)?)
            .map_err(|e| invalid(KEY_LABELS, format!("expected a JSON array of strings: {e}")))?;
        if labels.is_empty() {
            return Err(invalid(KEY_LABELS, "expected at least one label".into()));
        }
        if let Some(dup) = labels
            .iter()
            .enumerate()
            .find(|(i, l)| labels[..*i].contains(l))
        {
            return Err(invalid(
                KEY_LABELS,
                format!("label `{}` appears twice", dup.1),
            ));
        }
        let tokenizer: TokenizerConfig =
            serde_json::from_str(get(KEY_TOKENIZER)?).map_err(|e| {
                invalid(
                    KEY_TOKENIZER,
                    format!("expected the tokenizer settings as JSON: {e}"),
                )
            })?;
        tokenizer
            .validate()
            .map_err(|e| invalid(KEY_TOKENIZER, e.to_string()))?;
        let thresholds: std::collections::BTreeMap<String, f32> = match get(KEY_THRESHOLDS) {
            Ok(text) => serde_json::from_str(text).map_err(|e| {
                invalid(
                    KEY_THRESHOLDS,
                    format!("expected a JSON object of label -> number: {e}"),
                )
            })?,
            Err(_) => Default::default(),
        };
        if let Some((l, t)) = thresholds
            .iter()
            .find(|(l, t)| !(labels.contains(l) && **t > 0.0 && **t <= 1.0))
        {
            return Err(invalid(
                KEY_THRESHOLDS,
                format!("`{l}` = {t}: expected one of the model's labels and 0 < threshold <= 1"),
            ));
        }
        Ok(ModelMetadata {
            model_version: get(KEY_MODEL_VERSION)?.to_string(),
            labels,
            tokenizer,
            model_config: get(KEY_MODEL_CONFIG)?.to_string(),
            training_data_hash: get(KEY_TRAINING_DATA_HASH)?.to_string(),
            trunks: get(KEY_TRUNKS).unwrap_or_default().to_string(),
            thresholds,
        })
    }
}

/// Serialises plain data (strings, numbers, arrays), which cannot fail.
fn to_json<T: Serialize>(v: &T) -> String {
    serde_json::to_string(v).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> ModelMetadata {
        ModelMetadata {
            model_version: "edge-test".into(),
            labels: vec!["dog_barking".into(), "none".into()],
            tokenizer: TokenizerConfig::default(),
            model_config: "width = 192\n".into(),
            training_data_hash: "none".into(),
            trunks: String::new(),
            thresholds: Default::default(),
        }
    }

    fn parse(props: &[(String, String)]) -> Result<ModelMetadata, MetadataError> {
        ModelMetadata::from_props(props.iter().map(|(k, v)| (k.as_str(), v.as_str())))
    }

    #[test]
    fn round_trip() {
        assert_eq!(parse(&sample().to_props()).unwrap(), sample());
    }

    #[test]
    fn missing_and_invalid_keys_are_named() {
        let mut props = sample().to_props();
        props.retain(|(k, _)| k != KEY_LABELS);
        assert_eq!(parse(&props), Err(MetadataError::Missing(KEY_LABELS)));

        let mut props = sample().to_props();
        props
            .iter_mut()
            .filter(|(k, _)| k == KEY_TOKENIZER)
            .for_each(|(_, v)| *v = r#"{"audio": {"num_frames": 7}}"#.into());
        let e = parse(&props).unwrap_err().to_string();
        assert!(
            e.contains("mbt.tokenizer") && e.contains("audio.num_frames"),
            "{e}"
        );

        let mut props = sample().to_props();
        props
            .iter_mut()
            .filter(|(k, _)| k == KEY_FORMAT)
            .for_each(|(_, v)| *v = "2".into());
        assert!(parse(&props)
            .unwrap_err()
            .to_string()
            .contains("mbt.format"));

        let mut props = sample().to_props();
        props
            .iter_mut()
            .filter(|(k, _)| k == KEY_LABELS)
            .for_each(|(_, v)| *v = r#"["a", "a"]"#.into());
        assert!(parse(&props).unwrap_err().to_string().contains("twice"));
    }
}
