//! The GPU check (issue: deployment, item 3): one exported model on tract's CPU runtime and on
//! its CUDA runtime, same inputs; prints the largest output difference and the latency of each
//! at batch 1 and 16, as one JSON object.
//!
//!     cargo build --release -p mbt-infer --features cuda --example gpu_check
//!     gpu_check MODEL.onnx [runs]
//!
//! The first CUDA load compiles kernels (about a minute on an H100; cached afterwards): the
//! load time is reported separately so it is not mistaken for a hang.

use std::time::Instant;

use common::{inputs, max_abs_diff, median_ms};
use mbt_infer::Model;

mod common;

fn main() -> std::process::ExitCode {
    let args: Vec<String> = std::env::args().collect();
    let Some(path) = args.get(1) else {
        eprintln!("usage: gpu_check MODEL.onnx [runs]");
        return std::process::ExitCode::from(2);
    };
    let runs: usize = args.get(2).and_then(|s| s.parse().ok()).unwrap_or(20);
    match check(std::path::Path::new(path), runs) {
        Ok(json) => {
            println!("{json}");
            std::process::ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("gpu_check: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}

fn check(path: &std::path::Path, runs: usize) -> Result<String, String> {
    let t0 = Instant::now();
    let cpu = Model::load(path, "cpu").map_err(|e| e.to_string())?;
    let cpu_load = t0.elapsed().as_secs_f64();
    eprintln!("gpu_check: cpu model ready in {cpu_load:.2} s; loading on cuda (the first load compiles kernels)...");
    let t0 = Instant::now();
    let gpu = Model::load(path, "cuda").map_err(|e| e.to_string())?;
    let gpu_load = t0.elapsed().as_secs_f64();
    eprintln!("gpu_check: cuda model ready in {gpu_load:.1} s");
    let mut rows = Vec::new();
    for n in [1usize, 16] {
        let v = inputs(n, cpu.video_shape, 1);
        let a = inputs(n, cpu.audio_shape, 2);
        let c = cpu.run(n, &v, &a).map_err(|e| e.to_string())?;
        let g = gpu.run(n, &v, &a).map_err(|e| e.to_string())?;
        let diff = max_abs_diff(&c, &g);
        let cpu_ms = median_ms(runs, || cpu.run(n, &v, &a).map(drop))?;
        let gpu_ms = median_ms(runs, || gpu.run(n, &v, &a).map(drop))?;
        rows.push(format!(
            "{{\"batch\": {n}, \"max_abs_diff\": {diff:e}, \"cpu_ms\": {cpu_ms:.3}, \"cuda_ms\": {gpu_ms:.3}, \"cpu_over_cuda\": {:.2}}}",
            cpu_ms / gpu_ms
        ));
    }
    Ok(format!(
        "{{\"model\": \"{}\", \"cpu_load_s\": {cpu_load:.3}, \"cuda_load_s\": {gpu_load:.3}, \"runs\": {runs}, \"results\": [{}]}}",
        path.display(),
        rows.join(", ")
    ))
}
