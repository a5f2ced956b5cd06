//! Python-2 style pickles (protocols 0 and 2) without Python: a tiny writer
//! that emits what Python 2's `cPickle` + numpy 1.x write for the MMGCN
//! IEMOCAP file: byte strings (`STRING`/`SHORT_BINSTRING`/`BINSTRING`) for
//! every str, numpy raw data as a latin-1 byte string, `numpy.dtype('f4', 0, 1)`
//! with int flags, memoised and re-used speaker letters.

use sigsweep_data::formats::{self, ErcOptions, Format};
use sigsweep_data::pickle::{self, Value};

enum Py {
    None,
    Int(i64),
    /// A Python 2 `str` (bytes).
    Str(Vec<u8>),
    List(Vec<Py>),
    Tuple(Vec<Py>),
    Dict(Vec<(Py, Py)>),
    /// A float32 numpy array.
    F32 {
        shape: Vec<usize>,
        data: Vec<f32>,
    },
    /// `GET` of a memo slot written by `Put`.
    Get(u32),
    /// Writes the inner value and memoises it in the slot.
    Put(u32, Box<Py>),
}

fn s(text: &str) -> Py {
    Py::Str(text.as_bytes().to_vec())
}

/// Python 2 `repr` of a byte string (for protocol-0 `STRING`).
fn py2_repr(bytes: &[u8]) -> Vec<u8> {
    let mut out = vec![b'\''];
    for &b in bytes {
        match b {
            b'\\' => out.extend_from_slice(b"\\\\"),
            b'\'' => out.extend_from_slice(b"\\'"),
            b'\n' => out.extend_from_slice(b"\\n"),
            b'\r' => out.extend_from_slice(b"\\r"),
            b'\t' => out.extend_from_slice(b"\\t"),
            0x20..=0x7e => out.push(b),
            _ => out.extend_from_slice(format!("\\x{b:02x}").as_bytes()),
        }
    }
    out.push(b'\'');
    out
}

struct Writer {
    proto: u8,
    out: Vec<u8>,
}

impl Writer {
    fn int(&mut self, i: i64) {
        if self.proto == 0 {
            self.out.extend_from_slice(format!("I{i}\n").as_bytes());
        } else if (0..256).contains(&i) {
            self.out.push(b'K');
            self.out.push(i as u8);
        } else {
            self.out.push(b'J');
            self.out.extend_from_slice(&(i as i32).to_le_bytes());
        }
    }

    fn str(&mut self, b: &[u8]) {
        if self.proto == 0 {
            self.out.push(b'S');
            self.out.extend_from_slice(&py2_repr(b));
            self.out.push(b'\n');
        } else if b.len() < 256 {
            self.out.push(b'U');
            self.out.push(b.len() as u8);
            self.out.extend_from_slice(b);
        } else {
            self.out.push(b'T');
            self.out.extend_from_slice(&(b.len() as u32).to_le_bytes());
            self.out.extend_from_slice(b);
        }
    }

    fn global(&mut self, module: &str, name: &str) {
        self.out
            .extend_from_slice(format!("c{module}\n{name}\n").as_bytes());
    }

    fn tuple(&mut self, items: &[Py]) {
        self.out.push(b'(');
        for x in items {
            self.write(x);
        }
        self.out.push(b't');
    }

