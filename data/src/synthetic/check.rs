//! What each dataset kind accepts, checked without generating or reading
//! anything: the sweep file's parser and the coordinator's submit path call
//! [`check_dataset`] before any trial runs, and the worker goes through the
//! same parameter structs when it builds the data.
//!
//! The declarations are the parameter structs themselves (`deny_unknown_fields`,
//! typed fields, defaults in their `Default`/presets) plus their range checks
//! (`validate`/`resolve`), which include an estimate of the memory a
//! generator would allocate ([`MAX_GENERATED_BYTES`]).

use serde::de::DeserializeOwned;

use super::{ErcParams, FusionParams, MsaParams};
use crate::formats::ErcOptions;
use crate::metrics::Labels;
use crate::{DataError, Result};

/// Most memory a synthetic generator may allocate for its features: the
/// MOSEI-shaped preset needs about 8.5 GB, `n_train = 100000000000` far more.
pub const MAX_GENERATED_BYTES: u64 = 16 << 30;

/// The dataset kinds a sweep file may name.
pub const KINDS: &[&str] = &["synthetic", "iemocap", "meld", "m3ed", "mmsa"];
/// The synthetic generators.
pub const GENERATORS: &[&str] = &["fusion", "erc", "msa"];

/// Deserialises dataset parameters into `T`, naming the offending key.
pub fn params<T: DeserializeOwned>(params: &serde_json::Value) -> Result<T> {
    let value = if params.is_null() {
        serde_json::Value::Object(Default::default())
    } else {
        params.clone()
    };
    serde_path_to_error::deserialize(value).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner().to_string();
        // An unknown field is reported at the map itself: take its name
        // from the message (`unknown field `clases`, expected one of …`).
        let key = if path == "." || path.is_empty() {
            inner
                .strip_prefix("unknown field `")
                .and_then(|rest| rest.split('`').next())
                .unwrap_or("")
                .to_string()
        } else {
            path
        };
        DataError::Param {
            key,
            message: inner,
        }
    })
}

/// Checks a dataset's parameters against what its kind (and generator)
/// accepts: names, types, ranges and the memory a generator would need.
/// Reads no file.
pub fn check_dataset(kind: &str, generator: Option<&str>, p: &serde_json::Value) -> Result<()> {
    let unknown = |what: &str, got: &str, known: &[&str]| DataError::Param {
        key: what.to_string(),
        message: format!("unknown {what} `{got}`; known: {}", known.join(", ")),
    };
    match (kind, generator) {
        ("synthetic", Some("fusion")) => params::<FusionParams>(p)?.validate(),
        ("synthetic", Some("erc")) => params::<ErcParams>(p)?.check(),
        ("synthetic", Some("msa")) => params::<MsaParams>(p)?.check(),
        ("synthetic", Some(other)) => Err(unknown("generator", other, GENERATORS)),
        ("synthetic", None) => Err(DataError::Param {
            key: "generator".into(),
            message: format!(
                "a synthetic dataset needs `generator` ({})",
                GENERATORS.join(", ")
            ),
        }),
        ("iemocap" | "meld" | "m3ed", _) => {
            let o = params::<ErcOptions>(p)?;
            match o.valid_rate {
                Some(r) if !(0.0..1.0).contains(&r) => Err(DataError::Param {
                    key: "valid_rate".into(),
                    message: format!("{r} is outside [0, 1)"),
                }),
                _ => Ok(()),
            }
        }
        ("mmsa", _) => match p.as_object().and_then(|m| m.keys().next()) {
            Some(key) => Err(DataError::Param {
                key: key.clone(),
                message:
                    "an `mmsa` file takes no parameters (its splits and shapes come from the file)"
                        .into(),
            }),
            None => Ok(()),
        },
        (other, _) => Err(unknown("kind", other, KINDS)),
    }
}

