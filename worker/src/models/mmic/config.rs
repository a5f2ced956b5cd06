//! MMIC's (and the MM-DFN baseline's) settings, read from a trial's
//! parameters: [`MmicConfig::from_params`], with [`Variant`]'s defaults.

use sigsweep_data::erc::ErcDataset;

use super::net::NetConfig;
use crate::trial::{Params, TrainError};

pub(super) fn invalid(key: &str, message: impl Into<String>) -> TrainError {
    TrainError::InvalidParam {
        key: key.into(),
        message: message.into(),
    }
}

/// Everything a trial of `mmic` is configured with.
#[derive(Debug, Clone)]
pub struct MmicConfig {
    /// Which model: `mmic`, or `mmdfn` (MM-DFN exactly; its weights file is
    /// MM-DFN's `state_dict`).
    pub variant: Variant,
    pub net: NetConfig,
    pub alpha: f64,
    pub beta: f64,
    pub zeta: f64,
    pub tau: f64,
    pub focal_gamma: f64,
    /// Per-class weights of the task loss (empty: unweighted).
    pub class_weights: Vec<f32>,
    pub lr: f64,
    pub weight_decay: f64,
    pub grad_clip: f64,
    pub mi_lr: f64,
    /// Adam's ε (PyTorch's 1e-8 by default, as MM-DFN and MMIM run).
    pub adam_epsilon: f64,
    pub batch_size: usize,
    /// `batch_order = "fixed"`: the same batch order every epoch (MM-DFN).
    pub fixed_order: bool,
    /// `rnn_padding = "unpacked"`: recurrences run through the padding (MM-DFN).
    pub unpacked_rnn: bool,
    /// Per class: in the negative-valence group.
    pub negative: Vec<bool>,
}

fn parse_dash_list(key: &str, s: &str) -> Result<Vec<f64>, TrainError> {
    s.split('-')
        .map(|x| {
            x.trim().parse::<f64>().map_err(|_| {
                invalid(
                    key,
                    format!("`{s}` is not a dash-separated list of numbers"),
                )
            })
        })
        .collect()
}

/// Negative-valence classes of a dataset by class name (see module docs).
pub fn negative_classes(data: &ErcDataset) -> Vec<bool> {
    const NEG: &[&str] = &[
        "sad",
        "ang",
        "fru",
        "dis",
        "fea",
        "sadness",
        "anger",
        "angry",
        "frustrated",
        "frustration",
        "disgust",
        "fear",
    ];
    let c = data.n_classes;
    let by_name: Vec<bool> = (0..c)
        .map(|i| {
            data.class_names
                .get(i)
                .is_some_and(|n| NEG.contains(&n.to_lowercase().as_str()))
        })
        .collect();
    if by_name.iter().any(|&b| b) {
        by_name
    } else {
        (0..c).map(|i| i >= c.div_ceil(2)).collect()
    }
}

/// IEMOCAP's class order (MM-DFN's `target_names`).
const IEMOCAP_CLASSES: &[&str] = &["hap", "sad", "neu", "ang", "exc", "fru"];
/// MM-DFN's IEMOCAP class frequencies (it weighs class c by `1 / freq_c`)
/// are the synthetic IEMOCAP preset's.
const IEMOCAP_FREQ: &[f64] = &sigsweep_data::synthetic::IEMOCAP_FREQS;
/// MELD's class order and MM-DFN's MELD class frequencies, to its nine
/// digits.
const MELD_CLASSES: &[&str] = &["neu", "sur", "fea", "sad", "joy", "dis", "ang"];
const MELD_FREQ: &[f64] = &[
    0.466750766,
    0.122094071,
    0.027752748,
    0.071544422,
    0.171742656,
    0.026401153,
    0.113714183,
];

fn is_iemocap(names: &[String]) -> bool {
    names
        .iter()
        .map(String::as_str)
        .eq(IEMOCAP_CLASSES.iter().copied())
}

