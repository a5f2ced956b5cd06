//! Loaders against ERC and MMSA pickles written by Python + numpy
//! (`tests/fixtures/make_pickles.py`; formulas documented there).

mod common;

use sigsweep_data::formats::{
    self, ErcOptions, Format, Inspection, LabelStats, carve_valid, inspect, load_erc, load_mmsa,
};

fn no_valid() -> ErcOptions {
    ErcOptions {
        valid_rate: Some(0.0),
        seed: 0,
        default_valid_rate: None,
    }
}

/// Value of feature `d` of utterance `u` of dialogue `k`, modality `m`.
fn feat(k: usize, u: usize, m: usize, d: usize) -> f32 {
    (k as f64 * 1000.0 + u as f64 + d as f64 / 1000.0 + m as f64 * 0.1) as f32
}

#[test]
fn iemocap_nine_tuple() {
    let dir = common::fixtures("formats");
    let ds = load_erc(&dir.join("iemocap.pkl"), Format::Iemocap, &no_valid()).expect("load");
    assert_eq!(ds.dims, [4, 6, 3]);
    assert_eq!(ds.n_classes, 6);
    assert_eq!(ds.n_speakers, 2);
    assert_eq!(ds.class_names, ["hap", "sad", "neu", "ang", "exc", "fru"]);
    let ids: Vec<&str> = ds.train.iter().map(|d| d.id.as_str()).collect();
    assert_eq!(ids, ["dlg0", "dlg1", "dlg2", "dlg3"]);
    assert!(ds.valid.is_empty());
    assert_eq!(ds.test.len(), 1);
    let d = &ds.train[1];
    assert_eq!(d.len(), 5);
    assert_eq!(d.labels, [1, 2, 3, 4, 5]);
    // 'M' when (k + u) is even → 0, 'F' → 1.
    assert_eq!(d.speakers, [1, 0, 1, 0, 1]);
    assert_eq!(d.audio[2][5], feat(1, 2, 1, 5));
    assert_eq!(d.text[0][3], feat(1, 0, 0, 3));
    assert_eq!(d.visual[4][0], feat(1, 4, 2, 0));
    // Auto-detection gives the same, and the default carves a valid split.
    let auto = load_erc(
        &dir.join("iemocap.pkl"),
        Format::Auto,
        &ErcOptions::default(),
    )
    .expect("load auto");
    assert_eq!(auto.train.len() + auto.valid.len(), 4);
    assert_eq!(auto.valid.len(), 1);
}

#[test]
fn meld_ten_tuple_with_one_hot_speakers_and_2d_arrays() {
    let dir = common::fixtures("formats");
    let ds = load_erc(&dir.join("meld.pkl"), Format::Auto, &no_valid()).expect("load");
    assert_eq!(ds.name, "meld");
    assert_eq!(ds.dims, [5, 3, 2]);
    assert_eq!(ds.n_speakers, 9);
    assert_eq!(ds.n_classes, 7);
    // trainVid is a set {"dlg0", "dlg1"}: order is Python's, contents fixed.
    let mut ids: Vec<&str> = ds.train.iter().map(|d| d.id.as_str()).collect();
    ids.sort_unstable();
    assert_eq!(ids, ["dlg0", "dlg1"]);
    let t = &ds.test[0];
    assert_eq!(t.id, "dlg2");
    assert_eq!(t.speakers, [2, 3, 4, 5]);
    assert_eq!(t.text[3][4], feat(2, 3, 0, 4));
}

#[test]
fn m3ed_has_a_dev_split() {
    let dir = common::fixtures("formats");
    let ds = load_erc(&dir.join("m3ed.pkl"), Format::Auto, &ErcOptions::default()).expect("load");
    assert_eq!(ds.name, "m3ed");
    assert_eq!((ds.train.len(), ds.valid.len(), ds.test.len()), (2, 1, 1));
    assert_eq!(ds.valid[0].id, "dlg2");
    assert_eq!(ds.test[0].speakers, [0, 1, 0, 1, 0]);
    assert_eq!(ds.dims, [3, 2, 2]);
    assert_eq!(ds.class_names[1], "neu");
}

