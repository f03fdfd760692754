//! `MbtDepthwiseConv` (crates/mbt-infer/src/ops/depthwise) gives what tract's own depthwise
//! operator gives:
//!
//! * on random shapes, strides, paddings and kernels (property test, each kernel this CPU has
//!   and the portable one), within 1e-5;
//! * on both real trunks (`models/trunks/`), the whole trunk's output within 1e-5 of plain
//!   tract's, every depthwise convolution replaced, and equal to the reference fixtures (ONNX
//!   Runtime's for EfficientNet-Lite0, TensorFlow's for YAMNet) as closely as tract is;
//! * a depthwise convolution it does not cover (dilated) stays tract's, with the same result;
//! * the element-wise nodes after it (per-channel `Mul` / `Add`, a `Max` / `Min` clamp) are
//!   fused into it with the same result (YAMNet: 39 nodes, Lite0: 32), and what cannot be
//!   fused stays a node of its own.
//!
//! `cargo test --workspace --test depthwise` (seconds: dependencies build at opt-level 2).
//! "Within 1e-5" is relative to the output's largest value on the trunks: fused multiply-add
//! rounds differently from tract's multiply-then-add, and 16 blocks carry that on (Lite0:
//! 2.3e-5 on values up to 6.0; ours is as close to ONNX Runtime as plain tract is).

use std::path::{Path, PathBuf};

use mbt_core::npy;
use mbt_infer::ops::depthwise::{self, Isa, MbtDepthwiseConv};
use proptest::prelude::*;
use tract_onnx::prelude::*;
use tract_onnx::tract_core::ops::cnn::conv::{Conv, KernelFormat};
use tract_onnx::tract_core::ops::cnn::{PaddingSpec, PoolSpec};
use tract_onnx::tract_core::ops::nn::DataFormat;

fn values(n: usize, seed: u64) -> Vec<f32> {
    let mut s = seed
        .wrapping_mul(6364136223846793005)
        .wrapping_add(1442695040888963407);
    (0..n)
        .map(|_| {
            s = s
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            (s >> 40) as f32 / (1u64 << 24) as f32 * 2.0 - 1.0
        })
        .collect()
}

#[derive(Debug, Clone)]
struct Case {
    n: usize,
    c: usize,
    h: usize,
    w: usize,
    kh: usize,
    kw: usize,
    strides: (usize, usize),
    dilations: (usize, usize),
    padding: PaddingSpec,
    seed: u64,
}

/// A one-node model: a depthwise `Conv` with constant filters and bias, as tract's ONNX
/// front end and declutter leave it. `symbolic_batch` makes the batch dimension a symbol.
fn model(case: &Case, symbolic_batch: bool) -> TypedModel {
    model_with(case, symbolic_batch, &[])
}

/// [`model`] with element-wise nodes after the convolution: each `(op, constant)` is one of
/// `Mul`, `Add`, `Max`, `Min` with the previous node's output first, the constant second.
fn model_with(case: &Case, symbolic_batch: bool, epilogue: &[(&str, Tensor)]) -> TypedModel {
    let Case {
        c, h, w, kh, kw, ..
    } = *case;
    let mut m = TypedModel::default();
    let n: TDim = if symbolic_batch {
        m.symbols.sym("N").into()
    } else {
        case.n.into()
    };
    let x = m
        .add_source("x", f32::fact([n, c.into(), h.into(), w.into()]))
        .unwrap();
    let k = Tensor::from_shape(&[c, 1, kh, kw], &values(c * kh * kw, case.seed + 1)).unwrap();
    let k = m.add_const("k", k).unwrap();
    let b = Tensor::from_shape(&[c], &values(c, case.seed + 2)).unwrap();
    let b = m.add_const("b", b).unwrap();
    let pool_spec = PoolSpec {
        data_format: DataFormat::NCHW,
        kernel_shape: tvec!(kh, kw),
        padding: case.padding.clone(),
        dilations: Some(tvec!(case.dilations.0, case.dilations.1)),
        strides: Some(tvec!(case.strides.0, case.strides.1)),
        input_channels: c,
        output_channels: c,
    };
    let conv = Conv {
        pool_spec,
        kernel_fmt: KernelFormat::OIHW,
        group: c,
        q_params: None,
    };
    let mut y = m.wire_node("dw", conv, &[x, k, b]).unwrap();
    for (i, (op, konst)) in epilogue.iter().enumerate() {
        use tract_onnx::tract_core::ops::math;
        let konst = m.add_const(format!("e{i}.k"), konst.clone()).unwrap();
        let op = match *op {
            "Mul" => math::mul(),
            "Add" => math::add(),
            "Max" => math::max(),
            "Min" => math::min(),
            other => panic!("{other}"),
        };
        y = m.wire_node(format!("e{i}"), op, &[y[0], konst]).unwrap();
    }
    m.select_output_outlets(&y).unwrap();
    m.into_decluttered().unwrap()
}

