//! A replay set: standard clips shipped beside a model so that personalisation on a board,
//! where the standard data set is not, still sees the wider world while it learns a user's
//! clips.
//!
//! Why it exists (measured in models/README.md, "Personalisation"): fine-tuned on ~100 clips
//! of one yard, a new label fires on clips unlike anything the user showed it and takes over
//! the old labels' inputs; distillation on the user's own clips does not stop that, negatives
//! from the standard data do. Shipping the standard clips' trunk features would cost ~225 KB
//! per clip; what ships instead is each clip's **projected tokens** (the output of every
//! stream's token projection, [`crate::Mbt::project`], for one frame phase), which stay exact
//! as long as personalisation keeps the projections frozen (`train.trainable = "fusion"`, the
//! recipe's default), at 8-bit with one scale per token: `tokens x (width + 4)` bytes per
//! stream, ~8 KB per clip for the edge model.
//!
//! File layout (little-endian): the magic `MBTREPLAY1`, a u32 header length, the header
//! (JSON, [`Header`]), then per clip a u16 label index followed by each stream's tokens, each
//! token an f32 scale and `width` i8 values (value = i8 x scale). The header names the
//! projections it was made with ([`projection_sha256`]): a set made for other projections
//! would feed the layers tokens they never saw, so it is refused.

use std::path::Path;

use burn::module::{Module, ModuleVisitor, Param};
use burn::prelude::*;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use thiserror::Error;

use crate::train::Batch;
use crate::Mbt;

const MAGIC: &[u8; 10] = b"MBTREPLAY1";

#[derive(Debug, Error)]
#[error("{path}: {message}")]
pub struct ReplayError {
    pub path: String,
    pub message: String,
}

/// What the file says about itself.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Header {
    /// The model the tokens were projected by (its version string).
    pub model_version: String,
    /// [`projection_sha256`] of that model: the set fits any model with the same projections.
    pub projection_sha256: String,
    /// Token width (the model's `width`).
    pub width: usize,
    /// Per stream (the model's order): name and tokens per clip.
    pub streams: Vec<StreamShape>,
    /// Label names; each clip holds an index into them.
    pub labels: Vec<String>,
    pub clips: usize,
    /// Where the clips came from (data set, split, selection, manifest hash) and under what
    /// terms: free text for the model card.
    pub provenance: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StreamShape {
    pub name: String,
    pub tokens: usize,
}

/// A replay set in memory (tokens kept quantised: dequantised per batch).
#[derive(Debug, Clone)]
pub struct ReplaySet {
    pub header: Header,
    /// Per clip its label index into `header.labels`.
    pub labels: Vec<usize>,
    /// Per clip, per stream: `tokens` scales and `tokens * width` values.
    data: Vec<Vec<(Vec<f32>, Vec<i8>)>>,
}

/// Per token absmax scaling to i8.
fn quantise(values: &[f32], width: usize) -> (Vec<f32>, Vec<i8>) {
    let mut scales = Vec::with_capacity(values.len() / width);
    let mut q = Vec::with_capacity(values.len());
    for tok in values.chunks(width) {
        let max = tok.iter().fold(0f32, |m, v| m.max(v.abs()));
        let scale = if max > 0.0 { max / 127.0 } else { 1.0 };
        scales.push(scale);
        q.extend(
            tok.iter()
                .map(|v| (v / scale).round().clamp(-127.0, 127.0) as i8),
        );
    }
    (scales, q)
}

impl ReplaySet {
    /// A set from clips given as (label index, per stream `[tokens, width]` row-major tokens).
    /// Every clip must have the header's shapes.
    pub fn new(
        mut header: Header,
        clips: Vec<(usize, Vec<Vec<f32>>)>,
    ) -> Result<ReplaySet, ReplayError> {
        let err = |message: String| ReplayError {
            path: "(replay set)".into(),
            message,
        };
        let w = header.width;
        let mut labels = Vec::with_capacity(clips.len());
        let mut data = Vec::with_capacity(clips.len());
        for (i, (label, streams)) in clips.into_iter().enumerate() {
            if label >= header.labels.len() {
                return Err(err(format!("clip {i}: label index {label} out of range")));
            }
            if streams.len() != header.streams.len() {
                return Err(err(format!(
                    "clip {i}: {} streams, expected {}",
                    streams.len(),
                    header.streams.len()
                )));
            }
            let mut per = Vec::with_capacity(streams.len());
            for (s, (v, shape)) in streams.iter().zip(&header.streams).enumerate() {
                if v.len() != shape.tokens * w || v.iter().any(|x| !x.is_finite()) {
                    return Err(err(format!(
                        "clip {i}, stream {s}: {} values (finite expected), expected {} x {w}",
                        v.len(),
                        shape.tokens
                    )));
                }
                per.push(quantise(v, w));
            }
            labels.push(label);
            data.push(per);
        }
        header.clips = data.len();
        Ok(ReplaySet {
            header,
            labels,
            data,
        })
    }

