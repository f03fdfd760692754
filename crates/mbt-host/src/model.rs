//! `mbt export`, `mbt infer` and `mbt model stats`: the model's command-line ends.

use anyhow::{bail, Context};
use burn::prelude::*;
use mbt_core::npy;
use mbt_model::export::{export as write_onnx, ExportOptions, Int8};
use mbt_model::stats::stats;
use mbt_model::{Mbt, ModelConfig};

use crate::cli::{BenchCmd, ConfigArgs, ExportArgs, InferArgs, ModelCmd, RuntimeArgs};

pub fn load_config(args: &ConfigArgs) -> anyhow::Result<ModelConfig> {
    let text = std::fs::read_to_string(&args.config)
        .with_context(|| format!("cannot read {}", args.config.display()))?;
    ModelConfig::from_toml(&text, &args.config.display().to_string(), &args.overrides)
        .map_err(anyhow::Error::msg)
}

pub fn export(args: ExportArgs) -> anyhow::Result<()> {
    let cfg = load_config(&args.config)?;
    let int8 = match &args.int8 {
        Some(kind) => Some(
            kind.parse::<Int8>()
                .map_err(|e| anyhow::anyhow!("--int8: {e}"))?,
        ),
        None => None,
    };
    let (model, data_hash, origin) = match &args.checkpoint {
        Some(ckpt) => {
            let weights = crate::train::eval::checkpoint_weights(ckpt)?;
            let run = weights
                .ancestors()
                .skip(1)
                .take(2)
                .find(|d| d.join("config.toml").exists());
            let mut data_hash = "unknown (checkpoint outside a run directory)".to_string();
            if let Some(run) = run {
                let (run_cfg, _) = crate::train::read_run_config(run)?;
                if run_cfg != cfg {
                    bail!(
                        "{} does not describe the checkpoint {}: its model settings differ from {} (export with --config {})",
                        args.config.config.display(),
                        weights.display(),
                        run.join("config.toml").display(),
                        run.join("config.toml").display()
                    );
                }
                let rj = run.join("run.json");
                if let Ok(text) = std::fs::read_to_string(&rj) {
                    if let Ok(v) = serde_json::from_str::<serde_json::Value>(&text) {
                        if let Some(h) = v["data_manifest_sha256"].as_str() {
                            data_hash = format!("sha256:{h} (manifest.jsonl)");
                        }
                    }
                }
            }
            let model = mbt_model::train::load_model(&cfg, &weights)
                .with_context(|| format!("loading {}", weights.display()))?;
            (model, data_hash, format!("weights {}", weights.display()))
        }
        None => {
            let device = Device::flex();
            device.seed(args.seed);
            (
                Mbt::new(&cfg, &device),
                "none (random init)".to_string(),
                format!("random init, seed {}", args.seed),
            )
        }
    };
    let thresholds = match &args.thresholds {
        Some(p) => {
            let text = std::fs::read_to_string(p)
                .with_context(|| format!("cannot read {}", p.display()))?;
            let v: serde_json::Value = serde_json::from_str(&text)
                .with_context(|| format!("{}: not JSON", p.display()))?;
            let t = v
                .pointer("/evaluation/thresholds")
                .or_else(|| v.get("thresholds"))
                .cloned()
                .unwrap_or(v);
            let t: std::collections::BTreeMap<String, f32> = serde_json::from_value(t)
                .with_context(|| {
                    format!(
                        "{}: expected an `mbt eval --out` eval.json or an object label -> threshold",
                        p.display()
                    )
                })?;
            if let Some((l, x)) = t
                .iter()
                .find(|(l, x)| !(cfg.labels.contains(l) && **x > 0.0 && **x <= 1.0))
            {
                bail!(
                    "{}: threshold `{l}` = {x}: expected one of the model's labels and 0 < threshold <= 1",
                    p.display()
                );
            }
            t
        }
        None => Default::default(),
    };
    let opts = ExportOptions {
        model_version: args.model_version.clone(),
        training_data_hash: data_hash,
        int8,
        thresholds,
    };
    let mut bytes = write_onnx(&model, &cfg, &opts)?;
    if cfg.trunks.audio.is_some() || cfg.trunks.video.is_some() {
        let dir = args
            .trunks
            .clone()
            .unwrap_or_else(mbt_model::trunk::default_dir);
        bytes = mbt_model::export::compose::compose(&cfg, &bytes, &dir)?;
    }
    std::fs::write(&args.out, &bytes)
        .with_context(|| format!("cannot write {}", args.out.display()))?;
    eprintln!(
        "wrote {} ({:.2} MB, {origin})",
        args.out.display(),
        bytes.len() as f64 / 1e6,
    );
    Ok(())
}

