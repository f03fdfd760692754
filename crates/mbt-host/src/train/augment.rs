//! Training augmentation, drawn per clip from its own random stream so a run is reproducible on
//! any number of threads and a resumed run draws exactly what an uninterrupted one would:
//! SpecAugment (time and frequency masks), a small time shift of the audio window, the temporal
//! phase of the sampled frames, random crop, horizontal flip and colour jitter. Mixup is in
//! the batch builder (it mixes two clips' tokens; tokens are affine in the signals, so mixing
//! tokens equals tokenizing mixed, normalised inputs).

use mbt_core::audio::LogMel;
use mbt_media::RgbFrame;
use mbt_model::train::TrainConfig;

use crate::data::rng::Rng;

/// What to do to one clip. [`AugmentPlan::none`] is the identity (evaluation).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct AugmentPlan {
    /// Spectrogram frames to shift the audio by (positive: later, padding the start).
    pub time_shift: isize,
    /// `(start, width)` in spectrogram frames / mel bins.
    pub time_masks: Vec<(usize, usize)>,
    pub freq_masks: Vec<(usize, usize)>,
    /// Which of the evenly spaced frame phases to sample (see [`frame_indices`]).
    pub phase: usize,
    /// Crop `(x, y, side_w, side_h)` in pixels, before the tokenizer's resize.
    pub crop: Option<(usize, usize, usize, usize)>,
    pub flip: bool,
    /// Brightness, contrast and saturation factors (1 = unchanged).
    pub jitter: [f32; 3],
}

impl AugmentPlan {
    pub fn none() -> Self {
        AugmentPlan {
            jitter: [1.0; 3],
            ..AugmentPlan::default()
        }
    }

    /// Evaluation crop `k` of `crops`: frame phases and small audio shifts spread evenly, no
    /// randomness (multi-crop averaging).
    pub fn eval_crop(k: usize, crops: usize, max_shift: usize) -> Self {
        let mut p = AugmentPlan::none();
        if crops > 1 {
            p.phase = k;
            let half = (max_shift / 2) as isize;
            p.time_shift = -half + (2 * half * k as isize) / (crops as isize - 1).max(1);
        }
        p
    }

    /// A random plan for one training clip with `frames` spectrogram frames and `bins` bins.
    pub fn draw(
        rng: &mut Rng,
        t: &TrainConfig,
        spec: (usize, usize),
        image: (usize, usize),
    ) -> Self {
        let (frames, bins) = spec;
        let mut p = AugmentPlan::none();
        if t.time_shift > 0 {
            let s = t.time_shift as isize;
            p.time_shift = (rng.below(2 * t.time_shift + 1) as isize) - s;
        }
        let mask = |rng: &mut Rng, count: usize, max: usize, len: usize| {
            (0..count)
                .filter_map(|_| {
                    let w = rng.below(max + 1);
                    (w > 0 && w < len).then(|| (rng.below(len - w), w))
                })
                .collect::<Vec<_>>()
        };
        p.time_masks = mask(rng, t.time_masks, t.time_mask_max, frames);
        p.freq_masks = mask(rng, t.freq_masks, t.freq_mask_max, bins);
        p.phase = rng.below(64);
        let (w, h) = image;
        if t.crop_min_scale < 1.0 {
            let s = rng.range(t.crop_min_scale, 1.0);
            let (cw, ch) = (
                ((w as f64 * s).round() as usize).clamp(1, w),
                ((h as f64 * s).round() as usize).clamp(1, h),
            );
            let x = rng.below(w - cw + 1);
            let y = rng.below(h - ch + 1);
            p.crop = Some((x, y, cw, ch));
        }
        p.flip = rng.f64() < t.flip_prob;
        let j = t.color_jitter;
        if j > 0.0 {
            for v in p.jitter.iter_mut() {
                *v = rng.range(1.0 - j, 1.0 + j) as f32;
            }
        }
        p
    }
}

/// `num` frame indices out of `total`, evenly spaced, starting at phase `phase % step`: with
/// 16 frames and 8 samples, phase 0 picks 0,2,..,14 and phase 1 picks 1,3,..,15.
pub fn frame_indices(total: usize, num: usize, phase: usize) -> Vec<usize> {
    let step = (total / num.max(1)).max(1);
    let offset = phase % step;
    (0..num)
        .map(|i| (offset + i * step).min(total - 1))
        .collect()
}

/// Shifts a log-mel along time by `by` frames, filling with `fill` (the log floor: silence).
pub fn shift(m: &LogMel, by: isize, fill: f32) -> LogMel {
    if by == 0 {
        return m.clone();
    }
    let bins = m.bins;
    let mut data = vec![fill; m.data.len()];
    let n = m.frames as isize;
    for f in 0..n {
        let src = f - by;
        if (0..n).contains(&src) {
            let (d, s) = (f as usize * bins, src as usize * bins);
            data[d..d + bins].copy_from_slice(&m.data[s..s + bins]);
        }
    }
    LogMel {
        frames: m.frames,
        bins,
        data,
    }
}

