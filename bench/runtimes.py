#!/usr/bin/env python3
"""tract vs onnxruntime latency on exported models, side by side in one run, one thread each.

For each model variant: `mbt export --random-init` (fp32, int8 dynamic), `mbt bench infer`
(tract, in-process timing, median of 30 runs) and onnxruntime (intra_op_num_threads=1,
median of 30 runs) on inputs of the same shapes. Prints a table with the ratio tract/onnxruntime.

    ~/.cache/mbt-pyref/bin/python bench/runtimes.py [path/to/mbt] [--config configs/edge.toml]
"""
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time

import numpy as np
import onnxruntime as ort

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), ".."))


def main() -> None:
    mbt = sys.argv[1] if len(sys.argv) > 1 else os.path.join(os.environ.get("CARGO_TARGET_DIR", os.path.expanduser("~/.cache/mbt-edge/target")), "release/mbt")
    config = sys.argv[2] if len(sys.argv) > 2 else "configs/edge.toml"
    run = lambda *a: subprocess.run([mbt, *a], cwd=ROOT, check=True, capture_output=True, text=True).stdout
    print(f"# {config}; machine: {open('/proc/cpuinfo').read().split('model name')[1].split(':')[1].splitlines()[0].strip()}, one thread each")
    print(f"{'variant':<14} {'tract ms':>9} {'ort ms':>9} {'tract/ort':>9} {'tract load ms':>14}")
    with tempfile.TemporaryDirectory() as d:
        for name, extra in [("fp32", []), ("int8 dynamic", ["--int8", "dynamic"]), ("int8 weights", ["--int8", "weights"])]:
            m = os.path.join(d, "m.onnx")
            run("export", "--config", config, "--random-init", "--seed", "1", "--out", m, *extra)
            t = json.loads(run("bench", "infer", "--model", m, "--runs", "30", "--json"))
            opts = ort.SessionOptions()
            opts.intra_op_num_threads = 1
            opts.inter_op_num_threads = 1
            sess = ort.InferenceSession(m, opts, providers=["CPUExecutionProvider"])
            feeds = {}
            for i in sess.get_inputs():
                shape = [1] + [int(x) for x in i.shape[1:]]
                feeds[i.name] = np.random.default_rng(0).uniform(-1, 1, shape).astype(np.float32)
            for _ in range(3):
                sess.run(None, feeds)
            times = []
            for _ in range(30):
                t0 = time.perf_counter()
                sess.run(None, feeds)
                times.append((time.perf_counter() - t0) * 1e3)
            o = statistics.median(times)
            print(f"{name:<14} {t['median_ms']:>9.2f} {o:>9.2f} {t['median_ms'] / o:>9.2f} {t['load_optimise_ms']:>14.1f}")


if __name__ == "__main__":
    main()
