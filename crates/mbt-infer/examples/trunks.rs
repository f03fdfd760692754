//! The pretrained trunks alone (`models/trunks/*.onnx`) on tract before and after our depthwise
//! convolution (`mbt_infer::ops::depthwise`) and on ONNX Runtime: same process, same input,
//! same timing loop, one and two threads (tract's executor, ONNX Runtime's intra-op threads).
//! Prints one Markdown table, ratios against ONNX Runtime and against tract as it was; with
//! `--profile`, tract's time per operator kind (one thread) before and after, and ONNX
//! Runtime's (its own session profiler).
//!
//!     cargo run --release -p mbt-infer --features ort --example trunks -- \
//!         [--runs 30] [--threads 1,2] [--ort-lib PATH] [--profile] FILE.onnx:N,C,H,W...
//!
//! `bench/trunks.sh` runs it on YAMNet (one 96 x 64 patch) and EfficientNet-Lite0 (112 and
//! 224 px).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Instant;

use mbt_infer::ops::depthwise;
use mbt_infer::set_tract_threads;
use tract_onnx::prelude::*;
use tract_onnx::tract_core::plan::{eval, SimpleState};

struct Opts {
    runs: usize,
    threads: Vec<usize>,
    lib: Option<String>,
    profile: bool,
    trunks: Vec<(String, Vec<usize>)>,
}

fn main() -> std::process::ExitCode {
    match run() {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("trunks: {e:#}\nusage: trunks [--runs 30] [--threads 1,2] [--ort-lib PATH] [--profile] FILE.onnx:N,C,H,W...");
            std::process::ExitCode::FAILURE
        }
    }
}

fn opts() -> TractResult<Opts> {
    let mut o = Opts {
        runs: 30,
        threads: vec![1, 2],
        lib: None,
        profile: false,
        trunks: vec![],
    };
    let mut args = std::env::args().skip(1);
    let value = |args: &mut dyn Iterator<Item = String>, flag: &str| {
        args.next()
            .ok_or_else(|| TractError::msg(format!("{flag} takes a value")))
    };
    while let Some(a) = args.next() {
        match a.as_str() {
            "--runs" => o.runs = value(&mut args, "--runs")?.parse()?,
            "--threads" => {
                o.threads = value(&mut args, "--threads")?
                    .split(',')
                    .map(|t| t.parse())
                    .collect::<Result<_, _>>()?
            }
            "--ort-lib" => o.lib = Some(value(&mut args, "--ort-lib")?),
            "--profile" => o.profile = true,
            spec => {
                let (file, shape) = spec
                    .split_once(':')
                    .ok_or_else(|| TractError::msg(format!("`{spec}`: expected FILE:N,C,H,W")))?;
                let shape = shape
                    .split(',')
                    .map(|d| d.parse())
                    .collect::<Result<Vec<usize>, _>>()?;
                o.trunks.push((file.to_string(), shape));
            }
        }
    }
    if o.trunks.is_empty() || o.runs == 0 {
        return Err(TractError::msg("no trunk given"));
    }
    Ok(o)
}

fn input(shape: &[usize]) -> TractResult<Tensor> {
    let n: usize = shape.iter().product();
    let mut s = 12345u32;
    let v: Vec<f32> = (0..n)
        .map(|_| {
            s = s.wrapping_mul(1664525).wrapping_add(1013904223);
            (s >> 8) as f32 / (1u32 << 24) as f32 * 2.0 - 1.0
        })
        .collect();
    Tensor::from_shape(shape, &v)
}

