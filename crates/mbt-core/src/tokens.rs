//! A matrix of token (patch) vectors, row-major: `count` rows of `dim` values.

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Tokens {
    /// Number of tokens (rows).
    pub count: usize,
    /// Length of each token vector (columns).
    pub dim: usize,
    /// `count * dim` values, token after token.
    pub data: Vec<f32>,
}

impl Tokens {
    pub fn row(&self, i: usize) -> &[f32] {
        &self.data[i * self.dim..(i + 1) * self.dim]
    }

    pub fn shape(&self) -> [usize; 2] {
        [self.count, self.dim]
    }
}
