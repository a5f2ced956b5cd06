//! Operations fused for the CPU training backend (burn-ndarray under
//! burn-autodiff), each one autodiff node with its own backward pass.
//!
//! burn-ndarray runs every tensor operation as its own pass over memory and
//! every autodiff node costs graph bookkeeping; its matrix product also
//! copies transposed operands element by element and zero-fills its output.
//! On one CPU core that overhead outweighed the arithmetic of MM-DFN. The
//! functions here are the same mathematics with less of it: a linear layer
//! whose products read transposes in place ([`linear`]), a dropout mask
//! from a fast seeded generator ([`dropout`]), and the plumbing the
//! fused recurrent cells ([`super::cells`]) share. Every entry
//! point returns `None` unless `B` is [`Cpu`], and the callers in
//! [`super`] then use burn's own operations (CUDA keeps its kernels).

use std::any::{Any, TypeId};
use std::borrow::Cow;
use std::sync::atomic::{AtomicBool, Ordering};

use burn::backend::NdArray;
use burn::backend::autodiff::checkpoint::base::Checkpointer;
use burn::backend::autodiff::checkpoint::strategy::NoCheckpointing;
use burn::backend::autodiff::grads::Gradients;
use burn::backend::autodiff::ops::{Backward, Ops, OpsKind};
use burn::backend::ndarray::NdArrayTensor;
use burn::nn::Linear;
use burn::prelude::*;
use burn::tensor::{DType, TensorMetadata, TensorPrimitive};
use ndarray::{Array2, ArrayView2, Ix2};

pub use crate::backend::Cpu;

/// The backend under [`Cpu`]'s autodiff.
pub type Inner = NdArray<f32>;
/// Its float tensor.
pub type Prim = <Inner as burn::tensor::backend::BackendTypes>::FloatTensorPrimitive;

/// `t` as a `U` when it is one (`T` and `U` the same type).
pub fn cast<T: 'static, U: 'static>(t: T) -> Option<U> {
    (Box::new(t) as Box<dyn Any>)
        .downcast::<U>()
        .ok()
        .map(|b| *b)
}

/// Whether `B` is [`Cpu`] and every tensor holds `f32` (and the CPU nodes
/// are on: [`set_generic_ops`]).
pub fn on_cpu<B: Backend, const D: usize>(ts: &[&Tensor<B, D>]) -> bool {
    !generic_ops()
        && TypeId::of::<B>() == TypeId::of::<Cpu>()
        && ts.iter().all(|t| t.dtype() == DType::F32)
}

static GENERIC_OPS: AtomicBool = AtomicBool::new(false);

/// Turns this process's CPU nodes off (`true`) or on: the CPU training
/// backend then runs what the CUDA backend runs — burn's operations and the
/// recomputing attention node — so that graph's results and memory can be
/// measured without a GPU (`sigsweep bench train --generic-ops`).
pub fn set_generic_ops(on: bool) {
    GENERIC_OPS.store(on, Ordering::Relaxed);
}

/// See [`set_generic_ops`].
pub fn generic_ops() -> bool {
    GENERIC_OPS.load(Ordering::Relaxed)
}

/// The `f32` array of `p` (any strides).
fn array(p: &Prim) -> ndarray::ArrayViewD<'_, f32> {
    match p {
        NdArrayTensor::F32(storage) => storage.view(),
        other => unreachable!(
            "the fused CPU operations take f32 tensors, not {:?}",
            other.dtype()
        ),
    }
}

/// `p` as a matrix view (any strides, no copy).
pub fn matrix(p: &Prim) -> ArrayView2<'_, f32> {
    array(p)
        .into_dimensionality::<Ix2>()
        .expect("the fused CPU operations take matrices")
}

/// The values of `p`, row-major: borrowed when `p` is contiguous (burn's
/// `into_data` would copy element by element while the autodiff graph
/// shares the buffer).
pub fn host(p: &Prim) -> Cow<'_, [f32]> {
    let view = array(p);
    match view.to_slice() {
        Some(values) => Cow::Borrowed(values),
        None => Cow::Owned(view.iter().copied().collect()),
    }
}

/// A tensor of `shape` holding `values` (row-major), without a copy.
pub fn from_vec(values: Vec<f32>, shape: [usize; 2]) -> Prim {
    from_array(Array2::from_shape_vec(shape, values).expect("values match their shape"))
}

fn from_array(a: Array2<f32>) -> Prim {
    NdArrayTensor::from(a.into_shared().into_dyn())
}

/// [`Cpu`]'s float tensor: the [`Inner`] tensor and its autodiff node.
pub type Tracked = <Cpu as burn::tensor::backend::BackendTypes>::FloatTensorPrimitive;

/// `x`'s autodiff parts, when `B` is [`Cpu`] (any rank).
pub fn tracked<B: Backend, const D: usize>(x: &Tensor<B, D>) -> Option<Tracked> {
    Some(
        cast::<_, Tensor<Cpu, D>>(x.clone())?
            .into_primitive()
            .tensor(),
    )
}

/// A node's output `out` as a `B` tensor (`B` is [`Cpu`]).
pub fn output<B: Backend, const D: usize>(out: Tracked) -> Option<Tensor<B, D>> {
    cast(Tensor::<Cpu, D>::from_primitive(TensorPrimitive::Float(
        out,
    )))
}

/// An autodiff tensor's primitive parts.
pub fn parts(t: Tensor<Cpu, 2>) -> Tracked {
    t.into_primitive().tensor()
}

/// The autodiff tensor `out` as a tensor.
pub fn tensor(out: Tracked) -> Tensor<Cpu, 2> {
    Tensor::from_primitive(TensorPrimitive::Float(out))
}

// ---- Elementwise math the compiler can vectorise ---------------------------

/// Runs `f` compiled for the widest vector instructions this CPU has
/// (pulp's runtime dispatch: AVX-512, else AVX2 with FMA, else the build's
/// baseline, SSE2 on x86-64). The loops of `f` and of what it inlines
/// ([`exp`], [`sum`], … are `#[inline(always)]`) vectorise to them; the
/// results do not depend on the width, since every reduction keeps its
/// [`LANES`] partial sums and nothing is contracted into fused
/// multiply-adds.
#[inline(always)]
pub fn vectorised<R>(f: impl FnOnce() -> R) -> R {
    pulp::Arch::new().dispatch(f)
}

/// `e^x` in `f32` within 2 ulp for `x ∈ [−87, 88]` (clamped there), as
/// plain arithmetic so that loops over it vectorise (`f32::exp` is a libm
/// call per element): `x = k ln 2 + r` with `k` rounded by the
/// 1.5·2²³ trick and `ln 2` split in two (Cody–Waite), Cephes' degree-6
/// polynomial for `e^r` on `|r| ≤ ln 2 / 2`, and `2^k` built in the
/// exponent bits.
#[inline(always)]
pub fn exp(x: f32) -> f32 {
    // 1.5·2²³: adding it rounds to an integer kept in the low mantissa bits.
    const ROUND: f32 = 12_582_912.0;
    let x = x.clamp(-87.0, 88.0);
    let t = x * std::f32::consts::LOG2_E + ROUND;
    let k = t - ROUND;
    let r = x - k * 0.693_359_4 + k * 2.121_944_4e-4;
    let p = ((((1.987_569_1e-4 * r + 1.398_199_9e-3) * r + 8.333_452e-3) * r + 4.166_579_6e-2) * r
        + 0.166_666_65)
        * r
        + 0.5;
    let y = p * r * r + r + 1.0;
    // `k + 127` in the exponent field: integer arithmetic on the bits of
    // `t` (no float-to-int conversion, whose saturation stops vectorising).
    let two_k = (t.to_bits().wrapping_sub(ROUND.to_bits()).wrapping_add(127)) << 23;
    y * f32::from_bits(two_k)
}

