//! Pure building blocks shared by the host tool (`mbt`) and the daemon (`mbtd`).
//!
//! Nothing in this crate touches a file, a device or the network: it turns samples and pixels
//! into model tokens, describes what a model file carries, and defines the event type. Both
//! binaries call *the same* functions, so a model trained on the host sees on the board exactly
//! the tokens it was trained on (no train/serve skew).
//!
//! * [`audio`]: Kaldi-compatible log-mel filterbank (numerically equal to
//!   `torchaudio.compliance.kaldi.fbank` with the AST/MBT settings), resampling to 16 kHz,
//!   normalisation, padding and spectrogram patches.
//! * [`video`]: uniform frame sampling, antialiased resize + centre crop, normalisation and
//!   patch/tubelet vectors.
//! * [`config`]: every tokenizer parameter in one serde type; it travels inside the ONNX file.
//! * [`metadata`]: what a model file carries in `metadata_props`, parsed and validated.
//! * [`event`]: the detection event, serde + postcard.
//! * [`npy`]: encode/decode of the NumPy `.npy` format (bytes only) for debugging tools and tests.

pub mod audio;
pub mod config;
pub mod error;
pub mod event;
pub mod metadata;
pub mod npy;
pub mod settings;
pub mod tokens;
pub mod video;

pub use config::{AudioConfig, AudioFrontEnd, TokenizerConfig, VideoConfig, VideoLayout};

/// The AVE-Intersect classes (data v2), in the order of the default model's outputs: the data
/// set builder labels clips with them and the default model config lists them. (edge-0.1 was
/// trained on the first five and `none`; its file carries its own list, as every model does.)
pub const AVE_CLASSES: [&str; 10] = [
    "dog_barking",
    "glass_breaking",
    "person_speaking",
    "door_slammed",
    "door_closed_softly",
    "alarm_ringing",
    "car_horn",
    "cat_meowing",
    "footsteps",
    "none",
];
pub use error::TokenizeError;
pub use tokens::Tokens;
