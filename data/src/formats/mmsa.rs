//! MMSA pickles (CMU-MOSI, CMU-MOSEI, CH-SIMS).
//!
//! One pickled dict with keys `train`, `valid`, `test`; each split is a dict
//! of numpy arrays / lists (MMSA README). What this loader reads:
//!
//! | key | shape | use |
//! |---|---|---|
//! | `text` | `(N, Lt, 768)` | [`SeqSplit::text`] (frozen BERT features) |
//! | `audio` | `(N, La, Da)` | [`SeqSplit::audio`] |
//! | `vision` | `(N, Lv, Dv)` | [`SeqSplit::vision`] |
//! | `regression_labels` | `(N,)` or `(N, 1)` | [`SeqSplit::labels`] |
//! | `id` | `(N,)` object array / list of str | [`SeqSplit::ids`] (`{split}-{i}` if absent) |
//! | `audio_lengths`, `vision_lengths` | `(N,)` array or list | unaligned files only |
//!
//! Other keys (`raw_text`, `text_bert`, `annotations`,
//! `classification_labels`, SIMS's unimodal labels) are ignored.
//!
//! Conventions:
//! * float32 and float64 (and integer) arrays are accepted and stored as
//!   `f32`, as MMSA's loader casts with `astype(float32)`;
//! * non-finite feature values become 0: MMSA sets `audio == -inf` to 0
//!   (MOSEI's COVAREP features contain `-inf`); we also zero NaN and ±inf
//!   in every modality, since no model can consume them;
//! * checks: all three arrays are 3-D with the same `N` as the labels (and
//!   ids, lengths) and no dimension but `N` zero, every split has the same
//!   sequence lengths and feature dims, and every length is ≤ its sequence
//!   length. Errors name the split and key
//!   (`valid.audio_lengths`).

use std::path::Path;

use super::{invalid, stem};
use crate::pickle::{self, Value};
use crate::seq::{Array3, SeqDataset, SeqSplit, Task};
use crate::{DataError, Result};

type Msg<T> = std::result::Result<T, String>;

/// Loads an MMSA pickle; the dataset is named after the file stem.
pub fn load_mmsa(path: &Path) -> Result<SeqDataset> {
    let value = pickle::from_path(path)?;
    mmsa_from_value(value, &stem(path)).map_err(|e| match e {
        DataError::Invalid { message, .. } => invalid(path, message),
        other => other,
    })
}

/// Builds a dataset from a decoded MMSA pickle (consumed, so large arrays
/// are moved rather than copied). Errors use `name` as their path.
pub fn mmsa_from_value(value: Value, name: &str) -> Result<SeqDataset> {
    let err = |message: String| DataError::Invalid {
        path: name.to_string(),
        message,
    };
    let Value::Dict(mut top) = value else {
        return Err(err(format!(
            "expected a dict with train/valid/test, got {}",
            value.type_name()
        )));
    };
    let mut split = |key: &str| -> Result<SeqSplit> {
        let v = take(&mut top, key).ok_or_else(|| err(format!("missing split `{key}`")))?;
        read_split(key, v).map_err(err)
    };
    let train = split("train")?;
    let valid = split("valid")?;
    let test = split("test")?;
    for (key, s) in [("valid", &valid), ("test", &test)] {
        for (m, a, b) in [
            ("text", &s.text, &train.text),
            ("audio", &s.audio, &train.audio),
            ("vision", &s.vision, &train.vision),
        ] {
            // A model is built for train's shapes, as MMSA's `seq_lens` are.
            if a.shape[1..] != b.shape[1..] {
                return Err(err(format!(
                    "{key}.{m}: (sequence length, feature dim) {:?} differ from train's {:?}",
                    &a.shape[1..],
                    &b.shape[1..]
                )));
            }
        }
    }
    Ok(SeqDataset {
        name: name.to_string(),
        task: Task::Regression,
        train,
        valid,
        test,
    })
}

/// Removes and returns the entry with string key `key`.
pub(crate) fn take(dict: &mut Vec<(Value, Value)>, key: &str) -> Option<Value> {
    let i = dict.iter().position(|(k, _)| k.as_str() == Some(key))?;
    Some(dict.swap_remove(i).1)
}

fn array3(split: &str, key: &str, v: Value) -> Msg<Array3> {
    let Value::NdArray(a) = v else {
        return Err(format!(
            "{split}.{key}: expected a numpy array, got {}",
            v.type_name()
        ));
    };
    let [n, len, dim] = a.shape[..] else {
        return Err(format!(
            "{split}.{key}: expected a 3-D array (N, len, dim), got shape {:?}",
            a.shape
        ));
    };
    if len == 0 || dim == 0 {
        // No bytes back such a shape, however large its other dimensions.
        return Err(format!(
            "{split}.{key}: shape {:?} holds no features (a sequence length or \
             feature dim of 0)",
            a.shape
        ));
    }
    let dtype = a.dtype.to_string();
    let mut data = a
        .into_f32_vec()
        .ok_or_else(|| format!("{split}.{key}: dtype {dtype} is not numeric"))?;
    for x in &mut data {
        if !x.is_finite() {
            *x = 0.0;
        }
    }
    Ok(Array3 {
        shape: [n, len, dim],
        data,
    })
}