/// Asks the processor to bring the cache lines of `x` into its level-2
/// cache: a hint (`prefetcht1`), which neither waits for the lines nor
/// changes any value. Nothing where the instruction is not available.
#[inline(always)]
pub fn prefetch(x: &[f32]) {
    #[cfg(target_arch = "x86_64")]
    if let Some(sse) = pulp::core_arch::x86::Sse::try_new() {
        // Sixteen values to a 64-byte line.
        for line in x.iter().step_by(16) {
            sse._mm_prefetch::<{ std::arch::x86_64::_MM_HINT_T1 }>(std::ptr::from_ref(line).cast());
        }
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = x;
}

/// Lanes of the reductions below: sixteen partial results side by side,
/// so the loops vectorise (a plain `f32` sum is one serial chain, since
/// floating-point addition is not associative). The tail of a row shorter
/// than [`LANES`] goes to lanes `0, 1, …`, and the lanes are combined
/// pairwise ([`lanes`]): a fixed order, whatever the instruction set.
const LANES: usize = 16;

/// The lanes combined by `f` pairwise, halves folded onto halves (a few
/// shuffles once vectorised, where a left-to-right fold is a chain of
/// fifteen dependent operations: on rows of fifty weights, as long as the
/// loop itself).
#[inline(always)]
fn lanes(mut acc: [f32; LANES], f: impl Fn(f32, f32) -> f32) -> f32 {
    let mut half = LANES / 2;
    while half > 0 {
        for l in 0..half {
            acc[l] = f(acc[l], acc[l + half]);
        }
        half /= 2;
    }
    acc[0]
}

/// `f` element by element: input `i` of element `k` is `ins[i][k]` and
/// output `o` goes to `outs[o][k]`, for as many elements as `outs[0]`
/// holds (every slice at least as long). [`LANES`] elements at a time
/// through local arrays, every load of a block before its stores, so the
/// blocks vectorise even where the compiler cannot tell the slices apart
/// (the gate blocks of one LSTM row); written over the slices, the LSTM's
/// backward kernels stayed scalar once inlined.
#[inline(always)]
pub fn lanewise<const I: usize, const O: usize>(
    ins: [&[f32]; I],
    mut outs: [&mut [f32]; O],
    f: impl Fn([f32; I]) -> [f32; O],
) {
    let n = outs.first().map_or(0, |o| o.len());
    let full = n / LANES * LANES;
    for k in (0..full).step_by(LANES) {
        let mut x = [[0f32; LANES]; I];
        for (x, s) in x.iter_mut().zip(&ins) {
            x.copy_from_slice(&s[k..k + LANES]);
        }
        let mut y = [[0f32; LANES]; O];
        for l in 0..LANES {
            let r = f(std::array::from_fn(|i| x[i][l]));
            for (y, r) in y.iter_mut().zip(r) {
                y[l] = r;
            }
        }
        for (s, y) in outs.iter_mut().zip(&y) {
            s[k..k + LANES].copy_from_slice(y);
        }
    }
    for k in full..n {
        let r = f(std::array::from_fn(|i| ins[i][k]));
        for (s, r) in outs.iter_mut().zip(r) {
            s[k] = r;
        }
    }
}

/// `Σ f(x_i, y_i)` over two equally long rows, in [`LANES`] partial sums.
/// (Rows as arrays of [`LANES`]: with the length known, every loop below
/// vectorises; over `chunks_exact` slices some did not.)
#[inline(always)]
fn reduce2(x: &[f32], y: &[f32], f: impl Fn(f32, f32) -> f32) -> f32 {
    let n = x.len().min(y.len());
    let ((xc, xr), (yc, yr)) = (x[..n].as_chunks::<LANES>(), y[..n].as_chunks::<LANES>());
    let mut acc = [0f32; LANES];
    for (a, b) in xc.iter().zip(yc) {
        for l in 0..LANES {
            acc[l] += f(a[l], b[l]);
        }
    }
    for (l, (&a, &b)) in xr.iter().zip(yr).enumerate() {
        acc[l] += f(a, b);
    }
    lanes(acc, |a, b| a + b)
}

/// `Σ x_i`, vectorised ([`LANES`] partial sums).
#[inline(always)]
pub fn sum(x: &[f32]) -> f32 {
    reduce2(x, x, |a, _| a)
}

/// `Σ x_i y_i`, vectorised ([`LANES`] partial sums).
#[inline(always)]
pub fn dot(x: &[f32], y: &[f32]) -> f32 {
    reduce2(x, y, |a, b| a * b)
}

/// `x_i ← e^{x_i − shift}` in place, returning `Σ x_i` afterwards (one
/// vectorised pass: softmax's exponentials and their sum).
#[inline(always)]
pub fn exp_sum(x: &mut [f32], shift: f32) -> f32 {
    let f = |v: f32| exp(v - shift);
    let mut acc = [0f32; LANES];
    let last = last_vector(x, f);
    let (chunks, rest) = x.as_chunks_mut::<LANES>();
    for c in chunks {
        for l in 0..LANES {
            c[l] = f(c[l]);
            acc[l] += c[l];
        }
    }
    if last.is_none() {
        padded_tail(rest, shift, f);
    }
    let tail = rest.len();
    for (l, v) in rest.iter().enumerate() {
        acc[l] += last.map_or(*v, |t| t[LANES - tail + l]);
    }
    put_last_vector(x, last);
    lanes(acc, |a, b| a + b)
}

/// `x_i ← e^{x_i − shift} · scale` in place (one vectorised pass: the
/// softmax weights again from the scores and the row's statistics).
#[inline(always)]
pub fn exp_scaled(x: &mut [f32], shift: f32, scale: f32) {
    let f = |v: f32| exp(v - shift) * scale;
    let last = last_vector(x, f);
    let (chunks, rest) = x.as_chunks_mut::<LANES>();
    for c in chunks {
        for v in c.iter_mut() {
            *v = f(*v);
        }
    }
    if last.is_none() {
        padded_tail(rest, shift, f);
    }
    put_last_vector(x, last);
}

/// `f` of the last [`LANES`] elements of a row at least that long whose
/// length is not a multiple of [`LANES`] (`None` otherwise), computed
/// before the row changes: the row's tail as one vector that overlaps the
/// last whole one, loaded and, by [`put_last_vector`], stored whole. The
/// overlapped elements get the values the whole vector gives them (the
/// same arithmetic on the same inputs), so storing them again changes no
/// bit. (Copied through a buffer of lanes, the tails of the attention's
/// rows of 50 and 147 keys cost two `memcpy` calls, a stalled load and
/// the constants reloaded per row: 28 % of the node's own time.)
#[inline(always)]
fn last_vector(x: &[f32], f: impl Fn(f32) -> f32) -> Option<[f32; LANES]> {
    let n = x.len();
    if n < LANES || n.is_multiple_of(LANES) {
        return None;
    }
    let mut t = *x[n - LANES..].first_chunk::<LANES>()?;
    for v in t.iter_mut() {
        *v = f(*v);
    }
    Some(t)
}

/// Stores [`last_vector`]'s result over the last [`LANES`] elements.
#[inline(always)]
fn put_last_vector(x: &mut [f32], last: Option<[f32; LANES]>) {
    let n = x.len();
    if let (Some(t), Some(start)) = (last, n.checked_sub(LANES))
        && let Some(w) = x[start..].first_chunk_mut::<LANES>()
    {
        *w = t;
    }
}

/// `v ← f(v)` for a row shorter than [`LANES`] (the remainder of
/// `as_chunks_mut::<LANES>`), through one vector of lanes padded with
/// `pad`: left to itself it is a scalar loop, where each exponential is
/// one long dependent chain. The same arithmetic per element, so the same
/// bits. (Longer rows end in [`last_vector`] instead.)
#[inline(always)]
fn padded_tail(rest: &mut [f32], pad: f32, f: impl Fn(f32) -> f32) {
    debug_assert!(rest.len() < LANES, "a tail is shorter than a vector");
    if rest.is_empty() {
        return;
    }
    let mut lanes = [pad; LANES];
    lanes[..rest.len()].copy_from_slice(rest);
    for v in lanes.iter_mut() {
        *v = f(*v);
    }
    rest.copy_from_slice(&lanes[..rest.len()]);
}

/// `Σ (g_i m_i) p_i` for dropout's multipliers `m` (the keep flags times
/// their scale; one vectorised pass: dropout's backward and softmax's row
/// sum). The caller forms `g_i m_i` again where it needs it: the same
/// product, so the same bits. (Multiplied in place here, the loop did not
/// vectorise once inlined into the attention node's backward pass: a fifth
/// of that pass's own time on Zen 4.)
#[inline(always)]
pub fn keep_dot(g: &[f32], m: &[f32], p: &[f32]) -> f32 {
    let n = g.len().min(m.len()).min(p.len());
    let (gc, gr) = g[..n].as_chunks::<LANES>();
    let ((mc, mr), (pc, pr)) = (m[..n].as_chunks::<LANES>(), p[..n].as_chunks::<LANES>());
    let mut acc = [0f32; LANES];
    for ((g, m), p) in gc.iter().zip(mc).zip(pc) {
        for l in 0..LANES {
            acc[l] += g[l] * m[l] * p[l];
        }
    }
    for (l, ((&g, &m), &p)) in gr.iter().zip(mr).zip(pr).enumerate() {
        acc[l] += g * m * p;
    }
    lanes(acc, |a, b| a + b)
}

/// `max x_i` over the numbers of `x` (`−∞` for an empty row). A NaN is
/// skipped here (testing for one stopped the loop vectorising) but not
/// lost: softmax's exponential of a NaN score is NaN, and so is the row.
#[inline(always)]
pub fn max(x: &[f32]) -> f32 {
    let mut acc = [f32::NEG_INFINITY; LANES];
    let (chunks, rest) = x.as_chunks::<LANES>();
    for c in chunks {
        for l in 0..LANES {
            acc[l] = if c[l] > acc[l] { c[l] } else { acc[l] };
        }
    }
    for (l, &v) in rest.iter().enumerate() {
        acc[l] = if v > acc[l] { v } else { acc[l] };
    }
    lanes(acc, |a, b| if b > a { b } else { a })
}

/// `σ(x) = 1 / (1 + e^{−x})` through [`exp`].
#[inline(always)]
pub fn sigmoid(x: f32) -> f32 {
    1.0 / (1.0 + exp(-x))
}

/// `tanh(x) = 2σ(2x) − 1` through [`exp`] (absolute error below 1e-7).
#[inline(always)]
pub fn tanh(x: f32) -> f32 {
    2.0 / (1.0 + exp(-2.0 * x)) - 1.0
}

// ---- Autodiff plumbing ---------------------------------------------------

/// Registers `g` as the gradient of `node` when both exist.
macro_rules! register {
    ($grads:expr, $node:expr, $g:expr) => {
        if let (Some(node), Some(g)) = ($node, $g) {
            $grads.register::<Inner>(node.id, g);
        }
    };
}

// ---- Activations ------------------------------------------------------------

/// An elementwise activation whose derivative is a function of its output.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Activation {
    Tanh,
    Sigmoid,
    Relu,
}

impl Activation {
    /// `y = f(x)` (called under [`vectorised`]).
    #[inline(always)]
    fn forward(self, x: &[f32]) -> Vec<f32> {
        match self {
            Activation::Tanh => x.iter().map(|&x| tanh(x)).collect(),
            Activation::Sigmoid => x.iter().map(|&x| sigmoid(x)).collect(),
            // NaN stays NaN (`max` would turn it into 0).
            Activation::Relu => x.iter().map(|&x| if x < 0.0 { 0.0 } else { x }).collect(),
        }
    }

    /// `dx = dy · f'(x)` written from the output `y` (called under
    /// [`vectorised`]).
    #[inline(always)]
    fn backward(self, y: &[f32], dy: &[f32]) -> Vec<f32> {
        self.backward_rows(y.iter().zip(dy).map(|(&y, &d)| (y, d)))
    }

    /// `dx` from pairs `(y, dy)`.
    #[inline(always)]
    fn backward_rows(self, rows: impl Iterator<Item = (f32, f32)>) -> Vec<f32> {
        match self {
            Activation::Tanh => rows.map(|(y, d)| d * (1.0 - y * y)).collect(),
            Activation::Sigmoid => rows.map(|(y, d)| d * y * (1.0 - y)).collect(),
            // burn's: the gradient passes where the output is positive.
            Activation::Relu => rows.map(|(y, d)| if y <= 0.0 { 0.0 } else { d }).collect(),
        }
    }
}

/// The activation node, optionally followed by dropout: `y = f(x) ∘ M · s`
/// (without dropout `y = f(x)`). Its state is `f(x)` and the keep flags
/// with their scale.
#[derive(Debug)]
struct Activate(Activation);

/// Dropout's keep flags of a node's output and the scale of a kept element.
type Kept = Option<(std::sync::Arc<Vec<u8>>, f32)>;

impl Backward<Inner, 1> for Activate {
    type State = (Prim, Kept);

    fn backward(self, ops: Ops<Self::State, 1>, grads: &mut Gradients, _: &mut Checkpointer) {
        let [px] = ops.parents;
        let Some(node) = px else { return };
        let (fx, kept) = ops.state;
        let dy = grads.consume::<Inner>(&ops.node);
        let (y, dy) = (host(&fx), host(&dy));
        let dx = vectorised(
            #[inline(always)]
            || match &kept {
                None => self.0.backward(&y, &dy),
                // Dropout's backward in the same pass.
                Some((flags, scale)) => {
                    let scale = *scale;
                    let rows = y.iter().zip(dy.iter()).zip(flags.iter());
                    self.0
                        .backward_rows(rows.map(|((&y, &d), &k)| (y, d * f32::from(k) * scale)))
                }
            },
        );
        grads.register::<Inner>(node.id, from_shape(dx, &shape(&fx)));
    }
}

/// A tensor of any rank holding `values` (row-major), without a copy.
pub fn from_shape(values: Vec<f32>, shape: &[usize]) -> Prim {
    let a = ndarray::ArrayD::from_shape_vec(ndarray::IxDyn(shape), values)
        .expect("values match their shape");
    NdArrayTensor::from(a.into_shared())
}

/// `f(x)` elementwise as one node (vectorised forward; the backward reads
/// the saved output instead of recomputing `f`, as burn-autodiff does from
/// its input) on the CPU backend; with `dropout` (rate and seeds)
/// `dropout(f(x))` as the same node, the keep flags those of [`dropout`]
/// for those seeds, so the values are those of the two nodes.
pub fn activation<B: Backend, const D: usize>(
    x: &Tensor<B, D>,
    f: Activation,
    dropout: Option<(f64, &[u64])>,
) -> Option<Tensor<B, D>> {
    if !on_cpu(&[x]) {
        return None;
    }
    let x: Tracked = tracked(x)?;
    let shape = shape(&x.primitive);
    let kept: Kept = match dropout {
        Some((p, seeds)) => {
            let (flags, scale) = sliced_keep_flags(shape.iter().product(), p, seeds)?;
            Some((std::sync::Arc::new(flags), scale))
        }
        None => None,
    };
    let v = host(&x.primitive);
    let fx = vectorised(
        #[inline(always)]
        || f.forward(&v),
    );
    let y = kept
        .as_ref()
        .map(|(flags, scale)| from_shape(masked(&fx, flags, *scale), &shape));
    let fx = from_shape(fx, &shape);
    let out = match Activate(f)
        .prepare::<NoCheckpointing>([x.node.clone()])
        .compute_bound()
        .stateful()
    {
        OpsKind::Tracked(prep) => {
            let y = y.unwrap_or_else(|| fx.clone());
            prep.finish((fx, kept), y)
        }
        OpsKind::UnTracked(prep) => prep.finish(y.unwrap_or(fx)),
    };
    cast(Tensor::<Cpu, D>::from_primitive(TensorPrimitive::Float(
        out,
    )))
}