    pub fn clips(&self) -> usize {
        self.data.len()
    }

    /// The file's bytes.
    pub fn to_bytes(&self) -> Vec<u8> {
        let header = serde_json::to_vec(&self.header).unwrap_or_default();
        let mut out = Vec::new();
        out.extend_from_slice(MAGIC);
        out.extend_from_slice(&(header.len() as u32).to_le_bytes());
        out.extend_from_slice(&header);
        for (label, streams) in self.labels.iter().zip(&self.data) {
            out.extend_from_slice(&(*label as u16).to_le_bytes());
            for (scales, q) in streams {
                for (scale, tok) in scales.iter().zip(q.chunks(self.header.width)) {
                    out.extend_from_slice(&scale.to_le_bytes());
                    out.extend(tok.iter().map(|&v| v as u8));
                }
            }
        }
        out
    }

    /// Reads and checks a file written by [`ReplaySet::to_bytes`]; every error names the file
    /// and what was expected.
    pub fn read(path: &Path) -> Result<ReplaySet, ReplayError> {
        let bytes = std::fs::read(path).map_err(|e| ReplayError {
            path: path.display().to_string(),
            message: format!("cannot read: {e}"),
        })?;
        Self::from_bytes(&bytes).map_err(|message| ReplayError {
            path: path.display().to_string(),
            message,
        })
    }

    fn from_bytes(bytes: &[u8]) -> Result<ReplaySet, String> {
        if bytes.len() < 14 || &bytes[..10] != MAGIC {
            return Err("not a replay set (expected the magic MBTREPLAY1 at its start)".into());
        }
        let hlen = u32::from_le_bytes([bytes[10], bytes[11], bytes[12], bytes[13]]) as usize;
        let body = &bytes[14..];
        if hlen > body.len() {
            return Err(format!(
                "header of {hlen} bytes announced, only {} follow (truncated file)",
                body.len()
            ));
        }
        let header: Header = serde_json::from_slice(&body[..hlen])
            .map_err(|e| format!("header: {e} (expected the replay header JSON)"))?;
        let w = header.width;
        if w == 0 || header.streams.is_empty() || header.labels.is_empty() {
            return Err("header: width, streams and labels must not be empty".into());
        }
        let clip_len = 2 + header
            .streams
            .iter()
            .map(|s| s.tokens * (4 + w))
            .sum::<usize>();
        let payload = &body[hlen..];
        if payload.len() != header.clips * clip_len {
            return Err(format!(
                "{} bytes of clips, expected {} clips x {clip_len} = {} (truncated or not this format)",
                payload.len(),
                header.clips,
                header.clips * clip_len
            ));
        }
        let mut labels = Vec::with_capacity(header.clips);
        let mut data = Vec::with_capacity(header.clips);
        for (i, clip) in payload.chunks(clip_len.max(1)).enumerate() {
            let label = u16::from_le_bytes([clip[0], clip[1]]) as usize;
            if label >= header.labels.len() {
                return Err(format!(
                    "clip {i}: label index {label}, but the header lists {} labels",
                    header.labels.len()
                ));
            }
            let mut at = 2;
            let mut per = Vec::with_capacity(header.streams.len());
            for s in &header.streams {
                let mut scales = Vec::with_capacity(s.tokens);
                let mut q = Vec::with_capacity(s.tokens * w);
                for _ in 0..s.tokens {
                    let scale =
                        f32::from_le_bytes([clip[at], clip[at + 1], clip[at + 2], clip[at + 3]]);
                    if !(scale.is_finite() && scale > 0.0) {
                        return Err(format!(
                            "clip {i}, stream {}: token scale {scale} (expected a positive number)",
                            s.name
                        ));
                    }
                    scales.push(scale);
                    q.extend(clip[at + 4..at + 4 + w].iter().map(|&b| b as i8));
                    at += 4 + w;
                }
                per.push((scales, q));
            }
            labels.push(label);
            data.push(per);
        }
        Ok(ReplaySet {
            header,
            labels,
            data,
        })
    }

