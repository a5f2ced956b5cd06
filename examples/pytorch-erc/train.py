"""A small PyTorch model for emotion recognition in conversation, trained on
an IEMOCAP-format feature file (the 9-tuple pickle that MMGCN and MM-DFN
read), reporting to sigsweep. Written for sigsweep's examples: it is not a
published model.

Each utterance's text (100-d), audio (1582-d) and visual (342-d) features are
projected and summed; `--context gru` runs a bidirectional GRU over each
dialogue (`none`: every utterance on its own); a linear head gives the
emotion. Cross-entropy, Adam. The validation split is a seeded 10 % of the
training dialogues.

    python3 tests/python/iemocap_file.py data/iemocap-synthetic.pkl --train 40 --test 12
    python3 examples/pytorch-erc/train.py --data data/iemocap-synthetic.pkl --seed 0

Under sigsweep (configs/command-pytorch.toml) it reports every epoch through
clients/python/sigsweep_report.py and writes the predictions of its best
validation epoch to $SIGSWEEP_OUTPUT_DIR/predictions.jsonl. Under torchrun it
trains with DistributedDataParallel (gloo on CPU, NCCL on GPUs); rank 0
evaluates and reports.
"""
import argparse
import json
import os
import pickle
import random
import sys

import numpy as np
import torch
import torch.distributed as dist
from torch import nn

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "clients", "python"))
from sigsweep_report import report_epoch  # noqa: E402

CLASSES = 6


