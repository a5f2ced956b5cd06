//! Cross-validation folds: one trial trains on all folds but one and is
//! tested on the one left out.
//!
//! The whole dataset (train, validation and test splits pooled) is divided
//! into `folds` parts:
//! - [`FoldBy::Session`]: IEMOCAP's recording sessions (a dialogue id
//!   `Ses03F_impro01` is session 3), leave-one-session-out; `folds` must be
//!   the number of sessions in the file;
//! - [`FoldBy::Dialogue`]: whole dialogues, a seeded k-fold partition;
//! - [`FoldBy::Example`]: examples of a sequence dataset, a seeded k-fold
//!   partition.
//!
//! The partition depends on `seed` (the sweep's `fold_seed`), never on the
//! trial's seed, so every seed of every configuration sees the same folds
//! and comparisons pair on (seed, fold). From the training folds a
//! validation split of `valid_fraction` is carved (seeded by `seed` and the
//! fold) for epoch selection.

use rand::seq::SliceRandom;
use serde::{Deserialize, Serialize};

use crate::erc::{Dialogue, ErcDataset};
use crate::seq::{Array3, SeqDataset, SeqSplit};
use crate::{DataError, Result};

/// How examples are grouped into folds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum FoldBy {
    Session,
    Dialogue,
    Example,
}

impl FoldBy {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Session => "session",
            Self::Dialogue => "dialogue",
            Self::Example => "example",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "session" => Some(Self::Session),
            "dialogue" => Some(Self::Dialogue),
            "example" => Some(Self::Example),
            _ => None,
        }
    }
}

/// One trial's fold.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Fold {
    /// The held-out fold, `0..folds`.
    pub fold: u32,
    pub folds: u32,
    pub by: FoldBy,
    /// Seed of the partition and of the validation carve.
    pub seed: u64,
}

fn invalid(message: String) -> DataError {
    DataError::Param {
        key: "folds".to_string(),
        message,
    }
}

impl Fold {
    fn check(&self) -> Result<()> {
        if self.folds < 2 || self.fold >= self.folds {
            return Err(invalid(format!(
                "fold {} of {} is not a fold (need 2 or more folds)",
                self.fold, self.folds
            )));
        }
        Ok(())
    }

    /// Fold of each of `n` items: a seeded permutation dealt round-robin.
    fn assign(&self, n: usize) -> Vec<u32> {
        let mut order: Vec<usize> = (0..n).collect();
        order.shuffle(&mut crate::synthetic::rng(self.seed, 0xF01D));
        let mut fold = vec![0; n];
        for (k, i) in order.into_iter().enumerate() {
            if let Some(f) = fold.get_mut(i) {
                *f = (k % self.folds as usize) as u32;
            }
        }
        fold
    }

    /// Splits the indices of the training folds into (train, valid).
    fn carve(&self, mut rest: Vec<usize>, valid_fraction: f64) -> (Vec<usize>, Vec<usize>) {
        rest.shuffle(&mut crate::synthetic::rng(
            self.seed,
            0xCA5E + u64::from(self.fold),
        ));
        let n_valid = ((rest.len() as f64) * valid_fraction.clamp(0.0, 0.95)).round() as usize;
        let valid = rest.split_off(rest.len() - n_valid.min(rest.len()));
        let (mut train, mut valid) = (rest, valid);
        train.sort_unstable();
        valid.sort_unstable();
        (train, valid)
    }
}

/// IEMOCAP's session number of a dialogue id (`Ses03F_impro01` → 3).
pub fn session_of(id: &str) -> Option<u32> {
    id.strip_prefix("Ses")?.get(..2)?.parse().ok()
}

