//! Per-window scores -> debounced events: thresholds with hysteresis, minimum duration,
//! cool-down. Pure: scored windows in, [`Event`]s out; the unit tests walk hand-made score
//! sequences.
//!
//! Each label (but `none`, the model's "nothing happening" class) is tracked on its own:
//!
//! * **open**: its score reaches `threshold` (and the label is not cooling down);
//! * **minimum duration**: with `min_duration_s > 0` the opening is held back (no `new` yet)
//!   until the label has stayed active over windows whose centres lie that far apart; if it
//!   drops before, nothing is reported;
//! * **hysteresis**: once open it stays open while the score is at least `release`;
//! * **end**: the first window below `release` ends it;
//! * **cool-down**: the same label cannot open again before `cooldown_s` after that end (a
//!   door that bangs twice in a second is one event).
//!
//! Times: a window only says the sound or sight lies somewhere inside it. The start reported
//! is the start of the first window that saw the label, moved up to the end of the previous
//! window if that one did not see it (the onset must lie after it). The end is the end of the
//! last window that saw it, moved back to the start of the first window that no longer did.
//! With 2 s windows at a 1 s hop that brackets the onset within about a second.
//! `start_s`/`end_s` are those times on the run's monotonic clock; `start_ms`/`end_ms` the same
//! instants in Unix time, from the wall clock as it reads at the window ([`WallTime`]).
//!
//! Scores: `score` is the event's peak fused probability (with one modality, that stream's own
//! head), with the per-modality scores of the same window. An `update` goes out when the peak
//! rose by `update_delta` or the modalities behind the event changed.

use mbt_core::event::{Event, EventKind, Modalities, EVENT_SCHEMA};
use serde::Serialize;

use crate::clock::{secs_to_us, us_to_secs, Clock, Micros, Step, WallTime};
use crate::config::EventsConfig;
use crate::detector::Scored;

/// The label that never produces events.
pub const NO_EVENT_LABEL: &str = "none";

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LabelParams {
    pub threshold: f32,
    pub release: f32,
    pub min_duration_us: Micros,
    pub cooldown_us: Micros,
}

/// The highest score a label reached over a run, the window where it did, and the threshold
/// it had to reach: `mbtd`'s exit report carries one per label, because "no events" alone
/// does not tell a user whether the model saw nothing or saw something just under the bar.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct LabelPeak {
    pub label: String,
    pub score: f32,
    /// The window (start, end) on the run's clock, in seconds.
    pub window_s: (f64, f64),
    pub threshold: f32,
}

#[derive(Debug, Clone, Copy, PartialEq)]
struct Peak {
    score: f32,
    audio: Option<f32>,
    video: Option<f32>,
}

#[derive(Debug, Clone, PartialEq)]
enum State {
    Idle,
    /// Above threshold, waiting for the minimum duration.
    Pending {
        start: Micros,
        first_centre: Micros,
        last_end: Micros,
        peak: Peak,
    },
    Open {
        id: String,
        start: Micros,
        last_end: Micros,
        peak: Peak,
        reported: f32,
        modalities: Modalities,
    },
}

#[derive(Debug, Clone)]
struct Track {
    label: String,
    class: usize,
    params: LabelParams,
    /// `false`: switched off (`enabled = false`); scores are still watched for peaks.
    enabled: bool,
    state: State,
    /// End of the latest window in which the label was not active.
    last_inactive_end: Option<Micros>,
    /// No new event before this time (window start).
    cooldown_until: Micros,
    /// Highest score over the run and its window (start, end).
    best: Option<(f32, Micros, Micros)>,
}

pub struct EventTracker {
    tracks: Vec<Track>,
    /// Event times in Unix time: follows the wall clock through steps ([`Self::check_wall`]).
    wall: WallTime,
    model_version: String,
    run_id: u64,
    count: u64,
    update_delta: f32,
}

impl EventTracker {
    pub fn new(cfg: &EventsConfig, labels: &[String], model_version: &str, clock: Clock) -> Self {
        EventTracker {
            tracks: tracks(cfg, labels),
            run_id: clock.wall_start_ms(),
            wall: WallTime::new(clock),
            model_version: model_version.to_string(),
            count: 0,
            update_delta: cfg.update_delta,
        }
    }

