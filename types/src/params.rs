//! Parameter declarations: name, type, range, default and meaning of every
//! parameter a built-in model or the training loop accepts.
//!
//! A declaration checks a value ([`ParamDecl::check`]); the checks are the
//! wide bounds every trial must satisfy. A model may refuse further
//! combinations when it is built (`hidden` odd for a bidirectional encoder,
//! `width` not divisible by `heads`), naming the key.

use std::borrow::Cow;
use std::fmt;

/// A parameter value as the declarations see it (sweep files and the wire
/// carry the same four kinds).
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Scalar<'a> {
    Bool(bool),
    Int(i64),
    Float(f64),
    Text(&'a str),
}

impl fmt::Display for Scalar<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Bool(b) => write!(f, "{b}"),
            Self::Int(i) => write!(f, "{i}"),
            Self::Float(x) => write!(f, "{x:?}"),
            Self::Text(s) => write!(f, "{s:?}"),
        }
    }
}

/// Text held by a declaration: borrowed for the built-in tables, owned for
/// declarations a worker registers at run time.
pub type Text = Cow<'static, str>;

/// The type and range of a parameter.
#[derive(Debug, Clone, PartialEq)]
pub enum ParamKind {
    /// An integer in `[min, max]`.
    Int {
        min: i64,
        max: i64,
    },
    /// A finite number in `[min, max]` (integers are accepted).
    Float {
        min: f64,
        max: f64,
    },
    Bool,
    /// A string; one of `choices` unless it is empty (free text, checked by
    /// the model: e.g. a `-`-separated list).
    Text {
        choices: Cow<'static, [Text]>,
    },
}

/// One declared parameter.
#[derive(Debug, Clone, PartialEq)]
pub struct ParamDecl {
    pub name: Text,
    pub kind: ParamKind,
    /// The default, as text (it may depend on the model: `mmdfn` and `mmic`
    /// share declarations but not every default).
    pub default: Text,
    pub doc: Text,
}

impl ParamDecl {
    /// Checks `value` against the declared type and range; the error says
    /// what was expected (the caller adds the file, line and key).
    pub fn check(&self, value: Scalar<'_>) -> Result<(), String> {
        match (&self.kind, value) {
            (&ParamKind::Int { min, max }, Scalar::Int(i)) => {
                if i < min || i > max {
                    return Err(format!("{i} is outside the allowed range [{min}, {max}]"));
                }
            }
            (ParamKind::Float { .. }, Scalar::Int(i)) => {
                return self.check(Scalar::Float(i as f64));
            }
            (&ParamKind::Float { min, max }, Scalar::Float(x)) => {
                if !x.is_finite() || x < min || x > max {
                    // An open end reads as a bound, not as f64's extremes.
                    return Err(match (min == f64::MIN_POSITIVE, max == f64::MAX) {
                        (true, true) => format!("{x:?} is not a finite number > 0"),
                        (true, false) => format!("{x:?} is not a number > 0 and <= {max:?}"),
                        (false, true) => format!("{x:?} is not a finite number >= {min:?}"),
                        (false, false) => {
                            format!("{x:?} is outside the allowed range [{min:?}, {max:?}]")
                        }
                    });
                }
            }
            (ParamKind::Bool, Scalar::Bool(_)) => {}
            (ParamKind::Text { choices }, Scalar::Text(s)) => {
                if !choices.is_empty() && !choices.iter().any(|c| c == s) {
                    return Err(format!("{s:?} is not one of: {}", choices.join(", ")));
                }
            }
            (kind, got) => {
                let want = match kind {
                    ParamKind::Int { .. } => "an integer",
                    ParamKind::Float { .. } => "a number",
                    ParamKind::Bool => "true or false",
                    ParamKind::Text { .. } => "a string",
                };
                return Err(format!("expected {want}, got {got}"));
            }
        }
        Ok(())
    }
}

/// A model: its name and parameters (built in, or registered by a worker).
#[derive(Debug, Clone, PartialEq)]
pub struct ModelDecl {
    pub name: Text,
    pub doc: Text,
    pub params: Cow<'static, [ParamDecl]>,
}

impl ModelDecl {
    pub fn param(&self, name: &str) -> Option<&ParamDecl> {
        self.params.iter().find(|p| p.name == name)
    }
}

