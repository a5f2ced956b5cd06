//! The papers' equations against hand computations written from them in
//! numpy (`tests/python/fidelity_reference.py`, its output committed as
//! `tests/golden/fidelity.json`): FD-CMDIE's contrastive loss with all
//! pairs (eqs. 9–12), MMIC's supervised contrastive loss with both self
//! terms out of the denominator (eq. 8), MM-DFN's focal loss with its class
//! weights; the pair count of FD-CMDIE (2 + 5·k_cl positives per anchor);
//! global-norm gradient clipping as `clip_grad_norm_`.

use burn::module::Module;
use burn::nn::{Linear, LinearConfig};
use burn::optim::GradientsParams;
use burn::prelude::*;
use serde_json::Value as Json;

use sigsweep_data::erc::{Dialogue, ErcDataset};
use sigsweep_worker::backend::Cpu;
use sigsweep_worker::models::fdcmdie::contrastive::{
    ClSets, all_members, build_pairs, cl_loss, different_slot, similar_slot,
};
use sigsweep_worker::models::mmic::losses::{focal_loss, supcon_loss};
use sigsweep_worker::models::mmic::{MmicSettings, Scheme, Variant, class_weights};
use sigsweep_worker::trial::{clip_grad_norm, grad_norm};

type I = burn::backend::NdArray<f32>;

fn golden() -> Json {
    let text = include_str!("golden/fidelity.json");
    serde_json::from_str(text).expect("fidelity.json")
}

fn floats(v: &Json) -> Vec<f64> {
    v.as_array()
        .expect("array")
        .iter()
        .map(|x| x.as_f64().expect("number"))
        .collect()
}

fn matrix(v: &Json) -> Vec<Vec<f64>> {
    v.as_array().expect("rows").iter().map(floats).collect()
}

fn t2<Bk: Backend>(rows: &[Vec<f64>]) -> Tensor<Bk, 2> {
    let (r, c) = (rows.len(), rows[0].len());
    let flat: Vec<f32> = rows.iter().flatten().map(|&x| x as f32).collect();
    Tensor::from_data(TensorData::new(flat, [r, c]), &Default::default())
}

fn scalar<Bk: Backend>(t: Tensor<Bk, 1>) -> f64 {
    f64::from(t.into_scalar().elem::<f32>())
}

fn close(got: f64, want: f64, tol: f64) -> bool {
    (got - want).abs() <= tol * (1.0 + want.abs())
}

/// The extended batch of a case laid out as the trainer lays it out:
/// anchors, `k` similar slots per anchor, `k` different slots per anchor;
/// six feature blocks `[T_s; V_s; A_s; T_d; V_d; A_d]` over those slots.
fn fdcmdie_batch(case: &Json) -> (Vec<Vec<f64>>, Vec<bool>, usize, usize) {
    let b = case["b"].as_u64().expect("golden case") as usize;
    let k = case["k"].as_u64().expect("golden case") as usize;
    let anchors: Vec<Vec<Vec<f64>>> = case["anchors"]
        .as_array()
        .expect("golden case")
        .iter()
        .map(matrix)
        .collect();
    let d = anchors[0][0].len();
    let e = b * (1 + 2 * k);
    let mut slots: Vec<Option<Vec<Vec<f64>>>> = vec![None; e];
    let mut active = vec![false; e];
    for (i, a) in anchors.iter().enumerate() {
        slots[i] = Some(a.clone());
        active[i] = true;
    }
    for (key, slot) in [("similar", 0usize), ("different", 1)] {
        for (i, set) in case[key]
            .as_array()
            .expect("golden case")
            .iter()
            .enumerate()
        {
            for (q, f) in set.as_array().expect("golden case").iter().enumerate() {
                let s = if slot == 0 {
                    similar_slot(b, k, i, q)
                } else {
                    different_slot(b, k, k, i, q)
                };
                slots[s] = Some(matrix(f));
                active[s] = true;
            }
        }
    }
    let mut rows = Vec::with_capacity(6 * e);
    for kind in 0..6 {
        for slot in &slots {
            rows.push(match slot {
                Some(f) => f[kind].clone(),
                None => vec![0.0; d],
            });
        }
    }
    (rows, active, b, k)
}

