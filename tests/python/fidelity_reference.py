"""Hand computations of the papers' losses, written from the equations
(numpy only), for worker/tests/fidelity.rs.

    python3 tests/python/fidelity_reference.py > worker/tests/golden/fidelity.json

* FD-CMDIE eqs. (9)-(12) with all pairs: for anchor i with similar set S
  and different set D (k_cl members each, fewer when a class is small),
    P^i = Positive_in ∪ Positive_out
        = {(Ts,Vs),(Ts,As) of i and of each j in S} ∪ {(Xs^i, Xs^j): j in S, X in T,V,A}
    N^i = Negative_in ∪ Negative_out
        = {(Ts, Xd) of i and of each j in S, X in T,V,A} ∪ {(Xs^i, Xs^j): j in D, X in T,V,A}
  l^i = sum over (a,b) in P^i of -log(exp(s(a,b)/tau) / sum_{(a,g) in P^i ∪ N^i, g != b} exp(s(a,g)/tau))
  l_tri^i = sum over a=Ts^i, p in {Vs^i, As^i}, n in {Td^i, Vd^i, Ad^i} of max(0, d(a,p) - d(a,n) + margin)
  L = (1/n) sum_i l^i + lambda_tri (1/n) sum_i l_tri^i.
  The features of each sample are given per sample; the Rust side lays them
  out as its extended batch.
* MMIC eqs. (7)-(9): X = [H; H] (2N rows), P(i) = same label minus {i},
  A(i) = I minus {i, N+i}; the loss is the mean over anchors of
  -1/|P(i)| sum_p SIM(p, i) (the paper sums over anchors; sigsweep averages,
  a documented design choice).
* MM-DFN's focal loss with its IEMOCAP class weights (1/freq), gamma 0.5:
  mean_i -(1 - p_i)^gamma * w_{y_i} * log p_i.
"""

import json

import numpy as np

rng = np.random.default_rng(20261205)


def unit(v):
    return v / max(np.linalg.norm(v), 1e-8)


def cos(a, b):
    return float(np.dot(unit(a), unit(b)))


def fdcmdie_case(b, k, d, sizes, tau, margin, lambda_tri):
    """`sizes[i] = (similar count, different count)` of anchor i (<= k)."""
    # Per sample: six features Ts, Vs, As, Td, Vd, Ad.
    anchors = [rng.normal(size=(6, d)) for _ in range(b)]
    similar = [[rng.normal(size=(6, d)) for _ in range(s)] for s, _ in sizes]
    different = [[rng.normal(size=(6, d)) for _ in range(n)] for _, n in sizes]
    TS, VS, AS, TD, VD, AD = range(6)
    total_nt, total_tri, positives = 0.0, 0.0, []
    for i in range(b):
        # A feature is named (sample, modality); sample 0 is the anchor,
        # ("s", j) its j-th similar and ("d", j) its j-th different sample.
        feats = {(0, m): anchors[i][m] for m in range(6)}
        for j, f in enumerate(similar[i]):
            feats.update({(("s", j), m): f[m] for m in range(6)})
        for j, f in enumerate(different[i]):
            feats.update({(("d", j), m): f[m] for m in range(6)})
        sims_ids = [("s", j) for j in range(len(similar[i]))]
        diff_ids = [("d", j) for j in range(len(different[i]))]
        pos, neg = [], []
        for o in [0] + sims_ids:
            pos.append(((o, TS), (o, VS)))
            pos.append(((o, TS), (o, AS)))
            for m in (TD, VD, AD):
                neg.append(((o, TS), (o, m)))
        for o in sims_ids:
            for m in (TS, VS, AS):
                pos.append(((0, m), (o, m)))
        for o in diff_ids:
            for m in (TS, VS, AS):
                neg.append(((0, m), (o, m)))
        positives.append(len(pos))
        pairs = pos + neg
        s = lambda u, v: cos(feats[u], feats[v])
        li = 0.0
        for qi, (a, bb) in enumerate(pos):
            denom = sum(
                np.exp(s(a2, g) / tau) for pj, (a2, g) in enumerate(pairs) if a2 == a and pj != qi
            )
            li += -np.log(np.exp(s(a, bb) / tau) / denom)
        total_nt += li
        for p in (VS, AS):
            for n in (TD, VD, AD):
                total_tri += max(0.0, (1 - s((0, TS), (0, p))) - (1 - s((0, TS), (0, n))) + margin)
    nt = total_nt / b
    tri = total_tri / b
    return {
        "b": b,
        "k": k,
        "tau": tau,
        "margin": margin,
        "lambda_tri": lambda_tri,
        "anchors": [a.tolist() for a in anchors],
        "similar": [[f.tolist() for f in s] for s in similar],
        "different": [[f.tolist() for f in s] for s in different],
        "positives_per_anchor": positives,
        "nt_xent": nt,
        "triplet": tri,
        "loss": nt + lambda_tri * tri,
    }


def supcon_case(n, d, classes, tau):
    z = rng.normal(size=(n, d))
    labels = rng.integers(0, classes, size=n)
    x = np.concatenate([z, z])
    x = x / np.linalg.norm(x, axis=1, keepdims=True)
    y = np.concatenate([labels, labels])
    total, anchors = 0.0, 0
    for i in range(2 * n):
        p_set = [p for p in range(2 * n) if y[p] == y[i] and p != i]
        a_set = [a for a in range(2 * n) if a != i and a != (i + n) % (2 * n)]
        denom = sum(np.exp(x[i] @ x[a] / tau) for a in a_set)
        sims = [np.log(np.exp(x[i] @ x[p] / tau) / denom) for p in p_set]
        if p_set:
            total += -sum(sims) / len(p_set)
            anchors += 1
    return {"z": z.tolist(), "labels": labels.tolist(), "tau": tau, "loss": total / anchors}


def focal_case(n, gamma):
    freq = [0.086747, 0.144406, 0.227883, 0.160585, 0.127711, 0.252668]
    w = [1 / f for f in freq]
    logits = rng.normal(size=(n, 6)) * 2
    labels = rng.integers(0, 6, size=n)
    logp = logits - logits.max(axis=1, keepdims=True)
    logp = logp - np.log(np.exp(logp).sum(axis=1, keepdims=True))
    lp = logp[np.arange(n), labels]
    loss = float(np.mean(-((1 - np.exp(lp)) ** gamma) * np.array(w)[labels] * lp))
    return {
        "logits": logits.tolist(),
        "labels": labels.tolist(),
        "gamma": gamma,
        "class_weights": w,
        "loss": loss,
    }


cases = {
    "fdcmdie": [
        fdcmdie_case(3, 2, 5, [(2, 2), (2, 2), (2, 2)], 0.5, 0.5, 0.1),
        # A small class: anchor 1 has one similar sample, anchor 2 none.
        fdcmdie_case(3, 3, 4, [(3, 3), (1, 3), (0, 2)], 0.7, 0.3, 0.5),
    ],
    "supcon": [supcon_case(7, 4, 3, 0.1), supcon_case(5, 3, 2, 0.5)],
    "focal": [focal_case(9, 0.5), focal_case(6, 0.0)],
}
print(json.dumps(cases, indent=1))