/// Reads a token matrix `[T, P]` (batch of one) or `[N, T, P]`; returns `(N, data)`.
fn read_tokens(
    path: &std::path::Path,
    what: &str,
    (t, p): (usize, usize),
) -> anyhow::Result<(usize, Vec<f32>)> {
    let bytes = std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))?;
    let a = npy::decode_f32(&bytes).with_context(|| format!("{}", path.display()))?;
    let n = match a.shape[..] {
        [tt, pp] if (tt, pp) == (t, p) => 1,
        [n, tt, pp] if (tt, pp) == (t, p) && n > 0 => n,
        _ => bail!("{}: {what} tokens have shape {:?}: expected [{t}, {p}] or [N, {t}, {p}] (this model's tokenizer settings)", path.display(), a.shape),
    };
    Ok((n, a.data))
}

/// A model file loaded on one of the runtimes `mbt` can drive: the same inputs and the same
/// timing code for both, so `mbt bench infer` compares runtimes in one harness.
enum Runner {
    Tract(Box<mbt_infer::Model>),
    Ort(Box<mbt_infer::onnxruntime::OrtModel>),
}

impl Runner {
    fn load(model: &std::path::Path, rt: &RuntimeArgs) -> anyhow::Result<Self> {
        match rt.backend.as_str() {
            "tract" => Ok(Runner::Tract(Box::new(mbt_infer::Model::load(
                model, "cpu",
            )?))),
            "ort" => {
                let lib = rt
                    .ort_lib
                    .clone()
                    .unwrap_or_else(mbt_infer::onnxruntime::default_library);
                let m = mbt_infer::onnxruntime::OrtModel::load(
                    model,
                    &lib,
                    &rt.providers,
                    rt.ort_threads,
                )?;
                for s in &m.skipped {
                    eprintln!("warning: execution provider not registered: {s}");
                }
                Ok(Runner::Ort(Box::new(m)))
            }
            other => bail!("--backend {other}: expected `tract` or `ort`"),
        }
    }

    fn name(&self) -> String {
        match self {
            Runner::Tract(m) => format!("tract-{}", m.runtime),
            Runner::Ort(m) => format!("onnxruntime-{} [{}]", m.version, m.providers.join(", ")),
        }
    }

    fn metadata(&self) -> &mbt_core::metadata::ModelMetadata {
        match self {
            Runner::Tract(m) => &m.metadata,
            Runner::Ort(m) => &m.metadata,
        }
    }

    fn shapes(&self) -> ((usize, usize), (usize, usize)) {
        match self {
            Runner::Tract(m) => (m.video_shape, m.audio_shape),
            Runner::Ort(m) => (m.video_shape, m.audio_shape),
        }
    }

    fn run(
        &mut self,
        batch: usize,
        video: &[f32],
        audio: &[f32],
    ) -> Result<mbt_infer::Logits, mbt_infer::InferError> {
        match self {
            Runner::Tract(m) => m.run(batch, video, audio),
            Runner::Ort(m) => m.run(batch, video, audio),
        }
    }
}

pub fn infer(args: InferArgs) -> anyhow::Result<()> {
    let mut model = Runner::load(&args.model, &args.runtime)?;
    let (video_shape, audio_shape) = model.shapes();
    let (nv, video) = read_tokens(&args.video, "video", video_shape)?;
    let (na, audio) = read_tokens(&args.audio, "audio", audio_shape)?;
    if nv != na {
        bail!(
            "batch sizes differ: {} holds {nv} video samples, {} holds {na} audio samples",
            args.video.display(),
            args.audio.display()
        );
    }
    let out = model.run(nv, &video, &audio)?;
    let rows = |v: &[f32]| {
        v.chunks(out.classes)
            .map(|r| r.to_vec())
            .collect::<Vec<_>>()
    };
    let json = serde_json::json!({
        "model_version": model.metadata().model_version,
        "runtime": model.name(),
        "labels": model.metadata().labels,
        "logits": rows(&out.fused),
        "logits_video": rows(&out.video),
        "logits_audio": rows(&out.audio),
    });
    println!("{}", serde_json::to_string_pretty(&json)?);
    Ok(())
}