/// The dialogue dataset of one fold (see the module docs).
pub fn erc_fold(data: ErcDataset, fold: &Fold, valid_fraction: f64) -> Result<ErcDataset> {
    fold.check()?;
    let ErcDataset {
        name,
        dims,
        n_classes,
        n_speakers,
        class_names,
        train,
        valid,
        test,
    } = data;
    let all: Vec<Dialogue> = train.into_iter().chain(valid).chain(test).collect();
    let of: Vec<u32> = match fold.by {
        FoldBy::Session => {
            let mut sessions: Vec<u32> = Vec::new();
            let mut each = Vec::with_capacity(all.len());
            for d in &all {
                let s = session_of(&d.id).ok_or_else(|| {
                    invalid(format!(
                        "fold_by = \"session\" needs IEMOCAP dialogue ids like `Ses01F_impro01`; `{}` has no session",
                        d.id
                    ))
                })?;
                if !sessions.contains(&s) {
                    sessions.push(s);
                }
                each.push(s);
            }
            sessions.sort_unstable();
            if sessions.len() != fold.folds as usize {
                return Err(invalid(format!(
                    "fold_by = \"session\": the file has {} sessions ({:?}), but folds = {}",
                    sessions.len(),
                    sessions,
                    fold.folds
                )));
            }
            each.iter()
                .map(|s| sessions.iter().position(|x| x == s).unwrap_or(0) as u32)
                .collect()
        }
        FoldBy::Dialogue => fold.assign(all.len()),
        FoldBy::Example => {
            return Err(invalid(
                "fold_by = \"example\" splits sequence datasets; dialogues fold by \"dialogue\" or \"session\"".into(),
            ));
        }
    };
    if all.len() < fold.folds as usize {
        return Err(invalid(format!(
            "{} dialogues cannot make {} folds",
            all.len(),
            fold.folds
        )));
    }
    let rest: Vec<usize> = (0..all.len())
        .filter(|&i| of.get(i) != Some(&fold.fold))
        .collect();
    let (train_idx, valid_idx) = fold.carve(rest, valid_fraction);
    let mut slots: Vec<Option<Dialogue>> = all.into_iter().map(Some).collect();
    let mut take = |idx: &[usize]| -> Vec<Dialogue> {
        idx.iter()
            .filter_map(|&i| slots.get_mut(i).and_then(Option::take))
            .collect()
    };
    let train = take(&train_idx);
    let valid = take(&valid_idx);
    let test_idx: Vec<usize> = (0..of.len())
        .filter(|&i| of.get(i) == Some(&fold.fold))
        .collect();
    let test = take(&test_idx);
    Ok(ErcDataset {
        name: format!("{name} (fold {} of {})", fold.fold + 1, fold.folds),
        dims,
        n_classes,
        n_speakers,
        class_names,
        train,
        valid,
        test,
    })
}

fn concat(parts: &[&Array3]) -> Array3 {
    let shape = parts.first().map_or([0, 0, 0], |a| a.shape);
    let mut data = Vec::new();
    let mut n = 0;
    for p in parts {
        data.extend_from_slice(&p.data);
        n += p.shape[0];
    }
    Array3 {
        shape: [n, shape[1], shape[2]],
        data,
    }
}

fn gather_split(s: &SeqSplit, idx: &[usize]) -> SeqSplit {
    let pick = |v: &Option<Vec<usize>>| {
        v.as_ref()
            .map(|v| idx.iter().filter_map(|&i| v.get(i).copied()).collect())
    };
    SeqSplit {
        ids: idx.iter().filter_map(|&i| s.ids.get(i).cloned()).collect(),
        text: s.text.gather(idx),
        audio: s.audio.gather(idx),
        vision: s.vision.gather(idx),
        audio_lengths: pick(&s.audio_lengths),
        vision_lengths: pick(&s.vision_lengths),
        labels: idx
            .iter()
            .filter_map(|&i| s.labels.get(i).copied())
            .collect(),
    }
}

