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
//! kernel (`kernel.rs`: stride 2 becomes stride 1 by splitting the input columns into phases)
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
//! ReLU6 is not fused: tract already runs the `max`/`min` after a convolution as one pass of
//! its element-wise kernels over the output, which the convolution has just written (it is in
//! cache), so fusing saves little; see BENCHMARKS.md for the profile.

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
                let mut patch = TypedModelPatch::new(format!("mbt-depthwise {}", node.name));
                let x = patch.tap_model(model, node.inputs[0])?;
                let y = patch.wire_node(&node.name, op, &[x])?;
                patch.shunt_outside(model, id.into(), y[0])?;
                patch.apply(model)?;
                done.replaced += 1;
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
                    isa,
                }));
            }
            (Some(k), Some(b)) => format!("filters {:?}, bias {:?}", k.shape(), b.shape()),
            _ => "filters or bias not constant".to_string(),
        }
    };
    Ok(Err(why))
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
