//! CSV rendering: one row per metric × configuration with raw numbers (RFC 4180 quoting).
//!
//! Columns: `metric,goal,config_key,<grid keys…>,n,mean,std,is_baseline,is_best,is_winner,
//! test_used,n_pairs,delta,seed_wins,seed_ties,seed_losses,ci95_lo,ci95_hi,dz,p,p_adj,significant,exploratory`. Non-finite or
//! missing numbers are empty fields; floats use Rust's shortest round-trip representation.

use crate::report::{Report, UsedTest};

fn quote(s: &str) -> String {
    if s.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s.to_string()
    }
}

fn num(x: f64) -> String {
    if x.is_finite() {
        format!("{x}")
    } else {
        String::new()
    }
}

/// Render as CSV.
pub fn render(r: &Report) -> String {
    let mut header: Vec<String> = ["metric", "goal", "config_key"]
        .iter()
        .map(|s| s.to_string())
        .collect();
    header.extend(r.grid_keys.iter().cloned());
    header.extend(
        [
            "n",
            "mean",
            "std",
            "is_baseline",
            "is_best",
            "is_winner",
            "test_used",
            "n_pairs",
            "delta",
            "seed_wins",
            "seed_ties",
            "seed_losses",
            "ci95_lo",
            "ci95_hi",
            "dz",
            "p",
            "p_adj",
            "significant",
            "exploratory",
        ]
        .iter()
        .map(|s| s.to_string()),
    );
    let mut out = header
        .iter()
        .map(|h| quote(h))
        .collect::<Vec<_>>()
        .join(",");
    out.push('\n');
    for t in &r.tables {
        for row in &t.rows {
            let mut f: Vec<String> = vec![
                quote(&t.metric),
                t.goal.as_str().to_string(),
                quote(&row.config_key),
            ];
            f.extend(row.hyper.iter().map(|h| quote(h)));
            f.push(row.seeds.len().to_string());
            f.push(num(row.mean));
            f.push(num(row.std));
            f.push(row.is_baseline.to_string());
            f.push(row.is_best.to_string());
            f.push(row.is_winner.to_string());
            match &row.comparison {
                None => {
                    f.push("baseline".to_string());
                    f.extend(std::iter::repeat_n(String::new(), 10));
                    f.push("false".to_string());
                    f.push("false".to_string());
                }
                Some(c) => {
                    f.push(
                        match c.used {
                            UsedTest::Paired => r.test.cli_name(),
                            UsedTest::CorrectedResampled => "corrected_t",
                            UsedTest::WelchFallback => "welch",
                            UsedTest::None => "none",
                        }
                        .to_string(),
                    );
                    f.push(c.n_pairs.to_string());
                    f.push(num(c.delta));
                    f.extend([c.seeds.wins, c.seeds.ties, c.seeds.losses].map(|k| k.to_string()));
                    f.extend([c.ci95[0], c.ci95[1], c.dz, c.p, c.p_adj].map(num));
                    f.push(c.significant.to_string());
                    f.push(c.exploratory.to_string());
                }
            }
            out.push_str(&f.join(","));
            out.push('\n');
        }
    }
    out
}
