//! The hybrid model (pretrained trunks + MBT fusion) in its three forms agrees with itself:
//! the composed ONNX file on tract and on ONNX Runtime (the independent reference), the
//! trunk parts (tract) feeding the burn fusion forward (the training path), and the parts cut
//! from the composed file run one patch / one frame at a time (the daemon's streaming path).
//!
//! Random fusion weights (seed 1) over the committed trunks, random inputs in the ranges the
//! tokenizer produces. Needs the ONNX Runtime library (`scripts/fetch-onnxruntime.sh`;
//! `scripts/test.sh` fetches it and sets `ORT_DYLIB_PATH`).

use std::path::Path;

use burn::prelude::*;
use mbt_infer::parts::{Part, Split};
use mbt_model::export::compose::{self, Part as Which};
use mbt_model::export::{export, ExportOptions};
use mbt_model::train::{predict, Batch};
use mbt_model::{Mbt, ModelConfig};

mod common;
use common::fill;

const ROOT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../..");

fn config() -> ModelConfig {
    let path = Path::new(ROOT).join("configs/edge.toml");
    let text = std::fs::read_to_string(&path).unwrap();
    ModelConfig::from_toml(&text, "configs/edge.toml", &[]).unwrap()
}

fn max_diff(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len());
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f32::max)
}

#[test]
fn composed_file_parts_and_burn_agree() {
    let cfg = config();
    let device = Device::flex();
    device.seed(1);
    let model = Mbt::new(&cfg, &device);
    check_forms(&cfg, &model);
}

/// `trunks.finetune_last`: the trunks cut one layer earlier, their last layers trained in the
/// fusion part. With the trunks' own weights in those layers, the cut trunk followed by the
/// burn layer gives the frozen trunk's cells (so the cut and the weight reading are right),
/// and the composed file's forms agree as for the plain model.
#[test]
fn finetune_last_reproduces_the_trunks_and_its_forms_agree() {
    let plain = config();
    let text = std::fs::read_to_string(Path::new(ROOT).join("configs/edge.toml")).unwrap();
    let cfg =
        ModelConfig::from_toml(&text, "edge.toml", &["trunks.finetune_last=true".into()]).unwrap();
    let trunks = mbt_model::trunk::default_dir();
    let device = Device::flex();
    device.seed(1);
    let model = Mbt::new(&cfg, &device)
        .with_trunk_weights(&cfg, &trunks, &device)
        .unwrap();
    let (v, a) = (&cfg.tokenizer.video, &cfg.tokenizer.audio);
    let (tv, pv) = (v.token_count(), v.token_dim());
    let (ta, pa) = (a.token_count(), a.token_dim());
    let video = fill(tv * pv, 7, -1.0, 1.0);
    let audio = fill(ta * pa, 11, -6.9, 3.0);
    let part = |c: &ModelConfig, w: Which, x: &[f32], n: usize, d: usize| {
        Part::from_bytes(&compose::trunk_part(c, w, &trunks).unwrap(), "p")
            .unwrap()
            .run_rows(x, n, d)
            .unwrap()
    };
    let (ps, fs) = (plain.streams(), cfg.streams());
    for (s, which, x, n, d) in [
        (0, Which::Video, &video, tv, pv),
        (1, Which::Audio, &audio, ta, pa),
    ] {
        let frozen = part(&plain, which, x, n, d);
        let cut = part(&cfg, which, x, n, d);
        assert_eq!(cut.len(), fs[s].tokens * fs[s].patch_dim);
        let Some(last) = &model.streams[s].last else {
            panic!("stream {s} has no trained trunk layer")
        };
        let redone = last
            .forward(Tensor::from_data(
                TensorData::new(cut, [1, fs[s].tokens, fs[s].patch_dim]),
                &device,
            ))
            .into_data()
            .try_to_vec::<f32>()
            .unwrap();
        assert_eq!(redone.len(), ps[s].tokens * ps[s].patch_dim);
        let diff = max_diff(&redone, &frozen);
        let scale = frozen.iter().cloned().fold(0f32, f32::max);
        eprintln!("stream {s}: cut trunk + trunk layer vs frozen trunk: {diff:.2e} (max {scale})");
        assert!(
            scale > 0.1 && diff <= 1e-4 * scale.max(1.0),
            "stream {s}: {diff}"
        );
    }
    check_forms(&cfg, &model);
}

