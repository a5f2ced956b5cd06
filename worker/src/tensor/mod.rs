//! Tensor helpers shared by the models and the strategies (burn only).

use burn::module::{Module, ModuleVisitor, Param};
use burn::nn::{Dropout, Linear};
use burn::prelude::*;

pub mod attention;
pub mod cells;
pub mod cpu;
pub mod draws;
pub mod products;
pub mod recompute;

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

/// The number of float parameters of `model`, counted from their shapes
/// without initialising any (burn's `num_params` reads each value, which
/// draws every lazily initialised weight): what a model would take is
/// known before it takes it.
pub fn parameter_count<B: Backend, M: Module<B>>(model: &M) -> u64 {
    struct Count(u64);
    impl<B: Backend> ModuleVisitor<B> for Count {
        fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<B, D>>) {
            let n = param.lazy_shape().num_elements() as u64;
            self.0 = self.0.saturating_add(n);
        }
    }
    let mut count = Count(0);
    model.visit(&mut count);
    count.0
}

/// The values of `t` as `f32`, in row-major order (empty if the backend
/// cannot read them back).
pub fn to_f32_vec<B: Backend, const D: usize>(t: Tensor<B, D>) -> Vec<f32> {
    t.into_data()
        .convert::<f32>()
        .into_vec::<f32>()
        .unwrap_or_default()
}

/// Whether `B` is burn-ndarray (with or without autodiff). There the CPU
/// formulations of [`tanh`] and [`sigmoid`] pay off: burn-ndarray
/// evaluates `tanh` in `f64` (and again in the backward pass) and builds
/// `sigmoid` from two exponentials and a logarithm, while its `f32` `exp`
/// and `recip` are fast; GPU backends keep their own kernels (one launch
/// each). And its `sum()` has no atomics ([`sum_all`]). Its tensors live in
/// this process's memory (`trial::memory` checks that a model fits there).
pub(crate) fn on_ndarray<B: Backend>(device: &B::Device) -> bool {
    let name = B::name(device);
    name == "ndarray" || name == "autodiff<ndarray>"
}

/// `Σ x` over every element of `x`, as a `[1]` tensor, summed in an order
/// the shape fixes. burn-cubecl's `sum()` may autotune to cubek-reduce's
/// one-kernel `shared_sum`, whose blocks add into the result with atomic
/// adds (the last bits then depend on the order the blocks finish in), so
/// on GPU backends this reduces the flattened tensor along its one axis
/// (burn's chained reduction, as `mean()` runs; no atomics). burn-ndarray
/// keeps its own `sum()`: the bits every CPU trial and test has.
pub fn sum_all<B: Backend, const D: usize>(x: Tensor<B, D>) -> Tensor<B, 1> {
    if on_ndarray::<B>(&x.device()) {
        return x.sum();
    }
    sum_flat(x)
}

/// [`sum_all`]'s GPU form on any backend.
fn sum_flat<B: Backend, const D: usize>(x: Tensor<B, D>) -> Tensor<B, 1> {
    let n = x.shape().num_elements();
    x.reshape([n]).sum_dim(0)
}

/// `l(x)` for `x` of any rank (`[…, d_in]`): burn's `Linear::forward`,
/// or on the CPU training backend one node over the rows of `x`
/// ([`cpu::linear`]).
pub fn linear_nd<B: Backend, const D: usize>(l: &Linear<B>, x: Tensor<B, D>) -> Tensor<B, D> {
    match cpu::linear(l, &x) {
        Some(y) => y,
        None => l.forward(x),
    }
}

/// `l(x)` for `x`: `[n, d_in]`: burn's `Linear::forward`, or on the CPU
/// training backend one node whose products read the transposes in place
/// ([`cpu::linear`]).
pub fn linear<B: Backend>(l: &Linear<B>, x: Tensor<B, 2>) -> Tensor<B, 2> {
    match cpu::linear(l, &x) {
        Some(y) => y,
        None => l.forward(x),
    }
}

