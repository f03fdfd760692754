//! The replay set a model ships with (`mbt model replay`), and how `mbt train --init` finds
//! and feeds it (format and reasons: `mbt_model::replay`).
//!
//! Convention: the set for `models/edge.onnx` is `models/edge.replay`; for a run directory (or
//! a `.bpk` in it) it is `RUN/model.replay`, which personalisation writes beside the
//! `RUN/model.onnx` it exports, so personalising a personalised model finds it again.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context};
use mbt_model::replay::{projection_sha256, Header, ReplaySet, StreamShape};
use mbt_model::train::project;

use super::dataset::DataSet;
use super::features::FeatureSplit;
use crate::data::rng::Rng;

/// Where the replay set of the model at `init` lives.
pub fn beside(init: &Path) -> PathBuf {
    if init.is_dir() {
        init.join("model.replay")
    } else if init.extension().is_some_and(|e| e == "onnx") {
        init.with_extension("replay")
    } else {
        init.parent().unwrap_or(Path::new(".")).join("model.replay")
    }
}

/// `mbt model replay`'s arguments (the command line).
#[derive(Debug, clap::Args)]
pub struct MakeArgs {
    /// The exported model (.onnx) or a checkpoint the set is for
    #[arg(long)]
    pub model: PathBuf,
    /// Data set (from `mbt data build`) the clips come from
    #[arg(long)]
    pub data: PathBuf,
    /// Its split to draw from
    #[arg(long, default_value = "train")]
    pub split: String,
    /// Clips in the set, the same number per label where the split has them
    #[arg(long, default_value_t = 512)]
    pub clips: usize,
    /// Seed of the draw
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Trunk directory (default: models/trunks of the checkout, else /usr/share/mbt/trunks)
    #[arg(long, value_name = "DIR")]
    pub trunks: Option<PathBuf>,
    /// Where to write it (convention: beside the model, models/edge.replay)
    #[arg(long)]
    pub out: PathBuf,
}

/// `clips` indices of `labels` (one label index per clip), the same number per label where
/// the split has them (round robin over the labels, each label's clips in a seeded order).
pub fn balanced(labels: &[usize], clips: usize, seed: u64) -> Vec<usize> {
    let mut groups: BTreeMap<usize, Vec<usize>> = BTreeMap::new();
    for (i, &l) in labels.iter().enumerate() {
        groups.entry(l).or_default().push(i);
    }
    for (l, g) in groups.iter_mut() {
        Rng::new(seed, &[0x5E1A, *l as u64]).shuffle(g);
    }
    let mut out = Vec::with_capacity(clips.min(labels.len()));
    let mut round = 0;
    while out.len() < clips.min(labels.len()) {
        for g in groups.values() {
            if let Some(&i) = g.get(round) {
                if out.len() < clips {
                    out.push(i);
                }
            }
        }
        round += 1;
    }
    out.sort_unstable();
    out
}

/// The projected tokens of `split`'s clips `idx` (frame phase alternating between clips),
/// each clip's per-stream rows.
pub fn project_clips(
    model: &mbt_model::Mbt,
    cfg: &mbt_model::ModelConfig,
    split: &FeatureSplit,
    idx: &[usize],
) -> anyhow::Result<Vec<Vec<Vec<f32>>>> {
    let mut out = Vec::with_capacity(idx.len());
    for chunk in idx.chunks(64) {
        let phases: Vec<usize> = chunk.iter().map(|i| i % 2).collect();
        let b = split.batch(cfg, chunk, &phases, false)?;
        let streams = project(model, cfg, &b);
        for j in 0..chunk.len() {
            out.push(
                streams
                    .iter()
                    .map(|s| {
                        let per = s.len() / chunk.len();
                        s[j * per..(j + 1) * per].to_vec()
                    })
                    .collect(),
            );
        }
    }
    Ok(out)
}

