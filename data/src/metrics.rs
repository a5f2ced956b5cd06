//! Evaluation metrics, matching the reference implementations bit for bit
//! where that is possible.
//!
//! # Classification (ERC: IEMOCAP, MELD, M3ED)
//!
//! scikit-learn conventions (`f1_score(..., labels=range(n_classes),
//! zero_division=0)`), as used by MM-DFN's `train_or_eval_graph_model`:
//!
//! * per-class F1 = `2·tp / (2·tp + fp + fn)`, and 0 when that denominator is
//!   0 (class never predicted and never true);
//! * weighted F1 = per-class F1 weighted by the class's support in `truth`
//!   (0 when no truth label is in `0..n_classes`);
//! * macro F1 = unweighted mean over all `n_classes` classes, including
//!   classes that never occur (they contribute 0, as in sklearn with an
//!   explicit `labels` list);
//! * accuracy = fraction of positions where `pred == truth`.
//!
//! Labels outside `0..n_classes` count for accuracy but for no class.
//!
//! # Regression (MMSA: MOSI, MOSEI)
//!
//! MMSA `metricsTop.py` definitions (identical in ALMT and MMIM):
//!
//! * `mae`: mean `|pred − truth|` on unclipped values;
//! * `corr`: Pearson correlation of unclipped values. numpy gives NaN when
//!   either side is constant; **this module returns 0.0 instead** (no
//!   measurable linear relation), so metric maps stay finite and
//!   JSON-serialisable;
//! * `acc7` / `acc5` / `acc3`: clip both sides to `[-3,3]` / `[-2,2]` /
//!   `[-1,1]`, round half to even (`np.round`, here
//!   [`f64::round_ties_even`]) and compare;
//! * `has0_acc2` / `has0_f1`: classes `x >= 0` vs `x < 0` on both sides;
//!   accuracy and weighted F1;
//! * `non0_acc2` / `non0_f1`: samples with `truth == 0` exactly are dropped,
//!   classes `x > 0` vs `x <= 0`; accuracy and weighted F1.
//!
//! Values are fractions in `[0, 1]` (not ×100) and are not rounded (MMSA
//! rounds to 4 decimals for display only). Inputs are converted to `f64`
//! before any arithmetic.
//!
//! # Edge cases
//!
//! Empty inputs give 0.0 for every metric (never NaN, never a panic).
//! `truth` and `pred` must have the same length: a mismatch is a bug in the
//! caller and panics (see each function's `# Panics`).

use std::collections::BTreeMap;

/// The most classes a classification task may have here: a synthetic
/// generator's `classes` (or `class_freqs`) and the labels of the
/// predictions a report analyses per example. Emotion and sentiment label
/// sets have a handful (IEMOCAP 6, MELD 7, GoEmotions 28); past this a
/// task is no longer one sigsweep's models or report are made for, and
/// every per-class cost (an output layer, a per-class F1 in each epoch's
/// metrics, a bootstrap interval per class) grows with it.
pub const MAX_CLASSES: usize = 1000;

fn check_len(truth: usize, pred: usize) {
    assert_eq!(
        truth, pred,
        "metrics: truth has {truth} values but pred has {pred}"
    );
}

/// Fraction of positions where `pred == truth` (0.0 when empty).
///
/// # Panics
/// If the slices differ in length.
pub fn accuracy<T: PartialEq>(truth: &[T], pred: &[T]) -> f64 {
    check_len(truth.len(), pred.len());
    if truth.is_empty() {
        return 0.0;
    }
    let hits = truth.iter().zip(pred).filter(|(t, p)| t == p).count();
    hits as f64 / truth.len() as f64
}

