//! The graph IR ([`ModelSpec`]: one input, nodes reading earlier values, each a layer of
//! [`crate::layers`]) and the importers that build one from foreign files: model
//! directories and Keras files ([`keras`], [`keras_file`]), ONNX files ([`onnx`]), Hugging
//! Face BERT folders ([`bert`]). [`detect_format`] decides which a path holds.
//!
//! The engine's layouts, which every importer converts to at load, in the importer (Keras'
//! layouts are these, so the Keras importer converts nothing; PyTorch's Linear `(out, in)`
//! is transposed in [`bert`]):
//! - activations channels-last: images NHWC `[batch, h, w, c]`, sequences `[batch, steps,
//!   features]`; Flatten of NHWC is `(y*W + x)*C + c`, the memory order, so a free view
//!   (the ONNX importer keeps NCHW's flatten order by permuting before it);
//! - Conv2D kernel HWIO `[k_h, k_w, in_c, out_c]`; Dense kernel `[in, out]`;
//! - per-channel parameters (biases, normalisation) along the last axis.

pub mod bert;
mod head;
pub mod keras;
pub mod keras_file;
pub mod learned_head;
pub mod onnx;
pub mod weights;

pub use head::{LambdaKind, LayerHead, Score, TwinHead};

use std::path::Path;
use std::sync::Arc;

use crate::error::{Error, Result};
use crate::layers::{Embedding, Inputs, LayerOp, Masking};
use crate::ops::{Distance, Precision};

/// A node of the graph: a layer and the values it reads.
#[derive(Clone, Debug)]
pub struct Layer {
    /// The layer's name in the source model (used in error messages).
    pub name: String,
    /// What it computes: settings, weights, shape rule, reference and kernels.
    pub op: Arc<dyn LayerOp>,
    /// The values it reads: 0 is the model input, `i + 1` the output of layer `i`. A chain
    /// has `[i]` for layer `i`; Add reads two values.
    pub inputs: Vec<usize>,
}

impl Layer {
    /// A node named `name` computing `op` over `inputs`.
    pub fn new(name: impl Into<String>, op: impl LayerOp, inputs: Vec<usize>) -> Self {
        Self { name: name.into(), op: Arc::new(op), inputs }
    }

    /// The layer as `T`, when it is one.
    pub fn downcast<T: LayerOp>(&self) -> Option<&T> {
        (*self.op).as_any().downcast_ref::<T>()
    }
}

