//! `MbtDepthwiseConv`: the tract operator the rewrite puts in place of a depthwise `Conv`.

use std::sync::Arc;

use tract_onnx::prelude::tract_linalg;
use tract_onnx::tract_core::internal::*;
use tract_onnx::tract_core::ops::cnn::PoolSpec;

use super::kernel::{self, Geometry, Isa, Scratch};

/// A depthwise 2-D convolution over `[N, C, H, W]` (or `[C, H, W]`) f32 (one `kh x kw` filter per channel, no
/// dilation), with its filters and bias held by the operator.
///
/// The geometry is worked out from the input at each run, so a symbolic batch (or image size)
/// needs no re-planning; tract's own depthwise operator needs every dimension concrete, and a
/// symbolic-batch plan otherwise runs depthwise convolutions through im2col.
#[derive(Debug, Clone, PartialEq)]
pub struct MbtDepthwiseConv {
    /// tract's description of the window: NCHW, kernel, strides, padding. Kept as tract's own
    /// type so output sizes and SAME padding are computed by tract's rules, not re-derived.
    pub(crate) pool_spec: PoolSpec,
    /// `[C, kh * kw]`, row-major taps per channel.
    pub(crate) kernel: Arc<Tensor>,
    /// `[C]`.
    pub(crate) bias: Arc<Tensor>,
    /// `(lo, hi)` bounds on every output: a ReLU (`Max` 0) or ReLU6 (`Max` 0, `Min` 6) that
    /// followed the convolution, fused by the rewrite; `None` for none.
    pub(crate) clamp: Option<(f32, f32)>,
    pub(crate) isa: Isa,
}

// Equality is what tract's model comparisons need; the filters compare bit for bit.
impl Eq for MbtDepthwiseConv {}

impl MbtDepthwiseConv {
    fn channels(&self) -> usize {
        self.pool_spec.input_channels
    }

    /// This convolution followed by a multiplication by `s[c]` on channel `c`: the filters and
    /// bias scaled.
    pub(crate) fn scaled(mut self, s: &[f32]) -> TractResult<Self> {
        let c = self.channels();
        ensure!(s.len() == c);
        let mut kernel = (*self.kernel).clone();
        let mut bias = (*self.bias).clone();
        let taps = kernel.len() / c.max(1);
        {
            let mut k = kernel.try_as_plain_ram_mut()?;
            for (row, &s) in k.as_slice_mut::<f32>()?.chunks_mut(taps).zip(s) {
                row.iter_mut().for_each(|v| *v *= s);
            }
            let mut b = bias.try_as_plain_ram_mut()?;
            b.as_slice_mut::<f32>()?
                .iter_mut()
                .zip(s)
                .for_each(|(v, s)| *v *= s);
        }
        self.kernel = Arc::new(kernel);
        self.bias = Arc::new(bias);
        Ok(self)
    }

    /// This convolution followed by an addition of `a[c]` on channel `c`: the bias shifted.
    pub(crate) fn shifted(mut self, a: &[f32]) -> TractResult<Self> {
        ensure!(a.len() == self.channels());
        let mut bias = (*self.bias).clone();
        {
            let mut b = bias.try_as_plain_ram_mut()?;
            b.as_slice_mut::<f32>()?
                .iter_mut()
                .zip(a)
                .for_each(|(v, a)| *v += a);
        }
        self.bias = Arc::new(bias);
        Ok(self)
    }

    fn geometry(&self, h: usize, w: usize) -> TractResult<Geometry> {
        let pads = self.pool_spec.computed_padding(&[h, w]);
        let (kh, kw) = (
            self.pool_spec.kernel_shape[0],
            self.pool_spec.kernel_shape[1],
        );
        Ok(Geometry {
            h,
            w,
            kh,
            kw,
            sh: self.pool_spec.stride(0),
            sw: self.pool_spec.stride(1),
            pad_top: pads[0].pad_before,
            pad_left: pads[1].pad_before,
            oh: pads[0].convoluted,
            ow: pads[1].convoluted,
        })
    }
}

impl Op for MbtDepthwiseConv {
    fn name(&self) -> StaticName {
        "MbtDepthwiseConv".into()
    }

    fn info(&self) -> TractResult<Vec<String>> {
        let mut info = self.pool_spec.info();
        info.push(format!("kernel: {}", self.isa.name()));
        if let Some((lo, hi)) = self.clamp {
            info.push(format!("clamp: [{lo}, {hi}]"));
        }
        Ok(info)
    }

