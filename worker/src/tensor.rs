//! Tensor helpers shared by the models and the strategies (burn only).

use burn::module::{Module, ModuleVisitor, Param};
use burn::prelude::*;

/// Forces every lazily initialised parameter of `model` to take its value
/// (in the module's visiting order). Call before cloning a model into
/// replicas or seed slices: burn initialises parameters lazily, and an
/// unmaterialised clone would draw its own random weights on first use. For
/// `late-fusion` the visiting order equals the order of first use in
/// `forward`, so materialising here draws the same weights as the plain
/// trainer's first forward pass.
pub fn materialize<B: Backend, M: Module<B>>(model: &M) {
    struct Touch;
    impl<B: Backend> ModuleVisitor<B> for Touch {
        fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<B, D>>) {
            let _ = param.val();
        }
    }
    model.visit(&mut Touch);
}

/// The values of `t` as `f32`, in row-major order (empty if the backend
/// cannot read them back).
pub fn to_f32_vec<B: Backend, const D: usize>(t: Tensor<B, D>) -> Vec<f32> {
    t.into_data()
        .convert::<f32>()
        .into_vec::<f32>()
        .unwrap_or_default()
}