    fn write(&mut self, v: &Py) {
        match v {
            Py::None => self.out.push(b'N'),
            Py::Int(i) => self.int(*i),
            Py::Str(b) => self.str(b),
            Py::List(items) => {
                if self.proto == 0 {
                    self.out.extend_from_slice(b"(l");
                    for x in items {
                        self.write(x);
                        self.out.push(b'a');
                    }
                } else {
                    self.out.extend_from_slice(b"](");
                    for x in items {
                        self.write(x);
                    }
                    self.out.push(b'e');
                }
            }
            Py::Tuple(items) => self.tuple(items),
            Py::Dict(pairs) => {
                if self.proto == 0 {
                    self.out.extend_from_slice(b"(d");
                    for (k, x) in pairs {
                        self.write(k);
                        self.write(x);
                        self.out.push(b's');
                    }
                } else {
                    self.out.extend_from_slice(b"}(");
                    for (k, x) in pairs {
                        self.write(k);
                        self.write(x);
                    }
                    self.out.push(b'u');
                }
            }
            Py::F32 { shape, data } => {
                // _reconstruct(ndarray, (0,), 'b')
                self.global("numpy.core.multiarray", "_reconstruct");
                self.out.push(b'(');
                self.global("numpy", "ndarray");
                self.tuple(&[Py::Int(0)]);
                self.str(b"b");
                self.out.extend_from_slice(b"tR");
                // state
                self.out.push(b'(');
                self.int(1);
                self.tuple(&shape.iter().map(|&d| Py::Int(d as i64)).collect::<Vec<_>>());
                self.global("numpy", "dtype");
                self.tuple(&[s("f4"), Py::Int(0), Py::Int(1)]);
                self.out.push(b'R');
                self.tuple(&[
                    Py::Int(3),
                    s("<"),
                    Py::None,
                    Py::None,
                    Py::None,
                    Py::Int(-1),
                    Py::Int(-1),
                    Py::Int(0),
                ]);
                self.out.push(b'b');
                self.int(0); // is_fortran as an int, like old numpy
                let raw: Vec<u8> = data.iter().flat_map(|x| x.to_le_bytes()).collect();
                self.str(&raw);
                self.out.extend_from_slice(b"tb");
            }
            Py::Put(slot, inner) => {
                self.write(inner);
                if self.proto == 0 {
                    self.out.extend_from_slice(format!("p{slot}\n").as_bytes());
                } else {
                    self.out.push(b'q');
                    self.out.push(*slot as u8);
                }
            }
            Py::Get(slot) => {
                if self.proto == 0 {
                    self.out.extend_from_slice(format!("g{slot}\n").as_bytes());
                } else {
                    self.out.push(b'h');
                    self.out.push(*slot as u8);
                }
            }
        }
    }

    fn finish(proto: u8, v: &Py) -> Vec<u8> {
        let mut w = Writer {
            proto,
            out: Vec::new(),
        };
        if proto >= 2 {
            w.out.extend_from_slice(&[0x80, proto]);
        }
        w.write(v);
        w.out.push(b'.');
        w.out
    }
}

/// Feature values chosen so the raw bytes contain `\n`, `'`, `\\`, NUL and
/// bytes ≥ 0x80 (all need escaping in protocol 0 / latin-1 handling).
fn feature_value(k: usize, u: usize, d: usize) -> f32 {
    let tricky = [
        f32::from_le_bytes([b'\n', b'\'', b'\\', 0x80]),
        f32::from_le_bytes([0, 0xff, b'\r', 0x3f]),
        -1.5,
    ];
    if d < tricky.len() && u == 0 {
        tricky[d]
    } else {
        (k * 100 + u * 10 + d) as f32
    }
}