/// The task loss's class weights (see [`MmicConfig::from_params`]):
/// * `inverse_frequency` (MM-DFN): `1 / freq_c`, with MM-DFN's hard-coded
///   frequencies for IEMOCAP and MELD (recognised by their class names) and
///   the training split's utterance frequencies otherwise; the mean weight
///   is about the class count, as in MM-DFN;
/// * `balanced` (scikit-learn's): `N / (C · count_c)`, mean weight about 1.
///
/// A class absent from the training split gets weight 0.
pub fn class_weights(data: &ErcDataset, scheme: Scheme) -> Vec<f32> {
    let c = data.n_classes;
    let names: Vec<&str> = data.class_names.iter().map(String::as_str).collect();
    let mut counts = vec![0usize; c];
    for d in &data.train {
        for &l in &d.labels {
            if l < c {
                counts[l] += 1;
            }
        }
    }
    let total: usize = counts.iter().sum();
    let inverse = |k: usize, w: f32| if k == 0 { 0.0 } else { w };
    match scheme {
        Scheme::InverseFrequency => {
            let fixed = if names == IEMOCAP_CLASSES {
                Some(IEMOCAP_FREQ)
            } else if names == MELD_CLASSES {
                Some(MELD_FREQ)
            } else {
                None
            };
            match fixed {
                Some(freq) => freq.iter().map(|f| (1.0 / f) as f32).collect(),
                None => counts
                    .iter()
                    .map(|&k| inverse(k, total as f32 / k.max(1) as f32))
                    .collect(),
            }
        }
        Scheme::Balanced => counts
            .iter()
            .map(|&k| inverse(k, total as f32 / (c * k.max(1)) as f32))
            .collect(),
    }
}

/// Which model's defaults a trial starts from: MMIC, or the MM-DFN
/// baseline (the same network with the auxiliary losses off and a GRU text
/// encoder). The registry maps the model names to variants.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Variant {
    Mmic,
    MmDfn,
}

/// The task loss's class weighting (`class_weight_scheme`; see
/// [`class_weights`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scheme {
    InverseFrequency,
    Balanced,
}

/// A trial's `mmic`/`mmdfn` parameters, read and checked without its data:
/// what a sweep file is checked with before anything runs
/// (`models::check_params`), and what [`MmicConfig::from_params`]
/// completes with the dataset's dimensions and classes.
#[derive(Debug, Clone)]
pub struct MmicSettings {
    variant: Variant,
    alpha: f64,
    beta: f64,
    zeta: f64,
    gammas: [f64; 3],
    text_lstm: bool,
    hidden: usize,
    weight_decay: f64,
    /// `None`: the variant's default for the dataset (MM-DFN weighs
    /// IEMOCAP's classes).
    class_weight: Option<bool>,
    scheme: Scheme,
    /// `negative_classes`, when given: class indices (checked against the
    /// dataset's classes).
    negative: Option<Vec<f64>>,
    graph_hidden: usize,
    layers: usize,
    text_layers: usize,
    dropout: f64,
    gcn_alpha: f64,
    gcn_lambda: f64,
    ent_dim: usize,
    tau: f64,
    focal_gamma: f64,
    lr: f64,
    grad_clip: f64,
    mi_lr: f64,
    adam_epsilon: f64,
    batch_size: usize,
    unpacked_rnn: bool,
    fixed_order: bool,
}

