//! `mbt data import`: the user's own material as a data set `mbt train` reads, in the layout
//! `mbt data build` writes (`manifest.jsonl`, `train/`, `val/`, `test/` with a 16 kHz mono WAV
//! and a 16-frame 8 fps 112 x 112 Motion JPEG per 2 s clip, `summary.json`).
//!
//! * [`inputs`]: CSV files, label folders and `mbtd`'s evidence directories -> labelled items
//! * [`labels`]: what a label may look like and which labels a model allows
//! * [`windows`]: cutting a recording into windows and labelling them from time spans (pure)
//! * [`ffmpeg`]: decoding with the `ffmpeg`/`ffprobe` programs (why: see there)
//! * [`mix`]: audio-only and picture-only material rendered into scenes like the builder's
//!
//! The command itself, behind the door this file is (its arguments, [`run`], [`count_line`]):
//!
//! * `driver`: the command from start to end: checks, inputs, probes, splits, the three kinds
//!   of work below, then the manifest and the summary
//! * `split`: which split each source file goes to (seeded, stratified by label; pure)
//! * `clip`: writing one clip's WAV and Motion JPEG and its manifest line (every kind ends here)
//! * `video`: a video with sound cut into labelled windows
//! * `evidence`: an `mbtd` evidence event (key frame + the window's audio) as one still clip
//! * `media`: sound-only and picture-only files (and silent videos' stills) decoded for [`mix`]
//!
//! Splits are drawn per *source file* (a video, an evidence event, a sound or a picture file),
//! stratified by label and seeded, so windows of one recording never sit on both sides of an
//! evaluation. The output directory must be empty (or `--force`, which replaces only the data
//! set's own files), so an import never mixes into an older data set.

mod clip;
mod driver;
mod evidence;
pub mod ffmpeg;
pub mod inputs;
pub mod labels;
mod media;
pub mod mix;
mod split;
mod video;
pub mod windows;

use std::path::PathBuf;

use anyhow::Result;
use serde_json::Value;

use super::pool::Split;

/// What to do with a video that has no audio track.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum SilentVideos {
    /// Stop with an error naming the file.
    Refuse,
    /// Use stills of it (one every 2 s, at most 8) as pictures of its label, mixed into
    /// rendered scenes like picture files.
    Pictures,
}

/// `mbt data import`'s arguments (the command line).
#[derive(Debug, clap::Args)]
pub struct ImportArgs {
    /// CSV files (file,label[,start,end]; paths relative to the CSV) and directories (label
    /// folders DIR/<label>/..., and/or DIR/labels.csv, e.g. mbtd's evidence directory)
    #[arg(required = true, value_name = "CSV|DIR")]
    pub inputs: Vec<PathBuf>,
    /// Output directory; must be empty unless --force
    #[arg(long, value_name = "DIR")]
    pub out: PathBuf,
    /// Seconds between the starts of consecutive 2 s windows of a video
    #[arg(long, default_value_t = 1.0, value_name = "SECONDS")]
    pub hop: f64,
    /// Label for windows no start/end span touches (default: leave them out)
    #[arg(long, value_name = "LABEL")]
    pub background_label: Option<String>,
    /// Share of each label's source files held out for validation
    #[arg(long, default_value_t = 0.15)]
    pub val_fraction: f64,
    /// Share of each label's source files held out for testing
    #[arg(long, default_value_t = 0.15)]
    pub test_fraction: f64,
    /// Seed of the split and of the rendered scenes
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// The labels allowed (comma separated); others are refused unless in --add-labels
    #[arg(long, value_name = "A,B,C", conflicts_with = "model")]
    pub labels: Option<String>,
    /// Allow the labels this model's metadata lists (plus --add-labels)
    #[arg(long, value_name = "ONNX")]
    pub model: Option<PathBuf>,
    /// New labels allowed besides --labels / --model's (comma separated)
    #[arg(long, value_name = "A,B")]
    pub add_labels: Option<String>,
    /// Rendered clips per sound-only or picture-only file
    #[arg(long, default_value_t = 8, value_name = "N")]
    pub renders: usize,
    /// Square frame size of the clips, in pixels [default: the --model's tokenizer size,
    /// else 112]: a data set for a model trained on data v3 needs 224
    #[arg(long, value_name = "PX")]
    pub frame_size: Option<usize>,
    /// A video without an audio track: refuse it, or use stills of it as pictures
    #[arg(long, value_enum, default_value = "refuse")]
    pub silent_videos: SilentVideos,
    /// Source pool for rendering sound-only and picture-only files [default: data/pool.toml]
    #[arg(long, value_name = "TOML")]
    pub pool: Option<PathBuf>,
    /// Package cache that `mbt data fetch` filled [default: as for fetch]
    #[arg(long, value_name = "DIR")]
    pub cache: Option<PathBuf>,
    /// Replace the data set in a non-empty --out (manifest.jsonl, summary.json, the splits)
    #[arg(long)]
    pub force: bool,
}

/// `train 12 (dog 6, none 6), val 2 (...), test 2 (...)` from a summary.
pub fn count_line(summary: &Value) -> String {
    Split::ALL
        .iter()
        .map(|s| {
            let per = summary["counts"][s.name()].as_object();
            let total: u64 = per.map_or(0, |m| m.values().filter_map(Value::as_u64).sum());
            let parts: Vec<String> = per
                .map(|m| {
                    m.iter()
                        .filter(|(_, v)| v.as_u64() != Some(0))
                        .map(|(k, v)| format!("{k} {v}"))
                        .collect()
                })
                .unwrap_or_default();
            format!("{} {total} ({})", s.name(), parts.join(", "))
        })
        .collect::<Vec<_>>()
        .join(", ")
}

pub fn run(args: ImportArgs) -> Result<Value> {
    let fresh = std::fs::read_dir(&args.out).map_or(true, |mut d| d.next().is_none());
    let result = driver::import(&args);
    if result.is_err() && fresh {
        // Leave no half data set behind, so the next try needs no --force.
        for s in Split::ALL {
            let _ = std::fs::remove_dir_all(args.out.join(s.name()));
        }
        for f in ["manifest.jsonl", "summary.json"] {
            let _ = std::fs::remove_file(args.out.join(f));
        }
        let _ = std::fs::remove_dir(&args.out);
    }
    result
}
