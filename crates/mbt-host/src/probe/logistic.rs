//! L2-regularised logistic regression (one-vs-rest over several binary outputs sharing one
//! design matrix) and the ROC AUC: the linear probe of `mbt data probe`.
//!
//! Why our own and not a crate: the probe fits a few dozen small problems (n up to ~12,000
//! clips, d = 1024 or 1280 trunk channels) whose outputs share the features, so one pass over
//! the matrix serves every output; the objective is smooth and strongly convex, so Nesterov's
//! accelerated gradient with the step 1/L (L bounded by power iteration) converges without
//! line searches or tuning. The result is checked against a hand-solved case in the tests.
//!
//! Features are standardised with the training rows' mean and deviation first (kept in the
//! model), so one regularisation strength suits every trunk.

use rayon::prelude::*;

/// A fitted probe: `outputs` binary classifiers over `dim` standardised features.
#[derive(Debug, Clone)]
pub struct Logistic {
    pub dim: usize,
    pub outputs: usize,
    mean: Vec<f32>,
    /// 1 / standard deviation (1 where a feature is constant).
    inv_std: Vec<f32>,
    /// `[outputs, dim]`.
    weights: Vec<f32>,
    bias: Vec<f32>,
}

/// Fitting options.
#[derive(Debug, Clone, Copy)]
pub struct Fit {
    /// The L2 strength on the weights (not the bias), per training row: the objective is the
    /// mean log-loss + `lambda / 2 * |w|^2`.
    pub lambda: f64,
    pub iterations: usize,
}

impl Default for Fit {
    fn default() -> Self {
        Fit {
            lambda: 1e-2,
            iterations: 300,
        }
    }
}

fn sigmoid(z: f64) -> f64 {
    if z >= 0.0 {
        1.0 / (1.0 + (-z).exp())
    } else {
        let e = z.exp();
        e / (1.0 + e)
    }
}

impl Logistic {
    /// Fits `targets[o][i]` (row `i` of output `o` positive?) on `x` (`[rows, dim]`,
    /// row-major). Every output is fitted jointly in one pass over `x` per iteration.
    pub fn fit(x: &[f32], dim: usize, targets: &[Vec<bool>], opt: Fit) -> anyhow::Result<Self> {
        anyhow::ensure!(dim > 0 && x.len() % dim == 0, "probe: bad feature matrix");
        let n = x.len() / dim;
        anyhow::ensure!(n > 0, "probe: no training rows");
        anyhow::ensure!(
            targets.iter().all(|t| t.len() == n),
            "probe: {} rows but targets of other lengths",
            n
        );
        let k = targets.len();
        // Standardise.
        let mut mean = vec![0f64; dim];
        let mut sq = vec![0f64; dim];
        for row in x.chunks_exact(dim) {
            for j in 0..dim {
                let v = row[j] as f64;
                mean[j] += v;
                sq[j] += v * v;
            }
        }
        let mean: Vec<f32> = mean.iter().map(|m| (m / n as f64) as f32).collect();
        let inv_std: Vec<f32> = sq
            .iter()
            .zip(&mean)
            .map(|(s, &m)| {
                let var = s / n as f64 - (m as f64) * (m as f64);
                if var > 1e-12 {
                    (1.0 / var.sqrt()) as f32
                } else {
                    1.0
                }
            })
            .collect();
        let z: Vec<f32> = x
            .chunks_exact(dim)
            .flat_map(|row| {
                row.iter()
                    .zip(&mean)
                    .zip(&inv_std)
                    .map(|((v, m), s)| (v - m) * s)
                    .collect::<Vec<_>>()
            })
            .collect();
        // L <= 1/4 * lambda_max(Z'Z / n) (+ lambda): power iteration (with the bias column).
        let lmax = top_eigenvalue(&z, dim, n);
        let step = 1.0 / (0.25 * lmax + opt.lambda).max(1e-9);
        let y: Vec<f32> = (0..n)
            .flat_map(|i| targets.iter().map(move |t| if t[i] { 1.0 } else { 0.0 }))
            .collect(); // [n, k]
                        // Parameters per output: dim weights then the bias.
        let p = dim + 1;
        let mut w = vec![0f64; k * p];
        let mut w_prev = w.clone();
        for it in 0..opt.iterations {
            // Nesterov: look ahead by the momentum.
            let mom = it as f64 / (it as f64 + 3.0);
            let look: Vec<f64> = w
                .iter()
                .zip(&w_prev)
                .map(|(a, b)| a + mom * (a - b))
                .collect();
            let grad = gradient(&z, &y, dim, k, &look, opt.lambda);
            w_prev = std::mem::replace(
                &mut w,
                look.iter().zip(&grad).map(|(a, g)| a - step * g).collect(),
            );
        }
        let mut weights = Vec::with_capacity(k * dim);
        let mut bias = Vec::with_capacity(k);
        for o in 0..k {
            weights.extend(w[o * p..o * p + dim].iter().map(|&v| v as f32));
            bias.push(w[o * p + dim] as f32);
        }
        Ok(Logistic {
            dim,
            outputs: k,
            mean,
            inv_std,
            weights,
            bias,
        })
    }