/// The sequence dataset of one fold (see the module docs).
pub fn seq_fold(data: SeqDataset, fold: &Fold, valid_fraction: f64) -> Result<SeqDataset> {
    fold.check()?;
    if fold.by != FoldBy::Example {
        return Err(invalid(format!(
            "a sequence dataset folds by \"example\", not \"{}\"",
            fold.by.as_str()
        )));
    }
    let splits = [&data.train, &data.valid, &data.test];
    for s in &splits[1..] {
        if s.text.shape[1..] != data.train.text.shape[1..]
            || s.audio.shape[1..] != data.train.audio.shape[1..]
            || s.vision.shape[1..] != data.train.vision.shape[1..]
        {
            return Err(invalid(
                "the splits have different sequence lengths or feature sizes; they cannot be pooled into folds".into(),
            ));
        }
    }
    let lengths = |f: fn(&SeqSplit) -> &Option<Vec<usize>>| -> Option<Vec<usize>> {
        let parts: Vec<&Vec<usize>> = splits.iter().filter_map(|s| f(s).as_ref()).collect();
        (parts.len() == splits.len()).then(|| parts.into_iter().flatten().copied().collect())
    };
    let pooled = SeqSplit {
        ids: splits.iter().flat_map(|s| s.ids.iter().cloned()).collect(),
        text: concat(&splits.map(|s| &s.text)),
        audio: concat(&splits.map(|s| &s.audio)),
        vision: concat(&splits.map(|s| &s.vision)),
        audio_lengths: lengths(|s| &s.audio_lengths),
        vision_lengths: lengths(|s| &s.vision_lengths),
        labels: splits
            .iter()
            .flat_map(|s| s.labels.iter().copied())
            .collect(),
    };
    let n = pooled.len();
    if n < fold.folds as usize {
        return Err(invalid(format!(
            "{n} examples cannot make {} folds",
            fold.folds
        )));
    }
    let of = fold.assign(n);
    let rest: Vec<usize> = (0..n).filter(|&i| of.get(i) != Some(&fold.fold)).collect();
    let test: Vec<usize> = (0..n).filter(|&i| of.get(i) == Some(&fold.fold)).collect();
    let (train, valid) = fold.carve(rest, valid_fraction);
    Ok(SeqDataset {
        name: format!("{} (fold {} of {})", data.name, fold.fold + 1, fold.folds),
        task: data.task,
        train: gather_split(&pooled, &train),
        valid: gather_split(&pooled, &valid),
        test: gather_split(&pooled, &test),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::synthetic::{ErcParams, FusionParams, fusion_classification, synthetic_erc};

    fn fold(fold: u32, folds: u32, by: FoldBy) -> Fold {
        Fold {
            fold,
            folds,
            by,
            seed: 0,
        }
    }

    #[test]
    fn the_test_folds_partition_the_dataset() -> Result<()> {
        let data = fusion_classification(&FusionParams::default(), 3)?;
        let total = data.train.len() + data.valid.len() + data.test.len();
        let mut seen: Vec<String> = Vec::new();
        for k in 0..4 {
            let f = seq_fold(data.clone(), &fold(k, 4, FoldBy::Example), 0.1)?;
            assert_eq!(f.train.len() + f.valid.len() + f.test.len(), total);
            for id in &f.test.ids {
                assert!(!f.train.ids.contains(id) && !f.valid.ids.contains(id));
            }
            seen.extend(f.test.ids.iter().cloned());
        }
        seen.sort();
        seen.dedup();
        assert_eq!(seen.len(), total);
        Ok(())
    }

    #[test]
    fn dialogues_fold_whole_and_sessions_leave_one_out() -> Result<()> {
        let mut data = synthetic_erc(&ErcParams::default(), 1)?;
        let n = data.train.len() + data.valid.len() + data.test.len();
        let f = erc_fold(data.clone(), &fold(1, 3, FoldBy::Dialogue), 0.1)?;
        assert_eq!(f.train.len() + f.valid.len() + f.test.len(), n);
        // Name the dialogues after five sessions.
        for (i, d) in data
            .train
            .iter_mut()
            .chain(data.valid.iter_mut())
            .chain(data.test.iter_mut())
            .enumerate()
        {
            d.id = format!("Ses0{}F_impro{i:02}", i % 5 + 1);
        }
        let f = erc_fold(data.clone(), &fold(2, 5, FoldBy::Session), 0.1)?;
        assert!(f.test.iter().all(|d| session_of(&d.id) == Some(3)));
        assert!(
            f.train
                .iter()
                .chain(&f.valid)
                .all(|d| session_of(&d.id) != Some(3))
        );
        let err = erc_fold(data, &fold(0, 4, FoldBy::Session), 0.1).unwrap_err();
        assert!(err.to_string().contains("the file has 5 sessions"), "{err}");
        Ok(())
    }

    #[test]
    fn the_partition_does_not_depend_on_the_fold_asked() {
        let f = fold(0, 5, FoldBy::Example);
        assert_eq!(f.assign(23), fold(3, 5, FoldBy::Example).assign(23));
        assert!(fold(5, 5, FoldBy::Example).check().is_err());
    }
}