/// `mbt model replay`: a class-balanced replay set from a data set's split, for `model`.
pub fn make(a: &MakeArgs) -> anyhow::Result<()> {
    if a.clips == 0 {
        bail!("--clips 0: a replay set needs at least one clip");
    }
    let initial = super::init::load(&a.model)?;
    let cfg = &initial.config;
    let trunks = a
        .trunks
        .clone()
        .unwrap_or_else(mbt_model::trunk::default_dir);
    let data = DataSet::open(&a.data, &cfg.labels)?;
    if !data.has_split(&a.split) {
        bail!(
            "{}: no `{}` split in manifest.jsonl",
            a.data.display(),
            a.split
        );
    }
    let split = super::personalise::features(&data, cfg, &a.split, &trunks, None)?;
    let idx = balanced(&split.header.labels, a.clips, a.seed);
    let tokens = project_clips(&initial.model, cfg, &split, &idx)?;
    let shapes: Vec<StreamShape> = cfg
        .streams()
        .iter()
        .zip(&tokens[0])
        .map(|(s, t)| StreamShape {
            name: s.name.clone(),
            tokens: t.len() / cfg.width,
        })
        .collect();
    let mut counts: BTreeMap<&str, usize> = BTreeMap::new();
    for &i in &idx {
        *counts
            .entry(cfg.labels[split.header.labels[i]].as_str())
            .or_default() += 1;
    }
    let header = Header {
        model_version: initial.version.clone(),
        projection_sha256: projection_sha256(&initial.model),
        width: cfg.width,
        streams: shapes,
        labels: cfg.labels.clone(),
        clips: idx.len(),
        provenance: format!(
            "{} clips of the `{}` split of {} (manifest.jsonl sha256 {}), class-balanced (seed {}), one frame phase each; made by `mbt model replay` from {}. The media behind them and their licences: that data set's data card (data/README.md)",
            idx.len(),
            a.split,
            a.data.display(),
            data.manifest_sha256,
            a.seed,
            a.model.display()
        ),
    };
    let set = ReplaySet::new(
        header,
        idx.iter()
            .zip(tokens)
            .map(|(&i, t)| (split.header.labels[i], t))
            .collect(),
    )?;
    let bytes = set.to_bytes();
    super::atomic_write(&a.out, &bytes)?;
    println!(
        "wrote {}: {} clips, {:.1} KB ({:.1} KB per clip), for {} (projections sha256 {}); per label {:?}",
        a.out.display(),
        set.clips(),
        bytes.len() as f64 / 1024.0,
        bytes.len() as f64 / 1024.0 / set.clips() as f64,
        initial.version,
        set.header.projection_sha256,
        counts
    );
    Ok(())
}

/// Reads the set at `path` and checks it fits `model` (labels `labels`): the set and each of
/// its labels' index in the model.
pub fn open(
    path: &Path,
    model: &mbt_model::Mbt,
    labels: &[String],
) -> anyhow::Result<(ReplaySet, Vec<usize>)> {
    let set = ReplaySet::read(path)?;
    let map = set
        .check(model, labels)
        .map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))
        .context("the replay set does not fit the model")?;
    Ok((set, map))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn balanced_takes_the_same_number_per_label_and_all_of_a_rare_one() {
        // 10 x label 0, 3 x label 1, 6 x label 2.
        let labels: Vec<usize> = std::iter::repeat_n(0, 10)
            .chain(std::iter::repeat_n(1, 3))
            .chain(std::iter::repeat_n(2, 6))
            .collect();
        let pick = balanced(&labels, 12, 7);
        assert_eq!(pick.len(), 12);
        let count = |l| pick.iter().filter(|&&i| labels[i] == l).count();
        // Round robin: 3 rounds of 3, then label 1 runs out: 0 and 2 share the rest.
        assert_eq!((count(0), count(1), count(2)), (5, 3, 4));
        assert_eq!(pick, balanced(&labels, 12, 7), "seeded");
        assert_ne!(pick, balanced(&labels, 12, 8), "the seed draws");
        assert_eq!(balanced(&labels, 100, 1).len(), labels.len());
    }

    #[test]
    fn beside_follows_the_convention() {
        assert_eq!(
            beside(Path::new("models/edge.onnx")),
            PathBuf::from("models/edge.replay")
        );
        assert_eq!(
            beside(Path::new("run/best.bpk")),
            PathBuf::from("run/model.replay")
        );
    }
}
