//! A small, safe reader for Python pickles that hold numpy arrays.
//!
//! The MMSA, MMGCN/MM-DFN and M3ED feature files are pickles of dicts,
//! tuples and lists of numpy arrays, written by Python 2 or 3. This module
//! runs the pickle virtual machine far enough to rebuild those values as a
//! [`Value`] tree. It never executes anything: a "call" of a global only
//! happens for the handful of constructors listed below, and any other
//! global becomes an inert [`Value::Object`] record.
//!
//! # What is understood
//!
//! * Protocols 0–5: every opcode except persistent ids (`PERSID`,
//!   `BINPERSID`), the extension registry (`EXT1/2/4`) and out-of-band
//!   buffers (`NEXT_BUFFER`), which fail with an error.
//! * Python-2 byte strings (`STRING`, `BINSTRING`, `SHORT_BINSTRING`) are
//!   decoded as latin-1 into [`Value::Str`], i.e. what
//!   `pickle.load(f, encoding="latin1")` does; numpy raw data that arrives
//!   as such a string is encoded back to bytes with latin-1, as numpy does.
//! * Constructors: `numpy.core.multiarray._reconstruct` (and
//!   `numpy._core.…` for numpy 2) + `BUILD` with the array state tuple
//!   `(version, shape, dtype, is_fortran, rawdata)`; `numpy.dtype` + `BUILD`
//!   (byte order, element size); `numpy.core.multiarray.scalar`;
//!   `numpy.core.numeric._frombuffer` (protocol 5); `_codecs.encode`;
//!   `collections.OrderedDict`; builtins `set`, `frozenset`, `list`,
//!   `tuple`, `dict`, `bytes`, `bytearray`; `copy_reg._reconstructor`.
//! * dtypes: bool `b1`; integers `i1 i2 i4 i8 u1 u2 u4 u8`; floats `f2 f4 f8`;
//!   fixed-width strings `S<n>`/`U<n>`; objects `O`. Either byte order.
//!   Storage widens where that is lossless (see [`ArrayData`]).
//!
//! # Guarantees
//!
//! Malformed input (truncation, unknown opcodes, stack underflow, shapes
//! that disagree with the data, recursive structures, absurd lengths) gives
//! a [`PickleError`] naming the byte offset and opcode; the reader never
//! panics and never allocates more than the input can justify: lengths are
//! trusted only as far as bytes arrive, and what decoding holds is bounded
//! by 256 MiB plus 128 bytes per byte read (a feature file needs one to a
//! few; a `None` in a list, the densest honest case, under 100). Files
//! that share one value a million times, call `list(x)` over and over, or
//! declare zero-sized items in a huge shape are refused at that bound
//! instead of taking the machine's memory.
//!
//! Values shared through the memo (the same Python object referenced twice)
//! are copied into each place they appear.

mod error;
mod numpy;
mod value;
mod vm;

use std::io::Read;
use std::path::Path;

pub use error::PickleError;
pub use value::{ArrayData, DType, Global, NdArray, Object, Value};

/// Reads one pickle from `reader` (stops at its `STOP` opcode).
pub fn from_reader<R: Read>(reader: R) -> Result<value::Value, error::PickleError> {
    vm::Machine::new(reader).run()
}

/// Reads one pickle from a byte slice; bytes after `STOP` are ignored.
pub fn from_slice(bytes: &[u8]) -> Result<value::Value, error::PickleError> {
    from_reader(bytes)
}

