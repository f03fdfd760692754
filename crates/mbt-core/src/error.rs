//! The one error type of the tokenizer. Every variant says what was expected, so a user who
//! feeds the wrong thing (a stereo frame, a 12 kHz file, a NaN from a broken driver) reads
//! what to change instead of a panic.

use thiserror::Error;

#[derive(Debug, Error, Clone, PartialEq)]
pub enum TokenizeError {
    #[error("audio is empty: expected at least one sample")]
    EmptyAudio,

    #[error(
        "audio sample {index} is {value}: expected a finite value (NaN and infinity are not audio)"
    )]
    NonFiniteSample { index: usize, value: f32 },

    #[error("unsupported sample rate {rate} Hz: expected one of {supported:?}")]
    UnsupportedSampleRate {
        rate: u32,
        supported: &'static [u32],
    },

    #[error("no video frames: expected at least one frame")]
    EmptyVideo,

    #[error("frame {index} is {got_width}x{got_height}: expected {expected_width}x{expected_height} like the first frame")]
    FrameSizeMismatch {
        index: usize,
        expected_width: usize,
        expected_height: usize,
        got_width: usize,
        got_height: usize,
    },

    #[error("frame {index} has {got} channels: expected 3 (RGB, 8 bits each)")]
    ChannelCount { index: usize, got: usize },

    #[error("frame {index} holds {got} bytes: expected {expected} ({width}x{height}x3)")]
    FrameDataLength {
        index: usize,
        width: usize,
        height: usize,
        expected: usize,
        got: usize,
    },

    #[error("frame {index} is {width}x{height}: expected a non-empty frame")]
    EmptyFrame {
        index: usize,
        width: usize,
        height: usize,
    },

    #[error("expected {expected} {what}, got {got}")]
    Count {
        what: &'static str,
        expected: usize,
        got: usize,
    },

    #[error("invalid tokenizer setting `{field}`: {reason}")]
    InvalidConfig { field: &'static str, reason: String },
}

impl TokenizeError {
    pub(crate) fn config(field: &'static str, reason: impl Into<String>) -> Self {
        TokenizeError::InvalidConfig {
            field,
            reason: reason.into(),
        }
    }
}
