//! The model registry: which models exist, what data each trains on, which
//! strategies each supports, and how to build its workload. [`REGISTRY`] is
//! the only place a model name is matched; everything else (the strategies,
//! the agent's plan) asks [`lookup`] and matches the typed [`Kind`], so a
//! model added here without a strategy's support is a compile error there,
//! not a silent fall-through.
//!
//! Parameter declarations (names, types, ranges, docs) live in
//! `sigsweep_types::params::MODELS`, which the coordinator checks sweep
//! files against; [`check_request`] checks a trial against the same table.
//!
//! Every model is generic over the burn backend; [`build`] instantiates it
//! on the backend the worker runs.

pub mod command;
pub mod fdcmdie;
pub mod late_fusion;
pub mod mmic;

use burn::tensor::backend::AutodiffBackend;

use crate::backend::BackendKind;
use crate::trial::{
    LoadedDataset, Params, ShardedVisitor, Split, TrainError, TrialRequest, Value, Workload,
};

/// Which implementation a registry entry builds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    LateFusion,
    FdCmdie,
    Mmic(mmic::Variant),
}

/// The dataset shape a model consumes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Shape {
    /// Per-sample sequences (synthetic fusion/msa, mmsa files).
    Seq,
    /// Dialogues (synthetic erc, iemocap, meld, m3ed files).
    Erc,
}

impl Shape {
    fn describe(self) -> &'static str {
        match self {
            Self::Seq => "sequence datasets (synthetic fusion/msa, mmsa)",
            Self::Erc => "dialogue datasets (synthetic erc, iemocap, meld, m3ed)",
        }
    }
}

/// One model of the registry.
#[derive(Debug)]
pub struct Entry {
    /// The name a sweep file's `model.name` gives.
    pub name: &'static str,
    pub kind: Kind,
    pub shape: Shape,
    /// Whether its trials can train data-parallel (`gpus_per_trial > 1`).
    pub data_parallel: bool,
    /// Epochs of a full trial in its paper (for `bench train`'s trials per
    /// device-hour).
    pub paper_epochs: u32,
    /// `bench train`'s training settings (the paper's batch size and rate).
    bench: fn() -> Vec<(&'static str, Value)>,
}

impl Entry {
    /// The training settings `bench train` starts from.
    pub fn bench_params(&self) -> Vec<(&'static str, Value)> {
        (self.bench)()
    }
}

fn bench_default() -> Vec<(&'static str, Value)> {
    vec![("batch_size", Value::Int(32)), ("lr", Value::Float(1e-3))]
}

fn bench_fdcmdie() -> Vec<(&'static str, Value)> {
    vec![
        ("batch_size", Value::Int(32)),
        ("lr", Value::Float(1e-4)),
        ("layers", Value::Int(3)),
    ]
}

fn bench_mmic() -> Vec<(&'static str, Value)> {
    vec![("batch_size", Value::Int(16)), ("lr", Value::Float(3e-4))]
}

/// Every model this worker can train.
pub const REGISTRY: &[Entry] = &[
    Entry {
        name: "late-fusion",
        kind: Kind::LateFusion,
        shape: Shape::Seq,
        data_parallel: true,
        paper_epochs: 12,
        bench: bench_default,
    },
    Entry {
        name: "fdcmdie",
        kind: Kind::FdCmdie,
        shape: Shape::Seq,
        data_parallel: true,
        paper_epochs: 50,
        bench: bench_fdcmdie,
    },
    Entry {
        name: "mmic",
        kind: Kind::Mmic(mmic::Variant::Mmic),
        shape: Shape::Erc,
        data_parallel: true,
        paper_epochs: 30,
        bench: bench_mmic,
    },
    Entry {
        name: "mmdfn",
        kind: Kind::Mmic(mmic::Variant::MmDfn),
        shape: Shape::Erc,
        data_parallel: true,
        paper_epochs: 30,
        bench: bench_mmic,
    },
];

/// A model a user's crate adds to its own worker binary
/// (`examples/custom-burn-model`): its declaration (name, parameters, their
/// types and ranges), the dataset shape it trains on, and the constructor of
/// its [`Workload`] (the trait every built-in model implements). The plain
/// strategy trains it; the worker declares it to the coordinator when it
/// registers, so sweep files naming it are checked like built-in ones.
#[derive(Clone)]
pub struct Extension {
    pub decl: sigsweep_types::ModelDecl,
    pub shape: Shape,
    pub build: BuildFn,
}

/// An [`Extension`]'s constructor: the trial, its checked dataset, and the
/// backend the worker runs.
pub type BuildFn =
    fn(&TrialRequest, LoadedDataset, BackendKind) -> Result<Box<dyn Workload>, TrainError>;

static EXTENSIONS: std::sync::RwLock<Vec<Extension>> = std::sync::RwLock::new(Vec::new());

fn extensions() -> std::sync::RwLockReadGuard<'static, Vec<Extension>> {
    EXTENSIONS
        .read()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Adds a model to this process's registry (call it first thing in `main`,
/// before the CLI starts workers: `sigsweep run` starts them from the same
/// binary). A name that is already taken is refused.
pub fn register(model: Extension) -> Result<(), String> {
    let name = model.decl.name.to_string();
    let mut list = EXTENSIONS
        .write()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    if REGISTRY.iter().any(|e| e.name == name)
        || name == sigsweep_types::command::COMMAND_MODEL
        || list.iter().any(|e| e.decl.name == name)
    {
        return Err(format!("a model named `{name}` is already registered"));
    }
    list.push(model);
    Ok(())
}

/// The declarations of the models added with [`register`].
pub fn extension_declarations() -> Vec<sigsweep_types::ModelDecl> {
    extensions().iter().map(|e| e.decl.clone()).collect()
}

/// The declarations of every model this worker trains: the built-in ones
/// and those added with [`register`].
pub fn declarations() -> Vec<sigsweep_types::ModelDecl> {
    sigsweep_types::params::MODELS
        .iter()
        .cloned()
        .chain(extension_declarations())
        .collect()
}

/// Names of the models this worker can train.
pub fn names() -> Vec<String> {
    REGISTRY
        .iter()
        .map(|e| e.name.to_string())
        .chain(extensions().iter().map(|e| e.decl.name.to_string()))
        .collect()
}

/// The registry entry of `name`.
pub fn lookup(name: &str) -> Result<&'static Entry, TrainError> {
    REGISTRY
        .iter()
        .find(|e| e.name == name)
        .ok_or_else(|| TrainError::UnknownModel {
            name: name.to_string(),
            known: names(),
        })
}