#[test]
fn wrong_explicit_format_is_a_clear_error() {
    let dir = common::fixtures("formats");
    let err = load_erc(&dir.join("meld.pkl"), Format::Iemocap, &no_valid()).expect_err("9 vs 10");
    let msg = err.to_string();
    assert!(msg.contains("meld.pkl") && msg.contains("9-tuple"), "{msg}");
    let err = load_erc(&dir.join("m3ed.pkl"), Format::Meld, &no_valid()).expect_err("speakers");
    assert!(err.to_string().contains("videoSpeakers[dlg0][0]"), "{err}");
}

#[test]
fn carve_valid_is_deterministic() {
    let dir = common::fixtures("formats");
    let base = load_erc(&dir.join("iemocap.pkl"), Format::Iemocap, &no_valid()).expect("load");
    let carve = |rate, seed| {
        let mut d = base.clone();
        carve_valid(&mut d, rate, seed).expect("carve");
        d
    };
    assert_eq!(carve(0.5, 3), carve(0.5, 3));
    let d = carve(0.5, 3);
    assert_eq!((d.train.len(), d.valid.len()), (2, 2));
    assert!(carve_valid(&mut base.clone(), 1.0, 0).is_err());
    let ids: Vec<String> = (0..8).map(|s| carve(0.25, s).valid[0].id.clone()).collect();
    assert!(
        ids.iter().any(|i| i != &ids[0]),
        "seed must matter: {ids:?}"
    );
}

#[test]
fn mmsa_unaligned_float32() {
    let dir = common::fixtures("formats");
    let ds = load_mmsa(&dir.join("mosi_unaligned.pkl")).expect("load");
    assert_eq!(ds.name, "mosi_unaligned");
    assert_eq!(ds.dims(), [8, 3, 2]);
    assert_eq!(ds.lens(), [4, 6, 5]);
    assert_eq!((ds.train.len(), ds.valid.len(), ds.test.len()), (5, 2, 3));
    let s = &ds.train;
    assert_eq!(s.ids[3], "vid3$_$train");
    assert_eq!(s.labels[0], -3.0);
    assert!((s.labels[4] - (-5.0 / 3.0)).abs() < 1e-6);
    // audio[i,0,0] was -inf: now 0. Other values: -i - t/100.
    assert_eq!(s.audio.sample(2)[0], 0.0);
    assert_eq!(s.audio.sample(2)[3], (-2.0f64 - 0.01) as f32);
    assert_eq!(s.text.sample(1)[8 + 2], (1.0 + 0.01 + 0.0002f64) as f32);
    assert_eq!(s.audio_lengths.as_deref(), Some(&[1, 2, 3, 4, 5][..]));
    assert_eq!(s.vision_lengths.as_deref(), Some(&[5, 4, 5, 4, 5][..]));
    assert!(s.audio.data.iter().all(|x| x.is_finite()));
}

#[test]
fn mmsa_aligned_float64_protocol2() {
    let dir = common::fixtures("formats");
    let ds = load_mmsa(&dir.join("mosei_aligned.pkl")).expect("load");
    assert_eq!(ds.dims(), [4, 5, 6]);
    assert_eq!(ds.lens(), [3, 3, 3]);
    assert!(ds.train.audio_lengths.is_none());
    assert_eq!(ds.test.vision.sample(2)[0], 1.0);
}

#[test]
fn inspect_reports_counts_and_prints() {
    let dir = common::fixtures("formats");
    let i: Inspection = inspect(&dir.join("iemocap.pkl"), Format::Auto).expect("inspect");
    assert_eq!(i.format, Format::Iemocap);
    assert_eq!(i.splits[0].count, 4);
    assert_eq!(i.splits[0].utterances, Some(3 + 5 + 2 + 4));
    let LabelStats::Classes { counts } = &i.splits[2].labels else {
        panic!("classes expected");
    };
    assert_eq!(counts.iter().sum::<usize>(), 6);
    let text = i.to_string();
    assert!(text.contains("iemocap") && text.contains("fru"), "{text}");
    let json = serde_json::to_value(&i).expect("json");
    assert_eq!(json["format"], "iemocap");

    let m = inspect(&dir.join("mosi_unaligned.pkl"), Format::Auto).expect("inspect");
    assert_eq!(m.format, Format::Mmsa);
    assert_eq!(m.seq_lens, Some([4, 6, 5]));
    let LabelStats::Regression {
        histogram7, min, ..
    } = &m.splits[0].labels
    else {
        panic!("regression expected");
    };
    assert_eq!(*min, -3.0);
    assert_eq!(histogram7.iter().sum::<usize>(), 5);
    assert!(m.to_string().contains("histogram"));
    let _ = formats::detect;
}

