//! The weights file of `mmdfn` and `mmic`: MM-DFN's PyTorch `state_dict()`
//! names and layouts (its `DialogueGNNModel` with `graph_type = GDF`,
//! `base_model = LSTM`, `mm_fusion_mthd = concat_subsequently`,
//! `use_crn_speaker`, `reason_flag`), so that MM-DFN's code loads an `mmdfn`
//! file with `load_state_dict(strict=True)` and `sigsweep predict` reads
//! MM-DFN's trained weights (saved as safetensors).
//!
//! | ours (burn path)                        | MM-DFN                                  | layout |
//! |-----------------------------------------|-----------------------------------------|--------|
//! | `net.text_in`, `net.audio_in`, `net.visual_in` | `linear_l`, `linear_a`, `linear_v` | `Linear` |
//! | `net.text_rnn.layers.{l}.{fwd,bwd}`     | `lstm_l.*_l{l}`, `*_l{l}_reverse` (its GRU) | `ih`/`hh` → `weight_ih`/`bias_ih`/`weight_hh`/`bias_hh` |
//! | `net.party.layers.{l}.{fwd,bwd}`        | `rnn_parties.*_l{l}[_reverse]`          | same |
//! | `net.gcn.fc0`                           | `graph_model.graph_net.fcs.0`           | `Linear` |
//! | `net.gcn.cell` (LSTM)                   | `graph_model.graph_net.rnn.*_l0`        | `bias_hh_l0` written as zeros, added to `bias_ih_l0` on reading |
//! | `net.gcn.convs.{i}.weight`              | `graph_model.graph_net.convs.{i}.weight` | `[in, out]` as MM-DFN's `GraphConvolution` |
//! | `net.classifier`                        | `smax_fc`                               | `Linear` |
//! | `net.cpc.{i}`, `mi.heads.{h}.*` (`mmic` only) | `cpc.{i}`, `mi.heads.{h}.*`      | `Linear` |
//!
//! MM-DFN's `state_dict` also holds modules its GDF forward never calls
//! (`att_model`, `gatedatt`, `graph_model.{a,v,l}_fc`, `feature_fc`,
//! `final_fc` and the embeddings): they are written as zeros of MM-DFN's
//! shapes; on reading they must be there (strict names) and are ignored,
//! whatever their shape. A text LSTM (`text_encoder = "lstm"`,
//! `mmic` only) is written under `lstm_l` with LSTM shapes.

use burn::prelude::*;

use super::config::Variant;
use super::net::Mmic;
use crate::trial::{Named, TrainError, Weights};

/// MM-DFN's `max_seq_len` (the shape of its unused `att_model.scalar`).
const MAX_SEQ_LEN: usize = 200;

/// How one tensor of the file relates to the model.
enum Op {
    /// The same tensor (already in PyTorch's layout).
    Same(String),
    /// The transpose (the graph convolutions).
    Transposed(String),
    /// A PyTorch LSTM's `bias_hh`, which our cell folds into `bias_ih` (the
    /// burn path of that bias): zeros on writing, added on reading.
    FoldedInto(String),
    /// A tensor MM-DFN has and its forward does not use (zeros; ignored).
    Unused(Vec<usize>),
}

