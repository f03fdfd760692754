//! The pretrained trunks alone (`models/trunks/*.onnx`) on tract before and after our depthwise
//! convolution (`mbt_infer::ops::depthwise`) and on ONNX Runtime: same process, same input,
//! same timing loop, one and two threads (tract's executor, ONNX Runtime's intra-op threads).
//! Prints one Markdown table, ratios against ONNX Runtime and against tract as it was; with
//! `--profile`, tract's time per operator kind (one thread) before and after, and ONNX
//! Runtime's (its own session profiler).
//!
//!     cargo run --release -p mbt-infer --features ort --example trunks -- \
//!         [--runs 30] [--threads 1,2] [--ort-lib PATH] [--profile] [--composed COMPOSED.onnx]
//!         [--parts COMPOSED.onnx] FILE.onnx:N,C,H,W...
//!
//! `bench/trunks.sh` runs it on YAMNet (one 96 x 64 patch) and EfficientNet-Lite0 (112 and
//! 224 px). `--composed` times a composed model whole (one window, batch 1; the batch fixed
//! and symbolic) the same way, tract before / after / ONNX Runtime. `--parts` times the streamed trunk parts of a composed model (`mbt_infer::parts`,
//! what `mbtd` runs on tract) with tract's depthwise convolution and ours, batch symbolic and
//! fixed to 1.

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
    /// Composed model files whose streamed trunk parts (`mbt_infer::parts`) to time.
    parts: Vec<String>,
    /// Composed model files to time whole (one 2 s window, batch 1).
    composed: Vec<String>,
}