// ---- LayerNorm ------------------------------------------------------------

/// `y = (x − μ) / sqrt(σ² + ε) · γ + β` over the last axis (biased
/// variance, burn's `layer_norm`).
#[derive(Debug)]
struct LayerNormNode;

impl Backward<Inner, 3> for LayerNormNode {
    /// The normalised input `x̂` (`[rows, d]` row-major), `1 / sqrt(σ² + ε)`
    /// per row, `γ`, and the input's shape.
    type State = NormState;

    fn backward(self, ops: Ops<Self::State, 3>, grads: &mut Gradients, _: &mut Checkpointer) {
        let [px, pg, pb] = ops.parents;
        let dy = grads.consume::<Inner>(&ops.node);
        let [dx, dgamma, dbeta] = norm_gradients(&ops.state, &dy, px.is_some());
        register!(grads, px, dx);
        register!(grads, pg, dgamma);
        register!(grads, pb, dbeta);
    }
}

/// `LayerNorm(a + b)` for a residual connection: one node, the sum never
/// stored, and both addends given the input's gradient.
#[derive(Debug)]
struct AddLayerNormNode;

impl Backward<Inner, 4> for AddLayerNormNode {
    /// As [`LayerNormNode`]'s, for the input `a + b`.
    type State = NormState;

    fn backward(self, ops: Ops<Self::State, 4>, grads: &mut Gradients, _: &mut Checkpointer) {
        let [pa, pb, pg, pbeta] = ops.parents;
        let dy = grads.consume::<Inner>(&ops.node);
        let want_dx = pa.is_some() || pb.is_some();
        let [dx, dgamma, dbeta] = norm_gradients(&ops.state, &dy, want_dx);
        // One buffer for both (burn's tensors share it until written).
        register!(grads, pa, dx.clone());
        register!(grads, pb, dx);
        register!(grads, pg, dgamma);
        register!(grads, pbeta, dbeta);
    }
}

/// What a LayerNorm node keeps: `x̂` and `1 / sqrt(σ² + ε)` per row, `γ`,
/// and the input's shape.
type NormState = (std::sync::Arc<(Vec<f32>, Vec<f32>)>, Prim, Vec<usize>);

/// `[dx, dγ, dβ]` of a LayerNorm node for the incoming `dy` (`dx` only
/// when `want_dx`).
fn norm_gradients(state: &NormState, dy: &Prim, want_dx: bool) -> [Option<Prim>; 3] {
    let (saved, gamma, shape) = state;
    let (xhat, rstd) = &**saved;
    let (dy, gamma) = (host(dy), host(gamma));
    let (dx, dgamma, dbeta) = vectorised(
        #[inline(always)]
        || layer_norm_backward(&dy, xhat, rstd, &gamma, want_dx),
    );
    let d = dgamma.len();
    [
        want_dx.then(|| from_shape(dx, shape)),
        Some(from_shape(dgamma, &[d])),
        Some(from_shape(dbeta, &[d])),
    ]
}

/// [`LayerNormNode`]'s backward for the incoming `dy`: `(dx, dγ, dβ)`,
/// `dx` empty unless `want_dx` (called under [`vectorised`]).
#[inline(always)]
fn layer_norm_backward(
    dy: &[f32],
    xhat: &[f32],
    rstd: &[f32],
    gamma: &[f32],
    want_dx: bool,
) -> (Vec<f32>, Vec<f32>, Vec<f32>) {
    let d = gamma.len();
    let mut dgamma = vec![0f32; d];
    let mut dbeta = vec![0f32; d];
    let mut dx = Vec::with_capacity(if want_dx { xhat.len() } else { 0 });
    let mut dxhat = vec![0f32; d];
    for (row, (dy, xh)) in dy.chunks_exact(d).zip(xhat.chunks_exact(d)).enumerate() {
        for ((g, b), (&d, &h)) in dgamma.iter_mut().zip(&mut dbeta).zip(dy.iter().zip(xh)) {
            *g += d * h;
            *b += d;
        }
        if want_dx {
            // dx = rstd · (dx̂ − mean(dx̂) − x̂ · mean(dx̂ ∘ x̂)), dx̂ = dy ∘ γ.
            for ((o, &g), &w) in dxhat.iter_mut().zip(dy).zip(gamma) {
                *o = g * w;
            }
            let n = d as f32;
            let mean = sum(&dxhat) / n;
            let mean_x = dot(&dxhat, xh) / n;
            let r = rstd[row];
            dx.extend(
                dxhat
                    .iter()
                    .zip(xh)
                    .map(|(&g, &x)| r * (g - mean - x * mean_x)),
            );
        }
    }
    (dx, dgamma, dbeta)
}

/// [`LayerNormNode`]'s forward: `(y, x̂, rstd)` (called under
/// [`vectorised`]).
#[inline(always)]
fn layer_norm_forward(
    x: &[f32],
    residual: Option<&[f32]>,
    gamma: &[f32],
    beta: &[f32],
    eps: f64,
) -> (Vec<f32>, Vec<f32>, Vec<f32>) {
    let d = gamma.len();
    let rows = x.len() / d.max(1);
    // Filled row by row (no zeroing pass first).
    let mut y = Vec::with_capacity(x.len());
    let mut xhat = Vec::with_capacity(x.len());
    let mut rstd = Vec::with_capacity(rows);
    let n = d as f32;
    // The row of `x + residual`, when there is a residual.
    let mut summed = vec![0f32; if residual.is_some() { d } else { 0 }];
    for (i, x) in x.chunks_exact(d).enumerate() {
        let x: &[f32] = match residual {
            Some(r) => {
                for ((s, &a), &b) in summed.iter_mut().zip(x).zip(&r[i * d..(i + 1) * d]) {
                    *s = a + b;
                }
                &summed
            }
            None => x,
        };
        let mean = sum(x) / n;
        let var = reduce2(x, x, |v, _| (v - mean) * (v - mean)) / n;
        let r = 1.0 / (var + eps as f32).sqrt();
        rstd.push(r);
        let at = xhat.len();
        xhat.extend(x.iter().map(|&v| (v - mean) * r));
        let rows = xhat[at..].iter().zip(gamma).zip(beta);
        y.extend(rows.map(|((&h, &g), &b)| h * g + b));
    }
    (y, xhat, rstd)
}

/// burn's `LayerNorm::forward` with epsilon `eps` as one node on the CPU
/// backend (burn-autodiff runs it as a dozen elementwise nodes over the
/// whole input). `None` unless `B` is [`Cpu`] and the norm has a `β`.
pub fn layer_norm<B: Backend, const D: usize>(
    ln: &burn::nn::LayerNorm<B>,
    x: &Tensor<B, D>,
    eps: f64,
) -> Option<Tensor<B, D>> {
    norm(ln, x, None, eps)
}

/// `ln(a + b)` ([`layer_norm`] of a residual sum) as one node on the CPU
/// backend: the values of the sum and the norm as two nodes, one pass
/// and no stored sum. `None` also when `a` and `b` differ in shape.
pub fn add_layer_norm<B: Backend, const D: usize>(
    ln: &burn::nn::LayerNorm<B>,
    a: &Tensor<B, D>,
    b: &Tensor<B, D>,
    eps: f64,
) -> Option<Tensor<B, D>> {
    if a.dims() != b.dims() {
        return None;
    }
    norm(ln, a, Some(b), eps)
}

fn norm<B: Backend, const D: usize>(
    ln: &burn::nn::LayerNorm<B>,
    x: &Tensor<B, D>,
    residual: Option<&Tensor<B, D>>,
    eps: f64,
) -> Option<Tensor<B, D>> {
    if !on_cpu(&[x]) || residual.is_some_and(|r| !on_cpu(&[r])) {
        return None;
    }
    let beta = ln.beta.as_ref()?;
    // An empty or mismatched norm goes to burn's forward, which reports it.
    let width = ln.gamma.shape().num_elements();
    if width == 0 || x.dims().last() != Some(&width) {
        return None;
    }
    let (gamma, beta) = (tracked(&ln.gamma.val())?, tracked(&beta.val())?);
    let x: Tracked = tracked(x)?;
    let residual: Option<Tracked> = match residual {
        Some(r) => Some(tracked(r)?),
        None => None,
    };
    let shape = array(&x.primitive).shape().to_vec();
    let run = || {
        let (x, gamma, beta) = (
            host(&x.primitive),
            host(&gamma.primitive),
            host(&beta.primitive),
        );
        let r = residual.as_ref().map(|r| host(&r.primitive));
        let r = r.as_deref();
        vectorised(
            #[inline(always)]
            || layer_norm_forward(&x, r, &gamma, &beta, eps),
        )
    };
    let out = match &residual {
        None => finish_norm(
            LayerNormNode
                .prepare::<NoCheckpointing>([x.node.clone(), gamma.node.clone(), beta.node.clone()])
                .compute_bound()
                .stateful(),
            run,
            &gamma.primitive,
            shape,
        ),
        Some(r) => {
            let nodes = [
                x.node.clone(),
                r.node.clone(),
                gamma.node.clone(),
                beta.node.clone(),
            ];
            finish_norm(
                AddLayerNormNode
                    .prepare::<NoCheckpointing>(nodes)
                    .compute_bound()
                    .stateful(),
                run,
                &gamma.primitive,
                shape,
            )
        }
    };
    output(out)
}

/// A LayerNorm node's output from `run` (`(y, x̂, rstd)`), keeping what
/// its backward pass needs when it is tracked.
fn finish_norm<T, C, const N: usize>(
    kind: OpsKind<T, Inner, NormState, C, N>,
    run: impl FnOnce() -> (Vec<f32>, Vec<f32>, Vec<f32>),
    gamma: &Prim,
    shape: Vec<usize>,
) -> Tracked
where
    T: Backward<Inner, N, State = NormState>,
    C: burn::backend::autodiff::checkpoint::strategy::CheckpointStrategy,
{
    match kind {
        OpsKind::Tracked(prep) => {
            let (y, xhat, rstd) = run();
            let y = from_shape(y, &shape);
            prep.finish((std::sync::Arc::new((xhat, rstd)), gamma.clone(), shape), y)
        }
        OpsKind::UnTracked(prep) => prep.finish(from_shape(run().0, &shape)),
    }
}

// ---- Linear ---------------------------------------------------------------

/// `y = x W (+ b)`; the nodes with and without a bias.
#[derive(Debug)]
struct LinearBias;
#[derive(Debug)]
struct LinearNoBias;