/// Checks, loads the data of and builds a trial of a registered extension.
fn open_extension(
    req: &TrialRequest,
    backend: BackendKind,
) -> Option<Result<Box<dyn Workload>, TrainError>> {
    let ext = extensions()
        .iter()
        .find(|e| e.decl.name == req.model.as_str())
        .cloned()?;
    Some((|| {
        req.params.check_declared(&ext.decl)?;
        let data = load_for(req, ext.decl.name.as_ref(), ext.shape)?;
        (ext.build)(req, data, backend)
    })())
}

/// Checks a trial against its model's declarations: the model exists and
/// every parameter is declared, of the declared type, inside its range.
/// Every strategy calls it (through [`load_checked`]) before it trains.
pub fn check_request(req: &TrialRequest) -> Result<&'static Entry, TrainError> {
    let entry = lookup(&req.model)?;
    let decl = sigsweep_types::params::model(entry.name).ok_or_else(|| {
        TrainError::Backend(format!(
            "model `{}` has no parameter declaration in sigsweep_types",
            entry.name
        ))
    })?;
    req.params.check_declared(decl)?;
    Ok(entry)
}

/// Whether the seeds of `req`'s configuration can train as one fused model
/// (`fuse_seeds`) that gives each seed the numbers of its trial alone (up
/// to the rounding of batched products, dropout included: every slice
/// draws its own trial's masks, `tensor::draws`): `late-fusion`, and
/// `fdcmdie` without gradient clipping (norm clipping couples a
/// parameter's seed slices).
pub fn supports_fusion(req: &TrialRequest) -> bool {
    // The fused trainers write neither per-example predictions, weights nor
    // checkpoints.
    if req.params.bool("save_predictions", false).unwrap_or(true)
        || req.params.bool("save_weights", false).unwrap_or(true)
        || req.params.bool("save_checkpoints", false).unwrap_or(true)
    {
        return false;
    }
    match lookup(&req.model).map(|e| e.kind) {
        Ok(Kind::LateFusion) => true,
        Ok(Kind::FdCmdie) => req.params.f64("grad_clip", 0.0).is_ok_and(|c| c <= 0.0),
        Ok(Kind::Mmic(_)) | Err(_) => false,
    }
}

