//! The Keras importer: the one place that knows Keras' names and quirks, for every way a
//! Keras model arrives: a model directory's `model.json` (`model.to_json()`, Keras 3 and
//! tf.keras 2, weights in `model.safetensors`), a Keras 3 `.keras` zip, or a legacy HDF5
//! `.h5` / `.hdf5` file (Keras 3 or tf.keras 2). By file:
//!
//! - `config.rs`: the one config parser (layer entries, the inbound-node walker, a model's
//!   layers with its inputs and outputs), shared by all three sources;
//! - `functional.rs`: a Functional config's layer graph, checked (one input, one output,
//!   supported branching, the mask nodes Keras 3 records for Masking);
//! - `layers.rs`: the class table (class names → builder → `.keras` variable paths, which
//!   `variables.rs` names and tabulates);
//! - `file.rs`: reading `.keras` / `.h5` files (config and HDF5 weights) and loading them;
//! - `twin.rs`: whole Siamese models: the shared encoder and the head after it;
//! - `inspect.rs`: `siamese inspect`'s listing of a file's layers.
//!
//! The file loader's public paths are [`super::keras_file`]'s.
//!
//! Accepted: a `Sequential` model, or a `Functional`/`Model` whose layers form a graph from
//! its single input to its single output (merges read several; MultiHeadAttention runs as
//! self-attention).
//! Weights are looked up as `{layer name}/{variable}` (Keras 3 `Variable.path`):
//! `conv2d/kernel` (HWIO), `conv2d/bias`, `dense/kernel` (`[in, out]`), `dense/bias`.
//! Keras layouts are our layouts, so nothing is transposed here.

mod config;
mod conv;
mod embedding;
pub(super) mod file;
mod functional;
mod head;
pub(super) mod inspect;
mod layers;
pub(super) mod merge;
mod misc;
mod recurrent;
pub(super) mod twin;
mod variables;

use std::collections::HashMap;

use serde_json::Value;

pub(crate) use config::{Entry, ModelView};
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

/// The most values one input sample may declare (256 MiB of f32, more than one default
/// wgpu storage binding holds).
const MAX_INPUT_VALUES: usize = 1 << 26;

/// The largest size setting (units, filters, kernel sizes, strides, dilations...) accepted:
/// they reach the GPU as u32, and products of two of them must not overflow.
const MAX_SETTING: u64 = i32::MAX as u64;

/// Builds a [`ModelSpec`] from Keras JSON text and its weights; every weight must be used.
pub fn from_json(json: &str, file: &str, weights: Weights) -> Result<ModelSpec> {
    let root: Value = serde_json::from_str(json)
        .map_err(|e| Error::ModelFormat { file: file.to_string(), reason: format!("not valid JSON: {e}") })?;
    from_value(&root, file, weights)
}

/// [`from_json`] for an already-parsed model config (`{"class_name", "config"}`, plus
/// `keras_version` for tf.keras 2).
pub(crate) fn from_value(root: &Value, file: &str, weights: Weights) -> Result<ModelSpec> {
    from_model(&ModelView::parse(root, file)?, file, weights)
}

/// Builds a [`ModelSpec`] from a parsed model config and its weights; every weight must be
/// used. The `.keras` / `.h5` loader hands in a whole-file model or a twin's encoder.
pub(crate) fn from_model(model: &ModelView, file: &str, mut weights: Weights) -> Result<ModelSpec> {
    let graph = model_graph(model, file)?;
    let mut input_shape = sequential_input_shape(model.config);
    let mut rest = graph.as_slice();
    let mut input_name = None;
    if let Some((first, _)) = rest.first().filter(|(e, _)| e.class == "InputLayer") {
        input_shape = config::batch_shape(first.config);
        input_name = Some(first.name.as_str());
        rest = &rest[1..];
    }
    let input_shape = input_shape.ok_or_else(|| Error::ModelFormat {
        file: file.to_string(),
        reason: "cannot find the input shape: add an Input / InputLayer, or build the model before to_json()".into(),
    })?;
    let reads_tokens = rest.iter().any(|(e, _)| e.class == "Embedding");
    let input_shape = sample_shape(input_shape, reads_tokens, file)?;
    let names: Vec<&str> = rest.iter().map(|(e, _)| e.name.as_str()).collect();
    weights.detect_prefix(&names);
    let layers = build_layers(model, rest, input_name, &input_shape, &mut weights, file)?;
    weights.finish()?;
    let spec = ModelSpec { name: model.name.clone(), input_shape, layers };
    spec.shapes(1)?;
    Ok(spec)
}

