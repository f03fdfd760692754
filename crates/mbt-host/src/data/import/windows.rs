//! Cutting a recording into training windows and labelling each from the user's time spans.
//!
//! Windows are `WINDOW` seconds long and start every `hop` seconds from 0 (the daemon's own
//! grid). A window may run past the decoded end by at most [`OVERRUN`] (one frame at 8 fps):
//! containers round durations to their own time base, and a 5 s clip decoding to 4.98 s must
//! still give its last window (the missing samples are silence, the missing frame repeats).
//!
//! A labelled span `[start, end]` *claims* a window when the whole span lies inside it or the
//! span fills at least half of it: a short bark anywhere in the window, a long one covering
//! most of it. A window that a span only grazes is ambiguous (the event may be mostly outside
//! it) and is never used; a window claimed by two different labels is skipped too. Windows
//! that no span touches are background: skipped, or labelled `--background-label`.

/// Window length, seconds (the model's input).
pub const WINDOW: f64 = 2.0;
/// How far a window may run past the decoded end, seconds.
pub const OVERRUN: f64 = 0.125;

/// A label over the whole file (`span: None`) or over `[start, end]` seconds.
#[derive(Debug, Clone, PartialEq)]
pub struct Segment {
    pub label: String,
    pub span: Option<(f64, f64)>,
}

/// What became of one window.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    Labelled(String),
    /// Touched by a span without being claimed by it.
    Partial,
    /// Claimed by spans of different labels.
    Conflict,
    /// Touched by no span, and no background label.
    Background,
}

/// Start times of the windows of a `duration`-second recording.
pub fn starts(duration: f64, hop: f64) -> Vec<f64> {
    if !(duration.is_finite() && hop > 0.0) || duration + OVERRUN < WINDOW {
        return Vec::new();
    }
    let n = ((duration + OVERRUN - WINDOW) / hop + 1e-9).floor() as usize + 1;
    (0..n).map(|i| i as f64 * hop).collect()
}

/// The outcome of the window starting at `t`.
pub fn label_window(t: f64, segments: &[Segment], background: Option<&str>) -> Outcome {
    let (a, b) = (t, t + WINDOW);
    let mut claimed: Vec<&str> = Vec::new();
    let mut touched = false;
    for s in segments {
        match s.span {
            None => claimed.push(&s.label),
            Some((start, end)) => {
                let overlap = (b.min(end) - a.max(start)).max(0.0);
                if overlap <= 0.0 {
                    continue;
                }
                touched = true;
                if overlap + 1e-9 >= (WINDOW / 2.0).min(end - start) {
                    claimed.push(&s.label);
                }
            }
        }
    }
    claimed.sort_unstable();
    claimed.dedup();
    match (claimed.as_slice(), touched, background) {
        ([one], _, _) => Outcome::Labelled(one.to_string()),
        ([_, _, ..], _, _) => Outcome::Conflict,
        ([], true, _) => Outcome::Partial,
        ([], false, Some(bg)) => Outcome::Labelled(bg.to_string()),
        ([], false, None) => Outcome::Background,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn seg(label: &str, span: Option<(f64, f64)>) -> Segment {
        Segment {
            label: label.into(),
            span,
        }
    }

    #[test]
    fn window_counts_follow_duration_and_hop() {
        // floor((d - 2) / hop) + 1, with one frame of slack at the end.
        assert_eq!(starts(5.0, 1.0), [0.0, 1.0, 2.0, 3.0]);
        assert_eq!(starts(5.0, 0.5).len(), 7);
        assert_eq!(starts(4.9, 1.0).len(), 3 + 1); // 4.9 + 0.125 >= 5
        assert_eq!(starts(4.8, 1.0).len(), 3);
        assert_eq!(starts(1.5, 1.0).len(), 0);
        assert_eq!(starts(2.0, 1.0).len(), 1);
        assert!(starts(10.0, 0.0).is_empty());
    }

    #[test]
    fn spans_claim_windows_they_fill_or_fit_in() {
        let s = [seg("dog", Some((3.2, 3.6)))];
        assert_eq!(label_window(2.0, &s, None), Outcome::Labelled("dog".into()));
        assert_eq!(label_window(3.0, &s, None), Outcome::Labelled("dog".into()));
        assert_eq!(label_window(0.0, &s, None), Outcome::Background);
        assert_eq!(
            label_window(0.0, &s, Some("none")),
            Outcome::Labelled("none".into())
        );
        // A long span: windows it covers by half or more.
        let s = [seg("alarm", Some((4.0, 10.0)))];
        assert_eq!(
            label_window(3.0, &s, None),
            Outcome::Labelled("alarm".into())
        );
        assert_eq!(label_window(2.5, &s, None), Outcome::Partial);
        assert_eq!(
            label_window(9.0, &s, None),
            Outcome::Labelled("alarm".into())
        );
        assert_eq!(label_window(9.5, &s, Some("none")), Outcome::Partial);
        let both = [seg("a", Some((0.0, 2.0))), seg("b", Some((1.0, 3.0)))];
        assert_eq!(label_window(0.5, &both, None), Outcome::Conflict);
        assert_eq!(
            label_window(0.0, &[seg("x", None)], None),
            Outcome::Labelled("x".into())
        );
    }
}
