//! MMGCN / MM-DFN style ERC pickles: IEMOCAP, MELD, M3ED.
//!
//! Each file is one pickled tuple of dicts keyed by dialogue id:
//!
//! | format | fields |
//! |---|---|
//! | IEMOCAP (9, Python 2, latin-1) | `videoIDs, videoSpeakers, videoLabels, videoText, videoAudio, videoVisual, videoSentence, trainVid, testVid` |
//! | MELD (10) | the same nine, then an unused trailing dict |
//! | M3ED (10, CCAC-2023) | `videoIDs, videoSpeakers, videoLabels, videoText, videoAudio, videoVisual, videoSentence, trainVid, devVid, testVid` |
//!
//! Per dialogue, in utterance order:
//! * speakers: IEMOCAP `'M'`/`'F'` (→ 0/1), M3ED `'A'`/`'B'` (→ 0/1), MELD
//!   one-hot vectors (9-d; → index of the 1);
//! * labels: class ids; IEMOCAP 0 hap, 1 sad, 2 neu, 3 ang, 4 exc, 5 fru;
//!   MELD 0 neu, 1 sur, 2 fea, 3 sad, 4 joy, 5 dis, 6 ang; M3ED 0 hap,
//!   1 neu, 2 sad, 3 dis, 4 ang, 5 fea, 6 sur;
//! * features: a list of 1-D arrays (or lists of numbers), or one 2-D
//!   `(n_utterances, dim)` array. Dims come from the data and must agree
//!   across dialogues; every value must be finite (a NaN or ±inf is an
//!   error naming dialogue, utterance and index, where it would otherwise
//!   surface as a NaN training loss).
//!
//! Dialogue ids may be `str` or `int` keys (MELD uses ints); they become
//! strings. Dialogue order is the order of `trainVid`/`testVid`/`devVid`.
//!
//! Validation split: the files have no dev split except M3ED. With
//! [`ErcOptions::valid_rate`] unset, IEMOCAP and MELD get 10 % of their
//! training dialogues moved to `valid` by [`carve_valid`]
//! ([`DEFAULT_VALID_RATE`]), and M3ED keeps its `devVid`. Note that MM-DFN's
//! shipped scripts use no validation set at all (`valid_rate 0`, model
//! selection on test); set `valid_rate = 0` to reproduce that.

use std::collections::HashMap;
use std::path::Path;

use rand::seq::SliceRandom;
use serde::Deserialize;

use super::{Format, invalid, read};
use crate::erc::{Dialogue, ErcDataset};
use crate::pickle::{ArrayData, Value};
use crate::synthetic::rng;
use crate::{DataError, Result};

type Msg<T> = std::result::Result<T, String>;

/// RNG stream of the validation carve (`b"valid"` as a number).
const VALID_STREAM: u64 = u64::from_be_bytes(*b"\0\0\0valid");

/// Fraction of training dialogues carved into `valid` when a file has no
/// dev split and [`ErcOptions::valid_rate`] is unset.
pub const DEFAULT_VALID_RATE: f64 = 0.1;

/// Options of [`load_erc`].
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ErcOptions {
    /// Fraction of training dialogues moved to `valid`. `None`: 0.1 when the
    /// file has no dev split, 0 when it has one (M3ED).
    pub valid_rate: Option<f64>,
    /// Seed of the validation carve.
    pub seed: u64,
    /// Rate used instead of [`DEFAULT_VALID_RATE`] when `valid_rate` is unset
    /// and the file has no dev split (the worker passes the sweep's
    /// `[training] valid_fraction`). Not read from dataset parameters.
    #[serde(skip)]
    pub default_valid_rate: Option<f64>,
}

/// Class names of a format (index = class id).
pub fn class_names(format: Format) -> &'static [&'static str] {
    match format {
        Format::Iemocap => &["hap", "sad", "neu", "ang", "exc", "fru"],
        Format::Meld => &["neu", "sur", "fea", "sad", "joy", "dis", "ang"],
        Format::M3ed => &["hap", "neu", "sad", "dis", "ang", "fea", "sur"],
        Format::Auto | Format::Mmsa => &[],
    }
}

