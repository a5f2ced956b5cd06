//! `sigsweep data inspect`: what is in a feature file.

use std::fmt;
use std::path::Path;

use serde::Serialize;

use super::erc::erc_from_value;
use super::mmsa::mmsa_from_value;
use super::{Format, invalid, read};
use crate::erc::{Dialogue, ErcDataset};
use crate::pickle::Value;
use crate::seq::{SeqDataset, SeqSplit};
use crate::{DataError, Result};

/// Summary of a feature file (serialises to JSON; [`fmt::Display`] prints
/// a table).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Inspection {
    pub path: String,
    /// The format read (detected when `Auto` was asked for).
    pub format: Format,
    /// Feature dims `[text, audio, visual]`.
    pub dims: [usize; 3],
    /// MSA only: padded sequence lengths `[text, audio, vision]`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub seq_lens: Option<[usize; 3]>,
    /// MSA only: whether `audio_lengths`/`vision_lengths` are present.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub has_lengths: Option<bool>,
    /// ERC only: number of speakers implied by the speaker encoding.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub n_speakers: Option<usize>,
    /// ERC only: class names, index = class id.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub class_names: Vec<String>,
    pub splits: Vec<SplitInfo>,
}

/// One split of an [`Inspection`].
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SplitInfo {
    pub name: String,
    /// ERC: dialogues; MSA: samples.
    pub count: usize,
    /// ERC only: utterances.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub utterances: Option<usize>,
    /// ERC only: utterances per speaker index.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub speaker_counts: Option<Vec<usize>>,
    pub labels: LabelStats,
}

/// Label distribution of a split.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum LabelStats {
    /// Utterances per class.
    Classes { counts: Vec<usize> },
    /// Regression labels: range, mean, and the 7-class histogram (labels
    /// clipped to [-3, 3] and rounded half to even, bins -3..=3).
    Regression {
        min: f64,
        max: f64,
        mean: f64,
        histogram7: [usize; 7],
    },
}

/// Reads the file at `path` and summarises it. No validation split is
/// carved: the splits are the file's own.
pub fn inspect(path: &Path, format: Format) -> Result<Inspection> {
    let (value, format) = read(path, format)?;
    inspect_value(value, format, &path.display().to_string()).map_err(|e| match e {
        DataError::Invalid { message, .. } => invalid(path, message),
        other => other,
    })
}

/// Summarises an already decoded pickle of a known (not `Auto`) format.
pub fn inspect_value(value: Value, format: Format, path: &str) -> Result<Inspection> {
    match format {
        Format::Mmsa => Ok(from_seq(&mmsa_from_value(value, path)?, path)),
        Format::Iemocap | Format::Meld | Format::M3ed => {
            Ok(from_erc(&erc_from_value(value, format)?, format, path))
        }
        Format::Auto => Err(DataError::Param {
            key: "format".into(),
            message: "inspect_value needs a concrete format".into(),
        }),
    }
}

fn from_seq(d: &SeqDataset, path: &str) -> Inspection {
    let split = |name: &str, s: &SeqSplit| {
        let labels: Vec<f64> = s.labels.iter().map(|&x| f64::from(x)).collect();
        let mut histogram7 = [0usize; 7];
        for &x in &labels {
            let bin = x.clamp(-3.0, 3.0).round_ties_even() + 3.0;
            histogram7[bin as usize] += 1;
        }
        let n = labels.len().max(1) as f64;
        SplitInfo {
            name: name.into(),
            count: s.len(),
            utterances: None,
            speaker_counts: None,
            labels: LabelStats::Regression {
                min: labels.iter().copied().fold(f64::INFINITY, f64::min),
                max: labels.iter().copied().fold(f64::NEG_INFINITY, f64::max),
                mean: labels.iter().sum::<f64>() / n,
                histogram7,
            },
        }
    };
    Inspection {
        path: path.into(),
        format: Format::Mmsa,
        dims: d.dims(),
        seq_lens: Some(d.lens()),
        has_lengths: Some(d.train.audio_lengths.is_some() || d.train.vision_lengths.is_some()),
        n_speakers: None,
        class_names: Vec::new(),
        splits: vec![
            split("train", &d.train),
            split("valid", &d.valid),
            split("test", &d.test),
        ],
    }
}

fn from_erc(d: &ErcDataset, format: Format, path: &str) -> Inspection {
    let split = |name: &str, dialogues: &[Dialogue]| {
        let mut counts = vec![0usize; d.n_classes];
        let mut speakers = vec![0usize; d.n_speakers];
        for dl in dialogues {
            for &l in &dl.labels {
                if let Some(c) = counts.get_mut(l) {
                    *c += 1;
                }
            }
            for &s in &dl.speakers {
                if let Some(c) = speakers.get_mut(s) {
                    *c += 1;
                }
            }
        }
        SplitInfo {
            name: name.into(),
            count: dialogues.len(),
            utterances: Some(dialogues.iter().map(Dialogue::len).sum()),
            speaker_counts: Some(speakers),
            labels: LabelStats::Classes { counts },
        }
    };
    Inspection {
        path: path.into(),
        format,
        dims: d.dims,
        seq_lens: None,
        has_lengths: None,
        n_speakers: Some(d.n_speakers),
        class_names: d.class_names.clone(),
        splits: vec![
            split("train", &d.train),
            split("valid", &d.valid),
            split("test", &d.test),
        ],
    }
}

