//! Models: the framework-neutral description of an encoder ([`ModelSpec`]: layers with
//! their weights in OUR layouts) and the loaders that build one from foreign files.
//!
//! Internal layouts (the ones the kernels read), identical to Keras' so the Keras loader
//! converts nothing:
//! - Conv2D kernel HWIO `[k_h, k_w, in_c, out_c]`, activations NHWC;
//! - Dense kernel `[in, out]`;
//! - Flatten of NHWC is `(y*W + x)*C + c`, i.e. the memory order, so it is a free view.

pub mod keras;
pub mod keras_file;
pub mod weights;

use std::path::Path;

use crate::error::{Error, Result};
use crate::ops::{
    Activation, Conv2dConfig, DirectionWeights, GlobalAveragePool2d, MultiHeadAttentionWeights, Pool2dConfig,
    RecurrentConfig,
};
use crate::reference;

/// One layer of an encoder, with its weights on the host.
#[derive(Clone, Debug)]
pub enum LayerKind {
    /// Conv2D with fused bias and activation.
    Conv2d {
        /// Hyper-parameters.
        config: Conv2dConfig,
        /// HWIO kernel.
        kernel: Vec<f32>,
        /// Bias (None when `use_bias=False`).
        bias: Option<Vec<f32>>,
    },
    /// Dense with fused bias and activation.
    Dense {
        /// Input features.
        in_features: usize,
        /// Output features (Keras `units`).
        out_features: usize,
        /// `[in, out]` kernel.
        kernel: Vec<f32>,
        /// Bias (None when `use_bias=False`).
        bias: Option<Vec<f32>>,
        /// Fused activation.
        activation: Activation,
    },
    /// Max or average pooling.
    Pool2d(Pool2dConfig),
    /// GlobalAveragePooling2D (`keepdims` keeps `[1, 1, c]`).
    GlobalAveragePool2d {
        /// Keras `keepdims`.
        keepdims: bool,
    },
    /// Flatten: a view, no kernel.
    Flatten,
    /// A standalone activation.
    Activation(Activation),
    /// A layer that does nothing at inference (Dropout).
    Identity,
    /// Keras Masking: time steps whose features all equal `mask_value` are skipped by the
    /// recurrent layers. Must come right after the input (the mask is computed on the host).
    Masking {
        /// The padding value.
        mask_value: f32,
    },
    /// Elementwise sum of the layer's two inputs (Keras Add).
    Add,
    /// LayerNormalization over the last axis.
    LayerNorm {
        /// Scale `[features]` (ones when Keras' `scale=False`).
        gamma: Vec<f32>,
        /// Shift `[features]` (zeros when `center=False`).
        beta: Vec<f32>,
        /// Epsilon.
        eps: f32,
    },
    /// MultiHeadAttention as self-attention (query = key = value).
    MultiHeadAttention {
        /// Heads.
        heads: usize,
        /// Size of each head (Keras `key_dim`).
        key_dim: usize,
        /// Weights in Keras layouts, flattened.
        weights: MultiHeadAttentionWeights,
    },
    /// GlobalAveragePooling1D: `[batch, steps, features]` → `[batch, features]`.
    GlobalAveragePool1d,
    /// Keras Embedding: integer token ids `[batch, steps]` → rows of a table
    /// `[batch, steps, dim]`. Must read the model input (ids travel as exact f32 values).
    Embedding {
        /// Rows of the table (Keras `input_dim`).
        vocab: usize,
        /// Values per row (Keras `output_dim`).
        dim: usize,
        /// `[vocab, dim]`, row-major.
        table: Vec<f32>,
    },
    /// LSTM / GRU, optionally bidirectional.
    Recurrent {
        /// Shape and settings.
        config: RecurrentConfig,
        /// One set per direction, forward first.
        weights: Vec<DirectionWeights>,
    },
}

impl LayerKind {
    /// Number of weights of this layer.
    pub fn parameter_count(&self) -> usize {
        match self {
            LayerKind::Conv2d { kernel, bias, .. } | LayerKind::Dense { kernel, bias, .. } => {
                kernel.len() + bias.as_ref().map_or(0, Vec::len)
            }
            LayerKind::LayerNorm { gamma, beta, .. } => gamma.len() + beta.len(),
            LayerKind::MultiHeadAttention { weights, .. } => {
                weights.kernels.iter().chain(&weights.biases).map(Vec::len).sum::<usize>()
                    + weights.output_kernel.len()
                    + weights.output_bias.len()
            }
            LayerKind::Recurrent { weights, config } => weights
                .iter()
                .map(|w| {
                    let recurrent_bias = matches!(config.cell, crate::ops::Cell::Gru { reset_after: true });
                    w.kernel.len()
                        + w.recurrent_kernel.len()
                        + w.input_bias.len()
                        + if recurrent_bias { w.recurrent_bias.len() } else { 0 }
                })
                .sum(),
            LayerKind::Embedding { table, .. } => table.len(),
            _ => 0,
        }
    }

