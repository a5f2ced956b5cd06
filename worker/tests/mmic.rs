//! MMIC / MM-DFN: components against hand computations, gradient routing
//! of the detached SCL copy, and short training runs on synthetic data.

use std::sync::atomic::AtomicBool;
use std::time::Instant;

use burn::module::Param;
use burn::nn::Linear;
use burn::prelude::*;

use sigsweep_worker::backend::Cpu;
use sigsweep_worker::models::mmic::graph::{
    DeepGcn, edge_weights, graph_mask, normalized_adjacency,
};
use sigsweep_worker::models::mmic::losses::{
    covariance, cpc_loss, gaussian_lld, gmm_entropy, logdet_spd, supcon_loss,
};
use sigsweep_worker::params::{Params, Value};
use sigsweep_worker::trainer::{DatasetRequest, Split, TrialRequest, run_trial};

type B = Cpu;
type I = burn::backend::NdArray<f32>;

fn dev() -> burn::backend::ndarray::NdArrayDevice {
    Default::default()
}

fn t2<Bk: Backend>(rows: &[Vec<f64>]) -> Tensor<Bk, 2> {
    let r = rows.len();
    let c = rows[0].len();
    let flat: Vec<f32> = rows.iter().flatten().map(|&x| x as f32).collect();
    Tensor::from_data(TensorData::new(flat, [r, c]), &Default::default())
}

fn to_vec<Bk: Backend, const D: usize>(t: Tensor<Bk, D>) -> Vec<f64> {
    t.into_data()
        .convert::<f32>()
        .iter::<f32>()
        .map(f64::from)
        .collect()
}

fn close(a: f64, b: f64, tol: f64) -> bool {
    (a - b).abs() <= tol * (1.0 + b.abs())
}

fn assert_all_close(got: &[f64], want: &[f64], tol: f64) {
    assert_eq!(got.len(), want.len());
    for (i, (g, w)) in got.iter().zip(want).enumerate() {
        assert!(close(*g, *w, tol), "element {i}: got {g}, want {w}");
    }
}

fn cos(a: &[f64], b: &[f64]) -> f64 {
    let dot: f64 = a.iter().zip(b).map(|(x, y)| x * y).sum();
    let na = a.iter().map(|x| x * x).sum::<f64>().sqrt();
    let nb = b.iter().map(|x| x * x).sum::<f64>().sqrt();
    dot / (na * nb)
}

fn weight(a: &[f64], b: &[f64]) -> f64 {
    1.0 - (0.99999 * cos(a, b)).acos() / std::f64::consts::PI
}

#[test]
fn edge_weights_match_formula() {
    let x = vec![
        vec![1.0, 0.0],
        vec![0.0, 2.0],
        vec![1.0, 1.0],
        vec![-1.0, 0.5],
    ];
    let got = to_vec(edge_weights(t2::<I>(&x)));
    let mut want = Vec::new();
    for a in &x {
        for b in &x {
            want.push(weight(a, b));
        }
    }
    assert_all_close(&got, &want, 1e-4);
    // Self loops ≈ 0.99858, orthogonal pairs 0.5.
    assert!(close(got[0], 0.99858, 1e-4));
    assert!(close(got[1], 0.5, 1e-5));
}

