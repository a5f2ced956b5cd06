//! Per-seed scores from anywhere (`sigsweep stats A.csv B.csv`): a CSV file
//! per method with a seed column and a score column, paired by seed.

use std::collections::BTreeMap;

use sigsweep_stats::Comparison;

/// Reads `seed → score` from a CSV file with a header row.
pub fn read_scores(
    path: &str,
    seed_column: &str,
    column: Option<&str>,
) -> Result<(String, BTreeMap<String, f64>), String> {
    let mut reader = csv::ReaderBuilder::new()
        .trim(csv::Trim::All)
        .from_path(path)
        .map_err(|e| format!("cannot read {path}: {e}"))?;
    let headers = reader
        .headers()
        .map_err(|e| format!("{path}: no header row: {e}"))?
        .clone();
    let seed_idx = headers
        .iter()
        .position(|h| h == seed_column)
        .ok_or_else(|| {
            format!(
                "{path}: no column `{seed_column}` (columns: {})",
                headers.iter().collect::<Vec<_>>().join(", ")
            )
        })?;
    let rows: Vec<csv::StringRecord> = reader
        .records()
        .collect::<Result<_, _>>()
        .map_err(|e| format!("{path}: malformed CSV: {e}"))?;
    let score_idx = match column {
        Some(c) => headers
            .iter()
            .position(|h| h == c)
            .ok_or_else(|| format!("{path}: no column `{c}`"))?,
        None => {
            let numeric: Vec<usize> = (0..headers.len())
                .filter(|&i| {
                    i != seed_idx
                        && rows
                            .iter()
                            .all(|r| r.get(i).is_some_and(|v| v.parse::<f64>().is_ok()))
                })
                .collect();
            match numeric.as_slice() {
                [one] => *one,
                [] => return Err(format!("{path}: no numeric score column")),
                many => {
                    return Err(format!(
                        "{path}: several numeric columns ({}); choose one with --column",
                        many.iter()
                            .map(|&i| &headers[i])
                            .collect::<Vec<_>>()
                            .join(", ")
                    ));
                }
            }
        }
    };
    let mut scores = BTreeMap::new();
    for (line, r) in rows.iter().enumerate() {
        let seed = r.get(seed_idx).unwrap_or_default().to_string();
        let raw = r.get(score_idx).unwrap_or_default();
        let v: f64 = raw
            .parse()
            .map_err(|_| format!("{path}: row {}: `{raw}` is not a number", line + 2))?;
        if !v.is_finite() {
            return Err(format!(
                "{path}: row {}: the score of seed `{seed}` is `{raw}`, not a finite number \
                 (a failed run? leave its row out)",
                line + 2
            ));
        }
        if scores.insert(seed.clone(), v).is_some() {
            return Err(format!("{path}: seed `{seed}` appears twice"));
        }
    }
    Ok((headers[score_idx].to_string(), scores))
}

/// Two score files compared seed by seed.
#[derive(Debug, Clone)]
pub struct FileComparison {
    /// The score column read from each file.
    pub columns: [String; 2],
    /// Scores without a partner in the other file (left out of the paired
    /// tests; Welch's test uses every score).
    pub unpaired: usize,
    pub comparison: Comparison,
}

/// Reads both files and compares the seeds they share (at least 2).
pub fn compare_files(
    a_path: &str,
    b_path: &str,
    seed_column: &str,
    column: Option<&str>,
) -> Result<FileComparison, String> {
    let (col_a, a) = read_scores(a_path, seed_column, column)?;
    let (col_b, b) = read_scores(b_path, seed_column, column)?;
    let seeds: Vec<&String> = a.keys().filter(|s| b.contains_key(*s)).collect();
    if seeds.len() < 2 {
        return Err("fewer than 2 seeds appear in both files: nothing to pair".into());
    }
    let xa: Vec<f64> = seeds.iter().map(|s| a[*s]).collect();
    let xb: Vec<f64> = seeds.iter().map(|s| b[*s]).collect();
    let mut comparison = sigsweep_stats::compare(&xa, &xb);
    if !(comparison.mean_diff.is_finite() && comparison.std_diff.is_finite()) {
        return Err(format!(
            "the scores are too large to compare: the mean or spread of their differences \
             overflows ({} and {})",
            comparison.mean_diff, comparison.std_diff
        ));
    }
    let all_a: Vec<f64> = a.values().copied().collect();
    let all_b: Vec<f64> = b.values().copied().collect();
    if let Ok(w) = sigsweep_stats::welch_t(&all_a, &all_b, sigsweep_stats::Alternative::TwoSided) {
        comparison.welch_p = w.p;
    }
    Ok(FileComparison {
        columns: [col_a, col_b],
        unpaired: a.len() + b.len() - 2 * seeds.len(),
        comparison,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(dir: &tempfile::TempDir, name: &str, text: &str) -> String {
        let path = dir.path().join(name);
        std::fs::write(&path, text).expect("write");
        path.to_string_lossy().into_owned()
    }

    #[test]
    fn scores_pair_by_seed_and_bad_values_are_named() {
        let dir = tempfile::tempdir().expect("temp dir");
        let a = file(&dir, "a.csv", "seed,acc\n1,0.5\n2,0.6\n3,0.7\n9,0.1\n");
        let b = file(&dir, "b.csv", "seed,acc\n3,0.6\n2,0.5\n1,0.45\n");
        let f = compare_files(&a, &b, "seed", None).expect("compare");
        assert_eq!((f.comparison.n, f.unpaired), (3, 1));
        assert!((f.comparison.mean_diff - (0.05 + 0.1 + 0.1) / 3.0).abs() < 1e-12);

        let nan = file(&dir, "nan.csv", "seed,acc\n1,0.4\n2,nan\n3,0.6\n");
        let err = compare_files(&a, &nan, "seed", None).expect_err("a NaN score");
        assert!(
            err.contains("nan.csv: row 3") && err.contains("seed `2`") && err.contains("finite"),
            "{err}"
        );
        let inf = file(&dir, "inf.csv", "seed,acc\n1,0.4\n2,-inf\n");
        assert!(compare_files(&inf, &b, "seed", None).is_err());
        let huge = file(&dir, "huge.csv", "seed,acc\n1,1e308\n2,1e308\n");
        let neg = file(&dir, "neg.csv", "seed,acc\n1,-1e308\n2,-1e308\n");
        let err = compare_files(&huge, &neg, "seed", None).expect_err("overflow");
        assert!(err.contains("overflows"), "{err}");
        let wild = file(&dir, "wild.csv", "seed,acc\n1,1e308\n2,-1e308\n3,1e308\n");
        let err = compare_files(&a, &wild, "seed", None).expect_err("overflow");
        assert!(err.contains("too large"), "{err}");
        let dup = file(&dir, "dup.csv", "seed,acc\n1,0.4\n1,0.5\n");
        let err = compare_files(&a, &dup, "seed", None).expect_err("duplicate");
        assert!(err.contains("appears twice"), "{err}");
    }
}
