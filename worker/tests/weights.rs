//! Weights files (`[training] save = ["weights"]`, `sigsweep predict`):
//! `mmdfn` writes MM-DFN's `state_dict` names and shapes (compared with
//! the module tree of our own PyTorch MM-DFN, `tests/python/mmdfn_torch.py`;
//! `make test-pytorch` loads the file into it strictly and compares the
//! log-probabilities), and every model reads back what it wrote, bitwise.

use std::collections::BTreeMap;

use indexmap::IndexMap;

use sigsweep_worker::backend::BackendKind;
use sigsweep_worker::models;
use sigsweep_worker::params::{Params, Value};
use sigsweep_worker::trial::{
    DatasetRequest, Named, Split, TrialRequest, Weights, Workload, load_dataset,
};

fn request(
    model: &str,
    generator: &str,
    dataset: serde_json::Value,
    seed: u64,
    extra: &[(&str, Value)],
) -> TrialRequest {
    let mut values = IndexMap::new();
    values.insert("batch_size".to_string(), Value::Int(8));
    for (k, v) in extra {
        values.insert(k.to_string(), v.clone());
    }
    TrialRequest {
        trial_id: format!("weights-{model}"),
        seed,
        model: model.into(),
        params: Params::new(values),
        dataset: DatasetRequest {
            kind: "synthetic".into(),
            generator: generator.into(),
            path: String::new(),
            params: dataset,
            fold: None,
        },
        select: "accuracy".into(),
        select_higher_is_better: true,
        select_split: Split::Valid,
        checkpoint: None,
        program: None,
    }
}

fn build(req: &TrialRequest) -> Box<dyn Workload> {
    let data = load_dataset(&req.dataset, 0, 0.1).expect("dataset");
    models::build(req, data, BackendKind::Cpu).expect("workload")
}

fn bits(w: &Weights) -> BTreeMap<String, (Vec<usize>, Vec<u32>)> {
    w.tensors
        .iter()
        .map(|(k, t)| {
            (
                k.clone(),
                (
                    t.shape.clone(),
                    t.data.iter().map(|x| x.to_bits()).collect(),
                ),
            )
        })
        .collect()
}

fn small_erc() -> serde_json::Value {
    serde_json::json!({ "preset": "small", "n_train": 12, "n_test": 6 })
}

fn small_net() -> Vec<(&'static str, Value)> {
    vec![
        ("hidden", Value::Int(16)),
        ("graph_hidden", Value::Int(8)),
        ("layers", Value::Int(2)),
    ]
}

#[test]
fn mmdfn_writes_mm_dfns_state_dict_names_and_shapes() {
    let golden: serde_json::Value =
        serde_json::from_str(include_str!("golden/mmdfn_state_dict.json")).expect("golden file");
    let expected: BTreeMap<String, Vec<usize>> = golden["tensors"]
        .as_object()
        .expect("tensors")
        .iter()
        .map(|(k, v)| {
            let shape = v
                .as_array()
                .expect("shape")
                .iter()
                .map(|d| d.as_u64().expect("dim") as usize)
                .collect();
            (k.clone(), shape)
        })
        .collect();
    // MM-DFN's IEMOCAP sizes: dims 100/1582/342, 6 classes, 2 speakers,
    // hidden 200, graph hidden 100, 16 layers (mmdfn's defaults).
    let req = request(
        "mmdfn",
        "erc",
        serde_json::json!({ "preset": "iemocap", "n_train": 2, "n_test": 1 }),
        1,
        &[],
    );
    let w = build(&req).weights().expect("weights");
    let got: BTreeMap<String, Vec<usize>> = w
        .tensors
        .iter()
        .map(|(k, t)| (k.clone(), t.shape.clone()))
        .collect();
    let missing: Vec<&String> = expected.keys().filter(|k| !got.contains_key(*k)).collect();
    let extra: Vec<&String> = got.keys().filter(|k| !expected.contains_key(*k)).collect();
    assert!(
        missing.is_empty() && extra.is_empty(),
        "missing {missing:?}, extra {extra:?}"
    );
    assert_eq!(got, expected);
    assert_eq!(got.len(), 100);
    // The LSTM gate's hh bias is folded into bias_ih: written as zeros.
    let hh = &w.tensors["graph_model.graph_net.rnn.bias_hh_l0"];
    assert!(hh.data.iter().all(|&x| x == 0.0));
    // A GRU's biases are its own.
    assert!(
        w.tensors["lstm_l.bias_hh_l0"]
            .data
            .iter()
            .any(|&x| x != 0.0)
    );
}

