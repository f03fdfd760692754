//! Personalisation: `mbt train --init MODEL --data DIR --add-labels a,b`.
//!
//! What can fail here, and the independent reference each check holds it to:
//! * reading the fusion part back from the shipped composed file (`models/edge.onnx`): the
//!   burn model read from it, fed by the trunk parts, must give the logits ONNX Runtime gives
//!   on the whole file for the same input;
//! * the run (a tiny fusion part over the real trunks, random weights exported as the
//!   "shipped" file): labels appended after the old ones, the old thresholds carried, the new
//!   version, and its exported file scoring like its checkpoint (ONNX Runtime vs burn);
//! * bad label names and a label the model already has are refused, naming the label;
//! * `#[ignore]`d, slow (about 5 min; it needs the fetched pool media of `mbt data fetch`):
//!   the test that plays the user (see [`a_user_adds_their_sheep`]).

use std::path::{Path, PathBuf};
use std::process::Output;

use burn::prelude::*;
use mbt_infer::parts::Part;
use mbt_model::export::compose::{self, Part as Which};
use mbt_model::train::{predict, Batch};
use serde_json::Value;

mod common;
use common::{build, fill, fixture, mbt, onnxruntime_library, tmp, TINY_HYBRID};

const ROOT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../..");

fn arg(p: &Path) -> &str {
    p.to_str()
        .unwrap_or_else(|| panic!("{}: not a UTF-8 path", p.display()))
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// The shipped model read back into burn computes what the file computes: trunk parts
/// (tract) + the read fusion part (burn) against the whole composed file on ONNX Runtime.
#[test]
fn the_shipped_model_reads_back_to_the_same_logits() {
    let path = Path::new(ROOT).join("models/edge.onnx");
    let bytes = std::fs::read(&path).unwrap();
    let loaded = mbt_model::export::read::read(&bytes, "edge.onnx", &Device::flex()).unwrap();
    let cfg = &loaded.config;
    assert_eq!(cfg.labels.len(), 10);
    assert!(loaded.metadata.model_version.starts_with("edge-0.2"));
    let (v, a) = (&cfg.tokenizer.video, &cfg.tokenizer.audio);
    let (tv, pv, ta, pa) = (
        v.token_count(),
        v.token_dim(),
        a.token_count(),
        a.token_dim(),
    );
    // Two windows: frames in the normalised range, YAMNet log-mel values in theirs.
    let n = 2;
    let video = fill(n * tv * pv, 3, -1.0, 1.0);
    let audio = fill(n * ta * pa, 5, -6.9, 3.0);
    let lib = onnxruntime_library();
    let mut ort =
        mbt_infer::onnxruntime::OrtModel::load(&path, &lib, &["cpu".to_string()], 1).unwrap();
    let want = ort.run(n, &video, &audio).unwrap();
    let trunks = mbt_model::trunk::default_dir();
    let part =
        |w: Which| Part::from_bytes(&compose::trunk_part(cfg, w, &trunks).unwrap(), "p").unwrap();
    let (vp, ap) = (part(Which::Video), part(Which::Audio));
    let v_cells = vp.run_rows(&video, n * tv, pv).unwrap();
    let a_cells = ap.run_rows(&audio, n * ta, pa).unwrap();
    let got = predict(
        &loaded.model,
        cfg,
        &Batch {
            n,
            inputs: vec![v_cells, a_cells],
            targets: vec![],
            stream_targets: vec![],
        },
    );
    let diff = |x: &[f32], y: &[f32]| {
        assert_eq!(x.len(), y.len());
        x.iter()
            .zip(y)
            .map(|(p, q)| (p - q).abs())
            .fold(0f32, f32::max)
    };
    for (what, x, y) in [
        ("fused", &got.fused, &want.fused),
        ("video", &got.streams[0], &want.video),
        ("audio", &got.streams[1], &want.audio),
    ] {
        let d = diff(x, y);
        eprintln!("{what}: burn (read back) vs ONNX Runtime (file): max |diff| {d:.2e}");
        assert!(d <= 1e-4, "{what} logits differ by {d}: {x:?} vs {y:?}");
    }
    // The replay set shipped beside it was made for these projections and holds every label.
    let set =
        mbt_model::replay::ReplaySet::read(&Path::new(ROOT).join("models/edge.replay")).unwrap();
    let map = set.check(&loaded.model, &cfg.labels).unwrap();
    assert_eq!(map.len(), cfg.labels.len());
    let labels: std::collections::BTreeSet<usize> = set.labels.iter().copied().collect();
    assert_eq!(labels.len(), cfg.labels.len());
    // Not vacuous: the logits are spread, and the random init of the same config is far off.
    let spread = want.fused.iter().cloned().fold(f32::MIN, f32::max)
        - want.fused.iter().cloned().fold(f32::MAX, f32::min);
    assert!(spread > 0.5, "{:?}", want.fused);
}

/// Rewrites a data set's labels (`from` -> `to`) in its manifest: a user's own label.
fn relabel(data: &Path, from: &str, to: &str) {
    let m = data.join("manifest.jsonl");
    let text = std::fs::read_to_string(&m).unwrap();
    let out = text.replace(
        &format!("\"label\":\"{from}\""),
        &format!("\"label\":\"{to}\""),
    );
    assert_ne!(out, text, "no `{from}` clip to relabel");
    std::fs::write(&m, out).unwrap();
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        let dst = to.join(e.file_name());
        if e.file_type().unwrap().is_dir() {
            copy_dir(&e.path(), &dst);
        } else {
            std::fs::copy(e.path(), dst).unwrap();
        }
    }
}