/// Checks a configuration's parameters as `model` reads them, without its
/// data: what the declarations cannot say (`hidden` even for MMIC's
/// bidirectional encoders, `width` divisible by `heads`, the format of
/// `speaker_weights`, the choices of text settings). The CLI runs it on
/// every configuration of a sweep file before anything starts
/// (`SweepSpec::check_settings`); a model this process does not build
/// itself (an extension, a training program) passes.
pub fn check_params(model: &str, params: &Params) -> Result<(), TrainError> {
    match lookup(model).map(|e| e.kind) {
        Ok(Kind::LateFusion) => late_fusion::LateFusionSettings::from_params(params).map(drop),
        Ok(Kind::FdCmdie) => fdcmdie::Options::from_params(params).map(drop),
        Ok(Kind::Mmic(variant)) => mmic::MmicSettings::from_params(variant, params).map(drop),
        Err(_) => Ok(()),
    }
}

/// Whether `model`'s trials can train data-parallel (`gpus_per_trial > 1`).
/// A training program gets its GPUs and parallelises itself (torchrun).
pub fn supports_data_parallel(model: &str) -> bool {
    model == sigsweep_types::command::COMMAND_MODEL || lookup(model).is_ok_and(|e| e.data_parallel)
}

/// Checks `req` ([`check_request`]), loads its dataset and checks that the
/// dataset has the shape the model trains on.
pub fn load_checked(req: &TrialRequest) -> Result<LoadedDataset, TrainError> {
    let entry = check_request(req)?;
    load_for(req, entry.name, entry.shape)
}

/// Loads `req`'s dataset and checks that it has `shape`, the shape model
/// `name` trains on.
fn load_for(req: &TrialRequest, name: &str, want: Shape) -> Result<LoadedDataset, TrainError> {
    let valid_fraction = req.params.f64_in("valid_fraction", 0.1, 0.0, 0.95)?;
    let data = crate::trial::load_dataset(&req.dataset, req.seed, valid_fraction)?;
    let shape = match &data {
        LoadedDataset::Seq(_) => Shape::Seq,
        LoadedDataset::Erc(_) => Shape::Erc,
    };
    if shape != want {
        let other = match shape {
            Shape::Seq => "sequences",
            Shape::Erc => "dialogues",
        };
        return Err(TrainError::Dataset(format!(
            "{name} trains on {}, not {other}",
            want.describe()
        )));
    }
    check_splits(req, &data)?;
    if req.select_split == Split::Valid && split_len(&data, Split::Valid) == 0 {
        return Err(TrainError::InvalidParam {
            key: "metrics.select_split".into(),
            message: "the dataset has no validation split (check `valid_rate` or \
                      `[training] valid_fraction`), but epochs are selected on it; \
                      select on the test split with select_split = \"test\" or give \
                      the validation split examples"
                .into(),
        });
    }
    Ok(data)
}

/// A model trained on nothing, or scored on nothing, gives numbers that
/// mean nothing: a trial whose training or test split is empty fails
/// instead of reporting them.
pub fn check_splits(req: &TrialRequest, data: &LoadedDataset) -> Result<(), TrainError> {
    for (split, what) in [
        (Split::Train, "training split: nothing to train on"),
        (
            Split::Test,
            "test split: the reported metrics are computed on it",
        ),
    ] {
        if split_len(data, split) == 0 {
            return Err(TrainError::Dataset(format!(
                "{} has no examples in its {what}",
                req.dataset.describe()
            )));
        }
    }
    Ok(())
}

/// How many examples (utterances for dialogue data) `split` of `data` holds.
fn split_len(data: &LoadedDataset, split: Split) -> usize {
    match data {
        LoadedDataset::Seq(d) => match split {
            Split::Train => d.train.len(),
            Split::Valid => d.valid.len(),
            Split::Test => d.test.len(),
        },
        LoadedDataset::Erc(d) => {
            let dialogues = match split {
                Split::Train => &d.train,
                Split::Valid => &d.valid,
                Split::Test => &d.test,
            };
            dialogues.iter().map(|x| x.labels.len()).sum()
        }
    }
}