/// burn-nn's `Lstm::forward(x, None)` for `x`: `[b, T, d]`: the outputs
/// `[b, T, h]` from a zero state. On the CPU training backend (batch-first,
/// forward, no clipping, separate forget gate) the input products of all
/// steps are one product, each step reads its rows with [`select_rows`],
/// and the cell is one fused node per step ([`cells::lstm`]): burn-nn writes
/// every step into one tensor with `slice_assign`, whose backward is
/// quadratic in the length, and runs a dozen nodes per step.
pub fn lstm_sequence<B: Backend>(l: &burn::nn::Lstm<B>, x: Tensor<B, 3>) -> Tensor<B, 3> {
    if !l.batch_first || l.reverse || l.clip.is_some() || l.input_forget || !cpu::on_cpu(&[&x]) {
        return l.forward(x, None).0;
    }
    let [b, steps, d] = x.dims();
    let hd = l.d_hidden;
    let device = x.device();
    // Gate order i, f, g, o (the fused cell's, PyTorch's).
    let gates = [&l.input_gate, &l.forget_gate, &l.cell_gate, &l.output_gate];
    let weights = |f: &dyn Fn(&burn::nn::GateController<B>) -> &Linear<B>| {
        let w = Tensor::cat(gates.iter().map(|g| f(g).weight.val()).collect(), 1);
        let biases: Option<Vec<Tensor<B, 1>>> = gates
            .iter()
            .map(|g| f(g).bias.as_ref().map(|b| b.val()))
            .collect();
        (w, biases.map(|b| Tensor::cat(b, 0)))
    };
    let (wx, bx) = weights(&|g| &g.input_transform);
    let (wh, bh) = weights(&|g| &g.hidden_transform);
    let affine = |x: Tensor<B, 2>, w: &Tensor<B, 2>, b: &Option<Tensor<B, 1>>| match cpu::affine(
        &x,
        w,
        b.as_ref(),
    ) {
        Some(y) => y,
        None => {
            let y = x.matmul(w.clone());
            match b {
                Some(b) => y + b.clone().unsqueeze(),
                None => y,
            }
        }
    };
    // Rows are sample-major (`i·T + t`).
    let xg = affine(x.reshape([b * steps, d]), &wx, &bx);
    if let Some(bh) = &bh
        && let Some(out) = cells::lstm_layer(&xg, &wh, bh, b, steps)
    {
        return out;
    }
    let zero = Tensor::<B, 2>::zeros([b, hd], &device);
    let (mut h, mut c) = (zero.clone(), zero);
    let mut outputs = Vec::with_capacity(steps);
    for t in 0..steps {
        let rows = Rows::new((0..b).map(|i| i * steps + t).collect());
        let g = select_rows(xg.clone(), &rows) + affine(h.clone(), &wh, &bh);
        (h, c) = match cells::lstm(&g, &c) {
            Some(next) => next,
            None => unreachable!("the CPU backend has the fused cell"),
        };
        outputs.push(h.clone());
    }
    Tensor::stack(outputs, 1)
}

/// Row indices into a matrix; an index past the matrix's last row stands
/// for a zero row (padding). The CPU path reads the host indices; the
/// device index tensor burn's `select` needs is built on first use there
/// and kept (for the row count it was built for).
#[derive(Debug, Clone)]
pub struct Rows<B: Backend> {
    host: std::sync::Arc<[usize]>,
    device: std::sync::OnceLock<(usize, Tensor<B, 1, Int>)>,
}

impl<B: Backend> Rows<B> {
    pub fn new(rows: Vec<usize>) -> Self {
        Self {
            host: rows.into(),
            device: std::sync::OnceLock::new(),
        }
    }

    /// The rows `start..start + len`.
    pub fn range(start: usize, len: usize) -> Self {
        Self::new((start..start + len).collect())
    }

