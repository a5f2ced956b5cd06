//! Serde helpers for `f64` values that may be non-finite.
//!
//! JSON has no `NaN`/`Infinity`; finite values are written as numbers and non-finite ones as the
//! strings `"nan"`, `"inf"` and `"-inf"` (the convention of the golden reference files).
//! Deserialisation accepts numbers, these strings and `null` (read as `NaN`).

use serde::{Deserialize, Deserializer, Serializer};

/// Serialise one `f64`.
pub fn serialize<S: Serializer>(x: &f64, s: S) -> Result<S::Ok, S::Error> {
    if x.is_finite() {
        s.serialize_f64(*x)
    } else if x.is_nan() {
        s.serialize_str("nan")
    } else if *x > 0.0 {
        s.serialize_str("inf")
    } else {
        s.serialize_str("-inf")
    }
}

#[derive(Deserialize)]
#[serde(untagged)]
enum Raw {
    Num(f64),
    Str(String),
    Null(()),
}

fn from_raw<E: serde::de::Error>(r: Raw) -> Result<f64, E> {
    match r {
        Raw::Num(x) => Ok(x),
        Raw::Null(()) => Ok(f64::NAN),
        Raw::Str(s) => match s.to_ascii_lowercase().as_str() {
            "nan" => Ok(f64::NAN),
            "inf" | "+inf" | "infinity" => Ok(f64::INFINITY),
            "-inf" | "-infinity" => Ok(f64::NEG_INFINITY),
            other => Err(E::custom(format!("expected a number, got {other:?}"))),
        },
    }
}

/// Deserialise one `f64` (number, `"nan"`, `"inf"`, `"-inf"` or `null`).
pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<f64, D::Error> {
    from_raw(Raw::deserialize(d)?)
}

/// The same convention for `[f64; 2]` (confidence intervals).
pub mod pair {
    use serde::ser::SerializeTuple;
    use serde::{Deserialize, Deserializer, Serializer};

    struct One(f64);
    impl serde::Serialize for One {
        fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
            super::serialize(&self.0, s)
        }
    }

    /// Serialise `[lo, hi]`.
    pub fn serialize<S: Serializer>(x: &[f64; 2], s: S) -> Result<S::Ok, S::Error> {
        let mut t = s.serialize_tuple(2)?;
        t.serialize_element(&One(x[0]))?;
        t.serialize_element(&One(x[1]))?;
        t.end()
    }

    /// Deserialise `[lo, hi]`.
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<[f64; 2], D::Error> {
        let [a, b] = <[super::Raw; 2]>::deserialize(d)?;
        Ok([super::from_raw(a)?, super::from_raw(b)?])
    }
}
