//! The ONNX graph → the graph IR: one walk over the nodes in order (ONNX requires a
//! topological order; a node reading a value not yet made is a cycle or a dangling name,
//! reported as such). Each node either
//!
//! - computes on the GPU: it becomes layers of [`crate::layers`], the same ones the Keras
//!   importer builds, converted to the engine's layouts (the [`OPS`] table), or
//! - computes on constants: the shape arithmetic exporters write (`Shape` → `Gather` →
//!   `Unsqueeze` → `Concat` → `Reshape`) is folded here, at load, for the model's fixed
//!   sample shape; the batch axis stays a symbol ([`BATCH`]) so the graph runs for any batch.
//!
//! **Layout.** ONNX images are NCHW; the engine's are NHWC. A value remembers its ONNX shape
//! (batch axis excluded) and whether the engine holds it channels-last: convolutions and
//! pools make channels-last values, and a value is permuted back to ONNX's order only where
//! an op depends on the order of its elements (Flatten, Reshape, the model's output), so
//! results equal PyTorch's element for element. The input is taken in the model's own
//! layout (NCHW) and permuted once on the GPU.

use std::collections::HashMap;
use std::sync::Arc;

use onnx_protobuf::NodeProto;

use super::file::{Attributes, Data, OnnxFile, Tensor};
use crate::error::{Error, Result};
use crate::layers::{
    ActivationLayer, BatchNorm, Concatenate, Conv2d, Dense, DepthwiseConv2d, GlobalAveragePool1d, GlobalAveragePool2d,
    GlobalPool, Identity, LayerOp, Merge, MergeKind, Permute, Pool2d, Rescaling, Reshape, Scalar,
};
use crate::model::bert::transpose;
use crate::model::{Layer, ModelSpec};
use crate::ops::{Activation, Combine, Conv2dConfig, DepthwiseConv2dConfig, Padding, Pool2dConfig, PoolKind};

/// The batch axis in folded shape arithmetic (`Shape` of a batched value): it passes
/// through Gather / Concat / Unsqueeze untouched and becomes the batch axis of a Reshape.
pub const BATCH: i64 = i64::MIN + 7;

/// The ONNX ops that run, by op type (the supported list in errors and `inspect`).
pub const OPS: &str = "Add, AveragePool, BatchNormalization, Cast, Clip, Concat, Constant, ConstantOfShape, Conv, Div, Dropout, Elu, Erf (in GELU), Expand (zero states), Flatten, Gather, Gelu, Gemm, GlobalAveragePool, GlobalMaxPool, GRU, HardSigmoid, HardSwish, Identity, LayerNormalization, LeakyRelu, LSTM, MatMul, MaxPool, Mul, Pow and Sqrt (in LayerNormalization), ReduceMean, Relu, Reshape, Shape, Sigmoid, Slice, Softplus, Squeeze, Sub, Tanh, Transpose, Unsqueeze";

/// What an ONNX value name stands for during the walk.
#[derive(Clone, Debug)]
enum Value {
    /// A tensor the GPU computes: its value number in the spec, its ONNX shape per sample
    /// (batch axis excluded) and whether the engine holds it channels-last (`[C, H, W]`
    /// stored as `[H, W, C]`).
    ///
    /// `batch` is where the batch axis sits in the ONNX shape: 0, except for the time-major
    /// tensors around recurrent ops (`[steps, batch, features]`), which the engine still
    /// holds batch-first (`[batch, steps, features]`, sample axes in ONNX order).
    Tensor { value: usize, dims: Vec<usize>, nhwc: bool, batch: usize },
    /// A value known at load (initializer, Constant, folded shape arithmetic; integers may
    /// hold [`BATCH`]).
    Const(Tensor),
    /// A tensor of one value whose shape holds the batch size (`ConstantOfShape` or
    /// `Expand` of a shape with [`BATCH`]): the zero initial states exporters write.
    Fill { value: f32, shape: Vec<i64> },
}

/// The walk's state: the spec being built and what each ONNX name stands for.
struct Importer<'a> {
    file: &'a OnnxFile,
    layers: Vec<Layer>,
    values: HashMap<String, Value>,
    /// How many nodes (and graph outputs) read each name.
    uses: HashMap<String, usize>,
    /// Channels-last copies already made of values (value → its permuted value).
    permuted: HashMap<(usize, bool), usize>,
    /// Dense layers made from a MatMul without bias: a following Add of a vector sets it.
    biasless: HashMap<usize, usize>,
    /// Whether the graph input is integer token ids (value 0, read by an embedding Gather).
    ids_input: bool,
}

/// Builds the encoder graph of `file`: one float input `[batch, ...]` with a fixed sample
/// shape, one output.
pub fn import(file: &OnnxFile) -> Result<ModelSpec> {
    let graph = file.graph();
    let mut values = HashMap::new();
    let mut initializers = HashMap::new();
    for init in &graph.initializer {
        initializers.insert(init.name.clone(), file.tensor(init)?);
    }
    let nodes = super::rewrite::fuse_decomposed_ops(file, &initializers);
    values.extend(initializers.into_iter().map(|(name, t)| (name, Value::Const(t))));
    let inputs: Vec<_> = graph.input.iter().filter(|i| !values.contains_key(&i.name)).collect();
    let input = match inputs.as_slice() {
        [one] => *one,
        [] => return Err(file.error("the graph has no input")),
        many => {
            let names: Vec<&str> = many.iter().map(|i| i.name.as_str()).collect();
            return Err(file.error(format!(
                "the graph has {} inputs ({names:?}); an encoder with one input runs (export the shared encoder)",
                many.len()
            )));
        }
    };
    let (input_shape, ids_input) = input_dims(file, input)?;
    values.insert(input.name.clone(), Value::Tensor { value: 0, dims: input_shape.clone(), nhwc: false, batch: 0 });
    let mut uses: HashMap<String, usize> = HashMap::new();
    for name in nodes.iter().flat_map(|n| &n.input).chain(graph.output.iter().map(|o| &o.name)) {
        *uses.entry(name.clone()).or_default() += 1;
    }
    let mut importer = Importer {
        file,
        layers: Vec::new(),
        values,
        uses,
        permuted: HashMap::new(),
        biasless: HashMap::new(),
        ids_input,
    };
    for node in &nodes {
        if let Some(name) = node.output.iter().find(|o| !o.is_empty() && importer.values.contains_key(*o)) {
            return Err(importer.in_node(
                node,
                file.error(format!("makes {name:?}, which is already defined (ONNX names each value once)")),
            ));
        }
        importer.node(node).map_err(|e| importer.in_node(node, e))?;
    }
    let output = match graph.output.as_slice() {
        [one] => one,
        [] => return Err(file.error("the graph has no output")),
        many => {
            return Err(file.error(format!("the graph has {} outputs; an encoder with one output runs", many.len())))
        }
    };
    let value = match importer.values.get(&output.name) {
        Some(Value::Tensor { batch: 0, .. }) => {
            let tensor = importer.values[&output.name].clone();
            importer.onnx_order(&tensor, "output")?
        }
        Some(Value::Tensor { batch, .. }) => {
            return Err(file.error(format!(
                "output {:?} has its batch axis at position {batch} (the batch axis must come first)",
                output.name
            )))
        }
        Some(_) => return Err(file.error(format!("output {:?} is a constant", output.name))),
        None => return Err(file.error(format!("output {:?} is made by no node", output.name))),
    };
    if value != importer.layers.len() || value == 0 {
        importer.layers.push(Layer::new("output", Identity, vec![value]));
    }
    let name = file.path.file_stem().map_or("onnx".into(), |s| s.to_string_lossy().into_owned());
    let spec = ModelSpec { name, input_shape, layers: importer.layers };
    spec.shapes(1).map_err(|e| file.error(format!("the imported graph does not check: {e}")))?;
    Ok(spec)
}

/// The sample shape of the graph input (its first axis is the batch: any size), and whether
/// it is integer token ids (`int64` / `int32` `[batch, steps]`).
fn input_dims(file: &OnnxFile, input: &onnx_protobuf::ValueInfoProto) -> Result<(Vec<usize>, bool)> {
    use onnx_protobuf::tensor_shape_proto::dimension::Value as Dim;
    use onnx_protobuf::type_proto::Value as Type;
    let tensor = match input.type_.as_ref().and_then(|t| t.value.as_ref()) {
        Some(Type::TensorType(t)) => t,
        _ => return Err(file.error(format!("input {:?} is not a tensor", input.name))),
    };
    let ids = matches!(tensor.elem_type, 6 | 7);
    if tensor.elem_type != 1 && !ids {
        return Err(file.error(format!(
            "input {:?} has element type {} (a float32 input, or int64 / int32 token ids, runs)",
            input.name, tensor.elem_type
        )));
    }
    let dims = tensor.shape.as_ref().map(|s| s.dim.as_slice()).unwrap_or_default();
    if ids && dims.len() != 2 {
        return Err(file.error(format!(
            "input {:?}: integer token ids are [batch, steps], not {} axes",
            input.name,
            dims.len()
        )));
    }
    if dims.len() < 2 {
        return Err(file.error(format!(
            "input {:?} has {} axes: expected a batch axis and a sample",
            input.name,
            dims.len()
        )));
    }
    dims[1..]
        .iter()
        .enumerate()
        .map(|(axis, d)| match &d.value {
            Some(Dim::DimValue(v)) if *v > 0 => Ok(*v as usize),
            other => Err(file.error(format!(
                "input {:?}: axis {} is {} — only the batch axis may vary (export with a fixed sample shape)",
                input.name,
                axis + 1,
                match other {
                    Some(Dim::DimParam(p)) => format!("the symbol {p:?}"),
                    _ => "unknown".into(),
                }
            ))),
        })
        .collect::<Result<Vec<usize>>>()
        .map(|dims| (dims, ids))
}

