//! Uniform temporal sampling of `T` frames from the `n` a window holds.
//!
//! Frame `i` of the output is input `floor((i + 0.5) * n / T)`: the centre of the `i`-th of `T`
//! equal slices of the window. With `n >= T` every slice contributes a distinct frame; with
//! `n < T` frames repeat (a camera that delivered too few frames still yields a valid input, and
//! the daemon counts the shortfall).

use crate::error::TokenizeError;

pub fn uniform_indices(n: usize, t: usize) -> Result<Vec<usize>, TokenizeError> {
    if n == 0 {
        return Err(TokenizeError::EmptyVideo);
    }
    if t == 0 {
        return Err(TokenizeError::config(
            "video.num_frames",
            "must be positive",
        ));
    }
    // Integer form of floor((i + 0.5) n / t) = floor((2i + 1) n / 2t): exact, no float rounding.
    Ok((0..t).map(|i| ((2 * i + 1) * n) / (2 * t)).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hand_computed_cases() {
        assert_eq!(
            uniform_indices(16, 8).unwrap(),
            vec![1, 3, 5, 7, 9, 11, 13, 15]
        );
        assert_eq!(uniform_indices(8, 8).unwrap(), (0..8).collect::<Vec<_>>());
        assert_eq!(uniform_indices(3, 6).unwrap(), vec![0, 0, 1, 1, 2, 2]);
        assert_eq!(uniform_indices(50, 4).unwrap(), vec![6, 18, 31, 43]);
        assert_eq!(uniform_indices(1, 3).unwrap(), vec![0, 0, 0]);
    }

    #[test]
    fn errors() {
        assert_eq!(uniform_indices(0, 8), Err(TokenizeError::EmptyVideo));
        assert!(uniform_indices(5, 0).is_err());
    }
}