const fn int(
    name: &'static str,
    min: i64,
    max: i64,
    default: &'static str,
    doc: &'static str,
) -> ParamDecl {
    decl(name, ParamKind::Int { min, max }, default, doc)
}
const fn float(
    name: &'static str,
    min: f64,
    max: f64,
    default: &'static str,
    doc: &'static str,
) -> ParamDecl {
    decl(name, ParamKind::Float { min, max }, default, doc)
}
const fn flag(name: &'static str, default: &'static str, doc: &'static str) -> ParamDecl {
    decl(name, ParamKind::Bool, default, doc)
}
const fn text(
    name: &'static str,
    choices: &'static [Text],
    default: &'static str,
    doc: &'static str,
) -> ParamDecl {
    let choices = Cow::Borrowed(choices);
    decl(name, ParamKind::Text { choices }, default, doc)
}
const fn decl(
    name: &'static str,
    kind: ParamKind,
    default: &'static str,
    doc: &'static str,
) -> ParamDecl {
    ParamDecl {
        name: Cow::Borrowed(name),
        kind,
        default: Cow::Borrowed(default),
        doc: Cow::Borrowed(doc),
    }
}

/// Widths and depths are bounded so that no sweep file can make a worker
/// allocate without limit.
const MAX_WIDTH: i64 = 8192;
const MAX_DEPTH: i64 = 256;

/// The training settings: `[training]` keys, also allowed as grid keys.
pub const TRAINING: &[ParamDecl] = &[
    int("epochs", 1, 100_000, "10", "training epochs"),
    int(
        "batch_size",
        1,
        1 << 20,
        "model's",
        "samples (dialogues for ERC) per optimiser step",
    ),
    // Wide on purpose: a diverging learning rate is a legitimate experiment
    // (it fails its trial with the epoch and step of the non-finite loss).
    float(
        "lr",
        f64::MIN_POSITIVE,
        f64::MAX,
        "model's",
        "learning rate",
    ),
    float(
        "weight_decay",
        0.0,
        1e3,
        "0",
        "L2 / decoupled weight decay, as the model's optimiser applies it",
    ),
    float(
        "grad_clip",
        0.0,
        1e12,
        "0",
        "gradient-norm clipping; 0 disables it",
    ),
    flag(
        "save_checkpoints",
        "false",
        "write a checkpoint after every epoch and resume from it (`[training] save = [\"checkpoints\"]`)",
    ),
    flag(
        "save_weights",
        "false",
        "write the selected epoch's weights as safetensors (`[training] save = [\"weights\"]`)",
    ),
    flag(
        "save_predictions",
        "false",
        "write the per-example test predictions of the selected epoch (`[training] save = [\"predictions\"]`)",
    ),
    float(
        "valid_fraction",
        0.0,
        0.95,
        "0.1",
        "validation carve of ERC files without a dev split",
    ),
];

const LATE_FUSION: &[ParamDecl] = &[
    int(
        "modality_hidden",
        1,
        MAX_WIDTH,
        "16",
        "width of each modality's projection",
    ),
    int("hidden", 1, MAX_WIDTH, "32", "width of the fusion layer"),
    float("dropout", 0.0, 0.95, "0", "dropout after the fusion layer"),
];

