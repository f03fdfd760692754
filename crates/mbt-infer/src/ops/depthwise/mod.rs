//! A vectorised depthwise convolution for tract, and the rewrite that puts it in a model.
//!
//! Both trunks are MobileNet-family networks (YAMNet: MobileNet v1; EfficientNet-Lite0:
//! inverted residual blocks), so a good part of their time is depthwise 3 x 3 / 5 x 5
//! convolutions at stride 1 and 2 with SAME padding. tract 0.23.9's own operator
//! (`tract_core::ops::cnn::conv::DepthWise`) walks the output zone by zone; its vector kernel
//! (plain AVX multiply + add on x86, no FMA) only takes rows read with stride 1, so every
//! stride-2 convolution runs its scalar loop, and it needs every dimension concrete: with a
//! symbolic batch a depthwise convolution is planned through im2col and a matrix product.
//!
//! [`MbtDepthwiseConv`] (one operator, `op.rs`) computes a plane per channel with a tap-sum
//! kernel (`kernel.rs`: the plane padded and split by the stride into phases, one call per plane)
//! for x86_64 AVX2 + FMA (`x86.rs`, detected at run time), aarch64 NEON (`neon.rs`) and plain
//! Rust elsewhere. It takes f32 `[N, C, H, W]` (or `[C, H, W]`: tract drops a batch axis
//! fixed to 1), any kernel size, stride and zero padding, and
//! finds the batch and image size at run time.
//!
//! # How it replaces tract's operator: a rewrite of the decluttered typed model
//!
//! [`rewrite`] runs on the typed model after tract's decluttering and before
//! `into_optimized` (tract's codegen), and swaps each depthwise `Conv` it covers for
//! [`MbtDepthwiseConv`]. Chosen over tract-onnx's operator registry because:
//!
//! * after decluttering, tract has already folded what it folds into a convolution (a `Pad`
//!   before it into its padding, a following `Add`/`Mul` by constants into its bias and
//!   filters), so the operator sees the convolution tract would have run, with constant
//!   filters, and nothing of ONNX's attribute parsing is re-implemented;
//! * it leaves every other convolution, and every depthwise one it does not cover, to tract's
//!   own codegen unchanged: the fallback is tract's operator by construction;
//! * the same pass serves every model we load (the trunks alone, the composed `edge.onnx`, the
//!   streamed part plans), whatever runtime front end built it, and it can be switched off at
//!   run time ([`set_enabled`], `MBT_DEPTHWISE=tract`) to measure before and after in one
//!   process. A registry replacement would be fixed when the ONNX parser is built, and would
//!   have to handle every `Conv` (grouped, quantized, 1-D, 3-D) to replace just one kind.
//!
//! A depthwise convolution the operator does not cover (quantized, not f32, not NCHW, not 2-D,
//! dilated, filters or bias not constant) stays tract's, and each distinct reason is logged
//! once per process (`tracing` warning): never a wrong result, and never silent.
//!
//! # Fused epilogue
//!
//! What follows a depthwise convolution in the trunks is element-wise: in YAMNet a batch
//! normalisation tract leaves as a per-channel `Mul` and `Add`, then a ReLU (`Max` 0); in
//! EfficientNet-Lite0 a ReLU6 (`Max` 0, `Min` 6). tract fuses such nodes into its matrix
//! products' kernels but not into its depthwise operator: it runs them as one more pass over
//! the convolution's whole output (`OptBinChain`). The rewrite folds them into
//! [`MbtDepthwiseConv`] (`Mul` into the filters and bias, `Add` into the bias, `Max`/`Min` into
//! a clamp applied as each output row is written, while it is in L1 cache), as long as each is
//! the convolution's (or the previous folded node's) only consumer and takes constants of the
//! right shape; anything else stops the folding and stays a node of its own. Scaling the
//! filters rounds differently from scaling the sum: a few ulp. BENCHMARKS.md has the profile
//! before and after.

mod kernel;
#[cfg(target_arch = "aarch64")]
mod neon;
mod op;
#[cfg(target_arch = "x86_64")]
mod x86;

use std::collections::HashSet;
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::{Arc, Mutex};

use tract_onnx::tract_core::internal::*;
use tract_onnx::tract_core::ops::binary::TypedBinOp;
use tract_onnx::tract_core::ops::cnn::conv::{Conv, KernelFormat};
use tract_onnx::tract_core::ops::cnn::PaddingSpec;
use tract_onnx::tract_core::ops::nn::DataFormat;

pub use kernel::Isa;
pub use op::MbtDepthwiseConv;