/// Loads an ERC pickle (`format` may be `Auto`) and carves a validation
/// split as described in the module docs.
pub fn load_erc(path: &Path, format: Format, options: &ErcOptions) -> Result<ErcDataset> {
    let (value, format) = read(path, format)?;
    if !format.is_erc() {
        return Err(invalid(path, format!("{format} is not an ERC format")));
    }
    let mut dataset = erc_from_value(value, format).map_err(|e| invalid(path, e.to_string()))?;
    let rate = options.valid_rate.unwrap_or(if dataset.valid.is_empty() {
        options.default_valid_rate.unwrap_or(DEFAULT_VALID_RATE)
    } else {
        0.0
    });
    carve_valid(&mut dataset, rate, options.seed)?;
    Ok(dataset)
}

/// Builds a dataset from a decoded ERC pickle, without any validation
/// carve (`valid` is M3ED's `devVid`, otherwise empty).
pub fn erc_from_value(value: Value, format: Format) -> Result<ErcDataset> {
    erc_fields(value, format).map_err(|message| DataError::Invalid {
        path: format.to_string(),
        message,
    })
}

/// Moves `floor(rate × |train|)` training dialogues (at least one when
/// `rate > 0` and there are two or more) to the end of `valid`, chosen by a
/// seeded shuffle; both parts keep their original order. Deterministic in
/// `(dataset, rate, seed)`.
pub fn carve_valid(dataset: &mut ErcDataset, rate: f64, seed: u64) -> Result<()> {
    if !(0.0..1.0).contains(&rate) {
        return Err(DataError::Param {
            key: "valid_rate".into(),
            message: format!("must be in [0, 1), got {rate}"),
        });
    }
    let n = dataset.train.len();
    let mut k = (rate * n as f64).floor() as usize;
    if rate > 0.0 && k == 0 && n >= 2 {
        k = 1;
    }
    if k == 0 {
        return Ok(());
    }
    let mut order: Vec<usize> = (0..n).collect();
    order.shuffle(&mut rng(seed, VALID_STREAM));
    let mut chosen = vec![false; n];
    for &i in &order[..k] {
        chosen[i] = true;
    }
    let train = std::mem::take(&mut dataset.train);
    for (i, d) in train.into_iter().enumerate() {
        if chosen[i] {
            dataset.valid.push(d);
        } else {
            dataset.train.push(d);
        }
    }
    Ok(())
}

const FIELDS: [&str; 10] = [
    "videoIDs",
    "videoSpeakers",
    "videoLabels",
    "videoText",
    "videoAudio",
    "videoVisual",
    "videoSentence",
    "trainVid",
    "testVid",
    "extra",
];

fn key_string(k: &Value) -> Option<String> {
    match k {
        Value::Str(s) => Some(s.clone()),
        Value::Int(i) => Some(i.to_string()),
        Value::Bytes(b) => Some(String::from_utf8_lossy(b).into_owned()),
        _ => None,
    }
}

/// A `videoX` dict indexed by dialogue id.
fn index(field: &str, v: Value) -> Msg<HashMap<String, Value>> {
    let Value::Dict(entries) = v else {
        return Err(format!(
            "{field}: expected a dict keyed by dialogue id, got {}",
            v.type_name()
        ));
    };
    entries
        .into_iter()
        .map(|(k, v)| match key_string(&k) {
            Some(k) => Ok((k, v)),
            None => Err(format!(
                "{field}: dialogue id {} is not a str or int",
                k.type_name()
            )),
        })
        .collect()
}

