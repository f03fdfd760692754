//! `mbt model stats`, `mbt export` and `mbt infer` as a user runs them.

use std::path::PathBuf;
use std::process::{Command, Output};

mod common;
use common::onnxruntime_library;

fn mbt(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_mbt"))
        .current_dir(root())
        .args(args)
        .output()
        .expect("mbt runs")
}

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn tmp(name: &str) -> String {
    let d = std::env::temp_dir().join(format!("mbt-model-{}", std::process::id()));
    std::fs::create_dir_all(&d).unwrap();
    d.join(name).display().to_string()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn total_gmacs(args: &[&str]) -> (f64, f64) {
    let mut a = vec![
        "model",
        "stats",
        "--config",
        "configs/vit-b-paper.toml",
        "--json",
    ];
    a.extend_from_slice(args);
    let o = mbt(&a);
    assert!(o.status.success(), "{}", stderr(&o));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    (
        v["total"]["macs"].as_f64().unwrap() / 1e9,
        v["total"]["params"].as_f64().unwrap() / 1e6,
    )
}

/// Figures from an independent count (the issue): ~174 M parameters with separate streams,
/// 215.4 GMACs late fusion, 216.4 bottleneck at Lf = 0, 238.5 full attention at Lf = 0.
#[test]
fn stats_reproduce_the_vit_b_figures() {
    let (_, params) = total_gmacs(&[]);
    let (late, _) = total_gmacs(&["--set", "fusion=late"]);
    let (bott, _) = total_gmacs(&["--set", "fusion_layer=0"]);
    let (full, _) = total_gmacs(&["--set", "fusion=full_attention", "--set", "fusion_layer=0"]);
    println!("vit-b-paper: {params:.1} M params, late {late:.2}, bottleneck@0 {bott:.2}, full@0 {full:.2} GMACs");
    for (ours, want) in [(params, 174.0), (late, 215.4), (bott, 216.4), (full, 238.5)] {
        assert!((ours - want).abs() / want < 0.02, "{ours} vs {want}");
    }
}

#[test]
fn bad_config_names_the_field() {
    let o = mbt(&[
        "model",
        "stats",
        "--config",
        "configs/edge-scratch.toml",
        "--set",
        "heads=5",
    ]);
    assert_eq!(o.status.code(), Some(1));
    assert!(
        stderr(&o).contains("heads") && stderr(&o).contains("edge-scratch.toml"),
        "{}",
        stderr(&o)
    );
    let o = mbt(&[
        "model",
        "stats",
        "--config",
        "configs/edge-scratch.toml",
        "--set",
        "fusion_layer=9",
    ]);
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("fusion_layer"), "{}", stderr(&o));
    let o = mbt(&[
        "model",
        "stats",
        "--config",
        "configs/edge-scratch.toml",
        "--set",
        "tokenizer.video.num_frames=0",
    ]);
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("num_frames"), "{}", stderr(&o));
}

