//! Weights other tools can read: safetensors files of named `f32` tensors in
//! PyTorch's layouts (`[training] save = ["weights"]`, `sigsweep predict`).
//!
//! A model's weights leave and enter as [`Weights`]: a map from tensor name
//! to shape and values. Each model decides its names in one place
//! (`models/<m>/weights.rs`); the default ([`Weights::from_module`]) is the
//! burn module path (`net.text_in.weight`) with `Linear` weights transposed
//! to PyTorch's `[out, in]`. docs/weights.md lists every model's mapping.

use std::collections::{BTreeMap, HashMap};

use burn::module::{Module, ModuleMapper, ModuleVisitor, Param};
use burn::prelude::*;

use super::error::TrainError;
use super::params::Params;
use super::request::TrialRequest;

/// The `format` metadata of sigsweep's weights files.
pub const FORMAT: &str = "sigsweep-weights/1";

/// One tensor: its shape (row-major) and values.
#[derive(Debug, Clone, PartialEq)]
pub struct Named {
    pub shape: Vec<usize>,
    pub data: Vec<f32>,
}

impl Named {
    pub fn new(shape: Vec<usize>, data: Vec<f32>) -> Self {
        Self { shape, data }
    }

    pub fn zeros(shape: Vec<usize>) -> Self {
        let n = shape.iter().product();
        Self {
            shape,
            data: vec![0.0; n],
        }
    }

    /// The transpose of a matrix (`Linear` weights: burn `[in, out]` ↔
    /// PyTorch `[out, in]`).
    pub fn transposed(&self) -> Self {
        match self.shape[..] {
            [r, c] => {
                let mut data = vec![0f32; r * c];
                for i in 0..r {
                    for j in 0..c {
                        data[j * r + i] = self.data[i * c + j];
                    }
                }
                Self {
                    shape: vec![c, r],
                    data,
                }
            }
            _ => self.clone(),
        }
    }

    /// Element-wise sum with a tensor of the same shape.
    pub fn plus(&self, other: &Self) -> Self {
        Self {
            shape: self.shape.clone(),
            data: self
                .data
                .iter()
                .zip(&other.data)
                .map(|(a, b)| a + b)
                .collect(),
        }
    }
}

/// Named tensors, the exchange form of a model's weights.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Weights {
    pub tensors: BTreeMap<String, Named>,
    /// Free-form `__metadata__` of the safetensors file (model, trial, seed…).
    pub metadata: BTreeMap<String, String>,
}

/// A weights error names the tensor.
fn bad(message: String) -> TrainError {
    TrainError::InvalidParam {
        key: "weights".into(),
        message,
    }
}

impl Weights {
    pub fn insert(&mut self, name: impl Into<String>, t: Named) {
        self.tensors.insert(name.into(), t);
    }

    /// Removes and returns tensor `name`, which must have `shape`.
    pub fn take(&mut self, name: &str, shape: &[usize]) -> Result<Named, TrainError> {
        let t = self
            .tensors
            .remove(name)
            .ok_or_else(|| bad(format!("the file has no tensor `{name}`")))?;
        if t.shape != shape {
            return Err(bad(format!(
                "tensor `{name}` has shape {:?}, the model needs {shape:?}",
                t.shape
            )));
        }
        Ok(t)
    }

    /// Fails when tensors are left after every expected one was taken
    /// (PyTorch's `strict=True`).
    pub fn expect_empty(&self) -> Result<(), TrainError> {
        if self.tensors.is_empty() {
            return Ok(());
        }
        let names: Vec<&str> = self.tensors.keys().take(5).map(String::as_str).collect();
        Err(bad(format!(
            "{} tensor(s) the model does not have: {}{}",
            self.tensors.len(),
            names.join(", "),
            if self.tensors.len() > 5 { ", …" } else { "" }
        )))
    }

    /// Every float parameter of `module` under its burn path, `Linear`
    /// weights transposed to PyTorch's `[out, in]`.
    pub fn from_module<B: Backend, M: Module<B>>(module: &M) -> Self {
        let mut v = Collect {
            path: Vec::new(),
            kinds: Vec::new(),
            out: BTreeMap::new(),
        };
        module.visit(&mut v);
        Self {
            tensors: v.out,
            metadata: BTreeMap::new(),
        }
    }

