//! tract against ONNX Runtime (the official build, opened at run time) on exported models:
//! same process, same inputs, same timing loop, the same thread count on both (tract's
//! matrix products on a pool of that many threads, ONNX Runtime's `intra_op_num_threads`).
//! Prints a Markdown table: the ratio tract / onnxruntime per model, threads and batch, the
//! largest output difference, and each runtime's load + optimise time.
//!
//!     cargo run --release -p mbt-infer --features ort --example runtimes -- \
//!         [--runs 30] [--warmups 2] [--threads 1,2] [--batches 1,16] [--ort-lib PATH]
//!         [--no-ort | --no-tract] [--fixed-batch] MODEL.onnx...
//!
//! `--no-ort` times tract alone (the fusion sweep in `bench/fusion.sh`); `--no-tract` times
//! ONNX Runtime alone (vit-b-paper int8, where one tract inference takes about half an hour
//! on x86). `bench/runtimes.sh` exports the model variants and runs this.

use std::time::Instant;

use common::{inputs, max_abs_diff, median_ms_after};
use mbt_infer::onnxruntime::{default_library, OrtModel};
use mbt_infer::{set_tract_threads, Model};

mod common;

struct Opts {
    runs: usize,
    warmups: usize,
    threads: Vec<usize>,
    batches: Vec<usize>,
    lib: String,
    ort: bool,
    tract: bool,
    fixed: bool,
    models: Vec<String>,
}

fn list(s: Option<String>) -> Option<Vec<usize>> {
    let v: Option<Vec<usize>> = s?.split(',').map(|x| x.parse().ok()).collect();
    v.filter(|v| !v.is_empty() && v.iter().all(|&n| n > 0))
}

fn parse() -> Result<Opts, String> {
    let mut o = Opts {
        runs: 30,
        warmups: 2,
        threads: vec![1],
        batches: vec![1, 16],
        lib: default_library(),
        ort: true,
        tract: true,
        fixed: false,
        models: Vec::new(),
    };
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        match a.as_str() {
            "--runs" => {
                o.runs = args
                    .next()
                    .and_then(|s| s.parse().ok())
                    .ok_or("--runs takes a positive number")?
            }
            "--warmups" => {
                o.warmups = args
                    .next()
                    .and_then(|s| s.parse().ok())
                    .ok_or("--warmups takes a number")?
            }
            "--threads" => o.threads = list(args.next()).ok_or("--threads takes e.g. 1,2")?,
            "--batches" => o.batches = list(args.next()).ok_or("--batches takes e.g. 1,16")?,
            "--ort-lib" => o.lib = args.next().ok_or("--ort-lib takes a path")?,
            "--no-ort" => o.ort = false,
            "--no-tract" => o.tract = false,
            "--fixed-batch" => o.fixed = true,
            _ => o.models.push(a),
        }
    }
    if o.models.is_empty() {
        return Err("no model given".into());
    }
    if !o.ort && !o.tract {
        return Err("--no-ort and --no-tract leave nothing to time".into());
    }
    Ok(o)
}

fn main() -> std::process::ExitCode {
    let o = match parse() {
        Ok(o) => o,
        Err(e) => {
            eprintln!("runtimes: {e}\nusage: runtimes [--runs N] [--warmups N] [--threads 1,2] [--batches 1,16] [--ort-lib PATH] [--no-ort] MODEL.onnx...");
            return std::process::ExitCode::from(2);
        }
    };
    println!("| model | threads | batch | tract ms | onnxruntime ms | tract / ort | max abs diff | load tract ms | load ort ms |");
    println!("|---|---:|---:|---:|---:|---:|---:|---:|---:|");
    for m in &o.models {
        if let Err(e) = compare(m, &o) {
            eprintln!("runtimes: {m}: {e}");
            return std::process::ExitCode::FAILURE;
        }
    }
    std::process::ExitCode::SUCCESS
}

fn compare(path: &str, o: &Opts) -> Result<(), String> {
    let p = std::path::Path::new(path);
    let name = p
        .file_name()
        .map(|f| f.to_string_lossy().into_owned())
        .unwrap_or_default();
    let err = |e: mbt_infer::InferError| e.to_string();
    set_tract_threads(1).map_err(err)?;
    let t0 = Instant::now();
    let tract = if o.tract {
        Some(Model::load(p, "cpu").map_err(err)?)
    } else {
        None
    };
    let tract_load = t0.elapsed().as_secs_f64() * 1e3;
    let show = |ms: Option<f64>| ms.map(|v| format!("{v:.2}")).unwrap_or_default();
    let load = |ms: f64, on: bool| {
        if on {
            format!("{ms:.0}")
        } else {
            String::new()
        }
    };
    for &threads in &o.threads {
        set_tract_threads(threads).map_err(err)?;
        let t0 = Instant::now();
        let mut ort = if o.ort {
            Some(OrtModel::load(p, &o.lib, &["cpu".into()], threads).map_err(err)?)
        } else {
            None
        };
        let ort_load = t0.elapsed().as_secs_f64() * 1e3;
        let (video_shape, audio_shape) = match (&tract, &ort) {
            (Some(t), _) => (t.video_shape, t.audio_shape),
            (None, Some(r)) => (r.video_shape, r.audio_shape),
            (None, None) => return Err("nothing to time".into()),
        };
        for &n in &o.batches {
            let v = inputs(n, video_shape, 1);
            let a = inputs(n, audio_shape, 2);
            // --fixed-batch: tract optimises a plan for exactly this batch size.
            let fixed = match (&tract, o.fixed) {
                (Some(_), true) => Some(Model::load_with_batch(p, "cpu", n).map_err(err)?),
                _ => None,
            };
            let tract = fixed.as_ref().or(tract.as_ref());
            let tract_ms = match tract {
                Some(t) => Some(median_ms_after(o.warmups, o.runs, || {
                    t.run(n, &v, &a).map(drop)
                })?),
                None => None,
            };
            let ort_ms = match ort.as_mut() {
                Some(r) => Some(median_ms_after(o.warmups, o.runs, || {
                    r.run(n, &v, &a).map(drop)
                })?),
                None => None,
            };
            let (ratio, diff) = match (tract, ort.as_mut(), tract_ms, ort_ms) {
                (Some(t), Some(r), Some(tm), Some(om)) => {
                    let t = t.run(n, &v, &a).map_err(err)?;
                    let r = r.run(n, &v, &a).map_err(err)?;
                    let diff = max_abs_diff(&t, &r);
                    (format!("{:.2}", tm / om), format!("{diff:.1e}"))
                }
                _ => (String::new(), String::new()),
            };
            println!(
                "| {name} | {threads} | {n} | {} | {} | {ratio} | {diff} | {} | {} |",
                show(tract_ms),
                show(ort_ms),
                load(tract_load, o.tract),
                load(ort_load, o.ort),
            );
        }
    }
    set_tract_threads(1).map_err(err)
}