#[test]
fn fdcmdie_contrastive_loss_matches_eqs_9_to_12() {
    for case in golden()["fdcmdie"].as_array().expect("golden case") {
        let (rows, active, b, k) = fdcmdie_batch(case);
        let pairs = build_pairs(b, k, k);
        let tau = case["tau"].as_f64().expect("golden case");
        let margin = case["margin"].as_f64().expect("golden case");
        let (nt, tri) = cl_loss(t2::<I>(&rows), &pairs, &active, b, tau, margin);
        let (nt, tri) = (scalar(nt), scalar(tri));
        let want_nt = case["nt_xent"].as_f64().expect("golden case");
        let want_tri = case["triplet"].as_f64().expect("golden case");
        assert!(close(nt, want_nt, 1e-4), "NT-Xent {nt} vs {want_nt}");
        assert!(close(tri, want_tri, 1e-4), "triplet {tri} vs {want_tri}");
        // The positives the loss uses: those whose slots are both present.
        let e = b * (1 + 2 * k);
        for (i, want) in floats(&case["positives_per_anchor"]).iter().enumerate() {
            let owner = |row: usize| {
                let slot = row % e;
                if slot < b {
                    slot
                } else if slot < b + b * k {
                    (slot - b) / k
                } else {
                    (slot - b - b * k) / k
                }
            };
            let used = pairs
                .positive
                .iter()
                .filter(|&&(a, p)| owner(a) == i && active[a % e] && active[p % e])
                .count();
            assert_eq!(used as f64, *want, "anchor {i}");
        }
    }
}

#[test]
fn every_anchor_has_two_plus_five_k_positive_pairs() {
    for k in [1usize, 3, 10, 50] {
        let b = 4;
        let pairs = build_pairs(b, k, k);
        assert_eq!(pairs.positive.len(), b * (2 + 5 * k), "k_cl = {k}");
        assert_eq!(pairs.negative.len(), b * (3 + 6 * k), "k_cl = {k}");
        assert_eq!(pairs.triplets.len(), b * 6);
    }
    // With all pairs, an anchor's slots hold its whole sets: k_cl = 10 on
    // MOSI gives 52 positives per anchor; members beyond the set are padding.
    let sets = ClSets {
        similar: vec![(1..11).collect(), vec![1]],
        different: vec![(20..30).collect(), (20..23).collect()],
    };
    let batch = all_members(&sets, &[0, 1], 10);
    assert_eq!(batch.per_anchor, 10);
    assert_eq!(batch.samples.len(), 2 * 21);
    assert_eq!(&batch.samples[2..12], &(1..11).collect::<Vec<_>>()[..]);
    // Anchor 1's similar set is only itself (no same-class peer): no slot.
    assert!(batch.active[12..22].iter().all(|&a| !a));
    assert_eq!(batch.active[22..32].iter().filter(|&&a| a).count(), 10);
    assert_eq!(batch.active[32..42].iter().filter(|&&a| a).count(), 3);
}

#[test]
fn mmic_supcon_leaves_anchor_and_copy_out_of_the_denominator() {
    for case in golden()["supcon"].as_array().expect("golden case") {
        let z = matrix(&case["z"]);
        let labels: Vec<usize> = floats(&case["labels"])
            .iter()
            .map(|&x| x as usize)
            .collect();
        let tau = case["tau"].as_f64().expect("golden case");
        let got = scalar(supcon_loss(t2::<I>(&z), &labels, tau, true));
        let want = case["loss"].as_f64().expect("golden case");
        assert!(close(got, want, 1e-4), "SCL {got} vs {want}");
    }
}

#[test]
fn mmdfn_focal_loss_with_its_class_weights() {
    for case in golden()["focal"].as_array().expect("golden case") {
        let logits = matrix(&case["logits"]);
        let labels: Vec<usize> = floats(&case["labels"])
            .iter()
            .map(|&x| x as usize)
            .collect();
        let weights: Vec<f32> = floats(&case["class_weights"])
            .iter()
            .map(|&w| w as f32)
            .collect();
        let gamma = case["gamma"].as_f64().expect("golden case");
        let got = scalar(focal_loss(t2::<I>(&logits), &labels, gamma, &weights));
        let want = case["loss"].as_f64().expect("golden case");
        assert!(close(got, want, 1e-4), "focal {got} vs {want}");
    }
}

