// Each example uses a part of this module.
#![allow(dead_code)]

//! What the benchmark examples share: the same inputs and the same timing loop for every
//! runtime they compare.

use std::time::Instant;

/// Deterministic pseudo-random values in [-1, 1] for `n` windows of `(tokens, dim)` (no RNG
/// dependency, identical for every runtime).
pub fn inputs(n: usize, (t, p): (usize, usize), salt: u32) -> Vec<f32> {
    let mut x = 0x9E37_79B9u32 ^ salt;
    (0..n * t * p)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            (x as f32 / u32::MAX as f32) * 2.0 - 1.0
        })
        .collect()
}

/// Median wall time of `run` in milliseconds over `runs` calls, after two warm-up calls.
pub fn median_ms<E: std::fmt::Display>(
    runs: usize,
    run: impl FnMut() -> Result<(), E>,
) -> Result<f64, String> {
    median_ms_after(2, runs, run)
}

/// [`median_ms`] with `warmups` warm-up calls (0 for models that take minutes per call).
pub fn median_ms_after<E: std::fmt::Display>(
    warmups: usize,
    runs: usize,
    mut run: impl FnMut() -> Result<(), E>,
) -> Result<f64, String> {
    for _ in 0..warmups {
        run().map_err(|e| e.to_string())?;
    }
    let mut t = Vec::with_capacity(runs);
    for _ in 0..runs.max(1) {
        let t0 = Instant::now();
        run().map_err(|e| e.to_string())?;
        t.push(t0.elapsed().as_secs_f64() * 1e3);
    }
    t.sort_by(f64::total_cmp);
    Ok(t[t.len() / 2])
}

/// The largest difference between two runs' outputs, over all three logit vectors.
pub fn max_abs_diff(a: &mbt_infer::Logits, b: &mbt_infer::Logits) -> f32 {
    a.fused
        .iter()
        .chain(&a.video)
        .chain(&a.audio)
        .zip(b.fused.iter().chain(&b.video).chain(&b.audio))
        .map(|(x, y)| (x - y).abs())
        .fold(0f32, f32::max)
}
