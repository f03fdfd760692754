//! The generator's random numbers: xoshiro256** seeded through SplitMix64.
//!
//! Our own ~40 lines instead of the `rand` crate, because the data set must stay byte-identical
//! for a given seed across dependency upgrades (`rand` does not promise stable streams across
//! versions). Every clip gets its own stream derived from `(seed, split, index)`, so clips can be
//! rendered in any order, on any number of threads, with identical results.

/// A small, fast, seedable generator (Blackman & Vigna's xoshiro256**).
#[derive(Debug, Clone)]
pub struct Rng {
    s: [u64; 4],
}

fn splitmix(x: &mut u64) -> u64 {
    *x = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    let mut z = *x;
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

impl Rng {
    /// A stream for `seed` and any number of further keys (split, clip index, purpose).
    pub fn new(seed: u64, keys: &[u64]) -> Self {
        let mut x = seed;
        for &k in keys {
            x = splitmix(&mut x) ^ k.wrapping_mul(0xD1B5_4A32_D192_ED03);
        }
        let s = [
            splitmix(&mut x),
            splitmix(&mut x),
            splitmix(&mut x),
            splitmix(&mut x),
        ];
        Rng { s }
    }

    pub fn next_u64(&mut self) -> u64 {
        let r = self.s[1].wrapping_mul(5).rotate_left(7).wrapping_mul(9);
        let t = self.s[1] << 17;
        self.s[2] ^= self.s[0];
        self.s[3] ^= self.s[1];
        self.s[1] ^= self.s[2];
        self.s[0] ^= self.s[3];
        self.s[2] ^= t;
        self.s[3] = self.s[3].rotate_left(45);
        r
    }

    /// Uniform in [0, 1) with 53 random bits.
    pub fn f64(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 * (1.0 / (1u64 << 53) as f64)
    }

    /// Uniform in [lo, hi).
    pub fn range(&mut self, lo: f64, hi: f64) -> f64 {
        lo + (hi - lo) * self.f64()
    }

    /// Uniform integer in [0, n); `n` must be positive.
    pub fn below(&mut self, n: usize) -> usize {
        (((self.next_u64() >> 11) as u128 * n as u128) >> 53) as usize
    }

    /// A uniformly chosen element; `items` must not be empty.
    pub fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len())]
    }

    /// Standard normal (Box-Muller).
    pub fn normal(&mut self) -> f64 {
        let u = 1.0 - self.f64();
        let v = self.f64();
        (-2.0 * u.ln()).sqrt() * (2.0 * std::f64::consts::PI * v).cos()
    }

    pub fn chance(&mut self, p: f64) -> bool {
        self.f64() < p
    }

    /// Fisher-Yates shuffle.
    pub fn shuffle<T>(&mut self, v: &mut [T]) {
        for i in (1..v.len()).rev() {
            let j = self.below(i + 1);
            v.swap(i, j);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn streams_are_reproducible_and_keyed() {
        let a: Vec<u64> = (0..4).map(|_| Rng::new(7, &[1, 2]).next_u64()).collect();
        assert!(a.windows(2).all(|w| w[0] == w[1]));
        assert_ne!(
            Rng::new(7, &[1, 2]).next_u64(),
            Rng::new(7, &[2, 1]).next_u64()
        );
        assert_ne!(Rng::new(7, &[1]).next_u64(), Rng::new(8, &[1]).next_u64());
    }

    #[test]
    fn uniform_draws_look_uniform() {
        let mut r = Rng::new(1, &[]);
        let n = 60_000;
        let mut counts = [0usize; 6];
        let mut sum = 0.0;
        for _ in 0..n {
            counts[r.below(6)] += 1;
            sum += r.f64();
        }
        for c in counts {
            assert!((c as f64 - n as f64 / 6.0).abs() < 400.0, "{counts:?}");
        }
        assert!((sum / n as f64 - 0.5).abs() < 0.01);
    }
}
