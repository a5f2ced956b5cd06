//! Gradient clipping by the global norm, as `torch.nn.utils.clip_grad_norm_`
//! does it: one norm over every gradient of the module, and every gradient
//! scaled by `max_norm / (norm + 1e-6)` when that is below 1.
//!
//! burn's own `GradientClippingConfig::Norm` clips each parameter tensor
//! separately, which is a different (and weaker) rule than the one the
//! reference implementations (MM-DFN, MMIM) use; every trainer clips through
//! here instead.

use burn::module::{AutodiffModule, ModuleVisitor, Param, ParamId};
use burn::optim::GradientsParams;
use burn::prelude::*;
use burn::tensor::backend::AutodiffBackend;

use super::workload::ReplicaOptim;

/// The global L2 norm of the gradients that `grads` holds for `module`'s
/// parameters (0 when it holds none).
pub fn grad_norm<B: AutodiffBackend, M: AutodiffModule<B>>(
    module: &M,
    grads: &GradientsParams,
) -> f64 {
    struct Norm<'a, IB: Backend> {
        grads: &'a GradientsParams,
        total: Option<Tensor<IB, 1>>,
    }
    impl<B: AutodiffBackend> ModuleVisitor<B> for Norm<'_, B::InnerBackend> {
        fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<B, D>>) {
            if let Some(g) = self.grads.get::<B::InnerBackend, D>(param.id) {
                let sq = crate::tensor::sum_all(g.powf_scalar(2.0));
                self.total = Some(match self.total.take() {
                    None => sq,
                    Some(t) => t + sq,
                });
            }
        }
    }
    let mut visitor = Norm::<B::InnerBackend> { grads, total: None };
    module.visit(&mut visitor);
    visitor
        .total
        .map_or(0.0, |t| t.into_scalar().elem::<f64>().sqrt())
}

/// Scales every gradient `grads` holds for `module`'s parameters so that
/// their global L2 norm is at most `max_norm` (PyTorch's rule: the factor is
/// `max_norm / (norm + 1e-6)`, applied only when below 1). Returns the norm
/// before clipping.
pub fn clip_grad_norm<B: AutodiffBackend, M: AutodiffModule<B>>(
    module: &M,
    grads: &mut GradientsParams,
    max_norm: f64,
) -> f64 {
    let norm = grad_norm::<B, M>(module, grads);
    let coef = max_norm / (norm + 1e-6);
    if coef < 1.0 {
        struct Scale<'a> {
            grads: &'a mut GradientsParams,
            coef: f64,
            seen: Vec<ParamId>,
        }
        impl<B: AutodiffBackend> ModuleVisitor<B> for Scale<'_> {
            fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<B, D>>) {
                if self.seen.contains(&param.id) {
                    return;
                }
                if let Some(g) = self.grads.remove::<B::InnerBackend, D>(param.id) {
                    self.grads.register(param.id, g.mul_scalar(self.coef));
                    self.seen.push(param.id);
                }
            }
        }
        module.visit(&mut Scale {
            grads,
            coef,
            seen: Vec::new(),
        });
    }
    norm
}

/// An optimiser that clips the global gradient norm at `max_norm` (when
/// set) before each update: the plain trainer calls it with the batch's
/// gradients, the data-parallel one with the all-reduced gradients, so both
/// clip the same whole-batch gradient.
#[derive(Clone)]
pub struct Clipped<O> {
    pub inner: O,
    pub max_norm: Option<f64>,
}

impl<O> Clipped<O> {
    /// `inner` clipped at `grad_clip` when it is positive (0 = off).
    pub fn new(inner: O, grad_clip: f64) -> Self {
        Self {
            inner,
            max_norm: (grad_clip > 0.0).then_some(grad_clip),
        }
    }
}

impl<B, M, O> ReplicaOptim<B, M> for Clipped<O>
where
    B: AutodiffBackend,
    M: AutodiffModule<B>,
    O: ReplicaOptim<B, M>,
{
    fn update(&mut self, lr: f64, model: M, mut grads: GradientsParams) -> M {
        if let Some(max) = self.max_norm {
            clip_grad_norm::<B, M>(&model, &mut grads, max);
        }
        self.inner.update(lr, model, grads)
    }
}
