//! Keras model JSON (`model.to_json()`, Keras 3 and tf.keras 2) → [`ModelSpec`].
//!
//! Accepted: a `Sequential` model, or a `Functional`/`Model` whose layers form one chain
//! from its single input to its single output. Weights are looked up as
//! `{layer name}/{variable}` (Keras 3 `Variable.path`): `conv2d/kernel` (HWIO),
//! `conv2d/bias`, `dense/kernel` (`[in, out]`), `dense/bias`. Keras layouts are our
//! layouts, so nothing is transposed here.

mod layers;
mod variables;

use serde_json::Value;

use layers::flag;
pub(crate) use layers::{is_supported, keras3_variables, IDENTITY_AT_INFERENCE};

use super::weights::Weights;
use super::{Layer, ModelSpec};
use crate::error::{Error, Result};
use crate::layers::Embedding;

/// Keras 3 operation nodes that a Functional config records for a Masking layer's mask,
/// `any(not_equal(x, mask_value), axis=-1)`, fed to later layers' `mask` argument. The
/// engine computes that mask itself (from the Masking layer), so these nodes are checked
/// to be exactly that and skipped.
pub(crate) const MASK_OP_CLASSES: [&str; 2] = ["NotEqual", "Any"];

/// What [`MASK_OP_CLASSES`] nodes may be, for error messages.
const MASK_OPS_SUPPORTED: &str = "Keras operation nodes only as the NotEqual(x, mask_value) -> Any(axis=-1) pair \
                                  that computes the mask of a Masking layer reading the same x, used only as a \
                                  layer's mask argument";

/// The most values one input sample may declare (256 MiB of f32, more than one default
/// wgpu storage binding holds).
const MAX_INPUT_VALUES: usize = 1 << 26;

/// The largest size setting (units, filters, kernel sizes, strides, dilations...) accepted:
/// they reach the GPU as u32, and products of two of them must not overflow.
const MAX_SETTING: u64 = i32::MAX as u64;

/// One layer entry: class, name and config object.
struct Entry<'a> {
    class: &'a str,
    name: String,
    config: &'a Value,
    /// Written by Keras 2 (tf.keras): some names mean other functions (hard_sigmoid).
    keras2: bool,
}

/// Builds a [`ModelSpec`] from Keras JSON text and its weights; every weight must be used.
pub fn from_json(json: &str, file: &str, weights: Weights) -> Result<ModelSpec> {
    let root: Value = serde_json::from_str(json)
        .map_err(|e| Error::ModelFormat { file: file.to_string(), reason: format!("not valid JSON: {e}") })?;
    from_value(&root, file, weights)
}

