//! Fused building blocks: `K` independent copies of a burn layer, one per
//! seed, evaluated as one batched computation.
//!
//! Activations carry the seed axis first: `[K, N, d]` (rows) or
//! `[K, B, L, d]` (sequences). Slice `k` of every parameter is a copy of
//! seed `k`'s unfused layer ([`stack`]), and every block computes exactly
//! what the unfused burn layer computes on that slice, so gradients and
//! AdamW updates stay per seed. Each block names the burn 0.21 layer it
//! mirrors; the fused-vs-unfused tests in `worker/tests/` catch a drift.

use burn::module::Param;
use burn::nn::attention::MultiHeadAttention;
use burn::nn::{Dropout, DropoutConfig, LayerNorm, Linear, Lstm};
use burn::prelude::*;
use burn::tensor::activation::sigmoid;

use crate::trial::TrainError;

fn err(message: impl Into<String>) -> TrainError {
    TrainError::Backend(message.into())
}

/// Stacks one detached tensor per seed along a new leading axis.
pub fn stack<B: Backend, const D: usize, const D2: usize>(
    tensors: Vec<Tensor<B, D>>,
) -> Result<Tensor<B, D2>, TrainError> {
    if tensors.is_empty() {
        return Err(err("no seeds to fuse"));
    }
    let first = tensors[0].dims();
    if tensors.iter().any(|t| t.dims() != first) {
        return Err(err("fused layers differ in shape"));
    }
    // A stack is a new graph node: detach it so that it becomes a leaf
    // (a parameter) of its own.
    Ok(Tensor::stack(tensors.into_iter().map(|t| t.detach()).collect(), 0).detach())
}

fn param<B: Backend, const D: usize>(t: Tensor<B, D>) -> Param<Tensor<B, D>> {
    Param::from_tensor(t)
}

/// `[K, B, L, d]` → `[K, B·L, d]`, the layout of the fused matmuls.
fn rows<B: Backend>(x: Tensor<B, 4>) -> (Tensor<B, 3>, [usize; 3]) {
    let [k, b, l, d] = x.dims();
    (x.reshape([k, b * l, d]), [k, b, l])
}

/// Applies a row-wise `[K, N, d]` → `[K, N, d']` map to every time step of
/// `[K, B, L, d]`.
fn per_step<B: Backend>(
    x: Tensor<B, 4>,
    f: impl FnOnce(Tensor<B, 3>) -> Tensor<B, 3>,
) -> Tensor<B, 4> {
    let (x, [k, b, l]) = rows(x);
    let y = f(x);
    let d = y.dims()[2];
    y.reshape([k, b, l, d])
}

/// `K` linear layers (burn's `Linear`, row layout `x·W + b`) as one batched matmul.
#[derive(Module, Debug)]
pub struct FusedLinear<B: Backend> {
    /// `[K, in, out]`.
    pub weight: Param<Tensor<B, 3>>,
    /// `[K, 1, out]`.
    pub bias: Param<Tensor<B, 3>>,
}

impl<B: Backend> FusedLinear<B> {
    /// Slice `k` is a copy of `layers[k]` (all `[in, out]`, all with a bias:
    /// a bias-free layer would become a trained zero bias, not the unfused
    /// model, so it is refused).
    pub fn from_linears(layers: &[&Linear<B>]) -> Result<Self, TrainError> {
        let weights = layers.iter().map(|l| l.weight.val()).collect();
        let biases = layers
            .iter()
            .map(|l| {
                l.bias
                    .as_ref()
                    .map(|b| b.val().unsqueeze_dim::<2>(0))
                    .ok_or_else(|| err("fusing a linear layer without bias"))
            })
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Self {
            weight: param(stack(weights)?),
            bias: param(stack(biases)?),
        })
    }

    /// `[K, N, in]` → `[K, N, out]`.
    pub fn forward(&self, x: Tensor<B, 3>) -> Tensor<B, 3> {
        x.matmul(self.weight.val()) + self.bias.val()
    }

    /// `[K, B, L, in]` → `[K, B, L, out]`.
    pub fn forward4(&self, x: Tensor<B, 4>) -> Tensor<B, 4> {
        per_step(x, |x| self.forward(x))
    }
}

/// Epsilon of every LayerNorm the fused models mirror.
pub use crate::tensor::LAYER_NORM_EPS;

/// `K` LayerNorms over the last axis (burn's `layer_norm`: biased variance,
/// `(x − μ) / sqrt(σ² + ε) · γ + β`).
#[derive(Module, Debug)]
pub struct FusedLayerNorm<B: Backend> {
    /// `[K, 1, d]`.
    pub gamma: Param<Tensor<B, 3>>,
    /// `[K, 1, d]`.
    pub beta: Param<Tensor<B, 3>>,
}

