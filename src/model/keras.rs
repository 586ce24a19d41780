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
                                    Flatten, Dense, Activation, ReLU, Dropout, Masking, LSTM, GRU, Bidirectional";

/// One layer entry: class, name and config object.
struct Entry<'a> {
    class: &'a str,
    name: String,
    config: &'a Value,
    /// Written by Keras 2 (tf.keras): some names mean other functions (hard_sigmoid).
    keras2: bool,
}

/// Builds a [`ModelSpec`] from Keras JSON text and its weights; every weight must be used.
pub fn from_json(json: &str, file: &str, mut weights: Weights) -> Result<ModelSpec> {
    let root: Value = serde_json::from_str(json)
        .map_err(|e| Error::ModelFormat { file: file.to_string(), reason: format!("not valid JSON: {e}") })?;
    let format_error = |reason: String| Error::ModelFormat { file: file.to_string(), reason };
    let class = root.get("class_name").and_then(Value::as_str).ok_or_else(|| {
        format_error("no \"class_name\" at the top level: expected the output of Keras' model.to_json()".into())
    })?;
    let config = root.get("config").ok_or_else(|| format_error("no \"config\" at the top level".into()))?;
    let name = config.get("name").and_then(Value::as_str).unwrap_or("model").to_string();
    let entries = match class {
        "Sequential" => sequential_entries(config, file)?,
        "Functional" | "Model" => functional_chain(config, file)?,
        other => {
            return Err(format_error(format!(
                "top-level class {other} is not a model: expected Sequential or Functional"
            )))
        }
    };

    // tf.keras 2 writes its version at the top level; Keras 3 does not.
    let keras2 = root.get("keras_version").and_then(Value::as_str).is_some_and(|v| v.starts_with("2."));
    let mut entries = entries;
    for entry in &mut entries {
        entry.keras2 = keras2;
    }
    let mut input_shape = sequential_input_shape(config);
    let mut rest = entries.as_slice();
    if let Some(first) = rest.first().filter(|e| e.class == "InputLayer") {
        input_shape = batch_shape(first.config);
        rest = &rest[1..];
    }
    let input_shape = input_shape.ok_or_else(|| {
        format_error(
            "cannot find the input shape: add an Input / InputLayer, or build the model before to_json()".into(),
        )
    })?;
    // A variable (None) axis is allowed only as the time axis of sequences [steps, features];
    // it is stored as 0.
    let sample: Vec<Option<usize>> = input_shape.into_iter().skip(1).collect();
    let variable_time = sample.len() == 2 && sample[0].is_none() && sample[1].is_some_and(|f| f > 0);
    let input_shape = sample
        .iter()
        .enumerate()
        .map(|(axis, d)| match d {
            Some(d) if *d > 0 => Some(*d),
            None if axis == 0 && variable_time => Some(0),
            _ => None,
        })
        .collect::<Option<Vec<usize>>>()
        .ok_or_else(|| {
            format_error(format!(
                "input shape {sample:?} has a variable (None) dimension other than the time axis of \
                 [steps, features] sequences"
            ))
        })?;

    let names: Vec<&str> = rest.iter().map(|e| e.name.as_str()).collect();
    weights.detect_prefix(&names);
    let mut layers = Vec::new();
    // Shapes are checked for sequences of 1 step (weights don't depend on the length).
    let mut shape: Vec<usize> = std::iter::once(1).chain(input_shape.iter().map(|&d| d.max(1))).collect();
    for entry in rest {
        let kind = layer_kind(entry, &shape, &mut weights, file)?;
        shape = kind.output_shape(&shape).map_err(|e| match e {
            Error::ShapeMismatch { op, expected, got } => {
                Error::ShapeMismatch { op: format!("layer {:?} ({op})", entry.name), expected, got }
            }
            other => other,
        })?;
        layers.push(Layer { name: entry.name.clone(), kind });
    }
    weights.finish()?;
    Ok(ModelSpec { name, input_shape, layers })
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

/// Orders a Functional model's layers from input to output, checking they form a chain.
fn functional_chain<'a>(config: &'a Value, file: &str) -> Result<Vec<Entry<'a>>> {
    let format_error = |reason: String| Error::ModelFormat { file: file.to_string(), reason };
    let layers = layer_list(config, file)?;
    let mut by_name = std::collections::HashMap::new();
    let mut next_of = std::collections::HashMap::<String, Vec<String>>::new();
    for layer in layers {
        let e = entry(layer, file)?;
        let layer_name = layer.get("name").and_then(Value::as_str).unwrap_or(&e.name).to_string();
        let parents = inbound_layers(layer.get("inbound_nodes").unwrap_or(&Value::Null));
        if parents.len() > 1 {
            return Err(format_error(format!(
                "layer {layer_name:?} ({}) takes {} inputs ({}): only single-chain encoders are supported",
                e.class,
                parents.len(),
                parents.join(", ")
            )));
        }
        if let Some(parent) = parents.into_iter().next() {
            next_of.entry(parent).or_default().push(layer_name.clone());
        }
        by_name.insert(layer_name, e);
    }
    let endpoint = |key: &str| -> Result<Vec<String>> {
        let list = config.get(key).and_then(Value::as_array).cloned().unwrap_or_default();
        // Keras 3: [["name", 0, 0]] (or ["name", 0, 0] for one); Keras 2: [["name", 0, 0]].
        let names: Vec<String> = if list.first().is_some_and(Value::is_string) {
            list.first().and_then(Value::as_str).map(str::to_string).into_iter().collect()
        } else {
            list.iter().filter_map(|item| item.get(0).and_then(Value::as_str).map(str::to_string)).collect()
        };
        Ok(names)
    };
    let inputs = endpoint("input_layers")?;
    let outputs = endpoint("output_layers")?;
    let (Some(input), Some(output), 1, 1) = (inputs.first(), outputs.first(), inputs.len(), outputs.len()) else {
        return Err(format_error(format!(
            "the encoder must have exactly one input and one output, found inputs {inputs:?} and outputs {outputs:?} \
             (for a whole Siamese model, export only its shared encoder)"
        )));
    };
    let mut order = vec![input.clone()];
    let mut current = input.clone();
    while &current != output {
        let next = next_of.get(&current).cloned().unwrap_or_default();
        match next.as_slice() {
            [one] => {
                order.push(one.clone());
                current = one.clone();
            }
            [] => return Err(format_error(format!("no path from input {input:?} to output {output:?}"))),
            many => {
                return Err(format_error(format!(
                    "layer {current:?} feeds several layers ({}): only single-chain encoders are supported",
                    many.join(", ")
                )))
            }
        }
    }
    if order.len() != by_name.len() {
        return Err(format_error(format!(
            "{} layers are not on the path from input to output: only single-chain encoders are supported",
            by_name.len() - order.len()
        )));
    }
    Ok(order.into_iter().filter_map(|name| by_name.remove(&name)).collect())
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

fn batch_shape(config: &Value) -> Option<Vec<Option<usize>>> {
    let shape = config.get("batch_shape").or_else(|| config.get("batch_input_shape"))?.as_array()?;
    Some(shape.iter().map(|d| d.as_u64().map(|d| d as usize)).collect())
}

fn sequential_input_shape(config: &Value) -> Option<Vec<Option<usize>>> {
    let shape = config
        .get("build_input_shape")
        .or_else(|| config.get("layers")?.get(0)?.get("build_config")?.get("input_shape"))?
        .as_array()?;
    Some(shape.iter().map(|d| d.as_u64().map(|d| d as usize)).collect())
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
    match parsed {
        Some((a, b)) if a > 0 && b > 0 => Ok((a, b)),
        _ => Err(unsupported(entry, key, value, "expected a positive int or a pair of them")),
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
        .filter(|&v| v > 0)
        .map(|v| v as usize)
        .ok_or_else(|| unsupported(entry, key, value, "a positive integer"))
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
        "Dropout" | "SpatialDropout2D" | "GaussianDropout" | "GaussianNoise" | "AlphaDropout" => LayerKind::Identity,
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
