//! Run-time tuning: each label's threshold, and whether it is listened for at all, changed
//! without a restart from the web page or an MQTT `.../set` topic.
//!
//! Why a state file of its own (`events.tuning_file`, default `<state>/tuning.json`, beside the
//! evidence directory) and not the TOML: the TOML is the user's (comments, layout, often owned
//! by configuration management); a daemon that rewrites it loses that. The state file holds
//! only what was changed at run time, and it wins over the TOML's `[events.labels.<label>]`
//! until the change is reset (`{"reset": true}` on the web API, `reset` on MQTT), so
//! `mbtd --print-config` shows the thresholds in force with both applied.
//!
//! Precedence per label, highest first: run-time change, the TOML's `events.labels.<label>`,
//! the model's own validation-tuned threshold (`mbt.thresholds`), `events.threshold`.
//!
//! [`Controls`] is the one owner of that state: changes are validated (a label the model has,
//! `none` excluded; a threshold in [[`MIN_THRESHOLD`], 1]), written to the file atomically
//! (temporary file + rename) *before* they take effect, and announced on a watch channel the
//! event tracker, the web page and the MQTT sink follow. A model reload changes the labels
//! ([`Controls::model_changed`]); entries for labels the new model lacks stay in the file
//! (ignored) so going back to the old model brings them back.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use mbt_core::metadata::ModelMetadata;
use serde::{Deserialize, Serialize};
use tokio::sync::watch;

use crate::config::{EventsConfig, LabelOverride};
use crate::events::NO_EVENT_LABEL;
pub use crate::shared::{Change, Effective, LabelState, Origin, TuneError, Tuning, MIN_THRESHOLD};
use crate::stats::Stats;

/// A label's run-time changes (absent: not changed at run time).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LabelTune {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub threshold: Option<f32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub enabled: Option<bool>,
}

#[derive(Debug, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct StateFile {
    version: u32,
    #[serde(default)]
    labels: BTreeMap<String, LabelTune>,
}

const FILE_VERSION: u32 = 1;

/// Reads the tuning file; a missing file is no changes.
pub fn load(path: &Path) -> Result<BTreeMap<String, LabelTune>, TuneError> {
    let bad = |reason: String| TuneError::File {
        path: path.to_path_buf(),
        reason,
    };
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(BTreeMap::new()),
        Err(e) => return Err(bad(format!("cannot read it: {e}"))),
    };
    let file: StateFile = serde_json::from_str(&text).map_err(|e| {
        bad(format!(
            "not a tuning file ({e}); expected {{\"version\": 1, \"labels\": {{\"<label>\": {{\"threshold\": 0.6, \"enabled\": true}}}}}}; \
             delete it to go back to the configured thresholds"
        ))
    })?;
    if file.version != FILE_VERSION {
        return Err(bad(format!(
            "version {} is not one this mbtd reads (expected {FILE_VERSION})",
            file.version
        )));
    }
    for (label, t) in &file.labels {
        if let Some(v) = t.threshold {
            if !(MIN_THRESHOLD..=1.0).contains(&v) {
                return Err(bad(format!(
                    "labels.{label}.threshold = {v}: expected {MIN_THRESHOLD} to 1"
                )));
            }
        }
    }
    Ok(file.labels)
}

/// Writes the tuning file atomically (a reader or a crash never sees half of it).
pub fn save(path: &Path, labels: &BTreeMap<String, LabelTune>) -> Result<(), TuneError> {
    let bad = |reason: String| TuneError::File {
        path: path.to_path_buf(),
        reason,
    };
    let labels: BTreeMap<String, LabelTune> = labels
        .iter()
        .filter(|(_, t)| **t != LabelTune::default())
        .map(|(l, t)| (l.clone(), t.clone()))
        .collect();
    let json = serde_json::to_vec_pretty(&StateFile {
        version: FILE_VERSION,
        labels,
    })
    .map_err(|e| bad(e.to_string()))?;
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir)
            .map_err(|e| bad(format!("cannot create its directory: {e}")))?;
    }
    let tmp = path.with_extension("json.tmp");
    std::fs::write(&tmp, json).map_err(|e| bad(format!("cannot write {}: {e}", tmp.display())))?;
    std::fs::rename(&tmp, path).map_err(|e| bad(format!("cannot replace it: {e}")))?;
    Ok(())
}

