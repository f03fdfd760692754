//! Writing the trained (or randomly initialised) model as ONNX, with everything the daemon
//! needs in `metadata_props`.

pub mod compose;
pub mod graph;
pub mod onnx;
pub mod read;

pub use onnx::{export, ExportError, ExportOptions, Int8};
