//! Keras model JSON (`model.to_json()`, Keras 3 and tf.keras 2) → [`ModelSpec`].
//!
//! Accepted: a `Sequential` model, or a `Functional`/`Model` whose layers form one chain
//! from its single input to its single output. Weights are looked up as
//! `{layer name}/{variable}` (Keras 3 `Variable.path`): `conv2d/kernel` (HWIO),
//! `conv2d/bias`, `dense/kernel` (`[in, out]`), `dense/bias`. Keras layouts are our
//! layouts, so nothing is transposed here.

use serde_json::Value;

use super::weights::Weights;
use super::{Layer, LayerKind, ModelSpec};
use crate::error::{Error, Result};
use crate::ops::{Activation, Cell, Conv2dConfig, DirectionWeights, Padding, Pool2dConfig, PoolKind, RecurrentConfig};

/// Layer classes this loader runs, for error messages.
pub const SUPPORTED_LAYERS: &str = "InputLayer, Conv2D, MaxPooling2D, AveragePooling2D, GlobalAveragePooling2D, \
                                    Flatten, Dense, Activation, ReLU, Dropout, Masking, LSTM, GRU, Bidirectional, \
                                    MultiHeadAttention, LayerNormalization, Add, GlobalAveragePooling1D, Embedding";

/// Every class name `layer_kind` accepts (the classes above plus Keras' aliases), for
/// `siamese inspect`. Keep in step with `layer_kind`'s match.
pub(crate) const LAYER_CLASSES: &[&str] = &[
    "InputLayer",
    "Conv2D",
    "Convolution2D",
    "MaxPooling2D",
    "MaxPool2D",
    "AveragePooling2D",
    "AvgPool2D",
    "GlobalAveragePooling2D",
    "GlobalAvgPool2D",
    "Flatten",
    "Dense",
    "Activation",
    "ReLU",
    "Dropout",
    "SpatialDropout2D",
    "GaussianDropout",
    "GaussianNoise",
    "AlphaDropout",
    "Masking",
    "LSTM",
    "GRU",
    "Bidirectional",
    "MultiHeadAttention",
    "LayerNormalization",
    "Add",
    "GlobalAveragePooling1D",
    "GlobalAvgPool1D",
    "Embedding",
];

/// Layer classes that pass their input through unchanged at inference (noise and dropout).
pub(crate) const IDENTITY_AT_INFERENCE: [&str; 5] =
    ["Dropout", "SpatialDropout2D", "GaussianDropout", "GaussianNoise", "AlphaDropout"];

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
        let kind = layer_kind(entry, &shapes[inputs[0]], &mut weights, file)?;
        if matches!(kind, LayerKind::Embedding { .. }) && inputs != [0] {
            return Err(Error::UnsupportedConfig {
                layer: entry.name.clone(),
                key: "input".into(),
                value: format!("{parents:?}"),
                hint: " (an Embedding must read the model's input: integer token ids)".into(),
            });
        }
        let shape = kind.output_shape(&shapes[inputs[0]]).map_err(|e| match e {
            Error::ShapeMismatch { op, expected, got } => {
                Error::ShapeMismatch { op: format!("layer {:?} ({op})", entry.name), expected, got }
            }
            other => other,
        })?;
        shapes.push(shape);
        layers.push(Layer { name: entry.name.clone(), kind, inputs });
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

fn unsupported(entry: &Entry, key: &str, value: &Value, hint: &str) -> Error {
    Error::UnsupportedConfig {
        layer: entry.name.clone(),
        key: key.to_string(),
        value: value.to_string(),
        hint: if hint.is_empty() { String::new() } else { format!(" ({hint})") },
    }
}

/// Reads an int-or-pair setting (`kernel_size: 3` or `[3, 3]`).
fn pair(entry: &Entry, key: &str, default: Option<(usize, usize)>) -> Result<(usize, usize)> {
    let value = entry.config.get(key).unwrap_or(&Value::Null);
    let parsed = match value {
        Value::Number(n) => n.as_u64().map(|v| (v as usize, v as usize)),
        Value::Array(items) if items.len() == 2 => {
            items[0].as_u64().zip(items[1].as_u64()).map(|(a, b)| (a as usize, b as usize))
        }
        Value::Null => default,
        _ => None,
    };
    let in_range = |v: usize| v > 0 && v as u64 <= MAX_SETTING;
    match parsed {
        Some((a, b)) if in_range(a) && in_range(b) => Ok((a, b)),
        _ => Err(unsupported(entry, key, value, "expected a positive int or a pair of them, at most 2^31 - 1")),
    }
}