fn dataset(names: &[&str], labels: &[usize]) -> ErcDataset {
    let dialogue = Dialogue {
        id: "d".into(),
        speakers: vec![0; labels.len()],
        text: vec![vec![0.0]; labels.len()],
        audio: vec![vec![0.0]; labels.len()],
        visual: vec![vec![0.0]; labels.len()],
        labels: labels.to_vec(),
    };
    ErcDataset {
        name: "t".into(),
        dims: [1, 1, 1],
        n_classes: names.len(),
        n_speakers: 1,
        class_names: names.iter().map(|s| s.to_string()).collect(),
        train: vec![dialogue],
        valid: Vec::new(),
        test: Vec::new(),
    }
}

#[test]
fn mmdfn_class_weights_are_its_inverse_frequencies() {
    let iemocap = dataset(&["hap", "sad", "neu", "ang", "exc", "fru"], &[0, 1, 2]);
    let w = class_weights(&iemocap, Scheme::InverseFrequency);
    let freq = [0.086747, 0.144406, 0.227883, 0.160585, 0.127711, 0.252668];
    for (got, f) in w.iter().zip(freq) {
        assert!(close(f64::from(*got), 1.0 / f, 1e-6), "{got} vs 1/{f}");
    }
    // Other datasets: 1/freq over the training utterances (mean ≈ C) …
    let other = dataset(&["a", "b", "c"], &[0, 0, 0, 1, 2, 2]);
    let w = class_weights(&other, Scheme::InverseFrequency);
    assert_eq!(w, vec![2.0, 6.0, 3.0]);
    // … and the balanced scheme N / (C · count) (mean ≈ 1).
    let w = class_weights(&other, Scheme::Balanced);
    assert_eq!(w, vec![2.0 / 3.0, 2.0, 1.0]);
    let mut params = sigsweep_worker::trial::Params::default();
    params.insert(
        "class_weight_scheme",
        sigsweep_worker::trial::Value::Text("sqrt".into()),
    );
    let err = MmicSettings::from_params(Variant::MmDfn, &params).expect_err("unknown scheme");
    assert!(err.to_string().contains("class_weight_scheme"), "{err}");
}

#[derive(Module, Debug)]
struct Two<B: Backend> {
    a: Linear<B>,
    b: Linear<B>,
}

/// `torch.nn.utils.clip_grad_norm_`: one norm over every gradient, every
/// gradient scaled by `max / (norm + 1e-6)` when that is below 1 — not each
/// tensor clipped on its own.
#[test]
fn gradient_clipping_uses_the_global_norm() {
    type A = Cpu;
    type Inner = <A as burn::tensor::backend::AutodiffBackend>::InnerBackend;
    let dev = Default::default();
    let model: Two<A> = Two {
        a: LinearConfig::new(2, 2).init(&dev),
        b: LinearConfig::new(2, 1).init(&dev),
    };
    // Gradients of the two weights: norms 5 and 12, global norm 13 (a
    // per-tensor clip at 6.5 would leave the first one alone).
    let mut grads = GradientsParams::new();
    let ga = vec![3.0f32, 4.0, 0.0, 0.0];
    let gb = vec![12.0f32, 0.0];
    grads.register(
        model.a.weight.id,
        Tensor::<Inner, 2>::from_data(TensorData::new(ga.clone(), [2, 2]), &dev),
    );
    grads.register(
        model.b.weight.id,
        Tensor::<Inner, 2>::from_data(TensorData::new(gb.clone(), [2, 1]), &dev),
    );
    let norm = grad_norm::<A, _>(&model, &grads);
    assert!(close(norm, 13.0, 1e-6), "{norm}");
    clip_grad_norm::<A, _>(&model, &mut grads, 6.5);
    let ratio = 6.5 / (13.0 + 1e-6);
    for (id, want, shape) in [
        (model.a.weight.id, &ga, [2, 2]),
        (model.b.weight.id, &gb, [2, 1]),
    ] {
        let got = grads.get::<Inner, 2>(id).expect("gradient");
        assert_eq!(got.dims(), shape);
        for (y, x) in got.into_data().iter::<f32>().zip(want) {
            let x = f64::from(*x) * ratio;
            assert!(close(f64::from(y), x, 1e-5), "{y} vs {x}");
        }
    }
    assert!(close(grad_norm::<A, _>(&model, &grads), 6.5, 1e-5));
    // Below the limit nothing changes.
    clip_grad_norm::<A, _>(&model, &mut grads, 100.0);
    assert!(close(grad_norm::<A, _>(&model, &grads), 6.5, 1e-5));
}