    /// Output shape (batch axis included) for an input of `input` shape.
    pub fn output_shape(&self, input: &[usize]) -> Result<Vec<usize>> {
        match self {
            LayerKind::Conv2d { config, .. } => config.output_shape(input),
            LayerKind::Dense { in_features, out_features, .. } => match input.split_last() {
                Some((&last, rest)) if last == *in_features && !rest.is_empty() => {
                    Ok(rest.iter().copied().chain([*out_features]).collect())
                }
                _ => Err(Error::shape("dense input", format!("[batch, ..., {in_features}]"), format!("{input:?}"))),
            },
            LayerKind::Pool2d(config) => config.output_shape(input),
            LayerKind::GlobalAveragePool2d { keepdims } => {
                let out = GlobalAveragePool2d::output_shape(input)?;
                Ok(if *keepdims { vec![out[0], 1, 1, out[1]] } else { out })
            }
            LayerKind::Flatten => match input.split_first() {
                Some((&batch, rest)) => Ok(vec![batch, rest.iter().product()]),
                None => Err(Error::shape("flatten input", "[batch, ...]", "[]")),
            },
            LayerKind::Activation(_) | LayerKind::Identity | LayerKind::Masking { .. } | LayerKind::Add => {
                Ok(input.to_vec())
            }
            LayerKind::LayerNorm { gamma, .. } => match input.last() {
                Some(&f) if f == gamma.len() && input.len() >= 2 => Ok(input.to_vec()),
                _ => Err(Error::shape(
                    "layer normalization input",
                    format!("[batch, ..., {}]", gamma.len()),
                    format!("{input:?}"),
                )),
            },
            LayerKind::MultiHeadAttention { weights, .. } => match *input {
                [_, _, dim] if dim == weights.output_bias.len() => Ok(input.to_vec()),
                _ => Err(Error::shape(
                    "multi-head attention input",
                    format!("[batch, steps, {}]", weights.output_bias.len()),
                    format!("{input:?}"),
                )),
            },
            LayerKind::GlobalAveragePool1d => match *input {
                [batch, steps, features] if steps > 0 => Ok(vec![batch, features]),
                _ => Err(Error::shape(
                    "global_average_pooling1d input",
                    "[batch, steps, features]",
                    format!("{input:?}"),
                )),
            },
            LayerKind::Recurrent { config, .. } => config.output_shape(input),
            LayerKind::Embedding { dim, .. } => match *input {
                [batch, steps] => Ok(vec![batch, steps, *dim]),
                _ => Err(Error::shape("embedding input (token ids)", "[batch, steps]", format!("{input:?}"))),
            },
        }
    }
}

/// A named layer.
#[derive(Clone, Debug)]
pub struct Layer {
    /// The layer's name in the source model (used in error messages).
    pub name: String,
    /// What it computes.
    pub kind: LayerKind,
    /// The values it reads: 0 is the model input, `i + 1` the output of layer `i`. A chain
    /// has `[i]` for layer `i`; Add reads two values.
    pub inputs: Vec<usize>,
}

/// An encoder: its input shape and a chain of layers.
#[derive(Clone, Debug)]
pub struct ModelSpec {
    /// Model name.
    pub name: String,
    /// Input shape of one sample (no batch axis), e.g. `[28, 28, 1]`, or `[0, 100]` for
    /// sequences of any length (0 marks the variable time axis).
    pub input_shape: Vec<usize>,
    /// Layers in order.
    pub layers: Vec<Layer>,
}

impl ModelSpec {
    /// Whether the input has a variable time axis (sequence models).
    pub fn is_sequence(&self) -> bool {
        self.input_shape.first() == Some(&0)
    }

    /// The input shape of one sample with the variable time axis (if any) set to `steps`.
    pub fn sample_shape(&self, steps: usize) -> Vec<usize> {
        self.input_shape.iter().map(|&d| if d == 0 { steps } else { d }).collect()
    }

