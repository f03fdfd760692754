//! Our own tract operators, one per module, and the rewrites that put them into a model.

pub mod depthwise;
