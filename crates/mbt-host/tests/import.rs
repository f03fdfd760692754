//! `mbt data import` end to end through the binary, on media made here with the real `ffmpeg`
//! (lavfi test sources; no mocks): videos in four containers, CSV time spans, `mbtd` evidence
//! folders (labels.csv and label folders), sounds and pictures mixed into rendered scenes, the
//! refusals, and `mbt train` reading the result.
//!
//! Expected values come from outside the importer: window counts from the durations and the
//! hop by hand, tones from a Goertzel filter run here, colours from the lavfi source, frame
//! sizes and counts from ffprobe/ffmpeg decoding the written Motion JPEG.

use std::path::Path;
use std::process::{Command, Output};

use serde_json::Value;

mod common;
use common::{fixture, mbt, tmp, write_wav};

fn arg(p: &Path) -> &str {
    p.to_str()
        .unwrap_or_else(|| panic!("{}: not a UTF-8 path", p.display()))
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// Runs ffmpeg (quiet, overwriting) and insists it worked.
fn ffmpeg(args: &[&str]) {
    let o = Command::new("ffmpeg")
        .args(["-nostdin", "-y", "-v", "error"])
        .args(args)
        .output()
        .expect("run ffmpeg (Debian package ffmpeg)");
    assert!(o.status.success(), "ffmpeg {args:?}: {}", stderr(&o));
}

/// A `secs`-second video of solid `colour` with a `freq` Hz tone, encoded with `codecs`.
fn video(path: &Path, colour: &str, freq: u32, secs: f64, codecs: &[&str]) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    let v = format!("color=c={colour}:s=160x120:r=25:d={secs}");
    let a = format!("sine=frequency={freq}:sample_rate=44100:duration={secs}");
    let mut args = vec!["-f", "lavfi", "-i", &v, "-f", "lavfi", "-i", &a];
    args.extend_from_slice(codecs);
    args.extend_from_slice(&["-shortest", arg(path)]);
    ffmpeg(&args);
}

const MP4: &[&str] = &["-c:v", "libx264", "-pix_fmt", "yuv420p", "-c:a", "aac"];
const MKV: &[&str] = &["-c:v", "libx264", "-pix_fmt", "yuv420p", "-c:a", "libopus"];
const WEBM: &[&str] = &["-c:v", "libvpx", "-b:v", "500k", "-c:a", "libvorbis"];
const AVI: &[&str] = &["-c:v", "mpeg4", "-q:v", "2", "-c:a", "libmp3lame"];

fn import(args: &[&str]) -> Output {
    let mut all = vec!["data", "import"];
    all.extend_from_slice(args);
    mbt(&all)
}