/// Every tensor of the file, in terms of `own` (the model's tensors by burn
/// path, [`Weights::from_module`]).
fn links(
    own: &Weights,
    variant: Variant,
    n_speakers: usize,
) -> Result<Vec<(String, Op)>, TrainError> {
    let has = |k: &str| own.tensors.contains_key(k);
    let shape = |k: &str| {
        own.tensors
            .get(k)
            .map(|t| t.shape.clone())
            .ok_or_else(|| TrainError::Backend(format!("the model has no `{k}`")))
    };
    let mut out: Vec<(String, Op)> = Vec::new();
    let linear = |out: &mut Vec<(String, Op)>, ours: &str, theirs: &str| {
        for p in ["weight", "bias"] {
            out.push((format!("{theirs}.{p}"), Op::Same(format!("{ours}.{p}"))));
        }
    };
    let cell = |out: &mut Vec<(String, Op)>, ours: &str, theirs: &str, sfx: &str| {
        out.push((
            format!("{theirs}.weight_ih_{sfx}"),
            Op::Same(format!("{ours}.ih.weight")),
        ));
        out.push((
            format!("{theirs}.weight_hh_{sfx}"),
            Op::Same(format!("{ours}.hh.weight")),
        ));
        out.push((
            format!("{theirs}.bias_ih_{sfx}"),
            Op::Same(format!("{ours}.ih.bias")),
        ));
        let hh_bias = format!("{ours}.hh.bias");
        out.push((
            format!("{theirs}.bias_hh_{sfx}"),
            if has(&hh_bias) {
                Op::Same(hh_bias)
            } else {
                Op::FoldedInto(format!("{ours}.ih.bias"))
            },
        ));
    };
    linear(&mut out, "net.audio_in", "linear_a");
    linear(&mut out, "net.visual_in", "linear_v");
    linear(&mut out, "net.text_in", "linear_l");
    for (ours, theirs) in [("net.text_rnn", "lstm_l"), ("net.party", "rnn_parties")] {
        let mut l = 0;
        while has(&format!("{ours}.layers.{l}.fwd.ih.weight")) {
            cell(
                &mut out,
                &format!("{ours}.layers.{l}.fwd"),
                theirs,
                &format!("l{l}"),
            );
            cell(
                &mut out,
                &format!("{ours}.layers.{l}.bwd"),
                theirs,
                &format!("l{l}_reverse"),
            );
            l += 1;
        }
    }
    let g = "graph_model.graph_net";
    linear(&mut out, "net.gcn.fc0", &format!("{g}.fcs.0"));
    cell(&mut out, "net.gcn.cell", &format!("{g}.rnn"), "l0");
    let mut i = 0;
    while has(&format!("net.gcn.convs.{i}.weight")) {
        out.push((
            format!("{g}.convs.{i}.weight"),
            Op::Transposed(format!("net.gcn.convs.{i}.weight")),
        ));
        i += 1;
    }
    linear(&mut out, "net.classifier", "smax_fc");
    if variant == Variant::Mmic {
        for k in own.tensors.keys() {
            if let Some(rest) = k.strip_prefix("net.cpc.") {
                out.push((format!("cpc.{rest}"), Op::Same(k.clone())));
            } else if k.starts_with("mi.") {
                out.push((k.clone(), Op::Same(k.clone())));
            }
        }
    }
    // The modules MM-DFN builds and its GDF forward never calls.
    let h = shape("net.text_in.weight")?[0];
    let gh = shape("net.gcn.fc0.weight")?[0];
    let c = shape("net.classifier.weight")?[0];
    let mut unused = |name: &str, s: &[usize]| out.push((name.to_string(), Op::Unused(s.to_vec())));
    unused("att_model.scalar.weight", &[MAX_SEQ_LEN, h]);
    unused("att_model.matchatt.transform.weight", &[h, h]);
    unused("att_model.matchatt.transform.bias", &[h]);
    unused("att_model.simpleatt.scalar.weight", &[1, h]);
    unused("att_model.att.weight", &[2 * h]);
    for p in ["w_k", "w_q", "proj"] {
        unused(&format!("att_model.att.{p}.weight"), &[h, h]);
        unused(&format!("att_model.att.{p}.bias"), &[h]);
    }
    unused("graph_model.modal_embeddings.weight", &[3, h]);
    for e in [
        "speaker_embeddings",
        "a_spk_embs",
        "v_spk_embs",
        "l_spk_embs",
    ] {
        unused(&format!("graph_model.{e}.weight"), &[n_speakers, h]);
    }
    for m in ["a_fc", "v_fc", "l_fc"] {
        unused(&format!("graph_model.{m}.weight"), &[h, h]);
        unused(&format!("graph_model.{m}.bias"), &[h]);
    }
    unused("graph_model.feature_fc.weight", &[gh, 3 * (h + gh)]);
    unused("graph_model.feature_fc.bias", &[gh]);
    unused("graph_model.final_fc.weight", &[c, gh]);
    unused("graph_model.final_fc.bias", &[c]);
    for m in ["transform_l", "transform_v", "transform_a"] {
        unused(&format!("gatedatt.{m}.weight"), &[gh, h + gh]);
        unused(&format!("gatedatt.{m}.bias"), &[gh]);
    }
    for m in ["transform_av", "transform_al", "transform_vl"] {
        unused(&format!("gatedatt.{m}.weight"), &[1, 3 * (h + gh)]);
        unused(&format!("gatedatt.{m}.bias"), &[1]);
    }
    Ok(out)
}