/// A model's layers, each with the layers it reads: a Sequential's chain (the first reads
/// the input), a Functional's graph.
fn model_graph<'m, 'a>(model: &'m ModelView<'a>, file: &str) -> Result<Vec<(&'m Entry<'a>, Vec<&'m str>)>> {
    Ok(match model.class {
        // A chain: each layer reads the one before it (the first reads the input).
        "Sequential" => model
            .entries
            .iter()
            .enumerate()
            .map(|(i, e)| (e, i.checked_sub(1).map(|p| model.entries[p].name.as_str()).into_iter().collect()))
            .collect(),
        "Functional" | "Model" => functional::graph(model, file)?,
        other => return Err(config::not_a_model(file, other)),
    })
}

/// One sample's input shape (no batch axis) from the shape the file declares (batch axis
/// first). A variable (None) axis is allowed only as the time axis of sequences
/// `[steps, features]`, or of token ids `[steps]` feeding an Embedding; it is stored as 0.
fn sample_shape(declared: &[Value], reads_tokens: bool, file: &str) -> Result<Vec<usize>> {
    let format_error = |reason: String| Error::ModelFormat { file: file.to_string(), reason };
    // Errors show the shape as the file writes it: `[None, -28, 28, 1]`.
    let written = shape_as_written(declared);
    // Each sample dimension: None (variable) or a positive size.
    let size = |d: &Value| d.as_u64().and_then(|n| usize::try_from(n).ok()).filter(|&n| n > 0);
    let sample = declared
        .iter()
        .skip(1)
        .map(|d| match d {
            Value::Null => Ok(None),
            d => size(d)
                .map(Some)
                .ok_or_else(|| format_error(format!("input shape {written}: dimension {d} is not a positive size"))),
        })
        .collect::<Result<Vec<Option<usize>>>>()?;
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
    Ok(input_shape)
}

/// The graph IR nodes of `graph`'s (non-input) layers, each built from its table row and
/// shape-checked against its inputs.
fn build_layers(
    model: &ModelView,
    graph: &[(&Entry, Vec<&str>)],
    input_name: Option<&str>,
    input_shape: &[usize],
    weights: &mut Weights,
    file: &str,
) -> Result<Vec<Layer>> {
    // Shapes are checked for sequences of 1 step (weights don't depend on the length).
    let mut built = Built {
        shapes: vec![std::iter::once(1).chain(input_shape.iter().map(|&d| d.max(1))).collect()],
        layers: Vec::new(),
        variable_time: input_shape.first() == Some(&0),
    };
    add_layers(model, graph, input_name, 0, &mut built, weights, file)?;
    Ok(built.layers)
}

/// The nodes built so far and every value's shape (value 0: the input).
struct Built {
    shapes: Vec<Vec<usize>>,
    layers: Vec<Layer>,
    /// The input's time axis is variable: shapes are checked at 1 step.
    variable_time: bool,
}