/// [`from_json`] for an already-parsed model config (`{"class_name", "config"}`, plus
/// `keras_version` for tf.keras 2): the `.keras` / `.h5` loader hands in a nested encoder's
/// config this way.
pub(crate) fn from_value(root: &Value, file: &str, mut weights: Weights) -> Result<ModelSpec> {
    let format_error = |reason: String| Error::ModelFormat { file: file.to_string(), reason };
    let class = root.get("class_name").and_then(Value::as_str).ok_or_else(|| {
        format_error("no \"class_name\" at the top level: expected the output of Keras' model.to_json()".into())
    })?;
    let config = root.get("config").ok_or_else(|| format_error("no \"config\" at the top level".into()))?;
    let name = config.get("name").and_then(Value::as_str).unwrap_or("model").to_string();
    let entries: Vec<(Entry, Vec<String>)> = match class {
        "Sequential" => {
            // A chain: each layer reads the one before it (the first reads the input).
            let entries = sequential_entries(config, file)?;
            let names: Vec<String> = entries.iter().map(|e| e.name.clone()).collect();
            entries
                .into_iter()
                .enumerate()
                .map(|(i, e)| (e, i.checked_sub(1).map(|p| names[p].clone()).into_iter().collect()))
                .collect()
        }
        "Functional" | "Model" => functional_graph(config, file)?,
        other => {
            return Err(format_error(format!(
                "top-level class {other} is not a model: expected Sequential or Functional"
            )))
        }
    };

    // tf.keras 2 writes its version at the top level; Keras 3 does not.
    let keras2 = root.get("keras_version").and_then(Value::as_str).is_some_and(|v| v.starts_with("2."));
    let mut entries = entries;
    for (entry, _) in &mut entries {
        entry.keras2 = keras2;
    }
    let mut input_shape = sequential_input_shape(config);
    let mut rest = entries.as_slice();
    let mut input_name = None;
    if let Some((first, _)) = rest.first().filter(|(e, _)| e.class == "InputLayer") {
        input_shape = batch_shape(first.config);
        input_name = Some(first.name.clone());
        rest = &rest[1..];
    }
    let input_shape = input_shape.ok_or_else(|| {
        format_error(
            "cannot find the input shape: add an Input / InputLayer, or build the model before to_json()".into(),
        )
    })?;
    // Errors show the shape as the file writes it: `[None, -28, 28, 1]`.
    let written = shape_as_written(&input_shape);
    // Each sample dimension: None (variable) or a positive size.
    let size = |d: &Value| d.as_u64().and_then(|n| usize::try_from(n).ok()).filter(|&n| n > 0);
    let sample = input_shape
        .iter()
        .skip(1)
        .map(|d| match d {
            Value::Null => Ok(None),
            d => size(d)
                .map(Some)
                .ok_or_else(|| format_error(format!("input shape {written}: dimension {d} is not a positive size"))),
        })
        .collect::<Result<Vec<Option<usize>>>>()?;
    // A variable (None) axis is allowed only as the time axis of sequences [steps, features];
    // it is stored as 0. Token ids [steps] feeding an Embedding may have a variable length too.
    let reads_tokens = rest.iter().any(|(e, _)| e.class == "Embedding");
    let variable_time = (sample.len() == 2 && sample[0].is_none() && sample[1].is_some())
        || (sample.len() == 1 && sample[0].is_none() && reads_tokens);
    let input_shape = sample
        .iter()
        .enumerate()
        .map(|(axis, d)| match d {
            Some(d) => Some(*d),
            None if axis == 0 && variable_time => Some(0),
            None => None,
        })
        .collect::<Option<Vec<usize>>>()
        .ok_or_else(|| {
            format_error(format!(
                "input shape {written} has a variable (None) dimension other than the time axis of \
                 [steps, features] sequences"
            ))
        })?;
    // Layers without weights (LayerNormalization without scale/center) allocate per input
    // feature, and shapes are multiplied unchecked downstream: bound what the JSON declares.
    if input_shape.iter().try_fold(1usize, |n, &d| n.checked_mul(d.max(1))).is_none_or(|n| n > MAX_INPUT_VALUES) {
        return Err(format_error(format!(
            "input shape {written} has more than {MAX_INPUT_VALUES} values per sample (2^26: 256 MiB of float32)"
        )));
    }

    let names: Vec<&str> = rest.iter().map(|(e, _)| e.name.as_str()).collect();
    weights.detect_prefix(&names);
    let mut layers = Vec::new();
    // Value 0 is the input, value i + 1 the output of layer i. A Sequential's first layer
    // has no parent name: it reads the input.
    let value_of = |parent: &str| -> Option<usize> {
        if Some(parent) == input_name.as_deref() {
            Some(0)
        } else {
            names.iter().position(|n| *n == parent).map(|i| i + 1)
        }
    };
    // Shapes are checked for sequences of 1 step (weights don't depend on the length).
    let mut shapes: Vec<Vec<usize>> = vec![std::iter::once(1).chain(input_shape.iter().map(|&d| d.max(1))).collect()];
    for (index, (entry, parents)) in rest.iter().enumerate() {
        let inputs: Vec<usize> = if parents.is_empty() {
            vec![index]
        } else {
            parents
                .iter()
                .map(|p| {
                    value_of(p).ok_or_else(|| Error::ModelFormat {
                        file: file.to_string(),
                        reason: format!("layer {:?} reads unknown layer {p:?}", entry.name),
                    })
                })
                .collect::<Result<_>>()?
        };
        if entry.class == "InputLayer" {
            return Err(format_error(match input_name.as_deref() {
                Some(input) if class != "Sequential" => format!(
                    "InputLayer {:?} is not the model's input {input:?}: an encoder has exactly one input",
                    entry.name
                ),
                _ => format!("InputLayer {:?} may only be the first layer of a Sequential model", entry.name),
            }));
        }
        let mut ctx = layers::Context { entry, input: &shapes[inputs[0]], weights: &mut weights, file };
        let op = layers::build(&mut ctx)?;
        if (*op).as_any().is::<Embedding>() && inputs != [0] {
            return Err(Error::UnsupportedConfig {
                layer: entry.name.clone(),
                key: "input".into(),
                value: format!("{parents:?}"),
                hint: " (an Embedding must read the model's input: integer token ids)".into(),
            });
        }
        let input_shapes: Vec<&[usize]> = inputs.iter().map(|&v| shapes[v].as_slice()).collect();
        let shape = op.output_shape(&input_shapes).map_err(|e| match e {
            Error::ShapeMismatch { op, expected, got } => {
                Error::ShapeMismatch { op: format!("layer {:?} ({op})", entry.name), expected, got }
            }
            other => other,
        })?;
        shapes.push(shape);
        layers.push(Layer { name: entry.name.clone(), op, inputs });
    }
    weights.finish()?;
    let spec = ModelSpec { name, input_shape, layers };
    spec.shapes(1)?;
    Ok(spec)
}

