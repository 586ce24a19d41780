//! Whole Siamese models (two inputs) in a Keras file: the shared encoder is the layer
//! called twice, once on each input (a nested Sequential/Functional model or a single
//! layer); it becomes the [`ModelSpec`]. The layers after it are the head, matched to a
//! [`TwinHead`]: a learned head the distance shader fuses, or a Lambda head the run-time
//! `--distance` replaces ([`LambdaHead`]) when that drops nothing.

use std::collections::HashMap;

use serde_json::{json, Value};

use super::config::{activation_name, Entry, ModelView};
use super::file::{parameters, weights_of_model, LayerWeights, Source};
use super::IDENTITY_AT_INFERENCE;
use crate::error::{Error, Result};
use crate::model::weights::Weights;
use crate::model::{LoadOptions, ModelSpec, TwinHead};
use crate::ops::LearnedHead;

/// The twin heads that load, for error messages and docs.
pub const SUPPORTED_HEADS: &str = "a head of the layers an encoder runs (Subtract, Multiply, Concatenate, Dot, \
                                   Dense, BatchNormalization...) reading the shared encoder's two outputs, with \
                                   one value per pair as the model's one output; a Lambda in it stands for what \
                                   --lambda says (default: a distance by --distance when its readers take one \
                                   value per pair)";

/// What the top-level model is.
pub(super) enum Plan {
    /// One input: the whole model is the encoder.
    Encoder,
    /// Two inputs: the layer `encoder` is called on both; `head` are the layers after it.
    Twin { encoder: String, inputs: [String; 2], head: Vec<String> },
}

impl Plan {
    /// Tells an encoder (one input) from a twin (two), finding the twin's shared encoder.
    pub fn of(top: &ModelView, file: &str) -> Result<Self> {
        if top.class == "Sequential" || top.inputs.len() == 1 {
            return Ok(Plan::Encoder);
        }
        let format_error = |reason: String| Error::ModelFormat { file: file.to_string(), reason };
        let [a, b] = top.inputs.as_slice() else {
            return Err(format_error(format!(
                "model {:?} has {} inputs {:?}: expected one (an encoder) or two (a Siamese twin)",
                top.name,
                top.inputs.len(),
                top.inputs
            )));
        };
        let shared: Vec<&Entry> = top
            .entries
            .iter()
            .filter(|e| {
                let calls = e.calls().len();
                let parents = [e.parents(0), e.parents(1)];
                let (a, b) = (a.as_str(), b.as_str());
                calls == 2 && (parents == [vec![a], vec![b]] || parents == [vec![b], vec![a]])
            })
            .collect();
        let encoder = match shared.as_slice() {
            [one] => one.name.clone(),
            [] => {
                return Err(format_error(format!(
                    "model {:?} has two inputs ({a:?}, {b:?}) but no layer called once on each of them: a Siamese \
                     model must apply one shared encoder (a layer or a nested model) directly to both inputs",
                    top.name
                )))
            }
            several => {
                return Err(format_error(format!(
                    "model {:?}: several layers are called on both inputs ({}): expected one shared encoder",
                    top.name,
                    several.iter().map(|e| e.name.as_str()).collect::<Vec<_>>().join(", ")
                )))
            }
        };
        let head = top
            .entries
            .iter()
            .filter(|e| e.class != "InputLayer" && e.name != encoder)
            .map(|e| e.name.clone())
            .collect();
        Ok(Plan::Twin { encoder, inputs: [a.clone(), b.clone()], head })
    }

    /// The shared encoder's name (twins only).
    pub fn encoder_name(&self) -> Option<String> {
        match self {
            Plan::Encoder => None,
            Plan::Twin { encoder, .. } => Some(encoder.clone()),
        }
    }