    fn validation(&self) -> Validation {
        // Fused multiply-add rounds differently from tract's multiply-then-add.
        Validation::Rounding
    }

    op_as_typed_op!();
}

impl EvalOp for MbtDepthwiseConv {
    op_out_of_plan!();

    fn eval(&self, _ctx: &EvalContext, inputs: TVec<TValue>) -> TractResult<TVec<TValue>> {
        let input = args_1!(inputs);
        ensure!(
            input.datum_type() == f32::datum_type(),
            "MbtDepthwiseConv takes f32, got {:?}",
            input.datum_type()
        );
        // tract declutters a batch axis fixed to 1 away: `[C, H, W]` (format CHW) is one image.
        let (n, c, h, w) = match *input.shape() {
            [n, c, h, w] => (n, c, h, w),
            [c, h, w] => (1, c, h, w),
            _ => bail!(
                "MbtDepthwiseConv takes [N, C, H, W] or [C, H, W], got {:?}",
                input.shape()
            ),
        };
        ensure!(
            c == self.channels(),
            "MbtDepthwiseConv has {} channels, the input {c}",
            self.channels()
        );
        let g = self.geometry(h, w)?;
        let view = input.try_as_plain_ram()?;
        let x = view.as_slice::<f32>()?;
        let kernel = self.kernel.try_as_plain_ram()?;
        let kernel = kernel.as_slice::<f32>()?;
        let bias = self.bias.try_as_plain_ram()?;
        let bias = bias.as_slice::<f32>()?;
        let taps = g.kh * g.kw;
        let (plane_in, plane_out) = (h * w, g.oh * g.ow);
        let shape: TVec<usize> = if input.rank() == 4 {
            tvec!(n, c, g.oh, g.ow)
        } else {
            tvec!(c, g.oh, g.ow)
        };
        let mut output = Tensor::zero::<f32>(&shape)?;
        if plane_out == 0 || n * c == 0 {
            return Ok(tvec!(output.into_tvalue()));
        }
        {
            let mut out_view = output.try_as_plain_ram_mut()?;
            let out = out_view.as_slice_mut::<f32>()?;
            // Planes are independent: tract's executor (`set_tract_threads`) splits them over
            // its threads, whole planes per chunk, so results do not depend on the thread count.
            tract_linalg::multithread::par_chunks_mut(
                out,
                plane_out,
                out_len_work(n * c * plane_out, taps),
                |first, chunk| {
                    let mut scratch = Scratch::default();
                    for (ix, plane) in chunk.chunks_mut(plane_out).enumerate() {
                        let p = first + ix;
                        let ch = p % c;
                        kernel::plane(
                            self.isa,
                            &g,
                            &x[p * plane_in..(p + 1) * plane_in],
                            &kernel[ch * taps..(ch + 1) * taps],
                            bias[ch],
                            self.clamp,
                            plane,
                            &mut scratch,
                        );
                    }
                    Ok(())
                },
            )?;
        }
        Ok(tvec!(output.into_tvalue()))
    }
}

/// The work measure `par_chunks_mut` compares with its threading threshold: multiply-adds.
fn out_len_work(outputs: usize, taps: usize) -> usize {
    outputs.saturating_mul(taps)
}

impl TypedOp for MbtDepthwiseConv {
    fn output_facts(&self, inputs: &[&TypedFact]) -> TractResult<TVec<TypedFact>> {
        ensure!(inputs.len() == 1, "MbtDepthwiseConv takes one input");
        ensure!(inputs[0].datum_type == f32::datum_type());
        ensure!(
            [3, 4].contains(&inputs[0].rank()),
            "MbtDepthwiseConv takes [N, C, H, W] or [C, H, W]"
        );
        let shape = self.pool_spec.output_shape(&inputs[0].shape)?;
        Ok(tvec!(f32::fact(&*shape.shape)))
    }

    fn cost(&self, inputs: &[&TypedFact]) -> TractResult<TVec<(Cost, TDim)>> {
        let out = self.pool_spec.output_shape(&inputs[0].shape)?;
        let taps: usize = self.pool_spec.kernel_shape.iter().product();
        let points: TDim = out.shape.iter().product();
        Ok(tvec!((Cost::FMA(f32::datum_type()), points * taps)))
    }

    as_op!();
}
