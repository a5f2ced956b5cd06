//! Multiple-comparison corrections with `statsmodels.stats.multitest.multipletests` conventions.
//!
//! Adjusted p-values are returned in the input order, clipped to `[0, 1]`, and monotone in the
//! rank of the raw p-values (step-down maximum for Holm, step-up minimum for Benjamini–Hochberg).
//! `NaN` inputs are treated as `1.0` (no evidence), so no `NaN` ever comes out.

use serde::{Deserialize, Serialize};

/// Family-wise or false-discovery-rate correction.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum Correction {
    /// Holm–Bonferroni step-down (controls FWER).
    #[default]
    Holm,
    /// Benjamini–Hochberg step-up (controls FDR), statsmodels `fdr_bh`.
    #[serde(rename = "bh")]
    BenjaminiHochberg,
    /// Bonferroni: `min(1, m p)`.
    Bonferroni,
    /// No correction.
    None,
}

impl Correction {
    /// CLI name.
    pub fn cli_name(self) -> &'static str {
        match self {
            Correction::Holm => "holm",
            Correction::BenjaminiHochberg => "bh",
            Correction::Bonferroni => "bonferroni",
            Correction::None => "none",
        }
    }

    /// Parses a CLI name (`fdr_bh`, statsmodels' name, is accepted for `bh`).
    pub fn from_cli(s: &str) -> Option<Self> {
        match s {
            "holm" => Some(Correction::Holm),
            "bh" | "fdr_bh" => Some(Correction::BenjaminiHochberg),
            "bonferroni" => Some(Correction::Bonferroni),
            "none" => Some(Correction::None),
            _ => None,
        }
    }

    /// Short human-readable name used in captions.
    pub fn label(self) -> &'static str {
        match self {
            Correction::Holm => "Holm-Bonferroni",
            Correction::BenjaminiHochberg => "Benjamini-Hochberg",
            Correction::Bonferroni => "Bonferroni",
            Correction::None => "no correction",
        }
    }
}

fn clean(p: &[f64]) -> Vec<f64> {
    p.iter()
        .map(|x| if x.is_nan() { 1.0 } else { x.clamp(0.0, 1.0) })
        .collect()
}

/// Sort order of `p` ascending (stable, so ties keep input order like numpy's mergesort).
fn order(p: &[f64]) -> Vec<usize> {
    let mut idx: Vec<usize> = (0..p.len()).collect();
    idx.sort_by(|&i, &j| p[i].total_cmp(&p[j]));
    idx
}

/// Holm–Bonferroni adjusted p-values.
pub fn holm(p: &[f64]) -> Vec<f64> {
    let p = clean(p);
    let m = p.len();
    let mut out = vec![0.0; m];
    let mut running = 0.0_f64;
    for (rank, &i) in order(&p).iter().enumerate() {
        let adj = ((m - rank) as f64 * p[i]).min(1.0);
        running = running.max(adj);
        out[i] = running;
    }
    out
}

/// Benjamini–Hochberg adjusted p-values (q-values).
pub fn benjamini_hochberg(p: &[f64]) -> Vec<f64> {
    let p = clean(p);
    let m = p.len();
    let mut out = vec![0.0; m];
    let idx = order(&p);
    let mut running = 1.0_f64;
    for (rank, &i) in idx.iter().enumerate().rev() {
        // statsmodels: p / ecdf factor, with ecdf factor = rank / m.
        let adj = p[i] / ((rank + 1) as f64 / m as f64);
        running = running.min(adj);
        out[i] = running.min(1.0);
    }
    out
}

/// Bonferroni adjusted p-values.
pub fn bonferroni(p: &[f64]) -> Vec<f64> {
    let m = p.len() as f64;
    clean(p).iter().map(|x| (x * m).min(1.0)).collect()
}

/// Adjust `p` with `method`; result in input order.
pub fn adjust(p: &[f64], method: Correction) -> Vec<f64> {
    match method {
        Correction::Holm => holm(p),
        Correction::BenjaminiHochberg => benjamini_hochberg(p),
        Correction::Bonferroni => bonferroni(p),
        Correction::None => clean(p),
    }
}