fn numbers(split: &str, key: &str, v: &Value) -> Msg<Vec<f64>> {
    match v {
        Value::NdArray(a) => {
            let flat = a.shape.iter().filter(|&&d| d != 1).count() <= 1;
            if !flat {
                return Err(format!(
                    "{split}.{key}: expected a 1-D array, got shape {:?}",
                    a.shape
                ));
            }
            a.to_f32_vec()
                .map(|v| v.into_iter().map(f64::from).collect())
                .ok_or_else(|| format!("{split}.{key}: dtype {} is not numeric", a.dtype))
        }
        Value::List(items) | Value::Tuple(items) => items
            .iter()
            .enumerate()
            .map(|(i, x)| {
                x.as_f64()
                    .or_else(|| match x.as_seq() {
                        Some([one]) => one.as_f64(),
                        _ => None,
                    })
                    .ok_or_else(|| {
                        format!(
                            "{split}.{key}[{i}]: expected a number, got {}",
                            x.type_name()
                        )
                    })
            })
            .collect(),
        other => Err(format!(
            "{split}.{key}: expected an array or list of numbers, got {}",
            other.type_name()
        )),
    }
}

fn lengths(split: &str, key: &str, v: &Value, n: usize, max: usize) -> Msg<Vec<usize>> {
    let raw = numbers(split, key, v)?;
    if raw.len() != n {
        return Err(format!(
            "{split}.{key}: has {} entries, expected N = {n}",
            raw.len()
        ));
    }
    raw.iter()
        .enumerate()
        .map(|(i, &x)| {
            if x.fract() != 0.0 || x < 0.0 || x > max as f64 {
                Err(format!(
                    "{split}.{key}[{i}]: length {x} is not an integer in 0..={max} (the sequence length)"
                ))
            } else {
                Ok(x as usize)
            }
        })
        .collect()
}

fn strings(split: &str, key: &str, v: &Value) -> Msg<Vec<String>> {
    match v {
        Value::NdArray(a) => a
            .to_strings()
            .ok_or_else(|| format!("{split}.{key}: expected strings, got dtype {}", a.dtype)),
        Value::List(items) | Value::Tuple(items) => items
            .iter()
            .enumerate()
            .map(|(i, x)| match x {
                Value::Str(s) => Ok(s.clone()),
                Value::Bytes(b) => Ok(String::from_utf8_lossy(b).into_owned()),
                other => Err(format!(
                    "{split}.{key}[{i}]: expected a str, got {}",
                    other.type_name()
                )),
            })
            .collect(),
        other => Err(format!(
            "{split}.{key}: expected an array or list of str, got {}",
            other.type_name()
        )),
    }
}

fn read_split(split: &str, v: Value) -> Msg<SeqSplit> {
    let Value::Dict(mut d) = v else {
        return Err(format!(
            "{split}: expected a dict of arrays, got {}",
            v.type_name()
        ));
    };
    let mut need =
        |key: &str| take(&mut d, key).ok_or_else(|| format!("{split}: missing key `{key}`"));
    let text = array3(split, "text", need("text")?)?;
    let audio = array3(split, "audio", need("audio")?)?;
    let vision = array3(split, "vision", need("vision")?)?;
    let labels_v = need("regression_labels")?;
    let labels: Vec<f32> = numbers(split, "regression_labels", &labels_v)?
        .into_iter()
        .map(|x| x as f32)
        .collect();
    let n = labels.len();
    for (key, a) in [("text", &text), ("audio", &audio), ("vision", &vision)] {
        if a.shape[0] != n {
            return Err(format!(
                "{split}.{key}: has {} samples but regression_labels has {n}",
                a.shape[0]
            ));
        }
    }
    if let Some(bad) = labels.iter().position(|x| !x.is_finite()) {
        return Err(format!(
            "{split}.regression_labels[{bad}]: not a finite number"
        ));
    }
    let ids = match take(&mut d, "id") {
        Some(v) => {
            let ids = strings(split, "id", &v)?;
            if ids.len() != n {
                return Err(format!(
                    "{split}.id: has {} entries, expected N = {n}",
                    ids.len()
                ));
            }
            ids
        }
        None => (0..n).map(|i| format!("{split}-{i}")).collect(),
    };
    let audio_lengths = match take(&mut d, "audio_lengths") {
        Some(v) => Some(lengths(split, "audio_lengths", &v, n, audio.shape[1])?),
        None => None,
    };
    let vision_lengths = match take(&mut d, "vision_lengths") {
        Some(v) => Some(lengths(split, "vision_lengths", &v, n, vision.shape[1])?),
        None => None,
    };
    Ok(SeqSplit {
        ids,
        text,
        audio,
        vision,
        audio_lengths,
        vision_lengths,
        labels,
    })
}