/// `dst (+)= a b` for row-major `dst` (`m × n`), on this thread (faer;
/// about twice matrixmultiply's throughput at these shapes).
pub fn gemm(
    dst: &mut [f32],
    n: usize,
    a: faer::MatRef<'_, f32>,
    b: faer::MatRef<'_, f32>,
    add: bool,
) {
    let m = a.nrows();
    let accum = if add {
        faer::Accum::Add
    } else {
        faer::Accum::Replace
    };
    super::products::timed(super::products::Kind::Other, (m, a.ncols(), n), || {
        faer::linalg::matmul::matmul(
            faer::MatMut::from_row_major_slice_mut(dst, m, n),
            accum,
            a,
            b,
            1.0,
            faer::Par::Seq,
        );
    });
}

/// `sums += Σ_r rows_r` over the rows of `rows` (row-major, each as long
/// as `sums`): a bias's gradient, row by row in order (the same sums as a
/// plain loop), on the widest instructions this CPU has.
pub fn add_rows(sums: &mut [f32], rows: &[f32]) {
    let n = sums.len();
    if n == 0 {
        return;
    }
    vectorised(
        #[inline(always)]
        || {
            for row in rows.chunks_exact(n) {
                for (s, v) in sums.iter_mut().zip(row) {
                    *s += v;
                }
            }
        },
    );
}

/// `p` as a row-major matrix of `rows × cols` (borrowed when contiguous).
fn mat(values: &[f32], rows: usize, cols: usize) -> faer::MatRef<'_, f32> {
    faer::MatRef::from_row_major_slice(values, rows, cols)
}

fn dims(p: &Prim) -> (usize, usize) {
    matrix(p).dim()
}

/// `p` read as a matrix of its rows (all axes but the last, flattened) by
/// its last axis.
fn rows_cols(p: &Prim) -> (usize, usize) {
    let shape = array(p).shape().to_vec();
    let cols = shape.last().copied().unwrap_or(1);
    (shape.iter().product::<usize>() / cols.max(1), cols)
}

/// The shape of `p`.
fn shape(p: &Prim) -> Vec<usize> {
    array(p).shape().to_vec()
}

/// The scalars of one AdamW update of a parameter, as burn's `AdamW`
/// forms them (see [`adamw_update`]).
#[derive(Debug, Clone, Copy)]
pub struct AdamWStep {
    pub beta_1: f32,
    pub beta_2: f32,
    pub epsilon: f32,
    /// `1 − β₁ᵗ` and `1 − β₂ᵗ` for this step's `t`.
    pub correction_1: f32,
    pub correction_2: f32,
    /// The weight-decay factor `1 − lr·λ` (`None` when `lr·λ = 0`: burn
    /// then leaves the parameter as it is).
    pub decay: Option<f32>,
    pub lr: f32,
}

/// burn's AdamW update of one parameter in one pass per result (burn runs
/// about fifteen tensor operations, each a pass over the parameter and
/// most a new buffer): `[parameter, m, v]` after the step, from the
/// parameter, its gradient `g` and the moments before it (`None` on the
/// first step, when `m = (1 − β₁) g`, `v = (1 − β₂) g²`). Every value is
/// rounded where burn's operations round it, in the same order, so the
/// results are bit for bit burn's.
pub fn adamw_update(
    param: &Prim,
    grad: &Prim,
    moments: Option<(&Prim, &Prim)>,
    step: AdamWStep,
) -> [Prim; 3] {
    let shape = shape(param);
    let (p, g) = (host(param), host(grad));
    let AdamWStep {
        beta_1,
        beta_2,
        epsilon,
        correction_1,
        correction_2,
        decay,
        lr,
    } = step;
    let (f1, f2) = (1.0 - beta_1, 1.0 - beta_2);
    let [p, m, v] = vectorised(
        #[inline(always)]
        || {
            let (m, v): (Vec<f32>, Vec<f32>) = match moments {
                Some((m, v)) => (
                    host(m)
                        .iter()
                        .zip(g.iter())
                        .map(|(&m, &g)| m * beta_1 + g * f1)
                        .collect(),
                    host(v)
                        .iter()
                        .zip(g.iter())
                        .map(|(&v, &g)| v * beta_2 + (g * g) * f2)
                        .collect(),
                ),
                None => (
                    g.iter().map(|&g| g * f1).collect(),
                    g.iter().map(|&g| (g * g) * f2).collect(),
                ),
            };
            let p: Vec<f32> = p
                .iter()
                .zip(m.iter().zip(&v))
                .map(|(&p, (&m, &v))| {
                    let delta = (m / correction_1) / ((v / correction_2).sqrt() + epsilon);
                    decay.map_or(p, |d| p * d) - delta * lr
                })
                .collect();
            [p, m, v]
        },
    );
    [p, m, v].map(|values| from_shape(values, &shape))
}

/// The gradient of `t` so far, taken out of `grads` to be added to in
/// place, when there is one of `len` elements.
fn take_gradient(grads: &mut Gradients, t: &Tracked, len: usize) -> Option<Prim> {
    let g = grads.remove::<Inner>(t)?;
    if array(&g).len() == len {
        return Some(g);
    }
    grads.register::<Inner>(t.node.id, g);
    None
}

/// `add` applied to `acc`, a gradient so far (in place when its buffer is
/// this gradient's alone), or without one to zeros of `shape`.
fn accumulate(acc: Option<Prim>, shape: &[usize], add: impl FnOnce(&mut [f32])) -> Prim {
    match acc {
        Some(NdArrayTensor::F32(mut storage)) => match storage.ensure_owned().as_slice_mut() {
            Some(values) => {
                add(values);
                NdArrayTensor::F32(storage)
            }
            None => {
                let mut values = host(&NdArrayTensor::F32(storage)).into_owned();
                add(&mut values);
                from_shape(values, shape)
            }
        },
        Some(other) => {
            let mut values = host(&other).into_owned();
            add(&mut values);
            from_shape(values, shape)
        }
        None => {
            let mut values = vec![0f32; shape.iter().product()];
            add(&mut values);
            from_shape(values, shape)
        }
    }
}

/// `a b` (`m × n`, row-major) added to `acc`, a gradient so far, in place
/// when its buffer is this gradient's alone; without `acc`, a new tensor
/// of `shape`. A tensor used several times (a weight at every step of a
/// recurrence, a sequence projected to queries, keys and values) so gets
/// one product per use added into one buffer, instead of a fresh tensor
/// and an addition each time.
fn add_product(
    acc: Option<Prim>,
    a: faer::MatRef<'_, f32>,
    b: faer::MatRef<'_, f32>,
    shape: &[usize],
) -> Prim {
    let n = b.ncols();
    if let Some(NdArrayTensor::F32(mut storage)) = acc {
        if let Some(values) = storage.ensure_owned().as_slice_mut() {
            gemm(values, n, a, b, true);
            return NdArrayTensor::F32(storage);
        }
        let mut values = host(&NdArrayTensor::F32(storage)).into_owned();
        gemm(&mut values, n, a, b, true);
        return from_shape(values, shape);
    }
    let mut values = vec![0f32; a.nrows() * n];
    gemm(&mut values, n, a, b, false);
    from_shape(values, shape)
}

/// `(dx, dW)` of a linear node for the incoming `dy` (`m × n`), each when
/// its parent is tracked (`want`): `dx = dy Wᵀ` shaped as `x`, `dW = xᵀ
/// dy`, each added into its tensor's gradient so far ([`add_product`]).
fn input_and_weight_grads(
    x: &Tracked,
    w: &Tracked,
    dy: &[f32],
    grads: &mut Gradients,
    want: [bool; 2],
) -> (Option<Prim>, Option<Prim>) {
    let (k, n) = dims(&w.primitive);
    let m = dy.len() / n.max(1);
    let dy = mat(dy, m, n);
    let dx = want[0].then(|| {
        let acc = take_gradient(grads, x, m * k);
        let wv = host(&w.primitive);
        add_product(acc, dy, mat(&wv, k, n).transpose(), &shape(&x.primitive))
    });
    let dw = want[1].then(|| {
        let acc = take_gradient(grads, w, k * n);
        let xv = host(&x.primitive);
        add_product(acc, mat(&xv, m, k).transpose(), dy, &[k, n])
    });
    (dx, dw)
}

impl Backward<Inner, 3> for LinearBias {
    /// The input and the weight, with their autodiff nodes.
    type State = (Tracked, Tracked);

    fn backward(self, ops: Ops<Self::State, 3>, grads: &mut Gradients, _: &mut Checkpointer) {
        let (x, w) = ops.state;
        let dy = grads.consume::<Inner>(&ops.node);
        let (_, n) = rows_cols(&dy);
        let dyv = host(&dy);
        let [px, pw, pb] = ops.parents;
        let want = [px.is_some(), pw.is_some()];
        let (dx, dw) = input_and_weight_grads(&x, &w, &dyv, grads, want);
        let db = pb.is_some().then(|| {
            let mut sums = vec![0f32; n];
            add_rows(&mut sums, &dyv);
            from_shape(sums, &[n])
        });
        register!(grads, px, dx);
        register!(grads, pw, dw);
        register!(grads, pb, db);
    }
}

impl Backward<Inner, 2> for LinearNoBias {
    /// The input and the weight, with their autodiff nodes.
    type State = (Tracked, Tracked);

    fn backward(self, ops: Ops<Self::State, 2>, grads: &mut Gradients, _: &mut Checkpointer) {
        let (x, w) = ops.state;
        let dy = grads.consume::<Inner>(&ops.node);
        let [px, pw] = ops.parents;
        let want = [px.is_some(), pw.is_some()];
        let (dx, dw) = input_and_weight_grads(&x, &w, &host(&dy), grads, want);
        register!(grads, px, dx);
        register!(grads, pw, dw);
    }
}

/// `x W + b` in one product (the bias preloaded into the output).
fn linear_forward(x: &Prim, w: &Prim, b: Option<&Prim>) -> Prim {
    let ((m, k), (_, n)) = (rows_cols(x), dims(w));
    let (xv, wv) = (host(x), host(w));
    let mut y = match b {
        Some(b) => host(b).repeat(m),
        None => vec![0f32; m * n],
    };
    gemm(&mut y, n, mat(&xv, m, k), mat(&wv, k, n), b.is_some());
    let mut out_shape = shape(x);
    if let Some(last) = out_shape.last_mut() {
        *last = n;
    }
    from_shape(y, &out_shape)
}

/// `l(x)` for `x`: `[…, d_in]` on the CPU backend (the rows of `x` in
/// place: burn-ndarray's reshape copies even a contiguous tensor).
pub fn linear<B: Backend, const D: usize>(l: &Linear<B>, x: &Tensor<B, D>) -> Option<Tensor<B, D>> {
    affine(
        x,
        &l.weight.val(),
        l.bias.as_ref().map(|b| b.val()).as_ref(),
    )
}

