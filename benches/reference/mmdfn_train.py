"""Trains our own PyTorch MM-DFN (tests/python/mmdfn_torch.py, written from
the paper and the published model's shapes) on an IEMOCAP-format file and
times each epoch's training pass: the reference `sigsweep bench train
--model mmdfn` races against (`make bench-reference`).

It does what MM-DFN's IEMOCAP script does per step: padded bidirectional
GRUs, each speaker's utterances through the party GRU, the dense 3N x 3N
adjacency of the batch with its symmetric normalisation, 16 graph layers,
focal loss (gamma 0.5) with 1/frequency class weights, Adam with L2 1e-4,
dropout 0.4 off (as our benchmark); batches of dialogues shuffled by the
seed. Threads are pinned with torch.set_num_threads. With --device cuda the
model and the data live on the GPU and each epoch's time ends after the GPU
has finished (torch.cuda.synchronize); the figures then include the peak
GPU memory torch allocated.

    python3 mmdfn_train.py DATA.pkl [--batch-size 16] [--epochs 3] [--threads 1] [--device cpu] [--json]
"""
import argparse
import json
import os
import pickle
import random
import resource
import sys
import time

import numpy as np
import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "tests", "python"))
from mmdfn_torch import MMDFN  # noqa: E402


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("data")
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--layers", type=int, default=16)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--device", default="cpu", help="cpu or cuda")
    ap.add_argument("--json", action="store_true")
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    torch.manual_seed(a.seed)
    dev = torch.device(a.device)
    sync = torch.cuda.synchronize if dev.type == "cuda" else (lambda: None)
    ids, speakers, labels, text, audio, visual, _, train, _ = pickle.load(open(a.data, "rb"), encoding="latin1")
    train = [v for v in train if len(labels[v]) > 0]
    feats = {name: {v: torch.tensor(np.asarray(f[v], dtype=np.float32), device=dev) for v in train}
             for name, f in (("text", text), ("audio", audio), ("visual", visual))}
    n_classes = 1 + max(max(labels[v]) for v in train)
    counts = np.bincount([c for v in train for c in labels[v]], minlength=n_classes).astype(np.float64)
    class_weights = torch.tensor(1.0 / np.maximum(counts, 1.0) / (1.0 / np.maximum(counts, 1.0)).sum() * n_classes,
                                 dtype=torch.float32, device=dev)
    dims = tuple(feats[n][train[0]].shape[1] for n in ("text", "audio", "visual"))
    model = MMDFN(dims=dims, n_classes=n_classes, layers=a.layers).to(dev)
    opt = torch.optim.Adam(model.parameters(), lr=3e-4, weight_decay=1e-4)
    utterances = sum(len(labels[v]) for v in train)
    shuffle = random.Random(a.seed)
    times = []
    for epoch in range(1, a.epochs + 1):
        order = shuffle.sample(train, len(train))
        sync()
        start = time.perf_counter()
        for i in range(0, len(order), a.batch_size):
            chunk = order[i:i + a.batch_size]
            lengths = [len(labels[v]) for v in chunk]
            T = max(lengths)

            def padded(name):
                x = torch.zeros(T, len(chunk), dims[("text", "audio", "visual").index(name)], device=dev)
                for b, v in enumerate(chunk):
                    x[: lengths[b], b] = feats[name][v]
                return x

            spk = [[0 if s == "M" else 1 for s in speakers[v]] for v in chunk]
            y = torch.tensor([c for v in chunk for c in labels[v]], device=dev)
            logp = model(padded("text"), padded("audio"), padded("visual"), spk, lengths)
            pt = logp.gather(1, y[:, None]).squeeze(1).exp()
            loss = (-(1 - pt).clamp_min(0).pow(0.5) * logp.gather(1, y[:, None]).squeeze(1) * class_weights[y]).mean()
            opt.zero_grad()
            loss.backward()
            opt.step()
        sync()
        times.append(time.perf_counter() - start)
        if not a.json:
            print(f"epoch {epoch}: {times[-1]:.2f} s ({utterances / times[-1]:.1f} utterances/s)", flush=True)
    steady = times[1:] if len(times) > 1 else times
    mean = sum(steady) / len(steady)
    figures = {
        "implementation": f"pytorch {torch.__version__} (benches/reference)",
        "model": "mmdfn",
        "batch_size": a.batch_size,
        "threads": a.threads,
        "utterances_per_epoch": utterances,
        "epoch_seconds": times,
        "seconds_per_epoch": mean,
        "samples_per_second": utterances / mean,
        "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "device": str(dev),
    }
    if dev.type == "cuda":
        figures["peak_gpu_mib"] = torch.cuda.max_memory_allocated(dev) / 2**20
        figures["gpu"] = torch.cuda.get_device_name(dev)
    print(json.dumps(figures) if a.json else
          f"steady: {mean:.2f} s/epoch, {utterances / mean:.1f} utterances/s, peak RSS {figures['peak_rss_mib']:.0f} MiB")


if __name__ == "__main__":
    main()
