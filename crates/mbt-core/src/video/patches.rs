//! Cutting preprocessed frames into patch (tubelet) vectors.
//!
//! **Order** (the model's `video` input, `[tokens, t * P * P * 3]`): tokens are numbered
//! `token = (g * rows + gy) * cols + gx` for tubelet `g` (frames `g*t .. g*t + t`), patch row
//! `gy` and patch column `gx`: time, then raster order. Inside a token the values run
//! `[dt][py][px][c]`: frame within the tubelet, pixel row, pixel column, channel (R, G, B).
//! That is each frame's own row-major, channel-last layout, so a patch row is one contiguous
//! run of `P * 3` values.

use super::Image;
use crate::error::TokenizeError;
use crate::tokens::Tokens;

/// Where each piece of each frame goes in the token matrix: the single definition of the
/// order above, used by the fused tokenizer path and by [`patches`].
#[derive(Debug, Clone, Copy)]
pub struct PatchLayout {
    pub patch: usize,
    pub tubelet: usize,
    pub rows: usize,
    pub cols: usize,
}

impl PatchLayout {
    /// Layout for `frames` frames of `width x height`; sizes must divide (checked).
    pub fn new(
        frames: usize,
        width: usize,
        height: usize,
        patch: usize,
        tubelet: usize,
    ) -> Result<Self, TokenizeError> {
        if tubelet == 0 || frames % tubelet != 0 {
            return Err(TokenizeError::config(
                "video.tubelet",
                format!("expected a divisor of the frame count {frames}, got {tubelet}"),
            ));
        }
        if patch == 0 || width % patch != 0 || height % patch != 0 {
            return Err(TokenizeError::config(
                "video.patch_size",
                format!("expected a divisor of the frame size {width}x{height}, got {patch}"),
            ));
        }
        Ok(PatchLayout {
            patch,
            tubelet,
            rows: height / patch,
            cols: width / patch,
        })
    }

    pub fn dim(&self) -> usize {
        self.tubelet * self.patch * self.patch * 3
    }

    pub fn count(&self, frames: usize) -> usize {
        frames / self.tubelet * self.rows * self.cols
    }

    /// Offset in the token matrix of the `patch * 3` values of frame `frame`, pixel row `y`,
    /// patch column `gx` (they are contiguous there, as in the frame).
    #[inline]
    pub fn segment(&self, frame: usize, y: usize, gx: usize) -> usize {
        let (g, dt) = (frame / self.tubelet, frame % self.tubelet);
        let token = (g * self.rows + y / self.patch) * self.cols + gx;
        token * self.dim() + (dt * self.patch + y % self.patch) * self.patch * 3
    }
}

/// Cuts preprocessed frames into tokens (see the module docs for the order).
pub fn patches(frames: &[Image], p: usize, t: usize) -> Result<Tokens, TokenizeError> {
    let first = frames.first().ok_or(TokenizeError::EmptyVideo)?;
    let layout = PatchLayout::new(frames.len(), first.width, first.height, p, t)?;
    let (count, dim) = (layout.count(frames.len()), layout.dim());
    let mut data = vec![0f32; count * dim];
    let seg = p * 3;
    for (f, img) in frames.iter().enumerate() {
        for (y, row) in img.data.chunks_exact(img.width * 3).enumerate() {
            for (gx, piece) in row.chunks_exact(seg).enumerate() {
                let o = layout.segment(f, y, gx);
                data[o..o + seg].copy_from_slice(piece);
            }
        }
    }
    Ok(Tokens { count, dim, data })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A frame whose value encodes (frame, y, x, c) so the order can be read off.
    fn coded(f: usize, w: usize, h: usize) -> Image {
        let data = (0..h)
            .flat_map(|y| {
                (0..w).flat_map(move |x| {
                    (0..3).map(move |c| (f * 1000 + y * 100 + x * 10 + c) as f32)
                })
            })
            .collect();
        Image {
            width: w,
            height: h,
            data,
        }
    }

    #[test]
    fn order_is_tubelet_row_col_then_frame_y_x_c() {
        let frames = [coded(0, 4, 2), coded(1, 4, 2)];
        let t = patches(&frames, 2, 2).unwrap();
        assert_eq!(t.shape(), [2, 2 * 2 * 2 * 3]);
        // Token 1 = tubelet 0, patch row 0, patch column 1 (x = 2..4).
        let expect: Vec<f32> = [0, 1]
            .iter()
            .flat_map(|&f| {
                (0..2).flat_map(move |y| {
                    (2..4).flat_map(move |x| {
                        (0..3).map(move |c| (f * 1000 + y * 100 + x * 10 + c) as f32)
                    })
                })
            })
            .collect();
        assert_eq!(t.row(1), expect.as_slice());
    }

    #[test]
    fn ragged_shapes_are_errors() {
        let frames = [coded(0, 4, 2), coded(1, 4, 2), coded(2, 4, 2)];
        assert!(patches(&frames, 2, 2).is_err());
        assert!(patches(&frames, 3, 1).is_err());
        assert!(patches(&[], 2, 1).is_err());
    }
}