fn json(p: &Path) -> Value {
    let bytes = std::fs::read(p).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
    serde_json::from_slice(&bytes).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

#[test]
fn init_adds_labels_carries_thresholds_and_exports_what_it_trained() {
    let root = tmp("personalise");
    let manifest = fixture(&root);
    // The standard set (for forgetting) and the user's clips: the same generator, another
    // seed, where the user's dog is their own label `rex`.
    assert!(build(&root, &manifest, "3", "std").status.success());
    assert!(build(&root, &manifest, "4", "user").status.success());
    relabel(&root.join("user"), "dog_barking", "rex");
    let cfg = root.join("tiny.toml");
    std::fs::write(&cfg, TINY_HYBRID).unwrap();
    let thr = root.join("thr.json");
    std::fs::write(&thr, r#"{"glass_breaking": 0.35, "door_slammed": 0.1}"#).unwrap();
    let init = root.join("init.onnx");
    let o = mbt(&[
        "export",
        "--config",
        arg(&cfg),
        "--random-init",
        "--seed",
        "2",
        "--out",
        arg(&init),
        "--model-version",
        "tiny-1.0",
        "--thresholds",
        arg(&thr),
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let (user, std_) = (root.join("user"), root.join("std"));
    // The replay set shipped beside the model (init.onnx -> init.replay): the standard set's
    // training clips, the same number per label.
    let o = mbt(&[
        "model",
        "replay",
        "--model",
        arg(&init),
        "--data",
        arg(&std_),
        "--clips",
        "10",
        "--out",
        arg(&root.join("init.replay")),
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let set = mbt_model::replay::ReplaySet::read(&root.join("init.replay")).unwrap();
    assert_eq!(set.clips(), 10);
    let train_labels: Vec<String> = std::fs::read_to_string(std_.join("manifest.jsonl"))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str::<Value>(l).unwrap())
        .filter(|v| v["split"] == "train")
        .map(|v| v["label"].as_str().unwrap().to_string())
        .collect();
    let kinds: std::collections::BTreeSet<&String> = train_labels.iter().collect();
    let held: std::collections::BTreeSet<usize> = set.labels.iter().copied().collect();
    assert_eq!(
        held.len(),
        kinds.len().min(10),
        "class-balanced: every label of the split is in the set"
    );

    let run = root.join("run");
    let personalise = |out: &Path, extra: &[&str]| {
        let mut a = vec![
            "train",
            "--init",
            arg(&init),
            "--data",
            arg(&user),
            "--out",
            arg(out),
            "--set",
            "train.epochs=2",
            "--set",
            "train.threads=1",
        ];
        a.extend_from_slice(extra);
        mbt(&a)
    };
    let o = personalise(
        &run,
        &[
            "--add-labels",
            "rex",
            "--forgetting-data",
            arg(&std_),
            "--forgetting-limit",
            "12",
        ],
    );
    assert!(o.status.success(), "{}", stderr(&o));
    let report = json(&run.join("personalise.json"));
    assert_eq!(report["model_version"], "tiny-1.0+personal.1");
    assert_eq!(report["labels_added"], serde_json::json!(["rex"]));
    assert_eq!(report["forgetting"]["clips"], 12);
    // Found beside the model without being asked for, and carried beside the new model.
    assert!(
        report["replay"].as_str().unwrap().ends_with("init.replay"),
        "{}",
        report["replay"]
    );
    assert_eq!(report["replay_clips"], 10);
    assert_eq!(
        std::fs::read(run.join("model.replay")).unwrap(),
        std::fs::read(root.join("init.replay")).unwrap()
    );
    for split in ["val", "test"] {
        for when in ["before", "after"] {
            let s = &report["user"][split][when];
            assert!(s["top1"].as_f64().is_some(), "{split} {when}: {s}");
        }
        // The initial model cannot say `rex`: every `rex` clip counts as wrong before.
        assert_eq!(report["user"][split]["before"]["top1_new_labels"], 0.0);
    }

    // The exported file: old labels first in their order, the new one appended; old
    // thresholds carried, the new label's the default; the new version.
    let bytes = std::fs::read(run.join("model.onnx")).unwrap();
    let out = mbt_model::export::read::read(&bytes, "model.onnx", &Device::flex()).unwrap();
    let want: Vec<String> = [
        "dog_barking",
        "glass_breaking",
        "person_speaking",
        "door_slammed",
        "door_closed_softly",
        "none",
        "rex",
    ]
    .map(String::from)
    .to_vec();
    assert_eq!(out.metadata.labels, want);
    assert_eq!(out.metadata.model_version, "tiny-1.0+personal.1");
    let t = &out.metadata.thresholds;
    assert_eq!(t.get("glass_breaking"), Some(&0.35));
    assert_eq!(t.get("door_slammed"), Some(&0.1));
    assert_eq!(t.get("rex"), Some(&0.5));

    // The export scores like the checkpoint it came from (ONNX Runtime on the file vs burn on
    // the cached f16 features), on the user's test clips.
    let lib = onnxruntime_library();
    let eval = |model: &Path, out: &Path, extra: &[&str]| {
        let mut a = vec![
            "eval",
            "--model",
            arg(model),
            "--data",
            arg(&user),
            "--crops",
            "2",
            "--out",
            arg(out),
        ];
        a.extend_from_slice(extra);
        let o = mbt(&a);
        assert!(o.status.success(), "{}", stderr(&o));
        json(&out.join("eval.json"))["evaluation"]["predictions"].clone()
    };
    let pa = eval(&run, &root.join("e-ckpt"), &[]);
    let pb = eval(
        &run.join("model.onnx"),
        &root.join("e-ort"),
        &["--backend", "ort", "--ort-lib", &lib],
    );
    let (pa, pb) = (pa.as_array().unwrap(), pb.as_array().unwrap());
    assert_eq!(pa.len(), 12);
    let same = pa.iter().zip(pb).filter(|(x, y)| x == y).count();
    assert!(same >= 11, "checkpoint {pa:?} vs export {pb:?}");

    // A second round from the personalised checkpoint continues the version.
    let o = mbt(&[
        "train",
        "--init",
        arg(&run),
        "--data",
        arg(&user),
        "--out",
        arg(&root.join("run2")),
        "--set",
        "train.epochs=2",
        "--set",
        "train.threads=1",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let r2 = json(&root.join("run2/personalise.json"));
    assert_eq!(r2["model_version"], "tiny-1.0+personal.2");
    // The projections stayed frozen: the set still fits the personalised model.
    assert!(r2["replay"].as_str().unwrap().ends_with("run/model.replay"));
    // From the exported file too (its projections read back bit for bit).
    let o = mbt(&[
        "train",
        "--init",
        arg(&run.join("model.onnx")),
        "--data",
        arg(&user),
        "--out",
        arg(&root.join("run3")),
        "--set",
        "train.epochs=2",
        "--set",
        "train.threads=1",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let r3 = json(&root.join("run3/personalise.json"));
    assert!(r3["replay"].as_str().unwrap().ends_with("run/model.replay"));
    // --no-replay; a set made for other projections; a set with trainable projections.
    let o = personalise(&root.join("run4"), &["--add-labels", "rex", "--no-replay"]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(json(&root.join("run4/personalise.json"))["replay"].is_null());
    // An ONNX Runtime library that cannot be loaded (e.g. another architecture's copy on a
    // board) costs speed, not the run: the trunk features come from tract, with a warning.
    let fresh = root.join("user-fresh");
    copy_dir(&user, &fresh);
    let _ = std::fs::remove_dir_all(fresh.join("features"));
    std::fs::write(root.join("not-a-library.so"), b"not ELF").unwrap();
    let o = std::process::Command::new(env!("CARGO_BIN_EXE_mbt"))
        .args([
            "train",
            "--init",
            arg(&init),
            "--data",
            arg(&fresh),
            "--out",
            arg(&root.join("run5")),
            "--add-labels",
            "rex",
            "--set",
            "train.epochs=2",
            "--set",
            "train.threads=1",
        ])
        .env("ORT_DYLIB_PATH", root.join("not-a-library.so"))
        .env_remove("MBT_FEATURES_TRACT")
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("ONNX Runtime is not usable") && stderr(&o).contains("on tract"),
        "{}",
        stderr(&o)
    );
    let other = root.join("other.onnx");
    let o = mbt(&[
        "export",
        "--config",
        arg(&cfg),
        "--random-init",
        "--seed",
        "3",
        "--out",
        arg(&other),
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let o = mbt(&[
        "train",
        "--init",
        arg(&other),
        "--data",
        arg(&user),
        "--out",
        arg(&root.join("bad-replay")),
        "--add-labels",
        "rex",
        "--replay",
        arg(&root.join("init.replay")),
    ]);
    assert!(!o.status.success());
    assert!(
        stderr(&o).contains("init.replay") && stderr(&o).contains("projections"),
        "{}",
        stderr(&o)
    );
    let o = personalise(
        &root.join("bad-trainable"),
        &["--add-labels", "rex", "--set", "train.trainable=all"],
    );
    assert!(!o.status.success());
    assert!(stderr(&o).contains("projected tokens"), "{}", stderr(&o));

    // Refusals name what is wrong.
    for (labels, says) in [
        ("Rex Dog", "rex_dog"),
        ("none", "already one of the model's labels"),
        ("rex,rex", "twice"),
    ] {
        let o = personalise(&root.join("bad"), &["--add-labels", labels]);
        assert!(!o.status.success());
        assert!(stderr(&o).contains(says), "{labels}: {}", stderr(&o));
    }
    // User clips of a label the model does not have and that is not added.
    let o = personalise(&root.join("bad2"), &[]);
    assert!(!o.status.success());
    assert!(
        stderr(&o).contains("`rex` is not one of the model's labels"),
        "{}",
        stderr(&o)
    );
    let o = mbt(&[
        "train",
        "--init",
        arg(&init),
        "--data",
        arg(&user),
        "--out",
        arg(&root.join("bad3")),
        "--add-labels",
        "rex",
        "--set",
        "width=32",
    ]);
    assert!(!o.status.success());
    assert!(stderr(&o).contains("only train.*"), "{}", stderr(&o));
}

/// The fetched pool media (`mbt data fetch`), or None.
fn media() -> Option<PathBuf> {
    let home = std::env::var_os("HOME")?;
    let m = PathBuf::from(home).join(".cache/mbt-edge/packages/media");
    m.join("brainparty-data").is_dir().then_some(m)
}

/// The user's own clips, as a source pool of local directories (the fetched media read in
/// place): their sheep (brainparty's three bleats, never in edge-0.2's training: they are
/// test-split distractors there; twemoji's and openmoji's ewe, test-split picture sets), other
/// sounds and things of their place, and two backgrounds (their yard). `mbt data build` only
/// knows the ten AVE kinds, so the sheep is rendered as the `cat` kind and its label renamed
/// `sheep` afterwards.
fn user_pool(media: &Path) -> String {
    let mut t = String::from(
        "[pool]\nname = \"user-sheep\"\ndescription = \"a user's sheep and yard\"\n\n",
    );
    for (name, dir) in [
        ("brainparty", "brainparty-data"),
        ("minetest", "minetest-data"),
        ("scorched3d", "scorched3d-data"),
        ("lomiri", "lomiri-sounds"),
        ("opencv", "opencv-doc"),
        ("twemoji", "@iconify-json/twemoji"),
        ("openmoji", "@iconify-json/openmoji"),
        ("scratch", "scratch"),
    ] {
        t += &format!(
            "[[package]]\nname = \"{name}\"\nregistry = \"dir\"\npath = \"{}\"\nlicence = \"see data/pool.toml\"\nwhy = \"the user's clips\"\n\n",
            media.join(dir).display()
        );
    }
    let src = |pkg: &str, path: &str, role: &str, kind: &str, split: &str, icons: &[&str]| {
        let mut s = format!(
            "[[source]]\npackage = \"{pkg}\"\npath = \"{path}\"\nrole = \"{role}\"\nkind = \"{kind}\"\nsplit = \"{split}\"\nset = \"{pkg}\"\n"
        );
        if !icons.is_empty() {
            let list: Vec<String> = icons.iter().map(|i| format!("\"{i}\"")).collect();
            s += &format!("icons = [{}]\n", list.join(", "));
        }
        s + "\n"
    };
    for split in ["train+val", "test"] {
        for b in ["baa", "baa2", "baa3"] {
            t += &src(
                "brainparty",
                &format!("usr/share/games/brainparty/{b}.wav"),
                "sound",
                "cat",
                split,
                &[],
            );
        }
        for set in ["twemoji", "openmoji"] {
            t += &src(set, "package/icons.json", "object", "cat", split, &["ewe"]);
            t += &src(
                set,
                "package/icons.json",
                "object",
                "other",
                split,
                &[
                    "cow", "guitar", "bird", "teapot", "drum", "hammer", "rooster", "horse",
                ],
            );
        }
        let water =
            "usr/share/games/minetest/games/minetest_game/mods/env_sounds/sounds/env_sounds_water";
        t += &src(
            "minetest",
            &format!("{water}.1.ogg"),
            "sound",
            "other",
            split,
            &[],
        );
        t += &src(
            "minetest",
            &format!("{water}.2.ogg"),
            "sound",
            "other",
            split,
            &[],
        );
        t += &src(
            "scorched3d",
            "usr/share/games/scorched3d/data/globalmods/none/data/wav/misc/birdchirp1.wav",
            "sound",
            "other",
            split,
            &[],
        );
        t += &src(
            "lomiri",
            "usr/share/sounds/lomiri/ringtones/Wind chime.ogg",
            "sound",
            "other",
            split,
            &[],
        );
        for p in ["apple.jpg", "butterfly.jpg"] {
            t += &src(
                "opencv",
                &format!("usr/share/doc/opencv-doc/examples/data/{p}"),
                "object",
                "other",
                split,
                &[],
            );
        }
        t += &src(
            "scratch",
            "usr/share/scratch/Media/Backgrounds/Sports/playing-field.jpg",
            "background",
            "other",
            split,
            &[],
        );
        t += &src(
            "opencv",
            "usr/share/doc/opencv-doc/examples/data/orange.jpg",
            "background",
            "other",
            split,
            &[],
        );
    }
    t
}

/// Each clip of the built data set `built` as an MP4 file (H.264 + AAC, encoded by ffmpeg) in
/// `out`, listed with its label in `out/clips.csv`; None without ffmpeg.
fn as_videos(built: &Path, out: &Path) -> Option<PathBuf> {
    let ok = std::process::Command::new("ffmpeg")
        .arg("-version")
        .output()
        .is_ok_and(|o| o.status.success());
    if !ok {
        return None;
    }
    std::fs::create_dir_all(out).unwrap();
    let mut csv = String::new();
    for line in std::fs::read_to_string(built.join("manifest.jsonl"))
        .unwrap()
        .lines()
    {
        let e: Value = serde_json::from_str(line).unwrap();
        let (id, label) = (e["id"].as_str().unwrap(), e["label"].as_str().unwrap());
        let mp4 = format!("{id}.mp4");
        let (video, audio) = (
            built.join(e["video"].as_str().unwrap()),
            built.join(e["audio"].as_str().unwrap()),
        );
        let o = std::process::Command::new("ffmpeg")
            .args([
                "-y",
                "-loglevel",
                "error",
                "-f",
                "mjpeg",
                "-framerate",
                "8",
                "-i",
            ])
            .arg(&video)
            .arg("-i")
            .arg(&audio)
            .args([
                "-c:v",
                "libx264",
                "-pix_fmt",
                "yuv420p",
                "-c:a",
                "aac",
                "-shortest",
            ])
            .arg(out.join(&mp4))
            .output()
            .unwrap();
        assert!(o.status.success(), "ffmpeg on {id}: {}", stderr(&o));
        csv += &format!("{mp4},{label}\n");
    }
    let path = out.join("clips.csv");
    std::fs::write(&path, csv).unwrap();
    Some(path)
}

/// The test that plays the user. Their sheep is a label the shipped model (`models/edge.onnx`)
/// does not know; they have 100 clips of their place (80 to train on, 20 held back; half of
/// them the sheep heard and seen, half other scenes labelled `none`), and 60 more clips that
/// no step of the run sees, as MP4 files imported with `mbt data import` (which splits them
/// per label: 80 / 20 / 60). They personalise the shipped file with `--add-labels sheep` and
/// the default recipe, which mixes the replay set shipped beside the model
/// (`models/edge.replay`: 512 standard clips' projected tokens) into every batch; the new label
/// must be recognised on the unseen clips (the aim is 85 %; the test holds it to 60 %, the
/// initial model's being 0 %) and the old labels' top-1 on the standard test split (a fixed
/// subset: its first 600 clips) must stay within 4 points of before and lose at most a
/// quarter of what a run with `--no-replay` loses (about 20 points: the new label takes over
/// the old ones' inputs). Bounds from the validation runs (models/README.md,
/// "Personalisation"), where the aim of 2 points was met by some seeds and not others. The
/// standard set is `$MBT_STANDARD_DATA` or /work/ave2 (data v2 with its trunk feature cache);
/// where neither exists the forgetting checks are skipped, and the test says so.
///
/// Run: `cargo test -p mbt-host --test personalise -- --ignored --nocapture` (about 5 min).
#[test]
#[ignore = "slow (about 5 min) and needs the fetched pool media; run with --ignored"]
fn a_user_adds_their_sheep() {
    let Some(media) = media() else {
        eprintln!("SKIPPED: no fetched pool media in ~/.cache/mbt-edge/packages/media (run `mbt data fetch`)");
        return;
    };
    let root = tmp("personalise-user");
    let pool = root.join("user-pool.toml");
    std::fs::write(&pool, user_pool(&media)).unwrap();
    let user = root.join("user");
    let o = mbt(&[
        "data",
        "build",
        "--seed",
        "1",
        "--out",
        arg(&user),
        "--train",
        "80",
        "--val",
        "20",
        "--test",
        "60",
        "--pool",
        arg(&pool),
        "--cache",
        arg(&root.join("no-cache")),
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    relabel(&user, "cat_meowing", "sheep");
    // As the user has them: one MP4 (H.264 + AAC) per clip and a CSV, through `mbt data
    // import` (ffmpeg decodes them); without ffmpeg, the built clips directly.
    let user = match as_videos(&user, &root.join("videos")) {
        Some(csv) => {
            let imported = root.join("imported");
            let init = Path::new(ROOT).join("models/edge.onnx");
            let o = mbt(&[
                "data",
                "import",
                arg(&csv),
                "--out",
                arg(&imported),
                "--model",
                arg(&init),
                "--add-labels",
                "sheep",
                "--val-fraction",
                "0.125",
                "--test-fraction",
                "0.375",
                "--seed",
                "1",
            ]);
            assert!(o.status.success(), "{}", stderr(&o));
            imported
        }
        None => {
            eprintln!(
                "no ffmpeg: the built clips are used directly, not through `mbt data import`"
            );
            user
        }
    };
    let standard = std::env::var_os("MBT_STANDARD_DATA")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/work/ave2"));
    let have_standard = standard.join("manifest.jsonl").is_file();
    if !have_standard {
        eprintln!(
            "SKIPPED the forgetting checks: no standard data set at {} (set MBT_STANDARD_DATA)",
            standard.display()
        );
    }
    let init = Path::new(ROOT).join("models/edge.onnx");
    let personalise = |out: &Path, extra: &[&str]| -> Value {
        let mut a = vec![
            "train",
            "--init",
            arg(&init),
            "--data",
            arg(&user),
            "--out",
            arg(out),
            "--add-labels",
            "sheep",
        ];
        if have_standard {
            a.extend_from_slice(&["--forgetting-data", arg(&standard)]);
        }
        a.extend_from_slice(extra);
        let t = std::time::Instant::now();
        let o = mbt(&a);
        assert!(o.status.success(), "{}", stderr(&o));
        eprintln!("{}", String::from_utf8_lossy(&o.stdout));
        eprintln!(
            "mbt train --init {extra:?}: {:.1} s",
            t.elapsed().as_secs_f64()
        );
        json(&out.join("personalise.json"))
    };
    let sheep = |r: &Value| {
        r["user"]["test"]["after"]["recall"]["sheep"][0]
            .as_f64()
            .unwrap()
    };
    let standard_top1 = |r: &Value| {
        let f = &r["forgetting"];
        (
            f["before"]["top1"].as_f64().unwrap(),
            f["after"]["top1"].as_f64().unwrap(),
        )
    };

    // The default: the replay set shipped beside models/edge.onnx mixed into every batch.
    let r = personalise(&root.join("run"), &[]);
    assert!(r["replay"]
        .as_str()
        .unwrap()
        .ends_with("models/edge.replay"));
    let new = sheep(&r);
    eprintln!("default recipe: sheep recognised in {new:.1} % of the unseen clips (aim 85 %)");
    // Bounds from the validation runs (user clips of another seed, data v2's validation
    // split; models/README.md, "Personalisation"), set before this test's figures were seen:
    // sheep 68-78 % there, the standard split within 0.3-3.7 points.
    assert!(new >= 60.0, "the new label on unseen clips: {new:.1} %");
    if have_standard {
        let (b, a) = standard_top1(&r);
        eprintln!(
            "default recipe: standard test split top-1 {b:.2} % -> {a:.2} % (aim: within 2 points)"
        );
        // Without the replay set the new label takes over the old ones' inputs: about 20
        // points lost (measured).
        let r0 = personalise(&root.join("run-no-replay"), &["--no-replay"]);
        let (b0, a0) = standard_top1(&r0);
        eprintln!(
            "--no-replay: standard test split top-1 {b0:.2} % -> {a0:.2} %, sheep {:.1} %",
            sheep(&r0)
        );
        assert!(
            a >= b - 4.0 && b - a <= (b0 - a0) / 4.0,
            "old labels forgotten with the replay set: {b:.2} % -> {a:.2} % (without: {b0:.2} -> {a0:.2} %)"
        );
    }
}