    /// Writes the tensors named as [`Self::from_module`] names them back
    /// into `module`, taking them out of `self`. Every parameter must be
    /// present with its shape.
    pub fn load_module<B: Backend, M: Module<B>>(&mut self, module: M) -> Result<M, TrainError> {
        let mut m = Load {
            path: Vec::new(),
            kinds: Vec::new(),
            weights: self,
            error: None,
        };
        let module = module.map(&mut m);
        match m.error {
            Some(e) => Err(e),
            None => Ok(module),
        }
    }

    /// Records in the file's metadata what trained these weights: model,
    /// trial, seed, selected epoch and the model's parameters (JSON), so
    /// that `sigsweep predict` rebuilds the same network.
    pub fn describe(mut self, req: &TrialRequest, epoch: u32) -> Self {
        let params: serde_json::Map<String, serde_json::Value> = req
            .params
            .values()
            .iter()
            .filter(|(k, _)| !k.starts_with("save_"))
            .map(|(k, v)| (k.clone(), serde_json::to_value(v).unwrap_or_default()))
            .collect();
        let m = &mut self.metadata;
        m.insert("format".into(), FORMAT.into());
        m.insert("model".into(), req.model.clone());
        m.insert("trial_id".into(), req.trial_id.clone());
        m.insert("seed".into(), req.seed.to_string());
        m.insert("epoch".into(), epoch.to_string());
        m.insert(
            "params".into(),
            serde_json::Value::Object(params).to_string(),
        );
        m.insert(
            "dataset".into(),
            serde_json::to_string(&req.dataset).unwrap_or_default(),
        );
        m.insert("sigsweep_version".into(), env!("CARGO_PKG_VERSION").into());
        self
    }

    /// The dataset [`Self::describe`] recorded, if any.
    pub fn described_dataset(&self) -> Result<Option<super::data::DatasetRequest>, TrainError> {
        self.metadata
            .get("dataset")
            .map(|d| {
                serde_json::from_str(d)
                    .map_err(|e| bad(format!("the file's `dataset` metadata: {e}")))
            })
            .transpose()
    }

    /// The model and parameters [`Self::describe`] recorded, if any.
    pub fn described(&self) -> Result<Option<(String, Params)>, TrainError> {
        let (Some(model), Some(params)) = (self.metadata.get("model"), self.metadata.get("params"))
        else {
            return Ok(None);
        };
        let values: indexmap::IndexMap<String, super::params::Value> = serde_json::from_str(params)
            .map_err(|e| bad(format!("the file's `params` metadata: {e}")))?;
        Ok(Some((model.clone(), Params::new(values))))
    }

    /// The default exchange form of the model in `slot` ([`Self::from_module`]).
    pub fn of_slot<B: Backend, M: Module<B>>(slot: Option<&M>) -> Result<Self, TrainError> {
        Ok(Self::from_module(slot.ok_or_else(TrainError::model_lost)?))
    }

    /// Loads every tensor into the model in `slot` ([`Self::load_module`]),
    /// strictly: a tensor the model does not have is an error too. On an
    /// error the model is unchanged.
    pub fn load_strict<B: Backend, M: Module<B>>(
        mut self,
        slot: &mut Option<M>,
    ) -> Result<(), TrainError> {
        let model = slot.as_ref().ok_or_else(TrainError::model_lost)?.clone();
        let model = self.load_module(model)?;
        self.expect_empty()?;
        *slot = Some(model);
        Ok(())
    }

