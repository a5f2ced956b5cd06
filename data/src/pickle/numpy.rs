//! numpy arrays and dtypes as rebuilt from a pickle.

use std::fmt;

use super::Value;

/// A numpy dtype: byte order (`<`, `>`, `|` or `=`), kind (`b`, `i`, `u`,
/// `f`, `S`, `U`, `O`, …) and item size in bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DType {
    pub byte_order: char,
    pub kind: char,
    pub itemsize: usize,
}

impl fmt::Display for DType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.kind == 'O' {
            // numpy spells object dtypes without a size (`|O`).
            return write!(f, "{}O", self.byte_order);
        }
        // `U` counts characters (4 bytes each), as numpy's `dtype.str` does.
        let n = if self.kind == 'U' {
            self.itemsize / 4
        } else {
            self.itemsize
        };
        write!(f, "{}{}{}", self.byte_order, self.kind, n)
    }
}

impl DType {
    /// Parses the first argument of `numpy.dtype(...)` in a pickle, e.g.
    /// `f4`, `<f8`, `O8`, `U5` (5 characters = 20 bytes), `S3`, `b1`.
    pub(crate) fn parse(descr: &str) -> Result<DType, String> {
        let mut chars = descr.chars().peekable();
        let mut byte_order = '=';
        if let Some(&c) = chars.peek()
            && matches!(c, '<' | '>' | '|' | '=')
        {
            byte_order = c;
            chars.next();
        }
        let kind = chars
            .next()
            .ok_or_else(|| format!("empty dtype description {descr:?}"))?;
        let digits: String = chars.collect();
        let n: usize = if digits.is_empty() {
            0
        } else {
            digits
                .parse()
                .map_err(|_| format!("bad dtype description {descr:?}"))?
        };
        let itemsize = match kind {
            'U' => n
                .checked_mul(4)
                .ok_or_else(|| format!("dtype {descr:?} too large"))?,
            'O' => 8,
            'b' | '?' => 1,
            _ => n,
        };
        let kind = if kind == '?' { 'b' } else { kind };
        if !kind.is_ascii_alphabetic() {
            return Err(format!("bad dtype description {descr:?}"));
        }
        Ok(DType {
            byte_order: if itemsize <= 1 && byte_order == '=' {
                '|'
            } else {
                byte_order
            },
            kind,
            itemsize,
        })
    }

    fn big_endian(&self) -> bool {
        self.byte_order == '>'
    }

    pub fn is_object(&self) -> bool {
        self.kind == 'O'
    }
}

/// Typed element storage, always in the order given by
/// [`NdArray::fortran_order`]. Decoding widens where lossless: `f2` → `F32`,
/// `i1`/`i2`/`u2` → `I32`, `u4` → `I64`; `u8` becomes `I64` and fails on
/// values above `i64::MAX`. `S<n>` (latin-1) and `U<n>` become `Str` with
/// trailing NULs removed, like numpy does.
#[derive(Debug, Clone, PartialEq)]
pub enum ArrayData {
    F32(Vec<f32>),
    F64(Vec<f64>),
    I64(Vec<i64>),
    I32(Vec<i32>),
    U8(Vec<u8>),
    Bool(Vec<bool>),
    Str(Vec<String>),
    Object(Vec<Value>),
}

