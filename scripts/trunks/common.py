"""Shared helpers for the trunk conversion scripts (scripts/convert-trunks.sh runs them).

Nothing here downloads anything: convert-trunks.sh fetches and checks every input first and
passes the folders on the command line / in the environment.
"""
import hashlib
import json
import os
import time

import numpy as np

SR = 16000


def sha256_file(path: str) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


class Report:
    """Appends human-readable lines to conversion-report.txt and keeps machine-readable facts."""

    def __init__(self, path: str, facts_path: str):
        self.path = path
        self.facts_path = facts_path
        self.facts = {}
        if os.path.exists(facts_path):
            with open(facts_path) as f:
                self.facts = json.load(f)

    def line(self, text: str = "") -> None:
        print(text, flush=True)
        with open(self.path, "a") as f:
            f.write(text + "\n")

    def fact(self, trunk: str, key: str, value) -> None:
        self.facts.setdefault(trunk, {})[key] = value
        with open(self.facts_path, "w") as f:
            json.dump(self.facts, f, indent=1, sort_keys=True)
            f.write("\n")


def read_audio_16k_mono(path: str) -> np.ndarray:
    """Decodes a sound file (wav/ogg via libsndfile), mixes to mono, resamples to 16 kHz with a
    polyphase filter (scipy.signal.resample_poly), then quantises to 16-bit PCM so that every
    consumer sees exactly the same samples."""
    import soundfile
    from math import gcd

    from scipy.signal import resample_poly

    x, sr = soundfile.read(path, dtype="float64", always_2d=True)
    x = x.mean(axis=1)
    if sr != SR:
        g = gcd(sr, SR)
        x = resample_poly(x, SR // g, sr // g)
    return quantise_i16(x)


def quantise_i16(x: np.ndarray) -> np.ndarray:
    q = np.clip(np.round(np.asarray(x, dtype=np.float64) * 32768.0), -32768, 32767)
    return (q / 32768.0).astype(np.float32)


def time_ort(sess, feeds: dict, repeats: int = 50, warmup: int = 5) -> tuple:
    """(median, minimum) wall time of one run, in milliseconds. On a shared machine the minimum
    is the better estimate of the unloaded cost; the median says what a busy machine gives."""
    for _ in range(warmup):
        sess.run(None, feeds)
    ts = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        sess.run(None, feeds)
        ts.append(time.perf_counter() - t0)
    return float(np.median(ts) * 1e3), float(np.min(ts) * 1e3)


def ort_session(path: str):
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.intra_op_num_threads = 1
    so.inter_op_num_threads = 1
    so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    return ort.InferenceSession(path, so, providers=["CPUExecutionProvider"])


def topk(probs: np.ndarray, names, k: int = 5) -> str:
    idx = np.argsort(-probs)[:k]
    return ", ".join(f"{names[i]} {probs[i]:.3f}" for i in idx)


def softmax(x: np.ndarray) -> np.ndarray:
    e = np.exp(x - x.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


def onnx_summary(path: str) -> dict:
    import onnx

    m = onnx.load(path)
    def shape(v):
        return [d.dim_param if d.dim_param else d.dim_value for d in v.type.tensor_type.shape.dim]
    ops = {}
    for n in m.graph.node:
        ops[n.op_type] = ops.get(n.op_type, 0) + 1
    return {
        "opset": max(o.version for o in m.opset_import if o.domain in ("", "ai.onnx")),
        "inputs": {v.name: shape(v) for v in m.graph.input},
        "outputs": {v.name: shape(v) for v in m.graph.output},
        "ops": dict(sorted(ops.items())),
        "sha256": sha256_file(path),
        "bytes": os.path.getsize(path),
    }