/// What [`rewrite`] did to a model.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Rewritten {
    /// Depthwise convolutions now run by [`MbtDepthwiseConv`].
    pub replaced: usize,
    /// Depthwise convolutions left to tract: `(node name, why)`.
    pub kept: Vec<(String, String)>,
    /// Element-wise nodes after a replaced convolution folded into it: a per-channel `Mul`
    /// or `Add` by a constant (YAMNet's batch normalisation) and the `Max` / `Min` by a
    /// constant of a ReLU or ReLU6.
    pub fused: usize,
}

/// 0: not decided yet (read `MBT_DEPTHWISE` on first use), 1: on, 2: off.
static ENABLED: AtomicU8 = AtomicU8::new(0);

/// Whether models loaded from now on get [`MbtDepthwiseConv`] (process-wide). On by default;
/// `MBT_DEPTHWISE=tract` in the environment turns it off (to compare with tract's own).
pub fn enabled() -> bool {
    match ENABLED.load(Ordering::Relaxed) {
        1 => true,
        2 => false,
        _ => {
            let on = std::env::var("MBT_DEPTHWISE").map_or(true, |v| v != "tract");
            ENABLED.store(if on { 1 } else { 2 }, Ordering::Relaxed);
            on
        }
    }
}

/// Sets [`enabled`] for models loaded from now on (overrides `MBT_DEPTHWISE`).
pub fn set_enabled(on: bool) {
    ENABLED.store(if on { 1 } else { 2 }, Ordering::Relaxed);
}

/// Swaps every depthwise convolution of `model` that [`MbtDepthwiseConv`] covers for it, with
/// the kernel this CPU runs best. Run it on a decluttered model, before `into_optimized`.
pub fn rewrite(model: &mut TypedModel) -> TractResult<Rewritten> {
    rewrite_with(model, Isa::detect())
}

/// [`rewrite`] with a chosen kernel (tests compare each one with tract).
pub fn rewrite_with(model: &mut TypedModel, isa: Isa) -> TractResult<Rewritten> {
    let mut done = Rewritten::default();
    for id in model.eval_order()? {
        let node = model.node(id);
        let Some(conv) = node.op_as::<Conv>() else {
            continue;
        };
        let c = conv.input_channels();
        if !(conv.group > 1 && conv.group == c && conv.output_channels() == c) {
            continue;
        }
        match covered(model, node, conv, isa)? {
            Ok(op) => {
                let (op, tail, fused) = fold_epilogue(model, id, op)?;
                let mut patch = TypedModelPatch::new(format!("mbt-depthwise {}", node.name));
                let x = patch.tap_model(model, node.inputs[0])?;
                let y = patch.wire_node(&node.name, op, &[x])?;
                patch.shunt_outside(model, tail, y[0])?;
                patch.apply(model)?;
                done.replaced += 1;
                done.fused += fused;
            }
            Err(why) => {
                log_once(&why);
                done.kept.push((node.name.clone(), why));
            }
        }
    }
    model.compact()?;
    Ok(done)
}

/// The operator for this depthwise convolution, or why it stays tract's.
fn covered(
    model: &TypedModel,
    node: &TypedNode,
    conv: &Conv,
    isa: Isa,
) -> TractResult<Result<MbtDepthwiseConv, String>> {
    let spec = &conv.pool_spec;
    let x = model.outlet_fact(node.inputs[0])?;
    let why = if conv.q_params.is_some() {
        "quantized".to_string()
    } else if x.datum_type != f32::datum_type() {
        format!("{:?} data (f32 only)", x.datum_type)
    } else if !matches!(
        (spec.data_format, x.rank()),
        (DataFormat::NCHW, 4) | (DataFormat::CHW, 3)
    ) {
        format!(
            "{:?} rank {} (NCHW or CHW 2-D only)",
            spec.data_format,
            x.rank()
        )
    } else if spec.kernel_shape.len() != 2 {
        format!("{}-D kernel (2-D only)", spec.kernel_shape.len())
    } else if spec.dilations().iter().any(|&d| d != 1) {
        format!("dilations {:?}", spec.dilations())
    } else if matches!(spec.padding, PaddingSpec::ExplicitOnnxPool(..)) {
        "pool-style padding".to_string()
    } else if conv.kernel_fmt != KernelFormat::OIHW {
        format!("{:?} filters (OIHW only)", conv.kernel_fmt)
    } else if node.inputs.len() != 3 {
        format!("{} inputs", node.inputs.len())
    } else {
        let k = model.outlet_fact(node.inputs[1])?.konst.clone();
        let b = model.outlet_fact(node.inputs[2])?.konst.clone();
        let c = conv.input_channels();
        let (kh, kw) = (spec.kernel_shape[0], spec.kernel_shape[1]);
        match (k, b) {
            (Some(k), Some(b)) if k.shape() == [c, 1, kh, kw] && [1, c].contains(&b.len()) => {
                let kernel = k.cast_to::<f32>()?.into_owned().into_shape(&[c, kh * kw])?;
                let b = b.cast_to::<f32>()?;
                let b = b.try_as_plain_ram()?;
                let b = b.as_slice::<f32>()?;
                let bias: Vec<f32> = (0..c)
                    .map(|i| b[if b.len() == 1 { 0 } else { i }])
                    .collect();
                return Ok(Ok(MbtDepthwiseConv {
                    pool_spec: spec.clone(),
                    kernel: Arc::new(kernel),
                    bias: Arc::new(Tensor::from_shape(&[c], &bias)?),
                    clamp: None,
                    isa,
                }));
            }
            (Some(k), Some(b)) => format!("filters {:?}, bias {:?}", k.shape(), b.shape()),
            _ => "filters or bias not constant".to_string(),
        }
    };
    Ok(Err(why))
}

