//! `mbt data`: the AVE-Intersect audio-visual event data set, built from Debian packages only.
//!
//! * [`manifest`]: the committed, pinned list of packages and source files (`data/packages.toml`)
//! * [`fetch`]: download (`apt-get download`), sha256 check, extraction of the media
//! * [`spec`]: the latent scene and its label logic (pure); [`ceiling`]: Monte-Carlo ceilings
//! * [`sources`], [`dsp`], [`render`], [`build`]: decoding, augmentation, rendering, output
//!
//! See DATA.md for the data card.

pub mod build;
pub mod ceiling;
pub mod demo;
pub mod dsp;
pub mod fetch;
pub mod manifest;
pub mod render;
pub mod rng;
pub mod sources;
pub mod spec;

use std::path::PathBuf;

use anyhow::{Context, Result};
use clap::Subcommand;

#[derive(Debug, Subcommand)]
pub enum DataCmd {
    /// Download the pinned packages (apt-get download), check sha256, extract the media
    Fetch {
        /// Cache directory [default: $XDG_CACHE_HOME/mbt-edge/packages or ~/.cache/mbt-edge/packages]
        #[arg(long, value_name = "DIR")]
        cache: Option<PathBuf>,
        /// Source manifest [default: data/packages.toml of this checkout]
        #[arg(long, value_name = "TOML")]
        manifest: Option<PathBuf>,
    },
    /// Render the AVE-Intersect clips (WAV + Y4M) and manifest.jsonl into a directory
    Build {
        /// Generator seed: the same seed and sources give byte-identical files
        #[arg(long, default_value_t = 0)]
        seed: u64,
        /// Output directory (train/, val/, test/, manifest.jsonl, summary.json)
        #[arg(long, value_name = "DIR")]
        out: PathBuf,
        /// Clips in the train split
        #[arg(long, default_value_t = 6000)]
        train: usize,
        /// Clips in the validation split
        #[arg(long, default_value_t = 1000)]
        val: usize,
        /// Clips in the test split
        #[arg(long, default_value_t = 2000)]
        test: usize,
        /// Package cache that `mbt data fetch` filled [default: as for fetch]
        #[arg(long, value_name = "DIR")]
        cache: Option<PathBuf>,
        /// Source manifest [default: data/packages.toml of this checkout]
        #[arg(long, value_name = "TOML")]
        manifest: Option<PathBuf>,
    },
    /// Monte-Carlo ceilings of perfect audio-only, video-only and joint classifiers
    Ceiling {
        /// Scenes to fit and (as many again) to score
        #[arg(long, default_value_t = 200_000)]
        samples: usize,
        /// Seed of the Monte-Carlo scenes
        #[arg(long, default_value_t = 0)]
        seed: u64,
        /// Where to save the result (JSON)
        #[arg(long, value_name = "FILE", default_value = "ceiling.json")]
        out: PathBuf,
    },
    /// Render the demo recording (models/demo) from permissively licensed pool files
    Demo {
        /// Output directory (audio.wav, frames/, timeline.json)
        #[arg(long, value_name = "DIR", default_value = "models/demo")]
        out: PathBuf,
        /// Package cache that `mbt data fetch` filled [default: as for fetch]
        #[arg(long, value_name = "DIR")]
        cache: Option<PathBuf>,
    },
}

fn manifest_of(path: Option<PathBuf>) -> Result<manifest::Manifest> {
    manifest::Manifest::load(&path.unwrap_or_else(manifest::default_path))
}

fn cache_of(cache: Option<PathBuf>) -> Result<PathBuf> {
    match cache {
        Some(c) => Ok(c),
        None => fetch::default_cache(),
    }
}

pub fn run(cmd: DataCmd) -> Result<()> {
    match cmd {
        DataCmd::Fetch { cache, manifest } => {
            let m = manifest_of(manifest)?;
            let cache = cache_of(cache)?;
            for (name, o) in fetch::fetch_all(&m, &cache, &fetch::AptGet)? {
                let what = match o {
                    fetch::Outcome::Cached => "cached",
                    fetch::Outcome::Extracted { downloaded: true } => {
                        "downloaded, verified, extracted"
                    }
                    fetch::Outcome::Extracted { downloaded: false } => "verified, extracted",
                };
                println!("{name}: {what}");
            }
            println!("media in {}", cache.join("media").display());
            Ok(())
        }
        DataCmd::Build {
            seed,
            out,
            train,
            val,
            test,
            cache,
            manifest,
        } => {
            let m = manifest_of(manifest)?;
            let cache = cache_of(cache)?;
            let summary = build::build(
                &m,
                &cache,
                &build::BuildArgs {
                    seed,
                    out: &out,
                    counts: [train, val, test],
                },
            )?;
            println!("{}", serde_json::to_string_pretty(&summary)?);
            Ok(())
        }
        DataCmd::Ceiling { samples, seed, out } => {
            anyhow::ensure!(samples > 0, "--samples must be positive");
            let c = ceiling::estimate(samples, seed);
            let text = serde_json::to_string_pretty(&c)? + "\n";
            print!("{text}");
            std::fs::write(&out, &text)
                .with_context(|| format!("cannot write {}", out.display()))?;
            Ok(())
        }
        DataCmd::Demo { out, cache } => {
            demo::demo(&cache_of(cache)?, &out)?;
            println!("demo written to {}", out.display());
            Ok(())
        }
    }
}