    /// The indices on `device` for a matrix of `n` rows, padding pointing
    /// at row `n` (the zero row [`select_rows`] appends).
    fn on_device(&self, n: usize, device: &B::Device) -> Tensor<B, 1, Int> {
        let build = || {
            let ids: Vec<i64> = self.host.iter().map(|&r| r.min(n) as i64).collect();
            let m = ids.len();
            (n, Tensor::from_data(TensorData::new(ids, [m]), device))
        };
        match self.device.get_or_init(build) {
            (built, ids) if *built == n => ids.clone(),
            _ => build().1,
        }
    }
}

/// The rows of `x` listed in `rows` (zero rows for indices past the end):
/// burn's `select` (after appending a zero row when padding is asked
/// for), or on the CPU training backend one node whose backward adds into
/// the input's gradient in place ([`cpu::select_rows`]).
pub fn select_rows<B: Backend>(x: Tensor<B, 2>, rows: &Rows<B>) -> Tensor<B, 2> {
    if let Some(y) = cpu::select_rows(&x, &rows.host) {
        return y;
    }
    let [n, k] = x.dims();
    let device = x.device();
    let ids = rows.on_device(n, &device);
    if rows.host.iter().any(|&r| r >= n) {
        Tensor::cat(vec![x, Tensor::zeros([1, k], &device)], 0).select(0, ids)
    } else {
        x.select(0, ids)
    }
}

/// The first `n` entries of `x` along its first axis: burn's slice, or
/// on the CPU training backend one node whose backward pass adds into the
/// rows read only ([`cpu::leading_rows`]).
pub fn leading_rows<B: Backend, const D: usize>(x: Tensor<B, D>, n: usize) -> Tensor<B, D> {
    match cpu::leading_rows(&x, n) {
        Some(y) => y,
        None => x.narrow(0, 0, n),
    }
}

/// `d(x)`: on the CPU training backend one node keeping a byte of
/// [`cpu::sliced_keep_flags`] per element (burn samples each element
/// through its distribution sampler, which cost a tenth of an MM-DFN
/// epoch), elsewhere burn's `Dropout::forward`. Its randomness is the
/// thread's epoch stream when a trainer started one ([`draws`]: one seed
/// per slice of the leading axis, so a fused seed draws its unfused
/// masks), else the backend's generator.
pub fn dropout<B: Backend, const D: usize>(d: &Dropout, x: Tensor<B, D>) -> Tensor<B, D> {
    let device = x.device();
    if d.prob == 0.0 || !B::ad_enabled(&device) {
        return d.forward(x);
    }
    if cpu::on_cpu(&[&x]) {
        return match cpu::dropout(&x, d.prob, &dropout_seeds::<B>(&device)) {
            Some(y) => y,
            None => d.forward(x),
        };
    }
    match draws::next() {
        Some(seeds) => seeded_dropout(d, x, &seeds),
        None => d.forward(x),
    }
}

/// burn's dropout of `x` (`x ∘ r / (1 − p)`, in that order, as burn's
/// `Dropout::forward`) with the draws `r` of [`seeded_flags`].
fn seeded_dropout<B: Backend, const D: usize>(
    d: &Dropout,
    x: Tensor<B, D>,
    seeds: &[u64],
) -> Tensor<B, D> {
    let r = seeded_flags(x.dims(), d.prob, seeds, &x.device());
    x * r * (1.0 / (1.0 - d.prob))
}

/// The 0/1 draws of a dropout call at rate `prob` over `dims`, drawn as
/// burn's `Dropout` draws them (`Bernoulli(1 − prob)`), with the backend
/// seeded by `seeds[k]` before slice `k` of the leading axis (one slice per
/// seed of a fused model; for one seed, or slices that do not divide the
/// axis, the whole with `seeds[0]`; without seeds, the backend's generator
/// as it is). So a slice draws what the same seed's unfused trial draws at
/// that call ([`draws`]), and the same seeds draw the same again (the
/// recomputing attention node's backward pass).
pub(crate) fn seeded_flags<B: Backend, const D: usize>(
    dims: [usize; D],
    prob: f64,
    seeds: &[u64],
    device: &B::Device,
) -> Tensor<B, D> {
    let keep = burn::tensor::Distribution::Bernoulli(1.0 - prob);
    let k = seeds.len();
    if k > 1 && dims[0].is_multiple_of(k) {
        let mut part = dims;
        part[0] /= k;
        let parts = seeds
            .iter()
            .map(|&seed| {
                B::seed(device, seed);
                Tensor::random(part, keep, device)
            })
            .collect();
        return Tensor::cat(parts, 0);
    }
    if let Some(&seed) = seeds.first() {
        B::seed(device, seed);
    }
    Tensor::random(dims, keep, device)
}

