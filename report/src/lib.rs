//! # sigsweep-report
//!
//! Aggregates a sweep's [`TrialRecord`]s over seeds and renders paper-ready significance
//! reports: terminal, Markdown, LaTeX (booktabs), CSV, JSON and a self-contained HTML page with
//! inline SVG plots. Statistics come from `sigsweep-stats`.
//!
//! ## Conventions
//!
//! * One row per configuration (first-seen order), mean ± std (ddof 1) over completed seeds.
//! * **Pairing by seed**: a configuration is compared with the baseline on the seeds completed
//!   in both (failed or missing trials excluded, and listed in the notes). With fewer than two
//!   shared seeds the comparison falls back to Welch's unpaired t-test (said in notes/caption).
//! * Δ = config − baseline in metric units with a 95% t-interval; d_z = mean(Δ)/std(Δ).
//! * p: two-sided, from the chosen [`TestKind`]; p_adj: the chosen [`Correction`] across all
//!   tested non-baseline configurations of that metric; `*` when p_adj < 0.05. For
//!   [`TestKind::Aso`] the column holds `ε_min` (higher-is-better orientation from the metric's
//!   [`Goal`]), the correction is deepsig's Bonferroni adjustment of the confidence level, and
//!   `*` means `ε_min < 0.5`. All-zero paired differences are reported as "no difference", p = 1.
//! * Bold marks the best mean, direction-aware ([`Goal::Min`]: lower is better).
//! * The winner is the best validation mean of `select_metric`; its comparisons are marked `†`
//!   (exploratory) unless the report is confirmatory. Test-split selection is flagged on top.
//! * A power line per metric gives the minimum detectable d_z (80% power, α = 0.05/m) and
//!   warnings when significance is out of reach.
//!
//! ## Layout
//!
//! | module | contents |
//! |---|---|
//! | [`model`] | input types: [`TrialRecord`], [`ReportSpec`], [`Goal`], [`TestKind`], [`Correction`] |
//! | [`report`](mod@report) | output types: [`Report`], [`MetricTable`], [`Row`], [`RowComparison`] |
//! | [`build`](mod@build) | [`build()`]: records → report (pure, never panics) |
//! | [`paper`] | several datasets in one table (`--layout paper`), corrected across the table |
//! | [`per_example`] | tests over test examples from the trials' predictions: paired bootstrap, McNemar, per-class F1, confusion |
//! | [`writeup`] | the Statistics paragraph, `report.bib` and the Reproducibility section |
//! | [`view`] | format-neutral captions, cells and number formatting |
//! | [`term`], [`markdown`], [`latex`], [`csv`], [`json`], [`html`], [`plots`] | renderers |

pub mod build;
pub mod csv;
pub mod escape;
pub mod html;
pub mod json;
pub mod latex;
pub mod markdown;
pub mod model;
pub mod outputs;
pub mod paper;
pub mod per_example;
pub mod plots;
pub mod report;
pub mod scores;
pub mod term;
pub mod view;
pub mod writeup;

pub use build::{build, build_with_predictions};
pub use model::{Correction, Goal, ReportSpec, RunInfo, TestKind, TrialRecord, TrialStatus};
pub use report::{
    Compute, ConfigSummary, Curve, FailedTrial, MetricTable, Report, Row, RowComparison,
    SeedCounts, UsedTest,
};
pub use sigsweep_types::EpochRecord;

/// Output format of [`render`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// Aligned plain text; ANSI colour when `color`.
    Term {
        /// Emit ANSI escape codes.
        color: bool,
    },
    /// GitHub-flavoured Markdown.
    Markdown,
    /// LaTeX booktabs tables, ready to `\input`.
    Latex,
    /// One CSV row per metric × configuration, raw numbers.
    Csv,
    /// The whole [`Report`] as JSON.
    Json,
    /// Self-contained HTML page with inline CSS and SVG plots.
    Html,
}

/// Render a report.
pub fn render(report: &Report, format: Format) -> String {
    match format {
        Format::Term { color } => term::render(report, color),
        Format::Markdown => markdown::render(report),
        Format::Latex => latex::render(report),
        Format::Csv => csv::render(report),
        Format::Json => json::render(report),
        Format::Html => html::render(report),
    }
}