#[test]
fn graph_mask_and_normalised_adjacency() {
    // Two dialogues: utterances 0,1 in dialogue 0, utterance 2 in dialogue 1.
    let dlg = [0usize, 0, 1];
    let n = 3;
    let m = graph_mask(&dlg);
    let at = |i: usize, j: usize| m[i * 3 * n + j];
    // intra-modal (audio block): 0-1 connected, 0-2 not, self loops.
    assert_eq!(at(0, 1), 1.0);
    assert_eq!(at(0, 0), 1.0);
    assert_eq!(at(0, 2), 0.0);
    assert_eq!(at(2, 2), 1.0);
    // inter-modal: audio 0 – visual 0 – text 0 only.
    assert_eq!(at(0, n), 1.0);
    assert_eq!(at(0, 2 * n), 1.0);
    assert_eq!(at(0, n + 1), 0.0);
    assert_eq!(at(2 * n + 1, n + 1), 1.0);
    let edges: f32 = m.iter().sum();
    // per modality 4 + 1 intra edges, 6 ordered modality pairs × 3 utterances.
    assert_eq!(edges, 3.0 * 5.0 + 6.0 * 3.0);

    let x: Vec<Vec<f64>> = (0..3 * n)
        .map(|i| vec![1.0 + i as f64, (i as f64 * 1.7).sin(), 0.5 - 0.3 * i as f64])
        .collect();
    let mask = Tensor::<I, 2>::from_data(
        TensorData::new(m.clone(), [3 * n, 3 * n]),
        &Default::default(),
    );
    let got = to_vec(normalized_adjacency(t2::<I>(&x), mask));
    let nn = 3 * n;
    let a: Vec<f64> = (0..nn * nn)
        .map(|k| f64::from(m[k]) * weight(&x[k / nn], &x[k % nn]))
        .collect();
    let deg: Vec<f64> = (0..nn)
        .map(|i| a[i * nn..(i + 1) * nn].iter().sum())
        .collect();
    let want: Vec<f64> = (0..nn * nn)
        .map(|k| a[k] / (deg[k / nn].sqrt() * deg[k % nn].sqrt()))
        .collect();
    assert_all_close(&got, &want, 1e-4);
}

#[test]
fn one_graph_layer_matches_hand_computation() {
    // Explicit weights (no RNG draw: the backend RNG is process-wide and
    // other tests check determinism).
    let w_rows = vec![
        vec![0.3, -0.2],
        vec![0.1, 0.4],
        vec![-0.5, 0.25],
        vec![0.05, 0.6],
    ];
    let conv = Linear::<I> {
        weight: Param::from_tensor(t2::<I>(&w_rows)),
        bias: None,
    };
    let w: Vec<f64> = w_rows.iter().flatten().copied().collect(); // [4, 2] row-major
    let adj = vec![vec![0.6, 0.4], vec![0.4, 0.6]];
    let hhat = vec![vec![1.0, -1.0], vec![0.5, 2.0]];
    let h0 = vec![vec![0.2, 0.3], vec![-0.1, 0.7]];
    let (alpha, lambda, k) = (0.2, 0.5, 3.0);
    let theta = (lambda / k + 1.0f64).ln();
    let got = to_vec(DeepGcn::conv(
        &conv,
        t2::<I>(&adj).matmul(t2::<I>(&hhat)),
        t2::<I>(&h0),
        alpha,
        theta,
    ));
    let mut want = Vec::new();
    for i in 0..2 {
        let s: Vec<f64> = (0..2)
            .map(|c| (0..2).map(|j| adj[i][j] * hhat[j][c]).sum())
            .collect();
        let support = [s[0], s[1], h0[i][0], h0[i][1]];
        for c in 0..2 {
            let lin: f64 = (0..4).map(|r| support[r] * w[r * 2 + c]).sum();
            want.push(theta * lin + (1.0 - theta) * ((1.0 - alpha) * s[c] + alpha * h0[i][c]));
        }
    }
    assert_all_close(&got, &want, 1e-5);
}

/// SupCon reference over explicit views (rows normalised), mean over
/// anchors with positives. `copies`: the views are `[z; z']` of `n` rows
/// each, and the denominator of anchor `a` leaves out `a` and its copy
/// `(a + n) mod 2n` (MMIC eq. 8, `A(i) = I − {i, N + i}`).
fn scl_ref(views: &[Vec<f64>], labels: &[usize], tau: f64, copies: Option<usize>) -> f64 {
    let norm = |v: &Vec<f64>| {
        let n = v.iter().map(|x| x * x).sum::<f64>().sqrt();
        v.iter().map(|x| x / n).collect::<Vec<_>>()
    };
    let z: Vec<Vec<f64>> = views.iter().map(norm).collect();
    let m = z.len();
    let s = |a: usize, b: usize| z[a].iter().zip(&z[b]).map(|(x, y)| x * y).sum::<f64>() / tau;
    let mut total = 0.0;
    let mut anchors = 0;
    for a in 0..m {
        let copy = copies.map(|n| (a + n) % m);
        let denom: f64 = (0..m)
            .filter(|&k| k != a && Some(k) != copy)
            .map(|k| s(a, k).exp())
            .sum();
        let pos: Vec<usize> = (0..m)
            .filter(|&p| p != a && labels[p] == labels[a])
            .collect();
        if pos.is_empty() {
            continue;
        }
        let l: f64 = pos
            .iter()
            .map(|&p| (s(a, p).exp() / denom).ln())
            .sum::<f64>();
        total += -l / pos.len() as f64;
        anchors += 1;
    }
    total / anchors as f64
}