/// A C-order `float32` numpy array.
fn f32_array(shape: Vec<usize>, data: Vec<f32>) -> sigsweep_data::pickle::Value {
    use sigsweep_data::pickle::{ArrayData, DType, NdArray, Value};
    Value::NdArray(Box::new(NdArray {
        dtype: DType {
            byte_order: '<',
            kind: 'f',
            itemsize: 4,
        },
        shape,
        data: ArrayData::F32(data),
        fortran_order: false,
    }))
}

/// Dialogue `dlg1`'s entry in field `field` of an ERC tuple.
fn dlg1(
    fields: &mut [sigsweep_data::pickle::Value],
    field: usize,
) -> &mut sigsweep_data::pickle::Value {
    use sigsweep_data::pickle::Value;
    let Value::Dict(entries) = &mut fields[field] else {
        panic!("dict")
    };
    let (_, v) = entries
        .iter_mut()
        .find(|(k, _)| k.as_str() == Some("dlg1"))
        .expect("dlg1");
    v
}

fn set_key(
    value: &mut sigsweep_data::pickle::Value,
    split: &str,
    key: &str,
    new: sigsweep_data::pickle::Value,
) {
    use sigsweep_data::pickle::Value;
    let Value::Dict(top) = value else {
        panic!("dict")
    };
    let (_, s) = top
        .iter_mut()
        .find(|(k, _)| k.as_str() == Some(split))
        .expect("split");
    let Value::Dict(entries) = s else {
        panic!("split dict")
    };
    let (_, v) = entries
        .iter_mut()
        .find(|(k, _)| k.as_str() == Some(key))
        .expect("key");
    *v = new;
}

#[test]
fn mmsa_inconsistencies_name_split_and_key() {
    use sigsweep_data::pickle::{self, Value};
    let dir = common::fixtures("formats");
    let original = pickle::from_path(&dir.join("mosi_unaligned.pkl")).expect("decode");

    let mut v = original.clone();
    set_key(
        &mut v,
        "valid",
        "audio_lengths",
        Value::List(vec![Value::Int(3), Value::Int(99)]),
    );
    let err = formats::mmsa_from_value(v, "mosi").expect_err("too long");
    assert!(err.to_string().contains("valid.audio_lengths[1]"), "{err}");

    let mut v = original.clone();
    set_key(
        &mut v,
        "test",
        "regression_labels",
        Value::List(vec![Value::Float(0.5)]),
    );
    let err = formats::mmsa_from_value(v, "mosi").expect_err("N mismatch");
    assert!(err.to_string().contains("test.text"), "{err}");

    let mut v = original.clone();
    set_key(&mut v, "train", "vision", Value::Str("nope".into()));
    let err = formats::mmsa_from_value(v, "mosi").expect_err("not an array");
    assert!(err.to_string().contains("train.vision"), "{err}");

    // Shapes that no bytes back: (N, 2^40, 0) decodes from an empty buffer.
    let n = original
        .get("train")
        .and_then(|s| s.get("regression_labels"))
        .and_then(|a| a.as_array())
        .map(|a| a.shape[0])
        .expect("train labels");
    let mut v = original.clone();
    set_key(
        &mut v,
        "train",
        "vision",
        f32_array(vec![n, 1 << 40, 0], vec![]),
    );
    let err = formats::mmsa_from_value(v, "mosi").expect_err("no features");
    assert!(
        err.to_string().contains("train.vision") && err.to_string().contains("holds no features"),
        "{err}"
    );

    // A split padded to another sequence length than train's.
    let audio = original
        .get("valid")
        .and_then(|s| s.get("audio"))
        .and_then(|a| a.as_array())
        .expect("valid audio")
        .clone();
    let [m, len, dim] = audio.shape[..] else {
        panic!("3-D")
    };
    let mut v = original.clone();
    set_key(
        &mut v,
        "valid",
        "audio",
        f32_array(vec![m, len + 1, dim], vec![0.0; m * (len + 1) * dim]),
    );
    let err = formats::mmsa_from_value(v, "mosi").expect_err("other length");
    assert!(
        err.to_string().contains("valid.audio") && err.to_string().contains("differ from train"),
        "{err}"
    );

    let Value::Dict(mut top) = original else {
        panic!("dict")
    };
    top.retain(|(k, _)| k.as_str() != Some("valid"));
    let err = formats::mmsa_from_value(Value::Dict(top), "mosi").expect_err("no valid");
    assert!(err.to_string().contains("missing split `valid`"), "{err}");
}