fn main() -> std::process::ExitCode {
    match run() {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("trunks: {e:#}\nusage: trunks [--runs 30] [--threads 1,2] [--ort-lib PATH] [--profile] [--composed COMPOSED.onnx] [--parts COMPOSED.onnx] FILE.onnx:N,C,H,W...");
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
        parts: vec![],
        composed: vec![],
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
            "--parts" => o.parts.push(value(&mut args, "--parts")?),
            "--composed" => o.composed.push(value(&mut args, "--composed")?),
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
    if (o.trunks.is_empty() && o.parts.is_empty() && o.composed.is_empty()) || o.runs == 0 {
        return Err(TractError::msg("no trunk given"));
    }
    Ok(o)
}

/// `n` reproducible values in [-1, 1).
fn values(n: usize) -> Vec<f32> {
    let mut s = 12345u32;
    (0..n)
        .map(|_| {
            s = s.wrapping_mul(1664525).wrapping_add(1013904223);
            (s >> 8) as f32 / (1u32 << 24) as f32 * 2.0 - 1.0
        })
        .collect()
}

fn input(shape: &[usize]) -> TractResult<Tensor> {
    Tensor::from_shape(shape, &values(shape.iter().product()))
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

/// The streamed trunk parts of a composed model (what `mbtd` runs on tract: one frame or one
/// patch per run), tract's depthwise convolution against ours, with the batch symbolic (the
/// streaming runner's plans) and fixed to 1.
fn parts(file: &str, runs: usize, threads: &[usize]) -> TractResult<()> {
    use mbt_infer::parts::{PartOptions, Split};
    let err = |e: mbt_infer::InferError| TractError::msg(e.to_string());
    let bytes = std::fs::read(file)?;
    let meta = mbt_infer::read_metadata(&bytes, file).map_err(err)?;
    let vdim = meta.tokenizer.video.token_dim();
    let adim = meta.tokenizer.audio.token_dim();
    let video = input(&[1, vdim])?;
    let audio = input(&[1, adim])?;
    println!("\n### {file}: streamed trunk parts, one row per run\n");
    println!("| part | batch | threads | tract's depthwise ms | ours ms | ours / tract's |");
    println!("|---|---|---:|---:|---:|---:|");
    for batch in [None, Some(1)] {
        let split = |depthwise| {
            Split::from_bytes_with(&bytes, file, vdim, adim, PartOptions { batch, depthwise })
                .map_err(err)
        };
        let (before, after) = (split(false)?, split(true)?);
        for &t in threads {
            set_tract_threads(t).map_err(|e| TractError::msg(e.to_string()))?;
            for (what, x, dim, b, a) in [
                ("video", &video, vdim, &before.video, &after.video),
                ("audio", &audio, adim, &before.audio, &after.audio),
            ] {
                let rows = x.try_as_plain_ram()?;
                let rows = rows.as_slice::<f32>()?;
                let time = |p: &mbt_infer::parts::Part| {
                    median_ms(runs, || p.run_rows(rows, 1, dim).map(|_| ()).map_err(err))
                };
                let (tb, ta) = (time(b)?, time(a)?);
                let n = batch.map_or("N (symbolic)".to_string(), |n| n.to_string());
                println!(
                    "| {what} | {n} | {t} | {tb:.2} | {ta:.2} | {:.2}x |",
                    ta / tb
                );
            }
        }
        set_tract_threads(1).map_err(|e| TractError::msg(e.to_string()))?;
    }
    Ok(())
}

/// A composed model whole (`mbt_infer::Model`, what `mbt bench infer` runs): one window,
/// batch 1, tract with the batch symbolic and fixed before optimisation, each before and after
/// our depthwise convolution, against ONNX Runtime.
fn composed(file: &str, runs: usize, threads: &[usize], lib: Option<&str>) -> TractResult<()> {
    use mbt_infer::Model;
    let err = |e: mbt_infer::InferError| TractError::msg(e.to_string());
    let path = std::path::Path::new(file);
    let load = |fixed: bool, ours: bool| {
        depthwise::set_enabled(ours);
        let m = if fixed {
            Model::load_with_batch(path, "cpu", 1)
        } else {
            Model::load(path, "cpu")
        };
        depthwise::set_enabled(true);
        m.map_err(err)
    };
    let probe = load(true, true)?;
    let (vs, as_) = (probe.video_shape, probe.audio_shape);
    drop(probe);
    let (video, audio) = (values(vs.0 * vs.1), values(as_.0 * as_.1));
    println!("\n### {file}: the composed model, one window, batch 1\n");
    println!("| tract plan | threads | tract before ms | tract after ms | ONNX Runtime ms | after / before | before / ORT | after / ORT | max diff after vs before |");
    println!("|---|---:|---:|---:|---:|---:|---:|---:|---:|");
    for fixed in [true, false] {
        let (before, after) = (load(fixed, false)?, load(fixed, true)?);
        let yb = before.run(1, &video, &audio).map_err(err)?;
        let ya = after.run(1, &video, &audio).map_err(err)?;
        let diff = yb
            .fused
            .iter()
            .chain(&yb.video)
            .chain(&yb.audio)
            .zip(ya.fused.iter().chain(&ya.video).chain(&ya.audio))
            .map(|(a, b)| (a - b).abs())
            .fold(0f32, f32::max);
        // A symbolic-batch plan is several times slower: fewer runs.
        let n = if fixed { runs } else { (runs / 3).max(3) };
        for &t in threads {
            set_tract_threads(t).map_err(|e| TractError::msg(e.to_string()))?;
            let time =
                |m: &Model| median_ms(n, || m.run(1, &video, &audio).map(|_| ()).map_err(err));
            let (tb, ta) = (time(&before)?, time(&after)?);
            let to = match lib {
                Some(lib) => ort_composed_ms(lib, path, &video, &audio, t, runs)?,
                None => f64::NAN,
            };
            let plan = if fixed {
                "batch fixed to 1"
            } else {
                "batch symbolic"
            };
            println!(
                "| {plan} | {t} | {tb:.2} | {ta:.2} | {to:.2} | {:.2}x | {:.2}x | {:.2}x | {diff:.1e} |",
                ta / tb,
                tb / to,
                ta / to
            );
        }
        set_tract_threads(1).map_err(|e| TractError::msg(e.to_string()))?;
    }
    Ok(())
}

#[cfg(feature = "ort")]
fn ort_composed_ms(
    lib: &str,
    path: &std::path::Path,
    video: &[f32],
    audio: &[f32],
    threads: usize,
    runs: usize,
) -> TractResult<f64> {
    let mut m = mbt_infer::onnxruntime::OrtModel::load(path, lib, &["cpu".to_string()], threads)
        .map_err(|e| TractError::msg(e.to_string()))?;
    median_ms(runs, || {
        m.run(1, video, audio)
            .map(|_| ())
            .map_err(|e| TractError::msg(e.to_string()))
    })
}

#[cfg(not(feature = "ort"))]
fn ort_composed_ms(
    _: &str,
    _: &std::path::Path,
    _: &[f32],
    _: &[f32],
    _: usize,
    _: usize,
) -> TractResult<f64> {
    Ok(f64::NAN)
}

fn run() -> TractResult<()> {
    let o = opts()?;
    let lib = o.lib.clone().or_else(reference_library);
    for file in &o.composed {
        composed(file, o.runs, &o.threads, lib.as_deref())?;
    }
    for file in &o.parts {
        parts(file, o.runs, &o.threads)?;
    }
    if o.trunks.is_empty() {
        return Ok(());
    }
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
    if std::env::var_os("MBT_KEEP_ORT_PROFILE").is_some() {
        eprintln!("ONNX Runtime profile kept: {path}");
    } else {
        let _ = std::fs::remove_dir_all(&dir);
    }
    let mut kinds: HashMap<String, (f64, std::collections::HashSet<String>)> = HashMap::new();
    for ev in ort_events(&text) {
        if ev.cat != "Node" || !ev.name.ends_with("_kernel_time") {
            continue;
        }
        let k = kinds.entry(ev.op).or_default();
        k.0 += ev.dur_us;
        k.1.insert(ev.name);
    }
    // The profile covers every run of the session: the 2 warm-up runs too.
    let total_runs = (runs + 2) as f64;
    let mut rows: Vec<_> = kinds
        .into_iter()
        .map(|(k, (us, nodes))| (k, us / 1e3 / total_runs, nodes.len()))
        .collect();
    rows.sort_by(|a, b| b.1.total_cmp(&a.1));
    Ok(rows)
}

/// One event of ONNX Runtime's profile (a Chrome trace: a JSON array of objects, one per line
/// in ONNX Runtime 1.17 to 1.32, `"cat"`, `"dur"` in microseconds, `"name"`, and
/// `"args":{"op_name":...}` for node events).
#[derive(Debug, Default, PartialEq)]
#[cfg_attr(not(feature = "ort"), allow(dead_code))]
struct OrtEvent {
    cat: String,
    name: String,
    op: String,
    dur_us: f64,
}

/// The events of an ONNX Runtime profile, read with string searches (no JSON crate in this
/// crate): each event starts at a `"cat"` key, so the text is cut there whatever the spacing
/// and line breaks, and each field is the first of its name in its event.
#[cfg_attr(not(feature = "ort"), allow(dead_code))]
fn ort_events(text: &str) -> Vec<OrtEvent> {
    let starts: Vec<usize> = text.match_indices("\"cat\"").map(|(i, _)| i).collect();
    let mut events = Vec::with_capacity(starts.len());
    for (i, &at) in starts.iter().enumerate() {
        let ev = &text[at..starts.get(i + 1).copied().unwrap_or(text.len())];
        let field = |key: &str| -> Option<&str> {
            let k = format!("\"{key}\"");
            let rest = &ev[ev.find(&k)? + k.len()..];
            let rest = rest.trim_start_matches([' ', '\t', '\n', '\r']);
            let rest = rest
                .strip_prefix(':')?
                .trim_start_matches([' ', '\t', '\n', '\r']);
            match rest.strip_prefix('"') {
                Some(q) => q.find('"').map(|end| &q[..end]),
                None => rest
                    .find([',', '}', ' ', '\n', '\r'])
                    .map(|end| &rest[..end])
                    .or(Some(rest)),
            }
        };
        events.push(OrtEvent {
            cat: field("cat").unwrap_or_default().to_string(),
            name: field("name").unwrap_or_default().to_string(),
            op: field("op_name").unwrap_or_default().to_string(),
            dur_us: field("dur").and_then(|d| d.parse().ok()).unwrap_or(0.0),
        });
    }
    events
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_onnx_runtimes_profile() {
        // As ONNX Runtime 1.32 writes it (profiler.cc): one event per line.
        let text = r#"[
{"cat" : "Session","pid" :1,"tid" :2,"dur" :1500,"ts" :3,"ph" : "X","name" :"model_run","args" : {}},
{"cat" : "Node","pid" :1,"tid" :2,"dur" :42,"ts" :9,"ph" : "X","name" :"conv1_kernel_time","args" : {"op_name" : "FusedConv","provider" : "CPUExecutionProvider"}},
{"cat":"Node","dur":7,"name":"dw_fence_before","args":{"op_name":"Conv"}}
]"#;
        let ev = ort_events(text);
        assert_eq!(ev.len(), 3);
        assert_eq!(
            ev[1],
            OrtEvent {
                cat: "Node".into(),
                name: "conv1_kernel_time".into(),
                op: "FusedConv".into(),
                dur_us: 42.0,
            }
        );
        assert_eq!(
            (ev[0].cat.as_str(), ev[0].dur_us, ev[0].op.as_str()),
            ("Session", 1500.0, "")
        );
        assert_eq!(
            (ev[2].name.as_str(), ev[2].dur_us),
            ("dw_fence_before", 7.0)
        );
    }
}
