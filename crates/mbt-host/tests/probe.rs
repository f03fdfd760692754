//! `mbt data probe` end to end through the binary: a data set rendered from the test fixture
//! pool, the committed trunks, the report's counts against the manifest counted here, and the
//! refusals. (The regression's arithmetic is checked against hand-solved cases in
//! `src/probe/logistic.rs`.)

use std::path::Path;

use serde_json::Value;

mod common;
use common::{fixture, mbt, tmp};

fn arg(p: &Path) -> &str {
    p.to_str().expect("UTF-8 path")
}

#[test]
fn the_probe_reports_every_kind_heard_and_seen_with_the_manifests_counts() {
    let root = tmp("probe");
    let pool = fixture(&root);
    let data = root.join("d");
    let cache = root.join("cache");
    let o = mbt(&[
        "data",
        "build",
        "--seed",
        "2",
        "--out",
        arg(&data),
        "--train",
        "48",
        "--val",
        "24",
        "--test",
        "4",
        "--cache",
        arg(&cache),
        "--pool",
        arg(&pool),
    ]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let report = root.join("probe.json");
    let config = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../configs/edge.toml");
    // `mbt data probe` on this data set with the shipped config, then `rest`.
    let probe = |rest: &[&str]| {
        let mut all = vec![
            "data",
            "probe",
            "--data",
            arg(&data),
            "--config",
            arg(&config),
        ];
        all.extend_from_slice(rest);
        mbt(&all)
    };
    let o = probe(&[
        "--train-clips",
        "48",
        "--frames",
        "4",
        "--iterations",
        "50",
        "--out",
        arg(&report),
    ]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(o.status.success(), "{err}");
    let stdout = String::from_utf8_lossy(&o.stdout);
    assert!(stdout.contains("intersection rule"), "{stdout}");
    let r: Value = serde_json::from_slice(&std::fs::read(&report).unwrap()).unwrap();
    assert_eq!(
        (r["train_clips"].as_u64(), r["clips"].as_u64()),
        (Some(48), Some(24))
    );
    assert_eq!(r["frames"], 4);
    // Positives per kind, counted here from the validation lines of the manifest.
    let text = std::fs::read_to_string(data.join("manifest.jsonl")).unwrap();
    let val: Vec<Value> = text
        .lines()
        .map(|l| serde_json::from_str::<Value>(l).unwrap())
        .filter(|e| e["split"] == "val")
        .collect();
    let count = |kind: &str, list: &str, outer: &str| {
        val.iter()
            .filter(|e| {
                e["params"][outer][list]
                    .as_array()
                    .unwrap()
                    .iter()
                    .any(|x| x["kind"] == kind)
            })
            .count() as u64
    };
    let kinds = r["kinds"].as_array().unwrap();
    assert_eq!(kinds.len(), 9);
    let mut seen_some = 0;
    for k in kinds {
        let name = k["kind"].as_str().unwrap();
        assert_eq!(
            k["heard_positives"].as_u64(),
            Some(count(name, "sounds", "audio")),
            "{name}"
        );
        assert_eq!(
            k["seen_positives"].as_u64(),
            Some(count(name, "objects", "video")),
            "{name}"
        );
        for key in ["heard_auc", "seen_auc"] {
            match k[key].as_f64() {
                Some(a) => assert!((0.0..=1.0).contains(&a), "{name} {key} {a}"),
                // No positive (or no negative) in the split: no AUC, written as null.
                None => assert!(k[key].is_null(), "{name} {key}: {}", k[key]),
            }
        }
        seen_some += (k["seen_positives"].as_u64().unwrap() > 0) as usize;
    }
    // The fixture pool has dog, glass, speech, door and distractor pictures.
    assert!(seen_some >= 4, "{seen_some}");
    for key in [
        "exact_heard_set",
        "exact_seen_set",
        "intersection_kind_top1",
    ] {
        let v = r[key].as_f64().unwrap();
        assert!((0.0..=1.0).contains(&v), "{key} {v}");
    }

    // Refusals: probing the training split, and a frame count the clips do not have.
    let o = probe(&["--split", "train"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&o.stderr).contains("--split train"));
    let o = probe(&["--train-clips", "48", "--frames", "17"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&o.stderr).contains("--frames 17"));
    std::fs::remove_dir_all(&root).unwrap();
}