pub fn model(cmd: ModelCmd) -> anyhow::Result<()> {
    match cmd {
        ModelCmd::Replay(args) => crate::train::replay::make(&args),
        ModelCmd::Stats { config, json } => {
            let cfg = load_config(&config)?;
            let s = stats(&cfg);
            if json {
                println!("{}", serde_json::to_string_pretty(&s)?);
                return Ok(());
            }
            println!(
                "{} ({:?}, Lf = {}, B = {}, {} layers, d = {})",
                config.config.display(),
                cfg.fusion,
                cfg.fusion_layer,
                cfg.active_bottlenecks(),
                cfg.layers,
                cfg.width
            );
            println!("{:<18} {:>14} {:>14}", "part", "parameters", "GMACs");
            for (name, p) in [
                ("patch embedding", &s.patch_embedding),
                ("unfused layers", &s.unfused_layers),
                ("fused layers", &s.fused_layers),
                ("heads", &s.heads),
                ("total (fusion)", &s.total),
            ] {
                println!("{name:<18} {:>14} {:>14.3}", p.params, p.macs as f64 / 1e9);
            }
            if cfg.trunks.audio.is_some() || cfg.trunks.video.is_some() {
                use mbt_model::export::compose::{trunk_part, Part as Which};
                let dir = mbt_model::trunk::default_dir();
                let tok = &cfg.tokenizer;
                let mut total = (s.total.macs, s.total.params);
                for (which, rows, dim, what) in [
                    (
                        Which::Audio,
                        tok.audio.token_count(),
                        tok.audio.token_dim(),
                        "audio trunk",
                    ),
                    (
                        Which::Video,
                        tok.video.token_count(),
                        tok.video.token_dim(),
                        "video trunk",
                    ),
                ] {
                    let bytes = trunk_part(&cfg, which, &dir)?;
                    let (macs, params) = mbt_infer::parts::trunk_cost(&bytes, rows, dim)?;
                    println!(
                        "{:<18} {:>14} {:>14.3}   ({rows} x {:.3} GMACs per window)",
                        what,
                        params,
                        macs as f64 / 1e9,
                        macs as f64 / rows as f64 / 1e9
                    );
                    total.0 += macs;
                    total.1 += params;
                }
                println!(
                    "{:<18} {:>14} {:>14.3}",
                    "total (window)",
                    total.1,
                    total.0 as f64 / 1e9
                );
            }
            Ok(())
        }
    }
}

/// `mbt bench infer`: load + optimise time and the median latency of a runtime on a model
/// file, with deterministic pseudo-random inputs of the model's shapes (tract runs on one
/// thread; give ONNX Runtime `--ort-threads 1` for a like-for-like comparison).
pub fn bench(cmd: BenchCmd) -> anyhow::Result<()> {
    let BenchCmd::Infer {
        model,
        runtime,
        batch,
        runs,
        fixed_batch,
        json,
    } = cmd;
    if batch == 0 || runs == 0 {
        bail!("--batch and --runs must be positive");
    }
    let t0 = std::time::Instant::now();
    let mut m = if fixed_batch && runtime.backend == "tract" {
        Runner::Tract(Box::new(mbt_infer::Model::load_with_batch(
            &model, "cpu", batch,
        )?))
    } else {
        Runner::load(&model, &runtime)?
    };
    let load_ms = t0.elapsed().as_secs_f64() * 1e3;
    let fill = |n: usize, seed: u32| {
        let mut s = seed;
        (0..n)
            .map(|_| {
                s = s.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
                (s >> 8) as f32 / (1u32 << 24) as f32 * 2.0 - 1.0
            })
            .collect::<Vec<f32>>()
    };
    let ((tv, pv), (ta, pa)) = m.shapes();
    let video = fill(batch * tv * pv, 1);
    let audio = fill(batch * ta * pa, 2);
    for _ in 0..3 {
        m.run(batch, &video, &audio)?;
    }
    let mut times: Vec<f64> = (0..runs)
        .map(|_| {
            let t = std::time::Instant::now();
            m.run(batch, &video, &audio)
                .map(|_| t.elapsed().as_secs_f64() * 1e3)
        })
        .collect::<Result<_, _>>()?;
    times.sort_by(f64::total_cmp);
    let median = times[times.len() / 2];
    if json {
        println!(
            "{}",
            serde_json::json!({"model": model, "runtime": m.name(), "batch": batch, "runs": runs, "load_optimise_ms": load_ms, "median_ms": median, "min_ms": times[0]})
        );
    } else {
        println!("{}: batch {batch}, load+optimise {load_ms:.1} ms, median {median:.3} ms, min {:.3} ms over {runs} runs ({})", model.display(), times[0], m.name());
    }
    Ok(())
}
