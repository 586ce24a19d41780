//! `siamese inspect` for Keras model files: every layer (nested encoder layers after
//! their model) with its class, output shape, parameter count and how it runs here
//! ([`Runs`]), and whether the file loads. Unsupported layers are listed, not errors.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;

use serde_json::Value;

use super::config::{batch_shape, build_input_shape, Entry, ModelView};
use super::file::{parameters, weights_of_model, Format, LayerWeights, Source};
use super::twin::{LambdaHead, Plan};
use super::{is_supported, IDENTITY_AT_INFERENCE, MASK_OP_CLASSES};
use crate::error::{Error, Result};
use crate::model::weights::Weight;
use crate::model::{LoadOptions, ModelSpec, TwinHead};

/// How a layer of a model file runs here.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Runs {
    /// A model input.
    Input,
    /// A compute layer of the encoder, on the GPU.
    Gpu,
    /// The shared encoder (a nested model: its layers follow, indented).
    SharedEncoder,
    /// Part of the learned head, fused into the distance shader.
    LearnedHead,
    /// Part of a head replaced by the run-time `--distance`.
    Replaced,
    /// A layer of the twin's head, on the GPU after the encoder (same submit).
    Head,
    /// Part of a head set aside at load (`--no-head`).
    Ignored,
    /// A Keras 3 operation node computing a Masking layer's mask, which the Masking
    /// layer computes here.
    Mask,
    /// Not supported (the reason, when the loader gave one).
    Unsupported(String),
}

impl std::fmt::Display for Runs {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Runs::Input => f.write_str("input"),
            Runs::Gpu => f.write_str("GPU"),
            Runs::SharedEncoder => f.write_str("shared encoder (both inputs)"),
            Runs::LearnedHead => f.write_str("GPU (learned head, fused into the distance)"),
            Runs::Replaced => f.write_str("replaced by --distance"),
            Runs::Head => f.write_str("GPU (twin head, after the encoder)"),
            Runs::Ignored => f.write_str("set aside (--no-head)"),
            Runs::Mask => f.write_str("mask of the Masking layer (computed with it)"),
            Runs::Unsupported(reason) if reason.is_empty() => f.write_str("UNSUPPORTED"),
            Runs::Unsupported(reason) => write!(f, "UNSUPPORTED: {reason}"),
        }
    }
}

/// One row of an [`Inspection`].
#[derive(Clone, Debug)]
pub struct LayerInfo {
    /// Layer name.
    pub name: String,
    /// Keras class.
    pub class: String,
    /// Nesting depth (1 for the layers of a nested encoder).
    pub depth: usize,
    /// Output shape with the batch axis (None = variable), when known.
    pub output_shape: Option<Vec<Option<usize>>>,
    /// Number of weights stored for it.
    pub parameters: usize,
    /// How it runs here.
    pub runs: Runs,
}

/// A model file's layers and how each runs here (for `siamese inspect`).
#[derive(Clone, Debug)]
pub struct Inspection {
    /// The file.
    pub file: String,
    /// `Keras 3 .keras` or `legacy HDF5`, with the Keras version when recorded.
    pub format: String,
    /// The top-level model's name.
    pub model: String,
    /// The top-level model's class.
    pub class: String,
    /// The shared encoder's name (whole Siamese models).
    pub encoder: Option<String>,
    /// The head, when the file loads.
    pub head: Option<TwinHead>,
    /// Every layer, nested encoder layers after their model.
    pub layers: Vec<LayerInfo>,
    /// Why the file does not load, or None when it does.
    pub error: Option<String>,
}