    /// The safetensors file (`f32`, little-endian).
    pub fn to_safetensors(&self) -> Result<Vec<u8>, TrainError> {
        let bytes: Vec<(String, Vec<usize>, Vec<u8>)> = self
            .tensors
            .iter()
            .map(|(k, t)| {
                let b = t.data.iter().flat_map(|x| x.to_le_bytes()).collect();
                (k.clone(), t.shape.clone(), b)
            })
            .collect();
        let views = bytes
            .iter()
            .map(|(k, s, b)| {
                safetensors::tensor::TensorView::new(safetensors::Dtype::F32, s.clone(), b)
                    .map(|v| (k.clone(), v))
            })
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| bad(format!("cannot write the weights: {e}")))?;
        let meta: HashMap<String, String> = self
            .metadata
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        safetensors::tensor::serialize(views, (!meta.is_empty()).then_some(meta))
            .map_err(|e| bad(format!("cannot write the weights: {e}")))
    }

    /// Reads a safetensors file: `F32` tensors (`F64`, `F16` and `BF16` are
    /// converted).
    pub fn from_safetensors(bytes: &[u8]) -> Result<Self, TrainError> {
        use safetensors::Dtype;
        let file = safetensors::SafeTensors::deserialize(bytes)
            .map_err(|e| bad(format!("not a safetensors file: {e}")))?;
        let (_, header) = safetensors::SafeTensors::read_metadata(bytes)
            .map_err(|e| bad(format!("not a safetensors file: {e}")))?;
        let mut out = Self::default();
        if let Some(m) = header.metadata() {
            out.metadata = m.iter().map(|(k, v)| (k.clone(), v.clone())).collect();
        }
        for (name, view) in file.tensors() {
            let raw = view.data();
            let data: Vec<f32> = match view.dtype() {
                Dtype::F32 => raw
                    .chunks_exact(4)
                    .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
                    .collect(),
                Dtype::F64 => raw
                    .chunks_exact(8)
                    .map(|c| {
                        let mut b = [0u8; 8];
                        b.copy_from_slice(c);
                        f64::from_le_bytes(b) as f32
                    })
                    .collect(),
                Dtype::F16 => raw
                    .chunks_exact(2)
                    .map(|c| burn::tensor::f16::from_le_bytes([c[0], c[1]]).to_f32())
                    .collect(),
                Dtype::BF16 => raw
                    .chunks_exact(2)
                    .map(|c| burn::tensor::bf16::from_le_bytes([c[0], c[1]]).to_f32())
                    .collect(),
                other => {
                    return Err(bad(format!(
                        "tensor `{name}` is {other:?}; weights must be floating point"
                    )));
                }
            };
            out.insert(name, Named::new(view.shape().to_vec(), data));
        }
        Ok(out)
    }
}

/// Whether the parameter at the top of `path` is a `Linear` weight.
fn is_linear_weight(path: &[String], kinds: &[String]) -> bool {
    path.last().is_some_and(|p| p == "weight") && kinds.last().is_some_and(|k| k == "Struct:Linear")
}

struct Collect {
    path: Vec<String>,
    kinds: Vec<String>,
    out: BTreeMap<String, Named>,
}

impl<B: Backend> ModuleVisitor<B> for Collect {
    fn enter_module(&mut self, name: &str, container_type: &str) {
        self.path.push(name.to_string());
        self.kinds.push(container_type.to_string());
    }

    fn exit_module(&mut self, _name: &str, _container_type: &str) {
        self.path.pop();
        self.kinds.pop();
    }

    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<B, D>>) {
        let t = param.val();
        let shape = t.dims().to_vec();
        let data = crate::tensor::to_f32_vec(t);
        let named = Named::new(shape, data);
        let named = if is_linear_weight(&self.path, &self.kinds) {
            named.transposed()
        } else {
            named
        };
        self.out.insert(self.path.join("."), named);
    }
}

struct Load<'a> {
    path: Vec<String>,
    kinds: Vec<String>,
    weights: &'a mut Weights,
    error: Option<TrainError>,
}

