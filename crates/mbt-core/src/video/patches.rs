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

pub fn patches(frames: &[Image], p: usize, t: usize) -> Result<Tokens, TokenizeError> {
    let first = frames.first().ok_or(TokenizeError::EmptyVideo)?;
    let (w, h) = (first.width, first.height);
    if t == 0 || frames.len() % t != 0 {
        return Err(TokenizeError::config(
            "video.tubelet",
            format!(
                "expected a divisor of the frame count {}, got {t}",
                frames.len()
            ),
        ));
    }
    if p == 0 || w % p != 0 || h % p != 0 {
        return Err(TokenizeError::config(
            "video.patch_size",
            format!("expected a divisor of the frame size {w}x{h}, got {p}"),
        ));
    }
    let (rows, cols) = (h / p, w / p);
    let dim = t * p * p * 3;
    let count = frames.len() / t * rows * cols;
    let mut data = Vec::with_capacity(count * dim);
    for g in 0..frames.len() / t {
        for gy in 0..rows {
            for gx in 0..cols {
                for img in &frames[g * t..g * t + t] {
                    for py in 0..p {
                        let start = ((gy * p + py) * w + gx * p) * 3;
                        data.extend_from_slice(&img.data[start..start + p * 3]);
                    }
                }
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