/// A file written by one trial and read into a network built from another
/// seed gives that network the first one's weights and predictions,
/// bitwise, through the safetensors bytes.
#[test]
fn every_model_reads_back_what_it_wrote() {
    let cases = [
        request("mmdfn", "erc", small_erc(), 1, &small_net()),
        request("mmic", "erc", small_erc(), 1, &small_net()),
        request(
            "late-fusion",
            "fusion",
            serde_json::json!({ "n_train": 32, "n_valid": 8, "n_test": 8, "classes": 3 }),
            1,
            &[("hidden", Value::Int(8))],
        ),
        request(
            "fdcmdie",
            "msa",
            serde_json::json!({ "preset": "small", "n_train": 16, "n_valid": 4, "n_test": 4 }),
            1,
            &[
                ("width", Value::Int(8)),
                ("heads", Value::Int(2)),
                ("layers", Value::Int(1)),
            ],
        ),
    ];
    for req in cases {
        let a = build(&req);
        let written = a.weights().expect("weights");
        let bytes = written.to_safetensors().expect("bytes");
        let other = TrialRequest {
            seed: 2,
            ..req.clone()
        };
        let mut b = build(&other);
        assert_ne!(
            bits(&b.weights().expect("weights")),
            bits(&written),
            "{}: another seed starts elsewhere",
            req.model
        );
        b.load_weights(Weights::from_safetensors(&bytes).expect("read"))
            .expect("load");
        assert_eq!(
            bits(&b.weights().expect("weights")),
            bits(&written),
            "{}",
            req.model
        );
        assert_eq!(
            b.predictions(Split::Test).expect("predictions"),
            a.predictions(Split::Test).expect("predictions"),
            "{}: same predictions",
            req.model
        );
    }
}

#[test]
fn mmic_keeps_its_own_heads_under_their_names() {
    let w = build(&request("mmic", "erc", small_erc(), 1, &small_net()))
        .weights()
        .expect("weights");
    assert!(
        w.tensors.contains_key("cpc.0.weight"),
        "{:?}",
        w.tensors.keys()
    );
    assert!(w.tensors.keys().any(|k| k.starts_with("mi.heads.0.")));
    let d = build(&request("mmdfn", "erc", small_erc(), 1, &small_net()))
        .weights()
        .expect("weights");
    assert!(
        !d.tensors
            .keys()
            .any(|k| k.starts_with("cpc.") || k.starts_with("mi."))
    );
    assert_eq!(w.tensors.len(), d.tensors.len() + 3 * 2 + 2 * 10);
}

/// PyTorch's LSTM has two biases; ours folds `bias_hh` into `bias_ih`. A
/// file with a non-zero `bias_hh` (MM-DFN's own weights) gives the same
/// network as one with the sum in `bias_ih`.
#[test]
fn an_lstm_bias_hh_is_added_to_bias_ih() {
    let req = request("mmdfn", "erc", small_erc(), 1, &small_net());
    let a = build(&req);
    let mut split = a.weights().expect("weights");
    let ih = "graph_model.graph_net.rnn.bias_ih_l0";
    let hh = "graph_model.graph_net.rnn.bias_hh_l0";
    let full = split.tensors[ih].clone();
    let half: Vec<f32> = full.data.iter().map(|x| x / 2.0).collect();
    split.insert(ih, Named::new(full.shape.clone(), half.clone()));
    split.insert(hh, Named::new(full.shape.clone(), half));
    let mut b = build(&TrialRequest { seed: 2, ..req });
    b.load_weights(split).expect("load");
    let back = b.weights().expect("weights");
    assert_eq!(back.tensors[ih], full, "x/2 + x/2 = x exactly");
    assert!(back.tensors[hh].data.iter().all(|&x| x == 0.0));
}

#[test]
fn a_file_that_does_not_fit_is_refused_by_name() {
    let req = request("mmdfn", "erc", small_erc(), 1, &small_net());
    let good = build(&req).weights().expect("weights");
    let mut b = build(&req);
    let before = bits(&b.weights().expect("weights"));

    let mut extra = good.clone();
    extra.insert("decoder.weight", Named::zeros(vec![2, 2]));
    let err = b.load_weights(extra).expect_err("extra tensor");
    assert!(err.to_string().contains("decoder.weight"), "{err}");

    let mut missing = good.clone();
    missing.tensors.remove("smax_fc.bias");
    let err = b.load_weights(missing).expect_err("missing tensor");
    assert!(
        err.to_string().contains("no tensor `smax_fc.bias`"),
        "{err}"
    );

    let mut shape = good.clone();
    shape.insert("linear_l.weight", Named::zeros(vec![3, 3]));
    let err = b.load_weights(shape).expect_err("wrong shape");
    assert!(
        err.to_string()
            .contains("`linear_l.weight` has shape [3, 3]"),
        "{err}"
    );

    // A refused file leaves the model as it was.
    assert_eq!(bits(&b.weights().expect("weights")), before);

    // The never-used MM-DFN modules must be there, in any shape (MM-DFN's
    // speaker count per dataset is its own).
    let mut speakers = good.clone();
    speakers.insert(
        "graph_model.speaker_embeddings.weight",
        Named::zeros(vec![9, 16]),
    );
    b.load_weights(speakers)
        .expect("an unused tensor's shape does not matter");
    let mut unused = good.clone();
    unused.tensors.remove("gatedatt.transform_av.bias");
    let err = b.load_weights(unused).expect_err("missing unused tensor");
    assert!(
        err.to_string().contains("gatedatt.transform_av.bias"),
        "{err}"
    );
}