#[test]
fn export_then_infer_on_tokenized_files() {
    let onnx = tmp("edge.onnx");
    let o = mbt(&[
        "export",
        "--config",
        "configs/edge-scratch.toml",
        "--set",
        "layers=2",
        "--set",
        "fusion_layer=1",
        "--random-init",
        "--seed",
        "1",
        "--out",
        &onnx,
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let (v, a) = (tmp("v.npy"), tmp("a.npy"));
    let fixtures = "crates/mbt-core/tests/fixtures";
    let o = mbt(&[
        "tokenize",
        "audio",
        &format!("{fixtures}/cli_speech_stereo_s24.wav"),
        "--patches",
        "--out",
        &a,
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let y4m = tmp("clip.y4m");
    let frames: Vec<mbt_media::RgbFrame> = (0..16)
        .map(|i| mbt_media::RgbFrame {
            width: 160,
            height: 120,
            data: (0..160 * 120 * 3)
                .map(|p| ((p * 7 + i * 11) % 256) as u8)
                .collect(),
        })
        .collect();
    std::fs::write(&y4m, mbt_media::y4m::encode(&frames, 8)).unwrap();
    // configs/edge-scratch.toml groups frames in tubelets of 4 (the tokenizer default is 2).
    let o = mbt(&[
        "tokenize",
        "video",
        &y4m,
        "--set",
        "video.tubelet=4",
        "--out",
        &v,
    ]);
    assert!(o.status.success(), "{}", stderr(&o));

    let o = mbt(&["infer", "--model", &onnx, "--video", &v, "--audio", &a]);
    assert!(o.status.success(), "{}", stderr(&o));
    let j: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(j["labels"].as_array().unwrap().len(), 6);
    for key in ["logits", "logits_video", "logits_audio"] {
        let rows = j[key].as_array().unwrap();
        assert_eq!(rows.len(), 1);
        assert_eq!(rows[0].as_array().unwrap().len(), 6);
    }
    // The fused logits are the mean of the two heads'.
    for c in 0..6 {
        let f = |k: &str| j[k][0][c].as_f64().unwrap();
        assert!((f("logits") - (f("logits_video") + f("logits_audio")) / 2.0).abs() < 1e-5);
    }

    // Wrong shapes and broken files: clear errors, exit 1.
    let o = mbt(&["infer", "--model", &onnx, "--video", &a, "--audio", &a]);
    assert_eq!(o.status.code(), Some(1));
    assert!(
        stderr(&o).contains("expected [98, 3072]"), // 98 tokens of 4 x 16 x 16 x 3
        "{}",
        stderr(&o)
    );
    let cut = tmp("cut.onnx");
    let bytes = std::fs::read(&onnx).unwrap();
    std::fs::write(&cut, &bytes[..bytes.len() / 2]).unwrap();
    let o = mbt(&["infer", "--model", &cut, "--video", &v, "--audio", &a]);
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("cut.onnx"), "{}", stderr(&o));
    let o = mbt(&["infer", "--model", &v, "--video", &v, "--audio", &a]);
    assert_eq!(o.status.code(), Some(1));
    assert!(
        stderr(&o).contains("not a readable ONNX model") || stderr(&o).contains("metadata"),
        "{}",
        stderr(&o)
    );
}

/// onnxruntime (the independent reference) against tract, and the ONNX checker, through
/// `crates/mbt-model/tests/ort_check.py`. Needs Python with onnx + onnxruntime (see the
/// script's docstring); set MBT_PYTHON to that interpreter. Run:
/// `cargo test -p mbt-host --test model -- --ignored onnxruntime`
#[test]
#[ignore = "needs Python with onnx and onnxruntime (pip); see crates/mbt-model/tests/ort_check.py"]
fn onnxruntime_agrees_with_tract() {
    let py = std::env::var("MBT_PYTHON").unwrap_or_else(|_| {
        format!(
            "{}/.cache/mbt-pyref/bin/python",
            std::env::var("HOME").unwrap_or_default()
        )
    });
    let o = Command::new(py)
        .arg(root().join("crates/mbt-model/tests/ort_check.py"))
        .arg(env!("CARGO_BIN_EXE_mbt"))
        .output()
        .expect("python runs");
    println!("{}", String::from_utf8_lossy(&o.stdout));
    assert!(
        o.status.success(),
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        stderr(&o)
    );
}

fn logits(o: &Output) -> Vec<Vec<f64>> {
    assert!(o.status.success(), "{}", stderr(o));
    let j: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    ["logits", "logits_video", "logits_audio"]
        .iter()
        .map(|k| {
            j[k][0]
                .as_array()
                .unwrap()
                .iter()
                .map(|v| v.as_f64().unwrap())
                .collect()
        })
        .collect()
}

/// `mbt infer --backend ort` runs the shipped models on the official ONNX Runtime build (an
/// independent implementation) and gets tract's logits, on the demo clip's tokens.
#[test]
fn onnxruntime_backend_equals_tract_on_the_shipped_models() {
    let lib = onnxruntime_library();
    let (v, a) = (tmp("demo-v.npy"), tmp("demo-a.npy"));
    let o = mbt(&[
        "tokenize",
        "audio",
        "models/demo/audio.wav",
        "--patches",
        // The shipped model's tokenizer settings (configs/edge.toml): YAMNet patches ...
        "--set",
        "audio.front_end=\"yamnet\"",
        "--set",
        "audio.num_frames=196",
        "--set",
        "audio.patch_hop=25",
        "--out",
        &a,
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let o = mbt(&[
        "tokenize",
        "video",
        "models/demo/frames",
        // ... and whole frames, channel first.
        "--set",
        "video.layout=\"frames\"",
        "--out",
        &v,
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    // fp32: the 1e-4. (The int8 forms are compared on random-init exports in
    // crates/mbt-model/tests/parity.rs; edge-0.2 ships no int8 file, see models/README.md.)
    for (model, tol) in [("models/edge.onnx", 1e-4)] {
        let run = |backend: &str| {
            logits(&mbt(&[
                "infer",
                "--model",
                model,
                "--video",
                &v,
                "--audio",
                &a,
                "--backend",
                backend,
                "--ort-lib",
                &lib,
            ]))
        };
        let (tract, ort) = (run("tract"), run("ort"));
        for (t, o) in tract.iter().zip(&ort) {
            assert_eq!(t.len(), mbt_core::AVE_CLASSES.len());
            let diff = t
                .iter()
                .zip(o)
                .map(|(x, y)| (x - y).abs())
                .fold(0.0, f64::max);
            assert!(
                diff <= tol,
                "{model}: max |tract - ort| = {diff}: {t:?} vs {o:?}"
            );
            let argmax = |r: &[f64]| (0..r.len()).max_by(|&i, &j| r[i].total_cmp(&r[j]));
            assert_eq!(argmax(t), argmax(o), "{model}: {t:?} vs {o:?}");
        }
    }

    // Neither --ort-lib nor ORT_DYLIB_PATH: the copy scripts/fetch-onnxruntime.sh installs is
    // found where the script puts it (MBT_ORT_DIR here, a directory holding only that file),
    // and gives the logits the named library gives. Without that rule this run would look for
    // libonnxruntime.so on the loader's path, which holds none here, and fail.
    let dir = std::env::temp_dir().join(format!("mbt-test-ort-dir-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display()));
    let fetched = format!(
        "libonnxruntime.so.{}",
        mbt_infer::onnxruntime::FETCHED_VERSION
    );
    let target = std::fs::canonicalize(&lib).unwrap_or_else(|e| panic!("{lib}: {e}"));
    std::os::unix::fs::symlink(target, dir.join(fetched))
        .unwrap_or_else(|e| panic!("symlink in {}: {e}", dir.display()));
    // `mbt infer --backend ort` on the shipped fp32 model, the library found by the rule above
    // unless `extra` names one.
    let infer = |extra: &[&str]| {
        let mut args = vec![
            "infer",
            "--model",
            "models/edge.onnx",
            "--video",
            &v,
            "--audio",
            &a,
            "--backend",
            "ort",
        ];
        args.extend_from_slice(extra);
        Command::new(env!("CARGO_BIN_EXE_mbt"))
            .current_dir(root())
            .args(&args)
            .env_remove("ORT_DYLIB_PATH")
            .env("MBT_ORT_DIR", &dir)
            .output()
            .expect("mbt runs")
    };
    let (found, named) = (logits(&infer(&[])), logits(&infer(&["--ort-lib", &lib])));
    assert_eq!(found.len(), 3);
    for (x, y) in found.iter().flatten().zip(named.iter().flatten()) {
        assert!((x - y).abs() <= 1e-6, "{found:?} vs {named:?}");
    }

    // An accelerator the library lacks, without "cpu" in the list: refused, not a CPU run.
    let o = infer(&["--ort-lib", &lib, "--providers", "qnn"]);
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    assert!(stderr(&o).contains("qnn"), "{}", stderr(&o));
    // A library that is not there: named.
    let o = infer(&["--ort-lib", "/nonexistent/libonnxruntime.so"]);
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("/nonexistent/libonnxruntime.so"),
        "{}",
        stderr(&o)
    );
    let _ = std::fs::remove_dir_all(&dir);
}
