"""Fast lab (2026-11-27): the PyTorch twin of `mbt train`'s model (bench/train_twin.py's Mbt,
same architecture and config) trained on tokens written by `mbt tokenize` (the same tokenizer),
to ask in minutes what an `mbt train` run answers in an hour. Not the product; weights differ.

Inputs (paths as used on the build machine):
  /work/tok/sel.txt + NAME.{a,v}.npy  first 1500 train and 300 val clips of the seed-0 data set
                                      (twin-lab-dump.sh)
  /work/tok/s7/                       300 fresh renders of the *training* sources, data seed 7
                                      (`twin-lab-gen.sh`-style: mbt data build --seed 7 ...)
  /work/tok/gSEED/                    1500-clip fresh training splits, seeds 21-26 (twin-lab-gen.sh)
Prints per epoch: running train accuracy, val (unseen sources) and s7 (seen sources) top-1 of
the fused output / video head / audio head.
    ~/.cache/mbt-pyref/bin/python twin-lab.py --epochs 30             # same 1500 clips every epoch
    ~/.cache/mbt-pyref/bin/python twin-lab.py --epochs 30 --fresh 6   # epoch k: set k mod 7
Logs: twin-lab-same-clips.log (stopped at epoch 14), twin-lab-fresh-clips.log (stopped at 22).
"""
import sys, time, tomllib, argparse, numpy as np, torch, torch.nn.functional as F
sys.path.insert(0, '/work/main/bench')
from train_twin import Mbt
ap = argparse.ArgumentParser()
ap.add_argument('--lr', type=float, default=1e-3); ap.add_argument('--epochs', type=int, default=10)
ap.add_argument('--mw', type=float, default=1.0); ap.add_argument('--ls', type=float, default=0.1)
ap.add_argument('--wd', type=float, default=0.05); ap.add_argument('--ntrain', type=int, default=1500)
ap.add_argument('--threads', type=int, default=2); ap.add_argument('--seed', type=int, default=0)
ap.add_argument('--fresh', type=int, default=0)
ap.add_argument('--set', nargs='*', default=[])
a = ap.parse_args()
cfg = tomllib.load(open('/work/main/configs/edge.toml', 'rb'))
for kv in a.set:
    k, v = kv.split('='); cfg[k] = type(cfg[k])(v) if k in cfg else v
torch.set_num_threads(a.threads); torch.manual_seed(a.seed)
def load(rows, d='/work/tok'):
    v = torch.tensor(np.stack([np.load(f'{d}/{r[1]}.v.npy') for r in rows]))
    au = torch.tensor(np.stack([np.load(f'{d}/{r[1]}.a.npy') for r in rows]))
    return v, au, torch.tensor([int(r[2]) for r in rows])
rows = [l.split() for l in open('/work/tok/sel.txt')]
tr = [r for r in rows if r[0] == 'train'][:a.ntrain]; va = [r for r in rows if r[0] == 'val']
V, A, Y = load(tr); VAL = load(va); S7 = load([l.split() for l in open('/work/tok/s7.txt')], '/work/tok/s7')
model = Mbt(cfg)
opt = torch.optim.AdamW(model.parameters(), lr=a.lr, weight_decay=a.wd)
bs = 32; steps = a.epochs * ((len(Y) + bs - 1) // bs)
sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=a.lr, total_steps=steps, pct_start=0.1)
def ev(d):
    model.eval()
    with torch.no_grad():
        outs = [model([d[0][i:i+100], d[1][i:i+100]]) for i in range(0, len(d[2]), 100)]
    f = torch.cat([o[0] for o in outs]); hv = torch.cat([o[1][0] for o in outs]); ha = torch.cat([o[1][1] for o in outs])
    acc = lambda x: round(100 * (x.argmax(1) == d[2]).float().mean().item(), 1)
    return f'{acc(f)}/{acc(hv)}/{acc(ha)}'
print(vars(a), flush=True)
sets = [(V, A, Y)] + [None] * a.fresh
for ep in range(a.epochs):
    k = ep % len(sets)
    if k == 0:
        V, A, Y = sets[0]
    else:
        g = f'/work/tok/g{20 + k}'
        V, A, Y = load([l.split() for l in open(g + '/list.txt')], g)
    model.train(); perm = torch.randperm(len(Y)); corr = 0; t0 = time.time()
    for i in range(0, len(Y), bs):
        idx = perm[i:i+bs]
        f, heads = model([V[idx], A[idx]])
        loss = F.cross_entropy(f, Y[idx], label_smoothing=a.ls)
        if a.mw: loss = loss + a.mw * sum(F.cross_entropy(h, Y[idx], label_smoothing=a.ls) for h in heads)
        opt.zero_grad(); loss.backward(); torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0); opt.step(); sched.step()
        corr += (f.argmax(1) == Y[idx]).sum().item()
    print(ep, 'train', round(100 * corr / len(Y), 1), 'val f/v/a', ev(VAL), 's7 f/v/a', ev(S7), f'{time.time()-t0:.0f}s', flush=True)