/// An encoder as the graph IR: one input (its shape per sample) and nodes in topological
/// order, each reading earlier values. Every importer produces one, in the engine's layouts;
/// the passes rewrite it; the runner runs it.
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

    /// The first layer of type `T`.
    pub fn find<T: LayerOp>(&self) -> Option<&T> {
        self.layers.iter().find_map(Layer::downcast::<T>)
    }

    /// The value that marks a padding step (every value of the step equal to it), when the
    /// model masks its input: its Masking layer's `mask_value`, or 0 (the token id) for an
    /// `Embedding(mask_zero=True)`. The step mask is computed from it on the host.
    pub fn mask_value(&self) -> Option<f32> {
        self.find::<Masking>()
            .map(|m| m.mask_value)
            .or_else(|| self.layers.iter().filter_map(Layer::downcast::<Embedding>).any(|e| e.mask_zero).then_some(0.0))
    }

    /// The vocabulary size of the Embedding layer, when the encoder reads token ids.
    pub fn token_vocab(&self) -> Option<usize> {
        self.find::<Embedding>().map(|e| e.vocab)
    }

    /// Shape after each layer for a batch of `batch` (index 0 is the input); sequence
    /// models are shaped for their shortest input, 1 step.
    pub fn shapes(&self, batch: usize) -> Result<Vec<Vec<usize>>> {
        self.shapes_for(batch, 1)
    }

    /// Shape after each layer for `batch` samples of `steps` time steps (ignored when the
    /// input has no time axis). This is where a graph is validated: every node reads as
    /// many earlier values as its layer takes, and every shape rule holds.
    pub fn shapes_for(&self, batch: usize, steps: usize) -> Result<Vec<Vec<usize>>> {
        let mut shapes: Vec<Vec<usize>> = vec![std::iter::once(batch).chain(self.sample_shape(steps)).collect()];
        for (index, layer) in self.layers.iter().enumerate() {
            let wanted = layer.op.arity();
            if layer.inputs.len() != wanted || layer.inputs.iter().any(|&v| v > index) {
                return Err(Error::ModelFormat {
                    file: self.name.clone(),
                    reason: format!(
                        "layer {:?} reads values {:?}: expected {wanted} earlier value(s)",
                        layer.name, layer.inputs
                    ),
                });
            }
            let inputs: Vec<&[usize]> = layer.inputs.iter().map(|&v| shapes[v].as_slice()).collect();
            let output = layer.op.output_shape(&inputs).map_err(|e| match e {
                Error::ShapeMismatch { op, expected, got } => {
                    Error::ShapeMismatch { op: format!("layer {:?} ({op})", layer.name), expected, got }
                }
                other => other,
            })?;
            shapes.push(output);
        }
        Ok(shapes)
    }

    /// Whether every layer reads the output of the one before it.
    pub fn is_chain(&self) -> bool {
        self.layers.iter().enumerate().all(|(i, l)| l.inputs == [i])
    }

    /// How many layers read each value (index 0: the input).
    pub fn readers(&self) -> Vec<usize> {
        let mut readers = vec![0; self.layers.len() + 1];
        for &value in self.layers.iter().flat_map(|l| &l.inputs) {
            readers[value] += 1;
        }
        readers
    }

    /// Shape of one sample's embedding (no batch axis) for inputs of `steps` time steps.
    pub fn embedding_shape(&self, steps: usize) -> Result<Vec<usize>> {
        let mut shapes = self.shapes_for(1, steps)?;
        let last = shapes.pop().unwrap_or_default();
        Ok(last[1..].to_vec())
    }

    /// Number of weights.
    pub fn parameter_count(&self) -> usize {
        self.layers.iter().map(|l| l.op.parameter_count()).sum()
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
            // Values per step (token ids: 1; the input shape's last axis may be the time axis).
            let features = input.len().checked_div(batch * steps).unwrap_or(1).max(1);
            (0..batch * steps)
                .map(|i| match self.mask_value() {
                    Some(value) => input[i * features..(i + 1) * features].iter().any(|&x| x != value),
                    None => true,
                })
                .collect()
        };
        let mut values: Vec<Vec<f32>> = vec![input.to_vec()];
        for layer in &self.layers {
            let inputs: Vec<&[f32]> = layer.inputs.iter().map(|&v| values[v].as_slice()).collect();
            let input_shapes: Vec<&[usize]> = layer.inputs.iter().map(|&v| shapes[v].as_slice()).collect();
            let y = layer.op.reference(&Inputs { values: &inputs, shapes: &input_shapes, mask: &mask })?;
            values.push(y);
        }
        Ok(values.pop().unwrap_or_default())
    }
}

/// What a model path holds: the one place that decides it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    /// A model directory: `model.json` (Keras `to_json()`) + `model.safetensors`.
    Directory,
    /// A Keras model file: `.keras` zip, or legacy `.h5` / `.hdf5`.
    KerasFile,
    /// An ONNX file (`.onnx`, weights inline or in external data files beside it).
    Onnx,
    /// A Hugging Face / sentence-transformers BERT folder (`config.json`, `model.safetensors`,
    /// `tokenizer.json`): a sentence model, see [`crate::SentenceModel`].
    BertFolder,
}

/// Decides what `path` holds, from its kind and names (the contents are checked by the
/// importer): an error says what was expected when it is none of the formats.
pub fn detect_format(path: impl AsRef<Path>) -> Result<Format> {
    let path = path.as_ref();
    if path.is_dir() {
        if path.join("model.json").is_file() || !bert::is_bert_folder(path) {
            return Ok(Format::Directory);
        }
        return Ok(Format::BertFolder);
    }
    if keras_file::is_keras_file(path) {
        return Ok(Format::KerasFile);
    }
    if onnx::is_onnx_file(path) {
        return Ok(Format::Onnx);
    }
    if path.exists() {
        Err(Error::ModelFormat {
            file: path.display().to_string(),
            reason: "expected a model directory holding model.json and model.safetensors \
                     (write one from Keras with tools/export_keras.py), a Keras .keras / .h5 file, \
                     or an ONNX .onnx file"
                .into(),
        })
    } else {
        Err(Error::io(path, std::io::Error::new(std::io::ErrorKind::NotFound, "model directory not found")))
    }
}

