//! `mbtd`, the edge daemon: camera + microphone -> aligned windows -> the shared tokenizer ->
//! the MBT model (tract) -> debounced events -> sinks.
//!
//! This crate holds the daemon's configuration and (as it is built) its pipeline; everything
//! pure lives in `mbt-core` so the host tool shares it.

pub mod config;

pub use config::Config;

/// Loads the effective configuration: defaults, then `file` if given, then `overrides`.
pub fn load_config(file: Option<&std::path::Path>, overrides: &[String]) -> anyhow::Result<Config> {
    use anyhow::Context;
    let (text, origin) = match file {
        Some(p) => (
            std::fs::read_to_string(p)
                .with_context(|| format!("cannot read config {}", p.display()))?,
            p.display().to_string(),
        ),
        None => (String::new(), "built-in defaults".to_string()),
    };
    let cfg: Config = mbt_core::settings::load(&text, &origin, overrides)?;
    let origin = if overrides.is_empty() {
        origin
    } else {
        format!("{origin} with --set overrides")
    };
    cfg.validate().with_context(|| format!("in {origin}"))?;
    Ok(cfg)
}
