//! numpy's byte layouts: raw array and scalar bytes of a dtype decoded
//! into [`ArrayData`].

use super::value::{ArrayData, DType, Value};

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

/// Bytes that [`decode`] allocates for `count` elements of `dtype` (an upper
/// bound for strings, whose characters may take fewer bytes than `itemsize`).
pub(crate) fn decoded_size(dtype: &DType, count: usize) -> usize {
    let each = match (dtype.kind, dtype.itemsize) {
        ('S' | 'U', size) => std::mem::size_of::<String>() + size,
        ('u' | 'b', 1) => 1,
        ('f' | 'i', 1..=4) | ('u', 2) => 4,
        _ => 8,
    };
    count.saturating_mul(each)
}

/// Heap bytes of decoded array data (object elements not included: they are
/// values of their own).
pub(crate) fn data_bytes(data: &ArrayData) -> usize {
    match data {
        ArrayData::F32(v) => std::mem::size_of_val(v.as_slice()),
        ArrayData::F64(v) => std::mem::size_of_val(v.as_slice()),
        ArrayData::I64(v) => std::mem::size_of_val(v.as_slice()),
        ArrayData::I32(v) => std::mem::size_of_val(v.as_slice()),
        ArrayData::U8(v) => v.len(),
        ArrayData::Bool(v) => v.len(),
        ArrayData::Str(v) => v
            .iter()
            .map(|s| std::mem::size_of::<String>() + s.len())
            .sum(),
        ArrayData::Object(_) => 0,
    }
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
    use crate::pickle::NdArray;

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
