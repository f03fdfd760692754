//! Shared by the test modules: a random-init export of the default edge model (built once per
//! test run, in the test itself, so no model file has to be checked in), clip writers, and a
//! runner for the `mbtd` binary.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::OnceLock;

use burn::prelude::*;

pub const ROOT: &str = env!("CARGO_MANIFEST_DIR");

/// A fresh directory under the system temp dir, unique to this process and `name`.
pub fn temp_dir(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("mbtd-test-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).expect("temp dir");
    d
}

/// `configs/edge-scratch.toml` with random weights (seed 1), exported to ONNX: the model bytes.
pub fn random_model_bytes() -> &'static [u8] {
    static BYTES: OnceLock<Vec<u8>> = OnceLock::new();
    BYTES.get_or_init(|| {
        let path = Path::new(ROOT).join("configs/edge-scratch.toml");
        let text = std::fs::read_to_string(&path).expect("configs/edge-scratch.toml");
        let cfg = mbt_model::ModelConfig::from_toml(&text, "configs/edge-scratch.toml", &[])
            .expect("edge config");
        let device = Device::flex();
        device.seed(1);
        let model = mbt_model::Mbt::new(&cfg, &device);
        mbt_model::export::export(
            &model,
            &cfg,
            &mbt_model::export::ExportOptions {
                model_version: "edge-random-test".into(),
                training_data_hash: "none (random init)".into(),
                int8: None,
                thresholds: Default::default(),
            },
        )
        .expect("export")
    })
}

/// `configs/edge-scratch.toml` with random weights (`seed`), `labels` and `version`, exported
/// to ONNX: a second model for reload tests (same inputs as [`random_model_bytes`]).
pub fn random_model_variant(version: &str, labels: &[&str], seed: u64) -> Vec<u8> {
    let path = Path::new(ROOT).join("configs/edge-scratch.toml");
    let text = std::fs::read_to_string(&path).expect("configs/edge-scratch.toml");
    let list: Vec<String> = labels.iter().map(|l| format!("\"{l}\"")).collect();
    let cfg = mbt_model::ModelConfig::from_toml(
        &text,
        "configs/edge-scratch.toml",
        &[format!("labels=[{}]", list.join(","))],
    )
    .expect("edge config with other labels");
    let device = Device::flex();
    device.seed(seed);
    let model = mbt_model::Mbt::new(&cfg, &device);
    mbt_model::export::export(
        &model,
        &cfg,
        &mbt_model::export::ExportOptions {
            model_version: version.into(),
            training_data_hash: "none (random init)".into(),
            int8: None,
            thresholds: Default::default(),
        },
    )
    .expect("export")
}

/// The random model written to a file (once per test run).
pub fn random_model() -> &'static Path {
    static PATH: OnceLock<PathBuf> = OnceLock::new();
    PATH.get_or_init(|| {
        let p = temp_dir("model").join("edge-random.onnx");
        std::fs::write(&p, random_model_bytes()).expect("write model");
        p
    })
}

/// Writes a data set style clip `DIR/NAME.wav` + `DIR/NAME.y4m`: `audio_s` seconds of a
/// 16 kHz tone and `frames` 32x24 frames at `fps`. Returns the clip path without extension.
pub fn write_clip(dir: &Path, name: &str, audio_s: f64, frames: usize, fps: u32) -> PathBuf {
    let stem = dir.join(name);
    let n = (audio_s * 16_000.0).round() as usize;
    let samples: Vec<f32> = (0..n)
        .map(|i| 0.3 * (i as f32 * 440.0 * std::f32::consts::TAU / 16_000.0).sin())
        .collect();
    mbt_media::wav::write_mono_i16(&stem.with_extension("wav"), 16_000, &samples).expect("wav");
    let frames: Vec<mbt_media::RgbFrame> = (0..frames)
        .map(|i| mbt_media::RgbFrame {
            width: 32,
            height: 24,
            data: (0..32 * 24 * 3)
                .map(|p| ((p + 7 * i) % 256) as u8)
                .collect(),
        })
        .collect();
    std::fs::write(
        stem.with_extension("y4m"),
        mbt_media::y4m::encode(&frames, fps),
    )
    .expect("y4m");
    stem
}

