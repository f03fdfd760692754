//! Which split each source file of an import goes to: per label, a seeded shuffle and the
//! validation and test shares, so windows of one recording never sit on both sides of an
//! evaluation. Pure: no files, no decoding.

use super::super::pool::Split;
use super::super::rng::Rng;

/// A stable 64-bit key of a label (FNV-1a), for per-label random streams.
fn key(s: &str) -> u64 {
    s.bytes().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ b as u64).wrapping_mul(0x0100_0000_01b3)
    })
}

/// The split of each item: per label (an item's first), a seeded shuffle, then `test` and
/// `val` shares rounded, at least one file each where a label has three or more (two: train
/// and val), and always at least one in train.
pub fn assign_splits(labels: &[&str], val: f64, test: f64, seed: u64) -> Vec<Split> {
    let mut out = vec![Split::Train; labels.len()];
    let mut names: Vec<&str> = labels.to_vec();
    names.sort_unstable();
    names.dedup();
    for name in names {
        let mut idx: Vec<usize> = (0..labels.len()).filter(|&i| labels[i] == name).collect();
        Rng::new(seed, &[0x5B117, key(name)]).shuffle(&mut idx);
        let n = idx.len();
        let mut nt = (n as f64 * test).round() as usize;
        let mut nv = (n as f64 * val).round() as usize;
        if n >= 3 {
            nt = if test > 0.0 { nt.max(1) } else { nt };
            nv = if val > 0.0 { nv.max(1) } else { nv };
        } else if n == 2 && val > 0.0 {
            nv = nv.max(1);
        }
        while nt + nv > n.saturating_sub(1) {
            if nt >= nv && nt > 0 {
                nt -= 1;
            } else {
                nv -= 1;
            }
        }
        for (k, &i) in idx.iter().enumerate() {
            out[i] = if k < nt {
                Split::Test
            } else if k < nt + nv {
                Split::Val
            } else {
                Split::Train
            };
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_are_by_label_seeded_and_keep_train() {
        let labels: Vec<&str> = (0..20).map(|i| if i < 10 { "a" } else { "b" }).collect();
        let s = assign_splits(&labels, 0.2, 0.2, 7);
        for l in ["a", "b"] {
            let of = |x: Split| (0..20).filter(|&i| labels[i] == l && s[i] == x).count();
            assert_eq!(
                (of(Split::Train), of(Split::Val), of(Split::Test)),
                (6, 2, 2)
            );
        }
        assert_eq!(s, assign_splits(&labels, 0.2, 0.2, 7));
        assert_ne!(s, assign_splits(&labels, 0.2, 0.2, 8));
        // Few files: one each where there are three, train and val for two, train for one.
        let count = |v: &[Split], x: Split| v.iter().filter(|s| **s == x).count();
        let three = assign_splits(&["a"; 3], 0.1, 0.1, 0);
        assert_eq!(
            [Split::Train, Split::Val, Split::Test].map(|x| count(&three, x)),
            [1, 1, 1]
        );
        let two = assign_splits(&["a"; 2], 0.1, 0.1, 0);
        assert_eq!(
            [Split::Train, Split::Val, Split::Test].map(|x| count(&two, x)),
            [1, 1, 0]
        );
        assert_eq!(assign_splits(&["a"], 0.5, 0.4, 0), [Split::Train]);
    }
}