/// The trunk optimised for `shape`, with or without our depthwise operator.
fn plan(file: &str, shape: &[usize], ours: bool) -> TractResult<Arc<TypedSimplePlan>> {
    let mut m = tract_onnx::onnx()
        .model_for_path(file)?
        .with_input_fact(0, f32::fact(shape).into())?
        .into_typed()?
        .into_decluttered()?;
    if ours {
        let done = depthwise::rewrite(&mut m)?;
        eprintln!(
            "{file}: {} depthwise convolutions ours, {} left to tract",
            done.replaced,
            done.kept.len()
        );
    }
    m.into_optimized()?.into_runnable()
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

fn run() -> TractResult<()> {
    let o = opts()?;
    let lib = o.lib.clone().or_else(reference_library);
    println!("| trunk | input | threads | tract before ms | tract after ms | ONNX Runtime ms | after / before | before / ORT | after / ORT | max diff after vs before |");
    println!("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|");
    let mut profiles = vec![];
    for (file, shape) in &o.trunks {
        let x = input(shape)?;
        let before = plan(file, shape, false)?;
        let after = plan(file, shape, true)?;
        let yb = before.run(tvec!(x.clone().into()))?;
        let ya = after.run(tvec!(x.clone().into()))?;
        let (yb, ya) = (
            yb[0].to_plain_array_view::<f32>()?.to_owned(),
            ya[0].to_plain_array_view::<f32>()?.to_owned(),
        );
        let diff = yb
            .iter()
            .zip(ya.iter())
            .map(|(a, b)| (a - b).abs())
            .fold(0f32, f32::max);
        for &t in &o.threads {
            set_tract_threads(t).map_err(|e| TractError::msg(e.to_string()))?;
            let tb = median_ms(o.runs, || before.run(tvec!(x.clone().into())).map(|_| ()))?;
            let ta = median_ms(o.runs, || after.run(tvec!(x.clone().into())).map(|_| ()))?;
            let to = match &lib {
                Some(lib) => ort_ms(lib, file, &x, t, o.runs)?,
                None => f64::NAN,
            };
            let name = std::path::Path::new(file)
                .file_name()
                .map(|f| f.to_string_lossy().into_owned())
                .unwrap_or_default();
            println!(
                "| {name} | {shape:?} | {t} | {tb:.2} | {ta:.2} | {to:.2} | {:.2}x | {:.2}x | {:.2}x | {diff:.1e} |",
                ta / tb,
                tb / to,
                ta / to
            );
        }
        set_tract_threads(1).map_err(|e| TractError::msg(e.to_string()))?;
        if o.profile {
            profiles.push((
                format!("{file} {shape:?}"),
                by_kind(before, &x, o.runs)?,
                by_kind(after, &x, o.runs)?,
                match &lib {
                    Some(lib) => ort_profile(lib, file, &x)?,
                    None => vec![],
                },
            ));
        }
    }
    for (name, before, after, ort) in profiles {
        println!("\n### {name}: time per operator kind, one thread\n");
        for (title, rows) in [
            ("tract before", before),
            ("tract after", after),
            ("ONNX Runtime", ort),
        ] {
            let total: f64 = rows.iter().map(|r| r.1).sum();
            println!("| {title}: op kind | nodes | ms | share |\n|---|---:|---:|---:|");
            for (k, ms, count) in &rows {
                println!("| {k} | {count} | {ms:.3} | {:.1} % |", 100.0 * ms / total);
            }
            println!("| total | | {total:.3} | |\n");
        }
    }
    Ok(())
}

/// tract's time per operator kind, `(kind, ms per run, nodes)`, largest first.
fn by_kind(
    plan: Arc<TypedSimplePlan>,
    x: &Tensor,
    runs: usize,
) -> TractResult<Vec<(String, f64, usize)>> {
    let mut state = SimpleState::new(&plan)?;
    for _ in 0..2 {
        state.run(tvec!(x.clone().into()))?;
    }
    let mut per_node: HashMap<usize, f64> = HashMap::new();
    for _ in 0..runs {
        state.run_plan_with_eval(tvec!(x.clone().into()), |ctx, op_state, node, input| {
            let t = Instant::now();
            let r = eval(ctx, op_state, node, input);
            *per_node.entry(node.id).or_default() += t.elapsed().as_secs_f64();
            r
        })?;
    }
    let mut kinds: HashMap<String, (f64, usize)> = HashMap::new();
    for (&id, &s) in &per_node {
        let k = kinds
            .entry(plan.model().node(id).op().name().to_string())
            .or_default();
        k.0 += s * 1e3 / runs as f64;
        k.1 += 1;
    }
    let mut rows: Vec<_> = kinds.into_iter().map(|(k, (ms, n))| (k, ms, n)).collect();
    rows.sort_by(|a, b| b.1.total_cmp(&a.1));
    Ok(rows)
}

#[cfg(feature = "ort")]
fn e<E: std::fmt::Display>(e: E) -> TractError {
    TractError::msg(format!("onnxruntime: {e}"))
}

#[cfg(feature = "ort")]
fn session(
    lib: &str,
    file: &str,
    threads: usize,
    profile: Option<&str>,
) -> TractResult<ort::session::Session> {
    let env = mbt_infer::onnxruntime::shared_environment(lib).map_err(TractError::msg)?;
    let mut b = ort::session::Session::builder(&env)
        .map_err(e)?
        .with_intra_threads(threads)
        .map_err(e)?
        .with_inter_threads(1)
        .map_err(e)?;
    if let Some(p) = profile {
        b = b.with_profiling(p).map_err(e)?;
    }
    b.commit_from_file(file).map_err(e)
}

#[cfg(feature = "ort")]
fn ort_run(s: &mut ort::session::Session, x: &Tensor) -> TractResult<()> {
    let view = x.try_as_plain_ram()?;
    let data = view.as_slice::<f32>()?;
    let shape: Vec<usize> = x.shape().to_vec();
    let v = ort::value::TensorRef::from_array_view((shape, data)).map_err(e)?;
    s.run(ort::inputs![v]).map_err(e)?;
    Ok(())
}

#[cfg(feature = "ort")]
fn ort_ms(lib: &str, file: &str, x: &Tensor, threads: usize, runs: usize) -> TractResult<f64> {
    let mut s = session(lib, file, threads, None)?;
    median_ms(runs, || ort_run(&mut s, x))
}

/// ONNX Runtime's own profile (one thread), summed by operator kind over 20 runs.
#[cfg(feature = "ort")]
fn ort_profile(lib: &str, file: &str, x: &Tensor) -> TractResult<Vec<(String, f64, usize)>> {
    let dir = std::env::temp_dir().join(format!("mbt-ort-profile-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let prefix = dir.join("trunk");
    let mut s = session(lib, file, 1, Some(&prefix.to_string_lossy()))?;
    for _ in 0..2 {
        ort_run(&mut s, x)?;
    }
    let runs = 20;
    for _ in 0..runs {
        ort_run(&mut s, x)?;
    }
    let path = s.end_profiling().map_err(e)?;
    let text = std::fs::read_to_string(&path)?;
    let _ = std::fs::remove_dir_all(&dir);
    // One JSON object per event; node events carry "cat":"Node", "dur" (us) and
    // "args":{"op_name":...}. Read with string searches: no JSON crate in this one.
    let mut kinds: HashMap<String, (f64, std::collections::HashSet<String>)> = HashMap::new();
    let mut skipped_warmup = 0usize;
    for ev in text
        .split("},{")
        .filter(|e| e.contains("\"cat\" : \"Node\"") || e.contains("\"cat\":\"Node\""))
    {
        let field = |key: &str| -> Option<String> {
            let at = ev.find(&format!("\"{key}\""))?;
            let rest = ev[at + key.len() + 2..].trim_start_matches([' ', ':']);
            let rest = rest.trim_start_matches('"');
            let end = rest.find(['"', ',', '}'])?;
            Some(rest[..end].to_string())
        };
        let (Some(name), Some(dur), Some(op)) = (field("name"), field("dur"), field("op_name"))
        else {
            continue;
        };
        if !name.ends_with("_kernel_time") {
            continue;
        }
        let dur: f64 = dur.parse().unwrap_or(0.0);
        let k = kinds.entry(op).or_default();
        k.0 += dur;
        k.1.insert(name);
        skipped_warmup += 1;
    }
    let total_runs = (runs + 2) as f64;
    let _ = skipped_warmup;
    let mut rows: Vec<_> = kinds
        .into_iter()
        .map(|(k, (us, nodes))| (k, us / 1e3 / total_runs, nodes.len()))
        .collect();
    rows.sort_by(|a, b| b.1.total_cmp(&a.1));
    Ok(rows)
}

#[cfg(feature = "ort")]
fn reference_library() -> Option<String> {
    mbt_infer::onnxruntime::reference_library().ok()
}

#[cfg(not(feature = "ort"))]
fn reference_library() -> Option<String> {
    None
}

#[cfg(not(feature = "ort"))]
fn ort_ms(_: &str, _: &str, _: &Tensor, _: usize, _: usize) -> TractResult<f64> {
    Ok(f64::NAN)
}

#[cfg(not(feature = "ort"))]
fn ort_profile(_: &str, _: &str, _: &Tensor) -> TractResult<Vec<(String, f64, usize)>> {
    Ok(vec![])
}
