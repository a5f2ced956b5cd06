//! AdamW as burn defines it (`burn::optim::AdamW`: the same rule, the same
//! defaults, the same state records, so checkpoints of either load into
//! the other), its update on the CPU training backend done in one pass per
//! result by [`cpu::adamw_update`] instead of about fifteen tensor
//! operations per parameter. Other backends run burn's own step.

use burn::module::AutodiffModule;
use burn::optim::adaptor::OptimizerAdaptor;
use burn::optim::{
    AdamW, AdamWConfig, AdamWState, AdaptiveMomentumState, LearningRate, SimpleOptimizer,
};
use burn::prelude::*;
use burn::tensor::backend::AutodiffBackend;
use burn::tensor::ops::Device;
use burn::tensor::{DType, TensorPrimitive};

use crate::tensor::cpu::{self, AdamWStep, Inner};

/// burn's AdamW defaults (`AdamWConfig`).
const BETA_1: f32 = 0.9;
const BETA_2: f32 = 0.999;
const EPSILON: f32 = 1e-5;

/// AdamW with weight decay `weight_decay` and burn's other defaults.
#[derive(Clone)]
pub struct FusedAdamW {
    /// burn's optimiser with the same settings (the step off the CPU).
    burn: AdamW,
    weight_decay: f32,
}

impl FusedAdamW {
    pub fn new(weight_decay: f32) -> Self {
        Self {
            burn: AdamWConfig::new()
                .with_beta_1(BETA_1)
                .with_beta_2(BETA_2)
                .with_epsilon(EPSILON)
                .with_weight_decay(weight_decay)
                .build(),
            weight_decay,
        }
    }

    /// The optimiser of a module's parameters (what `AdamWConfig::init`
    /// returns for burn's, without gradient clipping: see
    /// [`super::clip::Clipped`]).
    pub fn init<B: AutodiffBackend, M: AutodiffModule<B>>(self) -> OptimizerAdaptor<Self, M, B> {
        OptimizerAdaptor::from(self)
    }

    /// The scalars of step `time` (1 for the first) at learning rate `lr`,
    /// formed as burn's AdamW forms them.
    fn scalars(&self, lr: LearningRate, time: usize) -> AdamWStep {
        let time = i32::try_from(time).unwrap_or(i32::MAX);
        let decay_rate = lr * f64::from(self.weight_decay);
        AdamWStep {
            beta_1: BETA_1,
            beta_2: BETA_2,
            epsilon: EPSILON,
            correction_1: 1.0 - BETA_1.powi(time),
            correction_2: 1.0 - BETA_2.powi(time),
            decay: (decay_rate != 0.0).then_some((1.0 - decay_rate) as f32),
            lr: lr as f32,
        }
    }

    /// The step on the CPU backend; `None` where it does not apply (then
    /// burn's step runs).
    fn cpu_step<const D: usize>(
        &self,
        lr: LearningRate,
        tensor: &Tensor<Inner, D>,
        grad: &Tensor<Inner, D>,
        state: Option<&AdamWState<Inner, D>>,
    ) -> Option<(Tensor<Inner, D>, AdamWState<Inner, D>)> {
        let f32s = [tensor, grad].iter().all(|t| t.dtype() == DType::F32);
        if !f32s || tensor.shape() != grad.shape() {
            return None;
        }
        let moments = match state {
            Some(s) => {
                let m = &s.momentum;
                let fits =
                    |t: &Tensor<Inner, D>| t.shape() == tensor.shape() && t.dtype() == DType::F32;
                if m.max_moment_2.is_some() || !fits(&m.moment_1) || !fits(&m.moment_2) {
                    return None;
                }
                Some((primitive(&m.moment_1), primitive(&m.moment_2), m.time))
            }
            None => None,
        };
        let time = moments.as_ref().map_or(1, |(_, _, t)| t + 1);
        let [p, m, v] = cpu::adamw_update(
            &primitive(tensor),
            &primitive(grad),
            moments.as_ref().map(|(m, v, _)| (m, v)),
            self.scalars(lr, time),
        );
        let tensor = |p| Tensor::from_primitive(TensorPrimitive::Float(p));
        Some((
            tensor(p),
            AdamWState::new(AdaptiveMomentumState {
                time,
                moment_1: tensor(m),
                moment_2: tensor(v),
                max_moment_2: None,
            }),
        ))
    }
}

/// The CPU backend's array of `t` (a reference-counted handle: no copy).
fn primitive<const D: usize>(t: &Tensor<Inner, D>) -> cpu::Prim {
    t.clone().into_primitive().tensor()
}