/// The labels of a dataset, known from its kind and parameters without
/// reading or generating anything: they decide which metrics sigsweep's
/// models report on it ([`Labels::reports`]), which the sweep file's
/// `[metrics]` is checked against before anything runs.
pub fn labels(kind: &str, generator: Option<&str>, p: &serde_json::Value) -> Result<Labels> {
    use crate::formats::Format;
    use crate::formats::erc::class_names;
    Ok(match (kind, generator) {
        ("synthetic", Some("fusion")) => Labels::Classes(params::<FusionParams>(p)?.classes),
        ("synthetic", Some("erc")) => Labels::Classes(params::<ErcParams>(p)?.n_classes()?),
        ("synthetic", Some("msa")) | ("mmsa", _) => Labels::Scores,
        ("iemocap", _) => Labels::Classes(class_names(Format::Iemocap).len()),
        ("meld", _) => Labels::Classes(class_names(Format::Meld).len()),
        ("m3ed", _) => Labels::Classes(class_names(Format::M3ed).len()),
        _ => {
            // Names the unknown kind or generator.
            check_dataset(kind, generator, p)?;
            return Err(DataError::Param {
                key: "kind".into(),
                message: format!("no labels known for `{kind}`"),
            });
        }
    })
}

/// Why a dataset has no validation split, when that is known before
/// anything is read or generated: `Some((key, why))` names the setting that
/// empties it — `valid_rate` (a dataset parameter) or `valid_fraction` (the
/// sweep's `[training]` key, used by IEMOCAP and MELD files without
/// `valid_rate`). `None` when the split is non-empty or only the file can
/// tell (M3ED's dev split, MMSA files, a tiny carve). `valid_fraction` is
/// the sweep's `[training] valid_fraction`.
pub fn empty_validation(
    kind: &str,
    generator: Option<&str>,
    p: &serde_json::Value,
    valid_fraction: f64,
) -> Result<Option<(&'static str, String)>> {
    let zero = |key: &'static str, rate: f64| {
        (rate <= 0.0).then(|| (key, format!("{key} = {rate} leaves no validation split")))
    };
    Ok(match (kind, generator) {
        ("synthetic", Some("erc")) => {
            zero("valid_rate", params::<ErcParams>(p)?.resolved_valid_rate()?)
        }
        ("iemocap" | "meld", _) => match params::<ErcOptions>(p)?.valid_rate {
            Some(rate) => zero("valid_rate", rate),
            None => zero("valid_fraction", valid_fraction),
        },
        _ => None,
    })
}