#[test]
fn supcon_with_and_without_copy() {
    let z = vec![
        vec![1.0, 0.2, -0.3],
        vec![0.8, 0.1, 0.0],
        vec![-0.5, 1.0, 0.4],
        vec![0.0, -0.7, 1.0],
    ];
    let labels = [0usize, 0, 1, 2];
    let tau = 0.5;
    let without = to_vec(supcon_loss(t2::<I>(&z), &labels, tau, false))[0];
    assert!(
        close(without, scl_ref(&z, &labels, tau, None), 1e-4),
        "{without}"
    );
    let with = to_vec(supcon_loss(t2::<I>(&z), &labels, tau, true))[0];
    let views: Vec<Vec<f64>> = z.iter().chain(z.iter()).cloned().collect();
    let labels2: Vec<usize> = labels.iter().chain(labels.iter()).copied().collect();
    assert!(
        close(with, scl_ref(&views, &labels2, tau, Some(4)), 1e-4),
        "{with}"
    );
}

#[test]
fn no_gradient_through_the_detached_copy() {
    let z0 = vec![
        vec![1.0, 0.2, -0.3],
        vec![0.8, 0.1, 0.0],
        vec![-0.5, 1.0, 0.4],
    ];
    let labels = [0usize, 0, 1];
    let tau = 0.5;
    let zt: Tensor<B, 2> = t2::<B>(&z0).require_grad();
    let loss = supcon_loss(zt.clone(), &labels, tau, true);
    let grads = loss.backward();
    let g = to_vec(zt.grad(&grads).expect("gradient"));
    let labels2: Vec<usize> = labels.iter().chain(labels.iter()).copied().collect();
    // Finite differences moving only the live views (copy fixed at z0) vs
    // moving both.
    let eps = 1e-4;
    let mut fd_live = Vec::new();
    let mut fd_both = Vec::new();
    for i in 0..3 {
        for j in 0..3 {
            let f = |delta: f64, both: bool| {
                let mut live = z0.clone();
                live[i][j] += delta;
                let copy = if both { live.clone() } else { z0.clone() };
                let views: Vec<Vec<f64>> = live.into_iter().chain(copy).collect();
                scl_ref(&views, &labels2, tau, Some(3))
            };
            fd_live.push((f(eps, false) - f(-eps, false)) / (2.0 * eps));
            fd_both.push((f(eps, true) - f(-eps, true)) / (2.0 * eps));
        }
    }
    for k in 0..9 {
        assert!(
            (g[k] - fd_live[k]).abs() < 2e-3,
            "grad {k}: {} vs live-only {}",
            g[k],
            fd_live[k]
        );
    }
    let diff: f64 = fd_live
        .iter()
        .zip(&fd_both)
        .map(|(a, b)| (a - b).abs())
        .sum();
    assert!(diff > 1e-2, "the copy makes no difference: test is vacuous");
}

#[test]
fn cpc_matches_hand_computation() {
    let h = vec![vec![1.0, 0.0], vec![0.6, 0.8], vec![-1.0, 1.0]];
    let p = vec![vec![0.5, 0.5], vec![0.0, 2.0], vec![-1.0, 0.2]];
    let got = to_vec(cpc_loss(t2::<I>(&h), t2::<I>(&p)))[0];
    let mut want = 0.0;
    for i in 0..3 {
        let s: Vec<f64> = (0..3).map(|j| cos(&h[i], &p[j])).collect();
        let lse = s.iter().map(|x| x.exp()).sum::<f64>().ln();
        want -= s[i] - lse;
    }
    want /= 3.0;
    assert!(close(got, want, 1e-5), "{got} vs {want}");
}