fn run(model: TypedModel, input: &Tensor) -> Vec<f32> {
    let plan = model.into_optimized().unwrap().into_runnable().unwrap();
    let out = plan.run(tvec!(input.clone().into())).unwrap();
    let view = out[0].to_plain_array_view::<f32>().unwrap();
    view.iter().copied().collect()
}

fn max_abs_diff(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len());
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f32::max)
}

fn count_ours(m: &TypedModel) -> usize {
    m.nodes
        .iter()
        .filter(|n| n.op_as::<MbtDepthwiseConv>().is_some())
        .count()
}

/// Ours (with `isa`) against tract's on `case`; returns the largest difference.
fn compare(case: &Case, isa: Isa, symbolic_batch: bool) -> f32 {
    let input = Tensor::from_shape(
        &[case.n, case.c, case.h, case.w],
        &values(case.n * case.c * case.h * case.w, case.seed),
    )
    .unwrap();
    let want = run(model(case, false), &input);
    let mut ours = model(case, symbolic_batch);
    let done = depthwise::rewrite_with(&mut ours, isa).unwrap();
    assert_eq!(done.replaced, 1, "{case:?}: {done:?}");
    assert_eq!(count_ours(&ours), 1);
    let got = run(ours, &input);
    max_abs_diff(&got, &want)
}

fn isas() -> Vec<Isa> {
    let mut v = vec![Isa::Portable];
    if Isa::detect() != Isa::Portable {
        v.push(Isa::detect());
    }
    v
}

fn padding(kh: usize, kw: usize) -> impl Strategy<Value = PaddingSpec> {
    prop_oneof![
        Just(PaddingSpec::Valid),
        Just(PaddingSpec::SameUpper),
        Just(PaddingSpec::SameLower),
        (0..kh, 0..kw, 0..kh, 0..kw)
            .prop_map(|(a, b, c, d)| PaddingSpec::Explicit(tvec!(a, b), tvec!(c, d))),
    ]
}

fn case() -> impl Strategy<Value = Case> {
    (1usize..=5, 1usize..=5)
        .prop_flat_map(|(kh, kw)| {
            (
                (1usize..=2, 2usize..=12, 1usize..=30, 1usize..=30),
                (Just(kh), Just(kw)),
                (1usize..=3, 1usize..=3),
                padding(kh, kw),
                any::<u64>(),
            )
        })
        .prop_map(|((n, c, h, w), (kh, kw), strides, padding, seed)| Case {
            n,
            c,
            h,
            w,
            kh,
            kw,
            strides,
            dilations: (1, 1),
            padding,
            seed,
        })
        .prop_filter("the output is not empty", |c| {
            let pads = |i: usize, k: usize| match &c.padding {
                PaddingSpec::Explicit(b, a) => b[i] + a[i],
                PaddingSpec::Valid => 0,
                _ => k,
            };
            c.h + pads(0, c.kh) >= c.kh && c.w + pads(1, c.kw) >= c.kw
        })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 96, ..ProptestConfig::default() })]

    #[test]
    fn equals_tracts_depthwise_on_random_shapes(case in case()) {
        for isa in isas() {
            let d = compare(&case, isa, false);
            prop_assert!(d <= 1e-5, "{isa:?} {case:?}: max diff {d}");
        }
    }
}

#[test]
fn the_trunks_shapes_equal_tracts() {
    // Every (kernel, stride) the two trunks have, at a size where the vector blocks, the
    // masked tails and the SAME borders all run.
    for (k, s, hw, c) in [(3, 1, 48, 32), (3, 2, 48, 16), (5, 1, 28, 8), (5, 2, 57, 8)] {
        for pad in [
            PaddingSpec::SameUpper,
            PaddingSpec::Explicit(tvec!(k / 2, k / 2), tvec!(k / 2, k / 2)),
        ] {
            let case = Case {
                n: 2,
                c,
                h: hw,
                w: hw + 3,
                kh: k,
                kw: k,
                strides: (s, s),
                dilations: (1, 1),
                padding: pad,
                seed: 7,
            };
            for isa in isas() {
                let d = compare(&case, isa, false);
                assert!(d <= 1e-5, "{isa:?} {case:?}: {d}");
            }
        }
    }
}

#[test]
fn a_batch_of_one_is_covered() {
    // tract declutters a batch axis of 1 away: the convolution is then CHW.
    let case = Case {
        n: 1,
        c: 6,
        h: 15,
        w: 20,
        kh: 5,
        kw: 5,
        strides: (2, 2),
        dilations: (1, 1),
        padding: PaddingSpec::SameUpper,
        seed: 13,
    };
    for isa in isas() {
        let d = compare(&case, isa, false);
        assert!(d <= 1e-5, "{isa:?}: {d}");
    }
}