/// `d(f(x))` for an activation `f`: on the CPU training backend one node
/// (the keep flags and values of [`dropout`] after `f`'s node; the
/// backward pass one loop instead of two), elsewhere the two.
pub fn activation_dropout<B: Backend, const D: usize>(
    d: &Dropout,
    f: cpu::Activation,
    x: Tensor<B, D>,
) -> Tensor<B, D> {
    let device = x.device();
    if d.prob > 0.0 && B::ad_enabled(&device) && cpu::on_cpu(&[&x]) {
        let seeds = dropout_seeds::<B>(&device);
        if let Some(y) = cpu::activation(&x, f, Some((d.prob, &seeds))) {
            return y;
        }
    }
    let y = match f {
        cpu::Activation::Tanh => tanh(x),
        cpu::Activation::Sigmoid => sigmoid(x),
        cpu::Activation::Relu => relu(x),
    };
    dropout(d, y)
}

/// Epsilon of every LayerNorm of the models: burn's default, set
/// explicitly ([`layer_norm_config`]) because burn-nn keeps a LayerNorm's
/// epsilon private while [`layer_norm`]'s CPU node and the seed-fused
/// models need it.
pub const LAYER_NORM_EPS: f64 = 1e-5;

/// The configuration of a LayerNorm over `width` features with
/// [`LAYER_NORM_EPS`]; [`layer_norm`] assumes its norms were built by it.
pub fn layer_norm_config(width: usize) -> burn::nn::LayerNormConfig {
    burn::nn::LayerNormConfig::new(width).with_epsilon(LAYER_NORM_EPS)
}

/// The mean of `x` (`[b, l, d]`) over its steps (axis 1), `[b, d]`:
/// burn's `mean_dim`, on the CPU training backend as one node
/// ([`cpu::mean_steps`]: the same forward, a backward pass without
/// burn's tensor of ones).
pub fn mean_steps<B: Backend>(x: Tensor<B, 3>) -> Tensor<B, 2> {
    cpu::mean_steps(&x)
        .unwrap_or_else(|| x.mean_dim(1))
        .squeeze_dim(1)
}

/// `ln(x)` for a norm built by [`layer_norm_config`]: burn's forward, or
/// on the CPU training backend one node ([`cpu::layer_norm`]).
pub fn layer_norm<B: Backend, const D: usize>(
    ln: &burn::nn::LayerNorm<B>,
    x: Tensor<B, D>,
) -> Tensor<B, D> {
    match cpu::layer_norm(ln, &x, LAYER_NORM_EPS) {
        Some(y) => y,
        None => ln.forward(x),
    }
}

/// `ln(a + b)` for a residual connection: on the CPU training backend one
/// node ([`cpu::add_layer_norm`]), elsewhere the sum and [`layer_norm`].
pub fn add_layer_norm<B: Backend, const D: usize>(
    ln: &burn::nn::LayerNorm<B>,
    a: Tensor<B, D>,
    b: Tensor<B, D>,
) -> Tensor<B, D> {
    match cpu::add_layer_norm(ln, &a, &b, LAYER_NORM_EPS) {
        Some(y) => y,
        None => layer_norm(ln, a + b),
    }
}

/// The seeds of one CPU dropout call's keep flags, one per seed slice:
/// the thread's epoch stream ([`draws::next`]), else one drawn from the
/// backend's generator ([`dropout_seed`]).
pub(crate) fn dropout_seeds<B: Backend>(device: &B::Device) -> Vec<u64> {
    draws::next().unwrap_or_else(|| vec![dropout_seed::<B>(device)])
}

