//! The tree of values a pickle decodes to, numpy arrays and dtypes included
//! (one recursive type: an object array holds values).

use std::fmt;

/// A value decoded from a pickle.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    None,
    Bool(bool),
    Int(i64),
    /// An integer too large for `i64`: little-endian two's complement bytes
    /// (as in the `LONG1`/`LONG4` opcodes).
    BigInt(Vec<u8>),
    Float(f64),
    Str(String),
    /// `bytes` and `bytearray`.
    Bytes(Vec<u8>),
    List(Vec<Value>),
    Tuple(Vec<Value>),
    /// `set` and `frozenset`.
    Set(Vec<Value>),
    /// Entries in insertion order; a key set twice keeps its last value.
    Dict(Vec<(Value, Value)>),
    // The variants below are boxed so that a `Value` stays 32 bytes: a
    // pickle of a million small ints or empty lists is a million values.
    NdArray(Box<NdArray>),
    /// A numpy dtype object on its own (not as part of an array).
    DType(DType),
    /// A reference to a class or function (`GLOBAL`/`STACK_GLOBAL`) that was
    /// never called.
    Global(Box<Global>),
    /// An instance of a class this reader does not know, recorded inert.
    Object(Box<Object>),
}

const _: () = assert!(std::mem::size_of::<Value>() == 32);

/// `module.name` of a class or function.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Global {
    pub module: String,
    pub name: String,
}

/// An instance of a class the reader does not know: `class` is
/// `module.name`, `args` the constructor arguments, `state` what `BUILD`
/// set, `items`/`entries` what `APPEND(S)`/`SETITEM(S)` added.
#[derive(Debug, Clone, PartialEq)]
pub struct Object {
    pub class: String,
    pub args: Vec<Value>,
    pub state: Option<Value>,
    pub items: Vec<Value>,
    pub entries: Vec<(Value, Value)>,
}

impl Value {
    /// A short name of the variant, for error messages.
    pub fn type_name(&self) -> String {
        match self {
            Value::None => "None".into(),
            Value::Bool(_) => "bool".into(),
            Value::Int(_) | Value::BigInt(_) => "int".into(),
            Value::Float(_) => "float".into(),
            Value::Str(_) => "str".into(),
            Value::Bytes(_) => "bytes".into(),
            Value::List(v) => format!("list of {}", v.len()),
            Value::Tuple(v) => format!("tuple of {}", v.len()),
            Value::Set(v) => format!("set of {}", v.len()),
            Value::Dict(v) => format!("dict of {}", v.len()),
            Value::NdArray(a) => format!("ndarray {} {:?}", a.dtype, a.shape),
            Value::DType(d) => format!("dtype {d}"),
            Value::Global(g) => format!("global {}.{}", g.module, g.name),
            Value::Object(o) => format!("object {}", o.class),
        }
    }

    pub fn as_str(&self) -> Option<&str> {
        match self {
            Value::Str(s) => Some(s),
            _ => None,
        }
    }

    pub fn as_int(&self) -> Option<i64> {
        match self {
            Value::Int(i) => Some(*i),
            Value::Bool(b) => Some(i64::from(*b)),
            _ => None,
        }
    }

    /// The number as `f64` (ints, floats, bools).
    pub fn as_f64(&self) -> Option<f64> {
        match self {
            Value::Float(f) => Some(*f),
            Value::Int(i) => Some(*i as f64),
            Value::Bool(b) => Some(f64::from(u8::from(*b))),
            _ => None,
        }
    }

    /// The elements of a list, tuple or set.
    pub fn as_seq(&self) -> Option<&[Value]> {
        match self {
            Value::List(v) | Value::Tuple(v) | Value::Set(v) => Some(v),
            _ => None,
        }
    }

    pub fn as_dict(&self) -> Option<&[(Value, Value)]> {
        match self {
            Value::Dict(v) => Some(v),
            _ => None,
        }
    }

    pub fn as_array(&self) -> Option<&NdArray> {
        match self {
            Value::NdArray(a) => Some(a),
            _ => None,
        }
    }

    /// Looks up a string key in a dict.
    pub fn get(&self, key: &str) -> Option<&Value> {
        self.as_dict()?
            .iter()
            .find(|(k, _)| k.as_str() == Some(key))
            .map(|(_, v)| v)
    }
}

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

    pub(super) fn big_endian(&self) -> bool {
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