/// `x W + b` for `x`: `[…, k]`, `W`: `[k, m]`, `b`: `[m]` on the CPU
/// backend ([`linear`] with the weights given as tensors).
pub fn affine<B: Backend, const D: usize>(
    x: &Tensor<B, D>,
    w: &Tensor<B, 2>,
    b: Option<&Tensor<B, 1>>,
) -> Option<Tensor<B, D>> {
    if !on_cpu(&[x]) || !on_cpu(&[w]) {
        return None;
    }
    let x: Tracked = tracked(x)?;
    let w = parts(cast(w.clone())?);
    let out = match b {
        Some(b) => {
            let b: Tracked = tracked(b)?;
            match LinearBias
                .prepare::<NoCheckpointing>([x.node.clone(), w.node.clone(), b.node.clone()])
                .compute_bound()
                .stateful()
            {
                OpsKind::Tracked(prep) => {
                    let y = linear_forward(&x.primitive, &w.primitive, Some(&b.primitive));
                    prep.finish((x, w), y)
                }
                OpsKind::UnTracked(prep) => prep.finish(linear_forward(
                    &x.primitive,
                    &w.primitive,
                    Some(&b.primitive),
                )),
            }
        }
        None => match LinearNoBias
            .prepare::<NoCheckpointing>([x.node.clone(), w.node.clone()])
            .compute_bound()
            .stateful()
        {
            OpsKind::Tracked(prep) => {
                let y = linear_forward(&x.primitive, &w.primitive, None);
                prep.finish((x, w), y)
            }
            OpsKind::UnTracked(prep) => {
                prep.finish(linear_forward(&x.primitive, &w.primitive, None))
            }
        },
    };
    cast(Tensor::<Cpu, D>::from_primitive(TensorPrimitive::Float(
        out,
    )))
}

// ---- Row selection -------------------------------------------------------

/// `out[i] = x[rows[i]]`, a zero row where `rows[i]` is past the end.
#[derive(Debug)]
struct SelectRows;

impl Backward<Inner, 1> for SelectRows {
    /// The input with its autodiff node, and the rows.
    type State = (Tracked, std::sync::Arc<[usize]>);

    fn backward(self, ops: Ops<Self::State, 1>, grads: &mut Gradients, _: &mut Checkpointer) {
        let (x, rows) = ops.state;
        let [px] = ops.parents;
        let Some(node) = px else { return };
        let dy = grads.consume::<Inner>(&ops.node);
        let (n, k) = dims(&x.primitive);
        let dyv = host(&dy);
        // Added in place into the input's gradient so far: a matrix read a
        // few rows at a time (one recurrence step each) costs the rows
        // read, not a zero-filled matrix per read.
        let add = |acc: &mut [f32]| {
            for (&r, d) in rows.iter().zip(dyv.chunks_exact(k)) {
                if r < n {
                    acc[r * k..(r + 1) * k]
                        .iter_mut()
                        .zip(d)
                        .for_each(|(a, v)| *a += v);
                }
            }
        };
        let grad = accumulate(grads.remove::<Inner>(&x), &[n, k], add);
        grads.register::<Inner>(node.id, grad);
    }
}

/// The rows `rows` of `x` (a zero row for an index past the end) on the
/// CPU backend.
pub fn select_rows<B: Backend>(
    x: &Tensor<B, 2>,
    rows: &std::sync::Arc<[usize]>,
) -> Option<Tensor<B, 2>> {
    if !on_cpu(&[x]) {
        return None;
    }
    let x = parts(cast(x.clone())?);
    let forward = |x: &Prim| {
        let (n, k) = dims(x);
        let xv = host(x);
        let mut out = vec![0f32; rows.len() * k];
        for (&r, o) in rows.iter().zip(out.chunks_exact_mut(k)) {
            if r < n {
                o.copy_from_slice(&xv[r * k..(r + 1) * k]);
            }
        }
        from_vec(out, [rows.len(), k])
    };
    let out = match SelectRows
        .prepare::<NoCheckpointing>([x.node.clone()])
        .compute_bound()
        .stateful()
    {
        OpsKind::Tracked(prep) => {
            let y = forward(&x.primitive);
            prep.finish((x, rows.clone()), y)
        }
        OpsKind::UnTracked(prep) => prep.finish(forward(&x.primitive)),
    };
    cast(tensor(out))
}

/// `x[..n]` along the first axis; its gradient is added in place into the
/// input's gradient so far.
#[derive(Debug)]
struct LeadingRows;

impl Backward<Inner, 1> for LeadingRows {
    /// The input, with its autodiff node, and its shape.
    type State = (Tracked, Vec<usize>);

    fn backward(self, ops: Ops<Self::State, 1>, grads: &mut Gradients, _: &mut Checkpointer) {
        let [px] = ops.parents;
        let Some(node) = px else { return };
        let (x, shape) = ops.state;
        let dy = grads.consume::<Inner>(&ops.node);
        let dyv = host(&dy);
        let len = shape.iter().product::<usize>();
        // The rows read get the gradient; the rest of the input's gradient
        // so far is left as it is, not added to a zero-filled tensor.
        let add = |acc: &mut [f32]| {
            vectorised(
                #[inline(always)]
                || {
                    for (a, v) in acc.iter_mut().zip(dyv.iter()) {
                        *a += v;
                    }
                },
            )
        };
        let grad = accumulate(take_gradient(grads, &x, len), &shape, add);
        grads.register::<Inner>(node.id, grad);
    }
}

/// The first `n` entries of `x` along its first axis on the CPU backend
/// (`n` at most its length). burn's slice would fill a zero tensor of
/// `x`'s whole shape in the backward pass and add it to `x`'s gradient.
pub fn leading_rows<B: Backend, const D: usize>(
    x: &Tensor<B, D>,
    n: usize,
) -> Option<Tensor<B, D>> {
    if !on_cpu(&[x]) || D == 0 {
        return None;
    }
    let x: Tracked = tracked(x)?;
    let full = shape(&x.primitive);
    if n > full[0] {
        return None;
    }
    let mut out_shape = full.clone();
    out_shape[0] = n;
    let kept = out_shape.iter().product::<usize>();
    let y = from_shape(host(&x.primitive)[..kept].to_vec(), &out_shape);
    let out = match LeadingRows
        .prepare::<NoCheckpointing>([x.node.clone()])
        .compute_bound()
        .stateful()
    {
        OpsKind::Tracked(prep) => prep.finish((x, full), y),
        OpsKind::UnTracked(prep) => prep.finish(y),
    };
    output(out)
}

// ---- Mean over steps ------------------------------------------------------

/// `mean_l x[b, l, d]`; its gradient is added in place into the input's
/// gradient so far.
#[derive(Debug)]
struct MeanSteps;

impl Backward<Inner, 1> for MeanSteps {
    /// The input, with its autodiff node, and its shape `[b, l, d]`.
    type State = (Tracked, [usize; 3]);

    fn backward(self, ops: Ops<Self::State, 1>, grads: &mut Gradients, _: &mut Checkpointer) {
        let [px] = ops.parents;
        let Some(node) = px else { return };
        let (x, [b, l, d]) = ops.state;
        let dy = grads.consume::<Inner>(&ops.node);
        let g = host(&dy);
        // burn's backward multiplies a tensor of `1 / l` (rounded to `f32`)
        // by the gradient broadcast over the steps: the same products here,
        // written once into the gradient instead of into a tensor of ones,
        // its scaled copy and their product.
        let inv = (1.0 / l as f64) as f32;
        let add = |acc: &mut [f32]| {
            vectorised(
                #[inline(always)]
                || {
                    for (acc, g) in acc.chunks_exact_mut(l * d).zip(g.chunks_exact(d)) {
                        for step in acc.chunks_exact_mut(d) {
                            for (a, &v) in step.iter_mut().zip(g) {
                                *a += inv * v;
                            }
                        }
                    }
                },
            )
        };
        let grad = accumulate(take_gradient(grads, &x, b * l * d), &[b, l, d], add);
        grads.register::<Inner>(node.id, grad);
    }
}

/// The mean of `x` (`[b, l, d]`) over its steps, `[b, 1, d]`, on the CPU
/// backend: burn-ndarray's own mean forward (so its bits); the backward
/// pass writes `g / l` over the steps once.
pub fn mean_steps<B: Backend>(x: &Tensor<B, 3>) -> Option<Tensor<B, 3>> {
    let [b, l, d] = x.dims();
    // Empty shapes go to burn's operations.
    if !on_cpu(&[x]) || b * l * d == 0 {
        return None;
    }
    let x: Tracked = tracked(x)?;
    let y =
        <Inner as burn::tensor::ops::FloatTensorOps<Inner>>::float_mean_dim(x.primitive.clone(), 1);
    let out = match MeanSteps
        .prepare::<NoCheckpointing>([x.node.clone()])
        .compute_bound()
        .stateful()
    {
        OpsKind::Tracked(prep) => prep.finish((x, [b, l, d]), y),
        OpsKind::UnTracked(prep) => prep.finish(y),
    };
    output(out)
}

// ---- Dropout --------------------------------------------------------------

/// Dropout's keep decisions at rate `p` from one seed. An element is kept
/// when a 16-bit draw falls below `t = round((1 − p) · 2¹⁶)`, so with
/// probability `t / 2¹⁶` (within 2⁻¹⁷ of `1 − p`), and a kept element is
/// scaled by `2¹⁶ / t`, which keeps the expectation exact. The draws come
/// from SplitMix64 (Steele, Lea & Flood, 2014): part `i` of a tensor (a
/// whole tensor is part 0; the attention node draws each head's weights
/// as its own part, so it can draw them again in the backward pass
/// instead of storing them) is the stream started at word `i` of the
/// hashed seed's stream, and its elements take the 16-bit quarters of its
/// words, sixteen words to 64 elements: element `64b + 16q + l` takes
/// quarter `q` of word `16b + l`. Word `w` is a function of `w` alone, so
/// the draws vectorise (ChaCha8, drawn sequentially, took a quarter of the
/// attention node's forward pass).
#[derive(Debug, Clone, Copy)]
pub struct Dropper {
    threshold: u64,
    /// The scale of a kept element, `2¹⁶ / t` (0 when nothing is kept).
    pub scale: f32,
    start: u64,
}

impl Dropper {
    /// `seed` is drawn by the caller from the backend's generator, so the
    /// trial's seed decides it.
    pub fn new(p: f64, seed: u64) -> Self {
        const ONE: f64 = 65_536.0;
        let threshold = ((1.0 - p) * ONE).round().clamp(0.0, ONE) as u64;
        let scale = if threshold == 0 {
            0.0
        } else {
            (ONE / threshold as f64) as f32
        };
        Self {
            threshold,
            scale,
            start: mix64(seed),
        }
    }

    /// The keep flags (1 kept, 0 dropped) of part `part`, as many as
    /// `flags` holds. Called under [`vectorised`].
    #[inline(always)]
    pub fn fill(&self, part: u64, flags: &mut [u8]) {
        self.fill_with(part, flags, 1, 0);
    }

    /// The multipliers of part `part` ([`Self::scale`] where kept, 0
    /// where dropped), as many as `m` holds. Called under [`vectorised`].
    #[inline(always)]
    pub fn fill_scaled(&self, part: u64, m: &mut [f32]) {
        self.fill_with(part, m, self.scale, 0.0);
    }

