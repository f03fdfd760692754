//! The `mbtd` binary end to end on a random-init model: a replayed clip to its end, clean
//! shutdown on SIGTERM with open events ended, and refusal of a model without metadata.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use mbt_core::event::EventKind;

use crate::common::{events, mbtd, random_model, random_model_bytes, stderr, temp_dir, write_clip};

#[test]
fn replay_runs_to_the_end_and_exits_0() {
    let dir = temp_dir("bin-replay");
    let clip = write_clip(&dir, "clip", 5.0, 40, 8);
    let model = random_model().display().to_string();
    let clip = clip.display().to_string();
    // Thresholds low enough that a random model's ~1/6 probabilities open events.
    let o = mbtd(&[
        "--set",
        &format!("model.path={model}"),
        "--set",
        "audio.source=replay",
        "--set",
        "video.source=replay",
        "--set",
        &format!("replay.clip={clip}"),
        "--set",
        "events.threshold=0.01",
        "--set",
        "events.release=0.0",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let ev = events(&o.stdout);
    let new: Vec<_> = ev.iter().filter(|e| e.kind == EventKind::New).collect();
    assert_eq!(new.len(), 5, "one per label but `none`: {ev:?}");
    assert!(new.iter().all(|e| e.label != "none"));
    // Every event that opened is ended when the clip ends, at the end of the last window.
    for n in &new {
        let end = ev
            .iter()
            .find(|e| e.id == n.id && e.kind == EventKind::End)
            .unwrap_or_else(|| panic!("{} not ended", n.id));
        assert_eq!(end.end_s, Some(5.0));
        assert_eq!(end.model_version, "edge-random-test");
        assert!(end.modalities.audio && end.modalities.video);
    }
    assert!(stderr(&o).contains("windows_cut\":4"), "{}", stderr(&o));
}

#[test]
fn sigterm_shuts_down_cleanly_and_ends_open_events() {
    let model = random_model().display().to_string();
    let mut child = Command::new(env!("CARGO_BIN_EXE_mbtd"))
        .args(crate::common::WEB_ANY_PORT)
        .args([
            "--set",
            &format!("model.path={model}"),
            "--set",
            "audio.source=synthetic",
            "--set",
            "video.source=synthetic",
            "--set",
            "video.fps=8",
            "--set",
            "synthetic.realtime=true",
            "--set",
            "events.threshold=0.01",
            "--set",
            "events.release=0.0",
        ])
        .current_dir(crate::common::ROOT)
        .env_remove("MBTD_CONFIG")
        .env_remove("STATE_DIRECTORY")
        .env("XDG_STATE_HOME", temp_dir("sigterm-state"))
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("mbtd starts");
    let mut out = BufReader::new(child.stdout.take().unwrap());
    // The first window ends at 2 s of real time; its events follow.
    let mut first = String::new();
    let t0 = Instant::now();
    out.read_line(&mut first).unwrap();
    assert!(
        t0.elapsed() < Duration::from_secs(30),
        "no event within 30 s"
    );
    let status = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let mut rest = Vec::new();
    std::io::Read::read_to_end(&mut out, &mut rest).unwrap();
    let st = child.wait().unwrap();
    let mut err = String::new();
    std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut err).unwrap();
    assert_eq!(st.code(), Some(0), "{err}");
    let mut ev = events(first.as_bytes());
    ev.extend(events(&rest));
    let opened: Vec<&str> = ev
        .iter()
        .filter(|e| e.kind == EventKind::New)
        .map(|e| e.id.as_str())
        .collect();
    assert!(!opened.is_empty());
    for id in opened {
        assert!(
            ev.iter().any(|e| e.id == id && e.kind == EventKind::End),
            "event {id} was not ended at shutdown: {ev:?}"
        );
    }
    assert!(err.contains("SIGTERM"), "{err}");
}

#[test]
fn a_model_without_metadata_is_refused_naming_the_key() {
    let dir = temp_dir("bin-metadata");
    // Rename the `mbt.labels` metadata key in place (same length, so the protobuf stays valid).
    let mut bytes = random_model_bytes().to_vec();
    let key = b"mbt.labels";
    let at = bytes
        .windows(key.len())
        .position(|w| w == key)
        .expect("the export carries mbt.labels");
    bytes[at..at + key.len()].copy_from_slice(b"mbt.lebals");
    let p = dir.join("no-labels.onnx");
    std::fs::write(&p, bytes).unwrap();
    let o = mbtd(&[
        "--set",
        &format!("model.path={}", p.display()),
        "--set",
        "audio.source=synthetic",
        "--set",
        "video.source=synthetic",
    ]);
    assert_eq!(o.status.code(), Some(1));
    let e = stderr(&o);
    assert!(
        e.contains("mbt.labels") && e.contains("no-labels.onnx"),
        "{e}"
    );
}
