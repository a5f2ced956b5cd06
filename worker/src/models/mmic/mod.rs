//! `mmic` (alias `mmdfn`): MMIC — MM-DFN plus supervised contrastive
//! learning and hierarchical mutual-information maximisation (CCL 2023),
//! for emotion recognition in conversation.
//!
//! The `mmdfn` model is MM-DFN (graph_type GDF, spec section C) trained as
//! its `run_train_erc.py` and scripts train it: the auxiliary losses off
//! (`alpha = beta = zeta = 0`), the GRU text encoder, focal loss γ 0.5,
//! its class weights on IEMOCAP, batch 32, Adam ε 1e-8 with coupled L2.
//! `mmic` with `losses = "none"` is NOT MM-DFN unless those settings match.
//!
//! # Forward pass (spec C, paper §3)
//! * text: `Linear(Dt → hidden)` then a `text_layers`-layer (default 2)
//!   bidirectional LSTM (`text_encoder = "lstm"`, paper) or GRU (`"gru"`,
//!   MM-DFN), `hidden / 2` units per direction, dropout between layers;
//!   audio / visual: one `Linear(D → hidden)` each (`hidden` = 200).
//! * speaker ("party") encoder: one shared 2-layer BiGRU(hidden → hidden)
//!   over each speaker's own utterances of a dialogue, for every modality,
//!   added with weights γ (eq. 4): `x^m = c^m + γ_m s^m`; the text input of
//!   the party GRU is the linear-projected text (MM-DFN). Params
//!   `speaker_weights = "γa-γv-γt"` (default "3-0-1") or `gamma_a`,
//!   `gamma_v`, `gamma_t` (these win). A modality with γ = 0 skips the GRU.
//! * graph: 3N nodes `[audio; visual; text]`, intra-modal edges between
//!   all utterances of a dialogue (self loops included), inter-modal edges
//!   between the three nodes of an utterance, weights
//!   `1 − arccos(0.99999·cos)/π`, `D^{-1/2} A D^{-1/2}`; dense `3N×3N` per
//!   batch (block-diagonal per dialogue), differentiable as in PyTorch.
//! * `layers` (K, default 16) GCNII layers with the LSTM gate across
//!   layers (spec C.6), `graph_hidden` 100, θ_k = ln(λ/k + 1),
//!   `gcn_alpha` 0.2, `gcn_lambda` 0.5.
//! * classifier: `Linear(relu(dropout(F)))` with
//!   `F = [x^a‖o^a‖x^v‖o^v‖x^t‖o^t]` (900-d).
//!
//! # Losses
//! `L = L_task + alpha·L_SCL + beta·L_CPC + zeta·L_BA` (paper eq. 20).
//! `losses` (default "all") switches auxiliary losses off without touching
//! their weights: "none" (= MM-DFN's loss), "scl" (= −MI), "cpc+ba"
//! (= −Contrast), so one grid key can hold MMIC and its ablations. The
//! `mmdfn` model is MM-DFN's training as its code runs it (below); compare
//! against it by making `model.name` a grid key.
//! * `L_task`: MM-DFN's focal loss `−mean_i (1 − p_i)^γ · w_{y_i} · log p_i`
//!   (`focal_gamma`; 0 = cross-entropy; `mmdfn` default 0.5 as its scripts),
//!   class weights with `class_weight = true` (`mmdfn` default: on for
//!   IEMOCAP, off elsewhere, as its two scripts): `class_weight_scheme =
//!   "inverse_frequency"` weighs class c by `1/freq_c` — MM-DFN's
//!   hard-coded IEMOCAP and MELD vectors (mean weight ≈ C), the training
//!   split's frequencies on other datasets — and `"balanced"` by
//!   `N / (C·count_c)` (mean 1). The L2 term is Adam's coupled weight
//!   decay `weight_decay` (alias `l2`), Adam ε = `adam_epsilon` (1e-8,
//!   PyTorch's).
//! * `L_SCL` (eqs. 7–9): SupCon over `X = [F; detach(F)]`,
//!   `scl_temperature` (0.1); positives `P(i)` = same label but `i` (so the
//!   anchor's own copy is one), denominator over `A(i) = I − {i, N + i}`.
//! * `L_CPC`: Σ_m InfoNCE between `x^m` and `G_φ^m(F)` (Linear 900 → 200).
//! * `L_BA = −Σ_{m∈{a,v}} (lld(x^t → x^m) + H(x^m))`.
//!
//! # \[design\] choices (paper / spec silent) and deviations
//! * SCL representation = the classifier input `F`; rows L2-normalised;
//!   mean over the 2N anchors (the paper writes a sum); the copy's views
//!   are constants (gradient reaches `F` only through its live rows).
//! * CPC: fusion `Z = F`, modality vectors `h_m = x^m` (graph inputs),
//!   one linear predictor per modality, temperature 1, negatives = all
//!   utterances of the batch.
//! * BA: `x = x^t`, `y ∈ {x^a, x^v}`; predictor MLPs `Linear → ReLU →
//!   Linear` (200 → 200 → 200) for μ and log σ² (clamped to ±10). The
//!   log-likelihood keeps the `−½ log σ²` normaliser (MMIM drops it, which
//!   lets σ² grow without bound); the `−½ log 2π` constant is dropped.
//! * Entropy `H(Y) = ¼ Σ_g log det(Σ_g + 1e-4·I)` over the valence groups
//!   of `ỹ = tanh(P y)` with a fixed random `P: 200 → ba_entropy_dim`
//!   (default 8; MMIM 16 → 4, never trained); groups with fewer than
//!   `dim + 1` samples are skipped; the previous batch's detached ỹ are
//!   appended (MMIM mem_size 1, reset every epoch). Negative group:
//!   IEMOCAP {sad, ang, fru}; MELD/M3ED {sad, ang, dis, fea} by class
//!   name; datasets without known names (synthetic `small`) use the upper
//!   half of the class indices; `negative_classes = "1-3-5"` overrides.
//! * **Deviation from MMIM's schedule.** MMIM alternates whole passes:
//!   every epoch is a full pass of stage 0 over the training set (only
//!   the BA heads learn, from `−Σ lld` on detached inputs) followed by a
//!   full pass of stage 1 (the main loss, heads fixed). Here both stages
//!   run in ONE forward/backward per batch: stage 0's loss is computed on
//!   detached `(x, y)` and only its gradients reach the BA heads (their
//!   own Adam, `mi_lr` 1e-3, weight decay 1e-4, global-norm clip 1 as
//!   MMIM); the main loss uses the heads with detached parameters and
//!   steps everything else. So each epoch is one pass, and stage 1 of a
//!   batch sees the heads from before that batch's stage-0 step.
//! * Recurrences run as MM-DFN runs them, by default (`rnn_padding =
//!   "unpacked"`): its GRUs run on padded tensors without packing, so the
//!   backward direction starts in the padding of the batch's longest
//!   dialogue, and an utterance's output depends on which dialogues share
//!   its batch (evaluation batches are the split's dialogues in file order,
//!   `batch_size` at a time, as MM-DFN's test loader). This holds for the
//!   text and speaker GRUs; data-parallel shards pad to the whole batch's
//!   longest dialogue, so they still equal the plain trainer. MMIC is built
//!   on MM-DFN's code and inherits it. `rnn_padding = "packed"` runs packed
//!   sequences instead (the backward direction ignores trailing padding;
//!   outputs do not depend on the batch).
//! * Every weight is drawn eagerly when the model is built, in the
//!   module's order, before any dropout mask, and all modules (CPC and BA
//!   heads included) are always allocated: the same seed gives the same
//!   initial network for every α, β, ζ and for the plain and the
//!   data-parallel trainer.
//! * Unused-but-allocated MM-DFN modules (spec C.8) are omitted.
//! * Optimiser: Adam with coupled L2 (`weight_decay`), clipping of the
//!   global gradient norm at `grad_clip` when > 0, as
//!   `torch.nn.utils.clip_grad_norm_` (MM-DFN: none); batches =
//!   `batch_size` dialogues (`mmic` 16 as the MMIC paper, `mmdfn` 32 as
//!   MM-DFN), reshuffled every epoch from the trial seed. MM-DFN re-seeds
//!   its RNGs before every pass over the data, so its batch order (and its
//!   dropout masks) repeat every epoch: `batch_order = "fixed"` repeats the
//!   first epoch's order every epoch (the dropout masks still differ);
//!   the default is `"reshuffle"` for both models.

