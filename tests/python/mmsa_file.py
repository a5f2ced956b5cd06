"""Writes a random file in the MMSA layout (`unaligned_50.pkl` of MOSI/MOSEI:
a dict of `train`/`valid`/`test`, each with `text` (N, 50, 768), `audio`
(N, la, da), `vision` (N, lv, dv), `regression_labels` (N,)), for benchmarks
that run the same data through sigsweep (`mmsa:PATH`) and a PyTorch model.

    python3 mmsa_file.py OUT.pkl --preset mosi [--train 1284] [--seed 0]

`--preset mosi`: MOSI's shapes (text 50×768, audio 375×5, vision 500×20;
1 284 / 229 / 686 samples). `--train N` keeps the shapes with fewer
training samples (a shorter epoch for a side-by-side run). No
`audio_lengths`/`vision_lengths`: every step is real.
"""

import argparse
import pickle

import numpy as np


def split(rng, n, la, da, lv, dv):
    y = np.clip(rng.normal(0.0, 1.5, size=n), -3.0, 3.0).astype(np.float32)
    # Features carry the label, so a trained model beats chance.
    text = rng.normal(size=(n, 50, 768)).astype(np.float32)
    text[:, :, 0] += y[:, None]
    return {
        "text": text,
        "audio": rng.normal(size=(n, la, da)).astype(np.float32),
        "vision": rng.normal(size=(n, lv, dv)).astype(np.float32),
        "regression_labels": y,
    }


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("out")
    ap.add_argument("--preset", choices=["mosi"], default="mosi")
    ap.add_argument("--train", type=int, default=1284)
    ap.add_argument("--valid", type=int, default=229)
    ap.add_argument("--test", type=int, default=686)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    rng = np.random.default_rng(args.seed)
    shapes = (375, 5, 500, 20)
    data = {
        "train": split(rng, args.train, *shapes),
        "valid": split(rng, args.valid, *shapes),
        "test": split(rng, args.test, *shapes),
    }
    with open(args.out, "wb") as f:
        pickle.dump(data, f, protocol=4)


if __name__ == "__main__":
    main()