impl<B: Backend> FusedLayerNorm<B> {
    pub fn from_norms(norms: &[&LayerNorm<B>]) -> Result<Self, TrainError> {
        let gammas = norms
            .iter()
            .map(|n| n.gamma.val().unsqueeze_dim::<2>(0))
            .collect();
        let betas = norms
            .iter()
            .map(|n| {
                n.beta
                    .as_ref()
                    .map(|b| b.val().unsqueeze_dim::<2>(0))
                    .ok_or_else(|| err("fusing a LayerNorm without beta"))
            })
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Self {
            gamma: param(stack(gammas)?),
            beta: param(stack(betas)?),
        })
    }

    /// `[K, N, d]` → `[K, N, d]`.
    pub fn forward(&self, x: Tensor<B, 3>) -> Tensor<B, 3> {
        let mean = x.clone().mean_dim(2);
        let centered = x - mean;
        let var = (centered.clone() * centered.clone()).mean_dim(2);
        let normalized = centered / var.add_scalar(LAYER_NORM_EPS).sqrt();
        normalized * self.gamma.val() + self.beta.val()
    }

    /// `[K, B, L, d]` → `[K, B, L, d]`.
    pub fn forward4(&self, x: Tensor<B, 4>) -> Tensor<B, 4> {
        per_step(x, |x| self.forward(x))
    }
}

/// `K` unidirectional, batch-first LSTM layers (burn's `Lstm` with its
/// defaults: gates `σ(x·W_x + b_x + h·W_h + b_h)` in the order input,
/// forget, output, cell; cell candidate and output through `tanh`). The four
/// gates' weights sit side by side (`[K, d, 4h]`), so a step is one batched
/// matmul; input and hidden biases stay separate parameters, as unfused.
#[derive(Module, Debug)]
pub struct FusedLstm<B: Backend> {
    /// `[K, d_in, 4h]`.
    pub input_weight: Param<Tensor<B, 3>>,
    /// `[K, 1, 4h]`.
    pub input_bias: Param<Tensor<B, 3>>,
    /// `[K, h, 4h]`.
    pub hidden_weight: Param<Tensor<B, 3>>,
    /// `[K, 1, 4h]`.
    pub hidden_bias: Param<Tensor<B, 3>>,
    pub d_hidden: usize,
}

impl<B: Backend> FusedLstm<B> {
    pub fn from_lstms(lstms: &[&Lstm<B>]) -> Result<Self, TrainError> {
        let first = lstms.first().ok_or_else(|| err("no LSTMs to fuse"))?;
        for l in lstms {
            if l.reverse || !l.batch_first || l.clip.is_some() || l.input_forget {
                return Err(err(
                    "seed fusion mirrors forward, batch-first LSTMs without clipping or coupled gates",
                ));
            }
        }
        let part =
            |l: &Lstm<B>, hidden: bool| -> Result<(Tensor<B, 2>, Tensor<B, 2>), TrainError> {
                let gates = [&l.input_gate, &l.forget_gate, &l.output_gate, &l.cell_gate];
                let mut ws = Vec::with_capacity(4);
                let mut bs = Vec::with_capacity(4);
                for g in gates {
                    let lin = if hidden {
                        &g.hidden_transform
                    } else {
                        &g.input_transform
                    };
                    ws.push(lin.weight.val());
                    bs.push(
                        lin.bias
                            .as_ref()
                            .ok_or_else(|| err("fusing an LSTM without biases"))?
                            .val(),
                    );
                }
                Ok((Tensor::cat(ws, 1), Tensor::cat(bs, 0).unsqueeze_dim(0)))
            };
        let mut iw = Vec::new();
        let mut ib = Vec::new();
        let mut hw = Vec::new();
        let mut hb = Vec::new();
        for l in lstms {
            let (w, b) = part(l, false)?;
            iw.push(w);
            ib.push(b);
            let (w, b) = part(l, true)?;
            hw.push(w);
            hb.push(b);
        }
        Ok(Self {
            input_weight: param(stack(iw)?),
            input_bias: param(stack(ib)?),
            hidden_weight: param(stack(hw)?),
            hidden_bias: param(stack(hb)?),
            d_hidden: first.d_hidden,
        })
    }

