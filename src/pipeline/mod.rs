//! The daemon's pipeline: sources -> windower -> inference thread -> event tracker -> sinks.
//!
//! ```text
//!  audio source ─(blocking task)─ mpsc(32) ─┐
//!                                          ├─ windower (async task) ─ WindowQueue ─ inference thread ─ mpsc(16) ─ events task ─ sinks
//!  video source ─(blocking task)─ mpsc(32) ─┘   (one clock)          (drop oldest)  (tokenize, batch)           (tracker)
//! ```
//!
//! Why this shape: reads block (ALSA, V4L2), so each source gets a blocking task; inference is
//! seconds of CPU, so it gets its own thread and never stalls the runtime; everything between
//! stages is bounded, so memory is bounded. Live capture never waits for inference: the queue
//! before it drops the oldest window when full (counted). A replay that is not paced waits
//! instead, and the windower reads whichever stream is behind, so a fast replay cuts exactly
//! the windows a paced one would and buffers at most a window's worth of either stream.
//!
//! Shutdown (SIGINT/SIGTERM, or every source ended): the sources stop, the windows already
//! queued are still run, open events are ended, the sinks closed (spooled ones wait a bounded
//! time for their backlog, see [`crate::publish`]), and [`run`] returns the counters.
//!
//! Publishing hooks: with `[evidence]` on, the detector keeps each window's key frame and
//! audio and the events task writes them for the events that window opens or raises, before
//! the sinks see the event; with `[metrics]` on, the counters are mirrored into the registry
//! once a second and inference time is observed per batch.

use std::sync::Arc;

use crate::clock::{secs_to_us, Clock};
use crate::detector::Detector;
use crate::events::LabelPeak;
use crate::publish::PipelineMetrics;
use crate::queue::Overflow;
use crate::sink::Sink;
use crate::source::{Backoff, Source};
use crate::stats::{Report, Stats};
use crate::tuning::Controls;
use crate::window::WindowSpec;

mod build;
mod mqtt;
mod run;

pub use build::build;
pub use mqtt::{announce_of, MqttBridge};
pub use run::run;

/// Everything a run needs, built from the configuration by [`build`] (or by hand in tests and
/// embedding programs, with their own sources, backend and sinks).
pub struct Pipeline {
    pub clock: Clock,
    pub audio: Option<Box<dyn Source>>,
    pub video: Option<Box<dyn Source>>,
    pub detector: Detector,
    pub sinks: Vec<Box<dyn Sink>>,
    pub spec: WindowSpec,
    pub queue: usize,
    pub overflow: Overflow,
    /// Thresholds and switches in force (TOML + model + run-time changes), and their owner.
    pub controls: Arc<Controls>,
    pub backoff: Backoff,
    /// Evidence files per event (`[evidence]`); the detector must keep media for it.
    pub evidence: Option<Arc<mbt_publish::evidence::EvidenceStore>>,
    /// The metrics endpoint and series (`[metrics]`).
    pub metrics: Option<PipelineMetrics>,
    /// The web page, bound and not yet serving (`[web]`).
    pub web: Option<crate::web::Web>,
    /// The counters (shared with the tuning controls and the web page).
    pub stats: Arc<Stats>,
    /// The MQTT side of run-time tuning (with `[mqtt]` on).
    pub mqtt_bridge: Option<MqttBridge>,
    /// Reloading the model while running (SIGHUP, `model.watch_s`); `None`: never.
    pub reload: Option<Arc<crate::reload::ReloadSpec>>,
}

/// What a run did: its counters, plus what ran.
#[derive(Debug, Clone, serde::Serialize)]
pub struct RunReport {
    pub backend: String,
    pub model_version: String,
    pub seconds: f64,
    #[serde(flatten)]
    pub stats: Report,
    /// Each label's highest score over the run (see [`LabelPeak`]).
    pub peaks: Vec<LabelPeak>,
}

impl RunReport {
    /// When windows were scored but no event came out, a line saying how close each label
    /// came (highest first) and what to change: the answer to "why does it print nothing?".
    pub fn no_event_hint(&self) -> Option<String> {
        if self.stats.events > 0 || self.peaks.is_empty() {
            return None;
        }
        let mut peaks: Vec<&LabelPeak> = self.peaks.iter().collect();
        peaks.sort_by(|a, b| b.score.total_cmp(&a.score));
        let listed: Vec<String> = peaks
            .iter()
            .map(|p| {
                format!(
                    "{} {:.3} at {:.1}-{:.1} s (threshold {})",
                    p.label, p.score, p.window_s.0, p.window_s.1, p.threshold
                )
            })
            .collect();
        Some(format!(
            "no events: no label's score reached its threshold; highest scores: {}. \
             `mbt timeline` draws every score over a clip; `events.threshold` and \
             `events.labels.<label>.threshold` set the thresholds",
            listed.join(", ")
        ))
    }
}

/// Seconds to microseconds, for tests that build a [`WindowSpec`] by hand.
pub fn us(s: f64) -> crate::clock::Micros {
    secs_to_us(s)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn report(events: u64, scores: &[(&str, f32)]) -> RunReport {
        RunReport {
            backend: "tract-cpu".into(),
            model_version: "m".into(),
            seconds: 1.0,
            stats: Report {
                events,
                ..Default::default()
            },
            peaks: scores
                .iter()
                .enumerate()
                .map(|(k, (label, score))| LabelPeak {
                    label: label.to_string(),
                    score: *score,
                    window_s: (k as f64, k as f64 + 2.0),
                    threshold: 0.5,
                })
                .collect(),
        }
    }

    #[test]
    fn the_no_event_hint_lists_labels_highest_first_and_only_when_nothing_fired() {
        let hint = report(0, &[("glass", 0.2), ("door", 0.4375)])
            .no_event_hint()
            .unwrap_or_else(|| panic!("a run that scored windows and fired nothing gets a hint"));
        assert!(
            hint.contains(
                "highest scores: door 0.438 at 1.0-3.0 s (threshold 0.5), glass 0.200 at 0.0-2.0 s"
            ),
            "{hint}"
        );
        assert_eq!(report(1, &[("glass", 0.9)]).no_event_hint(), None);
        // Nothing scored (a model that never ran): nothing to say about thresholds.
        assert_eq!(report(0, &[]).no_event_hint(), None);
    }
}