/// The tallies of a confusion matrix over classes `0..n_classes` that the
/// classification metrics need: per class, its true positives, its support
/// (examples whose truth it is) and its predictions. Every classification
/// metric here is computed from one, and a caller that weighs examples (a
/// bootstrap resample counts an example as often as it was drawn) builds
/// one with [`ConfusionMatrix::add`] and gets the same definitions.
///
/// It takes `O(n_classes)` memory and time, not `O(n_classes²)`: a label
/// space of thousands of classes (a synthetic generator's `classes`, a
/// predictions file's labels) costs kilobytes, and each metric one pass.
///
/// Labels outside `0..n_classes` count for accuracy but for no class: an
/// outside truth predicted as `k` is a false positive of `k`, a truth `k`
/// predicted outside is a false negative of `k`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfusionMatrix {
    /// Per class `k`: examples with truth `k` predicted as `k`.
    hits: Vec<u64>,
    /// Per class `k`: examples with truth `k` (its support).
    truths: Vec<u64>,
    /// Per class `k`: examples predicted as `k`.
    predictions: Vec<u64>,
    /// All counted examples, inside the classes or not.
    total: u64,
    /// Examples whose truth and prediction are the same outside label.
    outside_hits: u64,
}

impl ConfusionMatrix {
    /// An empty matrix.
    pub fn new(n_classes: usize) -> Self {
        Self {
            hits: vec![0; n_classes],
            truths: vec![0; n_classes],
            predictions: vec![0; n_classes],
            total: 0,
            outside_hits: 0,
        }
    }

    /// The matrix of `truth` against `pred`, each example once.
    ///
    /// # Panics
    /// If the slices differ in length.
    pub fn of(truth: &[usize], pred: &[usize], n_classes: usize) -> Self {
        check_len(truth.len(), pred.len());
        let mut m = Self::new(n_classes);
        for (&t, &p) in truth.iter().zip(pred) {
            m.add(t, p, 1);
        }
        m
    }

    /// Counts one example `weight` times.
    pub fn add(&mut self, truth: usize, pred: usize, weight: u64) {
        self.total += weight;
        if truth == pred {
            match self.hits.get_mut(truth) {
                Some(h) => *h += weight,
                None => self.outside_hits += weight,
            }
        }
        if let Some(t) = self.truths.get_mut(truth) {
            *t += weight;
        }
        if let Some(p) = self.predictions.get_mut(pred) {
            *p += weight;
        }
    }

    /// Number of classes.
    pub fn n_classes(&self) -> usize {
        self.hits.len()
    }

    /// All counted examples.
    pub fn total(&self) -> u64 {
        self.total
    }

    /// Fraction of examples predicted correctly (0.0 when empty).
    pub fn accuracy(&self) -> f64 {
        if self.total == 0 {
            return 0.0;
        }
        let hits: u64 = self.hits.iter().sum::<u64>() + self.outside_hits;
        hits as f64 / self.total as f64
    }

    /// F1 of each class `0..n` (sklearn `average=None`, zero_division=0):
    /// `2·tp / (2·tp + fp + fn)` with `fp = predicted − tp` and
    /// `fn = support − tp`.
    pub fn f1(&self) -> Vec<f64> {
        (0..self.n_classes()).map(|k| self.class_f1(k)).collect()
    }

    /// F1 of class `k` (0 outside the classes).
    fn class_f1(&self, k: usize) -> f64 {
        let tp = self.hits.get(k).copied().unwrap_or(0);
        let denom = self.truths.get(k).copied().unwrap_or(0)
            + self.predictions.get(k).copied().unwrap_or(0);
        if denom == 0 {
            0.0
        } else {
            2.0 * tp as f64 / denom as f64
        }
    }

    /// Support-weighted mean of the per-class F1 (sklearn `average='weighted'`).
    pub fn f1_weighted(&self) -> f64 {
        let total: u64 = self.truths.iter().sum();
        if total == 0 {
            return 0.0;
        }
        self.f1()
            .iter()
            .zip(&self.truths)
            .map(|(f, &s)| f * s as f64)
            .sum::<f64>()
            / total as f64
    }

    /// Unweighted mean of the per-class F1 over all `n` classes.
    pub fn f1_macro(&self) -> f64 {
        if self.hits.is_empty() {
            return 0.0;
        }
        self.f1().iter().sum::<f64>() / self.hits.len() as f64
    }

