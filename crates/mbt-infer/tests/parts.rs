//! The streamed parts of the shipped composed model (`models/edge.onnx`, cut by
//! `mbt_infer::parts::Split`, what `mbtd` runs on tract) give the same cells and logits with our
//! depthwise convolution (`mbt_infer::ops::depthwise`) as with tract's own, within 1e-5 of the
//! output's largest value, with the batch symbolic and fixed to 1 (the streaming runner's
//! trunk plans); and the rewrite does replace the trunks' depthwise convolutions there
//! (YAMNet has 13, EfficientNet-Lite0 16), by default.

use std::path::{Path, PathBuf};

use mbt_infer::parts::{PartOptions, Split, Streaming};

fn model() -> (Vec<u8>, (usize, usize), (usize, usize)) {
    let path: PathBuf = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../models/edge.onnx");
    let bytes = std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let meta = mbt_infer::read_metadata(&bytes, "edge.onnx").unwrap();
    let tok = &meta.tokenizer;
    let video = (tok.video.token_count(), tok.video.token_dim());
    let audio = (tok.audio.token_count(), tok.audio.token_dim());
    (bytes, video, audio)
}

/// A symbolic batch (what the streaming runner plans), with or without our depthwise.
fn opts(depthwise: bool) -> PartOptions {
    PartOptions {
        batch: None,
        depthwise,
    }
}

/// `n` values in `[lo, hi)`, reproducible.
fn values(n: usize, seed: u64, lo: f32, hi: f32) -> Vec<f32> {
    let mut s = seed.wrapping_mul(6364136223846793005).wrapping_add(1);
    (0..n)
        .map(|_| {
            s = s
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            lo + (hi - lo) * ((s >> 40) as f32 / (1u64 << 24) as f32)
        })
        .collect()
}

/// Largest `|a - b|` over the largest `|b|` (at least 1).
fn rel_diff(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len());
    let scale = b.iter().fold(1.0f32, |m, v| m.max(v.abs()));
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f32::max)
        / scale
}

#[test]
fn streamed_parts_with_our_depthwise_equal_tracts_own() {
    let (bytes, (vrows, vdim), (arows, adim)) = model();
    let ours = Split::from_bytes_with(&bytes, "edge.onnx", vdim, adim, opts(true)).unwrap();
    let plain = Split::from_bytes_with(&bytes, "edge.onnx", vdim, adim, opts(false)).unwrap();
    assert_eq!(
        ours.audio.depthwise_replaced(),
        13,
        "YAMNet's depthwise convolutions"
    );
    assert_eq!(
        ours.video.depthwise_replaced(),
        16,
        "Lite0's depthwise convolutions"
    );
    assert_eq!(ours.fusion.depthwise_replaced(), 0);
    assert_eq!(plain.audio.depthwise_replaced(), 0);
    assert_eq!(plain.video.depthwise_replaced(), 0);

    // Two rows at once (the symbolic batch) and one, as the daemon runs them.
    let video = values(2 * vdim, 1, 0.0, 1.0);
    let audio = values(2 * adim, 2, -4.0, 2.0);
    for n in [2, 1] {
        let vo = ours.video.run_rows(&video[..n * vdim], n, vdim).unwrap();
        let vp = plain.video.run_rows(&video[..n * vdim], n, vdim).unwrap();
        let d = rel_diff(&vo, &vp);
        eprintln!("video cells, {n} rows: {d:.1e} relative");
        assert!(d <= 1e-5, "video cells, {n} rows: {d}");
        let ao = ours.audio.run_rows(&audio[..n * adim], n, adim).unwrap();
        let ap = plain.audio.run_rows(&audio[..n * adim], n, adim).unwrap();
        let d = rel_diff(&ao, &ap);
        eprintln!("audio cells, {n} rows: {d:.1e} relative");
        assert!(d <= 1e-5, "audio cells, {n} rows: {d}");
    }

    // Plans for exactly one row (the streaming runner's trunk plans).
    let one = |depthwise| PartOptions {
        batch: Some(1),
        depthwise,
    };
    let ours1 = Split::from_bytes_with(&bytes, "edge.onnx", vdim, adim, one(true)).unwrap();
    let plain1 = Split::from_bytes_with(&bytes, "edge.onnx", vdim, adim, one(false)).unwrap();
    assert_eq!(ours1.audio.depthwise_replaced(), 13);
    assert_eq!(ours1.video.depthwise_replaced(), 16);
    for (what, o, p, x, dim) in [
        ("video", &ours1.video, &plain1.video, &video, vdim),
        ("audio", &ours1.audio, &plain1.audio, &audio, adim),
    ] {
        let d = rel_diff(
            &o.run_rows(&x[..dim], 1, dim).unwrap(),
            &p.run_rows(&x[..dim], 1, dim).unwrap(),
        );
        eprintln!("{what} cells, batch fixed to 1: {d:.1e} relative");
        assert!(d <= 1e-5, "{what} cells, batch fixed to 1: {d}");
    }
    drop((ours1, plain1));

    // A whole window through the streaming runner (default: ours, unless
    // MBT_DEPTHWISE=tract) against the parts without the rewrite.
    let video = values(vrows * vdim, 3, 0.0, 1.0);
    let audio = values(arows * adim, 4, -4.0, 2.0);
    let mut stream = Streaming::from_bytes(&bytes, "edge.onnx", (vrows, vdim), (arows, adim))
        .expect("streaming runner");
    let got = stream.run(&video, &audio).unwrap();
    let v = plain.video.run_rows(&video, vrows, vdim).unwrap();
    let a = plain.audio.run_rows(&audio, arows, adim).unwrap();
    let want = plain.fuse(&v, &a).unwrap();
    for (what, g, w) in [
        ("fused", &got[0], &want[0]),
        ("video head", &got[1], &want[1]),
        ("audio head", &got[2], &want[2]),
    ] {
        let d = rel_diff(g, w);
        eprintln!("{what} logits: {d:.1e} relative");
        assert!(d <= 1e-5, "{what} logits: {d}");
    }
}

#[test]
fn the_default_split_runs_our_depthwise() {
    if std::env::var("MBT_DEPTHWISE").is_ok_and(|v| v == "tract") {
        return;
    }
    let (bytes, (_, vdim), (_, adim)) = model();
    let split = Split::from_bytes(&bytes, "edge.onnx", vdim, adim).unwrap();
    assert!(split.audio.depthwise_replaced() > 0);
    assert!(split.video.depthwise_replaced() > 0);
}
