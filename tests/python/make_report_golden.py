"""Reference values for the report's per-example tests and seed counts.

Writes tests/golden/report_stats.json from scipy, statsmodels, scikit-learn
and numpy. Run with a venv that has them:

    python tests/python/make_report_golden.py

Bootstrap references are distributions, not draws: numpy resamples
REF_RESAMPLES times with its own generator, and the tests compare
sigsweep's (different) resamples to the reference's spread, quantiles and
p-value with tolerances.
"""

import json
import pathlib

import numpy as np
import scipy
import sklearn
import statsmodels
from sklearn.metrics import accuracy_score, f1_score, mean_absolute_error
from statsmodels.stats.contingency_tables import mcnemar

REF_RESAMPLES = 20000
OUT = pathlib.Path(__file__).resolve().parents[1] / "golden" / "report_stats.json"


def finite_or_str(x):
    x = float(x)
    return x if np.isfinite(x) else str(x)


def mcnemar_cases():
    cases = []
    for b, c in [(0, 0), (1, 0), (0, 5), (3, 9), (9, 3), (10, 10), (12, 30), (25, 5),
                 (40, 61), (100, 140), (301, 250), (7, 0)]:
        table = [[50, b], [c, 40]]
        exact = mcnemar(table, exact=True)
        chi = mcnemar(table, exact=False, correction=True)
        cases.append({
            "b": b, "c": c,
            "exact_statistic": float(exact.statistic), "exact_p": float(exact.pvalue),
            # b + c = 0 divides by zero in statsmodels (inf or nan): kept as a string.
            "chi2_statistic": finite_or_str(chi.statistic),
            "chi2_p": finite_or_str(chi.pvalue),
        })
    return cases


def seed_count_cases(rng):
    cases = []
    for n, goal in [(10, "max"), (10, "min"), (7, "max"), (20, "min")]:
        a = np.round(rng.normal(0.6, 0.02, n), 3)
        b = np.round(rng.normal(0.6, 0.02, n), 3)
        b[:2] = a[:2]  # ties
        better = a > b if goal == "max" else a < b
        worse = a < b if goal == "max" else a > b
        cases.append({"goal": goal, "a": a.tolist(), "b": b.tolist(),
                      "wins": int(better.sum()), "ties": int((a == b).sum()),
                      "losses": int(worse.sum())})
    return cases


def corrected_t_cases(rng):
    """Nadeau & Bengio's corrected resampled t: numpy moments, scipy's t."""
    from scipy import stats
    cases = []
    for seeds, folds, shift in [(1, 5, 0.01), (3, 5, 0.004), (10, 5, 0.0), (2, 10, 0.02), (5, 3, -0.01)]:
        n = seeds * folds
        b = rng.normal(0.6, 0.02, n)
        a = b + rng.normal(shift, 0.01, n)
        d = a - b
        ratio = 1.0 / (folds - 1)
        se = np.sqrt((1.0 / n + ratio) * d.var(ddof=1))
        t = d.mean() / se
        df = n - 1
        half = stats.t.ppf(0.975, df) * se
        cases.append({"a": a.tolist(), "b": b.tolist(), "ratio": ratio, "t": float(t), "df": df,
                      "p": float(2 * stats.t.sf(abs(t), df)),
                      "ci": [float(d.mean() - half), float(d.mean() + half)]})
    return cases


def noisy(gold, acc, k, rng):
    """Predictions right with probability acc, otherwise a random other class."""
    pred = gold.copy()
    wrong = rng.random(gold.size) > acc
    pred[wrong] = (gold[wrong] + rng.integers(1, k, wrong.sum())) % k
    return pred


def weighted_f1_from(gold, pred, k, idx):
    g, p = gold[idx], pred[idx]
    cm = np.zeros((k, k))
    np.add.at(cm, (g, p), 1)
    tp = np.diag(cm)
    denom = 2 * tp + (cm.sum(0) - tp) + (cm.sum(1) - tp)
    f1 = np.divide(2 * tp, denom, out=np.zeros(k), where=denom > 0)
    support = cm.sum(1)
    return f1, float((f1 * support).sum() / support.sum())


def bootstrap_summary(observed, draws):
    draws = np.asarray(draws)
    return {
        "observed": float(observed),
        "std": float(draws.std(ddof=1)),
        "q025": float(np.quantile(draws, 0.025)),
        "q975": float(np.quantile(draws, 0.975)),
        "p": float((1 + np.sum(np.abs(draws - observed) >= abs(observed))) / (1 + draws.size)),
        "share_positive": float(np.mean(draws > 0)),
    }