/// Folds the element-wise nodes that follow the convolution `conv` into `op`, as long as each
/// is the only consumer of the one before and takes a constant: `Mul` by per-channel values
/// (into the filters and bias), `Add` of per-channel values (into the bias), then `Max` and
/// `Min` by one value for all channels (a clamp, applied as each output row is written).
/// Returns the operator, the outlet it replaces (the last folded node's) and how many nodes
/// it folded. tract runs such a chain as a separate pass over the convolution's output
/// (`OptBinChain`), and does not fold it into its own depthwise operator.
fn fold_epilogue(
    model: &TypedModel,
    conv: usize,
    mut op: MbtDepthwiseConv,
) -> TractResult<(MbtDepthwiseConv, OutletId, usize)> {
    let c = op.pool_spec.input_channels;
    let mut tail = OutletId::new(conv, 0);
    let mut folded = 0;
    let (mut lo, mut hi) = (f32::NEG_INFINITY, f32::INFINITY);
    let mut clamped = false;
    loop {
        if model.output_outlets()?.contains(&tail) {
            break;
        }
        let succ = &model.node(tail.node).outputs[tail.slot].successors;
        if succ.len() != 1 {
            break;
        }
        let next = model.node(succ[0].node);
        let Some(bin) = next.op_as::<TypedBinOp>() else {
            break;
        };
        if next.inputs.len() != 2 || next.outputs.len() != 1 {
            break;
        }
        let rank = model.outlet_fact(tail)?.rank();
        let other = next.inputs[1 - succ[0].slot];
        let fact = model.outlet_fact(other)?;
        let out = model.outlet_fact(OutletId::new(next.id, 0))?;
        if out.datum_type != f32::datum_type() || out.rank() != rank {
            break;
        }
        let Some(values) = per_channel(fact, rank, c)? else {
            break;
        };
        let uniform = values.iter().all(|v| v.to_bits() == values[0].to_bits());
        match bin.0.name() {
            "Mul" if !clamped => op = op.scaled(&values)?,
            "Add" if !clamped => op = op.shifted(&values)?,
            // `Max` then `Min` make one clamp; a `Max` after a `Min` would not.
            "Max" if uniform && hi == f32::INFINITY => {
                lo = lo.max(values[0]);
                clamped = true;
            }
            "Min" if uniform => {
                hi = hi.min(values[0]);
                clamped = true;
            }
            _ => break,
        }
        folded += 1;
        tail = OutletId::new(next.id, 0);
    }
    if clamped {
        op.clamp = Some((lo, hi));
    }
    Ok((op, tail, folded))
}

/// The values of a constant operand `fact` of an element-wise node over the convolution's
/// output (rank `rank`, channels on axis `rank - 3`), one per channel, when it broadcasts
/// along every other axis (a shape of ones but for the channel axis, `c` or 1 there).
fn per_channel(fact: &TypedFact, rank: usize, c: usize) -> TractResult<Option<Vec<f32>>> {
    let Some(k) = &fact.konst else {
        return Ok(None);
    };
    if k.datum_type() != f32::datum_type() || k.rank() > rank {
        return Ok(None);
    }
    // Right-aligned against the output's axes; the channel axis is third from the end.
    let shape = k.shape();
    let ch = k.rank().checked_sub(3);
    for (i, &d) in shape.iter().enumerate() {
        if d != 1 && Some(i) != ch {
            return Ok(None);
        }
    }
    let view = k.try_as_plain_ram()?;
    let v = view.as_slice::<f32>()?;
    Ok(match v.len() {
        1 => Some(vec![v[0]; c]),
        n if n == c => Some(v.to_vec()),
        _ => None,
    })
}

/// Warns once per process for each reason a depthwise convolution stays tract's.
fn log_once(why: &str) {
    static SEEN: Mutex<Option<HashSet<String>>> = Mutex::new(None);
    let Ok(mut seen) = SEEN.lock() else {
        return;
    };
    if seen
        .get_or_insert_with(HashSet::new)
        .insert(why.to_string())
    {
        tracing::warn!("depthwise convolution left to tract's own operator: {why}");
    }
}
