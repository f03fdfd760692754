//! The daemon's one TOML configuration, with documented defaults.
//!
//! `mbtd --print-config` prints the effective configuration (defaults, then the file, then
//! `--set` overrides), so what runs is never a guess. Unknown keys are errors naming the key:
//! a typo must not silently fall back to a default.
//!
//! What the model needs (window span in log-mel frames, frames per window, labels) is not
//! repeated here: it comes from the model file's metadata, and [`crate::detector::check_model`]
//! refuses a configuration that cannot feed the model, naming both settings.
//!
//! The publishing sections (`[mqtt]`, `[postcard]`, `[gpio]`, `[spool]`, `[metrics]`,
//! `[evidence]`) are `mbt-publish`'s own types, embedded as top-level tables: one definition of
//! each setting, its default and its validation, shared with the `mbt-publish` tool.

use std::collections::BTreeMap;
use std::path::PathBuf;

use mbt_publish::config::{
    EvidenceConfig, GpioConfig, MetricsConfig, MqttConfig, PostcardConfig, SpoolConfig,
};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    pub model: ModelConfig,
    pub window: WindowConfig,
    pub audio: AudioSourceConfig,
    pub video: VideoSourceConfig,
    pub replay: ReplayConfig,
    pub synthetic: SyntheticConfig,
    pub recovery: RecoveryConfig,
    pub events: EventsConfig,
    pub sink: SinkConfig,
    pub mqtt: MqttConfig,
    pub postcard: PostcardConfig,
    pub gpio: GpioConfig,
    pub spool: SpoolConfig,
    pub metrics: MetricsConfig,
    pub evidence: EvidenceConfig,
    pub web: WebConfig,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ModelConfig {
    /// Exported ONNX model; its metadata carries the tokenizer settings and labels.
    pub path: PathBuf,
    /// Inference backend: "auto" (best present, CPU fallback), "cpu", "cuda" or "ort".
    pub backend: String,
    /// Most windows run in one batch when they queue up behind a slow inference.
    pub max_batch: usize,
    /// ONNX Runtime execution providers to register in order (backend "ort"), e.g.
    /// ["qnn", "cpu"]: cpu, cuda, tensorrt, qnn, openvino, vsinpu, xnnpack, rknpu, acl.
    /// Without "cpu" in the list, a library that has none of them is an error, not a silent
    /// CPU run. `auto` considers ONNX Runtime only when this names an accelerator.
    pub ort_providers: Vec<String>,
    /// The ONNX Runtime library to open at run time (backend "ort"); empty: `ORT_DYLIB_PATH`,
    /// else the copy `scripts/fetch-onnxruntime.sh` installed (`~/.cache/mbt-edge/onnxruntime`)
    /// when present, else `libonnxruntime.so` on the loader's path.
    pub ort_library: String,
    /// ONNX Runtime intra-op threads; 0 leaves its default (one per core).
    pub ort_threads: usize,
    /// Reload the model when its file changes: checked every this many seconds (0: only on
    /// SIGHUP). A changed file is loaded once it has looked the same on two checks in a row
    /// (so a copy still being written is not taken); a model that fails to load or does not
    /// fit the configuration is refused and the running one kept.
    pub watch_s: f64,
}