impl fmt::Display for Inspection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "file:    {}", self.path)?;
        writeln!(f, "format:  {}", self.format)?;
        writeln!(
            f,
            "dims:    text {}, audio {}, visual {}",
            self.dims[0], self.dims[1], self.dims[2]
        )?;
        if let Some([t, a, v]) = self.seq_lens {
            let lengths = if self.has_lengths == Some(true) {
                " (unaligned, with audio/vision lengths)"
            } else {
                ""
            };
            writeln!(f, "seq len: text {t}, audio {a}, vision {v}{lengths}")?;
        }
        if let Some(n) = self.n_speakers {
            writeln!(f, "speakers: {n}")?;
        }
        writeln!(f)?;
        if self.format == Format::Mmsa {
            writeln!(
                f,
                "{:<6} {:>8} {:>7} {:>7} {:>7}   histogram -3..3",
                "split", "samples", "min", "max", "mean"
            )?;
            for s in &self.splits {
                if let LabelStats::Regression {
                    min,
                    max,
                    mean,
                    histogram7,
                } = &s.labels
                {
                    let hist: Vec<String> = histogram7.iter().map(usize::to_string).collect();
                    let [min, max, mean] = [min, max, mean].map(|x| {
                        if s.count == 0 {
                            "-".to_string()
                        } else {
                            format!("{x:.3}")
                        }
                    });
                    writeln!(
                        f,
                        "{:<6} {:>8} {min:>7} {max:>7} {mean:>7}   {}",
                        s.name,
                        s.count,
                        hist.join(" ")
                    )?;
                }
            }
            return self.empty_splits(f);
        }
        write!(f, "{:<6} {:>9} {:>10}", "split", "dialogues", "utterances")?;
        for name in &self.class_names {
            write!(f, " {name:>6}")?;
        }
        writeln!(f, "   speakers")?;
        for s in &self.splits {
            write!(
                f,
                "{:<6} {:>9} {:>10}",
                s.name,
                s.count,
                s.utterances.unwrap_or(0)
            )?;
            if let LabelStats::Classes { counts } = &s.labels {
                for c in counts {
                    write!(f, " {c:>6}")?;
                }
            }
            let speakers: Vec<String> = s
                .speaker_counts
                .iter()
                .flatten()
                .map(usize::to_string)
                .collect();
            writeln!(f, "   {}", speakers.join("/"))?;
        }
        self.empty_splits(f)
    }
}

impl Inspection {
    /// A note for a training or test split without examples: a trial on
    /// the file fails (an empty validation split is common, and reported
    /// where epochs are selected on it).
    fn empty_splits(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for s in &self.splits {
            let examples = s.utterances.unwrap_or(s.count);
            let why = match s.name.as_str() {
                "train" => "nothing to train on",
                "test" => "nothing to report metrics on",
                _ => continue,
            };
            if examples == 0 {
                writeln!(
                    f,
                    "note: the {} split has no examples: a trial on this file fails ({why})",
                    s.name
                )?;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A split of `count` samples; an empty one with the statistics of
    /// no labels (as `from_seq` computes them: ±∞ and NaN).
    fn split(name: &str, count: usize) -> SplitInfo {
        let (min, max, mean) = if count == 0 {
            (f64::INFINITY, f64::NEG_INFINITY, f64::NAN)
        } else {
            (-1.0, 1.0, 0.0)
        };
        SplitInfo {
            name: name.into(),
            count,
            utterances: None,
            speaker_counts: None,
            labels: LabelStats::Regression {
                min,
                max,
                mean,
                histogram7: [0, 0, count, 0, 0, 0, 0],
            },
        }
    }

    #[test]
    fn an_empty_training_or_test_split_is_called_out() {
        let mut inspection = Inspection {
            path: "x.pkl".into(),
            format: Format::Mmsa,
            dims: [768, 5, 20],
            seq_lens: Some([50, 375, 500]),
            has_lengths: Some(false),
            n_speakers: None,
            class_names: Vec::new(),
            splits: vec![split("train", 0), split("valid", 0), split("test", 4)],
        };
        let text = inspection.to_string();
        assert!(
            text.contains("note: the train split has no examples"),
            "{text}"
        );
        assert!(!text.contains("valid split"), "{text}");
        assert!(!text.contains("NaN") && !text.contains("inf"), "{text}");
        inspection.splits[0].count = 8;
        assert!(!inspection.to_string().contains("note:"), "{inspection}");
    }
}