def classification_case(rng):
    k, n, seeds = 4, 400, [1, 2, 3]
    gold = rng.integers(0, k, n)
    config = {s: noisy(gold, 0.67, k, rng) for s in seeds}
    base = {s: noisy(gold, 0.62, k, rng) for s in seeds}
    # sklearn on the full test set: the observed values.
    metrics = {}
    for name, fn in [("accuracy", accuracy_score),
                     ("f1_weighted", lambda g, p: f1_score(g, p, average="weighted",
                                                           labels=list(range(k)), zero_division=0))]:
        obs = np.mean([fn(gold, config[s]) - fn(gold, base[s]) for s in seeds])
        metrics[name] = {"observed": float(obs)}
    boot = np.random.default_rng(12345)
    acc_d, f1_d, class_draws = [], [], []
    for _ in range(REF_RESAMPLES):
        idx = boot.integers(0, n, n)
        acc_d.append(np.mean([np.mean(config[s][idx] == gold[idx]) - np.mean(base[s][idx] == gold[idx])
                              for s in seeds]))
        f1_d.append(np.mean([weighted_f1_from(gold, config[s], k, idx)[1]
                             - weighted_f1_from(gold, base[s], k, idx)[1] for s in seeds]))
        class_draws.append(np.mean([weighted_f1_from(gold, config[s], k, idx)[0] for s in seeds], axis=0))
    metrics["accuracy"] = bootstrap_summary(metrics["accuracy"]["observed"], acc_d)
    metrics["f1_weighted"] = bootstrap_summary(metrics["f1_weighted"]["observed"], f1_d)
    class_draws = np.asarray(class_draws)
    per_class = np.mean([f1_score(gold, config[s], average=None, labels=list(range(k)), zero_division=0)
                         for s in seeds], axis=0)
    mc = []
    for s in seeds:
        b = int(np.sum((config[s] == gold) & (base[s] != gold)))
        c = int(np.sum((config[s] != gold) & (base[s] == gold)))
        r = mcnemar([[0, b], [c, 0]], exact=True)
        mc.append({"seed": s, "b": b, "c": c, "p": float(r.pvalue)})
    return {
        "num_classes": k, "gold": gold.tolist(), "seeds": seeds,
        "config": {str(s): config[s].tolist() for s in seeds},
        "baseline": {str(s): base[s].tolist() for s in seeds},
        "bootstrap": metrics,
        "per_class_config": {
            "f1": per_class.tolist(),
            "std": class_draws.std(axis=0, ddof=1).tolist(),
            "q025": np.quantile(class_draws, 0.025, axis=0).tolist(),
            "q975": np.quantile(class_draws, 0.975, axis=0).tolist(),
        },
        "mcnemar": mc,
    }


def regression_case(rng):
    n, seeds = 300, [7, 8]
    gold = np.round(rng.uniform(-3, 3, n), 1)
    config = {s: gold + rng.normal(0, 0.75, n) for s in seeds}
    base = {s: gold + rng.normal(0, 0.8, n) for s in seeds}
    obs = np.mean([mean_absolute_error(gold, config[s]) - mean_absolute_error(gold, base[s]) for s in seeds])
    boot = np.random.default_rng(777)
    draws = []
    for _ in range(REF_RESAMPLES):
        idx = boot.integers(0, n, n)
        draws.append(np.mean([np.mean(np.abs(config[s][idx] - gold[idx]))
                              - np.mean(np.abs(base[s][idx] - gold[idx])) for s in seeds]))
    return {
        "gold": gold.tolist(), "seeds": seeds,
        "config": {str(s): config[s].tolist() for s in seeds},
        "baseline": {str(s): base[s].tolist() for s in seeds},
        "bootstrap": {"mae": bootstrap_summary(obs, draws)},
    }


def main():
    rng = np.random.default_rng(2026)
    golden = {
        "generated_by": f"numpy {np.__version__}, scipy {scipy.__version__}, "
                        f"statsmodels {statsmodels.__version__}, scikit-learn {sklearn.__version__}",
        "script": "tests/python/make_report_golden.py",
        "bootstrap_reference_resamples": REF_RESAMPLES,
        "mcnemar": mcnemar_cases(),
        "seed_counts": seed_count_cases(rng),
        "classification": classification_case(rng),
        "regression": regression_case(rng),
        "corrected_t": corrected_t_cases(np.random.default_rng(7)),
    }
    OUT.write_text(json.dumps(golden, indent=1) + "\n")
    print(f"wrote {OUT}")


if __name__ == "__main__":
    main()
