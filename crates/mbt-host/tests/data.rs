//! `mbt data`: fetch, build and ceiling, end to end through the binary.
//!
//! The build tests use tiny synthetic sources generated here (tones, noise bursts, coloured
//! shapes) laid out like the package cache, so they run in the default test run without the
//! network or the real packages. The run against the real packages is `#[ignore]`d:
//! `mbt data fetch && cargo test -p mbt-host --test data -- --ignored`.

use std::collections::{BTreeSet, HashMap};
use std::path::Path;

mod common;
use common::{build, fixture, mbt, tmp, write_wav};
use std::process::Command;

use serde_json::Value;

fn lines(dir: &Path) -> Vec<Value> {
    std::fs::read_to_string(dir.join("manifest.jsonl"))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

#[test]
fn builds_are_deterministic_balanced_and_split_by_source() {
    let root = tmp("build");
    let m = fixture(&root);
    let a = build(&root, &m, "7", "a");
    assert!(a.status.success(), "{}", String::from_utf8_lossy(&a.stderr));
    let b = build(&root, &m, "7", "b");
    assert!(b.status.success());
    let c = build(&root, &m, "8", "c");
    assert!(c.status.success());

    let ma = std::fs::read(root.join("a/manifest.jsonl")).unwrap();
    assert_eq!(ma, std::fs::read(root.join("b/manifest.jsonl")).unwrap());
    assert_ne!(ma, std::fs::read(root.join("c/manifest.jsonl")).unwrap());
    // The recorded hashes are the files' hashes, and the files are byte-identical.
    for f in ["train/train-00003.wav", "test/test-00011.y4m"] {
        assert_eq!(
            std::fs::read(root.join("a").join(f)).unwrap(),
            std::fs::read(root.join("b").join(f)).unwrap(),
            "{f}"
        );
    }

    let clips = lines(&root.join("a"));
    assert_eq!(clips.len(), 36);
    // Balance: every class exactly equally often per split (18/6 = 3, 6/6, 12/6).
    let mut counts: HashMap<(String, String), usize> = HashMap::new();
    for c in &clips {
        *counts
            .entry((
                c["split"].as_str().unwrap().into(),
                c["label"].as_str().unwrap().into(),
            ))
            .or_default() += 1;
    }
    for ((split, _), n) in &counts {
        let want = match split.as_str() {
            "train" => 3,
            "val" => 1,
            _ => 2,
        };
        assert_eq!(*n, want, "{counts:?}");
    }

    // The outputs are what the manifest says: a 2 s 16 kHz WAV and 16 frames of 112 x 112.
    let wav =
        hound::WavReader::open(root.join("a").join(clips[0]["audio"].as_str().unwrap())).unwrap();
    assert_eq!(
        (wav.spec().sample_rate, wav.spec().channels, wav.duration()),
        (16_000, 1, 32_000)
    );
    let frames = mbt_media_frames(&root.join("a").join(clips[0]["video"].as_str().unwrap()));
    assert_eq!(frames, (16, 112, 112));

    // No source file of one split appears in another.
    let mut used: HashMap<String, BTreeSet<String>> = HashMap::new();
    for c in &clips {
        let split = c["split"].as_str().unwrap().to_string();
        let p = &c["params"];
        let mut files = vec![p["video"]["background"]["source"]
            .as_str()
            .unwrap()
            .to_string()];
        for s in p["audio"]["sounds"].as_array().unwrap() {
            files.push(s["source"].as_str().unwrap().into());
        }
        for o in p["video"]["objects"].as_array().unwrap() {
            files.push(o["source"].as_str().unwrap().into());
        }
        used.entry(split).or_default().extend(files);
    }
    for (x, y) in [("train", "test"), ("train", "val"), ("val", "test")] {
        let shared: Vec<_> = used[x].intersection(&used[y]).collect();
        assert!(shared.is_empty(), "{x}/{y} share {shared:?}");
    }
    std::fs::remove_dir_all(&root).unwrap();
}

/// Frame count and size of a Y4M file, read from its header and frame markers.
fn mbt_media_frames(path: &Path) -> (usize, usize, usize) {
    let b = std::fs::read(path).unwrap();
    let header =
        String::from_utf8_lossy(&b[..b.iter().position(|c| *c == b'\n').unwrap()]).to_string();
    let get = |t: char| -> usize {
        header.split(' ').find(|x| x.starts_with(t)).unwrap()[1..]
            .parse()
            .unwrap()
    };
    let (w, h) = (get('W'), get('H'));
    let n = (b.len() - header.len() - 1) / (6 + w * h * 3);
    (n, w, h)
}

#[test]
fn labels_follow_what_is_both_heard_and_seen() {
    let root = tmp("labels");
    let m = fixture(&root);
    let out = mbt(&[
        "data",
        "build",
        "--seed",
        "3",
        "--out",
        root.join("o").to_str().unwrap(),
        "--train",
        "60",
        "--val",
        "0",
        "--test",
        "0",
        "--cache",
        root.join("cache").to_str().unwrap(),
        "--manifest",
        m.to_str().unwrap(),
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mut saw_distractor_event = false;
    for c in lines(&root.join("o")) {
        let p = &c["params"];
        let heard: Vec<&str> = p["audio"]["sounds"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| s["kind"].as_str().unwrap())
            .collect();
        let seen: Vec<&str> = p["video"]["objects"]
            .as_array()
            .unwrap()
            .iter()
            .map(|o| o["kind"].as_str().unwrap())
            .collect();
        assert_eq!((heard.len(), seen.len()), (2, 2));
        let both: Vec<&str> = heard
            .iter()
            .copied()
            .filter(|k| *k != "other" && seen.contains(k))
            .collect();
        let label = c["label"].as_str().unwrap();
        let want_kind = match label {
            "dog_barking" => Some("dog"),
            "glass_breaking" => Some("glass"),
            "person_speaking" => Some("speech"),
            "door_slammed" | "door_closed_softly" => Some("door"),
            "none" => None,
            other => panic!("unknown label {other}"),
        };
        match want_kind {
            Some(k) => {
                assert_eq!(both, vec![k], "{c}");
                // A distractor that is an event kind heard but not seen (or seen but not heard).
                if heard.iter().chain(&seen).any(|x| *x != k && *x != "other") {
                    saw_distractor_event = true;
                }
            }
            None => assert!(both.is_empty(), "{c}"),
        }
        if want_kind == Some("door") {
            let door = p["audio"]["sounds"]
                .as_array()
                .unwrap()
                .iter()
                .find(|s| s["on_screen"] == true)
                .unwrap();
            let src_db = door["door"]["source_db"].as_f64().unwrap();
            let dist = door["door"]["distance"].as_f64().unwrap();
            // Recover the source level from what is heard and seen: received + 20 log10 d.
            let recovered = door["level_db"].as_f64().unwrap() + 20.0 * dist.log10();
            assert!((recovered - src_db).abs() < 1e-9);
            assert_eq!(label == "door_slammed", src_db > -6.0, "{c}");
        }
    }
    assert!(saw_distractor_event);
    std::fs::remove_dir_all(&root).unwrap();
}

#[test]
fn corrupt_or_missing_source_media_is_an_error_naming_the_file() {
    let root = tmp("corrupt");
    let m = fixture(&root);
    let bad = root.join("cache/media/fixture/snd/glass_val.wav");
    std::fs::write(&bad, b"RIFF....WAVEnot really").unwrap();
    let out = build(&root, &m, "1", "o");
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("glass_val.wav"), "{err}");

    let m2 = fixture(&root);
    let gone = root.join("cache/media/fixture/img/door_test.png");
    std::fs::remove_file(&gone).unwrap();
    let out = build(&root, &m2, "1", "o");
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains("door_test.png") && err.contains("mbt data fetch"),
        "{err}"
    );
    std::fs::remove_dir_all(&root).unwrap();
}

#[test]
fn ceiling_is_printed_saved_and_within_the_design_bounds() {
    let root = tmp("ceiling");
    let f = root.join("c.json");
    let out = mbt(&[
        "data",
        "ceiling",
        "--samples",
        "40000",
        "--out",
        f.to_str().unwrap(),
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: Value = serde_json::from_slice(&std::fs::read(&f).unwrap()).unwrap();
    let printed: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v, printed);
    assert!(v["audio_only"].as_f64().unwrap() <= 0.45, "{v}");
    assert!(v["video_only"].as_f64().unwrap() <= 0.40, "{v}");
    assert!(v["joint"].as_f64().unwrap() >= 0.995, "{v}");
    std::fs::remove_dir_all(&root).unwrap();
}

fn dpkg_deb_available() -> bool {
    Command::new("dpkg-deb")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success())
}

/// Builds a tiny real .deb with dpkg-deb, then lets `fetch` verify and extract it from the cache
/// (no network: the .deb is already where apt-get would put it).
#[test]
fn fetch_verifies_extracts_and_is_idempotent() {
    if !dpkg_deb_available() {
        eprintln!("skipped: dpkg-deb is not installed");
        return;
    }
    let root = tmp("fetch");
    let pkgdir = root.join("pkg");
    std::fs::create_dir_all(pkgdir.join("DEBIAN")).unwrap();
    std::fs::write(
        pkgdir.join("DEBIAN/control"),
        "Package: mbt-fixture\nVersion: 1.0-1\nArchitecture: all\nMaintainer: t <t@example.invalid>\nDescription: test\n",
    )
    .unwrap();
    write_wav(&pkgdir.join("usr/share/f/a.wav"), 16_000, &[0.1; 100]);
    write_wav(&pkgdir.join("usr/share/f/b.wav"), 16_000, &[0.2; 100]);
    let cache = root.join("cache");
    std::fs::create_dir_all(cache.join("debs")).unwrap();
    let deb = cache.join("debs/mbt-fixture_1.0-1_all.deb");
    let st = Command::new("dpkg-deb")
        .args(["--root-owner-group", "--build"])
        .arg(&pkgdir)
        .arg(&deb)
        .output()
        .unwrap();
    assert!(
        st.status.success(),
        "{}",
        String::from_utf8_lossy(&st.stderr)
    );
    let sha = {
        use sha2::Digest;
        sha2::Sha256::digest(std::fs::read(&deb).unwrap())
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect::<String>()
    };
    let manifest = |sha: &str| {
        format!("[[package]]\nname = \"mbt-fixture\"\nversion = \"1.0-1\"\nsha256 = \"{sha}\"\n[[source]]\npackage = \"mbt-fixture\"\npath = \"usr/share/f/a.wav\"\nrole = \"sound\"\nkind = \"dog\"\nsplit = \"train\"\n")
    };
    let m = root.join("m.toml");
    std::fs::write(&m, manifest(&sha)).unwrap();
    let args = [
        "data",
        "fetch",
        "--cache",
        cache.to_str().unwrap(),
        "--manifest",
        m.to_str().unwrap(),
    ];
    let out = mbt(&args);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(text.contains("mbt-fixture: verified, extracted"), "{text}");
    let media = cache.join("media/mbt-fixture/usr/share/f");
    assert!(media.join("a.wav").is_file());
    assert!(
        !media.join("b.wav").exists(),
        "only the listed media are extracted"
    );
    let out = mbt(&args);
    assert!(String::from_utf8_lossy(&out.stdout).contains("mbt-fixture: cached"));

    // A .deb whose checksum differs is not trusted: fetch tries to download it again, and
    // (this package is on no mirror) fails naming the package.
    std::fs::write(&m, manifest(&"ab".repeat(32))).unwrap();
    let out = mbt(&args);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("package mbt-fixture"), "{err}");
    std::fs::remove_dir_all(&root).unwrap();
}