#[test]
fn ba_log_likelihood_and_gmm_entropy() {
    let mu = vec![vec![0.0, 1.0], vec![0.5, -0.5]];
    let lv = vec![vec![0.0, 0.5], vec![-1.0, 0.2]];
    let y = vec![vec![1.0, 1.0], vec![0.0, 0.0]];
    let got = to_vec(gaussian_lld(t2::<I>(&mu), t2::<I>(&lv), t2::<I>(&y)))[0];
    let mut want = 0.0;
    for i in 0..2 {
        for d in 0..2 {
            want += -0.5 * ((y[i][d] - mu[i][d]).powi(2) * (-lv[i][d]).exp() + lv[i][d]);
        }
    }
    want /= 2.0;
    assert!(close(got, want, 1e-5), "{got} vs {want}");

    // log det of [[4, 2], [2, 3]] = ln 8; of a 3×3 SPD matrix.
    let ld = to_vec(logdet_spd(t2::<I>(&[vec![4.0, 2.0], vec![2.0, 3.0]])))[0];
    assert!(close(ld, 8f64.ln(), 1e-5));
    let m3 = vec![
        vec![2.0, 0.5, 0.1],
        vec![0.5, 1.5, 0.3],
        vec![0.1, 0.3, 1.0],
    ];
    let det3: f64 = 2.0 * (1.5 * 1.0 - 0.09) - 0.5 * (0.5 * 1.0 - 0.03) + 0.1 * (0.15 - 0.15);
    assert!(close(to_vec(logdet_spd(t2::<I>(&m3)))[0], det3.ln(), 1e-5));

    // Covariance and entropy ¼ Σ_g log det(Σ_g + εI).
    let g1 = vec![
        vec![0.0, 0.0],
        vec![1.0, 0.0],
        vec![0.0, 2.0],
        vec![1.0, 2.0],
    ];
    let cov = to_vec(covariance(t2::<I>(&g1)));
    assert_all_close(&cov, &[0.25, 0.0, 0.0, 1.0], 1e-6);
    let g2 = vec![vec![1.0, 1.0], vec![-1.0, 1.0], vec![0.0, -2.0]];
    let small = vec![vec![0.0, 1.0]]; // fewer than d + 1 rows: skipped
    let eps = 1e-4;
    let h = to_vec(
        gmm_entropy(vec![t2::<I>(&g1), t2::<I>(&g2), t2::<I>(&small)], eps).expect("entropy"),
    )[0];
    // g2: mean (0, 0); cov = [[2/3, 0], [0, 2]].
    let want = 0.25 * (((0.25 + eps) * (1.0 + eps)).ln() + ((2.0 / 3.0 + eps) * (2.0 + eps)).ln());
    assert!(close(h, want, 1e-4), "{h} vs {want}");
}

fn request(model: &str, seed: u64, extra: &[(&str, Value)]) -> TrialRequest {
    let mut params = Params::default();
    for (k, v) in [
        ("epochs", Value::Int(12)),
        ("batch_size", Value::Int(8)),
        ("lr", Value::Float(1e-3)),
        ("layers", Value::Int(4)),
        ("hidden", Value::Int(64)),
        ("graph_hidden", Value::Int(32)),
        ("dropout", Value::Float(0.1)),
    ] {
        params.insert(k, v);
    }
    for (k, v) in extra {
        params.insert(k, v.clone());
    }
    TrialRequest {
        trial_id: "t".into(),
        seed,
        model: model.into(),
        params,
        dataset: DatasetRequest {
            kind: "synthetic".into(),
            generator: "erc".into(),
            path: String::new(),
            params: serde_json::json!({ "preset": "small", "n_train": 60, "n_test": 20 }),
            fold: None,
        },
        select: "f1_weighted".into(),
        select_higher_is_better: true,
        select_split: Split::Valid,
        checkpoint: None,
        program: None,
    }
}

fn majority_f1(seed: u64) -> f64 {
    let data = sigsweep_data::synthetic::synthetic_erc(
        &serde_json::from_value(
            serde_json::json!({ "preset": "small", "n_train": 60, "n_test": 20 }),
        )
        .expect("test setup"),
        seed,
    )
    .expect("test setup");
    let truth: Vec<usize> = data
        .test
        .iter()
        .flat_map(|d| d.labels.iter().copied())
        .collect();
    let mut counts = vec![0usize; data.n_classes];
    for &t in &truth {
        counts[t] += 1;
    }
    let maj = (0..data.n_classes)
        .max_by_key(|&c| counts[c])
        .expect("test setup");
    let pred = vec![maj; truth.len()];
    sigsweep_data::metrics::f1_weighted(&truth, &pred, data.n_classes)
}