/// The workload of a trial, ready to train: a training program started
/// (`model = "command"`), or a built-in model checked ([`check_request`]),
/// its dataset loaded ([`load_checked`]) and built on `backend`.
pub fn open(req: &TrialRequest, backend: BackendKind) -> Result<Box<dyn Workload>, TrainError> {
    if req.model == sigsweep_types::command::COMMAND_MODEL {
        return Ok(Box::new(command::CommandWorkload::start(req)?));
    }
    if let Some(workload) = open_extension(req, backend) {
        return workload;
    }
    let dataset = load_checked(req)?;
    build(req, dataset, backend)
}

/// Builds the workload for a trial on `backend`.
pub fn build(
    req: &TrialRequest,
    data: LoadedDataset,
    backend: BackendKind,
) -> Result<Box<dyn Workload>, TrainError> {
    match backend {
        BackendKind::Cpu => build_on::<crate::backend::Cpu>(req, data, &Default::default()),
        #[cfg(feature = "cuda")]
        BackendKind::Cuda => {
            let device = crate::backend::cuda_device(0).map_err(TrainError::Backend)?;
            build_on::<crate::backend::Cuda>(req, data, &device)
        }
        #[cfg(not(feature = "cuda"))]
        BackendKind::Cuda => Err(TrainError::Backend(
            crate::backend::check_available(BackendKind::Cuda)
                .err()
                .unwrap_or_default(),
        )),
    }
}

/// A dataset of the wrong shape for `name` (callers check with
/// [`load_checked`] first; this is the error if one did not).
fn wrong_shape(entry: &Entry) -> TrainError {
    TrainError::Dataset(format!(
        "{} trains on {}",
        entry.name,
        entry.shape.describe()
    ))
}

fn build_on<B: AutodiffBackend>(
    req: &TrialRequest,
    data: LoadedDataset,
    device: &B::Device,
) -> Result<Box<dyn Workload>, TrainError> {
    let entry = check_request(req)?;
    Ok(match (entry.kind, data) {
        (Kind::LateFusion, LoadedDataset::Seq(d)) => {
            Box::new(late_fusion::LateFusionWorkload::<B>::new(req, d, device)?)
        }
        (Kind::FdCmdie, LoadedDataset::Seq(d)) => {
            Box::new(fdcmdie::FdCmdieWorkload::<B>::new(req, d, device)?)
        }
        (Kind::Mmic(variant), LoadedDataset::Erc(d)) => Box::new(
            mmic::MmicWorkload::<B>::with_variant(variant, req, d, device)?,
        ),
        _ => return Err(wrong_shape(entry)),
    })
}

/// Builds `req`'s workload on `device` of backend `B` (the plain
/// constructor) and hands it, as a [`Sharded`](crate::trial::Sharded)
/// workload, to `visitor` (the data-parallel strategy's loop).
pub fn build_sharded<B: AutodiffBackend, V: ShardedVisitor<B>>(
    req: &TrialRequest,
    data: LoadedDataset,
    device: &B::Device,
    visitor: V,
) -> Result<V::Output, TrainError> {
    let entry = check_request(req)?;
    if !entry.data_parallel {
        return Err(TrainError::InvalidParam {
            key: "gpus_per_trial".into(),
            message: format!(
                "data parallelism is not implemented for `{}`; use gpus_per_trial = 1",
                entry.name
            ),
        });
    }
    Ok(match (entry.kind, data) {
        (Kind::LateFusion, LoadedDataset::Seq(d)) => {
            visitor.visit(late_fusion::LateFusionWorkload::<B>::new(req, d, device)?)
        }
        (Kind::FdCmdie, LoadedDataset::Seq(d)) => {
            visitor.visit(fdcmdie::FdCmdieWorkload::<B>::new(req, d, device)?)
        }
        (Kind::Mmic(variant), LoadedDataset::Erc(d)) => visitor.visit(
            mmic::MmicWorkload::<B>::with_variant(variant, req, d, device)?,
        ),
        _ => return Err(wrong_shape(entry)),
    })
}

#[cfg(test)]
mod tests {
    use burn::module::{Module, ModuleVisitor, Param};
    use burn::prelude::*;

