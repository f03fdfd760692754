//! One ONNX file for a model with pretrained trunks: the trunk graphs, the glue that turns
//! their feature maps into tokens, and the fusion graph written by [`super::export`].
//!
//! The composed file's interface is the tokenizer's output, as for every model:
//! `audio` `[N, P, 96 * 64]` (YAMNet log-mel patches) and `video` `[N, T, 3 * H * W]` (frames,
//! channel-first), outputs `logits`, `logits_video`, `logits_audio`. Inside, named values mark
//! the seams (the daemon cuts the file there to run each trunk once per patch or frame, see
//! `mbt_infer::streaming`):
//! * `audio_cells` `[N * P, 6, 1024]`: one patch's tokens, the output of the audio part;
//! * `video_cells` `[N * T, cells, 1280]`: one frame's tokens, the output of the video part;
//!   with `trunks.finetune_last` both are the cells one layer earlier (`[N * P, 6, 1024]`,
//!   `[N * T, 16, 320]` at 112 px), and the trunks' last layers run in the fusion part;
//! * `audio_tokens` `[N, P * 6, 1024]`, `video_tokens` `[N, T * cells, 1280]`: the inputs of
//!   the fusion part, exactly what the burn model is trained on.
//!
//! Every reshape keeps the batch as `-1`, so the parts run unchanged on any number of patches
//! or frames.

use std::collections::HashMap;
use std::path::Path;

use prost::Message;
use thiserror::Error;
use tract_onnx::pb::{GraphProto, ModelProto, StringStringEntryProto};

use super::graph::{attr_ints, value_info, Graph};
use crate::config::ModelConfig;
use crate::trunk::{self, AudioTrunk, TrunkError, VideoTrunk, YAMNET_CELLS};

/// Seam names (see the module documentation).
pub const AUDIO_CELLS: &str = "audio_cells";
pub const VIDEO_CELLS: &str = "video_cells";
pub const AUDIO_TOKENS: &str = "audio_tokens";
pub const VIDEO_TOKENS: &str = "video_tokens";