#[test]
fn speaker_vectors_must_be_one_hot() {
    use sigsweep_data::pickle::{self, Value};
    let dir = common::fixtures("formats");
    let Value::Tuple(fields) = pickle::from_path(&dir.join("meld.pkl")).expect("decode") else {
        panic!("tuple")
    };
    // A weight other than 1 (or a NaN) is not a speaker index.
    for bad in [0.5, f64::NAN] {
        let mut fields = fields.clone();
        let Value::List(vectors) = dlg1(&mut fields, 1) else {
            panic!("list of one-hot vectors")
        };
        let Value::List(first) = &mut vectors[0] else {
            panic!("one-hot list")
        };
        let one = first
            .iter()
            .position(|x| x.as_f64() == Some(1.0))
            .expect("a 1");
        first[one] = Value::Float(bad);
        let err = formats::erc_from_value(Value::Tuple(fields), Format::Meld).expect_err("bad");
        assert!(
            err.to_string().contains("videoSpeakers[dlg1][0]")
                && err.to_string().contains("is not one-hot"),
            "{err}"
        );
    }
}

#[test]
fn erc_inconsistencies_name_the_dialogue() {
    use sigsweep_data::pickle::{self, Value};
    let dir = common::fixtures("formats");
    let Value::Tuple(mut fields) = pickle::from_path(&dir.join("iemocap.pkl")).expect("decode")
    else {
        panic!("tuple")
    };
    // Drop one utterance's audio in dialogue dlg1.
    let Value::List(rows) = dlg1(&mut fields, 4) else {
        panic!("list")
    };
    rows.pop();
    let err = formats::erc_from_value(Value::Tuple(fields.clone()), Format::Iemocap)
        .expect_err("mismatch");
    assert!(err.to_string().contains("videoAudio[dlg1]"), "{err}");

    // A NaN feature names its dialogue, utterance and index, in either
    // layout (a list of vectors, a 2-D array), instead of surfacing as a NaN
    // training loss.
    let Value::List(text) = dlg1(&mut fields, 3).clone() else {
        panic!("list of vectors")
    };
    let rows: Vec<Vec<f32>> = text
        .iter()
        .map(|r| r.as_array().and_then(|a| a.to_f32_vec()).expect("vector"))
        .collect();
    let (n, d) = (rows.len(), rows[0].len());
    let mut flat: Vec<f32> = rows.concat();
    flat[d + 2] = f32::NAN;
    let layouts = [
        f32_array(vec![n, d], flat.clone()),
        Value::List(
            flat.chunks(d)
                .map(|r| f32_array(vec![d], r.to_vec()))
                .collect(),
        ),
    ];
    for layout in layouts {
        *dlg1(&mut fields, 3) = layout;
        let err = formats::erc_from_value(Value::Tuple(fields.clone()), Format::Iemocap)
            .expect_err("NaN");
        assert!(
            err.to_string()
                .contains("videoText[dlg1][1][2]: feature value NaN"),
            "{err}"
        );
    }
    *dlg1(&mut fields, 3) = Value::List(text);

    // 2^40 utterances of no features: no bytes back that shape.
    *dlg1(&mut fields, 4) = f32_array(vec![1 << 40, 0], Vec::new());
    let err = formats::erc_from_value(Value::Tuple(fields), Format::Iemocap).expect_err("empty");
    assert!(
        err.to_string().contains("videoAudio[dlg1]")
            && err.to_string().contains("no feature values"),
        "{err}"
    );
}

#[test]
fn inspection_display_for_every_format() {
    let dir = common::fixtures("formats");
    for (f, name) in [
        ("iemocap.pkl", "iemocap"),
        ("meld.pkl", "meld"),
        ("m3ed.pkl", "m3ed"),
        ("mosi_unaligned.pkl", "mmsa"),
    ] {
        let i = inspect(&dir.join(f), Format::Auto).expect("inspect");
        let text = i.to_string();
        assert!(text.contains(&format!("format:  {name}")), "{text}");
        assert_eq!(
            text.lines().filter(|l| l.starts_with("train")).count(),
            1,
            "{text}"
        );
    }
}