    /// New thresholds or switches (run-time tuning): a label switched off ends its open
    /// event now (at the end of its last active window); everything else carries on, with the
    /// new threshold applying from the next window.
    pub fn retune(&mut self, cfg: &EventsConfig) -> Vec<Event> {
        let mut out = Vec::new();
        self.update_delta = cfg.update_delta;
        for i in 0..self.tracks.len() {
            let (params, enabled) = label_params(cfg, &self.tracks[i].label);
            self.tracks[i].params = params;
            let was = self.tracks[i].enabled;
            self.tracks[i].enabled = enabled;
            if was && !enabled {
                if let Some(e) = self.close(i) {
                    out.push(e);
                }
            }
        }
        out
    }

    /// Another model took over (a reload): every open event is ended under the old model's
    /// version, the labels are the new model's, and event ids go on counting (they stay unique
    /// over the run). A label still active reopens under the new version on its next window.
    pub fn switch_model(
        &mut self,
        cfg: &EventsConfig,
        labels: &[String],
        model_version: &str,
    ) -> Vec<Event> {
        let out = self.finish();
        self.tracks = tracks(cfg, labels);
        self.update_delta = cfg.update_delta;
        self.model_version = model_version.to_string();
        out
    }

    pub fn model_version(&self) -> &str {
        &self.model_version
    }

    /// Ends track `i`'s open event (pending ones were never reported: dropped).
    fn close(&mut self, i: usize) -> Option<Event> {
        let state = std::mem::replace(&mut self.tracks[i].state, State::Idle);
        let State::Open {
            id,
            start,
            last_end,
            peak,
            modalities,
            ..
        } = state
        else {
            return None;
        };
        let label = self.tracks[i].label.clone();
        let t = &mut self.tracks[i];
        t.cooldown_until = last_end + t.params.cooldown_us;
        Some(self.event(
            EventKind::End,
            &id,
            &label,
            peak,
            modalities,
            (start, Some(last_end)),
        ))
    }

    /// The parameters in force for `label` (None for `none` or an unknown label).
    pub fn params(&self, label: &str) -> Option<LabelParams> {
        self.tracks
            .iter()
            .find(|t| t.label == label)
            .map(|t| t.params)
    }

    fn event(
        &self,
        kind: EventKind,
        id: &str,
        label: &str,
        peak: Peak,
        modalities: Modalities,
        (start, end): (Micros, Option<Micros>),
    ) -> Event {
        Event {
            schema: EVENT_SCHEMA,
            id: id.to_string(),
            kind,
            label: label.to_string(),
            score: peak.score,
            score_audio: peak.audio,
            score_video: peak.video,
            modalities,
            start_ms: self.wall.wall_ms(start),
            end_ms: end.map(|e| self.wall.wall_ms(e)),
            start_s: us_to_secs(start),
            end_s: end.map(us_to_secs),
            model_version: self.model_version.clone(),
            evidence: None,
        }
    }

    /// Reads the wall clock (once per window, before [`Self::observe`]); `Some` when it was
    /// stepped, for the caller to log and count. Event times follow the new wall time from
    /// here on; an event open across the step gets both its times from the new one in its
    /// later messages. Ids, order and the run's clock times (`start_s`) never move.
    pub fn check_wall(&mut self) -> Option<Step> {
        self.wall.check()
    }

