//! Weight-only int8 for a trunk (issue 32, item 4: what tract does with it). Writes a copy of
//! an ONNX file whose every `Conv` filter initializer is int8, symmetric, one scale per output
//! channel, behind a `DequantizeLinear` (axis 0), then compares it with the fp32 file: file
//! size, load + optimise time, run time and output difference on tract (with our depthwise
//! convolution, `mbt_infer::ops::depthwise`) and on ONNX Runtime, one thread.
//!
//!     cargo build --release --workspace --locked --example weights_int8
//!     weights_int8 [--runs 30] [--ort-lib PATH] [--out DIR] FILE.onnx:N,C,H,W...
//!
//! The int8 copies go to `--out` (default: the system's temporary directory); nothing under
//! `models/` is replaced.

use std::path::{Path, PathBuf};
use std::time::Instant;

use prost::Message;
use tract_onnx::pb::{
    attribute_proto::AttributeType, tensor_proto::DataType, AttributeProto, ModelProto, NodeProto,
    TensorProto,
};
use tract_onnx::prelude::*;

fn main() -> std::process::ExitCode {
    match run() {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("weights_int8: {e:#}\nusage: weights_int8 [--runs 30] [--ort-lib PATH] [--out DIR] FILE.onnx:N,C,H,W...");
            std::process::ExitCode::FAILURE
        }
    }
}

/// `o`'s value, or an error saying what is missing.
fn need<T>(o: Option<T>, what: &str) -> TractResult<T> {
    o.ok_or_else(|| TractError::msg(what.to_string()))
}

/// The float values of an initializer (`float_data` or little-endian `raw_data`).
fn floats(t: &TensorProto) -> Vec<f32> {
    if !t.float_data.is_empty() {
        return t.float_data.clone();
    }
    t.raw_data
        .chunks_exact(4)
        .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        .collect()
}

/// The file with its `Conv` filters int8 (per output channel, symmetric, zero point 0) behind
/// `DequantizeLinear`; returns the model and how many filters and values it quantised.
fn quantise(model: &ModelProto) -> TractResult<(ModelProto, usize, usize)> {
    let mut m = model.clone();
    let g = need(m.graph.as_mut(), "no graph")?;
    let filters: std::collections::HashSet<String> = g
        .node
        .iter()
        .filter(|n| n.op_type == "Conv")
        .filter_map(|n| n.input.get(1).cloned())
        .collect();
    let (mut count, mut values) = (0, 0);
    let mut dq = vec![];
    for t in g.initializer.iter_mut() {
        if !filters.contains(&t.name) || t.data_type != DataType::Float as i32 || t.dims.len() < 2 {
            continue;
        }
        let w = floats(t);
        let co = t.dims[0] as usize;
        let per = w.len() / co.max(1);
        let mut scales = Vec::with_capacity(co);
        let mut q = Vec::with_capacity(w.len());
        for row in w.chunks(per) {
            let amax = row.iter().fold(0f32, |m, v| m.max(v.abs()));
            let s = if amax > 0.0 { amax / 127.0 } else { 1.0 };
            scales.push(s);
            q.extend(
                row.iter()
                    .map(|v| (v / s).round().clamp(-127.0, 127.0) as i8 as u8),
            );
        }
        let name = t.name.clone();
        let q_name = format!("{name}.int8");
        let s_name = format!("{name}.scale");
        dq.push((
            TensorProto {
                name: s_name.clone(),
                dims: vec![co as i64],
                data_type: DataType::Float as i32,
                float_data: scales,
                ..Default::default()
            },
            NodeProto {
                name: format!("{name}.dequantize"),
                op_type: "DequantizeLinear".into(),
                input: vec![q_name.clone(), s_name],
                output: vec![name.clone()],
                attribute: vec![AttributeProto {
                    name: "axis".into(),
                    r#type: AttributeType::Int as i32,
                    i: 0,
                    ..Default::default()
                }],
                ..Default::default()
            },
        ));
        t.name = q_name;
        t.data_type = DataType::Int8 as i32;
        t.float_data.clear();
        t.raw_data = q;
        count += 1;
        values += w.len();
    }
    for (scale, node) in dq.into_iter().rev() {
        g.initializer.push(scale);
        // Before every other node: the graph stays topologically sorted.
        g.node.insert(0, node);
    }
    Ok((m, count, values))
}

fn input(shape: &[usize]) -> TractResult<Tensor> {
    let mut s = 12345u32;
    let v: Vec<f32> = (0..shape.iter().product::<usize>())
        .map(|_| {
            s = s.wrapping_mul(1664525).wrapping_add(1013904223);
            (s >> 8) as f32 / (1u32 << 24) as f32 * 2.0 - 1.0
        })
        .collect();
    Tensor::from_shape(shape, &v)
}

fn median_ms(runs: usize, mut f: impl FnMut() -> TractResult<()>) -> TractResult<f64> {
    for _ in 0..2 {
        f()?;
    }
    let mut t = Vec::with_capacity(runs);
    for _ in 0..runs {
        let t0 = Instant::now();
        f()?;
        t.push(t0.elapsed().as_secs_f64() * 1e3);
    }
    t.sort_by(f64::total_cmp);
    Ok(t[t.len() / 2])
}

