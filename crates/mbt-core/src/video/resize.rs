//! Antialiased bilinear resize + centre crop, from 8-bit RGB to `f32` in [0, 1].
//!
//! The filter is Pillow's `Image.resize(..., BILINEAR)` (a triangle kernel whose support widens
//! by the downscale factor, so shrinking averages instead of aliasing), computed in floating
//! point: the golden test compares against Pillow on float images within 1e-3 grey levels.
//! Pass order is Pillow's: horizontal, then vertical.
//!
//! The resize keeps the aspect ratio: the shorter side becomes `resize_shorter` and the other
//! `round(long * resize_shorter / short)`. The crop keeps the centre, its top-left corner at
//! `floor((resized - crop) / 2)` on each axis. Only the output pixels inside the crop are
//! computed.

use super::{Frame, Image};

/// Filter taps for one output coordinate: input index of the first tap and the weights.
#[derive(Debug, Clone)]
struct Taps {
    first: usize,
    weights: Vec<f32>,
}

/// Pillow's `precompute_coeffs` for the bilinear filter, for output indices `out_range`.
fn coefficients(in_size: usize, out_size: usize, out_range: std::ops::Range<usize>) -> Vec<Taps> {
    let scale = in_size as f64 / out_size as f64;
    let filterscale = scale.max(1.0);
    let support = filterscale; // bilinear support 1.0, widened when downscaling
    let ss = 1.0 / filterscale;
    out_range
        .map(|xx| {
            let center = (xx as f64 + 0.5) * scale;
            // Pillow truncates toward zero, then clamps.
            let xmin = ((center - support + 0.5).trunc().max(0.0)) as usize;
            let xmax = ((center + support + 0.5).trunc() as usize).min(in_size);
            let mut w: Vec<f64> = (xmin..xmax)
                .map(|x| {
                    let d = ((x as f64 - center + 0.5) * ss).abs();
                    if d < 1.0 {
                        1.0 - d
                    } else {
                        0.0
                    }
                })
                .collect();
            let total: f64 = w.iter().sum();
            if total != 0.0 {
                w.iter_mut().for_each(|v| *v /= total);
            }
            // Zero-weight taps at either end change nothing; dropping them halves the work of
            // a same-size pass (which Pillow skips altogether).
            let lead = w.iter().take_while(|&&v| v == 0.0).count();
            let trail = w[lead..].iter().rev().take_while(|&&v| v == 0.0).count();
            Taps {
                first: xmin + lead,
                weights: w[lead..w.len() - trail].iter().map(|&v| v as f32).collect(),
            }
        })
        .collect()
}

/// A resize + crop planned for one input size.
pub struct ResizeCrop {
    in_w: usize,
    in_h: usize,
    out_w: usize,
    out_h: usize,
    cols: Vec<Taps>,
    rows: Vec<Taps>,
}

/// The size after resizing the shorter side to `shorter`.
pub fn resized_size(w: usize, h: usize, shorter: usize) -> (usize, usize) {
    let round = |long: usize, short: usize| {
        ((long as f64 * shorter as f64 / short as f64).round() as usize).max(shorter)
    };
    if w <= h {
        (shorter, round(h, w))
    } else {
        (round(w, h), shorter)
    }
}

impl ResizeCrop {
    /// Plans resizing a `in_w x in_h` frame to shorter side `shorter`, then cropping the centre
    /// `crop_w x crop_h` (callers guarantee `shorter >= max(crop_w, crop_h)`; config validation
    /// does).
    pub fn plan(in_w: usize, in_h: usize, shorter: usize, crop_w: usize, crop_h: usize) -> Self {
        let (rw, rh) = resized_size(in_w, in_h, shorter);
        let (x0, y0) = ((rw - crop_w.min(rw)) / 2, (rh - crop_h.min(rh)) / 2);
        let (out_w, out_h) = (crop_w.min(rw), crop_h.min(rh));
        ResizeCrop {
            in_w,
            in_h,
            out_w,
            out_h,
            cols: coefficients(in_w, rw, x0..x0 + out_w),
            rows: coefficients(in_h, rh, y0..y0 + out_h),
        }
    }

    pub fn out_size(&self) -> (usize, usize) {
        (self.out_w, self.out_h)
    }

