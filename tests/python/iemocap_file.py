"""Writes a small random file in the IEMOCAP feature-file layout that MMGCN
and MM-DFN read (`IEMOCAP_features.pkl`: a 9-tuple of videoIDs,
videoSpeakers, videoLabels, videoText (100-d), videoAudio (1582-d),
videoVisual (342-d), videoSentence, trainVid, testVid), for tests that run
the same data through sigsweep and a PyTorch model.

    python3 iemocap_file.py OUT.pkl [--train 12] [--test 6] [--seed 0]
    python3 iemocap_file.py OUT.pkl --preset iemocap   # IEMOCAP's shapes

`--preset iemocap` writes IEMOCAP's 120 training and 31 test dialogues with
its dialogue lengths (20 to 110 utterances, mean about 48), for benchmarks.
"""

import argparse
import pickle

import numpy as np


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("out")
    ap.add_argument("--train", type=int, default=12)
    ap.add_argument("--test", type=int, default=6)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--preset", choices=["small", "iemocap"], default="small")
    args = ap.parse_args()
    if args.preset == "iemocap":
        args.train, args.test = 120, 31
    rng = np.random.default_rng(args.seed)
    ids, speakers, labels, text, audio, visual, sentences = {}, {}, {}, {}, {}, {}, {}
    train, test = [], []
    for i in range(args.train + args.test):
        vid = "Ses0%dF_impro%02d" % (1 + i % 5, i)
        if args.preset == "iemocap":
            n = int(np.clip(round(rng.normal(48, 18)), 20, 110))
        else:
            n = int(rng.integers(3, 14))
        y = rng.integers(0, 6, size=n)
        ids[vid] = ["%s_F%03d" % (vid, t) for t in range(n)]
        speakers[vid] = ["M" if s else "F" for s in rng.integers(0, 2, size=n)]
        labels[vid] = [int(v) for v in y]
        # Features carry the label, so a trained model beats chance.
        text[vid] = [(rng.normal(size=100) + 0.8 * np.eye(6, 100, k=0)[c] * 3).astype(np.float32) for c in y]
        audio[vid] = [rng.normal(size=1582).astype(np.float32) for _ in y]
        visual[vid] = [rng.normal(size=342).astype(np.float32) for _ in y]
        sentences[vid] = ["utterance %d" % t for t in range(n)]
        (train if i < args.train else test).append(vid)
    with open(args.out, "wb") as f:
        pickle.dump((ids, speakers, labels, text, audio, visual, sentences, train, test), f, protocol=2)


if __name__ == "__main__":
    main()
