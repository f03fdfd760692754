//! The command line, in one place so `mbt --help` reads as the tool's table of contents.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

#[derive(Debug, Parser)]
#[command(
    name = "mbt",
    version,
    about = "mbt-edge host tool: data, training, evaluation, ONNX export, benchmarks and tokenizer debugging"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the shared tokenizer on a file and write what the model would see (.npy)
    #[command(subcommand)]
    Tokenize(TokenizeCmd),
    /// Fetch source packages, build the AVE-Intersect data set, estimate its ceilings
    Data(Pending),
    /// Train an MBT model
    Train(Pending),
    /// Evaluate a checkpoint or an exported ONNX model
    Eval(Pending),
    /// Export a model to ONNX (fp32 / int8) with its metadata
    Export(Pending),
    /// Run an exported model on tokenized inputs and print the logits as JSON
    Infer(Pending),
    /// Model statistics: parameters and multiply-accumulates per part
    Model(Pending),
    /// Benchmarks (tokenizer, runtimes, fusion variants)
    Bench(Pending),
    /// Listen for postcard event frames and print them
    Events(Pending),
    /// Draw per-label scores over a clip with ground truth and emitted events
    Timeline(Pending),
}

/// Placeholder arguments for subcommands that later work fills in.
#[derive(Debug, Args)]
pub struct Pending {
    #[arg(trailing_var_arg = true, allow_hyphen_values = true, hide = true)]
    pub args: Vec<String>,
}

/// Tokenizer settings shared by both `tokenize` subcommands.
#[derive(Debug, Args)]
pub struct TokenizerArgs {
    /// Tokenizer settings (TOML with [audio] and [video] tables); defaults are the edge model's
    #[arg(long, value_name = "TOML")]
    pub tokenizer: Option<PathBuf>,
    /// Override one setting, e.g. --set audio.num_frames=1024 (repeatable)
    #[arg(long = "set", value_name = "KEY=VALUE")]
    pub overrides: Vec<String>,
}

#[derive(Debug, Subcommand)]
pub enum TokenizeCmd {
    /// WAV (8/16/24/32-bit PCM or float, any channel count, 8-96 kHz) -> log-mel, float32 [frames, 128]
    Audio {
        /// Input WAV file
        input: PathBuf,
        /// Output .npy file
        #[arg(long)]
        out: PathBuf,
        /// Write the log-mel before normalisation (what torchaudio's kaldi.fbank returns)
        #[arg(long)]
        raw: bool,
        /// Pad or crop to the model's frame count (audio.num_frames)
        #[arg(long, conflicts_with = "raw")]
        fixed: bool,
        /// Write the model's audio tokens [tokens, patch_time * patch_freq] instead (implies --fixed)
        #[arg(long, conflicts_with = "raw")]
        patches: bool,
        #[command(flatten)]
        settings: TokenizerArgs,
    },
    /// Image, directory of images or .y4m -> video tokens, float32 [tokens, tubelet * P * P * 3]
    Video {
        /// A PNG/JPEG file, a directory of them (name order), or a .y4m file
        input: PathBuf,
        /// Output .npy file
        #[arg(long)]
        out: PathBuf,
        #[command(flatten)]
        settings: TokenizerArgs,
    },
}