/// Reads the pickle file at `path`, buffered.
pub fn from_path(path: &Path) -> crate::Result<value::Value> {
    let file = std::fs::File::open(path).map_err(|error| crate::DataError::Io {
        path: path.display().to_string(),
        error,
    })?;
    let reader = std::io::BufReader::with_capacity(1 << 20, file);
    from_reader(reader).map_err(|error| crate::DataError::Pickle {
        path: path.display().to_string(),
        error,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn err(bytes: &[u8]) -> PickleError {
        from_slice(bytes).expect_err("must fail")
    }

    #[test]
    fn errors_name_offset_and_opcode() {
        let e = err(b"\x80\x02K\x01\xff.");
        assert_eq!((e.offset, e.opcode), (4, Some("unknown")));
        assert!(e.to_string().contains("unknown opcode 0xff"), "{e}");
        let e = err(b"\x80\x02a.");
        assert_eq!((e.offset, e.opcode), (2, Some("APPEND")));
        assert!(e.message.contains("stack underflow"), "{e}");
        let e = err(b"\x80\x02h\x05.");
        assert!(e.message.contains("memo key 5"), "{e}");
        let e = err(b"\x80\x02X\xff\xff\xff\x7fabc");
        assert!(e.message.contains("truncated"), "{e}");
        assert_eq!(e.opcode, Some("BINUNICODE"));
        let e = err(b"\x80\x09N.");
        assert!(e.message.contains("protocol 9"), "{e}");
        assert!(err(b"").message.contains("STOP"));
        assert!(err(b"(t(u.").message.contains("set items"));
    }

    #[test]
    fn equal_keys_and_set_elements_collapse_as_in_python() {
        // d = {}; d[1] = 'a'; d[1.0] = 'b'; d[True] = 'c'; d[nan] = 'x'; d[nan] = 'y'
        // → {1: 'c', nan: 'x', nan: 'y'}
        let mut p = b"\x80\x04}(K\x01\x8c\x01aG".to_vec();
        p.extend_from_slice(&1.0f64.to_be_bytes());
        p.extend_from_slice(b"\x8c\x01b\x88\x8c\x01cG");
        p.extend_from_slice(&f64::NAN.to_be_bytes());
        p.extend_from_slice(b"\x8c\x01xG");
        p.extend_from_slice(&f64::NAN.to_be_bytes());
        p.extend_from_slice(b"\x8c\x01yu.");
        let Value::Dict(d) = from_slice(&p).expect("decode") else {
            panic!("dict")
        };
        assert_eq!(d.len(), 3);
        assert_eq!(
            (&d[0].0, &d[0].1),
            (&Value::Int(1), &Value::Str("c".into()))
        );
        // {0.0, -0.0, 0, 2} → {0.0, 2}
        let mut p = b"\x80\x04\x8f(G".to_vec();
        p.extend_from_slice(&0.0f64.to_be_bytes());
        p.push(b'G');
        p.extend_from_slice(&(-0.0f64).to_be_bytes());
        p.extend_from_slice(b"K\x00K\x02\x90.");
        let v = from_slice(&p).expect("decode");
        assert_eq!(v, Value::Set(vec![Value::Float(0.0), Value::Int(2)]));
    }

    /// Keys Python holds equal beyond scalars: tuples element by element,
    /// integers beyond `i64` and the integral floats equal to them, `None`;
    /// tuples holding a NaN stay apart. The bytes are a dict display whose
    /// pairs were pickled one by one (protocol 2); the expected entries are
    /// `pickle.loads`'s (Python 3.11).
    #[test]
    fn tuple_big_integer_and_none_keys_collapse_as_in_python() {
        // {(1, 2.0): 'a', (True, 2): 'b', 2**70: 'c', 2.0**70: 'd', -2**70: 'e',
        //  -2.0**70: 'f', None: 'g', None: 'h', 2**63: 'i', 2.0**63: 'j',
        //  -2**63: 'k', -2.0**63: 'l', (1, nan): 'm', (1, nan): 'n'}
        let p = b"\x80\x02}(K\x01G@\x00\x00\x00\x00\x00\x00\x00\x86q\x00X\x01\x00\x00\x00aq\x00\
            \x88K\x02\x86q\x00X\x01\x00\x00\x00bq\x00\x8a\t\x00\x00\x00\x00\x00\x00\x00\x00@\
            X\x01\x00\x00\x00cq\x00GDP\x00\x00\x00\x00\x00\x00X\x01\x00\x00\x00dq\x00\
            \x8a\t\x00\x00\x00\x00\x00\x00\x00\x00\xc0X\x01\x00\x00\x00eq\x00\
            G\xc4P\x00\x00\x00\x00\x00\x00X\x01\x00\x00\x00fq\x00NX\x01\x00\x00\x00gq\x00\
            NX\x01\x00\x00\x00hq\x00\x8a\t\x00\x00\x00\x00\x00\x00\x00\x80\x00X\x01\x00\x00\x00iq\x00\
            GC\xe0\x00\x00\x00\x00\x00\x00X\x01\x00\x00\x00jq\x00\
            \x8a\x08\x00\x00\x00\x00\x00\x00\x00\x80X\x01\x00\x00\x00kq\x00\
            G\xc3\xe0\x00\x00\x00\x00\x00\x00X\x01\x00\x00\x00lq\x00\
            K\x01G\x7f\xf8\x00\x00\x00\x00\x00\x00\x86q\x00X\x01\x00\x00\x00mq\x00\
            K\x01G\x7f\xf8\x00\x00\x00\x00\x00\x00\x86q\x00X\x01\x00\x00\x00nq\x00u.";
        let Value::Dict(d) = from_slice(p).expect("decode") else {
            panic!("dict")
        };
        let values: String = d
            .iter()
            .map(|(_, v)| match v {
                Value::Str(s) => s.as_str(),
                other => panic!("{other:?}"),
            })
            .collect();
        assert_eq!(values, "bdfhjlmn");
        // The first key of each group is kept.
        assert_eq!(d[0].0, Value::Tuple(vec![Value::Int(1), Value::Float(2.0)]));
        assert!(matches!(d[1].0, Value::BigInt(_)));
        assert_eq!(d[3].0, Value::None);
        assert_eq!(d[5].0, Value::Int(i64::MIN));
    }

    #[test]
    fn recursive_structures_are_rejected() {
        // l = []; l.append(l)
        let e = err(b"\x80\x02]q\x00h\x00a.");
        assert!(e.message.contains("recursive"), "{e}");
    }

    #[test]
    fn shared_values_are_copied() {
        // x = [1]; (x, x)
        let v = from_slice(b"\x80\x02]q\x00K\x01ah\x00\x86.").expect("decode");
        let one = Value::List(vec![Value::Int(1)]);
        assert_eq!(v, Value::Tuple(vec![one.clone(), one]));
    }

    /// `_reconstruct(ndarray, (0,), b'b')` + BUILD `(1, (3,), dtype('f4'), False, data)`.
    fn f32_array_pickle(data: &[u8]) -> Vec<u8> {
        let mut p = Vec::new();
        p.extend_from_slice(b"\x80\x02cnumpy.core.multiarray\n_reconstruct\ncnumpy\nndarray\n");
        p.extend_from_slice(b"K\x00\x85U\x01b\x87R");
        p.extend_from_slice(b"(K\x01K\x03\x85cnumpy\ndtype\nU\x02f4\x89\x88\x87R");
        p.extend_from_slice(b"(K\x03U\x01<NNNJ\xff\xff\xff\xffJ\xff\xff\xff\xffK\x00tb");
        p.push(0x89);
        p.push(b'C');
        p.push(data.len() as u8);
        p.extend_from_slice(data);
        p.extend_from_slice(b"tb.");
        p
    }

    #[test]
    fn array_shape_must_match_data() {
        let e = err(&f32_array_pickle(&[0, 0, 0x80, 0x3f, 0, 0, 0, 0x40]));
        assert_eq!(e.opcode, Some("BUILD"));
        assert!(
            e.message.contains("8 bytes") && e.message.contains("[3]"),
            "{e}"
        );
        let v = from_slice(&f32_array_pickle(&[
            0, 0, 0x80, 0x3f, 0, 0, 0, 0x40, 0, 0, 0x40, 0x40,
        ]))
        .expect("decode");
        let a = v.as_array().expect("array");
        assert_eq!(a.to_f32_vec(), Some(vec![1.0, 2.0, 3.0]));
        assert_eq!(a.dtype.to_string(), "<f4");
    }

    #[test]
    fn huge_declared_lengths_do_not_allocate() {
        // BINBYTES8 claiming 2^62 bytes, then nothing.
        let mut p = b"\x80\x04\x8e".to_vec();
        p.extend_from_slice(&(1u64 << 62).to_le_bytes());
        assert!(err(&p).message.contains("truncated"));
        // An array claiming 2^40 × 2^40 elements.
        let e = err(b"\x80\x02cnumpy.core.multiarray\n_reconstruct\ncnumpy\nndarray\nK\x00\x85U\x01b\x87R(K\x01\x8a\x06\x00\x00\x00\x00\x00\x01\x8a\x06\x00\x00\x00\x00\x00\x01\x86cnumpy\ndtype\nU\x02f4\x89\x88\x87R\x89C\x00tb.");
        assert!(e.message.contains("overflow"), "{e}");
    }

    fn refused_for_memory(bytes: &[u8]) {
        let e = err(bytes);
        // The limit: 256 MiB plus 128 bytes per byte read.
        let limit = e
            .message
            .split("would take more than ")
            .nth(1)
            .and_then(|rest| rest.split(" MiB of memory").next())
            .and_then(|mib| mib.parse::<u64>().ok());
        assert!(limit.is_some_and(|mib| mib < 300), "{e}");
    }

    #[test]
    fn a_value_shared_over_and_over_cannot_take_the_memory() {
        // x = [None] * 1000; y = [x] * 1000; z = [y] * 1000; [z] * 1000:
        // 7 kB that expand to 10^12 values.
        let mut p = b"\x80\x04](".to_vec();
        p.extend_from_slice(&[b'N'; 1000]);
        p.extend_from_slice(b"e\x94");
        for level in 0..3u8 {
            p.extend_from_slice(b"](");
            for _ in 0..1000 {
                p.extend_from_slice(&[b'h', level]);
            }
            p.extend_from_slice(b"e\x94");
        }
        p.push(b'.');
        refused_for_memory(&p);
        // Sharing within reason decodes (the limit scales with the file).
        let mut p = b"\x80\x04](".to_vec();
        p.extend_from_slice(&[b'N'; 1000]);
        p.extend_from_slice(b"e\x94](");
        for _ in 0..1000 {
            p.extend_from_slice(b"h\x00");
        }
        p.extend_from_slice(b"e.");
        let v = from_slice(&p).expect("a million values from 3 kB decode");
        assert_eq!(v.as_seq().map(<[Value]>::len), Some(1000));
    }

    #[test]
    fn a_value_copied_over_and_over_cannot_take_the_memory() {
        // x = list(range(100)) * 1000; then list(x) 100 000 times, each call
        // seven bytes copying 800 kB of handles (80 GB in all).
        let mut p = b"\x80\x04\x8c\x08builtins\x94\x8c\x04list\x94\x93\x94](".to_vec();
        for i in 0..100_000u32 {
            p.extend_from_slice(&[b'K', (i % 100) as u8]);
            if i % 1000 == 999 {
                p.extend_from_slice(b"e(");
            }
        }
        p.extend_from_slice(b"e\x94");
        for _ in 0..100_000 {
            p.extend_from_slice(b"h\x02h\x03\x85R0");
        }
        p.push(b'.');
        refused_for_memory(&p);
    }

    #[test]
    fn zero_sized_items_cannot_claim_memory() {
        // An `S0` array of shape (2^40,) and no data: 2^40 empty strings.
        let mut p = Vec::new();
        p.extend_from_slice(b"\x80\x02cnumpy.core.multiarray\n_reconstruct\ncnumpy\nndarray\n");
        p.extend_from_slice(b"K\x00\x85U\x01b\x87R");
        p.extend_from_slice(b"(K\x01\x8a\x06\x00\x00\x00\x00\x00\x01\x85");
        p.extend_from_slice(b"cnumpy\ndtype\nU\x02S0\x89\x88\x87R");
        p.extend_from_slice(b"(K\x03U\x01|NNNJ\xff\xff\xff\xffK\x01K\x00tb");
        p.extend_from_slice(b"\x89C\x00tb.");
        refused_for_memory(&p);
    }

    #[test]
    fn a_file_error_says_its_cause_once() {
        use std::error::Error as _;
        let dir = tempfile::tempdir().expect("dir");
        let truncated = dir.path().join("truncated.pkl");
        std::fs::write(&truncated, b"\x80\x02X\x10\x00\x00\x00abc").expect("write");
        for path in [
            truncated.as_path(),
            dir.path().join("missing.pkl").as_path(),
        ] {
            let e = from_path(path).expect_err("must fail");
            // The message holds the cause; a printed chain (`{:#}`) adds
            // nothing, so it says it once.
            assert!(e.source().is_none(), "{e}");
            let text = e.to_string();
            assert!(text.starts_with(&path.display().to_string()), "{text}");
            assert!(
                text.contains("truncated input") || text.contains("No such file"),
                "{text}"
            );
        }
        // A directory opens but cannot be read: a read error, not truncation.
        let e = from_path(dir.path()).expect_err("a directory");
        assert!(e.to_string().contains("read error"), "{e}");
    }
}