    /// The encoder as the importer builds it: the whole model, a nested model's own
    /// config, or a single shared layer wrapped in a Sequential behind the first input.
    pub fn build_encoder(&self, source: &Source, top: &ModelView, weights: &LayerWeights) -> Result<ModelSpec> {
        let file = &source.file;
        let build = |model: &ModelView, tensors| {
            super::from_model(model, file, Weights::from_map(&source.weights_file(), tensors))
        };
        let Plan::Twin { encoder, inputs, .. } = self else {
            return build(top, weights_of_model(weights));
        };
        let entry = top
            .entry(encoder)
            .ok_or_else(|| Error::ModelFormat { file: file.clone(), reason: format!("no layer {encoder:?}") })?;
        let tensors = weights.get(encoder).cloned().unwrap_or_default();
        if let Some(nested) = entry.nested(file)? {
            return build(&nested, tensors);
        }
        let input = top.entry(&inputs[0]).map(|e| e.value.clone()).unwrap_or(Value::Null);
        let root = json!({"class_name": "Sequential", "config": {"name": encoder, "layers": [input, entry.value]}});
        build(&ModelView::parse_with(&root, file, top.keras2)?, tensors)
    }

    /// The twin's head: nothing → None; set aside (`options.no_head`) → Ignored;
    /// Subtract → Multiply(d, d) → Dense(1, sigmoid) → learned (fused into the distance
    /// shader); a Lambda with nothing trained around it → replaced by the run-time
    /// `--distance`; anything else → the head's layers as a graph ([`super::head`]).
    pub fn head(
        &self,
        source: &Source,
        top: &ModelView,
        spec: &ModelSpec,
        weights: &LayerWeights,
        options: &LoadOptions,
    ) -> Result<TwinHead> {
        let Plan::Twin { encoder, inputs, head } = self else {
            return Ok(TwinHead::None);
        };
        let layers: Vec<&Entry> = head.iter().filter_map(|name| top.entry(name)).collect();
        if layers.is_empty() {
            return Ok(TwinHead::None);
        }
        if options.no_head {
            return Ok(TwinHead::Ignored { layers: layers.iter().map(|e| e.name.clone()).collect() });
        }
        if let [subtract, multiply, dense] = layers.as_slice() {
            if is_learned_head([subtract, multiply, dense], encoder, top) {
                return learned_head(source, dense, spec, weights);
            }
        }
        if let Some(lambda) = LambdaHead::of(&layers, weights) {
            if lambda.blockers.is_empty() && options.lambda.is_none() {
                return Ok(TwinHead::Replaced {
                    layer: lambda.lambda.name.clone(),
                    class: lambda.lambda.class.to_string(),
                });
            }
        }
        super::head::layer_head(source, top, super::head::Twin { encoder, inputs }, head, spec, weights, options)
    }
}

/// Whether the head is exactly Subtract(a, b) → Multiply(d, d) → Dense(1, sigmoid), `a`
/// and `b` the encoder's two calls, the Dense the model's output.
fn is_learned_head<'a>([subtract, multiply, dense]: [&Entry<'a>; 3], encoder: &str, top: &ModelView) -> bool {
    // The tensors a layer's only call reads (nothing when it is called more than once).
    let reads = |e: &Entry<'a>| -> Vec<(&'a str, u64)> {
        match e.calls().as_slice() {
            [call] => call.iter().map(|i| (i.layer, i.node)).collect(),
            _ => Vec::new(),
        }
    };
    let (sub_in, mul_in, dense_in) = (reads(subtract), reads(multiply), reads(dense));
    let activation = dense.config.get("activation").map(|a| activation_name(a) == Some("sigmoid"));
    subtract.class == "Subtract"
        && multiply.class == "Multiply"
        && dense.class == "Dense"
        && sub_in.len() == 2
        && sub_in.iter().all(|(name, _)| *name == encoder)
        && sub_in[0].1 != sub_in[1].1
        && mul_in.len() == 2
        && mul_in.iter().all(|(name, _)| *name == subtract.name)
        && dense_in.len() == 1
        && dense_in[0].0 == multiply.name
        && dense.config.get("units").and_then(Value::as_u64) == Some(1)
        && activation == Some(true)
        && top.outputs == [dense.name.clone()]
}