/// Lists a model file's layers (name, class, output shape, parameters, how each runs).
/// Unsupported layers are listed, not errors; only an unreadable file is an error.
pub fn inspect(path: impl AsRef<Path>) -> Result<Inspection> {
    let source = Source::open(path.as_ref())?;
    let top = ModelView::parse(&source.root, &source.file)?;
    let weights = source.weights_by_layer(&top)?;
    let version = source.root.get("keras_version").and_then(Value::as_str).map(|v| format!(", Keras {v}"));
    let format = match source.format {
        Format::Keras3 => "Keras 3 .keras",
        Format::Legacy => "legacy HDF5",
    };
    let mut inspection = Inspection {
        file: source.file.clone(),
        format: format!("{format}{}", version.unwrap_or_default()),
        model: top.name.clone(),
        class: top.class.to_string(),
        encoder: None,
        head: None,
        layers: Vec::new(),
        error: None,
    };
    let plan = match Plan::of(&top, &source.file) {
        Ok(plan) => plan,
        Err(e) => {
            inspection.error = Some(e.to_string());
            inspection.layers = rows(&top, 0, &weights_of_model(&weights), &HashMap::new(), class_runs);
            return Ok(inspection);
        }
    };
    inspection.encoder = plan.encoder_name();
    let spec = plan.build_encoder(&source, &top, &weights);
    let options = LoadOptions::default();
    let head = spec.as_ref().ok().map(|spec| plan.head(&source, &top, spec, &weights, &options));
    inspection.error = match (&spec, &head) {
        (Err(e), _) | (_, Some(Err(e))) => Some(e.to_string()),
        _ => None,
    };
    let loaded = Loaded {
        shapes: spec.as_ref().map(spec_shapes).unwrap_or_default(),
        // The encoder layer the loader stopped at, and why.
        failed_layer: match &spec {
            Err(Error::UnsupportedLayer { layer, .. }) => Some((layer.clone(), String::new())),
            Err(Error::UnsupportedConfig { layer, key, value, .. }) => {
                Some((layer.clone(), format!("{key} = {value}")))
            }
            _ => None,
        },
        encoder_loaded: spec.is_ok(),
        head: head.and_then(Result::ok),
    };
    inspection.layers = match &plan {
        Plan::Encoder => rows(&top, 0, &weights_of_model(&weights), &loaded.shapes, |e| loaded.encoder_runs(e)),
        Plan::Twin { encoder, head: head_names, .. } => {
            twin_rows(&source.file, &top, &weights, &loaded, encoder, head_names)?
        }
    };
    inspection.head = loaded.head;
    Ok(inspection)
}

/// What loading the file gave, for its rows.
struct Loaded {
    /// Each encoder layer's output shape, when the encoder loads.
    shapes: HashMap<String, Vec<Option<usize>>>,
    /// The encoder layer the loader stopped at, and why.
    failed_layer: Option<(String, String)>,
    /// Whether the encoder loads.
    encoder_loaded: bool,
    /// The head, when encoder and head load.
    head: Option<TwinHead>,
}

impl Loaded {
    /// How an encoder layer runs.
    fn encoder_runs(&self, entry: &Entry) -> Runs {
        match &self.failed_layer {
            Some((layer, reason)) if *layer == entry.name => Runs::Unsupported(reason.clone()),
            _ => class_runs(entry),
        }
    }

    /// How a layer of a twin's head runs.
    fn head_runs(&self) -> Runs {
        match &self.head {
            Some(TwinHead::Learned(_)) => Runs::LearnedHead,
            Some(TwinHead::Replaced { .. }) => Runs::Replaced,
            Some(TwinHead::Layers(_)) => Runs::Head,
            Some(TwinHead::Ignored { .. }) => Runs::Ignored,
            Some(TwinHead::None) => Runs::Unsupported(String::new()),
            None if self.encoder_loaded => Runs::Unsupported("the head does not load (see the error)".into()),
            None => Runs::Unsupported(String::new()),
        }
    }
}