fn manifest(out: &Path) -> Vec<Value> {
    std::fs::read_to_string(out.join("manifest.jsonl"))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

fn summary(out: &Path) -> Value {
    serde_json::from_slice(&std::fs::read(out.join("summary.json")).unwrap()).unwrap()
}

fn read_wav(path: &Path) -> (u32, Vec<f32>) {
    let mut r = hound::WavReader::open(path).unwrap();
    let rate = r.spec().sample_rate;
    assert_eq!(r.spec().channels, 1, "{}", path.display());
    let s = r
        .samples::<i16>()
        .map(|v| v.unwrap() as f32 / 32768.0)
        .collect();
    (rate, s)
}

/// Power of `x` at `f` Hz (Goertzel).
fn power(x: &[f32], f: f64, rate: f64) -> f64 {
    let w = 2.0 * std::f64::consts::PI * f / rate;
    let c = 2.0 * w.cos();
    let (mut s1, mut s2) = (0.0f64, 0.0f64);
    for &v in x {
        let s = v as f64 + c * s1 - s2;
        s2 = s1;
        s1 = s;
    }
    s1 * s1 + s2 * s2 - c * s1 * s2
}

/// The frequency with the most power, 100-4000 Hz: a 10 Hz grid, then 1 Hz steps around its
/// best point.
fn dominant(x: &[f32], rate: f64) -> f64 {
    let best = |grid: Vec<f64>| {
        grid.into_iter()
            .map(|f| (f, power(x, f, rate)))
            .max_by(|a, b| a.1.total_cmp(&b.1))
            .map_or(0.0, |(f, _)| f)
    };
    let coarse = best((10..=400).map(|k| k as f64 * 10.0).collect());
    best((-10..=10).map(|d| coarse + d as f64).collect())
}

/// A written clip's frames decoded by ffmpeg: (width, height, frames of RGB bytes).
fn frames(path: &Path) -> (usize, usize, Vec<Vec<u8>>) {
    let o = Command::new("ffprobe")
        .args([
            "-v",
            "error",
            "-f",
            "mjpeg",
            "-show_entries",
            "stream=width,height",
            "-of",
            "csv=p=0",
            arg(path),
        ])
        .output()
        .unwrap();
    let wh = String::from_utf8_lossy(&o.stdout);
    let mut it = wh.trim().split(',').map(|v| v.parse::<usize>().unwrap());
    let (w, h) = (it.next().unwrap(), it.next().unwrap());
    let o = Command::new("ffmpeg")
        .args([
            "-nostdin",
            "-v",
            "error",
            "-f",
            "mjpeg",
            "-i",
            arg(path),
            "-f",
            "rawvideo",
            "-pix_fmt",
            "rgb24",
            "-",
        ])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    (
        w,
        h,
        o.stdout.chunks(w * h * 3).map(<[u8]>::to_vec).collect(),
    )
}

fn mean_rgb(f: &[u8]) -> [f64; 3] {
    let n = (f.len() / 3) as f64;
    let mut m = [0.0; 3];
    for p in f.chunks(3) {
        for k in 0..3 {
            m[k] += p[k] as f64 / n;
        }
    }
    m
}

/// A model that trains in a second on the imported labels (as tests/train.rs's TINY).
fn tiny_config(path: &Path, labels: &[&str]) {
    let l: Vec<String> = labels.iter().map(|l| format!("\"{l}\"")).collect();
    std::fs::write(
        path,
        format!(
            "width = 16\nlayers = 2\nheads = 2\nmlp_ratio = 2\nfusion = \"bottleneck\"\n\
             fusion_layer = 1\nbottlenecks = 2\nlabels = [{}]\n\n[tokenizer.video]\n\
             num_frames = 8\ntubelet = 4\n\n[train]\nepochs = 1\nwarmup_epochs = 0.0\nbatch_size = 4\n\
             optimizer = \"sgd\"\nlr = 0.05\nthreads = 1\n",
            l.join(", ")
        ),
    )
    .unwrap();
}

#[test]
fn videos_in_four_containers_become_windows_that_mbt_train_reads() {
    let root = tmp("import-videos");
    let inp = root.join("in");
    // Two sources per label: n = floor((d - 2) / hop) + 1 windows each at hop 1.
    video(&inp.join("dog_barking/a.mp4"), "red", 440, 5.0, MP4); // 4
    video(&inp.join("dog_barking/c.webm"), "red", 440, 4.0, WEBM); // 3
    video(&inp.join("glass_breaking/b.mkv"), "blue", 1000, 5.0, MKV); // 4
    video(&inp.join("glass_breaking/d.avi"), "blue", 1000, 3.0, AVI); // 2
    let out = root.join("out");
    let t = std::time::Instant::now();
    let o = import(&[arg(&inp), "--out", arg(&out), "--hop", "1"]);
    assert!(o.status.success(), "{}", stderr(&o));
    eprintln!(
        "imported 4 videos (17 s) in {:.2} s",
        t.elapsed().as_secs_f64()
    );
    let m = manifest(&out);
    let per_file = |name: &str| {
        m.iter()
            .filter(|e| e["source"]["file"].as_str().unwrap().ends_with(name))
            .count()
    };
    assert_eq!(
        [
            per_file("a.mp4"),
            per_file("c.webm"),
            per_file("b.mkv"),
            per_file("d.avi")
        ],
        [4, 3, 4, 2]
    );
    assert_eq!(m.len(), 13);
    // Split by source: every file's windows in one split; both labels in train and val.
    for name in ["a.mp4", "c.webm", "b.mkv", "d.avi"] {
        let mut s: Vec<&str> = m
            .iter()
            .filter(|e| e["source"]["file"].as_str().unwrap().ends_with(name))
            .map(|e| e["split"].as_str().unwrap())
            .collect();
        s.dedup();
        assert_eq!(s.len(), 1, "{name}: {s:?}");
    }
    for (split, label) in [
        ("train", "dog_barking"),
        ("val", "dog_barking"),
        ("train", "glass_breaking"),
        ("val", "glass_breaking"),
    ] {
        assert!(
            m.iter().any(|e| e["split"] == split && e["label"] == label),
            "{split} {label}"
        );
    }
    // Content: the tone and the colour survive, in the model's clip format.
    for e in &m {
        let (rate, s) = read_wav(&out.join(e["audio"].as_str().unwrap()));
        assert_eq!((rate, s.len()), (16_000, 32_000));
        let want = if e["label"] == "dog_barking" {
            440.0
        } else {
            1000.0
        };
        let got = dominant(&s, 16_000.0);
        assert!(
            (got - want).abs() <= 4.0,
            "{}: {got} Hz, want {want}",
            e["id"]
        );
        let (w, h, f) = frames(&out.join(e["video"].as_str().unwrap()));
        assert_eq!((w, h, f.len()), (112, 112, 16), "{}", e["id"]);
        let c = mean_rgb(&f[8]);
        let (hi, lo) = if e["label"] == "dog_barking" {
            (0, 2)
        } else {
            (2, 0)
        };
        assert!(
            c[hi] > 200.0 && c[lo] < 40.0 && c[1] < 40.0,
            "{}: mean RGB {c:?}",
            e["id"]
        );
    }
    // The summary lists every file with its sha256 (checked against sha256sum) and counts.
    let s = summary(&out);
    let files = s["files"].as_array().unwrap();
    assert_eq!(files.len(), 4);
    let a = files
        .iter()
        .find(|f| f["file"].as_str().unwrap().ends_with("a.mp4"))
        .unwrap();
    let sum = Command::new("sha256sum")
        .arg(inp.join("dog_barking/a.mp4"))
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&sum.stdout).starts_with(a["sha256"].as_str().unwrap()));
    let total: u64 = ["train", "val", "test"]
        .iter()
        .flat_map(|sp| s["counts"][sp].as_object().unwrap().values())
        .map(|v| v.as_u64().unwrap())
        .sum();
    assert_eq!(total, 13);
    // A second import into the same directory is refused; --force replaces it.
    let o = import(&[arg(&inp), "--out", arg(&out)]);
    assert!(
        !o.status.success() && stderr(&o).contains("not empty"),
        "{}",
        stderr(&o)
    );
    let o = import(&[arg(&inp), "--out", arg(&out), "--force", "--hop", "2"]);
    assert!(o.status.success(), "{}", stderr(&o));
    // At hop 2: 5 s -> 2 windows, 4 s -> 2, 3 s -> 1.
    assert_eq!(manifest(&out).len(), 2 + 2 + 2 + 1);
    let o = import(&[arg(&inp), "--out", arg(&out), "--force", "--hop", "1"]);
    assert!(o.status.success(), "{}", stderr(&o));
    // mbt train reads it (a tiny model, two steps).
    let cfg = root.join("tiny.toml");
    tiny_config(&cfg, &["dog_barking", "glass_breaking", "none"]);
    let run = root.join("run");
    let t = std::time::Instant::now();
    let o = mbt(&[
        "train",
        "--config",
        arg(&cfg),
        "--data",
        arg(&out),
        "--out",
        arg(&run),
        "--max-steps",
        "2",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(run.join("checkpoint/state.json").is_file());
    eprintln!(
        "mbt train read it and took two steps in {:.2} s",
        t.elapsed().as_secs_f64()
    );
    let _ = std::fs::remove_dir_all(&root);
}

#[test]
fn csv_spans_label_the_windows_they_fill_and_the_rest_is_background() {
    let root = tmp("import-csv");
    video(&root.join("clips/long.mp4"), "green", 440, 10.0, MP4);
    video(&root.join("clips/short one.mp4"), "red", 440, 3.0, MP4);
    let csv = root.join("labels.csv");
    // No header; a quoted name with a space; the span 2-5 s.
    std::fs::write(
        &csv,
        "clips/long.mp4,dog_barking,2,5\n\"clips/short one.mp4\",dog_barking\n",
    )
    .unwrap();
    let out = root.join("out");
    let o = import(&[
        arg(&csv),
        "--out",
        arg(&out),
        "--background-label",
        "none",
        "--val-fraction",
        "0",
        "--test-fraction",
        "0",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let m = manifest(&out);
    // 10 s at hop 1: windows at 0..=8. [t, t+2] overlapping [2, 5] by >= 1 s: t = 1, 2, 3, 4
    // (dog); t = 0 and 5..=8 touch nothing (none). 3 s: windows at 0 and 1 (dog).
    let long: Vec<(f64, &str)> = m
        .iter()
        .filter(|e| e["source"]["file"].as_str().unwrap().ends_with("long.mp4"))
        .map(|e| {
            (
                e["source"]["start_s"].as_f64().unwrap(),
                e["label"].as_str().unwrap(),
            )
        })
        .collect();
    let want: Vec<(f64, &str)> = (0..9)
        .map(|t| {
            (
                t as f64,
                if (1..=4).contains(&t) {
                    "dog_barking"
                } else {
                    "none"
                },
            )
        })
        .collect();
    assert_eq!(long, want);
    assert_eq!(m.len(), 9 + 2);
    // Without a background label the untouched windows are left out; a window that a span
    // only grazes is never used: span 2.5-5 at hop 0.5 -> [t, t+2] with overlap >= 1 s.
    std::fs::write(
        &csv,
        "file,label,start,end\nclips/long.mp4,dog_barking,2.5,5\n",
    )
    .unwrap();
    let out2 = root.join("out2");
    let o = import(&[
        arg(&csv),
        "--out",
        arg(&out2),
        "--hop",
        "0.5",
        "--val-fraction",
        "0",
        "--test-fraction",
        "0",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let starts: Vec<f64> = manifest(&out2)
        .iter()
        .map(|e| e["source"]["start_s"].as_f64().unwrap())
        .collect();
    // t from 1.5 (overlap [2.5, 3.5]) to 4.0 (overlap [4, 5]).
    assert_eq!(starts, [1.5, 2.0, 2.5, 3.0, 3.5, 4.0]);
    // Grazed: t = 1.0 and 4.5 (0.5 s inside); untouched: 0, 0.5 and 5.0..=8.0.
    let skipped = &summary(&out2)["skipped_windows"];
    assert_eq!(
        (
            skipped["partly_in_a_span"].as_u64(),
            skipped["background"].as_u64()
        ),
        (Some(2), Some(9))
    );
    let _ = std::fs::remove_dir_all(&root);
}

/// Runs an import expected to fail; returns its error output after checking the exit code and
/// that it names `file`.
fn refused(args: &[&str], file: &str) -> String {
    let o = import(args);
    let e = stderr(&o);
    assert_eq!(o.status.code(), Some(1), "{args:?}: {e}");
    assert!(
        e.contains(file),
        "{args:?}: the message does not name {file}: {e}"
    );
    assert!(!e.contains("panicked"), "{e}");
    e
}

#[test]
fn bad_inputs_are_refused_with_the_file_and_the_reason() {
    let root = tmp("import-bad");
    let out = root.join("out");
    let o = arg(&out);
    // A video without an audio track.
    let silent = root.join("silent.mp4");
    ffmpeg(&[
        "-f",
        "lavfi",
        "-i",
        "testsrc=s=160x120:r=25:d=4",
        "-c:v",
        "libx264",
        "-pix_fmt",
        "yuv420p",
        arg(&silent),
    ]);
    let csv = root.join("silent.csv");
    std::fs::write(&csv, "silent.mp4,dog_barking\n").unwrap();
    let e = refused(&[arg(&csv), "--out", o], "silent.mp4");
    assert!(
        e.contains("no audio track") && e.contains("--silent-videos pictures"),
        "{e}"
    );
    assert!(!out.join("manifest.jsonl").exists());
    // A truncated MP4 (the index, at the end, cut off).
    let good = root.join("good.mp4");
    video(&good, "red", 440, 4.0, MP4);
    let bytes = std::fs::read(&good).unwrap();
    std::fs::write(root.join("cut.mp4"), &bytes[..bytes.len() / 2]).unwrap();
    std::fs::write(&csv, "file,label\ncut.mp4,dog_barking\n").unwrap();
    let e = refused(&[arg(&csv), "--out", o], "cut.mp4");
    assert!(e.contains("not a readable media file"), "{e}");
    // A CSV naming a missing file: the line and the path.
    std::fs::write(
        &csv,
        "file,label\ngood.mp4,dog_barking\nclips/missing.mp4,dog_barking\n",
    )
    .unwrap();
    let e = refused(&[arg(&csv), "--out", o], "clips/missing.mp4");
    assert!(e.contains("line 3") && e.contains("does not exist"), "{e}");
    // Labels with a space, uppercase, unicode: the rule and why.
    for bad in ["dog barking", "Dog", "chien_aboyé"] {
        std::fs::write(&csv, format!("good.mp4,{bad}\n")).unwrap();
        let e = refused(&[arg(&csv), "--out", o], "good.mp4");
        assert!(
            e.contains(&format!("`{bad}`")) && e.contains("^[a-z0-9_]+$") && e.contains("MQTT"),
            "{e}"
        );
    }
    // A folder named with a space is a label too.
    let dir = root.join("folders");
    video(&dir.join("Dog Barking/x.mp4"), "red", 440, 3.0, MP4);
    let e = refused(&[arg(&dir), "--out", o], "x.mp4");
    assert!(e.contains("`Dog Barking`"), "{e}");
    // An unknown label when the labels are given; allowed once added.
    std::fs::write(&csv, "good.mp4,cat_meowing\n").unwrap();
    let e = refused(
        &[arg(&csv), "--out", o, "--labels", "dog_barking,none"],
        "good.mp4",
    );
    assert!(
        e.contains("unknown label `cat_meowing`")
            && e.contains("dog_barking, none")
            && e.contains("--add-labels"),
        "{e}"
    );
    let ok = import(&[
        arg(&csv),
        "--out",
        o,
        "--labels",
        "dog_barking,none",
        "--add-labels",
        "cat_meowing",
    ]);
    assert!(ok.status.success(), "{}", stderr(&ok));
    assert_eq!(
        summary(&out)["labels"],
        serde_json::json!(["dog_barking", "none", "cat_meowing"])
    );
    std::fs::remove_dir_all(&out).unwrap();
    // The labels a model's metadata lists (the bundled model's ten).
    let model = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../models/edge.onnx");
    std::fs::write(&csv, "good.mp4,doorbell\n").unwrap();
    let e = refused(&[arg(&csv), "--out", o, "--model", arg(&model)], "good.mp4");
    assert!(
        e.contains("unknown label `doorbell`") && e.contains("edge.onnx allows dog_barking"),
        "{e}"
    );
    // An empty CSV.
    std::fs::write(&csv, "file,label\n").unwrap();
    let e = refused(&[arg(&csv), "--out", o], "silent.csv");
    assert!(e.contains("no rows"), "{e}");
    // No window: a video shorter than one window, and a span no window can hold.
    let short = root.join("short.mp4");
    video(&short, "red", 440, 1.0, MP4);
    std::fs::write(&csv, "short.mp4,dog_barking\n").unwrap();
    let e = refused(&[arg(&csv), "--out", o], "short.mp4");
    assert!(e.contains("shorter than one 2 s window"), "{e}");
    // 1.5-2.5 s at hop 2: half a second in each of [0, 2] and [2, 4], a second long.
    std::fs::write(&csv, "good.mp4,dog_barking,1.5,2.5\n").unwrap();
    let e = refused(&[arg(&csv), "--out", o, "--hop", "2"], "good.mp4");
    assert!(e.contains("none of its 2 windows"), "{e}");
    let _ = std::fs::remove_dir_all(&root);
}

/// An mbtd evidence event: key frame (solid `rgb`, 320x240 JPEG), window audio (`freq` Hz,
/// `secs` s at `rate`), record.
fn event(dir: &Path, id: &str, rgb: [u8; 3], freq: f32, rate: u32, secs: f32) {
    std::fs::create_dir_all(dir).unwrap();
    image::RgbImage::from_pixel(320, 240, image::Rgb(rgb))
        .save(dir.join(format!("{id}.jpg")))
        .unwrap();
    let n = (rate as f32 * secs) as usize;
    let x: Vec<f32> = (0..n)
        .map(|i| 0.5 * (2.0 * std::f32::consts::PI * freq * i as f32 / rate as f32).sin())
        .collect();
    write_wav(&dir.join(format!("{id}.wav")), rate, &x);
    let record = serde_json::json!({
        "schema": 2, "id": id, "kind": "end", "label": "dog_barking", "score": 0.91,
        "score_audio": 0.8, "score_video": null, "modalities": {"audio": true, "video": true},
        "start_ms": 1_765_000_000_000u64, "end_ms": null, "start_s": 12.5, "end_s": null,
        "model_version": "edge-0.2.0",
        "evidence": {"jpeg": format!("/var/lib/mbtd/evidence/{id}.jpg"), "wav": null},
    });
    std::fs::write(dir.join(format!("{id}.json")), record.to_string()).unwrap();
}

fn evidence_clips(out: &Path) -> Vec<(String, String, Value)> {
    let mut v: Vec<(String, String, Value)> = manifest(out)
        .into_iter()
        .map(|e| {
            (
                e["source"]["event"]["id"].as_str().unwrap().to_string(),
                e["label"].as_str().unwrap().to_string(),
                e,
            )
        })
        .collect();
    v.sort_by(|a, b| a.0.cmp(&b.0));
    v
}

#[test]
fn evidence_folders_become_still_clips_labelled_by_csv_or_by_folder() {
    let root = tmp("import-evidence");
    let ev = root.join("evidence");
    event(&ev, "ev-1", [250, 10, 10], 440.0, 16_000, 2.0);
    event(&ev, "ev-2", [10, 10, 250], 1000.0, 48_000, 1.5);
    event(&ev, "ev-3", [10, 250, 10], 440.0, 16_000, 2.0);
    // The web page's labels file: an id, and a file name; ev-3 is not labelled.
    std::fs::write(
        ev.join("labels.csv"),
        "file,label\nev-1,dog_barking\nev-2.wav,none\n",
    )
    .unwrap();
    let out = root.join("out");
    let o = import(&[
        arg(&ev),
        "--out",
        arg(&out),
        "--val-fraction",
        "0.5",
        "--test-fraction",
        "0",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let clips = evidence_clips(&out);
    assert_eq!(
        clips
            .iter()
            .map(|c| (c.0.as_str(), c.1.as_str()))
            .collect::<Vec<_>>(),
        [("ev-1", "dog_barking"), ("ev-2", "none")]
    );
    assert_eq!(
        summary(&out)["unlabelled_evidence"],
        serde_json::json!(["ev-3"])
    );
    for (id, _, e) in &clips {
        let (rate, s) = read_wav(&out.join(e["audio"].as_str().unwrap()));
        assert_eq!((rate, s.len()), (16_000, 32_000));
        let (want, colour) = if id == "ev-1" {
            (440.0, 0)
        } else {
            (1000.0, 2)
        };
        assert!(
            (dominant(&s[..24_000], 16_000.0) - want).abs() <= 4.0,
            "{id}"
        );
        if id == "ev-2" {
            // 1.5 s of audio, padded with silence to the 2 s window.
            assert!(s[24_100..].iter().all(|v| *v == 0.0), "{id}");
            assert!(s[..23_900].iter().any(|v| v.abs() > 0.3), "{id}");
        }
        let (w, h, f) = frames(&out.join(e["video"].as_str().unwrap()));
        assert_eq!((w, h, f.len()), (112, 112, 16));
        assert!(
            f.iter().all(|x| x == &f[0]),
            "{id}: a still clip repeats its key frame"
        );
        let c = mean_rgb(&f[0]);
        assert!(c[colour] > 220.0 && c[1] < 40.0, "{id}: {c:?}");
        assert_eq!(e["source"]["event"]["model_version"], "edge-0.2.0");
    }
    // The user moved the files into label folders instead.
    let moved = root.join("moved");
    event(
        &moved.join("dog_barking"),
        "ev-1",
        [250, 10, 10],
        440.0,
        16_000,
        2.0,
    );
    event(
        &moved.join("none"),
        "ev-2",
        [10, 10, 250],
        1000.0,
        48_000,
        1.5,
    );
    event(&moved, "ev-3", [10, 250, 10], 440.0, 16_000, 2.0);
    let out2 = root.join("out2");
    let o = import(&[
        arg(&moved),
        "--out",
        arg(&out2),
        "--val-fraction",
        "0.5",
        "--test-fraction",
        "0",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let clips2 = evidence_clips(&out2);
    assert_eq!(
        clips2
            .iter()
            .map(|c| (c.0.as_str(), c.1.as_str()))
            .collect::<Vec<_>>(),
        [("ev-1", "dog_barking"), ("ev-2", "none")]
    );
    // Same content either way.
    for (a, b) in clips.iter().zip(&clips2) {
        assert_eq!(a.2["audio_sha256"], b.2["audio_sha256"]);
        assert_eq!(a.2["video_sha256"], b.2["video_sha256"]);
    }
    // A labelled event with its audio gone is refused by name.
    std::fs::remove_file(ev.join("ev-2.wav")).unwrap();
    let e = refused(&[arg(&ev), "--out", arg(&root.join("out3"))], "ev-2.wav");
    assert!(e.contains("missing"), "{e}");
    let _ = std::fs::remove_dir_all(&root);
}

#[test]
fn sounds_and_pictures_are_mixed_into_rendered_scenes() {
    let root = tmp("import-mix");
    let pool = fixture(&root); // tests/common: a tiny pool with dog, glass, speech, door, other
    let user = root.join("user");
    // dog_barking: two recordings and a photo of the dog; doorbell (a new label): one recording
    // and one photo.
    let tone = |f: f32| -> Vec<f32> {
        (0..16_000)
            .map(|i| 0.5 * (2.0 * std::f32::consts::PI * f * i as f32 / 16_000.0).sin())
            .collect()
    };
    write_wav(&user.join("dog_barking/bark1.wav"), 16_000, &tone(1500.0));
    let flac = user.join("dog_barking/bark2.flac");
    ffmpeg(&[
        "-f",
        "lavfi",
        "-i",
        "sine=frequency=1500:sample_rate=22050:duration=1",
        arg(&flac),
    ]);
    image::RgbImage::from_pixel(60, 80, image::Rgb([0, 255, 0]))
        .save(user.join("dog_barking/rex.png"))
        .unwrap();
    let ogg = user.join("doorbell/ring.ogg");
    std::fs::create_dir_all(ogg.parent().unwrap()).unwrap();
    ffmpeg(&[
        "-f",
        "lavfi",
        "-i",
        "sine=frequency=2500:sample_rate=44100:duration=1",
        "-c:a",
        "libvorbis",
        arg(&ogg),
    ]);
    image::RgbImage::from_pixel(50, 50, image::Rgb([255, 255, 0]))
        .save(user.join("doorbell/bell.jpg"))
        .unwrap();
    // The television, which is not an event.
    write_wav(&user.join("none/tv.wav"), 16_000, &tone(3000.0));
    // A silent video of the dog: its stills become pictures of the label.
    let walk = user.join("dog_barking/walk.mp4");
    ffmpeg(&[
        "-f",
        "lavfi",
        "-i",
        "color=c=cyan:s=160x120:r=25:d=4",
        "-c:v",
        "libx264",
        "-pix_fmt",
        "yuv420p",
        arg(&walk),
    ]);
    let out = root.join("out");
    let o = import(&[
        arg(&user),
        "--out",
        arg(&out),
        "--silent-videos",
        "pictures",
        "--renders",
        "3",
        "--pool",
        arg(&pool),
        "--cache",
        arg(&root.join("cache")),
        "--labels",
        "dog_barking,none",
        "--add-labels",
        "doorbell",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let m = manifest(&out);
    assert_eq!(m.len(), 7 * 3);
    for e in &m {
        let file = e["source"]["file"].as_str().unwrap();
        let role = e["source"]["role"].as_str().unwrap();
        let id = format!("import:{file}");
        let p = &e["params"];
        // The anchor file is in the scene, as the labelled sound or the labelled object.
        let (list, flag) = if role == "sound" {
            (&p["audio"]["sounds"], "on_screen")
        } else {
            (&p["video"]["objects"], "sounding")
        };
        let me: Vec<&Value> = list
            .as_array()
            .unwrap()
            .iter()
            .filter(|x| x["source"] == id.as_str())
            .collect();
        assert_eq!(me.len(), 1, "{}: {p}", e["id"]);
        let label = e["label"].as_str().unwrap();
        // The labelled sound or object, unless labelled none: then it is heard from off-screen
        // (a sound), or seen not sounding (a picture), as kind `other`.
        assert_eq!(me[0][flag], label != "none");
        // A new label gets its own name as the kind in the parameters.
        let kind = match label {
            "doorbell" => "doorbell",
            "none" => "other",
            _ => "dog",
        };
        assert_eq!(me[0]["kind"], kind);
        if role == "sound" {
            // The tone, pitch shifted as recorded, stands out of the mix.
            let (_, s) = read_wav(&out.join(e["audio"].as_str().unwrap()));
            let f0 = match label {
                "doorbell" => 2500.0,
                "none" => 3000.0,
                _ => 1500.0,
            };
            let want = f0 * 2f64.powf(me[0]["semitones"].as_f64().unwrap() / 12.0);
            let peak = power(&s, want, 16_000.0);
            // Against the median over 100-4000 Hz (robust to a distractor's own tone).
            let mut all: Vec<f64> = (10..=400)
                .map(|k| power(&s, k as f64 * 10.0, 16_000.0))
                .collect();
            all.sort_by(f64::total_cmp);
            let median = all[all.len() / 2];
            assert!(
                peak > 20.0 * median,
                "{}: {peak} vs median {median}",
                e["id"]
            );
        } else {
            // The picture's colour is on screen.
            let rgb = if label == "doorbell" {
                [255.0, 255.0, 0.0]
            } else if file.ends_with("walk.mp4") {
                [0.0, 255.0, 255.0]
            } else {
                [0.0, 255.0, 0.0]
            };
            let (_, _, f) = frames(&out.join(e["video"].as_str().unwrap()));
            let near = f[0]
                .chunks(3)
                .filter(|p| (0..3).all(|k| (p[k] as f64 - rgb[k]).abs() < 60.0))
                .count();
            assert!(
                near >= 4,
                "{}: {near} pixels of the picture's colour",
                e["id"]
            );
        }
    }
    // Split by source file: every file's renders in one split.
    for f in [
        "bark1.wav",
        "bark2.flac",
        "rex.png",
        "walk.mp4",
        "ring.ogg",
        "bell.jpg",
        "tv.wav",
    ] {
        let mut s: Vec<&str> = m
            .iter()
            .filter(|e| e["source"]["file"].as_str().unwrap().ends_with(f))
            .map(|e| e["split"].as_str().unwrap())
            .collect();
        s.dedup();
        assert_eq!(s.len(), 1, "{f}: {s:?}");
    }
    assert_eq!(
        summary(&out)["labels"],
        serde_json::json!(["dog_barking", "none", "doorbell"])
    );
    let files = summary(&out)["files"].as_array().unwrap().clone();
    let walked = files
        .iter()
        .find(|f| f["file"].as_str().unwrap().ends_with("walk.mp4"))
        .unwrap();
    assert_eq!(walked["material"], "silent video (pictures)");
    // A new label with sounds only has nothing to pair them with.
    let lone = root.join("lone");
    write_wav(&lone.join("kettle/k.wav"), 16_000, &tone(800.0));
    let e = refused(
        &[
            arg(&lone),
            "--out",
            arg(&root.join("out2")),
            "--pool",
            arg(&pool),
            "--cache",
            arg(&root.join("cache")),
        ],
        "k.wav",
    );
    assert!(e.contains("no pictures"), "{e}");
    let _ = std::fs::remove_dir_all(&root);
}

/// `--frame-size 224` (data v3's size): video windows and rendered scenes come out at 224 px,
/// as ffprobe reads the written Motion JPEG, and the summary says so; a rendered object is
/// drawn at the 224-px geometry (twice the 112-px minimum height of 6 px at least); a size
/// that is not a multiple of 16 is refused naming the flag.
#[test]
fn frame_size_sets_the_size_of_windows_and_rendered_scenes() {
    let root = tmp("import-size");
    let pool = fixture(&root);
    let inp = root.join("in");
    video(&inp.join("dog_barking/a.mp4"), "red", 440, 3.0, MP4);
    image::RgbImage::from_pixel(60, 80, image::Rgb([0, 255, 0]))
        .save(inp.join("dog_barking/rex.png"))
        .unwrap();
    let out = root.join("out");
    let o = import(&[
        arg(&inp),
        "--out",
        arg(&out),
        "--frame-size",
        "224",
        "--renders",
        "2",
        "--pool",
        arg(&pool),
        "--cache",
        arg(&root.join("cache")),
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let m = manifest(&out);
    // 3 s at hop 1: 2 windows; the picture: 2 renders.
    assert_eq!(m.len(), 4);
    for e in &m {
        let (w, h, f) = frames(&out.join(e["video"].as_str().unwrap()));
        assert_eq!((w, h, f.len()), (224, 224, 16), "{}", e["id"]);
        assert_eq!(
            (e["width"].as_u64(), e["height"].as_u64()),
            (Some(224), Some(224))
        );
        for o in e["params"]["video"]["objects"]
            .as_array()
            .into_iter()
            .flatten()
        {
            assert!(o["height_px"].as_f64().unwrap() >= 12.0, "{o}");
        }
    }
    let s = summary(&out);
    assert_eq!(s["clip"]["width"], 224);
    let o = import(&[
        arg(&inp),
        "--out",
        arg(&root.join("bad")),
        "--frame-size",
        "100",
    ]);
    assert!(!o.status.success());
    let e = stderr(&o);
    assert!(e.contains("--frame-size 100"), "{e}");
}
