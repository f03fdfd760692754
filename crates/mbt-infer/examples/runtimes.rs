//! tract against ONNX Runtime (the official build, opened at run time) on exported models:
//! same process, same inputs, same timing loop, the same thread count on both (tract's
//! matrix products on a pool of that many threads, ONNX Runtime's `intra_op_num_threads`).
//! Prints a Markdown table: the ratio tract / onnxruntime per model, threads and batch, the
//! largest output difference, and each runtime's load + optimise time.
//!
//!     cargo run --release -p mbt-infer --features ort --example runtimes -- \
//!         [--runs 30] [--warmups 2] [--threads 1,2] [--batches 1,16] [--ort-lib PATH] [--no-ort] [--fixed-batch] MODEL.onnx...
//!
//! `--no-ort` times tract alone (the fusion sweep in `bench/fusion.sh`). `bench/runtimes.sh`
//! exports the model variants and runs this.

use std::time::Instant;

use common::{inputs, median_ms_after};
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
            "--fixed-batch" => o.fixed = true,
            _ => o.models.push(a),
        }
    }
    if o.models.is_empty() {
        return Err("no model given".into());
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
    let tract = Model::load(p, "cpu").map_err(err)?;
    let tract_load = t0.elapsed().as_secs_f64() * 1e3;
    for &threads in &o.threads {
        set_tract_threads(threads).map_err(err)?;
        let t0 = Instant::now();
        let mut ort = if o.ort {
            Some(OrtModel::load(p, &o.lib, &["cpu".into()], threads).map_err(err)?)
        } else {
            None
        };
        let ort_load = t0.elapsed().as_secs_f64() * 1e3;
        for &n in &o.batches {
            let v = inputs(n, tract.video_shape, 1);
            let a = inputs(n, tract.audio_shape, 2);
            // --fixed-batch: tract optimises a plan for exactly this batch size.
            let fixed = if o.fixed {
                Some(Model::load_with_batch(p, "cpu", n).map_err(err)?)
            } else {
                None
            };
            let tract = fixed.as_ref().unwrap_or(&tract);
            let tract_ms = median_ms_after(o.warmups, o.runs, || tract.run(n, &v, &a).map(drop))?;
            let Some(ort) = ort.as_mut() else {
                println!("| {name} | {threads} | {n} | {tract_ms:.2} | | | | {tract_load:.0} | |");
                continue;
            };
            let t = tract.run(n, &v, &a).map_err(err)?;
            let r = ort.run(n, &v, &a).map_err(err)?;
            let diff = t
                .fused
                .iter()
                .chain(&t.video)
                .chain(&t.audio)
                .zip(r.fused.iter().chain(&r.video).chain(&r.audio))
                .map(|(x, y)| (x - y).abs())
                .fold(0f32, f32::max);
            let ort_ms = median_ms_after(o.warmups, o.runs, || ort.run(n, &v, &a).map(drop))?;
            println!(
                "| {name} | {threads} | {n} | {tract_ms:.2} | {ort_ms:.2} | {:.2} | {diff:.1e} | {tract_load:.0} | {ort_load:.0} |",
                tract_ms / ort_ms
            );
        }
    }
    set_tract_threads(1).map_err(err)
}
