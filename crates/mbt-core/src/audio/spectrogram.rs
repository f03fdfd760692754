//! From a log-mel matrix to the model's audio tokens: fixed length, normalisation, patches.
//!
//! **Patch order** (the model's `audio` input, `[tokens, patch_time * patch_freq]`):
//! tokens are numbered time-major, `token = ti * (bins / patch_freq) + fi`, where `ti` is the
//! patch's index along time and `fi` along frequency (low to high mel). Inside a token the values
//! are the patch's rows in order: `value[dt * patch_freq + df] = spec[ti*pt + dt][fi*pf + df]`.
//! That is the spectrogram's own row-major order, so a patch is a contiguous run of each row.

use super::fbank::LogMel;
use crate::error::TokenizeError;
use crate::tokens::Tokens;

/// Pads with `fill` frames at the end, or drops frames from the end, to exactly `frames` rows.
/// The fill is the raw log floor: padding means "silence", not "loud".
pub fn pad_or_crop(m: &LogMel, frames: usize, fill: f32) -> LogMel {
    let mut data = vec![fill; frames * m.bins];
    let keep = m.frames.min(frames) * m.bins;
    data[..keep].copy_from_slice(&m.data[..keep]);
    LogMel {
        frames,
        bins: m.bins,
        data,
    }
}

/// `(x - mean) / (2 * std)`: the AST/MBT normalisation.
pub fn normalize(mut m: LogMel, mean: f32, std: f32) -> LogMel {
    let scale = 1.0 / (2.0 * std);
    m.data.iter_mut().for_each(|v| *v = (*v - mean) * scale);
    m
}

/// Cuts `m` into non-overlapping `pt x pf` patches (see the module docs for the order).
/// Frames or bins that do not fill a whole patch are an error: pad first.
pub fn patches(m: &LogMel, pt: usize, pf: usize) -> Result<Tokens, TokenizeError> {
    if pt == 0 || m.frames % pt != 0 {
        return Err(TokenizeError::config(
            "audio.patch_time",
            format!(
                "expected a divisor of the frame count {}, got {pt}",
                m.frames
            ),
        ));
    }
    if pf == 0 || m.bins % pf != 0 {
        return Err(TokenizeError::config(
            "audio.patch_freq",
            format!("expected a divisor of the bin count {}, got {pf}", m.bins),
        ));
    }
    let (nt, nf) = (m.frames / pt, m.bins / pf);
    let dim = pt * pf;
    let mut data = Vec::with_capacity(nt * nf * dim);
    for ti in 0..nt {
        for fi in 0..nf {
            for dt in 0..pt {
                let row = m.row(ti * pt + dt);
                data.extend_from_slice(&row[fi * pf..(fi + 1) * pf]);
            }
        }
    }
    Ok(Tokens {
        count: nt * nf,
        dim,
        data,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ramp(frames: usize, bins: usize) -> LogMel {
        LogMel {
            frames,
            bins,
            data: (0..frames * bins).map(|i| i as f32).collect(),
        }
    }

    #[test]
    fn pad_and_crop() {
        let m = ramp(3, 2);
        let p = pad_or_crop(&m, 5, -1.0);
        assert_eq!(p.data, vec![0., 1., 2., 3., 4., 5., -1., -1., -1., -1.]);
        let c = pad_or_crop(&m, 2, -1.0);
        assert_eq!(c.data, vec![0., 1., 2., 3.]);
    }

    #[test]
    fn normalization_matches_formula() {
        let m = LogMel {
            frames: 1,
            bins: 2,
            data: vec![1.0, -3.0],
        };
        let n = normalize(m, -1.0, 2.0);
        assert_eq!(n.data, vec![0.5, -0.5]);
    }

    #[test]
    fn patch_order_is_time_major_rows_within() {
        // 4 frames x 4 bins, 2x2 patches; value = frame * 4 + bin.
        let t = patches(&ramp(4, 4), 2, 2).unwrap();
        assert_eq!(t.shape(), [4, 4]);
        assert_eq!(t.row(0), &[0., 1., 4., 5.]); // frames 0-1, bins 0-1
        assert_eq!(t.row(1), &[2., 3., 6., 7.]); // frames 0-1, bins 2-3
        assert_eq!(t.row(2), &[8., 9., 12., 13.]); // frames 2-3, bins 0-1
        assert_eq!(t.row(3), &[10., 11., 14., 15.]);
    }

    #[test]
    fn ragged_shapes_are_errors() {
        assert!(patches(&ramp(5, 4), 2, 2).is_err());
        assert!(patches(&ramp(4, 5), 2, 2).is_err());
    }
}