class Erc(nn.Module):
    def __init__(self, hidden, context, dropout):
        super().__init__()
        self.proj = nn.ModuleList([nn.Linear(d, hidden) for d in (100, 1582, 342)])
        self.context = nn.GRU(hidden, hidden // 2, batch_first=True, bidirectional=True) if context == "gru" else None
        self.drop = nn.Dropout(dropout)
        self.head = nn.Linear(hidden, CLASSES)

    def forward(self, text, audio, visual, mask):
        # [dialogues, utterances, dim] each; mask [dialogues, utterances].
        h = torch.relu(sum(p(x) for p, x in zip(self.proj, (text, audio, visual))))
        if self.context is not None:
            lengths = mask.sum(1).cpu()
            packed = nn.utils.rnn.pack_padded_sequence(h, lengths, batch_first=True, enforce_sorted=False)
            h, _ = self.context(packed)
            h, _ = nn.utils.rnn.pad_packed_sequence(h, batch_first=True, total_length=mask.shape[1])
        return self.head(self.drop(h))


def load(path):
    with open(path, "rb") as f:
        ids, _speakers, labels, text, audio, visual, _sentences, train, test = pickle.load(f, encoding="latin1")
    def dialogue(v):
        return (v, np.asarray(text[v], np.float32), np.asarray(audio[v], np.float32),
                np.asarray(visual[v], np.float32), np.asarray(labels[v], np.int64))
    return [dialogue(v) for v in sorted(train)], [dialogue(v) for v in sorted(test)]


def batch(dialogues, device):
    n = max(len(d[4]) for d in dialogues)
    def pad(i, dim):
        out = np.zeros((len(dialogues), n, dim), np.float32)
        for k, d in enumerate(dialogues):
            out[k, : len(d[4])] = d[i]
        return torch.from_numpy(out).to(device)
    labels = torch.full((len(dialogues), n), -1, dtype=torch.long)
    for k, d in enumerate(dialogues):
        labels[k, : len(d[4])] = torch.from_numpy(d[4])
    labels = labels.to(device)
    return pad(1, 100), pad(2, 1582), pad(3, 342), labels >= 0, labels


def f1_weighted(gold, pred):
    total, score = len(gold), 0.0
    for c in range(CLASSES):
        tp = sum(1 for g, p in zip(gold, pred) if g == c and p == c)
        support = sum(1 for g in gold if g == c)
        predicted = sum(1 for p in pred if p == c)
        if support and tp:
            score += support * 2 * tp / (support + predicted)
    return score / total if total else 0.0


@torch.no_grad()
def evaluate(model, dialogues, device):
    model.eval()
    gold, pred, ids = [], [], []
    for i in range(0, len(dialogues), 16):
        chunk = dialogues[i : i + 16]
        t, a, v, mask, labels = batch(chunk, device)
        out = model(t, a, v, mask).argmax(-1)
        for k, d in enumerate(chunk):
            n = len(d[4])
            gold += labels[k, :n].tolist()
            pred += out[k, :n].tolist()
            ids += ["%s/%d" % (d[0], j) for j in range(n)]
    model.train()
    acc = sum(g == p for g, p in zip(gold, pred)) / max(len(gold), 1)
    return {"accuracy": acc, "f1_weighted": f1_weighted(gold, pred)}, (ids, gold, pred)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--data", required=True)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--epochs", type=int, default=10)
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--batch-size", type=int, default=8)
    ap.add_argument("--hidden", type=int, default=64)
    ap.add_argument("--context", choices=["gru", "none"], default="gru")
    ap.add_argument("--dropout", type=float, default=0.2)
    a = ap.parse_args()

    distributed = int(os.environ.get("WORLD_SIZE", "1")) > 1
    if distributed:
        dist.init_process_group("nccl" if torch.cuda.is_available() else "gloo")
    rank = dist.get_rank() if distributed else 0
    world = dist.get_world_size() if distributed else 1
    device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", 0))) if torch.cuda.is_available() else torch.device("cpu")
    # Every random source derives from the trial's seed.
    random.seed(a.seed)
    np.random.seed(a.seed)
    torch.manual_seed(a.seed)
    torch.use_deterministic_algorithms(True, warn_only=True)

    train, test = load(a.data)
    order = random.Random(a.seed).sample(range(len(train)), len(train))
    n_valid = max(1, len(train) // 10)
    valid = [train[i] for i in order[:n_valid]]
    train = [train[i] for i in order[n_valid:]]

    model = Erc(a.hidden, a.context, a.dropout).to(device)
    net = nn.parallel.DistributedDataParallel(model) if distributed else model
    opt = torch.optim.Adam(net.parameters(), lr=a.lr)
    loss_fn = nn.CrossEntropyLoss(ignore_index=-1)
    shuffle = random.Random(a.seed + 1)
    best = None
    for epoch in range(1, a.epochs + 1):
        idx = shuffle.sample(range(len(train)), len(train))
        batches = [idx[i : i + a.batch_size] for i in range(0, len(idx), a.batch_size)]
        losses = []
        for b in batches[rank::world][: len(batches) // world or 1]:
            t, au, v, mask, labels = batch([train[i] for i in b], device)
            loss = loss_fn(net(t, au, v, mask).reshape(-1, CLASSES), labels.reshape(-1))
            opt.zero_grad()
            loss.backward()
            opt.step()
            losses.append(loss.item())
        if rank != 0:
            continue
        v_metrics, _ = evaluate(model, valid, device)
        t_metrics, preds = evaluate(model, test, device)
        report_epoch(epoch, sum(losses) / len(losses), valid=v_metrics, test=t_metrics)
        print("epoch %d loss %.4f valid f1 %.4f test f1 %.4f" % (
            epoch, sum(losses) / len(losses), v_metrics["f1_weighted"], t_metrics["f1_weighted"]), flush=True)
        if best is None or v_metrics["f1_weighted"] > best:
            best = v_metrics["f1_weighted"]
            out = os.environ.get("SIGSWEEP_OUTPUT_DIR")
            if out:
                with open(os.path.join(out, "predictions.jsonl"), "w") as f:
                    for i, g, p in zip(*preds):
                        f.write(json.dumps({"id": i, "gold": g, "pred": p}) + "\n")
    if distributed:
        dist.destroy_process_group()


if __name__ == "__main__":
    main()