    /// `kept` or `dropped` for each element of part `part`.
    #[inline(always)]
    fn fill_with<T: Copy>(&self, part: u64, out: &mut [T], kept: T, dropped: T) {
        // Sixteen words at a time: the mixing vectorises across them.
        const WORDS: usize = 16;
        let start = splitmix64(self.start, part);
        // Thresholds run to 2¹⁶, quarters to 2¹⁶ − 1: both fit a `u32`.
        let threshold = self.threshold as u32;
        let n = out.len();
        let (blocks, rest) = out.as_chunks_mut::<{ 4 * WORDS }>();
        for (b, block) in blocks.iter_mut().enumerate() {
            let mut z = [0u64; WORDS];
            for (l, z) in z.iter_mut().enumerate() {
                *z = splitmix64(start, (b * WORDS + l) as u64);
            }
            // LLVM unrolls the loops below and then vectorises the loop
            // over blocks, writing with scatters (a quarter of the
            // attention node's forward pass on AMD Zen 4); the opaque
            // hint keeps each block a loop body of its own, vectorised
            // across its sixteen words.
            std::hint::black_box(&mut z);
            let (quarters, _) = block.as_chunks_mut::<WORDS>();
            for (q, quarter) in quarters.iter_mut().enumerate() {
                let mut draws = [0u32; WORDS];
                for l in 0..WORDS {
                    draws[l] = ((z[l] >> (16 * q)) & 0xffff) as u32;
                }
                for l in 0..WORDS {
                    quarter[l] = if draws[l] < threshold { kept } else { dropped };
                }
            }
        }
        let first = (n / (4 * WORDS) * WORDS) as u64;
        for (i, flag) in rest.iter_mut().enumerate() {
            let z = splitmix64(start, first + (i % WORDS) as u64);
            let draw = ((z >> (16 * (i / WORDS))) & 0xffff) as u32;
            *flag = if draw < threshold { kept } else { dropped };
        }
    }
}

/// The keep flags of `n` elements (part 0 of [`Dropper`]) and the scale of
/// a kept element.
pub fn keep_flags(n: usize, p: f64, seed: u64) -> (Vec<u8>, f32) {
    let dropper = Dropper::new(p, seed);
    let mut flags = vec![0u8; n];
    vectorised(
        #[inline(always)]
        || dropper.fill(0, &mut flags),
    );
    (flags, dropper.scale)
}

/// The keep flags of `n` elements in `seeds.len()` equal consecutive
/// slices, slice `k` the [`keep_flags`] of `seeds[k]` (a fused model's
/// seeds stacked on the leading axis: each slice gets its seed's own
/// flags), and the scale of a kept element. `None` when the slices are not
/// equal.
pub fn sliced_keep_flags(n: usize, p: f64, seeds: &[u64]) -> Option<(Vec<u8>, f32)> {
    if let [seed] = seeds {
        return Some(keep_flags(n, p, *seed));
    }
    if seeds.is_empty() || !n.is_multiple_of(seeds.len()) {
        return None;
    }
    let mut flags = vec![0u8; n];
    let mut scale = Dropper::new(p, 0).scale;
    if n > 0 {
        for (slice, &seed) in flags.chunks_exact_mut(n / seeds.len()).zip(seeds) {
            let dropper = Dropper::new(p, seed);
            vectorised(
                #[inline(always)]
                || dropper.fill(0, slice),
            );
            scale = dropper.scale;
        }
    }
    Some((flags, scale))
}

/// Word `w` of the SplitMix64 stream whose state starts at `start`: the
/// state after `w + 1` steps of the golden-ratio increment, mixed.
#[inline(always)]
fn splitmix64(start: u64, w: u64) -> u64 {
    const GAMMA: u64 = 0x9e37_79b9_7f4a_7c15;
    mix64(start.wrapping_add(w.wrapping_add(1).wrapping_mul(GAMMA)))
}

