//! Decoding of the media files the tools read, into the plain buffers the tokenizer takes.
//!
//! Kept out of `mbt-core` so the tokenizer stays free of I/O; shared by `mbt` (tokenize, data)
//! and `mbtd` (replay of recorded clips). Every error names the file and what was expected.

pub mod audio;
pub mod frames;
pub mod mjpeg;
mod sniff;
pub mod wav;
pub mod y4m;

use std::path::{Path, PathBuf};

use thiserror::Error;

#[derive(Debug, Error)]
pub enum MediaError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: {reason}")]
    Format { path: PathBuf, reason: String },
}

impl MediaError {
    pub fn format(path: &Path, reason: impl Into<String>) -> Self {
        MediaError::Format {
            path: path.to_path_buf(),
            reason: reason.into(),
        }
    }

    pub fn io(path: &Path, source: std::io::Error) -> Self {
        MediaError::Io {
            path: path.to_path_buf(),
            source,
        }
    }
}

/// An owned 8-bit RGB frame, row-major, 3 bytes per pixel.
#[derive(Debug, Clone, PartialEq)]
pub struct RgbFrame {
    pub width: usize,
    pub height: usize,
    pub data: Vec<u8>,
}

impl RgbFrame {
    pub fn as_frame(&self) -> mbt_core::video::Frame<'_> {
        mbt_core::video::Frame::rgb(self.width, self.height, &self.data)
    }
}
