//! The daemon's inference backends against each other: ONNX Runtime (the official build,
//! opened at run time) must score every window of the demo clip as tract does, and `auto`
//! must fall back to the CPU, saying why, when the configured accelerator is not there.
//!
//! Needs the ONNX Runtime library: `ORT_DYLIB_PATH`, or `scripts/fetch-onnxruntime.sh`
//! (which `scripts/test.sh` runs) having put it in ~/.cache/mbt-edge/onnxruntime.

use crate::common::{demo_scores, mbtd, mbtd_demo, stderr};

fn onnxruntime_library() -> String {
    mbt_infer::onnxruntime::reference_library().unwrap_or_else(|e| panic!("{e}"))
}

/// What a demo run printed: per-window fused scores (window index, probabilities in label
/// order), the events (one line each), and the log.
type DemoRun = (Vec<(u64, Vec<f64>)>, Vec<String>, String);

/// A demo run with `sink.stdout_scores`.
fn demo_run(extra: &[&str]) -> DemoRun {
    let run = demo_scores(extra);
    let windows = run
        .windows
        .iter()
        .map(|w| (w.index, w.fused.iter().map(|(_, p)| *p).collect()))
        .collect();
    let events = run
        .events
        .iter()
        .map(|v| format!("{} {} {}", v["type"], v["label"], v["start_s"]))
        .collect();
    (windows, events, run.log)
}

#[test]
fn onnxruntime_scores_the_demo_like_tract() {
    let lib = onnxruntime_library();
    let (tract, tract_events, _) = demo_run(&["--set", "model.backend=cpu"]);
    let (ort, ort_events, log) = demo_run(&[
        "--set",
        "model.backend=ort",
        "--set",
        "model.ort_providers=[\"cpu\"]",
        "--set",
        &format!("model.ort_library={lib}"),
    ]);
    assert!(log.contains("onnxruntime-1.32.0 [cpu]"), "{log}");
    assert!(tract.len() >= 10, "{tract:?}");
    assert_eq!(tract.len(), ort.len());
    for ((i, t), (j, o)) in tract.iter().zip(&ort) {
        assert_eq!(i, j);
        for (x, y) in t.iter().zip(o) {
            assert!((x - y).abs() <= 1e-4, "window {i}: {t:?} vs {o:?}");
        }
    }
    assert_eq!(tract_events, ort_events);
}

#[test]
fn auto_falls_back_to_the_cpu_when_the_accelerator_is_missing_and_says_why() {
    let lib = onnxruntime_library();
    // The official x86 build has no QNN provider: auto must skip ONNX Runtime and run tract.
    let (windows, _, log) = demo_run(&[
        "--set",
        "model.backend=auto",
        "--set",
        "model.ort_providers=[\"qnn\"]",
        "--set",
        &format!("model.ort_library={lib}"),
    ]);
    assert!(!windows.is_empty());
    assert!(
        log.contains("backend skipped: ort:") && log.contains("qnn"),
        "{log}"
    );
    assert!(log.contains("backend: tract-cpu"), "{log}");
    // Asked for explicitly, the same configuration is an error at start, not a CPU run.
    let o = mbtd_demo(&[
        "--set",
        "model.backend=ort",
        "--set",
        "model.ort_providers=[\"qnn\"]",
        "--set",
        &format!("model.ort_library={lib}"),
    ]);
    assert!(!o.status.success());
    assert!(stderr(&o).contains("qnn"), "{}", stderr(&o));
    // An unknown provider name is a configuration error naming the field.
    let o = mbtd(&["--set", "model.ort_providers=[\"tpu\"]", "--print-config"]);
    assert!(!o.status.success());
    assert!(stderr(&o).contains("model.ort_providers"), "{}", stderr(&o));
}
