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
    #[command(subcommand)]
    Data(crate::data::DataCmd),
    /// Train an MBT model on a data set made by `mbt data build`
    Train(TrainCli),
    /// Evaluate a checkpoint or an exported ONNX model on a data set split
    Eval(EvalCli),
    /// Export a model to ONNX with its metadata (tokenizer settings, labels, config, version)
    Export(ExportArgs),
    /// Run an exported model on tokenized inputs and print the logits as JSON
    Infer(InferArgs),
    /// Model statistics: parameters and multiply-accumulates per part
    #[command(subcommand)]
    Model(ModelCmd),
    /// Benchmarks (runtime latency; the tokenizer's are criterion benches, see BENCHMARKS.md)
    #[command(subcommand)]
    Bench(BenchCmd),
    /// Postcard event frames: `mbt events listen --unix PATH | --udp ADDR` prints them as JSON
    #[command(subcommand)]
    Events(crate::events::EventsCmd),
    /// Draw per-label scores over a clip with ground truth and emitted events (runs mbtd)
    Timeline(TimelineCli),
}

#[derive(Debug, Args)]
pub struct TrainCli {
    /// Model config with its [train] table (e.g. configs/edge.toml); not needed with --resume
    /// or --init
    #[arg(long, value_name = "TOML", required_unless_present_any = ["resume", "init"])]
    pub config: Option<PathBuf>,
    /// Override one setting, e.g. --set train.epochs=5 --set fusion_layer=2 (repeatable)
    #[arg(long = "set", value_name = "KEY=VALUE")]
    pub overrides: Vec<String>,
    /// Data set directory (manifest.jsonl, train/, val/)
    #[arg(long, value_name = "DIR")]
    pub data: PathBuf,
    /// Run directory: config, checkpoints, metrics, plots
    #[arg(long, value_name = "RUN")]
    pub out: PathBuf,
    /// Continue the run in --out from its last checkpoint, exactly in schedule
    #[arg(long)]
    pub resume: bool,
    /// Seed of the initialisation, the clip order, augmentation and stochastic depth
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Use only the first N training clips (smoke tests)
    #[arg(long, value_name = "N")]
    pub limit_train: Option<usize>,
    /// Use only the first N validation clips
    #[arg(long, value_name = "N")]
    pub limit_val: Option<usize>,
    /// Stop (with a checkpoint) after N optimisation steps; prints the throughput
    #[arg(long, value_name = "N")]
    pub max_steps: Option<usize>,
    /// Source media for `train.fresh_renders` [default: `mbt data fetch`'s cache]
    #[arg(long, value_name = "DIR")]
    pub cache: Option<PathBuf>,
    /// Source pool for `train.fresh_renders` [default: data/pool.toml of this checkout]
    #[arg(long, visible_alias = "manifest", value_name = "FILE")]
    pub pool: Option<PathBuf>,
    /// Directory of the pretrained trunk files for a config with `[trunks]` [default: the
    /// checkout's models/trunks]
    #[arg(long, value_name = "DIR")]
    pub trunks: Option<PathBuf>,
    #[command(flatten)]
    pub personalise: PersonaliseCli,
}

/// Personalisation: `mbt train --init MODEL --data DIR [--add-labels a,b]` fine-tunes an
/// existing model's fusion part and heads on a user's clips (trunks frozen).
#[derive(Debug, Args)]
pub struct PersonaliseCli {
    /// Start from this model: an exported .onnx (e.g. models/edge.onnx) or a checkpoint (.bpk
    /// or a run directory); its config, labels and tokenizer are kept (--set changes train.*
    /// only). Writes RUN/model.onnx, RUN/best.bpk and RUN/personalise.json
    #[arg(long, value_name = "MODEL", conflicts_with_all = ["config", "resume"])]
    pub init: Option<PathBuf>,
    /// Labels to add (a-z, 0-9, _), appended after the model's own, e.g. --add-labels sheep,cow
    #[arg(long, value_name = "A,B", value_delimiter = ',', requires = "init")]
    pub add_labels: Vec<String>,
    /// A standard data set to measure forgetting on (its split's top-1 before and after)
    #[arg(long, value_name = "DIR", requires = "init")]
    pub forgetting_data: Option<PathBuf>,
    /// Split of --forgetting-data
    #[arg(long, default_value = "test", requires = "forgetting_data")]
    pub forgetting_split: String,
    /// Clips of that split used (its first N: a fixed subset)
    #[arg(
        long,
        value_name = "N",
        default_value_t = 600,
        requires = "forgetting_data"
    )]
    pub forgetting_limit: usize,
    /// Standard clips mixed into every batch against forgetting: a replay set file (`mbt
    /// model replay`) or a data set directory (its first --replay-limit training clips).
    /// Default: the set shipped beside the model (models/edge.replay for models/edge.onnx,
    /// RUN/model.replay for a run), when there is one
    #[arg(
        long,
        value_name = "FILE|DIR",
        requires = "init",
        conflicts_with = "no_replay"
    )]
    pub replay: Option<PathBuf>,
    /// Clips of a --replay data set used (its first N training clips)
    #[arg(long, value_name = "N", default_value_t = 512, requires = "replay")]
    pub replay_limit: usize,
    /// Train on the user's clips alone, even where a replay set ships beside the model
    #[arg(long, requires = "init")]
    pub no_replay: bool,
    /// Event threshold written into the model for each added label (the old labels keep theirs)
    #[arg(long, value_name = "T", default_value_t = 0.5, requires = "init")]
    pub new_label_threshold: f32,
}

