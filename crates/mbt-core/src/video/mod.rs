//! Video tokenization: frames -> uniform sample of `T` -> resize + centre crop -> normalise ->
//! patch / tubelet vectors.
//!
//! [`VideoTokenizer`] is the one entry point both binaries use.

pub mod patches;
pub mod resize;
pub mod sample;

pub use sample::uniform_indices;

use crate::config::{VideoConfig, VideoLayout};
use crate::error::TokenizeError;
use crate::tokens::Tokens;

/// A borrowed 8-bit interleaved frame (`height` rows of `width` pixels of `channels` bytes).
/// Decoders (V4L2 YUYV/MJPEG, PNG, Y4M) convert to RGB before the tokenizer sees a frame.
#[derive(Debug, Clone, Copy)]
pub struct Frame<'a> {
    pub width: usize,
    pub height: usize,
    pub channels: usize,
    pub data: &'a [u8],
}

impl<'a> Frame<'a> {
    pub fn rgb(width: usize, height: usize, data: &'a [u8]) -> Self {
        Frame {
            width,
            height,
            channels: 3,
            data,
        }
    }
}

/// A preprocessed frame: `height x width x 3` normalised values, row-major, channel last.
#[derive(Debug, Clone, PartialEq)]
pub struct Image {
    pub width: usize,
    pub height: usize,
    pub data: Vec<f32>,
}

/// Checks a set of frames: non-empty, RGB, all the same size, data length right.
pub fn check_frames(frames: &[Frame]) -> Result<(), TokenizeError> {
    let first = frames.first().ok_or(TokenizeError::EmptyVideo)?;
    for (index, f) in frames.iter().enumerate() {
        if f.channels != 3 {
            return Err(TokenizeError::ChannelCount {
                index,
                got: f.channels,
            });
        }
        if f.width == 0 || f.height == 0 {
            return Err(TokenizeError::EmptyFrame {
                index,
                width: f.width,
                height: f.height,
            });
        }
        if (f.width, f.height) != (first.width, first.height) {
            return Err(TokenizeError::FrameSizeMismatch {
                index,
                expected_width: first.width,
                expected_height: first.height,
                got_width: f.width,
                got_height: f.height,
            });
        }
        let expected = f.width * f.height * 3;
        if f.data.len() != expected {
            return Err(TokenizeError::FrameDataLength {
                index,
                width: f.width,
                height: f.height,
                expected,
                got: f.data.len(),
            });
        }
    }
    Ok(())
}

/// Turns frames into video tokens with one [`VideoConfig`].
pub struct VideoTokenizer {
    cfg: VideoConfig,
}

impl VideoTokenizer {
    pub fn new(cfg: VideoConfig) -> Result<Self, TokenizeError> {
        cfg.validate()?;
        Ok(VideoTokenizer { cfg })
    }

    pub fn config(&self) -> &VideoConfig {
        &self.cfg
    }

    /// The resize + centre-crop plan for frames of `like`'s size.
    fn plan(&self, like: &Frame) -> resize::ResizeCrop {
        resize::ResizeCrop::plan(
            like.width,
            like.height,
            self.cfg.resize_shorter,
            self.cfg.width,
            self.cfg.height,
        )
    }

    /// Resize (shorter side), centre-crop and normalise every frame.
    pub fn preprocess(&self, frames: &[Frame]) -> Result<Vec<Image>, TokenizeError> {
        check_frames(frames)?;
        let plan = self.plan(&frames[0]);
        Ok(frames
            .iter()
            .map(|f| {
                let mut img = plan.apply(f);
                normalize(&mut img, &self.cfg.mean, &self.cfg.std);
                img
            })
            .collect())
    }

