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
//! - `NcclAllReduce` (`--features cuda`, opt-in with
//!   `SIGSWEEP_ALLREDUCE=nccl`): one `cudarc::nccl::Comm` per device
//!   (`ncclCommInitAll`, one process driving its GPUs) and one grouped
//!   `ncclAllReduce(sum)` per tensor. The gradients are staged through
//!   host memory (burn-cuda 0.21 exposes no raw device pointer of a tensor
//!   without reaching into cubecl's memory manager), so every call costs a
//!   device→host and a host→device copy per replica; NCCL's reduction order
//!   gives every rank the same bits. **Built here, not yet run on hardware:**
//!   it needs a machine with at least two GPUs and libnccl (the lent devices
//!   have one GPU), which is why the default stays [`InProcessAllReduce`].
//!   A zero-copy version would take each tensor's CUDA buffer (burn-cuda →
//!   cubecl handle → device pointer on cubecl's stream) and flatten the
//!   small gradients of a 1–3 M parameter model into one bucket per step.
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

use burn::module::{AutodiffModule, ModuleVisitor, Param, ParamId};
use burn::optim::GradientsParams;
use burn::prelude::*;
use burn::tensor::backend::AutodiffBackend;

use crate::trial::TrainError;

/// Sums one tensor per replica and returns the sum to each replica.
///
/// `tensors[i]` lives on replica `i`'s device; the result's `i`-th tensor
/// must live there too. Every implementation must return the same values to
/// every replica (bit for bit), or the replicas drift apart.
pub trait AllReduce<B: Backend>: Send + Sync {
    fn all_reduce<const D: usize>(
        &self,
        tensors: Vec<Tensor<B, D>>,
    ) -> Result<Vec<Tensor<B, D>>, TrainError>;
}

/// Gather on the first device, sum, broadcast back. See the module docs.
#[derive(Debug, Clone, Copy, Default)]
pub struct InProcessAllReduce;

impl<B: Backend> AllReduce<B> for InProcessAllReduce {
    fn all_reduce<const D: usize>(
        &self,
        tensors: Vec<Tensor<B, D>>,
    ) -> Result<Vec<Tensor<B, D>>, TrainError> {
        if tensors.len() <= 1 {
            return Ok(tensors);
        }
        let devices: Vec<B::Device> = tensors.iter().map(Tensor::device).collect();
        let root = devices[0].clone();
        let mut iter = tensors.into_iter();
        let first = iter.next().expect("len checked above");
        let sum = iter.fold(first, |acc, t| acc + t.to_device(&root));
        Ok(devices.iter().map(|d| sum.clone().to_device(d)).collect())
    }
}

/// All-reduces (sums) the gradient of every parameter of `model` across
/// `grads` (one [`GradientsParams`] per replica, each on its replica's
/// device `devices[i]`). A parameter without a gradient on any replica
/// (unused in the forward pass) is left alone; a replica that lacks a
/// gradient others have (it had no samples in this step) contributes zeros.
///
/// The gradients travel as one bucket: each replica's gradients are
/// flattened in the module's visiting order and concatenated, the buckets
/// are reduced with one [`AllReduce::all_reduce`] call, and the sums are
/// cut back into parameters. One call per step instead of one per
/// parameter (a 1–3 M parameter model has ~100 small tensors: per-call
/// latency, not bandwidth, is the cost of NCCL and of device copies); the
/// sums are elementwise the same.
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
    let mut gather = Gather::<B> {
        grads,
        devices,
        parts: vec![Vec::new(); devices.len()],
        sizes: Vec::new(),
    };
    model.visit(&mut gather);
    let Gather { parts, sizes, .. } = gather;
    if sizes.is_empty() {
        return Ok(());
    }
    let buckets: Vec<Tensor<B::InnerBackend, 1>> =
        parts.into_iter().map(|p| Tensor::cat(p, 0)).collect();
    let summed = reduce.all_reduce(buckets)?;
    let mut scatter = Scatter::<B> {
        grads,
        sums: summed,
        sizes: sizes.into_iter(),
        offset: 0,
    };
    model.visit(&mut scatter);
    Ok(())
}

/// Adds every parameter gradient of `from` into `into` (registering those
/// `into` lacks), for the parameters of `model`.
pub fn add_grads<B: AutodiffBackend, M: AutodiffModule<B>>(
    model: &M,
    into: &mut GradientsParams,
    mut from: GradientsParams,
) {
    struct Add<'a> {
        into: &'a mut GradientsParams,
        from: &'a mut GradientsParams,
    }
    impl<B: AutodiffBackend> ModuleVisitor<B> for Add<'_> {
        fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<B, D>>) {
            let id = param.id;
            if let Some(g) = self.from.remove::<B::InnerBackend, D>(id) {
                let sum = match self.into.remove::<B::InnerBackend, D>(id) {
                    Some(h) => h + g,
                    None => g,
                };
                self.into.register(id, sum);
            }
        }
    }
    model.visit(&mut Add {
        into,
        from: &mut from,
    });
}