/// A twin's rows: its inputs, the shared encoder (a nested one's layers after it,
/// indented), and the head.
fn twin_rows(
    file: &str,
    top: &ModelView,
    weights: &LayerWeights,
    loaded: &Loaded,
    encoder: &str,
    head_names: &[String],
) -> Result<Vec<LayerInfo>> {
    let declared = declared_shapes(top);
    let head_layers: Vec<&Entry> = head_names.iter().filter_map(|name| top.entry(name)).collect();
    let lambda_rows = LambdaHead::of(&head_layers, weights).map(|l| l.row_reasons()).unwrap_or_default();
    let mut out = Vec::new();
    for entry in &top.entries {
        let layer_weights = weights.get(&entry.name).cloned().unwrap_or_default();
        let parameters = parameters(layer_weights.values());
        let nested = if entry.name == encoder { entry.nested(file)? } else { None };
        let runs = if entry.class == "InputLayer" {
            Runs::Input
        } else if entry.name == encoder {
            match nested {
                Some(_) => Runs::SharedEncoder,
                None => loaded.encoder_runs(entry),
            }
        } else if let Some(reason) = lambda_rows.get(&entry.name).filter(|_| loaded.head.is_none()) {
            Runs::Unsupported(reason.clone())
        } else if head_names.contains(&entry.name) {
            loaded.head_runs()
        } else {
            Runs::Unsupported(String::new())
        };
        let output_shape = if entry.name == encoder {
            let last = match &nested {
                Some(nested) => nested.outputs.first().cloned().unwrap_or_default(),
                None => entry.name.clone(),
            };
            loaded.shapes.get(&last).cloned().or_else(|| declared.get(&entry.name).cloned())
        } else {
            declared.get(&entry.name).cloned()
        };
        out.push(LayerInfo {
            name: entry.name.clone(),
            class: entry.class.to_string(),
            depth: 0,
            output_shape,
            parameters,
            runs,
        });
        if let Some(nested) = nested {
            let mut inner = rows(&nested, 1, &layer_weights, &loaded.shapes, |e| loaded.encoder_runs(e));
            // The nested model's last layer outputs what the encoder does.
            if let (Some(last), Some(shape)) = (inner.last_mut(), declared.get(&entry.name)) {
                last.output_shape.get_or_insert_with(|| shape.clone());
            }
            out.extend(inner);
        }
    }
    Ok(out)
}

/// How an encoder layer runs, judged by its class alone.
fn class_runs(entry: &Entry) -> Runs {
    if entry.class == "InputLayer" {
        Runs::Input
    } else if super::merge::is_op_node(entry) && !MASK_OP_CLASSES.contains(&entry.class) {
        if super::merge::is_supported_op(entry.class) {
            Runs::Gpu
        } else {
            Runs::Unsupported(String::new())
        }
    } else if is_supported(entry.class) {
        Runs::Gpu
    } else if MASK_OP_CLASSES.contains(&entry.class) {
        Runs::Mask
    } else {
        Runs::Unsupported(String::new())
    }
}

/// Rows for a model's layers: shapes from the loaded spec, else as Keras recorded them;
/// parameters from `weights` named `{layer}/...`.
fn rows(
    model: &ModelView,
    depth: usize,
    weights: &BTreeMap<String, Weight>,
    shapes: &HashMap<String, Vec<Option<usize>>>,
    runs: impl Fn(&Entry) -> Runs,
) -> Vec<LayerInfo> {
    let declared = declared_shapes(model);
    model
        .entries
        .iter()
        .map(|entry| {
            let prefix = format!("{}/", entry.name);
            LayerInfo {
                name: entry.name.clone(),
                class: entry.class.to_string(),
                depth,
                output_shape: shapes.get(&entry.name).or_else(|| declared.get(&entry.name)).cloned(),
                parameters: parameters(weights.iter().filter(|(k, _)| k.starts_with(&prefix)).map(|(_, w)| w)),
                runs: runs(entry),
            }
        })
        .collect()
}

/// Each layer's output shape (batch axis None, variable time axis None) from the spec:
/// the time axis is found by shaping for 1 and for 2 steps.
fn spec_shapes(spec: &ModelSpec) -> HashMap<String, Vec<Option<usize>>> {
    let (Ok(one), Ok(two)) = (spec.shapes_for(1, 1), spec.shapes_for(1, 2)) else {
        return HashMap::new();
    };
    let shape = |i: usize| -> Vec<Option<usize>> {
        std::iter::once(None).chain(one[i].iter().zip(&two[i]).skip(1).map(|(&a, &b)| (a == b).then_some(a))).collect()
    };
    spec.layers.iter().enumerate().map(|(i, layer)| (layer.name.clone(), shape(i + 1))).collect()
}