pub mod batch;
pub mod graph;
pub mod losses;
pub mod net;
pub mod rnn;
pub mod weights;

mod config;
mod sharded;

pub use config::{MmicConfig, MmicSettings, Scheme, Variant, class_weights, negative_classes};

use std::collections::BTreeMap;
use std::sync::atomic::AtomicBool;

use burn::module::{AutodiffModule, ModuleVisitor, Param};
use burn::optim::adaptor::OptimizerAdaptor;
use burn::optim::decay::WeightDecayConfig;
use burn::optim::{Adam, AdamConfig, GradientsParams, Optimizer};
use burn::prelude::*;
use burn::tensor::activation::log_softmax;
use burn::tensor::backend::AutodiffBackend;
use rand::seq::SliceRandom;
use rand_chacha::ChaCha8Rng;

use sigsweep_data::erc::{Dialogue, ErcDataset};
use sigsweep_data::metrics::classification_metrics;

use crate::trial::{
    EpochSeed, Params, Prediction, ReplicaOptim, Split, TrainError, TrialRequest, Weights,
    Workload, WorkloadState, clip_grad_norm, restore_trainer, save_trainer, train_epoch_steps,
};

pub use batch::HostBatch;
pub use net::{Mmic, MmicNet, NetConfig};

/// The losses of one batch (scalars) for logging and tests.
#[derive(Debug, Clone, Default)]
pub struct LossParts {
    pub task: f64,
    pub scl: f64,
    pub cpc: f64,
    pub ba: f64,
    pub total: f64,
}

