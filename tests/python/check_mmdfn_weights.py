"""Loads an `mmdfn` weights file that sigsweep wrote into `mmdfn_torch.MMDFN`
with `load_state_dict(strict=True)`, runs the test split of an
IEMOCAP-format file in eval mode, and compares the log-probabilities with
the trial's predictions file (`make test-pytorch`).

    python3 check_mmdfn_weights.py WEIGHTS.safetensors PREDICTIONS.jsonl DATA.pkl [--tol 1e-4]

The network's sizes and options come from the file's metadata (the
trial's parameters). Batches are the test dialogues in file order,
`batch_size` at a time, as sigsweep evaluates them; with
`rnn_padding = "unpacked"` (MM-DFN's padded recurrences) the result
depends on that batching, so the trial must use it for an exact match.
"""

import argparse
import json
import pickle
import struct
import sys

import numpy as np
import torch

from mmdfn_torch import MMDFN


def read_safetensors(path):
    """(tensors, metadata) of a safetensors file (F32 only), without the
    `safetensors` package."""
    raw = open(path, "rb").read()
    n = struct.unpack("<Q", raw[:8])[0]
    header = json.loads(raw[8:8 + n])
    meta = header.pop("__metadata__", {})
    out = {}
    for name, info in header.items():
        if info["dtype"] != "F32":
            sys.exit(f"{name}: dtype {info['dtype']}, expected F32")
        a, b = info["data_offsets"]
        out[name] = torch.from_numpy(
            np.frombuffer(raw[8 + n + a:8 + n + b], dtype="<f4").reshape(info["shape"]).copy())
    return out, meta


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("weights")
    ap.add_argument("predictions")
    ap.add_argument("data")
    ap.add_argument("--tol", type=float, default=1e-4)
    args = ap.parse_args()
    state, meta = read_safetensors(args.weights)
    params = json.loads(meta.get("params", "{}"))
    if meta.get("model") != "mmdfn":
        sys.exit(f"{args.weights} holds `{meta.get('model')}` weights, not mmdfn")
    if params.get("rnn_padding") != "unpacked":
        print("note: the trial packed its recurrences (rnn_padding); this model runs them padded, as MM-DFN")
    ids, speakers, labels, text, audio, visual, _, _, test = pickle.load(
        open(args.data, "rb"), encoding="latin1")
    model = MMDFN(
        dims=(len(text[test[0]][0]), len(audio[test[0]][0]), len(visual[test[0]][0])),
        n_classes=state["smax_fc.weight"].shape[0],
        n_speakers=state["graph_model.speaker_embeddings.weight"].shape[0],
        hidden=params.get("hidden", 200),
        graph_hidden=params.get("graph_hidden", 100),
        layers=params.get("layers", 16),
        gammas=tuple(float(x) for x in params.get("speaker_weights", "3-0-1").split("-")),
        alpha=params.get("gcn_alpha", 0.2),
        lamda=params.get("gcn_lambda", 0.5),
    )
    model.load_state_dict(state, strict=True)
    model.eval()
    ours = {}
    for line in open(args.predictions):
        row = json.loads(line)
        ours[row["id"]] = np.array(row["log_probs"], dtype=np.float64)
    batch = params.get("batch_size", 32)
    worst, count = 0.0, 0
    dialogues = [v for v in test if len(labels[v]) > 0]
    with torch.no_grad():
        for i in range(0, len(dialogues), batch):
            chunk = dialogues[i:i + batch]
            lengths = [len(labels[v]) for v in chunk]
            T = max(lengths)

            def padded(feats):
                d = len(feats[chunk[0]][0])
                x = torch.zeros(T, len(chunk), d)
                for b, v in enumerate(chunk):
                    x[: lengths[b], b] = torch.tensor(np.asarray(feats[v], dtype=np.float32))
                return x

            spk = [[0 if s == "M" else 1 for s in speakers[v]] for v in chunk]
            logp = model(padded(text), padded(audio), padded(visual), spk, lengths).numpy()
            row = 0
            for v, n in zip(chunk, lengths):
                for t in range(n):
                    key = f"{v}/{t}"
                    if key not in ours:
                        sys.exit(f"{args.predictions} has no line for {key}")
                    worst = max(worst, float(np.abs(ours[key] - logp[row]).max()))
                    row += 1
                    count += 1
    print(f"strict load: {len(state)} tensors; {count} test utterances; max |Δ log p| = {worst:.3g}")
    if count != len(ours):
        sys.exit(f"the predictions file has {len(ours)} lines, the test split {count} utterances")
    if worst > args.tol:
        sys.exit(f"log-probabilities differ by {worst:.3g} > {args.tol}")


if __name__ == "__main__":
    main()