#[test]
fn a_symbolic_batch_is_covered() {
    let case = Case {
        n: 3,
        c: 5,
        h: 17,
        w: 12,
        kh: 3,
        kw: 3,
        strides: (2, 2),
        dilations: (1, 1),
        padding: PaddingSpec::SameUpper,
        seed: 11,
    };
    let d = compare(&case, Isa::detect(), true);
    assert!(d <= 1e-5, "{d}");
}

#[test]
fn a_dilated_depthwise_convolution_stays_tracts() {
    let case = Case {
        n: 1,
        c: 4,
        h: 12,
        w: 12,
        kh: 3,
        kw: 3,
        strides: (1, 1),
        dilations: (2, 2),
        padding: PaddingSpec::Valid,
        seed: 5,
    };
    let input = Tensor::from_shape(&[1, 4, 12, 12], &values(4 * 144, 5)).unwrap();
    let want = run(model(&case, false), &input);
    let mut m = model(&case, false);
    let done = depthwise::rewrite(&mut m).unwrap();
    assert_eq!(done.replaced, 0);
    assert_eq!(done.kept.len(), 1);
    assert!(done.kept[0].1.contains("dilation"), "{done:?}");
    assert_eq!(count_ours(&m), 0);
    assert_eq!(run(m, &input), want);
}

fn count_binary(m: &TypedModel) -> usize {
    use tract_onnx::tract_core::ops::binary::TypedBinOp;
    m.nodes
        .iter()
        .filter(|n| n.op_as::<TypedBinOp>().is_some())
        .count()
}

/// The case with `epilogue` after the convolution, plain tract against ours; returns
/// (nodes folded, element-wise nodes left after the rewrite, relative max difference).
fn compare_epilogue(case: &Case, epilogue: &[(&str, Tensor)]) -> (usize, usize, f32) {
    let input = Tensor::from_shape(
        &[case.n, case.c, case.h, case.w],
        &values(case.n * case.c * case.h * case.w, case.seed),
    )
    .unwrap();
    let want = run(model_with(case, false, epilogue), &input);
    let mut m = model_with(case, false, epilogue);
    let done = depthwise::rewrite(&mut m).unwrap();
    assert_eq!(done.replaced, 1, "{done:?}");
    let left = count_binary(&m);
    let got = run(m, &input);
    let scale = want.iter().fold(1.0f32, |m, v| m.max(v.abs()));
    (done.fused, left, max_abs_diff(&got, &want) / scale)
}

fn per_channel(c: usize, shape: &[usize], seed: u64, scale: f32) -> Tensor {
    let v: Vec<f32> = values(c, seed).iter().map(|v| v * scale).collect();
    Tensor::from_shape(shape, &v).unwrap()
}

fn scalar(v: f32, rank: usize) -> Tensor {
    Tensor::from_shape(&vec![1; rank], &[v]).unwrap()
}

#[test]
fn batch_norm_and_relu6_after_it_are_fused() {
    for n in [1, 2] {
        let c = 8;
        let case = Case {
            n,
            c,
            h: 13,
            w: 21,
            kh: 3,
            kw: 3,
            strides: (2, 2),
            dilations: (1, 1),
            padding: PaddingSpec::SameUpper,
            seed: 21,
        };
        // YAMNet's batch normalisation scales reach 50: outputs well past the clamp.
        let epilogue = [
            ("Mul", per_channel(c, &[1, c, 1, 1], 22, 40.0)),
            ("Add", per_channel(c, &[1, c, 1, 1], 23, 1.0)),
            ("Max", scalar(0.0, 4)),
            ("Min", scalar(6.0, 4)),
        ];
        let before = count_binary(&model_with(&case, false, &epilogue));
        let (fused, left, d) = compare_epilogue(&case, &epilogue);
        eprintln!("batch {n}: {before} element-wise nodes after declutter, {fused} fused, {d:.1e}");
        assert!(before > 0);
        assert_eq!((fused, left), (before, 0), "batch {n}");
        assert!(d <= 1e-5, "batch {n}: {d}");
    }
}