/// First pass: takes every parameter's gradient out of every replica's
/// set, flattened (zeros where a replica has none).
struct Gather<'a, B: AutodiffBackend> {
    grads: &'a mut [GradientsParams],
    devices: &'a [B::Device],
    /// Per replica, the flattened gradients in visiting order.
    parts: Vec<Vec<Tensor<B::InnerBackend, 1>>>,
    /// `(parameter, element count)` of each reduced gradient, in order.
    sizes: Vec<(ParamId, usize)>,
}

impl<B: AutodiffBackend> ModuleVisitor<B> for Gather<'_, B> {
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<B, D>>) {
        let id = param.id;
        let taken: Vec<Option<Tensor<B::InnerBackend, D>>> = self
            .grads
            .iter_mut()
            .map(|g| g.remove::<B::InnerBackend, D>(id))
            .collect();
        let Some(numel) = taken
            .iter()
            .flatten()
            .next()
            .map(|t| t.shape().num_elements())
        else {
            return;
        };
        for ((part, t), device) in self.parts.iter_mut().zip(taken).zip(self.devices) {
            part.push(t.map_or_else(|| Tensor::zeros([numel], device), |t| t.reshape([numel])));
        }
        self.sizes.push((id, numel));
    }
}

/// Second pass: cuts the summed buckets back into every parameter's
/// gradient, in the same visiting order.
struct Scatter<'a, B: AutodiffBackend> {
    grads: &'a mut [GradientsParams],
    sums: Vec<Tensor<B::InnerBackend, 1>>,
    sizes: std::vec::IntoIter<(ParamId, usize)>,
    offset: usize,
}

impl<B: AutodiffBackend> ModuleVisitor<B> for Scatter<'_, B> {
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<B, D>>) {
        let Some(&(id, numel)) = self.sizes.as_slice().first() else {
            return;
        };
        if id != param.id {
            // No replica had a gradient for this parameter.
            return;
        }
        self.sizes.next();
        let shape = param.shape();
        for (g, sum) in self.grads.iter_mut().zip(&self.sums) {
            let t = sum
                .clone()
                .narrow(0, self.offset, numel)
                .reshape(shape.clone());
            g.register::<B::InnerBackend, D>(id, t);
        }
        self.offset += numel;
    }
}

#[cfg(feature = "cuda")]
pub use nccl::NcclAllReduce;

#[cfg(feature = "cuda")]
mod nccl {
    use std::sync::Mutex;

    use burn::prelude::*;
    use cudarc::driver::CudaContext;
    use cudarc::nccl::{Comm, ReduceOp, group_end, group_start};

    use super::AllReduce;
    use crate::trial::TrainError;

    fn nccl_error(what: &str, e: impl std::fmt::Debug) -> TrainError {
        TrainError::Backend(format!("NCCL {what}: {e:?}"))
    }

    /// One NCCL communicator per device. `Comm` holds a raw handle and is
    /// not `Send`; the communicators are only used behind the mutex, by one
    /// thread at a time, which NCCL allows.
    struct Comms(Vec<Comm>);

    // SAFETY: an NCCL communicator may be used from any thread as long as
    // calls on it do not overlap; `NcclAllReduce` serialises every use
    // through its mutex.
    #[allow(unsafe_code)]
    unsafe impl Send for Comms {}

    /// Sums gradients across a worker's GPUs with NCCL (see the module docs).
    pub struct NcclAllReduce {
        comms: Mutex<Comms>,
    }

    impl NcclAllReduce {
        /// Communicators for the CUDA devices `ordinals` (replica `i` on
        /// `ordinals[i]`). Fails with a message when the driver or libnccl is
        /// missing.
        pub fn new(ordinals: &[usize]) -> Result<Self, TrainError> {
            crate::backend::check_available(crate::backend::BackendKind::Cuda)
                .map_err(TrainError::Backend)?;
            // SAFETY: only probes whether the shared library can be loaded.
            #[allow(unsafe_code)]
            let present = unsafe { cudarc::nccl::sys::is_culib_present() };
            if !present {
                return Err(TrainError::Backend(
                    "SIGSWEEP_ALLREDUCE=nccl but libnccl.so was not found".into(),
                ));
            }
            let streams = ordinals
                .iter()
                .map(|&o| {
                    CudaContext::new(o)
                        .map(|c| c.default_stream())
                        .map_err(|e| nccl_error(&format!("device {o}"), e))
                })
                .collect::<Result<Vec<_>, _>>()?;
            let comms = Comm::from_devices(streams).map_err(|e| nccl_error("init", e))?;
            Ok(Self {
                comms: Mutex::new(Comms(comms)),
            })
        }
    }