impl<B: Backend> SimpleOptimizer<B> for FusedAdamW {
    type State<const D: usize> = AdamWState<B, D>;

    fn step<const D: usize>(
        &self,
        lr: LearningRate,
        tensor: Tensor<B, D>,
        grad: Tensor<B, D>,
        state: Option<Self::State<D>>,
    ) -> (Tensor<B, D>, Option<Self::State<D>>) {
        let on_cpu = cpu::cast::<_, Tensor<Inner, D>>(tensor.clone())
            .zip(cpu::cast::<_, Tensor<Inner, D>>(grad.clone()))
            .and_then(|(t, g)| {
                let state = match state.clone() {
                    Some(s) => Some(cpu::cast::<_, AdamWState<Inner, D>>(s)?),
                    None => None,
                };
                self.cpu_step(lr, &t, &g, state.as_ref())
            })
            .and_then(|(t, s)| Some((cpu::cast(t)?, Some(cpu::cast(s)?))));
        match on_cpu {
            Some(done) => done,
            None => SimpleOptimizer::<B>::step(&self.burn, lr, tensor, grad, state),
        }
    }

    fn to_device<const D: usize>(state: Self::State<D>, device: &Device<B>) -> Self::State<D> {
        <AdamW as SimpleOptimizer<B>>::to_device(state, device)
    }
}

#[cfg(test)]
mod tests {
    use burn::nn::{Linear, LinearConfig};
    use burn::optim::{GradientsParams, Optimizer};
    use burn::record::{FullPrecisionSettings, Record};
    use burn::tensor::Distribution;

    use super::*;
    use crate::tensor::cpu::Cpu;

    fn bits<const D: usize, B: Backend>(t: &Tensor<B, D>) -> Vec<u32> {
        t.to_data()
            .to_vec::<f32>()
            .expect("f32 values")
            .iter()
            .map(|v| v.to_bits())
            .collect()
    }

    /// Several steps of both optimisers on the same module and gradients,
    /// with and without weight decay, at changing learning rates: the
    /// parameters and the saved moments agree bit for bit.
    #[test]
    fn cpu_update_equals_burns_adamw_bitwise() {
        for weight_decay in [0.0f32, 1e-2] {
            let device = Default::default();
            Cpu::seed(&device, 7);
            let mut ours_model: Linear<Cpu> = LinearConfig::new(37, 19).init(&device);
            // Drawn now: a clone of lazy parameters would draw its own.
            crate::tensor::materialize::<Cpu, _>(&ours_model);
            let mut burns_model = ours_model.clone();
            let mut ours = FusedAdamW::new(weight_decay).init::<Cpu, Linear<Cpu>>();
            let mut burns = AdamWConfig::new()
                .with_weight_decay(weight_decay)
                .init::<Cpu, Linear<Cpu>>();
            for (step, lr) in [1e-3, 3e-3, 5e-4, 1e-2, 1e-3].into_iter().enumerate() {
                let x = Tensor::<Cpu, 2>::random([8, 37], Distribution::Normal(0.0, 1.0), &device);
                let loss = |m: &Linear<Cpu>| m.forward(x.clone()).powf_scalar(2.0).mean();
                let g_ours = GradientsParams::from_grads(loss(&ours_model).backward(), &ours_model);
                let g_burns =
                    GradientsParams::from_grads(loss(&burns_model).backward(), &burns_model);
                ours_model = ours.step(lr, ours_model, g_ours);
                burns_model = burns.step(lr, burns_model, g_burns);
                assert!(
                    bits(&ours_model.weight.val()) == bits(&burns_model.weight.val()),
                    "weights after step {step}, weight decay {weight_decay}"
                );
                let bias = |m: &Linear<Cpu>| bits(&m.bias.as_ref().expect("bias").val());
                assert!(
                    bias(&ours_model) == bias(&burns_model),
                    "biases, step {step}"
                );
            }
            // The saved states are burn's: the same records, item by item
            // (so a checkpoint of either optimiser loads into the other).
            let (ours, burns) = (ours.to_record(), burns.to_record());
            assert_eq!(ours.len(), burns.len());
            for (id, record) in ours {
                let theirs = burns.get(&id).expect("the same parameters").clone();
                assert_eq!(
                    serde_json::to_string(&record.into_item::<FullPrecisionSettings>())
                        .expect("serialised"),
                    serde_json::to_string(&theirs.into_item::<FullPrecisionSettings>())
                        .expect("serialised"),
                );
            }
        }
    }
}