#[derive(Debug, Args)]
pub struct TimelineCli {
    /// Exported model (.onnx)
    #[arg(long)]
    pub model: PathBuf,
    /// Clip directory (audio.wav, frames/, timeline.json), e.g. models/demo
    #[arg(long)]
    pub clip: PathBuf,
    /// Output PNG
    #[arg(long)]
    pub out: PathBuf,
    /// The mbtd binary (default: next to mbt, else on PATH)
    #[arg(long)]
    pub mbtd: Option<PathBuf>,
    /// Extra mbtd settings, e.g. --set events.threshold=0.6 (repeatable)
    #[arg(long = "set", value_name = "KEY=VALUE")]
    pub overrides: Vec<String>,
}

#[derive(Debug, Args)]
pub struct EvalCli {
    /// An exported model (.onnx, run on tract or --backend ort) or a checkpoint (a run directory or a .bpk file)
    #[arg(long)]
    pub model: PathBuf,
    /// Model config for a .bpk without a run directory around it
    #[arg(long, value_name = "TOML")]
    pub config: Option<PathBuf>,
    /// Data set directory
    #[arg(long, value_name = "DIR")]
    pub data: PathBuf,
    /// Split to evaluate
    #[arg(long, default_value = "test")]
    pub split: String,
    /// Crops per clip (frame phases and small audio shifts), logits averaged
    #[arg(long, default_value_t = 1)]
    pub crops: usize,
    #[arg(long, default_value_t = 32)]
    pub batch_size: usize,
    /// Use only the first N clips of the split
    #[arg(long, value_name = "N")]
    pub limit: Option<usize>,
    /// Write eval.json and confusion.png into this directory
    #[arg(long, value_name = "DIR")]
    pub out: Option<PathBuf>,
    /// Also write the crop-averaged fused logits with the labels and clip ids (JSON), e.g. to
    /// study per-class decision rules on the validation split
    #[arg(long, value_name = "FILE")]
    pub logits: Option<PathBuf>,
    /// The runtime for an .onnx model (ONNX Runtime evaluates an int8 dynamic model in
    /// minutes where tract on x86 takes hours)
    #[command(flatten)]
    pub runtime: RuntimeArgs,
}

/// Tokenizer settings shared by both `tokenize` subcommands.
#[derive(Debug, Args)]
pub struct TokenizerArgs {
    /// Tokenizer settings (TOML with [audio] and [video] tables); default: the tokenizer's defaults (video tubelets of 2; configs/edge.toml uses 4: --set video.tubelet=4)
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
    /// Image, directory of images, .y4m or .mjpeg -> video tokens, float32 [tokens, tubelet * P * P * 3]
    Video {
        /// A PNG/JPEG file, a directory of them (name order), a .y4m or an .mjpeg file
        input: PathBuf,
        /// Output .npy file
        #[arg(long)]
        out: PathBuf,
        #[command(flatten)]
        settings: TokenizerArgs,
    },
}

/// A model config file with `--set` overrides (every CLI that takes a config accepts them).
#[derive(Debug, Args)]
pub struct ConfigArgs {
    /// Model config (TOML), e.g. configs/edge.toml
    #[arg(long, value_name = "TOML")]
    pub config: PathBuf,
    /// Override one setting, e.g. --set fusion_layer=2 (repeatable)
    #[arg(long = "set", value_name = "KEY=VALUE")]
    pub overrides: Vec<String>,
}