#[test]
fn mmic_learns_synthetic_dialogues() {
    let start = Instant::now();
    let req = request(
        "mmic",
        3,
        &[
            ("alpha", Value::Float(1.0)),
            ("beta", Value::Float(0.05)),
            ("zeta", Value::Float(0.05)),
        ],
    );
    let cancel = AtomicBool::new(false);
    let out = run_trial(&req, Default::default(), &mut |_| {}, &cancel).expect("trial");
    let losses: Vec<f64> = out.epochs.iter().map(|e| e.train_loss).collect();
    eprintln!(
        "mmic losses {losses:?}, test {:?}, {:.1}s",
        out.test_metrics.get("f1_weighted"),
        start.elapsed().as_secs_f64()
    );
    let first = losses[..2].iter().sum::<f64>();
    let last = losses[losses.len() - 2..].iter().sum::<f64>();
    assert!(last < first, "loss did not decrease: {losses:?}");
    let f1 = out.test_metrics["f1_weighted"];
    let base = majority_f1(3);
    assert!(f1 > base + 0.15, "weighted F1 {f1} vs majority {base}");
}

#[test]
fn mmdfn_baseline_learns_and_is_deterministic() {
    let req = request("mmdfn", 5, &[("epochs", Value::Int(10))]);
    let cancel = AtomicBool::new(false);
    let a = run_trial(&req, Default::default(), &mut |_| {}, &cancel).expect("trial");
    let losses: Vec<f64> = a.epochs.iter().map(|e| e.train_loss).collect();
    assert!(
        losses.last().expect("test setup") < &losses[0],
        "{losses:?}"
    );
    let f1 = a.test_metrics["f1_weighted"];
    let base = majority_f1(5);
    assert!(f1 > base + 0.15, "weighted F1 {f1} vs majority {base}");
    let mut short = req.clone();
    short.params.insert("epochs", Value::Int(2));
    let b1 = run_trial(&short, Default::default(), &mut |_| {}, &cancel).expect("trial");
    let b2 = run_trial(&short, Default::default(), &mut |_| {}, &cancel).expect("trial");
    assert_eq!(b1.epochs, b2.epochs);
    assert_eq!(b1.test_metrics, b2.test_metrics);
}

#[test]
fn rejects_bad_params() {
    let cancel = AtomicBool::new(false);
    let req = request("mmic", 1, &[("text_encoder", Value::Text("rnn".into()))]);
    assert!(run_trial(&req, Default::default(), &mut |_| {}, &cancel).is_err());
    let req = request("mmic", 1, &[("speaker_weights", Value::Text("1-2".into()))]);
    assert!(run_trial(&req, Default::default(), &mut |_| {}, &cancel).is_err());
    let req = request("mmic", 1, &[("losses", Value::Text("scl+mi".into()))]);
    assert!(run_trial(&req, Default::default(), &mut |_| {}, &cancel).is_err());
    let req = request(
        "mmic",
        1,
        &[
            ("l2", Value::Float(1e-3)),
            ("weight_decay", Value::Float(1e-4)),
        ],
    );
    assert!(run_trial(&req, Default::default(), &mut |_| {}, &cancel).is_err());
}

/// IEMOCAP-shaped epoch timing: `cargo test --release -p sigsweep-worker
/// --test mmic -- --ignored --nocapture`.
#[test]
#[ignore]
fn bench_iemocap_epoch() {
    use sigsweep_worker::models::mmic::{MmicWorkload, bench_params};
    use sigsweep_worker::trainer::Workload;
    let data = sigsweep_data::synthetic::synthetic_erc(
        &serde_json::from_value(serde_json::json!({ "preset": "iemocap" })).expect("test setup"),
        0,
    )
    .expect("test setup");
    for (name, zero) in [("mmic", false), ("mmdfn-equivalent", true)] {
        let mut params = bench_params();
        if zero {
            for k in ["alpha", "beta", "zeta"] {
                params.insert(k, Value::Float(0.0));
            }
        }
        let req = TrialRequest {
            params,
            ..request("mmic", 0, &[])
        };
        let mut w = MmicWorkload::<B>::new(&req, data.clone(), &dev()).expect("test setup");
        let cancel = AtomicBool::new(false);
        for epoch in 1..=2 {
            let t = Instant::now();
            let loss = w.train_epoch(epoch, &cancel).expect("test setup");
            let train_s = t.elapsed().as_secs_f64();
            let t = Instant::now();
            let m = w.evaluate(Split::Test).expect("test setup");
            eprintln!(
                "{name} epoch {epoch}: loss {loss:.4} train {train_s:.2}s eval {:.2}s test f1 {:.3}",
                t.elapsed().as_secs_f64(),
                m["f1_weighted"]
            );
        }
    }
}

