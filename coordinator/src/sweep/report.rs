//! What the report of a sweep states about it: the sweep's side of
//! [`sigsweep_report::ReportSpec`].

use super::SweepSpec;

impl SweepSpec {
    /// The dataset as the report and `run --dry-run` name it.
    pub fn dataset_label(&self) -> String {
        let Some(d) = &self.dataset else {
            return "the program's own data".to_string();
        };
        match (&d.generator, &d.path) {
            (Some(g), _) if d.kind == "synthetic" => format!("synthetic {g}"),
            (_, Some(p)) => format!("{} ({p})", d.kind),
            _ => d.kind.clone(),
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
            run: self.run_info(),
        }
    }

    /// What this sweep runs, for the report's Reproducibility section
    /// (the CLI adds the burn version of its workers).
    pub fn run_info(&self) -> sigsweep_report::RunInfo {
        let mut params: Vec<(String, String)> = self
            .model
            .params
            .iter()
            .map(|(k, v)| (k.clone(), v.to_string()))
            .collect();
        params.extend(
            self.training
                .iter()
                .flat_map(super::TrainingSection::as_params)
                .filter(|(k, _)| !k.starts_with("save_"))
                .map(|(k, v)| (k, v.to_string())),
        );
        for (model, fixed) in &self.model.per_model {
            params.extend(
                fixed
                    .iter()
                    .map(|(k, v)| (format!("{model}.{k}"), v.to_string())),
            );
        }
        let dataset = match &self.dataset {
            Some(d) if !d.params.is_empty() => format!(
                "{} {}",
                self.dataset_label(),
                serde_json::to_string(&d.params).unwrap_or_default()
            ),
            _ => self.dataset_label(),
        };
        let model = match &self.model.command {
            Some(c) => format!("training program `{}`", c.argv.join(" ")),
            None => self.models().join(", "),
        };
        sigsweep_report::RunInfo {
            model,
            params,
            dataset,
            seeds: self.seeds.clone(),
            search_space: self
                .grid
                .iter()
                .map(|(k, vs)| (k.clone(), vs.iter().map(ToString::to_string).collect()))
                .collect(),
            epochs: self.training.as_ref().map_or(0, |t| t.epochs),
            gpus_per_trial: self.resources.gpus_per_trial,
            trials_per_gpu: self.resources.trials_per_gpu,
            fuse_seeds: self.resources.fuse_seeds,
            versions: vec![(
                "sigsweep".to_string(),
                env!("CARGO_PKG_VERSION").to_string(),
            )],
        }
    }
}