    /// One classification metric by name (`accuracy`, `f1_weighted`,
    /// `f1_macro`, `f1_class_<k>`); `None` for another name.
    pub fn metric(&self, name: &str) -> Option<f64> {
        match name {
            "accuracy" => Some(self.accuracy()),
            "f1_weighted" => Some(self.f1_weighted()),
            "f1_macro" => Some(self.f1_macro()),
            _ => {
                let k: usize = name.strip_prefix("f1_class_")?.parse().ok()?;
                (k < self.n_classes()).then(|| self.class_f1(k))
            }
        }
    }

    /// Whether `name` is a classification metric [`ConfusionMatrix::metric`] knows.
    pub fn knows(name: &str) -> bool {
        matches!(name, "accuracy" | "f1_weighted" | "f1_macro")
            || name
                .strip_prefix("f1_class_")
                .is_some_and(|k| k.parse::<usize>().is_ok())
    }

    /// The metrics of [`classification_metrics`] (empty when nothing was counted).
    pub fn metrics(&self) -> BTreeMap<String, f64> {
        if self.total == 0 {
            return BTreeMap::new();
        }
        let f1 = self.f1();
        let mut out = BTreeMap::new();
        out.insert("accuracy".to_string(), self.accuracy());
        out.insert("f1_weighted".to_string(), self.f1_weighted());
        out.insert("f1_macro".to_string(), self.f1_macro());
        for (k, v) in f1.iter().enumerate() {
            out.insert(format!("f1_class_{k}"), *v);
        }
        out
    }
}

/// F1 of each class `0..n_classes` (sklearn `average=None`, zero_division=0).
///
/// # Panics
/// If the slices differ in length.
pub fn f1_per_class(truth: &[usize], pred: &[usize], n_classes: usize) -> Vec<f64> {
    ConfusionMatrix::of(truth, pred, n_classes).f1()
}

/// Support-weighted mean of the per-class F1 (sklearn `average='weighted'`).
///
/// # Panics
/// If the slices differ in length.
pub fn f1_weighted(truth: &[usize], pred: &[usize], n_classes: usize) -> f64 {
    ConfusionMatrix::of(truth, pred, n_classes).f1_weighted()
}

/// Unweighted mean of the per-class F1 over all `n_classes` classes
/// (sklearn `average='macro'` with `labels=range(n_classes)`).
///
/// # Panics
/// If the slices differ in length.
pub fn f1_macro(truth: &[usize], pred: &[usize], n_classes: usize) -> f64 {
    ConfusionMatrix::of(truth, pred, n_classes).f1_macro()
}

/// All classification metrics: `accuracy`, `f1_weighted`, `f1_macro` and
/// `f1_class_<i>` for every class `i` in `0..n_classes`; none (an empty
/// map) for an empty split.
///
/// # Panics
/// If the slices differ in length.
pub fn classification_metrics(
    truth: &[usize],
    pred: &[usize],
    n_classes: usize,
) -> BTreeMap<String, f64> {
    // A split without examples has no metrics (not zeros a report could
    // mistake for scores).
    if truth.is_empty() {
        return BTreeMap::new();
    }
    ConfusionMatrix::of(truth, pred, n_classes).metrics()
}

fn to_f64<T: Copy + Into<f64>>(xs: &[T]) -> Vec<f64> {
    xs.iter().map(|&x| x.into()).collect()
}

/// Mean absolute error on unclipped values (0.0 when empty).
///
/// # Panics
/// If the slices differ in length.
pub fn mae<T: Copy + Into<f64>>(truth: &[T], pred: &[T]) -> f64 {
    check_len(truth.len(), pred.len());
    if truth.is_empty() {
        return 0.0;
    }
    let sum: f64 = truth
        .iter()
        .zip(pred)
        .map(|(&t, &p)| (p.into() - t.into()).abs())
        .sum();
    sum / truth.len() as f64
}

