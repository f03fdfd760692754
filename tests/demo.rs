//! The main job end to end: `mbtd` on the bundled demo clip (`models/demo`) with the bundled
//! model (`models/edge.onnx`), events compared with the clip's ground truth
//! (`models/demo/timeline.json`).
//!
//! Tolerance: each ground-truth event must be matched by exactly one reported event of the
//! same label starting within 1.5 s of it (windows are 2 s at a 1 s hop, so an onset is only
//! known to about a second), and no other event may be reported.

use std::path::Path;

use mbt_core::event::EventKind;

use crate::common::{demo_scores, events, mbtd_demo, report, stderr, ROOT};

const TOLERANCE_S: f64 = 1.5;

/// The bundled model (edge-0.2, test top-1 45 %, see models/README.md) reports all six of the
/// demo's events but also about a dozen false ones (distractors and a second door label), so
/// this exact check is `#[ignore]`d until a better model ships:
/// `cargo test -p mbtd --test integration -- --ignored demo_clip_events`.
#[test]
#[ignore]
fn demo_clip_events_match_the_timeline() {
    let model = Path::new(ROOT).join("models/edge.onnx");
    if !model.exists() {
        eprintln!(
            "NOTICE: {} does not exist yet (no trained model is bundled): the demo end-to-end test is skipped",
            model.display()
        );
        return;
    }
    let o = mbtd_demo(&[]);
    assert!(o.status.success(), "{}", stderr(&o));
    let got: Vec<(String, f64)> = events(&o.stdout)
        .into_iter()
        .filter(|e| e.kind == EventKind::New)
        .map(|e| (e.label, e.start_s))
        .collect();
    let timeline: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(Path::new(ROOT).join("models/demo/timeline.json")).unwrap(),
    )
    .unwrap();
    let truth: Vec<(String, f64)> = timeline["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            (
                e["label"].as_str().unwrap().to_string(),
                e["start"].as_f64().unwrap(),
            )
        })
        .collect();
    let mut unmatched = got.clone();
    for (label, start) in &truth {
        let hit = unmatched
            .iter()
            .position(|(l, s)| l == label && (s - start).abs() <= TOLERANCE_S);
        match hit {
            Some(i) => {
                unmatched.remove(i);
            }
            None => panic!("missed {label} at {start} s; reported: {got:?}"),
        }
    }
    assert!(
        unmatched.is_empty(),
        "events not in the timeline: {unmatched:?} (reported {got:?}, truth {truth:?})"
    );
}

/// What holds with any bundled model: the main job runs to the end of the clip, exits 0, and
/// every event it prints is well formed (a known label, inside the clip, ended, the model's
/// version).
#[test]
fn demo_runs_with_the_bundled_model_and_prints_well_formed_events() {
    let o = mbtd_demo(&[]);
    assert!(o.status.success(), "{}", stderr(&o));
    let evs = events(&o.stdout);
    let timeline: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(Path::new(ROOT).join("models/demo/timeline.json")).unwrap(),
    )
    .unwrap();
    let duration = timeline["duration"].as_f64().expect("timeline duration");
    for e in &evs {
        assert!(
            mbt_core::AVE_CLASSES.contains(&e.label.as_str()) && e.label != "none",
            "{e:?}"
        );
        assert!((0.0..=duration + 0.5).contains(&e.start_s), "{e:?}");
        if e.kind == EventKind::End {
            assert!(e.end_s.is_some_and(|t| t >= e.start_s), "{e:?}");
        }
    }
    for n in evs.iter().filter(|e| e.kind == EventKind::New) {
        assert!(
            evs.iter().any(|e| e.kind == EventKind::End && e.id == n.id),
            "event {} never ended",
            n.id
        );
    }
}

/// The exit report's per-label peaks are what the windows printed (`sink.stdout_scores`): for
/// each label but `none`, the highest fused score and the first window that reached it; and
/// when nothing fired, the log says how close each label came instead of staying silent.
#[test]
fn the_report_gives_each_labels_highest_score_as_the_windows_printed_it() {
    let run = demo_scores(&["--set", "events.labels.glass_breaking.threshold=0.9"]);
    // label -> (score, window start, window end), from the printed windows.
    let mut best: Vec<(String, f64, f64, f64)> = Vec::new();
    for w in &run.windows {
        for (label, p) in w.fused.iter().filter(|(l, _)| l != "none") {
            match best.iter_mut().find(|b| &b.0 == label) {
                Some(b) if *p > b.1 => *b = (label.clone(), *p, w.start_s, w.end_s),
                Some(_) => {}
                None => best.push((label.clone(), *p, w.start_s, w.end_s)),
            }
        }
    }
    // Every label of the bundled model but `none`.
    assert_eq!(best.len(), mbt_core::AVE_CLASSES.len() - 1, "{best:?}");
    let bytes = std::fs::read(Path::new(ROOT).join("models/edge.onnx")).unwrap();
    let model_thresholds = mbt_infer::read_metadata(&bytes, "models/edge.onnx")
        .unwrap()
        .thresholds;
    let r = report(&run.log);
    let r: RunPeaks = serde_json::from_value(r.clone())
        .unwrap_or_else(|e| panic!("report without events/peaks ({e}): {r}"));
    assert_eq!(r.peaks.len(), best.len(), "{:?}", r.peaks);
    for (p, (label, score, start, end)) in r.peaks.iter().zip(&best) {
        assert_eq!(&p.label, label, "{:?}", r.peaks);
        assert!((p.score - score).abs() < 1e-6, "{label}: {:?}", r.peaks);
        assert_eq!(p.window_s, (*start, *end), "{label}: {:?}", r.peaks);
        // The model's own threshold for the label (`mbt.thresholds`, tuned on its
        // validation split) unless the run's config sets one; 0.5 (the default) otherwise.
        let threshold = if label == "glass_breaking" {
            0.9
        } else {
            model_thresholds.get(label).map_or(0.5, |t| f64::from(*t))
        };
        assert!((p.threshold - threshold).abs() < 1e-6, "{:?}", r.peaks);
    }
    let hint = run.log.lines().find(|l| l.contains("no events: "));
    match best.iter().max_by(|a, b| a.1.total_cmp(&b.1)) {
        Some(top) if r.events == 0 => {
            let hint = hint.unwrap_or_else(|| panic!("no hint when nothing fired: {}", run.log));
            assert!(
                hint.contains(&format!("highest scores: {} {:.3}", top.0, top.1)),
                "{hint}"
            );
        }
        _ => assert!(hint.is_none(), "{}", run.log),
    }
}

/// The part of `mbtd`'s exit report the peaks test reads.
#[derive(serde::Deserialize)]
struct RunPeaks {
    events: u64,
    peaks: Vec<Peak>,
}

#[derive(Debug, serde::Deserialize)]
struct Peak {
    label: String,
    score: f64,
    window_s: (f64, f64),
    threshold: f64,
}
