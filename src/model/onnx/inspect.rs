//! `siamese inspect` for an ONNX file: what the file holds (producer, opset, inputs and
//! outputs with their symbolic axes, nodes by op type, parameters) and what of it runs
//! (the op types the importer does not know, by node), read without importing.

use std::collections::BTreeMap;
use std::fmt;
use std::path::Path;

use onnx_protobuf::ValueInfoProto;

use super::file::OnnxFile;
use super::import::OPS;
use crate::error::Result;

/// What an ONNX file holds.
#[derive(Debug, Clone)]
pub struct Inspection {
    /// The file.
    pub file: String,
    /// `producer_name producer_version`, as the exporter wrote it.
    pub producer: String,
    /// The default-domain opset.
    pub opset: i64,
    /// Graph inputs that are not initializers, as `name [dims] type`.
    pub inputs: Vec<String>,
    /// Graph outputs, as `name [dims] type`.
    pub outputs: Vec<String>,
    /// Node count by op type (with its domain when not the default one).
    pub ops: BTreeMap<String, usize>,
    /// Initializer tensors and the values they hold.
    pub initializers: usize,
    /// Values held by float initializers (the parameters, before BatchNorm folding).
    pub parameters: u64,
    /// Nodes whose op type the importer does not run: (node name, op type).
    pub unsupported: Vec<(String, String)>,
}

/// Reads `path`'s graph (and nothing of its external data) for `siamese inspect`.
pub fn inspect(path: impl AsRef<Path>) -> Result<Inspection> {
    let file = OnnxFile::read(path.as_ref())?;
    let graph = file.graph();
    let initializer_names: std::collections::HashSet<&str> =
        graph.initializer.iter().map(|t| t.name.as_str()).collect();
    let mut ops = BTreeMap::new();
    let mut unsupported = Vec::new();
    for node in &graph.node {
        let op = op_name(&node.domain, &node.op_type);
        if !(node.domain.is_empty() || node.domain == "ai.onnx") || !runs(&node.op_type) {
            unsupported.push((node.name.clone(), op.clone()));
        }
        *ops.entry(op).or_default() += 1;
    }
    // Float values only: integer initializers are shapes and axes, not weights.
    let float = [onnx_protobuf::tensor_proto::DataType::FLOAT, onnx_protobuf::tensor_proto::DataType::FLOAT16];
    let parameters = graph
        .initializer
        .iter()
        .filter(|t| float.iter().any(|&f| t.data_type == f as i32))
        .map(|t| t.dims.iter().map(|&d| d.max(0) as u64).product::<u64>())
        .sum::<u64>();
    let producer = format!("{} {}", file.model.producer_name, file.model.producer_version).trim().to_string();
    Ok(Inspection {
        file: file.name(),
        producer,
        opset: file.opset,
        inputs: graph.input.iter().filter(|i| !initializer_names.contains(i.name.as_str())).map(describe).collect(),
        outputs: graph.output.iter().map(describe).collect(),
        ops,
        initializers: graph.initializer.len(),
        parameters,
        unsupported,
    })
}

/// Whether the importer runs `op_type` (the default domain).
fn runs(op_type: &str) -> bool {
    OPS.split(", ").any(|op| op == op_type)
}

fn op_name(domain: &str, op_type: &str) -> String {
    if domain.is_empty() || domain == "ai.onnx" {
        op_type.to_string()
    } else {
        format!("{domain}::{op_type}")
    }
}

/// `name [batch, 3, 224, 224] float32`.
fn describe(value: &ValueInfoProto) -> String {
    use onnx_protobuf::tensor_proto::DataType;
    use onnx_protobuf::tensor_shape_proto::dimension::Value as Dim;
    use onnx_protobuf::type_proto::Value as Type;
    use protobuf::Enum;
    let Some(Type::TensorType(tensor)) = value.type_.as_ref().and_then(|t| t.value.as_ref()) else {
        return format!("{} (not a tensor)", value.name);
    };
    let dims: Vec<String> = tensor
        .shape
        .as_ref()
        .map(|s| s.dim.as_slice())
        .unwrap_or_default()
        .iter()
        .map(|d| match &d.value {
            Some(Dim::DimValue(v)) => v.to_string(),
            Some(Dim::DimParam(p)) => p.clone(),
            _ => "?".into(),
        })
        .collect();
    let kind = DataType::from_i32(tensor.elem_type)
        .map(|t| format!("{t:?}").to_lowercase())
        .unwrap_or_else(|| format!("type {}", tensor.elem_type));
    format!("{} [{}] {kind}", value.name, dims.join(", "))
}

impl fmt::Display for Inspection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let producer = if self.producer.is_empty() { String::new() } else { format!(", from {}", self.producer) };
        writeln!(f, "{}: ONNX, opset {}{producer}", self.file, self.opset)?;
        for input in &self.inputs {
            writeln!(f, "input:  {input}")?;
        }
        for output in &self.outputs {
            writeln!(f, "output: {output}")?;
        }
        let nodes: usize = self.ops.values().sum();
        let counts: Vec<String> = self.ops.iter().map(|(op, n)| format!("{op} {n}")).collect();
        writeln!(f, "{nodes} nodes: {}", counts.join(", "))?;
        writeln!(f, "{} initializers, {} parameters", self.initializers, self.parameters)?;
        if self.unsupported.is_empty() {
            writeln!(f, "every op type is one the importer runs")?;
        } else {
            for (node, op) in &self.unsupported {
                writeln!(f, "unsupported: node {node:?} is the op {op}")?;
            }
        }
        Ok(())
    }
}