/// tract's plan for `file` at `shape` with our depthwise convolution; `(plan, load ms, nodes
/// left that are not constant-folded dequantisations)`.
fn tract_plan(file: &Path, shape: &[usize]) -> TractResult<(Arc<TypedSimplePlan>, f64, usize)> {
    let t0 = Instant::now();
    let mut m = tract_onnx::onnx()
        .model_for_path(file)?
        .with_input_fact(0, f32::fact(shape).into())?
        .into_typed()?
        .into_decluttered()?;
    mbt_infer::ops::depthwise::rewrite(&mut m)?;
    let plan = m.into_optimized()?.into_runnable()?;
    let ms = t0.elapsed().as_secs_f64() * 1e3;
    // A dequantisation left in the plan would run at every inference.
    let dq = plan
        .model()
        .nodes()
        .iter()
        .filter(|n| n.name.contains(".dequantize") && n.op().name() != "Const")
        .count();
    Ok((plan, ms, dq))
}

fn run() -> TractResult<()> {
    let mut runs = 30usize;
    let mut lib: Option<String> = None;
    let mut out = std::env::temp_dir();
    let mut trunks = vec![];
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        match a.as_str() {
            "--runs" => runs = need(args.next(), "--runs N")?.parse()?,
            "--ort-lib" => lib = Some(need(args.next(), "--ort-lib PATH")?),
            "--out" => out = PathBuf::from(need(args.next(), "--out DIR")?),
            spec => {
                let (f, s) = need(spec.split_once(':'), "FILE:N,C,H,W")?;
                let s: Vec<usize> = s.split(',').map(|d| d.parse()).collect::<Result<_, _>>()?;
                trunks.push((PathBuf::from(f), s));
            }
        }
    }
    if trunks.is_empty() {
        return Err(TractError::msg("no trunk given"));
    }
    #[cfg(feature = "ort")]
    let lib = lib.or_else(|| mbt_infer::onnxruntime::reference_library().ok());
    println!("| trunk | input | fp32 MB | int8 MB | filters int8 | tract fp32 ms | tract int8 ms | tract load fp32 / int8 ms | dequantisations left in tract's plan | max diff int8 vs fp32 (largest value) | ORT fp32 ms | ORT int8 ms |");
    println!("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
    for (file, shape) in &trunks {
        let bytes = std::fs::read(file)?;
        let proto = ModelProto::decode(&bytes[..])?;
        let (q, filters, values) = quantise(&proto)?;
        let q_bytes = q.encode_to_vec();
        let stem = file.file_stem().unwrap_or_default().to_string_lossy();
        let q_file = out.join(format!("{stem}.int8-weights.onnx"));
        std::fs::write(&q_file, &q_bytes)?;
        let x = input(shape)?;
        let (pf, lf, _) = tract_plan(file, shape)?;
        let (pq, lq, dq) = tract_plan(&q_file, shape)?;
        let yf = pf.run(tvec!(x.clone().into()))?;
        let yq = pq.run(tvec!(x.clone().into()))?;
        let (yf, yq) = (
            yf[0].to_plain_array_view::<f32>()?.to_owned(),
            yq[0].to_plain_array_view::<f32>()?.to_owned(),
        );
        let scale = yf.iter().fold(0f32, |m, v| m.max(v.abs()));
        let diff = yf
            .iter()
            .zip(yq.iter())
            .map(|(a, b)| (a - b).abs())
            .fold(0f32, f32::max);
        let tf = median_ms(runs, || pf.run(tvec!(x.clone().into())).map(|_| ()))?;
        let tq = median_ms(runs, || pq.run(tvec!(x.clone().into())).map(|_| ()))?;
        let (of, oq) = match &lib {
            Some(lib) => (
                ort_ms(lib, file, &x, runs)?,
                ort_ms(lib, &q_file, &x, runs)?,
            ),
            None => (f64::NAN, f64::NAN),
        };
        println!(
            "| {stem} | {shape:?} | {:.1} | {:.1} | {filters} ({:.2} M values) | {tf:.2} | {tq:.2} | {lf:.0} / {lq:.0} | {dq} | {diff:.2e} ({scale:.2}) | {of:.2} | {oq:.2} |",
            bytes.len() as f64 / 1e6,
            q_bytes.len() as f64 / 1e6,
            values as f64 / 1e6,
        );
    }
    Ok(())
}

#[cfg(feature = "ort")]
fn ort_ms(lib: &str, file: &Path, x: &Tensor, runs: usize) -> TractResult<f64> {
    fn e<E: std::fmt::Display>(e: E) -> TractError {
        TractError::msg(format!("onnxruntime: {e}"))
    }
    let env = mbt_infer::onnxruntime::shared_environment(lib).map_err(TractError::msg)?;
    let mut s = ort::session::Session::builder(&env)
        .map_err(e)?
        .with_intra_threads(1)
        .map_err(e)?
        .with_inter_threads(1)
        .map_err(e)?
        .commit_from_file(file)
        .map_err(e)?;
    let view = x.try_as_plain_ram()?;
    let data = view.as_slice::<f32>()?;
    let shape: Vec<usize> = x.shape().to_vec();
    median_ms(runs, || {
        let v = ort::value::TensorRef::from_array_view((shape.clone(), data)).map_err(e)?;
        s.run(ort::inputs![v]).map_err(e)?;
        Ok(())
    })
}

#[cfg(not(feature = "ort"))]
fn ort_ms(_: &str, _: &Path, _: &Tensor, _: usize) -> TractResult<f64> {
    Ok(f64::NAN)
}