/// The composed file on tract and ONNX Runtime, the trunk parts + burn (training path) and
/// the parts cut from the file (streaming path) agree for `model`.
fn check_forms(cfg: &ModelConfig, model: &Mbt) {
    let cfg = cfg.clone();
    let fusion = export(
        model,
        &cfg,
        &ExportOptions {
            model_version: "hybrid-test".into(),
            training_data_hash: "none".into(),
            int8: None,
            thresholds: Default::default(),
        },
    )
    .unwrap();
    let trunks = mbt_model::trunk::default_dir();
    let bytes = compose::compose(&cfg, &fusion, &trunks).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("hybrid.onnx");
    std::fs::write(&file, &bytes).unwrap();

    let (v, a) = (&cfg.tokenizer.video, &cfg.tokenizer.audio);
    let (tv, pv) = (v.token_count(), v.token_dim());
    let (ta, pa) = (a.token_count(), a.token_dim());
    // Frames normalised to [-1, 1]; YAMNet log-mel between log(0.001) and ~log(20).
    let video = fill(tv * pv, 7, -1.0, 1.0);
    let audio = fill(ta * pa, 11, -6.9, 3.0);

    // 1. Composed file: tract against ONNX Runtime.
    let tract = mbt_infer::Model::load(&file, "cpu").unwrap();
    assert!(
        tract.metadata.trunks.contains("yamnet"),
        "{}",
        tract.metadata.trunks
    );
    assert!(tract.metadata.trunks.contains("Apache-2.0"));
    let t = tract.run(1, &video, &audio).unwrap();
    let lib = mbt_infer::onnxruntime::reference_library().unwrap();
    let mut ort =
        mbt_infer::onnxruntime::OrtModel::load(&file, &lib, &["cpu".to_string()], 1).unwrap();
    let o = ort.run(1, &video, &audio).unwrap();
    for (x, y, what) in [
        (&t.fused, &o.fused, "fused"),
        (&t.video, &o.video, "video"),
        (&t.audio, &o.audio, "audio"),
    ] {
        let d = max_diff(x, y);
        eprintln!("tract vs ONNX Runtime, {what}: {d:.2e}");
        assert!(d <= 1e-4, "{what}: tract and ONNX Runtime differ by {d}");
    }
    // The logits are not all the same (the comparison above means something).
    let spread = t.fused.iter().cloned().fold(f32::MIN, f32::max)
        - t.fused.iter().cloned().fold(f32::MAX, f32::min);
    assert!(spread > 1e-3, "degenerate logits {:?}", t.fused);

    // 2. Trunk parts (tract) -> burn fusion forward: the training path.
    let ap = Part::from_bytes(
        &compose::trunk_part(&cfg, Which::Audio, &trunks).unwrap(),
        "a",
    )
    .unwrap();
    let vp = Part::from_bytes(
        &compose::trunk_part(&cfg, Which::Video, &trunks).unwrap(),
        "v",
    )
    .unwrap();
    let a_cells = ap.run_rows(&audio, ta, pa).unwrap();
    let v_cells = vp.run_rows(&video, tv, pv).unwrap();
    let streams = cfg.streams();
    assert_eq!(v_cells.len(), streams[0].tokens * streams[0].patch_dim);
    assert_eq!(a_cells.len(), streams[1].tokens * streams[1].patch_dim);
    let p = predict(
        model,
        &cfg,
        &Batch {
            n: 1,
            inputs: vec![v_cells.clone(), a_cells.clone()],
            targets: vec![],
            stream_targets: vec![],
        },
    );
    let d = max_diff(&p.fused, &t.fused);
    eprintln!("trunk parts + burn fusion vs composed file: {d:.2e}");
    assert!(
        d <= 1e-4,
        "burn on trunk features differs from the composed file by {d}"
    );

    // 3. Parts cut from the composed file, one patch and one frame at a time (streaming).
    let split = Split::from_bytes(&bytes, "hybrid.onnx", pv, pa).unwrap();
    assert_eq!(
        split.video_tokens,
        (streams[0].tokens, streams[0].patch_dim)
    );
    assert_eq!(
        split.audio_tokens,
        (streams[1].tokens, streams[1].patch_dim)
    );
    let mut vs = Vec::new();
    for f in 0..tv {
        vs.extend(
            split
                .video
                .run_rows(&video[f * pv..(f + 1) * pv], 1, pv)
                .unwrap(),
        );
    }
    let mut as_ = Vec::new();
    for q in 0..ta {
        as_.extend(
            split
                .audio
                .run_rows(&audio[q * pa..(q + 1) * pa], 1, pa)
                .unwrap(),
        );
    }
    assert!(max_diff(&vs, &v_cells) <= 1e-4);
    assert!(max_diff(&as_, &a_cells) <= 1e-4);
    let [f, fv, fa] = split.fuse(&vs, &as_).unwrap();
    for (x, y, what) in [
        (&f, &t.fused, "fused"),
        (&fv, &t.video, "video"),
        (&fa, &t.audio, "audio"),
    ] {
        let d = max_diff(x, y);
        eprintln!("streamed parts vs whole window, {what}: {d:.2e}");
        assert!(
            d <= 1e-4,
            "{what}: streamed parts differ from the whole window by {d}"
        );
    }
    // The streaming runner over two overlapping windows (the second shifted by half): the
    // trunks run once per distinct frame and patch, and each window's logits are the
    // whole-window model's.
    let mut stream =
        mbt_infer::parts::Streaming::from_bytes(&bytes, "hybrid.onnx", (tv, pv), (ta, pa)).unwrap();
    let [s1, _, _] = stream.run(&video, &audio).unwrap();
    assert!(max_diff(&s1, &t.fused) <= 1e-4);
    let (hv, ha) = (tv / 2, ta / 2);
    let mut video2 = video[hv * pv..].to_vec();
    video2.extend(fill(hv * pv, 13, -1.0, 1.0));
    let mut audio2 = audio[ha * pa..].to_vec();
    audio2.extend(fill(ha * pa, 17, -6.9, 3.0));
    let [s2, _, _] = stream.run(&video2, &audio2).unwrap();
    let whole2 = tract.run(1, &video2, &audio2).unwrap();
    let d = max_diff(&s2, &whole2.fused);
    eprintln!("streaming runner, second window vs whole window: {d:.2e}");
    assert!(d <= 1e-4, "streaming differs from the whole window by {d}");
    assert_eq!(
        stream.stats.trunk_runs as usize,
        tv + ta + hv + ha,
        "{:?}",
        stream.stats
    );
    assert_eq!(stream.stats.cache_hits as usize, (tv - hv) + (ta - ha));
    // Wrong sizes are errors naming what was expected, not panics.
    let e = split.fuse(&vs[1..], &as_).unwrap_err().to_string();
    assert!(e.contains("expected"), "{e}");
    let e = split
        .audio
        .run_rows(&audio[..10], 1, pa)
        .unwrap_err()
        .to_string();
    assert!(e.contains("6144"), "{e}");
}