    /// The probability of each output for each row of `x`: `[rows][outputs]`.
    pub fn predict(&self, x: &[f32]) -> Vec<Vec<f32>> {
        x.par_chunks_exact(self.dim)
            .map(|row| {
                let z: Vec<f32> = row
                    .iter()
                    .zip(&self.mean)
                    .zip(&self.inv_std)
                    .map(|((v, m), s)| (v - m) * s)
                    .collect();
                (0..self.outputs)
                    .map(|o| {
                        let w = &self.weights[o * self.dim..(o + 1) * self.dim];
                        let s: f64 = z.iter().zip(w).map(|(a, b)| (*a * *b) as f64).sum();
                        sigmoid(s + self.bias[o] as f64) as f32
                    })
                    .collect()
            })
            .collect()
    }

    /// The raw weight of feature `j` for output `o` (on the standardised scale).
    #[cfg(test)]
    fn weight(&self, o: usize, j: usize) -> f32 {
        self.weights[o * self.dim + j]
    }
}

/// The gradient of the mean log-loss + L2 at parameters `w` (`[k, dim + 1]`).
fn gradient(z: &[f32], y: &[f32], dim: usize, k: usize, w: &[f64], lambda: f64) -> Vec<f64> {
    let n = z.len() / dim;
    let p = dim + 1;
    let chunk = 256;
    let mut g = z
        .par_chunks(chunk * dim)
        .enumerate()
        .map(|(c, rows)| {
            let mut g = vec![0f64; k * p];
            for (r, row) in rows.chunks_exact(dim).enumerate() {
                let i = c * chunk + r;
                for o in 0..k {
                    let wo = &w[o * p..o * p + dim];
                    let s: f64 = row.iter().zip(wo).map(|(a, b)| *a as f64 * b).sum();
                    let e = sigmoid(s + w[o * p + dim]) - y[i * k + o] as f64;
                    let go = &mut g[o * p..(o + 1) * p];
                    for (gj, a) in go[..dim].iter_mut().zip(row) {
                        *gj += e * *a as f64;
                    }
                    go[dim] += e;
                }
            }
            g
        })
        .reduce(
            || vec![0f64; k * p],
            |mut a, b| {
                a.iter_mut().zip(b).for_each(|(x, y)| *x += y);
                a
            },
        );
    for o in 0..k {
        for j in 0..p {
            g[o * p + j] /= n as f64;
            if j < dim {
                g[o * p + j] += lambda * w[o * p + j];
            }
        }
    }
    g
}

/// The largest eigenvalue of `[Z 1]'[Z 1] / n` by power iteration (an upper bound of the
/// log-loss Hessian's, times 4).
fn top_eigenvalue(z: &[f32], dim: usize, n: usize) -> f64 {
    let p = dim + 1;
    let mut v = vec![1.0 / (p as f64).sqrt(); p];
    let mut lambda = 1.0;
    for _ in 0..30 {
        // u = Z v, then Z' u / n.
        let u: Vec<f64> = z
            .par_chunks_exact(dim)
            .map(|row| row.iter().zip(&v).map(|(a, b)| *a as f64 * b).sum::<f64>() + v[dim])
            .collect();
        let mut next = vec![0f64; p];
        for (row, ui) in z.chunks_exact(dim).zip(&u) {
            for (nj, a) in next[..dim].iter_mut().zip(row) {
                *nj += *a as f64 * ui;
            }
            next[dim] += ui;
        }
        next.iter_mut().for_each(|x| *x /= n as f64);
        let norm = next.iter().map(|x| x * x).sum::<f64>().sqrt();
        if norm == 0.0 {
            return 1.0;
        }
        lambda = norm;
        v = next.iter().map(|x| x / norm).collect();
    }
    // A little headroom: power iteration approaches the top eigenvalue from below.
    lambda * 1.05
}