/// SpecAugment masks: masked cells get `value` (the normalisation mean, so they become 0).
pub fn spec_masks(m: &mut LogMel, time: &[(usize, usize)], freq: &[(usize, usize)], value: f32) {
    let bins = m.bins;
    for &(s, w) in time {
        for f in s..(s + w).min(m.frames) {
            m.data[f * bins..(f + 1) * bins].fill(value);
        }
    }
    for &(s, w) in freq {
        for f in 0..m.frames {
            let row = &mut m.data[f * bins..(f + 1) * bins];
            row[s.min(bins)..(s + w).min(bins)].fill(value);
        }
    }
}

/// One frame after crop, flip and colour jitter (the tokenizer resizes the crop back).
pub fn frame(rgb: &[u8], width: usize, height: usize, p: &AugmentPlan) -> RgbFrame {
    let (x0, y0, w, h) = p.crop.unwrap_or((0, 0, width, height));
    let mut data = Vec::with_capacity(w * h * 3);
    for y in y0..y0 + h {
        let row = &rgb[(y * width + x0) * 3..(y * width + x0 + w) * 3];
        if p.flip {
            for px in row.chunks_exact(3).rev() {
                data.extend_from_slice(px);
            }
        } else {
            data.extend_from_slice(row);
        }
    }
    if p.jitter != [1.0; 3] {
        jitter(&mut data, p.jitter);
    }
    RgbFrame {
        width: w,
        height: h,
        data,
    }
}

/// Brightness (scale), contrast (around the image mean) and saturation (around each pixel's
/// grey level), as torchvision's ColorJitter does them.
fn jitter(data: &mut [u8], [b, c, s]: [f32; 3]) {
    let n = (data.len() / 3).max(1) as f32;
    let grey = |p: &[f32]| 0.299 * p[0] + 0.587 * p[1] + 0.114 * p[2];
    let mut px: Vec<f32> = data.iter().map(|&v| v as f32 * b).collect();
    let mean = px.chunks_exact(3).map(grey).sum::<f32>() / n;
    for p in px.chunks_exact_mut(3) {
        let g = grey(p);
        for v in p.iter_mut() {
            let sat = g + (*v - g) * s;
            *v = mean + (sat - mean) * c;
        }
    }
    for (d, v) in data.iter_mut().zip(px) {
        *d = v.round().clamp(0.0, 255.0) as u8;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frame_phases_cover_every_frame_once() {
        let mut all: Vec<usize> = frame_indices(16, 8, 0);
        assert_eq!(all, vec![0, 2, 4, 6, 8, 10, 12, 14]);
        all.extend(frame_indices(16, 8, 1));
        all.sort();
        assert_eq!(all, (0..16).collect::<Vec<_>>());
        assert_eq!(frame_indices(8, 8, 5), (0..8).collect::<Vec<_>>());
    }

    #[test]
    fn shift_moves_rows_and_fills_with_silence() {
        let m = LogMel {
            frames: 3,
            bins: 2,
            data: vec![1.0, 1.0, 2.0, 2.0, 3.0, 3.0],
        };
        assert_eq!(
            shift(&m, 1, -9.0).data,
            vec![-9.0, -9.0, 1.0, 1.0, 2.0, 2.0]
        );
        assert_eq!(
            shift(&m, -2, -9.0).data,
            vec![3.0, 3.0, -9.0, -9.0, -9.0, -9.0]
        );
    }

    #[test]
    fn masks_cover_exactly_their_cells() {
        let mut m = LogMel {
            frames: 4,
            bins: 3,
            data: vec![1.0; 12],
        };
        spec_masks(&mut m, &[(1, 2)], &[(2, 1)], 0.0);
        let zeros: Vec<usize> = (0..12).filter(|&i| m.data[i] == 0.0).collect();
        // rows 1 and 2 entirely, plus bin 2 of rows 0 and 3
        assert_eq!(zeros, vec![2, 3, 4, 5, 6, 7, 8, 11]);
    }

    #[test]
    fn crop_and_flip_pick_the_right_pixels() {
        // 3x2 image, pixel value = 10*y + x in every channel
        let rgb: Vec<u8> = (0..2)
            .flat_map(|y| (0..3).flat_map(move |x| [10 * y + x; 3]))
            .collect();
        let p = AugmentPlan {
            crop: Some((1, 0, 2, 2)),
            flip: true,
            ..AugmentPlan::none()
        };
        let f = frame(&rgb, 3, 2, &p);
        let firsts: Vec<u8> = f.data.chunks(3).map(|c| c[0]).collect();
        assert_eq!((f.width, f.height), (2, 2));
        assert_eq!(firsts, vec![2, 1, 12, 11]);
    }

    #[test]
    fn plans_are_reproducible_per_stream() {
        let t = TrainConfig::default();
        let a = AugmentPlan::draw(&mut Rng::new(7, &[1, 2]), &t, (200, 128), (112, 112));
        let b = AugmentPlan::draw(&mut Rng::new(7, &[1, 2]), &t, (200, 128), (112, 112));
        assert_eq!(a, b);
        assert_ne!(a, AugmentPlan::none());
    }
}
