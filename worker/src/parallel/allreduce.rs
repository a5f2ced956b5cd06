//! Gradient all-reduce between the replicas of a data-parallel trial.
//!
//! [`AllReduce`] sums one tensor per replica and gives every replica the sum
//! on its own device. [`all_reduce_grads`] walks a module's parameters (in the
//! module's visiting order, the same on every replica) and all-reduces each
//! parameter's gradient in place.
//!
//! # Implementations
//!
//! - [`InProcessAllReduce`]: gathers the gradients onto the first replica's
//!   device, sums them with tensor ops in replica order, and copies the sum
//!   back to every device. Works for the CPU backend (every "device" is
//!   `NdArrayDevice::Cpu`, replicas are threads) and for several GPUs driven
//!   from one process (`to_device` is a device-to-device copy through the
//!   runtime). Summation order is fixed, so results are deterministic.
//! - NCCL (not implemented here): with cudarc 0.19's `nccl` feature, an
//!   `NcclAllReduce` holds one `cudarc::nccl::Comm` per device (created with
//!   `Comm::from_devices`) and implements [`AllReduce::all_reduce`] by
//!   taking each tensor's CUDA buffer (burn-cuda → cubecl handle → raw device
//!   pointer on the replica's stream), calling `ncclAllReduce(sum)` for all
//!   replicas inside one `group_start`/`group_end`, and wrapping the buffers
//!   back as tensors. That is the only trait method to implement: the
//!   per-parameter walk, the loss scaling and the optimiser step do not
//!   change. Bucketing (flattening many small gradients into one buffer per
//!   call) matters for NCCL latency with 1–3 M parameter models; do it inside
//!   the implementation by concatenating the flattened tensors it receives
//!   through a batched entry point if profiling asks for it.
//! - burn-collective 0.21: burn's own collective crate (every peer calls
//!   `register`, then `all_reduce(peer_id, tensor, op)`; burn-optim wraps it
//!   as `GradientsParams::all_reduce` behind its `collective` feature). Two
//!   levels: *local* (peers are threads, one per device, in one process; a
//!   local server starts automatically and reduces with a centralized, tree
//!   or ring strategy using the backend's own device-to-device copies) and
//!   *global* (one process per node, peer-to-peer over burn's network layer,
//!   with a coordinator you start). It does not call NCCL. For one process
//!   driving a few devices its local level does what [`InProcessAllReduce`]
//!   does, at the price of peer registration, a server thread and a
//!   dependency configured in step with burn; it becomes worth it for
//!   trials spanning nodes, and it would plug in here as one more
//!   [`AllReduce`] implementation (each replica thread calls `all_reduce`
//!   for its own tensor instead of one caller reducing all of them, so the
//!   trait would move into the replica threads).

use burn::module::{AutodiffModule, ModuleVisitor, Param};
use burn::optim::GradientsParams;
use burn::prelude::*;
use burn::tensor::backend::AutodiffBackend;

use crate::trainer::TrainError;

/// Sums one tensor per replica and returns the sum to each replica.
///
/// `tensors[i]` lives on replica `i`'s device; the result's `i`-th tensor
/// must live there too. Every implementation must return the same values to
/// every replica (bit for bit), or the replicas drift apart.
pub trait AllReduce<B: Backend>: Send + Sync {
    fn all_reduce<const D: usize>(&self, tensors: Vec<Tensor<B, D>>) -> Vec<Tensor<B, D>>;
}

/// Gather on the first device, sum, broadcast back. See the module docs.
#[derive(Debug, Clone, Copy, Default)]
pub struct InProcessAllReduce;

impl<B: Backend> AllReduce<B> for InProcessAllReduce {
    fn all_reduce<const D: usize>(&self, tensors: Vec<Tensor<B, D>>) -> Vec<Tensor<B, D>> {
        if tensors.len() <= 1 {
            return tensors;
        }
        let devices: Vec<B::Device> = tensors.iter().map(Tensor::device).collect();
        let root = devices[0].clone();
        let mut iter = tensors.into_iter();
        let first = iter.next().expect("len checked above");
        let sum = iter.fold(first, |acc, t| acc + t.to_device(&root));
        devices.iter().map(|d| sum.clone().to_device(d)).collect()
    }
}

/// All-reduces (sums) the gradient of every parameter of `model` across
/// `grads` (one [`GradientsParams`] per replica, each on its replica's
/// device `devices[i]`). A parameter without a gradient on any replica
/// (unused in the forward pass) is left alone; a replica that lacks a
/// gradient others have (it had no samples in this step) contributes zeros.
pub fn all_reduce_grads<B, M, R>(
    model: &M,
    grads: &mut [GradientsParams],
    devices: &[B::Device],
    reduce: &R,
) -> Result<(), TrainError>
where
    B: AutodiffBackend,
    M: AutodiffModule<B>,
    R: AllReduce<B::InnerBackend>,
{
    if grads.len() != devices.len() {
        return Err(TrainError::Backend(format!(
            "all-reduce over {} gradient sets but {} devices",
            grads.len(),
            devices.len()
        )));
    }
    if grads.len() <= 1 {
        return Ok(());
    }
    let mut visitor = GradReducer::<B, R> {
        grads,
        devices,
        reduce,
        _backend: core::marker::PhantomData,
    };
    model.visit(&mut visitor);
    Ok(())
}

struct GradReducer<'a, B: AutodiffBackend, R> {
    grads: &'a mut [GradientsParams],
    devices: &'a [B::Device],
    reduce: &'a R,
    _backend: core::marker::PhantomData<B>,
}

impl<B: AutodiffBackend, R: AllReduce<B::InnerBackend>> ModuleVisitor<B> for GradReducer<'_, B, R> {
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<B, D>>) {
        let id = param.id;
        let parts: Vec<Option<Tensor<B::InnerBackend, D>>> = self
            .grads
            .iter_mut()
            .map(|g| g.remove::<B::InnerBackend, D>(id))
            .collect();
        let Some(shape) = parts.iter().flatten().next().map(Tensor::shape) else {
            return;
        };
        let parts: Vec<Tensor<B::InnerBackend, D>> = parts
            .into_iter()
            .zip(self.devices)
            .map(|(p, device)| p.unwrap_or_else(|| Tensor::zeros(shape.clone(), device)))
            .collect();
        let summed = self.reduce.all_reduce(parts);
        for (g, t) in self.grads.iter_mut().zip(summed) {
            g.register::<B::InnerBackend, D>(id, t);
        }
    }
}
