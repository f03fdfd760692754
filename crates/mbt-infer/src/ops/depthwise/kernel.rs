//! One channel plane of a depthwise convolution, and the tap-sum kernels it is built on.
//!
//! A plane is cut in two: the **interior** columns, where every kernel tap lands inside the
//! input row, and the few **border** columns a padded convolution has at each side. The border
//! is summed tap by tap with bounds checks (scalar; for a 3 x 3 SAME convolution it is one
//! column per side). The interior of each output row is one call of a *tap-sum* kernel:
//! `out[i] = bias + sum_t taps[t] * src[offs[t] + i]`, every tap a contiguous run of the
//! source. That form is what vectorises: the kernel keeps a block of outputs in registers,
//! broadcasts each tap once per block and streams the inputs with plain loads.
//!
//! A horizontal stride `s > 1` would break the contiguity (output `i` reads input column
//! `s * i + kx`), so the plane's input is first split into `s` **phases** (phase `r` holds the
//! columns `r, r + s, r + 2s, ...`); in phase coordinates every tap is contiguous again, and the
//! same kernel runs. The split is one pass over the input, paid once per plane against the
//! `kh * kw / s` reads each input value gets. Vertical stride only picks the rows.
//!
//! Rows of taps that fall in the top or bottom padding are skipped (zero padding adds nothing),
//! so no padded copy of the input is ever made.
//!
//! The summation order is the bias, then the taps row by row: the order of tract's own
//! operator. The vector kernels use fused multiply-add where the CPU has it, so results differ
//! from tract's (which multiplies, then adds) by rounding only: a few ulp.

/// The shape of one plane's convolution: input `h x w`, kernel `kh x kw`, strides, the padding
/// before each axis (after-padding only shows in `oh`, `ow`), and the output size.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Geometry {
    pub h: usize,
    pub w: usize,
    pub kh: usize,
    pub kw: usize,
    pub sh: usize,
    pub sw: usize,
    pub pad_top: usize,
    pub pad_left: usize,
    pub oh: usize,
    pub ow: usize,
}

impl Geometry {
    /// The output columns `[lo, hi)` whose every tap is inside the input row.
    pub fn interior_columns(&self) -> (usize, usize) {
        let lo = self.pad_left.div_ceil(self.sw).min(self.ow);
        if self.w + self.pad_left < self.kw {
            return (lo, lo);
        }
        let hi = ((self.w + self.pad_left - self.kw) / self.sw + 1).min(self.ow);
        (lo, hi.max(lo))
    }

    /// Columns of one phase when the input is split by the horizontal stride.
    fn phase_width(&self) -> usize {
        self.w.div_ceil(self.sw)
    }

    /// Scratch floats [`plane`] needs: the phase split when the horizontal stride is above 1.
    pub fn scratch_len(&self) -> usize {
        if self.sw > 1 {
            self.sw * self.h * self.phase_width()
        } else {
            0
        }
    }
}

/// Which tap-sum kernel runs: picked once per process from what the CPU has.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Isa {
    /// Plain Rust, any target; also the reference the vector kernels are tested against.
    Portable,
    /// x86_64 with AVX2 and FMA (detected at run time).
    #[cfg(target_arch = "x86_64")]
    Avx2Fma,
    /// aarch64 Advanced SIMD (part of the aarch64 baseline, so never absent).
    #[cfg(target_arch = "aarch64")]
    Neon,
}

impl Isa {
    /// The best kernel this CPU runs, detected on the first call.
    pub fn detect() -> Isa {
        static ISA: std::sync::OnceLock<Isa> = std::sync::OnceLock::new();
        *ISA.get_or_init(|| {
            #[cfg(target_arch = "x86_64")]
            if std::is_x86_feature_detected!("avx2") && std::is_x86_feature_detected!("fma") {
                return Isa::Avx2Fma;
            }
            #[cfg(target_arch = "aarch64")]
            if std::arch::is_aarch64_feature_detected!("neon") {
                return Isa::Neon;
            }
            Isa::Portable
        })
    }

    pub fn name(self) -> &'static str {
        match self {
            Isa::Portable => "portable",
            #[cfg(target_arch = "x86_64")]
            Isa::Avx2Fma => "avx2+fma",
            #[cfg(target_arch = "aarch64")]
            Isa::Neon => "neon",
        }
    }
}

