#!/usr/bin/env python3
"""Independent check of exported models: the ONNX checker, and onnxruntime against tract.

For each model variant it runs, through the real `mbt` binary: `mbt export --random-init`,
`mbt tokenize` on the golden speech clip and a synthetic Y4M clip, `mbt infer` (tract); then
checks the file with `onnx.checker.check_model(full_check=True)` and runs it in onnxruntime on
the same token files. Prints the max abs difference per output; fails above 1e-4.

    python3 -m venv ~/.cache/mbt-pyref && ~/.cache/mbt-pyref/bin/pip install onnx onnxruntime numpy
    ~/.cache/mbt-pyref/bin/python crates/mbt-model/tests/ort_check.py [path/to/mbt]

(Also run by `cargo test -p mbt-host --test model -- --ignored onnxruntime`.)
"""
import json
import os
import subprocess
import sys
import tempfile

import numpy as np
import onnx
import onnxruntime as ort

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "../../.."))
TOL = 1e-4
# int8 exports: each runtime's int8 logits against its own fp32 logits of the same weights.
# The two runtimes need not agree to 1e-4 on int8 graphs (they may requantise differently).
INT8_TOL = 0.05
VARIANTS = {
    "edge default (bottleneck, Lf 3, B 4)": [],
    "full attention, Lf 2": ["--set", "fusion=full_attention", "--set", "fusion_layer=2"],
    "late fusion, shared weights, gap": ["--set", "fusion=late", "--set", "shared_weights=true", "--set", "classifier=gap"],
    "early fusion (Lf 0), B 16": ["--set", "fusion_layer=0", "--set", "bottlenecks=16"],
    "int8 dynamic (MatMulInteger)": ["--int8", "dynamic"],
    "int8 weights (DequantizeLinear)": ["--int8", "weights"],
}


def y4m(path: str, frames: int = 16, w: int = 160, h: int = 120) -> None:
    """A grey-gradient C444 clip (Y4M is the format `mbt tokenize video` reads without codecs)."""
    with open(path, "wb") as f:
        f.write(f"YUV4MPEG2 W{w} H{h} F8:1 Ip A1:1 C444\n".encode())
        for i in range(frames):
            f.write(b"FRAME\n")
            y = ((np.arange(w)[None, :] * 3 + np.arange(h)[:, None] * 2 + i * 9) % 220 + 16).astype(np.uint8)
            f.write(y.tobytes() + np.full((2, h, w), 128, np.uint8).tobytes())


def main() -> int:
    mbt = sys.argv[1] if len(sys.argv) > 1 else os.path.join(os.environ.get("CARGO_TARGET_DIR", os.path.expanduser("~/.cache/mbt-edge/target")), "debug/mbt")
    run = lambda *a: subprocess.run([mbt, *a], cwd=ROOT, check=True, capture_output=True, text=True).stdout
    worst = 0.0
    with tempfile.TemporaryDirectory() as d:
        a, v, clip = (os.path.join(d, n) for n in ("a.npy", "v.npy", "clip.y4m"))
        run("tokenize", "audio", "crates/mbt-core/tests/fixtures/cli_speech_stereo_s24.wav", "--patches", "--out", a)
        y4m(clip)
        # configs/edge.toml groups frames in tubelets of 4 (the tokenizer's default is 2).
        run("tokenize", "video", clip, "--set", "video.tubelet=4", "--out", v)
        feeds = {"video": np.load(v)[None], "audio": np.load(a)[None]}
        fp32 = {}
        for name, extra in VARIANTS.items():
            m = os.path.join(d, "m.onnx")
            run("export", "--config", "configs/edge.toml", "--random-init", "--seed", "5", "--out", m, *extra)
            onnx.checker.check_model(onnx.load(m), full_check=True)
            tract = json.loads(run("infer", "--model", m, "--video", v, "--audio", a))
            sess = ort.InferenceSession(m, providers=["CPUExecutionProvider"])
            outs = dict(zip([o.name for o in sess.get_outputs()], sess.run(None, feeds)))
            int8 = "--int8" in extra
            if not extra:
                fp32 = {"tract": tract, "ort": outs}
            for key in ("logits", "logits_video", "logits_audio"):
                diff = float(np.abs(np.array(tract[key]) - outs[key]).max())
                if not int8:
                    worst = max(worst, diff)
                    print(f"{name:<34} {key:<13} onnxruntime vs tract {diff:.2e}")
                    continue
                dt = float(np.abs(np.array(tract[key]) - np.array(fp32["tract"][key])).max())
                do = float(np.abs(outs[key] - fp32["ort"][key]).max())
                worst_int8 = max(dt, do)
                print(f"{name:<34} {key:<13} vs fp32: tract {dt:.2e}, onnxruntime {do:.2e} (runtimes differ by {diff:.2e})")
                if worst_int8 > INT8_TOL:
                    print(f"  FAIL: int8 deviates from fp32 by more than {INT8_TOL}")
                    worst = float("inf")
    print(f"onnx checker passed on {len(VARIANTS)} exports; worst difference {worst:.2e} (tolerance {TOL:g})")
    return 0 if worst <= TOL else 1


if __name__ == "__main__":
    sys.exit(main())
