//! Before the walk: the decomposed forms exporters write for two ops that older opsets lack
//! become those ops again, so each runs as one fused kernel (and the walk has one place for
//! each):
//!
//! - **LayerNormalization** (opset 17): the TorchScript exporter writes `nn.LayerNorm` as
//!   `m = ReduceMean(x, [-1]); d = x - m; v = ReduceMean(d ^ 2, [-1]);
//!   y = d / Sqrt(v + eps)`, then `* gamma` and `+ beta` when the layer has them;
//! - **Gelu** (opset 20): both exporters write the exact GELU as
//!   `x * 0.5 * (1 + Erf(x / √2))` (in either order of the two products, or `x · (1/√2)`).
//!
//! - **the identity `as_strided`** the dynamo exporter writes after a pool over a
//!   channels-last tensor: `Gather(Reshape(x, [-1]), indices)` whose indices, computed from
//!   `Range(0, batch)`, pick every element in order. Evaluated for batches 1 to 3, such a
//!   Gather is a Reshape of `x` to the indices' shape.
//!
//! Nodes whose outputs nothing reads any more are then dropped.
//!
//! A pattern is replaced only when every value inside it is read by the pattern alone;
//! otherwise the nodes stay as they are (and `Erf`, `Pow`, `Sqrt` outside these patterns
//! are reported as such by the walk).

use std::borrow::Cow;
use std::collections::{HashMap, HashSet};

use onnx_protobuf::{AttributeProto, NodeProto};

use super::file::{Attributes, Data, OnnxFile, Tensor};

/// The nodes of `file`'s graph, in order, with the patterns above replaced by one node.
/// `initializers` are the graph's initializers, decoded (once, by the importer).
pub fn fuse_decomposed_ops(file: &OnnxFile, initializers: &HashMap<String, Tensor>) -> Vec<NodeProto> {
    let graph = file.graph();
    let nodes = &graph.node;
    let finder = Finder::new(file, initializers);
    let mut drop = HashSet::new();
    let mut replace: HashMap<usize, Vec<NodeProto>> = HashMap::new();
    for (i, node) in nodes.iter().enumerate() {
        if drop.contains(&i) || replace.contains_key(&i) {
            continue;
        }
        let found = match node.op_type.as_str() {
            "Div" => finder.layer_norm(i),
            "Erf" => finder.gelu(i),
            "Gather" => finder.identity_gather(i),
            _ => None,
        };
        if let Some((inner, last, fused)) = found {
            if inner.iter().chain([&last]).any(|n| drop.contains(n) || replace.contains_key(n)) {
                continue;
            }
            drop.extend(inner);
            replace.insert(last, fused);
        }
    }
    if drop.is_empty() && replace.is_empty() {
        return nodes.clone();
    }
    let rewritten: Vec<NodeProto> = nodes
        .iter()
        .enumerate()
        .filter(|(i, _)| !drop.contains(i))
        .flat_map(|(i, node)| replace.remove(&i).unwrap_or_else(|| vec![node.clone()]))
        .collect();
    without_dead_nodes(rewritten, graph.output.iter().map(|o| o.name.as_str()).collect())
}

/// `nodes` less those whose outputs no node and no graph output reads (repeatedly).
fn without_dead_nodes(mut nodes: Vec<NodeProto>, outputs: HashSet<&str>) -> Vec<NodeProto> {
    loop {
        let read: HashSet<&str> = nodes.iter().flat_map(|n| n.input.iter().map(String::as_str)).collect();
        let live: Vec<bool> = nodes
            .iter()
            .map(|n| n.output.iter().any(|o| read.contains(o.as_str()) || outputs.contains(o.as_str())))
            .collect();
        if live.iter().all(|&l| l) {
            return nodes;
        }
        let mut live = live.into_iter();
        nodes.retain(|_| live.next().unwrap_or(true));
    }
}

/// An integer tensor evaluated for one batch size: dimensions and values.
type Ints = (Vec<usize>, Vec<i64>);

/// The most values an evaluated index tensor may hold.
const MAX_INDEX_VALUES: usize = 1 << 20;

/// Lookups over the original graph.
struct Finder<'a> {
    file: &'a OnnxFile,
    initializers: &'a HashMap<String, Tensor>,
    nodes: &'a [NodeProto],
    /// The node making each value.
    producer: HashMap<&'a str, usize>,
    /// The nodes reading each value (a graph output counts as a reader no node matches).
    consumers: HashMap<&'a str, Vec<Option<usize>>>,
}