fn id_list(field: &str, v: &Value) -> Msg<Vec<String>> {
    let items: Vec<Value> = match v {
        Value::List(x) | Value::Tuple(x) | Value::Set(x) => x.clone(),
        Value::NdArray(a) => match &a.data {
            ArrayData::Object(x) => x.clone(),
            ArrayData::Str(x) => x.iter().cloned().map(Value::Str).collect(),
            ArrayData::I64(x) => x.iter().map(|&i| Value::Int(i)).collect(),
            ArrayData::I32(x) => x.iter().map(|&i| Value::Int(i64::from(i))).collect(),
            _ => return Err(format!("{field}: array of dtype {} is not ids", a.dtype)),
        },
        Value::Dict(x) => x.iter().map(|(k, _)| k.clone()).collect(),
        other => {
            return Err(format!(
                "{field}: expected a collection of dialogue ids, got {}",
                other.type_name()
            ));
        }
    };
    items
        .iter()
        .enumerate()
        .map(|(i, k)| {
            key_string(k)
                .ok_or_else(|| format!("{field}[{i}]: {} is not a dialogue id", k.type_name()))
        })
        .collect()
}

/// Rows of a per-dialogue feature entry: list of vectors or a 2-D array.
fn rows(path: &str, v: Value) -> Msg<Vec<Vec<f32>>> {
    match v {
        Value::NdArray(a) => {
            let shape = a.shape.clone();
            let (n, dim) = match shape[..] {
                [n, d] => (n, d),
                [d] => (1, d),
                _ => return Err(format!("{path}: expected a 2-D array, got shape {shape:?}")),
            };
            let dtype = a.dtype.to_string();
            let data = a
                .into_f32_vec()
                .ok_or_else(|| format!("{path}: dtype {dtype} is not numeric"))?;
            if dim == 0 {
                // No bytes back `n` rows of nothing, however large `n` is.
                return match n {
                    0 => Ok(Vec::new()),
                    _ => Err(format!("{path}: shape {shape:?} has no feature values")),
                };
            }
            if let Some(k) = data.iter().position(|x| !x.is_finite()) {
                return Err(not_finite(
                    &format!("{path}[{}][{}]", k / dim, k % dim),
                    data[k],
                ));
            }
            Ok(data.chunks_exact(dim).map(<[f32]>::to_vec).collect())
        }
        Value::List(items) | Value::Tuple(items) => items
            .into_iter()
            .enumerate()
            .map(|(i, x)| {
                let path = format!("{path}[{i}]");
                let v = vector(&path, x)?;
                match v.iter().position(|x| !x.is_finite()) {
                    Some(k) => Err(not_finite(&format!("{path}[{k}]"), v[k])),
                    None => Ok(v),
                }
            })
            .collect(),
        other => Err(format!(
            "{path}: expected a list of vectors or a 2-D array, got {}",
            other.type_name()
        )),
    }
}

/// A feature value no model can consume. (MMSA files have a convention for
/// these, zeroing them, which the MMSA loader follows; these files do not.)
fn not_finite(path: &str, x: f32) -> String {
    format!("{path}: feature value {x} is not a finite number")
}

fn vector(path: &str, v: Value) -> Msg<Vec<f32>> {
    match v {
        Value::NdArray(a) => {
            if a.shape.iter().filter(|&&d| d != 1).count() > 1 {
                return Err(format!(
                    "{path}: expected a vector, got shape {:?}",
                    a.shape
                ));
            }
            let dtype = a.dtype.to_string();
            a.into_f32_vec()
                .ok_or_else(|| format!("{path}: dtype {dtype} is not numeric"))
        }
        Value::List(items) | Value::Tuple(items) => items
            .iter()
            .enumerate()
            .map(|(i, x)| {
                x.as_f64()
                    .map(|f| f as f32)
                    .ok_or_else(|| format!("{path}[{i}]: expected a number, got {}", x.type_name()))
            })
            .collect(),
        other => Err(format!(
            "{path}: expected a vector, got {}",
            other.type_name()
        )),
    }
}

