#!/usr/bin/env python3
"""Compares two `mbtd --set sink.stdout_scores=true` demo runs (JSON lines): the reference
(x86_64) and the cross-built target's (under qemu-user).

* per-window model outputs (the audio head, the video head and the fused probabilities, by
  label): every value within TOL (default 1e-5, fp32);
* events: the same events in the same order, field by field, except `id`, `start_ms`,
  `end_ms` and `evidence` (file names made of the id), which come from the wall clock of each
  run; scores within TOL.

Usage: compare_demo.py REFERENCE.jsonl TARGET.jsonl [TOL]. Exit status 0 when they agree.
"""
import json
import sys

WALL_CLOCK = {"id", "start_ms", "end_ms", "evidence"}  # evidence file names carry the id


def load(path):
    windows, events = [], []
    with open(path) as f:
        for n, line in enumerate(f, 1):
            line = line.strip()
            if not line:
                continue
            try:
                v = json.loads(line)
            except json.JSONDecodeError as e:
                sys.exit(f"{path}:{n}: not JSON ({e}): {line[:200]}")
            (windows if "window" in v else events).append(v.get("window", v))
    return windows, events


def close(a, b, tol):
    if isinstance(a, float) or isinstance(b, float):
        return isinstance(a, (int, float)) and isinstance(b, (int, float)) and abs(a - b) <= tol
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(close(x, y, tol) for x, y in zip(a, b))
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(close(a[k], b[k], tol) for k in a)
    return a == b


def max_diff(a, b):
    """Largest |a - b| over the numbers of two same-shaped structures."""
    if isinstance(a, (int, float)) and isinstance(b, (int, float)) and not isinstance(a, bool):
        return abs(a - b)
    if isinstance(a, list) and isinstance(b, list):
        return max((max_diff(x, y) for x, y in zip(a, b)), default=0.0)
    if isinstance(a, dict) and isinstance(b, dict):
        return max((max_diff(a[k], b[k]) for k in a if k in b), default=0.0)
    return 0.0


def main():
    if len(sys.argv) not in (3, 4):
        sys.exit(__doc__)
    ref_path, tgt_path = sys.argv[1], sys.argv[2]
    tol = float(sys.argv[3]) if len(sys.argv) == 4 else 1e-5
    ref_w, ref_e = load(ref_path)
    tgt_w, tgt_e = load(tgt_path)
    bad = []
    if not ref_w:
        bad.append(f"{ref_path}: no window scores (run mbtd with --set sink.stdout_scores=true)")
    if len(ref_w) != len(tgt_w):
        bad.append(f"{len(ref_w)} windows on the reference, {len(tgt_w)} on the target")
    worst = 0.0
    for r, t in zip(ref_w, tgt_w):
        # Model outputs: the heads' and the fused probabilities; the rest (index, times,
        # modalities) must be identical.
        for k in r.keys() | t.keys():
            if k in ("fused", "audio", "video"):
                worst = max(worst, max_diff(r.get(k), t.get(k)))
                if not close(r.get(k), t.get(k), tol):
                    bad.append(f"window {r.get('index')}: {k} differs by more than {tol}: {r.get(k)} vs {t.get(k)}")
            elif r.get(k) != t.get(k):
                bad.append(f"window {r.get('index')}: {k} = {r.get(k)} vs {t.get(k)}")
    if len(ref_e) != len(tgt_e):
        bad.append(f"{len(ref_e)} events on the reference, {len(tgt_e)} on the target")
    for i, (r, t) in enumerate(zip(ref_e, tgt_e)):
        r = {k: v for k, v in r.items() if k not in WALL_CLOCK}
        t = {k: v for k, v in t.items() if k not in WALL_CLOCK}
        worst = max(worst, max_diff(r, t))
        if not close(r, t, tol):
            bad.append(f"event {i}: {r} vs {t}")
    print(f"{len(ref_w)} windows, {len(ref_e)} events; largest difference in model outputs and event scores: {worst:.3g} (tolerance {tol:g})")
    if bad:
        for b in bad[:20]:
            print("MISMATCH:", b)
        if len(bad) > 20:
            print(f"... and {len(bad) - 20} more")
        sys.exit(1)
    print("the target's windows and events agree with the reference")


main()