#[test]
fn a_model_naming_an_unknown_front_end_or_trunk_is_refused() {
    // Unknown front end in the file's tokenizer settings.
    let mut meta = mbt_core::metadata::ModelMetadata {
        model_version: "x".into(),
        labels: vec!["a".into(), "none".into()],
        tokenizer: Default::default(),
        model_config: String::new(),
        training_data_hash: "none".into(),
        trunks: String::new(),
        thresholds: Default::default(),
    };
    let mut props = meta.to_props();
    for (k, v) in props.iter_mut() {
        if k == mbt_core::metadata::KEY_TOKENIZER {
            *v = v.replace("\"kaldi\"", "\"mfcc\"");
        }
    }
    let e = mbt_core::metadata::ModelMetadata::from_props(
        props.iter().map(|(k, v)| (k.as_str(), v.as_str())),
    )
    .unwrap_err()
    .to_string();
    assert!(e.contains("mbt.tokenizer") && e.contains("mfcc"), "{e}");
    // Unknown trunk in a config.
    let text = std::fs::read_to_string(Path::new(ROOT).join("configs/edge.toml")).unwrap();
    let e = ModelConfig::from_toml(&text, "edge.toml", &["trunks.audio=\"vggish\"".into()])
        .unwrap_err();
    assert!(e.contains("vggish") && e.contains("yamnet"), "{e}");
    // A trunk without its front end.
    let e = ModelConfig::from_toml(
        &text,
        "edge.toml",
        &[
            "tokenizer.audio.front_end=\"kaldi\"".into(),
            "tokenizer.audio.num_frames=208".into(),
        ],
    )
    .unwrap_err();
    assert!(e.contains("trunks.audio") && e.contains("yamnet"), "{e}");
    meta.trunks = "[]".into();
    assert!(meta.to_props().iter().any(|(k, _)| k == "mbt.trunks"));
}