/// The TOML's events settings with the run-time changes applied on top (what
/// `--print-config` shows): thresholds and switches become `[events.labels.<label>]` entries.
pub fn overlay(cfg: &EventsConfig, runtime: &BTreeMap<String, LabelTune>) -> EventsConfig {
    let mut out = cfg.clone();
    for (label, t) in runtime {
        if label == NO_EVENT_LABEL {
            continue;
        }
        let o = out.labels.entry(label.clone()).or_default();
        if let Some(v) = t.threshold {
            o.threshold = Some(v);
            if o.release.unwrap_or(cfg.release) > v {
                o.release = Some(v);
            }
        }
        if let Some(e) = t.enabled {
            o.enabled = Some(e);
        }
    }
    out
}

/// What is in force for a model with `labels` and its own `thresholds`.
pub fn resolve(
    cfg: &EventsConfig,
    meta: &ModelMetadata,
    runtime: &BTreeMap<String, LabelTune>,
) -> Effective {
    let with_model = with_model_thresholds(cfg, &meta.thresholds);
    let known: BTreeMap<String, LabelTune> = runtime
        .iter()
        .filter(|(l, _)| meta.labels.contains(l))
        .map(|(l, t)| (l.clone(), t.clone()))
        .collect();
    let events = overlay(&with_model, &known);
    let states = meta
        .labels
        .iter()
        .filter(|l| l.as_str() != NO_EVENT_LABEL)
        .map(|l| {
            let o: LabelOverride = events.labels.get(l).cloned().unwrap_or_default();
            let rt = known.get(l);
            let origin = if rt.is_some_and(|t| t.threshold.is_some()) {
                Origin::Runtime
            } else if cfg.labels.get(l).is_some_and(|o| o.threshold.is_some()) {
                Origin::Config
            } else if meta.thresholds.contains_key(l) {
                Origin::Model
            } else {
                Origin::Default
            };
            LabelState {
                label: l.clone(),
                threshold: o.threshold.unwrap_or(events.threshold),
                release: o.release.unwrap_or(events.release),
                enabled: o.enabled.unwrap_or(true),
                origin,
                enabled_runtime: rt.is_some_and(|t| t.enabled.is_some()),
            }
        })
        .collect();
    Effective {
        model_version: meta.model_version.clone(),
        labels: meta.labels.clone(),
        events,
        states,
    }
}

/// The model's own per-label thresholds (`mbt.thresholds`, tuned on its validation split) for
/// every label the user's config gives no threshold of its own; a release above such a
/// threshold is lowered to it (hysteresis needs release <= threshold).
pub fn with_model_thresholds(
    cfg: &EventsConfig,
    model: &std::collections::BTreeMap<String, f32>,
) -> EventsConfig {
    let mut out = cfg.clone();
    for (label, &t) in model {
        let o = out.labels.entry(label.clone()).or_default();
        if o.threshold.is_none() {
            o.threshold = Some(t);
            let release = o.release.unwrap_or(cfg.release);
            if release > t {
                o.release = Some(t);
            }
        }
    }
    out
}

struct Inner {
    base: EventsConfig,
    meta: ModelMetadata,
    runtime: BTreeMap<String, LabelTune>,
}

/// The owner of the run-time tuning (see the module docs). Share it as `Arc<Controls>`.
pub struct Controls {
    path: PathBuf,
    inner: Mutex<Inner>,
    tx: watch::Sender<Arc<Effective>>,
    /// `tuning_changes` / `tuning_rejected` are counted here.
    stats: Arc<Stats>,
}

impl Controls {
    /// Reads the tuning file (`events.tuning_file`); an unreadable or malformed one is an
    /// error naming it (the daemon does not start on thresholds it cannot know).
    pub fn new(
        cfg: &EventsConfig,
        meta: &ModelMetadata,
        stats: Arc<Stats>,
    ) -> Result<Self, TuneError> {
        let path = cfg.tuning_path();
        let runtime = load(&path)?;
        for label in runtime.keys().filter(|l| !meta.labels.contains(l)) {
            tracing::info!(
                "tuning file {}: `{label}` is not a label of this model; kept for a model that has it",
                path.display()
            );
        }
        let eff = resolve(cfg, meta, &runtime);
        Ok(Controls {
            path,
            inner: Mutex::new(Inner {
                base: cfg.clone(),
                meta: meta.clone(),
                runtime,
            }),
            tx: watch::channel(Arc::new(eff)).0,
            stats,
        })
    }