/// Data parallel over 2 and 3 replicas (threads) equals the plain trial:
/// whole dialogues per replica for the task loss, and the batch-wide
/// SCL / CPC / BA losses computed once on the gathered features with their
/// gradients sent back to every replica. Covers all auxiliary losses with
/// gradient clipping, class weights with the focal loss, uneven shards
/// (batches of 8 dialogues over 3 replicas, and a short last batch), and
/// the MM-DFN baseline (task loss only). Dropout 0 (replicas draw their own
/// masks).
#[test]
fn data_parallel_matches_the_plain_trial() {
    use sigsweep_worker::backend::BackendKind;
    use sigsweep_worker::parallel::run_data_parallel;
    let cancel = AtomicBool::new(false);
    let all = [
        ("alpha", Value::Float(1.0)),
        ("beta", Value::Float(0.05)),
        ("zeta", Value::Float(0.05)),
        ("dropout", Value::Float(0.0)),
        ("epochs", Value::Int(3)),
    ];
    type Case<'a> = (&'a str, usize, Vec<(&'a str, Value)>);
    let cases: Vec<Case> = vec![
        ("mmic", 2, vec![("grad_clip", Value::Float(1.0))]),
        (
            "mmic",
            3,
            vec![
                ("class_weight", Value::Bool(true)),
                ("focal_gamma", Value::Float(2.0)),
            ],
        ),
        ("mmdfn", 2, vec![]),
        (
            "mmdfn",
            2,
            vec![("rnn_padding", Value::Text("unpacked".into()))],
        ),
    ];
    for (model, replicas, extra) in cases {
        let mut params: Vec<(&str, Value)> = if model == "mmic" {
            all.to_vec()
        } else {
            all[3..].to_vec()
        };
        params.extend(extra.iter().cloned());
        let req = request(model, 7, &params);
        assert!(sigsweep_worker::parallel::supports_data_parallel(model));
        let what = format!("{model} over {replicas} replicas {extra:?}");
        let plain = run_trial(&req, BackendKind::Cpu, &mut |_| {}, &cancel).expect("plain");
        let dp = run_data_parallel(&req, BackendKind::Cpu, replicas, &mut |_| {}, &cancel)
            .expect("data parallel");
        assert_eq!(dp.selected_epoch, plain.selected_epoch, "{what}");
        assert_eq!(dp.epochs.len(), 3, "{what}");
        for (ga, gb) in dp.epochs.iter().zip(&plain.epochs) {
            let (dl, dv, pl, pv) = (&ga.train_loss, &ga.valid, &gb.train_loss, &gb.valid);
            assert!(
                close(*dl, *pl, 1e-4 * pl.abs().max(1.0)),
                "{what}: loss {dl} vs {pl}"
            );
            for (k, v) in pv {
                assert!(close(dv[k], *v, 1e-4), "{what}: valid {k} {} vs {v}", dv[k]);
            }
        }
        for (k, v) in &plain.test_metrics {
            let d = dp.test_metrics[k];
            assert!(close(d, *v, 1e-4), "{what}: test {k} {d} vs {v}");
        }
        let losses: Vec<f64> = plain.epochs.iter().map(|e| e.train_loss).collect();
        assert!(losses[2] < losses[0], "{what}: did not train: {losses:?}");
    }
}

/// Selecting epochs on a validation split that does not exist is an error
/// naming the keys; selecting on test leaves the result without validation
/// metrics (not zeros).
#[test]
fn an_empty_validation_split_is_never_scored() {
    use std::collections::BTreeMap;

    use sigsweep_worker::backend::BackendKind;
    let cancel = AtomicBool::new(false);
    let mut req = request("mmdfn", 1, &[("epochs", Value::Int(2))]);
    req.dataset.params =
        serde_json::json!({ "preset": "small", "n_train": 20, "n_test": 10, "valid_rate": 0.0 });
    let err = run_trial(&req, BackendKind::Cpu, &mut |_| {}, &cancel).expect_err("no valid split");
    let text = err.to_string();
    assert!(text.contains("select_split"), "{text}");
    assert!(err.is_deterministic(), "{text}");
    req.select_split = Split::Test;
    let mut reported = Vec::new();
    let out = run_trial(
        &req,
        BackendKind::Cpu,
        &mut |r| reported.push(r.valid_metrics.clone()),
        &cancel,
    )
    .expect("selection on test");
    assert!(out.valid_metrics.is_empty(), "{:?}", out.valid_metrics);
    assert!(out.test_metrics.contains_key("f1_weighted"));
    assert!(reported.iter().all(BTreeMap::is_empty));
}

/// A training or a test split without examples fails the trial, naming
/// the data and the split: a model trained on nothing, or scored on
/// nothing, reports numbers that mean nothing (an MMSA file with an empty
/// `train` trained for "0.000 s" and was reported).
#[test]
fn an_empty_training_or_test_split_fails_the_trial() {
    use sigsweep_worker::models::check_splits;
    use sigsweep_worker::trial::data::{LoadedDataset, load_dataset};
    let req = request("mmdfn", 1, &[]);
    let whole = load_dataset(&req.dataset, req.seed, 0.1).expect("synthetic data");
    check_splits(&req, &whole).expect("every split has examples");
    for split in ["training", "test"] {
        let mut data = whole.clone();
        let LoadedDataset::Erc(d) = &mut data else {
            panic!("dialogues expected")
        };
        match split {
            "training" => d.train.clear(),
            _ => d.test.clear(),
        }
        let err = check_splits(&req, &data).expect_err(split);
        let text = err.to_string();
        assert!(
            text.contains(&format!("no examples in its {split} split"))
                && text.contains("synthetic `erc` data"),
            "{text}"
        );
        assert!(err.is_deterministic(), "{text}");
    }
}

/// `rnn_padding = "unpacked"` runs the recurrences through the padding, as
/// MM-DFN's GRUs on padded tensors: a dialogue's outputs then depend on the
/// longest dialogue of its batch, which packed sequences never do.
#[test]
fn unpacked_recurrences_see_the_batch_padding() {
    use sigsweep_worker::models::mmic::{HostBatch, MmicNet, NetConfig};
    // Building the network draws from the backend's process-wide RNG: hold
    // the training lock, or a trial of another test (the determinism
    // checks) may see its draws interleaved with these.
    let _guard = sigsweep_worker::backend::training_guard();
    let data = sigsweep_data::synthetic::synthetic_erc(
        &serde_json::from_value(
            serde_json::json!({ "preset": "small", "n_train": 12, "n_test": 2 }),
        )
        .expect("params"),
        4,
    )
    .expect("data");
    let mut dialogues: Vec<&sigsweep_data::erc::Dialogue> = data.train.iter().collect();
    dialogues.sort_by_key(|d| d.len());
    let (short, long) = (dialogues[0], dialogues[dialogues.len() - 1]);
    assert!(short.len() < long.len());
    let cfg = NetConfig {
        dims: data.dims,
        n_classes: data.n_classes,
        hidden: 8,
        graph_hidden: 4,
        layers: 2,
        text_lstm: false,
        text_layers: 2,
        dropout: 0.0,
        gammas: [3.0, 0.0, 1.0],
        gcn_alpha: 0.2,
        gcn_lambda: 0.5,
        ent_dim: 2,
    };
    let net = MmicNet::<I>::new(&cfg, &dev());
    let logits = |hb: &HostBatch| {
        let out = to_vec(net.forward(hb, &cfg, &dev()).logits);
        out[..short.len() * data.n_classes].to_vec()
    };
    let alone = HostBatch::new(&[short], data.dims);
    let batched = HostBatch::new(&[short, long], data.dims);
    assert_all_close(&logits(&batched), &logits(&alone), 1e-5);
    let unpacked_alone = logits(&alone.unpacked(0));
    let unpacked = logits(&batched.unpacked(0));
    let moved = unpacked
        .iter()
        .zip(&unpacked_alone)
        .map(|(a, b)| (a - b).abs())
        .fold(0.0, f64::max);
    assert!(moved > 1e-4, "padding changed nothing ({moved})");
}
