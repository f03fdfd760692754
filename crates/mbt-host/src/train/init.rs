//! Where personalisation starts (`mbt train --init MODEL.onnx|CHECKPOINT`): the initial
//! model, the labels a user adds to it, and the version and thresholds its successor carries.
//!
//! A user on a board has the exported file (`models/edge.onnx`), not a training checkpoint, so
//! an `.onnx` file is read back with `mbt_model::export::read` (config, labels, tokenizer and
//! thresholds from its metadata, the fusion part's weights from its initializers; the trunks
//! stay where they are, frozen). A checkpoint (`.bpk`, or a run directory) from `mbt train`
//! works too, with its run's `config.toml`; a personalised run records its version and
//! thresholds in `run.json`, so personalising a personalised model continues the numbering.

use std::collections::BTreeMap;
use std::path::Path;

use anyhow::{bail, Context};
use burn::prelude::*;
use mbt_model::{Mbt, ModelConfig};

/// The model personalisation starts from.
pub struct Initial {
    /// Its config, with its own (old) labels.
    pub config: ModelConfig,
    /// The fusion part's weights (plain CPU device).
    pub model: Mbt,
    pub version: String,
    /// Its per-label event thresholds (`mbt.thresholds`), empty if it has none.
    pub thresholds: BTreeMap<String, f32>,
    pub training_data_hash: String,
}

/// Reads `path`: an exported `.onnx` file or a checkpoint (`.bpk` or a run directory).
pub fn load(path: &Path) -> anyhow::Result<Initial> {
    if path.extension().is_some_and(|e| e == "onnx") {
        let bytes =
            std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))?;
        let loaded =
            mbt_model::export::read::read(&bytes, &path.display().to_string(), &Device::flex())?;
        if loaded.config.trunks.audio.is_none() || loaded.config.trunks.video.is_none() {
            bail!(
                "{}: personalisation trains the fusion part on cached trunk features, and this model has no pretrained trunks ([trunks] audio and video)",
                path.display()
            );
        }
        return Ok(Initial {
            config: loaded.config,
            model: loaded.model,
            version: loaded.metadata.model_version,
            thresholds: loaded.metadata.thresholds,
            training_data_hash: loaded.metadata.training_data_hash,
        });
    }
    let weights = super::eval::checkpoint_weights(path)?;
    let config = super::eval::checkpoint_config(&weights, None)?;
    if config.trunks.audio.is_none() || config.trunks.video.is_none() {
        bail!(
            "{}: personalisation trains the fusion part on cached trunk features, and this checkpoint's model has no pretrained trunks",
            weights.display()
        );
    }
    let model = mbt_model::train::load_model(&config, &weights)
        .with_context(|| format!("loading {}", weights.display()))?;
    // A run directory's run.json: the data hash, and for a personalised run its version and
    // thresholds.
    let run_json = weights
        .ancestors()
        .skip(1)
        .take(2)
        .map(|d| d.join("run.json"))
        .find(|p| p.exists());
    let info: serde_json::Value = match &run_json {
        Some(p) => std::fs::read_to_string(p)
            .ok()
            .and_then(|t| serde_json::from_str(&t).ok())
            .unwrap_or_default(),
        None => serde_json::Value::Null,
    };
    let thresholds = match info.get("thresholds") {
        Some(t) => serde_json::from_value(t.clone()).with_context(|| {
            format!(
                "{}: `thresholds` is not an object label -> number",
                run_json.as_deref().unwrap_or(path).display()
            )
        })?,
        None => BTreeMap::new(),
    };
    Ok(Initial {
        version: info["model_version"]
            .as_str()
            .map(str::to_string)
            .unwrap_or_else(|| format!("checkpoint {}", weights.display())),
        training_data_hash: info["data_manifest_sha256"]
            .as_str()
            .map(|h| format!("sha256:{h} (manifest.jsonl)"))
            .unwrap_or_else(|| "unknown".into()),
        config,
        model,
        thresholds,
    })
}

/// Checks labels to add against the model's `old` ones: each must be a new name made of
/// `a-z`, `0-9` and `_` (it becomes an MQTT topic level, a Home Assistant entity id and a
/// config key), given once.
pub fn check_new_labels(old: &[String], add: &[String]) -> anyhow::Result<()> {
    for (i, l) in add.iter().enumerate() {
        if l.is_empty()
            || !l
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
        {
            bail!(
                "--add-labels: `{l}` is not a label name: use only a-z, 0-9 and _ (it becomes an MQTT topic and a config key), e.g. `{}`",
                suggest(l)
            );
        }
        if old.contains(l) {
            bail!("--add-labels: `{l}` is already one of the model's labels {old:?}");
        }
        if add[..i].contains(l) {
            bail!("--add-labels: `{l}` is given twice");
        }
    }
    Ok(())
}

/// A label name close to `l` that passes [`check_new_labels`] (for the error message).
fn suggest(l: &str) -> String {
    let s: String = l
        .to_lowercase()
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
        .collect();
    let s = s.trim_matches('_').to_string();
    if s.is_empty() {
        "my_label".into()
    } else {
        s
    }
}

/// The version of a model personalised from one of version `v`: `<v>+personal.1`, or the
/// next number when `v` already is a personalised version (`edge-0.2.0+personal.3` ->
/// `edge-0.2.0+personal.4`); a `v` with other build metadata gets `.personal.1` appended.
pub fn next_version(v: &str) -> String {
    if let Some((base, n)) = v.rsplit_once("personal.") {
        if let Ok(n) = n.parse::<u64>() {
            return format!("{base}personal.{}", n + 1);
        }
    }
    if v.contains('+') {
        format!("{v}.personal.1")
    } else {
        format!("{v}+personal.1")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_count_up() {
        assert_eq!(next_version("edge-0.2.0"), "edge-0.2.0+personal.1");
        assert_eq!(
            next_version("edge-0.2.0+personal.1"),
            "edge-0.2.0+personal.2"
        );
        assert_eq!(
            next_version("edge-0.2.0+personal.41"),
            "edge-0.2.0+personal.42"
        );
        assert_eq!(
            next_version("edge-0.1.0+ab12"),
            "edge-0.1.0+ab12.personal.1"
        );
    }

    #[test]
    fn label_names_are_checked() {
        let old = vec!["dog_barking".to_string(), "none".to_string()];
        let ok = |a: &[&str]| {
            check_new_labels(&old, &a.iter().map(|s| s.to_string()).collect::<Vec<_>>())
        };
        assert!(ok(&["sheep", "cow_2"]).is_ok());
        for (bad, says) in [
            (&["Sheep"][..], "a-z, 0-9 and _"),
            (&["sheep bleating"][..], "sheep_bleating"),
            (&["schäfchen"][..], "a-z"),
            (&[""][..], "a-z"),
            (&["dog_barking"][..], "already"),
            (&["cow", "cow"][..], "twice"),
        ] {
            let e = ok(bad).unwrap_err().to_string();
            assert!(e.contains(says), "{bad:?}: {e}");
        }
    }
}