    /// Feeds one scored window (in clock order); returns the events it causes.
    pub fn observe(&mut self, w: &Scored) -> Vec<Event> {
        let mut out = Vec::new();
        let centre = (w.start_us + w.end_us) / 2;
        for i in 0..self.tracks.len() {
            let t = &self.tracks[i];
            let c = t.class;
            let Some(&score) = w.fused.get(c) else {
                continue;
            };
            if t.best.is_none_or(|(b, _, _)| score > b) {
                self.tracks[i].best = Some((score, w.start_us, w.end_us));
            }
            let t = &self.tracks[i];
            if !t.enabled {
                continue;
            }
            let peak_here = Peak {
                score,
                audio: w.audio.as_ref().and_then(|p| p.get(c).copied()),
                video: w.video.as_ref().and_then(|p| p.get(c).copied()),
            };
            let p = t.params;
            let state = t.state.clone();
            let next = match state {
                State::Idle => {
                    if score >= p.threshold && w.start_us >= t.cooldown_until {
                        let start = match t.last_inactive_end {
                            Some(e) if e > w.start_us && e <= w.end_us => e,
                            _ => w.start_us,
                        };
                        if p.min_duration_us == 0 {
                            let id = self.next_id();
                            let label = self.tracks[i].label.clone();
                            out.push(self.event(
                                EventKind::New,
                                &id,
                                &label,
                                peak_here,
                                w.modalities,
                                (start, None),
                            ));
                            State::Open {
                                id,
                                start,
                                last_end: w.end_us,
                                peak: peak_here,
                                reported: score,
                                modalities: w.modalities,
                            }
                        } else {
                            State::Pending {
                                start,
                                first_centre: centre,
                                last_end: w.end_us,
                                peak: peak_here,
                            }
                        }
                    } else {
                        self.tracks[i].last_inactive_end = Some(w.end_us);
                        State::Idle
                    }
                }
                State::Pending {
                    start,
                    first_centre,
                    peak,
                    ..
                } => {
                    if score >= p.release {
                        let peak = if score > peak.score { peak_here } else { peak };
                        if centre - first_centre >= p.min_duration_us {
                            let id = self.next_id();
                            let label = self.tracks[i].label.clone();
                            out.push(self.event(
                                EventKind::New,
                                &id,
                                &label,
                                peak,
                                w.modalities,
                                (start, None),
                            ));
                            State::Open {
                                id,
                                start,
                                last_end: w.end_us,
                                peak,
                                reported: peak.score,
                                modalities: w.modalities,
                            }
                        } else {
                            State::Pending {
                                start,
                                first_centre,
                                last_end: w.end_us,
                                peak,
                            }
                        }
                    } else {
                        // Too short to be an event.
                        self.tracks[i].last_inactive_end = Some(w.end_us);
                        State::Idle
                    }
                }
                State::Open {
                    id,
                    start,
                    last_end,
                    peak,
                    reported,
                    modalities,
                } => {
                    let label = self.tracks[i].label.clone();
                    if score >= p.release {
                        let peak = if score > peak.score { peak_here } else { peak };
                        let mut reported = reported;
                        if peak.score >= reported + self.update_delta || modalities != w.modalities
                        {
                            out.push(self.event(
                                EventKind::Update,
                                &id,
                                &label,
                                peak,
                                w.modalities,
                                (start, None),
                            ));
                            reported = peak.score;
                        }
                        State::Open {
                            id,
                            start,
                            last_end: w.end_us,
                            peak,
                            reported,
                            modalities: w.modalities,
                        }
                    } else {
                        let end = last_end.min(w.start_us).max(start);
                        out.push(self.event(
                            EventKind::End,
                            &id,
                            &label,
                            peak,
                            modalities,
                            (start, Some(end)),
                        ));
                        let t = &mut self.tracks[i];
                        t.cooldown_until = end + p.cooldown_us;
                        t.last_inactive_end = Some(w.end_us);
                        State::Idle
                    }
                }
            };
            self.tracks[i].state = next;
        }
        out
    }

    /// Each label's highest score so far (labels in model order, `none` left out; labels no
    /// window scored are left out too).
    pub fn peaks(&self) -> Vec<LabelPeak> {
        self.tracks
            .iter()
            .filter_map(|t| {
                t.best.map(|(score, start, end)| LabelPeak {
                    label: t.label.clone(),
                    score,
                    window_s: (us_to_secs(start), us_to_secs(end)),
                    threshold: t.params.threshold,
                })
            })
            .collect()
    }

    /// Shutdown or end of a recording: ends every open event at the end of its last active
    /// window (pending ones were never reported and are dropped).
    pub fn finish(&mut self) -> Vec<Event> {
        let mut out = Vec::new();
        for i in 0..self.tracks.len() {
            if let Some(e) = self.close(i) {
                out.push(e);
            }
        }
        out
    }

    fn next_id(&mut self) -> String {
        self.count += 1;
        format!("{}-{:04}", self.run_id, self.count)
    }
}

