//! Loaders for the published feature files.
//!
//! * [`load_mmsa`]: MMSA `aligned_50.pkl` / `unaligned_50.pkl` (CMU-MOSI,
//!   CMU-MOSEI) and SIMS `unaligned_39.pkl` → [`SeqDataset`](crate::seq::SeqDataset) with
//!   [`Task::Regression`](crate::seq::Task) labels from `regression_labels`.
//! * [`load_erc`]: MMGCN / MM-DFN `IEMOCAP_features.pkl` (9-tuple, Python 2),
//!   `MELD_features_raw1.pkl` (10-tuple) and the CCAC-2023 M3ED pickle
//!   (10-tuple with `devVid`) → [`ErcDataset`](crate::erc::ErcDataset).
//! * [`inspect()`]: a summary of either kind of file, for `sigsweep data inspect`.
//!
//! Errors name the file and the key path inside it (`train.audio`,
//! `videoAudio[Ses01F_impro01][3]`). Format details and conventions are in
//! the docs of the [`mmsa`] and [`erc`] submodules.

pub mod erc;
mod inspect;
pub mod mmsa;

use std::fmt;
use std::path::Path;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::pickle::{self, Value};
use crate::{DataError, Result};

pub use erc::{ErcOptions, carve_valid, erc_from_value, load_erc};
pub use inspect::{Inspection, LabelStats, SplitInfo, inspect, inspect_value};
pub use mmsa::{load_mmsa, mmsa_from_value};

/// Which layout a feature file has.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Format {
    /// Detect from the file's structure ([`detect`]).
    Auto,
    Iemocap,
    Meld,
    M3ed,
    Mmsa,
}

impl Format {
    pub fn as_str(self) -> &'static str {
        match self {
            Format::Auto => "auto",
            Format::Iemocap => "iemocap",
            Format::Meld => "meld",
            Format::M3ed => "m3ed",
            Format::Mmsa => "mmsa",
        }
    }

    /// Whether this is one of the ERC (dialogue) formats.
    pub fn is_erc(self) -> bool {
        matches!(self, Format::Iemocap | Format::Meld | Format::M3ed)
    }
}

impl fmt::Display for Format {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Format {
    type Err = DataError;

    fn from_str(s: &str) -> Result<Self> {
        Ok(match s.to_ascii_lowercase().as_str() {
            "auto" => Format::Auto,
            "iemocap" => Format::Iemocap,
            "meld" => Format::Meld,
            "m3ed" => Format::M3ed,
            "mmsa" | "mosi" | "mosei" | "sims" => Format::Mmsa,
            _ => {
                return Err(DataError::Param {
                    key: "format".into(),
                    message: format!("unknown format {s:?} (auto, iemocap, meld, m3ed, mmsa)"),
                });
            }
        })
    }
}

/// Guesses the format of a decoded pickle: a dict with a `train` key is
/// MMSA; a 9-tuple is IEMOCAP; a 10-tuple whose last field is a dict is
/// MELD (its trailing field holds per-dialogue labels) and one whose last
/// field is a collection of dialogue ids is M3ED (`…, devVid, testVid`).
pub fn detect(value: &Value) -> Option<Format> {
    match value {
        Value::Dict(_) if value.get("train").is_some() => Some(Format::Mmsa),
        Value::Tuple(items) | Value::List(items) => match items.len() {
            9 => Some(Format::Iemocap),
            10 => match &items[9] {
                Value::Dict(_) => Some(Format::Meld),
                Value::List(_) | Value::Tuple(_) | Value::Set(_) | Value::NdArray(_) => {
                    Some(Format::M3ed)
                }
                _ => None,
            },
            _ => None,
        },
        _ => None,
    }
}

fn invalid(path: &Path, message: impl Into<String>) -> DataError {
    DataError::Invalid {
        path: path.display().to_string(),
        message: message.into(),
    }
}

/// Reads a pickle and resolves `Auto` to the detected format.
fn read(path: &Path, format: Format) -> Result<(Value, Format)> {
    let value = pickle::from_path(path)?;
    let format = match format {
        Format::Auto => detect(&value).ok_or_else(|| {
            invalid(
                path,
                format!(
                    "cannot tell the format of a pickle holding {}; pass --format",
                    value.type_name()
                ),
            )
        })?,
        f => f,
    };
    Ok((value, format))
}

/// The file name without extension, used as the dataset name.
fn stem(path: &Path) -> String {
    path.file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_else(|| "dataset".into())
}
