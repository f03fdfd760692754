//! One channel plane of a depthwise convolution, and the tap-sum kernels it is built on.
//!
//! A *tap-sum* is `out[i] = bias + sum_t taps[t] * src[offs[t] + i]`, every tap a contiguous
//! run of the source. That form is what vectorises: the kernel keeps a block of outputs in
//! registers, broadcasts each tap once per block and streams the inputs with plain loads.
//!
//! [`plane`] makes a whole plane one tap-sum: the input is copied once into a zero-padded
//! buffer split by the stride into phases (phase `(ry, rx)` holds the padded rows
//! `ry, ry + sh, ...` and columns `rx, rx + sw, ...`), where every tap of every output is at a
//! fixed offset from the output's own position; the outputs are computed `pw` (the phase
//! width) to a row, the few extra columns per row dropped when the rows are copied out. So
//! there is no scalar border code, and even the deep layers' 7 x 7 and 4 x 4 planes run in
//! the vector kernel's widest block. The copies are one pass over the input and one over the
//! output, against `kh * kw` multiply-adds per output.
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
    flat: Vec<f32>,
    offs: Vec<usize>,
    taps: Vec<f32>,
}

/// One output plane: `input` is the `h x w` plane, `kernel` the `kh x kw` taps, `out` the
/// `oh x ow` result; `clamp` `(lo, hi)`, when given, bounds every output (a ReLU / ReLU6 the
/// rewrite fused).
///
/// The input is copied once, zero-padded and split into `sh x sw` phases (phase `(ry, rx)`
/// holds the padded rows `ry, ry + sh, ...` and columns `rx, rx + sw, ...`, every phase
/// `ph x pw`). In phase coordinates output `(oy, ox)` reads tap `(ky, kx)` at row
/// `oy + ky / sh`, column `ox + kx / sw` of phase `(ky % sh, kx % sw)`: with the outputs laid
/// out `pw` to a row, every tap is one contiguous run over the whole plane, so the plane is
/// **one** tap-sum call (the long runs keep the vector kernel in its 32-wide, four-accumulator
/// block; the deep layers' 7- and 4-column rows would otherwise each be a short, latency-bound
/// call with a scalar border). The `pw - ow` extra columns of each row are computed and
/// dropped when the rows are copied out (and clamped) into `out`.
#[allow(clippy::too_many_arguments)]
pub fn plane(
    isa: Isa,
    g: &Geometry,
    input: &[f32],
    kernel: &[f32],
    bias: f32,
    clamp: Option<(f32, f32)>,
    out: &mut [f32],
    scratch: &mut Scratch,
) {
    debug_assert_eq!(input.len(), g.h * g.w);
    debug_assert_eq!(kernel.len(), g.kh * g.kw);
    debug_assert_eq!(out.len(), g.oh * g.ow);
    if g.oh == 0 || g.ow == 0 {
        return;
    }
    let (sh, sw) = (g.sh.max(1), g.sw.max(1));
    // Padded size: the input after its top/left padding, grown to what the last output reads
    // (the bottom/right padding), never cut.
    let hp = (g.h + g.pad_top).max((g.oh - 1) * sh + g.kh);
    let wp = (g.w + g.pad_left).max((g.ow - 1) * sw + g.kw);
    let (ph, pw) = (hp.div_ceil(sh), wp.div_ceil(sw));
    let phase_len = ph * pw;
    // One spare row: the last taps' runs pass the end of the last phase by under `pw`.
    let len = sh * sw * phase_len + pw;
    scratch.phases.clear();
    scratch.phases.resize(len, 0.0);
    for y in 0..g.h {
        let py = y + g.pad_top;
        let (ry, qy) = (py % sh, py / sh);
        let row = &input[y * g.w..(y + 1) * g.w];
        for (x, &v) in row.iter().enumerate() {
            let px = x + g.pad_left;
            let (rx, qx) = (px % sw, px / sw);
            scratch.phases[(ry * sw + rx) * phase_len + qy * pw + qx] = v;
        }
    }
    scratch.offs.clear();
    scratch.taps.clear();
    for ky in 0..g.kh {
        for kx in 0..g.kw {
            let phase = (ky % sh) * sw + kx % sw;
            scratch
                .offs
                .push(phase * phase_len + (ky / sh) * pw + kx / sw);
            scratch.taps.push(kernel[ky * g.kw + kx]);
        }
    }
    let n = g.oh * pw;
    scratch.flat.clear();
    scratch.flat.resize(n, 0.0);
    tap_sum(
        isa,
        &scratch.phases,
        &scratch.offs,
        &scratch.taps,
        bias,
        &mut scratch.flat,
    );
    for (row, src) in out
        .chunks_exact_mut(g.ow)
        .zip(scratch.flat.chunks_exact(pw))
    {
        let src = &src[..g.ow];
        match clamp {
            // `max` then `min`: the order of the `Max` and `Min` nodes it replaces.
            Some((lo, hi)) => {
                for (d, &v) in row.iter_mut().zip(src) {
                    *d = v.max(lo).min(hi);
                }
            }
            None => row.copy_from_slice(src),
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
                        for clamp in [None, Some((0.0, 0.5)), Some((-0.25, f32::INFINITY))] {
                            let mut got = vec![f32::NAN; oh * ow];
                            plane(
                                isa,
                                &g,
                                &input,
                                &kernel,
                                0.25,
                                clamp,
                                &mut got,
                                &mut scratch,
                            );
                            let (lo, hi) = clamp.unwrap_or((f32::NEG_INFINITY, f32::INFINITY));
                            let d = got
                                .iter()
                                .zip(&want)
                                .map(|(a, b)| (a - b.max(lo).min(hi)).abs())
                                .fold(0.0, f32::max);
                            assert!(d <= 1e-5, "{isa:?} {g:?} {clamp:?}: {d}");
                        }
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