/// `out[i] = bias + sum_t taps[t] * src[offs[t] + i]` for every `i` of `out`.
///
/// Panics (a bug in the caller, not bad input) when a tap's run leaves `src`: the vector
/// kernels rely on that one check for their unchecked loads.
pub fn tap_sum(isa: Isa, src: &[f32], offs: &[usize], taps: &[f32], bias: f32, out: &mut [f32]) {
    assert_eq!(offs.len(), taps.len());
    let n = out.len();
    assert!(
        offs.iter().all(|&o| o + n <= src.len()),
        "depthwise tap run outside its source"
    );
    match isa {
        Isa::Portable => tap_sum_portable(src, offs, taps, bias, out),
        // SAFETY: every run `offs[t] .. offs[t] + n` is inside `src` (checked above), `out`
        // holds `n` values, and `Isa::detect` only picks these when the CPU has them.
        #[cfg(target_arch = "x86_64")]
        Isa::Avx2Fma => unsafe {
            super::x86::tap_sum_avx2_fma(src.as_ptr(), offs, taps, bias, out.as_mut_ptr(), n)
        },
        #[cfg(target_arch = "aarch64")]
        Isa::Neon => unsafe {
            super::neon::tap_sum_neon(src.as_ptr(), offs, taps, bias, out.as_mut_ptr(), n)
        },
    }
}

fn tap_sum_portable(src: &[f32], offs: &[usize], taps: &[f32], bias: f32, out: &mut [f32]) {
    let n = out.len();
    out.fill(bias);
    for (&o, &t) in offs.iter().zip(taps) {
        for (y, &x) in out.iter_mut().zip(&src[o..o + n]) {
            *y += t * x;
        }
    }
}

/// Reusable per-thread buffers for [`plane`].
#[derive(Debug, Default)]
pub struct Scratch {
    phases: Vec<f32>,
    offs: Vec<usize>,
    taps: Vec<f32>,
}

/// One output plane: `input` is the `h x w` plane, `kernel` the `kh x kw` taps, `out` the
/// `oh x ow` result.
pub fn plane(
    isa: Isa,
    g: &Geometry,
    input: &[f32],
    kernel: &[f32],
    bias: f32,
    out: &mut [f32],
    scratch: &mut Scratch,
) {
    debug_assert_eq!(input.len(), g.h * g.w);
    debug_assert_eq!(kernel.len(), g.kh * g.kw);
    debug_assert_eq!(out.len(), g.oh * g.ow);
    let (lo, hi) = g.interior_columns();
    let pw = g.phase_width();
    let src: &[f32] = if g.sw > 1 {
        split_phases(g, input, &mut scratch.phases);
        &scratch.phases
    } else {
        input
    };
    for oy in 0..g.oh {
        let row = &mut out[oy * g.ow..(oy + 1) * g.ow];
        // Kernel rows that land inside the input for this output row.
        let top = (oy * g.sh) as isize - g.pad_top as isize;
        let ky0 = (-top).max(0) as usize;
        let ky1 = ((g.h as isize - top).max(0) as usize).min(g.kh);
        if hi > lo {
            scratch.offs.clear();
            scratch.taps.clear();
            for ky in ky0..ky1 {
                let iy = (top + ky as isize) as usize;
                for kx in 0..g.kw {
                    let d = kx as isize - g.pad_left as isize;
                    let off = if g.sw > 1 {
                        let (q, r) = (d.div_euclid(g.sw as isize), d.rem_euclid(g.sw as isize));
                        (r as usize * g.h + iy) * pw + (lo as isize + q) as usize
                    } else {
                        iy * g.w + (lo as isize + d) as usize
                    };
                    scratch.offs.push(off);
                    scratch.taps.push(kernel[ky * g.kw + kx]);
                }
            }
            tap_sum(
                isa,
                src,
                &scratch.offs,
                &scratch.taps,
                bias,
                &mut row[lo..hi],
            );
        }
        for ox in (0..lo).chain(hi..g.ow) {
            let left = (ox * g.sw) as isize - g.pad_left as isize;
            let mut acc = bias;
            for ky in ky0..ky1 {
                let iy = (top + ky as isize) as usize;
                for kx in 0..g.kw {
                    let ix = left + kx as isize;
                    if ix >= 0 && (ix as usize) < g.w {
                        acc += kernel[ky * g.kw + kx] * input[iy * g.w + ix as usize];
                    }
                }
            }
            row[ox] = acc;
        }
    }
}