fn padding(entry: &Entry) -> Result<Padding> {
    let value = entry.config.get("padding").unwrap_or(&Value::Null);
    match value.as_str().map(str::to_ascii_lowercase).as_deref() {
        Some("valid") | None => Ok(Padding::Valid),
        Some("same") => Ok(Padding::Same),
        _ => Err(unsupported(entry, "padding", value, "valid or same")),
    }
}

fn channels_last(entry: &Entry) -> Result<()> {
    match entry.config.get("data_format") {
        None | Some(Value::Null) => Ok(()),
        Some(Value::String(s)) if s == "channels_last" => Ok(()),
        Some(other) => Err(unsupported(entry, "data_format", other, "only channels_last is supported")),
    }
}

/// Keras serialises an activation as a name, or (Keras 3, custom objects) an object.
fn activation(entry: &Entry, key: &str) -> Result<Activation> {
    let value = entry.config.get(key).unwrap_or(&Value::Null);
    let name = match value {
        Value::Null => Some("linear"),
        Value::String(s) => Some(s.as_str()),
        Value::Object(map) => {
            map.get("config").and_then(Value::as_str).or_else(|| map.get("class_name").and_then(Value::as_str))
        }
        _ => None,
    };
    let parsed = match name {
        Some("hard_sigmoid") if entry.keras2 => Some(Activation::HardSigmoidKeras2),
        other => other.and_then(Activation::from_keras),
    };
    parsed.ok_or_else(|| {
        unsupported(entry, key, value, "supported: linear, relu, sigmoid, tanh, gelu, silu/swish, elu, softplus, selu")
    })
}

/// A required positive integer setting (`units`, `filters`).
fn positive(entry: &Entry, key: &str) -> Result<usize> {
    let value = entry.config.get(key).unwrap_or(&Value::Null);
    value
        .as_u64()
        .filter(|&v| v > 0 && v <= MAX_SETTING)
        .map(|v| v as usize)
        .ok_or_else(|| unsupported(entry, key, value, "a positive integer, at most 2^31 - 1"))
}

fn flag(entry: &Entry, key: &str, default: bool) -> bool {
    entry.config.get(key).and_then(Value::as_bool).unwrap_or(default)
}