fn entry<'a>(layer: &'a Value, file: &str) -> Result<Entry<'a>> {
    let class = layer
        .get("class_name")
        .and_then(Value::as_str)
        .ok_or_else(|| Error::ModelFormat { file: file.to_string(), reason: "a layer has no \"class_name\"".into() })?;
    let config = layer.get("config").unwrap_or(&Value::Null);
    let name = config.get("name").or_else(|| layer.get("name")).and_then(Value::as_str).unwrap_or(class).to_string();
    Ok(Entry { class, name, config, keras2: false })
}

fn layer_list<'a>(config: &'a Value, file: &str) -> Result<&'a Vec<Value>> {
    config.get("layers").and_then(Value::as_array).ok_or_else(|| Error::ModelFormat {
        file: file.to_string(),
        reason: "model config has no \"layers\" list".into(),
    })
}

fn sequential_entries<'a>(config: &'a Value, file: &str) -> Result<Vec<Entry<'a>>> {
    layer_list(config, file)?.iter().map(|l| entry(l, file)).collect()
}

/// The layer names of a Functional model config's `input_layers` / `output_layers` (`key`).
/// Keras 3 writes `["name", 0, 0]` for one and `[["name", 0, 0], ...]` for several; Keras 2
/// always nests.
pub(crate) fn endpoints(config: &Value, key: &str) -> Vec<String> {
    let list = config.get(key).and_then(Value::as_array).cloned().unwrap_or_default();
    if list.first().is_some_and(Value::is_string) {
        list.first().and_then(Value::as_str).map(str::to_string).into_iter().collect()
    } else {
        list.iter().filter_map(|item| item.get(0).and_then(Value::as_str).map(str::to_string)).collect()
    }
}

/// A Functional model's layers in the order Keras writes them (topological), each with
/// the names of the layers it reads. Checks: one input and one output (the last layer),
/// every input written earlier, every layer used, several inputs only for Add (two) and
/// self-attention MultiHeadAttention (query = value = key).
fn functional_graph<'a>(config: &'a Value, file: &str) -> Result<Vec<(Entry<'a>, Vec<String>)>> {
    let format_error = |reason: String| Error::ModelFormat { file: file.to_string(), reason };
    let (inputs, outputs) = (endpoints(config, "input_layers"), endpoints(config, "output_layers"));
    let (Some(input), Some(output), 1, 1) = (inputs.first(), outputs.first(), inputs.len(), outputs.len()) else {
        return Err(format_error(format!(
            "the encoder must have exactly one input and one output, found inputs {inputs:?} and outputs {outputs:?} \
             (for a whole Siamese model, export only its shared encoder)"
        )));
    };
    let mut graph: Vec<(Entry, Vec<String>)> = Vec::new();
    let mut mask_ops: Vec<(&Value, Entry, Vec<String>)> = Vec::new();
    let mut used = std::collections::HashSet::new();
    for layer in layer_list(config, file)? {
        let e = entry(layer, file)?;
        let layer_name = layer.get("name").and_then(Value::as_str).unwrap_or(&e.name).to_string();
        let mut parents = inbound_layers(layer.get("inbound_nodes").unwrap_or(&Value::Null));
        if MASK_OP_CLASSES.contains(&e.class) {
            mask_ops.push((layer, Entry { name: layer_name, ..e }, parents));
            continue;
        }
        if let Some((_, op, _)) = mask_ops.iter().find(|(_, op, _)| parents.contains(&op.name)) {
            // A mask op's value used as data, not as a mask: something else than Masking's mask.
            return Err(mask_op_error(file, op));
        }
        if e.class == "MultiHeadAttention" && parents.iter().all(|p| Some(p) == parents.first()) {
            parents.truncate(1);
        }
        let allowed = match e.class {
            "InputLayer" => 0,
            "Add" => 2,
            _ => 1,
        };
        if parents.len() != allowed {
            return Err(format_error(format!(
                "layer {layer_name:?} ({}) takes {} inputs ({}): only Add takes two, and MultiHeadAttention \
                 only self-attention (query = value = key); other branching is not supported",
                e.class,
                parents.len(),
                parents.join(", ")
            )));
        }
        if let Some(missing) = parents.iter().find(|p| !graph.iter().any(|(g, _)| &g.name == *p)) {
            return Err(format_error(format!(
                "layer {layer_name:?} reads {missing:?}, which comes later or does not exist"
            )));
        }
        used.extend(parents.iter().cloned());
        graph.push((Entry { name: layer_name, ..e }, parents));
    }
    check_mask_ops(&mask_ops, &graph, file)?;
    if graph.first().map(|(e, _)| &e.name) != Some(input) || graph.last().map(|(e, _)| &e.name) != Some(output) {
        return Err(format_error(format!(
            "expected the input {input:?} first and the output {output:?} last in the layer list"
        )));
    }
    if let Some((unused, _)) = graph.iter().rev().skip(1).find(|(e, _)| !used.contains(&e.name)) {
        return Err(format_error(format!("layer {:?} is not on the path from input to output", unused.name)));
    }
    Ok(graph)
}

