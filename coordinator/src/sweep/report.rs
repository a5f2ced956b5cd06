//! What the report of a sweep states about it: the sweep's side of
//! [`sigsweep_report::ReportSpec`].

use super::SweepSpec;

impl SweepSpec {
    /// The dataset as the report and `run --dry-run` name it.
    pub fn dataset_label(&self) -> String {
        match (&self.dataset.generator, &self.dataset.path) {
            (Some(g), _) if self.dataset.kind == "synthetic" => format!("synthetic {g}"),
            (_, Some(p)) => format!("{} ({p})", self.dataset.kind),
            _ => self.dataset.kind.clone(),
        }
    }

    /// The report specification of this sweep: paired t-test with Holm's
    /// correction against the baseline, on the sweep's metrics (the CLI's
    /// `report` flags change the test, the correction and the baseline).
    pub fn report_spec(&self) -> sigsweep_report::ReportSpec {
        sigsweep_report::ReportSpec {
            sweep_name: self.name.clone(),
            dataset: self.dataset_label(),
            grid_keys: self.grid.keys().cloned().collect(),
            baseline_key: self.baseline_key(),
            select_metric: self.metrics.select.clone(),
            select_goal: self.metrics.select_goal,
            metrics: self.metrics.report.clone().into_iter().collect(),
            test: sigsweep_report::TestKind::PairedT,
            correction: sigsweep_report::Correction::Holm,
            selection_on_test: self.metrics.select_split == "test",
            confirmatory: false,
        }
    }
}
