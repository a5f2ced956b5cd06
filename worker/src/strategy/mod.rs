//! The strategies that train trials: [`plain`] (one trial, one device),
//! [`data_parallel`] (one trial over several devices) and [`fused`] (the
//! seeds of one configuration as one batched model). Each drives a model
//! through the workload contract of [`crate::trial`] and applies the same
//! epoch-selection rule ([`crate::trial::outcome`]); [`crate::execute`]
//! chooses between them.
//!
//! Data parallelism and fusion are throughput features for small models.
//!
//! Our models have 1–3 M parameters, so one trial leaves a GPU mostly idle.
//! Two ways to use the hardware better, both generic over the burn backend
//! and tested for equivalence on the CPU backend:
//!
//! - [`data_parallel`]: a trial with `gpus_per_trial = g` trains `g`
//!   replicas on `g` devices (threads on the CPU backend). Each step splits
//!   the batch into `g` shards; replica `i` computes its shard's mean loss
//!   scaled by `n_i / n`, so the scaled losses sum to the full-batch mean
//!   loss; the gradients are summed with an [`AllReduce`]; and every replica
//!   applies the same optimiser step with the same summed gradients.
//!   **Invariant: the replicas stay identical** (they start from one
//!   materialised model and receive bit-identical gradients), so training
//!   with `g` replicas equals training on one device with the full batch up
//!   to floating-point summation order. Implemented for every model:
//!   `late-fusion` (samples), `fdcmdie` (anchors with their drawn
//!   contrastive samples) and `mmic` (whole dialogues; its batch-wide
//!   contrastive and mutual-information losses run once on gathered
//!   features, see [`DataParallel::step_gathered`]).
//! - [`fused`]: the `K` seeds of one configuration train as one batched model
//!   on one device (HFTA, MLSys 2021): every parameter gets a leading seed
//!   axis, slice `k` is initialised exactly as the unfused model of seed `k`,
//!   sees seed `k`'s own data in seed `k`'s own order, and the loss is the sum
//!   over seeds of each seed's mean loss. **Invariant: slice `k` of the fused
//!   model follows the unfused trajectory of seed `k`** — its gradient is the
//!   unfused gradient (the sum decouples the seeds), and AdamW is
//!   elementwise, so its update is the unfused update.
//! - [`bench`](mod@bench): timing hooks for `sigsweep bench train`.
//!
//! Both trainers keep [`plain::run_trial`]'s protocol: evaluate on
//! valid and test after every epoch, select the epoch on the selection
//! metric (first on ties), report test metrics there, and fail on a
//! non-finite training loss (fused: only that seed fails).

pub mod allreduce;
pub mod bench;
pub mod data_parallel;
pub mod fused;
pub mod plain;

pub use crate::backend::training_guard;
pub use crate::models::{supports_data_parallel, supports_fusion};
pub use crate::tensor::materialize;
pub use allreduce::{AllReduce, InProcessAllReduce, all_reduce_grads};
pub use bench::{BenchReport, bench_data_parallel, bench_fused, bench_sequential};
pub use data_parallel::{DataParallel, run_data_parallel};
pub use fused::{FusedFdCmdie, FusedLateFusion, FusedLinear, run_fused};
pub use plain::run_trial;
