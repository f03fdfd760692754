"""Fallback 4: class-balanced decisions on the validation split, never the test split.

Reads `mbt eval --logits` JSON (crop-averaged fused logits). Two-fold cross-fitting on val
(clips split by index parity): every rule is fitted on one half and scored on the other, so the
reported val figures are not fitted on the clips they are scored on.
  * top-1 with per-class logit offsets (coordinate ascent on top-1 of the fitting half);
  * events: per label (not `none`), F1 of "score >= threshold" with one global threshold 0.5
    against per-label F1-best thresholds (grid 0.05..0.95, as `mbt eval` does).
"""
import json, sys
import numpy as np

d = json.load(open(sys.argv[1]))
labels = d["labels"]
L = np.array(d["logits"], dtype=np.float64)
y = np.array(d["targets"])
C = len(labels)
P = np.exp(L - L.max(1, keepdims=True)); P /= P.sum(1, keepdims=True)
folds = [np.arange(len(y)) % 2 == k for k in (0, 1)]

def top1(logits, yy): return 100.0 * (logits.argmax(1) == yy).mean()

def fit_offsets(logits, yy, rounds=4):
    b = np.zeros(C)
    grid = np.linspace(-1.5, 1.5, 31)
    for _ in range(rounds):
        for c in range(C):
            best = (top1(logits + b, yy), b[c])
            for g in grid:
                bb = b.copy(); bb[c] = g
                t = top1(logits + bb, yy)
                if t > best[0] + 1e-9: best = (t, g)
            b[c] = best[1]
    return b

def f1(p, yy, c, t):
    pred = p[:, c] >= t; true = yy == c
    tp = (pred & true).sum(); fp = (pred & ~true).sum(); fn = (~pred & true).sum()
    return 0.0 if tp == 0 else 2 * tp / (2 * tp + fp + fn)

def fit_thr(p, yy, c):
    best = (-1, 0.5)
    for k in range(1, 20):
        t = 0.05 * k; v = f1(p, yy, c, t)
        if v >= best[0]: best = (v, t)
    return best[1]

ev = [c for c in range(C) if labels[c] != "none"]
plain, offs, f_glob, f_lab = [], [], [], []
per_label = {labels[c]: [] for c in ev}
for k in (0, 1):
    fit, test = folds[k], folds[1 - k]
    b = fit_offsets(L[fit], y[fit])
    plain.append(top1(L[test], y[test])); offs.append(top1(L[test] + b, y[test]))
    g = [f1(P[test], y[test], c, 0.5) for c in ev]
    t = [f1(P[test], y[test], c, fit_thr(P[fit], y[fit], c)) for c in ev]
    f_glob.append(np.mean(g)); f_lab.append(np.mean(t))
    for c, a, bb in zip(ev, g, t): per_label[labels[c]].append((a, bb))
print(f"{sys.argv[1]}: {len(y)} clips, {d['crops']} crops, 2-fold cross-fit on the split")
print(f"top-1 argmax            {np.mean(plain):6.2f} %  (folds {plain[0]:.2f} / {plain[1]:.2f})")
print(f"top-1 + class offsets   {np.mean(offs):6.2f} %  (folds {offs[0]:.2f} / {offs[1]:.2f})")
print(f"event macro-F1, global 0.5        {100*np.mean(f_glob):6.2f}")
print(f"event macro-F1, per-label F1-best {100*np.mean(f_lab):6.2f}")
for n, v in per_label.items():
    print(f"  {n:20s} F1 at 0.5 {100*np.mean([a for a,_ in v]):5.1f}  per-label {100*np.mean([b for _,b in v]):5.1f}")
b = fit_offsets(L, y)
print("offsets fitted on the whole split:", {labels[c]: round(float(b[c]), 2) for c in range(C)})