impl Default for ModelConfig {
    fn default() -> Self {
        ModelConfig {
            path: PathBuf::from("models/edge.onnx"),
            backend: "auto".into(),
            max_batch: 4,
            ort_providers: Vec::new(),
            ort_library: String::new(),
            ort_threads: 0,
            watch_s: 2.0,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct WindowConfig {
    /// Window length in seconds (the model's input span; must fill the model's audio input).
    pub length_s: f64,
    /// Hop between window starts in seconds.
    pub hop_s: f64,
    /// Windows waiting for inference. When inference falls behind a live source, the oldest
    /// waiting window is dropped (and counted) so the daemon keeps up with the present.
    pub queue: usize,
    /// A window's audio counts as present when at least this fraction of its samples arrived.
    pub min_audio_coverage: f64,
    /// A window's video counts as present with at least this fraction of the frames the model
    /// samples per window (`video.num_frames` in the model metadata).
    pub min_video_coverage: f64,
    /// Audio whose timestamps disagree with its sample count by more than this is re-anchored
    /// on the clock (a gap is filled as missing, an overlap dropped); smaller differences are
    /// counted as drift and absorbed.
    pub audio_tolerance_s: f64,
    /// Live capture: a stream that lags the other by more than this is treated as stalled and
    /// windows are cut from the other stream alone until it catches up.
    pub stall_s: f64,
}

impl Default for WindowConfig {
    fn default() -> Self {
        WindowConfig {
            length_s: 2.0,
            hop_s: 1.0,
            queue: 4,
            min_audio_coverage: 0.9,
            min_video_coverage: 0.5,
            audio_tolerance_s: 0.1,
            stall_s: 3.0,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AudioSourceConfig {
    /// "alsa", "replay", "synthetic" or "none".
    pub source: String,
    /// ALSA PCM name (e.g. "default", "hw:1,0", "plughw:CARD=Mic").
    pub device: String,
    /// Rate and channels asked of the device; it may offer others, which are downmixed and
    /// resampled (any rate the shared resampler supports).
    pub rate: u32,
    pub channels: u32,
    /// Samples per read, in milliseconds.
    pub period_ms: u32,
}

impl Default for AudioSourceConfig {
    fn default() -> Self {
        AudioSourceConfig {
            source: "alsa".into(),
            device: "default".into(),
            rate: 16_000,
            channels: 1,
            period_ms: 100,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct VideoSourceConfig {
    /// "v4l2", "replay", "synthetic" or "none".
    pub source: String,
    /// V4L2 device node.
    pub device: PathBuf,
    pub width: u32,
    pub height: u32,
    pub fps: u32,
    /// Pixel format asked of the camera: "auto" (MJPEG if offered, else YUYV), "mjpeg", "yuyv".
    pub format: String,
}

impl Default for VideoSourceConfig {
    fn default() -> Self {
        VideoSourceConfig {
            source: "v4l2".into(),
            device: PathBuf::from("/dev/video0"),
            width: 640,
            height: 480,
            fps: 15,
            format: "auto".into(),
        }
    }
}

/// Replay of a recorded clip (`audio.source = "replay"`, `video.source = "replay"`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ReplayConfig {
    /// The clip: a directory holding `audio.wav` and `frames/` (or `video.y4m`), like the demo
    /// in `models/demo`, or a data set clip's path without extension (`DIR/ID` for
    /// `DIR/ID.wav` + `DIR/ID.mjpeg` or `DIR/ID.y4m`).
    pub clip: PathBuf,
    /// Explicit WAV file, overriding the clip's.
    pub audio: Option<PathBuf>,
    /// Explicit frames (directory of PNG/JPEG, a .y4m or an .mjpeg file), overriding the clip's.
    pub video: Option<PathBuf>,
    /// Frame rate of a frames directory; 0 = from the clip's `timeline.json` (`fps`). Y4M files
    /// carry their own.
    pub fps: u32,
    /// true: paced in real time, as a camera and microphone would deliver it. false (default):
    /// as fast as inference goes; nothing is dropped, and the timestamps are the clip's.
    pub realtime: bool,
    /// Times the clip is played (1, default: once); 0 loops it until `mbtd` is stopped. Each
    /// lap continues the previous one's timestamps (for a soak: hours of windows from one
    /// clip); each stream loops on its own length, so a clip whose audio and video lengths
    /// differ drifts apart by the difference every lap (measured and re-anchored like a
    /// device's drift).
    pub loops: u32,
}

impl Default for ReplayConfig {
    fn default() -> Self {
        ReplayConfig {
            clip: PathBuf::from("models/demo"),
            audio: None,
            video: None,
            fps: 0,
            realtime: false,
            loops: 1,
        }
    }
}

/// Test patterns (`audio.source = "synthetic"`, `video.source = "synthetic"`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SyntheticConfig {
    /// Audio: a sine at this frequency, with a burst of noise every `burst_every_s`.
    pub tone_hz: f64,
    pub burst_every_s: f64,
    /// Video: frame size of the moving-bar pattern (its rate is `video.fps`).
    pub width: u32,
    pub height: u32,
    /// Stop after this many seconds (0 = run until shut down).
    pub duration_s: f64,
    /// true: paced in real time; false: as fast as inference goes.
    pub realtime: bool,
}

impl Default for SyntheticConfig {
    fn default() -> Self {
        SyntheticConfig {
            tone_hz: 440.0,
            burst_every_s: 5.0,
            width: 160,
            height: 120,
            duration_s: 0.0,
            realtime: true,
        }
    }
}

/// Reconnecting a failed live source (ALSA, V4L2).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RecoveryConfig {
    /// First wait before reopening a failed device; doubled after each failed attempt ...
    pub backoff_initial_s: f64,
    /// ... up to this.
    pub backoff_max_s: f64,
    /// A blocking read that returns nothing for this long counts as a failure.
    pub read_timeout_s: f64,
}

impl Default for RecoveryConfig {
    fn default() -> Self {
        RecoveryConfig {
            backoff_initial_s: 0.5,
            backoff_max_s: 30.0,
            read_timeout_s: 2.0,
        }
    }
}

/// Turning per-window scores into debounced events. Scores are softmax probabilities.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct EventsConfig {
    /// An event opens when a label's score reaches `threshold` ...
    pub threshold: f32,
    /// ... and stays open while it stays at or above `release` (hysteresis).
    pub release: f32,
    /// An event is reported only once it has lasted this long (0: from its first window).
    pub min_duration_s: f64,
    /// After an event of a label ends, the same label cannot open a new one for this long.
    pub cooldown_s: f64,
    /// An `update` is sent when the event's peak score rose by at least this much (or the
    /// modalities behind it changed).
    pub update_delta: f32,
    /// Per-label overrides, e.g. `[events.labels.glass_breaking] threshold = 0.8`.
    pub labels: BTreeMap<String, LabelOverride>,
    /// Thresholds and on/off switches changed at run time (web page, MQTT `.../set` topics)
    /// are kept here, never in this TOML; they win over `labels` until reset. Default:
    /// `<state>/tuning.json`, beside the evidence directory.
    pub tuning_file: Option<PathBuf>,
}

impl EventsConfig {
    /// Where run-time threshold and on/off changes are kept (`events.tuning_file`).
    pub fn tuning_path(&self) -> PathBuf {
        self.tuning_file
            .clone()
            .unwrap_or_else(|| mbt_publish::config::state_dir().join("tuning.json"))
    }
}

impl Default for EventsConfig {
    fn default() -> Self {
        EventsConfig {
            threshold: 0.5,
            release: 0.3,
            min_duration_s: 0.0,
            cooldown_s: 2.0,
            update_delta: 0.05,
            labels: BTreeMap::new(),
            tuning_file: None,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(default, deny_unknown_fields)]
pub struct LabelOverride {
    pub threshold: Option<f32>,
    pub release: Option<f32>,
    pub min_duration_s: Option<f64>,
    pub cooldown_s: Option<f64>,
    /// `false`: the label is not listened for (no events; its scores are still shown).
    pub enabled: Option<bool>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SinkConfig {
    /// JSON lines on stdout, one event per line.
    pub stdout: bool,
    /// Also print one JSON line per scored window (`{"window": ...}`): the view a user needs
    /// to set thresholds.
    pub stdout_scores: bool,
    /// At shutdown, wait up to this long for spooled sinks (MQTT, `postcard.unix`) to deliver
    /// their backlog; what is left stays in the spool for the next start.
    pub shutdown_flush_s: f64,
}

impl Default for SinkConfig {
    fn default() -> Self {
        SinkConfig {
            stdout: true,
            stdout_scores: false,
            shutdown_flush_s: 5.0,
        }
    }
}

/// `[web]`: the page on the board (live scores, the camera view, events with their evidence,
/// the timeline) and its JSON API (`src/web`). On by default, on the loopback interface only:
/// binding any other address needs `token` (checked on every route but `/healthz`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct WebConfig {
    pub enabled: bool,
    /// `address:port`; port 0 picks a free one (logged).
    pub listen: String,
    /// The access token: a string of 16 or more characters, or `"generate"` (made once, kept
    /// in `<state>/web-token`, printed when made). Required unless `listen` is a loopback
    /// address; when set, required on loopback too.
    pub token: Option<String>,
    /// Minutes of scores the timeline keeps (in memory).
    pub timeline_minutes: f64,
    /// A near miss: a label's score rose to this fraction of its threshold without reaching it.
    pub watch_ratio: f32,
    /// Live subscribers (`/api/scores` streams) at once; more get 503.
    pub max_clients: usize,
    /// Events kept in memory for `/api/events` (on top of what the evidence store holds).
    pub max_events: usize,
    /// After a replayed clip ends, keep the page up this long (seconds; SIGINT ends it
    /// sooner), to look through the events of a recording.
    pub linger_s: f64,
}

impl Default for WebConfig {
    fn default() -> Self {
        WebConfig {
            enabled: true,
            listen: "127.0.0.1:8090".into(),
            token: None,
            timeline_minutes: 10.0,
            watch_ratio: 0.5,
            max_clients: 16,
            max_events: 500,
            linger_s: 0.0,
        }
    }
}

impl WebConfig {
    pub fn addr(&self) -> Result<std::net::SocketAddr, ConfigError> {
        self.listen
            .parse::<std::net::SocketAddr>()
            .map_err(|e| ConfigError {
                field: "web.listen".into(),
                reason: format!(
                    "`{}` is not an address like 127.0.0.1:8090 ({e})",
                    self.listen
                ),
            })
    }

    pub fn validate(&self) -> Result<(), ConfigError> {
        let err = |field: &str, reason: String| {
            Err(ConfigError {
                field: field.into(),
                reason,
            })
        };
        let addr = self.addr()?;
        match self.token.as_deref() {
            Some("generate") => {}
            Some(t) if t.len() < 16 || !t.chars().all(|c| c.is_ascii_graphic()) => {
                return err(
                    "web.token",
                    "expected 16 or more printable ASCII characters without spaces, or \"generate\"".into(),
                )
            }
            Some(_) => {}
            None if self.enabled && !addr.ip().is_loopback() => {
                return err(
                    "web.token",
                    format!(
                        "web.listen = {addr} is reachable from other machines, so the page needs a token: \
                         set `web.token = \"generate\"` (made once, printed, kept in the state directory) \
                         or a secret of 16+ characters, or listen on 127.0.0.1"
                    ),
                )
            }
            None => {}
        }
        if !(self.timeline_minutes > 0.0 && self.timeline_minutes <= 24.0 * 60.0) {
            return err(
                "web.timeline_minutes",
                "expected 0 < minutes <= 1440".into(),
            );
        }
        if !(self.watch_ratio > 0.0 && self.watch_ratio < 1.0) {
            return err("web.watch_ratio", "expected a fraction in (0, 1)".into());
        }
        if !(1..=1024).contains(&self.max_clients) {
            return err("web.max_clients", "expected 1..=1024".into());
        }
        if !(1..=100_000).contains(&self.max_events) {
            return err("web.max_events", "expected 1..=100000".into());
        }
        if !(self.linger_s >= 0.0 && self.linger_s <= 86_400.0) {
            return err("web.linger_s", "expected 0..=86400 seconds".into());
        }
        Ok(())
    }
}

#[derive(Debug, thiserror::Error)]
#[error("invalid setting `{field}`: {reason}")]
pub struct ConfigError {
    pub field: String,
    pub reason: String,
}

fn positive(v: f64) -> bool {
    v > 0.0 && v.is_finite()
}

fn unit(v: f64) -> bool {
    (0.0..=1.0).contains(&v)
}

impl Config {
    pub fn validate(&self) -> Result<(), ConfigError> {
        let err = |field: &str, reason: &str| {
            Err(ConfigError {
                field: field.to_string(),
                reason: reason.to_string(),
            })
        };
        if !["auto", "cpu", "cuda", "ort"].contains(&self.model.backend.as_str()) {
            return err("model.backend", "expected one of auto, cpu, cuda, ort");
        }
        const PROVIDERS: [&str; 9] = [
            "cpu", "cuda", "tensorrt", "qnn", "openvino", "vsinpu", "xnnpack", "rknpu", "acl",
        ];
        if let Some(p) = self
            .model
            .ort_providers
            .iter()
            .find(|p| !PROVIDERS.contains(&p.as_str()))
        {
            return Err(ConfigError {
                field: "model.ort_providers".into(),
                reason: format!(
                    "unknown provider `{p}`: expected any of {}",
                    PROVIDERS.join(", ")
                ),
            });
        }
        if !(self.model.watch_s >= 0.0 && self.model.watch_s <= 86_400.0) {
            return err(
                "model.watch_s",
                "expected 0 (reload on SIGHUP only) to 86400 seconds",
            );
        }
        if self
            .events
            .tuning_file
            .as_ref()
            .is_some_and(|p| p.as_os_str().is_empty())
        {
            return err(
                "events.tuning_file",
                "empty path (leave it out for the default)",
            );
        }
        if self.model.max_batch == 0 {
            return err("model.max_batch", "expected at least 1");
        }
        if !positive(self.window.length_s) {
            return err("window.length_s", "expected a positive number of seconds");
        }
        if !(self.window.hop_s > 0.0 && self.window.hop_s <= self.window.length_s) {
            return err("window.hop_s", "expected 0 < hop_s <= length_s");
        }
        if self.window.queue == 0 {
            return err("window.queue", "expected at least 1");
        }
        if !unit(self.window.min_audio_coverage) {
            return err("window.min_audio_coverage", "expected a fraction in [0, 1]");
        }
        if !unit(self.window.min_video_coverage) {
            return err("window.min_video_coverage", "expected a fraction in [0, 1]");
        }
        if !positive(self.window.audio_tolerance_s) {
            return err("window.audio_tolerance_s", "expected a positive number");
        }
        if !positive(self.window.stall_s) {
            return err("window.stall_s", "expected a positive number");
        }
        if !["alsa", "replay", "synthetic", "none"].contains(&self.audio.source.as_str()) {
            return err(
                "audio.source",
                "expected one of alsa, replay, synthetic, none",
            );
        }
        if !["v4l2", "replay", "synthetic", "none"].contains(&self.video.source.as_str()) {
            return err(
                "video.source",
                "expected one of v4l2, replay, synthetic, none",
            );
        }
        if self.audio.source == "none" && self.video.source == "none" {
            return err("audio.source", "audio and video cannot both be none");
        }
        if self.audio.rate == 0 || self.audio.channels == 0 || self.audio.period_ms == 0 {
            return err(
                "audio.rate",
                "rate, channels and period_ms must be positive",
            );
        }
        if self.video.width == 0 || self.video.height == 0 || self.video.fps == 0 {
            return err("video.width", "width, height and fps must be positive");
        }
        if !["auto", "mjpeg", "yuyv"].contains(&self.video.format.as_str()) {
            return err("video.format", "expected one of auto, mjpeg, yuyv");
        }
        if !(self.synthetic.tone_hz > 0.0 && self.synthetic.tone_hz < 8000.0) {
            return err("synthetic.tone_hz", "expected 0 < tone_hz < 8000");
        }
        if !positive(self.synthetic.burst_every_s) {
            return err("synthetic.burst_every_s", "expected a positive number");
        }
        if self.synthetic.width < 2 || self.synthetic.height < 2 {
            return err("synthetic.width", "width and height must be at least 2");
        }
        if !(self.synthetic.duration_s >= 0.0 && self.synthetic.duration_s.is_finite()) {
            return err("synthetic.duration_s", "expected 0 (forever) or seconds");
        }
        if !positive(self.recovery.backoff_initial_s) {
            return err("recovery.backoff_initial_s", "expected a positive number");
        }
        if !(self.recovery.backoff_max_s >= self.recovery.backoff_initial_s
            && self.recovery.backoff_max_s.is_finite())
        {
            return err("recovery.backoff_max_s", "expected >= backoff_initial_s");
        }
        if !positive(self.recovery.read_timeout_s) {
            return err("recovery.read_timeout_s", "expected a positive number");
        }
        let e = &self.events;
        check_thresholds("events", e.threshold, e.release)?;
        if !(e.min_duration_s >= 0.0 && e.min_duration_s.is_finite()) {
            return err("events.min_duration_s", "expected seconds >= 0");
        }
        if !(e.cooldown_s >= 0.0 && e.cooldown_s.is_finite()) {
            return err("events.cooldown_s", "expected seconds >= 0");
        }
        if !(e.update_delta > 0.0 && e.update_delta <= 1.0) {
            return err("events.update_delta", "expected 0 < update_delta <= 1");
        }
        for (label, o) in &e.labels {
            let field = format!("events.labels.{label}");
            check_thresholds(
                &field,
                o.threshold.unwrap_or(e.threshold),
                o.release.unwrap_or(e.release),
            )?;
            if o.min_duration_s
                .is_some_and(|v| !(v >= 0.0 && v.is_finite()))
            {
                return err(&format!("{field}.min_duration_s"), "expected seconds >= 0");
            }
            if o.cooldown_s.is_some_and(|v| !(v >= 0.0 && v.is_finite())) {
                return err(&format!("{field}.cooldown_s"), "expected seconds >= 0");
            }
        }
        if !(self.sink.shutdown_flush_s >= 0.0 && self.sink.shutdown_flush_s <= 3600.0) {
            return err("sink.shutdown_flush_s", "expected 0..=3600 seconds");
        }
        self.web.validate()?;
        self.validate_publishing().map_err(|e| ConfigError {
            field: e.field,
            reason: e.reason,
        })
    }

    /// The publishing sections, validated by `mbt-publish` (URLs, addresses, that TLS and
    /// password files exist when MQTT is on, GPIO pins, spool and evidence bounds).
    fn validate_publishing(&self) -> Result<(), mbt_publish::config::ConfigError> {
        self.mqtt.validate()?;
        self.postcard.validate()?;
        self.gpio.validate()?;
        self.spool.validate()?;
        self.metrics.validate()?;
        self.evidence.validate()
    }

    /// Whether any source delivers in real time (then inference must keep up, and windows it
    /// cannot take are dropped oldest first); otherwise the sources wait for inference.
    pub fn is_realtime(&self) -> bool {
        let live = |s: &str, replay_rt: bool| match s {
            "alsa" | "v4l2" => true,
            "replay" => replay_rt,
            "synthetic" => self.synthetic.realtime,
            _ => false,
        };
        live(&self.audio.source, self.replay.realtime)
            || live(&self.video.source, self.replay.realtime)
    }
}

fn check_thresholds(prefix: &str, threshold: f32, release: f32) -> Result<(), ConfigError> {
    if !(threshold > 0.0 && threshold <= 1.0) {
        return Err(ConfigError {
            field: format!("{prefix}.threshold"),
            reason: format!("expected 0 < threshold <= 1, got {threshold}"),
        });
    }
    if !(0.0..=threshold).contains(&release) {
        return Err(ConfigError {
            field: format!("{prefix}.release"),
            reason: format!("expected 0 <= release <= threshold ({threshold}), got {release}"),
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_validate_and_print_round_trip() {
        let c = Config::default();
        c.validate().unwrap();
        let text = toml::to_string_pretty(&c).unwrap();
        let back: Config = mbt_core::settings::load(&text, "printed", &[]).unwrap();
        assert_eq!(back, c);
    }

    #[test]
    fn errors_name_the_field() {
        let c: Config = mbt_core::settings::load("", "t", &["model.backend=tpu".into()]).unwrap();
        assert_eq!(c.validate().unwrap_err().field, "model.backend");
        let c: Config =
            mbt_core::settings::load("[window]\nlength_s = 2.0\nhop_s = 3.0\n", "t", &[]).unwrap();
        assert_eq!(c.validate().unwrap_err().field, "window.hop_s");
        let e = mbt_core::settings::load::<Config>("[window]\nlenght_s = 2.0\n", "mbtd.toml", &[])
            .unwrap_err()
            .to_string();
        assert!(e.contains("lenght_s") && e.contains("mbtd.toml"), "{e}");
        let c: Config = mbt_core::settings::load(
            "[events.labels.glass_breaking]\nthreshold = 0.4\nrelease = 0.6\n",
            "t",
            &[],
        )
        .unwrap();
        assert_eq!(
            c.validate().unwrap_err().field,
            "events.labels.glass_breaking.release"
        );
        let c: Config = mbt_core::settings::load("", "t", &["events.release=0.9".into()]).unwrap();
        assert_eq!(c.validate().unwrap_err().field, "events.release");
    }

    #[test]
    fn web_off_loopback_needs_a_token_and_errors_name_the_field() {
        let check = |sets: &[&str]| {
            let sets: Vec<String> = sets.iter().map(|s| s.to_string()).collect();
            let c: Config = mbt_core::settings::load("", "t", &sets).unwrap();
            c.validate().err().map(|e| (e.field.clone(), e.to_string()))
        };
        assert_eq!(check(&[]), None, "default: loopback, no token");
        let (field, msg) = check(&["web.listen=0.0.0.0:8090"]).unwrap();
        assert_eq!(field, "web.token");
        assert!(msg.contains("web.token = \"generate\""), "{msg}");
        assert_eq!(
            check(&["web.listen=0.0.0.0:8090", "web.token=generate"]),
            None
        );
        assert_eq!(
            check(&["web.listen=[::]:80", "web.token=0123456789abcdefXYZ"]),
            None
        );
        assert_eq!(check(&["web.token=short"]).unwrap().0, "web.token");
        // Off: nothing listens, nothing to protect.
        assert_eq!(check(&["web.enabled=false", "web.listen=0.0.0.0:1"]), None);
        assert_eq!(check(&["web.listen=localhost"]).unwrap().0, "web.listen");
        assert_eq!(check(&["web.watch_ratio=1"]).unwrap().0, "web.watch_ratio");
        assert_eq!(check(&["web.max_clients=0"]).unwrap().0, "web.max_clients");
    }

    #[test]
    fn publishing_errors_name_the_field() {
        for (set, field) in [
            ("mqtt.url=http://broker", "mqtt.url"),
            ("metrics.listen=localhost", "metrics.listen"),
            ("postcard.udp=nowhere", "postcard.udp"),
            ("spool.max_bytes=10", "spool.max_bytes"),
            ("evidence.jpeg_quality=0", "evidence.jpeg_quality"),
            ("sink.shutdown_flush_s=-1", "sink.shutdown_flush_s"),
        ] {
            let c: Config = mbt_core::settings::load("", "t", &[set.into()]).unwrap();
            let e = c.validate().unwrap_err();
            assert_eq!(e.field, field, "{set}: {e}");
            assert!(e.to_string().contains(field), "{e}");
        }
        let c: Config = mbt_core::settings::load(
            "[mqtt]\nenabled = true\nurl = \"mqtts://broker\"\nca_file = \"/nonexistent/ca.pem\"\n",
            "t",
            &[],
        )
        .unwrap();
        let e = c.validate().unwrap_err();
        assert_eq!(e.field, "mqtt.ca_file");
        assert!(e.reason.contains("/nonexistent/ca.pem"), "{e}");
        let e = mbt_core::settings::load::<Config>("[mqtt]\nurll = \"x\"\n", "mbtd.toml", &[])
            .unwrap_err()
            .to_string();
        assert!(e.contains("urll"), "{e}");
    }

    #[test]
    fn realtime_follows_the_sources() {
        let mut c = Config::default();
        assert!(c.is_realtime(), "alsa + v4l2 are live");
        c.audio.source = "replay".into();
        c.video.source = "replay".into();
        assert!(!c.is_realtime(), "replay defaults to as fast as possible");
        c.replay.realtime = true;
        assert!(c.is_realtime());
    }
}