type Optim<B> = OptimizerAdaptor<Adam, Mmic<B>, B>;

/// RNG stream of the batch order (of the trial seed).
const SHUFFLE_STREAM: u64 = 100;

/// MMIC's two optimisers as one update: the network's Adam (coupled L2,
/// optional clip-norm) on every gradient except the mutual-information
/// heads', and the heads' own Adam (`mi_lr`, weight decay 1e-4, clip-norm
/// at 1.0) on theirs (stage 0 of the MMIM update). Used by the plain and
/// the data-parallel trainer.
#[derive(Clone)]
pub struct MmicOptim<B: AutodiffBackend> {
    main: Optim<B>,
    mi: Optim<B>,
    mi_lr: f64,
    /// Global-norm clipping of the network's gradients (`grad_clip`).
    clip: Option<f64>,
}

/// MMIM clips the mutual-information heads' gradients at a global norm of 1.
const MI_CLIP: f64 = 1.0;

impl<B: AutodiffBackend> ReplicaOptim<B, Mmic<B>> for MmicOptim<B> {
    fn update(&mut self, lr: f64, model: Mmic<B>, mut grads: GradientsParams) -> Mmic<B> {
        struct TakeHeads<'a> {
            from: &'a mut GradientsParams,
            into: GradientsParams,
        }
        impl<B: AutodiffBackend> ModuleVisitor<B> for TakeHeads<'_> {
            fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<B, D>>) {
                if let Some(g) = self.from.remove::<B::InnerBackend, D>(param.id) {
                    self.into.register(param.id, g);
                }
            }
        }
        let mut heads = TakeHeads {
            from: &mut grads,
            into: GradientsParams::new(),
        };
        model.mi.visit(&mut heads);
        let mut heads = heads.into;
        if let Some(max) = self.clip {
            clip_grad_norm::<B, _>(&model, &mut grads, max);
        }
        let model = self.main.step(lr, model, grads);
        if heads.is_empty() {
            model
        } else {
            clip_grad_norm::<B, _>(&model, &mut heads, MI_CLIP);
            self.mi.step(self.mi_lr, model, heads)
        }
    }
}