    /// The Masking layer's value, when the encoder starts with one.
    pub fn mask_value(&self) -> Option<f32> {
        self.layers.iter().find_map(|l| match l.kind {
            LayerKind::Masking { mask_value } => Some(mask_value),
            _ => None,
        })
    }

    /// The vocabulary size of the Embedding layer, when the encoder reads token ids.
    pub fn token_vocab(&self) -> Option<usize> {
        self.layers.iter().find_map(|l| match l.kind {
            LayerKind::Embedding { vocab, .. } => Some(vocab),
            _ => None,
        })
    }

    /// Shape after each layer for a batch of `batch` (index 0 is the input); sequence
    /// models are shaped for their shortest input, 1 step.
    pub fn shapes(&self, batch: usize) -> Result<Vec<Vec<usize>>> {
        self.shapes_for(batch, 1)
    }

    /// Shape after each layer for `batch` samples of `steps` time steps (ignored when the
    /// input has no time axis).
    pub fn shapes_for(&self, batch: usize, steps: usize) -> Result<Vec<Vec<usize>>> {
        let mut shapes: Vec<Vec<usize>> = vec![std::iter::once(batch).chain(self.sample_shape(steps)).collect()];
        for (index, layer) in self.layers.iter().enumerate() {
            let named = |e: Error| match e {
                Error::ShapeMismatch { op, expected, got } => {
                    Error::ShapeMismatch { op: format!("layer {:?} ({op})", layer.name), expected, got }
                }
                other => other,
            };
            let wanted = if matches!(layer.kind, LayerKind::Add) { 2 } else { 1 };
            if layer.inputs.len() != wanted || layer.inputs.iter().any(|&v| v > index) {
                return Err(Error::ModelFormat {
                    file: self.name.clone(),
                    reason: format!(
                        "layer {:?} reads values {:?}: expected {wanted} earlier value(s)",
                        layer.name, layer.inputs
                    ),
                });
            }
            let input = &shapes[layer.inputs[0]];
            if let Some(&other) = layer.inputs.get(1) {
                if shapes[other] != *input {
                    return Err(named(Error::shape(
                        "add inputs",
                        format!("{input:?}"),
                        format!("{:?}", shapes[other]),
                    )));
                }
            }
            let output = layer.kind.output_shape(input).map_err(named)?;
            shapes.push(output);
        }
        Ok(shapes)
    }

    /// Whether every layer reads the output of the one before it.
    pub fn is_chain(&self) -> bool {
        self.layers.iter().enumerate().all(|(i, l)| l.inputs == [i])
    }

    /// Shape of one sample's embedding (no batch axis) for inputs of `steps` time steps.
    pub fn embedding_shape(&self, steps: usize) -> Result<Vec<usize>> {
        let mut shapes = self.shapes_for(1, steps)?;
        let last = shapes.pop().unwrap_or_default();
        Ok(last[1..].to_vec())
    }

    /// Number of weights.
    pub fn parameter_count(&self) -> usize {
        self.layers.iter().map(|l| l.kind.parameter_count()).sum()
    }

    /// Runs the encoder on the CPU (the reference for tests): `[batch, ...input_shape]`
    /// values in, `[batch, ...embedding]` values out.
    pub fn reference_forward(&self, input: &[f32], batch: usize) -> Result<Vec<f32>> {
        self.reference_forward_masked(input, batch, 1, &[])
    }