/// Output shapes as Keras recorded them: InputLayer batch shapes, the shapes of tensors
/// read by later calls (Functional), the next layer's build input shape (Sequential).
fn declared_shapes(model: &ModelView) -> HashMap<String, Vec<Option<usize>>> {
    let dims = |dims: &[Value]| -> Vec<Option<usize>> { dims.iter().map(|d| d.as_u64().map(|d| d as usize)).collect() };
    let as_shape = |v: &Value| v.as_array().map(|d| dims(d));
    let mut out = HashMap::new();
    for (i, entry) in model.entries.iter().enumerate() {
        if let Some(shape) = batch_shape(entry.config) {
            out.insert(entry.name.clone(), dims(shape));
        }
        if model.class == "Sequential" {
            if let Some(shape) = model.entries.get(i + 1).and_then(|next| build_input_shape(next.value)) {
                out.entry(entry.name.clone()).or_insert_with(|| dims(shape));
            }
        }
        for input in entry.tensors() {
            if let Some(shape) = input.shape.and_then(as_shape) {
                out.entry(input.layer.to_string()).or_insert(shape);
            }
        }
    }
    // Layers nothing later reads (the model's output), and Sequential layers without a
    // build config after them: derived from their input for the simple cases.
    for (i, entry) in model.entries.iter().enumerate() {
        if out.contains_key(&entry.name) {
            continue;
        }
        let input = if model.class == "Sequential" {
            i.checked_sub(1).and_then(|p| out.get(&model.entries[p].name)).cloned()
        } else {
            let first = entry.calls().into_iter().next().and_then(|call| call.into_iter().next());
            first.and_then(|input| out.get(input.layer)).cloned()
        };
        let config = entry.config;
        let derived = match entry.class {
            "Lambda" => config.get("output_shape").and_then(as_shape).map(|s| [vec![None], s].concat()),
            "Dense" => input.zip(config.get("units").and_then(Value::as_u64)).map(|(mut shape, units)| {
                if let Some(last) = shape.last_mut() {
                    *last = Some(units as usize);
                }
                shape
            }),
            "Activation" | "ReLU" | "BatchNormalization" | "LayerNormalization" | "Masking" => input,
            class if IDENTITY_AT_INFERENCE.contains(&class) => input,
            _ => None,
        };
        if let Some(shape) = derived {
            out.insert(entry.name.clone(), shape);
        }
    }
    out
}

impl std::fmt::Display for Inspection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(f, "{} ({}): {} {:?}", self.file, self.format, self.class, self.model)?;
        match &self.encoder {
            Some(encoder) => writeln!(f, "Siamese twin: shared encoder {encoder:?}")?,
            None => writeln!(f, "encoder only (the distance is chosen at run time)")?,
        }
        if let Some(head) = self.head.as_ref().filter(|h| **h != TwinHead::None) {
            writeln!(f, "head: {head}")?;
        }
        let shape = |s: &Option<Vec<Option<usize>>>| match s {
            Some(dims) => {
                let parts: Vec<String> =
                    dims.iter().map(|d| d.map_or_else(|| "None".to_string(), |d| d.to_string())).collect();
                format!("({})", parts.join(", "))
            }
            None => "?".into(),
        };
        let names: Vec<String> = self.layers.iter().map(|l| format!("{}{}", "  ".repeat(l.depth), l.name)).collect();
        let shapes: Vec<String> = self.layers.iter().map(|l| shape(&l.output_shape)).collect();
        let name_width = names.iter().map(String::len).chain([5]).max().unwrap_or(5);
        let class_width = self.layers.iter().map(|l| l.class.len()).chain([5]).max().unwrap_or(5);
        let shape_width = shapes.iter().map(String::len).chain([12]).max().unwrap_or(12);
        writeln!(
            f,
            "{:name_width$}  {:class_width$}  {:shape_width$}  {:>10}  runs",
            "layer", "class", "output shape", "params"
        )?;
        for ((layer, name), shape) in self.layers.iter().zip(&names).zip(&shapes) {
            writeln!(
                f,
                "{name:name_width$}  {:class_width$}  {shape:shape_width$}  {:>10}  {}",
                layer.class, layer.parameters, layer.runs
            )?;
        }
        let total: usize = self.layers.iter().filter(|l| l.runs != Runs::SharedEncoder).map(|l| l.parameters).sum();
        writeln!(f, "total parameters: {total}")?;
        match &self.error {
            None => write!(f, "loads: yes"),
            Some(error) => write!(f, "loads: no: {error}"),
        }
    }
}