#[test]
fn what_cannot_be_fused_stays_a_node() {
    let c = 4;
    let case = Case {
        n: 2,
        c,
        h: 9,
        w: 10,
        kh: 3,
        kw: 3,
        strides: (1, 1),
        dilations: (1, 1),
        padding: PaddingSpec::SameUpper,
        seed: 31,
    };
    // A `Max` after a `Min` is not a clamp: the `Min` is fused, the `Max` stays.
    let (fused, left, d) =
        compare_epilogue(&case, &[("Min", scalar(0.5, 4)), ("Max", scalar(0.75, 4))]);
    assert_eq!((fused, left), (1, 1));
    assert!(d <= 1e-5, "{d}");
    // A clamp that differs per channel stays.
    let (fused, left, d) =
        compare_epilogue(&case, &[("Max", per_channel(c, &[1, c, 1, 1], 32, 1.0))]);
    assert_eq!((fused, left), (0, 1));
    assert!(d <= 1e-5, "{d}");
    // A multiplication along the columns is not per channel: it stays, and so does the
    // `Add` after it (folding stops at the first node it cannot take).
    let cols = Tensor::from_shape(&[1, 1, 1, 10], &values(10, 33)).unwrap();
    let (fused, left, d) = compare_epilogue(
        &case,
        &[
            ("Mul", cols),
            ("Add", per_channel(c, &[1, c, 1, 1], 34, 1.0)),
        ],
    );
    assert_eq!((fused, left), (0, 2));
    assert!(d <= 1e-5, "{d}");
}

// ---- The real trunks -------------------------------------------------------------------

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn load_npy(path: &Path) -> npy::Array {
    let bytes = std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    npy::decode_f32(&bytes).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// The trunk's decluttered typed model with the input's concrete shape.
fn trunk(file: &str, shape: &[usize]) -> TypedModel {
    let path = root().join("models/trunks").join(file);
    tract_onnx::onnx()
        .model_for_path(&path)
        .and_then(|m| m.with_input_fact(0, f32::fact(shape).into()))
        .and_then(|m| m.into_typed())
        .and_then(|m| m.into_decluttered())
        .unwrap_or_else(|e| panic!("{file}: {e:#}"))
}

/// Plain tract and tract with our operator on the same input; `(plain, ours, what the
/// rewrite did)`.
fn both(file: &str, input: &npy::Array) -> (Vec<f32>, Vec<f32>, depthwise::Rewritten) {
    let t = Tensor::from_shape(&input.shape, &input.data).unwrap();
    let plain = run(trunk(file, &input.shape), &t);
    let mut m = trunk(file, &input.shape);
    let done = depthwise::rewrite(&mut m).unwrap();
    assert!(done.kept.is_empty(), "{file}: {:?}", done.kept);
    assert_eq!(count_ours(&m), done.replaced);
    (plain, run(m, &t), done)
}

fn check_trunk(
    file: &str,
    input: &npy::Array,
    want: Option<&npy::Array>,
    convs: usize,
    fused: usize,
) {
    let (plain, ours, done) = both(file, input);
    assert_eq!(
        done.replaced, convs,
        "{file}: depthwise convolutions replaced"
    );
    assert_eq!(done.fused, fused, "{file}: element-wise nodes fused");
    let scale = plain.iter().fold(0.0f32, |m, v| m.max(v.abs()));
    let d = max_abs_diff(&ours, &plain);
    eprintln!("{file}: max |ours - tract| = {d:.2e} (largest value {scale:.2})");
    assert!(d <= 1e-5 * scale.max(1.0), "{file}: {d}");
    if let Some(want) = want {
        let dr = max_abs_diff(&ours, &want.data);
        let dt = max_abs_diff(&plain, &want.data);
        eprintln!("{file}: max |ours - reference| = {dr:.2e}, |tract - reference| = {dt:.2e}");
        assert!(dr <= 1e-4 * scale.max(1.0), "{file}: {dr}");
    }
}

#[test]
fn yamnet_with_our_depthwise_equals_plain_tract() {
    let fx = root().join("crates/mbt-core/tests/fixtures/yamnet");
    let patches = load_npy(&fx.join("speech.patches.npy"));
    let want = load_npy(&fx.join("speech.features.npy"));
    // Each depthwise convolution: batch normalisation (`Mul`, `Add`) and ReLU fused.
    check_trunk("yamnet.onnx", &patches, Some(&want), 13, 13 * 3);
}

#[test]
fn lite0_112_with_our_depthwise_equals_plain_tract() {
    let fx = root().join("crates/mbt-infer/tests/fixtures/trunks");
    let input = load_npy(&fx.join("lite0_input.npy"));
    let want = load_npy(&fx.join("lite0_features.npy"));
    // Each depthwise convolution: ReLU6 (`Max`, `Min`) fused.
    check_trunk("efficientnet-lite0.onnx", &input, Some(&want), 16, 16 * 2);
}

#[test]
fn lite0_224_with_our_depthwise_equals_plain_tract() {
    let shape = vec![1, 3, 224, 224];
    let input = npy::Array {
        data: values(3 * 224 * 224, 99),
        shape,
    };
    check_trunk("efficientnet-lite0.onnx", &input, None, 16, 16 * 2);
}