fn layer_kind(entry: &Entry, input: &[usize], weights: &mut Weights, file: &str) -> Result<LayerKind> {
    let channels = input.last().copied().unwrap_or(0);
    Ok(match entry.class {
        "Conv2D" | "Convolution2D" => {
            channels_last(entry)?;
            if let Some(groups) = entry.config.get("groups").filter(|g| g.as_u64() != Some(1)) {
                return Err(unsupported(entry, "groups", groups, "only groups=1"));
            }
            let filters = positive(entry, "filters")?;
            let config = Conv2dConfig {
                in_channels: channels,
                filters,
                kernel: pair(entry, "kernel_size", None)?,
                strides: pair(entry, "strides", Some((1, 1)))?,
                dilation: pair(entry, "dilation_rate", Some((1, 1)))?,
                padding: padding(entry)?,
                activation: activation(entry, "activation")?,
            };
            if input.len() != 4 {
                return Err(Error::shape(
                    format!("layer {:?} (Conv2D input)", entry.name),
                    "[batch, h, w, c]",
                    format!("{input:?}"),
                ));
            }
            let kernel = weights.take(&entry.name, "kernel", &[config.kernel.0, config.kernel.1, channels, filters])?;
            let bias =
                if flag(entry, "use_bias", true) { Some(weights.take(&entry.name, "bias", &[filters])?) } else { None };
            LayerKind::Conv2d { config, kernel, bias }
        }
        "Dense" => {
            let units = positive(entry, "units")?;
            let activation = activation(entry, "activation")?;
            let kernel = weights.take(&entry.name, "kernel", &[channels, units])?;
            let bias =
                if flag(entry, "use_bias", true) { Some(weights.take(&entry.name, "bias", &[units])?) } else { None };
            LayerKind::Dense { in_features: channels, out_features: units, kernel, bias, activation }
        }
        "MaxPooling2D" | "MaxPool2D" | "AveragePooling2D" | "AvgPool2D" => {
            channels_last(entry)?;
            let pool = pair(entry, "pool_size", Some((2, 2)))?;
            let kind = if entry.class.starts_with("Max") { PoolKind::Max } else { PoolKind::Average };
            LayerKind::Pool2d(Pool2dConfig {
                kind,
                pool,
                strides: pair(entry, "strides", Some(pool))?,
                padding: padding(entry)?,
            })
        }
        "GlobalAveragePooling2D" | "GlobalAvgPool2D" => {
            channels_last(entry)?;
            LayerKind::GlobalAveragePool2d { keepdims: flag(entry, "keepdims", false) }
        }
        "Flatten" => {
            channels_last(entry)?;
            LayerKind::Flatten
        }
        "Activation" => LayerKind::Activation(activation(entry, "activation")?),
        "ReLU" => {
            for (key, default) in [("negative_slope", 0.0), ("threshold", 0.0)] {
                if let Some(v) = entry.config.get(key).filter(|v| v.as_f64().unwrap_or(default) != default) {
                    return Err(unsupported(entry, key, v, "only the plain ReLU"));
                }
            }
            if let Some(v) = entry.config.get("max_value").filter(|v| !v.is_null()) {
                return Err(unsupported(entry, "max_value", v, "only the plain ReLU"));
            }
            LayerKind::Activation(Activation::Relu)
        }
        class if IDENTITY_AT_INFERENCE.contains(&class) => LayerKind::Identity,
        "Add" => LayerKind::Add,
        "GlobalAveragePooling1D" | "GlobalAvgPool1D" => {
            channels_last(entry)?;
            if flag(entry, "keepdims", false) {
                return Err(unsupported(entry, "keepdims", &Value::Bool(true), "only keepdims=False"));
            }
            LayerKind::GlobalAveragePool1d
        }
        "LayerNormalization" => {
            let axis = entry.config.get("axis").unwrap_or(&Value::Null);
            let last = match axis {
                Value::Number(n) => n.as_i64() == Some(-1) || n.as_u64() == Some(input.len() as u64 - 1),
                Value::Array(items) if items.len() == 1 => {
                    items[0].as_i64() == Some(-1) || items[0].as_u64() == Some(input.len() as u64 - 1)
                }
                _ => false,
            };
            if !last {
                return Err(unsupported(entry, "axis", axis, "only the last axis"));
            }
            if flag(entry, "rms_scaling", false) {
                return Err(unsupported(entry, "rms_scaling", &Value::Bool(true), "plain LayerNormalization only"));
            }
            let eps = entry.config.get("epsilon").and_then(Value::as_f64).unwrap_or(1e-3) as f32;
            let gamma = if flag(entry, "scale", true) {
                weights.take(&entry.name, "gamma", &[channels])?
            } else {
                vec![1.0; channels]
            };
            let beta = if flag(entry, "center", true) {
                weights.take(&entry.name, "beta", &[channels])?
            } else {
                vec![0.0; channels]
            };
            LayerKind::LayerNorm { gamma, beta, eps }
        }
        "MultiHeadAttention" => {
            for key in ["use_causal_mask", "use_gate"] {
                if let Some(v) = entry.config.get(key).filter(|v| v.as_bool() == Some(true)) {
                    return Err(unsupported(entry, key, v, "plain self-attention only"));
                }
            }
            for key in ["output_shape", "sliding_window"] {
                if let Some(v) = entry.config.get(key).filter(|v| !v.is_null()) {
                    return Err(unsupported(entry, key, v, "plain self-attention only"));
                }
            }
            if let Some(v) = entry
                .config
                .get("attention_axes")
                .filter(|v| !v.is_null() && v.as_array().is_none_or(|a| a.len() != 1 || a[0].as_i64() != Some(1)))
            {
                return Err(unsupported(entry, "attention_axes", v, "attention over the time axis only"));
            }
            if input.len() != 3 {
                return Err(Error::shape(
                    format!("layer {:?} (MultiHeadAttention input)", entry.name),
                    "[batch, steps, features]",
                    format!("{input:?}"),
                ));
            }
            let heads = positive(entry, "num_heads")?;
            let key_dim = positive(entry, "key_dim")?;
            if let Some(v) =
                entry.config.get("value_dim").filter(|v| !v.is_null() && v.as_u64() != Some(key_dim as u64))
            {
                return Err(unsupported(entry, "value_dim", v, "value_dim equal to key_dim"));
            }
            let width = heads * key_dim;
            let use_bias = flag(entry, "use_bias", true);
            let mut projection = |part: &str| -> Result<(Vec<f32>, Vec<f32>)> {
                let path = format!("{}/{part}", entry.name);
                let kernel = weights.take(&path, "kernel", &[channels, heads, key_dim])?;
                let bias = if use_bias { weights.take(&path, "bias", &[heads, key_dim])? } else { vec![0.0; width] };
                Ok((kernel, bias))
            };
            let (q, qb) = projection("query")?;
            let (k, kb) = projection("key")?;
            let (v, vb) = projection("value")?;
            let path = format!("{}/attention_output", entry.name);
            let output_kernel = weights.take(&path, "kernel", &[heads, key_dim, channels])?;
            let output_bias = if use_bias { weights.take(&path, "bias", &[channels])? } else { vec![0.0; channels] };
            LayerKind::MultiHeadAttention {
                heads,
                key_dim,
                weights: crate::ops::MultiHeadAttentionWeights {
                    kernels: [q, k, v],
                    biases: [qb, kb, vb],
                    output_kernel,
                    output_bias,
                },
            }
        }
        "Embedding" => {
            if input.len() != 2 {
                return Err(Error::shape(
                    format!("layer {:?} (Embedding input: token ids)", entry.name),
                    "[batch, steps]",
                    format!("{input:?}"),
                ));
            }
            if let Some(v) = entry.config.get("mask_zero").filter(|v| v.as_bool() == Some(true)) {
                return Err(unsupported(entry, "mask_zero", v, "padding masks from an Embedding are not supported"));
            }
            if let Some(v) = entry.config.get("lora_rank").filter(|v| !v.is_null()) {
                return Err(unsupported(entry, "lora_rank", v, "merge the LoRA weights before export"));
            }
            let vocab = positive(entry, "input_dim")?;
            let dim = positive(entry, "output_dim")?;
            let table = weights.take(&entry.name, "embeddings", &[vocab, dim])?;
            LayerKind::Embedding { vocab, dim, table }
        }
        "Masking" => LayerKind::Masking {
            mask_value: entry.config.get("mask_value").and_then(Value::as_f64).unwrap_or(0.0) as f32,
        },
        "LSTM" | "GRU" => {
            let (config, weights) = recurrent_layer(entry, &entry.name, channels, weights)?;
            LayerKind::Recurrent { config, weights: vec![weights] }
        }
        "Bidirectional" => {
            let merge = entry.config.get("merge_mode").unwrap_or(&Value::Null);
            if merge.as_str() != Some("concat") {
                return Err(unsupported(entry, "merge_mode", merge, "only concat"));
            }
            let inner = |key: &str| -> Result<Entry> {
                let value = entry.config.get(key).ok_or_else(|| Error::ModelFormat {
                    file: file.to_string(),
                    reason: format!("Bidirectional layer {:?} has no {key:?}", entry.name),
                })?;
                self::entry(value, file).map(|e| Entry { keras2: entry.keras2, ..e })
            };
            let forward = inner("layer")?;
            // Keras writes backward_layer (go_backwards=True); without it the backward layer
            // is a copy of the forward one named "backward_" + its name.
            let backward = match entry.config.get("backward_layer") {
                Some(v) if !v.is_null() => Entry { keras2: entry.keras2, ..self::entry(v, file)? },
                _ => Entry {
                    name: format!("backward_{}", forward.name.trim_start_matches("forward_")),
                    ..inner("layer")?
                },
            };
            if forward.class != backward.class || !["LSTM", "GRU"].contains(&forward.class) {
                return Err(unsupported(
                    entry,
                    "layer",
                    &Value::String(forward.class.to_string()),
                    "LSTM or GRU in both directions",
                ));
            }
            let forward_path = format!("{}/{}", entry.name, forward.name);
            let backward_path = format!("{}/{}", entry.name, backward.name);
            let forward_backwards = flag(&forward, "go_backwards", false);
            let backward_backwards = flag(&backward, "go_backwards", true);
            if forward_backwards || !backward_backwards {
                return Err(unsupported(
                    entry,
                    "go_backwards",
                    &Value::Bool(forward_backwards),
                    "forward layer forward, backward layer backward",
                ));
            }
            let (mut config, forward_weights) = recurrent_layer_inner(&forward, &forward_path, channels, weights)?;
            let (backward_config, backward_weights) =
                recurrent_layer_inner(&backward, &backward_path, channels, weights)?;
            if backward_config != config {
                return Err(unsupported(
                    entry,
                    "backward_layer",
                    &Value::String("different settings".into()),
                    "both directions configured alike",
                ));
            }
            config.directions = 2;
            LayerKind::Recurrent { config, weights: vec![forward_weights, backward_weights] }
        }
        other => {
            return Err(Error::UnsupportedLayer {
                file: file.to_string(),
                layer: entry.name.clone(),
                class: other.to_string(),
                supported: SUPPORTED_LAYERS,
            })
        }
    })
}

