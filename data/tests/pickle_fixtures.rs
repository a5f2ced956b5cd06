//! The pickle reader against files written by CPython's `pickle` + numpy.

mod common;

use sigsweep_data::pickle::{self, Value};

#[test]
fn every_protocol_decodes_like_python() {
    let dir = common::fixtures("pickle");
    let expected: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(dir.join("values.json")).expect("values.json"),
    )
    .expect("json");
    for proto in 0..=5 {
        let path = dir.join(format!("values_p{proto}.pkl"));
        let value = pickle::from_path(&path).unwrap_or_else(|e| panic!("protocol {proto}: {e}"));
        let got = common::to_json(&value);
        let (Some(got_entries), Some(want_entries)) =
            (got["dict"].as_array(), expected["dict"].as_array())
        else {
            panic!("protocol {proto}: top level is not a dict: {got}");
        };
        assert_eq!(got_entries.len(), want_entries.len(), "protocol {proto}");
        for (g, w) in got_entries.iter().zip(want_entries) {
            assert_eq!(g, w, "protocol {proto}, key {}", w[0]);
        }
    }
}

#[test]
fn truncation_at_every_offset_is_an_error() {
    let dir = common::fixtures("pickle");
    for proto in [0, 2, 5] {
        let bytes = std::fs::read(dir.join(format!("values_p{proto}.pkl"))).expect("read");
        assert!(pickle::from_slice(&bytes).is_ok());
        for cut in 0..bytes.len() {
            let err =
                pickle::from_slice(&bytes[..cut]).expect_err("a truncated pickle must not decode");
            assert!(
                err.offset <= cut as u64,
                "protocol {proto} cut {cut}: {err}"
            );
        }
    }
}

#[test]
fn garbled_bytes_never_panic() {
    let dir = common::fixtures("pickle");
    let bytes = std::fs::read(dir.join("values_p2.pkl")).expect("read");
    // Flip each byte to a few values; the result may decode or fail, but
    // must not panic or hang.
    let mut ok = 0usize;
    for i in 0..bytes.len() {
        for x in [0xffu8, b'('] {
            let mut b = bytes.clone();
            b[i] = x;
            if pickle::from_slice(&b).is_ok() {
                ok += 1;
            }
        }
    }
    assert!(ok > 0);
}

#[test]
fn arrays_keep_dtype_and_shape() {
    let dir = common::fixtures("pickle");
    let value = pickle::from_path(&dir.join("values_p4.pkl")).expect("decode");
    let f32s = value
        .get("f32")
        .and_then(Value::as_array)
        .expect("f32 array");
    assert_eq!(f32s.dtype.to_string(), "<f4");
    assert_eq!(f32s.shape, vec![3, 4]);
    let fortran = value
        .get("f64_fortran")
        .and_then(Value::as_array)
        .expect("fortran");
    assert!(fortran.fortran_order);
    assert_eq!(
        fortran.to_f32_vec(),
        Some(vec![0.0, 1.0, 2.0, 3.0, 4.0, 5.0])
    );
    let ids = value
        .get("objects")
        .and_then(Value::as_array)
        .expect("objects");
    assert_eq!(
        ids.to_strings(),
        Some(vec!["id$_$1".to_string(), "id$_$2".to_string()])
    );
}