/// A match: the nodes it removes, the node it replaces, and the node replacing it.
type Found = (Vec<usize>, usize, Vec<NodeProto>);

impl<'a> Finder<'a> {
    fn new(file: &'a OnnxFile, initializers: &'a HashMap<String, Tensor>) -> Self {
        let graph = file.graph();
        let nodes = graph.node.as_slice();
        let mut producer = HashMap::new();
        let mut consumers: HashMap<&str, Vec<Option<usize>>> = HashMap::new();
        for (i, node) in nodes.iter().enumerate() {
            for out in &node.output {
                producer.insert(out.as_str(), i);
            }
            for input in node.input.iter().filter(|n| !n.is_empty()) {
                consumers.entry(input.as_str()).or_default().push(Some(i));
            }
        }
        for output in &graph.output {
            consumers.entry(output.name.as_str()).or_default().push(None);
        }
        Self { file, initializers, nodes, producer, consumers }
    }

    fn node(&self, i: usize) -> &'a NodeProto {
        &self.nodes[i]
    }

    /// The node making `name`, when it is `op` in the default domain.
    fn made_by(&self, name: &str, op: &str) -> Option<usize> {
        let &i = self.producer.get(name)?;
        let node = self.node(i);
        (node.op_type == op && (node.domain.is_empty() || node.domain == "ai.onnx")).then_some(i)
    }

    /// The one node reading `name` (None when it has other readers, or is a graph output).
    fn only_reader(&self, name: &str) -> Option<usize> {
        match self.consumers.get(name).map(Vec::as_slice) {
            Some([Some(i)]) => Some(*i),
            _ => None,
        }
    }

    /// The one node reading node `i`'s first output, when it is `op`.
    fn next(&self, i: usize, op: &str) -> Option<usize> {
        let reader = self.only_reader(self.node(i).output.first()?)?;
        let node = self.node(reader);
        (node.op_type == op && (node.domain.is_empty() || node.domain == "ai.onnx")).then_some(reader)
    }

    fn out(&self, i: usize) -> &'a str {
        self.node(i).output.first().map_or("", String::as_str)
    }

    /// The value of `name` when it is a constant: an initializer, or a Constant node's
    /// output, through Identity nodes.
    fn known(&self, name: &str) -> Option<Cow<'a, Tensor>> {
        if let Some(t) = self.initializers.get(name) {
            return Some(Cow::Borrowed(t));
        }
        let node = self.node(*self.producer.get(name)?);
        match node.op_type.as_str() {
            "Identity" => self.known(node.input.first()?),
            "Constant" => {
                let attrs = Attributes::of(node);
                if let Some(t) = attrs.tensor("value") {
                    self.file.tensor(t).ok().map(Cow::Owned)
                } else if attrs.has("value_float") {
                    Some(Cow::Owned(Tensor { dims: vec![], data: Data::F32(vec![attrs.float("value_float", 0.0)]) }))
                } else {
                    None
                }
            }
            _ => None,
        }
    }

    /// The values of a constant `name`, as floats.
    fn constant(&self, name: &str) -> Option<Vec<f32>> {
        self.known(name).map(|t| t.floats())
    }

    /// The one value of a constant `name`, when it has one value.
    fn scalar(&self, name: &str) -> Option<f32> {
        match self.constant(name)?.as_slice() {
            [v] => Some(*v),
            _ => None,
        }
    }

    /// The input of a two-input node `i` that is not `known` (either order).
    fn other(&self, i: usize, known: &str) -> Option<&'a str> {
        match self.node(i).input.as_slice() {
            [a, b] if a == known => Some(b),
            [a, b] if b == known => Some(a),
            _ => None,
        }
    }

    /// Whether ReduceMean node `i` reduces the last axis only (axes as the attribute, up
    /// to opset 17, or as input 1 from opset 18), keeping it.
    fn mean_of_last_axis(&self, i: usize) -> bool {
        let node = self.node(i);
        let attrs = Attributes::of(node);
        let axes = match (attrs.ints("axes"), node.input.get(1).filter(|n| !n.is_empty())) {
            (Some(axes), _) => axes.to_vec(),
            (None, Some(name)) => match self.constant_ints(name) {
                Some(axes) => axes,
                None => return false,
            },
            (None, None) => return false,
        };
        axes == [-1] && attrs.int("keepdims", 1) == 1
    }

    fn constant_ints(&self, name: &str) -> Option<Vec<i64>> {
        self.known(name)?.as_ints().map(<[i64]>::to_vec)
    }

    /// `Div(d, Sqrt(Add(ReduceMean(Pow(d, 2)), eps)))` with `d = Sub(x, ReduceMean(x))`,
    /// then optionally `Mul` by a constant and `Add` of a constant.
    fn layer_norm(&self, div: usize) -> Option<Found> {
        let node = self.node(div);
        let [d, s] = node.input.as_slice() else { return None };
        let sqrt = self.made_by(s, "Sqrt")?;
        let add = self.made_by(self.node(sqrt).input.first()?, "Add")?;
        let var = self.node(add).input.iter().find_map(|n| self.made_by(n, "ReduceMean"))?;
        let eps = self.scalar(self.other(add, self.out(var))?)?;
        let pow = self.made_by(self.node(var).input.first()?, "Pow")?;
        let [pd, two] = self.node(pow).input.as_slice() else { return None };
        let sub = self.made_by(d, "Sub")?;
        let [x, m] = self.node(sub).input.as_slice() else { return None };
        let mean = self.made_by(m, "ReduceMean")?;
        let shapes_ok = pd == d
            && self.scalar(two) == Some(2.0)
            && self.node(mean).input.first() == Some(x)
            && self.mean_of_last_axis(mean)
            && self.mean_of_last_axis(var);
        // Every inner value read by the pattern alone: d by Pow and Div, the rest once.
        let d_readers: HashSet<_> = self.consumers.get(d.as_str())?.iter().copied().collect();
        let private = d_readers == HashSet::from([Some(pow), Some(div)])
            && [mean, pow, var, add, sqrt].iter().all(|&n| self.only_reader(self.out(n)).is_some());
        if !shapes_ok || !private {
            return None;
        }
        let mut inner = vec![mean, sub, pow, var, add, sqrt];
        let mut last = div;
        let mut inputs = vec![x.clone()];
        if let Some(mul) = self.next(last, "Mul") {
            if let Some(gamma) = self.other(mul, self.out(last)).filter(|g| self.constant(g).is_some()) {
                inputs.push(gamma.to_string());
                inner.push(last);
                last = mul;
                if let Some(add) = self.next(last, "Add") {
                    if let Some(beta) = self.other(add, self.out(last)).filter(|b| self.constant(b).is_some()) {
                        inputs.push(beta.to_string());
                        inner.push(last);
                        last = add;
                    }
                }
            }
        }
        let fused = NodeProto {
            name: format!("{} (LayerNormalization)", self.node(last).name),
            op_type: "LayerNormalization".into(),
            input: inputs,
            output: vec![self.out(last).to_string()],
            attribute: vec![float_attr("epsilon", eps), int_attr("axis", -1)],
            ..Default::default()
        };
        Some((inner, last, vec![fused]))
    }

    /// `Erf(x / √2)` (or `x · (1/√2)`) `+ 1`, times `x` and `0.5` in either order.
    fn gelu(&self, erf: usize) -> Option<Found> {
        let scaled = self.node(erf).input.first()?;
        let (pre, x) = if let Some(div) = self.made_by(scaled, "Div") {
            let [x, c] = self.node(div).input.as_slice() else { return None };
            ((self.scalar(c)? - std::f32::consts::SQRT_2).abs() < 1e-5).then_some((div, x))?
        } else {
            let mul = self.made_by(scaled, "Mul")?;
            let [a, b] = self.node(mul).input.as_slice() else { return None };
            let (x, c) = if self.scalar(b).is_some() { (a, b) } else { (b, a) };
            ((self.scalar(c)? - std::f32::consts::FRAC_1_SQRT_2).abs() < 1e-6).then_some((mul, x))?
        };
        self.only_reader(scaled)?;
        let add = self.next(erf, "Add")?;
        if self.scalar(self.other(add, self.out(erf))?)? != 1.0 {
            return None;
        }
        let first = self.next(add, "Mul")?;
        let second = self.next(first, "Mul")?;
        let a = self.other(first, self.out(add))?;
        let b = self.other(second, self.out(first))?;
        let half = |n: &str| self.scalar(n) == Some(0.5);
        if !((a == x && half(b)) || (half(a) && b == x)) {
            return None;
        }
        let fused = NodeProto {
            name: format!("{} (Gelu)", self.node(second).name),
            op_type: "Gelu".into(),
            input: vec![x.clone()],
            output: vec![self.out(second).to_string()],
            ..Default::default()
        };
        Some((vec![pre, erf, add, first], second, vec![fused]))
    }

    /// `Gather(Reshape(x, [-1]), indices)`, axis 0, whose indices are `0, 1, 2, ...` in
    /// the order of their shape `[batch, ...]` for batches 1, 2 and 3: `Reshape(x, [-1, ...])`.
    fn identity_gather(&self, gather: usize) -> Option<Found> {
        let node = self.node(gather);
        let [data, indices] = node.input.as_slice() else { return None };
        if Attributes::of(node).int("axis", 0) != 0 {
            return None;
        }
        let flatten = self.made_by(data, "Reshape")?;
        let [x, shape] = self.node(flatten).input.as_slice() else { return None };
        if self.constant_ints(shape)? != [-1] || self.only_reader(data) != Some(gather) {
            return None;
        }
        let mut sample = None;
        for batch in 1..=3 {
            let (dims, values) = self.eval(indices, batch, 0)?;
            let ordered = values.iter().enumerate().all(|(i, &v)| v == i as i64);
            if dims.first() != Some(&(batch as usize)) || !ordered {
                return None;
            }
            let rest = dims[1..].to_vec();
            if sample.get_or_insert_with(|| rest.clone()) != &rest {
                return None;
            }
        }
        let target: Vec<i64> = std::iter::once(-1).chain(sample?.iter().map(|&d| d as i64)).collect();
        let shape_name = format!("{}/identity_gather_shape", node.name);
        let constant = NodeProto {
            name: shape_name.clone(),
            op_type: "Constant".into(),
            output: vec![shape_name.clone()],
            attribute: vec![ints_tensor_attr("value", &target)],
            ..Default::default()
        };
        let reshape = NodeProto {
            name: format!("{} (identity as_strided)", node.name),
            op_type: "Reshape".into(),
            input: vec![x.clone(), shape_name],
            output: vec![self.out(gather).to_string()],
            ..Default::default()
        };
        Some((vec![flatten], gather, vec![constant, reshape]))
    }

    /// Integer value `name` for a batch of `batch`: constants, the graph input's Shape and
    /// the arithmetic exporters write on it (Range, Add, Sub, Mul, Unsqueeze, Squeeze,
    /// Cast, Identity). None for anything else.
    fn eval(&self, name: &str, batch: i64, depth: usize) -> Option<Ints> {
        if depth > 64 {
            return None;
        }
        if let Some(t) = self.known(name) {
            return Some((t.dims.clone(), t.as_ints()?.to_vec()));
        }
        let graph = self.file.graph();
        let node = self.node(*self.producer.get(name)?);
        let attrs = Attributes::of(node);
        let arg = |i: usize| self.eval(node.input.get(i)?, batch, depth + 1);
        let out = match node.op_type.as_str() {
            "Identity" | "Cast" => arg(0)?,
            "Shape" => {
                let input = node.input.first()?;
                let info = graph.input.iter().find(|i| &i.name == input)?;
                let dims = input_dims_with_batch(info, batch)?;
                let rank = dims.len() as i64;
                let clamp = |v: i64| (if v < 0 { v + rank } else { v }).clamp(0, rank) as usize;
                let (start, end) = (clamp(attrs.int("start", 0)), clamp(attrs.int("end", rank)));
                let values = dims.get(start..end.max(start))?.to_vec();
                (vec![values.len()], values)
            }
            "Range" => {
                let scalar = |i: usize| arg(i).and_then(|(_, v)| (v.len() == 1).then(|| v[0]));
                let (start, limit, delta) = (scalar(0)?, scalar(1)?, scalar(2)?);
                if delta == 0 {
                    return None;
                }
                let count = ((limit - start) as f64 / delta as f64).ceil().max(0.0) as usize;
                if count > MAX_INDEX_VALUES {
                    return None;
                }
                (vec![count], (0..count as i64).map(|i| start + i * delta).collect())
            }
            "Add" | "Sub" | "Mul" => {
                let (a, b) = (arg(0)?, arg(1)?);
                broadcast(&a, &b, |x, y| match node.op_type.as_str() {
                    "Add" => x.checked_add(y),
                    "Sub" => x.checked_sub(y),
                    _ => x.checked_mul(y),
                })?
            }
            "Unsqueeze" | "Squeeze" => {
                let (dims, values) = arg(0)?;
                let axes = match attrs.ints("axes") {
                    Some(a) => Some(a.to_vec()),
                    None => match node.input.get(1).filter(|n| !n.is_empty()) {
                        Some(_) => Some(arg(1)?.1),
                        None => None,
                    },
                };
                let dims = if node.op_type == "Unsqueeze" {
                    let rank = (dims.len() + axes.as_ref()?.len()) as i64;
                    let mut axes: Vec<usize> =
                        axes?.iter().map(|&a| if a < 0 { a + rank } else { a }).map(|a| a as usize).collect();
                    axes.sort_unstable();
                    let mut out = dims;
                    for a in axes {
                        if a > out.len() {
                            return None;
                        }
                        out.insert(a, 1);
                    }
                    out
                } else {
                    let rank = dims.len() as i64;
                    let axes: Option<HashSet<usize>> =
                        axes.map(|a| a.iter().map(|&a| if a < 0 { a + rank } else { a } as usize).collect());
                    dims.iter()
                        .enumerate()
                        .filter(|&(i, &d)| !(d == 1 && axes.as_ref().is_none_or(|a| a.contains(&i))))
                        .map(|(_, &d)| d)
                        .collect()
                };
                (dims, values)
            }
            _ => return None,
        };
        (out.1.len() <= MAX_INDEX_VALUES).then_some(out)
    }
}