/// MMIC's parameters: first those of its auxiliary losses (MMIC only), then
/// MM-DFN's, which the `mmdfn` model takes alone ([`MMDFN`]).
const MMIC: &[ParamDecl] = &[
    text(
        "losses",
        &[],
        "all",
        "auxiliary losses on: all, none, or a '+'-list of scl, cpc, ba",
    ),
    float(
        "alpha",
        0.0,
        1e6,
        "1",
        "weight of the supervised contrastive loss, eq. (8)",
    ),
    float("beta", 0.0, 1e6, "0.05", "weight of the CPC loss"),
    float("zeta", 0.0, 1e6, "0.05", "weight of the BA (MI) loss"),
    float(
        "scl_temperature",
        1e-6,
        1e6,
        "0.1",
        "temperature τ of the contrastive loss",
    ),
    float(
        "mi_lr",
        1e-12,
        1e3,
        "1e-3",
        "learning rate of the MI estimator heads",
    ),
    int(
        "ba_entropy_dim",
        1,
        MAX_WIDTH,
        "8",
        "width of the BA entropy heads",
    ),
    text(
        "negative_classes",
        &[],
        "by class names",
        "negative classes for CPC, as \"i-j-k\"",
    ),
    int("layers", 1, MAX_DEPTH, "16", "graph convolution layers (K)"),
    float(
        "gcn_alpha",
        0.0,
        1.0,
        "0.2",
        "initial-residual weight of the graph layers",
    ),
    float(
        "gcn_lambda",
        0.0,
        1e6,
        "0.5",
        "identity-mapping strength of the graph layers",
    ),
    text(
        "speaker_weights",
        &[],
        "3-0-1",
        "speaker embedding weights a-v-t, as \"a-v-t\"",
    ),
    float(
        "gamma_a",
        -1e6,
        1e6,
        "from speaker_weights",
        "speaker embedding weight, audio",
    ),
    float(
        "gamma_v",
        -1e6,
        1e6,
        "from speaker_weights",
        "speaker embedding weight, vision",
    ),
    float(
        "gamma_t",
        -1e6,
        1e6,
        "from speaker_weights",
        "speaker embedding weight, text",
    ),
    float("dropout", 0.0, 0.95, "0.4", "dropout"),
    int(
        "hidden",
        2,
        MAX_WIDTH,
        "200",
        "encoder width (even: two directions)",
    ),
    int("graph_hidden", 1, MAX_WIDTH, "100", "graph layer width"),
    text(
        "text_encoder",
        &[Cow::Borrowed("lstm"), Cow::Borrowed("gru")],
        "lstm (mmdfn: gru)",
        "text context encoder",
    ),
    int("text_layers", 1, MAX_DEPTH, "2", "text encoder layers"),
    float(
        "focal_gamma",
        0.0,
        100.0,
        "0 (mmdfn: 0.5)",
        "focal loss γ (0: cross-entropy)",
    ),
    flag(
        "class_weight",
        "false (mmdfn: true on IEMOCAP, as its scripts)",
        "weight classes in the task loss",
    ),
    text(
        "class_weight_scheme",
        &[
            Cow::Borrowed("inverse_frequency"),
            Cow::Borrowed("balanced"),
        ],
        "inverse_frequency",
        "class weights: 1/freq (MM-DFN's vectors on IEMOCAP and MELD) or N/(C·count)",
    ),
    text(
        "rnn_padding",
        &[Cow::Borrowed("packed"), Cow::Borrowed("unpacked")],
        "unpacked",
        "recurrences through the batch's padding as MM-DFN's unpacked GRUs, or over packed sequences",
    ),
    text(
        "batch_order",
        &[Cow::Borrowed("reshuffle"), Cow::Borrowed("fixed")],
        "reshuffle",
        "batch order: reshuffled every epoch, or the same every epoch (MM-DFN re-seeds before every pass)",
    ),
    float(
        "adam_epsilon",
        0.0,
        1.0,
        "1e-8",
        "Adam's ε (PyTorch's default, as MM-DFN and MMIM)",
    ),
    float(
        "l2",
        0.0,
        1e3,
        "1e-4",
        "L2 weight decay (MM-DFN's name for weight_decay)",
    ),
];

/// How many auxiliary-loss parameters lead [`MMIC`].
const MMIC_ONLY: usize = 8;

/// MM-DFN's parameters: MMIC's without its auxiliary losses.
const MMDFN: &[ParamDecl] = MMIC.split_at(MMIC_ONLY).1;

const FDCMDIE: &[ParamDecl] = &[
    int(
        "k_cl",
        1,
        10_000,
        "10",
        "similar/different samples per anchor (k_cl)",
    ),
    int("layers", 1, MAX_DEPTH, "3", "interaction (DIPU) layers"),
    float("tau", 1e-6, 1e6, "0.5", "NT-Xent temperature"),
    float("margin", 0.0, 2.0, "0.5", "triplet margin"),
    float("lambda_tri", 0.0, 1e6, "0.1", "weight of the triplet loss"),
    float(
        "lambda_cl",
        0.0,
        1e6,
        "0.1",
        "weight of the contrastive loss",
    ),
    int(
        "width",
        1,
        MAX_WIDTH,
        "128",
        "model width (divisible by heads)",
    ),
    int("heads", 1, 1024, "8", "attention heads"),
    float("dropout", 0.0, 0.95, "0.1", "dropout"),
    int(
        "lstm_layers",
        1,
        MAX_DEPTH,
        "2",
        "LSTM layers of the audio/vision encoders",
    ),
    int(
        "max_len",
        0,
        100_000,
        "50",
        "pooled sequence length (0: keep)",
    ),
    text(
        "cl_pairs",
        &[Cow::Borrowed("all"), Cow::Borrowed("sampled")],
        "all",
        "contrastive pairs: all k_cl similar and different samples (paper), or cl_samples drawn per set",
    ),
    int(
        "cl_samples",
        1,
        10_000,
        "2",
        "samples drawn with replacement per set (cl_pairs = \"sampled\")",
    ),
    text(
        "text_encoder",
        &[Cow::Borrowed("linear")],
        "linear",
        "text encoder over the file's BERT features",
    ),
    flag(
        "use_cl",
        "true",
        "contrastive learning on (\"w/o CL\" ablation: false)",
    ),
    flag("use_cmdie", "true", "cross-modal interaction on"),
    flag("use_gap", "true", "global average pooling on"),
    flag("use_cross_att2", "true", "second cross-attention on"),
];

