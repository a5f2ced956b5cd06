//! The tiny sweep of the end-to-end tests: late-fusion on synthetic fusion
//! data, small enough to train in seconds, large enough to tell
//! configurations apart.

/// A late-fusion sweep on synthetic data; every field has the value most
/// tests use.
#[derive(Debug, Clone)]
pub struct TinySweep {
    pub name: String,
    pub seeds: u32,
    pub epochs: u32,
    pub n_train: u32,
    /// The `[grid]` table's body, e.g. `modality_hidden = [2, 8]`.
    pub grid: String,
    /// The baseline table's body, e.g. `modality_hidden = 8`.
    pub baseline: String,
    /// The `report` value of `[metrics]`.
    pub report: String,
    /// Text appended after `[metrics]` (more keys of it, or other tables).
    pub tail: String,
}

impl Default for TinySweep {
    fn default() -> Self {
        Self {
            name: "tiny".into(),
            seeds: 3,
            epochs: 2,
            n_train: 64,
            grid: "modality_hidden = [2, 8]".into(),
            baseline: "modality_hidden = 8".into(),
            report: r#"{ accuracy = "max", f1_weighted = "max" }"#.into(),
            tail: String::new(),
        }
    }
}

impl TinySweep {
    /// The sweep file's text.
    pub fn toml(&self) -> String {
        format!(
            r#"name = "{name}"
seeds = {seeds}
baseline = {{ {baseline} }}

[model]
name = "late-fusion"
hidden = 16

[dataset]
kind = "synthetic"
generator = "fusion"
params = {{ n_train = {n_train}, n_valid = 64, n_test = 64, classes = 3, noise = 1.0 }}

[training]
epochs = {epochs}
batch_size = 32
lr = 0.005

[grid]
{grid}

[metrics]
select = "accuracy"
report = {report}
{tail}"#,
            name = self.name,
            seeds = self.seeds,
            baseline = self.baseline,
            report = self.report,
            tail = self.tail,
            n_train = self.n_train,
            epochs = self.epochs,
            grid = self.grid,
        )
    }

    /// Writes the sweep file into `dir` as `<name>.toml` and returns its path.
    pub fn write(&self, dir: &std::path::Path) -> std::path::PathBuf {
        let path = dir.join(format!("{}.toml", self.name));
        std::fs::write(&path, self.toml()).expect("write the sweep file");
        path
    }
}

#[cfg(test)]
mod tests {
    use super::TinySweep;

    #[test]
    fn the_fixture_is_a_valid_sweep() {
        let spec = sigsweep_coordinator::sweep::SweepSpec::parse(
            &TinySweep::default().toml(),
            "tiny.toml",
        )
        .expect("parses");
        assert_eq!(spec.trials().len(), 6);
        spec.check_declared(&[])
            .expect("late-fusion declares its parameters");
    }
}