/// A top-level LSTM/GRU layer (not wrapped): rejects go_backwards, which only makes sense
/// inside Bidirectional here.
fn recurrent_layer(
    entry: &Entry,
    path: &str,
    input: usize,
    weights: &mut Weights,
) -> Result<(RecurrentConfig, DirectionWeights)> {
    if flag(entry, "go_backwards", false) {
        return Err(unsupported(entry, "go_backwards", &Value::Bool(true), "only inside Bidirectional"));
    }
    recurrent_layer_inner(entry, path, input, weights)
}

/// Reads an LSTM/GRU config and its weights (`{path}/{lstm_cell|gru_cell}/{kernel,
/// recurrent_kernel, bias}`) in Keras layouts: kernel `[in, gates·units]`, recurrent kernel
/// `[units, gates·units]`, gate blocks i,f,c,o (LSTM) / z,r,h (GRU); bias `[gates·units]`,
/// or `[2, 3·units]` (input, recurrent) for GRU reset_after=True.
fn recurrent_layer_inner(
    entry: &Entry,
    path: &str,
    input: usize,
    weights: &mut Weights,
) -> Result<(RecurrentConfig, DirectionWeights)> {
    for key in ["stateful", "return_state", "time_major"] {
        if let Some(v) = entry.config.get(key).filter(|v| v.as_bool() == Some(true)) {
            return Err(unsupported(entry, key, v, "not supported for inference here"));
        }
    }
    let units = positive(entry, "units")?;
    let (cell, cell_name) = match entry.class {
        "LSTM" => (Cell::Lstm, "lstm_cell"),
        _ => (Cell::Gru { reset_after: flag(entry, "reset_after", true) }, "gru_cell"),
    };
    let config = RecurrentConfig {
        cell,
        input_size: input,
        units,
        directions: 1,
        activation: activation(entry, "activation")?,
        recurrent_activation: activation(entry, "recurrent_activation")?,
        return_sequences: flag(entry, "return_sequences", false),
    };
    use crate::ops::recurrent::{RECURRENT_CELL_ACTIVATIONS, RECURRENT_GATE_ACTIVATIONS};
    if !RECURRENT_CELL_ACTIVATIONS.contains(&config.activation) {
        return Err(unsupported(
            entry,
            "activation",
            &Value::String(format!("{:?}", config.activation)),
            "tanh, relu, linear or sigmoid",
        ));
    }
    if !RECURRENT_GATE_ACTIVATIONS.contains(&config.recurrent_activation) {
        let value = Value::String(format!("{:?}", config.recurrent_activation));
        return Err(unsupported(entry, "recurrent_activation", &value, "sigmoid or hard_sigmoid"));
    }
    let g = config.gate_width();
    let cell_path = format!("{path}/{cell_name}");
    let kernel = weights.take(&cell_path, "kernel", &[input, g])?;
    let recurrent_kernel = weights.take(&cell_path, "recurrent_kernel", &[units, g])?;
    let (input_bias, recurrent_bias) = if !flag(entry, "use_bias", true) {
        (vec![0.0; g], vec![0.0; g])
    } else if cell == (Cell::Gru { reset_after: true }) {
        let both = weights.take(&cell_path, "bias", &[2, g])?;
        (both[..g].to_vec(), both[g..].to_vec())
    } else {
        (weights.take(&cell_path, "bias", &[g])?, vec![0.0; g])
    };
    Ok((config, DirectionWeights { kernel, recurrent_kernel, input_bias, recurrent_bias }))
}