    /// Refuses a set that `model` (of `model_labels`) cannot use: other projections, another
    /// shape, or a label the model does not have. Returns each set label's index in the model.
    pub fn check(&self, model: &Mbt, model_labels: &[String]) -> Result<Vec<usize>, String> {
        let fp = projection_sha256(model);
        if fp != self.header.projection_sha256 {
            return Err(format!(
                "made for the token projections of {} (sha256 {}), this model's are {fp}: make one for it with `mbt model replay`",
                self.header.model_version, self.header.projection_sha256
            ));
        }
        self.header
            .labels
            .iter()
            .map(|l| {
                model_labels
                    .iter()
                    .position(|m| m == l)
                    .ok_or_else(|| format!("holds clips of `{l}`, a label the model does not have"))
            })
            .collect()
    }

    /// Clips `idx` as a batch of projected tokens with one-hot targets over `classes`
    /// (`map`: set label index -> model label index, from [`ReplaySet::check`]).
    pub fn batch(&self, idx: &[usize], map: &[usize], classes: usize) -> Batch {
        let w = self.header.width;
        let mut inputs: Vec<Vec<f32>> = self
            .header
            .streams
            .iter()
            .map(|s| Vec::with_capacity(idx.len() * s.tokens * w))
            .collect();
        let mut targets = vec![0f32; idx.len() * classes];
        for (j, &i) in idx.iter().enumerate() {
            for (out, (scales, q)) in inputs.iter_mut().zip(&self.data[i]) {
                for (scale, tok) in scales.iter().zip(q.chunks(w)) {
                    out.extend(tok.iter().map(|&v| v as f32 * scale));
                }
            }
            targets[j * classes + map[self.labels[i]]] = 1.0;
        }
        Batch {
            n: idx.len(),
            inputs,
            targets,
            stream_targets: Vec::new(),
        }
    }
}

struct HashParams(Sha256);

impl ModuleVisitor for HashParams {
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
        let v = param
            .val()
            .into_data()
            .try_to_vec::<f32>()
            .unwrap_or_default();
        self.0.update((v.len() as u64).to_le_bytes());
        for x in v {
            self.0.update(x.to_le_bytes());
        }
    }
}