/// Runs `mbtd` to its end. Its state (spool, evidence: `$XDG_STATE_HOME/mbtd`) goes to a
/// temp directory, never the user's own.
pub fn mbtd(args: &[&str]) -> Output {
    static STATE: OnceLock<PathBuf> = OnceLock::new();
    mbtd_with_state(args, STATE.get_or_init(|| temp_dir("state")))
}

/// The bundled model replaying the bundled demo clip (`replay.clip`'s default).
pub const DEMO: [&str; 6] = [
    "--set",
    "model.path=models/edge.onnx",
    "--set",
    "audio.source=replay",
    "--set",
    "video.source=replay",
];

/// [`mbtd`] on the bundled demo clip (`models/demo`, replayed) with the bundled model
/// (`models/edge.onnx`): the README's main job; `extra` arguments appended.
pub fn mbtd_demo(extra: &[&str]) -> Output {
    let mut args = DEMO.to_vec();
    args.extend_from_slice(extra);
    mbtd(&args)
}

/// One window's scores as `sink.stdout_scores` prints them (`{"window": {...}}`).
#[derive(Debug, Clone, serde::Deserialize)]
pub struct PrintedWindow {
    pub index: u64,
    pub start_s: f64,
    pub end_s: f64,
    /// (label, probability) in the model's label order.
    pub fused: Vec<(String, f64)>,
}

/// What a demo run with `sink.stdout_scores` printed: the scored windows, the other stdout
/// lines (the events) and the log.
pub struct ScoredRun {
    pub windows: Vec<PrintedWindow>,
    pub events: Vec<serde_json::Value>,
    pub log: String,
}

/// [`mbtd_demo`] with `sink.stdout_scores`; asserts that it succeeded. A stdout line that is
/// not JSON, or a window line of another shape, fails the test naming the line.
pub fn demo_scores(extra: &[&str]) -> ScoredRun {
    let o = mbtd_demo(&[&["--set", "sink.stdout_scores=true"], extra].concat());
    let log = stderr(&o);
    assert!(o.status.success(), "{log}");
    let mut run = ScoredRun {
        windows: Vec::new(),
        events: Vec::new(),
        log,
    };
    for line in String::from_utf8_lossy(&o.stdout).lines() {
        let v: serde_json::Value = serde_json::from_str(line)
            .unwrap_or_else(|e| panic!("stdout line is not JSON ({e}): {line}"));
        match v.get("window") {
            Some(w) => run.windows.push(
                serde_json::from_value(w.clone())
                    .unwrap_or_else(|e| panic!("window line ({e}): {line}")),
            ),
            None => run.events.push(v),
        }
    }
    run
}

/// The web page on a free port: tests run daemons side by side (later `--set`s win).
pub const WEB_ANY_PORT: [&str; 2] = ["--set", "web.listen=127.0.0.1:0"];

/// [`mbtd`] with `$XDG_STATE_HOME` = `state`.
pub fn mbtd_with_state(args: &[&str], state: &Path) -> Output {
    Command::new(env!("CARGO_BIN_EXE_mbtd"))
        .args(WEB_ANY_PORT)
        .args(args)
        .current_dir(ROOT)
        .env_remove("MBTD_CONFIG")
        .env_remove("STATE_DIRECTORY")
        .env("XDG_STATE_HOME", state)
        .output()
        .expect("mbtd runs")
}

pub fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// The events `mbtd` printed (one JSON object per stdout line).
pub fn events(stdout: &[u8]) -> Vec<mbt_core::event::Event> {
    String::from_utf8_lossy(stdout)
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not an event: {l}: {e}")))
        .collect()
}

/// The run report `mbtd` logs at exit (`done: {...}`).
pub fn report(stderr: &str) -> serde_json::Value {
    let line = stderr
        .lines()
        .find_map(|l| l.split_once("done: ").map(|x| x.1))
        .unwrap_or_else(|| panic!("no report in: {stderr}"));
    serde_json::from_str(line).unwrap_or_else(|e| panic!("report {line}: {e}"))
}