/// Per-utterance scalars (labels) as i64.
fn ints(path: &str, v: &Value) -> Msg<Vec<i64>> {
    let as_int = |p: String, x: &Value| -> Msg<i64> {
        match x {
            Value::Int(i) => Ok(*i),
            Value::Float(f) if f.fract() == 0.0 => Ok(*f as i64),
            other => Err(format!(
                "{p}: expected an integer label, got {}",
                other.type_name()
            )),
        }
    };
    match v {
        Value::List(items) | Value::Tuple(items) => items
            .iter()
            .enumerate()
            .map(|(i, x)| as_int(format!("{path}[{i}]"), x))
            .collect(),
        Value::NdArray(a) => {
            let vals = a
                .to_f32_vec()
                .ok_or_else(|| format!("{path}: dtype {} is not numeric", a.dtype))?;
            vals.iter()
                .enumerate()
                .map(|(i, &x)| as_int(format!("{path}[{i}]"), &Value::Float(f64::from(x))))
                .collect()
        }
        other => Err(format!(
            "{path}: expected a list of labels, got {}",
            other.type_name()
        )),
    }
}

/// Speaker indices and the number of speakers implied by the encoding.
fn speakers(path: &str, v: Value, format: Format) -> Msg<(Vec<usize>, usize)> {
    let letters: &[&str] = match format {
        Format::M3ed => &["A", "B"],
        _ => &["M", "F"],
    };
    let items: Vec<Value> = match v {
        Value::List(items) | Value::Tuple(items) => items,
        Value::NdArray(a) if a.shape.len() == 2 => {
            let width = a.shape[1];
            let shape = a.shape.clone();
            let data = a.into_f32_vec().ok_or_else(|| {
                format!("{path}: speaker array of shape {shape:?} is not numeric")
            })?;
            if width == 0 {
                return Err(format!("{path}: empty one-hot speaker vectors"));
            }
            data.chunks_exact(width)
                .map(|c| Value::List(c.iter().map(|&x| Value::Float(f64::from(x))).collect()))
                .collect()
        }
        Value::NdArray(a) => match a.data {
            ArrayData::Object(v) => v,
            ArrayData::Str(v) => v.into_iter().map(Value::Str).collect(),
            _ => {
                return Err(format!(
                    "{path}: cannot read speakers of shape {:?}",
                    a.shape
                ));
            }
        },
        other => {
            return Err(format!(
                "{path}: expected a list of speakers, got {}",
                other.type_name()
            ));
        }
    };
    let mut out = Vec::with_capacity(items.len());
    let mut n_speakers = 0;
    for (i, x) in items.into_iter().enumerate() {
        let p = format!("{path}[{i}]");
        let (index, n) = match x {
            Value::Str(s) => {
                let s = s.trim();
                match letters.iter().position(|&l| l.eq_ignore_ascii_case(s)) {
                    Some(k) => (k, letters.len()),
                    None => {
                        return Err(format!(
                            "{p}: speaker {s:?} is not one of {letters:?} (format {format})"
                        ));
                    }
                }
            }
            other => {
                let v = vector(&p, other)?;
                let ones: Vec<usize> = (0..v.len()).filter(|&k| v[k] != 0.0).collect();
                match ones[..] {
                    [k] if v[k] == 1.0 => (k, v.len()),
                    _ => return Err(format!("{p}: speaker vector {v:?} is not one-hot")),
                }
            }
        };
        if n_speakers != 0 && n != n_speakers {
            return Err(format!(
                "{p}: speaker vector of length {n}, earlier ones had {n_speakers}"
            ));
        }
        n_speakers = n;
        out.push(index);
    }
    Ok((out, n_speakers))
}