/// The ONNX shape of a value whose sample is `dims`, the batch axis ([`BATCH`]) at `batch`.
fn full_shape(dims: &[usize], batch: usize) -> Vec<i64> {
    let mut shape: Vec<i64> = dims.iter().map(|&d| d as i64).collect();
    shape.insert(batch.min(shape.len()), BATCH);
    shape
}

/// A Reshape target with at most one unknown (-1) dimension, resolved so that it holds
/// `count` values (None: two unknowns, or `count` not a multiple of the known ones). The
/// caller checks the product when nothing was unknown.
fn infer_dimension(dims: &[Option<usize>], count: usize) -> Option<Vec<usize>> {
    let known: usize = dims.iter().flatten().product();
    match dims.iter().filter(|d| d.is_none()).count() {
        0 => Some(dims.iter().flatten().copied().collect()),
        1 if known > 0 && count.is_multiple_of(known) => {
            Some(dims.iter().map(|d| d.unwrap_or(count / known)).collect())
        }
        _ => None,
    }
}

/// `dims` as the engine holds it.
fn engine_dims(dims: &[usize], nhwc: bool) -> Vec<usize> {
    if nhwc {
        vec![dims[1], dims[2], dims[0]]
    } else {
        dims.to_vec()
    }
}

impl Importer<'_> {
    fn in_node(&self, node: &NodeProto, error: Error) -> Error {
        match error {
            Error::ModelFormat { file, reason } if file == self.file.name() => {
                Error::ModelFormat { file, reason: format!("node {:?} ({}): {reason}", node.name, node.op_type) }
            }
            other => other,
        }
    }

    fn push(&mut self, name: &str, op: impl LayerOp, inputs: Vec<usize>) -> usize {
        self.layers.push(Layer { name: name.to_string(), op: Arc::new(op), inputs });
        self.layers.len()
    }

    fn push_arc(&mut self, name: &str, op: Arc<dyn LayerOp>, inputs: Vec<usize>) -> usize {
        self.layers.push(Layer { name: name.to_string(), op, inputs });
        self.layers.len()
    }

    /// Input `i` of `node` (an error when absent or not yet made).
    fn input(&self, node: &NodeProto, i: usize) -> Result<Value> {
        let name = node
            .input
            .get(i)
            .filter(|n| !n.is_empty())
            .ok_or_else(|| self.file.error(format!("input {i} is missing")))?;
        self.values.get(name).cloned().ok_or_else(|| {
            self.file.error(format!(
                "reads {name:?}, which no earlier node makes (the graph has a cycle or is not in topological order)"
            ))
        })
    }

    /// Optional input `i` (absent or empty name: None).
    fn optional(&self, node: &NodeProto, i: usize) -> Result<Option<Value>> {
        match node.input.get(i) {
            Some(name) if !name.is_empty() => self.input(node, i).map(Some),
            _ => Ok(None),
        }
    }

    fn constant(&self, node: &NodeProto, i: usize, what: &str) -> Result<Tensor> {
        match self.input(node, i)? {
            Value::Const(t) => Ok(t),
            _ => Err(self.file.error(format!("{what} (input {i}) must be a constant"))),
        }
    }

    fn tensor(&self, node: &NodeProto, i: usize) -> Result<(usize, Vec<usize>, bool)> {
        match self.input(node, i)? {
            Value::Tensor { value, dims, nhwc, .. } => Ok((value, dims, nhwc)),
            _ => Err(self.file.error(format!("input {i} is a constant where a computed tensor runs"))),
        }
    }

    fn set(&mut self, node: &NodeProto, value: Value) {
        if let Some(name) = node.output.first() {
            self.values.insert(name.clone(), value);
        }
    }

    fn set_tensor(&mut self, node: &NodeProto, value: usize, dims: Vec<usize>, nhwc: bool) {
        self.set(node, Value::Tensor { value, dims, nhwc, batch: 0 });
    }

    /// The value holding `(value, dims)` channels-last (`want`) or in ONNX order.
    fn layout(&mut self, value: usize, dims: &[usize], nhwc: bool, want: bool, name: &str) -> usize {
        if nhwc == want || dims.len() != 3 {
            return value;
        }
        if let Some(&done) = self.permuted.get(&(value, want)) {
            return done;
        }
        // [C, 1, 1] and [1, 1, C] hold the same values in the same order: a view.
        let permuted = if dims[1] == 1 && dims[2] == 1 {
            let target = engine_dims(dims, want).into_iter().map(Some).collect();
            self.push(&format!("{name}/layout"), Reshape { target }, vec![value])
        } else {
            let order = if want { vec![1, 2, 0] } else { vec![2, 0, 1] };
            self.push(&format!("{name}/layout"), Permute { order }, vec![value])
        };
        self.permuted.insert((value, want), permuted);
        permuted
    }

    fn channels_last(&mut self, node: &NodeProto, i: usize) -> Result<(usize, Vec<usize>)> {
        let (value, dims, nhwc) = self.tensor(node, i)?;
        if dims.len() != 3 {
            return Err(self.file.error(format!("expected an image [batch, C, H, W], got a sample of {dims:?}")));
        }
        Ok((self.layout(value, &dims, nhwc, true, &node.name), dims))
    }

    fn onnx_order(&mut self, value: &Value, name: &str) -> Result<usize> {
        match value {
            Value::Tensor { value, dims, nhwc, .. } => Ok(self.layout(*value, dims, *nhwc, false, name)),
            _ => Err(self.file.error("a constant where a computed tensor runs")),
        }
    }

    fn node(&mut self, node: &NodeProto) -> Result<()> {
        if !node.domain.is_empty() && node.domain != "ai.onnx" {
            return Err(self.unsupported(node));
        }
        let attrs = Attributes::of(node);
        self.check_batch_axes(node)?;
        match node.op_type.as_str() {
            "Identity" | "Dropout" => {
                let value = self.input(node, 0)?;
                self.set(node, value);
            }
            "Constant" => {
                let tensor = if let Some(t) = attrs.tensor("value") {
                    self.file.tensor(t)?
                } else if attrs.has("value_float") {
                    Tensor { dims: vec![], data: Data::F32(vec![attrs.float("value_float", 0.0)]) }
                } else if attrs.has("value_int") {
                    Tensor { dims: vec![], data: Data::I64(vec![attrs.int("value_int", 0)]) }
                } else if let Some(ints) = attrs.ints("value_ints") {
                    Tensor::ints(ints.to_vec())
                } else {
                    return Err(self.file.error("a Constant without value, value_float, value_int or value_ints"));
                };
                self.set(node, Value::Const(tensor));
            }
            "Conv" => self.conv(node, &attrs)?,
            "BatchNormalization" => self.batch_norm(node, &attrs)?,
            "Relu" => self.activation(node, Activation::Relu)?,
            "Sigmoid" => self.activation(node, Activation::Sigmoid)?,
            "Tanh" => self.activation(node, Activation::Tanh)?,
            "Softplus" => self.activation(node, Activation::Softplus)?,
            "HardSwish" => self.activation(node, Activation::HardSilu)?,
            "Gelu" => {
                let approximate = attrs.string("approximate", "none");
                let act = if approximate == "tanh" { Activation::GeluTanh } else { Activation::Gelu };
                self.activation(node, act)?
            }
            "LeakyRelu" => {
                let slope = attrs.float("alpha", 0.01);
                self.activation(node, Activation::LeakyRelu(slope.to_bits()))?
            }
            "Elu" => {
                let alpha = attrs.float("alpha", 1.0);
                let act = if alpha == 1.0 { Activation::Elu } else { Activation::EluAlpha(alpha.to_bits()) };
                self.activation(node, act)?
            }
            "HardSigmoid" => {
                let (alpha, beta) = (attrs.float("alpha", 0.2), attrs.float("beta", 0.5));
                let act = if (alpha - 1.0 / 6.0).abs() < 1e-7 && beta == 0.5 {
                    Activation::HardSigmoid
                } else if (alpha - 0.2).abs() < 1e-7 && beta == 0.5 {
                    Activation::HardSigmoidClip
                } else {
                    return Err(self.file.error(format!(
                        "HardSigmoid alpha {alpha}, beta {beta} (alpha 1/6 or 0.2 with beta 0.5 run)"
                    )));
                };
                self.activation(node, act)?
            }
            "Clip" => self.clip(node, &attrs)?,
            "MaxPool" | "AveragePool" => self.pool(node, &attrs)?,
            "GlobalAveragePool" | "GlobalMaxPool" => {
                let (value, dims) = self.channels_last(node, 0)?;
                let kind = if node.op_type == "GlobalMaxPool" { PoolKind::Max } else { PoolKind::Average };
                let out = if kind == PoolKind::Average {
                    self.push(&node.name, GlobalAveragePool2d { keepdims: true }, vec![value])
                } else {
                    self.push(&node.name, GlobalPool { kind, spatial: 2, keepdims: true }, vec![value])
                };
                self.set_tensor(node, out, vec![dims[0], 1, 1], true);
            }
            "ReduceMean" => self.reduce_mean(node, &attrs)?,
            "Flatten" => {
                let axis = attrs.int("axis", 1);
                let input = self.input(node, 0)?;
                let Value::Tensor { dims, .. } = &input else { return self.fold(node) };
                if axis != 1 {
                    return Err(self.file.error(format!("Flatten axis {axis} (axis 1, keeping the batch, runs)")));
                }
                let count = dims.iter().product();
                let value = self.onnx_order(&input, &node.name)?;
                let out = self.push(&node.name, Reshape { target: vec![Some(count)] }, vec![value]);
                self.set_tensor(node, out, vec![count], false);
            }
            "Reshape" => self.reshape(node)?,
            "Transpose" => self.transpose(node, &attrs)?,
            "LayerNormalization" => self.layer_norm(node, &attrs)?,
            "Erf" | "Pow" | "Sqrt" => {
                return Err(self.file.error(format!(
                    "{} runs only inside the forms exporters write for GELU (x·½·(1+erf(x/√2))) and \
                     LayerNormalization (ReduceMean, Sub, Pow 2, ReduceMean, Add eps, Sqrt, Div over the last \
                     axis); this one is not part of such a form",
                    node.op_type
                )))
            }
            "Gemm" => self.gemm(node, &attrs)?,
            "MatMul" => self.matmul(node)?,
            "Add" | "Sub" | "Mul" | "Div" => self.binary(node)?,
            "Gather" => self.gather(node, &attrs)?,
            "Squeeze" | "Unsqueeze" => self.squeeze(node, &attrs)?,
            "LSTM" | "GRU" => self.recurrent(node, &attrs)?,
            "ConstantOfShape" | "Expand" | "Slice" if self.fills(node)? => {}
            "Concat" => self.concat(node, &attrs)?,
            "Shape" | "Cast" | "Slice" | "ConstantOfShape" => self.fold(node)?,
            _ => return Err(self.unsupported(node)),
        }
        Ok(())
    }

    /// Only the ops that know of it read a tensor whose batch axis is not first (the
    /// time-major tensors of recurrent ops), or the integer token ids of the input.
    fn check_batch_axes(&self, node: &NodeProto) -> Result<()> {
        const TIME_MAJOR: &[&str] = &[
            "Identity",
            "Dropout",
            "Transpose",
            "Reshape",
            "Shape",
            "Squeeze",
            "Unsqueeze",
            "Gather",
            "Concat",
            "LSTM",
            "GRU",
        ];
        for name in node.input.iter().filter(|n| !n.is_empty()) {
            match self.values.get(name) {
                Some(Value::Tensor { batch, .. }) if *batch != 0 && !TIME_MAJOR.contains(&node.op_type.as_str()) => {
                    return Err(self.file.error(format!(
                        "{} of {name:?}, whose batch axis is at position {batch} (time-major tensors run through \
                         {})",
                        node.op_type,
                        TIME_MAJOR.join(", ")
                    )))
                }
                Some(Value::Tensor { value: 0, .. })
                    if self.ids_input && !["Gather", "Shape"].contains(&node.op_type.as_str()) =>
                {
                    return Err(self.file.error(format!(
                        "{} of the integer input {name:?} (token ids run through an embedding Gather)",
                        node.op_type
                    )))
                }
                _ => {}
            }
        }
        Ok(())
    }

    fn unsupported(&self, node: &NodeProto) -> Error {
        let op =
            if node.domain.is_empty() { node.op_type.clone() } else { format!("{}::{}", node.domain, node.op_type) };
        Error::UnsupportedOp { file: self.file.name(), node: node.name.clone(), op, supported: OPS }
    }

    fn activation(&mut self, node: &NodeProto, activation: Activation) -> Result<()> {
        let (value, dims, nhwc) = self.tensor(node, 0)?;
        let out = self.push(&node.name, ActivationLayer(activation), vec![value]);
        self.set_tensor(node, out, dims, nhwc);
        Ok(())
    }

    fn clip(&mut self, node: &NodeProto, attrs: &Attributes) -> Result<()> {
        // Opset 11+: min and max are optional inputs; older files: attributes.
        let bound = |i: usize, attr: &str, default: f32| -> Result<f32> {
            match self.optional(node, i)? {
                Some(Value::Const(t)) => {
                    t.floats().first().copied().ok_or_else(|| self.file.error("an empty Clip bound"))
                }
                Some(_) => Err(self.file.error("Clip bounds must be constants")),
                None => Ok(attrs.float(attr, default)),
            }
        };
        let (min, max) = (bound(1, "min", f32::NEG_INFINITY)?, bound(2, "max", f32::INFINITY)?);
        let activation = if min == 0.0 && max == 6.0 {
            Activation::Relu6
        } else if min == 0.0 {
            Activation::ReluWith { negative_slope: 0f32.to_bits(), max_value: max.to_bits(), threshold: 0f32.to_bits() }
        } else {
            return Err(self.file.error(format!("Clip to [{min}, {max}] (a lower bound of 0 runs, as ReLU / ReLU6)")));
        };
        self.activation(node, activation)
    }

    /// OIHW → HWIO (`[kh, kw, in / groups, out]`).
    fn conv(&mut self, node: &NodeProto, attrs: &Attributes) -> Result<()> {
        let (value, dims) = self.channels_last(node, 0)?;
        let weight = self.constant(node, 1, "the Conv weight")?;
        let &[out_c, in_per_group, kh, kw] = weight.dims.as_slice() else {
            return Err(self
                .file
                .error(format!("a Conv weight of dimensions {:?} (a 2-D convolution runs)", weight.dims)));
        };
        let bias = self.optional(node, 2)?.map(|b| match b {
            Value::Const(t) => Ok(t.floats()),
            _ => Err(self.file.error("the Conv bias must be a constant")),
        });
        let bias = bias.transpose()?;
        let groups = attrs.int("group", 1).max(1) as usize;
        let channels = dims[0];
        if in_per_group * groups != channels || !out_c.is_multiple_of(groups) {
            return Err(self
                .file
                .error(format!("a Conv weight {:?} with group {groups} over {channels} input channels", weight.dims)));
        }
        let pair = |name: &str, default: usize| -> Result<(usize, usize)> {
            match attrs.ints(name) {
                None => Ok((default, default)),
                Some(&[a, b]) if a > 0 && b > 0 => Ok((a as usize, b as usize)),
                Some(other) => Err(self.file.error(format!("{name} {other:?} (two positive values run)"))),
            }
        };
        if let Some(k) = attrs.ints("kernel_shape") {
            if k != [kh as i64, kw as i64] {
                return Err(self.file.error(format!("kernel_shape {k:?} does not match the weight {:?}", weight.dims)));
            }
        }
        let strides = pair("strides", 1)?;
        let dilation = pair("dilations", 1)?;
        let padding = self.padding(attrs, (kh, kw), strides, dilation, (dims[1], dims[2]))?;
        let config = Conv2dConfig {
            in_channels: channels,
            filters: out_c,
            kernel: (kh, kw),
            strides,
            dilation,
            padding,
            activation: Activation::Linear,
        };
        let kernel = oihw_to_hwio(&weight.floats(), [out_c, in_per_group, kh, kw]);
        let op: Arc<dyn LayerOp> = if groups == 1 {
            Arc::new(Conv2d::new(config, kernel, bias))
        } else {
            Arc::new(DepthwiseConv2d::grouped(DepthwiseConv2dConfig { conv: config, groups }, kernel, bias)?)
        };
        let out = self.push_arc(&node.name, op, vec![value]);
        let shape = self.layers[out - 1].op.output_shape(&[&[1, dims[1], dims[2], channels]])?;
        self.set_tensor(node, out, vec![shape[3], shape[1], shape[2]], true);
        Ok(())
    }

    /// ONNX `pads` / `auto_pad` as the engine's padding for a window over `(h, w)`.
    fn padding(
        &self,
        attrs: &Attributes,
        kernel: (usize, usize),
        strides: (usize, usize),
        dilation: (usize, usize),
        (h, w): (usize, usize),
    ) -> Result<Padding> {
        let auto = attrs.string("auto_pad", "NOTSET");
        match auto.as_str() {
            "VALID" => return Ok(Padding::Valid),
            "SAME_UPPER" | "SAME_LOWER" => {
                // The total padding of `same`, the extra cell at the end (UPPER) or start.
                let split = |input: usize, k: usize, s: usize, d: usize| {
                    let extent = (k - 1) * d + 1;
                    let out = input.div_ceil(s);
                    let total = ((out - 1) * s + extent).saturating_sub(input);
                    if auto == "SAME_UPPER" {
                        (total / 2, total - total / 2)
                    } else {
                        (total - total / 2, total / 2)
                    }
                };
                let (top, bottom) = split(h, kernel.0, strides.0, dilation.0);
                let (left, right) = split(w, kernel.1, strides.1, dilation.1);
                return Ok(Padding::Explicit { top, bottom, left, right });
            }
            "NOTSET" => {}
            other => return Err(self.file.error(format!("auto_pad {other:?}"))),
        }
        match attrs.ints("pads") {
            None => Ok(Padding::Valid),
            Some(&[top, left, bottom, right]) if [top, left, bottom, right].iter().all(|&p| p >= 0) => {
                let [top, left, bottom, right] = [top, left, bottom, right].map(|p| p as usize);
                if top + left + bottom + right == 0 {
                    Ok(Padding::Valid)
                } else {
                    Ok(Padding::Explicit { top, bottom, left, right })
                }
            }
            Some(other) => Err(self.file.error(format!("pads {other:?} (four non-negative values for 2-D)"))),
        }
    }

    fn batch_norm(&mut self, node: &NodeProto, attrs: &Attributes) -> Result<()> {
        let (value, dims, nhwc) = self.tensor(node, 0)?;
        let (value, nhwc) =
            if dims.len() == 3 { (self.layout(value, &dims, nhwc, true, &node.name), true) } else { (value, nhwc) };
        if dims.len() != 1 && dims.len() != 3 {
            return Err(self
                .file
                .error(format!("BatchNormalization over a sample of {dims:?} ([C] or [C, H, W] run)")));
        }
        let channels = dims[0];
        let param = |i: usize, what: &str| -> Result<Vec<f32>> {
            let t = self.constant(node, i, what)?;
            let values = t.floats();
            if values.len() != channels {
                return Err(self.file.error(format!("{what} has {} values for {channels} channels", values.len())));
            }
            Ok(values)
        };
        if attrs.int("training_mode", 0) != 0 {
            return Err(self.file.error("training_mode 1 (export the model in eval() mode)"));
        }
        let norm = BatchNorm {
            gamma: Some(param(1, "scale")?),
            beta: Some(param(2, "B")?),
            mean: param(3, "mean")?,
            variance: param(4, "var")?,
            eps: attrs.float("epsilon", 1e-5),
            activation: Activation::Linear,
        };
        let out = self.push(&node.name, norm, vec![value]);
        self.set_tensor(node, out, dims, nhwc);
        Ok(())
    }

    fn pool(&mut self, node: &NodeProto, attrs: &Attributes) -> Result<()> {
        let (value, dims) = self.channels_last(node, 0)?;
        let kernel = match attrs.ints("kernel_shape") {
            Some(&[a, b]) if a > 0 && b > 0 => (a as usize, b as usize),
            other => return Err(self.file.error(format!("kernel_shape {other:?} (two positive values for 2-D)"))),
        };
        let strides = match attrs.ints("strides") {
            None => (1, 1),
            Some(&[a, b]) if a > 0 && b > 0 => (a as usize, b as usize),
            Some(other) => return Err(self.file.error(format!("strides {other:?}"))),
        };
        if attrs.ints("dilations").is_some_and(|d| d.iter().any(|&x| x != 1)) {
            return Err(self.file.error("pooling with dilations other than 1"));
        }
        let max = node.op_type == "MaxPool";
        let mut padding = self.padding(attrs, kernel, strides, (1, 1), (dims[1], dims[2]))?;
        let padded = padding != Padding::Valid;
        if attrs.int("ceil_mode", 0) != 0 {
            // Ceil mode: the last window may start inside the image and end past it; for a
            // max-pool, extra cells at the bottom / right that are never taken do the same.
            let Padding::Explicit { top, bottom, left, right } = (match padding {
                Padding::Valid => Padding::Explicit { top: 0, bottom: 0, left: 0, right: 0 },
                p => p,
            }) else {
                unreachable!("explicit padding")
            };
            let extra = |input: usize, before: usize, after: usize, k: usize, s: usize| {
                let span = input + before + after;
                if span < k {
                    return 0;
                }
                let mut out = (span - k).div_ceil(s) + 1;
                // PyTorch: the last window must start inside the image or its left padding.
                if (out - 1) * s >= input + before {
                    out -= 1;
                }
                ((out - 1) * s + k).saturating_sub(span)
            };
            let (eb, er) =
                (extra(dims[1], top, bottom, kernel.0, strides.0), extra(dims[2], left, right, kernel.1, strides.1));
            if eb + er > 0 && !max {
                return Err(self.file.error("AveragePool with ceil_mode 1 whose windows pass the image"));
            }
            padding = Padding::Explicit { top, bottom: bottom + eb, left, right: right + er };
        }
        if !max && padded && attrs.int("count_include_pad", 0) != 0 {
            return Err(self.file.error(
                "AveragePool with pads and count_include_pad 1 (the padding counted in the mean) is not supported",
            ));
        }
        let kind = if max { PoolKind::Max } else { PoolKind::Average };
        let config = Pool2dConfig { kind, pool: kernel, strides, padding };
        let out_shape = config.output_shape(&[1, dims[1], dims[2], dims[0]])?;
        let out = self.push(&node.name, Pool2d(config), vec![value]);
        self.set_tensor(node, out, vec![dims[0], out_shape[1], out_shape[2]], true);
        Ok(())
    }

    fn reduce_mean(&mut self, node: &NodeProto, attrs: &Attributes) -> Result<()> {
        let axes: Vec<i64> = match attrs.ints("axes") {
            Some(a) => a.to_vec(),
            None => match self.optional(node, 1)? {
                Some(Value::Const(t)) => t.as_ints().map(<[i64]>::to_vec).unwrap_or_default(),
                _ => Vec::new(),
            },
        };
        let (value, dims, _) = self.tensor(node, 0)?;
        let rank = dims.len() as i64 + 1;
        let mut axes: Vec<i64> = axes.iter().map(|&a| if a < 0 { a + rank } else { a }).collect();
        axes.sort_unstable();
        let keepdims = attrs.int("keepdims", 1) != 0;
        if dims.len() == 2 && axes == [1] {
            // The mean over the steps of a sequence [batch, steps, features].
            let out = self.push(&node.name, GlobalAveragePool1d::default(), vec![value]);
            let out = if keepdims {
                self.push(
                    &format!("{}/keepdims", node.name),
                    Reshape { target: vec![Some(1), Some(dims[1])] },
                    vec![out],
                )
            } else {
                out
            };
            let out_dims = if keepdims { vec![1, dims[1]] } else { vec![dims[1]] };
            self.set_tensor(node, out, out_dims, false);
            return Ok(());
        }
        if dims.len() != 3 || axes != [2, 3] {
            return Err(self.file.error(format!(
                "ReduceMean over axes {axes:?} of a sample {dims:?} (the spatial axes [2, 3] of an image, or the \
                 steps [1] of a sequence, run)"
            )));
        }
        let (value, dims) = self.channels_last(node, 0)?;
        let out = self.push(&node.name, GlobalAveragePool2d { keepdims: true }, vec![value]);
        if keepdims {
            self.set_tensor(node, out, vec![dims[0], 1, 1], true);
        } else {
            let flat = self.push(&format!("{}/squeeze", node.name), Reshape { target: vec![Some(dims[0])] }, vec![out]);
            self.set_tensor(node, flat, vec![dims[0]], false);
        }
        Ok(())
    }

    /// A Reshape that keeps the batch axis as an axis of its own: the target holds the
    /// batch symbol, or copies it (0 at its position), or, for a batch-first tensor, starts
    /// with -1 while the rest is fixed. The values before the batch axis must stay before it
    /// (then the engine's batch-first data reshapes as a plain sample reshape).
    fn reshape(&mut self, node: &NodeProto) -> Result<()> {
        let input = self.input(node, 0)?;
        let Value::Tensor { dims, batch, .. } = &input else { return self.fold(node) };
        let (dims, batch) = (dims.clone(), *batch);
        let shape = self.constant(node, 1, "the Reshape shape")?;
        let target = shape.as_ints().ok_or_else(|| self.file.error("a Reshape shape that is not integers"))?.to_vec();
        let allow_zero = Attributes::of(node).int("allowzero", 0) != 0;
        let full = full_shape(&dims, batch);
        let count: usize = dims.iter().product();
        let mut out_batch = None;
        let mut sample: Vec<Option<usize>> = Vec::new();
        for (i, &d) in target.iter().enumerate() {
            let copies = d == 0 && !allow_zero;
            if d == BATCH || (copies && i == batch) {
                if out_batch.replace(i).is_some() {
                    return Err(self.file.error(format!("Reshape to {target:?} names the batch axis twice")));
                }
                continue;
            }
            sample.push(match d {
                -1 => None,
                0 if copies => match full.get(i) {
                    Some(&v) if v != BATCH => Some(v as usize),
                    _ => return Err(self.file.error(format!("Reshape to {target:?}: 0 at axis {i} copies no axis"))),
                },
                d if d > 0 => Some(d as usize),
                d => return Err(self.file.error(format!("Reshape dimension {d}"))),
            });
        }
        if out_batch.is_none() && batch == 0 && target.first() == Some(&-1) && sample[1..].iter().all(Option::is_some) {
            // [-1, fixed...]: the batch is what is left.
            sample.remove(0);
            if sample.iter().flatten().product::<usize>() != count {
                return Err(self
                    .file
                    .error(format!("Reshape to {target:?} would change the batch (a sample has {count} values)")));
            }
            out_batch = Some(0);
        }
        let Some(out_batch) = out_batch else {
            return Err(self.file.error(format!(
                "Reshape to {target:?}: the batch axis must stay an axis of its own (the batch symbol, 0 or -1)"
            )));
        };
        let resolved = infer_dimension(&sample, count)
            .ok_or_else(|| self.file.error(format!("Reshape to {target:?} of a sample of {dims:?}")))?;
        let before = |d: &[usize], at: usize| d[..at.min(d.len())].iter().product::<usize>();
        if resolved.iter().product::<usize>() != count || before(&dims, batch) != before(&resolved, out_batch) {
            return Err(self.file.error(format!(
                "Reshape of {full:?} to {target:?} moves values across the batch axis (the batch symbol)"
            )));
        }
        let value = self.onnx_order(&input, &node.name)?;
        let value = if resolved == dims {
            value
        } else {
            self.push(&node.name, Reshape { target: resolved.iter().map(|&d| Some(d)).collect() }, vec![value])
        };
        self.set(node, Value::Tensor { value, dims: resolved, nhwc: false, batch: out_batch });
        Ok(())
    }

    /// Gather: an embedding lookup (a constant table, the integer token ids of the input),
    /// one constant index along a sample axis of a tensor (`h_n[-1]`), or shape arithmetic.
    fn gather(&mut self, node: &NodeProto, attrs: &Attributes) -> Result<()> {
        let (data, indices) = (self.input(node, 0)?, self.input(node, 1)?);
        let axis = attrs.int("axis", 0);
        match (&data, &indices) {
            (Value::Const(table), Value::Tensor { value: 0, dims, batch: 0, .. }) if self.ids_input => {
                let &[vocab, dim] = table.dims.as_slice() else {
                    return Err(self
                        .file
                        .error(format!("an embedding table of dimensions {:?} (2-D runs)", table.dims)));
                };
                if axis != 0 {
                    return Err(self.file.error(format!("an embedding Gather along axis {axis} (axis 0 runs)")));
                }
                let steps = dims[0];
                let embedding = crate::layers::Embedding { vocab, dim, table: table.floats(), mask_zero: false };
                let out = self.push(&node.name, embedding, vec![0]);
                self.set_tensor(node, out, vec![steps, dim], false);
                Ok(())
            }
            (Value::Tensor { dims, batch, .. }, Value::Const(index)) => {
                let (dims, batch) = (dims.clone(), *batch);
                let picks = index.as_ints().ok_or_else(|| self.file.error("Gather indices that are not integers"))?;
                let (&[i], true) = (picks, index.dims.is_empty()) else {
                    return Err(self.file.error(format!(
                        "Gather of indices {:?} from a computed tensor (one scalar index runs)",
                        index.dims
                    )));
                };
                let rank = dims.len() as i64 + 1;
                let axis = if axis < 0 { axis + rank } else { axis };
                if !(0..rank).contains(&axis) || axis as usize == batch {
                    return Err(self.file.error(format!("Gather along axis {axis} (the batch axis is {batch})")));
                }
                let k = if (axis as usize) < batch { axis as usize } else { axis as usize - 1 };
                let n = dims[k] as i64;
                let start = if i < 0 { i + n } else { i };
                if !(0..n).contains(&start) {
                    return Err(self.file.error(format!("Gather index {i} of an axis of {n}")));
                }
                let mut out_dims = dims.clone();
                out_dims.remove(k);
                let value = self.onnx_order(&data, &node.name)?;
                let out = if n == 1 {
                    self.push(&node.name, Reshape { target: out_dims.iter().map(|&d| Some(d)).collect() }, vec![value])
                } else {
                    let slice = crate::layers::SliceAxis { axis: k, start: start as usize, len: 1, keep_axis: false };
                    self.push(&node.name, slice, vec![value])
                };
                let out_batch = if (axis as usize) < batch { batch - 1 } else { batch };
                self.set(node, Value::Tensor { value: out, dims: out_dims, nhwc: false, batch: out_batch });
                Ok(())
            }
            (Value::Const(_), Value::Const(_)) => self.fold(node),
            _ => Err(self.file.error("Gather of a computed index (an embedding lookup reads the integer input)")),
        }
    }

    /// Concat of tensors along a sample axis (channels of images run channels-last), or of
    /// constants (shape arithmetic).
    fn concat(&mut self, node: &NodeProto, attrs: &Attributes) -> Result<()> {
        let inputs = (0..node.input.len()).map(|i| self.input(node, i)).collect::<Result<Vec<_>>>()?;
        if inputs.iter().all(|v| matches!(v, Value::Const(_))) {
            return self.fold(node);
        }
        let mut parts = Vec::new();
        for value in &inputs {
            let Value::Tensor { value, dims, nhwc, batch } = value else {
                return Err(self.file.error("Concat of a computed tensor and a constant"));
            };
            parts.push((*value, dims.clone(), *nhwc, *batch));
        }
        let (_, first, _, batch) = parts[0].clone();
        let rank = first.len() as i64 + 1;
        let axis = attrs.int("axis", 0);
        let axis = if axis < 0 { axis + rank } else { axis };
        if !(0..rank).contains(&axis) || axis as usize == batch {
            return Err(self.file.error(format!("Concat along axis {axis} (the batch axis is {batch})")));
        }
        let k = if (axis as usize) < batch { axis as usize } else { axis as usize - 1 };
        let mut out_dims = first.clone();
        out_dims[k] = 0;
        for (_, dims, _, b) in &parts {
            let fits = *b == batch
                && dims.len() == first.len()
                && dims.iter().zip(&first).enumerate().all(|(i, (x, y))| i == k || x == y);
            if !fits {
                return Err(self.file.error(format!("Concat along axis {axis} of samples {first:?} and {dims:?}")));
            }
            out_dims[k] += dims[k];
        }
        // Channels of images: concatenated channels-last (the engine's last axis).
        let channels = batch == 0 && first.len() == 3 && k == 0 && parts.iter().any(|p| p.2);
        let mut values = Vec::new();
        for (value, dims, nhwc, _) in &parts {
            values.push(self.layout(*value, dims, *nhwc, channels, &node.name));
        }
        let engine_axis = if channels { 3 } else { k + 1 };
        let out = self.push(&node.name, Concatenate { axis: engine_axis, arity: values.len() }, values);
        self.set(node, Value::Tensor { value: out, dims: out_dims, nhwc: channels, batch });
        Ok(())
    }

    /// Squeeze / Unsqueeze of a tensor: a view with size-1 axes removed or added (never
    /// the batch axis).
    fn squeeze(&mut self, node: &NodeProto, attrs: &Attributes) -> Result<()> {
        let input = self.input(node, 0)?;
        let Value::Tensor { dims, batch, .. } = &input else { return self.fold(node) };
        let (dims, batch) = (dims.clone(), *batch);
        let axes: Option<Vec<i64>> = match attrs.ints("axes") {
            Some(a) => Some(a.to_vec()),
            None => match self.optional(node, 1)? {
                Some(Value::Const(t)) => {
                    Some(t.as_ints().ok_or_else(|| self.file.error("axes that are not integers"))?.to_vec())
                }
                Some(_) => return Err(self.file.error("axes must be constants")),
                None => None,
            },
        };
        let mut full = full_shape(&dims, batch);
        if node.op_type == "Unsqueeze" {
            let axes = axes.ok_or_else(|| self.file.error("Unsqueeze without axes"))?;
            let rank = (full.len() + axes.len()) as i64;
            let mut axes: Vec<i64> = axes.iter().map(|&a| if a < 0 { a + rank } else { a }).collect();
            axes.sort_unstable();
            for a in axes {
                if !(0..=full.len() as i64).contains(&a) {
                    return Err(self.file.error(format!("Unsqueeze axis {a} of {rank}")));
                }
                full.insert(a as usize, 1);
            }
        } else {
            let rank = full.len() as i64;
            let squeezed: Vec<usize> = match axes {
                Some(axes) => axes.iter().map(|&a| (if a < 0 { a + rank } else { a }) as usize).collect(),
                None => (0..full.len()).filter(|&i| full[i] == 1).collect(),
            };
            for &a in &squeezed {
                if full.get(a) != Some(&1) {
                    return Err(self.file.error(format!("Squeeze of axis {a}, which is not of size 1, of {full:?}")));
                }
            }
            full = full.iter().enumerate().filter(|(i, _)| !squeezed.contains(i)).map(|(_, &d)| d).collect();
        }
        let out_batch = full.iter().position(|&d| d == BATCH).unwrap_or(0);
        let out_dims: Vec<usize> = full.iter().filter(|&&d| d != BATCH).map(|&d| d as usize).collect();
        let value = self.onnx_order(&input, &node.name)?;
        let value = if out_dims == dims {
            value
        } else {
            self.push(&node.name, Reshape { target: out_dims.iter().map(|&d| Some(d)).collect() }, vec![value])
        };
        self.set(node, Value::Tensor { value, dims: out_dims, nhwc: false, batch: out_batch });
        Ok(())
    }

    /// `ConstantOfShape` / `Expand` of a shape holding the batch size, and `Slice` of such a
    /// tensor: a [`Value::Fill`]. False when the node is not one of these (it folds).
    fn fills(&mut self, node: &NodeProto) -> Result<bool> {
        let shape: Vec<i64> = match node.op_type.as_str() {
            "ConstantOfShape" | "Expand" => {
                let i = usize::from(node.op_type == "Expand");
                match self.input(node, i)? {
                    Value::Const(t) if t.as_ints().is_some_and(|v| v.contains(&BATCH)) => {
                        t.as_ints().unwrap_or_default().to_vec()
                    }
                    _ => return Ok(false),
                }
            }
            _ => match self.input(node, 0)? {
                Value::Fill { shape, .. } => shape,
                _ => return Ok(false),
            },
        };
        let fill = match node.op_type.as_str() {
            "ConstantOfShape" => match Attributes::of(node).tensor("value") {
                Some(t) => self.file.tensor(t)?.floats().first().copied().unwrap_or(0.0),
                None => 0.0,
            },
            "Expand" => match self.input(node, 0)? {
                Value::Const(t) if t.data.len() == 1 => t.floats()[0],
                _ => return Err(self.file.error("Expand of a tensor to a shape holding the batch size")),
            },
            _ => match self.input(node, 0)? {
                Value::Fill { value, .. } => value,
                _ => 0.0,
            },
        };
        let shape = if node.op_type == "Slice" {
            let ints = |i: usize| -> Result<Option<Vec<i64>>> {
                match self.optional(node, i)? {
                    Some(Value::Const(t)) => Ok(t.as_ints().map(<[i64]>::to_vec)),
                    Some(_) => Err(self.file.error("Slice bounds must be constants")),
                    None => Ok(None),
                }
            };
            let (starts, ends) = (ints(1)?.unwrap_or_default(), ints(2)?.unwrap_or_default());
            let axes = ints(3)?.unwrap_or_else(|| (0..starts.len() as i64).collect());
            let mut shape = shape;
            let rank = shape.len() as i64;
            for ((&start, &end), &axis) in starts.iter().zip(&ends).zip(&axes) {
                let axis = (if axis < 0 { axis + rank } else { axis }) as usize;
                let Some(&n) = shape.get(axis) else { return Err(self.file.error(format!("Slice axis {axis}"))) };
                if n == BATCH {
                    if start != 0 || end < i32::MAX as i64 {
                        return Err(self.file.error("Slice of the batch axis"));
                    }
                    continue;
                }
                let clamp = |v: i64| (if v < 0 { v + n } else { v }).clamp(0, n);
                shape[axis] = (clamp(end) - clamp(start)).max(0);
            }
            shape
        } else {
            shape
        };
        self.set(node, Value::Fill { value: fill, shape });
        Ok(true)
    }

    /// `alpha · A · B' + beta · C` with A the tensor, B (and C) constants: a Dense.
    fn gemm(&mut self, node: &NodeProto, attrs: &Attributes) -> Result<()> {
        let (value, dims, _) = self.tensor(node, 0)?;
        if attrs.int("transA", 0) != 0 || dims.len() != 1 {
            return Err(self.file.error("Gemm of a transposed or non-2-D input (A [batch, K] runs)"));
        }
        let b = self.constant(node, 1, "the Gemm B matrix")?;
        let &[rows, cols] = b.dims.as_slice() else { return Err(self.file.error("a Gemm B that is not 2-D")) };
        let trans_b = attrs.int("transB", 0) != 0;
        let (in_f, out_f) = if trans_b { (cols, rows) } else { (rows, cols) };
        if in_f != dims[0] {
            return Err(self.file.error(format!("Gemm B {:?} over an input of {} features", b.dims, dims[0])));
        }
        let (alpha, beta) = (attrs.float("alpha", 1.0), attrs.float("beta", 1.0));
        let values = b.floats();
        let mut kernel = if trans_b { transpose(&values, out_f, in_f) } else { values };
        kernel.iter_mut().for_each(|w| *w *= alpha);
        let bias = match self.optional(node, 2)? {
            None => None,
            Some(Value::Const(c)) => Some(
                broadcast_vector(&c.floats(), out_f)
                    .ok_or_else(|| self.file.error(format!("a Gemm C of dimensions {:?} for {out_f} outputs", c.dims)))?
                    .iter()
                    .map(|v| v * beta)
                    .collect(),
            ),
            Some(_) => return Err(self.file.error("a Gemm C that is computed (a constant runs)")),
        };
        let dense = Dense {
            in_features: in_f,
            out_features: out_f,
            kernel,
            bias,
            activation: Activation::Linear,
            residual: false,
        };
        let out = self.push(&node.name, dense, vec![value]);
        self.set_tensor(node, out, vec![out_f], false);
        Ok(())
    }

    /// `A · B` with B a constant `[K, N]`: a Dense over the last axis.
    fn matmul(&mut self, node: &NodeProto) -> Result<()> {
        let input = self.input(node, 0)?;
        let Value::Tensor { dims, .. } = &input else { return Err(self.file.error("MatMul of two constants")) };
        let b = self.constant(node, 1, "the MatMul B matrix")?;
        let &[in_f, out_f] = b.dims.as_slice() else {
            return Err(self.file.error(format!("a MatMul B of dimensions {:?} (a constant matrix runs)", b.dims)));
        };
        if dims.last() != Some(&in_f) {
            return Err(self.file.error(format!("MatMul B {:?} over a sample of {dims:?}", b.dims)));
        }
        let value = self.onnx_order(&input, &node.name)?;
        let dense = Dense {
            in_features: in_f,
            out_features: out_f,
            kernel: b.floats(),
            bias: None,
            activation: Activation::Linear,
            residual: false,
        };
        let out = self.push(&node.name, dense, vec![value]);
        self.biasless.insert(out, out - 1);
        let mut out_dims = dims.clone();
        *out_dims.last_mut().unwrap_or(&mut 0) = out_f;
        self.set_tensor(node, out, out_dims, false);
        Ok(())
    }

    /// A permutation of the axes. Where it only moves the batch axis (the time-major
    /// `[steps, batch, features]` PyTorch's recurrent ops take) or swaps between the two
    /// layouts of an image it is free: the engine's data stays as it is and the value is
    /// relabelled (the channels-last `[C, H, W]` the engine holds is the ONNX `[H, W, C]`
    /// that `perm [0, 2, 3, 1]` makes, and the other way round). Otherwise the sample axes
    /// are permuted on the GPU.
    fn transpose(&mut self, node: &NodeProto, attrs: &Attributes) -> Result<()> {
        let input = self.input(node, 0)?;
        let Value::Tensor { value, dims, nhwc, batch } = &input else {
            return Err(self.file.error("Transpose of a constant"));
        };
        let rank = dims.len() + 1;
        let perm: Vec<i64> = attrs.ints("perm").map_or_else(|| (0..rank as i64).rev().collect(), <[i64]>::to_vec);
        let mut seen = vec![false; rank];
        let valid = perm.len() == rank
            && perm.iter().all(|&p| (0..rank as i64).contains(&p) && !std::mem::replace(&mut seen[p as usize], true));
        if !valid {
            return Err(self.file.error(format!("perm {perm:?} over a tensor of {rank} axes")));
        }
        // The output's batch position, and its sample axes as input sample axes.
        let sample_axis = |full: usize| if full < *batch { full } else { full - 1 };
        let out_batch = perm.iter().position(|&p| p as usize == *batch).unwrap_or(0);
        let order: Vec<usize> =
            perm.iter().filter(|&&p| p as usize != *batch).map(|&p| sample_axis(p as usize)).collect();
        let out_dims: Vec<usize> = order.iter().map(|&a| dims[a]).collect();
        let identity = order.iter().enumerate().all(|(i, &a)| i == a);
        if *batch == 0 && out_batch == 0 && dims.len() == 3 && *nhwc && order == [1, 2, 0] {
            self.set_tensor(node, *value, out_dims, false);
        } else if *batch == 0 && out_batch == 0 && dims.len() == 3 && !*nhwc && order == [2, 0, 1] {
            self.set_tensor(node, *value, out_dims, true);
        } else if identity {
            let value = self.onnx_order(&input, &node.name)?;
            self.set(node, Value::Tensor { value, dims: out_dims, nhwc: false, batch: out_batch });
        } else {
            let value = self.onnx_order(&input, &node.name)?;
            let out = self.push(&node.name, Permute { order }, vec![value]);
            self.set(node, Value::Tensor { value: out, dims: out_dims, nhwc: false, batch: out_batch });
        }
        Ok(())
    }

    /// LayerNormalization over the last axis (ONNX order).
    fn layer_norm(&mut self, node: &NodeProto, attrs: &Attributes) -> Result<()> {
        let input = self.input(node, 0)?;
        let Value::Tensor { dims, .. } = &input else {
            return Err(self.file.error("LayerNormalization of a constant"));
        };
        let axis = attrs.int("axis", -1);
        if axis != -1 && axis != dims.len() as i64 {
            return Err(self.file.error(format!(
                "LayerNormalization from axis {axis} of {} (over the last axis only runs)",
                dims.len() + 1
            )));
        }
        let features = *dims.last().ok_or_else(|| self.file.error("LayerNormalization of a scalar"))?;
        let vector = |i: usize, what: &str, default: f32| -> Result<Vec<f32>> {
            match self.optional(node, i)? {
                None => Ok(vec![default; features]),
                Some(Value::Const(t)) => broadcast_vector(&t.floats(), features).ok_or_else(|| {
                    self.file.error(format!("a LayerNormalization {what} of {:?} over {features} features", t.dims))
                }),
                Some(_) => Err(self.file.error(format!("the LayerNormalization {what} must be a constant"))),
            }
        };
        let (gamma, beta) = (vector(1, "scale", 1.0)?, vector(2, "bias", 0.0)?);
        let eps = attrs.float("epsilon", 1e-5);
        let dims = dims.clone();
        let value = self.onnx_order(&input, &node.name)?;
        let out = self.push(&node.name, crate::layers::LayerNorm { gamma, beta, eps, residual: false }, vec![value]);
        self.set_tensor(node, out, dims, false);
        Ok(())
    }

    fn binary(&mut self, node: &NodeProto) -> Result<()> {
        let (a, b) = (self.input(node, 0)?, self.input(node, 1)?);
        match (&a, &b) {
            (Value::Const(_), Value::Const(_)) => self.fold(node),
            (
                Value::Tensor { value: va, dims: da, nhwc: na, .. },
                Value::Tensor { value: vb, dims: db, nhwc: nb, .. },
            ) => {
                if da.len() != db.len() {
                    return Err(self
                        .file
                        .error(format!("{} of samples {da:?} and {db:?} (one rank runs)", node.op_type)));
                }
                // Both in one layout: channels-last when either is.
                let nhwc = (*na || *nb) && da.len() == 3;
                let va = self.layout(*va, da, *na, nhwc, &node.name);
                let vb = self.layout(*vb, db, *nb, nhwc, &node.name);
                let kind = match node.op_type.as_str() {
                    "Add" => MergeKind::Add,
                    "Sub" => MergeKind::Subtract,
                    "Mul" => MergeKind::Multiply,
                    _ => MergeKind::Divide,
                };
                let dims: Vec<usize> = da.iter().zip(db).map(|(&x, &y)| x.max(y)).collect();
                let out = self.push(&node.name, Merge::new(kind, 2)?, vec![va, vb]);
                self.set_tensor(node, out, dims, nhwc);
                Ok(())
            }
            (Value::Tensor { value, dims, nhwc, .. }, Value::Const(c))
            | (Value::Const(c), Value::Tensor { value, dims, nhwc, .. }) => {
                let constant_first = matches!(a, Value::Const(_));
                self.with_constant(node, (*value, dims.clone(), *nhwc), c, constant_first)
            }
            _ => Err(self.file.error(format!("{} of a tensor whose shape holds the batch size", node.op_type))),
        }
    }

    /// A tensor combined with a constant: a scalar, or one value per channel (the last
    /// engine axis), as Rescaling; a vector added to a bias-less MatMul becomes its bias.
    fn with_constant(
        &mut self,
        node: &NodeProto,
        (value, dims, nhwc): (usize, Vec<usize>, bool),
        constant: &Tensor,
        constant_first: bool,
    ) -> Result<()> {
        let values = constant.floats();
        let op = node.op_type.as_str();
        let combine = match op {
            "Add" => Combine::Add,
            "Sub" => Combine::Subtract,
            "Mul" => Combine::Multiply,
            _ => Combine::Divide,
        };
        if values.len() == 1 && constant.dims.len() <= dims.len() + 1 {
            let out = self.push(&node.name, Scalar { combine, value: values[0], constant_first }, vec![value]);
            self.set_tensor(node, out, dims, nhwc);
            return Ok(());
        }
        // One value per channel: ONNX [C, 1, 1] (or [1, C, 1, 1]) over an image (the channel
        // axis, last in the engine's layout), or [N] over the last ONNX axis.
        let shape: Vec<usize> = constant.dims.iter().copied().skip_while(|&d| d == 1).collect();
        let image = dims.len() == 3 && values.len() == dims[0] && shape == [dims[0], 1, 1];
        let last_axis = !image && dims.last().is_some_and(|&n| values.len() == n && shape == [n]);
        if !(image || last_axis) || (constant_first && matches!(combine, Combine::Subtract | Combine::Divide)) {
            return Err(self.file.error(format!(
                "{op} of a sample {dims:?} and a constant {:?} (a scalar or one value per channel runs)",
                constant.dims
            )));
        }
        let channels = values.len();
        // A vector added to a bias-less Dense that nothing else reads (MatMul + Add, as
        // exporters write Linear): the Dense's bias.
        let tensor_name = &node.input[usize::from(constant_first)];
        if combine == Combine::Add && last_axis && self.uses.get(tensor_name) == Some(&1) {
            if let Some(&index) = self.biasless.get(&value) {
                if let Some(dense) = self.layers[index].downcast::<Dense>().filter(|d| d.bias.is_none()) {
                    let dense = Dense { bias: Some(values), ..dense.clone() };
                    self.layers[index].op = Arc::new(dense);
                    self.biasless.remove(&value);
                    self.set_tensor(node, value, dims, nhwc);
                    return Ok(());
                }
            }
        }
        let value = self.layout(value, &dims, nhwc, image, &node.name);
        let nhwc = image;
        let (scale, offset) = match combine {
            Combine::Add => (vec![1.0; channels], values),
            Combine::Subtract => (vec![1.0; channels], values.iter().map(|v| -v).collect()),
            Combine::Multiply => (values, vec![0.0; channels]),
            _ => (values.iter().map(|v| 1.0 / v).collect(), vec![0.0; channels]),
        };
        let out = self.push(&node.name, Rescaling { scale, offset }, vec![value]);
        self.set_tensor(node, out, dims, nhwc);
        Ok(())
    }

    /// A node whose inputs are all constants (or a Shape of a tensor): computed here.
    fn fold(&mut self, node: &NodeProto) -> Result<()> {
        let attrs = Attributes::of(node);
        let op = node.op_type.as_str();
        let constant = |i: usize| self.constant(node, i, "this input");
        let result = match op {
            "Shape" => {
                let dims: Vec<i64> = match self.input(node, 0)? {
                    Value::Tensor { dims, batch, .. } => full_shape(&dims, batch),
                    Value::Const(t) => t.dims.iter().map(|&d| d as i64).collect(),
                    Value::Fill { shape, .. } => shape,
                };
                let rank = dims.len() as i64;
                let clamp = |v: i64| (if v < 0 { v + rank } else { v }).clamp(0, rank) as usize;
                let start = clamp(attrs.int("start", 0));
                let end = clamp(attrs.int("end", rank));
                Tensor::ints(dims[start..end.max(start)].to_vec())
            }
            "Cast" => {
                let t = constant(0)?;
                let to = attrs.int("to", 1);
                match to {
                    1 | 10 | 11 => Tensor { dims: t.dims.clone(), data: Data::F32(t.floats()) },
                    _ => {
                        let ints = match &t.data {
                            Data::I64(v) => v.clone(),
                            Data::F32(v) => v.iter().map(|&x| x as i64).collect(),
                        };
                        Tensor { dims: t.dims, data: Data::I64(ints) }
                    }
                }
            }
            "Gather" => {
                let data = constant(0)?;
                let indices = constant(1)?;
                let axis = attrs.int("axis", 0);
                if data.dims.len() != 1 || axis != 0 {
                    return Err(self.file.error("Gather of a constant that is not 1-D (shape arithmetic runs)"));
                }
                let n = data.dims[0] as i64;
                let picks = indices.as_ints().ok_or_else(|| self.file.error("Gather indices that are not integers"))?;
                let mut out = Vec::new();
                for &i in picks {
                    let i = if i < 0 { i + n } else { i };
                    if i < 0 || i >= n {
                        return Err(self.file.error(format!("Gather index {i} of {n} values")));
                    }
                    out.push(i as usize);
                }
                let data_out = match &data.data {
                    Data::I64(v) => Data::I64(out.iter().map(|&i| v[i]).collect()),
                    Data::F32(v) => Data::F32(out.iter().map(|&i| v[i]).collect()),
                };
                Tensor { dims: indices.dims.clone(), data: data_out }
            }
            "Unsqueeze" | "Squeeze" => {
                let t = constant(0)?;
                let count = t.data.len();
                // Shape arithmetic is scalars and vectors: the result is a vector (Unsqueeze)
                // or, with one value, a scalar (Squeeze).
                if op == "Unsqueeze" {
                    Tensor { dims: vec![count], data: t.data }
                } else if count == 1 {
                    Tensor { dims: vec![], data: t.data }
                } else {
                    Tensor { dims: vec![count], data: t.data }
                }
            }
            "Concat" => {
                let mut ints = Vec::new();
                for i in 0..node.input.len() {
                    let t = constant(i)?;
                    ints.extend_from_slice(
                        t.as_ints().ok_or_else(|| self.file.error("Concat of constants that are not integers"))?,
                    );
                }
                Tensor::ints(ints)
            }
            "Slice" => {
                let t = constant(0)?;
                let values = t.as_ints().ok_or_else(|| self.file.error("Slice of a float constant"))?;
                if t.dims.len() != 1 {
                    return Err(self.file.error("Slice of a constant that is not 1-D"));
                }
                let first = |i: usize| -> Result<Option<i64>> {
                    match self.optional(node, i)? {
                        Some(Value::Const(c)) => Ok(c.as_ints().and_then(|v| v.first().copied())),
                        Some(_) => Err(self.file.error("Slice bounds must be constants")),
                        None => Ok(None),
                    }
                };
                let n = values.len() as i64;
                let clamp = |v: i64| (if v < 0 { v + n } else { v }).clamp(0, n) as usize;
                let start = clamp(first(1)?.unwrap_or(0));
                let end = clamp(first(2)?.unwrap_or(n));
                if first(4)?.is_some_and(|s| s != 1) {
                    return Err(self.file.error("Slice with a step other than 1 on a constant"));
                }
                Tensor::ints(values[start..end.max(start)].to_vec())
            }
            "Reshape" => {
                let (t, shape) = (constant(0)?, constant(1)?);
                let target = shape.as_ints().ok_or_else(|| self.file.error("a Reshape shape that is not integers"))?;
                let count = t.data.len();
                let mut dims: Vec<Option<usize>> = Vec::new();
                for (i, &d) in target.iter().enumerate() {
                    dims.push(match d {
                        -1 => None,
                        0 => Some(*t.dims.get(i).ok_or_else(|| self.file.error("Reshape 0 copies no axis"))?),
                        d if d > 0 => Some(d as usize),
                        d => return Err(self.file.error(format!("Reshape of a constant to dimension {d}"))),
                    });
                }
                let dims = infer_dimension(&dims, count)
                    .ok_or_else(|| self.file.error(format!("Reshape of a constant of {count} values to {target:?}")))?;
                if dims.iter().product::<usize>() != count {
                    return Err(self.file.error(format!("Reshape of a constant of {count} values to {target:?}")));
                }
                Tensor { dims, data: t.data }
            }
            "ConstantOfShape" => {
                let shape = constant(0)?;
                let dims: Vec<usize> = shape
                    .as_ints()
                    .ok_or_else(|| self.file.error("ConstantOfShape of a float shape"))?
                    .iter()
                    .map(|&d| usize::try_from(d).map_err(|_| self.file.error(format!("ConstantOfShape dimension {d}"))))
                    .collect::<Result<_>>()?;
                let count = dims.iter().try_fold(1usize, |n, &d| n.checked_mul(d)).filter(|&n| n <= 1 << 20);
                let count =
                    count.ok_or_else(|| self.file.error(format!("ConstantOfShape of {dims:?} is too large")))?;
                let fill = match attrs.tensor("value") {
                    Some(t) => self.file.tensor(t)?,
                    None => Tensor { dims: vec![1], data: Data::F32(vec![0.0]) },
                };
                let data = match fill.data {
                    Data::F32(v) => Data::F32(vec![v.first().copied().unwrap_or(0.0); count]),
                    Data::I64(v) => Data::I64(vec![v.first().copied().unwrap_or(0); count]),
                };
                Tensor { dims, data }
            }
            "Add" | "Sub" | "Mul" | "Div" => {
                let (a, b) = (constant(0)?, constant(1)?);
                match (a.as_ints(), b.as_ints()) {
                    (Some(x), Some(y)) => {
                        if x.contains(&BATCH) || y.contains(&BATCH) {
                            return Err(self.file.error(format!(
                                "{op} on the batch size (shape arithmetic with the batch axis does not fold)"
                            )));
                        }
                        let n = x.len().max(y.len());
                        if !(x.len() == n || x.len() == 1) || !(y.len() == n || y.len() == 1) {
                            return Err(self.file.error("integer arithmetic on constants of two lengths"));
                        }
                        let pick = |v: &[i64], i: usize| if v.len() == 1 { v[0] } else { v[i] };
                        let mut out = Vec::with_capacity(n);
                        for i in 0..n {
                            let (p, q) = (pick(x, i), pick(y, i));
                            out.push(
                                match op {
                                    "Add" => p.checked_add(q),
                                    "Sub" => p.checked_sub(q),
                                    "Mul" => p.checked_mul(q),
                                    _ => p.checked_div(q),
                                }
                                .ok_or_else(|| self.file.error(format!("{op} of {p} and {q} overflows")))?,
                            );
                        }
                        let dims = if a.dims.len() >= b.dims.len() { a.dims.clone() } else { b.dims.clone() };
                        Tensor { dims, data: Data::I64(out) }
                    }
                    _ => {
                        return Err(self
                            .file
                            .error(format!("{op} of two float constants (nothing to compute on the GPU)")))
                    }
                }
            }
            _ => return Err(self.unsupported(node)),
        };
        self.set(node, Value::Const(result));
        Ok(())
    }
}