    use super::{fdcmdie, late_fusion, mmic, open};
    use crate::backend::{BackendKind, Cpu};
    use crate::tensor::{materialize, parameter_count};
    use crate::trial::{DatasetRequest, Params, Split, TrainError, TrialRequest, Value};

    fn request(model: &str, generator: &str, data: serde_json::Value, width: &str) -> TrialRequest {
        let mut params = Params::default();
        params.insert(width, Value::Int(8192));
        TrialRequest {
            trial_id: "t".into(),
            seed: 1,
            model: model.into(),
            params,
            dataset: DatasetRequest {
                kind: "synthetic".into(),
                generator: generator.into(),
                path: String::new(),
                params: data,
                fold: None,
            },
            select: "loss".into(),
            select_higher_is_better: false,
            select_split: Split::Test,
            checkpoint: None,
            program: None,
        }
    }

    /// The count of a lazily built model draws none of its weights and
    /// equals burn's count of the drawn model.
    fn counts_before_drawing<M: Module<Cpu>>(model: &M) {
        struct Drawn(usize);
        impl<B: Backend> ModuleVisitor<B> for Drawn {
            fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<B, D>>) {
                self.0 += usize::from(param.is_initialized());
            }
        }
        let count = parameter_count::<Cpu, M>(model);
        let mut drawn = Drawn(0);
        model.visit(&mut drawn);
        assert_eq!(drawn.0, 0, "counting drew weights");
        materialize::<Cpu, M>(model);
        assert!(count > 0);
        assert_eq!(count, model.num_params() as u64);
    }

    #[test]
    fn every_model_is_counted_before_any_weight_is_drawn() {
        let device = Default::default();
        counts_before_drawing(&late_fusion::LateFusion::<Cpu>::new(
            [5, 3, 4],
            6,
            7,
            1,
            0.0,
            &device,
        ));
        let config = fdcmdie::FdCmdieConfig {
            dims: [6, 3, 4],
            lens: [4, 5, 3],
            width: 8,
            heads: 2,
            layers: 2,
            dropout: 0.0,
            lstm_layers: 2,
            use_cmdie: true,
            use_gap: true,
            use_cross_att2: true,
        };
        counts_before_drawing(&fdcmdie::FdCmdie::<Cpu>::new(&config, &device));
        let spec = serde_json::json!({ "preset": "small", "n_train": 4, "n_test": 2 });
        let data = sigsweep_data::synthetic::synthetic_erc(
            &serde_json::from_value(spec).expect("params"),
            1,
        )
        .expect("data");
        for variant in [mmic::Variant::Mmic, mmic::Variant::MmDfn] {
            let cfg =
                mmic::MmicConfig::from_params(variant, &Params::default(), &data).expect("config");
            counts_before_drawing(&mmic::Mmic::<Cpu>::new(&cfg.net, &device));
        }
    }

    /// A model that cannot fit fails its trial with a reason before it
    /// takes its memory: 8·10⁶-dim text features into 8 192 units are at
    /// least 6.6·10¹⁰ parameters (1 TiB to train). Were the check after
    /// the weights are drawn, this test would abort on the allocation.
    #[test]
    fn a_model_too_large_for_the_machine_fails_before_it_is_drawn() {
        let erc = serde_json::json!({
            "preset": "small", "n_train": 1, "n_test": 1, "valid_rate": 0.0,
            "min_len": 2, "max_len": 2, "mean_len": 2.0, "dims": [8_000_000, 4, 4],
        });
        let seq = serde_json::json!({
            "preset": "small", "n_train": 1, "n_valid": 1, "n_test": 1,
            "text": [1, 8_000_000], "audio": [1, 4], "vision": [1, 4],
        });
        for (model, generator, data, width) in [
            ("mmic", "erc", erc.clone(), "hidden"),
            ("mmdfn", "erc", erc, "hidden"),
            ("late-fusion", "msa", seq.clone(), "modality_hidden"),
            ("fdcmdie", "msa", seq, "width"),
        ] {
            let req = request(model, generator, data, width);
            let err = match open(&req, BackendKind::Cpu) {
                Ok(_) => panic!("{model}: a 1 TiB model was built"),
                Err(e) => e,
            };
            assert!(matches!(err, TrainError::Memory(_)), "{model}: {err}");
            let msg = err.to_string();
            assert!(msg.contains("text 8000000, audio 4, visual 4"), "{msg}");
        }
    }
}