    impl<B: Backend> AllReduce<B> for NcclAllReduce {
        fn all_reduce<const D: usize>(
            &self,
            tensors: Vec<Tensor<B, D>>,
        ) -> Result<Vec<Tensor<B, D>>, TrainError> {
            let comms = self
                .comms
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            if tensors.len() != comms.0.len() {
                return Err(TrainError::Backend(format!(
                    "NCCL all-reduce of {} tensors over {} devices",
                    tensors.len(),
                    comms.0.len()
                )));
            }
            let shape = tensors[0].shape();
            let devices: Vec<B::Device> = tensors.iter().map(Tensor::device).collect();
            let mut buffers = Vec::with_capacity(tensors.len());
            for (t, comm) in tensors.into_iter().zip(&comms.0) {
                let host = crate::tensor::to_f32_vec(t);
                buffers.push(
                    comm.stream()
                        .clone_htod(&host)
                        .map_err(|e| nccl_error("copy to device", e))?,
                );
            }
            group_start().map_err(|e| nccl_error("group start", e))?;
            let mut failed = None;
            for (buf, comm) in buffers.iter_mut().zip(&comms.0) {
                if let Err(e) = comm.all_reduce_in_place(buf, &ReduceOp::Sum) {
                    failed.get_or_insert(e);
                }
            }
            group_end().map_err(|e| nccl_error("group end", e))?;
            if let Some(e) = failed {
                return Err(nccl_error("all-reduce", e));
            }
            buffers
                .iter()
                .zip(&comms.0)
                .zip(&devices)
                .map(|((buf, comm), device)| {
                    let host = comm
                        .stream()
                        .clone_dtoh(buf)
                        .map_err(|e| nccl_error("copy to host", e))?;
                    Ok(Tensor::from_data(
                        TensorData::new(host, shape.clone()),
                        device,
                    ))
                })
                .collect()
        }
    }
}

#[cfg(test)]
mod tests {
    use burn::nn::{Linear, LinearConfig};

    use super::*;
    use crate::backend::Cpu;

    type Inner = <Cpu as AutodiffBackend>::InnerBackend;

    #[derive(Module, Debug)]
    struct Two<B: Backend> {
        used: Linear<B>,
        unused: Linear<B>,
    }

    fn grads_of(model: &Two<Cpu>, x: [[f32; 2]; 1]) -> GradientsParams {
        let device = Default::default();
        let loss = model
            .used
            .forward(Tensor::<Cpu, 2>::from_data(x, &device))
            .sum();
        GradientsParams::from_grads(loss.backward(), model)
    }

    fn values<const D: usize>(t: Tensor<Inner, D>) -> Vec<f32> {
        t.into_data().iter::<f32>().collect()
    }

    /// The bucket round trip: sums land on the right parameters with their
    /// shapes, a replica without gradients (no samples) contributes zeros,
    /// and a parameter no replica used stays without a gradient.
    #[test]
    fn bucketed_reduce_sums_per_parameter() {
        let device = Default::default();
        let model = Two::<Cpu> {
            used: LinearConfig::new(2, 3).init(&device),
            unused: LinearConfig::new(3, 1).init(&device),
        };
        let a = grads_of(&model, [[1.0, 2.0]]);
        let b = grads_of(&model, [[10.0, 20.0]]);
        let weight = model.used.weight.id;
        let bias = model.used.bias.as_ref().expect("bias").id;
        let get = |g: &GradientsParams, id| g.get::<Inner, 2>(id).map(values);
        let (wa, wb) = (get(&a, weight).expect("a"), get(&b, weight).expect("b"));

        let mut three = vec![a, b, GradientsParams::new()];
        all_reduce_grads::<Cpu, _, _>(&model, &mut three, &[device; 3], &InProcessAllReduce)
            .expect("reduce");
        let want: Vec<f32> = wa.iter().zip(&wb).map(|(x, y)| x + y).collect();
        for g in &three {
            assert_eq!(g.get::<Inner, 2>(weight).expect("weight").dims(), [2, 3]);
            assert_eq!(get(g, weight).expect("weight"), want);
            let b = g.get::<Inner, 1>(bias).map(values).expect("bias");
            assert_eq!(b, vec![2.0; 3], "one per replica with samples");
            assert!(g.get::<Inner, 2>(model.unused.weight.id).is_none());
        }
    }
}