/// OIHW `[o, i, kh, kw]` → HWIO `[kh, kw, i, o]`.
fn oihw_to_hwio(weights: &[f32], [o, i, kh, kw]: [usize; 4]) -> Vec<f32> {
    let mut out = vec![0.0; weights.len()];
    for oc in 0..o {
        for ic in 0..i {
            for y in 0..kh {
                for x in 0..kw {
                    out[((y * kw + x) * i + ic) * o + oc] = weights[((oc * i + ic) * kh + y) * kw + x];
                }
            }
        }
    }
    out
}

/// A bias of `n` values from a constant of `n` values or one.
fn broadcast_vector(values: &[f32], n: usize) -> Option<Vec<f32>> {
    match values.len() {
        1 => Some(vec![values[0]; n]),
        len if len == n => Some(values.to_vec()),
        _ => None,
    }
}

mod recurrent;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn oihw_becomes_hwio() {
        // o=2, i=3, kh=1, kw=2: weight[o][i][0][x] = 100 o + 10 i + x.
        let w: Vec<f32> =
            (0..2).flat_map(|o| (0..3).flat_map(move |i| (0..2).map(move |x| (100 * o + 10 * i + x) as f32))).collect();
        let hwio = oihw_to_hwio(&w, [2, 3, 1, 2]);
        // hwio[(x * 3 + i) * 2 + o]
        assert_eq!(hwio[(3 + 2) * 2 + 1], 121.0);
        assert_eq!(hwio[2], 10.0);
        assert_eq!(transpose(&[1.0, 2.0, 3.0, 4.0, 5.0, 6.0], 2, 3), [1.0, 4.0, 2.0, 5.0, 3.0, 6.0]);
    }
}