/// The real data set: needs `mbt data fetch` (network once, then the cache).
/// Run: `cargo run -p mbt-host --bin mbt -- data fetch && cargo test -p mbt-host --test data -- --ignored`
#[test]
#[ignore]
fn real_sources_build_a_small_set() {
    let root = tmp("real");
    let out = mbt(&[
        "data",
        "build",
        "--seed",
        "0",
        "--out",
        root.join("o").to_str().unwrap(),
        "--train",
        "60",
        "--val",
        "12",
        "--test",
        "24",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(lines(&root.join("o")).len(), 96);
    // The demo regenerates from the cache: 24 s at 8 fps, and its four events.
    let demo = root.join("demo");
    let out = mbt(&["data", "demo", "--out", demo.to_str().unwrap()]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(std::fs::read_dir(demo.join("frames")).unwrap().count(), 192);
    let tl: Value =
        serde_json::from_slice(&std::fs::read(demo.join("timeline.json")).unwrap()).unwrap();
    let labels: Vec<&str> = tl["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["label"].as_str().unwrap())
        .collect();
    assert_eq!(
        labels,
        [
            "glass_breaking",
            "door_slammed",
            "door_closed_softly",
            "glass_breaking"
        ]
    );
    std::fs::remove_dir_all(&root).unwrap();
}