#[derive(Debug, Args)]
pub struct ExportArgs {
    #[command(flatten)]
    pub config: ConfigArgs,
    /// Trained checkpoint to export
    #[arg(
        long,
        conflicts_with = "random_init",
        required_unless_present = "random_init"
    )]
    pub checkpoint: Option<PathBuf>,
    /// Export a randomly initialised model (for tests, benchmarks and bring-up)
    #[arg(long)]
    pub random_init: bool,
    /// Seed of the random initialisation
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Output ONNX file
    #[arg(long)]
    pub out: PathBuf,
    /// Quantise matrix multiplications to int8: `dynamic` (MatMulInteger) or `weights` (weight-only)
    #[arg(long, value_name = "dynamic|weights")]
    pub int8: Option<String>,
    /// Version string written into the model's metadata
    #[arg(long, default_value = "dev")]
    pub model_version: String,
    /// Directory of the pretrained trunk files a config with `[trunks]` composes into the
    /// model (sha256-pinned; default: the checkout's models/trunks)
    #[arg(long)]
    pub trunks: Option<PathBuf>,
    /// Event thresholds per label to write into the model (`mbt.thresholds`): an `mbt eval
    /// --out` eval.json of the validation split (its F1-best thresholds) or a JSON object
    /// label -> threshold
    #[arg(long, value_name = "FILE")]
    pub thresholds: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub struct InferArgs {
    /// Exported ONNX model
    #[arg(long)]
    pub model: PathBuf,
    /// Video tokens, .npy float32 [Tv, Pv] or [N, Tv, Pv] (e.g. from `mbt tokenize video`)
    #[arg(long)]
    pub video: PathBuf,
    /// Audio tokens, .npy float32 [Ta, Pa] or [N, Ta, Pa] (e.g. from `mbt tokenize audio --patches`)
    #[arg(long)]
    pub audio: PathBuf,
    #[command(flatten)]
    pub runtime: RuntimeArgs,
}

/// Which runtime runs a model file.
#[derive(Debug, Args)]
pub struct RuntimeArgs {
    /// Runtime: `tract` (CPU) or `ort` (ONNX Runtime, opened at run time)
    #[arg(long, default_value = "tract", value_name = "tract|ort")]
    pub backend: String,
    /// ONNX Runtime library (backend ort); default: $ORT_DYLIB_PATH, else the copy
    /// `scripts/fetch-onnxruntime.sh` installed (~/.cache/mbt-edge/onnxruntime, or $MBT_ORT_DIR)
    /// when present, else libonnxruntime.so on the loader's path
    #[arg(long, value_name = "PATH")]
    pub ort_lib: Option<String>,
    /// ONNX Runtime execution providers in order (backend ort), e.g. `qnn,cpu`
    #[arg(long, value_delimiter = ',', default_value = "cpu")]
    pub providers: Vec<String>,
    /// ONNX Runtime intra-op threads (backend ort; 0 = one per core)
    #[arg(long, default_value_t = 0)]
    pub ort_threads: usize,
}

#[derive(Debug, Subcommand)]
pub enum ModelCmd {
    /// Parameters and multiply-accumulates per part (patch embedding, unfused layers, fused layers, heads)
    Stats {
        #[command(flatten)]
        config: ConfigArgs,
        /// Print JSON instead of a table
        #[arg(long)]
        json: bool,
    },
    /// Make the replay set a model ships with: standard clips' projected tokens (8-bit), which
    /// `mbt train --init` mixes into every batch so a user's new label does not take over the
    /// old ones (models/README.md, "Personalisation")
    Replay(crate::train::replay::MakeArgs),
}

#[derive(Debug, Subcommand)]
pub enum BenchCmd {
    /// Time a runtime on a model file: load + optimise once, then the median of repeated runs
    Infer {
        /// Exported ONNX model
        #[arg(long)]
        model: PathBuf,
        #[command(flatten)]
        runtime: RuntimeArgs,
        /// Batch size
        #[arg(long, default_value_t = 1)]
        batch: usize,
        /// Timed runs (after 3 warm-up runs)
        #[arg(long, default_value_t = 30)]
        runs: usize,
        /// tract: optimise the plan for exactly --batch (concrete shapes) instead of a symbolic
        /// batch; what `mbtd` does (it always runs one window at a time)
        #[arg(long)]
        fixed_batch: bool,
        /// Print one JSON object instead of text
        #[arg(long)]
        json: bool,
    },
}