pub struct MmicWorkload<B: AutodiffBackend> {
    pub(crate) model: Option<Mmic<B>>,
    pub(crate) optim: MmicOptim<B>,
    pub(crate) data: ErcDataset,
    pub(crate) cfg: MmicConfig,
    pub(crate) class_weights: Vec<f32>,
    pub(crate) device: B::Device,
    rng: ChaCha8Rng,
    /// The trial seed (a fixed batch order redraws the same order from it).
    seed: u64,
    epoch: EpochSeed,
    /// Previous batch's detached ỹ per BA head, `[negative, non-negative]`.
    pub(crate) memory: Memory<B>,
    /// Loss parts of the last training step.
    pub last: LossParts,
}

/// The BA entropy's memory: per BA head, the previous batch's detached ỹ of
/// the negative and the non-negative group.
pub(crate) type Memory<B> = Vec<[Option<Tensor<B, 2>>; 2]>;

fn scalar<B: Backend>(t: &Tensor<B, 1>) -> f64 {
    t.clone().into_scalar().elem::<f64>()
}

/// The auxiliary losses of one batch from its features — the fusion `f`
/// `[N, 900]`, the graph inputs `e` `[N, hidden]` ×3 — and labels: returns
/// `α·L_SCL + β·L_CPC + ζ·L_BA` (None when all are off) and the stage-0 MI
/// loss of the BA heads (None without BA), and fills `parts`. Every term
/// is computed over the whole batch (in-batch negatives, valence groups),
/// which is why data parallelism gathers the features before calling it.
#[allow(clippy::too_many_arguments)]
pub(crate) fn aux_losses<B: AutodiffBackend>(
    cfg: &MmicConfig,
    memory: &mut Memory<B>,
    model: &Mmic<B>,
    f: Tensor<B, 2>,
    e: [Tensor<B, 2>; 3],
    labels: &[usize],
    dev: &B::Device,
    parts: &mut LossParts,
) -> (Option<Tensor<B, 1>>, Option<Tensor<B, 1>>) {
    let n = labels.len();
    let mut loss: Option<Tensor<B, 1>> = None;
    let add = |loss: &mut Option<Tensor<B, 1>>, t: Tensor<B, 1>| {
        *loss = Some(match loss.take() {
            None => t,
            Some(l) => l + t,
        });
    };
    if cfg.alpha > 0.0 {
        let scl = losses::supcon_loss(f.clone(), labels, cfg.tau, true);
        parts.scl = scalar(&scl);
        add(&mut loss, scl * cfg.alpha);
    }
    if cfg.beta > 0.0 {
        let mut cpc: Option<Tensor<B, 1>> = None;
        for (head, x) in model.net.cpc.iter().zip(&e) {
            let pred = head.forward(f.clone());
            add(&mut cpc, losses::cpc_loss(x.clone(), pred));
        }
        if let Some(cpc) = cpc {
            parts.cpc = scalar(&cpc);
            add(&mut loss, cpc * cfg.beta);
        }
    }
    let mut mi_loss = None;
    if cfg.zeta > 0.0 {
        let x = e[2].clone();
        let neg_rows: Vec<i64> = (0..n)
            .filter(|&i| cfg.negative[labels[i]])
            .map(|i| i as i64)
            .collect();
        let pos_rows: Vec<i64> = (0..n)
            .filter(|&i| !cfg.negative[labels[i]])
            .map(|i| i as i64)
            .collect();
        let mut ba: Option<Tensor<B, 1>> = None;
        let mut stage0: Option<Tensor<B, 1>> = None;
        for (k, m) in [0usize, 1].into_iter().enumerate() {
            let head = &model.mi.heads[k];
            let y = e[m].clone();
            let (mu, lv) = head.predict(x.clone(), true);
            let lld = losses::gaussian_lld(mu, lv, y.clone());
            let yt = head.project(y.clone());
            let mut groups = Vec::new();
            let mut new_mem: [Option<Tensor<B, 2>>; 2] = [None, None];
            for (g, rows) in [&neg_rows, &pos_rows].into_iter().enumerate() {
                let mut parts_g = Vec::new();
                if !rows.is_empty() {
                    let sel = yt.clone().select(
                        0,
                        Tensor::from_data(TensorData::new(rows.clone(), [rows.len()]), dev),
                    );
                    new_mem[g] = Some(sel.clone().detach());
                    parts_g.push(sel);
                }
                if let Some(mem) = &memory[k][g] {
                    parts_g.push(mem.clone());
                }
                if !parts_g.is_empty() {
                    groups.push(Tensor::cat(parts_g, 0));
                }
            }
            memory[k] = new_mem;
            let mut term = lld.neg();
            if let Some(h) = losses::gmm_entropy(groups, 1e-4) {
                term = term - h;
            }
            add(&mut ba, term);
            let (mu0, lv0) = head.predict(x.clone().detach(), false);
            add(
                &mut stage0,
                losses::gaussian_lld(mu0, lv0, y.detach()).neg(),
            );
        }
        if let Some(ba) = ba {
            parts.ba = scalar(&ba);
            add(&mut loss, ba * cfg.zeta);
        }
        mi_loss = stage0;
    }
    (loss, mi_loss)
}

