//! The Multimodal Bottleneck Transformer: one stream per modality, unfused layers up to
//! `fusion_layer`, then fusion by bottleneck tokens (or full attention), per-stream heads whose
//! logits are averaged.
//!
//! Forward pass, per DESIGN.md section 2:
//! * every stream embeds its patches (CLS first) and adds its positional embedding;
//! * layers `0 .. Lf` run each stream on its own tokens (separate weights per stream unless
//!   `shared_weights`);
//! * bottleneck fusion, layers `Lf .. L`: the `B` bottleneck tokens (a learned `[1, B, d]`,
//!   entering at `Lf`) are appended to each stream; each stream's layer runs over
//!   `[its tokens ; bottlenecks]`; the streams' updated bottleneck copies are averaged into the
//!   next layer's bottlenecks. Nothing else crosses between streams;
//! * full-attention fusion, layers `Lf .. L`: each stream's queries attend over the keys and
//!   values of every stream (each projected by its own stream's weights);
//! * each stream's head reads its CLS token (or the mean of its patch tokens); the fused logits
//!   are the mean of the streams' logits.

use burn::module::{ModuleVisitor, Param};
use burn::prelude::*;
use burn::tensor::Distribution;

use crate::config::{FusionKind, ModelConfig};
use crate::layers::{Block, DropPath, StreamIo};

#[derive(Module, Debug)]
pub struct Mbt {
    pub streams: Vec<StreamIo>,
    /// `layers[set * L + l]`: weight set `set` (one per stream, or one when shared), layer `l`.
    pub layers: Vec<Block>,
    /// `[1, B, d]` when bottleneck fusion is active.
    pub bottleneck: Option<Param<Tensor<3>>>,
    pub num_layers: usize,
    pub fusion_layer: usize,
    /// 0 late, 1 bottleneck, 2 full attention (see [`FusionKind`]); a plain field so the
    /// module derive needs nothing of the enum.
    pub fusion_code: usize,
    pub tokens: Vec<usize>,
}

struct Materialize;

impl ModuleVisitor for Materialize {
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
        let _ = param.val();
    }
}

/// All outputs: fused logits and each stream's own logits (video, audio for the default
/// streams), plus, for the structure tests, every stream's token sequence after each layer.
pub struct Output {
    pub logits: Tensor<2>,
    pub stream_logits: Vec<Tensor<2>>,
    pub trace: Vec<Vec<Tensor<3>>>,
}

impl Mbt {
    /// A freshly initialised model (call `device.seed(s)` first for reproducible weights).
    pub fn new(cfg: &ModelConfig, device: &Device) -> Self {
        let streams = cfg.streams();
        let sets = if cfg.shared_weights { 1 } else { streams.len() };
        let mut layers = Vec::with_capacity(sets * cfg.layers);
        for _ in 0..sets {
            for l in 0..cfg.layers {
                let dp = if cfg.layers > 1 {
                    cfg.drop_path * l as f64 / (cfg.layers - 1) as f64
                } else {
                    cfg.drop_path
                };
                layers.push(Block::new(
                    cfg.width,
                    cfg.heads,
                    cfg.mlp_ratio,
                    cfg.layer_norm_eps,
                    dp,
                    device,
                ));
            }
        }
        let b = cfg.active_bottlenecks();
        let fusion_layer = if cfg.fuses() {
            cfg.fusion_layer
        } else {
            cfg.layers
        };
        let model = Mbt {
            streams: streams
                .iter()
                .map(|s| {
                    StreamIo::new(
                        s,
                        cfg.width,
                        cfg.num_classes(),
                        cfg.classifier,
                        cfg.layer_norm_eps,
                        device,
                    )
                })
                .collect(),
            layers,
            bottleneck: (b > 0).then(|| {
                Param::from_tensor(Tensor::random(
                    [1, b, cfg.width],
                    Distribution::Normal(0.0, 0.02),
                    device,
                ))
            }),
            num_layers: cfg.layers,
            fusion_layer,
            fusion_code: match cfg.fusion {
                FusionKind::Late => 0,
                FusionKind::Bottleneck => 1,
                FusionKind::FullAttention => 2,
            },
            tokens: streams.iter().map(|s| s.embed_tokens()).collect(),
        };
        // burn initialises parameters lazily, at first use, from whatever the device's random
        // state is then. Touch every parameter now so the weights depend on the seed alone.
        model.visit(&mut Materialize);
        model
    }

    /// Puts the trunks' own last-layer weights (read from the trunk files in `dir`) into the
    /// streams that train one (`trunks.finetune_last`): fine-tuning starts from the trunk.
    pub fn with_trunk_weights(
        mut self,
        cfg: &ModelConfig,
        dir: &std::path::Path,
        device: &Device,
    ) -> Result<Self, crate::trunk::TrunkError> {
        let specs = [
            cfg.trunks.video.map(|t| t.spec()),
            cfg.trunks.audio.map(|t| t.spec()),
        ];
        for (io, spec) in self.streams.iter_mut().zip(specs) {
            if let (Some(last), Some(spec)) = (io.last.take(), spec) {
                let w = crate::trunk::last_weights(dir, &spec)?;
                io.last = Some(last.set_weights(&w, device));
            }
        }
        Ok(self)
    }