/// Checks that the [`MASK_OP_CLASSES`] nodes of a Functional config compute exactly a
/// Masking layer's mask: NotEqual(x, v) with a Masking(mask_value = v) reading the same x,
/// and Any(axis=-1, keepdims=False) over such a NotEqual. Anything else is an error naming
/// the node (skipping it would change the numbers).
fn check_mask_ops(ops: &[(&Value, Entry, Vec<String>)], graph: &[(Entry, Vec<String>)], file: &str) -> Result<()> {
    let single_call = |layer: &Value| -> Option<Value> {
        match layer.get("inbound_nodes").and_then(Value::as_array).map(Vec::as_slice) {
            Some([node]) => node.get("args").cloned(),
            _ => None,
        }
    };
    let mask_of = |x: &str, value: f64| {
        graph.iter().any(|(e, parents)| {
            e.class == "Masking"
                && parents == &[x.to_string()]
                && e.config.get("mask_value").and_then(Value::as_f64).unwrap_or(0.0) == value
        })
    };
    let not_equal_ok = |layer: &Value, parents: &[String]| -> bool {
        let value = single_call(layer).and_then(|args| args.get(1).and_then(Value::as_f64));
        match (parents, value) {
            ([x], Some(value)) => mask_of(x, value),
            _ => false,
        }
    };
    for (layer, op, parents) in ops {
        let ok = match op.class {
            "NotEqual" => not_equal_ok(layer, parents),
            _ => {
                let axis = op.config.get("axis").unwrap_or(&Value::Null);
                let last_axis = axis.as_i64() == Some(-1)
                    || axis.as_array().is_some_and(|a| a.len() == 1 && a[0].as_i64() == Some(-1));
                let reads_mask = match parents.as_slice() {
                    [source] => {
                        ops.iter().any(|(l, o, p)| o.name == *source && o.class == "NotEqual" && not_equal_ok(l, p))
                    }
                    _ => false,
                };
                last_axis && !flag(op, "keepdims", false) && reads_mask && single_call(layer).is_some()
            }
        };
        if !ok {
            return Err(mask_op_error(file, op));
        }
    }
    Ok(())
}

fn mask_op_error(file: &str, op: &Entry) -> Error {
    Error::UnsupportedLayer {
        file: file.to_string(),
        layer: op.name.clone(),
        class: op.class.to_string(),
        supported: MASK_OPS_SUPPORTED,
    }
}

/// Names of the layers feeding a Functional layer, in Keras 3 or Keras 2 node format.
fn inbound_layers(nodes: &Value) -> Vec<String> {
    let mut parents = Vec::new();
    fn collect(value: &Value, parents: &mut Vec<String>) {
        match value {
            Value::Object(map) => {
                if let Some(history) = map.get("keras_history").and_then(Value::as_array) {
                    if let Some(name) = history.first().and_then(Value::as_str) {
                        parents.push(name.to_string());
                    }
                    return;
                }
                if let Some(config) = map.get("config") {
                    collect(config, parents);
                }
                if let Some(args) = map.get("args") {
                    collect(args, parents);
                }
            }
            // Keras 2: ["layer_name", node_index, tensor_index, {kwargs}].
            Value::Array(items) if items.first().is_some_and(Value::is_string) && items.len() >= 3 => {
                if let Some(name) = items[0].as_str() {
                    parents.push(name.to_string());
                }
            }
            Value::Array(items) => items.iter().for_each(|i| collect(i, parents)),
            _ => {}
        }
    }
    collect(nodes, &mut parents);
    parents
}

/// An InputLayer's `batch_shape` (Keras 3) / `batch_input_shape` (Keras 2), as written.
fn batch_shape(config: &Value) -> Option<Vec<Value>> {
    config.get("batch_shape").or_else(|| config.get("batch_input_shape"))?.as_array().cloned()
}

/// A Sequential's `build_input_shape` (or its first layer's build shape), as written.
fn sequential_input_shape(config: &Value) -> Option<Vec<Value>> {
    config
        .get("build_input_shape")
        .or_else(|| config.get("layers")?.get(0)?.get("build_config")?.get("input_shape"))?
        .as_array()
        .cloned()
}

/// A shape as Keras users write it: `[None, -28, 28, 1]` (null is None).
fn shape_as_written(dims: &[Value]) -> String {
    let dims: Vec<String> = dims.iter().map(|d| if d.is_null() { "None".to_string() } else { d.to_string() }).collect();
    format!("[{}]", dims.join(", "))
}