impl MmicSettings {
    /// Reads the trial parameters; [`Variant::MmDfn`] changes the defaults
    /// only.
    pub fn from_params(variant: Variant, p: &Params) -> Result<Self, TrainError> {
        let mmdfn = variant == Variant::MmDfn;
        let def = if mmdfn { 0.0 } else { 1.0 };
        let alpha = p.f64_in("alpha", def, 0.0, 1e6)?;
        let beta = p.f64_in("beta", if mmdfn { 0.0 } else { 0.05 }, 0.0, 1e6)?;
        let zeta = p.f64_in("zeta", if mmdfn { 0.0 } else { 0.05 }, 0.0, 1e6)?;
        // `losses`: which auxiliary losses are on ("all", "none", or a
        // '+'-list of scl, cpc, ba); the others get weight 0. Lets one grid
        // key express MMIC, its ablations and the MM-DFN baseline.
        let on = p.text("losses", "all")?;
        let (mut alpha, mut beta, mut zeta) = (alpha, beta, zeta);
        if on != "all" {
            let parts: Vec<&str> = if on == "none" {
                Vec::new()
            } else {
                on.split('+').map(str::trim).collect()
            };
            if let Some(bad) = parts.iter().find(|x| !["scl", "cpc", "ba"].contains(x)) {
                return Err(invalid(
                    "losses",
                    format!(
                        "unknown loss `{bad}`: expected all, none, or a '+'-list of scl, cpc, ba"
                    ),
                ));
            }
            if !parts.contains(&"scl") {
                alpha = 0.0;
            }
            if !parts.contains(&"cpc") {
                beta = 0.0;
            }
            if !parts.contains(&"ba") {
                zeta = 0.0;
            }
        }
        let sw = parse_dash_list("speaker_weights", &p.text("speaker_weights", "3-0-1")?)?;
        if sw.len() != 3 {
            return Err(invalid(
                "speaker_weights",
                "expected three weights \"a-v-t\"",
            ));
        }
        let gammas = [
            p.f64("gamma_a", sw[0])?,
            p.f64("gamma_v", sw[1])?,
            p.f64("gamma_t", sw[2])?,
        ];
        let text_lstm = match p
            .text("text_encoder", if mmdfn { "gru" } else { "lstm" })?
            .as_str()
        {
            "lstm" => true,
            "gru" => false,
            other => {
                return Err(invalid(
                    "text_encoder",
                    format!("`{other}`: expected lstm or gru"),
                ));
            }
        };
        let hidden = p.positive("hidden", 200)?;
        if hidden % 2 != 0 {
            return Err(invalid("hidden", "must be even (two directions)"));
        }
        // `weight_decay` (training key, always sent by the coordinator, 0 by
        // default) or its alias `l2` (MM-DFN's name); a non-zero
        // `weight_decay` that disagrees with `l2` is an error.
        let wd_training = p.f64("weight_decay", f64::NAN)?;
        let wd_l2 = p.f64("l2", f64::NAN)?;
        let weight_decay = match (wd_training.is_nan(), wd_l2.is_nan()) {
            (true, true) => 1e-4,
            (false, true) => wd_training,
            (true, false) => wd_l2,
            (false, false) if wd_training == 0.0 || wd_training == wd_l2 => wd_l2,
            (false, false) => {
                return Err(invalid(
                    "l2",
                    "`l2` and a non-zero `weight_decay` disagree; give one of them",
                ));
            }
        };
        // MM-DFN's IEMOCAP script trains with `--class_weight`, its MELD
        // script without: the `mmdfn` default follows the dataset.
        let class_weight = match p.values().get("class_weight") {
            None => None,
            Some(_) => Some(p.bool("class_weight", false)?),
        };
        let scheme = match p.text("class_weight_scheme", "inverse_frequency")?.as_str() {
            "inverse_frequency" => Scheme::InverseFrequency,
            "balanced" => Scheme::Balanced,
            other => {
                return Err(invalid(
                    "class_weight_scheme",
                    format!("`{other}`: expected inverse_frequency or balanced"),
                ));
            }
        };
        let neg_text = p.text("negative_classes", "")?;
        let negative = if neg_text.is_empty() {
            None
        } else {
            let ids = parse_dash_list("negative_classes", &neg_text)?;
            if let Some(id) = ids.iter().find(|id| **id < 0.0 || id.fract() != 0.0) {
                return Err(invalid(
                    "negative_classes",
                    format!("{id} is not a class index"),
                ));
            }
            Some(ids)
        };
        Ok(Self {
            variant,
            alpha,
            beta,
            zeta,
            gammas,
            text_lstm,
            hidden,
            weight_decay,
            class_weight,
            scheme,
            negative,
            graph_hidden: p.positive("graph_hidden", 100)?,
            layers: p.positive("layers", 16)?,
            text_layers: p.positive("text_layers", 2)?,
            dropout: p.f64_in("dropout", 0.4, 0.0, 0.95)?,
            gcn_alpha: p.f64_in("gcn_alpha", 0.2, 0.0, 1.0)?,
            gcn_lambda: p.f64_in("gcn_lambda", 0.5, 0.0, 1e6)?,
            ent_dim: p.positive("ba_entropy_dim", 8)?,
            tau: p.f64_in("scl_temperature", 0.1, 1e-6, 1e6)?,
            focal_gamma: p.f64_in("focal_gamma", if mmdfn { 0.5 } else { 0.0 }, 0.0, 100.0)?,
            lr: p.f64("lr", 3e-4)?,
            grad_clip: p.f64("grad_clip", 0.0)?,
            mi_lr: p.f64("mi_lr", 1e-3)?,
            adam_epsilon: p.f64_in("adam_epsilon", 1e-8, 0.0, 1.0)?,
            batch_size: p.positive("batch_size", if mmdfn { 32 } else { 16 })?,
            unpacked_rnn: match p.text("rnn_padding", "unpacked")?.as_str() {
                "packed" => false,
                "unpacked" => true,
                other => {
                    return Err(invalid(
                        "rnn_padding",
                        format!("`{other}`: expected packed or unpacked"),
                    ));
                }
            },
            fixed_order: match p.text("batch_order", "reshuffle")?.as_str() {
                "reshuffle" => false,
                "fixed" => true,
                other => {
                    return Err(invalid(
                        "batch_order",
                        format!("`{other}`: expected reshuffle or fixed"),
                    ));
                }
            },
        })
    }
}