    /// Tokens from exactly `num_frames` frames: `[token_count, tubelet * P * P * 3]`, or with
    /// the `Frames` layout `[num_frames, 3 * height * width]`.
    pub fn tokenize_frames(&self, frames: &[Frame]) -> Result<Tokens, TokenizeError> {
        if frames.len() != self.cfg.num_frames {
            return Err(TokenizeError::Count {
                what: "video frames",
                expected: self.cfg.num_frames,
                got: frames.len(),
            });
        }
        check_frames(frames)?;
        if self.cfg.layout == VideoLayout::Frames {
            return Ok(self.frames_chw(frames));
        }
        // Fused: each resized row is normalised straight into its place in the token matrix
        // (no per-frame image buffers; this path runs on every window in the daemon).
        let cfg = &self.cfg;
        let plan = self.plan(&frames[0]);
        let (w, h) = plan.out_size();
        let layout = patches::PatchLayout::new(frames.len(), w, h, cfg.patch_size, cfg.tubelet)?;
        let (count, dim) = (layout.count(frames.len()), layout.dim());
        let seg = cfg.patch_size * 3;
        let inv = [1.0 / cfg.std[0], 1.0 / cfg.std[1], 1.0 / cfg.std[2]];
        let mean_seg: Vec<f32> = (0..seg).map(|k| cfg.mean[k % 3]).collect();
        let inv_seg: Vec<f32> = (0..seg).map(|k| inv[k % 3]).collect();
        let mut data = vec![0f32; count * dim];
        let mut scratch = resize::Scratch::default();
        for (f, frame) in frames.iter().enumerate() {
            plan.apply_rows(frame, &mut scratch, |y, row| {
                for (gx, piece) in row.chunks_exact(seg).enumerate() {
                    let o = layout.segment(f, y, gx);
                    let dst = &mut data[o..o + seg];
                    for (((d, &s), &m), &i) in
                        dst.iter_mut().zip(piece).zip(&mean_seg).zip(&inv_seg)
                    {
                        *d = (s - m) * i;
                    }
                }
            });
        }
        Ok(Tokens { count, dim, data })
    }

    /// The `Frames` layout: each frame resized, cropped and normalised into one channel-first
    /// row `[3, height, width]` (what a convolutional trunk's NCHW input holds per frame).
    fn frames_chw(&self, frames: &[Frame]) -> Tokens {
        let cfg = &self.cfg;
        let plan = self.plan(&frames[0]);
        let (w, h) = plan.out_size();
        let dim = 3 * w * h;
        let inv = [1.0 / cfg.std[0], 1.0 / cfg.std[1], 1.0 / cfg.std[2]];
        let mut data = vec![0f32; frames.len() * dim];
        let mut scratch = resize::Scratch::default();
        for (f, frame) in frames.iter().enumerate() {
            let out = &mut data[f * dim..(f + 1) * dim];
            plan.apply_rows(frame, &mut scratch, |y, row| {
                for (x, px) in row.chunks_exact(3).enumerate() {
                    for ch in 0..3 {
                        out[ch * w * h + y * w + x] = (px[ch] - cfg.mean[ch]) * inv[ch];
                    }
                }
            });
        }
        Tokens {
            count: frames.len(),
            dim,
            data,
        }
    }

    /// Tokens for a window holding any number of frames: `num_frames` of them are picked
    /// uniformly over the window first (see [`uniform_indices`]).
    ///
    /// Every frame of the window is checked first, so an error names the bad frame's index in
    /// `frames` whether or not the sampling would have picked it.
    pub fn tokenize_window(&self, frames: &[Frame]) -> Result<Tokens, TokenizeError> {
        check_frames(frames)?;
        let picked: Vec<Frame> = uniform_indices(frames.len(), self.cfg.num_frames)?
            .into_iter()
            .map(|i| frames[i])
            .collect();
        self.tokenize_frames(&picked)
    }
}