/// Adds `graph`'s layers, its input (`input_name`) being value `input`; returns the value
/// of its last layer. A layer that is itself a model (ConvNeXt's stem and downsampling
/// `Sequential`s) is inlined: its layers read what it reads, and its readers its output.
fn add_layers(
    model: &ModelView,
    graph: &[(&Entry, Vec<&str>)],
    input_name: Option<&str>,
    input: usize,
    built: &mut Built,
    weights: &mut Weights,
    file: &str,
) -> Result<usize> {
    // The value of each layer of this graph by name. A Sequential's first layer has no
    // parent name: it reads the input; each later one, the value before it.
    let mut values: HashMap<&str, usize> = HashMap::new();
    if let Some(name) = input_name {
        values.insert(name, input);
    }
    let mut last = input;
    for (entry, parents) in graph {
        let inputs: Vec<usize> = if parents.is_empty() {
            vec![last]
        } else {
            parents
                .iter()
                .map(|p| {
                    values.get(p).copied().ok_or_else(|| Error::ModelFormat {
                        file: file.to_string(),
                        reason: format!("layer {:?} reads unknown layer {p:?}", entry.name),
                    })
                })
                .collect::<Result<_>>()?
        };
        if entry.class == "InputLayer" {
            let reason = match input_name {
                Some(input) if model.class != "Sequential" => format!(
                    "InputLayer {:?} is not the model's input {input:?}: an encoder has exactly one input",
                    entry.name
                ),
                _ => format!("InputLayer {:?} may only be the first layer of a Sequential model", entry.name),
            };
            return Err(Error::ModelFormat { file: file.to_string(), reason });
        }
        if let Some(nested) = entry.nested(file)? {
            let [from] = inputs.as_slice() else {
                return Err(Error::ModelFormat {
                    file: file.to_string(),
                    reason: format!("nested model {:?} reads {} values: it must read one", entry.name, inputs.len()),
                });
            };
            let inner = model_graph(&nested, file)?;
            // Its InputLayer (when written) is the value it reads.
            let (inner_input, rest) = match inner.split_first() {
                Some(((first, _), rest)) if first.class == "InputLayer" => (Some(first.name.as_str()), rest),
                _ => (None, inner.as_slice()),
            };
            last = add_layers(&nested, rest, inner_input, *from, built, weights, file)?;
            values.insert(entry.name.as_str(), last);
            continue;
        }
        let input_shapes: Vec<&[usize]> = inputs.iter().map(|&v| built.shapes[v].as_slice()).collect();
        let mut ctx = layers::Context { entry, input: input_shapes[0], inputs: &input_shapes, weights, file };
        let op = layers::build(&mut ctx)?;
        if op.arity() != inputs.len() {
            let self_attention = if entry.class == "MultiHeadAttention" {
                " (MultiHeadAttention runs as self-attention only: query = value = key)"
            } else {
                ""
            };
            return Err(Error::ModelFormat {
                file: file.to_string(),
                reason: format!(
                    "layer {:?} ({}) takes {} inputs ({}), but it reads {}{self_attention}",
                    entry.name,
                    entry.class,
                    inputs.len(),
                    parents.join(", "),
                    op.arity()
                ),
            });
        }
        if (*op).as_any().is::<Embedding>() && inputs != [0] {
            return Err(Error::UnsupportedConfig {
                layer: entry.name.clone(),
                key: "input".into(),
                value: format!("{parents:?}"),
                hint: " (an Embedding must read the model's input: integer token ids)".into(),
            });
        }
        // A variable time axis must take every length, so its models are checked at 1 step.
        let variable = if built.variable_time {
            " (the input's time axis is variable: every length from 1 step must fit; give the Input a fixed \
             length, or use same / causal padding)"
        } else {
            ""
        };
        let shape = op.output_shape(&input_shapes).map_err(|e| match e {
            Error::ShapeMismatch { op, expected, got } => Error::ShapeMismatch {
                op: format!("layer {:?} ({op})", entry.name),
                expected: format!("{expected}{variable}"),
                got,
            },
            other => other,
        })?;
        built.shapes.push(shape);
        built.layers.push(Layer { name: entry.name.clone(), op, inputs });
        last = built.layers.len();
        values.insert(entry.name.as_str(), last);
    }
    Ok(last)
}

/// A Sequential's `build_input_shape` (or its first layer's build shape), as written.
fn sequential_input_shape(config: &Value) -> Option<&Vec<Value>> {
    config
        .get("build_input_shape")
        .or_else(|| config.get("layers")?.get(0)?.get("build_config")?.get("input_shape"))?
        .as_array()
}

/// A shape as Keras users write it: `[None, -28, 28, 1]` (null is None).
fn shape_as_written(dims: &[Value]) -> String {
    let dims: Vec<String> = dims.iter().map(|d| if d.is_null() { "None".to_string() } else { d.to_string() }).collect();
    format!("[{}]", dims.join(", "))
}
