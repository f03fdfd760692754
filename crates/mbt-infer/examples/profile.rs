//! Where tract spends its time on an exported model: the graph optimised for one batch size (`--batch`, default 1) the way
//! the CPU runtime does it (`into_optimized`), then run `--runs` times with every node's
//! evaluation timed. Prints the nodes by total time and the time per operator kind, so a
//! change to the exporter's graph formulation can be judged by what it does to each kind
//! (issue: model/export, item 7: "profiling per node").
//!
//!     cargo run --release -p mbt-infer --example profile -- MODEL.onnx [--runs 50] [--top 25] [--batch 1]

use std::collections::HashMap;
use std::time::Instant;

use common::inputs;
use tract_onnx::prelude::*;
use tract_onnx::tract_core::plan::{eval, SimplePlan, SimpleState};

mod common;

fn main() -> std::process::ExitCode {
    match run() {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!(
                "profile: {e:#}\nusage: profile MODEL.onnx [--runs 50] [--top 25] [--batch 1]"
            );
            std::process::ExitCode::FAILURE
        }
    }
}

fn run() -> TractResult<()> {
    let mut args = std::env::args().skip(1);
    let (mut path, mut runs, mut top, mut batch) = (None, 50usize, 25usize, 1usize);
    while let Some(a) = args.next() {
        match a.as_str() {
            "--runs" => {
                runs = args
                    .next()
                    .ok_or_else(|| TractError::msg("--runs takes a number"))?
                    .parse()?
            }
            "--batch" => {
                batch = args
                    .next()
                    .ok_or_else(|| TractError::msg("--batch takes a number"))?
                    .parse()?
            }
            "--top" => {
                top = args
                    .next()
                    .ok_or_else(|| TractError::msg("--top takes a number"))?
                    .parse()?
            }
            _ => path = Some(a),
        }
    }
    let path = path.ok_or_else(|| TractError::msg("no model given"))?;
    let mut typed = tract_onnx::onnx()
        .model_for_path(&path)?
        .into_typed()?
        .into_decluttered()?;
    let n = typed.symbols.sym("N");
    typed = typed.set_symbols(&HashMap::from([(n, TDim::Val(batch as i64))]))?;
    let t0 = Instant::now();
    let optimized = typed.into_optimized()?;
    eprintln!(
        "optimised in {:.0} ms: {} nodes",
        t0.elapsed().as_secs_f64() * 1e3,
        optimized.nodes().len()
    );
    let shapes: Vec<(usize, usize)> = (0..2)
        .map(|i| {
            let f = optimized.input_fact(i)?;
            let d = f
                .shape
                .as_concrete()
                .ok_or_else(|| TractError::msg("input shape not concrete"))?;
            Ok((d[1], d[2]))
        })
        .collect::<TractResult<_>>()?;
    let feed = || -> TractResult<TVec<TValue>> {
        Ok(tvec![
            tensor1(&inputs(batch, shapes[0], 1))
                .into_shape(&[batch, shapes[0].0, shapes[0].1])?
                .into(),
            tensor1(&inputs(batch, shapes[1], 2))
                .into_shape(&[batch, shapes[1].0, shapes[1].1])?
                .into(),
        ])
    };
    let plan = SimplePlan::new(optimized)?;
    let mut state = SimpleState::new(&plan)?;
    for _ in 0..2 {
        state.run(feed()?)?;
    }
    let mut per_node: HashMap<usize, f64> = HashMap::new();
    let t0 = Instant::now();
    for _ in 0..runs {
        state.run_plan_with_eval(feed()?, |ctx, op_state, node, input| {
            let t = Instant::now();
            let r = eval(ctx, op_state, node, input);
            *per_node.entry(node.id).or_default() += t.elapsed().as_secs_f64();
            r
        })?;
    }
    let wall = t0.elapsed().as_secs_f64() * 1e3 / runs as f64;
    let model = plan.model();
    let total: f64 = per_node.values().sum::<f64>() * 1e3 / runs as f64;
    println!("# {path}, batch {batch}: {wall:.3} ms per run (wall), {total:.3} ms inside nodes, {runs} runs");
    let mut kinds: HashMap<String, (f64, usize)> = HashMap::new();
    for (&id, &s) in &per_node {
        let k = kinds
            .entry(model.node(id).op().name().to_string())
            .or_default();
        k.0 += s * 1e3 / runs as f64;
        k.1 += 1;
    }
    let mut kinds: Vec<_> = kinds.into_iter().collect();
    kinds.sort_by(|a, b| b.1 .0.total_cmp(&a.1 .0));
    println!("\n| op kind | nodes | ms per run | share |\n|---|---:|---:|---:|");
    for (k, (ms, count)) in &kinds {
        println!("| {k} | {count} | {ms:.3} | {:.1} % |", 100.0 * ms / total);
    }
    let mut nodes: Vec<_> = per_node.into_iter().collect();
    nodes.sort_by(|a, b| b.1.total_cmp(&a.1));
    println!("\n| node | op | ms per run | output |\n|---|---|---:|---|");
    for (id, s) in nodes.into_iter().take(top) {
        let node = model.node(id);
        let fact = node
            .outputs
            .first()
            .map(|o| format!("{:?}", o.fact))
            .unwrap_or_default();
        println!(
            "| {} | {} | {:.3} | {} |",
            node.name,
            node.op,
            s * 1e3 / runs as f64,
            fact
        );
    }
    Ok(())
}
