//! Datasets for a trial: synthetic generators (seeded by the trial seed) or
//! files in their published formats.

use serde::de::DeserializeOwned;

use sigsweep_data::erc::ErcDataset;
use sigsweep_data::seq::SeqDataset;
use sigsweep_data::synthetic;

use super::error::TrainError;

/// Where a trial's data comes from.
#[derive(Debug, Clone, Default, serde::Serialize, serde::Deserialize)]
pub struct DatasetRequest {
    /// `synthetic` or a file format (`iemocap`, `meld`, `m3ed`, `mmsa`).
    pub kind: String,
    pub generator: String,
    pub path: String,
    /// Generator or loader parameters (a JSON object).
    pub params: serde_json::Value,
    /// The cross-validation fold this trial holds out, if the sweep has
    /// folds (`[dataset] folds`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fold: Option<sigsweep_data::folds::Fold>,
}

impl DatasetRequest {
    /// The data in words, for errors: the file, or the generator.
    pub fn describe(&self) -> String {
        let whole = if self.kind == "synthetic" {
            format!("the synthetic `{}` data", self.generator)
        } else {
            format!("{} file {}", self.kind, self.path)
        };
        match &self.fold {
            Some(f) => format!("{whole} (held-out fold {} of {})", f.fold, f.folds),
            None => whole,
        }
    }
}

/// A dataset of one of the two shapes the models consume.
#[derive(Debug, Clone)]
// One dataset per trial, moved once into its workload: the size difference
// between the variants does not matter.
#[allow(clippy::large_enum_variant)]
pub enum LoadedDataset {
    Seq(SeqDataset),
    Erc(ErcDataset),
}

/// The dataset's parameters as `T`, deserialised the way the sweep file's
/// parse-time check does (`sigsweep_data::synthetic::params`, which names
/// the offending key).
fn params<T: DeserializeOwned>(req: &DatasetRequest) -> Result<T, TrainError> {
    Ok(sigsweep_data::synthetic::params(&req.params)?)
}

/// Loads or generates the dataset. Synthetic data is drawn from `seed`;
/// `valid_fraction` (the sweep's `[training] valid_fraction`) carves a
/// validation split from the training dialogues of ERC files without a dev
/// split, unless the dataset parameters set `valid_rate`. Generators and
/// MMSA files have their own validation splits.
pub fn load_dataset(
    req: &DatasetRequest,
    seed: u64,
    valid_fraction: f64,
) -> Result<LoadedDataset, TrainError> {
    let data = load_whole(req, seed, valid_fraction)?;
    // Cross-validation: the pooled splits, re-cut with this trial's fold
    // held out (the same partition for every seed).
    Ok(match (&req.fold, data) {
        (None, data) => data,
        (Some(f), LoadedDataset::Seq(d)) => {
            LoadedDataset::Seq(sigsweep_data::folds::seq_fold(d, f, valid_fraction)?)
        }
        (Some(f), LoadedDataset::Erc(d)) => {
            LoadedDataset::Erc(sigsweep_data::folds::erc_fold(d, f, valid_fraction)?)
        }
    })
}

fn load_whole(
    req: &DatasetRequest,
    seed: u64,
    valid_fraction: f64,
) -> Result<LoadedDataset, TrainError> {
    match (req.kind.as_str(), req.generator.as_str()) {
        ("synthetic", "fusion") => Ok(LoadedDataset::Seq(synthetic::fusion_classification(
            &params(req)?,
            seed,
        )?)),
        ("synthetic", "msa") => Ok(LoadedDataset::Seq(synthetic::synthetic_msa(
            &params(req)?,
            seed,
        )?)),
        ("mmsa", _) => Ok(LoadedDataset::Seq(sigsweep_data::formats::load_mmsa(
            std::path::Path::new(&req.path),
        )?)),
        ("synthetic", "erc") => Ok(LoadedDataset::Erc(synthetic::synthetic_erc(
            &params(req)?,
            seed,
        )?)),
        (kind @ ("iemocap" | "meld" | "m3ed"), _) => {
            let format: sigsweep_data::formats::Format = kind.parse()?;
            let mut options: sigsweep_data::formats::ErcOptions = params(req)?;
            options.default_valid_rate = Some(valid_fraction);
            Ok(LoadedDataset::Erc(sigsweep_data::formats::load_erc(
                std::path::Path::new(&req.path),
                format,
                &options,
            )?))
        }
        ("synthetic", other) => Err(TrainError::Dataset(format!(
            "unknown synthetic generator `{other}`; known: fusion"
        ))),
        (other, _) => Err(TrainError::Dataset(format!(
            "unknown dataset kind `{other}`"
        ))),
    }
}