#[derive(Debug, Error)]
pub enum ComposeError {
    #[error(transparent)]
    Trunk(#[from] TrunkError),
    #[error("{0}: not a readable ONNX model: {1}")]
    Decode(String, String),
    #[error("{what}: {reason}")]
    Shape { what: String, reason: String },
}

fn decode(bytes: &[u8], what: &str) -> Result<ModelProto, ComposeError> {
    ModelProto::decode(bytes).map_err(|e| ComposeError::Decode(what.into(), e.to_string()))
}

/// Copies `sub`'s initializers and nodes into `g`, renaming every value: names in `rename`
/// are mapped, all others get `prefix` (so two graphs' internal names never collide).
fn inline(g: &mut Graph, sub: &GraphProto, prefix: &str, rename: &HashMap<&str, &str>) {
    let map = |n: &str| -> String {
        if n.is_empty() {
            return String::new();
        }
        match rename.get(n) {
            Some(m) => m.to_string(),
            None => format!("{prefix}{n}"),
        }
    };
    for init in &sub.initializer {
        let mut t = init.clone();
        t.name = map(&t.name);
        g.initializers.push(t);
    }
    for node in &sub.node {
        let mut n = node.clone();
        n.name = format!("{prefix}{}", n.name);
        n.input = n.input.iter().map(|s| map(s)).collect();
        n.output = n.output.iter().map(|s| map(s)).collect();
        g.nodes.push(n);
    }
}

/// The part of `graph` that computes `output`: the nodes it depends on and their
/// initializers, nothing after it. With `trunks.finetune_last` the trunk ends one layer early
/// (at its last layer's input), and that layer runs in the fusion part instead.
fn cut(graph: &GraphProto, output: &str) -> Result<GraphProto, ComposeError> {
    let mut needed: std::collections::HashSet<&str> = std::collections::HashSet::from([output]);
    let mut keep = vec![false; graph.node.len()];
    for (i, node) in graph.node.iter().enumerate().rev() {
        if node.output.iter().any(|o| needed.contains(o.as_str())) {
            keep[i] = true;
            needed.extend(node.input.iter().map(String::as_str));
        }
    }
    if !graph
        .node
        .iter()
        .any(|n| n.output.iter().any(|o| o == output))
    {
        return Err(ComposeError::Shape {
            what: format!("trunk graph `{}`", graph.name),
            reason: format!("no value `{output}` to cut at"),
        });
    }
    Ok(GraphProto {
        node: graph
            .node
            .iter()
            .zip(&keep)
            .filter(|(_, &k)| k)
            .map(|(n, _)| n.clone())
            .collect(),
        initializer: graph
            .initializer
            .iter()
            .filter(|t| needed.contains(t.name.as_str()))
            .cloned()
            .collect(),
        ..graph.clone()
    })
}

/// The trunk graph as the model uses it, its output value and channels: whole, or cut before
/// its last layer with `trunks.finetune_last`.
fn trunk_graph(
    cfg: &ModelConfig,
    spec: &trunk::TrunkSpec,
    full: GraphProto,
) -> Result<(GraphProto, &'static str, usize), ComposeError> {
    if cfg.trunks.finetune_last {
        Ok((
            cut(&full, spec.last.input)?,
            spec.last.input,
            spec.last.in_channels,
        ))
    } else {
        Ok((full, spec.output, spec.channels))
    }
}

/// The audio branch: `input` (`[..., 96 * 64]` patches) -> YAMNet -> `audio_cells`.
fn audio_branch(
    g: &mut Graph,
    yamnet: GraphProto,
    input: &str,
    cfg: &ModelConfig,
) -> Result<(), ComposeError> {
    let spec = trunk::YAMNET;
    let (yamnet, output, channels) = trunk_graph(cfg, &spec, yamnet)?;
    let (frames, bands) = (
        mbt_core::audio::yamnet::PATCH_FRAMES as i64,
        mbt_core::audio::yamnet::MEL_BANDS as i64,
    );
    let x = g.reshape(input, &[-1, frames, bands]);
    let feats = "audio_trunk_features";
    inline(
        g,
        &yamnet,
        "trunk.audio/",
        &HashMap::from([(spec.input, x.as_str()), (output, feats)]),
    );
    let cells = (YAMNET_CELLS.0 * YAMNET_CELLS.1) as i64;
    let flat = g.reshape(feats, &[-1, channels as i64, cells]);
    g.node_named(
        "Transpose",
        &[&flat],
        vec![attr_ints("perm", &[0, 2, 1])],
        AUDIO_CELLS,
    );
    Ok(())
}

/// The video branch: `input` (`[..., 3 * H * W]` frames) -> trunk -> pool -> `video_cells`
/// (with `trunks.finetune_last`: the cut trunk, no pool; the fusion part pools).
fn video_branch(
    g: &mut Graph,
    lite0: GraphProto,
    input: &str,
    cfg: &ModelConfig,
) -> Result<(), ComposeError> {
    let spec = trunk::EFFICIENTNET_LITE0;
    let (lite0, output, channels) = trunk_graph(cfg, &spec, lite0)?;
    let v = &cfg.tokenizer.video;
    let x = g.reshape(input, &[-1, 3, v.height as i64, v.width as i64]);
    let feats = "video_trunk_features";
    inline(
        g,
        &lite0,
        "trunk.video/",
        &HashMap::from([(spec.input, x.as_str()), (output, feats)]),
    );
    let p = cfg.trunks.video_pool.max(1) as i64;
    let pooled = if p > 1 && !cfg.trunks.finetune_last {
        g.node(
            "AveragePool",
            &[feats],
            vec![
                attr_ints("kernel_shape", &[p, p]),
                attr_ints("strides", &[p, p]),
            ],
        )
    } else {
        feats.to_string()
    };
    let flat = g.reshape(
        &pooled,
        &[-1, channels as i64, cfg.video_input_cells() as i64],
    );
    g.node_named(
        "Transpose",
        &[&flat],
        vec![attr_ints("perm", &[0, 2, 1])],
        VIDEO_CELLS,
    );
    Ok(())
}

fn model(graph: GraphProto, props: Vec<(String, String)>) -> Vec<u8> {
    ModelProto {
        ir_version: 8,
        opset_import: vec![tract_onnx::pb::OperatorSetIdProto {
            domain: String::new(),
            version: super::onnx::OPSET,
        }],
        producer_name: "mbt-edge".into(),
        producer_version: env!("CARGO_PKG_VERSION").into(),
        graph: Some(graph),
        metadata_props: props
            .into_iter()
            .map(|(key, value)| StringStringEntryProto { key, value })
            .collect(),
        ..Default::default()
    }
    .encode_to_vec()
}

/// Which modality a trunk part serves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Part {
    Audio,
    Video,
}