impl<B: AutodiffBackend> MmicWorkload<B> {
    /// The MMIC workload of `req` (its defaults; see [`Self::with_variant`]).
    pub fn new(
        req: &TrialRequest,
        data: ErcDataset,
        device: &B::Device,
    ) -> Result<Self, TrainError> {
        Self::with_variant(Variant::Mmic, req, data, device)
    }

    /// The workload of `req` with `variant`'s defaults (the registry passes
    /// the variant its entry names).
    pub fn with_variant(
        variant: Variant,
        req: &TrialRequest,
        data: ErcDataset,
        device: &B::Device,
    ) -> Result<Self, TrainError> {
        let cfg = MmicConfig::from_params(variant, &req.params, &data)?;
        if data.train.is_empty() {
            return Err(TrainError::Dataset("no training dialogues".into()));
        }
        if cfg.negative.len() != data.n_classes {
            return Err(TrainError::Dataset("class count mismatch".into()));
        }
        let class_weights = cfg.class_weights.clone();
        B::seed(device, req.seed);
        let model = Mmic::new(&cfg.net, device);
        // Draw every weight now, in the module's visiting order, before any
        // dropout mask: lazily they would be drawn in order of first use,
        // interleaved with dropout, and the data-parallel trainer (whose
        // replicas draw dropout in another order) would start from another
        // network for the same seed.
        crate::trial::memory::materialize_within_memory::<B, _>(&model, device, data.dims)?;
        let main = AdamConfig::new()
            .with_epsilon(cfg.adam_epsilon as f32)
            .with_weight_decay(
                (cfg.weight_decay > 0.0).then(|| WeightDecayConfig::new(cfg.weight_decay as f32)),
            )
            .init::<B, Mmic<B>>();
        let mi = AdamConfig::new()
            .with_epsilon(cfg.adam_epsilon as f32)
            .with_weight_decay(Some(WeightDecayConfig::new(1e-4)))
            .init::<B, Mmic<B>>();
        Ok(Self {
            model: Some(model),
            optim: MmicOptim {
                main,
                mi,
                mi_lr: cfg.mi_lr,
                clip: (cfg.grad_clip > 0.0).then_some(cfg.grad_clip),
            },
            data,
            cfg,
            class_weights,
            device: device.clone(),
            rng: sigsweep_data::synthetic::rng(req.seed, SHUFFLE_STREAM),
            seed: req.seed,
            epoch: EpochSeed::new(req.seed),
            memory: vec![[None, None], [None, None]],
            last: LossParts::default(),
        })
    }

    pub fn config(&self) -> &MmicConfig {
        &self.cfg
    }

    pub fn model(&self) -> Option<&Mmic<B>> {
        self.model.as_ref()
    }

    /// Whether the loss has a batch-wide term (SCL, CPC or BA).
    pub fn has_aux_losses(&self) -> bool {
        self.cfg.alpha > 0.0 || self.cfg.beta > 0.0 || self.cfg.zeta > 0.0
    }