    /// `[K, B, L, d_in]` → hidden states `[K, B, L, h]`.
    pub fn forward(&self, x: Tensor<B, 4>) -> Tensor<B, 4> {
        let [k, b, l, _] = x.dims();
        let h = self.d_hidden;
        let device = x.device();
        let (x, _) = rows(x);
        // The input projections of every time step at once.
        let projected =
            (x.matmul(self.input_weight.val()) + self.input_bias.val()).reshape([k, b, l, 4 * h]);
        let mut cell = Tensor::<B, 3>::zeros([k, b, h], &device);
        let mut hidden = Tensor::<B, 3>::zeros([k, b, h], &device);
        let mut outputs = Vec::with_capacity(l);
        for t in 0..l {
            let xt: Tensor<B, 3> = projected.clone().narrow(2, t, 1).reshape([k, b, 4 * h]);
            let gates = xt + (hidden.matmul(self.hidden_weight.val()) + self.hidden_bias.val());
            let gate = |i: usize| gates.clone().narrow(2, i * h, h);
            let input = sigmoid(gate(0));
            let forget = sigmoid(gate(1));
            let output = sigmoid(gate(2));
            let candidate = gate(3).tanh();
            cell = forget * cell + input * candidate;
            hidden = output * cell.clone().tanh();
            outputs.push(hidden.clone());
        }
        Tensor::stack(outputs, 2)
    }
}

/// `K` multi-head attentions over burn `MultiHeadAttention` parameters:
/// batched projections around [`crate::tensor::attention::multi_head`]
/// (scores `Q·Kᵀ / sqrt(d_k)`, padding keys filled with `min_float`,
/// softmax, dropout on the weights), as the unfused attention.
#[derive(Module, Debug)]
pub struct FusedMha<B: Backend> {
    pub query: FusedLinear<B>,
    pub key: FusedLinear<B>,
    pub value: FusedLinear<B>,
    pub output: FusedLinear<B>,
    dropout: Dropout,
    n_heads: usize,
    min_float: f64,
}

impl<B: Backend> FusedMha<B> {
    pub fn from_mhas(mhas: &[&MultiHeadAttention<B>], dropout: f64) -> Result<Self, TrainError> {
        let first = mhas.first().ok_or_else(|| err("no attentions to fuse"))?;
        if mhas.iter().any(|m| m.quiet_softmax) {
            return Err(err("seed fusion mirrors the plain softmax attention"));
        }
        let lin = |f: fn(&MultiHeadAttention<B>) -> &Linear<B>| {
            FusedLinear::from_linears(&mhas.iter().map(|m| f(m)).collect::<Vec<_>>())
        };
        Ok(Self {
            query: lin(|m| &m.query)?,
            key: lin(|m| &m.key)?,
            value: lin(|m| &m.value)?,
            output: lin(|m| &m.output)?,
            dropout: DropoutConfig::new(dropout).init(),
            n_heads: first.n_heads,
            min_float: first.min_float,
        })
    }

    /// Query `[K, B, Lq, d]`, key/value `[K, B, Lk, d]` → context `[K, B, Lq, d]`;
    /// `pad` `[K·B, Lk]` marks the padding keys (true), never attended to.
    /// The `K·B` sequences go through [`crate::tensor::attention::multi_head`]
    /// as the unfused attention's `B` do, so slice `k` draws seed `k`'s own
    /// dropout on the weights.
    pub fn forward(
        &self,
        query: Tensor<B, 4>,
        kv: Tensor<B, 4>,
        pad: &Option<Tensor<B, 2, Bool>>,
    ) -> Tensor<B, 4> {
        let [k, b, lq, d] = query.dims();
        let lk = kv.dims()[2];
        let q = self.query.forward4(query).reshape([k * b, lq, d]);
        let key = self.key.forward4(kv.clone()).reshape([k * b, lk, d]);
        let value = self.value.forward4(kv).reshape([k * b, lk, d]);
        let context = crate::tensor::attention::multi_head(
            q,
            key,
            value,
            self.n_heads,
            pad,
            self.min_float,
            &self.dropout,
        );
        self.output.forward4(context.reshape([k, b, lq, d]))
    }
}

/// Linear → ReLU → Dropout → Linear, `K` times.
#[derive(Module, Debug)]
pub struct FusedFfn<B: Backend> {
    pub l1: FusedLinear<B>,
    pub l2: FusedLinear<B>,
    dropout: Dropout,
}

impl<B: Backend> FusedFfn<B> {
    pub fn new(l1: FusedLinear<B>, l2: FusedLinear<B>, dropout: f64) -> Self {
        Self {
            l1,
            l2,
            dropout: DropoutConfig::new(dropout).init(),
        }
    }

    /// `[K, N, in]` → `[K, N, out]`.
    pub fn forward(&self, x: Tensor<B, 3>) -> Tensor<B, 3> {
        self.l2.forward(crate::tensor::activation_dropout(
            &self.dropout,
            crate::tensor::cpu::Activation::Relu,
            self.l1.forward(x),
        ))
    }

    /// `[K, B, L, in]` → `[K, B, L, out]`.
    pub fn forward4(&self, x: Tensor<B, 4>) -> Tensor<B, 4> {
        per_step(x, |x| self.forward(x))
    }
}