/// The graph input's dimensions, the first (the batch) given.
fn input_dims_with_batch(info: &onnx_protobuf::ValueInfoProto, batch: i64) -> Option<Vec<i64>> {
    use onnx_protobuf::tensor_shape_proto::dimension::Value as Dim;
    use onnx_protobuf::type_proto::Value as Type;
    let Some(Type::TensorType(t)) = info.type_.as_ref()?.value.as_ref() else { return None };
    let dims = &t.shape.as_ref()?.dim;
    let mut out = vec![batch];
    for d in dims.iter().skip(1) {
        match d.value {
            Some(Dim::DimValue(v)) => out.push(v),
            _ => return None,
        }
    }
    Some(out)
}

/// NumPy broadcasting of an integer operation.
fn broadcast(a: &Ints, b: &Ints, op: impl Fn(i64, i64) -> Option<i64>) -> Option<Ints> {
    let rank = a.0.len().max(b.0.len());
    let pad = |d: &[usize]| -> Vec<usize> { std::iter::repeat_n(1, rank - d.len()).chain(d.iter().copied()).collect() };
    let (da, db) = (pad(&a.0), pad(&b.0));
    let dims: Vec<usize> = da
        .iter()
        .zip(&db)
        .map(|(&x, &y)| {
            if x == y || y == 1 {
                Some(x)
            } else if x == 1 {
                Some(y)
            } else {
                None
            }
        })
        .collect::<Option<_>>()?;
    let count = dims.iter().try_fold(1usize, |n, &d| n.checked_mul(d)).filter(|&n| n <= MAX_INDEX_VALUES)?;
    let index = |dims_in: &[usize], values: &[i64], flat: usize| -> i64 {
        let (mut rem, mut offset, mut stride) = (flat, 0, 1);
        for axis in (0..rank).rev() {
            let i = rem % dims[axis];
            rem /= dims[axis];
            if dims_in[axis] != 1 {
                offset += i * stride;
            }
            stride *= dims_in[axis];
        }
        values[offset]
    };
    let values = (0..count).map(|f| op(index(&da, &a.1, f), index(&db, &b.1, f))).collect::<Option<Vec<_>>>()?;
    Some((dims, values))
}

fn float_attr(name: &str, value: f32) -> AttributeProto {
    AttributeProto {
        name: name.into(),
        f: value,
        type_: onnx_protobuf::attribute_proto::AttributeType::FLOAT.into(),
        ..Default::default()
    }
}

fn ints_tensor_attr(name: &str, values: &[i64]) -> AttributeProto {
    let tensor = onnx_protobuf::TensorProto {
        dims: vec![values.len() as i64],
        data_type: onnx_protobuf::tensor_proto::DataType::INT64 as i32,
        int64_data: values.to_vec(),
        ..Default::default()
    };
    AttributeProto {
        name: name.into(),
        t: Some(tensor).into(),
        type_: onnx_protobuf::attribute_proto::AttributeType::TENSOR.into(),
        ..Default::default()
    }
}

fn int_attr(name: &str, value: i64) -> AttributeProto {
    AttributeProto {
        name: name.into(),
        i: value,
        type_: onnx_protobuf::attribute_proto::AttributeType::INT.into(),
        ..Default::default()
    }
}