/// Pearson correlation; 0.0 (not NaN) when either side is constant, has
/// fewer than two values, or contains a non-finite value.
///
/// # Panics
/// If the slices differ in length.
pub fn pearson<T: Copy + Into<f64>>(truth: &[T], pred: &[T]) -> f64 {
    check_len(truth.len(), pred.len());
    let (t, p) = (to_f64(truth), to_f64(pred));
    let n = t.len();
    if n < 2 {
        return 0.0;
    }
    let mean = |v: &[f64]| v.iter().sum::<f64>() / n as f64;
    let (mt, mp) = (mean(&t), mean(&p));
    let (mut stp, mut stt, mut spp) = (0.0, 0.0, 0.0);
    for (a, b) in t.iter().zip(&p) {
        let (da, db) = (a - mt, b - mp);
        stp += da * db;
        stt += da * da;
        spp += db * db;
    }
    let r = stp / (stt * spp).sqrt();
    if r.is_finite() {
        // Rounding can push |r| a hair past 1; numpy clips too.
        r.clamp(-1.0, 1.0)
    } else {
        0.0
    }
}

/// MMSA `Mult_acc_k`: clip both sides to `[-limit, limit]`, round half to
/// even, and compare (`limit` 3 → Acc-7, 2 → Acc-5, 1 → Acc-3).
///
/// # Panics
/// If the slices differ in length.
pub fn multiclass_acc<T: Copy + Into<f64>>(truth: &[T], pred: &[T], limit: f64) -> f64 {
    check_len(truth.len(), pred.len());
    let bin = |x: T| x.into().clamp(-limit, limit).round_ties_even();
    let t: Vec<f64> = truth.iter().map(|&x| bin(x)).collect();
    let p: Vec<f64> = pred.iter().map(|&x| bin(x)).collect();
    accuracy(&t, &p)
}

/// Binary accuracy and weighted F1 after mapping with `positive`.
fn binary<T: Copy + Into<f64>>(
    truth: &[T],
    pred: &[T],
    keep: impl Fn(f64) -> bool,
    positive: impl Fn(f64) -> bool,
) -> (f64, f64) {
    check_len(truth.len(), pred.len());
    let (mut t, mut p) = (Vec::new(), Vec::new());
    for (&a, &b) in truth.iter().zip(pred) {
        let (a, b) = (a.into(), b.into());
        if keep(a) {
            t.push(usize::from(positive(a)));
            p.push(usize::from(positive(b)));
        }
    }
    (accuracy(&t, &p), f1_weighted(&t, &p, 2))
}

/// MMSA `Has0_acc_2` and `Has0_F1_score`: `x >= 0` vs `x < 0`.
///
/// # Panics
/// If the slices differ in length.
pub fn has0_binary<T: Copy + Into<f64>>(truth: &[T], pred: &[T]) -> (f64, f64) {
    binary(truth, pred, |_| true, |x| x >= 0.0)
}

/// MMSA `Non0_acc_2` and `Non0_F1_score`: drop `truth == 0`, then `x > 0`
/// vs `x <= 0`.
///
/// # Panics
/// If the slices differ in length.
pub fn non0_binary<T: Copy + Into<f64>>(truth: &[T], pred: &[T]) -> (f64, f64) {
    binary(truth, pred, |t| t != 0.0, |x| x > 0.0)
}

/// Names of the MMSA regression metrics, in [`regression_metrics`] order.
pub const REGRESSION_METRICS: [&str; 9] = [
    "mae",
    "corr",
    "acc7",
    "acc5",
    "acc3",
    "has0_acc2",
    "has0_f1",
    "non0_acc2",
    "non0_f1",
];

/// What a dataset's labels are, which decides the metrics sigsweep's
/// models report on it ([`classification_metrics`] or
/// [`regression_metrics`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Labels {
    /// Classes `0..n` (ERC files, the `fusion` and `erc` generators).
    Classes(usize),
    /// Sentiment scores (MMSA files, the `msa` generator).
    Scores,
}

impl Labels {
    /// Whether an evaluation on these labels reports metric `name`.
    pub fn reports(self, name: &str) -> bool {
        match self {
            Labels::Classes(n) => match name.strip_prefix("f1_class_") {
                // Exactly as written: `f1_class_3`, not `f1_class_03`.
                Some(k) => k
                    .parse::<usize>()
                    .is_ok_and(|i| i < n && i.to_string() == k),
                None => matches!(name, "accuracy" | "f1_weighted" | "f1_macro"),
            },
            Labels::Scores => REGRESSION_METRICS.contains(&name),
        }
    }