/// SplitMix64's output function (Stafford's "mix13" variant).
#[inline(always)]
pub(crate) fn mix64(z: u64) -> u64 {
    let z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    let z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// `y = x ∘ M · s` with [`keep_flags`]' flags `M` and scale `s`; the
/// state is the flags (a byte per element, not a mask tensor).
#[derive(Debug)]
struct DropoutNode;

impl Backward<Inner, 1> for DropoutNode {
    type State = (std::sync::Arc<Vec<u8>>, f32, Vec<usize>);

    fn backward(self, ops: Ops<Self::State, 1>, grads: &mut Gradients, _: &mut Checkpointer) {
        let [px] = ops.parents;
        let Some(node) = px else { return };
        let (flags, scale, shape) = ops.state;
        let dy = grads.consume::<Inner>(&ops.node);
        grads.register::<Inner>(
            node.id,
            from_shape(masked(&host(&dy), &flags, scale), &shape),
        );
    }
}

/// `x ∘ M · s` elementwise for keep flags `M` and their scale `s`.
fn masked(x: &[f32], flags: &[u8], scale: f32) -> Vec<f32> {
    vectorised(
        #[inline(always)]
        || {
            x.iter()
                .zip(flags)
                .map(|(&x, &k)| x * f32::from(k) * scale)
                .collect()
        },
    )
}

/// Dropout at rate `p` with the keep flags of `seeds` (one per slice of
/// the leading axis: [`sliced_keep_flags`]) as one node on the CPU backend.
pub fn dropout<B: Backend, const D: usize>(
    x: &Tensor<B, D>,
    p: f64,
    seeds: &[u64],
) -> Option<Tensor<B, D>> {
    if !on_cpu(&[x]) {
        return None;
    }
    let x: Tracked = tracked(x)?;
    let shape = shape(&x.primitive);
    let (flags, scale) = sliced_keep_flags(shape.iter().product(), p, seeds)?;
    let y = from_shape(masked(&host(&x.primitive), &flags, scale), &shape);
    let out = match DropoutNode
        .prepare::<NoCheckpointing>([x.node.clone()])
        .compute_bound()
        .stateful()
    {
        OpsKind::Tracked(prep) => prep.finish((std::sync::Arc::new(flags), scale, shape), y),
        OpsKind::UnTracked(prep) => prep.finish(y),
    };
    cast(Tensor::<Cpu, D>::from_primitive(TensorPrimitive::Float(
        out,
    )))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::Cpu;
    use burn::nn::{DropoutConfig, LinearConfig};
    use burn::prelude::*;
    use burn::tensor::Distribution;

    fn max_diff(a: Tensor<Cpu, 2>, b: Tensor<Cpu, 2>) -> f32 {
        (a - b).abs().max().into_scalar()
    }

    /// The activation nodes give burn's activations and their gradients
    /// (within the `f32` error of [`super::exp`]), NaN included, on a 3-D
    /// input and a transposed view of it.
    #[test]
    fn activation_nodes_equal_burns_activations() {
        use super::Activation;
        use burn::tensor::activation as act;
        let _guard = crate::backend::training_guard();
        let device = Default::default();
        let x = Tensor::<Cpu, 3>::random([2, 3, 5], Distribution::Normal(0.0, 3.0), &device)
            .require_grad();
        let w = Tensor::<Cpu, 3>::random([2, 5, 3], Distribution::Normal(0.0, 1.0), &device);
        for f in [Activation::Tanh, Activation::Sigmoid, Activation::Relu] {
            let run = |node: bool| {
                let input = x.clone().swap_dims(1, 2);
                let y = match (node, f) {
                    (true, _) => super::activation(&input, f, None).unwrap(),
                    (false, Activation::Tanh) => act::tanh(input),
                    (false, Activation::Sigmoid) => act::sigmoid(input),
                    (false, Activation::Relu) => act::relu(input),
                };
                let grads = (y.clone() * w.clone()).sum().backward();
                let g = Tensor::<Cpu, 3>::from_inner(x.grad(&grads).unwrap());
                (y, g)
            };
            let ((y1, g1), (y2, g2)) = (run(true), run(false));
            for (what, a, b) in [("value", y1, y2), ("gradient", g1, g2)] {
                let d: f32 = (a - b).abs().max().into_scalar();
                assert!(d < 1e-6, "{f:?} {what}: {d}");
            }
            let nan = Tensor::<Cpu, 2>::from_floats([[f32::NAN, 1.0]], &device);
            let y = super::activation(&nan, f, None)
                .unwrap()
                .into_data()
                .to_vec::<f32>()
                .unwrap();
            assert!(y[0].is_nan(), "{f:?} of NaN: {}", y[0]);
        }
    }

    /// The activation node with dropout gives the bits of the activation
    /// node followed by the dropout node for the same backend seed: values
    /// and gradients.
    #[test]
    fn activation_with_dropout_equals_the_two_nodes() {
        use super::Activation;
        let _guard = crate::backend::training_guard();
        let device = Default::default();
        let dropout = DropoutConfig::new(0.3).init();
        let x = Tensor::<Cpu, 3>::random([4, 7, 33], Distribution::Normal(0.0, 2.0), &device)
            .require_grad();
        let w = Tensor::<Cpu, 3>::random([4, 7, 33], Distribution::Normal(0.0, 1.0), &device);
        for f in [Activation::Tanh, Activation::Sigmoid, Activation::Relu] {
            let run = |fused: bool| {
                <Cpu as Backend>::seed(&device, 5);
                let y = if fused {
                    crate::tensor::activation_dropout(&dropout, f, x.clone())
                } else {
                    let y = super::activation(&x, f, None).unwrap();
                    crate::tensor::dropout(&dropout, y)
                };
                let grads = (y.clone() * w.clone()).sum().backward();
                let g = Tensor::<Cpu, 3>::from_inner(x.grad(&grads).unwrap());
                (crate::tensor::to_f32_vec(y), crate::tensor::to_f32_vec(g))
            };
            let (fused, apart) = (run(true), run(false));
            assert!(fused.0.contains(&0.0), "{f:?}: nothing dropped");
            assert_eq!(fused, apart, "{f:?}");
        }
    }

    /// A node against burn's form of the same operation on a `[5, 7, 3]`
    /// input `x`, as given and transposed (a strided view, `[5, 3, 7]`),
    /// with the input's other use reaching the backward pass before the
    /// node and after it: per case, `(output, x's gradient)` of
    /// `op(x, true)` (the node) and of `op(x, false)` (burn). The loss
    /// weighs the output by `weights(input dims)`.
    #[allow(clippy::type_complexity)]
    fn node_and_burn(
        op: impl Fn(&Tensor<Cpu, 3>, bool) -> Tensor<Cpu, 3>,
        weights: impl Fn([usize; 3]) -> [usize; 3],
    ) -> Vec<[(Vec<f32>, Vec<f32>); 2]> {
        let device = Default::default();
        let x = Tensor::<Cpu, 3>::random([5, 7, 3], Distribution::Normal(0.0, 1.0), &device)
            .require_grad();
        let mut cases = Vec::new();
        for (transposed, other_first) in [(false, false), (false, true), (true, false)] {
            // Built in each run: a backward pass consumes the graph behind it.
            let input = || {
                if transposed {
                    x.clone().swap_dims(1, 2)
                } else {
                    x.clone()
                }
            };
            let dims = input().dims();
            let w = Tensor::<Cpu, 3>::random(weights(dims), Distribution::Default, &device);
            let v = Tensor::<Cpu, 3>::random(dims, Distribution::Default, &device);
            let run = |node: bool| {
                let input = input();
                let other = |t: Tensor<Cpu, 3>| (t * v.clone()).sum();
                let before = other_first.then(|| other(input.clone()));
                let out = op(&input, node);
                let mut loss = (out.clone() * w.clone()).sum();
                loss = match before {
                    Some(b) => b + loss,
                    None => loss + other(input),
                };
                let grads = loss.backward();
                let g = Tensor::<Cpu, 3>::from_inner(x.grad(&grads).unwrap());
                (crate::tensor::to_f32_vec(out), crate::tensor::to_f32_vec(g))
            };
            cases.push([run(true), run(false)]);
        }
        cases
    }

    /// The leading-rows node gives burn's slice and the same input
    /// gradient, whether the input's other use reaches the backward pass
    /// before the node or after it, and on a transposed input.
    #[test]
    fn leading_rows_equal_burns_slice() {
        let _guard = crate::backend::training_guard();
        let rows = |x: &Tensor<Cpu, 3>, node: bool| {
            if node {
                super::leading_rows(x, 2).unwrap()
            } else {
                x.clone().narrow(0, 0, 2)
            }
        };
        for (i, [node, burn]) in node_and_burn(rows, |[_, a, b]| [2, a, b])
            .into_iter()
            .enumerate()
        {
            assert_eq!(node, burn, "case {i}");
        }
        let x = Tensor::<Cpu, 3>::zeros([5, 4, 3], &Default::default());
        assert!(super::leading_rows(&x, 6).is_none());
    }

    /// The mean over steps gives burn's `mean_dim` bit for bit: the mean
    /// and the input's gradient, for a strided input and with the input's
    /// other use before or after it (its gradient added in place).
    #[test]
    fn mean_steps_equals_burns_mean_dim() {
        let _guard = crate::backend::training_guard();
        let mean = |x: &Tensor<Cpu, 3>, node: bool| {
            if node {
                super::mean_steps(x).unwrap()
            } else {
                x.clone().mean_dim(1)
            }
        };
        let bits = |v: Vec<f32>| v.into_iter().map(f32::to_bits).collect::<Vec<_>>();
        for (i, [node, burn]) in node_and_burn(mean, |[b, _, d]| [b, 1, d])
            .into_iter()
            .enumerate()
        {
            assert_eq!(bits(node.0), bits(burn.0), "mean, case {i}");
            assert_eq!(bits(node.1), bits(burn.1), "gradient, case {i}");
        }
        // Empty shapes are left to burn.
        let empty = Tensor::<Cpu, 3>::zeros([2, 0, 3], &Default::default()).require_grad();
        assert!(super::mean_steps(&empty).is_none());
    }

    /// The reductions equal plain sums and maxima on rows of every length
    /// around the lane count, and a NaN makes the maximum NaN.
    #[test]
    fn vectorised_reductions_equal_plain_ones() {
        for n in [0, 1, 15, 16, 17, 33, 150] {
            let x: Vec<f32> = (0..n)
                .map(|i| ((i * 37 % 11) as f32 - 5.0) * 0.25)
                .collect();
            let y: Vec<f32> = (0..n).map(|i| (i % 3) as f32 - 1.0).collect();
            let plain_sum: f32 = x.iter().sum();
            let plain_dot: f32 = x.iter().zip(&y).map(|(a, b)| a * b).sum();
            let plain_max = x.iter().fold(f32::NEG_INFINITY, |m, &v| m.max(v));
            assert!((super::sum(&x) - plain_sum).abs() < 1e-5, "sum of {n}");
            assert!((super::dot(&x, &y) - plain_dot).abs() < 1e-5, "dot of {n}");
            assert_eq!(super::max(&x), plain_max, "max of {n}");
        }
        // A NaN score makes its softmax row NaN.
        let mut x = vec![1.0f32; 40];
        x[33] = f32::NAN;
        let m = super::max(&x);
        assert_eq!(m, 1.0);
        assert!(super::exp_sum(&mut x, m).is_nan());
    }

    /// A LayerNorm over `width` features with non-trivial `γ` and `β` (as
    /// after some training).
    fn random_norm(width: usize) -> burn::nn::LayerNorm<Cpu> {
        let device = Default::default();
        let mut ln = crate::tensor::layer_norm_config(width).init::<Cpu>(&device);
        let param = |mean| {
            burn::module::Param::from_tensor(Tensor::<Cpu, 1>::random(
                [width],
                Distribution::Normal(mean, 0.3),
                &device,
            ))
        };
        ln.gamma = param(1.0);
        ln.beta = Some(param(0.0));
        ln
    }

    /// The LayerNorm node gives burn's `LayerNorm::forward` outputs and the
    /// gradients of the input, `γ` and `β`, for a 3-D input (non-trivial
    /// `γ`, `β` after one optimiser-like update) and a transposed one.
    #[test]
    fn layer_norm_node_equals_burns_layer_norm() {
        let _guard = crate::backend::training_guard();
        let device = Default::default();
        let ln = random_norm(6);
        for transposed in [false, true] {
            let x = Tensor::<Cpu, 3>::random([2, 6, 4], Distribution::Normal(0.5, 2.0), &device)
                .require_grad();
            let w = Tensor::<Cpu, 3>::random([2, 4, 6], Distribution::Normal(0.0, 1.0), &device);
            let input = || {
                if transposed {
                    x.clone().swap_dims(1, 2)
                } else {
                    x.clone().reshape([2, 4, 6])
                }
            };
            let run = |node: bool| {
                let y = if node {
                    super::layer_norm(&ln, &input(), crate::tensor::LAYER_NORM_EPS).unwrap()
                } else {
                    ln.forward(input())
                };
                let grads = (y.clone() * w.clone()).sum().backward();
                let gamma = Tensor::<Cpu, 1>::from_inner(ln.gamma.val().grad(&grads).unwrap());
                let beta = ln.beta.as_ref().unwrap().val();
                let beta = Tensor::<Cpu, 1>::from_inner(beta.grad(&grads).unwrap());
                let gx = Tensor::<Cpu, 3>::from_inner(x.grad(&grads).unwrap());
                [
                    y.reshape([48]),
                    gx.reshape([48]),
                    gamma.reshape([6]),
                    beta.reshape([6]),
                ]
            };
            for (i, (a, b)) in run(true).into_iter().zip(run(false)).enumerate() {
                let d: f32 = (a - b).abs().max().into_scalar();
                assert!(d < 1e-5, "transposed={transposed} output {i}: {d}");
            }
        }
    }

    /// The residual node gives the bits of burn's sum followed by the
    /// LayerNorm node: values and the gradients of both addends, `γ` and
    /// `β`, with an addend that is also used elsewhere and with one input
    /// as both addends.
    #[test]
    fn add_layer_norm_equals_the_sum_then_the_norm() {
        let _guard = crate::backend::training_guard();
        let device = Default::default();
        let ln = random_norm(20);
        let shape = [3, 5, 20];
        let a =
            Tensor::<Cpu, 3>::random(shape, Distribution::Normal(0.5, 2.0), &device).require_grad();
        let b =
            Tensor::<Cpu, 3>::random(shape, Distribution::Normal(0.0, 1.0), &device).require_grad();
        let w = Tensor::<Cpu, 3>::random(shape, Distribution::Normal(0.0, 1.0), &device);
        for same in [false, true] {
            let run = |fused: bool| {
                let rhs = if same { a.clone() } else { b.clone() };
                let y = if fused {
                    crate::tensor::add_layer_norm(&ln, a.clone(), rhs.clone())
                } else {
                    crate::tensor::layer_norm(&ln, a.clone() + rhs.clone())
                };
                let loss = (y.clone() * w.clone()).sum() + (rhs * w.clone()).sum();
                let grads = loss.backward();
                let gamma = Tensor::<Cpu, 1>::from_inner(ln.gamma.val().grad(&grads).unwrap());
                let beta = ln.beta.as_ref().unwrap().val();
                let beta = Tensor::<Cpu, 1>::from_inner(beta.grad(&grads).unwrap());
                let ga = Tensor::<Cpu, 3>::from_inner(a.grad(&grads).unwrap());
                let gb = b.grad(&grads).map(Tensor::<Cpu, 3>::from_inner);
                let v = crate::tensor::to_f32_vec::<Cpu, 3>;
                let v1 = crate::tensor::to_f32_vec::<Cpu, 1>;
                (v(y), v(ga), gb.map(v), v1(gamma), v1(beta))
            };
            assert_eq!(run(true), run(false), "one input as both addends: {same}");
        }
        let other = Tensor::<Cpu, 3>::zeros([3, 1, 20], &device);
        assert!(super::add_layer_norm(&ln, &a, &other, 1e-5).is_none());
    }

    /// The fused linear node gives burn's `Linear` outputs and gradients,
    /// with and without a bias, for a contiguous and a transposed input,
    /// with the layer used twice.
    #[test]
    fn fused_linear_equals_burns_linear() {
        let _guard = crate::backend::training_guard();
        let device = Default::default();
        for bias in [true, false] {
            let l = LinearConfig::new(5, 3).with_bias(bias).init::<Cpu>(&device);
            for transposed in [false, true] {
                // A transposed input is a strided view of a [5, 4] tensor.
                let shape = if transposed { [5, 4] } else { [4, 5] };
                let x = Tensor::<Cpu, 2>::random(shape, Distribution::Normal(0.0, 1.0), &device)
                    .require_grad();
                let w = Tensor::<Cpu, 2>::random([4, 3], Distribution::Normal(0.0, 1.0), &device);
                let input = |x: &Tensor<Cpu, 2>| {
                    if transposed {
                        x.clone().transpose()
                    } else {
                        x.clone()
                    }
                };
                // Applied twice: the second weight gradient accumulates
                // into the first.
                let run = |fused: bool| {
                    let apply = |x: Tensor<Cpu, 2>| {
                        if fused {
                            super::linear(&l, &x).unwrap()
                        } else {
                            l.forward(x)
                        }
                    };
                    let y = apply(input(&x)) + apply(input(&x) * 0.5 - 1.0);
                    let grads = (y.clone() * w.clone()).sum().backward();
                    let g =
                        |t: Tensor<Cpu, 2>| Tensor::<Cpu, 2>::from_inner(t.grad(&grads).unwrap());
                    let mut out = vec![y, g(x.clone()), g(l.weight.val())];
                    if let Some(b) = &l.bias {
                        out.push(
                            Tensor::<Cpu, 1>::from_inner(b.val().grad(&grads).unwrap()).unsqueeze(),
                        );
                    }
                    out
                };
                for (i, (a, b)) in run(true).into_iter().zip(run(false)).enumerate() {
                    let d = max_diff(a, b);
                    assert!(
                        d < 1e-5,
                        "bias={bias} transposed={transposed} output {i}: {d}"
                    );
                }
            }
        }
    }

    /// Row selection gives burn's `select` values and gradients, with
    /// padding rows, repeated rows and the input read twice (the second
    /// gradient added in place into the first).
    #[test]
    fn row_selection_equals_burns_select() {
        let _guard = crate::backend::training_guard();
        let device = Default::default();
        let x = Tensor::<Cpu, 2>::random([4, 3], Distribution::Normal(0.0, 1.0), &device)
            .require_grad();
        let w = Tensor::<Cpu, 2>::random([5, 3], Distribution::Normal(0.0, 1.0), &device);
        let (first, second) = (vec![2, 4, 0, 2, 9], vec![1, 1, 3, 4, 0]);
        let run = |fused: bool| {
            // Both reads from one node.
            let x2 = x.clone() * 2.0;
            let pick = |rows: &Vec<usize>| {
                let r = crate::tensor::Rows::<Cpu>::new(rows.clone());
                if fused {
                    crate::tensor::select_rows(x2.clone(), &r)
                } else {
                    // burn's select after appending the zero row.
                    let ids: Vec<i64> = rows.iter().map(|&i| i.min(4) as i64).collect();
                    let ids = Tensor::<Cpu, 1, Int>::from_data(TensorData::new(ids, [5]), &device);
                    Tensor::cat(vec![x2.clone(), Tensor::zeros([1, 3], &device)], 0).select(0, ids)
                }
            };
            let y = pick(&first) + pick(&second) * 3.0;
            let grads = (y.clone() * w.clone()).sum().backward();
            [y, Tensor::<Cpu, 2>::from_inner(x.grad(&grads).unwrap())]
        };
        for (i, (a, b)) in run(true).into_iter().zip(run(false)).enumerate() {
            let d = max_diff(a, b);
            assert!(d < 1e-6, "output {i}: {d}");
        }
    }

    /// The CPU dropout keeps about `1 − p` of the elements scaled by
    /// `1 / (1 − p)`, repeats for a reseeded backend, and its gradient is
    /// the mask.
    #[test]
    fn cpu_dropout_masks_scale_repeat_and_pass_gradients() {
        let _guard = crate::backend::training_guard();
        let device = Default::default();
        let d = DropoutConfig::new(0.4).init();
        let run = || {
            <Cpu as Backend>::seed(&device, 7);
            let x = Tensor::<Cpu, 2>::ones([100, 200], &device).require_grad();
            let y = crate::tensor::dropout(&d, x.clone());
            let g = Tensor::<Cpu, 2>::from_inner(x.grad(&y.clone().sum().backward()).unwrap());
            (crate::tensor::to_f32_vec(y), crate::tensor::to_f32_vec(g))
        };
        let (y, g) = run();
        let kept = y.iter().filter(|&&v| v != 0.0).count() as f64 / y.len() as f64;
        assert!((kept - 0.6).abs() < 0.01, "kept {kept}");
        // Kept elements scale by 2¹⁶ / round(0.6 · 2¹⁶), within 1e-4 of 1 / 0.6.
        let scale = 65_536.0 / (0.6f64 * 65_536.0).round();
        assert!((scale - 1.0 / 0.6).abs() < 1e-4);
        assert!(
            y.iter()
                .all(|&v| v == 0.0 || (f64::from(v) - scale).abs() < 1e-6)
        );
        assert_eq!(y, g, "the gradient of x · mask is the mask");
        assert_eq!(run().0, y, "the same backend seed gives the same mask");
    }

    /// Slice `k` of sliced keep flags is the flags of `seeds[k]` alone, and
    /// an element's flag does not depend on how many follow it (a fused
    /// seed's padded rows leave its real rows' flags as they are).
    #[test]
    fn each_slice_gets_its_own_seeds_flags() {
        use super::{keep_flags, sliced_keep_flags};
        let (n, p) = (3 * 150, 0.3);
        let (flags, scale) = sliced_keep_flags(n, p, &[5, 9, 5]).unwrap();
        for (slice, seed) in flags.chunks_exact(150).zip([5, 9, 5]) {
            assert_eq!(slice, keep_flags(150, p, seed).0.as_slice());
        }
        assert_ne!(flags[..150], flags[150..300]);
        assert_eq!(scale, keep_flags(1, p, 0).1);
        assert_eq!(keep_flags(1000, p, 3).0[..150], keep_flags(150, p, 3).0[..]);
        assert!(sliced_keep_flags(10, p, &[1, 2, 3]).is_none());
        assert_eq!(
            sliced_keep_flags(10, p, &[4]).unwrap().0,
            keep_flags(10, p, 4).0
        );
    }

    /// `keep_dot` gives the plain loop's bits: `(g ∘ m) ∘ p` summed in
    /// [`super::LANES`] partial sums (element `i` into sum `i mod LANES`)
    /// added up as `lanes` adds them; rows with and without a tail.
    #[test]
    fn keep_dot_equals_the_plain_loop_bitwise() {
        use super::{LANES, keep_dot, lanes};
        for n in [0, 5, 16, 50, 147] {
            let value = |i: usize, f: f32| (i as f32 * f).sin() * 3.0;
            let g0: Vec<f32> = (0..n).map(|i| value(i, 0.7)).collect();
            let m: Vec<f32> = (0..n)
                .map(|i| if i % 3 == 0 { 0.0 } else { 1.25 })
                .collect();
            let p: Vec<f32> = (0..n).map(|i| value(i, 1.3).abs()).collect();
            let mut expected_g = g0.clone();
            let mut acc = [0f32; LANES];
            for i in 0..n {
                expected_g[i] *= m[i];
                acc[i % LANES] += expected_g[i] * p[i];
            }
            let expected = lanes(acc, |a, b| a + b);
            let got = keep_dot(&g0, &m, &p);
            assert_eq!(got.to_bits(), expected.to_bits(), "n = {n}");
        }
    }

    /// Softmax's passes give the plain loop's bits on rows of every
    /// length around the lane count and the attention's 50 and 147 keys:
    /// `exp` element by element, and the sum in [`super::LANES`] partial
    /// sums (element `i` into sum `i mod LANES`) added up as `lanes` adds
    /// them, under the widest instructions and the baseline alike.
    #[test]
    fn softmax_passes_equal_the_plain_loop_bitwise() {
        use super::{LANES, exp, exp_scaled, exp_sum, lanes, vectorised};
        let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
        for n in (0..=40).chain([50, 147]) {
            let x: Vec<f32> = (0..n).map(|i| (i as f32 * 0.37).sin() * 4.0).collect();
            let (shift, scale) = (0.8, 0.3);
            let exps: Vec<f32> = x.iter().map(|&v| exp(v - shift)).collect();
            let mut acc = [0f32; LANES];
            for (i, &e) in exps.iter().enumerate() {
                acc[i % LANES] += e;
            }
            let sum = lanes(acc, |a, b| a + b);
            let scaled: Vec<f32> = x.iter().map(|&v| exp(v - shift) * scale).collect();
            let (mut a, mut b) = (x.clone(), x.clone());
            let sum_a = exp_sum(&mut a, shift);
            let sum_b = vectorised(
                #[inline(always)]
                || exp_sum(&mut b, shift),
            );
            for (got, row, how) in [(sum_a, a, "baseline"), (sum_b, b, "vectorised")] {
                assert_eq!(got.to_bits(), sum.to_bits(), "{how} sum, n = {n}");
                assert_eq!(bits(&row), bits(&exps), "{how} exponentials, n = {n}");
            }
            let (mut a, mut b) = (x.clone(), x.clone());
            exp_scaled(&mut a, shift, scale);
            vectorised(
                #[inline(always)]
                || exp_scaled(&mut b, shift, scale),
            );
            assert_eq!(bits(&a), bits(&scaled), "baseline scaled, n = {n}");
            assert_eq!(bits(&b), bits(&scaled), "vectorised scaled, n = {n}");
        }
    }

    /// A dropper's parts: the same flags again for the same part (a
    /// shorter buffer gets the first of them), other flags for another
    /// part or seed, kept at the rate, with no pattern between neighbours
    /// or between the quarters of one word.
    #[test]
    fn dropper_parts_repeat_differ_and_keep_at_the_rate() {
        let fill = |d: &super::Dropper, part: u64, n: usize| {
            let mut f = vec![0u8; n];
            d.fill(part, &mut f);
            f
        };
        let d = super::Dropper::new(0.25, 11);
        let a = fill(&d, 3, 100_003);
        assert_eq!(a, fill(&d, 3, 100_003));
        assert_eq!(a[..777], fill(&d, 3, 777)[..], "a prefix is the same draws");
        let agree = |b: &[u8]| a.iter().zip(b).filter(|(x, y)| x == y).count() as f64;
        // Independent flags kept at 0.75 agree on 0.75² + 0.25² = 0.625.
        for other in [
            fill(&d, 4, a.len()),
            fill(&super::Dropper::new(0.25, 12), 3, a.len()),
        ] {
            let same = agree(&other) / a.len() as f64;
            assert!((same - 0.625).abs() < 0.01, "agreement {same}");
        }
        let kept = a.iter().map(|&f| f64::from(f)).sum::<f64>() / a.len() as f64;
        assert!((kept - 0.75).abs() < 0.005, "kept {kept}");
        for lag in [1, 16, 64] {
            let both = a
                .iter()
                .zip(&a[lag..])
                .filter(|(x, y)| **x == 1 && **y == 1);
            let rate = both.count() as f64 / (a.len() - lag) as f64;
            assert!((rate - 0.5625).abs() < 0.01, "lag {lag}: {rate}");
        }
        assert_eq!(d.scale, (65_536.0f64 / 49_152.0) as f32);
        let none = super::Dropper::new(1.0, 11);
        assert!(fill(&none, 0, 1000).iter().all(|&f| f == 0) && none.scale == 0.0);
        assert!(
            fill(&super::Dropper::new(0.0, 11), 0, 1000)
                .iter()
                .all(|&f| f == 1)
        );
    }
}

#[cfg(test)]
mod math_tests {
    /// [`super::exp`], [`super::sigmoid`] and [`super::tanh`] against the
    /// standard library in `f64` over their whole range.
    #[test]
    fn vectorisable_exp_sigmoid_and_tanh_are_accurate() {
        let (mut worst_exp, mut worst_sig, mut worst_tanh) = (0f64, 0f64, 0f64);
        let mut x = -100f32;
        while x < 100.0 {
            let xe = f64::from(x.clamp(-87.0, 88.0));
            let rel = (f64::from(super::exp(x)) - xe.exp()).abs() / xe.exp();
            worst_exp = worst_exp.max(rel);
            let sig = 1.0 / (1.0 + (-f64::from(x)).exp());
            worst_sig = worst_sig.max((f64::from(super::sigmoid(x)) - sig).abs());
            worst_tanh = worst_tanh.max((f64::from(super::tanh(x)) - f64::from(x).tanh()).abs());
            x += 0.001_7;
        }
        assert!(worst_exp < 3e-7, "exp: relative error {worst_exp}");
        assert!(worst_sig < 2e-7, "sigmoid: absolute error {worst_sig}");
        assert!(worst_tanh < 3e-7, "tanh: absolute error {worst_tanh}");
        assert!(super::exp(-1000.0) > 0.0 && super::exp(1000.0).is_finite());
        // A NaN stays a NaN (a diverged trial must fail, not be squashed).
        assert!(super::exp(f32::NAN).is_nan() && super::sigmoid(f32::NAN).is_nan());
        assert!(super::tanh(f32::NAN).is_nan());
    }

    /// A kernel run under [`super::vectorised`] (the widest instructions
    /// this CPU has) gives the bits of the same kernel compiled for the
    /// baseline: trial numbers do not depend on which instruction set ran.
    #[test]
    fn vectorised_kernels_give_the_baseline_bits() {
        use super::{Activation, layer_norm_forward, vectorised};
        let x: Vec<f32> = (0..3 * 130)
            .map(|i| ((i * 7919) % 1000) as f32 / 97.0 - 5.0)
            .collect();
        let (gamma, beta): (Vec<f32>, Vec<f32>) = (0..130)
            .map(|j| (1.0 + j as f32 / 300.0, j as f32 / 500.0 - 0.1))
            .unzip();
        let baseline = layer_norm_forward(&x, None, &gamma, &beta, 1e-5);
        let wide = vectorised(
            #[inline(always)]
            || layer_norm_forward(&x, None, &gamma, &beta, 1e-5),
        );
        assert_eq!(baseline, wide, "layer norm");
        for f in [Activation::Tanh, Activation::Sigmoid, Activation::Relu] {
            let a = f.forward(&x);
            let b = vectorised(
                #[inline(always)]
                || f.forward(&x),
            );
            assert_eq!(a, b, "{f:?}");
        }
        let (mut a, mut b) = (x.clone(), x.clone());
        let sum_a = super::exp_sum(&mut a, 1.5);
        let sum_b = vectorised(
            #[inline(always)]
            || super::exp_sum(&mut b, 1.5),
        );
        assert_eq!((sum_a.to_bits(), a), (sum_b.to_bits(), b), "softmax sums");
    }
}