/// An IEMOCAP-like 9-tuple with two train dialogues and one test dialogue.
fn iemocap_py2() -> Py {
    let dims = [3usize, 4, 2];
    let lens = [2usize, 3, 2];
    let vids = ["Ses01F_impro01", "Ses01M_script02", "Ses05F_impro03"];
    let field = |f: &dyn Fn(usize, &str) -> Py| {
        Py::Dict(
            vids.iter()
                .enumerate()
                .map(|(k, v)| (s(v), f(k, v)))
                .collect(),
        )
    };
    let mut first_letter = true;
    let speakers = Py::Dict(
        vids.iter()
            .enumerate()
            .map(|(k, v)| {
                let letters = (0..lens[k])
                    .map(|u| {
                        let m = (k + u) % 2 == 0;
                        // Memoise 'M' and 'F' the first time, re-use after.
                        if first_letter && u == 0 && k == 0 {
                            first_letter = false;
                            Py::Put(1, Box::new(s("M")))
                        } else if m {
                            Py::Get(1)
                        } else {
                            s("F")
                        }
                    })
                    .collect();
                (s(v), Py::List(letters))
            })
            .collect(),
    );
    let feats = |m: usize| {
        field(&|k, _| {
            Py::List(
                (0..lens[k])
                    .map(|u| Py::F32 {
                        shape: vec![dims[m]],
                        data: (0..dims[m])
                            .map(|d| feature_value(k, u, d) + m as f32 * 0.5)
                            .collect(),
                    })
                    .collect(),
            )
        })
    };
    Py::Tuple(vec![
        field(&|k, v| Py::List((0..lens[k]).map(|u| s(&format!("{v}_{u}"))).collect())),
        speakers,
        field(&|k, _| {
            Py::List(
                (0..lens[k])
                    .map(|u| Py::Int(((k + u) % 6) as i64))
                    .collect(),
            )
        }),
        feats(0),
        feats(1),
        feats(2),
        field(&|k, _| {
            Py::List(
                (0..lens[k])
                    .map(|_| Py::Str(b"caf\xe9 \xff".to_vec()))
                    .collect(),
            )
        }),
        Py::List(vec![s(vids[0]), s(vids[1])]),
        Py::List(vec![s(vids[2])]),
    ])
}

fn check(proto: u8) {
    let bytes = Writer::finish(proto, &iemocap_py2());
    let value = pickle::from_slice(&bytes).unwrap_or_else(|e| panic!("protocol {proto}: {e}"));
    assert_eq!(formats::detect(&value), Some(Format::Iemocap));
    // Python-2 byte strings become latin-1 str.
    let Value::Tuple(fields) = &value else {
        panic!("tuple expected")
    };
    let sentence = fields[6]
        .get("Ses01F_impro01")
        .and_then(Value::as_seq)
        .and_then(|s| s[0].as_str())
        .map(str::to_string);
    assert_eq!(sentence.as_deref(), Some("café ÿ"));
    let ds = formats::erc_from_value(value, Format::Iemocap).expect("dataset");
    assert_eq!(ds.dims, [3, 4, 2]);
    assert_eq!(ds.train.len(), 2);
    assert_eq!(ds.test[0].id, "Ses05F_impro03");
    let d = &ds.train[1];
    assert_eq!(d.speakers, [1, 0, 1]);
    assert_eq!(d.labels, [1, 2, 3]);
    for k in 0..3 {
        let d = if k < 2 { &ds.train[k] } else { &ds.test[0] };
        for (u, row) in d.audio.iter().enumerate() {
            for (i, &x) in row.iter().enumerate() {
                assert_eq!(
                    x.to_bits(),
                    (feature_value(k, u, i) + 0.5).to_bits(),
                    "protocol {proto}"
                );
            }
        }
        assert_eq!(d.text[0][0].to_bits(), feature_value(k, 0, 0).to_bits());
    }
}

#[test]
fn python2_protocol0_iemocap() {
    check(0);
}

#[test]
fn python2_protocol2_iemocap() {
    check(2);
}

#[test]
fn python2_load_from_file_with_auto_format() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("IEMOCAP_features.pkl");
    std::fs::write(&path, Writer::finish(2, &iemocap_py2())).expect("write");
    let ds = formats::load_erc(&path, Format::Auto, &ErcOptions::default()).expect("load");
    assert_eq!(ds.train.len() + ds.valid.len(), 2);
    assert_eq!(
        ds.valid.len(),
        1,
        "default carve when there is no dev split"
    );
}

#[test]
fn python2_truncated_and_garbled_never_panic() {
    for proto in [0u8, 2] {
        let bytes = Writer::finish(proto, &iemocap_py2());
        for cut in 0..bytes.len() {
            assert!(pickle::from_slice(&bytes[..cut]).is_err(), "cut {cut}");
        }
        for i in (0..bytes.len()).step_by(3) {
            let mut b = bytes.clone();
            b[i] ^= 0x5a;
            if let Ok(v) = pickle::from_slice(&b) {
                let _ = formats::erc_from_value(v, Format::Iemocap);
            }
        }
    }
}