    /// The task loss of one batch: cross-entropy (or focal loss) averaged
    /// over its utterances.
    pub(crate) fn task_loss<BB: Backend>(
        &self,
        logits: Tensor<BB, 2>,
        labels: &[usize],
    ) -> Tensor<BB, 1> {
        losses::focal_loss(logits, labels, self.cfg.focal_gamma, &self.class_weights)
    }

    /// Main loss and stage-0 MI loss of one batch (training mode).
    fn losses(
        &mut self,
        model: &Mmic<B>,
        hb: &HostBatch,
    ) -> (Tensor<B, 1>, Option<Tensor<B, 1>>, LossParts) {
        let fwd = model.net.forward(hb, &self.cfg.net, &self.device);
        let task = self.task_loss(fwd.logits, &hb.labels);
        let mut parts = LossParts {
            task: scalar(&task),
            ..Default::default()
        };
        let (aux, mi_loss) = aux_losses(
            &self.cfg,
            &mut self.memory,
            model,
            fwd.f,
            fwd.e,
            &hb.labels,
            &self.device,
            &mut parts,
        );
        let loss = match aux {
            Some(a) => task + a,
            None => task,
        };
        parts.total = scalar(&loss);
        (loss, mi_loss, parts)
    }

    /// One optimisation step on `dialogues`; returns the main loss parts.
    pub fn train_step(&mut self, dialogues: &[&Dialogue]) -> Result<LossParts, TrainError> {
        let model = self
            .model
            .take()
            .ok_or_else(|| TrainError::Backend("model lost after a failed step".into()))?;
        let hb = self.host_batch(dialogues, 0);
        let (loss, mi_loss, parts) = self.losses(&model, &hb);
        let objective = match mi_loss {
            Some(m) => loss + m,
            None => loss,
        };
        let grads = GradientsParams::from_grads(objective.backward(), &model);
        self.model = Some(self.optim.update(self.cfg.lr, model, grads));
        self.last = parts.clone();
        Ok(parts)
    }

    /// The host-side batch of `dialogues`; with `rnn_padding = "unpacked"`
    /// its recurrences run through the padding up to `pad_to` steps (or the
    /// longest dialogue), as MM-DFN's.
    pub(crate) fn host_batch(&self, dialogues: &[&Dialogue], pad_to: usize) -> HostBatch {
        let hb = HostBatch::new(dialogues, self.data.dims);
        if self.cfg.unpacked_rnn {
            hb.unpacked(pad_to)
        } else {
            hb
        }
    }

    /// The next epoch's batches (indices of non-empty training dialogues,
    /// reshuffled from the trial's RNG, `batch_size` dialogues each; with
    /// `batch_order = "fixed"` the first epoch's order every epoch); resets
    /// the BA memory, as every epoch starts without one.
    pub(crate) fn epoch_batches(&mut self) -> Vec<Vec<usize>> {
        self.epoch.start::<B>(&self.device);
        self.memory = vec![[None, None], [None, None]];
        if self.cfg.fixed_order {
            self.rng = sigsweep_data::synthetic::rng(self.seed, SHUFFLE_STREAM);
        }
        let mut order: Vec<usize> = (0..self.data.train.len())
            .filter(|&i| !self.data.train[i].is_empty())
            .collect();
        order.shuffle(&mut self.rng);
        order
            .chunks(self.cfg.batch_size)
            .map(<[usize]>::to_vec)
            .collect()
    }

    /// Dialogues per evaluation batch: `batch_size`, as MM-DFN's test
    /// loader, when the recurrences run through the padding (then the batch
    /// matters); at least 16 with packed recurrences (it does not).
    fn eval_batch(&self) -> usize {
        if self.cfg.unpacked_rnn {
            self.cfg.batch_size
        } else {
            self.cfg.batch_size.max(16)
        }
    }

    /// Predicted class of every utterance of `dialogues`, in order.
    pub fn predict(&self, dialogues: &[Dialogue]) -> Result<Vec<usize>, TrainError> {
        let model = self
            .model
            .as_ref()
            .ok_or_else(|| TrainError::Backend("model lost".into()))?
            .valid();
        Ok(self.predict_with(&model, dialogues))
    }