/// The area under the ROC curve of `scores` for `positive` rows: the chance that a random
/// positive scores above a random negative, ties counting half (Mann-Whitney). None when
/// either class is empty.
pub fn auc(scores: &[f32], positive: &[bool]) -> Option<f64> {
    let mut idx: Vec<usize> = (0..scores.len()).collect();
    idx.sort_by(|&a, &b| scores[a].total_cmp(&scores[b]));
    let (np, nn) = (
        positive.iter().filter(|&&p| p).count() as f64,
        positive.iter().filter(|&&p| !p).count() as f64,
    );
    if np == 0.0 || nn == 0.0 {
        return None;
    }
    // Average ranks over ties, then U = sum of positive ranks - np (np + 1) / 2.
    let mut rank_sum = 0.0;
    let mut i = 0;
    while i < idx.len() {
        let mut j = i;
        while j + 1 < idx.len() && scores[idx[j + 1]] == scores[idx[i]] {
            j += 1;
        }
        let avg = (i + j) as f64 / 2.0 + 1.0;
        for &r in &idx[i..=j] {
            if positive[r] {
                rank_sum += avg;
            }
        }
        i = j + 1;
    }
    Some((rank_sum - np * (np + 1.0) / 2.0) / (np * nn))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Two rows x = +1 (positive) and x = -1 (negative): by symmetry the bias is 0, and the
    /// mean log-loss gradient + L2 vanishes where 1 - sigma(w') = lambda w', w' the weight on
    /// the standardised feature (x is already mean 0, deviation 1). Solved here by bisection.
    #[test]
    fn matches_the_hand_solved_two_point_problem() {
        let lambda = 0.1;
        let (mut lo, mut hi) = (0.0f64, 10.0f64);
        for _ in 0..100 {
            let mid = 0.5 * (lo + hi);
            if 1.0 - sigmoid(mid) > lambda * mid {
                lo = mid;
            } else {
                hi = mid;
            }
        }
        let want = 0.5 * (lo + hi);
        let m = Logistic::fit(
            &[1.0, -1.0],
            1,
            &[vec![true, false]],
            Fit {
                lambda,
                iterations: 500,
            },
        )
        .unwrap();
        assert!(
            (m.weight(0, 0) as f64 - want).abs() < 1e-4,
            "{} vs {want}",
            m.weight(0, 0)
        );
        assert!(m.bias[0].abs() < 1e-5);
        let p = m.predict(&[1.0, -1.0]);
        assert!((p[0][0] as f64 - sigmoid(want)).abs() < 1e-4);
        assert!((p[1][0] as f64 - sigmoid(-want)).abs() < 1e-4);
    }

    /// Two outputs over two features, each output the sign of its own feature: each probe
    /// leans on its feature, and the joint fit equals two separate fits.
    #[test]
    fn outputs_are_independent_problems_sharing_the_rows() {
        let x: Vec<f32> = (0..200)
            .flat_map(|i| {
                let a = ((i * 37) % 101) as f32 / 50.0 - 1.0;
                let b = ((i * 53) % 97) as f32 / 48.0 - 1.0;
                [a, b]
            })
            .collect();
        let ya: Vec<bool> = x.chunks(2).map(|r| r[0] > 0.1).collect();
        let yb: Vec<bool> = x.chunks(2).map(|r| r[1] < -0.2).collect();
        let opt = Fit::default();
        let both = Logistic::fit(&x, 2, &[ya.clone(), yb], opt).unwrap();
        let a = Logistic::fit(&x, 2, std::slice::from_ref(&ya), opt).unwrap();
        assert!(both.weight(0, 0) > 1.0 && both.weight(0, 0).abs() > 5.0 * both.weight(0, 1).abs());
        assert!(both.weight(1, 1) < -1.0);
        assert!((both.weight(0, 0) - a.weight(0, 0)).abs() < 1e-4);
        let p = both.predict(&x);
        let acc = p
            .iter()
            .zip(&ya)
            .filter(|(p, &y)| (p[0] > 0.5) == y)
            .count();
        assert!(acc >= 190, "{acc} of 200");
    }

    #[test]
    fn auc_counts_pairs_and_ties_by_hand() {
        // Positives 0.9, 0.4; negatives 0.5, 0.1: pairs (0.9>0.5, 0.9>0.1, 0.4<0.5, 0.4>0.1) = 3/4.
        let s = [0.9, 0.5, 0.4, 0.1];
        let p = [true, false, true, false];
        assert_eq!(auc(&s, &p), Some(0.75));
        // A tie between a positive and a negative counts half: (1 + 0.5) / 2.
        assert_eq!(auc(&[0.3, 0.3, 0.9], &[false, true, true]), Some(0.75));
        assert_eq!(auc(&[0.1, 0.2], &[true, true]), None);
    }
}