    /// The metrics an evaluation on these labels reports, for messages.
    pub fn describe(self) -> String {
        match self {
            Labels::Classes(n) => format!(
                "{n} classes: accuracy, f1_weighted, f1_macro and f1_class_0 … f1_class_{}",
                n.saturating_sub(1)
            ),
            Labels::Scores => format!("sentiment scores: {}", REGRESSION_METRICS.join(", ")),
        }
    }
}

/// One MMSA regression metric by name (see [`REGRESSION_METRICS`]); `None`
/// for another name. Computes only that metric.
///
/// # Panics
/// If the slices differ in length.
pub fn regression_metric<T: Copy + Into<f64>>(name: &str, truth: &[T], pred: &[T]) -> Option<f64> {
    Some(match name {
        "mae" => mae(truth, pred),
        "corr" => pearson(truth, pred),
        "acc7" => multiclass_acc(truth, pred, 3.0),
        "acc5" => multiclass_acc(truth, pred, 2.0),
        "acc3" => multiclass_acc(truth, pred, 1.0),
        "has0_acc2" => has0_binary(truth, pred).0,
        "has0_f1" => has0_binary(truth, pred).1,
        "non0_acc2" => non0_binary(truth, pred).0,
        "non0_f1" => non0_binary(truth, pred).1,
        _ => return None,
    })
}

/// All MMSA regression metrics: `mae`, `corr`, `acc7`, `acc5`, `acc3`,
/// `has0_acc2`, `has0_f1`, `non0_acc2`, `non0_f1` (fractions, unrounded).
///
/// # Panics
/// If the slices differ in length.
pub fn regression_metrics<T: Copy + Into<f64>>(truth: &[T], pred: &[T]) -> BTreeMap<String, f64> {
    // A split without examples has no metrics.
    if truth.is_empty() {
        return BTreeMap::new();
    }
    REGRESSION_METRICS
        .iter()
        .filter_map(|k| regression_metric(k, truth, pred).map(|v| (k.to_string(), v)))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_inputs_are_zero_not_nan() {
        let m = classification_metrics(&[], &[], 3);
        assert!(m.values().all(|v| *v == 0.0), "{m:?}");
        let r = regression_metrics::<f32>(&[], &[]);
        assert!(r.values().all(|v| *v == 0.0), "{r:?}");
    }

    #[test]
    fn constant_prediction_has_zero_corr() {
        let truth = [1.0f32, -1.0, 2.0];
        let pred = [0.5f32, 0.5, 0.5];
        assert_eq!(pearson(&truth, &pred), 0.0);
        assert_eq!(pearson(&[1.0f64], &[2.0]), 0.0);
        assert_eq!(pearson(&[1.0f64, f64::NAN], &[2.0, 1.0]), 0.0);
    }

    #[test]
    fn out_of_range_labels_count_for_accuracy_only() {
        let m = classification_metrics(&[0, 1, 7], &[0, 1, 7], 2);
        assert_eq!(m["accuracy"], 1.0);
        assert_eq!(m["f1_macro"], 1.0);
        assert_eq!(m.len(), 5);
    }

    #[test]
    #[should_panic(expected = "truth has 2 values but pred has 1")]
    fn length_mismatch_panics_with_message() {
        accuracy(&[1, 2], &[1]);
    }

    #[test]
    fn rounding_is_half_to_even() {
        // 0.5 → 0 and 1.5 → 2: a truth of 0.5 matches a pred of 0.4.
        assert_eq!(multiclass_acc(&[0.5f64, 1.5], &[0.4, 2.4], 3.0), 1.0);
        // Clipping happens before rounding: 3.6 → 3 matches 2.6 → 3.
        assert_eq!(multiclass_acc(&[3.6f64], &[2.6], 3.0), 1.0);
    }
}