/// sha256 over every stream's projection weights (and trunk last layer, when trained here),
/// in stream order: what a replay set's tokens depend on.
pub fn projection_sha256(model: &Mbt) -> String {
    let mut h = HashParams(Sha256::new());
    for io in &model.streams {
        if let Some(l) = &io.last {
            l.visit(&mut h);
        }
        io.embed.visit(&mut h);
    }
    h.0.finalize().iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::train::{predict, predict_projected, project};
    use crate::ModelConfig;

    fn tiny() -> (ModelConfig, Mbt) {
        let cfg = ModelConfig {
            labels: vec!["a".into(), "b".into(), "c".into()],
            ..crate::config::tiny()
        };
        let device = burn::prelude::Device::flex();
        device.seed(3);
        let model = Mbt::new(&cfg, &device);
        (cfg, model)
    }

    fn batch(cfg: &ModelConfig, n: usize) -> Batch {
        let inputs = cfg
            .streams()
            .iter()
            .map(|s| {
                (0..n * s.tokens * s.patch_dim)
                    .map(|i| ((i * 7919 % 1000) as f32 / 500.0) - 1.0)
                    .collect()
            })
            .collect();
        Batch {
            n,
            inputs,
            targets: vec![0.0; n * cfg.num_classes()],
            stream_targets: Vec::new(),
        }
    }

    fn header(cfg: &ModelConfig, model: &Mbt, tokens: &[usize]) -> Header {
        Header {
            model_version: "t".into(),
            projection_sha256: projection_sha256(model),
            width: cfg.width,
            streams: cfg
                .streams()
                .iter()
                .zip(tokens)
                .map(|(s, &t)| StreamShape {
                    name: s.name.clone(),
                    tokens: t,
                })
                .collect(),
            labels: vec!["c".into(), "a".into()],
            clips: 0,
            provenance: "test".into(),
        }
    }

    #[test]
    fn projected_forward_equals_forward_and_the_file_round_trips_within_quantisation() {
        let (cfg, model) = tiny();
        let b = batch(&cfg, 3);
        let direct = predict(&model, &cfg, &b);
        let tokens = project(&model, &cfg, &b);
        let via = predict_projected(
            &model,
            &cfg,
            &Batch {
                n: 3,
                inputs: tokens.clone(),
                targets: b.targets.clone(),
                stream_targets: Vec::new(),
            },
        );
        for (x, y) in direct.fused.iter().zip(&via.fused) {
            assert!((x - y).abs() < 1e-5, "{x} vs {y}");
        }
        let per: Vec<usize> = tokens.iter().map(|t| t.len() / (3 * cfg.width)).collect();
        let clips: Vec<(usize, Vec<Vec<f32>>)> = (0..3)
            .map(|i| {
                let s = tokens
                    .iter()
                    .zip(&per)
                    .map(|(t, &k)| t[i * k * cfg.width..(i + 1) * k * cfg.width].to_vec())
                    .collect();
                (i % 2, s)
            })
            .collect();
        let set = ReplaySet::new(header(&cfg, &model, &per), clips).unwrap();
        let bytes = set.to_bytes();
        // Size by hand: magic + length + header + 3 clips x (2 + tokens x (4 + width)).
        let hlen = u32::from_le_bytes(bytes[10..14].try_into().unwrap()) as usize;
        let clip = 2 + per.iter().map(|t| t * (4 + cfg.width)).sum::<usize>();
        assert_eq!(bytes.len(), 14 + hlen + 3 * clip);
        let back = ReplaySet::from_bytes(&bytes).unwrap();
        assert_eq!(back.header.clips, 3);
        let map = back.check(&model, &cfg.labels).unwrap();
        assert_eq!(map, vec![2, 0]);
        let rb = back.batch(&[0, 1, 2], &map, cfg.num_classes());
        // Labels 0, 1, 0 of the set -> c, a, c of the model.
        assert_eq!(rb.targets[2], 1.0);
        assert_eq!(rb.targets[3], 1.0);
        assert_eq!(rb.targets[8], 1.0);
        // Each value within half a quantisation step of its token's absmax / 127.
        for (orig, got) in tokens.iter().zip(&rb.inputs) {
            for (tok_o, tok_g) in orig.chunks(cfg.width).zip(got.chunks(cfg.width)) {
                let step = tok_o.iter().fold(0f32, |m, v| m.max(v.abs())) / 127.0;
                for (o, g) in tok_o.iter().zip(tok_g) {
                    assert!((o - g).abs() <= step * 0.5 + 1e-6, "{o} vs {g}");
                }
            }
        }
        let replayed = predict_projected(&model, &cfg, &rb);
        for (x, y) in direct.fused.iter().zip(&replayed.fused) {
            assert!((x - y).abs() < 0.05, "{x} vs {y}");
        }
    }

    #[test]
    fn bad_files_are_refused_with_the_reason() {
        let (cfg, model) = tiny();
        let b = batch(&cfg, 1);
        let tokens = project(&model, &cfg, &b);
        let per: Vec<usize> = tokens.iter().map(|t| t.len() / cfg.width).collect();
        let set = ReplaySet::new(header(&cfg, &model, &per), vec![(1, tokens)]).unwrap();
        let bytes = set.to_bytes();
        let msg = |b: &[u8]| ReplaySet::from_bytes(b).unwrap_err();
        assert!(msg(b"hello world, not a set").contains("MBTREPLAY1"));
        assert!(msg(&bytes[..bytes.len() - 1]).contains("truncated"));
        assert!(msg(&bytes[..20]).contains("truncated"));
        let mut bad = bytes.clone();
        let hlen = u32::from_le_bytes(bytes[10..14].try_into().unwrap()) as usize;
        bad[14 + hlen] = 9; // label index 9 of 2
        assert!(msg(&bad).contains("label index 9"));
        // Another model's projections; a label the model lacks.
        let device = burn::prelude::Device::flex();
        device.seed(4);
        let other = Mbt::new(&cfg, &device);
        assert!(set
            .check(&other, &cfg.labels)
            .unwrap_err()
            .contains("projections"));
        assert!(set
            .check(&model, &["a".to_string(), "b".to_string()])
            .unwrap_err()
            .contains("`c`"));
        let dir = std::env::temp_dir().join(format!("replay-test-{}", std::process::id()));
        let e = ReplaySet::read(&dir.join("missing.replay")).unwrap_err();
        assert!(e.to_string().contains("missing.replay"), "{e}");
    }
}