fn erc_fields(value: Value, format: Format) -> Msg<ErcDataset> {
    let (Value::Tuple(fields) | Value::List(fields)) = value else {
        return Err(format!(
            "expected a tuple of fields, got {}",
            value.type_name()
        ));
    };
    let expected = if format == Format::Iemocap { 9 } else { 10 };
    if fields.len() != expected {
        return Err(format!(
            "format {format} expects a {expected}-tuple, got {} fields",
            fields.len()
        ));
    }
    let mut fields = fields.into_iter();
    let mut next = || fields.next().unwrap_or(Value::None);
    let _ids = next();
    let mut spk = index(FIELDS[1], next())?;
    let lab = index(FIELDS[2], next())?;
    let mut txt = index(FIELDS[3], next())?;
    let mut aud = index(FIELDS[4], next())?;
    let mut vis = index(FIELDS[5], next())?;
    let _sentences = next();
    let train_ids = id_list("trainVid", &next())?;
    let (valid_ids, test_ids) = if format == Format::M3ed {
        let dev = id_list("devVid", &next())?;
        (dev, id_list("testVid", &next())?)
    } else {
        (Vec::new(), id_list("testVid", &next())?)
    };
    let names = class_names(format);
    let n_classes = names.len();
    let mut dims: Option<[usize; 3]> = None;
    let mut n_speakers = 0usize;
    let mut dialogue = |id: &str| -> Msg<Dialogue> {
        let get = |map: &mut HashMap<String, Value>, field: &str| {
            map.remove(id).ok_or_else(|| {
                format!("{field}: no entry for dialogue {id:?} (missing, or listed in two splits)")
            })
        };
        let (speakers, n_spk) = speakers(
            &format!("videoSpeakers[{id}]"),
            get(&mut spk, "videoSpeakers")?,
            format,
        )?;
        let labels = ints(
            &format!("videoLabels[{id}]"),
            lab.get(id)
                .ok_or_else(|| format!("videoLabels: no entry for dialogue {id:?}"))?,
        )?;
        let n = labels.len();
        let labels = labels
            .into_iter()
            .enumerate()
            .map(|(i, l)| {
                usize::try_from(l)
                    .ok()
                    .filter(|&l| l < n_classes)
                    .ok_or_else(|| {
                        format!("videoLabels[{id}][{i}]: label {l} is not in 0..{n_classes}")
                    })
            })
            .collect::<Msg<Vec<usize>>>()?;
        let text = rows(&format!("videoText[{id}]"), get(&mut txt, "videoText")?)?;
        let audio = rows(&format!("videoAudio[{id}]"), get(&mut aud, "videoAudio")?)?;
        let visual = rows(&format!("videoVisual[{id}]"), get(&mut vis, "videoVisual")?)?;
        for (field, len) in [
            ("videoSpeakers", speakers.len()),
            ("videoText", text.len()),
            ("videoAudio", audio.len()),
            ("videoVisual", visual.len()),
        ] {
            if len != n {
                return Err(format!(
                    "{field}[{id}]: {len} utterances but videoLabels[{id}] has {n}"
                ));
            }
        }
        let mut these = [0usize; 3];
        for (m, (field, rows)) in [
            ("videoText", &text),
            ("videoAudio", &audio),
            ("videoVisual", &visual),
        ]
        .into_iter()
        .enumerate()
        {
            let d = rows.first().map_or(0, Vec::len);
            if let Some(i) = rows.iter().position(|r| r.len() != d) {
                return Err(format!(
                    "{field}[{id}][{i}]: {} values, utterance 0 has {d}",
                    rows[i].len()
                ));
            }
            these[m] = d;
        }
        match dims {
            None if n > 0 => dims = Some(these),
            Some(known) if n > 0 && known != these => {
                return Err(format!(
                    "dialogue {id:?}: feature dims {these:?} differ from earlier dialogues' {known:?}"
                ));
            }
            _ => {}
        }
        n_speakers = n_speakers.max(n_spk);
        Ok(Dialogue {
            id: id.to_string(),
            speakers,
            text,
            audio,
            visual,
            labels,
        })
    };
    let mut split = |ids: &[String]| ids.iter().map(|id| dialogue(id)).collect::<Msg<Vec<_>>>();
    let train = split(&train_ids)?;
    let valid = split(&valid_ids)?;
    let test = split(&test_ids)?;
    Ok(ErcDataset {
        name: format.to_string(),
        dims: dims.unwrap_or([0; 3]),
        n_classes,
        n_speakers,
        class_names: names.iter().map(|s| s.to_string()).collect(),
        train,
        valid,
        test,
    })
}