    /// Counts a change refused before it reached [`Controls::set`] (a malformed command).
    pub fn rejected(&self) {
        Stats::inc(&self.stats.tuning_rejected);
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn subscribe(&self) -> watch::Receiver<Arc<Effective>> {
        self.tx.subscribe()
    }

    pub fn current(&self) -> Arc<Effective> {
        self.tx.borrow().clone()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Applies one change: validated, saved, then announced. Returns the label's new state.
    pub fn set(&self, label: &str, change: Change, from: &str) -> Result<LabelState, TuneError> {
        let r = self.apply(label, change, from);
        Stats::inc(if r.is_ok() {
            &self.stats.tuning_changes
        } else {
            &self.stats.tuning_rejected
        });
        r
    }

    fn apply(&self, label: &str, change: Change, from: &str) -> Result<LabelState, TuneError> {
        let mut g = self.lock();
        if label == NO_EVENT_LABEL {
            return Err(TuneError::NoEvent);
        }
        if !g.meta.labels.iter().any(|l| l == label) {
            return Err(TuneError::UnknownLabel {
                label: label.to_string(),
                known: g
                    .meta
                    .labels
                    .iter()
                    .filter(|l| l.as_str() != NO_EVENT_LABEL)
                    .cloned()
                    .collect::<Vec<_>>()
                    .join(", "),
            });
        }
        let mut runtime = g.runtime.clone();
        let t = runtime.entry(label.to_string()).or_default();
        match change {
            Change::Threshold(v) => {
                if !(MIN_THRESHOLD..=1.0).contains(&v) {
                    return Err(TuneError::BadThreshold(v));
                }
                t.threshold = Some(v);
            }
            Change::Enabled(e) => t.enabled = Some(e),
            Change::Reset => *t = LabelTune::default(),
        }
        save(&self.path, &runtime)?;
        g.runtime = runtime;
        let eff = resolve(&g.base, &g.meta, &g.runtime);
        let state = eff.state(label).cloned();
        tracing::info!("tuning ({from}): {label} {change:?}");
        self.tx.send_replace(Arc::new(eff));
        state.ok_or_else(|| TuneError::UnknownLabel {
            label: label.to_string(),
            known: String::new(),
        })
    }

    /// A new model is running: the labels and its own thresholds change.
    pub fn model_changed(&self, meta: &ModelMetadata) {
        let mut g = self.lock();
        g.meta = meta.clone();
        let eff = resolve(&g.base, &g.meta, &g.runtime);
        self.tx.send_replace(Arc::new(eff));
    }
}

impl Tuning for Controls {
    fn current(&self) -> Arc<Effective> {
        Controls::current(self)
    }
    fn path(&self) -> &Path {
        Controls::path(self)
    }
    fn set(&self, label: &str, change: Change, from: &str) -> Result<LabelState, TuneError> {
        Controls::set(self, label, change, from)
    }
    fn rejected(&self) {
        Controls::rejected(self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn meta(labels: &[&str], thresholds: &[(&str, f32)]) -> ModelMetadata {
        ModelMetadata {
            model_version: "test".into(),
            labels: labels.iter().map(|l| l.to_string()).collect(),
            tokenizer: Default::default(),
            model_config: String::new(),
            training_data_hash: String::new(),
            trunks: String::new(),
            thresholds: thresholds
                .iter()
                .map(|(l, t)| (l.to_string(), *t))
                .collect(),
        }
    }

    fn cfg(dir: &Path) -> EventsConfig {
        let mut c = EventsConfig {
            tuning_file: Some(dir.join("tuning.json")),
            ..Default::default()
        };
        c.labels.insert(
            "dog".into(),
            LabelOverride {
                threshold: Some(0.7),
                ..Default::default()
            },
        );
        c
    }

    #[test]
    fn precedence_is_runtime_then_config_then_model_then_default() {
        let dir = tempfile::tempdir().unwrap();
        let m = meta(
            &["dog", "glass", "door", "none"],
            &[("glass", 0.25), ("dog", 0.4)],
        );
        let c = Controls::new(&cfg(dir.path()), &m, Default::default()).unwrap();
        let e = c.current();
        let s = |l: &str| e.state(l).cloned().unwrap();
        assert_eq!((s("dog").threshold, s("dog").origin), (0.7, Origin::Config));
        assert_eq!(
            (s("glass").threshold, s("glass").origin),
            (0.25, Origin::Model)
        );
        assert_eq!(
            (s("door").threshold, s("door").origin),
            (0.5, Origin::Default)
        );
        assert!(e.state("none").is_none());
        // Release follows a threshold below the default release (0.3).
        assert_eq!(s("glass").release, 0.25);

        let dog = c.set("dog", Change::Threshold(0.9), "test").unwrap();
        assert_eq!((dog.threshold, dog.origin), (0.9, Origin::Runtime));
        let door = c.set("door", Change::Enabled(false), "test").unwrap();
        assert!(!door.enabled && door.enabled_runtime);
        assert_eq!(c.current().fires(), vec![true, true, false, false]);

        // Saved: a second Controls (a restart) reads the same.
        let again = Controls::new(&cfg(dir.path()), &m, Default::default())
            .unwrap()
            .current();
        assert_eq!(again.state("dog").unwrap().threshold, 0.9);
        assert!(!again.state("door").unwrap().enabled);
        // Reset goes back to the TOML's value.
        let dog = c.set("dog", Change::Reset, "test").unwrap();
        assert_eq!((dog.threshold, dog.origin), (0.7, Origin::Config));
        let text = std::fs::read_to_string(dir.path().join("tuning.json")).unwrap();
        assert!(!text.contains("\"dog\""), "{text}");
    }

    #[test]
    fn bad_changes_are_refused_and_change_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let m = meta(&["dog", "none"], &[]);
        let c = Controls::new(&cfg(dir.path()), &m, Default::default()).unwrap();
        let mut rx = c.subscribe();
        rx.borrow_and_update();
        for (label, change) in [
            ("cat", Change::Threshold(0.5)),
            ("none", Change::Enabled(false)),
            ("dog", Change::Threshold(0.0)),
            ("dog", Change::Threshold(1.5)),
            ("dog", Change::Threshold(f32::NAN)),
        ] {
            let e = c.set(label, change, "test").unwrap_err();
            assert!(e.is_request_error(), "{e}");
        }
        assert!(!rx.has_changed().unwrap());
        assert!(!dir.path().join("tuning.json").exists());
        let e = c.set("cat", Change::Reset, "test").unwrap_err().to_string();
        assert!(
            e.contains("unknown label `cat`") && e.contains("dog"),
            "{e}"
        );
    }

    #[test]
    fn a_malformed_file_is_an_error_naming_it_and_unknown_labels_are_kept() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("tuning.json");
        std::fs::write(
            &path,
            "{\"version\": 1, \"labels\": {\"dog\": {\"treshold\": 0.5}}}",
        )
        .unwrap();
        let e = load(&path).unwrap_err().to_string();
        assert!(e.contains("tuning.json") && e.contains("treshold"), "{e}");
        std::fs::write(
            &path,
            "{\"version\": 1, \"labels\": {\"dog\": {\"threshold\": 3}}}",
        )
        .unwrap();
        let e = load(&path).unwrap_err().to_string();
        assert!(e.contains("labels.dog.threshold = 3"), "{e}");

        std::fs::write(
            &path,
            "{\"version\": 1, \"labels\": {\"cat\": {\"threshold\": 0.6}}}",
        )
        .unwrap();
        let c = Controls::new(
            &cfg(dir.path()),
            &meta(&["dog", "none"], &[]),
            Default::default(),
        )
        .unwrap();
        c.set("dog", Change::Enabled(false), "test").unwrap();
        // `cat` (a label of another model) survives a save.
        let again = load(&path).unwrap();
        assert_eq!(again["cat"].threshold, Some(0.6));
        assert_eq!(again["dog"].enabled, Some(false));
        // A model that has `cat` picks it up.
        c.model_changed(&meta(&["dog", "cat", "none"], &[]));
        let cat = c.current().state("cat").cloned().unwrap();
        assert_eq!((cat.threshold, cat.origin), (0.6, Origin::Runtime));
    }
}

#[cfg(test)]
mod model_threshold_tests {
    use super::*;

    #[test]
    fn model_thresholds_fill_in_where_the_user_set_none() {
        let mut cfg = EventsConfig::default();
        cfg.labels.insert(
            "dog".into(),
            LabelOverride {
                threshold: Some(0.9),
                ..Default::default()
            },
        );
        let model = [("dog".to_string(), 0.4), ("glass".to_string(), 0.25)]
            .into_iter()
            .collect();
        let e = with_model_thresholds(&cfg, &model);
        assert_eq!(e.labels["dog"].threshold, Some(0.9));
        assert_eq!(e.labels["glass"].threshold, Some(0.25));
        // Default release 0.3 is above 0.25: lowered to the threshold.
        assert_eq!(e.labels["glass"].release, Some(0.25));
        assert!(!e.labels.contains_key("cat"));
    }
}
