"""Our own PyTorch FD-CMDIE, for racing `sigsweep bench train --model
fdcmdie` on the same MMSA-format file (`make bench-reference`).

Written from the paper (seed 001, eqs. 1-32) and sigsweep's documented
choices (worker/src/models/fdcmdie/mod.rs), at sigsweep's defaults: width
128, 8 heads, 3 interaction layers, 2-layer unidirectional LSTMs for audio
and vision, dropout 0.1, k_cl = 10 with every pair of the two sets
(`cl_pairs = "all"`: 2 + 5k positive and 3 + 6k negative pairs per anchor),
tau 0.5, margin 0.5, lambda_tri 0.1, lambda_cl 0.1, AdamW lr 1e-4, batch 32,
time pooling to at most 50 steps. Each batch encodes its anchors and their
similar and different samples (32 x 21 samples through the encoders) and
fuses the anchors. The sets are built once before training from the
min-max scaled time means of the raw inputs, as sigsweep does. It is a speed
reference, not a numerical one: no weights are shared with sigsweep, and a
class with fewer than k_cl other samples fills its set by repetition (sigsweep
leaves such slots out of the loss).

With --device cuda the model and the data live on the GPU and each epoch's
time ends after the GPU has finished (torch.cuda.synchronize); the figures
then include the peak GPU memory torch allocated.

    python3 fdcmdie_train.py DATA.pkl [--epochs 3] [--threads 1] [--device cpu] [--json]
"""

import argparse
import json
import math
import pickle
import resource
import time

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F