    /// Predictions of `model` on `dialogues`.
    pub(crate) fn predict_with(
        &self,
        model: &Mmic<B::InnerBackend>,
        dialogues: &[Dialogue],
    ) -> Vec<usize> {
        let mut preds = Vec::new();
        let refs: Vec<&Dialogue> = dialogues.iter().filter(|d| !d.is_empty()).collect();
        for chunk in refs.chunks(self.eval_batch()) {
            let hb = self.host_batch(chunk, 0);
            let fwd = model.net.forward(&hb, &self.cfg.net, &self.device);
            let arg = fwd.logits.argmax(1).into_data();
            preds.extend(arg.iter::<i64>().map(|x| x as usize));
        }
        preds
    }

    /// Per-utterance predictions of `model` on `which`, in dialogue order:
    /// id `<dialogue id>/<utterance index>`, gold and predicted class, and
    /// the log-probabilities.
    pub(crate) fn predictions_with(
        &self,
        model: &Mmic<B::InnerBackend>,
        which: Split,
    ) -> Vec<Prediction> {
        let dialogues = match which {
            Split::Train => &self.data.train,
            Split::Valid => &self.data.valid,
            Split::Test => &self.data.test,
        };
        let c = self.data.n_classes;
        let mut out = Vec::new();
        let refs: Vec<&Dialogue> = dialogues.iter().filter(|d| !d.is_empty()).collect();
        for chunk in refs.chunks(self.eval_batch()) {
            let hb = self.host_batch(chunk, 0);
            let fwd = model.net.forward(&hb, &self.cfg.net, &self.device);
            let logp = crate::tensor::to_f32_vec(log_softmax(fwd.logits, 1));
            let mut rows = logp.chunks(c.max(1));
            for d in chunk {
                for (t, &gold) in d.labels.iter().enumerate() {
                    let row = rows.next().map(<[f32]>::to_vec).unwrap_or_default();
                    let pred = row
                        .iter()
                        .enumerate()
                        .fold((0, f32::NEG_INFINITY), |best, (k, &v)| {
                            if v > best.1 { (k, v) } else { best }
                        })
                        .0;
                    out.push(Prediction {
                        id: format!("{}/{t}", d.id),
                        gold: gold as f64,
                        pred: pred as f64,
                        log_probs: Some(row),
                    });
                }
            }
        }
        out
    }

    /// Classification metrics of `model` on `which`.
    pub(crate) fn evaluate_with(
        &self,
        model: &Mmic<B::InnerBackend>,
        which: Split,
    ) -> BTreeMap<String, f64> {
        let dialogues = match which {
            Split::Train => &self.data.train,
            Split::Valid => &self.data.valid,
            Split::Test => &self.data.test,
        };
        let preds = self.predict_with(model, dialogues);
        let truth: Vec<usize> = dialogues
            .iter()
            .flat_map(|d| d.labels.iter().copied())
            .collect();
        classification_metrics(&truth, &preds, self.data.n_classes)
    }
}

impl<B: AutodiffBackend> Workload for MmicWorkload<B> {
    fn train_epoch(&mut self, epoch: u32, cancel: &AtomicBool) -> Result<f64, TrainError> {
        let batches = self.epoch_batches();
        let train = std::mem::take(&mut self.data.train);
        let mean = train_epoch_steps(&batches, epoch, cancel, |idx| {
            let batch: Vec<&Dialogue> = idx.iter().map(|&i| &train[i]).collect();
            self.train_step(&batch).map(|parts| parts.total)
        });
        self.data.train = train;
        mean
    }

    fn evaluate(&self, which: Split) -> Result<BTreeMap<String, f64>, TrainError> {
        let model = self
            .model
            .as_ref()
            .ok_or_else(|| TrainError::Backend("model lost".into()))?
            .valid();
        Ok(self.evaluate_with(&model, which))
    }

    fn predictions(&self, which: Split) -> Result<Vec<Prediction>, TrainError> {
        let model = self
            .model
            .as_ref()
            .ok_or_else(TrainError::model_lost)?
            .valid();
        Ok(self.predictions_with(&model, which))
    }