/// Splits the plane's columns by the horizontal stride: phase `r`, row `y`, column `j` holds
/// input `(y, j * sw + r)` (zero past the row's end, never read by the interior).
fn split_phases(g: &Geometry, input: &[f32], phases: &mut Vec<f32>) {
    let pw = g.phase_width();
    phases.clear();
    phases.resize(g.scratch_len(), 0.0);
    for r in 0..g.sw {
        for y in 0..g.h {
            let dst = &mut phases[(r * g.h + y) * pw..(r * g.h + y + 1) * pw];
            let row = &input[y * g.w..(y + 1) * g.w];
            for (d, s) in dst.iter_mut().zip(row.iter().skip(r).step_by(g.sw)) {
                *d = *s;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The definition, with no cleverness: every output sums its in-bounds taps.
    fn naive(g: &Geometry, input: &[f32], kernel: &[f32], bias: f32) -> Vec<f32> {
        let mut out = vec![0.0; g.oh * g.ow];
        for oy in 0..g.oh {
            for ox in 0..g.ow {
                let mut acc = bias;
                for ky in 0..g.kh {
                    for kx in 0..g.kw {
                        let iy = (oy * g.sh + ky) as isize - g.pad_top as isize;
                        let ix = (ox * g.sw + kx) as isize - g.pad_left as isize;
                        if iy >= 0 && ix >= 0 && (iy as usize) < g.h && (ix as usize) < g.w {
                            acc += kernel[ky * g.kw + kx] * input[iy as usize * g.w + ix as usize];
                        }
                    }
                }
                out[oy * g.ow + ox] = acc;
            }
        }
        out
    }

    fn values(n: usize, seed: u32) -> Vec<f32> {
        let mut s = seed.wrapping_mul(2654435761).wrapping_add(1);
        (0..n)
            .map(|_| {
                s = s.wrapping_mul(1664525).wrapping_add(1013904223);
                (s >> 8) as f32 / (1u32 << 24) as f32 * 2.0 - 1.0
            })
            .collect()
    }

    #[test]
    fn every_kernel_matches_the_definition() {
        let mut isas = vec![Isa::Portable];
        if Isa::detect() != Isa::Portable {
            isas.push(Isa::detect());
        }
        let mut scratch = Scratch::default();
        for (h, w) in [(1usize, 1usize), (3, 2), (7, 7), (9, 40), (33, 17)] {
            for (k, s) in [
                (1usize, 1usize),
                (3, 1),
                (3, 2),
                (5, 1),
                (5, 2),
                (3, 3),
                (4, 2),
            ] {
                for pad in [0, 1, k / 2, k - 1] {
                    let oh = (h + 2 * pad).saturating_sub(k) / s + 1;
                    let ow = (w + 2 * pad).saturating_sub(k) / s + 1;
                    if h + 2 * pad < k || w + 2 * pad < k {
                        continue;
                    }
                    let g = Geometry {
                        h,
                        w,
                        kh: k,
                        kw: k,
                        sh: s,
                        sw: s,
                        pad_top: pad,
                        pad_left: pad,
                        oh,
                        ow,
                    };
                    let input = values(h * w, 1);
                    let kernel = values(k * k, 2);
                    let want = naive(&g, &input, &kernel, 0.25);
                    for &isa in &isas {
                        let mut got = vec![f32::NAN; oh * ow];
                        plane(isa, &g, &input, &kernel, 0.25, &mut got, &mut scratch);
                        let d = got
                            .iter()
                            .zip(&want)
                            .map(|(a, b)| (a - b).abs())
                            .fold(0.0, f32::max);
                        assert!(d <= 1e-5, "{isa:?} {g:?}: {d}");
                    }
                }
            }
        }
    }

    #[test]
    fn the_vector_kernel_handles_every_tail_length() {
        let isa = Isa::detect();
        let src = values(200, 3);
        let taps = values(9, 4);
        let offs: Vec<usize> = (0..9).map(|t| t * 7).collect();
        for n in 0..=(200 - 8 * 7) {
            let mut want = vec![0.0; n];
            tap_sum_portable(&src, &offs, &taps, -0.5, &mut want);
            let mut got = vec![f32::NAN; n];
            tap_sum(isa, &src, &offs, &taps, -0.5, &mut got);
            for (a, b) in got.iter().zip(&want) {
                assert!((a - b).abs() <= 1e-5, "{isa:?} n={n}: {a} vs {b}");
            }
        }
    }
}