    /// [`reference_forward`](Self::reference_forward) for sequences of `steps` steps with a
    /// `[batch, steps]` mask (empty: derived from the Masking layer, or all steps real).
    pub fn reference_forward_masked(
        &self,
        input: &[f32],
        batch: usize,
        steps: usize,
        mask: &[bool],
    ) -> Result<Vec<f32>> {
        let shapes = self.shapes_for(batch, steps)?;
        let mask: Vec<bool> = if !mask.is_empty() {
            mask.to_vec()
        } else {
            let features = self.input_shape.last().copied().unwrap_or(1);
            (0..batch * steps)
                .map(|i| match self.mask_value() {
                    Some(value) => input[i * features..(i + 1) * features].iter().any(|&x| x != value),
                    None => true,
                })
                .collect()
        };
        let mut values: Vec<Vec<f32>> = vec![input.to_vec()];
        for layer in &self.layers {
            let shape = &shapes[layer.inputs[0]];
            let x = values[layer.inputs[0]].clone();
            let nhwc = || -> [usize; 4] { [shape[0], shape[1], shape[2], shape[3]] };
            let y = match &layer.kind {
                LayerKind::Conv2d { config, kernel, bias } => {
                    let zeros = vec![0.0; config.filters];
                    reference::conv2d(&x, nhwc(), config, kernel, bias.as_deref().unwrap_or(&zeros)).0
                }
                LayerKind::Dense { in_features, out_features, kernel, bias, activation } => {
                    let zeros = vec![0.0; *out_features];
                    let rows = x.len() / in_features;
                    reference::dense(&x, rows, kernel, bias.as_deref().unwrap_or(&zeros), *in_features, *activation)
                }
                LayerKind::Pool2d(config) => reference::pool2d(&x, nhwc(), config).0,
                LayerKind::GlobalAveragePool2d { .. } => reference::global_average_pool2d(&x, nhwc()),
                LayerKind::Activation(a) => x.iter().map(|&v| reference::activation(v, *a)).collect(),
                LayerKind::Recurrent { config, weights } => {
                    reference::recurrent(&x, [shape[0], shape[1], shape[2]], &mask, config, weights)
                }
                LayerKind::Add => x.iter().zip(&values[layer.inputs[1]]).map(|(a, b)| a + b).collect(),
                LayerKind::LayerNorm { gamma, beta, eps } => reference::layer_norm(&x, None, gamma, beta, *eps),
                LayerKind::MultiHeadAttention { heads, key_dim, weights } => {
                    let (tokens, dim, width) = (shape[0] * shape[1], shape[2], heads * key_dim);
                    let projections: Vec<Vec<f32>> = (0..3)
                        .map(|i| {
                            reference::dense(
                                &x,
                                tokens,
                                &weights.kernels[i],
                                &weights.biases[i],
                                dim,
                                Activation::Linear,
                            )
                        })
                        .collect();
                    let qkv: Vec<f32> = (0..tokens)
                        .flat_map(|t| {
                            projections.iter().flat_map(move |p| p[t * width..(t + 1) * width].iter().copied())
                        })
                        .collect();
                    let all = vec![true; tokens];
                    let scale = 1.0 / (*key_dim as f32).sqrt();
                    let context = reference::self_attention(&qkv, shape[0], shape[1], *heads, *key_dim, scale, &all);
                    reference::dense(
                        &context,
                        tokens,
                        &weights.output_kernel,
                        &weights.output_bias,
                        width,
                        Activation::Linear,
                    )
                }
                LayerKind::GlobalAveragePool1d => {
                    let all = vec![true; shape[0] * shape[1]];
                    reference::masked_mean_pool(&x, shape[0], shape[1], shape[2], &all, false)
                }
                LayerKind::Embedding { vocab, dim, table } => reference::gather_rows(&x, table, *vocab, *dim),
                LayerKind::Flatten | LayerKind::Identity | LayerKind::Masking { .. } => x,
            };
            values.push(y);
        }
        Ok(values.pop().unwrap_or_default())
    }
}

/// Loads an encoder from a model directory (`model.json` + `model.safetensors`), or from a
/// Keras model file (`.keras`, legacy `.h5` / `.hdf5`; of a whole Siamese model, its shared
/// encoder: see [`keras_file::load_keras_file`] for the head).
pub fn load(path: impl AsRef<Path>) -> Result<ModelSpec> {
    let path = path.as_ref();
    if !path.is_dir() && keras_file::is_keras_file(path) {
        return keras_file::load_keras_file(path).map(|file| file.spec);
    }
    if path.is_dir() {
        let json_path = path.join("model.json");
        let weights_path = path.join("model.safetensors");
        let json = std::fs::read_to_string(&json_path).map_err(|e| Error::io(&json_path, e))?;
        let bytes = std::fs::read(&weights_path).map_err(|e| Error::io(&weights_path, e))?;
        let weights = weights::Weights::from_safetensors(&bytes, &weights_path.display().to_string())?;
        keras::from_json(&json, &json_path.display().to_string(), weights)
    } else if path.exists() {
        Err(Error::ModelFormat {
            file: path.display().to_string(),
            reason: "expected a model directory holding model.json and model.safetensors \
                     (write one from Keras with tools/export_keras.py), or a Keras .keras / .h5 file"
                .into(),
        })
    } else {
        Err(Error::io(path, std::io::Error::new(std::io::ErrorKind::NotFound, "model directory not found")))
    }
}