/// `(v - mean_c) / std_c` on values already scaled to [0, 1].
fn normalize(img: &mut Image, mean: &[f32; 3], std: &[f32; 3]) {
    let inv = [1.0 / std[0], 1.0 / std[1], 1.0 / std[2]];
    for px in img.data.chunks_exact_mut(3) {
        for c in 0..3 {
            px[c] = (px[c] - mean[c]) * inv[c];
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frame_errors_name_the_frame() {
        let good = vec![0u8; 4 * 4 * 3];
        let small = vec![0u8; 2 * 2 * 3];
        let f = |width, height, channels, data| Frame {
            width,
            height,
            channels,
            data,
        };
        assert_eq!(check_frames(&[]), Err(TokenizeError::EmptyVideo));
        assert!(matches!(
            check_frames(&[f(4, 4, 3, &good), f(2, 2, 3, &small)]),
            Err(TokenizeError::FrameSizeMismatch { index: 1, .. })
        ));
        assert!(matches!(
            check_frames(&[f(4, 4, 4, &good)]),
            Err(TokenizeError::ChannelCount { index: 0, got: 4 })
        ));
        assert!(matches!(
            check_frames(&[f(4, 4, 3, &small)]),
            Err(TokenizeError::FrameDataLength {
                index: 0,
                expected: 48,
                got: 12,
                ..
            })
        ));
        assert!(matches!(
            check_frames(&[f(0, 4, 3, &[])]),
            Err(TokenizeError::EmptyFrame { index: 0, .. })
        ));
    }

    #[test]
    fn fused_path_equals_preprocess_then_patches() {
        let cfg = VideoConfig {
            num_frames: 4,
            resize_shorter: 40,
            height: 32,
            width: 32,
            patch_size: 16,
            tubelet: 2,
            ..Default::default()
        };
        let tok = VideoTokenizer::new(cfg.clone()).unwrap();
        let data: Vec<Vec<u8>> = (0..4)
            .map(|f| {
                (0..70 * 50 * 3)
                    .map(|i| ((i * 7 + f * 31) % 256) as u8)
                    .collect()
            })
            .collect();
        let frames: Vec<Frame> = data.iter().map(|d| Frame::rgb(70, 50, d)).collect();
        let fused = tok.tokenize_frames(&frames).unwrap();
        let staged = patches::patches(&tok.preprocess(&frames).unwrap(), 16, 2).unwrap();
        assert_eq!(fused.shape(), staged.shape());
        let err = fused
            .data
            .iter()
            .zip(&staged.data)
            .map(|(a, b)| (a - b).abs())
            .fold(0.0, f32::max);
        assert!(err < 1e-6, "{err}");
    }

    #[test]
    fn wrong_frame_count_is_an_error() {
        let tok = VideoTokenizer::new(VideoConfig::default()).unwrap();
        let d = vec![0u8; 112 * 112 * 3];
        let frames = vec![Frame::rgb(112, 112, &d); 3];
        assert!(matches!(
            tok.tokenize_frames(&frames),
            Err(TokenizeError::Count {
                expected: 8,
                got: 3,
                ..
            })
        ));
        // ... but a window of 3 frames is sampled up to 8.
        assert_eq!(tok.tokenize_window(&frames).unwrap().shape(), [196, 1536]);
    }

    #[test]
    fn normalisation_maps_black_and_white_to_minus_one_and_one() {
        let cfg = VideoConfig {
            num_frames: 2,
            tubelet: 1,
            ..Default::default()
        };
        let tok = VideoTokenizer::new(cfg).unwrap();
        let black = vec![0u8; 112 * 112 * 3];
        let white = vec![255u8; 112 * 112 * 3];
        let t = tok
            .tokenize_frames(&[Frame::rgb(112, 112, &black), Frame::rgb(112, 112, &white)])
            .unwrap();
        assert!(t.row(0).iter().all(|&v| v == -1.0));
        assert!(t.row(49).iter().all(|&v| (v - 1.0).abs() < 1e-6));
    }

    #[test]
    fn frames_layout_is_channel_first_per_frame() {
        // A frame already at the model size (no resampling): pixel (x, y) has R = x, G = y,
        // B = 200; the row must hold the R plane, then G, then B, each row-major, normalised
        // with (v / 255 - 0.5) / 0.5 (hand computation).
        let (w, h) = (32, 32);
        let cfg = VideoConfig {
            layout: crate::config::VideoLayout::Frames,
            num_frames: 1,
            resize_shorter: 32,
            height: h,
            width: w,
            ..Default::default()
        };
        let mut d = vec![0u8; w * h * 3];
        for y in 0..h {
            for x in 0..w {
                d[(y * w + x) * 3..(y * w + x) * 3 + 3].copy_from_slice(&[x as u8, y as u8, 200]);
            }
        }
        let tok = VideoTokenizer::new(cfg).unwrap();
        let t = tok.tokenize_frames(&[Frame::rgb(w, h, &d)]).unwrap();
        assert_eq!(t.shape(), [1, 3 * w * h]);
        let norm = |v: f32| (v / 255.0 - 0.5) / 0.5;
        for (y, x) in [(0, 0), (3, 17), (31, 5)] {
            let at = |c: usize| t.data[c * w * h + y * w + x];
            assert!((at(0) - norm(x as f32)).abs() < 1e-5);
            assert!((at(1) - norm(y as f32)).abs() < 1e-5);
            assert!((at(2) - norm(200.0)).abs() < 1e-5);
        }
    }
}