/// The weights file of `model`.
pub fn export<B: Backend>(
    model: &Mmic<B>,
    variant: Variant,
    n_speakers: usize,
) -> Result<Weights, TrainError> {
    let mut own = Weights::from_module(model);
    let links = links(&own, variant, n_speakers)?;
    let shapes: std::collections::BTreeMap<String, Vec<usize>> = own
        .tensors
        .iter()
        .map(|(k, t)| (k.clone(), t.shape.clone()))
        .collect();
    let mut out = Weights::default();
    for (name, op) in links {
        let t = match op {
            Op::Same(k) => own.tensors.remove(&k),
            Op::Transposed(k) => own.tensors.remove(&k).map(|t| t.transposed()),
            Op::FoldedInto(k) => shapes.get(&k).map(|s| Named::zeros(s.clone())),
            Op::Unused(s) => Some(Named::zeros(s)),
        };
        let t = t.ok_or_else(|| TrainError::Backend(format!("`{name}` has no source")))?;
        out.insert(name, t);
    }
    Ok(out)
}

/// `model` with the weights of `file` (strict: every tensor of MM-DFN's
/// `state_dict`, with its shape, and nothing else). For `mmdfn` the MMIC-only
/// heads keep their values.
pub fn import<B: Backend>(
    model: Mmic<B>,
    mut file: Weights,
    variant: Variant,
    n_speakers: usize,
) -> Result<Mmic<B>, TrainError> {
    let own = Weights::from_module(&model);
    let links = links(&own, variant, n_speakers)?;
    let mut burn = Weights::default();
    let mut folded = Vec::new();
    for (name, op) in links {
        match op {
            Op::Same(k) => {
                let t = file.take(&name, &own.tensors[&k].shape)?;
                burn.insert(k, t);
            }
            Op::Transposed(k) => {
                let t = file.take(&name, &own.tensors[&k].transposed().shape)?;
                burn.insert(k, t.transposed());
            }
            Op::FoldedInto(k) => {
                let t = file.take(&name, &own.tensors[&k].shape)?;
                folded.push((k, t));
            }
            Op::Unused(_) => {
                // Present, as in MM-DFN's `state_dict`, but never used: its
                // shape (the speaker count of MM-DFN's own configuration,
                // say) does not matter.
                if file.tensors.remove(&name).is_none() {
                    return Err(TrainError::InvalidParam {
                        key: "weights".into(),
                        message: format!("the file has no tensor `{name}`"),
                    });
                }
            }
        }
    }
    file.expect_empty()?;
    for (k, t) in folded {
        let sum = burn.tensors[&k].plus(&t);
        burn.insert(k, sum);
    }
    if variant == Variant::MmDfn {
        for (k, t) in own.tensors {
            if k.starts_with("net.cpc.") || k.starts_with("mi.") {
                burn.insert(k, t);
            }
        }
    }
    let model = burn.load_module(model)?;
    burn.expect_empty()?;
    Ok(model)
}
