//! `mbt train`, `mbt eval` and `mbt export --checkpoint`, end to end through the binary, on a
//! tiny data set built from the synthetic source pool (tests/common) and a tiny model.
//!
//! What can fail here: a resumed run that differs from an uninterrupted one (weights compared
//! byte for byte), a checkpoint whose export scores differently on tract than the checkpoint
//! on burn, and bad inputs that do not name the item at fault.

use std::path::{Path, PathBuf};
use std::process::Output;
use std::sync::OnceLock;

use serde_json::Value;

mod common;
use common::{build, fixture, mbt, onnxruntime_library, tmp, TINY_HYBRID};

/// A model small enough to train in seconds; one thread, so runs are bit-reproducible.
const TINY: &str = r#"
width = 16
layers = 2
heads = 2
mlp_ratio = 2
fusion = "bottleneck"
fusion_layer = 1
bottlenecks = 2
drop_path = 0.1
labels = ["dog_barking", "glass_breaking", "person_speaking", "door_slammed", "door_closed_softly", "none"]

[tokenizer.video]
num_frames = 8
tubelet = 4

[train]
epochs = 2
batch_size = 6
optimizer = "sgd"
lr = 0.05
warmup_epochs = 0.5
threads = 1
mixup_prob = 0.5
"#;

/// A path the test built, as a command-line argument (the temp dirs are UTF-8; a panic names
/// the path if one is not).
fn arg(p: &Path) -> &str {
    p.to_str()
        .unwrap_or_else(|| panic!("{}: not a UTF-8 path", p.display()))
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// One data set (18 train, 6 val, 12 test clips) shared by the tests of this binary.
fn data() -> &'static Path {
    static DATA: OnceLock<PathBuf> = OnceLock::new();
    DATA.get_or_init(|| {
        let root = tmp("train-data");
        let manifest = fixture(&root);
        let o = build(&root, &manifest, "3", "ave");
        assert!(o.status.success(), "{}", stderr(&o));
        std::fs::write(root.join("tiny.toml"), TINY).unwrap();
        root
    })
}

fn train(out: &Path, extra: &[&str]) -> Output {
    let root = data();
    let mut args: Vec<String> = vec![
        "train".into(),
        "--config".into(),
        root.join("tiny.toml").to_str().unwrap().to_owned(),
        "--data".into(),
        root.join("ave").to_str().unwrap().to_owned(),
        "--out".into(),
        out.to_str().unwrap().to_owned(),
    ];
    args.extend(extra.iter().map(|s| s.to_string()));
    let refs: Vec<&str> = args.iter().map(String::as_str).collect();
    mbt(&refs)
}

/// `mbt train --resume` of the run in `out` on the shared data set, `extra` arguments appended.
fn resume(out: &Path, extra: &[&str]) -> Output {
    let ave = data().join("ave");
    let mut args = vec!["train", "--resume", "--data", arg(&ave), "--out", arg(out)];
    args.extend(extra);
    mbt(&args)
}

fn val_lines(run: &Path) -> Vec<Value> {
    std::fs::read_to_string(run.join("metrics.jsonl"))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str::<Value>(l).unwrap())
        .filter(|v| v["kind"] == "val")
        .map(|mut v| {
            v["seconds"] = Value::Null;
            v
        })
        .collect()
}

