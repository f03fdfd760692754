//! The tap-sum kernel for x86_64 with AVX2 and FMA.
//!
//! 32 outputs (four 8-lane accumulators) per block: each tap is broadcast once per block and
//! costs four loads and four fused multiply-adds, and the four independent accumulators hide
//! the FMA latency. Then 8-lane blocks, then one masked block for the last 1..7 outputs, so a
//! short row (the 7- and 14-column planes of the deep layers) stays in vector code.

use std::arch::x86_64::*;

/// `out[i] = bias + sum_t taps[t] * src[offs[t] + i]` for `i < n`.
///
/// # Safety
/// The CPU must have AVX2 and FMA; `src.add(offs[t])` must be readable for `n` floats for
/// every tap and `out` writable for `n` floats.
#[target_feature(enable = "avx2,fma")]
pub unsafe fn tap_sum_avx2_fma(
    src: *const f32,
    offs: &[usize],
    taps: &[f32],
    bias: f32,
    out: *mut f32,
    n: usize,
) {
    unsafe {
        let b = _mm256_set1_ps(bias);
        let mut i = 0usize;
        while i + 32 <= n {
            let (mut a0, mut a1, mut a2, mut a3) = (b, b, b, b);
            for (&o, &t) in offs.iter().zip(taps) {
                let k = _mm256_set1_ps(t);
                let p = src.add(o + i);
                a0 = _mm256_fmadd_ps(_mm256_loadu_ps(p), k, a0);
                a1 = _mm256_fmadd_ps(_mm256_loadu_ps(p.add(8)), k, a1);
                a2 = _mm256_fmadd_ps(_mm256_loadu_ps(p.add(16)), k, a2);
                a3 = _mm256_fmadd_ps(_mm256_loadu_ps(p.add(24)), k, a3);
            }
            _mm256_storeu_ps(out.add(i), a0);
            _mm256_storeu_ps(out.add(i + 8), a1);
            _mm256_storeu_ps(out.add(i + 16), a2);
            _mm256_storeu_ps(out.add(i + 24), a3);
            i += 32;
        }
        while i + 8 <= n {
            let mut a = b;
            for (&o, &t) in offs.iter().zip(taps) {
                a = _mm256_fmadd_ps(_mm256_loadu_ps(src.add(o + i)), _mm256_set1_ps(t), a);
            }
            _mm256_storeu_ps(out.add(i), a);
            i += 8;
        }
        if i < n {
            // Lanes past `n` are neither read nor written: masked loads do not fault there.
            let rest = _mm256_set1_epi32((n - i) as i32);
            let mask = _mm256_cmpgt_epi32(rest, _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
            let mut a = b;
            for (&o, &t) in offs.iter().zip(taps) {
                let x = _mm256_maskload_ps(src.add(o + i), mask);
                a = _mm256_fmadd_ps(x, _mm256_set1_ps(t), a);
            }
            _mm256_maskstore_ps(out.add(i), mask, a);
        }
    }
}