    fn weights(&self) -> Result<Weights, TrainError> {
        let model = self.model.as_ref().ok_or_else(TrainError::model_lost)?;
        weights::export(model, self.cfg.variant, self.data.n_speakers)
    }

    fn load_weights(&mut self, file: Weights) -> Result<(), TrainError> {
        let model = self.model.as_ref().ok_or_else(TrainError::model_lost)?;
        let model = weights::import(model.clone(), file, self.cfg.variant, self.data.n_speakers)?;
        self.model = Some(model);
        Ok(())
    }

    fn state(&self) -> Result<WorkloadState, TrainError> {
        let model = self.model.as_ref().ok_or_else(TrainError::model_lost)?;
        save_trainer::<B, _, _>(
            model,
            &[("main", &self.optim.main), ("mi", &self.optim.mi)],
            &[("shuffle", &self.rng)],
            &self.epoch,
        )
    }

    fn restore(&mut self, state: &WorkloadState) -> Result<(), TrainError> {
        let model = self.model.take().ok_or_else(TrainError::model_lost)?;
        let MmicOptim { main, mi, .. } = &mut self.optim;
        self.model = Some(restore_trainer::<B, _, _>(
            state,
            model,
            &mut [("main", main), ("mi", mi)],
            &mut [("shuffle", &mut self.rng)],
            &mut self.epoch,
            &self.device,
        )?);
        Ok(())
    }
}

/// Trial parameters of the IEMOCAP-shaped benchmark workload (synthetic
/// `iemocap` preset: dims 100/1582/342, 6 classes, 108 train dialogues of
/// mean length ≈ 48; batch 16 dialogues → 7 steps per epoch, K = 16).
pub fn bench_params() -> Params {
    use crate::trial::Value;
    let mut p = Params::default();
    p.insert("alpha", Value::Float(1.0));
    p.insert("beta", Value::Float(0.05));
    p.insert("zeta", Value::Float(0.05));
    p.insert("layers", Value::Int(16));
    p.insert("batch_size", Value::Int(16));
    p.insert("lr", Value::Float(3e-4));
    p.insert("weight_decay", Value::Float(1e-4));
    p.insert("dropout", Value::Float(0.4));
    p
}

#[cfg(test)]
mod tests {
    use super::{MmicWorkload, Variant};
    use crate::backend::Cpu;
    use crate::trial::{DatasetRequest, Params, Split, TrialRequest, Value};

    fn workload(order: &str) -> MmicWorkload<Cpu> {
        let mut params = Params::default();
        for (k, v) in [
            ("batch_size", Value::Int(4)),
            ("hidden", Value::Int(8)),
            ("graph_hidden", Value::Int(4)),
            ("layers", Value::Int(1)),
            ("batch_order", Value::Text(order.into())),
        ] {
            params.insert(k, v);
        }
        let req = TrialRequest {
            trial_id: "t".into(),
            seed: 3,
            model: "mmdfn".into(),
            params,
            dataset: DatasetRequest::default(),
            select: "accuracy".into(),
            select_higher_is_better: true,
            select_split: Split::Valid,
            checkpoint: None,
            program: None,
        };
        let spec = serde_json::json!({ "preset": "small", "n_train": 24, "n_test": 4 });
        let data = sigsweep_data::synthetic::synthetic_erc(
            &serde_json::from_value(spec).expect("params"),
            3,
        )
        .expect("data");
        MmicWorkload::with_variant(Variant::MmDfn, &req, data, &Default::default())
            .expect("workload")
    }

    /// `batch_order = "fixed"` repeats the first epoch's batches (MM-DFN
    /// re-seeds before every pass); the default reshuffles.
    #[test]
    fn a_fixed_batch_order_repeats_every_epoch() {
        let mut fixed = workload("fixed");
        let first = fixed.epoch_batches();
        assert_eq!(fixed.epoch_batches(), first);
        let mut shuffled = workload("reshuffle");
        assert_eq!(shuffled.epoch_batches(), first, "same first epoch");
        assert_ne!(shuffled.epoch_batches(), first);
    }
}