/// The built-in models (`mmdfn` is MMIC's baseline under its own name).
pub const MODELS: &[ModelDecl] = &[
    ModelDecl {
        name: Cow::Borrowed("late-fusion"),
        doc: Cow::Borrowed("late-fusion baseline: per-modality projections, concatenation, MLP"),
        params: Cow::Borrowed(LATE_FUSION),
    },
    ModelDecl {
        name: Cow::Borrowed("fdcmdie"),
        doc: Cow::Borrowed("FD-CMDIE (multimodal sentiment analysis)"),
        params: Cow::Borrowed(FDCMDIE),
    },
    ModelDecl {
        name: Cow::Borrowed("mmic"),
        doc: Cow::Borrowed("MMIC on MM-DFN (emotion recognition in conversation)"),
        params: Cow::Borrowed(MMIC),
    },
    ModelDecl {
        name: Cow::Borrowed("mmdfn"),
        doc: Cow::Borrowed("MM-DFN as its code trains it (MMIC's baseline)"),
        params: Cow::Borrowed(MMDFN),
    },
];

/// The declaration of a built-in model.
pub fn model(name: &str) -> Option<&'static ModelDecl> {
    MODELS.iter().find(|m| m.name == name)
}

/// The declaration of a training setting.
pub fn training(name: &str) -> Option<&'static ParamDecl> {
    TRAINING.iter().find(|p| p.name == name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn checks_types_and_ranges() {
        let hidden = model("late-fusion")
            .and_then(|m| m.param("hidden"))
            .expect("declared");
        assert!(hidden.check(Scalar::Int(16)).is_ok());
        assert!(
            hidden
                .check(Scalar::Int(0))
                .unwrap_err()
                .contains("[1, 8192]")
        );
        assert!(hidden.check(Scalar::Int(-8)).is_err());
        assert!(
            hidden
                .check(Scalar::Text("wide"))
                .unwrap_err()
                .contains("integer")
        );
        assert!(hidden.check(Scalar::Float(16.0)).is_err());
        let dropout = model("mmic")
            .and_then(|m| m.param("dropout"))
            .expect("declared");
        assert!(
            dropout.check(Scalar::Int(0)).is_ok(),
            "an integer is a number"
        );
        assert!(dropout.check(Scalar::Float(f64::NAN)).is_err());
        assert!(dropout.check(Scalar::Float(0.99)).is_err());
        // An open end of a range says so, not f64's extremes.
        let lr = training("lr").expect("declared");
        assert_eq!(
            lr.check(Scalar::Float(-1.0)).unwrap_err(),
            "-1.0 is not a finite number > 0"
        );
        assert!(lr.check(Scalar::Float(0.003)).is_ok());
        // MM-DFN has no auxiliary losses; MMIC has them and all of MM-DFN's.
        let (mmdfn, mmic) = (model("mmdfn").expect("mmdfn"), model("mmic").expect("mmic"));
        for only in [
            "losses",
            "alpha",
            "beta",
            "zeta",
            "scl_temperature",
            "mi_lr",
            "ba_entropy_dim",
            "negative_classes",
        ] {
            assert!(mmdfn.param(only).is_none(), "{only}");
            assert!(mmic.param(only).is_some(), "{only}");
        }
        assert!(mmdfn.params.iter().all(|p| mmic.param(&p.name).is_some()));
        assert!(mmdfn.param("focal_gamma").is_some());
        let enc = mmdfn.param("text_encoder").expect("declared");
        assert!(enc.check(Scalar::Text("gru")).is_ok());
        assert!(
            enc.check(Scalar::Text("transformer"))
                .unwrap_err()
                .contains("lstm, gru")
        );
        let flag = model("fdcmdie")
            .and_then(|m| m.param("use_cl"))
            .expect("declared");
        assert!(flag.check(Scalar::Text("yes")).is_err());
    }

    #[test]
    fn names_are_unique_and_documented() {
        for m in MODELS {
            for (i, p) in m.params.iter().enumerate() {
                assert!(
                    !p.doc.is_empty() && !p.default.is_empty(),
                    "{}.{}",
                    m.name,
                    p.name
                );
                assert!(
                    !m.params[..i].iter().any(|q| q.name == p.name),
                    "{}: `{}` declared twice",
                    m.name,
                    p.name
                );
                assert!(
                    training(&p.name).is_none(),
                    "{} shadows a training key",
                    p.name
                );
            }
        }
    }
}
