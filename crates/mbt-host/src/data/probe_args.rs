//! The arguments of `mbt data probe` (run by `crate::probe`, which needs the trunks and the
//! feature cache; kept here so the data commands stay in one enum without `data` depending on
//! training code).

use std::path::PathBuf;

#[derive(Debug, clap::Args)]
pub struct ProbeArgs {
    /// A data set built by `mbt data build` (or `mbt data import`)
    #[arg(long, value_name = "DIR")]
    pub data: PathBuf,
    /// Model config naming the trunks and the tokenizer (frame size, frames per window)
    #[arg(long, value_name = "TOML", default_value = "configs/edge.toml")]
    pub config: PathBuf,
    /// Override a config key, as for `mbt train` (e.g. `trunks.video_pool=1`,
    /// `tokenizer.video.height=224`)
    #[arg(long = "set", value_name = "KEY=VALUE")]
    pub overrides: Vec<String>,
    /// Trunk ONNX files [default: models/trunks]
    #[arg(long, value_name = "DIR")]
    pub trunks: Option<PathBuf>,
    /// Training-split clips the probes are fitted on (the first N in manifest order)
    #[arg(long, default_value_t = 4000)]
    pub train_clips: usize,
    /// The split the probes are scored on (choose with `val`; keep `test` for the end)
    #[arg(long, default_value = "val")]
    pub split: String,
    /// Clips of the scored split (the first N)
    #[arg(long)]
    pub clips: Option<usize>,
    /// How a frame's video cells become one vector: `max` keeps a small object's cell,
    /// `mean` mixes it with the background
    #[arg(long, value_enum, default_value = "max")]
    pub cells: Pooling,
    /// Frames per 2 s window the video vector averages (evenly spaced, as the tokenizer
    /// samples them) [default: the config's tokenizer.video.num_frames]
    #[arg(long, value_name = "N")]
    pub frames: Option<usize>,
    /// L2 strength of the logistic regressions (on standardised features)
    #[arg(long, default_value_t = 1e-2)]
    pub lambda: f64,
    /// Gradient iterations per fit
    #[arg(long, default_value_t = 300)]
    pub iterations: usize,
    /// Write the figures as JSON here too
    #[arg(long, value_name = "FILE")]
    pub out: Option<PathBuf>,
}

/// Pooling over a frame's grid cells (and over the clip's frames, always the mean).
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Pooling {
    Mean,
    Max,
}