/// Fails when the generated f32 features exceed [`MAX_GENERATED_BYTES`].
/// Their count is the product of `groups`' sums (e.g. the splits' sample
/// counts times the values per sample); the error names the key that
/// contributes most: the one whose removal shrinks the total most.
pub(super) fn check_size(groups: &[&[(&str, usize)]]) -> Result<()> {
    let sum = |group: &[(&str, usize)], skip: Option<&str>| {
        group
            .iter()
            .filter(|(k, _)| Some(*k) != skip)
            .fold(0u128, |a, (_, v)| a.saturating_add(*v as u128))
            .max(1)
    };
    let bytes_without = |skip: Option<&str>| {
        groups
            .iter()
            .fold(4u128, |a, g| a.saturating_mul(sum(g, skip)))
    };
    let bytes = bytes_without(None);
    if bytes <= u128::from(MAX_GENERATED_BYTES) {
        return Ok(());
    }
    let key = groups
        .iter()
        .flat_map(|g| g.iter())
        .min_by_key(|(k, _)| bytes_without(Some(k)))
        .map_or("n_train", |(k, _)| *k);
    Err(DataError::Param {
        key: key.to_string(),
        message: format!(
            "the generated features would take {:.1} GiB, more than the limit of {} GiB",
            bytes as f64 / f64::from(1u32 << 30),
            MAX_GENERATED_BYTES >> 30
        ),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn labels_follow_the_kind_and_the_generators_parameters() {
        let l = |kind: &str, generator: Option<&str>, p: serde_json::Value| {
            labels(kind, generator, &p).expect("labels")
        };
        assert_eq!(
            l("synthetic", Some("fusion"), json!(null)),
            Labels::Classes(3)
        );
        assert_eq!(
            l("synthetic", Some("fusion"), json!({"classes": 9})),
            Labels::Classes(9)
        );
        assert_eq!(
            l("synthetic", Some("erc"), json!({"preset": "iemocap"})),
            Labels::Classes(6)
        );
        assert_eq!(
            l("synthetic", Some("erc"), json!({"preset": "meld"})),
            Labels::Classes(7)
        );
        assert_eq!(
            l("synthetic", Some("erc"), json!({"class_freqs": [1.0, 2.0]})),
            Labels::Classes(2)
        );
        assert_eq!(l("synthetic", Some("msa"), json!(null)), Labels::Scores);
        assert_eq!(l("m3ed", None, json!(null)), Labels::Classes(7));
        assert_eq!(l("mmsa", None, json!(null)), Labels::Scores);
        assert!(labels("synthetic", Some("nope"), &json!(null)).is_err());
        assert!(Labels::Classes(7).reports("f1_class_6"));
        for not in [
            "f1_class_7",
            "f1_class_06",
            "f1_class_+6",
            "mae",
            "F1_weighted",
        ] {
            assert!(!Labels::Classes(7).reports(not), "{not}");
        }
        assert!(Labels::Scores.reports("has0_f1") && !Labels::Scores.reports("accuracy"));
    }

    fn key_of(r: Result<()>) -> String {
        match r {
            Err(DataError::Param { key, .. }) => key,
            other => panic!("expected a parameter error, got {other:?}"),
        }
    }

    #[test]
    fn names_the_key_of_every_kind_of_mistake() {
        let fusion = |p| check_dataset("synthetic", Some("fusion"), &p);
        assert_eq!(key_of(fusion(json!({"clases": 4}))), "clases");
        assert_eq!(key_of(fusion(json!({"n_train": "many"}))), "n_train");
        assert!(key_of(fusion(json!({"n_train": 0}))).contains("n_train"));
        assert_eq!(key_of(fusion(json!({"classes": 1}))), "classes");
        assert_eq!(key_of(fusion(json!({"n_train": -3}))), "n_train");
        assert_eq!(
            key_of(fusion(json!({"n_train": 100_000_000_000u64}))),
            "n_train"
        );
        assert!(fusion(json!({"n_train": 960, "classes": 3, "noise": 1.5})).is_ok());
        let erc = |p| check_dataset("synthetic", Some("erc"), &p);
        assert_eq!(
            key_of(erc(json!({"n_train": 10_000_000_000u64}))),
            "n_train"
        );
        assert!(erc(json!({"preset": "iemocap"})).is_ok());
        let msa = |p| check_dataset("synthetic", Some("msa"), &p);
        assert!(
            msa(json!({"preset": "mosei"})).is_ok(),
            "the MOSEI preset fits"
        );
        assert_eq!(key_of(msa(json!({"n_train": 1_000_000_000u64}))), "n_train");
        // The key named is the one that makes the data too large.
        assert_eq!(key_of(msa(json!({"n_test": 1_000_000_000u64}))), "n_test");
        assert_eq!(
            key_of(fusion(json!({"n_valid": 100_000_000_000u64}))),
            "n_valid"
        );
        assert_eq!(
            key_of(fusion(json!({"vision": [1_000_000, 100_000]}))),
            "vision"
        );
        assert_eq!(
            key_of(erc(
                json!({"max_len": 1_000_000_000u64, "min_len": 2, "mean_len": 3.0})
            )),
            "max_len"
        );
        assert_eq!(key_of(erc(json!({"n_test": 10_000_000_000u64}))), "n_test");
        assert_eq!(key_of(check_dataset("mmsa", None, &json!({"x": 1}))), "x");
        assert_eq!(
            key_of(check_dataset("iemocap", None, &json!({"valid_rate": 2.0}))),
            "valid_rate"
        );
        assert_eq!(
            key_of(check_dataset("synthetic", Some("nope"), &json!({}))),
            "generator"
        );
    }
}