impl ArrayData {
    pub fn len(&self) -> usize {
        match self {
            ArrayData::F32(v) => v.len(),
            ArrayData::F64(v) => v.len(),
            ArrayData::I64(v) => v.len(),
            ArrayData::I32(v) => v.len(),
            ArrayData::U8(v) => v.len(),
            ArrayData::Bool(v) => v.len(),
            ArrayData::Str(v) => v.len(),
            ArrayData::Object(v) => v.len(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// A numpy array.
#[derive(Debug, Clone, PartialEq)]
pub struct NdArray {
    pub dtype: DType,
    pub shape: Vec<usize>,
    pub data: ArrayData,
    /// `data` is in column-major order (use [`NdArray::to_c_order`]).
    pub fortran_order: bool,
}

fn permute_to_c<T: Clone>(data: &[T], shape: &[usize]) -> Vec<T> {
    // Element at C multi-index (i0, …, ik) lives at Σ i_j · fstride_j.
    let mut fstride = vec![1usize; shape.len()];
    for j in 1..shape.len() {
        fstride[j] = fstride[j - 1] * shape[j - 1];
    }
    let mut out = Vec::with_capacity(data.len());
    let mut idx = vec![0usize; shape.len()];
    for _ in 0..data.len() {
        let off: usize = idx.iter().zip(&fstride).map(|(i, s)| i * s).sum();
        out.push(data[off].clone());
        for j in (0..shape.len()).rev() {
            idx[j] += 1;
            if idx[j] < shape[j] {
                break;
            }
            idx[j] = 0;
        }
    }
    out
}

impl NdArray {
    /// Number of elements.
    pub fn len(&self) -> usize {
        self.data.len()
    }

    pub fn is_empty(&self) -> bool {
        self.data.is_empty()
    }

    /// The same array with its data in row-major (C) order.
    pub fn to_c_order(&self) -> NdArray {
        if !self.fortran_order || self.shape.len() < 2 {
            return NdArray {
                fortran_order: false,
                ..self.clone()
            };
        }
        let s = &self.shape;
        let data = match &self.data {
            ArrayData::F32(v) => ArrayData::F32(permute_to_c(v, s)),
            ArrayData::F64(v) => ArrayData::F64(permute_to_c(v, s)),
            ArrayData::I64(v) => ArrayData::I64(permute_to_c(v, s)),
            ArrayData::I32(v) => ArrayData::I32(permute_to_c(v, s)),
            ArrayData::U8(v) => ArrayData::U8(permute_to_c(v, s)),
            ArrayData::Bool(v) => ArrayData::Bool(permute_to_c(v, s)),
            ArrayData::Str(v) => ArrayData::Str(permute_to_c(v, s)),
            ArrayData::Object(v) => ArrayData::Object(permute_to_c(v, s)),
        };
        NdArray {
            dtype: self.dtype.clone(),
            shape: self.shape.clone(),
            data,
            fortran_order: false,
        }
    }

    /// Numeric/bool elements as `f32` in C order; `None` for strings and
    /// object arrays whose elements are not all numbers.
    pub fn to_f32_vec(&self) -> Option<Vec<f32>> {
        if self.fortran_order && self.shape.len() > 1 {
            return self.to_c_order().to_f32_vec();
        }
        Some(match &self.data {
            ArrayData::F32(v) => v.clone(),
            ArrayData::F64(v) => v.iter().map(|&x| x as f32).collect(),
            ArrayData::I64(v) => v.iter().map(|&x| x as f32).collect(),
            ArrayData::I32(v) => v.iter().map(|&x| x as f32).collect(),
            ArrayData::U8(v) => v.iter().map(|&x| f32::from(x)).collect(),
            ArrayData::Bool(v) => v.iter().map(|&x| f32::from(u8::from(x))).collect(),
            ArrayData::Str(_) => return None,
            ArrayData::Object(v) => v
                .iter()
                .map(|x| x.as_f64().map(|f| f as f32))
                .collect::<Option<Vec<_>>>()?,
        })
    }

    /// Like [`NdArray::to_f32_vec`] but moves `f32` data instead of copying.
    pub fn into_f32_vec(self) -> Option<Vec<f32>> {
        match self.data {
            ArrayData::F32(v) if !self.fortran_order || self.shape.len() < 2 => Some(v),
            _ => self.to_f32_vec(),
        }
    }

    /// Elements as strings in C order (`S`/`U` arrays, or object arrays of
    /// `str`/`bytes`; bytes decoded as UTF-8 with replacement).
    pub fn to_strings(&self) -> Option<Vec<String>> {
        if self.fortran_order && self.shape.len() > 1 {
            return self.to_c_order().to_strings();
        }
        match &self.data {
            ArrayData::Str(v) => Some(v.clone()),
            ArrayData::Object(v) => v
                .iter()
                .map(|x| match x {
                    Value::Str(s) => Some(s.clone()),
                    Value::Bytes(b) => Some(String::from_utf8_lossy(b).into_owned()),
                    _ => None,
                })
                .collect(),
            _ => None,
        }
    }
}

/// Number of elements of `shape`, or an error on overflow.
pub(crate) fn element_count(shape: &[usize]) -> Result<usize, String> {
    shape.iter().try_fold(1usize, |acc, &d| {
        acc.checked_mul(d)
            .ok_or_else(|| format!("array shape {shape:?} overflows"))
    })
}

fn chunks<const N: usize>(raw: &[u8], big: bool) -> impl Iterator<Item = [u8; N]> + '_ {
    raw.chunks_exact(N).map(move |c| {
        let mut a = [0u8; N];
        a.copy_from_slice(c);
        if big {
            a.reverse();
        }
        a
    })
}

fn f16_to_f32(bits: u16) -> f32 {
    let sign = if bits & 0x8000 != 0 { -1.0f32 } else { 1.0 };
    let exp = i32::from((bits >> 10) & 0x1f);
    let frac = f32::from(bits & 0x3ff);
    match exp {
        0 => sign * frac * (2.0f32).powi(-24),
        31 if frac == 0.0 => sign * f32::INFINITY,
        31 => f32::NAN,
        _ => sign * (1.0 + frac / 1024.0) * (2.0f32).powi(exp - 15),
    }
}

fn trim_nul(s: &[u32]) -> &[u32] {
    let end = s.iter().rposition(|&c| c != 0).map_or(0, |i| i + 1);
    &s[..end]
}

/// Decodes `count` elements of `dtype` from raw little/big-endian bytes.
pub(crate) fn decode(dtype: &DType, count: usize, raw: &[u8]) -> Result<ArrayData, String> {
    let size = dtype.itemsize;
    let expected = count
        .checked_mul(size)
        .ok_or_else(|| format!("array of {count} × {size} bytes overflows"))?;
    if dtype.is_object() {
        return Err("object arrays carry a list, not raw bytes".into());
    }
    if raw.len() != expected {
        return Err(format!(
            "array data has {} bytes but {count} elements of dtype {dtype} need {expected}",
            raw.len()
        ));
    }
    let big = dtype.big_endian();
    let unsupported = || Err(format!("unsupported dtype {dtype}"));
    Ok(match (dtype.kind, size) {
        ('f', 2) => ArrayData::F32(
            chunks::<2>(raw, big)
                .map(|b| f16_to_f32(u16::from_le_bytes(b)))
                .collect(),
        ),
        ('f', 4) => ArrayData::F32(chunks::<4>(raw, big).map(f32::from_le_bytes).collect()),
        ('f', 8) => ArrayData::F64(chunks::<8>(raw, big).map(f64::from_le_bytes).collect()),
        ('i', 1) => ArrayData::I32(raw.iter().map(|&b| i32::from(b as i8)).collect()),
        ('i', 2) => ArrayData::I32(
            chunks::<2>(raw, big)
                .map(|b| i32::from(i16::from_le_bytes(b)))
                .collect(),
        ),
        ('i', 4) => ArrayData::I32(chunks::<4>(raw, big).map(i32::from_le_bytes).collect()),
        ('i', 8) => ArrayData::I64(chunks::<8>(raw, big).map(i64::from_le_bytes).collect()),
        ('u', 1) => ArrayData::U8(raw.to_vec()),
        ('u', 2) => ArrayData::I32(
            chunks::<2>(raw, big)
                .map(|b| i32::from(u16::from_le_bytes(b)))
                .collect(),
        ),
        ('u', 4) => ArrayData::I64(
            chunks::<4>(raw, big)
                .map(|b| i64::from(u32::from_le_bytes(b)))
                .collect(),
        ),
        ('u', 8) => ArrayData::I64(
            chunks::<8>(raw, big)
                .map(|b| {
                    i64::try_from(u64::from_le_bytes(b))
                        .map_err(|_| format!("uint64 value {} exceeds i64", u64::from_le_bytes(b)))
                })
                .collect::<Result<_, _>>()?,
        ),
        ('b', 1) => ArrayData::Bool(raw.iter().map(|&b| b != 0).collect()),
        ('S', _) if size > 0 => ArrayData::Str(
            raw.chunks_exact(size)
                .map(|c| {
                    let end = c.iter().rposition(|&b| b != 0).map_or(0, |i| i + 1);
                    c[..end].iter().map(|&b| char::from(b)).collect()
                })
                .collect(),
        ),
        ('S', 0) | ('U', 0) => ArrayData::Str(vec![String::new(); count]),
        ('U', _) if size.is_multiple_of(4) => {
            let mut out = Vec::with_capacity(count);
            for c in raw.chunks_exact(size) {
                let units: Vec<u32> = chunks::<4>(c, big).map(u32::from_le_bytes).collect();
                let s = trim_nul(&units)
                    .iter()
                    .map(|&u| char::from_u32(u).unwrap_or(char::REPLACEMENT_CHARACTER))
                    .collect();
                out.push(s);
            }
            ArrayData::Str(out)
        }
        _ => return unsupported(),
    })
}

/// A numpy scalar (`numpy.core.multiarray.scalar(dtype, raw)`) as a plain
/// value.
pub(crate) fn scalar(dtype: &DType, raw: &[u8]) -> Result<Value, String> {
    let data = decode(dtype, 1, raw)?;
    Ok(match data {
        ArrayData::F32(v) => Value::Float(f64::from(v[0])),
        ArrayData::F64(v) => Value::Float(v[0]),
        ArrayData::I64(v) => Value::Int(v[0]),
        ArrayData::I32(v) => Value::Int(i64::from(v[0])),
        ArrayData::U8(v) => Value::Int(i64::from(v[0])),
        ArrayData::Bool(v) => Value::Bool(v[0]),
        ArrayData::Str(mut v) => Value::Str(v.pop().unwrap_or_default()),
        ArrayData::Object(mut v) => v.pop().unwrap_or(Value::None),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_dtype_descriptions() {
        let d = DType::parse("f4").expect("f4");
        assert_eq!((d.kind, d.itemsize), ('f', 4));
        let d = DType::parse("<U5").expect("U5");
        assert_eq!((d.byte_order, d.kind, d.itemsize), ('<', 'U', 20));
        assert_eq!(DType::parse("O8").expect("O8").to_string(), "=O");
        assert!(DType::parse("").is_err());
        assert!(DType::parse("f99999999999999999999999").is_err());
        assert!(DType::parse("U9999999999999999999").is_err());
    }

    #[test]
    fn decodes_both_byte_orders_and_half_floats() {
        let le = DType::parse("<i4").expect("dtype");
        let be = DType::parse(">i4").expect("dtype");
        let raw = [1u8, 0, 0, 0];
        assert_eq!(decode(&le, 1, &raw), Ok(ArrayData::I32(vec![1])));
        assert_eq!(decode(&be, 1, &raw), Ok(ArrayData::I32(vec![1 << 24])));
        let half = DType::parse("<f2").expect("dtype");
        // 1.5 = 0x3e00, -2 = 0xc000
        assert_eq!(
            decode(&half, 2, &[0x00, 0x3e, 0x00, 0xc0]),
            Ok(ArrayData::F32(vec![1.5, -2.0]))
        );
        assert!(decode(&le, 2, &raw).is_err());
        assert!(decode(&le, usize::MAX, &raw).is_err());
    }

    #[test]
    fn fortran_arrays_convert_to_c_order() {
        // [[0,1,2],[3,4,5]] stored column-major is 0,3,1,4,2,5.
        let a = NdArray {
            dtype: DType::parse("<i8").expect("dtype"),
            shape: vec![2, 3],
            data: ArrayData::I64(vec![0, 3, 1, 4, 2, 5]),
            fortran_order: true,
        };
        assert_eq!(a.to_c_order().data, ArrayData::I64(vec![0, 1, 2, 3, 4, 5]));
        assert_eq!(a.to_f32_vec(), Some(vec![0.0, 1.0, 2.0, 3.0, 4.0, 5.0]));
    }
}