    /// Applies the plan to one RGB frame (size already checked by the caller), handing each
    /// output row (`out_w * 3` values in [0, 1]) to `sink` with its row index. `scratch` is
    /// reused between calls so a window's frames cost no allocations after the first.
    pub fn apply_rows(
        &self,
        f: &Frame,
        scratch: &mut Scratch,
        mut sink: impl FnMut(usize, &[f32]),
    ) {
        debug_assert_eq!((f.width, f.height), (self.in_w, self.in_h));
        // Horizontal pass over the input rows the vertical pass reads.
        let row_lo = self.rows.first().map_or(0, |t| t.first);
        let row_hi = self
            .rows
            .iter()
            .map(|t| t.first + t.weights.len())
            .max()
            .unwrap_or(0);
        let stride = self.out_w * 3;
        scratch.rows.clear();
        scratch.rows.resize((row_hi - row_lo) * stride, 0.0);
        for y in row_lo..row_hi {
            let src = &f.data[y * self.in_w * 3..(y + 1) * self.in_w * 3];
            let dst = &mut scratch.rows[(y - row_lo) * stride..(y - row_lo + 1) * stride];
            for (d, taps) in dst.chunks_exact_mut(3).zip(&self.cols) {
                let px = &src[taps.first * 3..(taps.first + taps.weights.len()) * 3];
                let mut acc = [0f32; 3];
                for (&w, p) in taps.weights.iter().zip(px.chunks_exact(3)) {
                    acc[0] += w * p[0] as f32;
                    acc[1] += w * p[1] as f32;
                    acc[2] += w * p[2] as f32;
                }
                d.copy_from_slice(&acc);
            }
        }
        // Vertical pass, scaling to [0, 1].
        scratch.line.clear();
        scratch.line.resize(stride, 0.0);
        for (y, taps) in self.rows.iter().enumerate() {
            let line = &mut scratch.line;
            line.iter_mut().for_each(|v| *v = 0.0);
            for (k, &w) in taps.weights.iter().enumerate() {
                let r = taps.first + k - row_lo;
                let w = w / 255.0;
                for (d, s) in line
                    .iter_mut()
                    .zip(&scratch.rows[r * stride..(r + 1) * stride])
                {
                    *d += w * s;
                }
            }
            sink(y, line);
        }
    }

    /// Applies the plan to one RGB frame, returning the cropped image in [0, 1].
    pub fn apply(&self, f: &Frame) -> Image {
        let mut data = Vec::with_capacity(self.out_w * self.out_h * 3);
        self.apply_rows(f, &mut Scratch::default(), |_, row| {
            data.extend_from_slice(row)
        });
        Image {
            width: self.out_w,
            height: self.out_h,
            data,
        }
    }
}

/// Reusable buffers for [`ResizeCrop::apply_rows`].
#[derive(Debug, Default)]
pub struct Scratch {
    rows: Vec<f32>,
    line: Vec<f32>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resized_size_keeps_aspect() {
        assert_eq!(resized_size(640, 480, 112), (149, 112));
        assert_eq!(resized_size(480, 640, 112), (112, 149));
        assert_eq!(resized_size(112, 112, 112), (112, 112));
    }

    #[test]
    fn same_size_is_identity() {
        let data: Vec<u8> = (0..6 * 4 * 3).map(|i| (i * 7 % 256) as u8).collect();
        let f = Frame::rgb(6, 4, &data);
        let img = ResizeCrop::plan(6, 4, 4, 6, 4).apply(&f);
        for (a, b) in img.data.iter().zip(&data) {
            assert!((a * 255.0 - *b as f32).abs() < 1e-3);
        }
    }

    #[test]
    fn halving_averages_pixel_pairs_with_triangle_weights() {
        // 4 -> 2 columns: scale 2, support 2, output 0 centred at 1.0 reads inputs 0..3 with
        // weights |x + 0.5 - 1| / 2 -> 0.75, 0.75, 0.25 (normalised: 3/7, 3/7, 1/7).
        // Two identical rows, so the vertical halving averages equal values.
        let row = [0u8, 0, 0, 70, 70, 70, 140, 140, 140, 210, 210, 210];
        let rows = [row, row].concat();
        let f = Frame::rgb(4, 2, &rows);
        let img = ResizeCrop::plan(4, 2, 1, 2, 1).apply(&f);
        assert_eq!((img.width, img.height), (2, 1));
        let expect0 = (0.0 * 3.0 + 70.0 * 3.0 + 140.0 * 1.0) / 7.0 / 255.0;
        assert!(
            (img.data[0] - expect0).abs() < 1e-6,
            "{} vs {expect0}",
            img.data[0]
        );
    }

    #[test]
    fn crop_is_centred() {
        // 1 row, 6 columns, no resize (shorter side 1 already): crop 2 columns from x = 2.
        let row: Vec<u8> = (0..6).flat_map(|x| [x * 10, 0, 0]).collect();
        let f = Frame::rgb(6, 1, &row);
        let img = ResizeCrop::plan(6, 1, 1, 2, 1).apply(&f);
        assert!((img.data[0] * 255.0 - 20.0).abs() < 1e-3);
        assert!((img.data[3] * 255.0 - 30.0).abs() < 1e-3);
    }
}