/// A trunk with its glue alone, as its own ONNX model: input `input` `[N, dim]` (one
/// tokenizer token per row: a log-mel patch or a frame), output `audio_cells` /
/// `video_cells` `[N, cells, channels]`. The training feature cache runs these; they are the
/// same nodes the composed file holds.
pub fn trunk_part(cfg: &ModelConfig, part: Part, dir: &Path) -> Result<Vec<u8>, ComposeError> {
    let mut g = Graph::default();
    let (dim, cells, channels, out) = match part {
        Part::Audio => {
            let t = cfg.trunks.audio.ok_or_else(|| ComposeError::Shape {
                what: "trunks.audio".into(),
                reason: "the model has no audio trunk".into(),
            })?;
            let bytes = trunk::read(dir, &t.spec())?;
            let m = decode(&bytes, t.spec().file)?;
            audio_branch(&mut g, m.graph.unwrap_or_default(), "input", cfg)?;
            (
                cfg.tokenizer.audio.token_dim(),
                t.cells(),
                cfg.streams()[1].patch_dim,
                AUDIO_CELLS,
            )
        }
        Part::Video => {
            let t = cfg.trunks.video.ok_or_else(|| ComposeError::Shape {
                what: "trunks.video".into(),
                reason: "the model has no video trunk".into(),
            })?;
            let bytes = trunk::read(dir, &t.spec())?;
            let m = decode(&bytes, t.spec().file)?;
            video_branch(&mut g, m.graph.unwrap_or_default(), "input", cfg)?;
            (
                cfg.tokenizer.video.token_dim(),
                cfg.video_input_cells(),
                cfg.streams()[0].patch_dim,
                VIDEO_CELLS,
            )
        }
    };
    let graph = GraphProto {
        name: format!("mbt-trunk-{part:?}").to_lowercase(),
        node: g.nodes,
        initializer: g.initializers,
        input: vec![value_info("input", &[None, Some(dim)])],
        output: vec![value_info(out, &[None, Some(cells), Some(channels)])],
        ..Default::default()
    };
    Ok(model(graph, Vec::new()))
}

/// Composes the trunks named by `cfg.trunks` (read from `dir`, sha256-checked) with the fusion
/// graph `fusion` (bytes from [`super::export`]) into one model file. The fusion file's
/// metadata is kept, plus `mbt.trunks` (the trunks' provenance).
pub fn compose(cfg: &ModelConfig, fusion: &[u8], dir: &Path) -> Result<Vec<u8>, ComposeError> {
    let fusion = decode(fusion, "fusion graph")?;
    let fgraph = fusion.graph.clone().unwrap_or_default();
    let mut g = Graph::default();
    let mut rename: HashMap<&str, &str> = HashMap::new();
    let mut inputs = Vec::new();
    let mut specs = Vec::new();
    let (a, v) = (&cfg.tokenizer.audio, &cfg.tokenizer.video);
    let streams = cfg.streams();
    // Video first: the input order of every model file is (video, audio).
    match cfg.trunks.video {
        Some(VideoTrunk::EfficientnetLite0) => {
            let spec = trunk::EFFICIENTNET_LITE0;
            let m = decode(&trunk::read(dir, &spec)?, spec.file)?;
            video_branch(&mut g, m.graph.unwrap_or_default(), "video", cfg)?;
            let tokens = streams[0].tokens as i64;
            let x = g.ints(
                "video_tokens_shape",
                &[3],
                &[-1, tokens, streams[0].patch_dim as i64],
            );
            g.node_named("Reshape", &[VIDEO_CELLS, &x], vec![], VIDEO_TOKENS);
            rename.insert("video", VIDEO_TOKENS);
            inputs.push(value_info(
                "video",
                &[None, Some(v.token_count()), Some(v.token_dim())],
            ));
            specs.push(spec);
        }
        None => inputs.push(value_info(
            "video",
            &[None, Some(streams[0].tokens), Some(streams[0].patch_dim)],
        )),
    }
    match cfg.trunks.audio {
        Some(AudioTrunk::Yamnet) => {
            let spec = trunk::YAMNET;
            let m = decode(&trunk::read(dir, &spec)?, spec.file)?;
            audio_branch(&mut g, m.graph.unwrap_or_default(), "audio", cfg)?;
            let tokens = streams[1].tokens as i64;
            let x = g.ints(
                "audio_tokens_shape",
                &[3],
                &[-1, tokens, streams[1].patch_dim as i64],
            );
            g.node_named("Reshape", &[AUDIO_CELLS, &x], vec![], AUDIO_TOKENS);
            rename.insert("audio", AUDIO_TOKENS);
            inputs.push(value_info(
                "audio",
                &[None, Some(a.token_count()), Some(a.token_dim())],
            ));
            specs.push(spec);
        }
        None => inputs.push(value_info(
            "audio",
            &[None, Some(streams[1].tokens), Some(streams[1].patch_dim)],
        )),
    }
    for o in &fgraph.output {
        rename.insert(o.name.as_str(), o.name.as_str());
    }
    // Inputs the fusion graph keeps (a stream without a trunk) keep their names.
    for i in &fgraph.input {
        rename.entry(i.name.as_str()).or_insert(i.name.as_str());
    }
    inline(&mut g, &fgraph, "fusion/", &rename);
    let graph = GraphProto {
        name: "mbt-hybrid".into(),
        node: g.nodes,
        initializer: g.initializers,
        input: inputs,
        output: fgraph.output.clone(),
        ..Default::default()
    };
    let mut props: Vec<(String, String)> = fusion
        .metadata_props
        .iter()
        .filter(|p| p.key != mbt_core::metadata::KEY_TRUNKS)
        .map(|p| (p.key.clone(), p.value.clone()))
        .collect();
    props.push((
        mbt_core::metadata::KEY_TRUNKS.into(),
        trunk::provenance(&specs),
    ));
    Ok(model(graph, props))
}