#[test]
fn a_resumed_run_ends_with_the_same_weights_as_an_uninterrupted_one() {
    let root = tmp("train-resume");
    let (a, b) = (root.join("a"), root.join("b"));
    let o = train(&a, &[]);
    assert!(o.status.success(), "{}", stderr(&o));
    // 18 clips / 6 per batch = 3 steps per epoch: stop in the middle of the second epoch.
    let o = train(&b, &["--max-steps", "4"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let state: Value =
        serde_json::from_slice(&std::fs::read(b.join("checkpoint/state.json")).unwrap()).unwrap();
    assert_eq!(
        (state["epoch"].as_u64(), state["batch"].as_u64()),
        (Some(1), Some(1))
    );
    let o = resume(&b, &[]);
    assert!(o.status.success(), "{}", stderr(&o));
    for f in ["checkpoint/model.bpk", "best.bpk"] {
        assert!(
            weights(&a, f) == weights(&b, f),
            "{f}: the weights differ between the uninterrupted and the resumed run"
        );
    }
    assert_eq!(val_lines(&a), val_lines(&b));
    assert_eq!(val_lines(&a).len(), 2);
    // A finished run refuses to be overwritten.
    let o = train(&a, &[]);
    assert!(!o.status.success());
    assert!(stderr(&o).contains("--resume"), "{}", stderr(&o));
}

/// With `train.threads = 2` each step trains two shards of the batch in parallel and sums
/// their gradients in shard order: a run must still be repeatable, and resumable to the bit,
/// as a one-thread run is (also measured with `configs/edge-scratch.toml` on a 192-clip build, 2
/// epochs: two runs gave equal losses to the last digit).
#[test]
fn a_two_thread_run_repeats_and_resumes_to_the_same_weights() {
    let root = tmp("train-threads2");
    let (a, b) = (root.join("a"), root.join("b"));
    let two = ["--set", "train.threads=2"];
    let o = train(&a, &two);
    assert!(o.status.success(), "{}", stderr(&o));
    let o = train(&b, &[&two[..], &["--max-steps", "4"]].concat());
    assert!(o.status.success(), "{}", stderr(&o));
    let o = resume(&b, &[]);
    assert!(o.status.success(), "{}", stderr(&o));
    let config_path = b.join("config.toml");
    let config = std::fs::read_to_string(&config_path)
        .unwrap_or_else(|e| panic!("{}: {e}", config_path.display()));
    assert!(config.contains("threads = 2"), "{config}");
    assert!(
        weights(&a, "checkpoint/model.bpk") == weights(&b, "checkpoint/model.bpk"),
        "two-thread runs: the weights differ between the uninterrupted and the resumed run"
    );
    assert_eq!(val_lines(&a), val_lines(&b));
}

/// The weights of `run`'s checkpoint file `f`, as the bytes of their ONNX export: the .bpk
/// files hold per-process parameter ids, while the export is deterministic for equal weights.
fn weights(run: &Path, f: &str) -> Vec<u8> {
    let out = run.join(format!("{}.onnx", f.replace('/', "-")));
    let (config, checkpoint) = (run.join("config.toml"), run.join(f));
    let o = mbt(&[
        "export",
        "--config",
        arg(&config),
        "--checkpoint",
        arg(&checkpoint),
        "--out",
        arg(&out),
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    std::fs::read(&out).unwrap_or_else(|e| panic!("{}: {e}", out.display()))
}

/// `train.fresh_renders` with the fixture's source manifest (the pool the data set was built
/// from) and the media in `cache`.
fn fresh_args(cache: &Path) -> Vec<String> {
    let manifest = data().join("packages.toml");
    [
        "--set",
        "train.fresh_renders=true",
        "--manifest",
        arg(&manifest),
        "--cache",
        arg(cache),
    ]
    .map(String::from)
    .to_vec()
}

#[test]
fn fresh_renders_change_the_training_data_and_resume_exactly() {
    let root = tmp("train-fresh");
    let (a, b, plain) = (root.join("a"), root.join("b"), root.join("plain"));
    let fresh = fresh_args(&data().join("cache"));
    let fresh: Vec<&str> = fresh.iter().map(String::as_str).collect();
    let o = train(&a, &fresh);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("epoch 2: 18 freshly rendered clips"),
        "{}",
        stderr(&o)
    );
    // The second epoch trained on other clips than the data set's: other weights.
    let o = train(&plain, &[]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(
        weights(&a, "checkpoint/model.bpk") != weights(&plain, "checkpoint/model.bpk"),
        "fresh renders left the weights as training on the data set's clips again"
    );
    // Stopped in the middle of the fresh epoch and resumed: the same clips are rendered again.
    let mut stop = fresh.clone();
    stop.extend(["--max-steps", "4"]);
    let o = train(&b, &stop);
    assert!(o.status.success(), "{}", stderr(&o));
    let o = resume(&b, &fresh[2..]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(
        weights(&a, "checkpoint/model.bpk") == weights(&b, "checkpoint/model.bpk"),
        "the resumed fresh-render run differs from the uninterrupted one"
    );
    assert_eq!(val_lines(&a), val_lines(&b));

    // Without the source media: an error that says what to do, before any training.
    let missing = fresh_args(&root.join("missing"));
    let missing: Vec<&str> = missing.iter().map(String::as_str).collect();
    let o = train(&root.join("nomedia"), &missing);
    assert!(!o.status.success());
    assert!(stderr(&o).contains("mbt data fetch"), "{}", stderr(&o));
    assert!(!root.join("nomedia/checkpoint").exists());
}

#[test]
fn sigint_saves_a_checkpoint_that_resumes() {
    let root = tmp("train-sigint");
    let run = root.join("run");
    let bin = env!("CARGO_BIN_EXE_mbt");
    let child = std::process::Command::new(bin)
        .args([
            "train",
            "--config",
            data().join("tiny.toml").to_str().unwrap(),
            "--data",
            data().join("ave").to_str().unwrap(),
            "--out",
            run.to_str().unwrap(),
            "--set",
            "train.epochs=1000",
        ])
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // Wait for the first epoch's checkpoint, then interrupt.
    let state = run.join("checkpoint/state.json");
    let t0 = std::time::Instant::now();
    while !state.exists() && t0.elapsed().as_secs() < 120 {
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    assert!(state.exists(), "no checkpoint after 120 s");
    let pid = child.id().to_string();
    assert!(std::process::Command::new("kill")
        .args(["-INT", &pid])
        .status()
        .unwrap()
        .success());
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(130), "{}", stderr(&out));
    assert!(stderr(&out).contains("--resume"), "{}", stderr(&out));
    let o = resume(&run, &["--max-steps", "1"]);
    assert!(o.status.success(), "{}", stderr(&o));
}

/// `mbt eval` of `model` on the test data set, 2 crops, `extra` arguments appended; the
/// report it wrote.
/// Evaluates checkpoint `ckpt` (with `extra` arguments) and its export `onnx` on ONNX Runtime
/// over the 12 test clips; asserts their predictions agree but for at most one clip (the
/// cached features are f16) and returns the checkpoint's predictions.
fn scores_like_checkpoint(ckpt: &Path, onnx: &Path, root: &Path, extra: &[&str]) -> Vec<Value> {
    let a = eval_json(ckpt, &root.join("eval-ckpt"), extra);
    let lib = onnxruntime_library();
    let b = eval_json(
        onnx,
        &root.join("eval-ort"),
        &["--backend", "ort", "--ort-lib", &lib],
    );
    let (pa, pb) = (
        a["evaluation"]["predictions"].as_array().unwrap(),
        b["evaluation"]["predictions"].as_array().unwrap(),
    );
    assert_eq!(pa.len(), 12);
    let same = pa.iter().zip(pb).filter(|(x, y)| x == y).count();
    assert!(same >= 11, "checkpoint {pa:?} vs export {pb:?}");
    pa.clone()
}

fn eval_json(model: &Path, out: &Path, extra: &[&str]) -> Value {
    let (model, data, out_s) = (
        model.to_string_lossy(),
        data().join("ave").to_string_lossy().into_owned(),
        out.to_string_lossy(),
    );
    let mut args = vec![
        "eval", "--model", &model, "--data", &data, "--crops", "2", "--out", &out_s,
    ];
    args.extend_from_slice(extra);
    let o = mbt(&args);
    assert!(o.status.success(), "{}", stderr(&o));
    let report = out.join("eval.json");
    let bytes = std::fs::read(&report)
        .unwrap_or_else(|e| panic!("mbt eval wrote no {}: {e}", report.display()));
    serde_json::from_slice(&bytes)
        .unwrap_or_else(|e| panic!("{} is not JSON: {e}", report.display()))
}

#[test]
fn the_export_of_a_checkpoint_scores_like_the_checkpoint() {
    let root = tmp("train-export");
    let run = root.join("run");
    let o = train(&run, &[]);
    assert!(o.status.success(), "{}", stderr(&o));
    let onnx = root.join("m.onnx");
    let o = mbt(&[
        "export",
        "--config",
        run.join("config.toml").to_str().unwrap(),
        "--checkpoint",
        run.to_str().unwrap(),
        "--out",
        onnx.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let a = eval_json(&run, &root.join("eval-ckpt"), &[]);
    let b = eval_json(&onnx, &root.join("eval-onnx"), &[]);
    let (x, y) = (&a["evaluation"]["fused"], &b["evaluation"]["fused"]);
    assert_eq!(x["confusion"], y["confusion"]);
    assert!((x["map"].as_f64().unwrap() - y["map"].as_f64().unwrap()).abs() < 1e-6);
    for i in 0..2 {
        let (x, y) = (
            &a["evaluation"]["streams"][i],
            &b["evaluation"]["streams"][i],
        );
        assert_eq!(x["confusion"], y["confusion"], "stream {i}");
    }
    assert_eq!(a["evaluation"]["fused"]["samples"], 12);
    // The same export on ONNX Runtime (`--backend ort`) scores the same, and a checkpoint
    // is refused on it (it runs on burn).
    let lib = onnxruntime_library();
    let c = eval_json(
        &onnx,
        &root.join("eval-ort"),
        &["--backend", "ort", "--ort-lib", &lib],
    );
    assert_eq!(
        b["evaluation"]["fused"]["confusion"],
        c["evaluation"]["fused"]["confusion"]
    );
    let (run_s, data_s) = (
        run.to_string_lossy(),
        data().join("ave").to_string_lossy().into_owned(),
    );
    let o = mbt(&[
        "eval",
        "--model",
        &run_s,
        "--data",
        &data_s,
        "--backend",
        "ort",
    ]);
    assert!(!o.status.success());
    assert!(stderr(&o).contains("only an .onnx model"), "{}", stderr(&o));
    // The export carries the data set's manifest hash.
    let bytes = std::fs::read(&onnx).unwrap();
    let hash = a["data_manifest_sha256"].as_str().unwrap();
    assert!(
        bytes.windows(hash.len()).any(|w| w == hash.as_bytes()),
        "the training data hash is not in the ONNX metadata"
    );
    // A config that does not describe the checkpoint is refused.
    let o = mbt(&[
        "export",
        "--config",
        run.join("config.toml").to_str().unwrap(),
        "--set",
        "width=32",
        "--checkpoint",
        run.to_str().unwrap(),
        "--out",
        root.join("bad.onnx").to_str().unwrap(),
    ]);
    assert!(!o.status.success());
    assert!(
        stderr(&o).contains("model settings differ"),
        "{}",
        stderr(&o)
    );
}

/// Copies the shared data set so a test can damage it.
fn damaged_copy(name: &str) -> PathBuf {
    let dst = tmp(name).join("ave");
    let o = std::process::Command::new("cp")
        .args([
            "-r",
            data().join("ave").to_str().unwrap(),
            dst.to_str().unwrap(),
        ])
        .status()
        .unwrap();
    assert!(o.success());
    dst
}

fn train_on(dataset: &Path, out: &Path, extra: &[&str]) -> Output {
    let config = data().join("tiny.toml");
    let mut args = vec![
        "train",
        "--config",
        config.to_str().unwrap(),
        "--data",
        dataset.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
        "--max-steps",
        "1",
    ];
    args.extend_from_slice(extra);
    mbt(&args)
}

#[test]
fn bad_data_and_configs_are_errors_naming_the_item() {
    // A label outside the model's class list.
    let d = damaged_copy("train-badlabel");
    let m = d.join("manifest.jsonl");
    let text = std::fs::read_to_string(&m).unwrap();
    let first_id = serde_json::from_str::<Value>(text.lines().next().unwrap()).unwrap()["id"]
        .as_str()
        .unwrap()
        .to_string();
    let label = serde_json::from_str::<Value>(text.lines().next().unwrap()).unwrap()["label"]
        .as_str()
        .unwrap()
        .to_string();
    let bad = text.replacen(
        &format!("\"label\":\"{label}\""),
        "\"label\":\"cat_meowing\"",
        1,
    );
    std::fs::write(&m, bad).unwrap();
    let o = train_on(&d, &d.parent().unwrap().join("run"), &[]);
    assert_eq!(o.status.code(), Some(1));
    let e = stderr(&o);
    assert!(e.contains("cat_meowing") && e.contains(&first_id), "{e}");

    // A truncated WAV.
    let d = damaged_copy("train-badwav");
    let wav = d.join("train/train-00002.wav");
    let bytes = std::fs::read(&wav).unwrap();
    std::fs::write(&wav, &bytes[..30]).unwrap();
    let o = train_on(&d, &d.parent().unwrap().join("run"), &[]);
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("train-00002"), "{}", stderr(&o));

    // An empty manifest.
    let d = damaged_copy("train-empty");
    std::fs::write(d.join("manifest.jsonl"), "").unwrap();
    let o = train_on(&d, &d.parent().unwrap().join("run"), &[]);
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("no clips"), "{}", stderr(&o));

    // Token counts that do not match the data: 32 frames asked of 16-frame clips.
    let root = tmp("train-badcfg");
    let o = train_on(
        &data().join("ave"),
        &root.join("run"),
        &["--set", "tokenizer.video.num_frames=32"],
    );
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("num_frames"), "{}", stderr(&o));

    // An unknown [train] key.
    let o = train_on(
        &data().join("ave"),
        &root.join("run2"),
        &["--set", "train.learning_rate=0.1"],
    );
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("learning_rate"), "{}", stderr(&o));

    // --resume without a run.
    let o = resume(&root.join("nothing"), &[]);
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("config.toml"), "{}", stderr(&o));
}

/// [`common::TINY_HYBRID`] (a tiny fusion part over the real pretrained trunks) with a short
/// training recipe.
fn tiny_hybrid() -> String {
    const RECIPE: &str = r#"
[train]
epochs = 2
batch_size = 6
optimizer = "adam_w"
lr = 0.001
warmup_epochs = 0.5
threads = 1
"#;
    format!("{TINY_HYBRID}{RECIPE}")
}

#[test]
fn a_model_with_trunks_trains_on_cached_features_and_its_export_scores_like_it() {
    let root = tmp("train-hybrid");
    std::fs::create_dir_all(&root).unwrap();
    let cfg = root.join("hybrid.toml");
    std::fs::write(&cfg, tiny_hybrid()).unwrap();
    let ave = data().join("ave");
    let run_in = |out: &Path| {
        mbt(&[
            "train",
            "--config",
            arg(&cfg),
            "--data",
            arg(&ave),
            "--out",
            arg(out),
        ])
    };
    let run = root.join("run");
    let o = run_in(&run);
    assert!(o.status.success(), "{}", stderr(&o));
    // The trunks ran once per clip, into the data set's feature cache; a second run reads it.
    let rj: Value = serde_json::from_slice(&std::fs::read(run.join("run.json")).unwrap()).unwrap();
    let cache = PathBuf::from(rj["feature_cache"].as_str().unwrap());
    assert!(cache.join("train.f16").is_file() && cache.join("val.json").is_file());
    let o = run_in(&root.join("run2"));
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("features: train from"),
        "{}",
        stderr(&o)
    );
    // Same data, same seed, same cached features: the same validation curve.
    assert_eq!(val_lines(&run), val_lines(&root.join("run2")));

    // The composed export (trunks + fusion part, one file) on ONNX Runtime against the
    // checkpoint on burn over the cached f16 features: the same predictions, but for at most
    // one clip whose top two logits are closer than the f16 rounding of the features.
    let onnx = root.join("m.onnx");
    let o = mbt(&[
        "export",
        "--config",
        arg(&run.join("config.toml")),
        "--checkpoint",
        arg(&run),
        "--out",
        arg(&onnx),
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    scores_like_checkpoint(&run, &onnx, &root, &[]);
    // The export names its trunks.
    let bytes = std::fs::read(&onnx).unwrap();
    for t in ["mbt.trunks", "yamnet", "efficientnet-lite0", "Apache-2.0"] {
        assert!(
            bytes.windows(t.len()).any(|w| w == t.as_bytes()),
            "{t} missing"
        );
    }
    // A trunk directory without the pinned files is refused, naming the file.
    let o = mbt(&[
        "export",
        "--config",
        arg(&run.join("config.toml")),
        "--checkpoint",
        arg(&run),
        "--trunks",
        arg(&root),
        "--out",
        arg(&root.join("bad.onnx")),
    ]);
    assert!(!o.status.success());
    assert!(
        stderr(&o).contains("efficientnet-lite0.onnx"),
        "{}",
        stderr(&o)
    );
}

#[test]
fn finetune_last_trains_on_its_own_cache_and_its_export_scores_like_it() {
    let root = tmp("train-hybrid-finetune");
    std::fs::create_dir_all(&root).unwrap();
    let cfg = root.join("hybrid.toml");
    std::fs::write(&cfg, tiny_hybrid()).unwrap();
    let ave = data().join("ave");
    let train_with = |out: &Path, extra: &[&str]| {
        let mut args = vec![
            "train",
            "--config",
            arg(&cfg),
            "--data",
            arg(&ave),
            "--out",
            arg(out),
            "--set",
            "train.epochs=1",
            "--set",
            "train.warmup_epochs=0",
        ];
        args.extend_from_slice(extra);
        mbt(&args)
    };
    let (plain, fine) = (root.join("plain"), root.join("fine"));
    let o = train_with(&plain, &[]);
    assert!(o.status.success(), "{}", stderr(&o));
    let o = train_with(&fine, &["--set", "trunks.finetune_last=true"]);
    assert!(o.status.success(), "{}", stderr(&o));
    // The cut trunks give other features: another cache, never the plain one.
    let cache = |run: &Path| {
        let rj: Value =
            serde_json::from_slice(&std::fs::read(run.join("run.json")).unwrap()).unwrap();
        PathBuf::from(rj["feature_cache"].as_str().unwrap())
    };
    assert_ne!(cache(&plain), cache(&fine));
    assert!(cache(&fine).join("train.f16").is_file());
    // The run's config keeps the switch (so eval and export rebuild the same model) and the
    // plain run's config does not mention it.
    let text = |run: &Path| std::fs::read_to_string(run.join("config.toml")).unwrap();
    assert!(
        text(&fine).contains("finetune_last = true"),
        "{}",
        text(&fine)
    );
    assert!(!text(&plain).contains("finetune_last"), "{}", text(&plain));
    // The composed export (cut trunks; trained layers in the fusion graph) on ONNX Runtime
    // against the checkpoint on burn over the cached f16 features.
    let onnx = root.join("fine.onnx");
    let o = mbt(&[
        "export",
        "--config",
        arg(&fine.join("config.toml")),
        "--checkpoint",
        arg(&fine),
        "--out",
        arg(&onnx),
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let logits = root.join("logits.json");
    let pa = scores_like_checkpoint(&fine, &onnx, &root, &["--logits", arg(&logits)]);
    let pa = &pa;
    // `--logits`: one row per clip whose argmax is the reported prediction.
    let l: Value = serde_json::from_slice(&std::fs::read(&logits).unwrap()).unwrap();
    let rows = l["logits"].as_array().unwrap();
    assert_eq!(rows.len(), 12);
    assert_eq!(l["targets"].as_array().unwrap().len(), 12);
    for (row, p) in rows.iter().zip(pa) {
        let v: Vec<f64> = row
            .as_array()
            .unwrap()
            .iter()
            .map(|x| x.as_f64().unwrap())
            .collect();
        let best = (0..v.len()).fold(0, |b, i| if v[i] > v[b] { i } else { b });
        assert_eq!(best as u64, p.as_u64().unwrap());
    }
}