/// A seed for a CPU dropout mask, drawn from the backend's generator (two
/// uniform floats, so the trial's seed decides it).
pub(crate) fn dropout_seed<B: Backend>(device: &B::Device) -> u64 {
    let seed: Vec<f32> = to_f32_vec(Tensor::<B, 1>::random(
        [2],
        burn::tensor::Distribution::Default,
        device,
    ));
    seed.iter()
        .fold(0u64, |s, v| (s << 32) | u64::from(v.to_bits()))
}

/// `tanh(x)`: on the CPU training backend one node ([`cpu::activation`]);
/// on burn-ndarray without autodiff as `2 / (1 + e^{−2x}) − 1` (within
/// 2e-7 of `f64` tanh, ~3× faster there). The clamp keeps
/// `e^{−2x}` finite so the backward pass never forms `0 · ∞`; `tanh(±40)`
/// is `±1` in `f32`.
pub fn tanh<B: Backend, const D: usize>(x: Tensor<B, D>) -> Tensor<B, D> {
    if let Some(y) = cpu::activation(&x, cpu::Activation::Tanh, None) {
        y
    } else if on_ndarray::<B>(&x.device()) {
        ((x.clamp(-40.0, 40.0) * -2.0).exp() + 1.0).recip() * 2.0 - 1.0
    } else {
        burn::tensor::activation::tanh(x)
    }
}

/// `max(x, 0)`: burn's, or on the CPU training backend one node.
pub fn relu<B: Backend, const D: usize>(x: Tensor<B, D>) -> Tensor<B, D> {
    match cpu::activation(&x, cpu::Activation::Relu, None) {
        Some(y) => y,
        None => burn::tensor::activation::relu(x),
    }
}

/// `σ(x)`; on the CPU as `1 / (1 + e^{−x})` (see [`tanh`]; the clamp at
/// ±80 keeps `e^{−x}` finite and changes nothing above `f32` precision).
pub fn sigmoid<B: Backend, const D: usize>(x: Tensor<B, D>) -> Tensor<B, D> {
    if let Some(y) = cpu::activation(&x, cpu::Activation::Sigmoid, None) {
        y
    } else if on_ndarray::<B>(&x.device()) {
        (x.clamp(-80.0, 80.0).neg().exp() + 1.0).recip()
    } else {
        burn::tensor::activation::sigmoid(x)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use burn::prelude::*;

    use super::*;
    use crate::tensor::cpu::Cpu;

    /// On burn-ndarray (with and without autodiff) [`sum_all`] is burn's
    /// `sum()`, bit for bit; its GPU form, run here on the same backend,
    /// sums every element, to a `[1]` tensor whose gradient is all ones.
    #[test]
    fn sum_all_is_burns_sum_on_ndarray_and_its_gpu_form_sums_every_element() {
        let device = Default::default();
        let values: Vec<f32> = (0..105).map(|i| (i as f32 * 0.37).sin() * 10.0).collect();
        let x =
            Tensor::<Cpu, 3>::from_data(TensorData::new(values, [3, 5, 7]), &device).require_grad();
        let burns: f32 = x.clone().sum().into_scalar();
        let ours: f32 = sum_all(x.clone()).into_scalar();
        assert_eq!(ours.to_bits(), burns.to_bits());
        let inner = x.clone().inner();
        let inner_ours: f32 = sum_all(inner.clone()).into_scalar();
        let inner_burns: f32 = inner.sum().into_scalar();
        assert_eq!(inner_ours.to_bits(), inner_burns.to_bits());

        let flat = sum_flat(x.clone());
        assert_eq!(flat.dims(), [1]);
        let flat_value: f32 = flat.clone().into_scalar();
        assert!(
            (flat_value - burns).abs() <= 1e-4,
            "{flat_value} vs {burns}"
        );
        let grad = x.grad(&flat.backward()).unwrap();
        let ones: Vec<f32> = grad.into_data().into_vec().unwrap();
        assert!(ones.iter().all(|&g| g == 1.0), "{ones:?}");
    }
}