impl<B: Backend> ModuleMapper<B> for Load<'_> {
    fn enter_module(&mut self, name: &str, container_type: &str) {
        self.path.push(name.to_string());
        self.kinds.push(container_type.to_string());
    }

    fn exit_module(&mut self, _name: &str, _container_type: &str) {
        self.path.pop();
        self.kinds.pop();
    }

    fn map_float<const D: usize>(&mut self, param: Param<Tensor<B, D>>) -> Param<Tensor<B, D>> {
        let (id, tensor, mapper) = param.consume();
        if self.error.is_some() {
            return Param::from_mapped_value(id, tensor, mapper);
        }
        let dims = tensor.dims();
        let linear = is_linear_weight(&self.path, &self.kinds) && D == 2;
        let want: Vec<usize> = if linear {
            vec![dims[1], dims[0]]
        } else {
            dims.to_vec()
        };
        let name = self.path.join(".");
        match self.weights.take(&name, &want) {
            Ok(t) => {
                let t = if linear { t.transposed() } else { t };
                let grad = tensor.is_require_grad();
                let device = tensor.device();
                let mut new = Tensor::<B, D>::from_data(TensorData::new(t.data, dims), &device);
                if grad {
                    new = new.require_grad();
                }
                Param::from_mapped_value(id, new, mapper)
            }
            Err(e) => {
                self.error = Some(e);
                Param::from_mapped_value(id, tensor, mapper)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::nn::{Linear, LinearConfig};

    type Cpu = crate::backend::Cpu;

    #[derive(Module, Debug)]
    struct Two<B: Backend> {
        a: Linear<B>,
        b: Vec<Linear<B>>,
    }

    fn two<B: Backend>(device: &B::Device) -> Two<B> {
        Two {
            a: LinearConfig::new(3, 2).init(device),
            b: vec![LinearConfig::new(2, 4).with_bias(false).init(device)],
        }
    }

    #[test]
    fn module_paths_and_pytorch_layouts() {
        let device = Default::default();
        let m = two::<Cpu>(&device);
        let w = Weights::from_module(&m);
        let names: Vec<&str> = w.tensors.keys().map(String::as_str).collect();
        assert_eq!(names, ["a.bias", "a.weight", "b.0.weight"]);
        assert_eq!(w.tensors["a.weight"].shape, [2, 3]);
        assert_eq!(w.tensors["b.0.weight"].shape, [4, 2]);
        // PyTorch's weight[o][i] is burn's weight[i][o].
        let burn_w = crate::tensor::to_f32_vec(m.a.weight.val());
        assert_eq!(w.tensors["a.weight"].data[3], burn_w[1]);
    }

    #[test]
    fn safetensors_round_trip_is_bitwise_and_loads_back() {
        let device = Default::default();
        let m = two::<Cpu>(&device);
        let mut w = Weights::from_module(&m);
        w.metadata.insert("model".into(), "two".into());
        let bytes = w.to_safetensors().expect("write");
        let mut back = Weights::from_safetensors(&bytes).expect("read");
        assert_eq!(back, w);
        let fresh = two::<Cpu>(&device);
        let loaded = back.load_module(fresh).expect("load");
        back.expect_empty().expect("all used");
        assert_eq!(Weights::from_module(&loaded).tensors, w.tensors);
    }

    #[test]
    fn wrong_shapes_missing_and_extra_tensors_are_named() {
        let device = Default::default();
        let mut w = Weights::from_module(&two::<Cpu>(&device));
        w.insert("a.weight", Named::zeros(vec![3, 2]));
        let err = w
            .clone()
            .load_module(two::<Cpu>(&device))
            .expect_err("shape");
        assert!(
            err.to_string().contains("`a.weight` has shape [3, 2]"),
            "{err}"
        );
        let mut missing = Weights::from_module(&two::<Cpu>(&device));
        missing.tensors.remove("b.0.weight");
        let err = missing
            .load_module(two::<Cpu>(&device))
            .expect_err("missing");
        assert!(err.to_string().contains("no tensor `b.0.weight`"), "{err}");
        let mut extra = Weights::from_module(&two::<Cpu>(&device));
        extra.insert("c.weight", Named::zeros(vec![1]));
        let _ = extra.load_module(two::<Cpu>(&device)).expect("loads");
        let err = extra.expect_empty().expect_err("extra");
        assert!(err.to_string().contains("c.weight"), "{err}");
        let err = Weights::from_safetensors(b"not a file").expect_err("garbage");
        assert!(err.to_string().contains("not a safetensors file"), "{err}");
    }
}
