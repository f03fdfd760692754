//! Loading TOML settings with `--set key=value` overrides, shared by every CLI that takes a
//! config file (`mbt` subcommands and `mbtd`).
//!
//! An override's key is a dotted path (`audio.num_frames`, `model.width`); its value is parsed
//! as a TOML value (`16`, `0.5`, `true`, `[1, 2]`, `"text"`), and taken as a plain string when
//! it is not one, so `--set source.device=hw:1,0` works without quoting. Unknown keys are caught
//! by the target type's `deny_unknown_fields`, with the key named.

use serde::de::DeserializeOwned;
use thiserror::Error;

#[derive(Debug, Error)]
pub enum SettingsError {
    #[error("{origin}: {message}")]
    Parse { origin: String, message: String },
    #[error("--set `{0}`: expected key=value")]
    BadOverride(String),
    #[error("--set `{key}`: `{prefix}` is not a table")]
    NotATable { key: String, prefix: String },
}

/// Applies one `key=value` override to a TOML table.
pub fn apply_override(root: &mut toml::Table, spec: &str) -> Result<(), SettingsError> {
    let (key, raw) = spec
        .split_once('=')
        .ok_or_else(|| SettingsError::BadOverride(spec.to_string()))?;
    let key = key.trim();
    if key.is_empty() || key.split('.').any(str::is_empty) {
        return Err(SettingsError::BadOverride(spec.to_string()));
    }
    let value = parse_value(raw.trim());
    let parts: Vec<&str> = key.split('.').collect();
    let mut table = root;
    for (i, part) in parts[..parts.len() - 1].iter().enumerate() {
        let entry = table
            .entry(part.to_string())
            .or_insert_with(|| toml::Value::Table(toml::Table::new()));
        table = entry
            .as_table_mut()
            .ok_or_else(|| SettingsError::NotATable {
                key: key.to_string(),
                prefix: parts[..=i].join("."),
            })?;
    }
    table.insert(parts[parts.len() - 1].to_string(), value);
    Ok(())
}

fn parse_value(raw: &str) -> toml::Value {
    match format!("v = {raw}").parse::<toml::Table>() {
        Ok(mut t) => t
            .remove("v")
            .unwrap_or_else(|| toml::Value::String(raw.to_string())),
        Err(_) => toml::Value::String(raw.to_string()),
    }
}

/// Parses `text` (from `origin`, used in errors), applies `overrides` in order, and
/// deserialises the result into `T`.
pub fn load<T: DeserializeOwned>(
    text: &str,
    origin: &str,
    overrides: &[String],
) -> Result<T, SettingsError> {
    let table = load_table(text, origin, overrides)?;
    from_table(table, &describe(origin, overrides))
}

/// Parses TOML text and applies `--set` overrides, without deserialising: for files that hold
/// several sections read by different types (a model config with a `[train]` table).
pub fn load_table(
    text: &str,
    origin: &str,
    overrides: &[String],
) -> Result<toml::Table, SettingsError> {
    let mut table: toml::Table =
        text.parse()
            .map_err(|e: toml::de::Error| SettingsError::Parse {
                origin: origin.to_string(),
                message: e.to_string(),
            })?;
    for o in overrides {
        apply_override(&mut table, o)?;
    }
    Ok(table)
}

/// Deserialises a table; errors name `origin` and the offending key.
pub fn from_table<T: DeserializeOwned>(
    table: toml::Table,
    origin: &str,
) -> Result<T, SettingsError> {
    T::deserialize(table).map_err(|e| SettingsError::Parse {
        origin: origin.to_string(),
        message: e.to_string(),
    })
}

/// How error messages name a file read with overrides.
pub fn describe(origin: &str, overrides: &[String]) -> String {
    if overrides.is_empty() {
        origin.to_string()
    } else {
        format!("{origin} (with --set overrides)")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::TokenizerConfig;

    #[test]
    fn overrides_apply_and_parse_types() {
        let cfg: TokenizerConfig = load(
            "[audio]\nnum_frames = 96\n",
            "t.toml",
            &[
                "audio.norm_std=3.5".into(),
                "video.mean=[0.1, 0.2, 0.3]".into(),
                "audio.num_frames=112".into(),
            ],
        )
        .unwrap();
        assert_eq!(cfg.audio.num_frames, 112);
        assert_eq!(cfg.audio.norm_std, 3.5);
        assert_eq!(cfg.video.mean, [0.1, 0.2, 0.3]);
    }

    #[test]
    fn unquoted_strings_stay_strings() {
        let mut t = toml::Table::new();
        apply_override(&mut t, "source.device=hw:1,0").unwrap();
        assert_eq!(t["source"]["device"].as_str(), Some("hw:1,0"));
    }

    #[test]
    fn errors_name_the_key_or_file() {
        let e = load::<TokenizerConfig>("", "t.toml", &["audio.bogus=1".into()])
            .unwrap_err()
            .to_string();
        assert!(e.contains("bogus") && e.contains("t.toml"), "{e}");
        let e = load::<TokenizerConfig>("audio = 3", "t.toml", &["audio.x=1".into()])
            .unwrap_err()
            .to_string();
        assert!(e.contains("`audio` is not a table"), "{e}");
        let e = load::<TokenizerConfig>("[audio", "bad.toml", &[])
            .unwrap_err()
            .to_string();
        assert!(e.starts_with("bad.toml:"), "{e}");
        assert!(load::<TokenizerConfig>("", "t", &["novalue".into()]).is_err());
        let e = load::<TokenizerConfig>("[audio]\nnum_frames = \"many\"", "t.toml", &[])
            .unwrap_err()
            .to_string();
        assert!(e.contains("num_frames") || e.contains("integer"), "{e}");
    }
}