/// A label's parameters and whether it is listened for.
fn label_params(cfg: &EventsConfig, label: &str) -> (LabelParams, bool) {
    let o = cfg.labels.get(label).cloned().unwrap_or_default();
    (
        LabelParams {
            threshold: o.threshold.unwrap_or(cfg.threshold),
            release: o.release.unwrap_or(cfg.release),
            min_duration_us: secs_to_us(o.min_duration_s.unwrap_or(cfg.min_duration_s)),
            cooldown_us: secs_to_us(o.cooldown_s.unwrap_or(cfg.cooldown_s)),
        },
        o.enabled.unwrap_or(true),
    )
}

fn tracks(cfg: &EventsConfig, labels: &[String]) -> Vec<Track> {
    labels
        .iter()
        .enumerate()
        .filter(|(_, l)| l.as_str() != NO_EVENT_LABEL)
        .map(|(class, label)| {
            let (params, enabled) = label_params(cfg, label);
            Track {
                label: label.clone(),
                class,
                params,
                enabled,
                state: State::Idle,
                last_inactive_end: None,
                cooldown_until: 0,
                best: None,
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const LABELS: [&str; 3] = ["glass", "door", "none"];

    fn tracker(cfg: EventsConfig) -> EventTracker {
        let labels: Vec<String> = LABELS.iter().map(|s| s.to_string()).collect();
        EventTracker::new(&cfg, &labels, "test-1", Clock::start())
    }

    fn both() -> Modalities {
        Modalities {
            audio: true,
            video: true,
        }
    }

    /// Window k of 2 s at a 1 s hop with fused scores (glass, door, none).
    fn win(k: u64, glass: f32, door: f32) -> Scored {
        let none = (1.0 - glass - door).max(0.0);
        Scored {
            index: k,
            start_us: k * 1_000_000,
            end_us: k * 1_000_000 + 2_000_000,
            modalities: both(),
            fused: vec![glass, door, none],
            audio: Some(vec![glass * 0.9, door, none]),
            video: Some(vec![glass * 0.8, door, none]),
            media: Default::default(),
        }
    }

    fn run(t: &mut EventTracker, scores: &[(f32, f32)]) -> Vec<Event> {
        let mut out = Vec::new();
        for (k, (g, d)) in scores.iter().enumerate() {
            out.extend(t.observe(&win(k as u64, *g, *d)));
        }
        out
    }

    fn brief(e: &[Event]) -> Vec<(EventKind, &str, f64, Option<f64>)> {
        e.iter()
            .map(|e| (e.kind, e.label.as_str(), e.start_s, e.end_s))
            .collect()
    }

    #[test]
    fn hysteresis_and_time_bounds() {
        // threshold 0.5, release 0.3. Glass: 0.1, 0.6 (opens), 0.4 (stays, above release),
        // 0.2 (ends), 0.1.
        let mut t = tracker(EventsConfig {
            cooldown_s: 0.0,
            ..Default::default()
        });
        let ev = run(
            &mut t,
            &[(0.1, 0.0), (0.6, 0.0), (0.4, 0.0), (0.2, 0.0), (0.1, 0.0)],
        );
        // Opens in window 1 = [1, 3); window 0 = [0, 2) did not see it, so the onset is after
        // 2 s. Last active window 2 = [2, 4); window 3 = [3, 5) did not see it: end at 3 s.
        assert_eq!(
            brief(&ev),
            vec![
                (EventKind::New, "glass", 2.0, None),
                (EventKind::End, "glass", 2.0, Some(3.0))
            ]
        );
        assert_eq!(ev[0].id, ev[1].id);
        assert_eq!(ev[1].score, 0.6, "peak score");
        assert_eq!(ev[1].score_audio, Some(0.6 * 0.9));
        assert_eq!(ev[1].score_video, Some(0.6 * 0.8));
        assert_eq!(ev[0].model_version, "test-1");
    }

    #[test]
    fn peaks_keep_each_labels_highest_score_and_its_first_window() {
        let mut t = tracker(EventsConfig {
            threshold: 0.7,
            ..Default::default()
        });
        assert!(t.peaks().is_empty(), "no window scored yet");
        // Glass peaks at 0.45 in window 2 and again (not higher) in window 4; door at 0.3 in
        // window 1; `none` (0.9 in window 0) is not a label that fires, so it is left out.
        let ev = run(
            &mut t,
            &[(0.1, 0.0), (0.2, 0.3), (0.45, 0.1), (0.3, 0.2), (0.45, 0.0)],
        );
        assert!(ev.is_empty());
        let p = t.peaks();
        assert_eq!(
            p,
            vec![
                LabelPeak {
                    label: "glass".into(),
                    score: 0.45,
                    window_s: (2.0, 4.0),
                    threshold: 0.7
                },
                LabelPeak {
                    label: "door".into(),
                    score: 0.3,
                    window_s: (1.0, 3.0),
                    threshold: 0.7
                },
            ]
        );
    }

    #[test]
    fn below_threshold_never_opens_and_none_never_fires() {
        let mut t = tracker(EventsConfig::default());
        // glass hovers between release and threshold; "none" is at 1.0 in the last window.
        let ev = run(&mut t, &[(0.45, 0.0), (0.49, 0.0), (0.35, 0.0), (0.0, 0.0)]);
        assert!(ev.is_empty(), "{ev:?}");
    }

    #[test]
    fn minimum_duration_suppresses_blips_and_keeps_the_onset() {
        let mut t = tracker(EventsConfig {
            min_duration_s: 1.0,
            cooldown_s: 0.0,
            ..Default::default()
        });
        // Door: one window (blip, dropped), a gap, then two windows (centres 1 s apart: reported).
        let ev = run(
            &mut t,
            &[
                (0.0, 0.9),
                (0.0, 0.1),
                (0.0, 0.1),
                (0.0, 0.8),
                (0.0, 0.7),
                (0.0, 0.0),
            ],
        );
        // Window 3 = [3, 5) opens; window 2 = [2, 4) did not see it: onset 4 s. New is sent at
        // window 4, the end at window 5's start (5 s), since window 4 = [4, 6) still saw it.
        assert_eq!(
            brief(&ev),
            vec![
                (EventKind::New, "door", 4.0, None),
                (EventKind::End, "door", 4.0, Some(5.0))
            ]
        );
    }

    #[test]
    fn cooldown_merges_a_quick_repeat() {
        let mut t = tracker(EventsConfig {
            cooldown_s: 3.0,
            ..Default::default()
        });
        // Glass at windows 1, then 3 (within cool-down of the end at 2 s: suppressed), then 6.
        let ev = run(
            &mut t,
            &[
                (0.0, 0.0),
                (0.9, 0.0),
                (0.0, 0.0),
                (0.9, 0.0),
                (0.0, 0.0),
                (0.0, 0.0),
                (0.9, 0.0),
            ],
        );
        let news: Vec<f64> = ev
            .iter()
            .filter(|e| e.kind == EventKind::New)
            .map(|e| e.start_s)
            .collect();
        // First: window 1 [1, 3), onset after window 0's end (2 s), ended at window 2's start
        // (2 s): cool-down until 5 s. Window 3 starts at 3 s: suppressed. Window 6 starts at 6
        // s: a new event, onset after window 5's end (7 s).
        assert_eq!(news, vec![2.0, 7.0]);
    }

    #[test]
    fn per_label_overrides_and_updates() {
        let mut cfg = EventsConfig::default();
        cfg.labels.insert(
            "door".into(),
            crate::config::LabelOverride {
                threshold: Some(0.8),
                ..Default::default()
            },
        );
        let mut t = tracker(cfg);
        assert_eq!(t.params("door").unwrap().threshold, 0.8);
        assert_eq!(t.params("glass").unwrap().threshold, 0.5);
        assert!(t.params("none").is_none());
        // Door at 0.7 does not open (its threshold is 0.8); glass at 0.6 opens, rises to 0.62
        // (less than update_delta: no update), then 0.7 (update), then ends at shutdown.
        let mut ev = run(&mut t, &[(0.6, 0.3), (0.62, 0.3), (0.7, 0.29)]);
        ev.extend(t.finish());
        let kinds: Vec<(EventKind, &str)> = ev.iter().map(|e| (e.kind, e.label.as_str())).collect();
        assert_eq!(
            kinds,
            vec![
                (EventKind::New, "glass"),
                (EventKind::Update, "glass"),
                (EventKind::End, "glass")
            ]
        );
        assert_eq!(ev[1].score, 0.7);
        // Ended at shutdown: the end of the last window that saw it, [2, 4).
        assert_eq!(ev[2].end_s, Some(4.0));
    }

    #[test]
    fn modality_change_is_an_update_and_marks_the_event() {
        let mut t = tracker(EventsConfig::default());
        let mut ev = t.observe(&win(0, 0.9, 0.0));
        let mut audio_only = win(1, 0.9, 0.0);
        audio_only.modalities = Modalities {
            audio: true,
            video: false,
        };
        audio_only.video = None;
        ev.extend(t.observe(&audio_only));
        assert_eq!(ev.len(), 2);
        assert_eq!(ev[1].kind, EventKind::Update);
        assert!(ev[1].modalities.audio && !ev[1].modalities.video);
    }

    fn with_label(label: &str, o: crate::config::LabelOverride) -> EventsConfig {
        let mut c = EventsConfig {
            cooldown_s: 0.0,
            ..Default::default()
        };
        c.labels.insert(label.into(), o);
        c
    }

    #[test]
    fn switching_a_label_off_ends_its_event_and_keeps_it_silent_until_back_on() {
        let mut t = tracker(with_label("glass", Default::default()));
        let mut ev = run(&mut t, &[(0.9, 0.0), (0.9, 0.0)]);
        assert_eq!(brief(&ev), vec![(EventKind::New, "glass", 0.0, None)]);
        let off = with_label(
            "glass",
            crate::config::LabelOverride {
                enabled: Some(false),
                ..Default::default()
            },
        );
        // Ended at the end of its last active window ([1, 3)).
        ev = t.retune(&off);
        assert_eq!(brief(&ev), vec![(EventKind::End, "glass", 0.0, Some(3.0))]);
        for k in 2..5 {
            assert!(t.observe(&win(k, 0.95, 0.0)).is_empty(), "switched off");
        }
        // The door is unaffected; back on, glass opens again on its next window.
        assert!(t
            .retune(&with_label("glass", Default::default()))
            .is_empty());
        ev = t.observe(&win(5, 0.95, 0.6));
        assert_eq!(
            brief(&ev),
            vec![
                (EventKind::New, "glass", 5.0, None),
                // Door's window 4 = [4, 6) did not see it: onset after 6 s.
                (EventKind::New, "door", 6.0, None)
            ]
        );
    }

    #[test]
    fn a_new_threshold_applies_from_the_next_window() {
        let mut t = tracker(with_label("glass", Default::default()));
        assert!(run(&mut t, &[(0.4, 0.0)]).is_empty());
        let low = with_label(
            "glass",
            crate::config::LabelOverride {
                threshold: Some(0.35),
                release: Some(0.3),
                ..Default::default()
            },
        );
        assert!(t.retune(&low).is_empty());
        assert_eq!(t.params("glass").map(|p| p.threshold), Some(0.35));
        let ev = t.observe(&win(1, 0.4, 0.0));
        // Window 0 = [0, 2) was below the old threshold: onset after 2 s.
        assert_eq!(brief(&ev), vec![(EventKind::New, "glass", 2.0, None)]);
    }

    #[test]
    fn a_model_switch_ends_open_events_and_ids_stay_unique() {
        let mut t = tracker(EventsConfig::default());
        let first = run(&mut t, &[(0.9, 0.0)]);
        let ev = t.switch_model(
            &EventsConfig::default(),
            &["glass".into(), "door".into(), "cat".into(), "none".into()],
            "test-2",
        );
        assert_eq!(brief(&ev), vec![(EventKind::End, "glass", 0.0, Some(2.0))]);
        assert_eq!(ev[0].model_version, "test-1");
        assert_eq!(ev[0].id, first[0].id);
        // Four classes now: the still-active glass reopens under the new version.
        let mut w = win(1, 0.9, 0.0);
        w.fused = vec![0.9, 0.0, 0.0, 0.1];
        let ev = t.observe(&w);
        assert_eq!(brief(&ev), vec![(EventKind::New, "glass", 1.0, None)]);
        assert_eq!(ev[0].model_version, "test-2");
        assert_ne!(ev[0].id, first[0].id);
        w.fused = vec![0.0, 0.0, 0.8, 0.2];
        w.index = 2;
        let ev = t.observe(&w);
        assert!(ev
            .iter()
            .any(|e| e.label == "cat" && e.kind == EventKind::New));
    }
}
