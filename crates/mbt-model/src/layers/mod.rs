//! The model's layers, one per file (candle's style): each has `new` (from the config) and
//! `forward`, and the same code runs in training and as the reference forward the exported
//! ONNX graph is checked against.

pub mod attention;
pub mod block;
pub mod mlp;
pub mod stream;
pub mod trunk_last;

pub use attention::{attend, Attention};
pub use block::{Block, DropPath};
pub use mlp::Mlp;
pub use stream::StreamIo;
pub use trunk_last::TrunkLast;
