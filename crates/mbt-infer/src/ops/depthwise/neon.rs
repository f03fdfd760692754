//! The tap-sum kernel for aarch64 Advanced SIMD (NEON, part of the aarch64 baseline).
//!
//! 16 outputs (four 4-lane accumulators) per block, then 4-lane blocks, then a scalar tail:
//! the same shape as the AVX2 kernel at half the width.

use std::arch::aarch64::*;

/// `out[i] = bias + sum_t taps[t] * src[offs[t] + i]` for `i < n`.
///
/// # Safety
/// `src.add(offs[t])` must be readable for `n` floats for every tap and `out` writable for
/// `n` floats.
pub unsafe fn tap_sum_neon(
    src: *const f32,
    offs: &[usize],
    taps: &[f32],
    bias: f32,
    out: *mut f32,
    n: usize,
) {
    unsafe {
        let b = vdupq_n_f32(bias);
        let mut i = 0usize;
        while i + 16 <= n {
            let (mut a0, mut a1, mut a2, mut a3) = (b, b, b, b);
            for (&o, &t) in offs.iter().zip(taps) {
                let k = vdupq_n_f32(t);
                let p = src.add(o + i);
                a0 = vfmaq_f32(a0, vld1q_f32(p), k);
                a1 = vfmaq_f32(a1, vld1q_f32(p.add(4)), k);
                a2 = vfmaq_f32(a2, vld1q_f32(p.add(8)), k);
                a3 = vfmaq_f32(a3, vld1q_f32(p.add(12)), k);
            }
            vst1q_f32(out.add(i), a0);
            vst1q_f32(out.add(i + 4), a1);
            vst1q_f32(out.add(i + 8), a2);
            vst1q_f32(out.add(i + 12), a3);
            i += 16;
        }
        while i + 4 <= n {
            let mut a = b;
            for (&o, &t) in offs.iter().zip(taps) {
                a = vfmaq_f32(a, vld1q_f32(src.add(o + i)), vdupq_n_f32(t));
            }
            vst1q_f32(out.add(i), a);
            i += 4;
        }
        while i < n {
            let mut a = bias;
            for (&o, &t) in offs.iter().zip(taps) {
                a = (*src.add(o + i)).mul_add(t, a);
            }
            *out.add(i) = a;
            i += 1;
        }
    }
}