def pool_time(a, max_len):
    """[n, len, d] averaged over windows of ceil(len / max_len) steps."""
    n, length, d = a.shape
    if max_len == 0 or length <= max_len:
        return a
    w = -(-length // max_len)
    steps = -(-length // w)
    return np.stack([a[:, t * w:min((t + 1) * w, length)].mean(1) for t in range(steps)], 1)


def label_class(y):
    return np.round(np.clip(y, -3.0, 3.0)).astype(np.int64)


def build_sets(feats, labels, k, rng):
    """k most similar same-class and k least similar other-class samples."""
    lo, hi = feats.min(0), feats.max(0)
    x = (feats - lo) / np.maximum(hi - lo, 1e-12)
    x = x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-8)
    sim = x @ x.T
    cls = label_class(labels)
    similar, different = [], []
    for i in range(len(x)):
        same = np.flatnonzero((cls == cls[i]) & (np.arange(len(x)) != i))
        other = np.flatnonzero(cls != cls[i])
        s = same[np.argsort(-sim[i, same], kind="stable")][:k]
        d = other[np.argsort(sim[i, other], kind="stable")][:k]
        fill = lambda v: v if len(v) == k else (rng.choice(v, k) if len(v) else np.full(k, i))
        similar.append(fill(s))
        different.append(fill(d))
    return np.array(similar), np.array(different)


class Projector(nn.Module):
    def __init__(self, w, p):
        super().__init__()
        self.norm, self.linear, self.drop = nn.LayerNorm(w), nn.Linear(w, w), nn.Dropout(p)

    def forward(self, x):
        return self.drop(torch.tanh(self.linear(self.norm(x))))


class Ffn(nn.Module):
    def __init__(self, d_in, hidden, d_out, p):
        super().__init__()
        self.l1, self.l2, self.drop = nn.Linear(d_in, hidden), nn.Linear(hidden, d_out), nn.Dropout(p)

    def forward(self, x):
        return self.l2(self.drop(F.relu(self.l1(x))))


class Dipu(nn.Module):
    """Eqs. 13-24: cross-attention both ways, self-attention, a second
    cross-attention with the first one's projections, FFN."""

    def __init__(self, w, heads, p):
        super().__init__()
        mha = lambda: nn.MultiheadAttention(w, heads, dropout=p, batch_first=True)
        self.cross_g, self.cross_x, self.self_g, self.self_x = mha(), mha(), mha(), mha()
        self.ln = nn.ModuleList([nn.LayerNorm(w) for _ in range(8)])
        self.ffn_g, self.ffn_x = Ffn(w, 4 * w, w, p), Ffn(w, 4 * w, w, p)

    def forward(self, pe, g, x):
        att = lambda m, q, kv: m(q, kv, kv, need_weights=False)[0]
        g0 = self.ln[0](g + pe[: g.shape[1]])
        x0 = self.ln[1](x + pe[: x.shape[1]])
        g1 = self.ln[2](att(self.cross_g, g0, x0) + g0)
        x1 = self.ln[3](att(self.cross_x, x0, g0) + x0)
        g2 = self.ln[4](att(self.self_g, g1, g1) + g1)
        x2 = self.ln[5](att(self.self_x, x1, x1) + x1)
        g3 = self.ln[6](att(self.cross_g, g2, x0) + g2)
        x3 = self.ln[7](att(self.cross_x, x2, g0) + x2)
        return self.ffn_g(g3) + g3, self.ffn_x(x3) + x3


class Gap(nn.Module):
    """Eqs. 25-29: gated attention pooling of the three enhanced sequences."""

    def __init__(self, w):
        super().__init__()
        self.norms = nn.ModuleList([nn.LayerNorm(w) for _ in range(3)])
        self.gates = nn.ModuleList([Ffn(w, w // 2, 1, 0.0) for _ in range(3)])
        self.score = Ffn(w, w // 2, 1, 0.0)

    def forward(self, gs):
        gated, scores = [], []
        for m, g in enumerate(gs):
            normed = self.norms[m](g)
            gate = torch.sigmoid(self.gates[m](normed.mean(1)))
            gm = normed * gate[:, :, None]
            scores.append(self.score(gm.mean(1)))
            gated.append(gm)
        weights = torch.softmax(torch.cat(scores, 1), 1)
        return sum(g * weights[:, m, None, None] for m, g in enumerate(gated))


def positional(length, w):
    pos = torch.arange(length, dtype=torch.float32)[:, None]
    div = torch.exp(torch.arange(0, w, 2, dtype=torch.float32) * (-math.log(10000.0) / w))
    pe = torch.zeros(length, w)
    pe[:, 0::2], pe[:, 1::2] = torch.sin(pos * div), torch.cos(pos * div)
    return pe


class FdCmdie(nn.Module):
    def __init__(self, dims, lens, w=128, heads=8, layers=3, lstm_layers=2, p=0.1):
        super().__init__()
        self.text = nn.Linear(dims[0], w)
        self.audio = nn.LSTM(dims[1], w, lstm_layers, batch_first=True)
        self.vision = nn.LSTM(dims[2], w, lstm_layers, batch_first=True)
        self.shared = Projector(w, p)
        self.private = nn.ModuleList([Projector(w, p) for _ in range(3)])
        self.register_buffer("pe", positional(sum(lens), w))
        self.units = nn.ModuleList([nn.ModuleList([Dipu(w, heads, p) for _ in range(3)]) for _ in range(layers)])
        self.gaps = nn.ModuleList([Gap(w) for _ in range(layers)])
        self.head = Ffn(4 * w, w, 1, p)

    def encode(self, t, a, v):
        f = [self.text(t), self.vision(v)[0], self.audio(a)[0]]
        return [self.shared(x) for x in f], [self.private[m](x) for m, x in enumerate(f)]

    def fuse(self, sim, dis):
        g = torch.cat(sim, 1)
        for units, gap in zip(self.units, self.gaps):
            out = [u(self.pe, g, x) for u, x in zip(units, dis)]
            g = gap([o[0] for o in out])
            dis = [o[1] for o in out]
        return self.head(torch.cat([g.mean(1)] + [x.mean(1) for x in dis], 1))


def pairs(b, k):
    """Rows of the contrastive matrix [Ts; Vs; As; Td; Vd; Ad] (each over the
    extended batch of e = b(1 + 2k) slots) forming eqs. 9-11's pairs."""
    e = b * (1 + 2 * k)
    row = lambda kind, slot: kind * e + slot
    TS, VS, AS, TD, VD, AD = range(6)
    pos, neg, tri = [], [], []
    for i in range(b):
        sims = [b + i * k + q for q in range(k)]
        diffs = [b + b * k + i * k + q for q in range(k)]
        for s in [i] + sims:
            pos += [(row(TS, s), row(VS, s)), (row(TS, s), row(AS, s))]
            neg += [(row(TS, s), row(kind, s)) for kind in (TD, VD, AD)]
        pos += [(row(kind, i), row(kind, j)) for j in sims for kind in (TS, VS, AS)]
        neg += [(row(kind, i), row(kind, j)) for j in diffs for kind in (TS, VS, AS)]
        tri += [(row(TS, i), row(p, i), row(n, i)) for p in (VS, AS) for n in (TD, VD, AD)]
    t = lambda v: torch.tensor(v, dtype=torch.long)
    return t(pos), t(neg), t(tri)


def cl_loss(z, pos, neg, tri, b, tau=0.5, margin=0.5, lambda_tri=0.1):
    """Eq. 9 as printed (the denominator: every pair starting at alpha except
    (alpha, beta)), summed per anchor and averaged; eqs. 10-12."""
    zn = F.normalize(z, dim=1, eps=1e-8)
    allp = torch.cat([pos, neg])
    s = (zn[allp[:, 0]] * zn[allp[:, 1]]).sum(1) / tau
    e = torch.exp(s)
    denom = torch.zeros(z.shape[0], device=z.device).index_add(0, allp[:, 0], e)
    sp, ep = s[: len(pos)], e[: len(pos)]
    nt = (torch.log(denom[pos[:, 0]] - ep) - sp).sum() / b
    d = lambda i, j: 1 - (zn[i] * zn[j]).sum(1)
    tl = F.relu(d(tri[:, 0], tri[:, 1]) - d(tri[:, 0], tri[:, 2]) + margin).sum() / b
    return nt + lambda_tri * tl


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("data")
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--k-cl", type=int, default=10)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--device", default="cpu", help="cpu or cuda")
    ap.add_argument("--json", action="store_true")
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    torch.manual_seed(a.seed)
    dev = torch.device(a.device)
    sync = torch.cuda.synchronize if dev.type == "cuda" else (lambda: None)
    rng = np.random.default_rng(a.seed)
    with open(a.data, "rb") as f:
        train = pickle.load(f)["train"]
    t = torch.tensor(pool_time(np.asarray(train["text"], np.float32), 50), device=dev)
    au = torch.tensor(pool_time(np.asarray(train["audio"], np.float32), 50), device=dev)
    vi = torch.tensor(pool_time(np.asarray(train["vision"], np.float32), 50), device=dev)
    y = torch.tensor(np.asarray(train["regression_labels"], np.float32).reshape(-1), device=dev)
    n = len(y)
    feats = np.concatenate([x.mean(1).cpu().numpy() for x in (t, vi, au)], 1)
    similar, different = build_sets(feats, y.cpu().numpy(), a.k_cl, rng)
    model = FdCmdie([t.shape[2], au.shape[2], vi.shape[2]], [t.shape[1], vi.shape[1], au.shape[1]]).to(dev)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4, weight_decay=0.0)
    model.train()
    times = []
    for epoch in range(a.epochs):
        order = rng.permutation(n)
        sync()
        start = time.perf_counter()
        for i in range(0, n, a.batch_size):
            idx = order[i:i + a.batch_size]
            b = len(idx)
            ext = torch.from_numpy(np.concatenate([idx, similar[idx].reshape(-1), different[idx].reshape(-1)])).to(dev)
            sim, dis = model.encode(t[ext], au[ext], vi[ext])
            z = torch.cat([x.mean(1) for x in sim + dis], 0)
            pos, neg, tri = (p.to(dev) for p in pairs(b, a.k_cl))
            pred = model.fuse([x[:b] for x in sim], [x[:b] for x in dis]).squeeze(1)
            loss = (pred - y[torch.from_numpy(idx).to(dev)]).abs().mean() + 0.1 * cl_loss(z, pos, neg, tri, b)
            opt.zero_grad()
            loss.backward()
            opt.step()
        sync()
        times.append(time.perf_counter() - start)
        if not a.json:
            print(f"epoch {epoch}: {times[-1]:.2f} s ({n / times[-1]:.2f} samples/s)", flush=True)
    steady = times[1:] if len(times) > 1 else times
    mean = sum(steady) / len(steady)
    figures = {
        "implementation": f"pytorch {torch.__version__} (benches/reference)",
        "model": "fdcmdie",
        "batch_size": a.batch_size,
        "threads": a.threads,
        "samples_per_epoch": n,
        "epoch_seconds": times,
        "seconds_per_epoch": mean,
        "samples_per_second": n / mean,
        "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "device": str(dev),
    }
    if dev.type == "cuda":
        figures["peak_gpu_mib"] = torch.cuda.max_memory_allocated(dev) / 2**20
        figures["gpu"] = torch.cuda.get_device_name(dev)
    print(json.dumps(figures) if a.json else
          f"steady: {mean:.2f} s/epoch, {n / mean:.2f} samples/s, peak RSS {figures['peak_rss_mib']:.0f} MiB")


if __name__ == "__main__":
    main()