/// The learned head's weights: the Dense(1) reading the squared difference of two flat
/// embeddings.
fn learned_head(source: &Source, dense: &Entry, spec: &ModelSpec, weights: &LayerWeights) -> Result<TwinHead> {
    let embedding = spec.embedding_shape(1)?;
    let [dim] = embedding.as_slice() else {
        return Err(Error::UnsupportedConfig {
            layer: dense.name.clone(),
            key: "input".into(),
            value: format!("an embedding of shape {embedding:?}"),
            hint: " (the learned head needs a flat embedding: end the encoder with Flatten or pooling)".into(),
        });
    };
    let mut tensors = Weights::from_map(&source.weights_file(), weights.get(&dense.name).cloned().unwrap_or_default());
    let kernel = tensors.take(&dense.name, "kernel", &[*dim, 1])?;
    let bias = if dense.flag("use_bias", true) { tensors.take(&dense.name, "bias", &[1])?[0] } else { 0.0 };
    tensors.finish()?;
    Ok(TwinHead::Learned(LearnedHead { weights: kernel, bias, squared: true }))
}

/// A twin head holding a Lambda (Python code, which cannot run here). The run-time
/// `--distance` replaces it only when nothing in the head would be lost: no layer of the
/// head holds trained weights, and the layers after the Lambda only pass its one value per
/// pair through (Dropout and the like, Flatten, Reshape, a linear Activation).
pub(super) struct LambdaHead<'a> {
    /// The Lambda nearest the output (the last in the config's topological order).
    lambda: Entry<'a>,
    /// The layers that stop the replacement, in config order.
    blockers: Vec<Blocker>,
}

/// A head layer that replacing a Lambda head by `--distance` would silently drop.
struct Blocker {
    name: String,
    /// Its stored weights (0: an untrained layer after the Lambda that changes its value).
    parameters: usize,
    /// Whether it reads the Lambda's output (directly or through other layers).
    after: bool,
}

impl<'a> LambdaHead<'a> {
    /// The Lambda head among a twin's head `layers`, if one holds a Lambda.
    pub fn of(layers: &[&Entry<'a>], weights: &LayerWeights) -> Option<Self> {
        let lambda = (*layers.iter().rev().find(|e| e.class == "Lambda")?).clone();
        // Layers downstream of the Lambda: config order is topological.
        let mut after: Vec<&str> = vec![lambda.name.as_str()];
        for entry in layers {
            if entry.inputs().iter().any(|parent| after.contains(parent)) {
                after.push(entry.name.as_str());
            }
        }
        let passes_value_through = |e: &Entry| {
            IDENTITY_AT_INFERENCE.contains(&e.class)
                || matches!(e.class, "Flatten" | "Reshape")
                || (e.class == "Activation"
                    && activation_name(e.config.get("activation").unwrap_or(&Value::Null)) == Some("linear"))
        };
        let blockers = layers
            .iter()
            .filter(|e| e.name != lambda.name)
            .filter_map(|e| {
                let parameters = weights.get(&e.name).map_or(0, |w| parameters(w.values()));
                let after = after.contains(&e.name.as_str());
                (parameters > 0 || (after && !passes_value_through(e))).then(|| Blocker {
                    name: e.name.clone(),
                    parameters,
                    after,
                })
            })
            .collect();
        Some(Self { lambda, blockers })
    }

    /// Each head layer's reason for `siamese inspect`, by name (the Lambda's too).
    pub fn row_reasons(&self) -> HashMap<String, String> {
        let mut out: HashMap<String, String> = self
            .blockers
            .iter()
            .map(|b| {
                let why = match (b.parameters, b.after) {
                    (0, _) => format!("changes the value of {} {:?}", self.lambda.class, self.lambda.name),
                    (_, true) => format!("after {} {:?}, which needs --lambda", self.lambda.class, self.lambda.name),
                    (_, false) => format!("in a {} head, which needs --lambda", self.lambda.class),
                };
                (b.name.clone(), why)
            })
            .collect();
        if !self.blockers.is_empty() {
            out.insert(self.lambda.name.clone(), "Python code: say what it computes with --lambda".into());
        }
        out
    }
}
