//! What the pipeline, the run-time tuning and the web page share: the thresholds and switches
//! in force ([`Effective`], one [`LabelState`] per label), a change to them ([`Change`]) and why
//! one was refused ([`TuneError`]), and the one door through which the web page reads and
//! changes them ([`Tuning`]).
//!
//! Why a module of its own: [`crate::tuning`] owns the state and its file, the pipeline applies
//! it, the web page shows and changes it. With the types here, none of the three imports
//! another's internals; this module depends only on the configuration's types.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde::Serialize;

use crate::config::EventsConfig;

/// The lowest threshold a run-time change may set (0 would fire on every window).
pub const MIN_THRESHOLD: f32 = 0.01;

/// One change, from the web page or MQTT.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Change {
    Threshold(f32),
    Enabled(bool),
    /// Forget the run-time changes of the label (back to the TOML / model / default).
    Reset,
}

#[derive(Debug, thiserror::Error)]
pub enum TuneError {
    #[error("tuning file {}: {reason}", path.display())]
    File { path: PathBuf, reason: String },
    #[error("unknown label `{label}` (the model's labels: {known})")]
    UnknownLabel { label: String, known: String },
    #[error("label `none` is the model's \"nothing happening\" class: it never fires, so it has no threshold or switch")]
    NoEvent,
    #[error("threshold {0}: expected a number from {MIN_THRESHOLD} to 1")]
    BadThreshold(f32),
}

impl TuneError {
    /// Whether the request was at fault (vs. the disk).
    pub fn is_request_error(&self) -> bool {
        !matches!(self, TuneError::File { .. })
    }
}

/// Where a label's threshold comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Origin {
    Runtime,
    Config,
    Model,
    Default,
}

/// A label's settings in force.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct LabelState {
    pub label: String,
    pub threshold: f32,
    pub release: f32,
    pub enabled: bool,
    /// Where the threshold comes from.
    pub origin: Origin,
    /// Whether the switch was set at run time.
    pub enabled_runtime: bool,
}

/// Everything in force for the current model.
#[derive(Debug, Clone)]
pub struct Effective {
    pub model_version: String,
    /// The model's labels, in its order (`none` included).
    pub labels: Vec<String>,
    /// The events settings the tracker runs with (TOML + model thresholds + run-time).
    pub events: EventsConfig,
    /// One per label that can fire, in model order.
    pub states: Vec<LabelState>,
}

impl Effective {
    pub fn state(&self, label: &str) -> Option<&LabelState> {
        self.states.iter().find(|s| s.label == label)
    }

    /// The threshold per label in model order (`none`: the default threshold, never used).
    pub fn thresholds(&self) -> Vec<f32> {
        self.labels
            .iter()
            .map(|l| {
                self.state(l)
                    .map(|s| s.threshold)
                    .unwrap_or(self.events.threshold)
            })
            .collect()
    }

    /// Whether each label (model order) can fire now.
    pub fn fires(&self) -> Vec<bool> {
        self.labels
            .iter()
            .map(|l| self.state(l).is_some_and(|s| s.enabled))
            .collect()
    }
}

/// The web page's door to the run-time tuning ([`crate::tuning::Controls`] in the daemon): read
/// what is in force, change one label, count a request refused before it got that far.
pub trait Tuning: Send + Sync {
    /// What is in force now.
    fn current(&self) -> Arc<Effective>;
    /// Where run-time changes are kept.
    fn path(&self) -> &Path;
    /// Applies one change: validated, saved, then announced. Returns the label's new state.
    fn set(&self, label: &str, change: Change, from: &str) -> Result<LabelState, TuneError>;
    /// Counts a change refused before it reached [`Tuning::set`] (a malformed request).
    fn rejected(&self);
}