impl MmicConfig {
    /// Reads the trial parameters ([`MmicSettings`]) and completes them with
    /// the dataset's dimensions, classes and class weights.
    pub fn from_params(
        variant: Variant,
        p: &Params,
        data: &ErcDataset,
    ) -> Result<Self, TrainError> {
        let s = MmicSettings::from_params(variant, p)?;
        let c = data.n_classes;
        let class_weight = s
            .class_weight
            .unwrap_or(variant == Variant::MmDfn && is_iemocap(&data.class_names));
        let class_weights = if class_weight {
            class_weights(data, s.scheme)
        } else {
            Vec::new()
        };
        let negative = match &s.negative {
            None => negative_classes(data),
            Some(ids) => {
                let mut v = vec![false; c];
                for &id in ids {
                    let i = id as usize;
                    if i >= c {
                        return Err(invalid(
                            "negative_classes",
                            format!("{id} is not a class index below {c}"),
                        ));
                    }
                    v[i] = true;
                }
                v
            }
        };
        Ok(Self {
            variant: s.variant,
            net: NetConfig {
                dims: data.dims,
                n_classes: c,
                hidden: s.hidden,
                graph_hidden: s.graph_hidden,
                layers: s.layers,
                text_lstm: s.text_lstm,
                text_layers: s.text_layers,
                dropout: s.dropout,
                gammas: s.gammas,
                gcn_alpha: s.gcn_alpha,
                gcn_lambda: s.gcn_lambda,
                ent_dim: s.ent_dim,
            },
            alpha: s.alpha,
            beta: s.beta,
            zeta: s.zeta,
            tau: s.tau,
            focal_gamma: s.focal_gamma,
            class_weights,
            lr: s.lr,
            weight_decay: s.weight_decay,
            grad_clip: s.grad_clip,
            mi_lr: s.mi_lr,
            adam_epsilon: s.adam_epsilon,
            batch_size: s.batch_size,
            fixed_order: s.fixed_order,
            unpacked_rnn: s.unpacked_rnn,
            negative,
        })
    }
}