/// How to load a model: what [`load_with`], [`keras_file::load_keras_file_with`] and
/// [`crate::SiameseModel::load_with_options`] take.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct LoadOptions {
    /// Weight storage on the GPU (the runner's; the importers ignore it).
    pub precision: Precision,
    /// Keras custom classes to load as built-in ones, `(custom class, built-in class)`: a
    /// class the user registered (`@keras.saving.register_keras_serializable()`) that
    /// computes what the built-in does, with its config keys (missing ones take the
    /// built-in's defaults) and weight names. As Keras' `custom_objects` at load; the CLI's
    /// `--custom-layer NAME=BUILTIN`.
    pub custom_layers: Vec<(String, String)>,
    /// What a twin head's `Lambda` (Python code) computes; None: a Lambda that ends the
    /// model, or whose readers take one value per pair, is a distance; any other is an
    /// error that asks. The CLI's `--lambda`.
    pub lambda: Option<LambdaKind>,
    /// The metric that stands for a twin head's distance Lambda when trained layers follow
    /// it (the CLI's `--distance`).
    pub lambda_distance: Distance,
    /// Set a twin's head aside: pairs get the run-time distance between the embeddings
    /// (the CLI's `--no-head`).
    pub no_head: bool,
}

impl LoadOptions {
    /// These options with weights stored in `precision`.
    pub fn precision(mut self, precision: Precision) -> Self {
        self.precision = precision;
        self
    }

    /// These options with a twin head's Lambda computing `kind`.
    pub fn lambda(mut self, kind: LambdaKind) -> Self {
        self.lambda = Some(kind);
        self
    }

    /// These options with the twin's head set aside.
    pub fn no_head(mut self) -> Self {
        self.no_head = true;
        self
    }

    /// These options with the Keras custom class `name` loaded as the built-in class
    /// `builtin` (e.g. `("MyDense", "Dense")`); an unknown built-in is an error at load.
    pub fn custom_layer(mut self, name: impl Into<String>, builtin: impl Into<String>) -> Self {
        self.custom_layers.push((name.into(), builtin.into()));
        self
    }
}

/// Loads an encoder from a model directory (`model.json` + `model.safetensors`), a Keras
/// model file (`.keras`, legacy `.h5` / `.hdf5`; of a whole Siamese model, its shared
/// encoder: see [`keras_file::load_keras_file`] for the head), or a BERT folder (its
/// encoder graph; [`crate::SentenceModel`] adds the tokenizer).
pub fn load(path: impl AsRef<Path>) -> Result<ModelSpec> {
    load_with(path, &LoadOptions::default())
}

/// [`load`] with options (Keras custom classes loaded as built-ins).
pub fn load_with(path: impl AsRef<Path>, options: &LoadOptions) -> Result<ModelSpec> {
    let path = path.as_ref();
    match detect_format(path)? {
        Format::KerasFile => keras_file::load_keras_file_with(path, options).map(|file| file.spec),
        Format::BertFolder => bert::load_bert(path).map(|model| model.spec),
        Format::Onnx => onnx::load_onnx(path),
        Format::Directory => {
            let json_path = path.join("model.json");
            let weights_path = path.join("model.safetensors");
            let file = json_path.display().to_string();
            let json = std::fs::read_to_string(&json_path).map_err(|e| Error::io(&json_path, e))?;
            let mut root: serde_json::Value = serde_json::from_str(&json)
                .map_err(|e| Error::ModelFormat { file: file.clone(), reason: format!("not valid JSON: {e}") })?;
            keras::file::apply_custom_layers(&mut root, &options.custom_layers)?;
            let bytes = std::fs::read(&weights_path).map_err(|e| Error::io(&weights_path, e))?;
            let weights = weights::Weights::from_safetensors(&bytes, &weights_path.display().to_string())?;
            crate::passes::apply_masks(&keras::from_value(&root, &file, weights)?)
        }
    }
}
