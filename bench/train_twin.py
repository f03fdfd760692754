#!/usr/bin/env python3
"""PyTorch CPU twin of `mbt train`'s model step, for the training-throughput ratio.

Builds the same MBT as the config (per-stream patch embedding + CLS + positions, pre-norm
blocks, bottleneck / full-attention / late fusion from layer Lf, per-stream CLS heads, loss on
the fused logits plus each head's) with the same batch size, optimiser (AdamW or SGD with
momentum), gradient clipping and stochastic depth, and times optimisation steps on random
inputs of the model's token shapes. Weights need not match `mbt`'s; the arithmetic must.

It does *not* tokenize or augment (mbt's figure includes both), so the comparison favours the
twin slightly.

    ~/.cache/mbt-pyref/bin/python bench/train_twin.py CONFIG.toml --threads 2 --steps 20
prints one JSON line: {"samples_per_s": ..., "s_per_step": ..., "batch": ..., "threads": ...}
"""
import argparse
import json
import math
import time
import tomllib

import torch
import torch.nn as nn
import torch.nn.functional as F


def tokens(cfg):
    a = cfg.get("tokenizer", {}).get("audio", {})
    v = cfg.get("tokenizer", {}).get("video", {})
    frames, bins = a.get("num_frames", 1024), a.get("num_mel_bins", 128)
    pt, pf = a.get("patch_time", 16), a.get("patch_freq", 16)
    t, h, w = v.get("num_frames", 8), v.get("height", 224), v.get("width", 224)
    p, tub = v.get("patch_size", 16), v.get("tubelet", 1)
    video = ((t // tub) * (h // p) * (w // p), tub * p * p * 3)
    audio = ((frames // pt) * (bins // pf), pt * pf)
    return video, audio


class Block(nn.Module):
    def __init__(self, d, heads, ratio, eps, dp):
        super().__init__()
        self.ln1, self.ln2 = nn.LayerNorm(d, eps=eps), nn.LayerNorm(d, eps=eps)
        self.qkv, self.proj = nn.Linear(d, 3 * d), nn.Linear(d, d)
        self.fc1, self.fc2 = nn.Linear(d, ratio * d), nn.Linear(ratio * d, d)
        self.heads, self.dp = heads, dp

    def split(self, x):
        n, t, d = x.shape
        q, k, v = self.qkv(self.ln1(x)).chunk(3, dim=-1)
        f = lambda z: z.view(n, t, self.heads, d // self.heads).transpose(1, 2)
        return f(q), f(k), f(v)

    def drop(self, y):
        if not self.training or self.dp == 0:
            return y
        keep = 1 - self.dp
        mask = torch.bernoulli(torch.full((y.shape[0], 1, 1), keep))
        return y * mask / keep

    def finish(self, x, q, k, v):
        s = (q @ k.transpose(-1, -2)) / math.sqrt(q.shape[-1])
        a = (s.softmax(-1) @ v).transpose(1, 2).reshape(x.shape)
        x = x + self.drop(self.proj(a))
        return x + self.drop(self.fc2(F.gelu(self.fc1(self.ln2(x)))))

    def forward(self, x):
        return self.finish(x, *self.split(x))


class Stream(nn.Module):
    def __init__(self, tokens, dim, d, classes, eps):
        super().__init__()
        self.embed = nn.Linear(dim, d)
        self.cls = nn.Parameter(torch.zeros(1, 1, d))
        self.pos = nn.Parameter(torch.randn(1, tokens + 1, d) * 0.02)
        self.norm, self.head = nn.LayerNorm(d, eps=eps), nn.Linear(d, classes)

    def embed_tokens(self, p):
        x = self.embed(p)
        return torch.cat([self.cls.expand(x.shape[0], -1, -1), x], 1) + self.pos

    def logits(self, x):
        return self.head(self.norm(x[:, 0]))


class Mbt(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        d, L = cfg.get("width", 192), cfg.get("layers", 6)
        heads, ratio = cfg.get("heads", 3), cfg.get("mlp_ratio", 4)
        eps, dp = cfg.get("layer_norm_eps", 1e-6), cfg.get("drop_path", 0.1)
        classes = len(cfg.get("labels", [0] * 6))
        self.fusion = cfg.get("fusion", "bottleneck")
        self.lf = cfg.get("fusion_layer", L) if self.fusion != "late" else L
        self.b = cfg.get("bottlenecks", 4) if self.fusion == "bottleneck" else 0
        if self.fusion == "bottleneck" and self.b == 0:
            self.lf = L
        shapes = tokens(cfg)
        self.streams = nn.ModuleList([Stream(t, p, d, classes, eps) for t, p in shapes])
        sets = 1 if cfg.get("shared_weights", False) else 2
        self.layers = nn.ModuleList(
            [nn.ModuleList([Block(d, heads, ratio, eps, dp * l / max(L - 1, 1)) for l in range(L)]) for _ in range(sets)]
        )
        self.L = L
        self.bottleneck = nn.Parameter(torch.randn(1, max(self.b, 1), d) * 0.02)

    def block(self, s, l):
        return self.layers[min(s, len(self.layers) - 1)][l]

    def forward(self, inputs):
        xs = [s.embed_tokens(p) for s, p in zip(self.streams, inputs)]
        lens = [x.shape[1] for x in xs]
        bn = None
        for l in range(self.L):
            if l < self.lf:
                xs = [self.block(s, l)(x) for s, x in enumerate(xs)]
            elif self.fusion == "bottleneck":
                if bn is None:
                    bn = self.bottleneck[:, : self.b].expand(xs[0].shape[0], -1, -1)
                outs, acc = [], 0
                for s, x in enumerate(xs):
                    y = self.block(s, l)(torch.cat([x, bn], 1))
                    outs.append(y[:, : lens[s]])
                    acc = acc + y[:, lens[s]:]
                bn, xs = acc / len(xs), outs
            else:
                qkv = [self.block(s, l).split(x) for s, x in enumerate(xs)]
                k = torch.cat([t[1] for t in qkv], 2)
                v = torch.cat([t[2] for t in qkv], 2)
                xs = [self.block(s, l).finish(x, t[0], k, v) for s, (x, t) in enumerate(zip(xs, qkv))]
        heads = [s.logits(x) for s, x in zip(self.streams, xs)]
        return sum(heads) / len(heads), heads


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("config")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--warmup", type=int, default=3)
    args = ap.parse_args()
    with open(args.config, "rb") as f:
        cfg = tomllib.load(f)
    tr = cfg.get("train", {})
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    model = Mbt(cfg).train()
    bs = tr.get("batch_size", 32)
    lr, wd = tr.get("lr", 0.05), tr.get("weight_decay", 1e-4)
    if tr.get("optimizer", "sgd") == "adam_w":
        opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=wd)
    else:
        opt = torch.optim.SGD(model.parameters(), lr=lr, momentum=tr.get("momentum", 0.9), weight_decay=wd)
    (tv, pv), (ta, pa) = tokens(cfg)
    classes = len(cfg.get("labels", [0] * 6))
    video, audio = torch.randn(bs, tv, pv), torch.randn(bs, ta, pa)
    y = torch.randint(0, classes, (bs,))
    w = tr.get("modality_loss_weight", 1.0)
    ls = tr.get("label_smoothing", 0.1)
    clip = tr.get("clip_norm", 1.0)

    def step():
        fused, heads = model([video, audio])
        loss = F.cross_entropy(fused, y, label_smoothing=ls) + w * sum(F.cross_entropy(h, y, label_smoothing=ls) for h in heads)
        opt.zero_grad()
        loss.backward()
        if clip > 0:
            torch.nn.utils.clip_grad_norm_(model.parameters(), clip)
        opt.step()

    for _ in range(args.warmup):
        step()
    t0 = time.perf_counter()
    for _ in range(args.steps):
        step()
    dt = (time.perf_counter() - t0) / args.steps
    print(json.dumps({"samples_per_s": bs / dt, "s_per_step": dt, "batch": bs, "threads": args.threads, "torch": torch.__version__}))


if __name__ == "__main__":
    main()