    fn block(&self, stream: usize, layer: usize) -> &Block {
        let set = if self.layers.len() == self.num_layers {
            0
        } else {
            stream
        };
        &self.layers[set * self.num_layers + layer]
    }

    /// Forward pass over one `[N, tokens, patch_dim]` input per stream; `drop` is `Some`
    /// while training (the stochastic-depth masks), `None` for inference.
    pub fn forward(&self, inputs: Vec<Tensor<3>>, drop: Option<DropPath>) -> Output {
        self.run(inputs, drop, false, false)
    }

    /// Forward pass from tokens already projected by [`Mbt::project`] (`[N, tokens', d]`
    /// per stream): the same result as [`Mbt::forward`] on the patches they came from.
    pub fn forward_projected(&self, tokens: Vec<Tensor<3>>, drop: Option<DropPath>) -> Output {
        self.run(tokens, drop, false, true)
    }

    /// Each stream's patches through its trunk last layer and linear projection (see
    /// [`StreamIo::project`]).
    pub fn project(&self, inputs: Vec<Tensor<3>>) -> Vec<Tensor<3>> {
        inputs
            .into_iter()
            .zip(&self.streams)
            .map(|(p, s)| s.project(p))
            .collect()
    }

    /// Forward pass that also records every stream's tokens after every layer.
    pub fn forward_traced(&self, inputs: Vec<Tensor<3>>) -> Output {
        self.run(inputs, None, true, false)
    }

    fn run(
        &self,
        inputs: Vec<Tensor<3>>,
        drop: Option<DropPath>,
        record: bool,
        projected: bool,
    ) -> Output {
        // Each (stream, layer) draws its own masks.
        let at = |s: usize, l: usize| drop.map(|d| d.derive((s * self.num_layers + l) as u64));
        let mut xs: Vec<Tensor<3>> = inputs
            .into_iter()
            .zip(&self.streams)
            .map(|(p, s)| if projected { s.place(p) } else { s.embed(p) })
            .collect();
        let mut trace: Vec<Vec<Tensor<3>>> = vec![Vec::new(); xs.len()];
        let lens: Vec<usize> = xs.iter().map(|x| x.dims()[1]).collect();
        let mut bottleneck: Option<Tensor<3>> = None;
        for l in 0..self.num_layers {
            let fused = l >= self.fusion_layer;
            xs = if !fused || self.fusion_code == 0 {
                xs.into_iter()
                    .enumerate()
                    .map(|(s, x)| self.block(s, l).forward(x, at(s, l)))
                    .collect()
            } else if self.fusion_code == 1 {
                let [b, _, d] = xs[0].dims();
                let bn = match bottleneck.take() {
                    Some(t) => t,
                    None => match &self.bottleneck {
                        Some(p) => p.val().expand([b, p.val().dims()[1], d]),
                        None => unreachable!("fusion_code 1 implies bottleneck tokens"),
                    },
                };
                let nb = bn.dims()[1];
                let mut outs = Vec::with_capacity(xs.len());
                let mut sum: Option<Tensor<3>> = None;
                for (s, x) in xs.into_iter().enumerate() {
                    let y = self
                        .block(s, l)
                        .forward(Tensor::cat(vec![x, bn.clone()], 1), at(s, l));
                    let n = lens[s];
                    let own = y.clone().narrow(1, 0, n);
                    let bs = y.narrow(1, n, nb);
                    sum = Some(match sum {
                        Some(acc) => acc + bs,
                        None => bs,
                    });
                    outs.push(own);
                }
                bottleneck = sum.map(|t| t / outs.len() as f64);
                outs
            } else {
                let qkvs: Vec<_> = xs
                    .iter()
                    .enumerate()
                    .map(|(s, x)| self.block(s, l).qkv(x.clone()))
                    .collect();
                let k = Tensor::cat(qkvs.iter().map(|t| t.k.clone()).collect(), 2);
                let v = Tensor::cat(qkvs.iter().map(|t| t.v.clone()).collect(), 2);
                xs.into_iter()
                    .zip(qkvs)
                    .enumerate()
                    .map(|(s, (x, t))| {
                        self.block(s, l)
                            .finish(x, t.q, k.clone(), v.clone(), at(s, l))
                    })
                    .collect()
            };
            if record {
                for (t, x) in trace.iter_mut().zip(&xs) {
                    t.push(x.clone());
                }
            }
        }
        let stream_logits: Vec<Tensor<2>> = xs
            .into_iter()
            .zip(&self.streams)
            .zip(&self.tokens)
            .map(|((x, s), &n)| s.logits(x, n))
            .collect();
        let count = stream_logits.len() as f64;
        let logits = stream_logits
            .iter()
            .cloned()
            .reduce(|a, b| a + b)
            .map(|t| t / count);
        let logits = match logits {
            Some(l) => l,
            None => unreachable!("a model has at least one stream"),
        };
        Output {
            logits,
            stream_logits,
            trace,
        }
    }
}
